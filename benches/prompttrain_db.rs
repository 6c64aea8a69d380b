//! Benchmark: 1,000 agent-prompttrain accounts (1,500 values) into
//! `prompttrain-db:` on a real PostgreSQL server (started like the tests
//! do), the way the engine moves them: batches of 1, 2, 4, ... 256, each a
//! `write_many` (parallel key derivation, one transaction) and a
//! `read_many` read-back (one query; the keys derived for the write are
//! reused, the values are decrypted from what the database returned) with
//! a comparison. And the reverse: values written by Node into the database,
//! read by a fresh store (every key derived) and sealed into an
//! `encrypted:` file.
//!
//! Peers in the same run: a Node.js loop of the original algorithm
//! (scripts/prompttrain-crypto.js: pbkdf2Sync + AES-GCM per value, encrypt
//! then decrypt), and the limit of this CPU: 2 SHA-256 compressions per
//! PBKDF2 iteration at `openssl speed -evp sha256`'s rate, over all cores.
//!
//! `cargo bench --bench prompttrain_db`; `CREDSHIFT_BENCH_ACCOUNTS=N` to
//! change the size (default 1000: 2/3 API-key accounts, 1/3 OAuth accounts
//! with two tokens each).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use credshift::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use credshift::crypto::prompttrain::{self as fmt, MasterKey};
use credshift::store::{self, OpenOptions, StoreSpec};

const KEY: &str = "bench-master-key-0123456789abcdef-ok";

/// The accounts as JSON files in agent-prompttrain's credentials layout.
fn write_credentials_dir(dir: &std::path::Path, accounts: usize) {
    let acc = dir.join("accounts");
    std::fs::create_dir_all(&acc).unwrap();
    for i in 0..accounts {
        let name = format!("bench{i:04}");
        let body = if i % 3 == 2 {
            serde_json::json!({
                "type": "oauth",
                "accountId": format!("acc_{name}"),
                "oauth": {
                    "accessToken": format!("sk-ant-oat01-{}", filler(i, 95)),
                    "refreshToken": format!("sk-ant-ort01-{}", filler(i + 7, 95)),
                    "expiresAt": 1790003600000i64 + i as i64,
                    "scopes": ["user:inference", "user:profile"],
                    "isMax": i % 2 == 0
                }
            })
        } else {
            serde_json::json!({
                "type": "api_key",
                "accountId": format!("acc_{name}"),
                "api_key": format!("sk-ant-api03-{}", filler(i, 95)),
            })
        };
        std::fs::write(
            acc.join(format!("{name}.credentials.json")),
            serde_json::to_vec_pretty(&body).unwrap(),
        )
        .unwrap();
    }
}

fn filler(seed: usize, len: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut x = (seed as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            alphabet[(x >> 33) as usize % alphabet.len()] as char
        })
        .collect()
}

/// The credentials: read with the `prompttrain:DIR` store when it is built,
/// else taken straight from the generated files with the same ids.
fn load(dir: &std::path::Path) -> (Vec<Credential>, &'static str) {
    let spec: StoreSpec = format!("prompttrain:{}", dir.display()).parse().unwrap();
    if let Ok(s) = store::open(&spec, &OpenOptions::default())
        && let Ok(scan) = s.read_all()
        && !scan.credentials.is_empty()
    {
        return (scan.credentials, "prompttrain:DIR store");
    }
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let id = v["accountId"].as_str().unwrap();
        let name = id.strip_prefix("acc_").unwrap();
        let mut m = Metadata::new();
        m.insert("account_name".into(), name.into());
        let ns = format!("account:{id}");
        if v["type"] == "oauth" {
            let mut am = m.clone();
            am.insert("expires_at".into(), v["oauth"]["expiresAt"].clone());
            am.insert("scopes".into(), v["oauth"]["scopes"].clone());
            am.insert("is_max".into(), v["oauth"]["isMax"].clone());
            out.push(
                Credential::new(
                    CredentialId::new(&ns, "oauth_access_token"),
                    Kind::OauthAccess,
                    v["oauth"]["accessToken"].as_str().unwrap(),
                )
                .with_metadata(am),
            );
            out.push(
                Credential::new(
                    CredentialId::new(&ns, "oauth_refresh_token"),
                    Kind::OauthRefresh,
                    v["oauth"]["refreshToken"].as_str().unwrap(),
                )
                .with_metadata(m),
            );
        } else {
            out.push(
                Credential::new(
                    CredentialId::new(&ns, "api_key"),
                    Kind::ApiKey,
                    v["api_key"].as_str().unwrap(),
                )
                .with_metadata(m),
            );
        }
    }
    (out, "generated files (prompttrain:DIR store not built yet)")
}

fn node_bench(count: usize) -> Option<(f64, f64, Vec<String>)> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prompttrain-crypto.js");
    let mut child = Command::new("node")
        .arg(script)
        .arg("bench")
        .env("CREDENTIAL_ENCRYPTION_KEY", KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()?
        .write_all(format!("{{\"count\":{count},\"emit\":true}}").as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let stored = v["stored"]
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    Some((
        v["encrypt_ms"].as_f64()? / 1e3,
        v["decrypt_ms"].as_f64()? / 1e3,
        stored,
    ))
}

/// Compressions per second from `openssl speed -evp sha256` on 16 KiB blocks.
fn openssl_rate() -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-seconds", "2", "-bytes", "16384", "-evp", "sha256",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with("sha256"))?;
    let kb: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kb * 1000.0 / 64.0)
}

