//! Support steps that work from the journal, one file per job: history and
//! detail here (with what they share), `verify`, `cleanup`, `resume`,
//! `rollback`, and the stand-alone `backup` and restore.

mod backup;
mod cleanup;
mod resume;
mod rollback;
mod verify;

pub use backup::*;
pub use cleanup::*;
pub use resume::*;
pub use rollback::*;
pub use verify::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::credential::{Credential, CredentialId};
use crate::crypto::envelope;
use crate::engine::audit;
use crate::engine::backup_file::{self, BackupKey};
use crate::engine::error::{EngineError, Result};
use crate::engine::execute::{
    self, Control, MigrationKeys, Run, UndoScope, migration_backup_key,
    planned_items, undo_all,
};
use crate::engine::fingerprint;
use crate::engine::item_loops::cleanup_items_cancellable;
use crate::engine::inventory::now_ms;
use crate::engine::journal::{Journal, PlannedAction, Record, Totals, UndoOutcome};
use crate::engine::plan;
use crate::engine::replan;
use crate::engine::session::{self, Recovered, Use};
use crate::engine::state::{self, State};
use crate::engine::types::{
    Action, BackupSummary, ConflictPolicy, Failure, HistoryEntry, MigrationDetail, MigrationId,
    MigrationRequest, MigrationStatus, Progress, Report,
};
use crate::error::StoreError;
use crate::store::memory::MemStore;
use crate::store::{self, Store, StoreSpec};
use crate::unlock::KeyOptions;

/// Every migration in the state dir, oldest first. A folder whose journal
/// cannot be read is left out (it never hides the others).
pub fn history(state_dir: &Path) -> Result<Vec<HistoryEntry>> {
    let root = state::migrations_dir(state_dir);
    let rd = match std::fs::read_dir(&root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&root, e).into()),
    };
    let mut ids: Vec<MigrationId> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(|s| MigrationId(s.to_string())))
        .collect();
    ids.sort();
    let mut entries: Vec<HistoryEntry> = ids
        .iter()
        .filter_map(|id| State::load(state_dir, id).ok())
        .map(|s| s.history_entry())
        .collect();
    // Rekeys keep their own journal beside a migration's (`engine::rekey`).
    entries.extend(crate::engine::rekey::history(state_dir));
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(entries)
}

/// One migration with its timeline, for a support screen.
pub fn detail(state_dir: &Path, id: &MigrationId) -> Result<MigrationDetail> {
    let s = State::load_with_records(state_dir, id)?;
    let under = |spec: &str| {
        spec.parse::<StoreSpec>()
            .is_ok_and(|s| needs_passphrase(&s))
    };
    Ok(MigrationDetail {
        entry: s.history_entry(),
        dir: s.dir.clone(),
        backup: s.recorded.backup.clone(),
        on_conflict: s.on_conflict,
        delete_source: s.delete_source,
        items: crate::engine::items::items(&s),
        needs_passphrase: s.backup_key == crate::engine::journal::BackupKeyKind::Passphrase
            || under(&s.from)
            || under(&s.to),
        rollback_began: s.recorded.rolled_back.is_some(),
        cleanup_interrupted: s.recorded.finished.is_some() && s.recorded.cleanup == Some(false),
        timeline: s.timeline(),
    })
}

/// Whether opening `spec` needs credshift's passphrase: a store under it,
/// except an envelope sealed with a key file (the backup a restore reads
/// when it was made without a passphrase), which asked for none.
fn needs_passphrase(spec: &StoreSpec) -> bool {
    if !spec.under_passphrase() {
        return false;
    }
    let Some(bytes) = spec.path().and_then(|p| std::fs::read(p).ok()) else {
        return true;
    };
    let location = spec.to_string();
    !envelope::Envelope::parse(&bytes, &location, true)
        .is_ok_and(|e| *e.params() == envelope::KdfParams::None)
}

