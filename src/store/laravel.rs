//! Fragments Engine's credentials table (Laravel), in SQLite
//! (`laravel:sqlite:PATH`) or PostgreSQL (`laravel:postgres://...`).
//!
//! The table is `ai_credentials` in current installs (the model was renamed
//! in late 2025) and `a_i_credentials` in older ones: whichever exists is
//! used, `ai_credentials` is created when neither does, and when both exist
//! the spec must name one with a `?table=NAME` suffix
//! (`laravel:sqlite:app.sqlite?table=ai_credentials`,
//! `laravel:postgres://host/db?table=a_i_credentials`).
//!
//! The app's other columns travel as metadata: `credential_type`,
//! `expires_at`, the `metadata` JSON, `ui_metadata`, `provider_config_id`,
//! `usage_count` and `last_used_at`. A new row gets them back in their
//! columns (except `provider_config_id`, which points into the source
//! database's `provider_configs`), respects UNIQUE(provider,
//! credential_type), and records `migrated_from` / `migrated_at` /
//! `original_id` in its metadata as the app's own `ai:credentials:migrate`
//! does.
//!
//! Each row holds one provider's credentials as a Laravel-Crypt-encrypted
//! JSON object (`{"key":"sk-..."}`, `{"base":"http://..."}`); every string
//! field becomes a credential `<provider>/<field>`. Rows whose
//! `credential_type` is not `api_key` get the namespace
//! `<provider>:<credential_type>`. Only active rows are listed; deleting the
//! last field of a row soft-deletes it (`is_active = false`) as the app does.
//!
//! The `metadata` column is the app's; a secret found in it by
//! [`crate::scrub`] (`{"api_key": "sk-proj-..."}`) is never shown as
//! metadata but becomes an item of its own, `<namespace>/metadata.<path>`,
//! written back into the column at the same path. A row is soft-deleted
//! only when neither its payload nor its metadata holds a secret.
//!
//! The row logic lives here once; the two databases sit behind [`Backend`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::crypto::laravel::{self as crypt, AppKey, Framing, LaravelError};
use crate::error::{Result, StoreError};
use crate::scrub::{self, Seg};
use crate::store::{Capability, Listing, LocationError, OpenOptions, Scan, Store, StoreSpec};

/// The app's table today.
const TABLE_CURRENT: &str = "ai_credentials";
/// Its name before the model was renamed.
const TABLE_OLD: &str = "a_i_credentials";
/// The `credential_type` of rows addressed by the bare provider namespace.
const DEFAULT_TYPE: &str = "api_key";
/// The id name prefix of secrets found in the `metadata` column.
const META_PREFIX: &str = "metadata.";
/// Metadata keys this store derives from columns (never stored in `metadata`).
const DERIVED_KEYS: &[&str] = &[
    "provider",
    "credential_type",
    "expires_at",
    "ui_metadata",
    "provider_config_id",
    "usage_count",
    "last_used_at",
];

/// `?table=NAME` at the end of a spec: which table, when given.
fn split_table(spec: &StoreSpec) -> Result<(StoreSpec, Option<&'static str>)> {
    let pick = |name: &str| match name {
        TABLE_CURRENT => Ok(TABLE_CURRENT),
        TABLE_OLD => Ok(TABLE_OLD),
        other => Err(StoreError::Other(format!(
            "{spec}: table={other:?} is not a Fragments Engine credentials table; \
             use table={TABLE_CURRENT} or table={TABLE_OLD}"
        ))),
    };
    match spec {
        StoreSpec::LaravelSqlite(path) => {
            let text = path.to_string_lossy();
            match text.rsplit_once("?table=") {
                Some((p, name)) => Ok((
                    StoreSpec::LaravelSqlite(PathBuf::from(p)),
                    Some(pick(name)?),
                )),
                None => Ok((spec.clone(), None)),
            }
        }
        StoreSpec::LaravelPostgres(url) => {
            // The query starts after the user info: a password may hold `?`.
            let after_at = url.rfind('@').map_or(0, |i| i + 1);
            let Some((base, query)) = url[after_at..]
                .find('?')
                .map(|i| (&url[..after_at + i], &url[after_at + i + 1..]))
            else {
                return Ok((spec.clone(), None));
            };
            let mut table = None;
            let mut rest = Vec::new();
            for kv in query.split('&') {
                match kv.strip_prefix("table=") {
                    Some(name) => table = Some(pick(name)?),
                    None => rest.push(kv),
                }
            }
            let url = if rest.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", rest.join("&"))
            };
            Ok((StoreSpec::LaravelPostgres(url), table))
        }
        other => Ok((other.clone(), None)),
    }
}

pub fn open(spec: &StoreSpec, opts: &OpenOptions) -> Result<Box<dyn Store>> {
    let db_auth = crate::store::pg::DbAuth::from_options(opts);
    let key = match &opts.app_key {
        None => {
            return Err(StoreError::MissingKey {
                location: spec.to_string(),
                message: "APP_KEY is not set: export APP_KEY with the app's key (from its .env) \
                          or pass --app-key-file"
                    .into(),
            });
        }
        Some(text) => AppKey::parse(text).map_err(|e| StoreError::Crypto {
            location: spec.to_string(),
            message: e.to_string(),
        })?,
    };
    let (db_spec, table) = split_table(spec)?;
    let db: Box<dyn Backend> = match &db_spec {
        StoreSpec::LaravelSqlite(path) => Box::new(SqliteDb::new(path.clone())),
        StoreSpec::LaravelPostgres(_) => Box::new(PgDb::connect(&db_spec, &db_auth)?),
        other => {
            return Err(StoreError::Other(format!(
                "{other} is not a Laravel store spec"
            )));
        }
    };
    Ok(Box::new(LaravelStore {
        spec: spec.clone(),
        key,
        table,
        db: Mutex::new(db),
        db_auth,
    }))
}

/// One row as stored; the payload is still encrypted.
#[derive(Debug, Clone)]
struct RawRow {
    table: &'static str,
    id: i64,
    provider: String,
    credential_type: String,
    payload: String,
    metadata: Option<String>,
    expires_at: Option<String>,
    active: bool,
    ui_metadata: Option<String>,
    provider_config_id: Option<i64>,
    usage_count: Option<i64>,
    last_used_at: Option<String>,
}

