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
//! The key is derived once per opened store. Writes are upserts
//! (`ON CONFLICT (id) DO UPDATE`); `write_many` runs in one transaction.
//! [`Store::lock`] takes a session advisory lock keyed by a hash of the table
//! name, which the engine holds for a whole migration.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::store::encrypted::dup_error;
pub use crate::store::pg::{
    AdvisoryLock, Conn, DbAuth, TlsMode, TlsSettings, classify, connect, split_tls,
};
use crate::store::{
    Capability, Entry, Listing, LocationError, OpenOptions, Scan, Store, StoreLock, StoreSpec,
};

pub const CREDENTIALS_TABLE: &str = "credshift_credentials";
pub const META_TABLE: &str = "credshift_meta";
/// Refuse stored iteration counts above this (a hostile row could stall us).
pub const MAX_KDF_ITERATIONS: u32 = 10_000_000;
pub const MIN_KDF_ITERATIONS: u32 = 100_000;
const KEY_CHECK_PLAINTEXT: &[u8] = b"credshift-key-check-v1";
const KEY_CHECK_AAD: &[u8] = b"credshift:key-check";

pub fn open(spec: &StoreSpec, opts: &OpenOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(PostgresStore::new(spec, opts)?))
}

/// A row's nonce, ciphertext and metadata JSON, ready to store.
type Encoded = (Vec<u8>, Vec<u8>, String);

/// Where the key comes from.
#[derive(Clone)]
enum KeySource {
    Passphrase(Secret),
    KeyFile(Zeroizing<[u8; 32]>),
}

/// What `credshift_meta` says.
struct Meta {
    kdf: String,
    iterations: i32,
    salt: Vec<u8>,
    check_nonce: Vec<u8>,
    check_value: Vec<u8>,
}

pub struct PostgresStore {
    spec: StoreSpec,
    conn: Conn,
    source: Option<KeySource>,
    new_iterations: u32,
    allow_weak_kdf: bool,
    /// Derived once per opened store.
    key: Mutex<Option<Zeroizing<[u8; 32]>>>,
}

