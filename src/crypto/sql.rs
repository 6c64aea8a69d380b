//! The encryption of credshift's own SQL tables, shared by `sqlite:PATH`
//! and `postgres://URL`: one scheme, two spellings of its meta row.
//!
//! - **Key.** Derived once per opened store from the KDF in the meta row
//!   (PBKDF2-HMAC-SHA256 with its iterations and salt, or a 32-byte key file
//!   used as it is), with the limits of [`KdfParams::from_stored`] checked
//!   before anything is derived.
//! - **Key check.** The meta row holds AES-256-GCM of a constant under the
//!   key, so a wrong passphrase is caught once, with a clear error, before
//!   any row is read or written.
//! - **Values.** Each value is sealed with AES-256-GCM under a fresh 12-byte
//!   nonce with the credential id as associated data, so a value copied to
//!   another row fails to decrypt. Kind and metadata (JSON, scrubbed of
//!   secrets) stay in the clear so that listing needs no key.
//!
//! The two stores landed with slightly different meta rows; both stay
//! readable exactly as written, and each store keeps writing its own
//! ([`Dialect`]):
//!
//! | | `sqlite:` | `postgres://` |
//! |---|---|---|
//! | key-file KDF | `none`, iterations and salt NULL | `key-file`, iterations 0, 16 random bytes of salt (NOT NULL columns) |
//! | key-check associated data | `credshift_meta` | `credshift:key-check` |
//!
//! This module names no store: the caller gives the unlock options and
//! reads and writes the rows.

use zeroize::Zeroize;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret, ct_eq_bytes};
use crate::crypto::aead::{self, NONCE_LEN};
use crate::crypto::envelope::{ALG_NONE, ALG_PBKDF2, KdfParams, KeySource, SALT_LEN, SealingKey};
use crate::crypto::kdf;
use crate::error::{Result, StoreError};
use crate::unlock::KeyOptions;

/// What the key check seals.
pub const CHECK_PLAINTEXT: &[u8] = b"credshift-key-check-v1";
/// The meta table's name, for error messages (both stores call it this).
const META_TABLE: &str = "credshift_meta";

/// How one store spells its meta row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The associated data of the key check.
    pub check_aad: &'static [u8],
    /// The KDF column's value for a key file.
    pub key_file_alg: &'static str,
    /// Whether a key-file row fills the iteration and salt columns with
    /// placeholders (0 and random bytes) that mean nothing.
    pub key_file_placeholders: bool,
}

/// `sqlite:PATH`.
pub const SQLITE: Dialect = Dialect {
    check_aad: b"credshift_meta",
    key_file_alg: ALG_NONE,
    key_file_placeholders: false,
};

/// `postgres://URL`.
pub const POSTGRES: Dialect = Dialect {
    check_aad: b"credshift:key-check",
    key_file_alg: "key-file",
    key_file_placeholders: true,
};

/// The KDF and key-check columns of a meta row, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct MetaRow {
    pub kdf: String,
    pub iterations: Option<i64>,
    pub salt: Option<Vec<u8>>,
    pub check_nonce: Vec<u8>,
    pub check_value: Vec<u8>,
}

impl std::fmt::Debug for MetaRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaRow")
            .field("kdf", &self.kdf)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A sealed value as stored, with the columns around it.
#[derive(Debug, Clone, Copy)]
pub struct SealedValue<'a> {
    pub kind: &'a str,
    pub metadata: &'a str,
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
}

/// The key of one table, derived once and checked against its meta row.
pub struct TableKey {
    key: SealingKey,
}

impl Dialect {
    /// The key and meta row of a table that has none yet, from what `opts`
    /// holds: a passphrase with a fresh salt and `kdf_iterations` (a weak
    /// count refused unless allowed), else the key file.
    pub fn new_key(&self, opts: &KeyOptions, location: &str) -> Result<(TableKey, MetaRow)> {
        self.new_key_from(SealingKey::for_options(opts, location)?)
    }

    /// [`Dialect::new_key`] for a key already made.
    pub fn new_key_from(&self, key: SealingKey) -> Result<(TableKey, MetaRow)> {
        let (check_nonce, check_value) = aead::seal(key.key(), self.check_aad, CHECK_PLAINTEXT)?;
        let (kdf, iterations, salt) = match key.params() {
            KdfParams::Pbkdf2 { iterations, salt } => (
                ALG_PBKDF2.to_string(),
                Some(i64::from(*iterations)),
                Some(salt.clone()),
            ),
            KdfParams::None if self.key_file_placeholders => (
                self.key_file_alg.to_string(),
                Some(0),
                Some(kdf::random_bytes::<SALT_LEN>()?.to_vec()),
            ),
            KdfParams::None => (self.key_file_alg.to_string(), None, None),
        };
        let row = MetaRow {
            kdf,
            iterations,
            salt,
            check_nonce: check_nonce.to_vec(),
            check_value,
        };
        Ok((TableKey { key }, row))
    }

