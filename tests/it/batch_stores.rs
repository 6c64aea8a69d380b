//! Every store's batched `read_many` / `delete_many` / `write_many` gives
//! exactly what the one-at-a-time calls give: the same values, the same
//! `None` for absent ids (and ids the store has no place for), the same
//! per-item errors, repeated ids included. Each store is filled twice, the
//! same way; one copy is driven in batches, the other item by item.

use crate::support;

use credshift::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use credshift::error::Result;
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use support::{id, pg};

fn opts() -> KeyOptions {
    KeyOptions {
        passphrase: Some(Secret::new("batch passphrase")),
        prompttrain_key: Some(Secret::new("batch-master-key-0123456789abcdef-ok")),
        allow_weak_kdf: true,
        kdf_iterations: 1000,
        ..KeyOptions::default()
    }
}

fn open(spec: &str) -> Box<dyn Store> {
    let spec: StoreSpec = spec.parse().unwrap();
    store::open(&spec, &opts()).unwrap()
}

/// A comparable form of one `read` result (the secret included: this is a
/// test of equality, nothing is printed unless it fails).
fn shown(r: &Result<Option<Credential>>) -> std::result::Result<Option<String>, String> {
    match r {
        Ok(None) => Ok(None),
        Ok(Some(c)) => Ok(Some(format!(
            "{}|{}|{}|{}",
            c.id,
            c.kind,
            c.secret.expose(),
            serde_json::Value::Object(c.metadata.clone())
        ))),
        Err(e) => Err(e.to_string()),
    }
}

