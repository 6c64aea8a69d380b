//! `laravel:postgres://...`: the fixture rows loaded into a throwaway
//! PostgreSQL (tests/support/pg.rs), with `is_active` as Laravel makes it on
//! PostgreSQL (BOOLEAN) and as an integer column, round-tripped through the
//! store and the CLI.

use crate::support;

use credshift::credential::{Credential, Kind, Secret};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use support::*;

const FIXTURE_IDS: [&str; 4] = [
    "anthropic/key",
    "ollama/base",
    "openai/key",
    "openrouter/key",
];

/// The Fragments Engine migration as Laravel's schema builder emits it for
/// PostgreSQL; `active_type` is BOOLEAN there, SMALLINT in the variant test.
fn pg_schema(active_type: &str) -> String {
    support::laravel::pg_schema("a_i_credentials", active_type)
}

/// data.sql with `is_active` as that column type wants it.
fn pg_data(active_type: &str) -> String {
    let sql = std::fs::read_to_string(fixture("fragments/data.sql")).unwrap();
    if active_type == "BOOLEAN" {
        // `..., '{metadata}', 1, '2026-...'`: the 1 is is_active.
        let out = sql.replace("}', 1, '", "}', TRUE, '");
        assert_eq!(out.matches(", TRUE, ").count(), 4, "fixture shape changed");
        out
    } else {
        sql
    }
}

fn app_key() -> String {
    fragments_app_key()
}

fn open(url: &str) -> Box<dyn Store> {
    let spec: StoreSpec = format!("laravel:{url}").parse().unwrap();
    let opts = KeyOptions {
        app_key: Some(Secret::new(app_key())),
        ..KeyOptions::default()
    };
    store::open(&spec, &opts).unwrap()
}

