//! The recovery path's state machine (issue 27): actions by state, what
//! each confirmation says, the passphrase asked in place, quit and cancel
//! while an action runs, results that replace each other.

use super::*;
use crate::engine::items::{ItemState, ItemView, SourceState};
use crate::engine::types::{Counts, Report};

const NOW: i64 = 1_795_394_712_000;

fn item(name: &str, action: &str, state: ItemState, source: SourceState) -> ItemView {
    ItemView {
        id: CredentialId::new("env", name),
        action: serde_json::from_value(serde_json::Value::String(action.into())).unwrap(),
        state,
        reason: (state == ItemState::Failed).then(|| format!("{name}: the store said no")),
        source,
        batch: None,
    }
}

fn detail(status: MigrationStatus, items: Vec<ItemView>) -> Detail {
    Detail {
        entry: HistoryEntry {
            id: MigrationId("m1".into()),
            started_at: "2026-11-23T00:45:12Z".into(),
            from: "dotenv:/home/u/src.env".into(),
            to: "dotenv:/home/u/dst.env".into(),
            status,
            copied: 0,
            failed: 0,
        },
        timeline: vec![],
        backup: Some("/state/m1/backup.enc".into()),
        items,
        needs_passphrase: false,
        rollback_began: false,
        cleanup_interrupted: false,
        delete_source: false,
        on_conflict: ConflictPolicy::Skip,
    }
}

fn interrupted() -> Detail {
    use ItemState::*;
    use SourceState::Kept;
    detail(
        MigrationStatus::Interrupted,
        vec![
            item("A", "copy", Verified, Kept),
            item("B", "copy", Written, Kept),
            item("C", "copy", Planned, Kept),
            item("D", "overwrite", Planned, Kept),
            item("E", "conflict", Conflict, Kept),
        ],
    )
}

fn completed_with_cleanup() -> Detail {
    use ItemState::*;
    use SourceState::*;
    detail(
        MigrationStatus::Completed,
        vec![
            item("A", "copy", Verified, Deleted),
            item("B", "copy", Verified, Deleted),
            item("C", "skip_identical", Skipped, Kept),
        ],
    )
}

fn rolled_back() -> Detail {
    use ItemState::*;
    use SourceState::Kept;
    let mut d = detail(
        MigrationStatus::RolledBack,
        vec![
            item("A", "copy", RolledBack, Kept),
            item("B", "copy", Failed, Kept),
        ],
    );
    d.rollback_began = true;
    d
}

fn at_detail(d: Detail, passphrase_given: bool) -> Wizard {
    let (mut w, _) = Wizard::new(
        Config {
            recover: true,
            passphrase_given,
            ..Config::default()
        },
        NOW,
    );
    w.handle(Event::HistoryLoaded(vec![d.entry.clone()]));
    w.handle(Event::Enter);
    w.handle(Event::DetailLoaded(Box::new(d)));
    assert_eq!(w.step, Step::Detail);
    w
}

fn report(verified: usize, cancelled: bool, status: MigrationStatus) -> Report {
    Report {
        migration_id: MigrationId("m1".into()),
        from: "dotenv:/home/u/src.env".into(),
        to: "dotenv:/home/u/dst.env".into(),
        total: 5,
        copied: verified,
        skipped: 0,
        conflicts: 1,
        invalid: 0,
        failed: 0,
        rolled_back: status == MigrationStatus::RolledBack,
        rollback_reason: None,
        failures: vec![],
        backup: None,
        verified,
        source_deleted: 0,
        source_delete_failed: vec![],
        warnings: vec![],
        kept_changed: vec![],
        unreadable: 0,
        status: Some(status),
        cancelled,
        notices: vec![],
    }
}

#[test]
fn each_state_offers_only_the_actions_that_fit() {
    use RecoveryAction::*;
    assert_eq!(interrupted().actions(), [Resume, Rollback, Verify]);
    assert_eq!(
        completed_with_cleanup().actions(),
        [Rollback, Verify, Restore]
    );
    assert_eq!(rolled_back().actions(), Vec::<RecoveryAction>::new());
    // A completed migration without cleanup: no resume, no restore.
    let mut d = completed_with_cleanup();
    for i in &mut d.items {
        i.source = SourceState::Kept;
    }
    assert_eq!(d.actions(), [Rollback, Verify]);
}

