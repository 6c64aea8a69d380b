//! The state machine's unit tests: events in, state and effects out.

use super::*;
use crate::credential::{Kind, Metadata};
use crate::engine::types::{
    Action, Counts, InventoryItem, ItemStatus, PlanCounts, PlanItem, Progress, Report, StoreReport,
};
use crate::store::Capability;
use std::time::Duration;

const NOW: i64 = 1_795_394_712_000;

fn cap(writable: bool, encrypted: bool, exists: bool) -> Capability {
    Capability {
        available: true,
        readable: true,
        writable,
        persistent: true,
        encrypted_at_rest: encrypted,
        exists,
        ..Capability::default()
    }
}

fn stores(target_exists: bool) -> Vec<StoreReport> {
    vec![
        StoreReport {
            spec: "dotenv:/a/.env".parse().unwrap(),
            capability: cap(true, false, true),
            location: None,
        },
        StoreReport {
            spec: "keyring:credshift".parse().unwrap(),
            capability: Capability::unavailable("no Secret Service"),
            location: None,
        },
        StoreReport {
            spec: "encrypted:/a/t.enc".parse().unwrap(),
            capability: cap(true, true, target_exists),
            location: None,
        },
    ]
}

fn item(name: &str, status: ItemStatus) -> InventoryItem {
    InventoryItem {
        id: CredentialId::new("env", name),
        kind: Kind::ApiKey,
        preview: "•••• (8 chars)".into(),
        metadata: Metadata::new(),
        status,
        reason: (status == ItemStatus::Invalid).then(|| "empty secret".into()),
        expires_at_ms: None,
    }
}

fn inventory() -> Inventory {
    Inventory {
        store: "dotenv:/a/.env".parse().unwrap(),
        items: vec![
            item("A", ItemStatus::Eligible),
            item("B", ItemStatus::Expired),
            item("C", ItemStatus::Invalid),
            item("D", ItemStatus::Eligible),
        ],
        errors: vec![],
    }
}

fn plan(ids: &[&str]) -> Plan {
    Plan {
        from: "dotenv:/a/.env".parse().unwrap(),
        to: "encrypted:/a/t.enc".parse().unwrap(),
        on_conflict: ConflictPolicy::Skip,
        items: ids
            .iter()
            .map(|n| PlanItem {
                id: CredentialId::new("env", *n),
                kind: Kind::ApiKey,
                preview: String::new(),
                action: Action::Copy,
                warnings: vec![],
            })
            .collect(),
        counts: PlanCounts {
            total: ids.len(),
            copy: ids.len(),
            ..PlanCounts::default()
        },
        estimated: Duration::from_secs(1),
        source_errors: vec![],
        warnings: vec![],
        token: 0,
    }
}

fn config(passphrase_given: bool) -> Config {
    Config {
        candidates: stores(false).into_iter().map(|r| r.spec).collect(),
        passphrase_given,
        state_dir: "/state".into(),
        ..Config::default()
    }
}

/// A wizard at the Dry run step with a plan for A, B, D.
fn at_dry_run(passphrase_given: bool, target_exists: bool) -> Wizard {
    let (mut w, fx) = Wizard::new(config(passphrase_given), NOW);
    assert!(
        matches!(fx.as_slice(), [Effect::Assess { specs }, Effect::LoadHistory] if specs.len() == 3)
    );
    w.handle(Event::Assessed(stores(target_exists)));
    w.handle(Event::Enter); // source: the .env
    w.handle(Event::Down); // skip the keyring
    assert_eq!(
        w.assess.cursor, 2,
        "cursor starts on the first possible target"
    );
    w.handle(Event::Enter);
    assert_eq!(w.step, Step::Consent);
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::LoadInventory { .. }]));
    w.handle(Event::InventoryLoaded(Box::new(inventory())));
    if target_exists && !passphrase_given {
        assert!(w.handle(Event::Enter).is_empty());
        assert_eq!(w.step, Step::Passphrase);
        assert_eq!(w.passphrase.mode, PassphraseMode::Unlock);
        let fx = w.handle(Event::PassphraseSubmitted {
            passphrase: Secret::new("unlock me please"),
            confirm: None,
        });
        assert!(matches!(
            fx.as_slice(),
            [Effect::UsePassphrase(_), Effect::Plan { .. }]
        ));
    } else {
        let fx = w.handle(Event::Enter);
        let [Effect::Plan { selection, .. }] = fx.as_slice() else {
            panic!("{fx:?}")
        };
        assert_eq!(selection.len(), 3, "invalid items are never selected");
    }
    w.handle(Event::PlanReady(Box::new(plan(&["A", "B", "D"]))));
    assert_eq!(w.step, Step::DryRun);
    w
}

