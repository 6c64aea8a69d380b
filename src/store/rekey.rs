//! Raw access to a store's encrypted cells, for rekeying in place
//! (`credshift rekey`): the ciphertexts exactly as stored, and a
//! compare-and-swap that replaces one only while it still holds the
//! ciphertext it was read with. Nothing here decrypts: the engine's rekey
//! does, with the store's format ([`RekeyFormat`] says which).
//!
//! - SQL stores ([`sql`]): one cell per encrypted column of a row; a swap
//!   batch is one transaction of `UPDATE ... WHERE key = ? AND value = old`,
//!   so a row the application changed meanwhile is left alone.
//! - Whole-file stores ([`file`]): the file is one cell; a swap is an
//!   atomic rewrite, done only while the file still holds the old bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::store::{KeyOptions, StoreSpec};

pub mod file;
pub mod sql;

/// Where a cell lives: table (or file), row key, column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellRef {
    pub table: String,
    pub row: String,
    pub column: String,
}

impl fmt::Display for CellRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.table, self.row, self.column)
    }
}

/// A cell and its ciphertext as stored (text; binary columns as hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub at: CellRef,
    pub value: String,
}

/// Replace `old` with `new` at `at`, only if `old` is still there.
#[derive(Debug, Clone)]
pub struct Swap {
    pub at: CellRef,
    pub old: String,
    pub new: String,
}

/// What one swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapOutcome {
    /// It held `old` and now holds `new`.
    Swapped,
    /// It holds something else (the application changed it): kept.
    Changed,
    /// The row or file is gone.
    Missing,
}

/// How the values of a store are encrypted: what the engine decrypts and
/// encrypts cells with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RekeyFormat {
    /// agent-prompttrain's values under `CREDENTIAL_ENCRYPTION_KEY`.
    PromptTrain,
    /// Laravel Crypt under `APP_KEY` (and `APP_PREVIOUS_KEYS`).
    Laravel,
    /// credshift's own table (`sqlite:`): values sealed with their id as
    /// associated data, plus the meta row (KDF and key check).
    CredshiftSqlite,
    /// The same in PostgreSQL (`postgres://`), with its own meta spelling.
    CredshiftPostgres,
    /// A credshift envelope file (`encrypted:`, `bundle:`).
    Envelope,
}

/// The table of a credshift SQL store's meta cell, and its row and column.
pub const META_CELL: (&str, &str, &str) = ("credshift_meta", "1", "kdf_and_check");

/// Raw cells of one store. Implementations never put a value in an error.
pub trait RawCells: Send {
    /// The store, for messages (no password).
    fn location(&self) -> String;
    /// Every encrypted cell, in a stable order.
    fn cells(&mut self) -> Result<Vec<Cell>>;
    /// The cells at `at` as they are now (`None`: gone).
    fn read(&mut self, at: &[CellRef]) -> Result<Vec<Option<String>>>;
    /// Compare-and-swap each, all in one transaction (or one rewrite).
    fn swap(&mut self, swaps: &[Swap]) -> Result<Vec<SwapOutcome>>;
}

/// Whether `spec` can be rekeyed in place, and in which format.
pub fn format_of(spec: &StoreSpec) -> Option<RekeyFormat> {
    match spec {
        StoreSpec::PromptTrainDb(_) => Some(RekeyFormat::PromptTrain),
        StoreSpec::LaravelSqlite(_) | StoreSpec::LaravelPostgres(_) => Some(RekeyFormat::Laravel),
        StoreSpec::Sqlite(_) => Some(RekeyFormat::CredshiftSqlite),
        StoreSpec::Postgres(_) => Some(RekeyFormat::CredshiftPostgres),
        StoreSpec::Encrypted(_) | StoreSpec::Bundle(_) => Some(RekeyFormat::Envelope),
        StoreSpec::PromptTrain(_)
        | StoreSpec::ModelForge(_)
        | StoreSpec::Dotenv(_)
        | StoreSpec::Env(_)
        | StoreSpec::Keyring(_)
        | StoreSpec::Vault(_) => None,
    }
}

/// Open the raw cells of `spec` (see [`format_of`] for which specs).
pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn RawCells>> {
    match spec {
        StoreSpec::PromptTrainDb(_) => Ok(Box::new(sql::SqlCells::prompttrain(spec, opts)?)),
        StoreSpec::LaravelSqlite(_) | StoreSpec::LaravelPostgres(_) => {
            crate::store::laravel::rekey_cells(spec, opts)
        }
        StoreSpec::Sqlite(_) | StoreSpec::Postgres(_) => {
            Ok(Box::new(sql::SqlCells::credshift(spec, opts)?))
        }
        StoreSpec::Encrypted(p) | StoreSpec::Bundle(p) => {
            Ok(Box::new(file::FileCells::new(p.clone())))
        }
        other => Err(StoreError::Other(format!(
            "{other}: this store cannot be rekeyed in place (its values are not encrypted by \
             a key credshift can rotate)"
        ))),
    }
}
