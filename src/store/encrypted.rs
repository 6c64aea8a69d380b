//! `encrypted:PATH`: one credshift envelope (see `crypto::envelope`) holding
//! every credential. `bundle:PATH` is the same file used as a transfer
//! bundle (see `store::bundle`).
//!
//! Every operation reads the file afresh (another process may have replaced
//! it), but decrypts it only when its bytes differ from what this store last
//! read or wrote (compared by SHA-256, so the file's bytes are not kept);
//! every change rewrites it atomically (temp file, fsync,
//! rename; mode 0600). Writing is a read-modify-write of the whole file, so
//! prefer `write_many` for batches. The key is derived once per opened store and cached with the
//! KDF parameters it belongs to: rewrites keep the file's salt and draw a
//! fresh nonce, so only the first operation pays for PBKDF2. A file sealed
//! with other parameters (replaced by another process) is derived again.
//! A wrong passphrase shows at the first operation that reads the file, as
//! a `Crypto` error naming the file; nothing is written then.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};


use crate::credential::{Credential, CredentialId};
use crate::crypto::envelope::{self, Envelope, KeySource, SealingKey};
use crate::crypto::kdf;
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::{
    Capability, DeleteIf, Entry, Listing, Replace, ReplaceIf, Scan, Store, StoreSpec,
};
use crate::unlock::KeyOptions;

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    match spec {
        StoreSpec::Encrypted(path) => Ok(Box::new(EnvelopeFileStore::new(
            spec.clone(),
            path.clone(),
            opts,
        ))),
        _ => Err(StoreError::Other(format!(
            "{spec}: not an encrypted: spec (internal error)"
        ))),
    }
}

/// A store kept in one envelope file. Shared by `encrypted:` and `bundle:`.
pub struct EnvelopeFileStore {
    spec: StoreSpec,
    path: PathBuf,
    opts: KeyOptions,
    /// The lock also serializes read-modify-write cycles.
    state: Mutex<State>,
}

mod plain;
use plain::{Edit, Item, Plain};

#[derive(Default)]
struct State {
    /// The derived key, with the KDF parameters it belongs to.
    key: Option<SealingKey>,
    /// SHA-256 of the file's bytes as last read or written (of ciphertext,
    /// not secret) and what they hold: an unchanged file is not decrypted
    /// again.
    /// The one copy of every item this store keeps: reads decode the
    /// items they return, and a rewrite serializes only what changed.
    seen: Option<([u8; 32], Plain)>,
    /// After [`Store::release_cache`]: the digest of the file then, whose
    /// plaintext was as a save writes it. The same bytes read again decrypt
    /// to the same plaintext, so it is indexed by a scan of its fragments'
    /// bounds, without decoding and re-encoding every item once more (and
    /// without keeping the index while released: a fifth of a 100,000-item
    /// cleanup's peak).
    released: Option<[u8; 32]>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut d = [0u8; 32];
    d.copy_from_slice(&sha2::Sha256::digest(bytes));
    d
}

/// [`digest`] of a file's bytes, read in blocks.
fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(&h.finalize());
    Ok(d)
}

