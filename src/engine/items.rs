//! What happened to each planned item of a migration, from its journal:
//! the per-item view support reads (`history --migration-id ID --json`, the
//! wizard's item screen). Ids, actions, states and the stores' own error
//! texts only: never a value or a fingerprint.

use std::collections::HashMap;

use serde::Serialize;

use crate::credential::CredentialId;
use crate::engine::journal::{PlannedAction, Record, UndoOutcome};
use crate::engine::state::State;

/// Where one planned item stands at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// To be written; no write began yet.
    Planned,
    /// A write began and no outcome was journaled (a crash, or in flight):
    /// the value may be at the target.
    Written,
    /// Written and read back equal.
    Verified,
    /// The write or its read-back failed (`reason` says why, in full).
    Failed,
    /// Not written: the same value was already at the target, or the item
    /// is invalid or too long for the target (`reason`).
    Skipped,
    /// A different value is at the target; skipped (the policy was skip).
    Conflict,
    /// Written, then undone by a rollback.
    RolledBack,
    /// A rollback could not undo it (`reason`): it may still be at the target.
    RollbackFailed,
}

impl ItemState {
    pub fn word(self) -> &'static str {
        match self {
            ItemState::Planned => "planned",
            ItemState::Written => "written",
            ItemState::Verified => "verified",
            ItemState::Failed => "failed",
            ItemState::Skipped => "skipped",
            ItemState::Conflict => "conflict",
            ItemState::RolledBack => "rolled back",
            ItemState::RollbackFailed => "rollback failed",
        }
    }
}

/// Where one planned item stands in the source (only cleanup changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Left in the source (no cleanup touched it).
    Kept,
    /// Cleanup deleted it from the source (it is in the backup).
    Deleted,
    /// Cleanup tried and it is still there: "migrated, source still present".
    DeleteFailed,
    /// A delete began and no outcome was journaled: check the source.
    DeleteBegun,
    /// A rollback put it back into the source from the backup.
    Restored,
}

/// One planned item as the journal tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemView {
    pub id: CredentialId,
    /// What the plan decided: copy, overwrite, skip_identical, conflict,
    /// invalid, too_long.
    pub action: PlannedAction,
    pub state: ItemState,
    /// Why it failed, was skipped or could not be undone, in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub source: SourceState,
    /// The `seq` of the journal's last `batch_begin` naming this item (the
    /// timeline lists each batch's ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
}

/// Every planned item, in plan order, with its state.
pub fn items(st: &State) -> Vec<ItemView> {
    let mut batch: HashMap<&CredentialId, u64> = HashMap::new();
    let mut source_restored: HashMap<&CredentialId, bool> = HashMap::new();
    for l in &st.recorded.lines {
        match &l.record {
            Record::BatchBegin { ids } => {
                for id in ids {
                    batch.insert(id, l.seq);
                }
            }
            Record::WriteBegin { id } => {
                batch.insert(id, l.seq);
            }
            // Journaled only by putting a deleted source item back.
            Record::Undone {
                id,
                how: UndoOutcome::SourceRestored,
            } => {
                source_restored.insert(id, true);
            }
            _ => {}
        }
    }
    let Some(planned) = &st.recorded.planned else {
        return Vec::new();
    };
    planned
        .iter()
        .map(|p| {
            let id = &p.id;
            let (state, reason) = if let Some(e) = st.recorded.undo_failed.get(id) {
                (ItemState::RollbackFailed, Some(e.clone()))
            } else if let Some(e) = st.recorded.failed.get(id) {
                // Failed stays failed after a rollback: its reason is
                // what support needs.
                (ItemState::Failed, Some(e.clone()))
            } else if st.is_undone(id) && st.began(id) {
                (ItemState::RolledBack, None)
            } else if st.is_verified(id) {
                (ItemState::Verified, None)
            } else if st.began(id) {
                (ItemState::Written, None)
            } else {
                match p.action {
                    PlannedAction::Copy | PlannedAction::Overwrite => (ItemState::Planned, None),
                    PlannedAction::Conflict => (
                        ItemState::Conflict,
                        Some("a different value is at the target; skipped".into()),
                    ),
                    PlannedAction::SkipIdentical => (
                        ItemState::Skipped,
                        Some("the same value is already at the target".into()),
                    ),
                    PlannedAction::TooLong => {
                        (ItemState::Skipped, Some("too long for the target".into()))
                    }
                    PlannedAction::Invalid => (
                        ItemState::Skipped,
                        Some("invalid (the dry run named why); not migrated".into()),
                    ),
                }
            };
            let source = if source_restored.contains_key(id) {
                SourceState::Restored
            } else if st.is_source_deleted(id) {
                SourceState::Deleted
            } else if st.recorded.source_delete_failed.contains_key(id) {
                SourceState::DeleteFailed
            } else if st.delete_began(id) {
                SourceState::DeleteBegun
            } else {
                SourceState::Kept
            };
            ItemView {
                id: id.clone(),
                action: p.action,
                state,
                reason,
                source,
                batch: batch.get(id).copied(),
            }
        })
        .collect()
}
