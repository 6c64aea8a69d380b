//! Tests of the legacy-metadata layer.

use super::*;
use crate::credential::Kind;
use crate::store::memory::MemStore;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const HOOK: &str = "https://hooks.slack.com/services/T0LEGACY/B0LEGACY/legacyHookSecret01";
const KEY: &str = "sk-proj-legacyNestedKey000000000001";

fn id(s: &str) -> CredentialId {
    s.parse().unwrap()
}

fn legacy(name: &str) -> Credential {
    let meta = json!({
        "webhook_url": HOOK,
        "channel": "#alerts",
        "nested": {"api_key": KEY, "region": "eu"},
    });
    let Value::Object(m) = meta else {
        unreachable!()
    };
    Credential::new(id(name), Kind::ApiKey, "the-parent-value-0001").with_metadata(m)
}

fn layer(creds: Vec<Credential>) -> (MemStore, LegacyMeta) {
    // An envelope store's spec: its listing is the full scan (the
    // in-memory store lists scrubbed metadata, as the file stores do).
    let mem = MemStore::new("encrypted:legacy-test.enc".parse().unwrap(), creds, true);
    let s = LegacyMeta::new(Box::new(mem.clone()));
    (mem, s)
}

fn raw(mem: &MemStore, name: &str) -> Option<Credential> {
    mem.snapshot().into_iter().find(|c| c.id == id(name))
}

#[test]
fn secret_metadata_becomes_items_and_the_parent_keeps_the_public_part() {
    let (_, s) = layer(vec![
        legacy("slack/bot"),
        Credential::new(id("a/b"), Kind::ApiKey, "v"),
    ]);
    let scan = s.read_all().unwrap();
    let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "a/b",
            "slack/bot",
            "slack/bot#webhook_url",
            "slack/bot#nested.api_key"
        ]
    );
    let parent = &scan.credentials[1];
    assert_eq!(
        Value::Object(parent.metadata.clone()),
        json!({"channel": "#alerts", "nested": {"region": "eu"}})
    );
    assert_eq!(parent.secret.expose(), "the-parent-value-0001");
    let hook = &scan.credentials[2];
    assert_eq!(hook.secret.expose(), HOOK);
    assert_eq!(hook.metadata[PARENT_KEY], "slack/bot");
    assert_eq!(scan.credentials[3].kind, Kind::ApiKey);
    // The listing (what inventory and the plan show) has no secret.
    let listing = s.list().unwrap();
    let text = serde_json::to_string(&listing.entries).unwrap();
    assert!(
        !text.contains("legacyHookSecret01") && !text.contains(KEY),
        "{text}"
    );
    assert_eq!(listing.entries.len(), 4);
    // One by one and in batches, the same items.
    let d = s.read(&id("slack/bot#nested.api_key")).unwrap().unwrap();
    assert_eq!(d.secret.expose(), KEY);
    assert!(s.read(&id("slack/bot#channel")).unwrap().is_none());
    assert!(s.read(&id("slack/gone#webhook_url")).unwrap().is_none());
    let many = s.read_many(&[
        id("slack/bot#webhook_url"),
        id("slack/bot"),
        id("slack/bot#nope"),
        id("a/b"),
    ]);
    let got: Vec<Option<String>> = many
        .into_iter()
        .map(|r| r.unwrap().map(|c| c.secret.expose().to_string()))
        .collect();
    assert_eq!(
        got,
        [
            Some(HOOK.to_string()),
            Some("the-parent-value-0001".to_string()),
            None,
            Some("v".to_string())
        ]
    );
    assert!(s.unmigrated().is_empty());
}