impl EnvelopeFileStore {
    pub fn new(spec: StoreSpec, path: PathBuf, opts: &KeyOptions) -> Self {
        EnvelopeFileStore {
            spec,
            path,
            opts: opts.clone(),
            state: Mutex::new(State::default()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state valid:
        // each field only ever holds a complete value or nothing.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make `st.seen` match the file: read it, and decrypt it unless it is
    /// byte for byte what was last seen. A missing file is `NotFound`.
    fn refresh(&self, st: &mut State) -> Result<()> {
        let loc = self.location();
        if self.path.is_dir() {
            return Err(StoreError::parse(loc, "is a directory, not a file"));
        }
        // Unchanged since last seen (every read-back after our own write):
        // hashed as it streams by, not read whole (a file's worth of memory
        // at a migration's peak).
        if let Some((seen, _)) = &st.seen
            && file_digest(&self.path).is_ok_and(|d| d == *seen)
        {
            return Ok(());
        }
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                st.seen = None;
                return Err(StoreError::NotFound {
                    location: loc,
                    hint: "it is created by the first write".into(),
                });
            }
            Err(e) => return Err(StoreError::io(&self.path, e)),
        };
        let d = digest(&bytes);
        if let Some((seen, _)) = &st.seen
            && *seen == d
        {
            return Ok(());
        }
        st.seen = None;
        let released = st.released.take().is_some_and(|r| r == d);
        let env = Envelope::parse(&bytes, &loc, self.opts.allow_weak_kdf)?;
        drop(bytes);
        let cache = &mut st.key;
        let key = match cache {
            Some(k) if k.params() == env.params() => k,
            _ => {
                let source = KeySource::for_params(&self.opts, Some(env.params()), &loc)?;
                cache.insert(SealingKey::derive(env.params(), &source, &loc)?)
            }
        };
        let plain = key.open_owned(env)?;
        // The file as it was released: its index as it was.
        let plain = if released {
            match Plain::index_known(plain) {
                Ok(items) => {
                    st.seen = Some((d, items));
                    return Ok(());
                }
                Err(plain) => plain,
            }
        } else {
            plain
        };
        // A file this store wrote is kept as it is read.
        let plain = match Plain::adopt(plain) {
            Ok(items) => {
                st.seen = Some((d, items));
                return Ok(());
            }
            Err(plain) => plain,
        };
        let list = envelope::decode_credentials(&plain, &loc)?;
        drop(plain);
        // Serialized again as a save does: a file from another writer
        // becomes the plaintext this store would have written.
        let mut items = Edit::new(Plain::empty());
        for c in &list {
            items.put(c)?;
        }
        let items = items.apply()?;
        drop(list);
        st.seen = Some((d, items));
        Ok(())
    }

    /// The file's credentials.
    fn load<'a>(&self, st: &'a mut State) -> Result<&'a Plain> {
        self.refresh(st)?;
        match &st.seen {
            Some((_, items)) => Ok(items),
            None => Err(StoreError::Other(format!(
                "{}: contents vanished after reading",
                self.location()
            ))),
        }
    }

    /// The file's credentials, owned, for changing and saving; empty when
    /// there is no file yet.
    fn take_or_empty<'a>(&self, st: &mut State) -> Result<Edit<'a>> {
        match self.refresh(st) {
            Ok(()) => Ok(Edit::new(
                st.seen
                    .take()
                    .map_or_else(Plain::empty, |(_, items)| items),
            )),
            Err(StoreError::NotFound { .. }) if !self.path.exists() => {
                Ok(Edit::new(Plain::empty()))
            }
            Err(e) => Err(e),
        }
    }

    /// Apply the edit, seal and write atomically, deriving a new key
    /// (fresh salt) when the store has none yet. The plaintext is sealed
    /// in place and decrypted back once written, so the store keeps it
    /// without a second buffer of its size.
    fn save(&self, st: &mut State, items: Edit<'_>) -> Result<()> {
        let cache = &mut st.key;
        let key = match cache {
            Some(k) => k,
            None => cache.insert(SealingKey::for_options(&self.opts, &self.location())?),
        };
        let mut items = items.apply()?;
        let sealed = key.seal_for_writing(items.take_buffer())?;
        let mut d = [0u8; 32];
        let written = fsutil::atomic_write_with(&self.path, |f| {
            d = sealed.write_to(f)?;
            Ok(())
        });
        // Not kept when the write failed: the next operation reads the file.
        written?;
        // The file is written: a failure to open the sealed copy back only
        // costs the cache (the next operation reads the file), never the
        // write's success.
        st.seen = match key.unseal(sealed) {
            Ok(plain) => {
                items.restore(plain);
                Some((d, items))
            }
            Err(_) => None,
        };
        Ok(())
    }

    /// The credential the fragment under `id` holds, with that id: the id
    /// as written (a `/` inside a namespace reads back split at the first
    /// `/`), as when the store kept credentials.
    fn decode(&self, id: &CredentialId, fragment: &[u8]) -> Result<Credential> {
        let mut c = envelope::decode_credential_fragment(fragment, &self.location())?;
        c.id = id.clone();
        Ok(c)
    }

    /// [`decode`](Self::decode) of an item an edit holds.
    fn decode_item(&self, id: &CredentialId, item: Item<'_>) -> Result<Credential> {
        match item {
            Item::Fragment(f) => self.decode(id, f),
            Item::Credential(c) => Ok(c.clone()),
        }
    }

    fn writable(&self) -> bool {
        let target = if self.path.exists() {
            self.path.clone()
        } else {
            // The nearest existing ancestor is where the file or its
            // directories would be created.
            let mut dir = fsutil::parent_dir(&self.path);
            while !dir.exists() {
                match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
                    _ => {
                        dir = PathBuf::from(".");
                        break;
                    }
                }
            }
            dir
        };
        crate::fsutil::writable(&target)
    }
}

