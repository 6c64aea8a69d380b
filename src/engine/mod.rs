//! The migration engine behind both the wizard and the CLI. Never imports
//! ratatui or crossterm.
//!
//! # Steps (shared by the wizard and the CLI)
//!
//! | step | function |
//! | --- | --- |
//! | assess | [`assess::probe_spec`] |
//! | inventory | [`inventory::inventory`] |
//! | plan / dry run | [`plan()`]: one [`Action`] per source item, counts, estimate; writes nothing ([`plan::save_plan`] optionally) |
//! | consent | [`prepare`] -> [`Prepared`]: the plan shown to the user, with the values and fingerprints it was made from |
//! | execute | [`start_prepared`] executes that very [`Prepared`] -> [`MigrationHandle`] (`events`, `cancel()`, `join()`); [`follow`] blocks (CLI); [`start`] plans on the worker |
//! | verify | [`verify`] |
//! | cleanup | [`cleanup`] (only verified items; the caller asks for consent) |
//! | support | [`history`], [`detail`], [`resume`], [`rollback`], [`backup()`], [`restore`] |
//!
//! # What a migration does
//!
//! [`start`] opens both stores and goes through the session preamble
//! ([`session`], shared by every operation: one store on both ends is
//! refused by identity, then each store's own lock, shared to read and
//! exclusive to write, and the state-dir locks; a held lock fails with
//! [`EngineError::Locked`] naming the holder), creates `STATE/migrations/<id>/` (0700; ids sort by start time),
//! sets up the backup key (the passphrase in use, else a generated
//! `backup.key`, 0600) and journals `started`. The worker thread then:
//!
//! 1. with a [`Prepared`] migration, reads both stores again and stops
//!    before writing when a planned item changed at either end (naming
//!    them); without one, plans under the locks. It journals `planned` with
//!    keyed fingerprints ([`fingerprint`]: HMAC-SHA256 under a key derived
//!    from the backup key and the migration id, never stored);
//! 2. writes the backup and fsyncs it: `backup.enc` holds every source item,
//!    `target-before.enc` every target item an overwrite may replace;
//! 3. moves the items in batches of 1, 2, 4, ... up to [`MAX_BATCH`], or,
//!    for a store that rewrites a whole file per batch, growing with the
//!    file ([`BatchRamp`]):
//!    journal `batch_begin` (the ids), `write_many`, `read_many`, compare in
//!    constant time (value; kind and metadata when the target keeps them;
//!    `verify_hashed` for hash-only stores), journal `batch_done`;
//! 4. rolls back on its own when [`exceeds_failure_limit`] (more than half
//!    of the writes attempted failed, once min(4, total) were attempted,
//!    applied item by item), when the target becomes unavailable, or on
//!    cancel: everything written is removed, overwritten values restored,
//!    `rolled_back` journaled and [`Report::rolled_back`] set;
//! 5. with `delete_source`, cleanup (`cleanup_started` ... `cleanup_finished`)
//!    deletes from the source the verified items, re-checked by fingerprint
//!    at both ends (numbered entries such as client keys in descending
//!    index order), journaling each batch before and after, then reads the
//!    source again: an item still there is "migrated, source still present";
//! 6. journals `finished`: a migration is `completed` only after its cleanup.
//!
//! The source is never written before step 5. Journal records are fsynced
//! one by one and the open journal keeps the state in memory (the report
//! comes from it); `CREDSHIFT_CRASH_AT=K` aborts right after the K-th.
//! After a crash, [`history`] shows the migration as `interrupted`;
//! [`resume`] finishes it (including an interrupted cleanup), planning
//! again first: a target value that appeared or changed since the plan is
//! a conflict as in a fresh run (journaled as `replanned`; backed up first
//! under `overwrite`), and the more-than-half rule counts the whole
//! migration (`src/engine/replan.rs`); and
//! [`rollback`] undoes it, both idempotent. Every changing action appends
//! a line to `STATE/audit.jsonl` ([`audit`]).
//!
//! Nothing here ever holds a secret in an error, a journal record, the plan
//! file or the audit log: ids, actions, counts, masked previews and keyed
//! fingerprints only.

pub mod assess;
pub mod audit;
pub mod backup_file;
pub mod error;
pub mod execute;
pub mod fingerprint;
pub mod inventory;
pub mod item_loops;
pub mod items;
pub mod journal;
pub(crate) mod journal_ids;
pub mod jsonl;
pub mod plan;
pub mod recovery;
pub mod rekey;
pub(crate) mod replan;
pub mod session;
pub mod state;
pub mod types;

#[cfg(test)]
mod tests;

pub use error::{EngineError, Result};
pub use execute::{
    BatchRamp, Control, MAX_BATCH, MIN_ATTEMPTS, MigrationHandle, ROLLBACK_THRESHOLD,
    WHOLE_FILE_BATCH_BUDGET, batch_sizes, exceeds_failure_limit, follow, prepare, run, start,
    start_prepared, start_with_stores,
};
pub use item_loops::delete_order;
pub use plan::{Prepared, plan};
pub use recovery::{
    RecoveryOp, backup, cleanup, detail, history, restore, restore_plan, restore_with, resume,
    resume_with, rollback, rollback_only, rollback_with, start_partial_rollback, start_recovery,
    start_restore, status_word, verify, verify_with,
};
pub use types::*;
