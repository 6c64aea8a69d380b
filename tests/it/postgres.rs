use crate::support;

use support::pg;

#[test]
fn harness_gives_each_test_a_fresh_database() {
    let Some(a) = pg::fresh_db() else { return };
    let Some(b) = pg::fresh_db() else { return };
    assert_ne!(a.url(), b.url());
    pg::execute(
        &a.url(),
        "CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (7)",
    );
    let mut ca = pg::connect(&a.url());
    let x: i32 = ca.query_one("SELECT x FROM only_in_a", &[]).unwrap().get(0);
    assert_eq!(x, 7);
    let mut cb = pg::connect(&b.url());
    assert!(cb.query("SELECT x FROM only_in_a", &[]).is_err());
}

#[test]
fn harness_runs_the_fixture_schema() {
    let Some(db) = pg::fresh_db() else { return };
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/data.sql"));
    let mut c = pg::connect(&db.url());
    let n: i64 = c
        .query_one("SELECT count(*) FROM accounts", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
}

#[test]
fn own_server_stops_and_refuses_connections() {
    let Some(server) = pg::own_server() else {
        return;
    };
    let url = server.url();
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_ok());
    server.stop();
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_err());
}

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use credshift::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;

fn opts_with_passphrase(p: &str) -> KeyOptions {
    KeyOptions {
        passphrase: Some(Secret::new(p)),
        // The default 600,000 runs through the CLI (tests/it/leak_canary.rs).
        kdf_iterations: 100_000,
        ..KeyOptions::default()
    }
}

fn open(url: &str, opts: &KeyOptions) -> Box<dyn Store> {
    let spec: StoreSpec = url.parse().unwrap();
    store::open(&spec, opts).unwrap()
}

fn cred(id: &str, kind: Kind, value: &str) -> Credential {
    let mut m = Metadata::new();
    m.insert("label".into(), format!("label of {id}").into());
    Credential::new(id.parse().unwrap(), kind, value).with_metadata(m)
}

fn fixture_creds() -> Vec<Credential> {
    support::expected()
        .into_iter()
        .map(|(id, v)| {
            let cid: CredentialId = id.parse().unwrap();
            cred(&id, Kind::guess(&cid.name), &v)
        })
        .collect()
}

#[test]
fn credshift_table_round_trips_every_fixture_secret_with_metadata() {
    let Some(db) = pg::fresh_db() else { return };
    let s = open(
        &db.url(),
        &KeyOptions {
            passphrase: Some(Secret::new("correct horse battery staple")),
            ..KeyOptions::default()
        },
    );
    assert!(matches!(
        s.list(),
        Err(credshift::error::StoreError::NotFound { .. })
    ));
    let creds = fixture_creds();
    let results = s.write_many(&creds);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");

    let again = open(
        &db.url(),
        &KeyOptions {
            passphrase: Some(Secret::new("correct horse battery staple")),
            ..KeyOptions::default()
        },
    );
    let scan = again.read_all().unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    assert_eq!(scan.credentials.len(), creds.len());
    for c in &creds {
        let got = scan.credentials.iter().find(|g| g.id == c.id).unwrap();
        assert!(got.same_as(c), "{} differs", c.id);
    }
    // The stored rows hold no plaintext, and the meta row the default KDF.
    let mut client = pg::connect(&db.url());
    let iterations: i32 = client
        .query_one("SELECT iterations FROM credshift_meta", &[])
        .unwrap()
        .get(0);
    assert_eq!(iterations, 600_000);
    for row in client
        .query("SELECT ciphertext FROM credshift_credentials", &[])
        .unwrap()
    {
        let ct: Vec<u8> = row.get(0);
        for c in &creds {
            let v = c.secret.expose().as_bytes();
            assert!(!ct.windows(v.len()).any(|w| w == v), "plaintext in a row");
        }
    }
    assert_eq!(again.probe().item_count, Some(creds.len()));
}

