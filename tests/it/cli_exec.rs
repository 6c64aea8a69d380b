//! `credshift exec`: credentials into a child's environment, checked with
//! shell children and with model-forge's own code (PyPI `model-forge-llm`
//! 2.3.0, installed by the test into target/ when missing).

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

const OPENAI_KEY: &str = "sk-proj-exec0123456789abcdefghijklmnop";
const GH_ACCESS: &str = "gho_execAccess0123456789abcdefghij";
const GH_REFRESH: &str = "ghr_execRefresh0123456789abcdefghi";

fn dotenv(dir: &Path, body: &str) -> String {
    let p = dir.join("app.env");
    std::fs::write(&p, body).unwrap();
    format!("dotenv:{}", p.display())
}

/// A model-forge config.json outside any place model-forge itself looks.
fn modelforge_config(dir: &Path, providers: serde_json::Value) -> String {
    let p = dir.join("mf-source.json");
    let cfg = serde_json::json!({ "providers": providers });
    std::fs::write(&p, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    format!("modelforge:{}", p.display())
}

fn two_providers(dir: &Path) -> String {
    modelforge_config(
        dir,
        serde_json::json!({
            "openai": { "llm_type": "openai_compatible", "auth_strategy": "api_key",
                        "auth_data": { "api_key": OPENAI_KEY } },
            "github-copilot": { "llm_type": "github_copilot", "auth_strategy": "device_flow",
                        "auth_data": { "access_token": GH_ACCESS, "refresh_token": GH_REFRESH,
                                       "token_type": "bearer",
                                       "expires_at": "2020-01-01T00:00:00+00:00" } }
        }),
    )
}

#[test]
fn plain_layout_sets_variables_and_strips_unlock_secrets() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dotenv(
        dir.path(),
        &format!("OPENAI_API_KEY={OPENAI_KEY}\nOTHER=plain-value\n"),
    );
    let script = r#"for v in OPENAI_API_KEY OTHER APP_KEY CREDSHIFT_PASSPHRASE CREDENTIAL_ENCRYPTION_KEY PGPASSWORD MY_PW KEEP_ME; do eval "printf '%s=%s\n' $v \"\${$v-unset}\""; done"#;
    let mut cmd = credshift(state.path());
    cmd.env("APP_KEY", "base64:app-key-of-the-parent")
        .env("CREDSHIFT_PASSPHRASE", "parent-passphrase")
        .env(
            "CREDENTIAL_ENCRYPTION_KEY",
            "parent-prompttrain-key-0123456789abcdef",
        )
        .env("PGPASSWORD", "parent-pg")
        .env("MY_PW", "named-passphrase")
        .env("KEEP_ME", "ordinary")
        .args(["--passphrase-env", "MY_PW", "exec", "--from", &spec, "--"])
        .args(["sh", "-c", script]);
    let (out, stdout, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            &format!("OPENAI_API_KEY={OPENAI_KEY}") as &str,
            "OTHER=plain-value",
            "APP_KEY=unset",
            "CREDSHIFT_PASSPHRASE=unset",
            "CREDENTIAL_ENCRYPTION_KEY=unset",
            "PGPASSWORD=unset",
            "MY_PW=unset",
            "KEEP_ME=ordinary",
        ]
    );
    assert!(!stderr.contains(OPENAI_KEY), "{stderr}");

    // --keep-env passes a named unlock variable on after all.
    let mut cmd = credshift(state.path());
    cmd.env("APP_KEY", "base64:app-key-of-the-parent")
        .env("PGPASSWORD", "parent-pg")
        .args(["exec", "--from", &spec, "--keep-env", "APP_KEY", "--"])
        .args(["sh", "-c", "echo ${APP_KEY-unset} ${PGPASSWORD-unset}"]);
    let (out, stdout, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "base64:app-key-of-the-parent unset");
}

