//! The store abstraction shared by every backend, and the one place that
//! turns a spec string (`prompttrain:DIR`, `dotenv:PATH`, ...) into a store.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::credential::{Credential, CredentialId, Kind, Metadata};
use crate::error::{Result, StoreError};
use crate::unlock::KeyOptions;
pub use compare::{Replace, ReplaceIf, replace_if_unchanged_by_reading};
pub use identity::{IdentityKind, StoreIdentity};

pub mod bundle;
mod compare;
pub mod dotenv;
pub mod encrypted;
pub mod env;
pub mod faults;
pub mod identity;
pub mod keyring;
pub mod laravel;
pub mod legacy_meta;
pub mod lockfile;
pub mod memory;
pub mod modelforge;
pub mod pg;
pub mod pgurl;
pub mod postgres;
pub mod profile;
pub mod prompttrain;
pub mod prompttrain_db;
pub mod rekey;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod test_support;
pub mod vault;
pub mod wrapper;

/// A credential as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub id: CredentialId,
    pub kind: Kind,
    pub metadata: Metadata,
}

impl From<&Credential> for Entry {
    fn from(c: &Credential) -> Self {
        Entry {
            id: c.id.clone(),
            kind: c.kind,
            metadata: crate::scrub::public(&c.metadata),
        }
    }
}

/// Whether a [`LocationError`] lost something (an item was not read) or
/// only warns (everything was read; something about it deserves a look).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A file, row or item that could not be read, or a warning about one.
/// Never holds content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationError {
    /// File path, `file:line`, table row, ...
    pub location: String,
    pub error: String,
    /// `error`: something was not read; `warning`: only a note.
    pub severity: Severity,
}

impl LocationError {
    pub fn from_error(location: impl Into<String>, e: &StoreError) -> Self {
        LocationError {
            severity: Severity::Error,
            location: location.into(),
            error: e.to_string(),
        }
    }
}

/// What `list` found: the good entries, and the places that were bad.
/// One broken file never hides the good ones.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub errors: Vec<LocationError>,
}

/// What `read_all` found: every readable credential, and the bad places.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub credentials: Vec<Credential>,
    pub errors: Vec<LocationError>,
}

impl From<Scan> for Listing {
    fn from(scan: Scan) -> Self {
        Listing {
            entries: scan.credentials.iter().map(Entry::from).collect(),
            errors: scan.errors,
        }
    }
}

/// The capability probe's answer. No secrets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Capability {
    pub available: bool,
    /// Why not available (or why degraded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub readable: bool,
    pub writable: bool,
    /// False for session-only stores (Linux keyutils) and `env:`.
    pub persistent: bool,
    /// True when values are encrypted at rest (keyring, encrypted file, db stores).
    pub encrypted_at_rest: bool,
    /// Largest secret the store accepts, in bytes, when it has a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_secret_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Whether the location exists yet (a target may be created on first write).
    pub exists: bool,
    /// Whether arbitrary metadata survives a write + read. When false, the
    /// engine compares values only and the plan warns that metadata is dropped.
    pub keeps_metadata: bool,
    /// Set when values cannot be read or written until credshift's
    /// passphrase or key file is given: what the store says about it. Not repeated in
    /// `warnings`, so a caller about to ask for the key can leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_key: Option<String>,
    pub warnings: Vec<String>,
}

impl Capability {
    /// Everything worth telling about the store: the needs-a-key note,
    /// then the warnings.
    pub fn notes(&self) -> impl Iterator<Item = &String> {
        self.needs_key.iter().chain(&self.warnings)
    }

    /// A reachable, readable, persistent store: the starting point of every
    /// probe that found its store, before writability, existence and counts.
    pub fn persistent_store(encrypted_at_rest: bool, keeps_metadata: bool) -> Self {
        Capability {
            available: true,
            readable: true,
            persistent: true,
            encrypted_at_rest,
            keeps_metadata,
            ..Default::default()
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Capability {
            available: false,
            reason: Some(reason.into()),
            ..Default::default()
        }
    }
}

/// How a store's batch costs grow, so the engine can size its batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchHint {
    /// Each item costs about the same whatever the batch (a row, a keyring
    /// entry, a file per account): batches stop growing at a fixed cap.
    PerItem,
    /// Every batch rewrites one whole file, so a batch costs as much as the
    /// file is long: batches keep growing with the file (under a time
    /// budget), which keeps a migration linear in the number of items.
    WholeFile,
}

