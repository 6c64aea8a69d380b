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

/// Write `bytes` to `path` atomically: a temp file in the same directory
/// (0600, exclusive create), fsync, rename over the target, fsync of the
/// directory. A crash leaves either the old file or the new one, never half.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    ensure_private_dir(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credshift".into());
    let mut tmp_path;
    let mut attempt = 0u32;
    let mut file = loop {
        tmp_path = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
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
        file.write_all(bytes)?;
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
}
