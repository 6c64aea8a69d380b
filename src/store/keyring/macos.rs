//! Keychain (macOS): no attributes of our own, so kind and metadata live in
//! a companion entry.

use super::{Backend, Fail, Limit, companion::CompanionBackend};

pub(crate) const LIMIT: Limit = Limit {
    max: None,
    utf16: false,
    name: "the macOS Keychain",
};

pub(crate) fn connect(service: &str) -> Result<Box<dyn Backend>, Fail> {
    let store = apple_native_keyring_store::keychain::Store::new();
    let store = store.map_err(|e| Fail::Unavailable(format!("keyring: {e}")))?;
    Ok(Box::new(CompanionBackend::new(store, service)))
}
