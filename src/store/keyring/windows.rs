//! Credential Manager (Windows): no attributes of our own, so kind and
//! metadata live in a companion entry.

use super::{Backend, Fail, Limit, companion::CompanionBackend};

pub(crate) const LIMIT: Limit = Limit {
    max: Some(super::WINDOWS_MAX_SECRET_BYTES),
    utf16: true,
    name: "Windows Credential Manager",
};

pub(crate) fn connect(service: &str) -> Result<Box<dyn Backend>, Fail> {
    let store = windows_native_keyring_store::Store::new();
    let store = store.map_err(|e| Fail::Unavailable(format!("keyring: {e}")))?;
    Ok(Box::new(CompanionBackend::new(store, service)))
}
