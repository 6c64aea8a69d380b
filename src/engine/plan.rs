//! Plan (the dry run): one action per source item, in stable sorted order,
//! with counts and an estimated duration. Reads both stores, writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::credential::{Credential, CredentialId};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::fingerprint::FpKey;
use crate::engine::inventory::now_ms;
use crate::engine::types::{Action, ConflictPolicy, Plan, PlanCounts, PlanItem};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::{Capability, Scan, Severity, Store, StoreSpec};

/// A prepared migration: the plan the user consents to plus what executing
/// it needs (the source values, the target values it may overwrite) and
/// fingerprints of both stores as the plan saw them. `execute` consumes
/// this very object and refuses to write when either store changed since.
pub struct Prepared {
    pub plan: Plan,
    pub source: SourceItems,
    pub target_old: BTreeMap<CredentialId, Credential>,
    /// Ids the target lists but cannot read, with the error: conflicts,
    /// never replaced (there is nothing to back up).
    pub target_unreadable: BTreeMap<CredentialId, String>,
    pub target_capability: Capability,
    snapshot: Snapshot,
}

/// The planned source credentials, one per id, sorted by id: the source
/// scan's own buffer, kept (a map beside the scan was a second copy of
/// every credential and its id for the whole run). Empty (unset) once
/// [`Prepared::shed_source_values`] dropped them, until
/// [`Prepared::changed_since`] puts back the ones it reads again.
#[derive(Default)]
pub struct SourceItems(std::sync::OnceLock<Vec<Credential>>);

impl SourceItems {
    fn new(creds: Vec<Credential>) -> Self {
        SourceItems(std::sync::OnceLock::from(creds))
    }

    fn all(&self) -> &[Credential] {
        self.0.get().map_or(&[], Vec::as_slice)
    }

    pub fn get(&self, id: &CredentialId) -> Option<&Credential> {
        let all = self.all();
        all.binary_search_by(|c| c.id.cmp(id))
            .ok()
            .map(|i| &all[i])
    }

    pub fn contains_key(&self, id: &CredentialId) -> bool {
        self.get(id).is_some()
    }

    /// In id order.
    pub fn values(&self) -> std::slice::Iter<'_, Credential> {
        self.all().iter()
    }

    pub fn len(&self) -> usize {
        self.all().len()
    }

    pub fn is_empty(&self) -> bool {
        self.all().is_empty()
    }
}

/// Fingerprints of every planned id at both ends, under a key that exists
/// only in this process's memory.
struct Snapshot {
    key: FpKey,
    /// One per plan item, in plan order (the plan's items are its ids).
    source: Vec<Fp>,
    target: BTreeMap<CredentialId, Fp>,
}

/// An id's value and metadata fingerprints, chained over every copy of the
/// id in store order, in a fixed 32 bytes (a hex string per item was
/// 100 B of a plan's memory).
type Fp = [u8; 32];

fn fingerprints<'a>(
    key: &FpKey,
    creds: impl Iterator<Item = &'a Credential>,
) -> BTreeMap<CredentialId, Fp> {
    use sha2::Digest;
    let mut out: BTreeMap<CredentialId, Fp> = BTreeMap::new();
    for c in creds {
        // A repeated id fingerprints every copy, in store order.
        let e = out.entry(c.id.clone()).or_insert([0u8; 32]);
        let mut h = sha2::Sha256::new();
        h.update(*e);
        h.update(key.value(c).text().as_bytes());
        h.update(key.meta(c).text().as_bytes());
        e.copy_from_slice(&h.finalize());
    }
    out
}

fn same_fp(a: Option<&Fp>, b: Option<&Fp>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => crate::credential::ct_eq_bytes(a, b),
        _ => false,
    }
}

static TOKENS: AtomicU64 = AtomicU64::new(1);

/// Which end of a prepared migration changed since its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedSide {
    Source,
    Target,
}

impl std::fmt::Display for ChangedSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChangedSide::Source => "source",
            ChangedSide::Target => "target",
        })
    }
}

impl Prepared {
    /// Drop the source values the plan read, keeping the plan and its
    /// fingerprints: [`changed_since`](Self::changed_since) reads them
    /// again under the locks anyway, and puts back the ones that match the
    /// plan. A caller that holds a prepared migration while the user looks
    /// at it (the wizard's dry run) then never holds two copies of every
    /// value (issue #26: the re-read beside the kept copy was the run's
    /// peak).
    pub fn shed_source_values(&mut self) {
        self.source = SourceItems::default();
    }

