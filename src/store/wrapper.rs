//! One forwarding mechanism for stores over other stores.
//!
//! A wrapper store ([`crate::store::faults::Faulty`], the legacy-metadata
//! layer, the engine's test doubles) changes a few [`Store`] methods and
//! passes the rest to the store it wraps. A method it forgets falls back to
//! the trait's default, which silently drops what the inner store said
//! (`batch_hint` was lost that way once). So:
//!
//! - [`forward!`] writes the passing-on methods, one name each:
//!   `forward!(inner; spec, probe)` for a field, `forward!([inner.as_ref()];
//!   spec)` for any path from `self`;
//! - every wrapper impl carries `#[deny(clippy::missing_trait_methods)]`:
//!   a `Store` method it neither overrides nor forwards fails clippy, so a
//!   new trait method cannot be lost behind a wrapper;
//! - the tests below put every wrapper over a store whose every method
//!   answers something no default does, and check each answer comes out.

/// Inside `impl Store for W`: each named method passes to the inner store.
/// `forward!(inner; spec, probe)`, `forward!(0; list)`,
/// `forward!([inner.as_ref()]; batch_hint, lock)`.
macro_rules! forward {
    (@one [$($p:tt)+]; spec) => {
        fn spec(&self) -> &$crate::store::StoreSpec {
            self.$($p)+.spec()
        }
    };
    (@one [$($p:tt)+]; probe) => {
        fn probe(&self) -> $crate::store::Capability {
            self.$($p)+.probe()
        }
    };
    (@one [$($p:tt)+]; list) => {
        fn list(&self) -> $crate::error::Result<$crate::store::Listing> {
            self.$($p)+.list()
        }
    };
    (@one [$($p:tt)+]; read) => {
        fn read(
            &self,
            id: &$crate::credential::CredentialId,
        ) -> $crate::error::Result<Option<$crate::credential::Credential>> {
            self.$($p)+.read(id)
        }
    };
    (@one [$($p:tt)+]; write) => {
        fn write(&self, c: &$crate::credential::Credential) -> $crate::error::Result<()> {
            self.$($p)+.write(c)
        }
    };
    (@one [$($p:tt)+]; delete) => {
        fn delete(&self, id: &$crate::credential::CredentialId) -> $crate::error::Result<bool> {
            self.$($p)+.delete(id)
        }
    };
    (@one [$($p:tt)+]; check) => {
        fn check(&self, c: &$crate::credential::Credential) -> Option<String> {
            self.$($p)+.check(c)
        }
    };
    (@one [$($p:tt)+]; read_all) => {
        fn read_all(&self) -> $crate::error::Result<$crate::store::Scan> {
            self.$($p)+.read_all()
        }
    };
    (@one [$($p:tt)+]; write_many) => {
        fn write_many(
            &self,
            creds: &[$crate::credential::Credential],
        ) -> Vec<$crate::error::Result<()>> {
            self.$($p)+.write_many(creds)
        }
    };
    (@one [$($p:tt)+]; read_many) => {
        fn read_many(
            &self,
            ids: &[$crate::credential::CredentialId],
        ) -> Vec<$crate::error::Result<Option<$crate::credential::Credential>>> {
            self.$($p)+.read_many(ids)
        }
    };
    (@one [$($p:tt)+]; delete_many) => {
        fn delete_many(
            &self,
            ids: &[$crate::credential::CredentialId],
        ) -> Vec<$crate::error::Result<bool>> {
            self.$($p)+.delete_many(ids)
        }
    };
    (@one [$($p:tt)+]; delete_if_unchanged) => {
        fn delete_if_unchanged(
            &self,
            expected: &[$crate::credential::Credential],
        ) -> Vec<$crate::error::Result<$crate::store::DeleteIf>> {
            self.$($p)+.delete_if_unchanged(expected)
        }
    };
    (@one [$($p:tt)+]; replace_if_unchanged) => {
        fn replace_if_unchanged(
            &self,
            items: &[$crate::store::Replace],
        ) -> Vec<$crate::error::Result<$crate::store::ReplaceIf>> {
            self.$($p)+.replace_if_unchanged(items)
        }
    };
    (@one [$($p:tt)+]; read_wanted) => {
        fn read_wanted(
            &self,
            ids: &[$crate::credential::CredentialId],
        ) -> $crate::error::Result<$crate::store::Scan> {
            self.$($p)+.read_wanted(ids)
        }
    };
    (@one [$($p:tt)+]; inventory_from_listing) => {
        fn inventory_from_listing(&self) -> bool {
            self.$($p)+.inventory_from_listing()
        }
    };
    (@one [$($p:tt)+]; release_cache) => {
        fn release_cache(&self) {
            self.$($p)+.release_cache()
        }
    };
    (@one [$($p:tt)+]; batch_hint) => {
        fn batch_hint(&self) -> $crate::store::BatchHint {
            self.$($p)+.batch_hint()
        }
    };
    (@one [$($p:tt)+]; verify_hashed) => {
        fn verify_hashed(
            &self,
            c: &$crate::credential::Credential,
        ) -> $crate::error::Result<Option<bool>> {
            self.$($p)+.verify_hashed(c)
        }
    };
    (@one [$($p:tt)+]; unmigrated) => {
        fn unmigrated(&self) -> Vec<String> {
            self.$($p)+.unmigrated()
        }
    };
    (@one [$($p:tt)+]; lock) => {
        fn lock(
            &self,
            mode: $crate::store::LockMode,
            wait: std::time::Duration,
        ) -> $crate::error::Result<Option<Box<dyn $crate::store::StoreLock>>> {
            self.$($p)+.lock(mode, wait)
        }
    };
    (@one [$($p:tt)+]; set_provenance) => {
        fn set_provenance(&self, p: &$crate::store::Provenance) {
            self.$($p)+.set_provenance(p)
        }
    };
    (@one [$($p:tt)+]; identity) => {
        fn identity(&self) -> $crate::error::Result<$crate::store::StoreIdentity> {
            self.$($p)+.identity()
        }
    };
    (@list $p:tt; $($m:ident),+ $(,)?) => {
        $($crate::store::wrapper::forward!(@one $p; $m);)+
    };
    ([$($p:tt)+]; $($rest:tt)+) => {
        $crate::store::wrapper::forward!(@list [$($p)+]; $($rest)+);
    };
    ($f:tt; $($rest:tt)+) => {
        $crate::store::wrapper::forward!(@list [$f]; $($rest)+);
    };
}

