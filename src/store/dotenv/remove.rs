//! Removing assignments from a `.env` file, and the check every rewrite
//! passes first: the file read afresh must mean what the edit meant.

use super::doc::{Doc, Found, Index, Purpose, join_lines, scan, value_digest};
use super::DotenvStore;
use crate::credential::{Credential, CredentialId, Secret, ct_eq_bytes};
use crate::error::{Result, StoreError};
use crate::store::DeleteIf;

impl DotenvStore {
    /// `delete_many`, and with `expected` (one per id) compare-and-delete:
    /// an id whose effective value is not the expected one is kept.
    pub(super) fn remove(
        &self,
        ids: &[CredentialId],
        expected: Option<&[Credential]>,
    ) -> Vec<Result<DeleteIf>> {
        let _g = self.guard();
        let mut doc = match self.load_ids_for(ids, Purpose::Delete) {
            Ok(Some(d)) => d,
            Ok(None) => return ids.iter().map(|_| Ok(DeleteIf::Absent)).collect(),
            Err(e) => {
                return ids.iter().map(|_| Err(e.duplicate())).collect();
            }
        };
        // Each id loses the assignment `find` reads (the one a shell uses,
        // the one migrated and verified) and its marker; earlier assignments
        // of the id stay, and the id's result says so. As one `delete` per
        // id would, in order (a repeated id removes the next earlier one),
        // with the line numbers each such call would report, but with one
        // parse and one rewrite.
        let before = Meaning::take(&mut doc);
        // The lines to remove, one flag per line (a list of their numbers,
        // grown by doubling, was 14 MB of a 32,768-item batch's peak).
        let mut gone = vec![false; doc.lines.len()];
        let mut any_gone = false;
        let line_now = |line: usize, gone: &[bool]| -> usize {
            line - gone[..line].iter().filter(|g| **g).count() + 1
        };
        let mut results: Vec<Result<DeleteIf>> = Vec::with_capacity(ids.len());
        for (k, id) in ids.iter().enumerate() {
            if let Some(want) = expected.and_then(|e| e.get(k)) {
                // `Credential::same_as`, with the value compared by its
                // digest: the delete's document keeps no values.
                match doc.find(id).map(|n| (&doc.assignments[n], doc.digests.get(n))) {
                    None => {
                        results.push(Ok(DeleteIf::Absent));
                        continue;
                    }
                    Some((now, digest)) => {
                        let value = digest.is_some_and(|d| {
                            ct_eq_bytes(&value_digest(want.secret.expose()), d)
                        });
                        let meta = now.metadata.as_deref().cloned().unwrap_or_default()
                            == want.metadata;
                        if !(value & meta & (now.kind == want.kind)) {
                            results.push(Ok(DeleteIf::Changed));
                            continue;
                        }
                    }
                }
            }
            let Some(n) = doc.by_id.get_mut(id).and_then(|v| v.pop()) else {
                results.push(Ok(DeleteIf::Absent));
                continue;
            };
            let a = &doc.assignments[n];
            // Line numbers only for the message of a repeated key: counting
            // the doomed lines for every id made a batch quadratic.
            let repeated = !doc.by_id[id].is_empty();
            let (removed, others) = if repeated {
                let others: Vec<usize> = doc.by_id[id]
                    .iter()
                    .map(|&o| line_now(doc.assignments[o].start, &gone))
                    .collect();
                (line_now(a.start, &gone), others)
            } else {
                (0, Vec::new())
            };
            for l in (a.start..a.end).chain(a.marker_line) {
                gone[l] = true;
            }
            any_gone = true;
            results.push(if !repeated {
                Ok(DeleteIf::Deleted)
            } else {
                // The id is still in the file, with a value that was never
                // migrated: not "deleted", and the message says what stayed.
                Err(StoreError::item(
                    id,
                    format!(
                        "removed line {removed} of {} (the value that was migrated); the same \
                         key is also assigned on line(s) {}, which stay (that value was not \
                         migrated)",
                        self.path.display(),
                        join_lines(&others)
                    ),
                ))
            });
        }
        if !any_gone {
            return results;
        }
        let mut i = 0;
        doc.lines.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        // Every id not deleted must read as before; a deleted id may read
        // as an earlier assignment of it (its result said so), nothing new.
        let deleted: std::collections::HashSet<&CredentialId> = ids.iter().collect();
        let checked = self.same_meaning(&mut doc, &before, |id| deleted.contains(id));
        drop(before);
        match checked.and_then(|()| self.save(&doc)) {
            Ok(()) => results,
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    /// Before a rewrite: read the edited lines afresh, as the next reader
    /// will, and refuse the rewrite when they do not mean what the edit
    /// meant: every id of `expected` with its value (an id `may_differ`
    /// names may read otherwise, or be gone), and no other id. An edit can
    /// change how lines it never touched read: a value requoted next to an
    /// unterminated quote on a broken line closes that quote and swallows
    /// the assignments between (found by fuzzing).
    ///
    /// `doc` is about to be saved: only its lines are kept, and its old
    /// analysis is dropped first. The fresh reading keeps nothing: each
    /// assignment is compared as it is read, so a large file is not
    /// analysed twice over in memory, nor its meaning held twice.
    pub(super) fn same_meaning(
        &self,
        doc: &mut Doc,
        expected: &Meaning,
        may_differ: impl Fn(&CredentialId) -> bool,
    ) -> Result<()> {
        doc.assignments = Vec::new();
        doc.by_id = Index::default();
        doc.by_key = Index::default();
        doc.digests = zeroize::Zeroizing::new(Vec::new());
        doc.seen = Vec::new();
        let want = &expected.0;
        // Per expected id: whether its last assignment read as expected.
        let mut last: Vec<Option<bool>> = vec![None; want.len()];
        let mut stranger = false;
        scan(&mut doc.lines, &self.path, false, |found| {
            if let Found::Assignment(a) = found {
                match want.binary_search_by(|(id, _)| id.cmp(&a.id)) {
                    Ok(i) => {
                        last[i] = Some(match &want[i].1 {
                            Expect::Value(v) => a.value.ct_eq(v),
                            Expect::Digest(d) => {
                                ct_eq_bytes(&value_digest(a.value.expose()), d)
                            }
                        });
                    }
                    Err(_) => stranger = true,
                }
            }
        });
        let kept = want
            .iter()
            .zip(&last)
            .all(|((id, _), same)| may_differ(id) || *same == Some(true));
        if kept && !stranger {
            return Ok(());
        }
        Err(StoreError::Other(format!(
            "{}: not written: the change would alter how other lines of the file read \
             (a line credshift cannot read, such as an unterminated quote, sits near the \
             items); fix the lines `credshift inventory` reports and run again",
            self.path.display()
        )))
    }
}

/// What a document reads as: each effective id and its value, sorted by
/// id (40 bytes an id and no copy of a value; a hash map of them, built
/// twice per rewrite, was a fifth of a 100,000-line cleanup's peak).
pub(super) struct Meaning(Vec<(CredentialId, Expect)>);

/// What one id must read as.
#[derive(Clone)]
pub(super) enum Expect {
    Value(Secret),
    /// A delete keeps each line's keyed digest, not its value.
    Digest([u8; 16]),
}

impl Meaning {
    pub(super) fn empty() -> Meaning {
        Meaning(Vec::new())
    }

    /// [`Meaning::of`], taking a delete's `seen` out of `doc` instead of
    /// copying it.
    pub(super) fn take(doc: &mut Doc) -> Meaning {
        if doc.purpose != Purpose::Delete {
            return Meaning::of(doc);
        }
        Meaning::of_seen(std::mem::take(&mut doc.seen))
    }

    /// Every assignment's id and what it must read as, in file order: the
    /// last of each id is the one that counts (as in a shell).
    fn of_seen(mut v: Vec<(CredentialId, Expect)>) -> Meaning {
        // Last first, then a stable sort: each id's last assignment leads
        // its run, and `dedup` keeps the first of a run.
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Meaning(v)
    }

    pub(super) fn of(doc: &Doc) -> Meaning {
        if doc.purpose == Purpose::Delete {
            return Meaning::of_seen(
                doc.seen
                    .iter()
                    .map(|(id, e)| (id.clone(), e.clone()))
                    .collect(),
            );
        }
        let on = doc.effective();
        let mut v: Vec<(CredentialId, Expect)> =
            Vec::with_capacity(on.iter().filter(|o| **o).count());
        v.extend(
            doc.assignments
                .iter()
                .enumerate()
                .zip(on)
                .filter(|(_, on)| *on)
                .map(|((n, a), _)| {
                    let expect = match doc.digests.get(n) {
                        Some(d) => Expect::Digest(*d),
                        None => Expect::Value(a.value.clone()),
                    };
                    (a.id.clone(), expect)
                }),
        );
        // One effective assignment per id: the ids are distinct.
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Meaning(v)
    }

    /// The ids, in order (tests compare meanings by them).
    #[cfg(test)]
    pub(super) fn ids(&self) -> Vec<&CredentialId> {
        self.0.iter().map(|(id, _)| id).collect()
    }

    /// This meaning with `set`'s values in place of (or beside) its own.
    pub(super) fn with(mut self, set: Vec<(CredentialId, Secret)>) -> Meaning {
        let mut added = false;
        // Only the sorted part is searched: ids pushed below are unsorted
        // until the end, and a later value of one of them must still win.
        let sorted = self.0.len();
        for (id, value) in set {
            match self.0[..sorted].binary_search_by(|(k, _)| k.cmp(&id)) {
                Ok(i) => self.0[i].1 = Expect::Value(value),
                Err(_) => {
                    self.0.push((id, Expect::Value(value)));
                    added = true;
                }
            }
        }
        if added {
            // A later value of a repeated id wins, as in the set it came from.
            self.0.reverse();
            self.0.sort_by(|a, b| a.0.cmp(&b.0));
            self.0.dedup_by(|a, b| a.0 == b.0);
        }
        self
    }
}
