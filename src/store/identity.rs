//! What a store *is*, as opposed to how its spec spells it: the answer of
//! [`crate::store::Store::identity`]. Two specs naming one store (a link
//! and its file, `localhost` and `127.0.0.1`, `postgresql://` and
//! `postgres://`) give identities that [`StoreIdentity::same_store`] calls
//! the same, so a migration from a store to itself is refused before
//! anything runs; the journal keeps the identity so recovery refuses a
//! different store found where the migration's store was.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What an identity's key is made of; journals keep these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    File,
    Postgres,
    Keyring,
    Env,
    Vault,
    /// The engine's in-memory store (restore, tests).
    Memory,
    /// The test wrapper that marks a store's answers.
    Marked,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::File => "file",
            IdentityKind::Postgres => "postgres",
            IdentityKind::Keyring => "keyring",
            IdentityKind::Env => "env",
            IdentityKind::Vault => "vault",
            IdentityKind::Memory => "memory",
            IdentityKind::Marked => "marked",
        }
    }
}

/// A store's identity. Never holds a secret (no password, no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    pub kind: IdentityKind,
    /// Stable and canonical: the same for every spelling of one store, and
    /// unchanged by the writes credshift makes (a file rewritten by rename
    /// keeps its key). What the journal compares on recovery.
    pub key: String,
    /// Other names the store is known by right now (a file's device and
    /// inode, its directory entry), used only to tell that two specs are
    /// one store: hard links and bind mounts reach one file by two paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// For messages.
    pub display: String,
}

impl StoreIdentity {
    /// Whether `self` and `other` are one store.
    pub fn same_store(&self, other: &StoreIdentity) -> bool {
        self.key == other.key || self.aliases.iter().any(|a| other.aliases.contains(a))
    }

    /// The identity of a file or directory store at `path` (which may not
    /// exist yet): the canonical path (links followed, the nearest existing
    /// ancestor canonicalized) as the key, plus the device and inode of the
    /// file and of its directory entry's parent as aliases.
    pub fn of_path(path: &Path) -> StoreIdentity {
        use std::os::unix::fs::MetadataExt;
        let canon = canonical(path);
        let mut aliases = Vec::new();
        if let Ok(m) = std::fs::metadata(&canon) {
            aliases.push(format!("inode:{}:{}", m.dev(), m.ino()));
        }
        if let (Some(parent), Some(name)) = (canon.parent(), canon.file_name())
            && let Ok(m) = std::fs::metadata(parent)
        {
            aliases.push(format!(
                "entry:{}:{}/{}",
                m.dev(),
                m.ino(),
                name.to_string_lossy()
            ));
        }
        StoreIdentity {
            kind: IdentityKind::File,
            key: format!("file:{}", canon.display()),
            aliases,
            display: canon.display().to_string(),
        }
    }

    /// A store with nothing below a name (the keyring's service, `env:`).
    pub fn named(kind: IdentityKind, name: &str) -> StoreIdentity {
        let k = kind.as_str();
        StoreIdentity {
            kind,
            key: format!("{k}:{name}"),
            aliases: Vec::new(),
            display: format!("{k} {name}"),
        }
    }
}

impl std::fmt::Display for StoreIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// The absolute path a (possibly not yet existing) file will have: links
/// followed, the nearest existing ancestor canonicalized.
pub fn canonical(p: &Path) -> PathBuf {
    let abs = absolute(p);
    let real = crate::fsutil::resolve_links(&abs);
    if let Ok(c) = std::fs::canonicalize(&real) {
        return c;
    }
    let mut tail = Vec::new();
    let mut cur = real.as_path();
    while let Some(parent) = cur.parent() {
        if let Some(name) = cur.file_name() {
            tail.push(name.to_os_string());
        }
        if let Ok(c) = std::fs::canonicalize(parent) {
            let mut out = c;
            for n in tail.iter().rev() {
                out.push(n);
            }
            return out;
        }
        cur = parent;
    }
    real
}

/// `p` made absolute against the current directory, nothing resolved.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_keeps_its_key_when_rewritten_by_rename() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.env");
        std::fs::write(&f, "A=1\n").unwrap();
        let before = StoreIdentity::of_path(&f);
        std::fs::write(d.path().join("tmp"), "A=2\n").unwrap();
        std::fs::rename(d.path().join("tmp"), &f).unwrap();
        let after = StoreIdentity::of_path(&f);
        assert_eq!(before.key, after.key);
        assert!(before.same_store(&after));
        let other = StoreIdentity::of_path(&d.path().join("b.env"));
        assert!(!before.same_store(&other));
    }

    #[test]
    fn hard_links_are_one_store() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "x").unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        let a = StoreIdentity::of_path(&d.path().join("a"));
        let b = StoreIdentity::of_path(&d.path().join("b"));
        assert_ne!(a.key, b.key);
        assert!(a.same_store(&b));
    }
}
