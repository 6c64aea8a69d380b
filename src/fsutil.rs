//! File helpers every file-based store and the engine share: atomic private
//! writes, private directories, text decoding that tolerates a BOM.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Create `dir` (and parents) with mode 0700 for the directories created.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| StoreError::io(dir, e))?;
    // `recursive` applies the mode to each new dir, but a umask can narrow
    // it; set the leaf explicitly.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| StoreError::io(dir, e))
}

/// The file a path stands for: `path` itself, or, when it is a symbolic
/// link (or a chain of them), the file at the end of the links, which may
/// not exist yet. Edits go to that file so a link stays a link.
pub fn resolve_links(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => match fs::read_link(&p) {
                Ok(to) if to.is_absolute() => p = to,
                Ok(to) => p = parent_dir(&p).join(to),
                Err(_) => return p,
            },
            _ => return p,
        }
    }
    p
}

/// The marker in credshift's temp file names: `.NAME.credshift-tmp.PID.N`.
pub const TEMP_MARKER: &str = ".credshift-tmp.";

/// Write `bytes` to `path` atomically: a temp file in the same directory
/// (`.NAME.credshift-tmp.PID.N`, 0600, exclusive create), fsync, rename over
/// the target, fsync of the directory. A crash leaves either the old file or
/// the new one, never half, and at worst a temp file that
/// [`remove_stale_temps`] recognises by name and removes.
///
/// A symbolic link is followed: the file behind it is replaced and the link
/// stays. A file that was private keeps its mode (0400, 0600, ...); one that
/// group or others could read is written back as 0600 (the probe warns).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// [`atomic_write`] of what `fill` writes into the temp file: a large file
/// (a sealed store) is written as it is produced, never held whole. `fill`
/// buffers as it sees fit (no buffer here: a plaintext file's bytes must
/// not be left in one).
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let path = &resolve_links(path);
    let dir = parent_dir(path);
    ensure_private_dir(&dir)?;
    let mode = match fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 == 0 => m.permissions().mode() & 0o777,
        _ => FILE_MODE,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credshift".into());
    let mut tmp_path;
    let mut attempt = 0u32;
    let mut file = loop {
        tmp_path = dir.join(format!(
            ".{name}{TEMP_MARKER}{}.{attempt}",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp_path)
        {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => attempt += 1,
            Err(e) => return Err(StoreError::io(&tmp_path, e)),
        }
    };
    let result = (|| -> io::Result<()> {
        fill(&mut file)?;
        crash_in_write(&name);
        if mode != FILE_MODE {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, path)?;
        fsync_dir(&dir)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(StoreError::io(path, e));
    }
    Ok(())
}

/// One batch against a store kept in a single file, the read-modify-write
/// the file stores share: take the `loaded` document, `apply` each item to
/// it in order, and when at least one applied, `save` it once (an atomic
/// rewrite: [`atomic_write`]). A failed load, or a failed save, fails every
/// item that had not already failed on its own, with the error `fail`
/// makes of it for that item.
pub fn rewrite_batch<I, D, T>(
    items: &[I],
    loaded: Result<D>,
    mut apply: impl FnMut(&mut D, &I) -> Result<T>,
    save: impl FnOnce(D) -> Result<()>,
    fail: impl Fn(&StoreError, &I) -> StoreError,
) -> Vec<Result<T>> {
    let mut doc = match loaded {
        Ok(d) => d,
        Err(e) => return items.iter().map(|i| Err(fail(&e, i))).collect(),
    };
    let mut results: Vec<Result<T>> = items.iter().map(|i| apply(&mut doc, i)).collect();
    if results.iter().any(|r| r.is_ok())
        && let Err(e) = save(doc)
    {
        for (r, i) in results.iter_mut().zip(items) {
            if r.is_ok() {
                *r = Err(fail(&e, i));
            }
        }
    }
    results
}

/// `CREDSHIFT_CRASH_IN_WRITE=NAME` (a documented test aid,
/// [`crate::test_aids`]): abort the process after the temp file for the
/// file named exactly NAME is written, before it is renamed into place, as
/// a `kill -9` mid-write would.
fn crash_in_write(name: &str) {
    if crate::test_aids::get()
        .crash_in_write
        .as_ref()
        .is_some_and(|v| v == name)
    {
        std::process::abort();
    }
}

/// Remove the temp files a credshift process that is no longer running
/// left next to `path` (killed mid-write): `.NAME.credshift-tmp.PID.N`, and
/// the `.NAME.PID.N.tmp` of older versions. Returns what was removed.
/// Callers hold the store's lock, so no live writer of this store is
/// interrupted; a temp file of a live process is never touched.
pub fn remove_stale_temps(path: &Path) -> Vec<PathBuf> {
    let path = resolve_links(path);
    let dir = parent_dir(&path);
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let ours = format!(".{name}{TEMP_MARKER}");
    let legacy = format!(".{name}.");
    remove_dead_temps(&dir, |file_name| {
        if let Some(rest) = file_name.strip_prefix(&ours) {
            rest.split('.').next().and_then(|p| p.parse::<u32>().ok())
        } else {
            file_name
                .strip_prefix(&legacy)
                .and_then(|r| r.strip_suffix(".tmp"))
                .and_then(pid_dot_counter)
        }
    })
}

/// [`remove_stale_temps`] for a directory store (agent-prompttrain's
/// credentials dir): the temp files of dead credshift processes inside it,
/// whatever file they were for.
pub fn remove_stale_temps_in(dir: &Path) -> Vec<PathBuf> {
    remove_dead_temps(dir, |file_name| {
        let (_, rest) = file_name.split_once(TEMP_MARKER)?;
        if !file_name.starts_with('.') {
            return None;
        }
        pid_dot_counter(rest)
    })
}

/// `PID.N` (N a number) -> PID.
fn pid_dot_counter(rest: &str) -> Option<u32> {
    let mut parts = rest.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(p), Some(n), None) if n.parse::<u32>().is_ok() => p.parse::<u32>().ok(),
        _ => None,
    }
}

