//! A migration's folder (`STATE/migrations/<id>/`) and its state as the
//! journal tells it: what was planned, begun, verified, failed, undone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::credential::CredentialId;
use crate::engine::error::{EngineError, Result};
use crate::engine::journal::{self, BackupKeyKind, Line, PlannedItem, Record, Totals};
use crate::engine::types::{
    ConflictPolicy, Failure, HistoryEntry, MigrationId, MigrationStatus, Report, TimelineEntry,
};
use crate::error::StoreError;
use crate::fsutil;

pub const PLAN_FILE: &str = "plan.json";
pub const TARGET_BACKUP_FILE: &str = "target-before.enc";

pub fn migrations_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("migrations")
}

pub fn migration_dir(state_dir: &Path, id: &MigrationId) -> PathBuf {
    migrations_dir(state_dir).join(&id.0)
}

/// Create a new migration folder (0700) with a fresh, time-sortable id.
pub fn create(state_dir: &Path) -> Result<(MigrationId, PathBuf)> {
    let root = migrations_dir(state_dir);
    fsutil::ensure_private_dir(&root)?;
    for _ in 0..100 {
        let mut r = [0u8; 3];
        getrandom::fill(&mut r)
            .map_err(|e| StoreError::Other(format!("no randomness available: {e}")))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let id = MigrationId(format!("{stamp}-{}", hex::encode(r)));
        let dir = root.join(&id.0);
        match std::fs::DirBuilder::new().create(&dir) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(fsutil::DIR_MODE))
                    .map_err(|e| StoreError::io(&dir, e))?;
                return Ok((id, dir));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StoreError::io(&dir, e).into()),
        }
    }
    Err(EngineError::Refused(
        "could not create a unique migration folder".into(),
    ))
}

/// Everything the journal says about one migration.
#[derive(Debug, Clone)]
pub struct State {
    pub id: MigrationId,
    pub dir: PathBuf,
    pub started_at: String,
    pub from: String,
    pub to: String,
    pub on_conflict: ConflictPolicy,
    pub delete_source: bool,
    pub selection: Option<Vec<CredentialId>>,
    pub backup_key: BackupKeyKind,
    pub planned: Option<Vec<PlannedItem>>,
    pub backup: Option<PathBuf>,
    pub target_backup: Option<PathBuf>,
    /// Ids whose write began, in order, once each.
    pub begun: Vec<CredentialId>,
    pub verified: BTreeSet<CredentialId>,
    pub failed: BTreeMap<CredentialId, String>,
    pub undone: BTreeSet<CredentialId>,
    pub undo_failed: BTreeMap<CredentialId, String>,
    pub rollback_reason: Option<String>,
    pub rolled_back: Option<bool>,
    pub finished: Option<(MigrationStatus, Totals, Option<String>)>,
    pub source_deleted: BTreeSet<CredentialId>,
    pub source_delete_failed: BTreeMap<CredentialId, String>,
    pub lines: Vec<Line>,
}

impl State {
    pub fn load(state_dir: &Path, id: &MigrationId) -> Result<State> {
        let dir = migration_dir(state_dir, id);
        if id.0.contains(['/', '\\']) || id.0.starts_with('.') || !dir.is_dir() {
            return Err(EngineError::UnknownMigration {
                id: id.0.clone(),
                dir: migrations_dir(state_dir).display().to_string(),
            });
        }
        let lines = journal::read_lines(&dir.join(journal::JOURNAL_FILE))?;
        State::from_lines(id.clone(), dir, lines)
    }

    pub fn from_lines(id: MigrationId, dir: PathBuf, lines: Vec<Line>) -> Result<State> {
        let Some(first) = lines.first() else {
            return Err(StoreError::parse(
                dir.join(journal::JOURNAL_FILE).display().to_string(),
                "empty journal",
            )
            .into());
        };
        let Record::Started {
            from,
            to,
            on_conflict,
            delete_source,
            selection,
            backup_key,
            ..
        } = &first.record
        else {
            return Err(StoreError::parse(
                format!("{}:1", dir.join(journal::JOURNAL_FILE).display()),
                "the first record is not `started`",
            )
            .into());
        };
        let mut s = State {
            id,
            started_at: first.at.clone(),
            from: from.clone(),
            to: to.clone(),
            on_conflict: *on_conflict,
            delete_source: *delete_source,
            selection: selection.clone(),
            backup_key: *backup_key,
            dir,
            planned: None,
            backup: None,
            target_backup: None,
            begun: Vec::new(),
            verified: BTreeSet::new(),
            failed: BTreeMap::new(),
            undone: BTreeSet::new(),
            undo_failed: BTreeMap::new(),
            rollback_reason: None,
            rolled_back: None,
            finished: None,
            source_deleted: BTreeSet::new(),
            source_delete_failed: BTreeMap::new(),
            lines: Vec::new(),
        };
        let mut begun_set = BTreeSet::new();
        for l in &lines {
            match &l.record {
                Record::Started { .. } | Record::VerifyRun { .. } => {}
                Record::Planned { items } => s.planned = Some(items.clone()),
                Record::BackupWritten { path, .. } => {
                    s.backup = Some(path.clone());
                    let t = s.dir.join(TARGET_BACKUP_FILE);
                    if t.exists() {
                        s.target_backup = Some(t);
                    }
                }
                Record::WriteBegin { id } => {
                    if begun_set.insert(id.clone()) {
                        s.begun.push(id.clone());
                    }
                }
                Record::Verified { id } => {
                    s.failed.remove(id);
                    s.verified.insert(id.clone());
                }
                Record::Failed { id, error } => {
                    s.verified.remove(id);
                    s.failed.insert(id.clone(), error.clone());
                }
                Record::RollbackStarted { reason } => {
                    s.rollback_reason = Some(reason.clone());
                    s.rolled_back = Some(false);
                }
                Record::Undone { id, .. } => {
                    s.undo_failed.remove(id);
                    s.undone.insert(id.clone());
                }
                Record::UndoFailed { id, error } => {
                    s.undo_failed.insert(id.clone(), error.clone());
                }
                Record::RolledBack { complete } => s.rolled_back = Some(*complete),
                Record::Finished {
                    status,
                    totals,
                    reason,
                } => s.finished = Some((*status, totals.clone(), reason.clone())),
                Record::Resumed => s.finished = None,
                Record::SourceDeleted { id } => {
                    s.source_delete_failed.remove(id);
                    s.source_deleted.insert(id.clone());
                }
                Record::SourceDeleteFailed { id, error } => {
                    s.source_delete_failed.insert(id.clone(), error.clone());
                }
            }
        }
        s.lines = lines;
        Ok(s)
    }

