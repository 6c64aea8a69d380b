//! The wizard's pure state machine. It holds what the screens show, takes
//! [`Event`]s (keys already mapped to intents, and results from the engine)
//! and returns [`Effect`]s as data for the TUI's worker to run. No I/O, no
//! clock, no terminal: tests feed events and look at the state and effects.
//!
//! Destructive effects (start, cleanup, rollback, restore, resume) are only
//! emitted after an explicit consent or confirmation event.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use crate::credential::{CredentialId, Secret};
use crate::engine::types::{
    ConflictPolicy, Counts, HistoryEntry, Inventory, ItemStatus, MigrationId, MigrationStatus,
    Plan, Progress, Report, StoreReport,
};
use crate::store::StoreSpec;

/// How long a revealed secret stays on screen.
pub const REVEAL_MS: i64 = 30_000;
/// Lines of the per-item log kept for the Execute screen.
pub const LOG_TAIL: usize = 200;
/// The product rule: more than this share of failed items rolls back.
pub const ROLLBACK_THRESHOLD: f64 = 0.5;
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
}

/// What the recovery screen can do to a past migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryAction {
    Resume,
    Rollback,
    Verify,
    Restore,
}

impl RecoveryAction {
    pub fn label(self) -> &'static str {
        match self {
            RecoveryAction::Resume => "resume",
            RecoveryAction::Rollback => "roll back",
            RecoveryAction::Verify => "verify",
            RecoveryAction::Restore => "restore the backup of",
        }
    }
}

/// A question that must be answered before anything happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Quit while a migration runs: cancels and rolls back first.
    QuitWhileRunning,
    /// Delete verified items from the source.
    DeleteSource { count: usize },
    Recovery {
        action: RecoveryAction,
        id: MigrationId,
    },
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

