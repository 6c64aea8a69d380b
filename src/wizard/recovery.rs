//! The recovery path: past migrations; one migration item by item and its
//! journal; resume / roll back / verify / restore, each offered only where
//! it makes sense, confirmed with what it will do, run with live progress,
//! and cancellable (quit asks first).

use std::path::PathBuf;

use super::{Confirm, Effect, Event, Outcome, PassphraseMode, Step, Wizard};
use crate::credential::CredentialId;
use crate::engine::items::{ItemState, ItemView, SourceState};
use crate::engine::types::{ConflictPolicy, HistoryEntry, MigrationStatus, Progress, Report};

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

    /// The action as a noun, for progress and results ("the resume").
    pub fn noun(self) -> &'static str {
        match self {
            RecoveryAction::Resume => "resume",
            RecoveryAction::Rollback => "rollback",
            RecoveryAction::Verify => "verify",
            RecoveryAction::Restore => "restore",
        }
    }
}

/// One past migration as the recovery detail screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub entry: HistoryEntry,
    pub timeline: Vec<TimelineRow>,
    pub backup: Option<PathBuf>,
    /// Every planned item with its state, in plan order.
    pub items: Vec<ItemView>,
    /// Recovery needs credshift's passphrase (the backup or a store is
    /// under the one the migration ran with).
    pub needs_passphrase: bool,
    /// A rollback began (finished or not): resume is not offered.
    pub rollback_began: bool,
    /// Only the cleanup after a finished migration was stopped: resume
    /// deletes from the source, it writes nothing.
    pub cleanup_interrupted: bool,
    /// The migration was asked to delete from the source: a resume cleans
    /// up after it writes.
    pub delete_source: bool,
    pub on_conflict: ConflictPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRow {
    /// Already formatted (`2026-11-23 00:45:12`).
    pub at: String,
    /// The record, its item and detail; a batch lists all its ids.
    pub what: String,
}

/// What a restore would do, planned against the source as it is now
/// (the dry run of `restore`), before its confirmation is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePreview {
    pub id: crate::engine::MigrationId,
    /// Not in the source: written back.
    pub write: usize,
    /// Already there with the backup's value: skipped.
    pub identical: usize,
    /// Changed in the source since the backup: skipped, never overwritten.
    pub conflicts: Vec<CredentialId>,
}

/// How many items are in each state: what a confirmation counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemCounts {
    pub planned: usize,
    pub written: usize,
    pub verified: usize,
    pub failed: usize,
    pub skipped: usize,
    pub conflict: usize,
    pub rolled_back: usize,
    pub rollback_failed: usize,
    /// Planned as overwrites and still to be written.
    pub overwrites_left: usize,
    /// Overwrites at the target (a rollback restores the old value).
    pub overwrites_done: usize,
    pub source_deleted: usize,
}

impl Detail {
    pub fn counts(&self) -> ItemCounts {
        let mut c = ItemCounts::default();
        for i in &self.items {
            let overwrite = i.action == crate::engine::journal::PlannedAction::Overwrite;
            match i.state {
                ItemState::Planned => {
                    c.planned += 1;
                    c.overwrites_left += usize::from(overwrite);
                }
                ItemState::Written => c.written += 1,
                ItemState::Verified => {
                    c.verified += 1;
                    c.overwrites_done += usize::from(overwrite);
                }
                ItemState::Failed => c.failed += 1,
                ItemState::Skipped => c.skipped += 1,
                ItemState::Conflict => c.conflict += 1,
                ItemState::RolledBack => c.rolled_back += 1,
                ItemState::RollbackFailed => c.rollback_failed += 1,
            }
            c.source_deleted += usize::from(matches!(
                i.source,
                SourceState::Deleted | SourceState::DeleteBegun
            ));
        }
        c
    }

    /// How many items a resumed cleanup would still delete from the
    /// source: as the engine's cleanup picks them (verified and not undone,
    /// or identical at the target), not yet deleted.
    pub fn cleanup_left(&self) -> usize {
        use crate::engine::journal::PlannedAction;
        self.items
            .iter()
            .filter(|i| i.state == ItemState::Verified || i.action == PlannedAction::SkipIdentical)
            .filter(|i| !matches!(i.source, SourceState::Deleted | SourceState::Restored))
            .count()
    }

