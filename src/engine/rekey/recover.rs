//! A recorded rekey, from its journal: resume, rollback, verify, history
//! and its report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
use super::journal::{CellNote, PlannedCell, RekeyJournal, RekeyRecord, RekeyState, fp};
use super::{
    KeyCount, LocationNote, RekeyProgress, RekeyReport, changed_store, finish, load, rekey_dir,
    run_batches, spec_of, under_keys,
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
        .filter_map(|id| RekeyState::load(&rekey_dir(state_dir, id)?, id).ok())
        .map(|st| HistoryEntry {
            id: st.id.clone(),
            started_at: st.started_at.clone(),
            from: crate::store::redact_url(&st.store),
            to: to_of(&st),
            status: st.status(),
            copied: st.rekeyed_now(),
            failed: st.failed.len(),
        })
        .collect()
}

fn next_steps(st: &RekeyState, status: MigrationStatus) -> Vec<String> {
    let id = &st.id;
    match status {
        MigrationStatus::RolledBack => {
            return vec!["Nothing to change: every value is under the old key again.".into()];
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
        conflicts: st.changed.len(),
        invalid: st.untouched.len(),
        failed: st.failed.len(),
        rolled_back: st.rolled_back == Some(true),
        rollback_reason: match st.rolled_back {
            Some(true) => Some("rolled back on request".into()),
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
        changed: st
            .changed
            .iter()
            .map(|(at, e)| LocationNote {
                location: at.to_string(),
                error: e.clone(),
            })
            .collect(),
        next_steps: next_steps(st, status),
        notices: Vec::new(),
    }
}

/// The audit line of a rekey action (best effort: the journal has it).
pub(super) fn audit(state_dir: &Path, st: &RekeyState, action: &str) {
    let r = report_of(st);
    let _ = audit::append(
        state_dir,
        audit::AuditEntry {
            action,
            from: Some(r.from.clone()),
            to: Some(r.to.clone()),
            migration_id: Some(st.id.0.clone()),
            outcome: status_word(st.status()),
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
struct Held {
    journal: RekeyJournal,
    cells: Box<dyn RawCells>,
    locks: Locks,
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
    let st = load(state_dir, id)?;
    match (st.status(), st.rolled_back) {
        (MigrationStatus::Completed, _) => return Ok(report_of(&st)),
        (MigrationStatus::RolledBack, _) => {
            return Err(EngineError::Refused(format!(
                "rekey {id} was rolled back; start a new rekey instead"
            )));
        }
        (_, Some(false)) => {
            return Err(EngineError::Refused(format!(
                "a rollback of rekey {id} did not finish; complete it with `credshift rollback \
                 --migration-id {id}`"
            )));
        }
        _ => {}
    }
    let mut held = hold(state_dir, id, opts, Use::WRITE)?;
    let st = held.journal.state.clone();
    if st.status() == MigrationStatus::Completed {
        return Ok(report_of(&st));
    }
    let format = st
        .format
        .ok_or_else(|| EngineError::Refused(format!("rekey {id}: no format recorded")))?;
    let all = held.cells.cells()?;
    let codec = codec::build(format, &st.store, &all, opts, new)?;
    let now: BTreeMap<CellRef, Cell> = all.into_iter().map(|c| (c.at.clone(), c)).collect();
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
    let opened = codec.open(&recovered);
    let mut rekeyed = Vec::new();
    let mut failed = Vec::new();
    for (c, (under, _)) in recovered.iter().zip(opened) {
        match under {
            Under::New => rekeyed.push(c.at.clone()),
            _ => failed.push(CellNote {
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
    run_batches(
        &mut held.journal,
        format,
        held.cells.as_mut(),
        codec.as_ref(),
        todo,
        progress,
    )?;
    let mut report = finish(&mut held.journal, state_dir, "resume")?;
    report.notices = held.locks.notices();
    Ok(report)
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
    let st = held.journal.state.clone();
    if st.rolled_back == Some(true) {
        return Ok(report_of(&st));
    }
    let old = match &st.backup {
        Some(p) => backup::read(&st.dir, p)?,
        None => BTreeMap::new(),
    };
    held.journal.append(RekeyRecord::RekeyRollbackStarted)?;
    let ats: Vec<CellRef> = st.begun.keys().cloned().collect();
    let now = held.cells.read(&ats)?;
    let mut restored = Vec::new();
    let mut kept = Vec::new();
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
            None => kept.push(CellNote {
                at: at.clone(),
                reason: "removed by the application since the rekey".into(),
            }),
            Some(v) if ct_eq_bytes(v.as_bytes(), before.as_bytes()) => restored.push(at.clone()),
            Some(v) if st.begun.get(at).is_some_and(|n| n.contains(&fp(&v))) => swaps.push(Swap {
                at: at.clone(),
                old: v,
                new: before.clone(),
            }),
            Some(_) => kept.push(CellNote {
                at: at.clone(),
                reason: "changed by the application since the rekey; left as it is".into(),
            }),
        }
    }
    let outcomes = held.cells.swap(&swaps)?;
    for (s, o) in swaps.iter().zip(outcomes) {
        match o {
            raw::SwapOutcome::Swapped => restored.push(s.at.clone()),
            _ => kept.push(CellNote {
                at: s.at.clone(),
                reason: "changed by the application during the rollback; left as it is".into(),
            }),
        }
    }
    let complete = kept.is_empty();
    held.journal
        .append(RekeyRecord::RekeyUndone { restored, kept })?;
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
