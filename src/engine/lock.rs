//! One lock per store location, so two migrations never touch the same
//! store at once. A lock is a file under `STATE/locks/` held with `flock`:
//! the kernel releases it when the holder dies, so a lock left by a crashed
//! run is stale by construction and is taken over (and reported). The file
//! names its holder (pid, migration id, host, since) for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    pub migration_id: String,
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {}, migration {}, since {}",
            self.pid, self.host, self.migration_id, self.since
        )
    }
}

/// A held lock; released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    pub path: PathBuf,
    /// The holder whose lock was stale and taken over, if any.
    pub stale: Option<Holder>,
}

/// The location a lock stands for: the absolute path for file stores, the
/// redacted spec otherwise (never a password).
pub fn location_key(spec: &StoreSpec) -> String {
    match spec.path() {
        Some(p) => {
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().unwrap_or_default().join(p)
            };
            // Canonicalize the parent (the file itself may not exist yet).
            let dir = fsutil::parent_dir(&abs);
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            let name = abs
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            format!("{}:{}", spec.scheme(), dir.join(name).display())
        }
        None => spec.to_string(),
    }
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
                holder: previous
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| format!("lock file {}", path.display())),
            });
        }
        return Err(StoreError::io(&path, err).into());
    }
    let me = Holder {
        pid: std::process::id(),
        host: hostname(),
        migration_id: migration_id.to_string(),
        since: crate::engine::journal::now_rfc3339(),
    };
    let text = serde_json::to_string(&me).unwrap_or_default();
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(text.as_bytes()))
        .and_then(|_| file.sync_data())
        .map_err(|e| StoreError::io(&path, e))?;
    // A holder recorded in the file whose flock is gone died without
    // releasing it (or was another of our own processes that finished).
    let stale = previous.filter(|h| h.pid != me.pid && !pid_alive(h.pid));
    Ok(StoreLock {
        _file: file,
        path,
        stale,
    })
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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
    if a == b {
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
            migration_id: "old".into(),
            since: "t".into(),
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let l = acquire(state.path(), &spec, "new").unwrap();
        assert_eq!(l.stale, Some(dead));
    }
}
