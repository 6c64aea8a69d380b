//! A recorded rekey, from its journal: resume, rollback, verify, history
//! and its report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::credential::ct_eq_bytes;
use crate::engine::audit;
use crate::engine::error::{EngineError, Result};
use crate::engine::journal::Totals;
use crate::engine::recovery::status_word;
use crate::engine::session::{self, Locks, Use};
use crate::engine::state;
use crate::engine::types::{HistoryEntry, MigrationId, MigrationStatus};
use crate::store;
use crate::store::rekey::{self as raw, Cell, CellRef, RawCells, RekeyFormat, Swap};
use crate::unlock::KeyOptions;

use super::backup;
use super::codec::{self, NewKey, Plain, Under};
use super::journal::{
    CellNote, PlannedCell, REKEY_BACKUP_FILE, REKEY_BACKUP_KEY, REKEY_JOURNAL_FILE, RekeyJournal,
    RekeyRecord, RekeyState, RollbackReason, fp,
};
use super::{
    KeyCount, LocationNote, Ran, RekeyProgress, RekeyReport, changed_store, finish, load,
    rekey_dir, run_batches, signal_after_the_last_batch, spec_of, under_keys,
};

/// The text `history` and reports show as a rekey's target.
fn to_of(st: &RekeyState) -> String {
    format!("{} (new key)", crate::store::redact_url(&st.store))
}

/// Every rekey in the state dir, as history rows (oldest first).
pub fn history(state_dir: &Path) -> Vec<HistoryEntry> {
    let Ok(rd) = std::fs::read_dir(state::migrations_dir(state_dir)) else {
        return Vec::new();
    };
    let mut ids: Vec<MigrationId> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(|s| MigrationId(s.to_string())))
        .collect();
    ids.sort();
    ids.iter()
        .filter_map(|id| Some((id, rekey_dir(state_dir, id)?)))
        .map(|(id, dir)| match RekeyState::load(&dir, id) {
            Ok(st) => HistoryEntry {
                id: st.id.clone(),
                started_at: st.started_at.clone(),
                from: crate::store::redact_url(&st.store),
                to: to_of(&st),
                status: st.status(),
                copied: st.rekeyed_now(),
                failed: st.failed.len(),
            },
            // Unreadable is not absent: a damaged journal may be a rekey
            // left between two keys, so it is listed with where it is.
            Err(e) => HistoryEntry {
                id: id.clone(),
                started_at: String::new(),
                from: dir.join(REKEY_JOURNAL_FILE).display().to_string(),
                to: format!("(unreadable rekey journal: {e})"),
                status: MigrationStatus::Interrupted,
                copied: 0,
                failed: 0,
            },
        })
        .collect()
}

/// Cells the application changed: during the rekey (left under the old
/// key), and since it, found by a rollback (left as they are).
fn changed_notes(st: &RekeyState) -> Vec<LocationNote> {
    let mut all: BTreeMap<&CellRef, String> =
        st.changed.iter().map(|(at, e)| (at, e.clone())).collect();
    for (at, e) in &st.left {
        all.insert(at, format!("rollback: {e}"));
    }
    all.into_iter()
        .map(|(at, error)| LocationNote {
            location: at.to_string(),
            error,
        })
        .collect()
}

