//! `--generate-new-key PATH`: a fresh key in the store's own format,
//! written 0600 with an exclusive create (an existing file is never
//! overwritten).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

/// Write a fresh key for `format` at `path` (0600, never over a file).
pub fn generate(format: RekeyFormat, path: &Path) -> Result<()> {
    let Some(text) = fresh_key_text(format)? else {
        return kdf::generate_key_file(path);
    };
    let dir = fsutil::parent_dir(path);
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
