//! The formats a rekey decrypts and encrypts cells in: one [`Codec`] per
//! [`RekeyFormat`], built from the old keys (where they come from today)
//! and the new one. Batches, so agent-prompttrain's one PBKDF2 derivation
//! per value runs on every core (`kdf::pbkdf2_sha256_many`).

use std::path::PathBuf;
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::credential::{Secret, ct_eq_bytes};
use crate::crypto::envelope::{Envelope, KdfParams, KeySource, SealingKey};
use crate::crypto::laravel::{self as crypt, AppKey};
use crate::crypto::prompttrain::{self as pt, KeyCache, MasterKey};
use crate::crypto::sql::{self as sqlcrypt, Dialect, MetaRow, TableKey};
use crate::error::{Result, StoreError};
use crate::store::rekey::{Cell, META_CELL, RekeyFormat};
use crate::unlock::KeyOptions;

/// The new key, as the user gave it (never from argv).
#[derive(Clone)]
pub enum NewKey {
    /// agent-prompttrain's `CREDENTIAL_ENCRYPTION_KEY` or Laravel's `APP_KEY` text.
    Text(Secret),
    /// A new credshift passphrase (already checked against the rule).
    Passphrase(Secret),
    /// A 32-byte credshift key file.
    KeyFile(PathBuf),
    /// credshift's own key kept, only the KDF count raised.
    SamePassphrase,
}

impl NewKey {
    /// Its kind, for the journal.
    pub fn kind(&self) -> super::journal::NewKeyKind {
        use super::journal::NewKeyKind as K;
        match self {
            NewKey::Text(_) => K::Text,
            NewKey::Passphrase(_) => K::Passphrase,
            NewKey::KeyFile(_) => K::KeyFile,
            NewKey::SamePassphrase => K::SamePassphrase,
        }
    }
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NewKey::Text(_) => "NewKey::Text([redacted])",
            NewKey::Passphrase(_) => "NewKey::Passphrase([redacted])",
            NewKey::KeyFile(_) => "NewKey::KeyFile",
            NewKey::SamePassphrase => "NewKey::SamePassphrase",
        })
    }
}

/// Which key a cell is under now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Under {
    /// The old key of this index (see [`Codec::old_key_names`]).
    Old(usize),
    /// Already the new key.
    New,
    /// None of them (the reason, never content).
    Neither(String),
}

/// A cell's plaintext, wiped on drop.
pub type Plain = Zeroizing<Vec<u8>>;

/// Decrypt and encrypt the cells of one format.
pub trait Codec: Send + Sync {
    /// The old keys, for reports (`APP_KEY`, `APP_PREVIOUS_KEYS #1`, ...).
    fn old_key_names(&self) -> Vec<String>;
    /// Which key each cell is under, with its plaintext when one opened it.
    fn open(&self, cells: &[Cell]) -> Vec<(Under, Option<Plain>)>;
    /// Each plaintext sealed under the new key, for its cell.
    fn seal(&self, cells: &[Cell], plains: &[&Plain]) -> Vec<Result<String>>;
    /// Each value opened under the new key (the read-back).
    fn open_new(&self, cells: &[Cell]) -> Vec<Result<Plain>>;
}

fn other(location: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Crypto {
        location: location.to_string(),
        message: e.to_string(),
    }
}

