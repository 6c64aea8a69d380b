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
//! `CREDSHIFT_CRASH_AT=K` (a documented test aid; `K` a decimal number
//! from 1) aborts the process right after the K-th record this process
//! wrote, like a power cut. Any other value is ignored with a message.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::credential::CredentialId;
use crate::engine::state::State;
use crate::engine::types::{ConflictPolicy, Failure, MigrationId, MigrationStatus};
use crate::error::StoreError;
use crate::fsutil;
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

/// What the plan decided for one item, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedItem {
    pub id: CredentialId,
    /// `copy`, `overwrite`, `skip_identical`, `conflict`, `invalid`, `too_long`.
    pub action: String,
    /// Keyed fingerprint of the source value (what gets written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    /// Keyed fingerprint of the source's kind and metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfp: Option<String>,
    /// Keyed fingerprint of the target value before the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_fp: Option<String>,
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
    /// One item put back: `removed`, `restored`, `absent`, `already_restored`,
    /// `source_restored`.
    Undone {
        id: CredentialId,
        how: String,
    },
    UndoFailed {
        id: CredentialId,
        error: String,
    },
    RolledBack {
        complete: bool,
    },
    /// A partial rollback the user asked for (`rollback --only GLOB`):
    /// these ids are undone next (one `undone` each); the others stay
    /// migrated and the migration keeps its status.
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

impl Record {
    pub fn event(&self) -> &'static str {
        match self {
            Record::Started { .. } => "started",
            Record::Planned { .. } => "planned",
            Record::BackupWritten { .. } => "backup_written",
            Record::WriteBegin { .. } => "write_begin",
            Record::Verified { .. } => "verified",
            Record::Failed { .. } => "failed",
            Record::BatchBegin { .. } => "batch_begin",
            Record::BatchDone { .. } => "batch_done",
            Record::CleanupStarted => "cleanup_started",
            Record::DeleteBegin { .. } => "delete_begin",
            Record::DeleteDone { .. } => "delete_done",
            Record::CleanupFinished { .. } => "cleanup_finished",
            Record::RollbackStarted { .. } => "rollback_started",
            Record::Undone { .. } => "undone",
            Record::UndoFailed { .. } => "undo_failed",
            Record::RolledBack { .. } => "rolled_back",
            Record::RollbackPart { .. } => "rollback_part",
            Record::Finished { .. } => "finished",
            Record::Resumed => "resumed",
            Record::Replanned { .. } => "replanned",
            Record::VerifyRun { .. } => "verify_run",
            Record::SourceDeleted { .. } => "source_deleted",
            Record::SourceDeleteFailed { .. } => "source_delete_failed",
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

/// An open journal, appending, with the state its records describe.
pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
    state: Option<State>,
}

/// Records written by this process, for `CREDSHIFT_CRASH_AT`.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// `CREDSHIFT_CRASH_AT`: exactly a decimal number from 1 (no sign, no
/// spaces). Anything else is ignored with a message.
pub fn parse_crash_at(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|n| *n > 0)
}

/// The crash point, read once; warns on stderr while active.
pub fn crash_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| {
        let v = std::env::var_os("CREDSHIFT_CRASH_AT")?;
        let v = v.to_string_lossy();
        match parse_crash_at(&v) {
            Some(k) => {
                eprintln!(
                    "credshift: warning: CREDSHIFT_CRASH_AT={k} is set (a test aid): the process \
                     aborts right after its journal record {k}"
                );
                Some(k)
            }
            None => {
                eprintln!(
                    "credshift: warning: CREDSHIFT_CRASH_AT is set to {v:?}, which is not a \
                     record number (1, 2, ...); ignored"
                );
                None
            }
        }
    })
}

impl Journal {
    /// Open (or create) the journal in a migration folder, continuing its
    /// sequence numbers.
    pub fn open(dir: &Path) -> Result<Journal, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let lines = match read_lines(&path) {
            Ok(lines) => lines,
            Err(StoreError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let next_seq = lines.last().map_or(1, |l| l.seq + 1);
        let state = if lines.is_empty() {
            None
        } else {
            let id = MigrationId(
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            // A journal that does not start with `started` still takes
            // records; `state()` says what is wrong with it.
            State::from_records(id, dir.to_path_buf(), &lines).ok()
        };
        let file = fsutil::open_append_private(&path)?;
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
        let mut text = serde_json::to_string(&line)
            .map_err(|e| StoreError::json(self.path.display().to_string(), &e))?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.next_seq += 1;
        match &mut self.state {
            Some(st) => st.apply(&line),
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
        let n = WRITTEN.fetch_add(1, Ordering::SeqCst) + 1;
        if crash_at() == Some(n) {
            std::process::abort();
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
    let text = fsutil::read_text(path)?;
    let raw: Vec<&str> = text.lines().collect();
    let mut lines = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(l) {
            Ok(line) => lines.push(line),
            Err(_) if i + 1 == raw.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(StoreError::Parse {
                    location: path.display().to_string(),
                    line: Some(i + 1),
                    column: Some(e.column()),
                    message: "not a journal record".into(),
                });
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(fsutil::mode_of(&dir.path().join(JOURNAL_FILE)), Some(0o600));
    }

    #[test]
    fn the_crash_point_is_an_exact_record_number() {
        assert_eq!(parse_crash_at("1"), Some(1));
        assert_eq!(parse_crash_at("42"), Some(42));
        for bad in [
            "",
            "0",
            "-1",
            "+3",
            " 3",
            "3 ",
            "3x",
            "x",
            "1.5",
            "99999999999999999999",
        ] {
            assert_eq!(parse_crash_at(bad), None, "{bad:?}");
        }
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
