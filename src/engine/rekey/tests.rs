//! The rekey's batch against a real SQLite table, with the application
//! writing a row between the rekey's read and its write.

use super::*;
use crate::credential::Secret;
use crate::crypto::laravel::{self as crypt, AppKey};

fn key(byte: u8) -> (Secret, AppKey) {
    use base64::Engine;
    let text = format!(
        "base64:{}",
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    );
    let k = AppKey::parse(&Secret::new(text.as_str())).unwrap();
    (Secret::new(text), k)
}

fn payload(conn: &rusqlite::Connection, id: i64) -> String {
    conn.query_row(
        "SELECT encrypted_credentials FROM ai_credentials WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_row_the_app_changed_after_the_read_is_left_alone_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite");
    let (old_text, old) = key(1);
    let (new_text, new) = key(2);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE ai_credentials (id INTEGER PRIMARY KEY, provider TEXT, \
         credential_type TEXT, encrypted_credentials TEXT NOT NULL, is_active INTEGER)",
    )
    .unwrap();
    for i in 1..=3 {
        let text = crypt::php_serialize_str(&format!(r#"{{"key":"sk-row-{i}"}}"#));
        conn.execute(
            "INSERT INTO ai_credentials VALUES (?1, ?2, 'api_key', ?3, 1)",
            rusqlite::params![
                i,
                format!("p{i}"),
                crypt::encrypt(&old, text.as_bytes()).unwrap()
            ],
        )
        .unwrap();
    }
    let spec = StoreSpec::LaravelSqlite(path.clone());
    let opts = KeyOptions {
        app_key: Some(old_text),
        ..KeyOptions::default()
    };
    let mut cells = raw::open(&spec, &opts).unwrap();
    let all = cells.cells().unwrap();
    assert_eq!(all.len(), 3);
    let codec = codec::build(
        RekeyFormat::Laravel,
        "test",
        &all,
        &opts,
        &NewKey::Text(new_text),
    )
    .unwrap();
    let batch: Vec<(Cell, Plain)> = all
        .iter()
        .cloned()
        .zip(codec.open(&all))
        .map(|(c, (u, p))| {
            assert_eq!(u, Under::Old(0));
            (c, p.unwrap())
        })
        .collect();
    // The application rewrites row 2 (under the key it has) meanwhile.
    let apps = crypt::php_serialize_str(r#"{"key":"sk-written-by-the-app"}"#);
    let apps_payload = crypt::encrypt(&old, apps.as_bytes()).unwrap();
    conn.execute(
        "UPDATE ai_credentials SET encrypted_credentials = ?1 WHERE id = 2",
        [&apps_payload],
    )
    .unwrap();
    let id = MigrationId("test".into());
    let mut j = RekeyJournal::open(dir.path(), &id).unwrap();
    let out = run_batch(&mut j, cells.as_mut(), codec.as_ref(), &batch).unwrap();
    let rows = |r: &[CellRef]| r.iter().map(|a| a.row.clone()).collect::<Vec<_>>();
    assert_eq!(rows(&out.rekeyed), ["1", "3"]);
    assert_eq!(out.changed.len(), 1);
    assert_eq!(out.changed[0].at.row, "2");
    assert!(out.changed[0].reason.contains("changed by the application"));
    // Row 2 holds exactly what the app wrote, still readable by the app.
    assert_eq!(payload(&conn, 2), apps_payload);
    assert_eq!(
        &crypt::decrypt(&old, &payload(&conn, 2)).unwrap()[..],
        apps.as_bytes()
    );
    for i in [1, 3] {
        assert!(crypt::decrypt(&new, &payload(&conn, i)).is_ok());
        assert!(crypt::decrypt(&old, &payload(&conn, i)).is_err());
    }
    // The journal says which cell was left alone.
    assert_eq!(j.state.changed.len(), 1);
    assert_eq!(j.state.rekeyed.len(), 2);
}

/// A Laravel SQLite table of `n` rows under `old`; its payloads in order.
fn table(path: &std::path::Path, old: &AppKey, n: i64) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE ai_credentials (id INTEGER PRIMARY KEY, provider TEXT, \
         credential_type TEXT, encrypted_credentials TEXT NOT NULL, is_active INTEGER)",
    )
    .unwrap();
    (1..=n)
        .map(|i| {
            let text = crypt::php_serialize_str(&format!(r#"{{"key":"sk-row-{i}"}}"#));
            let p = crypt::encrypt(old, text.as_bytes()).unwrap();
            conn.execute(
                "INSERT INTO ai_credentials VALUES (?1, ?2, 'api_key', ?3, 1)",
                rusqlite::params![i, format!("p{i}"), p],
            )
            .unwrap();
            p
        })
        .collect()
}

/// The wizard's cancel: set after the first batch (1 row of 6), the run
/// stops before the next one and puts the rekeyed row back byte for byte.
#[test]
fn a_cancel_stops_between_batches_and_rolls_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite");
    let (old_text, old) = key(1);
    let (new_text, _) = key(2);
    let before = table(&path, &old, 6);
    let opts = KeyOptions {
        app_key: Some(old_text),
        ..KeyOptions::default()
    };
    let req = RekeyRequest {
        spec: StoreSpec::LaravelSqlite(path.clone()),
        new_key: NewKey::Text(new_text),
        new_key_origin: "file new.key".into(),
    };
    let cancel = AtomicBool::new(false);
    let mut seen = Vec::new();
    let mut progress = |p: RekeyProgress| {
        seen.push(p.done);
        cancel.store(true, Ordering::SeqCst);
    };
    let state = dir.path().join("state");
    let report = run_cancellable(&req, &state, &opts, &mut progress, &cancel).unwrap();
    assert_eq!(seen, [1], "one batch ran, then the cancel");
    assert!(report.rolled_back, "{report:?}");
    assert_eq!(report.status, MigrationStatus::RolledBack);
    assert!(
        report
            .rollback_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("cancelled"))
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let now: Vec<String> = (1..=6).map(|i| payload(&conn, i)).collect();
    assert_eq!(now, before, "every old ciphertext, byte for byte");
    // Not cancelled: the same run rekeys every row.
    let report = run(&req, &state, &opts, &mut |_| {}).unwrap();
    assert_eq!(report.copied, 6);
    assert_eq!(report.status, MigrationStatus::Completed);
}

#[test]
fn batches_ramp_up_for_rows_and_stay_whole_for_files_and_tables() {
    assert_eq!(batches(RekeyFormat::Laravel, 10), vec![1, 2, 4, 3]);
    assert_eq!(batches(RekeyFormat::PromptTrain, 0), Vec::<usize>::new());
    let big = batches(RekeyFormat::PromptTrain, 1500);
    assert_eq!(big.iter().sum::<usize>(), 1500);
    assert!(big.iter().all(|&b| b <= MAX_REKEY_BATCH));
    assert_eq!(batches(RekeyFormat::Envelope, 1), vec![1]);
    assert_eq!(batches(RekeyFormat::CredshiftSqlite, 40), vec![40]);
}
