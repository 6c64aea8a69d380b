//! Entering and leaving the terminal's raw mode and alternate screen. There
//! is one restore function; it runs on every exit path: normal return, error
//! (the guard's `Drop`), and panic (the hook, installed after color-eyre's so
//! the terminal is back before the report prints).

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::Show;
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leave raw mode and the alternate screen, show the cursor. Idempotent:
/// only the first call after [`enter`] does anything.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// Our panic hook on top of whatever is installed (the binary installs
/// color-eyre's first thing in `main`): restore first, then let that hook
/// print the report on a normal screen. The library installs no color-eyre
/// hook of its own: a second `color_eyre::install()` fails, and building
/// that error captures and resolves a backtrace when `RUST_BACKTRACE` is
/// set (a second and 300 MB at the wizard's start, measured).
pub fn install_hooks() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// Restores the terminal when dropped (early returns and unwinding).
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

pub type Tty = Terminal<CrosstermBackend<Stdout>>;

/// Raw mode, alternate screen, hidden cursor. The guard restores.
pub fn enter() -> io::Result<(Tty, Guard)> {
    enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let guard = Guard(());
    execute!(io::stdout(), EnterAlternateScreen)?;
    let mut t = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    t.hide_cursor()?;
    t.clear()?;
    Ok((t, guard))
}
