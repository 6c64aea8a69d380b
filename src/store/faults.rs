//! Fault injection, the one mechanism behind both test doubles: a
//! [`Faults`] set of [`Fault`] rules decides whether a call fails
//! ([`Faults::hit`]), and [`Faulty`] wraps a store with it. The in-memory
//! store ([`crate::store::memory::MemStore`]) is a `Faulty` over a map, so a
//! test can tell it to fail its next call, or every call of one kind, or
//! the calls whose id matches a glob (the idea of keyring's mock store,
//! which holds an error for the next call); `CREDSHIFT_FAULTS` wraps any
//! real store the same way ([`wrap_from_test_aids`]).
//!
//! `CREDSHIFT_FAULTS="write:GLOB,read:GLOB,delete:GLOB"` (a documented test
//! aid, inert unless set) makes those store operations fail for ids
//! matching GLOB (`*` any run, `?` one char); `lie:GLOB` makes every read of
//! those ids succeed with a wrong value (a store that does not return what
//! it holds). The value must be exactly that: one or more `OP:GLOB`
//! separated by commas, `OP` one of `write`, `read`, `delete`, `lie`, GLOB
//! not empty; anything else is refused ([`Faults::parse_strict`]), never
//! guessed at.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::credential::{Credential, CredentialId};
use crate::error::{Result, StoreError};
use crate::store::wrapper::forward;
use crate::store::{DeleteIf, Scan, Store};

/// The store operations a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Delete,
    /// Not a failure: a read that succeeds with a wrong value.
    Lie,
}

impl Op {
    /// The name in `CREDSHIFT_FAULTS` and in the injected error.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Delete => "delete",
            Op::Lie => "lie",
        }
    }

    fn from_name(s: &str) -> Option<Op> {
        match s {
            "read" => Some(Op::Read),
            "write" => Some(Op::Write),
            "delete" => Some(Op::Delete),
            "lie" => Some(Op::Lie),
            _ => None,
        }
    }
}

/// One rule: calls of `op` (any operation when `None`) on ids matching
/// `glob` fail, `times` more times (`None`: every time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: Option<Op>,
    pub glob: String,
    pub times: Option<usize>,
}

impl Fault {
    /// The next call of `op` (any operation when `None`), whatever its id.
    pub fn next(op: Option<Op>) -> Fault {
        Fault {
            op,
            glob: "*".into(),
            times: Some(1),
        }
    }

    /// Every call of `op` (any operation when `None`) on ids matching `glob`.
    pub fn matching(op: Option<Op>, glob: &str) -> Fault {
        Fault {
            op,
            glob: glob.into(),
            times: None,
        }
    }

    /// One `OP:GLOB` of `CREDSHIFT_FAULTS`; an error says what is wrong.
    fn parse(part: &str) -> std::result::Result<Fault, String> {
        let Some((op, glob)) = part.split_once(':') else {
            return Err(format!("{part:?} is not OP:GLOB"));
        };
        if glob.is_empty() {
            return Err(format!("{part:?} has an empty GLOB"));
        }
        let Some(op) = Op::from_name(op) else {
            return Err(format!(
                "{op:?} is not an operation (write, read, delete or lie)"
            ));
        };
        Ok(Fault::matching(Some(op), glob))
    }

    fn applies(&self, op: Op, id: &str) -> bool {
        self.op.is_none_or(|o| o == op) && glob_match(&self.glob, id)
    }
}

/// A set of rules. Clones share it: a test keeps one to arm more faults
/// after the store went into the engine.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Fault>>>,
}