impl RawRow {
    fn location(&self) -> String {
        format!("{} id={} provider={}", self.table, self.id, self.provider)
    }

    fn namespace(&self) -> String {
        if self.credential_type == DEFAULT_TYPE {
            self.provider.clone()
        } else {
            format!("{}:{}", self.provider, self.credential_type)
        }
    }

    /// Does this row hold the credentials of `namespace`?
    fn serves(&self, namespace: &str) -> bool {
        self.namespace() == namespace
    }
}

/// What a write or delete does to the table, decided by the shared logic
/// and carried out by the backend inside its transaction.
enum Change {
    None,
    Update {
        id: i64,
        payload: String,
        active: bool,
    },
    /// A new `metadata` column (a secret put back or removed).
    SetMetadata {
        id: i64,
        metadata: String,
        active: bool,
    },
    Insert {
        provider: String,
        credential_type: String,
        payload: String,
        metadata: String,
        expires_at: Option<String>,
        ui_metadata: Option<String>,
        usage_count: Option<i64>,
        last_used_at: Option<String>,
    },
}

/// The columns a table has beyond its first migration's.
#[derive(Debug, Clone, Copy, Default)]
struct Extra {
    ui_metadata: bool,
    provider_config_id: bool,
    usage_count: bool,
    last_used_at: bool,
}

impl Extra {
    fn of(columns: &[String]) -> Extra {
        let has = |c: &str| columns.iter().any(|x| x == c);
        Extra {
            ui_metadata: has("ui_metadata"),
            provider_config_id: has("provider_config_id"),
            usage_count: has("usage_count"),
            last_used_at: has("last_used_at"),
        }
    }

    /// The row query; missing columns read as NULL. `int` is the SQL type
    /// integers are cast to.
    fn select(self, table: &str, int: &str) -> String {
        let col = |on: bool, expr: String, ty: &str| {
            if on {
                expr
            } else {
                format!("CAST(NULL AS {ty})")
            }
        };
        format!(
            "SELECT CAST(id AS {int}), CAST(provider AS TEXT), CAST(credential_type AS TEXT), \
             CAST(encrypted_credentials AS TEXT), CAST(metadata AS TEXT), \
             CAST(expires_at AS TEXT), CAST(is_active AS INTEGER), {}, {}, {}, {} \
             FROM {table} ORDER BY id",
            col(self.ui_metadata, "CAST(ui_metadata AS TEXT)".into(), "TEXT"),
            col(
                self.provider_config_id,
                format!("CAST(provider_config_id AS {int})"),
                int
            ),
            col(self.usage_count, format!("CAST(usage_count AS {int})"), int),
            col(
                self.last_used_at,
                "CAST(last_used_at AS TEXT)".into(),
                "TEXT"
            ),
        )
    }
}

/// The database under the table. `modify` runs the decision on the rows it
/// read inside one write transaction, so a concurrent change by the app
/// between read and write cannot be lost.
trait Backend: Send {
    /// Whether the database and this table exist (no side effects).
    fn has_table(&mut self, table: &str) -> Result<bool>;
    /// Every row, active or not. `NotFound` when the database or table is missing.
    fn rows(&mut self, table: &'static str) -> Result<Vec<RawRow>>;
    /// Create the database/table when missing, lock, read, decide, apply.
    fn modify(
        &mut self,
        table: &'static str,
        decide: &mut dyn FnMut(&[RawRow]) -> Result<Change>,
    ) -> Result<()>;
    /// Why a write would be refused before it reaches the database, if known.
    fn not_writable(&self) -> Option<String> {
        None
    }
}

/// The JSON object inside one row. String values are wiped on drop.
struct Fields {
    map: serde_json::Map<String, Value>,
    framing: Framing,
}

impl Drop for Fields {
    fn drop(&mut self) {
        self.map.values_mut().for_each(wipe);
    }
}

fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(o) => o.values_mut().for_each(wipe),
        _ => {}
    }
}

impl Fields {
    fn empty(framing: Framing) -> Fields {
        Fields {
            map: serde_json::Map::new(),
            framing,
        }
    }

    /// Encrypt the object back in the row's framing.
    fn seal(&self, key: &AppKey, location: &str) -> Result<String> {
        let room: usize = self
            .map
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(32, str::len) * 2 + 8)
            .sum();
        let mut json = Zeroizing::new(Vec::with_capacity(room + 16));
        serde_json::to_writer(&mut *json, &self.map)
            .map_err(|_| StoreError::Other(format!("{location}: could not encode the JSON")))?;
        let text = std::str::from_utf8(&json)
            .map_err(|_| StoreError::Other(format!("{location}: could not encode the JSON")))?;
        let framed = crypt::frame(text, self.framing);
        crypt::encrypt(key, framed.as_bytes()).map_err(|e| StoreError::Crypto {
            location: location.to_string(),
            message: e.to_string(),
        })
    }
}

struct LaravelStore {
    spec: StoreSpec,
    key: AppKey,
    /// The table a `?table=NAME` suffix named.
    table: Option<&'static str>,
    db: Mutex<Box<dyn Backend>>,
    db_auth: crate::store::pg::DbAuth,
}

/// Laravel's `now()->toISOString()`, as the app's migrate command records it.
fn iso_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn crypto_error(location: String, e: LaravelError) -> StoreError {
    match e {
        LaravelError::Mac | LaravelError::Decrypt | LaravelError::BadKey(_) => StoreError::Crypto {
            location,
            message: e.to_string(),
        },
        LaravelError::Payload(_) | LaravelError::Plaintext(_) => {
            StoreError::parse(location, e.to_string())
        }
    }
}