fn next_steps(st: &RekeyState, status: MigrationStatus) -> Vec<String> {
    let id = &st.id;
    match status {
        MigrationStatus::RolledBack => {
            let mut steps = vec![if st.completed_once {
                // The finished rekey told the user to switch to the new key.
                format!(
                    "Every value is under the old key again: if the application was switched to \
                     the new key ({}), switch it back to the old key ({}) and restart it.",
                    st.new_key,
                    st.old_keys.join(", ")
                )
            } else {
                "Nothing to change: every value is under the old key again.".into()
            }];
            if !st.left.is_empty() {
                steps.push(format!(
                    "{} value(s) the application changed since the rekey were left as they are \
                     (listed above): they hold what the application wrote.",
                    st.left.len()
                ));
            }
            return steps;
        }
        MigrationStatus::Interrupted if st.rolling_back => {
            // `resume` refuses once a rollback began; the swap back is one
            // transaction, so `rollback` can always complete it.
            return vec![format!(
                "A rollback of this rekey began and did not finish: complete it with `credshift \
                 rollback --migration-id {id}`; until then the application needs both keys."
            )];
        }
        MigrationStatus::Interrupted => {
            return vec![format!(
                "Finish with `credshift resume --migration-id {id}` (with the same --new-... \
                 flag) or undo with `credshift rollback --migration-id {id}`; until then the \
                 application needs both keys."
            )];
        }
        _ => {}
    }
    let origin = &st.new_key;
    let mut steps = Vec::new();
    let one_key_check = matches!(
        st.format,
        Some(RekeyFormat::CredshiftSqlite | RekeyFormat::CredshiftPostgres)
    );
    if !st.changed.is_empty() && one_key_check {
        // The table's key check is under the new key now: a second run
        // could not open those cells under the old one.
        steps.push(format!(
            "Before anything else: {} value(s) changed during this rekey are still under the old \
             key, which the table no longer checks: roll back with `credshift rollback \
             --migration-id {id}` (it leaves them as they are) and rekey again.",
            st.changed.len()
        ));
    } else if !st.changed.is_empty() {
        // Those values are still under the old key: switching first would
        // leave agent-prompttrain (one key only) unable to open them.
        steps.push(format!(
            "Before you switch: run `credshift rekey --store {}` again with the same new key \
             ({origin}) and the old key as now: it rekeys only the {} value(s) the application \
             changed during this rekey, still under the old key, and counts the rest as done.",
            crate::store::redact_url(&st.store),
            st.changed.len()
        ));
    }
    steps.extend(app_steps(st));
    if status == MigrationStatus::Completed {
        steps.push(format!(
            "Once the application runs on the new key, run `credshift verify --migration-id \
             {id}`, then delete the rekey's backup with `credshift rekey --forget-backup {id} \
             --yes` ({REKEY_BACKUP_FILE} and {REKEY_BACKUP_KEY} in {}: the old ciphertexts with \
             their key, which anyone holding the old key can read; `rollback` needs them until \
             then).",
            st.dir.display()
        ));
    }
    steps
}

/// What to change in the application once every value is under the new key.
fn app_steps(st: &RekeyState) -> Vec<String> {
    let origin = &st.new_key;
    match st.format {
        Some(RekeyFormat::PromptTrain) => vec![format!(
            "agent-prompttrain: set CREDENTIAL_ENCRYPTION_KEY to the new key ({origin}) and \
             restart it; the old key opens none of the rekeyed values."
        )],
        Some(RekeyFormat::Laravel) => vec![format!(
            "Laravel: in the app's .env set APP_KEY=<the new key, {origin}> and \
             APP_PREVIOUS_KEYS=<the APP_KEY it has now>{}, then run `php artisan \
             config:clear`: sessions and cookies made under the old key keep working.",
            if st.old_keys.len() > 1 {
                ",<the keys already in APP_PREVIOUS_KEYS>"
            } else {
                ""
            }
        )],
        _ => vec![format!(
            "credshift: open {} with the new passphrase or key file ({origin}) from now on.",
            crate::store::redact_url(&st.store)
        )],
    }
}

/// The report a rekey's journal gives.
pub fn report_of(st: &RekeyState) -> RekeyReport {
    let planned = st.planned.as_deref().unwrap_or(&[]);
    let status = st.status();
    let mut failures: Vec<LocationNote> = st
        .failed
        .iter()
        .map(|(at, e)| LocationNote {
            location: at.to_string(),
            error: e.clone(),
        })
        .collect();
    failures.extend(st.kept.iter().map(|(at, e)| LocationNote {
        location: at.to_string(),
        error: format!("rollback: {e}"),
    }));
    let names = &st.old_keys;
    let counts: Vec<KeyCount> = under_keys(names, planned.iter().map(|p| p.key));
    RekeyReport {
        operation: "rekey",
        migration_id: st.id.clone(),
        from: crate::store::redact_url(&st.store),
        to: to_of(st),
        total: planned.len() + st.already_new + st.untouched.len(),
        copied: st.rekeyed_now(),
        skipped: st.already_new,
        conflicts: changed_notes(st).len(),
        invalid: st.untouched.len(),
        failed: st.failed.len(),
        rolled_back: st.rolled_back == Some(true),
        rollback_reason: match st.rolled_back {
            Some(true) => Some(
                st.rollback_reason
                    .unwrap_or(RollbackReason::Requested)
                    .done_text()
                    .into(),
            ),
            Some(false) => Some(format!(
                "the rollback is incomplete, run `credshift rollback --migration-id {}`",
                st.id
            )),
            None => None,
        },
        failures,
        backup: st.backup.clone(),
        verified: st.rekeyed_now(),
        warnings: Vec::new(),
        status,
        under_keys: counts,
        untouched: st.untouched.iter().map(LocationNote::from).collect(),
        changed: changed_notes(st),
        next_steps: next_steps(st, status),
        notices: Vec::new(),
        cancelled: false,
    }
}