/// Every backend implements this. Implementations must be safe to call from
/// a worker thread and must never put a secret into an error.
/// Who is about to write into a store: the migration's id and its source
/// spec, redacted (no password). Never a secret. For stores that keep
/// provenance next to what they hold (Vault's `custom_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub migration_id: String,
    pub source: String,
}

pub trait Store: Send + Sync {
    /// The spec this store was opened from (its `Display` hides passwords).
    fn spec(&self) -> &StoreSpec;

    /// Capabilities and warnings; never fails, reports problems instead.
    fn probe(&self) -> Capability;

    /// Ids, kinds and metadata. A missing file/dir/db is `Err(NotFound)`;
    /// a bad file among good ones goes into `Listing::errors`.
    fn list(&self) -> Result<Listing>;

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>>;

    /// Insert or replace. Creates the file/table/collection when missing.
    fn write(&self, c: &Credential) -> Result<()>;

    /// Remove; `Ok(false)` when there was nothing to remove.
    fn delete(&self, id: &CredentialId) -> Result<bool>;

    /// Pre-flight for the dry run: why this store could not hold `c` (an id
    /// it has no place for, a value too long), without writing anything.
    fn check(&self, c: &Credential) -> Option<String> {
        let _ = c;
        None
    }

    /// Every credential with its secret. Stores that can do better than
    /// list + read per item (one file parse, one query) override this.
    fn read_all(&self) -> Result<Scan> {
        let listing = self.list()?;
        let mut scan = Scan {
            credentials: Vec::with_capacity(listing.entries.len()),
            errors: listing.errors,
        };
        for e in listing.entries {
            match self.read(&e.id) {
                Ok(Some(c)) => scan.credentials.push(c),
                Ok(None) => scan.errors.push(LocationError {
                    severity: Severity::Error,
                    location: e.id.to_string(),
                    error: "listed but could not be read back".into(),
                }),
                Err(err) if err.is_unavailable() => return Err(err),
                Err(err) => scan
                    .errors
                    .push(LocationError::from_error(e.id.to_string(), &err)),
            }
        }
        Ok(scan)
    }

    /// What the store holds among `ids` (it may return more, and absent
    /// ids are simply not there), with the places it could not read: what
    /// a plan compares against at its target. The default reads everything
    /// ([`Store::read_all`]); a store whose reads are costly or audited
    /// (Vault) reads only the places holding these ids.
    fn read_wanted(&self, ids: &[CredentialId]) -> Result<Scan> {
        let _ = ids;
        self.read_all()
    }

