//! Resume: finish an interrupted migration, planning again what it still has to write.

use super::*;

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
    match (st.status(), st.recorded.rolled_back) {
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
    let deletes = st.delete_source || st.recorded.cleanup.is_some();
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
    if st.recorded.finished.is_some() && st.recorded.cleanup == Some(false) {
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
    let clean_up = st.delete_source || st.recorded.cleanup.is_some();
    journal.append(Record::Resumed)?;
    let selection: Option<BTreeSet<CredentialId>> =
        st.recorded.selection.clone().map(|v| v.into_iter().collect());
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
    if st.recorded.planned.is_none() {
        run.journal.append(Record::Planned {
            items: planned_items(&prepared, &run.keys.fp),
            warnings: plan::report_warnings(&prepared.plan),
            unreadable: plan::unreadable_places(&prepared.plan),
        })?;
    }
    if run.journal.state()?.recorded.backup.is_none() {
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
    let old = load_backup(&st, &run.keys, st.recorded.target_backup.as_deref(), opts)?;
    let keeps = prepared.target_capability.keeps_metadata;
    let decision = replan::decide(&st, &prepared, &run.keys.fp, st.on_conflict);
    let old = run.record_replan(&decision, old)?;
    let mut tally = decision.tally;
    let work = decision.work.iter().map(|c| (*c).clone()).collect();
    let stop = run.write_items(work, &old, keeps, &mut tally, Instant::now());
    run.finish("resume", stop, &old, clean_up)
        .map(|r| noted(r, &locks))
}
