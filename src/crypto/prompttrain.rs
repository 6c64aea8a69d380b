//! agent-prompttrain's value format (its migrations 013/014).
//!
//! Each value is AES-256-GCM without associated data under its own key:
//! a fresh 32-byte salt, key = PBKDF2-HMAC-SHA256(master key as UTF-8, salt,
//! 100,000 iterations, 32 bytes), a 16-byte IV (GCM with a non-96-bit IV,
//! as Node's `createCipheriv('aes-256-gcm', key, randomBytes(16))` does) and
//! a 16-byte tag, stored as `b64(salt):b64(iv):b64(tag):b64(ciphertext)` with
//! padded standard base64. The master key is `CREDENTIAL_ENCRYPTION_KEY`
//! (at least 32 characters). Client API keys are stored as the lowercase hex
//! SHA-256 of the UTF-8 key.
//!
//! One PBKDF2 derivation per value makes bulk work CPU bound; callers
//! parallelise across values (see `store::prompttrain_db`).

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::consts::U16;
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, KeyInit, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::credential::{Secret, ct_eq_bytes};

/// PBKDF2 iterations fixed by the format.
pub const ITERATIONS: u32 = 100_000;
pub const SALT_LEN: usize = 32;
pub const IV_LEN: usize = 16;
pub const TAG_LEN: usize = 16;
/// The original system refuses shorter master keys.
pub const MIN_MASTER_KEY_CHARS: usize = 32;
/// The environment variable the original system reads its key from.
pub const KEY_ENV: &str = "CREDENTIAL_ENCRYPTION_KEY";

/// AES-256-GCM with a 16-byte nonce, as agent-prompttrain uses it.
type Cipher = AesGcm<Aes256, U16>;

/// Why a value could not be encrypted or decrypted. Never holds content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{KEY_ENV} is too short ({0} characters; agent-prompttrain requires at least {MIN_MASTER_KEY_CHARS})"
    )]
    KeyTooShort(usize),
    #[error("not an agent-prompttrain encrypted value: {0}")]
    Malformed(&'static str),
    #[error(
        "cannot decrypt: wrong {KEY_ENV} or the value was altered (authentication tag mismatch)"
    )]
    Authentication,
    #[error("decrypted value is not UTF-8 text")]
    NotUtf8,
    #[error("cannot encrypt: {0}")]
    Encrypt(&'static str),
}

/// A validated `CREDENTIAL_ENCRYPTION_KEY`.
#[derive(Clone)]
pub struct MasterKey(Secret);

