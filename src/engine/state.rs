//! A migration's folder (`STATE/migrations/<id>/`) and its state as the
//! journal tells it: what was planned, begun, verified, failed, undone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::credential::CredentialId;
use crate::engine::error::{EngineError, Result};
use crate::engine::journal::{
    self, BackupKeyKind, JournalEvent, KdfRecord, Line, PlannedAction, PlannedItem, Record, Totals,
};
use crate::engine::journal_ids::{Ix, IxList, IxSet, Others};
use crate::engine::types::{
    ConflictPolicy, Failure, HistoryEntry, MigrationId, MigrationStatus, Report, TimelineEntry,
};
use crate::error::StoreError;
use crate::fsutil;

pub const PLAN_FILE: &str = "plan.json";
pub const TARGET_BACKUP_FILE: &str = "target-before.enc";

pub fn migrations_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("migrations")
}

pub fn migration_dir(state_dir: &Path, id: &MigrationId) -> PathBuf {
    migrations_dir(state_dir).join(&id.0)
}

/// Create a new migration folder (0700) with a fresh, time-sortable id.
pub fn create(state_dir: &Path) -> Result<(MigrationId, PathBuf)> {
    let root = migrations_dir(state_dir);
    fsutil::ensure_private_dir(&root)?;
    for _ in 0..100 {
        let mut r = [0u8; 3];
        getrandom::fill(&mut r)
            .map_err(|e| StoreError::Other(format!("no randomness available: {e}")))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let id = MigrationId(format!("{stamp}-{}", hex::encode(r)));
        let dir = root.join(&id.0);
        match std::fs::DirBuilder::new().create(&dir) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(fsutil::DIR_MODE))
                    .map_err(|e| StoreError::io(&dir, e))?;
                return Ok((id, dir));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StoreError::io(&dir, e).into()),
        }
    }
    Err(EngineError::Refused(
        "could not create a unique migration folder".into(),
    ))
}

/// Everything the journal says about one migration. Built once from the
/// file ([`State::load`]) or kept up to date record by record by an open
/// [`journal::Journal`].
#[derive(Debug, Clone)]
pub struct State {
    pub id: MigrationId,
    pub dir: PathBuf,
    pub started_at: String,
    pub from: String,
    pub to: String,
    /// The stores' identities when the migration started (`None` in
    /// journals written before they were recorded).
    pub from_identity: Option<crate::store::StoreIdentity>,
    pub to_identity: Option<crate::store::StoreIdentity>,
    pub on_conflict: ConflictPolicy,
    pub delete_source: bool,
    pub backup_key: BackupKeyKind,
    pub kdf: Option<KdfRecord>,
    /// Everything else: the selection, the plan, each item's state and the
    /// outcome (empty in a [`head`](State::head)).
    pub recorded: Recorded,
}

/// The parts of a [`State`] that grow with the items (the selection, the
/// plan, the item sets) and what the records after `started` say: all a
/// [`State::head`] leaves out.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub selection: Option<Vec<CredentialId>>,
    pub planned: Option<Vec<PlannedItem>>,
    /// `planned[..planned_sorted]` is in strictly ascending id order (a
    /// plan's items are), so it is searched, not indexed: a map of every id
    /// was about 80 bytes per item for the whole run.
    planned_sorted: usize,
    /// Position in `planned` of the items past `planned_sorted` (those a
    /// resume's replan added), by id.
    planned_index: HashMap<CredentialId, usize>,
    pub warnings: Vec<String>,
    /// Source places the plan could not read.
    pub unreadable: usize,
    pub backup: Option<PathBuf>,
    pub target_backup: Option<PathBuf>,
    /// Ids the records name that are not planned items (the sets below
    /// hold positions in the plan, or in this table).
    others: Others,
    /// Ids whose write began, in order, once each.
    begun: IxList,
    verified: IxSet,
    pub failed: BTreeMap<CredentialId, String>,
    undone: IxSet,
    /// Undone items whose rollback found someone else's value and kept it,
    /// at the source end and at the target end (one id can be both).
    pub kept_source: BTreeSet<CredentialId>,
    pub kept_target: BTreeSet<CredentialId>,
    pub undo_failed: BTreeMap<CredentialId, String>,
    pub rollback_reason: Option<String>,
    pub rolled_back: Option<bool>,
    pub finished: Option<(MigrationStatus, Totals, Option<String>)>,
    /// `Some(false)`: cleanup began and has not finished; `Some(true)`: done.
    pub cleanup: Option<bool>,
    /// Ids whose delete from the source began, in order, once each.
    delete_begun: IxList,
    source_deleted: IxSet,
    pub source_delete_failed: BTreeMap<CredentialId, String>,
    /// The records, when loaded from the file (the timeline shows them).
    pub lines: Vec<Line>,
}