/// The audit line of a rekey action (best effort: the journal has it).
pub(super) fn audit(state_dir: &Path, st: &RekeyState, action: &str) {
    audit_as(state_dir, st, action, status_word(st.status()));
}

/// [`audit`] with its outcome given (`cancelled`).
fn audit_as(state_dir: &Path, st: &RekeyState, action: &str, outcome: &str) {
    let r = report_of(st);
    let _ = audit::append(
        state_dir,
        audit::AuditEntry {
            action,
            from: Some(r.from.clone()),
            to: Some(r.to.clone()),
            migration_id: Some(st.id.0.clone()),
            outcome,
            counts: Totals {
                total: r.total,
                copied: r.copied,
                skipped: r.skipped,
                conflicts: r.conflicts,
                invalid: r.invalid,
                failed: r.failed,
            },
        },
    );
}

/// The recorded store, opened and locked, with its journal and cells.
pub(super) struct Held {
    pub(super) journal: RekeyJournal,
    pub(super) cells: Box<dyn RawCells>,
    pub(super) locks: Locks,
}

fn hold(state_dir: &Path, id: &MigrationId, opts: &KeyOptions, usage: Use) -> Result<Held> {
    let st = load(state_dir, id)?;
    let spec = spec_of(&st)?;
    // The store is opened for its identity and lock only: rollback and
    // verify need no key, but Laravel's store refuses to open without one.
    let mut lock_opts = opts.clone();
    if lock_opts.app_key.is_none()
        && let Some(k) = super::keygen::fresh_key_text(RekeyFormat::Laravel)?
    {
        lock_opts.app_key = Some(crate::credential::Secret::new(k.as_str()));
    }
    let store = store::open(&spec, &lock_opts)?;
    let (_, locks) = session::rekey(
        store.as_ref(),
        usage,
        Some(state_dir),
        &id.0,
        st.identity.as_ref(),
        opts.lock_wait,
    )?;
    // Read again under the locks: another run may have moved it on.
    let journal = RekeyJournal::open(&st.dir, id)?;
    let cells = raw::open(&spec, opts).map_err(|e| changed_store(&st, e))?;
    Ok(Held {
        journal,
        cells,
        locks,
    })
}

/// Finish an interrupted rekey: cells already under the journaled new
/// ciphertext count as done, cells still holding their old ciphertext are
/// rekeyed, anything else was changed by the application and is left.
pub fn resume(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    new: &NewKey,
    progress: &mut dyn FnMut(RekeyProgress),
) -> Result<RekeyReport> {
    resume_cancellable(state_dir, id, opts, new, progress, &AtomicBool::new(false))
}