#[test]
fn a_parent_goes_only_together_with_every_secret_of_its_metadata() {
    let (mem, s) = layer(vec![legacy("slack/bot")]);
    // The parent alone: refused, nothing changes.
    let e = s.delete(&id("slack/bot")).unwrap_err().to_string();
    assert!(e.contains("kept") && e.contains("webhook_url"), "{e}");
    assert!(!e.contains("legacyHookSecret01"), "{e}");
    // One derived item while the other is left: refused too.
    let r = s.delete_many(&[id("slack/bot"), id("slack/bot#webhook_url")]);
    assert!(r.iter().all(Result::is_err), "{r:?}");
    assert_eq!(
        raw(&mem, "slack/bot").unwrap().metadata["webhook_url"],
        HOOK
    );
    // Both derived items, not the parent: the parent loses its secret
    // metadata and keeps its value and public metadata.
    let r = s.delete_many(&[id("slack/bot#nested.api_key"), id("slack/bot#webhook_url")]);
    assert!(r.iter().all(|r| matches!(r, Ok(true))), "{r:?}");
    let p = raw(&mem, "slack/bot").unwrap();
    assert_eq!(p.secret.expose(), "the-parent-value-0001");
    assert_eq!(
        Value::Object(p.metadata),
        json!({"channel": "#alerts", "nested": {"region": "eu"}})
    );
    assert!(s.read(&id("slack/bot#webhook_url")).unwrap().is_none());
    // Now the parent alone is an ordinary delete.
    assert!(s.delete(&id("slack/bot")).unwrap());
    assert!(mem.snapshot().is_empty());
    // A derived id whose parent is gone: nothing to remove.
    assert!(!s.delete(&id("slack/bot#webhook_url")).unwrap());
}

#[test]
fn a_parent_and_all_its_secrets_in_one_batch_are_deleted() {
    let (mem, s) = layer(vec![legacy("slack/bot"), legacy("slack/other")]);
    let r = s.delete_many(&[
        id("slack/bot"),
        id("slack/bot#nested.api_key"),
        id("slack/bot#webhook_url"),
        id("slack/other#webhook_url"),
    ]);
    assert!(matches!(r[0..3], [Ok(true), Ok(true), Ok(true)]), "{r:?}");
    assert!(r[3].is_err(), "its sibling stays: {r:?}");
    let left: Vec<String> = mem.snapshot().iter().map(|c| c.id.to_string()).collect();
    assert_eq!(left, ["slack/other"]);
    assert_eq!(
        raw(&mem, "slack/other").unwrap().metadata["webhook_url"],
        HOOK
    );
}

/// Counts the ids the layer reads from the store in batches.
struct Counted {
    inner: MemStore,
    reads: Arc<AtomicUsize>,
}

impl Store for Counted {
    forward!(inner; spec, probe, list, read, write, delete, read_all, write_many, delete_many,
        identity);
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        self.reads.fetch_add(ids.len(), Ordering::SeqCst);
        self.inner.read_many(ids)
    }
}

fn counted(creds: Vec<Credential>) -> (MemStore, LegacyMeta, Arc<AtomicUsize>) {
    let (mem, _) = layer(creds);
    let reads = Arc::new(AtomicUsize::new(0));
    let s = LegacyMeta::new(Box::new(Counted {
        inner: mem.clone(),
        reads: reads.clone(),
    }));
    (mem, s, reads)
}

#[test]
fn a_delete_right_after_reading_its_batch_reads_nothing_again() {
    let (mem, s, reads) = counted(vec![
        legacy("slack/bot"),
        legacy("slack/kept"),
        Credential::new(id("a/b"), Kind::ApiKey, "v"),
    ]);
    // What cleanup does: read the batch, check it, delete it.
    let batch = [
        id("a/b"),
        id("slack/bot"),
        id("slack/bot#webhook_url"),
        id("slack/bot#nested.api_key"),
        id("slack/kept"),
        id("slack/kept#webhook_url"),
    ];
    assert!(s.read_many(&batch).iter().all(|r| matches!(r, Ok(Some(_)))));
    reads.store(0, Ordering::SeqCst);
    let r = s.delete_many(&batch);
    assert_eq!(reads.load(Ordering::SeqCst), 0, "read again");
    assert!(
        matches!(r[..4], [Ok(true), Ok(true), Ok(true), Ok(true)]),
        "{r:?}"
    );
    // What was read still decides: a secret not in the batch keeps its parent.
    assert!(r[4].is_err() && r[5].is_err(), "{r:?}");
    let left: Vec<String> = mem.snapshot().iter().map(|c| c.id.to_string()).collect();
    assert_eq!(left, ["slack/kept"]);
    assert_eq!(
        raw(&mem, "slack/kept").unwrap().metadata["webhook_url"],
        HOOK
    );
    // Used once: the next delete reads for itself.
    assert!(!s.delete(&id("a/b")).unwrap());
    assert_eq!(reads.load(Ordering::SeqCst), 1);
}

