//! Secret Service (freedesktop) on Linux and the BSDs.

use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::api::CredentialStoreApi;
use secret_service::blocking::SecretService;
use secret_service::{EncryptionType, Error as SsError};
use zeroize::Zeroize;

use super::{ATTR_KIND, ATTR_METADATA, Backend, Fail, Limit, Listed, NO_FALLBACK, State, Stored};
use crate::credential::Secret;

pub(crate) const LIMIT: Limit = Limit {
    max: None,
    utf16: false,
    name: "the Secret Service",
};

pub(crate) fn connect(service: &str) -> Result<Box<dyn Backend>, Fail> {
    // Transport encryption on: secrets cross D-Bus inside a DH session.
    let ss = SecretService::connect(EncryptionType::Dh).map_err(unavailable)?;
    let store = zbus_secret_service_keyring_store::Store::new()
        .map_err(|e| Fail::Unavailable(core_error(e)))?;
    Ok(Box::new(SecretServiceBackend {
        service: service.to_string(),
        ss,
        store,
    }))
}

struct SecretServiceBackend {
    service: String,
    /// Lock state and lock-aware search (keyring-core's search unlocks
    /// locked items with a prompt; we report them instead).
    ss: SecretService<'static>,
    /// keyring 4's Secret Service store: every read, write and delete.
    store: Arc<zbus_secret_service_keyring_store::Store>,
}

fn unavailable(e: SsError) -> Fail {
    let unset = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|v| v.is_empty());
    let text = e.to_string();
    let what = if unset {
        format!(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set; run inside a \
             desktop session or dbus-run-session): {text}"
        )
    } else if matches!(e, SsError::Unavailable) {
        "no Secret Service reachable: the D-Bus session bus is not there or has no Secret \
         Service provider (start gnome-keyring-daemon, KeePassXC's Secret Service \
         integration or KWallet)"
            .to_string()
    } else if text.contains("ServiceUnknown") || text.contains("NameHasNoOwner") {
        "the D-Bus session bus has no Secret Service provider (start gnome-keyring-daemon, \
         KeePassXC's Secret Service integration or KWallet)"
            .to_string()
    } else {
        format!("cannot open a Secret Service session: {text}")
    };
    Fail::Unavailable(format!("{what}; {NO_FALLBACK}"))
}

fn ss_fail(e: SsError) -> Fail {
    match e {
        SsError::Locked | SsError::Prompt | SsError::PromptDisconnected => Fail::Locked(
            "the keyring collection is locked; unlock it and run again (credshift does not \
             prompt)"
                .into(),
        ),
        SsError::Unavailable => unavailable(e),
        other => Fail::Item(format!("Secret Service error: {other}")),
    }
}

/// keyring-core errors in our words. `BadEncoding` and `BadDataFormat`
/// carry the raw value: wipe it, never print it.
fn core_error(e: keyring_core::Error) -> String {
    use keyring_core::Error as E;
    match e {
        E::PlatformFailure(p) => format!("Secret Service error: {p}"),
        E::NoStorageAccess(p) => format!("no access to the keyring: {p}"),
        E::NoEntry => "no such entry".into(),
        E::BadEncoding(mut v) => {
            v.zeroize();
            "the stored value is not UTF-8 text".into()
        }
        E::BadDataFormat(mut v, _) => {
            v.zeroize();
            "the stored value has an unexpected format".into()
        }
        E::BadStoreFormat(s) => format!("the keyring store is malformed: {s}"),
        E::TooLong(what, max) => format!("{what} is longer than the keyring's limit of {max}"),
        E::Invalid(what, why) => format!("invalid {what}: {why}"),
        E::Ambiguous(v) => format!(
            "{} keyring items match this entry; credshift will not guess which",
            v.len()
        ),
        E::NoDefaultStore => "no keyring store is set up".into(),
        E::NotSupportedByStore(s) => format!("not supported by the keyring: {s}"),
        _ => "unknown keyring error".into(),
    }
}

fn core_fail(e: keyring_core::Error) -> Fail {
    match e {
        keyring_core::Error::NoStorageAccess(_) => Fail::Locked(format!(
            "{}; unlock the keyring and run again (credshift does not prompt)",
            core_error(e)
        )),
        other => Fail::Item(core_error(other)),
    }
}

impl SecretServiceBackend {
    /// Items of this service (and user, when given): (unlocked, locked) counts
    /// checked before any keyring-core call, so that nothing prompts.
    fn guard(&self, user: &str) -> Result<usize, Fail> {
        let found = self
            .ss
            .search_items(HashMap::from([
                ("service", self.service.as_str()),
                ("username", user),
            ]))
            .map_err(ss_fail)?;
        if !found.locked.is_empty() {
            return Err(ss_fail(SsError::Locked));
        }
        if found.unlocked.len() > 1 {
            return Err(Fail::Item(format!(
                "{} keyring items match this entry; credshift will not guess which",
                found.unlocked.len()
            )));
        }
        Ok(found.unlocked.len())
    }

