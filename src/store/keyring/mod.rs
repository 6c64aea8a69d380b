//! `keyring:SERVICE`: the OS keyring, through keyring 4's stores
//! (keyring-core and its per-platform crates, linked directly as keyring
//! 4's README asks of applications: the `keyring` crate itself is only a
//! sample CLI plus a v1 shim over the same crates).
//!
//! Each credential is one entry of service `SERVICE` and user
//! `namespace/name`. Kind and metadata travel with it:
//!
//! - Secret Service (Linux and the BSDs, the platforms credshift supports):
//!   attributes `credshift.kind` and `credshift.metadata` (JSON) on the
//!   item; the session is DH-encrypted (the store's `crypto-rust` transport
//!   encryption), never plain. `list` searches by the `service` attribute.
//!   A locked collection is reported, never unlocked with a prompt behind
//!   the user's back.
//! - A Unix without a Secret Service (macOS): `unsupported`, a clear error.
//!   Nobody builds or tests a Keychain or Credential Manager backend here,
//!   so none is offered.
//!
//! Every call runs on one worker thread per store and the caller waits at
//! most `KeyOptions::keyring_timeout` for it (for a batch: for its next
//! group of items): a hung D-Bus call ends in `StoreError::Timeout` naming
//! the keyring and the operation, and the store refuses further calls
//! rather than queueing behind the hung one.
//!
//! Batches (`write_many`, `read_many`, `delete_many`, and `read_all`'s
//! reads) go to the backend whole: the Secret Service backend keeps its
//! D-Bus calls for a group of items in flight together on one connection
//! instead of waiting for each reply in turn; the other backends loop.

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::store::{
    Capability, DeleteIf, Entry, Listing, LocationError, Replace, ReplaceIf, Scan, Store, StoreSpec,
};
use crate::unlock::KeyOptions;

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

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    let StoreSpec::Keyring(service) = spec else {
        return Err(StoreError::Other(format!("{spec} is not a keyring spec")));
    };
    let store = open_with(spec, service, opts, platform::LIMIT, Box::new(platform::connect))?;
    Ok(Box::new(store))
}

/// `open` with the platform's limit and connect given: the tests' way in
/// (they pin that opening connects ahead).
fn open_with(
    spec: &StoreSpec,
    service: &str,
    opts: &KeyOptions,
    limit: Limit,
    connect: Connect,
) -> Result<KeyringStore> {
    KeyringStore::start(
        spec.clone(),
        service.to_string(),
        opts.keyring_timeout,
        limit,
        connect,
    )
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

/// One item of a `set_many` batch: what `set` takes.
pub(crate) struct ToWrite {
    pub user: String,
    pub secret: Secret,
    pub kind: &'static str,
    pub metadata: String,
}

/// One item of a `replace_if_many` batch: write `new` only while the entry
/// holds exactly `expected` (`None`: no entry).
pub(crate) struct ToReplace {
    pub expected: Option<Credential>,
    pub new: ToWrite,
}

/// Called by a backend as a batch makes progress, so that a long batch is
/// not taken for a hung call.
pub(crate) type Tick<'a> = &'a dyn Fn();

/// A platform keyring. Lives on the worker thread only.
pub(crate) trait Backend {
    fn state(&mut self) -> Result<State, Fail>;
    fn list(&mut self) -> Result<Vec<Listed>, Fail>;
    fn get(&mut self, user: &str) -> Result<Option<Stored>, Fail>;
    fn set(&mut self, user: &str, secret: &Secret, kind: &str, metadata: &str) -> Result<(), Fail>;
    fn delete(&mut self, user: &str) -> Result<bool, Fail>;

    /// `set` for each item; one result per item, in order. Backends that
    /// can keep several calls in flight override the three `_many`s.
    fn set_many(&mut self, items: &[ToWrite], tick: Tick) -> Vec<Result<(), Fail>> {
        let mut out = Vec::with_capacity(items.len());
        for w in items {
            out.push(self.set(&w.user, &w.secret, w.kind, &w.metadata));
            tick();
        }
        out
    }

    /// `get` for each user; one result per user, in order.
    fn get_many(&mut self, users: &[String], tick: Tick) -> Vec<Result<Option<Stored>, Fail>> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.get(u));
            tick();
        }
        out
    }

    /// `delete` for each user; one result per user, in order.
    fn delete_many(&mut self, users: &[String], tick: Tick) -> Vec<Result<bool, Fail>> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.delete(u));
            tick();
        }
        out
    }

    /// Delete each of `expected` only while it [`holds`] exactly that; one
    /// result per item, in order. This default gets, compares, then
    /// deletes by user on the store's one worker thread (no other call of
    /// this store comes between); the Secret Service deletes the very item
    /// it compared.
    fn delete_if_many(
        &mut self,
        expected: &[Credential],
        tick: Tick,
    ) -> Vec<Result<DeleteIf, Fail>> {
        let mut out = Vec::with_capacity(expected.len());
        for want in expected {
            let user = want.id.to_string();
            out.push(match self.get(&user) {
                Ok(None) => Ok(DeleteIf::Absent),
                Ok(Some(now)) if !holds(want, &now) => Ok(DeleteIf::Changed),
                Ok(Some(_)) => self.delete(&user).map(|gone| {
                    if gone {
                        DeleteIf::Deleted
                    } else {
                        DeleteIf::Absent
                    }
                }),
                Err(f) => Err(f),
            });
            tick();
        }
        out
    }

    /// Write each item only while its entry [`holds`] exactly what was
    /// expected; one result per item, in order. This default gets,
    /// compares, then sets by user on the store's one worker thread (no
    /// other call of this store comes between); the Secret Service sets
    /// the secret of the very item it compared.
    fn replace_if_many(
        &mut self,
        items: &[ToReplace],
        tick: Tick,
    ) -> Vec<Result<ReplaceIf, Fail>> {
        let mut out = Vec::with_capacity(items.len());
        for r in items {
            let w = &r.new;
            let unchanged = match (self.get(&w.user), &r.expected) {
                (Err(f), _) => Err(f),
                (Ok(None), None) => Ok(true),
                (Ok(Some(now)), Some(want)) => Ok(holds(want, &now)),
                (Ok(_), _) => Ok(false),
            };
            out.push(unchanged.and_then(|same| match same {
                true => self
                    .set(&w.user, &w.secret, w.kind, &w.metadata)
                    .map(|()| ReplaceIf::Replaced),
                false => Ok(ReplaceIf::Changed),
            }));
            tick();
        }
        out
    }
}

