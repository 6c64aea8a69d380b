//! The Secret Service backend's batch steps: the calls for one item of
//! a group (search, read, write, compare-and-write, delete), sent on the
//! batch connection and awaited together by the backend.

use super::*;

/// Batch step 1 for one entry: the search.
pub(super) async fn find<'a>(ss: &'a Async, service: &str, user: &str) -> Result<Option<Item<'a>>, Fail> {
    let found = ss
        .search_items(HashMap::from([("service", service), ("username", user)]))
        .await
        .map_err(ss_fail)?;
    the_one(found)
}

/// The collection new items go to, checked once per batch: `Ok(None)`
/// when there is no default collection, an error when it is locked.
pub(super) async fn default_collection(ss: &Async) -> Result<Option<secret_service::Collection<'_>>, Fail> {
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
pub(super) fn names(attrs: &HashMap<String, String>, service: &str, user: &str) -> bool {
    attrs.get("service").map(String::as_str) == Some(service)
        && attrs.get("username").map(String::as_str) == Some(user)
}

/// A batch's connection and service, and whether it found what it knew
/// out of date (an item another client changed or deleted): then the
/// batch forgets what it knew.
pub(super) struct Ctx<'s> {
    pub(super) ss: &'s Async,
    pub(super) service: &'s str,
    pub(super) stale: Cell<bool>,
}

impl<'s> Ctx<'s> {
    pub(super) fn new(ss: &'s Async, service: &'s str) -> Self {
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
    pub(super) async fn checked(
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
pub(super) async fn put<'s>(
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
pub(super) async fn overwrite(
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
pub(super) async fn create<'c>(
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
pub(super) async fn alone(ss: &Async, service: &str, user: &str, path: &OwnedObjectPath) -> Result<bool, Fail> {
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
pub(super) async fn replace_if(
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
pub(super) async fn index<'s>(
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
pub(super) fn pick<'s>(
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
pub(super) async fn per_user<'s, T, Fut>(
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
pub(super) type Found<'s> = (Item<'s>, HashMap<String, String>);

/// A read batch's view of the service: one search of every item of the
/// service, then the attributes of each item found, read afresh (never
/// the paths or users a write batch remembers), kept for the batch's users
/// only. What a search per user would have found, for each user at once:
/// a second item another client made for the same user is found here too
/// and refused by [`the_one`]. `None`, to search per user instead, when
/// the service has many more items than the batch asks for (reading all
/// their attributes would cost more than the searches), when any is locked
/// (the search per user says which entry that concerns) or on any error.
pub(super) async fn read_index<'s>(
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
pub(super) async fn fetch_found(found: Result<Option<Found<'_>>, Fail>) -> Result<Option<Stored>, Fail> {
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
pub(super) async fn fetch(found: Result<Option<Item<'_>>, Fail>) -> Result<Option<Stored>, Fail> {
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
pub(super) async fn remove(found: Result<Option<Item<'_>>, Fail>) -> Result<bool, Fail> {
    match found? {
        Some(item) => item.delete().await.map(|()| true).map_err(ss_fail),
        None => Ok(false),
    }
}

/// Batch step 2 of a compare-and-delete: the secret and attributes of the
/// item found, compared with `want`, then `Delete` on that same item path
/// (never a new search, which could find another item).
pub(super) async fn remove_if(
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
