//! Secret Service (freedesktop) on Linux and the BSDs.
//!
//! Single calls go through keyring 4's Secret Service store (keyring-core),
//! guarded by a lock-aware search. Batches go through the async API of the
//! `secret-service` crate on a connection of their own: the calls for a
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
use secret_service::blocking::SecretService;
use secret_service::{EncryptionType, Error as SsError, SearchItemsResult};
use zeroize::Zeroize;
use zvariant::OwnedObjectPath;

use super::{
    ATTR_KIND, ATTR_METADATA, Backend, Fail, Limit, Listed, NO_FALLBACK, State, Stored, Tick,
    ToReplace, ToWrite, holds,
};
use crate::credential::{Credential, Secret};
use crate::store::{DeleteIf, ReplaceIf};

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
    let ss = SecretService::connect(EncryptionType::Dh).map_err(unavailable)?;
    let store = zbus_secret_service_keyring_store::Store::new()
        .map_err(|e| Fail::Unavailable(core_error(e)))?;
    Ok(Box::new(SecretServiceBackend {
        service: service.to_string(),
        ss,
        store,
        pipe: None,
        known: Known::new(),
    }))
}

struct SecretServiceBackend {
    service: String,
    /// Lock state and lock-aware search (keyring-core's search unlocks
    /// locked items with a prompt; we report them instead).
    ss: SecretService<'static>,
    /// keyring 4's Secret Service store: every single read, write and delete.
    store: Arc<zbus_secret_service_keyring_store::Store>,
    /// The async API on its own connection and session, for batches;
    /// opened by the first batch.
    pipe: Option<Async>,
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

fn every<T>(n: usize, f: Fail) -> Vec<Result<T, Fail>> {
    (0..n).map(|_| Err(f.clone())).collect()
}

/// Batch step 1 for one entry: the search.
async fn find<'a>(ss: &'a Async, service: &str, user: &str) -> Result<Option<Item<'a>>, Fail> {
    let found = ss
        .search_items(HashMap::from([("service", service), ("username", user)]))
        .await
        .map_err(ss_fail)?;
    the_one(found)
}

/// The collection new items go to, checked once per batch: `Ok(None)`
/// when there is no default collection, an error when it is locked.
async fn default_collection(ss: &Async) -> Result<Option<secret_service::Collection<'_>>, Fail> {
    match ss.get_default_collection().await {
        Ok(c) => {
            if c.is_locked().await.map_err(ss_fail)? {
                Err(ss_fail(SsError::Locked))
            } else {
                Ok(Some(c))
            }
        }
        Err(SsError::NoResult) => Ok(None),
        Err(e) => Err(ss_fail(e)),
    }
}

/// Whether an item's attributes name this service and user.
fn names(attrs: &HashMap<String, String>, service: &str, user: &str) -> bool {
    attrs.get("service").map(String::as_str) == Some(service)
        && attrs.get("username").map(String::as_str) == Some(user)
}

/// A batch's connection and service, and whether it found what it knew
/// out of date (an item another client changed or deleted): then the
/// batch forgets what it knew.
struct Ctx<'s> {
    ss: &'s Async,
    service: &'s str,
    stale: Cell<bool>,
}

impl<'s> Ctx<'s> {
    fn new(ss: &'s Async, service: &'s str) -> Self {
        Ctx {
            ss,
            service,
            stale: Cell::new(false),
        }
    }

    /// The attributes of the item found for `user`, checked to name this
    /// service and user. An item taken from what the batch knew that no
    /// longer does (another client changed it) is looked for again by a
    /// search.
    async fn checked(
        &self,
        found: Result<Option<Item<'s>>, Fail>,
        user: &str,
    ) -> Result<Option<(Item<'s>, HashMap<String, String>)>, Fail> {
        let Some(item) = found? else {
            return Ok(None);
        };
        let attrs = item.get_attributes().await.map_err(ss_fail)?;
        if names(&attrs, self.service, user) {
            return Ok(Some((item, attrs)));
        }
        self.stale.set(true);
        let Some(item) = find(self.ss, self.service, user).await? else {
            return Ok(None);
        };
        let attrs = item.get_attributes().await.map_err(ss_fail)?;
        if names(&attrs, self.service, user) {
            Ok(Some((item, attrs)))
        } else {
            Err(Fail::Item(
                "the keyring item changed while credshift was writing it; run again".into(),
            ))
        }
    }
}