impl Faults {
    /// Parse `op:GLOB,op:GLOB` leniently (spaces and empty parts skipped,
    /// unknown ops ignored: it is a test aid), through the same rule parser
    /// as [`Faults::parse_strict`].
    pub fn parse(s: &str) -> Faults {
        let f = Faults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Ok(rule) = Fault::parse(part) {
                f.add(rule);
            }
        }
        f
    }

    /// The exact `CREDSHIFT_FAULTS` syntax; an error says what is wrong.
    pub fn parse_strict(s: &str) -> std::result::Result<Faults, String> {
        if s.is_empty() {
            return Err("empty; expected OP:GLOB[,OP:GLOB...]".into());
        }
        let f = Faults::default();
        for part in s.split(',') {
            f.add(Fault::parse(part)?);
        }
        Ok(f)
    }

    /// The `CREDSHIFT_FAULTS` test aid as `main` installed it (checked
    /// there: a malformed value is refused before anything runs).
    pub fn from_test_aids() -> Option<Faults> {
        let v = crate::test_aids::get().faults.as_deref()?;
        Faults::parse_strict(v).ok()
    }

    /// Arm one more rule (rules are tried in the order they were added).
    pub fn add(&self, rule: Fault) {
        self.rules().push(rule);
    }

    /// Arm every rule of `other` too (after this set's own).
    pub fn extend(&self, other: &Faults) {
        let more = other.rules().clone();
        self.rules().extend(more);
    }

    /// The globs of the rules for `op`, in order.
    pub fn globs(&self, op: Op) -> Vec<String> {
        self.rules()
            .iter()
            .filter(|f| f.op == Some(op))
            .map(|f| f.glob.clone())
            .collect()
    }

    /// The one place that decides "this call fails": the error for a call
    /// of `op` on `id` when a rule applies (a counted rule is used up by
    /// it), `None` when the call goes through.
    pub fn hit(&self, op: Op, id: &CredentialId) -> Option<StoreError> {
        let mut rules = self.rules();
        if rules.is_empty() {
            return None;
        }
        let text = id.to_string();
        let i = rules.iter().position(|f| f.applies(op, &text))?;
        if let Some(n) = rules[i].times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(StoreError::Injected {
            id: id.clone(),
            op: op.name(),
        })
    }

    /// Whether a `lie` rule covers `id`, without using one of its times.
    fn lies_about(&self, id: &CredentialId) -> bool {
        let text = id.to_string();
        self.rules().iter().any(|f| f.applies(Op::Lie, &text))
    }

    fn rules(&self) -> MutexGuard<'_, Vec<Fault>> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
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

/// A store whose reads, writes and deletes ask its [`Faults`] first.
/// Clones share the faults (and whatever the inner store shares).
#[derive(Clone)]
pub struct Faulty<S> {
    inner: S,
    faults: Faults,
}

/// A real store wrapped (what `CREDSHIFT_FAULTS` does to every store).
pub type FaultyStore = Faulty<Box<dyn Store>>;

impl FaultyStore {
    pub fn new(inner: Box<dyn Store>, faults: Faults) -> Self {
        Faulty::wrap(inner, faults)
    }
}

impl<S> Faulty<S> {
    pub fn wrap(inner: S, faults: Faults) -> Self {
        Faulty { inner, faults }
    }

    /// The rules this store asks (shared with its clones).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The next call of `op` (any operation when `None`) fails.
    pub fn fail_next(&self, op: Option<Op>) {
        self.faults.add(Fault::next(op));
    }

    /// Every call of `op` (any operation when `None`) on ids matching
    /// `glob` fails.
    pub fn fail_matching(&self, op: Option<Op>, glob: &str) {
        self.faults.add(Fault::matching(op, glob));
    }

    pub(crate) fn inner(&self) -> &S {
        &self.inner
    }
}

pub fn wrap_from_test_aids(store: Box<dyn Store>) -> Box<dyn Store> {
    match Faults::from_test_aids() {
        Some(f) => Box::new(FaultyStore::new(store, f)),
        None => store,
    }
}

/// The value a lying read returns instead of what the store holds.
pub const LIE: &str = "credshift-fault-injected-wrong-value";

impl Faults {
    /// `found` as a lying store returns it: a `lie` rule for its id swaps
    /// the value for [`LIE`] (kind and metadata stay).
    fn tell(&self, found: Option<Credential>) -> Option<Credential> {
        let c = found?;
        Some(match self.hit(Op::Lie, &c.id) {
            Some(_) => Credential::new(c.id.clone(), c.kind, LIE).with_metadata(c.metadata.clone()),
            None => c,
        })
    }
}

/// What a batched call is about: a credential or an id.
trait Item: Clone {
    fn id(&self) -> &CredentialId;
}

impl Item for Credential {
    fn id(&self) -> &CredentialId {
        &self.id
    }
}

impl Item for crate::store::Replace {
    fn id(&self) -> &CredentialId {
        &self.new.id
    }
}

impl Item for CredentialId {
    fn id(&self) -> &CredentialId {
        self
    }
}

