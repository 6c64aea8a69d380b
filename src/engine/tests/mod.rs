//! Engine tests with an in-memory store, for fault injection only (the
//! integration tests in tests/engine_*.rs use real stores).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::credential::{Credential, CredentialId, Kind};
use crate::engine::*;
use crate::error::{Result as StoreResult, StoreError};
use crate::store::faults::{Faults, Op};
use crate::store::memory::MemStore;
use crate::store::{Store, StoreSpec};
use crate::unlock::KeyOptions;

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

/// A source `a.env` with `n` items and an empty target `b.env`, in memory.
fn stores(n: usize) -> (MemStore, MemStore) {
    (
        MemStore::new(StoreSpec::Dotenv("a.env".into()), source_items(n), true),
        MemStore::new(StoreSpec::Dotenv("b.env".into()), vec![], true),
    )
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
    let h = start_with_stores(req, source, target, state, &KeyOptions::default(), Default::default()).unwrap();
    let events: Vec<Progress> = h.events.iter().collect();
    (h.join().unwrap(), events)
}

/// Migrate `src` into `dst` with `policy`, `dst` failing the calls
/// `faults` names (the `CREDSHIFT_FAULTS` syntax, armed on the memory store
/// itself; empty: none).
fn run_faulty(
    src: &MemStore,
    dst: &MemStore,
    policy: ConflictPolicy,
    faults: &str,
    state: &std::path::Path,
) -> (Report, Vec<Progress>) {
    dst.faults().extend(&Faults::parse(faults));
    run_with(
        req(src, dst, policy),
        Box::new(src.clone()),
        Box::new(dst.clone()),
        state,
    )
}

fn values(s: &MemStore) -> Vec<(String, String)> {
    s.snapshot()
        .into_iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect()
}

// The calls a test double leaves alone go to its inner store:
// `forward!(inner; spec, probe, list, read)` inside `impl Store`.
use crate::store::wrapper::forward;

mod audit_findings;
mod batches;
mod control;
mod failures;
mod journal_reads;
mod keys;
mod recovery;
mod replan;
mod rule;
