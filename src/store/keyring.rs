//! `keyring:SERVICE`: the OS keyring, through keyring 4's stores
//! (keyring-core and its per-platform crates, linked directly as keyring
//! 4's README asks of applications: the `keyring` crate itself is only a
//! sample CLI plus a v1 shim over the same crates).
//!
//! Each credential is one entry of service `SERVICE` and user
//! `namespace/name`. Kind and metadata travel with it:
//!
//! - Secret Service (Linux, BSD): attributes `credshift.kind` and
//!   `credshift.metadata` (JSON) on the item; the session is DH-encrypted
//!   (the store's `crypto-rust` transport encryption), never plain. `list`
//!   searches by the `service` attribute. A locked collection is reported,
//!   never unlocked with a prompt behind the user's back.
//! - Keychain (macOS) and Credential Manager (Windows): a companion entry of
//!   service `SERVICE#credshift` and the same user holds `{"kind", "metadata"}`;
//!   `list` uses the platform search. Credential Manager holds at most 2560
//!   bytes (UTF-16) per secret, which `check` reports before the dry run ends.
//!
//! Every call runs on one worker thread per store and the caller waits at
//! most `OpenOptions::keyring_timeout`: a hung D-Bus call ends in
//! `StoreError::Timeout` naming the keyring and the operation, and the store
//! refuses further calls rather than queueing behind the hung one.

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::store::{Capability, Entry, Listing, LocationError, OpenOptions, Store, StoreSpec};

/// Secret Service attribute holding the credential kind (`api_key`, ...).
pub const ATTR_KIND: &str = "credshift.kind";
/// Secret Service attribute holding the metadata as a JSON object.
pub const ATTR_METADATA: &str = "credshift.metadata";
/// Suffix of the service of companion entries on platforms without attributes.
pub const COMPANION_SUFFIX: &str = "#credshift";
/// Windows Credential Manager's limit on a credential blob.
pub const WINDOWS_MAX_SECRET_BYTES: usize = 2560;

const NO_FALLBACK: &str = "credshift does not fall back to the session-only kernel keyring \
     (keyutils) or to a plaintext file; use encrypted:PATH instead";

pub fn open(spec: &StoreSpec, opts: &OpenOptions) -> Result<Box<dyn Store>> {
    let StoreSpec::Keyring(service) = spec else {
        return Err(StoreError::Other(format!("{spec} is not a keyring spec")));
    };
    let store = KeyringStore::with_backend(
        spec.clone(),
        service.clone(),
        opts.keyring_timeout,
        platform::LIMIT,
        Box::new(platform::connect),
    )?;
    Ok(Box::new(store))
}

/// Why a backend call failed. Messages are ours and never quote a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fail {
    /// The collection (or the item) is locked; we do not prompt.
    Locked(String),
    /// No keyring to talk to (no session bus, no Secret Service, ...).
    Unavailable(String),
    /// This one item could not be read, written or deleted.
    Item(String),
    /// The call did not return in time.
    Timeout { op: &'static str, seconds: u64 },
}

/// What `state` tells about the keyring as a whole.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub locked: bool,
    pub writable: bool,
    pub persistent: bool,
    pub item_count: usize,
    pub warnings: Vec<String>,
}

/// One entry of SERVICE as listed: the user plus what travels with it.
#[derive(Debug, Clone)]
pub(crate) enum Listed {
    Item {
        user: String,
        kind: Option<String>,
        metadata: Option<String>,
    },
    /// An entry that could not be looked at (locked, unreadable).
    Bad { location: String, error: String },
}

pub(crate) struct Stored {
    pub secret: Secret,
    pub kind: Option<String>,
    pub metadata: Option<String>,
}

/// A platform keyring. Lives on the worker thread only.
pub(crate) trait Backend {
    fn state(&mut self) -> Result<State, Fail>;
    fn list(&mut self) -> Result<Vec<Listed>, Fail>;
    fn get(&mut self, user: &str) -> Result<Option<Stored>, Fail>;
    fn set(&mut self, user: &str, secret: &Secret, kind: &str, metadata: &str) -> Result<(), Fail>;
    fn delete(&mut self, user: &str) -> Result<bool, Fail>;
}

