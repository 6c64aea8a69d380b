//! The ids a journal's state tracks (begun, verified, undone, deleted from
//! the source), as numbers instead of copies of the ids: a planned item is
//! its position in the plan, any other id (a journal whose records name an
//! id the plan does not) a position in a table of its own. A set of them
//! is a bit per planned item. The sets and lists of ids were about 120
//! bytes per item of a migration's memory, for the whole run.

use std::collections::{BTreeSet, HashMap};

use crate::credential::CredentialId;

/// An id of one migration: `n` is a position in the plan, `n | OTHER`
/// one in [`Others`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ix(u32);

const OTHER: u32 = 1 << 31;

impl Ix {
    pub(crate) fn planned(at: usize) -> Option<Ix> {
        u32::try_from(at).ok().filter(|&n| n < OTHER).map(Ix)
    }

    /// Where it is: `Ok(position in the plan)` or `Err(position in Others)`.
    pub(crate) fn at(self) -> Result<usize, usize> {
        if self.0 & OTHER == 0 {
            Ok(self.0 as usize)
        } else {
            Err((self.0 & !OTHER) as usize)
        }
    }
}

/// The ids outside the plan, numbered in the order first seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct Others {
    ids: Vec<CredentialId>,
    index: HashMap<CredentialId, u32>,
}

impl Others {
    pub(crate) fn get(&self, id: &CredentialId) -> Option<Ix> {
        self.index.get(id).map(|&n| Ix(n | OTHER))
    }

    pub(crate) fn intern(&mut self, id: &CredentialId) -> Ix {
        if let Some(ix) = self.get(id) {
            return ix;
        }
        // Fewer than 2^31 ids: a journal's records are read into memory.
        let n = u32::try_from(self.ids.len()).unwrap_or(u32::MAX) & !OTHER;
        self.ids.push(id.clone());
        self.index.insert(id.clone(), n);
        Ix(n | OTHER)
    }

    pub(crate) fn id(&self, at: usize) -> Option<&CredentialId> {
        self.ids.get(at)
    }
}

/// A set of [`Ix`]: a bit per planned item, the others by number.
#[derive(Debug, Clone, Default)]
pub(crate) struct IxSet {
    bits: Vec<u64>,
    others: BTreeSet<u32>,
    len: usize,
}

impl IxSet {
    pub(crate) fn contains(&self, ix: Ix) -> bool {
        match ix.at() {
            Ok(p) => self
                .bits
                .get(p / 64)
                .is_some_and(|w| w & (1 << (p % 64)) != 0),
            Err(o) => self.others.contains(&(o as u32)),
        }
    }

    /// Whether it was not there before.
    pub(crate) fn insert(&mut self, ix: Ix) -> bool {
        let new = match ix.at() {
            Ok(p) => {
                if self.bits.len() <= p / 64 {
                    self.bits.resize(p / 64 + 1, 0);
                }
                let w = &mut self.bits[p / 64];
                let new = *w & (1 << (p % 64)) == 0;
                *w |= 1 << (p % 64);
                new
            }
            Err(o) => self.others.insert(o as u32),
        };
        self.len += usize::from(new);
        new
    }

    pub(crate) fn remove(&mut self, ix: Ix) {
        let gone = match ix.at() {
            Ok(p) => match self.bits.get_mut(p / 64) {
                Some(w) if *w & (1 << (p % 64)) != 0 => {
                    *w &= !(1 << (p % 64));
                    true
                }
                _ => false,
            },
            Err(o) => self.others.remove(&(o as u32)),
        };
        self.len -= usize::from(gone);
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The members: planned ones in plan order, then the others.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Ix> + '_ {
        let planned = self.bits.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| Ix((i * 64 + b) as u32))
        });
        planned.chain(self.others.iter().map(|&o| Ix(o | OTHER)))
    }
}

/// Ids in the order first seen, each once (writes begun, deletes begun).
#[derive(Debug, Clone, Default)]
pub(crate) struct IxList {
    order: Vec<Ix>,
    set: IxSet,
}

impl IxList {
    pub(crate) fn push(&mut self, ix: Ix) {
        if self.set.insert(ix) {
            self.order.push(ix);
        }
    }