/// [`resume`], stopped between batches once `cancel` is set. Then the
/// whole rekey is rolled back, what the run it resumes wrote as well as
/// this one: stopping there would leave the store under two keys (what
/// the application cannot read), and the old key is the one every value
/// was under before the rekey began.
pub fn resume_cancellable(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    new: &NewKey,
    progress: &mut dyn FnMut(RekeyProgress),
    cancel: &AtomicBool,
) -> Result<RekeyReport> {
    let st = load(state_dir, id)?;
    if let Some(done) = not_resumable(&st)? {
        return Ok(done);
    }
    let mut held = hold(state_dir, id, opts, Use::WRITE)?;
    // Again under the lock: a run that held it meanwhile (a `rollback`, a
    // cancelled run's rollback, another resume) may have moved it on.
    let st = held.journal.state.clone();
    if let Some(done) = not_resumable(&st)? {
        return Ok(done);
    }
    let format = st
        .format
        .ok_or_else(|| EngineError::Refused(format!("rekey {id}: no format recorded")))?;
    if let Some(kind) = st.new_key_kind
        && kind != new.kind()
    {
        return Err(EngineError::Refused(format!(
            "rekey {id} was started with a new key of another kind ({kind:?}, {}): resume it \
             with the same --new-... flag, or roll it back",
            st.new_key
        )));
    }
    let all = held.cells.cells()?;
    let codec = codec::build(format, &st.store, &all, opts, new)?;
    // A signal while it waited for the lock or derived the keys: this run
    // has written nothing, so nothing is undone either (the earlier run's
    // part is not this run's to throw away).
    if cancel.load(Ordering::SeqCst) {
        return Ok(cancelled_unchanged(state_dir, &held));
    }
    let now: BTreeMap<CellRef, Cell> = all.into_iter().map(|c| (c.at.clone(), c)).collect();
    refuse_another_new_key(&st, &now, codec.as_ref())?;
    held.journal.append(RekeyRecord::RekeyResumed)?;
    let planned = match st.planned.clone() {
        Some(p) => p,
        None => {
            // Stopped before its plan: nothing was written; plan now.
            let cells: Vec<Cell> = now.values().cloned().collect();
            let (mut todo, mut already_new, mut untouched) = (Vec::new(), 0, Vec::new());
            for (c, (under, _)) in cells.iter().zip(codec.open(&cells)) {
                match under {
                    Under::Old(k) => todo.push(PlannedCell {
                        at: c.at.clone(),
                        key: k,
                        old_fp: fp(&c.value),
                    }),
                    Under::New => already_new += 1,
                    Under::Neither(reason) => untouched.push(CellNote {
                        at: c.at.clone(),
                        reason,
                    }),
                }
            }
            held.journal.append(RekeyRecord::RekeyPlanned {
                cells: todo.clone(),
                already_new,
                untouched,
            })?;
            todo
        }
    };
    if st.backup.is_none() {
        // No batch starts before the backup: every cell is as planned.
        let old: Vec<Cell> = planned
            .iter()
            .filter_map(|p| now.get(&p.at).cloned())
            .collect();
        let path = backup::write(&st.dir, &old)?;
        held.journal.append(RekeyRecord::RekeyBackupWritten {
            path,
            cells: old.len(),
        })?;
    }
    let (recovered, changed, redo) = sort_out(&st, &planned, &now);
    // Opened under the new key only: with the same passphrase and another
    // count, the old key opens them too.
    let opened = codec.open_new(&recovered);
    let mut rekeyed = Vec::new();
    let mut failed = Vec::new();
    for (c, opened) in recovered.iter().zip(opened) {
        match opened {
            Ok(_) => rekeyed.push(c.at.clone()),
            Err(_) => failed.push(CellNote {
                at: c.at.clone(),
                reason: "holds the journaled new ciphertext but does not open under the new key \
                         given (a different new key?)"
                    .into(),
            }),
        }
    }
    let opened = codec.open(&redo);
    let mut todo: Vec<(Cell, Plain)> = Vec::new();
    for (c, (under, plain)) in redo.into_iter().zip(opened) {
        match (under, plain) {
            (Under::Old(_), Some(p)) => todo.push((c, p)),
            _ => failed.push(CellNote {
                at: c.at.clone(),
                reason: "holds its old ciphertext but does not open under the old key given".into(),
            }),
        }
    }
    held.journal.append(RekeyRecord::RekeyBatchDone {
        rekeyed,
        changed,
        failed,
    })?;
    let ran = run_batches(
        &mut held.journal,
        format,
        held.cells.as_mut(),
        codec.as_ref(),
        todo,
        progress,
        cancel,
    )?;
    match ran {
        // Stopped before its first batch: the store is as the killed run
        // left it, and the journal's new records change nothing of it.
        Ran::Cancelled { batches: 0 } => return Ok(cancelled_unchanged(state_dir, &held)),
        Ran::Cancelled { .. } => {
            return Ok(put_back_cancelled(
                state_dir,
                &mut held,
                RollbackReason::CancelledResume,
                "resume",
            ));
        }
        Ran::Whole => {}
    }
    let mut report = finish(&mut held.journal, state_dir, "resume")?;
    signal_after_the_last_batch(&mut report, cancel);
    report.notices = held.locks.notices();
    Ok(report)
}

