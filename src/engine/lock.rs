//! One lock per store location, so two migrations never touch the same
//! store at once. Two kinds, both held with `flock` (the kernel releases
//! them when the holder dies, so a lock left by a crashed run is stale by
//! construction and is taken over, and reported):
//!
//! - a lock under `STATE/locks/`, keyed by the location, which keeps
//!   migrations of one state dir apart (also within one process);
//! - a lock that lives with the store ([`guard`], also what
//!   [`crate::store::Store::lock`] returns by default), which keeps every
//!   credshift process apart whatever its state dir or user: for a file
//!   store `.NAME.credshift-lock` (0600) next to the file it guards (behind
//!   any symbolic link), for the keyring a per-service lock file in the
//!   user's runtime dir (`$XDG_RUNTIME_DIR/credshift`, else
//!   `/tmp/credshift-UID`, 0700). SQL stores use their advisory lock
//!   (`Store::lock`). A store-side lock file is removed when released.
//!
//! Lock files name their holder (pid, user, host, migration id, since) for
//! the error message. Taking a file store's lock also removes the temp
//! files a killed credshift left next to it ([`fsutil::remove_stale_temps`])
//! and says so on stderr.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::error::EngineError;
use crate::error::StoreError;
use crate::fsutil;
use crate::store::StoreSpec;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub migration_id: String,
    pub since: String,
}

impl Holder {
    fn me(migration_id: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            user: user_name(),
            migration_id: migration_id.to_string(),
            since: crate::engine::journal::now_rfc3339(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.user.is_empty() {
            write!(f, " of user {}", self.user)?;
        }
        write!(f, " on {}", self.host)?;
        if !self.migration_id.is_empty() {
            write!(f, ", migration {}", self.migration_id)?;
        }
        write!(f, ", since {}", self.since)
    }
}

fn user_name() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(u) if !u.is_empty() => format!("{u} (uid {uid})"),
        _ => format!("uid {uid}"),
    }
}

/// A held lock; released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    pub path: PathBuf,
    /// The holder whose lock was stale and taken over, if any.
    pub stale: Option<Holder>,
    /// The lock that lives with the store, when the store has one here.
    pub guard: Option<Guard>,
}

/// The location a lock stands for: the absolute path for file stores, the
/// redacted spec otherwise (never a password).
pub fn location_key(spec: &StoreSpec) -> String {
    match spec.path() {
        Some(p) => {
            let (dir, name) = resolved(p);
            format!(
                "{}:{}",
                spec.scheme(),
                dir.join(name.unwrap_or_default()).display()
            )
        }
        None => spec.to_string(),
    }
}

/// A file store's file as one location: absolute, a link and the file
/// behind it as one, the parent canonicalized (the file itself may not
/// exist yet). The directory and the file name.
fn resolved(p: &Path) -> (PathBuf, Option<std::ffi::OsString>) {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let real = fsutil::resolve_links(&abs);
    let dir = fsutil::parent_dir(&real);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    (dir, real.file_name().map(|n| n.to_os_string()))
}

fn lock_path(state_dir: &Path, spec: &StoreSpec) -> PathBuf {
    let key = location_key(spec);
    let digest = Sha256::digest(key.as_bytes());
    let scheme = spec.scheme().replace(':', "-");
    state_dir
        .join("locks")
        .join(format!("{scheme}-{}.lock", hex::encode(&digest[..8])))
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Take the lock of `spec`'s location, or fail naming the holder.
pub fn acquire(
    state_dir: &Path,
    spec: &StoreSpec,
    migration_id: &str,
) -> Result<StoreLock, EngineError> {
    let path = lock_path(state_dir, spec);
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(fsutil::FILE_MODE)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    let previous = read_holder(&mut file);
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(EngineError::Locked {
                store: spec.to_string(),
                holder: current_holder(&mut file, previous)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| format!("lock file {}", path.display())),
            });
        }
        return Err(StoreError::io(&path, err).into());
    }
    let me = Holder::me(migration_id);
    let text = serde_json::to_string(&me).unwrap_or_default();
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(text.as_bytes()))
        .and_then(|_| file.sync_data())
        .map_err(|e| StoreError::io(&path, e))?;
    // A holder recorded in the file whose flock is gone died without
    // releasing it (or was another of our own processes that finished).
    let stale = previous.filter(|h| h.pid != me.pid && !fsutil::pid_alive(h.pid));
    let guard = match guard_now(spec, migration_id) {
        Ok(g) => g,
        Err(GuardError::Held(holder)) => {
            return Err(EngineError::Locked {
                store: spec.to_string(),
                holder,
            });
        }
        Err(GuardError::Store(e)) => return Err(e.into()),
    };
    Ok(StoreLock {
        _file: file,
        path,
        stale,
        guard,
    })
}

