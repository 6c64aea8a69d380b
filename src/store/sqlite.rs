//! `sqlite:PATH`: credshift's own table in an embedded SQLite database.
//!
//! Schema (created on first write, idempotent):
//! - `credshift_meta`: one row with the KDF (`kdf_alg`, `kdf_iterations`,
//!   `kdf_salt`) and a key-check value: AES-256-GCM of a constant under the
//!   derived key. A wrong passphrase is caught once, at the key check, with
//!   a clear error, rather than as a failure on every row.
//! - `credshift_credentials`: `namespace`, `name`, `kind`, `metadata` (JSON,
//!   not secret, in the clear so listing needs no key), `nonce`,
//!   `ciphertext`, `updated_at`. Each value is sealed with AES-256-GCM under
//!   a fresh 12-byte nonce with the credential id (`namespace/name`) as
//!   associated data, so a row copied to another id fails to decrypt.
//!
//! The database file is created 0600 before SQLite opens it (SQLite gives
//! its `-wal` and `-shm` files the database's mode). Journal mode WAL with
//! `synchronous=FULL`; `secure_delete` so replaced ciphertexts are wiped
//! from free pages. The key (from a passphrase via PBKDF2, or a 32-byte key
//! file: `kdf_alg = 'none'`) is derived once per opened store. The scheme
//! (key check, sealing, row decoding) is [`crate::crypto::sql`], shared with
//! `postgres://`.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::credential::{Credential, CredentialId};
use crate::crypto::envelope::KeySource;
use crate::crypto::kdf;
use crate::crypto::sql::{self, MetaRow, SealedValue, TableKey};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::{
    Capability, DeleteIf, Entry, Listing, LocationError, Replace, ReplaceIf, Scan, Store, StoreSpec,
};
use crate::unlock::KeyOptions;

const SCHEMA_VERSION: i64 = 1;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS credshift_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    kdf_alg TEXT NOT NULL,
    kdf_iterations INTEGER,
    kdf_salt BLOB,
    check_nonce BLOB NOT NULL,
    check_ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS credshift_credentials (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
";

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    match spec {
        StoreSpec::Sqlite(path) => Ok(Box::new(SqliteStore {
            spec: spec.clone(),
            path: path.clone(),
            opts: opts.clone(),
            inner: Mutex::new(Inner::default()),
        })),
        _ => Err(StoreError::Other(format!(
            "{spec}: not a sqlite: spec (internal error)"
        ))),
    }
}

pub struct SqliteStore {
    spec: StoreSpec,
    path: PathBuf,
    opts: KeyOptions,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    conn: Option<Connection>,
    schema_ready: bool,
    key: Option<TableKey>,
}