    /// Write several; one result per credential, in order. Stores that can
    /// batch (a transaction, one file rewrite) override this.
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        creds.iter().map(|c| self.write(c)).collect()
    }

    /// Read several; one result per id, in order (`Ok(None)`: absent).
    /// Stores that can read a batch at once (one file parse, one query, one
    /// round of D-Bus calls) override this; the engine's read-back uses it.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        ids.iter().map(|id| self.read(id)).collect()
    }

    /// Delete several; one result per id, in order. Stores whose items
    /// depend on each other override this (agent-prompttrain's database
    /// cannot hold one OAuth token of an account without the other).
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        ids.iter().map(|id| self.delete(id)).collect()
    }

    /// Compare before you delete: remove each of `expected` only if the
    /// store holds exactly it (value, kind and metadata, the value compared
    /// in constant time) at the moment of deletion. One result per item,
    /// in order: [`DeleteIf::Changed`] keeps the value that is there.
    ///
    /// The default reads, compares and then deletes the matching ids
    /// ([`delete_if_unchanged_by_reading`]): credshift's exclusive store
    /// lock keeps other credshift processes out, but it is NOT atomic
    /// against another application writing between the read and the
    /// delete. Stores that can override it with a comparison inside the
    /// delete: one SQL transaction (SQLite, PostgreSQL, prompttrain-db,
    /// Laravel), one read-modify-rewrite of a file under the store's lock
    /// (dotenv, encrypted, bundle, model-forge, a prompttrain dir's file),
    /// Vault's check-and-set patch on the version compared, the keyring
    /// item compared (see its window there), the in-memory map under its
    /// lock.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        delete_if_unchanged_by_reading(self, expected)
    }

    /// Compare before you overwrite: put each `new` in place only if the
    /// store holds exactly `expected` at its id at the moment of writing
    /// (`None`: nothing there), compared as [`Store::delete_if_unchanged`]
    /// compares. One result per item, in order: [`ReplaceIf::Changed`]
    /// keeps what is there. A rollback restores old values with it, so a
    /// value another application wrote since credshift looked is kept.
    ///
    /// The default reads, compares and writes the matching items
    /// ([`replace_if_unchanged_by_reading`]), with the same window as the
    /// default compare-and-delete; stores override it the way they override
    /// that one (the comparison inside the write).
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        replace_if_unchanged_by_reading(self, items)
    }

    /// Whether an inventory of this store is its listing (ids, kinds and
    /// metadata) without reading a single value: a secrets manager whose
    /// reads are audited, and which a token may be allowed to list but not
    /// read (Vault). Its previews then say the value was not read. Default:
    /// false (the inventory reads every value to preview and classify it).
    fn inventory_from_listing(&self) -> bool {
        false
    }

    /// Let go of what this store keeps in memory between calls (a
    /// whole-file store's decrypted copy of its file): the next call reads
    /// the store afresh. For a caller that keeps the store open through a
    /// long phase that does not use it (a cleanup deleting a batch from the
    /// source between reads of the target). Default: nothing is kept.
    fn release_cache(&self) {}

    /// How this store's batches cost (see [`BatchHint`]). Default: per item.
    fn batch_hint(&self) -> BatchHint {
        BatchHint::PerItem
    }

    /// For values a store keeps only as a one-way hash (agent-prompttrain's
    /// client keys), so `read` cannot return them: `Some(true)` when the
    /// store holds `c`'s value at `c.id`, `Some(false)` when it does not.
    /// `None` (the default): the store returns what it holds via `read`.
    fn verify_hashed(&self, c: &Credential) -> Result<Option<bool>> {
        let _ = c;
        Ok(None)
    }

    /// Secret material this store found but offers as no item (a
    /// secret-looking field it cannot name, a value of the wrong type), as
    /// `location: field` lines without the values. A migration leaves it in
    /// the source, and cleanup never deletes the file or object holding it;
    /// the dry run names it. Default: none.
    fn unmigrated(&self) -> Vec<String> {
        Vec::new()
    }

    /// What this store *is*, whatever its spec's spelling (see
    /// [`StoreIdentity`]): files by canonical path (plus device and inode),
    /// PostgreSQL by the server's `system_identifier`, database and table,
    /// the keyring by service. The engine refuses a migration whose two
    /// ends are one store, and recovery refuses a store whose identity is
    /// not the one the journal recorded. May connect (a database).
    fn identity(&self) -> Result<StoreIdentity>;

    /// The migration about to write here (the engine says so before its
    /// first write), for a store that records provenance with what it
    /// writes. Most stores keep none.
    fn set_provenance(&self, _p: &Provenance) {}

    /// The lock that lives with the store, held until the returned guard is
    /// dropped: shared for an operation that only reads the store,
    /// exclusive for one that writes or deletes. Waits up to `wait`, then
    /// fails with [`StoreError::Locked`] naming the holder. `Ok(None)`: the
    /// store has no lock (`env:` is read-only). Only the engine's session
    /// preamble ([`crate::engine::session`]) calls it.
    ///
    /// By default, file stores lock `.NAME.credshift-lock` next to their
    /// file and the keyring a per-service file in a fixed per-user
    /// directory ([`crate::store::lockfile::guard`]), so credshift processes
    /// exclude each other whatever their state dirs or environments.
    /// PostgreSQL stores take an advisory lock in the database.
    fn lock(&self, mode: LockMode, wait: Duration) -> Result<Option<Box<dyn StoreLock>>> {
        Ok(crate::store::lockfile::guard(self.spec(), mode, wait)?
            .map(|g| Box::new(g) as Box<dyn StoreLock>))
    }
}

