//! Rekey in place: re-encrypt a store's values under a new key, with the
//! safety of a migration (`credshift rekey`).
//!
//! 1. The session preamble takes the store's exclusive lock for the whole
//!    run ([`crate::engine::session::rekey`]).
//! 2. Plan: read every encrypted cell ([`crate::store::rekey::RawCells`]),
//!    tell which key each is under ([`codec::Codec::open`]). When no cell
//!    opens under the old key(s), stop before any write. Cells under no key
//!    are reported by location and never touched.
//! 3. An encrypted backup of the old ciphertexts (`rekey-backup.enc`, its
//!    own key file beside it: what it holds is still under the old key).
//! 4. Batches: seal under the new key, journal `rekey_batch_begin` with the
//!    old and new fingerprint of each cell, compare-and-swap every cell on
//!    its old ciphertext in one transaction (a cell the application changed
//!    meanwhile is left alone and reported), read back, open under the new
//!    key and compare the plaintext in constant time, journal
//!    `rekey_batch_done`. A cell that does not read back is put back.
//!    Stores whose cells depend on each other (credshift's tables and
//!    their meta row, a whole file) go in one batch.
//!
//! At every crash point each cell holds either its old ciphertext or the
//! journaled new one: [`resume`] finishes, [`rollback`] puts the old
//! ciphertexts back byte for byte (no key needed), [`verify`] checks the
//! fingerprints. History lists rekeys beside migrations.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::credential::ct_eq_bytes;
use crate::engine::error::{EngineError, Result};
use crate::engine::session;
use crate::engine::state;
use crate::engine::types::{MigrationId, MigrationStatus};
use crate::error::StoreError;
use crate::store::rekey::{self as raw, Cell, CellRef, RawCells, RekeyFormat, Swap, SwapOutcome};
use crate::store::{self, StoreSpec};
use crate::unlock::KeyOptions;

pub mod backup;
pub mod codec;
pub mod journal;
pub mod keygen;
mod recover;

pub use codec::{NewKey, Under};
pub use journal::{NewKeyKind, RekeyRecord, RekeyState, RollbackReason, is_rekey};
pub use recover::{
    forget_backup, history, partial_rollback_refusal, report_of, resume, resume_cancellable,
    rollback, rollback_only, verify,
};

use codec::{Codec, Plain};
use journal::{BegunCell, CellNote, PlannedCell, RekeyJournal, fp};

/// Largest batch for stores rewritten row by row.
pub const MAX_REKEY_BATCH: usize = 256;

/// A rekey to run: the store, its new key, and where that key came from
/// (for the report's next steps; never the key).
#[derive(Debug, Clone)]
pub struct RekeyRequest {
    pub spec: StoreSpec,
    pub new_key: NewKey,
    /// `file PATH` or `variable NAME`.
    pub new_key_origin: String,
    /// A key made by `--generate-new-key`, written only once the run has
    /// its lock and a plan under the old key (nothing left by a refusal).
    pub generated: Option<std::sync::Arc<keygen::PendingKey>>,
}

/// How many cells one key opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyCount {
    pub key: String,
    pub cells: usize,
}

/// A cell by location, with a reason (never content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationNote {
    pub location: String,
    pub error: String,
}

impl From<&CellNote> for LocationNote {
    fn from(n: &CellNote) -> Self {
        LocationNote {
            location: n.at.to_string(),
            error: n.reason.clone(),
        }
    }
}

/// The dry run: what a rekey would do. Writes nothing.
#[derive(Debug, Clone, Serialize)]
pub struct RekeyPlan {
    pub operation: &'static str,
    pub store: String,
    pub format: RekeyFormat,
    pub total: usize,
    pub under_keys: Vec<KeyCount>,
    pub already_new: usize,
    /// Under none of the keys: reported, never touched.
    pub untouched: Vec<LocationNote>,
    pub estimated_seconds: f64,
}