    /// Why `action` is not offered for this migration, or `None` when it is:
    /// Resume for an interrupted migration (not once a rollback began);
    /// Rollback for a completed, interrupted or failed one with something
    /// to undo; Verify where something is at the target; Restore where
    /// cleanup changed the source and a backup exists.
    pub fn refusal(&self, action: RecoveryAction) -> Option<String> {
        let status = self.entry.status;
        let c = self.counts();
        let at_target = c.verified + c.written + c.rollback_failed;
        let word = status_text(status);
        match action {
            RecoveryAction::Resume if status != MigrationStatus::Interrupted => Some(format!(
                "resume is for an interrupted migration; this one is {word}"
            )),
            RecoveryAction::Resume if self.rollback_began => Some(
                "a rollback of this migration began: resume is not offered; roll back (b) to \
                 finish it"
                    .into(),
            ),
            RecoveryAction::Rollback if status == MigrationStatus::RolledBack => {
                Some("this migration is already rolled back".into())
            }
            RecoveryAction::Rollback
                if status == MigrationStatus::Failed && at_target + c.source_deleted == 0 =>
            {
                Some("this migration wrote nothing that is still at the target".into())
            }
            RecoveryAction::Verify if c.verified == 0 => Some(format!(
                "nothing this migration wrote is at the target to verify (it is {word})"
            )),
            RecoveryAction::Restore if c.source_deleted == 0 => Some(
                "restore is for a migration whose cleanup deleted items from the source; this \
                 one deleted none"
                    .into(),
            ),
            RecoveryAction::Restore if self.backup.is_none() => {
                Some("this migration has no backup to restore".into())
            }
            _ => None,
        }
    }

    /// The actions offered for this migration, in key order.
    pub fn actions(&self) -> Vec<RecoveryAction> {
        [
            RecoveryAction::Resume,
            RecoveryAction::Rollback,
            RecoveryAction::Verify,
            RecoveryAction::Restore,
        ]
        .into_iter()
        .filter(|a| self.refusal(*a).is_none())
        .collect()
    }

    /// What `action` will do, said before it does it: which store, how
    /// many items, what it replaces, and that it is journaled.
    pub fn confirm_text(&self, action: RecoveryAction) -> Vec<String> {
        self.confirm_text_with(action, None)
    }

