//! Fault injection (a documented test aid, inert unless set):
//! `CREDSHIFT_FAULTS="write:GLOB,read:GLOB,delete:GLOB"` makes those store
//! operations fail for ids matching GLOB (`*` any run, `?` one char). The
//! value must be exactly that: one or more `OP:GLOB` separated by commas,
//! `OP` one of `write`, `read`, `delete`, GLOB not empty; anything else is
//! refused ([`Faults::parse_strict`]), never guessed at.

use crate::credential::{Credential, CredentialId};
use crate::error::{Result, StoreError};
use crate::store::{Capability, Listing, Scan, Store, StoreSpec};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub write: Vec<String>,
    pub read: Vec<String>,
    pub delete: Vec<String>,
}

impl Faults {
    /// Parse `op:GLOB,op:GLOB`. Unknown ops are ignored (it is a test aid).
    pub fn parse(s: &str) -> Faults {
        let mut f = Faults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((op, glob)) = part.split_once(':') {
                let list = match op {
                    "write" => &mut f.write,
                    "read" => &mut f.read,
                    "delete" => &mut f.delete,
                    _ => continue,
                };
                list.push(glob.to_string());
            }
        }
        f
    }

    /// The exact `CREDSHIFT_FAULTS` syntax; an error says what is wrong.
    pub fn parse_strict(s: &str) -> std::result::Result<Faults, String> {
        let mut f = Faults::default();
        if s.is_empty() {
            return Err("empty; expected OP:GLOB[,OP:GLOB...]".into());
        }
        for part in s.split(',') {
            let Some((op, glob)) = part.split_once(':') else {
                return Err(format!("{part:?} is not OP:GLOB"));
            };
            if glob.is_empty() {
                return Err(format!("{part:?} has an empty GLOB"));
            }
            let list = match op {
                "write" => &mut f.write,
                "read" => &mut f.read,
                "delete" => &mut f.delete,
                _ => {
                    return Err(format!(
                        "{op:?} is not an operation (write, read or delete)"
                    ));
                }
            };
            list.push(glob.to_string());
        }
        Ok(f)
    }

    /// `CREDSHIFT_FAULTS` when set and well-formed (the CLI refuses a
    /// malformed value before anything runs).
    pub fn from_env() -> Option<Faults> {
        let v = std::env::var("CREDSHIFT_FAULTS").ok()?;
        Faults::parse_strict(&v).ok()
    }

    fn hits(globs: &[String], id: &CredentialId) -> bool {
        let s = id.to_string();
        globs.iter().any(|g| glob_match(g, &s))
    }
}

/// Minimal glob: `*` matches any run (including `/`), `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A store whose operations fail for matching ids.
pub struct FaultyStore {
    inner: Box<dyn Store>,
    faults: Faults,
}

impl FaultyStore {
    pub fn new(inner: Box<dyn Store>, faults: Faults) -> Self {
        FaultyStore { inner, faults }
    }
}

pub fn wrap_from_env(store: Box<dyn Store>) -> Box<dyn Store> {
    match Faults::from_env() {
        Some(f) => Box::new(FaultyStore::new(store, f)),
        None => store,
    }
}

impl Store for FaultyStore {
    fn spec(&self) -> &StoreSpec {
        self.inner.spec()
    }

