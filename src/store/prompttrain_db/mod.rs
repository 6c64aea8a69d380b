//! `prompttrain-db:postgres://URL`: agent-prompttrain's own tables
//! (`accounts`, `trains`, `train_account_mappings`, its migration 013) with
//! values in its format ([`crate::crypto::prompttrain`]).
//!
//! Ids and what they map to:
//! - `account:<account_id>/api_key`, `/oauth_access_token`,
//!   `/oauth_refresh_token`: the `*_encrypted` columns, decrypted with
//!   `CREDENTIAL_ENCRYPTION_KEY`. Metadata: every account credential has
//!   `account_name` and `type` (`api_key`/`oauth`); both OAuth tokens also
//!   carry `expires_at` (epoch ms), `scopes` (list of strings) and `is_max`
//!   when the row has them: the keys the `prompttrain:DIR` store uses, so
//!   dir -> db -> dir keeps them. Other metadata (the file store's `slack`,
//!   `extra`) has no column and is dropped, so
//!   [`Capability::keeps_metadata`] is false.
//! - `train:<train_id>/client_key_hash/<i>`: element `i` (0-based) of
//!   `trains.client_api_keys_hashed`, kind `client_key_hash`, an opaque
//!   lowercase hex SHA-256 that is copied as is, never "decrypted".
//! - `train:<train_id>/client_key/<i>` (kind `client_key`, a plaintext
//!   client key) can be written: its SHA-256 goes into element `i` (the train
//!   row is created when missing). The plaintext is not stored, so `read` of
//!   that id returns `None`; [`Store::verify_hashed`] answers whether the
//!   stored hash matches a given key (constant-time comparison). Deleting it
//!   clears element `i`.
//!
//! The original schema requires an OAuth account to hold both tokens. A
//! write that leaves an account with one OAuth token and no API key (the
//! first of a pair written one at a time, or a delete of one token) stores
//! [`PENDING_TOKEN`] in the other column and sets `is_active = false`;
//! credshift reads that column as empty, and the account becomes active
//! again when the real token arrives. `write_many` with both tokens never
//! needs the placeholder. Deleting every value of an account removes its
//! row (and, by the schema's cascade, its train mappings).
//!
//! Every value costs one PBKDF2 derivation (100,000 iterations), so
//! `read_all` and `write_many` derive in parallel across cores (rayon);
//! writes run in one transaction with a savepoint per account or train.
//! Before writing, the key is checked against values already in the
//! database: when it decrypts none of them, every item fails with a clear
//! error and nothing is written (a mixed-key database would be unreadable by
//! the application).

use std::sync::Mutex;

use rayon::prelude::*;

use crate::credential::{Credential, Secret};
use crate::crypto::prompttrain::{self as fmt, FormatError, MasterKey};
use crate::error::{Result, StoreError};
use crate::store::pg::{AdvisoryLock, Conn, classify};
use crate::store::{LocationError, Scan, Store, StoreSpec};
use crate::unlock::KeyOptions;

mod compare;
mod ids;
mod rows;
mod schema;
mod store_impl;
mod writes;

pub use ids::{Field, Target, parse_id};
pub use schema::SCHEMA_SQL;

use rows::{AccountRow, Job, train_row};

/// Stands in for the missing token of an OAuth account that has only one
/// so far (the schema requires both). Not in the value format, so
/// agent-prompttrain fails clearly on it; the row is kept inactive, and
/// credshift treats the column as empty.
pub const PENDING_TOKEN: &str = "credshift:pending-oauth-token";

/// Largest client key index accepted (keeps the array small).
const MAX_CLIENT_KEY_INDEX: usize = 1000;
/// Column limit of `account_id`, `account_name` and `train_id`.
const MAX_ID_LEN: usize = 255;

const ACCOUNT_COLS: &str = "account_id, account_name, credential_type, api_key_encrypted, \
     oauth_access_token_encrypted, oauth_refresh_token_encrypted, oauth_expires_at, \
     oauth_scopes, oauth_is_max";

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(PromptTrainDb::new(spec, opts)?))
}

pub struct PromptTrainDb {
    spec: StoreSpec,
    conn: Conn,
    key: Option<MasterKey>,
    /// Set once the key has been seen to decrypt a value in this database.
    key_confirmed: Mutex<bool>,
    /// Per-value keys derived by this store, by salt: the read-back of what
    /// it just wrote decrypts without deriving again.
    keys: fmt::KeyCache,
}

impl PromptTrainDb {
    pub fn new(spec: &StoreSpec, opts: &KeyOptions) -> Result<Self> {
        let key = match &opts.prompttrain_key {
            Some(k) => Some(MasterKey::new(k).map_err(|e| StoreError::MissingKey {
                location: spec.to_string(),
                message: e.to_string(),
            })?),
            None => None,
        };
        Ok(PromptTrainDb {
            spec: spec.clone(),
            conn: Conn::new(spec, opts),
            key,
            key_confirmed: Mutex::new(false),
            keys: fmt::KeyCache::default(),
        })
    }