impl State {
    /// The state of a migration, without its records (a 100,000-item
    /// journal's records are a second copy of the plan and of every id).
    pub fn load(state_dir: &Path, id: &MigrationId) -> Result<State> {
        let dir = Self::dir_of(state_dir, id)?;
        Self::fold(id, dir)
    }

    /// The records of `dir`'s journal folded into a state one by one, as
    /// they are parsed: each is moved in and dropped, so neither the
    /// records nor the plan's items are held beside the state.
    fn fold(id: &MigrationId, dir: PathBuf) -> Result<State> {
        match Self::fold_journal(id, &dir, |_| {})? {
            Some(st) => st,
            None => State::from_records(id.clone(), dir, &[]),
        }
    }

    /// The one fold of a journal file, for [`load`](Self::load) and for
    /// `Journal::open`: `each` sees every record before it is folded in
    /// (the journal takes its next sequence number from them). `None` when
    /// the journal has no record; `Some(Err)` when its records do not make
    /// a migration (the records after that are still read, so a bad line
    /// further on is still an error).
    pub(crate) fn fold_journal(
        id: &MigrationId,
        dir: &Path,
        mut each: impl FnMut(&Line),
    ) -> std::result::Result<Option<Result<State>>, StoreError> {
        let path = dir.join(journal::JOURNAL_FILE);
        let mut st: Option<Result<State>> = None;
        let parse = journal::parse_line;
        crate::engine::jsonl::for_each_jsonl_by(&path, "a journal record", parse, |l: Line| {
            each(&l);
            match &mut st {
                None => st = Some(State::from_records(id.clone(), dir.to_path_buf(), &[l])),
                Some(Ok(s)) => s.apply_owned(l),
                Some(Err(_)) => {}
            }
        })?;
        Ok(st)
    }

    /// What the journal's first record says (the stores, their
    /// identities, the options), without the plan or any item: all a
    /// recovery needs to find and lock the stores before it reads the
    /// whole journal under the locks. Reads only the first line when it is
    /// a whole `started` record; otherwise the whole journal, so a damaged
    /// one fails as [`load`](Self::load) does.
    pub fn load_head(state_dir: &Path, id: &MigrationId) -> Result<State> {
        use std::io::BufRead;
        let dir = Self::dir_of(state_dir, id)?;
        let first = std::fs::File::open(dir.join(journal::JOURNAL_FILE))
            .ok()
            .and_then(|f| {
                let mut line = String::new();
                std::io::BufReader::new(f).read_line(&mut line).ok()?;
                let text = line.strip_prefix('\u{feff}').unwrap_or(&line);
                text.ends_with('\n')
                    .then(|| serde_json::from_str::<Line>(text).ok())
                    .flatten()
            })
            .filter(|l| matches!(l.record, Record::Started { .. }));
        match first {
            Some(l) => Ok(State::from_records(id.clone(), dir, &[l])?.head()),
            None => Ok(Self::fold(id, dir)?.head()),
        }
    }

    /// This state without its per-item parts (plan, item sets, failures,
    /// selection) and outcome: what [`load_head`](Self::load_head) gives.
    pub fn head(&self) -> State {
        State {
            id: self.id.clone(),
            dir: self.dir.clone(),
            started_at: self.started_at.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            from_identity: self.from_identity.clone(),
            to_identity: self.to_identity.clone(),
            on_conflict: self.on_conflict,
            delete_source: self.delete_source,
            backup_key: self.backup_key,
            kdf: self.kdf.clone(),
            recorded: Recorded::default(),
        }
    }

    /// [`load`](Self::load), keeping the records (the timeline and the
    /// item view show them).
    pub fn load_with_records(state_dir: &Path, id: &MigrationId) -> Result<State> {
        let (dir, lines) = Self::read(state_dir, id)?;
        State::from_lines(id.clone(), dir, lines)
    }

