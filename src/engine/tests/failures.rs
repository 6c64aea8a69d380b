//! Copying, and writes that fail: kept, listed, or rolled back.

use super::*;

#[test]
fn copies_verifies_and_reports_with_progress() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(5);
    let (r, events) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
    );
    assert_eq!((r.total, r.copied, r.verified, r.failed), (5, 5, 5, 0));
    assert!(!r.rolled_back);
    assert_eq!(values(&dst), values(&src));
    let backup = r.backup.clone().unwrap();
    assert!(backup.exists());
    let verified = events
        .iter()
        .filter(|e| matches!(e, Progress::ItemVerified { .. }))
        .count();
    assert_eq!(verified, 5);
    assert!(matches!(events.last(), Some(Progress::Finished(_))));
    let last_counts = events
        .iter()
        .rev()
        .find_map(|e| match e {
            Progress::Counts(c) => Some(*c),
            _ => None,
        })
        .unwrap();
    assert_eq!((last_counts.done, last_counts.total), (5, 5));
    let h = history(state.path()).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].status, MigrationStatus::Completed);
    assert_eq!(h[0].copied, 5);
    // A second run finds everything identical and writes nothing.
    let (r2, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
    );
    assert_eq!((r2.copied, r2.skipped), (0, 5));
}

#[test]
fn most_writes_failing_rolls_back_to_exactly_the_previous_target() {
    let state = tempfile::tempdir().unwrap();
    let mut items = source_items(10);
    items.push(cred("svc00/old", "keep-me"));
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), items, true);
    let before = vec![
        cred("svc01/api_key", "the-old-target-value"),
        cred("zz/unrelated", "untouched"),
    ];
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), before, true);
    let original = values(&dst);
    // svc02..svc09 fail: 8 of 11 writes (73%).
    let (r, events) = run_faulty(
        &src,
        &dst,
        ConflictPolicy::Overwrite,
        "write:svc02*,write:svc03*,write:svc04*,write:svc05*,write:svc06*,write:svc07*,write:svc08*,write:svc09*",
        state.path(),
    );
    assert!(r.rolled_back, "{r:?}");
    assert!(
        r.rollback_reason
            .as_deref()
            .unwrap()
            .contains("more than half")
    );
    assert_eq!(values(&dst), original, "target exactly as before");
    assert_eq!(r.copied, 0);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Progress::RollingBack { .. }))
    );
    assert_eq!(src.snapshot().len(), 11, "source untouched");
    assert_eq!(
        history(state.path()).unwrap()[0].status,
        MigrationStatus::RolledBack
    );
}

#[test]
fn a_few_failing_writes_keep_the_rest_and_list_the_failures() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(10);
    let (r, _) = run_faulty(
        &src,
        &dst,
        ConflictPolicy::Skip,
        "write:svc03/*,write:svc07/*",
        state.path(),
    );
    assert!(!r.rolled_back);
    assert_eq!((r.copied, r.failed), (8, 2));
    let failed: Vec<String> = r.failures.iter().map(|f| f.id.to_string()).collect();
    assert_eq!(failed, ["svc03/api_key", "svc07/api_key"]);
    assert!(r.failures[0].error.contains("injected"));
    assert_eq!(dst.snapshot().len(), 8);
    assert_eq!(
        history(state.path()).unwrap()[0].status,
        MigrationStatus::Failed
    );
}

#[test]
fn early_failures_below_the_minimum_attempts_do_not_roll_back() {
    // Items 0 and 1 fail: 2 of 2 attempted, but fewer than min(4, 10) were
    // attempted; items 2 and 3 succeed, 2 of 4 is not more than half.
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(10);
    let (r, _) = run_faulty(
        &src,
        &dst,
        ConflictPolicy::Skip,
        "write:svc00/*,write:svc01/*",
        state.path(),
    );
    assert!(!r.rolled_back, "{r:?}");
    assert_eq!((r.copied, r.failed), (8, 2));
    // Three failures among the first four attempts is more than half.
    let state = tempfile::tempdir().unwrap();
    let dst = MemStore::new(StoreSpec::Dotenv("c.env".into()), vec![], true);
    let (r, _) = run_faulty(
        &src,
        &dst,
        ConflictPolicy::Skip,
        "write:svc00/*,write:svc01/*,write:svc03/*",
        state.path(),
    );
    assert!(r.rolled_back);
    assert!(dst.snapshot().is_empty());
}
