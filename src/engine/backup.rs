//! The migration backup: every source item and every target item that may
//! be overwritten, sealed in credshift's envelope and fsynced before the
//! first target write. Its key is the passphrase in use or, without one, a
//! generated 32-byte key file (0600) beside it.

use std::path::{Path, PathBuf};

use crate::credential::{Credential, Secret};
use crate::error::StoreError;
use crate::fsutil;
use crate::store::OpenOptions;

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

/// The key for a new backup at `path`: the passphrase in use, else a newly
/// generated key file beside it.
pub fn new_key(path: &Path, opts: &OpenOptions) -> Result<BackupKey, StoreError> {
    if let Some(p) = &opts.passphrase {
        return Ok(BackupKey::Passphrase(p.clone()));
    }
    let key_path = key_file_for(path);
    envelope::generate_key_file(&key_path)?;
    Ok(BackupKey::KeyFile(key_path))
}

/// The key to open an existing backup: the passphrase, else `--key-file`,
/// else the key file beside it.
pub fn existing_key(path: &Path, opts: &OpenOptions) -> Result<BackupKey, StoreError> {
    if let Some(p) = &opts.passphrase {
        return Ok(BackupKey::Passphrase(p.clone()));
    }
    if let Some(k) = &opts.key_file {
        return Ok(BackupKey::KeyFile(k.clone()));
    }
    let beside = key_file_for(path);
    if beside.exists() {
        return Ok(BackupKey::KeyFile(beside));
    }
    Err(StoreError::MissingKey {
        location: path.display().to_string(),
        message: format!(
            "no passphrase given and no key file at {}; use --passphrase-file, --passphrase-env, \
             CREDSHIFT_PASSPHRASE or --key-file",
            beside.display()
        ),
    })
}

/// Seal `creds` and write them atomically (temp file, fsync, rename, dir fsync).
pub fn write(
    path: &Path,
    creds: &[Credential],
    key: &BackupKey,
    opts: &OpenOptions,
) -> Result<(), StoreError> {
    let bytes = envelope::seal(creds, key, opts.kdf_iterations)?;
    fsutil::atomic_write(path, &bytes)
}

pub fn read(
    path: &Path,
    key: &BackupKey,
    opts: &OpenOptions,
) -> Result<Vec<Credential>, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    envelope::open(
        &bytes,
        key,
        &path.display().to_string(),
        opts.allow_weak_kdf,
    )
}