/// What [`Store::delete_if_unchanged`] did with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteIf {
    /// It held the expected value and is gone.
    Deleted,
    /// Nothing was there to delete.
    Absent,
    /// It holds something else, which was kept.
    Changed,
}

/// [`Store::delete_if_unchanged`] as read, compare, delete: not atomic
/// against other applications (see there). For stores without a better
/// way, and for wrappers whose `delete_many` depends on the `read_many`
/// just before it (the legacy-metadata layer).
pub fn delete_if_unchanged_by_reading<S: Store + ?Sized>(
    store: &S,
    expected: &[Credential],
) -> Vec<Result<DeleteIf>> {
    let ids: Vec<CredentialId> = expected.iter().map(|c| c.id.clone()).collect();
    let mut out: Vec<Option<Result<DeleteIf>>> = Vec::with_capacity(expected.len());
    let mut doomed: Vec<(usize, CredentialId)> = Vec::new();
    for (i, (want, now)) in expected.iter().zip(store.read_many(&ids)).enumerate() {
        out.push(match now {
            Ok(None) => Some(Ok(DeleteIf::Absent)),
            Ok(Some(c)) if c.same_as(want) => {
                doomed.push((i, want.id.clone()));
                None
            }
            Ok(Some(_)) => Some(Ok(DeleteIf::Changed)),
            Err(e) => Some(Err(e)),
        });
    }
    let doomed_ids: Vec<CredentialId> = doomed.iter().map(|(_, id)| id.clone()).collect();
    let mut results = store.delete_many(&doomed_ids).into_iter();
    for (i, _) in &doomed {
        out[*i] = Some(match results.next() {
            Some(Ok(true)) => Ok(DeleteIf::Deleted),
            Some(Ok(false)) => Ok(DeleteIf::Absent),
            Some(Err(e)) => Err(e),
            None => Err(StoreError::Other("the delete returned no result".into())),
        });
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("no result".into()))))
        .collect()
}

/// How an operation holds a store: shared to read, exclusive to write or
/// delete. Shared holders exclude exclusive ones, not each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A store-provided lock; dropping it releases the lock.
pub trait StoreLock: Send {
    /// What is locked (no secrets), for messages.
    fn describe(&self) -> String;

    /// What taking it did that the user should hear about. The library
    /// never prints (the wizard owns the screen): the session preamble
    /// gathers these and each operation's report carries them.
    fn notices(&self) -> Vec<LockNotice> {
        Vec::new()
    }
}

/// Something taking a lock did on its way (see [`StoreLock::notices`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum LockNotice {
    /// A lock left by a run that is no longer running was taken over.
    TookOverStale { lock: String, holder: String },
    /// A temp file a credshift run killed mid-write left next to the
    /// store was removed.
    RemovedTemp { store: String, path: PathBuf },
    /// Something the store did (or could not do) while the lock was held
    /// that the user should hear about (no secret in it): a Vault version
    /// kept in the history, say, or a destroy refused.
    StoreWarning { store: String, warning: String },
}

impl fmt::Display for LockNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockNotice::TookOverStale { lock, holder } => write!(
                f,
                "{lock}: took over the lock left by {holder}, which is no longer running"
            ),
            LockNotice::RemovedTemp { store, path } => write!(
                f,
                "{store}: removed {}, a temp file left by a credshift run that was killed \
                 mid-write",
                path.display()
            ),
            LockNotice::StoreWarning { store, warning } => write!(f, "{store}: {warning}"),
        }
    }
}