    /// [`Detail::confirm_text`], with the restore's dry run when the worker
    /// planned it (the exact counts and the conflicts by id).
    pub fn confirm_text_with(
        &self,
        action: RecoveryAction,
        preview: Option<&RestorePreview>,
    ) -> Vec<String> {
        let preview = preview.filter(|p| p.id == self.entry.id);
        let c = self.counts();
        let e = &self.entry;
        let to = store_name(&e.to);
        let from = store_name(&e.from);
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match action {
            RecoveryAction::Resume if self.cleanup_interrupted => {
                let n = self.cleanup_left();
                vec![
                    format!(
                        "Finish the stopped cleanup: delete the {n} remaining verified item{} \
                         from the source, {from}, each compared with {to} first (one that \
                         differs is kept).",
                        plural(n)
                    ),
                    format!("The migration itself is finished: nothing is written to {to}."),
                    "To keep the source as it is, answer no (n / Esc): the cleanup stays \
                     unfinished and nothing is deleted. Roll back (b) undoes the whole \
                     migration instead."
                        .into(),
                    "Journaled in this migration; deleted items stay in its backup (restore)."
                        .into(),
                ]
            }
            RecoveryAction::Resume => {
                let n = c.planned + c.written + c.failed;
                let replace = match self.on_conflict {
                    ConflictPolicy::Skip => "A value at the target that differs is a conflict: \
                                             skipped and reported, never replaced."
                        .to_string(),
                    ConflictPolicy::Overwrite => format!(
                        "It replaces {} value{} at the target (conflict policy overwrite), each \
                         backed up first.",
                        c.overwrites_left,
                        plural(c.overwrites_left)
                    ),
                };
                vec![
                    format!(
                        "Write the {n} item{} not yet verified into {to}, in batches, each read \
                         back.",
                        plural(n)
                    ),
                    format!("{} already verified stay as they are.", c.verified),
                    replace,
                ]
                .into_iter()
                .chain(self.delete_source.then(|| {
                    format!(
                        "Then, as this migration was asked to, delete the verified items from \
                         the source, {from}, each compared with {to} first."
                    )
                }))
                .chain(std::iter::once(
                    "Journaled in this migration: it can be rolled back afterwards (b).".into(),
                ))
                .collect()
            }
            RecoveryAction::Rollback => {
                let n = c.verified + c.written + c.rollback_failed;
                let mut v = vec![format!(
                    "Remove the {n} item{} this migration wrote to {to}{}.",
                    plural(n),
                    if c.overwrites_done > 0 {
                        format!(
                            ", putting back the {} value{} it overwrote (from its backup)",
                            c.overwrites_done,
                            plural(c.overwrites_done)
                        )
                    } else {
                        String::new()
                    }
                )];
                if c.source_deleted > 0 {
                    v.push(format!(
                        "Put the {} item{} cleanup deleted back into {from}.",
                        c.source_deleted,
                        plural(c.source_deleted)
                    ));
                }
                v.push("A value changed at the target since is left as it is and reported.".into());
                v.push(
                    "Journaled: the migration becomes rolled back; run a new migration to \
                     redo it."
                        .into(),
                );
                v
            }
            RecoveryAction::Verify => vec![
                format!(
                    "Read the {} verified item{} back from {to} and compare each with the \
                     journal's fingerprint.",
                    c.verified,
                    plural(c.verified)
                ),
                "Changes nothing; the result is journaled.".into(),
            ],
            RecoveryAction::Restore => match preview {
                Some(p) => {
                    let mut v = vec![format!(
                        "Write {} item{} from the backup back into {from}; {} already there \
                         with the same value {} skipped.",
                        p.write,
                        plural(p.write),
                        p.identical,
                        if p.identical == 1 { "is" } else { "are" }
                    )];
                    if !p.conflicts.is_empty() {
                        let shown: Vec<String> = p
                            .conflicts
                            .iter()
                            .take(5)
                            .map(ToString::to_string)
                            .collect();
                        let more = p.conflicts.len().saturating_sub(shown.len());
                        v.push(format!(
                            "{} changed since the backup: skipped, not overwritten: {}{}.",
                            p.conflicts.len(),
                            shown.join(", "),
                            if more > 0 {
                                format!(" and {more} more")
                            } else {
                                String::new()
                            }
                        ));
                    }
                    v.push(
                        "Runs as a new migration with its own journal and backup: it can be \
                         rolled back."
                            .into(),
                    );
                    v
                }
                None => vec![
                    format!(
                        "Write the backup's items back into {from}: the {} item{} cleanup \
                         deleted come back.",
                        c.source_deleted,
                        plural(c.source_deleted)
                    ),
                    "A value already there and the same is skipped; one changed since the \
                     backup is a conflict: skipped, not overwritten."
                        .into(),
                    "Runs as a new migration with its own journal and backup: it can be rolled \
                     back."
                        .into(),
                ],
            },
        }
    }
}

/// A store as a person names it: its kind and file (or service), then the
/// full location.
pub fn store_name(spec: &str) -> String {
    let Ok(s) = spec.parse::<crate::store::StoreSpec>() else {
        return spec.to_string();
    };
    match s.path().and_then(|p| p.file_name()) {
        Some(f) => format!("{} ({} store at {spec})", f.to_string_lossy(), s.scheme()),
        None => format!("{spec} ({} store)", s.scheme()),
    }
}

pub fn status_text(s: MigrationStatus) -> &'static str {
    match s {
        MigrationStatus::Completed => "completed",
        MigrationStatus::RolledBack => "rolled back",
        MigrationStatus::Interrupted => "interrupted",
        MigrationStatus::Failed => "failed",
    }
}

/// Live progress of a running recovery action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryProgress {
    pub total: usize,
    pub done: usize,
    pub verified: usize,
    pub failed: usize,
    pub undone: usize,
    pub rolling_back: Option<String>,
}

/// What the detail screen shows below the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    #[default]
    Journal,
    Items,
}

