use std::process::ExitCode;

use clap::Parser;
use credshift::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("credshift: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
