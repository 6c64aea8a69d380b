//! The migration commands: migrate, verify, resume, rollback, history,
//! backup and restore, with their consent prompt, progress bar and reports.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::{CliError, CliResult, GlobalOpts, MigrateArgs, parse_spec, print_json};
use credshift::engine;
use credshift::store;

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
pub(super) fn consent(yes: bool, question: &str) -> Result<(), CliError> {
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
pub(super) fn cancel_on_signals() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
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
    outln!("Plan: {} -> {}", plan.from, plan.to);
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
        outln!("  {:<48} {:<28} {action}", it.id.to_string(), it.preview);
        for w in &it.warnings {
            outln!("  {:<48} warning: {w}", "");
        }
    }
    let c = &plan.counts;
    outln!(
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
        outln!("warning: {w}");
    }
    for e in &plan.source_errors {
        eprintln!("{}: {}: {}", e.severity, e.location, e.error);
    }
}

fn print_report(r: &engine::Report, json: bool) -> Result<(), CliError> {
    // What taking the locks did: on stderr, so JSON on stdout stays clean.
    for n in &r.notices {
        eprintln!("credshift: {n}");
    }
    if nothing_readable(r) {
        eprintln!(
            "error: nothing was migrated: no item of {} could be read",
            r.from
        );
    }
    if json {
        return print_json(r);
    }
    outln!("Migration {}: {} -> {}", r.migration_id, r.from, r.to);
    outln!(
        "  total {}  copied {}  skipped {}  conflicts {}  invalid {}  failed {}  verified {}",
        r.total,
        r.copied,
        r.skipped,
        r.conflicts,
        r.invalid,
        r.failed,
        r.verified
    );
    if r.rolled_back {
        outln!(
            "  rolled back: {}",
            r.rollback_reason.as_deref().unwrap_or("yes")
        );
    } else if let Some(reason) = &r.rollback_reason {
        outln!("  rollback: {reason}");
    }
    if let Some(b) = &r.backup {
        let key = engine::backup_file::key_file_for(b);
        if key.exists() {
            outln!(
                "  backup: {} (key file {}; the backup is only as safe as this folder)",
                b.display(),
                key.display()
            );
        } else {
            outln!("  backup: {} (protected by your passphrase)", b.display());
        }
    }
    if r.source_deleted > 0 {
        outln!("  deleted from the source: {}", r.source_deleted);
    }
    for f in &r.failures {
        outln!("  failed: {}: {}", f.id, f.error);
    }
    for f in &r.source_delete_failed {
        outln!("  {}: {}", f.id, f.error);
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
    let policy = engine::ConflictPolicy::from(a.on_conflict);
    if a.dry_run {
        let opts = g.key_options()?;
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
    let opts = g.key_options()?;
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
        let h =
            engine::start_prepared(req, prepared, source, target, &g.state_dir(), &opts, cancel)?;
        engine::follow(h, None, |p| bar.event(p))?
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
    opts: &credshift::unlock::KeyOptions,
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

/// The options for an action on a recorded migration. When it needs
/// credshift's passphrase and none was given (file, variable or
/// `CREDSHIFT_PASSPHRASE`), it is asked for on a terminal; without one,
/// refused (exit 2) before anything is opened.
fn recovery_options(
    g: &GlobalOpts,
    id: &engine::MigrationId,
) -> Result<credshift::unlock::KeyOptions, CliError> {
    let mut opts = g.key_options()?;
    if opts.passphrase.is_some() || opts.key_file.is_some() {
        return Ok(opts);
    }
    let detail = engine::detail(&g.state_dir(), id)?;
    if !detail.needs_passphrase {
        return Ok(opts);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "migration {id} needs the passphrase it ran with and none was given: give it with \
             --passphrase-file PATH, --passphrase-env VAR or CREDSHIFT_PASSPHRASE, or run on a \
             terminal to be asked; nothing was read or changed"
        )));
    }
    match credshift::keys::prompt_passphrase(&format!("Passphrase for migration {id}: ")) {
        Some(p) => {
            opts.passphrase = Some(p);
            Ok(opts)
        }
        None => Err(CliError::usage(
            "no passphrase entered; nothing was read or changed",
        )),
    }
}