#[test]
fn upserts_replace_and_delete_removes() {
    let Some(db) = pg::fresh_db() else { return };
    let s = open(&db.url(), &opts_with_passphrase("pw-one for the tests"));
    let a = cred("openai/api_key", Kind::ApiKey, "sk-proj-first-value-000000");
    s.write(&a).unwrap();
    let b = cred("openai/api_key", Kind::ApiKey, "sk-proj-second-value-11111");
    s.write(&b).unwrap();
    let got = s.read(&a.id).unwrap().unwrap();
    assert_eq!(got.secret.expose(), "sk-proj-second-value-11111");
    assert_eq!(s.list().unwrap().entries.len(), 1);
    assert!(s.delete(&a.id).unwrap());
    assert!(!s.delete(&a.id).unwrap());
    assert!(s.read(&a.id).unwrap().is_none());
}

#[test]
fn compare_and_delete_keeps_a_row_another_client_changed() {
    use credshift::store::DeleteIf;
    let Some(db) = pg::fresh_db() else { return };
    let s = open(&db.url(), &opts_with_passphrase("pw-one for the tests"));
    let other = open(&db.url(), &opts_with_passphrase("pw-one for the tests"));
    let a = cred("openai/api_key", Kind::ApiKey, "sk-proj-first-value-000000");
    let keep = cred("other/api_key", Kind::ApiKey, "sk-proj-kept-value-2222222");
    assert!(
        s.write_many(&[a.clone(), keep.clone()])
            .iter()
            .all(Result::is_ok)
    );
    let read = s.read(&a.id).unwrap().unwrap();
    // Another client writes after our read: the compare-and-delete of what
    // we read keeps its value.
    let b = cred("openai/api_key", Kind::ApiKey, "sk-proj-theirs-value-11111");
    other.write(&b).unwrap();
    let gone = cred("gone/api_key", Kind::ApiKey, "sk-proj-never-written-3333");
    let r: Vec<DeleteIf> = s
        .delete_if_unchanged(&[read, keep.clone(), gone])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(r, [DeleteIf::Changed, DeleteIf::Deleted, DeleteIf::Absent]);
    let now = s.read(&a.id).unwrap().unwrap();
    assert_eq!(now.secret.expose(), "sk-proj-theirs-value-11111");
    assert!(s.read(&keep.id).unwrap().is_none());
    let r = s.delete_if_unchanged(std::slice::from_ref(&now));
    assert_eq!(*r[0].as_ref().unwrap(), DeleteIf::Deleted);
    assert!(s.read(&a.id).unwrap().is_none());
}