/// One past migration as the recovery detail screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub entry: HistoryEntry,
    pub timeline: Vec<TimelineEntry>,
    pub backup: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Already formatted (`2026-11-23 00:45:12`).
    pub at: String,
    pub what: String,
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
    RecoveryFinished(Box<Report>),
    Revealed {
        id: CredentialId,
        secret: Secret,
    },
    Failed {
        task: Task,
        message: String,
    },
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
    StartMigration {
        from: StoreSpec,
        to: StoreSpec,
        policy: ConflictPolicy,
        selection: Vec<CredentialId>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Source,
    Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseMode {
    /// A new target or backup: passphrase and confirmation.
    Create,
    /// An existing encrypted target: one field.
    Unlock,
}

/// Live state of the Execute screen.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub id: Option<MigrationId>,
    pub counts: Counts,
    pub log: VecDeque<LogLine>,
    pub backup: Option<PathBuf>,
    pub rolling_back: Option<String>,
    pub cancel_requested: bool,
    pub quit_after: bool,
    /// Per plan item, in plan order.
    pub outcomes: Vec<ItemOutcome>,
    /// Plan position by id, built once per run (progress lookups are O(1)).
    pub index: HashMap<CredentialId, usize>,
    pub report: Option<Report>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    Info(String),
    Ok(String),
    Skip(String),
    Fail(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ItemOutcome {
    #[default]
    Pending,
    Written,
    Verified,
    Skipped(String),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Revealed {
    pub id: CredentialId,
    pub secret: Secret,
    pub until_ms: i64,
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

    pub stores: Vec<StoreReport>,
    pub store_cursor: usize,
    pub pick: Pick,
    pub source: Option<usize>,
    pub target: Option<usize>,

    pub inventory: Option<Inventory>,
    pub selected: Vec<bool>,
    pub filter: String,
    pub filter_editing: bool,
    /// Indices into the inventory that match the filter.
    pub visible: Vec<usize>,
    pub item_cursor: usize,
    pub revealed: Option<Revealed>,

    pub policy: ConflictPolicy,
    pub plan: Option<Plan>,
    pub plan_cursor: usize,

    pub passphrase_mode: PassphraseMode,
    pub passphrase_error: Option<String>,
    pub passphrase_set: bool,
    /// The step the passphrase screen leads to.
    pub passphrase_next: Step,

    pub run: Run,
    pub verify_report: Option<Report>,
    pub result_cursor: usize,

    pub delete_source: bool,
    pub cleanup_report: Option<Report>,
    pub outcome: Option<Outcome>,

    pub history: Vec<HistoryEntry>,
    pub history_cursor: usize,
    pub detail: Option<Detail>,
    pub recovery_result: Option<Report>,
}

impl Wizard {
    /// A new wizard and the effects that start it.
    pub fn new(config: Config, now_ms: i64) -> (Self, Vec<Effect>) {
        let recover = config.recover;
        let specs = config.candidates.clone();
        let w = Wizard {
            passphrase_set: config.passphrase_given,
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
            stores: Vec::new(),
            store_cursor: 0,
            pick: Pick::Source,
            source: None,
            target: None,
            inventory: None,
            selected: Vec::new(),
            filter: String::new(),
            filter_editing: false,
            visible: Vec::new(),
            item_cursor: 0,
            revealed: None,
            policy: ConflictPolicy::Skip,
            plan: None,
            plan_cursor: 0,
            passphrase_mode: PassphraseMode::Create,
            passphrase_error: None,
            passphrase_next: Step::Execute,
            run: Run::default(),
            verify_report: None,
            result_cursor: 0,
            delete_source: false,
            cleanup_report: None,
            outcome: None,
            history: Vec::new(),
            history_cursor: 0,
            detail: None,
            recovery_result: None,
        };
        let effects = if recover {
            vec![Effect::LoadHistory]
        } else {
            vec![Effect::Assess { specs }, Effect::LoadHistory]
        };
        (w, effects)
    }

    pub fn source_spec(&self) -> Option<&StoreSpec> {
        self.source
            .and_then(|i| self.stores.get(i))
            .map(|r| &r.spec)
    }

    pub fn target_spec(&self) -> Option<&StoreSpec> {
        self.target
            .and_then(|i| self.stores.get(i))
            .map(|r| &r.spec)
    }

    pub fn source_report(&self) -> Option<&StoreReport> {
        self.source.and_then(|i| self.stores.get(i))
    }

    pub fn target_report(&self) -> Option<&StoreReport> {
        self.target.and_then(|i| self.stores.get(i))
    }

    /// Whether a migration is running (quitting must ask first).
    pub fn running(&self) -> bool {
        self.step == Step::Execute && self.run.report.is_none()
    }

    /// Whether keys go to a text field instead of the keymap's commands.
    pub fn text_input(&self) -> bool {
        (self.step == Step::Passphrase || (self.step == Step::Inventory && self.filter_editing))
            && self.confirm.is_none()
            && !self.help
    }

    pub fn selected_ids(&self) -> Vec<CredentialId> {
        match &self.inventory {
            Some(inv) => inv
                .items
                .iter()
                .zip(&self.selected)
                .filter(|(_, s)| **s)
                .map(|(i, _)| i.id.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn selected_count(&self) -> usize {
        self.selected.iter().filter(|s| **s).count()
    }

    /// Interrupted migrations the history knows of (offered on the first screen).
    pub fn interrupted(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.history
            .iter()
            .filter(|h| h.status == MigrationStatus::Interrupted)
    }

    /// Whether the target is kept under credshift's passphrase and none was
    /// given. (The backup needs none: without a passphrase the engine
    /// protects it with a generated key file beside it.)
    fn needs_passphrase(&self) -> bool {
        !self.passphrase_set && self.target_spec().is_some_and(spec_is_encrypted)
    }

    fn target_exists(&self) -> bool {
        self.target_report().is_some_and(|r| r.capability.exists)
    }

    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        // Engine results and the clock are handled on any screen.
        match event {
            Event::Tick { now_ms } => {
                self.now_ms = now_ms;
                if self.revealed.as_ref().is_some_and(|r| now_ms >= r.until_ms) {
                    self.revealed = None;
                }
                return vec![];
            }
            Event::Assessed(reports) => return self.on_assessed(reports),
            Event::InventoryLoaded(inv) => return self.on_inventory(*inv),
            Event::PlanReady(plan) => {
                if self.step == Step::DryRun {
                    self.busy = None;
                    self.plan_cursor = 0;
                    self.plan = Some(*plan);
                }
                return vec![];
            }
            Event::MigrationStarted { id } => {
                self.run.id = Some(id);
                return vec![];
            }
            Event::Progress(batch) => return self.on_progress(batch),
            Event::Verified(report) => {
                self.busy = None;
                self.verify_report = Some(*report);
                return vec![];
            }
            Event::CleanedUp(report) => {
                self.busy = None;
                self.cleanup_report = Some(*report);
                self.finish(Outcome::Completed);
                return vec![];
            }
            Event::HistoryLoaded(entries) => {
                if self.step == Step::History {
                    self.busy = None;
                }
                self.history = entries;
                self.history_cursor = self
                    .history_cursor
                    .min(self.history.len().saturating_sub(1));
                return vec![];
            }
            Event::DetailLoaded(detail) => {
                self.busy = None;
                self.detail = Some(*detail);
                if self.step == Step::History {
                    self.step = Step::Detail;
                }
                return vec![];
            }
            Event::RecoveryFinished(report) => {
                self.busy = None;
                self.recovery_result = Some(*report);
                return match &self.detail {
                    Some(d) => vec![Effect::LoadDetail {
                        id: d.entry.id.clone(),
                    }],
                    None => vec![],
                };
            }
            Event::Revealed { id, secret } => {
                if self.step == Step::Inventory && self.current_item_id().as_ref() == Some(&id) {
                    self.revealed = Some(Revealed {
                        id,
                        secret,
                        until_ms: self.now_ms + REVEAL_MS,
                    });
                }
                return vec![];
            }
            Event::Failed { task, message } => return self.on_failed(task, message),
            Event::Terminate => {
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
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        if self.running() {
            self.confirm = Some(Confirm::QuitWhileRunning);
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
                            vec![Effect::Cleanup { id }]
                        }
                        None => vec![],
                    },
                    Confirm::Recovery { action, id } => {
                        self.busy = Some(format!("Working: {} {id}…", action.label()));
                        self.recovery_result = None;
                        vec![Effect::Recover { action, id }]
                    }
                }
            }
            Event::No | Event::Back | Event::Quit => {
                self.confirm = None;
                vec![]
            }
            _ => vec![],
        }
    }

    fn on_failed(&mut self, task: Task, message: String) -> Vec<Effect> {
        self.busy = None;
        match task {
            // The engine could not even start (lock held, backup failed):
            // nothing was written.
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
            Task::Reveal => {
                self.revealed = None;
            }
            Task::History if self.step != Step::History => {
                // The first screen only uses the history for a hint.
                return vec![];
            }
            _ => {}
        }
        self.error = Some(message);
        vec![]
    }

    // ---- Assess ----

    fn on_assessed(&mut self, reports: Vec<StoreReport>) -> Vec<Effect> {
        self.busy = None;
        self.stores = reports;
        let find = |spec: &Option<StoreSpec>, stores: &[StoreReport]| {
            spec.as_ref()
                .and_then(|s| stores.iter().position(|r| &r.spec == s))
        };
        self.source = find(&self.config.from, &self.stores).filter(|i| self.can_be_source(*i));
        self.target = find(&self.config.to, &self.stores).filter(|i| self.can_be_target(*i));
        if self.source.is_some() {
            self.pick = Pick::Target;
            self.store_cursor = self.target.or(self.source).unwrap_or(0);
        } else {
            self.store_cursor = self
                .stores
                .iter()
                .position(|r| r.capability.available && r.capability.readable)
                .unwrap_or(0);
        }
        vec![]
    }

    fn can_be_source(&self, i: usize) -> bool {
        self.stores
            .get(i)
            .is_some_and(|r| r.capability.available && r.capability.readable)
    }

    fn can_be_target(&self, i: usize) -> bool {
        self.stores
            .get(i)
            .is_some_and(|r| r.capability.available && r.capability.writable)
            && Some(i) != self.source
    }

    fn on_assess(&mut self, event: Event) -> Vec<Effect> {
        let n = self.stores.len();
        match event {
            Event::Up => self.store_cursor = self.store_cursor.saturating_sub(1),
            Event::Down => self.store_cursor = (self.store_cursor + 1).min(n.saturating_sub(1)),
            Event::Home => self.store_cursor = 0,
            Event::End => self.store_cursor = n.saturating_sub(1),
            Event::SwitchPick => {
                self.pick = match self.pick {
                    Pick::Source => Pick::Target,
                    Pick::Target => Pick::Source,
                };
            }
            Event::Back if self.pick == Pick::Target => {
                self.pick = Pick::Source;
                self.target = None;
                if let Some(s) = self.source {
                    self.store_cursor = s;
                }
            }
            Event::Enter if self.busy.is_none() => return self.assess_enter(),
            _ => {}
        }
        vec![]
    }

    fn assess_enter(&mut self) -> Vec<Effect> {
        self.error = None;
        let i = self.store_cursor;
        let Some(r) = self.stores.get(i) else {
            return vec![];
        };
        match self.pick {
            Pick::Source => {
                if !self.can_be_source(i) {
                    self.error = Some(format!(
                        "{} cannot be read: {}",
                        r.spec,
                        r.capability.reason.as_deref().unwrap_or("not readable")
                    ));
                    return vec![];
                }
                self.source = Some(i);
                if self.target == Some(i) {
                    self.target = None;
                }
                self.pick = Pick::Target;
                if let Some(t) = self.target {
                    self.store_cursor = t;
                } else if let Some(t) = (0..self.stores.len()).find(|t| self.can_be_target(*t)) {
                    self.store_cursor = t;
                }
            }
            Pick::Target => {
                if self.source.is_none() {
                    self.pick = Pick::Source;
                    return vec![];
                }
                if Some(i) == self.source {
                    self.error = Some("the target must be a different store".into());
                    return vec![];
                }
                if let Some(from) = self.source_spec()
                    && crate::store::same_location(from, &r.spec)
                {
                    self.error = Some(format!(
                        "{} is the same store as the source {from} (the same file under another \
                         name or scheme): the target must be a different store",
                        r.spec
                    ));
                    return vec![];
                }
                if !self.can_be_target(i) {
                    // Never fall back silently: say why, and point at the
                    // encrypted file the list always offers.
                    let why = if r.capability.available {
                        "it is read-only".to_string()
                    } else {
                        r.capability
                            .reason
                            .clone()
                            .unwrap_or_else(|| "it is unavailable".into())
                    };
                    self.error = Some(format!(
                        "{} cannot be the target: {why}. Choose another store, such as an encrypted file.",
                        r.spec
                    ));
                    return vec![];
                }
                self.target = Some(i);
                self.step = Step::Consent;
            }
        }
        vec![]
    }

    // ---- Consent ----

    fn on_consent(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Yes => {
                let Some(from) = self.source_spec().cloned() else {
                    return vec![];
                };
                self.step = Step::Inventory;
                self.busy = Some("Reading the source…".into());
                self.error = None;
                vec![Effect::LoadInventory { from }]
            }
            Event::Defer => {
                self.outcome = Some(Outcome::Deferred);
                vec![Effect::Exit(Outcome::Deferred)]
            }
            Event::Back => {
                self.step = Step::Assess;
                self.pick = Pick::Target;
                vec![]
            }
            _ => vec![],
        }
    }

    // ---- Inventory ----

    fn on_inventory(&mut self, inv: Inventory) -> Vec<Effect> {
        if self.step != Step::Inventory {
            return vec![];
        }
        self.busy = None;
        // Eligible and expired are selected (an expired access token often
        // travels with a valid refresh token); invalid ones cannot be.
        self.selected = inv
            .items
            .iter()
            .map(|i| i.status != ItemStatus::Invalid)
            .collect();
        self.inventory = Some(inv);
        self.item_cursor = 0;
        self.refilter();
        vec![]
    }

    fn refilter(&mut self) {
        let needle = self.filter.to_lowercase();
        self.visible = match &self.inventory {
            Some(inv) => inv
                .items
                .iter()
                .enumerate()
                .filter(|(_, it)| {
                    needle.is_empty()
                        || it.id.to_string().to_lowercase().contains(&needle)
                        || it.kind.as_str().contains(&needle)
                })
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        self.item_cursor = self.item_cursor.min(self.visible.len().saturating_sub(1));
    }

    pub fn current_item(&self) -> Option<usize> {
        self.visible.get(self.item_cursor).copied()
    }

    fn current_item_id(&self) -> Option<CredentialId> {
        let i = self.current_item()?;
        self.inventory.as_ref().map(|inv| inv.items[i].id.clone())
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

    fn on_inventory_key(&mut self, event: Event) -> Vec<Effect> {
        if self.filter_editing {
            match event {
                Event::FilterChar(c) => {
                    self.filter.push(c);
                    self.item_cursor = 0;
                    self.refilter();
                }
                Event::FilterBackspace => {
                    self.filter.pop();
                    self.refilter();
                }
                Event::Enter => self.filter_editing = false,
                Event::Back => {
                    self.filter_editing = false;
                    self.filter.clear();
                    self.refilter();
                }
                _ => {}
            }
            return vec![];
        }
        if Self::move_cursor(&mut self.item_cursor, self.visible.len(), &event) {
            self.revealed = None;
            return vec![];
        }
        match event {
            Event::Toggle => {
                if let (Some(i), Some(inv)) = (self.current_item(), &self.inventory) {
                    let it = &inv.items[i];
                    if it.status == ItemStatus::Invalid {
                        self.error = Some(format!(
                            "{} cannot be migrated: {}",
                            it.id,
                            it.reason.as_deref().unwrap_or("invalid")
                        ));
                    } else {
                        self.selected[i] = !self.selected[i];
                        self.error = None;
                    }
                }
            }
            Event::ToggleAll => {
                if let Some(inv) = &self.inventory {
                    // Acts on what the filter shows.
                    let selectable: Vec<usize> = self
                        .visible
                        .iter()
                        .copied()
                        .filter(|i| inv.items[*i].status != ItemStatus::Invalid)
                        .collect();
                    let all = selectable.iter().all(|i| self.selected[*i]);
                    for i in selectable {
                        self.selected[i] = !all;
                    }
                }
            }
            Event::FilterStart => self.filter_editing = true,
            Event::Reveal => {
                if self
                    .revealed
                    .as_ref()
                    .is_some_and(|r| Some(&r.id) == self.current_item_id().as_ref())
                {
                    self.revealed = None;
                    return vec![];
                }
                if let (Some(id), Some(from)) = (self.current_item_id(), self.source_spec()) {
                    return vec![Effect::Reveal {
                        from: from.clone(),
                        id,
                    }];
                }
            }
            Event::Back => {
                self.revealed = None;
                self.step = Step::Consent;
            }
            Event::Enter if self.busy.is_none() && self.inventory.is_some() => {
                self.revealed = None;
                if self.selected_count() == 0 {
                    self.error = Some("nothing selected: space selects an item, a all".into());
                    return vec![];
                }
                self.error = None;
                if self.needs_passphrase() && self.target_exists() {
                    // An existing encrypted target must be unlocked to compare.
                    self.passphrase_mode = PassphraseMode::Unlock;
                    self.passphrase_next = Step::DryRun;
                    self.passphrase_error = None;
                    self.step = Step::Passphrase;
                    return vec![];
                }
                return self.start_plan();
            }
            _ => {}
        }
        vec![]
    }

    fn start_plan(&mut self) -> Vec<Effect> {
        let (Some(from), Some(to)) = (self.source_spec().cloned(), self.target_spec().cloned())
        else {
            return vec![];
        };
        if crate::store::same_location(&from, &to) {
            self.error = Some(format!(
                "{from} and {to} are the same store: the target must be a different store"
            ));
            return vec![];
        }
        self.step = Step::DryRun;
        self.plan = None;
        self.busy = Some("Planning (reading the target)…".into());
        vec![Effect::Plan {
            from,
            to,
            policy: self.policy,
            selection: self.selected_ids(),
        }]
    }

    // ---- Dry run ----

    fn on_dry_run(&mut self, event: Event) -> Vec<Effect> {
        let n = self.plan.as_ref().map_or(0, |p| p.items.len());
        if Self::move_cursor(&mut self.plan_cursor, n, &event) {
            return vec![];
        }
        match event {
            Event::TogglePolicy if self.busy.is_none() => {
                self.policy = match self.policy {
                    ConflictPolicy::Skip => ConflictPolicy::Overwrite,
                    ConflictPolicy::Overwrite => ConflictPolicy::Skip,
                };
                self.start_plan()
            }
            Event::Back => {
                self.step = Step::Inventory;
                self.busy = None;
                vec![]
            }
            Event::Enter if self.busy.is_none() && self.plan.is_some() => {
                if self.needs_passphrase() {
                    self.passphrase_mode = if self.target_exists() && self.needs_passphrase() {
                        PassphraseMode::Unlock
                    } else {
                        PassphraseMode::Create
                    };
                    self.passphrase_next = Step::Execute;
                    self.passphrase_error = None;
                    self.step = Step::Passphrase;
                    return vec![];
                }
                self.start_migration()
            }
            _ => vec![],
        }
    }

    fn start_migration(&mut self) -> Vec<Effect> {
        let (Some(from), Some(to), Some(plan)) = (
            self.source_spec().cloned(),
            self.target_spec().cloned(),
            self.plan.as_ref(),
        ) else {
            return vec![];
        };
        self.run = Run {
            outcomes: vec![ItemOutcome::Pending; plan.items.len()],
            index: plan
                .items
                .iter()
                .enumerate()
                .map(|(i, it)| (it.id.clone(), i))
                .collect(),
            counts: Counts {
                total: plan.items.len(),
                ..Counts::default()
            },
            ..Run::default()
        };
        self.step = Step::Execute;
        self.error = None;
        vec![Effect::StartMigration {
            from,
            to,
            policy: self.policy,
            selection: self.selected_ids(),
        }]
    }

    // ---- Passphrase ----

    fn on_passphrase(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::PassphraseEdited => {
                self.passphrase_error = None;
                vec![]
            }
            Event::Back => {
                self.passphrase_error = None;
                self.step = if self.passphrase_next == Step::DryRun {
                    Step::Inventory
                } else {
                    Step::DryRun
                };
                vec![]
            }
            Event::PassphraseSubmitted {
                passphrase,
                confirm,
            } => {
                if passphrase.is_empty() {
                    self.passphrase_error = Some("enter a passphrase".into());
                    return vec![];
                }
                if self.passphrase_mode == PassphraseMode::Create {
                    match confirm {
                        Some(c) if c.ct_eq(&passphrase) => {}
                        _ => {
                            self.passphrase_error =
                                Some("the two entries differ; type them again".into());
                            return vec![];
                        }
                    }
                    if passphrase.len() < MIN_PASSPHRASE {
                        self.passphrase_error = Some(format!(
                            "use at least {MIN_PASSPHRASE} characters (a few words work well)"
                        ));
                        return vec![];
                    }
                }
                self.passphrase_error = None;
                self.passphrase_set = true;
                let mut effects = vec![Effect::UsePassphrase(passphrase)];
                effects.extend(if self.passphrase_next == Step::DryRun {
                    self.start_plan()
                } else {
                    self.start_migration()
                });
                effects
            }
            _ => vec![],
        }
    }

    // ---- Execute ----

    fn on_progress(&mut self, batch: Vec<Progress>) -> Vec<Effect> {
        let index = std::mem::take(&mut self.run.index);
        let mut updates: Vec<(usize, ItemOutcome)> = Vec::new();
        let mut finished = None;
        for p in batch {
            match p {
                Progress::BackupWritten { path, items } => {
                    self.run.log.push_back(LogLine::Info(format!(
                        "encrypted backup of {items} items written"
                    )));
                    self.run.backup = Some(path);
                }
                Progress::ItemStarted { .. } => {}
                Progress::ItemWritten { id } => {
                    if let Some(i) = index.get(&id) {
                        updates.push((*i, ItemOutcome::Written));
                    }
                }
                Progress::ItemVerified { id } => {
                    if let Some(i) = index.get(&id) {
                        updates.push((*i, ItemOutcome::Verified));
                    }
                    self.run
                        .log
                        .push_back(LogLine::Ok(format!("{id} copied and read back")));
                }
                Progress::ItemSkipped { id, reason } => {
                    if let Some(i) = index.get(&id) {
                        updates.push((*i, ItemOutcome::Skipped(reason.clone())));
                    }
                    self.run
                        .log
                        .push_back(LogLine::Skip(format!("{id} skipped: {reason}")));
                }
                Progress::ItemFailed { id, error } => {
                    if let Some(i) = index.get(&id) {
                        updates.push((*i, ItemOutcome::Failed(error.clone())));
                    }
                    self.run
                        .log
                        .push_back(LogLine::Fail(format!("{id} failed: {error}")));
                }
                Progress::Counts(c) => self.run.counts = c,
                Progress::RollingBack { reason } => {
                    self.run
                        .log
                        .push_back(LogLine::Info(format!("rolling back: {reason}")));
                    self.run.rolling_back = Some(reason);
                }
                Progress::Finished(report) => finished = Some(*report),
                Progress::ItemUndone { id, how } => {
                    self.run.log.push_back(LogLine::Info(format!("{id} {how}")));
                }
                Progress::Planned(counts) => {
                    self.run.counts.total = counts.total;
                }
                Progress::SourceDeleted { id } => {
                    self.run
                        .log
                        .push_back(LogLine::Ok(format!("{id} deleted from the source")));
                }
                Progress::SourceDeleteFailed { id, error } => {
                    self.run.log.push_back(LogLine::Fail(format!(
                        "{id}: migrated, source still present ({error})"
                    )));
                }
            }
        }
        self.run.index = index;
        for (i, o) in updates {
            if let Some(slot) = self.run.outcomes.get_mut(i) {
                *slot = o;
            }
        }
        while self.run.log.len() > LOG_TAIL {
            self.run.log.pop_front();
        }
        match finished {
            Some(report) => self.on_finished(report),
            None => vec![],
        }
    }

    fn on_finished(&mut self, report: Report) -> Vec<Effect> {
        self.run.id = Some(report.migration_id.clone());
        if report.backup.is_some() {
            self.run.backup.clone_from(&report.backup);
        }
        let rolled_back = report.rolled_back;
        if rolled_back && self.run.rolling_back.is_none() {
            self.run.rolling_back = report.rollback_reason.clone();
        }
        self.run.counts.done = self
            .run
            .counts
            .done
            .max(report.total.min(self.run.counts.total));
        let id = report.migration_id.clone();
        let rollback_began = self.run.rolling_back.is_some();
        self.run.report = Some(report);
        if self.run.quit_after {
            let outcome = if rolled_back {
                Outcome::RolledBack
            } else if rollback_began {
                Outcome::Failed
            } else {
                Outcome::Completed
            };
            return vec![Effect::Exit(outcome)];
        }
        if rolled_back {
            self.finish(Outcome::RolledBack);
            return vec![];
        }
        if self.run.rolling_back.is_some() {
            // A rollback began but did not complete: nothing to verify or
            // clean up; the end screen says what to run next.
            self.finish(Outcome::Failed);
            return vec![];
        }
        self.step = Step::Verify;
        self.result_cursor = 0;
        self.busy = Some("Reading back every item from the target…".into());
        vec![Effect::Verify { id }]
    }

    fn on_execute(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Cancel if self.running() && !self.run.cancel_requested => {
                self.run.cancel_requested = true;
                self.run
                    .log
                    .push_back(LogLine::Info("cancel requested: rolling back".into()));
                vec![Effect::CancelMigration]
            }
            _ => vec![],
        }
    }

    // ---- Verify ----

    fn on_verify(&mut self, event: Event) -> Vec<Effect> {
        if Self::move_cursor(&mut self.result_cursor, self.run.outcomes.len(), &event) {
            return vec![];
        }
        match event {
            Event::Enter if self.busy.is_none() => {
                self.step = Step::Cleanup;
                vec![]
            }
            _ => vec![],
        }
    }

    /// Items verified at the target: the ones cleanup may delete.
    pub fn verified_count(&self) -> usize {
        let failed_verify = self.verify_report.as_ref().map_or(0, |r| r.failures.len());
        self.run
            .outcomes
            .iter()
            .filter(|o| matches!(o, ItemOutcome::Verified))
            .count()
            .saturating_sub(failed_verify)
    }

    // ---- Cleanup ----

    fn on_cleanup(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Toggle | Event::Up | Event::Down => {
                self.delete_source = !self.delete_source;
                vec![]
            }
            Event::Back => {
                self.step = Step::Verify;
                vec![]
            }
            Event::Enter if self.busy.is_none() => {
                if self.delete_source {
                    self.confirm = Some(Confirm::DeleteSource {
                        count: self.verified_count(),
                    });
                    vec![]
                } else {
                    let failed = self.run.report.as_ref().is_some_and(|r| r.failed > 0);
                    self.finish(if failed {
                        Outcome::Failed
                    } else {
                        Outcome::Completed
                    });
                    vec![]
                }
            }
            _ => vec![],
        }
    }

    // ---- Done ----

    fn on_done(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Enter => vec![Effect::Exit(self.outcome.unwrap_or(Outcome::Completed))],
            _ => vec![],
        }
    }

    // ---- Recovery ----

    fn on_history(&mut self, event: Event) -> Vec<Effect> {
        if Self::move_cursor(&mut self.history_cursor, self.history.len(), &event) {
            return vec![];
        }
        match event {
            Event::Enter if self.busy.is_none() => match self.history.get(self.history_cursor) {
                Some(h) => {
                    self.busy = Some("Reading the journal…".into());
                    self.recovery_result = None;
                    self.error = None;
                    vec![Effect::LoadDetail { id: h.id.clone() }]
                }
                None => vec![],
            },
            Event::Back if !self.config.recover => {
                self.step = Step::Assess;
                vec![]
            }
            _ => vec![],
        }
    }

    fn on_detail(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Recovery(action) if self.busy.is_none() => {
                if let Some(d) = &self.detail {
                    if action == RecoveryAction::Restore && d.backup.is_none() {
                        self.error = Some("this migration has no backup to restore".into());
                        return vec![];
                    }
                    self.confirm = Some(Confirm::Recovery {
                        action,
                        id: d.entry.id.clone(),
                    });
                }
                vec![]
            }
            Event::Back => {
                self.step = Step::History;
                self.detail = None;
                self.recovery_result = None;
                self.error = None;
                self.busy = Some("Reading the history…".into());
                vec![Effect::LoadHistory]
            }
            _ => vec![],
        }
    }
}