/// One row as stored, before decryption.
struct Row {
    id: CredentialId,
    kind: String,
    metadata: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn row_location(&self, id: &CredentialId) -> String {
        format!("{} row {id}", self.path.display())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A SQLite error as ours. SQLite's messages name tables and columns,
    /// never values; and only ciphertext reaches the database anyway.
    fn db_err(&self, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode as C;
        let location = self.location();
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::NotADatabase => StoreError::parse(location, "not a SQLite database"),
                C::DatabaseBusy | C::DatabaseLocked => StoreError::Unavailable {
                    store: self.spec.to_string(),
                    reason: format!(
                        "the database stayed locked by another connection for {} s",
                        BUSY_TIMEOUT.as_secs()
                    ),
                },
                C::CannotOpen
                | C::ReadOnly
                | C::PermissionDenied
                | C::DiskFull
                | C::SystemIoFailure => StoreError::Unavailable {
                    store: self.spec.to_string(),
                    reason: e.to_string(),
                },
                C::DatabaseCorrupt => StoreError::parse(location, "the database is corrupt"),
                _ => StoreError::Other(format!("{location}: {e}")),
            },
            _ => StoreError::Other(format!("{location}: database error ({})", error_kind(&e))),
        }
    }

    /// The connection, opening it on first use. `create` makes the file
    /// (0600) when missing; otherwise a missing file is `NotFound`.
    fn conn<'a>(&self, inner: &'a mut Inner, create: bool) -> Result<&'a Connection> {
        if inner.conn.is_none() {
            if !self.path.exists() {
                if !create {
                    return Err(StoreError::NotFound {
                        location: self.location(),
                        hint: "it is created by the first write".into(),
                    });
                }
                fsutil::ensure_private_dir(&fsutil::parent_dir(&self.path))?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(fsutil::FILE_MODE)
                    .open(&self.path)
                    .map_err(|e| StoreError::io(&self.path, e))?;
            }
            if self.path.is_dir() {
                return Err(StoreError::parse(
                    self.location(),
                    "is a directory, not a database",
                ));
            }
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| self.db_err(e))?;
            conn.busy_timeout(BUSY_TIMEOUT)
                .map_err(|e| self.db_err(e))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(|e| self.db_err(e))?;
            conn.pragma_update(None, "secure_delete", "ON")
                .map_err(|e| self.db_err(e))?;
            // Reading sqlite_master proves this is a database at all.
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.db_err(e))?;
            inner.conn = Some(conn);
        }
        match &inner.conn {
            Some(c) => Ok(c),
            None => Err(StoreError::Other("connection vanished".into())),
        }
    }

    /// Create the tables and switch to WAL (first write only).
    fn ensure_schema(&self, inner: &mut Inner) -> Result<()> {
        if inner.schema_ready {
            return Ok(());
        }
        let conn = self.conn(inner, true)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| self.db_err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable {
                store: self.spec.to_string(),
                reason: format!("SQLite refused WAL journal mode (got {mode})"),
            });
        }
        conn.execute_batch(SCHEMA).map_err(|e| self.db_err(e))?;
        inner.schema_ready = true;
        Ok(())
    }

    fn has_tables(&self, conn: &Connection) -> Result<bool> {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                 AND name IN ('credshift_meta', 'credshift_credentials')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 2)
    }

    /// The stored KDF parameters and key check, when the meta row exists.
    fn read_meta(&self, conn: &Connection) -> Result<Option<MetaRow>> {
        type Columns = (i64, String, Option<i64>, Option<Vec<u8>>, Vec<u8>, Vec<u8>);
        let row: Option<Columns> = conn
            .query_row(
                "SELECT schema_version, kdf_alg, kdf_iterations, kdf_salt, check_nonce, \
                 check_ciphertext FROM credshift_meta WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        let Some((version, kdf, iterations, salt, check_nonce, check_value)) = row else {
            return Ok(None);
        };
        if version != SCHEMA_VERSION {
            return Err(StoreError::parse(
                format!("{} credshift_meta", self.location()),
                format!(
                    "unsupported schema version {version} (this credshift reads {SCHEMA_VERSION})"
                ),
            ));
        }
        Ok(Some(MetaRow {
            kdf,
            iterations,
            salt,
            check_nonce,
            check_value,
        }))
    }

    /// The key for this database: cached, else derived from the meta row and
    /// verified against its key check. With `create` and no meta row yet, a
    /// new salt and key check are written.
    fn key<'a>(&self, inner: &'a mut Inner, create: bool) -> Result<&'a TableKey> {
        if inner.key.is_none() {
            let key = self.derive_key(inner, create)?;
            inner.key = Some(key);
        }
        match &inner.key {
            Some(k) => Ok(k),
            None => Err(StoreError::Other("key vanished".into())),
        }
    }

    fn derive_key(&self, inner: &mut Inner, create: bool) -> Result<TableKey> {
        let loc = self.location();
        let conn = self.conn(inner, create)?;
        let meta = if self.has_tables(conn)? {
            self.read_meta(conn)?
        } else {
            None
        };
        if let Some(m) = meta {
            return self.verified_key(&m);
        }
        if !create {
            return Err(StoreError::Crypto {
                location: format!("{loc} credshift_meta"),
                message: "the key check row is missing (the database was altered)".into(),
            });
        }
        let (key, ours) = sql::SQLITE.new_key(&self.opts, &loc)?;
        self.ensure_schema(inner)?;
        let conn = self.conn(inner, true)?;
        // Another process may have created the row first: keep theirs.
        conn.execute(
            "INSERT INTO credshift_meta (id, schema_version, kdf_alg, kdf_iterations, kdf_salt, \
             check_nonce, check_ciphertext, created_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT(id) DO NOTHING",
            params![
                SCHEMA_VERSION,
                ours.kdf,
                ours.iterations,
                ours.salt,
                ours.check_nonce,
                ours.check_value,
                now()
            ],
        )
        .map_err(|e| self.db_err(e))?;
        match self.read_meta(conn)? {
            Some(m) if m == ours => Ok(key),
            Some(m) => self.verified_key(&m),
            None => Err(StoreError::Other(format!(
                "{loc}: the key check row was not written"
            ))),
        }
    }

    fn verified_key(&self, meta: &MetaRow) -> Result<TableKey> {
        sql::SQLITE.unlock(meta, &self.location(), &self.opts)
    }

    fn decrypt_row(&self, key: &TableKey, row: Row) -> Result<Credential> {
        let loc = self.row_location(&row.id);
        let aad = row.id.to_string();
        let value = SealedValue {
            kind: &row.kind,
            metadata: &row.metadata,
            nonce: &row.nonce,
            ciphertext: &row.ciphertext,
        };
        key.open(row.id, &aad, &value, &loc)
    }

    fn select_rows(
        &self,
        conn: &Connection,
        one: Option<&CredentialId>,
    ) -> Result<Vec<Result<Row>>> {
        let sql =
            "SELECT namespace, name, kind, metadata, nonce, ciphertext FROM credshift_credentials";
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Row> {
            Ok(Row {
                id: CredentialId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                kind: r.get(2)?,
                metadata: r.get(3)?,
                nonce: r.get(4)?,
                ciphertext: r.get(5)?,
            })
        };
        let raw: Vec<rusqlite::Result<Row>> = match one {
            Some(id) => {
                let mut st = conn
                    .prepare_cached(&format!("{sql} WHERE namespace = ?1 AND name = ?2"))
                    .map_err(|e| self.db_err(e))?;
                st.query_map(params![id.namespace.as_str(), id.name.as_str()], map)
                    .map_err(|e| self.db_err(e))?
                    .collect()
            }
            None => {
                let mut st = conn
                    .prepare(&format!("{sql} ORDER BY namespace, name"))
                    .map_err(|e| self.db_err(e))?;
                st.query_map([], map).map_err(|e| self.db_err(e))?.collect()
            }
        };
        Ok(raw
            .into_iter()
            .map(|r| r.map_err(|e| self.db_err(e)))
            .collect())
    }

    /// Open an existing database with our tables; `None` when the file is
    /// a database without them (nothing stored yet).
    fn existing<'a>(&self, inner: &'a mut Inner) -> Result<Option<&'a Connection>> {
        let conn = self.conn(inner, false)?;
        Ok(if self.has_tables(conn)? {
            Some(conn)
        } else {
            None
        })
    }

    fn writable(&self) -> bool {
        // WAL needs the directory too (-wal and -shm files).
        let mut dir = fsutil::parent_dir(&self.path);
        while !dir.exists() {
            match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
                _ => {
                    dir = PathBuf::from(".");
                    break;
                }
            }
        }
        crate::fsutil::writable(&dir)
            && (!self.path.exists() || crate::fsutil::writable(&self.path))
    }
}

