//! `status` for a newcomer (both model-forge configs, missing files), and
//! what `--help`, the completions and the man page show.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::*;

/// `credshift status` run in `cwd` with `home` as HOME (and no keyring to wait for).
fn status(state: &Path, home: &Path, cwd: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd: Command = credshift(state);
    cmd.current_dir(cwd)
        .env("HOME", home)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .args(["--keyring-timeout", "2", "status"])
        .args(extra);
    let (out, stdout, stderr) = run(&mut cmd);
    (out.status.code(), stdout, stderr)
}

/// The lines of `stdout` from the one that names `spec` up to the next store.
fn block<'a>(stdout: &'a str, spec_suffix: &str) -> Vec<&'a str> {
    let mut lines = stdout.lines().skip_while(|l| !l.ends_with(spec_suffix));
    let mut v: Vec<&str> = lines.next().into_iter().collect();
    v.extend(lines.take_while(|l| l.starts_with("  ")));
    assert!(!v.is_empty(), "no block for {spec_suffix} in:\n{stdout}");
    v
}

fn write_config(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        r#"{"providers": {"openai": {"auth_data": {"api_key": "sk-status-test-0123456789"}}}}"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn status_knows_both_model_forge_configs_and_which_one_it_reads() {
    let state = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let global = home.path().join(".config/model-forge/config.json");
    write_config(&global);

    // Only the global one: model-forge reads it; the local one is "not found".
    let (code, stdout, stderr) = status(state.path(), home.path(), cwd.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let local = block(&stdout, "modelforge:.model-forge/config.json");
    assert!(
        local
            .iter()
            .any(|l| l.contains("not found (created on first write)")),
        "{local:?}"
    );
    assert!(
        local
            .iter()
            .any(|l| l.contains("model-forge run here reads")
                && l.contains(".config/model-forge/config.json")
                && l.contains("not this file")),
        "{local:?}"
    );
    let g = block(&stdout, ".config/model-forge/config.json");
    assert!(g.iter().any(|l| l.contains("items: 1")), "{g:?}");
    assert!(
        g.iter()
            .any(|l| l.contains("model-forge run here reads this file")),
        "{g:?}"
    );
    assert!(!stdout.contains("sk-status-test"), "{stdout}");

    // A local one appears: it wins, and the global one says so.
    write_config(&cwd.path().join(".model-forge/config.json"));
    let (code, stdout, stderr) = status(state.path(), home.path(), cwd.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let local = block(&stdout, "modelforge:.model-forge/config.json");
    assert!(
        local.iter().any(|l| l.contains("reads this file")),
        "{local:?}"
    );
    let g = block(&stdout, ".config/model-forge/config.json");
    assert!(
        g.iter().any(
            |l| l.contains("warning: model-forge run in this directory reads")
                && l.contains(".model-forge/config.json instead")
        ),
        "{g:?}"
    );

    let (code, stdout, _) = status(state.path(), home.path(), cwd.path(), &["--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let in_use = v["modelforge"]["in_use"].as_str().unwrap();
    assert!(in_use.ends_with(".model-forge/config.json"), "{in_use}");
    assert!(
        in_use.starts_with(cwd.path().canonicalize().unwrap().to_str().unwrap())
            || in_use.starts_with(cwd.path().to_str().unwrap()),
        "{in_use}"
    );
    assert_eq!(
        v["modelforge"]["global"].as_str().unwrap(),
        global.to_str().unwrap()
    );
}

#[test]
fn status_says_not_found_for_a_missing_file_rather_than_zero_items() {
    let state = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = status(
        state.path(),
        home.path(),
        cwd.path(),
        &[
            "--store",
            "dotenv:missing.env",
            "--store",
            "modelforge:nowhere/config.json",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    for spec in ["dotenv:missing.env", "modelforge:nowhere/config.json"] {
        let b = block(&stdout, spec);
        assert!(b[1].contains("not found (created on first write)"), "{b:?}");
        assert!(!b.iter().any(|l| l.contains("items: 0")), "{b:?}");
    }
}

#[test]
fn help_shows_exec_and_its_layouts() {
    let state = tempfile::tempdir().unwrap();
    let (_, top, _) = run(credshift(state.path()).arg("--help"));
    assert!(top.contains("exec") && top.contains("completions"), "{top}");
    assert!(top.contains("ai_credentials"), "{top}");
    let (out, help, stderr) = run(credshift(state.path()).args(["exec", "--help"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for s in [
        "--layout",
        "plain",
        "modelforge",
        "MODELFORGE_<P>_API_KEY",
        "MODELFORGE_<P>_ACCESS_TOKEN",
        "--only",
        "--keep-env",
        "CREDSHIFT_PASSPHRASE",
    ] {
        assert!(help.contains(s), "exec --help lacks {s}:\n{help}");
    }
}

#[test]
fn completions_and_man_page_come_from_the_same_definitions() {
    let state = tempfile::tempdir().unwrap();
    let generate = |what: &str| {
        let (out, stdout, stderr) = run(credshift(state.path()).args(["completions", what]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
        stdout
    };
    let bash = generate("bash");
    assert!(
        bash.contains("_credshift()") && bash.contains("exec"),
        "{bash}"
    );
    assert!(
        bash.contains("--layout"),
        "bash completion lacks exec's flags"
    );
    let zsh = generate("zsh");
    assert!(zsh.starts_with("#compdef credshift"), "{zsh}");
    let fish = generate("fish");
    assert!(fish.contains("complete -c credshift"), "{fish}");
    assert!(fish.contains("layout"), "{fish}");
    let man = generate("man");
    assert!(man.contains(".TH credshift"), "{man}");
    assert!(man.contains("exec"), "{man}");
    let (out, _, stderr) = run(credshift(state.path()).args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
}

/// Issue 22, point 9: the word arguments are clap value enums with the
/// spellings they always had; anything else is a usage error naming them.
#[test]
fn word_arguments_accept_their_spellings_and_name_them_when_wrong() {
    let state = tempfile::tempdir().unwrap();
    let env = state.path().join("a.env");
    std::fs::write(&env, "A=1\n").unwrap();
    let to = state.path().join("b.env");
    let (from, to) = (
        format!("dotenv:{}", env.display()),
        format!("dotenv:{}", to.display()),
    );
    for policy in ["skip", "overwrite"] {
        let (out, _, stderr) = run(credshift(state.path()).args([
            "migrate",
            "--from",
            &from,
            "--to",
            &to,
            "--dry-run",
            "--on-conflict",
            policy,
        ]));
        assert_eq!(out.status.code(), Some(0), "{policy}: {stderr}");
    }
    for (args, names) in [
        (
            vec![
                "migrate",
                "--from",
                &from,
                "--to",
                &to,
                "--on-conflict",
                "replace",
            ],
            ["skip", "overwrite"].as_slice(),
        ),
        (
            vec![
                "exec",
                "--from",
                &from,
                "--layout",
                "model-forge",
                "--",
                "true",
            ],
            ["plain", "modelforge"].as_slice(),
        ),
        (
            vec!["completions", "tcsh"],
            ["bash", "zsh", "fish", "man"].as_slice(),
        ),
    ] {
        let (out, _, stderr) = run(credshift(state.path()).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for n in names {
            assert!(stderr.contains(n), "{args:?} does not name {n}: {stderr}");
        }
    }
}
