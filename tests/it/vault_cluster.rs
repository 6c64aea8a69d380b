//! A 3-node OpenBao raft cluster (tests/support/vault.rs, `BaoCluster`)
//! whose leader is killed in the middle of a 1,000-item migration: the run
//! finishes through the surviving nodes, or stops and is resumed, and
//! afterwards every item is at the target with its exact value (0 lost);
//! the source is never touched.

use crate::support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::vault::BaoCluster;
use support::*;

#[test]
fn a_leader_killed_mid_migration_loses_nothing() {
    let Some(mut cluster) = BaoCluster::start() else {
        return;
    };
    assert_eq!(cluster.voters(0), 3, "three voters");
    let leader = cluster.leader().expect("a leader");
    let via = (leader + 1) % 3;
    // The probe says a node is a standby (writes go to the active node).
    let probe_spec = format!("vault:{}/secret/fleet", cluster.addrs[via]);
    let cap = cluster.open(&probe_spec).probe();
    assert!(cap.available, "{:?}", cap.reason);
    assert!(
        cap.warnings.iter().any(|w| w.contains("a standby node")),
        "{:?}",
        cap.warnings
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("fleet.env");
    let pairs: Vec<(String, String)> = (0..1000)
        .map(|i| {
            (
                format!("KEY_{i:04}"),
                format!("sk-fleet-{i:04}-{}", "v".repeat(24)),
            )
        })
        .collect();
    let text: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&env, &text).unwrap();
    let src = format!("dotenv:{}", env.display());
    let to = format!("vault:{}/secret/fleet?layout=item", cluster.addrs[via]);
    let mut child = credshift(&state)
        .env("VAULT_TOKEN", &cluster.token)
        .env("HOME", cluster.home.path())
        .args(["migrate", "--from", &src, "--to", &to, "--yes", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the leader once a fifth of the items are written.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = cluster
            .cli(leader)
            .args(["kv", "list", "-format=json", "secret/fleet/env"])
            .output()
            .unwrap();
        let n = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        if n >= 200 || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_some() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "the run ended before the kill: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.kill(leader);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        text,
        "source untouched"
    );
    // A new leader among the two left.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.leader().is_none_or(|l| l == leader) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let new_leader = cluster.leader().expect("a new leader");
    assert_ne!(new_leader, leader);
    eprintln!(
        "leader {leader} killed; first run exit {:?}; new leader {new_leader}",
        out.status.code()
    );
    if out.status.code() != Some(0) {
        // Stopped: resume finishes it against the new leader.
        let id = support::vault::last_migration_id(&state);
        let (o, rout, rerr) = run(credshift(&state)
            .env("VAULT_TOKEN", &cluster.token)
            .env("HOME", cluster.home.path())
            .args(["resume", "--migration-id", &id, "--yes", "--json"]));
        assert_eq!(
            o.status.code(),
            Some(0),
            "first run: {stdout}{stderr}\nresume: {rout}{rerr}"
        );
    }
    // Every item at the target, exact; 0 lost.
    let s = cluster.open(&to);
    let scan = s.read_all().unwrap();
    let got: BTreeMap<String, String> = scan
        .credentials
        .into_iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect();
    let want: BTreeMap<String, String> = pairs
        .into_iter()
        .map(|(k, v)| (format!("env/{k}"), v))
        .collect();
    assert_eq!(got.len(), want.len(), "{stdout}{stderr}");
    assert!(got == want, "values differ after the leader change");
    let mut hay = vec![(
        "output".to_string(),
        format!("{stdout}{stderr}").into_bytes(),
    )];
    hay.extend(canary::file_haystacks(&state));
    canary::assert_absent(&cluster.token, &hay);
}