    pub fn status(&self) -> MigrationStatus {
        match self.rolled_back {
            Some(true) => return MigrationStatus::RolledBack,
            Some(false) => return MigrationStatus::Interrupted,
            None => {}
        }
        match &self.finished {
            Some((status, _, _)) => *status,
            None => MigrationStatus::Interrupted,
        }
    }

    pub fn planned_item(&self, id: &CredentialId) -> Option<&PlannedItem> {
        self.planned.as_ref()?.iter().find(|p| &p.id == id)
    }

    fn count(&self, action: &str) -> usize {
        self.planned
            .as_ref()
            .map_or(0, |p| p.iter().filter(|i| i.action == action).count())
    }

    /// Items this migration put at the target that are still there.
    pub fn copied(&self) -> usize {
        if self.rolled_back.is_some() {
            return self.verified.difference(&self.undone).count();
        }
        self.verified.len()
    }

    pub fn totals(&self) -> Totals {
        Totals {
            total: self.planned.as_ref().map_or(0, Vec::len),
            copied: self.copied(),
            skipped: self.count("skip_identical"),
            conflicts: self.count("conflict"),
            invalid: self.count("invalid") + self.count("too_long"),
            failed: self.failed.len(),
        }
    }

    pub fn history_entry(&self) -> HistoryEntry {
        HistoryEntry {
            id: self.id.clone(),
            started_at: self.started_at.clone(),
            // Redacted again: a journal from a version whose redaction
            // stopped at a `/` in the password must not show it now.
            from: crate::store::redact_url(&self.from),
            to: crate::store::redact_url(&self.to),
            status: self.status(),
            copied: self.copied(),
            failed: self.failed.len(),
        }
    }

    pub fn report(&self) -> Report {
        let t = self.totals();
        let mut failures: Vec<Failure> = self
            .failed
            .iter()
            .map(|(id, e)| Failure {
                id: id.clone(),
                error: e.clone(),
            })
            .collect();
        failures.extend(self.undo_failed.iter().map(|(id, e)| Failure {
            id: id.clone(),
            error: format!("rollback: {e}"),
        }));
        let rollback_reason = match (self.rolled_back, &self.rollback_reason) {
            (Some(false), Some(r)) => Some(format!(
                "{r}; the rollback is incomplete, run `credshift rollback --migration-id {}`",
                self.id
            )),
            (_, r) => r.clone(),
        };
        Report {
            migration_id: self.id.clone(),
            from: crate::store::redact_url(&self.from),
            to: crate::store::redact_url(&self.to),
            total: t.total,
            copied: t.copied,
            skipped: t.skipped,
            conflicts: t.conflicts,
            invalid: t.invalid,
            failed: t.failed,
            rolled_back: self.rolled_back == Some(true),
            rollback_reason,
            failures,
            backup: self.backup.clone(),
            verified: self.verified.difference(&self.undone).count(),
            source_deleted: self.source_deleted.len(),
            source_delete_failed: self
                .source_delete_failed
                .iter()
                .map(|(id, e)| Failure {
                    id: id.clone(),
                    error: e.clone(),
                })
                .collect(),
        }
    }

    pub fn timeline(&self) -> Vec<TimelineEntry> {
        self.lines
            .iter()
            .map(|l| {
                let (id, detail) = match &l.record {
                    Record::Started { from, to, .. } => (None, Some(format!("{from} -> {to}"))),
                    Record::Planned { items } => (None, Some(format!("{} items", items.len()))),
                    Record::BackupWritten { path, items } => {
                        (None, Some(format!("{} ({items} items)", path.display())))
                    }
                    Record::WriteBegin { id }
                    | Record::Verified { id }
                    | Record::SourceDeleted { id } => (Some(id.clone()), None),
                    Record::Failed { id, error }
                    | Record::UndoFailed { id, error }
                    | Record::SourceDeleteFailed { id, error } => {
                        (Some(id.clone()), Some(error.clone()))
                    }
                    Record::Undone { id, how } => (Some(id.clone()), Some(how.clone())),
                    Record::RollbackStarted { reason } => (None, Some(reason.clone())),
                    Record::RolledBack { complete } => (
                        None,
                        Some(if *complete { "complete" } else { "incomplete" }.into()),
                    ),
                    Record::Finished { status, reason, .. } => (
                        None,
                        Some(match reason {
                            Some(r) => format!("{status:?}: {r}"),
                            None => format!("{status:?}"),
                        }),
                    ),
                    Record::VerifyRun {
                        verified,
                        mismatched,
                    } => (
                        None,
                        Some(format!("{verified} verified, {mismatched} mismatched")),
                    ),
                    Record::Resumed => (None, None),
                };
                TimelineEntry {
                    seq: l.seq,
                    at: l.at.clone(),
                    event: l.record.event().to_string(),
                    id,
                    detail,
                }
            })
            .collect()
    }
}