/// Who holds a lock file we could not take. The holder writes its name
/// just after it takes the lock, so a reader that read the file in between
/// (empty, or a finished holder's name) reads again for a moment before it
/// falls back to what it read first.
fn current_holder(file: &mut File, first: Option<Holder>) -> Option<Holder> {
    for _ in 0..50 {
        if file.seek(SeekFrom::Start(0)).is_ok()
            && let Some(h) = read_holder(file)
        {
            return Some(h);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    first
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// The lock file that lives with a store: `.NAME.credshift-lock` next to a
/// file store's file (behind symbolic links), a per-service file in the
/// user's runtime dir for the keyring; `None` for other stores.
pub fn guard_path(spec: &StoreSpec) -> Result<Option<PathBuf>, StoreError> {
    if let Some(p) = spec.path() {
        let (dir, name) = resolved(p);
        let name = name
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".into());
        return Ok(Some(dir.join(format!(".{name}.credshift-lock"))));
    }
    if let StoreSpec::Keyring(service) = spec {
        let safe: String = service
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let digest = Sha256::digest(service.as_bytes());
        return Ok(Some(runtime_dir()?.join(format!(
            "keyring-{safe}-{}.lock",
            hex::encode(&digest[..6])
        ))));
    }
    Ok(None)
}

/// `$XDG_RUNTIME_DIR/credshift`, else `/tmp/credshift-UID`; 0700 and ours,
/// or an error (a directory another user controls is never trusted).
fn runtime_dir() -> Result<PathBuf, StoreError> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() && d.is_dir() => d.join("credshift"),
        _ => PathBuf::from(format!("/tmp/credshift-{uid}")),
    };
    fsutil::ensure_private_dir(&dir)?;
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| StoreError::io(&dir, e))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(StoreError::Other(format!(
            "{} is not a private directory of this user (mode 0700, owner uid {uid}); \
             remove it or set XDG_RUNTIME_DIR",
            dir.display()
        )));
    }
    Ok(dir)
}

/// A held store-side lock. Clones share it; the last one to go removes the
/// lock file and releases the lock.
#[derive(Debug, Clone)]
pub struct Guard {
    held: Arc<Held>,
}

impl Guard {
    pub fn path(&self) -> &Path {
        &self.held.path
    }
    /// Temp files of killed credshift runs removed when it was taken.
    pub fn removed_temps(&self) -> &[PathBuf] {
        &self.held.removed_temps
    }
}

impl crate::store::StoreLock for Guard {
    fn describe(&self) -> String {
        format!("lock file {}", self.held.path.display())
    }
}

#[derive(Debug)]
struct Held {
    file: File,
    path: PathBuf,
    removed_temps: Vec<PathBuf>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Remove the file while still holding the lock; a process waiting
        // on the old file notices (inode check) and starts over.
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Store-side locks this process holds, so the engine's lock and the
/// store's own `Store::lock` (and a resume's second opening) share one.
fn held_here() -> &'static Mutex<HashMap<PathBuf, Weak<Held>>> {
    static HELD: std::sync::OnceLock<Mutex<HashMap<PathBuf, Weak<Held>>>> =
        std::sync::OnceLock::new();
    HELD.get_or_init(|| Mutex::new(HashMap::new()))
}

enum GuardError {
    /// Held by someone else: who.
    Held(String),
    Store(StoreError),
}

impl From<StoreError> for GuardError {
    fn from(e: StoreError) -> Self {
        GuardError::Store(e)
    }
}

