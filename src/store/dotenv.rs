//! `dotenv:PATH`: a `.env` file, edited in place.
//!
//! Reading understands what real `.env` files hold: comments, blank lines,
//! `export` prefixes, single and double quotes (a `#` inside quotes is part of
//! the value), inline ` # comments` after unquoted values, escapes in double
//! quotes (`\n \r \t \" \\`), quoted values spanning lines, CRLF line endings
//! and a UTF-8 BOM.
//!
//! Ids are `env/<KEY>`. A write changes only the lines it must: an existing
//! key gets its value replaced in place (keeping `export`, the spacing around
//! `=`, the quoting style where it is safe for the value, and an inline
//! comment); a new key is appended at the end. The file keeps its line ending and BOM.
//!
//! Ids outside `env/` (and `env/` ids whose kind or metadata a bare line cannot
//! carry) are stored under a sanitized UPPER_SNAKE key with a marker comment
//! right above it: `# credshift: {"id":...,"kind":...,"metadata":{...}}`. The
//! marker never holds the secret; it makes id, kind and metadata survive a
//! round trip, so this store keeps metadata.
//!
//! Values are written so that `source`ing the file in a shell yields the
//! exact value and runs nothing, whatever the line's old quoting: bare,
//! single quotes (newlines literal), double quotes only for values nothing
//! in which is special, and `'\''` for a quote inside single quotes (see
//! `encode_value`). A value no quoting can carry (a NUL byte) is refused.
//!
//! A key assigned more than once is reported (a finding naming the key and
//! its lines); the last assignment is the one read, migrated and, on
//! delete, removed; the others stay and the delete says so.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use crate::credential::{Credential, CredentialId, Kind, Metadata};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::{
    Capability, DeleteIf, Entry, Listing, Replace, ReplaceIf, Scan, Store,
    StoreSpec, plaintext_file_warnings,
};
use crate::unlock::KeyOptions;

mod doc;
mod remove;
mod syntax;
use doc::{Doc, Purpose};
use remove::Meaning;
use syntax::unwritable;

const MARKER_PREFIX: &str = "credshift:";

pub fn open(spec: &StoreSpec, _opts: &KeyOptions) -> Result<Box<dyn Store>> {
    let StoreSpec::Dotenv(path) = spec else {
        return Err(StoreError::Other(format!("{spec} is not a dotenv spec")));
    };
    Ok(Box::new(DotenvStore {
        spec: spec.clone(),
        path: path.clone(),
        lock: Mutex::new(()),
    }))
}

pub struct DotenvStore {
    spec: StoreSpec,
    path: PathBuf,
    /// Serializes read-modify-write cycles within this process.
    lock: Mutex<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// What a marker comment carries. Never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    id: CredentialId,
    kind: Kind,
    #[serde(default)]
    metadata: Metadata,
}

/// Keys as real `.env` readers accept them.
pub(crate) fn valid_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The nearest existing ancestor of `path` (where a new file would go).
pub(crate) fn nearest_existing_dir(path: &Path) -> PathBuf {
    let mut dir = fsutil::parent_dir(path);
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    dir
}

impl DotenvStore {
    /// The parsed file, or `None` when it does not exist.
    fn load(&self, purpose: Purpose) -> Result<Option<Doc>> {
        fsutil::read_if_exists(&self.path)?
            .map(|bytes| Doc::parse(&self.path, bytes, purpose, None))
            .transpose()
    }

    /// [`load`](Self::load) of a document only read, never saved.
    fn load_to_read(&self) -> Result<Option<Doc>> {
        self.load(Purpose::Read)
    }

    /// [`load_to_read`](Self::load_to_read) keeping only the assignments
    /// of `ids`.
    fn load_ids(&self, ids: &[CredentialId]) -> Result<Option<Doc>> {
        self.load_ids_for(ids, Purpose::Read)
    }

    /// The file parsed for `purpose`, keeping whole assignments only for
    /// `ids` (see [`Doc::parse`]).
    fn load_ids_for(&self, ids: &[CredentialId], purpose: Purpose) -> Result<Option<Doc>> {
        let wanted: std::collections::HashSet<&CredentialId, foldhash::fast::RandomState> =
            ids.iter().collect();
        let keep = |id: &CredentialId| wanted.contains(id);
        fsutil::read_if_exists(&self.path)?
            .map(|bytes| Doc::parse(&self.path, bytes, purpose, Some(&keep)))
            .transpose()
    }

    fn load_existing(&self) -> Result<Doc> {
        self.load_to_read()?.ok_or_else(|| StoreError::NotFound {
            location: self.path.display().to_string(),
            hint: "no such .env file".into(),
        })
    }