/// A parsed store spec. `Display` gives the spec back with any password in
/// a URL replaced by `***`; [`StoreSpec::raw`] keeps it for connecting.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum StoreSpec {
    PromptTrain(PathBuf),
    ModelForge(PathBuf),
    Dotenv(PathBuf),
    Env(String),
    Keyring(String),
    Encrypted(PathBuf),
    Sqlite(PathBuf),
    Postgres(String),
    PromptTrainDb(String),
    LaravelSqlite(PathBuf),
    LaravelPostgres(String),
    Bundle(PathBuf),
    /// The whole spec, `vault:URL/MOUNT[/PREFIX]` or `openbao:...`.
    Vault(String),
}

/// The valid schemes, for error messages and help.
pub const SCHEMES: &[(&str, &str)] = &[
    ("prompttrain:DIR", "agent-prompttrain credentials directory"),
    ("modelforge:PATH", "model-forge config.json"),
    ("dotenv:PATH", "a .env file"),
    ("env:PREFIX", "process environment (read-only)"),
    ("keyring:SERVICE", "the OS keyring"),
    ("encrypted:PATH", "credshift encrypted file"),
    ("sqlite:PATH", "credshift table in SQLite"),
    ("postgres://...", "credshift table in PostgreSQL"),
    (
        "prompttrain-db:postgres://...",
        "agent-prompttrain accounts/trains tables",
    ),
    (
        "laravel:sqlite:PATH",
        "Fragments Engine ai_credentials or a_i_credentials (SQLite; ?table=NAME picks one)",
    ),
    (
        "laravel:postgres://...",
        "Fragments Engine ai_credentials or a_i_credentials (PostgreSQL; ?table=NAME)",
    ),
    ("bundle:PATH", "passphrase-protected transfer bundle"),
    (
        "vault:URL/MOUNT[/PREFIX]",
        "HashiCorp Vault or OpenBao KV v2 (alias openbao:; ?layout=item)",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown store spec {given:?}: valid forms are {}", valid_list())]
pub struct BadSpec {
    pub given: String,
}

fn valid_list() -> String {
    SCHEMES
        .iter()
        .map(|(s, _)| *s)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for StoreSpec {
    type Err = BadSpec;
    fn from_str(s: &str) -> Result<Self, BadSpec> {
        let bad = || BadSpec {
            given: redact_url(s),
        };
        let nonempty = |rest: &str| {
            if rest.is_empty() {
                Err(bad())
            } else {
                Ok(rest.to_string())
            }
        };
        let path = |rest: &str| nonempty(rest).map(PathBuf::from);
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(StoreSpec::Postgres(s.to_string()));
        }
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        Ok(match scheme {
            "prompttrain" => StoreSpec::PromptTrain(path(rest)?),
            "modelforge" => StoreSpec::ModelForge(path(rest)?),
            "dotenv" => StoreSpec::Dotenv(path(rest)?),
            // An empty prefix means the whole environment.
            "env" => StoreSpec::Env(rest.to_string()),
            "keyring" => StoreSpec::Keyring(nonempty(rest)?),
            "encrypted" => StoreSpec::Encrypted(path(rest)?),
            "sqlite" => StoreSpec::Sqlite(path(rest)?),
            "bundle" => StoreSpec::Bundle(path(rest)?),
            "vault" | "openbao" if vault::spec::parse(rest).is_some() => {
                StoreSpec::Vault(s.to_string())
            }
            "prompttrain-db"
                if rest.starts_with("postgres://") || rest.starts_with("postgresql://") =>
            {
                StoreSpec::PromptTrainDb(rest.to_string())
            }
            "laravel" => {
                if let Some(p) = rest.strip_prefix("sqlite:") {
                    StoreSpec::LaravelSqlite(path(p)?)
                } else if rest.starts_with("postgres://") || rest.starts_with("postgresql://") {
                    StoreSpec::LaravelPostgres(rest.to_string())
                } else {
                    return Err(bad());
                }
            }
            _ => return Err(bad()),
        })
    }
}

impl StoreSpec {
    pub fn scheme(&self) -> &'static str {
        match self {
            StoreSpec::PromptTrain(_) => "prompttrain",
            StoreSpec::ModelForge(_) => "modelforge",
            StoreSpec::Dotenv(_) => "dotenv",
            StoreSpec::Env(_) => "env",
            StoreSpec::Keyring(_) => "keyring",
            StoreSpec::Encrypted(_) => "encrypted",
            StoreSpec::Sqlite(_) => "sqlite",
            StoreSpec::Postgres(_) => "postgres",
            StoreSpec::PromptTrainDb(_) => "prompttrain-db",
            StoreSpec::LaravelSqlite(_) => "laravel:sqlite",
            StoreSpec::LaravelPostgres(_) => "laravel:postgres",
            StoreSpec::Bundle(_) => "bundle",
            StoreSpec::Vault(_) => "vault",
        }
    }

    /// The spec with the password of a URL intact: for connecting only,
    /// never for printing.
    pub fn raw(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(match self {
            StoreSpec::PromptTrain(p) => format!("prompttrain:{}", p.display()),
            StoreSpec::ModelForge(p) => format!("modelforge:{}", p.display()),
            StoreSpec::Dotenv(p) => format!("dotenv:{}", p.display()),
            StoreSpec::Env(p) => format!("env:{p}"),
            StoreSpec::Keyring(s) => format!("keyring:{s}"),
            StoreSpec::Encrypted(p) => format!("encrypted:{}", p.display()),
            StoreSpec::Sqlite(p) => format!("sqlite:{}", p.display()),
            StoreSpec::Postgres(u) => u.clone(),
            StoreSpec::PromptTrainDb(u) => format!("prompttrain-db:{u}"),
            StoreSpec::LaravelSqlite(p) => format!("laravel:sqlite:{}", p.display()),
            StoreSpec::LaravelPostgres(u) => format!("laravel:{u}"),
            StoreSpec::Bundle(p) => format!("bundle:{}", p.display()),
            StoreSpec::Vault(s) => s.clone(),
        })
    }

    /// The local path, for file-based stores (used for locks and warnings).
    pub fn path(&self) -> Option<&Path> {
        match self {
            StoreSpec::PromptTrain(p)
            | StoreSpec::ModelForge(p)
            | StoreSpec::Dotenv(p)
            | StoreSpec::Encrypted(p)
            | StoreSpec::Sqlite(p)
            | StoreSpec::LaravelSqlite(p)
            | StoreSpec::Bundle(p) => Some(p),
            _ => None,
        }
    }

    /// The spec with a relative path made absolute against the current
    /// directory (links left as they are): what a journal records, so
    /// recovery acts on the same file whatever its own directory.
    pub fn absolute(&self) -> StoreSpec {
        let abs = |p: &PathBuf| identity::absolute(p);
        match self {
            StoreSpec::PromptTrain(p) => StoreSpec::PromptTrain(abs(p)),
            StoreSpec::ModelForge(p) => StoreSpec::ModelForge(abs(p)),
            StoreSpec::Dotenv(p) => StoreSpec::Dotenv(abs(p)),
            StoreSpec::Encrypted(p) => StoreSpec::Encrypted(abs(p)),
            StoreSpec::Sqlite(p) => StoreSpec::Sqlite(abs(p)),
            StoreSpec::LaravelSqlite(p) => StoreSpec::LaravelSqlite(abs(p)),
            StoreSpec::Bundle(p) => StoreSpec::Bundle(abs(p)),
            other => other.clone(),
        }
    }

    /// The PostgreSQL URL, for database stores.
    pub fn url(&self) -> Option<&str> {
        match self {
            StoreSpec::Postgres(u)
            | StoreSpec::PromptTrainDb(u)
            | StoreSpec::LaravelPostgres(u) => Some(u),
            _ => None,
        }
    }

    /// Whether the store keeps its values under credshift's passphrase
    /// (or key file): a new one needs a passphrase chosen, an existing one
    /// needs it to be opened.
    pub fn under_passphrase(&self) -> bool {
        self.profile().under_passphrase
    }
}

/// A URL may hold the database password: wiped when the spec goes.
impl Drop for StoreSpec {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let StoreSpec::Postgres(u)
        | StoreSpec::PromptTrainDb(u)
        | StoreSpec::LaravelPostgres(u) = self
        {
            u.zeroize();
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.raw()))
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreSpec({self})")
    }
}