/// (provider, is_active as 0/1) of every row.
fn activity(url: &str) -> Vec<(String, i32)> {
    let mut c = pg::connect(url);
    // ai_credentials when it exists (what credshift creates), else the old name.
    let table: String = c
        .query_one(
            "SELECT CASE WHEN to_regclass('ai_credentials') IS NULL \
             THEN 'a_i_credentials' ELSE 'ai_credentials' END",
            &[],
        )
        .unwrap()
        .get(0);
    c.query(
        &format!("SELECT provider::TEXT, is_active::INTEGER FROM {table} ORDER BY id"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn round_trip(active_type: &str) {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::execute(&url, &pg_schema(active_type));
    pg::execute(&url, &pg_data(active_type));
    let store = open(&url);
    let expected = expected();

    assert_eq!(ids(store.as_ref()), FIXTURE_IDS);
    for fid in FIXTURE_IDS {
        assert_eq!(
            secret_of(store.as_ref(), fid).as_deref(),
            Some(expected[fid].as_str()),
            "{fid}"
        );
    }
    let cap = store.probe();
    assert!(cap.available && cap.exists && cap.encrypted_at_rest);
    assert_eq!(cap.item_count, Some(4));

    // Update a row, insert a row.
    store
        .write(&Credential::new(
            id("openai/organization"),
            Kind::Other,
            "org-ключ-🔑",
        ))
        .unwrap();
    store
        .write(&Credential::new(
            id("mistral/key"),
            Kind::ApiKey,
            "mistral-pg-value-1",
        ))
        .unwrap();
    assert_eq!(
        secret_of(store.as_ref(), "openai/organization").as_deref(),
        Some("org-ключ-🔑")
    );
    assert_eq!(
        secret_of(store.as_ref(), "openai/key").as_deref(),
        Some(expected["openai/key"].as_str())
    );
    assert_eq!(
        secret_of(store.as_ref(), "mistral/key").as_deref(),
        Some("mistral-pg-value-1")
    );

    // Soft delete of the last field.
    assert!(store.delete(&id("mistral/key")).unwrap());
    assert!(store.delete(&id("ollama/base")).unwrap());
    assert!(!store.delete(&id("ollama/base")).unwrap());
    let rows = activity(&url);
    assert!(rows.contains(&("mistral".into(), 0)), "{rows:?}");
    assert!(rows.contains(&("ollama".into(), 0)), "{rows:?}");
    assert!(rows.contains(&("openai".into(), 1)), "{rows:?}");
    assert_eq!(
        ids(store.as_ref()),
        [
            "anthropic/key",
            "openai/key",
            "openai/organization",
            "openrouter/key"
        ]
    );
    // Writing again reactivates the row.
    store
        .write(&Credential::new(
            id("ollama/base"),
            Kind::Other,
            "http://ollama:11434",
        ))
        .unwrap();
    assert!(activity(&url).contains(&("ollama".into(), 1)));

    // The CLI reads the same rows.
    let state = tempfile::tempdir().unwrap();
    let spec = format!("laravel:{url}");
    let (out, stdout, stderr) = run(credshift(state.path()).env("APP_KEY", app_key()).args([
        "get",
        "--from",
        &spec,
        "anthropic/key",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), expected["anthropic/key"]);
    let (out, stdout, stderr) = run(credshift(state.path()).env("APP_KEY", app_key()).args([
        "inventory",
        "--from",
        &spec,
        "--json",
    ]));
    assert!(out.status.success(), "{stderr}");
    let inv: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(inv["items"].as_array().unwrap().len(), 5);
    assert!(!stdout.contains(&expected["anthropic/key"]));
}

#[test]
fn postgres_round_trip_with_boolean_is_active() {
    round_trip("BOOLEAN");
}

#[test]
fn postgres_round_trip_with_integer_is_active() {
    round_trip("SMALLINT");
}

#[test]
fn postgres_tampered_row_and_wrong_key() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::execute(&url, &pg_schema("BOOLEAN"));
    pg::execute(&url, &pg_data("BOOLEAN"));
    // Flip one hex digit of openrouter's MAC.
    let mut client = pg::connect(&url);
    let payload: String = client
        .query_one(
            "SELECT encrypted_credentials FROM a_i_credentials WHERE provider = 'openrouter'",
            &[],
        )
        .unwrap()
        .get(0);
    let engine = base64::engine::general_purpose::STANDARD;
    let mut v: serde_json::Value =
        serde_json::from_slice(&base64::Engine::decode(&engine, &payload).unwrap()).unwrap();
    let mac = v["mac"].as_str().unwrap().to_string();
    v["mac"] = format!(
        "{}{}",
        if mac.starts_with('0') { '1' } else { '0' },
        &mac[1..]
    )
    .into();
    let tampered = base64::Engine::encode(&engine, v.to_string());
    client
        .execute(
            "UPDATE a_i_credentials SET encrypted_credentials = $1 WHERE provider = 'openrouter'",
            &[&tampered],
        )
        .unwrap();
    let store = open(&url);
    let listing = store.list().unwrap();
    assert_eq!(listing.entries.len(), 3);
    assert_eq!(listing.errors.len(), 1, "{:?}", listing.errors);
    assert_eq!(
        listing.errors[0].location,
        "a_i_credentials id=3 provider=openrouter"
    );
    assert!(
        listing.errors[0].error.contains("MAC"),
        "{:?}",
        listing.errors
    );

    let spec: StoreSpec = format!("laravel:{url}").parse().unwrap();
    let wrong = KeyOptions {
        app_key: Some(Secret::new(format!("base64:{}", "A".repeat(43) + "="))),
        ..KeyOptions::default()
    };
    let store = store::open(&spec, &wrong).unwrap();
    assert_eq!(store.list().unwrap().errors.len(), 4);
    let before = activity(&url);
    assert!(
        store
            .write(&Credential::new(id("mistral/key"), Kind::ApiKey, "nope-1"))
            .is_err()
    );
    assert_eq!(activity(&url), before, "nothing written under a wrong key");
}

#[test]
fn postgres_table_is_created_on_first_write() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    let store = open(&url);
    assert!(store.list().is_err(), "no table yet");
    assert!(!store.probe().exists);
    store
        .write(&Credential::new(
            id("openai/key"),
            Kind::ApiKey,
            "sk-created-in-pg-1",
        ))
        .unwrap();
    assert_eq!(ids(store.as_ref()), ["openai/key"]);
    assert_eq!(activity(&url), [("openai".to_string(), 1)]);
    let kind: String = pg::connect(&url)
        .query_one(
            "SELECT data_type::TEXT FROM information_schema.columns \
             WHERE table_name = 'ai_credentials' AND column_name = 'is_active'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kind, "boolean");
}

#[test]
fn postgres_store_lock_excludes_a_second_holder() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    let a = open(&url);
    let b = open(&url);
    use credshift::store::LockMode::Exclusive;
    let held = a
        .lock(Exclusive, std::time::Duration::from_secs(1))
        .unwrap()
        .expect("laravel:postgres has its own lock");
    let e = b
        .lock(Exclusive, std::time::Duration::from_millis(300))
        .err()
        .expect("second holder must wait and time out");
    assert!(
        matches!(e, credshift::error::StoreError::Locked { .. }),
        "{e}"
    );
    drop(held);
    assert!(
        b.lock(Exclusive, std::time::Duration::from_secs(2))
            .unwrap()
            .is_some()
    );
}
