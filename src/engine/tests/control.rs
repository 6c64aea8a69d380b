//! Cancel, an unavailable target, deleting the source, secrets on disk, locks.

use super::*;
use std::sync::atomic::AtomicBool;

/// A target that blocks each write until the test opens the gate, or
/// becomes unavailable after `fail_after` writes.
struct Gated {
    inner: MemStore,
    gate: Arc<(Mutex<bool>, Condvar)>,
    writes: AtomicUsize,
    fail_after: Option<usize>,
}

impl Store for Gated {
    forward!(inner; spec, probe, list, read, delete, identity);
    fn write(&self, c: &Credential) -> StoreResult<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|k| n >= k) {
            return Err(StoreError::Unavailable {
                store: self.spec().to_string(),
                reason: "connection lost".into(),
            });
        }
        let (lock, cv) = &*self.gate;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.inner.write(c)
    }
}

#[test]
fn cancel_rolls_back_what_was_written() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(6);
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let target = Gated {
        inner: dst.clone(),
        gate: gate.clone(),
        writes: AtomicUsize::new(0),
        fail_after: None,
    };
    let h = start_with_stores(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(target),
        state.path(),
        &KeyOptions::default(),
        Default::default(),
    )
    .unwrap();
    // Wait until the first item has started, cancel, then let it through.
    for e in h.events.iter() {
        if matches!(e, Progress::ItemStarted { .. }) {
            break;
        }
    }
    h.cancel();
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let r = h.join().unwrap();
    assert!(r.rolled_back);
    assert_eq!(r.rollback_reason.as_deref(), Some("cancelled by the user"));
    assert!(dst.snapshot().is_empty(), "{:?}", values(&dst));
    assert_eq!(src.snapshot().len(), 6);
}

/// The flag given to the start call is the job's from its first
/// instruction: set before the worker runs, it stops the job before any
/// write (a flag handed over after the start would come too late).
#[test]
fn a_cancel_flag_set_before_the_start_stops_the_job_before_any_write() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(6);
    let cancel = Arc::new(AtomicBool::new(true));
    let h = start_with_stores(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
        &KeyOptions::default(),
        cancel.clone(),
    )
    .unwrap();
    assert!(Arc::ptr_eq(&h.cancel_flag(), &cancel));
    let events: Vec<Progress> = h.events.iter().collect();
    let r = h.join().unwrap();
    assert!(r.cancelled, "{r:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Progress::ItemStarted { .. })),
        "{events:?}"
    );
    assert!(dst.snapshot().is_empty(), "{:?}", values(&dst));
}

#[test]
fn an_unavailable_target_rolls_back() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(6);
    let target = Gated {
        inner: dst.clone(),
        gate: Arc::new((Mutex::new(true), Condvar::new())),
        writes: AtomicUsize::new(0),
        fail_after: Some(3),
    };
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(target),
        state.path(),
    );
    assert!(r.rolled_back, "{r:?}");
    assert!(r.rollback_reason.unwrap().contains("unavailable"));
    assert!(dst.snapshot().is_empty());
}

#[test]
fn delete_source_removes_only_verified_items_and_reports_failed_deletes() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(5);
    src.fail_matching(Some(Op::Delete), "svc04/*");
    dst.fail_matching(Some(Op::Write), "svc00/*");
    let mut rq = req(&src, &dst, ConflictPolicy::Skip);
    rq.delete_source = true;
    let (r, _) = run_with(
        rq,
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
    );
    assert_eq!((r.copied, r.failed, r.source_deleted), (4, 1, 3));
    assert_eq!(r.source_delete_failed.len(), 1);
    assert!(
        r.source_delete_failed[0]
            .error
            .contains("migrated, source still present")
    );
    let left: Vec<String> = src.snapshot().iter().map(|c| c.id.to_string()).collect();
    // svc00 failed to copy, svc04 failed to delete: both still in the source.
    assert_eq!(left, ["svc00/api_key", "svc04/api_key"]);
}

#[test]
fn client_keys_are_deleted_in_descending_index_order() {
    let mut ids: Vec<CredentialId> = [
        "train:a/client_key/0",
        "train:a/client_key/10",
        "train:a/client_key/2",
        "train:b/client_key/0",
        "account:x/api_key",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    delete_order(&mut ids);
    let got: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        got,
        [
            "account:x/api_key",
            "train:a/client_key/10",
            "train:a/client_key/2",
            "train:a/client_key/0",
            "train:b/client_key/0"
        ]
    );
}

#[test]
fn the_journal_and_audit_log_hold_no_secret() {
    let state = tempfile::tempdir().unwrap();
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(4), true);
    let dst = MemStore::new(
        StoreSpec::Dotenv("b.env".into()),
        vec![cred("svc01/api_key", "old-target-secret-abc")],
        true,
    );
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Overwrite),
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
    );
    assert_eq!(r.copied, 4);
    let dir = state::migration_dir(state.path(), &r.migration_id);
    let mut texts = vec![
        std::fs::read_to_string(dir.join("journal.jsonl")).unwrap(),
        std::fs::read_to_string(dir.join("plan.json")).unwrap(),
        std::fs::read_to_string(state.path().join("audit.jsonl")).unwrap(),
        std::fs::read_to_string(dir.join("backup.enc")).unwrap(),
        std::fs::read_to_string(dir.join("target-before.enc")).unwrap(),
    ];
    texts.push(serde_json::to_string(&r).unwrap());
    for t in &texts {
        assert!(!t.contains("secret-value"), "{t}");
        assert!(!t.contains("old-target-secret"), "{t}");
    }
    assert!(texts[0].contains("batch_begin"));
}

#[test]
fn a_second_migration_on_a_locked_store_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(2);
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let h = start_with_stores(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(Gated {
            inner: dst.clone(),
            gate: gate.clone(),
            writes: AtomicUsize::new(0),
            fail_after: None,
        }),
        state.path(),
        &KeyOptions::default(),
        Default::default(),
    )
    .unwrap();
    let other = MemStore::new(StoreSpec::Dotenv("c.env".into()), vec![], true);
    let e = match start_with_stores(
        req(&other, &dst, ConflictPolicy::Skip),
        Box::new(other.clone()),
        Box::new(dst.clone()),
        state.path(),
        &KeyOptions::default(),
        Default::default(),
    ) {
        Err(e) => e,
        Ok(_) => panic!("second migration on a locked store started"),
    };
    assert!(matches!(e, EngineError::Locked { .. }), "{e}");
    assert!(e.to_string().contains(&h.id.0), "{e}");
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    assert_eq!(h.join().unwrap().copied, 2);
}