#[test]
fn an_action_that_does_not_fit_is_refused_with_the_reason_before_any_confirmation() {
    let mut w = at_detail(completed_with_cleanup(), true);
    assert!(w.handle(Event::Recovery(RecoveryAction::Resume)).is_empty());
    assert!(w.confirm.is_none());
    let e = w.error.clone().unwrap();
    assert!(e.contains("interrupted") && e.contains("completed"), "{e}");
    let mut w = at_detail(rolled_back(), true);
    for a in [
        RecoveryAction::Resume,
        RecoveryAction::Rollback,
        RecoveryAction::Verify,
        RecoveryAction::Restore,
    ] {
        w.handle(Event::Recovery(a));
        assert!(
            w.confirm.is_none(),
            "{a:?} confirmed on a rolled-back migration"
        );
    }
}

#[test]
fn confirmations_name_the_store_the_count_what_is_replaced_and_the_journal() {
    let d = interrupted();
    let resume = d.confirm_text(RecoveryAction::Resume).join(" ");
    assert!(
        resume.contains("Write the 3 items not yet verified"),
        "{resume}"
    );
    assert!(
        resume.contains("dst.env (dotenv store at dotenv:/home/u/dst.env)"),
        "{resume}"
    );
    assert!(resume.contains("never replaced"), "{resume}");
    assert!(resume.contains("Journaled"), "{resume}");
    let mut over = interrupted();
    over.on_conflict = ConflictPolicy::Overwrite;
    let text = over.confirm_text(RecoveryAction::Resume).join(" ");
    assert!(text.contains("replaces 1 value at the target"), "{text}");
    let rollback = d.confirm_text(RecoveryAction::Rollback).join(" ");
    assert!(rollback.contains("Remove the 2 items"), "{rollback}");
    let restore = completed_with_cleanup()
        .confirm_text(RecoveryAction::Restore)
        .join(" ");
    assert!(restore.contains("into src.env (dotenv store"), "{restore}");
    assert!(restore.contains("the 2 items cleanup deleted"), "{restore}");
    assert!(restore.contains("not overwritten"), "{restore}");
    assert!(restore.contains("can be rolled back"), "{restore}");
}

/// Issue 27, point 2: Restore is planned against the source first (an
/// effect for the worker), and its confirmation then names what the dry
/// run found: how many it writes, how many it skips, each conflict by id.
#[test]
fn restore_asks_after_its_dry_run_naming_what_it_writes_and_skips() {
    let mut w = at_detail(completed_with_cleanup(), true);
    let d = w.recovery.detail.as_ref().unwrap();
    let (id, backup, from) = (d.entry.id.clone(), d.backup.clone(), d.entry.from.clone());
    let fx = w.handle(Event::Recovery(RecoveryAction::Restore));
    // The effect carries what the detail on screen holds: the worker reads
    // no journal for it.
    assert!(
        matches!(fx.as_slice(), [Effect::PreviewRestore { id: i, backup: b, source }]
            if *i == id && Some(b) == backup.as_ref() && source.to_string() == from),
        "{fx:?}"
    );
    assert!(w.confirm.is_none(), "no confirmation before the dry run");
    let changed: CredentialId = "env/BETA_KEY".parse().unwrap();
    w.handle(Event::RestorePreviewed(Box::new(RestorePreview {
        id: id.clone(),
        write: 1,
        identical: 0,
        conflicts: vec![changed],
    })));
    assert!(matches!(
        w.confirm,
        Some(Confirm::Recovery {
            action: RecoveryAction::Restore,
            ..
        })
    ));
    let text = w
        .recovery
        .detail
        .as_ref()
        .unwrap()
        .confirm_text_with(RecoveryAction::Restore, w.recovery.restore_preview.as_ref())
        .join(" ");
    assert!(text.contains("Write 1 item from the backup"), "{text}");
    assert!(
        text.contains("1 changed since the backup: skipped, not overwritten: env/BETA_KEY"),
        "{text}"
    );
    // Asked again after the result: planned again.
    w.handle(Event::RecoveryFinished(Box::new(report(
        0,
        false,
        MigrationStatus::Completed,
    ))));
    assert!(w.recovery.restore_preview.is_none());
}

