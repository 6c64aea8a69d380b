//! credshift's own envelope: the format of `encrypted:` files, `bundle:`
//! transfer files and the engine's backups.
//!
//! ```text
//! {"format":"credshift-envelope","version":1,
//!  "kdf":{"alg":"pbkdf2-hmac-sha256","iterations":600000,"salt":B64},
//!  "cipher":"aes-256-gcm","nonce":B64,"ciphertext":B64}
//! ```
//!
//! - **Key.** With a passphrase: PBKDF2-HMAC-SHA256 over the passphrase's
//!   UTF-8 bytes exactly as given (no trimming, no Unicode normalization),
//!   a random 16-byte salt, 32 bytes out. With a 32-byte key file instead
//!   (see `kdf::load_key_file`) the key is used as it is and the header says
//!   `"kdf":{"alg":"none"}` with no iterations and no salt.
//! - **Cipher.** AES-256-GCM, a fresh random 12-byte nonce per seal, the
//!   16-byte tag appended to the ciphertext (Web Crypto's layout).
//! - **Associated data.** The header, i.e. the envelope without
//!   `ciphertext`, serialized as compact JSON (no spaces) with the keys in
//!   exactly this order: `format`, `version`, `kdf` (`alg`, `iterations`,
//!   `salt`), `cipher`, `nonce`. That is what a browser's `JSON.stringify`
//!   gives for the parsed object minus `ciphertext`
//!   (`const {ciphertext, ...header} = JSON.parse(text)`), so Web Crypto can
//!   open a file with `additionalData = TextEncoder().encode(JSON.stringify(header))`.
//!   The reader rebuilds these bytes from the parsed values (unknown keys
//!   are refused), so changing any header field, the iteration count
//!   included, fails authentication.
//! - **Plaintext.** The JSON list `[{"id","kind","secret","metadata"}]`,
//!   `id` as `namespace/name`. Every plaintext buffer is zeroized.
//! - **Limits.** A header asking for more than 10,000,000 iterations is
//!   refused before anything is derived (a hostile file could otherwise
//!   pin the CPU); fewer than 100,000 is refused unless
//!   `OpenOptions::allow_weak_kdf` (`--allow-weak-kdf`).
//!
//! A store derives its key once ([`SealingKey`]) and reuses it, with the same
//! salt, for every rewrite of its file; only the nonce changes per seal.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::crypto::aead::{self, NONCE_LEN, TAG_LEN};
use crate::crypto::kdf::{self, KEY_LEN};
use crate::error::{Result, StoreError};
use crate::store::OpenOptions;

pub const FORMAT: &str = "credshift-envelope";
pub const VERSION: u64 = 1;
pub const ALG_PBKDF2: &str = "pbkdf2-hmac-sha256";
pub const ALG_NONE: &str = "none";
pub const CIPHER: &str = "aes-256-gcm";
pub const SALT_LEN: usize = 16;
/// Headers asking for more are refused before deriving anything.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Headers asking for fewer are refused unless weak KDFs are allowed.
pub const MIN_ITERATIONS: u32 = 100_000;
/// Salts outside this range are refused when reading.
const SALT_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=1024;

const HOW_TO_GIVE_PASSPHRASE: &str = "give it with --passphrase-file PATH, --passphrase-env VAR \
     or the CREDSHIFT_PASSPHRASE environment variable";

/// Where the key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// Stretched with PBKDF2-HMAC-SHA256.
    Passphrase(Secret),
    /// A 32-byte key used as it is (`"kdf":{"alg":"none"}`).
    Key(Zeroizing<[u8; KEY_LEN]>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Passphrase(_) => f.write_str("KeySource::Passphrase([redacted])"),
            KeySource::Key(_) => f.write_str("KeySource::Key([redacted])"),
        }
    }
}

impl KeySource {
    /// The passphrase when one was given, else the key file, else a
    /// `MissingKey` error for `location` that says how to give one.
    pub fn from_options(opts: &OpenOptions, location: &str) -> Result<KeySource> {
        if let Some(p) = &opts.passphrase {
            return Self::passphrase(p, location);
        }
        if let Some(path) = &opts.key_file {
            return Self::from_key_file(path);
        }
        Err(StoreError::MissingKey {
            location: location.to_string(),
            message: format!(
                "no passphrase or key file given: {HOW_TO_GIVE_PASSPHRASE}, or use a 32-byte \
                 key file with --key-file PATH"
            ),
        })
    }

    /// [`KeySource::from_options`] for sealing new data: also refuses a weak
    /// `kdf_iterations` unless `allow_weak_kdf` (derives nothing).
    pub fn for_new_data(opts: &OpenOptions, location: &str) -> Result<KeySource> {
        let source = Self::from_options(opts, location)?;
        if let KeySource::Passphrase(_) = source {
            check_iterations(
                u64::from(opts.kdf_iterations),
                location,
                opts.allow_weak_kdf,
            )?;
        }
        Ok(source)
    }

