//! Lock files: the primitive behind [`crate::store::Store::lock`] and the
//! state-dir locks of the engine's session preamble
//! ([`crate::engine::session`], the only caller that takes locks). Two kinds, both held with `flock` (the kernel releases
//! them when the holder dies, so a lock left by a crashed run is stale by
//! construction and is taken over, and reported):
//!
//! - a lock that lives with the store ([`guard`], what
//!   [`crate::store::Store::lock`] returns by default), which keeps every
//!   credshift process apart whatever its state dir, environment or user:
//!   for a file store `.NAME.credshift-lock` (0600) next to the file it
//!   guards (behind any symbolic link), for the keyring a per-service lock
//!   file in a fixed per-user directory, `/tmp/credshift-UID` (0700, ours:
//!   never `XDG_RUNTIME_DIR`, which cron, ssh and sudo set differently).
//!   SQL stores use their advisory lock (`Store::lock`). Shared for an
//!   operation that only reads the store, exclusive for one that writes or
//!   deletes. A store-side lock file is removed by its last holder;
//! - a lock under `STATE/locks/`, keyed by the store's identity, which
//!   keeps operations of one state dir apart, also within one process (the
//!   store-side lock is shared by everything in one process).
//!
//! Lock files are opened without following symbolic links and must be
//! regular files of this user with one link, holding nothing but a holder
//! record: a planted link or file is refused, never truncated. They name
//! their holder (pid, user, host, operation, since) for the error message.
//! Taking a file store's lock also removes the temp files a killed
//! credshift left next to it ([`fsutil::remove_stale_temps`]); that and a
//! stale lock taken over are [`LockNotice`]s the operation reports (the
//! library never prints).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::fsutil;
use crate::store::{LockMode, LockNotice, StoreSpec};

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
            since: now_rfc3339(),
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
    let uid = rustix::process::getuid().as_raw();
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(u) if !u.is_empty() => format!("{u} (uid {uid})"),
        _ => format!("uid {uid}"),
    }
}

/// What this process is doing, written into the store-side locks it takes
/// (`Store::lock` has no room for it): set by the session preamble.
fn operation() -> &'static Mutex<String> {
    static OP: std::sync::OnceLock<Mutex<String>> = std::sync::OnceLock::new();
    OP.get_or_init(|| Mutex::new(String::new()))
}

/// Name the operation (a migration id) the next store-side locks are for.
pub fn set_operation(label: &str) {
    *operation().lock().unwrap_or_else(|p| p.into_inner()) = label.to_string();
}

fn current_operation() -> String {
    operation()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// A held state-dir lock; released on drop (and by the kernel if the
/// process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    pub path: PathBuf,
    /// The holder whose lock was stale and taken over, if any.
    pub stale: Option<Holder>,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Unlock, not only close: a process another thread is starting
        // holds a copy of this file until its exec, and the lock (one per
        // open file) would stay held that long, refusing this process's
        // next operation on the store.
        let _ = self._file.unlock();
    }
}

fn lock_path(state_dir: &Path, scheme: &str, key: &str) -> PathBuf {
    let digest = Sha256::digest(key.as_bytes());
    let scheme = scheme.replace(':', "-");
    state_dir
        .join("locks")
        .join(format!("{scheme}-{}.lock", hex::encode(&digest[..8])))
}

/// Now, as lock records (and journals) write it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// This machine's name (`uname`'s node name, what `gethostname` returns).
pub fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "unknown-host".into()
    } else {
        name
    }
}

