//! Command-line interface: argument parsing and the non-interactive
//! subcommands. Exit codes: 0 done, 1 failed or rolled back, 2 usage or refused.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use credshift::credential::CredentialId;
use credshift::engine;
use credshift::keys;
use credshift::locations::default_locations;
use credshift::store::{self, StoreSpec};
use credshift::unlock::KeyOptions;

/// `println!` for the CLI's output, except that a closed stdout (the
/// reader of a pipe went away: `credshift history | head -1`) is not an
/// error: the line is dropped and the command carries on to its exit code.
/// Any other write error panics, as `println!` does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            assert!(
                e.kind() == std::io::ErrorKind::BrokenPipe,
                "failed printing to stdout: {e}"
            );
        }
    }};
}

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
    /// With no command: the wizard's store to read from, as `wizard --from`
    #[arg(long, value_name = "SPEC")]
    pub from: Option<String>,
    /// With no command: the wizard's store to write to, as `wizard --to`
    #[arg(long, value_name = "SPEC")]
    pub to: Option<String>,
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
    /// Read the Vault/OpenBao token from this file (mode 0600); else
    /// VAULT_TOKEN, BAO_TOKEN or ~/.vault-token
    #[arg(long, global = true, value_name = "PATH")]
    pub vault_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub new_key: rekey::NewKeyOpts,
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
        /// Undo only the items whose id matches this glob (`*`, `?`); the
        /// others stay migrated
        #[arg(long, value_name = "GLOB")]
        only: Option<String>,
        /// Print the result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Past migrations, or one migration item by item
    History {
        /// One migration: every planned item with its state, and the
        /// journal's timeline with each batch's ids (secret-free: fit to
        /// send to support)
        #[arg(long, value_name = "ID")]
        migration_id: Option<String>,
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
        /// Show what the restore would copy, replace or skip; write nothing
        #[arg(long)]
        dry_run: bool,
        /// A target value that differs from the backup's (changed since the
        /// backup): skip (report it) or overwrite (the value is backed up first)
        #[arg(long, value_name = "POLICY", value_enum, default_value_t = Policy::Skip)]
        on_conflict: Policy,
        /// Print the plan or result as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Serve the browser keychain page on the loopback addresses (Ctrl-C stops it)
    Web {
        /// The port to listen on; default: one fixed per user (21000 + uid % 8000),
        /// so the page and its keychain are found again. 0 picks a free one (a new
        /// origin, and so an empty keychain, every run)
        #[arg(long, value_name = "N")]
        port: Option<u16>,
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
    /// Re-encrypt a store in place under a new key (journaled; resume and rollback by id)
    Rekey(rekey::RekeyArgs),
    /// Shell completions (bash, zsh, fish) or the man page (man), on stdout
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// bash, zsh, fish, or man (a roff man page)
        #[arg(value_name = "SHELL", value_enum)]
        shell: Shell,
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
variable, CREDENTIAL_ENCRYPTION_KEY, APP_KEY, PGPASSWORD, VAULT_TOKEN, BAO_TOKEN) are removed from CMD's environment
unless --keep-env names them.

Example: credshift exec --from keyring:credshift --layout modelforge -- modelforge config show";

const COMPLETIONS_HELP: &str = "Examples:
  credshift completions bash > ~/.local/share/bash-completion/completions/credshift
  credshift completions zsh  > ~/.zfunc/_credshift
  credshift completions fish > ~/.config/fish/completions/credshift.fish
  credshift completions man  > ~/.local/share/man/man1/credshift.1";

/// `--on-conflict`: what to do with a target value that differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Report it and leave it
    Skip,
    /// Back it up, then replace it
    Overwrite,
}

impl From<Policy> for engine::ConflictPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Skip => engine::ConflictPolicy::Skip,
            Policy::Overwrite => engine::ConflictPolicy::Overwrite,
        }
    }
}

/// `exec --layout`: how credential ids become variable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    Plain,
    #[value(name = "modelforge")]
    ModelForge,
}

impl From<LayoutArg> for credshift::exec::Layout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Plain => credshift::exec::Layout::Plain,
            LayoutArg::ModelForge => credshift::exec::Layout::ModelForge,
        }
    }
}

