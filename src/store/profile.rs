//! What a store kind is, asked of its spec (keyring-rs's `persistence()`
//! habit), so that no code outside `src/store/` matches on a store kind and
//! a new kind cannot silently inherit someone else's answer: every match
//! here names every kind, with no `_` arm. Adding a store = its row here,
//! its module, and its arms in `StoreSpec`'s parser and `open`.

use super::StoreSpec;

/// The facts the engine, the CLI and the screens ask of a store kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// credshift's own format: an older credshift wrote metadata into it as
    /// it came, so secrets may hide there (see `legacy_meta`).
    pub own_format: bool,
    /// Listing it parses the whole store anyway (a whole-file store), so
    /// reading everything costs no more than listing.
    pub lists_by_parsing: bool,
    /// Values sit under credshift's passphrase or key file: a new store needs
    /// one chosen, an existing one needs it to open.
    pub under_passphrase: bool,
    /// A rough cost of one write with its read-back, for the dry run's
    /// estimate (milliseconds).
    pub write_ms: u64,
    /// Where its credshift lock lives (see `engine::lock` and `Store::lock`).
    pub lock: LockPlace,
}

/// Where a store kind's lock lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockPlace {
    /// A lock file beside the store's file or directory.
    BesideFile,
    /// A per-user lock file keyed by the keyring service (the keyring has
    /// no file of its own, and no lock of its own).
    PerUserService,
    /// Inside the store itself (PostgreSQL's advisory locks, Vault's lock
    /// secret), taken by the store's own `Store::lock`.
    InStore,
    /// Nothing to lock: a read-only store (the process environment).
    None,
}

impl StoreSpec {
    /// What this kind of store is.
    pub fn profile(&self) -> Profile {
        use LockPlace::*;
        let p = |own_format, lists_by_parsing, under_passphrase, write_ms, lock| Profile {
            own_format,
            lists_by_parsing,
            under_passphrase,
            write_ms,
            lock,
        };
        match self {
            StoreSpec::PromptTrain(_) => p(false, true, false, 3, BesideFile),
            StoreSpec::ModelForge(_) => p(false, true, false, 3, BesideFile),
            StoreSpec::Dotenv(_) => p(true, true, false, 3, BesideFile),
            StoreSpec::Env(_) => p(false, true, false, 3, None),
            StoreSpec::Keyring(_) => p(true, false, false, 40, PerUserService),
            StoreSpec::Encrypted(_) => p(true, true, true, 3, BesideFile),
            StoreSpec::Bundle(_) => p(true, true, true, 3, BesideFile),
            StoreSpec::Sqlite(_) => p(true, false, true, 6, BesideFile),
            StoreSpec::Postgres(_) => p(true, false, true, 8, InStore),
            StoreSpec::PromptTrainDb(_) => p(false, false, false, 60, InStore),
            StoreSpec::LaravelSqlite(_) => p(false, false, false, 6, BesideFile),
            StoreSpec::LaravelPostgres(_) => p(false, false, false, 8, InStore),
            StoreSpec::Vault(_) => p(false, false, false, 5, InStore),
        }
    }
}

impl StoreSpec {
    /// How its values can be re-encrypted in place under a new key
    /// (`credshift rekey`), or `None` when it has no key to rotate.
    pub fn rekey_format(&self) -> Option<super::rekey::RekeyFormat> {
        super::rekey::format_of(self)
    }

    /// The key of a [`LockPlace::PerUserService`] lock: the keyring service.
    pub fn per_user_lock_key(&self) -> Option<&str> {
        match self {
            StoreSpec::Keyring(service) => Some(service),
            _ => None,
        }
    }
}
