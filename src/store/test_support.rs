//! Scaffolding shared by the stores' unit tests: unlock options that stretch
//! no key for long, and the credentials the tests write.

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::unlock::KeyOptions;

/// A passphrase under a 1,000-iteration KDF (allowed as weak), so a test
/// spends no time stretching keys. `pass` is a short tag ("pw", "other"):
/// the passphrase is the tag with a fixed suffix, so it passes the rule for
/// new passphrases while different tags stay different passphrases.
pub fn weak_opts(pass: &str) -> KeyOptions {
    KeyOptions {
        passphrase: Some(Secret::new(test_passphrase(pass))),
        ..no_key()
    }
}

/// The passphrase [`weak_opts`] uses for the tag `pass`.
pub fn test_passphrase(pass: &str) -> String {
    format!("{pass} unit-test passphrase")
}

/// Weak KDFs allowed, and no passphrase or key file at all.
pub fn no_key() -> KeyOptions {
    KeyOptions {
        allow_weak_kdf: true,
        kdf_iterations: 1000,
        ..KeyOptions::default()
    }
}

/// An API key at `ns/name` holding `secret`.
pub fn api_key(ns: &str, name: &str, secret: &str) -> Credential {
    Credential::new(CredentialId::new(ns, name), Kind::ApiKey, secret)
}

/// [`api_key`] with a `label` (`ns-name`) in its metadata, for stores that
/// keep metadata.
pub fn labelled(ns: &str, name: &str, secret: &str) -> Credential {
    let mut m = Metadata::new();
    m.insert("label".into(), format!("{ns}-{name}").into());
    api_key(ns, name, secret).with_metadata(m)
}

thread_local! {
    /// What "another application" does right after a store's next
    /// `read_many` has read (see [`after_next_read`]).
    static AFTER_READ: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` right after this thread's next `read_many` of a store that
/// calls [`run_after_read`] (SQLite, `.env`): the moment a read, compare,
/// then delete is exposed to another writer.
pub fn after_next_read(f: impl FnOnce() + 'static) {
    AFTER_READ.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

/// `other` (another application's handle) writes `c` right after this
/// thread's next read of a store that calls [`run_after_read`]; the flag
/// says whether it has.
pub fn write_after_next_read(
    other: Box<dyn crate::store::Store>,
    c: Credential,
) -> std::rc::Rc<std::cell::Cell<bool>> {
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let f2 = fired.clone();
    after_next_read(move || {
        other.write(&c).unwrap();
        f2.set(true);
    });
    fired
}

/// Called by the stores' `read_many` in unit tests.
pub fn run_after_read() {
    if let Some(f) = AFTER_READ.with(|h| h.borrow_mut().take()) {
        f();
    }
}

/// `s` holds `orig` (written through it); another application (`other`,
/// the same store opened again) writes `changed` at the worst moment a
/// read-compare-delete has: right after the read. Whenever it writes, a
/// compare-and-delete of `orig` must not remove its value, and must say
/// what it did. Fails for a store whose `delete_if_unchanged` is the
/// read-then-delete default.
pub fn assert_compare_and_delete_keeps_a_racing_write(
    s: &dyn crate::store::Store,
    other: Box<dyn crate::store::Store>,
    orig: &Credential,
    changed: &Credential,
) {
    use crate::store::DeleteIf;
    s.write(orig).unwrap();
    let orig = s.read(&orig.id).unwrap().expect("written");
    let fired = write_after_next_read(other, changed.clone());
    let r = s.delete_if_unchanged(std::slice::from_ref(&orig));
    let during = fired.get();
    // Not raced during the delete: the other application writes after it.
    run_after_read();
    assert!(fired.get());
    let now = s.read(&orig.id).unwrap();
    assert!(
        now.as_ref()
            .is_some_and(|n| n.secret.ct_eq(&changed.secret)),
        "another application's value was deleted (raced during the delete: {during})"
    );
    let want = if during {
        DeleteIf::Changed
    } else {
        DeleteIf::Deleted
    };
    assert_eq!(r.len(), 1);
    assert_eq!(*r[0].as_ref().unwrap(), want);
    // Plain outcomes: changed kept, absent, deleted.
    let now = now.unwrap();
    let r = s.delete_if_unchanged(&[orig.clone(), now.clone()]);
    let r: Vec<DeleteIf> = r.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(r, [DeleteIf::Changed, DeleteIf::Deleted]);
    assert!(s.read(&orig.id).unwrap().is_none());
    let r = s.delete_if_unchanged(std::slice::from_ref(&now));
    assert_eq!(*r[0].as_ref().unwrap(), DeleteIf::Absent);
}

/// The compare-and-write counterpart of
/// [`assert_compare_and_delete_keeps_a_racing_write`]: `s` holds `ours`;
/// another application (`other`) writes `theirs` right after the read of a
/// compare-and-write that puts `old` back. Whenever it writes, its value
/// must stay and the result must say what happened. Then the plain
/// outcomes: a changed value kept, a matching one replaced, an item
/// expected absent written only while absent. Fails for a store whose
/// `replace_if_unchanged` is the read-then-write default.
pub fn assert_compare_and_replace_keeps_a_racing_write(
    s: &dyn crate::store::Store,
    other: Box<dyn crate::store::Store>,
    ours: &Credential,
    old: &Credential,
    theirs: &Credential,
) {
    use crate::store::{Replace, ReplaceIf};
    s.write(ours).unwrap();
    let ours = s.read(&ours.id).unwrap().expect("written");
    let fired = write_after_next_read(other, theirs.clone());
    let put_back = |expected: Option<&Credential>| Replace {
        expected: expected.cloned(),
        new: old.clone(),
    };
    let r = s.replace_if_unchanged(&[put_back(Some(&ours))]);
    let during = fired.get();
    // Not raced during the write: the other application writes after it.
    run_after_read();
    assert!(fired.get());
    let now = s.read(&ours.id).unwrap().expect("a value");
    assert!(
        now.secret.ct_eq(&theirs.secret),
        "another application's value was overwritten (raced during the write: {during})"
    );
    let want = if during {
        ReplaceIf::Changed
    } else {
        ReplaceIf::Replaced
    };
    assert_eq!(r.len(), 1);
    assert_eq!(*r[0].as_ref().unwrap(), want);
    // Plain outcomes: a stale expectation and "expected absent" keep the
    // value there; the value as read is replaced.
    let r: Vec<ReplaceIf> = s
        .replace_if_unchanged(&[put_back(Some(&ours))])
        .into_iter()
        .chain(s.replace_if_unchanged(&[put_back(None)]))
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(r, [ReplaceIf::Changed, ReplaceIf::Changed]);
    assert!(
        s.read(&ours.id)
            .unwrap()
            .unwrap()
            .secret
            .ct_eq(&theirs.secret)
    );
    let r = s.replace_if_unchanged(&[put_back(Some(&now))]);
    assert_eq!(*r[0].as_ref().unwrap(), ReplaceIf::Replaced);
    assert!(s.read(&ours.id).unwrap().unwrap().secret.ct_eq(&old.secret));
    // Absent: written when nothing is there, refused when a value is.
    assert!(s.delete(&ours.id).unwrap());
    let r = s.replace_if_unchanged(&[put_back(None)]);
    assert_eq!(*r[0].as_ref().unwrap(), ReplaceIf::Replaced);
    assert!(s.read(&ours.id).unwrap().unwrap().secret.ct_eq(&old.secret));
}