#[test]
fn nothing_is_emitted_before_consent_and_defer_changes_nothing() {
    let (mut w, _) = Wizard::new(config(true), NOW);
    w.handle(Event::Assessed(stores(false)));
    w.handle(Event::Enter);
    w.handle(Event::End);
    let fx = w.handle(Event::Enter);
    assert!(fx.is_empty());
    assert_eq!(w.step, Step::Consent);
    assert!(w.handle(Event::Enter).is_empty(), "Enter is not consent");
    let fx = w.handle(Event::Defer);
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::Deferred)]));
}

#[test]
fn an_unavailable_target_is_refused_with_its_reason() {
    let (mut w, _) = Wizard::new(config(true), NOW);
    w.handle(Event::Assessed(stores(false)));
    w.handle(Event::Enter);
    w.assess.cursor = 1;
    assert!(w.handle(Event::Enter).is_empty());
    assert_eq!(w.step, Step::Assess);
    assert!(w.assess.target.is_none());
    assert!(w.error.as_deref().unwrap().contains("no Secret Service"));
    // The same store cannot be source and target.
    w.assess.cursor = 0;
    w.handle(Event::Enter);
    assert_eq!(w.step, Step::Assess);
    assert!(w.error.as_deref().unwrap().contains("different store"));
}

#[test]
fn preselected_stores_are_picked_from_the_command_line() {
    let mut c = config(true);
    c.from = Some("dotenv:/a/.env".parse().unwrap());
    c.to = Some("encrypted:/a/t.enc".parse().unwrap());
    let (mut w, _) = Wizard::new(c, NOW);
    w.handle(Event::Assessed(stores(false)));
    assert_eq!((w.assess.source, w.assess.target), (Some(0), Some(2)));
    w.handle(Event::Enter);
    assert_eq!(w.step, Step::Consent, "Enter accepts the preselection");
}

/// The rows the filter shows, found the slow and obvious way.
fn full_scan(w: &Wizard) -> Vec<usize> {
    let needle = w.inventory.filter.to_lowercase();
    let inv = w.inventory.loaded.as_ref().unwrap();
    (0..inv.items.len())
        .filter(|&i| {
            inv.items[i].id.to_string().to_lowercase().contains(&needle)
                || inv.items[i].kind.as_str().contains(&needle)
        })
        .collect()
}

#[test]
fn the_filter_after_every_keystroke_equals_a_full_scan() {
    let mut w = at_dry_run(true, false);
    w.handle(Event::Back);
    assert_eq!(w.step, Step::Inventory);
    let names = [
        "OPENAI_API_KEY",
        "openai_org",
        "ANTHROPIC_KEY",
        "ΑΣ",
        "ας",
        "ασb",
        "AΣB",
        "key_9",
        "K9",
    ];
    let mut inv = inventory();
    inv.items = names
        .iter()
        .map(|n| item(n, ItemStatus::Eligible))
        .collect();
    w.handle(Event::InventoryLoaded(Box::new(inv)));
    w.handle(Event::FilterStart);
    // Typing narrows, backspace widens again; "AΣ" then "B": lowercasing
    // Σ depends on what follows it, so the longer needle is not an
    // extension of the shorter one.
    let keys = "OpenAI\x08\x08\x08\x08\x08\x08AΣB\x08\x08\x08api_\x08\x08\x08\x08\x08K9";
    for k in keys.chars() {
        if k == '\x08' {
            w.handle(Event::FilterBackspace);
        } else {
            w.handle(Event::FilterChar(k));
        }
        assert_eq!(
            w.inventory.visible,
            full_scan(&w),
            "filter {:?}",
            w.inventory.filter
        );
    }
    assert_eq!(w.inventory.filter, "K9");
    assert_eq!(w.inventory.visible, vec![8]);
    w.handle(Event::Back);
    assert_eq!(w.inventory.visible.len(), names.len());
}