    /// The KDF a stored meta row names, checked before any derivation
    /// (known algorithm, sane iteration count and salt).
    pub fn params(&self, row: &MetaRow, location: &str, allow_weak: bool) -> Result<KdfParams> {
        let loc = format!("{location} {META_TABLE}");
        if row.kdf == self.key_file_alg {
            if self.key_file_placeholders {
                return Ok(KdfParams::None);
            }
            return KdfParams::from_stored(
                ALG_NONE,
                row.iterations.map(i64::unsigned_abs),
                row.salt.clone(),
                &loc,
                allow_weak,
            );
        }
        if row.kdf != ALG_PBKDF2 {
            return Err(StoreError::parse(
                loc,
                format!(
                    "unsupported kdf {:?} (this credshift knows {ALG_PBKDF2} and {})",
                    row.kdf, self.key_file_alg
                ),
            ));
        }
        let iterations = match row.iterations {
            Some(n) => Some(u64::try_from(n).map_err(|_| StoreError::Crypto {
                location: loc.clone(),
                message: "negative PBKDF2 iteration count".into(),
            })?),
            None => None,
        };
        KdfParams::from_stored(ALG_PBKDF2, iterations, row.salt.clone(), &loc, allow_weak)
    }

    /// The key of a table whose meta row is `row`: the KDF checked, the key
    /// derived from what `opts` holds for it (the passphrase for PBKDF2, the
    /// key file for a key file), and verified against the key check.
    pub fn unlock(&self, row: &MetaRow, location: &str, opts: &KeyOptions) -> Result<TableKey> {
        let params = self.params(row, location, opts.allow_weak_kdf)?;
        let source = KeySource::for_params(opts, Some(&params), location)?;
        let key = SealingKey::derive(&params, &source, location)?;
        let nonce: [u8; NONCE_LEN] =
            row.check_nonce
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Crypto {
                    location: format!("{location} {META_TABLE}"),
                    message: "the key check nonce is not 12 bytes (the database was altered)"
                        .into(),
                })?;
        let ok = match aead::open(key.key(), &nonce, self.check_aad, &row.check_value) {
            Ok(plain) => ct_eq_bytes(&plain, CHECK_PLAINTEXT),
            Err(_) => false,
        };
        if !ok {
            return Err(StoreError::Crypto {
                location: location.to_string(),
                message: format!(
                    "{} for this store: the key check in {META_TABLE} does not match (or it \
                     was altered)",
                    match params {
                        KdfParams::None => "wrong key file",
                        KdfParams::Pbkdf2 { .. } => "wrong passphrase or key",
                    }
                ),
            });
        }
        Ok(TableKey { key })
    }
}

impl TableKey {
    pub fn params(&self) -> &KdfParams {
        self.key.params()
    }

    /// Seal one value under a fresh nonce with `aad` (the id as the row
    /// stores it) as associated data: (nonce, ciphertext || tag).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        aead::seal(self.key.key(), aad.as_bytes(), plaintext)
    }

    /// A value opened with `aad`, as bytes (a rekey moves them as they are).
    pub fn open_bytes(
        &self,
        aad: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| StoreError::Other("the nonce is not 12 bytes".into()))?;
        aead::open(self.key.key(), &nonce, aad.as_bytes(), ciphertext)
            .map_err(|_| StoreError::Other("cannot decrypt under this key".into()))
    }

    /// The credential `id` a row holds, its value opened with `aad` (the id
    /// as the row stores it). Errors name `location` and never the value.
    pub fn open(
        &self,
        id: CredentialId,
        aad: &str,
        value: &SealedValue<'_>,
        location: &str,
    ) -> Result<Credential> {
        let kind = parse_kind(value.kind, location)?;
        let metadata = parse_metadata(value.metadata, location)?;
        let nonce: [u8; NONCE_LEN] = value.nonce.try_into().map_err(|_| StoreError::Crypto {
            location: location.to_string(),
            message: "the nonce is not 12 bytes (the row was altered)".into(),
        })?;
        let mut plain = aead::open(self.key.key(), &nonce, aad.as_bytes(), value.ciphertext)
            .map_err(|_| StoreError::Crypto {
                location: location.to_string(),
                message: "cannot decrypt this value: it was altered, or copied from another id"
                    .into(),
            })?;
        let bytes = std::mem::take(&mut *plain);
        let secret = match String::from_utf8(bytes) {
            Ok(s) => Secret::new(s),
            Err(e) => {
                e.into_bytes().zeroize();
                return Err(StoreError::parse(
                    location,
                    "the decrypted value is not UTF-8",
                ));
            }
        };
        Ok(Credential {
            id,
            kind,
            secret,
            metadata,
        })
    }
}

