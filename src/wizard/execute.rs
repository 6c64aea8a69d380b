//! Step 5: the migration runs; progress, cancel, rollback.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use super::{Effect, Event, Outcome, Step, Wizard};
use crate::credential::CredentialId;
use crate::engine::types::{Counts, MigrationId, Progress, Report};

/// Lines of the per-item log kept for the Execute screen.
pub const LOG_TAIL: usize = 200;

/// Live state of the Execute screen (and what Verify and Done show of the
/// run). From the start on the wizard keeps one row per plan item: its id
/// and its outcome; the inventory and the plan's other columns are dropped
/// when the migration starts (no screen after it shows them).
#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub id: Option<MigrationId>,
    pub counts: Counts,
    pub log: VecDeque<LogLine>,
    pub backup: Option<PathBuf>,
    pub rolling_back: Option<String>,
    pub cancel_requested: bool,
    pub quit_after: bool,
    /// The plan's ids, in plan order (moved out of the plan at the start).
    pub items: Vec<CredentialId>,
    /// Per plan item, in plan order.
    pub outcomes: Vec<ItemOutcome>,
    /// Plan position by id (progress lookups in O(log n), no copy of the ids).
    pub index: PlanIndex,
    pub report: Option<Report>,
    /// The engine began writing to the target (an item started): from
    /// here on, a failure can no longer mean "nothing was written".
    pub writes_began: bool,
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

/// A plan item's position from its id, without a second copy of every id.
/// A plan's items come in ascending id order, so the ids are searched by
/// halves; only a plan out of order (none the engine makes) gets a map from
/// the id's hash to the position, checked against the ids.
#[derive(Debug, Clone, Default)]
pub struct PlanIndex {
    /// The ids are in strictly ascending order: `by_hash` stays empty.
    sorted: bool,
    /// `usize::MAX`: more than one id has this hash (then the ids are
    /// searched; with 64-bit hashes, practically never).
    by_hash: HashMap<u64, usize>,
}

impl PlanIndex {
    pub fn new(ids: &[CredentialId]) -> Self {
        if ids.windows(2).all(|w| w[0] < w[1]) {
            return PlanIndex {
                sorted: true,
                by_hash: HashMap::new(),
            };
        }
        let mut by_hash = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            by_hash
                .entry(hash(id))
                .and_modify(|p| *p = usize::MAX)
                .or_insert(i);
        }
        PlanIndex {
            sorted: false,
            by_hash,
        }
    }

    /// Where `id` is in `ids` (the ids this index was built from).
    pub fn find(&self, ids: &[CredentialId], id: &CredentialId) -> Option<usize> {
        if self.sorted {
            return ids.binary_search(id).ok();
        }
        match self.by_hash.get(&hash(id)) {
            Some(&usize::MAX) => ids.iter().position(|it| it == id),
            Some(&p) => ids.get(p).is_some_and(|it| it == id).then_some(p),
            None => None,
        }
    }

    /// Whether the lookups search the ids (no map is held).
    pub fn holds_no_map(&self) -> bool {
        self.by_hash.is_empty()
    }
}

fn hash(id: &CredentialId) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Wizard {
    pub(super) fn start_migration(&mut self) -> Vec<Effect> {
        let (Some(from), Some(to), Some(plan_token)) = (
            self.source_spec().cloned(),
            self.target_spec().cloned(),
            self.dry_run.plan.as_ref().map(|p| p.token),
        ) else {
            return vec![];
        };
        // No screen goes back to the inventory or the dry run once the
        // migration starts: the selection moves to the engine, the plan
        // keeps only its ids (the Verify screen's rows).
        let selection = self.take_selected_ids();
        let plan_items = self
            .dry_run
            .plan
            .take()
            .map(|p| p.items)
            .unwrap_or_default();
        // Ids share their text (`IdStr`): a copy is a pointer each.
        let items: Vec<CredentialId> = plan_items.iter().map(|it| it.id.clone()).collect();
        self.dry_run.cursor = 0;
        self.run = RunState {
            outcomes: vec![ItemOutcome::Pending; items.len()],
            index: PlanIndex::new(&items),
            counts: Counts {
                total: items.len(),
                ..Counts::default()
            },
            items,
            ..RunState::default()
        };
        self.step = Step::Execute;
        self.error = None;
        vec![Effect::StartMigration {
            from,
            to,
            policy: self.dry_run.policy,
            selection,
            plan_token,
            plan_items,
        }]
    }

    pub(super) fn on_progress(&mut self, batch: Vec<Progress>) -> Vec<Effect> {
        let index = std::mem::take(&mut self.run.index);
        let items = std::mem::take(&mut self.run.items);
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
                Progress::ItemStarted { .. } => self.run.writes_began = true,
                Progress::ItemWritten { id } => {
                    self.run.writes_began = true;
                    if let Some(i) = index.find(&items, &id) {
                        updates.push((i, ItemOutcome::Written));
                    }
                }
                Progress::ItemVerified { id } => {
                    self.run.writes_began = true;
                    if let Some(i) = index.find(&items, &id) {
                        updates.push((i, ItemOutcome::Verified));
                    }
                    self.run
                        .log
                        .push_back(LogLine::Ok(format!("{id} copied and read back")));
                }
                Progress::ItemSkipped { id, reason } => {
                    if let Some(i) = index.find(&items, &id) {
                        updates.push((i, ItemOutcome::Skipped(reason.clone())));
                    }
                    self.run
                        .log
                        .push_back(LogLine::Skip(format!("{id} skipped: {reason}")));
                }
                Progress::ItemFailed { id, error } => {
                    self.run.writes_began = true;
                    if let Some(i) = index.find(&items, &id) {
                        updates.push((i, ItemOutcome::Failed(error.clone())));
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
                Progress::Finished(report) => {
                    // What taking the locks did (a stale lock taken over,
                    // a killed run's temp file removed).
                    for n in &report.notices {
                        self.run.log.push_back(LogLine::Info(n.to_string()));
                    }
                    finished = Some(*report);
                }
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
        self.run.items = items;
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

    pub(super) fn on_finished(&mut self, report: Report) -> Vec<Effect> {
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
        self.verify.cursor = 0;
        self.busy = Some("Reading back every item from the target…".into());
        // A cancel that came too late for the run is not one for verify.
        self.run.cancel_requested = false;
        vec![Effect::Verify { id }]
    }

    pub(super) fn on_execute(&mut self, event: Event) -> Vec<Effect> {
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
}
