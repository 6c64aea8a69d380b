//! `credshift rekey`: re-encrypt a store in place under a new key, and the
//! rekey side of `resume`, `rollback` and `verify`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{CliError, CliResult, GlobalOpts, interactive, parse_spec, print_json};
use credshift::credential::ct_eq_bytes;
use credshift::engine::rekey::{self, NewKey, RekeyPlan, RekeyProgress, RekeyReport};
use credshift::engine::{self, MigrationId};
use credshift::keys;
use credshift::store::StoreSpec;
use credshift::store::rekey::RekeyFormat;
use credshift::unlock::KeyOptions;

#[derive(Args, Debug, Clone)]
pub struct RekeyArgs {
    /// The store to re-encrypt (prompttrain-db:, laravel:, sqlite:, postgres://, encrypted:, bundle:)
    #[arg(long, value_name = "SPEC", required_unless_present = "forget_backup")]
    pub store: Option<String>,
    /// Show which key each value is under and what would change; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Consent to the changes (required without a terminal)
    #[arg(long)]
    pub yes: bool,
    /// Print the plan or result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Write a fresh key in the store's own format here (0600; never over a file) and rekey to it
    #[arg(long, value_name = "PATH")]
    pub generate_new_key: Option<PathBuf>,
    /// PBKDF2 iterations for credshift's new key (raise the count; alone, keeps the passphrase)
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
    /// Print the application's new settings (KEY=value lines) on stdout; refuses a terminal
    #[arg(long)]
    pub print_env: bool,
    /// Delete the backup of rekey ID (old ciphertexts + their key) once verify passed; no rollback after
    #[arg(long, value_name = "ID", conflicts_with = "store")]
    pub forget_backup: Option<String>,
}

/// The new key's flags (global, so `resume` of a rekey takes them too).
#[derive(Args, Debug, Clone, Default)]
pub struct NewKeyOpts {
    /// rekey: the new key (agent-prompttrain or Laravel key text, or a 32-byte credshift key file)
    #[arg(long, global = true, value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
    /// rekey: read the new passphrase (or key text) from the first line of this file
    #[arg(long, global = true, value_name = "PATH")]
    pub new_passphrase_file: Option<PathBuf>,
    /// rekey: read the new passphrase (or key text) from this environment variable
    #[arg(long, global = true, value_name = "VAR")]
    pub new_passphrase_env: Option<String>,
}

fn text_format(f: RekeyFormat) -> bool {
    matches!(f, RekeyFormat::PromptTrain | RekeyFormat::Laravel)
}

/// The new key from the flags, never argv, and where it came from.
fn new_key(
    n: &NewKeyOpts,
    format: RekeyFormat,
    opts: &KeyOptions,
    kdf_raised: bool,
    same_allowed: bool,
) -> Result<(NewKey, String), CliError> {
    let given = [
        n.new_key_file.is_some(),
        n.new_passphrase_file.is_some(),
        n.new_passphrase_env.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(CliError::usage(
            "give the new key one way: --new-key-file, --generate-new-key, \
             --new-passphrase-file or --new-passphrase-env",
        ));
    }
    let key_file = n.new_key_file.as_ref();
    for (flag, p) in [
        ("--new-key-file", key_file),
        ("--new-passphrase-file", n.new_passphrase_file.as_ref()),
    ] {
        if let Some(p) = p {
            keys::require_private_file(p, flag).map_err(CliError::usage)?;
        }
    }
    let text = if let Some(p) = n.new_passphrase_file.as_ref() {
        Some((keys::secret_from_file(p)?, format!("file {}", p.display())))
    } else if let Some(v) = &n.new_passphrase_env {
        let s = keys::secret_from_env(v).ok_or_else(|| {
            CliError::usage(format!(
                "--new-passphrase-env {v}: the variable is not set or empty"
            ))
        })?;
        Some((s, format!("variable {v}")))
    } else {
        None
    };
    let key = match (key_file, text) {
        (Some(p), None) if text_format(format) => (
            NewKey::Text(keys::secret_from_file(p)?),
            format!("file {}", p.display()),
        ),
        (Some(p), None) => {
            credshift::crypto::kdf::load_key_file(p)?;
            (
                NewKey::KeyFile(p.clone()),
                format!("key file {}", p.display()),
            )
        }
        (None, Some((s, origin))) if text_format(format) => (NewKey::Text(s), origin),
        (None, Some((s, origin))) => {
            keys::check_new_passphrase(s.expose())
                .map_err(|e| CliError::usage(format!("the new passphrase ({origin}): {e}")))?;
            (NewKey::Passphrase(s), origin)
        }
        (None, None) if same_allowed && !text_format(format) => (
            NewKey::SamePassphrase,
            "the same passphrase or key file".into(),
        ),
        _ => {
            return Err(CliError::usage(
                "no new key given: use --new-key-file PATH, --generate-new-key PATH, \
                 --new-passphrase-file PATH or --new-passphrase-env VAR (never the key itself \
                 in argv)",
            ));
        }
    };
    refuse_same_key(&key.0, format, opts, kdf_raised)?;
    Ok(key)
}

