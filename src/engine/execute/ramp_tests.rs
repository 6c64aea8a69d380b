//! Batch sizes per store kind: a whole-file target's batches grow with
//! the file.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::credential::Kind;
use crate::engine::types::ConflictPolicy;
use crate::store::{BatchHint, StoreSpec};
use crate::store::memory::MemStore;
use crate::store::wrapper::forward;

/// A memory store that says it rewrites a whole file per batch, records
/// each `write_many` size and can fail every write.
struct WholeFile {
    inner: MemStore,
    writes: Arc<Mutex<Vec<usize>>>,
    fail: bool,
}

impl Store for WholeFile {
    forward!(inner; spec, probe, list, read, delete, identity);
    fn write(&self, c: &Credential) -> Result<(), StoreError> {
        if self.fail {
            return Err(StoreError::item(&c.id, "refused"));
        }
        self.inner.write(c)
    }
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<(), StoreError>> {
        self.writes.lock().unwrap().push(creds.len());
        creds.iter().map(|c| self.write(c)).collect()
    }
    fn batch_hint(&self) -> BatchHint {
        BatchHint::WholeFile
    }
}

fn migrate_into_whole_file(n: usize, fail: bool) -> (Report, Vec<usize>) {
    let state = tempfile::tempdir().unwrap();
    let items = (0..n)
        .map(|i| {
            Credential::new(
                CredentialId::new("env", format!("KEY_{i:05}")),
                Kind::ApiKey,
                format!("sk-value-{i:05}"),
            )
        })
        .collect();
    let src = MemStore::new(StoreSpec::Dotenv("a.env".into()), items, true);
    let writes = Arc::new(Mutex::new(Vec::new()));
    let dst = WholeFile {
        inner: MemStore::new(StoreSpec::Encrypted("b.enc".into()), vec![], true),
        writes: writes.clone(),
        fail,
    };
    let req = MigrationRequest {
        from: src.spec().clone(),
        to: dst.spec().clone(),
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source: false,
    };
    let h = start_with_stores(
        req,
        Box::new(src),
        Box::new(dst),
        state.path(),
        &KeyOptions::default(),
        Default::default(),
    )
    .unwrap();
    let report = follow(h, None, |_| {}).unwrap();
    let sizes = writes.lock().unwrap().clone();
    (report, sizes)
}

#[test]
fn a_whole_file_target_gets_batches_that_grow_past_the_cap() {
    let (r, sizes) = migrate_into_whole_file(1000, false);
    assert_eq!((r.copied, r.verified, r.failed), (1000, 1000, 0));
    // Fixed batches of 256 would rewrite the file 1000/256 more times
    // as it grows: quadratic in the number of items.
    assert_eq!(sizes, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 489]);
}

#[test]
fn a_failing_whole_file_target_still_stops_after_a_handful_of_items() {
    let (r, sizes) = migrate_into_whole_file(1000, true);
    assert!(r.rolled_back, "{r:?}");
    assert_eq!(sizes, vec![1, 2, 4]);
}

#[test]
fn ramps_per_store_kind() {
    let sizes = |hint, n: usize, took: Duration| {
        let mut ramp = BatchRamp::new(hint);
        let (mut left, mut out) = (n, Vec::new());
        while left > 0 {
            let b = ramp.next_size(left);
            out.push(b);
            left -= b;
            ramp.grow(took);
        }
        out
    };
    let fast = Duration::from_millis(1);
    let slow = WHOLE_FILE_BATCH_BUDGET + Duration::from_millis(1);
    // Per item: capped, as `batch_sizes` says.
    assert_eq!(sizes(BatchHint::PerItem, 1000, fast), batch_sizes(1000));
    // Whole file: 100,000 items in 17 rewrites, not 400.
    let whole = sizes(BatchHint::WholeFile, 100_000, fast);
    assert_eq!(whole.len(), 17);
    assert_eq!(&whole[..3], &[1, 2, 4]);
    assert_eq!(whole.iter().sum::<usize>(), 100_000);
    // Batches that take longer than the budget stop growing (never
    // below the per-item cap).
    let held = sizes(BatchHint::WholeFile, 2000, slow);
    assert_eq!(&held[8..], &[256, 256, 256, 256, 256, 256, 209]);
    assert_eq!(sizes(BatchHint::WholeFile, 0, fast), Vec::<usize>::new());
}

#[test]
fn file_stores_say_they_rewrite_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = KeyOptions::default();
    for spec in [
        StoreSpec::Dotenv(dir.path().join("a.env")),
        StoreSpec::Encrypted(dir.path().join("a.enc")),
        StoreSpec::Bundle(dir.path().join("a.bundle")),
        StoreSpec::ModelForge(dir.path().join("config.json")),
    ] {
        let s = store::open(&spec, &opts).unwrap();
        assert_eq!(s.batch_hint(), BatchHint::WholeFile, "{spec}");
    }
    let s = store::open(&StoreSpec::PromptTrain(dir.path().join("creds")), &opts).unwrap();
    assert_eq!(s.batch_hint(), BatchHint::PerItem);
}
