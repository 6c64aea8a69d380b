//! The journal: JSON lines under `STATE/migrations/<id>/journal.jsonl`, one
//! record per step, fsynced before the step after it may start. It holds
//! ids, actions and keyed fingerprints only, never a secret. History,
//! resume, rollback and verify read it back.
//!
//! The open [`Journal`] keeps the migration's [`State`] in memory,
//! updated as records are appended: the engine never re-reads the file
//! during a run (reports come from it).
//!
//! Items move in batches: `batch_begin` names a batch's ids (fsynced)
//! before the store writes, `batch_done` records their outcomes after the
//! read-back. Cleanup has its own records: `cleanup_started`, then per
//! batch `delete_begin` / `delete_done`, then `cleanup_finished`.
//!
//! `CREDSHIFT_CRASH_AT=K` (a documented test aid, [`crate::test_aids`])
//! aborts the process right after the K-th record this process wrote, like
//! a power cut.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::credential::CredentialId;
use crate::engine::fingerprint::Fp;
use crate::engine::state::State;
use crate::engine::types::{Action, ConflictPolicy, Failure, MigrationId, MigrationStatus};
use crate::error::StoreError;
use crate::store::StoreIdentity;

pub const JOURNAL_FILE: &str = "journal.jsonl";

/// Which key protects the migration's backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKeyKind {
    /// The passphrase in use when the migration ran.
    Passphrase,
    /// `backup.key` in the migration folder.
    KeyFile,
}

/// What the plan decided for one item, under the names journals have
/// always used (a journal written by an older version reads back as it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannedAction {
    Copy,
    Overwrite,
    SkipIdentical,
    Conflict,
    Invalid,
    TooLong,
}

impl PlannedAction {
    /// Whether executing the item writes to the target.
    pub fn writes(self) -> bool {
        matches!(self, PlannedAction::Copy | PlannedAction::Overwrite)
    }

    /// The journal's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlannedAction::Copy => "copy",
            PlannedAction::Overwrite => "overwrite",
            PlannedAction::SkipIdentical => "skip_identical",
            PlannedAction::Conflict => "conflict",
            PlannedAction::Invalid => "invalid",
            PlannedAction::TooLong => "too_long",
        }
    }
}

impl From<&Action> for PlannedAction {
    fn from(a: &Action) -> Self {
        match a {
            Action::Copy => PlannedAction::Copy,
            Action::Overwrite => PlannedAction::Overwrite,
            Action::SkipIdentical => PlannedAction::SkipIdentical,
            Action::Conflict => PlannedAction::Conflict,
            Action::Invalid { .. } => PlannedAction::Invalid,
            Action::TooLong { .. } => PlannedAction::TooLong,
        }
    }
}

/// How one item was put back by a rollback (the `how` of an `undone` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoOutcome {
    /// Our value was deleted from the target.
    Removed,
    /// The value an overwrite replaced is back.
    Restored,
    /// Nothing was there to undo.
    Absent,
    /// The target already holds the value it had before the migration.
    AlreadyRestored,
    /// The target holds someone else's value now: left alone.
    LeftChanged,
    /// Cleanup's delete never happened: the source still holds the item.
    SourcePresent,
    /// An item cleanup deleted is back in the source.
    SourceRestored,
    /// Someone else wrote the item cleanup deleted back into the source
    /// before the rollback could: their value is kept.
    SourceChanged,
}

impl UndoOutcome {
    /// The journal's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            UndoOutcome::Removed => "removed",
            UndoOutcome::Restored => "restored",
            UndoOutcome::Absent => "absent",
            UndoOutcome::AlreadyRestored => "already_restored",
            UndoOutcome::LeftChanged => "left_changed",
            UndoOutcome::SourcePresent => "source_present",
            UndoOutcome::SourceRestored => "source_restored",
            UndoOutcome::SourceChanged => "source_changed",
        }
    }
}

impl UndoOutcome {
    /// The item holds a value someone else wrote, which the rollback kept.
    pub fn kept_theirs(self) -> bool {
        matches!(self, UndoOutcome::LeftChanged | UndoOutcome::SourceChanged)
    }