/// The recovery path: the history, the cursor in it, the migration opened,
/// the action running or its result.
#[derive(Debug, Clone, Default)]
pub struct RecoveryState {
    pub history: Vec<HistoryEntry>,
    pub cursor: usize,
    pub detail: Option<Detail>,
    /// The last action's result: replaced by the next action's.
    pub result: Option<(RecoveryAction, Report)>,
    pub running: Option<RecoveryAction>,
    pub progress: RecoveryProgress,
    pub cancel_requested: bool,
    pub quit_after: bool,
    /// The action waiting for the passphrase screen.
    pub pending: Option<RecoveryAction>,
    /// One line per action that ran in this session (printed on exit).
    pub done_log: Vec<String>,
    pub pane: Pane,
    /// First journal line shown; `None` follows the end.
    pub journal_top: Option<usize>,
    /// Items pane: cursor and filter (id, state or reason).
    pub item_cursor: usize,
    pub filter: String,
    pub filtering: bool,
    /// Items chosen (Space in the item view) for a partial rollback.
    pub chosen: std::collections::BTreeSet<CredentialId>,
    /// The running (or last) rollback was of this many chosen items.
    pub partial: Option<usize>,
    /// The restore's dry run, once the worker planned it.
    pub restore_preview: Option<RestorePreview>,
}

impl RecoveryState {
    /// The items the filter keeps, as indices into the detail's items.
    pub fn visible_items(&self) -> Vec<usize> {
        let Some(d) = &self.detail else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        d.items
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                needle.is_empty()
                    || i.id.to_string().to_lowercase().contains(&needle)
                    || i.state.word().contains(&needle)
                    || i.reason
                        .as_deref()
                        .is_some_and(|r| r.to_lowercase().contains(&needle))
            })
            .map(|(n, _)| n)
            .collect()
    }
}

/// One line saying what a finished action did, from its report (the
/// journal's counts).
pub fn result_line(action: RecoveryAction, r: &Report, partial: Option<usize>) -> String {
    let status = r.status.map_or("as the journal says", status_text);
    let stopped = if r.cancelled {
        "cancelled after the batch at hand: "
    } else {
        ""
    };
    if let (RecoveryAction::Rollback, Some(n)) = (action, partial) {
        return format!(
            "Rollback of the {n} chosen items {}: {} items remain migrated{}; the migration \
             is {status}.",
            if r.cancelled {
                "cancelled after the item at hand"
            } else {
                "done"
            },
            r.copied,
            if r.failures.is_empty() {
                String::new()
            } else {
                format!(", {} could not be undone", r.failures.len())
            }
        );
    }
    match action {
        RecoveryAction::Resume if r.cancelled => format!(
            "Resume {stopped}{} items now verified at the target, {} failed; the migration is \
             {status} (resume or roll back later).",
            r.verified, r.failed
        ),
        RecoveryAction::Resume => format!(
            "Resume done: {} verified at the target, {} skipped, {} conflicts, {} failed; the \
             migration is {status}.",
            r.verified, r.skipped, r.conflicts, r.failed
        ),
        RecoveryAction::Rollback if r.rolled_back => format!(
            "Rollback done: what it wrote was removed, what it overwrote restored; the \
             migration is {status}."
        ),
        RecoveryAction::Rollback => format!(
            "Rollback {stopped}not finished: {} items still at the target{}; run roll back \
             again (b).",
            r.copied,
            if r.failures.is_empty() {
                String::new()
            } else {
                format!(", {} could not be undone", r.failures.len())
            }
        ),
        RecoveryAction::Verify => format!(
            "Verify {stopped}{} read back equal, {} differ or are missing.",
            r.verified, r.failed
        ),
        RecoveryAction::Restore if r.rolled_back => format!(
            "Restore rolled back ({}): the source is as before the restore (restore {}).",
            r.rollback_reason.as_deref().unwrap_or("cancelled"),
            r.migration_id
        ),
        RecoveryAction::Restore => format!(
            "Restore done: {} put back into the source, {} already there, {} conflicts left \
             as they are, {} failed (restore {}).",
            r.copied, r.skipped, r.conflicts, r.failed, r.migration_id
        ),
    }
}

impl Wizard {
    pub(super) fn on_history(&mut self, event: Event) -> Vec<Effect> {
        if Self::move_cursor(
            &mut self.recovery.cursor,
            self.recovery.history.len(),
            &event,
        ) {
            return vec![];
        }
        match event {
            Event::Enter if self.busy.is_none() => {
                match self.recovery.history.get(self.recovery.cursor) {
                    Some(h) => {
                        self.busy = Some("Reading the journal…".into());
                        self.recovery.result = None;
                        self.recovery.pane = Pane::Journal;
                        self.recovery.journal_top = None;
                        self.recovery.filter.clear();
                        self.recovery.item_cursor = 0;
                        self.error = None;
                        vec![Effect::LoadDetail { id: h.id.clone() }]
                    }
                    None => vec![],
                }
            }
            Event::Back if !self.config.recover => {
                self.step = Step::Assess;
                vec![]
            }
            _ => vec![],
        }
    }

