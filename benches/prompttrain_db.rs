//! Benchmark: 1,000 agent-prompttrain accounts (1,500 values) from the
//! credentials directory into `prompttrain-db:` on a real PostgreSQL server
//! (started like the tests do), with read-back; and the reverse: values
//! written by Node into the database, moved into an `encrypted:` file.
//!
//! Each direction is measured twice in the same run:
//! - end to end: the built binary, `credshift migrate --from prompttrain:DIR
//!   --to prompttrain-db:URL --yes` (and `--from prompttrain-db:URL --to
//!   encrypted:FILE --yes`), plan, locks, journal, backup and read-back
//!   included;
//! - at the store level: the engine's batches (1, 2, 4, ... 256), each a
//!   `write_many` (parallel key derivation, one transaction) and a
//!   `read_many` read-back (one query; the keys derived for the write are
//!   reused, the values are decrypted from what the database returned) with
//!   a constant-time comparison; the reverse as a fresh store's `read_all`
//!   (every key derived, in parallel) sealed by one `write_many`.
//!
//! Peers in the same run: a Node.js loop of the original algorithm over the
//! same values (scripts/prompttrain-crypto.js: pbkdf2Sync + AES-256-GCM per
//! value with a fresh salt and IV, encrypt all, then decrypt all), and the
//! limit of this CPU: 2 SHA-256 compressions per PBKDF2 iteration at
//! `openssl speed -evp sha256`'s rate, over all cores.
//!
//! `cargo bench --bench prompttrain_db`; `CREDSHIFT_BENCH_ACCOUNTS=N` to
//! change the size (default 1000: half API-key accounts, half OAuth accounts
//! with two tokens each, so 1,500 values).
//!
//! Besides wall-clock time, each phase prints the CPU time it used (its
//! threads, or the child process's), which holds on a machine busy with
//! other work where wall-clock time mostly measures the wait for a core.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use credshift::credential::{Credential, CredentialId, Secret};
use credshift::crypto::prompttrain::{self as fmt, MasterKey};
use credshift::engine::batch_sizes;
use credshift::store::prompttrain_db::{Target, parse_id};
use credshift::store::{self, StoreSpec};
use credshift::unlock::KeyOptions;

const KEY: &str = "bench-master-key-0123456789abcdef-ok";

