//! The rekey's backup: every old ciphertext as it was stored, sealed in a
//! credshift envelope under a key file of its own in the migration folder
//! (0600), so rollback needs no key from the user. The key file opens the
//! old ciphertexts, and those open under the old key: anyone who holds the
//! old key (the usual reason to rekey is that it leaked) and can read the
//! state dir reads every value as it was. Keep the folder until the
//! application runs on the new key, then delete it (the report says where).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::envelope::{Envelope, KdfParams, KeySource, SealingKey};
use crate::crypto::kdf;
use crate::engine::rekey::journal::{REKEY_BACKUP_FILE, REKEY_BACKUP_KEY};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::rekey::{Cell, CellRef};

#[derive(Serialize, Deserialize)]
struct Saved {
    at: CellRef,
    value: String,
}

/// Seal `cells` into `DIR/rekey-backup.enc` (fsynced) and return its path.
pub fn write(dir: &Path, cells: &[Cell]) -> Result<PathBuf> {
    let key_path = dir.join(REKEY_BACKUP_KEY);
    // Only called while no backup is journaled: a key file already here
    // is from a run stopped before that record (a kill, a full disk). Its
    // backup, if any, was never recorded, so the key is reused, or made
    // again when the stop tore it; else resume would refuse it forever.
    if key_path.exists() && kdf::load_key_file(&key_path).is_err() {
        std::fs::remove_file(&key_path).map_err(|e| StoreError::io(&key_path, e))?;
    }
    if !key_path.exists() {
        kdf::generate_key_file(&key_path)?;
    }
    let key = SealingKey::new(&KeySource::Key(kdf::load_key_file(&key_path)?), 0)?;
    let saved: Vec<Saved> = cells
        .iter()
        .map(|c| Saved {
            at: c.at.clone(),
            value: c.value.clone(),
        })
        .collect();
    let plain = Zeroizing::new(
        serde_json::to_vec(&saved).map_err(|e| StoreError::Other(format!("backup: {e}")))?,
    );
    let path = dir.join(REKEY_BACKUP_FILE);
    fsutil::atomic_write(&path, &key.seal_owned(plain)?)?;
    Ok(path)
}

/// The old ciphertexts a backup holds, by cell.
pub fn read(dir: &Path, path: &Path) -> Result<BTreeMap<CellRef, String>> {
    let key = KeySource::Key(kdf::load_key_file(&dir.join(REKEY_BACKUP_KEY))?);
    let location = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let env = Envelope::parse(&bytes, &location, false)?;
    let key = SealingKey::derive(&KdfParams::None, &key, &location)?;
    let plain = key.open(&env)?;
    let saved: Vec<Saved> = serde_json::from_slice(&plain)
        .map_err(|_| StoreError::parse(location, "not a rekey backup"))?;
    Ok(saved.into_iter().map(|s| (s.at, s.value)).collect())
}
