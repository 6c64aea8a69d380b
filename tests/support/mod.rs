//! Helpers shared by the integration tests. Each test crate includes this
//! with `mod support;` and uses what it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod canary;
pub mod keyring_service;
pub mod pg;

/// `tests/fixtures/...`
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// expected.json: every fixture secret by id.
pub fn expected() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Copy a fixture file or directory into `dest` (so tests never change the originals).
pub fn copy_fixture(rel: &str, dest: &Path) -> PathBuf {
    let src = fixture(rel);
    let target = dest.join(src.file_name().unwrap());
    copy_recursively(&src, &target);
    target
}

pub fn copy_recursively(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            copy_recursively(&e.path(), &dst.join(e.file_name()));
        }
    } else {
        std::fs::copy(src, dst).unwrap();
    }
}

/// True when CI demands real services (a missing server is then a failure).
pub fn services_required() -> bool {
    std::env::var("CREDSHIFT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skip (return true) with a printed reason, or panic when services are required.
pub fn skip_without(service: &str, reason: &str) -> bool {
    if services_required() {
        panic!("{service} is required (CREDSHIFT_REQUIRE_SERVICES=1) but unavailable: {reason}");
    }
    eprintln!("SKIPPED: {service} unavailable: {reason}");
    true
}

/// The credshift binary, with a private state dir and no inherited secrets.
pub fn credshift(state_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_credshift"));
    c.env("CREDSHIFT_STATE_DIR", state_dir)
        .env_remove("CREDSHIFT_PASSPHRASE")
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .env_remove("APP_KEY")
        .env_remove("CREDSHIFT_FAULTS")
        .env_remove("CREDSHIFT_CRASH_AT")
        .stdin(Stdio::null());
    c
}

/// Run and capture; stdout/stderr as strings.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("spawn credshift");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}
