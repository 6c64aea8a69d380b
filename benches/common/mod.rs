//! Helpers shared by the benchmarks: each bench includes this with
//! `mod common;` (a folder, so cargo does not take it for a bench itself).
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// SHA-256 compressions per second from `openssl speed -evp sha256` on
/// 16 KiB blocks (256 compressions per call, so call overhead vanishes).
pub fn openssl_rate() -> Option<f64> {
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

/// `/proc/loadavg` as one line, to print beside the numbers: other work on
/// the machine takes cores from the measured code and from its peer.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU seconds used so far by this process (all threads) and by its
/// waited-for children.
pub fn cpu() -> f64 {
    let get = |who| {
        // SAFETY: a zeroed rusage is a valid out-parameter; `who` is a constant.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// Wall-clock and CPU seconds (this process and its children) of `f`.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let c = cpu();
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64(), cpu() - c)
}

/// The Node loop of agent-prompttrain's original algorithm: its times and
/// what it stored.
pub struct NodeRun {
    /// Wall-clock and CPU seconds of each loop.
    pub encrypt: (f64, f64),
    pub decrypt: (f64, f64),
    /// What Node stored for each value, in order.
    pub stored: Vec<String>,
}

/// `scripts/prompttrain-crypto.js bench` over `values` under `key`
/// (secrets on stdin, the key in the environment, never argv): encrypt
/// all, then decrypt all, one derivation each. `None` without Node.
pub fn node_bench(key: &str, values: &[&str]) -> Option<NodeRun> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prompttrain-crypto.js");
    let mut child = Command::new("node")
        .arg(script)
        .arg("bench")
        .env("CREDENTIAL_ENCRYPTION_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let input = serde_json::json!({ "values": values, "emit": true });
    child
        .stdin
        .take()?
        .write_all(input.to_string().as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let stored: Vec<String> = v["stored"]
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    (stored.len() == values.len()).then_some(())?;
    let pair = |w: &str, c: &str| Some((v[w].as_f64()? / 1e3, v[c].as_f64()? / 1e3));
    Some(NodeRun {
        encrypt: pair("encrypt_ms", "encrypt_cpu_ms")?,
        decrypt: pair("decrypt_ms", "decrypt_cpu_ms")?,
        stored,
    })
}
