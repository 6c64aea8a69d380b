//! A cancelled rekey or resume (Ctrl-C, SIGTERM, the wizard's cancel)
//! against a real SQLite table: when the cancel lands, under which locks
//! the rollback runs, and what the journal says after it.

use std::sync::atomic::{AtomicBool, Ordering};

use super::journal::REKEY_BACKUP_FILE;
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

/// A rekey of a Laravel SQLite table of `n` rows, not yet run.
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    state: PathBuf,
    opts: KeyOptions,
    new_key: NewKey,
    req: RekeyRequest,
    old: AppKey,
    new: AppKey,
    /// The payloads before the rekey, in row order.
    before: Vec<String>,
}

fn fixture(n: i64) -> Fixture {
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
    let before = (1..=n)
        .map(|i| {
            let text = crypt::php_serialize_str(&format!(r#"{{"key":"sk-row-{i}"}}"#));
            let p = crypt::encrypt(&old, text.as_bytes()).unwrap();
            conn.execute(
                "INSERT INTO ai_credentials VALUES (?1, ?2, 'api_key', ?3, 1)",
                rusqlite::params![i, format!("p{i}"), p],
            )
            .unwrap();
            p
        })
        .collect();
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
    Fixture {
        _dir: dir,
        path,
        state,
        opts,
        new_key,
        req,
        old,
        new,
        before,
    }
}

impl Fixture {
    fn payloads(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        (1..=self.before.len() as i64)
            .map(|i| {
                conn.query_row(
                    "SELECT encrypted_credentials FROM ai_credentials WHERE id = ?1",
                    [i],
                    |r| r.get(0),
                )
                .unwrap()
            })
            .collect()
    }

    /// How many rows are under the new key.
    fn under_new(&self) -> usize {
        self.payloads()
            .iter()
            .filter(|p| crypt::decrypt(&self.new, p).is_ok())
            .count()
    }

    /// The only rekey in the state dir.
    fn id(&self) -> MigrationId {
        let rd = std::fs::read_dir(state::migrations_dir(&self.state)).unwrap();
        let ids: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
        assert_eq!(ids.len(), 1);
        MigrationId(ids[0].to_str().unwrap().to_string())
    }

    fn journal(&self) -> PathBuf {
        state::migration_dir(&self.state, &self.id()).join(journal::REKEY_JOURNAL_FILE)
    }

    /// Interrupted like a kill after two batches (rows 1, 2 and 3): the
    /// unwind leaves the journal as it is and releases the locks.
    fn killed_after_two_batches(&self) -> MigrationId {
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&self.req, &self.state, &self.opts, &mut |p: RekeyProgress| {
                assert!(p.done < 3, "interrupted after two batches");
            })
        }));
        assert!(killed.is_err());
        assert_eq!(self.under_new(), 3);
        self.id()
    }
}

/// Another run taking the store's locks (the session preamble, as every
/// run does) over and over from the moment `cancel` is set: the status of
/// the rekey when it first gets them. A cancelled run that rolls back
/// under the locks it holds lets it in only once the rollback is over.
fn status_when_another_run_gets_in(
    fx: &Fixture,
    cancel: &AtomicBool,
    run: impl FnOnce() -> Result<RekeyReport>,
) -> (Result<RekeyReport>, MigrationStatus) {
    let store = store::open(&fx.req.spec, &fx.opts).unwrap();
    std::thread::scope(|s| {
        let other = s.spawn(|| {
            while !cancel.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let start = Instant::now();
            loop {
                let locked = session::rekey(
                    store.as_ref(),
                    session::Use::WRITE,
                    Some(&fx.state),
                    "another run",
                    None,
                    None,
                );
                if let Ok((_, locks)) = locked {
                    let st = RekeyState::load(&state::migration_dir(&fx.state, &fx.id()), &fx.id());
                    drop(locks);
                    return st.unwrap().status();
                }
                assert!(start.elapsed() < Duration::from_secs(60), "never got the locks");
            }
        });
        let out = run();
        (out, other.join().unwrap())
    })
}

