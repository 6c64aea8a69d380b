//! Timings for credshift's own cryptography and encrypted stores.
//!
//! `cargo bench --bench crypto_stores` (release), or for a quick look with
//! the dev dependencies (optimized at opt-level 2):
//! `cargo test --bench crypto_stores`. Prints one line per measurement.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use credshift::credential::{Credential, CredentialId, Kind, Secret};
use credshift::crypto::envelope::{self, KeySource, SealingKey};
use credshift::crypto::kdf;
use credshift::store::{self, StoreSpec};
use credshift::unlock::KeyOptions;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn creds(n: usize) -> Vec<Credential> {
    (0..n)
        .map(|i| {
            Credential::new(
                CredentialId::new(format!("provider-{}", i % 17), format!("key-{i}")),
                Kind::ApiKey,
                format!("sk-ant-api03-{i:06}-{}", "x".repeat(90)),
            )
        })
        .collect()
}

fn main() {
    let salt = kdf::random_bytes::<16>().unwrap();
    for iterations in [100_000u32, 600_000] {
        let d = time(3, || kdf::pbkdf2_sha256(b"passphrase", &salt, iterations));
        println!("pbkdf2-hmac-sha256 {iterations:>7} iterations: {d:?} (median of 3)");
    }

    let source = KeySource::Passphrase(Secret::new("passphrase"));
    let key = SealingKey::new(&source, 1000).unwrap();
    let list = creds(1000);
    let d = time(5, || {
        let plain = envelope::encode_credentials(&list).unwrap();
        key.seal(&plain).unwrap()
    });
    println!("envelope seal, 1000 credentials (key cached): {d:?}");
    let sealed = key
        .seal(&envelope::encode_credentials(&list).unwrap())
        .unwrap();
    let d = time(5, || {
        let env = envelope::Envelope::parse(&sealed, "bench", true).unwrap();
        envelope::decode_credentials(&key.open(&env).unwrap(), "bench").unwrap()
    });
    println!(
        "envelope open, 1000 credentials (key cached, {} bytes): {d:?}",
        sealed.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let opts = KeyOptions {
        passphrase: Some(Secret::new("passphrase")),
        allow_weak_kdf: true,
        kdf_iterations: 1000,
        ..KeyOptions::default()
    };
    let db = store::open(&StoreSpec::Sqlite(dir.path().join("bench.db")), &opts).unwrap();
    let t = Instant::now();
    assert!(db.write_many(&list).iter().all(|r| r.is_ok()));
    println!(
        "sqlite write_many 1000 (one transaction, incl. schema): {:?}",
        t.elapsed()
    );
    let d = time(5, || db.read_all().unwrap().credentials.len());
    println!("sqlite read_all 1000 (key cached): {d:?}");
    let t = Instant::now();
    for c in &list[..100] {
        db.write(c).unwrap();
    }
    println!(
        "sqlite 100 single writes (fsync each, synchronous=FULL): {:?}",
        t.elapsed()
    );

    let enc = store::open(&StoreSpec::Encrypted(dir.path().join("bench.enc")), &opts).unwrap();
    let t = Instant::now();
    assert!(enc.write_many(&list).iter().all(|r| r.is_ok()));
    println!(
        "encrypted write_many 1000 (one atomic rewrite): {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    for c in &list[..100] {
        enc.write(c).unwrap();
    }
    println!(
        "encrypted 100 single writes into 1000 (a rewrite each): {:?}",
        t.elapsed()
    );
    let id = list[500].id.clone();
    let d = time(5, || enc.read(&id).unwrap().is_some());
    println!("encrypted read of one item from 1000 (file unchanged since last seen): {d:?}");
}
