//! Throughput of the file stores on files larger than real ones.
//! Run: `cargo bench --bench file_stores` (prints timings; no assertions).
//!
//! The scale part moves N `.env` items into `encrypted:FILE` at the store
//! level, the way the engine does it (its `BatchRamp`: batches of 1, 2, 4,
//! ..., growing past 256 for a whole-file store like this one; per batch
//! `write_many`, then `read_many` and a comparison), and lists
//! (`inventory`) a `.env` of N items, for N = 1,000 / 10,000 / 20,000 /
//! 100,000 (`CREDSHIFT_BENCH_MAX=N` stops earlier). Peers, measured in the
//! same run: the same N credentials sealed into the file by one single
//! `write_many` (one rewrite: the least a whole-file store can do), and for
//! the inventory, reading the file and splitting it into lines.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use credshift::credential::{Credential, CredentialId, Kind, Secret};
use credshift::engine::BatchRamp;
use credshift::engine::inventory::inventory;
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;

fn open(spec: StoreSpec) -> Box<dyn Store> {
    store::open(&spec, &KeyOptions::default()).expect("open")
}

fn time<T>(label: &str, n: usize, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let el = start.elapsed();
    println!(
        "{label:<48} {n:>5} items  {:>9.2} ms  ({:.1} µs/item)",
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e6 / n as f64
    );
    out
}

fn creds(n: usize, ns: impl Fn(usize) -> (String, String)) -> Vec<Credential> {
    (0..n)
        .map(|i| {
            let (a, b) = ns(i);
            Credential::new(
                CredentialId::new(a, b),
                Kind::ApiKey,
                format!("sk-ant-api03-{i:0>8}-{}", "x".repeat(90)),
            )
        })
        .collect()
}

fn encrypted(path: &std::path::Path) -> Box<dyn Store> {
    let opts = KeyOptions {
        passphrase: Some(Secret::new("bench passphrase")),
        ..KeyOptions::default()
    };
    store::open(&StoreSpec::Encrypted(path.to_path_buf()), &opts).expect("open")
}

fn scale(max: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the start: {}", load.trim());
    }
    println!(
        "{:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>9}",
        "items",
        "migrate s",
        "peer s",
        "ratio",
        "invent. s",
        "peer s",
        "ratio",
        "µs/item",
        "inv µs/it"
    );
    let mut first: Option<(f64, f64)> = None;
    for n in [1_000usize, 10_000, 20_000, 100_000] {
        if n > max {
            break;
        }
        let env_path = tmp.path().join(format!("{n}.env"));
        let mut text = String::with_capacity(n * 120);
        for i in 0..n {
            text.push_str(&format!("KEY_{i:06}=sk-proj-{i:08}{}\n", "x".repeat(80)));
        }
        std::fs::write(&env_path, &text).expect("write .env");
        let source = open(StoreSpec::Dotenv(env_path.clone()));

        // inventory: parse + classify every item.
        let t = Instant::now();
        let (inv, creds) = inventory(&*source, 0).expect("inventory");
        let inv_s = t.elapsed().as_secs_f64();
        assert_eq!(inv.items.len(), n);
        let t = Instant::now();
        let lines = std::fs::read_to_string(&env_path)
            .expect("read")
            .lines()
            .filter(|l| l.contains('='))
            .count();
        let inv_peer = t.elapsed().as_secs_f64();
        assert_eq!(lines, n);

        // migrate at the store level, in the engine's batches.
        let target = encrypted(&tmp.path().join(format!("{n}.enc")));
        let t = Instant::now();
        let mut ramp = BatchRamp::new(target.batch_hint());
        let mut at = 0;
        while at < n {
            let b = ramp.next_size(n - at);
            let began = Instant::now();
            let batch = &creds[at..at + b];
            assert!(target.write_many(batch).iter().all(|r| r.is_ok()));
            let ids: Vec<CredentialId> = batch.iter().map(|c| c.id.clone()).collect();
            for (c, back) in batch.iter().zip(target.read_many(&ids)) {
                let back = back.expect("read back").expect("present");
                assert!(back.secret.ct_eq(&c.secret));
            }
            ramp.grow(began.elapsed());
            at += b;
        }
        let migrate = t.elapsed().as_secs_f64();
        // Peer: the same credentials in one write_many (one rewrite).
        let peer_store = encrypted(&tmp.path().join(format!("{n}-once.enc")));
        let t = Instant::now();
        assert!(peer_store.write_many(&creds).iter().all(|r| r.is_ok()));
        let peer = t.elapsed().as_secs_f64();

        let per = migrate / n as f64;
        let inv_per = inv_s / n as f64;
        let (p0, i0) = *first.get_or_insert((per, inv_per));
        println!(
            "{n:>7} {migrate:>10.3} {peer:>10.3} {:>7.1} {inv_s:>10.3} {inv_peer:>10.3} {:>7.1} {:>9.1} {:>9.2}",
            migrate / peer,
            inv_s / inv_peer,
            per * 1e6,
            inv_per * 1e6,
        );
        if n > 1_000 {
            println!(
                "        per-item cost vs 1,000 items: migrate {:.2}x, inventory {:.2}x",
                per / p0,
                inv_per / i0
            );
        }
    }
}

fn main() {
    let max: usize = std::env::var("CREDSHIFT_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    scale(max);
    let tmp = tempfile::tempdir().expect("tempdir");
    let n = 1000;

    let env = open(StoreSpec::Dotenv(tmp.path().join(".env")));
    let batch = creds(n, |i| ("env".into(), format!("KEY_{i}")));
    time("dotenv write_many (one rewrite)", n, || {
        env.write_many(&batch)
    });
    time("dotenv read_all", n, || env.read_all().expect("read"));
    let foreign = creds(100, |i| (format!("account:acc_{i}"), "api_key".into()));
    time(
        "dotenv write x100 foreign ids (marker, 1000-line file)",
        100,
        || {
            for c in &foreign {
                env.write(c).expect("write");
            }
        },
    );

    let mf = open(StoreSpec::ModelForge(tmp.path().join("config.json")));
    let batch = creds(n, |i| (format!("provider{i}"), "api_key".into()));
    time("modelforge write_many (one rewrite)", n, || {
        mf.write_many(&batch)
    });
    time("modelforge read_all", n, || mf.read_all().expect("read"));

    let pt = open(StoreSpec::PromptTrain(tmp.path().join("credentials")));
    let batch = creds(n, |i| (format!("account:acc_{i}"), "api_key".into()));
    time("prompttrain write_many (one file per account)", n, || {
        pt.write_many(&batch)
    });
    time("prompttrain read_all", n, || pt.read_all().expect("read"));
    let c = &batch[n / 2];
    time("prompttrain read one (scans accounts/)", 1, || {
        pt.read(&c.id).expect("read")
    });
}
