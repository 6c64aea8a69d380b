//! Execute on a worker thread: backup, write + read back each item, roll
//! back on its own when too many fail, the target goes away or the user
//! cancels, then clean up the source when asked. Also the pieces resume,
//! rollback and cleanup share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::credential::{Credential, CredentialId};
use crate::engine::audit;
use crate::engine::backup::{self, BackupKey};
use crate::engine::error::{EngineError, Result};
use crate::engine::fingerprint::{self, FpKey};
use crate::engine::inventory::now_ms;
use crate::engine::journal::{BackupKeyKind, Journal, PlannedItem, Record, Totals};
use crate::engine::lock::{self, StoreLock};
use crate::engine::plan::{self, Prepared, same_for_target};
use crate::engine::state::{self, State};
use crate::engine::types::{
    Action, Counts, MigrationId, MigrationRequest, MigrationStatus, Progress, Report,
};
use crate::error::StoreError;
use crate::store::{self, OpenOptions, Store};

/// Cancel flag and progress channel of a running operation.
#[derive(Clone, Default)]
pub struct Control {
    pub cancel: Arc<AtomicBool>,
    pub events: Option<Sender<Progress>>,
}

impl Control {
    pub fn send(&self, p: Progress) {
        if let Some(tx) = &self.events {
            // A UI that went away does not stop the migration.
            let _ = tx.send(p);
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// A migration running on its worker thread.
pub struct MigrationHandle {
    pub id: MigrationId,
    /// The migration's folder (journal, plan, backup).
    pub dir: PathBuf,
    /// Progress events; the channel closes when the worker is done.
    pub events: Receiver<Progress>,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<Result<Report>>,
}

impl MigrationHandle {
    /// Ask the worker to stop: it rolls back what it wrote and finishes.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// The flag behind [`cancel`](Self::cancel), for signal handlers.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Wait for the worker and take its report.
    pub fn join(self) -> Result<Report> {
        self.thread
            .join()
            .unwrap_or(Err(EngineError::WorkerPanicked))
    }
}

/// How long a migration waits for another one holding the target's own
/// lock (`Store::lock`) before giving up.
pub const TARGET_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Open both stores and start the migration on a worker thread. Lock
/// conflicts, a bad store and a store migrated to itself fail here, before
/// anything is written.
pub fn start(
    req: MigrationRequest,
    state_dir: &Path,
    opts: &OpenOptions,
) -> Result<MigrationHandle> {
    let source = store::open(&req.from, opts)?;
    let target = store::open(&req.to, opts)?;
    start_with_stores(req, source, target, state_dir, opts)
}

/// [`start`] with stores the caller already opened (the wizard, tests, the
/// benchmark). `req.from`/`req.to` must be the stores' specs.
pub fn start_with_stores(
    req: MigrationRequest,
    source: Box<dyn Store>,
    target: Box<dyn Store>,
    state_dir: &Path,
    opts: &OpenOptions,
) -> Result<MigrationHandle> {
    let (id, dir) = state::create(state_dir)?;
    let locks = match lock::acquire_pair(state_dir, source.spec(), target.spec(), &id.0) {
        Ok(l) => l,
        Err(e) => {
            // Nothing started: leave no empty folder behind.
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
    };
    // The target's own lock (a PostgreSQL advisory lock) keeps migrations
    // from other machines or state dirs apart; plan and writes run under it.
    let store_lock = match target.lock(TARGET_LOCK_WAIT) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            return Err(e.into());
        }
    };
    let fp = FpKey::create(&dir)?;
    let mut journal = Journal::open(&dir)?;
    journal.append(Record::Started {
        migration_id: id.clone(),
        from: source.spec().to_string(),
        to: target.spec().to_string(),
        on_conflict: req.policy,
        delete_source: req.delete_source,
        selection: req.selection.as_ref().map(|s| s.iter().cloned().collect()),
        backup_key: if opts.passphrase.is_some() {
            BackupKeyKind::Passphrase
        } else {
            BackupKeyKind::KeyFile
        },
        user: audit::who(),
    })?;
    let (tx, rx) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let ctl = Control {
        cancel: cancel.clone(),
        events: Some(tx),
    };
    let state_dir = state_dir.to_path_buf();
    let opts = opts.clone();
    let worker_dir = dir.clone();
    let worker_id = id.clone();
    let thread = std::thread::Builder::new()
        .name(format!("credshift-migrate-{id}"))
        .spawn(move || {
            let _locks: Vec<StoreLock> = locks;
            let _store_lock = store_lock;
            let mut run = Run {
                id: worker_id,
                dir: worker_dir,
                journal,
                fp,
                source: source.as_ref(),
                target: target.as_ref(),
                ctl,
                state_dir,
                opts,
            };
            let result = run.migrate(&req);
            if let Ok(report) = &result {
                run.ctl.send(Progress::Finished(Box::new(report.clone())));
            }
            result
        })
        .map_err(|e| EngineError::Refused(format!("could not start a worker thread: {e}")))?;
    Ok(MigrationHandle {
        id,
        dir,
        events: rx,
        cancel,
        thread,
    })
}

/// Blocking convenience for the CLI: start, forward every event to
/// `on_progress`, join. `cancel` (e.g. set by SIGINT) rolls back.
pub fn run(
    req: MigrationRequest,
    state_dir: &Path,
    opts: &OpenOptions,
    cancel: Option<Arc<AtomicBool>>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Report> {
    let h = start(req, state_dir, opts)?;
    let flag = h.cancel_flag();
    loop {
        match h.events.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(p) => on_progress(&p),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(c) = &cancel
            && c.load(Ordering::SeqCst)
        {
            flag.store(true, Ordering::SeqCst);
        }
    }
    h.join()
}

/// Why the item loop stopped early.
pub(crate) enum Stop {
    Rollback(String),
}

pub(crate) struct Run<'a> {
    pub id: MigrationId,
    pub dir: PathBuf,
    pub journal: Journal,
    pub fp: FpKey,
    pub source: &'a dyn Store,
    pub target: &'a dyn Store,
    pub ctl: Control,
    pub state_dir: PathBuf,
    pub opts: OpenOptions,
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

pub(crate) fn planned_items(p: &Prepared, fp: &FpKey) -> Vec<PlannedItem> {
    p.plan
        .items
        .iter()
        .map(|i| {
            let src = p.source.get(&i.id);
            PlannedItem {
                id: i.id.clone(),
                action: action_name(&i.action).into(),
                fp: src
                    .filter(|_| i.action.writes() || i.action == Action::SkipIdentical)
                    .map(|c| fp.value(c)),
                mfp: src.filter(|_| i.action.writes()).map(|c| fp.meta(c)),
                target_fp: p.target_old.get(&i.id).map(|c| fp.value(c)),
            }
        })
        .collect()
}

pub fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Copy => "copy",
        Action::Overwrite => "overwrite",
        Action::SkipIdentical => "skip_identical",
        Action::Conflict => "conflict",
        Action::Invalid { .. } => "invalid",
        Action::TooLong { .. } => "too_long",
    }
}

impl Run<'_> {
    fn migrate(&mut self, req: &MigrationRequest) -> Result<Report> {
        let started = Instant::now();
        let prepared = match plan::prepare(
            self.source,
            self.target,
            req.policy,
            req.selection.as_ref(),
            now_ms(),
        ) {
            Ok(p) => p,
            Err(e) => return Err(self.fail_before_writing(e)),
        };
        if let Ok(text) = serde_json::to_vec_pretty(&prepared.plan) {
            // The plan file is a convenience for support; the journal is the record.
            let _ = crate::fsutil::atomic_write(&self.dir.join(state::PLAN_FILE), &text);
        }
        self.journal.append(Record::Planned {
            items: planned_items(&prepared, &self.fp),
        })?;
        self.ctl
            .send(Progress::Planned(prepared.plan.counts.clone()));
        let overwritten: Vec<Credential> = prepared
            .plan
            .items
            .iter()
            .filter(|i| i.action == Action::Overwrite)
            .filter_map(|i| prepared.target_old.get(&i.id).cloned())
            .collect();
        let all_source: Vec<Credential> = prepared.source.values().cloned().collect();
        if let Err(e) = self.write_backups(&all_source, &overwritten) {
            return Err(self.fail_before_writing(e));
        }
        let work: Vec<&Credential> = prepared.to_write();
        let old: BTreeMap<CredentialId, Credential> =
            overwritten.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut tally = Tally {
            total_writes: work.len(),
            skipped: prepared.plan.items.len() - work.len(),
            ..Tally::default()
        };
        let keeps = prepared.target_capability.keeps_metadata;
        let stop = self.write_items(&work, &old, keeps, &mut tally, started);
        self.finish("migrate", stop, &old, req.delete_source)
    }

