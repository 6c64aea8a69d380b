//! Starting the terminal UI: `credshift` on a terminal, `wizard`, `recover`
//! and `demo`. The CLI resolves flags, specs and key material; the library's
//! `tui` gets them as a [`tui::Launch`] and answers with an exit status.

use credshift::tui;

use super::{CliError, CliResult, GlobalOpts, parse_spec};

fn need_terminal(what: &str) -> Result<(), CliError> {
    if tui::on_terminal() {
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
    launch(g, tui::Mode::Wizard { from, to })
}

/// `credshift recover`.
pub fn run_recover(g: &GlobalOpts) -> CliResult {
    need_terminal("recover")?;
    launch(g, tui::Mode::Recover)
}

/// `credshift demo`.
pub fn run_demo(g: &GlobalOpts) -> CliResult {
    need_terminal("demo")?;
    launch(g, tui::Mode::Demo)
}

fn launch(g: &GlobalOpts, mode: tui::Mode) -> CliResult {
    let state_dir = g.state_dir();
    let opts = g.key_options()?;
    let state_dir_chosen =
        g.state_dir.is_some() || std::env::var_os("CREDSHIFT_STATE_DIR").is_some();
    Ok(tui::launch(tui::Launch {
        mode,
        state_dir,
        state_dir_chosen,
        opts,
    })?)
}
