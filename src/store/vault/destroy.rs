//! Removing fields (rollback of an item credshift created, cleanup of
//! Vault as a source) and destroying the versions that hold a value
//! credshift takes back or moves out.

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::kv::{Kv, WriteError};
use super::ops::{FIELDS_PER_REQUEST, PROVENANCE, group, provenance, provenance_versions};
use super::{VaultStore, field_meta, meta_key};
use crate::credential::{Credential, CredentialId, ct_eq_bytes};
use crate::error::{Result, StoreError};
use crate::store::DeleteIf;

/// Destroy the versions before `before` that hold one of `values`
/// (field, value), so a value credshift takes back or removes does not
/// survive in the history.
///
/// Which versions: for a value credshift wrote there (one of `ours`, the
/// versions it wrote, holds it), from the oldest such version on, so a
/// later version another client wrote carrying it along (a merge patch of
/// another field) goes too, and an older one someone wrote with the same
/// value before credshift did stays, someone else's history. For a value
/// no version of `ours` holds: every version holding it when `any_writer`
/// (cleanup of Vault as a source: credshift never wrote it), else none
/// (a restore whose provenance lost credshift's version cannot tell its
/// write from someone else's).
///
/// A destroy takes a whole version, so a version is destroyed only when
/// every other (field, value) it holds survives in a version that stays
/// (the latest included): a rotated-out value of another field, or
/// another client's field changed since, keeps the version, and the
/// value stays in it. Returns the versions destroyed and warnings (the
/// secret, version and field, never a value).
pub(super) fn destroy_values(
    kv: &Kv,
    path: &str,
    meta: &super::kv::Meta,
    before: u64,
    ours: &[u64],
    values: &[(String, Zeroizing<String>)],
    any_writer: bool,
) -> Result<(Vec<u64>, Vec<String>)> {
    let mut notes = Vec::new();
    // Every readable version (no value leaves this function).
    let mut read: Vec<super::kv::Version> = Vec::new();
    for &(v, live) in &meta.versions {
        if live && let Some(old) = kv.read(path, Some(v))? {
            read.push(old);
        }
    }
    let holds = |d: &Map<String, Value>, k: usize| {
        let (f, x) = &values[k];
        d.get(f)
            .and_then(Value::as_str)
            .is_some_and(|s| ct_eq_bytes(s.as_bytes(), x.as_bytes()))
    };
    // Per value: the oldest version credshift wrote holding it.
    let from: Vec<Option<u64>> = (0..values.len())
        .map(|k| {
            read.iter()
                .find(|o| o.version < before && holds(&o.data, k) && ours.contains(&o.version))
                .map(|o| o.version)
                .or(any_writer.then_some(0))
        })
        .collect();
    for (k, f) in from.iter().enumerate() {
        if f.is_none() && read.iter().any(|o| o.version < before && holds(&o.data, k)) {
            notes.push(format!(
                "{}/{path}: field {:?}: the value taken back stays in older versions \
                 (the provenance names no version credshift wrote holding it)",
                kv.mount, values[k].0
            ));
        }
    }
    let mut doomed: Vec<u64> = read
        .iter()
        .filter(|o| {
            o.version < before
                && (0..values.len())
                    .any(|k| holds(&o.data, k) && from[k].is_some_and(|f| o.version >= f))
        })
        .map(|o| o.version)
        .collect();
    // Keep a version holding anything that survives in no kept version;
    // each one kept may save another, so until nothing changes.
    let same = |a: &Value, b: &Value| match (a, b) {
        (Value::String(a), Value::String(b)) => ct_eq_bytes(a.as_bytes(), b.as_bytes()),
        _ => a == b,
    };
    loop {
        let lost = read.iter().filter(|o| doomed.contains(&o.version)).find_map(|o| {
            o.data
                .iter()
                .find(|(f, x)| {
                    let removed = (0..values.len())
                        .any(|k| values[k].0 == **f && holds(&o.data, k));
                    !removed
                        && !read.iter().any(|k| {
                            !doomed.contains(&k.version) && k.data.get(*f).is_some_and(|y| same(x, y))
                        })
                })
                .map(|(f, _)| (o.version, f.clone()))
        });
        let Some((v, f)) = lost else { break };
        doomed.retain(|d| *d != v);
        notes.push(format!(
            "{}/{path}: version {v} kept: it holds field {f:?}'s value, in no later \
             version; the value credshift removed or took back stays in it",
            kv.mount
        ));
    }
    if let Err(e) = kv.destroy(path, &doomed) {
        notes.push(format!(
            "{}/{path}: versions {doomed:?} not destroyed, the removed or taken-back values \
             stay in the history: {e}",
            kv.mount
        ));
        return Ok((Vec::new(), notes));
    }
    Ok((doomed, notes))
}

