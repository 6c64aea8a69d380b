//! Issue 21 (Why 9), one table over every writable store kind: dotenv,
//! encrypted, SQLite, PostgreSQL, the keyring, an agent-prompttrain
//! directory (one file per account), model-forge and Laravel.
//!
//! - `--on-conflict overwrite`, then rollback, gives the old value back;
//! - the real binary aborted by `CREDSHIFT_CRASH_AT` at several records of
//!   a migration into a SQL, a keyring, a Laravel and a multi-file target,
//!   then rollback gives back exactly the old target and resume the full
//!   expected one (the crash is asserted to have fired);
//! - the same targets with the resume, or the rollback, itself aborted
//!   part way: the next recovery still ends with nothing lost.
//!
//! The kind table is `support::kinds` (`kinds_cli` runs over it too).

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;

use credshift::credential::Credential;
use credshift::engine::{self, ConflictPolicy, MigrationRequest};
use credshift::store::StoreSpec;
use credshift::store::memory::MemStore;
use support::kinds::*;
use support::*;

/// A crash case's stores: a source of `t`'s kind (the ids fit) filled once
/// with the items to move, and `t` holding a different value of its own
/// for the last id. Returns the source's spec, the items and `t`'s values
/// before the migration.
fn crash_case<'a>(
    sources: &'a [KindCase],
    t: &KindCase,
) -> (&'a str, Vec<Credential>, BTreeMap<String, String>) {
    let src = sources.iter().find(|s| s.name == t.name).unwrap();
    let items: Vec<Credential> = src
        .ids
        .iter()
        .map(|id| cred(id, &format!("moved-{}-{id}", t.name)))
        .collect();
    if values(&src.spec).is_empty() {
        fill(&src.spec, &items);
    }
    fill(&t.spec, &[cred(t.ids[2], "the target's own value-000003")]);
    (&src.spec, items, values(&t.spec))
}

/// `migrate --on-conflict overwrite` from `src` into `t`, aborted after
/// journal record `k`: (output, stderr).
fn crashed_migration(
    state: &Path,
    src: &str,
    t: &KindCase,
    k: usize,
) -> (std::process::Output, String) {
    let (out, _, stderr) = run(binary_for(state, &[src, &t.spec])
        .args(["migrate", "--from", src, "--to", &t.spec])
        .args(["--yes", "--json", "--on-conflict", "overwrite"])
        .env("CREDSHIFT_CRASH_AT", k.to_string()));
    (out, stderr)
}

