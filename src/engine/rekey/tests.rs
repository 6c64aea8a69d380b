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
        generated: None,
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

/// A cancelled resume rolls the whole rekey back: the rows the interrupted
/// run rekeyed as well as its own, so the store ends under the old key.
#[test]
fn a_cancelled_resume_puts_back_what_the_resumed_run_wrote_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite");
    let (old_text, old) = key(1);
    let (new_text, new) = key(2);
    let before = table(&path, &old, 6);
    let opts = KeyOptions {
        app_key: Some(old_text),
        ..KeyOptions::default()
    };
    let new_key = NewKey::Text(new_text);
    let req = RekeyRequest {
        spec: StoreSpec::LaravelSqlite(path.clone()),
        new_key: new_key.clone(),
        new_key_origin: "file new.key".into(),
        generated: None,
    };
    let state = dir.path().join("state");
    // Interrupted like a kill after two batches (rows 1, 2 and 3): the
    // unwind leaves the journal as it is and releases the locks.
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&req, &state, &opts, &mut |p: RekeyProgress| {
            assert!(p.done < 3, "interrupted after two batches");
        })
    }));
    assert!(killed.is_err());
    let conn = rusqlite::Connection::open(&path).unwrap();
    for i in 1..=3 {
        assert!(crypt::decrypt(&new, &payload(&conn, i)).is_ok(), "row {i}");
    }
    let rd = std::fs::read_dir(crate::engine::state::migrations_dir(&state)).unwrap();
    let ids: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
    assert_eq!(ids.len(), 1);
    let id = MigrationId(ids[0].to_str().unwrap().to_string());
    let cancel = AtomicBool::new(false);
    let mut seen = Vec::new();
    let mut progress = |p: RekeyProgress| {
        seen.push(p.done);
        cancel.store(true, Ordering::SeqCst);
    };
    let report = resume_cancellable(&state, &id, &opts, &new_key, &mut progress, &cancel).unwrap();
    assert_eq!(seen, [1], "one batch of the resume ran, then the cancel");
    assert!(report.cancelled && report.rolled_back, "{report:?}");
    assert_eq!(report.status, MigrationStatus::RolledBack);
    assert!(
        report
            .rollback_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("cancelled") && r.contains("before the resume"))
    );
    let now: Vec<String> = (1..=6).map(|i| payload(&conn, i)).collect();
    assert_eq!(now, before, "every old ciphertext, byte for byte");
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

fn cell(row: &str) -> CellRef {
    CellRef {
        table: "accounts".into(),
        row: row.into(),
        column: "api_key_encrypted".into(),
    }
}

/// A journal in `dir` holding `records` after a prompttrain rekey's start.
fn journal_with(dir: &Path, records: Vec<RekeyRecord>) -> RekeyJournal {
    journal_of(RekeyFormat::PromptTrain, dir, records)
}

fn journal_of(format: RekeyFormat, dir: &Path, records: Vec<RekeyRecord>) -> RekeyJournal {
    let id = MigrationId("20260101-000000-abcd".into());
    let mut j = RekeyJournal::open(dir, &id).unwrap();
    j.append(RekeyRecord::RekeyStarted {
        migration_id: id,
        store: "prompttrain-db:postgres://app@db/pt".into(),
        format,
        identity: None,
        old_keys: vec!["CREDENTIAL_ENCRYPTION_KEY".into()],
        new_key: "file new.key".into(),
        user: "u".into(),
        new_key_kind: Some(NewKeyKind::Text),
        kdf_iterations: None,
    })
    .unwrap();
    for r in records {
        j.append(r).unwrap();
    }
    j
}

fn planned(rows: &[&str]) -> RekeyRecord {
    RekeyRecord::RekeyPlanned {
        cells: rows
            .iter()
            .map(|r| PlannedCell {
                at: cell(r),
                key: 0,
                old_fp: fp(r),
            })
            .collect(),
        already_new: 0,
        untouched: Vec::new(),
    }
}