/// The codec of `format` for a store whose cells are `cells`.
pub fn build(
    format: RekeyFormat,
    location: &str,
    cells: &[Cell],
    opts: &KeyOptions,
    new: &NewKey,
) -> Result<Box<dyn Codec>> {
    match format {
        RekeyFormat::PromptTrain => {
            let old = opts
                .prompttrain_key
                .as_ref()
                .ok_or_else(|| StoreError::MissingKey {
                    location: location.to_string(),
                    message: format!(
                        "the old key is needed: set {} or use --prompttrain-key-file",
                        pt::KEY_ENV
                    ),
                })?;
            let NewKey::Text(new) = new else {
                return Err(wrong_kind(
                    location,
                    "a new CREDENTIAL_ENCRYPTION_KEY (--new-key-file)",
                ));
            };
            Ok(Box::new(PromptTrainCodec {
                old: MasterKey::new(old).map_err(|e| other(location, e))?,
                new: MasterKey::new(new).map_err(|e| other(location, e))?,
                old_cache: KeyCache::default(),
                new_cache: KeyCache::default(),
            }))
        }
        RekeyFormat::Laravel => {
            let NewKey::Text(new) = new else {
                return Err(wrong_kind(location, "a new APP_KEY (--new-key-file)"));
            };
            let mut old = Vec::new();
            let app = opts
                .app_key
                .as_ref()
                .ok_or_else(|| StoreError::MissingKey {
                    location: location.to_string(),
                    message: "the old key is needed: set APP_KEY or use --app-key-file".into(),
                })?;
            old.push((
                "APP_KEY".to_string(),
                AppKey::parse(app).map_err(|e| other(location, e))?,
            ));
            if let Some(prev) = crate::keys::secret_from_env("APP_PREVIOUS_KEYS") {
                for (i, k) in prev
                    .expose()
                    .split(',')
                    .filter(|k| !k.trim().is_empty())
                    .enumerate()
                {
                    let key = AppKey::parse(&Secret::new(k.trim())).map_err(|e| {
                        other(location, format!("APP_PREVIOUS_KEYS entry {}: {e}", i + 1))
                    })?;
                    old.push((format!("APP_PREVIOUS_KEYS #{}", i + 1), key));
                }
            }
            Ok(Box::new(LaravelCodec {
                old,
                new: AppKey::parse(new)
                    .map_err(|e| other(location, format!("the new key: {e}")))?,
            }))
        }
        RekeyFormat::Envelope => Ok(Box::new(EnvelopeCodec::new(location, cells, opts, new)?)),
        RekeyFormat::CredshiftSqlite | RekeyFormat::CredshiftPostgres => {
            let dialect = if format == RekeyFormat::CredshiftSqlite {
                sqlcrypt::SQLITE
            } else {
                sqlcrypt::POSTGRES
            };
            Ok(Box::new(TableCodec::new(
                dialect, location, cells, opts, new,
            )?))
        }
    }
}

fn wrong_kind(location: &str, wanted: &str) -> StoreError {
    StoreError::MissingKey {
        location: location.to_string(),
        message: format!("this store takes {wanted}"),
    }
}

/// The key source and options for credshift's new key.
fn new_options(opts: &KeyOptions, new: &NewKey, location: &str) -> Result<KeyOptions> {
    let mut o = opts.clone();
    match new {
        NewKey::Passphrase(p) => {
            o.passphrase = Some(p.clone());
            o.key_file = None;
        }
        NewKey::KeyFile(path) => {
            o.passphrase = None;
            o.key_file = Some(path.clone());
        }
        NewKey::SamePassphrase => {}
        NewKey::Text(_) => {
            return Err(wrong_kind(
                location,
                "a new passphrase (--new-passphrase-file, --new-passphrase-env) or key file \
                 (--new-key-file)",
            ));
        }
    }
    Ok(o)
}

struct PromptTrainCodec {
    old: MasterKey,
    new: MasterKey,
    old_cache: KeyCache,
    new_cache: KeyCache,
}

fn bytes_of(s: Secret) -> Plain {
    Zeroizing::new(s.expose().as_bytes().to_vec())
}

impl Codec for PromptTrainCodec {
    fn old_key_names(&self) -> Vec<String> {
        vec![pt::KEY_ENV.to_string()]
    }

    fn open(&self, cells: &[Cell]) -> Vec<(Under, Option<Plain>)> {
        let values: Vec<&str> = cells.iter().map(|c| c.value.as_str()).collect();
        let mut out: Vec<(Under, Option<Plain>)> =
            pt::decrypt_many_cached(&self.old, &values, &self.old_cache)
                .into_iter()
                .map(|r| match r {
                    Ok(s) => (Under::Old(0), Some(bytes_of(s))),
                    Err(e) => (Under::Neither(e.to_string()), None),
                })
                .collect();
        let retry: Vec<usize> = (0..cells.len())
            .filter(|&i| matches!(out[i].0, Under::Neither(_)) && pt::looks_encrypted(values[i]))
            .collect();
        let again: Vec<&str> = retry.iter().map(|&i| values[i]).collect();
        for (&i, r) in retry
            .iter()
            .zip(pt::decrypt_many_cached(&self.new, &again, &self.new_cache))
        {
            if let Ok(s) = r {
                out[i] = (Under::New, Some(bytes_of(s)));
            }
        }
        out
    }

