//! Issue 13's store-side reproductions through the binary: a repeated key
//! in a `.env` (3), a symlinked `.env` (4), the same file under two schemes
//! (5), concurrent migrations with their own state dirs (6) and a kill
//! mid-write (8).

use crate::support;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use support::*;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn spec(scheme: &str, p: &Path) -> String {
    format!("{scheme}:{}", p.display())
}

fn migrate(state: &Path, from: &str, to: &str, extra: &[&str]) -> (i32, String, String) {
    let mut c = migrate_cmd(state, from, to, &["--yes", "--json"]);
    c.args(extra);
    let (out, stdout, stderr) = run(&mut c);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

// ---- reproduction 3: a repeated key ----

#[test]
fn a_repeated_key_is_a_dry_run_finding_and_cleanup_keeps_the_unmigrated_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("app.env");
    let dst = dir.path().join("out.env");
    std::fs::write(
        &src,
        "OPENAI_API_KEY=sk-first-value-aaaaaaaaaaaa\n\
         GITHUB_TOKEN=ghp_other-value-bbbbbbbbbbbb\n\
         OPENAI_API_KEY=sk-second-value-cccccccccc\n",
    )
    .unwrap();

    let (code, stdout, stderr) = migrate(
        &state,
        &spec("dotenv", &src),
        &spec("dotenv", &dst),
        &["--dry-run"],
    );
    assert_eq!(code, 0, "{stderr}");
    let plan = json(&stdout);
    let findings = plan["source_errors"].as_array().unwrap();
    let dup = findings
        .iter()
        .find(|f| f["error"].as_str().unwrap().contains("OPENAI_API_KEY"))
        .unwrap_or_else(|| panic!("no duplicate finding: {plan}"));
    let msg = dup["error"].as_str().unwrap();
    assert!(msg.contains("lines 1, 3"), "{msg}");
    assert!(
        dup["location"].as_str().unwrap().ends_with("app.env:1"),
        "{dup}"
    );
    assert!(
        !stdout.contains("sk-first-value"),
        "the plan shows a secret"
    );

    let (code, stdout, stderr) = migrate(
        &state,
        &spec("dotenv", &src),
        &spec("dotenv", &dst),
        &["--delete-source"],
    );
    let r = json(&stdout);
    assert_eq!(r["rolled_back"], false, "{stderr}");
    let left = std::fs::read_to_string(&src).unwrap();
    assert_eq!(
        left, "OPENAI_API_KEY=sk-first-value-aaaaaaaaaaaa\n",
        "only the verified line goes; the other assignment stays"
    );
    let out = std::fs::read_to_string(&dst).unwrap();
    assert!(
        out.contains("OPENAI_API_KEY=sk-second-value-cccccccccc"),
        "{out}"
    );
    // The report says the key is still in the source, and why.
    let failed = r["source_delete_failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{r}");
    assert_eq!(failed[0]["id"], "env/OPENAI_API_KEY");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("line(s) 1"),
        "{r}"
    );
    assert_eq!(code, 1, "something was left behind: {stderr}");
}

// ---- reproduction 4: a symlinked .env ----