#[test]
fn the_passphrase_is_asked_in_place_once_then_the_confirmation() {
    let mut d = interrupted();
    d.needs_passphrase = true;
    let mut w = at_detail(d, false);
    assert!(w.handle(Event::Recovery(RecoveryAction::Verify)).is_empty());
    assert_eq!(w.step, Step::Passphrase);
    assert_eq!(w.passphrase.mode, PassphraseMode::Unlock);
    // Esc goes back to the migration, nothing asked.
    w.handle(Event::Back);
    assert_eq!(w.step, Step::Detail);
    assert!(w.confirm.is_none());
    w.handle(Event::Recovery(RecoveryAction::Verify));
    let fx = w.handle(Event::PassphraseSubmitted {
        passphrase: Secret::new("the one it ran with"),
        confirm: None,
    });
    assert!(
        matches!(fx.as_slice(), [Effect::UsePassphrase(_)]),
        "{fx:?}"
    );
    assert_eq!(w.step, Step::Detail);
    assert!(matches!(
        w.confirm,
        Some(Confirm::Recovery {
            action: RecoveryAction::Verify,
            ..
        })
    ));
    w.handle(Event::No);
    // Once per session: the next action goes straight to its confirmation.
    w.handle(Event::Recovery(RecoveryAction::Resume));
    assert_eq!(w.step, Step::Detail);
    assert!(w.confirm.is_some());
}

#[test]
fn quit_during_a_running_resume_asks_then_cancels_and_exits_with_what_was_done() {
    let mut w = at_detail(interrupted(), true);
    w.handle(Event::Recovery(RecoveryAction::Resume));
    let fx = w.handle(Event::Yes);
    assert!(matches!(
        fx.as_slice(),
        [Effect::Recover {
            action: RecoveryAction::Resume,
            ..
        }]
    ));
    assert!(w.recovering());
    w.handle(Event::Progress(vec![
        Progress::ItemVerified {
            id: CredentialId::new("env", "B"),
        },
        Progress::Counts(Counts {
            total: 3,
            done: 1,
            written: 1,
            ..Counts::default()
        }),
    ]));
    assert_eq!(w.recovery.progress.verified, 1);
    // q asks first; no exit, no cancel yet.
    assert!(w.handle(Event::Quit).is_empty());
    assert!(matches!(
        w.confirm,
        Some(Confirm::QuitWhileRecovering {
            action: RecoveryAction::Resume
        })
    ));
    w.handle(Event::No);
    assert!(w.recovering(), "no keeps it running");
    w.handle(Event::Quit);
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::CancelMigration]), "{fx:?}");
    // The exit waits for the report, and the report says what was done.
    let fx = w.handle(Event::RecoveryFinished(Box::new(report(
        2,
        true,
        MigrationStatus::Interrupted,
    ))));
    assert!(
        matches!(fx.as_slice(), [Effect::Exit(Outcome::Failed)]),
        "{fx:?}"
    );
    let said = w.recovery.done_log.join("\n");
    assert!(said.contains("cancelled after the batch at hand"), "{said}");
    assert!(said.contains("2 items now verified"), "{said}");
    assert!(!said.contains("nothing"), "{said}");
}

#[test]
fn ctrl_c_and_sigterm_during_a_rollback_cancel_it_too() {
    let mut w = at_detail(interrupted(), true);
    w.handle(Event::Recovery(RecoveryAction::Rollback));
    w.handle(Event::Yes);
    let fx = w.handle(Event::Terminate);
    assert!(matches!(fx.as_slice(), [Effect::CancelMigration]), "{fx:?}");
    assert!(w.handle(Event::Terminate).is_empty(), "one cancel");
    let fx = w.handle(Event::Failed {
        task: Task::Recovery,
        error: TaskError::NoThread("the target went away".into()),
    });
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::Failed)]));
}

#[test]
fn a_result_replaces_the_previous_result_and_error() {
    let mut w = at_detail(interrupted(), true);
    w.handle(Event::Recovery(RecoveryAction::Verify));
    w.handle(Event::Yes);
    w.handle(Event::Failed {
        task: Task::Recovery,
        error: TaskError::NoThread("migration m1 was rolled back".into()),
    });
    assert!(w.error.is_some());
    w.handle(Event::DetailLoaded(Box::new(interrupted())));
    w.handle(Event::Recovery(RecoveryAction::Resume));
    w.handle(Event::Yes);
    assert!(w.error.is_none(), "starting an action clears the old error");
    w.handle(Event::RecoveryFinished(Box::new(report(
        4,
        false,
        MigrationStatus::Completed,
    ))));
    assert!(w.error.is_none());
    let (a, r) = w.recovery.result.clone().unwrap();
    assert_eq!(a, RecoveryAction::Resume);
    assert_eq!(r.verified, 4);
}

