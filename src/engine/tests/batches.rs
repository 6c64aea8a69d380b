use super::*;

// ---- batches -----------------------------------------------------------

/// Records the size of each `write_many` / `read_many` call.
struct Counting {
    inner: MemStore,
    writes: Arc<Mutex<Vec<usize>>>,
    reads: Arc<Mutex<Vec<usize>>>,
}

impl Store for Counting {
    forward!(inner; spec, probe, list, read, write, delete, identity);
    fn write_many(&self, creds: &[Credential]) -> Vec<StoreResult<()>> {
        self.writes.lock().unwrap().push(creds.len());
        creds.iter().map(|c| self.inner.write(c)).collect()
    }
    fn read_many(&self, ids: &[CredentialId]) -> Vec<StoreResult<Option<Credential>>> {
        self.reads.lock().unwrap().push(ids.len());
        ids.iter().map(|id| self.inner.read(id)).collect()
    }
}

#[test]
fn items_move_in_ramping_batches_with_one_record_each_side() {
    assert_eq!(batch_sizes(0), Vec::<usize>::new());
    assert_eq!(batch_sizes(10), vec![1, 2, 4, 3]);
    let big = batch_sizes(1000);
    assert_eq!(&big[..9], &[1, 2, 4, 8, 16, 32, 64, 128, 256]);
    assert_eq!(big.iter().sum::<usize>(), 1000);
    assert!(big.iter().all(|b| *b <= MAX_BATCH));

    let state = tempfile::tempdir().unwrap();
    let (src, dst) = stores(10);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let reads = Arc::new(Mutex::new(Vec::new()));
    let target = Counting {
        inner: dst.clone(),
        writes: writes.clone(),
        reads: reads.clone(),
    };
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(target),
        state.path(),
    );
    assert_eq!((r.copied, r.verified, r.failed), (10, 10, 0));
    assert_eq!(*writes.lock().unwrap(), vec![1, 2, 4, 3]);
    assert_eq!(*reads.lock().unwrap(), vec![1, 2, 4, 3]);
    let journal = std::fs::read_to_string(
        state::migration_dir(state.path(), &r.migration_id).join("journal.jsonl"),
    )
    .unwrap();
    let count = |e: &str| journal.matches(&format!("\"event\":\"{e}\"")).count();
    assert_eq!((count("batch_begin"), count("batch_done")), (4, 4));
    assert_eq!(count("write_begin") + count("verified"), 0);
    // The report is the run's own; the journal read again says the same.
    let again = state::State::load(state.path(), &r.migration_id)
        .unwrap()
        .report();
    assert_eq!(again, r);
}

// ---- plan once -----------------------------------------------------------

/// Run with the source values shed after the plan (as the wizard does)
/// on this thread, for the cases that hold either way.
fn prepared_run_shed(
    src: &MemStore,
    dst: &MemStore,
    shed: bool,
    change: impl FnOnce(),
) -> (std::result::Result<Report, EngineError>, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let rq = req(src, dst, ConflictPolicy::Overwrite);
    let mut prepared = prepare(&rq, src, dst).unwrap();
    if shed {
        prepared.shed_source_values();
        assert!(prepared.source.is_empty());
    }
    change();
    let h = start_prepared(
        rq,
        prepared,
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
        &KeyOptions::default(),
        Default::default(),
    )
    .unwrap();
    let _: Vec<Progress> = h.events.iter().collect();
    (h.join(), state)
}

fn prepared_run(
    src: &MemStore,
    dst: &MemStore,
    change: impl FnOnce(),
) -> (std::result::Result<Report, EngineError>, tempfile::TempDir) {
    prepared_run_shed(src, dst, SHED.get(), change)
}

thread_local! {
    static SHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[test]
fn the_prepared_plan_is_executed_as_consented_or_not_at_all() {
    the_prepared_plan_cases();
}

#[test]
fn with_its_source_values_shed_the_prepared_plan_is_executed_as_consented_or_not_at_all() {
    SHED.set(true);
    the_prepared_plan_cases();
}

#[test]
fn shed_values_changed_since_the_plan_are_not_put_back() {
    let (src, dst) = stores(3);
    let rq = req(&src, &dst, ConflictPolicy::Overwrite);
    let mut p = prepare(&rq, &src, &dst).unwrap();
    let before: Vec<(String, String)> = p
        .source
        .values()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect();
    p.shed_source_values();
    src.write(&cred("svc01/api_key", "changed")).unwrap();
    assert_eq!(p.changed_since(&src, &dst).unwrap().len(), 1);
    assert!(p.source.is_empty(), "a changed read is not the plan's");
    src.write(&cred("svc01/api_key", &before[1].1)).unwrap();
    assert!(p.changed_since(&src, &dst).unwrap().is_empty());
    let after: Vec<(String, String)> = p
        .source
        .values()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect();
    assert_eq!(after, before);
}

fn the_prepared_plan_cases() {
    // Unchanged: executed.
    let (src, dst) = stores(3);
    let (r, _s) = prepared_run(&src, &dst, || {});
    assert_eq!(r.unwrap().copied, 3);
    assert_eq!(values(&dst), values(&src));

    // A source value changed after the plan: nothing written, item named.
    let (src, dst) = stores(3);
    let s2 = src.clone();
    let (r, state) = prepared_run(&src, &dst, move || {
        s2.write(&cred("svc01/api_key", "changed-after-consent"))
            .unwrap();
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("svc01/api_key (source)"), "{e}");
    assert!(!e.contains("changed-after-consent"), "{e}");
    assert!(dst.snapshot().is_empty(), "nothing written");
    let h = history(state.path()).unwrap();
    assert_eq!(h[0].status, MigrationStatus::Failed);

    // A target value appeared after the plan: nothing written, item named.
    let (src, dst) = stores(3);
    let d2 = dst.clone();
    let (r, _s) = prepared_run(&src, &dst, move || {
        d2.write(&cred("svc02/api_key", "someone-else")).unwrap();
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("svc02/api_key (target)"), "{e}");
    assert_eq!(values(&dst).len(), 1, "only the other writer's value");

    // A planned source item removed: named too.
    let (src, dst) = stores(3);
    let s2 = src.clone();
    let (r, _s) = prepared_run(&src, &dst, move || {
        s2.delete(&"svc00/api_key".parse().unwrap()).unwrap();
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("svc00/api_key (source)"), "{e}");
    assert!(dst.snapshot().is_empty());
}
