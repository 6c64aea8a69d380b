//! `--generate-new-key PATH`: a fresh key in the store's own format,
//! written 0600 with an exclusive create (an existing file is never
//! overwritten).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::crypto::kdf;
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::rekey::RekeyFormat;

/// The text of a fresh key for `format`: agent-prompttrain's 44-character
/// key (base64 of 32 random bytes; it asks for 32 characters or more), a
/// Laravel `base64:` key as `php artisan key:generate` writes it, or `None`
/// for credshift's stores (a 32-byte binary key file).
pub fn fresh_key_text(format: RekeyFormat) -> Result<Option<Zeroizing<String>>> {
    let key = kdf::random_key()?;
    Ok(match format {
        RekeyFormat::PromptTrain => Some(Zeroizing::new(STANDARD.encode(key.as_slice()))),
        RekeyFormat::Laravel => Some(Zeroizing::new(format!(
            "base64:{}",
            STANDARD.encode(key.as_slice())
        ))),
        RekeyFormat::CredshiftSqlite | RekeyFormat::CredshiftPostgres | RekeyFormat::Envelope => {
            None
        }
    })
}

fn exists_error(path: &Path) -> StoreError {
    StoreError::Other(format!(
        "{}: already exists; refusing to overwrite a key file",
        path.display()
    ))
}

/// `--generate-new-key PATH`: a fresh key made in memory, written at PATH
/// only by [`PendingKey::commit`], once the rekey holds the lock and has
/// checked the old key (`rekey::run`): a refused run leaves no key file.
pub struct PendingKey {
    path: PathBuf,
    text: Option<Zeroizing<String>>,
    /// credshift's stores read the new key from a file: it waits under a
    /// hidden name beside PATH (so it can be linked into place), removed
    /// on drop.
    temp: Option<PathBuf>,
}

impl std::fmt::Debug for PendingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingKey({})", self.path.display())
    }
}

impl PendingKey {
    /// A fresh key for `format`, to be written at `path`, and the new key
    /// the rekey uses meanwhile.
    pub fn new(format: RekeyFormat, path: &Path) -> Result<(PendingKey, super::NewKey)> {
        if path.symlink_metadata().is_ok() {
            return Err(exists_error(path));
        }
        let mut key = PendingKey {
            path: path.to_path_buf(),
            text: None,
            temp: None,
        };
        if let Some(text) = fresh_key_text(format)? {
            let new = super::NewKey::Text(crate::credential::Secret::new(text.as_str()));
            key.text = Some(text);
            return Ok((key, new));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = fsutil::parent_dir(path).join(format!(".{name}.credshift-pending"));
        // Only ever ours, and never needed after its run (a killed one).
        if temp.symlink_metadata().is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(&temp);
        }
        kdf::generate_key_file(&temp)?;
        key.temp = Some(temp.clone());
        Ok((key, super::NewKey::KeyFile(temp)))
    }

    /// Where the key goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write the key at its path (0600, never over a file, fsynced).
    pub fn commit(&self) -> Result<()> {
        if let Some(text) = &self.text {
            return write_text(&self.path, text);
        }
        let Some(temp) = &self.temp else {
            return Ok(());
        };
        // A link fails on an existing file, where a rename would replace it.
        std::fs::hard_link(temp, &self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                exists_error(&self.path)
            } else {
                StoreError::io(&self.path, e)
            }
        })?;
        let _ = std::fs::remove_file(temp);
        fsutil::fsync_dir(&fsutil::parent_dir(&self.path))
            .map_err(|e| StoreError::io(&self.path, e))
    }
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Write a fresh key for `format` at `path` (0600, never over a file).
pub fn generate(format: RekeyFormat, path: &Path) -> Result<()> {
    let Some(text) = fresh_key_text(format)? else {
        return kdf::generate_key_file(path);
    };
    write_text(path, &text)
}

/// Key text at `path`, with a newline (0600, never over a file).
fn write_text(path: &Path, text: &str) -> Result<()> {
    let dir = fsutil::parent_dir(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                exists_error(path)
            } else {
                StoreError::io(path, e)
            }
        })?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .and_then(|()| fsutil::fsync_dir(&dir));
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(StoreError::io(path, e));
    }
    Ok(())
}

/// Whether the new key of `format` is text (agent-prompttrain's or
/// Laravel's key) rather than a credshift passphrase or key file: such a
/// key comes from a file, never typed.
pub fn takes_key_text(format: RekeyFormat) -> bool {
    match format {
        RekeyFormat::PromptTrain | RekeyFormat::Laravel => true,
        RekeyFormat::CredshiftSqlite | RekeyFormat::CredshiftPostgres | RekeyFormat::Envelope => {
            false
        }
    }
}

/// A key for a dry run before the new key is chosen, kept in memory only:
/// the plan counts what is under the old key(s).
pub fn throwaway_key(format: RekeyFormat) -> Result<super::NewKey> {
    Ok(match fresh_key_text(format)? {
        Some(t) => super::NewKey::Text(crate::credential::Secret::new(t.as_str())),
        None => super::NewKey::Passphrase(crate::credential::Secret::new(hex::encode(
            kdf::random_key()?.as_slice(),
        ))),
    })
}

/// The new key held in the file at `path`: key text for agent-prompttrain
/// and Laravel, a 32-byte credshift key file otherwise. Refuses a file
/// others can read (`what` names it in the message).
pub fn key_from_file(format: RekeyFormat, path: &Path, what: &str) -> Result<super::NewKey> {
    crate::keys::require_private_file(path, what).map_err(StoreError::Other)?;
    if takes_key_text(format) {
        Ok(super::NewKey::Text(crate::keys::secret_from_file(path)?))
    } else {
        kdf::load_key_file(path)?;
        Ok(super::NewKey::KeyFile(path.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Secret;

    #[test]
    fn generated_keys_are_in_each_format_private_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let pt = dir.path().join("pt.key");
        generate(RekeyFormat::PromptTrain, &pt).unwrap();
        let text = crate::keys::secret_from_file(&pt).unwrap();
        assert!(crate::crypto::prompttrain::MasterKey::new(&text).is_ok());
        assert_eq!(fsutil::mode_of(&pt), Some(0o600));
        let lv = dir.path().join("app.key");
        generate(RekeyFormat::Laravel, &lv).unwrap();
        let text = crate::keys::secret_from_file(&lv).unwrap();
        assert!(text.expose().starts_with("base64:"));
        assert!(crate::crypto::laravel::AppKey::parse(&text).is_ok());
        let own = dir.path().join("own.key");
        generate(RekeyFormat::Envelope, &own).unwrap();
        assert_eq!(std::fs::read(&own).unwrap().len(), 32);
        // Two keys are never the same, and an existing file is kept.
        let before = std::fs::read(&pt).unwrap();
        assert!(generate(RekeyFormat::PromptTrain, &pt).is_err());
        assert_eq!(std::fs::read(&pt).unwrap(), before);
        let other = dir.path().join("pt2.key");
        generate(RekeyFormat::PromptTrain, &other).unwrap();
        assert_ne!(
            crate::keys::secret_from_file(&other).unwrap().expose(),
            Secret::new(String::from_utf8(before).unwrap().trim()).expose()
        );
    }
}
