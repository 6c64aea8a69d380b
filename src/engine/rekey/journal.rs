//! A rekey's journal: `STATE/migrations/<id>/rekey.jsonl`, JSON lines
//! fsynced one by one, beside (never inside) a migration's `journal.jsonl`,
//! so versions that know no rekey skip the folder and go on working. Its
//! records are named `rekey_*`, apart from a migration's.
//!
//! It holds locations and fingerprints (SHA-256 of ciphertexts as stored,
//! which reveal nothing of the values), never a value or a key. Before a
//! batch is written, `rekey_batch_begin` names each cell with the
//! fingerprints of its old and its new ciphertext: after a crash at any
//! point, reading a cell tells which of the two keys it is under, and
//! whether the application changed it (neither fingerprint).
//! `CREDSHIFT_CRASH_AT=K` aborts right after the K-th record, as for
//! migrations.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::journal::now_rfc3339;
use crate::engine::types::{MigrationId, MigrationStatus};
use crate::error::StoreError;
use crate::store::StoreIdentity;
use crate::store::rekey::{CellRef, RekeyFormat};

pub const REKEY_JOURNAL_FILE: &str = "rekey.jsonl";
pub const REKEY_BACKUP_FILE: &str = "rekey-backup.enc";
pub const REKEY_BACKUP_KEY: &str = "rekey-backup.key";

/// The fingerprint of a ciphertext as stored.
pub fn fp(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..16])
}

/// A cell the plan will rekey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCell {
    pub at: CellRef,
    /// Index of the old key it is under (see `old_keys`).
    pub key: usize,
    pub old_fp: String,
}

/// A cell left alone, and why (no content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellNote {
    pub at: CellRef,
    pub reason: String,
}

/// A cell about to be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BegunCell {
    pub at: CellRef,
    pub old_fp: String,
    pub new_fp: String,
}

/// What kind of new key a rekey was given (never the key), so `resume`
/// asks for the same kind and knows a count-only rekey without reading
/// any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewKeyKind {
    /// agent-prompttrain's or Laravel's key text.
    Text,
    /// A new credshift passphrase.
    Passphrase,
    /// A 32-byte credshift key file.
    KeyFile,
    /// credshift's key kept, only the KDF count changed.
    SamePassphrase,
}

/// Why a rollback of a rekey began, so a later report (after a crash and
/// a `rollback` that completes it) still says what the user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackReason {
    /// `credshift rollback`.
    Requested,
    /// A cancelled `rekey` (Ctrl-C, SIGTERM, the wizard's cancel).
    CancelledRekey,
    /// A cancelled `resume`: the whole rekey, the resumed run's part too.
    CancelledResume,
}