    fn batch_hint(&self) -> crate::store::BatchHint {
        self.inner.batch_hint()
    }
    fn probe(&self) -> Capability {
        self.inner.probe()
    }
    fn list(&self) -> Result<Listing> {
        self.inner.list()
    }
    fn check(&self, c: &Credential) -> Option<String> {
        self.inner.check(c)
    }
    fn unmigrated(&self) -> Vec<String> {
        self.inner.unmigrated()
    }
    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        if Faults::hits(&self.faults.read, id) {
            return Err(StoreError::Injected {
                id: id.clone(),
                op: "read",
            });
        }
        self.inner.read(id)
    }
    fn write(&self, c: &Credential) -> Result<()> {
        if Faults::hits(&self.faults.write, &c.id) {
            return Err(StoreError::Injected {
                id: c.id.clone(),
                op: "write",
            });
        }
        self.inner.write(c)
    }
    fn delete(&self, id: &CredentialId) -> Result<bool> {
        if Faults::hits(&self.faults.delete, id) {
            return Err(StoreError::Injected {
                id: id.clone(),
                op: "delete",
            });
        }
        self.inner.delete(id)
    }
    fn read_all(&self) -> Result<Scan> {
        if self.faults.read.is_empty() {
            return self.inner.read_all();
        }
        let mut scan = self.inner.read_all()?;
        let (bad, good): (Vec<_>, Vec<_>) = scan
            .credentials
            .into_iter()
            .partition(|c| Faults::hits(&self.faults.read, &c.id));
        scan.credentials = good;
        for c in bad {
            let e = StoreError::Injected {
                id: c.id.clone(),
                op: "read",
            };
            scan.errors.push(crate::store::LocationError::from_error(
                c.id.to_string(),
                &e,
            ));
        }
        Ok(scan)
    }
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        // Injected failures land on exactly the matching ids; the rest go
        // to the inner store as one batch (some stores need the batch).
        let hit: Vec<bool> = creds
            .iter()
            .map(|c| Faults::hits(&self.faults.write, &c.id))
            .collect();
        let pass: Vec<Credential> = creds
            .iter()
            .zip(&hit)
            .filter(|(_, h)| !**h)
            .map(|(c, _)| c.clone())
            .collect();
        // Nothing left to write: the inner store is not touched at all (a
        // file store would create its file for an empty batch).
        let mut inner = if pass.is_empty() {
            Vec::new()
        } else {
            self.inner.write_many(&pass)
        }
        .into_iter();
        creds
            .iter()
            .zip(hit)
            .map(|(c, h)| {
                if h {
                    Err(StoreError::Injected {
                        id: c.id.clone(),
                        op: "write",
                    })
                } else {
                    inner
                        .next()
                        .unwrap_or_else(|| Err(StoreError::item(&c.id, "store returned no result")))
                }
            })
            .collect()
    }
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let hit: Vec<bool> = ids
            .iter()
            .map(|id| Faults::hits(&self.faults.delete, id))
            .collect();
        let pass: Vec<CredentialId> = ids
            .iter()
            .zip(&hit)
            .filter(|(_, h)| !**h)
            .map(|(id, _)| id.clone())
            .collect();
        let mut inner = if pass.is_empty() {
            Vec::new()
        } else {
            self.inner.delete_many(&pass)
        }
        .into_iter();
        ids.iter()
            .zip(hit)
            .map(|(id, h)| {
                if h {
                    Err(StoreError::Injected {
                        id: id.clone(),
                        op: "delete",
                    })
                } else {
                    inner
                        .next()
                        .unwrap_or_else(|| Err(StoreError::item(id, "store returned no result")))
                }
            })
            .collect()
    }
    fn verify_hashed(&self, c: &Credential) -> Result<Option<bool>> {
        self.inner.verify_hashed(c)
    }
    fn lock(&self, wait: std::time::Duration) -> Result<Option<Box<dyn crate::store::StoreLock>>> {
        self.inner.lock(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "account:a/api_key"));
        assert!(glob_match("account:*", "account:a/api_key"));
        assert!(glob_match("*/api_key", "account:a/api_key"));
        assert!(glob_match("env/?", "env/A"));
        assert!(!glob_match("env/?", "env/AB"));
        assert!(!glob_match("openai/*", "account:a/api_key"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn the_environment_syntax_is_exact() {
        let f = Faults::parse_strict("write:account:*,read:env/*,delete:x").unwrap();
        assert_eq!(f.write, vec!["account:*"]);
        assert_eq!(f.read, vec!["env/*"]);
        assert_eq!(f.delete, vec!["x"]);
        for bad in [
            "",
            "write",
            "write:",
            "bogus:y",
            "Write:x",
            " write:x",
            "write:x,",
            "write:x,,read:y",
        ] {
            assert!(Faults::parse_strict(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_ops() {
        let f = Faults::parse("write:account:*, read:env/*,delete:x,bogus:y");
        assert_eq!(f.write, vec!["account:*"]);
        assert_eq!(f.read, vec!["env/*"]);
        assert_eq!(f.delete, vec!["x"]);
    }
}
