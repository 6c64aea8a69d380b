//! Benchmark: 1,000 agent-prompttrain accounts into `prompttrain-db:` on a
//! real PostgreSQL server (started like the tests do), against the ideal
//! (single-core derivation time x derivations / cores) and against a Node.js
//! loop of the original algorithm (scripts/prompttrain-crypto.js).
//!
//! `cargo bench --bench prompttrain_db`; `CREDSHIFT_BENCH_ACCOUNTS=N` to
//! change the size (default 1000: 2/3 API-key accounts, 1/3 OAuth accounts
//! with two tokens each). `CREDSHIFT_BENCH_NODE=0` skips the Node run.

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
    let mut x = seed as u64 * 6364136223846793005 + 1442695040888963407;
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

fn node_bench(count: usize) -> Option<(f64, f64)> {
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
        .write_all(format!("{{\"count\":{count}}}").as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["encrypt_ms"].as_f64()?, v["decrypt_ms"].as_f64()?))
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

    // Single-core cost of one derivation (the dominant cost per value).
    let master = MasterKey::new(&Secret::new(KEY)).unwrap();
    let samples = 20;
    let t = Instant::now();
    for i in 0..samples {
        std::hint::black_box(fmt::derive_key(&master, &[i as u8; 32]));
    }
    let per_derivation = t.elapsed().as_secs_f64() / samples as f64;
    let ideal = per_derivation * n as f64 / cores as f64;

    let spec: StoreSpec = format!("prompttrain-db:{}", db.url()).parse().unwrap();
    let opts = OpenOptions {
        prompttrain_key: Some(Secret::new(KEY)),
        ..OpenOptions::default()
    };
    let s = store::open(&spec, &opts).unwrap();
    let t = Instant::now();
    let results = s.write_many(&creds);
    let write = t.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failed, 0, "{:?}", results.iter().find(|r| r.is_err()));

    let t = Instant::now();
    let scan = s.read_all().unwrap();
    let read = t.elapsed().as_secs_f64();
    assert_eq!(scan.credentials.len(), n);
    assert!(scan.errors.is_empty());

    println!("prompttrain-db benchmark: {accounts} accounts, {n} values from {source}");
    println!(
        "cores: {cores}; one PBKDF2 derivation (100,000 iterations) on one core: {:.1} ms",
        per_derivation * 1e3
    );
    println!("ideal (derivation x values / cores):   {ideal:>8.2} s");
    println!(
        "write_many (encrypt + 1 transaction):  {write:>8.2} s  ({:.0}% of ideal)",
        ideal / write * 100.0
    );
    println!(
        "read_all (1 query + decrypt):          {read:>8.2} s  ({:.0}% of ideal)",
        ideal / read * 100.0
    );
    if std::env::var("CREDSHIFT_BENCH_NODE").is_ok_and(|v| v == "0") {
        return;
    }
    match node_bench(n) {
        Some((enc, dec)) => {
            println!(
                "node loop, encrypt {n} (pbkdf2Sync + GCM each): {:>8.2} s",
                enc / 1e3
            );
            println!(
                "node loop, decrypt {n}:                         {:>8.2} s",
                dec / 1e3
            );
            println!(
                "speed-up vs node: write {:.2}x, read {:.2}x",
                enc / 1e3 / write,
                dec / 1e3 / read
            );
        }
        None => println!("node loop: node not available"),
    }
}