impl RollbackReason {
    /// The report's `rollback_reason` once the rollback is complete.
    pub fn done_text(self) -> &'static str {
        match self {
            RollbackReason::Requested => "rolled back on request",
            RollbackReason::CancelledRekey => "cancelled: what was rekeyed was put back",
            RollbackReason::CancelledResume => {
                "cancelled: every value this rekey wrote, before the resume and during it, was \
                 put back under the old key"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RekeyRecord {
    RekeyStarted {
        migration_id: MigrationId,
        store: String,
        format: RekeyFormat,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<Box<StoreIdentity>>,
        /// Names of the old keys (`APP_KEY`, `APP_PREVIOUS_KEYS #1`, ...).
        old_keys: Vec<String>,
        /// Where the new key came from (a path or a variable name).
        new_key: String,
        user: String,
        /// Absent in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_key_kind: Option<NewKeyKind>,
        /// credshift's PBKDF2 count for the new key (its own stores only):
        /// a resume seals at the count the rekey was started with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kdf_iterations: Option<u32>,
    },
    RekeyPlanned {
        cells: Vec<PlannedCell>,
        /// Cells already under the new key.
        #[serde(default)]
        already_new: usize,
        /// Cells under none of the keys: never touched.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        untouched: Vec<CellNote>,
    },
    RekeyBackupWritten {
        path: PathBuf,
        cells: usize,
    },
    RekeyBatchBegin {
        cells: Vec<BegunCell>,
    },
    RekeyBatchDone {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rekeyed: Vec<CellRef>,
        /// Changed by the application since it was read: left alone.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changed: Vec<CellNote>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<CellNote>,
    },
    RekeyResumed,
    RekeyRollbackStarted {
        /// Why it began; absent in journals written before it was
        /// recorded (a rollback asked for, as every one was then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<RollbackReason>,
    },
    RekeyUndone {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restored: Vec<CellRef>,
        /// Cells that could not be put back (an error: not in the backup).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept: Vec<CellNote>,
        /// Cells the application changed or removed since the rekey: its
        /// values, left as they are; they do not keep a rollback open.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<CellNote>,
    },
    RekeyRolledBack {
        complete: bool,
    },
    RekeyVerifyRun {
        verified: usize,
        mismatched: usize,
    },
    RekeyFinished {
        status: MigrationStatus,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyLine {
    pub seq: u64,
    pub at: String,
    #[serde(flatten)]
    pub record: RekeyRecord,
}

/// An open rekey journal, appending, with its state in memory.
pub struct RekeyJournal {
    file: File,
    path: PathBuf,
    next_seq: u64,
    pub state: RekeyState,
}

impl RekeyJournal {
    /// Open (or create) the journal in `dir`.
    pub fn open(dir: &Path, id: &MigrationId) -> Result<RekeyJournal, StoreError> {
        let path = dir.join(REKEY_JOURNAL_FILE);
        let lines = match read_lines(&path) {
            Ok(l) => l,
            Err(StoreError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let next_seq = lines.last().map_or(1, |l| l.seq + 1);
        let mut state = RekeyState::empty(id.clone(), dir.to_path_buf());
        for l in &lines {
            state.apply(l);
        }
        state.lines = lines;
        let file = crate::engine::jsonl::open_for_append(&path)?;
        Ok(RekeyJournal {
            file,
            path,
            next_seq,
            state,
        })
    }

    pub fn append(&mut self, record: RekeyRecord) -> Result<(), StoreError> {
        let line = RekeyLine {
            seq: self.next_seq,
            at: now_rfc3339(),
            record,
        };
        crate::engine::jsonl::append(&mut self.file, &self.path, &line)?;
        self.next_seq += 1;
        self.state.apply(&line);
        self.state.lines.push(line);
        Ok(())
    }
}

/// Read a rekey journal; a torn last line (a crash mid-write) is ignored.
pub fn read_lines(path: &Path) -> Result<Vec<RekeyLine>, StoreError> {
    crate::engine::jsonl::read_jsonl(path, "a rekey journal record")
}

/// Whether a migration folder holds a rekey.
pub fn is_rekey(dir: &Path) -> bool {
    dir.join(REKEY_JOURNAL_FILE).is_file()
}

/// What a rekey's records say.
#[derive(Debug, Clone)]
pub struct RekeyState {
    pub id: MigrationId,
    pub dir: PathBuf,
    pub started_at: String,
    pub store: String,
    pub format: Option<RekeyFormat>,
    pub identity: Option<StoreIdentity>,
    pub old_keys: Vec<String>,
    pub new_key: String,
    pub new_key_kind: Option<NewKeyKind>,
    pub kdf_iterations: Option<u32>,
    pub planned: Option<Vec<PlannedCell>>,
    pub already_new: usize,
    pub untouched: Vec<CellNote>,
    pub backup: Option<PathBuf>,
    /// Every new fingerprint journaled for a cell (a resume may write a
    /// second new ciphertext), in order.
    pub begun: BTreeMap<CellRef, Vec<String>>,
    pub rekeyed: BTreeSet<CellRef>,
    pub changed: BTreeMap<CellRef, String>,
    pub failed: BTreeMap<CellRef, String>,
    pub restored: BTreeSet<CellRef>,
    pub kept: BTreeMap<CellRef, String>,
    /// Left alone by a rollback: the application's values since.
    pub left: BTreeMap<CellRef, String>,
    /// The rekey finished once (the application may run on the new key).
    pub completed_once: bool,
    pub rolling_back: bool,
    /// Why the first rollback began (a later one only completes it).
    pub rollback_reason: Option<RollbackReason>,
    pub rolled_back: Option<bool>,
    pub finished: Option<MigrationStatus>,
    pub lines: Vec<RekeyLine>,
}

impl RekeyState {
    fn empty(id: MigrationId, dir: PathBuf) -> Self {
        RekeyState {
            id,
            dir,
            started_at: String::new(),
            store: String::new(),
            format: None,
            identity: None,
            old_keys: Vec::new(),
            new_key: String::new(),
            new_key_kind: None,
            kdf_iterations: None,
            planned: None,
            already_new: 0,
            untouched: Vec::new(),
            backup: None,
            begun: BTreeMap::new(),
            rekeyed: BTreeSet::new(),
            changed: BTreeMap::new(),
            failed: BTreeMap::new(),
            restored: BTreeSet::new(),
            kept: BTreeMap::new(),
            left: BTreeMap::new(),
            completed_once: false,
            rolling_back: false,
            rollback_reason: None,
            rolled_back: None,
            finished: None,
            lines: Vec::new(),
        }
    }

    /// The state of the rekey in `dir`.
    pub fn load(dir: &Path, id: &MigrationId) -> Result<RekeyState, StoreError> {
        let lines = read_lines(&dir.join(REKEY_JOURNAL_FILE))?;
        let mut s = RekeyState::empty(id.clone(), dir.to_path_buf());
        for l in &lines {
            s.apply(l);
        }
        if s.format.is_none() {
            return Err(StoreError::parse(
                dir.join(REKEY_JOURNAL_FILE).display().to_string(),
                "the rekey journal has no rekey_started record",
            ));
        }
        s.lines = lines;
        Ok(s)
    }

    pub fn apply(&mut self, l: &RekeyLine) {
        match &l.record {
            RekeyRecord::RekeyStarted {
                store,
                format,
                identity,
                old_keys,
                new_key,
                new_key_kind,
                kdf_iterations,
                ..
            } => {
                self.started_at = l.at.clone();
                self.store = store.clone();
                self.format = Some(*format);
                self.identity = identity.as_deref().cloned();
                self.old_keys = old_keys.clone();
                self.new_key = new_key.clone();
                self.new_key_kind = *new_key_kind;
                self.kdf_iterations = *kdf_iterations;
            }
            RekeyRecord::RekeyPlanned {
                cells,
                already_new,
                untouched,
            } => {
                self.planned = Some(cells.clone());
                self.already_new = *already_new;
                self.untouched = untouched.clone();
            }
            RekeyRecord::RekeyBackupWritten { path, .. } => self.backup = Some(path.clone()),
            RekeyRecord::RekeyBatchBegin { cells } => {
                for c in cells {
                    self.begun
                        .entry(c.at.clone())
                        .or_default()
                        .push(c.new_fp.clone());
                }
            }
            RekeyRecord::RekeyBatchDone {
                rekeyed,
                changed,
                failed,
            } => {
                for at in rekeyed {
                    self.failed.remove(at);
                    self.changed.remove(at);
                    self.rekeyed.insert(at.clone());
                }
                for n in changed {
                    self.changed.insert(n.at.clone(), n.reason.clone());
                }
                for n in failed {
                    self.failed.insert(n.at.clone(), n.reason.clone());
                }
            }
            RekeyRecord::RekeyResumed => self.finished = None,
            RekeyRecord::RekeyRollbackStarted { reason } => {
                if !self.rolling_back {
                    self.rollback_reason = Some(reason.unwrap_or(RollbackReason::Requested));
                }
                self.rolling_back = true;
                self.rolled_back = Some(false);
            }
            RekeyRecord::RekeyUndone {
                restored,
                kept,
                left,
            } => {
                for at in restored {
                    self.kept.remove(at);
                    self.left.remove(at);
                    self.restored.insert(at.clone());
                }
                for n in kept {
                    self.kept.insert(n.at.clone(), n.reason.clone());
                }
                for n in left {
                    self.kept.remove(&n.at);
                    self.left.insert(n.at.clone(), n.reason.clone());
                }
            }
            RekeyRecord::RekeyRolledBack { complete } => self.rolled_back = Some(*complete),
            RekeyRecord::RekeyVerifyRun { .. } => {}
            RekeyRecord::RekeyFinished { status } => {
                self.completed_once |= *status == MigrationStatus::Completed;
                self.finished = Some(*status);
            }
        }
    }

    pub fn status(&self) -> MigrationStatus {
        match self.rolled_back {
            Some(true) => MigrationStatus::RolledBack,
            Some(false) => MigrationStatus::Interrupted,
            None => self.finished.unwrap_or(MigrationStatus::Interrupted),
        }
    }

    /// Cells under the new key now, as far as the journal knows.
    pub fn rekeyed_now(&self) -> usize {
        self.rekeyed.difference(&self.restored).count()
    }
}
