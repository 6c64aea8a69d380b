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
//!   `KeyOptions::allow_weak_kdf` (`--allow-weak-kdf`).
//!
//! A store derives its key once ([`SealingKey`]) and reuses it, with the same
//! salt, for every rewrite of its file; only the nonce changes per seal.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::credential::{Credential, Secret};
use crate::crypto::aead::{self, NONCE_LEN, TAG_LEN};
use crate::crypto::kdf::{self, KEY_LEN};
use crate::error::{Result, StoreError};
use crate::unlock::KeyOptions;

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
    pub fn from_options(opts: &KeyOptions, location: &str) -> Result<KeySource> {
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
    pub fn for_new_data(opts: &KeyOptions, location: &str) -> Result<KeySource> {
        let source = Self::from_options(opts, location)?;
        if let KeySource::Passphrase(p) = &source {
            new_passphrase_rule(p, location)?;
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
        opts: &KeyOptions,
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

/// The passphrase rule for new data (`keys::check_new_passphrase`), as a
/// store error naming `location`.
pub fn new_passphrase_rule(p: &Secret, location: &str) -> Result<()> {
    crate::keys::check_new_passphrase(p.expose()).map_err(|e| StoreError::MissingKey {
        location: location.to_string(),
        message: e.to_string(),
    })
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
    pub fn for_options(opts: &KeyOptions, location: &str) -> Result<SealingKey> {
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
        let aad = self.header(&nonce).header_aad()?;
        let ct = aead::seal_with_nonce(&self.key, &nonce, &aad, plaintext)
            .map_err(|e| StoreError::Other(format!("sealing an envelope: {e}")))?;
        envelope_bytes(&aad, &ct)
    }

    /// [`seal`](Self::seal), encrypting `plaintext` in its own buffer: a
    /// whole store's plaintext is not held twice (plain and encrypted)
    /// while it is sealed.
    pub fn seal_owned(&self, mut plaintext: Zeroizing<Vec<u8>>) -> Result<Vec<u8>> {
        let nonce = kdf::random_bytes::<NONCE_LEN>()?;
        let aad = self.header(&nonce).header_aad()?;
        aead::seal_in_place(&self.key, &nonce, &aad, &mut plaintext)
            .map_err(|e| StoreError::Other(format!("sealing an envelope: {e}")))?;
        envelope_bytes(&aad, &plaintext)
    }

    /// [`seal_owned`](Self::seal_owned), for writing the envelope out as
    /// it is encoded ([`Sealed::write_to`]): the base64 text of a large
    /// store is never held whole (it was a third more than the plaintext
    /// at a whole-file store's peak).
    pub fn seal_for_writing(&self, mut plaintext: Zeroizing<Vec<u8>>) -> Result<Sealed> {
        let nonce = kdf::random_bytes::<NONCE_LEN>()?;
        let aad = self.header(&nonce).header_aad()?;
        aead::seal_in_place(&self.key, &nonce, &aad, &mut plaintext)
            .map_err(|e| StoreError::Other(format!("sealing an envelope: {e}")))?;
        Ok(Sealed {
            nonce,
            aad,
            ct: plaintext,
        })
    }

    /// The plaintext back out of what [`seal_for_writing`](Self::seal_for_writing)
    /// sealed, decrypted in place: a store that seals its one buffer of
    /// plaintext, writes it and keeps using it needs no second buffer of
    /// its size (one more pass of AES-GCM instead).
    pub fn unseal(&self, sealed: Sealed) -> Result<Zeroizing<Vec<u8>>> {
        let Sealed { nonce, aad, mut ct } = sealed;
        aead::open_in_place(&self.key, &nonce, &aad, &mut ct)
            .map_err(|e| StoreError::Other(format!("reopening a sealed envelope: {e}")))?;
        Ok(ct)
    }

    /// The envelope's fields but the ciphertext, for `nonce`.
    fn header(&self, nonce: &[u8; NONCE_LEN]) -> EnvelopeJson {
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
        EnvelopeJson {
            format: FORMAT.into(),
            version: VERSION,
            kdf: kdf_json,
            cipher: CIPHER.into(),
            nonce: B64.encode(nonce),
            ciphertext: String::new(),
        }
    }

    /// Authenticate and decrypt a parsed envelope.
    /// [`open`](Self::open), decrypting in the envelope's own buffer: no
    /// second buffer of the file's size (a store that opens its whole file
    /// keeps only the plaintext).
    pub fn open_owned(&self, env: Envelope) -> Result<Zeroizing<Vec<u8>>> {
        self.check_params(&env)?;
        let Envelope {
            location,
            nonce,
            aad,
            ciphertext,
            ..
        } = env;
        // Wrapped before it holds any plaintext: wiped on every way out.
        let mut buf = Zeroizing::new(ciphertext);
        aead::open_in_place(&self.key, &nonce, &aad, &mut buf)
            .map_err(|_| self.cannot_decrypt(&location))?;
        Ok(buf)
    }

    fn check_params(&self, env: &Envelope) -> Result<()> {
        if env.params != self.params {
            return Err(StoreError::Crypto {
                location: env.location.clone(),
                message: "the key was derived for other KDF parameters".into(),
            });
        }
        Ok(())
    }

    fn cannot_decrypt(&self, location: &str) -> StoreError {
        StoreError::Crypto {
            location: location.to_string(),
            message: format!(
                "cannot decrypt: {}, or the file was altered or damaged",
                match self.params {
                    KdfParams::None => "wrong key file",
                    KdfParams::Pbkdf2 { .. } => "wrong passphrase",
                }
            ),
        }
    }

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

/// The envelope's bytes: the header (`aad`, compact JSON ending in `}`)
/// with `"ciphertext":B64` as its last field, and a newline; the same bytes
/// serde_json writes for the whole envelope (base64 needs no escaping), but
/// written once into a buffer of the exact size, without a base64 string or
/// a growing buffer beside it.
fn envelope_bytes(aad: &[u8], ct: &[u8]) -> Result<Vec<u8>> {
    const FIELD: &[u8] = b",\"ciphertext\":\"";
    let head = &aad[..aad.len().saturating_sub(1)];
    let b64_len = ct.len().div_ceil(3) * 4;
    let mut out = vec![0u8; head.len() + FIELD.len() + b64_len + 3];
    let (h, rest) = out.split_at_mut(head.len());
    h.copy_from_slice(head);
    let (f, rest) = rest.split_at_mut(FIELD.len());
    f.copy_from_slice(FIELD);
    let (b, tail) = rest.split_at_mut(b64_len);
    // A failed encoding must not leave zeros where the ciphertext goes.
    let written = B64
        .encode_slice(ct, b)
        .map_err(|e| StoreError::Other(format!("encoding an envelope: {e}")))?;
    if written != b64_len {
        return Err(StoreError::Other(format!(
            "encoding an envelope: {written} of {b64_len} bytes"
        )));
    }
    tail.copy_from_slice(b"\"}\n");
    Ok(out)
}

/// A sealed envelope not yet encoded: its header and its ciphertext.
pub struct Sealed {
    nonce: [u8; NONCE_LEN],
    aad: Vec<u8>,
    ct: Zeroizing<Vec<u8>>,
}

impl Sealed {
    /// The envelope's bytes (as [`SealingKey::seal`] returns them) into
    /// `out`, in chunks; returns their SHA-256.
    pub fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<[u8; 32]> {
        write_envelope(&self.aad, &self.ct, out)
    }
}

/// [`envelope_bytes`] into a writer, in chunks; the SHA-256 of the bytes.
fn write_envelope(
    aad: &[u8],
    ct: &[u8],
    out: &mut dyn std::io::Write,
) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    const FIELD: &[u8] = b",\"ciphertext\":\"";
    // A multiple of 3 bytes in, so every chunk but the last has no padding.
    const CHUNK: usize = 3 * 16 * 1024;
    let mut digest = sha2::Sha256::new();
    let mut put = |b: &[u8]| -> std::io::Result<()> {
        digest.update(b);
        out.write_all(b)
    };
    put(&aad[..aad.len().saturating_sub(1)])?;
    put(FIELD)?;
    let mut buf = vec![0u8; CHUNK / 3 * 4];
    for piece in ct.chunks(CHUNK) {
        // Reported, never a chunk silently left out of a backup.
        let n = B64
            .encode_slice(piece, &mut buf)
            .map_err(std::io::Error::other)?;
        put(&buf[..n])?;
    }
    put(b"\"}\n")?;
    let mut d = [0u8; 32];
    d.copy_from_slice(&digest.finalize());
    Ok(d)
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

/// [`EnvelopeJson`] as read, its strings borrowed from the file's bytes
/// where they hold no escape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeText<'a> {
    #[serde(borrow)]
    format: std::borrow::Cow<'a, str>,
    version: u64,
    kdf: KdfJson,
    #[serde(borrow)]
    cipher: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    nonce: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    ciphertext: std::borrow::Cow<'a, str>,
}

/// An envelope's fields after the format, however they were read.
struct EnvelopeFields<'a> {
    version: u64,
    kdf: &'a KdfJson,
    cipher: &'a str,
    nonce: &'a str,
    ciphertext: &'a str,
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
        // The fields borrowed from `bytes` (base64 and these header fields
        // need no escapes): the ciphertext's text is decoded from the file's
        // bytes, not from a copy of it in a parsed tree (the bytes, that
        // copy and the decoded ciphertext were three copies at once, a
        // 100,000-item file's verify peak). Anything else, and every error,
        // takes the tree's way below, whose messages are the ones reported.
        // Only an object: serde's derived struct also takes a JSON array,
        // a shape the tree's way refuses.
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if object
            && let Ok(env) = serde_json::from_slice::<EnvelopeText<'_>>(bytes)
            && env.format == FORMAT
        {
            return Self::checked(
                EnvelopeFields {
                    version: env.version,
                    kdf: &env.kdf,
                    cipher: &env.cipher,
                    nonce: &env.nonce,
                    ciphertext: &env.ciphertext,
                },
                location,
                allow_weak,
            );
        }
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
        Self::checked(
            EnvelopeFields {
                version: env.version,
                kdf: &env.kdf,
                cipher: &env.cipher,
                nonce: &env.nonce,
                ciphertext: &env.ciphertext,
            },
            location,
            allow_weak,
        )
    }

    /// The checks after the shape: version, cipher, KDF limits, nonce,
    /// ciphertext; then the associated data rebuilt from the values.
    fn checked(env: EnvelopeFields<'_>, location: &str, allow_weak: bool) -> Result<Envelope> {
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
            .decode(env.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| {
                StoreError::parse(
                    location,
                    format!("nonce is not {NONCE_LEN} bytes of base64"),
                )
            })?;
        let ciphertext = B64
            .decode(env.ciphertext)
            .map_err(|_| StoreError::parse(location, "ciphertext is not valid base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(StoreError::Crypto {
                location: location.to_string(),
                message: "the ciphertext is truncated (shorter than its tag)".into(),
            });
        }
        let aad = serde_json::to_vec(&HeaderJson {
            format: FORMAT,
            version: env.version,
            kdf: env.kdf,
            cipher: env.cipher,
            nonce: env.nonce,
        })
        .map_err(|e| StoreError::Other(format!("serializing an envelope header: {e}")))?;
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

    /// Only the KDF parameters of an envelope, without decoding its
    /// ciphertext (to start deriving its key early); [`Envelope::parse`]
    /// checks the rest.
    pub fn kdf_params(bytes: &[u8], location: &str, allow_weak: bool) -> Result<KdfParams> {
        #[derive(Deserialize)]
        struct KdfOnly {
            kdf: KdfJson,
        }
        let v: KdfOnly =
            serde_json::from_slice(bytes).map_err(|e| StoreError::json(location, &e))?;
        let salt = match &v.kdf.salt {
            Some(s) => Some(
                B64.decode(s)
                    .map_err(|_| StoreError::parse(location, "kdf.salt is not valid base64"))?,
            ),
            None => None,
        };
        KdfParams::from_stored(&v.kdf.alg, v.kdf.iterations, salt, location, allow_weak)
    }
}

mod plaintext;

pub use plaintext::{
    credential_fragment_len, decode_credential_fragment, decode_credentials,
    encode_credential_fragment, for_each_credential, encode_credential_refs, encode_credentials, join_fragments,
    write_credential_fragment,
};

/// Seal credentials into envelope bytes under a fresh salt and nonce.
/// `iterations` applies to a passphrase (use `KeyOptions::kdf_iterations`).
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
    opts: &KeyOptions,
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
    opts: &KeyOptions,
    location: &str,
) -> Result<Vec<Credential>> {
    let env = Envelope::parse(bytes, location, opts.allow_weak_kdf)?;
    let source = KeySource::for_params(opts, Some(env.params()), location)?;
    let key = SealingKey::derive(env.params(), &source, location)?;
    let plain = key.open(&env)?;
    decode_credentials(&plain, location)
}

#[cfg(test)]
mod tests;