    /// Record a failure that happened before any target write.
    fn fail_before_writing(&mut self, e: StoreError) -> EngineError {
        let _ = self.journal.append(Record::Finished {
            status: MigrationStatus::Failed,
            totals: Totals::default(),
            reason: Some(e.to_string()),
        });
        self.audit("migrate", "failed", Totals::default());
        e.into()
    }

    pub(crate) fn write_backups(
        &mut self,
        source: &[Credential],
        overwritten: &[Credential],
    ) -> Result<(), StoreError> {
        let path = self.dir.join(backup::BACKUP_FILE);
        let key = backup::new_key(&path, &self.opts, true)?;
        let sealing = backup::sealing_key(&key, &self.opts)?;
        backup::write_sealed(&path, source, &sealing)?;
        let target_path = self.dir.join(state::TARGET_BACKUP_FILE);
        if !overwritten.is_empty() {
            backup::write_sealed(&target_path, overwritten, &sealing)?;
        }
        self.journal.append(Record::BackupWritten {
            path: path.clone(),
            items: source.len() + overwritten.len(),
        })?;
        self.ctl.send(Progress::BackupWritten {
            path,
            items: source.len() + overwritten.len(),
        });
        Ok(())
    }

    /// Write, read back and compare each item; stop for a rollback when
    /// more than half of the attempted writes failed (checked once at least
    /// min(4, total) were attempted), the target is unavailable, or on cancel.
    pub(crate) fn write_items(
        &mut self,
        work: &[&Credential],
        old: &BTreeMap<CredentialId, Credential>,
        keeps_metadata: bool,
        tally: &mut Tally,
        started: Instant,
    ) -> Option<Stop> {
        let min_attempts = tally.total_writes.min(4);
        for (index, c) in work.iter().enumerate() {
            if self.ctl.cancelled() {
                return Some(Stop::Rollback("cancelled by the user".into()));
            }
            self.ctl.send(Progress::ItemStarted {
                index,
                id: c.id.clone(),
            });
            match self.write_one(c, old.get(&c.id), keeps_metadata) {
                Ok(()) => tally.verified += 1,
                Err(ItemError::Failed(msg)) => {
                    tally.failed += 1;
                    self.ctl.send(Progress::ItemFailed {
                        id: c.id.clone(),
                        error: msg,
                    });
                }
                Err(ItemError::Unavailable(msg)) => {
                    tally.failed += 1;
                    return Some(Stop::Rollback(format!(
                        "{} became unavailable: {msg}",
                        self.target.spec()
                    )));
                }
                Err(ItemError::Journal(e)) => {
                    return Some(Stop::Rollback(format!("the journal failed: {e}")));
                }
            }
            tally.done += 1;
            self.ctl.send(Progress::Counts(counts(tally, started)));
            let attempted = tally.verified + tally.failed;
            if attempted >= min_attempts && tally.failed * 2 > attempted {
                return Some(Stop::Rollback(format!(
                    "{} of {attempted} writes failed (more than half)",
                    tally.failed
                )));
            }
        }
        None
    }