/// A resume cancelled before it wrote to the store: the rekey's report as
/// it stands (still interrupted, resumable), saying so.
fn cancelled_unchanged(state_dir: &Path, held: &Held) -> RekeyReport {
    let st = &held.journal.state;
    audit_as(state_dir, st, "resume", "cancelled");
    let mut report = report_of(st);
    report.cancelled = true;
    let keys = if st.begun.is_empty() {
        "no value under the new key yet"
    } else {
        "values it rekeyed under the new key, the rest under the old one: the application \
         needs both keys"
    };
    report.warnings.push(format!(
        "cancelled before its first batch: nothing was changed by this run. The rekey is still \
         interrupted as the earlier run left it ({keys}): finish it with `credshift resume \
         --migration-id {id}` or undo it with `credshift rollback --migration-id {id}`",
        id = st.id
    ));
    report.notices = held.locks.notices();
    report
}

/// A cancelled run (a rekey or its resume), still under its locks: the
/// whole rekey is rolled back so that the store ends under one key, the old
/// one (under two, the application cannot read it), and the report says it
/// was cancelled. A rollback that fails is a report too, with what state
/// the store is in and what to run: the run must still say it stopped.
pub(super) fn put_back_cancelled(
    state_dir: &Path,
    held: &mut Held,
    reason: RollbackReason,
    action: &str,
) -> RekeyReport {
    audit_as(state_dir, &held.journal.state, action, "cancelled");
    let mut report = match rollback_held(state_dir, held, reason) {
        Ok(r) => r,
        Err(e) => {
            let st = &held.journal.state;
            let id = &st.id;
            let mut r = report_of(st);
            r.warnings.push(if st.rolling_back {
                format!(
                    "the rollback after the cancel did not finish ({e}): some values may still \
                     be under the new key and the rest under the old one, so the application \
                     needs both keys until `credshift rollback --migration-id {id}` completes it"
                )
            } else {
                format!(
                    "the rollback after the cancel could not start ({e}): the values rekeyed so \
                     far are under the new key and the rest under the old one, so the \
                     application needs both keys; put them back with `credshift rollback \
                     --migration-id {id}` or finish the rekey with `credshift resume \
                     --migration-id {id}`"
                )
            });
            r.notices = held.locks.notices();
            r
        }
    };
    report.cancelled = true;
    report
}

/// The report of a rekey already completed, a refusal for one rolled back
/// (or whose rollback did not finish), or `None`: resumable.
fn not_resumable(st: &RekeyState) -> Result<Option<RekeyReport>> {
    let id = &st.id;
    match (st.status(), st.rolled_back) {
        (MigrationStatus::Completed, _) => Ok(Some(report_of(st))),
        (MigrationStatus::RolledBack, _) => Err(EngineError::Refused(format!(
            "rekey {id} was rolled back; start a new rekey instead"
        ))),
        (_, Some(false)) => Err(EngineError::Refused(format!(
            "a rollback of rekey {id} did not finish; complete it with `credshift rollback \
             --migration-id {id}`"
        ))),
        _ => Ok(None),
    }
}

/// A resume given another new key than the run it finishes would leave
/// the store under two new keys: refused before anything is written, when
/// a cell already holds a new ciphertext the journal recorded and the key
/// given does not open it. (Before the first swap nothing tells two new
/// keys apart, and nothing needs to: no cell is under the first yet.)
fn refuse_another_new_key(
    st: &RekeyState,
    now: &BTreeMap<CellRef, Cell>,
    codec: &dyn codec::Codec,
) -> Result<()> {
    let written: Vec<Cell> = st
        .begun
        .iter()
        .filter_map(|(at, fps)| now.get(at).filter(|c| fps.contains(&fp(&c.value))))
        .cloned()
        .collect();
    let closed = codec
        .open_new(&written)
        .iter()
        .filter(|r| r.is_err())
        .count();
    if closed > 0 {
        return Err(EngineError::Refused(format!(
            "rekey {}: the new key given does not open {closed} of the {} values this rekey \
             already wrote under its new key ({}): resume with that same key, or roll back. \
             Nothing was written",
            st.id,
            written.len(),
            st.new_key
        )));
    }
    Ok(())
}

