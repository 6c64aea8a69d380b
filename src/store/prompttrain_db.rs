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

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use postgres::Transaction;
use rayon::prelude::*;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret, expires_at_ms};
use crate::crypto::prompttrain::{self as fmt, FormatError, MasterKey};
use crate::error::{Result, StoreError};
use crate::store::pg::{AdvisoryLock, Conn, classify};
use crate::store::{
    Capability, Entry, Listing, LocationError, OpenOptions, Scan, Store, StoreLock, StoreSpec,
};

/// agent-prompttrain's migration 013 tables, created on first write into
/// an empty database.
pub const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS accounts (
  account_id VARCHAR(255) PRIMARY KEY,
  account_name VARCHAR(255) UNIQUE NOT NULL,
  credential_type VARCHAR(20) NOT NULL CHECK (credential_type IN ('api_key', 'oauth')),
  api_key_encrypted TEXT,
  oauth_access_token_encrypted TEXT,
  oauth_refresh_token_encrypted TEXT,
  oauth_expires_at BIGINT,
  oauth_scopes TEXT[],
  oauth_is_max BOOLEAN DEFAULT false,
  is_active BOOLEAN DEFAULT true,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  updated_at TIMESTAMPTZ DEFAULT NOW(),
  last_used_at TIMESTAMPTZ,
  CONSTRAINT api_key_required CHECK (
    (credential_type = 'api_key' AND api_key_encrypted IS NOT NULL) OR
    (credential_type = 'oauth' AND oauth_access_token_encrypted IS NOT NULL AND oauth_refresh_token_encrypted IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS trains (
  train_id VARCHAR(255) PRIMARY KEY,
  train_name VARCHAR(255),
  description TEXT,
  client_api_keys_hashed TEXT[],
  slack_config JSONB,
  default_account_id VARCHAR(255) REFERENCES accounts(account_id) ON DELETE SET NULL,
  is_active BOOLEAN DEFAULT true,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS train_account_mappings (
  train_id VARCHAR(255) NOT NULL REFERENCES trains(train_id) ON DELETE CASCADE,
  account_id VARCHAR(255) NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
  priority INTEGER DEFAULT 0,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  PRIMARY KEY (train_id, account_id)
);
CREATE INDEX IF NOT EXISTS idx_accounts_type ON accounts(credential_type);
CREATE INDEX IF NOT EXISTS idx_accounts_active ON accounts(is_active) WHERE is_active = true;
CREATE INDEX IF NOT EXISTS idx_accounts_last_used ON accounts(last_used_at);
CREATE INDEX IF NOT EXISTS idx_trains_active ON trains(is_active) WHERE is_active = true;
CREATE INDEX IF NOT EXISTS idx_trains_default_account ON trains(default_account_id);
CREATE INDEX IF NOT EXISTS idx_train_mappings_train ON train_account_mappings(train_id);
CREATE INDEX IF NOT EXISTS idx_train_mappings_account ON train_account_mappings(account_id);
CREATE INDEX IF NOT EXISTS idx_train_mappings_priority ON train_account_mappings(train_id, priority);
";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    ApiKey,
    OauthAccess,
    OauthRefresh,
}

impl Field {
    pub const ALL: [Field; 3] = [Field::ApiKey, Field::OauthAccess, Field::OauthRefresh];

    pub fn name(self) -> &'static str {
        match self {
            Field::ApiKey => "api_key",
            Field::OauthAccess => "oauth_access_token",
            Field::OauthRefresh => "oauth_refresh_token",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Field::ApiKey => "api_key_encrypted",
            Field::OauthAccess => "oauth_access_token_encrypted",
            Field::OauthRefresh => "oauth_refresh_token_encrypted",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Field::ApiKey => Kind::ApiKey,
            Field::OauthAccess => Kind::OauthAccess,
            Field::OauthRefresh => Kind::OauthRefresh,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where an id lives in the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Account { account: String, field: Field },
    ClientKey { train: String, index: usize },
    ClientKeyHash { train: String, index: usize },
}

const ID_FORMS: &str = "prompttrain-db holds account:<id>/api_key, \
     account:<id>/oauth_access_token, account:<id>/oauth_refresh_token, \
     train:<id>/client_key/<n> and train:<id>/client_key_hash/<n>";

pub fn parse_id(id: &CredentialId) -> std::result::Result<Target, String> {
    let too_long = |s: &str| s.len() > MAX_ID_LEN || s.is_empty();
    if let Some(account) = id.namespace.strip_prefix("account:") {
        if too_long(account) {
            return Err(format!("account id must be 1 to {MAX_ID_LEN} bytes"));
        }
        let field = Field::ALL
            .into_iter()
            .find(|f| f.name() == id.name)
            .ok_or_else(|| ID_FORMS.to_string())?;
        return Ok(Target::Account {
            account: account.to_string(),
            field,
        });
    }
    if let Some(train) = id.namespace.strip_prefix("train:") {
        if too_long(train) {
            return Err(format!("train id must be 1 to {MAX_ID_LEN} bytes"));
        }
        let (what, n) = id
            .name
            .split_once('/')
            .ok_or_else(|| ID_FORMS.to_string())?;
        let index: usize = n
            .parse()
            .ok()
            .filter(|i: &usize| *i <= MAX_CLIENT_KEY_INDEX && n == i.to_string())
            .ok_or_else(|| format!("client key index must be 0 to {MAX_CLIENT_KEY_INDEX}"))?;
        let train = train.to_string();
        return match what {
            "client_key" => Ok(Target::ClientKey { train, index }),
            "client_key_hash" => Ok(Target::ClientKeyHash { train, index }),
            _ => Err(ID_FORMS.to_string()),
        };
    }
    Err(ID_FORMS.to_string())
}

pub fn open(spec: &StoreSpec, opts: &OpenOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(PromptTrainDb::new(spec, opts)?))
}

/// One row of `accounts`.
struct AccountRow {
    account_id: String,
    account_name: String,
    credential_type: String,
    values: [Option<String>; 3],
    expires_at: Option<i64>,
    scopes: Option<Vec<Option<String>>>,
    is_max: Option<bool>,
}

impl AccountRow {
    fn from_row(r: &postgres::Row) -> AccountRow {
        AccountRow {
            account_id: r.get(0),
            account_name: r.get(1),
            credential_type: r.get(2),
            values: [3, 4, 5].map(|i| r.get::<_, Option<String>>(i).filter(|v| v != PENDING_TOKEN)),
            expires_at: r.get(6),
            scopes: r.get(7),
            is_max: r.get(8),
        }
    }

    fn metadata(&self, field: Field) -> Metadata {
        let mut m = Metadata::new();
        m.insert("account_name".into(), self.account_name.clone().into());
        m.insert("type".into(), self.credential_type.clone().into());
        if field != Field::ApiKey {
            if let Some(e) = self.expires_at {
                m.insert("expires_at".into(), e.into());
            }
            if let Some(s) = &self.scopes {
                let list: Vec<serde_json::Value> =
                    s.iter().flatten().map(|x| x.clone().into()).collect();
                m.insert("scopes".into(), list.into());
            }
            if let Some(b) = self.is_max {
                m.insert("is_max".into(), b.into());
            }
        }
        m
    }

    fn id(&self, field: Field) -> CredentialId {
        CredentialId::new(format!("account:{}", self.account_id), field.name())
    }

    fn location(&self, field: Field) -> String {
        format!("accounts[{}].{}", self.account_id, field.column())
    }
}

fn train_hash_id(train: &str, index: usize) -> CredentialId {
    CredentialId::new(format!("train:{train}"), format!("client_key_hash/{index}"))
}

/// An encrypted value to decrypt, with what the credential will carry.
struct Job {
    id: CredentialId,
    kind: Kind,
    metadata: Metadata,
    stored: String,
    location: String,
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
    pub fn new(spec: &StoreSpec, opts: &OpenOptions) -> Result<Self> {
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
            Ok(rows
                .iter()
                .map(|r| {
                    let hashes: Option<Vec<Option<String>>> = r.get(1);
                    (r.get(0), hashes.unwrap_or_default())
                })
                .collect())
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
            Ok(rows
                .iter()
                .map(|r| {
                    let hashes: Option<Vec<Option<String>>> = r.get(1);
                    (r.get(0), hashes.unwrap_or_default())
                })
                .collect())
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
        let results: Vec<std::result::Result<Secret, FormatError>> = jobs
            .par_iter()
            .map(|j| fmt::decrypt_cached(key, &j.stored, &self.keys))
            .collect();
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

/// Rows for a deduplicated set of ids in one query; none when there are no
/// ids or no tables yet (then nothing is there).
fn fetch_in<T>(ids: &mut Vec<&str>, query: impl Fn(&[&str]) -> Result<Vec<T>>) -> Result<Vec<T>> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match query(ids) {
        Err(StoreError::NotFound { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// Fail every index in `idx` with a copy of `e`'s message (or as unavailable).
fn fail_all(
    results: &mut [Option<Result<()>>],
    creds: &[Credential],
    idx: &[usize],
    e: &StoreError,
) {
    for &i in idx {
        results[i] = Some(Err(copy_error(&creds[i].id, e)));
    }
}

fn copy_error(id: &CredentialId, e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { store, reason } => StoreError::Unavailable {
            store: store.clone(),
            reason: reason.clone(),
        },
        StoreError::Crypto { location, message } => StoreError::Crypto {
            location: format!("{location} ({id})"),
            message: message.clone(),
        },
        other => StoreError::item(id, other.to_string()),
    }
}

/// The credential type the row can have with these values, keeping the
/// current one when it is still valid.
fn credential_type(
    current: Option<&str>,
    has: [bool; 3],
) -> std::result::Result<&'static str, String> {
    let valid = |t: &str| match t {
        "api_key" => has[0],
        "oauth" => has[1] && has[2],
        _ => false,
    };
    if let Some(t) = current
        && valid(t)
    {
        return Ok(if t == "api_key" { "api_key" } else { "oauth" });
    }
    if has[0] {
        Ok("api_key")
    } else if has[1] && has[2] {
        Ok("oauth")
    } else {
        Err(
            "agent-prompttrain keeps an OAuth account's access and refresh tokens together: \
             write (or delete) both in one batch"
                .into(),
        )
    }
}

/// Account name when the credential has none: the id without `acc_`
/// (agent-prompttrain names `acc_<name>` after its credential file).
fn default_account_name(account_id: &str) -> String {
    account_id
        .strip_prefix("acc_")
        .filter(|s| !s.is_empty())
        .unwrap_or(account_id)
        .to_string()
}

/// Metadata keys held in the `oauth_*` columns.
const OAUTH_KEYS: [&str; 3] = ["expires_at", "scopes", "is_max"];

/// OAuth columns from an OAuth token's metadata.
struct OauthColumns {
    expires_at: Option<i64>,
    scopes: Option<Vec<String>>,
    is_max: Option<bool>,
}

fn oauth_columns(m: &Metadata) -> OauthColumns {
    OauthColumns {
        expires_at: expires_at_ms(m),
        scopes: m.get("scopes").and_then(|v| match v {
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
            ),
            serde_json::Value::String(s) => Some(s.split_whitespace().map(String::from).collect()),
            _ => None,
        }),
        is_max: m.get("is_max").and_then(|v| v.as_bool()),
    }
}

/// The row's type, which values it really has (a placeholder counts as
/// absent) and whether it holds a placeholder; locked for the transaction.
fn account_state(
    tx: &mut Transaction<'_>,
    account: &str,
) -> std::result::Result<Option<(String, [bool; 3], bool)>, postgres::Error> {
    let row = tx.query_opt(
        "SELECT credential_type, api_key_encrypted IS NOT NULL, \
         coalesce(oauth_access_token_encrypted <> $2, false), \
         coalesce(oauth_refresh_token_encrypted <> $2, false), \
         coalesce(oauth_access_token_encrypted = $2 OR oauth_refresh_token_encrypted = $2, false) \
         FROM accounts WHERE account_id = $1 FOR UPDATE",
        &[&account, &PENDING_TOKEN],
    )?;
    Ok(row.map(|r| (r.get(0), [r.get(1), r.get(2), r.get(3)], r.get(4))))
}

/// One account's writes: (item index, field, encrypted value).
type AccountWrites = Vec<(usize, Field, String)>;

fn apply_account(
    tx: &mut Transaction<'_>,
    account: &str,
    writes: &AccountWrites,
    creds: &[Credential],
) -> std::result::Result<std::result::Result<(), String>, postgres::Error> {
    let existing = account_state(tx, account)?;
    let mut values: [Option<&str>; 3] = [None, None, None];
    let mut has = existing.as_ref().map_or([false; 3], |e| e.1);
    let mut name: Option<String> = None;
    let mut oauth: Option<OauthColumns> = None;
    for (i, field, enc) in writes {
        values[field.index()] = Some(enc.as_str());
        has[field.index()] = true;
        let meta = &creds[*i].metadata;
        if name.is_none()
            && let Some(n) = meta.get("account_name").and_then(|v| v.as_str())
        {
            name = Some(n.to_string());
        }
        // Account-level OAuth fields: the access token's metadata wins;
        // a refresh token alone sets them only when it carries them.
        if *field == Field::OauthAccess
            || (oauth.is_none() && OAUTH_KEYS.iter().any(|k| meta.contains_key(*k)))
        {
            oauth = Some(oauth_columns(meta));
        }
    }
    if let Some(n) = &name
        && (n.is_empty() || n.len() > MAX_ID_LEN)
    {
        return Ok(Err(format!("account_name must be 1 to {MAX_ID_LEN} bytes")));
    }
    let current = existing.as_ref().map(|e| e.0.as_str());
    let was_pending = existing.as_ref().is_some_and(|e| e.2);
    // One OAuth token and nothing else: keep a placeholder for the other
    // and the account inactive until it arrives.
    let (ctype, pending) = match credential_type(current, has) {
        Ok(t) => (t, false),
        Err(_) => ("oauth", true),
    };
    if pending {
        for f in [Field::OauthAccess, Field::OauthRefresh] {
            if !has[f.index()] {
                values[f.index()] = Some(PENDING_TOKEN);
            }
        }
    }
    // Active again once complete, if only the placeholder held it back.
    let active: Option<bool> = if pending {
        Some(false)
    } else if was_pending {
        Some(true)
    } else {
        None
    };
    let set_oauth = oauth.is_some();
    let oauth = oauth.unwrap_or(OauthColumns {
        expires_at: None,
        scopes: None,
        is_max: None,
    });
    if existing.is_some() {
        tx.execute(
            "UPDATE accounts SET
               api_key_encrypted = COALESCE($2, api_key_encrypted),
               oauth_access_token_encrypted = COALESCE($3, oauth_access_token_encrypted),
               oauth_refresh_token_encrypted = COALESCE($4, oauth_refresh_token_encrypted),
               credential_type = $5,
               account_name = COALESCE($6, account_name),
               oauth_expires_at = CASE WHEN $7 THEN $8 ELSE oauth_expires_at END,
               oauth_scopes = CASE WHEN $7 THEN $9 ELSE oauth_scopes END,
               oauth_is_max = CASE WHEN $7 THEN $10 ELSE oauth_is_max END,
               is_active = COALESCE($11, is_active),
               updated_at = now()
             WHERE account_id = $1",
            &[
                &account,
                &values[0],
                &values[1],
                &values[2],
                &ctype,
                &name,
                &set_oauth,
                &oauth.expires_at,
                &oauth.scopes,
                &oauth.is_max,
                &active,
            ],
        )?;
    } else {
        let name = name.unwrap_or_else(|| default_account_name(account));
        tx.execute(
            "INSERT INTO accounts (account_id, account_name, credential_type, api_key_encrypted,
               oauth_access_token_encrypted, oauth_refresh_token_encrypted, oauth_expires_at,
               oauth_scopes, oauth_is_max, is_active)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, true))",
            &[
                &account,
                &name,
                &ctype,
                &values[0],
                &values[1],
                &values[2],
                &oauth.expires_at,
                &oauth.scopes,
                &oauth.is_max,
                &active,
            ],
        )?;
    }
    Ok(Ok(()))
}

/// Set (Some) or clear (None) slots of a train's hash array.
fn apply_train(
    tx: &mut Transaction<'_>,
    train: &str,
    slots: &[(usize, Option<String>)],
) -> std::result::Result<Vec<bool>, postgres::Error> {
    let existing = tx.query_opt(
        "SELECT client_api_keys_hashed FROM trains WHERE train_id = $1 FOR UPDATE",
        &[&train],
    )?;
    let mut hashes: Vec<Option<String>> = existing
        .as_ref()
        .and_then(|r| r.get::<_, Option<Vec<Option<String>>>>(0))
        .unwrap_or_default();
    let mut had = Vec::with_capacity(slots.len());
    for (index, value) in slots {
        if hashes.len() <= *index {
            if value.is_none() {
                had.push(false);
                continue;
            }
            hashes.resize(index + 1, None);
        }
        had.push(hashes[*index].is_some());
        hashes[*index] = value.clone();
    }
    while hashes.last().is_some_and(|h| h.is_none()) {
        hashes.pop();
    }
    if existing.is_some() {
        tx.execute(
            "UPDATE trains SET client_api_keys_hashed = $2, updated_at = now() WHERE train_id = $1",
            &[&train, &hashes],
        )?;
    } else if slots.iter().any(|(_, v)| v.is_some()) {
        tx.execute(
            "INSERT INTO trains (train_id, client_api_keys_hashed) VALUES ($1, $2)",
            &[&train, &hashes],
        )?;
    }
    Ok(had)
}

impl Store for PromptTrainDb {
    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let exists = match self.tables_exist() {
            Ok(e) => e,
            Err(e) => return Capability::unavailable(e.to_string()),
        };
        let mut cap = Capability {
            writable: self.key.is_some(),
            exists,
            ..Capability::persistent_store(true, false)
        };
        cap.warnings.push(
            "client keys are stored as SHA-256 hashes: they cannot be read back, only checked"
                .into(),
        );
        cap.warnings
            .push("only account_name, expires_at, scopes and is_max metadata are kept".into());
        match &self.key {
            None => cap.warnings.push(format!(
                "{} is not set: account values cannot be read or written",
                fmt::KEY_ENV
            )),
            Some(k) if exists => match self.key_fits_database(k) {
                Ok(true) => {}
                Ok(false) => {
                    cap.writable = false;
                    cap.warnings.push(format!(
                        "{} does not decrypt the values in this database",
                        fmt::KEY_ENV
                    ));
                }
                Err(e) => cap.warnings.push(e.to_string()),
            },
            Some(_) => {}
        }
        if exists && let Ok(l) = self.list() {
            cap.item_count = Some(l.entries.len());
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        let accounts = self.accounts(None)?;
        let trains = self.trains(None)?;
        let mut listing = Listing {
            errors: self.list_errors(&accounts, &trains),
            ..Default::default()
        };
        for a in accounts.iter().filter(|a| !a.account_id.contains('/')) {
            for f in Field::ALL {
                if a.values[f.index()].is_some() {
                    listing.entries.push(Entry {
                        id: a.id(f),
                        kind: f.kind(),
                        metadata: a.metadata(f),
                    });
                }
            }
        }
        for (train, hashes) in trains.iter().filter(|(t, _)| !t.contains('/')) {
            for (i, h) in hashes.iter().enumerate() {
                if h.is_some() {
                    listing.entries.push(Entry {
                        id: train_hash_id(train, i),
                        kind: Kind::ClientKeyHash,
                        metadata: Metadata::new(),
                    });
                }
            }
        }
        Ok(listing)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        match parse_id(id) {
            Ok(Target::Account { account, field }) => {
                let rows = match self.accounts(Some(&account)) {
                    Ok(r) => r,
                    Err(StoreError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let Some(row) = rows.into_iter().next() else {
                    return Ok(None);
                };
                let Some(stored) = &row.values[field.index()] else {
                    return Ok(None);
                };
                let secret = fmt::decrypt_cached(self.master()?, stored, &self.keys)
                    .map_err(|e| self.crypto_error(row.location(field), e))?;
                Ok(Some(
                    Credential::new(id.clone(), field.kind(), secret)
                        .with_metadata(row.metadata(field)),
                ))
            }
            Ok(Target::ClientKeyHash { train, index }) => Ok(self
                .read_hash(&train, index)?
                .map(|h| Credential::new(id.clone(), Kind::ClientKeyHash, h))),
            // Only the hash is stored: see `verify_hashed`.
            Ok(Target::ClientKey { .. }) | Err(_) => Ok(None),
        }
    }

    /// One query for the batch's accounts and one for its trains; values
    /// decrypted in parallel, with the keys this store derived when it wrote
    /// them (the engine's read-back derives nothing again).
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let targets: Vec<Option<Target>> = ids.iter().map(|id| parse_id(id).ok()).collect();
        let mut account_ids: Vec<&str> = Vec::new();
        let mut train_ids: Vec<&str> = Vec::new();
        for t in targets.iter().flatten() {
            match t {
                Target::Account { account, .. } => account_ids.push(account),
                Target::ClientKeyHash { train, .. } => train_ids.push(train),
                Target::ClientKey { .. } => {}
            }
        }
        let accounts: Result<BTreeMap<String, AccountRow>> =
            fetch_in(&mut account_ids, |ids| self.accounts_in(ids)).map(|rows| {
                rows.into_iter()
                    .map(|r| (r.account_id.clone(), r))
                    .collect()
            });
        let trains: Result<BTreeMap<String, Vec<Option<String>>>> =
            fetch_in(&mut train_ids, |ids| self.trains_in(ids))
                .map(|rows| rows.into_iter().collect());

        // What each id needs: an answer now, or a value to decrypt.
        let mut out: Vec<Option<Result<Option<Credential>>>> = Vec::with_capacity(ids.len());
        let mut jobs: Vec<(usize, &AccountRow, Field, &str)> = Vec::new();
        for (i, (id, t)) in ids.iter().zip(&targets).enumerate() {
            out.push(match t {
                Some(Target::Account { account, field }) => match &accounts {
                    Err(e) => Some(Err(crate::store::encrypted::dup_error(e))),
                    Ok(rows) => match rows.get(account) {
                        Some(row) => match &row.values[field.index()] {
                            Some(stored) => match self.master() {
                                Ok(_) => {
                                    jobs.push((i, row, *field, stored));
                                    None
                                }
                                Err(e) => Some(Err(e)),
                            },
                            None => Some(Ok(None)),
                        },
                        None => Some(Ok(None)),
                    },
                },
                Some(Target::ClientKeyHash { train, index }) => match &trains {
                    Err(e) => Some(Err(crate::store::encrypted::dup_error(e))),
                    Ok(rows) => Some(Ok(rows
                        .get(train)
                        .and_then(|h| h.get(*index).cloned().flatten())
                        .map(|h| Credential::new(id.clone(), Kind::ClientKeyHash, h)))),
                },
                // Only the hash is stored: see `verify_hashed`.
                Some(Target::ClientKey { .. }) | None => Some(Ok(None)),
            });
        }
        if let Ok(key) = self.master() {
            let decrypted: Vec<std::result::Result<Secret, FormatError>> = jobs
                .par_iter()
                .map(|(_, _, _, stored)| fmt::decrypt_cached(key, stored, &self.keys))
                .collect();
            for ((i, row, field, _), res) in jobs.iter().zip(decrypted) {
                out[*i] = Some(match res {
                    Ok(secret) => Ok(Some(
                        Credential::new(ids[*i].clone(), field.kind(), secret)
                            .with_metadata(row.metadata(*field)),
                    )),
                    Err(e) => Err(self.crypto_error(row.location(*field), e)),
                });
            }
        }
        out.into_iter()
            .zip(ids)
            .map(|(r, id)| r.unwrap_or_else(|| Err(StoreError::item(id, "not read"))))
            .collect()
    }

    fn read_all(&self) -> Result<Scan> {
        let accounts = self.accounts(None)?;
        let trains = self.trains(None)?;
        let listing_errors = self.list_errors(&accounts, &trains);
        let mut scan = Scan {
            errors: listing_errors,
            ..Default::default()
        };
        let mut jobs = Vec::new();
        for a in &accounts {
            if a.account_id.contains('/') {
                continue;
            }
            for f in Field::ALL {
                if let Some(stored) = &a.values[f.index()] {
                    jobs.push(Job {
                        id: a.id(f),
                        kind: f.kind(),
                        metadata: a.metadata(f),
                        stored: stored.clone(),
                        location: a.location(f),
                    });
                }
            }
        }
        self.decrypt_jobs(jobs, &mut scan)?;
        for (train, hashes) in trains {
            if train.contains('/') {
                continue;
            }
            for (i, h) in hashes.into_iter().enumerate() {
                if let Some(h) = h {
                    scan.credentials.push(Credential::new(
                        train_hash_id(&train, i),
                        Kind::ClientKeyHash,
                        h,
                    ));
                }
            }
        }
        Ok(scan)
    }

    fn check(&self, c: &Credential) -> Option<String> {
        if let Some(r) = c.invalid_reason() {
            return Some(r.into());
        }
        if c.id.namespace.starts_with("account:") && c.id.name == "slack_webhook_url" {
            return Some(
                "agent-prompttrain's database keeps a Slack webhook URL in clear \
                 (trains.slack_config); credshift does not write it there"
                    .into(),
            );
        }
        match parse_id(&c.id) {
            Err(m) => Some(m),
            Ok(Target::Account { field, .. }) => {
                if c.kind != field.kind() {
                    Some(format!(
                        "agent-prompttrain's {} holds kind {}, not {}",
                        field.column(),
                        field.kind(),
                        c.kind
                    ))
                } else if self.key.is_none() {
                    Some(format!("{} is not set", fmt::KEY_ENV))
                } else {
                    None
                }
            }
            Ok(Target::ClientKey { .. }) => (c.kind != Kind::ClientKey).then(|| {
                format!(
                    "train:<id>/client_key/<n> takes kind client_key, not {}",
                    c.kind
                )
            }),
            Ok(Target::ClientKeyHash { .. }) => {
                if c.kind != Kind::ClientKeyHash {
                    Some(format!(
                        "train:<id>/client_key_hash/<n> takes kind client_key_hash, not {}",
                        c.kind
                    ))
                } else if !fmt::is_client_key_hash(&c.secret.expose().trim().to_ascii_lowercase()) {
                    Some("not a SHA-256 hex digest (64 hex characters)".into())
                } else {
                    None
                }
            }
        }
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or_else(|| Err(StoreError::item(&c.id, "no result")))
    }

    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = (0..creds.len()).map(|_| None).collect();
        let mut account_items: Vec<(usize, String, Field)> = Vec::new();
        let mut train_items: Vec<(usize, String, usize, String)> = Vec::new();
        for (i, c) in creds.iter().enumerate() {
            if let Some(reason) = self.check(c) {
                results[i] = Some(Err(StoreError::item(&c.id, reason)));
                continue;
            }
            match parse_id(&c.id) {
                Ok(Target::Account { account, field }) => account_items.push((i, account, field)),
                Ok(Target::ClientKey { train, index }) => {
                    train_items.push((i, train, index, fmt::hash_client_key(c.secret.expose())))
                }
                Ok(Target::ClientKeyHash { train, index }) => train_items.push((
                    i,
                    train,
                    index,
                    c.secret.expose().trim().to_ascii_lowercase(),
                )),
                Err(m) => results[i] = Some(Err(StoreError::item(&c.id, m))),
            }
        }
        let pending: Vec<usize> = account_items
            .iter()
            .map(|(i, ..)| *i)
            .chain(train_items.iter().map(|(i, ..)| *i))
            .collect();
        let finish = |results: Vec<Option<Result<()>>>| -> Vec<Result<()>> {
            results
                .into_iter()
                .zip(creds)
                .map(|(r, c)| r.unwrap_or_else(|| Err(StoreError::item(&c.id, "not written"))))
                .collect()
        };
        if pending.is_empty() {
            return finish(results);
        }
        if let Err(e) = self.ensure_schema() {
            fail_all(&mut results, creds, &pending, &e);
            return finish(results);
        }

        // Encrypt (one PBKDF2 derivation each) in parallel, after checking
        // that the key is the one the database already uses.
        let mut encrypted: Vec<std::result::Result<String, FormatError>> = Vec::new();
        if !account_items.is_empty() {
            let key = match self.master() {
                Ok(k) => k,
                Err(e) => {
                    fail_all(&mut results, creds, &pending, &e);
                    return finish(results);
                }
            };
            match self.key_fits_database(key) {
                Ok(true) => {}
                Ok(false) => {
                    let e = StoreError::Crypto {
                        location: self.spec.to_string(),
                        message: format!(
                            "{} does not decrypt the values already in this database \
                             (wrong key?); nothing written",
                            fmt::KEY_ENV
                        ),
                    };
                    fail_all(&mut results, creds, &pending, &e);
                    return finish(results);
                }
                Err(e) => {
                    fail_all(&mut results, creds, &pending, &e);
                    return finish(results);
                }
            }
            encrypted = account_items
                .par_iter()
                .map(|(i, ..)| fmt::encrypt_cached(key, creds[*i].secret.expose(), &self.keys))
                .collect();
        }

        let mut by_account: BTreeMap<&str, AccountWrites> = BTreeMap::new();
        for ((i, account, field), enc) in account_items.iter().zip(encrypted) {
            match enc {
                Ok(v) => by_account
                    .entry(account.as_str())
                    .or_default()
                    .push((*i, *field, v)),
                Err(e) => results[*i] = Some(Err(StoreError::item(&creds[*i].id, e.to_string()))),
            }
        }
        let mut by_train: BTreeMap<&str, Vec<(usize, usize, String)>> = BTreeMap::new();
        for (i, train, index, hash) in &train_items {
            by_train
                .entry(train.as_str())
                .or_default()
                .push((*i, *index, hash.clone()));
        }

        let outcome = self.conn.with_client(|client| {
            let spec = &self.spec;
            let db = |e: postgres::Error| classify(spec, "write", &e);
            let mut tx = client.transaction().map_err(db)?;
            let mut done: Vec<usize> = Vec::new();
            for (account, writes) in &by_account {
                let idx: Vec<usize> = writes.iter().map(|(i, ..)| *i).collect();
                let mut sp = tx.savepoint("account").map_err(db)?;
                match apply_account(&mut sp, account, writes, creds) {
                    Ok(Ok(())) => {
                        sp.commit().map_err(db)?;
                        done.extend(idx);
                    }
                    Ok(Err(m)) => {
                        sp.rollback().map_err(db)?;
                        for i in idx {
                            results[i] = Some(Err(StoreError::item(&creds[i].id, m.clone())));
                        }
                    }
                    Err(e) => {
                        let e = db(e);
                        if e.is_unavailable() {
                            return Err(e);
                        }
                        sp.rollback().map_err(db)?;
                        fail_all(&mut results, creds, &idx, &e);
                    }
                }
            }
            for (train, writes) in &by_train {
                let idx: Vec<usize> = writes.iter().map(|(i, ..)| *i).collect();
                let slots: Vec<(usize, Option<String>)> = writes
                    .iter()
                    .map(|(_, index, h)| (*index, Some(h.clone())))
                    .collect();
                let mut sp = tx.savepoint("train").map_err(db)?;
                match apply_train(&mut sp, train, &slots) {
                    Ok(_) => {
                        sp.commit().map_err(db)?;
                        done.extend(idx);
                    }
                    Err(e) => {
                        let e = db(e);
                        if e.is_unavailable() {
                            return Err(e);
                        }
                        sp.rollback().map_err(db)?;
                        fail_all(&mut results, creds, &idx, &e);
                    }
                }
            }
            tx.commit().map_err(db)?;
            Ok(done)
        });
        match outcome {
            Ok(done) => {
                for i in done {
                    results[i] = Some(Ok(()));
                }
            }
            Err(e) => {
                // Nothing of the transaction was committed.
                let open: Vec<usize> = pending
                    .into_iter()
                    .filter(|i| results[*i].as_ref().is_none_or(|r| r.is_ok()))
                    .collect();
                fail_all(&mut results, creds, &open, &e);
            }
        }
        finish(results)
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or_else(|| Err(StoreError::item(id, "no result")))
    }

    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let mut results: Vec<Option<Result<bool>>> = (0..ids.len()).map(|_| None).collect();
        let mut by_account: BTreeMap<String, Vec<(usize, Field)>> = BTreeMap::new();
        let mut by_train: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, id) in ids.iter().enumerate() {
            match parse_id(id) {
                Ok(Target::Account { account, field }) => {
                    by_account.entry(account).or_default().push((i, field))
                }
                Ok(Target::ClientKey { train, index } | Target::ClientKeyHash { train, index }) => {
                    by_train.entry(train).or_default().push((i, index))
                }
                Err(_) => results[i] = Some(Ok(false)),
            }
        }
        let outcome = self.conn.with_client(|client| {
            let spec = &self.spec;
            let db = |e: postgres::Error| classify(spec, "delete", &e);
            let mut tx = client.transaction().map_err(db)?;
            let mut staged: Vec<(usize, bool)> = Vec::new();
            for (account, fields) in &by_account {
                let Some((ctype, before, _)) = account_state(&mut tx, account).map_err(db)? else {
                    staged.extend(fields.iter().map(|(i, _)| (*i, false)));
                    continue;
                };
                let mut after = before;
                for (_, f) in fields {
                    after[f.index()] = false;
                }
                if after == [false; 3] {
                    tx.execute("DELETE FROM accounts WHERE account_id = $1", &[account])
                        .map_err(db)?;
                } else {
                    // One OAuth token left alone: placeholder, inactive.
                    let (t, pending) = match credential_type(Some(&ctype), after) {
                        Ok(t) => (t, false),
                        Err(_) => ("oauth", true),
                    };
                    let clear = |f: Field| {
                        (pending && f != Field::ApiKey && !after[f.index()]).then_some(PENDING_TOKEN)
                    };
                    let null = |f: Field| !after[f.index()] && before[f.index()] && clear(f).is_none();
                    tx.execute(
                        "UPDATE accounts SET
                           api_key_encrypted = CASE WHEN $2 THEN NULL ELSE api_key_encrypted END,
                           oauth_access_token_encrypted =
                             CASE WHEN $3 THEN NULL ELSE COALESCE($6, oauth_access_token_encrypted) END,
                           oauth_refresh_token_encrypted =
                             CASE WHEN $4 THEN NULL ELSE COALESCE($7, oauth_refresh_token_encrypted) END,
                           credential_type = $5,
                           is_active = CASE WHEN $8 THEN false ELSE is_active END,
                           updated_at = now()
                         WHERE account_id = $1",
                        &[
                            account,
                            &null(Field::ApiKey),
                            &null(Field::OauthAccess),
                            &null(Field::OauthRefresh),
                            &t,
                            &clear(Field::OauthAccess),
                            &clear(Field::OauthRefresh),
                            &pending,
                        ],
                    )
                    .map_err(db)?;
                }
                staged.extend(fields.iter().map(|(i, f)| (*i, before[f.index()])));
            }
            for (train, slots) in &by_train {
                let clear: Vec<(usize, Option<String>)> =
                    slots.iter().map(|(_, index)| (*index, None)).collect();
                let had = apply_train(&mut tx, train, &clear).map_err(db)?;
                staged.extend(slots.iter().zip(had).map(|((i, _), h)| (*i, h)));
            }
            tx.commit().map_err(db)?;
            Ok(staged)
        });
        match outcome {
            Ok(staged) => {
                for (i, had) in staged {
                    results[i] = Some(Ok(had));
                }
            }
            Err(StoreError::NotFound { .. }) => {
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Ok(false));
                }
            }
            Err(e) => {
                for (i, r) in results.iter_mut().enumerate() {
                    if r.is_none() {
                        *r = Some(Err(match &e {
                            StoreError::Unavailable { store, reason } => StoreError::Unavailable {
                                store: store.clone(),
                                reason: reason.clone(),
                            },
                            other => StoreError::item(&ids[i], other.to_string()),
                        }));
                    }
                }
            }
        }
        results
            .into_iter()
            .zip(ids)
            .map(|(r, id)| r.unwrap_or_else(|| Err(StoreError::item(id, "not deleted"))))
            .collect()
    }

    fn verify_hashed(&self, c: &Credential) -> Result<Option<bool>> {
        let Ok(Target::ClientKey { train, index }) = parse_id(&c.id) else {
            return Ok(None);
        };
        Ok(Some(self.read_hash(&train, index)?.is_some_and(|h| {
            fmt::client_key_matches(c.secret.expose(), &h)
        })))
    }

    fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>> {
        let lock = self.conn.advisory_lock("prompttrain-db:accounts", wait)?;
        Ok(Some(Box::new(lock)))
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
                location: format!("accounts[{}]", a.account_id),
                error: "account id contains '/', which credshift ids cannot hold".into(),
            });
        }
        for (t, _) in trains.iter().filter(|(t, _)| t.contains('/')) {
            errors.push(LocationError {
                location: format!("trains[{t}]"),
                error: "train id contains '/', which credshift ids cannot hold".into(),
            });
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let opts = OpenOptions {
            prompttrain_key: Some(Secret::new("too-short-key")),
            ..OpenOptions::default()
        };
        let e = open(&spec, &opts).err().unwrap().to_string();
        assert!(e.contains("CREDENTIAL_ENCRYPTION_KEY"), "{e}");
        assert!(!e.contains("too-short-key"), "{e}");
    }
}