/// Take `mode` on `file` without waiting (std's `flock` on Linux):
/// `Ok(false)` when another open file description holds it.
fn try_flock(file: &File, mode: LockMode) -> std::io::Result<bool> {
    let taken = match mode {
        LockMode::Shared => file.try_lock_shared(),
        LockMode::Exclusive => file.try_lock(),
    };
    match taken {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Take the state-dir lock of the store whose identity key is `key`, or
/// fail at once naming the holder.
pub fn state_lock(
    state_dir: &Path,
    spec: &StoreSpec,
    key: &str,
    mode: LockMode,
    migration_id: &str,
) -> Result<StateLock, StoreError> {
    let path = lock_path(state_dir, spec.scheme(), key);
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    let (mut file, _) = open_lock_file(&path)?;
    let previous = read_holder(&mut file);
    match try_flock(&file, mode) {
        Ok(true) => {}
        Ok(false) => {
            return Err(StoreError::Locked {
                location: spec.to_string(),
                holder: current_holder(&mut file, previous)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| format!("lock file {}", path.display())),
                seconds: 0,
            });
        }
        Err(err) => return Err(StoreError::io(&path, err)),
    }
    let me = Holder::me(migration_id);
    write_holder(&mut file, &path, &me)?;
    // A holder recorded in the file whose flock is gone died without
    // releasing it (or was another of our own processes that finished).
    let stale = previous.filter(|h| h.pid != me.pid && !fsutil::pid_alive(h.pid));
    Ok(StateLock {
        _file: file,
        path,
        stale,
    })
}

/// Open (or create, 0600) a lock file without following a symbolic link.
/// One that was there must be a regular file of this user with one link
/// and hold nothing but a holder record (or nothing): anything else is
/// refused, never truncated. `true` when this call created it.
fn open_lock_file(path: &Path) -> Result<(File, bool), StoreError> {
    let open = |create: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        if create {
            o.create_new(true).mode(fsutil::FILE_MODE);
        }
        o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let refuse = |why: String| {
        StoreError::Other(format!(
            "{}: {why}; credshift will not use it as its lock file (someone may have \
             planted it): remove it if it is yours, then run again",
            path.display()
        ))
    };
    let (mut file, created) = match open(true) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match open(false) {
            Ok(f) => (f, false),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refuse("it is a symbolic link".into()));
            }
            // Another user's lock file (0600, theirs): their credshift holds
            // the store, or held it and was killed. Never taken for "no
            // lock here": this user may still be able to change the store.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let owner = std::fs::symlink_metadata(path)
                    .map(|m| format!("uid {}", m.uid()))
                    .unwrap_or_else(|_| "another user".into());
                return Err(StoreError::Locked {
                    location: path.display().to_string(),
                    holder: format!(
                        "a credshift run of {owner}, whose lock file {} this user cannot open",
                        path.display()
                    ),
                    seconds: 0,
                });
            }
            Err(e) => return Err(StoreError::io(path, e)),
        },
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if created {
        return Ok((file, true));
    }
    let meta = file.metadata().map_err(|e| StoreError::io(path, e))?;
    let uid = rustix::process::getuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    if meta.uid() != uid {
        return Err(refuse(format!(
            "it belongs to uid {}, not to this user (uid {uid})",
            meta.uid()
        )));
    }
    if meta.nlink() != 1 {
        return Err(refuse(format!(
            "it has {} hard links (another name for some other file)",
            meta.nlink()
        )));
    }
    if meta.len() > 0 && (meta.len() > 4096 || read_holder(&mut file).is_none()) {
        return Err(refuse("it holds something other than a lock record".into()));
    }
    Ok((file, false))
}

fn write_holder(file: &mut File, path: &Path, me: &Holder) -> Result<(), StoreError> {
    let text = serde_json::to_string(me).unwrap_or_default();
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(text.as_bytes()))
        .map_err(|e| StoreError::io(path, e))
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
    file.seek(SeekFrom::Start(0)).ok()?;
    Read::by_ref(file).take(4096).read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// The lock file that lives with a store: `.NAME.credshift-lock` next to a
/// file store's file (behind symbolic links), a per-service file in the
/// per-user lock directory for the keyring; `None` for other stores.
pub fn guard_path(spec: &StoreSpec) -> Result<Option<PathBuf>, StoreError> {
    if let Some(p) = spec.path() {
        let real = fsutil::resolve_links(&crate::store::identity::absolute(p));
        let dir = fsutil::parent_dir(&real);
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".into());
        return Ok(Some(dir.join(format!(".{name}.credshift-lock"))));
    }
    if let Some(service) = spec.per_user_lock_key() {
        let safe: String = service
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let digest = Sha256::digest(service.as_bytes());
        return Ok(Some(user_lock_dir()?.join(format!(
            "keyring-{safe}-{}.lock",
            hex::encode(&digest[..6])
        ))));
    }
    Ok(None)
}