    /// The items whose source or target changed since the plan, with the
    /// side that changed, in id order. Reads both stores, only what they
    /// hold of the planned ids ([`Store::read_wanted`]: Vault reads the
    /// secrets holding them, never the others under its prefix). When the
    /// source values were shed and nothing changed, the values just read
    /// become the prepared ones (their fingerprints are the plan's).
    pub fn changed_since(
        &self,
        source: &dyn Store,
        target: &dyn Store,
    ) -> Result<Vec<(CredentialId, ChangedSide)>> {
        let snap = &self.snapshot;
        let items = &self.plan.items;
        let planned = |c: &&Credential| items.binary_search_by(|i| i.id.cmp(&c.id)).is_ok();
        let ids: Vec<CredentialId> = items.iter().map(|i| i.id.clone()).collect();
        let mut scan = source.read_wanted(&ids)?;
        drop(ids);
        let src_now = fingerprints(&snap.key, scan.credentials.iter().filter(planned));
        let fresh = self.source.0.get().is_none().then(|| {
            let mut creds = std::mem::take(&mut scan.credentials);
            creds.retain(|c| planned(&c));
            creds
        });
        drop(scan);
        let tscan = read_target_for(target, items.iter().map(|i| &i.id))?;
        let tgt_now = fingerprints(&snap.key, tscan.credentials.iter().filter(planned));
        drop(tscan);
        let mut changed = Vec::new();
        for (item, fp) in items.iter().zip(&snap.source) {
            let id = &item.id;
            if !same_fp(Some(fp), src_now.get(id)) {
                changed.push((id.clone(), ChangedSide::Source));
            } else if !same_fp(snap.target.get(id), tgt_now.get(id)) {
                changed.push((id.clone(), ChangedSide::Target));
            }
        }
        if changed.is_empty()
            && let Some(creds) = fresh
        {
            // `set` fails only when already set, which `fresh` rules out.
            let _ = self.source.0.set(one_per_id(creds));
        }
        Ok(changed)
    }

    /// Credentials the plan writes, in plan order.
    pub fn to_write(&self) -> Vec<&Credential> {
        self.plan
            .writes()
            .filter_map(|i| self.source.get(&i.id))
            .collect()
    }

    /// The credentials the plan writes, in plan order, taken out of the
    /// source; everything else the plan held is dropped.
    pub fn into_writes(self) -> Vec<Credential> {
        let (source, order) = self.into_source();
        source.into_writes(order)
    }

    /// The source credentials and the positions among them of those the
    /// plan writes, in plan order; the plan, its snapshot and the target's
    /// old values are dropped (a migration needs no more of them once the
    /// plan is journaled, and the backup of the source is its peak).
    pub fn into_source(self) -> (SourceItems, Vec<usize>) {
        let Prepared { plan, source, .. } = self;
        let order = plan
            .writes()
            .filter_map(|i| source.all().binary_search_by(|c| c.id.cmp(&i.id)).ok())
            .collect();
        (source, order)
    }
}

impl SourceItems {
    /// The credentials at `order` (positions, see [`Prepared::into_source`]),
    /// in that order; the others are dropped.
    pub fn into_writes(self, order: Vec<usize>) -> Vec<Credential> {
        let mut creds = self.0.into_inner().unwrap_or_default();
        let order: Vec<usize> = order.into_iter().filter(|&p| p < creds.len()).collect();
        let mut writes = vec![false; creds.len()];
        for &at in &order {
            if let Some(w) = writes.get_mut(at) {
                *w = true;
            }
        }
        let mut flags = writes.into_iter();
        creds.retain(|_| flags.next().unwrap_or(false));
        // Plan order is id order (a plan's items are sorted, as the source
        // is); otherwise the writes are put in plan order.
        if !order.is_sorted() {
            let mut ranked: Vec<usize> = order.clone();
            ranked.sort_unstable();
            ranked.dedup();
            let mut by_pos: Vec<Option<Credential>> = creds.into_iter().map(Some).collect();
            creds = order
                .iter()
                .filter_map(|p| ranked.binary_search(p).ok().and_then(|r| by_pos[r].take()))
                .collect();
        }
        creds.shrink_to_fit();
        creds
    }
}