impl Store for EnvelopeFileStore {
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        crate::store::path_identity(self.spec())
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// The decrypted copy of the file goes (wiped); the next operation
    /// reads and decrypts the file again (and finds the items' places by a
    /// scan when the file is byte for byte the same).
    fn release_cache(&self) {
        let mut st = self.lock();
        st.released = st.seen.take().map(|(d, _)| d);
    }

    /// Every batch rewrites the whole file.
    fn batch_hint(&self) -> crate::store::BatchHint {
        crate::store::BatchHint::WholeFile
    }

    fn probe(&self) -> Capability {
        let loc = self.location();
        if self.path.is_dir() {
            return Capability::unavailable(format!("{loc} is a directory, not a file"));
        }
        let exists = self.path.exists();
        let mut cap = Capability {
            writable: self.writable(),
            exists,
            ..Capability::persistent_store(true, true)
        };
        if !cap.writable {
            cap.warnings
                .push(format!("{loc} cannot be written by this user"));
        }
        if let Some(mode) = fsutil::mode_of(&self.path)
            && mode & 0o077 != 0
        {
            cap.warnings.push(format!(
                "{loc} is readable by others than its owner (mode {mode:o}); it is encrypted, \
                 but chmod 600 it"
            ));
        }
        if self.opts.passphrase.is_none()
            && let Some(kf) = &self.opts.key_file
        {
            cap.warnings.extend(kdf::key_file_warnings(kf));
            if matches!(self.spec, StoreSpec::Bundle(_)) && !exists {
                cap.warnings.push(format!(
                    "{loc} will be sealed with the key file {}, not a passphrase: the other \
                     device needs that key file too",
                    kf.display()
                ));
            }
        }
        if exists {
            let mut st = self.lock();
            match self.load(&mut st) {
                Ok(items) => cap.item_count = Some(items.len()),
                Err(e @ StoreError::MissingKey { .. }) => {
                    cap.reason = Some(format!("contents unknown until a key is given: {e}"));
                    cap.needs_key = Some(e.to_string());
                }
                Err(e) => {
                    cap.readable = false;
                    cap.reason = Some(e.to_string());
                    cap.warnings.push(e.to_string());
                }
            }
        } else if let Err(e) = KeySource::for_new_data(&self.opts, &loc) {
            cap.reason = Some(format!("a key is needed to create it: {e}"));
            match e {
                StoreError::MissingKey { .. } => cap.needs_key = Some(e.to_string()),
                _ => cap.warnings.push(e.to_string()),
            }
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        let mut st = self.lock();
        let items = self.load(&mut st)?;
        Ok(Listing {
            entries: items
                .iter()
                .map(|(id, f)| self.decode(id, f).map(|c| Entry::from(&c)))
                .collect::<Result<_>>()?,
            errors: Vec::new(),
        })
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let mut st = self.lock();
        self.load(&mut st)?
            .get(id)
            .map(|f| self.decode(id, f))
            .transpose()
    }

    fn write(&self, c: &Credential) -> Result<()> {
        let mut st = self.lock();
        let mut items = self.take_or_empty(&mut st)?;
        items.put(c)?;
        self.save(&mut st, items)
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let mut st = self.lock();
        match self.load(&mut st) {
            Err(StoreError::NotFound { .. }) if !self.path.exists() => return Ok(false),
            Err(e) => return Err(e),
            Ok(items) if !items.contains_key(id) => return Ok(false),
            Ok(_) => {}
        }
        let mut items = self.take_or_empty(&mut st)?;
        items.remove(id);
        self.save(&mut st, items)?;
        Ok(true)
    }

    fn read_all(&self) -> Result<Scan> {
        let mut st = self.lock();
        let items = self.load(&mut st)?;
        Ok(Scan {
            credentials: items
                .iter()
                .map(|(id, f)| self.decode(id, f))
                .collect::<Result<_>>()?,
            errors: Vec::new(),
        })
    }

    /// One look at the file (and at most one decryption) for the batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let mut st = self.lock();
        let out = match self.load(&mut st) {
            Ok(items) => ids
                .iter()
                .map(|id| items.get(id).map(|f| self.decode(id, f)).transpose())
                .collect(),
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        };
        drop(st);
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        out
    }