/// Remove the files in `dir` that `pid_of` names as a temp file of a
/// process (by its file name) that is neither this one nor alive.
fn remove_dead_temps(dir: &Path, pid_of: impl Fn(&str) -> Option<u32>) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = pid_of(&file_name) else {
            continue;
        };
        if pid == std::process::id() || pid_alive(pid) {
            continue;
        }
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed.sort();
    removed
}

/// Whether a process with this pid exists (on this machine): signal 0,
/// which a process of another user refuses but does receive.
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Whether this user may write `path` (`access(2)`, `W_OK`).
pub fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// Whether this user may create and remove entries in `dir` (`W_OK | X_OK`).
pub fn dir_writable(dir: &Path) -> bool {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// The directory a path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Open a file for appending with mode 0600 (journals, audit log).
pub fn open_append_private(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

/// Read a text file: strips a UTF-8 BOM, rejects invalid UTF-8 with an
/// error naming the file (not quoting it).
/// A file's bytes, or `None` when there is no such file (a store that
/// does not exist yet).
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

pub fn read_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| StoreError::io(path, e))?;
    decode_text(path, bytes)
}

pub fn decode_text(path: &Path, mut bytes: Vec<u8>) -> Result<String> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        StoreError::Parse {
            location: path.display().to_string(),
            line: Some(line),
            column: None,
            message: "not valid UTF-8".into(),
        }
    })
}

/// Mode bits of a file, when it exists.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        let p = sub.join("f.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&p), Some(0o600));
        assert_eq!(mode_of(&sub), Some(0o700));
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn read_text_strips_bom_and_names_bad_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.env");
        fs::write(&p, b"\xEF\xBB\xBFA=1\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "A=1\n");
        fs::write(&p, b"A=1\nB=\xff\n").unwrap();
        let e = read_text(&p).unwrap_err().to_string();
        assert!(e.contains("x.env:2"), "{e}");
        let e = read_text(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing: not found"), "{e}");
    }

    #[test]
    fn a_link_stays_a_link_and_modes_are_kept_or_tightened() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("dotfiles");
        fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("app.env");
        fs::write(&real, "old").unwrap();
        let link = dir.path().join(".env");
        symlink("dotfiles/app.env", &link).unwrap();
        let chain = dir.path().join("chain.env");
        symlink(".env", &chain).unwrap();
        assert_eq!(resolve_links(&chain), real);
        for (mode, want) in [
            (0o644, 0o600),
            (0o640, 0o600),
            (0o400, 0o400),
            (0o700, 0o700),
        ] {
            fs::set_permissions(&real, fs::Permissions::from_mode(mode)).unwrap();
            atomic_write(&chain, b"new").unwrap();
            assert!(
                fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert!(
                fs::symlink_metadata(&chain)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(fs::read(&real).unwrap(), b"new");
            assert_eq!(mode_of(&real), Some(want), "{mode:o}");
        }
        // A dangling link: the file behind it is created.
        let dangling = dir.path().join("dangling.env");
        symlink("dotfiles/later.env", &dangling).unwrap();
        atomic_write(&dangling, b"x").unwrap();
        assert!(
            fs::symlink_metadata(&dangling)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(real_dir.join("later.env")).unwrap(), b"x");
    }

    #[test]
    fn only_temp_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("target.env");
        fs::write(&p, "A=1\n").unwrap();
        // A pid that has exited (reaped), and one far above pid_max.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let names = [
            format!(".target.env.credshift-tmp.{dead}.0"),
            ".target.env.credshift-tmp.1073741823.3".to_string(),
            format!(".target.env.{dead}.1.tmp"),
        ];
        let keep = [
            format!(".target.env.credshift-tmp.{}.0", std::process::id()),
            ".target.env.credshift-tmp.1.0".to_string(), // pid 1 is alive
            format!(".other.env.credshift-tmp.{dead}.0"),
            format!(".target.env.{dead}.x.tmp"),
            "target.env".to_string(),
        ];
        for n in names.iter().chain(&keep) {
            if n != "target.env" {
                fs::write(dir.path().join(n), "secret").unwrap();
            }
        }
        let removed = remove_stale_temps(&p);
        let mut want: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
        want.sort();
        assert_eq!(removed, want);
        for n in &keep {
            assert!(dir.path().join(n).exists(), "{n}");
        }
        assert!(remove_stale_temps(&p).is_empty());
        // A directory store: any file's temps inside it.
        let inner = dir.path().join("credentials");
        fs::create_dir(&inner).unwrap();
        let stale = inner.join(format!(".acc.json{TEMP_MARKER}{dead}.0"));
        let live = inner.join(format!(".acc.json{TEMP_MARKER}1.0"));
        fs::write(&stale, "s").unwrap();
        fs::write(&live, "s").unwrap();
        fs::write(inner.join("acc.json"), "{}").unwrap();
        assert_eq!(remove_stale_temps_in(&inner), vec![stale]);
        assert!(live.exists() && inner.join("acc.json").exists());
    }
}