pub(crate) type Connect = Box<dyn Fn(&str) -> Result<Box<dyn Backend>, Fail> + Send>;

/// How a platform limits secret size: `max` bytes as the platform encodes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub max: Option<usize>,
    pub utf16: bool,
    pub name: &'static str,
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The worker's side: connects lazily (connecting can hang too) and keeps
/// the connection for the next call.
struct Conn {
    service: String,
    connect: Connect,
    backend: Option<Box<dyn Backend>>,
}

impl Conn {
    fn backend(&mut self) -> Result<&mut dyn Backend, Fail> {
        if self.backend.is_none() {
            self.backend = Some((self.connect)(&self.service)?);
        }
        match self.backend.as_deref_mut() {
            Some(b) => Ok(b),
            None => Err(Fail::Unavailable("keyring connection lost".into())),
        }
    }
}

pub struct KeyringStore {
    spec: StoreSpec,
    timeout: Duration,
    limit: Limit,
    jobs: mpsc::Sender<Job>,
    /// The operation that timed out, once one has: later calls fail fast
    /// instead of queueing behind a call that may never return.
    stuck: Mutex<Option<&'static str>>,
}

impl KeyringStore {
    pub(crate) fn with_backend(
        spec: StoreSpec,
        service: String,
        timeout: Duration,
        limit: Limit,
        connect: Connect,
    ) -> Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("credshift-keyring".into())
            .spawn(move || {
                let mut conn = Conn {
                    service,
                    connect,
                    backend: None,
                };
                for job in rx {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Other(format!("{spec}: cannot start keyring worker: {e}")))?;
        Ok(KeyringStore {
            spec,
            timeout,
            limit,
            jobs,
            stuck: Mutex::new(None),
        })
    }

    fn seconds(&self) -> u64 {
        (self.timeout.as_millis().div_ceil(1000)) as u64
    }

    /// Run `f` on the worker and wait at most the timeout.
    fn call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Backend) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, Fail> {
        if let Some(prev) = *self.stuck.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Fail::Unavailable(format!(
                "an earlier keyring call ({prev}) timed out after {} s and has not returned; \
                 not trying again",
                self.seconds()
            )));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn: &mut Conn| {
            let r = conn.backend().and_then(f);
            let _ = tx.send(r);
        });
        if self.jobs.send(job).is_err() {
            return Err(Fail::Unavailable("the keyring worker has stopped".into()));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                *self.stuck.lock().unwrap_or_else(|p| p.into_inner()) = Some(op);
                Err(Fail::Timeout {
                    op,
                    seconds: self.seconds(),
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Fail::Unavailable(
                "the keyring worker stopped unexpectedly".into(),
            )),
        }
    }

    fn error(&self, fail: Fail, id: Option<&CredentialId>) -> StoreError {
        let store = self.spec.to_string();
        match fail {
            Fail::Locked(reason) | Fail::Unavailable(reason) => {
                StoreError::Unavailable { store, reason }
            }
            Fail::Item(reason) => match id {
                Some(id) => StoreError::item(id, format!("{store}: {reason}")),
                None => StoreError::Other(format!("{store}: {reason}")),
            },
            Fail::Timeout { op, seconds } => StoreError::Timeout {
                location: store,
                seconds,
                what: format!(
                    "keyring call `{op}` did not return (is the Secret Service hung? \
                     raise --keyring-timeout if it is only slow)"
                ),
            },
        }
    }

    /// Encoded size of a secret as the platform stores it.
    fn encoded_len(&self, secret: &Secret) -> usize {
        if self.limit.utf16 {
            secret.expose().encode_utf16().count() * 2
        } else {
            secret.expose().len()
        }
    }

    fn to_credential(&self, id: &CredentialId, stored: Stored) -> Result<Credential> {
        let kind = parse_kind(id, stored.kind.as_deref()).map_err(|e| self.bad_item(id, &e))?;
        let metadata =
            parse_metadata(stored.metadata.as_deref()).map_err(|e| self.bad_item(id, &e))?;
        Ok(Credential {
            id: id.clone(),
            kind,
            secret: stored.secret,
            metadata,
        })
    }

    fn bad_item(&self, id: &CredentialId, why: &str) -> StoreError {
        StoreError::parse(format!("{} {id}", self.spec), why)
    }
}

