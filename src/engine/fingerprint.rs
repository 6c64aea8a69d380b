//! Keyed fingerprints for the journal: HMAC-SHA256, truncated to 128 bits.
//! The key is derived from the migration's backup key (the passphrase,
//! stretched with the backup's own salt and iterations, or the backup's key
//! file) and the migration id; it is never written anywhere. Without that
//! key a fingerprint cannot confirm a guessed value (never a plain hash of a
//! secret). Migrations journaled before this kept a random key in
//! `fingerprint.key`; [`FpKey::load`] still reads it for their recovery.

use std::path::Path;

use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

use crate::credential::{Credential, ct_eq_bytes};
use crate::error::StoreError;

pub const KEY_FILE: &str = "fingerprint.key";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub struct FpKey(Zeroizing<[u8; 32]>);

impl FpKey {
    pub fn generate() -> Result<FpKey, StoreError> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut k[..])
            .map_err(|e| StoreError::Other(format!("no randomness available: {e}")))?;
        Ok(FpKey(k))
    }

    /// A placeholder key of zeros, for a value that is replaced before use.
    pub(crate) fn unkeyed() -> FpKey {
        FpKey(Zeroizing::new([0u8; 32]))
    }

    /// The fingerprint key of a migration: HMAC-SHA256 of the migration id
    /// under the backup's derived key, with its own label.
    pub fn derive(backup_key: &[u8], migration_id: &str) -> FpKey {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(backup_key)
            .expect("HMAC accepts any key length");
        m.update(b"credshift-fingerprint-key-v2");
        m.update(&(migration_id.len() as u64).to_be_bytes());
        m.update(migration_id.as_bytes());
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&m.finalize().into_bytes());
        FpKey(k)
    }

    /// A legacy migration folder's key file, if it has one.
    pub fn load_legacy(dir: &Path) -> Result<Option<FpKey>, StoreError> {
        if dir.join(KEY_FILE).exists() {
            FpKey::load(dir).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn load(dir: &Path) -> Result<FpKey, StoreError> {
        let path = dir.join(KEY_FILE);
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?);
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(StoreError::parse(
                path.display().to_string(),
                "fingerprint key must be 32 bytes",
            ));
        }
        k.copy_from_slice(&bytes);
        Ok(FpKey(k))
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> Fp {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.0[..])
            .expect("HMAC accepts any key length");
        m.update(domain);
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        let out = m.finalize().into_bytes();
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&out[..16]);
        Fp(Repr::Mac(fp))
    }

    /// Fingerprint of the id and secret value.
    pub fn value(&self, c: &Credential) -> Fp {
        self.mac(
            b"credshift-fp-value-v1",
            &[c.id.to_string().as_bytes(), c.secret.expose().as_bytes()],
        )
    }

    /// Fingerprint of the id, kind and metadata.
    pub fn meta(&self, c: &Credential) -> Fp {
        let meta = serde_json::to_string(&c.metadata).unwrap_or_default();
        self.mac(
            b"credshift-fp-meta-v1",
            &[
                c.id.to_string().as_bytes(),
                c.kind.as_str().as_bytes(),
                meta.as_bytes(),
            ],
        )
    }
}

/// A fingerprint as the journal holds it: 32 lowercase hex digits in the
/// file, kept as its 16 bytes in memory (a `String` was 72 bytes per
/// fingerprint, three per planned item, for the whole run). Any other text
/// (a journal from elsewhere) is kept as it is and written back as it was.
#[derive(Clone, PartialEq, Eq)]
pub struct Fp(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Mac([u8; 16]),
    Text(Box<str>),
}

impl Fp {
    /// The journal's text of the fingerprint.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.0 {
            Repr::Mac(b) => hex::encode(b).into(),
            Repr::Text(t) => std::borrow::Cow::Borrowed(t),
        }
    }
}

impl std::str::FromStr for Fp {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Fp, Self::Err> {
        let mut b = [0u8; 16];
        let lower_hex = s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        Ok(if lower_hex && hex::decode_to_slice(s, &mut b).is_ok() {
            Fp(Repr::Mac(b))
        } else {
            Fp(Repr::Text(s.into()))
        })
    }
}

// Not the value: a fingerprint in a debug print says only what it is.
impl std::fmt::Debug for Fp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fp(..)")
    }
}

