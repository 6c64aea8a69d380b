//! Snapshot tests of every wizard screen and every recovery screen, at 80x24
//! and 60x20, with a fixed clock and fixed ids. Each screen is reached the
//! way a person reaches it: by feeding the wizard events (keys and engine
//! results), so these also pin down the transitions.
//!
//! Snapshots live in the top-level `snapshots/` folder. Style snapshots
//! (`*@styles`) are kept where colour carries meaning: the failure meter and
//! the warnings. No secret may appear in any snapshot: previews are masked,
//! and the reveal screen shows a dedicated fake value (checked below).

use std::path::{Path, PathBuf};
use std::time::Duration;

use credshift::credential::{CredentialId, Kind, Metadata, Secret, mask};
use credshift::engine::types::*;
use credshift::store::{Capability, LocationError, StoreSpec};
use credshift::tui::app::App;
use credshift::tui::screens;
use credshift::tui::theme::Theme;
use credshift::wizard::{Config, Detail, Effect, Event, RecoveryAction, Step, TimelineRow, Wizard};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

/// 2026-11-23 00:45:12 UTC.
const NOW: i64 = 1_795_394_712_000;
const SIZES: [(u16, u16); 2] = [(80, 24), (60, 20)];
/// The one value the reveal screen may show: made up for this test.
const REVEAL_FAKE: &str = "REVEAL-TEST-FAKE-VALUE-0001";
const STATE: &str = "/home/user/.local/state/credshift";
const MIGRATION: &str = "20261123T004512Z-3fa9c1";

fn spec(s: &str) -> StoreSpec {
    s.parse().unwrap()
}

fn source() -> StoreSpec {
    spec("prompttrain:/home/user/.agent-prompttrain/credentials")
}

fn target() -> StoreSpec {
    spec(&format!("encrypted:{STATE}/credentials.enc"))
}

/// Secrets the test data is made of (only their masks may be shown).
fn test_secrets() -> Vec<(CredentialId, Kind, String, Option<i64>)> {
    let id = |s: &str| s.parse::<CredentialId>().unwrap();
    vec![
        (
            id("account:acc_alpha/api_key"),
            Kind::ApiKey,
            format!("sk-ant-api03-{}9f3a", "T".repeat(91)),
            None,
        ),
        (
            id("account:acc_beta_oauth/oauth_access_token"),
            Kind::OauthAccess,
            format!("sk-ant-oat01-{}c0de", "U".repeat(91)),
            Some(1_790_003_600_000),
        ),
        (
            id("account:acc_beta_oauth/oauth_refresh_token"),
            Kind::OauthRefresh,
            format!("sk-ant-ort01-{}be11", "V".repeat(91)),
            None,
        ),
        (
            id("account:acc_gamma/api_key"),
            Kind::ApiKey,
            format!("sk-ant-api03-{}77aa", "W".repeat(91)),
            None,
        ),
        (
            id("account:acc_old_oauth/oauth_access_token"),
            Kind::OauthAccess,
            format!("sk-ant-oat01-{}e0e0", "X".repeat(91)),
            Some(1_700_000_000_000),
        ),
        (
            id("train:team-alpha/client_key/0"),
            Kind::ClientKey,
            "cnp_live_TESTaaaaaaaaaaaaaaa1".to_string(),
            None,
        ),
        (
            id("train:team-alpha/client_key/1"),
            Kind::ClientKey,
            "cnp_live_TESTbbbbbbbbbbbbbbb2".to_string(),
            None,
        ),
        (
            id("train:team-beta/client_key/0"),
            Kind::ClientKey,
            String::new(),
            None,
        ),
    ]
}

fn cap(items: Option<usize>) -> Capability {
    Capability {
        available: true,
        readable: true,
        writable: true,
        persistent: true,
        exists: true,
        keeps_metadata: true,
        item_count: items,
        ..Capability::default()
    }
}

fn reports() -> Vec<StoreReport> {
    vec![
        StoreReport {
            spec: source(),
            capability: cap(Some(8)),
            location: None,
        },
        StoreReport {
            spec: spec("modelforge:/home/user/.config/model-forge/config.json"),
            capability: Capability {
                warnings: vec![
                    "/home/user/.config/model-forge/config.json holds plaintext secrets and is readable by others (mode 644)".into(),
                ],
                ..cap(Some(2))
            },
            location: None,
        },
        StoreReport {
            spec: spec("dotenv:.env"),
            capability: Capability::unavailable(".env: not found"),
            location: None,
        },
        StoreReport {
            spec: spec("keyring:credshift"),
            capability: Capability::unavailable(
                "no Secret Service on the session bus: the keyring is missing or locked",
            ),
            location: None,
        },
        StoreReport {
            spec: target(),
            capability: Capability {
                encrypted_at_rest: true,
                exists: false,
                ..cap(None)
            },
            location: None,
        },
    ]
}