fn parse_kind(id: &CredentialId, attr: Option<&str>) -> Result<Kind, String> {
    match attr {
        None => Ok(Kind::guess(&id.name)),
        Some(s) => s
            .parse::<Kind>()
            .map_err(|_| format!("{ATTR_KIND} is not a known kind")),
    }
}

fn parse_metadata(attr: Option<&str>) -> Result<Metadata, String> {
    match attr {
        None => Ok(Metadata::new()),
        // Never pass serde's message on: it may quote the value.
        Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Err(format!("{ATTR_METADATA} is not a JSON object")),
            Err(_) => Err(format!("{ATTR_METADATA} is not valid JSON")),
        },
    }
}

impl Store for KeyringStore {
    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        match self.call("probe", |b| b.state()) {
            Ok(s) => {
                let mut warnings = s.warnings;
                if s.locked {
                    warnings.insert(
                        0,
                        "the keyring collection is locked: unlock it (log in to the desktop \
                         session, or open your keyring app) and run again; credshift does not \
                         prompt"
                            .into(),
                    );
                }
                if !s.persistent {
                    warnings.push(
                        "this keyring is session-only: its items vanish at logout or reboot, \
                         so it is not a safe migration target"
                            .into(),
                    );
                }
                Capability {
                    available: true,
                    reason: s.locked.then(|| "the keyring is locked".to_string()),
                    readable: !s.locked,
                    writable: !s.locked && s.writable,
                    persistent: s.persistent,
                    encrypted_at_rest: true,
                    max_secret_len: self.limit.max,
                    item_count: Some(s.item_count),
                    locked: Some(s.locked),
                    exists: true,
                    keeps_metadata: true,
                    warnings,
                }
            }
            Err(fail) => {
                let locked = matches!(fail, Fail::Locked(_));
                let reason = match self.error(fail, None) {
                    StoreError::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                };
                Capability {
                    locked: locked.then_some(true),
                    encrypted_at_rest: true,
                    keeps_metadata: true,
                    max_secret_len: self.limit.max,
                    ..Capability::unavailable(reason)
                }
            }
        }
    }

    fn list(&self) -> Result<Listing> {
        let found = self
            .call("list", |b| b.list())
            .map_err(|f| self.error(f, None))?;
        let mut listing = Listing::default();
        for l in found {
            match l {
                Listed::Bad { location, error } => listing.errors.push(LocationError {
                    location: format!("{} {location}", self.spec),
                    error,
                }),
                Listed::Item {
                    user,
                    kind,
                    metadata,
                } => {
                    let Ok(id) = user.parse::<CredentialId>() else {
                        listing.errors.push(LocationError {
                            location: format!("{} user {user:?}", self.spec),
                            error: "not a credshift entry: the user is not NAMESPACE/NAME".into(),
                        });
                        continue;
                    };
                    let parsed = parse_kind(&id, kind.as_deref())
                        .and_then(|k| parse_metadata(metadata.as_deref()).map(|m| (k, m)));
                    match parsed {
                        Ok((kind, metadata)) => listing.entries.push(Entry { id, kind, metadata }),
                        Err(error) => listing.errors.push(LocationError {
                            location: format!("{} {id}", self.spec),
                            error,
                        }),
                    }
                }
            }
        }
        listing.entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listing)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let user = id.to_string();
        match self.call("read", move |b| b.get(&user)) {
            Ok(Some(stored)) => self.to_credential(id, stored).map(Some),
            Ok(None) => Ok(None),
            Err(f) => Err(self.error(f, Some(id))),
        }
    }

    fn write(&self, c: &Credential) -> Result<()> {
        if let Some(why) = self.check(c) {
            return Err(StoreError::item(&c.id, format!("{}: {why}", self.spec)));
        }
        let user = c.id.to_string();
        let secret = c.secret.clone();
        let kind = c.kind.as_str();
        let metadata = serde_json::to_string(&crate::scrub::public(&c.metadata)).map_err(|_| {
            StoreError::item(&c.id, format!("{}: metadata cannot be encoded", self.spec))
        })?;
        self.call("write", move |b| b.set(&user, &secret, kind, &metadata))
            .map_err(|f| self.error(f, Some(&c.id)))
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let user = id.to_string();
        self.call("delete", move |b| b.delete(&user))
            .map_err(|f| self.error(f, Some(id)))
    }

    fn check(&self, c: &Credential) -> Option<String> {
        let max = self.limit.max?;
        let n = self.encoded_len(&c.secret);
        (n > max).then(|| {
            format!(
                "too long for {}: the secret takes {n} bytes there, at most {max} fit",
                self.limit.name
            )
        })
    }
}