    /// An outcome at the source end (cleanup undone), not the target's.
    pub fn at_source(self) -> bool {
        matches!(
            self,
            UndoOutcome::SourcePresent | UndoOutcome::SourceRestored | UndoOutcome::SourceChanged
        )
    }
}

impl std::fmt::Display for UndoOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the plan decided for one item, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedItem {
    pub id: CredentialId,
    pub action: PlannedAction,
    /// Keyed fingerprint of the source value (what gets written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<Fp>,
    /// Keyed fingerprint of the source's kind and metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfp: Option<Fp>,
    /// Keyed fingerprint of the target value before the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_fp: Option<Fp>,
}

/// How the migration's backup key was stretched (a passphrase only): the
/// salt and iteration count, as the backup's own header holds them. The
/// fingerprint key is derived from that key, so recovery derives it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfRecord {
    pub iterations: u32,
    /// Hex.
    pub salt: String,
}

/// Totals a `finished` record carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub total: usize,
    pub copied: usize,
    pub skipped: usize,
    pub conflicts: usize,
    pub invalid: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    Started {
        migration_id: MigrationId,
        from: String,
        to: String,
        on_conflict: ConflictPolicy,
        delete_source: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selection: Option<Vec<CredentialId>>,
        backup_key: BackupKeyKind,
        /// Absent for a key-file backup (the key is used as it is).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kdf: Option<KdfRecord>,
        user: String,
        /// What the source and target were when the migration started
        /// (absent in journals written before identities were recorded):
        /// recovery refuses a different store found at `from` or `to`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_identity: Option<Box<StoreIdentity>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_identity: Option<Box<StoreIdentity>>,
    },
    Planned {
        items: Vec<PlannedItem>,
        /// The plan's warnings (target drops metadata, ...): for the report.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
        /// How many source places could not be read (each named in
        /// `warnings`). Older versions never write it.
        #[serde(default, skip_serializing_if = "is_zero")]
        unreadable: usize,
    },
    BackupWritten {
        path: PathBuf,
        items: usize,
    },
    /// Written before the store write: a crash after it may have left the value.
    WriteBegin {
        id: CredentialId,
    },
    /// Written and read back equal.
    Verified {
        id: CredentialId,
    },
    Failed {
        id: CredentialId,
        error: String,
    },
    /// Written before a batch's store writes: a crash after it may have
    /// left any of these values at the target.
    BatchBegin {
        ids: Vec<CredentialId>,
    },
    /// The batch's outcomes after the read-back.
    BatchDone {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        verified: Vec<CredentialId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<Failure>,
    },
    /// Cleanup (deleting verified items from the source) began.
    CleanupStarted,
    /// Written before deleting these ids from the source.
    DeleteBegin {
        ids: Vec<CredentialId>,
    },
    /// Outcomes of a delete batch, after reading the source again.
    DeleteDone {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deleted: Vec<CredentialId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<Failure>,
    },
    CleanupFinished {
        deleted: usize,
        failed: usize,
    },
    RollbackStarted {
        reason: String,
    },
    /// One item put back.
    Undone {
        id: CredentialId,
        how: UndoOutcome,
    },
    UndoFailed {
        id: CredentialId,
        error: String,
    },
    RolledBack {
        complete: bool,
    },
    /// A partial rollback the user asked for (`rollback --only GLOB`, or
    /// items chosen in the wizard): these ids are undone next (one
    /// `undone` each); the others stay migrated and the migration keeps
    /// its status.
    RollbackPart {
        pattern: String,
        ids: Vec<CredentialId>,
    },
    Finished {
        status: MigrationStatus,
        #[serde(flatten)]
        totals: Totals,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Resumed,
    /// A resume planned again: these items replace the planned ones of the
    /// same id (a target value that appeared or changed since the plan is
    /// now a conflict, or an overwrite backed up first). Older versions
    /// never write it.
    Replanned {
        items: Vec<PlannedItem>,
    },
    VerifyRun {
        verified: usize,
        mismatched: usize,
    },
    SourceDeleted {
        id: CredentialId,
    },
    SourceDeleteFailed {
        id: CredentialId,
        error: String,
    },
}

