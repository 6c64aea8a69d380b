//! `postgres://URL`: credshift's own table in PostgreSQL. The connection
//! plumbing every PostgreSQL-backed store shares lives in [`crate::store::pg`]
//! (re-exported here under its old paths).
//!
//! Tables (created idempotently on first write):
//! - `credshift_meta`: one row with the KDF (`pbkdf2-hmac-sha256` and its
//!   iterations and salt, or `key-file`) and a key-check value (AES-256-GCM of
//!   a constant), so a wrong passphrase is caught before anything is written.
//! - `credshift_credentials`: `id` (primary key), `kind`, `metadata` (JSONB,
//!   not secret), `nonce` (12 fresh bytes per value) and `ciphertext`
//!   (AES-256-GCM with the id as associated data, so a value moved to another
//!   row fails to decrypt).
//!
//! The key is derived once per opened store; the scheme (key check, sealing,
//! row decoding) is [`crate::crypto::sql`], shared with `sqlite:`. Writes are upserts
//! (`ON CONFLICT (id) DO UPDATE`); `write_many` runs in one transaction.
//! [`Store::lock`] takes a session advisory lock keyed by a hash of the table
//! name, which the engine holds for a whole migration.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::credential::{Credential, CredentialId};
use crate::crypto::envelope::KeySource;
use crate::crypto::sql::{self, MetaRow, SealedValue, TableKey};
use crate::error::{Result, StoreError};
use crate::store::pg::{AdvisoryLock, Conn};
use crate::store::{
    Capability, DeleteIf, Entry, Listing, LocationError, LockMode, Replace, ReplaceIf, Scan, Store,
    StoreIdentity, StoreLock, StoreSpec,
};
use crate::unlock::KeyOptions;

pub const CREDENTIALS_TABLE: &str = "credshift_credentials";
pub const META_TABLE: &str = "credshift_meta";

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(PostgresStore::new(spec, opts)?))
}

/// A row's nonce, ciphertext and metadata JSON, ready to store.
type Encoded = (Vec<u8>, Vec<u8>, String);

pub struct PostgresStore {
    spec: StoreSpec,
    conn: Conn,
    opts: KeyOptions,
    /// Derived once per opened store.
    key: Mutex<Option<Arc<TableKey>>>,
}

impl PostgresStore {
    pub fn new(spec: &StoreSpec, opts: &KeyOptions) -> Result<Self> {
        // A key file that cannot be read fails the open, before any work.
        if opts.passphrase.is_none()
            && let Some(path) = &opts.key_file
        {
            KeySource::from_key_file(path)?;
        }
        Ok(PostgresStore {
            spec: spec.clone(),
            conn: Conn::new(spec, opts),
            opts: opts.clone(),
            key: Mutex::new(None),
        })
    }

    fn err(&self, message: impl Into<String>) -> StoreError {
        StoreError::Other(format!("{}: {}", self.spec, message.into()))
    }