/// `creds` sorted by id with every repeated id left out, as
/// [`SourceItems`] holds them (a plan's duplicate is invalid, never written).
fn one_per_id(mut creds: Vec<Credential>) -> Vec<Credential> {
    creds.sort_by(|a, b| a.id.cmp(&b.id));
    let mut keep = vec![true; creds.len()];
    for i in 1..creds.len() {
        if creds[i].id == creds[i - 1].id {
            keep[i] = false;
            keep[i - 1] = false;
        }
    }
    let mut k = keep.into_iter();
    creds.retain(|_| k.next().unwrap_or(false));
    creds.shrink_to_fit();
    creds
}

/// The dry run: what a migration from `source` to `target` would do.
pub fn plan(
    source: &dyn Store,
    target: &dyn Store,
    policy: ConflictPolicy,
    selection: Option<&BTreeSet<CredentialId>>,
) -> Result<Plan> {
    if source.inventory_from_listing() {
        return plan_from_listing(source, target, policy, selection, now_ms());
    }
    prepare(source, target, policy, selection, now_ms()).map(|p| p.plan)
}

/// What stands in for a value the dry run did not read (never written:
/// a dry run's plan is shown, not executed).
const NOT_READ_STAND_IN: &str = "(value not read)";

/// The dry run from a source whose inventory is its listing (Vault, whose
/// every read is audited): ids, kinds and metadata as listed, and a value
/// read only where the target already holds the id, since whether that
/// item is identical or a conflict is decided on the two values. The other
/// values are checked (empty, too long, what the target accepts) when the
/// migration reads them: it plans again, reading every value it writes.
fn plan_from_listing(
    source: &dyn Store,
    target: &dyn Store,
    policy: ConflictPolicy,
    selection: Option<&BTreeSet<CredentialId>>,
    now: i64,
) -> Result<Plan> {
    let listing = source.list()?;
    let entries: Vec<crate::store::Entry> = listing
        .entries
        .into_iter()
        .filter(|e| selection.is_none_or(|s| s.contains(&e.id)))
        .collect();
    let target_capability = target.probe();
    let target_scan = read_target_for(target, entries.iter().map(|e| &e.id))?;
    let unreadable = unreadable_at_target(target, &target_scan, entries.iter().map(|e| &e.id))?;
    let held: BTreeSet<CredentialId> = target_scan
        .credentials
        .iter()
        .map(|c| c.id.clone())
        .chain(unreadable.keys().cloned())
        .collect();
    let wanted: Vec<CredentialId> = entries
        .iter()
        .filter(|e| held.contains(&e.id))
        .map(|e| e.id.clone())
        .collect();
    let mut errors = listing.errors;
    let mut read: BTreeMap<CredentialId, Credential> = BTreeMap::new();
    for (id, r) in wanted.iter().zip(source.read_many(&wanted)) {
        match r {
            Ok(Some(c)) => {
                read.insert(id.clone(), c);
            }
            Ok(None) => errors.push(crate::store::LocationError {
                severity: Severity::Error,
                location: id.to_string(),
                error: "listed but could not be read".into(),
            }),
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => errors.push(crate::store::LocationError::from_error(id.to_string(), &e)),
        }
    }
    let mut unread = BTreeSet::new();
    let credentials: Vec<Credential> = entries
        .into_iter()
        .filter_map(|e| {
            if held.contains(&e.id) {
                return read.remove(&e.id);
            }
            unread.insert(e.id.clone());
            Some(Credential::new(e.id, e.kind, NOT_READ_STAND_IN).with_metadata(e.metadata))
        })
        .collect();
    let target_all = target_scan
        .credentials
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let mut p = build(
        source.spec(),
        target.spec(),
        Scan {
            credentials,
            errors,
        },
        target_all,
        target_capability,
        target,
        policy,
        selection,
        now,
    );
    mark_unreadable(&mut p, unreadable);
    let mut plan = p.plan;
    for item in &mut plan.items {
        if unread.contains(&item.id) {
            item.preview = crate::engine::inventory::NOT_READ.to_string();
        }
    }
    if !unread.is_empty() {
        plan.warnings.push(format!(
            "{} values were not read (listed only; {} holds none of these ids): whether each is text, \
             empty, too long or refused by the target is checked when the migration reads it",
            unread.len(),
            target.spec()
        ));
    }
    Ok(plan)
}