impl Serialize for StoreSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Replace the password in `scheme://user:password@host` (up to the URL's
/// last `@`, so a password holding `/`, `?` or `#` is hidden whole) and a
/// `password=` query parameter with `***`. See [`pgurl`] for the rules.
pub fn redact_url(s: &str) -> String {
    pgurl::redact(s)
}

/// Open the store a spec names. credshift's own stores get the layer that
/// turns legacy secret metadata into items ([`legacy_meta`]); the fault
/// injector wraps everything when `CREDSHIFT_FAULTS` is set.
pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    let store: Box<dyn Store> = match spec {
        StoreSpec::PromptTrain(_) => prompttrain::open(spec, opts)?,
        StoreSpec::ModelForge(_) => modelforge::open(spec, opts)?,
        StoreSpec::Dotenv(_) => dotenv::open(spec, opts)?,
        StoreSpec::Env(_) => env::open(spec, opts)?,
        StoreSpec::Keyring(_) => keyring::open(spec, opts)?,
        StoreSpec::Encrypted(_) => encrypted::open(spec, opts)?,
        StoreSpec::Sqlite(_) => sqlite::open(spec, opts)?,
        StoreSpec::Postgres(_) => postgres::open(spec, opts)?,
        StoreSpec::PromptTrainDb(_) => prompttrain_db::open(spec, opts)?,
        StoreSpec::LaravelSqlite(_) | StoreSpec::LaravelPostgres(_) => laravel::open(spec, opts)?,
        StoreSpec::Bundle(_) => bundle::open(spec, opts)?,
        StoreSpec::Vault(_) => vault::open(spec, opts)?,
    };
    Ok(faults::wrap_from_test_aids(legacy_meta::wrap(store)))
}

