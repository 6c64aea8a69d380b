//! PBKDF2-HMAC-SHA256 against the limit of this CPU, all in one run.
//!
//! The limit: PBKDF2-HMAC-SHA256 costs two SHA-256 compressions per
//! iteration once the HMAC pads are precomputed, so one core cannot do more
//! than (compressions per second) / 2 iterations per second. The compression
//! rate is measured twice: by `openssl speed -evp sha256` on 16 KiB buffers
//! (256 compressions per call, so call overhead vanishes), and by sha2's own
//! `compress256` over a 16 KiB buffer in this process.
//!
//! Held against it: credshift's loop (`kdf::pbkdf2_sha256`), the same loop
//! deriving two keys interleaved (`kdf::pbkdf2_sha256_pair`, per key), the
//! `pbkdf2` crate (`kdf::pbkdf2_sha256_reference`), OpenSSL's own
//! `PKCS5_PBKDF2_HMAC` (through the `openssl` crate native-tls already
//! links: what a dependency-level switch would give) and Node's
//! `crypto.pbkdf2Sync` (what agent-prompttrain uses), each deriving
//! 100,000-iteration keys. Then a batch of 1,500 keys over every core
//! (`kdf::pbkdf2_sha256_many`, what prompttrain-db batches use): wall time
//! against the all-core limit, and CPU time per key.
//!
//! Every time here is CPU time of the one thread doing the work (openssl
//! speed divides by user CPU time too), so the ratios hold on a machine
//! busy with other work, where wall-clock time would mostly measure the
//! wait for a core.
//!
//! `cargo bench --bench kdf` (`CREDSHIFT_BENCH_KDF_RUNS=N` keys per
//! implementation, default 20).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Write;
use std::process::{Command, Stdio};

use credshift::crypto::kdf;

mod common;
use common::openssl_rate;

const ITERATIONS: u32 = 100_000;

/// CPU time of this thread, in seconds.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Compressions per CPU second of sha2's block function in this process.
fn compress_rate() -> f64 {
    let blocks = vec![[0x5au8; 64]; 256];
    let mut state = [0u32; 8];
    let rounds = 4000;
    let t = cpu_now();
    for _ in 0..rounds {
        sha2::block_api::compress256(&mut state, std::hint::black_box(&blocks));
    }
    std::hint::black_box(state);
    (rounds * blocks.len()) as f64 / (cpu_now() - t)
}

/// CPU seconds per 100,000-iteration key, median of `runs`.
fn per_key(runs: usize, f: impl Fn(&[u8]) -> [u8; 32]) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|i| {
            let salt = [i as u8; 32];
            let t = cpu_now();
            std::hint::black_box(f(&salt));
            cpu_now() - t
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU seconds per key of Node's `crypto.pbkdf2Sync` (a loop of `runs`).
fn node_per_key(runs: usize) -> Option<f64> {
    let script = "const c=require('crypto');const n=+require('fs').readFileSync(0,'utf8');\
        const t=process.cpuUsage();\
        for(let i=0;i<n;i++)c.pbkdf2Sync('bench-master-key-0123456789abcdef-ok',Buffer.alloc(32,i),100000,32,'sha256');\
        const u=process.cpuUsage(t);process.stdout.write(String((u.user+u.system)/1e6/n));";
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()?
        .write_all(runs.to_string().as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// Keys in the all-core batch row (the prompttrain-db bench's 1,500 values).
const BATCH: usize = 1500;

/// Process CPU time (every thread), in seconds.
fn process_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and process CPU seconds for `n` keys derived by `pbkdf2_sha256_many`.
fn batch(pw: &[u8], n: usize) -> (f64, f64) {
    let salts: Vec<[u8; 32]> = (0..n).map(|i| [(i % 251) as u8; 32]).collect();
    let refs: Vec<&[u8]> = salts.iter().map(|s| s.as_slice()).collect();
    let (t, c) = (std::time::Instant::now(), process_cpu());
    std::hint::black_box(kdf::pbkdf2_sha256_many(pw, &refs, ITERATIONS));
    (t.elapsed().as_secs_f64(), process_cpu() - c)
}

fn main() {
    let runs: usize = std::env::var("CREDSHIFT_BENCH_KDF_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let pw = b"bench-master-key-0123456789abcdef-ok";
    println!("load average at the start: {}", common::load_average());
    let fast = per_key(runs, |s| *kdf::pbkdf2_sha256(pw, s, ITERATIONS));
    let pair = per_key(runs, |s| {
        let [a, b] = kdf::pbkdf2_sha256_pair(pw, [s, &[1u8; 32]], ITERATIONS);
        std::hint::black_box(*b);
        *a
    }) / 2.0;
    let crate_ = per_key(runs, |s| *kdf::pbkdf2_sha256_reference(pw, s, ITERATIONS));
    let ossl = per_key(runs.min(8), |s| {
        let mut out = [0u8; 32];
        openssl::pkcs5::pbkdf2_hmac(
            pw,
            s,
            ITERATIONS as usize,
            openssl::hash::MessageDigest::sha256(),
            &mut out,
        )
        .expect("openssl pbkdf2");
        out
    });
    let node = node_per_key(runs);
    let ours_rate = compress_rate();
    let ssl_rate = openssl_rate();

    let limit_key = |rate: f64| 2.0 * ITERATIONS as f64 / rate;
    println!(
        "PBKDF2-HMAC-SHA256, {ITERATIONS} iterations, one core, CPU time, median of {runs} keys"
    );
    println!(
        "sha2 compress256 rate in-process: {:.2} M compressions/s -> limit {:.2} ms/key",
        ours_rate / 1e6,
        limit_key(ours_rate) * 1e3
    );
    if let Some(r) = ssl_rate {
        println!(
            "openssl speed -evp sha256 (16 KiB): {:.2} M compressions/s -> limit {:.2} ms/key",
            r / 1e6,
            limit_key(r) * 1e3
        );
    }
    let limit = limit_key(ssl_rate.unwrap_or(ours_rate));
    let line = |name: &str, s: f64| {
        println!(
            "{name:<38} {:>7.2} ms/key  {:>5.1}% of the limit",
            s * 1e3,
            limit / s * 100.0
        )
    };
    line("credshift kdf::pbkdf2_sha256", fast);
    line("credshift pbkdf2_sha256_pair (per key)", pair);
    line("pbkdf2 crate 0.13 (pbkdf2_hmac)", crate_);
    line("openssl PKCS5_PBKDF2_HMAC", ossl);
    match node {
        Some(n) => line("node crypto.pbkdf2Sync", n),
        None => println!("node crypto.pbkdf2Sync: node not available"),
    }
    println!(
        "one derivation: {:.3}x the compression limit (target <= 1.11x); interleaved pair: {:.3}x per key",
        fast / limit,
        pair / limit
    );
    let (wall, cpu) = batch(pw, BATCH);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_core_limit = BATCH as f64 * limit / cores as f64;
    println!(
        "batch of {BATCH} keys, kdf::pbkdf2_sha256_many on {cores} cores: {wall:.3} s wall \
         ({:.1}% of the {cores}-core limit {all_core_limit:.3} s; load {}), {:.2} ms CPU per key \
         ({:.1}% of the one-core limit)",
        all_core_limit / wall * 100.0,
        common::load_average(),
        cpu / BATCH as f64 * 1e3,
        limit / (cpu / BATCH as f64) * 100.0
    );
    println!(
        "credshift vs pbkdf2 crate: {:.2}x faster{}",
        crate_ / fast,
        node.map(|n| format!("; vs node: {:.2}x faster", n / fast))
            .unwrap_or_default()
    );
}