/// Secret Service (freedesktop) on Linux and the BSDs.
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
mod platform {
    use std::collections::HashMap;
    use std::sync::Arc;

    use keyring_core::api::CredentialStoreApi;
    use secret_service::blocking::SecretService;
    use secret_service::{EncryptionType, Error as SsError};
    use zeroize::Zeroize;

    use super::{
        ATTR_KIND, ATTR_METADATA, Backend, Fail, Limit, Listed, NO_FALLBACK, State, Stored,
    };
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

        fn set(
            &mut self,
            user: &str,
            secret: &Secret,
            kind: &str,
            metadata: &str,
        ) -> Result<(), Fail> {
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
}

/// Keychain (macOS) and Credential Manager (Windows): no attributes of our
/// own, so kind and metadata live in a companion entry.
#[cfg(any(target_os = "macos", target_os = "windows"))]
mod platform {
    use super::{Backend, Fail, Limit, companion::CompanionBackend};

    #[cfg(target_os = "windows")]
    pub(crate) const LIMIT: Limit = Limit {
        max: Some(super::WINDOWS_MAX_SECRET_BYTES),
        utf16: true,
        name: "Windows Credential Manager",
    };
    #[cfg(target_os = "macos")]
    pub(crate) const LIMIT: Limit = Limit {
        max: None,
        utf16: false,
        name: "the macOS Keychain",
    };

    pub(crate) fn connect(service: &str) -> Result<Box<dyn Backend>, Fail> {
        #[cfg(target_os = "windows")]
        let store = windows_native_keyring_store::Store::new();
        #[cfg(target_os = "macos")]
        let store = apple_native_keyring_store::keychain::Store::new();
        let store = store.map_err(|e| Fail::Unavailable(format!("keyring: {e}")))?;
        Ok(Box::new(CompanionBackend::new(store, service)))
    }
}

#[cfg(not(any(
    target_os = "macos",
    target_os = "windows",
    all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )
)))]
mod platform {
    use super::{Backend, Fail, Limit};

    pub(crate) const LIMIT: Limit = Limit {
        max: None,
        utf16: false,
        name: "the OS keyring",
    };

    pub(crate) fn connect(_service: &str) -> Result<Box<dyn Backend>, Fail> {
        Err(Fail::Unavailable(
            "credshift has no OS keyring for this platform; use encrypted:PATH".into(),
        ))
    }
}

/// A backend over any keyring-core store that keeps kind and metadata in a
/// companion entry (`SERVICE#credshift`, same user) and lists through the
/// store's search. Used on macOS and Windows; built everywhere so that it
/// is compiled and tested on every platform.
#[cfg_attr(not(any(target_os = "macos", target_os = "windows")), allow(dead_code))]
pub(crate) mod companion {
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