/// Everything a target holds. A target that does not exist yet is empty
/// (it is created on first write).
pub fn read_target(target: &dyn Store) -> Result<Scan> {
    match target.read_all() {
        Err(StoreError::NotFound { .. }) => Ok(Scan::default()),
        other => other,
    }
}

/// What a plan compares against at the target: what it holds of the
/// items the plan may write ([`Store::read_wanted`]: Vault reads only the
/// secrets holding them, never the others under its prefix). A target
/// that does not exist yet is empty.
pub fn read_target_for<'a>(
    target: &dyn Store,
    wanted: impl Iterator<Item = &'a CredentialId>,
) -> Result<Scan> {
    let wanted: Vec<CredentialId> = wanted.cloned().collect();
    match target.read_wanted(&wanted) {
        Err(StoreError::NotFound { .. }) => Ok(Scan::default()),
        other => other,
    }
}

/// Ids among `wanted` that `target` holds but cannot read, with the error.
/// A scan's errors do not always name an id (`file:line`), so only when the
/// scan had errors, the ids it did not return are read one by one (one
/// batch): an error there is an item the target has and credshift cannot
/// read, which is not the same as absent.
pub fn unreadable_at_target<'a>(
    target: &dyn Store,
    scan: &Scan,
    wanted: impl Iterator<Item = &'a CredentialId>,
) -> Result<BTreeMap<CredentialId, String>> {
    let mut out = BTreeMap::new();
    if scan.errors.is_empty() {
        return Ok(out);
    }
    let have: BTreeSet<&CredentialId> = scan.credentials.iter().map(|c| &c.id).collect();
    let missing: Vec<CredentialId> = wanted
        .filter(|id| !have.contains(id))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if missing.is_empty() {
        return Ok(out);
    }
    for (id, r) in missing.iter().zip(target.read_many(&missing)) {
        match r {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => {
                out.insert(id.clone(), e.to_string());
            }
        }
    }
    Ok(out)
}

/// The plan item's note for an id the target holds but cannot read.
pub const TARGET_UNREADABLE: &str = "target value unreadable";

/// How a report's warning names a source place that could not be read.
const UNREADABLE: &str = "not migrated, could not be read: ";

/// The warnings a run journals for its report: the plan's, then one per
/// source place that could not be read (its location and error, never
/// content), so a run says what it left behind as the dry run does.
pub fn report_warnings(plan: &Plan) -> Vec<String> {
    let mut w = plan.warnings.clone();
    w.extend(
        plan.source_errors
            .iter()
            .filter(|e| e.severity == Severity::Error)
            .map(|e| format!("{UNREADABLE}{}: {}", e.location, e.error)),
    );
    w
}

/// How many source places the plan could not read (not warnings).
pub fn unreadable_places(plan: &Plan) -> usize {
    plan.source_errors
        .iter()
        .filter(|e| e.severity == Severity::Error)
        .count()
}

/// Whether `a` at the target already equals `b`: the value in constant
/// time, and kind and metadata when the target keeps them.
pub fn same_for_target(a: &Credential, b: &Credential, keeps_metadata: bool) -> bool {
    if keeps_metadata {
        a.same_as(b)
    } else {
        a.secret.ct_eq(&b.secret)
    }
}

