//! Command-line interface: argument parsing and the non-interactive
//! subcommands. Exit codes: 0 done, 1 failed or rolled back, 2 usage or refused.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::credential::CredentialId;
use crate::engine;
use crate::keys;
use crate::store::{self, OpenOptions, StoreSpec};

#[derive(Parser, Debug)]
#[command(
    name = "credshift",
    version,
    about = "Move stored credentials between storage backends without losing or leaking one",
    after_help = store_help()
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Option<Command>,
}

fn store_help() -> String {
    let mut s = String::from("Store specs:\n");
    for (spec, what) in store::SCHEMES {
        s.push_str(&format!("  {spec:<32} {what}\n"));
    }
    s.push_str(
        "\nSecrets never come through argv: use --passphrase-file, --passphrase-env,\n\
         CREDSHIFT_PASSPHRASE, CREDENTIAL_ENCRYPTION_KEY (agent-prompttrain) and APP_KEY (Laravel);\n\
         a PostgreSQL password through PGPASSWORD, ~/.pgpass or --db-password-file.",
    );
    s
}

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// Where journals, backups and the audit log live
    /// [default: $CREDSHIFT_STATE_DIR, else the platform state dir + credshift/]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Read credshift's passphrase from the first line of this file
    #[arg(long, global = true, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,
    /// Read credshift's passphrase from this environment variable
    #[arg(long, global = true, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// A 32-byte key file for encrypted stores, used when no passphrase is given
    #[arg(long, global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Read agent-prompttrain's CREDENTIAL_ENCRYPTION_KEY from this file
    #[arg(long, global = true, value_name = "PATH")]
    pub prompttrain_key_file: Option<PathBuf>,
    /// Read Laravel's APP_KEY from this file
    #[arg(long, global = true, value_name = "PATH")]
    pub app_key_file: Option<PathBuf>,
    /// Timeout for each OS keyring call, in seconds
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub keyring_timeout: u64,
    /// Accept encrypted files with fewer than 100,000 PBKDF2 iterations
    #[arg(long, global = true)]
    pub allow_weak_kdf: bool,
    /// Read the PostgreSQL password from the first line of this file (mode
    /// 0600); PGPASSWORD and ~/.pgpass (PGPASSFILE) work too
    #[arg(long, global = true, value_name = "PATH")]
    pub db_password_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Guided migration in the terminal
    Wizard {
        /// The store to read from (see "Store specs" in --help)
        #[arg(long, value_name = "SPEC")]
        from: Option<String>,
        /// The store to write to (see "Store specs" in --help)
        #[arg(long, value_name = "SPEC")]
        to: Option<String>,
    },
    /// The wizard's recovery path: history, resume, rollback, restore
    Recover,
    /// The wizard on bundled demo data, into an encrypted file in a temp dir
    Demo,
    /// Capability assessment of the default locations and any --store given
    Status {
        /// Also probe this store (repeatable)
        #[arg(long = "store", value_name = "SPEC")]
        stores: Vec<String>,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// List a store's credentials, masked
    Inventory {
        /// The store to read from (see "Store specs" in --help)
        #[arg(long, value_name = "SPEC")]
        from: String,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Print one raw secret and a newline (refuses a terminal without --reveal)
    Get {
        /// The store to read from (see "Store specs" in --help)
        #[arg(long, value_name = "SPEC")]
        from: String,
        /// NAMESPACE/NAME
        id: String,
        /// Allow printing to a terminal
        #[arg(long)]
        reveal: bool,
    },
    /// Copy credentials from one store to another
    Migrate(MigrateArgs),
    /// Read back what a migration wrote and compare
    Verify {
        #[arg(long, value_name = "ID")]
        migration_id: String,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Finish an interrupted migration
    Resume {
        #[arg(long, value_name = "ID")]
        migration_id: String,
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Undo a migration: remove what it wrote, restore what it overwrote
    Rollback {
        #[arg(long, value_name = "ID")]
        migration_id: String,
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Past migrations
    History {
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Write an encrypted backup of a store
    Backup {
        /// The store to read from (see "Store specs" in --help)
        #[arg(long, value_name = "SPEC")]
        from: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Without a passphrase: write the generated key file here [default:
        /// the state dir's backup-keys/, where `restore` finds it]
        #[arg(long, value_name = "PATH")]
        key_out: Option<PathBuf>,
    },
    /// Restore an encrypted backup into a store
    Restore {
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
        /// The store to write to (see "Store specs" in --help)
        #[arg(long, value_name = "SPEC")]
        to: String,
        #[arg(long)]
        yes: bool,
    },
    /// Serve the browser keychain page on 127.0.0.1 (Ctrl-C stops it)
    Web {
        /// The port to listen on (0 picks a free one)
        #[arg(long, value_name = "N", default_value_t = 0)]
        port: u16,
    },
    /// A bundle as numbered QR codes (terminal and PNG), or the codes back
    #[command(group(clap::ArgGroup::new("qr_mode").required(true).args(["bundle", "join"])))]
    Qr {
        /// The bundle to draw
        #[arg(long, value_name = "PATH")]
        bundle: Option<PathBuf>,
        /// Also write one PNG per part into this directory
        #[arg(long, value_name = "DIR", requires = "bundle")]
        png: Option<PathBuf>,
        /// Rebuild a bundle from its parts: the scanned texts, or files holding them
        #[arg(long, value_name = "PART", num_args = 1.., conflicts_with = "bundle")]
        join: Vec<String>,
        /// Write the rebuilt bundle here (default: stdout)
        #[arg(long, value_name = "PATH", requires = "join")]
        out: Option<PathBuf>,
    },
    /// Run CMD with the store's credentials in its environment (secrets never in argv or output)
    #[command(after_help = EXEC_HELP)]
    Exec(ExecArgs),
    /// Shell completions (bash, zsh, fish) or the man page (man), on stdout
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// bash, zsh, fish, or man (a roff man page)
        #[arg(value_name = "SHELL", value_parser = ["bash", "zsh", "fish", "man"])]
        shell: String,
    },
}

const EXEC_HELP: &str = "Layouts (--layout):
  plain       env/NAME -> NAME; any other NAMESPACE/NAME -> NAMESPACE_NAME upper-cased,
              with '-', '.', ':' and '/' turned into '_' (openai/api_key -> OPENAI_API_KEY,
              account:acc_x/oauth_access_token -> ACCOUNT_ACC_X_OAUTH_ACCESS_TOKEN).
              An id that gives no valid name ([A-Za-z_][A-Za-z0-9_]*) is an error.
  modelforge  P/api_key -> MODELFORGE_<P>_API_KEY, P/access_token -> MODELFORGE_<P>_ACCESS_TOKEN
              (<P> upper-cased, '-' -> '_'), the variables model-forge reads before its
              config file. Other fields (a refresh token, ...) are left out and named on stderr.

Two credentials that map to one variable are an error before CMD starts (narrow with --only).
CMD's exit code is credshift's (128+N when a signal N ended it; 127 when CMD is not found,
126 when it cannot be run); SIGINT, SIGTERM and SIGHUP are passed on. credshift's own unlock secrets (CREDSHIFT_PASSPHRASE, the --passphrase-env
variable, CREDENTIAL_ENCRYPTION_KEY, APP_KEY, PGPASSWORD) are removed from CMD's environment
unless --keep-env names them.

Example: credshift exec --from keyring:credshift --layout modelforge -- modelforge config show";

const COMPLETIONS_HELP: &str = "Examples:
  credshift completions bash > ~/.local/share/bash-completion/completions/credshift
  credshift completions zsh  > ~/.zfunc/_credshift
  credshift completions fish > ~/.config/fish/completions/credshift.fish
  credshift completions man  > ~/.local/share/man/man1/credshift.1";

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// The store to read from (see "Store specs" in --help)
    #[arg(long, value_name = "SPEC")]
    pub from: String,
    /// How credential ids become variable names: plain or modelforge
    #[arg(long, value_name = "LAYOUT", default_value = "plain", value_parser = ["plain", "modelforge"])]
    pub layout: String,
    /// Only credentials whose id matches this glob (`*`, `?`; repeatable)
    #[arg(long = "only", value_name = "GLOB")]
    pub only: Vec<String>,
    /// Pass this unlock variable on to CMD after all (repeatable)
    #[arg(long = "keep-env", value_name = "VAR")]
    pub keep_env: Vec<String>,
    /// The command and its arguments, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// The store to read from (see "Store specs" in --help)
    #[arg(long, value_name = "SPEC")]
    pub from: String,
    /// The store to write to (see "Store specs" in --help)
    #[arg(long, value_name = "SPEC")]
    pub to: String,
    /// Show the plan; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Consent to the changes (required without a terminal)
    #[arg(long)]
    pub yes: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// What to do when the target holds a different value: skip (report it) or
    /// overwrite (the old value is backed up first)
    #[arg(long, value_name = "POLICY", default_value = "skip")]
    pub on_conflict: String,
    /// After verifying, delete the migrated items from the source
    #[arg(long)]
    pub delete_source: bool,
}

/// An error at the CLI's top: the message, and the exit code it means.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<crate::error::StoreError> for CliError {
    fn from(e: crate::error::StoreError) -> Self {
        CliError::failed(e.to_string())
    }
}

impl From<store::BadSpec> for CliError {
    fn from(e: store::BadSpec) -> Self {
        CliError::usage(e.to_string())
    }
}

pub type CliResult = Result<ExitCode, CliError>;

impl GlobalOpts {
    /// Key material and store options from files and the environment.
    pub fn open_options(&self) -> Result<OpenOptions, CliError> {
        for (flag, path) in [
            ("--passphrase-file", &self.passphrase_file),
            ("--key-file", &self.key_file),
            ("--prompttrain-key-file", &self.prompttrain_key_file),
            ("--app-key-file", &self.app_key_file),
        ] {
            if let Some(p) = path {
                keys::require_private_file(p, flag).map_err(CliError::usage)?;
            }
        }
        let passphrase = keys::resolve_passphrase(
            self.passphrase_file.as_deref(),
            self.passphrase_env.as_deref(),
        )?;
        let prompttrain_key = match &self.prompttrain_key_file {
            Some(p) => Some(keys::secret_from_file(p)?),
            None => keys::secret_from_env(keys::ENV_PROMPTTRAIN_KEY),
        };
        let app_key = match &self.app_key_file {
            Some(p) => Some(keys::secret_from_file(p)?),
            None => keys::secret_from_env(keys::ENV_APP_KEY),
        };
        let db_password = match &self.db_password_file {
            Some(p) => Some(store::pgurl::password_from_file(p).map_err(CliError::usage)?),
            None => None,
        };
        Ok(OpenOptions {
            passphrase,
            db_password,
            db_password_file: self.db_password_file.clone(),
            key_file: self.key_file.clone(),
            prompttrain_key,
            app_key,
            keyring_timeout: Duration::from_secs(self.keyring_timeout.max(1)),
            allow_weak_kdf: self.allow_weak_kdf,
            passphrase_env: self.passphrase_env.clone(),
            ..OpenOptions::default()
        })
    }

    /// `--state-dir`, else `CREDSHIFT_STATE_DIR`, else the platform state dir.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(d) = &self.state_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("CREDSHIFT_STATE_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .unwrap_or_else(std::env::temp_dir)
            .join("credshift")
    }
}

impl From<engine::EngineError> for CliError {
    fn from(e: engine::EngineError) -> Self {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

pub fn parse_spec(s: &str) -> Result<StoreSpec, CliError> {
    Ok(s.parse::<StoreSpec>()?)
}

fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).map_err(|e| CliError::failed(e.to_string()))?;
    writeln!(out).map_err(|e| CliError::failed(e.to_string()))
}

/// The stores `status` probes when none is named: where a user would have them.
pub fn default_locations() -> Vec<StoreSpec> {
    let mut specs = Vec::new();
    // model-forge's two places: the local one wins when it exists.
    specs.push(StoreSpec::ModelForge(PathBuf::from(
        store::modelforge::LOCAL_CONFIG,
    )));
    if let Some(home) = dirs::home_dir() {
        specs.push(StoreSpec::ModelForge(
            home.join(store::modelforge::GLOBAL_CONFIG),
        ));
    }
    specs.push(StoreSpec::Dotenv(PathBuf::from(".env")));
    specs.push(StoreSpec::Keyring("credshift".into()));
    specs
}

pub fn cmd_status(g: &GlobalOpts, extra: &[String], json: bool) -> CliResult {
    let opts = g.open_options()?;
    let mut specs = default_locations();
    for s in extra {
        specs.push(parse_spec(s)?);
    }
    let reports: Vec<engine::StoreReport> = specs
        .iter()
        .map(|spec| engine::assess::probe_spec(spec, &opts))
        .collect();
    let mf = store::modelforge::ConfigLocations::here();
    if json {
        print_json(&serde_json::json!({
            "stores": reports,
            "modelforge": {
                "local": mf.local,
                "global": mf.global,
                "in_use": mf.in_use,
            },
        }))?;
    } else {
        for (spec, r) in specs.iter().zip(&reports) {
            let c = &r.capability;
            let flag = |b: bool| if b { "yes" } else { "no" };
            println!("{}", r.spec);
            if c.available && !c.exists {
                println!(
                    "  not found (created on first write)  writable: {}  persistent: {}  encrypted: {}",
                    flag(c.writable),
                    flag(c.persistent),
                    flag(c.encrypted_at_rest),
                );
            } else if c.available {
                println!(
                    "  available: yes  readable: {}  writable: {}  persistent: {}  encrypted: {}  items: {}",
                    flag(c.readable),
                    flag(c.writable),
                    flag(c.persistent),
                    flag(c.encrypted_at_rest),
                    c.item_count.map_or("-".to_string(), |n| n.to_string())
                );
            } else {
                println!(
                    "  available: no ({})",
                    c.reason.as_deref().unwrap_or("unknown reason")
                );
            }
            if let StoreSpec::ModelForge(path) = spec {
                if mf.is_in_use(path) {
                    println!("  model-forge run here reads this file");
                } else if mf.shadowed_by(path).is_none() {
                    println!(
                        "  model-forge run here reads {}, not this file",
                        mf.in_use.display()
                    );
                }
            }
            for w in &c.warnings {
                println!("  warning: {w}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_inventory(g: &GlobalOpts, from: &str, json: bool) -> CliResult {
    let spec = parse_spec(from)?;
    let opts = g.open_options()?;
    let store = store::open(&spec, &opts)?;
    let (inv, _creds) = engine::inventory::inventory(store.as_ref(), engine::inventory::now_ms())?;
    if json {
        print_json(&inv)?;
    } else {
        println!("{} ({} items)", inv.store, inv.items.len());
        for it in &inv.items {
            let status = match it.status {
                engine::ItemStatus::Eligible => "eligible".to_string(),
                engine::ItemStatus::Invalid => {
                    format!("invalid: {}", it.reason.as_deref().unwrap_or(""))
                }
                engine::ItemStatus::Expired => "expired".to_string(),
            };
            println!(
                "  {:<48} {:<14} {:<32} {}",
                it.id.to_string(),
                it.kind,
                it.preview,
                status
            );
        }
        for e in &inv.errors {
            eprintln!("error: {}: {}", e.location, e.error);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_get(g: &GlobalOpts, from: &str, id: &str, reveal: bool) -> CliResult {
    if std::io::stdout().is_terminal() && !reveal {
        return Err(CliError::usage(
            "refusing to print a secret to a terminal; pipe the output or pass --reveal",
        ));
    }
    let spec = parse_spec(from)?;
    let id: CredentialId = id
        .parse()
        .map_err(|e: crate::credential::BadId| CliError::usage(e.to_string()))?;
    let opts = g.open_options()?;
    let store = store::open(&spec, &opts)?;
    match store.read(&id)? {
        Some(c) => {
            let mut out = std::io::stdout().lock();
            out.write_all(c.secret.expose().as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .and_then(|_| out.flush())
                .map_err(|e| CliError::failed(format!("writing to stdout: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        None => Err(CliError::failed(format!("{id}: not found in {spec}"))),
    }
}

/// `CREDSHIFT_PANIC_AFTER_DRAW`: active only when exactly `1`.
pub fn panic_after_draw() -> bool {
    std::env::var_os("CREDSHIFT_PANIC_AFTER_DRAW").is_some_and(|v| v == "1")
}

/// The documented test aids act only on their exact values and say so on
/// stderr while active: `CREDSHIFT_FAULTS` (malformed: refused, exit 2),
/// `CREDSHIFT_CRASH_AT` and `CREDSHIFT_PANIC_AFTER_DRAW` (malformed:
/// ignored, with a message).
pub fn check_test_aids() -> Result<(), CliError> {
    if let Some(v) = std::env::var_os("CREDSHIFT_FAULTS") {
        let v = v.to_string_lossy();
        match crate::store::faults::Faults::parse_strict(&v) {
            Ok(_) => eprintln!(
                "credshift: warning: CREDSHIFT_FAULTS={v} is set (a test aid): matching store \
                 operations fail on purpose"
            ),
            Err(e) => {
                return Err(CliError::usage(format!(
                    "CREDSHIFT_FAULTS (a test aid) is malformed: {e}; unset it or use \
                     OP:GLOB[,OP:GLOB...] with OP write, read or delete"
                )));
            }
        }
    }
    let _ = engine::journal::crash_at();
    if let Some(v) = std::env::var_os("CREDSHIFT_PANIC_AFTER_DRAW") {
        if panic_after_draw() {
            eprintln!(
                "credshift: warning: CREDSHIFT_PANIC_AFTER_DRAW=1 is set (a test aid): the \
                 wizard panics after drawing its first screen"
            );
        } else {
            eprintln!(
                "credshift: warning: CREDSHIFT_PANIC_AFTER_DRAW is set to {:?}, not 1; ignored",
                v.to_string_lossy()
            );
        }
    }
    Ok(())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> CliResult {
    check_test_aids()?;
    let g = &cli.global;
    match cli.command {
        Some(Command::Status { stores, json }) => cmd_status(g, &stores, json),
        Some(Command::Inventory { from, json }) => cmd_inventory(g, &from, json),
        Some(Command::Get { from, id, reveal }) => cmd_get(g, &from, &id, reveal),
        None => {
            if crate::tui::on_terminal() {
                crate::tui::run_wizard(g, None, None)
            } else {
                Err(CliError::usage(
                    "no command given and not on a terminal: the wizard needs one; \
                     see `credshift --help` for the commands",
                ))
            }
        }
        Some(Command::Wizard { from, to }) => {
            crate::tui::run_wizard(g, from.as_deref(), to.as_deref())
        }
        Some(Command::Recover) => crate::tui::run_recover(g),
        Some(Command::Demo) => crate::tui::run_demo(g),
        Some(Command::Migrate(args)) => cmd_migrate(g, &args),
        Some(Command::Verify { migration_id, json }) => cmd_verify(g, &migration_id, json),
        Some(Command::Resume {
            migration_id,
            yes,
            json,
        }) => cmd_resume(g, &migration_id, yes, json),
        Some(Command::Rollback {
            migration_id,
            yes,
            json,
        }) => cmd_rollback(g, &migration_id, yes, json),
        Some(Command::History { json }) => cmd_history(g, json),
        Some(Command::Backup { from, out, key_out }) => {
            cmd_backup(g, &from, &out, key_out.as_deref())
        }
        Some(Command::Restore { backup, to, yes }) => cmd_restore(g, &backup, &to, yes),
        Some(Command::Web { port }) => cmd_web(port),
        Some(Command::Qr {
            bundle,
            png,
            join,
            out,
        }) => match bundle {
            Some(b) => cmd_qr_draw(&b, png.as_deref()),
            None => cmd_qr_join(&join, out.as_deref()),
        },
        Some(Command::Exec(args)) => cmd_exec(g, &args),
        Some(Command::Completions { shell }) => cmd_completions(&shell),
    }
}

// ---- migration commands -------------------------------------------------

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

fn interactive() -> bool {
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
        match e.error.strip_prefix("warning: ") {
            Some(w) => eprintln!("warning: {}: {w}", e.location),
            None => eprintln!("error: {}: {}", e.location, e.error),
        }
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
    r.total == 0
        && r.warnings
            .iter()
            .any(|w| w.starts_with(engine::plan::UNREADABLE))
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
        eprintln!("error: {}: {}", e.location, e.error);
    }
    Ok(if summary.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn cmd_restore(g: &GlobalOpts, backup: &std::path::Path, to: &str, yes: bool) -> CliResult {
    let spec = parse_spec(to)?;
    consent(
        yes,
        &format!(
            "restore {} into {spec}, overwriting what differs",
            backup.display()
        ),
    )?;
    let opts = g.open_options()?;
    let report = engine::restore(backup, &spec, &g.state_dir(), &opts)?;
    print_report(&report, false)?;
    Ok(report_code(&report))
}

// ---- browser keychain and QR transfer ----------------------------------

pub fn cmd_web(port: u16) -> CliResult {
    let listener = crate::web::bind(port)
        .map_err(|e| CliError::failed(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let url = crate::web::url(&listener).map_err(|e| CliError::failed(e.to_string()))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| CliError::failed(format!("cannot watch for Ctrl-C: {e}")))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{url}")
            .and_then(|_| out.flush())
            .map_err(|e| CliError::failed(format!("writing to stdout: {e}")))?;
    }
    if std::io::stderr().is_terminal() {
        eprintln!("serving the browser keychain page on 127.0.0.1 only; Ctrl-C stops it");
    }
    crate::web::serve(listener, stop).map_err(|e| CliError::failed(format!("serving: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_qr_draw(bundle: &std::path::Path, png_dir: Option<&std::path::Path>) -> CliResult {
    let location = bundle.display().to_string();
    let bytes = std::fs::read(bundle)
        .map_err(|e| CliError::failed(crate::error::StoreError::io(bundle, e).to_string()))?;
    // Only a sealed credshift bundle goes into a QR code, never a file of
    // clear text given by mistake.
    let env = crate::crypto::envelope::Envelope::parse(&bytes, &location, true)?;
    let parts = crate::qr::split(&bytes);
    let total = parts.len();
    let id = crate::qr::bundle_id(&bytes);
    if let Some(dir) = png_dir {
        crate::fsutil::ensure_private_dir(dir)?;
    }
    let pause = interactive() && std::io::stdout().is_terminal() && total > 1;
    let mut out = std::io::stdout().lock();
    let io_err = |e: std::io::Error| CliError::failed(format!("writing to stdout: {e}"));
    for (i, text) in parts.iter().enumerate() {
        let code = crate::qr::encode(text, i + 1).map_err(|e| CliError::failed(e.to_string()))?;
        if let Some(dir) = png_dir {
            let path = dir.join(crate::qr::png_name(i + 1, total));
            crate::fsutil::atomic_write(&path, &crate::qr::to_png(&code))?;
        }
        writeln!(out, "credshift bundle {id}, part {} of {total}", i + 1).map_err(io_err)?;
        writeln!(out, "{}", crate::qr::to_terminal(&code)).map_err(io_err)?;
        if pause && i + 1 < total {
            write!(out, "Enter for part {} of {total}... ", i + 2).map_err(io_err)?;
            out.flush().map_err(io_err)?;
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError::failed(format!("reading stdin: {e}")))?;
        }
    }
    if let Some(dir) = png_dir {
        writeln!(out, "{total} PNG files in {}", dir.display()).map_err(io_err)?;
    }
    if matches!(env.params(), crate::crypto::envelope::KdfParams::None) {
        eprintln!(
            "warning: this bundle is sealed with a key file; the other device needs that key file too"
        );
    }
    out.flush().map_err(io_err)?;
    Ok(ExitCode::SUCCESS)
}

/// Part texts from `--join` arguments: a text that starts with the part
/// marker is a part; anything else is a file holding one part per line.
fn qr_part_texts(args: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut texts = Vec::new();
    for (n, arg) in args.iter().enumerate() {
        if arg.trim_start().starts_with(crate::qr::PREFIX) {
            texts.push((format!("argument {}", n + 1), arg.clone()));
            continue;
        }
        let path = std::path::Path::new(arg);
        let content = crate::fsutil::read_text(path)?;
        let mut found = false;
        for (l, line) in content.lines().enumerate() {
            if !line.trim().is_empty() {
                texts.push((
                    format!("{} line {}", path.display(), l + 1),
                    line.to_string(),
                ));
                found = true;
            }
        }
        if !found {
            return Err(CliError::usage(format!(
                "{}: holds no QR part",
                path.display()
            )));
        }
    }
    Ok(texts)
}

pub fn cmd_qr_join(args: &[String], out: Option<&std::path::Path>) -> CliResult {
    let texts = qr_part_texts(args)?;
    let bundle = crate::qr::join(texts.iter().map(|(o, t)| (o.clone(), t.as_str())))
        .map_err(|e| CliError::failed(e.to_string()))?;
    match out {
        Some(path) => {
            crate::fsutil::atomic_write(path, &bundle)?;
            eprintln!(
                "rebuilt bundle {} ({} bytes) in {}",
                crate::qr::bundle_id(&bundle),
                bundle.len(),
                path.display()
            );
        }
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(&bundle)
                .and_then(|_| so.flush())
                .map_err(|e| CliError::failed(format!("writing to stdout: {e}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- exec and completions ------------------------------------------------

pub fn cmd_exec(g: &GlobalOpts, a: &ExecArgs) -> CliResult {
    use crate::exec;
    let layout: exec::Layout = a.layout.parse().map_err(CliError::usage)?;
    let spec = parse_spec(&a.from)?;
    let opts = g.open_options()?;
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
        Err(e) => Err(CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }),
    }
}

pub fn cmd_completions(shell: &str) -> CliResult {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    let shell = match shell {
        "bash" => clap_complete::Shell::Bash,
        "zsh" => clap_complete::Shell::Zsh,
        "fish" => clap_complete::Shell::Fish,
        "man" => {
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| CliError::failed(format!("writing the man page: {e}")))?;
            return Ok(ExitCode::SUCCESS);
        }
        other => {
            return Err(CliError::usage(format!(
                "completions takes bash, zsh, fish or man, not {other:?}"
            )));
        }
    };
    clap_complete::generate(shell, &mut cmd, "credshift", &mut out);
    Ok(ExitCode::SUCCESS)
}