#[test]
fn selection_filter_and_toggle_all() {
    let mut w = at_dry_run(true, false);
    w.handle(Event::Back);
    assert_eq!(w.step, Step::Inventory);
    w.handle(Event::FilterStart);
    for c in "env/d".chars() {
        w.handle(Event::FilterChar(c));
    }
    assert_eq!(w.inventory.visible, vec![3]);
    w.handle(Event::Enter);
    w.handle(Event::ToggleAll);
    assert!(!w.inventory.selected[3]);
    assert!(
        w.inventory.selected[0],
        "toggle all acts on the filtered rows only"
    );
    w.handle(Event::FilterStart);
    w.handle(Event::Back); // clears the filter
    assert_eq!(w.inventory.visible.len(), 4);
    w.handle(Event::Home);
    w.handle(Event::Down);
    w.handle(Event::Down);
    w.handle(Event::Toggle);
    assert!(
        !w.inventory.selected[2],
        "an invalid item cannot be selected"
    );
    assert!(w.error.as_deref().unwrap().contains("empty secret"));
    let fx = w.handle(Event::Enter);
    let [Effect::Plan { selection, .. }] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    let names: Vec<&str> = selection.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
}

#[test]
fn reveal_hides_after_30_seconds_and_on_moving() {
    let mut w = at_dry_run(true, false);
    w.handle(Event::Back);
    let fx = w.handle(Event::Reveal);
    let [Effect::Reveal { id, .. }] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    w.handle(Event::Revealed {
        id: id.clone(),
        secret: Secret::new("x"),
    });
    assert!(w.inventory.revealed.is_some());
    w.handle(Event::Tick {
        now_ms: NOW + REVEAL_MS - 1,
    });
    assert!(w.inventory.revealed.is_some());
    w.handle(Event::Tick {
        now_ms: NOW + REVEAL_MS,
    });
    assert!(w.inventory.revealed.is_none());
    w.handle(Event::Revealed {
        id: id.clone(),
        secret: Secret::new("x"),
    });
    w.handle(Event::Down);
    assert!(w.inventory.revealed.is_none());
    // A late answer for an item no longer under the cursor is dropped.
    w.handle(Event::Revealed {
        id: id.clone(),
        secret: Secret::new("x"),
    });
    assert!(w.inventory.revealed.is_none());
}

#[test]
fn passphrase_is_asked_when_none_was_given_and_must_match() {
    let mut w = at_dry_run(false, false);
    assert!(w.handle(Event::Enter).is_empty());
    assert_eq!(w.step, Step::Passphrase);
    assert_eq!(w.passphrase.mode, PassphraseMode::Create);
    let fx = w.handle(Event::PassphraseSubmitted {
        passphrase: Secret::new("correct horse"),
        confirm: Some(Secret::new("correct horsE")),
    });
    assert!(fx.is_empty());
    assert!(w.passphrase.error.is_some());
    w.handle(Event::PassphraseEdited);
    assert!(w.passphrase.error.is_none());
    let fx = w.handle(Event::PassphraseSubmitted {
        passphrase: Secret::new("short"),
        confirm: Some(Secret::new("short")),
    });
    assert!(fx.is_empty(), "too short");
    // The CLI's rule (issue 23): a common password of 8+ characters too.
    let fx = w.handle(Event::PassphraseSubmitted {
        passphrase: Secret::new("Password1"),
        confirm: Some(Secret::new("Password1")),
    });
    assert!(fx.is_empty(), "a common password");
    let error = w.passphrase.error.clone().unwrap();
    assert!(error.contains("most common passwords"), "{error}");
    let fx = w.handle(Event::PassphraseSubmitted {
        passphrase: Secret::new("correct horse"),
        confirm: Some(Secret::new("correct horse")),
    });
    assert!(matches!(
        fx.as_slice(),
        [Effect::UsePassphrase(_), Effect::StartMigration { .. }]
    ));
    assert_eq!(w.step, Step::Execute);
}