/// A rekey's report: a migration report's fields (`copied` = rekeyed,
/// `skipped` = already under the new key, `conflicts` = changed by the
/// application meanwhile, `invalid` = under no key) with `"operation":
/// "rekey"` and what to change in the application.
#[derive(Debug, Clone, Serialize)]
pub struct RekeyReport {
    pub operation: &'static str,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_reason: Option<String>,
    pub failures: Vec<LocationNote>,
    pub backup: Option<PathBuf>,
    pub verified: usize,
    pub warnings: Vec<String>,
    pub status: MigrationStatus,
    pub under_keys: Vec<KeyCount>,
    pub untouched: Vec<LocationNote>,
    pub changed: Vec<LocationNote>,
    /// Exactly what to change so the application goes on working.
    pub next_steps: Vec<String>,
    /// What taking the locks did (a stale lock taken over, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<crate::store::LockNotice>,
    /// The user cancelled the run: it stopped between batches and put back
    /// what it had rekeyed (as a migration's `cancelled`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

/// Progress of a rekey: cells done of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyProgress {
    pub done: usize,
    pub total: usize,
}

fn not_rekeyable(spec: &StoreSpec) -> EngineError {
    EngineError::Refused(format!(
        "{spec}: this store cannot be rekeyed in place; rekey works on prompttrain-db:, \
         laravel:sqlite:, laravel:postgres://, sqlite:, postgres://, encrypted: and bundle:"
    ))
}

/// The store's format, or a refusal for a store that has no key to rotate.
pub fn format_of(spec: &StoreSpec) -> Result<RekeyFormat> {
    raw::format_of(spec).ok_or_else(|| not_rekeyable(spec))
}

/// The plan as read under the locks: each cell and its plaintext.
struct Survey {
    codec: Box<dyn Codec>,
    todo: Vec<(Cell, usize, Plain)>,
    already_new: usize,
    untouched: Vec<CellNote>,
    total: usize,
    elapsed: Duration,
}

fn survey(
    format: RekeyFormat,
    location: &str,
    cells: &mut dyn RawCells,
    opts: &KeyOptions,
    new: &NewKey,
) -> Result<Survey> {
    let start = Instant::now();
    let all = cells.cells()?;
    let codec = codec::build(format, location, &all, opts, new)?;
    let opened = codec.open(&all);
    let total = all.len();
    let mut s = Survey {
        codec,
        todo: Vec::new(),
        already_new: 0,
        untouched: Vec::new(),
        total,
        elapsed: Duration::ZERO,
    };
    for (cell, (under, plain)) in all.into_iter().zip(opened) {
        match (under, plain) {
            (Under::Old(k), Some(p)) => s.todo.push((cell, k, p)),
            (Under::New, _) => s.already_new += 1,
            (Under::Neither(reason), _) => s.untouched.push(CellNote {
                at: cell.at,
                reason,
            }),
            (Under::Old(_), None) => s.untouched.push(CellNote {
                at: cell.at,
                reason: "opened without a value".into(),
            }),
        }
    }
    s.elapsed = start.elapsed();
    if s.todo.is_empty() && s.already_new == 0 && !s.untouched.is_empty() {
        return Err(EngineError::Refused(format!(
            "{location}: none of the {} encrypted values opens under the old key ({}): wrong \
             key? Nothing was written",
            s.untouched.len(),
            s.codec.old_key_names().join(", ")
        )));
    }
    Ok(s)
}

fn under_keys(names: &[String], todo: impl Iterator<Item = usize>) -> Vec<KeyCount> {
    let mut counts = vec![0usize; names.len()];
    for k in todo {
        if let Some(c) = counts.get_mut(k) {
            *c += 1;
        }
    }
    names
        .iter()
        .zip(counts)
        .map(|(n, c)| KeyCount {
            key: n.clone(),
            cells: c,
        })
        .collect()
}

/// The dry run: which key each value is under, what would be left alone,
/// how long it would take. Holds the store shared; writes nothing.
pub fn dry_run(spec: &StoreSpec, opts: &KeyOptions, new: &NewKey) -> Result<RekeyPlan> {
    let format = format_of(spec)?;
    let store = store::open(spec, opts)?;
    let (_, _locks) = session::rekey(
        store.as_ref(),
        session::Use::READ,
        None,
        "",
        None,
        opts.lock_wait,
    )?;
    let mut cells = raw::open(spec, opts)?;
    let s = survey(format, &spec.to_string(), cells.as_mut(), opts, new)?;
    let names = s.codec.old_key_names();
    // A run opens every value again (as here) and seals each under the new
    // key, about the same work again; the read-back reuses the new keys.
    let estimate = s.elapsed.as_secs_f64() * 2.0;
    Ok(RekeyPlan {
        operation: "rekey",
        store: spec.to_string(),
        format,
        total: s.total,
        under_keys: under_keys(&names, s.todo.iter().map(|t| t.1)),
        already_new: s.already_new,
        untouched: s.untouched.iter().map(LocationNote::from).collect(),
        estimated_seconds: estimate,
    })
}