fn inventory() -> Inventory {
    let items = test_secrets()
        .into_iter()
        .map(|(id, kind, secret, exp)| {
            let (status, reason) = if secret.is_empty() {
                (ItemStatus::Invalid, Some("empty secret".to_string()))
            } else if exp.is_some_and(|e| e <= NOW) {
                (ItemStatus::Expired, Some("expired".to_string()))
            } else {
                (ItemStatus::Eligible, None)
            };
            InventoryItem {
                id,
                kind,
                preview: mask(&secret),
                metadata: Metadata::new(),
                status,
                reason,
                expires_at_ms: exp,
            }
        })
        .collect();
    Inventory {
        store: source(),
        items,
        errors: vec![LocationError {
            location:
                "/home/user/.agent-prompttrain/credentials/accounts/broken.credentials.json:3:14"
                    .into(),
            error: "expected a JSON object".into(),
            severity: credshift::store::Severity::Error,
        }],
    }
}

fn plan(policy: ConflictPolicy) -> Plan {
    let inv = inventory();
    let items: Vec<PlanItem> = inv
        .items
        .iter()
        .filter(|it| it.status != ItemStatus::Invalid)
        .enumerate()
        .map(|(i, it)| {
            let action = match i {
                3 => Action::SkipIdentical,
                5 => match policy {
                    ConflictPolicy::Skip => Action::Conflict,
                    ConflictPolicy::Overwrite => Action::Overwrite,
                },
                _ => Action::Copy,
            };
            let warnings = if it.status == ItemStatus::Expired {
                vec!["OAuth token expired on 2023-11-14".into()]
            } else {
                vec![]
            };
            PlanItem {
                id: it.id.clone(),
                kind: it.kind,
                preview: it.preview.clone(),
                action,
                warnings,
            }
        })
        .collect();
    let mut counts = PlanCounts {
        total: items.len(),
        expired_warnings: 1,
        ..PlanCounts::default()
    };
    for it in &items {
        match it.action {
            Action::Copy => counts.copy += 1,
            Action::Overwrite => counts.overwrite += 1,
            Action::SkipIdentical => counts.skip_identical += 1,
            Action::Conflict => counts.conflict += 1,
            Action::Invalid { .. } => counts.invalid += 1,
            Action::TooLong { .. } => counts.too_long += 1,
        }
    }
    Plan {
        from: source(),
        to: target(),
        on_conflict: policy,
        items,
        counts,
        estimated: Duration::from_secs(3),
        source_errors: vec![],
        warnings: vec!["the target keeps no metadata: expiry and scopes are dropped".into()],
        token: 0,
    }
}

fn report(rolled_back: bool, failed: usize) -> Report {
    Report {
        migration_id: MigrationId(MIGRATION.into()),
        from: source().to_string(),
        to: target().to_string(),
        total: 7,
        copied: if rolled_back { 0 } else { 5 - failed },
        skipped: 1,
        conflicts: 1,
        invalid: 1,
        failed,
        rolled_back,
        rollback_reason: rolled_back.then(|| "3 of 4 writes failed (more than half)".to_string()),
        failures: (0..failed)
            .map(|i| Failure {
                id: test_secrets()[i + 1].0.clone(),
                error: "injected fault (write)".into(),
            })
            .collect(),
        backup: Some(PathBuf::from(format!(
            "{STATE}/migrations/{MIGRATION}/backup.enc"
        ))),
        verified: 5 - failed,
        source_deleted: 0,
        source_delete_failed: vec![],
        warnings: vec![],
        kept_changed: vec![],
        notices: vec![],
        unreadable: 0,
        status: None,
        cancelled: false,
    }
}

fn history() -> Vec<HistoryEntry> {
    vec![
        HistoryEntry {
            id: MigrationId(MIGRATION.into()),
            started_at: "2026-11-23T00:45:12Z".into(),
            from: source().to_string(),
            to: target().to_string(),
            status: MigrationStatus::Interrupted,
            copied: 3,
            failed: 0,
        },
        HistoryEntry {
            id: MigrationId("20261122T181502Z-0b7d44".into()),
            started_at: "2026-11-22T18:15:02Z".into(),
            from: "dotenv:/srv/app/.env".into(),
            to: "keyring:credshift".into(),
            status: MigrationStatus::RolledBack,
            copied: 0,
            failed: 4,
        },
        HistoryEntry {
            id: MigrationId("20261120T090000Z-11aa22".into()),
            started_at: "2026-11-20T09:00:00Z".into(),
            from: "modelforge:/home/user/.config/model-forge/config.json".into(),
            to: "sqlite:/home/user/creds.db".into(),
            status: MigrationStatus::Completed,
            copied: 2,
            failed: 0,
        },
    ]
}

