//! Key derivation and key material: PBKDF2-HMAC-SHA256 for passphrases,
//! the system random generator, and 32-byte key files.
//!
//! A key file holds exactly 32 bytes of key. Three spellings are accepted
//! when loading: the raw 32 bytes (what [`generate_key_file`] writes), or a
//! text file holding 64 hex characters, or the standard base64 of 32 bytes
//! (surrounding whitespace and a trailing newline are ignored). Any other
//! content is refused with an error naming the file, never quoting it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Result, StoreError};
use crate::fsutil;

/// Length of every symmetric key credshift uses (AES-256).
pub const KEY_LEN: usize = 32;

/// PBKDF2-HMAC-SHA256 with a 32-byte output. `iterations` of 0 behaves as 1
/// (callers check bounds before deriving; see `envelope`).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out.as_mut_slice());
    out
}

/// `N` bytes from the operating system's random generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// A fresh random 32-byte key.
pub fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(key.as_mut_slice())?;
    Ok(key)
}

fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        StoreError::Other(format!(
            "the system random number generator failed ({e}); refusing to create keys or nonces"
        ))
    })
}

/// Load a key file: raw 32 bytes, 64 hex characters, or base64 of 32 bytes.
pub fn load_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| StoreError::io(path, e))?);
    parse_key(&bytes).ok_or_else(|| StoreError::Parse {
        location: path.display().to_string(),
        line: None,
        column: None,
        message: format!(
            "not a key file: expected {KEY_LEN} raw bytes, 64 hex characters or base64 of \
             {KEY_LEN} bytes (found {} bytes)",
            bytes.len()
        ),
    })
}

/// Decode key material in any of the accepted spellings.
fn parse_key(bytes: &[u8]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() == KEY_LEN {
        key.copy_from_slice(bytes);
        return Some(key);
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.len() == 2 * KEY_LEN && hex::decode_to_slice(text, key.as_mut_slice()).is_ok() {
        return Some(key);
    }
    let mut decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
    );
    if decoded.len() != KEY_LEN {
        decoded.zeroize();
        return None;
    }
    key.copy_from_slice(&decoded);
    Some(key)
}

/// Write a new key file of 32 random bytes, mode 0600, in a private
/// directory. Refuses to overwrite anything already at `path` (exclusive
/// create, so two racing calls cannot both succeed).
pub fn generate_key_file(path: &Path) -> Result<()> {
    let dir = fsutil::parent_dir(path);
    fsutil::ensure_private_dir(&dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::Other(format!(
                    "{}: already exists; refusing to overwrite a key file",
                    path.display()
                ))
            } else {
                StoreError::io(path, e)
            }
        })?;
    let key = random_key()?;
    let written = file
        .write_all(key.as_slice())
        .and_then(|()| file.sync_all())
        .and_then(|()| fsutil::fsync_dir(&dir));
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(StoreError::io(path, e));
    }
    Ok(())
}

/// Probe warnings for a key file that others could read.
pub fn key_file_warnings(path: &Path) -> Vec<String> {
    match fsutil::mode_of(path) {
        Some(mode) if mode & 0o077 != 0 => vec![format!(
            "key file {} is readable by others than its owner (mode {mode:o}); chmod 600 it",
            path.display()
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_rfc_7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64).
        let k = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            hex::encode(k.as_slice()),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        // Another well-known vector ("password", "salt", 4096, 32 bytes).
        let k = pbkdf2_sha256(b"password", b"salt", 4096);
        assert_eq!(
            hex::encode(k.as_slice()),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn random_bytes_differ() {
        let a = random_bytes::<16>().unwrap();
        let b = random_bytes::<16>().unwrap();
        assert_ne!(a, b);
        assert_ne!(*random_key().unwrap(), [0u8; 32]);
    }

    #[test]
    fn key_files_in_three_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, key).unwrap();
        assert_eq!(*load_key_file(&raw).unwrap(), key);

        let hexed = dir.path().join("hex.key");
        std::fs::write(&hexed, format!("{}\n", hex::encode(key))).unwrap();
        assert_eq!(*load_key_file(&hexed).unwrap(), key);

        let b64 = dir.path().join("b64.key");
        let text = base64::engine::general_purpose::STANDARD.encode(key);
        std::fs::write(&b64, format!("  {text}\r\n")).unwrap();
        assert_eq!(*load_key_file(&b64).unwrap(), key);
    }

    #[test]
    fn bad_key_files_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("short.key");
        std::fs::write(&p, "sk-not-a-key-but-a-secret").unwrap();
        let e = load_key_file(&p).unwrap_err().to_string();
        assert!(e.contains("short.key"), "{e}");
        assert!(!e.contains("sk-not-a-key"), "{e}");
        // 31 bytes of base64 and 63 hex chars are refused too.
        std::fs::write(
            &p,
            base64::engine::general_purpose::STANDARD.encode([1u8; 31]),
        )
        .unwrap();
        assert!(load_key_file(&p).is_err());
        std::fs::write(&p, "a".repeat(63)).unwrap();
        assert!(load_key_file(&p).is_err());
        let missing = load_key_file(&dir.path().join("none.key")).unwrap_err();
        assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
    }

    #[test]
    fn generated_key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys/credshift.key");
        generate_key_file(&p).unwrap();
        assert_eq!(fsutil::mode_of(&p), Some(0o600));
        assert_eq!(fsutil::mode_of(p.parent().unwrap()), Some(0o700));
        let first = load_key_file(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap().len(), 32);
        let e = generate_key_file(&p).unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(*load_key_file(&p).unwrap(), *first);
        assert!(key_file_warnings(&p).is_empty());
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert_eq!(key_file_warnings(&p).len(), 1);
    }
}