type Sorted = (Vec<Cell>, Vec<CellNote>, Vec<Cell>);

/// Planned cells not yet rekeyed, by what they hold now: the journaled new
/// ciphertext (recovered), something else (changed), the old one (redo).
fn sort_out(st: &RekeyState, planned: &[PlannedCell], now: &BTreeMap<CellRef, Cell>) -> Sorted {
    let (mut recovered, mut changed, mut redo) = (Vec::new(), Vec::new(), Vec::new());
    for p in planned {
        if st.rekeyed.contains(&p.at) {
            continue;
        }
        let Some(cell) = now.get(&p.at) else {
            changed.push(CellNote {
                at: p.at.clone(),
                reason: "removed by the application since it was read".into(),
            });
            continue;
        };
        let f = fp(&cell.value);
        if f == p.old_fp {
            redo.push(cell.clone());
        } else if st.begun.get(&p.at).is_some_and(|n| n.contains(&f)) {
            recovered.push(cell.clone());
        } else {
            changed.push(CellNote {
                at: p.at.clone(),
                reason: "changed by the application since it was read; left as it is".into(),
            });
        }
    }
    (recovered, changed, redo)
}

/// Put back every old ciphertext this rekey replaced, byte for byte, from
/// its backup. Needs no key. A cell changed since by the application is
/// kept and reported (the rollback is then incomplete). Idempotent.
pub fn rollback(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<RekeyReport> {
    let st = load(state_dir, id)?;
    if st.rolled_back == Some(true) {
        return Ok(report_of(&st));
    }
    let mut held = hold(state_dir, id, opts, Use::WRITE)?;
    rollback_held(state_dir, &mut held, RollbackReason::Requested)
}

/// [`rollback`] under locks already held (its own, or those of the run a
/// cancel stopped: never released in between, so no other run can finish
/// or change the rekey before it is put back).
pub(super) fn rollback_held(
    state_dir: &Path,
    held: &mut Held,
    reason: RollbackReason,
) -> Result<RekeyReport> {
    let st = held.journal.state.clone();
    if st.rolled_back == Some(true) {
        return Ok(report_of(&st));
    }
    let old = backup_of(&st)?;
    held.journal.append(RekeyRecord::RekeyRollbackStarted {
        reason: Some(reason),
    })?;
    let ats: Vec<CellRef> = st.begun.keys().cloned().collect();
    let (restored, kept, left) = put_back(held, &st, &old, &ats)?;
    let complete = kept.is_empty();
    held.journal.append(RekeyRecord::RekeyUndone {
        restored,
        kept,
        left,
    })?;
    held.journal
        .append(RekeyRecord::RekeyRolledBack { complete })?;
    held.journal.append(RekeyRecord::RekeyFinished {
        status: if complete {
            MigrationStatus::RolledBack
        } else {
            MigrationStatus::Interrupted
        },
    })?;
    audit(state_dir, &held.journal.state, "rollback");
    let mut report = report_of(&held.journal.state);
    report.notices = held.locks.notices();
    Ok(report)
}

/// Why a rekey of `format` rolls back whole only, or `None` when some of
/// its rows may go back alone. Laravel may: each row stays under the old or
/// the new key, and the app reads both once `APP_PREVIOUS_KEYS` holds the
/// old one (what the report's next steps say). agent-prompttrain reads one
/// key; credshift's table has one key check for all its rows; a file is
/// one value.
pub fn partial_rollback_refusal(format: Option<RekeyFormat>, id: &MigrationId) -> Option<String> {
    let why = match format? {
        RekeyFormat::Laravel => return None,
        RekeyFormat::PromptTrain => {
            "rolling back only some rows would leave agent-prompttrain's accounts under two \
             keys, and agent-prompttrain reads them with one CREDENTIAL_ENCRYPTION_KEY: the rows \
             under the other key would not open"
        }
        RekeyFormat::CredshiftSqlite | RekeyFormat::CredshiftPostgres => {
            "credshift's table checks one key for all its rows: some rows under the old key and \
             some under the new one would not open under either"
        }
        RekeyFormat::Envelope => {
            "the rekey rewrote the file as one value: there are no rows to choose, it goes back \
             whole"
        }
    };
    Some(format!(
        "{id} is a rekey, and {why}. Nothing was changed. Roll it back whole with `credshift \
         rollback --migration-id {id}` (no --only)"
    ))
}

/// Put the old ciphertexts back into the rows matching `glob` (a row's id,
/// or its `table row column`), for a Laravel rekey only (see
/// [`partial_rollback_refusal`]); the rest stays under the new key and the
/// rekey stays completed. Journaled as one `rekey_undone` after the swaps'
/// transaction; a crash between the two leaves rows under their old
/// ciphertext that `verify` reports and running this again (or a whole
/// rollback) records.
pub fn rollback_only(
    state_dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
    glob: &str,
) -> Result<RekeyReport> {
    let st = load(state_dir, id)?;
    if let Some(why) = partial_rollback_refusal(st.format, id) {
        return Err(EngineError::Refused(why));
    }
    if st.rolled_back == Some(true) {
        return Ok(report_of(&st));
    }
    let mut held = hold(state_dir, id, opts, Use::WRITE)?;
    let st = held.journal.state.clone();
    let ats: Vec<CellRef> = st
        .begun
        .keys()
        .filter(|at| !st.restored.contains(*at))
        .filter(|at| {
            crate::store::faults::glob_match(glob, &at.row)
                || crate::store::faults::glob_match(glob, &at.to_string())
        })
        .cloned()
        .collect();
    if ats.is_empty() {
        return Err(EngineError::Refused(format!(
            "no row rekeyed by {id} and not yet rolled back matches {glob} (a row's id, or its \
             `table row column`). Nothing was changed"
        )));
    }
    let old = backup_of(&st)?;
    let (restored, kept, left) = put_back(&mut held, &st, &old, &ats)?;
    held.journal.append(RekeyRecord::RekeyUndone {
        restored,
        kept,
        left,
    })?;
    audit(state_dir, &held.journal.state, "rollback");
    let mut report = report_of(&held.journal.state);
    report.notices = held.locks.notices();
    Ok(report)
}

/// Restored, kept (an error), left (the application's values).
type PutBack = (Vec<CellRef>, Vec<CellNote>, Vec<CellNote>);

/// The old ciphertexts the rekey's backup holds (none before a backup).
fn backup_of(st: &RekeyState) -> Result<BTreeMap<CellRef, String>> {
    match &st.backup {
        Some(p) if !p.exists() && !st.dir.join(REKEY_BACKUP_KEY).exists() => {
            Err(EngineError::Refused(format!(
                "rekey {}: its backup was deleted (`rekey --forget-backup`): the old \
                 ciphertexts are gone, there is nothing to roll back to",
                st.id
            )))
        }
        Some(p) => Ok(backup::read(&st.dir, p)?),
        None => Ok(BTreeMap::new()),
    }
}

/// Put the old ciphertext back into each of `ats` that holds one the rekey
/// wrote (compare-and-swap, one transaction): which were restored, which
/// were kept (not in the backup), which were left (the application's own
/// values since: changed or removed).
fn put_back(
    held: &mut Held,
    st: &RekeyState,
    old: &BTreeMap<CellRef, String>,
    ats: &[CellRef],
) -> Result<PutBack> {
    let now = held.cells.read(ats)?;
    let mut restored = Vec::new();
    let mut kept = Vec::new();
    // The application's own values since the rekey: not ours to undo, so
    // they are listed and do not keep the rollback open for ever.
    let mut left = Vec::new();
    let mut swaps = Vec::new();
    for (at, cur) in ats.iter().zip(now) {
        let Some(before) = old.get(at) else {
            kept.push(CellNote {
                at: at.clone(),
                reason: "not in the backup".into(),
            });
            continue;
        };
        match cur {
            None => left.push(CellNote {
                at: at.clone(),
                reason: "removed by the application since the rekey".into(),
            }),
            Some(v) if ct_eq_bytes(v.as_bytes(), before.as_bytes()) => restored.push(at.clone()),
            Some(v) if st.begun.get(at).is_some_and(|n| n.contains(&fp(&v))) => swaps.push(Swap {
                at: at.clone(),
                old: v,
                new: before.clone(),
            }),
            Some(_) => left.push(CellNote {
                at: at.clone(),
                reason: "changed by the application since the rekey; left as it is".into(),
            }),
        }
    }
    let outcomes = held.cells.swap(&swaps)?;
    for (s, o) in swaps.iter().zip(outcomes) {
        match o {
            raw::SwapOutcome::Swapped => restored.push(s.at.clone()),
            _ => left.push(CellNote {
                at: s.at.clone(),
                reason: "changed by the application during the rollback; left as it is".into(),
            }),
        }
    }
    Ok((restored, kept, left))
}

/// Read the cells again: each rekeyed one must hold the new ciphertext
/// the journal recorded, each restored one its old ciphertext.
pub fn verify(state_dir: &Path, id: &MigrationId, opts: &KeyOptions) -> Result<RekeyReport> {
    let mut held = hold(state_dir, id, opts, Use::READ)?;
    let st = held.journal.state.clone();
    let planned: BTreeMap<&CellRef, &PlannedCell> = st
        .planned
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|p| (&p.at, p))
        .collect();
    let check: BTreeSet<CellRef> = st.rekeyed.union(&st.restored).cloned().collect();
    let ats: Vec<CellRef> = check.into_iter().collect();
    let now = held.cells.read(&ats)?;
    let mut ok = 0;
    let mut bad = Vec::new();
    for (at, cur) in ats.iter().zip(now) {
        let want_old = st.restored.contains(at);
        let good = cur.as_deref().map(fp).is_some_and(|f| {
            if want_old {
                planned.get(at).is_some_and(|p| p.old_fp == f)
            } else {
                st.begun.get(at).and_then(|n| n.last()) == Some(&f)
            }
        });
        if good {
            ok += 1;
        } else {
            bad.push(LocationNote {
                location: at.to_string(),
                error: if want_old {
                    "does not hold the old ciphertext the rollback put back".into()
                } else {
                    "does not hold the ciphertext the rekey wrote".into()
                },
            });
        }
    }
    held.journal.append(RekeyRecord::RekeyVerifyRun {
        verified: ok,
        mismatched: bad.len(),
    })?;
    audit(state_dir, &held.journal.state, "verify");
    let mut r = report_of(&held.journal.state);
    r.verified = ok;
    r.failed = bad.len();
    r.failures = bad;
    r.notices = held.locks.notices();
    Ok(r)
}

