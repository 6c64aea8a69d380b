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

/// The versions before `before` still readable (not deleted, not
/// destroyed), oldest first.
pub(super) fn live_before(meta: Option<&super::kv::Meta>, before: u64) -> Vec<u64> {
    meta.map(|m| {
        m.versions
            .iter()
            .filter(|(v, live)| *live && *v < before)
            .map(|(v, _)| *v)
            .collect()
    })
    .unwrap_or_default()
}

/// Destroy those of `live` (versions, oldest first) that hold one of
/// `values` (field, value), so a value credshift takes back or removes does
/// not survive in the history. For a value credshift wrote there (one of
/// `ours`, the versions it wrote, holds it): from the oldest such version
/// on, so a later version another client wrote carrying it along (a merge
/// patch of another field) goes too, and an older one someone wrote with
/// the same value before credshift did stays, someone else's history. For
/// a value credshift never wrote (cleanup of Vault as a source): every
/// version holding it. Returns the versions destroyed.
pub(super) fn destroy_values(
    kv: &Kv,
    path: &str,
    live: &[u64],
    ours: &[u64],
    values: &[(String, Zeroizing<String>)],
) -> Result<Vec<u64>> {
    // Which values each version holds (no value is kept).
    let mut held: Vec<(u64, Vec<bool>)> = Vec::new();
    for &v in live {
        let Some(old) = kv.read(path, Some(v))? else {
            continue;
        };
        let holds = values
            .iter()
            .map(|(f, x)| {
                old.data
                    .get(f)
                    .and_then(Value::as_str)
                    .is_some_and(|s| ct_eq_bytes(s.as_bytes(), x.as_bytes()))
            })
            .collect();
        held.push((v, holds));
    }
    // Per value: the oldest version credshift wrote holding it (0: all).
    let from: Vec<u64> = (0..values.len())
        .map(|k| {
            held.iter()
                .find(|(v, h)| h[k] && ours.contains(v))
                .map_or(0, |(v, _)| *v)
        })
        .collect();
    let doomed: Vec<u64> = held
        .iter()
        .filter(|(v, h)| (0..values.len()).any(|k| h[k] && *v >= from[k]))
        .map(|(v, _)| *v)
        .collect();
    kv.destroy(path, &doomed)?;
    Ok(doomed)
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
    // A soft delete keeps the data: the older versions holding a removed
    // value are destroyed for good (see `destroy_values`).
    let Some(meta) = kv.metadata(path)? else {
        return Ok(());
    };
    let older = live_before(Some(&meta), first_new);
    // Best effort, as in a restore: a token that may not destroy still
    // removes the fields (their values then stay in the history).
    let destroyed = destroy_values(kv, path, &older, &ours, &removed).unwrap_or_default();
    if cur.data.len() != present.len() {
        return Ok(()); // other fields stay in the current version
    }
    // Nothing is left in the current version. Removed whole (metadata
    // and all) only when no older version still holds data: a version
    // with another value, or one someone soft-deleted (`kv undelete`
    // brings it back), is someone's history, kept; the empty version is
    // then soft-deleted, so the secret reads as absent, as after `kv
    // delete`.
    let history = older.iter().any(|v| !destroyed.contains(v))
        || meta.soft_deleted.iter().any(|v| *v < first_new);
    if history {
        kv.delete_latest(path)?;
    } else {
        kv.delete_all(path)?;
    }
    s.removed(path);
    Ok(())
}
