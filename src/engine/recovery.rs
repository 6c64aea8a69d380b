//! Support steps that work from the journal: history, detail, verify,
//! cleanup, resume, rollback; and the stand-alone backup and restore.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use crate::credential::{Credential, CredentialId};
use crate::crypto::envelope;
use crate::engine::audit;
use crate::engine::backup_file::{self, BackupKey};
use crate::engine::error::{EngineError, Result};
use crate::engine::execute::{
    self, Control, MigrationKeys, Run, UndoScope, cleanup_items, migration_backup_key,
    planned_items, undo_all,
};
use crate::engine::fingerprint;
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
    let s = State::load(state_dir, id)?;
    let under = |spec: &str| {
        spec.parse::<StoreSpec>()
            .is_ok_and(|s| s.under_passphrase())
    };
    Ok(MigrationDetail {
        entry: s.history_entry(),
        dir: s.dir.clone(),
        backup: s.backup.clone(),
        on_conflict: s.on_conflict,
        delete_source: s.delete_source,
        items: crate::engine::items::items(&s),
        needs_passphrase: s.backup_key == crate::engine::journal::BackupKeyKind::Passphrase
            || under(&s.from)
            || under(&s.to),
        rollback_began: s.rolled_back.is_some(),
        timeline: s.timeline(),
    })
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
        let main = state.backup.clone().unwrap_or_else(|| path.to_path_buf());
        let key = migration_backup_key(state, &main, opts)?;
        backup_file::read(path, &key, opts)?
    };
    Ok(creds.into_iter().map(|c| (c.id.clone(), c)).collect())
}

