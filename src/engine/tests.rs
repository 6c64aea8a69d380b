//! Engine tests with an in-memory store, for fault injection only (the
//! integration tests in tests/engine_*.rs use real stores).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::credential::{Credential, CredentialId, Kind};
use crate::engine::memstore::MemStore;
use crate::engine::*;
use crate::error::{Result as StoreResult, StoreError};
use crate::store::faults::{Faults, FaultyStore};
use crate::store::{Capability, Listing, OpenOptions, Store, StoreSpec};

fn cred(id: &str, v: &str) -> Credential {
    Credential::new(id.parse().unwrap(), Kind::ApiKey, v)
}

fn source_items(n: usize) -> Vec<Credential> {
    (0..n)
        .map(|i| {
            cred(
                &format!("svc{i:02}/api_key"),
                &format!("sk-secret-value-{i:02}-xyzzy"),
            )
        })
        .collect()
}

fn req(from: &MemStore, to: &dyn Store, policy: ConflictPolicy) -> MigrationRequest {
    MigrationRequest {
        from: from.spec().clone(),
        to: to.spec().clone(),
        policy,
        selection: None,
        delete_source: false,
    }
}

fn run_with(
    req: MigrationRequest,
    source: Box<dyn Store>,
    target: Box<dyn Store>,
    state: &std::path::Path,
) -> (Report, Vec<Progress>) {
    let h = start_with_stores(req, source, target, state, &OpenOptions::default()).unwrap();
    let events: Vec<Progress> = h.events.iter().collect();
    (h.join().unwrap(), events)
}

fn values(s: &MemStore) -> Vec<(String, String)> {
    s.snapshot()
        .into_iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect()
}

#[test]
fn copies_verifies_and_reports_with_progress() {
    let state = tempfile::tempdir().unwrap();
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(5), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
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
    let faulty = FaultyStore::new(
        Box::new(dst.clone()),
        Faults::parse(
            "write:svc02*,write:svc03*,write:svc04*,write:svc05*,write:svc06*,write:svc07*,write:svc08*,write:svc09*",
        ),
    );
    let (r, events) = run_with(
        req(&src, &dst, ConflictPolicy::Overwrite),
        Box::new(src.clone()),
        Box::new(faulty),
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
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(10), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let faulty = FaultyStore::new(
        Box::new(dst.clone()),
        Faults::parse("write:svc03/*,write:svc07/*"),
    );
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(faulty),
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
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(10), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let faulty = FaultyStore::new(
        Box::new(dst.clone()),
        Faults::parse("write:svc00/*,write:svc01/*"),
    );
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(faulty),
        state.path(),
    );
    assert!(!r.rolled_back, "{r:?}");
    assert_eq!((r.copied, r.failed), (8, 2));
    // Three failures among the first four attempts is more than half.
    let state = tempfile::tempdir().unwrap();
    let dst = MemStore::new(StoreSpec::Dotenv("c.env".into()), vec![], true);
    let faulty = FaultyStore::new(
        Box::new(dst.clone()),
        Faults::parse("write:svc00/*,write:svc01/*,write:svc03/*"),
    );
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(faulty),
        state.path(),
    );
    assert!(r.rolled_back);
    assert!(dst.snapshot().is_empty());
}

/// A target that blocks each write until the test opens the gate, or
/// becomes unavailable after `fail_after` writes.
struct Gated {
    inner: MemStore,
    gate: Arc<(Mutex<bool>, Condvar)>,
    writes: AtomicUsize,
    fail_after: Option<usize>,
}

impl Store for Gated {
    fn spec(&self) -> &StoreSpec {
        self.inner.spec()
    }
    fn probe(&self) -> Capability {
        self.inner.probe()
    }
    fn list(&self) -> StoreResult<Listing> {
        self.inner.list()
    }
    fn read(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        self.inner.read(id)
    }
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
    fn delete(&self, id: &CredentialId) -> StoreResult<bool> {
        self.inner.delete(id)
    }
}

