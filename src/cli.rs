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
         CREDSHIFT_PASSPHRASE, CREDENTIAL_ENCRYPTION_KEY (agent-prompttrain) and APP_KEY (Laravel).",
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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Guided migration in the terminal
    Wizard {
        #[arg(long, value_name = "SPEC")]
        from: Option<String>,
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
        #[arg(long)]
        json: bool,
    },
    /// List a store's credentials, masked
    Inventory {
        #[arg(long, value_name = "SPEC")]
        from: String,
        #[arg(long)]
        json: bool,
    },
    /// Print one raw secret and a newline (refuses a terminal without --reveal)
    Get {
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
        #[arg(long)]
        json: bool,
    },
    /// Finish an interrupted migration
    Resume {
        #[arg(long, value_name = "ID")]
        migration_id: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Undo a migration: remove what it wrote, restore what it overwrote
    Rollback {
        #[arg(long, value_name = "ID")]
        migration_id: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Past migrations
    History {
        #[arg(long)]
        json: bool,
    },
    /// Write an encrypted backup of a store
    Backup {
        #[arg(long, value_name = "SPEC")]
        from: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore an encrypted backup into a store
    Restore {
        #[arg(long, value_name = "FILE")]
        backup: PathBuf,
        #[arg(long, value_name = "SPEC")]
        to: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    #[arg(long, value_name = "SPEC")]
    pub from: String,
    #[arg(long, value_name = "SPEC")]
    pub to: String,
    /// Show the plan; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Consent to the changes (required without a terminal)
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
    /// What to do when the target holds a different value
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
        Ok(OpenOptions {
            passphrase,
            key_file: self.key_file.clone(),
            prompttrain_key,
            app_key,
            keyring_timeout: Duration::from_secs(self.keyring_timeout.max(1)),
            allow_weak_kdf: self.allow_weak_kdf,
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
    if let Some(cfg) = dirs::home_dir() {
        specs.push(StoreSpec::ModelForge(
            cfg.join(".config/model-forge/config.json"),
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
        .into_iter()
        .map(|spec| engine::assess::probe_spec(&spec, &opts))
        .collect();
    if json {
        print_json(&serde_json::json!({ "stores": reports }))?;
    } else {
        for r in &reports {
            let c = &r.capability;
            let flag = |b: bool| if b { "yes" } else { "no" };
            println!("{}", r.spec);
            if c.available {
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

/// Run a parsed command line.
pub fn run(cli: Cli) -> CliResult {
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
        Some(other) => Err(CliError::usage(format!(
            "`{}` is not available in this build yet",
            command_name(&other)
        ))),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Wizard { .. } => "wizard",
        Command::Recover => "recover",
        Command::Demo => "demo",
        Command::Status { .. } => "status",
        Command::Inventory { .. } => "inventory",
        Command::Get { .. } => "get",
        Command::Migrate(_) => "migrate",
        Command::Verify { .. } => "verify",
        Command::Resume { .. } => "resume",
        Command::Rollback { .. } => "rollback",
        Command::History { .. } => "history",
        Command::Backup { .. } => "backup",
        Command::Restore { .. } => "restore",
    }
}