    fn master(&self) -> Result<&MasterKey> {
        self.key.as_ref().ok_or_else(|| StoreError::MissingKey {
            location: self.spec.to_string(),
            message: format!(
                "agent-prompttrain values need {} (set it in the environment or use --prompttrain-key-file)",
                fmt::KEY_ENV
            ),
        })
    }

    fn crypto_error(&self, location: String, e: FormatError) -> StoreError {
        StoreError::Crypto {
            location,
            message: e.to_string(),
        }
    }

    fn tables_exist(&self) -> Result<bool> {
        self.conn.with("look up tables", |c| {
            let row = c.query_one(
                "SELECT to_regclass('accounts') IS NOT NULL AND to_regclass('trains') IS NOT NULL",
                &[],
            )?;
            Ok(row.get(0))
        })
    }

    fn ensure_schema(&self) -> Result<()> {
        if self.tables_exist()? {
            return Ok(());
        }
        let lock = AdvisoryLock::key_for("prompttrain-db-schema");
        self.conn.with("create tables", |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])?;
            tx.batch_execute(SCHEMA_SQL)?;
            tx.commit()
        })
    }

    /// The rows of the given accounts, in one query.
    fn accounts_in(&self, ids: &[&str]) -> Result<Vec<AccountRow>> {
        self.conn.with("read accounts", |c| {
            let rows = c.query(
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE account_id = ANY($1)"),
                &[&ids],
            )?;
            Ok(rows.iter().map(AccountRow::from_row).collect())
        })
    }

    /// The hash arrays of the given trains, in one query.
    fn trains_in(&self, ids: &[&str]) -> Result<Vec<(String, Vec<Option<String>>)>> {
        self.conn.with("read trains", |c| {
            let rows = c.query(
                "SELECT train_id, client_api_keys_hashed FROM trains WHERE train_id = ANY($1)",
                &[&ids],
            )?;
            Ok(rows.iter().map(train_row).collect())
        })
    }

    fn accounts(&self, where_id: Option<&str>) -> Result<Vec<AccountRow>> {
        self.conn.with("read accounts", |c| {
            let rows = match where_id {
                Some(id) => c.query(
                    &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE account_id = $1"),
                    &[&id],
                )?,
                None => c.query(
                    &format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY account_id"),
                    &[],
                )?,
            };
            Ok(rows.iter().map(AccountRow::from_row).collect())
        })
    }

    fn trains(&self, where_id: Option<&str>) -> Result<Vec<(String, Vec<Option<String>>)>> {
        self.conn.with("read trains", |c| {
            let rows = match where_id {
                Some(id) => c.query(
                    "SELECT train_id, client_api_keys_hashed FROM trains WHERE train_id = $1",
                    &[&id],
                )?,
                None => c.query(
                    "SELECT train_id, client_api_keys_hashed FROM trains ORDER BY train_id",
                    &[],
                )?,
            };
            Ok(rows.iter().map(train_row).collect())
        })
    }

    /// Whether the key decrypts the values already stored (true when there
    /// are none, or none that could tell). At most three derivations.
    fn key_fits_database(&self, key: &MasterKey) -> Result<bool> {
        if self.key_confirmed.lock().is_ok_and(|g| *g) {
            return Ok(true);
        }
        let samples: Vec<String> = self.conn.with("sample values", |c| {
            let rows = c.query(
                "SELECT v FROM (
                   SELECT api_key_encrypted AS v FROM accounts
                   UNION ALL SELECT oauth_access_token_encrypted FROM accounts
                   UNION ALL SELECT oauth_refresh_token_encrypted FROM accounts) s
                 WHERE v IS NOT NULL AND v <> $1 LIMIT 3",
                &[&PENDING_TOKEN],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        let results: Vec<std::result::Result<Secret, FormatError>> =
            samples.par_iter().map(|s| fmt::decrypt(key, s)).collect();
        let fits = results.iter().any(|r| r.is_ok())
            || !results
                .iter()
                .any(|r| matches!(r, Err(FormatError::Authentication)));
        if fits && let Ok(mut g) = self.key_confirmed.lock() {
            *g = true;
        }
        Ok(fits)
    }

    fn read_hash(&self, train: &str, index: usize) -> Result<Option<String>> {
        let trains = match self.trains(Some(train)) {
            Ok(t) => t,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(trains
            .into_iter()
            .next()
            .and_then(|(_, hashes)| hashes.into_iter().nth(index).flatten()))
    }

    fn decrypt_jobs(&self, jobs: Vec<Job>, scan: &mut Scan) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let key = self.master()?;
        let stored: Vec<&str> = jobs.iter().map(|j| j.stored.as_str()).collect();
        let results: Vec<std::result::Result<Secret, FormatError>> =
            fmt::decrypt_many_cached(key, &stored, &self.keys);
        for (job, res) in jobs.into_iter().zip(results) {
            match res {
                Ok(secret) => scan
                    .credentials
                    .push(Credential::new(job.id, job.kind, secret).with_metadata(job.metadata)),
                Err(e) => scan.errors.push(LocationError::from_error(
                    job.location.clone(),
                    &self.crypto_error(job.location, e),
                )),
            }
        }
        Ok(())
    }
}

impl PromptTrainDb {
    fn list_errors(
        &self,
        accounts: &[AccountRow],
        trains: &[(String, Vec<Option<String>>)],
    ) -> Vec<LocationError> {
        let mut errors = Vec::new();
        for a in accounts.iter().filter(|a| a.account_id.contains('/')) {
            errors.push(LocationError {
                severity: crate::store::Severity::Error,
                location: format!("accounts[{}]", a.account_id),
                error: "account id contains '/', which credshift ids cannot hold".into(),
            });
        }
        for (t, _) in trains.iter().filter(|(t, _)| t.contains('/')) {
            errors.push(LocationError {
                severity: crate::store::Severity::Error,
                location: format!("trains[{t}]"),
                error: "train id contains '/', which credshift ids cannot hold".into(),
            });
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::rows::{credential_type, default_account_name, oauth_columns};
    use super::*;
    use crate::credential::{CredentialId, Metadata};

    fn id(s: &str) -> CredentialId {
        s.parse().unwrap()
    }

    #[test]
    fn ids_map_to_columns_and_slots() {
        assert_eq!(
            parse_id(&id("account:acc_alpha/api_key")).unwrap(),
            Target::Account {
                account: "acc_alpha".into(),
                field: Field::ApiKey
            }
        );
        assert_eq!(
            parse_id(&id("train:team-alpha/client_key/1")).unwrap(),
            Target::ClientKey {
                train: "team-alpha".into(),
                index: 1
            }
        );
        assert_eq!(
            parse_id(&id("train:t/client_key_hash/0")).unwrap(),
            Target::ClientKeyHash {
                train: "t".into(),
                index: 0
            }
        );
        for bad in [
            "openai/api_key",
            "account:a/password",
            "train:t/client_key/x",
            "train:t/client_key/01",
            "train:t/client_key/5000",
            "train:t/other/0",
        ] {
            assert!(parse_id(&id(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_type_keeps_the_schema_constraint() {
        assert_eq!(credential_type(None, [true, false, false]), Ok("api_key"));
        assert_eq!(credential_type(None, [false, true, true]), Ok("oauth"));
        assert!(credential_type(None, [false, true, false]).is_err());
        assert_eq!(
            credential_type(Some("oauth"), [true, true, true]),
            Ok("oauth")
        );
        assert_eq!(
            credential_type(Some("oauth"), [true, false, true]),
            Ok("api_key")
        );
        assert!(credential_type(Some("oauth"), [false, false, true]).is_err());
    }

    #[test]
    fn default_names_follow_the_acc_prefix() {
        assert_eq!(default_account_name("acc_gamma"), "gamma");
        assert_eq!(default_account_name("acc_"), "acc_");
        assert_eq!(default_account_name("custom"), "custom");
    }

    #[test]
    fn oauth_metadata_becomes_columns() {
        let mut m = Metadata::new();
        m.insert("expires_at".into(), 1790003600000i64.into());
        m.insert(
            "scopes".into(),
            serde_json::json!(["user:inference", "user:profile"]),
        );
        m.insert("is_max".into(), true.into());
        let c = oauth_columns(&m);
        assert_eq!(c.expires_at, Some(1790003600000));
        assert_eq!(
            c.scopes.as_deref(),
            Some(&["user:inference".to_string(), "user:profile".to_string()][..])
        );
        assert_eq!(c.is_max, Some(true));
        let empty = oauth_columns(&Metadata::new());
        assert!(empty.expires_at.is_none() && empty.scopes.is_none() && empty.is_max.is_none());
    }

    #[test]
    fn a_short_key_is_refused_at_open_without_quoting_it() {
        let spec: StoreSpec = "prompttrain-db:postgres://u@127.0.0.1:1/x".parse().unwrap();
        let opts = KeyOptions {
            prompttrain_key: Some(Secret::new("too-short-key")),
            ..KeyOptions::default()
        };
        let e = open(&spec, &opts).err().unwrap().to_string();
        assert!(e.contains("CREDENTIAL_ENCRYPTION_KEY"), "{e}");
        assert!(!e.contains("too-short-key"), "{e}");
    }
}