    pub(super) fn on_detail(&mut self, event: Event) -> Vec<Effect> {
        if self.recovery.filtering {
            match event {
                Event::FilterChar(c) => self.recovery.filter.push(c),
                Event::FilterBackspace => {
                    self.recovery.filter.pop();
                }
                Event::Enter => self.recovery.filtering = false,
                Event::Back => {
                    self.recovery.filtering = false;
                    self.recovery.filter.clear();
                }
                _ => {}
            }
            self.recovery.item_cursor = 0;
            return vec![];
        }
        if self.scroll_detail(&event) {
            return vec![];
        }
        match event {
            Event::Recovery(RecoveryAction::Rollback)
                if !self.recovery.chosen.is_empty()
                    && self.busy.is_none()
                    && self.recovery.running.is_none() =>
            {
                self.ask_partial_rollback()
            }
            Event::Recovery(action) if self.busy.is_none() && self.recovery.running.is_none() => {
                self.ask_recovery(action)
            }
            Event::Toggle if self.recovery.pane == Pane::Items => {
                self.toggle_chosen();
                vec![]
            }
            Event::SwitchPick => {
                self.recovery.pane = match self.recovery.pane {
                    Pane::Journal => Pane::Items,
                    Pane::Items => Pane::Journal,
                };
                vec![]
            }
            Event::FilterStart => {
                self.recovery.pane = Pane::Items;
                self.recovery.filtering = true;
                vec![]
            }
            Event::Back if self.recovery.running.is_none() => {
                self.step = Step::History;
                self.recovery.detail = None;
                self.recovery.result = None;
                self.error = None;
                self.busy = Some("Reading the history…".into());
                vec![Effect::LoadHistory]
            }
            _ => vec![],
        }
    }

    /// Arrows and page keys move the journal or the item cursor.
    fn scroll_detail(&mut self, event: &Event) -> bool {
        let Some(d) = &self.recovery.detail else {
            return false;
        };
        match self.recovery.pane {
            Pane::Items => {
                let n = self.recovery.visible_items().len();
                Self::move_cursor(&mut self.recovery.item_cursor, n, event)
            }
            Pane::Journal => {
                let n = d.timeline.len();
                let last = n.saturating_sub(1);
                let top = self.recovery.journal_top.unwrap_or(last);
                let new = match event {
                    Event::Up => top.saturating_sub(1),
                    Event::Down => (top + 1).min(last),
                    Event::PageUp => top.saturating_sub(super::PAGE),
                    Event::PageDown => (top + super::PAGE).min(last),
                    Event::Home => 0,
                    Event::End => {
                        self.recovery.journal_top = None;
                        return true;
                    }
                    _ => return false,
                };
                self.recovery.journal_top = Some(new);
                true
            }
        }
    }

    /// An action key: refused with the reason when it does not fit the
    /// migration's state; the passphrase asked first when needed; then the
    /// confirmation.
    fn ask_recovery(&mut self, action: RecoveryAction) -> Vec<Effect> {
        let Some(d) = &self.recovery.detail else {
            return vec![];
        };
        if let Some(why) = d.refusal(action) {
            self.error = Some(why);
            return vec![];
        }
        self.error = None;
        if d.needs_passphrase && !self.passphrase.set {
            self.recovery.pending = Some(action);
            self.passphrase.mode = PassphraseMode::Unlock;
            self.passphrase.next = Step::Detail;
            self.passphrase.error = None;
            self.step = Step::Passphrase;
            return vec![];
        }
        let id = d.entry.id.clone();
        // A restore is planned against the source as it is now first, so
        // its confirmation names what it writes and what it skips.
        let planned = self
            .recovery
            .restore_preview
            .as_ref()
            .is_some_and(|p| p.id == id);
        if action == RecoveryAction::Restore && !planned {
            // `refusal` above made sure there is a backup.
            let backup = d.backup.clone().unwrap_or_default();
            let source = match d.entry.from.parse::<crate::store::StoreSpec>() {
                Ok(s) => s,
                Err(e) => {
                    self.error = Some(format!("the migration's source cannot be restored: {e}"));
                    return vec![];
                }
            };
            self.busy = Some("Planning the restore against the source…".into());
            return vec![Effect::PreviewRestore { id, backup, source }];
        }
        self.confirm = Some(Confirm::Recovery { action, id });
        vec![]
    }