/// A new key equal to the old one rotates nothing.
fn refuse_same_key(
    new: &NewKey,
    format: RekeyFormat,
    opts: &KeyOptions,
    kdf_raised: bool,
) -> Result<(), CliError> {
    let old = match format {
        RekeyFormat::PromptTrain => opts.prompttrain_key.as_ref(),
        RekeyFormat::Laravel => opts.app_key.as_ref(),
        _ => opts.passphrase.as_ref(),
    };
    let same = match (new, old) {
        (NewKey::Text(n) | NewKey::Passphrase(n), Some(o)) => {
            ct_eq_bytes(n.expose().trim().as_bytes(), o.expose().trim().as_bytes())
        }
        _ => false,
    };
    if same && !kdf_raised {
        return Err(CliError::usage(
            "the new key is the old one: nothing would change (give a different key)",
        ));
    }
    Ok(())
}

fn print_plan(p: &RekeyPlan) {
    println!("Rekey plan: {} ({} encrypted values)", p.store, p.total);
    for k in &p.under_keys {
        println!("  under {}: {} (to rekey)", k.key, k.cells);
    }
    println!("  already under the new key: {}", p.already_new);
    println!(
        "  under none of the keys (left as they are): {}",
        p.untouched.len()
    );
    for u in &p.untouched {
        println!("    {}: {}", u.location, u.error);
    }
    println!("  about {:.1} s", p.estimated_seconds);
}

fn print_report(r: &RekeyReport, json: bool, to_stderr: bool) -> Result<(), CliError> {
    // What taking the locks did: on stderr, so JSON on stdout stays clean.
    for n in &r.notices {
        eprintln!("credshift: {n}");
    }
    if json {
        return print_json(r);
    }
    let mut text = String::new();
    let mut line = |s: String| {
        text.push_str(&s);
        text.push('\n');
    };
    line(format!("Rekey {}: {}", r.migration_id, r.from));
    line(format!(
        "  total {}  rekeyed {}  already new {}  changed by the app {}  under no key {}  failed {}",
        r.total, r.copied, r.skipped, r.conflicts, r.invalid, r.failed
    ));
    for k in &r.under_keys {
        line(format!("  was under {}: {}", k.key, k.cells));
    }
    if let Some(reason) = &r.rollback_reason {
        line(format!("  rollback: {reason}"));
    }
    for w in &r.warnings {
        line(format!("  warning: {w}"));
    }
    if let Some(b) = &r.backup {
        line(format!(
            "  backup of the old ciphertexts: {} (its key file is beside it: with the old key \
             it reads every value; delete both once the application runs on the new key)",
            b.display()
        ));
    }
    for n in r.changed.iter().chain(&r.untouched) {
        line(format!("  left alone: {}: {}", n.location, n.error));
    }
    for f in &r.failures {
        line(format!("  failed: {}: {}", f.location, f.error));
    }
    line("Next steps:".into());
    for s in &r.next_steps {
        line(format!("  - {s}"));
    }
    if to_stderr {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    Ok(())
}

fn code_of(r: &RekeyReport) -> ExitCode {
    if r.failed > 0 || r.conflicts > 0 || r.status != engine::MigrationStatus::Completed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn progress() -> impl FnMut(RekeyProgress) {
    let on = std::io::stderr().is_terminal();
    move |p: RekeyProgress| {
        if on {
            eprint!("\rrekeyed {}/{}", p.done, p.total);
            if p.done == p.total {
                eprintln!();
            }
        }
    }
}

/// The application's new settings, for `--print-env` (never to a terminal).
fn print_env(format: RekeyFormat, new: &NewKey, opts: &KeyOptions) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let w = |out: &mut std::io::StdoutLock<'_>, s: &str| {
        out.write_all(s.as_bytes())
            .map_err(|e| CliError::failed(format!("writing to stdout: {e}")))
    };
    let NewKey::Text(new) = new else {
        return Ok(());
    };
    match format {
        RekeyFormat::PromptTrain => w(
            &mut out,
            &format!("CREDENTIAL_ENCRYPTION_KEY={}\n", new.expose().trim()),
        ),
        RekeyFormat::Laravel => {
            let mut previous: Vec<String> = opts
                .app_key
                .iter()
                .map(|k| k.expose().trim().to_string())
                .collect();
            if let Some(p) = keys::secret_from_env("APP_PREVIOUS_KEYS") {
                previous.extend(
                    p.expose()
                        .split(',')
                        .map(|k| k.trim().to_string())
                        .filter(|k| !k.is_empty()),
                );
            }
            let text = zeroize::Zeroizing::new(format!(
                "APP_KEY={}\nAPP_PREVIOUS_KEYS={}\n",
                new.expose().trim(),
                previous.join(",")
            ));
            previous.iter_mut().for_each(zeroize::Zeroize::zeroize);
            w(&mut out, &text)
        }
        _ => Ok(()),
    }
}