/// One attempt at the store-side lock of `spec`.
fn guard_now(spec: &StoreSpec, migration_id: &str) -> Result<Option<Guard>, GuardError> {
    let Some(path) = guard_path(spec)? else {
        return Ok(None);
    };
    let mut held = held_here().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = held.get(&path).and_then(Weak::upgrade) {
        return Ok(Some(Guard { held: h }));
    }
    if let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        fsutil::ensure_private_dir(dir)?;
    }
    for _ in 0..100 {
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsutil::FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            // A store in a directory this user cannot write (a read-only
            // source): this user cannot change the store either, so there
            // is nothing of ours to exclude.
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(libc::EROFS) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::io(&path, e).into()),
        };
        let previous = read_holder(&mut file);
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(GuardError::Held(
                    match current_holder(&mut file, previous) {
                        Some(h) => format!("{h}; lock file {}", path.display()),
                        None => format!("lock file {}", path.display()),
                    },
                ));
            }
            return Err(StoreError::io(&path, err).into());
        }
        // The holder before us may have removed the file between our open
        // and our flock: then this lock guards nothing; start over.
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            continue;
        }
        let me = Holder::me(migration_id);
        let text = serde_json::to_string(&me).unwrap_or_default();
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .map_err(|e| StoreError::io(&path, e))?;
        if let Some(h) = previous.filter(|h| h.pid != me.pid) {
            eprintln!(
                "credshift: {spec}: took over the lock left by {h}, which is no longer running"
            );
        }
        let mut removed_temps = Vec::new();
        if let Some(p) = spec.path() {
            removed_temps = fsutil::remove_stale_temps(p);
            if p.is_dir() {
                removed_temps.extend(fsutil::remove_stale_temps_in(p));
            }
        }
        for t in &removed_temps {
            eprintln!(
                "credshift: {spec}: removed {}, a temp file left by a credshift run that was killed mid-write",
                t.display()
            );
        }
        let h = Arc::new(Held {
            file,
            path: path.clone(),
            removed_temps,
        });
        held.insert(path, Arc::downgrade(&h));
        return Ok(Some(Guard { held: h }));
    }
    Err(StoreError::Other(format!("{} keeps changing; try again", path.display())).into())
}