/// Batch sizes as the engine ramps them: 1, 2, 4, ... 256, summing to n.
fn batches(n: usize) -> Vec<usize> {
    let (mut out, mut left, mut size) = (Vec::new(), n, 1usize);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size = (size * 2).min(256);
    }
    out
}

fn main() {
    let accounts: usize = std::env::var("CREDSHIFT_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = match support::pg::PgServer::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no PostgreSQL server: {e}");
            return;
        }
    };
    let db = server.create_database();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("credentials");
    write_credentials_dir(&dir, accounts);
    let (creds, source) = load(&dir);
    let n = creds.len();
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the start: {}", load.trim());
    }

    // Single-core cost of one derivation (the dominant cost per value).
    let master = MasterKey::new(&Secret::new(KEY)).unwrap();
    let samples = 20;
    let t = Instant::now();
    for i in 0..samples {
        std::hint::black_box(fmt::derive_key(&master, &[i as u8; 32]));
    }
    let per_derivation = t.elapsed().as_secs_f64() / samples as f64;

    let spec: StoreSpec = format!("prompttrain-db:{}", db.url()).parse().unwrap();
    let opts = OpenOptions {
        prompttrain_key: Some(Secret::new(KEY)),
        ..OpenOptions::default()
    };
    let s = store::open(&spec, &opts).unwrap();
    let t = Instant::now();
    let mut at = 0;
    for b in batches(n) {
        let batch = &creds[at..at + b];
        let results = s.write_many(batch);
        assert!(
            results.iter().all(|r| r.is_ok()),
            "{:?}",
            results.iter().find(|r| r.is_err())
        );
        let ids: Vec<CredentialId> = batch.iter().map(|c| c.id.clone()).collect();
        for (c, back) in batch.iter().zip(s.read_many(&ids)) {
            let back = back.expect("read back").expect("present");
            assert!(back.secret.ct_eq(&c.secret));
        }
        at += b;
    }
    let forward = t.elapsed().as_secs_f64();

    // Node: encrypt n values, then decrypt them (its own loop, one core).
    let node = node_bench(n);

    // The reverse: Node's values in a database, read by a fresh store
    // (no cached keys) and sealed into an encrypted file.
    let reverse = node.as_ref().map(|(_, _, stored)| {
        let db2 = server.create_database();
        let mut c = postgres::Client::connect(&db2.url(), postgres::NoTls).unwrap();
        c.batch_execute(credshift::store::prompttrain_db::SCHEMA_SQL)
            .unwrap();
        let mut tx = c.transaction().unwrap();
        for (i, v) in stored.iter().enumerate() {
            tx.execute(
                "INSERT INTO accounts (account_id, account_name, credential_type, api_key_encrypted) \
                 VALUES ($1, $2, 'api_key', $3)",
                &[&format!("acc_node{i:05}"), &format!("node{i:05}"), v],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let spec2: StoreSpec = format!("prompttrain-db:{}", db2.url()).parse().unwrap();
        let from = store::open(&spec2, &opts).unwrap();
        let to_opts = OpenOptions {
            passphrase: Some(Secret::new("bench passphrase")),
            ..OpenOptions::default()
        };
        let to = store::open(&StoreSpec::Encrypted(tmp.path().join("from-node.enc")), &to_opts)
            .unwrap();
        let t = Instant::now();
        let scan = from.read_all().unwrap();
        assert_eq!(scan.credentials.len(), stored.len());
        assert!(scan.errors.is_empty());
        assert!(to.write_many(&scan.credentials).iter().all(|r| r.is_ok()));
        t.elapsed().as_secs_f64()
    });

    let rate = openssl_rate();
    let limit = |values: usize| {
        rate.map(|r| 2.0 * fmt::ITERATIONS as f64 * values as f64 / r / cores as f64)
    };
    println!("prompttrain-db benchmark: {accounts} accounts, {n} values from {source}");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        // Other work on the machine takes cores from the parallel phase.
        println!("load average at the end: {}", load.trim());
    }
    println!(
        "cores: {cores}; one PBKDF2 derivation (100,000 iterations) on one core: {:.1} ms",
        per_derivation * 1e3
    );
    let vs_limit = |secs: f64, values: usize| match limit(values) {
        Some(l) => format!("limit {l:.2} s, {:.0}% of it", l / secs * 100.0),
        None => "limit unknown (no openssl)".into(),
    };
    println!(
        "credshift: {n} values into prompttrain-db, engine batches + read-back: {forward:>7.2} s  ({})",
        vs_limit(forward, n)
    );
    match (&node, reverse) {
        (Some((enc, dec, _)), Some(rev)) => {
            println!("node loop: encrypt {n} values:                      {enc:>7.2} s");
            println!("node loop: decrypt {n} values:                      {dec:>7.2} s");
            println!(
                "credshift: {n} Node-written values -> encrypted file:  {rev:>7.2} s  ({})",
                vs_limit(rev, n)
            );
            println!(
                "speed-up vs node: into the database {:.2}x, out of it {:.2}x",
                enc / forward,
                dec / rev
            );
        }
        _ => println!("node loop: node not available"),
    }
}