/// Batch step 2 of a write: a new item is created with its kind and
/// metadata in one call (its path is returned, to be known); an existing
/// one has its attributes read and checked, gets the new secret, then its
/// attributes with ours merged in (what `set` does through keyring-core).
async fn put<'s>(
    ctx: &Ctx<'s>,
    found: Result<Option<Item<'s>>, Fail>,
    collection: &Result<Option<secret_service::Collection<'_>>, Fail>,
    w: &ToWrite,
) -> Result<Option<OwnedObjectPath>, Fail> {
    if let Some((item, attrs)) = ctx.checked(found, &w.user).await? {
        return overwrite(&item, attrs, w).await.map(|()| None);
    }
    create(ctx.service, collection, w, true)
        .await
        .map(|item| Some(item.item_path))
}

/// `SetSecret` on `item`, then its attributes `attrs` with `w`'s kind and
/// metadata merged in.
async fn overwrite(
    item: &Item<'_>,
    mut attrs: HashMap<String, String>,
    w: &ToWrite,
) -> Result<(), Fail> {
    item.set_secret(w.secret.expose().as_bytes(), CONTENT_TYPE)
        .await
        .map_err(ss_fail)?;
    attrs.insert(ATTR_KIND.into(), w.kind.into());
    attrs.insert(ATTR_METADATA.into(), w.metadata.clone());
    let attrs = attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    item.set_attributes(attrs).await.map_err(ss_fail)
}

/// A new item for `w`, carrying its kind and metadata, in the default
/// collection; `replace`: whether an item with the same attributes is
/// replaced (the Secret Service's own flag).
async fn create<'c>(
    service: &str,
    collection: &'c Result<Option<secret_service::Collection<'_>>, Fail>,
    w: &ToWrite,
    replace: bool,
) -> Result<Item<'c>, Fail> {
    let collection = match collection {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(Fail::Unavailable(
                "the Secret Service has no default collection to write to".into(),
            ));
        }
        Err(f) => return Err(f.clone()),
    };
    let label = format!("{service} {} (credshift)", w.user);
    let attrs = HashMap::from([
        ("service", service),
        ("username", w.user.as_str()),
        (ATTR_KIND, w.kind),
        (ATTR_METADATA, w.metadata.as_str()),
    ]);
    let secret = w.secret.expose().as_bytes();
    collection
        .create_item(&label, attrs, secret, replace, CONTENT_TYPE)
        .await
        .map_err(ss_fail)
}

/// Whether a search for the entry finds exactly the item at `path`.
async fn alone(ss: &Async, service: &str, user: &str, path: &OwnedObjectPath) -> Result<bool, Fail> {
    let found = ss
        .search_items(HashMap::from([("service", service), ("username", user)]))
        .await
        .map_err(ss_fail)?;
    Ok(found.locked.is_empty()
        && found.unlocked.len() == 1
        && found.unlocked[0].item_path == *path)
}

/// Batch step 2 of a compare-and-write (the Secret Service has none, so
/// this narrows the window as far as its API allows). An item found: its
/// secret and attributes compared with what was expected, then `SetSecret`
/// and the merged attributes on that same item path (never a new search,
/// which could find another item). No item, none expected: created with
/// `replace` false, so an item another client made meanwhile is never
/// overwritten. Then a search must find that one item: a second item for
/// the entry (another client's, made meanwhile) is refused: an item this
/// call created is taken away again (its value was not written: changed),
/// an overwrite is reported as an error (both items kept; reads refuse
/// two). What remains: another client's `SetSecret` on the same item
/// between this `GetSecret` and this `SetSecret` (one round trip) is
/// overwritten.
async fn replace_if(
    ss: &Async,
    service: &str,
    found: Result<Option<Item<'_>>, Fail>,
    collection: &Result<Option<secret_service::Collection<'_>>, Fail>,
    r: &ToReplace,
) -> Result<ReplaceIf, Fail> {
    let w = &r.new;
    match (found?, &r.expected) {
        (None, None) => {
            let item = create(service, collection, w, false).await?;
            if alone(ss, service, &w.user, &item.item_path).await? {
                return Ok(ReplaceIf::Replaced);
            }
            item.delete().await.map_err(ss_fail)?;
            Ok(ReplaceIf::Changed)
        }
        (Some(item), Some(want)) => {
            let (secret, attrs) = join(item.get_secret(), item.get_attributes()).await;
            let secret = text(secret.map_err(ss_fail)?)?;
            let attrs = attrs.map_err(ss_fail)?;
            let now = Stored {
                secret,
                kind: attrs.get(ATTR_KIND).cloned(),
                metadata: attrs.get(ATTR_METADATA).cloned(),
            };
            if !names(&attrs, service, &w.user) || !holds(want, &now) {
                return Ok(ReplaceIf::Changed);
            }
            overwrite(&item, attrs, w).await?;
            if alone(ss, service, &w.user, &item.item_path).await? {
                Ok(ReplaceIf::Replaced)
            } else {
                Err(Fail::Item(
                    "another client made a second keyring item for this entry while credshift \
                     wrote it; both are kept, and credshift will not guess which is meant"
                        .into(),
                ))
            }
        }
        _ => Ok(ReplaceIf::Changed),
    }
}