/// Run a recovery operation on its handle: the progress bar, and SIGINT /
/// SIGTERM cancel it after the batch at hand.
fn follow_recovery(
    g: &GlobalOpts,
    id: &engine::MigrationId,
    opts: &credshift::unlock::KeyOptions,
    op: engine::RecoveryOp,
) -> Result<engine::Report, CliError> {
    let h = engine::start_recovery(&g.state_dir(), id, opts, op, cancel_on_signals())?;
    let mut bar = ProgressBar::new();
    Ok(engine::follow(h, None, |p| bar.event(p))?)
}

/// One line for an operation the user cancelled: what it did and what is left.
fn say_cancelled(r: &engine::Report, what: &str) {
    if r.cancelled {
        eprintln!(
            "{what} cancelled after the batch at hand; migration {} is {} (see `credshift \
             history --migration-id {}`)",
            r.migration_id,
            r.status.map_or("interrupted", engine::status_word),
            r.migration_id
        );
    }
}

pub fn cmd_verify(g: &GlobalOpts, id: &str, json: bool) -> CliResult {
    let id = parse_migration_id(id)?;
    if engine::rekey::rekey_dir(&g.state_dir(), &id).is_some() {
        return super::rekey::cmd_verify(g, &id, json);
    }
    let opts = recovery_options(g, &id)?;
    let report = follow_recovery(g, &id, &opts, engine::RecoveryOp::Verify)?;
    say_cancelled(&report, "verify");
    print_report(&report, json)?;
    Ok(if report.failed == 0 && !report.cancelled {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn cmd_resume(g: &GlobalOpts, id: &str, yes: bool, json: bool) -> CliResult {
    let id = parse_migration_id(id)?;
    consent(yes, &format!("resume migration {id}"))?;
    if engine::rekey::rekey_dir(&g.state_dir(), &id).is_some() {
        return super::rekey::cmd_resume(g, &id, json);
    }
    let opts = recovery_options(g, &id)?;
    let report = follow_recovery(g, &id, &opts, engine::RecoveryOp::Resume)?;
    say_cancelled(&report, "resume");
    print_report(&report, json)?;
    Ok(if report.cancelled {
        ExitCode::from(1)
    } else {
        report_code(&report)
    })
}

pub fn cmd_rollback(
    g: &GlobalOpts,
    id: &str,
    yes: bool,
    only: Option<&str>,
    json: bool,
) -> CliResult {
    let id = parse_migration_id(id)?;
    let question = match only {
        Some(glob) => format!("roll back the items of migration {id} matching {glob}"),
        None => format!("roll back migration {id}"),
    };
    consent(yes, &question)?;
    if engine::rekey::rekey_dir(&g.state_dir(), &id).is_some() {
        if let Some(glob) = only {
            return super::rekey::cmd_rollback_only(g, &id, glob, json);
        }
        return super::rekey::cmd_rollback(g, &id, json);
    }
    let opts = recovery_options(g, &id)?;
    let Some(glob) = only else {
        let report = follow_recovery(g, &id, &opts, engine::RecoveryOp::Rollback)?;
        say_cancelled(&report, "rollback");
        print_report(&report, json)?;
        return Ok(if report.rolled_back {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    };
    let state_dir = g.state_dir();
    let ctl = engine::Control {
        cancel: cancel_on_signals(),
        events: None,
    };
    let report = engine::rollback_only(&state_dir, &id, &opts, glob, &ctl)?;
    say_cancelled(&report, "rollback");
    print_report(&report, json)?;
    if !json {
        let detail = engine::detail(&state_dir, &id)?;
        let left: Vec<String> = detail
            .items
            .iter()
            .filter(|i| i.state == engine::items::ItemState::Verified)
            .map(|i| i.id.to_string())
            .collect();
        println!(
            "  {} items remain migrated{}{}",
            left.len(),
            if left.is_empty() { "" } else { ": " },
            left.join(", ")
        );
    }
    let undone_all = report.failures.is_empty() && !report.cancelled;
    Ok(if undone_all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn cmd_history(g: &GlobalOpts, migration_id: Option<&str>, json: bool) -> CliResult {
    if let Some(id) = migration_id {
        let id = parse_migration_id(id)?;
        let detail = engine::detail(&g.state_dir(), &id)?;
        if json {
            print_json(&detail)?;
        } else {
            print_detail(&detail);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let entries = engine::history(&g.state_dir())?;
    if json {
        print_json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        outln!("no migrations yet");
    }
    for e in &entries {
        outln!(
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

/// One migration item by item, then its journal.
fn print_detail(d: &engine::MigrationDetail) {
    let e = &d.entry;
    println!(
        "Migration {}: {} -> {}  {}",
        e.id,
        e.from,
        e.to,
        engine::status_word(e.status)
    );
    println!("Items:");
    for i in &d.items {
        let source = match i.source {
            engine::items::SourceState::Kept => "",
            engine::items::SourceState::Deleted => "  (deleted from the source)",
            engine::items::SourceState::DeleteFailed => "  (migrated, source still present)",
            engine::items::SourceState::DeleteBegun => "  (source delete began: check the source)",
            engine::items::SourceState::Restored => "  (put back into the source)",
        };
        match &i.reason {
            Some(r) => println!("  {:<16} {}: {r}{source}", i.state.word(), i.id),
            None => println!("  {:<16} {}{source}", i.state.word(), i.id),
        }
    }
    println!("Journal:");
    for t in &d.timeline {
        let mut line = format!("  {:>4} {}  {}", t.seq, t.at, t.event);
        if let Some(id) = &t.id {
            line.push_str(&format!(" {id}"));
        }
        if let Some(x) = &t.detail {
            line.push_str(&format!(": {x}"));
        }
        if t.ids.len() > 1 {
            let ids: Vec<String> = t.ids.iter().map(ToString::to_string).collect();
            line.push_str(&format!(" [{}]", ids.join(", ")));
        }
        println!("{line}");
    }
}

pub fn cmd_backup(
    g: &GlobalOpts,
    from: &str,
    out: &std::path::Path,
    key_out: Option<&std::path::Path>,
) -> CliResult {
    let spec = parse_spec(from)?;
    let opts = g.key_options()?;
    let source = store::open(&spec, &opts)?;
    let state_dir = g.state_dir();
    let key_out = match key_out {
        Some(p) => engine::recovery::KeyOut::At(p),
        None => engine::recovery::KeyOut::Kept(&state_dir),
    };
    let summary = engine::backup(source.as_ref(), out, key_out, &opts)?;
    for n in &summary.notices {
        eprintln!("credshift: {n}");
    }
    let _ = engine::audit::append(
        &g.state_dir(),
        engine::audit::AuditEntry {
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
    outln!(
        "backup of {} items written to {}",
        summary.items,
        summary.path.display()
    );
    match &summary.key_file {
        Some(k) if k.starts_with(&state_dir) => outln!(
            "key file: {} (kept apart from the backup, in credshift's state dir; \
             `credshift restore --backup FILE` finds it there, or give it with --key-file)",
            k.display()
        ),
        Some(k) => outln!(
            "key file: {} (keep it apart from the backup; restore with --key-file {})",
            k.display(),
            k.display()
        ),
        None => outln!("protected by your passphrase"),
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
    pub on_conflict: super::Policy,
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
    let policy = engine::ConflictPolicy::from(f.on_conflict);
    if !f.dry_run && !f.yes && !interactive() {
        return Err(CliError::usage(format!(
            "refusing to restore {} into {spec} without --yes: no terminal to ask (try \
             --dry-run first)",
            backup.display()
        )));
    }
    let opts = g.key_options()?;
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