impl serde::Serialize for Fp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Mac(b) => {
                let mut buf = [0u8; 32];
                // Infallible: 32 bytes of room for 16 bytes of hex.
                let text = hex::encode_to_slice(b, &mut buf)
                    .ok()
                    .and_then(|()| std::str::from_utf8(&buf).ok())
                    .unwrap_or_default();
                s.serialize_str(text)
            }
            Repr::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Fp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fp, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(s.parse()
            .unwrap_or_else(|e: std::convert::Infallible| match e {}))
    }
}

/// Constant-time comparison of two fingerprints (as the journal's text
/// when one of them is not a 16-byte MAC, as before they were bytes).
pub fn same(a: &Fp, b: &Fp) -> bool {
    match (&a.0, &b.0) {
        (Repr::Mac(x), Repr::Mac(y)) => ct_eq_bytes(x, y),
        _ => ct_eq_bytes(a.text().as_bytes(), b.text().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{CredentialId, Kind};
    use crate::fsutil;

    #[test]
    fn fingerprints_depend_on_key_value_and_id() {
        let k1 = FpKey::generate().unwrap();
        let k2 = FpKey::generate().unwrap();
        let a = Credential::new(CredentialId::new("a", "b"), Kind::ApiKey, "sk-value-one");
        let b = Credential::new(CredentialId::new("a", "b"), Kind::ApiKey, "sk-value-two");
        let c = Credential::new(CredentialId::new("a", "c"), Kind::ApiKey, "sk-value-one");
        assert_eq!(k1.value(&a), k1.value(&a.clone()));
        assert_ne!(k1.value(&a), k1.value(&b));
        assert_ne!(k1.value(&a), k1.value(&c));
        assert_ne!(k1.value(&a), k2.value(&a));
        assert_eq!(k1.value(&a).text().len(), 32);
        assert!(!k1.value(&a).text().contains("value"));
    }

    #[test]
    fn a_fingerprint_is_kept_as_bytes_and_written_back_as_it_was_read() {
        let k = FpKey::derive(&[7u8; 32], "m1");
        let c = Credential::new(CredentialId::new("a", "b"), Kind::ApiKey, "x");
        let f = k.value(&c);
        assert!(matches!(f.0, Repr::Mac(_)));
        assert_eq!(std::mem::size_of::<Option<Fp>>(), 24);
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, format!("\"{}\"", f.text()));
        let back: Fp = serde_json::from_str(&json).unwrap();
        assert!(same(&back, &f) && back == f);
        // Text that is not 32 lowercase hex digits round-trips unchanged
        // and compares as text.
        for odd in ["\"ABCDEF0123456789ABCDEF0123456789\"", "\"abc\"", "\"\""] {
            let o: Fp = serde_json::from_str(odd).unwrap();
            assert!(matches!(o.0, Repr::Text(_)), "{odd}");
            assert_eq!(serde_json::to_string(&o).unwrap(), odd);
            assert!(!same(&o, &f));
        }
        let upper: Fp = f.text().to_uppercase().parse().unwrap();
        assert!(
            !same(&upper, &f),
            "the text differs, as when it was a string"
        );
        let as_text = Fp(Repr::Text(f.text().into()));
        assert!(same(&as_text, &f));
    }

    #[test]
    fn derived_keys_depend_on_the_backup_key_and_the_migration() {
        let c = Credential::new(CredentialId::new("a", "b"), Kind::ApiKey, "x");
        let k = FpKey::derive(&[7u8; 32], "m1");
        assert_eq!(k.value(&c), FpKey::derive(&[7u8; 32], "m1").value(&c));
        assert_ne!(k.value(&c), FpKey::derive(&[8u8; 32], "m1").value(&c));
        assert_ne!(k.value(&c), FpKey::derive(&[7u8; 32], "m2").value(&c));
    }

    #[test]
    fn a_legacy_key_file_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FpKey::load_legacy(dir.path()).unwrap().is_none());
        let k = FpKey::generate().unwrap();
        fsutil::atomic_write(&dir.path().join(KEY_FILE), &k.0[..]).unwrap();
        let again = FpKey::load_legacy(dir.path()).unwrap().unwrap();
        let c = Credential::new(CredentialId::new("a", "b"), Kind::ApiKey, "x");
        assert_eq!(k.value(&c), again.value(&c));
        assert_eq!(k.meta(&c), again.meta(&c));
    }
}
