//! Unlock options: the key material and KDF policy a store or an envelope
//! may need when opened. Both `crypto` and `store` use them, so neither has
//! to name the other for it.

use std::path::PathBuf;
use std::time::Duration;

use crate::credential::Secret;

/// Key material and options a store may need when opened. Filled by the CLI
/// from files and environment variables, never from argv.
#[derive(Clone, Debug)]
pub struct KeyOptions {
    /// credshift's own passphrase (`--passphrase-file`, `--passphrase-env`,
    /// `CREDSHIFT_PASSPHRASE`, or a prompt).
    pub passphrase: Option<Secret>,
    /// A 32-byte key file, used when no passphrase is given.
    pub key_file: Option<PathBuf>,
    /// agent-prompttrain's `CREDENTIAL_ENCRYPTION_KEY`.
    pub prompttrain_key: Option<Secret>,
    /// Laravel's `APP_KEY` (`base64:...`).
    pub app_key: Option<Secret>,
    /// Timeout for every keyring call.
    pub keyring_timeout: Duration,
    /// Accept envelopes with fewer than 100,000 PBKDF2 iterations.
    pub allow_weak_kdf: bool,
    /// PBKDF2 iterations for new envelopes and new database stores.
    pub kdf_iterations: u32,
    /// The database password from `--db-password-file` (PostgreSQL stores;
    /// see `store::pgurl` for the other sources).
    pub db_password: Option<Secret>,
    /// The file it came from, for messages.
    pub db_password_file: Option<PathBuf>,
    /// The variable `--passphrase-env` named: an unlock secret `env:`
    /// leaves out like `CREDSHIFT_PASSPHRASE`.
    pub passphrase_env: Option<String>,
    /// `--vault-token-file` (0600): the Vault/OpenBao token, before
    /// `VAULT_TOKEN`/`BAO_TOKEN` and `~/.vault-token`.
    pub vault_token_file: Option<PathBuf>,
    /// How long the session waits for a store's lock another credshift run
    /// holds (`CREDSHIFT_LOCK_WAIT`, read once by the CLI); `None`: the
    /// store's default (a database waits, a lock file does not).
    pub lock_wait: Option<Duration>,
}

pub const DEFAULT_KDF_ITERATIONS: u32 = 600_000;

impl Default for KeyOptions {
    fn default() -> Self {
        KeyOptions {
            passphrase: None,
            key_file: None,
            prompttrain_key: None,
            app_key: None,
            keyring_timeout: Duration::from_secs(30),
            allow_weak_kdf: false,
            kdf_iterations: DEFAULT_KDF_ITERATIONS,
            db_password: None,
            db_password_file: None,
            vault_token_file: None,
            passphrase_env: None,
            lock_wait: None,
        }
    }
}