/// Batch sizes: 1, 2, 4, ... up to [`MAX_REKEY_BATCH`]; everything at
/// once for stores whose cells must change together.
fn batches(format: RekeyFormat, n: usize) -> Vec<usize> {
    match format {
        RekeyFormat::PromptTrain | RekeyFormat::Laravel => {
            let mut out = Vec::new();
            let (mut left, mut size) = (n, 1);
            while left > 0 {
                let take = size.min(left);
                out.push(take);
                left -= take;
                size = (size * 2).min(MAX_REKEY_BATCH);
            }
            out
        }
        _ if n == 0 => Vec::new(),
        _ => vec![n],
    }
}

/// What one batch did.
#[derive(Default)]
struct BatchResult {
    rekeyed: Vec<CellRef>,
    changed: Vec<CellNote>,
    failed: Vec<CellNote>,
}

/// Seal, journal, swap, read back, journal: one batch.
fn run_batch(
    j: &mut RekeyJournal,
    cells: &mut dyn RawCells,
    codec: &dyn Codec,
    batch: &[(Cell, Plain)],
) -> Result<BatchResult> {
    let just: Vec<Cell> = batch.iter().map(|(c, _)| c.clone()).collect();
    let plains: Vec<&Plain> = batch.iter().map(|(_, p)| p).collect();
    let sealed = codec.seal(&just, &plains);
    let mut out = BatchResult::default();
    let mut swaps = Vec::new();
    let mut idx = Vec::new();
    for (i, (cell, s)) in just.iter().zip(sealed).enumerate() {
        match s {
            Ok(new) => {
                swaps.push(Swap {
                    at: cell.at.clone(),
                    old: cell.value.clone(),
                    new,
                });
                idx.push(i);
            }
            Err(e) => out.failed.push(CellNote {
                at: cell.at.clone(),
                reason: e.to_string(),
            }),
        }
    }
    j.append(RekeyRecord::RekeyBatchBegin {
        cells: swaps
            .iter()
            .map(|s| BegunCell {
                at: s.at.clone(),
                old_fp: fp(&s.old),
                new_fp: fp(&s.new),
            })
            .collect(),
    })?;
    let outcomes = match cells.swap(&swaps) {
        Ok(o) => o,
        Err(e) => {
            // The transaction did not commit (or it is unknown whether it
            // did): the journal's fingerprints tell on resume or rollback.
            let failed: Vec<CellNote> = swaps
                .iter()
                .map(|s| CellNote {
                    at: s.at.clone(),
                    reason: e.to_string(),
                })
                .collect();
            j.append(RekeyRecord::RekeyBatchDone {
                rekeyed: Vec::new(),
                changed: Vec::new(),
                failed,
            })?;
            return Err(e.into());
        }
    };
    let swapped: Vec<usize> = (0..swaps.len())
        .filter(|&k| outcomes[k] == SwapOutcome::Swapped)
        .collect();
    for (k, o) in outcomes.iter().enumerate() {
        let reason = match o {
            SwapOutcome::Swapped => continue,
            SwapOutcome::Changed => "changed by the application since it was read; left as it is",
            SwapOutcome::Missing => "removed by the application since it was read",
        };
        out.changed.push(CellNote {
            at: swaps[k].at.clone(),
            reason: reason.into(),
        });
    }
    let ats: Vec<CellRef> = swapped.iter().map(|&k| swaps[k].at.clone()).collect();
    let now = cells.read(&ats)?;
    let read_back: Vec<Cell> = ats
        .iter()
        .zip(&now)
        .map(|(at, v)| Cell {
            at: at.clone(),
            value: v.clone().unwrap_or_default(),
        })
        .collect();
    let opened = codec.open_new(&read_back);
    let mut undo = Vec::new();
    for ((&k, now), opened) in swapped.iter().zip(&now).zip(opened) {
        let s = &swaps[k];
        let plain = plains[idx[k]];
        let same_bytes = now
            .as_deref()
            .is_some_and(|v| ct_eq_bytes(v.as_bytes(), s.new.as_bytes()));
        let same_plain = opened.is_ok_and(|p| ct_eq_bytes(&p, plain));
        if same_bytes && same_plain {
            out.rekeyed.push(s.at.clone());
        } else {
            undo.push(Swap {
                at: s.at.clone(),
                old: s.new.clone(),
                new: s.old.clone(),
            });
            out.failed.push(CellNote {
                at: s.at.clone(),
                reason: "did not read back under the new key; the old value was put back".into(),
            });
        }
    }
    if !undo.is_empty() {
        cells.swap(&undo)?;
    }
    j.append(RekeyRecord::RekeyBatchDone {
        rekeyed: out.rekeyed.clone(),
        changed: out.changed.clone(),
        failed: out.failed.clone(),
    })?;
    Ok(out)
}