#[test]
fn cancel_rolls_back_what_was_written() {
    let state = tempfile::tempdir().unwrap();
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(6), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
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
        &OpenOptions::default(),
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

#[test]
fn an_unavailable_target_rolls_back() {
    let state = tempfile::tempdir().unwrap();
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(6), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
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
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(5), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let source = FaultyStore::new(Box::new(src.clone()), Faults::parse("delete:svc04/*"));
    let target = FaultyStore::new(Box::new(dst.clone()), Faults::parse("write:svc00/*"));
    let mut rq = req(&src, &dst, ConflictPolicy::Skip);
    rq.delete_source = true;
    let (r, _) = run_with(rq, Box::new(source), Box::new(target), state.path());
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
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(2), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
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
        &OpenOptions::default(),
    )
    .unwrap();
    let other = MemStore::new(StoreSpec::Dotenv("c.env".into()), vec![], true);
    let e = match start_with_stores(
        req(&other, &dst, ConflictPolicy::Skip),
        Box::new(other.clone()),
        Box::new(dst.clone()),
        state.path(),
        &OpenOptions::default(),
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

// ---- the more-than-half rule, as one table ----------------------------

/// The rule pinned by hand: (items, outcomes in plan order with `x` for a
/// failing write, rolled back). Every row below is also covered by the
/// exhaustive run that follows; these say what the rule is.
const RULE: &[(usize, &str, bool)] = &[
    (1, ".", false),
    (1, "x", true),
    (2, "x.", false),
    (2, ".x", false),
    (2, "xx", true),
    (3, "x..", false),
    (3, ".xx", true), // the last item triggers it
    (3, "xx.", true),
    (4, "xx..", false),
    (4, "..xx", false),
    (4, ".xxx", true), // the last item
    (4, "xxx.", true),
    (5, "..xxx", true), // the last item
    (5, "x.x..", false),
    (6, "x.x.x.", true),
    (7, "...xxxx", true), // the last item
    (7, ".x.x.x.", false),
    (8, ".x.x.x.x", false),
    (8, "xx..xx..", true),
    (8, ".......x", false),
    (8, "xxxxxxxx", true),
];

/// Run one pattern through the engine (batched): the report, the target
/// afterwards, and what the target holds when nothing is rolled back.
type PatternRun = (Report, Vec<(String, String)>, Vec<(String, String)>);

fn run_pattern(n: usize, failing: &[bool]) -> PatternRun {
    let state = tempfile::tempdir().unwrap();
    let items = source_items(n);
    let spec = |name: &str| StoreSpec::Dotenv(state.path().join(name));
    let src = MemStore::new(spec("a.env"), items.clone(), true);
    let before = vec![cred("zz/unrelated", "untouched-value")];
    let dst = MemStore::new(spec("b.env"), before, true);
    let globs: Vec<String> = (0..n)
        .filter(|i| failing[*i])
        .map(|i| format!("write:svc{i:02}/api_key"))
        .collect();
    let target: Box<dyn Store> = if globs.is_empty() {
        Box::new(dst.clone())
    } else {
        Box::new(FaultyStore::new(
            Box::new(dst.clone()),
            Faults::parse_strict(&globs.join(",")).unwrap(),
        ))
    };
    let (r, _) = run_with(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        target,
        state.path(),
    );
    let mut expected_if_kept = vec![("zz/unrelated".to_string(), "untouched-value".to_string())];
    for (i, c) in items.iter().enumerate() {
        if !failing[i] {
            expected_if_kept.push((c.id.to_string(), c.secret.expose().to_string()));
        }
    }
    expected_if_kept.sort();
    (r, values(&dst), expected_if_kept)
}

/// Check one pattern against the rule applied item by item; `Err` says how
/// the engine differed.
fn check_pattern(n: usize, failing: &[bool]) -> std::result::Result<(), String> {
    let mut failed = 0;
    let mut expect = false;
    for (k, f) in failing.iter().enumerate() {
        failed += usize::from(*f);
        expect |= exceeds_failure_limit(k + 1, failed, n);
    }
    let (r, after, kept) = run_pattern(n, failing);
    let label: String = failing.iter().map(|f| if *f { 'x' } else { '.' }).collect();
    let unrelated = vec![("zz/unrelated".to_string(), "untouched-value".to_string())];
    let n_failing = failing.iter().filter(|f| **f).count();
    let ok = if expect {
        r.rolled_back && after == unrelated && r.copied == 0
    } else {
        !r.rolled_back && after == kept && r.failed == n_failing && r.copied + r.failed == n
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n} items {label}: expected rolled_back={expect}, got {r:?}, target {after:?}"
        ))
    }
}

