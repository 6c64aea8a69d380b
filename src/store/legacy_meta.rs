//! Secret metadata left in credshift's own stores by older versions.
//!
//! Older credshift versions stored an item's metadata as it came, so a
//! Secret Service attribute, a `sqlite:` or `postgres://` metadata column,
//! an item of an encrypted file or bundle, or a dotenv marker comment may
//! hold a value the scrubber calls secret (a Slack webhook URL, an
//! `api_key`). [`wrap`] puts one layer over those stores that makes each
//! such value a secret item of its own, `NAMESPACE/NAME#PATH` (the parent's
//! id, `#`, the metadata path as [`scrub::path_text`] writes it), and shows
//! the parent with its public metadata only, so both migrate and verify.
//!
//! Reading a derived id reads its parent. Deleting one (cleanup) rewrites
//! the parent without its secret metadata, but only once no other secret is
//! left in it; a parent is deleted only together with every secret its
//! metadata holds. Anything else is refused with an error naming what is
//! left, so cleanup reports "migrated, source still present" and never
//! loses a secret that did not verify. Writes pass through: the stores keep
//! only public metadata, so a derived item lands as an item of its own.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use serde_json::Value;

use crate::credential::{Credential, CredentialId, Metadata};
use crate::error::{Result, StoreError};
use crate::scrub::wipe_json;
use crate::scrub::{self, Seg};
use crate::store::wrapper::forward;
use crate::store::{DeleteIf, Listing, Replace, ReplaceIf, Scan, Store, StoreSpec};

/// Between the parent's id and the metadata path in a derived id.
pub const SEP: char = '#';

/// The metadata key a derived item names its parent under.
pub const PARENT_KEY: &str = "metadata_of";

/// Whether a store kind is one of credshift's own (the stores an older
/// credshift wrote metadata into as it came).
pub fn applies(spec: &StoreSpec) -> bool {
    spec.profile().own_format
}

/// The store, behind the legacy-metadata layer when it is one of ours.
pub fn wrap(store: Box<dyn Store>) -> Box<dyn Store> {
    if applies(store.spec()) {
        Box::new(LegacyMeta::new(store))
    } else {
        store
    }
}

/// `NAMESPACE/NAME#PATH`.
pub fn derived_id(parent: &CredentialId, path: &str) -> CredentialId {
    CredentialId::new(
        parent.namespace.clone(),
        format!("{}{SEP}{path}", parent.name),
    )
}

/// The parent id and metadata path a derived id names.
pub fn parent_of(id: &CredentialId) -> Option<(CredentialId, Vec<Seg>)> {
    let (name, path) = id.name.split_once(SEP)?;
    if name.is_empty() {
        return None;
    }
    let path = scrub::parse_path(path)?;
    Some((CredentialId::new(id.namespace.clone(), name), path))
}

/// An item split into its public part and the secrets of its metadata.
struct Split {
    /// The item with its public metadata.
    parent: Credential,
    /// One item per secret a derived id can name.
    derived: Vec<Credential>,
    /// Metadata paths of secret material no derived item can carry (a key
    /// a path cannot name, a `#` in the parent's name or the path).
    left: Vec<String>,
}

impl Split {
    fn of(mut c: Credential) -> Split {
        if c.metadata.is_empty() {
            return Split {
                parent: c,
                derived: Vec::new(),
                left: Vec::new(),
            };
        }
        let mut tree = Value::Object(c.metadata.clone());
        let (found, mut left) = scrub::find(&tree);
        wipe_json(&mut tree);
        let mut derived = Vec::new();
        if !found.is_empty() || !left.is_empty() {
            let public = scrub::public(&c.metadata);
            let mut old = Value::Object(std::mem::replace(&mut c.metadata, public));
            wipe_json(&mut old);
        }
        for f in found {
            let path = f.path_text();
            if c.id.name.contains(SEP) || path.contains(SEP) {
                left.push(path);
                continue;
            }
            let mut m = Metadata::new();
            m.insert(PARENT_KEY.into(), c.id.to_string().into());
            derived
                .push(Credential::new(derived_id(&c.id, &path), f.kind, f.secret).with_metadata(m));
        }
        Split {
            parent: c,
            derived,
            left,
        }
    }
}