impl MasterKey {
    /// Refuses keys shorter than 32 characters (the count is reported, the
    /// key never is).
    pub fn new(key: &Secret) -> Result<Self, FormatError> {
        let n = key.len();
        if n < MIN_MASTER_KEY_CHARS {
            return Err(FormatError::KeyTooShort(n));
        }
        Ok(MasterKey(key.clone()))
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose().as_bytes()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// The per-value key: PBKDF2-HMAC-SHA256(master, salt, 100,000, 32 bytes).
pub fn derive_key(master: &MasterKey, salt: &[u8]) -> Zeroizing<[u8; 32]> {
    crate::crypto::kdf::pbkdf2_sha256(master.bytes(), salt, ITERATIONS)
}

/// Per-value keys derived in this process, by salt, so a value encrypted
/// here and read back (or read twice) is not derived again: the read-back
/// still decrypts and authenticates what the database returned, with the
/// key its salt names. Keys are zeroized when the cache drops; each sits in
/// its own allocation, so growing the map moves pointers, never key bytes.
/// One cache belongs to one master key (the store that owns it has one).
#[derive(Default)]
pub struct KeyCache {
    keys: std::sync::Mutex<KeysBySalt>,
}

/// Each key in its own allocation (see [`KeyCache`]).
type KeysBySalt = HashMap<[u8; SALT_LEN], Box<Zeroizing<[u8; 32]>>>;

/// Enough for every value of any real deployment; beyond it keys are
/// derived again instead of cached.
const KEY_CACHE_MAX: usize = 1 << 20;

impl KeyCache {
    /// The key for `salt`: from the cache, or derived (and remembered).
    pub fn key(&self, master: &MasterKey, salt: &[u8; SALT_LEN]) -> Zeroizing<[u8; 32]> {
        if let Some(k) = self.lock().get(salt) {
            return Zeroizing::new(***k);
        }
        // Derive outside the lock: other threads derive their own meanwhile.
        let key = derive_key(master, salt);
        let mut keys = self.lock();
        if keys.len() < KEY_CACHE_MAX {
            keys.insert(*salt, Box::new(key.clone()));
        }
        key
    }

    /// The keys for `salts`, in order: from the cache, the others derived
    /// together (interleaved pairs over every core, see
    /// `kdf::pbkdf2_sha256_many`) and remembered. A batch derives this way
    /// rather than one key per parallel task, so that no core waits for the
    /// other's last key alone.
    pub fn keys(&self, master: &MasterKey, salts: &[[u8; SALT_LEN]]) -> Vec<Zeroizing<[u8; 32]>> {
        let mut out: Vec<Option<Zeroizing<[u8; 32]>>> = {
            let keys = self.lock();
            salts
                .iter()
                .map(|s| keys.get(s).map(|k| Zeroizing::new(***k)))
                .collect()
        };
        let missing: Vec<usize> = (0..salts.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            // Derive outside the lock: other threads use the cache meanwhile.
            let wanted: Vec<&[u8]> = missing.iter().map(|&i| salts[i].as_slice()).collect();
            let derived =
                crate::crypto::kdf::pbkdf2_sha256_many(master.bytes(), &wanted, ITERATIONS);
            let mut keys = self.lock();
            for (&i, key) in missing.iter().zip(derived) {
                if keys.len() < KEY_CACHE_MAX {
                    keys.insert(salts[i], Box::new(key.clone()));
                }
                out[i] = Some(key);
            }
        }
        out.into_iter().flatten().collect()
    }

    /// How many keys are held (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeysBySalt> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCache({} keys, redacted)", self.len())
    }
}

/// Encrypt `plaintext` with a fresh salt and IV.
pub fn encrypt(master: &MasterKey, plaintext: &str) -> Result<String, FormatError> {
    let (salt, iv) = fresh_salt_iv()?;
    encrypt_with(master, plaintext, &salt, &iv)
}

/// [`encrypt`], remembering the derived key in `cache`.
pub fn encrypt_cached(
    master: &MasterKey,
    plaintext: &str,
    cache: &KeyCache,
) -> Result<String, FormatError> {
    let (salt, iv) = fresh_salt_iv()?;
    let key = cache.key(master, &salt);
    seal(&key, plaintext, &salt, &iv)
}

/// [`encrypt_cached`] for a batch: every key derived at once (see
/// [`KeyCache::keys`]), results in the order of `plaintexts`.
pub fn encrypt_many_cached(
    master: &MasterKey,
    plaintexts: &[&str],
    cache: &KeyCache,
) -> Vec<Result<String, FormatError>> {
    let fresh: Vec<Result<SaltIv, FormatError>> =
        plaintexts.iter().map(|_| fresh_salt_iv()).collect();
    let salts: Vec<[u8; SALT_LEN]> = fresh.iter().flatten().map(|(s, _)| *s).collect();
    let mut keys = cache.keys(master, &salts).into_iter();
    plaintexts
        .iter()
        .zip(fresh)
        .map(|(p, f)| {
            let (salt, iv) = f?;
            let key = keys
                .next()
                .ok_or(FormatError::Encrypt("key derivation lost a key"))?;
            seal(&key, p, &salt, &iv)
        })
        .collect()
}

/// A value's fresh salt and IV.
type SaltIv = ([u8; SALT_LEN], [u8; IV_LEN]);

fn fresh_salt_iv() -> Result<SaltIv, FormatError> {
    let mut salt = [0u8; SALT_LEN];
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut salt).map_err(|_| FormatError::Encrypt("no system randomness"))?;
    getrandom::fill(&mut iv).map_err(|_| FormatError::Encrypt("no system randomness"))?;
    Ok((salt, iv))
}

