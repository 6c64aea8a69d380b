//! Secret Service (freedesktop) on Linux and the BSDs.
//!
//! Single calls go through keyring 4's Secret Service store (keyring-core),
//! guarded by a lock-aware search. Everything else (the lock state, the
//! searches, every batch) goes through the async API of the
//! `secret-service` crate on one connection and session, opened when the
//! store connects (keyring-core's own connection only when a single call
//! needs it: each connection costs a Diffie-Hellman exchange on both
//! sides, and a migration makes no single call). In a batch the calls for a
//! group of up to [`WINDOW`] items are sent together and their replies
//! awaited together (pipelined), so a batch costs a few round trips per
//! group instead of about ten per item. A write batch searches the service
//! once (not once per item) and tells new items from existing ones by the
//! paths it already knows (see [`Known`]); then a new item is one
//! `CreateItem` carrying the kind and metadata, an existing one
//! `Attributes`, `SetSecret` and the merged attributes. A read batch
//! searches the service once and reads every found item's attributes
//! afresh, then one `GetSecret` per item (a search per item when the
//! service holds many more items than the batch): it never uses the
//! remembered paths, since a read-back is the independent check of what a
//! batch wrote (and two items for one entry are refused). A locked item
//! is reported, never unlocked.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::{join, join_all};
use keyring_core::api::CredentialStoreApi;
use secret_service::{EncryptionType, Error as SsError, SearchItemsResult};
use zeroize::Zeroize;
use zvariant::OwnedObjectPath;

use super::{
    ATTR_KIND, ATTR_METADATA, Backend, Fail, Limit, Listed, NO_FALLBACK, State, Stored, Tick,
    ToReplace, ToWrite, holds,
};
use crate::credential::{Credential, Secret};
use crate::store::{DeleteIf, ReplaceIf};

mod batch;

use batch::*;

/// Items whose calls are in flight together in a batch; the worker ticks
/// (see `KeyringStore::call_batch`) after each group. Measured
/// (benches/keyring.rs): 64 in flight is slower than one at a time, as
/// every reply on the connection wakes every waiting call; 4 to 16 is
/// fastest.
pub(crate) const WINDOW: usize = 16;

/// The content type keyring-core gives the secrets it stores; batches use
/// the same, so an item reads the same whichever path wrote it.
const CONTENT_TYPE: &str = "application/octet-stream";

type Async = secret_service::SecretService<'static>;
type Item<'s> = secret_service::Item<'s>;

/// What the batch connection has seen of this service's items: object path
/// to the item's `username` (empty when it has none), from `list`, from
/// the attributes a write batch read and from the items it created. It
/// spares a search per item; it is never trusted alone: a write batch
/// still searches the service once and uses only the paths found, and an
/// overwrite checks the item's attributes again. Reads never use it.
/// gnome-keyring never gives a path to a second item while it runs (its
/// item ids only grow); deletes forget everything all the same.
type Known = HashMap<OwnedObjectPath, String>;

pub(crate) const LIMIT: Limit = Limit {
    max: None,
    utf16: false,
    name: "the Secret Service",
};

pub(crate) fn connect(service: &str) -> Result<Box<dyn Backend>, Fail> {
    // Transport encryption on: secrets cross D-Bus inside a DH session.
    let pipe = async_io::block_on(Async::connect(EncryptionType::Dh)).map_err(unavailable)?;
    Ok(Box::new(SecretServiceBackend {
        service: service.to_string(),
        store: None,
        pipe,
        known: Known::new(),
    }))
}

struct SecretServiceBackend {
    service: String,
    /// keyring 4's Secret Service store: every single read, write and
    /// delete; connected by the first of them.
    store: Option<Arc<zbus_secret_service_keyring_store::Store>>,
    /// The async API: lock state, lock-aware searches (keyring-core's
    /// search unlocks locked items with a prompt; we report them instead)
    /// and every batch.
    pipe: Async,
    known: Known,
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

/// Whether `e` says the connection or the session is gone rather than
/// that one call failed: the daemon restarted (its sessions and our item
/// paths are no longer there, or nobody owns its name until it is back),
/// or the bus connection broke. Then the store is unavailable and the
/// worker reconnects on the next call.
pub(crate) fn gone(e: &SsError) -> bool {
    match e {
        SsError::Zbus(z) => zbus_gone(z),
        SsError::ZbusFdo(f) => fdo_gone(f),
        _ => false,
    }
}

/// The D-Bus error names (a method's error reply) that mean the peer or
/// the session behind the object paths we hold is gone.
const GONE_NAMES: [&str; 7] = [
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.NoServer",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.IOError",
    "org.freedesktop.Secret.Error.NoSession",
];

fn zbus_gone(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::InputOutput(_) | zbus::Error::Connection(..) => true,
        zbus::Error::FDO(f) => fdo_gone(f),
        zbus::Error::MethodError(name, ..) => GONE_NAMES.contains(&name.as_str()),
        _ => false,
    }
}