#[test]
fn a_write_after_the_read_makes_the_delete_read_again() {
    let plain = Credential::new(id("slack/bot"), Kind::ApiKey, "the-parent-value-0001");
    let (mem, s, reads) = counted(vec![plain]);
    assert!(s.read_many(&[id("slack/bot")])[0].is_ok());
    // Since that read, the parent gained secret metadata.
    s.write(&legacy("slack/bot")).unwrap();
    reads.store(0, Ordering::SeqCst);
    let e = s.delete(&id("slack/bot")).unwrap_err().to_string();
    assert!(e.contains("kept") && e.contains("webhook_url"), "{e}");
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    assert_eq!(
        raw(&mem, "slack/bot").unwrap().metadata["webhook_url"],
        HOOK
    );
}

#[test]
fn any_other_call_between_the_read_and_the_delete_makes_the_delete_read_again() {
    type Call = fn(&dyn Store);
    let calls: [(&str, Call); 3] = [
        ("read", |s| drop(s.read(&id("other/x")))),
        ("list", |s| drop(s.list())),
        ("read_all", |s| drop(s.read_all())),
    ];
    for (name, call) in calls {
        let plain = Credential::new(id("slack/bot"), Kind::ApiKey, "the-parent-value-0001");
        let (mem, s, reads) = counted(vec![plain]);
        assert!(s.read_many(&[id("slack/bot")])[0].is_ok());
        call(&s);
        // Meanwhile another program gave the parent secret metadata.
        mem.write(&legacy("slack/bot")).unwrap();
        reads.store(0, Ordering::SeqCst);
        let e = s.delete(&id("slack/bot")).unwrap_err().to_string();
        assert!(
            e.contains("kept") && e.contains("webhook_url"),
            "{name}: {e}"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1, "{name}");
    }
}

#[test]
fn what_no_id_can_name_is_left_and_named() {
    let mut hashed = legacy("ns/we#ird");
    hashed.metadata.remove("nested");
    let clash = Credential::new(id("slack/bot#webhook_url"), Kind::Other, "native");
    let (_, s) = layer(vec![hashed, legacy("slack/bot"), clash]);
    let scan = s.read_all().unwrap();
    let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "ns/we#ird",
            "slack/bot",
            "slack/bot#webhook_url",
            "slack/bot#nested.api_key"
        ]
    );
    assert_eq!(scan.credentials[2].secret.expose(), "native");
    let left = s.unmigrated();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left[0].contains("ns/we#ird: metadata webhook_url"),
        "{left:?}"
    );
    assert!(
        left[1].contains("an item named slack/bot#webhook_url exists"),
        "{left:?}"
    );
    assert!(!format!("{left:?}").contains("legacyHookSecret01"));
    // The item wins on read as in the listing.
    let c = s.read(&id("slack/bot#webhook_url")).unwrap().unwrap();
    assert_eq!(c.secret.expose(), "native");
}

#[test]
fn only_our_own_store_kinds_get_the_layer() {
    for (spec, ours) in [
        ("keyring:x", true),
        ("sqlite:a.db", true),
        ("postgres://u@h/db", true),
        ("encrypted:a.enc", true),
        ("bundle:a.json", true),
        ("dotenv:.env", true),
        ("env:", false),
        ("prompttrain:/x", false),
        ("modelforge:c.json", false),
        ("laravel:sqlite:a.db", false),
    ] {
        assert_eq!(applies(&spec.parse().unwrap()), ours, "{spec}");
    }
}