    /// The restore's dry run arrived: keep it and ask.
    pub(super) fn on_restore_previewed(&mut self, p: RestorePreview) -> Vec<Effect> {
        self.busy = None;
        let id = p.id.clone();
        self.recovery.restore_preview = Some(p);
        if self
            .recovery
            .detail
            .as_ref()
            .is_some_and(|d| d.entry.id == id)
        {
            self.confirm = Some(Confirm::Recovery {
                action: RecoveryAction::Restore,
                id,
            });
        }
        vec![]
    }

    /// Space in the item view: choose (or drop) the item under the cursor
    /// for a partial rollback; only an item this migration put at the
    /// target (or deleted from the source) can be chosen.
    fn toggle_chosen(&mut self) {
        let Some(d) = &self.recovery.detail else {
            return;
        };
        let visible = self.recovery.visible_items();
        let Some(&i) = visible.get(self.recovery.item_cursor) else {
            return;
        };
        let it = &d.items[i];
        let undoable = matches!(
            it.state,
            ItemState::Verified | ItemState::Written | ItemState::RollbackFailed
        ) || matches!(it.source, SourceState::Deleted | SourceState::DeleteBegun);
        if !undoable {
            self.error = Some(format!(
                "{} is {}: nothing of it to roll back",
                it.id,
                it.state.word()
            ));
            return;
        }
        self.error = None;
        if !self.recovery.chosen.remove(&it.id) {
            self.recovery.chosen.insert(it.id.clone());
        }
    }

    fn ask_partial_rollback(&mut self) -> Vec<Effect> {
        let Some(d) = &self.recovery.detail else {
            return vec![];
        };
        if let Some(why) = d.refusal(RecoveryAction::Rollback) {
            self.error = Some(why);
            return vec![];
        }
        if d.needs_passphrase && !self.passphrase.set {
            // The same passphrase screen; the choice stays.
            return self.ask_recovery(RecoveryAction::Rollback);
        }
        self.confirm = Some(Confirm::RollbackChosen {
            id: d.entry.id.clone(),
            count: self.recovery.chosen.len(),
        });
        vec![]
    }

    /// What a partial rollback of the chosen items will do.
    pub fn partial_rollback_text(&self) -> Vec<String> {
        let Some(d) = &self.recovery.detail else {
            return vec![];
        };
        let ids: Vec<String> = self.recovery.chosen.iter().map(|i| i.to_string()).collect();
        let n = ids.len();
        vec![
            format!(
                "Remove only these {n} item{} from {}: {}.",
                if n == 1 { "" } else { "s" },
                store_name(&d.entry.to),
                ids.join(", ")
            ),
            "A value they overwrote is put back from the backup.".into(),
            "The other items stay migrated; the migration keeps its status.".into(),
            "Journaled as a partial rollback; history --migration-id shows which items \
             remain migrated."
                .into(),
        ]
    }

    pub(super) fn start_partial_rollback(&mut self) -> Vec<Effect> {
        let Some(d) = &self.recovery.detail else {
            return vec![];
        };
        let id = d.entry.id.clone();
        // Kept chosen until the rollback reports (a rejected passphrase
        // asks again for the same items).
        let items: Vec<CredentialId> = self.recovery.chosen.iter().cloned().collect();
        self.recovery.partial = Some(items.len());
        self.recovery.result = None;
        self.recovery.running = Some(RecoveryAction::Rollback);
        self.recovery.progress = RecoveryProgress::default();
        self.recovery.cancel_requested = false;
        self.error = None;
        vec![Effect::RollbackItems { id, items }]
    }

    /// The passphrase arrived for a recovery action: back to the detail,
    /// and the action's confirmation.
    pub(super) fn recovery_passphrase_given(&mut self) -> Vec<Effect> {
        self.step = Step::Detail;
        match self.recovery.pending.take() {
            Some(RecoveryAction::Rollback) if !self.recovery.chosen.is_empty() => {
                self.ask_partial_rollback()
            }
            Some(a) => self.ask_recovery(a),
            None => vec![],
        }
    }

