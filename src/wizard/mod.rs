//! The wizard's pure state machine. It holds what the screens show, takes
//! [`Event`]s (keys already mapped to intents, and results from the engine)
//! and returns [`Effect`]s as data for the TUI's worker to run. No I/O, no
//! clock, no terminal: tests feed events and look at the state and effects.
//!
//! Destructive effects (start, cleanup, rollback, restore, resume) are only
//! emitted after an explicit consent or confirmation event.

use std::path::PathBuf;
use std::sync::Arc;

use crate::credential::{CredentialId, Secret};
use crate::engine::EngineError;
use crate::engine::types::{
    ConflictPolicy, HistoryEntry, Inventory, MigrationId, MigrationStatus, Plan, PlanItem, Progress,
    Report, StoreReport,
};
use crate::error::StoreError;
use crate::store::StoreSpec;

mod assess;
mod cleanup;
mod consent;
mod done;
mod dryrun;
mod execute;
mod inventory;
mod passphrase;
mod recovery;
#[cfg(test)]
mod recovery_tests;
mod rekey;
#[cfg(test)]
mod tests;
mod verify;

pub use assess::{AssessState, Pick};
pub use cleanup::CleanupState;
pub use dryrun::DryRunState;
pub use execute::{ItemOutcome, LOG_TAIL, LogLine, PlanIndex, RunState};
pub use inventory::{InventoryState, REVEAL_MS, Revealed};
pub use passphrase::{MIN_PASSPHRASE, PassphraseMode, PassphraseState, Strength, strength};
pub use recovery::{
    Detail, ItemCounts, Pane, RecoveryAction, RecoveryProgress, RecoveryState, RestorePreview,
    TimelineRow, result_line, status_text, store_name,
};
pub use rekey::{KeyChoice, NewKeySource, RekeyFlow};
pub use verify::VerifyState;

/// The product rule (more than this share of failed items rolls back) is
/// the engine's; the wizard only shows it.
pub use crate::engine::ROLLBACK_THRESHOLD;
/// Rows a page key moves.
pub const PAGE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Assess,
    Consent,
    Inventory,
    DryRun,
    Passphrase,
    Execute,
    Verify,
    Cleanup,
    Done,
    History,
    Detail,
    RekeyConsent,
    RekeyDryRun,
    RekeyKey,
    RekeyRun,
    RekeyVerify,
    RekeyDone,
}

impl Step {
    pub fn title(self) -> &'static str {
        match self {
            Step::Assess => "Stores",
            Step::Consent => "Consent",
            Step::Inventory => "Inventory",
            Step::DryRun => "Dry run",
            Step::Passphrase => "Passphrase",
            Step::Execute => "Migrating",
            Step::Verify => "Verify",
            Step::Cleanup => "Cleanup",
            Step::Done => "Done",
            Step::History => "Recovery: history",
            Step::Detail => "Recovery: migration",
            Step::RekeyConsent => "Rekey: consent",
            Step::RekeyDryRun => "Rekey: dry run",
            Step::RekeyKey => "Rekey: new key",
            Step::RekeyRun => "Rekeying",
            Step::RekeyVerify => "Rekey: verify",
            Step::RekeyDone => "Rekey: done",
        }
    }

    /// Position in the migration path (1-based) for the header, if on it.
    pub fn number(self) -> Option<usize> {
        const PATH: [Step; 8] = [
            Step::Assess,
            Step::Consent,
            Step::Inventory,
            Step::DryRun,
            Step::Execute,
            Step::Verify,
            Step::Cleanup,
            Step::Done,
        ];
        PATH.iter().position(|s| *s == self).map(|i| i + 1)
    }

    /// Position in the rekey path (1-based) for the header, if on it.
    pub fn rekey_number(self) -> Option<usize> {
        const PATH: [Step; 6] = [
            Step::RekeyConsent,
            Step::RekeyDryRun,
            Step::RekeyKey,
            Step::RekeyRun,
            Step::RekeyVerify,
            Step::RekeyDone,
        ];
        PATH.iter().position(|s| *s == self).map(|i| i + 1)
    }
}