/// The layer over one of credshift's own stores.
struct LegacyMeta {
    inner: Box<dyn Store>,
    /// What the last full scan found that no item carries, as
    /// [`Store::unmigrated`] lines.
    left: Mutex<Option<Vec<String>>>,
    /// What the last `read_many` read from the inner store, by id. The
    /// engine's cleanup reads a batch, checks every fingerprint, then
    /// deletes it: `delete_many` decides from this (the state the engine
    /// verified) instead of reading its ids again. Only a `delete_many`
    /// right after that `read_many` uses it: every other call through this
    /// layer (a write, a read, a listing) drops it, so it never outlives
    /// the check it stands for, nor keeps copies of metadata secrets.
    seen: Mutex<SeenIds>,
}

/// What the last `read_many` saw, sorted by id: a vector, not a map (a
/// B-tree of a 32,768-item batch, built through a sorted copy of its
/// entries, was 10 MB of a 100,000-item migration's peak; this is 48
/// bytes per id).
#[derive(Default)]
struct SeenIds(Vec<(CredentialId, Seen)>);

impl SeenIds {
    /// One entry per id; of a repeated id the last (as a map would keep).
    fn new(mut entries: Vec<(CredentialId, Seen)>) -> SeenIds {
        entries.reverse();
        // Stable: of equal ids the first, i.e. the last given, stays.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        entries.shrink_to_fit();
        SeenIds(entries)
    }

    fn get(&self, id: &CredentialId) -> Option<&Seen> {
        self.0
            .binary_search_by(|(k, _)| k.cmp(id))
            .ok()
            .map(|i| &self.0[i].1)
    }

    fn contains_key(&self, id: &CredentialId) -> bool {
        self.get(id).is_some()
    }

    /// Add `id` unless it is there.
    fn insert_if_absent(&mut self, id: &CredentialId, seen: impl FnOnce() -> Seen) {
        if let Err(at) = self.0.binary_search_by(|(k, _)| k.cmp(id)) {
            self.0.insert(at, (id.clone(), seen()));
        }
    }

    fn clear(&mut self) {
        self.0 = Vec::new();
    }
}

/// An item as the inner store held it, for `delete_many`.
#[derive(Clone)]
enum Seen {
    Absent,
    /// Without metadata: deleted as it is (its value is not kept).
    Plain,
    /// With metadata, as stored: it may hold secrets. Boxed: most items
    /// have none, and an entry is then 16 bytes.
    Raw(Box<Credential>),
}

impl Seen {
    /// A copy of the item only when it has metadata.
    fn of(c: Option<&Credential>) -> Seen {
        match c {
            None => Seen::Absent,
            Some(c) if c.metadata.is_empty() => Seen::Plain,
            Some(c) => Seen::Raw(Box::new(c.clone())),
        }
    }
}