fn error_kind(e: &rusqlite::Error) -> &'static str {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            "a column has an unexpected type"
        }
        rusqlite::Error::QueryReturnedNoRows => "no row",
        rusqlite::Error::InvalidPath(_) => "invalid path",
        _ => "unexpected error",
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store for SqliteStore {
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        crate::store::path_identity(self.spec())
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let loc = self.location();
        if self.path.is_dir() {
            return Capability::unavailable(format!("{loc} is a directory, not a database"));
        }
        let exists = self.path.exists();
        let mut cap = Capability {
            writable: self.writable(),
            exists,
            ..Capability::persistent_store(true, true)
        };
        if !cap.writable {
            cap.warnings.push(format!(
                "{loc} (or its directory) cannot be written by this user"
            ));
        }
        if let Some(mode) = fsutil::mode_of(&self.path)
            && mode & 0o077 != 0
        {
            cap.warnings.push(format!(
                "{loc} is readable by others than its owner (mode {mode:o}); its values are \
                 encrypted, but chmod 600 it"
            ));
        }
        if self.opts.passphrase.is_none()
            && let Some(kf) = &self.opts.key_file
        {
            cap.warnings.extend(kdf::key_file_warnings(kf));
        }
        if !exists {
            if let Err(e) = KeySource::for_new_data(&self.opts, &loc) {
                cap.reason = Some(format!("a key is needed to create it: {e}"));
                cap.warnings.push(e.to_string());
            }
            return cap;
        }
        let mut inner = self.lock();
        let count = self.existing(&mut inner).and_then(|conn| match conn {
            None => Ok(0usize),
            Some(conn) => conn
                .query_row("SELECT count(*) FROM credshift_credentials", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| usize::try_from(n).unwrap_or(0))
                .map_err(|e| self.db_err(e)),
        });
        match count {
            Ok(n) => cap.item_count = Some(n),
            Err(e) => {
                return Capability {
                    warnings: vec![e.to_string()],
                    ..Capability::unavailable(e.to_string())
                };
            }
        }
        // Verify the key now, so a wrong passphrase shows before a migration.
        let has_meta = matches!(self.existing(&mut inner), Ok(Some(_)));
        if has_meta {
            match self.key(&mut inner, false) {
                Ok(_) => {}
                Err(e @ StoreError::MissingKey { .. }) => {
                    cap.reason = Some(format!("values cannot be read until a key is given: {e}"));
                    cap.needs_key = Some(e.to_string());
                }
                Err(e) => {
                    cap.readable = false;
                    cap.reason = Some(e.to_string());
                    cap.warnings.push(e.to_string());
                }
            }
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        let mut inner = self.lock();
        let Some(conn) = self.existing(&mut inner)? else {
            return Ok(Listing::default());
        };
        let mut st = conn
            .prepare(
                "SELECT namespace, name, kind, metadata FROM credshift_credentials \
                 ORDER BY namespace, name",
            )
            .map_err(|e| self.db_err(e))?;
        let rows: Vec<rusqlite::Result<(String, String, String, String)>> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| self.db_err(e))?
            .collect();
        let mut listing = Listing::default();
        for r in rows {
            let (ns, name, kind, metadata) = r.map_err(|e| self.db_err(e))?;
            let id = CredentialId::new(ns, name);
            let loc = self.row_location(&id);
            let entry = sql::parse_kind(&kind, &loc).and_then(|kind| {
                sql::parse_metadata(&metadata, &loc).map(|metadata| Entry {
                    id: id.clone(),
                    kind,
                    metadata,
                })
            });
            match entry {
                Ok(e) => listing.entries.push(e),
                Err(e) => listing.errors.push(LocationError::from_error(loc, &e)),
            }
        }
        Ok(listing)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let mut inner = self.lock();
        let row = {
            let Some(conn) = self.existing(&mut inner)? else {
                return Ok(None);
            };
            match self.select_rows(conn, Some(id))?.into_iter().next() {
                None => return Ok(None),
                Some(r) => r?,
            }
        };
        let key = self.key(&mut inner, false)?;
        self.decrypt_row(key, row).map(Some)
    }

    /// One lock, one read transaction (a consistent snapshot) and one
    /// cached statement for the whole batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let mut inner = self.lock();
        let rows: Vec<Result<Option<Row>>> = {
            let conn = match self.existing(&mut inner) {
                Ok(Some(c)) => c,
                Ok(None) => return ids.iter().map(|_| Ok(None)).collect(),
                Err(e) => return ids.iter().map(|_| Err(e.duplicate())).collect(),
            };
            let tx = match conn.unchecked_transaction() {
                Ok(tx) => tx,
                Err(e) => {
                    let e = self.db_err(e);
                    return ids.iter().map(|_| Err(e.duplicate())).collect();
                }
            };
            let rows = ids
                .iter()
                .map(
                    |id| match self.select_rows(&tx, Some(id))?.into_iter().next() {
                        None => Ok(None),
                        Some(r) => r.map(Some),
                    },
                )
                .collect();
            // Read only: ending it either way changes nothing.
            let _ = tx.rollback();
            #[cfg(test)]
            crate::store::test_support::run_after_read();
            rows
        };
        if rows.iter().all(|r| matches!(r, Ok(None) | Err(_))) {
            return rows.into_iter().map(|r| r.map(|_| None)).collect();
        }
        let key = match self.key(&mut inner, false) {
            Ok(k) => k,
            Err(e) => {
                return rows
                    .into_iter()
                    .map(|r| match r {
                        Ok(Some(_)) => Err(e.duplicate()),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    })
                    .collect();
            }
        };
        rows.into_iter()
            .map(|r| match r {
                Ok(Some(row)) => self.decrypt_row(key, row).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// One transaction for the whole batch.
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let mut inner = self.lock();
        let conn = match self.existing(&mut inner) {
            Err(StoreError::NotFound { .. }) if !self.path.exists() => {
                return ids.iter().map(|_| Ok(false)).collect();
            }
            Err(e) => return ids.iter().map(|_| Err(e.duplicate())).collect(),
            Ok(None) => return ids.iter().map(|_| Ok(false)).collect(),
            Ok(Some(c)) => c,
        };
        let tx = match conn.unchecked_transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let e = self.db_err(e);
                return ids.iter().map(|_| Err(e.duplicate())).collect();
            }
        };
        let results: Vec<Result<bool>> = ids
            .iter()
            .map(|id| {
                tx.prepare_cached(
                    "DELETE FROM credshift_credentials WHERE namespace = ?1 AND name = ?2",
                )
                .and_then(|mut st| st.execute(params![id.namespace.as_str(), id.name.as_str()]))
                .map(|n| n > 0)
                .map_err(|e| self.db_err(e))
            })
            .collect();
        if let Err(e) = tx.commit() {
            let e = self.db_err(e);
            return ids.iter().map(|_| Err(e.duplicate())).collect();
        }
        results
    }

    /// Atomic: one IMMEDIATE transaction selects each row, decrypts and
    /// compares it, and deletes only the rows that match; no other writer
    /// can come between the comparison and the delete.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let mut inner = self.lock();
        match self.existing(&mut inner) {
            Err(StoreError::NotFound { .. }) if !self.path.exists() => {
                return expected.iter().map(|_| Ok(DeleteIf::Absent)).collect();
            }
            Err(e) => return expected.iter().map(|_| Err(e.duplicate())).collect(),
            Ok(None) => return expected.iter().map(|_| Ok(DeleteIf::Absent)).collect(),
            Ok(Some(_)) => {}
        }
        // The key before the transaction (it needs `inner` mutably); a store
        // without one holds no row it could compare, which the rows say.
        let key_err = self.key(&mut inner, false).err();
        let Inner { conn, key, .. } = &mut *inner;
        let Some(conn) = conn.as_mut() else {
            let e = StoreError::Other(format!("{}: store not ready", self.location()));
            return expected.iter().map(|_| Err(e.duplicate())).collect();
        };
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let e = self.db_err(e);
                return expected.iter().map(|_| Err(e.duplicate())).collect();
            }
        };
        let results: Vec<Result<DeleteIf>> = expected
            .iter()
            .map(|want| {
                let Some(row) = self.select_rows(&tx, Some(&want.id))?.into_iter().next() else {
                    return Ok(DeleteIf::Absent);
                };
                let now = match (key.as_ref(), &key_err) {
                    (Some(k), _) => self.decrypt_row(k, row?)?,
                    (None, Some(e)) => return Err(e.duplicate()),
                    (None, None) => {
                        return Err(StoreError::Other(format!(
                            "{}: store not ready",
                            self.location()
                        )));
                    }
                };
                if !now.same_as(want) {
                    return Ok(DeleteIf::Changed);
                }
                tx.prepare_cached(
                    "DELETE FROM credshift_credentials WHERE namespace = ?1 AND name = ?2",
                )
                .and_then(|mut st| {
                    st.execute(params![want.id.namespace.as_str(), want.id.name.as_str()])
                })
                .map(|n| {
                    if n > 0 {
                        DeleteIf::Deleted
                    } else {
                        DeleteIf::Absent
                    }
                })
                .map_err(|e| self.db_err(e))
            })
            .collect();
        if let Err(e) = tx.commit() {
            let e = self.db_err(e);
            return expected.iter().map(|_| Err(e.duplicate())).collect();
        }
        results
    }

    fn write(&self, c: &Credential) -> Result<()> {
        match self.write_many(std::slice::from_ref(c)).pop() {
            Some(r) => r,
            None => Err(StoreError::Other("write produced no result".into())),
        }
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let mut inner = self.lock();
        let conn = match self.existing(&mut inner) {
            Err(StoreError::NotFound { .. }) if !self.path.exists() => return Ok(false),
            Err(e) => return Err(e),
            Ok(None) => return Ok(false),
            Ok(Some(c)) => c,
        };
        let n = conn
            .execute(
                "DELETE FROM credshift_credentials WHERE namespace = ?1 AND name = ?2",
                params![id.namespace.as_str(), id.name.as_str()],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n > 0)
    }

    fn read_all(&self) -> Result<Scan> {
        let mut inner = self.lock();
        let rows = {
            let Some(conn) = self.existing(&mut inner)? else {
                return Ok(Scan::default());
            };
            self.select_rows(conn, None)?
        };
        let mut scan = Scan::default();
        if rows.is_empty() {
            return Ok(scan);
        }
        let key = self.key(&mut inner, false)?;
        for r in rows {
            let row = match r {
                Ok(row) => row,
                Err(e) => {
                    scan.errors
                        .push(LocationError::from_error(self.location(), &e));
                    continue;
                }
            };
            let loc = self.row_location(&row.id);
            match self.decrypt_row(key, row) {
                Ok(c) => scan.credentials.push(c),
                Err(e) => scan.errors.push(LocationError::from_error(loc, &e)),
            }
        }
        Ok(scan)
    }

    /// All rows in one transaction; per-item results, and a failed commit
    /// fails every item.
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let items: Vec<(&Credential, Option<&Replace>)> = creds.iter().map(|c| (c, None)).collect();
        self.put(&items)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect()
    }

    /// Atomic: the IMMEDIATE transaction that writes selects each row,
    /// decrypts and compares it first, and writes only where it matches;
    /// no other writer can come between.
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let items: Vec<(&Credential, Option<&Replace>)> =
            items.iter().map(|r| (&r.new, Some(r))).collect();
        self.put(&items)
    }
}