/// Finding 1 (rekey): the rollback after a cancel runs under the run's own
/// locks; another run waiting for them gets in only once it is over (it
/// would otherwise finish or change the rekey that is being put back).
#[test]
fn a_cancelled_rekey_rolls_back_under_the_locks_it_already_holds() {
    let fx = fixture(6);
    let cancel = AtomicBool::new(false);
    let (out, seen) = status_when_another_run_gets_in(&fx, &cancel, || {
        run_cancellable(
            &fx.req,
            &fx.state,
            &fx.opts,
            &mut |_| cancel.store(true, Ordering::SeqCst),
            &cancel,
        )
    });
    let report = out.unwrap();
    assert!(report.cancelled && report.rolled_back, "{report:?}");
    assert_eq!(seen, MigrationStatus::RolledBack, "got in before the end");
    assert_eq!(fx.payloads(), fx.before);
}

/// Finding 1 (resume): the same for a cancelled resume.
#[test]
fn a_cancelled_resume_rolls_back_under_the_locks_it_already_holds() {
    let fx = fixture(12);
    let id = fx.killed_after_two_batches();
    let cancel = AtomicBool::new(false);
    let (out, seen) = status_when_another_run_gets_in(&fx, &cancel, || {
        resume_cancellable(
            &fx.state,
            &id,
            &fx.opts,
            &fx.new_key,
            &mut |_| cancel.store(true, Ordering::SeqCst),
            &cancel,
        )
    });
    let report = out.unwrap();
    assert!(report.cancelled && report.rolled_back, "{report:?}");
    assert_eq!(seen, MigrationStatus::RolledBack, "got in before the end");
    assert_eq!(fx.payloads(), fx.before);
}

/// Finding 1: a rollback that fails after a cancel is a report (cancelled,
/// not rolled back, a warning saying what state the store is in and what
/// to run), not a bare error that prints no report.
#[test]
fn a_rollback_that_fails_after_a_cancel_is_reported_with_what_to_run() {
    let fx = fixture(12);
    let id = fx.killed_after_two_batches();
    let backup = state::migration_dir(&fx.state, &id).join(REKEY_BACKUP_FILE);
    let cancel = AtomicBool::new(false);
    let report = resume_cancellable(
        &fx.state,
        &id,
        &fx.opts,
        &fx.new_key,
        &mut |_| {
            // The rollback cannot read its backup now.
            let _ = std::fs::remove_file(&backup);
            cancel.store(true, Ordering::SeqCst);
        },
        &cancel,
    )
    .expect("a report, not an error");
    assert!(report.cancelled && !report.rolled_back, "{report:?}");
    assert_eq!(report.status, MigrationStatus::Interrupted);
    let w = report.warnings.join("\n");
    assert!(
        w.contains("both keys") && w.contains(&format!("credshift rollback --migration-id {id}")),
        "{w}"
    );
    // The rows the two runs wrote are still under the new key (3 + 1), the
    // rest under the old one.
    assert_eq!(fx.under_new(), 4);
    let old = fx.payloads().iter().filter(|p| crypt::decrypt(&fx.old, p).is_ok()).count();
    assert_eq!(old, 8);
}

/// Finding 2: a cancel that lands before the resume's first batch (while it
/// waited for the lock or derived the keys) changes nothing: the journal is
/// as the killed run left it, still resumable, and the report says so.
#[test]
fn a_cancel_before_the_first_batch_of_a_resume_changes_nothing() {
    let fx = fixture(12);
    let id = fx.killed_after_two_batches();
    let killed = fx.payloads();
    let journal = std::fs::read(fx.journal()).unwrap();
    let cancel = AtomicBool::new(true);
    let mut seen = Vec::new();
    let report = resume_cancellable(
        &fx.state,
        &id,
        &fx.opts,
        &fx.new_key,
        &mut |p: RekeyProgress| seen.push(p.done),
        &cancel,
    )
    .unwrap();
    assert!(seen.is_empty(), "no batch ran: {seen:?}");
    assert!(report.cancelled && !report.rolled_back, "{report:?}");
    assert_eq!(report.status, MigrationStatus::Interrupted);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("nothing was changed")),
        "{report:?}"
    );
    assert_eq!(fx.payloads(), killed, "the store is as the killed run left it");
    assert_eq!(std::fs::read(fx.journal()).unwrap(), journal);
    // Still resumable: a resume without a cancel finishes it.
    let report = resume(&fx.state, &id, &fx.opts, &fx.new_key, &mut |_| {}).unwrap();
    assert_eq!(report.status, MigrationStatus::Completed);
    for p in fx.payloads() {
        assert!(crypt::decrypt(&fx.new, &p).is_ok());
    }
}

