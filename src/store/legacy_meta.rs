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
use crate::scrub::{self, Seg};
use crate::store::modelforge::wipe_json;
use crate::store::wrapper::forward;
use crate::store::{DeleteIf, Listing, Scan, Store, StoreSpec, delete_if_unchanged_by_reading};

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
    seen: Mutex<BTreeMap<CredentialId, Seen>>,
}

/// An item as the inner store held it, for `delete_many`.
#[derive(Clone)]
enum Seen {
    Absent,
    /// Without metadata: deleted as it is (its value is not kept).
    Plain,
    /// With metadata, as stored: it may hold secrets.
    Raw(Credential),
}

impl Seen {
    /// A copy of the item only when it has metadata.
    fn of(c: Option<&Credential>) -> Seen {
        match c {
            None => Seen::Absent,
            Some(c) if c.metadata.is_empty() => Seen::Plain,
            Some(c) => Seen::Raw(c.clone()),
        }
    }
}

impl LegacyMeta {
    fn new(inner: Box<dyn Store>) -> LegacyMeta {
        LegacyMeta {
            inner,
            left: Mutex::new(None),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, BTreeMap<CredentialId, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The raw items at `ids`, one result per id: what the last
    /// `read_many` saw when `seen` has it, else read now in one batch.
    fn raw_many(
        &self,
        seen: &BTreeMap<CredentialId, Seen>,
        ids: &[CredentialId],
    ) -> Vec<Result<Seen>> {
        let unknown: Vec<CredentialId> = ids
            .iter()
            .filter(|id| !seen.contains_key(*id))
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
        let mut out = Scan {
            credentials: Vec::with_capacity(scan.credentials.len()),
            errors: scan.errors,
        };
        let mut derived = Vec::new();
        let mut left = Vec::new();
        for c in scan.credentials {
            let s = Split::of(c);
            left.extend(s.left.iter().map(|p| self.left_line(&s.parent.id, p)));
            derived.extend(s.derived);
            out.credentials.push(s.parent);
        }
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
    forward!(inner; spec, batch_hint, probe, check, verify_hashed, lock, identity, set_provenance);

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

    fn read_all(&self) -> Result<Scan> {
        self.seen().clear();
        let scan = self.inner.read_all()?;
        Ok(self.split_scan(scan))
    }

    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let raw = self.inner.read_many(ids);
        let mut seen: BTreeMap<CredentialId, Seen> = ids
            .iter()
            .zip(&raw)
            .filter_map(|(id, r)| r.as_ref().ok().map(|c| (id.clone(), Seen::of(c.as_ref()))))
            .collect();
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
                if let Ok(raw) = &r {
                    seen.insert(pid.clone(), Seen::of(raw.as_ref()));
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
    /// metadata carries secrets the layer split off), go through read,
    /// compare, delete here: the layer must decide for the parent and its
    /// derived items together, which the inner store cannot.
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
            for (&i, r) in direct
                .iter()
                .zip(self.inner.delete_if_unchanged(&pick(&direct)))
            {
                match r {
                    Ok(DeleteIf::Changed) => again.push(i),
                    r => out[i] = Some(r),
                }
            }
        }
        again.sort_unstable();
        if !again.is_empty() {
            for (&i, r) in again
                .iter()
                .zip(delete_if_unchanged_by_reading(self, &pick(&again)))
            {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("no result".into()))))
            .collect()
    }

    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let seen = std::mem::take(&mut *self.seen());
        let mut results: Vec<Option<Result<bool>>> = ids.iter().map(|_| None).collect();
        // Ids the inner store deletes as they are.
        let mut native: Vec<usize> = Vec::new();
        let mut parents: BTreeMap<CredentialId, Parent> = BTreeMap::new();
        let mut derived: Vec<(usize, CredentialId)> = Vec::new();
        for (i, r) in self.raw_many(&seen, ids).into_iter().enumerate() {
            match r {
                Err(e) => results[i] = Some(Err(e)),
                Ok(Seen::Plain) => native.push(i),
                Ok(Seen::Raw(c)) => {
                    let p = Parent::new(c, Some(i));
                    if p.derived.is_empty() && p.stuck.is_empty() {
                        native.push(i);
                    } else {
                        parents.insert(ids[i].clone(), p);
                    }
                }
                Ok(Seen::Absent) => match parent_of(&ids[i]) {
                    Some((pid, _)) => derived.push((i, pid)),
                    // Not there: the store answers for itself.
                    None => native.push(i),
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
                    parents.insert(pid.clone(), Parent::new(c, None));
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
                _ => results[i] = Some(Ok(false)),
            }
        }
        // Parents deleted whole carry their derived ids' results along.
        let mut with_parent: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut rewrites: Vec<(Credential, Vec<usize>)> = Vec::new();
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
                    native.push(i);
                    with_parent.push((i, p.drop));
                }
                None => {
                    rewrites.push((Split::of(p.raw).parent, p.drop));
                }
            }
        }
        native.sort_unstable();
        let native_ids: Vec<CredentialId> = native.iter().map(|&i| ids[i].clone()).collect();
        for (&i, r) in native.iter().zip(self.inner.delete_many(&native_ids)) {
            results[i] = Some(r);
        }
        for (whole, drop) in with_parent {
            let ok = matches!(results[whole], Some(Ok(_)));
            for i in drop {
                results[i] = Some(if ok {
                    Ok(true)
                } else {
                    Err(StoreError::item(
                        &ids[i],
                        format!("its parent {} was not deleted", ids[whole]),
                    ))
                });
            }
        }
        if !rewrites.is_empty() {
            let creds: Vec<Credential> = rewrites.iter().map(|(c, _)| c.clone()).collect();
            for ((c, drop), r) in rewrites.into_iter().zip(self.inner.write_many(&creds)) {
                for i in drop {
                    results[i] = Some(match &r {
                        Ok(()) => Ok(true),
                        Err(e) => Err(self.for_child(e, &ids[i], &c.id)),
                    });
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(false)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Kind;
    use crate::engine::memstore::MemStore;
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const HOOK: &str = "https://hooks.slack.com/services/T0LEGACY/B0LEGACY/legacyHookSecret01";
    const KEY: &str = "sk-proj-legacyNestedKey000000000001";

    fn id(s: &str) -> CredentialId {
        s.parse().unwrap()
    }

    fn legacy(name: &str) -> Credential {
        let meta = json!({
            "webhook_url": HOOK,
            "channel": "#alerts",
            "nested": {"api_key": KEY, "region": "eu"},
        });
        let Value::Object(m) = meta else {
            unreachable!()
        };
        Credential::new(id(name), Kind::ApiKey, "the-parent-value-0001").with_metadata(m)
    }

    fn layer(creds: Vec<Credential>) -> (MemStore, LegacyMeta) {
        // An envelope store's spec: its listing is the full scan (the
        // in-memory store lists scrubbed metadata, as the file stores do).
        let mem = MemStore::new("encrypted:legacy-test.enc".parse().unwrap(), creds, true);
        let s = LegacyMeta::new(Box::new(mem.clone()));
        (mem, s)
    }

    fn raw(mem: &MemStore, name: &str) -> Option<Credential> {
        mem.snapshot().into_iter().find(|c| c.id == id(name))
    }

    #[test]
    fn secret_metadata_becomes_items_and_the_parent_keeps_the_public_part() {
        let (_, s) = layer(vec![
            legacy("slack/bot"),
            Credential::new(id("a/b"), Kind::ApiKey, "v"),
        ]);
        let scan = s.read_all().unwrap();
        let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "a/b",
                "slack/bot",
                "slack/bot#webhook_url",
                "slack/bot#nested.api_key"
            ]
        );
        let parent = &scan.credentials[1];
        assert_eq!(
            Value::Object(parent.metadata.clone()),
            json!({"channel": "#alerts", "nested": {"region": "eu"}})
        );
        assert_eq!(parent.secret.expose(), "the-parent-value-0001");
        let hook = &scan.credentials[2];
        assert_eq!(hook.secret.expose(), HOOK);
        assert_eq!(hook.metadata[PARENT_KEY], "slack/bot");
        assert_eq!(scan.credentials[3].kind, Kind::ApiKey);
        // The listing (what inventory and the plan show) has no secret.
        let listing = s.list().unwrap();
        let text = serde_json::to_string(&listing.entries).unwrap();
        assert!(
            !text.contains("legacyHookSecret01") && !text.contains(KEY),
            "{text}"
        );
        assert_eq!(listing.entries.len(), 4);
        // One by one and in batches, the same items.
        let d = s.read(&id("slack/bot#nested.api_key")).unwrap().unwrap();
        assert_eq!(d.secret.expose(), KEY);
        assert!(s.read(&id("slack/bot#channel")).unwrap().is_none());
        assert!(s.read(&id("slack/gone#webhook_url")).unwrap().is_none());
        let many = s.read_many(&[
            id("slack/bot#webhook_url"),
            id("slack/bot"),
            id("slack/bot#nope"),
            id("a/b"),
        ]);
        let got: Vec<Option<String>> = many
            .into_iter()
            .map(|r| r.unwrap().map(|c| c.secret.expose().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                Some(HOOK.to_string()),
                Some("the-parent-value-0001".to_string()),
                None,
                Some("v".to_string())
            ]
        );
        assert!(s.unmigrated().is_empty());
    }

    #[test]
    fn a_parent_goes_only_together_with_every_secret_of_its_metadata() {
        let (mem, s) = layer(vec![legacy("slack/bot")]);
        // The parent alone: refused, nothing changes.
        let e = s.delete(&id("slack/bot")).unwrap_err().to_string();
        assert!(e.contains("kept") && e.contains("webhook_url"), "{e}");
        assert!(!e.contains("legacyHookSecret01"), "{e}");
        // One derived item while the other is left: refused too.
        let r = s.delete_many(&[id("slack/bot"), id("slack/bot#webhook_url")]);
        assert!(r.iter().all(Result::is_err), "{r:?}");
        assert_eq!(
            raw(&mem, "slack/bot").unwrap().metadata["webhook_url"],
            HOOK
        );
        // Both derived items, not the parent: the parent loses its secret
        // metadata and keeps its value and public metadata.
        let r = s.delete_many(&[id("slack/bot#nested.api_key"), id("slack/bot#webhook_url")]);
        assert!(r.iter().all(|r| matches!(r, Ok(true))), "{r:?}");
        let p = raw(&mem, "slack/bot").unwrap();
        assert_eq!(p.secret.expose(), "the-parent-value-0001");
        assert_eq!(
            Value::Object(p.metadata),
            json!({"channel": "#alerts", "nested": {"region": "eu"}})
        );
        assert!(s.read(&id("slack/bot#webhook_url")).unwrap().is_none());
        // Now the parent alone is an ordinary delete.
        assert!(s.delete(&id("slack/bot")).unwrap());
        assert!(mem.snapshot().is_empty());
        // A derived id whose parent is gone: nothing to remove.
        assert!(!s.delete(&id("slack/bot#webhook_url")).unwrap());
    }

    #[test]
    fn a_parent_and_all_its_secrets_in_one_batch_are_deleted() {
        let (mem, s) = layer(vec![legacy("slack/bot"), legacy("slack/other")]);
        let r = s.delete_many(&[
            id("slack/bot"),
            id("slack/bot#nested.api_key"),
            id("slack/bot#webhook_url"),
            id("slack/other#webhook_url"),
        ]);
        assert!(matches!(r[0..3], [Ok(true), Ok(true), Ok(true)]), "{r:?}");
        assert!(r[3].is_err(), "its sibling stays: {r:?}");
        let left: Vec<String> = mem.snapshot().iter().map(|c| c.id.to_string()).collect();
        assert_eq!(left, ["slack/other"]);
        assert_eq!(
            raw(&mem, "slack/other").unwrap().metadata["webhook_url"],
            HOOK
        );
    }

    /// Counts the ids the layer reads from the store in batches.
    struct Counted {
        inner: MemStore,
        reads: Arc<AtomicUsize>,
    }

    impl Store for Counted {
        forward!(inner; spec, probe, list, read, write, delete, read_all, write_many, delete_many,
            identity);
        fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
            self.reads.fetch_add(ids.len(), Ordering::SeqCst);
            self.inner.read_many(ids)
        }
    }

    fn counted(creds: Vec<Credential>) -> (MemStore, LegacyMeta, Arc<AtomicUsize>) {
        let (mem, _) = layer(creds);
        let reads = Arc::new(AtomicUsize::new(0));
        let s = LegacyMeta::new(Box::new(Counted {
            inner: mem.clone(),
            reads: reads.clone(),
        }));
        (mem, s, reads)
    }

    #[test]
    fn a_delete_right_after_reading_its_batch_reads_nothing_again() {
        let (mem, s, reads) = counted(vec![
            legacy("slack/bot"),
            legacy("slack/kept"),
            Credential::new(id("a/b"), Kind::ApiKey, "v"),
        ]);
        // What cleanup does: read the batch, check it, delete it.
        let batch = [
            id("a/b"),
            id("slack/bot"),
            id("slack/bot#webhook_url"),
            id("slack/bot#nested.api_key"),
            id("slack/kept"),
            id("slack/kept#webhook_url"),
        ];
        assert!(s.read_many(&batch).iter().all(|r| matches!(r, Ok(Some(_)))));
        reads.store(0, Ordering::SeqCst);
        let r = s.delete_many(&batch);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "read again");
        assert!(
            matches!(r[..4], [Ok(true), Ok(true), Ok(true), Ok(true)]),
            "{r:?}"
        );
        // What was read still decides: a secret not in the batch keeps its parent.
        assert!(r[4].is_err() && r[5].is_err(), "{r:?}");
        let left: Vec<String> = mem.snapshot().iter().map(|c| c.id.to_string()).collect();
        assert_eq!(left, ["slack/kept"]);
        assert_eq!(
            raw(&mem, "slack/kept").unwrap().metadata["webhook_url"],
            HOOK
        );
        // Used once: the next delete reads for itself.
        assert!(!s.delete(&id("a/b")).unwrap());
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_write_after_the_read_makes_the_delete_read_again() {
        let plain = Credential::new(id("slack/bot"), Kind::ApiKey, "the-parent-value-0001");
        let (mem, s, reads) = counted(vec![plain]);
        assert!(s.read_many(&[id("slack/bot")])[0].is_ok());
        // Since that read, the parent gained secret metadata.
        s.write(&legacy("slack/bot")).unwrap();
        reads.store(0, Ordering::SeqCst);
        let e = s.delete(&id("slack/bot")).unwrap_err().to_string();
        assert!(e.contains("kept") && e.contains("webhook_url"), "{e}");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(
            raw(&mem, "slack/bot").unwrap().metadata["webhook_url"],
            HOOK
        );
    }

    #[test]
    fn any_other_call_between_the_read_and_the_delete_makes_the_delete_read_again() {
        type Call = fn(&dyn Store);
        let calls: [(&str, Call); 3] = [
            ("read", |s| drop(s.read(&id("other/x")))),
            ("list", |s| drop(s.list())),
            ("read_all", |s| drop(s.read_all())),
        ];
        for (name, call) in calls {
            let plain = Credential::new(id("slack/bot"), Kind::ApiKey, "the-parent-value-0001");
            let (mem, s, reads) = counted(vec![plain]);
            assert!(s.read_many(&[id("slack/bot")])[0].is_ok());
            call(&s);
            // Meanwhile another program gave the parent secret metadata.
            mem.write(&legacy("slack/bot")).unwrap();
            reads.store(0, Ordering::SeqCst);
            let e = s.delete(&id("slack/bot")).unwrap_err().to_string();
            assert!(
                e.contains("kept") && e.contains("webhook_url"),
                "{name}: {e}"
            );
            assert_eq!(reads.load(Ordering::SeqCst), 1, "{name}");
        }
    }

    #[test]
    fn what_no_id_can_name_is_left_and_named() {
        let mut hashed = legacy("ns/we#ird");
        hashed.metadata.remove("nested");
        let clash = Credential::new(id("slack/bot#webhook_url"), Kind::Other, "native");
        let (_, s) = layer(vec![hashed, legacy("slack/bot"), clash]);
        let scan = s.read_all().unwrap();
        let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "ns/we#ird",
                "slack/bot",
                "slack/bot#webhook_url",
                "slack/bot#nested.api_key"
            ]
        );
        assert_eq!(scan.credentials[2].secret.expose(), "native");
        let left = s.unmigrated();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(
            left[0].contains("ns/we#ird: metadata webhook_url"),
            "{left:?}"
        );
        assert!(
            left[1].contains("an item named slack/bot#webhook_url exists"),
            "{left:?}"
        );
        assert!(!format!("{left:?}").contains("legacyHookSecret01"));
        // The item wins on read as in the listing.
        let c = s.read(&id("slack/bot#webhook_url")).unwrap().unwrap();
        assert_eq!(c.secret.expose(), "native");
    }

    #[test]
    fn only_our_own_store_kinds_get_the_layer() {
        for (spec, ours) in [
            ("keyring:x", true),
            ("sqlite:a.db", true),
            ("postgres://u@h/db", true),
            ("encrypted:a.enc", true),
            ("bundle:a.json", true),
            ("dotenv:.env", true),
            ("env:", false),
            ("prompttrain:/x", false),
            ("modelforge:c.json", false),
            ("laravel:sqlite:a.db", false),
        ] {
            assert_eq!(applies(&spec.parse().unwrap()), ours, "{spec}");
        }
    }
}