/// A question that must be answered before anything happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Quit while a migration runs: cancels and rolls back first.
    QuitWhileRunning,
    /// Quit while a recovery action runs: it stops after the batch at hand.
    QuitWhileRecovering { action: RecoveryAction },
    /// Quit while the migration's read-back (`Step::Verify`) or cleanup
    /// (`Step::Cleanup`) runs: it stops after the batch at hand.
    QuitWhileFinishing { step: Step },
    /// Delete verified items from the source.
    DeleteSource { count: usize },
    Recovery {
        action: RecoveryAction,
        id: MigrationId,
    },
    /// Roll back only the items chosen in the item view.
    RollbackChosen { id: MigrationId, count: usize },
    /// Cancel a running rekey: it stops after the batch at hand and puts
    /// the old ciphertexts back.
    CancelRekey,
    /// Quit while a rekey runs: cancels it (as above) first.
    QuitWhileRekeying,
}

/// How the wizard ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    RolledBack,
    Failed,
    /// Consent deferred: nothing changed.
    Deferred,
    /// Quit before anything changed (or after the end screen).
    Quit,
}

/// Where a task ran, so an error lands on the right screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Assess,
    Inventory,
    Plan,
    Reveal,
    Migrate,
    Verify,
    Cleanup,
    History,
    Detail,
    Recovery,
    /// The rekey's dry run.
    RekeyPlan,
    /// Taking the new key (reading or writing its file): nothing written.
    RekeyKey,
    /// The rekey itself.
    Rekey,
    RekeyVerify,
}

/// Why a background task ended without its result: the engine's typed
/// error as it was raised (a screen shows its message), or what went
/// wrong around it on the worker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Engine(Arc<EngineError>),
    #[error("could not start a worker thread: {0}")]
    NoThread(String),
    #[error("a store probe panicked")]
    ProbePanicked,
    /// The dry run on screen is not the one the worker holds.
    #[error("the plan on screen is no longer the latest one; go back and plan again")]
    StalePlan,
    /// The rows handed back at the start are not the ones planned.
    #[error("the plan rows to run are not the ones planned; go back and plan again")]
    PlanRowsChanged,
    #[error("{id}: no longer in {from}")]
    Gone { id: CredentialId, from: StoreSpec },
}

impl From<EngineError> for TaskError {
    fn from(e: EngineError) -> Self {
        TaskError::Engine(Arc::new(e))
    }
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        EngineError::from(e).into()
    }
}

/// Inputs: user intents (from the keymap) and engine results (from the worker).
#[derive(Debug, Clone)]
pub enum Event {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Advance, or accept the default.
    Enter,
    /// Go back one screen (also closes dialogs and the help).
    Back,
    /// `y`: consent, or yes in a dialog.
    Yes,
    /// `n`: no in a dialog.
    No,
    /// `d`: defer the consent.
    Defer,
    Quit,
    Help,
    /// Switch between choosing the source and the target.
    SwitchPick,
    Toggle,
    ToggleAll,
    FilterStart,
    FilterChar(char),
    FilterBackspace,
    Reveal,
    TogglePolicy,
    Cancel,
    OpenRecovery,
    Recovery(RecoveryAction),
    /// The passphrase fields were submitted (Enter in the last field).
    PassphraseSubmitted {
        passphrase: Secret,
        confirm: Option<Secret>,
    },
    /// A passphrase field changed: clears the inline error.
    PassphraseEdited,
    /// SIGTERM / SIGHUP: cancel a running migration (it rolls back), then exit.
    Terminate,
    /// The clock, in epoch milliseconds (fixed in tests).
    Tick {
        now_ms: i64,
    },