#[test]
fn an_existing_encrypted_target_is_unlocked_before_the_dry_run() {
    let mut w = at_dry_run(false, true);
    let fx = w.handle(Event::Enter);
    assert!(
        matches!(fx.as_slice(), [Effect::StartMigration { .. }]),
        "unlocked once, not asked again: {fx:?}"
    );
}

fn running() -> Wizard {
    let mut w = at_dry_run(true, false);
    let fx = w.handle(Event::Enter);
    let [
        Effect::StartMigration {
            selection, policy, ..
        },
    ] = fx.as_slice()
    else {
        panic!("{fx:?}")
    };
    assert_eq!(selection.len(), 3);
    assert_eq!(*policy, ConflictPolicy::Skip);
    w.handle(Event::MigrationStarted {
        id: MigrationId("m1".into()),
    });
    w
}

fn report(rolled_back: bool) -> Report {
    Report {
        migration_id: MigrationId("m1".into()),
        from: "dotenv:/a/.env".into(),
        to: "encrypted:/a/t.enc".into(),
        total: 3,
        copied: if rolled_back { 0 } else { 2 },
        skipped: 0,
        conflicts: 0,
        invalid: 0,
        failed: if rolled_back { 2 } else { 1 },
        rolled_back,
        rollback_reason: rolled_back.then(|| "2 of 3 failed".into()),
        failures: vec![],
        backup: Some("/state/m1/backup".into()),
        verified: 2,
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

#[test]
fn progress_batches_update_counts_outcomes_and_the_log() {
    let mut w = running();
    let id = |n: &str| CredentialId::new("env", n);
    w.handle(Event::Progress(vec![
        Progress::ItemWritten { id: id("A") },
        Progress::ItemVerified { id: id("A") },
        Progress::ItemFailed {
            id: id("B"),
            error: "injected fault (write)".into(),
        },
        Progress::Counts(Counts {
            total: 3,
            done: 2,
            written: 1,
            failed: 1,
            ..Counts::default()
        }),
    ]));
    assert_eq!(w.run.outcomes[0], ItemOutcome::Verified);
    assert!(matches!(w.run.outcomes[1], ItemOutcome::Failed(_)));
    assert_eq!(w.run.outcomes[2], ItemOutcome::Pending);
    assert_eq!(w.run.counts.done, 2);
    assert_eq!(w.run.log.len(), 2);
    // The log keeps a bounded tail.
    let flood: Vec<Progress> = (0..LOG_TAIL + 50)
        .map(|_| Progress::ItemSkipped {
            id: id("D"),
            reason: "identical".into(),
        })
        .collect();
    w.handle(Event::Progress(flood));
    assert_eq!(w.run.log.len(), LOG_TAIL);
}

#[test]
fn a_migrate_error_after_writes_never_says_nothing_was_written() {
    // Before any write: the engine refused to start.
    let mut w = running();
    w.handle(Event::Failed {
        task: Task::Migrate,
        error: EngineError::Refused("the target is locked".into()).into(),
    });
    assert_eq!(w.step, Step::Done);
    let text = w.failure_summary().unwrap();
    assert!(text.starts_with("Nothing was written"), "{text}");
    // After items were written: the worker failed mid-run.
    for progress in [
        Progress::ItemStarted {
            index: 0,
            id: CredentialId::new("env", "A"),
        },
        Progress::ItemWritten {
            id: CredentialId::new("env", "A"),
        },
        Progress::ItemVerified {
            id: CredentialId::new("env", "A"),
        },
    ] {
        let mut w = running();
        w.handle(Event::Progress(vec![progress]));
        w.handle(Event::Failed {
            task: Task::Migrate,
            error: StoreError::Other("the journal failed: disk full".into()).into(),
        });
        assert_eq!(w.step, Step::Done);
        let text = w.failure_summary().unwrap();
        assert!(!text.contains("Nothing was written"), "{text}");
        assert!(text.contains("rollback --migration-id m1"), "{text}");
    }
}

#[test]
fn finishing_goes_to_verify_then_cleanup_keeps_the_source_by_default() {
    let mut w = running();
    let fx = w.handle(Event::Progress(vec![Progress::Finished(Box::new(report(
        false,
    )))]));
    assert!(matches!(fx.as_slice(), [Effect::Verify { id }] if id.0 == "m1"));
    assert_eq!(w.step, Step::Verify);
    assert!(w.handle(Event::Enter).is_empty(), "waits for verify");
    w.handle(Event::Verified(Box::new(report(false))));
    w.handle(Event::Enter);
    assert_eq!(w.step, Step::Cleanup);
    assert!(!w.cleanup.delete_source);
    assert!(w.handle(Event::Enter).is_empty());
    assert_eq!(w.step, Step::Done);
    assert_eq!(w.outcome, Some(Outcome::Failed), "one item failed");
    let fx = w.handle(Event::Enter);
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::Failed)]));
}