/// `completions SHELL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    /// A roff man page
    Man,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// The store to read from (see "Store specs" in --help)
    #[arg(long, value_name = "SPEC")]
    pub from: String,
    /// How credential ids become variable names: plain or modelforge
    #[arg(long, value_name = "LAYOUT", value_enum, default_value_t = LayoutArg::Plain)]
    pub layout: LayoutArg,
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
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = Policy::Skip)]
    pub on_conflict: Policy,
    /// After verifying, delete the migrated items from the source
    #[arg(long)]
    pub delete_source: bool,
}

/// `CREDSHIFT_LOCK_WAIT=SECONDS`: how long to wait for a store's lock
/// another run holds (unset or not a number: each store's default). Read
/// here, once; the engine takes it as [`KeyOptions::lock_wait`].
fn lock_wait_from_env() -> Option<Duration> {
    std::env::var("CREDSHIFT_LOCK_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl GlobalOpts {
    /// Key material and store options from files and the environment.
    pub fn key_options(&self) -> Result<KeyOptions, CliError> {
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
        Ok(KeyOptions {
            passphrase,
            db_password,
            db_password_file: self.db_password_file.clone(),
            key_file: self.key_file.clone(),
            prompttrain_key,
            app_key,
            keyring_timeout: Duration::from_secs(self.keyring_timeout.max(1)),
            allow_weak_kdf: self.allow_weak_kdf,
            passphrase_env: self.passphrase_env.clone(),
            vault_token_file: self.vault_token_file.clone(),
            lock_wait: lock_wait_from_env(),
            ..KeyOptions::default()
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

pub fn parse_spec(s: &str) -> Result<StoreSpec, CliError> {
    Ok(s.parse::<StoreSpec>()?)
}

pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    // Stdout is line-buffered: unbuffered, a 100,000-item inventory made a
    // write(2) per JSON line (about a third of its time).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, v).map_err(|e| CliError::stdout(e.into()))?;
    writeln!(out).map_err(CliError::stdout)?;
    out.flush().map_err(CliError::stdout)
}

pub fn cmd_status(g: &GlobalOpts, extra: &[String], json: bool) -> CliResult {
    let opts = g.key_options()?;
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
            outln!("{}", r.spec);
            if c.available && !c.exists {
                outln!(
                    "  not found (created on first write)  writable: {}  persistent: {}  encrypted: {}",
                    flag(c.writable),
                    flag(c.persistent),
                    flag(c.encrypted_at_rest),
                );
            } else if c.available {
                outln!(
                    "  available: yes  readable: {}  writable: {}  persistent: {}  encrypted: {}  items: {}",
                    flag(c.readable),
                    flag(c.writable),
                    flag(c.persistent),
                    flag(c.encrypted_at_rest),
                    c.item_count.map_or("-".to_string(), |n| n.to_string())
                );
            } else {
                outln!(
                    "  available: no ({})",
                    c.reason.as_deref().unwrap_or("unknown reason")
                );
            }
            if let Some(note) = store::modelforge::in_use_note(spec, &mf) {
                outln!("  {note}");
            }
            for w in c.notes() {
                outln!("  warning: {w}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cmd_inventory(g: &GlobalOpts, from: &str, json: bool) -> CliResult {
    let spec = parse_spec(from)?;
    let opts = g.key_options()?;
    let store = store::open(&spec, &opts)?;
    if store.inventory_from_listing() {
        return print_listed_inventory(store.as_ref(), json);
    }
    // Classified item by item as printed: the credentials are held once,
    // never next to every item's preview and metadata.
    let scan = engine::inventory::scan_sorted(store.as_ref())?;
    let now = engine::inventory::now_ms();
    if json {
        print_json(&engine::inventory::InventoryStream {
            store: store.spec(),
            scan: &scan,
            now_ms: now,
        })?;
    } else {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let io = CliError::stdout;
        writeln!(out, "{} ({} items)", store.spec(), scan.credentials.len()).map_err(io)?;
        for c in &scan.credentials {
            let it = engine::inventory::classify(c, now);
            let status = match it.status {
                engine::ItemStatus::Eligible => "eligible".to_string(),
                engine::ItemStatus::Invalid => {
                    format!("invalid: {}", it.reason.as_deref().unwrap_or(""))
                }
                engine::ItemStatus::Expired => "expired".to_string(),
            };
            writeln!(
                out,
                "  {:<48} {:<14} {:<32} {}",
                it.id.to_string(),
                it.kind,
                it.preview,
                status
            )
            .map_err(io)?;
        }
        out.flush().map_err(io)?;
        for e in &scan.errors {
            eprintln!("{}: {}: {}", e.severity, e.location, e.error);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `inventory` of a store that lists without reading a value (Vault):
/// the same JSON and columns, previews saying the value was not read.
fn print_listed_inventory(store: &dyn store::Store, json: bool) -> CliResult {
    let inv = engine::inventory::from_listing(store, engine::inventory::now_ms())?;
    if json {
        print_json(&inv)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let io = CliError::stdout;
    writeln!(out, "{} ({} items)", inv.store, inv.items.len()).map_err(io)?;
    for it in &inv.items {
        let status = match it.status {
            engine::ItemStatus::Expired => "expired",
            _ => "listed",
        };
        writeln!(
            out,
            "  {:<48} {:<14} {:<32} {status}",
            it.id.to_string(),
            it.kind,
            it.preview
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    for e in &inv.errors {
        eprintln!("{}: {}: {}", e.severity, e.location, e.error);
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
        .map_err(|e: credshift::credential::BadId| CliError::usage(e.to_string()))?;
    let opts = g.key_options()?;
    let store = store::open(&spec, &opts)?;
    match store.read(&id)? {
        Some(c) => {
            let mut out = std::io::stdout().lock();
            out.write_all(c.secret.expose().as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .and_then(|_| out.flush())
                .map_err(CliError::stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        None => Err(CliError::failed(format!("{id}: not found in {spec}"))),
    }
}

/// Read every documented test aid once ([`credshift::test_aids`]), say on
/// stderr which are active (or ignored), and install them for the library.
/// A malformed `CREDSHIFT_FAULTS` is refused (exit 2) before anything runs.
pub fn install_test_aids() -> Result<(), CliError> {
    let (aids, warnings) = credshift::test_aids::TestAids::from_env(|name| std::env::var_os(name))
        .map_err(CliError::usage)?;
    for w in warnings {
        eprintln!("{w}");
    }
    credshift::test_aids::install(aids);
    Ok(())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> CliResult {
    let g = &cli.global;
    if cli.command.is_some() && (cli.from.is_some() || cli.to.is_some()) {
        // `credshift --from A migrate --from B` would silently drop one:
        // the top-level pair belongs to the wizard alone.
        return Err(CliError::usage(
            "--from/--to before the command are the wizard's (`credshift --from SPEC --to SPEC`); \
             give them after the command instead",
        ));
    }
    match cli.command {
        Some(Command::Status { stores, json }) => cmd_status(g, &stores, json),
        Some(Command::Inventory { from, json }) => cmd_inventory(g, &from, json),
        Some(Command::Get { from, id, reveal }) => cmd_get(g, &from, &id, reveal),
        None => {
            if credshift::tui::on_terminal() {
                launch::run_wizard(g, cli.from.as_deref(), cli.to.as_deref())
            } else {
                Err(CliError::usage(
                    "no command given and not on a terminal: the wizard needs one; \
                     see `credshift --help` for the commands",
                ))
            }
        }
        Some(Command::Wizard { from, to }) => launch::run_wizard(g, from.as_deref(), to.as_deref()),
        Some(Command::Recover) => launch::run_recover(g),
        Some(Command::Demo) => launch::run_demo(g),
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
            only,
            json,
        }) => cmd_rollback(g, &migration_id, yes, only.as_deref(), json),
        Some(Command::History { migration_id, json }) => {
            cmd_history(g, migration_id.as_deref(), json)
        }
        Some(Command::Backup { from, out, key_out }) => {
            cmd_backup(g, &from, &out, key_out.as_deref())
        }
        Some(Command::Restore {
            backup,
            to,
            yes,
            dry_run,
            on_conflict,
            json,
        }) => cmd_restore(
            g,
            &backup,
            &to,
            &RestoreFlags {
                yes,
                dry_run,
                on_conflict,
                json,
            },
        ),
        Some(Command::Web { port }) => cmd_web(port, &g.state_dir()),
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
        Some(Command::Rekey(args)) => rekey::cmd_rekey(g, &args),
        Some(Command::Completions { shell }) => cmd_completions(shell),
    }
}

mod error;
mod exec;
mod launch;
mod migrate;
mod rekey;
mod transfer;

pub use error::{CliError, CliResult};
pub use exec::{cmd_completions, cmd_exec};
use migrate::interactive;
pub use migrate::{
    RestoreFlags, cmd_backup, cmd_history, cmd_migrate, cmd_restore, cmd_resume, cmd_rollback,
    cmd_verify,
};
pub use transfer::{cmd_qr_draw, cmd_qr_join, cmd_web};
