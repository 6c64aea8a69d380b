//! Rollback: undo what a migration wrote, whole or only some items.

use super::*;

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
    cancel: Arc<AtomicBool>,
) -> Result<execute::MigrationHandle> {
    let dir = state::migration_dir(state_dir, id);
    let (state_dir, mid, opts) = (state_dir.to_path_buf(), id.clone(), opts.clone());
    execute::spawn_job(id.clone(), dir, "rollback", cancel, move |ctl| {
        rollback_items(&state_dir, &mid, &opts, Some(Part::Ids(&ids)), &ctl)
    })
}

/// Which items a partial rollback undoes.
pub(super) enum Part<'a> {
    Glob(&'a str),
    Ids(&'a BTreeSet<CredentialId>),
}

pub(super) fn rollback_items(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    part: Option<Part<'_>>,
    ctl: &Control,
) -> Result<Report> {
    let st = State::load(state_dir, id)?;
    if st.recorded.rolled_back == Some(true) {
        return Ok(st.report());
    }
    let pattern: Option<String> = part.as_ref().map(|p| match p {
        Part::Glob(g) => g.to_string(),
        Part::Ids(ids) => format!("{} items chosen one by one", ids.len()),
    });
    let pattern = pattern.as_deref();
    let only: Option<BTreeSet<CredentialId>> = part.as_ref().map(|p| {
        let at_target = st.begun().filter(|i| !st.is_undone(i));
        let deleted = st.delete_begun();
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
        .delete_begun()
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
    if st.recorded.rolled_back == Some(true) {
        // Rolled back by another run while this one waited for its locks.
        return Ok(noted(st.report(), &locks));
    }
    let target = target.ok_or_else(|| EngineError::Refused("no target".into()))?;
    let source = if source_needed { source } else { None };
    let needs_old = st.begun().any(|i| {
        only.as_ref().is_none_or(|o| o.contains(i))
            && st
                .planned_item(i)
                .is_some_and(|p| p.action == PlannedAction::Overwrite)
    });
    let old = if needs_old {
        load_backup(&st, &keys, st.recorded.target_backup.as_deref(), opts)?
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
        let originals = load_backup(&st, &keys, st.recorded.backup.as_deref(), opts)?;
        let now = source.read_many(&delete_begun);
        for (cid, present) in delete_begun.iter().zip(now) {
            if ctl.cancelled() {
                complete = false;
                break;
            }
            let res = match (present, originals.get(cid)) {
                // Still there (the delete failed or never ran): nothing to do.
                (Ok(Some(_)), _) => Ok(UndoOutcome::SourcePresent),
                (Ok(None) | Err(StoreError::NotFound { .. }), Some(c)) => {
                    put_back(source.as_ref(), c)
                }
                (Ok(None), None) => Err(StoreError::item(cid, "not in the backup")),
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
        // A stale lock taken over is news for a partial rollback too (A10).
        let mut report = noted(st.report(), &locks);
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

/// Put an item cleanup deleted back into the source, only while the source
/// still holds nothing there (compared inside the store's write): a value
/// someone else wrote since is kept and reported.
fn put_back(source: &dyn Store, c: &Credential) -> Result<UndoOutcome, StoreError> {
    let put = store::Replace {
        expected: None,
        new: c.clone(),
    };
    match source.replace_if_unchanged(&[put]).pop() {
        Some(Ok(store::ReplaceIf::Replaced)) => Ok(UndoOutcome::SourceRestored),
        Some(Ok(store::ReplaceIf::Changed)) => Ok(UndoOutcome::SourceChanged),
        Some(Err(e)) => Err(e),
        None => Err(StoreError::item(&c.id, "the store returned no result")),
    }
}