impl PostgresStore {
    pub fn new(spec: &StoreSpec, opts: &OpenOptions) -> Result<Self> {
        let source = if let Some(p) = &opts.passphrase {
            Some(KeySource::Passphrase(p.clone()))
        } else if let Some(path) = &opts.key_file {
            Some(KeySource::KeyFile(read_key_file(path)?))
        } else {
            None
        };
        Ok(PostgresStore {
            spec: spec.clone(),
            conn: Conn::new(spec, opts),
            source,
            new_iterations: opts.kdf_iterations,
            allow_weak_kdf: opts.allow_weak_kdf,
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

    fn load_meta(&self) -> Result<Option<Meta>> {
        self.conn.with("read meta", |c| {
            let rows = c.query(
                &format!(
                    "SELECT kdf, iterations, salt, check_nonce, check_value FROM {META_TABLE} WHERE id = 1"
                ),
                &[],
            )?;
            Ok(rows.first().map(|r| Meta {
                kdf: r.get(0),
                iterations: r.get(1),
                salt: r.get(2),
                check_nonce: r.get(3),
                check_value: r.get(4),
            }))
        })
    }

    fn missing_key(&self) -> StoreError {
        StoreError::MissingKey {
            location: self.spec.to_string(),
            message: "a passphrase (--passphrase-file, --passphrase-env, CREDSHIFT_PASSPHRASE) \
                      or a key file is needed"
                .into(),
        }
    }

    /// The store key, derived on first use. With `create`, writes the meta
    /// row when there is none (racing writers agree on the first row).
    fn key(&self, create: bool) -> Result<Zeroizing<[u8; 32]>> {
        let mut cached = self.key.lock().map_err(|_| self.err("key lock poisoned"))?;
        if let Some(k) = cached.as_ref() {
            return Ok(k.clone());
        }
        let source = self.source.clone().ok_or_else(|| self.missing_key())?;
        if create {
            self.ensure_schema()?;
        }
        let meta = match self.load_meta() {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) if !create => None,
            Err(e) => return Err(e),
        };
        let meta = match meta {
            Some(m) => m,
            None if !create => {
                return Err(StoreError::NotFound {
                    location: self.spec.to_string(),
                    hint: "no credshift tables yet".into(),
                });
            }
            None => {
                self.insert_meta(&source)?;
                self.load_meta()?
                    .ok_or_else(|| self.err("meta row vanished after insert"))?
            }
        };
        let key = self.derive(&source, &meta)?;
        let check_ok = decrypt_raw(&key, &meta.check_nonce, KEY_CHECK_AAD, &meta.check_value)
            .is_ok_and(|p| p.as_slice() == KEY_CHECK_PLAINTEXT);
        if !check_ok {
            return Err(StoreError::Crypto {
                location: self.spec.to_string(),
                message: "wrong passphrase or key for this store (key check failed)".into(),
            });
        }
        *cached = Some(key.clone());
        Ok(key)
    }

    fn derive(&self, source: &KeySource, meta: &Meta) -> Result<Zeroizing<[u8; 32]>> {
        match (source, meta.kdf.as_str()) {
            (KeySource::KeyFile(k), "key-file") => Ok(k.clone()),
            (KeySource::Passphrase(p), "pbkdf2-hmac-sha256") => {
                let iterations = u32::try_from(meta.iterations)
                    .map_err(|_| self.err("stored KDF iteration count is negative"))?;
                if iterations > MAX_KDF_ITERATIONS {
                    return Err(self.err(format!(
                        "stored KDF iteration count {iterations} is above {MAX_KDF_ITERATIONS}; refusing"
                    )));
                }
                if iterations < MIN_KDF_ITERATIONS && !self.allow_weak_kdf {
                    return Err(self.err(format!(
                        "stored KDF iteration count {iterations} is below {MIN_KDF_ITERATIONS} \
                         (use --allow-weak-kdf to open it anyway)"
                    )));
                }
                Ok(crate::crypto::kdf::pbkdf2_sha256(
                    p.expose().as_bytes(),
                    &meta.salt,
                    iterations,
                ))
            }
            (KeySource::Passphrase(_), "key-file") => Err(StoreError::MissingKey {
                location: self.spec.to_string(),
                message: "this store was created with a key file; give it with --key-file".into(),
            }),
            (KeySource::KeyFile(_), "pbkdf2-hmac-sha256") => Err(StoreError::MissingKey {
                location: self.spec.to_string(),
                message: "this store was created with a passphrase; a key file cannot open it"
                    .into(),
            }),
            (_, other) => Err(self.err(format!("unknown KDF {other:?} in {META_TABLE}"))),
        }
    }

    fn insert_meta(&self, source: &KeySource) -> Result<()> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| self.err("no system randomness"))?;
        let (kdf, iterations) = match source {
            KeySource::Passphrase(_) => ("pbkdf2-hmac-sha256", self.new_iterations),
            KeySource::KeyFile(_) => ("key-file", 0),
        };
        let meta = Meta {
            kdf: kdf.into(),
            iterations: i32::try_from(iterations)
                .map_err(|_| self.err("KDF iteration count too large"))?,
            salt: salt.to_vec(),
            check_nonce: Vec::new(),
            check_value: Vec::new(),
        };
        let key = self.derive(source, &meta)?;
        let (nonce, check) =
            encrypt_raw(&key, KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT).map_err(|m| self.err(m))?;
        self.conn.with("write meta", |c| {
            c.execute(
                &format!(
                    "INSERT INTO {META_TABLE} (id, format, kdf, iterations, salt, check_nonce, check_value)
                     VALUES (1, 'credshift-postgres-v1', $1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[&meta.kdf, &meta.iterations, &meta.salt, &nonce.as_slice(), &check],
            )
        })?;
        Ok(())
    }

    fn decode_row(
        &self,
        key: &[u8; 32],
        id: &str,
        kind: &str,
        metadata: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Credential> {
        let location = format!("{CREDENTIALS_TABLE}[{id}]");
        let cid = CredentialId::from_str(id)
            .map_err(|_| StoreError::parse(&location, "id is not NAMESPACE/NAME"))?;
        let kind = Kind::from_str(kind).map_err(|m| StoreError::parse(&location, m))?;
        let metadata = parse_metadata(&location, metadata)?;
        let plain =
            decrypt_raw(key, nonce, id.as_bytes(), ciphertext).map_err(|_| StoreError::Crypto {
                location: location.clone(),
                message: "cannot decrypt: the value was altered or moved from another id".into(),
            })?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::parse(&location, "decrypted value is not UTF-8"))?;
        Ok(Credential::new(cid, kind, Secret::new(text)).with_metadata(metadata))
    }

    fn encrypt_cred(&self, key: &[u8; 32], c: &Credential) -> Result<Encoded> {
        let id = c.id.to_string();
        let (nonce, ct) = encrypt_raw(key, id.as_bytes(), c.secret.expose().as_bytes())
            .map_err(|m| StoreError::item(&c.id, m))?;
        let meta = serde_json::to_string(&crate::scrub::public(&c.metadata))
            .map_err(|_| StoreError::item(&c.id, "metadata cannot be encoded"))?;
        Ok((nonce.to_vec(), ct, meta))
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

fn parse_metadata(location: &str, text: &str) -> Result<Metadata> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(StoreError::parse(location, "metadata is not a JSON object")),
        Err(e) => Err(StoreError::json(location, &e)),
    }
}

/// A key file: 32 raw bytes, or 64 hex / 44 base64 characters.
pub fn read_key_file(path: &std::path::Path) -> Result<Zeroizing<[u8; 32]>> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(|e| StoreError::io(path, e))?);
    let bad = || StoreError::MissingKey {
        location: path.display().to_string(),
        message: "a key file holds 32 bytes (raw, 64 hex or base64 characters)".into(),
    };
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() == 32 {
        key.copy_from_slice(&raw);
        return Ok(key);
    }
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?.trim();
    let decoded = Zeroizing::new(if text.len() == 64 {
        hex::decode(text).map_err(|_| bad())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| bad())?
    });
    if decoded.len() != 32 {
        return Err(bad());
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

/// AES-256-GCM with a fresh 12-byte nonce; returns (nonce, ciphertext||tag).
fn encrypt_raw(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> std::result::Result<([u8; 12], Vec<u8>), &'static str> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| "bad key length")?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| "no system randomness")?;
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(nonce), aad, buf.as_mut_slice().into())
        .map_err(|_| "value too long")?;
    buf.extend_from_slice(tag.as_slice());
    Ok((nonce, buf))
}