    pub(super) fn start_recovery(&mut self, action: RecoveryAction) -> Vec<Effect> {
        let Some(d) = &self.recovery.detail else {
            return vec![];
        };
        let id = d.entry.id.clone();
        self.recovery.result = None;
        self.recovery.partial = None;
        self.recovery.running = Some(action);
        self.recovery.progress = RecoveryProgress::default();
        self.recovery.cancel_requested = false;
        self.error = None;
        self.busy = None;
        vec![Effect::Recover { action, id }]
    }

    pub(super) fn on_recovery_progress(&mut self, batch: Vec<Progress>) -> Vec<Effect> {
        let p = &mut self.recovery.progress;
        for e in batch {
            match e {
                Progress::Counts(c) => {
                    p.total = c.total;
                    p.done = c.done;
                }
                Progress::ItemVerified { .. } => p.verified += 1,
                Progress::ItemFailed { .. } => p.failed += 1,
                Progress::ItemUndone { .. } => p.undone += 1,
                Progress::RollingBack { reason } => p.rolling_back = Some(reason),
                Progress::Planned(c) => p.total = c.total,
                _ => {}
            }
        }
        vec![]
    }

    pub(super) fn on_recovery_finished(&mut self, report: Report) -> Vec<Effect> {
        self.busy = None;
        self.recovery.chosen.clear();
        // What it planned is what ran (or not): plan again next time.
        self.recovery.restore_preview = None;
        let action = self
            .recovery
            .running
            .take()
            .unwrap_or(RecoveryAction::Verify);
        self.recovery.done_log.push(format!(
            "{}: {}",
            report.migration_id,
            result_line(action, &report, self.recovery.partial)
        ));
        let code = if report.cancelled || report.failed > 0 {
            Outcome::Failed
        } else {
            Outcome::Completed
        };
        self.recovery.result = Some((action, report));
        self.error = None;
        if self.recovery.quit_after {
            return vec![Effect::Exit(code)];
        }
        match &self.recovery.detail {
            Some(d) => vec![Effect::LoadDetail {
                id: d.entry.id.clone(),
            }],
            None => vec![],
        }
    }

    /// The action failed without a report: nothing to show but the error
    /// (the journal says what happened; the detail is read again).
    pub(super) fn on_recovery_failed(&mut self, message: String) -> Vec<Effect> {
        let action = self.recovery.running.take();
        self.recovery.result = None;
        if let Some(a) = action {
            self.recovery
                .done_log
                .push(format!("{} failed: {message}", a.noun()));
        }
        self.error = Some(message);
        if self.recovery.quit_after {
            return vec![Effect::Exit(Outcome::Failed)];
        }
        match &self.recovery.detail {
            Some(d) if action.is_some() => vec![Effect::LoadDetail {
                id: d.entry.id.clone(),
            }],
            _ => vec![],
        }
    }

    /// The passphrase did not open the migration's backup (nothing ran):
    /// the passphrase screen again, with the reason, for the same action.
    pub(super) fn on_passphrase_rejected(&mut self, message: String) -> Vec<Effect> {
        let action = self.recovery.running.take();
        if self.recovery.quit_after {
            return vec![Effect::Exit(Outcome::Quit)];
        }
        self.recovery.pending = action;
        // A partial rollback keeps its chosen items for the next try.
        self.recovery.partial = None;
        self.passphrase.set = false;
        self.passphrase.mode = PassphraseMode::Unlock;
        self.passphrase.next = Step::Detail;
        self.passphrase.error = Some(message);
        self.error = None;
        self.step = Step::Passphrase;
        vec![]
    }

    /// Quit or Ctrl-C while an action runs: stop it after the batch at hand,
    /// then exit once its report is in.
    pub(super) fn cancel_recovery_and_quit(&mut self) -> Vec<Effect> {
        self.recovery.quit_after = true;
        if self.recovery.cancel_requested {
            return vec![];
        }
        self.recovery.cancel_requested = true;
        vec![Effect::CancelMigration]
    }

    /// Ids of the items the items pane shows (for tests and the screen).
    pub fn visible_item_ids(&self) -> Vec<CredentialId> {
        let Some(d) = &self.recovery.detail else {
            return Vec::new();
        };
        self.recovery
            .visible_items()
            .into_iter()
            .map(|i| d.items[i].id.clone())
            .collect()
    }
}