/// Delete the backup of a finished rekey that verify has passed since
/// (`rekey --forget-backup ID`): the old ciphertexts and their key file,
/// which anyone holding the old key could read. The journal stays, so
/// history still lists it; rollback is refused from then on. Returns the
/// files removed.
pub fn forget_backup(state_dir: &Path, id: &MigrationId) -> Result<Vec<std::path::PathBuf>> {
    let st = load(state_dir, id)?;
    if st.status() != MigrationStatus::Completed {
        return Err(EngineError::Refused(format!(
            "rekey {id} is {}: its backup is what resume and rollback need; only the backup \
             of a completed, verified rekey can be deleted",
            status_word(st.status())
        )));
    }
    let last_finish = st
        .lines
        .iter()
        .rposition(|l| matches!(l.record, RekeyRecord::RekeyFinished { .. }));
    let verified = st.lines.iter().enumerate().any(|(i, l)| {
        matches!(l.record, RekeyRecord::RekeyVerifyRun { mismatched: 0, .. })
            && last_finish.is_some_and(|f| i > f)
    });
    if !verified {
        return Err(EngineError::Refused(format!(
            "rekey {id} has no passing verify since it finished: run `credshift verify \
             --migration-id {id}` first (the backup is the only way back)"
        )));
    }
    let mut removed = Vec::new();
    for name in [REKEY_BACKUP_FILE, REKEY_BACKUP_KEY] {
        let path = st.dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::StoreError::io(&path, e).into()),
        }
    }
    crate::fsutil::fsync_dir(&st.dir).map_err(|e| crate::error::StoreError::io(&st.dir, e))?;
    audit(state_dir, &st, "forget-backup");
    Ok(removed)
}