    Assessed(Vec<StoreReport>),
    InventoryLoaded(Box<Inventory>),
    PlanReady(Box<Plan>),
    MigrationStarted {
        id: MigrationId,
    },
    /// Progress events, coalesced: all that arrived since the last frame.
    Progress(Vec<Progress>),
    Verified(Box<Report>),
    CleanedUp(Box<Report>),
    HistoryLoaded(Vec<HistoryEntry>),
    DetailLoaded(Box<Detail>),
    /// The dry run of a restore, for its confirmation.
    RestorePreviewed(Box<recovery::RestorePreview>),
    RecoveryFinished(Box<Report>),
    /// The passphrase does not open the migration's backup: nothing ran.
    PassphraseRejected {
        message: String,
    },
    Revealed {
        id: CredentialId,
        secret: Secret,
    },
    Failed {
        task: Task,
        error: TaskError,
    },
    /// `r` on the Stores screen: rekey the store under the cursor.
    Rekey,
    RekeyPlanned(Box<crate::engine::rekey::RekeyPlan>),
    RekeyProgressed(crate::engine::rekey::RekeyProgress),
    RekeyFinished(Box<crate::engine::rekey::RekeyReport>),
    RekeyVerified(Box<crate::engine::rekey::RekeyReport>),
}

/// Outputs: work for the TUI's worker thread (or the end of the program).
#[derive(Debug, Clone)]
pub enum Effect {
    Assess {
        specs: Vec<StoreSpec>,
    },
    LoadInventory {
        from: StoreSpec,
    },
    Plan {
        from: StoreSpec,
        to: StoreSpec,
        policy: ConflictPolicy,
        selection: Vec<CredentialId>,
    },
    Reveal {
        from: StoreSpec,
        id: CredentialId,
    },
    /// Use this passphrase for the target and the backup from now on.
    UsePassphrase(Secret),
    /// Execute the plan shown on the dry-run screen (named by its token).
    /// Its rows travel back with it: the worker gave the screen the only
    /// copy of them (see `tui::worker`).
    StartMigration {
        from: StoreSpec,
        to: StoreSpec,
        policy: ConflictPolicy,
        selection: Vec<CredentialId>,
        plan_token: u64,
        plan_items: Vec<PlanItem>,
    },
    CancelMigration,
    Verify {
        id: MigrationId,
    },
    /// Delete the verified items of this migration from its source.
    Cleanup {
        id: MigrationId,
    },
    LoadHistory,
    LoadDetail {
        id: MigrationId,
    },
    Recover {
        action: RecoveryAction,
        id: MigrationId,
    },
    /// Plan a restore of this migration's backup into its source (a dry
    /// run), for the confirmation. The detail on screen already names both,
    /// so the worker does not read the journal again.
    PreviewRestore {
        id: MigrationId,
        backup: PathBuf,
        source: StoreSpec,
    },
    /// Roll back only these items of the migration (journaled as a
    /// partial rollback; the rest stays migrated).
    RollbackItems {
        id: MigrationId,
        items: Vec<CredentialId>,
    },
    /// The rekey's dry run (writes nothing).
    RekeyPlan {
        spec: StoreSpec,
    },
    /// Rekey the store under this new key (after consent and its dry run).
    StartRekey {
        spec: StoreSpec,
        key: NewKeySource,
    },
    /// Stop the running rekey after its batch at hand and roll it back.
    CancelRekey,
    RekeyVerify {
        id: MigrationId,
    },
    Exit(Outcome),
}

/// How the wizard was started.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Stores to probe: the default locations plus any given.
    pub candidates: Vec<StoreSpec>,
    pub from: Option<StoreSpec>,
    pub to: Option<StoreSpec>,
    /// A passphrase (or key file) came from the command line or environment.
    pub passphrase_given: bool,
    pub state_dir: PathBuf,
    /// Open the recovery path instead of a new migration.
    pub recover: bool,
}

#[derive(Debug, Clone)]
pub struct Wizard {
    pub config: Config,
    pub step: Step,
    pub now_ms: i64,
    /// What the current screen is waiting for ("Reading the source…").
    pub busy: Option<String>,
    /// The last error, shown on the current screen.
    pub error: Option<String>,
    pub help: bool,
    pub confirm: Option<Confirm>,

