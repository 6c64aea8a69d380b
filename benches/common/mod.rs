//! Helpers shared by the benchmarks: each bench includes this with
//! `mod common;` (a folder, so cargo does not take it for a bench itself).
#![allow(dead_code)]

use std::process::{Command, Stdio};

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
