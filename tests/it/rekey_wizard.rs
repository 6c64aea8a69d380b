//! Issue 25, point 5: "Rekey this store" in the wizard, without a terminal.
//! Each screen is reached by feeding the wizard the events a person and the
//! engine would (keys, a dry run, progress, a report), drawn on a
//! `TestBackend` at three sizes and snapshotted in `snapshots/`. The tests
//! also pin the transitions: what each key does, which effects go to the
//! worker, and that a cancel and a quit ask first.

use std::path::PathBuf;

use credshift::credential::Secret;
use credshift::engine::rekey::{KeyCount, LocationNote, RekeyPlan, RekeyProgress, RekeyReport};
use credshift::engine::types::{MigrationId, MigrationStatus, StoreReport};
use credshift::store::rekey::RekeyFormat;
use credshift::store::{Capability, StoreSpec};
use credshift::tui::app::App;
use credshift::tui::screens;
use credshift::tui::theme::Theme;
use credshift::wizard::{
    Config, Confirm, Effect, Event, KeyChoice, NewKeySource, Outcome, Step, Task, Wizard,
};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// 2026-11-23 00:45:12 UTC.
const NOW: i64 = 1_795_394_712_000;
const SIZES: [(u16, u16); 3] = [(60, 20), (80, 24), (120, 30)];
const STATE: &str = "/home/user/.local/state/credshift";
const ID: &str = "20261123T004512Z-3fa9c1";
const LARAVEL: &str = "laravel:sqlite:/srv/app/database/database.sqlite";
const ENCRYPTED: &str = "encrypted:/home/user/.local/state/credshift/credentials.enc";
const NEW_PASSPHRASE: &str = "rekey wizard new passphrase, not a secret";

fn spec(s: &str) -> StoreSpec {
    s.parse().unwrap()
}

fn cap(items: Option<usize>) -> Capability {
    Capability {
        available: true,
        readable: true,
        writable: true,
        persistent: true,
        exists: true,
        encrypted_at_rest: true,
        item_count: items,
        ..Capability::default()
    }
}

fn reports() -> Vec<StoreReport> {
    vec![
        StoreReport {
            spec: spec("dotenv:/srv/app/.env"),
            capability: Capability {
                encrypted_at_rest: false,
                ..cap(Some(3))
            },
            location: None,
        },
        StoreReport {
            spec: spec(LARAVEL),
            capability: cap(Some(6)),
            location: None,
        },
        StoreReport {
            spec: spec(ENCRYPTED),
            capability: cap(Some(12)),
            location: None,
        },
    ]
}

