//! Issue #26 (the wizard's memory at verify and cleanup): a recovery reads
//! its journal whole once, under the locks, and folds the records into the
//! state as they are parsed; before the locks only the first record.

use super::recovery::env_file;
use super::*;
use crate::engine::jsonl::reads;
use crate::engine::state::State;

fn migrated(dir: &std::path::Path) -> (std::path::PathBuf, MigrationId) {
    let state = dir.join("state");
    let from = env_file(dir, "src.env", "A_KEY=sk-aaaaaaaaaaaa\nB_KEY=sk-bbbbbbbbbbbb\n");
    let to = env_file(dir, "dst.env", "");
    let rq = MigrationRequest {
        from,
        to,
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source: false,
    };
    let r = run(rq, &state, &KeyOptions::default(), None, |_| {}).unwrap();
    assert_eq!(r.copied, 2, "{r:?}");
    (state, r.migration_id)
}

#[test]
fn verify_and_cleanup_read_the_journal_whole_once() {
    let dir = tempfile::tempdir().unwrap();
    let (state, id) = migrated(dir.path());
    // The calls below run on this thread; the count is this thread's.
    reads::take("journal.jsonl");
    let r = crate::engine::recovery::verify(&state, &id, &KeyOptions::default()).unwrap();
    assert_eq!((r.verified, r.failed), (2, 0), "{r:?}");
    assert_eq!(reads::take("journal.jsonl"), 1, "verify");
    let r = crate::engine::recovery::cleanup(&state, &id, &KeyOptions::default()).unwrap();
    assert_eq!(r.source_deleted, 2, "{r:?}");
    // One status check before the locks, one read under them.
    assert_eq!(reads::take("journal.jsonl"), 2, "cleanup");
}

#[test]
fn the_head_and_the_folded_state_agree_with_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (state, id) = migrated(dir.path());
    let path = crate::engine::state::migration_dir(&state, &id).join("journal.jsonl");
    let lines = crate::engine::journal::read_lines(&path).unwrap();
    let whole = State::from_records(id.clone(), path.parent().unwrap().into(), &lines).unwrap();
    let folded = State::load(&state, &id).unwrap();
    assert_eq!(format!("{whole:?}"), format!("{folded:?}"));
    let head = State::load_head(&state, &id).unwrap();
    assert_eq!(format!("{:?}", whole.head()), format!("{head:?}"));
    assert_eq!((head.from.as_str(), head.to.as_str()), (whole.from.as_str(), whole.to.as_str()));
    assert!(head.recorded.planned.is_none() && whole.recorded.planned.is_some());
    // A journal whose first line is torn: the head fails as the state does.
    std::fs::write(&path, "{\"seq\":1,\"at\":").unwrap();
    let a = State::load(&state, &id).unwrap_err().to_string();
    let b = State::load_head(&state, &id).unwrap_err().to_string();
    assert_eq!(a, b);
}

#[test]
fn cleanup_checks_the_status_again_under_its_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (state, id) = migrated(dir.path());
    // Rolled back by "another process" after cleanup's first check.
    crate::engine::recovery::hooks::set_before_locks(|state, id| {
        crate::engine::recovery::rollback(state, id, &KeyOptions::default()).unwrap();
    });
    match crate::engine::recovery::cleanup(&state, &id, &KeyOptions::default()) {
        Err(EngineError::Refused(m)) => assert!(m.contains("rolled_back"), "{m}"),
        other => panic!("{other:?}"),
    }
    let st = State::load(&state, &id).unwrap();
    assert_eq!(st.recorded.cleanup, None, "no cleanup record after the refusal");
}

/// A verify stopped before it read everything is audited as cancelled,
/// never as "verified" with partial counts (audit10 L3).
#[test]
fn a_cancelled_verify_is_audited_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (state, id) = migrated(dir.path());
    let ctl = Control::default();
    ctl.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = crate::engine::recovery::verify_with(&state, &id, &KeyOptions::default(), &ctl)
        .unwrap();
    assert!(r.cancelled, "{r:?}");
    let audit = crate::engine::audit::read(&state).unwrap();
    let last = audit.iter().rev().find(|a| a.action == "verify").unwrap();
    assert_eq!(last.outcome, "cancelled", "{audit:?}");
    // An uncancelled one still says verified.
    crate::engine::recovery::verify(&state, &id, &KeyOptions::default()).unwrap();
    let audit = crate::engine::audit::read(&state).unwrap();
    let last = audit.iter().rev().find(|a| a.action == "verify").unwrap();
    assert_eq!(last.outcome, "verified", "{audit:?}");
}

/// A cleanup stopped before its first batch leaves the migration
/// interrupted with only its cleanup to finish: the detail says so (the
/// wizard's Resume dialog then says it deletes from the source), and a
/// finished one no longer does (audit10 M1).
#[test]
fn a_stopped_cleanup_is_told_apart_in_the_detail() {
    let dir = tempfile::tempdir().unwrap();
    let (state, id) = migrated(dir.path());
    let d = crate::engine::recovery::detail(&state, &id).unwrap();
    assert!(!d.cleanup_interrupted);
    let ctl = Control::default();
    ctl.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = crate::engine::recovery::cleanup_with(&state, &id, &KeyOptions::default(), &ctl)
        .unwrap();
    assert!(r.cancelled, "{r:?}");
    let d = crate::engine::recovery::detail(&state, &id).unwrap();
    assert_eq!(d.entry.status, MigrationStatus::Interrupted);
    assert!(d.cleanup_interrupted);
    crate::engine::recovery::cleanup(&state, &id, &KeyOptions::default()).unwrap();
    let d = crate::engine::recovery::detail(&state, &id).unwrap();
    assert!(!d.cleanup_interrupted);
}