pub const MIN_PASSPHRASE: usize = 8;

/// Whether a store keeps its values under credshift's passphrase.
pub fn spec_is_encrypted(spec: &StoreSpec) -> bool {
    matches!(
        spec,
        StoreSpec::Encrypted(_)
            | StoreSpec::Bundle(_)
            | StoreSpec::Sqlite(_)
            | StoreSpec::Postgres(_)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    Empty,
    Weak,
    Fair,
    Strong,
}

/// A rough strength hint: length and character variety. Not a guarantee,
/// only a nudge toward longer passphrases.
pub fn strength(p: &str) -> Strength {
    let n = p.chars().count();
    if n == 0 {
        return Strength::Empty;
    }
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let score = n + 4 * classes;
    if n < MIN_PASSPHRASE || score < 16 {
        Strength::Weak
    } else if n >= 16 || score >= 24 {
        Strength::Strong
    } else {
        Strength::Fair
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{Kind, Metadata};
    use crate::engine::types::{Action, InventoryItem, PlanCounts, PlanItem};
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
            },
            StoreReport {
                spec: "keyring:credshift".parse().unwrap(),
                capability: Capability::unavailable("no Secret Service"),
            },
            StoreReport {
                spec: "encrypted:/a/t.enc".parse().unwrap(),
                capability: cap(true, true, target_exists),
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
            w.store_cursor, 2,
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
            assert_eq!(w.passphrase_mode, PassphraseMode::Unlock);
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
        w.store_cursor = 1;
        assert!(w.handle(Event::Enter).is_empty());
        assert_eq!(w.step, Step::Assess);
        assert!(w.target.is_none());
        assert!(w.error.as_deref().unwrap().contains("no Secret Service"));
        // The same store cannot be source and target.
        w.store_cursor = 0;
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
        assert_eq!((w.source, w.target), (Some(0), Some(2)));
        w.handle(Event::Enter);
        assert_eq!(w.step, Step::Consent, "Enter accepts the preselection");
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
        assert_eq!(w.visible, vec![3]);
        w.handle(Event::Enter);
        w.handle(Event::ToggleAll);
        assert!(!w.selected[3]);
        assert!(w.selected[0], "toggle all acts on the filtered rows only");
        w.handle(Event::FilterStart);
        w.handle(Event::Back); // clears the filter
        assert_eq!(w.visible.len(), 4);
        w.handle(Event::Home);
        w.handle(Event::Down);
        w.handle(Event::Down);
        w.handle(Event::Toggle);
        assert!(!w.selected[2], "an invalid item cannot be selected");
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
        assert!(w.revealed.is_some());
        w.handle(Event::Tick {
            now_ms: NOW + REVEAL_MS - 1,
        });
        assert!(w.revealed.is_some());
        w.handle(Event::Tick {
            now_ms: NOW + REVEAL_MS,
        });
        assert!(w.revealed.is_none());
        w.handle(Event::Revealed {
            id: id.clone(),
            secret: Secret::new("x"),
        });
        w.handle(Event::Down);
        assert!(w.revealed.is_none());
        // A late answer for an item no longer under the cursor is dropped.
        w.handle(Event::Revealed {
            id: id.clone(),
            secret: Secret::new("x"),
        });
        assert!(w.revealed.is_none());
    }

    #[test]
    fn passphrase_is_asked_when_none_was_given_and_must_match() {
        let mut w = at_dry_run(false, false);
        assert!(w.handle(Event::Enter).is_empty());
        assert_eq!(w.step, Step::Passphrase);
        assert_eq!(w.passphrase_mode, PassphraseMode::Create);
        let fx = w.handle(Event::PassphraseSubmitted {
            passphrase: Secret::new("correct horse"),
            confirm: Some(Secret::new("correct horsE")),
        });
        assert!(fx.is_empty());
        assert!(w.passphrase_error.is_some());
        w.handle(Event::PassphraseEdited);
        assert!(w.passphrase_error.is_none());
        let fx = w.handle(Event::PassphraseSubmitted {
            passphrase: Secret::new("short"),
            confirm: Some(Secret::new("short")),
        });
        assert!(fx.is_empty(), "too short");
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
        assert!(!w.delete_source);
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
        assert!(w.delete_source);
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
}