    fn read(state_dir: &Path, id: &MigrationId) -> Result<(PathBuf, Vec<Line>)> {
        let dir = Self::dir_of(state_dir, id)?;
        let lines = journal::read_lines(&dir.join(journal::JOURNAL_FILE))?;
        Ok((dir, lines))
    }

    fn dir_of(state_dir: &Path, id: &MigrationId) -> Result<PathBuf> {
        let dir = migration_dir(state_dir, id);
        if id.0.contains(['/', '\\']) || id.0.starts_with('.') || !dir.is_dir() {
            return Err(EngineError::UnknownMigration {
                id: id.0.clone(),
                dir: migrations_dir(state_dir).display().to_string(),
            });
        }
        Ok(dir)
    }

    pub fn from_lines(id: MigrationId, dir: PathBuf, lines: Vec<Line>) -> Result<State> {
        let mut s = State::from_records(id, dir, &lines)?;
        s.recorded.lines = lines;
        Ok(s)
    }

    /// The state the records describe, without keeping the records.
    pub fn from_records(id: MigrationId, dir: PathBuf, lines: &[Line]) -> Result<State> {
        let Some(first) = lines.first() else {
            return Err(StoreError::parse(
                dir.join(journal::JOURNAL_FILE).display().to_string(),
                "empty journal",
            )
            .into());
        };
        let Record::Started {
            from,
            to,
            on_conflict,
            delete_source,
            selection,
            backup_key,
            kdf,
            from_identity,
            to_identity,
            ..
        } = &first.record
        else {
            return Err(StoreError::parse(
                format!("{}:1", dir.join(journal::JOURNAL_FILE).display()),
                "the first record is not `started`",
            )
            .into());
        };
        let mut s = State {
            id,
            started_at: first.at.clone(),
            from: from.clone(),
            to: to.clone(),
            from_identity: from_identity.as_deref().cloned(),
            to_identity: to_identity.as_deref().cloned(),
            on_conflict: *on_conflict,
            delete_source: *delete_source,
            backup_key: *backup_key,
            kdf: kdf.clone(),
            dir,
            recorded: Recorded {
                selection: selection.clone(),
                ..Recorded::default()
            },
        };
        for l in &lines[1..] {
            s.apply(l);
        }
        Ok(s)
    }

    /// Where `id` is in `planned`.
    fn planned_position(&self, id: &CredentialId) -> Option<usize> {
        let planned = self.recorded.planned.as_ref()?;
        let sorted = &planned[..self.recorded.planned_sorted.min(planned.len())];
        match sorted.binary_search_by(|p| p.id.cmp(id)) {
            Ok(i) => Some(i),
            Err(_) => self
                .recorded.planned_index
                .get(id)
                .copied()
                .filter(|&i| i < planned.len()),
        }
    }

    /// A planned item replaced by a resume's new plan for it.
    fn replan(&mut self, p: &PlannedItem) {
        let at = self.planned_position(&p.id);
        let planned = self.recorded.planned.get_or_insert_with(Vec::new);
        match at {
            Some(i) => planned[i] = p.clone(),
            None => {
                self.recorded.planned_index.insert(p.id.clone(), planned.len());
                planned.push(p.clone());
            }
        }
    }

    /// The number of `id` in the sets, if it has one. An id first seen
    /// outside the plan keeps its number in `others` even when a replan
    /// adds it to the plan later.
    fn ix(&self, id: &CredentialId) -> Option<Ix> {
        self.recorded.others
            .get(id)
            .or_else(|| self.planned_position(id).and_then(Ix::planned))
    }

    /// The number of `id`, given one if it has none yet.
    fn intern(&mut self, id: &CredentialId) -> Ix {
        match self.ix(id) {
            Some(ix) => ix,
            None => self.recorded.others.intern(id),
        }
    }

    /// The id a number stands for.
    fn id_of(&self, ix: Ix) -> Option<&CredentialId> {
        match ix.at() {
            Ok(p) => self.recorded.planned.as_ref()?.get(p).map(|p| &p.id),
            Err(o) => self.recorded.others.id(o),
        }
    }

