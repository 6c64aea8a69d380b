//! The migration commands: migrate, verify, resume, rollback, history,
//! backup and restore, with their consent prompt, progress bar and reports.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::{CliError, CliResult, GlobalOpts, MigrateArgs, parse_spec, print_json};
use credshift::engine;
use credshift::store;

fn parse_policy(s: &str) -> Result<engine::ConflictPolicy, CliError> {
    match s {
        "skip" => Ok(engine::ConflictPolicy::Skip),
        "overwrite" => Ok(engine::ConflictPolicy::Overwrite),
        _ => Err(CliError::usage(format!(
            "--on-conflict takes skip or overwrite, not {s:?}"
        ))),
    }
}

fn parse_migration_id(s: &str) -> Result<engine::MigrationId, CliError> {
    if s.is_empty() || s.contains(['/', '\\']) || s.starts_with('.') {
        return Err(CliError::usage(format!("{s:?} is not a migration id")));
    }
    Ok(engine::MigrationId(s.to_string()))
}

pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Consent for a changing command: `--yes`, or a "y" typed at a terminal.
/// Without either, refuse (exit 2) before anything is touched.
fn consent(yes: bool, question: &str) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !interactive() {
        return Err(CliError::usage(format!(
            "refusing to {question} without --yes: no terminal to ask"
        )));
    }
    eprint!("{question}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::usage(format!("reading the answer: {e}")))?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::usage("cancelled; nothing was changed"))
    }
}

/// SIGINT / SIGTERM set the cancel flag (the engine rolls back); a second
/// signal ends the process.
fn cancel_on_signals() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// The progress bar on stderr (indicatif), drawn only when stderr is a
/// terminal: a pipe or a log file gets the report and nothing else.
struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    fn new() -> Self {
        let target = if std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(None, target);
        bar.set_style(
            indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("#>."),
        );
        ProgressBar { bar }
    }

    fn event(&mut self, p: &engine::Progress) {
        match p {
            engine::Progress::BackupWritten { path, items } => {
                self.bar
                    .println(format!("backup of {items} items: {}", path.display()));
            }
            engine::Progress::Counts(c) => {
                let eta = c
                    .eta
                    .map(|d| format!(" ETA {}s", d.as_secs()))
                    .unwrap_or_default();
                self.bar.set_length(c.total as u64);
                self.bar.set_position(c.done as u64);
                self.bar.set_message(format!(
                    "written {} failed {} {:.1}/s{eta}",
                    c.written, c.failed, c.rate
                ));
            }
            engine::Progress::RollingBack { reason } => {
                self.bar.println(format!("rolling back: {reason}"));
            }
            engine::Progress::Finished(_) => self.bar.finish(),
            _ => {}
        }
    }
}

fn print_plan(plan: &engine::Plan) {
    println!("Plan: {} -> {}", plan.from, plan.to);
    for it in &plan.items {
        let action = match &it.action {
            engine::Action::Copy => "copy".to_string(),
            engine::Action::Overwrite => "overwrite (old value backed up)".to_string(),
            engine::Action::SkipIdentical => "skip (identical)".to_string(),
            engine::Action::Conflict => "conflict (different value at target; skipped)".to_string(),
            engine::Action::Invalid { reason } => format!("invalid: {reason}"),
            engine::Action::TooLong { limit, len } => {
                format!("too long for the target ({len} > {limit} bytes)")
            }
        };
        println!("  {:<48} {:<28} {action}", it.id.to_string(), it.preview);
        for w in &it.warnings {
            println!("  {:<48} warning: {w}", "");
        }
    }
    let c = &plan.counts;
    println!(
        "{} items: {} to copy, {} to overwrite, {} identical, {} conflicts, {} invalid, {} too long, {} expired; about {} s",
        c.total,
        c.copy,
        c.overwrite,
        c.skip_identical,
        c.conflict,
        c.invalid,
        c.too_long,
        c.expired_warnings,
        plan.estimated
            .as_secs()
            .max(u64::from(c.copy + c.overwrite > 0))
    );
    for w in &plan.warnings {
        println!("warning: {w}");
    }
    for e in &plan.source_errors {
        eprintln!("{}: {}: {}", e.severity, e.location, e.error);
    }
}

fn print_report(r: &engine::Report, json: bool) -> Result<(), CliError> {
    if nothing_readable(r) {
        eprintln!(
            "error: nothing was migrated: no item of {} could be read",
            r.from
        );
    }
    if json {
        return print_json(r);
    }
    println!("Migration {}: {} -> {}", r.migration_id, r.from, r.to);
    println!(
        "  total {}  copied {}  skipped {}  conflicts {}  invalid {}  failed {}  verified {}",
        r.total, r.copied, r.skipped, r.conflicts, r.invalid, r.failed, r.verified
    );
    if r.rolled_back {
        println!(
            "  rolled back: {}",
            r.rollback_reason.as_deref().unwrap_or("yes")
        );
    } else if let Some(reason) = &r.rollback_reason {
        println!("  rollback: {reason}");
    }
    if let Some(b) = &r.backup {
        let key = engine::backup::key_file_for(b);
        if key.exists() {
            println!(
                "  backup: {} (key file {}; the backup is only as safe as this folder)",
                b.display(),
                key.display()
            );
        } else {
            println!("  backup: {} (protected by your passphrase)", b.display());
        }
    }
    if r.source_deleted > 0 {
        println!("  deleted from the source: {}", r.source_deleted);
    }
    for f in &r.failures {
        println!("  failed: {}: {}", f.id, f.error);
    }
    for f in &r.source_delete_failed {
        println!("  {}: {}", f.id, f.error);
    }
    Ok(())
}

