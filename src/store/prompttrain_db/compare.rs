//! `replace_if_unchanged` compared inside the write: the new values are
//! encrypted first (outside the transaction: the slow part), then one
//! transaction locks every account and train row concerned (`SELECT ...
//! FOR UPDATE`), compares what each holds with what was expected, and
//! writes only the items that match. No other writer comes between the
//! comparison and the write: a row that existed is locked, and a row that
//! did not is inserted, which fails if another writer inserted it
//! meanwhile; then that row is locked and compared again (once).

use postgres::Transaction;

use crate::credential::{Credential, Kind};
use crate::crypto::prompttrain as fmt;
use crate::error::{Result, StoreError};
use crate::store::{Replace, ReplaceIf};

use super::rows::{AccountRow, AccountWrites, apply_account, apply_train, train_row};
use super::writes::{Applied, TrainWrites, finish, settle, train_slots};
use super::{ACCOUNT_COLS, PromptTrainDb, Target, classify, parse_id};

/// What a train's slot holds now: its hash, if any.
type Hashes = Vec<Option<String>>;

impl PromptTrainDb {
    pub(super) fn replace_compared(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let news: Vec<Credential> = items.iter().map(|r| r.new.clone()).collect();
        let mut results: Vec<Option<Result<()>>> = (0..items.len()).map(|_| None).collect();
        let mut changed = vec![false; items.len()];
        if let Some(staged) = self.stage(&news, &mut results) {
            let outcome = self.conn.with_client(|client| {
                let db = |e: postgres::Error| classify(&self.spec, "write", &e);
                let mut tx = client.transaction().map_err(db)?;
                let mut done = Vec::new();
                for (account, writes) in &staged.by_account {
                    let step = Step {
                        items,
                        news: &news,
                        results: &mut results,
                        changed: &mut changed,
                        done: &mut done,
                    };
                    self.compare_account(&mut tx, account, writes, step)?;
                }
                for (train, writes) in &staged.by_train {
                    let step = Step {
                        items,
                        news: &news,
                        results: &mut results,
                        changed: &mut changed,
                        done: &mut done,
                    };
                    self.compare_train(&mut tx, train, writes, step)?;
                }
                tx.commit().map_err(db)?;
                Ok(done)
            });
            settle(&mut results, &news, &staged.pending, outcome);
        }
        finish(results, &news)
            .into_iter()
            .zip(changed)
            .map(|(r, changed)| {
                r.map(|()| {
                    if changed {
                        ReplaceIf::Changed
                    } else {
                        ReplaceIf::Replaced
                    }
                })
            })
            .collect()
    }

    /// One account's items: compared with its locked row, the matching ones
    /// written in a savepoint.
    fn compare_account(
        &self,
        tx: &mut Transaction<'_>,
        account: &str,
        writes: &AccountWrites,
        mut step: Step<'_>,
    ) -> Result<()> {
        let lock = |tx: &mut Transaction<'_>| self.locked_account(tx, account);
        Self::compare_row(tx, &mut step, lock, |tx, step, row| {
            let keep: AccountWrites = writes
                .iter()
                .filter(|(i, field, _)| {
                    let id = &step.items[*i].new.id;
                    let now = row
                        .and_then(|r| r.values[field.index()].as_ref().map(|v| (r, v)))
                        .map(|(r, stored)| {
                            let secret = fmt::decrypt_cached(self.master()?, stored, &self.keys)
                                .map_err(|e| self.crypto_error(r.location(*field), e))?;
                            Ok(Credential::new(id.clone(), field.kind(), secret)
                                .with_metadata(r.metadata(*field)))
                        })
                        .transpose();
                    step.decide(*i, now.map(|now| step.items[*i].holds(now.as_ref())))
                })
                .cloned()
                .collect();
            if keep.is_empty() {
                return Ok(None);
            }
            let applied = self.in_savepoint(tx, "account", |sp| {
                apply_account(sp, account, &keep, step.news)
            })?;
            Ok(Some((keep.iter().map(|(i, ..)| *i).collect(), applied)))
        })
    }