    fn entry(&self, user: &str) -> Result<keyring_core::Entry, Fail> {
        let label = format!("{} {user} (credshift)", self.service);
        let mods = HashMap::from([("label", label.as_str())]);
        self.store
            .build(&self.service, user, Some(&mods))
            .map_err(core_fail)
    }
}

impl Backend for SecretServiceBackend {
    fn state(&mut self) -> Result<State, Fail> {
        let mut st = State::default();
        match self.ss.get_default_collection() {
            Ok(c) => {
                st.locked = c.is_locked().map_err(ss_fail)?;
                st.writable = true;
                // gnome-keyring's `session` collection lives in memory only.
                st.persistent = !c.collection_path.as_str().ends_with("/session");
            }
            Err(SsError::NoResult) => {
                st.warnings.push(
                    "the Secret Service has no default collection: writes fail until one \
                     exists (create a `login` keyring)"
                        .into(),
                );
                st.persistent = true;
            }
            Err(e) => return Err(ss_fail(e)),
        }
        let found = self
            .ss
            .search_items(HashMap::from([("service", self.service.as_str())]))
            .map_err(ss_fail)?;
        st.item_count = found.unlocked.len() + found.locked.len();
        if !found.locked.is_empty() && !st.locked {
            st.warnings.push(format!(
                "{} items of service {:?} are in a locked collection",
                found.locked.len(),
                self.service
            ));
        }
        Ok(st)
    }

    fn list(&mut self) -> Result<Vec<Listed>, Fail> {
        let found = self
            .ss
            .search_items(HashMap::from([("service", self.service.as_str())]))
            .map_err(ss_fail)?;
        if !found.locked.is_empty() {
            // A partial list would let a migration "complete" without
            // them: the store as a whole is not readable until unlocked.
            return Err(Fail::Locked(format!(
                "{} items of service {:?} are in a locked collection; unlock it and run \
                 again (credshift does not prompt)",
                found.locked.len(),
                self.service
            )));
        }
        let mut out = Vec::with_capacity(found.unlocked.len());
        for item in &found.unlocked {
            match item.get_attributes() {
                Ok(mut attrs) => match attrs.remove("username") {
                    Some(user) => out.push(Listed::Item {
                        user,
                        kind: attrs.remove(ATTR_KIND),
                        metadata: attrs.remove(ATTR_METADATA),
                    }),
                    None => out.push(Listed::Bad {
                        location: format!("item {}", item.item_path.as_str()),
                        error: "has no username attribute".into(),
                    }),
                },
                Err(e) => out.push(Listed::Bad {
                    location: format!("item {}", item.item_path.as_str()),
                    error: match ss_fail(e) {
                        Fail::Locked(s) | Fail::Unavailable(s) | Fail::Item(s) => s,
                        Fail::Timeout { .. } => "timed out".into(),
                    },
                }),
            }
        }
        Ok(out)
    }

    fn get(&mut self, user: &str) -> Result<Option<Stored>, Fail> {
        if self.guard(user)? == 0 {
            return Ok(None);
        }
        let entry = self.entry(user)?;
        let bytes = match entry.get_secret() {
            Ok(b) => b,
            Err(keyring_core::Error::NoEntry) => return Ok(None),
            Err(e) => return Err(core_fail(e)),
        };
        let secret = match String::from_utf8(bytes) {
            Ok(s) => Secret::new(s),
            Err(e) => {
                e.into_bytes().zeroize();
                return Err(Fail::Item("the stored value is not UTF-8 text".into()));
            }
        };
        let mut attrs = entry.get_attributes().map_err(core_fail)?;
        Ok(Some(Stored {
            secret,
            kind: attrs.remove(ATTR_KIND),
            metadata: attrs.remove(ATTR_METADATA),
        }))
    }

    fn set(&mut self, user: &str, secret: &Secret, kind: &str, metadata: &str) -> Result<(), Fail> {
        let existed = self.guard(user)? == 1;
        if !existed {
            match self.ss.get_default_collection() {
                Ok(c) if c.is_locked().map_err(ss_fail)? => {
                    return Err(ss_fail(SsError::Locked));
                }
                Ok(_) => {}
                Err(SsError::NoResult) => {
                    return Err(Fail::Unavailable(
                        "the Secret Service has no default collection to write to".into(),
                    ));
                }
                Err(e) => return Err(ss_fail(e)),
            }
        }
        let entry = self.entry(user)?;
        entry
            .set_secret(secret.expose().as_bytes())
            .map_err(core_fail)?;
        let attrs = HashMap::from([(ATTR_KIND, kind), (ATTR_METADATA, metadata)]);
        if let Err(e) = entry.update_attributes(&attrs) {
            // A new item without its kind and metadata would read back
            // wrong: take it away again.
            if !existed {
                let _ = entry.delete_credential();
            }
            return Err(core_fail(e));
        }
        Ok(())
    }

    fn delete(&mut self, user: &str) -> Result<bool, Fail> {
        if self.guard(user)? == 0 {
            return Ok(false);
        }
        match self.entry(user)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(core_fail(e)),
        }
    }
}
