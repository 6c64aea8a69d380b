//! The in-memory store: the decrypted contents of a backup being restored,
//! and a store without I/O for tests and the engine benchmark. It is a [`Faulty`] over a map, so a test can tell it to fail
//! its next call or the calls matching a glob ([`Faulty::fail_next`],
//! [`Faulty::fail_matching`]) through the same mechanism as
//! `CREDSHIFT_FAULTS`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::credential::{Credential, CredentialId};
use crate::error::{Result, StoreError};
use crate::store::faults::{Faults, Faulty};
use crate::store::{
    Capability, DeleteIf, Entry, Listing, Replace, ReplaceIf, Scan, Store, StoreSpec,
};

/// The memory store as tests use it: contents and faults, shared by clones
/// (a test keeps one to look inside or to arm a fault).
pub type MemStore = Faulty<Memory>;

impl MemStore {
    pub fn new(spec: StoreSpec, creds: Vec<Credential>, writable: bool) -> MemStore {
        Faulty::wrap(Memory::new(spec, creds, writable), Faults::default())
    }

    /// Every credential, sorted by id (for tests), whatever the faults.
    pub fn snapshot(&self) -> Vec<Credential> {
        self.inner().snapshot()
    }
}

/// The contents: a map from id to credential. Clones share it.
#[derive(Clone)]
pub struct Memory {
    spec: StoreSpec,
    writable: bool,
    items: Arc<Mutex<BTreeMap<CredentialId, Credential>>>,
}

impl Memory {
    pub fn new(spec: StoreSpec, creds: Vec<Credential>, writable: bool) -> Memory {
        Memory {
            spec,
            writable,
            items: Arc::new(Mutex::new(
                creds.into_iter().map(|c| (c.id.clone(), c)).collect(),
            )),
        }
    }

    /// Every credential, sorted by id (for tests).
    pub fn snapshot(&self) -> Vec<Credential> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CredentialId, Credential>> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AsRef<dyn Store> for Memory {
    fn as_ref(&self) -> &(dyn Store + 'static) {
        self
    }
}

impl Store for Memory {
    /// What its spec names (a restored backup: the backup file), so a
    /// recovery that opens the spec finds the same identity.
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        Ok(
            crate::store::offline_identity(&self.spec).unwrap_or_else(|| {
                crate::store::StoreIdentity::named(
                    crate::store::IdentityKind::Memory,
                    &self.spec.to_string(),
                )
            }),
        )
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        Capability {
            available: true,
            readable: true,
            writable: self.writable,
            persistent: false,
            exists: true,
            keeps_metadata: true,
            item_count: Some(self.lock().len()),
            ..Capability::default()
        }
    }

    fn list(&self) -> Result<Listing> {
        Ok(Listing {
            entries: self.lock().values().map(Entry::from).collect(),
            errors: Vec::new(),
        })
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        Ok(self.lock().get(id).cloned())
    }

    fn write(&self, c: &Credential) -> Result<()> {
        if !self.writable {
            return Err(crate::store::read_only(&self.spec, "in-memory copy"));
        }
        self.lock().insert(c.id.clone(), c.clone());
        Ok(())
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        if !self.writable {
            return Err(StoreError::ReadOnly {
                store: self.spec.to_string(),
                reason: "in-memory copy".into(),
            });
        }
        Ok(self.lock().remove(id).is_some())
    }

    /// One look at the map for the batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let out = {
            let items = self.lock();
            ids.iter().map(|id| Ok(items.get(id).cloned())).collect()
        };
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        out
    }

    /// Compared and removed under the map's one lock: atomic.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        if !self.writable {
            return expected
                .iter()
                .map(|_| Err(crate::store::read_only(&self.spec, "in-memory copy")))
                .collect();
        }
        let mut items = self.lock();
        expected
            .iter()
            .map(|want| {
                Ok(match items.get(&want.id) {
                    None => DeleteIf::Absent,
                    Some(now) if !now.same_as(want) => DeleteIf::Changed,
                    Some(_) => {
                        items.remove(&want.id);
                        DeleteIf::Deleted
                    }
                })
            })
            .collect()
    }

    /// Compared and written under the map's one lock: atomic.
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        if !self.writable {
            return items
                .iter()
                .map(|_| Err(crate::store::read_only(&self.spec, "in-memory copy")))
                .collect();
        }
        let mut map = self.lock();
        items
            .iter()
            .map(|r| {
                if !r.holds(map.get(&r.new.id)) {
                    return Ok(ReplaceIf::Changed);
                }
                map.insert(r.new.id.clone(), r.new.clone());
                Ok(ReplaceIf::Replaced)
            })
            .collect()
    }

    fn read_all(&self) -> Result<Scan> {
        Ok(Scan {
            credentials: self.lock().values().cloned().collect(),
            errors: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{
        api_key, assert_compare_and_delete_keeps_a_racing_write,
        assert_compare_and_replace_keeps_a_racing_write,
    };

    #[test]
    fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
        let m = Memory::new("dotenv:/mem/.env".parse().unwrap(), Vec::new(), true);
        assert_compare_and_delete_keeps_a_racing_write(
            &m,
            Box::new(m.clone()),
            &api_key("env", "K", "v1"),
            &api_key("env", "K", "theirs"),
        );
    }

    #[test]
    fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
        let m = Memory::new("dotenv:/mem/.env".parse().unwrap(), Vec::new(), true);
        assert_compare_and_replace_keeps_a_racing_write(
            &m,
            Box::new(m.clone()),
            &api_key("env", "K", "ours"),
            &api_key("env", "K", "old"),
            &api_key("env", "K", "theirs"),
        );
    }
}