impl SqliteStore {
    /// One IMMEDIATE transaction for the batch; an item with a
    /// [`Replace`] is written only if its row, read inside that
    /// transaction, holds what it expects.
    fn put(&self, items: &[(&Credential, Option<&Replace>)]) -> Vec<Result<ReplaceIf>> {
        let creds: Vec<&Credential> = items.iter().map(|(c, _)| *c).collect();
        let mut inner = self.lock();
        // Without a key, create nothing: not even an empty database.
        if inner.key.is_none()
            && !self.path.exists()
            && let Err(e) = KeySource::for_new_data(&self.opts, &self.location())
        {
            return creds.iter().map(|_| Err(e.duplicate())).collect();
        }
        // The key first: without one, no tables appear in someone's database.
        let prepared = self
            .key(&mut inner, true)
            .map(|_| ())
            .and_then(|()| self.ensure_schema(&mut inner));
        if let Err(e) = prepared {
            return creds.iter().map(|_| Err(e.duplicate())).collect();
        }
        let Inner { conn, key, .. } = &mut *inner;
        let (Some(conn), Some(key)) = (conn.as_mut(), key.as_ref()) else {
            let e = StoreError::Other(format!("{}: store not ready", self.location()));
            return creds.iter().map(|_| Err(e.duplicate())).collect();
        };
        // IMMEDIATE takes the write lock up front (waiting out other
        // writers via the busy timeout) instead of failing at the upgrade.
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let e = self.db_err(e);
                return creds.iter().map(|_| Err(e.duplicate())).collect();
            }
        };
        let stamp = now();
        let mut results: Vec<Result<ReplaceIf>> = Vec::with_capacity(creds.len());
        for (c, guard) in items {
            if let Some(want) = guard {
                let now = match self.select_rows(&tx, Some(&c.id)) {
                    Ok(rows) => rows
                        .into_iter()
                        .next()
                        .map(|row| row.and_then(|row| self.decrypt_row(key, row)))
                        .transpose(),
                    Err(e) => Err(e),
                };
                match now {
                    Ok(now) if want.holds(now.as_ref()) => {}
                    Ok(_) => {
                        results.push(Ok(ReplaceIf::Changed));
                        continue;
                    }
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                }
            }
            let aad = c.id.to_string();
            let r = key
                .seal(&aad, c.secret.expose().as_bytes())
                .and_then(|(nonce, ct)| {
                    let metadata = sql::metadata_json(c);
                    tx.execute(
                        "INSERT INTO credshift_credentials \
                         (namespace, name, kind, metadata, nonce, ciphertext, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                         ON CONFLICT(namespace, name) DO UPDATE SET kind = excluded.kind, \
                         metadata = excluded.metadata, nonce = excluded.nonce, \
                         ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                        params![
                            c.id.namespace.as_str(),
                            c.id.name.as_str(),
                            c.kind.as_str(),
                            metadata,
                            nonce.to_vec(),
                            ct,
                            stamp
                        ],
                    )
                    .map(|_| ReplaceIf::Replaced)
                    .map_err(|e| match self.db_err(e) {
                        StoreError::Other(m) => StoreError::item(&c.id, m),
                        other => other,
                    })
                });
            results.push(r);
        }
        if let Err(e) = tx.commit() {
            let e = self.db_err(e);
            return creds.iter().map(|_| Err(e.duplicate())).collect();
        }
        results
    }
}

#[cfg(test)]
mod tests;
