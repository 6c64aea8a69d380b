//! Issue 21: unreadable is not absent (Why 3), a store that lies on
//! read-back, a value someone else changed before a rollback, and restore
//! planned like a migration.

use super::recovery::{env_file, env_values};
use super::*;
use crate::engine::journal::{JournalEvent, UndoOutcome};
use crate::engine::plan::TARGET_UNREADABLE;

fn one(items: &[(&str, &str)]) -> Vec<Credential> {
    items.iter().map(|(id, v)| cred(id, v)).collect()
}

#[test]
fn a_target_value_that_cannot_be_read_is_a_conflict_never_replaced() {
    for policy in [ConflictPolicy::Skip, ConflictPolicy::Overwrite] {
        let state = tempfile::tempdir().unwrap();
        let src = MemStore::new(
            StoreSpec::Dotenv("a.env".into()),
            one(&[
                ("env/OPENAI_API_KEY", "sk-source-value-1"),
                ("env/B", "b-value-2"),
            ]),
            true,
        );
        let dst = MemStore::new(
            StoreSpec::Dotenv("b.env".into()),
            one(&[("env/OPENAI_API_KEY", "another-apps-value")]),
            true,
        );
        // The target lists the item but cannot read it (a non-UTF-8 secret).
        dst.fail_matching(Some(Op::Read), "env/OPENAI_API_KEY");
        let p = plan(&src, &dst, policy, None).unwrap();
        let item = &p.items[1];
        assert_eq!(item.id.to_string(), "env/OPENAI_API_KEY");
        assert_eq!(item.action, Action::Conflict, "{policy:?}: {p:?}");
        assert!(
            item.warnings.iter().any(|w| w.contains(TARGET_UNREADABLE)),
            "{:?}",
            item.warnings
        );
        assert_eq!((p.counts.copy, p.counts.conflict), (1, 1), "{policy:?}");
        let (r, _) = run_with(
            req(&src, &dst, policy),
            Box::new(src.clone()),
            Box::new(dst.clone()),
            state.path(),
        );
        assert_eq!((r.copied, r.conflicts), (1, 1), "{policy:?}: {r:?}");
        assert!(values(&dst).contains(&(
            "env/OPENAI_API_KEY".to_string(),
            "another-apps-value".to_string()
        )));
        let dir = state::migration_dir(state.path(), &r.migration_id);
        assert!(!dir.join(state::TARGET_BACKUP_FILE).exists());
    }
}

#[test]
fn a_store_that_returns_a_wrong_value_on_read_back_fails_the_item() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(5);
    let (r, _) = run_faulty(
        &src,
        &dst,
        ConflictPolicy::Skip,
        "lie:svc02/*",
        state.path(),
    );
    assert_eq!((r.verified, r.failed), (4, 1), "{r:?}");
    assert!(!r.rolled_back);
    assert_eq!(r.failures[0].id.to_string(), "svc02/api_key");
    assert!(
        r.failures[0].error.contains("differs from the one written"),
        "{:?}",
        r.failures
    );
    // What the target returned was sealed into the migration folder
    // before the write was undone.
    let found = state::migration_dir(state.path(), &r.migration_id).join("found");
    assert_eq!(std::fs::read_dir(&found).unwrap().count(), 1);
    assert!(!values(&dst).iter().any(|(id, _)| id == "svc02/api_key"));
}

#[test]
fn a_value_someone_else_wrote_after_the_migration_survives_its_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let from = env_file(
        dir.path(),
        "src.env",
        "A_KEY=sk-ours-aaaaaaaaaaaa\nB_KEY=sk-ours-bbbbbbbbbbbb\n",
    );
    let to = env_file(dir.path(), "dst.env", "B_KEY=old-target-value-bbbb\n");
    let opts = KeyOptions::default();
    let rq = MigrationRequest {
        from: from.clone(),
        to: to.clone(),
        policy: ConflictPolicy::Overwrite,
        selection: None,
        delete_source: false,
    };
    let r = run(rq, &state, &opts, None, |_| {}).unwrap();
    assert_eq!(r.copied, 2, "{r:?}");
    // Another client replaces both values after the migration.
    let other = crate::store::open(&to, &opts).unwrap();
    other
        .write(&cred("env/A_KEY", "theirs-aaaaaaaaaa"))
        .unwrap();
    other
        .write(&cred("env/B_KEY", "theirs-bbbbbbbbbb"))
        .unwrap();
    let back = rollback(&state, &r.migration_id, &opts).unwrap();
    assert!(back.rolled_back, "{back:?}");
    assert_eq!(
        env_values(&to),
        [
            ("env/A_KEY".to_string(), "theirs-aaaaaaaaaa".to_string()),
            ("env/B_KEY".to_string(), "theirs-bbbbbbbbbb".to_string())
        ]
    );
    let d = detail(&state, &r.migration_id).unwrap();
    let left: Vec<String> = d
        .timeline
        .iter()
        .filter(|t| {
            t.event == JournalEvent::Undone
                && t.detail.as_deref() == Some(UndoOutcome::LeftChanged.as_str())
        })
        .filter_map(|t| t.id.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(left, ["env/B_KEY", "env/A_KEY"], "{:?}", d.timeline);
    // Typed and in the words of the report: both kept, not put back.
    let kept: Vec<String> = back.kept_changed.iter().map(ToString::to_string).collect();
    assert_eq!(kept, ["env/A_KEY", "env/B_KEY"], "{back:?}");
    assert_eq!(
        back.warnings
            .iter()
            .filter(|w| w.contains("the rollback kept it"))
            .count(),
        2,
        "{:?}",
        back.warnings
    );
}

