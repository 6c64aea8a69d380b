//! Helpers shared by the integration tests. Each test crate includes this
//! with `mod support;` and uses what it needs.
#![allow(dead_code)]

use std::borrow::BorrowMut;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod canary;
pub mod keyring_service;
pub mod kinds;
pub mod laravel;
pub mod pg;
pub mod tmux;
pub mod vault;

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

/// A new file (never over one) that only its owner may read (0600),
/// holding exactly `contents`: the key and passphrase files the CLI takes.
pub fn private_file(path: &Path, contents: impl AsRef<[u8]>) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(contents.as_ref()).unwrap();
    path.to_path_buf()
}

/// `path` holding `contents` (its folder made, a file there replaced) with
/// the permissions `mode`: files whose mode a test sets on purpose.
pub fn file_with_mode(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// Wait (at most 60 s) until the one migration folder in `state` holds a
/// `journal` (its file name) with at least `n` records of `event`: the
/// child writing it is then part way through.
pub fn wait_for_records(state: &Path, journal: &str, event: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let needle = format!("\"event\":\"{event}\"");
    loop {
        let done = std::fs::read_dir(state.join("migrations"))
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join(journal)).ok())
            .map_or(0, |j| j.matches(&needle).count());
        if done >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no {event} in time");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The id of the one migration or rekey `history` lists in `state`.
pub fn only_id(state: &Path) -> String {
    let (out, stdout, stderr) = run(credshift(state).args(["history", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let h = json(&stdout);
    let all = h.as_array().unwrap();
    assert_eq!(all.len(), 1, "{h}");
    all[0]["id"].as_str().unwrap().to_string()
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
        // The lock wait a user would get: a test that wants none says so.
        .env_remove("CREDSHIFT_LOCK_WAIT")
        .stdin(Stdio::null());
    c
}

/// `credshift migrate --from FROM --to TO` and then `args` (`--yes`,
/// `--json`, `--dry-run`, ...): the migration most CLI tests run.
pub fn migrate_cmd(state_dir: &Path, from: &str, to: &str, args: &[&str]) -> Command {
    let mut c = credshift(state_dir);
    c.args(["migrate", "--from", from, "--to", to]).args(args);
    c
}

/// Run and capture; stdout/stderr as strings. Takes the command or a
/// borrow of it (`run(migrate_cmd(..))`, `run(credshift(..).args(..))`).
pub fn run(mut cmd: impl BorrowMut<Command>) -> (Output, String, String) {
    let out = output_within(cmd.borrow_mut(), deadline());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// How long one command may run: `CREDSHIFT_TEST_DEADLINE_SECS`, else
/// 300 s, so a hung command fails the test instead of stalling CI.
pub fn deadline() -> std::time::Duration {
    let secs = std::env::var("CREDSHIFT_TEST_DEADLINE_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

/// What a child left when it ended, or when its deadline killed it.
pub struct Finished {
    /// `None`: killed at the deadline.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run `cmd` with `stdin` written to it (or stdin closed), both output
/// pipes drained on threads (a chatty child never blocks on a full pipe
/// while we wait), and kill it past `limit`.
pub fn run_child(cmd: &mut Command, stdin: Option<&[u8]>, limit: std::time::Duration) -> Finished {
    use std::io::{Read, Write};
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).expect("write the child's stdin");
    }
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `Command::output` with a deadline: past it the child is killed and the
/// test fails naming the command. Stdin is closed, as `output` does.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    let f = run_child(cmd, None, limit);
    let Some(status) = f.status else {
        panic!(
            "{:?} {:?} did not finish within {} s; killed it",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            limit.as_secs_f64()
        );
    };
    Output {
        status,
        stdout: f.stdout,
        stderr: f.stderr,
    }
}

/// A command's stdout as JSON (the test fails showing the text otherwise).
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Every credential of a store as id -> (value, metadata JSON), read
/// through the library; a store that does not exist yet holds nothing.
pub fn contents(spec: &str) -> BTreeMap<String, (String, String)> {
    let spec: credshift::store::StoreSpec = spec.parse().unwrap();
    let s = credshift::store::open(&spec, &credshift::unlock::KeyOptions::default()).unwrap();
    let scan = match s.read_all() {
        Ok(scan) => scan,
        Err(credshift::error::StoreError::NotFound { .. }) => return BTreeMap::new(),
        Err(e) => panic!("{e}"),
    };
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let mut out = BTreeMap::new();
    for c in scan.credentials {
        let meta = serde_json::to_string(&c.metadata).unwrap();
        let dup = out.insert(c.id.to_string(), (c.secret.expose().to_string(), meta));
        assert!(dup.is_none(), "duplicate id {}", c.id);
    }
    out
}

/// A dotenv file of `KEY=value` lines under a comment line.
pub fn write_env(path: &Path, pairs: &[(&str, &str)]) {
    let mut text = String::from("# test env file\n");
    for (k, v) in pairs {
        text.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// A store over one file holding `text`, in a fresh temporary folder: the
/// folder (keep it alive), the file's path and the store.
pub fn store_on_file(
    name: &str,
    text: impl AsRef<[u8]>,
    spec: fn(PathBuf) -> credshift::store::StoreSpec,
) -> (tempfile::TempDir, PathBuf, Box<dyn credshift::store::Store>) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(name);
    std::fs::write(&file, text).unwrap();
    let store = credshift::store::open(
        &spec(file.clone()),
        &credshift::unlock::KeyOptions::default(),
    )
    .expect("open store");
    (tmp, file, store)
}

// ---- stores through the library --------------------------------------

/// An id from its text.
pub fn id(s: &str) -> credshift::credential::CredentialId {
    s.parse().unwrap()
}

/// The secret a store holds at `id`, as text.
pub fn secret_of(store: &dyn credshift::store::Store, s: &str) -> Option<String> {
    store
        .read(&id(s))
        .unwrap()
        .map(|c| c.secret.expose().to_string())
}

/// id -> value of everything a store holds (nothing when it does not exist
/// yet).
pub fn values_of(store: &dyn credshift::store::Store) -> BTreeMap<String, String> {
    match store.read_all() {
        Ok(scan) => scan
            .credentials
            .into_iter()
            .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
            .collect(),
        Err(credshift::error::StoreError::NotFound { .. }) => BTreeMap::new(),
        Err(e) => panic!("{}: {e}", store.spec()),
    }
}

/// The ids a store lists, sorted.
pub fn ids(store: &dyn credshift::store::Store) -> Vec<String> {
    let mut v: Vec<String> = store
        .list()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    v.sort();
    v
}

/// The Fragments Engine fixture's `APP_KEY`.
pub fn fragments_app_key() -> String {
    std::fs::read_to_string(fixture("fragments/APP_KEY"))
        .unwrap()
        .trim()
        .to_string()
}

/// A SQLite database at `path` built from the Fragments fixture's
/// schema.sql + data.sql.
pub fn fragments_db(path: &Path) -> PathBuf {
    let conn = rusqlite::Connection::open(path).unwrap();
    for f in ["fragments/schema.sql", "fragments/data.sql"] {
        conn.execute_batch(&std::fs::read_to_string(fixture(f)).unwrap())
            .unwrap();
    }
    path.to_path_buf()
}