fn config(passphrase_given: bool) -> Config {
    Config {
        candidates: reports().into_iter().map(|r| r.spec).collect(),
        passphrase_given,
        state_dir: PathBuf::from(STATE),
        ..Config::default()
    }
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn keys(app: &mut App, ks: &[KeyCode]) -> Vec<Effect> {
    ks.iter().flat_map(|k| app.on_key(key(*k))).collect()
}

fn type_text(app: &mut App, s: &str) -> Vec<Effect> {
    s.chars()
        .flat_map(|c| app.on_key(key(KeyCode::Char(c))))
        .collect()
}

fn at_stores(passphrase_given: bool) -> App {
    let (w, _) = Wizard::new(config(passphrase_given), NOW);
    let mut app = App::new(w, Theme::plain());
    app.handle(Event::Assessed(reports()));
    app.handle(Event::HistoryLoaded(vec![]));
    app
}

/// The Laravel table: two old keys, one row under none.
fn laravel_plan() -> RekeyPlan {
    RekeyPlan {
        operation: "rekey",
        store: LARAVEL.into(),
        format: RekeyFormat::Laravel,
        total: 7,
        under_keys: vec![
            KeyCount {
                key: "APP_KEY".into(),
                cells: 4,
            },
            KeyCount {
                key: "APP_PREVIOUS_KEYS #1".into(),
                cells: 2,
            },
        ],
        already_new: 0,
        untouched: vec![LocationNote {
            location: "a_i_credentials 7 encrypted_credentials".into(),
            error: "the MAC is invalid under every key given".into(),
        }],
        estimated_seconds: 0.4,
    }
}

fn laravel_report(status: MigrationStatus) -> RekeyReport {
    let rolled_back = status == MigrationStatus::RolledBack;
    RekeyReport {
        operation: "rekey",
        migration_id: MigrationId(ID.into()),
        from: LARAVEL.into(),
        to: format!("{LARAVEL} (new key)"),
        total: 7,
        copied: if rolled_back { 0 } else { 6 },
        skipped: 0,
        conflicts: 0,
        invalid: 1,
        failed: 0,
        rolled_back,
        cancelled: rolled_back,
        rollback_reason: rolled_back
            .then(|| "cancelled: what was rekeyed was put back".to_string()),
        failures: vec![],
        backup: Some(PathBuf::from(format!(
            "{STATE}/migrations/{ID}/rekey-backup.enc"
        ))),
        verified: if rolled_back { 0 } else { 6 },
        warnings: vec![],
        status,
        under_keys: laravel_plan().under_keys,
        untouched: laravel_plan().untouched,
        changed: vec![],
        next_steps: vec![if rolled_back {
            "Nothing to change: every value is under the old key again.".into()
        } else {
            "Laravel: in the app's .env set APP_KEY=<the new key, file /srv/app/keys/app.key> \
             and APP_PREVIOUS_KEYS=<the APP_KEY it has now>,<the keys already in \
             APP_PREVIOUS_KEYS>, then run `php artisan config:clear`: sessions and cookies made \
             under the old key keep working."
                .into()
        }],
        notices: vec![],
    }
}

/// Down to the Laravel store, `r`.
fn at_consent() -> App {
    let mut app = at_stores(false);
    keys(&mut app, &[KeyCode::Down]);
    let fx = keys(&mut app, &[KeyCode::Char('r')]);
    assert!(fx.is_empty(), "consent first: {fx:?}");
    assert_eq!(
        app.wizard.step,
        Step::RekeyConsent,
        "{:?}",
        app.wizard.error
    );
    app
}

fn at_dry_run() -> App {
    let mut app = at_consent();
    let fx = keys(&mut app, &[KeyCode::Char('y')]);
    assert!(
        matches!(fx.as_slice(), [Effect::RekeyPlan { spec: s }] if s.to_string() == LARAVEL),
        "{fx:?}"
    );
    app.handle(Event::RekeyPlanned(Box::new(laravel_plan())));
    app
}

fn at_key() -> App {
    let mut app = at_dry_run();
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.step, Step::RekeyKey);
    app
}

fn at_run() -> App {
    let mut app = at_key();
    keys(&mut app, &[KeyCode::Down, KeyCode::Enter]);
    let fx = type_text(&mut app, "/srv/app/keys/app.key");
    assert!(fx.is_empty());
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(
        matches!(fx.as_slice(), [Effect::StartRekey { key: NewKeySource::Generate(p), .. }]
            if p == &PathBuf::from("/srv/app/keys/app.key")),
        "{fx:?}"
    );
    assert_eq!(app.wizard.step, Step::RekeyRun);
    app.handle(Event::Tick {
        now_ms: NOW + 1_500,
    });
    app.handle(Event::RekeyProgressed(RekeyProgress { done: 3, total: 6 }));
    app
}

fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| screens::render(app, f)).unwrap();
    t.backend().to_string()
}

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        let text = draw(app, w, h);
        assert!(
            !text.contains(NEW_PASSPHRASE),
            "{name} shows the passphrase"
        );
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("{name}@{w}x{h}"), text);
        });
    }
}

fn screen(app: &App) -> String {
    draw(app, 120, 30)
}

