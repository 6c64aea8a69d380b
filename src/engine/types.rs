//! Data the engine hands to its callers (CLI, wizard). Serializable, no
//! secrets: previews are masked, errors name ids and stores only.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::credential::{CredentialId, Kind};
use crate::engine::journal::{JournalEvent, UndoOutcome};
use crate::store::{Capability, LocationError, StoreIdentity, StoreSpec};

/// `20261123T004512Z-3fa9c1`: sorts by start time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MigrationId(pub String);

impl std::fmt::Display for MigrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    #[default]
    Skip,
    Overwrite,
}

/// Result of probing one store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    pub spec: StoreSpec,
    pub capability: Capability,
    /// What the spec names, as far as the probe could tell without
    /// connecting ([`crate::store::offline_identity`]): the wizard tells two
    /// specs of one store apart with it, without touching the file system.
    #[serde(skip)]
    pub location: Option<StoreIdentity>,
}

impl StoreReport {
    /// Whether both reports name one store (the same file under another
    /// name or scheme, ...), as their probes saw it.
    pub fn same_location(&self, other: &StoreReport) -> bool {
        match (&self.location, &other.location) {
            (Some(a), Some(b)) => a.same_store(b),
            _ => false,
        }
    }
}

/// Inventory status of one source item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Eligible,
    Invalid,
    Expired,
}

/// One source item as the inventory shows it (masked).
#[derive(Debug, Clone, Serialize)]
pub struct InventoryItem {
    pub id: CredentialId,
    pub kind: Kind,
    pub preview: String,
    pub metadata: crate::credential::Metadata,
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub store: StoreSpec,
    pub items: Vec<InventoryItem>,
    pub errors: Vec<LocationError>,
}

/// What the plan will do with one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Not at the target yet.
    Copy,
    /// Target holds a different value; the policy says overwrite (backed up first).
    Overwrite,
    /// Identical value already at the target.
    SkipIdentical,
    /// Target holds a different value; the policy says skip.
    Conflict,
    /// Empty value, duplicate id, ...
    Invalid { reason: String },
    /// Longer than the target accepts.
    TooLong { limit: usize, len: usize },
}

impl Action {
    /// Whether executing this item writes to the target.
    pub fn writes(&self) -> bool {
        matches!(self, Action::Copy | Action::Overwrite)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    pub id: CredentialId,
    pub kind: Kind,
    pub preview: String,
    #[serde(flatten)]
    pub action: Action,
    /// Non-blocking notes, e.g. "OAuth token expired at ...".
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCounts {
    pub total: usize,
    pub copy: usize,
    pub overwrite: usize,
    pub skip_identical: usize,
    pub conflict: usize,
    pub invalid: usize,
    pub too_long: usize,
    pub expired_warnings: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub from: StoreSpec,
    pub to: StoreSpec,
    pub on_conflict: ConflictPolicy,
    pub items: Vec<PlanItem>,
    pub counts: PlanCounts,
    #[serde(with = "duration_ms", rename = "estimated_ms")]
    pub estimated: Duration,
    pub source_errors: Vec<LocationError>,
    /// Plan-wide notes: target drops metadata, target is session-only, ...
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Names the prepared migration this plan belongs to (0: none), so a
    /// caller can check that what it executes is what was shown.
    #[serde(skip)]
    pub token: u64,
}

impl Plan {
    /// The items that executing this plan writes to the target.
    pub fn writes(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| i.action.writes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub id: CredentialId,
    pub error: String,
}

/// The migrate / resume / rollback report (CLI JSON contract: extend, never rename).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub migration_id: MigrationId,
    pub from: String,
    pub to: String,
    pub total: usize,
    pub copied: usize,
    pub skipped: usize,
    pub conflicts: usize,
    pub invalid: usize,
    pub failed: usize,
    pub rolled_back: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_reason: Option<String>,
    pub failures: Vec<Failure>,
    #[serde(default)]
    pub backup: Option<PathBuf>,
    #[serde(default)]
    pub verified: usize,
    /// Cleanup: deleted from the source after verifying.
    #[serde(default)]
    pub source_deleted: usize,
    /// Cleanup: "migrated, source still present".
    #[serde(default)]
    pub source_delete_failed: Vec<Failure>,
    /// The plan's warnings (the target drops metadata, is not persistent, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Items a rollback left as it found them because someone else wrote
    /// a value there after the migration (each also named in `warnings`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_changed: Vec<CredentialId>,
    /// What taking this operation's locks did (a stale lock taken over, a
    /// killed run's temp file removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<crate::store::LockNotice>,
    /// Source places that could not be read (each named in `warnings`).
    #[serde(default)]
    pub unreadable: usize,
    /// The migration's status once this operation ended, from its journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MigrationStatus>,
    /// The user cancelled this operation; it stopped after the batch at hand.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    Completed,
    RolledBack,
    Interrupted,
    Failed,
}

/// One row of `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: MigrationId,
    pub started_at: String,
    pub from: String,
    pub to: String,
    pub status: MigrationStatus,
    pub copied: usize,
    pub failed: usize,
}

/// Live progress from the worker thread. Small and cheap to send; a UI may
/// coalesce several into one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    BackupWritten {
        path: PathBuf,
        items: usize,
    },
    ItemStarted {
        index: usize,
        id: CredentialId,
    },
    ItemWritten {
        id: CredentialId,
    },
    ItemVerified {
        id: CredentialId,
    },
    ItemSkipped {
        id: CredentialId,
        reason: String,
    },
    ItemFailed {
        id: CredentialId,
        error: String,
    },
    Counts(Counts),
    RollingBack {
        reason: String,
    },
    /// One item undone during a rollback.
    ItemUndone {
        id: CredentialId,
        how: UndoOutcome,
    },
    /// The plan the worker is executing (counts only; the items are in the journal).
    Planned(PlanCounts),
    /// Cleanup removed this item from the source.
    SourceDeleted {
        id: CredentialId,
    },
    /// Cleanup could not remove it: "migrated, source still present".
    SourceDeleteFailed {
        id: CredentialId,
        error: String,
    },
    Finished(Box<Report>),
}

