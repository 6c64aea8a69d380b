//! Issue 21, point 10: every operation x (source end, target end) x every
//! store kind that can be locked (a dotenv file, SQLite, PostgreSQL, the
//! keyring), against a first credshift process that holds the store:
//!
//! - held exclusive (a migration writing it): every operation at either
//!   end is refused, naming the holder;
//! - held shared (a migration reading it): what writes or deletes there is
//!   refused, what only reads runs.
//!
//! The first process is the real binary stopped right after its session
//! preamble (`CREDSHIFT_HOLD_LOCKS`); the second runs from another state
//! dir and another `XDG_RUNTIME_DIR` (the first has none at all, as under
//! cron), with `CREDSHIFT_LOCK_WAIT=0` so a database lock is refused at
//! once rather than after 120 s. Cleanup has no CLI command: it runs
//! through the library, in this test's own process.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Migrate,
    Verify,
    Backup,
    Resume,
    Cleanup,
    Rollback,
    Restore,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Source,
    Target,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Refused,
    Runs,
}

/// The table: what a second process may do to a store the first holds.
/// `None`: the operation has no such end (a backup's output is a new
/// file, a restore reads a backup file).
fn expect(held_exclusive: bool, op: Op, end: End) -> Option<Expect> {
    use End::*;
    use Op::*;
    let writes = match (op, end) {
        (Backup, Target) | (Restore, Source) => return None,
        (Migrate | Resume | Rollback | Restore, Target) => true,
        (Cleanup, Source) => true,
        // Migrations here never delete from their source; verify and
        // backup only read; cleanup reads its target.
        _ => false,
    };
    Some(if held_exclusive || writes {
        Expect::Refused
    } else {
        Expect::Runs
    })
}

struct Kind {
    name: &'static str,
    spec: String,
}

struct Ctx {
    /// The kind this context is for: file names start with it.
    name: &'static str,
    tmp: PathBuf,
    key: String,
    /// The second process's state dir and runtime dir.
    state: PathBuf,
    xdg: PathBuf,
    n: std::sync::atomic::AtomicUsize,
}