    pub outcome: Option<Outcome>,

    /// One sub-state per step, each defined (with its handler) in the
    /// step's module.
    pub assess: AssessState,
    pub inventory: InventoryState,
    pub dry_run: DryRunState,
    pub passphrase: PassphraseState,
    pub run: RunState,
    pub verify: VerifyState,
    pub cleanup: CleanupState,
    pub recovery: RecoveryState,
    pub rekey: RekeyFlow,
}

impl Wizard {
    /// A new wizard and the effects that start it.
    pub fn new(config: Config, now_ms: i64) -> (Self, Vec<Effect>) {
        let recover = config.recover;
        let specs = config.candidates.clone();
        let w = Wizard {
            passphrase: PassphraseState {
                set: config.passphrase_given,
                ..PassphraseState::default()
            },
            config,
            step: if recover { Step::History } else { Step::Assess },
            now_ms,
            busy: Some(if recover {
                "Reading the history…".into()
            } else {
                "Probing the stores…".into()
            }),
            error: None,
            help: false,
            confirm: None,
            outcome: None,
            assess: AssessState::default(),
            inventory: InventoryState::default(),
            dry_run: DryRunState::default(),
            run: RunState::default(),
            verify: VerifyState::default(),
            cleanup: CleanupState::default(),
            recovery: RecoveryState::default(),
            rekey: RekeyFlow::default(),
        };
        let effects = if recover {
            vec![Effect::LoadHistory]
        } else {
            vec![Effect::Assess { specs }, Effect::LoadHistory]
        };
        (w, effects)
    }

    pub fn source_spec(&self) -> Option<&StoreSpec> {
        self.assess
            .source
            .and_then(|i| self.assess.stores.get(i))
            .map(|r| &r.spec)
    }

    pub fn target_spec(&self) -> Option<&StoreSpec> {
        self.assess
            .target
            .and_then(|i| self.assess.stores.get(i))
            .map(|r| &r.spec)
    }

    pub fn source_report(&self) -> Option<&StoreReport> {
        self.assess.source.and_then(|i| self.assess.stores.get(i))
    }

    pub fn target_report(&self) -> Option<&StoreReport> {
        self.assess.target.and_then(|i| self.assess.stores.get(i))
    }

    /// Whether a migration is running (quitting must ask first).
    pub fn running(&self) -> bool {
        self.step == Step::Execute && self.run.report.is_none()
    }

    /// Whether the migration's read-back or its cleanup runs (the steps
    /// after the run, each an engine job of its own).
    pub fn finishing(&self) -> bool {
        matches!(self.step, Step::Verify | Step::Cleanup) && self.busy.is_some()
    }

    /// Cancel the read-back or cleanup that runs (it stops after the batch
    /// at hand); with `quit`, exit once it has.
    fn cancel_finishing(&mut self, quit: bool) -> Vec<Effect> {
        self.run.quit_after |= quit;
        if self.run.cancel_requested {
            return vec![];
        }
        self.run.cancel_requested = true;
        vec![Effect::CancelMigration]
    }

    /// After a read-back or cleanup (its report or its error): a quit
    /// dialog about it is moot, and the exit asked for while it ran is
    /// honoured, once (a leftover flag would end a later step early).
    fn exit_if_asked(&mut self) -> Vec<Effect> {
        if matches!(self.confirm, Some(Confirm::QuitWhileFinishing { .. })) {
            self.confirm = None;
        }
        if !std::mem::take(&mut self.run.quit_after) {
            return vec![];
        }
        vec![Effect::Exit(self.finishing_outcome())]
    }

    /// How a quit during or after the read-back or cleanup ends: the end
    /// screen's outcome when there is one (after cleanup), else the run's.
    fn finishing_outcome(&self) -> Outcome {
        let failed = self.run.report.as_ref().is_some_and(|r| r.failed > 0);
        self.outcome.unwrap_or(if failed {
            Outcome::Failed
        } else {
            Outcome::Completed
        })
    }

