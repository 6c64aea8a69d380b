//! The [`Store`] implementation.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::crypto::prompttrain::{self as fmt, FormatError};
use crate::error::{Result, StoreError};
use crate::store::{
    Capability, DeleteIf, Entry, Listing, Replace, ReplaceIf, Scan, Store, StoreLock, StoreSpec,
};

use super::rows::*;
use super::writes::{finish, settle};
use super::{Field, PENDING_TOKEN, PromptTrainDb, Target, classify, parse_id};

impl Store for PromptTrainDb {
    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let exists = match self.tables_exist() {
            Ok(e) => e,
            Err(e) => return Capability::unavailable(e.to_string()),
        };
        let mut cap = Capability {
            writable: self.key.is_some(),
            exists,
            ..Capability::persistent_store(true, false)
        };
        cap.warnings.push(
            "client keys are stored as SHA-256 hashes: they cannot be read back, only checked"
                .into(),
        );
        cap.warnings
            .push("only account_name, expires_at, scopes and is_max metadata are kept".into());
        match &self.key {
            None => cap.warnings.push(format!(
                "{} is not set: account values cannot be read or written",
                fmt::KEY_ENV
            )),
            Some(k) if exists => match self.key_fits_database(k) {
                Ok(true) => {}
                Ok(false) => {
                    cap.writable = false;
                    cap.warnings.push(format!(
                        "{} does not decrypt the values in this database",
                        fmt::KEY_ENV
                    ));
                }
                Err(e) => cap.warnings.push(e.to_string()),
            },
            Some(_) => {}
        }
        if exists && let Ok(l) = self.list() {
            cap.item_count = Some(l.entries.len());
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        let accounts = self.accounts(None)?;
        let trains = self.trains(None)?;
        let mut listing = Listing {
            errors: self.list_errors(&accounts, &trains),
            ..Default::default()
        };
        for a in accounts.iter().filter(|a| !a.account_id.contains('/')) {
            for f in Field::ALL {
                if a.values[f.index()].is_some() {
                    listing.entries.push(Entry {
                        id: a.id(f),
                        kind: f.kind(),
                        metadata: a.metadata(f),
                    });
                }
            }
        }
        for (train, hashes) in trains.iter().filter(|(t, _)| !t.contains('/')) {
            for (i, h) in hashes.iter().enumerate() {
                if h.is_some() {
                    listing.entries.push(Entry {
                        id: train_hash_id(train, i),
                        kind: Kind::ClientKeyHash,
                        metadata: Metadata::new(),
                    });
                }
            }
        }
        Ok(listing)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        match parse_id(id) {
            Ok(Target::Account { account, field }) => {
                let rows = match self.accounts(Some(&account)) {
                    Ok(r) => r,
                    Err(StoreError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let Some(row) = rows.into_iter().next() else {
                    return Ok(None);
                };
                let Some(stored) = &row.values[field.index()] else {
                    return Ok(None);
                };
                let secret = fmt::decrypt_cached(self.master()?, stored, &self.keys)
                    .map_err(|e| self.crypto_error(row.location(field), e))?;
                Ok(Some(
                    Credential::new(id.clone(), field.kind(), secret)
                        .with_metadata(row.metadata(field)),
                ))
            }
            Ok(Target::ClientKeyHash { train, index }) => Ok(self
                .read_hash(&train, index)?
                .map(|h| Credential::new(id.clone(), Kind::ClientKeyHash, h))),
            // Only the hash is stored: see `verify_hashed`.
            Ok(Target::ClientKey { .. }) | Err(_) => Ok(None),
        }
    }

    /// One query for the batch's accounts and one for its trains; values
    /// decrypted in parallel, with the keys this store derived when it wrote
    /// them (the engine's read-back derives nothing again).
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let targets: Vec<Option<Target>> = ids.iter().map(|id| parse_id(id).ok()).collect();
        let mut account_ids: Vec<&str> = Vec::new();
        let mut train_ids: Vec<&str> = Vec::new();
        for t in targets.iter().flatten() {
            match t {
                Target::Account { account, .. } => account_ids.push(account),
                Target::ClientKeyHash { train, .. } => train_ids.push(train),
                Target::ClientKey { .. } => {}
            }
        }
        let accounts: Result<BTreeMap<String, AccountRow>> =
            fetch_in(&mut account_ids, |ids| self.accounts_in(ids)).map(|rows| {
                rows.into_iter()
                    .map(|r| (r.account_id.clone(), r))
                    .collect()
            });
        let trains: Result<BTreeMap<String, Vec<Option<String>>>> =
            fetch_in(&mut train_ids, |ids| self.trains_in(ids))
                .map(|rows| rows.into_iter().collect());

        // What each id needs: an answer now, or a value to decrypt.
        let mut out: Vec<Option<Result<Option<Credential>>>> = Vec::with_capacity(ids.len());
        let mut jobs: Vec<(usize, &AccountRow, Field, &str)> = Vec::new();
        for (i, (id, t)) in ids.iter().zip(&targets).enumerate() {
            out.push(match t {
                Some(Target::Account { account, field }) => match &accounts {
                    Err(e) => Some(Err(e.duplicate())),
                    Ok(rows) => match rows.get(account) {
                        Some(row) => match &row.values[field.index()] {
                            Some(stored) => match self.master() {
                                Ok(_) => {
                                    jobs.push((i, row, *field, stored));
                                    None
                                }
                                Err(e) => Some(Err(e)),
                            },
                            None => Some(Ok(None)),
                        },
                        None => Some(Ok(None)),
                    },
                },
                Some(Target::ClientKeyHash { train, index }) => match &trains {
                    Err(e) => Some(Err(e.duplicate())),
                    Ok(rows) => Some(Ok(rows
                        .get(train)
                        .and_then(|h| h.get(*index).cloned().flatten())
                        .map(|h| Credential::new(id.clone(), Kind::ClientKeyHash, h)))),
                },
                // Only the hash is stored: see `verify_hashed`.
                Some(Target::ClientKey { .. }) | None => Some(Ok(None)),
            });
        }
        if let Ok(key) = self.master() {
            let stored: Vec<&str> = jobs.iter().map(|(.., s)| s.as_ref()).collect();
            let decrypted: Vec<std::result::Result<Secret, FormatError>> =
                fmt::decrypt_many_cached(key, &stored, &self.keys);
            for ((i, row, field, _), res) in jobs.iter().zip(decrypted) {
                out[*i] = Some(match res {
                    Ok(secret) => Ok(Some(
                        Credential::new(ids[*i].clone(), field.kind(), secret)
                            .with_metadata(row.metadata(*field)),
                    )),
                    Err(e) => Err(self.crypto_error(row.location(*field), e)),
                });
            }
        }
        out.into_iter()
            .zip(ids)
            .map(|(r, id)| r.unwrap_or_else(|| Err(StoreError::item(id, "not read"))))
            .collect()
    }

    fn read_all(&self) -> Result<Scan> {
        let accounts = self.accounts(None)?;
        let trains = self.trains(None)?;
        let listing_errors = self.list_errors(&accounts, &trains);
        let mut scan = Scan {
            errors: listing_errors,
            ..Default::default()
        };
        let mut jobs = Vec::new();
        for a in &accounts {
            if a.account_id.contains('/') {
                continue;
            }
            for f in Field::ALL {
                if let Some(stored) = &a.values[f.index()] {
                    jobs.push(Job {
                        id: a.id(f),
                        kind: f.kind(),
                        metadata: a.metadata(f),
                        stored: stored.clone(),
                        location: a.location(f),
                    });
                }
            }
        }
        self.decrypt_jobs(jobs, &mut scan)?;
        for (train, hashes) in trains {
            if train.contains('/') {
                continue;
            }
            for (i, h) in hashes.into_iter().enumerate() {
                if let Some(h) = h {
                    scan.credentials.push(Credential::new(
                        train_hash_id(&train, i),
                        Kind::ClientKeyHash,
                        h,
                    ));
                }
            }
        }
        Ok(scan)
    }

    fn check(&self, c: &Credential) -> Option<String> {
        if let Some(r) = c.invalid_reason() {
            return Some(r.into());
        }
        if c.id.namespace.starts_with("account:") && c.id.name == "slack_webhook_url" {
            return Some(
                "agent-prompttrain's database keeps a Slack webhook URL in clear \
                 (trains.slack_config); credshift does not write it there"
                    .into(),
            );
        }
        match parse_id(&c.id) {
            Err(m) => Some(m),
            Ok(Target::Account { field, .. }) => {
                if c.kind != field.kind() {
                    Some(format!(
                        "agent-prompttrain's {} holds kind {}, not {}",
                        field.column(),
                        field.kind(),
                        c.kind
                    ))
                } else if self.key.is_none() {
                    Some(format!("{} is not set", fmt::KEY_ENV))
                } else {
                    None
                }
            }
            Ok(Target::ClientKey { .. }) => (c.kind != Kind::ClientKey).then(|| {
                format!(
                    "train:<id>/client_key/<n> takes kind client_key, not {}",
                    c.kind
                )
            }),
            Ok(Target::ClientKeyHash { .. }) => {
                if c.kind != Kind::ClientKeyHash {
                    Some(format!(
                        "train:<id>/client_key_hash/<n> takes kind client_key_hash, not {}",
                        c.kind
                    ))
                } else if !fmt::is_client_key_hash(&c.secret.expose().trim().to_ascii_lowercase()) {
                    Some("not a SHA-256 hex digest (64 hex characters)".into())
                } else {
                    None
                }
            }
        }
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or_else(|| Err(StoreError::item(&c.id, "no result")))
    }

    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = (0..creds.len()).map(|_| None).collect();
        if let Some(staged) = self.stage(creds, &mut results) {
            let outcome = self.conn.with_client(|client| {
                let db = |e: postgres::Error| classify(&self.spec, "write", &e);
                let mut tx = client.transaction().map_err(db)?;
                let done = self.apply_staged(&mut tx, &staged, creds, &mut results)?;
                tx.commit().map_err(db)?;
                Ok(done)
            });
            settle(&mut results, creds, &staged.pending, outcome);
        }
        finish(results, creds)
    }

