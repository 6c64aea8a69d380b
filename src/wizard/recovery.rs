//! The recovery path: past migrations, and resume / roll back / verify / restore.

use std::path::PathBuf;

use super::{Confirm, Effect, Event, Step, Wizard};
use crate::engine::types::{HistoryEntry, Report};

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

/// One past migration as the recovery detail screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub entry: HistoryEntry,
    pub timeline: Vec<TimelineRow>,
    pub backup: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRow {
    /// Already formatted (`2026-11-23 00:45:12`).
    pub at: String,
    pub what: String,
}

/// The recovery path: the history, the cursor in it, the migration opened,
/// and the result of the last action on it.
#[derive(Debug, Clone, Default)]
pub struct RecoveryState {
    pub history: Vec<HistoryEntry>,
    pub cursor: usize,
    pub detail: Option<Detail>,
    pub result: Option<Report>,
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
        match event {
            Event::Recovery(action) if self.busy.is_none() => {
                if let Some(d) = &self.recovery.detail {
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
                self.recovery.detail = None;
                self.recovery.result = None;
                self.error = None;
                self.busy = Some("Reading the history…".into());
                vec![Effect::LoadHistory]
            }
            _ => vec![],
        }
    }
}