#[test]
fn rows_the_app_changed_during_a_prompttrain_rekey_come_first_in_the_next_steps() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal_with(
        dir.path(),
        vec![
            planned(&["1", "2", "3"]),
            RekeyRecord::RekeyBatchDone {
                rekeyed: vec![cell("1"), cell("3")],
                changed: vec![CellNote {
                    at: cell("2"),
                    reason: "changed by the application since it was read; left as it is".into(),
                }],
                failed: Vec::new(),
            },
            RekeyRecord::RekeyFinished {
                status: MigrationStatus::Completed,
            },
        ],
    );
    let r = report_of(&j.state);
    assert_eq!(r.status, MigrationStatus::Completed);
    assert_eq!(r.conflicts, 1);
    assert!(
        r.next_steps[0].starts_with("Before you switch: run `credshift rekey --store")
            && r.next_steps[0].contains("only the 1 value(s)"),
        "{:?}",
        r.next_steps
    );
    assert!(r.next_steps[1].contains("CREDENTIAL_ENCRYPTION_KEY"));
    // Where the backup is and when to delete it.
    let last = r.next_steps.last().unwrap();
    assert!(
        last.contains("credshift rekey --forget-backup")
            && last.contains(journal::REKEY_BACKUP_FILE)
            && last.contains(&dir.path().display().to_string()),
        "{last}"
    );
    // Without a changed row the application's step comes first.
    let dir2 = tempfile::tempdir().unwrap();
    let j = journal_with(
        dir2.path(),
        vec![
            planned(&["1"]),
            RekeyRecord::RekeyBatchDone {
                rekeyed: vec![cell("1")],
                changed: Vec::new(),
                failed: Vec::new(),
            },
            RekeyRecord::RekeyFinished {
                status: MigrationStatus::Completed,
            },
        ],
    );
    assert!(report_of(&j.state).next_steps[0].starts_with("agent-prompttrain:"));
    // credshift's table checks one key: a second run could not open the
    // changed cells, so the step is to roll back and rekey again.
    let dir3 = tempfile::tempdir().unwrap();
    let changed = RekeyRecord::RekeyBatchDone {
        rekeyed: vec![cell("1")],
        changed: vec![CellNote {
            at: cell("2"),
            reason: "changed".into(),
        }],
        failed: Vec::new(),
    };
    let done = RekeyRecord::RekeyFinished {
        status: MigrationStatus::Completed,
    };
    let j = journal_of(
        RekeyFormat::CredshiftSqlite,
        dir3.path(),
        vec![planned(&["1", "2"]), changed, done],
    );
    let first = &report_of(&j.state).next_steps[0];
    assert!(
        first.contains("credshift rollback --migration-id") && !first.contains("rekey --store"),
        "{first}"
    );
}

#[test]
fn a_rollback_of_a_finished_rekey_says_to_switch_back_and_closes_over_the_apps_cells() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal_with(
        dir.path(),
        vec![
            planned(&["1", "2"]),
            RekeyRecord::RekeyBatchDone {
                rekeyed: vec![cell("1"), cell("2")],
                changed: Vec::new(),
                failed: Vec::new(),
            },
            RekeyRecord::RekeyFinished {
                status: MigrationStatus::Completed,
            },
            RekeyRecord::RekeyRollbackStarted { reason: None },
            RekeyRecord::RekeyUndone {
                restored: vec![cell("1")],
                kept: Vec::new(),
                left: vec![CellNote {
                    at: cell("2"),
                    reason: "changed by the application since the rekey; left as it is".into(),
                }],
            },
            RekeyRecord::RekeyRolledBack { complete: true },
            RekeyRecord::RekeyFinished {
                status: MigrationStatus::RolledBack,
            },
        ],
    );
    let r = report_of(&j.state);
    assert_eq!(r.status, MigrationStatus::RolledBack);
    assert!(r.rolled_back);
    assert!(
        r.next_steps[0].contains("switch it back to the old key"),
        "{:?}",
        r.next_steps
    );
    assert_eq!(r.changed.len(), 1);
    assert_eq!(r.changed[0].location, "accounts 2 api_key_encrypted");
    assert!(r.failures.is_empty(), "{:?}", r.failures);
}

#[test]
fn journals_without_the_new_key_kind_the_count_or_left_cells_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"seq":1,"at":"2026-01-01T00:00:00Z","event":"rekey_started","migration_id":"x","store":"encrypted:/s.enc","format":"envelope","old_keys":["the passphrase or key file"],"new_key":"the same passphrase or key file","user":"u"}"#,
        r#"{"seq":2,"at":"2026-01-01T00:00:01Z","event":"rekey_rollback_started"}"#,
        r#"{"seq":3,"at":"2026-01-01T00:00:02Z","event":"rekey_undone","kept":[{"at":{"table":"t","row":"r","column":"c"},"reason":"changed"}]}"#,
    ];
    std::fs::write(
        dir.path().join(journal::REKEY_JOURNAL_FILE),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let st = RekeyState::load(dir.path(), &MigrationId("x".into())).unwrap();
    assert_eq!(st.new_key_kind, None);
    assert_eq!(st.kdf_iterations, None);
    assert_eq!(st.kept.len(), 1);
    assert!(st.left.is_empty());
}

