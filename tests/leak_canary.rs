//! Issue 14: secrets credshift must never leak. The reproductions of the
//! issue as regression tests (env: unlock variables, `backup --out X.key`,
//! PostgreSQL passwords in URLs and from PGPASSWORD / ~/.pgpass /
//! --db-password-file against a server that requires one), and a canary
//! that plants secrets in each of those places and searches every output
//! and every file credshift writes for them in raw, base64, hex and
//! JSON-escaped forms.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use support::*;

/// The binary with a clean environment: only what a test sets is there.
fn bare(state: &Path) -> Command {
    let mut c = credshift(state);
    c.env_clear()
        .env("CREDSHIFT_STATE_DIR", state)
        .env("HOME", state.join("home"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

fn dotenv_values(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reproduction 4: `--from env:` with CREDSHIFT_PASSPHRASE and APP_KEY set
/// wrote both into the target in plaintext.
#[test]
fn env_source_leaves_out_credshifts_unlock_variables() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out.env");
    let unlock = [
        ("CREDSHIFT_PASSPHRASE", "canary-passphrase-Q7v2"),
        ("APP_KEY", "base64:Y2FuYXJ5LWFwcC1rZXktMzItYnl0ZXMtbG9uZy4uLg=="),
        ("CREDENTIAL_ENCRYPTION_KEY", "canary-master-key-0123456789abcdef0123"),
        ("PGPASSWORD", "canary-pg-password-Zx9"),
        ("MY_UNLOCK", "canary-named-passphrase-Lm3"),
    ];
    let mut cmd = bare(&state);
    cmd.args(["migrate", "--from", "env:", "--to"])
        .arg(format!("dotenv:{}", out.display()))
        .args(["--yes", "--json", "--passphrase-env", "MY_UNLOCK"])
        .env("OPENAI_API_KEY", "sk-proj-ordinary-variable-0001");
    for (k, v) in unlock {
        cmd.env(k, v);
    }
    let (o, stdout, stderr) = run(&mut cmd);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let written = dotenv_values(&out);
    assert!(written.contains("sk-proj-ordinary-variable-0001"), "{written}");
    for (k, v) in unlock {
        assert!(!written.contains(v), "{k} was copied into the target");
    }
    // Named exactly, one is taken on purpose.
    let one = dir.path().join("one.env");
    let mut cmd = bare(&state);
    cmd.args(["migrate", "--from", "env:APP_KEY", "--to"])
        .arg(format!("dotenv:{}", one.display()))
        .args(["--yes"])
        .env("APP_KEY", unlock[1].1)
        .env("CREDSHIFT_PASSPHRASE", unlock[0].1);
    let (o, _, stderr) = run(&mut cmd);
    assert!(o.status.success(), "{stderr}");
    assert!(dotenv_values(&one).contains(unlock[1].1));
}
