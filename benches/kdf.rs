//! PBKDF2-HMAC-SHA256 against the limit of this CPU, all in one run.
//!
//! The limit: PBKDF2-HMAC-SHA256 costs two SHA-256 compressions per
//! iteration once the HMAC pads are precomputed, so one core cannot do more
//! than (compressions per second) / 2 iterations per second. The compression
//! rate is measured twice: by `openssl speed -evp sha256` on 16 KiB buffers
//! (256 compressions per call, so call overhead vanishes), and by sha2's own
//! `compress256` over a 16 KiB buffer in this process.
//!
//! Held against it: credshift's loop (`kdf::pbkdf2_sha256`: the fused
//! SHA-NI loop where the CPU has it), the same loop deriving two keys
//! interleaved (`kdf::pbkdf2_sha256_pair`, per key), credshift's loop on
//! sha2's `compress256` (`kdf::pbkdf2_sha256_sha2_loop`, the fallback), the
//! `pbkdf2` crate (`kdf::pbkdf2_sha256_reference`), OpenSSL's own
//! `PKCS5_PBKDF2_HMAC` (through the `openssl` crate native-tls already
//! links), credshift's own loop run on OpenSSL's block function instead of
//! sha2's (`SHA256_Transform`, one block per call: what switching the block
//! function alone would give), ring's `pbkdf2::derive` (a dev-dependency,
//! for this comparison only) and Node's `crypto.pbkdf2Sync` (what
//! agent-prompttrain uses), each deriving 100,000-iteration keys. The rate
//! of sha2's block function called one block at a time on one chain shows
//! the per-call cost a PBKDF2 iteration cannot avoid through sha2's API.
//! Then a batch of 1,500 keys over every core (`kdf::pbkdf2_sha256_many`,
//! what prompttrain-db batches use): wall time against the all-core limit,
//! and CPU time per key.
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

/// Compressions per CPU second of sha2's block function called with ONE
/// block at a time on one dependency chain (each call's state is the last
/// call's result): what a PBKDF2 iteration pays per compression beyond the
/// rounds themselves (state layout in and out, the call, the check for the
/// CPU's SHA extensions), without any of credshift's own loop.
fn one_block_rate() -> f64 {
    let block = [[0x5au8; 64]; 1];
    let mut state = [0u32; 8];
    let n = 1_000_000;
    let t = cpu_now();
    for _ in 0..n {
        sha2::block_api::compress256(&mut state, std::hint::black_box(&block));
    }
    std::hint::black_box(state);
    n as f64 / (cpu_now() - t)
}

unsafe extern "C" {
    /// OpenSSL's SHA-256 block function, one block per call (libcrypto,
    /// linked through the `openssl` crate). Its context starts with the
    /// eight state words.
    fn SHA256_Transform(ctx: *mut ShaCtx, block: *const u8);
}

/// OpenSSL's `SHA256_CTX` (only `h` is used).
#[repr(C)]
struct ShaCtx {
    h: [u32; 8],
    nl: u32,
    nh: u32,
    data: [u32; 16],
    num: u32,
    md_len: u32,
}

/// The iteration loop of `kdf::pbkdf2_sha256` with OpenSSL's block function
/// in place of sha2's (pads and U1 as the reference crate computes them):
/// what switching the block function alone, a dependency-level change,
/// would give. Returns the key, checked against credshift's.
fn openssl_block_loop(pw: &[u8], salt: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 64];
    key[..pw.len()].copy_from_slice(pw);
    let pad = |b: u8| -> [u32; 8] {
        let mut s = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
            0x5be0cd19,
        ];
        sha2::block_api::compress256(&mut s, &[key.map(|k| k ^ b)]);
        s
    };
    let (inner, outer) = (pad(0x36), pad(0x5c));
    let u1 = *kdf::pbkdf2_sha256_reference(pw, salt, 1);
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&u1);
    block[32] = 0x80;
    block[56..].copy_from_slice(&768u64.to_be_bytes());
    let mut acc = u1;
    // SAFETY: an all-zero SHA256_CTX is a valid value of plain integers.
    let mut ctx: ShaCtx = unsafe { std::mem::zeroed() };
    for _ in 1..ITERATIONS {
        for st in [inner, outer] {
            ctx.h = st;
            // SAFETY: a valid context and a 64-byte block, as the C API asks.
            unsafe { SHA256_Transform(&mut ctx, block.as_ptr()) };
            for (i, w) in ctx.h.iter().enumerate() {
                block[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
            }
        }
        for (a, b) in acc.iter_mut().zip(&block[..32]) {
            *a ^= b;
        }
    }
    acc
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
    let sha2_loop = per_key(runs, |s| *kdf::pbkdf2_sha256_sha2_loop(pw, s, ITERATIONS));
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
    let ring = per_key(runs, |s| {
        let mut out = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(ITERATIONS).unwrap(),
            s,
            pw,
            &mut out,
        );
        out
    });
    let ossl_block = per_key(runs.min(8), |s| openssl_block_loop(pw, s));
    assert_eq!(
        openssl_block_loop(pw, &[3u8; 32]),
        *kdf::pbkdf2_sha256(pw, &[3u8; 32], ITERATIONS),
        "the OpenSSL-block loop derives the same key"
    );
    let node = node_per_key(runs);
    let ours_rate = compress_rate();
    let single_rate = one_block_rate();
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
    println!(
        "sha2 compress256 one block per call, one chain: {:.2} M compressions/s ({:.3}x the \
         multi-block time)",
        single_rate / 1e6,
        ours_rate / single_rate
    );
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
    line("credshift loop on sha2 (fallback)", sha2_loop);
    line("pbkdf2 crate 0.13 (pbkdf2_hmac)", crate_);
    line("openssl PKCS5_PBKDF2_HMAC", ossl);
    line("credshift's loop on OpenSSL's block fn", ossl_block);
    line("ring 0.17 pbkdf2::derive", ring);
    match node {
        Some(n) => line("node crypto.pbkdf2Sync", n),
        None => println!("node crypto.pbkdf2Sync: node not available"),
    }
    println!(
        "one derivation: {:.3}x the compression limit (target <= 1.11x); interleaved pair: \
         {:.3}x per key; on sha2's compress256: {:.3}x",
        fast / limit,
        pair / limit,
        sha2_loop / limit
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
