//! Scaffolding shared by the stores' unit tests: unlock options that stretch
//! no key for long, and the credentials the tests write.

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::unlock::OpenOptions;

/// A passphrase under a 1,000-iteration KDF (allowed as weak), so a test
/// spends no time stretching keys. `pass` is a short tag ("pw", "other"):
/// the passphrase is the tag with a fixed suffix, so it passes the rule for
/// new passphrases while different tags stay different passphrases.
pub fn weak_opts(pass: &str) -> OpenOptions {
    OpenOptions {
        passphrase: Some(Secret::new(test_passphrase(pass))),
        ..no_key()
    }
}

/// The passphrase [`weak_opts`] uses for the tag `pass`.
pub fn test_passphrase(pass: &str) -> String {
    format!("{pass} unit-test passphrase")
}

/// Weak KDFs allowed, and no passphrase or key file at all.
pub fn no_key() -> OpenOptions {
    OpenOptions {
        allow_weak_kdf: true,
        kdf_iterations: 1000,
        ..OpenOptions::default()
    }
}

/// An API key at `ns/name` holding `secret`.
pub fn api_key(ns: &str, name: &str, secret: &str) -> Credential {
    Credential::new(CredentialId::new(ns, name), Kind::ApiKey, secret)
}

/// [`api_key`] with a `label` (`ns-name`) in its metadata, for stores that
/// keep metadata.
pub fn labelled(ns: &str, name: &str, secret: &str) -> Credential {
    let mut m = Metadata::new();
    m.insert("label".into(), format!("{ns}-{name}").into());
    api_key(ns, name, secret).with_metadata(m)
}
