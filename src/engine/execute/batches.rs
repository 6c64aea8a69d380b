//! The item loop of a migration and of its resume: batches that grow 1,
//! 2, 4, ... ([`BatchRamp`]), each journaled, written, read back and
//! compared, with the rule that stops a run for a rollback.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::credential::{Credential, CredentialId};
use crate::engine::journal::Record;
use crate::engine::plan::same_for_target;
use crate::engine::types::{Counts, Failure, Progress};
use crate::error::StoreError;
use crate::store::{self, BatchHint};

use super::Run;

/// The product rule: a migration rolls back on its own when more than this
/// share of the writes attempted so far failed...
pub const ROLLBACK_THRESHOLD: f64 = 0.5;
/// ...checked once at least this many (or all, when fewer) were attempted.
pub const MIN_ATTEMPTS: usize = 4;
/// The largest batch; batches grow 1, 2, 4, ... up to it.
pub const MAX_BATCH: usize = 256;

/// The more-than-half rule, stated once: whether `failed` of `attempted`
/// writes (of `total` planned) is reason to roll back. The engine applies it
/// item by item, in plan order, so a batch stops a run exactly where a
/// one-item-at-a-time run would have stopped.
pub fn exceeds_failure_limit(attempted: usize, failed: usize, total: usize) -> bool {
    attempted > 0
        && attempted >= total.min(MIN_ATTEMPTS)
        && failed as f64 > attempted as f64 * ROLLBACK_THRESHOLD
}

/// How long one batch of a whole-file store may take before its batches
/// stop growing past [`MAX_BATCH`] (a cancel waits for the batch at hand).
pub const WHOLE_FILE_BATCH_BUDGET: Duration = Duration::from_secs(2);

/// The engine's batch sizes, one batch at a time: 1, 2, 4, ... For a store
/// that costs per item, they stop at [`MAX_BATCH`]. A whole-file store
/// rewrites the file once per batch, so fixed-size batches would make a
/// migration quadratic; its batches keep doubling (each rewrite then covers
/// at least as many new items as the file held before it, and the rewrites
/// add up to at most about twice the final file) while a batch stays within
/// [`WHOLE_FILE_BATCH_BUDGET`]. The small first batches stay either way,
/// so the more-than-half-failed rule still stops a bad migration early.
#[derive(Clone, Debug)]
pub struct BatchRamp {
    hint: BatchHint,
    size: usize,
}

impl BatchRamp {
    pub fn new(hint: BatchHint) -> Self {
        BatchRamp { hint, size: 1 }
    }

    /// The size of the next batch when `left` items remain.
    pub fn next_size(&self, left: usize) -> usize {
        self.size.min(left)
    }

    /// Grow after a batch that took `took`.
    pub fn grow(&mut self, took: Duration) {
        let doubled = self.size.saturating_mul(2);
        self.size = match self.hint {
            BatchHint::PerItem => doubled.min(MAX_BATCH),
            BatchHint::WholeFile if doubled <= MAX_BATCH => doubled,
            BatchHint::WholeFile if took <= WHOLE_FILE_BATCH_BUDGET => doubled,
            BatchHint::WholeFile => self.size,
        };
    }
}

/// Batch sizes for `n` items of a per-item store: 1, 2, 4, ... up to
/// [`MAX_BATCH`], summing to `n`.
pub fn batch_sizes(n: usize) -> Vec<usize> {
    let mut ramp = BatchRamp::new(BatchHint::PerItem);
    let mut out = Vec::new();
    let mut left = n;
    while left > 0 {
        let b = ramp.next_size(left);
        out.push(b);
        left -= b;
        ramp.grow(Duration::ZERO);
    }
    out
}

/// Why the item loop stopped early.
pub(crate) enum Stop {
    Rollback(String),
    /// The user cancelled: a resume stops here (its first run's writes
    /// stay); a migration turns it into a rollback before [`Run::finish`].
    Cancelled,
}

/// Per-run tallies for the threshold and the progress events.
#[derive(Default)]
pub(crate) struct Tally {
    pub total_writes: usize,
    pub verified: usize,
    pub failed: usize,
    pub skipped: usize,
    pub done: usize,
}

/// What happened to one item of a batch.
enum Outcome {
    Verified,
    Failed(String),
    Unavailable(String),
}

