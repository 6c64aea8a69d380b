//! The migration backup: every source item and every target item that may
//! be overwritten, sealed in credshift's envelope and fsynced before the
//! first target write. Its key is the passphrase in use or, without one, a
//! generated 32-byte key file (0600) beside it.

use std::path::{Path, PathBuf};

use crate::credential::{Credential, Secret};
use crate::crypto::envelope::{self, KeySource, SealingKey};
use crate::crypto::kdf;
use crate::error::StoreError;
use crate::fsutil;
use crate::unlock::KeyOptions;

pub const BACKUP_FILE: &str = "backup.enc";

/// What protects a backup.
#[derive(Clone, Debug)]
pub enum BackupKey {
    Passphrase(Secret),
    KeyFile(PathBuf),
}

/// The key file that goes with a backup file: `NAME.key` beside `NAME.enc`.
pub fn key_file_for(backup: &Path) -> PathBuf {
    backup.with_extension("key")
}

/// Where the key files of stand-alone backups (`credshift backup`) are
/// kept: apart from the backups, in credshift's private state dir.
pub fn kept_keys_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("backup-keys")
}

/// A backup file's id: a digest of its envelope's nonce, which is fresh per
/// backup and public (it is in the header), so the id names the backup
/// without revealing anything and survives a rename or a copy.
pub fn backup_id(path: &Path) -> Result<String, StoreError> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::json(path.display().to_string(), &e))?;
    let nonce = header
        .get("nonce")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            StoreError::parse(
                path.display().to_string(),
                "not a credshift backup (no nonce)",
            )
        })?;
    let digest = sha2::Sha256::digest(format!("credshift-backup-id:{nonce}").as_bytes());
    Ok(hex::encode(&digest[..12]))
}

/// The key file credshift keeps in `state_dir` for the backup at `backup`.
pub fn kept_key_for(state_dir: &Path, backup: &Path) -> Result<PathBuf, StoreError> {
    Ok(kept_keys_dir(state_dir).join(format!("{}.key", backup_id(backup)?)))
}

/// The passphrase new backups are sealed with: the one in use, when it
/// passes the rule for new passphrases (`keys::check_new_passphrase`). One
/// that does not may still open an old store, so moving off that store is
/// not refused: its backup gets a generated key file instead.
pub fn sealing_passphrase(opts: &KeyOptions) -> Option<&Secret> {
    opts.passphrase
        .as_ref()
        .filter(|p| crate::keys::check_new_passphrase(p.expose()).is_ok())
}

/// The key for a new backup at `path`: the passphrase in use (see
/// [`sealing_passphrase`]), else a newly generated key file beside it. With
/// `reuse`, a key file already there (a migration folder after a crash) is
/// used again instead of refused.
pub fn new_key(path: &Path, opts: &KeyOptions, reuse: bool) -> Result<BackupKey, StoreError> {
    if let Some(p) = sealing_passphrase(opts) {
        return Ok(BackupKey::Passphrase(p.clone()));
    }
    let key_path = key_file_for(path);
    if !(reuse && key_path.exists()) {
        kdf::generate_key_file(&key_path)?;
    }
    Ok(BackupKey::KeyFile(key_path))
}

fn key_source(key: &BackupKey) -> Result<KeySource, StoreError> {
    Ok(match key {
        BackupKey::Passphrase(p) => KeySource::Passphrase(p.clone()),
        BackupKey::KeyFile(path) => KeySource::Key(kdf::load_key_file(path)?),
    })
}

/// Derive the sealing key once (one PBKDF2 run for a passphrase) for
/// several files.
pub fn sealing_key(key: &BackupKey, opts: &KeyOptions) -> Result<SealingKey, StoreError> {
    SealingKey::new(&key_source(key)?, opts.kdf_iterations)
}

/// Seal `creds` under an already derived key and write them atomically
/// (temp file, fsync, rename, dir fsync).
pub fn write_sealed(path: &Path, creds: &[Credential], key: &SealingKey) -> Result<(), StoreError> {
    write_sealed_refs(path, creds.iter(), key)
}

/// [`write_sealed`] of credentials held elsewhere (a plan's map): no
/// clones, sealed in place and written as encoded.
pub fn write_sealed_refs<'a>(
    path: &Path,
    creds: impl Iterator<Item = &'a Credential> + Clone,
    key: &SealingKey,
) -> Result<(), StoreError> {
    let sealed = key.seal_for_writing(envelope::encode_credential_refs(creds)?)?;
    fsutil::atomic_write_with(path, |f| sealed.write_to(f).map(|_| ()))
}

/// The key to open an existing backup, chosen by its header: a
/// passphrase-sealed backup needs the passphrase; a key-file backup uses the
/// key file beside it, else `--key-file`.
pub fn existing_key(path: &Path, opts: &KeyOptions) -> Result<BackupKey, StoreError> {
    existing_key_in(path, None, opts)
}