/// Running totals, with rate and ETA.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    pub total: usize,
    pub done: usize,
    pub written: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Items per second so far.
    pub rate: f64,
    pub eta: Option<Duration>,
}

impl Counts {
    /// Failed share of the items attempted so far (0.0 ..= 1.0).
    pub fn failure_rate(&self) -> f64 {
        let attempted = self.written + self.failed;
        if attempted == 0 {
            0.0
        } else {
            self.failed as f64 / attempted as f64
        }
    }
}

mod duration_ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// What to migrate: the same request from the wizard and the CLI.
#[derive(Debug, Clone)]
pub struct MigrationRequest {
    pub from: StoreSpec,
    pub to: StoreSpec,
    pub policy: ConflictPolicy,
    /// Only these ids (the wizard's selection); `None` means every item.
    pub selection: Option<std::collections::BTreeSet<CredentialId>>,
    /// After verifying, delete the verified items from the source. The
    /// caller must have asked for consent (CLI: `--delete-source --yes`).
    pub delete_source: bool,
}

/// One journal record as a support screen shows it. No secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub at: String,
    /// The record's kind (`started`, `write_begin`, `verified`, ...).
    pub event: JournalEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<CredentialId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every id a batch record names (`batch_begin`, `batch_done`,
    /// `delete_begin`, `rollback_part`), so support can tell which item was
    /// in which batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<CredentialId>,
}

/// A migration as the recovery screen shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationDetail {
    pub entry: HistoryEntry,
    /// The migration's folder (journal, plan, backup).
    pub dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<PathBuf>,
    pub on_conflict: ConflictPolicy,
    pub delete_source: bool,
    /// Every planned item with its state (secret-free).
    pub items: Vec<crate::engine::items::ItemView>,
    /// Recovery needs credshift's passphrase: the backup is sealed with the
    /// one the migration ran with, or a store is kept under it.
    pub needs_passphrase: bool,
    /// A rollback began (finished or not): resume is refused.
    pub rollback_began: bool,
    /// The migration finished and only its cleanup (deleting migrated
    /// items from the source) was stopped: resume only finishes that.
    pub cleanup_interrupted: bool,
    pub timeline: Vec<TimelineEntry>,
}

/// Result of `backup`: where it is and what protects it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub path: PathBuf,
    /// The generated key file, when no passphrase was in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    pub items: usize,
    pub errors: Vec<LocationError>,
    /// What taking the source's lock did (see [`Report::notices`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<crate::store::LockNotice>,
}