#[test]
fn the_stores_screen_offers_rekey_only_for_stores_with_a_key() {
    let mut app = at_stores(false);
    // The cursor starts on the first readable store: a dotenv file.
    assert!(!screen(&app).contains("r rekey this store"));
    let fx = keys(&mut app, &[KeyCode::Char('r')]);
    assert!(fx.is_empty());
    assert_eq!(app.wizard.step, Step::Assess);
    assert!(
        app.wizard
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no key of its own")),
        "{:?}",
        app.wizard.error
    );
    keys(&mut app, &[KeyCode::Down]);
    assert!(screen(&app).contains("r rekey this store"));
    let mut fresh = at_stores(false);
    keys(&mut fresh, &[KeyCode::Down]);
    snap("40-rekey-stores", &fresh);
}

#[test]
fn consent_names_the_store_its_rows_what_changes_and_the_lock() {
    let app = at_consent();
    let s = screen(&app);
    for want in [
        "6 credentials",
        "database.sqlite",
        "APP_KEY",
        "locked for the whole run",
        "backup of the old ciphertexts",
        "rollback --migration-id",
    ] {
        assert!(s.contains(want), "{want}: {s}");
    }
    snap("41-rekey-consent", &app);
    // Deferring changes nothing; Esc goes back to the stores.
    let mut d = at_consent();
    let fx = keys(&mut d, &[KeyCode::Char('d')]);
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::Deferred)]));
    let mut b = at_consent();
    keys(&mut b, &[KeyCode::Esc]);
    assert_eq!(b.wizard.step, Step::Assess);
}

#[test]
fn the_dry_run_counts_each_key_and_lists_rows_under_none_by_location() {
    let mut app = at_consent();
    keys(&mut app, &[KeyCode::Char('y')]);
    assert_eq!(app.wizard.step, Step::RekeyDryRun);
    // Enter does nothing before the plan arrives.
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.step, Step::RekeyDryRun);
    let app = at_dry_run();
    let s = screen(&app);
    assert!(s.contains("7 encrypted values"), "{s}");
    assert!(
        s.contains("APP_PREVIOUS_KEYS #1") && s.contains("2 to rekey"),
        "{s}"
    );
    assert!(s.contains("under none of the keys: 1"), "{s}");
    assert!(s.contains("a_i_credentials 7 encrypted_credentials"), "{s}");
    assert!(s.contains("under a second"), "{s}");
    snap("42-rekey-dry-run", &app);
}

#[test]
fn an_app_key_comes_from_a_file_never_typed() {
    let app = at_key();
    assert_eq!(
        app.wizard.rekey.choices(),
        &[KeyChoice::KeyFile, KeyChoice::Generate]
    );
    assert!(!screen(&app).contains("a new passphrase"));
    snap("43-rekey-key", &app);

    let mut typing = at_key();
    keys(&mut typing, &[KeyCode::Down, KeyCode::Enter]);
    type_text(&mut typing, "/srv/app/keys/app.keyx");
    keys(&mut typing, &[KeyCode::Backspace]);
    assert_eq!(typing.wizard.rekey.path, "/srv/app/keys/app.key");
    // q is text here, not quit.
    assert!(typing.wizard.text_input());
    snap("43-rekey-key-path", &typing);

    // The worker could not take the key: back on this screen, nothing ran.
    let mut refused = at_run();
    refused.handle(Event::Failed {
        task: Task::RekeyKey,
        error: credshift::error::StoreError::Other(
            "/srv/app/keys/app.key: already exists; refusing to overwrite a key file".into(),
        )
        .into(),
    });
    assert_eq!(refused.wizard.step, Step::RekeyKey);
    assert!(!refused.wizard.rekeying());
    assert!(screen(&refused).contains("refusing to overwrite"));
    snap("43-rekey-key-refused", &refused);
}

