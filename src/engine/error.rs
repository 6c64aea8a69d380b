//! Engine errors: a store error, or a reason the engine refused to act.
//! Like every error here, they name stores, files and ids, never a secret.

use crate::error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),

    /// Another migration holds the store's lock.
    #[error("{store} is locked by another migration ({holder}); wait for it to finish")]
    Locked { store: String, holder: String },

    /// The request cannot be carried out as asked (same store twice, a
    /// rolled-back migration to resume, a missing passphrase, ...).
    #[error("{0}")]
    Refused(String),

    #[error("no migration {id} in {dir}")]
    UnknownMigration { id: String, dir: String },

    /// The worker thread died (a bug); the journal shows how far it got.
    #[error("the migration worker stopped unexpectedly; see `credshift history`")]
    WorkerPanicked,
}

impl EngineError {
    /// The CLI exit code this error means: 2 for refusals, 1 for failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Locked { .. }
            | EngineError::Refused(_)
            | EngineError::UnknownMigration { .. } => 2,
            EngineError::Store(_) | EngineError::WorkerPanicked => 1,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
