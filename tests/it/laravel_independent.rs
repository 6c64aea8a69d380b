//! What credshift writes into the Fragments Engine's table is read back by an
//! independent implementation of Laravel's Encrypter (`scripts/laravel-crypto.js`,
//! Node's own crypto), not by credshift's decoder: every agent-prompttrain
//! fixture secret migrated into `laravel:sqlite:` and `laravel:postgres://`
//! decrypts there, under the app's `APP_KEY`, to exactly the fixture's value.

use crate::support;

use std::collections::BTreeMap;

use serde_json::Value;

use support::laravel::NodeOpened;
use support::*;

/// Each row's provider and its decrypted JSON object of fields.
fn rows_by_node(app_key: &str, rows: Vec<(String, String)>) -> Option<BTreeMap<String, Value>> {
    let payloads: Vec<String> = rows.iter().map(|(_, p)| p.clone()).collect();
    let plain = support::laravel::node_decrypt(app_key, &payloads)?;
    Some(
        rows.into_iter()
            .zip(plain)
            .map(|((provider, _), opened)| {
                let NodeOpened::Plain { text, serialized } = opened else {
                    panic!("{provider}: Node could not decrypt the row: {opened:?}");
                };
                assert!(
                    serialized,
                    "{provider}: Crypt::encrypt serializes its plaintext"
                );
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{provider}: not a JSON object: {e}"));
                (provider, v)
            })
            .collect(),
    )
}

/// Every fixture secret credshift moved is in its row, field by field.
fn assert_every_secret_arrived(rows: &BTreeMap<String, Value>, moved: &[String]) {
    let expected = expected();
    assert!(!moved.is_empty());
    for id in moved {
        let (provider, field) = id.split_once('/').unwrap();
        let row = rows
            .get(provider)
            .unwrap_or_else(|| panic!("no row for {provider} ({id})"));
        assert_eq!(
            row[field].as_str(),
            Some(expected[id].as_str()),
            "{id}: Node decrypted another value"
        );
    }
}

/// `credshift migrate` from the agent-prompttrain fixture into `to`; the
/// ids it copied.
fn migrate_prompttrain_into(to: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let src = copy_fixture("prompttrain/credentials", dir.path());
    let state = dir.path().join("state");
    let (out, stdout, stderr) = run(credshift(&state)
        .env("APP_KEY", fragments_app_key())
        .args([
            "migrate",
            "--from",
            &format!("prompttrain:{}", src.display()),
        ])
        .args(["--to", to, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["failed"], 0, "{r}");
    let expected = expected();
    let moved: Vec<String> = expected
        .keys()
        .filter(|id| id.starts_with("account:") || id.starts_with("train:"))
        .cloned()
        .collect();
    assert_eq!(r["copied"].as_u64().unwrap() as usize, moved.len(), "{r}");
    moved
}

#[test]
fn sqlite_rows_credshift_writes_decrypt_with_laravels_own_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let db = fragments_db(&dir.path().join("fragments.sqlite"));
    let moved = migrate_prompttrain_into(&format!("laravel:sqlite:{}", db.display()));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT provider, encrypted_credentials FROM a_i_credentials")
        .unwrap();
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The fixture's own four rows (written by the app) decrypt too.
    assert!(rows.len() > 4, "{} rows", rows.len());
    let Some(by_provider) = rows_by_node(&fragments_app_key(), rows) else {
        return;
    };
    assert_every_secret_arrived(&by_provider, &moved);
}

#[test]
fn postgres_rows_credshift_writes_decrypt_with_laravels_own_algorithm() {
    let Some(db) = pg::fresh_db() else {
        return;
    };
    let url = db.url();
    pg::execute(
        &url,
        &support::laravel::pg_schema("a_i_credentials", "BOOLEAN"),
    );
    let moved = migrate_prompttrain_into(&format!("laravel:{url}"));
    let mut c = pg::connect(&url);
    let rows: Vec<(String, String)> = c
        .query(
            "SELECT provider, encrypted_credentials FROM a_i_credentials",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let Some(by_provider) = rows_by_node(&fragments_app_key(), rows) else {
        return;
    };
    assert_every_secret_arrived(&by_provider, &moved);
}