pub fn delete_many(s: &VaultStore, ids: &[CredentialId]) -> Vec<Result<bool>> {
    remove(s, ids, None)
        .into_iter()
        .map(|r| r.map(|d| d == DeleteIf::Deleted))
        .collect()
}

/// Compare before you delete: each field is compared with `expected` in
/// the version read, and the patch that removes the matching ones is a
/// check-and-set on that version, so a value another client wrote in
/// between fails the write (nothing removed, reported) instead of being
/// deleted; a value that differs already is kept and `Changed`.
pub fn delete_if_unchanged(s: &VaultStore, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
    let ids: Vec<CredentialId> = expected.iter().map(|c| c.id.clone()).collect();
    remove(s, &ids, Some(expected))
}

fn remove(
    s: &VaultStore,
    ids: &[CredentialId],
    expected: Option<&[Credential]>,
) -> Vec<Result<DeleteIf>> {
    let (mount, prefix) = match s.mount() {
        Ok(m) => m,
        Err(e) => return ids.iter().map(|_| Err(e.duplicate())).collect(),
    };
    let kv = s.kv(&mount);
    let mut out: Vec<Result<DeleteIf>> = ids.iter().map(|_| Ok(DeleteIf::Absent)).collect();
    let groups = group(s, &prefix, ids.iter(), |i, why| {
        out[i] = Err(StoreError::item(&ids[i], why));
    });
    for (path, items) in groups {
        if let Err(e) = delete_group(s, &kv, &path, &items, ids, expected, &mut out) {
            for (i, _) in &items {
                if matches!(out[*i], Ok(DeleteIf::Absent)) {
                    out[*i] = Err(e.duplicate());
                }
            }
        }
    }
    out
}