/// Run the batches over `todo`, reporting progress.
fn run_batches(
    j: &mut RekeyJournal,
    format: RekeyFormat,
    cells: &mut dyn RawCells,
    codec: &dyn Codec,
    todo: Vec<(Cell, Plain)>,
    progress: &mut dyn FnMut(RekeyProgress),
    cancel: &AtomicBool,
) -> Result<Ran> {
    let total = todo.len();
    let mut rest = todo.into_iter();
    let mut done = 0;
    for (i, size) in batches(format, total).into_iter().enumerate() {
        // Between batches only: a batch journaled as begun always ends.
        if cancel.load(Ordering::SeqCst) {
            return Ok(Ran::Cancelled { batches: i });
        }
        let batch: Vec<(Cell, Plain)> = rest.by_ref().take(size).collect();
        run_batch(j, cells, codec, &batch)?;
        done += batch.len();
        progress(RekeyProgress { done, total });
    }
    Ok(Ran::Whole)
}

/// How [`run_batches`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Whole,
    /// Stopped between batches by a cancel, after this many batches.
    Cancelled { batches: usize },
}

/// Rekey a store: plan, back up, rewrite in journaled batches, read back.
pub fn run(
    req: &RekeyRequest,
    state_dir: &Path,
    opts: &KeyOptions,
    progress: &mut dyn FnMut(RekeyProgress),
) -> Result<RekeyReport> {
    run_cancellable(req, state_dir, opts, progress, &AtomicBool::new(false))
}