#[test]
fn deleting_from_the_source_needs_a_second_yes() {
    let mut w = running();
    w.handle(Event::Progress(vec![Progress::Finished(Box::new(report(
        false,
    )))]));
    w.handle(Event::Verified(Box::new(report(false))));
    w.handle(Event::Enter);
    w.handle(Event::Toggle);
    assert!(w.cleanup.delete_source);
    assert!(w.handle(Event::Enter).is_empty());
    assert!(matches!(w.confirm, Some(Confirm::DeleteSource { .. })));
    assert!(w.handle(Event::No).is_empty());
    assert!(w.confirm.is_none());
    w.handle(Event::Enter);
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::Cleanup { id }] if id.0 == "m1"));
    w.handle(Event::CleanedUp(Box::new(report(false))));
    assert_eq!(w.step, Step::Done);
}

#[test]
fn automatic_rollback_ends_on_the_rolled_back_screen() {
    let mut w = running();
    w.handle(Event::Progress(vec![
        Progress::RollingBack {
            reason: "2 of 3 failed".into(),
        },
        Progress::Finished(Box::new(report(true))),
    ]));
    assert_eq!(w.step, Step::Done);
    assert_eq!(w.outcome, Some(Outcome::RolledBack));
    assert_eq!(w.run.rolling_back.as_deref(), Some("2 of 3 failed"));
}

#[test]
fn an_incomplete_rollback_ends_as_failed_without_verify() {
    let mut w = running();
    let mut r = report(true);
    r.rolled_back = false;
    let fx = w.handle(Event::Progress(vec![
        Progress::RollingBack {
            reason: "2 of 3 failed".into(),
        },
        Progress::Finished(Box::new(r)),
    ]));
    assert!(fx.is_empty(), "nothing to verify: {fx:?}");
    assert_eq!(w.step, Step::Done);
    assert_eq!(w.outcome, Some(Outcome::Failed));
}

#[test]
fn cancel_and_quit_while_running() {
    let mut w = running();
    // q asks; n keeps running.
    assert!(w.handle(Event::Quit).is_empty());
    assert_eq!(w.confirm, Some(Confirm::QuitWhileRunning));
    w.handle(Event::No);
    assert!(w.running());
    // c cancels once.
    assert!(matches!(
        w.handle(Event::Cancel).as_slice(),
        [Effect::CancelMigration]
    ));
    assert!(w.handle(Event::Cancel).is_empty());
    // Quit + yes: exit only after the engine has rolled back.
    let mut w = running();
    w.handle(Event::Quit);
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::CancelMigration]));
    let fx = w.handle(Event::Progress(vec![Progress::Finished(Box::new(report(
        true,
    )))]));
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::RolledBack)]));
    // A signal does the same without asking.
    let mut w = running();
    assert!(matches!(
        w.handle(Event::Terminate).as_slice(),
        [Effect::CancelMigration]
    ));
    assert!(w.run.quit_after);
}

