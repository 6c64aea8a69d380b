//! Execute on a worker thread: backup, then items in batches (write, read
//! back, compare), roll back on its own when too many fail, the target goes
//! away or the user cancels, then clean up the source when asked. Also the
//! pieces resume, rollback and cleanup share. The batch loop itself (sizes,
//! write, read back, the failure rule) is in [`batches`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::credential::{Credential, CredentialId};
use crate::crypto::envelope::{self, KdfParams, KeySource, SealingKey};
use crate::engine::audit;
use crate::engine::backup_file::{self, BackupKey};
use crate::engine::error::{EngineError, Result};
use crate::engine::fingerprint::FpKey;
use crate::engine::inventory::now_ms;
pub(crate) use crate::engine::item_loops::{UndoScope, cleanup_items, undo_all};
use crate::engine::journal::{
    BackupKeyKind, Journal, KdfRecord, PlannedAction, PlannedItem, Record, Totals,
};
use crate::engine::plan::{self, Prepared};
use crate::engine::session;
use crate::engine::state::{self, State};
use crate::engine::types::{
    Action, MigrationId, MigrationRequest, MigrationStatus, Progress, Report,
};
use crate::error::StoreError;
use crate::store::{self, Store};
use crate::unlock::KeyOptions;

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
    /// Ask the worker to stop after the batch at hand. A migration or a
    /// restore then rolls back what it wrote; a resume stops and leaves the
    /// migration interrupted (what it wrote stays, journaled); a rollback
    /// stops with the rest still to undo; a verify stops reading. The
    /// report says which ([`Report::cancelled`]).
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