    /// One train's items, as [`Self::compare_account`] does for accounts.
    fn compare_train(
        &self,
        tx: &mut Transaction<'_>,
        train: &str,
        writes: &TrainWrites,
        mut step: Step<'_>,
    ) -> Result<()> {
        let lock = |tx: &mut Transaction<'_>| self.locked_train(tx, train);
        Self::compare_row(tx, &mut step, lock, |tx, step, hashes| {
            let keep: TrainWrites = writes
                .iter()
                .filter(|(i, index, _)| {
                    let want = &step.items[*i];
                    let slot = hashes.and_then(|h| h.get(*index).cloned().flatten());
                    let same = match parse_id(&want.new.id) {
                        // Only the hash is stored: the key expected is
                        // compared with it; "nothing" means an empty slot.
                        Ok(Target::ClientKey { .. }) => match (&want.expected, &slot) {
                            (None, None) => true,
                            (Some(k), Some(h)) => fmt::client_key_matches(k.secret.expose(), h),
                            _ => false,
                        },
                        _ => want.holds(
                            slot.map(|h| Credential::new(want.new.id.clone(), Kind::ClientKeyHash, h))
                                .as_ref(),
                        ),
                    };
                    step.decide(*i, Ok(same))
                })
                .cloned()
                .collect();
            if keep.is_empty() {
                return Ok(None);
            }
            let (idx, slots) = train_slots(&keep);
            let applied = self.in_savepoint(tx, "train", |sp| {
                apply_train(sp, train, &slots).map(|_| Ok(()))
            })?;
            Ok(Some((idx, applied)))
        })
    }

    /// Both row kinds: lock the row; `write` compares each item with what
    /// the row holds and writes the matching ones in a savepoint (their
    /// indices and what the write did; `None` when none matched); record
    /// the outcome. Once more when there was no row to lock and the insert
    /// met one another writer created meanwhile.
    fn compare_row<R>(
        tx: &mut Transaction<'_>,
        step: &mut Step<'_>,
        lock: impl Fn(&mut Transaction<'_>) -> Result<Option<R>>,
        mut write: impl FnMut(
            &mut Transaction<'_>,
            &mut Step<'_>,
            Option<&R>,
        ) -> Result<Option<(Vec<usize>, Applied)>>,
    ) -> Result<()> {
        let mut row = lock(tx)?;
        let Some(mut written) = write(tx, step, row.as_ref())? else {
            return Ok(());
        };
        if matches!(written.1, Applied::Failed { conflict: true, .. }) && row.is_none() {
            // Another writer created the row after the lock was taken
            // (there was nothing to lock): compare with what it wrote.
            row = lock(tx)?;
            let Some(again) = write(tx, step, row.as_ref())? else {
                return Ok(());
            };
            written = again;
        }
        let (idx, applied) = written;
        Self::record(applied, idx, step.news, step.results, step.done);
        Ok(())
    }

    /// An account's row, locked until the transaction ends (`None`: none).
    fn locked_account(&self, tx: &mut Transaction<'_>, account: &str) -> Result<Option<AccountRow>> {
        let rows = tx
            .query(
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE account_id = $1 FOR UPDATE"),
                &[&account],
            )
            .map_err(|e| classify(&self.spec, "write", &e))?;
        Ok(rows.first().map(AccountRow::from_row))
    }

    /// A train's hash array, locked until the transaction ends.
    fn locked_train(&self, tx: &mut Transaction<'_>, train: &str) -> Result<Option<Hashes>> {
        let rows = tx
            .query(
                "SELECT train_id, client_api_keys_hashed FROM trains WHERE train_id = $1 \
                 FOR UPDATE",
                &[&train],
            )
            .map_err(|e| classify(&self.spec, "write", &e))?;
        Ok(rows.first().map(|r| train_row(r).1))
    }
}

/// The items of one compared write and where their outcomes go.
struct Step<'a> {
    items: &'a [Replace],
    news: &'a [Credential],
    results: &'a mut [Option<Result<()>>],
    changed: &'a mut [bool],
    done: &'a mut Vec<usize>,
}

impl Step<'_> {
    /// Whether item `i` is written: yes when what is there is what was
    /// expected; otherwise its outcome (changed, or the error of reading
    /// what is there) is recorded.
    fn decide(&mut self, i: usize, same: Result<bool>) -> bool {
        match same {
            Ok(true) => {
                // Compared again after a conflict: the earlier verdict goes.
                self.changed[i] = false;
                self.results[i] = None;
                true
            }
            Ok(false) => {
                self.changed[i] = true;
                self.results[i] = Some(Ok(()));
                false
            }
            Err(e) => {
                self.results[i] = Some(Err(match e {
                    e @ StoreError::Crypto { .. } => e,
                    other => StoreError::item(&self.items[i].new.id, other.to_string()),
                }));
                false
            }
        }
    }
}