#[test]
fn help_opens_and_any_key_closes_it() {
    let (mut w, _) = Wizard::new(config(true), NOW);
    w.handle(Event::Assessed(stores(false)));
    w.handle(Event::Help);
    assert!(w.help);
    assert!(w.handle(Event::Enter).is_empty());
    assert!(!w.help);
    assert_eq!(w.step, Step::Assess, "the closing key does nothing else");
}

#[test]
fn recovery_actions_need_confirmation() {
    let (mut w, fx) = Wizard::new(
        Config {
            recover: true,
            ..Config::default()
        },
        NOW,
    );
    assert!(matches!(fx.as_slice(), [Effect::LoadHistory]));
    assert_eq!(w.step, Step::History);
    let entry = HistoryEntry {
        id: MigrationId("m1".into()),
        started_at: "2026-11-23T00:45:12Z".into(),
        from: "a".into(),
        to: "b".into(),
        status: MigrationStatus::Interrupted,
        copied: 1,
        failed: 0,
    };
    w.handle(Event::HistoryLoaded(vec![entry.clone()]));
    let fx = w.handle(Event::Enter);
    assert!(matches!(fx.as_slice(), [Effect::LoadDetail { id }] if id.0 == "m1"));
    w.handle(Event::DetailLoaded(Box::new(Detail {
        entry,
        timeline: vec![],
        backup: None,
        items: vec![],
        needs_passphrase: false,
        rollback_began: false,
        cleanup_interrupted: false,
        delete_source: false,
        on_conflict: crate::engine::types::ConflictPolicy::Skip,
    })));
    assert_eq!(w.step, Step::Detail);
    // No backup: restore is refused outright.
    assert!(
        w.handle(Event::Recovery(RecoveryAction::Restore))
            .is_empty()
    );
    assert!(w.confirm.is_none());
    assert!(
        w.handle(Event::Recovery(RecoveryAction::Rollback))
            .is_empty()
    );
    assert!(w.handle(Event::Back).is_empty(), "Esc answers no");
    assert!(w.confirm.is_none());
    w.handle(Event::Recovery(RecoveryAction::Resume));
    let fx = w.handle(Event::Yes);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Recover { action: RecoveryAction::Resume, id }] if id.0 == "m1"
    ));
    let fx = w.handle(Event::RecoveryFinished(Box::new(report(false))));
    assert!(matches!(fx.as_slice(), [Effect::LoadDetail { .. }]));
    // q quits the recovery path at once (nothing runs).
    assert!(matches!(
        w.handle(Event::Quit).as_slice(),
        [Effect::Exit(Outcome::Quit)]
    ));
}

#[test]
fn strength_grows_with_length_and_variety() {
    assert_eq!(strength(""), Strength::Empty);
    assert_eq!(strength("abc"), Strength::Weak);
    assert_eq!(strength("abcdefgh"), Strength::Weak);
    assert_eq!(strength("abcdefgh12"), Strength::Fair);
    assert_eq!(strength("correct horse battery"), Strength::Strong);
}

