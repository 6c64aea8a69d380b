//! Writes in two steps: staged (checked, the key checked against the
//! database, values encrypted: the slow part, outside any transaction), then
//! applied inside a transaction, one savepoint per account or train. A plain
//! write applies everything staged; a compared write
//! (`replace_if_unchanged`) applies only what it found unchanged.

use std::collections::BTreeMap;

use postgres::Transaction;

use crate::credential::Credential;
use crate::crypto::prompttrain::{self as fmt, FormatError};
use crate::error::{Result, StoreError};
use crate::store::Store;

use super::rows::{AccountWrites, apply_account, apply_train, fail_all};
use super::{Field, PromptTrainDb, Target, classify, parse_id};

/// One train's hash writes: (item index, slot, lowercase hex hash).
pub(super) type TrainWrites = Vec<(usize, usize, String)>;

/// Writes ready to apply.
pub(super) struct Staged {
    pub(super) by_account: BTreeMap<String, AccountWrites>,
    pub(super) by_train: BTreeMap<String, TrainWrites>,
    /// Every item that reached this step (a failed transaction fails them).
    pub(super) pending: Vec<usize>,
}

/// What one savepoint did.
pub(super) enum Applied {
    Done,
    /// Refused for a reason of the data (every item of the row fails with it).
    Refused(String),
    /// A database error that did not end the connection; `conflict`: a row
    /// another writer inserted meanwhile (unique violation).
    Failed { error: StoreError, conflict: bool },
}

impl PromptTrainDb {
    /// Check, key-check and encrypt `creds`; an item that fails gets its
    /// result in `results`. `None`: nothing is left to apply.
    pub(super) fn stage(
        &self,
        creds: &[Credential],
        results: &mut [Option<Result<()>>],
    ) -> Option<Staged> {
        let mut account_items: Vec<(usize, String, Field)> = Vec::new();
        let mut train_items: Vec<(usize, String, usize, String)> = Vec::new();
        for (i, c) in creds.iter().enumerate() {
            if let Some(reason) = self.check(c) {
                results[i] = Some(Err(StoreError::item(&c.id, reason)));
                continue;
            }
            match parse_id(&c.id) {
                Ok(Target::Account { account, field }) => account_items.push((i, account, field)),
                Ok(Target::ClientKey { train, index }) => {
                    train_items.push((i, train, index, fmt::hash_client_key(c.secret.expose())))
                }
                Ok(Target::ClientKeyHash { train, index }) => train_items.push((
                    i,
                    train,
                    index,
                    c.secret.expose().trim().to_ascii_lowercase(),
                )),
                Err(m) => results[i] = Some(Err(StoreError::item(&c.id, m))),
            }
        }
        let pending: Vec<usize> = account_items
            .iter()
            .map(|(i, ..)| *i)
            .chain(train_items.iter().map(|(i, ..)| *i))
            .collect();
        if pending.is_empty() {
            return None;
        }
        if let Err(e) = self.ensure_schema() {
            fail_all(results, creds, &pending, &e);
            return None;
        }

        // Encrypt (one PBKDF2 derivation each) in parallel, after checking
        // that the key is the one the database already uses.
        let mut encrypted: Vec<std::result::Result<String, FormatError>> = Vec::new();
        if !account_items.is_empty() {
            let key = match self.master() {
                Ok(k) => k,
                Err(e) => {
                    fail_all(results, creds, &pending, &e);
                    return None;
                }
            };
            match self.key_fits_database(key) {
                Ok(true) => {}
                Ok(false) => {
                    let e = StoreError::Crypto {
                        location: self.spec.to_string(),
                        message: format!(
                            "{} does not decrypt the values already in this database \
                             (wrong key?); nothing written",
                            fmt::KEY_ENV
                        ),
                    };
                    fail_all(results, creds, &pending, &e);
                    return None;
                }
                Err(e) => {
                    fail_all(results, creds, &pending, &e);
                    return None;
                }
            }
            let plain: Vec<&str> = account_items
                .iter()
                .map(|(i, ..)| creds[*i].secret.expose())
                .collect();
            encrypted = fmt::encrypt_many_cached(key, &plain, &self.keys);
        }

        let mut by_account: BTreeMap<String, AccountWrites> = BTreeMap::new();
        for ((i, account, field), enc) in account_items.into_iter().zip(encrypted) {
            match enc {
                Ok(v) => by_account.entry(account).or_default().push((i, field, v)),
                Err(e) => results[i] = Some(Err(StoreError::item(&creds[i].id, e.to_string()))),
            }
        }
        let mut by_train: BTreeMap<String, TrainWrites> = BTreeMap::new();
        for (i, train, index, hash) in train_items {
            by_train.entry(train).or_default().push((i, index, hash));
        }
        Some(Staged {
            by_account,
            by_train,
            pending,
        })
    }