    pub(crate) fn contains(&self, ix: Ix) -> bool {
        self.set.contains(ix)
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Ix> {
        self.order.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::journal::{Line, Record};
    use crate::engine::state::State;
    use crate::engine::types::MigrationId;

    #[test]
    fn a_set_holds_planned_positions_and_other_ids_and_counts_them() {
        let mut others = Others::default();
        let x = others.intern(&CredentialId::new("a", "x"));
        assert_eq!(others.intern(&CredentialId::new("a", "x")), x);
        assert_eq!(x.at(), Err(0));
        assert_eq!(
            others.id(0).map(ToString::to_string).as_deref(),
            Some("a/x")
        );
        let mut s = IxSet::default();
        let p = |n| Ix::planned(n).unwrap();
        for ix in [p(3), p(64), p(200), x, p(3)] {
            s.insert(ix);
        }
        assert_eq!(s.len(), 4);
        assert!(s.contains(p(64)) && s.contains(x) && !s.contains(p(4)) && !s.contains(p(9999)));
        assert_eq!(s.iter().collect::<Vec<_>>(), [p(3), p(64), p(200), x]);
        s.remove(p(64));
        s.remove(p(64));
        s.remove(p(5000));
        s.remove(x);
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), [p(3), p(200)]);
        assert!(Ix::planned(1 << 31).is_none());
    }

    /// The journal's state as it was kept before the ids became numbers:
    /// sets and lists of the ids themselves, record by record.
    #[derive(Default)]
    struct Reference {
        begun: Vec<CredentialId>,
        verified: BTreeSet<CredentialId>,
        undone: BTreeSet<CredentialId>,
        delete_begun: Vec<CredentialId>,
        source_deleted: BTreeSet<CredentialId>,
        seen: BTreeSet<CredentialId>,
    }

    impl Reference {
        fn of(lines: &[Line]) -> Reference {
            let mut r = Reference::default();
            let push = |v: &mut Vec<CredentialId>, id: &CredentialId| {
                if !v.contains(id) {
                    v.push(id.clone());
                }
            };
            for l in lines {
                let mut ids: Vec<&CredentialId> = Vec::new();
                match &l.record {
                    Record::WriteBegin { id } => push(&mut r.begun, id),
                    Record::BatchBegin { ids: b } => b.iter().for_each(|id| push(&mut r.begun, id)),
                    Record::Verified { id } => _ = r.verified.insert(id.clone()),
                    Record::Failed { id, .. } => _ = r.verified.remove(id),
                    Record::BatchDone { verified, failed } => {
                        verified
                            .iter()
                            .for_each(|id| _ = r.verified.insert(id.clone()));
                        failed.iter().for_each(|f| _ = r.verified.remove(&f.id));
                    }
                    Record::Undone { id, .. } => _ = r.undone.insert(id.clone()),
                    Record::DeleteBegin { ids: d } => {
                        d.iter().for_each(|id| push(&mut r.delete_begun, id))
                    }
                    Record::SourceDeleted { id } => {
                        push(&mut r.delete_begun, id);
                        r.source_deleted.insert(id.clone());
                    }
                    Record::DeleteDone { deleted, .. } => deleted
                        .iter()
                        .for_each(|id| _ = r.source_deleted.insert(id.clone())),
                    Record::Planned { items, .. } | Record::Replanned { items } => {
                        ids.extend(items.iter().map(|p| &p.id))
                    }
                    _ => {}
                }
                r.seen.extend(ids.into_iter().cloned());
            }
            for v in [&r.begun, &r.delete_begun] {
                r.seen.extend(v.iter().cloned());
            }
            for s in [&r.verified, &r.undone, &r.source_deleted] {
                r.seen.extend(s.iter().cloned());
            }
            r
        }
    }

    fn assert_same_state(name: &str, lines: Vec<Line>) {
        let r = Reference::of(&lines);
        let id = MigrationId("m".into());
        let st = State::from_lines(id.clone(), "dir".into(), lines.clone()).unwrap();
        // Also record by record, as an open journal keeps it, with owned
        // `planned` records moved in.
        let mut live = State::from_records(id, "dir".into(), &lines[..1]).unwrap();
        for l in &lines[1..] {
            live.apply_owned(l.clone());
        }
        for st in [&st, &live] {
            assert_eq!(st.begun().cloned().collect::<Vec<_>>(), r.begun, "{name}");
            assert_eq!(
                st.delete_begun().cloned().collect::<Vec<_>>(),
                r.delete_begun,
                "{name}"
            );
            let want: Vec<&CredentialId> = r.verified.difference(&r.undone).collect();
            assert_eq!(st.verified_not_undone(), want, "{name}");
            assert_eq!(st.copied(), want.len(), "{name}");
            assert_eq!(st.source_deleted_count(), r.source_deleted.len(), "{name}");
            for id in r.seen.iter().chain([&CredentialId::new("never", "seen")]) {
                assert_eq!(st.began(id), r.begun.contains(id), "{name} {id}");
                assert_eq!(
                    st.delete_began(id),
                    r.delete_begun.contains(id),
                    "{name} {id}"
                );
                assert_eq!(st.is_verified(id), r.verified.contains(id), "{name} {id}");
                assert_eq!(st.is_undone(id), r.undone.contains(id), "{name} {id}");
                assert_eq!(
                    st.is_source_deleted(id),
                    r.source_deleted.contains(id),
                    "{name} {id}"
                );
            }
        }
    }