fn fdo_gone(e: &zbus::fdo::Error) -> bool {
    use zbus::fdo::Error as Fdo;
    match e {
        Fdo::ServiceUnknown(_)
        | Fdo::NameHasNoOwner(_)
        | Fdo::UnknownObject(_)
        | Fdo::NoServer(_)
        | Fdo::Disconnected(_)
        | Fdo::IOError(_) => true,
        Fdo::ZBus(z) => zbus_gone(z),
        _ => false,
    }
}

fn lost(e: &dyn std::fmt::Display) -> Fail {
    Fail::Unavailable(format!(
        "the Secret Service connection or session was lost (was the keyring daemon \
         restarted?): {e}; credshift reconnects on the next call"
    ))
}

pub(crate) fn ss_fail(e: SsError) -> Fail {
    if gone(&e) {
        return lost(&e);
    }
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

/// The item a search for one entry found: none, or exactly one unlocked.
/// A locked match is reported (never unlocked with a prompt), and several
/// matches are not guessed between.
fn the_one<T>(found: SearchItemsResult<T>) -> Result<Option<T>, Fail> {
    if !found.locked.is_empty() {
        return Err(ss_fail(SsError::Locked));
    }
    if found.unlocked.len() > 1 {
        return Err(Fail::Item(format!(
            "{} keyring items match this entry; credshift will not guess which",
            found.unlocked.len()
        )));
    }
    Ok(found.unlocked.into_iter().next())
}

/// A stored value as text; bytes that are not UTF-8 are wiped, not quoted.
fn text(bytes: Vec<u8>) -> Result<Secret, Fail> {
    match String::from_utf8(bytes) {
        Ok(s) => Ok(Secret::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(Fail::Item("the stored value is not UTF-8 text".into()))
        }
    }
}

/// True when some user occurs twice: a batch searches for all its items
/// before it writes any, so it would not see the first write of a repeat.
fn repeats<'a>(users: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = std::collections::HashSet::new();
    users.into_iter().any(|u| !seen.insert(u))
}

fn core_fail(e: keyring_core::Error) -> Fail {
    match e {
        keyring_core::Error::NoStorageAccess(_) => Fail::Locked(format!(
            "{}; unlock the keyring and run again (credshift does not prompt)",
            core_error(e)
        )),
        keyring_core::Error::PlatformFailure(p) => match p.downcast_ref::<SsError>() {
            Some(e) if gone(e) => lost(e),
            _ => Fail::Item(core_error(keyring_core::Error::PlatformFailure(p))),
        },
        other => Fail::Item(core_error(other)),
    }
}

impl SecretServiceBackend {
    /// How many items (0 or 1) this service and user have, found by a
    /// lock-aware search just before a keyring-core call, so that nothing
    /// prompts: a locked match or two matches are refused.
    fn guard(&self, user: &str) -> Result<usize, Fail> {
        let found = async_io::block_on(find(&self.pipe, &self.service, user))?;
        Ok(found.map_or(0, |_| 1))
    }

    /// The connection and what it knows of this service's items.
    fn pipe(&mut self) -> (&Async, &mut Known) {
        (&self.pipe, &mut self.known)
    }

    fn entry(&mut self, user: &str) -> Result<keyring_core::Entry, Fail> {
        let store = match &self.store {
            Some(store) => store.clone(),
            None => {
                let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| {
                    Fail::Unavailable(format!(
                        "cannot open a Secret Service session: {}; {NO_FALLBACK}",
                        core_error(e)
                    ))
                })?;
                self.store = Some(store.clone());
                store
            }
        };
        let label = format!("{} {user} (credshift)", self.service);
        let mods = HashMap::from([("label", label.as_str())]);
        store
            .build(&self.service, user, Some(&mods))
            .map_err(core_fail)
    }
}