/// Interim envelope (DESIGN.md "Formats") until `crypto::envelope` lands.
mod envelope {
    use std::path::Path;

    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize, Serialize};
    use zeroize::Zeroizing;

    use super::BackupKey;
    use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
    use crate::error::StoreError;
    use crate::fsutil;

    const MAX_ITER: u32 = 10_000_000;
    const MIN_ITER: u32 = 100_000;

    #[derive(Serialize, Deserialize)]
    struct Kdf {
        alg: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iterations: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        salt: Option<String>,
    }

    #[derive(Serialize, Deserialize)]
    struct Header {
        format: String,
        version: u32,
        kdf: Kdf,
        cipher: String,
        nonce: String,
    }

    #[derive(Serialize, Deserialize)]
    struct Envelope {
        #[serde(flatten)]
        header: Header,
        ciphertext: String,
    }

    #[derive(Serialize)]
    struct ItemOut<'a> {
        id: &'a CredentialId,
        kind: Kind,
        secret: &'a str,
        metadata: &'a Metadata,
    }

    #[derive(Deserialize)]
    struct ItemIn {
        id: CredentialId,
        kind: Kind,
        secret: String,
        #[serde(default)]
        metadata: Metadata,
    }

    fn random<const N: usize>() -> Result<[u8; N], StoreError> {
        let mut b = [0u8; N];
        getrandom::fill(&mut b)
            .map_err(|e| StoreError::Other(format!("no randomness available: {e}")))?;
        Ok(b)
    }

    pub fn generate_key_file(path: &Path) -> Result<(), StoreError> {
        let k = Zeroizing::new(random::<32>()?);
        fsutil::atomic_write(path, &k[..])
    }

    fn key_bytes(
        key: &BackupKey,
        kdf: &Kdf,
        location: &str,
    ) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        let mut out = Zeroizing::new([0u8; 32]);
        match key {
            BackupKey::Passphrase(p) => {
                let salt = kdf
                    .salt
                    .as_deref()
                    .and_then(|s| B64.decode(s).ok())
                    .ok_or_else(|| StoreError::parse(location, "envelope has no valid salt"))?;
                let iter = kdf.iterations.unwrap_or(0);
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                    p.expose().as_bytes(),
                    &salt,
                    iter,
                    &mut out[..],
                );
            }
            BackupKey::KeyFile(path) => {
                let bytes =
                    Zeroizing::new(std::fs::read(path).map_err(|e| StoreError::io(path, e))?);
                if bytes.len() != 32 {
                    return Err(StoreError::MissingKey {
                        location: path.display().to_string(),
                        message: "a key file must hold exactly 32 bytes".into(),
                    });
                }
                out.copy_from_slice(&bytes);
            }
        }
        Ok(out)
    }

    pub fn seal(
        creds: &[Credential],
        key: &BackupKey,
        iterations: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let items: Vec<ItemOut<'_>> = creds
            .iter()
            .map(|c| ItemOut {
                id: &c.id,
                kind: c.kind,
                secret: c.secret.expose(),
                metadata: &c.metadata,
            })
            .collect();
        let mut plain = Zeroizing::new(Vec::new());
        serde_json::to_writer(&mut *plain, &items)
            .map_err(|_| StoreError::Other("could not serialize the backup".into()))?;
        let kdf = match key {
            BackupKey::Passphrase(_) => Kdf {
                alg: "pbkdf2-hmac-sha256".into(),
                iterations: Some(iterations),
                salt: Some(B64.encode(random::<16>()?)),
            },
            BackupKey::KeyFile(_) => Kdf {
                alg: "key-file".into(),
                iterations: None,
                salt: None,
            },
        };
        let k = key_bytes(key, &kdf, "backup")?;
        let header = Header {
            format: "credshift-envelope".into(),
            version: 1,
            kdf,
            cipher: "aes-256-gcm".into(),
            nonce: B64.encode(random::<12>()?),
        };
        let aad = serde_json::to_vec(&header)
            .map_err(|_| StoreError::Other("could not serialize the header".into()))?;
        let nonce_bytes = B64.decode(&header.nonce).unwrap_or_default();
        let nonce = Nonce::try_from(&nonce_bytes[..])
            .map_err(|_| StoreError::Other("bad nonce length".into()))?;
        let cipher = Aes256Gcm::new_from_slice(&k[..])
            .map_err(|_| StoreError::Other("bad key length".into()))?;
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Other("encryption failed".into()))?;
        let env = Envelope {
            header,
            ciphertext: B64.encode(ct),
        };
        serde_json::to_vec_pretty(&env)
            .map_err(|_| StoreError::Other("could not serialize the envelope".into()))
    }

    pub fn open(
        bytes: &[u8],
        key: &BackupKey,
        location: &str,
        allow_weak: bool,
    ) -> Result<Vec<Credential>, StoreError> {
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| StoreError::json(location, &e))?;
        if env.header.format != "credshift-envelope" || env.header.version != 1 {
            return Err(StoreError::parse(location, "not a credshift envelope v1"));
        }
        if let BackupKey::Passphrase(_) = key {
            let it = env.header.kdf.iterations.unwrap_or(0);
            if it > MAX_ITER || (it < MIN_ITER && !allow_weak) {
                return Err(StoreError::Crypto {
                    location: location.into(),
                    message: format!("refusing an envelope with {it} PBKDF2 iterations"),
                });
            }
        }
        let k = key_bytes(key, &env.header.kdf, location)?;
        let aad = serde_json::to_vec(&env.header)
            .map_err(|_| StoreError::Other("could not serialize the header".into()))?;
        let nonce_bytes = B64
            .decode(&env.header.nonce)
            .map_err(|_| StoreError::parse(location, "nonce is not base64"))?;
        let nonce = Nonce::try_from(&nonce_bytes[..])
            .map_err(|_| StoreError::parse(location, "nonce must be 12 bytes"))?;
        let ct = B64
            .decode(&env.ciphertext)
            .map_err(|_| StoreError::parse(location, "ciphertext is not base64"))?;
        let cipher = Aes256Gcm::new_from_slice(&k[..])
            .map_err(|_| StoreError::Other("bad key length".into()))?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &ct,
                        aad: &aad,
                    },
                )
                .map_err(|_| StoreError::Crypto {
                    location: location.into(),
                    message: "wrong passphrase or key, or the file was changed".into(),
                })?,
        );
        let items: Vec<ItemIn> =
            serde_json::from_slice(&plain).map_err(|e| StoreError::json(location, &e))?;
        Ok(items
            .into_iter()
            .map(|i| Credential::new(i.id, i.kind, Secret::new(i.secret)).with_metadata(i.metadata))
            .collect())
    }
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
        let opts = OpenOptions::default();
        let key = new_key(&path, &opts).unwrap();
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
        let opts = OpenOptions {
            passphrase: Some(Secret::new("correct horse")),
            kdf_iterations: 1000,
            allow_weak_kdf: true,
            ..OpenOptions::default()
        };
        let key = new_key(&path, &opts).unwrap();
        write(&path, &creds(), &key, &opts).unwrap();
        assert!(!key_file_for(&path).exists());
        assert_eq!(read(&path, &key, &opts).unwrap().len(), 2);
        let wrong = BackupKey::Passphrase(Secret::new("wrong"));
        let e = read(&path, &wrong, &opts).unwrap_err().to_string();
        assert!(e.contains("wrong passphrase"), "{e}");
        let strict = OpenOptions::default();
        assert!(
            read(&path, &key, &strict).is_err(),
            "1000 iterations refused"
        );
    }
}