    /// The source that fits data already sealed with `params`: the key file
    /// for `alg: none`, the passphrase for PBKDF2. `None` (nothing sealed
    /// yet) is the same as [`KeySource::from_options`].
    pub fn for_params(
        opts: &OpenOptions,
        params: Option<&KdfParams>,
        location: &str,
    ) -> Result<KeySource> {
        match params {
            None => Self::from_options(opts, location),
            Some(KdfParams::Pbkdf2 { .. }) => match &opts.passphrase {
                Some(p) => Self::passphrase(p, location),
                None => Err(StoreError::MissingKey {
                    location: location.to_string(),
                    message: format!(
                        "this data is sealed with a passphrase{}: {HOW_TO_GIVE_PASSPHRASE}",
                        if opts.key_file.is_some() {
                            ", not a key file"
                        } else {
                            ""
                        }
                    ),
                }),
            },
            Some(KdfParams::None) => match &opts.key_file {
                Some(path) => Self::from_key_file(path),
                None => Err(StoreError::MissingKey {
                    location: location.to_string(),
                    message: format!(
                        "this data is sealed with a 32-byte key file{}: give it with --key-file PATH",
                        if opts.passphrase.is_some() {
                            ", not a passphrase"
                        } else {
                            ""
                        }
                    ),
                }),
            },
        }
    }

    /// The key in a key file (raw 32 bytes, 64 hex chars or base64).
    pub fn from_key_file(path: &std::path::Path) -> Result<KeySource> {
        Ok(KeySource::Key(kdf::load_key_file(path)?))
    }

    fn passphrase(p: &Secret, location: &str) -> Result<KeySource> {
        if p.is_empty() {
            return Err(StoreError::MissingKey {
                location: location.to_string(),
                message: "the passphrase is empty".into(),
            });
        }
        Ok(KeySource::Passphrase(p.clone()))
    }
}

/// Key derivation parameters as written in a header or a database's meta table.
#[derive(Clone, PartialEq, Eq)]
pub enum KdfParams {
    /// A key file, used as it is.
    None,
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
    },
}

impl std::fmt::Debug for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KdfParams::None => f.write_str("KdfParams::None"),
            KdfParams::Pbkdf2 { iterations, .. } => {
                write!(f, "KdfParams::Pbkdf2 {{ iterations: {iterations} }}")
            }
        }
    }
}

impl KdfParams {
    pub fn alg(&self) -> &'static str {
        match self {
            KdfParams::None => ALG_NONE,
            KdfParams::Pbkdf2 { .. } => ALG_PBKDF2,
        }
    }

    /// Check stored parameters before any derivation: the algorithm is
    /// known, the iteration count is sane, the salt has a sane length.
    /// `iterations` and `salt` come as stored (a database column, a header).
    pub fn from_stored(
        alg: &str,
        iterations: Option<u64>,
        salt: Option<Vec<u8>>,
        location: &str,
        allow_weak: bool,
    ) -> Result<KdfParams> {
        match alg {
            ALG_NONE => {
                if iterations.is_some() || salt.is_some() {
                    return Err(StoreError::parse(
                        location,
                        "kdf \"none\" takes no iterations and no salt",
                    ));
                }
                Ok(KdfParams::None)
            }
            ALG_PBKDF2 => {
                let Some(n) = iterations else {
                    return Err(StoreError::parse(location, "kdf.iterations is missing"));
                };
                let Some(salt) = salt else {
                    return Err(StoreError::parse(location, "kdf.salt is missing"));
                };
                check_iterations(n, location, allow_weak)?;
                if !SALT_LEN_RANGE.contains(&salt.len()) {
                    return Err(StoreError::Crypto {
                        location: location.to_string(),
                        message: format!(
                            "the PBKDF2 salt is {} bytes; expected {} to {}",
                            salt.len(),
                            SALT_LEN_RANGE.start(),
                            SALT_LEN_RANGE.end()
                        ),
                    });
                }
                Ok(KdfParams::Pbkdf2 {
                    iterations: n as u32,
                    salt,
                })
            }
            _ => Err(StoreError::parse(
                location,
                format!("unsupported kdf (this credshift knows {ALG_PBKDF2} and {ALG_NONE})"),
            )),
        }
    }
}

/// Refuse absurd counts (before deriving) and weak ones unless allowed.
pub fn check_iterations(n: u64, location: &str, allow_weak: bool) -> Result<()> {
    if n > u64::from(MAX_ITERATIONS) {
        return Err(StoreError::Crypto {
            location: location.to_string(),
            message: format!(
                "refusing {n} PBKDF2 iterations (the limit is {MAX_ITERATIONS}): the file is \
                 damaged or hostile"
            ),
        });
    }
    if n == 0 {
        return Err(StoreError::Crypto {
            location: location.to_string(),
            message: "refusing 0 PBKDF2 iterations".into(),
        });
    }
    if n < u64::from(MIN_ITERATIONS) && !allow_weak {
        return Err(StoreError::Crypto {
            location: location.to_string(),
            message: format!(
                "only {n} PBKDF2 iterations (fewer than {MIN_ITERATIONS}) is a weak key \
                 derivation; pass --allow-weak-kdf to accept it"
            ),
        });
    }
    Ok(())
}