/// The kind of a journal record: its `event` name. A timeline entry
/// carries it; its serialized names are the journal's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalEvent {
    Started,
    Planned,
    BackupWritten,
    WriteBegin,
    Verified,
    Failed,
    BatchBegin,
    BatchDone,
    CleanupStarted,
    DeleteBegin,
    DeleteDone,
    CleanupFinished,
    RollbackStarted,
    Undone,
    UndoFailed,
    RolledBack,
    RollbackPart,
    Finished,
    Resumed,
    Replanned,
    VerifyRun,
    SourceDeleted,
    SourceDeleteFailed,
}

impl JournalEvent {
    /// The journal's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalEvent::Started => "started",
            JournalEvent::Planned => "planned",
            JournalEvent::BackupWritten => "backup_written",
            JournalEvent::WriteBegin => "write_begin",
            JournalEvent::Verified => "verified",
            JournalEvent::Failed => "failed",
            JournalEvent::BatchBegin => "batch_begin",
            JournalEvent::BatchDone => "batch_done",
            JournalEvent::CleanupStarted => "cleanup_started",
            JournalEvent::DeleteBegin => "delete_begin",
            JournalEvent::DeleteDone => "delete_done",
            JournalEvent::CleanupFinished => "cleanup_finished",
            JournalEvent::RollbackStarted => "rollback_started",
            JournalEvent::Undone => "undone",
            JournalEvent::UndoFailed => "undo_failed",
            JournalEvent::RolledBack => "rolled_back",
            JournalEvent::RollbackPart => "rollback_part",
            JournalEvent::Finished => "finished",
            JournalEvent::Resumed => "resumed",
            JournalEvent::Replanned => "replanned",
            JournalEvent::VerifyRun => "verify_run",
            JournalEvent::SourceDeleted => "source_deleted",
            JournalEvent::SourceDeleteFailed => "source_delete_failed",
        }
    }
}