/// Whether what the keyring holds (`now`) is exactly `want`: value (in
/// constant time), kind and metadata. An entry whose kind or metadata
/// cannot be read is not the value credshift checked.
pub(crate) fn holds(want: &Credential, now: &Stored) -> bool {
    let (Ok(kind), Ok(metadata)) = (
        parse_kind(&want.id, now.kind.as_deref()),
        parse_metadata(now.metadata.as_deref()),
    ) else {
        return false;
    };
    // As `Credential::same_as`: every part evaluated, the value in constant time.
    let value = want.secret.ct_eq(&now.secret);
    value & (kind == want.kind) & (metadata == want.metadata)
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

/// What the worker sends back while it runs a job.
enum Msg<T> {
    /// A batch moved on: wait the timeout again.
    Tick,
    Done(Result<T, Fail>),
}

/// The worker's side: connects ahead when the store starts, or else at the
/// first call (connecting can hang too), keeps the connection for the next
/// call and drops it when it is lost, so that the next call reconnects.
struct Conn {
    service: String,
    connect: Connect,
    backend: Option<Box<dyn Backend>>,
    /// How long a failed connect-ahead may take and still be retried by
    /// the first call (see `KeyringStore::start`).
    retry_within: Duration,
    /// A connect-ahead's slow failure, for the first call to report.
    ahead: Option<Fail>,
}

impl Conn {
    fn backend(&mut self) -> Result<&mut dyn Backend, Fail> {
        if self.backend.is_none() {
            if let Some(f) = self.ahead.take() {
                return Err(f);
            }
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
                    retry_within: timeout / 4,
                    ahead: None,
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

    /// `with_backend`, then connect ahead: what `open` makes.
    pub(crate) fn start(
        spec: StoreSpec,
        service: String,
        timeout: Duration,
        limit: Limit,
        connect: Connect,
    ) -> Result<Self> {
        let store = Self::with_backend(spec, service, timeout, limit, connect)?;
        store.connect_ahead();
        Ok(store)
    }

    /// Start connecting on the worker now, without waiting: a connection
    /// (D-Bus, then a Diffie-Hellman session) takes milliseconds that the
    /// caller's own work (locks, the journal and its fsyncs) can cover.
    /// A connection that hangs here is met by the first call's timeout. One
    /// that fails quickly (under a quarter of the timeout: a daemon still
    /// starting, say) is tried again by the first call, which can afford
    /// it. One that fails slowly (dbus-daemon's activation timeout, 25 s)
    /// is reported by the first call as it is: trying again would make that
    /// call wait the rest of the failed attempt plus a whole new one, time
    /// out with a misleading "hung?" and start the service twice. Later
    /// calls connect again.
    fn connect_ahead(&self) {
        let job: Job = Box::new(|conn: &mut Conn| {
            let started = std::time::Instant::now();
            if let Err(f) = conn.backend()
                && started.elapsed() >= conn.retry_within
            {
                conn.ahead = Some(f);
            }
        });
        let _ = self.jobs.send(job);
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
        self.run(op, move |b, _| f(b), |r| matches!(r, Err(Fail::Unavailable(_))))
    }

    /// Run a batch on the worker: the timeout runs from the start and again
    /// from each tick of the backend, so only a batch that stops moving for
    /// the whole timeout is taken for hung.
    fn call_batch<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Backend, Tick) -> Vec<Result<T, Fail>> + Send + 'static,
    ) -> Result<Vec<Result<T, Fail>>, Fail> {
        self.run(
            op,
            move |b, tick| Ok(f(b, tick)),
            |r: &Result<Vec<Result<T, Fail>>, Fail>| match r {
                Err(f) => matches!(f, Fail::Unavailable(_)),
                Ok(items) => items
                    .iter()
                    .any(|i| matches!(i, Err(Fail::Unavailable(_)))),
            },
        )
    }

    /// Run `f` on the worker. When `lost` says its result found the store
    /// unavailable (a session or connection gone: the daemon restarted, the
    /// bus dropped), the backend is dropped so that the next call connects
    /// afresh instead of failing on the dead session for the whole run.
    fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Backend, Tick) -> Result<T, Fail> + Send + 'static,
        lost: fn(&Result<T, Fail>) -> bool,
    ) -> Result<T, Fail> {
        if let Some(prev) = *self.stuck.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Fail::Unavailable(format!(
                "an earlier keyring call ({prev}) timed out after {} s and has not returned; \
                 not trying again",
                self.seconds()
            )));
        }
        let (tx, rx) = mpsc::channel::<Msg<T>>();
        let job: Job = Box::new(move |conn: &mut Conn| {
            let ticks = tx.clone();
            let tick = move || {
                let _ = ticks.send(Msg::Tick);
            };
            let r = conn.backend().and_then(|b| f(b, &tick));
            if lost(&r) {
                conn.backend = None;
            }
            let _ = tx.send(Msg::Done(r));
        });
        if self.jobs.send(job).is_err() {
            return Err(Fail::Unavailable("the keyring worker has stopped".into()));
        }
        loop {
            match rx.recv_timeout(self.timeout) {
                Ok(Msg::Tick) => continue,
                Ok(Msg::Done(r)) => return r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    *self.stuck.lock().unwrap_or_else(|p| p.into_inner()) = Some(op);
                    return Err(Fail::Timeout {
                        op,
                        seconds: self.seconds(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Fail::Unavailable(
                        "the keyring worker stopped unexpectedly".into(),
                    ));
                }
            }
        }
    }

    /// Per-item results of a batch sent for the items at `at` (indexes
    /// into `ids`), into `out`; a failure of the batch as a whole is every
    /// item's failure.
    fn settle<T>(
        &self,
        ids: &[&CredentialId],
        at: &[usize],
        results: Result<Vec<Result<T, Fail>>, Fail>,
        out: &mut [Option<Result<T>>],
    ) {
        let mut results = match results {
            Ok(r) => r.into_iter(),
            Err(f) => {
                for &i in at {
                    out[i] = Some(Err(self.error(f.clone(), Some(ids[i]))));
                }
                return;
            }
        };
        for &i in at {
            out[i] = Some(match results.next() {
                Some(r) => r.map_err(|f| self.error(f, Some(ids[i]))),
                None => Err(StoreError::item(
                    ids[i],
                    format!("{}: the keyring returned no result", self.spec),
                )),
            });
        }
    }

    /// What `write` sends to the backend, after the pre-flight check.
    fn to_write(&self, c: &Credential) -> Result<ToWrite> {
        if let Some(why) = self.check(c) {
            return Err(StoreError::item(&c.id, format!("{}: {why}", self.spec)));
        }
        let metadata = serde_json::to_string(&crate::scrub::public(&c.metadata)).map_err(|_| {
            StoreError::item(&c.id, format!("{}: metadata cannot be encoded", self.spec))
        })?;
        Ok(ToWrite {
            user: c.id.to_string(),
            secret: c.secret.clone(),
            kind: c.kind.as_str(),
            metadata,
        })
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

/// Why an entry's attributes make no credshift item.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrError {
    /// The user is not `NAMESPACE/NAME`: some other program's entry.
    NotOurs,
    /// Ours, but its kind or metadata cannot be read (never quoted).
    Bad { id: CredentialId, error: String },
}