/// Encrypt with a given salt and IV (for known-answer tests; use [`encrypt`]).
pub fn encrypt_with(
    master: &MasterKey,
    plaintext: &str,
    salt: &[u8; SALT_LEN],
    iv: &[u8; IV_LEN],
) -> Result<String, FormatError> {
    seal(&derive_key(master, salt), plaintext, salt, iv)
}

/// Encrypt under a derived per-value key.
fn seal(
    key: &[u8; 32],
    plaintext: &str,
    salt: &[u8; SALT_LEN],
    iv: &[u8; IV_LEN],
) -> Result<String, FormatError> {
    let cipher =
        Cipher::new_from_slice(key.as_ref()).map_err(|_| FormatError::Encrypt("bad key length"))?;
    let nonce = Nonce::<U16>::from(*iv);
    let mut buf = Zeroizing::new(plaintext.as_bytes().to_vec());
    let tag = cipher
        .encrypt_inout_detached(&nonce, &[], buf.as_mut_slice().into())
        .map_err(|_| FormatError::Encrypt("value too long"))?;
    Ok(format!(
        "{}:{}:{}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(iv),
        STANDARD.encode(tag.as_slice()),
        STANDARD.encode(buf.as_slice())
    ))
}

/// The parts of a stored value, decoded and length-checked.
struct Parts {
    salt: [u8; SALT_LEN],
    iv: [u8; IV_LEN],
    tag: [u8; TAG_LEN],
    ciphertext: Vec<u8>,
}

fn split(stored: &str) -> Result<Parts, FormatError> {
    let fields: Vec<&str> = stored.trim().split(':').collect();
    let [salt, iv, tag, ct] = fields[..] else {
        return Err(FormatError::Malformed(
            "expected four base64 fields salt:iv:tag:ciphertext",
        ));
    };
    let decode =
        |s: &str, what: &'static str| STANDARD.decode(s).map_err(|_| FormatError::Malformed(what));
    let salt: [u8; SALT_LEN] = decode(salt, "salt is not base64")?
        .try_into()
        .map_err(|_| FormatError::Malformed("salt is not 32 bytes"))?;
    let iv: [u8; IV_LEN] = decode(iv, "IV is not base64")?
        .try_into()
        .map_err(|_| FormatError::Malformed("IV is not 16 bytes"))?;
    let tag: [u8; TAG_LEN] = decode(tag, "tag is not base64")?
        .try_into()
        .map_err(|_| FormatError::Malformed("tag is not 16 bytes"))?;
    let ciphertext = decode(ct, "ciphertext is not base64")?;
    Ok(Parts {
        salt,
        iv,
        tag,
        ciphertext,
    })
}

/// Whether `stored` has the shape of an encrypted value (no key needed).
pub fn looks_encrypted(stored: &str) -> bool {
    split(stored).is_ok()
}

/// Decrypt a stored value.
pub fn decrypt(master: &MasterKey, stored: &str) -> Result<Secret, FormatError> {
    let parts = split(stored)?;
    let key = derive_key(master, &parts.salt);
    open(&key, parts)
}

/// [`decrypt`], taking the key from `cache` when this process derived it.
pub fn decrypt_cached(
    master: &MasterKey,
    stored: &str,
    cache: &KeyCache,
) -> Result<Secret, FormatError> {
    let parts = split(stored)?;
    let key = cache.key(master, &parts.salt);
    open(&key, parts)
}

/// [`decrypt_cached`] for a batch: every key not cached derived at once
/// (see [`KeyCache::keys`]), results in the order of `stored`.
pub fn decrypt_many_cached(
    master: &MasterKey,
    stored: &[&str],
    cache: &KeyCache,
) -> Vec<Result<Secret, FormatError>> {
    let parts: Vec<Result<Parts, FormatError>> = stored.iter().map(|s| split(s)).collect();
    let salts: Vec<[u8; SALT_LEN]> = parts.iter().flatten().map(|p| p.salt).collect();
    let mut keys = cache.keys(master, &salts).into_iter();
    parts
        .into_iter()
        .map(|p| {
            let p = p?;
            let key = keys
                .next()
                .ok_or(FormatError::Malformed("key derivation lost a key"))?;
            open(&key, p)
        })
        .collect()
}