/// Whether a run found nothing to migrate because its source could not
/// be read (every item unreadable): a failure, not "done, total 0".
fn nothing_readable(r: &engine::Report) -> bool {
    r.total == 0 && r.unreadable > 0
}

/// 0 when everything asked for happened; 1 when anything failed or was
/// rolled back, or when nothing could be read.
fn report_code(r: &engine::Report) -> ExitCode {
    if r.rolled_back
        || r.failed > 0
        || nothing_readable(r)
        || r.rollback_reason.is_some()
        || !r.source_delete_failed.is_empty()
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn cmd_migrate(g: &GlobalOpts, a: &MigrateArgs) -> CliResult {
    let from = parse_spec(&a.from)?;
    let to = parse_spec(&a.to)?;
    if store::same_location(&from, &to) {
        return Err(CliError::usage(format!(
            "refusing to migrate {from} to {to}: they are the same store (the same file or \
             location, whatever the scheme or link used to name it); nothing was read or written"
        )));
    }
    let policy = parse_policy(&a.on_conflict)?;
    if a.dry_run {
        let opts = g.open_options()?;
        let source = store::open(&from, &opts)?;
        let target = store::open(&to, &opts)?;
        engine::session::refuse_same_store(source.as_ref(), target.as_ref())?;
        let plan = engine::plan(source.as_ref(), target.as_ref(), policy, None)?;
        if a.json {
            print_json(&plan)?;
        } else {
            print_plan(&plan);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !a.yes && !interactive() {
        return Err(CliError::usage(
            "refusing to migrate without --yes: no terminal to ask (try --dry-run first)",
        ));
    }
    let opts = g.open_options()?;
    preflight_keys(&from, &to, &opts)?;
    let req = engine::MigrationRequest {
        from: from.clone(),
        to: to.clone(),
        policy,
        selection: None,
        delete_source: a.delete_source,
    };
    let mut bar = ProgressBar::new();
    let report = if a.yes {
        // No plan to consent to on screen: the engine plans once, under the
        // stores' locks (concurrent migrations see each other's writes).
        let cancel = cancel_on_signals();
        engine::run(req, &g.state_dir(), &opts, Some(cancel), |p| bar.event(p))?
    } else {
        // Plan once: the plan consented to is the one executed (the engine
        // refuses to write if either store changed in between).
        let source = store::open(&from, &opts)?;
        let target = store::open(&to, &opts)?;
        engine::session::refuse_same_store(source.as_ref(), target.as_ref())?;
        let prepared = engine::prepare(&req, source.as_ref(), target.as_ref())?;
        print_plan(&prepared.plan);
        consent(false, &format!("Migrate from {from} to {to}"))?;
        if a.delete_source {
            consent(
                false,
                &format!("After verifying, delete the migrated items from {from}"),
            )?;
        }
        let cancel = cancel_on_signals();
        let h = engine::start_prepared(req, prepared, source, target, &g.state_dir(), &opts)?;
        engine::follow(h, Some(cancel), |p| bar.event(p))?
    };
    if a.yes {
        // The plan was never shown: its warnings still reach stderr.
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    print_report(&report, a.json)?;
    Ok(report_code(&report))
}

/// Pre-flight: a store kept under credshift's passphrase cannot be opened
/// or created without a passphrase or key file. Without either, stop here,
/// before the backup and the journal, rather than fail every item and roll
/// back. Asked of the specs ([`store::StoreSpec::under_passphrase`]).
fn preflight_keys(
    from: &store::StoreSpec,
    to: &store::StoreSpec,
    opts: &store::OpenOptions,
) -> Result<(), CliError> {
    if opts.passphrase.is_some() || opts.key_file.is_some() {
        return Ok(());
    }
    match [to, from].into_iter().find(|s| s.under_passphrase()) {
        None => Ok(()),
        Some(spec) => Err(CliError::usage(format!(
            "{spec} needs credshift's passphrase or a key file and none was given: give it with \
             --passphrase-file PATH, --passphrase-env VAR or CREDSHIFT_PASSPHRASE, or a 32-byte \
             key file with --key-file PATH; nothing was read or written"
        ))),
    }
}

pub fn cmd_verify(g: &GlobalOpts, id: &str, json: bool) -> CliResult {
    let id = parse_migration_id(id)?;
    let opts = g.open_options()?;
    let report = engine::verify(&g.state_dir(), &id, &opts)?;
    print_report(&report, json)?;
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn cmd_resume(g: &GlobalOpts, id: &str, yes: bool, json: bool) -> CliResult {
    let id = parse_migration_id(id)?;
    consent(yes, &format!("resume migration {id}"))?;
    let opts = g.open_options()?;
    let mut bar = ProgressBar::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let ctl = engine::Control {
        cancel: cancel_on_signals(),
        events: Some(tx),
    };
    let state_dir = g.state_dir();
    let report = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let ctl = ctl;
            engine::resume_with(&state_dir, &id, &opts, &ctl)
        });
        for p in rx.iter() {
            bar.event(&p);
        }
        worker
            .join()
            .unwrap_or(Err(engine::EngineError::WorkerPanicked))
    })?;
    print_report(&report, json)?;
    Ok(report_code(&report))
}

pub fn cmd_rollback(g: &GlobalOpts, id: &str, yes: bool, json: bool) -> CliResult {
    let id = parse_migration_id(id)?;
    consent(yes, &format!("roll back migration {id}"))?;
    let opts = g.open_options()?;
    let report = engine::rollback(&g.state_dir(), &id, &opts)?;
    print_report(&report, json)?;
    Ok(if report.rolled_back {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn cmd_history(g: &GlobalOpts, json: bool) -> CliResult {
    let entries = engine::history(&g.state_dir())?;
    if json {
        print_json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no migrations yet");
    }
    for e in &entries {
        println!(
            "{}  {:<12} {} -> {}  copied {}  failed {}",
            e.id,
            engine::status_word(e.status),
            e.from,
            e.to,
            e.copied,
            e.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_backup(
    g: &GlobalOpts,
    from: &str,
    out: &std::path::Path,
    key_out: Option<&std::path::Path>,
) -> CliResult {
    let spec = parse_spec(from)?;
    let opts = g.open_options()?;
    let source = store::open(&spec, &opts)?;
    let state_dir = g.state_dir();
    let key_out = match key_out {
        Some(p) => engine::recovery::KeyOut::At(p),
        None => engine::recovery::KeyOut::Kept(&state_dir),
    };
    let summary = engine::backup(source.as_ref(), out, key_out, &opts)?;
    let _ = engine::audit::append(
        &g.state_dir(),
        engine::audit::Entry {
            action: "backup",
            from: Some(spec.to_string()),
            to: Some(out.display().to_string()),
            migration_id: None,
            outcome: "completed",
            counts: engine::journal::Totals {
                total: summary.items,
                copied: summary.items,
                ..Default::default()
            },
        },
    );
    println!(
        "backup of {} items written to {}",
        summary.items,
        summary.path.display()
    );
    match &summary.key_file {
        Some(k) if k.starts_with(&state_dir) => println!(
            "key file: {} (kept apart from the backup, in credshift's state dir; \
             `credshift restore --backup FILE` finds it there, or give it with --key-file)",
            k.display()
        ),
        Some(k) => println!(
            "key file: {} (keep it apart from the backup; restore with --key-file {})",
            k.display(),
            k.display()
        ),
        None => println!("protected by your passphrase"),
    }
    for e in &summary.errors {
        eprintln!("{}: {}: {}", e.severity, e.location, e.error);
    }
    Ok(
        if summary
            .errors
            .iter()
            .all(|e| e.severity == store::Severity::Warning)
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// `restore`'s flags.
pub struct RestoreFlags {
    pub yes: bool,
    pub dry_run: bool,
    pub on_conflict: String,
    pub json: bool,
}

/// Restore plans like a migration: what it would replace is shown first
/// (`--dry-run`, or at the consent prompt), and a value changed since the
/// backup is a conflict, skipped unless `--on-conflict overwrite`.
pub fn cmd_restore(
    g: &GlobalOpts,
    backup: &std::path::Path,
    to: &str,
    f: &RestoreFlags,
) -> CliResult {
    let spec = parse_spec(to)?;
    let policy = parse_policy(&f.on_conflict)?;
    if !f.dry_run && !f.yes && !interactive() {
        return Err(CliError::usage(format!(
            "refusing to restore {} into {spec} without --yes: no terminal to ask (try \
             --dry-run first)",
            backup.display()
        )));
    }
    let opts = g.open_options()?;
    let state_dir = g.state_dir();
    if f.dry_run || !f.yes {
        let plan = engine::restore_plan(backup, &spec, &state_dir, &opts, policy)?;
        if f.dry_run {
            if f.json {
                print_json(&plan)?;
            } else {
                print_plan(&plan);
            }
            return Ok(ExitCode::SUCCESS);
        }
        print_plan(&plan);
        let c = &plan.counts;
        consent(
            false,
            &format!(
                "restore {} into {spec}: {} to copy, {} to overwrite (backed up first), {} \
                 conflicts left as they are",
                backup.display(),
                c.copy,
                c.overwrite,
                c.conflict
            ),
        )?;
    }
    let report = engine::restore_with(backup, &spec, &state_dir, &opts, policy)?;
    print_report(&report, f.json)?;
    Ok(report_code(&report))
}