pub fn prepare(
    source: &dyn Store,
    target: &dyn Store,
    policy: ConflictPolicy,
    selection: Option<&BTreeSet<CredentialId>>,
    now: i64,
) -> Result<Prepared> {
    let scan = source.read_all()?;
    let target_capability = target.probe();
    let selected = |c: &&Credential| selection.is_none_or(|s| s.contains(&c.id));
    let target_scan = read_target_for(
        target,
        scan.credentials.iter().filter(selected).map(|c| &c.id),
    )?;
    let key = FpKey::generate()?;
    let unreadable = unreadable_at_target(
        target,
        &target_scan,
        scan.credentials.iter().filter(selected).map(|c| &c.id),
    )?;
    let src_snap = fingerprints(&key, scan.credentials.iter().filter(selected));
    let tgt_snap = fingerprints(
        &key,
        target_scan
            .credentials
            .iter()
            .filter(|c| src_snap.contains_key(&c.id)),
    );
    let mut target_all: BTreeMap<CredentialId, Credential> = BTreeMap::new();
    for c in target_scan.credentials {
        target_all.insert(c.id.clone(), c);
    }
    let left = source.unmigrated();
    let mut p = build(
        source.spec(),
        target.spec(),
        scan,
        target_all,
        target_capability,
        target,
        policy,
        selection,
        now,
    );
    mark_unreadable(&mut p, unreadable);
    if !left.is_empty() {
        p.plan.warnings.push(format!(
            "left in the source (secret-looking, carried by no item; its file stays): {}",
            left.join(", ")
        ));
    }
    // Every selected id has its plan item, in the same order.
    let source_fps = p
        .plan
        .items
        .iter()
        .map(|i| src_snap.get(&i.id).copied().unwrap_or_default())
        .collect();
    drop(src_snap);
    p.snapshot = Snapshot {
        key,
        source: source_fps,
        target: tgt_snap,
    };
    p.plan.token = TOKENS.fetch_add(1, Ordering::Relaxed);
    Ok(p)
}

/// Turn the planned items the target cannot read into conflicts, whatever
/// the policy: a value credshift cannot read cannot be backed up, so it is
/// never replaced.
fn mark_unreadable(p: &mut Prepared, unreadable: BTreeMap<CredentialId, String>) {
    if unreadable.is_empty() {
        return;
    }
    let counts = &mut p.plan.counts;
    for item in &mut p.plan.items {
        let Some(err) = unreadable.get(&item.id) else {
            continue;
        };
        match item.action {
            Action::Copy => counts.copy -= 1,
            Action::Overwrite => counts.overwrite -= 1,
            Action::SkipIdentical => counts.skip_identical -= 1,
            // Invalid and too-long items are not written anyway.
            Action::Conflict | Action::Invalid { .. } | Action::TooLong { .. } => continue,
        }
        counts.conflict += 1;
        item.action = Action::Conflict;
        item.warnings.push(format!(
            "{TARGET_UNREADABLE} ({err}): left as it is, credshift cannot back it up"
        ));
    }
    let writes = counts.copy + counts.overwrite;
    p.plan.estimated = estimate(&p.plan.to, writes);
    p.target_unreadable = unreadable;
}