impl LegacyMeta {
    fn new(inner: Box<dyn Store>) -> LegacyMeta {
        LegacyMeta {
            inner,
            left: Mutex::new(None),
            seen: Mutex::new(SeenIds::default()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenIds> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The raw items at `ids`, one result per id: what the last
    /// `read_many` saw when `seen` has it, else read now in one batch.
    fn raw_many(
        &self,
        seen: &SeenIds,
        ids: &[CredentialId],
    ) -> Vec<Result<Seen>> {
        let unknown: Vec<CredentialId> = ids
            .iter()
            .filter(|id| !seen.contains_key(id))
            .cloned()
            .collect();
        let mut fresh = if unknown.is_empty() {
            Vec::new()
        } else {
            self.inner.read_many(&unknown)
        }
        .into_iter();
        ids.iter()
            .map(|id| match seen.get(id) {
                Some(raw) => Ok(raw.clone()),
                None => fresh.next().map_or_else(
                    || Err(StoreError::item(id, "store returned no result")),
                    |r| r.map(|c| Seen::of(c.as_ref())),
                ),
            })
            .collect()
    }

    fn left_line(&self, parent: &CredentialId, path: &str) -> String {
        format!("{} {parent}: metadata {path}", self.inner.spec())
    }

    /// A derived item out of its parent as read from the inner store.
    fn pick(parent: Credential, id: &CredentialId) -> Option<Credential> {
        Split::of(parent).derived.into_iter().find(|d| d.id == *id)
    }

    /// An error about a parent, for one of its derived ids: the store
    /// unreachable stays so (the engine stops), anything else is the item's.
    fn for_child(&self, e: &StoreError, id: &CredentialId, parent: &CredentialId) -> StoreError {
        if e.is_unavailable() {
            StoreError::Unavailable {
                store: self.inner.spec().to_string(),
                reason: e.to_string(),
            }
        } else {
            StoreError::item(id, format!("its parent {parent}: {e}"))
        }
    }

    fn read_derived(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let Some((pid, _)) = parent_of(id) else {
            return Ok(None);
        };
        Ok(self.inner.read(&pid)?.and_then(|p| Self::pick(p, id)))
    }

    /// The scan with every item split; derived ids that an item of the
    /// store already has are left out (the item wins) and named as left.
    fn split_scan(&self, scan: Scan) -> Scan {
        let mut derived = Vec::new();
        let mut left = Vec::new();
        // Collected into the scan's own buffer (a map over a vector's
        // `into_iter` into the same type reuses its allocation): a second
        // buffer of every credential was 120 bytes per item at the scan's peak.
        let credentials = scan
            .credentials
            .into_iter()
            .map(|c| {
                let s = Split::of(c);
                left.extend(s.left.iter().map(|p| self.left_line(&s.parent.id, p)));
                derived.extend(s.derived);
                s.parent
            })
            .collect();
        let mut out = Scan {
            credentials,
            errors: scan.errors,
        };
        if !derived.is_empty() {
            let native: HashSet<&CredentialId> = out.credentials.iter().map(|c| &c.id).collect();
            let (clash, fine): (Vec<_>, Vec<_>) =
                derived.into_iter().partition(|d| native.contains(&d.id));
            for d in clash {
                if let Some((pid, path)) = parent_of(&d.id) {
                    left.push(format!(
                        "{} (an item named {} exists)",
                        self.left_line(&pid, &scrub::path_text(&path)),
                        d.id
                    ));
                }
            }
            out.credentials.extend(fine);
        }
        *self.left.lock().unwrap_or_else(|p| p.into_inner()) = Some(left);
        out
    }
}

/// A parent holding secret metadata, during a delete.
struct Parent {
    /// As the inner store holds it.
    raw: Credential,
    /// Derived ids of its secret metadata.
    derived: BTreeSet<CredentialId>,
    /// Paths of secret metadata no derived id names.
    stuck: Vec<String>,
    /// Index of the parent itself among the ids to delete.
    whole: Option<usize>,
    /// Indices of its derived ids among the ids to delete.
    drop: Vec<usize>,
}

impl Parent {
    fn new(raw: Credential, whole: Option<usize>) -> Parent {
        let s = Split::of(raw.clone());
        Parent {
            raw,
            derived: s.derived.into_iter().map(|d| d.id).collect(),
            stuck: s.left,
            whole,
            drop: Vec::new(),
        }
    }
}

/// Reading, listing and deleting split parents from their secret metadata;
/// everything else is the inner store's (see [`crate::store::wrapper`]).
#[deny(clippy::missing_trait_methods)]
impl Store for LegacyMeta {
    forward!(inner; spec, batch_hint, probe, check, verify_hashed, lock, identity, set_provenance,
        inventory_from_listing, release_cache);

    fn list(&self) -> Result<Listing> {
        self.seen().clear();
        if self.inner.spec().profile().lists_by_parsing {
            // Their listing is a full parse anyway, and shows scrubbed
            // metadata: the secrets are in the scan.
            return self.read_all().map(Listing::from);
        }
        // The keyring and the databases list raw metadata without the key
        // (a wrong passphrase still lists): split it as it is.
        let listing = self.inner.list()?;
        let scan = Scan {
            credentials: listing
                .entries
                .into_iter()
                .map(|e| Credential::new(e.id, e.kind, "").with_metadata(e.metadata))
                .collect(),
            errors: listing.errors,
        };
        Ok(Listing::from(self.split_scan(scan)))
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.seen().clear();
        self.inner.write(c)
    }

    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        self.seen().clear();
        self.inner.write_many(creds)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        self.seen().clear();
        match self.inner.read(id)? {
            Some(c) => Ok(Some(Split::of(c).parent)),
            None => self.read_derived(id),
        }
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(false))
    }

    /// Through this layer's own `read_all`, so what it does to reads
    /// applies (the inner store's narrower read would bypass it).
    fn read_wanted(&self, _ids: &[CredentialId]) -> Result<Scan> {
        self.read_all()
    }

    fn read_all(&self) -> Result<Scan> {
        self.seen().clear();
        let scan = self.inner.read_all()?;
        Ok(self.split_scan(scan))
    }

    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let raw = self.inner.read_many(ids);
        let mut seen = SeenIds::new(
            ids.iter()
                .zip(&raw)
                .filter_map(|(id, r)| r.as_ref().ok().map(|c| (id.clone(), Seen::of(c.as_ref()))))
                .collect(),
        );
        let mut out: Vec<Result<Option<Credential>>> = raw
            .into_iter()
            .map(|r| r.map(|o| o.map(|c| Split::of(c).parent)))
            .collect();
        let wanted: Vec<(usize, CredentialId)> = out
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(None)))
            .filter_map(|(i, _)| parent_of(&ids[i]).map(|(pid, _)| (i, pid)))
            .collect();
        if wanted.is_empty() {
            *self.seen() = seen;
            return out;
        }
        let pids: Vec<CredentialId> = wanted
            .iter()
            .map(|(_, p)| p.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let parents: BTreeMap<CredentialId, Result<Vec<Credential>>> = pids
            .iter()
            .cloned()
            .zip(self.inner.read_many(&pids))
            .map(|(pid, r)| {
                // A parent also asked for keeps what the first read saw:
                // its shown value came from that one.
                if let Ok(raw) = &r {
                    seen.insert_if_absent(&pid, || Seen::of(raw.as_ref()));
                }
                let derived = r.map(|o| o.map(|p| Split::of(p).derived).unwrap_or_default());
                (pid, derived)
            })
            .collect();
        for (i, pid) in wanted {
            out[i] = match parents.get(&pid) {
                Some(Ok(derived)) => Ok(derived.iter().find(|d| d.id == ids[i]).cloned()),
                Some(Err(e)) => Err(self.for_child(e, &ids[i], &pid)),
                None => Ok(None),
            };
        }
        *self.seen() = seen;
        out
    }

    /// Items the layer shows as the inner store holds them go to the inner
    /// store's compare-and-delete (atomic where it is). A derived item and
    /// its parent, and an item the inner store holds otherwise (its raw
    /// metadata carries secrets the layer split off), are compared here as
    /// the layer shows them, and then deleted through the inner store's
    /// compare-and-delete of the raw item as read (see
    /// [`LegacyMeta::remove_if_unchanged`]).
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let parents: HashSet<CredentialId> = expected
            .iter()
            .filter_map(|c| parent_of(&c.id).map(|(p, _)| p))
            .collect();
        let grouped = |c: &Credential| parent_of(&c.id).is_some() || parents.contains(&c.id);
        let (direct, layered): (Vec<usize>, Vec<usize>) =
            (0..expected.len()).partition(|&i| !grouped(&expected[i]));
        let mut out: Vec<Option<Result<DeleteIf>>> = expected.iter().map(|_| None).collect();
        let pick =
            |ix: &[usize]| -> Vec<Credential> { ix.iter().map(|&i| expected[i].clone()).collect() };
        let mut again: Vec<usize> = layered;
        if !direct.is_empty() {
            // All of them, the usual batch: no copy of it (a cleanup batch
            // of 32,768 items is 4 MB of credentials).
            let direct_results = if direct.len() == expected.len() {
                self.inner.delete_if_unchanged(expected)
            } else {
                self.inner.delete_if_unchanged(&pick(&direct))
            };
            for (&i, r) in direct.iter().zip(direct_results) {
                match r {
                    Ok(DeleteIf::Changed) => again.push(i),
                    r => out[i] = Some(r),
                }
            }
        }
        again.sort_unstable();
        if !again.is_empty() {
            for (&i, r) in again.iter().zip(self.remove_if_unchanged(&pick(&again))) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("no result".into()))))
            .collect()
    }

    /// As [`Self::delete_if_unchanged`]: items the layer shows as the
    /// inner store holds them go to the inner store's compare-and-write;
    /// a derived item, its parent, and an item the inner store reports
    /// changed (its raw metadata may carry secrets the layer split off)
    /// are compared as the layer shows them (read, compare, write).
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        self.seen().clear();
        let parents: HashSet<CredentialId> = items
            .iter()
            .filter_map(|r| parent_of(&r.new.id).map(|(p, _)| p))
            .collect();
        let grouped = |r: &Replace| parent_of(&r.new.id).is_some() || parents.contains(&r.new.id);
        let (direct, mut again): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&i| !grouped(&items[i]));
        let mut out: Vec<Option<Result<ReplaceIf>>> = items.iter().map(|_| None).collect();
        let pick =
            |ix: &[usize]| -> Vec<Replace> { ix.iter().map(|&i| items[i].clone()).collect() };
        if !direct.is_empty() {
            for (&i, r) in direct
                .iter()
                .zip(self.inner.replace_if_unchanged(&pick(&direct)))
            {
                match r {
                    Ok(ReplaceIf::Changed) => again.push(i),
                    r => out[i] = Some(r),
                }
            }
        }
        again.sort_unstable();
        if !again.is_empty() {
            let done = crate::store::replace_if_unchanged_by_reading(self, &pick(&again));
            for (&i, r) in again.iter().zip(done) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("no result".into()))))
            .collect()
    }

    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        self.remove(ids, None)
            .into_iter()
            .map(|r| r.map(|d| d == DeleteIf::Deleted))
            .collect()
    }

    fn unmigrated(&self) -> Vec<String> {
        let mut out = self.inner.unmigrated();
        let cached = self.left.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match cached {
            Some(left) => out.extend(left),
            None => {
                if self.read_all().is_ok() {
                    let left = self.left.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    out.extend(left.unwrap_or_default());
                }
            }
        }
        out
    }
}

