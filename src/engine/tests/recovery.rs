use super::*;

// ---- crash between a write and its record ------------------------------

/// A target that dies (the worker panics) right after its K-th `write_many`
/// returned: the values are at the target, the outcome record is not.
struct DiesAfterWrite {
    inner: Box<dyn Store>,
    after: usize,
    calls: AtomicUsize,
}

impl Store for DiesAfterWrite {
    forward!(inner; spec, probe, list, read, delete, read_all, identity);
    fn write(&self, c: &Credential) -> StoreResult<()> {
        self.write_many(std::slice::from_ref(c)).pop().unwrap()
    }
    fn write_many(&self, creds: &[Credential]) -> Vec<StoreResult<()>> {
        let r = self.inner.write_many(creds);
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            panic!("test double: the process dies after write_many");
        }
        r
    }
}

pub(super) fn env_file(dir: &std::path::Path, name: &str, text: &str) -> StoreSpec {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    StoreSpec::Dotenv(p)
}

pub(super) fn env_values(spec: &StoreSpec) -> Vec<(String, String)> {
    let s = crate::store::open(spec, &KeyOptions::default()).unwrap();
    let mut v: Vec<(String, String)> = s
        .read_all()
        .unwrap()
        .credentials
        .into_iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect();
    v.sort();
    v
}

const CRASH_SRC: &str = "A_KEY=sk-crash-aaaaaaaaaaaaaaaa1\nB_KEY=sk-crash-bbbbbbbbbbbbbbbb2\n\
C_KEY=sk-crash-cccccccccccccccc3\nD_KEY=sk-crash-dddddddddddddddd4\n";
const CRASH_DST: &str = "B_KEY=old-target-value-bbbbbbbb\nZ_KEY=unrelated-zzzzzzzz\n";

#[test]
fn a_crash_between_a_write_and_its_record_is_rolled_back_or_resumed() {
    // 4 writes move as batches 1, 2, 1: die after each of them.
    for after in 1..=3 {
        for mode in ["rollback", "resume"] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let from = env_file(dir.path(), "src.env", CRASH_SRC);
            let to = env_file(dir.path(), "dst.env", CRASH_DST);
            let before = env_values(&to);
            let opts = KeyOptions::default();
            let rq = MigrationRequest {
                from: from.clone(),
                to: to.clone(),
                policy: ConflictPolicy::Overwrite,
                selection: None,
                delete_source: false,
            };
            let target = DiesAfterWrite {
                inner: crate::store::open(&to, &opts).unwrap(),
                after,
                calls: AtomicUsize::new(0),
            };
            let h = start_with_stores(
                rq,
                crate::store::open(&from, &opts).unwrap(),
                Box::new(target),
                &state,
                &opts,
                Default::default(),
            )
            .unwrap();
            let id = h.id.clone();
            let _: Vec<Progress> = h.events.iter().collect();
            assert!(matches!(h.join(), Err(EngineError::WorkerPanicked)));
            assert_eq!(
                history(&state).unwrap()[0].status,
                MigrationStatus::Interrupted,
                "after={after}"
            );
            assert_ne!(env_values(&to), before, "after={after}: the write landed");
            match mode {
                "rollback" => {
                    for _ in 0..2 {
                        let r = rollback(&state, &id, &opts).unwrap();
                        assert!(r.rolled_back, "after={after}");
                        assert_eq!(env_values(&to), before, "after={after}");
                    }
                }
                _ => {
                    for _ in 0..2 {
                        let r = resume(&state, &id, &opts).unwrap();
                        assert_eq!((r.copied, r.failed), (4, 0), "after={after}: {r:?}");
                        let mut want = env_values(&from);
                        want.push(("env/Z_KEY".into(), "unrelated-zzzzzzzz".into()));
                        want.sort();
                        assert_eq!(env_values(&to), want, "after={after}");
                    }
                    assert_eq!(
                        history(&state).unwrap()[0].status,
                        MigrationStatus::Completed
                    );
                }
            }
        }
    }
}

// ---- cleanup -------------------------------------------------------------