    fn seal(&self, _cells: &[Cell], plains: &[&Plain]) -> Vec<Result<String>> {
        let texts: Vec<&str> = plains
            .iter()
            .map(|p| std::str::from_utf8(p).unwrap_or(""))
            .collect();
        pt::encrypt_many_cached(&self.new, &texts, &self.new_cache)
            .into_iter()
            .map(|r| r.map_err(|e| StoreError::Other(e.to_string())))
            .collect()
    }

    fn open_new(&self, cells: &[Cell]) -> Vec<Result<Plain>> {
        let values: Vec<&str> = cells.iter().map(|c| c.value.as_str()).collect();
        pt::decrypt_many_cached(&self.new, &values, &self.new_cache)
            .into_iter()
            .zip(cells)
            .map(|(r, c)| r.map(bytes_of).map_err(|e| other(&c.at.to_string(), e)))
            .collect()
    }
}

struct LaravelCodec {
    old: Vec<(String, AppKey)>,
    new: AppKey,
}

impl Codec for LaravelCodec {
    fn old_key_names(&self) -> Vec<String> {
        self.old.iter().map(|(n, _)| n.clone()).collect()
    }

    fn open(&self, cells: &[Cell]) -> Vec<(Under, Option<Plain>)> {
        cells
            .iter()
            .map(|c| {
                // The MAC tells which key in constant time; nothing is
                // decrypted under a key whose MAC does not match.
                for (i, (_, k)) in self.old.iter().enumerate() {
                    if crypt::mac_matches(k, &c.value) {
                        return match crypt::decrypt(k, &c.value) {
                            Ok(p) => (Under::Old(i), Some(p)),
                            Err(e) => (Under::Neither(e.to_string()), None),
                        };
                    }
                }
                match crypt::decrypt(&self.new, &c.value) {
                    Ok(p) => (Under::New, Some(p)),
                    Err(e) => (Under::Neither(e.to_string()), None),
                }
            })
            .collect()
    }

    fn seal(&self, cells: &[Cell], plains: &[&Plain]) -> Vec<Result<String>> {
        cells
            .iter()
            .zip(plains)
            .map(|(c, p)| crypt::encrypt(&self.new, p).map_err(|e| other(&c.at.to_string(), e)))
            .collect()
    }

    fn open_new(&self, cells: &[Cell]) -> Vec<Result<Plain>> {
        cells
            .iter()
            .map(|c| crypt::decrypt(&self.new, &c.value).map_err(|e| other(&c.at.to_string(), e)))
            .collect()
    }
}

/// `a` on this thread and `b` on another at the same time: the two key
/// derivations of a rekey (old and new key, each under its own passphrase
/// and salt, so not one interleaved `kdf::pbkdf2_sha256_pair`) take one
/// derivation's wall time on two cores.
fn on_two_cores<A, B: Send>(
    a: impl FnOnce() -> A,
    b: impl FnOnce() -> B + Send,
    location: &str,
) -> Result<(A, B)> {
    std::thread::scope(|s| {
        let b = s.spawn(b);
        let a = a();
        b.join().map(|b| (a, b))
    })
    .map_err(|_| StoreError::Other(format!("{location}: the key derivation panicked")))
}

/// Keys derived for given KDF parameters, so each is derived once.
struct KeysByParams {
    source: KeySource,
    keys: Mutex<Vec<SealingKey>>,
}

impl KeysByParams {
    fn new(source: KeySource) -> Self {
        KeysByParams {
            source,
            keys: Mutex::new(Vec::new()),
        }
    }

    fn open(&self, env: &Envelope, location: &str) -> Result<Plain> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = keys.iter().find(|k| k.params() == env.params()) {
            return k.open(env);
        }
        let key = SealingKey::derive(env.params(), &self.source, location)?;
        let out = key.open(env);
        keys.push(key);
        out
    }

    /// Derive the key for `env`'s parameters now (kept for [`Self::open`]).
    /// A failure is left for `open` to report.
    fn prime(&self, params: &KdfParams, location: &str) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.iter().any(|k| k.params() == params) {
            return;
        }
        if let Ok(key) = SealingKey::derive(params, &self.source, location) {
            keys.push(key);
        }
    }
}

struct EnvelopeCodec {
    old: KeysByParams,
    new: KeysByParams,
    sealing: SealingKey,
    location: String,
    allow_weak: bool,
}