/// A row's `kind` column.
pub fn parse_kind(text: &str, location: &str) -> Result<Kind> {
    text.parse::<Kind>()
        .map_err(|m| StoreError::parse(location, m))
}

/// A row's `metadata` column: a JSON object.
pub fn parse_metadata(text: &str, location: &str) -> Result<Metadata> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(StoreError::parse(location, "metadata is not a JSON object")),
        Err(e) => Err(StoreError::json(location, &e)),
    }
}

/// The metadata column's text for a credential: its public part as JSON.
pub fn metadata_json(c: &Credential) -> String {
    serde_json::Value::Object(crate::scrub::public(&c.metadata)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn passphrase(p: &str) -> KeySource {
        KeySource::Passphrase(Secret::new(p))
    }

    fn key_file(b: u8) -> KeySource {
        KeySource::Key(Zeroizing::new([b; 32]))
    }

    fn new(d: Dialect, source: &KeySource) -> (TableKey, MetaRow) {
        d.new_key_from(SealingKey::new(source, 1000).unwrap())
            .unwrap()
    }

    fn pass_opts(p: &str) -> KeyOptions {
        KeyOptions {
            passphrase: Some(Secret::new(p)),
            allow_weak_kdf: true,
            ..KeyOptions::default()
        }
    }

    fn key_opts(dir: &std::path::Path, b: u8) -> KeyOptions {
        let path = dir.join(format!("key-{b}"));
        std::fs::write(&path, [b; 32]).unwrap();
        KeyOptions {
            key_file: Some(path),
            ..KeyOptions::default()
        }
    }

    fn unlock(d: Dialect, row: &MetaRow, opts: &KeyOptions) -> Result<TableKey> {
        d.unlock(row, "db", opts)
    }

    fn value<'a>(nonce: &'a [u8], ct: &'a [u8]) -> SealedValue<'a> {
        SealedValue {
            kind: "api_key",
            metadata: "{\"label\":\"x\"}",
            nonce,
            ciphertext: ct,
        }
    }

    #[test]
    fn each_dialect_writes_its_own_meta_row_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        for d in [SQLITE, POSTGRES] {
            let (_, row) = new(d, &passphrase("pw"));
            assert_eq!(row.kdf, "pbkdf2-hmac-sha256");
            assert_eq!(row.iterations, Some(1000));
            assert_eq!(row.salt.as_ref().map(Vec::len), Some(16));
            let k = unlock(d, &row, &pass_opts("pw")).unwrap();
            assert_eq!(k.params(), &d.params(&row, "db", true).unwrap());
            let e = unlock(d, &row, &pass_opts("other")).err().unwrap();
            assert!(e.to_string().contains("wrong passphrase or key"), "{e}");
        }
        let (_, row) = new(SQLITE, &key_file(1));
        assert_eq!(
            (row.kdf.as_str(), row.iterations, row.salt.clone()),
            ("none", None, None)
        );
        let (_, row) = new(POSTGRES, &key_file(1));
        assert_eq!((row.kdf.as_str(), row.iterations), ("key-file", Some(0)));
        assert_eq!(row.salt.as_ref().map(Vec::len), Some(16));
        assert!(unlock(POSTGRES, &row, &key_opts(dir.path(), 1)).is_ok());
        let e = unlock(POSTGRES, &row, &key_opts(dir.path(), 2))
            .err()
            .unwrap();
        assert!(e.to_string().contains("wrong key file"), "{e}");
    }

    #[test]
    fn a_key_check_of_one_dialect_does_not_open_as_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let (_, row) = new(SQLITE, &key_file(1));
        let row = MetaRow {
            kdf: "key-file".into(),
            ..row
        };
        assert!(unlock(POSTGRES, &row, &key_opts(dir.path(), 1)).is_err());
        // Each dialect knows only its own key-file spelling.
        let (_, row) = new(POSTGRES, &key_file(1));
        let e = SQLITE.params(&row, "db", true).unwrap_err();
        assert!(e.to_string().contains("unsupported kdf"), "{e}");
    }

    /// A meta row as the landed `sqlite:` store wrote it (key file, KDF
    /// `none`, key check under `credshift_meta`) and as the landed
    /// `postgres://` store wrote it (`key-file`, iterations 0, salt, key
    /// check under `credshift:key-check`), built here by hand from their
    /// spellings: both open.
    #[test]
    fn meta_rows_in_the_landed_formats_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = [7u8; 32];
        let (n, c) = aead::seal(&key, b"credshift_meta", b"credshift-key-check-v1").unwrap();
        let sqlite_row = MetaRow {
            kdf: "none".into(),
            iterations: None,
            salt: None,
            check_nonce: n.to_vec(),
            check_value: c,
        };
        assert!(unlock(SQLITE, &sqlite_row, &key_opts(dir.path(), 7)).is_ok());
        let (n, c) = aead::seal(&key, b"credshift:key-check", b"credshift-key-check-v1").unwrap();
        let pg_row = MetaRow {
            kdf: "key-file".into(),
            iterations: Some(0),
            salt: Some(vec![9; 16]),
            check_nonce: n.to_vec(),
            check_value: c,
        };
        assert!(unlock(POSTGRES, &pg_row, &key_opts(dir.path(), 7)).is_ok());
    }

    #[test]
    fn stored_kdf_limits_are_checked_before_deriving() {
        let (_, row) = new(SQLITE, &passphrase("pw"));
        for (n, needle) in [
            (-1, "negative"),
            (0, "0 PBKDF2"),
            (4_000_000_000, "limit is 10000000"),
        ] {
            let bad = MetaRow {
                iterations: Some(n),
                ..row.clone()
            };
            for d in [SQLITE, POSTGRES] {
                let e = unlock(d, &bad, &pass_opts("pw")).err().unwrap();
                assert!(e.to_string().contains(needle), "{n}: {e}");
            }
        }
        let strict = KeyOptions {
            allow_weak_kdf: false,
            ..pass_opts("pw")
        };
        let weak = SQLITE.unlock(&row, "db", &strict);
        assert!(weak.err().unwrap().to_string().contains("--allow-weak-kdf"));
        let bad_nonce = MetaRow {
            check_nonce: vec![1; 11],
            ..row
        };
        let e = unlock(SQLITE, &bad_nonce, &pass_opts("pw")).err().unwrap();
        assert!(e.to_string().contains("not 12 bytes"), "{e}");
    }

    #[test]
    fn values_are_bound_to_their_id_and_key() {
        let (k, _) = new(POSTGRES, &key_file(3));
        let (nonce, ct) = k.seal("openai/api_key", b"secret").unwrap();
        let (nonce2, _) = k.seal("openai/api_key", b"secret").unwrap();
        assert_ne!(nonce, nonce2, "a fresh nonce per value");
        let id = CredentialId::new("openai", "api_key");
        let c = k
            .open(id.clone(), "openai/api_key", &value(&nonce, &ct), "row")
            .unwrap();
        assert_eq!(c.secret.expose(), "secret");
        assert_eq!(c.kind, Kind::ApiKey);
        assert_eq!(c.metadata["label"], "x");
        let e = k
            .open(id.clone(), "openai/other", &value(&nonce, &ct), "row")
            .unwrap_err();
        assert!(e.to_string().contains("another id"), "{e}");
        let (other, _) = new(POSTGRES, &key_file(4));
        assert!(
            other
                .open(id.clone(), "openai/api_key", &value(&nonce, &ct), "row")
                .is_err()
        );
        let e = k
            .open(
                id.clone(),
                "openai/api_key",
                &value(&nonce[..11], &ct),
                "row",
            )
            .unwrap_err();
        assert!(e.to_string().contains("not 12 bytes"), "{e}");
        let (n, ct) = k.seal("a/b", &[0xff, 0xfe]).unwrap();
        let e = k
            .open(CredentialId::new("a", "b"), "a/b", &value(&n, &ct), "row")
            .unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn kind_and_metadata_columns_are_checked() {
        assert!(parse_kind("nonsense", "row").is_err());
        assert_eq!(parse_kind("api_key", "row").unwrap(), Kind::ApiKey);
        assert!(parse_metadata("[1]", "row").is_err());
        assert!(parse_metadata("{", "row").is_err());
        assert!(parse_metadata("{}", "row").unwrap().is_empty());
    }
}