/// The service's items by user, from one search of the service instead of
/// one per item. Items found whose path is not in `known` have their
/// attributes read (and become known), at most `limit` of them. `None`, to
/// search per item instead, when there are more, when some are locked (the
/// search per item says which entry that concerns) or on any error.
async fn index<'s>(
    ss: &'s Async,
    service: &str,
    known: &mut Known,
    limit: usize,
    tick: Tick<'_>,
) -> Option<HashMap<String, Vec<Item<'s>>>> {
    let found = ss
        .search_items(HashMap::from([("service", service)]))
        .await
        .ok()?;
    if !found.locked.is_empty() {
        return None;
    }
    let unknown: Vec<&Item> = found
        .unlocked
        .iter()
        .filter(|i| !known.contains_key(&i.item_path))
        .collect();
    if unknown.len() > limit {
        return None;
    }
    for group in unknown.chunks(WINDOW) {
        let attrs = join_all(group.iter().map(|i| i.get_attributes())).await;
        for (item, attrs) in group.iter().zip(attrs) {
            let user = attrs.ok()?.remove("username").unwrap_or_default();
            known.insert(item.item_path.clone(), user);
        }
        tick();
    }
    let mut by_user: HashMap<String, Vec<Item>> = HashMap::new();
    for item in found.unlocked {
        if let Some(user) = known.get(&item.item_path) {
            by_user.entry(user.clone()).or_default().push(item);
        }
    }
    Some(by_user)
}

/// The item of `user` in an index: what a search for it would have found.
fn pick<'s>(
    index: &mut HashMap<String, Vec<Item<'s>>>,
    user: &str,
) -> Result<Option<Item<'s>>, Fail> {
    the_one(SearchItemsResult {
        unlocked: index.remove(user).unwrap_or_default(),
        locked: Vec::new(),
    })
}

/// A batch over users: the searches of a group of [`WINDOW`] users, then
/// `step` on what each found, the group's calls in flight together.
async fn per_user<'s, T, Fut>(
    ss: &'s Async,
    service: &str,
    users: &[String],
    tick: Tick<'_>,
    step: impl Fn(Result<Option<Item<'s>>, Fail>) -> Fut,
) -> Vec<Result<T, Fail>>
where
    Fut: std::future::Future<Output = Result<T, Fail>>,
{
    let mut out = Vec::with_capacity(users.len());
    for group in users.chunks(WINDOW) {
        let found = join_all(group.iter().map(|u| find(ss, service, u))).await;
        out.extend(join_all(found.into_iter().map(&step)).await);
        tick();
    }
    out
}

/// An item a read-back found, with the attributes read for it afresh.
type Found<'s> = (Item<'s>, HashMap<String, String>);

/// A read batch's view of the service: one search of every item of the
/// service, then the attributes of each item found, read afresh (never
/// the paths or users a write batch remembers), kept for the batch's users
/// only. What a search per user would have found, for each user at once:
/// a second item another client made for the same user is found here too
/// and refused by [`the_one`]. `None`, to search per user instead, when
/// the service has many more items than the batch asks for (reading all
/// their attributes would cost more than the searches), when any is locked
/// (the search per user says which entry that concerns) or on any error.
async fn read_index<'s>(
    ss: &'s Async,
    service: &str,
    users: &[String],
    tick: Tick<'_>,
) -> Option<HashMap<String, Vec<Found<'s>>>> {
    let found = ss
        .search_items(HashMap::from([("service", service)]))
        .await
        .ok()?;
    if !found.locked.is_empty() || found.unlocked.len() > 4 * (users.len() + WINDOW) {
        return None;
    }
    let wanted: std::collections::HashSet<&str> = users.iter().map(String::as_str).collect();
    let mut by_user: HashMap<String, Vec<Found>> = HashMap::new();
    let mut items = found.unlocked.into_iter().peekable();
    while items.peek().is_some() {
        let group: Vec<Item> = items.by_ref().take(WINDOW).collect();
        let attrs = join_all(group.iter().map(|i| i.get_attributes())).await;
        for (item, attrs) in group.into_iter().zip(attrs) {
            let attrs = attrs.ok()?;
            // The search matched `service`; an item whose attributes no
            // longer name it (changed since) is not this service's.
            let Some(user) = attrs
                .get("username")
                .filter(|u| wanted.contains(u.as_str()))
            else {
                continue;
            };
            if names(&attrs, service, user) {
                by_user.entry(user.clone()).or_default().push((item, attrs));
            }
        }
        tick();
    }
    Some(by_user)
}