    /// One read-modify-rewrite under this store's lock: each item is
    /// compared with the file as just read, and only the matching ones
    /// leave it. Nothing runs between the comparison and the atomic
    /// rename but sealing the new file (an application that ignores
    /// credshift's lock and replaces the file in that moment is
    /// overwritten, as by any rewrite of it).
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let mut st = self.lock();
        match self.refresh(&mut st) {
            Ok(()) => {}
            Err(StoreError::NotFound { .. }) if !self.path.exists() => {
                return expected.iter().map(|_| Ok(DeleteIf::Absent)).collect();
            }
            Err(e) => return expected.iter().map(|_| Err(e.duplicate())).collect(),
        }
        let Some((digest_seen, items)) = st.seen.take() else {
            let e = StoreError::Other(format!("{}: contents vanished", self.location()));
            return expected.iter().map(|_| Err(e.duplicate())).collect();
        };
        let mut items = Edit::new(items);
        let out: Vec<Result<DeleteIf>> = expected
            .iter()
            .map(|want| {
                let Some(f) = items.get(&want.id) else {
                    return Ok(DeleteIf::Absent);
                };
                if !self.decode_item(&want.id, f)?.same_as(want) {
                    return Ok(DeleteIf::Changed);
                }
                items.remove(&want.id);
                Ok(DeleteIf::Deleted)
            })
            .collect();
        let items = match items.unchanged() {
            Ok(same) => {
                st.seen = Some((digest_seen, same));
                return out;
            }
            Err(changed) => changed,
        };
        match self.save(&mut st, items) {
            Ok(()) => out,
            Err(e) => expected.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    /// One load and at most one atomic rewrite under this store's lock,
    /// each item compared with the file as just read (see
    /// [`Self::delete_if_unchanged`]).
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let mut st = self.lock();
        let loaded = self.take_or_empty(&mut st);
        fsutil::rewrite_batch(
            items,
            loaded,
            |map, r| {
                let now = map
                    .get(&r.new.id)
                    .map(|f| self.decode_item(&r.new.id, f))
                    .transpose()?;
                if !r.holds(now.as_ref()) {
                    return Ok(ReplaceIf::Changed);
                }
                map.insert(
                    r.new.id.clone(),
                    envelope::encode_credential_fragment(&r.new)?,
                );
                Ok(ReplaceIf::Replaced)
            },
            |map| self.save(&mut st, map),
            |e, _| e.duplicate(),
        )
    }