#[test]
fn cleanup_deletes_only_what_is_still_verified_at_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let from = env_file(
        dir.path(),
        "src.env",
        "A_OK=sk-clean-aaaaaaaaaaaa1\nB_SRC_CHANGES=sk-clean-bbbbbbbbbbbb2\n\
         C_DST_CHANGES=sk-clean-cccccccccccc3\nD_CONFLICT=sk-clean-dddddddddddd4\n\
         E_IDENTICAL=sk-clean-eeeeeeeeeeee5\n",
    );
    let to = env_file(
        dir.path(),
        "dst.env",
        "D_CONFLICT=another-value-at-target\nE_IDENTICAL=sk-clean-eeeeeeeeeeee5\n",
    );
    let opts = KeyOptions::default();
    let rq = MigrationRequest {
        from: from.clone(),
        to: to.clone(),
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source: false,
    };
    let r = run(rq, &state, &opts, None, |_| {}).unwrap();
    assert_eq!((r.copied, r.conflicts, r.skipped), (3, 1, 1), "{r:?}");
    // After verify: the source of B and the target of C change.
    let src_store = crate::store::open(&from, &opts).unwrap();
    src_store
        .write(&cred("env/B_SRC_CHANGES", "edited-in-the-source"))
        .unwrap();
    let dst_store = crate::store::open(&to, &opts).unwrap();
    dst_store
        .write(&cred("env/C_DST_CHANGES", "edited-at-the-target"))
        .unwrap();
    let c = cleanup(&state, &r.migration_id, &opts).unwrap();
    let deleted: Vec<String> = env_values(&from).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        deleted,
        ["env/B_SRC_CHANGES", "env/C_DST_CHANGES", "env/D_CONFLICT"],
        "A and E deleted; the changed and the conflicting item kept"
    );
    assert_eq!(c.source_deleted, 2);
    let failed: Vec<(String, String)> = c
        .source_delete_failed
        .iter()
        .map(|f| (f.id.to_string(), f.error.clone()))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0].0, "env/B_SRC_CHANGES");
    assert!(failed[0].1.contains("source value changed"), "{failed:?}");
    assert_eq!(failed[1].0, "env/C_DST_CHANGES");
    assert!(failed[1].1.contains("target no longer holds"), "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|f| f.1.contains("migrated, source still present"))
    );
    assert_eq!(
        history(&state).unwrap()[0].status,
        MigrationStatus::Completed
    );
    let journal = std::fs::read_to_string(
        state::migration_dir(&state, &r.migration_id).join("journal.jsonl"),
    )
    .unwrap();
    for e in [
        "cleanup_started",
        "delete_begin",
        "delete_done",
        "cleanup_finished",
    ] {
        assert!(journal.contains(&format!("\"event\":\"{e}\"")), "{e}");
    }
}

/// A source whose delete says yes and does nothing.
struct DeleteDoesNothing(MemStore);

impl Store for DeleteDoesNothing {
    forward!(0; spec, probe, list, read, write, identity);
    fn delete(&self, _id: &CredentialId) -> StoreResult<bool> {
        Ok(true)
    }
}

#[test]
fn an_ineffective_delete_is_reported_as_still_present() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(3);
    let mut rq = req(&src, &dst, ConflictPolicy::Skip);
    rq.delete_source = true;
    let (r, events) = run_with(
        rq,
        Box::new(DeleteDoesNothing(src.clone())),
        Box::new(dst.clone()),
        state.path(),
    );
    assert_eq!(r.copied, 3);
    assert_eq!(r.source_deleted, 0, "{r:?}");
    assert_eq!(r.source_delete_failed.len(), 3);
    assert!(
        r.source_delete_failed[0]
            .error
            .contains("migrated, source still present: the delete had no effect")
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Progress::SourceDeleted { .. }))
    );
    assert_eq!(src.snapshot().len(), 3);
}

/// A source that another application changes right after cleanup has read
/// (and compared) `svc01/api_key`, before the delete: the moment a
/// read-compare-delete is exposed.
struct ChangedBeforeDelete {
    src: MemStore,
    dst: MemStore,
    done: std::sync::atomic::AtomicBool,
}

impl Store for ChangedBeforeDelete {
    forward!(src; spec, probe, list, read, write, delete, delete_many, delete_if_unchanged,
        identity);
    fn read_many(&self, ids: &[CredentialId]) -> Vec<StoreResult<Option<Credential>>> {
        let out = self.src.read_many(ids);
        let id: CredentialId = "svc01/api_key".parse().unwrap();
        // Cleanup reads the source after the target verified the item.
        if ids.contains(&id)
            && self.dst.read(&id).unwrap().is_some()
            && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.src.write(&cred("svc01/api_key", "theirs")).unwrap();
        }
        out
    }
}

#[test]
fn cleanup_keeps_a_source_value_changed_between_its_comparison_and_the_delete() {
    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(3);
    let mut rq = req(&src, &dst, ConflictPolicy::Skip);
    rq.delete_source = true;
    let racing = ChangedBeforeDelete {
        src: src.clone(),
        dst: dst.clone(),
        done: false.into(),
    };
    let (r, _) = run_with(rq, Box::new(racing), Box::new(dst.clone()), state.path());
    assert_eq!(r.copied, 3);
    assert_eq!(r.source_deleted, 2, "{r:?}");
    assert_eq!(r.source_delete_failed.len(), 1, "{r:?}");
    let f = &r.source_delete_failed[0];
    assert_eq!(f.id.to_string(), "svc01/api_key");
    assert!(
        f.error
            .contains("migrated, source still present: the source value changed; it was kept"),
        "{}",
        f.error
    );
    assert!(!f.error.contains("theirs"));
    assert_eq!(
        values(&src),
        [("svc01/api_key".to_string(), "theirs".to_string())]
    );
}
