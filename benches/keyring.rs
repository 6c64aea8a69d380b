//! Benchmark: N items (default 200) into the Secret Service, against a
//! `secret-tool store` loop over the same items, in the same run, on one
//! private D-Bus session bus with one gnome-keyring-daemon (started the way
//! the tests start it: tests/support/keyring_service.rs).
//!
//! Measured, each against the peer of the same run:
//! - the store level, the way the engine drives a migration: batches of 1,
//!   2, 4, ... 256, each a `write_many` and a `read_many` read-back with a
//!   comparison;
//! - the store level without read-back: one `write_many` of all N items;
//! - reading them back: one `read_many` of N ids against N single `read`s;
//! - end to end: `credshift migrate --from dotenv:F --to keyring:S --yes`
//!   of a `.env` with the same N items (the binary cargo built with this
//!   bench: release under `cargo bench`);
//! - the floor: N bare `CreateItem` calls with credshift's attributes, 16 in
//!   flight at a time on one session, nothing else (no search, no
//!   read-back, no journal): what gnome-keyring itself costs for N new
//!   items, so the best ratio any client can reach against the peer.
//!
//! Beside the wall-clock times it prints the CPU time gnome-keyring-daemon
//! and the D-Bus daemon spent in each phase (from /proc), which shows where
//! the time goes: in credshift and the round trips, or in the keyring.
//!
//! It runs twice: with gnome-keyring's files on disk (the system temp dir),
//! then in /dev/shm (tmpfs), which takes the daemon's fsync waits (the same
//! for both clients) out of the comparison.
//!
//! `cargo bench --bench keyring`; `CREDSHIFT_BENCH_ITEMS=N` changes N.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use credshift::credential::{Credential, CredentialId, Kind, Metadata};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use support::keyring_service::KeyringService;

fn value(i: usize) -> String {
    format!("sk-ant-api03-{i:0>8}-{}", "Qx7".repeat(30))
}

fn creds(n: usize) -> Vec<Credential> {
    (0..n)
        .map(|i| {
            let mut meta = Metadata::new();
            meta.insert("source_line".into(), (i + 1).into());
            Credential::new(
                CredentialId::new("env", format!("BENCH_KEY_{i:04}")),
                Kind::ApiKey,
                value(i),
            )
            .with_metadata(meta)
        })
        .collect()
}

/// Batch sizes as the engine ramps them: 1, 2, 4, ... 256, summing to n.
fn batches(n: usize) -> Vec<usize> {
    let (mut out, mut left, mut size) = (Vec::new(), n, 1usize);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size = (size * 2).min(256);
    }
    out
}

