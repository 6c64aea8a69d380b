//! The PostgreSQL target goes away in the middle of a real `credshift
//! migrate`: the migration stops and says why, nothing is counted as done
//! that was not, and once the server is back `credshift rollback` leaves the
//! target exactly as it was.

use crate::support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

const PASSPHRASE: &str = "outage test passphrase, not a secret";

/// The most batches any migration in `state` has finished (`batch_done`).
fn batches_done(state: &std::path::Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(state.join("migrations")) else {
        return 0;
    };
    dirs.filter_map(|d| d.ok())
        .filter_map(|d| std::fs::read_to_string(d.path().join("journal.jsonl")).ok())
        .map(|t| t.matches("\"event\":\"batch_done\"").count())
        .max()
        .unwrap_or(0)
}

fn ids_at(state: &std::path::Path, spec: &str) -> Vec<String> {
    let (out, stdout, stderr) = run(credshift(state)
        .env("CREDSHIFT_PASSPHRASE", PASSPHRASE)
        .args(["inventory", "--from", spec, "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_server_stopping_mid_migration_stops_it_and_rollback_restores_the_target() {
    let Some(server) = pg::own_server() else {
        return;
    };
    let db = server.create_database();
    let target = db.url();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");

    // The target already holds one credential of its own.
    let first = tmp.path().join("first.env");
    std::fs::write(&first, "KEEP_ME=value-that-was-there-before-0001\n").unwrap();
    let (out, _, stderr) = run(credshift(&state)
        .env("CREDSHIFT_PASSPHRASE", PASSPHRASE)
        .args(["migrate", "--from", &format!("dotenv:{}", first.display())])
        .args(["--to", &target, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let before = ids_at(&state, &target);
    assert_eq!(before, ["env/KEEP_ME"]);

    // A source big enough that the migration is still running when the
    // server goes (batches of 1, 2, 4, ... up to 256 items).
    let src = tmp.path().join("many.env");
    let mut f = std::fs::File::create(&src).unwrap();
    for i in 0..2000 {
        writeln!(f, "TOKEN_{i:04}=outage-test-value-{i:04}-abcdefghijklmnop").unwrap();
    }
    drop(f);
    let child = credshift(&state)
        .env("CREDSHIFT_PASSPHRASE", PASSPHRASE)
        .args(["migrate", "--from", &format!("dotenv:{}", src.display())])
        .args(["--to", &target, "--yes", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    // The first migration had one batch; wait for this one to be well into
    // its writes (1 + 2 + 4 + 8 items).
    while batches_done(&state) < 4 {
        assert!(Instant::now() < deadline, "the migration never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let reason = report["rollback_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("became unavailable"),
        "the report says why: {report}"
    );
    assert!(!reason.contains(PASSPHRASE) && !stdout.contains("outage-test-value"));
    assert!(
        report["copied"].as_u64().unwrap() < 2000,
        "the outage happened mid-run: {report}"
    );
    let id = report["migration_id"].as_str().unwrap().to_string();

    // With the server back, rollback undoes what was written.
    server.restart().unwrap();
    let (out, stdout, stderr) = run(credshift(&state)
        .env("CREDSHIFT_PASSPHRASE", PASSPHRASE)
        .args(["rollback", "--migration-id", &id, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert_eq!(ids_at(&state, &target), before, "the target is as it was");
    let (_, stdout, _) = run(credshift(&state).args(["history", "--json"]));
    let history: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let entry = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["status"], "rolled_back", "{history}");
}