/// The message of an error without its location prefix (the listing keeps
/// the location in its own field).
fn message_of(e: &StoreError) -> String {
    match e {
        StoreError::Crypto { message, .. } | StoreError::Parse { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn decode(key: &AppKey, row: &RawRow) -> Result<Fields> {
    let location = row.location();
    let plain = crypt::decrypt(key, &row.payload).map_err(|e| crypto_error(location.clone(), e))?;
    let (json, framing) = crypt::unframe(&plain).map_err(|e| crypto_error(location.clone(), e))?;
    drop(plain);
    // serde_json's message could quote the secret: report the category only.
    let value: Value = serde_json::from_str(&json).map_err(|_| {
        StoreError::parse(location.clone(), "the decrypted value is not valid JSON")
    })?;
    match value {
        Value::Object(map) => Ok(Fields { map, framing }),
        mut other => {
            wipe(&mut other);
            Err(StoreError::parse(
                location,
                "the decrypted value is not a JSON object",
            ))
        }
    }
}

/// Laravel's `Y-m-d H:i:s` (UTC) for timestamps we set.
fn laravel_now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn laravel_time_from_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A column timestamp (`2026-09-01 10:00:00`, with or without fraction or
/// offset) as RFC 3339; a text that is no timestamp is kept as it is.
fn rfc3339_of(column: &str) -> String {
    let t = column.trim();
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(t, fmt) {
            return d.to_rfc3339();
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return d.and_utc().to_rfc3339();
        }
    }
    t.to_string()
}

impl LaravelStore {
    fn db(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn Backend>>> {
        self.db
            .lock()
            .map_err(|_| StoreError::Other(format!("{}: store lock poisoned", self.spec)))
    }

    /// The table to use and whether it exists yet: the one `?table=` named,
    /// else whichever of the two exists (`ai_credentials` when neither
    /// does). Both existing without `?table=` is an error: taking either
    /// could hide the credentials from the app.
    fn table(&self, db: &mut Box<dyn Backend>) -> Result<(&'static str, bool)> {
        if let Some(t) = self.table {
            return Ok((t, db.has_table(t)?));
        }
        match (db.has_table(TABLE_CURRENT)?, db.has_table(TABLE_OLD)?) {
            (true, true) => Err(StoreError::Other(format!(
                "{}: both {TABLE_CURRENT} and {TABLE_OLD} exist; name the one the app reads \
                 by ending the spec with ?table={TABLE_CURRENT} or ?table={TABLE_OLD}",
                self.spec
            ))),
            (true, false) => Ok((TABLE_CURRENT, true)),
            (false, true) => Ok((TABLE_OLD, true)),
            (false, false) => Ok((TABLE_CURRENT, false)),
        }
    }

    fn rows(&self) -> Result<Vec<RawRow>> {
        let mut db = self.db()?;
        let (table, _) = self.table(&mut db)?;
        db.rows(table)
    }

    fn modify(&self, decide: &mut dyn FnMut(&[RawRow]) -> Result<Change>) -> Result<()> {
        let mut db = self.db()?;
        let (table, _) = self.table(&mut db)?;
        db.modify(table, decide)
    }

    /// The `metadata` column as stored (secrets included), `None` when it
    /// is not a JSON object.
    fn column_metadata(row: &RawRow) -> Option<Metadata> {
        match row.metadata.as_deref().filter(|t| !t.trim().is_empty()) {
            None => Some(Metadata::new()),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => Some(m),
                Ok(Value::Null) => Some(Metadata::new()),
                _ => None,
            },
        }
    }

    /// The secrets of the `metadata` column, as items of `namespace`.
    fn metadata_items(row: &RawRow, namespace: &str, meta: &Metadata) -> Vec<Credential> {
        let Some(column) = Self::column_metadata(row) else {
            return Vec::new();
        };
        let mut tree = Value::Object(column);
        let (found, _) = scrub::find(&tree);
        wipe(&mut tree);
        found
            .into_iter()
            .map(|f| {
                let name = format!("{META_PREFIX}{}", f.path_text());
                Credential::new(CredentialId::new(namespace, name), f.kind, f.secret)
                    .with_metadata(meta.clone())
            })
            .collect()
    }

    /// The metadata every credential of `row` carries: the column without
    /// its secrets, plus what the other columns say.
    fn row_metadata(row: &RawRow, errors: &mut Vec<LocationError>) -> Metadata {
        let mut meta = Metadata::new();
        match Self::column_metadata(row) {
            Some(m) => {
                meta = scrub::public(&m);
                let mut m = Value::Object(m);
                wipe(&mut m);
            }
            None => errors.push(LocationError {
                location: row.location(),
                error: "the metadata column is not a JSON object; left out".into(),
            }),
        }
        meta.insert("provider".into(), row.provider.clone().into());
        meta.insert("credential_type".into(), row.credential_type.clone().into());
        if let Some(e) = row.expires_at.as_deref().filter(|t| !t.trim().is_empty()) {
            meta.insert("expires_at".into(), rfc3339_of(e).into());
        }
        if let Some(text) = row.ui_metadata.as_deref().filter(|t| !t.trim().is_empty()) {
            let v = serde_json::from_str::<Value>(text).unwrap_or_else(|_| text.into());
            if !v.is_null() {
                meta.insert("ui_metadata".into(), v);
            }
        }
        if let Some(n) = row.provider_config_id {
            meta.insert("provider_config_id".into(), n.into());
        }
        if let Some(n) = row.usage_count {
            meta.insert("usage_count".into(), n.into());
        }
        if let Some(t) = row.last_used_at.as_deref().filter(|t| !t.trim().is_empty()) {
            meta.insert("last_used_at".into(), rfc3339_of(t).into());
        }
        meta
    }

    /// Every credential of the active rows; bad rows become errors.
    fn scan_rows(&self, rows: &[RawRow]) -> Scan {
        let mut scan = Scan::default();
        let mut seen = std::collections::BTreeSet::new();
        for row in rows.iter().filter(|r| r.active) {
            let namespace = row.namespace();
            if namespace.contains('/') {
                scan.errors.push(LocationError {
                    location: row.location(),
                    error: "the provider contains '/', which a credential id cannot hold".into(),
                });
                continue;
            }
            if !seen.insert(namespace.clone()) {
                scan.errors.push(LocationError {
                    location: row.location(),
                    error: format!("another active row already provides {namespace}/*; skipped"),
                });
                continue;
            }
            let fields = match decode(&self.key, row) {
                Ok(f) => f,
                Err(e) => {
                    scan.errors.push(LocationError {
                        location: row.location(),
                        error: message_of(&e),
                    });
                    continue;
                }
            };
            let metadata = Self::row_metadata(row, &mut scan.errors);
            for (field, value) in &fields.map {
                match value {
                    Value::String(s) => scan.credentials.push(
                        Credential::new(
                            CredentialId::new(namespace.clone(), field.clone()),
                            Kind::guess(field),
                            Secret::new(s.clone()),
                        )
                        .with_metadata(metadata.clone()),
                    ),
                    _ => scan.errors.push(LocationError {
                        location: format!("{} field={field}", row.location()),
                        error: "the value is not a string; left as it is".into(),
                    }),
                }
            }
            scan.credentials
                .extend(Self::metadata_items(row, &namespace, &metadata));
        }
        scan
    }

    /// Refuse to write rows the app could not read: when the table has rows,
    /// at least one must verify under our key.
    fn check_key(&self, rows: &[RawRow]) -> Result<()> {
        if rows.is_empty()
            || rows
                .iter()
                .any(|r| crypt::mac_matches(&self.key, &r.payload))
        {
            return Ok(());
        }
        Err(StoreError::Crypto {
            location: self.spec.to_string(),
            message: format!(
                "APP_KEY does not match: none of the {} rows of {} verifies under it; \
                 nothing was written",
                rows.len(),
                rows[0].table
            ),
        })
    }

    fn new_row_metadata(c: &Credential) -> String {
        let mut meta: Metadata = scrub::public(&c.metadata)
            .iter()
            .filter(|(k, _)| !DERIVED_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.entry("storage_backend")
            .or_insert_with(|| "database".into());
        meta.entry("created_via")
            .or_insert_with(|| "credshift".into());
        meta.entry("created_at")
            .or_insert_with(|| chrono::Utc::now().to_rfc3339().into());
        // As the app's own migrate command records a moved credential.
        meta.insert("migrated_from".into(), "credshift".into());
        meta.insert("migrated_at".into(), iso_now().into());
        meta.insert("original_id".into(), c.id.to_string().into());
        Value::Object(meta).to_string()
    }

    /// Put a secret back into the `metadata` column at `path`.
    fn decide_write_metadata(
        &self,
        c: &Credential,
        path: &[Seg],
        rows: &[RawRow],
    ) -> Result<Change> {
        let ns = &c.id.namespace;
        let secret = Value::String(c.secret.expose().to_string());
        match rows.iter().find(|r| r.serves(ns)) {
            Some(row) => {
                let column = Self::column_metadata(row).ok_or_else(|| {
                    StoreError::item(
                        &c.id,
                        format!(
                            "{}: the metadata column is not a JSON object",
                            row.location()
                        ),
                    )
                })?;
                let mut tree = Value::Object(column);
                let put = scrub::set(&mut tree, path, secret);
                let text = tree.to_string();
                wipe(&mut tree);
                put.map_err(|e| StoreError::item(&c.id, format!("cannot be put back: {e}")))?;
                Ok(Change::SetMetadata {
                    id: row.id,
                    metadata: text,
                    active: true,
                })
            }
            None => {
                self.check_key(rows)?;
                let fields = Fields::empty(Framing::PhpSerialized);
                let mut tree: Value = serde_json::from_str(&Self::new_row_metadata(c))
                    .unwrap_or_else(|_| Value::Object(Metadata::new()));
                let put = scrub::set(&mut tree, path, secret);
                let text = tree.to_string();
                wipe(&mut tree);
                put.map_err(|e| StoreError::item(&c.id, format!("cannot be put back: {e}")))?;
                let (provider, credential_type) = Self::row_key(c);
                Ok(Change::Insert {
                    payload: fields.seal(&self.key, &format!("provider={provider}"))?,
                    provider,
                    credential_type,
                    metadata: text,
                    expires_at: c.expires_at_ms().and_then(laravel_time_from_ms),
                    ui_metadata: None,
                    usage_count: None,
                    last_used_at: None,
                })
            }
        }
    }

    /// Whether `row`'s metadata column still holds a secret.
    fn metadata_holds_secret(row: &RawRow) -> bool {
        Self::column_metadata(row).is_some_and(|m| {
            let mut tree = Value::Object(m);
            let (found, bad) = scrub::find(&tree);
            wipe(&mut tree);
            !found.is_empty() || !bad.is_empty()
        })
    }

    /// The (provider, credential_type) a new row for `c` gets: the
    /// namespace `provider:type` splits back when the metadata names that
    /// type (a row read from this app); any other namespace is the provider
    /// of an `api_key` row.
    fn row_key(c: &Credential) -> (String, String) {
        let ns = &c.id.namespace;
        if let Some(t) = c.metadata.get("credential_type").and_then(Value::as_str)
            && t != DEFAULT_TYPE
            && let Some(provider) = ns.strip_suffix(t).and_then(|p| p.strip_suffix(':'))
            && !provider.is_empty()
        {
            return (provider.to_string(), t.to_string());
        }
        (ns.clone(), DEFAULT_TYPE.to_string())
    }

    fn decide_write(&self, c: &Credential, rows: &[RawRow]) -> Result<Change> {
        if let Some(path) =
            c.id.name
                .strip_prefix(META_PREFIX)
                .and_then(scrub::parse_path)
        {
            return self.decide_write_metadata(c, &path, rows);
        }
        let ns = &c.id.namespace;
        let secret = || Value::String(c.secret.expose().to_string());
        match rows.iter().find(|r| r.serves(ns)) {
            Some(row) if row.active => {
                let mut fields = decode(&self.key, row)?;
                if let Some(mut old) = fields.map.insert(c.id.name.clone(), secret()) {
                    wipe(&mut old);
                }
                Ok(Change::Update {
                    id: row.id,
                    payload: fields.seal(&self.key, &row.location())?,
                    active: true,
                })
            }
            Some(row) => {
                // A soft-deleted row: its old fields stay deleted.
                self.check_key(rows)?;
                let framing = decode(&self.key, row)
                    .map(|f| f.framing)
                    .unwrap_or(Framing::PhpSerialized);
                let mut fields = Fields::empty(framing);
                fields.map.insert(c.id.name.clone(), secret());
                Ok(Change::Update {
                    id: row.id,
                    payload: fields.seal(&self.key, &row.location())?,
                    active: true,
                })
            }
            None => {
                self.check_key(rows)?;
                let (provider, credential_type) = Self::row_key(c);
                let mut fields = Fields::empty(Framing::PhpSerialized);
                fields.map.insert(c.id.name.clone(), secret());
                let meta = &c.metadata;
                Ok(Change::Insert {
                    payload: fields.seal(&self.key, &format!("provider={provider}"))?,
                    provider,
                    credential_type,
                    metadata: Self::new_row_metadata(c),
                    expires_at: c.expires_at_ms().and_then(laravel_time_from_ms),
                    ui_metadata: meta
                        .get("ui_metadata")
                        .filter(|v| !v.is_null())
                        .map(Value::to_string),
                    usage_count: meta.get("usage_count").and_then(Value::as_i64),
                    last_used_at: meta
                        .get("last_used_at")
                        .and_then(Value::as_str)
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|d| d.timestamp_millis())
                        .and_then(laravel_time_from_ms),
                })
            }
        }
    }

    fn decide_delete(&self, id: &CredentialId, rows: &[RawRow]) -> Result<(Change, bool)> {
        let Some(row) = rows.iter().find(|r| r.active && r.serves(&id.namespace)) else {
            return Ok((Change::None, false));
        };
        if let Some(path) = id
            .name
            .strip_prefix(META_PREFIX)
            .and_then(scrub::parse_path)
        {
            let Some(column) = Self::column_metadata(row) else {
                return Ok((Change::None, false));
            };
            let mut tree = Value::Object(column);
            if !scrub::remove(&mut tree, &path) {
                wipe(&mut tree);
                return Ok((Change::None, false));
            }
            let (found, bad) = scrub::find(&tree);
            let text = tree.to_string();
            wipe(&mut tree);
            let fields = decode(&self.key, row)?;
            let active = !fields.map.is_empty() || !found.is_empty() || !bad.is_empty();
            return Ok((
                Change::SetMetadata {
                    id: row.id,
                    metadata: text,
                    active,
                },
                true,
            ));
        }
        let mut fields = decode(&self.key, row)?;
        let Some(mut old) = fields.map.remove(&id.name) else {
            return Ok((Change::None, false));
        };
        wipe(&mut old);
        // The last field gone: soft-delete the row as the app does, keeping
        // no secret in it, unless its metadata still holds one.
        let active = !fields.map.is_empty() || Self::metadata_holds_secret(row);
        Ok((
            Change::Update {
                id: row.id,
                payload: fields.seal(&self.key, &row.location())?,
                active,
            },
            true,
        ))
    }
}

impl Store for LaravelStore {
    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let mut cap = Capability {
            writable: true,
            ..Capability::persistent_store(true, false)
        };
        let rows = {
            let mut db = match self.db() {
                Ok(db) => db,
                Err(e) => return Capability::unavailable(e.to_string()),
            };
            if let Some(why) = db.not_writable() {
                cap.writable = false;
                cap.warnings.push(why);
            }
            let table = match self.table(&mut db) {
                Ok((table, false)) => {
                    cap.item_count = Some(0);
                    cap.warnings.push(format!(
                        "{table} does not exist yet; the first write creates it"
                    ));
                    return cap;
                }
                Err(e) => return Capability::unavailable(e.to_string()),
                Ok((table, true)) => table,
            };
            match db.rows(table) {
                Ok(rows) => rows,
                Err(e) => return Capability::unavailable(e.to_string()),
            }
        };
        cap.exists = true;
        if !rows.is_empty()
            && !rows
                .iter()
                .any(|r| crypt::mac_matches(&self.key, &r.payload))
        {
            cap.warnings.push(format!(
                "no row of {} verifies under this APP_KEY: is it the app's key?",
                rows[0].table
            ));
        }
        let scan = self.scan_rows(&rows);
        cap.item_count = Some(scan.credentials.len());
        if !scan.errors.is_empty() {
            cap.warnings.push(format!(
                "{} row(s) or field(s) could not be read",
                scan.errors.len()
            ));
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        self.read_all().map(Listing::from)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let rows = self.rows()?;
        let Some(row) = rows.iter().find(|r| r.active && r.serves(&id.namespace)) else {
            return Ok(None);
        };
        if id.name.starts_with(META_PREFIX) {
            let mut ignored = Vec::new();
            let meta = Self::row_metadata(row, &mut ignored);
            return Ok(Self::metadata_items(row, &id.namespace, &meta)
                .into_iter()
                .find(|c| &c.id == id));
        }
        let fields = decode(&self.key, row)?;
        match fields.map.get(&id.name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let mut ignored = Vec::new();
                Ok(Some(
                    Credential::new(id.clone(), Kind::guess(&id.name), Secret::new(s.clone()))
                        .with_metadata(Self::row_metadata(row, &mut ignored)),
                ))
            }
            Some(_) => Err(StoreError::item(
                id,
                format!("{}: the value is not a string", row.location()),
            )),
        }
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.modify(&mut |rows| self.decide_write(c, rows))
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let mut removed = false;
        self.modify(&mut |rows| {
            let (change, r) = self.decide_delete(id, rows)?;
            removed = r;
            Ok(change)
        })?;
        Ok(removed)
    }

    fn check(&self, c: &Credential) -> Option<String> {
        (c.id.namespace.len() > 255).then(|| {
            "the namespace is longer than 255 bytes, too long for the provider column \
             (VARCHAR(255))"
                .to_string()
        })
    }

    /// PostgreSQL: a session advisory lock on the table; SQLite: none (the
    /// engine locks the file path).
    fn lock(&self, wait: Duration) -> Result<Option<Box<dyn crate::store::StoreLock>>> {
        match self.spec {
            StoreSpec::LaravelPostgres(_) => {
                Ok(Some(Box::new(crate::store::pg::AdvisoryLock::acquire(
                    &self.spec,
                    &self.db_auth,
                    "laravel:a_i_credentials",
                    wait,
                )?)))
            }
            _ => Ok(None),
        }
    }

    fn read_all(&self) -> Result<Scan> {
        let rows = self.rows()?;
        Ok(self.scan_rows(&rows))
    }
}

// ---------------------------------------------------------------- SQLite

/// The app's migrations, SQLite dialect, for a table named `table`.
fn sqlite_schema(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  provider VARCHAR NOT NULL,
  credential_type VARCHAR NOT NULL DEFAULT 'api_key',
  encrypted_credentials TEXT NOT NULL,
  metadata TEXT,
  expires_at DATETIME,
  is_active TINYINT(1) NOT NULL DEFAULT 1,
  created_at DATETIME,
  updated_at DATETIME,
  ui_metadata TEXT,
  provider_config_id INTEGER,
  last_used_at DATETIME,
  usage_count INTEGER NOT NULL DEFAULT 0,
  total_cost NUMERIC(10,6),
  UNIQUE (provider, credential_type)
);
CREATE INDEX IF NOT EXISTS {table}_provider_index ON {table}(provider);
"
    )
}

