//! Issue 23, point 3: one rule for every new passphrase (at least 8
//! characters, not one character repeated, not one of the commonest
//! passwords) for what the CLI creates: bundles, encrypted targets,
//! backups. Reading what exists is unaffected, and moving off a store under
//! an old weak passphrase still works (its backup gets a key file). On
//! 232bd74 a one-character passphrase sealed a new bundle.

use crate::support;

use std::path::Path;

use credshift::credential::{Credential, Kind, Secret};
use credshift::crypto::envelope::{KeySource, seal_credentials};
use support::{credshift, run};

fn dotenv(dir: &Path) -> String {
    let p = dir.join("app.env");
    std::fs::write(&p, "OPENAI_API_KEY=sk-proj-rule0123456789abcdefghij\n").unwrap();
    format!("dotenv:{}", p.display())
}

fn migrate(state: &Path, from: &str, to: &str, pass: &str) -> (Option<i32>, String, String) {
    let (o, stdout, stderr) = run(credshift(state)
        .args(["migrate", "--from", from, "--to", to, "--yes"])
        .args(["--passphrase-env", "RULE_PASS"])
        .env("RULE_PASS", pass));
    (o.status.code(), stdout, stderr)
}

#[test]
fn new_bundles_and_encrypted_targets_need_a_passphrase_that_passes_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state");
    let from = dotenv(d);
    for (target, pass, why) in [
        ("bundle:short.bundle", "x", "has only 1 character;"),
        ("bundle:seven.bundle", "pw12345", "has only 7 characters"),
        ("bundle:common.bundle", "Password1", "most common passwords"),
        (
            "encrypted:common.enc",
            "qwertyuiop",
            "most common passwords",
        ),
        (
            "encrypted:repeated.enc",
            "zzzzzzzzzzzz",
            "one character repeated",
        ),
    ] {
        let (name, file) = target.split_once(':').unwrap();
        let to = format!("{name}:{}", d.join(file).display());
        let (code, stdout, stderr) = migrate(&state, &from, &to, pass);
        assert_ne!(code, Some(0), "{target}: {stdout}{stderr}");
        let said = format!("{stdout}{stderr}");
        assert!(said.contains(why), "{target}: {said}");
        assert!(said.contains("at least 8 characters"), "{target}: {said}");
        assert!(
            !said.contains(pass) || pass.len() < 3,
            "{target}: the passphrase in output"
        );
        assert!(!d.join(file).exists(), "{target} was created");
    }
    let to = format!("bundle:{}", d.join("good.bundle").display());
    let (code, _, stderr) = migrate(&state, &from, &to, "a passphrase that passes");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(d.join("good.bundle").exists());
}

#[test]
fn a_store_under_an_old_weak_passphrase_still_opens_and_moves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state");
    let weak = d.join("old.bundle");
    let creds = vec![Credential::new(
        "openai/api_key".parse().unwrap(),
        Kind::ApiKey,
        "sk-old-weak-bundle-0123456789abcdef",
    )];
    let sealed =
        seal_credentials(&creds, &KeySource::Passphrase(Secret::new("pw")), 100_000).unwrap();
    std::fs::write(&weak, sealed).unwrap();
    let from = format!("bundle:{}", weak.display());

    let (o, _, stderr) = run(credshift(&state)
        .args(["inventory", "--from", &from, "--passphrase-env", "P"])
        .env("P", "pw"));
    assert!(o.status.success(), "reading is unaffected: {stderr}");

    // Moving off it: the migration's backup is sealed with a key file, not "pw".
    let to = format!("dotenv:{}", d.join("out.env").display());
    let (code, stdout, stderr) = migrate(&state, &from, &to, "pw");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("key file"), "{stdout}");
    let written = std::fs::read_to_string(d.join("out.env")).unwrap();
    assert!(written.contains("sk-old-weak-bundle-0123456789abcdef"));

    // `credshift backup` of it: a key file again.
    let out = d.join("b.enc");
    let (o, stdout, stderr) = run(credshift(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&out)
        .args(["--passphrase-env", "P"])
        .env("P", "pw"));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("key file:"), "{stdout}");
    let header: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(header["kdf"]["alg"], "none");
}