impl EnvelopeCodec {
    fn new(location: &str, cells: &[Cell], opts: &KeyOptions, new: &NewKey) -> Result<Self> {
        let old = KeysByParams::new(KeySource::from_options(opts, location)?);
        let n = new_options(opts, new, location)?;
        let new_source = KeySource::from_options(&n, location)?;
        // The new key's derivation and the old one's (for the file's own
        // parameters) are the run's two slow steps: one on each core.
        let ((), sealing) = on_two_cores(
            || {
                if let Some(params) = cells.first().and_then(|c| {
                    Envelope::kdf_params(c.value.as_bytes(), location, opts.allow_weak_kdf).ok()
                }) {
                    old.prime(&params, location);
                }
            },
            || SealingKey::new(&new_source, n.kdf_iterations),
            location,
        )?;
        let sealing = sealing?;
        let new_keys = KeysByParams::new(new_source);
        Ok(EnvelopeCodec {
            old,
            new: new_keys,
            sealing,
            location: location.to_string(),
            allow_weak: opts.allow_weak_kdf,
        })
    }

    fn open_with(&self, keys: &KeysByParams, value: &str) -> Result<Plain> {
        let env = Envelope::parse(value.as_bytes(), &self.location, self.allow_weak)?;
        if std::ptr::eq(keys, &self.new) && env.params() == self.sealing.params() {
            // The read-back opens with the very key it sealed with.
            return self.sealing.open(&env);
        }
        keys.open(&env, &self.location)
    }
}

impl Codec for EnvelopeCodec {
    fn old_key_names(&self) -> Vec<String> {
        vec!["the passphrase or key file".into()]
    }

    fn open(&self, cells: &[Cell]) -> Vec<(Under, Option<Plain>)> {
        cells
            .iter()
            .map(|c| match self.open_with(&self.old, &c.value) {
                Ok(p) => (Under::Old(0), Some(p)),
                Err(e) => match self.open_with(&self.new, &c.value) {
                    Ok(p) => (Under::New, Some(p)),
                    Err(_) => (Under::Neither(message(&e)), None),
                },
            })
            .collect()
    }

    fn seal(&self, _cells: &[Cell], plains: &[&Plain]) -> Vec<Result<String>> {
        plains
            .iter()
            .map(|p| {
                let bytes = self.sealing.seal(p)?;
                String::from_utf8(bytes).map_err(|_| StoreError::Other("envelope not UTF-8".into()))
            })
            .collect()
    }

    fn open_new(&self, cells: &[Cell]) -> Vec<Result<Plain>> {
        cells
            .iter()
            .map(|c| self.open_with(&self.new, &c.value))
            .collect()
    }
}