/// The INSERT of a new row, naming only the optional columns the table has.
fn insert_sql(table: &str, extra: Extra, placeholder: &dyn Fn(usize, &str) -> String) -> String {
    let mut cols = vec![
        "provider",
        "credential_type",
        "encrypted_credentials",
        "metadata",
        "expires_at",
        "created_at",
        "updated_at",
    ];
    let kinds = ["text", "text", "text", "json", "time", "time", "time"];
    let mut vals: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| placeholder(i + 1, k))
        .collect();
    // created_at and updated_at share the same value.
    vals[6] = placeholder(6, "time");
    let mut n = 7;
    for (on, col, kind) in [
        (extra.ui_metadata, "ui_metadata", "json"),
        (extra.usage_count, "usage_count", "int"),
        (extra.last_used_at, "last_used_at", "time"),
    ] {
        if on {
            cols.push(col);
            vals.push(placeholder(n, kind));
            n += 1;
        }
    }
    format!(
        "INSERT INTO {table} ({}, is_active) VALUES ({}, {{active}})",
        cols.join(", "),
        vals.join(", ")
    )
}

struct SqliteDb {
    path: PathBuf,
    conn: Option<rusqlite::Connection>,
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable {
            store: path.display().to_string(),
            reason: "the database is locked by another process".into(),
        },
        Some(ErrorCode::CannotOpen) => StoreError::Unavailable {
            store: path.display().to_string(),
            reason: "cannot open the database file".into(),
        },
        // rusqlite's texts name SQL and columns, never bound values.
        _ => StoreError::Other(format!("{}: {e}", path.display())),
    }
}