/// The item an entry's `username`, `credshift.kind` and
/// `credshift.metadata` attributes (or companion entry) describe, as
/// `list` reads them; values other programs may have written. Public for
/// the fuzz target (`credshift::fuzzing::keyring_attributes`).
#[doc(hidden)]
pub fn item_from_attributes(
    user: &str,
    kind: Option<&str>,
    metadata: Option<&str>,
) -> std::result::Result<Entry, AttrError> {
    let id = user
        .parse::<CredentialId>()
        .map_err(|_| AttrError::NotOurs)?;
    let parsed = parse_kind(&id, kind).and_then(|k| parse_metadata(metadata).map(|m| (k, m)));
    match parsed {
        Ok((kind, metadata)) => Ok(Entry { id, kind, metadata }),
        Err(error) => Err(AttrError::Bad { id, error }),
    }
}

/// The kind and metadata (as JSON text) a companion entry
/// (`SERVICE#credshift`, the companion backend) holds; `None` when it is not
/// one. Public for the fuzz target.
#[doc(hidden)]
pub fn companion_attributes(text: &str) -> Option<(String, String)> {
    companion::parse(text).ok()
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
    /// The service: one per user's keyring (the lock is per user too).
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        match self.spec() {
            StoreSpec::Keyring(service) => Ok(crate::store::StoreIdentity::named(
                crate::store::IdentityKind::Keyring,
                service,
            )),
            other => Err(StoreError::Other(format!("{other}: not a keyring spec"))),
        }
    }

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
                    ..Capability::default()
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
                    severity: crate::store::Severity::Error,
                    location: format!("{} {location}", self.spec),
                    error,
                }),
                Listed::Item {
                    user,
                    kind,
                    metadata,
                } => match item_from_attributes(&user, kind.as_deref(), metadata.as_deref()) {
                    Ok(entry) => listing.entries.push(entry),
                    Err(AttrError::NotOurs) => listing.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: format!("{} user {user:?}", self.spec),
                        error: "not a credshift entry: the user is not NAMESPACE/NAME".into(),
                    }),
                    Err(AttrError::Bad { id, error }) => listing.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: format!("{} {id}", self.spec),
                        error,
                    }),
                },
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
        let w = self.to_write(c)?;
        self.call("write", move |b| {
            b.set(&w.user, &w.secret, w.kind, &w.metadata)
        })
        .map_err(|f| self.error(f, Some(&c.id)))
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let user = id.to_string();
        self.call("delete", move |b| b.delete(&user))
            .map_err(|f| self.error(f, Some(id)))
    }

    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let ids: Vec<&CredentialId> = creds.iter().map(|c| &c.id).collect();
        let mut out: Vec<Option<Result<()>>> = creds.iter().map(|_| None).collect();
        let (mut todo, mut at) = (Vec::new(), Vec::new());
        for (i, c) in creds.iter().enumerate() {
            match self.to_write(c) {
                Ok(w) => {
                    todo.push(w);
                    at.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if !todo.is_empty() {
            let results = self.call_batch("write_many", move |b, tick| b.set_many(&todo, tick));
            self.settle(&ids, &at, results, &mut out);
        }
        out.into_iter().flatten().collect()
    }

    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        if ids.is_empty() {
            return Vec::new();
        }
        let refs: Vec<&CredentialId> = ids.iter().collect();
        let users: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let at: Vec<usize> = (0..ids.len()).collect();
        let mut out: Vec<Option<Result<Option<Stored>>>> = ids.iter().map(|_| None).collect();
        let results = self.call_batch("read_many", move |b, tick| b.get_many(&users, tick));
        self.settle(&refs, &at, results, &mut out);
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        out.into_iter()
            .flatten()
            .zip(ids)
            .map(|(r, id)| match r? {
                Some(stored) => self.to_credential(id, stored).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// The comparison and the delete run as one job on the store's worker
    /// (see [`Backend::delete_if_many`]). Not atomic against other
    /// clients: the Secret Service has no compare-and-delete, so a value
    /// another client sets on the same item between credshift's
    /// `GetSecret` and its `Delete` (one D-Bus round trip) is deleted.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        if expected.is_empty() {
            return Vec::new();
        }
        let refs: Vec<&CredentialId> = expected.iter().map(|c| &c.id).collect();
        let at: Vec<usize> = (0..expected.len()).collect();
        let mut out: Vec<Option<Result<DeleteIf>>> = expected.iter().map(|_| None).collect();
        let want = expected.to_vec();
        let results = self.call_batch("delete_if_unchanged", move |b, tick| {
            b.delete_if_many(&want, tick)
        });
        self.settle(&refs, &at, results, &mut out);
        out.into_iter().flatten().collect()
    }

    /// The comparison and the write run as one job on the store's worker
    /// (see [`Backend::replace_if_many`]), never the read-compare-write
    /// default (a read, then a write as separate calls). Not atomic
    /// against other clients: the Secret Service has no compare-and-write,
    /// so a value another client sets on the same item between credshift's
    /// `GetSecret` and its `SetSecret` (one D-Bus round trip) is
    /// overwritten; a second item made for the entry meanwhile is found by
    /// the search after the write and refused (see `secret_service.rs`).
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        if items.is_empty() {
            return Vec::new();
        }
        let ids: Vec<&CredentialId> = items.iter().map(|r| &r.new.id).collect();
        let mut out: Vec<Option<Result<ReplaceIf>>> = items.iter().map(|_| None).collect();
        let (mut todo, mut at) = (Vec::new(), Vec::new());
        for (i, r) in items.iter().enumerate() {
            match self.to_write(&r.new) {
                Ok(new) => {
                    let expected = r.expected.clone();
                    todo.push(ToReplace { expected, new });
                    at.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if !todo.is_empty() {
            let results = self.call_batch("replace_if_unchanged", move |b, tick| {
                b.replace_if_many(&todo, tick)
            });
            self.settle(&ids, &at, results, &mut out);
        }
        out.into_iter().flatten().collect()
    }

    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        if ids.is_empty() {
            return Vec::new();
        }
        let refs: Vec<&CredentialId> = ids.iter().collect();
        let users: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let at: Vec<usize> = (0..ids.len()).collect();
        let mut out: Vec<Option<Result<bool>>> = ids.iter().map(|_| None).collect();
        let results = self.call_batch("delete_many", move |b, tick| b.delete_many(&users, tick));
        self.settle(&refs, &at, results, &mut out);
        out.into_iter().flatten().collect()
    }

    /// `list`, then one `read_many` of what it listed (the default reads
    /// one item at a time).
    fn read_all(&self) -> Result<Scan> {
        let listing = self.list()?;
        let ids: Vec<CredentialId> = listing.entries.into_iter().map(|e| e.id).collect();
        let mut scan = Scan {
            credentials: Vec::with_capacity(ids.len()),
            errors: listing.errors,
        };
        for (id, r) in ids.iter().zip(self.read_many(&ids)) {
            match r {
                Ok(Some(c)) => scan.credentials.push(c),
                Ok(None) => scan.errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: id.to_string(),
                    error: "listed but could not be read back".into(),
                }),
                Err(err) if err.is_unavailable() => return Err(err),
                Err(err) => scan
                    .errors
                    .push(LocationError::from_error(id.to_string(), &err)),
            }
        }
        Ok(scan)
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

/// Secret Service (freedesktop): Linux and the other Unix systems that run
/// one (the BSDs). The only OS keyring credshift supports (README,
/// "Platforms").
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
mod secret_service;
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
use self::secret_service as platform;

/// A Unix without a Secret Service (macOS, iOS, Android): no OS keyring;
/// `keyring:` says so and names the store to use instead.
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "android"))]
mod unsupported;
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "android"))]
use self::unsupported as platform;

/// A backend over any keyring-core store, keeping kind and metadata in a
/// companion entry: the tests' in-memory keyring, and the shape a keyring
/// without attributes would take.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod companion;

#[cfg(test)]
mod tests;