/// Finding A2: another client writes between the rollback's read of an
/// overwritten item and its restore. The restore is a compare-and-write,
/// so their value stays, typed as kept (`left_changed`, `kept_changed`);
/// an unconditional write (what rollback did before) would lose it.
#[test]
fn a_value_written_between_the_rollback_read_and_its_restore_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let from = env_file(dir.path(), "src.env", "B_KEY=sk-ours-bbbbbbbbbbbb\n");
    let to = env_file(dir.path(), "dst.env", "B_KEY=old-target-value-bbbb\n");
    let opts = KeyOptions::default();
    let rq = MigrationRequest {
        from: from.clone(),
        to: to.clone(),
        policy: ConflictPolicy::Overwrite,
        selection: None,
        delete_source: false,
    };
    let r = run(rq, &state, &opts, None, |_| {}).unwrap();
    assert_eq!(r.copied, 1, "{r:?}");
    let fired = crate::store::test_support::write_after_next_read(
        crate::store::open(&to, &opts).unwrap(),
        cred("env/B_KEY", "theirs-bbbbbbbbbb"),
    );
    let back = rollback(&state, &r.migration_id, &opts).unwrap();
    assert!(fired.get(), "the rollback never read the target");
    assert_eq!(
        env_values(&to),
        [("env/B_KEY".to_string(), "theirs-bbbbbbbbbb".to_string())]
    );
    assert!(back.rolled_back, "{back:?}");
    let kept: Vec<String> = back.kept_changed.iter().map(ToString::to_string).collect();
    assert_eq!(kept, ["env/B_KEY"], "{back:?}");
}

#[test]
fn restore_plans_first_and_skips_values_changed_since_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let spec = env_file(
        dir.path(),
        "app.env",
        "A_KEY=sk-backed-up-aaaaaaaa\nB_KEY=sk-backed-up-bbbbbbbb\nC_KEY=sk-backed-up-cccccccc\n",
    );
    let opts = KeyOptions::default();
    let out = dir.path().join("app.backup");
    let store = crate::store::open(&spec, &opts).unwrap();
    backup(
        store.as_ref(),
        &out,
        crate::engine::recovery::KeyOut::Kept(&state),
        &opts,
    )
    .unwrap();
    // Since the backup: B changed, C was deleted.
    store
        .write(&cred("env/B_KEY", "changed-since-bbbbbb"))
        .unwrap();
    assert!(store.delete(&"env/C_KEY".parse().unwrap()).unwrap());
    let p = restore_plan(&out, &spec, &state, &opts, ConflictPolicy::Skip).unwrap();
    let c = &p.counts;
    assert_eq!(
        (c.copy, c.conflict, c.skip_identical, c.overwrite),
        (1, 1, 1, 0),
        "{p:?}"
    );
    let r = restore(&out, &spec, &state, &opts).unwrap();
    assert_eq!((r.copied, r.conflicts), (1, 1), "{r:?}");
    let now = env_values(&spec);
    assert!(
        now.contains(&("env/B_KEY".into(), "changed-since-bbbbbb".into())),
        "{now:?}"
    );
    assert!(now.contains(&("env/C_KEY".into(), "sk-backed-up-cccccccc".into())));
    // Asked for: overwrite, and its rollback puts the changed value back.
    let p = restore_plan(&out, &spec, &state, &opts, ConflictPolicy::Overwrite).unwrap();
    assert_eq!(p.counts.overwrite, 1, "{p:?}");
    let r = restore_with(&out, &spec, &state, &opts, ConflictPolicy::Overwrite).unwrap();
    assert_eq!(r.copied, 1, "{r:?}");
    assert!(env_values(&spec).contains(&("env/B_KEY".into(), "sk-backed-up-bbbbbbbb".into())));
    rollback(&state, &r.migration_id, &opts).unwrap();
    assert!(env_values(&spec).contains(&("env/B_KEY".into(), "changed-since-bbbbbb".into())));
}

