//! Benchmark of `credshift rekey` (issue 25), the release binary end to
//! end (locks, plan, backup, journal, compare-and-swap, read-back), each
//! against a peer measured in the same run:
//!
//! 1. 1,000 agent-prompttrain accounts (1,500 values, written by Node under
//!    the old key) rekeyed in PostgreSQL, against a Node loop of the
//!    original algorithm doing the same decrypt-and-encrypt per value
//!    (scripts/prompttrain-crypto.js `bench`: encrypt all, decrypt all; one
//!    derivation each, as a rekey needs per value). Also the share of this
//!    CPU's limit: two 100,000-iteration derivations per value, 2 SHA-256
//!    compressions per iteration at `openssl speed -evp sha256`'s rate on
//!    every core.
//! 2. 100,000 items in an `encrypted:` file rekeyed to a new passphrase
//!    (target: under 2 s), against `openssl enc -d` of an OpenSSL-encrypted
//!    copy of the same plaintext then `openssl enc` into a new file with a
//!    new passphrase (PBKDF2, 600,000 iterations each), then `sync`.
//!
//! `cargo bench --bench rekey` (or scripts/bench-rekey.sh);
//! `CREDSHIFT_BENCH_ACCOUNTS=N`, `CREDSHIFT_BENCH_ITEMS=N` change the sizes.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use credshift::credential::Secret;
use credshift::store::{self, StoreSpec};
use credshift::unlock::KeyOptions;

const OLD_KEY: &str = "bench-master-key-0123456789abcdef-ok";
const NEW_KEY: &str = "bench-new-master-key-9876543210-fedcba";
const OLD_PASS: &str = "bench passphrase, not a secret";
const NEW_PASS: &str = "bench new passphrase, not a secret";

/// The values of `accounts` accounts: half with an API key, half OAuth
/// with two tokens. (account id, column, value).
fn values(accounts: usize) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    for i in 0..accounts {
        let id = format!("acc_bench{i:04}");
        if i % 2 == 0 {
            out.push((id, 0, format!("sk-ant-api03-{i:06}-{}", "x".repeat(90))));
        } else {
            out.push((
                id.clone(),
                1,
                format!("sk-ant-oat01-{i:06}-{}", "y".repeat(90)),
            ));
            out.push((id, 2, format!("sk-ant-ort01-{i:06}-{}", "z".repeat(90))));
        }
    }
    out
}

