//! Resume plans again and honours the new plan. Before an item the journal
//! planned to write is written, the target as it is now is compared with
//! what the journal recorded at plan time: a value that appeared or changed
//! since is a conflict, exactly as a fresh run would treat it (skipped
//! under `skip`; backed up first, then replaced, under `overwrite`). The
//! more-than-half rule counts the whole migration, not only what the
//! resume writes, so a crash never changes the outcome.

use std::collections::{BTreeMap, BTreeSet};

use crate::credential::{Credential, CredentialId};
use crate::engine::backup_file;
use crate::engine::execute::{Run, Tally};
use crate::engine::fingerprint::{self, Fp, FpKey};
use crate::engine::journal::{PlannedAction, PlannedItem, Record};
use crate::engine::plan::Prepared;
use crate::engine::state::{self, State};
use crate::engine::types::{Action, ConflictPolicy, Failure};
use crate::error::StoreError;

/// What a resume does with the items the journal planned to write.
pub(crate) struct Decision<'a> {
    /// To write now, in plan order.
    pub work: Vec<&'a Credential>,
    /// Their write began before the crash and the target holds our value.
    pub landed: Vec<CredentialId>,
    /// No longer in the source, or changed there.
    pub gone: Vec<Failure>,
    /// Planned items whose action or recorded target value changed.
    pub replanned: Vec<PlannedItem>,
    /// Target values an overwrite replaces that the backup does not hold yet.
    pub to_back_up: Vec<Credential>,
    /// The whole migration's write outcomes so far.
    pub tally: Tally,
}

/// Compare the journal's plan with a fresh one (`prepared`, made under the
/// locks just now) item by item.
pub(crate) fn decide<'a>(
    st: &State,
    prepared: &'a Prepared,
    fp: &FpKey,
    policy: ConflictPolicy,
) -> Decision<'a> {
    let fresh: BTreeMap<&CredentialId, &Action> = prepared
        .plan
        .items
        .iter()
        .map(|i| (&i.id, &i.action))
        .collect();
    let mut d = Decision {
        work: Vec::new(),
        landed: Vec::new(),
        gone: Vec::new(),
        replanned: Vec::new(),
        to_back_up: Vec::new(),
        tally: Tally::default(),
    };
    let planned = st.recorded.planned.as_deref().unwrap_or_default();
    for p in planned
        .iter()
        .filter(|p| p.action.writes() && !st.is_verified(&p.id))
    {
        let Some(c) = prepared.source.get(&p.id) else {
            d.gone.push(Failure {
                id: p.id.clone(),
                error: "no longer in the source".into(),
            });
            continue;
        };
        if !p
            .fp
            .as_ref()
            .is_some_and(|w| fingerprint::same(w, &fp.value(c)))
        {
            d.gone.push(Failure {
                id: p.id.clone(),
                error: "the source value changed since the migration started".into(),
            });
            continue;
        }
        let as_now = |action: PlannedAction, target_fp: Option<Fp>| PlannedItem {
            action,
            target_fp,
            ..p.clone()
        };
        let unchanged = |now: Option<&Fp>| match (p.target_fp.as_ref(), now) {
            (None, None) => true,
            (Some(a), Some(b)) => fingerprint::same(a, b),
            _ => false,
        };
        match fresh.get(&p.id) {
            // The target holds our value already: written before the crash,
            // or by someone else (then it is not ours to undo).
            Some(Action::SkipIdentical) if st.began(&p.id) => d.landed.push(p.id.clone()),
            Some(Action::SkipIdentical) => d
                .replanned
                .push(as_now(PlannedAction::SkipIdentical, Some(fp.value(c)))),
            // Gone from the target since the plan: now a plain copy.
            Some(Action::Copy) => {
                if p.action != PlannedAction::Copy || p.target_fp.is_some() {
                    d.replanned.push(as_now(PlannedAction::Copy, None));
                }
                d.work.push(c);
            }
            Some(Action::Overwrite | Action::Conflict) => {
                match prepared.target_old.get(&p.id) {
                    // Listed but unreadable: never replaced (no backup possible).
                    None => d.replanned.push(as_now(PlannedAction::Conflict, None)),
                    Some(cur) => {
                        let now = fp.value(cur);
                        if p.action == PlannedAction::Overwrite && unchanged(Some(&now)) {
                            d.work.push(c);
                        } else if policy == ConflictPolicy::Overwrite {
                            d.to_back_up.push(cur.clone());
                            d.replanned
                                .push(as_now(PlannedAction::Overwrite, Some(now)));
                            d.work.push(c);
                        } else {
                            d.replanned.push(as_now(PlannedAction::Conflict, Some(now)));
                        }
                    }
                }
            }
            // Invalid or too long for the target now, or no longer planned:
            // written as the journal planned it (its source value is the
            // one the plan saw); the read-back decides.
            _ => d.work.push(c),
        }
    }
    d.tally = whole_migration_tally(st, &d);
    d
}

