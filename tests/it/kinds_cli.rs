//! Gaps 5, 7, 8 and 9 of the test-matrix audit (main 3579e94), and finding
//! A7, on the store kinds of `support::kinds` (as `store_kinds_recovery`):
//!
//! - `backup`, `restore` and `verify` through the CLI on SQL, keyring and
//!   file kinds, checked by contents (a restored copy equals the store row
//!   for row, a tampered value fails verify by id); `backup --out` onto the
//!   store's own file is refused;
//! - `rollback --only` after a cleanup and for an overwritten item, then a
//!   full rollback; a partial rollback and a restore crashed part way;
//! - `exec` from stores behind a passphrase or key, the unlock variables
//!   stripped from the child's environment.

use std::collections::BTreeMap;
use std::path::Path;

use credshift::credential::Credential;

use crate::support::kinds::{
    KindCase, all_kinds, binary_for, cleared, crashed, cred, files, fill, journal_lines, only,
    open, rows,
};
use crate::support::*;

/// Two instances of each wanted kind (`tag`-a and `tag`-b), by name.
fn pairs(dir: &Path, tag: &str, wanted: &[&str]) -> Vec<(KindCase, KindCase)> {
    let a = only(all_kinds(dir, &format!("{tag}a")), wanted);
    let mut b = only(all_kinds(dir, &format!("{tag}b")), wanted);
    a.into_iter()
        .map(|x| {
            let i = b.iter().position(|y| y.name == x.name).unwrap();
            (x, b.remove(i))
        })
        .collect()
}

fn items(k: &KindCase, tag: &str) -> Vec<Credential> {
    k.ids
        .iter()
        .map(|id| cred(id, &format!("{tag}-{}-{id}", k.name)))
        .collect()
}

