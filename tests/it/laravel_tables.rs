//! Fragments Engine as it is today: the table `ai_credentials` (renamed from
//! `a_i_credentials` in late 2025), both names side by side and `?table=`,
//! the app's other columns as metadata, UNIQUE(provider, credential_type),
//! and `migrated_from` / `migrated_at` in a new row's metadata. SQLite and
//! PostgreSQL.

use crate::support;

use std::path::{Path, PathBuf};

use credshift::credential::{Credential, Kind, Secret};
use credshift::crypto::laravel::{self as crypt, AppKey};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use support::*;

const FIXTURE_IDS: [&str; 4] = [
    "anthropic/key",
    "ollama/base",
    "openai/key",
    "openrouter/key",
];

fn app_key_text() -> String {
    fragments_app_key()
}

fn opts() -> KeyOptions {
    KeyOptions {
        app_key: Some(Secret::new(app_key_text())),
        ..KeyOptions::default()
    }
}

fn open_spec(spec: &str) -> credshift::error::Result<Box<dyn Store>> {
    store::open(&spec.parse::<StoreSpec>().unwrap(), &opts())
}

/// The fixture's schema and rows, under `table`.
fn fixture_sql(table: &str) -> String {
    let mut sql = String::new();
    for f in ["fragments/schema.sql", "fragments/data.sql"] {
        sql.push_str(&std::fs::read_to_string(fixture(f)).unwrap());
        sql.push('\n');
    }
    sql.replace("a_i_credentials", table)
}

fn sqlite_db(dir: &Path, name: &str, tables: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for t in tables {
        conn.execute_batch(&fixture_sql(t)).unwrap();
    }
    path
}

fn seal(json: &str) -> String {
    let key = AppKey::parse(&Secret::new(app_key_text())).unwrap();
    crypt::encrypt(&key, crypt::php_serialize_str(json).as_bytes()).unwrap()
}

#[test]
fn the_current_table_name_is_read_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path(), "app.sqlite", &["ai_credentials"]);
    let store = open_spec(&format!("laravel:sqlite:{}", db.display())).unwrap();
    assert_eq!(ids(store.as_ref()), FIXTURE_IDS);
    assert_eq!(store.probe().item_count, Some(4));
    store
        .write(&Credential::new(
            "mistral/key".parse().unwrap(),
            Kind::ApiKey,
            "mistral-new-key-0123456789",
        ))
        .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM ai_credentials WHERE provider = 'mistral'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    let old: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'a_i_credentials'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "no second table created beside the app's");
}

#[test]
fn both_tables_need_a_table_suffix_and_it_picks_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path(), "both.sqlite", &["a_i_credentials"]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    // The new table with one row of its own.
    conn.execute_batch(
        &std::fs::read_to_string(fixture("fragments/schema.sql"))
            .unwrap()
            .replace("a_i_credentials", "ai_credentials"),
    )
    .unwrap();
    conn.execute(
        "INSERT INTO ai_credentials (provider, credential_type, encrypted_credentials, is_active) \
         VALUES ('groq', 'api_key', ?1, 1)",
        [seal(r#"{"key":"gsk_new_table_value_0123456789"}"#)],
    )
    .unwrap();

    let bare = format!("laravel:sqlite:{}", db.display());
    let store = open_spec(&bare).unwrap();
    let e = store.list().expect_err("both tables: no guess").to_string();
    assert!(
        e.contains("ai_credentials") && e.contains("a_i_credentials"),
        "{e}"
    );
    assert!(e.contains("?table="), "{e}");
    let cap = store.probe();
    assert!(!cap.available, "{cap:?}");
    assert!(
        store
            .write(&Credential::new(
                "x/key".parse().unwrap(),
                Kind::ApiKey,
                "v-0123456789"
            ))
            .is_err(),
        "nothing written without a choice"
    );

    let new = open_spec(&format!("{bare}?table=ai_credentials")).unwrap();
    assert_eq!(ids(new.as_ref()), ["groq/key"]);
    let old = open_spec(&format!("{bare}?table=a_i_credentials")).unwrap();
    assert_eq!(ids(old.as_ref()), FIXTURE_IDS);

    let e = open_spec(&format!("{bare}?table=users"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("users") && e.contains("ai_credentials"), "{e}");

    // The same through the CLI.
    let state = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(credshift(state.path())
        .env("APP_KEY", app_key_text())
        .args(["inventory", "--json", "--from"])
        .arg(format!("{bare}?table=ai_credentials")));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("groq/key"), "{stdout}");
    let (out, _, stderr) = run(credshift(state.path())
        .env("APP_KEY", app_key_text())
        .args(["inventory", "--from", &bare]));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("?table="), "{stderr}");
}

