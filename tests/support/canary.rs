//! Canary helpers: every encoding a leaked secret could take, and a search
//! of outputs and files for them.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Raw, base64 (standard and URL-safe, padded or not), hex (both cases)
/// and JSON-escaped.
pub fn forms(secret: &str) -> Vec<(&'static str, Vec<u8>)> {
    let b = secret.as_bytes();
    let json = serde_json::to_string(secret).unwrap();
    vec![
        ("raw", b.to_vec()),
        ("base64", STANDARD.encode(b).into_bytes()),
        ("base64-nopad", STANDARD_NO_PAD.encode(b).into_bytes()),
        ("base64url", URL_SAFE.encode(b).into_bytes()),
        ("base64url-nopad", URL_SAFE_NO_PAD.encode(b).into_bytes()),
        ("hex", hex::encode(b).into_bytes()),
        ("HEX", hex::encode_upper(b).into_bytes()),
        ("json", json.trim_matches('"').as_bytes().to_vec()),
    ]
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, recursively (`dir` itself when it is a file).
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Panic naming the haystack and the encoding when any form of `secret`
/// is in any of `haystacks` (name, bytes).
pub fn assert_absent(secret: &str, haystacks: &[(String, Vec<u8>)]) {
    for (form, needle) in forms(secret) {
        for (name, hay) in haystacks {
            assert!(
                !contains(hay, &needle),
                "the planted secret ({form}) is in {name}"
            );
        }
    }
}

/// (path, bytes) of every file under `dir`.
pub fn file_haystacks(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p.display().to_string(), b)))
        .collect()
}