    /// The cleanup was stopped (`c`, `q` or Ctrl-C) before it deleted
    /// everything: the migration stays interrupted until resumed.
    pub fn cleanup_stopped(&self) -> bool {
        self.cleanup.report.as_ref().is_some_and(|r| r.cancelled)
    }

    /// The exit's line for a stopped cleanup: what it deleted, that the
    /// rest stays in the source, and how to finish it.
    pub fn stopped_cleanup_summary(&self) -> Option<String> {
        let c = self.cleanup.report.as_ref().filter(|r| r.cancelled)?;
        let id = &c.migration_id;
        Some(format!(
            "Cleanup stopped: {} deleted from the source, the rest stays there (migration \
             {id}); finish it with `credshift resume --migration-id {id}`.",
            c.source_deleted
        ))
    }

    /// Whether a recovery action (resume, rollback, verify, restore) runs.
    pub fn recovering(&self) -> bool {
        self.recovery.running.is_some()
    }

    /// Whether keys go to a text field instead of the keymap's commands.
    pub fn text_input(&self) -> bool {
        (self.step == Step::Passphrase
            || (self.step == Step::RekeyKey && self.rekey.editing)
            || (self.step == Step::Inventory && self.inventory.editing)
            || (self.step == Step::Detail && self.recovery.filtering))
            && self.confirm.is_none()
            && !self.help
    }

    /// Interrupted migrations the history knows of (offered on the first screen).
    pub fn interrupted(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.recovery
            .history
            .iter()
            .filter(|h| h.status == MigrationStatus::Interrupted)
    }

    /// Whether the target is kept under credshift's passphrase and none was
    /// given. (The backup needs none: without a passphrase the engine
    /// protects it with a generated key file beside it.)
    fn needs_passphrase(&self) -> bool {
        !self.passphrase.set && self.target_spec().is_some_and(StoreSpec::under_passphrase)
    }