/// A row as the app writes it, with every column it has.
const FULL_ROW: &str = "INSERT INTO ai_credentials (provider, credential_type, \
     encrypted_credentials, metadata, expires_at, is_active, created_at, updated_at, \
     ui_metadata, provider_config_id, last_used_at, usage_count) VALUES \
     ('openai', 'oauth', ?1, '{\"label\":\"work\"}', '2030-01-02 03:04:05', 1, \
     '2026-01-01 00:00:00', '2026-01-01 00:00:00', '{\"color\":\"teal\",\"pinned\":true}', \
     7, '2026-11-01 12:00:00', 42)";

#[test]
fn the_apps_columns_travel_as_metadata_and_land_in_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.sqlite");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(
        &std::fs::read_to_string(fixture("fragments/schema.sql"))
            .unwrap()
            .replace("a_i_credentials", "ai_credentials"),
    )
    .unwrap();
    conn.execute(
        FULL_ROW,
        [seal(r#"{"access_token":"ya29.full-row-token-0123"}"#)],
    )
    .unwrap();
    let source = open_spec(&format!("laravel:sqlite:{}", src.display())).unwrap();
    let c = source
        .read(&"openai:oauth/access_token".parse().unwrap())
        .unwrap()
        .unwrap();
    let m = &c.metadata;
    assert_eq!(m["credential_type"], "oauth");
    assert_eq!(m["expires_at"], "2030-01-02T03:04:05+00:00");
    assert_eq!(m["label"], "work");
    assert_eq!(
        m["ui_metadata"],
        serde_json::json!({"color": "teal", "pinned": true})
    );
    assert_eq!(m["provider_config_id"], 7);
    assert_eq!(m["usage_count"], 42);
    assert_eq!(m["last_used_at"], "2026-11-01T12:00:00+00:00");

    // Into another install's (empty) database.
    let dst = dir.path().join("dst.sqlite");
    let target = open_spec(&format!("laravel:sqlite:{}", dst.display())).unwrap();
    target.write(&c).unwrap();
    let conn = rusqlite::Connection::open(&dst).unwrap();
    let row: (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<i64>,
        i64,
        String,
    ) = conn
        .query_row(
            "SELECT provider, credential_type, metadata, expires_at, ui_metadata, \
             provider_config_id, usage_count, last_used_at FROM ai_credentials",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .unwrap();
    assert_eq!((row.0.as_str(), row.1.as_str()), ("openai", "oauth"));
    assert_eq!(row.3, "2030-01-02 03:04:05");
    let ui: serde_json::Value = serde_json::from_str(row.4.as_deref().unwrap()).unwrap();
    assert_eq!(ui, serde_json::json!({"color": "teal", "pinned": true}));
    assert_eq!(
        row.5, None,
        "provider_config_id points into the source database"
    );
    assert_eq!(row.6, 42);
    assert_eq!(row.7, "2026-11-01 12:00:00");
    let meta: serde_json::Value = serde_json::from_str(&row.2).unwrap();
    assert_eq!(meta["label"], "work");
    assert_eq!(meta["migrated_from"], "credshift");
    assert_eq!(meta["original_id"], "openai:oauth/access_token");
    let at = meta["migrated_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
        "{at}"
    );
    for derived in [
        "credential_type",
        "ui_metadata",
        "usage_count",
        "last_used_at",
    ] {
        assert!(
            meta.get(derived).is_none(),
            "{derived} is a column, not metadata"
        );
    }
    // Read back under the same id.
    let back = target
        .read(&"openai:oauth/access_token".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(back.secret.expose(), "ya29.full-row-token-0123");
}

#[test]
fn unique_provider_and_type_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path(), "u.sqlite", &["ai_credentials"]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    // A soft-deleted oauth row of openai: a new write must reuse it.
    conn.execute(
        "INSERT INTO ai_credentials (provider, credential_type, encrypted_credentials, is_active) \
         VALUES ('openai', 'oauth', ?1, 0)",
        [seal(r#"{"access_token":"old-deleted-token-01234"}"#)],
    )
    .unwrap();
    let count = || -> i64 {
        conn.query_row("SELECT count(*) FROM ai_credentials", [], |r| r.get(0))
            .unwrap()
    };
    let before = count();
    let store = open_spec(&format!("laravel:sqlite:{}", db.display())).unwrap();
    let mut meta = serde_json::Map::new();
    meta.insert("credential_type".into(), "oauth".into());
    let c = Credential::new(
        "openai:oauth/access_token".parse().unwrap(),
        Kind::OauthAccess,
        "ya29.new-token-0123456789",
    )
    .with_metadata(meta.clone());
    store.write(&c).unwrap();
    assert_eq!(
        count(),
        before,
        "the existing (openai, oauth) row was reused"
    );
    let active: i64 = conn
        .query_row(
            "SELECT is_active FROM ai_credentials WHERE provider = 'openai' AND credential_type = 'oauth'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(active, 1);

    // A new type of a known provider is its own row, keyed as the app keys it.
    let c = Credential::new(
        "anthropic:oauth/access_token".parse().unwrap(),
        Kind::OauthAccess,
        "sk-ant-oat-new-0123456789",
    )
    .with_metadata(meta);
    store.write(&c).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM ai_credentials WHERE provider = 'anthropic' AND credential_type = 'oauth'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        store
            .read(&"anthropic:oauth/access_token".parse().unwrap())
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        "sk-ant-oat-new-0123456789"
    );
}

#[test]
fn a_table_from_the_first_migration_only_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v1.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE a_i_credentials (id INTEGER PRIMARY KEY AUTOINCREMENT, provider VARCHAR NOT NULL, \
         credential_type VARCHAR NOT NULL DEFAULT 'api_key', encrypted_credentials TEXT NOT NULL, \
         metadata TEXT, expires_at DATETIME, is_active TINYINT(1) NOT NULL DEFAULT 1, \
         created_at DATETIME, updated_at DATETIME, UNIQUE (provider, credential_type));",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO a_i_credentials (provider, encrypted_credentials) VALUES ('openai', ?1)",
        [seal(r#"{"key":"sk-v1-table-0123456789"}"#)],
    )
    .unwrap();
    let store = open_spec(&format!("laravel:sqlite:{}", db.display())).unwrap();
    assert_eq!(ids(store.as_ref()), ["openai/key"]);
    let mut meta = serde_json::Map::new();
    meta.insert("usage_count".into(), 3.into());
    store
        .write(
            &Credential::new(
                "groq/key".parse().unwrap(),
                Kind::ApiKey,
                "gsk_v1-0123456789",
            )
            .with_metadata(meta),
        )
        .unwrap();
    assert_eq!(ids(store.as_ref()), ["groq/key", "openai/key"]);
}

// ---- PostgreSQL ---------------------------------------------------------------

fn pg_schema(table: &str) -> String {
    support::laravel::pg_schema(table, "BOOLEAN")
}

#[test]
fn postgres_current_table_both_tables_and_columns() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::execute(&url, &pg_schema("ai_credentials"));
    let mut c = pg::connect(&url);
    c.execute(
        "INSERT INTO ai_credentials (provider, credential_type, encrypted_credentials, metadata, \
         expires_at, ui_metadata, provider_config_id, last_used_at, usage_count) VALUES \
         ('openai', 'oauth', $1, '{\"label\":\"work\"}', '2030-01-02 03:04:05', \
         '{\"color\":\"teal\"}', 7, '2026-11-01 12:00:00', 42)",
        &[&seal(r#"{"access_token":"ya29.pg-token-0123456789"}"#)],
    )
    .unwrap();
    let spec = format!("laravel:{url}");
    let store = open_spec(&spec).unwrap();
    assert_eq!(ids(store.as_ref()), ["openai:oauth/access_token"]);
    let got = store
        .read(&"openai:oauth/access_token".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        got.metadata["ui_metadata"],
        serde_json::json!({"color": "teal"})
    );
    assert_eq!(got.metadata["provider_config_id"], 7);
    assert_eq!(got.metadata["usage_count"], 42);
    assert_eq!(got.metadata["last_used_at"], "2026-11-01T12:00:00+00:00");

    // A write lands in ai_credentials with the columns and the migrate metadata.
    let mut meta = got.metadata.clone();
    meta.insert("credential_type".into(), "oauth".into());
    store
        .write(
            &Credential::new(
                "anthropic:oauth/access_token".parse().unwrap(),
                Kind::OauthAccess,
                "sk-ant-oat-pg-0123456789",
            )
            .with_metadata(meta),
        )
        .unwrap();
    let r = c
        .query_one(
            "SELECT credential_type::TEXT, ui_metadata::TEXT, usage_count, \
             last_used_at::TEXT, metadata::TEXT FROM ai_credentials WHERE provider = 'anthropic'",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "oauth");
    let ui: serde_json::Value = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
    assert_eq!(ui, serde_json::json!({"color": "teal"}));
    assert_eq!(r.get::<_, i32>(2), 42);
    assert_eq!(r.get::<_, String>(3), "2026-11-01 12:00:00");
    let m: serde_json::Value = serde_json::from_str(&r.get::<_, String>(4)).unwrap();
    assert_eq!(m["migrated_from"], "credshift");
    assert!(m["migrated_at"].is_string());

    // The old table beside it: a choice is needed, and ?table= makes it,
    // with other URL parameters kept.
    pg::execute(&url, &pg_schema("a_i_credentials"));
    c.execute(
        "INSERT INTO a_i_credentials (provider, encrypted_credentials) VALUES ('groq', $1)",
        &[&seal(r#"{"key":"gsk_old_table_0123456789"}"#)],
    )
    .unwrap();
    let e = open_spec(&spec).unwrap().list().err().unwrap().to_string();
    assert!(e.contains("?table="), "{e}");
    let old = open_spec(&format!("{spec}?sslmode=disable&table=a_i_credentials")).unwrap();
    assert_eq!(ids(old.as_ref()), ["groq/key"]);
    let new = open_spec(&format!("{spec}?table=ai_credentials")).unwrap();
    assert_eq!(
        ids(new.as_ref()),
        ["anthropic:oauth/access_token", "openai:oauth/access_token"]
    );
}

#[test]
fn the_old_table_moves_into_the_new_one_in_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path(), "app.sqlite", &["a_i_credentials"]);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            &std::fs::read_to_string(fixture("fragments/schema.sql"))
                .unwrap()
                .replace("a_i_credentials", "ai_credentials"),
        )
        .unwrap();
    let spec = |t: &str| format!("laravel:sqlite:{}?table={t}", db.display());
    let state = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(credshift(state.path())
        .env("APP_KEY", app_key_text())
        .args(["migrate", "--yes", "--from"])
        .arg(spec("a_i_credentials"))
        .arg("--to")
        .arg(spec("ai_credentials")));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let new = open_spec(&spec("ai_credentials")).unwrap();
    assert_eq!(ids(new.as_ref()), FIXTURE_IDS);
    let old = open_spec(&spec("a_i_credentials")).unwrap();
    for id in FIXTURE_IDS {
        let id = id.parse().unwrap();
        let (a, b) = (
            old.read(&id).unwrap().unwrap(),
            new.read(&id).unwrap().unwrap(),
        );
        assert_eq!(a.secret.expose(), b.secret.expose(), "{id}");
        assert_eq!(b.metadata["migrated_from"], "credshift");
    }
}

/// A secret in the `metadata` column of a row of `ai_credentials` (today's
/// table name) is deleted from and written back into that table: the
/// statement once named `a_i_credentials` whatever the table was.
#[test]
fn a_metadata_secret_is_changed_in_the_current_table() {
    const META_KEY: &str = "sk-proj-currentTableMetadataKey000001";
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(dir.path(), "app.sqlite", &["ai_credentials"]);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE ai_credentials SET metadata = ?1 WHERE provider = 'openai'",
        [format!(r#"{{"api_key":"{META_KEY}","note":"kept"}}"#)],
    )
    .unwrap();
    let store = open_spec(&format!("laravel:sqlite:{}", db.display())).unwrap();
    let id = "openai/metadata.api_key".parse().unwrap();
    let c = store.read(&id).unwrap().expect("listed");
    assert!(store.delete(&id).unwrap());
    let column = |conn: &rusqlite::Connection| -> String {
        conn.query_row(
            "SELECT metadata FROM ai_credentials WHERE provider = 'openai'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(!column(&conn).contains(META_KEY), "{}", column(&conn));
    assert!(column(&conn).contains("kept"));
    assert!(store.read(&id).unwrap().is_none());
    store.write(&c).unwrap();
    assert!(column(&conn).contains(META_KEY));
    assert_eq!(store.read(&id).unwrap().unwrap().secret.expose(), META_KEY);
}