/// The lock that lives with `spec`'s store, waiting up to `wait` for
/// another holder. `Ok(None)`: the store has no such lock here (SQL stores
/// lock themselves, `env:` is read-only). What `Store::lock` does by default.
pub fn guard(spec: &StoreSpec, wait: Duration) -> Result<Option<Guard>, StoreError> {
    let start = Instant::now();
    loop {
        match guard_now(spec, "") {
            Ok(g) => return Ok(g),
            Err(GuardError::Store(e)) => return Err(e),
            Err(GuardError::Held(holder)) => {
                if start.elapsed() >= wait {
                    return Err(StoreError::Other(format!(
                        "{spec} is locked by another credshift run ({holder}); gave up after {} s",
                        wait.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Lock both stores of a migration, in a fixed order. Refuses a migration
/// from a store to itself.
pub fn acquire_pair(
    state_dir: &Path,
    from: &StoreSpec,
    to: &StoreSpec,
    migration_id: &str,
) -> Result<Vec<StoreLock>, EngineError> {
    let (a, b) = (location_key(from), location_key(to));
    if a == b || crate::store::same_location(from, to) {
        return Err(EngineError::Refused(format!(
            "{from} and {to} are the same store"
        )));
    }
    let mut specs = [(a, from), (b, to)];
    specs.sort_by(|x, y| x.0.cmp(&y.0));
    let mut locks = Vec::with_capacity(2);
    for (_, spec) in specs {
        locks.push(acquire(state_dir, spec, migration_id)?);
    }
    Ok(locks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let state = tempfile::tempdir().unwrap();
        let spec: StoreSpec = "dotenv:/tmp/x/.env".parse().unwrap();
        let held = acquire(state.path(), &spec, "m-1").unwrap();
        let e = acquire(state.path(), &spec, "m-2").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, EngineError::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("m-1"), "{msg}");
        assert_eq!(fsutil::mode_of(&held.path), Some(0o600));
        drop(held);
        let again = acquire(state.path(), &spec, "m-3").unwrap();
        assert!(again.stale.is_none(), "our own finished lock is not stale");
    }

    #[test]
    fn same_store_twice_is_refused_and_different_paths_do_not_conflict() {
        let state = tempfile::tempdir().unwrap();
        let a: StoreSpec = "dotenv:/tmp/x/a.env".parse().unwrap();
        let b: StoreSpec = "sqlite:/tmp/x/b.db".parse().unwrap();
        let _l = acquire_pair(state.path(), &a, &b, "m").unwrap();
        let e = acquire_pair(state.path(), &a, &a, "m2").unwrap_err();
        assert!(matches!(e, EngineError::Refused(_)));
    }

    #[test]
    fn url_locations_never_hold_the_password() {
        let spec: StoreSpec = "postgres://u:hunter2@h/db".parse().unwrap();
        assert!(!location_key(&spec).contains("hunter2"));
    }

    #[test]
    fn a_dead_holder_is_reported_as_stale() {
        let state = tempfile::tempdir().unwrap();
        let spec: StoreSpec = "dotenv:/tmp/y/.env".parse().unwrap();
        let path = lock_path(state.path(), &spec);
        fsutil::ensure_private_dir(path.parent().unwrap()).unwrap();
        // A pid far above pid_max: no such process.
        let dead = Holder {
            pid: 1_073_741_823,
            host: "h".into(),
            user: "u".into(),
            migration_id: "old".into(),
            since: "t".into(),
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let l = acquire(state.path(), &spec, "new").unwrap();
        assert_eq!(l.stale, Some(dead));
    }

    #[test]
    fn the_store_side_lock_lives_next_to_the_file_and_names_its_holder() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("app.env"), "A=1\n").unwrap();
        symlink(real.join("app.env"), dir.path().join(".env")).unwrap();
        let via_link: StoreSpec = format!("dotenv:{}", dir.path().join(".env").display())
            .parse()
            .unwrap();
        let direct: StoreSpec = format!("encrypted:{}", real.join("app.env").display())
            .parse()
            .unwrap();
        let path = guard_path(&via_link).unwrap().unwrap();
        let real_canon = std::fs::canonicalize(&real).unwrap();
        assert_eq!(path, real_canon.join(".app.env.credshift-lock"));
        assert_eq!(guard_path(&direct).unwrap().unwrap(), path);

        // Held here: shared (the engine's lock and Store::lock are one).
        let g = guard(&via_link, Duration::ZERO).unwrap().unwrap();
        assert_eq!(fsutil::mode_of(&path), Some(0o600));
        let g2 = guard(&direct, Duration::ZERO).unwrap().unwrap();
        drop(g);
        assert!(path.exists());
        drop(g2);
        assert!(!path.exists(), "released locks leave no file");

        // Held by another process (another open file description): refused
        // after the wait, naming who holds it.
        let other = Holder {
            pid: 4242,
            host: "elsewhere".into(),
            user: "alice (uid 1000)".into(),
            migration_id: "m-other".into(),
            since: "2026-01-02T03:04:05Z".into(),
        };
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let f = File::open(&path).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        let e = guard(&via_link, Duration::from_millis(120))
            .unwrap_err()
            .to_string();
        for part in [
            "pid 4242",
            "alice",
            "elsewhere",
            "m-other",
            "2026-01-02T03:04:05Z",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        let state = tempfile::tempdir().unwrap();
        let e = acquire(state.path(), &direct, "m-2").unwrap_err();
        assert!(matches!(e, EngineError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("pid 4242"), "{e}");
        drop(f);
        // The holder is gone: taken over.
        let l = acquire(state.path(), &direct, "m-3").unwrap();
        assert!(l.guard.is_some());
    }

    #[test]
    fn the_keyring_lock_is_per_service_in_a_private_runtime_dir() {
        let a = guard_path(&"keyring:svc-a".parse().unwrap())
            .unwrap()
            .unwrap();
        let b = guard_path(&"keyring:svc-b".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), b.parent());
        let dir = a.parent().unwrap();
        assert_eq!(fsutil::mode_of(dir), Some(0o700));
        assert!(
            guard_path(&"postgres://u@h/db".parse().unwrap())
                .unwrap()
                .is_none()
        );
    }
}