    fn target_exists(&self) -> bool {
        self.target_report().is_some_and(|r| r.capability.exists)
    }

    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        // Engine results and the clock are handled on any screen.
        match event {
            Event::Tick { now_ms } => {
                self.now_ms = now_ms;
                if self
                    .inventory
                    .revealed
                    .as_ref()
                    .is_some_and(|r| now_ms >= r.until_ms)
                {
                    self.inventory.revealed = None;
                }
                return vec![];
            }
            Event::Assessed(reports) => return self.on_assessed(reports),
            Event::InventoryLoaded(inv) => return self.on_inventory(*inv),
            Event::PlanReady(plan) => {
                if self.step == Step::DryRun {
                    self.busy = None;
                    self.dry_run.cursor = 0;
                    self.dry_run.plan = Some(*plan);
                }
                return vec![];
            }
            Event::MigrationStarted { id } => {
                self.run.id = Some(id);
                return vec![];
            }
            Event::Progress(batch) if self.recovering() => {
                return self.on_recovery_progress(batch);
            }
            Event::Progress(batch) => return self.on_progress(batch),
            Event::Verified(report) => {
                self.busy = None;
                self.verify.report = Some(*report);
                return self.exit_if_asked();
            }
            Event::CleanedUp(report) => {
                self.busy = None;
                // A stopped cleanup leaves the migration interrupted: it
                // ends as a cancelled `resume` does (exit 1), not complete.
                let outcome = if report.cancelled {
                    Outcome::Failed
                } else {
                    Outcome::Completed
                };
                self.cleanup.report = Some(*report);
                self.finish(outcome);
                return self.exit_if_asked();
            }
            Event::HistoryLoaded(entries) => {
                if self.step == Step::History {
                    self.busy = None;
                }
                self.recovery.history = entries;
                self.recovery.cursor = self
                    .recovery
                    .cursor
                    .min(self.recovery.history.len().saturating_sub(1));
                return vec![];
            }
            Event::DetailLoaded(detail) => {
                self.busy = None;
                self.recovery.detail = Some(*detail);
                if self.step == Step::History {
                    self.step = Step::Detail;
                }
                return vec![];
            }
            Event::RecoveryFinished(report) => return self.on_recovery_finished(*report),
            Event::RestorePreviewed(p) => return self.on_restore_previewed(*p),
            Event::PassphraseRejected { message } => return self.on_passphrase_rejected(message),
            Event::Revealed { id, secret } => {
                if self.step == Step::Inventory && self.current_item_id().as_ref() == Some(&id) {
                    self.inventory.revealed = Some(Revealed {
                        id,
                        secret,
                        until_ms: self.now_ms + REVEAL_MS,
                    });
                }
                return vec![];
            }
            Event::Failed { task, error } => return self.on_failed(task, error),
            Event::RekeyPlanned(plan) => {
                if self.step == Step::RekeyDryRun {
                    self.busy = None;
                    self.rekey.plan = Some(*plan);
                }
                return vec![];
            }
            Event::RekeyProgressed(p) => return self.on_rekey_progress(p),
            Event::RekeyFinished(r) => return self.on_rekey_finished(*r),
            Event::RekeyVerified(r) => return self.on_rekey_verified(*r),
            Event::Terminate if self.rekeying() => {
                self.confirm = None;
                return self.cancel_rekey(true);
            }
            Event::Terminate => {
                if self.finishing() {
                    self.confirm = None;
                    return self.cancel_finishing(true);
                }
                if self.recovering() {
                    self.confirm = None;
                    return self.cancel_recovery_and_quit();
                }
                if self.running() {
                    self.confirm = None;
                    self.run.quit_after = true;
                    if !self.run.cancel_requested {
                        self.run.cancel_requested = true;
                        return vec![Effect::CancelMigration];
                    }
                    return vec![];
                }
                return vec![Effect::Exit(self.outcome.unwrap_or(Outcome::Quit))];
            }
            _ => {}
        }

        if self.help {
            // Any key closes the help; q still quits from there.
            self.help = false;
            return if matches!(event, Event::Quit) {
                self.handle(Event::Quit)
            } else {
                vec![]
            };
        }
        if let Some(c) = self.confirm.clone() {
            return self.on_confirm(c, event);
        }
        match event {
            Event::Help => {
                self.help = true;
                return vec![];
            }
            Event::Quit if !self.text_input() => return self.quit(),
            Event::OpenRecovery if matches!(self.step, Step::Assess | Step::Consent) => {
                self.step = Step::History;
                self.busy = Some("Reading the history…".into());
                return vec![Effect::LoadHistory];
            }
            _ => {}
        }
        match self.step {
            Step::Assess if matches!(event, Event::Rekey) && self.busy.is_none() => {
                self.start_rekey_flow()
            }
            Step::Assess => self.on_assess(event),
            Step::Consent => self.on_consent(event),
            Step::Inventory => self.on_inventory_key(event),
            Step::DryRun => self.on_dry_run(event),
            Step::Passphrase => self.on_passphrase(event),
            Step::Execute => self.on_execute(event),
            Step::Verify => self.on_verify(event),
            Step::Cleanup => self.on_cleanup(event),
            Step::Done => self.on_done(event),
            Step::History => self.on_history(event),
            Step::Detail => self.on_detail(event),
            Step::RekeyConsent => self.on_rekey_consent(event),
            Step::RekeyDryRun => self.on_rekey_dry_run(event),
            Step::RekeyKey => self.on_rekey_key(event),
            Step::RekeyRun => self.on_rekey_run(event),
            Step::RekeyVerify => self.on_rekey_verify(event),
            Step::RekeyDone => self.on_rekey_done(event),
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        if let Some(action) = self.recovery.running {
            self.confirm = Some(Confirm::QuitWhileRecovering { action });
            return vec![];
        }
        if self.running() {
            self.confirm = Some(Confirm::QuitWhileRunning);
            return vec![];
        }
        if self.finishing() {
            self.confirm = Some(Confirm::QuitWhileFinishing { step: self.step });
            return vec![];
        }
        if self.rekeying() {
            self.confirm = Some(Confirm::QuitWhileRekeying);
            return vec![];
        }
        let outcome = self.outcome.unwrap_or(Outcome::Quit);
        vec![Effect::Exit(outcome)]
    }

    fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        self.step = Step::Done;
    }

    fn on_confirm(&mut self, c: Confirm, event: Event) -> Vec<Effect> {
        match event {
            Event::Yes => {
                self.confirm = None;
                match c {
                    Confirm::QuitWhileRunning => {
                        self.run.quit_after = true;
                        self.run.cancel_requested = true;
                        vec![Effect::CancelMigration]
                    }
                    Confirm::DeleteSource { .. } => match self.run.id.clone() {
                        Some(id) => {
                            self.busy = Some("Deleting verified items from the source…".into());
                            self.run.cancel_requested = false;
                            vec![Effect::Cleanup { id }]
                        }
                        None => vec![],
                    },
                    Confirm::QuitWhileRecovering { .. } => self.cancel_recovery_and_quit(),
                    // The job ended while the dialog was open: nothing to
                    // cancel, so quit now.
                    Confirm::QuitWhileFinishing { .. } if !self.finishing() => {
                        vec![Effect::Exit(self.finishing_outcome())]
                    }
                    Confirm::QuitWhileFinishing { .. } => self.cancel_finishing(true),
                    Confirm::Recovery { action, .. } => self.start_recovery(action),
                    Confirm::RollbackChosen { .. } => self.start_partial_rollback(),
                    Confirm::CancelRekey => self.cancel_rekey(false),
                    Confirm::QuitWhileRekeying => self.cancel_rekey(true),
                }
            }
            Event::No | Event::Back | Event::Quit => {
                self.confirm = None;
                vec![]
            }
            _ => vec![],
        }
    }

    fn on_failed(&mut self, task: Task, error: TaskError) -> Vec<Effect> {
        if matches!(
            task,
            Task::RekeyPlan | Task::RekeyKey | Task::Rekey | Task::RekeyVerify
        ) {
            return self.on_rekey_failed(task, error);
        }
        self.busy = None;
        let message = error.to_string();
        match task {
            // The engine stopped without a report: before writing (lock
            // held, backup failed, the stores changed since the plan) or
            // after (see `failure_summary`).
            Task::Migrate if self.step == Step::Execute && self.run.report.is_none() => {
                self.run.log.push_back(LogLine::Fail(message.clone()));
                self.error = Some(message);
                self.finish(Outcome::Failed);
                return if self.run.quit_after {
                    vec![Effect::Exit(Outcome::Failed)]
                } else {
                    vec![]
                };
            }
            // A quit or Ctrl-C asked while it ran still exits.
            Task::Verify | Task::Cleanup => {
                self.error = Some(message);
                return if self.exit_if_asked().is_empty() {
                    vec![]
                } else {
                    vec![Effect::Exit(Outcome::Failed)]
                };
            }
            Task::Reveal => {
                self.inventory.revealed = None;
            }
            Task::Recovery => return self.on_recovery_failed(message),
            Task::History if self.step != Step::History => {
                // The first screen only uses the history for a hint.
                return vec![];
            }
            _ => {}
        }
        self.error = Some(message);
        vec![]
    }

    fn move_cursor(cursor: &mut usize, n: usize, event: &Event) -> bool {
        let last = n.saturating_sub(1);
        let new = match event {
            Event::Up => cursor.saturating_sub(1),
            Event::Down => (*cursor + 1).min(last),
            Event::PageUp => cursor.saturating_sub(PAGE),
            Event::PageDown => (*cursor + PAGE).min(last),
            Event::Home => 0,
            Event::End => last,
            _ => return false,
        };
        *cursor = new;
        true
    }
}