/// `/tmp/credshift-UID`: one place per user whatever the environment
/// (`XDG_RUNTIME_DIR` and `TMPDIR` differ between a desktop session, cron,
/// ssh and sudo), 0700 and ours, or an error (a directory another user
/// controls is never trusted).
pub fn user_lock_dir() -> Result<PathBuf, StoreError> {
    let uid = rustix::process::getuid().as_raw();
    let dir = PathBuf::from(format!("/tmp/credshift-{uid}"));
    match std::fs::DirBuilder::new()
        .mode(fsutil::DIR_MODE)
        .create(&dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(&dir, e)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| StoreError::io(&dir, e))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(StoreError::Other(format!(
            "{} is not a private directory of this user (a directory, mode 0700, owner uid \
             {uid}): credshift keeps its keyring locks there; remove it and run again",
            dir.display()
        )));
    }
    Ok(dir)
}

/// A held store-side lock. Clones share it; the last one to go releases
/// the lock (and removes the lock file when no other process holds it).
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
    pub fn mode(&self) -> LockMode {
        self.held.mode
    }
}

impl crate::store::StoreLock for Guard {
    fn describe(&self) -> String {
        format!("lock file {}", self.held.path.display())
    }

    fn notices(&self) -> Vec<LockNotice> {
        let h = &self.held;
        let took_over = h.took_over.iter().map(|holder| LockNotice::TookOverStale {
            lock: format!("{} (lock file {})", h.store, h.path.display()),
            holder: holder.to_string(),
        });
        let temps = h.removed_temps.iter().map(|t| LockNotice::RemovedTemp {
            store: h.store.clone(),
            path: t.clone(),
        });
        took_over.chain(temps).collect()
    }
}

impl StateLock {
    /// A stale holder taken over, as a notice.
    pub fn notices(&self) -> Vec<LockNotice> {
        self.stale
            .iter()
            .map(|h| LockNotice::TookOverStale {
                lock: self.path.display().to_string(),
                holder: h.to_string(),
            })
            .collect()
    }
}

