//! Engine overhead per item: a full migration (plan, backup, journal with
//! fsync per record, write + read-back + compare, report) between two
//! in-memory stores, so store I/O and key derivation (a key file, no
//! passphrase) are left out. Prints items/s and µs/item; fails when the
//! overhead reaches 1 ms per item.
//!
//! The journal is fsynced per record, which is disk I/O: on a virtual disk
//! one fdatasync can take several ms. The asserted number therefore keeps
//! the state dir on tmpfs (`/dev/shm` when present, or ENGINE_BENCH_STATE),
//! where fsync costs next to nothing and what remains is the engine's own
//! work; a second, smaller run on the temp dir's disk shows the fsync cost.
//!
//! `cargo bench --bench engine` (ENGINE_BENCH_ITEMS to change the size).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use credshift::credential::{Credential, CredentialId, Kind, Metadata};
use credshift::engine::{ConflictPolicy, MigrationRequest, start_with_stores};
use credshift::store::memory::MemStore;
use credshift::store::{Store, StoreSpec};
use credshift::unlock::KeyOptions;

fn items(n: usize) -> Vec<Credential> {
    (0..n)
        .map(|i| {
            let mut m = Metadata::new();
            m.insert("expires_at".into(), 4_102_444_800_000i64.into());
            m.insert("scopes".into(), serde_json::json!(["user:inference"]));
            Credential::new(
                CredentialId::new(format!("account:acc_{i:05}"), "oauth_access_token"),
                Kind::OauthAccess,
                format!("sk-ant-oat01-{i:05}-{}", "x".repeat(90)),
            )
            .with_metadata(m)
        })
        .collect()
}

fn one_run(n: usize, on_disk: bool) -> (f64, usize) {
    let tmpfs = std::env::var_os("ENGINE_BENCH_STATE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let shm = std::path::Path::new("/dev/shm");
            shm.is_dir().then(|| shm.to_path_buf())
        });
    let state = match (&tmpfs, on_disk) {
        (Some(dir), false) => tempfile::tempdir_in(dir).expect("tempdir"),
        _ => tempfile::tempdir().expect("tempdir"),
    };
    let src = MemStore::new(StoreSpec::Dotenv("bench-source".into()), items(n), false);
    let dst = MemStore::new(StoreSpec::Dotenv("bench-target".into()), vec![], true);
    let req = MigrationRequest {
        from: src.spec().clone(),
        to: dst.spec().clone(),
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source: false,
    };
    let t = Instant::now();
    let h = start_with_stores(
        req,
        Box::new(src),
        Box::new(dst),
        state.path(),
        &KeyOptions::default(),
        Default::default(),
    )
    .expect("start");
    // Drain progress like a UI would.
    let events = h.events.iter().count();
    let report = h.join().expect("migration");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(report.copied, n, "every item copied");
    (secs, events)
}

fn main() {
    let n: usize = std::env::var("ENGINE_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    one_run(50, false); // warm-up
    let mut best = f64::MAX;
    for round in 1..=3 {
        let (secs, events) = one_run(n, false);
        let us = secs * 1e6 / n as f64;
        println!(
            "round {round}: {n} items in {:.3} s: {:.0} items/s, {:.1} µs/item ({events} progress events)",
            secs,
            n as f64 / secs,
            us
        );
        best = best.min(us);
    }
    println!("engine overhead: {best:.1} µs/item (limit 1000 µs)");
    let disk_n = (n / 10).max(20);
    let (secs, _) = one_run(disk_n, true);
    println!(
        "for information, with the journal fsynced on the temp dir's disk: {disk_n} items, {:.1} µs/item",
        secs * 1e6 / disk_n as f64
    );
    assert!(
        best < 1000.0,
        "engine overhead {best:.1} µs/item is not under 1 ms"
    );
}