    /// Atomic: one transaction locks the rows of every account and train
    /// concerned (`SELECT ... FOR UPDATE`), compares what they hold with
    /// what was expected and writes only the matching items; a row another
    /// writer inserts meanwhile is compared again (see
    /// [`PromptTrainDb::replace_compared`]).
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        self.replace_compared(items)
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or_else(|| Err(StoreError::item(id, "no result")))
    }

    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let mut results: Vec<Option<Result<bool>>> = (0..ids.len()).map(|_| None).collect();
        let mut by_account: BTreeMap<String, Vec<(usize, Field)>> = BTreeMap::new();
        let mut by_train: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, id) in ids.iter().enumerate() {
            match parse_id(id) {
                Ok(Target::Account { account, field }) => {
                    by_account.entry(account).or_default().push((i, field))
                }
                Ok(Target::ClientKey { train, index } | Target::ClientKeyHash { train, index }) => {
                    by_train.entry(train).or_default().push((i, index))
                }
                Err(_) => results[i] = Some(Ok(false)),
            }
        }
        let outcome = self.conn.with_client(|client| {
            let db = |e: postgres::Error| classify(&self.spec, "delete", &e);
            let mut tx = client.transaction().map_err(db)?;
            let staged = self.remove_in(&mut tx, &by_account, &by_train)?;
            tx.commit().map_err(db)?;
            Ok(staged)
        });
        match outcome {
            Ok(staged) => {
                for (i, had) in staged {
                    results[i] = Some(Ok(had));
                }
            }
            Err(StoreError::NotFound { .. }) => {
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Ok(false));
                }
            }
            Err(e) => {
                for (i, r) in results.iter_mut().enumerate() {
                    if r.is_none() {
                        *r = Some(Err(match &e {
                            StoreError::Unavailable { store, reason } => StoreError::Unavailable {
                                store: store.clone(),
                                reason: reason.clone(),
                            },
                            other => StoreError::item(&ids[i], other.to_string()),
                        }));
                    }
                }
            }
        }
        results
            .into_iter()
            .zip(ids)
            .map(|(r, id)| r.unwrap_or_else(|| Err(StoreError::item(id, "not deleted"))))
            .collect()
    }

    /// One transaction: the rows of every account and train concerned are
    /// read `FOR UPDATE`, each value compared with what credshift checked
    /// (a client key against its stored hash), and only the matching ones
    /// deleted before the commit; no writer comes between.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let mut out: Vec<Option<Result<DeleteIf>>> = expected.iter().map(|_| None).collect();
        let targets: Vec<Option<Target>> = expected.iter().map(|c| parse_id(&c.id).ok()).collect();
        let mut account_ids: Vec<&str> = Vec::new();
        let mut train_ids: Vec<&str> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            match t {
                Some(Target::Account { account, .. }) => account_ids.push(account),
                Some(Target::ClientKey { train, .. } | Target::ClientKeyHash { train, .. }) => {
                    train_ids.push(train)
                }
                None => out[i] = Some(Ok(DeleteIf::Absent)),
            }
        }
        let outcome = self.conn.with_client(|client| {
            let db = |e: postgres::Error| classify(&self.spec, "delete", &e);
            let mut tx = client.transaction().map_err(db)?;
            let accounts: BTreeMap<String, AccountRow> = tx
                .query(
                    &format!(
                        "SELECT {} FROM accounts WHERE account_id = ANY($1) FOR UPDATE",
                        super::ACCOUNT_COLS
                    ),
                    &[&account_ids],
                )
                .map_err(db)?
                .iter()
                .map(|r| {
                    let row = AccountRow::from_row(r);
                    (row.account_id.clone(), row)
                })
                .collect();
            let trains: BTreeMap<String, Vec<Option<String>>> = tx
                .query(
                    "SELECT train_id, client_api_keys_hashed FROM trains \
                     WHERE train_id = ANY($1) FOR UPDATE",
                    &[&train_ids],
                )
                .map_err(db)?
                .iter()
                .map(train_row)
                .collect();
            let mut by_account: BTreeMap<String, Vec<(usize, Field)>> = BTreeMap::new();
            let mut by_train: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
            let mut decided: Vec<(usize, Result<DeleteIf>)> = Vec::new();
            for (i, (want, t)) in expected.iter().zip(&targets).enumerate() {
                let same = match t {
                    None => continue,
                    Some(Target::Account { account, field }) => {
                        match accounts
                            .get(account)
                            .and_then(|r| r.values[field.index()].as_ref().map(|v| (r, v)))
                        {
                            None => None,
                            Some((row, stored)) => {
                                match self.master().and_then(|k| {
                                    fmt::decrypt_cached(k, stored, &self.keys)
                                        .map_err(|e| self.crypto_error(row.location(*field), e))
                                }) {
                                    Ok(secret) => Some(
                                        Credential::new(want.id.clone(), field.kind(), secret)
                                            .with_metadata(row.metadata(*field))
                                            .same_as(want),
                                    ),
                                    Err(e) => {
                                        decided.push((i, Err(e)));
                                        continue;
                                    }
                                }
                            }
                        }
                    }
                    Some(Target::ClientKeyHash { train, index }) => trains
                        .get(train)
                        .and_then(|h| h.get(*index).cloned().flatten())
                        .map(|h| {
                            Credential::new(want.id.clone(), Kind::ClientKeyHash, h).same_as(want)
                        }),
                    // Only the hash is stored: the key is compared with it.
                    Some(Target::ClientKey { train, index }) => trains
                        .get(train)
                        .and_then(|h| h.get(*index).cloned().flatten())
                        .map(|h| fmt::client_key_matches(want.secret.expose(), &h)),
                };
                match (same, t) {
                    (None, _) => decided.push((i, Ok(DeleteIf::Absent))),
                    (Some(false), _) => decided.push((i, Ok(DeleteIf::Changed))),
                    (Some(true), Some(Target::Account { account, field })) => by_account
                        .entry(account.clone())
                        .or_default()
                        .push((i, *field)),
                    (
                        Some(true),
                        Some(
                            Target::ClientKey { train, index }
                            | Target::ClientKeyHash { train, index },
                        ),
                    ) => by_train.entry(train.clone()).or_default().push((i, *index)),
                    (Some(true), None) => {}
                }
            }
            let staged = self.remove_in(&mut tx, &by_account, &by_train)?;
            tx.commit().map_err(db)?;
            Ok((decided, staged))
        });
        match outcome {
            Ok((decided, staged)) => {
                for (i, r) in decided {
                    out[i] = Some(r);
                }
                for (i, had) in staged {
                    out[i] = Some(Ok(if had {
                        DeleteIf::Deleted
                    } else {
                        DeleteIf::Absent
                    }));
                }
            }
            // No tables yet: nothing to delete.
            Err(StoreError::NotFound { .. }) => {
                for r in out.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Ok(DeleteIf::Absent));
                }
            }
            Err(e) => {
                for (r, want) in out.iter_mut().zip(expected) {
                    if r.is_none() {
                        *r = Some(Err(copy_error(&want.id, &e)));
                    }
                }
            }
        }
        out.into_iter()
            .zip(expected)
            .map(|(r, c)| r.unwrap_or_else(|| Err(StoreError::item(&c.id, "not deleted"))))
            .collect()
    }

    fn verify_hashed(&self, c: &Credential) -> Result<Option<bool>> {
        let Ok(Target::ClientKey { train, index }) = parse_id(&c.id) else {
            return Ok(None);
        };
        Ok(Some(self.read_hash(&train, index)?.is_some_and(|h| {
            fmt::client_key_matches(c.secret.expose(), &h)
        })))
    }

    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        self.conn.identity()
    }

    fn lock(
        &self,
        mode: crate::store::LockMode,
        wait: Duration,
    ) -> Result<Option<Box<dyn StoreLock>>> {
        let lock = self.conn.advisory_lock(mode, wait)?;
        Ok(Some(Box::new(lock)))
    }
}