#[test]
fn a_symlinked_source_is_cleaned_in_the_file_behind_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dotfiles = dir.path().join("dotfiles");
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(&dotfiles).unwrap();
    std::fs::create_dir_all(&proj).unwrap();
    let real = dotfiles.join("app.env");
    std::fs::write(
        &real,
        "# app\nOPENAI_API_KEY=sk-one-aaaaaaaaaaaaaaaa\nGITHUB_TOKEN=ghp_two-bbbbbbbbbbbb\n\
         STRIPE_KEY=sk_live_three-ccccccccc\nDB_PASSWORD=four-dddddddddddd\nDEBUG=1\n",
    )
    .unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = proj.join(".env");
    symlink("../dotfiles/app.env", &link).unwrap();
    let dst = dir.path().join("out.env");

    let (_, stdout, stderr) = migrate(
        &state,
        &spec("dotenv", &link),
        &spec("dotenv", &dst),
        &["--delete-source"],
    );
    let r = json(&stdout);
    assert_eq!(r["rolled_back"], false, "{stderr}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("../dotfiles/app.env")
    );
    let left = std::fs::read_to_string(&real).unwrap();
    assert!(!left.contains("aaaa") && !left.contains("dddd"), "{left}");
    assert!(left.contains("# app"), "{left}");
    let deleted = r["source_deleted"].as_u64().unwrap();
    let out = std::fs::read_to_string(&dst).unwrap();
    assert!(out.contains("sk-one-aaaaaaaaaaaaaaaa"), "{out}");
    // Whatever was reported deleted is really gone from the real file.
    assert!(deleted >= 4, "{r}");
    // It was world-readable: written back private.
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_symlinked_account_file_is_cleaned_behind_the_link() {
    // Reproduction 4 for agent-prompttrain: an account file that is a link
    // into a dotfiles folder. Cleanup used to remove only the link, so the
    // report said "deleted" while the key stayed in the real file.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dotfiles = dir.path().join("dotfiles");
    let accounts = dir.path().join("credentials").join("accounts");
    std::fs::create_dir_all(&dotfiles).unwrap();
    std::fs::create_dir_all(&accounts).unwrap();
    let real = dotfiles.join("alpha.json");
    std::fs::write(
        &real,
        r#"{"type":"api_key","accountId":"acc_alpha","api_key":"sk-ant-api03-linkedlinkedlinkedlinked"}"#,
    )
    .unwrap();
    let link = accounts.join("alpha.credentials.json");
    symlink("../../dotfiles/alpha.json", &link).unwrap();
    let dst = dir.path().join("out.env");

    let (code, stdout, stderr) = migrate(
        &state,
        &spec("prompttrain", &dir.path().join("credentials")),
        &spec("dotenv", &dst),
        &["--delete-source"],
    );
    assert_eq!(code, 0, "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["source_deleted"], 1, "{r}");
    let out = std::fs::read_to_string(&dst).unwrap();
    assert!(
        out.contains("sk-ant-api03-linkedlinkedlinkedlinked"),
        "{out}"
    );
    // Reported deleted, so gone: from the real file as well as the link.
    let left = std::fs::read_to_string(&real).unwrap_or_default();
    assert!(
        !left.contains("linkedlinked"),
        "the key stayed behind the link: {left}"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "a dangling link was left"
    );
}

#[test]
fn a_symlinked_target_stays_a_link_and_a_private_mode_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("src.env");
    std::fs::write(&src, "OPENAI_API_KEY=sk-linked-target-aaaaaaa\n").unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir_all(&real_dir).unwrap();
    let real = real_dir.join("target.env");
    std::fs::write(&real, "KEEP=1\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.path().join("target.env");
    symlink(&real, &link).unwrap();

    let (code, _, stderr) = migrate(&state, &spec("dotenv", &src), &spec("dotenv", &link), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let text = std::fs::read_to_string(&real).unwrap();
    assert_eq!(text, "KEEP=1\nOPENAI_API_KEY=sk-linked-target-aaaaaaa\n");
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

// ---- reproduction 5: one file under two names ----

#[test]
fn the_same_file_under_two_schemes_or_names_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("src.env");
    std::fs::write(&src, "OPENAI_API_KEY=sk-only-copy-aaaaaaaaaa\n").unwrap();
    let f = dir.path().join("vault.enc");
    let pass = "a test passphrase, not a secret";
    let mut c = credshift(&state);
    c.env("CREDSHIFT_PASSPHRASE", pass).args([
        "migrate",
        "--from",
        &spec("dotenv", &src),
        "--to",
        &spec("encrypted", &f),
        "--yes",
    ]);
    let (out, _, stderr) = run(&mut c);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let before = std::fs::read(&f).unwrap();
    let link = dir.path().join("also-vault.enc");
    symlink(&f, &link).unwrap();

    for (from, to) in [
        (spec("encrypted", &f), spec("bundle", &f)),
        (spec("encrypted", &link), spec("encrypted", &f)),
        (
            spec("dotenv", &src),
            spec("dotenv", &dir.path().join(".").join("src.env")),
        ),
    ] {
        for extra in [&["--delete-source"][..], &["--dry-run"][..]] {
            let mut c = credshift(&state);
            c.env("CREDSHIFT_PASSPHRASE", pass)
                .args(["migrate", "--from", &from, "--to", &to, "--yes"])
                .args(extra);
            let (out, stdout, stderr) = run(&mut c);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{from} -> {to}: {stdout}{stderr}"
            );
            assert!(stderr.contains("same store"), "{stderr}");
        }
    }
    assert_eq!(std::fs::read(&f).unwrap(), before, "the file changed");
    assert_eq!(
        std::fs::read_to_string(&src).unwrap(),
        "OPENAI_API_KEY=sk-only-copy-aaaaaaaaaa\n"
    );
}

// ---- reproduction 6: locks across state dirs ----

#[test]
fn concurrent_migrations_with_their_own_state_dirs_never_lose_or_leave_items() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("shared.env");
    std::fs::write(&dst, "# shared target\n").unwrap();
    let n = 4;
    let items = 30;
    let mut children = Vec::new();
    for m in 0..n {
        let src = dir.path().join(format!("src{m}.env"));
        let mut text = String::new();
        for k in 0..items {
            text.push_str(&format!("M{m}_TOKEN_{k}=value-{m}-{k}-xxxxxxxxxxxx\n"));
        }
        std::fs::write(&src, text).unwrap();
        let state = dir.path().join(format!("state{m}"));
        let child = migrate_cmd(
            &state,
            &spec("dotenv", &src),
            &spec("dotenv", &dst),
            &["--yes", "--json"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        children.push(child);
    }
    let outcomes: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let target = std::fs::read_to_string(&dst).unwrap();
    let mut completed = 0;
    for (m, out) in outcomes.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let done = out.status.code() == Some(0)
            && json(&stdout)["rolled_back"] == false
            && json(&stdout)["verified"].as_u64() == Some(items as u64);
        for k in 0..items {
            let line = format!("M{m}_TOKEN_{k}=value-{m}-{k}-xxxxxxxxxxxx\n");
            if done {
                assert!(
                    target.contains(&line),
                    "migration {m} completed but its item {k} is not in the target"
                );
            } else {
                assert!(
                    !target.contains(&format!("M{m}_TOKEN_{k}=")),
                    "migration {m} did not complete ({stdout}{stderr}) but its item {k} is in the target"
                );
            }
        }
        if done {
            completed += 1;
        } else if out.status.code() == Some(2) {
            // Refused: the message names who holds the store.
            assert!(stderr.contains("locked by"), "{stderr}");
            assert!(stderr.contains("pid "), "{stderr}");
            assert!(stderr.contains("since"), "{stderr}");
        }
    }
    assert!(completed >= 1, "no migration completed");
    let lock_files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("credshift-lock"))
        .collect();
    assert!(lock_files.is_empty(), "lock files left: {lock_files:?}");
}