fn detail() -> Detail {
    let t = |at: &str, what: &str| TimelineRow {
        at: at.into(),
        what: what.into(),
    };
    Detail {
        entry: history()[0].clone(),
        timeline: vec![
            t("2026-11-23 00:45:12", "started: 7 items planned"),
            t("2026-11-23 00:45:13", "backup written (8 items)"),
            t(
                "2026-11-23 00:45:13",
                "account:acc_alpha/api_key written and verified",
            ),
            t(
                "2026-11-23 00:45:13",
                "account:acc_beta_oauth/oauth_access_token written and verified",
            ),
            t(
                "2026-11-23 00:45:14",
                "account:acc_beta_oauth/oauth_refresh_token written and verified",
            ),
            t("2026-11-23 00:45:14", "interrupted (no end record)"),
        ],
        backup: Some(PathBuf::from(format!(
            "{STATE}/migrations/{MIGRATION}/backup.enc"
        ))),
        items: ids()
            .into_iter()
            .enumerate()
            .map(|(i, id)| credshift::engine::items::ItemView {
                id,
                action: credshift::engine::journal::PlannedAction::Copy,
                state: if i < 3 {
                    credshift::engine::items::ItemState::Verified
                } else {
                    credshift::engine::items::ItemState::Planned
                },
                reason: None,
                source: credshift::engine::items::SourceState::Kept,
                batch: None,
            })
            .collect(),
        needs_passphrase: false,
        rollback_began: false,
        cleanup_interrupted: false,
        delete_source: false,
        on_conflict: ConflictPolicy::Skip,
    }
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn config() -> Config {
    Config {
        candidates: reports().into_iter().map(|r| r.spec).collect(),
        from: None,
        to: None,
        passphrase_given: false,
        state_dir: PathBuf::from(STATE),
        recover: false,
    }
}

/// Feed an event and return the effects.
fn ev(app: &mut App, e: Event) -> Vec<Effect> {
    app.handle(e)
}

fn keys(app: &mut App, ks: &[KeyCode]) -> Vec<Effect> {
    ks.iter().flat_map(|k| app.on_key(key(*k))).collect()
}

fn new_app(config: Config) -> App {
    let (w, _) = Wizard::new(config, NOW);
    App::new(w, Theme::colored())
}

fn at_assess() -> App {
    let mut app = new_app(config());
    ev(&mut app, Event::Assessed(reports()));
    ev(&mut app, Event::HistoryLoaded(history()));
    app
}

fn at_consent() -> App {
    let mut app = at_assess();
    // Source is the first readable store; Enter picks it, then the cursor
    // moves to the first possible target; Down x3 to the encrypted file.
    keys(&mut app, &[KeyCode::Enter]);
    keys(
        &mut app,
        &[KeyCode::Down, KeyCode::Down, KeyCode::Down, KeyCode::Enter],
    );
    assert_eq!(app.wizard.step, Step::Consent, "{:?}", app.wizard.error);
    app
}

fn at_inventory() -> App {
    let mut app = at_consent();
    let fx = keys(&mut app, &[KeyCode::Char('y')]);
    assert!(matches!(fx.as_slice(), [Effect::LoadInventory { .. }]));
    ev(&mut app, Event::InventoryLoaded(Box::new(inventory())));
    app
}

fn at_dry_run() -> App {
    let mut app = at_inventory();
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(matches!(fx.as_slice(), [Effect::Plan { .. }]), "{fx:?}");
    ev(
        &mut app,
        Event::PlanReady(Box::new(plan(ConflictPolicy::Skip))),
    );
    app
}

fn at_passphrase() -> App {
    let mut app = at_dry_run();
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.step, Step::Passphrase);
    app
}

fn type_text(app: &mut App, s: &str) {
    for c in s.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
}

fn at_execute(progress: Vec<Progress>) -> App {
    let mut app = at_passphrase();
    type_text(&mut app, "correct horse battery");
    keys(&mut app, &[KeyCode::Enter]);
    type_text(&mut app, "correct horse battery");
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(
        matches!(
            fx.as_slice(),
            [Effect::UsePassphrase(_), Effect::StartMigration { .. }]
        ),
        "{fx:?}"
    );
    ev(
        &mut app,
        Event::MigrationStarted {
            id: MigrationId(MIGRATION.into()),
        },
    );
    ev(&mut app, Event::Progress(progress));
    app
}

fn ids() -> Vec<CredentialId> {
    plan(ConflictPolicy::Skip)
        .items
        .into_iter()
        .map(|i| i.id)
        .collect()
}