#[test]
fn a_new_passphrase_is_typed_twice_with_the_strength_meter() {
    let mut app = at_stores(true);
    keys(
        &mut app,
        &[KeyCode::Down, KeyCode::Down, KeyCode::Char('r')],
    );
    assert_eq!(app.wizard.step, Step::RekeyConsent);
    // The old passphrase was given: straight to the dry run.
    let fx = keys(&mut app, &[KeyCode::Char('y')]);
    assert!(
        matches!(fx.as_slice(), [Effect::RekeyPlan { .. }]),
        "{fx:?}"
    );
    app.handle(Event::RekeyPlanned(Box::new(RekeyPlan {
        store: ENCRYPTED.into(),
        format: RekeyFormat::Envelope,
        total: 1,
        under_keys: vec![KeyCount {
            key: "the passphrase or key file".into(),
            cells: 1,
        }],
        untouched: vec![],
        ..laravel_plan()
    })));
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.rekey.choice(), KeyChoice::Passphrase);
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.step, Step::Passphrase);
    type_text(&mut app, NEW_PASSPHRASE);
    let s = screen(&app);
    assert!(s.contains("new passphrase") && s.contains("strong"), "{s}");
    snap("44-rekey-passphrase", &app);
    // Two different entries are refused in place.
    keys(&mut app, &[KeyCode::Enter]);
    let fx = type_text(&mut app, "something else entirely");
    assert!(fx.is_empty());
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(fx.is_empty(), "{fx:?}");
    assert!(app.wizard.passphrase.error.is_some());
    // The same twice starts the rekey with it, and never as the passphrase
    // the stores are opened with.
    type_text(&mut app, NEW_PASSPHRASE);
    keys(&mut app, &[KeyCode::Enter]);
    type_text(&mut app, NEW_PASSPHRASE);
    let fx = keys(&mut app, &[KeyCode::Enter]);
    match fx.as_slice() {
        [
            Effect::StartRekey {
                key: NewKeySource::Passphrase(p),
                spec: s,
            },
        ] => {
            assert!(p.ct_eq(&Secret::new(NEW_PASSPHRASE)));
            assert_eq!(s.to_string(), ENCRYPTED);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(app.wizard.step, Step::RekeyRun);
}

#[test]
fn the_old_passphrase_is_asked_first_when_none_was_given() {
    let mut app = at_stores(false);
    keys(
        &mut app,
        &[KeyCode::Down, KeyCode::Down, KeyCode::Char('r')],
    );
    let fx = keys(&mut app, &[KeyCode::Char('y')]);
    assert!(fx.is_empty());
    assert_eq!(app.wizard.step, Step::Passphrase);
    assert!(screen(&app).contains("current passphrase"));
    type_text(&mut app, "the old one");
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(
        matches!(
            fx.as_slice(),
            [Effect::UsePassphrase(_), Effect::RekeyPlan { .. }]
        ),
        "{fx:?}"
    );
    assert_eq!(app.wizard.step, Step::RekeyDryRun);
}

#[test]
fn progress_shows_live_and_cancel_and_quit_ask_first() {
    let mut app = at_run();
    let s = screen(&app);
    assert!(s.contains("3 / 6") && s.contains("c cancel"), "{s}");
    snap("45-rekey-run", &app);

    let fx = keys(&mut app, &[KeyCode::Char('c')]);
    assert!(fx.is_empty(), "a cancel asks first: {fx:?}");
    assert_eq!(app.wizard.confirm, Some(Confirm::CancelRekey));
    snap("45-rekey-cancel-confirm", &app);
    let fx = keys(&mut app, &[KeyCode::Char('n')]);
    assert!(fx.is_empty());
    assert!(app.wizard.confirm.is_none());

    let fx = keys(&mut app, &[KeyCode::Char('q')]);
    assert!(fx.is_empty(), "quitting asks first: {fx:?}");
    assert_eq!(app.wizard.confirm, Some(Confirm::QuitWhileRekeying));
    let fx = keys(&mut app, &[KeyCode::Char('y')]);
    assert!(matches!(fx.as_slice(), [Effect::CancelRekey]), "{fx:?}");
    // The rollback's report ends the program once it is in.
    let fx = app.handle(Event::RekeyFinished(Box::new(laravel_report(
        MigrationStatus::RolledBack,
    ))));
    assert!(
        matches!(fx.as_slice(), [Effect::Exit(Outcome::RolledBack)]),
        "{fx:?}"
    );

    let mut c = at_run();
    keys(&mut c, &[KeyCode::Char('c')]);
    let fx = keys(&mut c, &[KeyCode::Char('y')]);
    assert!(matches!(fx.as_slice(), [Effect::CancelRekey]), "{fx:?}");
    assert!(screen(&c).contains("Cancelling"));
    let fx = c.handle(Event::RekeyFinished(Box::new(laravel_report(
        MigrationStatus::RolledBack,
    ))));
    assert!(fx.is_empty());
    assert_eq!(c.wizard.step, Step::RekeyDone);
    let s = screen(&c);
    assert!(
        s.contains("under the old key") && s.contains("Nothing to change"),
        "{s}"
    );
    snap("47-rekey-done-rolled-back", &c);
}

#[test]
fn a_finished_rekey_is_verified_then_names_the_apps_next_steps() {
    let mut app = at_run();
    let fx = app.handle(Event::RekeyFinished(Box::new(laravel_report(
        MigrationStatus::Completed,
    ))));
    assert!(
        matches!(fx.as_slice(), [Effect::RekeyVerify { id }] if id.0 == ID),
        "{fx:?}"
    );
    assert_eq!(app.wizard.step, Step::RekeyVerify);
    let mut verified = laravel_report(MigrationStatus::Completed);
    verified.verified = 6;
    app.handle(Event::RekeyVerified(Box::new(verified)));
    assert!(screen(&app).contains("6 of 6 rekeyed values"));
    snap("46-rekey-verify", &app);
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.step, Step::RekeyDone);
    let s = screen(&app);
    assert!(s.contains("Rekey complete"), "{s}");
    assert!(s.contains("APP_PREVIOUS_KEYS=<the APP_KEY it"), "{s}");
    assert!(s.contains("a_i_credentials 7 encrypted_credentials"), "{s}");
    assert!(s.contains(&format!("rollback --migration-id {ID}")), "{s}");
    snap("47-rekey-done", &app);
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::Completed)]));
}