/// The id of the latest migration in `state`.
fn latest_migration(state: &Path, spec: &str) -> String {
    let (h, hist, _) = run(binary(state, spec).args(["history", "--json"]));
    assert_eq!(h.status.code(), Some(0));
    json(&hist)[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn overwrite_then_rollback_restores_the_old_value_on_every_writable_kind() {
    let dir = tempfile::tempdir().unwrap();
    // Bundle, prompttrain-db and laravel:postgres too (gap 4 of the audit;
    // finding A2's compare-and-write restores each old value).
    let cases = all_kinds(dir.path(), "ow");
    if services_required() {
        assert_eq!(cases.len(), 11);
    }
    for k in cases {
        let state = dir.path().join(format!("state-{}", k.name));
        let old = cred(k.ids[0], &format!("old-{}-value-0000000001", k.name));
        fill(&k.spec, std::slice::from_ref(&old));
        let before = values(&k.spec);
        let new: Vec<Credential> = k
            .ids
            .iter()
            .map(|id| cred(id, &format!("new-{}-value-{id}", k.name)))
            .collect();
        let src_spec = StoreSpec::Dotenv(dir.path().join(format!("{}-src.env", k.name)));
        let source = MemStore::new(src_spec.clone(), new.clone(), false);
        let to: StoreSpec = k.spec.parse().unwrap();
        let req = MigrationRequest {
            from: src_spec,
            to: to.clone(),
            policy: ConflictPolicy::Overwrite,
            selection: None,
            delete_source: false,
        };
        let h = engine::start_with_stores(
            req,
            Box::new(source),
            open(&k.spec),
            &state,
            &opts(),
            Default::default(),
        )
        .unwrap();
        for _ in h.events.iter() {}
        let r = h.join().unwrap();
        assert_eq!((r.copied, r.failed), (3, 0), "{}: {r:?}", k.name);
        assert_eq!(
            values(&k.spec)[k.ids[0]],
            new[0].secret.expose(),
            "{}: overwritten",
            k.name
        );
        let back = engine::rollback(&state, &r.migration_id, &opts()).unwrap();
        assert!(back.rolled_back, "{}: {back:?}", k.name);
        assert_eq!(values(&k.spec), before, "{}: the old value is back", k.name);
    }
}

#[test]
fn a_crash_into_a_sql_keyring_laravel_or_multi_file_target_is_rolled_back_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    // Gap 3 of the audit: the encrypted, bundle, model-forge,
    // prompttrain-db and laravel:postgres targets too.
    let wanted = [
        "sqlite",
        "postgres",
        "keyring",
        "laravel",
        "prompttrain",
        "encrypted",
        "bundle",
        "modelforge",
        "prompttrain-db",
        "laravel-postgres",
    ];
    let sources = all_kinds(dir.path(), "src");
    // Records: started 1, planned 2, backup_written 3, batch 1 (one item)
    // 4-5, batch 2 (two items) 6-7: after the first item, and between a
    // batch's begin and its outcome (tests/it/engine_crash.rs covers every
    // record of a dotenv migration).
    for k in [5usize, 6] {
        for mode in ["rollback", "resume"] {
            let tag = format!("crash{k}{mode}");
            // The kinds added for gap 3 crash at K=6 only (mid-batch), to
            // keep the run short.
            for t in only(all_kinds(dir.path(), &tag), &wanted)
                .into_iter()
                .filter(|t| k == 6 || wanted[..5].contains(&t.name))
            {
                let what = format!("{} K={k} {mode}", t.name);
                let (src, items, before) = crash_case(&sources, &t);
                let state = dir.path().join(format!("state-{tag}-{}", t.name));
                let (out, stderr) = crashed_migration(&state, src, &t, k);
                assert!(
                    crashed(&out, &stderr),
                    "{what}: the crash did not fire: {stderr}"
                );
                let id = latest_migration(&state, &t.spec);
                let (out, stdout, stderr) = run(binary_for(&state, &[src, &t.spec]).args([
                    mode,
                    "--migration-id",
                    &id,
                    "--yes",
                    "--json",
                ]));
                assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
                let now = values(&t.spec);
                if mode == "rollback" {
                    assert_eq!(now, before, "{what}");
                } else {
                    let want: BTreeMap<String, String> = items
                        .iter()
                        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
                        .collect();
                    assert_eq!(now, want, "{what}");
                }
                // Leave the shared services as they were for the next case.
                cleared(&t);
            }
        }
    }
}

/// The multi-file target killed in the middle of writing one of its files
/// (`CREDSHIFT_CRASH_IN_WRITE`: the temp file written, not yet renamed):
/// rollback gives back the old target, resume the full one.
#[test]
fn a_kill_mid_file_write_into_a_prompttrain_dir_is_rolled_back_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [
        "account:acc_alpha/api_key",
        "account:acc_bravo/api_key",
        "account:acc_charlie/api_key",
    ];
    let items: Vec<Credential> = ids
        .iter()
        .map(|id| cred(id, &format!("moved-value-{id}")))
        .collect();
    let src = format!("prompttrain:{}", dir.path().join("src").display());
    fill(&src, &items);
    for mode in ["rollback", "resume"] {
        let to = format!("prompttrain:{}", dir.path().join(mode).display());
        fill(&to, &[cred(ids[2], "the target's own value-000003")]);
        let before = values(&to);
        let state = dir.path().join(format!("state-{mode}"));
        let (out, _, stderr) = run(binary(&state, &to)
            .args(["migrate", "--from", &src, "--to", &to])
            .args(["--yes", "--json", "--on-conflict", "overwrite"])
            .env("CREDSHIFT_CRASH_IN_WRITE", "bravo.credentials.json"));
        assert!(
            out.status.code().is_none(),
            "{mode}: did not crash: {stderr}"
        );
        assert!(
            stderr.contains("CREDSHIFT_CRASH_IN_WRITE"),
            "{mode}: {stderr}"
        );
        let (_, hist, _) = run(binary(&state, &to).args(["history", "--json"]));
        let id = json(&hist)[0]["id"].as_str().unwrap().to_string();
        let (out, stdout, stderr) =
            run(binary(&state, &to).args([mode, "--migration-id", &id, "--yes", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{mode}: {stdout}{stderr}");
        let want: BTreeMap<String, String> = if mode == "rollback" {
            before
        } else {
            items
                .iter()
                .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
                .collect()
        };
        assert_eq!(values(&to), want, "{mode}");
    }
}

/// Issue 21 point 6 on every store kind that can delete: a value another
/// client wrote between credshift's check and its delete stays and is
/// reported `Changed`; the value credshift checked is deleted; nothing is
/// `Absent`. Each store compares inside its own delete (a transaction, one
/// rewrite under its lock, the keyring item it read): without that
/// comparison the first assertion fails.
#[test]
fn a_value_changed_before_a_compared_delete_stays_on_every_store_kind() {
    use credshift::store::DeleteIf;
    let dir = tempfile::tempdir().unwrap();
    let cases = all_kinds(dir.path(), "cad");
    let mut bad = Vec::new();
    for k in cases {
        let what = k.name;
        fill(
            &k.spec,
            &[
                cred(k.ids[0], "checked-by-credshift-0000000001"),
                cred(k.ids[1], "checked-by-credshift-0000000002"),
            ],
        );
        let s = open(&k.spec);
        let ids: Vec<_> = k.ids.iter().map(|i| i.parse().unwrap()).collect();
        // What credshift checked: the values as the store returns them.
        let checked: Vec<Credential> = s
            .read_many(&ids[..2])
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        // Another client (its own connection or file handle) changes one.
        open(&k.spec)
            .write(&cred(k.ids[0], "another-clients-value-000000001"))
            .unwrap();
        let gone = cred(k.ids[2], "never-there-000000000000000003");
        let r: Vec<DeleteIf> = s
            .delete_if_unchanged(&[checked[0].clone(), checked[1].clone(), gone])
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{what}: {e}")))
            .collect();
        let now = values(&k.spec);
        // Every kind is checked before the test fails, so one run names
        // every store whose comparison is missing.
        if r != [DeleteIf::Changed, DeleteIf::Deleted, DeleteIf::Absent]
            || now.get(k.ids[0]).map(String::as_str) != Some("another-clients-value-000000001")
            || now.contains_key(k.ids[1])
        {
            bad.push(format!("{what}: {r:?}, left {:?}", now.keys()));
        }
        // Leave the shared services as they were.
        let _ = s.delete(&ids[0]);
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Finding A2 on every store kind: a compare-and-write (what a rollback
/// restores an overwritten or deleted value with) keeps a value another
/// client wrote after credshift read it, and says `Changed`; writes where
/// the store holds what was read; writes an item expected absent only
/// while it is absent.
#[test]
fn a_value_changed_before_a_compared_write_stays_on_every_store_kind() {
    use credshift::store::{Replace, ReplaceIf};
    let dir = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    let cases = all_kinds(dir.path(), "caw");
    if services_required() {
        assert_eq!(cases.len(), 11, "every kind, with postgres and the keyring");
    }
    for k in cases {
        let what = k.name;
        fill(
            &k.spec,
            &[
                cred(k.ids[0], "written-by-credshift-0000000001"),
                cred(k.ids[1], "written-by-credshift-0000000002"),
            ],
        );
        let s = open(&k.spec);
        let ids: Vec<_> = k.ids.iter().map(|i| i.parse().unwrap()).collect();
        let seen: Vec<Credential> = s
            .read_many(&ids[..2])
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        open(&k.spec)
            .write(&cred(k.ids[0], "another-clients-value-000000001"))
            .unwrap();
        let put = |i: usize, expected: Option<Credential>| Replace {
            expected,
            new: cred(k.ids[i], &format!("value-from-before-00000000{i}")),
        };
        let r: Vec<ReplaceIf> = s
            .replace_if_unchanged(&[
                put(0, Some(seen[0].clone())),
                put(1, Some(seen[1].clone())),
                put(2, None),
            ])
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{what}: {e}")))
            .collect();
        let now = values(&k.spec);
        // Expected absent, but another client wrote it first: kept.
        open(&k.spec)
            .write(&cred(k.ids[2], "another-clients-value-000000003"))
            .unwrap();
        let late = s.replace_if_unchanged(&[put(2, None)]).pop().unwrap();
        let after = values(&k.spec);
        if r != [ReplaceIf::Changed, ReplaceIf::Replaced, ReplaceIf::Replaced]
            || now.get(k.ids[0]).map(String::as_str) != Some("another-clients-value-000000001")
            || now.get(k.ids[1]).map(String::as_str) != Some("value-from-before-000000001")
            || now.get(k.ids[2]).map(String::as_str) != Some("value-from-before-000000002")
            || !matches!(late, Ok(ReplaceIf::Changed))
            || after.get(k.ids[2]).map(String::as_str) != Some("another-clients-value-000000003")
        {
            bad.push(format!(
                "{what}: {r:?} then {late:?}, left {now:?} / {after:?}"
            ));
        }
        let _ = s.delete_many(&ids);
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Gaps 1 and 2 of the audit: every source kind migrated with
/// `--delete-source` (cleanup empties it of what moved), verified, then
/// rolled back. The source is then what it was: row for row for every
/// kind, and byte for byte for the plaintext files (a prompttrain dir,
/// model-forge's config). Encrypted files are sealed again with a fresh
/// nonce, so only their items can match.
#[test]
fn a_source_emptied_by_delete_source_is_verified_then_rolled_back_to_what_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = [
        "prompttrain",
        "modelforge",
        "laravel",
        "laravel-postgres",
        "prompttrain-db",
        "keyring",
        "sqlite",
        "postgres",
        "encrypted",
        "bundle",
    ];
    let plaintext = ["prompttrain", "modelforge"];
    let mut bad = Vec::new();
    for k in only(all_kinds(dir.path(), "ds"), &wanted) {
        let what = k.name;
        let items: Vec<Credential> = k
            .ids
            .iter()
            .map(|id| cred(id, &format!("moved-{what}-{id}")))
            .collect();
        fill(&k.spec, &items);
        let before_rows = rows(&k.spec);
        let before_files = files(&k.spec);
        let to = format!(
            "sqlite:{}",
            dir.path().join(format!("ds-{what}-to.db")).display()
        );
        let state = dir.path().join(format!("state-ds-{what}"));
        let bin = || binary_for(&state, &[&k.spec, &to]);
        let (out, stdout, stderr) = run(bin()
            .args(["migrate", "--from", &k.spec, "--to", &to])
            .args(["--yes", "--json", "--delete-source"]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        let r = json(&stdout);
        assert_eq!(r["source_deleted"], 3, "{what}: {stdout}");
        let id = r["migration_id"].as_str().unwrap().to_string();
        let left = values(&k.spec);
        assert!(
            k.ids.iter().all(|i| !left.contains_key(*i)),
            "{what}: cleanup left {left:?}"
        );
        let (out, stdout, stderr) = run(bin().args(["verify", "--migration-id", &id, "--json"]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        assert_eq!(json(&stdout)["verified"], 3, "{what}: {stdout}");
        let (out, stdout, stderr) =
            run(bin().args(["rollback", "--migration-id", &id, "--yes", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
        if rows(&k.spec) != before_rows {
            bad.push(format!(
                "{what}: rows {:?} != {before_rows:?}",
                rows(&k.spec)
            ));
        }
        if plaintext.contains(&what) && files(&k.spec) != before_files {
            let now = files(&k.spec);
            let show = |m: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
                m.iter()
                    .map(|(p, b)| format!("{p}: {}", String::from_utf8_lossy(b)))
                    .collect()
            };
            bad.push(format!(
                "{what}: files {:#?} != {:#?}",
                show(&now),
                show(&before_files)
            ));
        }
        assert!(values(&to).is_empty(), "{what}: the target keeps nothing");
        cleared(&k);
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Issue 21 point 9: a crash during a resume and during a rollback, into a
/// SQL, a keyring, a Laravel and a multi-file target. The migration is
/// aborted after its first item; then the recovery itself is aborted at
/// its K-th record (asserted: killed, the journal grew by exactly K
/// records, still "interrupted"); then one more recovery must give the
/// full target (resume) or exactly the old one (rollback): nothing lost,
/// including the target's own value the migration overwrote.
#[test]
fn a_crash_during_resume_or_rollback_of_a_sql_keyring_laravel_or_multi_file_target_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = ["sqlite", "postgres", "keyring", "laravel", "prompttrain"];
    let sources = kinds(dir.path(), "rsrc");
    // (crashed recovery, its K, the recovery that finishes). Every resume
    // here writes `resumed`, a batch's begin and done and `finished`;
    // every rollback `rollback_started`, one `undone` per written item
    // (one here), `rolled_back` and `finished`: K=2 and K=3 always come
    // before the end.
    let flows = [
        ("resume", 2usize, "resume"),
        ("resume", 3, "rollback"),
        ("rollback", 2, "rollback"),
        // After `rolled_back`, before `finished`.
        ("rollback", 3, "rollback"),
    ];
    for (n, (crash_in, k, then)) in flows.into_iter().enumerate() {
        let tag = format!("rcrash{n}");
        for t in only(kinds(dir.path(), &tag), &wanted) {
            let what = format!("{}: {crash_in} crashed at K={k}, then {then}", t.name);
            let (src, items, before) = crash_case(&sources, &t);
            let state = dir.path().join(format!("state-{tag}-{}", t.name));
            // Aborted after the first item (the other crash test: records
            // 1-3, then the first batch 4-5).
            let (out, stderr) = crashed_migration(&state, src, &t, 5);
            assert!(
                crashed(&out, &stderr),
                "{what}: the migration's crash: {stderr}"
            );
            let id = latest_migration(&state, &t.spec);
            let lines = journal_lines(&state, &id);
            let (out, stdout, stderr) = run(binary(&state, &t.spec)
                .args([crash_in, "--migration-id", &id, "--yes", "--json"])
                .env("CREDSHIFT_CRASH_AT", k.to_string()));
            assert!(
                crashed(&out, &stderr),
                "{what}: the recovery's crash did not fire: {stdout}{stderr}"
            );
            assert_eq!(journal_lines(&state, &id), lines + k, "{what}: K records");
            let (_, hist, _) = run(binary(&state, &t.spec).args(["history", "--json"]));
            let status = &json(&hist)[0]["status"];
            // A rollback that wrote `rolled_back` reads as rolled back.
            let rolled = crash_in == "rollback" && k == 3;
            let want = if rolled { "rolled_back" } else { "interrupted" };
            assert_eq!(status, want, "{what}");
            let (out, stdout, stderr) =
                run(binary(&state, &t.spec).args([then, "--migration-id", &id, "--yes", "--json"]));
            assert_eq!(out.status.code(), Some(0), "{what}: {stdout}{stderr}");
            let now = values(&t.spec);
            if then == "rollback" {
                assert_eq!(now, before, "{what}");
            } else {
                let want: BTreeMap<String, String> = items
                    .iter()
                    .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
                    .collect();
                assert_eq!(now, want, "{what}");
            }
            cleared(&t);
        }
    }
}