#[test]
fn a_wrong_passphrase_is_caught_by_the_key_check() {
    let Some(db) = pg::fresh_db() else { return };
    let s = open(&db.url(), &opts_with_passphrase("right passphrase"));
    s.write(&cred("a/b", Kind::ApiKey, "value-value-value"))
        .unwrap();
    let wrong = open(&db.url(), &opts_with_passphrase("wrong passphrase"));
    let e = wrong.read_all().unwrap_err().to_string();
    assert!(e.contains("wrong passphrase or key"), "{e}");
    let r = wrong.write_many(&[cred("a/c", Kind::ApiKey, "other-value-xxxx")]);
    assert!(r[0].is_err());
    let n: i64 = pg::connect(&db.url())
        .query_one("SELECT count(*) FROM credshift_credentials", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the wrong key wrote nothing");
    let none = open(&db.url(), &KeyOptions::default());
    assert!(
        none.read_all()
            .unwrap_err()
            .to_string()
            .contains("passphrase")
    );
}

#[test]
fn a_value_moved_to_another_id_fails_to_decrypt() {
    let Some(db) = pg::fresh_db() else { return };
    let s = open(&db.url(), &opts_with_passphrase("pw for the tests"));
    s.write_many(&[
        cred("x/one", Kind::ApiKey, "value-one-111111"),
        cred("x/two", Kind::ApiKey, "value-two-222222"),
    ]);
    pg::execute(
        &db.url(),
        "UPDATE credshift_credentials SET nonce = o.nonce, ciphertext = o.ciphertext \
         FROM credshift_credentials o WHERE credshift_credentials.id = 'x/two' AND o.id = 'x/one'",
    );
    let scan = s.read_all().unwrap();
    assert_eq!(scan.credentials.len(), 1);
    assert_eq!(scan.credentials[0].id.to_string(), "x/one");
    assert_eq!(scan.errors.len(), 1);
    assert!(
        scan.errors[0].location.contains("x/two"),
        "{:?}",
        scan.errors
    );
}

#[test]
fn a_key_file_opens_the_store_and_a_passphrase_does_not() {
    let Some(db) = pg::fresh_db() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("store.key");
    std::fs::write(&kf, [0x5au8; 32]).unwrap();
    let opts = KeyOptions {
        key_file: Some(kf),
        ..KeyOptions::default()
    };
    let s = open(&db.url(), &opts);
    s.write(&cred("k/f", Kind::ApiKey, "key-file-value-0000"))
        .unwrap();
    assert_eq!(
        open(&db.url(), &opts)
            .read(&"k/f".parse().unwrap())
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        "key-file-value-0000"
    );
    let e = open(&db.url(), &opts_with_passphrase("pw for the tests"))
        .read_all()
        .unwrap_err();
    assert!(e.to_string().contains("key file"), "{e}");
}

#[test]
fn the_advisory_lock_excludes_a_second_holder_until_dropped() {
    let Some(db) = pg::fresh_db() else { return };
    let a = open(&db.url(), &opts_with_passphrase("pw for the tests"));
    let b = open(&db.url(), &opts_with_passphrase("pw for the tests"));
    use credshift::store::LockMode::{Exclusive, Shared};
    let held = a
        .lock(Exclusive, Duration::from_secs(1))
        .unwrap()
        .expect("postgres has a lock");
    assert!(held.describe().contains("advisory"));
    for mode in [Exclusive, Shared] {
        let e = b
            .lock(mode, Duration::from_millis(300))
            .err()
            .expect("second holder must wait");
        assert!(
            matches!(e, credshift::error::StoreError::Locked { .. }),
            "{e}"
        );
        // Who holds it and since when, from the server.
        let msg = e.to_string();
        assert!(msg.contains("is locked by another credshift run"), "{msg}");
        assert!(
            msg.contains(&format!("credshift pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("since 20"), "{msg}");
    }
    drop(held);
    // Readers share; a writer waits for both.
    let r1 = b.lock(Shared, Duration::from_secs(2)).unwrap().unwrap();
    let r2 = a.lock(Shared, Duration::from_secs(2)).unwrap().unwrap();
    assert!(b.lock(Exclusive, Duration::from_millis(300)).is_err());
    drop((r1, r2));
    assert!(b.lock(Exclusive, Duration::from_secs(2)).unwrap().is_some());
}

#[test]
fn concurrent_batches_with_overlapping_ids_never_duplicate() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    std::thread::scope(|scope| {
        for t in 0..6 {
            let url = url.clone();
            scope.spawn(move || {
                let s = open(&url, &opts_with_passphrase("shared passphrase"));
                let creds: Vec<Credential> = (0..20)
                    .map(|i| {
                        cred(
                            &format!("ns/item{:02}", (i + t * 5) % 40),
                            Kind::ApiKey,
                            &format!("value-{t}-{i}-xxxxxxxx"),
                        )
                    })
                    .collect();
                let r = s.write_many(&creds);
                assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
            });
        }
    });
    let s = open(&url, &opts_with_passphrase("shared passphrase"));
    let scan = s.read_all().unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let mut ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n);
    assert_eq!(n, 40);
}

/// A table exactly as the landed `postgres://` store wrote it (its schema,
/// `format` 'credshift-postgres-v1', a key file as `key-file` with
/// iterations 0 and a salt, the key check under `credshift:key-check`,
/// values under their id), spelled out here with the AES-GCM and PBKDF2
/// primitives: it opens, reads, and takes new writes in the same format.
#[test]
fn a_table_in_the_landed_format_opens() {
    use credshift::crypto::{aead, kdf};
    let Some(db) = pg::fresh_db() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.key");
    std::fs::write(&key_path, [0x24u8; 32]).unwrap();
    let salt = vec![5u8; 16];
    let pass_key = *kdf::pbkdf2_sha256(b"pw for the tests", &salt, 100_000);
    let key_opts = KeyOptions {
        key_file: Some(key_path),
        ..KeyOptions::default()
    };
    for (schema, key, kdf_name, iterations, o) in [
        (
            "pass",
            pass_key,
            "pbkdf2-hmac-sha256",
            100_000i32,
            opts_with_passphrase("pw for the tests"),
        ),
        ("file", [0x24u8; 32], "key-file", 0, key_opts),
    ] {
        let url = db.url();
        let mut c = pg::connect(&url);
        c.batch_execute(
            "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;
             CREATE TABLE credshift_meta (id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
               format TEXT NOT NULL, kdf TEXT NOT NULL, iterations INTEGER NOT NULL,
               salt BYTEA NOT NULL, check_nonce BYTEA NOT NULL, check_value BYTEA NOT NULL,
               created_at TIMESTAMPTZ NOT NULL DEFAULT now());
             CREATE TABLE credshift_credentials (id TEXT PRIMARY KEY, kind TEXT NOT NULL,
               metadata JSONB NOT NULL DEFAULT '{}'::jsonb, nonce BYTEA NOT NULL,
               ciphertext BYTEA NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now());",
        )
        .unwrap();
        let (cn, cc) = aead::seal(&key, b"credshift:key-check", b"credshift-key-check-v1").unwrap();
        c.execute(
            "INSERT INTO credshift_meta (id, format, kdf, iterations, salt, check_nonce, check_value)
             VALUES (1, 'credshift-postgres-v1', $1, $2, $3, $4, $5)",
            &[&kdf_name, &iterations, &salt, &cn.as_slice(), &cc],
        )
        .unwrap();
        let (vn, vc) = aead::seal(&key, b"openai/api_key", b"sk-landed-pg-value").unwrap();
        c.execute(
            "INSERT INTO credshift_credentials (id, kind, metadata, nonce, ciphertext)
             VALUES ('openai/api_key', 'api_key', '{\"label\":\"old\"}'::jsonb, $1, $2)",
            &[&vn.as_slice(), &vc],
        )
        .unwrap();
        let s = open(&url, &o);
        let got = s.read(&"openai/api_key".parse().unwrap()).unwrap().unwrap();
        assert_eq!(got.secret.expose(), "sk-landed-pg-value", "{schema}");
        assert_eq!(got.metadata["label"], "old");
        s.write(&cred("db/password", Kind::Password, "new-value-000"))
            .unwrap();
        assert_eq!(open(&url, &o).read_all().unwrap().credentials.len(), 2);
        let meta = c
            .query_one(
                "SELECT kdf, iterations, count(*) OVER () FROM credshift_meta",
                &[],
            )
            .unwrap();
        assert_eq!(meta.get::<_, String>(0), kdf_name);
        assert_eq!(meta.get::<_, i32>(1), iterations);
        assert_eq!(meta.get::<_, i64>(2), 1);
        let row = c
            .query_one(
                "SELECT nonce, ciphertext FROM credshift_credentials WHERE id = 'db/password'",
                &[],
            )
            .unwrap();
        let n: [u8; 12] = row.get::<_, Vec<u8>>(0).try_into().unwrap();
        let ct: Vec<u8> = row.get(1);
        assert_eq!(
            &**aead::open(&key, &n, b"db/password", &ct).unwrap(),
            b"new-value-000"
        );
    }
}

#[test]
fn sslmode_require_against_a_plain_server_is_a_clear_error() {
    let Some(db) = pg::fresh_db() else { return };
    let url = format!(
        "{}?sslmode=require",
        db.url().replace("postgres@", "postgres:pw-in-url@")
    );
    let s = open(&url, &opts_with_passphrase("pw for the tests"));
    let e = s.list().unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("***"), "{msg}");
    assert!(!msg.contains("pw-in-url"), "{msg}");
    // sslmode=disable (and prefer) connect in plain text.
    let plain = open(
        &format!("{}?sslmode=prefer", db.url()),
        &opts_with_passphrase("pw for the tests"),
    );
    assert!(plain.probe().available);
}

#[test]
fn a_stopped_server_makes_the_store_unavailable() {
    let Some(server) = pg::own_server() else {
        return;
    };
    let db = server.create_database();
    let s = open(&db.url(), &opts_with_passphrase("pw for the tests"));
    s.write(&cred("a/b", Kind::ApiKey, "value-before-stop"))
        .unwrap();
    server.stop();
    let e = s.read(&"a/b".parse().unwrap()).unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    let r = s.write_many(&[cred("a/c", Kind::ApiKey, "value-after-stop")]);
    assert!(r[0].as_ref().unwrap_err().is_unavailable());
}

#[test]
fn eight_concurrent_cli_migrations_into_one_table_lose_and_duplicate_nothing() {
    let Some(db) = pg::fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let target = db.url();
    let procs = 8;
    // The target's key is a key file all eight share (as on eight
    // machines). Under a passphrase each process would stretch the table's
    // key (PBKDF2, 600,000 rounds) inside the table's lock, one after the
    // other: on a loaded 2-core machine (load 21) the last one waited 89 s
    // of the engine's 120 s for the lock, for work that has nothing to do
    // with what this test proves.
    let key_file = tmp.path().join("target.key");
    let key = [0xc3u8; 32];
    std::fs::write(&key_file, key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key_hex = hex::encode(key);
    // Every source: one id shared with the same value, one shared with a
    // different value per source, and two of its own.
    let mut children = Vec::new();
    for p in 0..procs {
        let env = tmp.path().join(format!("src{p}.env"));
        std::fs::write(
            &env,
            format!(
                "SHARED_SAME=sk-same-value-for-everyone-000\n\
                 SHARED_DIFF=sk-different-value-from-{p}-000\n\
                 OWN_A_{p}=sk-own-a-value-of-source-{p}\n\
                 OWN_B_{p}=sk-own-b-value-of-source-{p}\n"
            ),
        )
        .unwrap();
        // A state dir each, as on separate machines: only the database
        // can keep them apart.
        let state = tmp.path().join(format!("state{p}"));
        let child = support::migrate_cmd(
            &state,
            &format!("dotenv:{}", env.display()),
            &target,
            &[
                "--yes",
                "--json",
                "--key-file",
                &key_file.display().to_string(),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        children.push(child);
    }
    let (mut copied, mut skipped, mut conflicts) = (0, 0, 0);
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains(&key_hex) && !stdout.contains(&key_hex));
        let r: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
        assert_eq!(r["failed"], 0, "{r}");
        assert_eq!(r["rolled_back"], false, "{r}");
        assert_eq!(r["total"], 4, "{r}");
        let c = r["copied"].as_u64().unwrap();
        let k = r["conflicts"].as_u64().unwrap();
        let s = r["skipped"].as_u64().unwrap();
        assert_eq!(c + k + s, 4, "{r}");
        copied += c;
        skipped += s;
        conflicts += k;
    }
    let store = open(
        &target,
        &KeyOptions {
            key_file: Some(key_file),
            ..KeyOptions::default()
        },
    );
    let scan = store.read_all().unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(ids.len(), 2 + 2 * procs, "{ids:?}");
    for p in 0..procs {
        for own in ["A", "B"] {
            let c = scan
                .credentials
                .iter()
                .find(|c| c.id.to_string() == format!("env/OWN_{own}_{p}"))
                .unwrap_or_else(|| panic!("OWN_{own}_{p} lost"));
            assert_eq!(
                c.secret.expose(),
                format!("sk-own-{}-value-of-source-{p}", own.to_lowercase())
            );
        }
    }
    // Each shared id was copied by exactly one process; for every other
    // one the same value was skipped and the different one reported as a
    // conflict (nothing silently overwritten).
    let n = procs as u64;
    assert_eq!(copied, 2 * n + 2, "copies");
    assert_eq!(skipped, n - 1, "identical values skipped");
    assert_eq!(conflicts, n - 1, "conflicts reported");
}
