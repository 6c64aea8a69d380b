//! Undo (rollback) and source cleanup: the item loops that `migrate`,
//! `resume`, `rollback` and `cleanup` share.

use std::collections::{BTreeMap, HashMap};

use crate::credential::{Credential, CredentialId};
use crate::engine::error::Result;
use crate::engine::execute::Control;
use crate::engine::fingerprint::{self, Fp, FpKey};
use crate::engine::journal::{Journal, PlannedAction, Record, UndoOutcome};
use crate::engine::state::State;
use crate::engine::types::{Failure, Progress};
use crate::error::StoreError;
use crate::store::{BatchHint, DeleteIf, Replace, ReplaceIf, Store, legacy_meta};

/// Which writes [`undo_all`] undoes, and whether a cancel stops it.
#[derive(Clone, Copy, Default)]
pub(crate) struct UndoScope<'a> {
    /// Only these ids (a partial rollback); `None`: every write begun.
    pub only: Option<&'a std::collections::BTreeSet<CredentialId>>,
    /// A rollback the user asked for stops on cancel (the rest is left for
    /// the next `rollback`); the automatic rollback after a cancelled
    /// migration must not.
    pub stop_on_cancel: bool,
}

/// Undo every write this migration began, newest first. Returns whether
/// every item is back as it was. Idempotent: an item already undone is
/// recognised by its fingerprint and left alone.
pub(crate) fn undo_all(
    journal: &mut Journal,
    fp: &FpKey,
    target: &dyn Store,
    state: &State,
    old: &BTreeMap<CredentialId, Credential>,
    ctl: &Control,
    scope: UndoScope<'_>,
) -> Result<bool> {
    let mut complete = true;
    for id in state.begun().rev() {
        if scope.only.is_some_and(|only| !only.contains(id)) {
            continue;
        }
        if scope.stop_on_cancel && ctl.cancelled() {
            return Ok(false);
        }
        let planned = state.planned_item(id);
        let ours = planned.and_then(|p| p.fp.as_ref());
        let before = planned.and_then(|p| p.target_fp.as_ref());
        let overwrite = planned.is_some_and(|p| p.action == PlannedAction::Overwrite);
        let result = undo_one(fp, target, id, ours, before, overwrite, old.get(id));
        match result {
            Ok(how) => {
                journal.append(Record::Undone {
                    id: id.clone(),
                    how,
                })?;
                ctl.send(Progress::ItemUndone {
                    id: id.clone(),
                    how,
                });
            }
            Err(e) => {
                complete = false;
                let unavailable = e.is_unavailable();
                journal.append(Record::UndoFailed {
                    id: id.clone(),
                    error: e.to_string(),
                })?;
                if unavailable {
                    break;
                }
            }
        }
    }
    Ok(complete)
}