    /// One load and at most one atomic rewrite for the whole batch.
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let mut st = self.lock();
        let present: Vec<bool> = match self.load(&mut st) {
            Err(StoreError::NotFound { .. }) if !self.path.exists() => {
                return ids.iter().map(|_| Ok(false)).collect();
            }
            Err(e) => return ids.iter().map(|_| Err(e.duplicate())).collect(),
            Ok(items) => {
                let mut seen = std::collections::BTreeSet::new();
                // A repeated id is deleted by its first mention only.
                ids.iter()
                    .map(|id| items.contains_key(id) && seen.insert(id))
                    .collect()
            }
        };
        if !present.contains(&true) {
            return present.into_iter().map(Ok).collect();
        }
        let result = self.take_or_empty(&mut st).and_then(|mut items| {
            for id in ids {
                items.remove(id);
            }
            self.save(&mut st, items)
        });
        match result {
            Ok(()) => present.into_iter().map(Ok).collect(),
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    /// One load and one atomic rewrite for the whole batch: all succeed or
    /// all fail with the same error.
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let mut st = self.lock();
        // As `fsutil::rewrite_batch`, but the edit borrows the batch's
        // credentials and serializes them only into the new plaintext.
        let mut items = match self.take_or_empty(&mut st) {
            Ok(items) => items,
            Err(e) => return creds.iter().map(|_| Err(e.duplicate())).collect(),
        };
        let mut results: Vec<Result<()>> = creds.iter().map(|c| items.put(c)).collect();
        if results.iter().any(|r| r.is_ok())
            && let Err(e) = self.save(&mut st, items)
        {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.duplicate());
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{labelled as cred, no_key, weak_opts as opts};

    fn store(path: &Path, o: &KeyOptions) -> Box<dyn Store> {
        open(&StoreSpec::Encrypted(path.to_path_buf()), o).unwrap()
    }

    #[test]
    fn missing_file_lists_not_found_and_first_write_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/creds.enc");
        let s = store(&p, &opts("pw"));
        let e = s.list().unwrap_err();
        assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
        assert!(!s.delete(&CredentialId::new("a", "b")).unwrap());
        let cap = s.probe();
        assert!(cap.available && cap.writable && !cap.exists, "{cap:?}");
        assert!(cap.encrypted_at_rest && cap.keeps_metadata && cap.persistent);
        s.write(&cred("a", "b", "secret-1")).unwrap();
        assert_eq!(fsutil::mode_of(&p), Some(0o600));
        assert_eq!(s.list().unwrap().entries.len(), 1);
        let cap = s.probe();
        assert_eq!(cap.item_count, Some(1));
        assert!(cap.exists);
    }