        fn companion(&self, user: &str) -> Result<Option<Companion>, Fail> {
            match self.entry(&self.meta_service, user)?.get_password() {
                Ok(mut text) => {
                    let parsed = serde_json::from_str::<Companion>(&text).map_err(|_| {
                        Fail::Item("its credshift companion entry is not valid".into())
                    });
                    text.zeroize();
                    parsed.map(Some)
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
                        kind: c.as_ref().map(|c| c.kind.clone()),
                        metadata: c.map(|c| c.metadata.to_string()),
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
                kind: c.as_ref().map(|c| c.kind.clone()),
                metadata: c.map(|c| c.metadata.to_string()),
            }))
        }

        fn set(
            &mut self,
            user: &str,
            secret: &Secret,
            kind: &str,
            metadata: &str,
        ) -> Result<(), Fail> {
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
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};

    use keyring_core::api::{CredentialApi, CredentialStoreApi};

    use super::companion::CompanionBackend;
    use super::*;

    fn spec(service: &str) -> StoreSpec {
        StoreSpec::Keyring(service.into())
    }

    const NO_LIMIT: Limit = Limit {
        max: None,
        utf16: false,
        name: "test keyring",
    };

    /// A backend whose every call blocks until the test ends: a hung D-Bus.
    struct Hung(Mutex<mpsc::Receiver<()>>);
    impl Hung {
        fn wait<T>(&self) -> Result<T, Fail> {
            let _ = self.0.lock().unwrap().recv();
            Err(Fail::Item("released".into()))
        }
    }
    impl Backend for Hung {
        fn state(&mut self) -> Result<State, Fail> {
            self.wait()
        }
        fn list(&mut self) -> Result<Vec<Listed>, Fail> {
            self.wait()
        }
        fn get(&mut self, _: &str) -> Result<Option<Stored>, Fail> {
            self.wait()
        }
        fn set(&mut self, _: &str, _: &Secret, _: &str, _: &str) -> Result<(), Fail> {
            self.wait()
        }
        fn delete(&mut self, _: &str) -> Result<bool, Fail> {
            self.wait()
        }
    }

    #[test]
    fn a_hung_keyring_call_times_out_with_a_clear_error() {
        let (release, rx) = mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let store = KeyringStore::with_backend(
            spec("svc-hung"),
            "svc-hung".into(),
            Duration::from_millis(200),
            NO_LIMIT,
            Box::new(move |_| {
                let rx = rx.lock().unwrap().take().expect("connected once");
                Ok(Box::new(Hung(Mutex::new(rx))) as Box<dyn Backend>)
            }),
        )
        .unwrap();
        let id = CredentialId::new("openai", "api_key");
        let err = store.read(&id).unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Timeout { .. }), "{msg}");
        assert!(
            msg.starts_with("keyring:svc-hung: timed out after 1 s"),
            "{msg}"
        );
        assert!(msg.contains("`read`"), "{msg}");
        // Later calls do not queue behind the hung one.
        let c = Credential::new(id, Kind::ApiKey, "sk-never-written-anywhere");
        let err = store.write(&c).unwrap_err().to_string();
        assert!(
            err.contains("earlier keyring call (read) timed out"),
            "{err}"
        );
        assert!(!err.contains("never-written"), "{err}");
        let cap = store.probe();
        assert!(!cap.available);
        assert!(cap.reason.unwrap().contains("timed out"));
        drop(release);
    }

    #[test]
    fn a_connect_failure_is_reported_as_unavailable_with_its_reason() {
        let store = KeyringStore::with_backend(
            spec("svc-none"),
            "svc-none".into(),
            Duration::from_secs(5),
            NO_LIMIT,
            Box::new(|_| Err(Fail::Unavailable("no D-Bus session bus".into()))),
        )
        .unwrap();
        let cap = store.probe();
        assert!(!cap.available);
        assert_eq!(cap.reason.as_deref(), Some("no D-Bus session bus"));
        let err = store.list().unwrap_err();
        assert!(err.is_unavailable());
        assert_eq!(
            err.to_string(),
            "keyring:svc-none is unavailable: no D-Bus session bus"
        );
    }

    #[test]
    fn windows_limit_counts_utf16_bytes_in_check_and_write() {
        let store = KeyringStore::with_backend(
            spec("svc-win"),
            "svc-win".into(),
            Duration::from_secs(5),
            Limit {
                max: Some(WINDOWS_MAX_SECRET_BYTES),
                utf16: true,
                name: "Windows Credential Manager",
            },
            Box::new(|_| Err(Fail::Unavailable("not connected in this test".into()))),
        )
        .unwrap();
        let id = CredentialId::new("a", "b");
        let fits = Credential::new(id.clone(), Kind::ApiKey, "x".repeat(1280));
        assert_eq!(store.check(&fits), None);
        let long = Credential::new(id.clone(), Kind::ApiKey, "x".repeat(1281));
        let why = store.check(&long).expect("too long");
        assert!(why.contains("2562 bytes") && why.contains("2560"), "{why}");
        assert!(!why.contains("xxxx"), "{why}");
        // write refuses before it reaches the keyring.
        let err = store.write(&long).unwrap_err();
        assert!(matches!(err, StoreError::Item { .. }), "{err}");
        assert!(
            store.probe().max_secret_len == Some(WINDOWS_MAX_SECRET_BYTES),
            "dry runs see the limit"
        );
    }

    /// An in-memory keyring-core store with service search, standing in
    /// for Keychain / Credential Manager.
    type Shared = Arc<Mutex<BTreeMap<(String, String), Vec<u8>>>>;

    #[derive(Default)]
    struct MemStore(Shared);
    struct MemCred {
        map: Shared,
        key: (String, String),
    }
    impl CredentialApi for MemCred {
        fn set_secret(&self, secret: &[u8]) -> keyring_core::Result<()> {
            self.map
                .lock()
                .unwrap()
                .insert(self.key.clone(), secret.to_vec());
            Ok(())
        }
        fn get_secret(&self) -> keyring_core::Result<Vec<u8>> {
            self.map
                .lock()
                .unwrap()
                .get(&self.key)
                .cloned()
                .ok_or(keyring_core::Error::NoEntry)
        }
        fn delete_credential(&self) -> keyring_core::Result<()> {
            self.map
                .lock()
                .unwrap()
                .remove(&self.key)
                .map(|_| ())
                .ok_or(keyring_core::Error::NoEntry)
        }
        fn get_credential(&self) -> keyring_core::Result<Option<Arc<keyring_core::Credential>>> {
            Ok(None)
        }
        fn get_specifiers(&self) -> Option<(String, String)> {
            Some(self.key.clone())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }
    impl CredentialStoreApi for MemStore {
        fn vendor(&self) -> String {
            "test".into()
        }
        fn id(&self) -> String {
            "mem".into()
        }
        fn build(
            &self,
            service: &str,
            user: &str,
            _: Option<&HashMap<&str, &str>>,
        ) -> keyring_core::Result<keyring_core::Entry> {
            Ok(keyring_core::Entry::new_with_credential(Arc::new(
                MemCred {
                    map: self.0.clone(),
                    key: (service.into(), user.into()),
                },
            )))
        }
        fn search(
            &self,
            spec: &HashMap<&str, &str>,
        ) -> keyring_core::Result<Vec<keyring_core::Entry>> {
            let service = spec.get("service").copied().unwrap_or_default();
            let keys: Vec<_> = self
                .0
                .lock()
                .unwrap()
                .keys()
                .filter(|(s, _)| s == service)
                .cloned()
                .collect();
            Ok(keys
                .into_iter()
                .map(|key| {
                    keyring_core::Entry::new_with_credential(Arc::new(MemCred {
                        map: self.0.clone(),
                        key,
                    }))
                })
                .collect())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn mem_keyring(service: &str) -> (KeyringStore, Shared) {
        let mem = MemStore::default();
        let map = mem.0.clone();
        let store: Arc<keyring_core::CredentialStore> = Arc::new(mem);
        let store = KeyringStore::with_backend(
            spec(service),
            service.into(),
            Duration::from_secs(5),
            NO_LIMIT,
            Box::new(move |svc| {
                Ok(Box::new(CompanionBackend::new(store.clone(), svc)) as Box<dyn Backend>)
            }),
        )
        .unwrap();
        (store, map)
    }

    #[test]
    fn windows_search_pattern_escapes_the_service() {
        assert_eq!(
            super::companion::regex_escape("my.svc (x)+#"),
            "my\\.svc \\(x\\)\\+\\#"
        );
    }

    #[test]
    fn companion_entries_carry_kind_and_metadata() {
        let (store, map) = mem_keyring("svc");
        let mut meta = Metadata::new();
        meta.insert("expires_at".into(), 1790003600000i64.into());
        meta.insert("scopes".into(), serde_json::json!(["a", "b"]));
        let a = Credential::new(
            CredentialId::new("account:acc_ü", "oauth_refresh_token"),
            Kind::OauthRefresh,
            "refresh-ключ-1234567890",
        )
        .with_metadata(meta);
        let b = Credential::new(
            CredentialId::new("openai", "api_key"),
            Kind::ApiKey,
            "sk-abc",
        );
        store.write(&a).unwrap();
        store.write(&b).unwrap();
        let listing = store.list().unwrap();
        assert!(listing.errors.is_empty(), "{:?}", listing.errors);
        let ids: Vec<String> = listing.entries.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["account:acc_ü/oauth_refresh_token", "openai/api_key"]);
        assert_eq!(listing.entries[0].metadata, a.metadata);
        let back = store.read(&a.id).unwrap().unwrap();
        assert!(back.same_as(&a));
        assert_eq!(store.probe().item_count, Some(2));
        // The value entry holds only the secret; the companion the rest.
        let raw = map
            .lock()
            .unwrap()
            .get(&("svc".into(), "openai/api_key".into()))
            .cloned();
        assert_eq!(raw.as_deref(), Some(&b"sk-abc"[..]));
        assert!(store.delete(&a.id).unwrap());
        assert!(!store.delete(&a.id).unwrap());
        assert!(store.read(&a.id).unwrap().is_none());
        assert_eq!(
            map.lock().unwrap().len(),
            2,
            "value and companion of b remain"
        );
    }

    #[test]
    fn bad_entries_are_reported_by_location_without_their_content() {
        let (store, map) = mem_keyring("svc2");
        {
            let mut m = map.lock().unwrap();
            m.insert(
                ("svc2".into(), "plainuser".into()),
                b"hunter2-secret".to_vec(),
            );
            m.insert(("svc2".into(), "ns/bad".into()), b"sk-value-9".to_vec());
            m.insert(
                ("svc2#credshift".into(), "ns/bad".into()),
                br#"{"kind":"api_key","metadata":"sk-leaky-string"}"#.to_vec(),
            );
            m.insert(("svc2".into(), "ns/broken".into()), b"v".to_vec());
            m.insert(
                ("svc2#credshift".into(), "ns/broken".into()),
                b"{not json sk-leaky-2".to_vec(),
            );
            m.insert(("svc2".into(), "ns/good".into()), b"v2".to_vec());
        }
        let listing = store.list().unwrap();
        let ids: Vec<String> = listing.entries.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["ns/good"], "{:?}", listing.errors);
        assert_eq!(
            listing.entries[0].kind,
            Kind::Other,
            "guessed from the name"
        );
        assert_eq!(listing.errors.len(), 3, "{:?}", listing.errors);
        let text = format!("{:?}", listing.errors);
        assert!(
            text.contains("plainuser") && text.contains("ns/bad"),
            "{text}"
        );
        assert!(
            !text.contains("leaky") && !text.contains("hunter2"),
            "{text}"
        );
        let err = store
            .read(&CredentialId::new("ns", "bad"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("keyring:svc2 ns/bad"), "{err}");
        assert!(!err.contains("leaky") && !err.contains("sk-value"), "{err}");
    }
}