    fn write_one(
        &mut self,
        c: &Credential,
        old: Option<&Credential>,
        keeps_metadata: bool,
    ) -> Result<(), ItemError> {
        self.journal
            .append(Record::WriteBegin { id: c.id.clone() })
            .map_err(ItemError::Journal)?;
        let outcome = match self.target.write(c) {
            Err(e) => Err(e),
            Ok(()) => {
                self.ctl.send(Progress::ItemWritten { id: c.id.clone() });
                self.target.read(&c.id)
            }
        };
        let failure = match outcome {
            Ok(Some(back)) if same_for_target(&back, c, keeps_metadata) => {
                self.journal
                    .append(Record::Verified { id: c.id.clone() })
                    .map_err(ItemError::Journal)?;
                self.ctl.send(Progress::ItemVerified { id: c.id.clone() });
                return Ok(());
            }
            Ok(Some(_)) => {
                // A wrong value landed: put back what was there.
                let _ = match old {
                    Some(o) => self.target.write(o),
                    None => self.target.delete(&c.id).map(|_| ()),
                };
                ItemError::Failed("the value read back differs from the one written".into())
            }
            // A store that keeps only a hash (agent-prompttrain's client
            // keys) confirms the value without returning it.
            Ok(None) if matches!(self.target.verify_hashed(c), Ok(Some(true))) => {
                self.journal
                    .append(Record::Verified { id: c.id.clone() })
                    .map_err(ItemError::Journal)?;
                self.ctl.send(Progress::ItemVerified { id: c.id.clone() });
                return Ok(());
            }
            Ok(None) => ItemError::Failed("not found when read back".into()),
            Err(e) if e.is_unavailable() => ItemError::Unavailable(e.to_string()),
            Err(e) => ItemError::Failed(e.to_string()),
        };
        let msg = match &failure {
            ItemError::Failed(m) | ItemError::Unavailable(m) => m.clone(),
            ItemError::Journal(e) => e.to_string(),
        };
        self.journal
            .append(Record::Failed {
                id: c.id.clone(),
                error: msg,
            })
            .map_err(ItemError::Journal)?;
        Err(failure)
    }