    fn ensure_schema(&self) -> Result<()> {
        let lock = AdvisoryLock::key_for("credshift-schema");
        self.conn.with("create tables", |c| {
            let mut tx = c.transaction()?;
            // Concurrent CREATE TABLE IF NOT EXISTS can still collide.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])?;
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {META_TABLE} (
                   id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
                   format TEXT NOT NULL,
                   kdf TEXT NOT NULL,
                   iterations INTEGER NOT NULL,
                   salt BYTEA NOT NULL,
                   check_nonce BYTEA NOT NULL,
                   check_value BYTEA NOT NULL,
                   created_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS {CREDENTIALS_TABLE} (
                   id TEXT PRIMARY KEY,
                   kind TEXT NOT NULL,
                   metadata JSONB NOT NULL DEFAULT '{{}}'::jsonb,
                   nonce BYTEA NOT NULL,
                   ciphertext BYTEA NOT NULL,
                   updated_at TIMESTAMPTZ NOT NULL DEFAULT now());"
            ))?;
            tx.commit()
        })
    }

    fn tables_exist(&self) -> Result<bool> {
        self.conn.with("look up tables", |c| {
            let row = c.query_one(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                &[&CREDENTIALS_TABLE, &META_TABLE],
            )?;
            Ok(row.get(0))
        })
    }

    fn load_meta(&self) -> Result<Option<MetaRow>> {
        self.conn.with("read meta", |c| {
            let rows = c.query(
                &format!(
                    "SELECT kdf, iterations, salt, check_nonce, check_value FROM {META_TABLE} WHERE id = 1"
                ),
                &[],
            )?;
            Ok(rows.first().map(|r| MetaRow {
                kdf: r.get(0),
                iterations: Some(i64::from(r.get::<_, i32>(1))),
                salt: Some(r.get(2)),
                check_nonce: r.get(3),
                check_value: r.get(4),
            }))
        })
    }

    /// The store key, derived on first use. With `create`, writes the meta
    /// row when there is none (racing writers agree on the first row).
    fn key(&self, create: bool) -> Result<Arc<TableKey>> {
        let mut cached = self.key.lock().map_err(|_| self.err("key lock poisoned"))?;
        if let Some(k) = cached.as_ref() {
            return Ok(k.clone());
        }
        let location = self.spec.to_string();
        // No key at all says so before anything is looked up.
        KeySource::from_options(&self.opts, &location)?;
        if create {
            self.ensure_schema()?;
        }
        let meta = match self.load_meta() {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) if !create => None,
            Err(e) => return Err(e),
        };
        let key = match meta {
            Some(m) => self.unlock(&m)?,
            None if !create => {
                return Err(StoreError::NotFound {
                    location,
                    hint: "no credshift tables yet".into(),
                });
            }
            None => {
                let (key, ours) = sql::POSTGRES.new_key(&self.opts, &location)?;
                self.insert_meta(&ours)?;
                match self.load_meta()? {
                    Some(m) if m == ours => key,
                    Some(m) => self.unlock(&m)?,
                    None => return Err(self.err("meta row vanished after insert")),
                }
            }
        };
        let key = Arc::new(key);
        *cached = Some(key.clone());
        Ok(key)
    }

    fn unlock(&self, meta: &MetaRow) -> Result<TableKey> {
        sql::POSTGRES.unlock(meta, &self.spec.to_string(), &self.opts)
    }

    fn insert_meta(&self, meta: &MetaRow) -> Result<()> {
        let iterations = i32::try_from(meta.iterations.unwrap_or(0))
            .map_err(|_| self.err("KDF iteration count too large"))?;
        let salt = meta.salt.clone().unwrap_or_default();
        self.conn.with("write meta", |c| {
            c.execute(
                &format!(
                    "INSERT INTO {META_TABLE} (id, format, kdf, iterations, salt, check_nonce, check_value)
                     VALUES (1, 'credshift-postgres-v1', $1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[&meta.kdf, &iterations, &salt, &meta.check_nonce, &meta.check_value],
            )
        })?;
        Ok(())
    }

    fn decode_row(
        &self,
        key: &TableKey,
        id: &str,
        kind: &str,
        metadata: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Credential> {
        let value = SealedValue {
            kind,
            metadata,
            nonce,
            ciphertext,
        };
        decode_row(key, id, &value)
    }

    fn encrypt_cred(&self, key: &TableKey, c: &Credential) -> Result<Encoded> {
        let id = c.id.to_string();
        let (nonce, ct) = key
            .seal(&id, c.secret.expose().as_bytes())
            .map_err(|e| StoreError::item(&c.id, e.to_string()))?;
        Ok((nonce.to_vec(), ct, sql::metadata_json(c)))
    }

    fn upsert_sql() -> String {
        format!(
            "INSERT INTO {CREDENTIALS_TABLE} (id, kind, metadata, nonce, ciphertext, updated_at)
             VALUES ($1, $2, ($3::text)::jsonb, $4, $5, now())
             ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, metadata = EXCLUDED.metadata,
               nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, updated_at = now()"
        )
    }
}

/// Where a row of credshift's table is, in errors and listings.
pub fn row_location(id: &str) -> String {
    format!("{CREDENTIALS_TABLE}[{id}]")
}

/// One fetched row of credshift's table as a credential: the id column
/// (`NAMESPACE/NAME`, also the value's associated data as stored), the
/// kind and metadata columns and the sealed value.
pub fn decode_row(key: &TableKey, id: &str, value: &SealedValue<'_>) -> Result<Credential> {
    let location = row_location(id);
    let cid = CredentialId::from_str(id)
        .map_err(|_| StoreError::parse(&location, "id is not NAMESPACE/NAME"))?;
    key.open(cid, id, value, &location)
}

/// One fetched row without its value, as a listing shows it.
pub fn decode_entry(id: &str, kind: &str, metadata: &str) -> Result<Entry> {
    let location = row_location(id);
    let cid = CredentialId::from_str(id)
        .map_err(|_| StoreError::parse(&location, "id is not NAMESPACE/NAME"))?;
    Ok(Entry {
        id: cid,
        kind: sql::parse_kind(kind, &location)?,
        metadata: sql::parse_metadata(metadata, &location)?,
    })
}

impl Store for PostgresStore {
    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let exists = match self.tables_exist() {
            Ok(e) => e,
            Err(e) => return Capability::unavailable(e.to_string()),
        };
        let mut cap = Capability {
            writable: true,
            exists,
            ..Capability::persistent_store(true, true)
        };
        if exists
            && let Ok(n) = self.conn.with("count", |c| {
                c.query_one(&format!("SELECT count(*) FROM {CREDENTIALS_TABLE}"), &[])
                    .map(|r| r.get::<_, i64>(0))
            })
        {
            cap.item_count = usize::try_from(n).ok();
        }
        if self.opts.passphrase.is_none() && self.opts.key_file.is_none() {
            cap.needs_key =
                Some("no passphrase or key file given: values cannot be read or written".into());
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        let rows = self.conn.with("list", |c| {
            c.query(
                &format!("SELECT id, kind, metadata::text FROM {CREDENTIALS_TABLE} ORDER BY id"),
                &[],
            )
        })?;
        let mut listing = Listing::default();
        for r in rows {
            let id: String = r.get(0);
            match decode_entry(&id, r.get(1), r.get(2)) {
                Ok(e) => listing.entries.push(e),
                Err(e) => listing
                    .errors
                    .push(LocationError::from_error(row_location(&id), &e)),
            }
        }
        Ok(listing)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let key = self.key(false)?;
        let sid = id.to_string();
        let rows = self.conn.with("read", |c| {
            c.query(
                &format!(
                    "SELECT kind, metadata::text, nonce, ciphertext FROM {CREDENTIALS_TABLE} WHERE id = $1"
                ),
                &[&sid],
            )
        })?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        self.decode_row(&key, &sid, r.get(0), r.get(1), r.get(2), r.get(3))
            .map(Some)
    }

    /// One query for the whole batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let fail = |e: &StoreError| ids.iter().map(|_| Err(e.duplicate())).collect();
        let key = match self.key(false) {
            Ok(k) => k,
            Err(e) => return fail(&e),
        };
        let sids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let rows = match self.conn.with("read", |c| {
            c.query(
                &format!(
                    "SELECT id, kind, metadata::text, nonce, ciphertext FROM {CREDENTIALS_TABLE} \
                     WHERE id = ANY($1)"
                ),
                &[&sids],
            )
        }) {
            Ok(rows) => rows,
            Err(e) => return fail(&e),
        };
        let by_id: std::collections::HashMap<String, &postgres::Row> =
            rows.iter().map(|r| (r.get::<_, String>(0), r)).collect();
        sids.iter()
            .map(|sid| match by_id.get(sid) {
                None => Ok(None),
                Some(r) => self
                    .decode_row(&key, sid, r.get(1), r.get(2), r.get(3), r.get(4))
                    .map(Some),
            })
            .collect()
    }

    /// One statement for the whole batch.
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let sids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let deleted = self.conn.with("delete", |c| {
            c.query(
                &format!("DELETE FROM {CREDENTIALS_TABLE} WHERE id = ANY($1) RETURNING id"),
                &[&sids],
            )
        });
        match deleted {
            Ok(rows) => {
                let mut gone: std::collections::HashSet<String> =
                    rows.iter().map(|r| r.get::<_, String>(0)).collect();
                // A repeated id was deleted by its first mention.
                sids.iter().map(|sid| Ok(gone.remove(sid))).collect()
            }
            Err(StoreError::NotFound { .. }) => ids.iter().map(|_| Ok(false)).collect(),
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    /// Atomic: one transaction locks the rows (`SELECT ... FOR UPDATE`),
    /// compares their decrypted values and deletes only the matching ones;
    /// no other writer can change a row between the comparison and the
    /// delete.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let fail = |e: &StoreError| expected.iter().map(|_| Err(e.duplicate())).collect();
        let key = match self.key(false) {
            Ok(k) => k,
            Err(StoreError::NotFound { .. }) => {
                return expected.iter().map(|_| Ok(DeleteIf::Absent)).collect();
            }
            Err(e) => return fail(&e),
        };
        let sids: Vec<String> = expected.iter().map(|c| c.id.to_string()).collect();
        let done = self.conn.with("delete", |c| {
            let mut tx = c.transaction()?;
            let rows = tx.query(
                &format!(
                    "SELECT id, kind, metadata::text, nonce, ciphertext FROM {CREDENTIALS_TABLE} \
                     WHERE id = ANY($1) FOR UPDATE"
                ),
                &[&sids],
            )?;
            let by_id: std::collections::HashMap<String, &postgres::Row> =
                rows.iter().map(|r| (r.get::<_, String>(0), r)).collect();
            let mut doomed: Vec<String> = Vec::new();
            let out: Vec<Result<DeleteIf>> = sids
                .iter()
                .zip(expected)
                .map(|(sid, want)| {
                    let Some(r) = by_id.get(sid) else {
                        return Ok(DeleteIf::Absent);
                    };
                    let now = self.decode_row(&key, sid, r.get(1), r.get(2), r.get(3), r.get(4))?;
                    Ok(if now.same_as(want) {
                        doomed.push(sid.clone());
                        DeleteIf::Deleted
                    } else {
                        DeleteIf::Changed
                    })
                })
                .collect();
            if !doomed.is_empty() {
                tx.execute(
                    &format!("DELETE FROM {CREDENTIALS_TABLE} WHERE id = ANY($1)"),
                    &[&doomed],
                )?;
            }
            tx.commit()?;
            Ok(out)
        });
        match done {
            Ok(out) => out,
            Err(StoreError::NotFound { .. }) => {
                expected.iter().map(|_| Ok(DeleteIf::Absent)).collect()
            }
            Err(e) => fail(&e),
        }
    }

    /// Atomic: one transaction locks the rows (`SELECT ... FOR UPDATE`),
    /// compares their decrypted values and writes only where they match;
    /// an item expected absent is inserted with `ON CONFLICT DO NOTHING`,
    /// so a row another writer inserted meanwhile stays.
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let fail = |e: &StoreError| items.iter().map(|_| Err(e.duplicate())).collect();
        let key = match self.key(true) {
            Ok(k) => k,
            Err(e) => return fail(&e),
        };
        let encoded: Vec<Result<Encoded>> = items
            .iter()
            .map(|r| self.encrypt_cred(&key, &r.new))
            .collect();
        let sids: Vec<String> = items.iter().map(|r| r.new.id.to_string()).collect();
        let done = self.conn.with("write", |c| {
            let mut tx = c.transaction()?;
            let rows = tx.query(
                &format!(
                    "SELECT id, kind, metadata::text, nonce, ciphertext FROM {CREDENTIALS_TABLE} \
                     WHERE id = ANY($1) FOR UPDATE"
                ),
                &[&sids],
            )?;
            let by_id: std::collections::HashMap<String, &postgres::Row> =
                rows.iter().map(|r| (r.get::<_, String>(0), r)).collect();
            let upsert = Self::upsert_sql();
            let insert = format!(
                "INSERT INTO {CREDENTIALS_TABLE} (id, kind, metadata, nonce, ciphertext, updated_at) \
                 VALUES ($1, $2, ($3::text)::jsonb, $4, $5, now()) ON CONFLICT (id) DO NOTHING"
            );
            let mut out: Vec<Result<ReplaceIf>> = Vec::with_capacity(items.len());
            for ((sid, want), enc) in sids.iter().zip(items).zip(&encoded) {
                let (nonce, ct, meta) = match enc {
                    Ok(e) => e,
                    Err(e) => {
                        out.push(Err(e.duplicate()));
                        continue;
                    }
                };
                let now = by_id
                    .get(sid)
                    .map(|r| self.decode_row(&key, sid, r.get(1), r.get(2), r.get(3), r.get(4)))
                    .transpose();
                let now = match now {
                    Ok(now) => now,
                    Err(e) => {
                        out.push(Err(e));
                        continue;
                    }
                };
                if !want.holds(now.as_ref()) {
                    out.push(Ok(ReplaceIf::Changed));
                    continue;
                }
                let kind = want.new.kind.as_str();
                let sql = if now.is_none() { &insert } else { &upsert };
                let n = tx.execute(sql, &[sid, &kind, meta, nonce, ct])?;
                out.push(Ok(if n > 0 {
                    ReplaceIf::Replaced
                } else {
                    ReplaceIf::Changed
                }));
            }
            tx.commit()?;
            Ok(out)
        });
        match done {
            Ok(out) => out,
            Err(e) => fail(&e),
        }
    }

    fn read_all(&self) -> Result<Scan> {
        let key = self.key(false)?;
        let rows = self.conn.with("read all", |c| {
            c.query(
                &format!(
                    "SELECT id, kind, metadata::text, nonce, ciphertext FROM {CREDENTIALS_TABLE} ORDER BY id"
                ),
                &[],
            )
        })?;
        let mut scan = Scan::default();
        for r in rows {
            let id: String = r.get(0);
            match self.decode_row(&key, &id, r.get(1), r.get(2), r.get(3), r.get(4)) {
                Ok(c) => scan.credentials.push(c),
                Err(e) => scan
                    .errors
                    .push(LocationError::from_error(row_location(&id), &e)),
            }
        }
        Ok(scan)
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or_else(|| Err(self.err("no result")))
    }

    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let key = match self.key(true) {
            Ok(k) => k,
            Err(e) => {
                let msg = e.to_string();
                let unavailable = e.is_unavailable();
                return creds
                    .iter()
                    .map(|c| {
                        Err(if unavailable {
                            StoreError::Unavailable {
                                store: self.spec.to_string(),
                                reason: msg.clone(),
                            }
                        } else {
                            StoreError::item(&c.id, msg.clone())
                        })
                    })
                    .collect();
            }
        };
        let encoded: Vec<Result<Encoded>> =
            creds.iter().map(|c| self.encrypt_cred(&key, c)).collect();
        let sql = Self::upsert_sql();
        // One transaction for the batch; a statement error aborts the whole
        // transaction, so then each item is retried alone to isolate it.
        let batch = self.conn.with("write", |client| {
            let mut tx = client.transaction()?;
            let stmt = tx.prepare(&sql)?;
            for (c, enc) in creds.iter().zip(&encoded) {
                if let Ok((nonce, ct, meta)) = enc {
                    tx.execute(
                        &stmt,
                        &[&c.id.to_string(), &c.kind.as_str(), meta, nonce, ct],
                    )?;
                }
            }
            tx.commit()
        });
        match batch {
            Ok(()) => encoded.into_iter().map(|r| r.map(|_| ())).collect(),
            Err(e) if e.is_unavailable() => creds
                .iter()
                .map(|_| {
                    Err(StoreError::Unavailable {
                        store: self.spec.to_string(),
                        reason: e.to_string(),
                    })
                })
                .collect(),
            Err(_) => creds
                .iter()
                .zip(encoded)
                .map(|(c, enc)| {
                    let (nonce, ct, meta) = enc?;
                    self.conn
                        .with("write", |client| {
                            client.execute(
                                &sql,
                                &[&c.id.to_string(), &c.kind.as_str(), &meta, &nonce, &ct],
                            )
                        })
                        .map(|_| ())
                        .map_err(|e| match e {
                            StoreError::Other(m) => StoreError::item(&c.id, m),
                            other => other,
                        })
                })
                .collect(),
        }
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let sid = id.to_string();
        match self.conn.with("delete", |c| {
            c.execute(
                &format!("DELETE FROM {CREDENTIALS_TABLE} WHERE id = $1"),
                &[&sid],
            )
        }) {
            Ok(n) => Ok(n > 0),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn identity(&self) -> Result<StoreIdentity> {
        self.conn.identity()
    }

    fn lock(&self, mode: LockMode, wait: Duration) -> Result<Option<Box<dyn StoreLock>>> {
        let lock = self.conn.advisory_lock(mode, wait)?;
        Ok(Some(Box::new(lock)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::envelope::SealingKey;
    use crate::crypto::kdf::load_key_file as read_key_file;
    use base64::Engine as _;

    /// Seal under `key` as this store does (its dialect, a key file).
    fn table_key(key: [u8; 32]) -> TableKey {
        let source = KeySource::Key(zeroize::Zeroizing::new(key));
        sql::POSTGRES
            .new_key_from(SealingKey::new(&source, 1).unwrap())
            .unwrap()
            .0
    }

    fn decrypt_raw(
        key: &[u8; 32],
        nonce: &[u8],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<zeroize::Zeroizing<String>> {
        let value = SealedValue {
            kind: "api_key",
            metadata: "{}",
            nonce,
            ciphertext: ct,
        };
        let aad = std::str::from_utf8(aad).unwrap();
        decode_row(&table_key(*key), aad, &value)
            .map(|c| zeroize::Zeroizing::new(c.secret.expose().to_string()))
    }

    #[test]
    fn values_are_bound_to_their_id() {
        let key = [3u8; 32];
        let (nonce, ct) = table_key(key).seal("openai/api_key", b"secret").unwrap();
        assert_eq!(
            decrypt_raw(&key, &nonce, b"openai/api_key", &ct)
                .unwrap()
                .as_bytes(),
            b"secret"
        );
        assert!(decrypt_raw(&key, &nonce, b"openai/other", &ct).is_err());
        assert!(decrypt_raw(&[4u8; 32], &nonce, b"openai/api_key", &ct).is_err());
    }

    #[test]
    fn key_files_accept_raw_hex_and_base64() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, [7u8; 32]).unwrap();
        assert_eq!(*read_key_file(&p).unwrap(), [7u8; 32]);
        std::fs::write(&p, format!("{}\n", hex::encode([8u8; 32]))).unwrap();
        assert_eq!(*read_key_file(&p).unwrap(), [8u8; 32]);
        std::fs::write(
            &p,
            base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
        )
        .unwrap();
        assert_eq!(*read_key_file(&p).unwrap(), [9u8; 32]);
        std::fs::write(&p, "too short").unwrap();
        assert!(read_key_file(&p).is_err());
    }
}