    #[test]
    fn write_many_is_one_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        let s = store(&p, &opts("pw"));
        let creds: Vec<_> = (0..5).map(|i| cred("ns", &format!("k{i}"), "v")).collect();
        assert!(s.write_many(&creds).iter().all(|r| r.is_ok()));
        assert_eq!(s.read_all().unwrap().credentials.len(), 5);
        // A batch against a file it cannot open fails as a whole, naming it.
        let other = store(&p, &opts("other"));
        let results = other.write_many(&creds);
        assert_eq!(results.len(), 5);
        for r in results {
            let e = r.unwrap_err();
            assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
            assert!(e.to_string().contains("c.enc"));
        }
        assert_eq!(s.read_all().unwrap().credentials.len(), 5);
    }

    #[test]
    fn probe_without_a_key_reports_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        store(&p, &opts("pw")).write(&cred("a", "b", "v")).unwrap();
        let cap = store(&p, &no_key()).probe();
        assert!(cap.available && cap.exists, "{cap:?}");
        assert_eq!(cap.item_count, None);
        assert!(cap.reason.unwrap().contains("--passphrase-file"));
        let cap = store(&p, &opts("wrong")).probe();
        assert!(!cap.readable);
        assert!(cap.reason.unwrap().contains("wrong passphrase"));
    }

    #[test]
    fn key_is_derived_once_and_salt_kept_across_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        let s = EnvelopeFileStore::new(StoreSpec::Encrypted(p.clone()), p.clone(), &opts("pw"));
        s.write(&cred("a", "b", "v1")).unwrap();
        let first: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        s.write(&cred("a", "c", "v2")).unwrap();
        let second: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(first["kdf"], second["kdf"]);
        assert_ne!(first["nonce"], second["nonce"]);
        // The cache holds the key for exactly these parameters.
        let st = s.lock();
        let params = st.key.as_ref().unwrap().params().clone();
        drop(st);
        let env = Envelope::parse(&std::fs::read(&p).unwrap(), "x", true).unwrap();
        assert_eq!(&params, env.params());
    }

    #[test]
    fn changes_by_another_writer_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        let a = store(&p, &opts("pw"));
        let b = store(&p, &opts("pw"));
        a.write(&cred("a", "one", "v1")).unwrap();
        assert_eq!(a.list().unwrap().entries.len(), 1);
        b.write(&cred("a", "two", "v2")).unwrap();
        // `a` has the old file cached; it must notice the new one.
        assert_eq!(a.list().unwrap().entries.len(), 2);
        a.write(&cred("a", "three", "v3")).unwrap();
        assert_eq!(b.read_all().unwrap().credentials.len(), 3);
        // Replaced by a file under another passphrase: fails, no stale answer.
        std::fs::remove_file(&p).unwrap();
        store(&p, &opts("other"))
            .write(&cred("x", "y", "z"))
            .unwrap();
        let e = a.list().unwrap_err();
        assert!(matches!(e, StoreError::Crypto { .. }), "{e:?}");
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(a.list().unwrap_err(), StoreError::NotFound { .. }));
    }

    /// Issue #26: a released store keeps no plaintext (only the file's
    /// digest), reads the same file back by a scan of its items' places,
    /// and a file another writer changed meanwhile is read as it is now.
    #[test]
    fn a_released_store_keeps_no_plaintext_and_reads_the_file_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        let a = EnvelopeFileStore::new(StoreSpec::Encrypted(p.clone()), p.clone(), &opts("pw"));
        let b = store(&p, &opts("pw"));
        a.write_many(&[cred("a", "one", "v1"), cred("a", "two", "v2")]);
        let ids: Vec<CredentialId> = ["a/one", "a/two"].iter().map(|i| i.parse().unwrap()).collect();
        let value = |s: &EnvelopeFileStore, i: usize| {
            s.read_many(&ids)[i].as_ref().unwrap().as_ref().map(|c| c.secret.expose().to_string())
        };
        assert_eq!(value(&a, 1).as_deref(), Some("v2"));
        a.release_cache();
        {
            let st = a.lock();
            assert!(st.seen.is_none(), "the plaintext is gone");
            assert!(st.released.is_some());
        }
        // The same file: its places again, the same answers.
        assert_eq!(value(&a, 0).as_deref(), Some("v1"));
        assert_eq!(value(&a, 1).as_deref(), Some("v2"));
        assert!(a.lock().released.is_none());
        // Changed by another writer after the release: read as it is now.
        a.release_cache();
        b.write(&cred("a", "one", "a much longer value than before")).unwrap();
        assert_eq!(value(&a, 0).as_deref(), Some("a much longer value than before"));
        assert_eq!(value(&a, 1).as_deref(), Some("v2"));
    }

    #[test]
    fn items_read_back_with_the_ids_they_were_written_under() {
        // The store keeps serialized items; what it returns carries the id
        // each was written under, even one whose namespace holds a `/`
        // (the text form alone would split it at the first `/`).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        let s = store(&p, &opts("pw"));
        let c = cred("account:acc/x", "t", "v1");
        assert!(s.write_many(std::slice::from_ref(&c))[0].is_ok());
        let back = s.read_many(std::slice::from_ref(&c.id)).pop().unwrap();
        let back = back.unwrap().unwrap();
        assert_eq!(back.id, c.id);
        assert_eq!(back.secret.expose(), "v1");
        assert_eq!(s.read(&c.id).unwrap().unwrap().id, c.id);
        assert_eq!(s.read_all().unwrap().credentials[0].id, c.id);
        assert_eq!(s.list().unwrap().entries.len(), 1);
    }

    #[test]
    fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        let s = store(&p, &opts("pw"));
        crate::store::test_support::assert_compare_and_replace_keeps_a_racing_write(
            s.as_ref(),
            store(&p, &opts("pw")),
            &cred("a", "b", "ours"),
            &cred("a", "b", "old"),
            &cred("a", "b", "theirs"),
        );
    }

    #[test]
    fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        let s = store(&p, &opts("pw"));
        s.write(&cred("a", "keep", "x")).unwrap();
        crate::store::test_support::assert_compare_and_delete_keeps_a_racing_write(
            s.as_ref(),
            store(&p, &opts("pw")),
            &cred("a", "b", "v1"),
            &cred("a", "b", "theirs"),
        );
        assert_eq!(
            s.read(&CredentialId::new("a", "keep"))
                .unwrap()
                .unwrap()
                .secret
                .expose(),
            "x"
        );
    }

    #[test]
    fn a_damaged_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.enc");
        std::fs::write(&p, b"{\"format\":\"credshift-envelope\"").unwrap();
        let s = store(&p, &opts("pw"));
        let e = s.write(&cred("a", "b", "v")).unwrap_err();
        assert!(matches!(e, StoreError::Parse { .. }), "{e:?}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"{\"format\":\"credshift-envelope\""
        );
    }
}
