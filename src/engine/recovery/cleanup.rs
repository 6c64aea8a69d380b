//! Cleanup: delete from the source what a migration verified, each delete compared.

use super::*;

/// Delete from the source the items a finished migration verified (or
/// finish a cleanup that was interrupted). The caller must have the
/// user's consent.
pub fn cleanup(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<Report> {
    cleanup_with(state_dir, id, opts, &Control::default())
}

/// [`cleanup`] with progress (a `source_deleted` or `source_delete_failed`
/// event per item) and cancel: it stops between batches, the report says
/// `cancelled`, and the cleanup stays interrupted (`resume` finishes it);
/// nothing after the batch at hand is deleted.
pub fn cleanup_with(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    ctl: &Control,
) -> Result<Report> {
    let st = State::load(state_dir, id)?;
    cleanable(&st, id)?;
    // Only the head is kept while the session reads the journal again
    // under the locks (one full state at a time).
    let head = st.head();
    drop(st);
    #[cfg(test)]
    hooks::before_locks(state_dir, id);
    // Cleanup deletes from the source and compares with the target.
    let Recovered {
        source,
        target,
        keys,
        mut journal,
        locks,
        ..
    } = session::recover_head(state_dir, &head, opts, Some(Use::WRITE), Some(Use::READ))?;
    // Checked again on the state read under the locks: another process
    // (a rollback, say) may have moved the migration on in between.
    cleanable(journal.state()?, id)?;
    let (Some(source), Some(target)) = (source, target) else {
        return Err(EngineError::Refused("a store is missing".into()));
    };
    run_cleanup(
        state_dir,
        id,
        &mut journal,
        &keys.fp,
        source.as_ref(),
        target.as_ref(),
        ctl,
    )
    .map(|r| noted(r, &locks))
}

/// Refused unless `st` is a finished migration (or an interrupted cleanup).
fn cleanable(st: &State, id: &MigrationId) -> Result<()> {
    let interrupted_cleanup = st.recorded.cleanup == Some(false) && st.recorded.finished.is_some();
    match st.status() {
        MigrationStatus::Completed | MigrationStatus::Failed => Ok(()),
        _ if interrupted_cleanup => Ok(()),
        other => Err(EngineError::Refused(format!(
            "migration {id} is {}; only a finished migration can be cleaned up",
            status_word(other)
        ))),
    }
}

/// Cleanup of a finished migration (asked for, or left interrupted), with
/// its audit line: "failed" when a verified item is still in the source.
pub(super) fn run_cleanup(
    state_dir: &Path,
    id: &MigrationId,
    journal: &mut Journal,
    fp: &fingerprint::FpKey,
    source: &dyn Store,
    target: &dyn Store,
    ctl: &Control,
) -> Result<Report> {
    let finished = cleanup_items_cancellable(journal, fp, source, target, ctl)?;
    let st = journal.state()?;
    let outcome = if !finished {
        "interrupted"
    } else if st.recorded.source_delete_failed.is_empty() {
        "completed"
    } else {
        "failed"
    };
    audit_action(state_dir, id, st, "cleanup", outcome, st.totals());
    let mut report = st.report();
    report.cancelled = !finished;
    Ok(report)
}

/// Test aid: a step run between cleanup's status check and its locks, so
/// a test can move the migration on there as another process could.
#[cfg(test)]
pub(crate) mod hooks {
    use std::cell::Cell;
    use std::path::Path;

    use crate::engine::types::MigrationId;

    type Hook = fn(&Path, &MigrationId);

    thread_local! {
        static BEFORE_LOCKS: Cell<Option<Hook>> = const { Cell::new(None) };
    }

    /// Run `f` (once) at the next cleanup on this thread, before its locks.
    pub fn set_before_locks(f: fn(&Path, &MigrationId)) {
        BEFORE_LOCKS.with(|h| h.set(Some(f)));
    }

    pub(super) fn before_locks(state_dir: &Path, id: &MigrationId) {
        if let Some(f) = BEFORE_LOCKS.with(|h| h.take()) {
            f(state_dir, id);
        }
    }
}
