//! `exec` and `completions`.

use std::process::ExitCode;

use super::{Cli, CliError, CliResult, ExecArgs, GlobalOpts, parse_spec};
use credshift::store;

pub fn cmd_exec(g: &GlobalOpts, a: &ExecArgs) -> CliResult {
    use credshift::exec;
    let layout = exec::Layout::from(a.layout);
    let spec = parse_spec(&a.from)?;
    let opts = g.key_options()?;
    let store = store::open(&spec, &opts)?;
    let scan = store.read_all()?;
    drop(store);
    for e in &scan.errors {
        eprintln!("credshift: warning: {}: {}", e.location, e.error);
    }
    let creds = scan.credentials;
    let plan =
        exec::plan_env(layout, &creds, &a.only).map_err(|e| CliError::usage(e.to_string()))?;
    for (id, why) in &plan.skipped {
        eprintln!("credshift: not passed to the command: {id} ({why})");
    }
    let strip = exec::unlock_vars(g.passphrase_env.as_deref());
    let env = exec::child_env(std::env::vars_os(), &strip, &a.keep_env, &plan, &creds)
        .map_err(|e| CliError::usage(e.to_string()))?;
    drop(plan);
    drop(creds);
    drop(opts);
    let (program, args) = a
        .command
        .split_first()
        .ok_or_else(|| CliError::usage("exec needs a command after --"))?;
    match exec::spawn_and_wait(program, args, env) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => Err(CliError::with_code(e.exit_code(), e.to_string())),
    }
}

pub fn cmd_completions(shell: super::Shell) -> CliResult {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    let shell = match shell {
        super::Shell::Bash => clap_complete::Shell::Bash,
        super::Shell::Zsh => clap_complete::Shell::Zsh,
        super::Shell::Fish => clap_complete::Shell::Fish,
        super::Shell::Man => {
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(CliError::stdout)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    clap_complete::generate(shell, &mut cmd, "credshift", &mut out);
    Ok(ExitCode::SUCCESS)
}