/// True when two specs name the same store, whatever their schemes, as
/// far as can be told without connecting: the same file (device and
/// inode, else canonical path, links followed), the same keyring service,
/// the same PostgreSQL server spelling (host `localhost`/`127.0.0.1`/`::1`
/// as one, default port, `postgresql://`, `sslmode` ignored) with the same
/// database and tables. For the wizard, which must not block on a server;
/// the engine decides with [`Store::identity`] ([`same_store`]).
pub fn same_location(a: &StoreSpec, b: &StoreSpec) -> bool {
    match (offline_identity(a), offline_identity(b)) {
        (Some(x), Some(y)) => x.same_store(&y),
        _ => false,
    }
}

/// The identity a spec names, when it can be told without connecting.
pub fn offline_identity(spec: &StoreSpec) -> Option<StoreIdentity> {
    if let Some(p) = spec.path() {
        return Some(StoreIdentity::of_path(p));
    }
    match spec {
        StoreSpec::Keyring(s) => Some(StoreIdentity::named(IdentityKind::Keyring, s)),
        StoreSpec::Env(_) => Some(StoreIdentity::named(
            IdentityKind::Env,
            "process environment",
        )),
        _ => pg::offline_identity(spec),
    }
}

/// The identity of a store that is a file or directory (every store whose
/// spec has a path): what those stores answer to [`Store::identity`].
pub fn path_identity(spec: &StoreSpec) -> Result<StoreIdentity> {
    offline_identity(spec).ok_or_else(|| StoreError::Other(format!("{spec}: not a file store")))
}

/// Whether two opened stores are one store, by their identities.
pub fn same_store(a: &dyn Store, b: &dyn Store) -> Result<bool> {
    Ok(a.identity()?.same_store(&b.identity()?))
}

/// Shared helper for stores that cannot be written to.
pub fn read_only(spec: &StoreSpec, reason: &str) -> StoreError {
    StoreError::ReadOnly {
        store: spec.to_string(),
        reason: reason.to_string(),
    }
}