fn insert(url: &str, rows: &[(String, usize, String)], stored: &[String]) {
    let mut accounts: std::collections::BTreeMap<&str, [Option<&str>; 3]> = Default::default();
    for ((id, col, _), v) in rows.iter().zip(stored) {
        accounts.entry(id).or_default()[*col] = Some(v);
    }
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.batch_execute(credshift::store::prompttrain_db::SCHEMA_SQL)
        .unwrap();
    let mut tx = c.transaction().unwrap();
    for (id, v) in &accounts {
        let ctype = if v[0].is_some() { "api_key" } else { "oauth" };
        tx.execute(
            "INSERT INTO accounts (account_id, account_name, credential_type, api_key_encrypted, \
             oauth_access_token_encrypted, oauth_refresh_token_encrypted) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[id, &format!("n-{id}"), &ctype, &v[0], &v[1], &v[2]],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(f, "{text}").unwrap();
}

fn rekey(state: &Path, spec: &str, env: &[(&str, &str)], extra: &[&str], n: usize) -> (f64, f64) {
    let mut cmd = support::credshift(state);
    cmd.args(["rekey", "--store", spec, "--yes", "--json"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let ((out, stdout, stderr), wall, cpu) = common::timed(|| support::run(&mut cmd));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["copied"], n, "{r}");
    (wall, cpu)
}

fn openssl(args: &[&str], pass_env: &str) {
    let st = Command::new("openssl")
        .args(args)
        .args(["-pass", &format!("env:{pass_env}")])
        .env("OLDPASS", OLD_PASS)
        .env("NEWPASS", NEW_PASS)
        .status()
        .unwrap();
    assert!(st.success());
}

fn main() {
    let accounts: usize = std::env::var("CREDSHIFT_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let items: usize = std::env::var("CREDSHIFT_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir().unwrap();
    println!("load average at the start: {}", common::load_average());

    // 1. agent-prompttrain in PostgreSQL.
    let server = match support::pg::PgServer::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no PostgreSQL server: {e}");
            return;
        }
    };
    let rows = values(accounts);
    let n = rows.len();
    let plain: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let Some(node) = common::node_bench(OLD_KEY, &plain) else {
        eprintln!("SKIPPED: node not available or failed");
        return;
    };
    let db = server.create_database();
    insert(&db.url(), &rows, &node.stored);
    let new_key = tmp.path().join("new.key");
    private(&new_key, NEW_KEY);
    let pt = rekey(
        &tmp.path().join("state-pt"),
        &format!("prompttrain-db:{}", db.url()),
        &[("CREDENTIAL_ENCRYPTION_KEY", OLD_KEY)],
        &["--new-key-file", new_key.to_str().unwrap()],
        n,
    );
    // Untimed: every value reads back under the new key.
    let spec: StoreSpec = format!("prompttrain-db:{}", db.url()).parse().unwrap();
    let opts = KeyOptions {
        prompttrain_key: Some(Secret::new(NEW_KEY)),
        ..KeyOptions::default()
    };
    let scan = store::open(&spec, &opts).unwrap().read_all().unwrap();
    assert_eq!(scan.credentials.len(), n);
    assert!(scan.errors.is_empty());
    let peer = (
        node.encrypt.0 + node.decrypt.0,
        node.encrypt.1 + node.decrypt.1,
    );
    let rate = common::openssl_rate();
    // Two derivations per value, two compressions per iteration.
    let compressions = 2.0 * 2.0 * credshift::crypto::prompttrain::ITERATIONS as f64 * n as f64;
    let limit_wall = rate.map(|r| compressions / r / cores as f64);
    let limit_cpu = rate.map(|r| compressions / r);
    println!("rekey benchmark, {cores} cores");
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "wall s", "peer s", "ratio", "cpu s", "peer", "ratio"
    );
    let pct = |l: Option<f64>, s: f64| l.map_or("-".into(), |l| format!("{:.0}%", l / s * 100.0));
    println!(
        "{:<58} {:>8.2} {:>8.2} {:>7.2}x {:>8.2} {:>8.2} {:>7.2}x",
        format!("prompttrain-db, {accounts} accounts ({n} values) vs node loop"),
        pt.0,
        peer.0,
        peer.0 / pt.0,
        pt.1,
        peer.1,
        peer.1 / pt.1
    );
    println!(
        "  share of the {cores}-core SHA-256 limit: wall {}, cpu {} (limit {:.2} s wall)",
        pct(limit_wall, pt.0),
        pct(limit_cpu, pt.1),
        limit_wall.unwrap_or(0.0)
    );

    // 2. An encrypted: file of `items` items.
    let env = tmp.path().join("in.env");
    let mut text = String::with_capacity(items * 120);
    for i in 0..items {
        text.push_str(&format!(
            "KEY_{i:08}=sk-ant-api03-{i:08}-{}\n",
            "x".repeat(90)
        ));
    }
    std::fs::write(&env, &text).unwrap();
    let file = tmp.path().join("big.enc");
    let mut m = support::credshift(&tmp.path().join("state-setup"));
    m.args(["migrate", "--from", &format!("dotenv:{}", env.display())])
        .args(["--to", &format!("encrypted:{}", file.display()), "--yes"])
        .env("CREDSHIFT_PASSPHRASE", OLD_PASS);
    assert!(support::run(&mut m).0.status.success());
    let enc = rekey(
        &tmp.path().join("state-enc"),
        &format!("encrypted:{}", file.display()),
        &[("CREDSHIFT_PASSPHRASE", OLD_PASS), ("NEWPASS", NEW_PASS)],
        &["--new-passphrase-env", "NEWPASS"],
        1,
    );
    let old_copy = tmp.path().join("peer-old.bin");
    let new_copy = tmp.path().join("peer-new.bin");
    let plain_copy = tmp.path().join("peer-plain.env");
    let e = env.to_str().unwrap();
    let (oc, nc, pc) = (
        old_copy.to_str().unwrap(),
        new_copy.to_str().unwrap(),
        plain_copy.to_str().unwrap(),
    );
    let base = ["-aes-256-ctr", "-pbkdf2", "-iter", "600000"];
    openssl(
        &[&["enc"][..], &base, &["-in", e, "-out", oc]].concat(),
        "OLDPASS",
    );
    let ((), pw, pcpu) = common::timed(|| {
        openssl(
            &[&["enc", "-d"][..], &base, &["-in", oc, "-out", pc]].concat(),
            "OLDPASS",
        );
        openssl(
            &[&["enc"][..], &base, &["-in", pc, "-out", nc]].concat(),
            "NEWPASS",
        );
        assert!(Command::new("sync").status().unwrap().success());
    });
    println!(
        "{:<58} {:>8.2} {:>8.2} {:>7.2}x {:>8.2} {:>8.2} {:>7.2}x",
        format!("encrypted:, {items} items vs openssl dec+enc"),
        enc.0,
        pw,
        pw / enc.0,
        enc.1,
        pcpu,
        pcpu / enc.1
    );
    println!(
        "  target: under 2 s ({})",
        if enc.0 < 2.0 { "met" } else { "missed" }
    );
    println!("load average at the end: {}", common::load_average());
}
