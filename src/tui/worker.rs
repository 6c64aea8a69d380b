//! The executor that runs the wizard's effects through the engine, each on
//! its own worker thread, and reports back as events. Nothing here runs on
//! the UI thread except bookkeeping.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::credential::CredentialId;
use crate::engine::{
    self, ConflictPolicy, MigrationDetail, MigrationRequest, Prepared, Progress, RecoveryOp,
};
use crate::store::{self, StoreSpec};
use crate::tui::app::{Executor, Sink};
use crate::unlock::KeyOptions;
use crate::wizard::{
    Detail, Effect, Event, NewKeySource, RecoveryAction, RestorePreview, Task, TaskError,
    TimelineRow,
};

/// The running migration's cancel flag, and whether a cancel came before
/// the engine had handed it over.
#[derive(Default)]
struct Slot {
    flag: Option<Arc<AtomicBool>>,
    requested: bool,
}

pub struct EngineExecutor {
    pub opts: KeyOptions,
    pub state_dir: PathBuf,
    /// Cancels the running migration, when there is one.
    cancel: Arc<Mutex<Slot>>,
    /// The latest prepared migration: what the dry-run screen shows and
    /// what a start executes (matched by the plan's token), with the digest
    /// of the rows handed to the screen (the start must hand the same back).
    prepared: Arc<Mutex<Option<(Prepared, RowsDigest)>>>,
}

/// The count and a SHA-256 of the plan rows' ids and actions, in order: the
/// rows go to the screen and come back at the start without a copy kept
/// here, and this is how the start knows they are the ones planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowsDigest {
    count: usize,
    sha256: [u8; 32],
}

impl RowsDigest {
    fn of(items: &[engine::PlanItem]) -> RowsDigest {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut action = Vec::new();
        // Each part length-prefixed, so no two row lists hash the same text.
        let part = |h: &mut sha2::Sha256, b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        for it in items {
            part(&mut h, it.id.namespace.as_bytes());
            part(&mut h, it.id.name.as_bytes());
            action.clear();
            // An `Action` always serializes (plain enum of strings and numbers).
            let _ = serde_json::to_writer(&mut action, &it.action);
            part(&mut h, &action);
        }
        RowsDigest {
            count: items.len(),
            sha256: h.finalize().into(),
        }
    }
}

impl EngineExecutor {
    pub fn new(opts: KeyOptions, state_dir: PathBuf) -> Self {
        EngineExecutor {
            opts,
            state_dir,
            cancel: Arc::new(Mutex::new(Slot::default())),
            prepared: Arc::new(Mutex::new(None)),
        }
    }
}

/// Hand the heap pages freed by a big read back to the system. glibc keeps
/// freed memory in each thread's arena, so without this the wizard would
/// hold a store's parsed copy (the probe's, then the inventory's) for as
/// long as it runs: with 100,000 items, tens of MB of resident memory that
/// nothing uses. Measured (2026-12-06, `credshift wizard` on a 100,000-line
/// .env in tmux, inventory drawn, debug build): 79 MB resident with the trim,
/// 113 MB without; peak 100 MB against 113 MB. glibc only: other
/// allocators (musl, the BSDs') return memory on their own terms.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator the
    // process uses (the global allocator forwards to it); no pointer given.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn spawn(sink: &Sink, task: Task, f: impl FnOnce() -> Result<Event, TaskError> + Send + 'static) {
    let sink = sink.clone();
    let spawned = thread::Builder::new()
        .name(format!("credshift-{task:?}").to_lowercase())
        .spawn({
            let sink = sink.clone();
            move || {
                let ev = f().unwrap_or_else(|error| Event::Failed { task, error });
                sink.send(ev);
            }
        });
    if let Err(e) = spawned {
        sink.send(Event::Failed {
            task,
            error: TaskError::NoThread(e.to_string()),
        });
    }
}

