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
use crate::store::{Capability, DeleteIf, Listing, LocationError, Scan, Store, StoreSpec};
use crate::unlock::KeyOptions;

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

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
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

/// A value bound to a change's statement.
enum Param {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

/// The statement (and its parameters) that carries out `change` on
/// `table`, in a backend's SQL: `placeholder(n, kind)` spells parameter `n`
/// of a kind (`text`, `json`, `time`, `int`), `flag(on)` a value of
/// `is_active`. `None` for [`Change::None`]. One place for what each change
/// writes, whichever database holds the table.
fn change_statement(
    table: &str,
    change: Change,
    extra: Extra,
    now: String,
    placeholder: &dyn Fn(usize, &str) -> String,
    flag: &dyn Fn(bool) -> &'static str,
) -> Option<(String, Vec<Param>)> {
    let p = placeholder;
    let update = |column: &str, kind: &str, active: bool| {
        format!(
            "UPDATE {table} SET {column} = {}, is_active = {}, updated_at = {} WHERE id = {}",
            p(1, kind),
            flag(active),
            p(2, "time"),
            p(3, "int")
        )
    };
    match change {
        Change::None => None,
        Change::Update {
            id,
            payload,
            active,
        } => Some((
            update("encrypted_credentials", "text", active),
            vec![Param::Text(payload), Param::Text(now), Param::Int(id)],
        )),
        Change::SetMetadata {
            id,
            metadata,
            active,
        } => Some((
            update("metadata", "json", active),
            vec![Param::Text(metadata), Param::Text(now), Param::Int(id)],
        )),
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
            let sql = insert_sql(table, extra, p).replace("{active}", flag(true));
            let mut params = vec![
                Param::Text(provider),
                Param::Text(credential_type),
                Param::Text(payload),
                Param::Text(metadata),
                Param::OptText(expires_at),
                Param::Text(now),
            ];
            if extra.ui_metadata {
                params.push(Param::OptText(ui_metadata));
            }
            if extra.usage_count {
                params.push(Param::Int(usage_count.unwrap_or(0)));
            }
            if extra.last_used_at {
                params.push(Param::OptText(last_used_at));
            }
            Some((sql, params))
        }
    }
}

mod postgres;
mod rekey;
mod sqlite;
mod store;

pub use rekey::rekey_cells;

use postgres::PgDb;
use sqlite::SqliteDb;

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
    fn connection_failures_are_clear_and_never_show_the_password() {
        for q in [
            "",
            "?sslmode=require",
            "?sslmode=verify-full",
            "?sslmode=bogus",
        ] {
            let url = format!("postgres://u:hunter2@127.0.0.1:1/db{q}");
            let spec: StoreSpec = format!("laravel:{url}").parse().unwrap();
            let opts = KeyOptions {
                app_key: Some(Secret::new(format!("base64:{}", "A".repeat(43) + "="))),
                ..KeyOptions::default()
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
    fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let spec: StoreSpec = format!("laravel:sqlite:{}", dir.path().join("f.sqlite").display())
            .parse()
            .unwrap();
        let opts = KeyOptions {
            app_key: Some(Secret::new(format!("base64:{}", "A".repeat(43) + "="))),
            ..KeyOptions::default()
        };
        let s = open(&spec, &opts).unwrap();
        let c = |v: &str| Credential::new(CredentialId::new("openai", "key"), Kind::ApiKey, v);
        crate::store::test_support::assert_compare_and_replace_keeps_a_racing_write(
            s.as_ref(),
            open(&spec, &opts).unwrap(),
            &c("sk-ours"),
            &c("sk-old"),
            &c("sk-theirs"),
        );
    }

    #[test]
    fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let spec: StoreSpec = format!("laravel:sqlite:{}", dir.path().join("f.sqlite").display())
            .parse()
            .unwrap();
        let opts = KeyOptions {
            app_key: Some(Secret::new(format!("base64:{}", "A".repeat(43) + "="))),
            ..KeyOptions::default()
        };
        let s = open(&spec, &opts).unwrap();
        let keep = Credential::new(CredentialId::new("openai", "org"), Kind::Other, "o-1");
        s.write(&keep).unwrap();
        crate::store::test_support::assert_compare_and_delete_keeps_a_racing_write(
            s.as_ref(),
            open(&spec, &opts).unwrap(),
            &Credential::new(CredentialId::new("openai", "key"), Kind::ApiKey, "sk-1"),
            &Credential::new(CredentialId::new("openai", "key"), Kind::ApiKey, "sk-2"),
        );
        let kept = s.read(&keep.id).unwrap().unwrap();
        assert_eq!(kept.secret.expose(), "o-1", "the row's other field stays");
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
