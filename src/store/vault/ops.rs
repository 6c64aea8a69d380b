//! Batched reads, check-and-set writes and destroying deletes, one group
//! of requests per secret path.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::destroy::destroy_values;
use super::kv::{Kv, Version, WriteError};
use super::{VaultStore, field_meta, meta_key};
use crate::credential::{Credential, CredentialId, Kind, ct_eq_bytes};
use crate::error::{Result, StoreError};

/// Fields per request: KV refuses a request with more than 1,000 JSON
/// strings (a field is two), and credshift keeps room for the envelope.
pub const FIELDS_PER_REQUEST: usize = 400;
/// Bytes of values per request, well under raft's 1 MiB entry.
pub const BYTES_PER_REQUEST: usize = 256 * 1024;
/// custom_metadata limits (KV v2).
const MAX_CUSTOM_KEYS: usize = 64;
const MAX_CUSTOM_VALUE: usize = 512;
const MAX_CUSTOM_KEY: usize = 128;
/// The provenance key in custom_metadata.
pub const PROVENANCE: &str = "credshift";

/// One item of a group: its index in the batch and its field.
pub(super) type Item = (usize, String);
/// Items grouped by secret path, in first-seen order.
pub(super) type Groups = Vec<(String, Vec<Item>)>;

pub(super) fn group<'a>(
    s: &VaultStore,
    prefix: &str,
    ids: impl Iterator<Item = &'a CredentialId>,
    mut bad: impl FnMut(usize, String),
) -> Groups {
    let mut groups: Groups = Vec::new();
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for (i, id) in ids.enumerate() {
        match s.place(prefix, id) {
            Ok((path, field)) => {
                let g = *at.entry(path.clone()).or_insert_with(|| {
                    groups.push((path, Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push((i, field));
            }
            Err(why) => bad(i, why),
        }
    }
    groups
}

/// How many secrets of a batch are read or written at once: one secret per
/// request is a round trip each (`?layout=item` puts every credential in a
/// secret of its own), and a server answers many at a time. Against a
/// server a few milliseconds away the round trips bound a run (with 4 in
/// flight, a 2 ms round trip caps three requests per item near 670
/// items/s); on loopback 16 cost the dev server about 13% more CPU per
/// item than 4 (one run each, contention) for no gain: 8 is the middle.
const WORKERS: usize = 8;

/// `work` for each group, on up to [`WORKERS`] threads when there are
/// several groups; each writes the results of its group's items (by their
/// index) into the slice it is given, and those land in `out`. Groups are
/// distinct secret paths, so their requests are independent (each its own
/// check-and-set).
fn for_groups<R: Send>(
    groups: &Groups,
    out: &mut [R],
    fresh: impl Fn() -> R + Sync,
    work: impl Fn(&str, &[(usize, String)], &mut [R]) + Sync,
) {
    if groups.len() < 2 {
        for (path, items) in groups {
            work(path, items, out);
        }
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let n = out.len();
    let done: Vec<(Vec<R>, Vec<usize>)> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..WORKERS.min(groups.len()))
            .map(|_| {
                sc.spawn(|| {
                    let mut local: Vec<R> = (0..n).map(|_| fresh()).collect();
                    let mut mine = Vec::new();
                    loop {
                        let g = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((path, items)) = groups.get(g) else {
                            break;
                        };
                        work(path, items, &mut local);
                        mine.push(g);
                    }
                    (local, mine)
                })
            })
            .collect();
        // A worker that panicked must not leave its items looking written.
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for (mut local, mine) in done {
        for g in mine {
            for (i, _) in &groups[g].1 {
                std::mem::swap(&mut out[*i], &mut local[*i]);
            }
        }
    }
}

pub fn read_many(s: &VaultStore, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
    let (mount, prefix) = match s.mount() {
        Ok(m) => m,
        Err(e) => return ids.iter().map(|_| Err(e.duplicate())).collect(),
    };
    let kv = s.kv(&mount);
    let mut out: Vec<Result<Option<Credential>>> = ids.iter().map(|_| Ok(None)).collect();
    let groups = group(s, &prefix, ids.iter(), |i, why| {
        out[i] = Err(StoreError::item(&ids[i], why));
    });
    for_groups(
        &groups,
        &mut out,
        || Ok(None),
        |path, items, out| {
            let fields: Vec<&str> = items.iter().map(|(_, f)| f.as_str()).collect();
            let (pin, floor) = s.take_read_back(path, &fields);
            // The read-back: the fields this store just wrote, at exactly
            // the version it wrote. Everything else (any later read too)
            // reads the latest version.
            let (ours, rest): (Vec<&Item>, Vec<&Item>) = items
                .iter()
                .partition(|(_, f)| pin.as_ref().is_some_and(|w| w.fields.contains(f)));
            if let Some(w) = &pin {
                fill(
                read_version(&kv, path, Some(w.version)),
                (&kv, path),
                &ours,
                ids,
                out,
            );
            }
            if rest.is_empty() {
                return;
            }
            let latest = read_latest(&kv, path, floor);
            if let Ok(v) = &latest {
                // An older version than this store wrote, after the wait,
                // leaves the floor as it is: a lagging standby and a
                // secret recreated by someone else look the same from
                // here, and a stale read taken as current would fail a
                // verify (writes are safe either way: check-and-set).
                s.see(path, v.as_ref().map_or(0, |v| v.version));
                if let Some(v) = v {
                    s.note_sizes(&ids[rest[0].0], v);
                    s.state()
                        .custom
                        .insert(path.to_string(), (v.version, v.custom_metadata.clone()));
                }
            }
            fill(latest, (&kv, path), &rest, ids, out);
        },
    );
    #[cfg(test)]
    crate::store::test_support::run_after_read();
    out
}

/// Each of `items` from the version read (absent: `None`), or the error.
/// A field holding no string (a number, an object) is an error naming the
/// secret and field, not an absence: a plan must not write over it as if
/// nothing were there, and `get` must not say "not found".
fn fill(
    read: Result<Option<Version>>,
    (kv, path): (&Kv, &str),
    items: &[&Item],
    ids: &[CredentialId],
    out: &mut [Result<Option<Credential>>],
) {
    match read {
        Ok(Some(v)) => {
            for (i, field) in items {
                match v.data.get(field) {
                    Some(Value::String(secret)) => {
                        let (kind, meta) = field_meta(&v.custom_metadata, field, &ids[*i]);
                        out[*i] = Ok(Some(
                            Credential::new(ids[*i].clone(), kind, secret.as_str())
                                .with_metadata(meta),
                        ));
                    }
                    Some(other) => out[*i] = Err(not_a_string(kv, path, field, other, &ids[*i])),
                    None => {}
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            for (i, _) in items {
                out[*i] = Err(e.duplicate());
            }
        }
    }
}

/// A field that holds JSON other than a string: its type, never its value.
fn not_a_string(kv: &Kv, path: &str, field: &str, v: &Value, id: &CredentialId) -> StoreError {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        Value::String(_) => "a string",
    };
    StoreError::item(
        id,
        format!(
            "{}/{path}: field {field:?} holds {kind}, not a string: credshift moves only \
             string fields and leaves this one as it is",
            kv.mount
        ),
    )
}

/// The latest version. One older than `floor` (the newest this store
/// wrote) came from a standby that has not applied that write yet: asked
/// again for a while, then taken as it is (another client may have
/// deleted the secret since).
fn read_latest(kv: &Kv, path: &str, floor: u64) -> Result<Option<Version>> {
    let mut tries = 0;
    loop {
        let v = kv.read(path, None)?;
        if v.as_ref().map_or(0, |v| v.version) >= floor || tries >= 8 {
            return Ok(v);
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(50 * tries.min(4)));
    }
}

/// A read; the version this store wrote is read exactly, and waited for
/// a little: a standby serving reads (OpenBao's default with raft) may not
/// have applied it yet.
fn read_version(kv: &Kv, path: &str, exact: Option<u64>) -> Result<Option<Version>> {
    let mut tries = 0;
    loop {
        let v = kv.read(path, exact)?;
        if v.is_some() || exact.is_none() || tries >= 20 {
            return Ok(v);
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(50 * tries.min(4)));
    }
}

/// What a write replaces, and so what it destroys.
#[derive(Clone, Copy)]
enum Intent<'a> {
    /// A migration's write (`restore --backup` included): like any Vault
    /// client's write, it keeps the version it replaces in KV v2's history,
    /// whoever wrote that version, an earlier credshift migration too.
    Forward,
    /// A rollback taking back what credshift wrote: per item (by its index
    /// in the batch), the value compared at the store and now replaced.
    /// Every version holding it from credshift's first write of it on is
    /// destroyed ([`destroy_values`]).
    TakeBack(&'a [Option<&'a Credential>]),
}

/// KV keeps at most `max_versions` versions (the secret's, else the
/// mount's, else 10) and prunes the oldest past it. Each engine batch
/// writes a secret once, so a large migration into one secret makes many
/// versions and can push out history from before the run (another
/// client's rotated values, the version an overwrite replaced). Noted once
/// per secret for the report; asked only of a secret this store has
/// written more than once this run (one more metadata read).
fn note_pruning(s: &VaultStore, kv: &Kv, path: &str, last: u64, made: u64) {
    let start = {
        let mut st = s.state();
        let e = st
            .before_run
            .entry(path.to_string())
            .or_insert((last.saturating_sub(made), false));
        if e.1 || e.0 == 0 || last.saturating_sub(e.0) < 2 {
            return;
        }
        e.0
    };
    let Ok(Some(meta)) = kv.metadata(path) else {
        return;
    };
    let mut max = meta.max_versions;
    if max == 0 {
        let cached = s.state().mount_max_versions;
        max = match cached {
            Some(m) => m,
            None => {
                let m = kv.mount_max_versions().unwrap_or(0);
                s.state().mount_max_versions = Some(m);
                m
            }
        };
    }
    if max == 0 {
        max = 10;
    }
    if last <= max {
        return;
    }
    let gone = (last - max).min(start);
    if let Some(e) = s.state().before_run.get_mut(path) {
        e.1 = true;
    }
    s.note(format!(
        "{}/{path}: max_versions is {max}: this run's writes ({} versions) pushed versions \
         up to {gone} of the history from before the run out of KV for good",
        kv.mount,
        last - start
    ));
}

/// A migration's writes: nothing is destroyed (see [`Intent::Forward`]).
pub fn write_many(s: &VaultStore, creds: &[Credential]) -> Vec<Result<()>> {
    write_with(s, creds, Intent::Forward)
}

fn write_with(s: &VaultStore, creds: &[Credential], intent: Intent) -> Vec<Result<()>> {
    let (mount, prefix) = match s.mount() {
        Ok(m) => m,
        Err(e) => return creds.iter().map(|_| Err(e.duplicate())).collect(),
    };
    let kv = s.kv(&mount);
    let mut out: Vec<Result<()>> = creds.iter().map(|_| Ok(())).collect();
    let groups = group(s, &prefix, creds.iter().map(|c| &c.id), |i, why| {
        out[i] = Err(StoreError::item(&creds[i].id, why));
    });
    for_groups(
        &groups,
        &mut out,
        || Ok(()),
        |path, items, out| {
            write_group(s, &kv, path, items, creds, intent, out);
        },
    );
    out
}

/// The version to check-and-set against and the custom_metadata the
/// write adds to (read at plan time when that is still the version seen;
/// a change since fails the check-and-set either way).
fn base(s: &VaultStore, kv: &Kv, path: &str) -> Result<(u64, Map<String, Value>)> {
    let (known, scanned, planned) = {
        let st = s.state();
        (
            st.seen.get(path).copied(),
            st.scanned,
            st.custom.get(path).cloned(),
        )
    };
    match known {
        // Absent when this store last looked (after a full scan, a path it
        // did not see was absent): create, or fail if someone created it.
        Some(0) => Ok((0, Map::new())),
        None if scanned => Ok((0, Map::new())),
        Some(v) if planned.as_ref().is_some_and(|(at, _)| *at == v) => {
            Ok((v, planned.map(|(_, c)| c).unwrap_or_default()))
        }
        // Metadata is smaller than the data; a token that may not read it
        // (it may still write data) reads the latest version instead.
        Some(v) => {
            let custom = match kv.metadata(path) {
                Ok(m) => m.map(|m| m.custom_metadata),
                Err(_) => kv.read(path, None)?.map(|c| c.custom_metadata.clone()),
            };
            Ok((v, custom.unwrap_or_default()))
        }
        None => {
            let cur = kv.read(path, None)?;
            let v = cur.as_ref().map_or(0, |c| c.version);
            s.see(path, v);
            let custom = cur
                .as_ref()
                .map(|c| c.custom_metadata.clone())
                .unwrap_or_default();
            Ok((v, custom))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_group(
    s: &VaultStore,
    kv: &Kv,
    path: &str,
    items: &[(usize, String)],
    creds: &[Credential],
    intent: Intent,
    out: &mut [Result<()>],
) {
    let (mut cas, mut prior) = match base(s, kv, path) {
        Ok(b) => b,
        Err(e) => {
            for (i, _) in items {
                out[*i] = Err(e.duplicate());
            }
            return;
        }
    };
    let mut written = Vec::new();
    let mut pos = 0;
    while pos < items.len() {
        let mut chunk = Map::new();
        let mut bytes = 0;
        let start = pos;
        while pos < items.len() && chunk.len() < FIELDS_PER_REQUEST && bytes < BYTES_PER_REQUEST {
            let (i, field) = &items[pos];
            bytes += creds[*i].secret.len() + field.len();
            chunk.insert(
                field.clone(),
                Value::String(creds[*i].secret.expose().into()),
            );
            pos += 1;
        }
        let mut result = kv.write(path, cas, &chunk);
        if matches!(result, Err(WriteError::Cas)) && cas == 0 {
            // A secret whose versions are all deleted reads as absent but
            // still counts versions: create on top of the current one.
            if let Ok(Some(m)) = kv.metadata(path)
                && !m
                    .versions
                    .iter()
                    .any(|(v, live)| *v == m.current_version && *live)
                && m.current_version > 0
                // The latest really reads as deleted (a POST replaces, it
                // does not merge: never over someone's live version).
                && matches!(kv.read(path, Some(m.current_version)), Ok(None))
            {
                result = kv.write_over_deleted(path, m.current_version, &chunk);
                // The metadata stays with the secret: add to it (the
                // provenance names credshift's earlier versions too).
                if result.is_ok() {
                    prior = m.custom_metadata;
                }
            }
        }
        chunk.clear();
        let fail = |out: &mut [Result<()>], why: &dyn Fn(&CredentialId) -> StoreError| {
            for (i, _) in &items[start..] {
                out[*i] = Err(why(&creds[*i].id));
            }
        };
        match result {
            Ok(v) => {
                cas = v;
                written.push(v);
            }
            Err(WriteError::Cas) => {
                let seen = cas;
                fail(out, &|id| {
                    StoreError::item(
                        id,
                        format!(
                            "{}/{path} changed since credshift read it (check-and-set against \
                             version {seen} failed); left as it is",
                            kv.mount
                        ),
                    )
                });
                break;
            }
            Err(WriteError::Denied) if kv.client.token_refused() => {
                let why = kv.client.refused_token_reason();
                fail(out, &|id| {
                    StoreError::item(id, format!("{}/{path}: {why}", kv.mount))
                });
                break;
            }
            Err(WriteError::Denied) => {
                fail(out, &|id| {
                    StoreError::item(
                        id,
                        format!(
                            "permission denied: the token may not write {}/data/{path} \
                             (needs create and update{})",
                            kv.mount,
                            if cas == 0 { "" } else { ", patch" }
                        ),
                    )
                });
                break;
            }
            Err(WriteError::Other(e)) => {
                fail(out, &|_| e.duplicate());
                break;
            }
        }
    }
    let Some(&last) = written.last() else { return };
    note_pruning(s, kv, path, last, written.len() as u64);
    let landed: Vec<&(usize, String)> = items.iter().filter(|(i, _)| out[*i].is_ok()).collect();
    s.wrote(path, last, landed.iter().map(|(_, f)| f));
    let mut patch = Map::new();
    let mut keys = prior.len() + usize::from(!prior.contains_key(PROVENANCE));
    for (i, field) in &landed {
        let c = &creds[*i];
        let public = crate::scrub::public(&c.metadata);
        let key = meta_key(field);
        if public.is_empty() && c.kind == Kind::guess(&c.id.name) {
            if prior.contains_key(&key) {
                patch.insert(key, Value::Null);
            }
            continue;
        }
        let text = json!({"kind": c.kind.as_str(), "meta": public}).to_string();
        let fits = text.len() <= MAX_CUSTOM_VALUE && key.len() <= MAX_CUSTOM_KEY;
        if fits && (prior.contains_key(&key) || keys < MAX_CUSTOM_KEYS) {
            keys += usize::from(!prior.contains_key(&key));
            patch.insert(key, Value::String(text));
        } else if prior.contains_key(&key) {
            patch.insert(key, Value::Null);
        }
    }
    let mut ours = provenance_versions(&prior);
    ours.extend(&written);
    let by = s.state().provenance.clone();
    patch.insert(
        PROVENANCE.into(),
        Value::String(provenance(&ours, by.as_ref())),
    );
    // Best effort: a token without metadata rights still migrates values.
    if kv.patch_custom_metadata(path, &patch).is_ok() {
        // What the next write to this path (the next batch) adds to,
        // without reading it again.
        let mut custom = prior;
        for (k, v) in patch {
            match v {
                Value::Null => custom.remove(&k),
                v => custom.insert(k, v),
            };
        }
        s.state().custom.insert(path.to_string(), (last, custom));
    }
    // Taking back credshift's own write (rollback of an overwrite): the
    // value replaced must not survive in the history. A forward write
    // keeps what it replaces, as any client's write does.
    let Intent::TakeBack(expected) = intent else {
        return;
    };
    let taken: Vec<(String, Zeroizing<String>)> = landed
        .iter()
        .filter_map(|(i, f)| {
            let old = expected.get(*i).copied().flatten()?;
            (!ct_eq_bytes(old.secret.expose().as_bytes(), creds[*i].secret.expose().as_bytes()))
                .then(|| (f.clone(), Zeroizing::new(old.secret.expose().to_string())))
        })
        .collect();
    if !taken.is_empty() {
        // Best effort, as the custom_metadata: the value is restored (a
        // rollback run again finds it restored, not this to redo), and
        // what was not destroyed is in the report.
        let done = kv.metadata(path).and_then(|m| match m {
            Some(m) => destroy_values(kv, path, &m, written[0], &ours, &taken, false),
            None => Ok((Vec::new(), Vec::new())),
        });
        match done {
            Ok((_, notes)) => notes.into_iter().for_each(|n| s.note(n)),
            Err(e) => s.note(format!(
                "{}/{path}: the value taken back stays in older versions: {e}",
                kv.mount
            )),
        }
    }
}

/// Compare before you write: each field is compared in the version read,
/// and the write is a check-and-set on the version this store last saw
/// (the one compared), so a value another client wrote in between fails
/// the write instead of being replaced. Such a failure is read again: an
/// item that no longer holds what was expected is `Changed`, kept.
///
/// A rollback restores old values with this (and nothing else does): the
/// value compared and replaced is the one credshift wrote, taken back, so
/// the versions holding it are destroyed ([`Intent::TakeBack`]).
pub fn replace_if_unchanged(
    s: &VaultStore,
    items: &[crate::store::Replace],
) -> Vec<Result<crate::store::ReplaceIf>> {
    use crate::store::ReplaceIf;
    let ids: Vec<CredentialId> = items.iter().map(|r| r.new.id.clone()).collect();
    let mut out: Vec<Option<Result<ReplaceIf>>> = Vec::with_capacity(items.len());
    let mut chosen: Vec<usize> = Vec::new();
    for (i, (r, now)) in items.iter().zip(read_many(s, &ids)).enumerate() {
        out.push(match now {
            // A prefix never written holds nothing.
            Err(StoreError::NotFound { .. }) if r.holds(None) => {
                chosen.push(i);
                None
            }
            Ok(now) if r.holds(now.as_ref()) => {
                chosen.push(i);
                None
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => Some(Ok(ReplaceIf::Changed)),
            Err(e) => Some(Err(e)),
        });
    }
    let news: Vec<Credential> = chosen.iter().map(|&i| items[i].new.clone()).collect();
    let taken: Vec<Option<&Credential>> =
        chosen.iter().map(|&i| items[i].expected.as_ref()).collect();
    let mut results = write_with(s, &news, Intent::TakeBack(&taken)).into_iter();
    let mut failed = Vec::new();
    for &i in &chosen {
        out[i] = Some(match results.next() {
            Some(Ok(())) => Ok(ReplaceIf::Replaced),
            Some(Err(e)) => {
                failed.push(i);
                Err(e)
            }
            None => Err(StoreError::Other("the write returned no result".into())),
        });
    }
    let mut out: Vec<Result<ReplaceIf>> = out
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("no result".into()))))
        .collect();
    if failed.is_empty() {
        return out;
    }
    let ids: Vec<CredentialId> = failed.iter().map(|&i| items[i].new.id.clone()).collect();
    let again = read_many(s, &ids);
    for (&i, now) in failed.iter().zip(again) {
        if let Ok(now) = now
            && !items[i].holds(now.as_ref())
        {
            out[i] = Ok(ReplaceIf::Changed);
        }
    }
    out
}

/// The versions credshift wrote, from the provenance entry.
pub fn provenance_versions(custom: &Map<String, Value>) -> Vec<u64> {
    let Some(text) = custom.get(PROVENANCE).and_then(Value::as_str) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    parse_ranges(v["versions"].as_str().unwrap_or(""))
}

/// The longest source spec the provenance entry carries (characters): the
/// entry must fit in 512 bytes with its versions.
const MAX_SOURCE_CHARS: usize = 160;

/// The provenance entry: who wrote (credshift, the migration's id and its
/// redacted source spec, when known), when, which versions (oldest ranges
/// dropped to stay within 512 bytes).
pub fn provenance(versions: &[u64], by: Option<&crate::store::Provenance>) -> String {
    let mut vs = versions.to_vec();
    vs.sort_unstable();
    vs.dedup();
    let mut ranges = ranges(&vs);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    loop {
        let mut entry = json!({
            "by": "credshift",
            "at": at,
            "versions": ranges.join(","),
        });
        if let Some(p) = by {
            let mut source: String = p.source.chars().take(MAX_SOURCE_CHARS).collect();
            if source.len() < p.source.len() {
                source.push('…');
            }
            entry["migration_id"] = Value::String(p.migration_id.chars().take(64).collect());
            entry["from"] = Value::String(source);
        }
        let text = entry.to_string();
        if text.len() <= MAX_CUSTOM_VALUE || ranges.is_empty() {
            return text;
        }
        ranges.remove(0);
    }
}

fn ranges(sorted: &[u64]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out
}

fn parse_ranges(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>())
                    && b >= a
                    && b - a < 1_000_000
                {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u64>().ok()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ranges_round_trip_and_stay_within_512_bytes() {
        let vs = [1, 2, 3, 5, 7, 8];
        assert_eq!(ranges(&vs), ["1-3", "5", "7-8"]);
        assert_eq!(parse_ranges("1-3,5,7-8"), vs);
        let mut m = Map::new();
        m.insert(PROVENANCE.into(), Value::String(provenance(&vs, None)));
        assert_eq!(provenance_versions(&m), vs);
        let many: Vec<u64> = (1..2000).step_by(2).collect();
        // A long source spec is cut, the migration id kept whole.
        let by = crate::store::Provenance {
            migration_id: "20261206T101500Z-a1b2c3".into(),
            source: format!("dotenv:/{}", "very-long-directory/".repeat(30)),
        };
        let p = provenance(&many, Some(&by));
        assert!(p.len() <= MAX_CUSTOM_VALUE, "{}", p.len());
        let entry: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(entry["migration_id"], "20261206T101500Z-a1b2c3");
        let from = entry["from"].as_str().unwrap();
        assert!(from.starts_with("dotenv:/very-long-directory/") && from.ends_with('…'));
        m.insert(PROVENANCE.into(), Value::String(p));
        let kept = provenance_versions(&m);
        assert!(
            !kept.is_empty() && kept.last() == many.last(),
            "newest kept"
        );
    }
}