/// The more-than-half rule's counts for the whole migration: every write
/// the final plan holds, the outcomes journaled before this resume (an item
/// retried now counts once, by its new outcome) and the items found landed.
fn whole_migration_tally(st: &State, d: &Decision<'_>) -> Tally {
    let replanned: BTreeMap<&CredentialId, PlannedAction> =
        d.replanned.iter().map(|p| (&p.id, p.action)).collect();
    let writes: BTreeSet<&CredentialId> = st
        .recorded.planned
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|p| replanned.get(&p.id).copied().unwrap_or(p.action).writes())
        .map(|p| &p.id)
        .collect();
    let retried: BTreeSet<&CredentialId> = d.work.iter().map(|c| &c.id).collect();
    let verified = writes
        .iter()
        .filter(|id| st.is_verified(id) && !st.is_undone(id))
        .count()
        + d.landed.len();
    let failed = st
        .recorded.failed
        .keys()
        .filter(|id| writes.contains(id) && !retried.contains(id))
        .count();
    Tally {
        total_writes: writes.len(),
        verified,
        failed,
        skipped: 0,
        done: verified + failed,
    }
}

impl Run<'_> {
    /// Journal a resume's decision before anything is written: the target
    /// values an overwrite now replaces go into the target backup first
    /// (added to what it holds), then the new plan of the changed items,
    /// then the items found landed or gone. Returns the old target values
    /// a rollback restores, the new ones included.
    pub(crate) fn record_replan(
        &mut self,
        d: &Decision<'_>,
        mut old: BTreeMap<CredentialId, Credential>,
    ) -> Result<BTreeMap<CredentialId, Credential>, StoreError> {
        if !d.to_back_up.is_empty() {
            let path = self.dir.join(state::TARGET_BACKUP_FILE);
            // The values the backup held stay in it; the one added last for
            // an id is the one a rollback restores (the value our write
            // replaces).
            let mut all: Vec<Credential> = old.values().cloned().collect();
            all.extend(d.to_back_up.iter().cloned());
            backup_file::write_sealed(&path, &all, &self.keys.sealing)?;
            for c in &d.to_back_up {
                old.insert(c.id.clone(), c.clone());
            }
        }
        if !d.replanned.is_empty() {
            self.journal.append(Record::Replanned {
                items: d.replanned.clone(),
            })?;
        }
        if !d.gone.is_empty() || !d.landed.is_empty() {
            self.journal.append(Record::BatchDone {
                verified: d.landed.clone(),
                failed: d.gone.clone(),
            })?;
        }
        Ok(old)
    }
}

impl Run<'_> {
    /// The target returned `back`, not the value `c` just written: a store
    /// that changed the value, or another client that wrote after us;
    /// credshift cannot tell which. So `back` is sealed into the migration
    /// folder first (never lost), and what was there before is put back
    /// only while the target still holds exactly `back`; a value changed
    /// again since stays, and the failure says so. Returns the failure text.
    pub(crate) fn undo_wrong_read_back(
        &self,
        c: &Credential,
        back: &Credential,
        old: Option<&Credential>,
        keeps_metadata: bool,
    ) -> String {
        const WHY: &str = "the value read back differs from the one written";
        if let Err(e) = self.keep_found(back) {
            return format!("{WHY}; left as found (it could not be saved first: {e})");
        }
        let now = match self.target.read(&c.id) {
            Ok(now) => now,
            Err(e) => return format!("{WHY}; left as found (reading it again failed: {e})"),
        };
        if !now
            .as_ref()
            .is_some_and(|n| crate::engine::plan::same_for_target(n, back, keeps_metadata))
        {
            return format!("{WHY}; left_changed: the target changed again since, left as it is");
        }
        let undone = match (old, now) {
            (Some(o), _) => self.target.write(o),
            // Removed only while it still holds what was just compared.
            (None, now) => match self.target.delete_if_unchanged(&Vec::from_iter(now)).pop() {
                Some(Ok(crate::store::DeleteIf::Changed)) => {
                    return format!(
                        "{WHY}; left_changed: the target changed again since, left as it is"
                    );
                }
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(e),
                None => Err(StoreError::item(&c.id, "the store returned no result")),
            },
        };
        match undone {
            Ok(()) => format!(
                "{WHY}; put back what was there before (the value found is kept in {FOUND_DIR}/)"
            ),
            Err(e) => format!("{WHY}; putting back what was there failed: {e}"),
        }
    }

    /// Seal a value found at the target into `found/` in the migration
    /// folder (one file per value; 0600 in a 0700 dir).
    fn keep_found(&self, found: &Credential) -> Result<(), StoreError> {
        let dir = self.dir.join(FOUND_DIR);
        crate::fsutil::ensure_private_dir(&dir)?;
        let n = FOUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(
            "{}-{}-{n}.enc",
            crate::engine::inventory::now_ms(),
            std::process::id()
        ));
        backup_file::write_sealed(&path, std::slice::from_ref(found), &self.keys.sealing)
    }
}

/// Where a migration keeps, sealed with its backup key, the values it found
/// at the target and removed (a wrong read-back).
pub const FOUND_DIR: &str = "found";

static FOUND: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