#[test]
fn the_more_than_half_rule_is_one_table_over_totals_1_to_8() {
    // The hand-written rows pin the rule itself.
    for (n, pattern, rolled_back) in RULE {
        let failing: Vec<bool> = pattern.chars().map(|c| c == 'x').collect();
        assert_eq!(failing.len(), *n);
        let mut failed = 0;
        let mut by_rule = false;
        for (k, f) in failing.iter().enumerate() {
            failed += usize::from(*f);
            by_rule |= exceeds_failure_limit(k + 1, failed, *n);
        }
        assert_eq!(by_rule, *rolled_back, "the rule, {n} items {pattern}");
    }
    // Every failing subset of every total 1..=8 goes through the batched
    // engine: it stops exactly when the rule, applied item by item, says
    // so, and then the target is exactly as before.
    let cases: Vec<Vec<bool>> = (1..=8usize)
        .flat_map(|n| (0u32..(1 << n)).map(move |m| (0..n).map(|i| m & (1 << i) != 0).collect()))
        .collect();
    assert_eq!(cases.len(), 510);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(8))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|f| check_pattern(f.len(), f).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        errors.is_empty(),
        "{} patterns differ:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

// ---- batches -----------------------------------------------------------

/// Records the size of each `write_many` / `read_many` call.
struct Counting {
    inner: MemStore,
    writes: Arc<Mutex<Vec<usize>>>,
    reads: Arc<Mutex<Vec<usize>>>,
}