impl std::fmt::Display for JournalEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Record {
    pub fn event(&self) -> JournalEvent {
        match self {
            Record::Started { .. } => JournalEvent::Started,
            Record::Planned { .. } => JournalEvent::Planned,
            Record::BackupWritten { .. } => JournalEvent::BackupWritten,
            Record::WriteBegin { .. } => JournalEvent::WriteBegin,
            Record::Verified { .. } => JournalEvent::Verified,
            Record::Failed { .. } => JournalEvent::Failed,
            Record::BatchBegin { .. } => JournalEvent::BatchBegin,
            Record::BatchDone { .. } => JournalEvent::BatchDone,
            Record::CleanupStarted => JournalEvent::CleanupStarted,
            Record::DeleteBegin { .. } => JournalEvent::DeleteBegin,
            Record::DeleteDone { .. } => JournalEvent::DeleteDone,
            Record::CleanupFinished { .. } => JournalEvent::CleanupFinished,
            Record::RollbackStarted { .. } => JournalEvent::RollbackStarted,
            Record::Undone { .. } => JournalEvent::Undone,
            Record::UndoFailed { .. } => JournalEvent::UndoFailed,
            Record::RolledBack { .. } => JournalEvent::RolledBack,
            Record::RollbackPart { .. } => JournalEvent::RollbackPart,
            Record::Finished { .. } => JournalEvent::Finished,
            Record::Resumed => JournalEvent::Resumed,
            Record::Replanned { .. } => JournalEvent::Replanned,
            Record::VerifyRun { .. } => JournalEvent::VerifyRun,
            Record::SourceDeleted { .. } => JournalEvent::SourceDeleted,
            Record::SourceDeleteFailed { .. } => JournalEvent::SourceDeleteFailed,
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    pub at: String,
    #[serde(flatten)]
    pub record: Record,
}

/// The `planned` record as written (`seq`, `at`, `event` then the
/// fields), parsed straight from the text: [`Line`]'s derived parse (a
/// flattened, internally tagged record) first buffers the whole record as
/// a tree of `serde` content, for a 100,000-item plan several times its
/// text (issue #26: the wizard's peak at verify and cleanup).
#[derive(Deserialize)]
struct PlannedLine {
    seq: u64,
    at: String,
    #[allow(dead_code)] // Parsed only to refuse any other record.
    event: PlannedTag,
    #[serde(deserialize_with = "planned_items_sized")]
    items: Vec<PlannedItem>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    unreadable: usize,
}

thread_local! {
    /// How many items the `planned` line being parsed holds (counted in
    /// its text by [`parse_line`]).
    static PLANNED_ITEMS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A plan's items into a vector of their count: grown by doubling while
/// parsed, a 100,000-item plan's vector was up to twice its size, and a
/// growth step held the old and the new one at once (a verify's and a
/// cleanup's peak, with the line's text beside them).
fn planned_items_sized<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<PlannedItem>, D::Error> {
    struct Items;
    impl<'de> serde::de::Visitor<'de> for Items {
        type Value = Vec<PlannedItem>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of planned items")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(PLANNED_ITEMS.with(|c| c.take()));
            while let Some(item) = seq.next_element()? {
                v.push(item);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Items)
}

/// The only `event` a [`PlannedLine`] takes.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PlannedTag {
    Planned,
}

/// How many items a `planned` line holds, counted in its text before it
/// is parsed. Each item starts `{"id":` (no JSON string holds `{"`: its
/// quotes are escaped); bounded by the text's size (the smallest item,
/// `{"id":"","action":"copy"},`, is 26 bytes), whatever a damaged line
/// holds.
fn planned_capacity(text: &str) -> usize {
    text.matches("{\"id\":").count().min(text.len() / 24)
}

/// One journal line parsed: a `planned` record directly (see
/// [`PlannedLine`]), any other (or a `planned` one it cannot read) by the
/// derived parse, whose errors are the ones reported.
pub(crate) fn parse_line(text: &str) -> serde_json::Result<Line> {
    // The tag is near the start of a line this version wrote.
    let head = &text.as_bytes()[..text.len().min(256)];
    let tag = b"\"event\":\"planned\"";
    let planned = head.windows(tag.len()).any(|w| w == tag);
    if planned {
        PLANNED_ITEMS.with(|c| c.set(planned_capacity(text)));
    }
    if planned && let Ok(mut p) = serde_json::from_str::<PlannedLine>(text) {
        // Sized by the count above; a damaged line's overcount is not kept
        // for as long as the state lives.
        p.items.shrink_to_fit();
        return Ok(Line {
            seq: p.seq,
            at: p.at,
            record: Record::Planned {
                items: p.items,
                warnings: p.warnings,
                unreadable: p.unreadable,
            },
        });
    }
    serde_json::from_str(text)
}

/// An open journal, appending, with the state its records describe.
pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
    state: Option<State>,
}

impl Journal {
    /// Open (or create) the journal in a migration folder, continuing its
    /// sequence numbers.
    pub fn open(dir: &Path) -> Result<Journal, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let id = MigrationId(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        // Folded record by record as they are parsed (never all held). A
        // journal that does not start with `started` still takes records;
        // `state()` says what is wrong with it.
        let mut last_seq = None;
        let state = match State::fold_journal(&id, dir, |l| last_seq = Some(l.seq)) {
            Ok(st) => st.and_then(|st| st.ok()),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let next_seq = last_seq.map_or(1, |s| s + 1);
        let file = crate::engine::jsonl::open_for_append(&path)?;
        Ok(Journal {
            file,
            path,
            next_seq,
            state,
        })
    }

    /// The migration as its records so far describe it (kept in memory).
    pub fn state(&self) -> Result<&State, StoreError> {
        self.state.as_ref().ok_or_else(|| {
            StoreError::parse(
                self.path.display().to_string(),
                "the journal has no `started` record",
            )
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record and fsync it.
    pub fn append(&mut self, record: Record) -> Result<(), StoreError> {
        let line = Line {
            seq: self.next_seq,
            at: now_rfc3339(),
            record,
        };
        // The line, fsynced; with `CREDSHIFT_CRASH_AT` the process may
        // abort right after it (the in-memory state no longer matters).
        super::jsonl::append(&mut self.file, &self.path, &line)?;
        self.next_seq += 1;
        match &mut self.state {
            Some(st) => st.apply_owned(line),
            None => {
                if matches!(line.record, Record::Started { .. }) {
                    let dir = self
                        .path
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    let id = MigrationId(
                        dir.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    );
                    self.state = State::from_records(id, dir, std::slice::from_ref(&line)).ok();
                }
            }
        }
        Ok(())
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Read a journal. A torn last line (a crash mid-write) is ignored; a bad
/// line before the end is an error naming `path:line`.
pub fn read_lines(path: &Path) -> Result<Vec<Line>, StoreError> {
    super::jsonl::read_jsonl(path, "a journal record")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journals written by the code before the journal's strings became
    /// enums (main at d0ffef4: two real runs, paths renamed, plus the
    /// record kinds those runs do not produce, in the same format).
    const OLD_JOURNALS: [&str; 3] = [
        include_str!("../../tests/fixtures/journal-main-d0ffef4/rollback-after-cleanup.jsonl"),
        include_str!("../../tests/fixtures/journal-main-d0ffef4/crash-resume-rollback.jsonl"),
        include_str!("../../tests/fixtures/journal-main-d0ffef4/other-records.jsonl"),
    ];

    #[test]
    fn a_planned_line_parses_directly_as_the_derived_parse_does() {
        let line = Line {
            seq: 3,
            at: "2026-12-06T16:00:00Z".into(),
            record: Record::Planned {
                items: vec![PlannedItem {
                    id: CredentialId::new("env", "A_KEY"),
                    action: PlannedAction::Copy,
                    fp: Some("ab".repeat(16).parse().unwrap()),
                    mfp: None,
                    target_fp: Some("not hex".parse().unwrap()),
                }],
                warnings: vec!["w".into()],
                unreadable: 2,
            },
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with("{\"seq\":3,\"at\":"), "{text}");
        assert_eq!(parse_line(&text).unwrap(), line);
        // ... by the direct path (the derived one would give the same).
        assert!(serde_json::from_str::<PlannedLine>(&text).is_ok());
        let started = r#"{"seq":1,"at":"x","event":"started","items":[]}"#;
        assert!(serde_json::from_str::<PlannedLine>(started).is_err());
        // Every record of the old journals reads the same both ways.
        let mut planned = 0;
        for l in OLD_JOURNALS.iter().flat_map(|j| j.lines()) {
            let derived: Line = serde_json::from_str(l).unwrap();
            planned += usize::from(matches!(derived.record, Record::Planned { .. }));
            assert_eq!(parse_line(l).unwrap(), derived, "{l}");
        }
        assert!(planned >= 2, "the fixtures hold planned records");
        // A `planned` line the direct parse cannot read goes the derived
        // way, with its error.
        assert!(parse_line("{\"seq\":1,\"at\":\"x\",\"event\":\"planned\"}").is_err());
    }

    /// Issue #26: a plan's items are parsed into a vector of their count
    /// (grown by doubling, a 100,000-item plan's was up to twice its size,
    /// the old and new buffers held at once at each step).
    #[test]
    fn a_planned_line_parses_into_a_vector_of_its_count() {
        for n in [0usize, 1, 3, 1000, 1025] {
            let items: Vec<PlannedItem> = (0..n)
                .map(|i| PlannedItem {
                    id: CredentialId::new("env", format!("K{i:05}")),
                    action: PlannedAction::Copy,
                    fp: Some("ab".repeat(16).parse().unwrap()),
                    mfp: None,
                    target_fp: None,
                })
                .collect();
            let line = Line {
                seq: 2,
                at: "2026-12-06T16:00:00Z".into(),
                record: Record::Planned {
                    items,
                    warnings: vec!["{\"id\": in a warning".into()],
                    unreadable: 0,
                },
            };
            let text = serde_json::to_string(&line).unwrap();
            // The count from the text: every item, not the warning's
            // escaped `{\"id\":` (audit10 L2).
            assert_eq!(planned_capacity(&text), n, "{text:.300}");
            // A damaged line of nothing but item heads: bounded by its size.
            let heads = "{\"id\":".repeat(n);
            assert_eq!(planned_capacity(&heads), heads.len() / 24);
            PLANNED_ITEMS.with(|c| c.set(0));
            let p: PlannedLine = serde_json::from_str(&text).unwrap();
            // Without the count from the text: grown as it goes.
            assert_eq!(p.items.len(), n);
            PLANNED_ITEMS.with(|c| c.set(n));
            let p: PlannedLine = serde_json::from_str(&text).unwrap();
            assert_eq!((p.items.len(), p.items.capacity()), (n, n));
            match parse_line(&text).unwrap().record {
                Record::Planned { items, .. } => {
                    assert_eq!((items.len(), items.capacity()), (n, n));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn journals_written_before_the_enums_read_back_and_serialise_byte_for_byte() {
        let mut actions = std::collections::BTreeSet::new();
        let mut hows = std::collections::BTreeSet::new();
        let mut events = std::collections::BTreeSet::new();
        for text in OLD_JOURNALS {
            for raw in text.lines() {
                let line: Line = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
                assert_eq!(serde_json::to_string(&line).unwrap(), raw);
                let tag: serde_json::Value = serde_json::from_str(raw).unwrap();
                assert_eq!(
                    serde_json::to_value(line.record.event()).unwrap(),
                    tag["event"]
                );
                assert_eq!(line.record.event().as_str(), tag["event"]);
                events.insert(line.record.event().as_str());
                match &line.record {
                    Record::Planned { items, .. } | Record::Replanned { items } => {
                        for i in items {
                            assert_eq!(serde_json::to_value(i.action).unwrap(), i.action.as_str());
                            actions.insert(i.action.as_str());
                        }
                    }
                    Record::Undone { how, .. } => {
                        assert_eq!(serde_json::to_value(how).unwrap(), how.as_str());
                        hows.insert(how.as_str());
                    }
                    _ => {}
                }
            }
        }
        let want_actions = [
            "conflict",
            "copy",
            "invalid",
            "overwrite",
            "skip_identical",
            "too_long",
        ];
        assert_eq!(actions.into_iter().collect::<Vec<_>>(), want_actions);
        let want_hows = [
            "absent",
            "already_restored",
            "left_changed",
            "removed",
            "restored",
            "source_present",
            "source_restored",
        ];
        assert_eq!(hows.into_iter().collect::<Vec<_>>(), want_hows);
        assert!(events.len() >= 20, "{events:?}");
    }

    #[test]
    fn a_planned_action_writes_only_for_copy_and_overwrite() {
        for (a, writes) in [
            (Action::Copy, true),
            (Action::Overwrite, true),
            (Action::SkipIdentical, false),
            (Action::Conflict, false),
            (Action::Invalid { reason: "x".into() }, false),
            (Action::TooLong { limit: 1, len: 2 }, false),
        ] {
            assert_eq!(PlannedAction::from(&a).writes(), writes, "{a:?}");
            assert_eq!(a.writes(), writes, "{a:?}");
        }
    }

    #[test]
    fn records_round_trip_and_continue_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let id = CredentialId::new("openai", "api_key");
        j.append(Record::WriteBegin { id: id.clone() }).unwrap();
        j.append(Record::Verified { id: id.clone() }).unwrap();
        drop(j);
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(Record::Resumed).unwrap();
        let lines = read_lines(&dir.path().join(JOURNAL_FILE)).unwrap();
        let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(lines[1].record, Record::Verified { id });
        assert_eq!(crate::fsutil::mode_of(&dir.path().join(JOURNAL_FILE)), Some(0o600));
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_bad_middle_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        let good = r#"{"seq":1,"at":"t","event":"resumed"}"#;
        std::fs::write(&p, format!("{good}\n{{\"seq\":2,\"at")).unwrap();
        assert_eq!(read_lines(&p).unwrap().len(), 1);
        std::fs::write(&p, format!("{good}\ngarbage\n{good}\n")).unwrap();
        let e = read_lines(&p).unwrap_err().to_string();
        assert!(e.contains("journal.jsonl:2"), "{e}");
    }
}