    fn ids<'a>(
        &'a self,
        ixs: impl Iterator<Item = Ix> + 'a,
    ) -> impl Iterator<Item = &'a CredentialId> + 'a {
        ixs.filter_map(|ix| self.id_of(ix))
    }

    fn begin(&mut self, id: &CredentialId) {
        let ix = self.intern(id);
        self.recorded.begun.push(ix);
    }

    fn verify(&mut self, id: &CredentialId) {
        self.recorded.failed.remove(id);
        let ix = self.intern(id);
        self.recorded.verified.insert(ix);
    }

    fn fail(&mut self, id: &CredentialId, error: &str) {
        if let Some(ix) = self.ix(id) {
            self.recorded.verified.remove(ix);
        }
        self.recorded.failed.insert(id.clone(), error.to_string());
    }

    fn deleted(&mut self, id: &CredentialId) {
        self.recorded.source_delete_failed.remove(id);
        let ix = self.intern(id);
        self.recorded.source_deleted.insert(ix);
    }

    fn delete_begin(&mut self, id: &CredentialId) {
        let ix = self.intern(id);
        self.recorded.delete_begun.push(ix);
    }

    /// Ids whose write began, in the order they began.
    pub fn begun(&self) -> impl DoubleEndedIterator<Item = &CredentialId> + '_ {
        self.recorded.begun.iter().filter_map(|&ix| self.id_of(ix))
    }

    /// Ids whose delete from the source began, in the order they began.
    pub fn delete_begun(&self) -> impl DoubleEndedIterator<Item = &CredentialId> + '_ {
        self.recorded.delete_begun.iter().filter_map(|&ix| self.id_of(ix))
    }

    /// Whether `id` was written and read back equal (and not failed since).
    pub fn is_verified(&self, id: &CredentialId) -> bool {
        self.ix(id).is_some_and(|ix| self.recorded.verified.contains(ix))
    }

    /// Whether a rollback put `id` back.
    pub fn is_undone(&self, id: &CredentialId) -> bool {
        self.ix(id).is_some_and(|ix| self.recorded.undone.contains(ix))
    }

    /// Whether cleanup deleted `id` from the source.
    pub fn is_source_deleted(&self, id: &CredentialId) -> bool {
        self.ix(id)
            .is_some_and(|ix| self.recorded.source_deleted.contains(ix))
    }

    /// Verified items that no rollback undid, in id order.
    pub fn verified_not_undone(&self) -> Vec<&CredentialId> {
        let mut ids: Vec<&CredentialId> = self
            .ids(self.recorded.verified.iter().filter(|&ix| !self.recorded.undone.contains(ix)))
            .collect();
        ids.sort();
        ids
    }

    /// How many items cleanup deleted from the source.
    pub fn source_deleted_count(&self) -> usize {
        self.recorded.source_deleted.len()
    }

    /// [`apply`](Self::apply), moving a plan's items into the state
    /// instead of copying them (a copy of every planned item beside the
    /// record at the moment a migration's memory peaks).
    pub fn apply_owned(&mut self, l: Line) {
        match l.record {
            Record::Planned {
                items,
                warnings,
                unreadable,
            } => self.set_planned(items, warnings, unreadable),
            _ => self.apply(&l),
        }
    }

    fn set_planned(&mut self, items: Vec<PlannedItem>, warnings: Vec<String>, unreadable: usize) {
        // Ids the sets already hold (a second `planned` record: none of
        // this version's journals has one) are numbered again below.
        let held: Vec<(u8, CredentialId)> = [
            (0u8, self.recorded.begun.iter().copied().collect::<Vec<_>>()),
            (1, self.recorded.verified.iter().collect()),
            (2, self.recorded.undone.iter().collect()),
            (3, self.recorded.delete_begun.iter().copied().collect()),
            (4, self.recorded.source_deleted.iter().collect()),
        ]
        .into_iter()
        .flat_map(|(k, ixs)| {
            ixs.into_iter()
                .filter_map(|ix| self.id_of(ix).cloned())
                .map(move |id| (k, id))
                .collect::<Vec<_>>()
        })
        .collect();
        let sorted = 1 + items.windows(2).take_while(|w| w[0].id < w[1].id).count();
        self.recorded.planned_sorted = sorted.min(items.len());
        self.recorded.planned_index = items
            .iter()
            .enumerate()
            .skip(self.recorded.planned_sorted)
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        self.recorded.planned = Some(items);
        self.recorded.warnings = warnings;
        self.recorded.unreadable = unreadable;
        if !held.is_empty() {
            self.recorded.others = Others::default();
            (self.recorded.begun, self.recorded.delete_begun) = (IxList::default(), IxList::default());
            self.recorded.verified = IxSet::default();
            self.recorded.undone = IxSet::default();
            self.recorded.source_deleted = IxSet::default();
            for (k, id) in &held {
                let ix = self.intern(id);
                match k {
                    0 => self.recorded.begun.push(ix),
                    1 => _ = self.recorded.verified.insert(ix),
                    2 => _ = self.recorded.undone.insert(ix),
                    3 => self.recorded.delete_begun.push(ix),
                    _ => _ = self.recorded.source_deleted.insert(ix),
                }
            }
        }
    }

    /// Take one more record into account.
    pub fn apply(&mut self, l: &Line) {
        match &l.record {
            Record::Started { .. } | Record::VerifyRun { .. } | Record::RollbackPart { .. } => {}
            Record::Planned {
                items,
                warnings,
                unreadable,
            } => self.set_planned(items.clone(), warnings.clone(), *unreadable),
            Record::BackupWritten { path, .. } => {
                self.recorded.backup = Some(path.clone());
                let t = self.dir.join(TARGET_BACKUP_FILE);
                if t.exists() {
                    self.recorded.target_backup = Some(t);
                }
            }
            Record::WriteBegin { id } => self.begin(id),
            Record::BatchBegin { ids } => {
                for id in ids {
                    self.begin(id);
                }
            }
            Record::Verified { id } => self.verify(id),
            Record::Failed { id, error } => self.fail(id, error),
            Record::BatchDone { verified, failed } => {
                for id in verified {
                    self.verify(id);
                }
                for f in failed {
                    self.fail(&f.id, &f.error);
                }
            }
            Record::RollbackStarted { reason } => {
                self.recorded.rollback_reason = Some(reason.clone());
                self.recorded.rolled_back = Some(false);
            }
            Record::Undone { id, how } => {
                self.recorded.undo_failed.remove(id);
                let ix = self.intern(id);
                self.recorded.undone.insert(ix);
                let kept = if how.at_source() {
                    &mut self.recorded.kept_source
                } else {
                    &mut self.recorded.kept_target
                };
                if how.kept_theirs() {
                    kept.insert(id.clone());
                } else {
                    kept.remove(id);
                }
            }
            Record::UndoFailed { id, error } => {
                self.recorded.undo_failed.insert(id.clone(), error.clone());
            }
            Record::RolledBack { complete } => self.recorded.rolled_back = Some(*complete),
            Record::Finished {
                status,
                totals,
                reason,
            } => self.recorded.finished = Some((*status, totals.clone(), reason.clone())),
            Record::Resumed => self.recorded.finished = None,
            Record::Replanned { items } => {
                for p in items {
                    self.replan(p);
                }
                let t = self.dir.join(TARGET_BACKUP_FILE);
                if t.exists() {
                    self.recorded.target_backup = Some(t);
                }
            }
            Record::CleanupStarted => self.recorded.cleanup = Some(false),
            Record::CleanupFinished { .. } => self.recorded.cleanup = Some(true),
            Record::DeleteBegin { ids } => {
                for id in ids {
                    self.delete_begin(id);
                }
            }
            Record::SourceDeleted { id } => {
                self.delete_begin(id);
                self.deleted(id);
            }
            Record::DeleteDone { deleted, failed } => {
                for id in deleted {
                    self.deleted(id);
                }
                for f in failed {
                    self.recorded.source_delete_failed
                        .insert(f.id.clone(), f.error.clone());
                }
            }
            Record::SourceDeleteFailed { id, error } => {
                self.recorded.source_delete_failed.insert(id.clone(), error.clone());
            }
        }
    }

    /// Whether a write of `id` began.
    pub fn began(&self, id: &CredentialId) -> bool {
        self.ix(id).is_some_and(|ix| self.recorded.begun.contains(ix))
    }

    /// Whether a delete of `id` from the source began.
    pub fn delete_began(&self, id: &CredentialId) -> bool {
        self.ix(id).is_some_and(|ix| self.recorded.delete_begun.contains(ix))
    }

    /// `completed` only once everything asked for is done: a cleanup that
    /// began and did not finish leaves the migration `interrupted`.
    pub fn status(&self) -> MigrationStatus {
        match self.recorded.rolled_back {
            Some(true) => return MigrationStatus::RolledBack,
            Some(false) => return MigrationStatus::Interrupted,
            None => {}
        }
        if self.recorded.cleanup == Some(false) {
            return MigrationStatus::Interrupted;
        }
        match &self.recorded.finished {
            Some((status, _, _)) => *status,
            None => MigrationStatus::Interrupted,
        }
    }

    pub fn planned_item(&self, id: &CredentialId) -> Option<&PlannedItem> {
        self.recorded.planned.as_ref()?.get(self.planned_position(id)?)
    }

    fn count(&self, action: PlannedAction) -> usize {
        self.recorded.planned
            .as_ref()
            .map_or(0, |p| p.iter().filter(|i| i.action == action).count())
    }

    /// Items this migration put at the target that are still there.
    pub fn copied(&self) -> usize {
        // Undone items (a rollback, or a partial one) are no longer there.
        self.recorded.verified
            .iter()
            .filter(|&ix| !self.recorded.undone.contains(ix))
            .count()
    }

    pub fn totals(&self) -> Totals {
        Totals {
            total: self.recorded.planned.as_ref().map_or(0, Vec::len),
            copied: self.copied(),
            skipped: self.count(PlannedAction::SkipIdentical),
            conflicts: self.count(PlannedAction::Conflict),
            invalid: self.count(PlannedAction::Invalid) + self.count(PlannedAction::TooLong),
            failed: self.recorded.failed.len(),
        }
    }

    pub fn history_entry(&self) -> HistoryEntry {
        HistoryEntry {
            id: self.id.clone(),
            started_at: self.started_at.clone(),
            // Redacted again: a journal from a version whose redaction
            // stopped at a `/` in the password must not show it now.
            from: crate::store::redact_url(&self.from),
            to: crate::store::redact_url(&self.to),
            status: self.status(),
            copied: self.copied(),
            failed: self.recorded.failed.len(),
        }
    }

    /// Every id a rollback kept because someone else's value was there.
    pub fn kept_changed(&self) -> impl Iterator<Item = &CredentialId> {
        self.recorded.kept_source.union(&self.recorded.kept_target)
    }

    pub fn report(&self) -> Report {
        let t = self.totals();
        let mut failures: Vec<Failure> = self
            .recorded.failed
            .iter()
            .map(|(id, e)| Failure {
                id: id.clone(),
                error: e.clone(),
            })
            .collect();
        failures.extend(self.recorded.undo_failed.iter().map(|(id, e)| Failure {
            id: id.clone(),
            error: format!("rollback: {e}"),
        }));
        let rollback_reason = match (self.recorded.rolled_back, &self.recorded.rollback_reason) {
            (Some(false), Some(r)) => Some(format!(
                "{r}; the rollback is incomplete, run `credshift rollback --migration-id {}`",
                self.id
            )),
            (_, r) => r.clone(),
        };
        Report {
            migration_id: self.id.clone(),
            from: crate::store::redact_url(&self.from),
            to: crate::store::redact_url(&self.to),
            total: t.total,
            copied: t.copied,
            skipped: t.skipped,
            conflicts: t.conflicts,
            invalid: t.invalid,
            failed: t.failed,
            rolled_back: self.recorded.rolled_back == Some(true),
            rollback_reason,
            failures,
            backup: self.recorded.backup.clone(),
            verified: self.copied(),
            source_deleted: self.recorded.source_deleted.len(),
            source_delete_failed: self
                .recorded.source_delete_failed
                .iter()
                .map(|(id, e)| Failure {
                    id: id.clone(),
                    error: e.clone(),
                })
                .collect(),
            warnings: self
                .recorded.warnings
                .iter()
                .cloned()
                .chain(self.kept_changed().map(|id| {
                    format!(
                        "{id}: someone else wrote a new value there after the migration; the \
                     rollback kept it, so the value from before the migration was not put back \
                     (it is in the backup)"
                    )
                }))
                .collect(),
            kept_changed: self.kept_changed().cloned().collect(),
            notices: Vec::new(),
            unreadable: self.recorded.unreadable,
            status: Some(self.status()),
            cancelled: false,
        }
    }

    pub fn timeline(&self) -> Vec<TimelineEntry> {
        let mut out = Vec::with_capacity(self.recorded.lines.len());
        for l in &self.recorded.lines {
            let ids = match &l.record {
                Record::BatchBegin { ids }
                | Record::DeleteBegin { ids }
                | Record::RollbackPart { ids, .. } => ids.clone(),
                Record::BatchDone { verified, failed } => verified
                    .iter()
                    .cloned()
                    .chain(failed.iter().map(|f| f.id.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            let mut first = true;
            let mut push =
                |event: JournalEvent, id: Option<CredentialId>, detail: Option<String>| {
                    out.push(TimelineEntry {
                        seq: l.seq,
                        at: l.at.clone(),
                        event,
                        id,
                        detail,
                        ids: if std::mem::take(&mut first) {
                            ids.clone()
                        } else {
                            Vec::new()
                        },
                    })
                };
            let event = l.record.event();
            let one = |ids: &[CredentialId]| (ids.len() == 1).then(|| ids[0].clone());
            match &l.record {
                Record::Started { from, to, .. } => {
                    push(event, None, Some(format!("{from} -> {to}")))
                }
                Record::Planned { items, .. } => {
                    push(event, None, Some(format!("{} items", items.len())))
                }
                Record::BackupWritten { path, items } => push(
                    event,
                    None,
                    Some(format!("{} ({items} items)", path.display())),
                ),
                Record::WriteBegin { id }
                | Record::Verified { id }
                | Record::SourceDeleted { id } => push(event, Some(id.clone()), None),
                Record::Failed { id, error }
                | Record::UndoFailed { id, error }
                | Record::SourceDeleteFailed { id, error } => {
                    push(event, Some(id.clone()), Some(error.clone()))
                }
                Record::Undone { id, how } => push(event, Some(id.clone()), Some(how.to_string())),
                Record::BatchBegin { ids } | Record::DeleteBegin { ids } => {
                    push(event, one(ids), Some(format!("{} items", ids.len())))
                }
                Record::BatchDone { verified, failed } => {
                    push(
                        event,
                        one(verified).filter(|_| failed.is_empty()),
                        Some(format!(
                            "{} verified, {} failed",
                            verified.len(),
                            failed.len()
                        )),
                    );
                    for f in failed {
                        push(
                            JournalEvent::Failed,
                            Some(f.id.clone()),
                            Some(f.error.clone()),
                        );
                    }
                }
                Record::DeleteDone { deleted, failed } => {
                    push(
                        event,
                        one(deleted).filter(|_| failed.is_empty()),
                        Some(format!(
                            "{} deleted, {} still in the source",
                            deleted.len(),
                            failed.len()
                        )),
                    );
                    for f in failed {
                        push(
                            JournalEvent::SourceDeleteFailed,
                            Some(f.id.clone()),
                            Some(f.error.clone()),
                        );
                    }
                }
                Record::CleanupFinished { deleted, failed } => push(
                    event,
                    None,
                    Some(format!("{deleted} deleted, {failed} still in the source")),
                ),
                Record::RollbackStarted { reason } => push(event, None, Some(reason.clone())),
                Record::RollbackPart { pattern, ids } => push(
                    event,
                    one(ids),
                    Some(format!("{} items matching {pattern}", ids.len())),
                ),
                Record::RolledBack { complete } => push(
                    event,
                    None,
                    Some(if *complete { "complete" } else { "incomplete" }.into()),
                ),
                Record::Finished { status, reason, .. } => push(
                    event,
                    None,
                    Some(match reason {
                        Some(r) => format!("{status:?}: {r}"),
                        None => format!("{status:?}"),
                    }),
                ),
                Record::VerifyRun {
                    verified,
                    mismatched,
                } => push(
                    event,
                    None,
                    Some(format!("{verified} verified, {mismatched} mismatched")),
                ),
                Record::Resumed | Record::CleanupStarted => push(event, None, None),
                Record::Replanned { items } => {
                    for p in items {
                        push(event, Some(p.id.clone()), Some(p.action.as_str().into()));
                    }
                }
            }
        }
        out
    }
}