fn decrypt_raw(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> std::result::Result<Zeroizing<Vec<u8>>, ()> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| ())?;
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| ())?;
    if ciphertext.len() < 16 {
        return Err(());
    }
    let (body, tag) = ciphertext.split_at(ciphertext.len() - 16);
    let tag: [u8; 16] = tag.try_into().map_err(|_| ())?;
    let mut buf = Zeroizing::new(body.to_vec());
    cipher
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            aad,
            buf.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .map_err(|_| ())?;
    Ok(buf)
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
        if self.source.is_none() {
            cap.warnings
                .push("no passphrase or key file given: values cannot be read or written".into());
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
            let location = format!("{CREDENTIALS_TABLE}[{id}]");
            let entry = (|| {
                let cid = CredentialId::from_str(&id)
                    .map_err(|_| StoreError::parse(&location, "id is not NAMESPACE/NAME"))?;
                let kind = Kind::from_str(r.get(1)).map_err(|m| StoreError::parse(&location, m))?;
                let metadata = parse_metadata(&location, r.get(2))?;
                Ok::<_, StoreError>(Entry {
                    id: cid,
                    kind,
                    metadata,
                })
            })();
            match entry {
                Ok(e) => listing.entries.push(e),
                Err(e) => listing
                    .errors
                    .push(LocationError::from_error(&location, &e)),
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
        let fail = |e: &StoreError| ids.iter().map(|_| Err(dup_error(e))).collect();
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
            Err(e) => ids.iter().map(|_| Err(dup_error(&e))).collect(),
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
                Err(e) => scan.errors.push(LocationError::from_error(
                    format!("{CREDENTIALS_TABLE}[{id}]"),
                    &e,
                )),
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

    fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>> {
        let lock = self.conn.advisory_lock(CREDENTIALS_TABLE, wait)?;
        Ok(Some(Box::new(lock)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_to_their_id() {
        let key = [3u8; 32];
        let (nonce, ct) = encrypt_raw(&key, b"openai/api_key", b"secret").unwrap();
        assert_eq!(
            decrypt_raw(&key, &nonce, b"openai/api_key", &ct)
                .unwrap()
                .as_slice(),
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