/// The accounts as JSON files in agent-prompttrain's credentials layout.
fn write_credentials_dir(dir: &std::path::Path, accounts: usize) {
    let acc = dir.join("accounts");
    std::fs::create_dir_all(&acc).unwrap();
    for i in 0..accounts {
        let name = format!("bench{i:04}");
        let body = if i % 2 == 1 {
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

/// The credentials, read with the `prompttrain:DIR` store.
fn load(dir: &Path) -> Vec<Credential> {
    let spec: StoreSpec = format!("prompttrain:{}", dir.display()).parse().unwrap();
    let scan = store::open(&spec, &KeyOptions::default())
        .and_then(|s| s.read_all())
        .expect("read the credentials directory");
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    scan.credentials
}

/// Node's values in agent-prompttrain's tables, one row per account (set-up,
/// not timed).
fn insert_node_values(url: &str, creds: &[Credential], stored: &[String]) {
    let mut accounts: BTreeMap<String, [Option<&str>; 3]> = BTreeMap::new();
    for (c, v) in creds.iter().zip(stored) {
        let Ok(Target::Account { account, field }) = parse_id(&c.id) else {
            panic!("not an account value: {}", c.id);
        };
        accounts.entry(account).or_default()[field as usize] = Some(v);
    }
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.batch_execute(credshift::store::prompttrain_db::SCHEMA_SQL)
        .unwrap();
    let mut tx = c.transaction().unwrap();
    for (account, v) in &accounts {
        let ctype = if v[0].is_some() { "api_key" } else { "oauth" };
        tx.execute(
            "INSERT INTO accounts (account_id, account_name, credential_type, api_key_encrypted, \
             oauth_access_token_encrypted, oauth_refresh_token_encrypted) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                account,
                &format!("node-{account}"),
                &ctype,
                &v[0],
                &v[1],
                &v[2],
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// `credshift migrate --from FROM --to TO --yes --json` with the release
/// binary (the passphrase in the environment only for an `encrypted:`
/// target); wall-clock and CPU seconds. Panics unless every value was copied.
fn cli_migrate(state: &Path, from: &str, to: &str, n: usize) -> (f64, f64) {
    let mut cmd = support::credshift(state);
    cmd.args(["migrate", "--from", from, "--to", to, "--yes", "--json"])
        .env("CREDENTIAL_ENCRYPTION_KEY", KEY);
    if to.starts_with("encrypted:") {
        cmd.env("CREDSHIFT_PASSPHRASE", PASSPHRASE);
    }
    let ((out, stdout, stderr), wall, cpu) = common::timed(|| support::run(&mut cmd));
    let r: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(r["copied"], n, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    (wall, cpu)
}

const PASSPHRASE: &str = "bench passphrase, not a secret";

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
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("credentials");
    write_credentials_dir(&dir, accounts);
    let creds = load(&dir);
    let n = creds.len();
    let load_start = common::load_average();

    // Single-core cost of one derivation (the dominant cost per value).
    let master = MasterKey::new(&Secret::new(KEY)).unwrap();
    let samples = 10;
    let t = Instant::now();
    for i in 0..samples {
        std::hint::black_box(fmt::derive_key(&master, &[i as u8; 32]));
    }
    let per_derivation = t.elapsed().as_secs_f64() / samples as f64;

    // 1. Into the database, end to end.
    let db_cli = server.create_database();
    let cli_forward = cli_migrate(
        &tmp.path().join("state-forward"),
        &format!("prompttrain:{}", dir.display()),
        &format!("prompttrain-db:{}", db_cli.url()),
        n,
    );

    // 2. Into the database at the store level, the engine's batches.
    let db = server.create_database();
    let opts = KeyOptions {
        prompttrain_key: Some(Secret::new(KEY)),
        ..KeyOptions::default()
    };
    let spec: StoreSpec = format!("prompttrain-db:{}", db.url()).parse().unwrap();
    let s = store::open(&spec, &opts).unwrap();
    let ((), fwd_wall, fwd_cpu) = common::timed(|| {
        let mut at = 0;
        for b in batch_sizes(n) {
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
    });
    let store_forward = (fwd_wall, fwd_cpu);

    // 3. Node: encrypt the same values, then decrypt them (one core).
    let values: Vec<&str> = creds.iter().map(|c| c.secret.expose()).collect();
    let Some(node) = common::node_bench(KEY, &values) else {
        eprintln!("node loop: node not available or failed");
        return;
    };

    // 4. Out of the database, end to end: Node's values into an encrypted file.
    let db_node = server.create_database();
    insert_node_values(&db_node.url(), &creds, &node.stored);
    let cli_reverse = cli_migrate(
        &tmp.path().join("state-reverse"),
        &format!("prompttrain-db:{}", db_node.url()),
        &format!("encrypted:{}", tmp.path().join("cli.enc").display()),
        n,
    );

    // 5. The same at the store level: a fresh store (no cached keys).
    let spec2: StoreSpec = format!("prompttrain-db:{}", db_node.url()).parse().unwrap();
    let from = store::open(&spec2, &opts).unwrap();
    let to_opts = KeyOptions {
        passphrase: Some(Secret::new(PASSPHRASE)),
        ..KeyOptions::default()
    };
    let to = store::open(
        &StoreSpec::Encrypted(tmp.path().join("store.enc")),
        &to_opts,
    )
    .unwrap();
    let ((), rev_wall, rev_cpu) = common::timed(|| {
        let scan = from.read_all().unwrap();
        assert_eq!(scan.credentials.len(), n);
        assert!(scan.errors.is_empty());
        assert!(to.write_many(&scan.credentials).iter().all(|r| r.is_ok()));
    });
    let store_reverse = (rev_wall, rev_cpu);

    let rate = common::openssl_rate();
    let limit = rate.map(|r| 2.0 * fmt::ITERATIONS as f64 * n as f64 / r / cores as f64);
    println!("prompttrain-db benchmark: {accounts} accounts, {n} values");
    println!("load average at the start: {load_start}");
    println!("load average at the end:   {}", common::load_average());
    println!(
        "cores: {cores}; one PBKDF2 derivation (100,000 iterations) on one core: {:.1} ms",
        per_derivation * 1e3
    );
    match (rate, limit) {
        (Some(r), Some(l)) => println!(
            "limit: openssl speed -evp sha256 {:.2} M compressions/s -> {n} derivations on {cores} cores in {l:.2} s",
            r / 1e6
        ),
        _ => println!("limit: unknown (no openssl)"),
    }
    // The limit in CPU time: n derivations at the compression rate.
    let cpu_limit = rate.map(|r| 2.0 * fmt::ITERATIONS as f64 * n as f64 / r);
    let pct =
        |l: Option<f64>, secs: f64| l.map_or("-".into(), |l| format!("{:.0}%", l / secs * 100.0));
    println!(
        "{:<46} {:>9} {:>7} {:>6} {:>9} {:>7} {:>6}",
        "", "wall", "vs node", "limit", "cpu", "vs node", "limit"
    );
    let node_row = |what: &str, (wall, cpu): (f64, f64)| {
        println!("{what:<46} {wall:>8.2}s {:>7} {:>6} {cpu:>8.2}s", "", "");
    };
    let row = |what: &str, (wall, cpu): (f64, f64), (pw, pc): (f64, f64)| {
        println!(
            "{what:<46} {wall:>8.2}s {:>6.2}x {:>6} {cpu:>8.2}s {:>6.2}x {:>6}",
            pw / wall,
            pct(limit, wall),
            pc / cpu,
            pct(cpu_limit, cpu),
        );
    };
    node_row(&format!("node loop, encrypt {n} values"), node.encrypt);
    node_row(&format!("node loop, decrypt {n} values"), node.decrypt);
    row(
        "into prompttrain-db, credshift migrate",
        cli_forward,
        node.encrypt,
    );
    row(
        "into prompttrain-db, store level",
        store_forward,
        node.encrypt,
    );
    row(
        "Node's values -> encrypted, credshift migrate",
        cli_reverse,
        node.decrypt,
    );
    row(
        "Node's values -> encrypted, store level",
        store_reverse,
        node.decrypt,
    );
}