impl Executor for EngineExecutor {
    fn execute(&mut self, effect: Effect, sink: &Sink) {
        match effect {
            Effect::Assess { specs } => {
                let opts = self.opts.clone();
                spawn(sink, Task::Assess, move || {
                    // Probe in parallel: one slow store (a keyring timing
                    // out) must not hold up the others longer than itself.
                    let handles: Vec<_> = specs
                        .into_iter()
                        .map(|spec| {
                            let opts = opts.clone();
                            thread::spawn(move || engine::assess::probe_spec(&spec, &opts))
                        })
                        .collect();
                    let reports = handles
                        .into_iter()
                        .map(|h| h.join().map_err(|_| TaskError::ProbePanicked))
                        .collect::<Result<Vec<_>, _>>()?;
                    // The probes read whole stores on their own threads.
                    release_free_memory();
                    Ok(Event::Assessed(reports))
                });
            }
            Effect::LoadInventory { from } => {
                let opts = self.opts.clone();
                spawn(sink, Task::Inventory, move || {
                    let s = store::open(&from, &opts)?;
                    let (inv, creds) =
                        engine::inventory::inventory(s.as_ref(), engine::inventory::now_ms())?;
                    drop((creds, s));
                    release_free_memory();
                    Ok(Event::InventoryLoaded(Box::new(inv)))
                });
            }
            Effect::Reveal { from, id } => {
                let opts = self.opts.clone();
                spawn(sink, Task::Reveal, move || {
                    let s = store::open(&from, &opts)?;
                    match s.read(&id)? {
                        Some(c) => Ok(Event::Revealed {
                            id,
                            secret: c.secret,
                        }),
                        None => Err(TaskError::Gone { id, from }),
                    }
                });
            }
            Effect::UsePassphrase(p) => self.opts.passphrase = Some(p),
            Effect::CancelMigration => {
                if let Ok(mut slot) = self.cancel.lock() {
                    slot.requested = true;
                    if let Some(flag) = &slot.flag {
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            }
            Effect::Plan {
                from,
                to,
                policy,
                selection,
            } => {
                let opts = self.opts.clone();
                let slot = self.prepared.clone();
                spawn(sink, Task::Plan, move || {
                    let source = store::open(&from, &opts)?;
                    let target = store::open(&to, &opts)?;
                    let req = MigrationRequest {
                        from,
                        to,
                        policy,
                        selection: Some(selection.into_iter().collect::<BTreeSet<_>>()),
                        delete_source: false,
                    };
                    let mut prepared = engine::prepare(&req, source.as_ref(), target.as_ref())?;
                    drop((source, target));
                    // The start reads the source again under the locks to
                    // compare it with the plan: the values are not kept
                    // meanwhile (two copies of every value were its peak).
                    prepared.shed_source_values();
                    release_free_memory();
                    // The rows go to the screen, not copied: the start hands
                    // them back (100,000 rows are ~15 MB).
                    let items = std::mem::take(&mut prepared.plan.items);
                    let digest = RowsDigest::of(&items);
                    let plan = engine::Plan {
                        items,
                        ..prepared.plan.clone()
                    };
                    if let Ok(mut s) = slot.lock() {
                        *s = Some((prepared, digest));
                    }
                    Ok(Event::PlanReady(Box::new(plan)))
                });
            }
            Effect::StartMigration {
                from,
                to,
                policy,
                selection,
                plan_token,
                plan_items,
            } => self.start(from, to, policy, selection, (plan_token, plan_items), sink),
            Effect::Verify { id } => self.check_or_clean_up(id, RecoveryOp::Verify, sink),
            Effect::Cleanup { id } => self.check_or_clean_up(id, RecoveryOp::Cleanup, sink),
            Effect::LoadHistory => {
                let dir = self.state_dir.clone();
                spawn(sink, Task::History, move || {
                    let mut h = engine::history(&dir)?;
                    // Newest first: ids sort by start time.
                    h.sort_by(|a, b| b.id.cmp(&a.id));
                    Ok(Event::HistoryLoaded(h))
                });
            }
            Effect::LoadDetail { id } => {
                let dir = self.state_dir.clone();
                spawn(sink, Task::Detail, move || {
                    let d = engine::detail(&dir, &id)?;
                    Ok(Event::DetailLoaded(Box::new(detail_view(d))))
                });
            }
            Effect::Recover { action, id } => {
                let op = match action {
                    RecoveryAction::Resume => RecoveryOp::Resume,
                    RecoveryAction::Rollback => RecoveryOp::Rollback,
                    RecoveryAction::Verify => RecoveryOp::Verify,
                    RecoveryAction::Restore => RecoveryOp::Restore,
                };
                let (opts, dir) = (self.opts.clone(), self.state_dir.clone());
                self.recover(sink, move |flag| {
                    engine::start_recovery(&dir, &id, &opts, op, flag)
                });
            }
            Effect::PreviewRestore { id, backup, source } => {
                let (opts, dir) = (self.opts.clone(), self.state_dir.clone());
                spawn(sink, Task::Recovery, move || {
                    let plan = engine::restore_plan(
                        &backup,
                        &source,
                        &dir,
                        &opts,
                        engine::ConflictPolicy::Skip,
                    )?;
                    let conflicts = plan
                        .items
                        .iter()
                        .filter(|i| i.action == engine::Action::Conflict)
                        .map(|i| i.id.clone())
                        .collect();
                    Ok(Event::RestorePreviewed(Box::new(RestorePreview {
                        id,
                        write: plan.counts.copy + plan.counts.overwrite,
                        identical: plan.counts.skip_identical,
                        conflicts,
                    })))
                });
            }
            Effect::RollbackItems { id, items } => {
                let (opts, dir) = (self.opts.clone(), self.state_dir.clone());
                self.recover(sink, move |flag| {
                    let items = items.into_iter().collect();
                    engine::start_partial_rollback(&dir, &id, &opts, items, flag)
                });
            }
            Effect::RekeyPlan { spec } => {
                let opts = self.opts.clone();
                spawn(sink, Task::RekeyPlan, move || {
                    let format = engine::rekey::format_of(&spec)?;
                    // Before the new key is chosen: a throwaway key, so the
                    // plan counts what is under the old key(s) only.
                    let new = engine::rekey::keygen::throwaway_key(format)?;
                    let plan = engine::rekey::dry_run(&spec, &opts, &new)?;
                    Ok(Event::RekeyPlanned(Box::new(plan)))
                });
            }
            Effect::StartRekey { spec, key } => self.start_rekey(spec, key, sink),
            Effect::CancelRekey => {
                if let Ok(slot) = self.cancel.lock()
                    && let Some(flag) = &slot.flag
                {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            Effect::RekeyVerify { id } => {
                let (opts, dir) = (self.opts.clone(), self.state_dir.clone());
                spawn(sink, Task::RekeyVerify, move || {
                    let r = engine::rekey::verify(&dir, &id, &opts)?;
                    Ok(Event::RekeyVerified(Box::new(r)))
                });
            }
            Effect::Exit(_) => {}
        }
    }
}

impl EngineExecutor {
    /// A new operation's cancel flag, in the slot before the operation
    /// starts: a cancel that comes while it starts reaches the engine before
    /// its first batch (the flag goes into the start call).
    fn fresh_flag(cancel: &Mutex<Slot>) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut slot) = cancel.lock() {
            *slot = Slot {
                flag: Some(flag.clone()),
                requested: false,
            };
        }
        flag
    }

    /// The migration path's verify or cleanup on the engine's handle, its
    /// progress not shown, cancelled through the same slot as the
    /// migration (`Effect::CancelMigration`): the flag is in the slot
    /// before the job starts, so a cancel that comes meanwhile stops it
    /// before its first batch.
    fn check_or_clean_up(&mut self, id: engine::MigrationId, op: RecoveryOp, sink: &Sink) {
        let (opts, dir) = (self.opts.clone(), self.state_dir.clone());
        let cancel = self.cancel.clone();
        let flag = Self::fresh_flag(&cancel);
        let task = if op == RecoveryOp::Verify {
            Task::Verify
        } else {
            Task::Cleanup
        };
        spawn(sink, task, move || {
            let handle = engine::start_recovery(&dir, &id, &opts, op, flag);
            if let Ok(h) = &handle {
                Self::arm_cancel(&cancel, h);
            }
            let report = join_quietly(handle);
            if let Ok(mut slot) = cancel.lock() {
                slot.flag = None;
            }
            // Verify read the whole target and the journal; cleanup both
            // stores.
            release_free_memory();
            let report = Box::new(report?);
            Ok(if op == RecoveryOp::Verify {
                Event::Verified(report)
            } else {
                Event::CleanedUp(report)
            })
        });
    }

    /// Take the new key (read or write its file), then rekey with progress
    /// events and the cancel flag armed. A key that cannot be taken is
    /// reported as such: nothing was written.
    fn start_rekey(&mut self, spec: StoreSpec, key: NewKeySource, sink: &Sink) {
        let (opts, dir) = (self.opts.clone(), self.state_dir.clone());
        let flag = Self::fresh_flag(&self.cancel);
        let cancel = self.cancel.clone();
        let sink2 = sink.clone();
        spawn(sink, Task::Rekey, move || {
            let taken = engine::rekey::format_of(&spec).and_then(|format| {
                Ok(match key {
                    NewKeySource::Passphrase(p) => (
                        engine::rekey::NewKey::Passphrase(p),
                        "typed in the wizard".into(),
                        None,
                    ),
                    NewKeySource::KeyFile(p) => (
                        engine::rekey::keygen::key_from_file(format, &p, "the key file")?,
                        format!("file {}", p.display()),
                        None,
                    ),
                    NewKeySource::Generate(p) => {
                        // In memory until the run holds its lock and plan:
                        // a refused run leaves no key file.
                        let (pending, new) = engine::rekey::keygen::PendingKey::new(format, &p)?;
                        (
                            new,
                            format!("file {}", p.display()),
                            Some(Arc::new(pending)),
                        )
                    }
                })
            });
            let (new_key, new_key_origin, generated) = match taken {
                Ok(k) => k,
                Err(e) => {
                    return Ok(Event::Failed {
                        task: Task::RekeyKey,
                        error: e.into(),
                    });
                }
            };
            let req = engine::rekey::RekeyRequest {
                spec,
                new_key,
                new_key_origin,
                generated,
            };
            let mut progress = |p| sink2.send(Event::RekeyProgressed(p));
            let report = engine::rekey::run_cancellable(&req, &dir, &opts, &mut progress, &flag);
            if let Ok(mut slot) = cancel.lock() {
                slot.flag = None;
            }
            Ok(Event::RekeyFinished(Box::new(report?)))
        });
    }

    /// Hand the running operation's cancel flag to the slot (honouring a
    /// cancel that came before it).
    fn arm_cancel(cancel: &Mutex<Slot>, handle: &engine::MigrationHandle) {
        let early_cancel = match cancel.lock() {
            Ok(mut slot) => {
                slot.flag = Some(handle.cancel_flag());
                slot.requested
            }
            Err(_) => false,
        };
        if early_cancel {
            handle.cancel();
        }
    }

    /// Forward a running handle's progress as events (its `Finished` is
    /// reported by the caller once the worker joined and released its
    /// store locks), then disarm cancel and return the report.
    fn follow(
        sink: &Sink,
        cancel: &Mutex<Slot>,
        handle: engine::MigrationHandle,
    ) -> engine::Result<engine::Report> {
        for p in handle.events.iter() {
            if !matches!(p, Progress::Finished(_)) {
                sink.send(Event::Progress(vec![p]));
            }
        }
        let report = handle.join();
        if let Ok(mut slot) = cancel.lock() {
            slot.flag = None;
        }
        report
    }

    /// A recovery action on the engine's handle, like a migration: its
    /// progress forwarded as events, cancel through the same slot, the
    /// report once the worker joined (its locks released).
    fn recover(
        &mut self,
        sink: &Sink,
        start: impl FnOnce(Arc<AtomicBool>) -> engine::Result<engine::MigrationHandle> + Send + 'static,
    ) {
        let cancel = self.cancel.clone();
        let flag = Self::fresh_flag(&cancel);
        let sink2 = sink.clone();
        spawn(sink, Task::Recovery, move || {
            // A restore opens its backup here (a key derivation): on this
            // worker thread, never the UI's.
            let handle = start(flag)?;
            Self::arm_cancel(&cancel, &handle);
            match Self::follow(&sink2, &cancel, handle) {
                Ok(r) => Ok(Event::RecoveryFinished(Box::new(r))),
                // Asked again in place, not left as an error to restart for.
                Err(e @ engine::EngineError::WrongPassphrase { .. }) => {
                    Ok(Event::PassphraseRejected {
                        message: e.to_string(),
                    })
                }
                Err(e) => Err(e.into()),
            }
        });
    }

    /// Start the migration; a forwarding thread turns its progress into
    /// events until the worker is done.
    fn start(
        &mut self,
        from: StoreSpec,
        to: StoreSpec,
        policy: ConflictPolicy,
        selection: Vec<CredentialId>,
        (plan_token, plan_items): (u64, Vec<engine::PlanItem>),
        sink: &Sink,
    ) {
        let (opts, dir) = (self.opts.clone(), self.state_dir.clone());
        let cancel = self.cancel.clone();
        // The plan on screen, exactly: the one consented to.
        let prepared = self
            .prepared
            .lock()
            .ok()
            .and_then(|mut s| s.take_if(|(p, _)| p.plan.token == plan_token));
        let flag = Self::fresh_flag(&cancel);
        let req = MigrationRequest {
            from,
            to,
            policy,
            selection: Some(selection.into_iter().collect()),
            // Deleting from the source is the cleanup step's, after consent.
            delete_source: false,
        };
        let sink2 = sink.clone();
        spawn(sink, Task::Migrate, move || {
            let (mut prepared, digest) = prepared.ok_or(TaskError::StalePlan)?;
            if RowsDigest::of(&plan_items) != digest {
                return Err(TaskError::PlanRowsChanged);
            }
            prepared.plan.items = plan_items;
            let source = store::open(&req.from, &opts)?;
            let target = store::open(&req.to, &opts)?;
            let handle = engine::start_prepared(req, prepared, source, target, &dir, &opts, flag)?;
            Self::arm_cancel(&cancel, &handle);
            sink2.send(Event::MigrationStarted {
                id: handle.id.clone(),
            });
            // The end is reported after `join`, once the worker has
            // released its store locks: the wizard verifies next.
            let report = Self::follow(&sink2, &cancel, handle)?;
            // The run's stores, plan and journal state are freed: give the
            // pages back before verify reads the target again.
            release_free_memory();
            Ok(Event::Progress(vec![Progress::Finished(Box::new(report))]))
        });
    }
}

/// Wait for an operation started on the engine's handle whose progress
/// the screen does not show (the migration path's verify and cleanup).
fn join_quietly(h: engine::Result<engine::MigrationHandle>) -> Result<engine::Report, TaskError> {
    let h = h?;
    for _ in h.events.iter() {}
    Ok(h.join()?)
}

/// The engine's migration detail as the recovery screen shows it.
fn detail_view(d: MigrationDetail) -> Detail {
    let timeline = d
        .timeline
        .into_iter()
        .map(|t| {
            let mut what = format!("#{} {}", t.seq, t.event.as_str().replace('_', " "));
            if let Some(id) = &t.id {
                what.push_str(&format!(" {id}"));
            }
            if let Some(x) = &t.detail {
                what.push_str(&format!(": {x}"));
            }
            if t.ids.len() > 1 {
                let ids: Vec<String> = t.ids.iter().map(ToString::to_string).collect();
                what.push_str(&format!(" [{}]", ids.join(", ")));
            }
            TimelineRow { at: t.at, what }
        })
        .collect();
    Detail {
        entry: d.entry,
        timeline,
        backup: d.backup,
        items: d.items,
        needs_passphrase: d.needs_passphrase,
        rollback_began: d.rollback_began,
        cleanup_interrupted: d.cleanup_interrupted,
        delete_source: d.delete_source,
        on_conflict: d.on_conflict,
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