/// Gap 9 and finding A7.
#[test]
fn backup_restore_and_verify_on_sql_keyring_and_file_kinds_check_contents() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = [
        "sqlite",
        "postgres",
        "keyring",
        "laravel",
        "encrypted",
        "prompttrain",
        "modelforge",
    ];
    for (a, b) in pairs(dir.path(), "bk", &wanted) {
        let what = a.name;
        fill(&a.spec, &items(&a, "backed-up"));
        let before = rows(&a.spec);
        let state = dir.path().join(format!("state-bk-{what}"));
        let bin = || binary_for(&state, &[&a.spec, &b.spec]);
        // A7: never onto the store's own file (or into its directory).
        if let Some(own) = a
            .spec
            .parse::<credshift::store::StoreSpec>()
            .unwrap()
            .path()
        {
            let own = own.display().to_string();
            let before_files = files(&a.spec);
            let (out, stdout, stderr) =
                run(bin().args(["backup", "--from", &a.spec, "--out", &own]));
            assert_eq!(out.status.code(), Some(2), "{what}: {stdout}{stderr}");
            assert!(
                stderr.contains("is the store being backed up"),
                "{what}: {stderr}"
            );
            assert_eq!(
                files(&a.spec),
                before_files,
                "{what}: the store was touched"
            );
        }
        let backup = dir.path().join(format!("bk-{what}.enc"));
        let (out, stdout, stderr) = run(bin()
            .args(["backup", "--from", &a.spec, "--out"])
            .arg(&backup));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        assert_eq!(rows(&a.spec), before, "{what}: backup only reads");
        let (out, stdout, stderr) = run(bin()
            .args(["restore", "--backup"])
            .arg(&backup)
            .args(["--to", &b.spec, "--yes", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        assert_eq!(rows(&b.spec), before, "{what}: restored row for row");
        let id = json(&stdout)["migration_id"].as_str().unwrap().to_string();
        let (out, stdout, stderr) = run(bin().args(["verify", "--migration-id", &id, "--json"]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        assert_eq!(json(&stdout)["verified"], 3, "{what}: {stdout}");
        // Another client changes one restored value: verify names it.
        open(&b.spec)
            .write(&cred(b.ids[1], "changed-after-the-restore-0001"))
            .unwrap();
        let (out, stdout, _) = run(bin().args(["verify", "--migration-id", &id, "--json"]));
        assert_eq!(out.status.code(), Some(1), "{what}: {stdout}");
        let r = json(&stdout);
        assert_eq!(r["verified"], 2, "{what}: {stdout}");
        assert_eq!(r["failures"][0]["id"], b.ids[1], "{what}: {stdout}");
        cleared(&a);
        cleared(&b);
    }
}

/// Gaps 5 and 7: `rollback --only` puts back a source item a cleanup
/// deleted, then restores an overwritten target value; a partial rollback
/// crashed after its first record is finished by the next one; a full
/// rollback then gives both stores back row for row.
#[test]
fn rollback_only_after_a_cleanup_and_an_overwrite_then_a_full_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = ["sqlite", "postgres", "keyring", "laravel", "prompttrain"];
    for (a, b) in pairs(dir.path(), "ro", &wanted) {
        let what = a.name;
        fill(&a.spec, &items(&a, "moved"));
        fill(&b.spec, &[cred(b.ids[2], "the-targets-own-value-000003")]);
        let (src0, dst0) = (rows(&a.spec), rows(&b.spec));
        let state = dir.path().join(format!("state-ro-{what}"));
        let bin = || binary_for(&state, &[&a.spec, &b.spec]);
        let (out, stdout, stderr) = run(bin()
            .args(["migrate", "--from", &a.spec, "--to", &b.spec])
            .args([
                "--yes",
                "--json",
                "--on-conflict",
                "overwrite",
                "--delete-source",
            ]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        let id = json(&stdout)["migration_id"].as_str().unwrap().to_string();
        assert!(
            rows(&a.spec).is_empty(),
            "{what}: cleanup emptied the source"
        );
        let only_rollback = |glob: &str, crash: Option<&str>| {
            let mut c = bin();
            c.args(["rollback", "--migration-id", &id, "--only", glob])
                .args(["--yes", "--json"]);
            if let Some(k) = crash {
                c.env("CREDSHIFT_CRASH_AT", k);
            }
            run(c)
        };
        // The first item: back in the source, gone from the target.
        let (out, stdout, stderr) = only_rollback(a.ids[0], None);
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        let (src, dst) = (rows(&a.spec), rows(&b.spec));
        assert_eq!(src.keys().collect::<Vec<_>>(), [a.ids[0]], "{what}");
        assert_eq!(src[a.ids[0]], src0[a.ids[0]], "{what}");
        assert!(
            !dst.contains_key(b.ids[0]) && dst.contains_key(b.ids[1]),
            "{what}"
        );
        // The overwritten item, crashed after `rollback_part` (record 1):
        // nothing changed yet; the next partial rollback finishes it.
        let lines = journal_lines(&state, &id);
        let (out, _, stderr) = only_rollback(a.ids[2], Some("1"));
        assert!(crashed(&out, &stderr), "{what}: {stderr}");
        assert_eq!(journal_lines(&state, &id), lines + 1, "{what}");
        let (out, stdout, stderr) = only_rollback(a.ids[2], None);
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        let dst = rows(&b.spec);
        assert_eq!(
            dst[b.ids[2]], dst0[b.ids[2]],
            "{what}: the old value is back"
        );
        assert!(
            rows(&a.spec).contains_key(a.ids[2]),
            "{what}: and in the source"
        );
        // Still migrated in part; a full rollback ends it.
        let (out, stdout, stderr) =
            run(bin().args(["rollback", "--migration-id", &id, "--yes", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        assert_eq!(json(&stdout)["rolled_back"], true, "{what}: {stdout}");
        assert_eq!(rows(&a.spec), src0, "{what}: the source");
        assert_eq!(rows(&b.spec), dst0, "{what}: the target");
        cleared(&a);
        cleared(&b);
    }
}

/// Gap 7: a restore crashed after its first item is rolled back to the
/// target as it was, or resumed to the whole backup.
#[test]
fn a_crash_during_restore_is_rolled_back_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = ["sqlite", "prompttrain", "encrypted"];
    for mode in ["rollback", "resume"] {
        for (a, b) in pairs(dir.path(), &format!("rc{mode}"), &wanted) {
            let what = format!("{} {mode}", a.name);
            let moved = items(&a, "backed-up");
            fill(&a.spec, &moved);
            fill(&b.spec, &[cred(b.ids[2], "the-targets-own-value-000003")]);
            let dst0 = rows(&b.spec);
            let state = dir.path().join(format!("state-rc-{mode}-{}", a.name));
            let bin = || binary_for(&state, &[&a.spec, &b.spec]);
            let backup = dir.path().join(format!("rc-{mode}-{}.enc", a.name));
            let (out, stdout, stderr) = run(bin()
                .args(["backup", "--from", &a.spec, "--out"])
                .arg(&backup));
            assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
            let (out, _, stderr) = run(bin()
                .args(["restore", "--backup"])
                .arg(&backup)
                .args([
                    "--to",
                    &b.spec,
                    "--yes",
                    "--json",
                    "--on-conflict",
                    "overwrite",
                ])
                .env("CREDSHIFT_CRASH_AT", "5"));
            assert!(crashed(&out, &stderr), "{what}: {stderr}");
            let (_, hist, _) = run(bin().args(["history", "--json"]));
            let id = json(&hist)[0]["id"].as_str().unwrap().to_string();
            let (out, stdout, stderr) =
                run(bin().args([mode, "--migration-id", &id, "--yes", "--json"]));
            assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
            if mode == "rollback" {
                assert_eq!(rows(&b.spec), dst0, "{what}");
            } else {
                assert_eq!(rows(&b.spec), rows(&a.spec), "{what}");
            }
            cleared(&a);
            cleared(&b);
        }
    }
}

/// Gap 8: `exec` from stores that need credshift's passphrase, Laravel's
/// APP_KEY or agent-prompttrain's key: the child gets every value, and
/// none of the unlock variables.
#[test]
fn exec_from_stores_behind_a_key_strips_the_unlock_variables() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = [
        "encrypted",
        "sqlite",
        "prompttrain-db",
        "laravel",
        "keyring",
    ];
    for k in only(all_kinds(dir.path(), "ex"), &wanted) {
        let what = k.name;
        let its = items(&k, "exec");
        fill(&k.spec, &its);
        let state = dir.path().join(format!("state-ex-{what}"));
        let (out, stdout, stderr) = run(binary_for(&state, &[&k.spec])
            .env("CREDSHIFT_PASSPHRASE", "store kinds test passphrase")
            .args(["exec", "--from", &k.spec, "--", "env"]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
        let env: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
        for c in &its {
            let v = c.secret.expose();
            assert!(env.values().any(|x| *x == v), "{what}: {} not passed", c.id);
        }
        for var in [
            "CREDSHIFT_PASSPHRASE",
            "APP_KEY",
            "CREDENTIAL_ENCRYPTION_KEY",
        ] {
            assert!(!env.contains_key(var), "{what}: {var} reached the child");
        }
        assert!(!stderr.contains("exec-"), "{what}: a value on stderr");
        cleared(&k);
    }
}