/// A derived key with the parameters it came from: what a store caches so
/// that it derives once and reseals with fresh nonces.
pub struct SealingKey {
    params: KdfParams,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl SealingKey {
    /// A new key for new data: a fresh salt and `iterations` rounds for a
    /// passphrase, the key itself for a key file. `iterations` must be
    /// 1..=10,000,000 (low counts are the caller's choice when writing).
    pub fn new(source: &KeySource, iterations: u32) -> Result<SealingKey> {
        match source {
            KeySource::Key(k) => Ok(SealingKey {
                params: KdfParams::None,
                key: k.clone(),
            }),
            KeySource::Passphrase(p) => {
                check_iterations(u64::from(iterations), "new envelope", true)?;
                let salt = kdf::random_bytes::<SALT_LEN>()?.to_vec();
                let key = kdf::pbkdf2_sha256(p.expose().as_bytes(), &salt, iterations);
                Ok(SealingKey {
                    params: KdfParams::Pbkdf2 { iterations, salt },
                    key,
                })
            }
        }
    }

    /// A new key from what `opts` holds (passphrase, else key file) with its
    /// `kdf_iterations`, refusing a weak count unless `allow_weak_kdf`: a
    /// file written weak could not be reopened without it.
    pub fn for_options(opts: &OpenOptions, location: &str) -> Result<SealingKey> {
        let source = KeySource::for_new_data(opts, location)?;
        SealingKey::new(&source, opts.kdf_iterations)
    }

    /// The key for data sealed with `params` (already checked by
    /// [`KdfParams::from_stored`]). Whether it is the right key shows only
    /// when something is opened with it.
    pub fn derive(params: &KdfParams, source: &KeySource, location: &str) -> Result<SealingKey> {
        let key = match (params, source) {
            (KdfParams::None, KeySource::Key(k)) => k.clone(),
            (KdfParams::Pbkdf2 { iterations, salt }, KeySource::Passphrase(p)) => {
                kdf::pbkdf2_sha256(p.expose().as_bytes(), salt, *iterations)
            }
            (KdfParams::None, KeySource::Passphrase(_)) => {
                return Err(StoreError::MissingKey {
                    location: location.to_string(),
                    message: "this data is sealed with a 32-byte key file, not a passphrase: \
                              give it with --key-file PATH"
                        .into(),
                });
            }
            (KdfParams::Pbkdf2 { .. }, KeySource::Key(_)) => {
                return Err(StoreError::MissingKey {
                    location: location.to_string(),
                    message: format!(
                        "this data is sealed with a passphrase, not a key file: \
                         {HOW_TO_GIVE_PASSPHRASE}"
                    ),
                });
            }
        };
        Ok(SealingKey {
            params: params.clone(),
            key,
        })
    }

    pub fn params(&self) -> &KdfParams {
        &self.params
    }

    /// The raw key, for stores that seal values themselves (sqlite).
    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// Seal `plaintext` into envelope bytes (one JSON line).
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce = kdf::random_bytes::<NONCE_LEN>()?;
        let kdf_json = match &self.params {
            KdfParams::None => KdfJson {
                alg: ALG_NONE.into(),
                iterations: None,
                salt: None,
            },
            KdfParams::Pbkdf2 { iterations, salt } => KdfJson {
                alg: ALG_PBKDF2.into(),
                iterations: Some(u64::from(*iterations)),
                salt: Some(B64.encode(salt)),
            },
        };
        let env = EnvelopeJson {
            format: FORMAT.into(),
            version: VERSION,
            kdf: kdf_json,
            cipher: CIPHER.into(),
            nonce: B64.encode(nonce),
            ciphertext: String::new(),
        };
        let aad = env.header_aad()?;
        let ct = aead::seal_with_nonce(&self.key, &nonce, &aad, plaintext)
            .map_err(|e| StoreError::Other(format!("sealing an envelope: {e}")))?;
        let env = EnvelopeJson {
            ciphertext: B64.encode(&ct),
            ..env
        };
        let mut out = serde_json::to_vec(&env)
            .map_err(|e| StoreError::Other(format!("serializing an envelope: {e}")))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Authenticate and decrypt a parsed envelope.
    pub fn open(&self, env: &Envelope) -> Result<Zeroizing<Vec<u8>>> {
        if env.params != self.params {
            return Err(StoreError::Crypto {
                location: env.location.clone(),
                message: "the key was derived for other KDF parameters".into(),
            });
        }
        aead::open(&self.key, &env.nonce, &env.aad, &env.ciphertext).map_err(|_| {
            StoreError::Crypto {
                location: env.location.clone(),
                message: format!(
                    "cannot decrypt: {}, or the file was altered or damaged",
                    match self.params {
                        KdfParams::None => "wrong key file",
                        KdfParams::Pbkdf2 { .. } => "wrong passphrase",
                    }
                ),
            }
        })
    }
}

/// The envelope as stored, key order as in the format.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson {
    format: String,
    version: u64,
    kdf: KdfJson,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iterations: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
}