    /// After the item loop: roll back or finish, then clean up if asked.
    pub(crate) fn finish(
        &mut self,
        action: &str,
        stop: Option<Stop>,
        old: &BTreeMap<CredentialId, Credential>,
        delete_source: bool,
    ) -> Result<Report> {
        let state = State::load(&self.state_dir, &self.id)?;
        match stop {
            Some(Stop::Rollback(reason)) => {
                self.ctl.send(Progress::RollingBack {
                    reason: reason.clone(),
                });
                self.journal.append(Record::RollbackStarted { reason })?;
                let complete = undo_all(
                    &mut self.journal,
                    &self.fp,
                    self.target,
                    &state,
                    old,
                    &self.ctl,
                )?;
                self.journal.append(Record::RolledBack { complete })?;
                let state = State::load(&self.state_dir, &self.id)?;
                self.journal.append(Record::Finished {
                    status: if complete {
                        MigrationStatus::RolledBack
                    } else {
                        MigrationStatus::Interrupted
                    },
                    totals: state.totals(),
                    reason: state.rollback_reason.clone(),
                })?;
                let outcome = if complete {
                    "rolled_back"
                } else {
                    "interrupted"
                };
                self.audit(action, outcome, state.totals());
            }
            None => {
                let ok = state.failed.is_empty();
                let status = if ok {
                    MigrationStatus::Completed
                } else {
                    MigrationStatus::Failed
                };
                self.journal.append(Record::Finished {
                    status,
                    totals: state.totals(),
                    reason: None,
                })?;
                self.audit(
                    action,
                    if ok { "completed" } else { "failed" },
                    state.totals(),
                );
                if delete_source {
                    let state = State::load(&self.state_dir, &self.id)?;
                    cleanup_items(
                        &mut self.journal,
                        &self.fp,
                        self.source,
                        self.target,
                        &state,
                        &self.ctl,
                    )?;
                    let state = State::load(&self.state_dir, &self.id)?;
                    self.audit("cleanup", "completed", state.totals());
                }
            }
        }
        Ok(State::load(&self.state_dir, &self.id)?.report())
    }

    pub(crate) fn audit(&self, action: &str, outcome: &str, counts: Totals) {
        // The audit trail must not turn a finished migration into a failed one.
        let _ = audit::append(
            &self.state_dir,
            audit::Entry {
                action,
                from: Some(self.source.spec().to_string()),
                to: Some(self.target.spec().to_string()),
                migration_id: Some(self.id.0.clone()),
                outcome,
                counts,
            },
        );
    }
}

pub(crate) enum ItemError {
    Failed(String),
    Unavailable(String),
    Journal(StoreError),
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

/// Undo every write this migration began, newest first. Returns whether
/// every item is back as it was. Idempotent: an item already undone is
/// recognised by its fingerprint and left alone.
pub(crate) fn undo_all(
    journal: &mut Journal,
    fp: &FpKey,
    target: &dyn Store,
    state: &State,
    old: &BTreeMap<CredentialId, Credential>,
    ctl: &Control,
) -> Result<bool> {
    let mut complete = true;
    for id in state.begun.iter().rev() {
        let planned = state.planned_item(id);
        let ours = planned.and_then(|p| p.fp.as_deref());
        let before = planned.and_then(|p| p.target_fp.as_deref());
        let overwrite = planned.is_some_and(|p| p.action == "overwrite");
        let result = undo_one(fp, target, id, ours, before, overwrite, old.get(id));
        match result {
            Ok(how) => {
                journal.append(Record::Undone {
                    id: id.clone(),
                    how: how.to_string(),
                })?;
                ctl.send(Progress::ItemUndone {
                    id: id.clone(),
                    how: how.to_string(),
                });
            }
            Err(e) => {
                complete = false;
                let unavailable = e.is_unavailable();
                journal.append(Record::UndoFailed {
                    id: id.clone(),
                    error: e.to_string(),
                })?;
                if unavailable {
                    break;
                }
            }
        }
    }
    Ok(complete)
}

fn undo_one(
    fp: &FpKey,
    target: &dyn Store,
    id: &CredentialId,
    ours: Option<&str>,
    before: Option<&str>,
    overwrite: bool,
    old: Option<&Credential>,
) -> Result<&'static str, StoreError> {
    // A target that does not exist (a file never created because every
    // write failed) holds nothing: the item is absent, not an error.
    let current = match target.read(id) {
        Ok(c) => c,
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let restore = |o: Option<&Credential>| -> Result<&'static str, StoreError> {
        match o {
            Some(o) => target.write(o).map(|_| "restored"),
            None => Err(StoreError::item(
                id,
                "the old target value is not in memory or the backup",
            )),
        }
    };
    match current {
        None if overwrite => restore(old),
        None => Ok("absent"),
        Some(cur) => {
            let now = fp.value(&cur);
            if ours.is_some_and(|f| fingerprint::same(f, &now)) {
                if overwrite {
                    restore(old)
                } else {
                    target.delete(id).map(|_| "removed")
                }
            } else if before.is_some_and(|f| fingerprint::same(f, &now)) {
                Ok("already_restored")
            } else if !overwrite && ours.is_none() {
                Err(StoreError::item(id, "no fingerprint in the journal"))
            } else {
                // Not what we wrote and not what was there: someone else's
                // value. Leave it.
                Ok("left_changed")
            }
        }
    }
}

