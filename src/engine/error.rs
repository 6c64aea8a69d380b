//! Engine errors: a store error, or a reason the engine refused to act.
//! Like every error here, they name stores, files and ids, never a secret.

use crate::credential::CredentialId;
use crate::engine::plan::ChangedSide;
use crate::error::StoreError;

/// The first ten changed items, `id (side)`, then how many more.
fn changed_names(changed: &[(CredentialId, ChangedSide)]) -> String {
    let names: Vec<String> = changed
        .iter()
        .take(10)
        .map(|(id, side)| format!("{id} ({side})"))
        .collect();
    match changed.len() {
        n if n > 10 => format!("{} and {} more", names.join(", "), n - 10),
        _ => names.join(", "),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),

    /// Another migration holds the store's lock.
    #[error("{store} is locked by another migration ({holder}); wait for it to finish")]
    Locked { store: String, holder: String },

    /// Both ends are one store (whatever their specs' spelling): refused
    /// before anything is read or written.
    #[error(
        "refusing to migrate {from} to {to}: they are the same store (the same file or \
         location, whatever the scheme or link used to name it); nothing was read or written"
    )]
    SameStore { from: String, to: String },

    /// What recovery found where the journal's store was is another store
    /// (a relative path from another directory, a database restored
    /// elsewhere, a file replaced by a link).
    #[error(
        "the {role} of migration {id}, {spec}, is not the store the migration used: the \
         journal recorded {expected}, {spec} is now {found}; nothing was changed"
    )]
    StoreChanged {
        id: String,
        role: &'static str,
        spec: String,
        expected: String,
        found: String,
    },

    /// A store changed between the plan the user consented to and the
    /// locks: nothing was written; planning again shows what changed.
    #[error(
        "{} planned item{} changed since the plan: {}; nothing was written, plan again",
        changed.len(),
        if changed.len() == 1 { "" } else { "s" },
        changed_names(changed)
    )]
    ChangedSincePlan {
        changed: Vec<(CredentialId, ChangedSide)>,
    },

    /// The migration's backup is sealed with the passphrase used for it,
    /// and none was given: asking for it and trying again works.
    #[error(
        "migration {id}'s backup is protected by the passphrase used for it; give it with \
         --passphrase-file, --passphrase-env or CREDSHIFT_PASSPHRASE"
    )]
    BackupNeedsPassphrase { id: String },

    /// The request cannot be carried out as asked (same store twice, a
    /// rolled-back migration to resume, a missing passphrase, ...).
    #[error("{0}")]
    Refused(String),

    #[error("no migration {id} in {dir}")]
    UnknownMigration { id: String, dir: String },

    /// The passphrase given does not open the migration's backup: it is
    /// not the one the migration ran with. Checked before anything is read
    /// or compared, so a typo never reads as "every value differs".
    #[error(
        "the passphrase given does not open migration {id}'s backup: it is not the one the \
         migration ran with; nothing was read or changed"
    )]
    WrongPassphrase { id: String },

    /// The worker thread died (a bug); the journal shows how far it got.
    #[error("the migration worker stopped unexpectedly; see `credshift history`")]
    WorkerPanicked,
}

impl EngineError {
    /// The CLI exit code this error means: 2 for refusals, 1 for failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Locked { .. }
            | EngineError::SameStore { .. }
            | EngineError::StoreChanged { .. }
            | EngineError::ChangedSincePlan { .. }
            | EngineError::BackupNeedsPassphrase { .. }
            | EngineError::Refused(_)
            | EngineError::UnknownMigration { .. }
            | EngineError::WrongPassphrase { .. } => 2,
            EngineError::Store(_) | EngineError::WorkerPanicked => 1,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