fn shown_all(store: &dyn Store) -> Vec<String> {
    let mut v: Vec<String> = store
        .read_all()
        .map(|s| {
            s.credentials
                .iter()
                .map(|c| shown(&Ok(Some(c.clone()))).unwrap().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `read_many(ids)` equals `ids.map(read)`.
fn assert_reads_agree(store: &dyn Store, ids: &[CredentialId]) {
    let batched: Vec<_> = store.read_many(ids).iter().map(shown).collect();
    let single: Vec<_> = ids.iter().map(|i| shown(&store.read(i))).collect();
    assert_eq!(batched.len(), ids.len());
    assert_eq!(batched, single, "{}", store.spec());
}

/// `delete_many(ids)` on `a` equals `ids.map(delete)` on `b`, and leaves the
/// same contents.
fn assert_deletes_agree(a: &dyn Store, b: &dyn Store, ids: &[CredentialId]) {
    let batched: Vec<_> = a
        .delete_many(ids)
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    // Messages name the file: b's name stands in for a's.
    let same_file = |m: String| match (a.spec().path(), b.spec().path()) {
        (Some(pa), Some(pb)) => m.replace(&pb.display().to_string(), &pa.display().to_string()),
        _ => m,
    };
    let single: Vec<_> = ids
        .iter()
        .map(|i| b.delete(i).map_err(|e| same_file(e.to_string())))
        .collect();
    assert_eq!(batched, single, "{}", a.spec());
    assert_eq!(shown_all(a), shown_all(b), "{}", a.spec());
}

fn write_all(s: &dyn Store, creds: &[Credential]) {
    for (c, r) in creds.iter().zip(s.write_many(creds)) {
        r.unwrap_or_else(|e| panic!("{}: write {}: {e}", s.spec(), c.id));
    }
}

fn meta(pairs: &[(&str, serde_json::Value)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Items any general-purpose store holds (foreign namespaces, metadata).
fn general_items() -> Vec<Credential> {
    vec![
        Credential::new(id("env/OPENAI_API_KEY"), Kind::ApiKey, "sk-proj-one"),
        Credential::new(id("env/SPACED"), Kind::Other, "a value with spaces #"),
        Credential::new(
            id("account:acc_a/oauth_access_token"),
            Kind::OauthAccess,
            "sk-ant-oat01-two",
        )
        .with_metadata(meta(&[("expires_at", 1790003600000i64.into())])),
        Credential::new(id("app/multi"), Kind::Other, "line1\nline2"),
    ]
}

fn general_ids() -> Vec<CredentialId> {
    vec![
        id("env/OPENAI_API_KEY"),
        id("env/ABSENT"),
        id("account:acc_a/oauth_access_token"),
        id("env/OPENAI_API_KEY"), // repeated
        id("app/multi"),
        id("nowhere/at-all"),
        id("env/SPACED"),
    ]
}

/// The general check for a store that holds `general_items`.
fn check_general(a: &str, b: &str) {
    let (sa, sb) = (open(a), open(b));
    // Before anything exists: every id absent (or the same error).
    assert_reads_agree(&*sa, &general_ids());
    write_all(&*sa, &general_items());
    write_all(&*sb, &general_items());
    assert_reads_agree(&*sa, &general_ids());
    assert_deletes_agree(&*sa, &*sb, &general_ids()[..4]);
    assert_reads_agree(&*sa, &general_ids());
    // Deleting nothing that is there changes nothing.
    assert_deletes_agree(&*sa, &*sb, &[id("env/ABSENT"), id("x/y")]);
    assert_deletes_agree(&*sa, &*sb, &general_ids());
    assert!(shown_all(&*sa).is_empty());
}

#[test]
fn dotenv_batches_equal_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.env"), dir.path().join("b.env"));
    // A hand-written file: a repeated key (the last wins), export, comments.
    let text = "# app\nexport A=1\nB='two'\nA=3 # again\n";
    std::fs::write(&a, text).unwrap();
    std::fs::write(&b, text).unwrap();
    let (sa, sb) = (
        open(&format!("dotenv:{}", a.display())),
        open(&format!("dotenv:{}", b.display())),
    );
    assert_reads_agree(&*sa, &[id("env/A"), id("env/B"), id("env/C")]);
    assert_eq!(sa.read(&id("env/A")).unwrap().unwrap().secret.expose(), "3");
    // Both assignments of A go with one delete.
    assert_deletes_agree(&*sa, &*sb, &[id("env/A"), id("env/C"), id("env/A")]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "# app\nB='two'\n");
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
    check_general(
        &format!("dotenv:{}", a.display()),
        &format!("dotenv:{}", b.display()),
    );
}

#[test]
fn dotenv_batched_writes_leave_the_same_file_as_single_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.env"), dir.path().join("b.env"));
    let text = "X=old\n# credshift: {\"id\":\"app/y\",\"kind\":\"other\"}\nAPP_Y=old\n";
    std::fs::write(&a, text).unwrap();
    std::fs::write(&b, text).unwrap();
    let mut creds = general_items();
    creds.push(Credential::new(id("env/X"), Kind::Other, "new x"));
    // Overwrite a marked item with metadata (its marker changes shape).
    creds.push(
        Credential::new(id("app/y"), Kind::Other, "new y")
            .with_metadata(meta(&[("note", "n".into())])),
    );
    // Two ids that sanitize to the same key.
    creds.push(Credential::new(id("a:b/c"), Kind::Other, "1"));
    creds.push(Credential::new(id("a/b:c"), Kind::Other, "2"));
    let (sa, sb) = (
        open(&format!("dotenv:{}", a.display())),
        open(&format!("dotenv:{}", b.display())),
    );
    write_all(&*sa, &creds);
    for c in &creds {
        sb.write(c).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap()
    );
    let ids: Vec<CredentialId> = creds.iter().map(|c| c.id.clone()).collect();
    assert_reads_agree(&*sa, &ids);
}

#[test]
fn dotenv_unreadable_file_fails_every_item_alike() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.env");
    std::fs::write(&p, b"A=\xff\xfe\n").unwrap();
    let s = open(&format!("dotenv:{}", p.display()));
    assert_reads_agree(&*s, &[id("env/A"), id("env/B")]);
    let batched: Vec<_> = s
        .delete_many(&[id("env/A"), id("env/B")])
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    let single: Vec<_> = [id("env/A"), id("env/B")]
        .iter()
        .map(|i| s.delete(i).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(batched, single);
    assert!(batched.iter().all(|r| r.is_err()));
}

#[test]
fn encrypted_and_bundle_batches_equal_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    for scheme in ["encrypted", "bundle"] {
        let a = dir.path().join(format!("{scheme}-a"));
        let b = dir.path().join(format!("{scheme}-b"));
        check_general(
            &format!("{scheme}:{}", a.display()),
            &format!("{scheme}:{}", b.display()),
        );
    }
}

#[test]
fn encrypted_wrong_passphrase_fails_every_item_alike() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.enc");
    write_all(
        &*open(&format!("encrypted:{}", p.display())),
        &general_items(),
    );
    let spec: StoreSpec = format!("encrypted:{}", p.display()).parse().unwrap();
    let wrong = store::open(
        &spec,
        &KeyOptions {
            passphrase: Some(Secret::new("not the passphrase")),
            ..opts()
        },
    )
    .unwrap();
    assert_reads_agree(&*wrong, &general_ids());
    let r = wrong.read_many(&general_ids());
    assert!(r.iter().all(|r| r.is_err()));
    let d: Vec<_> = wrong
        .delete_many(&general_ids())
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    assert!(d.iter().all(|r| r.is_err()), "{d:?}");
}

#[test]
fn sqlite_batches_equal_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    check_general(
        &format!("sqlite:{}", dir.path().join("a.db").display()),
        &format!("sqlite:{}", dir.path().join("b.db").display()),
    );
}

#[test]
fn sqlite_corrupt_row_is_a_per_item_error_in_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let s = open(&format!("sqlite:{}", p.display()));
    write_all(&*s, &general_items());
    drop(s);
    let db = rusqlite::Connection::open(&p).unwrap();
    db.execute(
        "UPDATE credshift_credentials SET ciphertext = X'00' WHERE name = 'SPACED'",
        [],
    )
    .unwrap();
    drop(db);
    let s = open(&format!("sqlite:{}", p.display()));
    assert_reads_agree(&*s, &general_ids());
    let r = s.read_many(&general_ids());
    assert!(r[6].is_err(), "the altered row fails");
    assert!(r[0].as_ref().is_ok_and(|c| c.is_some()), "the others read");
}