fn running_progress() -> Vec<Progress> {
    let ids = ids();
    let mut p = vec![Progress::BackupWritten {
        path: PathBuf::from(format!("{STATE}/migrations/{MIGRATION}/backup.enc")),
        items: 8,
    }];
    p.push(Progress::ItemWritten { id: ids[0].clone() });
    p.push(Progress::ItemVerified { id: ids[0].clone() });
    p.push(Progress::ItemFailed {
        id: ids[1].clone(),
        error: "injected fault (write)".into(),
    });
    p.push(Progress::ItemWritten { id: ids[2].clone() });
    p.push(Progress::ItemVerified { id: ids[2].clone() });
    p.push(Progress::ItemSkipped {
        id: ids[3].clone(),
        reason: "identical value already at the target".into(),
    });
    p.push(Progress::Counts(Counts {
        total: 7,
        done: 4,
        written: 2,
        failed: 1,
        skipped: 1,
        rate: 240.0,
        eta: Some(Duration::from_secs(2)),
    }));
    p
}

fn rolling_back_progress() -> Vec<Progress> {
    let ids = ids();
    let mut p = vec![Progress::BackupWritten {
        path: PathBuf::from(format!("{STATE}/migrations/{MIGRATION}/backup.enc")),
        items: 8,
    }];
    p.push(Progress::ItemVerified { id: ids[0].clone() });
    for id in &ids[1..5] {
        p.push(Progress::ItemFailed {
            id: id.clone(),
            error: "injected fault (write)".into(),
        });
    }
    p.push(Progress::Counts(Counts {
        total: 7,
        done: 5,
        written: 1,
        failed: 4,
        skipped: 0,
        rate: 180.0,
        eta: Some(Duration::from_secs(1)),
    }));
    p.push(Progress::RollingBack {
        reason: "3 of 4 writes failed (more than half)".into(),
    });
    p
}

fn finished_progress() -> Vec<Progress> {
    let ids = ids();
    let mut p = vec![Progress::BackupWritten {
        path: PathBuf::from(format!("{STATE}/migrations/{MIGRATION}/backup.enc")),
        items: 8,
    }];
    for (i, id) in ids.iter().enumerate() {
        match i {
            3 => p.push(Progress::ItemSkipped {
                id: id.clone(),
                reason: "identical value already at the target".into(),
            }),
            5 => p.push(Progress::ItemSkipped {
                id: id.clone(),
                reason: "conflict: the target holds a different value".into(),
            }),
            _ => {
                p.push(Progress::ItemWritten { id: id.clone() });
                p.push(Progress::ItemVerified { id: id.clone() });
            }
        }
    }
    p.push(Progress::Counts(Counts {
        total: 7,
        done: 7,
        written: 5,
        failed: 0,
        skipped: 2,
        rate: 350.0,
        eta: Some(Duration::ZERO),
    }));
    p.push(Progress::Finished(Box::new(report(false, 0))));
    p
}

fn at_verify() -> App {
    let mut app = at_execute(finished_progress());
    assert_eq!(app.wizard.step, Step::Verify);
    let mut r = report(false, 0);
    r.verified = 5;
    ev(&mut app, Event::Verified(Box::new(r)));
    app
}

fn at_cleanup() -> App {
    let mut app = at_verify();
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.step, Step::Cleanup);
    app
}

fn at_history() -> App {
    let mut app = new_app(Config {
        recover: true,
        state_dir: PathBuf::from(STATE),
        ..Config::default()
    });
    ev(&mut app, Event::HistoryLoaded(history()));
    app
}

fn at_detail() -> App {
    let mut app = at_history();
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(matches!(fx.as_slice(), [Effect::LoadDetail { .. }]));
    ev(&mut app, Event::DetailLoaded(Box::new(detail())));
    assert_eq!(app.wizard.step, Step::Detail);
    app
}

// ---------------------------------------------------------------------------

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| screens::render(app, f)).unwrap();
    t
}

fn screen_text(t: &Terminal<TestBackend>) -> String {
    t.backend().to_string()
}

/// Every secret a snapshot must never contain.
fn forbidden() -> Vec<String> {
    let mut v: Vec<String> = test_secrets()
        .into_iter()
        .map(|(_, _, s, _)| s)
        .filter(|s| !s.is_empty())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "tests/fixtures/expected.json",
        "assets/demo/expected-prompttrain.json",
        "assets/demo/expected-modelforge.json",
        "assets/demo/expected-dotenv.json",
    ] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
        // Values that are not secrets in the first place (a URL, an app
        // name) are fine to show; every real-looking key is checked.
        v.extend(
            map.into_values()
                .filter(|s| s.len() >= 16 && !s.starts_with("http")),
        );
    }
    v.push("correct horse battery".into());
    v
}

fn assert_no_secret(name: &str, text: &str) {
    for s in forbidden() {
        // The full value, and any 12-character piece of its hidden middle.
        assert!(!text.contains(&s), "{name} shows a secret");
        let chars: Vec<char> = s.chars().collect();
        if chars.len() >= 24 {
            let mid: String = chars[8..20].iter().collect();
            assert!(!text.contains(&mid), "{name} shows part of a secret");
        }
    }
}

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        let t = draw(app, w, h);
        let text = screen_text(&t);
        assert_no_secret(name, &text);
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("{name}@{w}x{h}"), text);
        });
    }
}