/// Batch step 2 of a read from a [`read_index`]: the secret of the one
/// item found for the user.
async fn fetch_found(found: Result<Option<Found<'_>>, Fail>) -> Result<Option<Stored>, Fail> {
    let Some((item, mut attrs)) = found? else {
        return Ok(None);
    };
    let secret = text(item.get_secret().await.map_err(ss_fail)?)?;
    Ok(Some(Stored {
        secret,
        kind: attrs.remove(ATTR_KIND),
        metadata: attrs.remove(ATTR_METADATA),
    }))
}

/// Batch step 2 of a read: the secret and the attributes, both in flight.
async fn fetch(found: Result<Option<Item<'_>>, Fail>) -> Result<Option<Stored>, Fail> {
    let Some(item) = found? else {
        return Ok(None);
    };
    let (secret, attrs) = join(item.get_secret(), item.get_attributes()).await;
    let secret = text(secret.map_err(ss_fail)?)?;
    let mut attrs = attrs.map_err(ss_fail)?;
    Ok(Some(Stored {
        secret,
        kind: attrs.remove(ATTR_KIND),
        metadata: attrs.remove(ATTR_METADATA),
    }))
}

/// Batch step 2 of a delete.
async fn remove(found: Result<Option<Item<'_>>, Fail>) -> Result<bool, Fail> {
    match found? {
        Some(item) => item.delete().await.map(|()| true).map_err(ss_fail),
        None => Ok(false),
    }
}

/// Batch step 2 of a compare-and-delete: the secret and attributes of the
/// item found, compared with `want`, then `Delete` on that same item path
/// (never a new search, which could find another item).
async fn remove_if(
    found: Result<Option<Item<'_>>, Fail>,
    want: &Credential,
) -> Result<DeleteIf, Fail> {
    let Some(item) = found? else {
        return Ok(DeleteIf::Absent);
    };
    let (secret, attrs) = join(item.get_secret(), item.get_attributes()).await;
    let secret = text(secret.map_err(ss_fail)?)?;
    let mut attrs = attrs.map_err(ss_fail)?;
    let now = Stored {
        secret,
        kind: attrs.remove(ATTR_KIND),
        metadata: attrs.remove(ATTR_METADATA),
    };
    if !holds(want, &now) {
        return Ok(DeleteIf::Changed);
    }
    item.delete()
        .await
        .map(|()| DeleteIf::Deleted)
        .map_err(ss_fail)
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
        Ok(the_one(found)?.map_or(0, |_| 1))
    }

    /// The batch connection, opened by the first batch, and what it knows.
    fn pipe(&mut self) -> Result<(&Async, &mut Known), Fail> {
        if self.pipe.is_none() {
            let ss = async_io::block_on(Async::connect(EncryptionType::Dh)).map_err(unavailable)?;
            self.pipe = Some(ss);
        }
        match self.pipe.as_ref() {
            Some(ss) => Ok((ss, &mut self.known)),
            None => Err(Fail::Unavailable("keyring connection lost".into())),
        }
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
        let service = self.service.clone();
        let (ss, known) = self.pipe()?;
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
        let secret = text(bytes)?;
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
        self.known.clear();
        if self.guard(user)? == 0 {
            return Ok(false);
        }
        match self.entry(user)?.delete_credential() {
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
        let (ss, known) = match self.pipe() {
            Ok(p) => p,
            Err(f) => return every(items.len(), f),
        };
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
        let (ss, _) = match self.pipe() {
            Ok(p) => p,
            Err(f) => return every(users.len(), f),
        };
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
        let (ss, known) = match self.pipe() {
            Ok(p) => p,
            Err(f) => return every(users.len(), f),
        };
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
        let (ss, known) = match self.pipe() {
            Ok(p) => p,
            Err(f) => return every(expected.len(), f),
        };
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
        let (ss, known) = match self.pipe() {
            Ok(p) => p,
            Err(f) => return every(items.len(), f),
        };
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
