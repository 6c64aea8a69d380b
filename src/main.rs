use std::process::ExitCode;

use clap::Parser;
use credshift::cli::{self, Cli};
use credshift::zeroing_alloc::ZeroOnFree;

/// Every heap block is wiped before it is freed: parser scratch buffers and
/// other copies of secrets that no `Zeroizing` owns (see `zeroing_alloc`).
#[global_allocator]
static ALLOC: ZeroOnFree = ZeroOnFree(std::alloc::System);

fn main() -> ExitCode {
    no_core_dumps();
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("credshift: {}", e.message);
            ExitCode::from(e.code)
        }
    }
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
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit with a valid, initialised struct.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
}