#[allow(clippy::too_many_arguments)]
fn build(
    from: &StoreSpec,
    to: &StoreSpec,
    scan: Scan,
    mut target_all: BTreeMap<CredentialId, Credential>,
    cap: Capability,
    target: &dyn Store,
    policy: ConflictPolicy,
    selection: Option<&BTreeSet<CredentialId>>,
    now: i64,
) -> Prepared {
    let mut creds = scan.credentials;
    creds.sort_by(|a, b| a.id.cmp(&b.id));
    // Sorted: the copies of a repeated id are neighbours.
    let copies = |i: usize| {
        creds[i..]
            .iter()
            .take_while(|c| c.id == creds[i].id)
            .count()
    };
    let keeps_metadata = cap.keeps_metadata;
    let mut items = Vec::with_capacity(creds.len());
    let mut counts = PlanCounts::default();
    let mut keep = vec![false; creds.len()];
    let mut target_old = BTreeMap::new();
    let mut drops_metadata = false;
    let mut i = 0;
    while i < creds.len() {
        let c = &creds[i];
        let n = copies(i);
        let at = i;
        // One plan line per id; the first copy says "duplicate".
        i += n;
        if selection.is_some_and(|s| !s.contains(&c.id)) {
            continue;
        }
        let duplicate = n > 1;
        let mut warnings = Vec::new();
        if let Some(exp) = crate::engine::inventory::expiry(c)
            && exp <= now
        {
            let when = chrono::DateTime::from_timestamp_millis(exp)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| exp.to_string());
            warnings.push(format!("OAuth token expired at {when}; copied anyway"));
            counts.expired_warnings += 1;
        }
        let len = c.secret.expose().len();
        let action = if duplicate {
            Action::Invalid {
                reason: format!("duplicate id in the source ({n} entries)"),
            }
        } else if let Some(r) = c.invalid_reason() {
            Action::Invalid {
                reason: r.to_string(),
            }
        } else if let Some(limit) = cap.max_secret_len
            && len > limit
        {
            Action::TooLong { limit, len }
        } else if let Some(reason) = target.check(c) {
            Action::Invalid { reason }
        } else {
            match target_all.remove(&c.id) {
                Some(old) if same_for_target(&old, c, keeps_metadata) => Action::SkipIdentical,
                Some(old) => {
                    target_old.insert(old.id.clone(), old);
                    match policy {
                        ConflictPolicy::Skip => Action::Conflict,
                        ConflictPolicy::Overwrite => Action::Overwrite,
                    }
                }
                None => Action::Copy,
            }
        };
        match &action {
            Action::Copy => counts.copy += 1,
            Action::Overwrite => counts.overwrite += 1,
            Action::SkipIdentical => counts.skip_identical += 1,
            Action::Conflict => counts.conflict += 1,
            Action::Invalid { .. } => counts.invalid += 1,
            Action::TooLong { .. } => counts.too_long += 1,
        }
        counts.total += 1;
        if action.writes() && !keeps_metadata && !c.metadata.is_empty() {
            drops_metadata = true;
        }
        items.push(PlanItem {
            id: c.id.clone(),
            kind: c.kind,
            preview: c.preview(),
            action,
            warnings,
        });
        keep[at] = !duplicate;
    }
    items.shrink_to_fit();
    let mut k = keep.into_iter();
    creds.retain(|_| k.next().unwrap_or(false));
    let source = SourceItems::new(creds);
    let mut warnings = Vec::new();
    if drops_metadata {
        warnings.push(format!(
            "{to} does not keep metadata (expiry, scopes, labels): only values are copied and verified"
        ));
    }
    if cap.available && !cap.persistent {
        warnings.push(format!(
            "{to} is not persistent: its values are lost at logout or reboot"
        ));
    }
    warnings.extend(cap.notes().cloned());
    let writes = counts.copy + counts.overwrite;
    Prepared {
        plan: Plan {
            from: from.clone(),
            to: to.clone(),
            on_conflict: policy,
            items,
            counts,
            estimated: estimate(to, writes),
            source_errors: scan.errors,
            warnings,
            token: 0,
        },
        source,
        target_old,
        target_unreadable: BTreeMap::new(),
        target_capability: cap,
        snapshot: Snapshot {
            key: FpKey::unkeyed(),
            source: Vec::new(),
            target: BTreeMap::new(),
        },
    }
}

/// A rough duration: the target kind's per-write cost (write + read-back),
/// plus one key derivation for the backup.
fn estimate(to: &StoreSpec, writes: usize) -> Duration {
    let per_item_ms = to.profile().write_ms;
    if writes == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(per_item_ms * writes as u64 + 500)
}

