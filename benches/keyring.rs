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
//! and the D-Bus daemon spent in each phase (from /proc) and the client's
//! (this process and its children: `credshift`, `secret-tool`), which shows
//! where the time goes: in credshift and the round trips, or in the keyring.
//!
//! The target row (end to end against the floor) is measured in pairs on
//! the same daemon, after a warm-up pair: floor then end to end, then end
//! to end then floor, and so on (`CREDSHIFT_BENCH_PAIRS`, default 5), each
//! from an empty keyring; the ratio printed is the median of the per-pair
//! ratios, so a run's order, a first-run effect or a disk hiccup in one
//! phase does not decide it. Then, untimed, it counts the D-Bus calls each
//! side makes to the Secret Service (`dbus-monitor` on the private bus).
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

/// CPU seconds of this process plus its waited-for children (`credshift`,
/// `secret-tool`): the client's side of a phase.
fn client_cpu() -> f64 {
    let secs = |who| {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

fn measure(d: &Daemons, f: impl FnOnce()) -> Phase {
    let (k0, b0, o0) = (cpu_seconds(d.keyring), cpu_seconds(d.bus), client_cpu());
    let start = Instant::now();
    f();
    let wall = start.elapsed();
    Phase {
        wall,
        keyring_cpu: cpu_seconds(d.keyring) - k0,
        bus_cpu: cpu_seconds(d.bus) - b0,
        own_cpu: client_cpu() - o0,
    }
}

fn report(label: &str, p: &Phase, peer: Option<&Phase>) {
    let ratio = peer
        .map(|q| format!("{:>6.2}x", q.wall.as_secs_f64() / p.wall.as_secs_f64()))
        .unwrap_or_else(|| "   peer".into());
    println!(
        "{label:<58} {:>8.3} s  {ratio}  cpu: gnome-keyring {:>6.3} s, dbus-daemon {:>6.3} s, \
         client {:>6.3} s",
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

/// `credshift migrate --from dotenv:ENV --to keyring:SERVICE --yes` with a
/// fresh state dir, checked to have copied `n` items.
/// `CREDSHIFT_BENCH_BIN` runs another build (an older commit's, to compare)
/// instead of the one built with this bench.
fn migrate(ks: &KeyringService, env: &Path, state: &Path, service: &str, n: usize) {
    let mut cmd = match std::env::var_os("CREDSHIFT_BENCH_BIN") {
        Some(bin) => {
            let mut c = Command::new(bin);
            c.env("CREDSHIFT_STATE_DIR", state).stdin(Stdio::null());
            c
        }
        None => support::credshift(state),
    };
    let out = cmd
        .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
        .args([
            "migrate",
            "--from",
            &format!("dotenv:{}", env.display()),
            "--to",
            &format!("keyring:{service}"),
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
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The phase of `phases` whose wall time is the median (the lower middle
/// one of an even count), to print as that side's row.
fn median_phase(phases: &[Phase]) -> &Phase {
    let mut by_wall: Vec<&Phase> = phases.iter().collect();
    by_wall.sort_by_key(|p| p.wall);
    by_wall[(by_wall.len() - 1) / 2]
}

/// The Secret Service methods `f` calls, by name, as `dbus-monitor` sees
/// them on the private bus (not timed: the monitor slows the bus down).
fn count_calls(ks: &KeyringService, f: impl FnOnce()) -> Option<Vec<(String, usize)>> {
    let log = tempfile::NamedTempFile::new().ok()?;
    let mut mon = Command::new("dbus-monitor")
        .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
        .args(["--profile", "destination='org.freedesktop.secrets'"])
        .stdout(log.reopen().ok()?)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // The monitor's own NameAcquired signal says it is listening.
    let ready = Instant::now();
    while !std::fs::read_to_string(log.path())
        .unwrap_or_default()
        .contains("NameAcquired")
    {
        if ready.elapsed() > Duration::from_secs(5) {
            let _ = mon.kill();
            let _ = mon.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f();
    std::thread::sleep(Duration::from_millis(300));
    let _ = mon.kill();
    let _ = mon.wait();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(log.path()).ok()?.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.first() == Some(&"mc") && f.len() >= 8 {
            *counts.entry(f[7].to_string()).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Some(counts)
}

fn print_calls(label: &str, n: usize, calls: Option<Vec<(String, usize)>>) {
    let Some(calls) = calls else {
        println!("{label}: dbus-monitor not available");
        return;
    };
    let total: usize = calls.iter().map(|c| c.1).sum();
    let each: Vec<String> = calls.iter().map(|(m, c)| format!("{m} {c}")).collect();
    println!(
        "{label}: {total} calls, {:.2} per item ({})",
        total as f64 / n as f64,
        each.join(", ")
    );
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
    let pairs: usize = std::env::var("CREDSHIFT_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&p| p > 0)
        .unwrap_or(5);
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

    // End to end through the binary against the floor, in alternating
    // pairs after a warm-up pair, each phase from an empty keyring.
    let tmp = tempfile::tempdir().expect("tempdir");
    let env = tmp.path().join(".env");
    let mut text = String::new();
    for c in &items {
        text.push_str(&format!("{}={}\n", c.id.name, c.secret.expose()));
    }
    std::fs::write(&env, text).unwrap();
    let mut runs = 0usize;
    let mut cli_once = |service: &str| {
        runs += 1;
        let state = tmp.path().join(format!("state-{runs}"));
        let p = measure(&d, || migrate(&ks, &env, &state, service, n));
        clear(open(service).as_ref());
        p
    };
    let floor_once = || {
        let p = measure(&d, || bare_creates("bench-floor", &items));
        clear(open("bench-floor").as_ref());
        p
    };
    let warm_floor = floor_once();
    let warm_cli = cli_once("bench-cli");
    let (mut floors, mut clis, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (f, c) = if i % 2 == 0 {
            let f = floor_once();
            (f, cli_once("bench-cli"))
        } else {
            let c = cli_once("bench-cli");
            (floor_once(), c)
        };
        ratios.push(c.wall.as_secs_f64() / f.wall.as_secs_f64());
        floors.push(f);
        clis.push(c);
    }

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
    let cli = median_phase(&clis);
    let floor = median_phase(&floors);
    report(
        "end to end: `credshift migrate --yes` (median run)",
        cli,
        Some(&peer),
    );
    report(
        "floor: bare CreateItem calls, 16 in flight (median run)",
        floor,
        Some(&peer),
    );
    println!("pairs (warm-up first, then alternating order), end to end / floor:");
    let pair = |label: &str, f: &Phase, c: &Phase| {
        println!(
            "  {label:<22} floor {:>7.3} s, end to end {:>7.3} s = {:>5.3}x; gnome-keyring cpu \
             {:.3} / {:.3} s, client cpu {:.3} / {:.3} s",
            f.wall.as_secs_f64(),
            c.wall.as_secs_f64(),
            c.wall.as_secs_f64() / f.wall.as_secs_f64(),
            f.keyring_cpu,
            c.keyring_cpu,
            f.own_cpu,
            c.own_cpu
        )
    };
    pair("warm-up (not counted)", &warm_floor, &warm_cli);
    for (i, (f, c)) in floors.iter().zip(&clis).enumerate() {
        let order = if i % 2 == 0 {
            "floor first"
        } else {
            "end to end first"
        };
        pair(&format!("{}: {order}", i + 1), f, c);
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
    println!(
        "end to end takes {:.2}x the floor's time (median of {pairs} pairs, {lo:.2}x to {hi:.2}x); \
         >= 4x needs at most {:.3} s",
        median(ratios.clone()),
        peer.wall.as_secs_f64() / 4.0
    );
    println!(
        "gnome-keyring CPU, end to end / floor: {:.2}x (median of the pairs)",
        median(
            floors
                .iter()
                .zip(&clis)
                .map(|(f, c)| c.keyring_cpu / f.keyring_cpu)
                .collect()
        )
    );
    // Counted without the clearing that follows each.
    let calls = count_calls(&ks, || bare_creates("bench-floor", &items));
    clear(open("bench-floor").as_ref());
    print_calls("D-Bus calls to the Secret Service, floor", n, calls);
    let state = tmp.path().join("state-counted");
    let calls = count_calls(&ks, || migrate(&ks, &env, &state, "bench-cli", n));
    clear(open("bench-cli").as_ref());
    print_calls("D-Bus calls to the Secret Service, end to end", n, calls);
    println!("reads and deletes, against one-at-a-time reads:");
    report("store: `read` one at a time", &single_reads, None);
    report("store: one read_many", &read_many, Some(&single_reads));
    report(
        "store: read_all (list + read_many)",
        &read_all,
        Some(&single_reads),
    );
    report("store: one delete_many", &delete_many, Some(&single_reads));
    let bin = std::env::var("CREDSHIFT_BENCH_BIN");
    println!(
        "binary: {}",
        bin.as_deref().unwrap_or(env!("CARGO_BIN_EXE_credshift"))
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the end: {}", load.trim());
    }
}
