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
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use crate::cli::{CliError, CliResult, GlobalOpts, default_locations, parse_spec};
use crate::store::StoreSpec;
use crate::wizard::{Config, Outcome, Wizard};

use app::{App, Msg, Sink};

/// Whether both ends are a terminal (the wizard needs one).
pub fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

fn need_terminal(what: &str) -> Result<(), CliError> {
    if on_terminal() {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "`credshift {what}` needs a terminal; for scripts use `credshift migrate --from SPEC --to SPEC --yes` (see --help)"
        )))
    }
}

/// `credshift` on a terminal, and `credshift wizard [--from] [--to]`.
pub fn run_wizard(g: &GlobalOpts, from: Option<&str>, to: Option<&str>) -> CliResult {
    need_terminal("wizard")?;
    let from = from.map(parse_spec).transpose()?;
    let to = to.map(parse_spec).transpose()?;
    let state_dir = g.state_dir();
    let mut candidates = default_locations();
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
    run(g, config)
}

/// `credshift recover`.
pub fn run_recover(g: &GlobalOpts) -> CliResult {
    need_terminal("recover")?;
    let config = Config {
        state_dir: g.state_dir(),
        recover: true,
        ..Config::default()
    };
    run(g, config)
}

/// `credshift demo`.
pub fn run_demo(g: &GlobalOpts) -> CliResult {
    need_terminal("demo")?;
    let demo = demo::prepare().map_err(|e| CliError::failed(format!("preparing the demo: {e}")))?;
    let mut g = g.clone();
    if g.state_dir.is_none() && std::env::var_os("CREDSHIFT_STATE_DIR").is_none() {
        g.state_dir = Some(demo.state_dir.clone());
    }
    let config = Config {
        candidates: demo.candidates(),
        from: Some(demo.source()),
        to: Some(demo.target()),
        passphrase_given: false,
        state_dir: g.state_dir(),
        recover: false,
    };
    let result = run(&g, config);
    println!(
        "Demo files are in {} (kept so you can look; delete the folder when done).",
        demo.dir.display()
    );
    result
}

fn run(g: &GlobalOpts, mut config: Config) -> CliResult {
    let opts = g.open_options()?;
    config.passphrase_given = opts.passphrase.is_some() || opts.key_file.is_some();
    let state_dir = config.state_dir.clone();

    terminal::install_hooks();
    let (wizard, initial) = Wizard::new(config, now_ms());
    let mut app = App::new(wizard, theme::Theme::from_env());
    let mut exec = worker::EngineExecutor::new(opts, state_dir);
    let (tx, rx) = mpsc::channel();
    let sink = Sink(tx.clone());

    let (mut term, guard) = terminal::enter()
        .map_err(|e| CliError::failed(format!("cannot set up the terminal: {e}")))?;
    spawn_input(tx.clone());
    spawn_signals(tx);
    let result = app::run_loop(&mut term, &mut app, &mut exec, &rx, &sink, initial, &now_ms);
    drop(term);
    drop(guard);
    let outcome = result.map_err(|e| CliError::failed(format!("terminal error: {e}")))?;
    Ok(summarize(&app, outcome))
}

/// After the screen is gone: one line that says how it ended.
fn summarize(app: &App, outcome: Outcome) -> ExitCode {
    let w = &app.wizard;
    match outcome {
        Outcome::Deferred => {
            println!("Deferred: nothing was changed.");
            ExitCode::SUCCESS
        }
        Outcome::Quit if w.run.report.is_none() => {
            println!("Quit: nothing was changed.");
            ExitCode::SUCCESS
        }
        _ => {
            let title = screens::done_title(w.outcome.or(Some(outcome)));
            match &w.run.report {
                Some(r) => println!(
                    "{title}: {} copied, {} skipped, {} failed (migration {}).",
                    r.copied, r.skipped, r.failed, r.migration_id
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