impl Backend for SecretServiceBackend {
    fn state(&mut self) -> Result<State, Fail> {
        let mut st = State::default();
        let ss = &self.pipe;
        match async_io::block_on(ss.get_default_collection()) {
            Ok(c) => {
                st.locked = async_io::block_on(c.is_locked()).map_err(ss_fail)?;
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
        let found = async_io::block_on(
            ss.search_items(HashMap::from([("service", self.service.as_str())])),
        )
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
        let service = self.service.clone();
        let (ss, known) = self.pipe();
        async_io::block_on(async {
            let found = ss
                .search_items(HashMap::from([("service", service.as_str())]))
                .await
                .map_err(ss_fail)?;
            if !found.locked.is_empty() {
                // A partial list would let a migration "complete" without
                // them: the store as a whole is not readable until unlocked.
                return Err(Fail::Locked(format!(
                    "{} items of service {:?} are in a locked collection; unlock it and run \
                 again (credshift does not prompt)",
                    found.locked.len(),
                    service
                )));
            }
            let mut out = Vec::with_capacity(found.unlocked.len());
            // The listing is the service's items as they are now.
            known.clear();
            for group in found.unlocked.chunks(WINDOW) {
                let attrs = join_all(group.iter().map(|item| item.get_attributes())).await;
                for (item, attrs) in group.iter().zip(attrs) {
                    if let Ok(attrs) = &attrs {
                        let user = attrs.get("username").cloned().unwrap_or_default();
                        known.insert(item.item_path.clone(), user);
                    }
                    match attrs {
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
            }
            Ok(out)
        })
    }

    // get, set and delete build keyring-core's entry (connecting its store,
    // the first time) before the lock check, so that nothing slow comes
    // between the check and the call it guards.
    fn get(&mut self, user: &str) -> Result<Option<Stored>, Fail> {
        let entry = self.entry(user)?;
        if self.guard(user)? == 0 {
            return Ok(None);
        }
        let bytes = match entry.get_secret() {
            Ok(b) => b,
            Err(keyring_core::Error::NoEntry) => return Ok(None),
            Err(e) => return Err(core_fail(e)),
        };
        let secret = text(bytes)?;
        let mut attrs = entry.get_attributes().map_err(core_fail)?;
        Ok(Some(Stored {
            secret,
            kind: attrs.remove(ATTR_KIND),
            metadata: attrs.remove(ATTR_METADATA),
        }))
    }

    fn set(&mut self, user: &str, secret: &Secret, kind: &str, metadata: &str) -> Result<(), Fail> {
        let entry = self.entry(user)?;
        let existed = self.guard(user)? == 1;
        if !existed && async_io::block_on(default_collection(&self.pipe))?.is_none() {
            return Err(Fail::Unavailable(
                "the Secret Service has no default collection to write to".into(),
            ));
        }
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
        self.known.clear();
        let entry = self.entry(user)?;
        if self.guard(user)? == 0 {
            return Ok(false);
        }
        match entry.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(core_fail(e)),
        }
    }

    fn set_many(&mut self, items: &[ToWrite], tick: Tick) -> Vec<Result<(), Fail>> {
        if repeats(items.iter().map(|w| w.user.as_str())) {
            let mut out = Vec::with_capacity(items.len());
            for w in items {
                out.push(self.set(&w.user, &w.secret, w.kind, &w.metadata));
                tick();
            }
            return out;
        }
        let service = self.service.clone();
        let (ss, known) = self.pipe();
        async_io::block_on(async {
            let ctx = Ctx::new(ss, &service);
            let collection = default_collection(ss).await;
            let limit = items.len().max(WINDOW);
            let mut index = index(ss, &service, known, limit, tick).await;
            let mut out = Vec::with_capacity(items.len());
            for group in items.chunks(WINDOW) {
                let found: Vec<_> = match index.as_mut() {
                    Some(index) => group.iter().map(|w| pick(index, &w.user)).collect(),
                    None => join_all(group.iter().map(|w| find(ss, &service, &w.user))).await,
                };
                let put = group
                    .iter()
                    .zip(found)
                    .map(|(w, found)| put(&ctx, found, &collection, w));
                for (w, r) in group.iter().zip(join_all(put).await) {
                    out.push(r.map(|created| {
                        if let Some(path) = created {
                            known.insert(path, w.user.clone());
                        }
                    }));
                }
                tick();
            }
            if ctx.stale.get() {
                known.clear();
            }
            out
        })
    }

    fn get_many(&mut self, users: &[String], tick: Tick) -> Vec<Result<Option<Stored>, Fail>> {
        let service = self.service.clone();
        let (ss, _) = self.pipe();
        // A read-back is the independent check of what the batch wrote, so
        // it never trusts the paths the writes remember: one search of the
        // service and every item's attributes read afresh (or a search per
        // user) find the item again and refuse when two match, as when
        // another client made or renamed one in the meantime.
        if repeats(users.iter().map(String::as_str)) {
            return async_io::block_on(per_user(ss, &service, users, tick, fetch));
        }
        async_io::block_on(async {
            let Some(mut index) = read_index(ss, &service, users, tick).await else {
                return per_user(ss, &service, users, tick, fetch).await;
            };
            let mut out = Vec::with_capacity(users.len());
            for group in users.chunks(WINDOW) {
                let found = group.iter().map(|u| {
                    the_one(SearchItemsResult {
                        unlocked: index.remove(u).unwrap_or_default(),
                        locked: Vec::new(),
                    })
                });
                out.extend(join_all(found.map(fetch_found)).await);
                tick();
            }
            out
        })
    }

    fn delete_many(&mut self, users: &[String], tick: Tick) -> Vec<Result<bool, Fail>> {
        if repeats(users.iter().map(String::as_str)) {
            let mut out = Vec::with_capacity(users.len());
            for u in users {
                out.push(self.delete(u));
                tick();
            }
            return out;
        }
        let service = self.service.clone();
        let (ss, known) = self.pipe();
        known.clear();
        async_io::block_on(per_user(ss, &service, users, tick, remove))
    }

    fn delete_if_many(
        &mut self,
        expected: &[Credential],
        tick: Tick,
    ) -> Vec<Result<DeleteIf, Fail>> {
        let users: Vec<String> = expected.iter().map(|c| c.id.to_string()).collect();
        if repeats(users.iter().map(String::as_str)) {
            // A repeat's second search would race its first delete.
            let mut out = Vec::with_capacity(expected.len());
            for want in expected {
                out.extend(self.delete_if_many(std::slice::from_ref(want), tick));
            }
            return out;
        }
        let service = self.service.clone();
        let (ss, known) = self.pipe();
        known.clear();
        async_io::block_on(async {
            let mut out = Vec::with_capacity(expected.len());
            for (group, wants) in users.chunks(WINDOW).zip(expected.chunks(WINDOW)) {
                let found = join_all(group.iter().map(|u| find(ss, &service, u))).await;
                let steps = found.into_iter().zip(wants).map(|(f, w)| remove_if(f, w));
                out.extend(join_all(steps).await);
                tick();
            }
            out
        })
    }

    fn replace_if_many(
        &mut self,
        items: &[ToReplace],
        tick: Tick,
    ) -> Vec<Result<ReplaceIf, Fail>> {
        if repeats(items.iter().map(|r| r.new.user.as_str())) {
            // A repeat's second search would race its first write.
            let mut out = Vec::with_capacity(items.len());
            for r in items {
                out.extend(self.replace_if_many(std::slice::from_ref(r), tick));
            }
            return out;
        }
        let service = self.service.clone();
        let (ss, known) = self.pipe();
        // Items made or taken away here are not remembered: forget all.
        known.clear();
        async_io::block_on(async {
            let collection = default_collection(ss).await;
            let mut out = Vec::with_capacity(items.len());
            for group in items.chunks(WINDOW) {
                let users = group.iter().map(|r| find(ss, &service, &r.new.user));
                let found = join_all(users).await;
                let steps = found
                    .into_iter()
                    .zip(group)
                    .map(|(f, r)| replace_if(ss, &service, f, &collection, r));
                out.extend(join_all(steps).await);
                tick();
            }
            out
        })
    }
}
