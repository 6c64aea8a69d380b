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
//! | execute | [`start`] -> [`MigrationHandle`] (`events`, `cancel()`, `join()`); [`run`] blocks (CLI) |
//! | verify | [`verify`] |
//! | cleanup | [`cleanup`] (only verified items; the caller asks for consent) |
//! | support | [`history`], [`detail`], [`resume`], [`rollback`], [`backup()`], [`restore`] |
//!
//! # What a migration does
//!
//! [`start`] opens both stores, takes a lock per store location
//! ([`lock`]; a held lock fails with [`EngineError::Locked`] naming the
//! holder), creates `STATE/migrations/<id>/` (0700; ids sort by start time)
//! and journals `started`. The worker thread then:
//!
//! 1. plans (sorted ids; `plan.json` in the folder) and journals `planned`
//!    with keyed fingerprints ([`fingerprint`]: HMAC-SHA256 under a random
//!    per-migration key in `fingerprint.key`, 0600);
//! 2. writes the backup and fsyncs it: `backup.enc` holds every source item,
//!    `target-before.enc` every target item an overwrite may replace. The key
//!    is the passphrase in use, else a generated `backup.key` (0600);
//! 3. per item: journal `write_begin`, write, read back, compare in constant
//!    time (value; kind and metadata when the target keeps them), journal
//!    `verified` or `failed`;
//! 4. rolls back on its own when failed writes exceed 50 % of those
//!    attempted (checked once min(4, total) were attempted, and at the end),
//!    when the target becomes unavailable, or on cancel: everything written
//!    is removed, overwritten values restored, `rolled_back` journaled and
//!    [`Report::rolled_back`] set;
//! 5. with `delete_source`, deletes from the source the verified items
//!    (re-checked by fingerprint at both ends; numbered entries such as
//!    client keys in descending index order). A failed delete is reported
//!    as "migrated, source still present".
//!
//! The source is never written before step 5. Journal records are fsynced
//! one by one; `CREDSHIFT_CRASH_AT=K` aborts right after the K-th. After a
//! crash, [`history`] shows the migration as `interrupted`; [`resume`]
//! finishes it and [`rollback`] undoes it, both idempotent. Every changing
//! action appends a line to `STATE/audit.jsonl` ([`audit`]).
//!
//! Nothing here ever holds a secret in an error, a journal record, the plan
//! file or the audit log: ids, actions, counts, masked previews and keyed
//! fingerprints only.

pub mod assess;
pub mod audit;
pub mod backup;
pub mod error;
pub mod execute;
pub mod fingerprint;
pub mod inventory;
pub mod journal;
pub mod lock;
pub mod memstore;
pub mod plan;
pub mod recovery;
pub mod state;
pub mod types;

#[cfg(test)]
mod tests;

pub use error::{EngineError, Result};
pub use execute::{Control, MigrationHandle, delete_order, run, start, start_with_stores};
pub use plan::plan;
pub use recovery::{
    backup, cleanup, detail, history, restore, resume, resume_with, rollback, rollback_with,
    status_word, verify,
};
pub use types::*;
