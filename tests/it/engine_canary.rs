//! Canary: run migrations over the real fixtures (successful, faulty,
//! rolled back, verified, backed up and restored) and search every output,
//! the journal, the plan, the audit log, the locks and the raw backups for
//! every fixture secret in raw, base64, hex and JSON-escaped form.

use crate::support;

use support::canary::{contains, files_under, forms};
use support::*;

/// Every haystack that must not hold a secret: (name, bytes).
struct Haystacks(Vec<(String, Vec<u8>)>);

impl Haystacks {
    fn run(&mut self, name: &str, cmd: &mut std::process::Command) -> serde_json::Value {
        let (out, stdout, stderr) = run(cmd);
        self.0.push((format!("{name} stdout"), out.stdout.clone()));
        self.0.push((format!("{name} stderr"), out.stderr.clone()));
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{name}: {stderr}"
        );
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
    }
}

#[test]
fn no_secret_reaches_outputs_journal_audit_or_backups() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pt = copy_fixture("prompttrain/credentials", dir.path());
    let mf = copy_fixture("modelforge/config.json", dir.path());
    let pt = format!("prompttrain:{}", pt.display());
    let mf = format!("modelforge:{}", mf.display());
    let out_env = dir.path().join("out.env");
    let dst = format!("dotenv:{}", out_env.display());
    let key = dir.path().join("db.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let db = format!("sqlite:{}", dir.path().join("out.db").display());
    let key_arg = key.to_str().unwrap().to_string();
    let mut h = Haystacks(Vec::new());

    let cs = || credshift(&state);
    h.run(
        "dry run json",
        cs().args([
            "migrate",
            "--from",
            &pt,
            "--to",
            &dst,
            "--dry-run",
            "--json",
        ]),
    );
    h.run(
        "dry run text",
        cs().args(["migrate", "--from", &pt, "--to", &dst, "--dry-run"]),
    );
    // Most writes fail: rolled back, with failure messages.
    let r = h.run(
        "faulty migrate",
        cs().env("CREDSHIFT_FAULTS", "write:account:*")
            .args(["migrate", "--from", &pt, "--to", &dst, "--yes", "--json"]),
    );
    assert_eq!(r["rolled_back"], true, "{r}");
    let r = h.run(
        "migrate json",
        cs().args(["migrate", "--from", &pt, "--to", &dst, "--yes", "--json"]),
    );
    assert_eq!(r["failed"], 0, "{r}");
    let id = r["migration_id"].as_str().unwrap().to_string();
    h.run(
        "migrate again text",
        cs().args(["migrate", "--from", &pt, "--to", &dst, "--yes"]),
    );
    h.run(
        "verify",
        cs().args(["verify", "--migration-id", &id, "--json"]),
    );
    h.run("history json", cs().args(["history", "--json"]));
    h.run("history text", cs().args(["history"]));
    h.run(
        "rollback",
        cs().args(["rollback", "--migration-id", &id, "--yes", "--json"]),
    );
    let r = h.run(
        "modelforge to sqlite",
        cs().args([
            "migrate",
            "--from",
            &mf,
            "--to",
            &db,
            "--yes",
            "--json",
            "--key-file",
            &key_arg,
        ]),
    );
    assert!(r["copied"].as_u64().unwrap() > 0, "{r}");
    let backup_out = dir.path().join("exported.enc");
    h.run(
        "backup",
        cs().args([
            "backup",
            "--from",
            &pt,
            "--out",
            backup_out.to_str().unwrap(),
        ]),
    );
    // A different value at the target, so the restore (told to overwrite:
    // by default it skips a value changed since the backup) replaces and
    // backs up one item.
    {
        use credshift::credential::{Credential, Kind};
        use credshift::store::{self, StoreSpec};
        use credshift::unlock::KeyOptions;
        let spec: StoreSpec = dst.parse().unwrap();
        let s = store::open(&spec, &KeyOptions::default()).unwrap();
        s.write(&Credential::new(
            "account:acc_alpha/api_key".parse().unwrap(),
            Kind::ApiKey,
            "an-older-value-that-restore-replaces",
        ))
        .unwrap();
    }
    h.run(
        "restore",
        cs().args([
            "restore",
            "--backup",
            backup_out.to_str().unwrap(),
            "--to",
            &dst,
            "--on-conflict",
            "overwrite",
            "--yes",
        ]),
    );

    let mut files = Vec::new();
    files_under(&state, &mut files);
    files.push(backup_out.clone());
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    for want in [
        "journal.jsonl",
        "audit.jsonl",
        "backup.enc",
        "target-before.enc",
        "plan.json",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(want)),
            "{want} in {names:?}"
        );
    }
    for f in &files {
        h.0.push((f.display().to_string(), std::fs::read(f).unwrap()));
    }

    let secrets = expected();
    // The search works: the plaintext target holds the migrated secrets.
    let target = std::fs::read(&out_env).unwrap();
    let alpha = &secrets["account:acc_alpha/api_key"];
    assert!(contains(&target, alpha.as_bytes()));

    let mut leaks = Vec::new();
    for (id, secret) in &secrets {
        for (form, needle) in forms(secret) {
            for (name, hay) in &h.0 {
                if contains(hay, &needle) {
                    leaks.push(format!("{id} ({form}) in {name}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