/// The process on the bus that owns `name`.
fn owner_pid(ks: &KeyringService, name: &str) -> Option<u32> {
    let out = Command::new("dbus-send")
        .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixProcessID",
            &format!("string:{name}"),
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

struct Daemons {
    keyring: Option<u32>,
    bus: Option<u32>,
}

struct Phase {
    wall: Duration,
    keyring_cpu: f64,
    bus_cpu: f64,
    own_cpu: f64,
}

fn measure(d: &Daemons, f: impl FnOnce()) -> Phase {
    let me = Some(std::process::id());
    let (k0, b0, o0) = (cpu_seconds(d.keyring), cpu_seconds(d.bus), cpu_seconds(me));
    let start = Instant::now();
    f();
    let wall = start.elapsed();
    Phase {
        wall,
        keyring_cpu: cpu_seconds(d.keyring) - k0,
        bus_cpu: cpu_seconds(d.bus) - b0,
        own_cpu: cpu_seconds(me) - o0,
    }
}

fn report(label: &str, p: &Phase, peer: Option<&Phase>) {
    let ratio = peer
        .map(|q| format!("{:>6.2}x", q.wall.as_secs_f64() / p.wall.as_secs_f64()))
        .unwrap_or_else(|| "   peer".into());
    println!(
        "{label:<58} {:>8.3} s  {ratio}  cpu: gnome-keyring {:>6.3} s, dbus-daemon {:>6.3} s, \
         bench process {:>6.3} s",
        p.wall.as_secs_f64(),
        p.keyring_cpu,
        p.bus_cpu,
        p.own_cpu
    );
}

fn secret_tool_loop(ks: &KeyringService, service: &str, items: &[Credential]) {
    for c in items {
        let mut child = Command::new("secret-tool")
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
            .args(["store", &format!("--label={service} {}", c.id)])
            .args(["service", service, "username", &c.id.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("secret-tool");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(c.secret.expose().as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success(), "secret-tool store failed");
    }
}

/// The floor: N bare `CreateItem` calls carrying what credshift stores
/// (label, the four attributes, the secret), 16 in flight at a time on one
/// DH session: the cheapest client for N new items.
fn bare_creates(service: &str, items: &[Credential]) {
    use futures_util::future::join_all;
    use secret_service::{EncryptionType, SecretService};
    async_io::block_on(async {
        let ss = SecretService::connect(EncryptionType::Dh)
            .await
            .expect("connect");
        let coll = ss.get_default_collection().await.expect("collection");
        for group in items.chunks(16) {
            let calls = group.iter().map(|c| {
                let user = c.id.to_string();
                let meta = serde_json::to_string(&c.metadata).unwrap();
                let label = format!("{service} {user} (credshift)");
                let coll = &coll;
                async move {
                    let attrs = HashMap::from([
                        ("service", service),
                        ("username", user.as_str()),
                        ("credshift.kind", c.kind.as_str()),
                        ("credshift.metadata", meta.as_str()),
                    ]);
                    let secret = c.secret.expose().as_bytes();
                    coll.create_item(&label, attrs, secret, true, "application/octet-stream")
                        .await
                        .map(|_| ())
                }
            });
            for r in join_all(calls).await {
                r.expect("CreateItem");
            }
        }
    });
}

fn open(service: &str) -> Box<dyn Store> {
    store::open(
        &StoreSpec::Keyring(service.to_string()),
        &KeyOptions::default(),
    )
    .expect("open keyring store")
}

/// The engine's loop: batches of 1, 2, 4 ... with read-back and comparison.
fn engine_like(s: &dyn Store, items: &[Credential]) {
    let mut pos = 0;
    for size in batches(items.len()) {
        let batch = &items[pos..pos + size];
        pos += size;
        for r in s.write_many(batch) {
            r.expect("write");
        }
        let ids: Vec<CredentialId> = batch.iter().map(|c| c.id.clone()).collect();
        for (c, r) in batch.iter().zip(s.read_many(&ids)) {
            let back = r.expect("read").expect("present");
            assert!(back.same_as(c), "{} differs", c.id);
        }
    }
}

/// Take a service's items out again (not timed), so that every phase
/// starts from the same, empty keyring: gnome-keyring rewrites its whole
/// file on each change, so a write costs more in a fuller keyring.
fn clear(s: &dyn Store) {
    let ids: Vec<CredentialId> = s
        .list()
        .expect("list")
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    for r in s.delete_many(&ids) {
        assert!(r.expect("delete"), "listed item deleted");
    }
    assert!(s.list().expect("list").entries.is_empty());
}

fn main() {
    let n: usize = std::env::var("CREDSHIFT_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    println!("== keyring files on disk (the system temp dir) ==");
    run(n);
    // gnome-keyring rewrites and fsyncs its file twice per new item, for
    // credshift and the peer alike; on a disk other processes keep busy
    // that wait dominates both. The same comparison with the keyring's
    // files in memory shows what the clients themselves cost.
    if Path::new("/dev/shm").is_dir() {
        println!("\n== keyring files in /dev/shm (tmpfs: no disk waits) ==");
        // SAFETY: single-threaded here; the first run's threads are idle.
        unsafe { std::env::set_var("TMPDIR", "/dev/shm") };
        run(n);
    }
}

fn run(n: usize) {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the start: {}", load.trim());
    }
    let ks = match KeyringService::start() {
        Ok(ks) => ks,
        Err(e) => {
            eprintln!("no gnome-keyring to measure against: {e}");
            return;
        }
    };
    // SAFETY: single-threaded here, before any keyring use or spawn.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &ks.address) };
    let d = Daemons {
        keyring: owner_pid(&ks, "org.freedesktop.secrets"),
        bus: owner_pid(&ks, "org.freedesktop.DBus"),
    };
    let items = creds(n);
    let ids: Vec<CredentialId> = items.iter().map(|c| c.id.clone()).collect();
    println!(
        "{n} items, values of {} bytes; every phase starts from an empty keyring",
        value(0).len()
    );

    // The peer runs first and last; ratios are against the mean of both.
    let peer_service = open("bench-peer");
    let first = measure(&d, || secret_tool_loop(&ks, "bench-peer", &items));
    report("peer: `secret-tool store` loop (first run)", &first, None);
    clear(peer_service.as_ref());

    let floor = measure(&d, || bare_creates("bench-floor", &items));
    clear(open("bench-floor").as_ref());

    let s = open("bench-single");
    let single_writes = measure(&d, || {
        for c in &items {
            s.write(c).expect("write");
        }
    });
    clear(s.as_ref());

    let s = open("bench-engine");
    let engine = measure(&d, || engine_like(s.as_ref(), &items));
    clear(s.as_ref());

    let s = open("bench-write-many");
    let write_many = measure(&d, || {
        for r in s.write_many(&items) {
            r.expect("write");
        }
    });
    let single_reads = measure(&d, || {
        for id in &ids {
            s.read(id).expect("read").expect("present");
        }
    });
    let read_many = measure(&d, || {
        for r in s.read_many(&ids) {
            r.expect("read").expect("present");
        }
    });
    let read_all = measure(&d, || {
        let scan = s.read_all().expect("read_all");
        assert_eq!(scan.credentials.len(), n);
    });
    let delete_many = measure(&d, || {
        for r in s.delete_many(&ids) {
            assert!(r.expect("delete"));
        }
    });

    // End to end through the binary.
    let tmp = tempfile::tempdir().expect("tempdir");
    let env = tmp.path().join(".env");
    let mut text = String::new();
    for c in &items {
        text.push_str(&format!("{}={}\n", c.id.name, c.secret.expose()));
    }
    std::fs::write(&env, text).unwrap();
    let state = tmp.path().join("state");
    let cli = measure(&d, || {
        let out = support::credshift(&state)
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
            .args([
                "migrate",
                "--from",
                &format!("dotenv:{}", env.display()),
                "--to",
                "keyring:bench-cli",
                "--yes",
                "--json",
            ])
            .output()
            .expect("credshift");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["copied"], n, "{report}");
    });
    clear(open("bench-cli").as_ref());

    let last = measure(&d, || secret_tool_loop(&ks, "bench-peer", &items));
    report("peer: `secret-tool store` loop (last run)", &last, None);
    clear(peer_service.as_ref());
    let peer = Phase {
        wall: (first.wall + last.wall) / 2,
        keyring_cpu: (first.keyring_cpu + last.keyring_cpu) / 2.0,
        bus_cpu: (first.bus_cpu + last.bus_cpu) / 2.0,
        own_cpu: (first.own_cpu + last.own_cpu) / 2.0,
    };
    report(&format!("peer: mean of both, {n} items"), &peer, None);
    report("store: `write` one at a time", &single_writes, Some(&peer));
    report(
        "store: engine batches 1,2,4..256, write_many + read_many",
        &engine,
        Some(&peer),
    );
    report(
        "store: one write_many, no read-back",
        &write_many,
        Some(&peer),
    );
    report(
        "end to end: `credshift migrate --yes` (binary of this build)",
        &cli,
        Some(&peer),
    );
    report(
        "floor: bare CreateItem calls, 16 in flight, nothing else",
        &floor,
        Some(&peer),
    );
    println!(
        "end to end takes {:.2}x the floor's time; >= 4x needs at most {:.3} s",
        cli.wall.as_secs_f64() / floor.wall.as_secs_f64(),
        peer.wall.as_secs_f64() / 4.0
    );
    println!("reads and deletes, against one-at-a-time reads:");
    report("store: `read` one at a time", &single_reads, None);
    report("store: one read_many", &read_many, Some(&single_reads));
    report(
        "store: read_all (list + read_many)",
        &read_all,
        Some(&single_reads),
    );
    report("store: one delete_many", &delete_many, Some(&single_reads));
    println!("binary: {}", env!("CARGO_BIN_EXE_credshift"));
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the end: {}", load.trim());
    }
}