#[test]
fn a_run_that_fails_ends_on_the_done_screen_with_the_reason() {
    let mut app = at_run();
    app.handle(Event::Failed {
        task: Task::Rekey,
        error: credshift::engine::EngineError::Refused(
            "laravel:sqlite:/srv/app/database/database.sqlite: locked by another credshift run"
                .into(),
        )
        .into(),
    });
    assert_eq!(app.wizard.step, Step::RekeyDone);
    assert_eq!(app.wizard.outcome, Some(Outcome::Failed));
    assert!(screen(&app).contains("locked by another credshift run"));
}

/// The app with the real engine executor, pumped by hand until `done`.
struct Pumped {
    app: App,
    exec: credshift::tui::worker::EngineExecutor,
    rx: std::sync::mpsc::Receiver<credshift::tui::app::Msg>,
    sink: credshift::tui::app::Sink,
}

impl Pumped {
    fn run(&mut self, fx: Vec<Effect>) {
        use credshift::tui::app::Executor;
        for e in fx {
            if !matches!(e, Effect::Exit(_)) {
                self.exec.execute(e, &self.sink);
            }
        }
    }

    fn keys(&mut self, ks: &[KeyCode]) {
        let fx = keys(&mut self.app, ks);
        self.run(fx);
    }

    fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done(&self.app) {
            assert!(
                std::time::Instant::now() < end,
                "waited a minute for {what}"
            );
            if let Ok(credshift::tui::app::Msg::Engine(e)) =
                self.rx.recv_timeout(std::time::Duration::from_millis(50))
            {
                let fx = self.app.handle(e);
                self.run(fx);
            }
        }
    }
}