/// `rekey --forget-backup ID`: delete a verified rekey's backup.
fn cmd_forget_backup(g: &GlobalOpts, a: &RekeyArgs, id: &str) -> CliResult {
    // rekey_dir refuses an id that names another folder (`/`, `..`).
    let id = MigrationId(id.to_string());
    if rekey::rekey_dir(&g.state_dir(), &id).is_none() {
        return Err(CliError::usage(format!("{:?} is not a rekey", id.0)));
    }
    super::migrate::consent(
        a.yes,
        &format!("Delete the backup of rekey {id} (no rollback after this)"),
    )?;
    let removed = rekey::forget_backup(&g.state_dir(), &id)?;
    if a.json {
        print_json(&serde_json::json!({
            "operation": "forget_backup",
            "migration_id": id,
            "removed": removed,
        }))?;
    } else {
        for p in &removed {
            println!("deleted {}", p.display());
        }
        println!("Rekey {id}: backup deleted; it can no longer be rolled back.");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_rekey(g: &GlobalOpts, a: &RekeyArgs) -> CliResult {
    if let Some(id) = &a.forget_backup {
        return cmd_forget_backup(g, a, id);
    }
    let store = a
        .store
        .as_deref()
        .ok_or_else(|| CliError::usage("--store SPEC is required"))?;
    let spec: StoreSpec = parse_spec(store)?;
    let format = rekey::format_of(&spec)?;
    if a.print_env && (a.json || std::io::stdout().is_terminal()) {
        return Err(CliError::usage(
            "--print-env prints keys: refusing a terminal (pipe it into a file) and --json",
        ));
    }
    if !a.dry_run && !a.yes && !interactive() {
        return Err(CliError::usage(format!(
            "refusing to rekey {spec} without --yes: no terminal to ask (try --dry-run first)"
        )));
    }
    let mut opts = g.key_options()?;
    if let Some(n) = a.kdf_iterations {
        if text_format(format) {
            return Err(CliError::usage(
                "--kdf-iterations is credshift's own count; agent-prompttrain and Laravel fix theirs",
            ));
        }
        opts.kdf_iterations = n;
    }
    let n = &g.new_key;
    if let Some(p) = &a.generate_new_key
        && p.exists()
    {
        return Err(CliError::usage(format!(
            "--generate-new-key {}: already exists; refusing to overwrite a key file",
            p.display()
        )));
    }
    if a.dry_run {
        // A dry run writes nothing, not even the generated key.
        let (new, _) = match &a.generate_new_key {
            Some(_) => (rekey::keygen::throwaway_key(format)?, String::new()),
            None => {
                let raised = a.kdf_iterations.is_some();
                new_key(n, format, &opts, raised, raised)?
            }
        };
        let plan = rekey::dry_run(&spec, &opts, &new)?;
        if a.json {
            print_json(&plan)?;
        } else {
            print_plan(&plan);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A generated key stays in memory until the run holds the lock and
    // has checked the old key: a refused run leaves no file.
    let (new, origin, generated) = match &a.generate_new_key {
        Some(p) => {
            if n.new_key_file.is_some()
                || n.new_passphrase_file.is_some()
                || n.new_passphrase_env.is_some()
            {
                return Err(CliError::usage(
                    "give the new key one way: --new-key-file, --generate-new-key, \
                     --new-passphrase-file or --new-passphrase-env",
                ));
            }
            let (pending, new) = rekey::keygen::PendingKey::new(format, p)?;
            let origin = if text_format(format) {
                format!("file {}", p.display())
            } else {
                format!("key file {}", p.display())
            };
            (new, origin, Some(std::sync::Arc::new(pending)))
        }
        None => {
            let raised = a.kdf_iterations.is_some();
            let (new, origin) = new_key(n, format, &opts, raised, raised)?;
            (new, origin, None)
        }
    };
    if !a.yes {
        let plan = rekey::dry_run(&spec, &opts, &new)?;
        print_plan(&plan);
        super::migrate::consent(false, &format!("Rekey {spec} under the new key"))?;
    }
    let req = rekey::RekeyRequest {
        spec,
        new_key: new.clone(),
        new_key_origin: origin,
        generated,
    };
    // Ctrl-C or SIGTERM stops between batches and puts back what was
    // rekeyed, as the wizard's cancel and a migration's; a second signal
    // exits at once (130), leaving the journal to resume or roll back.
    let cancel = super::migrate::cancel_on_signals();
    let ran = rekey::run_cancellable(&req, &g.state_dir(), &opts, &mut progress(), &cancel);
    // The generated key file is named either way (a resume needs it), but a
    // rekey that was cancelled and put back must not read as if the new key
    // were now the one to use.
    let undone = matches!(&ran, Ok(r) if r.cancelled && r.rolled_back);
    if let Some(p) = &a.generate_new_key
        && p.exists()
    {
        if undone {
            eprintln!(
                "new key in {} was NOT applied: keep using the old key (the file may be deleted)",
                p.display()
            );
        } else {
            eprintln!("new key written to {} (mode 0600)", p.display());
        }
    }
    let report = ran?;
    say_cancelled(&report, "rekey");
    print_report(&report, a.json, a.print_env)?;
    if a.print_env && report.status == engine::MigrationStatus::Completed {
        print_env(format, &new, &opts)?;
    }
    Ok(code_of(&report))
}

/// One line for a rekey (or its resume) the user cancelled: the store is
/// under the old key again, or the report's first warning says what state
/// it is in (nothing changed by a resume stopped before its first batch, or
/// a rollback that did not finish) and what to run.
fn say_cancelled(report: &RekeyReport, what: &str) {
    if !report.cancelled {
        return;
    }
    let state = if report.rolled_back {
        "every value is under the old key again"
    } else {
        report
            .warnings
            .first()
            .map_or("the rollback is incomplete", String::as_str)
    };
    eprintln!(
        "{what} cancelled: {state} (see `credshift history --migration-id {}`)",
        report.migration_id
    );
}

/// `resume` of a rekey: the new key again from the `--new-...` flags.
pub fn cmd_resume(g: &GlobalOpts, id: &MigrationId, json: bool) -> CliResult {
    let mut opts = g.key_options()?;
    let st = rekey::RekeyState::load(
        &rekey::rekey_dir(&g.state_dir(), id)
            .ok_or_else(|| CliError::usage(format!("{id} is not a rekey")))?,
        id,
    )?;
    if st.status() == engine::MigrationStatus::Completed {
        // Nothing left to do, and so no key needed.
        let report = rekey::report_of(&st);
        print_report(&report, json, false)?;
        return Ok(code_of(&report));
    }
    let format = st
        .format
        .ok_or_else(|| CliError::failed(format!("rekey {id}: no format recorded")))?;
    // The count the rekey was started with, not today's default.
    if let Some(n) = st.kdf_iterations {
        opts.kdf_iterations = n;
    }
    let same = st.new_key_kind == Some(rekey::NewKeyKind::SamePassphrase);
    let (new, _) = new_key(
        &g.new_key,
        format,
        &opts,
        same || st.kdf_iterations.is_some(),
        same,
    )?;
    // As `rekey`: Ctrl-C or SIGTERM stops between batches and rolls the
    // whole rekey back (the store ends under the old key); a second signal
    // exits at once (130).
    let cancel = super::migrate::cancel_on_signals();
    let report =
        rekey::resume_cancellable(&g.state_dir(), id, &opts, &new, &mut progress(), &cancel)?;
    say_cancelled(&report, "resume of the rekey");
    print_report(&report, json, false)?;
    Ok(code_of(&report))
}

pub fn cmd_rollback(g: &GlobalOpts, id: &MigrationId, json: bool) -> CliResult {
    let opts = g.key_options()?;
    let report = rekey::rollback(&g.state_dir(), id, &opts)?;
    print_report(&report, json, false)?;
    Ok(if report.rolled_back {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `rollback --only GLOB` of a rekey: some rows back under the old key
/// (Laravel only; the others are refused with the reason).
pub fn cmd_rollback_only(g: &GlobalOpts, id: &MigrationId, glob: &str, json: bool) -> CliResult {
    let opts = g.key_options()?;
    let report = rekey::rollback_only(&g.state_dir(), id, &opts, glob)?;
    print_report(&report, json, false)?;
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn cmd_verify(g: &GlobalOpts, id: &MigrationId, json: bool) -> CliResult {
    let opts = g.key_options()?;
    let report = rekey::verify(&g.state_dir(), id, &opts)?;
    print_report(&report, json, false)?;
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