fn snap_styles(name: &str, app: &App) {
    let t = draw(app, 80, 24);
    let dbg = format!("{:?}", t.backend().buffer());
    assert_no_secret(name, &dbg);
    insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(format!("{name}@styles"), dbg);
    });
}

// ---------------------------------------------------------------------------

#[test]
fn assess() {
    let app = at_assess();
    snap("01-assess-source", &app);
    snap_styles("01-assess-source", &app);
}

#[test]
fn assess_target_refuses_an_unavailable_keyring() {
    let mut app = at_assess();
    keys(
        &mut app,
        &[KeyCode::Enter, KeyCode::Down, KeyCode::Down, KeyCode::Enter],
    );
    // The keyring is unavailable: no silent fallback; the error says why and
    // points at the encrypted file.
    assert_eq!(app.wizard.step, Step::Assess);
    let e = app.wizard.error.clone().unwrap();
    assert!(e.contains("keyring:credshift cannot be the target"), "{e}");
    assert!(e.contains("encrypted file"), "{e}");
    snap("01-assess-target-unavailable", &app);
}

#[test]
fn consent() {
    snap("02-consent", &at_consent());
}

#[test]
fn inventory_screens() {
    let mut app = at_inventory();
    snap("03-inventory", &app);
    keys(&mut app, &[KeyCode::Char('/')]);
    type_text(&mut app, "oauth");
    snap("03-inventory-filter", &app);
    keys(&mut app, &[KeyCode::Esc, KeyCode::End, KeyCode::Char(' ')]);
    // The last item is the invalid one: it cannot be selected, and says why.
    assert!(
        app.wizard
            .error
            .as_deref()
            .is_some_and(|e| e.contains("empty secret"))
    );
    snap("03-inventory-invalid", &app);
}

#[test]
fn inventory_reveal_shows_the_value_for_30_seconds() {
    let mut app = at_inventory();
    let fx = keys(&mut app, &[KeyCode::Char('r')]);
    let [Effect::Reveal { id, .. }] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    ev(
        &mut app,
        Event::Revealed {
            id: id.clone(),
            secret: Secret::new(REVEAL_FAKE),
        },
    );
    ev(
        &mut app,
        Event::Tick {
            now_ms: NOW + 3_000,
        },
    );
    let text = screen_text(&draw(&app, 80, 24));
    assert!(text.contains(REVEAL_FAKE));
    assert!(text.contains("hides in 27 s"));
    snap("03-inventory-reveal", &app);
    ev(
        &mut app,
        Event::Tick {
            now_ms: NOW + 30_000,
        },
    );
    assert!(!screen_text(&draw(&app, 80, 24)).contains(REVEAL_FAKE));
}

#[test]
fn dry_run() {
    let mut app = at_dry_run();
    snap("04-dry-run", &app);
    let fx = keys(&mut app, &[KeyCode::Char('p')]);
    let [Effect::Plan { policy, .. }] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert_eq!(*policy, ConflictPolicy::Overwrite);
    ev(
        &mut app,
        Event::PlanReady(Box::new(plan(ConflictPolicy::Overwrite))),
    );
    snap("04-dry-run-overwrite", &app);
}

#[test]
fn passphrase() {
    let mut app = at_passphrase();
    snap("05-passphrase", &app);
    type_text(&mut app, "correct horse battery");
    keys(&mut app, &[KeyCode::Enter]);
    type_text(&mut app, "correct horse batterz");
    let fx = keys(&mut app, &[KeyCode::Enter]);
    assert!(fx.is_empty(), "a mismatch must not start anything: {fx:?}");
    assert_eq!(app.wizard.step, Step::Passphrase);
    snap("05-passphrase-mismatch", &app);
    type_text(&mut app, "correct horse battery");
    snap("05-passphrase-typing", &app);
}

#[test]
fn execute() {
    let app = at_execute(running_progress());
    snap("06-execute", &app);
    snap_styles("06-execute", &app);
}

#[test]
fn execute_rolling_back() {
    let app = at_execute(rolling_back_progress());
    snap("06-execute-rolling-back", &app);
    snap_styles("06-execute-rolling-back", &app);
}

#[test]
fn quitting_while_running_asks_first() {
    let mut app = at_execute(running_progress());
    let fx = keys(&mut app, &[KeyCode::Char('q')]);
    assert!(fx.is_empty(), "{fx:?}");
    snap("06-execute-quit-confirm", &app);
    let fx = keys(&mut app, &[KeyCode::Char('y')]);
    assert!(matches!(fx.as_slice(), [Effect::CancelMigration]), "{fx:?}");
}

#[test]
fn verify() {
    snap("07-verify", &at_verify());
}