impl<S> Faulty<S> {
    /// Run the calls no fault hits as one batch on the inner store (some
    /// stores need the batch); the others get their injected error, in
    /// order. Nothing left: the inner store is not touched at all (a file
    /// store would create its file for an empty batch).
    fn batch<T: Item, R>(
        &self,
        op: Op,
        items: &[T],
        inner: impl FnOnce(&[T]) -> Vec<Result<R>>,
    ) -> Vec<Result<R>> {
        let hits: Vec<Option<StoreError>> =
            items.iter().map(|t| self.faults.hit(op, t.id())).collect();
        let pass: Vec<T> = items
            .iter()
            .zip(&hits)
            .filter(|(_, h)| h.is_none())
            .map(|(t, _)| t.clone())
            .collect();
        let mut done = if pass.is_empty() {
            Vec::new()
        } else {
            inner(&pass)
        }
        .into_iter();
        items
            .iter()
            .zip(hits)
            .map(|(t, h)| match h {
                Some(e) => Err(e),
                None => done
                    .next()
                    .unwrap_or_else(|| Err(StoreError::item(t.id(), "store returned no result"))),
            })
            .collect()
    }
}

/// Reads, writes and deletes ask the faults first; everything else is the
/// inner store's (see [`crate::store::wrapper`]).
#[deny(clippy::missing_trait_methods)]
impl<S: AsRef<dyn Store> + Send + Sync> Store for Faulty<S> {
    forward!([inner.as_ref()]; spec, batch_hint, probe, list, check, unmigrated,
        verify_hashed, lock, identity, set_provenance, inventory_from_listing, release_cache);
    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        match self.faults.hit(Op::Read, id) {
            Some(e) => Err(e),
            None => Ok(self.faults.tell(self.inner.as_ref().read(id)?)),
        }
    }
    fn write(&self, c: &Credential) -> Result<()> {
        match self.faults.hit(Op::Write, &c.id) {
            Some(e) => Err(e),
            None => self.inner.as_ref().write(c),
        }
    }
    fn delete(&self, id: &CredentialId) -> Result<bool> {
        match self.faults.hit(Op::Delete, id) {
            Some(e) => Err(e),
            None => self.inner.as_ref().delete(id),
        }
    }
    /// Through this layer's own `read_all`, so what it does to reads
    /// applies (the inner store's narrower read would bypass it).
    fn read_wanted(&self, _ids: &[CredentialId]) -> Result<Scan> {
        self.read_all()
    }

    fn read_all(&self) -> Result<Scan> {
        let mut scan = self.inner.as_ref().read_all()?;
        let mut good = Vec::with_capacity(scan.credentials.len());
        for c in std::mem::take(&mut scan.credentials) {
            match self.faults.hit(Op::Read, &c.id) {
                Some(e) => scan.errors.push(crate::store::LocationError::from_error(
                    c.id.to_string(),
                    &e,
                )),
                None => good.extend(self.faults.tell(Some(c))),
            }
        }
        scan.credentials = good;
        Ok(scan)
    }
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        self.batch(Op::Read, ids, |pass| self.inner.as_ref().read_many(pass))
            .into_iter()
            .map(|r| r.map(|found| self.faults.tell(found)))
            .collect()
    }
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        self.batch(Op::Write, creds, |pass| {
            self.inner.as_ref().write_many(pass)
        })
    }
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        self.batch(Op::Delete, ids, |pass| {
            self.inner.as_ref().delete_many(pass)
        })
    }
    /// A lying store holds, as far as anyone can tell, what it returns:
    /// items it lies about are compared with what it reads (read, compare,
    /// delete), the rest reach the inner store's compare-and-delete.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        if expected.iter().any(|c| self.faults.lies_about(&c.id)) {
            return crate::store::delete_if_unchanged_by_reading(self, expected);
        }
        self.batch(Op::Delete, expected, |pass| {
            self.inner.as_ref().delete_if_unchanged(pass)
        })
    }
    /// As [`Self::delete_if_unchanged`], for a compare-and-write.
    fn replace_if_unchanged(
        &self,
        items: &[crate::store::Replace],
    ) -> Vec<Result<crate::store::ReplaceIf>> {
        if items.iter().any(|r| self.faults.lies_about(&r.new.id)) {
            return crate::store::replace_if_unchanged_by_reading(self, items);
        }
        self.batch(Op::Write, items, |pass| {
            self.inner.as_ref().replace_if_unchanged(pass)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSpec;

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
        assert_eq!(f.globs(Op::Write), vec!["account:*"]);
        assert_eq!(f.globs(Op::Read), vec!["env/*"]);
        assert_eq!(f.globs(Op::Delete), vec!["x"]);
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
        assert_eq!(f.globs(Op::Write), vec!["account:*"]);
        assert_eq!(f.globs(Op::Read), vec!["env/*"]);
        assert_eq!(f.globs(Op::Delete), vec!["x"]);
    }

    fn creds(ids: &[&str]) -> Vec<Credential> {
        ids.iter()
            .map(|id| Credential::new(id.parse().unwrap(), crate::credential::Kind::ApiKey, "v"))
            .collect()
    }

    fn id(s: &str) -> CredentialId {
        s.parse().unwrap()
    }

    fn injected(e: &StoreError) -> Option<&'static str> {
        match e {
            StoreError::Injected { op, .. } => Some(op),
            _ => None,
        }
    }

    #[test]
    fn the_next_call_fails_once_then_the_store_works() {
        let m = crate::store::memory::MemStore::new(
            StoreSpec::Dotenv("m.env".into()),
            creds(&["a/x"]),
            true,
        );
        m.fail_next(Some(Op::Write));
        // A read is not the armed kind: it goes through and uses nothing up.
        assert!(m.read(&id("a/x")).unwrap().is_some());
        let first = m.write(&creds(&["b/y"])[0]).unwrap_err();
        assert_eq!(injected(&first), Some("write"));
        assert_eq!(m.snapshot().len(), 1, "the failed write wrote nothing");
        m.write(&creds(&["b/y"])[0]).unwrap();
        assert_eq!(m.snapshot().len(), 2);

        m.fail_next(None);
        assert_eq!(injected(&m.delete(&id("a/x")).unwrap_err()), Some("delete"));
        assert!(m.delete(&id("a/x")).unwrap());
    }

    #[test]
    fn a_glob_rule_fails_every_matching_call_of_its_kind() {
        let m = crate::store::memory::MemStore::new(
            StoreSpec::Dotenv("m.env".into()),
            creds(&["a/x", "a/y", "b/x"]),
            true,
        );
        let shared = m.clone();
        shared.fail_matching(None, "a/*");
        for _ in 0..2 {
            assert_eq!(injected(&m.read(&id("a/x")).unwrap_err()), Some("read"));
            assert_eq!(injected(&m.delete(&id("a/y")).unwrap_err()), Some("delete"));
        }
        assert!(m.read(&id("b/x")).unwrap().is_some());
        let scan = m.read_all().unwrap();
        let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["b/x"]);
        assert_eq!(scan.errors.len(), 2);
        let r = m.write_many(&creds(&["a/z", "c/z", "b/z"]));
        assert_eq!(injected(r[0].as_ref().unwrap_err()), Some("write"));
        assert!(r[1].is_ok() && r[2].is_ok());
        assert_eq!(m.snapshot().len(), 5);
    }

    #[test]
    fn the_environment_rules_wrap_a_real_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.env");
        let spec = StoreSpec::Dotenv(path.clone());
        let real =
            crate::store::dotenv::open(&spec, &crate::unlock::KeyOptions::default()).unwrap();
        let f = FaultyStore::new(
            real,
            Faults::parse_strict("write:env/B*,delete:env/A*").unwrap(),
        );
        let all_fail = f.write_many(&creds(&["env/B1"]));
        assert!(all_fail[0].is_err());
        assert!(!path.exists(), "an all-failing batch leaves the file alone");
        let r = f.write_many(&creds(&["env/A", "env/B2", "env/C"]));
        assert!(r[0].is_ok() && r[2].is_ok());
        assert_eq!(injected(r[1].as_ref().unwrap_err()), Some("write"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("A=") && text.contains("C=") && !text.contains("B2"));
        let d = f.delete_many(&[id("env/A"), id("env/C")]);
        assert_eq!(injected(d[0].as_ref().unwrap_err()), Some("delete"));
        assert!(d[1].as_ref().unwrap());
    }
}
