//! Compare-and-write ([`Store::replace_if_unchanged`]): its item, its
//! outcome, and the read-compare-write default.

use crate::credential::{Credential, CredentialId};
use crate::error::{Result, StoreError};
use crate::store::Store;

/// One compare-and-write of [`Store::replace_if_unchanged`]: `new` goes
/// in only where the store holds exactly `expected` (`None`: nothing).
#[derive(Debug, Clone)]
pub struct Replace {
    pub expected: Option<Credential>,
    pub new: Credential,
}

impl Replace {
    /// Whether `now`, what the store holds at the id, is what was expected.
    pub fn holds(&self, now: Option<&Credential>) -> bool {
        match (&self.expected, now) {
            (None, None) => true,
            (Some(want), Some(now)) => now.same_as(want),
            _ => false,
        }
    }
}

/// What [`Store::replace_if_unchanged`] did with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceIf {
    /// It held what was expected and now holds the new value.
    Replaced,
    /// It holds something else (a value where none was expected, another
    /// value, or nothing where one was), which was kept.
    Changed,
}

/// [`Store::replace_if_unchanged`] as read, compare, write: not atomic
/// against other applications (see [`Store::delete_if_unchanged`]).
pub fn replace_if_unchanged_by_reading<S: Store + ?Sized>(
    store: &S,
    items: &[Replace],
) -> Vec<Result<ReplaceIf>> {
    let ids: Vec<CredentialId> = items.iter().map(|r| r.new.id.clone()).collect();
    let mut out: Vec<Option<Result<ReplaceIf>>> = Vec::with_capacity(items.len());
    let mut chosen: Vec<usize> = Vec::new();
    for (i, (r, now)) in items.iter().zip(store.read_many(&ids)).enumerate() {
        out.push(match now {
            // A store not created yet holds nothing.
            Err(StoreError::NotFound { .. }) if r.holds(None) => {
                chosen.push(i);
                None
            }
            Ok(now) if r.holds(now.as_ref()) => {
                chosen.push(i);
                None
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => Some(Ok(ReplaceIf::Changed)),
            Err(e) => Some(Err(e)),
        });
    }
    let news: Vec<Credential> = chosen.iter().map(|&i| items[i].new.clone()).collect();
    let mut results = store.write_many(&news).into_iter();
    for &i in &chosen {
        out[i] = Some(match results.next() {
            Some(Ok(())) => Ok(ReplaceIf::Replaced),
            Some(Err(e)) => Err(e),
            None => Err(StoreError::Other("the write returned no result".into())),
        });
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Other("no result".into()))))
        .collect()
}