/// The associated data: everything but `ciphertext`, in this order.
#[derive(Serialize)]
struct HeaderJson<'a> {
    format: &'a str,
    version: u64,
    kdf: &'a KdfJson,
    cipher: &'a str,
    nonce: &'a str,
}

impl EnvelopeJson {
    fn header_aad(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&HeaderJson {
            format: &self.format,
            version: self.version,
            kdf: &self.kdf,
            cipher: &self.cipher,
            nonce: &self.nonce,
        })
        .map_err(|e| StoreError::Other(format!("serializing an envelope header: {e}")))
    }
}

/// A parsed, checked envelope (nothing decrypted yet).
pub struct Envelope {
    location: String,
    params: KdfParams,
    nonce: [u8; NONCE_LEN],
    aad: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl Envelope {
    /// Parse and check the header: format, version, cipher, nonce, and the
    /// KDF limits (before anything is derived). `location` names the file
    /// in every error.
    pub fn parse(bytes: &[u8], location: &str, allow_weak: bool) -> Result<Envelope> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| StoreError::json(location, &e))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(StoreError::parse(
                location,
                format!("not a credshift envelope (no \"format\":\"{FORMAT}\")"),
            ));
        }
        let env: EnvelopeJson = serde_json::from_value(value).map_err(|_| {
            StoreError::parse(
                location,
                "envelope has an unexpected shape (a field missing, unknown or of the wrong type)",
            )
        })?;
        if env.version != VERSION {
            return Err(StoreError::parse(
                location,
                format!(
                    "unsupported envelope version {} (this credshift reads version {VERSION})",
                    env.version
                ),
            ));
        }
        if env.cipher != CIPHER {
            return Err(StoreError::parse(
                location,
                format!("unsupported cipher (this credshift knows {CIPHER})"),
            ));
        }
        let salt = match &env.kdf.salt {
            Some(s) => Some(
                B64.decode(s)
                    .map_err(|_| StoreError::parse(location, "kdf.salt is not valid base64"))?,
            ),
            None => None,
        };
        let params =
            KdfParams::from_stored(&env.kdf.alg, env.kdf.iterations, salt, location, allow_weak)?;
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&env.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| {
                StoreError::parse(
                    location,
                    format!("nonce is not {NONCE_LEN} bytes of base64"),
                )
            })?;
        let ciphertext = B64
            .decode(&env.ciphertext)
            .map_err(|_| StoreError::parse(location, "ciphertext is not valid base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(StoreError::Crypto {
                location: location.to_string(),
                message: "the ciphertext is truncated (shorter than its tag)".into(),
            });
        }
        let aad = env.header_aad()?;
        Ok(Envelope {
            location: location.to_string(),
            params,
            nonce,
            aad,
            ciphertext,
        })
    }

    pub fn params(&self) -> &KdfParams {
        &self.params
    }
}

/// One credential in the plaintext, for writing (borrows, copies nothing).
#[derive(Serialize)]
struct PlainRef<'a> {
    id: &'a CredentialId,
    kind: Kind,
    secret: &'a str,
    metadata: &'a Metadata,
}

/// One credential in the plaintext, for reading: the secret goes straight
/// into a zeroizing [`Secret`].
#[derive(Deserialize)]
struct PlainOwned {
    id: CredentialId,
    kind: Kind,
    #[serde(deserialize_with = "secret_de")]
    secret: Secret,
    #[serde(default)]
    metadata: Metadata,
}

fn secret_de<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

/// A `Write` sink that never leaves a copy behind: when it grows, the old
/// buffer is zeroized before it is freed.
struct ZeroizingBuf(Zeroizing<Vec<u8>>);

impl std::io::Write for ZeroizingBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let need = self.0.len() + buf.len();
        if need > self.0.capacity() {
            let mut bigger = Vec::with_capacity(need.max(self.0.capacity() * 2));
            bigger.extend_from_slice(&self.0);
            // The old Zeroizing<Vec> wipes its whole capacity on drop.
            self.0 = Zeroizing::new(bigger);
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The plaintext of an envelope: the JSON list of credentials.
pub fn encode_credentials(creds: &[Credential]) -> Result<Zeroizing<Vec<u8>>> {
    encode_credential_refs(creds.iter())
}

/// [`encode_credentials`] for credentials held elsewhere (a map): no clones.
pub fn encode_credential_refs<'a>(
    creds: impl Iterator<Item = &'a Credential> + Clone,
) -> Result<Zeroizing<Vec<u8>>> {
    let items: Vec<PlainRef<'_>> = creds
        .clone()
        .map(|c| PlainRef {
            id: &c.id,
            kind: c.kind,
            secret: c.secret.expose(),
            metadata: &c.metadata,
        })
        .collect();
    let approx: usize = creds.map(|c| c.secret.expose().len() * 2 + 128).sum();
    let mut buf = ZeroizingBuf(Zeroizing::new(Vec::with_capacity(approx + 2)));
    serde_json::to_writer(&mut buf, &items)
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    Ok(buf.0)
}