/// A source that scans fine but cannot read one id by itself (as a
/// keyring item whose value became unreadable after the plan).
struct UnreadableLater(MemStore, &'static str);

impl Store for UnreadableLater {
    forward!(0; spec, probe, list, write, delete, read_all, identity);
    fn read(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        if id.to_string() == self.1 {
            return Err(StoreError::item(id, "the stored value is not UTF-8 text"));
        }
        self.0.read(id)
    }
}

#[test]
fn cleanup_keeps_a_source_item_it_cannot_read() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(3);
    let mut rq = req(&src, &dst, ConflictPolicy::Skip);
    rq.delete_source = true;
    let (r, _) = run_with(
        rq,
        Box::new(UnreadableLater(src.clone(), "svc01/api_key")),
        Box::new(dst.clone()),
        state.path(),
    );
    assert_eq!((r.copied, r.source_deleted), (3, 2), "{r:?}");
    assert_eq!(r.source_delete_failed.len(), 1, "{r:?}");
    assert_eq!(r.source_delete_failed[0].id.to_string(), "svc01/api_key");
    assert!(r.source_delete_failed[0].error.contains("not UTF-8"));
    let left: Vec<String> = values(&src).into_iter().map(|(id, _)| id).collect();
    assert_eq!(left, ["svc01/api_key"]);
}

/// A target that keeps what is written, but whose read-back returns one
/// wrong value and whose next read another: someone else wrote between
/// the read-back and the undo.
struct ChangesAgain(MemStore);

impl Store for ChangesAgain {
    forward!(0; spec, probe, list, write, write_many, delete, read_all, identity);
    fn read(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        Ok(Some(cred(&id.to_string(), "written-by-someone-else-later")))
    }
    fn read_many(&self, ids: &[CredentialId]) -> Vec<StoreResult<Option<Credential>>> {
        ids.iter()
            .map(|id| Ok(Some(cred(&id.to_string(), "a-wrong-value-read-back"))))
            .collect()
    }
}

#[test]
fn a_wrong_read_back_is_undone_only_while_the_target_still_holds_what_was_read() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(1);
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(ChangesAgain(dst.clone())),
        state.path(),
    );
    assert_eq!(r.failed, 1, "{r:?}");
    assert!(
        r.failures[0].error.contains("left_changed"),
        "{:?}",
        r.failures
    );
    // Not deleted: the value there is not the one credshift checked.
    assert_eq!(values(&dst).len(), 1);
}

/// Finding A2 on the source end: cleanup deleted the item, another client
/// writes it back between the rollback's read of the source and the put
/// back. Their value stays, reported as `source_changed`.
#[test]
fn a_source_value_written_between_the_rollback_read_and_its_put_back_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let from = env_file(dir.path(), "src.env", "A_KEY=sk-ours-aaaaaaaaaaaa\n");
    let to = env_file(dir.path(), "dst.env", "");
    let opts = KeyOptions::default();
    let rq = MigrationRequest {
        from: from.clone(),
        to: to.clone(),
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source: true,
    };
    let r = run(rq, &state, &opts, None, |_| {}).unwrap();
    assert_eq!((r.copied, r.source_deleted), (1, 1), "{r:?}");
    let fired = crate::store::test_support::write_after_next_read(
        crate::store::open(&from, &opts).unwrap(),
        cred("env/A_KEY", "theirs-aaaaaaaaaa"),
    );
    let back = rollback(&state, &r.migration_id, &opts).unwrap();
    assert!(fired.get(), "the rollback never read the source");
    assert_eq!(
        env_values(&from),
        [("env/A_KEY".to_string(), "theirs-aaaaaaaaaa".to_string())]
    );
    let kept: Vec<String> = back.kept_changed.iter().map(ToString::to_string).collect();
    assert_eq!(kept, ["env/A_KEY"], "{back:?}");
    let d = detail(&state, &r.migration_id).unwrap();
    assert!(
        d.timeline
            .iter()
            .any(|t| t.detail.as_deref() == Some(UndoOutcome::SourceChanged.as_str())),
        "{:?}",
        d.timeline
    );
}