#[test]
fn cleanup() {
    let mut app = at_cleanup();
    snap("08-cleanup", &app);
    keys(&mut app, &[KeyCode::Char(' '), KeyCode::Enter]);
    snap("08-cleanup-confirm-delete", &app);
}

#[test]
fn done_screens() {
    let mut app = at_cleanup();
    keys(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.wizard.step, Step::Done);
    snap("09-done-complete", &app);

    let mut app = at_execute(rolling_back_progress());
    ev(
        &mut app,
        Event::Progress(vec![Progress::Finished(Box::new(report(true, 4)))]),
    );
    assert_eq!(app.wizard.step, Step::Done);
    snap("09-done-rolled-back", &app);

    let mut app = at_execute(vec![]);
    ev(
        &mut app,
        Event::Failed {
            task: credshift::wizard::Task::Migrate,
            error: credshift::engine::EngineError::Refused(
                "encrypted:/home/user/.local/state/credshift/credentials.enc is locked by another migration".into(),
            )
            .into(),
        },
    );
    snap("09-done-failed", &app);
}

#[test]
fn help_overlay() {
    let mut app = at_inventory();
    keys(&mut app, &[KeyCode::Char('?')]);
    assert!(app.wizard.help);
    snap("10-help-inventory", &app);
}

#[test]
fn recovery_screens() {
    let mut app = at_history();
    snap("11-recovery-history", &app);
    let mut app2 = at_detail();
    snap("12-recovery-detail", &app2);
    keys(&mut app2, &[KeyCode::Char('b')]);
    snap("12-recovery-confirm-rollback", &app2);
    let fx = keys(&mut app2, &[KeyCode::Char('y')]);
    let [Effect::Recover { action, id }] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert_eq!(*action, RecoveryAction::Rollback);
    assert_eq!(id.0, MIGRATION);
    let mut r = report(true, 0);
    r.copied = 3;
    ev(&mut app2, Event::RecoveryFinished(Box::new(r)));
    snap("12-recovery-result", &app2);
    // An interrupted migration whose cleanup never ran: no restore.
    let mut a = at_detail();
    assert!(keys(&mut a, &[KeyCode::Char('t')]).is_empty());
    assert!(a.wizard.confirm.is_none());
    assert!(a.wizard.error.as_deref().unwrap().contains("deleted none"));
    for (k, action) in [('r', RecoveryAction::Resume), ('v', RecoveryAction::Verify)] {
        let mut a = at_detail();
        assert!(keys(&mut a, &[KeyCode::Char(k)]).is_empty());
        let fx = keys(&mut a, &[KeyCode::Char('y')]);
        assert!(
            matches!(fx.as_slice(), [Effect::Recover { action: got, .. }] if *got == action),
            "{k}: {fx:?}"
        );
    }
    // Empty history.
    ev(&mut app, Event::HistoryLoaded(vec![]));
    snap("11-recovery-history-empty", &app);
}

#[test]
fn interrupted_migration_is_offered_on_the_first_screen() {
    let app = at_assess();
    let text = screen_text(&draw(&app, 80, 24));
    assert!(text.contains("was interrupted: h opens recovery"), "{text}");
}

#[test]
fn no_color_uses_no_colour() {
    let mut app = at_execute(rolling_back_progress());
    app.theme = Theme::plain();
    let t = draw(&app, 80, 24);
    for cell in t.backend().buffer().content() {
        assert_eq!(cell.fg, Color::Reset, "a coloured cell under NO_COLOR");
        assert_eq!(cell.bg, Color::Reset);
    }
    // The meaning survives without colour: the 50% marker and the banner.
    let text = screen_text(&t);
    assert!(text.contains("50%: automatic rollback"));
    assert!(text.contains("Rolling back: 3 of 4 writes failed"));
}

#[test]
fn a_hundred_thousand_items_render_one_screen() {
    let mut app = at_consent();
    keys(&mut app, &[KeyCode::Char('y')]);
    let items: Vec<InventoryItem> = (0..100_000)
        .map(|i| InventoryItem {
            id: CredentialId::new("bulk", format!("key-{i:06}")),
            kind: Kind::ApiKey,
            preview: "•••• (12 chars)".into(),
            metadata: Metadata::new(),
            status: ItemStatus::Eligible,
            reason: None,
            expires_at_ms: None,
        })
        .collect();
    ev(
        &mut app,
        Event::InventoryLoaded(Box::new(Inventory {
            store: source(),
            items,
            errors: vec![],
        })),
    );
    keys(&mut app, &[KeyCode::End]);
    let text = screen_text(&draw(&app, 80, 24));
    assert!(text.contains("bulk/key-099999"));
    assert!(text.contains("100000 items, 100000 selected"));
    keys(&mut app, &[KeyCode::Home, KeyCode::PageDown]);
    let text = screen_text(&draw(&app, 80, 24));
    assert!(text.contains("bulk/key-000010"));
    assert!(!text.contains("bulk/key-099999"));
}