impl Store for Counting {
    fn spec(&self) -> &StoreSpec {
        self.inner.spec()
    }
    fn probe(&self) -> Capability {
        self.inner.probe()
    }
    fn list(&self) -> StoreResult<Listing> {
        self.inner.list()
    }
    fn read(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        self.inner.read(id)
    }
    fn write(&self, c: &Credential) -> StoreResult<()> {
        self.inner.write(c)
    }
    fn delete(&self, id: &CredentialId) -> StoreResult<bool> {
        self.inner.delete(id)
    }
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
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(10), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
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

fn prepared_run(
    src: &MemStore,
    dst: &MemStore,
    change: impl FnOnce(),
) -> (std::result::Result<Report, EngineError>, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let rq = req(src, dst, ConflictPolicy::Overwrite);
    let prepared = prepare(&rq, src, dst).unwrap();
    change();
    let h = start_prepared(
        rq,
        prepared,
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
        &OpenOptions::default(),
    )
    .unwrap();
    let _: Vec<Progress> = h.events.iter().collect();
    (h.join(), state)
}

#[test]
fn the_prepared_plan_is_executed_as_consented_or_not_at_all() {
    // Unchanged: executed.
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(3), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let (r, _s) = prepared_run(&src, &dst, || {});
    assert_eq!(r.unwrap().copied, 3);
    assert_eq!(values(&dst), values(&src));

    // A source value changed after the plan: nothing written, item named.
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(3), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
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
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(3), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let d2 = dst.clone();
    let (r, _s) = prepared_run(&src, &dst, move || {
        d2.write(&cred("svc02/api_key", "someone-else")).unwrap();
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("svc02/api_key (target)"), "{e}");
    assert_eq!(values(&dst).len(), 1, "only the other writer's value");

    // A planned source item removed: named too.
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(3), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let s2 = src.clone();
    let (r, _s) = prepared_run(&src, &dst, move || {
        s2.delete(&"svc00/api_key".parse().unwrap()).unwrap();
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("svc00/api_key (source)"), "{e}");
    assert!(dst.snapshot().is_empty());
}

// ---- crash between a write and its record ------------------------------

/// A target that dies (the worker panics) right after its K-th `write_many`
/// returned: the values are at the target, the outcome record is not.
struct DiesAfterWrite {
    inner: Box<dyn Store>,
    after: usize,
    calls: AtomicUsize,
}

impl Store for DiesAfterWrite {
    fn spec(&self) -> &StoreSpec {
        self.inner.spec()
    }
    fn probe(&self) -> Capability {
        self.inner.probe()
    }
    fn list(&self) -> StoreResult<Listing> {
        self.inner.list()
    }
    fn read(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        self.inner.read(id)
    }
    fn write(&self, c: &Credential) -> StoreResult<()> {
        self.write_many(std::slice::from_ref(c)).pop().unwrap()
    }
    fn delete(&self, id: &CredentialId) -> StoreResult<bool> {
        self.inner.delete(id)
    }
    fn read_all(&self) -> StoreResult<crate::store::Scan> {
        self.inner.read_all()
    }
    fn write_many(&self, creds: &[Credential]) -> Vec<StoreResult<()>> {
        let r = self.inner.write_many(creds);
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            panic!("test double: the process dies after write_many");
        }
        r
    }
}

fn env_file(dir: &std::path::Path, name: &str, text: &str) -> StoreSpec {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    StoreSpec::Dotenv(p)
}

fn env_values(spec: &StoreSpec) -> Vec<(String, String)> {
    let s = crate::store::open(spec, &OpenOptions::default()).unwrap();
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
            let opts = OpenOptions::default();
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
    let opts = OpenOptions::default();
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
    fn spec(&self) -> &StoreSpec {
        self.0.spec()
    }
    fn probe(&self) -> Capability {
        self.0.probe()
    }
    fn list(&self) -> StoreResult<Listing> {
        self.0.list()
    }
    fn read(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        self.0.read(id)
    }
    fn write(&self, c: &Credential) -> StoreResult<()> {
        self.0.write(c)
    }
    fn delete(&self, _id: &CredentialId) -> StoreResult<bool> {
        Ok(true)
    }
}

#[test]
fn an_ineffective_delete_is_reported_as_still_present() {
    let state = tempfile::tempdir().unwrap();
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(3), true);
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
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

// ---- fingerprint keys ------------------------------------------------------

#[test]
fn with_a_passphrase_the_state_dir_alone_cannot_confirm_a_guess() {
    let state = tempfile::tempdir().unwrap();
    let secret = "demo";
    let src = MemStore::new(
        StoreSpec::Dotenv("a.env".into()),
        vec![cred("env/APP_NAME", secret)],
        true,
    );
    let dst = MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true);
    let opts = OpenOptions {
        passphrase: Some(crate::credential::Secret::new("correct horse battery")),
        kdf_iterations: 1000,
        allow_weak_kdf: true,
        ..OpenOptions::default()
    };
    let h = start_with_stores(
        req(&src, &dst, ConflictPolicy::Skip),
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state.path(),
        &opts,
    )
    .unwrap();
    let _: Vec<Progress> = h.events.iter().collect();
    let r = h.join().unwrap();
    assert_eq!(r.copied, 1);
    let st = state::State::load(state.path(), &r.migration_id).unwrap();
    let journaled = st
        .planned_item(&"env/APP_NAME".parse().unwrap())
        .and_then(|p| p.fp.clone())
        .unwrap();
    let guess = cred("env/APP_NAME", secret);
    // No key file beside the journal; no file in the state dir works as one.
    assert!(!st.dir.join(fingerprint::KEY_FILE).exists());
    let mut files = Vec::new();
    let mut stack = vec![state.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for k in [
            fingerprint::FpKey::derive(&bytes, &r.migration_id.0),
            fingerprint::FpKey::derive(&bytes[..bytes.len().min(32)], &r.migration_id.0),
        ] {
            assert!(
                !fingerprint::same(&k.value(&guess), &journaled),
                "{} confirms the guess",
                f.display()
            );
        }
    }
    // With the passphrase, recovery derives the same key again.
    let keys = execute::recover_keys(&st, &opts).unwrap();
    assert!(fingerprint::same(&keys.fp.value(&guess), &journaled));
    let wrong = OpenOptions {
        passphrase: Some(crate::credential::Secret::new("wrong passphrase")),
        ..opts.clone()
    };
    let keys = execute::recover_keys(&st, &wrong).unwrap();
    assert!(!fingerprint::same(&keys.fp.value(&guess), &journaled));
}