#[test]
fn a_rekey_whose_journal_has_a_damaged_line_is_listed_as_unreadable() {
    let state = tempfile::tempdir().unwrap();
    let id = MigrationId("20260101-000000-dmgd".into());
    let dir = state::migration_dir(state.path(), &id);
    std::fs::create_dir_all(&dir).unwrap();
    let good = journal_with(&dir, vec![planned(&["1"])]);
    drop(good);
    let path = dir.join(journal::REKEY_JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1, "{\"seq\":9,\"event\":\"rekey_pla");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let h = history(state.path());
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].id, id);
    assert_eq!(h[0].status, MigrationStatus::Interrupted);
    assert!(h[0].from.contains(&path.display().to_string()), "{h:?}");
    assert!(h[0].to.contains("unreadable rekey journal"), "{h:?}");
}

#[test]
fn a_backup_key_left_by_a_stopped_run_is_reused_and_a_torn_one_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let cells = vec![Cell {
        at: cell("1"),
        value: "old-ciphertext-1".into(),
    }];
    let key = dir.path().join(journal::REKEY_BACKUP_KEY);
    crate::crypto::kdf::generate_key_file(&key).unwrap();
    let before = std::fs::read(&key).unwrap();
    let path = backup::write(dir.path(), &cells).unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), before, "the key is reused");
    assert_eq!(
        backup::read(dir.path(), &path).unwrap()[&cell("1")],
        "old-ciphertext-1"
    );
    // A key file torn by the stop is made again.
    std::fs::write(&key, b"torn").unwrap();
    let path = backup::write(dir.path(), &cells).unwrap();
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    assert_eq!(
        backup::read(dir.path(), &path).unwrap()[&cell("1")],
        "old-ciphertext-1"
    );
}

#[test]
fn an_unfinished_rekeys_backup_is_never_forgotten() {
    let state = tempfile::tempdir().unwrap();
    let id = MigrationId("20260101-000000-abcd".into());
    let dir = state::migration_dir(state.path(), &id);
    std::fs::create_dir_all(&dir).unwrap();
    let cells = vec![Cell {
        at: cell("1"),
        value: "old-ciphertext-1".into(),
    }];
    let path = backup::write(&dir, &cells).unwrap();
    let j = journal_with(
        &dir,
        vec![
            planned(&["1"]),
            RekeyRecord::RekeyBackupWritten { path, cells: 1 },
        ],
    );
    drop(j);
    let e = forget_backup(state.path(), &id).unwrap_err();
    assert!(e.to_string().contains("interrupted"), "{e}");
    assert!(dir.join(journal::REKEY_BACKUP_FILE).is_file());
    assert!(dir.join(journal::REKEY_BACKUP_KEY).is_file());
}

#[test]
fn a_table_rekey_derives_its_old_and_new_keys_on_two_cores() {
    use crate::store::test_support::{api_key, weak_opts};
    // A credshift SQLite table under a passphrase, rekeyed to another one:
    // the old key (the table's salt) is derived on this thread, the new one
    // on a second thread at the same time, as for an encrypted file.
    let dir = tempfile::tempdir().unwrap();
    let spec = StoreSpec::Sqlite(dir.path().join("creds.sqlite"));
    let opts = weak_opts("old");
    store::open(&spec, &opts)
        .unwrap()
        .write(&api_key("openai", "key", "sk-table-value"))
        .unwrap();
    let mut cells = raw::open(&spec, &opts).unwrap();
    let all = cells.cells().unwrap();
    let new = NewKey::Passphrase(weak_opts("new").passphrase.unwrap());
    let before = crate::crypto::kdf::derivations_on_this_thread();
    let codec = codec::build(RekeyFormat::CredshiftSqlite, "test", &all, &opts, &new).unwrap();
    let here = crate::crypto::kdf::derivations_on_this_thread() - before;
    assert_eq!(here, 1, "only the old key is derived on the calling thread");
    // Both keys are the right ones: the old opens the table, the new seals
    // what it then opens.
    let opened = codec.open(&all);
    assert!(opened.iter().all(|(u, p)| *u == Under::Old(0) && p.is_some()));
    let plains: Vec<&Plain> = opened.iter().map(|(_, p)| p.as_ref().unwrap()).collect();
    let resealed: Vec<Cell> = all
        .iter()
        .zip(codec.seal(&all, &plains))
        .map(|(c, v)| Cell {
            value: v.unwrap(),
            ..c.clone()
        })
        .collect();
    for (p, again) in plains.iter().zip(codec.open_new(&resealed)) {
        assert_eq!(p.as_slice(), again.unwrap().as_slice());
    }
}