fn load_backup(
    state: &State,
    keys: &MigrationKeys,
    file: Option<&Path>,
    opts: &KeyOptions,
) -> Result<BTreeMap<CredentialId, Credential>> {
    let Some(path) = file else {
        return Ok(BTreeMap::new());
    };
    let location = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let env = envelope::Envelope::parse(&bytes, &location, true)?;
    let creds = if env.params() == keys.sealing.params() {
        // Sealed with the migration's key: no second derivation.
        let plain = keys.sealing.open(&env)?;
        envelope::decode_credentials(&plain, &location)?
    } else {
        let main = state.recorded.backup.clone().unwrap_or_else(|| path.to_path_buf());
        let key = migration_backup_key(state, &main, opts)?;
        backup_file::read(path, &key, opts)?
    };
    Ok(creds.into_iter().map(|c| (c.id.clone(), c)).collect())
}

/// `r` with what taking `locks` did.
fn noted(mut r: Report, locks: &session::Locks) -> Report {
    r.notices = locks.notices();
    r
}

/// The audit line of an action on a recorded migration (best effort: the
/// journal already holds the action).
fn audit_action(
    state_dir: &Path,
    id: &MigrationId,
    st: &State,
    action: &str,
    outcome: &str,
    counts: Totals,
) {
    let _ = audit::append(
        state_dir,
        audit::AuditEntry {
            action,
            from: Some(st.from.clone()),
            to: Some(st.to.clone()),
            migration_id: Some(id.0.clone()),
            outcome,
            counts,
        },
    );
}

pub fn status_word(s: MigrationStatus) -> &'static str {
    match s {
        MigrationStatus::Completed => "completed",
        MigrationStatus::RolledBack => "rolled_back",
        MigrationStatus::Interrupted => "interrupted",
        MigrationStatus::Failed => "failed",
    }
}

/// An operation on a recorded migration, for [`start_recovery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOp {
    Resume,
    Rollback,
    Verify,
    Cleanup,
    /// Write the migration's backup back into its source: a new migration
    /// (its own journal and backup), values changed since the backup skipped.
    Restore,
}

/// Start `op` on migration `id` on a worker thread: the same
/// [`execute::MigrationHandle`] as a migration (progress events, cancel
/// after the batch at hand, join), the same session preamble inside. A
/// restore's handle is the new migration's (its id is the restore's). A
/// restore opens its backup here (a key derivation): call this off a UI
/// thread. `cancel` is the job's cancel flag, as for [`execute::start`].
pub fn start_recovery(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    op: RecoveryOp,
    cancel: Arc<AtomicBool>,
) -> Result<execute::MigrationHandle> {
    if op == RecoveryOp::Restore {
        let st = State::load(state_dir, id)?;
        let backup_file = st.recorded.backup.clone().ok_or_else(|| {
            EngineError::Refused(format!("migration {id} has no backup to restore"))
        })?;
        let to: StoreSpec = st
            .from
            .parse()
            .map_err(|e: store::BadSpec| EngineError::Refused(e.to_string()))?;
        return start_restore(
            &backup_file,
            &to,
            state_dir,
            opts,
            ConflictPolicy::Skip,
            cancel,
        );
    }
    let dir = state::migration_dir(state_dir, id);
    let (state_dir, mid, opts) = (state_dir.to_path_buf(), id.clone(), opts.clone());
    let name = format!("{op:?}").to_lowercase();
    execute::spawn_job(id.clone(), dir, &name, cancel, move |ctl| match op {
        RecoveryOp::Resume => resume_with(&state_dir, &mid, &opts, &ctl),
        RecoveryOp::Rollback => rollback_with(&state_dir, &mid, &opts, &ctl),
        RecoveryOp::Verify => verify_with(&state_dir, &mid, &opts, &ctl),
        RecoveryOp::Cleanup => cleanup_with(&state_dir, &mid, &opts, &ctl),
        RecoveryOp::Restore => Err(EngineError::Refused("restore runs as a migration".into())),
    })
}