#[test]
fn modelforge_batches_equal_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let (sa, sb) = (
        open(&format!("modelforge:{}", a.display())),
        open(&format!("modelforge:{}", b.display())),
    );
    let creds = vec![
        Credential::new(id("openai/api_key"), Kind::ApiKey, "sk-1"),
        Credential::new(id("github/access_token"), Kind::OauthAccess, "gho-2"),
        Credential::new(id("ollama/api_key"), Kind::ApiKey, "sk-3"),
    ];
    let ids = vec![
        id("openai/api_key"),
        id("openai/absent"),
        id("github/access_token"),
        id("openai/api_key"),
        id("env/X"),
    ];
    assert_reads_agree(&*sa, &ids);
    write_all(&*sa, &creds);
    write_all(&*sb, &creds);
    assert_reads_agree(&*sa, &ids);
    assert_deletes_agree(&*sa, &*sb, &ids[..2]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_deletes_agree(&*sa, &*sb, &ids);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn prompttrain_dir_batches_equal_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let s = open(&format!("prompttrain:{}", a.display()));
    let ids = vec![
        id("account:acc_one/api_key"),
        id("account:acc_two/oauth_access_token"),
        id("account:acc_two/oauth_refresh_token"),
        id("account:acc_none/api_key"),
        id("train:t1/client_key/0"),
        id("train:t1/client_key/5"),
        id("env/NOT_HERE"),
        id("account:acc_one/api_key"),
    ];
    assert_reads_agree(&*s, &ids);
    let creds = vec![
        Credential::new(
            id("account:acc_one/api_key"),
            Kind::ApiKey,
            "sk-ant-api03-1",
        )
        .with_metadata(meta(&[("account_name", "one".into())])),
        Credential::new(
            id("account:acc_two/oauth_access_token"),
            Kind::OauthAccess,
            "sk-ant-oat01-2",
        )
        .with_metadata(meta(&[("expires_at", 1790003600000i64.into())])),
        Credential::new(
            id("account:acc_two/oauth_refresh_token"),
            Kind::OauthRefresh,
            "sk-ant-ort01-3",
        ),
        Credential::new(id("train:t1/client_key/0"), Kind::ClientKey, "cnp_live_4"),
    ];
    write_all(&*s, &creds);
    assert_reads_agree(&*s, &ids);
    // A broken account file among good ones: the others still read alike.
    std::fs::write(a.join("accounts/zz.credentials.json"), "{not json").unwrap();
    assert_reads_agree(&*s, &ids);
}