// ---- reproduction 8: kill -9 mid-write ----

fn temps(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("credshift-tmp"))
        .collect();
    v.sort();
    v
}

fn crash_mid_write(state: &Path, from: &str, to: &str, name: &str, cwd: &Path) {
    let mut c = credshift(state);
    c.current_dir(cwd)
        .env("CREDSHIFT_CRASH_IN_WRITE", name)
        .args(["migrate", "--from", from, "--to", to, "--yes", "--json"]);
    let (out, _, stderr) = run(&mut c);
    assert!(!out.status.success(), "did not crash: {stderr}");
    assert!(stderr.contains("CREDSHIFT_CRASH_IN_WRITE"), "{stderr}");
}

#[test]
fn temp_files_of_a_killed_write_are_removed_by_rollback_and_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let src = dir.path().join("src.env");
    std::fs::write(&src, "OPENAI_API_KEY=sk-crash-value-aaaaaaaa\n").unwrap();
    let dst = out_dir.join("target.env");
    let (from, to) = (spec("dotenv", &src), spec("dotenv", &dst));

    crash_mid_write(&state, &from, &to, "target.env", dir.path());
    let left = temps(&out_dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(".target.env.credshift-tmp."),
        "{left:?}"
    );
    let text = std::fs::read_to_string(out_dir.join(&left[0])).unwrap();
    assert!(
        text.contains("sk-crash-value"),
        "the temp file holds the write"
    );

    // rollback removes it and says so.
    let (out, stdout, _) = run(credshift(&state).args(["history", "--json"]));
    assert!(out.status.success());
    let hist = json(&stdout);
    let id = hist[0]["id"].as_str().unwrap().to_string();
    let (_, _, stderr) = run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes"]));
    assert_eq!(temps(&out_dir), Vec::<String>::new(), "{stderr}");
    assert!(
        stderr.contains(&left[0]),
        "rollback did not say so: {stderr}"
    );

    // A crash again, then the next run on the same store cleans up.
    let state2 = dir.path().join("state2");
    crash_mid_write(&state2, &from, &to, "target.env", dir.path());
    let left = temps(&out_dir);
    assert_eq!(left.len(), 1, "{left:?}");
    let (code, _, stderr) = migrate(&state2, &from, &to, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&left[0]),
        "the next run did not say so: {stderr}"
    );
    assert_eq!(temps(&out_dir), Vec::<String>::new());
    assert!(
        std::fs::read_to_string(&dst)
            .unwrap()
            .contains("sk-crash-value-aaaaaaaa")
    );
}