/// Read back what a migration wrote and compare it with the journal's
/// fingerprints (value, and metadata when the target keeps it).
pub fn verify(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<Report> {
    verify_with(state_dir, id, opts, &Control::default())
}

/// [`verify`] with progress (a `counts` event per item) and cancel (it
/// stops reading; the report counts what was read).
pub fn verify_with(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    ctl: &Control,
) -> Result<Report> {
    let st = State::load(state_dir, id)?;
    // Verify reads the target; the source is held shared when it is there
    // so no cleanup or other writer runs beside it.
    let Recovered {
        st,
        target,
        keys,
        mut journal,
        locks,
        ..
    } = session::recover(
        state_dir,
        &st,
        opts,
        Some(Use::READ_IF_THERE),
        Some(Use::READ),
    )?;
    let target = target.ok_or_else(|| EngineError::Refused("no target".into()))?;
    let fp = keys.fp;
    let keeps = target.probe().keeps_metadata;
    let mut failures = Vec::new();
    let mut ok = 0;
    let todo: Vec<&CredentialId> = st.verified.difference(&st.undone).collect();
    let mut cancelled = false;
    for (n, cid) in todo.iter().copied().enumerate() {
        if ctl.cancelled() {
            cancelled = true;
            break;
        }
        ctl.send(Progress::Counts(crate::engine::types::Counts {
            total: todo.len(),
            done: n,
            written: ok,
            failed: failures.len(),
            ..Default::default()
        }));
        let Some(p) = st.planned_item(cid) else {
            continue;
        };
        let problem = match target.read(cid) {
            Ok(Some(c)) => {
                let value_ok =
                    p.fp.as_deref()
                        .is_some_and(|f| fingerprint::same(f, &fp.value(&c)));
                let meta_ok = !keeps
                    || p.mfp
                        .as_deref()
                        .is_some_and(|f| fingerprint::same(f, &fp.meta(&c)));
                match (value_ok, meta_ok) {
                    (true, true) => None,
                    (false, _) => Some("the value at the target differs from the one migrated"),
                    (true, false) => Some("the metadata at the target differs"),
                }
            }
            Ok(None) => Some("missing at the target"),
            Err(e) => {
                failures.push(Failure {
                    id: cid.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        match problem {
            None => ok += 1,
            Some(msg) => failures.push(Failure {
                id: cid.clone(),
                error: msg.into(),
            }),
        }
    }
    journal.append(Record::VerifyRun {
        verified: ok,
        mismatched: failures.len(),
    })?;
    let mut report = st.report();
    report.verified = ok;
    report.failed = failures.len();
    report.failures = failures;
    report.cancelled = cancelled;
    let outcome = if report.failed == 0 {
        "verified"
    } else {
        "mismatched"
    };
    let counts = Totals {
        copied: ok,
        failed: report.failed,
        ..st.totals()
    };
    audit_action(state_dir, id, &st, "verify", outcome, counts);
    report.notices = locks.notices();
    Ok(report)
}

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
    // Cleanup deletes from the source and compares with the target.
    let Recovered {
        source,
        target,
        keys,
        mut journal,
        locks,
        ..
    } = session::recover(state_dir, &st, opts, Some(Use::WRITE), Some(Use::READ))?;
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

/// `r` with what taking `locks` did.
fn noted(mut r: Report, locks: &session::Locks) -> Report {
    r.notices = locks.notices();
    r
}

/// Cleanup of a finished migration (asked for, or left interrupted), with
/// its audit line: "failed" when a verified item is still in the source.
fn run_cleanup(
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

/// Finish an interrupted (or failed) migration: items not yet verified are
/// written and read back. Idempotent: a completed migration is reported as is.
pub fn resume(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<Report> {
    resume_with(state_dir, id, opts, &Control::default())
}

pub fn resume_with(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    ctl: &Control,
) -> Result<Report> {
    let st = State::load(state_dir, id)?;
    match (st.status(), st.rolled_back) {
        (MigrationStatus::Completed, _) => return Ok(st.report()),
        (MigrationStatus::RolledBack, _) => {
            return Err(EngineError::Refused(format!(
                "migration {id} was rolled back; start a new migration instead"
            )));
        }
        (_, Some(false)) => {
            return Err(EngineError::Refused(format!(
                "a rollback of migration {id} did not finish; complete it with \
                 `credshift rollback --migration-id {id}`"
            )));
        }
        _ => {}
    }
    // Resume writes the target, and the source too when it cleans up.
    let deletes = st.delete_source || st.cleanup.is_some();
    let Recovered {
        st,
        source,
        target,
        keys,
        mut journal,
        locks,
    } = session::recover(
        state_dir,
        &st,
        opts,
        Some(Use::write_if(deletes)),
        Some(Use::WRITE),
    )?;
    let (Some(source), Some(target)) = (source, target) else {
        return Err(EngineError::Refused("a store is missing".into()));
    };
    if st.status() == MigrationStatus::Completed {
        // Finished by another run while this one waited for its locks.
        return Ok(noted(st.report(), &locks));
    }
    if st.finished.is_some() && st.cleanup == Some(false) {
        // Only the cleanup after a finished migration was interrupted:
        // finish it; the migration's own outcome stands.
        return run_cleanup(
            state_dir,
            id,
            &mut journal,
            &keys.fp,
            source.as_ref(),
            target.as_ref(),
            ctl,
        )
        .map(|r| noted(r, &locks));
    }
    let clean_up = st.delete_source || st.cleanup.is_some();
    journal.append(Record::Resumed)?;
    let selection: Option<BTreeSet<CredentialId>> =
        st.selection.clone().map(|v| v.into_iter().collect());
    let prepared = plan::prepare(
        source.as_ref(),
        target.as_ref(),
        st.on_conflict,
        selection.as_ref(),
        now_ms(),
    )?;
    let mut run = Run {
        id: id.clone(),
        dir: st.dir.clone(),
        journal,
        keys,
        source: source.as_ref(),
        target: target.as_ref(),
        ctl: ctl.clone(),
        state_dir: state_dir.to_path_buf(),
    };
    if st.planned.is_none() {
        run.journal.append(Record::Planned {
            items: planned_items(&prepared, &run.keys.fp),
            warnings: plan::report_warnings(&prepared.plan),
            unreadable: plan::unreadable_places(&prepared.plan),
        })?;
    }
    if run.journal.state()?.backup.is_none() {
        // No write happens before the backup record, so the target is as
        // the plan saw it.
        let overwritten: Vec<Credential> = prepared
            .plan
            .items
            .iter()
            .filter(|i| i.action == Action::Overwrite)
            .filter_map(|i| prepared.target_old.get(&i.id).cloned())
            .collect();
        let all: Vec<Credential> = prepared.source.values().cloned().collect();
        run.write_backups(all.iter(), &overwritten)?;
    }
    let st = run.journal.state()?.clone();
    let old = load_backup(&st, &run.keys, st.target_backup.as_deref(), opts)?;
    let keeps = prepared.target_capability.keeps_metadata;
    let decision = replan::decide(&st, &prepared, &run.keys.fp, st.on_conflict);
    let old = run.record_replan(&decision, old)?;
    let mut tally = decision.tally;
    let stop = run.write_items(&decision.work, &old, keeps, &mut tally, Instant::now());
    run.finish("resume", stop, &old, clean_up)
        .map(|r| noted(r, &locks))
}

/// Undo a migration: put back source items cleanup deleted, remove what it
/// wrote, restore what it overwrote from the backup. Idempotent.
pub fn rollback(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<Report> {
    rollback_with(state_dir, id, opts, &Control::default())
}

pub fn rollback_with(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    ctl: &Control,
) -> Result<Report> {
    rollback_items(state_dir, id, opts, None, ctl)
}

/// Roll back only the items whose id matches `pattern` (a glob, as
/// `exec --only`): journaled like a whole rollback (`rollback_part`, then
/// one `undone` per item), the rest stays migrated and the migration keeps
/// its status. Refused when nothing matches.
pub fn rollback_only(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    pattern: &str,
    ctl: &Control,
) -> Result<Report> {
    rollback_items(state_dir, id, opts, Some(Part::Glob(pattern)), ctl)
}

/// [`rollback_only`] for the items chosen one by one (the wizard's item
/// view), on a worker thread: the same handle as every long operation.
pub fn start_partial_rollback(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    ids: BTreeSet<CredentialId>,
) -> Result<execute::MigrationHandle> {
    let dir = state::migration_dir(state_dir, id);
    let (state_dir, mid, opts) = (state_dir.to_path_buf(), id.clone(), opts.clone());
    execute::spawn_job(id.clone(), dir, "rollback", move |ctl| {
        rollback_items(&state_dir, &mid, &opts, Some(Part::Ids(&ids)), &ctl)
    })
}

/// Which items a partial rollback undoes.
enum Part<'a> {
    Glob(&'a str),
    Ids(&'a BTreeSet<CredentialId>),
}

fn rollback_items(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    part: Option<Part<'_>>,
    ctl: &Control,
) -> Result<Report> {
    let st = State::load(state_dir, id)?;
    if st.rolled_back == Some(true) {
        return Ok(st.report());
    }
    let pattern: Option<String> = part.as_ref().map(|p| match p {
        Part::Glob(g) => g.to_string(),
        Part::Ids(ids) => format!("{} items chosen one by one", ids.len()),
    });
    let pattern = pattern.as_deref();
    let only: Option<BTreeSet<CredentialId>> = part.as_ref().map(|p| {
        let at_target = st.begun.iter().filter(|i| !st.undone.contains(*i));
        let deleted = st.delete_begun.iter();
        at_target
            .chain(deleted)
            .filter(|i| match p {
                Part::Glob(g) => crate::store::faults::glob_match(g, &i.to_string()),
                Part::Ids(ids) => ids.contains(*i),
            })
            .cloned()
            .collect()
    });
    if let (Some(g), Some(only)) = (pattern, &only)
        && only.is_empty()
    {
        return Err(EngineError::Refused(format!(
            "no item of migration {id} that is still at the target matches {g:?}; nothing was \
             changed (see `credshift history --migration-id {id}`)"
        )));
    }
    let delete_begun: Vec<CredentialId> = st
        .delete_begun
        .iter()
        .filter(|i| only.as_ref().is_none_or(|o| o.contains(*i)))
        .cloned()
        .collect();
    // Every item whose delete from the source began (a crash may have
    // come before its outcome was journaled) is put back: the source is
    // then written; else it is only held shared when it is there.
    let source_needed = !delete_begun.is_empty();
    let Recovered {
        st,
        source,
        target,
        keys,
        mut journal,
        locks,
    } = session::recover(
        state_dir,
        &st,
        opts,
        Some(if source_needed {
            Use::WRITE
        } else {
            Use::READ_IF_THERE
        }),
        Some(Use::WRITE),
    )?;
    if st.rolled_back == Some(true) {
        // Rolled back by another run while this one waited for its locks.
        return Ok(noted(st.report(), &locks));
    }
    let target = target.ok_or_else(|| EngineError::Refused("no target".into()))?;
    let source = if source_needed { source } else { None };
    let needs_old = st.begun.iter().any(|i| {
        only.as_ref().is_none_or(|o| o.contains(i))
            && st
                .planned_item(i)
                .is_some_and(|p| p.action == PlannedAction::Overwrite)
    });
    let old = if needs_old {
        load_backup(&st, &keys, st.target_backup.as_deref(), opts)?
    } else {
        BTreeMap::new()
    };
    match (&only, pattern) {
        (Some(ids), Some(g)) => journal.append(Record::RollbackPart {
            pattern: g.to_string(),
            ids: ids.iter().cloned().collect(),
        })?,
        _ => journal.append(Record::RollbackStarted {
            reason: "requested by the user".into(),
        })?,
    }
    ctl.send(Progress::RollingBack {
        reason: match pattern {
            Some(g) => format!("requested by the user for the items matching {g}"),
            None => "requested by the user".into(),
        },
    });
    let mut complete = true;
    if let Some(source) = &source {
        let originals = load_backup(&st, &keys, st.backup.as_deref(), opts)?;
        let now = source.read_many(&delete_begun);
        for (cid, present) in delete_begun.iter().zip(now) {
            if ctl.cancelled() {
                complete = false;
                break;
            }
            let res = match (present, originals.get(cid)) {
                // Still there (the delete failed or never ran): nothing to do.
                (Ok(Some(_)), _) => Ok(UndoOutcome::SourcePresent),
                (Ok(None), Some(c)) => source.write(c).map(|_| UndoOutcome::SourceRestored),
                (Ok(None), None) => Err(StoreError::item(cid, "not in the backup")),
                (Err(StoreError::NotFound { .. }), Some(c)) => {
                    source.write(c).map(|_| UndoOutcome::SourceRestored)
                }
                (Err(e), _) => Err(e),
            };
            match res {
                Ok(how) => {
                    journal.append(Record::Undone {
                        id: cid.clone(),
                        how,
                    })?;
                    ctl.send(Progress::ItemUndone {
                        id: cid.clone(),
                        how,
                    });
                }
                Err(e) => {
                    complete = false;
                    journal.append(Record::UndoFailed {
                        id: cid.clone(),
                        error: format!("source: {e}"),
                    })?
                }
            }
        }
    }
    if complete || !ctl.cancelled() {
        let scope = UndoScope {
            only: only.as_ref(),
            stop_on_cancel: true,
        };
        complete &= undo_all(
            &mut journal,
            &keys.fp,
            target.as_ref(),
            &st,
            &old,
            ctl,
            scope,
        )?;
    }
    let cancelled = ctl.cancelled() && !complete;
    if pattern.is_some() {
        let st = journal.state()?;
        let outcome = if complete {
            "rolled_back_part"
        } else {
            "failed"
        };
        audit_action(state_dir, id, st, "rollback", outcome, st.totals());
        let mut report = st.report();
        report.cancelled = cancelled;
        return Ok(report);
    }
    journal.append(Record::RolledBack { complete })?;
    let totals = journal.state()?.totals();
    journal.append(Record::Finished {
        status: if complete {
            MigrationStatus::RolledBack
        } else {
            MigrationStatus::Interrupted
        },
        totals,
        reason: Some(if cancelled {
            "rollback cancelled by the user; run rollback again to finish it".into()
        } else {
            "rolled back on request".into()
        }),
    })?;
    let st = journal.state()?;
    let outcome = if complete {
        "rolled_back"
    } else {
        "interrupted"
    };
    audit_action(state_dir, id, st, "rollback", outcome, st.totals());
    let mut report = noted(st.report(), &locks);
    report.cancelled = cancelled;
    Ok(report)
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
/// thread.
pub fn start_recovery(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    op: RecoveryOp,
) -> Result<execute::MigrationHandle> {
    if op == RecoveryOp::Restore {
        let st = State::load(state_dir, id)?;
        let backup_file = st.backup.clone().ok_or_else(|| {
            EngineError::Refused(format!("migration {id} has no backup to restore"))
        })?;
        let to: StoreSpec = st
            .from
            .parse()
            .map_err(|e: store::BadSpec| EngineError::Refused(e.to_string()))?;
        return start_restore(&backup_file, &to, state_dir, opts, ConflictPolicy::Skip);
    }
    let dir = state::migration_dir(state_dir, id);
    let (state_dir, mid, opts) = (state_dir.to_path_buf(), id.clone(), opts.clone());
    let name = format!("{op:?}").to_lowercase();
    execute::spawn_job(id.clone(), dir, &name, move |ctl| match op {
        RecoveryOp::Resume => resume_with(&state_dir, &mid, &opts, &ctl),
        RecoveryOp::Rollback => rollback_with(&state_dir, &mid, &opts, &ctl),
        RecoveryOp::Verify => verify_with(&state_dir, &mid, &opts, &ctl),
        RecoveryOp::Cleanup => cleanup(&state_dir, &mid, &opts),
        RecoveryOp::Restore => Err(EngineError::Refused("restore runs as a migration".into())),
    })
}

/// Where [`backup()`] puts the key file it generates when no passphrase
/// (and no `--key-file`) is in use.
#[derive(Debug, Clone, Copy)]
pub enum KeyOut<'a> {
    /// In this state dir, named by the backup's id, where `restore` looks.
    Kept(&'a Path),
    /// At this path (`--key-out`); refused when something is already there.
    At(&'a Path),
}

/// The same file, whether or not it exists yet: the parent dir resolved,
/// then the file name.
fn same_file(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| {
        let parent = crate::fsutil::parent_dir(p);
        let parent = parent.canonicalize().unwrap_or(parent);
        p.file_name().map(|n| parent.join(n))
    };
    a == b || norm(a).is_some_and(|x| Some(x) == norm(b))
}

/// Write an encrypted backup of every credential in `source` to `out`.
/// Without a passphrase (or `--key-file`), a new key file is generated
/// where `key_out` says: never beside the backup by default, and never at
/// the backup's own path.
pub fn backup(
    source: &dyn Store,
    out: &Path,
    key_out: KeyOut<'_>,
    opts: &KeyOptions,
) -> Result<BackupSummary> {
    if backup_file::sealing_passphrase(opts).is_none()
        && let Some(k) = &opts.key_file
        && same_file(k, out)
    {
        return Err(EngineError::Refused(format!(
            "--out {} is the key file the backup would be sealed with (--key-file); \
             writing the backup there would destroy its key: choose another --out",
            out.display()
        )));
    }
    if backup_file::sealing_passphrase(opts).is_none()
        && opts.key_file.is_none()
        && let KeyOut::At(k) = key_out
        && same_file(k, out)
    {
        return Err(EngineError::Refused(format!(
            "--out and --key-out are the same file ({}): the backup would overwrite its own \
             key; choose different paths, on different media if you can",
            out.display()
        )));
    }
    let locks = session::read_only(source)?;
    let scan = source.read_all()?;
    // A passphrase that fails the rule for new ones seals nothing new.
    let key_file = match (
        backup_file::sealing_passphrase(opts),
        &opts.key_file,
        key_out,
    ) {
        (Some(p), _, _) => {
            backup_file::write(
                out,
                &scan.credentials,
                &BackupKey::Passphrase(p.clone()),
                opts,
            )?;
            None
        }
        (None, Some(k), _) => {
            backup_file::write(out, &scan.credentials, &BackupKey::KeyFile(k.clone()), opts)?;
            None
        }
        (None, None, KeyOut::At(k)) => {
            crate::crypto::kdf::generate_key_file(k)?;
            if let Err(e) =
                backup_file::write(out, &scan.credentials, &BackupKey::KeyFile(k.into()), opts)
            {
                let _ = std::fs::remove_file(k);
                return Err(e.into());
            }
            Some(k.to_path_buf())
        }
        (None, None, KeyOut::Kept(state_dir)) => {
            // The key's name is the backup's id, known once it is sealed.
            let dir = backup_file::kept_keys_dir(state_dir);
            let pending = dir.join(format!(".new-{}-{}.key", std::process::id(), now_ms()));
            crate::crypto::kdf::generate_key_file(&pending)?;
            let kept = backup_file::write(
                out,
                &scan.credentials,
                &BackupKey::KeyFile(pending.clone()),
                opts,
            )
            .and_then(|()| backup_file::kept_key_for(state_dir, out))
            .and_then(|kept| {
                std::fs::rename(&pending, &kept)
                    .and_then(|()| crate::fsutil::fsync_dir(&dir))
                    .map_err(|e| StoreError::io(&kept, e))?;
                Ok(kept)
            });
            match kept {
                Ok(k) => Some(k),
                Err(e) => {
                    let _ = std::fs::remove_file(&pending);
                    return Err(e.into());
                }
            }
        }
    };
    Ok(BackupSummary {
        path: out.to_path_buf(),
        key_file,
        items: scan.credentials.len(),
        errors: scan.errors,
        notices: locks.notices(),
    })
}

/// Restore a backup into `target`: a migration from the backup's contents,
/// so it has its own journal, backup of what it replaces, verify and
/// rollback. Like a migration, a value at the target that differs from the
/// backup's (changed since the backup) is a conflict, skipped: see
/// [`restore_with`] for `overwrite`, [`restore_plan`] for what it would do.
pub fn restore(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
) -> Result<Report> {
    restore_with(backup_file, target, state_dir, opts, ConflictPolicy::Skip)
}

/// The backup's contents as a read-only source, named by its file.
fn backup_source(
    backup_file: &Path,
    state_dir: &Path,
    opts: &KeyOptions,
) -> Result<(StoreSpec, Box<dyn Store>)> {
    let key = backup_file::existing_key_in(backup_file, Some(state_dir), opts)?;
    let creds = backup_file::read(backup_file, &key, opts)?;
    let spec = StoreSpec::Encrypted(backup_file.to_path_buf());
    Ok((spec.clone(), Box::new(MemStore::new(spec, creds, false))))
}

/// The dry run of a restore: what it would copy, replace (`overwrite`) or
/// leave as a conflict. Writes nothing.
pub fn restore_plan(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
    policy: ConflictPolicy,
) -> Result<crate::engine::types::Plan> {
    let (_, source) = backup_source(backup_file, state_dir, opts)?;
    let target_store = store::open(target, opts)?;
    Ok(plan::plan(
        source.as_ref(),
        target_store.as_ref(),
        policy,
        None,
    )?)
}

/// [`restore`] with a conflict policy: `overwrite` replaces values changed
/// since the backup (each backed up first, as a migration does).
pub fn restore_with(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
    policy: ConflictPolicy,
) -> Result<Report> {
    let h = start_restore(backup_file, target, state_dir, opts, policy)?;
    while h.events.recv().is_ok() {}
    h.join()
}

/// [`restore_with`] on a worker thread: the migration's handle (progress,
/// cancel: a cancelled restore rolls back what it wrote, as a migration).
/// Opens the backup on the calling thread.
pub fn start_restore(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
    policy: ConflictPolicy,
) -> Result<execute::MigrationHandle> {
    let (spec, source) = backup_source(backup_file, state_dir, opts)?;
    let target_store = store::open(target, opts)?;
    let req = MigrationRequest {
        from: spec,
        to: target.clone(),
        policy,
        selection: None,
        delete_source: false,
    };
    execute::start_with_stores(req, source, target_store, state_dir, opts)
}