/// Save a plan as JSON under `STATE/plans/` (the one thing a dry run may write).
pub fn save_plan(state_dir: &Path, plan: &Plan) -> Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ");
    let path = state_dir.join("plans").join(format!("plan-{stamp}.json"));
    let text = serde_json::to_vec_pretty(plan)
        .map_err(|e| StoreError::json(path.display().to_string(), &e))?;
    fsutil::atomic_write(&path, &text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{Kind, Metadata};
    use crate::store::memory::MemStore;

    fn cred(id: &str, v: &str) -> Credential {
        Credential::new(id.parse().unwrap(), Kind::ApiKey, v)
    }

    fn mem(path: &str, creds: Vec<Credential>) -> MemStore {
        MemStore::new(StoreSpec::Dotenv(path.into()), creds, true)
    }

    #[test]
    fn every_action_is_planned_in_sorted_order() {
        let mut expired = Metadata::new();
        expired.insert("expires_at".into(), 1_000i64.into());
        let src = mem(
            "src",
            vec![
                cred("z/new", "value-new"),
                cred("a/same", "value-same"),
                cred("b/diff", "value-source"),
                cred("c/empty", ""),
                Credential::new("d/old".parse().unwrap(), Kind::OauthAccess, "value-old")
                    .with_metadata(expired),
            ],
        );
        let dst = mem(
            "dst",
            vec![cred("a/same", "value-same"), cred("b/diff", "value-target")],
        );
        let p = plan(&src, &dst, ConflictPolicy::Skip, None).unwrap();
        let ids: Vec<String> = p.items.iter().map(|i| i.id.to_string()).collect();
        assert_eq!(ids, ["a/same", "b/diff", "c/empty", "d/old", "z/new"]);
        assert_eq!(p.items[0].action, Action::SkipIdentical);
        assert_eq!(p.items[1].action, Action::Conflict);
        assert!(matches!(p.items[2].action, Action::Invalid { .. }));
        assert_eq!(p.items[3].action, Action::Copy);
        assert_eq!(p.items[3].warnings.len(), 1);
        assert_eq!(p.items[4].action, Action::Copy);
        assert_eq!(p.counts.copy, 2);
        assert_eq!(p.counts.expired_warnings, 1);
        assert!(p.estimated > Duration::ZERO);
        let p = plan(&src, &dst, ConflictPolicy::Overwrite, None).unwrap();
        assert_eq!(p.items[1].action, Action::Overwrite);
        // The dry run changed nothing.
        assert_eq!(dst.snapshot().len(), 2);
        assert_eq!(src.snapshot().len(), 5);
    }

    #[test]
    fn duplicates_are_invalid_and_selection_filters() {
        let scan = Scan {
            credentials: vec![cred("a/x", "one"), cred("a/x", "two"), cred("b/y", "v")],
            errors: vec![],
        };
        let dst = mem("dst", vec![]);
        let cap = dst.probe();
        let p = build(
            &StoreSpec::Dotenv("s".into()),
            dst.spec(),
            scan.clone(),
            BTreeMap::new(),
            cap.clone(),
            &dst,
            ConflictPolicy::Skip,
            None,
            0,
        );
        assert_eq!(p.plan.items.len(), 2);
        assert!(
            matches!(&p.plan.items[0].action, Action::Invalid { reason } if reason.contains("duplicate"))
        );
        assert!(!p.source.contains_key(&"a/x".parse().unwrap()));
        let only: BTreeSet<CredentialId> = ["b/y".parse().unwrap()].into();
        let p = build(
            &StoreSpec::Dotenv("s".into()),
            dst.spec(),
            scan,
            BTreeMap::new(),
            cap,
            &dst,
            ConflictPolicy::Skip,
            Some(&only),
            0,
        );
        assert_eq!(p.plan.items.len(), 1);
        assert_eq!(p.plan.items[0].action, Action::Copy);
    }

    /// `into_writes` gives exactly what `to_write` lists, in the same
    /// order, as owned credentials (what a migration frees batch by batch).
    #[test]
    fn the_writes_taken_out_are_the_ones_listed_in_plan_order() {
        let src = mem(
            "src",
            vec![
                cred("z/new", "value-new"),
                cred("a/same", "value-same"),
                cred("b/diff", "value-source"),
                cred("c/empty", ""),
                cred("m/copy", "value-m"),
            ],
        );
        let dst = mem(
            "dst",
            vec![cred("a/same", "value-same"), cred("b/diff", "value-target")],
        );
        for policy in [ConflictPolicy::Skip, ConflictPolicy::Overwrite] {
            let p = prepare(&src, &dst, policy, None, 0).unwrap();
            let listed: Vec<(String, String)> = p
                .to_write()
                .iter()
                .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
                .collect();
            let taken: Vec<(String, String)> = p
                .into_writes()
                .iter()
                .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
                .collect();
            assert_eq!(taken, listed, "{policy:?}");
            let want: &[&str] = match policy {
                ConflictPolicy::Overwrite => &["b/diff", "m/copy", "z/new"],
                _ => &["m/copy", "z/new"],
            };
            let ids: Vec<&str> = taken.iter().map(|(i, _)| i.as_str()).collect();
            assert_eq!(ids, want, "{policy:?}");
        }
    }

    #[test]
    fn too_long_for_the_target() {
        let dst = mem("dst", vec![]);
        let mut cap = dst.probe();
        cap.max_secret_len = Some(8);
        let scan = Scan {
            credentials: vec![cred("a/long", "0123456789"), cred("a/short", "0123")],
            errors: vec![],
        };
        let p = build(
            &StoreSpec::Dotenv("s".into()),
            dst.spec(),
            scan,
            BTreeMap::new(),
            cap,
            &dst,
            ConflictPolicy::Skip,
            None,
            0,
        );
        assert_eq!(
            p.plan.items[0].action,
            Action::TooLong { limit: 8, len: 10 }
        );
        assert_eq!(p.plan.items[1].action, Action::Copy);
        assert_eq!(p.plan.counts.too_long, 1);
    }
}