    fn save(&self, doc: &Doc) -> Result<()> {
        fsutil::atomic_write_with(&self.path, |f| doc.render_to(f))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for DotenvStore {
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        crate::store::path_identity(self.spec())
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// Every batch rewrites the whole file.
    fn batch_hint(&self) -> crate::store::BatchHint {
        crate::store::BatchHint::WholeFile
    }

    fn probe(&self) -> Capability {
        let mut cap = Capability::persistent_store(false, true);
        match self.load_to_read() {
            Ok(Some(doc)) => {
                cap.exists = true;
                cap.item_count = Some(doc.effective().iter().filter(|on| **on).count());
                cap.writable = fsutil::writable(&self.path)
                    && fsutil::dir_writable(&fsutil::parent_dir(&self.path));
                cap.warnings = plaintext_file_warnings(&self.path);
                cap.warnings.extend(
                    doc.duplicates(&self.path)
                        .into_iter()
                        .map(|d| format!("{}: {}", d.location, d.error)),
                );
                if !doc.errors.is_empty() {
                    cap.warnings.push(format!(
                        "{}: {} line(s) could not be read",
                        self.path.display(),
                        doc.errors.len()
                    ));
                }
            }
            Ok(None) => {
                cap.exists = false;
                cap.item_count = Some(0);
                cap.writable = fsutil::dir_writable(&nearest_existing_dir(&self.path));
            }
            Err(e) => {
                cap.exists = self.path.exists();
                cap.readable = false;
                cap.reason = Some(e.to_string());
                cap.available = false;
            }
        }
        if !cap.writable && cap.available {
            cap.warnings
                .push(format!("{} cannot be written here", self.path.display()));
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        let doc = self.load_existing()?;
        let mut errors = doc.duplicates(&self.path);
        errors.extend(doc.errors.iter().cloned());
        Ok(Listing {
            entries: doc.credentials().iter().map(Entry::from).collect(),
            errors,
        })
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        // A file that is not there yet holds nothing (a fresh target).
        let Some(doc) = self.load_ids(std::slice::from_ref(id))? else {
            return Ok(None);
        };
        Ok(doc.credential(id))
    }

    /// One parse for the whole batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let loaded = self.load_ids(ids);
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        match loaded {
            Ok(Some(doc)) => ids.iter().map(|id| Ok(doc.credential(id))).collect(),
            Ok(None) => ids.iter().map(|_| Ok(None)).collect(),
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    fn read_all(&self) -> Result<Scan> {
        let mut doc = self.load_existing()?;
        let mut errors = doc.duplicates(&self.path);
        errors.append(&mut doc.errors);
        Ok(Scan {
            credentials: doc.into_credentials(),
            errors,
        })
    }

    fn check(&self, c: &Credential) -> Option<String> {
        unwritable(c.secret.expose()).map(str::to_string)
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or(Ok(()))
    }

    /// One parse and one atomic rewrite for the whole batch.
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let items: Vec<(&Credential, Option<&Replace>)> = creds.iter().map(|c| (c, None)).collect();
        self.put(&items)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect()
    }

    /// The comparison happens inside the read-modify-rewrite that writes,
    /// on the file as just read (see [`Self::delete_if_unchanged`]).
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let items: Vec<(&Credential, Option<&Replace>)> =
            items.iter().map(|r| (&r.new, Some(r))).collect();
        self.put(&items)
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(false))
    }

    /// One parse and at most one atomic rewrite for the whole batch.
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        self.remove(ids, None)
            .into_iter()
            .map(|r| r.map(|d| d == DeleteIf::Deleted))
            .collect()
    }

    /// The comparison happens inside the read-modify-rewrite that deletes,
    /// on the file as just read: nothing comes between the comparison and
    /// the rewrite but building the new text (the rewrite replaces the file
    /// atomically; an application that ignores credshift's lock and writes
    /// in that moment is overwritten, as by any rewrite of the file).
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let ids: Vec<CredentialId> = expected.iter().map(|c| c.id.clone()).collect();
        self.remove(&ids, Some(expected))
    }
}

impl DotenvStore {
    /// One parse and one atomic rewrite for the batch; an item with a
    /// [`Replace`] is set only where the file as just parsed holds what it
    /// expects.
    fn put(&self, items: &[(&Credential, Option<&Replace>)]) -> Vec<Result<ReplaceIf>> {
        let _g = self.guard();
        let loaded = self
            .load(Purpose::Write)
            .map(|d| d.unwrap_or_else(Doc::empty));
        // What the file must read as once written: what it read as before,
        // with each item that applied in its place.
        let before = match &loaded {
            Ok(doc) => Meaning::of(doc),
            Err(_) => Meaning::empty(),
        };
        let set = std::cell::RefCell::new(Vec::new());
        fsutil::rewrite_batch(
            items,
            loaded,
            |doc, (c, guard)| {
                if guard.is_some_and(|g| !g.holds(doc.credential(&c.id).as_ref())) {
                    return Ok(ReplaceIf::Changed);
                }
                let r = doc.set(c);
                if matches!(r, Ok(false)) {
                    doc.analyse(&self.path);
                }
                if r.is_ok() {
                    set.borrow_mut().push((c.id.clone(), c.secret.clone()));
                }
                r.map(|_| ReplaceIf::Replaced)
            },
            |doc| {
                let mut doc = doc;
                let expected = before.with(set.take());
                self.same_meaning(&mut doc, &expected, |_| false)?;
                self.save(&doc)
            },
            |e, (c, _)| StoreError::item(&c.id, e.to_string()),
        )
    }
}

#[cfg(test)]
mod tests;