#[test]
fn secrets_never_reach_the_childs_argv_or_credshifts_output() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = two_providers(dir.path());
    // The child prints its own command line; credshift's own output is stderr.
    let (out, stdout, stderr) = run(credshift(state.path())
        .args(["exec", "--from", &spec, "--layout", "modelforge", "--"])
        .args(["sh", "-c", "tr '\\0' ' ' < /proc/$$/cmdline; echo"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for s in [OPENAI_KEY, GH_ACCESS, GH_REFRESH] {
        assert!(!stdout.contains(s), "argv holds a secret: {stdout}");
        assert!(!stderr.contains(s), "stderr holds a secret: {stderr}");
    }
    // The refresh token has no model-forge variable: named by id, not value.
    assert!(stderr.contains("github-copilot/refresh_token"), "{stderr}");
}

#[test]
fn exit_codes_are_the_commands() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dotenv(dir.path(), "A=1\n");
    let code = |args: &[&str]| {
        let (out, _, stderr) = run(credshift(state.path())
            .args(["exec", "--from", &spec, "--"])
            .args(args));
        (out.status.code(), stderr)
    };
    assert_eq!(code(&["sh", "-c", "exit 0"]).0, Some(0));
    assert_eq!(code(&["sh", "-c", "exit 7"]).0, Some(7));
    assert_eq!(code(&["sh", "-c", "exit 255"]).0, Some(255));
    // Killed by a signal: 128 + N, as a shell reports it.
    assert_eq!(code(&["sh", "-c", "kill -TERM $$"]).0, Some(128 + 15));
    assert_eq!(code(&["sh", "-c", "kill -KILL $$"]).0, Some(128 + 9));
    let (c, stderr) = code(&["credshift-test-no-such-command"]);
    assert_eq!(c, Some(127), "{stderr}");
    assert!(stderr.contains("command not found"), "{stderr}");
    let not_runnable = dir.path().join("not-runnable.sh");
    std::fs::write(&not_runnable, "#!/bin/sh\nexit 0\n").unwrap();
    let (c, stderr) = code(&[not_runnable.to_str().unwrap()]);
    assert_eq!(c, Some(126), "{stderr}");
    // No command at all is a usage error.
    let (out, _, _) = run(credshift(state.path()).args(["exec", "--from", &spec]));
    assert_eq!(out.status.code(), Some(2));
}

/// Start `credshift exec` on a child that traps `sig`, send `sig` to
/// credshift once the child is ready, and return (exit code, child output).
fn signal_round_trip(sig: i32, name: &str) -> (Option<i32>, String) {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dotenv(dir.path(), "A=1\n");
    let script = format!(
        "n=0; trap 'n=$((n+1)); echo got-{name}-$n' {name}; echo ready; \
         i=0; while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); \
         if [ $n -gt 0 ]; then sleep 0.3; exit 42; fi; done; exit 0"
    );
    let mut child = credshift(state.path())
        .args(["exec", "--from", &spec, "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "ready");
    // SAFETY: signalling the process we started.
    unsafe { libc::kill(child.id() as i32, sig) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    (status.code(), rest)
}

#[test]
fn signals_are_passed_on_once() {
    for (sig, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
    ] {
        let (code, out) = signal_round_trip(sig, name);
        assert_eq!(code, Some(42), "{name}: {out}");
        assert_eq!(out.trim(), format!("got-{name}-1"), "{name}");
    }
}

#[test]
fn only_selects_and_clashes_or_bad_names_stop_before_the_command() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = two_providers(dir.path());
    let (out, stdout, stderr) = run(credshift(state.path())
        .args(["exec", "--from", &spec, "--layout", "modelforge"])
        .args(["--only", "openai/*", "--"])
        .args([
            "sh",
            "-c",
            "echo ${MODELFORGE_OPENAI_API_KEY:+set} ${MODELFORGE_GITHUB_COPILOT_ACCESS_TOKEN-unset}",
        ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "set unset");

    let (out, _, stderr) = run(credshift(state.path()).args([
        "exec",
        "--from",
        &spec,
        "--only",
        "nothing/*",
        "--",
        "true",
    ]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing/*"), "{stderr}");

    // `my-p` and `my_p` are both MODELFORGE_MY_P_API_KEY to model-forge.
    let clash = modelforge_config(
        dir.path(),
        serde_json::json!({
            "my-p": { "auth_data": { "api_key": "sk-one-0123456789abcdef" } },
            "my_p": { "auth_data": { "api_key": "sk-two-0123456789abcdef" } },
            "odd name": { "auth_data": { "api_key": "sk-three-0123456789abcd" } }
        }),
    );
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let (out, _, stderr) = run(credshift(state.path())
        .args(["exec", "--from", &clash, "--layout", "modelforge", "--"])
        .args(["sh", "-c", &touch]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MODELFORGE_MY_P_API_KEY"), "{stderr}");
    assert!(
        stderr.contains("my-p/api_key") && stderr.contains("my_p/api_key"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("sk-one") && !stderr.contains("sk-two"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the command ran despite the clash");

    // Plain layout: "odd name/api_key" has no valid variable name.
    let (out, _, stderr) = run(credshift(state.path())
        .args(["exec", "--from", &clash, "--only", "odd*", "--"])
        .args(["sh", "-c", &touch]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("odd name/api_key"), "{stderr}");
    assert!(!marker.exists(), "the command ran despite a bad name");
}

/// Issue 23, point 5: a provider whose variable name no shell can hold
/// stops the run with exit 2 before CMD starts, in both layouts, naming the
/// id; `--only` leaves it out. (On 232bd74 the modelforge layout passed
/// `MODELFORGE_MY PROVIDER_API_KEY` and `MODELFORGE_ÜNÏ_API_KEY` on.)
#[test]
fn names_no_shell_can_hold_stop_either_layout_before_the_command() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = modelforge_config(
        dir.path(),
        serde_json::json!({
            "openai": { "auth_data": { "api_key": OPENAI_KEY } },
            "my provider": { "auth_data": { "api_key": "sk-space-0123456789abcdef" } },
            "ünï": { "auth_data": { "api_key": "sk-umlaut-0123456789abcdef" } }
        }),
    );
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for layout in ["plain", "modelforge"] {
        let (out, _, stderr) = run(credshift(state.path())
            .args(["exec", "--from", &spec, "--layout", layout, "--"])
            .args(["sh", "-c", &touch]));
        assert_eq!(out.status.code(), Some(2), "{layout}: {stderr}");
        assert!(
            stderr.contains("my provider/api_key") && stderr.contains("ünï/api_key"),
            "{layout}: {stderr}"
        );
        assert!(
            stderr.contains("[A-Za-z_][A-Za-z0-9_]*"),
            "{layout}: {stderr}"
        );
        assert!(
            !stderr.contains("sk-space") && !stderr.contains("sk-umlaut"),
            "{layout}: {stderr}"
        );
        assert!(
            !marker.exists(),
            "{layout}: the command ran despite a bad name"
        );

        let (out, stdout, stderr) = run(credshift(state.path())
            .args(["exec", "--from", &spec, "--layout", layout])
            .args(["--only", "openai/*", "--", "sh", "-c"])
            .args([
                "env | grep -c 'OPENAI_API_KEY=sk-proj-exec'; env | grep -ci provider || true",
            ]));
        assert_eq!(out.status.code(), Some(0), "{layout}: {stderr}");
        assert_eq!(
            stdout.split_whitespace().collect::<Vec<_>>(),
            ["1", "0"],
            "{layout}"
        );
    }
}

// ---- model-forge's own code -------------------------------------------------

const MODEL_FORGE: &str = "model-forge-llm==2.3.0";
/// What `modelforge.auth` imports beyond the standard library: requests
/// and requests' own dependencies (model-forge's package `__init__` pulls
/// in langchain through its registry, which the check below bypasses).
const PY_DEPS: &[&str] = &[
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
];

/// model-forge 2.3.0 under target/, installed with pip when missing.
fn model_forge_site() -> Option<PathBuf> {
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-python/model-forge-2.3.0");
    if site.join("modelforge/auth.py").is_file() && site.join("requests").is_dir() {
        return Some(site);
    }
    let tmp = site.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--target"])
        .arg(&tmp)
        .arg(MODEL_FORGE)
        .args(PY_DEPS)
        .stdin(Stdio::null())
        .output();
    let reason = match out {
        Ok(o) if o.status.success() && tmp.join("modelforge/auth.py").is_file() => {
            // Another test process may have won the race: either copy is good.
            if std::fs::rename(&tmp, &site).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            return Some(site);
        }
        Ok(o) => format!(
            "pip install {MODEL_FORGE} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("python3 cannot be run: {e}"),
    };
    let _ = std::fs::remove_dir_all(&tmp);
    skip_without("model-forge-llm (pip)", &reason);
    None
}

/// Loads model-forge's own `auth` and `config` modules (without the package
/// `__init__`, which imports langchain for its registry) and asks its auth
/// strategies for credentials, as model-forge does before a request.
const PY_CHECK: &str = r#"
import importlib.machinery, importlib.util, json, os, sys
site = os.environ["MF_SITE"]
spec = importlib.machinery.ModuleSpec("modelforge", None, is_package=True)
pkg = importlib.util.module_from_spec(spec)
pkg.__path__ = [os.path.join(site, "modelforge")]
sys.modules["modelforge"] = pkg
from modelforge import config
from modelforge.auth import ApiKeyAuth, DeviceFlowAuth
path = config.get_config_path()
print(json.dumps({
    "config_path": str(path),
    "config_exists": path.exists(),
    "openai": ApiKeyAuth("openai").get_credentials(),
    "copilot": DeviceFlowAuth("github-copilot", "client", "https://invalid.example/device",
                              "https://invalid.example/token", "read:user").get_credentials(),
}))
"#;

fn run_model_forge_check(
    site: &Path,
    home: &Path,
    cwd: &Path,
    exec: Option<&str>,
) -> serde_json::Value {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = match exec {
        Some(spec) => {
            let mut c = credshift(state.path());
            c.args(["exec", "--from", spec, "--layout", "modelforge", "--"]);
            c.arg("python3");
            c
        }
        None => Command::new("python3"),
    };
    cmd.args(["-c", PY_CHECK])
        .current_dir(cwd)
        .env("HOME", home)
        .env("MF_SITE", site)
        .env("PYTHONPATH", site)
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("MODELFORGE_OPENAI_API_KEY")
        .env_remove("MODELFORGE_GITHUB_COPILOT_ACCESS_TOKEN")
        .stdin(Stdio::null());
    let (out, stdout, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // model-forge logs to stdout too: the result is the last line.
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

#[test]
fn model_forge_finds_the_credentials_with_no_config_file() {
    let Some(site) = model_forge_site() else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let spec = two_providers(src.path());

    // Without exec, model-forge finds nothing: the check can fail.
    let bare = run_model_forge_check(&site, home.path(), cwd.path(), None);
    assert_eq!(bare["config_exists"], false, "{bare}");
    assert!(bare["openai"].is_null(), "{bare}");
    assert!(bare["copilot"].is_null(), "{bare}");

    let got = run_model_forge_check(&site, home.path(), cwd.path(), Some(&spec));
    assert_eq!(got["config_exists"], false, "{got}");
    assert!(
        got["config_path"]
            .as_str()
            .unwrap()
            .starts_with(home.path().to_str().unwrap()),
        "{got}"
    );
    assert_eq!(got["openai"], serde_json::json!({ "api_key": OPENAI_KEY }));
    assert_eq!(
        got["copilot"],
        serde_json::json!({ "access_token": GH_ACCESS })
    );
    // model-forge wrote no config file of its own.
    assert!(!home.path().join(".config/model-forge").exists());
    assert!(!cwd.path().join(".model-forge").exists());
}