/// One credential as [`encode_credentials`] writes it inside its list:
/// stores that rewrite a whole file keep these per item and re-join them
/// ([`join_fragments`]) instead of serializing every item on each rewrite.
pub fn encode_credential_fragment(c: &Credential) -> Result<Zeroizing<Vec<u8>>> {
    let item = PlainRef {
        id: &c.id,
        kind: c.kind,
        secret: c.secret.expose(),
        metadata: &c.metadata,
    };
    let mut buf = ZeroizingBuf(Zeroizing::new(Vec::with_capacity(
        c.secret.expose().len() * 2 + 128,
    )));
    serde_json::to_writer(&mut buf, &item)
        .map_err(|_| StoreError::Other("serializing credentials failed".into()))?;
    Ok(buf.0)
}

/// The list [`encode_credentials`] would write for the credentials whose
/// fragments these are, in this order: byte for byte the same.
pub fn join_fragments<'a>(
    fragments: impl Iterator<Item = &'a Zeroizing<Vec<u8>>> + Clone,
) -> Zeroizing<Vec<u8>> {
    let len: usize = fragments.clone().map(|f| f.len() + 1).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(len + 2));
    out.push(b'[');
    for (i, f) in fragments.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f);
    }
    out.push(b']');
    out
}

/// Parse an envelope's plaintext. Errors name `location` and a position,
/// never content.
pub fn decode_credentials(plaintext: &[u8], location: &str) -> Result<Vec<Credential>> {
    let items: Vec<PlainOwned> = serde_json::from_slice(plaintext).map_err(|e| {
        let mut err = StoreError::json(location, &e);
        if let StoreError::Parse { message, .. } = &mut err {
            *message = format!("decrypted content: {message}");
        }
        err
    })?;
    Ok(items
        .into_iter()
        .map(|p| Credential {
            id: p.id,
            kind: p.kind,
            secret: p.secret,
            metadata: p.metadata,
        })
        .collect())
}

/// Seal credentials into envelope bytes under a fresh salt and nonce.
/// `iterations` applies to a passphrase (use `OpenOptions::kdf_iterations`).
pub fn seal_credentials(
    creds: &[Credential],
    source: &KeySource,
    iterations: u32,
) -> Result<Vec<u8>> {
    let key = SealingKey::new(source, iterations)?;
    key.seal(&encode_credentials(creds)?)
}

/// Seal with what `opts` holds (passphrase, else key file) and its
/// `kdf_iterations`: what the engine uses for backups.
pub fn seal_credentials_with_options(
    creds: &[Credential],
    opts: &OpenOptions,
    location: &str,
) -> Result<Vec<u8>> {
    let key = SealingKey::for_options(opts, location)?;
    key.seal(&encode_credentials(creds)?)
}

/// Open envelope bytes with `source`. `location` (a path) names the file in
/// every error; `allow_weak` accepts fewer than 100,000 iterations.
pub fn open_credentials(
    bytes: &[u8],
    source: &KeySource,
    location: &str,
    allow_weak: bool,
) -> Result<Vec<Credential>> {
    let env = Envelope::parse(bytes, location, allow_weak)?;
    let key = SealingKey::derive(env.params(), source, location)?;
    let plain = key.open(&env)?;
    decode_credentials(&plain, location)
}

/// Open envelope bytes with whatever `opts` holds that fits the header: the
/// passphrase for a PBKDF2 header, the key file for `alg: none`.
pub fn open_credentials_with_options(
    bytes: &[u8],
    opts: &OpenOptions,
    location: &str,
) -> Result<Vec<Credential>> {
    let env = Envelope::parse(bytes, location, opts.allow_weak_kdf)?;
    let source = KeySource::for_params(opts, Some(env.params()), location)?;
    let key = SealingKey::derive(env.params(), &source, location)?;
    let plain = key.open(&env)?;
    decode_credentials(&plain, location)
}

#[cfg(test)]
mod tests {