/// Another application writes `changed` over the parent right after the
/// layer's read: a compare-and-delete of the parent with its derived
/// items, or of a derived item alone (a rewrite of the parent), keeps it.
#[test]
fn compare_and_delete_keeps_a_parent_another_application_wrote_meanwhile() {
    use crate::store::test_support::{after_next_read, weak_opts};
    let dir = tempfile::tempdir().unwrap();
    let spec = StoreSpec::Encrypted(dir.path().join("legacy.enc"));
    let open = || crate::store::encrypted::open(&spec, &weak_opts("pw")).unwrap();
    let mut changed = legacy("slack/bot");
    changed.secret = crate::credential::Secret::new("another-apps-value-0002");
    for whole in [true, false] {
        open().write(&legacy("slack/bot")).unwrap();
        let s = LegacyMeta::new(open());
        let mut ids = vec![id("slack/bot#webhook_url"), id("slack/bot#nested.api_key")];
        if whole {
            ids.insert(0, id("slack/bot"));
        }
        let expected: Vec<Credential> = s
            .read_many(&ids)
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        let other = open();
        let c2 = changed.clone();
        let write = move || other.write(&c2).unwrap();
        if whole {
            // Right after the layer's read of the ids.
            after_next_read(write);
        } else {
            // Right after its read of their parent, the last read before
            // the parent is rewritten without its secret metadata.
            after_next_read(move || after_next_read(write));
        }
        let r: Vec<DeleteIf> = s
            .delete_if_unchanged(&expected)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(r, vec![DeleteIf::Changed; ids.len()], "whole={whole}");
        let now = open().read(&id("slack/bot")).unwrap().unwrap();
        assert!(
            now.same_as(&changed),
            "whole={whole}: the other value stays"
        );
        // Unchanged, the same call deletes.
        let expected: Vec<Credential> = s
            .read_many(&ids)
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        let r: Vec<DeleteIf> = s
            .delete_if_unchanged(&expected)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(r, vec![DeleteIf::Deleted; ids.len()], "whole={whole}");
        let left = open().read(&id("slack/bot")).unwrap();
        assert_eq!(left.is_some(), !whole, "whole={whole}");
        if let Some(p) = left {
            assert!(
                p.metadata.get("webhook_url").is_none(),
                "rewritten without its secrets"
            );
        }
    }
}

/// What a read saw is looked up by id whatever order the batch came in,
/// with a repeated id and a parent read only for its derived item.
#[test]
fn a_batch_read_out_of_order_with_a_repeated_id_still_decides_the_delete() {
    let (mem, s, reads) = counted(vec![
        legacy("slack/bot"),
        Credential::new(id("z/last"), Kind::ApiKey, "v1"),
        Credential::new(id("a/first"), Kind::ApiKey, "v2"),
    ]);
    let batch = [
        id("z/last"),
        id("slack/bot#webhook_url"),
        id("a/first"),
        id("z/last"),
        id("slack/bot#nested.api_key"),
        id("slack/bot"),
    ];
    assert!(s.read_many(&batch).iter().all(|r| matches!(r, Ok(Some(_)))));
    reads.store(0, Ordering::SeqCst);
    let r = s.delete_many(&batch);
    assert_eq!(reads.load(Ordering::SeqCst), 0, "read again: {r:?}");
    assert!(r[0..3].iter().all(|r| matches!(r, Ok(true))), "{r:?}");
    assert!(mem.snapshot().is_empty(), "{:?}", mem.snapshot());
}

#[test]
fn seen_ids_keep_the_last_of_a_repeated_id() {
    let c = |v: &str| Seen::of(Some(&legacy(v)));
    let seen = SeenIds::new(vec![
        (id("b/x"), Seen::Plain),
        (id("a/x"), c("a/x")),
        (id("b/x"), Seen::Absent),
    ]);
    assert!(matches!(seen.get(&id("b/x")), Some(Seen::Absent)));
    assert!(matches!(seen.get(&id("a/x")), Some(Seen::Raw(_))));
    assert!(seen.get(&id("c/x")).is_none());
}