/// [`run`], stopped between batches once `cancel` is set: what was
/// rekeyed so far is then rolled back (a store left under two keys is what
/// the application cannot read), and the report says so.
pub fn run_cancellable(
    req: &RekeyRequest,
    state_dir: &Path,
    opts: &KeyOptions,
    progress: &mut dyn FnMut(RekeyProgress),
    cancel: &AtomicBool,
) -> Result<RekeyReport> {
    let format = format_of(&req.spec)?;
    let spec = req.spec.absolute();
    let store = store::open(&spec, opts)?;
    let (id, dir) = state::create(state_dir)?;
    let locked = session::rekey(
        store.as_ref(),
        session::Use::WRITE,
        Some(state_dir),
        &id.0,
        None,
        opts.lock_wait,
    );
    let planned = locked.and_then(|(identity, locks)| {
        let mut cells = raw::open(&spec, opts)?;
        let s = survey(
            format,
            &spec.to_string(),
            cells.as_mut(),
            opts,
            &req.new_key,
        )?;
        Ok((identity, locks, cells, s))
    });
    let (identity, locks, cells, s) = match planned {
        Ok(p) => p,
        Err(e) => {
            // Nothing was written: leave no empty migration behind.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    if let Some(k) = &req.generated
        && let Err(e) = k.commit()
    {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.into());
    }
    let mut j = RekeyJournal::open(&dir, &id)?;
    let names = s.codec.old_key_names();
    j.append(RekeyRecord::RekeyStarted {
        migration_id: id.clone(),
        store: spec.to_string(),
        format,
        identity: identity.map(Box::new),
        old_keys: names.clone(),
        new_key: req.new_key_origin.clone(),
        user: crate::engine::audit::who(),
        new_key_kind: Some(req.new_key.kind()),
        // Only credshift's own formats have a count of ours to keep.
        kdf_iterations: (!matches!(format, RekeyFormat::PromptTrain | RekeyFormat::Laravel))
            .then_some(opts.kdf_iterations),
    })?;
    j.append(RekeyRecord::RekeyPlanned {
        cells: s
            .todo
            .iter()
            .map(|(c, k, _)| PlannedCell {
                at: c.at.clone(),
                key: *k,
                old_fp: fp(&c.value),
            })
            .collect(),
        already_new: s.already_new,
        untouched: s.untouched.clone(),
    })?;
    let old: Vec<Cell> = s.todo.iter().map(|(c, _, _)| c.clone()).collect();
    let path = backup::write(&dir, &old)?;
    j.append(RekeyRecord::RekeyBackupWritten {
        path,
        cells: old.len(),
    })?;
    let todo: Vec<(Cell, Plain)> = s.todo.into_iter().map(|(c, _, p)| (c, p)).collect();
    let mut held = recover::Held {
        journal: j,
        cells,
        locks,
    };
    let ran = run_batches(
        &mut held.journal,
        format,
        held.cells.as_mut(),
        s.codec.as_ref(),
        todo,
        progress,
        cancel,
    )?;
    if let Ran::Cancelled { .. } = ran {
        // Put back under the locks this run holds (released, another run
        // waiting for them could finish the rekey before it is undone).
        return Ok(recover::put_back_cancelled(
            state_dir,
            &mut held,
            RollbackReason::CancelledRekey,
            "rekey",
        ));
    }
    let mut report = finish(&mut held.journal, state_dir, "rekey")?;
    signal_after_the_last_batch(&mut report, cancel);
    report.notices = held.locks.notices();
    Ok(report)
}

/// A signal that came during the last batch (or after it) found nothing
/// left to stop: the rekey ran to its end, and is kept (undoing a finished
/// rekey is `rollback`, which the user can still run). The report says
/// the signal was seen, so a Ctrl-C never passes in silence.
fn signal_after_the_last_batch(report: &mut RekeyReport, cancel: &AtomicBool) {
    if cancel.load(Ordering::SeqCst) {
        report.warnings.push(format!(
            "a stop request (Ctrl-C, SIGTERM or the wizard's cancel) arrived during the last \
             batch, when nothing was left to stop: the rekey ran to its end. To undo it, run \
             `credshift rollback --migration-id {}`",
            report.migration_id
        ));
    }
}

/// Journal the outcome and write the audit line.
fn finish(j: &mut RekeyJournal, state_dir: &Path, action: &str) -> Result<RekeyReport> {
    let st = &j.state;
    let status = if st.failed.is_empty() {
        MigrationStatus::Completed
    } else {
        MigrationStatus::Failed
    };
    j.append(RekeyRecord::RekeyFinished { status })?;
    recover::audit(state_dir, &j.state, action);
    Ok(report_of(&j.state))
}

/// Where the rekey with this id lives, when it is one.
pub fn rekey_dir(state_dir: &Path, id: &MigrationId) -> Option<PathBuf> {
    let dir = state::migration_dir(state_dir, id);
    (!id.0.contains(['/', '\\']) && !id.0.starts_with('.') && is_rekey(&dir)).then_some(dir)
}

fn unknown(state_dir: &Path, id: &MigrationId) -> EngineError {
    EngineError::UnknownMigration {
        id: id.0.clone(),
        dir: state::migrations_dir(state_dir).display().to_string(),
    }
}

fn load(state_dir: &Path, id: &MigrationId) -> Result<RekeyState> {
    let dir = rekey_dir(state_dir, id).ok_or_else(|| unknown(state_dir, id))?;
    Ok(RekeyState::load(&dir, id)?)
}

fn spec_of(st: &RekeyState) -> Result<StoreSpec> {
    session::spec_of(&st.store)
}

fn changed_store(st: &RekeyState, e: StoreError) -> EngineError {
    EngineError::Refused(format!("{}: {e}", st.store))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cancel_tests;
