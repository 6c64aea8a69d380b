//! The terminal UI: renders the wizard's state and turns keys into events;
//! all store I/O runs on worker threads ([`worker`]).

pub mod app;
pub mod demo;
pub mod keymap;
pub mod screens;
pub mod terminal;
pub mod theme;
pub mod widgets;
pub mod worker;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use crate::store::StoreSpec;
use crate::unlock::KeyOptions;
use crate::wizard::{Config, Outcome, Wizard};

use app::{App, Msg, Sink};

/// What the terminal UI is started with, resolved by the caller (the CLI):
/// the UI parses no flags and reads no key files of its own.
#[derive(Debug)]
pub struct Launch {
    pub mode: Mode,
    /// Where journals, backups and the audit log live.
    pub state_dir: PathBuf,
    /// Whether `state_dir` was chosen (a flag or the environment) rather
    /// than the platform default; the demo keeps its own otherwise.
    pub state_dir_chosen: bool,
    /// Key material and options for opening stores.
    pub opts: KeyOptions,
}

/// Which path through the wizard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A new migration; `from` and `to` preselect the stores.
    Wizard {
        from: Option<StoreSpec>,
        to: Option<StoreSpec>,
    },
    /// History, resume, rollback, restore.
    Recover,
    /// The wizard on bundled demo data, into an encrypted file in a temp dir.
    Demo,
}

/// Why the terminal UI could not run (it says nothing about the
/// migration: that ends in the exit status [`launch`] returns).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("preparing the demo: {0}")]
    Demo(#[source] crate::error::StoreError),
    #[error("cannot set up the terminal: {0}")]
    Setup(#[source] std::io::Error),
    #[error("terminal error: {0}")]
    Terminal(#[source] std::io::Error),
}

/// Whether both ends are a terminal (the wizard needs one).
pub fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The `CREDSHIFT_PANIC_AFTER_DRAW=1` test aid, as `main` installed it.
pub fn panic_after_draw() -> bool {
    crate::test_aids::get().panic_after_draw
}

/// Run the wizard on the terminal until it ends; the exit status says how
/// (0 done or nothing changed, 1 failed or rolled back). The caller checks
/// [`on_terminal`] first.
#[expect(
    clippy::print_stdout,
    reason = "the demo's folder is told on the terminal the wizard ran on"
)]
pub fn launch(launch: Launch) -> Result<ExitCode, LaunchError> {
    let Launch {
        mode,
        state_dir,
        state_dir_chosen,
        opts,
    } = launch;
    match mode {
        Mode::Wizard { from, to } => {
            let mut candidates = crate::locations::default_locations();
            // Offered explicitly, so a missing keyring never means a silent
            // fallback to plain text.
            candidates.push(StoreSpec::Encrypted(state_dir.join("credentials.enc")));
            for s in from.iter().chain(to.iter()) {
                if !candidates.contains(s) {
                    candidates.insert(0, s.clone());
                }
            }
            let config = Config {
                candidates,
                from,
                to,
                passphrase_given: false,
                state_dir,
                recover: false,
            };
            run(opts, config)
        }
        Mode::Recover => {
            let config = Config {
                state_dir,
                recover: true,
                ..Config::default()
            };
            run(opts, config)
        }
        Mode::Demo => {
            let demo = demo::prepare().map_err(LaunchError::Demo)?;
            let config = Config {
                candidates: demo.candidates(),
                from: Some(demo.source()),
                to: Some(demo.target()),
                passphrase_given: false,
                state_dir: if state_dir_chosen {
                    state_dir
                } else {
                    demo.state_dir.clone()
                },
                recover: false,
            };
            let result = run(opts, config);
            println!(
                "Demo files are in {} (kept so you can look; delete the folder when done).",
                demo.dir.display()
            );
            result
        }
    }
}

fn run(opts: KeyOptions, mut config: Config) -> Result<ExitCode, LaunchError> {
    config.passphrase_given = opts.passphrase.is_some() || opts.key_file.is_some();
    let state_dir = config.state_dir.clone();

    terminal::install_hooks();
    let (wizard, initial) = Wizard::new(config, now_ms());
    let mut app = App::new(wizard, theme::Theme::from_env());
    let mut exec = worker::EngineExecutor::new(opts, state_dir);
    let (tx, rx) = mpsc::channel();
    let sink = Sink(tx.clone());

    let (mut term, guard) = terminal::enter().map_err(LaunchError::Setup)?;
    spawn_input(tx.clone());
    spawn_signals(tx);
    let result = app::run_loop(&mut term, &mut app, &mut exec, &rx, &sink, initial, &now_ms);
    drop(term);
    drop(guard);
    let outcome = result.map_err(LaunchError::Terminal)?;
    Ok(summarize(&app, outcome))
}

/// After the screen is gone: one line that says how it ended.
#[expect(
    clippy::print_stdout,
    reason = "the line is for the terminal the wizard ran on"
)]
fn summarize(app: &App, outcome: Outcome) -> ExitCode {
    let w = &app.wizard;
    match outcome {
        Outcome::Deferred => {
            println!("Deferred: nothing was changed.");
            ExitCode::SUCCESS
        }
        // Recovery actions ran in this session: say what each did (from
        // its report, which comes from the journal), never "nothing".
        _ if w.run.report.is_none() && !w.recovery.done_log.is_empty() => {
            for line in &w.recovery.done_log {
                println!("{line}");
            }
            match outcome {
                Outcome::Failed => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            }
        }
        Outcome::Quit if w.run.report.is_none() && w.run.id.is_none() => {
            println!("Quit: nothing was changed.");
            ExitCode::SUCCESS
        }
        _ => {
            // A stopped cleanup is not "complete": the migration stays
            // interrupted until resumed (its outcome is Failed: exit 1).
            let stopped = w.stopped_cleanup_summary();
            let title = match stopped {
                Some(_) => "Migrated",
                None => screens::done_title(w.outcome.or(Some(outcome))),
            };
            match &w.run.report {
                Some(r) => println!(
                    "{title}: {} copied, {} skipped, {} failed (migration {}).{}",
                    r.copied,
                    r.skipped,
                    r.failed,
                    r.migration_id,
                    stopped.map(|s| format!("\n{s}")).unwrap_or_default()
                ),
                None => println!("{title}."),
            }
            match w.outcome.unwrap_or(outcome) {
                Outcome::RolledBack | Outcome::Failed => ExitCode::from(1),
                _ => ExitCode::SUCCESS,
            }
        }
    }
}

fn spawn_input(tx: mpsc::Sender<Msg>) {
    let _ = thread::Builder::new()
        .name("credshift-input".into())
        .spawn(move || {
            use crossterm::event::{Event as CEvent, read};
            loop {
                let msg = match read() {
                    Ok(CEvent::Key(k)) => Msg::Key(k),
                    Ok(CEvent::Resize(..)) => Msg::Resize,
                    Ok(_) => continue,
                    Err(_) => break,
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
}

fn spawn_signals(tx: mpsc::Sender<Msg>) {
    use signal_hook::consts::{SIGHUP, SIGTERM};
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP]) {
        let _ = thread::Builder::new()
            .name("credshift-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if tx.send(Msg::Terminate).is_err() {
                        break;
                    }
                }
            });
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