/// The filter at scale, where it takes its other paths: one search over
/// all ids, rows tested one by one once few are left, kinds that match,
/// and ids with a line break (the buffer's separator) in them.
#[test]
fn the_filter_equals_a_full_scan_on_a_large_inventory() {
    let mut w = at_dry_run(true, false);
    w.handle(Event::Back);
    let kinds = [
        Kind::ApiKey,
        Kind::Password,
        Kind::OauthRefresh,
        Kind::Other,
    ];
    let alphabet = ['a', 'B', 'Σ', '\n', '_', 'p', 'k'];
    // Deterministic pseudo-random names (xorshift), 1 to 6 letters.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m) as usize
    };
    let mut inv = inventory();
    inv.items = (0..600)
        .map(|i| {
            let len = 1 + next(6);
            let name: String = (0..len).map(|_| alphabet[next(7)]).collect();
            let mut it = item(&name, ItemStatus::Eligible);
            it.kind = kinds[i % kinds.len()];
            it
        })
        .collect();
    w.handle(Event::InventoryLoaded(Box::new(inv)));
    w.handle(Event::FilterStart);
    let mut row_by_row = false;
    let mut type_char = |w: &mut Wizard, c: char| {
        // A narrowing keystroke from fewer than an eighth of the rows
        // tests those rows one by one.
        let before = w.inventory.visible.len();
        w.handle(Event::FilterChar(c));
        row_by_row |= before > 0 && before < 600 / 8;
        assert_eq!(
            w.inventory.visible,
            full_scan(w),
            "filter {:?}",
            w.inventory.filter
        );
    };
    for round in 0..40 {
        let typed = 1 + next(5);
        for _ in 0..typed {
            let c = if round % 5 == 0 {
                ['p', 'a', 's', 'e', 'n'][next(5)]
            } else {
                alphabet[next(7)]
            };
            type_char(&mut w, c);
        }
        for _ in 0..next(typed as u64 + 1) {
            w.handle(Event::FilterBackspace);
            assert_eq!(
                w.inventory.visible,
                full_scan(&w),
                "filter {:?}",
                w.inventory.filter
            );
        }
    }
    // One id typed in full, from an empty filter.
    w.handle(Event::Back);
    w.handle(Event::FilterStart);
    let id = w.inventory.loaded.as_ref().unwrap().items[7].id.to_string();
    for c in id.chars() {
        type_char(&mut w, c);
    }
    assert!(w.inventory.visible.contains(&7));
    assert!(row_by_row, "the row-by-row path was taken");
}

#[test]
fn the_selected_count_follows_toggles_and_toggle_all() {
    let mut w = at_dry_run(true, false);
    w.handle(Event::Back);
    let count = |w: &Wizard| w.inventory.selected.iter().filter(|s| **s).count();
    // A, B (expired) selected; C invalid; D selected.
    assert_eq!(w.selected_count(), 3);
    for e in [
        Event::Toggle,
        Event::ToggleAll,
        Event::ToggleAll,
        Event::Down,
        Event::Down,
        Event::Toggle,
        Event::Down,
        Event::Toggle,
        Event::Toggle,
        Event::ToggleAll,
    ] {
        w.handle(e);
        assert_eq!(w.selected_count(), count(&w));
    }
    w.handle(Event::InventoryLoaded(Box::new(inventory())));
    assert_eq!(w.selected_count(), 3, "a new inventory starts over");
}

#[test]
fn the_plan_index_finds_every_item_and_nothing_else() {
    // K0, K1, K2, ... is out of id order ("K10" < "K2"): the hashed map;
    // the same ids sorted: searched by halves, no map at all.
    let names: Vec<String> = (0..500).map(|i| format!("K{i}")).collect();
    let mut unsorted: Vec<CredentialId> =
        names.iter().map(|n| CredentialId::new("env", n.as_str())).collect();
    let mut sorted = unsorted.clone();
    sorted.sort();
    for (ids, map) in [(&mut unsorted, true), (&mut sorted, false)] {
        let index = PlanIndex::new(ids);
        assert_eq!(!index.holds_no_map(), map);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.find(ids, id), Some(i));
        }
        assert_eq!(index.find(ids, &CredentialId::new("env", "K500")), None);
        assert_eq!(index.find(ids, &CredentialId::new("other", "K1")), None);
        // Against other ids, a position whose id differs is no hit.
        let other = [CredentialId::new("env", "X"), CredentialId::new("env", "Y")];
        assert_eq!(index.find(&other, &CredentialId::new("env", "K1")), None);
    }
}

#[test]
fn lock_notices_of_the_report_reach_the_run_log() {
    let mut w = running();
    let mut r = report(false);
    r.notices = vec![crate::store::LockNotice::TookOverStale {
        lock: "dotenv:/a/.env".into(),
        holder: "pid 7 on h, since t".into(),
    }];
    w.handle(Event::Progress(vec![Progress::Finished(Box::new(r))]));
    assert!(
        w.run.log.iter().any(
            |l| matches!(l, LogLine::Info(t) if t.contains("took over the lock left by pid 7"))
        ),
        "{:?}",
        w.run.log
    );
}

