//! Throughput of the plaintext file stores on files larger than real ones.
//! Run: `cargo bench --bench file_stores` (prints timings; no assertions).

use std::time::Instant;

use credshift::credential::{Credential, CredentialId, Kind};
use credshift::store::{self, OpenOptions, Store, StoreSpec};

fn open(spec: StoreSpec) -> Box<dyn Store> {
    store::open(&spec, &OpenOptions::default()).expect("open")
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

fn main() {
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