impl Ctx {
    fn next(&self) -> usize {
        self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    fn fresh_env(&self, items: &[(&str, &str)]) -> String {
        let i = self.next();
        let p = self.tmp.join(format!("{}-f{i}.env", self.name));
        write_env(&p, items);
        format!("dotenv:{}", p.display())
    }

    fn cmd(&self, state: &Path) -> Command {
        let mut c = credshift(state);
        c.args(["--key-file", &self.key])
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env("CREDSHIFT_LOCK_WAIT", "0");
        c
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut c = self.cmd(&self.state);
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let (out, stdout, stderr) = run(&mut c);
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// A finished migration in the second process's state dir: its id.
    fn migrated(&self, from: &str, to: &str) -> String {
        let (code, out, err) = self.run(
            &["migrate", "--from", from, "--to", to, "--yes", "--json"],
            &[],
        );
        assert_eq!(code, 0, "{from} -> {to}: {out}{err}");
        json(&out)["migration_id"].as_str().unwrap().to_string()
    }

    /// A migration killed after its backup: its id.
    fn interrupted(&self, from: &str, to: &str) -> String {
        let before = self.ids();
        let (code, out, err) = self.run(
            &["migrate", "--from", from, "--to", to, "--yes", "--json"],
            &[("CREDSHIFT_CRASH_AT", "3")],
        );
        assert_ne!(code, 0, "{from} -> {to} should have crashed: {out}{err}");
        self.ids()
            .into_iter()
            .find(|i| !before.contains(i))
            .expect("the crashed migration's folder")
    }

    fn ids(&self) -> Vec<String> {
        std::fs::read_dir(self.state.join("migrations"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Migrations recorded for one kind, made before any holder runs.
struct Recorded {
    to_k: String,
    from_k: String,
    interrupted_to_k: String,
    interrupted_from_k: String,
    backup: String,
}

fn record(ctx: &Ctx, k: &Kind) -> Recorded {
    let p1 = ctx.fresh_env(&[
        ("T1_TOKEN", "value-t1-aaaaaaaaaaaa"),
        ("T2_TOKEN", "value-t2-bbbbbbbbbbbb"),
    ]);
    let to_k = ctx.migrated(&p1, &k.spec);
    let from_k = ctx.migrated(&k.spec, &ctx.fresh_env(&[]));
    let p2 = ctx.fresh_env(&[("T3_TOKEN", "value-t3-cccccccccccc")]);
    let interrupted_to_k = ctx.interrupted(&p2, &k.spec);
    let interrupted_from_k = ctx.interrupted(&k.spec, &ctx.fresh_env(&[]));
    let backup = ctx.tmp.join(format!("{}.backup", k.name));
    let (code, out, err) = ctx.run(
        &[
            "backup",
            "--from",
            &p1,
            "--out",
            &backup.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    Recorded {
        to_k,
        from_k,
        interrupted_to_k,
        interrupted_from_k,
        backup: backup.display().to_string(),
    }
}

/// The first process: a migration writing (exclusive) or reading (shared)
/// the store, stopped with its locks held; no `XDG_RUNTIME_DIR` at all.
struct Holder {
    child: Child,
    flag: PathBuf,
}

fn hold(ctx: &Ctx, k: &Kind, exclusive: bool) -> Holder {
    let flag = ctx.tmp.join(format!("held-{}-{exclusive}", k.name));
    let state = ctx.tmp.join(format!("holder-state-{}-{exclusive}", k.name));
    let other = ctx.fresh_env(&[("HOLDER_TOKEN", "value-holder-dddddddd")]);
    let (from, to) = if exclusive {
        (other, k.spec.clone())
    } else {
        (k.spec.clone(), other)
    };
    let mut c = credshift(&state);
    c.args(["--key-file", &ctx.key])
        .args(["migrate", "--from", &from, "--to", &to, "--yes"])
        .env_remove("XDG_RUNTIME_DIR")
        .env("CREDSHIFT_HOLD_LOCKS", &flag)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while !flag.exists() {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{}: holder exited: {}",
                k.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}: never held",
            k.name
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Holder { child, flag }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.flag);
        let _ = self.child.wait();
    }
}

/// Run `op` at `end` of kind `k`: exit code and stderr (0 and empty for
/// a library cleanup that worked).
fn attempt(ctx: &Ctx, k: &Kind, rec: &Recorded, op: Op, end: End) -> (i32, String) {
    let id = |t: &str, s: &str| {
        if end == End::Target {
            t.to_string()
        } else {
            s.to_string()
        }
    };
    let args: Vec<String> = match op {
        Op::Migrate => {
            let other = ctx.fresh_env(&[("NEW_TOKEN", "value-new-eeeeeeeeeeee")]);
            let (f, t) = if end == End::Target {
                (other, k.spec.clone())
            } else {
                (k.spec.clone(), other)
            };
            ["migrate", "--from", &f, "--to", &t, "--yes"]
                .map(String::from)
                .to_vec()
        }
        Op::Verify => vec![
            "verify".into(),
            "--migration-id".into(),
            id(&rec.to_k, &rec.from_k),
        ],
        Op::Backup => {
            let out = ctx.tmp.join(format!("{}-b{}.enc", ctx.name, ctx.next()));
            [
                "backup",
                "--from",
                &k.spec,
                "--out",
                &out.display().to_string(),
            ]
            .map(String::from)
            .to_vec()
        }
        Op::Resume => vec![
            "resume".into(),
            "--migration-id".into(),
            id(&rec.interrupted_to_k, &rec.interrupted_from_k),
            "--yes".into(),
        ],
        Op::Rollback => vec![
            "rollback".into(),
            "--migration-id".into(),
            id(&rec.to_k, &rec.from_k),
            "--yes".into(),
        ],
        Op::Restore => ["restore", "--backup", &rec.backup, "--to", &k.spec, "--yes"]
            .map(String::from)
            .to_vec(),
        Op::Cleanup => {
            // The same no-wait rule as the binary's CREDSHIFT_LOCK_WAIT=0.
            let opts = credshift::unlock::KeyOptions {
                key_file: Some(ctx.key.clone().into()),
                lock_wait: Some(std::time::Duration::ZERO),
                ..Default::default()
            };
            let mid = credshift::engine::MigrationId(id(&rec.to_k, &rec.from_k));
            return match credshift::engine::cleanup(&ctx.state, &mid, &opts) {
                Ok(_) => (0, String::new()),
                Err(e) => (i32::from(e.exit_code()), e.to_string()),
            };
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = ctx.run(&args, &[]);
    (code, format!("{out}{err}"))
}

/// Every value of the held store, by id, read in this process (reading
/// takes no lock).
fn contents(ctx: &Ctx, k: &Kind) -> std::collections::BTreeMap<String, String> {
    let opts = credshift::unlock::KeyOptions {
        key_file: Some(ctx.key.clone().into()),
        ..Default::default()
    };
    let spec: credshift::store::StoreSpec = k.spec.parse().unwrap();
    credshift::store::open(&spec, &opts)
        .and_then(|s| s.read_all())
        .map(|scan| {
            scan.credentials
                .into_iter()
                .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every cell of the table for kind `k`: how many were checked, and the
/// wrong ones.
fn table_for(ctx: &Ctx, k: &Kind, ops: &[Op]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    let rec = record(ctx, k);
    for exclusive in [true, false] {
        let holder = hold(ctx, k, exclusive);
        for &op in ops {
            for end in [End::Source, End::Target] {
                let Some(want) = expect(exclusive, op, end) else {
                    continue;
                };
                let before = contents(ctx, k);
                let (code, text) = attempt(ctx, k, &rec, op, end);
                checked += 1;
                let refused = code == 2 && text.contains("is locked by");
                let ok = match want {
                    // Refused, naming who holds it and since when.
                    Expect::Refused => refused && text.contains("since"),
                    // Runs, and only read the held store: every value as
                    // it was (finding A13: exit 0 alone checked nothing).
                    Expect::Runs => code == 0 && !before.is_empty() && contents(ctx, k) == before,
                };
                if !ok {
                    failures.push(format!(
                        "{} held {}: {op:?} at the {end:?} end: expected {want:?}, got exit \
                         {code}: {text}",
                        k.name,
                        if exclusive { "exclusive" } else { "shared" },
                    ));
                }
            }
        }
        drop(holder);
    }
    (checked, failures)
}

#[test]
fn a_second_process_is_refused_or_runs_as_the_table_says() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k.key");
    std::fs::write(&key, [0x42u8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut kinds = vec![
        Kind {
            name: "dotenv",
            spec: format!("dotenv:{}", tmp.path().join("k.env").display()),
        },
        Kind {
            name: "sqlite",
            spec: format!("sqlite:{}", tmp.path().join("k.db").display()),
        },
    ];
    if let Some(db) = pg::fresh_db() {
        kinds.push(Kind {
            name: "postgres",
            spec: db.url(),
        });
    }
    if keyring_service::shared().is_some() {
        kinds.push(Kind {
            name: "keyring",
            spec: format!("keyring:credshift-lock-table-{}", std::process::id()),
        });
    }
    let ops = [
        Op::Migrate,
        Op::Verify,
        Op::Backup,
        Op::Resume,
        Op::Cleanup,
        Op::Rollback,
        Op::Restore,
    ];
    // One thread per kind: the kinds share nothing but the key file.
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = kinds
            .iter()
            .map(|k| {
                // Each kind has its own second-process state dir.
                let ctx = Ctx {
                    name: k.name,
                    tmp: tmp.path().to_path_buf(),
                    key: key.display().to_string(),
                    state: tmp.path().join(format!("state-{}", k.name)),
                    xdg: xdg.clone(),
                    n: std::sync::atomic::AtomicUsize::new(0),
                };
                let ops = &ops;
                scope.spawn(move || table_for(&ctx, k, ops))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked: usize = results.iter().map(|r| r.0).sum();
    let failures: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
    assert!(
        failures.is_empty(),
        "{} of {checked} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 2 * 12 * 2, "{checked}");
}

/// Point 10, another user where the store allows it: a `.env` in a
/// world-writable sticky directory (as `/tmp` is), the file itself
/// writable by all. The second credshift runs as `nobody` (util-linux
/// `setpriv`). While root's run holds the store, nobody's run at either
/// end is refused (before, root's lock file, which nobody cannot open,
/// counted as "no lock here"); a lock file nobody plants, a regular file
/// of its own or a symbolic link to a victim, is refused by root's run and
/// nothing is written through it. Root only.
#[test]
fn another_user_is_refused_and_can_neither_hijack_nor_plant_the_lock() {
    use std::os::unix::fs::{PermissionsExt, chown};
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !root || !setpriv {
        skip_without("root and setpriv", "run as root with util-linux");
        return;
    }
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let mine = tempfile::tempdir().unwrap();
    let shared = tempfile::Builder::new()
        .prefix("credshift-shared-")
        .tempdir_in("/tmp")
        .unwrap();
    mode(shared.path(), 0o1777).unwrap();
    let app = shared.path().join("app.env");
    write_env(&app, &[("APP_TOKEN", "value-of-root-aaaaaaaa")]);
    mode(&app, 0o666).unwrap();
    let key = mine.path().join("k.key");
    std::fs::write(&key, [0x42u8; 32]).unwrap();
    mode(&key, 0o600).unwrap();
    // The other user's own corner: state dir, key, files.
    let theirs = shared.path().join("nobody");
    std::fs::create_dir(&theirs).unwrap();
    let their_key = theirs.join("k.key");
    std::fs::write(&their_key, [0x43u8; 32]).unwrap();
    mode(&their_key, 0o600).unwrap();
    let their_src = theirs.join("src.env");
    write_env(&their_src, &[("THEIR_TOKEN", "value-of-nobody-bbbbbbbb")]);
    for p in [&theirs, &their_key, &their_src] {
        chown(p, Some(65534), Some(65534)).unwrap();
    }
    let as_nobody = |args: &[&str]| -> (i32, String) {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_credshift"))
            .args(["--key-file", &their_key.display().to_string()])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &theirs)
            .env("CREDSHIFT_STATE_DIR", theirs.join("state"))
            .env("CREDSHIFT_LOCK_WAIT", "0");
        let (out, stdout, stderr) = run(&mut c);
        (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
    };
    let as_root = |args: &[&str]| -> (i32, String) {
        let mut c = credshift(&mine.path().join("state"));
        c.args(["--key-file", &key.display().to_string()])
            .args(args)
            .env("CREDSHIFT_LOCK_WAIT", "0");
        let (out, stdout, stderr) = run(&mut c);
        (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
    };
    let app_spec = format!("dotenv:{}", app.display());
    let app_before = std::fs::read(&app).unwrap();

    // 1. Root's run holds app.env (a migration into it, stopped after its
    // preamble); nobody's runs at either end are refused.
    let root_src = mine.path().join("src.env");
    write_env(&root_src, &[("ROOT_NEW", "value-of-root-cccccccc")]);
    let flag = mine.path().join("held");
    let mut holder = credshift(&mine.path().join("holder-state"));
    holder
        .args(["--key-file", &key.display().to_string()])
        .args([
            "migrate",
            "--from",
            &format!("dotenv:{}", root_src.display()),
        ])
        .args(["--to", &app_spec, "--yes"])
        .env("CREDSHIFT_HOLD_LOCKS", &flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = holder.spawn().unwrap();
    let start = Instant::now();
    while !flag.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the holder exited");
        assert!(start.elapsed() < Duration::from_secs(60), "never held");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = theirs.join("out.env");
    let their_src_spec = format!("dotenv:{}", their_src.display());
    let out_spec = format!("dotenv:{}", out.display());
    for (what, from, to) in [
        ("source", app_spec.as_str(), out_spec.as_str()),
        ("target", their_src_spec.as_str(), app_spec.as_str()),
    ] {
        let (code, text) = as_nobody(&["migrate", "--from", from, "--to", to, "--yes"]);
        assert_ne!(code, 0, "{what}: nobody's run was not refused: {text}");
        assert!(text.contains("uid 0"), "{what}: names the holder: {text}");
    }
    assert!(!out.exists(), "nobody read the held store");
    std::fs::remove_file(&flag).unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&app).unwrap();
    assert!(
        text.contains("value-of-root-cccccccc"),
        "root's run went on: {text}"
    );
    let app_before_plant = std::fs::read(&app).unwrap();
    assert_ne!(app_before_plant, app_before);

    // 2. nobody plants the lock file, as a file of its own, then as a
    // symbolic link to a victim: root's run refuses either, and writes
    // nothing anywhere.
    let lock = shared.path().join(".app.env.credshift-lock");
    assert!(!lock.exists(), "the holder removed its lock file");
    let victim = mine.path().join("vault.enc");
    std::fs::write(&victim, "the victim's bytes").unwrap();
    mode(mine.path(), 0o755).unwrap();
    let plant = |script: &str| {
        let ok = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .args(["sh", "-c", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    };
    for (what, script, says) in [
        (
            "own file",
            format!("printf '' > '{}'", lock.display()),
            "uid 65534",
        ),
        (
            "symbolic link",
            format!("ln -s '{}' '{}'", victim.display(), lock.display()),
            "symbolic link",
        ),
    ] {
        plant(&script);
        let (code, text) = as_root(&[
            "migrate",
            "--from",
            &format!("dotenv:{}", root_src.display()),
            "--to",
            &app_spec,
            "--yes",
            "--on-conflict",
            "overwrite",
        ]);
        assert_ne!(code, 0, "{what}: root's run went ahead: {text}");
        assert!(text.contains(says), "{what}: {text}");
        assert_eq!(std::fs::read(&app).unwrap(), app_before_plant, "{what}");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "the victim's bytes",
            "{what}"
        );
        std::fs::remove_file(&lock).unwrap();
    }
}

/// A lock released while a process another thread is starting still holds
/// a copy of the lock's file (forked, not yet exec'd: the window of every
/// spawn; the copy is closed only at exec) is free at once: dropping a
/// lock unlocks it, not only closes the file. Before, the next operation
/// of the same process found its own just-released state lock held and
/// stopped with `Locked` (`cli_recovery::a_cancelled_resume_or_rollback_…`
/// failed so once under a parallel test run).
#[test]
fn a_released_lock_is_free_while_a_child_forked_meanwhile_still_holds_its_file() {
    use credshift::store::{LockMode, StoreSpec, lockfile};
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let spec: StoreSpec = format!("dotenv:{}", dir.path().join("a.env").display())
        .parse()
        .unwrap();
    let take = || lockfile::state_lock(dir.path(), &spec, "key", LockMode::Exclusive, "m1");
    let held = take().unwrap();
    // The child says when it exists (it holds the lock's file then), and
    // stays before its exec for a while.
    let mut fds = [0; 2];
    // SAFETY: a pipe for this test; both ends owned just below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the pipe's fresh descriptors, owned once each.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let w = write_end.as_raw_fd();
    let mut cmd = Command::new("true");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::write(w, b"x".as_ptr().cast(), 1);
            libc::usleep(1_500_000);
            Ok(())
        });
    }
    let spawner = std::thread::spawn(move || cmd.spawn().unwrap().wait().unwrap());
    let mut byte = [0u8; 1];
    std::fs::File::from(read_end).read_exact(&mut byte).unwrap();
    drop(held);
    let again = take();
    assert!(spawner.join().unwrap().success());
    drop(write_end);
    let again = again.unwrap_or_else(|e| panic!("the released lock is still held: {e}"));
    drop(again);
}
