// The binary is where printing happens: the CLI's output is its job.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use color_eyre::Section;
use color_eyre::config::{HookBuilder, Theme};
use color_eyre::eyre::Report;
use credshift::zeroing_alloc::ZeroOnFree;

mod cli;

use cli::{Cli, CliError};

/// Every heap block is wiped before it is freed: parser scratch buffers and
/// other copies of secrets that no `Zeroizing` owns (see `zeroing_alloc`).
#[global_allocator]
static ALLOC: ZeroOnFree = ZeroOnFree(std::alloc::System);

fn main() -> ExitCode {
    no_core_dumps();
    install_reports();
    match run() {
        Ok(code) => code,
        // A closed stdout is no failure (`credshift inventory | head -1`).
        Err(report)
            if report
                .downcast_ref::<CliError>()
                .is_some_and(|e| e.closed_pipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(report) => {
            // An error is an expected condition, not a bug: no backtrace
            // unless asked for with RUST_LIB_BACKTRACE (panics keep theirs).
            let report =
                report.suppress_backtrace(std::env::var_os("RUST_LIB_BACKTRACE").is_none());
            eprintln!("credshift: error:{report:?}");
            ExitCode::from(exit_code(&report))
        }
    }
}

/// The command line, run; an error comes back as a color-eyre report.
fn run() -> color_eyre::Result<ExitCode> {
    let cli = Cli::parse();
    cli::install_test_aids()?;
    Ok(cli::run(cli)?)
}

/// The exit code an error means (ARCHITECTURE.md, "Exit codes": 1 failed, 2 usage or refused);
/// an error the CLI did not classify is a failure.
fn exit_code(report: &Report) -> u8 {
    report.downcast_ref::<CliError>().map_or(1, |e| e.code)
}

/// color-eyre's error and panic reports, before anything can fail: the
/// message and its causes, no environment or location section (the error
/// types name the file or item; none of them carries a secret), colour only
/// on a terminal without `NO_COLOR`. The wizard adds its terminal restore in
/// front of this panic hook (`tui::terminal::install_hooks`).
fn install_reports() {
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let theme = if colour { Theme::dark() } else { Theme::new() };
    let _ = HookBuilder::default()
        .theme(theme)
        .display_env_section(false)
        .display_location_section(false)
        .capture_span_trace_by_default(false)
        .install();
}

/// Before any secret is in memory: no core file on a crash (the limit is
/// set to 0, soft and hard, so nothing in this process can raise it again),
/// and on Linux the process is not dumpable, so another process of the
/// same user cannot ptrace it or read its /proc/PID/mem, and a crash
/// handler gets no core either. Failures are ignored: they leave the
/// process as it was, and credshift still works.
fn no_core_dumps() {
    #[cfg(unix)]
    {
        let zero = rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        let _ = rustix::process::setrlimit(rustix::process::Resource::Core, zero);
    }
    // prctl(PR_SET_DUMPABLE) is Linux's; other Unix keep the rlimit alone.
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    }
}