/// Run `work` on a worker thread of its own, with a [`Control`] whose
/// cancel and progress are the returned handle's: the one way every long
/// operation starts (a migration, and resume, rollback, verify, cleanup and
/// restore of a recorded one via [`crate::engine::recovery::start_recovery`]).
/// The handle's events end with [`Progress::Finished`] when `work` returns
/// a report. `cancel` is the job's flag from its first instruction: a
/// caller that keeps a clone can cancel before the handle exists, while the
/// worker may already be writing.
pub(crate) fn spawn_job(
    id: MigrationId,
    dir: PathBuf,
    name: &str,
    cancel: Arc<AtomicBool>,
    work: impl FnOnce(Control) -> Result<Report> + Send + 'static,
) -> Result<MigrationHandle> {
    let (tx, rx) = mpsc::channel();
    let ctl = Control {
        cancel: cancel.clone(),
        events: Some(tx),
    };
    let thread = std::thread::Builder::new()
        .name(format!("credshift-{name}-{id}"))
        .spawn(move || {
            let result = work(ctl.clone());
            if let Ok(report) = &result {
                ctl.send(Progress::Finished(Box::new(report.clone())));
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

/// How long a migration waits for another one holding a database's lock.
pub const TARGET_LOCK_WAIT: std::time::Duration = session::DB_LOCK_WAIT;

mod batches;
pub(crate) use batches::{Stop, Tally};
pub use batches::{
    BatchRamp, MAX_BATCH, MIN_ATTEMPTS, ROLLBACK_THRESHOLD, WHOLE_FILE_BATCH_BUDGET, batch_sizes,
    exceeds_failure_limit,
};

/// Plan a migration for the caller to show and ask consent for. The
/// result is what [`start_prepared`] executes. Writes nothing.
pub fn prepare(req: &MigrationRequest, source: &dyn Store, target: &dyn Store) -> Result<Prepared> {
    Ok(plan::prepare(
        source,
        target,
        req.policy,
        req.selection.as_ref(),
        now_ms(),
    )?)
}

/// Open both stores and start the migration on a worker thread (it plans
/// under the stores' locks). Lock conflicts, a bad store and a store
/// migrated to itself fail here, before anything is written. `cancel` is
/// the job's cancel flag (the handle's [`MigrationHandle::cancel_flag`]);
/// setting it stops the job after the batch at hand, also when set before
/// this returns.
pub fn start(
    req: MigrationRequest,
    state_dir: &Path,
    opts: &KeyOptions,
    cancel: Arc<AtomicBool>,
) -> Result<MigrationHandle> {
    let source = store::open(&req.from, opts)?;
    let target = store::open(&req.to, opts)?;
    start_with_stores(req, source, target, state_dir, opts, cancel)
}

/// [`start`] with stores the caller already opened (tests, the
/// benchmark, restore). `req.from`/`req.to` must be the stores' specs.
pub fn start_with_stores(
    req: MigrationRequest,
    source: Box<dyn Store>,
    target: Box<dyn Store>,
    state_dir: &Path,
    opts: &KeyOptions,
    cancel: Arc<AtomicBool>,
) -> Result<MigrationHandle> {
    spawn(req, None, source, target, state_dir, opts, cancel)
}

/// Execute exactly the migration the user consented to. Under the stores'
/// locks, both stores are read again first: when anything planned changed
/// at either end, the migration stops before writing and names the items.
pub fn start_prepared(
    req: MigrationRequest,
    prepared: Prepared,
    source: Box<dyn Store>,
    target: Box<dyn Store>,
    state_dir: &Path,
    opts: &KeyOptions,
    cancel: Arc<AtomicBool>,
) -> Result<MigrationHandle> {
    if prepared.plan.from != req.from
        || prepared.plan.to != req.to
        || prepared.plan.on_conflict != req.policy
    {
        return Err(EngineError::Refused(
            "the plan was made for other stores or another conflict policy; plan again".into(),
        ));
    }
    spawn(req, Some(prepared), source, target, state_dir, opts, cancel)
}

/// The keys of one migration: the backup's sealing key and the journal's
/// fingerprint key derived from it (never stored).
pub(crate) struct MigrationKeys {
    pub sealing: SealingKey,
    pub fp: FpKey,
}

/// Keys for a new migration folder: the passphrase in use (a fresh salt),
/// else a new `backup.key` in the folder.
fn new_keys(
    dir: &Path,
    id: &MigrationId,
    opts: &KeyOptions,
) -> Result<(MigrationKeys, BackupKeyKind, Option<KdfRecord>), StoreError> {
    let key = backup_file::new_key(&dir.join(backup_file::BACKUP_FILE), opts, true)?;
    let sealing = backup_file::sealing_key(&key, opts)?;
    let (kind, kdf) = match sealing.params() {
        KdfParams::Pbkdf2 { iterations, salt } => (
            BackupKeyKind::Passphrase,
            Some(KdfRecord {
                iterations: *iterations,
                salt: hex::encode(salt),
            }),
        ),
        KdfParams::None => (BackupKeyKind::KeyFile, None),
    };
    let fp = FpKey::derive(sealing.key(), &id.0);
    Ok((MigrationKeys { sealing, fp }, kind, kdf))
}

/// The keys of a recorded migration, derived again from its backup key
/// (the passphrase given now, or the key file in its folder).
pub(crate) fn recover_keys(state: &State, opts: &KeyOptions) -> Result<MigrationKeys> {
    let main = state
        .recorded.backup
        .clone()
        .unwrap_or_else(|| state.dir.join(backup_file::BACKUP_FILE));
    let location = main.display().to_string();
    let key = migration_backup_key(state, &main, opts)?;
    let source = match &key {
        BackupKey::Passphrase(p) => KeySource::Passphrase(p.clone()),
        BackupKey::KeyFile(path) => KeySource::from_key_file(path)?,
    };
    let params = match (&state.kdf, &source) {
        (Some(k), _) => KdfParams::Pbkdf2 {
            iterations: k.iterations,
            salt: hex::decode(&k.salt).map_err(|_| {
                StoreError::parse(
                    state
                        .dir
                        .join(crate::engine::journal::JOURNAL_FILE)
                        .display()
                        .to_string(),
                    "the `started` record's salt is not hex",
                )
            })?,
        },
        (None, KeySource::Key(_)) => KdfParams::None,
        (None, KeySource::Passphrase(_)) => {
            // A legacy passphrase migration: its fingerprint key is in the
            // folder; the backup is opened by its own header.
            let sealing = match std::fs::read(&main) {
                Ok(bytes) => {
                    let env = envelope::Envelope::parse(&bytes, &location, opts.allow_weak_kdf)?;
                    SealingKey::derive(env.params(), &source, &location)?
                }
                Err(_) => SealingKey::new(&source, 1)?,
            };
            let fp = FpKey::load_legacy(&state.dir)?.ok_or_else(|| {
                EngineError::Refused(format!(
                    "migration {} has no fingerprint key; it cannot be recovered",
                    state.id
                ))
            })?;
            return Ok(MigrationKeys { sealing, fp });
        }
    };
    let sealing = SealingKey::derive(&params, &source, &location)?;
    if matches!(key, BackupKey::Passphrase(_))
        && let Ok(bytes) = std::fs::read(&main)
    {
        // Prove the passphrase on the backup it sealed: a wrong one would
        // derive wrong fingerprints, and every value would "differ".
        let env = envelope::Envelope::parse(&bytes, &location, true)?;
        if env.params() == sealing.params() && sealing.open(&env).is_err() {
            return Err(EngineError::WrongPassphrase {
                id: state.id.to_string(),
            });
        }
    }
    let fp = match FpKey::load_legacy(&state.dir)? {
        Some(legacy) => legacy,
        None => FpKey::derive(sealing.key(), &state.id.0),
    };
    Ok(MigrationKeys { sealing, fp })
}

fn spawn(
    req: MigrationRequest,
    prepared: Option<Prepared>,
    source: Box<dyn Store>,
    target: Box<dyn Store>,
    state_dir: &Path,
    opts: &KeyOptions,
    cancel: Arc<AtomicBool>,
) -> Result<MigrationHandle> {
    let (id, dir) = state::create(state_dir)?;
    // The session preamble: identities (one store on both ends is refused),
    // the stores' own locks (source shared, or exclusive when it will be
    // cleaned up; target exclusive), the state-dir locks.
    let session = match session::begin(
        source,
        target,
        req.delete_source,
        state_dir,
        &id,
        opts.lock_wait,
    ) {
        Ok(s) => s,
        Err(e) => {
            // Nothing started: leave no empty folder behind.
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
    };
    let (keys, backup_key, kdf) = match new_keys(&dir, &id, opts) {
        Ok(k) => k,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    let (Some(source), Some(target)) = (&session.source, &session.target) else {
        return Err(EngineError::Refused("the session lost a store".into()));
    };
    let mut journal = Journal::open(&dir)?;
    // Absolute locations and identities: recovery acts on exactly these
    // stores, whatever its own directory.
    journal.append(Record::Started {
        migration_id: id.clone(),
        from: source.spec().absolute().to_string(),
        to: target.spec().absolute().to_string(),
        on_conflict: req.policy,
        delete_source: req.delete_source,
        selection: req.selection.as_ref().map(|s| s.iter().cloned().collect()),
        backup_key,
        kdf,
        user: audit::who(),
        from_identity: session.source_identity.clone().map(Box::new),
        to_identity: session.target_identity.clone().map(Box::new),
    })?;
    let state_dir = state_dir.to_path_buf();
    let worker_dir = dir.clone();
    let worker_id = id.clone();
    spawn_job(id, dir, "migrate", cancel, move |ctl| {
        let session = session;
        let (Some(source), Some(target)) = (&session.source, &session.target) else {
            return Err(EngineError::WorkerPanicked);
        };
        let mut run = Run {
            id: worker_id,
            dir: worker_dir,
            journal,
            keys,
            source: source.as_ref(),
            target: target.as_ref(),
            ctl,
            state_dir,
        };
        run.migrate(&req, prepared).map(|mut r| {
            r.notices = session.locks.notices();
            r
        })
    })
}

/// Blocking convenience: start (planning on the worker), forward every
/// event to `on_progress`, join. `cancel` (e.g. set by SIGINT) rolls back.
pub fn run(
    req: MigrationRequest,
    state_dir: &Path,
    opts: &KeyOptions,
    cancel: Option<Arc<AtomicBool>>,
    on_progress: impl FnMut(&Progress),
) -> Result<Report> {
    let h = start(req, state_dir, opts, cancel.unwrap_or_default())?;
    follow(h, None, on_progress)
}

/// Wait for a started migration, forwarding its events and a cancel flag.
pub fn follow(
    h: MigrationHandle,
    cancel: Option<Arc<AtomicBool>>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Report> {
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

pub(crate) struct Run<'a> {
    pub id: MigrationId,
    pub dir: PathBuf,
    pub journal: Journal,
    pub keys: MigrationKeys,
    pub source: &'a dyn Store,
    pub target: &'a dyn Store,
    pub ctl: Control,
    pub state_dir: PathBuf,
}

pub(crate) fn planned_items(p: &Prepared, fp: &FpKey) -> Vec<PlannedItem> {
    p.plan
        .items
        .iter()
        .map(|i| {
            let src = p.source.get(&i.id);
            PlannedItem {
                id: i.id.clone(),
                action: PlannedAction::from(&i.action),
                fp: src
                    .filter(|_| i.action.writes() || i.action == Action::SkipIdentical)
                    .map(|c| fp.value(c)),
                mfp: src.filter(|_| i.action.writes()).map(|c| fp.meta(c)),
                target_fp: p.target_old.get(&i.id).map(|c| fp.value(c)),
            }
        })
        .collect()
}

impl Run<'_> {
    fn migrate(&mut self, req: &MigrationRequest, prepared: Option<Prepared>) -> Result<Report> {
        let started = Instant::now();
        let prepared = match prepared {
            // Consent was given to this plan: refuse to write when either
            // store changed since (the locks are held from here on).
            Some(p) => match p.changed_since(self.source, self.target) {
                Ok(changed) if changed.is_empty() => p,
                Ok(changed) => {
                    let e = EngineError::ChangedSincePlan { changed };
                    return Err(self.fail_before_writing(e));
                }
                Err(e) => return Err(self.fail_before_writing(e.into())),
            },
            None => match plan::prepare(
                self.source,
                self.target,
                req.policy,
                req.selection.as_ref(),
                now_ms(),
            ) {
                Ok(p) => p,
                Err(e) => return Err(self.fail_before_writing(e.into())),
            },
        };
        // The plan file is a convenience for support; the journal is the
        // record. Written as it is serialized: the text of a 100,000-item
        // plan (and its doubling buffer, 25 MB) was the heap's peak while
        // planning.
        let _ = crate::fsutil::atomic_write_with(&self.dir.join(state::PLAN_FILE), |f| {
            let mut w = std::io::BufWriter::new(f);
            serde_json::to_writer_pretty(&mut w, &prepared.plan).map_err(std::io::Error::other)?;
            std::io::Write::flush(&mut w)
        });
        self.journal.append(Record::Planned {
            items: planned_items(&prepared, &self.keys.fp),
            warnings: plan::report_warnings(&prepared.plan),
            unreadable: plan::unreadable_places(&prepared.plan),
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
        let keeps = prepared.target_capability.keeps_metadata;
        let n_planned = prepared.plan.items.len();
        let n_writes = prepared.plan.writes().count();
        // The plan is done with once journaled: rollback and cleanup go by
        // the journal, the stores and `old` (the target values an overwrite
        // replaced). Only the source is kept, for the backup; then each
        // batch's source values are freed once it is journaled, so the
        // source is not held whole while the target grows.
        let (source, writes) = prepared.into_source();
        // Every planned write has its source value (the plan was checked
        // against a fresh read); one missing would be counted as skipped.
        if writes.len() != n_writes {
            return Err(self.fail_before_writing(EngineError::Refused(format!(
                "{} planned writes have no source value; nothing was written",
                n_writes - writes.len().min(n_writes)
            ))));
        }
        if let Err(e) = self.write_backups(source.values(), &overwritten) {
            return Err(self.fail_before_writing(e.into()));
        }
        let old: BTreeMap<CredentialId, Credential> =
            overwritten.into_iter().map(|c| (c.id.clone(), c)).collect();
        let work = source.into_writes(writes);
        let mut tally = Tally {
            total_writes: work.len(),
            skipped: n_planned - work.len(),
            ..Tally::default()
        };
        let stop = self.write_items(work, &old, keeps, &mut tally, started);
        let cancelled = matches!(stop, Some(Stop::Cancelled));
        // A cancelled migration (or restore) rolls back what it wrote.
        let stop = match stop {
            Some(Stop::Cancelled) => Some(Stop::Rollback("cancelled by the user".into())),
            s => s,
        };
        let mut report = self.finish("migrate", stop, &old, req.delete_source)?;
        report.cancelled = cancelled;
        Ok(report)
    }

    /// Record a failure that happened before any target write.
    fn fail_before_writing(&mut self, e: EngineError) -> EngineError {
        let _ = self.journal.append(Record::Finished {
            status: MigrationStatus::Failed,
            totals: Totals::default(),
            reason: Some(e.to_string()),
        });
        self.audit("migrate", "failed", Totals::default());
        e
    }

    pub(crate) fn write_backups<'c>(
        &mut self,
        source: impl ExactSizeIterator<Item = &'c Credential> + Clone,
        overwritten: &[Credential],
    ) -> Result<(), StoreError> {
        let path = self.dir.join(backup_file::BACKUP_FILE);
        let n_source = source.len();
        backup_file::write_sealed_refs(&path, source, &self.keys.sealing)?;
        let target_path = self.dir.join(state::TARGET_BACKUP_FILE);
        if !overwritten.is_empty() {
            backup_file::write_sealed(&target_path, overwritten, &self.keys.sealing)?;
        }
        self.journal.append(Record::BackupWritten {
            path: path.clone(),
            items: n_source + overwritten.len(),
        })?;
        self.ctl.send(Progress::BackupWritten {
            path,
            items: n_source + overwritten.len(),
        });
        Ok(())
    }

    /// After the item loop: roll back, or clean up (when asked) and finish.
    /// `finished` is journaled last: a migration is `completed` only once
    /// its cleanup is done.
    pub(crate) fn finish(
        &mut self,
        action: &str,
        stop: Option<Stop>,
        old: &BTreeMap<CredentialId, Credential>,
        delete_source: bool,
    ) -> Result<Report> {
        let cancelled = matches!(stop, Some(Stop::Cancelled));
        match stop {
            Some(Stop::Cancelled) => {
                // A cancelled resume keeps what it wrote (verified and
                // journaled) and leaves the migration interrupted: resume
                // or roll back later, nothing is lost either way.
                let totals = self.journal.state()?.totals();
                self.journal.append(Record::Finished {
                    status: MigrationStatus::Interrupted,
                    totals: totals.clone(),
                    reason: Some(
                        "resume cancelled by the user after the batch at hand; resume or roll \
                         back to finish"
                            .into(),
                    ),
                })?;
                self.audit(action, "interrupted", totals);
            }
            Some(Stop::Rollback(reason)) => {
                self.ctl.send(Progress::RollingBack {
                    reason: reason.clone(),
                });
                self.journal.append(Record::RollbackStarted { reason })?;
                let st = self.journal.state()?.clone();
                let complete = undo_all(
                    &mut self.journal,
                    &self.keys.fp,
                    self.target,
                    &st,
                    old,
                    &self.ctl,
                    UndoScope::default(),
                )?;
                self.journal.append(Record::RolledBack { complete })?;
                let st = self.journal.state()?;
                let (totals, reason) = (st.totals(), st.recorded.rollback_reason.clone());
                self.journal.append(Record::Finished {
                    status: if complete {
                        MigrationStatus::RolledBack
                    } else {
                        MigrationStatus::Interrupted
                    },
                    totals: totals.clone(),
                    reason,
                })?;
                let outcome = if complete {
                    "rolled_back"
                } else {
                    "interrupted"
                };
                self.audit(action, outcome, totals);
            }
            None => {
                if delete_source {
                    cleanup_items(
                        &mut self.journal,
                        &self.keys.fp,
                        self.source,
                        self.target,
                        &self.ctl,
                    )?;
                    self.audit("cleanup", "completed", self.journal.state()?.totals());
                }
                let st = self.journal.state()?;
                let ok = st.recorded.failed.is_empty();
                let totals = st.totals();
                let status = if ok {
                    MigrationStatus::Completed
                } else {
                    MigrationStatus::Failed
                };
                self.journal.append(Record::Finished {
                    status,
                    totals: totals.clone(),
                    reason: None,
                })?;
                self.audit(action, if ok { "completed" } else { "failed" }, totals);
            }
        }
        let mut report = self.journal.state()?.report();
        report.cancelled = cancelled;
        Ok(report)
    }

    pub(crate) fn audit(&self, action: &str, outcome: &str, counts: Totals) {
        // The audit trail must not turn a finished migration into a failed one.
        let _ = audit::append(
            &self.state_dir,
            audit::AuditEntry {
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

/// The backup key a recorded migration used.
pub(crate) fn migration_backup_key(
    state: &State,
    path: &Path,
    opts: &KeyOptions,
) -> Result<BackupKey> {
    match state.backup_key {
        BackupKeyKind::Passphrase => match &opts.passphrase {
            Some(p) => Ok(BackupKey::Passphrase(p.clone())),
            None => Err(EngineError::BackupNeedsPassphrase {
                id: state.id.to_string(),
            }),
        },
        BackupKeyKind::KeyFile => Ok(BackupKey::KeyFile(backup_file::key_file_for(path))),
    }
}

#[cfg(test)]
mod ramp_tests;