impl PromptTrainDb {
    /// The deletes of `delete_many` inside `tx`: (item index, whether it
    /// was there).
    fn remove_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        by_account: &BTreeMap<String, Vec<(usize, Field)>>,
        by_train: &BTreeMap<String, Vec<(usize, usize)>>,
    ) -> Result<Vec<(usize, bool)>> {
        let spec = &self.spec;
        let db = |e: postgres::Error| classify(spec, "delete", &e);
        let mut staged: Vec<(usize, bool)> = Vec::new();
        for (account, fields) in by_account {
            let Some((ctype, before, _)) = account_state(tx, account).map_err(db)? else {
                staged.extend(fields.iter().map(|(i, _)| (*i, false)));
                continue;
            };
            let mut after = before;
            for (_, f) in fields {
                after[f.index()] = false;
            }
            if after == [false; 3] {
                tx.execute("DELETE FROM accounts WHERE account_id = $1", &[account])
                    .map_err(db)?;
            } else {
                // One OAuth token left alone: placeholder, inactive.
                let (t, pending) = match credential_type(Some(&ctype), after) {
                    Ok(t) => (t, false),
                    Err(_) => ("oauth", true),
                };
                let clear = |f: Field| {
                    (pending && f != Field::ApiKey && !after[f.index()]).then_some(PENDING_TOKEN)
                };
                let null = |f: Field| !after[f.index()] && before[f.index()] && clear(f).is_none();
                tx.execute(
                    "UPDATE accounts SET
                       api_key_encrypted = CASE WHEN $2 THEN NULL ELSE api_key_encrypted END,
                       oauth_access_token_encrypted =
                         CASE WHEN $3 THEN NULL ELSE COALESCE($6, oauth_access_token_encrypted) END,
                       oauth_refresh_token_encrypted =
                         CASE WHEN $4 THEN NULL ELSE COALESCE($7, oauth_refresh_token_encrypted) END,
                       credential_type = $5,
                       is_active = CASE WHEN $8 THEN false ELSE is_active END,
                       updated_at = now()
                     WHERE account_id = $1",
                    &[
                        account,
                        &null(Field::ApiKey),
                        &null(Field::OauthAccess),
                        &null(Field::OauthRefresh),
                        &t,
                        &clear(Field::OauthAccess),
                        &clear(Field::OauthRefresh),
                        &pending,
                    ],
                )
                .map_err(db)?;
            }
            staged.extend(fields.iter().map(|(i, f)| (*i, before[f.index()])));
        }
        for (train, slots) in by_train {
            let clear: Vec<(usize, Option<String>)> =
                slots.iter().map(|(_, index)| (*index, None)).collect();
            let had = apply_train(tx, train, &clear).map_err(db)?;
            staged.extend(slots.iter().zip(had).map(|((i, _), h)| (*i, h)));
        }
        Ok(staged)
    }
}