/// The worker side of the new-key screen, on a real Laravel table: a path
/// that exists is refused before anything is written (and the file kept),
/// a new path gets a fresh `base64:` key (0600) that opens every row after
/// the run, and the old key none.
#[test]
fn the_real_worker_generates_a_laravel_key_and_refuses_an_existing_file() {
    use credshift::crypto::laravel::{self as crypt, AppKey};
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::fragments_db(&dir.path().join("app.sqlite"));
    let before = std::fs::read(&db).unwrap();
    let spec = spec(&format!("laravel:sqlite:{}", db.display()));
    let old_key = crate::support::fragments_app_key();
    let state = dir.path().join("state");
    let config = Config {
        candidates: vec![spec.clone()],
        state_dir: state.clone(),
        ..Config::default()
    };
    let opts = credshift::unlock::KeyOptions {
        app_key: Some(Secret::new(old_key.as_str())),
        ..Default::default()
    };
    let (w, initial) = Wizard::new(config, NOW);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut p = Pumped {
        app: App::new(w, Theme::plain()),
        exec: credshift::tui::worker::EngineExecutor::new(opts, state.clone()),
        rx,
        sink: credshift::tui::app::Sink(tx),
    };
    p.run(initial);
    p.until("the stores", |a| !a.wizard.assess.stores.is_empty());
    p.keys(&[KeyCode::Char('r'), KeyCode::Char('y')]);
    p.until("the dry run", |a| a.wizard.rekey.plan.is_some());
    let total = p.app.wizard.rekey.to_rekey();
    assert!(total >= 2, "{:?}", p.app.wizard.rekey.plan);
    p.keys(&[KeyCode::Enter, KeyCode::Down, KeyCode::Enter]);
    let taken = dir.path().join("taken.key");
    std::fs::write(&taken, "not to be overwritten\n").unwrap();
    type_text(&mut p.app, &taken.display().to_string());
    p.keys(&[KeyCode::Enter]);
    p.until("the refusal", |a| a.wizard.rekey.key_error.is_some());
    assert_eq!(p.app.wizard.step, Step::RekeyKey);
    assert!(
        p.app
            .wizard
            .rekey
            .key_error
            .as_deref()
            .unwrap()
            .contains("already exists"),
        "{:?}",
        p.app.wizard.rekey.key_error
    );
    assert_eq!(std::fs::read(&taken).unwrap(), b"not to be overwritten\n");
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing written");

    let fresh = dir.path().join("fresh.key");
    p.keys(&[KeyCode::Enter]);
    for _ in 0..taken.display().to_string().chars().count() {
        p.keys(&[KeyCode::Backspace]);
    }
    type_text(&mut p.app, &fresh.display().to_string());
    p.keys(&[KeyCode::Enter]);
    p.until("the verify", |a| {
        a.wizard.rekey.verify.is_some() || a.wizard.step == Step::RekeyDone
    });
    assert!(p.app.wizard.error.is_none(), "{:?}", p.app.wizard.error);
    let v = p.app.wizard.rekey.verify.clone().unwrap();
    assert_eq!((v.verified, v.failed), (total, 0));
    p.keys(&[KeyCode::Enter]);
    let s = screen(&p.app);
    assert!(
        s.contains("Rekey complete") && s.contains("APP_PREVIOUS_KEYS"),
        "{s}"
    );
    let new_text = std::fs::read_to_string(&fresh).unwrap();
    assert!(!s.contains(new_text.trim()) && !s.contains(&old_key), "{s}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let new = AppKey::parse(&Secret::new(new_text.trim())).unwrap();
    let old = AppKey::parse(&Secret::new(old_key.as_str())).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<String> = conn
        .prepare("SELECT encrypted_credentials FROM a_i_credentials")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), total);
    for r in &rows {
        assert!(crypt::decrypt(&new, r).is_ok());
        assert!(crypt::decrypt(&old, r).is_err());
    }
}