fn message(e: &StoreError) -> String {
    match e {
        StoreError::Crypto { message, .. } | StoreError::Parse { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// credshift's SQL tables: the meta cell (KDF and key check) and values
/// sealed with their id as associated data.
struct TableCodec {
    old: Option<TableKey>,
    new: TableKey,
    /// The new meta row, when the table is still under the old key.
    new_meta: Option<MetaRow>,
    location: String,
}

impl TableCodec {
    fn new(
        dialect: Dialect,
        location: &str,
        cells: &[Cell],
        opts: &KeyOptions,
        new: &NewKey,
    ) -> Result<Self> {
        let meta_cell = cells
            .iter()
            .find(|c| is_meta(c))
            .ok_or_else(|| StoreError::NotFound {
                location: location.to_string(),
                hint: "no credshift_meta row: nothing is stored here yet".into(),
            })?;
        let meta = parse_meta(&meta_cell.value, location)?;
        let n = new_options(opts, new, location)?;
        // The old key (the table's salt) and the new one (a fresh salt) are
        // the run's two slow steps: one on each core, as for a file. The new
        // one is wasted only when the table is already under the new key (a
        // rekey resumed after its commit).
        let (old, fresh) = on_two_cores(
            || dialect.unlock(&meta, location, opts),
            || SealingKey::for_options(&n, location),
            location,
        )?;
        match old {
            Ok(old) => {
                let (new_key, new_meta) = dialect.new_key_from(fresh?)?;
                Ok(TableCodec {
                    old: Some(old),
                    new: new_key,
                    new_meta: Some(new_meta),
                    location: location.to_string(),
                })
            }
            Err(old_err) => match dialect.unlock(&meta, location, &n) {
                // Already under the new key (a rekey that committed).
                Ok(new_key) => Ok(TableCodec {
                    old: None,
                    new: new_key,
                    new_meta: None,
                    location: location.to_string(),
                }),
                Err(_) => Err(old_err),
            },
        }
    }

    fn open_value(key: &TableKey, c: &Cell) -> Result<Plain> {
        let (nonce, ct) = c
            .value
            .split_once(':')
            .ok_or_else(|| StoreError::Other("not nonce:ciphertext".into()))?;
        let nonce = hex::decode(nonce).map_err(|_| StoreError::Other("bad nonce".into()))?;
        let ct = hex::decode(ct).map_err(|_| StoreError::Other("bad ciphertext".into()))?;
        key.open_bytes(&c.at.row, &nonce, &ct)
    }
}

fn is_meta(c: &Cell) -> bool {
    c.at.table == META_CELL.0 && c.at.column == META_CELL.2
}

fn parse_meta(value: &str, location: &str) -> Result<MetaRow> {
    let bad = || StoreError::parse(format!("{location} credshift_meta"), "unexpected meta row");
    let parts: Vec<&str> = value.split(':').collect();
    let [kdf, iterations, salt, nonce, check] = parts[..] else {
        return Err(bad());
    };
    let opt_hex = |s: &str| -> Result<Option<Vec<u8>>> {
        if s.is_empty() {
            Ok(None)
        } else {
            hex::decode(s).map(Some).map_err(|_| bad())
        }
    };
    Ok(MetaRow {
        kdf: kdf.to_string(),
        iterations: if iterations.is_empty() {
            None
        } else {
            Some(iterations.parse().map_err(|_| bad())?)
        },
        salt: opt_hex(salt)?,
        check_nonce: opt_hex(nonce)?.unwrap_or_default(),
        check_value: opt_hex(check)?.unwrap_or_default(),
    })
}

fn meta_text(m: &MetaRow) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        m.kdf,
        m.iterations.map(|n| n.to_string()).unwrap_or_default(),
        m.salt.as_deref().map(hex::encode).unwrap_or_default(),
        hex::encode(&m.check_nonce),
        hex::encode(&m.check_value)
    )
}

impl Codec for TableCodec {
    fn old_key_names(&self) -> Vec<String> {
        vec!["the passphrase or key file".into()]
    }

    fn open(&self, cells: &[Cell]) -> Vec<(Under, Option<Plain>)> {
        cells
            .iter()
            .map(|c| {
                if is_meta(c) {
                    // The key check was verified when the codec was built.
                    return match &self.old {
                        Some(_) => (Under::Old(0), Some(Zeroizing::new(Vec::new()))),
                        None => (Under::New, Some(Zeroizing::new(Vec::new()))),
                    };
                }
                if let Some(old) = &self.old
                    && let Ok(p) = Self::open_value(old, c)
                {
                    return (Under::Old(0), Some(p));
                }
                match Self::open_value(&self.new, c) {
                    Ok(p) => (Under::New, Some(p)),
                    Err(_) => (
                        Under::Neither(
                            "cannot decrypt this value: it was altered, or copied from another id"
                                .into(),
                        ),
                        None,
                    ),
                }
            })
            .collect()
    }

    fn seal(&self, cells: &[Cell], plains: &[&Plain]) -> Vec<Result<String>> {
        cells
            .iter()
            .zip(plains)
            .map(|(c, p)| {
                if is_meta(c) {
                    return self
                        .new_meta
                        .as_ref()
                        .map(meta_text)
                        .ok_or_else(|| StoreError::Other("already under the new key".into()));
                }
                let (nonce, ct) = self.new.seal(&c.at.row, p)?;
                Ok(format!("{}:{}", hex::encode(nonce), hex::encode(ct)))
            })
            .collect()
    }

    fn open_new(&self, cells: &[Cell]) -> Vec<Result<Plain>> {
        cells
            .iter()
            .map(|c| {
                if is_meta(c) {
                    // The new meta row (its key check made with the new
                    // key) must be what the table holds now.
                    let want = self.new_meta.as_ref().map(meta_text);
                    return match want {
                        Some(w) if ct_eq_bytes(w.as_bytes(), c.value.as_bytes()) => {
                            Ok(Zeroizing::new(Vec::new()))
                        }
                        Some(_) => Err(other(
                            &self.location,
                            "the meta row differs from the one written",
                        )),
                        None => Ok(Zeroizing::new(Vec::new())),
                    };
                }
                Self::open_value(&self.new, c)
            })
            .collect()
    }
}