impl SqliteDb {
    fn new(path: PathBuf) -> SqliteDb {
        SqliteDb { path, conn: None }
    }

    /// An open connection; `create` makes the file (0600, WAL) when missing.
    fn conn(&mut self, create: bool) -> Result<&mut rusqlite::Connection> {
        if self.conn.is_none() {
            let fresh = !self.path.exists();
            if fresh && !create {
                return Err(StoreError::NotFound {
                    location: self.path.display().to_string(),
                    hint: "no SQLite database there".into(),
                });
            }
            if fresh {
                create_private_file(&self.path)?;
            }
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = rusqlite::Connection::open_with_flags(&self.path, flags)
                .map_err(|e| sqlite_error(&self.path, e))?;
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(|e| sqlite_error(&self.path, e))?;
            // WAL for a database we create. An existing one is the app's:
            // its journal mode is a persistent setting we leave alone.
            if fresh {
                conn.pragma_update(None, "journal_mode", "WAL")
                    .map_err(|e| sqlite_error(&self.path, e))?;
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Other(format!("{}: no connection", self.path.display())))
    }

    fn has_table(conn: &rusqlite::Connection, path: &Path, table: &str) -> Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| sqlite_error(path, e))
    }

    fn extra(conn: &rusqlite::Connection, path: &Path, table: &str) -> Result<Extra> {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(|e| sqlite_error(path, e))?;
        let cols = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sqlite_error(path, e))?;
        Ok(Extra::of(&cols))
    }

    fn read_rows(
        conn: &rusqlite::Connection,
        path: &Path,
        table: &'static str,
    ) -> Result<Vec<RawRow>> {
        let extra = SqliteDb::extra(conn, path, table)?;
        let mut stmt = conn
            .prepare(&extra.select(table, "INTEGER"))
            .map_err(|e| sqlite_error(path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RawRow {
                    table,
                    id: r.get(0)?,
                    provider: r.get(1)?,
                    credential_type: r.get(2)?,
                    payload: r.get(3)?,
                    metadata: r.get(4)?,
                    expires_at: r.get(5)?,
                    active: r.get::<_, Option<i64>>(6)?.unwrap_or(0) != 0,
                    ui_metadata: r.get(7)?,
                    provider_config_id: r.get(8)?,
                    usage_count: r.get(9)?,
                    last_used_at: r.get(10)?,
                })
            })
            .map_err(|e| sqlite_error(path, e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| sqlite_error(path, e))
    }
}

fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    crate::fsutil::ensure_private_dir(&crate::fsutil::parent_dir(path))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::fsutil::FILE_MODE)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::io(path, e))
}

/// `access(W_OK)` on `path`, or on its nearest existing ancestor when it
/// does not exist yet (where it would be created).
fn writable_path(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut p = path;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => {
                p = Path::new(".");
                break;
            }
        }
    }
    std::ffi::CString::new(p.as_os_str().as_bytes())
        // SAFETY: a valid NUL-terminated path; access() only reads it.
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
        .unwrap_or(false)
}

impl Backend for SqliteDb {
    fn not_writable(&self) -> Option<String> {
        (!writable_path(&self.path)).then(|| {
            format!(
                "{} is not writable by this user",
                if self.path.exists() {
                    self.path.display().to_string()
                } else {
                    "the directory for the database".to_string()
                }
            )
        })
    }

    fn has_table(&mut self, table: &str) -> Result<bool> {
        if self.conn.is_none() && !self.path.exists() {
            return Ok(false);
        }
        let path = self.path.clone();
        let conn = self.conn(false)?;
        SqliteDb::has_table(conn, &path, table)
    }

    fn rows(&mut self, table: &'static str) -> Result<Vec<RawRow>> {
        let path = self.path.clone();
        let conn = self.conn(false)?;
        if !SqliteDb::has_table(conn, &path, table)? {
            return Err(StoreError::NotFound {
                location: format!("{}: {table}", path.display()),
                hint: "the table does not exist".into(),
            });
        }
        SqliteDb::read_rows(conn, &path, table)
    }