impl Run<'_> {
    /// Move the items in batches of 1, 2, 4, ... (see [`BatchRamp`]); stop
    /// for a rollback when [`exceeds_failure_limit`] says so (applied item
    /// by item), the target is unavailable, the journal fails, or on cancel.
    pub(crate) fn write_items(
        &mut self,
        work: Vec<Credential>,
        old: &BTreeMap<CredentialId, Credential>,
        keeps_metadata: bool,
        tally: &mut Tally,
        started: Instant,
    ) -> Option<Stop> {
        // A store that records provenance (Vault) names this migration and
        // its source, redacted, next to what it writes.
        self.target.set_provenance(&store::Provenance {
            migration_id: self.id.0.clone(),
            source: store::redact_url(&self.source.spec().absolute().to_string()),
        });
        let mut ramp = BatchRamp::new(self.target.batch_hint());
        let mut pos = 0;
        let total = work.len();
        // Batches are taken off the end of the reversed list and dropped
        // once journaled, and the list shrinks as it empties: neither the
        // values written nor the list itself are held to the end of the run.
        let mut rest = work;
        rest.reverse();
        while pos < total {
            if self.ctl.cancelled() {
                return Some(Stop::Cancelled);
            }
            let size = ramp.next_size(total - pos);
            let mut batch: Vec<Credential> = rest.split_off(rest.len() - size);
            batch.reverse();
            // Shrunk before the batch is written, not during: the list's
            // spare room (120 bytes per item already taken) held through a
            // large batch's write and read-back was 8 MB of a 100,000-item
            // migration's peak.
            if rest.len() < rest.capacity() / 2 {
                rest.shrink_to_fit();
            }
            let began = Instant::now();
            if let Some(stop) = self.write_batch(&batch, pos, old, keeps_metadata, tally, started) {
                return Some(stop);
            }
            drop(batch);
            ramp.grow(began.elapsed());
            pos += size;
        }
        None
    }

    /// One batch: journal its ids (fsynced), `write_many`, `read_many`,
    /// compare in constant time, journal the outcomes (fsynced).
    fn write_batch(
        &mut self,
        batch: &[Credential],
        first_index: usize,
        old: &BTreeMap<CredentialId, Credential>,
        keeps_metadata: bool,
        tally: &mut Tally,
        started: Instant,
    ) -> Option<Stop> {
        let ids: Vec<CredentialId> = batch.iter().map(|c| c.id.clone()).collect();
        for (i, id) in ids.iter().enumerate() {
            self.ctl.send(Progress::ItemStarted {
                index: first_index + i,
                id: id.clone(),
            });
        }
        if let Err(e) = self.journal.append(Record::BatchBegin { ids: ids.clone() }) {
            return Some(Stop::Rollback(format!("the journal failed: {e}")));
        }
        let written = self.target.write_many(batch);
        let mut landed: Vec<CredentialId> = Vec::with_capacity(ids.len());
        for (id, w) in ids.iter().zip(&written) {
            if w.is_ok() {
                self.ctl.send(Progress::ItemWritten { id: id.clone() });
                landed.push(id.clone());
            }
        }
        let mut back = if landed.is_empty() {
            Vec::new()
        } else {
            self.target.read_many(&landed)
        }
        .into_iter();
        let mut outcomes = Vec::with_capacity(batch.len());
        for (i, c) in batch.iter().enumerate() {
            let outcome = match written.get(i) {
                None => Outcome::Failed("the store returned no result".into()),
                Some(Err(e)) if e.is_unavailable() => Outcome::Unavailable(e.to_string()),
                Some(Err(e)) => Outcome::Failed(e.to_string()),
                Some(Ok(())) => {
                    let read = back
                        .next()
                        .unwrap_or_else(|| Err(StoreError::item(&c.id, "no read-back result")));
                    self.check_read_back(c, read, old.get(&c.id), keeps_metadata)
                }
            };
            outcomes.push(outcome);
        }
        let mut verified = Vec::new();
        let mut failed = Vec::new();
        for (c, o) in batch.iter().zip(&outcomes) {
            match o {
                Outcome::Verified => verified.push(c.id.clone()),
                Outcome::Failed(m) | Outcome::Unavailable(m) => failed.push(Failure {
                    id: c.id.clone(),
                    error: m.clone(),
                }),
            }
        }
        if let Err(e) = self.journal.append(Record::BatchDone { verified, failed }) {
            return Some(Stop::Rollback(format!("the journal failed: {e}")));
        }
        let mut stop = None;
        for (c, o) in batch.iter().zip(outcomes) {
            match o {
                Outcome::Verified => {
                    tally.verified += 1;
                    self.ctl.send(Progress::ItemVerified { id: c.id.clone() });
                }
                Outcome::Failed(error) => {
                    tally.failed += 1;
                    self.ctl.send(Progress::ItemFailed {
                        id: c.id.clone(),
                        error,
                    });
                }
                Outcome::Unavailable(msg) => {
                    tally.failed += 1;
                    self.ctl.send(Progress::ItemFailed {
                        id: c.id.clone(),
                        error: msg.clone(),
                    });
                    stop.get_or_insert_with(|| {
                        Stop::Rollback(format!("{} became unavailable: {msg}", self.target.spec()))
                    });
                }
            }
            tally.done += 1;
            let attempted = tally.verified + tally.failed;
            if stop.is_none() && exceeds_failure_limit(attempted, tally.failed, tally.total_writes)
            {
                stop = Some(Stop::Rollback(format!(
                    "{} of {attempted} writes failed (more than half)",
                    tally.failed
                )));
            }
        }
        self.ctl.send(Progress::Counts(counts(tally, started)));
        stop
    }

    /// Compare what the target returned with what was written.
    fn check_read_back(
        &self,
        c: &Credential,
        read: Result<Option<Credential>, StoreError>,
        old: Option<&Credential>,
        keeps_metadata: bool,
    ) -> Outcome {
        match read {
            Ok(Some(back)) if same_for_target(&back, c, keeps_metadata) => Outcome::Verified,
            Ok(Some(back)) => {
                Outcome::Failed(self.undo_wrong_read_back(c, &back, old, keeps_metadata))
            }
            // A store that keeps only a hash (agent-prompttrain's client
            // keys) confirms the value without returning it.
            Ok(None) => match self.target.verify_hashed(c) {
                Ok(Some(true)) => Outcome::Verified,
                Err(e) if e.is_unavailable() => Outcome::Unavailable(e.to_string()),
                _ => Outcome::Failed("not found when read back".into()),
            },
            Err(e) if e.is_unavailable() => Outcome::Unavailable(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

}

fn counts(t: &Tally, started: Instant) -> Counts {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        t.done as f64 / secs
    } else {
        0.0
    };
    let remaining = t.total_writes.saturating_sub(t.done);
    Counts {
        total: t.total_writes,
        done: t.done,
        written: t.verified,
        failed: t.failed,
        skipped: t.skipped,
        rate,
        eta: (rate > 0.0).then(|| std::time::Duration::from_secs_f64(remaining as f64 / rate)),
    }
}