#[derive(Debug)]
struct Held {
    file: File,
    path: PathBuf,
    mode: LockMode,
    /// The store, as its spec (no password), for notices.
    store: String,
    /// The holder whose stale lock this one took over.
    took_over: Option<Holder>,
    removed_temps: Vec<PathBuf>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Remove the file while holding it exclusively, so no other holder
        // is left on a removed file; a process waiting on the old file
        // notices (inode check) and starts over. A shared holder that
        // cannot have it exclusively leaves it to the others.
        let alone = self.mode == LockMode::Exclusive
            || try_flock(&self.file, LockMode::Exclusive).unwrap_or(false);
        if alone {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

/// Store-side locks this process holds, so a second taking in one process
/// (the wizard's worker, a resume's second opening) shares one.
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
fn guard_now(spec: &StoreSpec, mode: LockMode) -> Result<Option<Guard>, GuardError> {
    let Some(path) = guard_path(spec)? else {
        return Ok(None);
    };
    let mut held = held_here().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = held.get(&path).and_then(Weak::upgrade) {
        return Ok(Some(Guard { held: h }));
    }
    if mode == LockMode::Exclusive
        && let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        // A target created on first write: its directory is made now, so
        // there is a place to lock.
        fsutil::ensure_private_dir(dir)?;
    }
    for _ in 0..100 {
        let (mut file, _) = match open_lock_file(&path) {
            Ok(f) => f,
            // A store in a directory this user cannot write (a read-only
            // source): this user cannot change the store either, so there
            // is nothing of ours to exclude.
            Err(StoreError::Io { source: e, .. })
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(libc::EROFS) =>
            {
                return Ok(None);
            }
            // The directory is not there yet (a target created on first
            // write): nobody else can hold a lock in it either.
            Err(StoreError::NotFound { .. }) if !fsutil::parent_dir(&path).exists() => {
                return Ok(None);
            }
            Err(StoreError::Locked { holder, .. }) => return Err(GuardError::Held(holder)),
            Err(e) => return Err(e.into()),
        };
        let previous = read_holder(&mut file);
        match try_flock(&file, mode) {
            Ok(true) => {}
            Ok(false) => {
                return Err(GuardError::Held(
                    match current_holder(&mut file, previous) {
                        Some(h) => format!("{h}; lock file {}", path.display()),
                        None => format!("lock file {}", path.display()),
                    },
                ));
            }
            Err(err) => return Err(StoreError::io(&path, err).into()),
        }
        // The holder before us may have removed the file between our open
        // and our flock: then this lock guards nothing; start over.
        let same = match (file.metadata(), std::fs::symlink_metadata(&path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            continue;
        }
        let me = Holder::me(&current_operation());
        write_holder(&mut file, &path, &me)?;
        let took_over = previous.filter(|h| h.pid != me.pid && !fsutil::pid_alive(h.pid));
        let mut removed_temps = Vec::new();
        if let Some(p) = spec.path() {
            removed_temps = fsutil::remove_stale_temps(p);
            if p.is_dir() {
                removed_temps.extend(fsutil::remove_stale_temps_in(p));
            }
        }
        let h = Arc::new(Held {
            file,
            path: path.clone(),
            mode,
            store: spec.to_string(),
            took_over,
            removed_temps,
        });
        held.insert(path, Arc::downgrade(&h));
        return Ok(Some(Guard { held: h }));
    }
    Err(StoreError::Other(format!("{} keeps changing; try again", path.display())).into())
}

/// The lock that lives with `spec`'s store, shared or exclusive, waiting
/// up to `wait` for another holder, then [`StoreError::Locked`] naming it.
/// `Ok(None)`: the store has no such lock here (SQL stores lock
/// themselves, `env:` is read-only). What `Store::lock` does by default.
pub fn guard(
    spec: &StoreSpec,
    mode: LockMode,
    wait: Duration,
) -> Result<Option<Guard>, StoreError> {
    let start = Instant::now();
    loop {
        match guard_now(spec, mode) {
            Ok(g) => return Ok(g),
            Err(GuardError::Store(e)) => return Err(e),
            Err(GuardError::Held(holder)) => {
                if start.elapsed() >= wait {
                    return Err(StoreError::Locked {
                        location: spec.to_string(),
                        holder,
                        seconds: wait.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EX: LockMode = LockMode::Exclusive;
    const SH: LockMode = LockMode::Shared;

    #[test]
    fn a_second_state_lock_is_refused_with_the_first_named() {
        let state = tempfile::tempdir().unwrap();
        let spec: StoreSpec = "dotenv:/tmp/x/.env".parse().unwrap();
        let held = state_lock(state.path(), &spec, "k", EX, "m-1").unwrap();
        let e = state_lock(state.path(), &spec, "k", SH, "m-2").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("m-1"), "{msg}");
        assert_eq!(fsutil::mode_of(&held.path), Some(0o600));
        drop(held);
        let a = state_lock(state.path(), &spec, "k", SH, "m-3").unwrap();
        assert!(a.stale.is_none(), "our own finished lock is not stale");
        let _b = state_lock(state.path(), &spec, "k", SH, "m-4").expect("shared with shared");
        assert!(state_lock(state.path(), &spec, "other", EX, "m-5").is_ok());
    }

    #[test]
    fn url_locations_never_hold_the_password() {
        let state = tempfile::tempdir().unwrap();
        let spec: StoreSpec = "postgres://u:hunter2@h/db".parse().unwrap();
        let l = state_lock(state.path(), &spec, "postgres:x", EX, "m").unwrap();
        assert!(!l.path.display().to_string().contains("hunter2"));
    }

    #[test]
    fn a_dead_holder_is_reported_as_stale() {
        let state = tempfile::tempdir().unwrap();
        let spec: StoreSpec = "dotenv:/tmp/y/.env".parse().unwrap();
        let path = lock_path(state.path(), spec.scheme(), "k");
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
        let l = state_lock(state.path(), &spec, "k", EX, "new").unwrap();
        assert_eq!(l.stale, Some(dead.clone()));
        assert!(matches!(
            &l.notices()[..],
            [LockNotice::TookOverStale { holder, .. }] if holder == &dead.to_string()
        ));
    }

    /// A stale store-side lock and a killed run's temp file are notices
    /// the operation reports, not lines printed over the wizard's screen.
    #[test]
    fn a_store_lock_reports_what_it_took_over_and_removed_as_notices() {
        use crate::store::StoreLock;
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("t.env");
        std::fs::write(&env, "A=1\n").unwrap();
        let spec = StoreSpec::Dotenv(env.clone());
        let dead = Holder {
            pid: 1_073_741_823,
            host: "h".into(),
            user: "u".into(),
            migration_id: "old".into(),
            since: "t".into(),
        };
        let lock = guard_path(&spec).unwrap().unwrap();
        std::fs::write(&lock, serde_json::to_string(&dead).unwrap()).unwrap();
        let temp = dir
            .path()
            .join(format!(".t.env{}{}.0", fsutil::TEMP_MARKER, dead.pid));
        std::fs::write(&temp, "half").unwrap();
        let g = guard(&spec, EX, Duration::ZERO).unwrap().unwrap();
        assert!(!temp.exists());
        let n = g.notices();
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(
            matches!(&n[0], LockNotice::TookOverStale { holder, .. } if holder == &dead.to_string())
        );
        assert_eq!(
            n[1],
            LockNotice::RemovedTemp {
                store: spec.to_string(),
                path: temp.clone(),
            }
        );
        assert!(n[1].to_string().contains("killed mid-write"), "{}", n[1]);
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
        let g = guard(&via_link, EX, Duration::ZERO).unwrap().unwrap();
        assert_eq!(fsutil::mode_of(&path), Some(0o600));
        let g2 = guard(&direct, EX, Duration::ZERO).unwrap().unwrap();
        drop(g);
        assert!(path.exists());
        drop(g2);
        assert!(!path.exists(), "released locks leave no file");

        // Held by another process (another open file description): refused
        // after the wait, typed, naming who holds it.
        let other = Holder {
            pid: 4242,
            host: "elsewhere".into(),
            user: "alice (uid 1000)".into(),
            migration_id: "m-other".into(),
            since: "2026-01-02T03:04:05Z".into(),
        };
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let f = File::open(&path).unwrap();
        f.lock_shared().unwrap();
        let e = guard(&via_link, EX, Duration::from_millis(120)).unwrap_err();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        let e = e.to_string();
        for part in [
            "pid 4242",
            "alice",
            "elsewhere",
            "m-other",
            "2026-01-02T03:04:05Z",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        // A reader shares a reader's lock, and leaves the file to it.
        let r = guard(&direct, SH, Duration::ZERO).unwrap().unwrap();
        drop(r);
        assert!(path.exists(), "the other reader still holds it");
        drop(f);
        // The holder is gone: taken over.
        let l = guard(&direct, EX, Duration::ZERO).unwrap();
        assert!(l.is_some());
    }

    #[test]
    fn a_planted_link_or_foreign_file_is_refused_and_left_alone() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("vault.enc");
        std::fs::write(&victim, "precious").unwrap();
        let app = dir.path().join("app.env");
        std::fs::write(&app, "A=1\n").unwrap();
        let spec: StoreSpec = format!("dotenv:{}", app.display()).parse().unwrap();
        let lock = dir.path().join(".app.env.credshift-lock");
        symlink(&victim, &lock).unwrap();
        let e = guard(&spec, EX, Duration::ZERO).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_file(&lock).unwrap();
        // A hard link to the victim, or a file holding something else.
        std::fs::hard_link(&victim, &lock).unwrap();
        let e = guard(&spec, SH, Duration::ZERO).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        std::fs::remove_file(&lock).unwrap();
        std::fs::write(&lock, "not a lock record").unwrap();
        let e = guard(&spec, EX, Duration::ZERO).unwrap_err().to_string();
        assert!(e.contains("something other than a lock record"), "{e}");
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), "not a lock record");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // Another user's file, even an empty one (checkable as root only).
        if rustix::process::getuid().as_raw() == 0 {
            std::fs::write(&lock, "").unwrap();
            std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
            let e = guard(&spec, EX, Duration::ZERO).unwrap_err().to_string();
            assert!(e.contains("belongs to uid 65534"), "{e}");
        }
    }

    #[test]
    fn the_keyring_lock_is_per_service_in_a_fixed_private_dir() {
        let a = guard_path(&"keyring:svc-a".parse().unwrap())
            .unwrap()
            .unwrap();
        let b = guard_path(&"keyring:svc-b".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), b.parent());
        let dir = a.parent().unwrap();
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(dir, Path::new(&format!("/tmp/credshift-{uid}")));
        assert_eq!(fsutil::mode_of(dir), Some(0o700));
        assert!(
            guard_path(&"postgres://u@h/db".parse().unwrap())
                .unwrap()
                .is_none()
        );
    }
}