impl LegacyMeta {
    /// `delete_if_unchanged` for items the layer splits: read them (and
    /// their parents) as the layer shows them, compare, then [`Self::remove`]
    /// the matching ones conditionally.
    fn remove_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let ids: Vec<CredentialId> = expected.iter().map(|c| c.id.clone()).collect();
        let mut out: Vec<Option<Result<DeleteIf>>> = expected.iter().map(|_| None).collect();
        let mut doomed: Vec<usize> = Vec::new();
        for (i, (want, now)) in expected.iter().zip(self.read_many(&ids)).enumerate() {
            match now {
                Ok(None) => out[i] = Some(Ok(DeleteIf::Absent)),
                Ok(Some(c)) if c.same_as(want) => doomed.push(i),
                Ok(Some(_)) => out[i] = Some(Ok(DeleteIf::Changed)),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let doomed_ids: Vec<CredentialId> = doomed.iter().map(|&i| ids[i].clone()).collect();
        let doomed_want: Vec<Credential> = doomed.iter().map(|&i| expected[i].clone()).collect();
        for (&i, r) in doomed
            .iter()
            .zip(self.remove(&doomed_ids, Some(&doomed_want)))
        {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("no result".into()))))
            .collect()
    }

    /// `delete_many`; with `expected` (one per id), every change to the inner store
    /// is its compare-and-delete of the raw item this layer decided from
    /// (the `read_many` just before), so an item another application
    /// changed since is kept and reported [`DeleteIf::Changed`]. A parent
    /// rewritten without its secret metadata (only derived ids deleted) is
    /// a write: no store offers compare-and-write, so that rewrite is
    /// checked against a fresh read just before it, not atomically.
    fn remove(
        &self,
        ids: &[CredentialId],
        expected: Option<&[Credential]>,
    ) -> Vec<Result<DeleteIf>> {
        let seen = std::mem::take(&mut *self.seen());
        let mut results: Vec<Option<Result<DeleteIf>>> = ids.iter().map(|_| None).collect();
        // Ids the inner store deletes as they are, with the raw item as the
        // inner store held it when known (compare-and-delete compares it).
        let mut native: Vec<(usize, Option<Credential>)> = Vec::new();
        let mut parents: BTreeMap<CredentialId, Parent> = BTreeMap::new();
        let mut derived: Vec<(usize, CredentialId)> = Vec::new();
        for (i, r) in self.raw_many(&seen, ids).into_iter().enumerate() {
            match r {
                Err(e) => results[i] = Some(Err(e)),
                Ok(Seen::Plain) => native.push((i, None)),
                Ok(Seen::Raw(c)) => {
                    let p = Parent::new(*c, Some(i));
                    if p.derived.is_empty() && p.stuck.is_empty() {
                        native.push((i, Some(p.raw)));
                    } else {
                        parents.insert(ids[i].clone(), p);
                    }
                }
                Ok(Seen::Absent) => match parent_of(&ids[i]) {
                    Some((pid, _)) => derived.push((i, pid)),
                    // Not there: the store answers for itself.
                    None => native.push((i, None)),
                },
            }
        }
        let missing: Vec<CredentialId> = derived
            .iter()
            .map(|(_, p)| p)
            .filter(|p| !parents.contains_key(*p))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut unreadable: BTreeMap<CredentialId, StoreError> = BTreeMap::new();
        for (pid, r) in missing.iter().zip(self.raw_many(&seen, &missing)) {
            match r {
                Ok(Seen::Raw(c)) => {
                    parents.insert(pid.clone(), Parent::new(*c, None));
                }
                // Holds no metadata: none of its ids is derived.
                Ok(Seen::Plain | Seen::Absent) => {}
                Err(e) => {
                    unreadable.insert(pid.clone(), e);
                }
            }
        }
        for (i, pid) in derived {
            match (parents.get_mut(&pid), unreadable.get(&pid)) {
                (Some(p), _) if p.derived.contains(&ids[i]) => p.drop.push(i),
                (_, Some(e)) => results[i] = Some(Err(self.for_child(e, &ids[i], &pid))),
                // The parent is gone or holds no such secret: nothing to remove.
                _ => results[i] = Some(Ok(DeleteIf::Absent)),
            }
        }
        // Parents deleted whole carry their derived ids' results along.
        let mut with_parent: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut rewrites: Vec<(Credential, Credential, Vec<usize>)> = Vec::new();
        for (pid, p) in parents {
            if p.whole.is_none() && p.drop.is_empty() {
                continue;
            }
            let dropping: BTreeSet<&CredentialId> = p.drop.iter().map(|&i| &ids[i]).collect();
            let mut remaining: Vec<String> = p
                .derived
                .iter()
                .filter(|d| !dropping.contains(d))
                .filter_map(|d| d.name.split_once(SEP).map(|(_, path)| path.to_string()))
                .collect();
            remaining.extend(p.stuck.iter().cloned());
            if !remaining.is_empty() {
                let why = format!(
                    "kept: the metadata of {pid} still holds secret material that was not \
                     migrated ({})",
                    remaining.join(", ")
                );
                for i in p.whole.into_iter().chain(p.drop) {
                    results[i] = Some(Err(StoreError::item(&ids[i], why.clone())));
                }
                continue;
            }
            match p.whole {
                Some(i) => {
                    native.push((i, Some(p.raw)));
                    with_parent.push((i, p.drop));
                }
                None => {
                    rewrites.push((Split::of(p.raw.clone()).parent, p.raw, p.drop));
                }
            }
        }
        native.sort_unstable_by_key(|(i, _)| *i);
        match expected {
            None => {
                let native_ids: Vec<CredentialId> =
                    native.iter().map(|(i, _)| ids[*i].clone()).collect();
                for ((i, _), r) in native.iter().zip(self.inner.delete_many(&native_ids)) {
                    results[*i] = Some(r.map(|gone| {
                        if gone {
                            DeleteIf::Deleted
                        } else {
                            DeleteIf::Absent
                        }
                    }));
                }
            }
            Some(expected) => {
                // An item without metadata is held as the layer showed it.
                let raws: Vec<Credential> = native
                    .iter()
                    .map(|(i, raw)| raw.clone().unwrap_or_else(|| expected[*i].clone()))
                    .collect();
                for ((i, _), r) in native.iter().zip(self.inner.delete_if_unchanged(&raws)) {
                    results[*i] = Some(r);
                }
            }
        }
        for (whole, drop) in with_parent {
            let parent = match &results[whole] {
                Some(Ok(d)) => Ok(*d),
                _ => Err(()),
            };
            for i in drop {
                results[i] = Some(match parent {
                    Ok(DeleteIf::Changed) => Ok(DeleteIf::Changed),
                    Ok(_) => Ok(DeleteIf::Deleted),
                    Err(()) => Err(StoreError::item(
                        &ids[i],
                        format!("its parent {} was not deleted", ids[whole]),
                    )),
                });
            }
        }
        if expected.is_some() {
            // Not atomic (see above): the parent as it is now must still be
            // the one decided from, else it is kept.
            let pids: Vec<CredentialId> = rewrites.iter().map(|(c, ..)| c.id.clone()).collect();
            let now = self.inner.read_many(&pids);
            let mut kept = Vec::new();
            for ((public, raw, drop), now) in rewrites.into_iter().zip(now) {
                match now {
                    Ok(Some(n)) if n.same_as(&raw) => kept.push((public, raw, drop)),
                    Ok(_) => {
                        for i in drop {
                            results[i] = Some(Ok(DeleteIf::Changed));
                        }
                    }
                    Err(e) => {
                        for i in drop {
                            results[i] = Some(Err(self.for_child(&e, &ids[i], &raw.id)));
                        }
                    }
                }
            }
            rewrites = kept;
        }
        if !rewrites.is_empty() {
            let creds: Vec<Credential> = rewrites.iter().map(|(c, ..)| c.clone()).collect();
            for ((c, _, drop), r) in rewrites.into_iter().zip(self.inner.write_many(&creds)) {
                for i in drop {
                    results[i] = Some(match &r {
                        Ok(()) => Ok(DeleteIf::Deleted),
                        Err(e) => Err(self.for_child(e, &ids[i], &c.id)),
                    });
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(DeleteIf::Absent)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