fn open(key: &[u8; 32], parts: Parts) -> Result<Secret, FormatError> {
    let cipher =
        Cipher::new_from_slice(key.as_ref()).map_err(|_| FormatError::Malformed("bad key"))?;
    let nonce = Nonce::<U16>::from(parts.iv);
    let tag = Tag::<U16>::from(parts.tag);
    let mut buf = Zeroizing::new(parts.ciphertext);
    cipher
        .decrypt_inout_detached(&nonce, &[], buf.as_mut_slice().into(), &tag)
        .map_err(|_| FormatError::Authentication)?;
    let text = String::from_utf8(std::mem::take(&mut *buf)).map_err(|e| {
        // Wipe the rejected bytes before dropping them.
        let _ = Zeroizing::new(e.into_bytes());
        FormatError::NotUtf8
    })?;
    Ok(Secret::new(text))
}

/// agent-prompttrain's client key hash: lowercase hex SHA-256 of the key.
pub fn hash_client_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `stored` is a well-formed client key hash (64 lowercase hex).
pub fn is_client_key_hash(stored: &str) -> bool {
    stored.len() == 64
        && stored
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `key` hashes to `stored_hash`, compared in constant time.
pub fn client_key_matches(key: &str, stored_hash: &str) -> bool {
    let ours = hash_client_key(key);
    ct_eq_bytes(
        ours.as_bytes(),
        stored_hash.trim().to_ascii_lowercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn cached_keys_decrypt_only_what_they_belong_to() {
        let master = MasterKey::new(&Secret::new("cache-master-key-0123456789abcdef-ok")).unwrap();
        let cache = KeyCache::default();
        let a = encrypt_cached(&master, "value a", &cache).unwrap();
        let b = encrypt_cached(&master, "value a", &cache).unwrap();
        assert_eq!(cache.len(), 2, "one key per value: fresh salts");
        assert_ne!(a.split(':').next(), b.split(':').next());
        assert_ne!(a.split(':').nth(1), b.split(':').nth(1), "fresh IVs");
        // Read back through the cache (no new key) and without it.
        assert_eq!(
            decrypt_cached(&master, &a, &cache).unwrap().expose(),
            "value a"
        );
        assert_eq!(cache.len(), 2);
        assert_eq!(decrypt(&master, &b).unwrap().expose(), "value a");
        // An altered ciphertext under a cached salt still fails.
        let mut parts: Vec<String> = a.split(':').map(str::to_string).collect();
        parts[3] = STANDARD.encode(b"altered");
        assert_eq!(
            decrypt_cached(&master, &parts.join(":"), &cache).unwrap_err(),
            FormatError::Authentication
        );
        // A value from elsewhere: derived once, then remembered.
        let other = encrypt(&master, "value c").unwrap();
        assert_eq!(
            decrypt_cached(&master, &other, &cache).unwrap().expose(),
            "value c"
        );
        assert_eq!(cache.len(), 3);
        assert!(!format!("{cache:?}").contains("value"));
    }

    use super::*;

    fn master() -> MasterKey {
        MasterKey::new(&Secret::new("a-test-master-key-of-at-least-32-chars!")).unwrap()
    }

    /// `stored` with the first bit of its ciphertext field flipped.
    fn altered_ciphertext(stored: &str) -> String {
        let mut fields: Vec<String> = stored.split(':').map(str::to_string).collect();
        let mut ct = STANDARD.decode(&fields[3]).unwrap();
        ct[0] ^= 1;
        fields[3] = STANDARD.encode(ct);
        fields.join(":")
    }

    /// The alteration the batch test relies on changes every value, also
    /// the one-byte ciphertexts whose byte was `x` (the flake of the
    /// replacement it had before: 1 run in 256).
    #[test]
    fn an_altered_ciphertext_always_differs_and_fails_authentication() {
        let m = master();
        for _ in 0..64 {
            let s = encrypt(&m, "a").unwrap();
            let a = altered_ciphertext(&s);
            assert_ne!(a, s);
            assert_eq!(decrypt(&m, &a).unwrap_err(), FormatError::Authentication);
        }
        // A ciphertext that is `x` already: replacing it by `x` changed nothing.
        let s = encrypt(&m, "a").unwrap();
        let mut f: Vec<String> = s.split(':').map(str::to_string).collect();
        f[3] = STANDARD.encode(b"x");
        let was_x = f.join(":");
        assert_ne!(altered_ciphertext(&was_x), was_x);
    }

    #[test]
    fn batches_derive_once_and_match_single_values() {
        let m = master();
        let cache = KeyCache::default();
        // Odd count: the last key of the batch is derived alone.
        let plain = ["a", "bb", "", "dddd", "e"];
        let sealed: Vec<String> = encrypt_many_cached(&m, &plain, &cache)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(cache.len(), 5);
        for (s, p) in sealed.iter().zip(plain) {
            // Without the cache: the key is derived again, single.
            assert_eq!(decrypt(&m, s).unwrap().expose(), p);
        }
        // A batch read: cached keys, a value from elsewhere, a malformed
        // one and an altered one, each result in its place.
        let other = encrypt(&m, "other").unwrap();
        // One bit of the ciphertext flipped: always a different value. (It
        // was replaced by the byte `x`, which is what the one-byte
        // ciphertext of "a" already was once in 256 runs: then nothing was
        // altered and the value decrypted.)
        let altered = altered_ciphertext(&sealed[0]);
        assert_ne!(altered, sealed[0]);
        let stored = [
            sealed[1].as_str(),
            "not:a:value",
            other.as_str(),
            altered.as_str(),
            sealed[4].as_str(),
        ];
        let got = decrypt_many_cached(&m, &stored, &cache);
        assert_eq!(got[0].as_ref().unwrap().expose(), "bb");
        assert!(matches!(got[1], Err(FormatError::Malformed(_))));
        assert_eq!(got[2].as_ref().unwrap().expose(), "other");
        assert_eq!(got[3].as_ref().unwrap_err(), &FormatError::Authentication);
        assert_eq!(got[4].as_ref().unwrap().expose(), "e");
        assert_eq!(cache.len(), 6, "only the value from elsewhere was derived");
    }

    #[test]
    fn round_trips_with_the_documented_layout() {
        let m = master();
        let stored = encrypt(&m, "sk-ant-api03-secret").unwrap();
        let fields: Vec<&str> = stored.split(':').collect();
        assert_eq!(fields.len(), 4);
        assert_eq!(STANDARD.decode(fields[0]).unwrap().len(), 32);
        assert_eq!(STANDARD.decode(fields[1]).unwrap().len(), 16);
        assert_eq!(STANDARD.decode(fields[2]).unwrap().len(), 16);
        assert_eq!(
            STANDARD.decode(fields[3]).unwrap().len(),
            "sk-ant-api03-secret".len()
        );
        assert_eq!(
            decrypt(&m, &stored).unwrap().expose(),
            "sk-ant-api03-secret"
        );
    }

    #[test]
    fn every_value_gets_a_fresh_salt_and_iv() {
        let m = master();
        let a = encrypt(&m, "same").unwrap();
        let b = encrypt(&m, "same").unwrap();
        assert_ne!(a.split(':').next(), b.split(':').next());
        assert_ne!(a.split(':').nth(1), b.split(':').nth(1));
    }

    #[test]
    fn decrypts_a_value_made_by_the_original_system() {
        // From tests/fixtures/prompttrain-db/data.sql (acc_gamma).
        let key = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"
        ))
        .unwrap();
        let m = MasterKey::new(&Secret::new(key.trim())).unwrap();
        let stored = "grLhzFLTdBE3QEN7NprNdGDeAqliAd55yOpvKbNKAf8=:xiHTH2vHmrxU7ekXmqGgvA==:Nbn1kpa4g8M8avPGtKYX+Q==:2PVJb30Yavm5szP03dBH/pXqUrosvrtVw3Xc13oglnW51ULO1f+CEP4SIuYgWTEcqhBwAELB2+Dxsgnrecf2LG5RaFNkU+tZ5IHxMyjJnQwjVTiYy/nwcGXnsOc08E7PFR1XNym8Se/HPOAZ";
        let plain = decrypt(&m, stored).unwrap();
        assert!(plain.expose().starts_with("sk-ant-api03-b8ew"));
        assert!(plain.expose().ends_with("Ony1d"));
    }

    #[test]
    fn wrong_key_and_tampering_are_authentication_errors() {
        let m = master();
        let stored = encrypt(&m, "value").unwrap();
        let other = MasterKey::new(&Secret::new("another-master-key-of-32-chars-or-more")).unwrap();
        assert_eq!(
            decrypt(&other, &stored).unwrap_err(),
            FormatError::Authentication
        );
        let mut fields: Vec<String> = stored.split(':').map(String::from).collect();
        let mut ct = STANDARD.decode(&fields[3]).unwrap();
        ct[0] ^= 1;
        fields[3] = STANDARD.encode(ct);
        assert_eq!(
            decrypt(&m, &fields.join(":")).unwrap_err(),
            FormatError::Authentication
        );
    }

    #[test]
    fn malformed_values_name_the_problem_not_the_content() {
        let m = master();
        for (bad, want) in [
            ("sk-plaintext-secret", "four base64 fields"),
            ("a:b:c", "four base64 fields"),
            ("!!:AAAA:AAAA:AAAA", "salt is not base64"),
            ("AAAA:AAAA:AAAA:AAAA", "salt is not 32 bytes"),
        ] {
            let e = decrypt(&m, bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(!e.contains("sk-plaintext"), "{e}");
        }
        let salt = STANDARD.encode([0u8; 32]);
        let twelve = STANDARD.encode([0u8; 12]);
        let sixteen = STANDARD.encode([0u8; 16]);
        let e = decrypt(&m, &format!("{salt}:{twelve}:{sixteen}:AAAA")).unwrap_err();
        assert_eq!(e, FormatError::Malformed("IV is not 16 bytes"));
    }

    #[test]
    fn short_master_keys_are_refused_without_quoting_them() {
        let e = MasterKey::new(&Secret::new("short-secret-key")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("16 characters"), "{msg}");
        assert!(msg.contains("at least 32"), "{msg}");
        assert!(!msg.contains("short-secret-key"), "{msg}");
        assert!(MasterKey::new(&Secret::new("x".repeat(32))).is_ok());
    }

    #[test]
    fn client_key_hash_is_lowercase_hex_sha256() {
        // sha256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hash_client_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let h = hash_client_key("cnp_live_29GFfm7sFog16pAgTtpU4r16");
        // The first hash in the fixture's data.sql for team-alpha.
        assert_eq!(
            h,
            "a626efb828e27886bef83e72f2749521f69557f777fd9ae3a7a6844b8f5533c4"
        );
        assert!(is_client_key_hash(&h));
        assert!(!is_client_key_hash(&h.to_uppercase()));
        assert!(client_key_matches("cnp_live_29GFfm7sFog16pAgTtpU4r16", &h));
        assert!(!client_key_matches("cnp_live_29GFfm7sFog16pAgTtpU4r17", &h));
    }

    #[test]
    fn known_answer_with_fixed_salt_and_iv_is_stable() {
        let m = master();
        let salt = [7u8; 32];
        let iv = [9u8; 16];
        let a = encrypt_with(&m, "hello", &salt, &iv).unwrap();
        let b = encrypt_with(&m, "hello", &salt, &iv).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(&format!(
            "{}:{}:",
            STANDARD.encode(salt),
            STANDARD.encode(iv)
        )));
        assert_eq!(decrypt(&m, &a).unwrap().expose(), "hello");
    }
}
