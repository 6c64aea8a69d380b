//! `bundle:PATH`: a passphrase-protected transfer file for another device.
//! It is exactly the `encrypted:` envelope (see `crypto::envelope`): one
//! file, every credential with its metadata, AES-256-GCM under a key from
//! PBKDF2 (or a 32-byte key file). Every algorithm is in Web Crypto, so a
//! browser can open a bundle too. The store code is the encrypted store's.

use crate::error::{Result, StoreError};
use crate::store::encrypted::EnvelopeFileStore;
use crate::store::{Store, StoreSpec};
use crate::unlock::KeyOptions;

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    match spec {
        StoreSpec::Bundle(path) => Ok(Box::new(EnvelopeFileStore::new(
            spec.clone(),
            path.clone(),
            opts,
        ))),
        _ => Err(StoreError::Other(format!(
            "{spec}: not a bundle: spec (internal error)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{api_key, weak_opts};

    #[test]
    fn a_bundle_opens_as_an_encrypted_file_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("transfer.bundle");
        let opts = weak_opts("pw");
        let bundle = open(&StoreSpec::Bundle(p.clone()), &opts).unwrap();
        assert_eq!(bundle.spec().scheme(), "bundle");
        let c = api_key("openai", "api_key", "sk-x");
        bundle.write(&c).unwrap();
        let enc = crate::store::encrypted::open(&StoreSpec::Encrypted(p), &opts).unwrap();
        assert!(enc.read(&c.id).unwrap().unwrap().same_as(&c));
        assert!(bundle.probe().encrypted_at_rest);
    }

    #[test]
    fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("transfer.bundle");
        let opts = weak_opts("pw");
        crate::store::test_support::assert_compare_and_delete_keeps_a_racing_write(
            open(&StoreSpec::Bundle(p.clone()), &opts).unwrap().as_ref(),
            open(&StoreSpec::Bundle(p), &opts).unwrap(),
            &api_key("openai", "api_key", "sk-1"),
            &api_key("openai", "api_key", "sk-theirs"),
        );
    }

    #[test]
    fn a_key_file_bundle_warns_that_the_key_must_travel_too() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        crate::crypto::kdf::generate_key_file(&key).unwrap();
        let opts = KeyOptions {
            key_file: Some(key),
            ..KeyOptions::default()
        };
        let bundle = open(&StoreSpec::Bundle(dir.path().join("b.bundle")), &opts).unwrap();
        let cap = bundle.probe();
        assert!(
            cap.warnings
                .iter()
                .any(|w| w.contains("needs that key file")),
            "{cap:?}"
        );
        let enc = crate::store::encrypted::open(&StoreSpec::Encrypted(dir.path().join("e")), &opts)
            .unwrap();
        assert!(enc.probe().warnings.is_empty());
    }
}