    #[test]
    fn joined_fragments_are_the_encoded_list() {
        let mut m = Metadata::new();
        m.insert("scopes".into(), serde_json::json!(["a", "b\"c"]));
        let creds = [
            Credential::new(CredentialId::new("env", "A"), Kind::ApiKey, "x\ny \"q\" ü"),
            Credential::new(
                CredentialId::new("account:acc/x", "t"),
                Kind::OauthAccess,
                "",
            )
            .with_metadata(m),
        ];
        for n in 0..=creds.len() {
            let frags: Vec<_> = creds[..n]
                .iter()
                .map(|c| encode_credential_fragment(c).unwrap())
                .collect();
            assert_eq!(
                *join_fragments(frags.iter()),
                *encode_credentials(&creds[..n]).unwrap()
            );
        }
    }
    use super::*;

    const LOC: &str = "test.enc";

    fn pass(p: &str) -> KeySource {
        KeySource::Passphrase(Secret::new(p))
    }

    fn sample() -> Vec<Credential> {
        let mut meta = Metadata::new();
        meta.insert("expires_at".into(), 1790003600000i64.into());
        meta.insert("scopes".into(), serde_json::json!(["a", "b"]));
        vec![
            Credential::new(
                CredentialId::new("openai", "api_key"),
                Kind::ApiKey,
                "sk-proj-ABCDEFGHIJKLMNOP",
            ),
            Credential::new(
                CredentialId::new("account:ключ", "oauth_access_token"),
                Kind::OauthAccess,
                "tok-\"quoted\"-\u{1F511}",
            )
            .with_metadata(meta),
        ]
    }