/// Finding 2: a signal during the last batch is not ignored in silence: the
/// rekey completed (nothing was left to stop), and the report says the
/// signal arrived and how to undo the rekey.
#[test]
fn a_cancel_during_the_last_batch_completes_and_says_so() {
    let fx = fixture(3);
    let cancel = AtomicBool::new(false);
    let report = run_cancellable(
        &fx.req,
        &fx.state,
        &fx.opts,
        &mut |p: RekeyProgress| {
            if p.done == p.total {
                cancel.store(true, Ordering::SeqCst);
            }
        },
        &cancel,
    )
    .unwrap();
    assert_eq!(report.status, MigrationStatus::Completed);
    assert!(!report.cancelled && !report.rolled_back, "{report:?}");
    let id = fx.id();
    assert!(
        report.warnings.iter().any(|w| w.contains("last batch")
            && w.contains(&format!("credshift rollback --migration-id {id}"))),
        "{report:?}"
    );
}

/// Finding 3: killed during the rollback that followed a cancel (a second
/// Ctrl-C): the report names only `rollback` (which resume refuses to
/// replace), and once rolled back it gives the cancel as the reason, not
/// "on request". The cancelled resume has its own audit line.
#[test]
fn a_rollback_killed_after_a_cancel_names_only_rollback_and_keeps_its_reason() {
    let fx = fixture(12);
    let id = fx.killed_after_two_batches();
    let cancel = AtomicBool::new(false);
    let report = resume_cancellable(
        &fx.state,
        &id,
        &fx.opts,
        &fx.new_key,
        &mut |_| cancel.store(true, Ordering::SeqCst),
        &cancel,
    )
    .unwrap();
    assert!(report.rolled_back);
    let audit = crate::engine::audit::read(&fx.state).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "resume" && a.outcome == "cancelled"),
        "{audit:?}"
    );
    // As if killed right after `rekey_rollback_started`: the rows go back
    // to what the store held then (the swap is one transaction).
    let path = fx.journal();
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text
        .lines()
        .position(|l| l.contains("\"rekey_rollback_started\""))
        .unwrap();
    let kept: Vec<&str> = text.lines().take(cut + 1).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let st = RekeyState::load(&state::migration_dir(&fx.state, &id), &id).unwrap();
    assert_eq!(st.status(), MigrationStatus::Interrupted);
    let steps = report_of(&st).next_steps.join("\n");
    assert!(
        steps.contains("credshift rollback") && !steps.contains("credshift resume"),
        "{steps}"
    );
    let err = resume(&fx.state, &id, &fx.opts, &fx.new_key, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("did not finish"), "{err}");
    let report = rollback(&fx.state, &id, &fx.opts).unwrap();
    assert!(report.rolled_back, "{report:?}");
    let why = report.rollback_reason.unwrap_or_default();
    assert!(
        why.starts_with("cancelled") && why.contains("before the resume"),
        "{why}"
    );
    assert_eq!(fx.payloads(), fx.before);
}

/// A journal written before the rollback's reason was recorded still
/// reads, and its rollback is "on request" as it was then.
#[test]
fn an_old_rollback_started_line_without_a_reason_still_reads() {
    let l: journal::RekeyLine = serde_json::from_str(
        r#"{"seq":9,"at":"2026-12-06T09:06:18.010Z","event":"rekey_rollback_started"}"#,
    )
    .unwrap();
    assert!(matches!(l.record, RekeyRecord::RekeyRollbackStarted { .. }));
}