pub(crate) use forward;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::credential::{Credential, CredentialId, Kind};
    use crate::error::Result;
    use crate::store::faults::{Faults, FaultyStore};
    use crate::store::{
        BatchHint, Capability, DeleteIf, Entry, Listing, LocationError, LockMode, Provenance,
        Replace, ReplaceIf, Scan, Store, StoreIdentity, StoreLock, StoreSpec,
    };

    /// A store whose every method answers something no trait default
    /// does, and logs that it was called.
    struct Marked {
        spec: StoreSpec,
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    struct MarkedLock;

    impl StoreLock for MarkedLock {
        fn describe(&self) -> String {
            "marked lock".into()
        }
    }

    impl Marked {
        fn called(&self, m: &'static str) {
            self.log.lock().unwrap().push(m);
        }

        fn item(id: &CredentialId) -> Credential {
            Credential::new(id.clone(), Kind::ApiKey, "marked-value")
        }
    }

    /// Every method is written out on purpose: this double must answer
    /// for each one itself.
    #[deny(clippy::missing_trait_methods)]
    impl Store for Marked {
        fn spec(&self) -> &StoreSpec {
            &self.spec
        }
        fn probe(&self) -> Capability {
            self.called("probe");
            Capability {
                warnings: vec!["marked probe".into()],
                ..Capability::persistent_store(true, true)
            }
        }
        fn list(&self) -> Result<Listing> {
            self.called("list");
            Ok(Listing {
                entries: vec![Entry::from(&Self::item(&"m/listed".parse().unwrap()))],
                errors: Vec::new(),
            })
        }
        fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
            self.called("read");
            Ok(Some(Self::item(id)))
        }
        fn write(&self, _: &Credential) -> Result<()> {
            self.called("write");
            Ok(())
        }
        fn delete(&self, _: &CredentialId) -> Result<bool> {
            self.called("delete");
            Ok(true)
        }
        fn check(&self, _: &Credential) -> Option<String> {
            self.called("check");
            Some("marked check".into())
        }
        fn read_all(&self) -> Result<Scan> {
            self.called("read_all");
            Ok(Scan {
                credentials: vec![Self::item(&"m/scanned".parse().unwrap())],
                errors: vec![LocationError {
                    severity: crate::store::Severity::Error,
                    location: "marked".into(),
                    error: "marked scan".into(),
                }],
            })
        }
        fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
            self.called("write_many");
            creds.iter().map(|_| Ok(())).collect()
        }
        fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
            self.called("read_many");
            ids.iter().map(|id| Ok(Some(Self::item(id)))).collect()
        }
        fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
            self.called("delete_many");
            ids.iter().map(|_| Ok(true)).collect()
        }
        fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
            self.called("delete_if_unchanged");
            expected.iter().map(|_| Ok(DeleteIf::Deleted)).collect()
        }
        fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
            self.called("replace_if_unchanged");
            items.iter().map(|_| Ok(ReplaceIf::Changed)).collect()
        }
        fn batch_hint(&self) -> BatchHint {
            BatchHint::WholeFile
        }
        fn inventory_from_listing(&self) -> bool {
            true
        }
        fn read_wanted(&self, _: &[CredentialId]) -> Result<Scan> {
            self.called("read_wanted");
            Ok(Scan {
                credentials: vec![Self::item(&"m/wanted".parse().unwrap())],
                errors: Vec::new(),
            })
        }
        fn verify_hashed(&self, _: &Credential) -> Result<Option<bool>> {
            self.called("verify_hashed");
            Ok(Some(true))
        }
        fn unmigrated(&self) -> Vec<String> {
            self.called("unmigrated");
            vec!["marked unmigrated".into()]
        }
        fn lock(&self, _: LockMode, _: Duration) -> Result<Option<Box<dyn StoreLock>>> {
            self.called("lock");
            Ok(Some(Box::new(MarkedLock)))
        }
        fn identity(&self) -> Result<StoreIdentity> {
            Ok(StoreIdentity::named(
                crate::store::IdentityKind::Marked,
                "identity",
            ))
        }
        fn set_provenance(&self, _: &Provenance) {
            self.called("set_provenance");
        }
        fn release_cache(&self) {
            self.called("release_cache");
        }
    }

    /// What `w` answers is what the marked store under it answers, and the
    /// batched calls reach the inner store as batches.
    fn assert_forwards(what: &str, w: &dyn Store, log: &Mutex<Vec<&'static str>>) {
        let spec: StoreSpec = "encrypted:marked.enc".parse().unwrap();
        let ids: Vec<CredentialId> = vec!["m/a".parse().unwrap(), "m/b".parse().unwrap()];
        let c = Marked::item(&ids[0]);
        let creds = vec![c.clone(), Marked::item(&ids[1])];
        assert_eq!(w.spec(), &spec, "{what}: spec");
        assert_eq!(w.probe().warnings, ["marked probe"], "{what}: probe");
        assert_eq!(w.batch_hint(), BatchHint::WholeFile, "{what}: batch_hint");
        assert!(w.inventory_from_listing(), "{what}: inventory_from_listing");
        assert!(
            !w.read_wanted(&ids).unwrap().credentials.is_empty(),
            "{what}: read_wanted"
        );
        assert_eq!(
            w.check(&c).as_deref(),
            Some("marked check"),
            "{what}: check"
        );
        assert_eq!(
            w.verify_hashed(&c).unwrap(),
            Some(true),
            "{what}: verify_hashed"
        );
        assert!(
            w.unmigrated().iter().any(|l| l == "marked unmigrated"),
            "{what}: unmigrated"
        );
        let lock = w
            .lock(LockMode::Exclusive, Duration::ZERO)
            .unwrap()
            .expect("a lock");
        assert_eq!(
            w.identity().unwrap().key,
            "marked:identity",
            "{what}: identity"
        );
        assert_eq!(lock.describe(), "marked lock", "{what}: lock");
        let scan = w.read_all().unwrap();
        assert!(
            scan.errors.iter().any(|e| e.error == "marked scan"),
            "{what}: read_all"
        );
        assert!(!w.list().unwrap().entries.is_empty(), "{what}: list");
        assert!(w.read(&ids[0]).unwrap().is_some(), "{what}: read");
        w.write(&c).unwrap();
        assert!(w.delete(&ids[0]).unwrap(), "{what}: delete");
        let batched = |batch: &'static str, ok: bool| {
            assert!(ok, "{what}: {batch} failed");
            let calls = std::mem::take(&mut *log.lock().unwrap());
            assert!(
                calls.contains(&batch),
                "{what}: {batch} did not reach the inner store as a batch: {calls:?}"
            );
        };
        log.lock().unwrap().clear();
        w.set_provenance(&Provenance {
            migration_id: "m".into(),
            source: "dotenv:a.env".into(),
        });
        batched("set_provenance", true);
        w.release_cache();
        batched("release_cache", true);
        batched("read_many", w.read_many(&ids).iter().all(Result::is_ok));
        batched("write_many", w.write_many(&creds).iter().all(Result::is_ok));
        batched("delete_many", w.delete_many(&ids).iter().all(Result::is_ok));
        // Compare-and-delete reaches the inner store as itself, so its
        // atomic override is the one that runs.
        batched(
            "delete_if_unchanged",
            w.delete_if_unchanged(&creds)
                .iter()
                .all(|r| matches!(r, Ok(DeleteIf::Deleted))),
        );
        // Compare-and-write reaches the inner store as itself too.
        let replace: Vec<Replace> = creds
            .iter()
            .map(|c| Replace {
                expected: None,
                new: c.clone(),
            })
            .collect();
        batched(
            "replace_if_unchanged",
            w.replace_if_unchanged(&replace)
                .iter()
                .all(|r| matches!(r, Ok(ReplaceIf::Changed))),
        );
    }

    fn marked() -> (Box<dyn Store>, Arc<Mutex<Vec<&'static str>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let m = Marked {
            spec: "encrypted:marked.enc".parse().unwrap(),
            log: log.clone(),
        };
        (Box::new(m), log)
    }

    #[test]
    fn the_fault_layer_forwards_every_method() {
        let (m, log) = marked();
        let w = FaultyStore::new(m, Faults::default());
        assert_forwards("faults", &w, &log);
    }

    #[test]
    fn the_legacy_metadata_layer_forwards_every_method() {
        let (m, log) = marked();
        let w = crate::store::legacy_meta::wrap(m);
        assert_forwards("legacy_meta", w.as_ref(), &log);
    }

    #[test]
    fn both_layers_as_open_stacks_them_forward_every_method() {
        let (m, log) = marked();
        let w = FaultyStore::new(crate::store::legacy_meta::wrap(m), Faults::default());
        assert_forwards("faults over legacy_meta", &w, &log);
    }
}