#[test]
fn no_snapshot_contains_a_secret() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_no_secret(&p.display().to_string(), &text);
        n += 1;
    }
    assert!(
        n >= 40,
        "expected the snapshots in {}, found {n}",
        dir.display()
    );
}

/// The whole app on a `TestBackend`: the real event loop, keys and engine
/// results through its channel, a scripted executor in place of the engine.
#[test]
fn the_event_loop_runs_a_whole_migration_on_a_test_backend() {
    use credshift::tui::app::{Executor, Msg, Sink, run_loop};
    use credshift::wizard::Outcome;

    struct Scripted {
        progress_msgs: usize,
    }
    fn k(sink: &Sink, c: KeyCode) {
        sink.0.send(Msg::Key(key(c))).unwrap();
    }
    impl Executor for Scripted {
        fn execute(&mut self, effect: Effect, sink: &Sink) {
            match effect {
                Effect::Assess { .. } => {
                    sink.send(Event::Assessed(reports()));
                    k(sink, KeyCode::Enter); // accept the preselected target
                    k(sink, KeyCode::Char('y'));
                }
                Effect::LoadHistory => sink.send(Event::HistoryLoaded(vec![])),
                Effect::LoadInventory { .. } => {
                    sink.send(Event::InventoryLoaded(Box::new(inventory())));
                    k(sink, KeyCode::Enter);
                }
                Effect::Plan { .. } => {
                    sink.send(Event::PlanReady(Box::new(plan(ConflictPolicy::Skip))));
                    k(sink, KeyCode::Enter);
                }
                Effect::UsePassphrase(_) => {}
                Effect::StartMigration { .. } => {
                    sink.send(Event::MigrationStarted {
                        id: MigrationId(MIGRATION.into()),
                    });
                    // One message per event, as the engine sends them; the
                    // loop merges whatever is queued into one batch.
                    for p in finished_progress() {
                        sink.send(Event::Progress(vec![p.clone()]));
                        self.progress_msgs += 1;
                    }
                }
                Effect::Verify { .. } => {
                    sink.send(Event::Verified(Box::new(report(false, 0))));
                    k(sink, KeyCode::Enter); // to cleanup
                    k(sink, KeyCode::Enter); // keep the source: done
                    k(sink, KeyCode::Enter); // exit
                }
                other => panic!("unexpected effect {other:?}"),
            }
        }
    }

    let mut c = config();
    c.from = Some(source());
    c.to = Some(target());
    c.passphrase_given = true;
    let (w, initial) = Wizard::new(c, NOW);
    let mut app = App::new(w, Theme::colored());
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Sink(tx);
    let mut exec = Scripted { progress_msgs: 0 };
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let outcome = run_loop(&mut term, &mut app, &mut exec, &rx, &sink, initial, &|| NOW).unwrap();
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(app.wizard.step, Step::Done);
    assert!(exec.progress_msgs > 10);
    assert_eq!(app.wizard.run.counts.done, 7);
    assert!(screen_text(&term).contains("Migration complete"));
}

/// An existing encrypted file probed without a passphrase, as `status`
/// and the wizard probe it: the real warning text, not a made-up one.
fn encrypted_report_without_passphrase(dir: &Path) -> StoreReport {
    use credshift::credential::Credential;
    use credshift::store::{self};
    use credshift::unlock::KeyOptions;
    let spec = spec(&format!("encrypted:{}", dir.join("vault.enc").display()));
    let with = KeyOptions {
        passphrase: Some(Secret::new("correct horse battery")),
        kdf_iterations: 2000,
        allow_weak_kdf: true,
        ..KeyOptions::default()
    };
    store::open(&spec, &with)
        .unwrap()
        .write(&Credential::new(
            "a/b".parse().unwrap(),
            Kind::ApiKey,
            "value-0123456789abcdef",
        ))
        .unwrap();
    let without = KeyOptions {
        allow_weak_kdf: true,
        ..KeyOptions::default()
    };
    let capability = store::open(&spec, &without).unwrap().probe();
    assert!(
        capability
            .needs_key
            .as_deref()
            .is_some_and(|w| w.contains("sealed with a passphrase")),
        "{capability:?}"
    );
    StoreReport {
        spec,
        capability,
        location: None,
    }
}