fn undo_one(
    fp: &FpKey,
    target: &dyn Store,
    id: &CredentialId,
    ours: Option<&Fp>,
    before: Option<&Fp>,
    overwrite: bool,
    old: Option<&Credential>,
) -> Result<UndoOutcome, StoreError> {
    // A target that does not exist (a file never created because every
    // write failed) holds nothing: the item is absent, not an error.
    let read = target.read_many(std::slice::from_ref(id)).pop();
    let current = match read.unwrap_or(Ok(None)) {
        Ok(c) => c,
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    // The old value goes back only over what was just read (compared
    // inside the store's write): a value another application wrote
    // meanwhile stays, and is reported as left changed.
    let restore = |seen: Option<&Credential>| -> Result<UndoOutcome, StoreError> {
        let Some(o) = old else {
            return Err(StoreError::item(
                id,
                "the old target value is not in memory or the backup",
            ));
        };
        let put = Replace {
            expected: seen.cloned(),
            new: o.clone(),
        };
        match target.replace_if_unchanged(&[put]).pop() {
            Some(Ok(ReplaceIf::Replaced)) => Ok(UndoOutcome::Restored),
            Some(Ok(ReplaceIf::Changed)) => Ok(UndoOutcome::LeftChanged),
            Some(Err(e)) => Err(e),
            None => Err(StoreError::item(id, "the store returned no result")),
        }
    };
    match current {
        None if overwrite => restore(None),
        None => Ok(UndoOutcome::Absent),
        Some(cur) => {
            let now = fp.value(&cur);
            if ours.is_some_and(|f| fingerprint::same(f, &now)) {
                if overwrite {
                    restore(Some(&cur))
                } else {
                    // Deleted only if it still holds what was compared: a
                    // value written by someone else meanwhile stays.
                    match target.delete_if_unchanged(std::slice::from_ref(&cur)).pop() {
                        Some(Ok(DeleteIf::Deleted)) => Ok(UndoOutcome::Removed),
                        Some(Ok(DeleteIf::Absent)) => Ok(UndoOutcome::Absent),
                        Some(Ok(DeleteIf::Changed)) => Ok(UndoOutcome::LeftChanged),
                        Some(Err(e)) => Err(e),
                        None => Err(StoreError::item(id, "the store returned no result")),
                    }
                }
            } else if before.is_some_and(|f| fingerprint::same(f, &now)) {
                Ok(UndoOutcome::AlreadyRestored)
            } else if !overwrite && ours.is_none() {
                Err(StoreError::item(id, "no fingerprint in the journal"))
            } else {
                // Not what we wrote and not what was there: someone else's
                // value. Leave it.
                Ok(UndoOutcome::LeftChanged)
            }
        }
    }
}

/// Delete order for cleanup: per namespace and field, numbered entries in
/// descending index order (agent-prompttrain's client keys are array
/// entries whose indices shift when a lower one is removed).
pub fn delete_order(ids: &mut [CredentialId]) {
    fn split(name: &str) -> (&str, Option<u64>) {
        match name.rsplit_once('/') {
            Some((head, tail)) => match tail.parse::<u64>() {
                Ok(n) => (head, Some(n)),
                Err(_) => (name, None),
            },
            None => (name, None),
        }
    }
    ids.sort_by(|a, b| {
        let (ha, na) = split(&a.name);
        let (hb, nb) = split(&b.name);
        a.namespace
            .cmp(&b.namespace)
            .then(ha.cmp(hb))
            .then(nb.cmp(&na))
    });
}

/// How many source deletes one `delete_begin` record covers, at first
/// (more when one item and the items derived from it are more).
const DELETE_BATCH: usize = 256;

/// The most a whole-file store's delete batch grows to: a batch holds both
/// ends' values of its items at once, and 65,536 of them were most of a
/// 100,000-item cleanup's memory; one more pass over the file costs less.
/// 32,768 were still a tenth of the wizard's cleanup peak (issue #26):
/// 16,384 cost two more passes over a 100,000-line file.
const WHOLE_FILE_DELETE_BATCH: usize = 16_384;

/// `ids`, in their order, cut into delete batches, so that an item and the
/// items derived from its metadata (`NS/NAME#PATH`, [`legacy_meta`]) always
/// share a batch: the legacy-metadata layer deletes a parent only together
/// with every secret of its metadata, so a boundary between them would keep
/// the parent in the source until the next cleanup. Such a group goes where
/// its first member is; a group larger than a batch is a batch of its own.
///
/// Batches hold at most [`DELETE_BATCH`] for stores that cost per item.
/// When either end reads or rewrites a whole file per call
/// ([`BatchHint::WholeFile`]), a batch costs as much as the file is long,
/// and cleanup starts with the file at its longest: the cap grows fourfold
/// after each batch (256, 1,024, 4,096, ... up to
/// [`WHOLE_FILE_DELETE_BATCH`]), so the whole cleanup reads the file a few
/// times. Fixed batches of 256 made a
/// 20,000-item `.env` cleanup take 23 s against 1 s for the migration
/// itself, and 100,000 items 330 s.
fn delete_batches(ids: Vec<CredentialId>, hint: BatchHint) -> Vec<Vec<CredentialId>> {
    // Only a parent and its derived items form a group; every other id
    // stands alone, without a group of its own in memory (a vector per id
    // was about 100 bytes per item of a 100,000-item cleanup).
    let parents: std::collections::HashSet<CredentialId> = ids
        .iter()
        .filter_map(|id| legacy_meta::parent_of(id).map(|(p, _)| p))
        .collect();
    enum Unit {
        One(CredentialId),
        Group(usize),
    }
    let mut units: Vec<Unit> = Vec::with_capacity(ids.len());
    let mut groups: Vec<Vec<CredentialId>> = Vec::new();
    let mut group_of: HashMap<CredentialId, usize> = HashMap::new();
    for id in ids {
        let key = match legacy_meta::parent_of(&id) {
            Some((parent, _)) => parent,
            None if parents.contains(&id) => id.clone(),
            None => {
                units.push(Unit::One(id));
                continue;
            }
        };
        match group_of.get(&key) {
            Some(&g) => groups[g].push(id),
            None => {
                group_of.insert(key, groups.len());
                units.push(Unit::Group(groups.len()));
                groups.push(vec![id]);
            }
        }
    }
    let mut batches: Vec<Vec<CredentialId>> = Vec::new();
    let mut batch: Vec<CredentialId> = Vec::new();
    let mut cap = DELETE_BATCH;
    for unit in units {
        let len = match &unit {
            Unit::One(_) => 1,
            Unit::Group(g) => groups[*g].len(),
        };
        if !batch.is_empty() && batch.len() + len > cap {
            batches.push(std::mem::take(&mut batch));
            if hint == BatchHint::WholeFile {
                cap = cap.saturating_mul(4).min(WHOLE_FILE_DELETE_BATCH);
            }
        }
        match unit {
            Unit::One(id) => batch.push(id),
            Unit::Group(g) => batch.append(&mut groups[g]),
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Delete from the source the items that verified (and the ones identical
/// at the target), each re-checked against the journal's fingerprint at
/// both ends right before the delete, in batches journaled before
/// (`delete_begin`) and after (`delete_done`). After deleting, the source
/// is read again: only what is really gone counts as deleted; anything
/// else is "migrated, source still present". Resumable: an item whose
/// delete began and that is gone from the source was deleted by us.
/// A cancel does not stop it (a migration's own cleanup runs to its end).
pub(crate) fn cleanup_items(
    journal: &mut Journal,
    fp: &FpKey,
    source: &dyn Store,
    target: &dyn Store,
    ctl: &Control,
) -> Result<()> {
    cleanup_loop(journal, fp, source, target, ctl, false).map(|_| ())
}

/// [`cleanup_items`] that stops between batches once `ctl` is cancelled
/// (a cleanup asked for on its own: the wizard's, a resume's):
/// `Ok(false)` then, with the cleanup left interrupted in the journal
/// (begun, even when the cancel came first): `resume` finishes it.
pub(crate) fn cleanup_items_cancellable(
    journal: &mut Journal,
    fp: &FpKey,
    source: &dyn Store,
    target: &dyn Store,
    ctl: &Control,
) -> Result<bool> {
    cleanup_loop(journal, fp, source, target, ctl, true)
}

fn cleanup_loop(
    journal: &mut Journal,
    fp: &FpKey,
    source: &dyn Store,
    target: &dyn Store,
    ctl: &Control,
    stop_on_cancel: bool,
) -> Result<bool> {
    let stop = || stop_on_cancel && ctl.cancelled();
    // The candidates, taken out of the journal's state once (a clone of
    // the whole state was a copy of every planned item); each batch looks
    // up their fingerprints there (a map of every candidate was about 100
    // bytes per item for the whole cleanup).
    let mut ids: Vec<CredentialId> = Vec::new();
    {
        let state = journal.state()?;
        for p in state.recorded.planned.as_deref().unwrap_or_default() {
            if p.fp.is_none() {
                continue;
            }
            if ((state.is_verified(&p.id) && !state.is_undone(&p.id))
                || p.action == PlannedAction::SkipIdentical)
                && !state.is_source_deleted(&p.id)
            {
                ids.push(p.id.clone());
            }
        }
    }
    journal.append(Record::CleanupStarted)?;
    delete_order(&mut ids);
    let (mut n_deleted, mut n_failed) = (0usize, 0usize);
    let hint = if [source.batch_hint(), target.batch_hint()].contains(&BatchHint::WholeFile) {
        BatchHint::WholeFile
    } else {
        BatchHint::PerItem
    };
    for chunk in delete_batches(ids, hint) {
        if stop() {
            return Ok(false);
        }
        let chunk = chunk.as_slice();
        // Each id's fingerprint and whether its delete began before a
        // crash (only records of other batches were written since).
        let want: Vec<(Option<Fp>, bool)> = {
            let state = journal.state()?;
            chunk
                .iter()
                .map(|id| {
                    let fp = state.planned_item(id).and_then(|p| p.fp.clone());
                    (fp, state.delete_began(id))
                })
                .collect()
        };
        let at_target = target.read_many(chunk);
        // The target is read again only for the next batch: a whole-file
        // target's decrypted copy (a quarter of a 100,000-item cleanup's
        // peak) is not kept while the source is read and rewritten.
        target.release_cache();
        let at_source = source.read_many(chunk);
        // What the source held when compared: deleted only while it still does.
        let mut to_delete: Vec<Credential> = Vec::new();
        let mut deleted: Vec<CredentialId> = Vec::new();
        let mut failed: Vec<Failure> = Vec::new();
        for (((id, t), s), (want, began)) in chunk.iter().zip(at_target).zip(at_source).zip(&want) {
            let (want, began) = (want.as_ref(), *began);
            let ours = |c: &Credential| want.is_some_and(|w| fingerprint::same(&fp.value(c), w));
            let problem = match (t, s) {
                (Ok(Some(t)), Ok(Some(s))) if ours(&t) && ours(&s) => {
                    to_delete.push(s);
                    continue;
                }
                // Deleted before a crash: the delete began and it is gone.
                (Ok(Some(t)), Ok(None)) if ours(&t) && began => {
                    deleted.push(id.clone());
                    continue;
                }
                (Ok(t), _) if !t.as_ref().is_some_and(ours) => {
                    "the target no longer holds the migrated value".to_string()
                }
                (_, Ok(None)) => "no longer in the source".to_string(),
                (_, Ok(Some(_))) => "the source value changed".to_string(),
                (Err(e), _) | (_, Err(e)) => e.to_string(),
            };
            failed.push(Failure {
                id: id.clone(),
                error: format!("migrated, source still present: {problem}"),
            });
        }
        if !to_delete.is_empty() {
            let ids: Vec<CredentialId> = to_delete.iter().map(|c| c.id.clone()).collect();
            journal.append(Record::DeleteBegin { ids: ids.clone() })?;
            let results = source.delete_if_unchanged(&to_delete);
            drop(to_delete);
            // Read the source again: "deleted" only for what is really gone.
            let after = source.read_many(&ids);
            for (i, id) in ids.iter().enumerate() {
                let problem = match (results.get(i), after.get(i)) {
                    (Some(Err(e)), _) => Some(e.to_string()),
                    // Changed between the comparison and the delete: kept.
                    (Some(Ok(DeleteIf::Changed)), _) => {
                        Some("the source value changed; it was kept".to_string())
                    }
                    (_, Some(Ok(None))) => None,
                    (_, Some(Ok(Some(_)))) => {
                        Some("the delete had no effect: the source still holds it".to_string())
                    }
                    (_, Some(Err(e))) => Some(format!("could not read the source again: {e}")),
                    (_, None) => Some("the store returned no result".to_string()),
                };
                match problem {
                    None => deleted.push(id.clone()),
                    Some(p) => failed.push(Failure {
                        id: id.clone(),
                        error: format!("migrated, source still present: {p}"),
                    }),
                }
            }
        }
        n_deleted += deleted.len();
        n_failed += failed.len();
        let events: Vec<Progress> = deleted
            .iter()
            .map(|id| Progress::SourceDeleted { id: id.clone() })
            .chain(failed.iter().map(|f| Progress::SourceDeleteFailed {
                id: f.id.clone(),
                error: f.error.clone(),
            }))
            .collect();
        journal.append(Record::DeleteDone { deleted, failed })?;
        for e in events {
            ctl.send(e);
        }
    }
    journal.append(Record::CleanupFinished {
        deleted: n_deleted,
        failed: n_failed,
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[String]) -> Vec<CredentialId> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn names(batches: &[Vec<CredentialId>]) -> Vec<Vec<String>> {
        batches
            .iter()
            .map(|b| b.iter().map(ToString::to_string).collect())
            .collect()
    }

    #[test]
    fn a_parent_and_its_derived_items_share_a_delete_batch() {
        let mut all: Vec<String> = (0..255).map(|i| format!("a/k{i:03}")).collect();
        all.extend(["s/p", "s/p#x", "s/p#y.z", "t/q"].map(String::from));
        let b = names(&delete_batches(ids(&all), BatchHint::PerItem));
        assert_eq!(
            b.len(),
            2,
            "{:?}",
            b.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(b[0], all[..255]);
        assert_eq!(b[1], ["s/p", "s/p#x", "s/p#y.z", "t/q"]);
        // Order otherwise kept: numbered entries stay in delete order, a
        // derived item listed apart from its parent joins it.
        let spread = ["p/keys/2", "p/keys/1#url", "p/keys/1", "p/keys/0"].map(String::from);
        let b = names(&delete_batches(ids(&spread), BatchHint::PerItem));
        assert_eq!(b, [["p/keys/2", "p/keys/1#url", "p/keys/1", "p/keys/0"]]);
        let b = names(&delete_batches(
            ids(&[
                "p/keys/1#url".to_string(),
                "p/keys/2".to_string(),
                "p/keys/1".to_string(),
            ]),
            BatchHint::PerItem,
        ));
        assert_eq!(b, [["p/keys/1#url", "p/keys/1", "p/keys/2"]]);
    }

    #[test]
    fn batches_are_full_and_a_group_larger_than_a_batch_stands_alone() {
        let plain: Vec<String> = (0..600).map(|i| format!("a/k{i:03}")).collect();
        let b = delete_batches(ids(&plain), BatchHint::PerItem);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 88]);
        let mut all = vec!["a/first".to_string(), "big/p".to_string()];
        all.extend((0..300).map(|i| format!("big/p#f{i}")));
        all.push("z/last".into());
        let b = delete_batches(ids(&all), BatchHint::PerItem);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 301, 1]);
        assert!(delete_batches(Vec::new(), BatchHint::PerItem).is_empty());
    }

    #[test]
    fn whole_file_batches_grow_fourfold_so_a_cleanup_reads_the_file_a_few_times() {
        let plain: Vec<String> = (0..100_000).map(|i| format!("env/K{i:06}")).collect();
        let sizes = |hint| {
            delete_batches(ids(&plain), hint)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sizes(BatchHint::WholeFile),
            [256, 1024, 4096, 16384, 16384, 16384, 16384, 16384, 12704]
        );
        // Per-item stores keep the fixed cap: 391 batches.
        let per_item = sizes(BatchHint::PerItem);
        assert_eq!(per_item.len(), 391);
        assert!(per_item.iter().all(|&n| n <= 256));
        // Order is kept and nothing is lost or repeated.
        let flat: Vec<String> = delete_batches(ids(&plain), BatchHint::WholeFile)
            .into_iter()
            .flatten()
            .map(|id| id.to_string())
            .collect();
        assert_eq!(flat, plain);
        // A parent's derived items still share its batch at a boundary.
        let mut edge: Vec<String> = (0..255).map(|i| format!("a/k{i:03}")).collect();
        edge.extend(["s/bot".into(), "s/bot#token".into(), "s/bot#url".into()]);
        let b = delete_batches(ids(&edge), BatchHint::WholeFile);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [255, 3]);
    }
}