#[test]
fn the_items_pane_filters_by_id_state_or_reason() {
    let mut w = at_detail(interrupted(), true);
    w.handle(Event::SwitchPick);
    assert_eq!(w.recovery.pane, Pane::Items);
    w.handle(Event::FilterStart);
    assert!(w.text_input());
    for c in "planned".chars() {
        w.handle(Event::FilterChar(c));
    }
    w.handle(Event::Enter);
    let ids: Vec<String> = w.visible_item_ids().iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, ["env/C", "env/D"]);
    // q is a key again once the filter is kept.
    assert!(!w.text_input());
}

#[test]
fn only_items_at_the_target_can_be_chosen_for_a_partial_rollback() {
    let mut w = at_detail(interrupted(), true);
    w.handle(Event::SwitchPick);
    // A (verified) can be chosen; C (planned) cannot, with the reason.
    w.handle(Event::Toggle);
    assert_eq!(w.recovery.chosen.len(), 1);
    w.handle(Event::Down);
    w.handle(Event::Down);
    w.handle(Event::Toggle);
    assert_eq!(w.recovery.chosen.len(), 1);
    assert!(w.error.as_deref().unwrap().contains("env/C is planned"));
    w.handle(Event::Recovery(RecoveryAction::Rollback));
    assert!(matches!(
        w.confirm,
        Some(Confirm::RollbackChosen { count: 1, .. })
    ));
    let fx = w.handle(Event::Yes);
    assert!(
        matches!(fx.as_slice(), [Effect::RollbackItems { items, .. }] if items.len() == 1),
        "{fx:?}"
    );
}

/// A wrong passphrase (the engine proves it on the backup) brings the
/// passphrase screen back with the reason, for the same action; nothing
/// claims the values differ.
#[test]
fn a_wrong_passphrase_is_asked_again_in_place() {
    let mut d = interrupted();
    d.needs_passphrase = true;
    let mut w = at_detail(d, false);
    w.handle(Event::Recovery(RecoveryAction::Verify));
    w.handle(Event::PassphraseSubmitted {
        passphrase: Secret::new("a typo"),
        confirm: None,
    });
    w.handle(Event::Yes);
    assert!(w.recovering());
    w.handle(Event::PassphraseRejected {
        message: "the passphrase given does not open migration m1's backup".into(),
    });
    assert_eq!(w.step, Step::Passphrase);
    assert!(!w.recovering());
    assert!(
        w.passphrase
            .error
            .as_deref()
            .unwrap()
            .contains("does not open")
    );
    assert!(w.recovery.result.is_none());
    w.handle(Event::PassphraseSubmitted {
        passphrase: Secret::new("the right one"),
        confirm: None,
    });
    assert!(matches!(
        w.confirm,
        Some(Confirm::Recovery {
            action: RecoveryAction::Verify,
            ..
        })
    ));
}

/// A stopped cleanup: resume deletes from the source and writes nothing,
/// so its confirmation says that, names the source and the count, and says
/// how to keep the source (audit10 M1).
#[test]
fn resuming_a_stopped_cleanup_says_it_deletes_from_the_source() {
    use ItemState::*;
    use SourceState::*;
    let mut d = detail(
        MigrationStatus::Interrupted,
        vec![
            item("A", "copy", Verified, Deleted),
            item("B", "copy", Verified, Kept),
            item("C", "copy", Verified, DeleteFailed),
            item("D", "skip_identical", Skipped, Kept),
            item("E", "conflict", Conflict, Kept),
        ],
    );
    d.cleanup_interrupted = true;
    assert_eq!(d.refusal(RecoveryAction::Resume), None);
    let text = d.confirm_text(RecoveryAction::Resume).join(" ");
    assert!(
        text.contains(
            "delete the 3 remaining verified items from the source, src.env (dotenv store"
        ),
        "{text}"
    );
    assert!(text.contains("nothing is written to dst.env"), "{text}");
    assert!(text.contains("To keep the source as it is, answer no"), "{text}");
    assert!(!text.contains("Write the"), "{text}");
    // An interrupted migration asked to delete: its resume says it will.
    let mut d = interrupted();
    assert!(!d.confirm_text(RecoveryAction::Resume).join(" ").contains("delete"));
    d.delete_source = true;
    let text = d.confirm_text(RecoveryAction::Resume).join(" ");
    assert!(
        text.contains("delete the verified items from the source, src.env (dotenv store"),
        "{text}"
    );
}