#[test]
fn assess_does_not_warn_of_a_passphrase_the_wizard_will_ask_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut reps = reports();
    reps[4] = encrypted_report_without_passphrase(dir.path());
    let mut config = config();
    config.candidates = reps.iter().map(|r| r.spec.clone()).collect();
    let mut app = new_app(config);
    ev(&mut app, Event::Assessed(reps));
    ev(&mut app, Event::HistoryLoaded(history()));
    // Pick the source, then put the cursor on the encrypted file.
    keys(
        &mut app,
        &[KeyCode::Enter, KeyCode::Down, KeyCode::Down, KeyCode::Down],
    );
    let text = screen_text(&draw(&app, 120, 30));
    assert!(text.contains("vault.enc"), "{text}");
    assert!(!text.contains("sealed with a passphrase"), "{text}");
    assert!(text.contains("asks for its passphrase"), "{text}");
    // The table's warning mark is gone too: the highlighted row has no "!".
    let row = text
        .lines()
        .find(|l| l.contains("vault.enc") && l.contains('>'))
        .unwrap();
    assert!(!row.trim_end().ends_with('!'), "{row}");
    // Picked as the target, the wizard does ask (the Passphrase step).
    keys(&mut app, &[KeyCode::Enter, KeyCode::Char('y')]);
    assert!(
        matches!(app.wizard.step, Step::Passphrase | Step::Inventory),
        "{:?}",
        app.wizard.step
    );
}

/// Issue 27, point 6: a 108-character key revealed at 100 and 60 columns
/// shows every character (wrapped over lines, not pushed below the detail
/// area), and still hides after 30 s.
#[test]
fn inventory_reveal_wraps_a_long_secret() {
    // 108 characters, each position readable: made up for this test.
    let long: String = format!("REVEAL-LONG-FAKE-{}", "0123456789abcdef".repeat(6))
        .chars()
        .take(108)
        .collect();
    assert_eq!(long.len(), 108);
    let mut app = at_inventory();
    let fx = keys(&mut app, &[KeyCode::Char('r')]);
    let [Effect::Reveal { id, .. }] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    ev(
        &mut app,
        Event::Revealed {
            id: id.clone(),
            secret: Secret::new(long.clone()),
        },
    );
    for (w, h) in [(100, 30), (60, 20)] {
        let text = screen_text(&draw(&app, w, h));
        // The screen's rows joined: the value appears whole, in order.
        let joined: String = text
            .lines()
            .map(|l| l.trim_matches('"').trim_end())
            .collect();
        assert!(joined.contains(&long), "{w}x{h}:\n{text}");
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("03-inventory-reveal-long@{w}x{h}"), text);
        });
    }
    ev(
        &mut app,
        Event::Tick {
            now_ms: NOW + 30_000,
        },
    );
    for (w, h) in [(100, 30), (60, 20)] {
        let text = screen_text(&draw(&app, w, h));
        assert!(!text.contains("REVEAL-LONG"), "{w}x{h}:\n{text}");
    }
}

/// Issue 27, point 5: the help's closing sentence appears whole at every
/// size (old main cut it on every screen), and on Done after a cleanup
/// that deleted from the source it says so instead of "the source is kept".
#[test]
fn the_help_wraps_at_every_size_and_tells_what_happened() {
    let flat = |s: &str| -> String {
        s.lines()
            .map(|l| {
                l.trim_matches('"')
                    .replace(['│', '┌', '┐', '└', '┘', '─'], " ")
            })
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut app = at_inventory();
    keys(&mut app, &[KeyCode::Char('?')]);
    for (w, h) in [(60, 15), (60, 20), (80, 24), (100, 30), (200, 50)] {
        let text = flat(&screen_text(&draw(&app, w, h)));
        assert!(
            text.contains(
                "Nothing is written before you consent; the source is kept until cleanup."
            ),
            "{w}x{h}: {text}"
        );
        assert!(
            text.contains("quit (asks first while a migration, resume, rollback or restore runs)"),
            "{w}x{h}: {text}"
        );
    }
    // Done after a cleanup that deleted from the source.
    let mut app = at_cleanup();
    keys(
        &mut app,
        &[KeyCode::Char(' '), KeyCode::Enter, KeyCode::Char('y')],
    );
    let mut r = report(false, 0);
    r.source_deleted = 5;
    ev(&mut app, Event::CleanedUp(Box::new(r)));
    assert_eq!(app.wizard.step, Step::Done);
    keys(&mut app, &[KeyCode::Char('?')]);
    for (w, h) in [(60, 15), (100, 30), (200, 50)] {
        let text = flat(&screen_text(&draw(&app, w, h)));
        assert!(!text.contains("the source is kept"), "{w}x{h}: {text}");
        assert!(!text.contains("source was kept"), "{w}x{h}: {text}");
        assert!(
            text.contains("Cleanup deleted the verified items from the source"),
            "{w}x{h}: {text}"
        );
    }
    snap("10-help-done-after-cleanup", &app);
}

/// Issue 27, point 5: a plan warning is wrapped, never cut mid-sentence.
#[test]
fn dry_run_warnings_are_never_cut() {
    let app = at_dry_run();
    for (w, h) in [(60, 15), (60, 20), (100, 30)] {
        let text: String = screen_text(&draw(&app, w, h))
            .lines()
            .map(|l| l.trim_matches('"').trim_end().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.contains("expiry and scopes are dropped"),
            "{w}x{h}: {text}"
        );
    }
}