    fn lines(text: &str) -> Vec<Line> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Journals written by older versions give the state the id sets gave.
    #[test]
    fn old_journals_give_the_same_state_as_sets_of_ids() {
        for (name, text) in [
            (
                "rollback-after-cleanup",
                include_str!(
                    "../../tests/fixtures/journal-main-d0ffef4/rollback-after-cleanup.jsonl"
                ),
            ),
            (
                "crash-resume-rollback",
                include_str!(
                    "../../tests/fixtures/journal-main-d0ffef4/crash-resume-rollback.jsonl"
                ),
            ),
            (
                "other-records",
                include_str!("../../tests/fixtures/journal-main-d0ffef4/other-records.jsonl"),
            ),
        ] {
            let mut l = lines(text);
            assert!(l.len() > 3, "{name}");
            if !matches!(l[0].record, Record::Started { .. }) {
                // The records no run produces come without their `started`:
                // the first run's goes in front.
                let first = include_str!(
                    "../../tests/fixtures/journal-main-d0ffef4/rollback-after-cleanup.jsonl"
                );
                l.insert(0, lines(first).remove(0));
            }
            assert_same_state(name, l);
        }
    }

    /// Ids the plan does not name (before and after a replan adds them),
    /// failures after a verify, repeats, and a second `planned` record.
    #[test]
    fn ids_outside_the_plan_and_a_second_plan_keep_the_same_state() {
        let text = r#"{"seq":1,"at":"t","event":"started","migration_id":"m","from":"dotenv:a","to":"dotenv:b","on_conflict":"skip","delete_source":true,"backup_key":"key_file","user":"u"}
{"seq":2,"at":"t","event":"planned","items":[{"id":"env/B","action":"copy","fp":"00112233445566778899aabbccddeeff"},{"id":"env/D","action":"copy"},{"id":"env/A","action":"copy"}]}
{"seq":3,"at":"t","event":"batch_begin","ids":["env/B","env/X","env/D","env/B"]}
{"seq":4,"at":"t","event":"batch_done","verified":["env/B","env/X","env/D"]}
{"seq":5,"at":"t","event":"failed","id":"env/D","error":"e"}
{"seq":6,"at":"t","event":"replanned","items":[{"id":"env/X","action":"copy"},{"id":"env/Y","action":"copy"}]}
{"seq":7,"at":"t","event":"write_begin","id":"env/Y"}
{"seq":8,"at":"t","event":"verified","id":"env/Y"}
{"seq":9,"at":"t","event":"verified","id":"env/A"}
{"seq":10,"at":"t","event":"undone","id":"env/X","how":"removed"}
{"seq":11,"at":"t","event":"delete_begin","ids":["env/Y","env/Q"]}
{"seq":12,"at":"t","event":"source_deleted","id":"env/B"}
{"seq":13,"at":"t","event":"delete_done","deleted":["env/Y"]}"#;
        let l = lines(text);
        assert_same_state("outside the plan", l.clone());
        // The same with the plan recorded again after the first records.
        let mut again = l.clone();
        again.push(l[1].clone());
        again.push(l[6].clone());
        assert_same_state("planned twice", again);
    }

    #[test]
    fn a_list_keeps_first_seen_order_once_each() {
        let p = |n| Ix::planned(n).unwrap();
        let mut l = IxList::default();
        for n in [5, 1, 5, 70, 1] {
            l.push(p(n));
        }
        assert_eq!(l.iter().copied().collect::<Vec<_>>(), [p(5), p(1), p(70)]);
        assert!(l.contains(p(70)) && !l.contains(p(2)));
    }
}