    /// `f` inside a savepoint of `tx`, kept when it succeeds. `Err`: the
    /// connection is gone, so the whole transaction is.
    pub(super) fn in_savepoint(
        &self,
        tx: &mut Transaction<'_>,
        name: &str,
        f: impl FnOnce(
            &mut Transaction<'_>,
        ) -> std::result::Result<std::result::Result<(), String>, postgres::Error>,
    ) -> Result<Applied> {
        let db = |e: postgres::Error| classify(&self.spec, "write", &e);
        let mut sp = tx.savepoint(name).map_err(db)?;
        match f(&mut sp) {
            Ok(Ok(())) => {
                sp.commit().map_err(db)?;
                Ok(Applied::Done)
            }
            Ok(Err(m)) => {
                sp.rollback().map_err(db)?;
                Ok(Applied::Refused(m))
            }
            Err(e) => {
                let conflict = e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION);
                let error = db(e);
                if error.is_unavailable() {
                    return Err(error);
                }
                sp.rollback().map_err(db)?;
                Ok(Applied::Failed { error, conflict })
            }
        }
    }

    /// Record what a savepoint did for the items `idx`: done, or failed.
    pub(super) fn record(
        applied: Applied,
        idx: Vec<usize>,
        creds: &[Credential],
        results: &mut [Option<Result<()>>],
        done: &mut Vec<usize>,
    ) {
        match applied {
            Applied::Done => done.extend(idx),
            Applied::Refused(m) => {
                for i in idx {
                    results[i] = Some(Err(StoreError::item(&creds[i].id, m.clone())));
                }
            }
            Applied::Failed { error, .. } => fail_all(results, creds, &idx, &error),
        }
    }

    /// Every staged write inside `tx`: the items written (the others have
    /// their error in `results`).
    pub(super) fn apply_staged(
        &self,
        tx: &mut Transaction<'_>,
        staged: &Staged,
        creds: &[Credential],
        results: &mut [Option<Result<()>>],
    ) -> Result<Vec<usize>> {
        let mut done: Vec<usize> = Vec::new();
        for (account, writes) in &staged.by_account {
            let idx: Vec<usize> = writes.iter().map(|(i, ..)| *i).collect();
            let applied = self.in_savepoint(tx, "account", |sp| {
                apply_account(sp, account, writes, creds)
            })?;
            Self::record(applied, idx, creds, results, &mut done);
        }
        for (train, writes) in &staged.by_train {
            let (idx, slots) = train_slots(writes);
            let applied = self.in_savepoint(tx, "train", |sp| {
                apply_train(sp, train, &slots).map(|_| Ok(()))
            })?;
            Self::record(applied, idx, creds, results, &mut done);
        }
        Ok(done)
    }
}

/// A train's writes as item indices and the slots they set.
pub(super) fn train_slots(writes: &TrainWrites) -> (Vec<usize>, Vec<(usize, Option<String>)>) {
    writes
        .iter()
        .map(|(i, index, h)| (*i, (*index, Some(h.clone()))))
        .unzip()
}

/// The results of a transaction over `pending`: `done` written, or every
/// item not failed already failed with the transaction's error (nothing of
/// it was committed).
pub(super) fn settle(
    results: &mut [Option<Result<()>>],
    creds: &[Credential],
    pending: &[usize],
    outcome: Result<Vec<usize>>,
) {
    match outcome {
        Ok(done) => {
            for i in done {
                results[i] = Some(Ok(()));
            }
        }
        Err(e) => {
            let open: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|i| results[*i].as_ref().is_none_or(|r| r.is_ok()))
                .collect();
            fail_all(results, creds, &open, &e);
        }
    }
}

/// One result per item: an item nobody answered was not written.
pub(super) fn finish(results: Vec<Option<Result<()>>>, creds: &[Credential]) -> Vec<Result<()>> {
    results
        .into_iter()
        .zip(creds)
        .map(|(r, c)| r.unwrap_or_else(|| Err(StoreError::item(&c.id, "not written"))))
        .collect()
}
