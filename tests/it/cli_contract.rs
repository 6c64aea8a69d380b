//! docs/cli-contract.md names every subcommand and long flag clap knows:
//! the binary's `--help` (top level and per command) is walked, and each
//! name must appear in the document in backticks.

use std::path::Path;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_credshift"))
        .args(args)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The names under `Commands:` in a help text.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The long flags under `Options:` in a help text (`--name`).
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Options:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-")
                .and_then(|r| r.split_once(", "))
                .map_or(l, |(_, r)| r);
            let flag = l.split([' ', '=', '<']).next()?;
            flag.starts_with("--").then(|| flag.to_string())
        })
        .collect()
}

#[test]
fn the_help_parsers_find_commands_and_long_flags() {
    let h = "Usage: x\n\nCommands:\n  migrate  Copy\n  help     Print\n\nOptions:\n      \
             --state-dir <DIR>  Where\n  -h, --help  Print help\n  -V, --version  Print\n\nStore";
    assert_eq!(commands(h), ["migrate", "help"]);
    assert_eq!(long_flags(h), ["--state-dir", "--help", "--version"]);
}

#[test]
fn every_subcommand_and_long_flag_is_in_the_cli_contract() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli-contract.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let top = help(&[]);
    let cmds = commands(&top);
    assert!(cmds.len() > 15, "found only {cmds:?}");
    let mut missing = Vec::new();
    let mut check = |name: String, what: &str| {
        // Named in backticks, alone or as the start of a usage (`--x N`).
        if !doc.contains(&format!("`{name}`")) && !doc.contains(&format!("`{name} ")) {
            missing.push(format!("{what} {name}"));
        }
    };
    for flag in long_flags(&top) {
        check(flag, "global flag");
    }
    let mut flags_seen = 0;
    for cmd in cmds.iter().filter(|c| *c != "help") {
        check(cmd.clone(), "command");
        let h = help(&[cmd.as_str()]);
        for sub in commands(&h).into_iter().filter(|c| c != "help") {
            check(format!("{cmd} {sub}"), "subcommand");
        }
        for flag in long_flags(&h) {
            flags_seen += 1;
            check(flag, &format!("{cmd}'s flag"));
        }
    }
    assert!(
        flags_seen > 100,
        "the help parser found only {flags_seen} flags"
    );
    assert!(
        missing.is_empty(),
        "docs/cli-contract.md does not name: {missing:#?}"
    );
}
