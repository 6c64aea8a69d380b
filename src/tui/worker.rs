//! The executor that runs the wizard's effects through the engine, each on
//! its own worker thread, and reports back as events. Nothing here runs on
//! the UI thread except bookkeeping.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::engine;
use crate::store::{self, OpenOptions};
use crate::tui::app::{Executor, Sink};
use crate::wizard::{Effect, Event, Task};

type Canceller = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

pub struct EngineExecutor {
    pub opts: OpenOptions,
    pub state_dir: PathBuf,
    /// Cancels the running migration, when there is one.
    cancel: Canceller,
}

impl EngineExecutor {
    pub fn new(opts: OpenOptions, state_dir: PathBuf) -> Self {
        EngineExecutor {
            opts,
            state_dir,
            cancel: Arc::new(Mutex::new(None)),
        }
    }
}

fn spawn(sink: &Sink, task: Task, f: impl FnOnce() -> Result<Event, String> + Send + 'static) {
    let sink = sink.clone();
    let spawned = thread::Builder::new()
        .name(format!("credshift-{task:?}").to_lowercase())
        .spawn({
            let sink = sink.clone();
            move || {
                let ev = f().unwrap_or_else(|message| Event::Failed { task, message });
                sink.send(ev);
            }
        });
    if let Err(e) = spawned {
        sink.send(Event::Failed {
            task,
            message: format!("could not start a worker thread: {e}"),
        });
    }
}

fn not_wired(sink: &Sink, task: Task, what: &str) {
    sink.send(Event::Failed {
        task,
        message: format!("{what} is not available in this build yet"),
    });
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
                        .map(|h| h.join().map_err(|_| "a store probe panicked".to_string()))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Event::Assessed(reports))
                });
            }
            Effect::LoadInventory { from } => {
                let opts = self.opts.clone();
                spawn(sink, Task::Inventory, move || {
                    let s = store::open(&from, &opts).map_err(|e| e.to_string())?;
                    let (inv, creds) =
                        engine::inventory::inventory(s.as_ref(), engine::inventory::now_ms())
                            .map_err(|e| e.to_string())?;
                    drop(creds);
                    Ok(Event::InventoryLoaded(Box::new(inv)))
                });
            }
            Effect::Reveal { from, id } => {
                let opts = self.opts.clone();
                spawn(sink, Task::Reveal, move || {
                    let s = store::open(&from, &opts).map_err(|e| e.to_string())?;
                    match s.read(&id).map_err(|e| e.to_string())? {
                        Some(c) => Ok(Event::Revealed {
                            id,
                            secret: c.secret,
                        }),
                        None => Err(format!("{id}: no longer in {from}")),
                    }
                });
            }
            Effect::UsePassphrase(p) => self.opts.passphrase = Some(p),
            Effect::CancelMigration => {
                if let Ok(guard) = self.cancel.lock()
                    && let Some(cancel) = guard.as_ref()
                {
                    cancel();
                }
            }
            Effect::Plan { .. } => not_wired(sink, Task::Plan, "the dry run (engine plan)"),
            Effect::StartMigration { .. } => {
                not_wired(sink, Task::Migrate, "migrating (engine start)")
            }
            Effect::Verify { .. } => not_wired(sink, Task::Verify, "verify"),
            Effect::Cleanup { .. } => not_wired(sink, Task::Cleanup, "cleanup"),
            Effect::LoadHistory => not_wired(sink, Task::History, "the history"),
            Effect::LoadDetail { .. } => not_wired(sink, Task::Detail, "the journal"),
            Effect::Recover { .. } => not_wired(sink, Task::Recovery, "recovery"),
            Effect::Exit(_) => {}
        }
        let _ = &self.state_dir;
    }
}