/// Probe warnings common to plaintext files: readable by group or others.
pub fn plaintext_file_warnings(path: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut w = Vec::new();
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            w.push(format!(
                "{} holds plaintext secrets and is readable by {} (mode {:o}); credshift \
                 writes it back as 0600",
                path.display(),
                if mode & 0o007 != 0 {
                    "others"
                } else {
                    "its group"
                },
                mode & 0o777
            ));
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        let cases = [
            ("prompttrain:/x/credentials", "prompttrain"),
            ("modelforge:cfg.json", "modelforge"),
            ("dotenv:.env", "dotenv"),
            ("env:OPENAI_", "env"),
            ("env:", "env"),
            ("keyring:credshift", "keyring"),
            ("encrypted:a.enc", "encrypted"),
            ("sqlite:a.db", "sqlite"),
            ("postgres://u@h/db", "postgres"),
            ("postgresql://u@h/db", "postgres"),
            ("prompttrain-db:postgres://u@h/db", "prompttrain-db"),
            ("laravel:sqlite:db.sqlite", "laravel:sqlite"),
            ("laravel:postgres://u@h/db", "laravel:postgres"),
            ("bundle:b.json", "bundle"),
            ("vault:http://127.0.0.1:8200/secret/apps/billing", "vault"),
            ("openbao:https://bao:8200/kv?layout=item", "vault"),
        ];
        for (s, scheme) in cases {
            let spec: StoreSpec = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(spec.scheme(), scheme, "{s}");
            assert_eq!(spec.raw().as_str(), s, "round trip of {s}");
        }
    }

    #[test]
    fn unknown_schemes_list_the_valid_ones() {
        for s in [
            "ftp:x",
            "nocolon",
            "dotenv:",
            "laravel:mysql://x",
            "prompttrain-db:mysql://x",
        ] {
            let e = s.parse::<StoreSpec>().unwrap_err().to_string();
            assert!(e.contains("prompttrain:DIR"), "{e}");
            assert!(e.contains("laravel:sqlite:PATH"), "{e}");
        }
    }

    #[test]
    fn urls_never_print_their_password() {
        let spec: StoreSpec = "prompttrain-db:postgres://app:hunter2@db:5432/x?sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(
            spec.to_string(),
            "prompttrain-db:postgres://app:***@db:5432/x?sslmode=require"
        );
        assert!(spec.raw().contains("hunter2"));
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert_eq!(
            redact_url("postgres://h/db?user=a&password=hunter2"),
            "postgres://h/db?user=a&password=***"
        );
        let e = "laravel:mysql://u:hunter2@h/x"
            .parse::<StoreSpec>()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn same_location_sees_one_file_through_schemes_links_and_dots() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("f"), "x").unwrap();
        symlink(d.join("f"), d.join("link")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let s = |scheme: &str, p: &Path| -> StoreSpec {
            format!("{scheme}:{}", p.display()).parse().unwrap()
        };
        let f = d.join("f");
        let same = [
            (s("encrypted", &f), s("bundle", &f)),
            (s("dotenv", &f), s("dotenv", &d.join("link"))),
            (s("sqlite", &f), s("dotenv", &d.join("sub/../f"))),
            // Not there yet: compared by canonical path.
            (
                s("dotenv", &d.join("new.env")),
                s("encrypted", &d.join("sub/../new.env")),
            ),
            (
                s("keyring", Path::new("svc")),
                s("keyring", Path::new("svc")),
            ),
        ];
        for (a, b) in same {
            assert!(same_location(&a, &b), "{a} vs {b}");
        }
        let different = [
            (s("dotenv", &f), s("dotenv", &d.join("g"))),
            (
                s("dotenv", &d.join("new.env")),
                s("dotenv", &d.join("sub/new.env")),
            ),
            (s("keyring", Path::new("a")), s("keyring", Path::new("b"))),
            (s("dotenv", &f), "keyring:f".parse().unwrap()),
            (
                "postgres://u@h/a".parse().unwrap(),
                "laravel:postgres://u@h/a".parse().unwrap(),
            ),
        ];
        for (a, b) in different {
            assert!(!same_location(&a, &b), "{a} vs {b}");
        }
    }
}