#[test]
fn a_failed_task_shows_the_engine_error_message_it_carries() {
    let mut w = running();
    let e = EngineError::ChangedSincePlan {
        changed: vec![(
            CredentialId::new("env", "A"),
            crate::engine::plan::ChangedSide::Target,
        )],
    };
    let shown = e.to_string();
    w.handle(Event::Failed {
        task: Task::Migrate,
        error: e.into(),
    });
    assert_eq!(w.error.as_deref(), Some(shown.as_str()));
    assert!(shown.contains("env/A (target)"), "{shown}");
}

/// Issue 22, point 2: the wizard tells that two specs name one store from
/// the locations the probe sent, without looking at the file system.
#[test]
fn one_store_under_two_names_is_refused_from_the_probed_locations() {
    use crate::store::{IdentityKind, StoreIdentity};
    let one = StoreIdentity::named(IdentityKind::File, "/a/.env");
    let mut reports = stores(false);
    reports[0].location = Some(one.clone());
    // The target's spec differs; the probe found it is the same file.
    reports[2].capability = cap(true, false, true);
    reports[2].location = Some(one);
    let (mut w, _) = Wizard::new(config(true), NOW);
    w.handle(Event::Assessed(reports.clone()));
    w.handle(Event::Enter);
    w.assess.cursor = 2;
    assert!(w.handle(Event::Enter).is_empty());
    assert_eq!(w.step, Step::Assess);
    assert!(
        w.error
            .as_deref()
            .unwrap()
            .contains("same store as the source"),
        "{:?}",
        w.error
    );
    // Told apart by the probe: the same specs pass.
    reports[2].location = Some(StoreIdentity::named(IdentityKind::File, "/a/t.enc"));
    let (mut w, _) = Wizard::new(config(true), NOW);
    w.handle(Event::Assessed(reports));
    w.handle(Event::Enter);
    w.assess.cursor = 2;
    w.handle(Event::Enter);
    assert_eq!(w.step, Step::Consent, "{:?}", w.error);
}

/// Issue #26: from the start of a migration on, the wizard keeps one row
/// per plan item (its id and outcome) and nothing else per item: the
/// inventory (rows, selection flags, filter keys) and the plan's other
/// columns are gone, the selection went to the engine, and progress finds
/// an item's row by searching the ids, with no map of them.
#[test]
fn a_started_migration_keeps_only_the_plan_ids_and_their_outcomes() {
    let mut w = at_dry_run(true, false);
    assert!(w.inventory.loaded.is_some());
    let fx = w.handle(Event::Enter);
    let [
        Effect::StartMigration {
            selection,
            plan_items,
            ..
        },
    ] = fx.as_slice()
    else {
        panic!("{fx:?}")
    };
    // The plan's rows go back to the worker (the one copy of them).
    let rows: Vec<CredentialId> = plan_items.iter().map(|i| i.id.clone()).collect();
    let names = |ids: &[CredentialId]| ids.iter().map(|i| i.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(selection), ["A", "B", "D"]);
    assert_eq!(names(&rows), ["A", "B", "D"]);
    assert!(w.inventory.loaded.is_none(), "the inventory rows are dropped");
    assert!(w.inventory.selected.is_empty() && w.inventory.visible.is_empty());
    assert_eq!(w.selected_count(), 0);
    assert!(w.dry_run.plan.is_none(), "the plan is dropped");
    assert_eq!(names(&w.run.items), ["A", "B", "D"]);
    assert_eq!(w.run.outcomes.len(), 3);
    assert!(w.run.index.holds_no_map());
    w.handle(Event::Progress(vec![Progress::ItemVerified {
        id: CredentialId::new("env", "D"),
    }]));
    assert_eq!(
        w.run.outcomes,
        [ItemOutcome::Pending, ItemOutcome::Pending, ItemOutcome::Verified]
    );
}

// The read-back's and cleanup's stop and quit, in a file of their own.
#[path = "finishing_tests.rs"]
mod finishing;