/// prompttrain-db: batches against single calls on a real PostgreSQL,
/// including a value altered in the database (a per-item error that the
/// cache of derived keys does not hide).
#[test]
fn prompttrain_db_batches_equal_single_calls() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    let s = open(&format!("prompttrain-db:{url}"));
    let ids = vec![
        id("account:acc_one/api_key"),
        id("account:acc_two/oauth_access_token"),
        id("account:acc_two/oauth_refresh_token"),
        id("account:acc_two/api_key"),
        id("account:acc_none/api_key"),
        id("train:t1/client_key_hash/0"),
        id("train:t1/client_key_hash/3"),
        id("train:t1/client_key/0"),
        id("env/NOT_HERE"),
        id("account:acc_one/api_key"),
    ];
    // No tables yet.
    assert_reads_agree(&*s, &ids);
    let creds = vec![
        Credential::new(
            id("account:acc_one/api_key"),
            Kind::ApiKey,
            "sk-ant-api03-1",
        )
        .with_metadata(meta(&[("account_name", "one".into())])),
        Credential::new(
            id("account:acc_two/oauth_access_token"),
            Kind::OauthAccess,
            "sk-ant-oat01-2",
        )
        .with_metadata(meta(&[
            ("expires_at", 1790003600000i64.into()),
            ("scopes", serde_json::json!(["user:inference"])),
        ])),
        Credential::new(
            id("account:acc_two/oauth_refresh_token"),
            Kind::OauthRefresh,
            "sk-ant-ort01-3",
        ),
        Credential::new(id("train:t1/client_key/0"), Kind::ClientKey, "cnp_live_4"),
    ];
    write_all(&*s, &creds);
    assert_reads_agree(&*s, &ids);
    // Another store (no cached keys) reads the same.
    let fresh = open(&format!("prompttrain-db:{url}"));
    let mine: Vec<_> = s.read_many(&ids).iter().map(shown).collect();
    let theirs: Vec<_> = fresh.read_many(&ids).iter().map(shown).collect();
    assert_eq!(mine, theirs);
    // A value altered in the database: that item fails, alike; the cache
    // does not hide it (the read decrypts what the database returned).
    let mut c = pg::connect(&url);
    c.execute(
        "UPDATE accounts SET api_key_encrypted = \
         regexp_replace(api_key_encrypted, ':[^:]*$', ':AAAAAAAAAAAAAAAAAAAAAA==') \
         WHERE account_id = 'acc_one'",
        &[],
    )
    .unwrap();
    assert_reads_agree(&*s, &ids);
    assert_reads_agree(&*fresh, &ids);
    let r = s.read_many(&ids);
    assert!(r[0].is_err() && r[9].is_err(), "the altered value fails");
    assert!(r[1].as_ref().is_ok_and(|c| c.is_some()));
    // Without the key: values are errors, hashes and absent ids are not.
    let spec: StoreSpec = format!("prompttrain-db:{url}").parse().unwrap();
    let keyless = store::open(
        &spec,
        &KeyOptions {
            prompttrain_key: None,
            ..opts()
        },
    )
    .unwrap();
    assert_reads_agree(&*keyless, &ids);
}

/// With the derived-key cache, the stored values still have a fresh salt
/// and IV each, and read back right.
#[test]
fn prompttrain_db_values_keep_a_fresh_salt_and_iv_each() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    let s = open(&format!("prompttrain-db:{url}"));
    let creds: Vec<Credential> = (0..6)
        .map(|i| {
            Credential::new(
                id(&format!("account:acc_{i}/api_key")),
                Kind::ApiKey,
                "the same value",
            )
        })
        .collect();
    write_all(&*s, &creds);
    let mut c = pg::connect(&url);
    let rows = c
        .query("SELECT api_key_encrypted FROM accounts", &[])
        .unwrap();
    let mut salts = std::collections::BTreeSet::new();
    let mut ivs = std::collections::BTreeSet::new();
    for r in rows {
        let v: String = r.get(0);
        let parts: Vec<&str> = v.split(':').collect();
        assert_eq!(parts.len(), 4);
        salts.insert(parts[0].to_string());
        ivs.insert(parts[1].to_string());
    }
    assert_eq!((salts.len(), ivs.len()), (6, 6));
    let ids: Vec<CredentialId> = creds.iter().map(|c| c.id.clone()).collect();
    assert!(s.read_many(&ids).iter().all(|r| r.as_ref().is_ok_and(|c| {
        c.as_ref()
            .is_some_and(|c| c.secret.expose() == "the same value")
    })));
}

#[test]
fn postgres_batches_equal_single_calls() {
    let Some(a) = pg::fresh_db() else { return };
    let Some(b) = pg::fresh_db() else { return };
    check_general(&a.url(), &b.url());
}