    fn same(a: &[Credential], b: &[Credential]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.id, y.id);
            assert!(x.same_as(y), "{}", x.id);
        }
    }

    fn as_json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn round_trip_with_passphrase_and_key() {
        let creds = sample();
        let bytes = seal_credentials(&creds, &pass("correct horse"), 1000).unwrap();
        let back = open_credentials(&bytes, &pass("correct horse"), LOC, true).unwrap();
        same(&creds, &back);

        let key = KeySource::Key(Zeroizing::new([5u8; 32]));
        let bytes = seal_credentials(&creds, &key, 1000).unwrap();
        let v = as_json(&bytes);
        assert_eq!(v["kdf"], serde_json::json!({"alg": "none"}));
        same(&creds, &open_credentials(&bytes, &key, LOC, false).unwrap());
    }

    #[test]
    fn header_has_the_documented_shape_and_order() {
        let bytes = seal_credentials(&sample(), &pass("pw"), 1234).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let keys: Vec<&str> = [
            "\"format\"",
            "\"version\"",
            "\"kdf\"",
            "\"alg\"",
            "\"iterations\"",
        ]
        .into_iter()
        .chain(["\"salt\"", "\"cipher\"", "\"nonce\"", "\"ciphertext\""])
        .collect();
        let positions: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        let v = as_json(&bytes);
        assert_eq!(v["format"], FORMAT);
        assert_eq!(v["version"], 1);
        assert_eq!(v["kdf"]["alg"], ALG_PBKDF2);
        assert_eq!(v["kdf"]["iterations"], 1234);
        assert_eq!(
            B64.decode(v["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            16
        );
        assert_eq!(v["cipher"], CIPHER);
        assert_eq!(B64.decode(v["nonce"].as_str().unwrap()).unwrap().len(), 12);
        assert!(!text.contains("sk-proj"));
    }

    #[test]
    fn aad_is_the_compact_header_json() {
        // Decrypt by hand with the documented recipe, independently of Envelope.
        let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
        let mut v = as_json(&bytes);
        let obj = v.as_object_mut().unwrap();
        let ct = B64
            .decode(obj.remove("ciphertext").unwrap().as_str().unwrap())
            .unwrap();
        let aad = serde_json::to_string(&obj).unwrap();
        assert!(aad.starts_with(r#"{"format":"credshift-envelope","version":1,"kdf":{"alg":"pbkdf2-hmac-sha256","iterations":1000,"salt":""#), "{aad}");
        let salt = B64.decode(obj["kdf"]["salt"].as_str().unwrap()).unwrap();
        let nonce: [u8; 12] = B64
            .decode(obj["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = kdf::pbkdf2_sha256(b"pw", &salt, 1000);
        let plain = aead::open(&key, &nonce, aad.as_bytes(), &ct).unwrap();
        let list: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(list[0]["id"], "openai/api_key");
        assert_eq!(list[0]["kind"], "api_key");
        assert_eq!(list[0]["secret"], "sk-proj-ABCDEFGHIJKLMNOP");
        assert_eq!(list[1]["metadata"]["scopes"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn wrong_passphrase_is_a_crypto_error_naming_the_file() {
        let bytes = seal_credentials(&sample(), &pass("right"), 1000).unwrap();
        let e = open_credentials(&bytes, &pass("wrong"), LOC, true).unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("test.enc: "), "{msg}");
        assert!(msg.contains("wrong passphrase"), "{msg}");
    }

    fn tamper(
        bytes: &[u8],
        f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Vec<u8> {
        let mut v = as_json(bytes);
        f(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn tampered_headers_and_ciphertexts_fail() {
        let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
        let p = pass("pw");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "iterations",
                tamper(&bytes, |o| o["kdf"]["iterations"] = 1001.into()),
            ),
            (
                "salt",
                tamper(&bytes, |o| o["kdf"]["salt"] = B64.encode([1u8; 16]).into()),
            ),
            (
                "nonce",
                tamper(&bytes, |o| o["nonce"] = B64.encode([1u8; 12]).into()),
            ),
            (
                "ciphertext",
                tamper(&bytes, |o| {
                    let mut ct = B64.decode(o["ciphertext"].as_str().unwrap()).unwrap();
                    ct[3] ^= 1;
                    o["ciphertext"] = B64.encode(ct).into();
                }),
            ),
        ];
        for (what, t) in cases {
            let e = open_credentials(&t, &p, LOC, true).unwrap_err();
            assert!(matches!(e, StoreError::Crypto { .. }), "{what}: {e:?}");
        }
        // An added header field is refused (it would not be authenticated).
        let t = tamper(&bytes, |o| {
            o.insert("note".into(), "x".into());
        });
        let e = open_credentials(&t, &p, LOC, true).unwrap_err();
        assert!(matches!(e, StoreError::Parse { .. }), "{e:?}");
        // Truncated files.
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
            let e = open_credentials(&bytes[..cut], &p, LOC, true).unwrap_err();
            assert!(
                matches!(e, StoreError::Parse { .. } | StoreError::Crypto { .. }),
                "cut {cut}: {e:?}"
            );
            assert!(e.to_string().contains("test.enc"));
        }
        let t = tamper(&bytes, |o| o["ciphertext"] = B64.encode([0u8; 10]).into());
        let e = open_credentials(&t, &p, LOC, true).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn wrong_formats_are_parse_errors() {
        let p = pass("pw");
        for (bytes, needle) in [
            (&b"not json"[..], "malformed JSON"),
            (&br#"{"providers":{}}"#[..], "not a credshift envelope"),
            (&b"[1,2]"[..], "not a credshift envelope"),
            (
                &br#"{"format":"credshift-envelope","version":2,"kdf":{"alg":"none"},"cipher":"aes-256-gcm","nonce":"","ciphertext":""}"#[..],
                "version 2",
            ),
            (
                &br#"{"format":"credshift-envelope","version":1,"kdf":{"alg":"scrypt"},"cipher":"aes-256-gcm","nonce":"","ciphertext":""}"#[..],
                "unsupported kdf",
            ),
            (
                &br#"{"format":"credshift-envelope","version":1,"kdf":{"alg":"none"},"cipher":"chacha","nonce":"","ciphertext":""}"#[..],
                "unsupported cipher",
            ),
        ] {
            let e = open_credentials(bytes, &p, LOC, true).unwrap_err();
            assert!(matches!(e, StoreError::Parse { .. }), "{e:?}");
            assert!(e.to_string().contains(needle), "{e}");
            assert!(e.to_string().contains("test.enc"), "{e}");
        }
    }

    #[test]
    fn absurd_and_weak_iteration_counts_are_refused_before_deriving() {
        let bytes = seal_credentials(&sample(), &pass("pw"), 1000).unwrap();
        let p = pass("pw");
        for n in [4_000_000_000u64, 10_000_001, 1u64 << 40] {
            let t = tamper(&bytes, |o| o["kdf"]["iterations"] = n.into());
            let e = open_credentials(&t, &p, LOC, true).unwrap_err();
            assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
            assert!(e.to_string().contains("limit is 10000000"), "{e}");
        }
        let e = open_credentials(&bytes, &p, LOC, false).unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
        assert!(e.to_string().contains("--allow-weak-kdf"), "{e}");
        assert!(open_credentials(&bytes, &p, LOC, true).is_ok());
        let t = tamper(&bytes, |o| o["kdf"]["iterations"] = 0.into());
        assert!(open_credentials(&t, &p, LOC, true).is_err());
        assert!(seal_credentials(&sample(), &p, MAX_ITERATIONS + 1).is_err());
    }

    #[test]
    fn key_source_follows_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k");
        kdf::generate_key_file(&key_path).unwrap();
        let mut opts = OpenOptions::default();
        let e = KeySource::from_options(&opts, "x.enc").unwrap_err();
        assert!(matches!(e, StoreError::MissingKey { .. }));
        let msg = e.to_string();
        for needle in [
            "x.enc",
            "--passphrase-file",
            "--passphrase-env",
            "CREDSHIFT_PASSPHRASE",
            "--key-file",
        ] {
            assert!(msg.contains(needle), "{msg}");
        }
        opts.key_file = Some(key_path);
        assert!(matches!(
            KeySource::from_options(&opts, "x").unwrap(),
            KeySource::Key(_)
        ));
        opts.passphrase = Some(Secret::new("pw"));
        assert!(matches!(
            KeySource::from_options(&opts, "x").unwrap(),
            KeySource::Passphrase(_)
        ));
        // Data sealed with a key file is opened with the key file even when a
        // passphrase is also given.
        let src = KeySource::for_params(&opts, Some(&KdfParams::None), "x").unwrap();
        assert!(matches!(src, KeySource::Key(_)));
        opts.key_file = None;
        let e = KeySource::for_params(&opts, Some(&KdfParams::None), "x").unwrap_err();
        assert!(e.to_string().contains("--key-file"), "{e}");
        opts.passphrase = Some(Secret::new(""));
        assert!(KeySource::from_options(&opts, "x").is_err());
        assert!(!format!("{:?}", pass("hunter2")).contains("hunter2"));
    }

    #[test]
    fn mismatched_key_kind_says_which_is_needed() {
        let key = KeySource::Key(Zeroizing::new([5u8; 32]));
        let bytes = seal_credentials(&sample(), &key, 1000).unwrap();
        let e = open_credentials(&bytes, &pass("pw"), LOC, true).unwrap_err();
        assert!(matches!(e, StoreError::MissingKey { .. }), "{e:?}");
        assert!(e.to_string().contains("--key-file"));
        let other = KeySource::Key(Zeroizing::new([6u8; 32]));
        let e = open_credentials(&bytes, &other, LOC, true).unwrap_err();
        assert!(e.to_string().contains("wrong key file"), "{e}");
    }

    #[test]
    fn sealing_key_reuses_salt_with_fresh_nonces() {
        let key = SealingKey::new(&pass("pw"), 1000).unwrap();
        let a = as_json(&key.seal(b"[]").unwrap());
        let b = as_json(&key.seal(b"[]").unwrap());
        assert_eq!(a["kdf"], b["kdf"]);
        assert_ne!(a["nonce"], b["nonce"]);
        let env = Envelope::parse(&serde_json::to_vec(&b).unwrap(), LOC, true).unwrap();
        assert_eq!(&**key.open(&env).unwrap(), b"[]");
    }

    #[test]
    fn bad_plaintext_is_reported_without_content() {
        let key = SealingKey::new(&pass("pw"), 1000).unwrap();
        let bytes = key
            .seal(br#"[{"id":"a/b","kind":"api_key","secret":12,"metadata":{}},"sk-leak"]"#)
            .unwrap();
        let e = open_credentials(&bytes, &pass("pw"), LOC, true).unwrap_err();
        assert!(matches!(e, StoreError::Parse { .. }), "{e:?}");
        assert!(e.to_string().contains("decrypted content"), "{e}");
        assert!(!e.to_string().contains("sk-leak"));
    }

    #[test]
    fn options_pick_the_key_that_fits_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k");
        kdf::generate_key_file(&key_path).unwrap();
        let key_only = OpenOptions {
            key_file: Some(key_path.clone()),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        };
        let both = OpenOptions {
            passphrase: Some(Secret::new("pw")),
            kdf_iterations: 1000,
            allow_weak_kdf: true,
            ..key_only.clone()
        };
        let creds = sample();
        let by_key = seal_credentials_with_options(&creds, &key_only, LOC).unwrap();
        assert_eq!(as_json(&by_key)["kdf"]["alg"], ALG_NONE);
        let by_pass = seal_credentials_with_options(&creds, &both, LOC).unwrap();
        assert_eq!(as_json(&by_pass)["kdf"]["iterations"], 1000);
        same(
            &creds,
            &open_credentials_with_options(&by_key, &both, LOC).unwrap(),
        );
        same(
            &creds,
            &open_credentials_with_options(&by_pass, &both, LOC).unwrap(),
        );
        let e = open_credentials_with_options(&by_pass, &key_only, LOC).unwrap_err();
        assert!(matches!(e, StoreError::MissingKey { .. }), "{e:?}");
        let e = seal_credentials_with_options(&creds, &OpenOptions::default(), LOC).unwrap_err();
        assert!(matches!(e, StoreError::MissingKey { .. }), "{e:?}");
        // Writing weak is refused unless allowed (it could not be reopened).
        let weak = OpenOptions {
            allow_weak_kdf: false,
            ..both.clone()
        };
        let e = seal_credentials_with_options(&creds, &weak, LOC).unwrap_err();
        assert!(e.to_string().contains("--allow-weak-kdf"), "{e}");
        assert!(seal_credentials_with_options(&creds, &key_only, LOC).is_ok());
    }

    #[test]
    fn default_iterations_round_trip() {
        let creds = sample();
        let bytes =
            seal_credentials(&creds, &pass("pw"), crate::store::DEFAULT_KDF_ITERATIONS).unwrap();
        assert_eq!(as_json(&bytes)["kdf"]["iterations"], 600_000);
        same(
            &creds,
            &open_credentials(&bytes, &pass("pw"), LOC, false).unwrap(),
        );
    }
}