/// [`existing_key`], also looking for a key file credshift kept for this
/// backup in `state_dir` (by [`backup_id`]) when there is none beside it.
pub fn existing_key_in(
    path: &Path,
    state_dir: Option<&Path>,
    opts: &KeyOptions,
) -> Result<BackupKey, StoreError> {
    let location = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let env = envelope::Envelope::parse(&bytes, &location, opts.allow_weak_kdf)?;
    match env.params() {
        envelope::KdfParams::Pbkdf2 { .. } => match &opts.passphrase {
            Some(p) => Ok(BackupKey::Passphrase(p.clone())),
            None => Err(StoreError::MissingKey {
                location,
                message: "this backup is sealed with a passphrase: give it with \
                          --passphrase-file, --passphrase-env or CREDSHIFT_PASSPHRASE"
                    .into(),
            }),
        },
        envelope::KdfParams::None => {
            let beside = key_file_for(path);
            let kept = match state_dir {
                Some(dir) => Some(kept_key_for(dir, path)?),
                None => None,
            };
            // A backup named `X.key` is its own "beside" path, never its key.
            if beside.exists() && beside != path {
                Ok(BackupKey::KeyFile(beside))
            } else if let Some(k) = kept.filter(|k| k.exists()) {
                Ok(BackupKey::KeyFile(k))
            } else if let Some(k) = &opts.key_file {
                Ok(BackupKey::KeyFile(k.clone()))
            } else {
                Err(StoreError::MissingKey {
                    location,
                    message: format!(
                        "this backup is sealed with a key file and there is none at {}{}; \
                         give it with --key-file",
                        beside.display(),
                        state_dir
                            .map(|d| format!(" or in {}", kept_keys_dir(d).display()))
                            .unwrap_or_default()
                    ),
                })
            }
        }
    }
}

/// Seal `creds` and write them atomically (temp file, fsync, rename, dir fsync).
pub fn write(
    path: &Path,
    creds: &[Credential],
    key: &BackupKey,
    opts: &KeyOptions,
) -> Result<(), StoreError> {
    write_sealed(path, creds, &sealing_key(key, opts)?)
}

pub fn read(
    path: &Path,
    key: &BackupKey,
    opts: &KeyOptions,
) -> Result<Vec<Credential>, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    envelope::open_credentials(
        &bytes,
        &key_source(key)?,
        &path.display().to_string(),
        opts.allow_weak_kdf,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{CredentialId, Kind};

    fn creds() -> Vec<Credential> {
        let mut m = crate::credential::Metadata::new();
        m.insert("expires_at".into(), 1790003600000i64.into());
        vec![
            Credential::new(
                CredentialId::new("a", "b"),
                Kind::ApiKey,
                "sk-first-secret-value",
            ),
            Credential::new(CredentialId::new("c", "d"), Kind::OauthAccess, "tok-second")
                .with_metadata(m),
        ]
    }

    #[test]
    fn key_file_backup_round_trips_and_hides_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BACKUP_FILE);
        let opts = KeyOptions::default();
        let key = new_key(&path, &opts, false).unwrap();
        write(&path, &creds(), &key, &opts).unwrap();
        assert_eq!(fsutil::mode_of(&path), Some(0o600));
        assert_eq!(fsutil::mode_of(&key_file_for(&path)), Some(0o600));
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(!raw.contains("first-secret"));
        let back = read(&path, &existing_key(&path, &opts).unwrap(), &opts).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back[0].same_as(&creds()[0]));
        assert!(back[1].same_as(&creds()[1]));
    }

    #[test]
    fn passphrase_backup_needs_the_right_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BACKUP_FILE);
        let opts = KeyOptions {
            passphrase: Some(Secret::new("correct horse")),
            kdf_iterations: 1000,
            allow_weak_kdf: true,
            ..KeyOptions::default()
        };
        let key = new_key(&path, &opts, false).unwrap();
        write(&path, &creds(), &key, &opts).unwrap();
        assert!(!key_file_for(&path).exists());
        assert_eq!(read(&path, &key, &opts).unwrap().len(), 2);
        let wrong = BackupKey::Passphrase(Secret::new("wrong"));
        let e = read(&path, &wrong, &opts).unwrap_err().to_string();
        assert!(e.contains("cannot decrypt"), "{e}");
        let strict = KeyOptions::default();
        assert!(
            read(&path, &key, &strict).is_err(),
            "1000 iterations refused"
        );
    }

    /// Issue 23: no backup is sealed under a passphrase that fails the rule
    /// for new passphrases; a generated key file seals it instead, so a
    /// store under an old weak passphrase can still be moved off.
    #[test]
    fn a_weak_passphrase_never_seals_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BACKUP_FILE);
        let opts = KeyOptions {
            passphrase: Some(Secret::new("pw")),
            kdf_iterations: 1000,
            allow_weak_kdf: true,
            ..KeyOptions::default()
        };
        let key = new_key(&path, &opts, false).unwrap();
        assert!(matches!(key, BackupKey::KeyFile(_)), "{key:?}");
        write(&path, &creds(), &key, &opts).unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(header["kdf"]["alg"], "none");
        assert_eq!(
            read(&path, &existing_key(&path, &opts).unwrap(), &opts)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn existing_key_follows_the_header_not_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BACKUP_FILE);
        let plain = KeyOptions::default();
        let key = new_key(&path, &plain, false).unwrap();
        write(&path, &creds(), &key, &plain).unwrap();
        // A --key-file meant for an encrypted store does not shadow the
        // backup's own key file.
        let other = dir.path().join("other.key");
        crate::crypto::kdf::generate_key_file(&other).unwrap();
        let opts = KeyOptions {
            key_file: Some(other),
            ..KeyOptions::default()
        };
        let k = existing_key(&path, &opts).unwrap();
        assert_eq!(read(&path, &k, &opts).unwrap().len(), 2);
        std::fs::remove_file(key_file_for(&path)).unwrap();
        let e = existing_key(&path, &plain).unwrap_err().to_string();
        assert!(e.contains("backup.key"), "{e}");
    }
}
