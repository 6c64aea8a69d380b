//! Cleanup: delete from the source what a migration verified, each delete compared.

use super::*;

/// Delete from the source the items a finished migration verified (or
/// finish a cleanup that was interrupted). The caller must have the
/// user's consent.
pub fn cleanup(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<Report> {
    let st = State::load(state_dir, id)?;
    let interrupted_cleanup = st.cleanup == Some(false) && st.finished.is_some();
    match st.status() {
        MigrationStatus::Completed | MigrationStatus::Failed => {}
        _ if interrupted_cleanup => {}
        other => {
            return Err(EngineError::Refused(format!(
                "migration {id} is {}; only a finished migration can be cleaned up",
                status_word(other)
            )));
        }
    }
    // Only the head is kept while the session reads the journal again
    // under the locks (one full state at a time).
    let head = st.head();
    drop(st);
    // Cleanup deletes from the source and compares with the target.
    let Recovered {
        source,
        target,
        keys,
        mut journal,
        locks,
        ..
    } = session::recover_head(state_dir, &head, opts, Some(Use::WRITE), Some(Use::READ))?;
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
        &Control::default(),
    )
    .map(|r| noted(r, &locks))
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
    cleanup_items(journal, fp, source, target, ctl)?;
    let st = journal.state()?;
    let outcome = if st.source_delete_failed.is_empty() {
        "completed"
    } else {
        "failed"
    };
    audit_action(state_dir, id, st, "cleanup", outcome, st.totals());
    Ok(st.report())
}