    fn modify(
        &mut self,
        table: &'static str,
        decide: &mut dyn FnMut(&[RawRow]) -> Result<Change>,
    ) -> Result<()> {
        let path = self.path.clone();
        let err = |e| sqlite_error(&path, e);
        let conn = self.conn(true)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        if !SqliteDb::has_table(&tx, &path, table)? {
            tx.execute_batch(&sqlite_schema(table)).map_err(err)?;
        }
        let rows = SqliteDb::read_rows(&tx, &path, table)?;
        let now = laravel_now();
        match decide(&rows)? {
            Change::None => return Ok(()),
            Change::Update {
                id,
                payload,
                active,
            } => {
                tx.execute(
                    &format!(
                        "UPDATE {table} SET encrypted_credentials = ?1, is_active = ?2, \
                         updated_at = ?3 WHERE id = ?4"
                    ),
                    rusqlite::params![payload, i64::from(active), now, id],
                )
                .map_err(err)?;
            }
            Change::SetMetadata {
                id,
                metadata,
                active,
            } => {
                tx.execute(
                    "UPDATE a_i_credentials SET metadata = ?1, is_active = ?2, \
                     updated_at = ?3 WHERE id = ?4",
                    rusqlite::params![metadata, i64::from(active), now, id],
                )
                .map_err(err)?;
            }
            Change::Insert {
                provider,
                credential_type,
                payload,
                metadata,
                expires_at,
                ui_metadata,
                usage_count,
                last_used_at,
            } => {
                let extra = SqliteDb::extra(&tx, &path, table)?;
                let sql =
                    insert_sql(table, extra, &|n, _| format!("?{n}")).replace("{active}", "1");
                let mut params: Vec<Box<dyn rusqlite::ToSql>> = vec![
                    Box::new(provider),
                    Box::new(credential_type),
                    Box::new(payload),
                    Box::new(metadata),
                    Box::new(expires_at),
                    Box::new(now),
                ];
                if extra.ui_metadata {
                    params.push(Box::new(ui_metadata));
                }
                if extra.usage_count {
                    params.push(Box::new(usage_count.unwrap_or(0)));
                }
                if extra.last_used_at {
                    params.push(Box::new(last_used_at));
                }
                tx.execute(&sql, rusqlite::params_from_iter(params.iter()))
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

// ------------------------------------------------------------ PostgreSQL

/// The app's migrations, PostgreSQL dialect, for a table named `table`.
fn pg_schema(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
  id BIGSERIAL PRIMARY KEY,
  provider VARCHAR(255) NOT NULL,
  credential_type VARCHAR(255) NOT NULL DEFAULT 'api_key',
  encrypted_credentials TEXT NOT NULL,
  metadata JSON,
  expires_at TIMESTAMP(0) WITHOUT TIME ZONE,
  is_active BOOLEAN NOT NULL DEFAULT TRUE,
  created_at TIMESTAMP(0) WITHOUT TIME ZONE,
  updated_at TIMESTAMP(0) WITHOUT TIME ZONE,
  ui_metadata JSON,
  provider_config_id BIGINT,
  last_used_at TIMESTAMP(0) WITHOUT TIME ZONE,
  usage_count INTEGER NOT NULL DEFAULT 0,
  total_cost NUMERIC(10,6),
  UNIQUE (provider, credential_type)
);
CREATE INDEX IF NOT EXISTS {table}_provider_index ON {table}(provider);
"
    )
}

struct PgDb {
    location: String,
    client: postgres::Client,
}

impl PgDb {
    /// Connect with the shared PostgreSQL helper (`sslmode` honoured: TLS
    /// via native-tls for require, verify-ca and verify-full).
    fn connect(spec: &StoreSpec, auth: &crate::store::pg::DbAuth) -> Result<PgDb> {
        Ok(PgDb {
            location: spec.to_string(),
            client: crate::store::pg::connect(spec, auth)?,
        })
    }

    fn error(&self, e: postgres::Error) -> StoreError {
        pg_error(&self.location, e)
    }
}

fn pg_error(location: &str, e: postgres::Error) -> StoreError {
    if e.is_closed() {
        StoreError::Unavailable {
            store: location.to_string(),
            reason: "the connection was closed".into(),
        }
    } else {
        StoreError::Other(format!("{location}: {}", pg_message(&e)))
    }
}

/// The server's message without its DETAIL (which can quote row values).
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn pg_row(table: &'static str, r: &postgres::Row) -> std::result::Result<RawRow, postgres::Error> {
    Ok(RawRow {
        table,
        id: r.try_get(0)?,
        provider: r.try_get(1)?,
        credential_type: r.try_get(2)?,
        payload: r.try_get(3)?,
        metadata: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        active: r.try_get::<_, Option<i32>>(6)?.unwrap_or(0) != 0,
        ui_metadata: r.try_get(7)?,
        provider_config_id: r.try_get(8)?,
        usage_count: r.try_get(9)?,
        last_used_at: r.try_get(10)?,
    })
}

const PG_TABLE_EXISTS: &str = "SELECT to_regclass($1::TEXT) IS NOT NULL";
const PG_COLUMNS: &str = "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1::TEXT";

/// Reads and decisions on one client or transaction.
fn pg_extra(
    c: &mut impl postgres::GenericClient,
    table: &str,
) -> std::result::Result<Extra, postgres::Error> {
    let cols: Vec<String> = c
        .query(PG_COLUMNS, &[&table])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    Ok(Extra::of(&cols))
}

impl Backend for PgDb {
    fn has_table(&mut self, table: &str) -> Result<bool> {
        match self.client.query_one(PG_TABLE_EXISTS, &[&table]) {
            Ok(r) => r.try_get::<_, bool>(0).map_err(|e| self.error(e)),
            Err(e) => Err(self.error(e)),
        }
    }

    fn rows(&mut self, table: &'static str) -> Result<Vec<RawRow>> {
        if !self.has_table(table)? {
            return Err(StoreError::NotFound {
                location: format!("{}: {table}", self.location),
                hint: "the table does not exist".into(),
            });
        }
        let extra = pg_extra(&mut self.client, table).map_err(|e| self.error(e))?;
        let rows = self
            .client
            .query(&extra.select(table, "BIGINT"), &[])
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| pg_row(table, r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.error(e))
    }

    fn modify(
        &mut self,
        table: &'static str,
        decide: &mut dyn FnMut(&[RawRow]) -> Result<Change>,
    ) -> Result<()> {
        let location = self.location.clone();
        let err = |e: postgres::Error| pg_error(&location, e);
        let mut tx = self.client.transaction().map_err(err)?;
        // Only when missing: the app's role may lack CREATE on the schema.
        let exists: bool = tx
            .query_one(PG_TABLE_EXISTS, &[&table])
            .and_then(|r| r.try_get(0))
            .map_err(err)?;
        if !exists {
            tx.batch_execute(&pg_schema(table)).map_err(err)?;
        }
        let is_bool: bool = tx
            .query_one(
                "SELECT COALESCE((SELECT data_type = 'boolean' FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1::TEXT \
                 AND column_name = 'is_active'), TRUE)",
                &[&table],
            )
            .and_then(|r| r.try_get(0))
            .map_err(err)?;
        let flag = |on: bool| match (is_bool, on) {
            (true, true) => "TRUE",
            (true, false) => "FALSE",
            (false, true) => "1",
            (false, false) => "0",
        };
        let extra = pg_extra(&mut tx, table).map_err(err)?;
        let rows = tx
            .query(
                &format!("{} FOR UPDATE", extra.select(table, "BIGINT")),
                &[],
            )
            .map_err(err)?
            .iter()
            .map(|r| pg_row(table, r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err)?;
        let now = laravel_now();
        match decide(&rows)? {
            Change::None => return Ok(()),
            Change::Update {
                id,
                payload,
                active,
            } => {
                tx.execute(
                    &format!(
                        "UPDATE {table} SET encrypted_credentials = $1::TEXT, \
                         is_active = {}, updated_at = CAST($2::TEXT AS TIMESTAMP) \
                         WHERE id = $3::BIGINT",
                        flag(active)
                    ),
                    &[&payload, &now, &id],
                )
                .map_err(err)?;
            }
            Change::SetMetadata {
                id,
                metadata,
                active,
            } => {
                tx.execute(
                    &format!(
                        "UPDATE a_i_credentials SET metadata = CAST($1::TEXT AS JSON), \
                         is_active = {}, updated_at = CAST($2::TEXT AS TIMESTAMP) \
                         WHERE id = $3::BIGINT",
                        flag(active)
                    ),
                    &[&metadata, &now, &id],
                )
                .map_err(err)?;
            }
            Change::Insert {
                provider,
                credential_type,
                payload,
                metadata,
                expires_at,
                ui_metadata,
                usage_count,
                last_used_at,
            } => {
                let sql = insert_sql(table, extra, &|n, kind| match kind {
                    "json" => format!("CAST(${n}::TEXT AS JSON)"),
                    "time" => format!("CAST(${n}::TEXT AS TIMESTAMP)"),
                    "int" => format!("${n}::BIGINT"),
                    _ => format!("${n}::TEXT"),
                })
                .replace("{active}", flag(true));
                let usage = usage_count.unwrap_or(0);
                let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![
                    &provider,
                    &credential_type,
                    &payload,
                    &metadata,
                    &expires_at,
                    &now,
                ];
                if extra.ui_metadata {
                    params.push(&ui_metadata);
                }
                if extra.usage_count {
                    params.push(&usage);
                }
                if extra.last_used_at {
                    params.push(&last_used_at);
                }
                tx.execute(&sql, &params).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_rfc3339() {
        assert_eq!(
            rfc3339_of("2026-09-01 10:00:00"),
            "2026-09-01T10:00:00+00:00"
        );
        assert_eq!(
            rfc3339_of("2026-09-01 10:00:00+02"),
            "2026-09-01T10:00:00+02:00"
        );
        assert_eq!(
            rfc3339_of("2026-09-01T10:00:00.5"),
            "2026-09-01T10:00:00.500+00:00"
        );
        assert_eq!(rfc3339_of("soon"), "soon");
        assert_eq!(
            laravel_time_from_ms(1_789_992_000_000).as_deref(),
            Some("2026-09-21 12:00:00")
        );
    }

    #[test]
    fn writability_is_judged_at_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        assert!(writable_path(&dir.path().join("a/b/c.sqlite")));
        assert!(writable_path(Path::new("relative/new.sqlite")));
    }

    #[test]
    fn connection_failures_are_clear_and_never_show_the_password() {
        for q in [
            "",
            "?sslmode=require",
            "?sslmode=verify-full",
            "?sslmode=bogus",
        ] {
            let url = format!("postgres://u:hunter2@127.0.0.1:1/db{q}");
            let spec: StoreSpec = format!("laravel:{url}").parse().unwrap();
            let opts = OpenOptions {
                app_key: Some(Secret::new(format!("base64:{}", "A".repeat(43) + "="))),
                ..OpenOptions::default()
            };
            let e = open(&spec, &opts).err().unwrap();
            let msg = e.to_string();
            assert!(e.is_unavailable(), "{q}: {msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
            if q.contains("bogus") {
                assert!(msg.contains("sslmode"), "{msg}");
            }
        }
    }

    #[test]
    fn namespaces_follow_the_credential_type() {
        let mut row = RawRow {
            table: TABLE_OLD,
            id: 1,
            provider: "openai".into(),
            credential_type: "api_key".into(),
            payload: String::new(),
            metadata: None,
            expires_at: None,
            active: true,
            ui_metadata: None,
            provider_config_id: None,
            usage_count: None,
            last_used_at: None,
        };
        assert_eq!(row.namespace(), "openai");
        row.credential_type = "oauth".into();
        assert_eq!(row.namespace(), "openai:oauth");
        assert!(row.serves("openai:oauth") && !row.serves("openai"));
        assert_eq!(row.location(), "a_i_credentials id=1 provider=openai");
    }
}
