//! The migration engine over real `laravel:sqlite:` stores: the fixture
//! rows migrated into a fresh Fragments database (verified by reading back),
//! a re-run skipping identical values, and `delete_source` soft-deleting the
//! source rows the way the app does.

use crate::support;

use std::path::{Path, PathBuf};

use credshift::credential::Secret;
use credshift::engine::{self, ConflictPolicy, MigrationRequest};
use credshift::store::{self, StoreSpec};
use credshift::unlock::KeyOptions;
use support::*;

const FIXTURE_IDS: [&str; 4] = [
    "anthropic/key",
    "ollama/base",
    "openai/key",
    "openrouter/key",
];

fn fixture_db(dir: &Path) -> PathBuf {
    fragments_db(&dir.join("source.sqlite"))
}

fn opts() -> KeyOptions {
    let key = std::fs::read_to_string(fixture("fragments/APP_KEY")).unwrap();
    KeyOptions {
        app_key: Some(Secret::new(key.trim())),
        passphrase: Some(Secret::new("engine test backup passphrase")),
        kdf_iterations: 100_000,
        ..KeyOptions::default()
    }
}

fn migrate(from: &StoreSpec, to: &StoreSpec, state: &Path, delete_source: bool) -> engine::Report {
    let req = MigrationRequest {
        from: from.clone(),
        to: to.clone(),
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source,
    };
    let handle = engine::start(req, state, &opts(), Default::default()).unwrap();
    // Drain progress so the worker never blocks on the channel.
    for _ in handle.events.iter() {}
    handle.join().unwrap()
}

fn active_flags(path: &Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    // A fresh database gets the app's current table name; the fixture has the old one.
    let table = if conn.prepare("SELECT 1 FROM ai_credentials LIMIT 0").is_ok() {
        "ai_credentials"
    } else {
        "a_i_credentials"
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT provider, is_active FROM {table} ORDER BY id"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
}

#[test]
fn fixture_rows_migrate_into_a_fresh_fragments_database() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let source = StoreSpec::LaravelSqlite(fixture_db(dir.path()));
    let target_path = dir.path().join("target.sqlite");
    let target = StoreSpec::LaravelSqlite(target_path.clone());

    let report = migrate(&source, &target, &state, false);
    assert_eq!(
        (
            report.total,
            report.copied,
            report.failed,
            report.rolled_back
        ),
        (4, 4, 0, false),
        "{report:?}"
    );
    let target_store = store::open(&target, &opts()).unwrap();
    let expected = expected();
    for fid in FIXTURE_IDS {
        let c = target_store.read(&fid.parse().unwrap()).unwrap().unwrap();
        assert_eq!(c.secret.expose(), expected[fid], "{fid}");
    }
    assert_eq!(
        active_flags(&target_path),
        [
            ("anthropic".to_string(), 1),
            ("ollama".to_string(), 1),
            ("openai".to_string(), 1),
            ("openrouter".to_string(), 1)
        ]
    );

    // A re-run finds every value already there.
    let again = migrate(&source, &target, &state, false);
    assert_eq!(
        (again.copied, again.skipped, again.failed),
        (0, 4, 0),
        "{again:?}"
    );
}

#[test]
fn delete_source_soft_deletes_the_migrated_rows() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let source_path = fixture_db(dir.path());
    let source = StoreSpec::LaravelSqlite(source_path.clone());
    let target = StoreSpec::LaravelSqlite(dir.path().join("target.sqlite"));

    let report = migrate(&source, &target, &state, true);
    assert_eq!((report.copied, report.failed), (4, 0), "{report:?}");
    assert_eq!(report.source_deleted, 4, "{report:?}");
    assert!(active_flags(&source_path).iter().all(|(_, a)| *a == 0));
    let source_store = store::open(&source, &opts()).unwrap();
    assert!(source_store.list().unwrap().entries.is_empty());
    let target_store = store::open(&target, &opts()).unwrap();
    assert_eq!(target_store.list().unwrap().entries.len(), 4);
}