/// Delete order for cleanup: per namespace and field, numbered entries in
/// descending index order (agent-prompttrain's client keys are array
/// entries whose indices shift when a lower one is removed).
pub fn delete_order(ids: &mut [CredentialId]) {
    fn split(name: &str) -> (&str, Option<u64>) {
        match name.rsplit_once('/') {
            Some((head, tail)) => match tail.parse::<u64>() {
                Ok(n) => (head, Some(n)),
                Err(_) => (name, None),
            },
            None => (name, None),
        }
    }
    ids.sort_by(|a, b| {
        let (ha, na) = split(&a.name);
        let (hb, nb) = split(&b.name);
        a.namespace
            .cmp(&b.namespace)
            .then(ha.cmp(hb))
            .then(nb.cmp(&na))
    });
}

/// Delete from the source the items that verified (and the ones identical
/// at the target), each re-checked against the journal's fingerprint at
/// both ends right before the delete. A failed delete is reported as
/// "migrated, source still present".
pub(crate) fn cleanup_items(
    journal: &mut Journal,
    fp: &FpKey,
    source: &dyn Store,
    target: &dyn Store,
    state: &State,
    ctl: &Control,
) -> Result<()> {
    let Some(planned) = &state.planned else {
        return Ok(());
    };
    let mut ids: Vec<CredentialId> = planned
        .iter()
        .filter(|p| {
            (state.verified.contains(&p.id) || p.action == "skip_identical")
                && !state.source_deleted.contains(&p.id)
        })
        .map(|p| p.id.clone())
        .collect();
    delete_order(&mut ids);
    for id in ids {
        let Some(want) = state.planned_item(&id).and_then(|p| p.fp.clone()) else {
            continue;
        };
        let matches = |s: &dyn Store| -> Result<bool, StoreError> {
            Ok(s.read(&id)?
                .is_some_and(|c| fingerprint::same(&fp.value(&c), &want)))
        };
        let outcome = match (matches(target), matches(source)) {
            (Ok(true), Ok(true)) => source.delete(&id).map(|_| ()),
            (Ok(false), _) => Err(StoreError::item(
                &id,
                "the target no longer holds the migrated value",
            )),
            (_, Ok(false)) => Err(StoreError::item(&id, "the source value changed")),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match outcome {
            Ok(()) => {
                journal.append(Record::SourceDeleted { id: id.clone() })?;
                ctl.send(Progress::SourceDeleted { id });
            }
            Err(e) => {
                let error = format!("migrated, source still present: {e}");
                journal.append(Record::SourceDeleteFailed {
                    id: id.clone(),
                    error: error.clone(),
                })?;
                ctl.send(Progress::SourceDeleteFailed { id, error });
            }
        }
    }
    Ok(())
}

/// The backup key a recorded migration used.
pub(crate) fn migration_backup_key(
    state: &State,
    path: &Path,
    opts: &OpenOptions,
) -> Result<BackupKey> {
    match state.backup_key {
        BackupKeyKind::Passphrase => match &opts.passphrase {
            Some(p) => Ok(BackupKey::Passphrase(p.clone())),
            None => Err(EngineError::Refused(format!(
                "migration {}'s backup is protected by the passphrase used for it; give it with \
                 --passphrase-file, --passphrase-env or CREDSHIFT_PASSPHRASE",
                state.id
            ))),
        },
        BackupKeyKind::KeyFile => Ok(BackupKey::KeyFile(backup::key_file_for(path))),
    }
}