/// Patch the fields out (check-and-set on the version just read), destroy
/// every older version still holding one of their values, and remove the
/// secret when nothing of it is left.
#[allow(clippy::too_many_arguments)]
fn delete_group(
    s: &VaultStore,
    kv: &Kv,
    path: &str,
    items: &[(usize, String)],
    ids: &[CredentialId],
    expected: Option<&[Credential]>,
    out: &mut [Result<DeleteIf>],
) -> Result<()> {
    let Some(cur) = kv.read(path, None)? else {
        s.see(path, 0);
        return Ok(());
    };
    s.see(path, cur.version);
    let mut present: Vec<&(usize, String)> = items
        .iter()
        .filter(|(_, f)| cur.data.contains_key(f))
        .collect();
    if let Some(expected) = expected {
        // The field as `read_many` returns it, from this very version.
        present.retain(|(i, f)| {
            let (kind, meta) = field_meta(&cur.custom_metadata, f, &ids[*i]);
            let same = cur.data.get(f).and_then(Value::as_str).is_some_and(|v| {
                Credential::new(ids[*i].clone(), kind, v)
                    .with_metadata(meta)
                    .same_as(&expected[*i])
            });
            if !same {
                out[*i] = Ok(DeleteIf::Changed);
            }
            same
        });
    }
    if present.is_empty() {
        if let Some(expected) = expected {
            finish_removal(s, kv, path, &cur, items, expected);
        }
        return Ok(());
    }
    let removed: Vec<(String, Zeroizing<String>)> = present
        .iter()
        .filter_map(|(_, f)| {
            cur.data
                .get(f)
                .and_then(Value::as_str)
                .map(|v| (f.clone(), Zeroizing::new(v.to_string())))
        })
        .collect();
    let mut cas = cur.version;
    let mut first_new = None;
    for chunk in present.chunks(FIELDS_PER_REQUEST) {
        let patch: Map<String, Value> = chunk
            .iter()
            .map(|(_, f)| (f.clone(), Value::Null))
            .collect();
        match kv.write(path, cas, &patch) {
            Ok(v) => {
                first_new.get_or_insert(v);
                cas = v;
                for (i, _) in chunk {
                    out[*i] = Ok(DeleteIf::Deleted);
                }
            }
            Err(WriteError::Cas) => {
                return Err(StoreError::Other(format!(
                    "{}/{path} changed while credshift removed fields from it; left as it is",
                    kv.mount
                )));
            }
            Err(WriteError::Denied) if kv.client.token_refused() => {
                return Err(StoreError::Other(format!(
                    "{}/{path}: {}",
                    kv.mount,
                    kv.client.refused_token_reason()
                )));
            }
            Err(WriteError::Denied) => {
                return Err(StoreError::Other(format!(
                    "permission denied: the token may not patch {}/data/{path}",
                    kv.mount
                )));
            }
            Err(WriteError::Other(e)) => return Err(e),
        }
    }
    let first_new = first_new.unwrap_or(cas);
    s.wrote(path, cas, present.iter().map(|(_, f)| f));
    let mut patch: Map<String, Value> = present
        .iter()
        .map(|(_, f)| meta_key(f))
        .filter(|k| cur.custom_metadata.contains_key(k))
        .map(|k| (k, Value::Null))
        .collect();
    // The versions these patches created still hold the other fields'
    // values (a migrated one a later restore replaces, say): they are
    // credshift's, so that restore destroys them too.
    let mut ours = provenance_versions(&cur.custom_metadata);
    ours.extend(first_new..=cas);
    let by = s.state().provenance.clone();
    patch.insert(
        PROVENANCE.into(),
        Value::String(provenance(&ours, by.as_ref())),
    );
    let _ = kv.patch_custom_metadata(path, &patch);
    // Another client's write lands here in a unit test: a race the
    // removal of an emptied secret must not lose.
    #[cfg(test)]
    crate::store::test_support::run_after_read();
    // A soft delete keeps the data: the older versions holding a removed
    // value are destroyed for good (see `destroy_values`). Best effort,
    // as in a restore: a token that may not destroy still removes the
    // fields (their values then stay in the history, and the report says
    // so).
    let Some(meta) = kv.metadata(path)? else {
        return Ok(());
    };
    match destroy_values(kv, path, &meta, first_new, &ours, &removed, true) {
        Ok((_, notes)) => notes.into_iter().for_each(|n| s.note(n)),
        Err(e) => s.note(format!(
            "{}/{path}: the removed values stay in older versions: {e}",
            kv.mount
        )),
    }
    if cur.data.len() != present.len() {
        return Ok(()); // other fields stay in the current version
    }
    // Nothing is left in the version credshift wrote: soft-delete exactly
    // that one (a version another client wrote since stays live), so the
    // secret reads as absent, as after `kv delete`.
    if let Err(e) = kv.delete_versions(path, &[cas]) {
        // A token may hold `delete` on the data path and not `update` on
        // MOUNT/delete/PATH: `kv delete` of the latest, read again just
        // before, only while that is still credshift's version.
        let still_ours = kv
            .metadata(path)
            .ok()
            .flatten()
            .is_some_and(|m| m.current_version == cas);
        if !still_ours || kv.delete_latest(path).is_err() {
            s.note(format!(
                "{}/{path}: left empty, not soft-deleted (version {cas}): {e}",
                kv.mount
            ));
            return Ok(());
        }
    }
    s.removed(path);
    // Removed whole (metadata and all) only when, read again now, the
    // latest version is still credshift's and no older one holds anything
    // (an older value, a version someone soft-deleted, `kv undelete`
    // brings it back): otherwise that history stays. Vault has no
    // check-and-set on a metadata delete, so a write landing between this
    // read and the delete is the one narrow window left.
    let Some(now) = kv.metadata(path)? else {
        return Ok(());
    };
    let bare = now.current_version == cas
        && now
            .versions
            .iter()
            .filter(|(v, _)| *v < first_new)
            .all(|(v, live)| !live && !now.soft_deleted.contains(v));
    if bare {
        kv.delete_all(path)?;
    }
    Ok(())
}

/// A compared removal finding its fields gone already: a run that crashed
/// between the patch and the destroy (or the soft delete of the emptied
/// secret) left the value in the history. Done again here, best effort:
/// the versions holding an expected value go (the same rule as a first
/// run), and an empty latest version credshift wrote is soft-deleted.
fn finish_removal(
    s: &VaultStore,
    kv: &Kv,
    path: &str,
    cur: &super::kv::Version,
    items: &[(usize, String)],
    expected: &[Credential],
) {
    let gone: Vec<(String, Zeroizing<String>)> = items
        .iter()
        .filter(|(_, f)| !cur.data.contains_key(f))
        .map(|(i, f)| (f.clone(), Zeroizing::new(expected[*i].secret.expose().to_string())))
        .collect();
    if gone.is_empty() {
        return;
    }
    let ours = provenance_versions(&cur.custom_metadata);
    if let Ok(Some(meta)) = kv.metadata(path) {
        match destroy_values(kv, path, &meta, cur.version, &ours, &gone, true) {
            Ok((_, notes)) => notes.into_iter().for_each(|n| s.note(n)),
            Err(e) => s.note(format!(
                "{}/{path}: the removed values stay in older versions: {e}",
                kv.mount
            )),
        }
    }
    if cur.data.is_empty() && ours.contains(&cur.version) {
        if let Err(e) = kv.delete_versions(path, &[cur.version]) {
            s.note(format!(
                "{}/{path}: left empty, not soft-deleted (version {}): {e}",
                kv.mount, cur.version
            ));
        } else {
            s.removed(path);
        }
    }
}
