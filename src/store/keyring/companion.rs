//! A backend over any keyring-core store that keeps kind and metadata in a
//! companion entry (`SERVICE#credshift`, same user) and lists through the
//! store's search. The keyring tests' in-memory keyring runs on it (over an
//! in-memory keyring-core store); no supported platform needs it in the binary
//! (a Secret Service has attributes of its own).

use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::{CredentialStore, Error as E};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{Backend, COMPANION_SUFFIX, Fail, Listed, State, Stored};
use crate::credential::Secret;

#[derive(Serialize, Deserialize)]
struct Companion {
    kind: String,
    metadata: serde_json::Value,
}

/// A companion entry's text as (kind, metadata as JSON text).
pub(crate) fn parse(text: &str) -> Result<(String, String), Fail> {
    serde_json::from_str::<Companion>(text)
        .map(|c| (c.kind, c.metadata.to_string()))
        .map_err(|_| Fail::Item("its credshift companion entry is not valid".into()))
}

pub(crate) struct CompanionBackend {
    store: Arc<CredentialStore>,
    service: String,
    meta_service: String,
}

fn fail(e: E) -> Fail {
    match e {
        E::NoStorageAccess(p) => Fail::Locked(format!(
            "no access to the keyring ({p}); unlock it and run again"
        )),
        E::BadEncoding(mut v) => {
            v.zeroize();
            Fail::Item("the stored value is not UTF-8 text".into())
        }
        E::BadDataFormat(mut v, _) => {
            v.zeroize();
            Fail::Item("the stored value has an unexpected format".into())
        }
        E::PlatformFailure(p) => Fail::Item(format!("keyring error: {p}")),
        E::TooLong(what, max) => Fail::Item(format!(
            "{what} is longer than the keyring's limit of {max}"
        )),
        E::Ambiguous(v) => Fail::Item(format!(
            "{} keyring entries match; credshift will not guess which",
            v.len()
        )),
        E::NoEntry => Fail::Item("no such entry".into()),
        E::Invalid(what, why) => Fail::Item(format!("invalid {what}: {why}")),
        E::NotSupportedByStore(s) => Fail::Item(format!("not supported by the keyring: {s}")),
        E::BadStoreFormat(s) => Fail::Item(format!("the keyring store is malformed: {s}")),
        E::NoDefaultStore => Fail::Unavailable("no keyring store is set up".into()),
        _ => Fail::Item("unknown keyring error".into()),
    }
}

impl CompanionBackend {
    pub(crate) fn new(store: Arc<CredentialStore>, service: &str) -> Self {
        CompanionBackend {
            store,
            service: service.to_string(),
            meta_service: format!("{service}{COMPANION_SUFFIX}"),
        }
    }

    fn entry(&self, service: &str, user: &str) -> Result<keyring_core::Entry, Fail> {
        self.store.build(service, user, None).map_err(fail)
    }

    /// Kind and metadata (JSON text) from the companion entry, if any.
    fn companion(&self, user: &str) -> Result<Option<(String, String)>, Fail> {
        match self.entry(&self.meta_service, user)?.get_password() {
            Ok(mut text) => {
                let parsed = parse(&text);
                text.zeroize();
                parsed.map(|(kind, metadata)| Some((kind, metadata)))
            }
            Err(E::NoEntry) => Ok(None),
            Err(e) => Err(fail(e)),
        }
    }

    fn users(&self) -> Result<Vec<String>, Fail> {
        #[cfg(target_os = "windows")]
        let spec = HashMap::from([(
            "pattern".to_string(),
            format!("\\.{}$", regex_escape(&self.service)),
        )]);
        #[cfg(not(target_os = "windows"))]
        let spec = HashMap::from([("service".to_string(), self.service.clone())]);
        let spec: HashMap<&str, &str> =
            spec.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let found = self.store.search(&spec).map_err(fail)?;
        let mut users: Vec<String> = found
            .iter()
            .filter_map(|e| e.get_specifiers())
            .filter(|(s, _)| *s == self.service)
            .map(|(_, u)| u)
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }
}

#[cfg_attr(not(target_os = "windows"), allow(dead_code))]
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

impl Backend for CompanionBackend {
    fn state(&mut self) -> Result<State, Fail> {
        Ok(State {
            locked: false,
            writable: true,
            persistent: matches!(
                self.store.persistence(),
                keyring_core::CredentialPersistence::UntilDelete
                    | keyring_core::CredentialPersistence::Unspecified
            ),
            item_count: self.users()?.len(),
            warnings: Vec::new(),
        })
    }

    fn list(&mut self) -> Result<Vec<Listed>, Fail> {
        let mut out = Vec::new();
        for user in self.users()? {
            match self.companion(&user) {
                Ok(c) => out.push(Listed::Item {
                    user,
                    kind: c.as_ref().map(|c| c.0.clone()),
                    metadata: c.map(|c| c.1),
                }),
                Err(Fail::Item(error)) => out.push(Listed::Bad {
                    location: user,
                    error,
                }),
                Err(other) => return Err(other),
            }
        }
        Ok(out)
    }

    fn get(&mut self, user: &str) -> Result<Option<Stored>, Fail> {
        let secret = match self.entry(&self.service, user)?.get_password() {
            Ok(s) => Secret::new(s),
            Err(E::NoEntry) => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let c = self.companion(user)?;
        Ok(Some(Stored {
            secret,
            kind: c.as_ref().map(|c| c.0.clone()),
            metadata: c.map(|c| c.1),
        }))
    }

    fn set(&mut self, user: &str, secret: &Secret, kind: &str, metadata: &str) -> Result<(), Fail> {
        let metadata: serde_json::Value = serde_json::from_str(metadata)
            .map_err(|_| Fail::Item("metadata is not valid JSON".into()))?;
        let companion = serde_json::to_string(&Companion {
            kind: kind.to_string(),
            metadata,
        })
        .map_err(|_| Fail::Item("metadata cannot be encoded".into()))?;
        // Companion first: a value is never visible without its kind.
        self.entry(&self.meta_service, user)?
            .set_password(&companion)
            .map_err(fail)?;
        self.entry(&self.service, user)?
            .set_password(secret.expose())
            .map_err(fail)
    }

    fn delete(&mut self, user: &str) -> Result<bool, Fail> {
        let existed = match self.entry(&self.service, user)?.delete_credential() {
            Ok(()) => true,
            Err(E::NoEntry) => false,
            Err(e) => return Err(fail(e)),
        };
        match self.entry(&self.meta_service, user)?.delete_credential() {
            Ok(()) | Err(E::NoEntry) => Ok(existed),
            Err(e) => Err(fail(e)),
        }
    }
}
