//! agent-prompttrain's database (`prompttrain-db:`) against a real
//! PostgreSQL server, checked against the original system's rows
//! (tests/fixtures/prompttrain-db) and an independent Node.js
//! implementation of its format (scripts/prompttrain-crypto.js).

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use credshift::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use sha2::{Digest, Sha256};
use support::pg;

fn fixture_key() -> Secret {
    let text =
        std::fs::read_to_string(support::fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"))
            .unwrap();
    Secret::new(text.trim())
}

fn open_with(url: &str, key: Option<Secret>) -> Box<dyn Store> {
    let spec: StoreSpec = format!("prompttrain-db:{url}").parse().unwrap();
    let opts = KeyOptions {
        prompttrain_key: key,
        ..KeyOptions::default()
    };
    store::open(&spec, &opts).unwrap()
}

/// A database loaded with the original system's schema and rows.
fn fixture_db() -> Option<pg::TestDb> {
    let db = pg::fresh_db()?;
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/data.sql"));
    Some(db)
}

fn expected_accounts() -> BTreeMap<String, String> {
    support::expected()
        .into_iter()
        .filter(|(k, _)| k.starts_with("account:"))
        .collect()
}

fn expected_client_keys() -> BTreeMap<String, String> {
    support::expected()
        .into_iter()
        .filter(|(k, _)| k.starts_with("train:"))
        .collect()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The fixture's credentials as the `prompttrain:DIR` store describes them.
fn fixture_credentials() -> Vec<Credential> {
    let mut out = Vec::new();
    for (id, value) in support::expected() {
        let cid: CredentialId = id.parse().unwrap();
        if !cid.namespace.starts_with("account:") && !cid.namespace.starts_with("train:") {
            continue;
        }
        let kind = if cid.name == "api_key" {
            Kind::ApiKey
        } else if cid.name == "oauth_access_token" {
            Kind::OauthAccess
        } else if cid.name == "oauth_refresh_token" {
            Kind::OauthRefresh
        } else if cid.name.starts_with("client_key/") {
            Kind::ClientKey
        } else {
            continue;
        };
        let mut m = Metadata::new();
        if let Some(acc) = cid.namespace.strip_prefix("account:acc_") {
            m.insert("account_name".into(), acc.replace('_', "-").into());
            let t = if kind == Kind::ApiKey {
                "api_key"
            } else {
                "oauth"
            };
            m.insert("type".into(), t.into());
        }
        if kind == Kind::OauthAccess || kind == Kind::OauthRefresh {
            m.insert("expires_at".into(), 1790003600000i64.into());
            m.insert(
                "scopes".into(),
                serde_json::json!(["user:inference", "user:profile"]),
            );
            m.insert("is_max".into(), cid.namespace.contains("delta").into());
        }
        out.push(Credential::new(cid, kind, value).with_metadata(m));
    }
    out
}

#[test]
fn reads_every_account_secret_the_original_system_wrote() {
    let Some(db) = fixture_db() else { return };
    let s = open_with(&db.url(), Some(fixture_key()));
    let scan = s.read_all().unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let got: BTreeMap<String, &Credential> = scan
        .credentials
        .iter()
        .map(|c| (c.id.to_string(), c))
        .collect();
    let accounts = expected_accounts();
    assert_eq!(accounts.len(), 6);
    for (id, value) in &accounts {
        let c = got.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(c.secret.expose(), value, "{id}");
    }
    let beta = got["account:acc_beta_oauth/oauth_access_token"];
    assert_eq!(beta.kind, Kind::OauthAccess);
    assert_eq!(beta.metadata["account_name"], "beta-oauth");
    assert_eq!(beta.metadata["expires_at"], 1790003600000i64);
    assert_eq!(
        beta.metadata["scopes"],
        serde_json::json!(["user:inference", "user:profile"])
    );
    assert_eq!(beta.metadata["is_max"], false);
    assert_eq!(
        got["account:acc_delta_oauth/oauth_access_token"].metadata["is_max"],
        true
    );
    let refresh = &got["account:acc_delta_oauth/oauth_refresh_token"].metadata;
    assert_eq!(refresh["expires_at"], 1789913600000i64);
    assert_eq!(refresh["type"], "oauth");
    assert_eq!(got["account:acc_alpha/api_key"].metadata["type"], "api_key");
    assert_eq!(
        got["account:acc_gamma/api_key"].metadata["account_name"],
        "gamma"
    );
    assert_eq!(got["account:acc_gamma/api_key"].kind, Kind::ApiKey);
    assert_eq!(
        got["account:acc_beta_oauth/oauth_refresh_token"].kind,
        Kind::OauthRefresh
    );

    // Client keys are hashes: sha256 of each expected key, at its index.
    let keys = expected_client_keys();
    assert_eq!(keys.len(), 3);
    for (id, key) in &keys {
        let hash_id = id.replace("/client_key/", "/client_key_hash/");
        let c = got
            .get(&hash_id)
            .unwrap_or_else(|| panic!("{hash_id} missing"));
        assert_eq!(c.kind, Kind::ClientKeyHash);
        assert_eq!(c.secret.expose(), sha256_hex(key), "{hash_id}");
    }
    assert_eq!(scan.credentials.len(), accounts.len() + keys.len());

    // One at a time gives the same, and list needs no key.
    let one = s
        .read(&"account:acc_alpha/api_key".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(one.secret.expose(), accounts["account:acc_alpha/api_key"]);
    let listed = open_with(&db.url(), None).list().unwrap();
    assert_eq!(listed.entries.len(), accounts.len() + keys.len());
}

#[test]
fn client_keys_verify_by_hash_and_never_read_back() {
    let Some(db) = fixture_db() else { return };
    let s = open_with(&db.url(), Some(fixture_key()));
    for (id, key) in expected_client_keys() {
        let cid: CredentialId = id.parse().unwrap();
        assert!(s.read(&cid).unwrap().is_none(), "{id} has no plaintext");
        let right = Credential::new(cid.clone(), Kind::ClientKey, key.as_str());
        assert_eq!(s.verify_hashed(&right).unwrap(), Some(true), "{id}");
        let wrong = Credential::new(cid, Kind::ClientKey, format!("{key}x"));
        assert_eq!(s.verify_hashed(&wrong).unwrap(), Some(false), "{id}");
    }
    let elsewhere = Credential::new(
        "train:team-beta/client_key/7".parse().unwrap(),
        Kind::ClientKey,
        "cnp_live_2denCJjluEV99TARR_rjp5B4",
    );
    assert_eq!(s.verify_hashed(&elsewhere).unwrap(), Some(false));
    let not_hashed = Credential::new(
        "account:acc_alpha/api_key".parse().unwrap(),
        Kind::ApiKey,
        "x",
    );
    assert_eq!(s.verify_hashed(&not_hashed).unwrap(), None);
}

/// Decrypt with the Node.js implementation; `None` when node is missing.
fn node(mode: &str, key: Option<&Secret>, input: &serde_json::Value) -> Option<serde_json::Value> {
    if Command::new("node").arg("--version").output().is_err() {
        support::skip_without("node", "node is not on PATH");
        return None;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prompttrain-crypto.js");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(mode)
        .env_remove("CREDENTIAL_ENCRYPTION_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        // The key goes through the environment, never argv.
        cmd.env("CREDENTIAL_ENCRYPTION_KEY", k.expose());
    }
    let mut child = cmd.spawn().expect("spawn node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn values_written_decrypt_with_an_independent_node_implementation() {
    let Some(db) = pg::fresh_db() else { return };
    let key = fixture_key();
    let s = open_with(&db.url(), Some(key.clone()));
    let creds = fixture_credentials();
    let results = s.write_many(&creds);
    for (c, r) in creds.iter().zip(&results) {
        assert!(r.is_ok(), "{}: {:?}", c.id, r);
    }

    // Pull the stored strings straight from the tables.
    let mut client = pg::connect(&db.url());
    let mut stored: Vec<(String, String)> = Vec::new();
    for row in client
        .query(
            "SELECT account_id, api_key_encrypted, oauth_access_token_encrypted, \
             oauth_refresh_token_encrypted FROM accounts ORDER BY account_id",
            &[],
        )
        .unwrap()
    {
        let account: String = row.get(0);
        for (i, field) in ["api_key", "oauth_access_token", "oauth_refresh_token"]
            .iter()
            .enumerate()
        {
            if let Some(v) = row.get::<_, Option<String>>(i + 1) {
                stored.push((format!("account:{account}/{field}"), v));
            }
        }
    }
    let accounts = expected_accounts();
    assert_eq!(stored.len(), accounts.len());
    for (id, v) in &stored {
        assert!(!v.contains(&accounts[id][8..]), "{id} stored in plaintext");
    }
    let input = serde_json::Value::from(stored.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    let Some(decrypted) = node("decrypt", Some(&key), &input) else {
        return;
    };
    for ((id, _), plain) in stored.iter().zip(decrypted.as_array().unwrap()) {
        assert_eq!(plain.as_str(), Some(accounts[id].as_str()), "{id}: {plain}");
    }

    // A wrong key makes Node's GCM fail too (the test can fail).
    let wrong = Secret::new("w".repeat(40));
    let failed = node("decrypt", Some(&wrong), &input).unwrap();
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("error").is_some())
    );

    // Client keys: Node's sha256 of each key sits at its index.
    let keys = expected_client_keys();
    let plain: Vec<String> = keys.values().cloned().collect();
    let hashes = node("hash", None, &serde_json::Value::from(plain)).unwrap();
    for ((id, _), h) in keys.iter().zip(hashes.as_array().unwrap()) {
        let cid: CredentialId = id.parse().unwrap();
        let train = cid.namespace.strip_prefix("train:").unwrap();
        let index: i32 = cid.name.rsplit('/').next().unwrap().parse().unwrap();
        let stored: String = client
            .query_one(
                "SELECT client_api_keys_hashed[$2 + 1] FROM trains WHERE train_id = $1",
                &[&train, &index],
            )
            .unwrap()
            .get(0);
        assert_eq!(Some(stored.as_str()), h.as_str(), "{id}");
    }

    // And our reader gets back what it wrote, metadata included.
    let back = s.read_all().unwrap();
    assert!(back.errors.is_empty(), "{:?}", back.errors);
    let by_id: BTreeMap<String, &Credential> = back
        .credentials
        .iter()
        .map(|c| (c.id.to_string(), c))
        .collect();
    for c in creds.iter().filter(|c| c.kind != Kind::ClientKey) {
        let got = by_id[&c.id.to_string()];
        assert!(got.same_as(c), "{} changed in the round trip", c.id);
    }
}

#[test]
fn values_made_by_node_are_read() {
    let Some(db) = pg::fresh_db() else { return };
    let key = fixture_key();
    let input = serde_json::json!(["sk-ant-api03-made-by-node-0001", "ключ-unicode-value-0002"]);
    let Some(enc) = node("encrypt", Some(&key), &input) else {
        return;
    };
    let enc = enc.as_array().unwrap();
    pg::execute(&db.url(), credshift::store::prompttrain_db::SCHEMA_SQL);
    let mut client = pg::connect(&db.url());
    for (i, v) in enc.iter().enumerate() {
        client
            .execute(
                "INSERT INTO accounts (account_id, account_name, credential_type, api_key_encrypted) \
                 VALUES ($1, $2, 'api_key', $3)",
                &[&format!("acc_n{i}"), &format!("n{i}"), &v.as_str().unwrap()],
            )
            .unwrap();
    }
    let s = open_with(&db.url(), Some(key));
    for (i, want) in input.as_array().unwrap().iter().enumerate() {
        let c = s
            .read(&format!("account:acc_n{i}/api_key").parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(c.secret.expose(), want.as_str().unwrap());
    }
}

fn stored_state(url: &str) -> Vec<String> {
    let mut client = pg::connect(url);
    let mut out = Vec::new();
    for row in client
        .query(
            "SELECT account_id || '|' || coalesce(api_key_encrypted, '') || '|' || \
             coalesce(oauth_access_token_encrypted, '') || '|' || \
             coalesce(oauth_refresh_token_encrypted, '') FROM accounts ORDER BY account_id",
            &[],
        )
        .unwrap()
    {
        out.push(row.get(0));
    }
    for row in client
        .query(
            "SELECT train_id || '|' || coalesce(array_to_string(client_api_keys_hashed, ','), '') \
             FROM trains ORDER BY train_id",
            &[],
        )
        .unwrap()
    {
        out.push(row.get(0));
    }
    out
}

#[test]
fn a_wrong_key_fails_each_item_clearly_and_writes_nothing() {
    let Some(db) = fixture_db() else { return };
    let wrong = Secret::new("this-is-not-the-key-but-it-is-long-enough");
    let s = open_with(&db.url(), Some(wrong));

    let scan = s.read_all().unwrap();
    assert_eq!(scan.errors.len(), expected_accounts().len());
    for e in &scan.errors {
        assert!(e.location.starts_with("accounts["), "{e:?}");
        assert!(e.error.contains("CREDENTIAL_ENCRYPTION_KEY"), "{e:?}");
        assert!(!e.error.contains("this-is-not"), "{e:?}");
    }
    let err = s
        .read(&"account:acc_alpha/api_key".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("accounts[acc_alpha].api_key_encrypted"),
        "{err}"
    );

    let before = stored_state(&db.url());
    let creds = vec![
        Credential::new(
            "account:acc_new/api_key".parse().unwrap(),
            Kind::ApiKey,
            "sk-ant-api03-new-value-that-must-not-land",
        ),
        Credential::new(
            "account:acc_alpha/api_key".parse().unwrap(),
            Kind::ApiKey,
            "sk-ant-api03-replacement-value",
        ),
        Credential::new(
            "train:team-new/client_key/0".parse().unwrap(),
            Kind::ClientKey,
            "cnp_live_newnewnewnewnewnewnew",
        ),
    ];
    let results = s.write_many(&creds);
    assert_eq!(results.len(), 3);
    for (c, r) in creds.iter().zip(&results) {
        let e = r.as_ref().unwrap_err().to_string();
        assert!(e.contains("CREDENTIAL_ENCRYPTION_KEY"), "{}: {e}", c.id);
        assert!(e.contains("nothing written"), "{e}");
        assert!(!e.contains("must-not-land"), "{e}");
    }
    assert_eq!(stored_state(&db.url()), before, "nothing may change");
    assert!(!s.probe().writable);
}

fn account_row(url: &str, account: &str) -> Option<(String, bool, Option<String>)> {
    let mut c = pg::connect(url);
    c.query_opt(
        "SELECT credential_type, is_active, oauth_refresh_token_encrypted FROM accounts \
         WHERE account_id = $1",
        &[&account],
    )
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[test]
fn an_oauth_token_alone_waits_inactive_for_its_pair() {
    let Some(db) = pg::fresh_db() else { return };
    let s = open_with(&db.url(), Some(fixture_key()));
    let access = Credential::new(
        "account:acc_o/oauth_access_token".parse().unwrap(),
        Kind::OauthAccess,
        "sk-ant-oat01-access-token-value",
    );
    let refresh = Credential::new(
        "account:acc_o/oauth_refresh_token".parse().unwrap(),
        Kind::OauthRefresh,
        "sk-ant-ort01-refresh-token-value",
    );
    // One at a time, as a per-item migration writes them.
    s.write(&access).unwrap();
    assert_eq!(
        s.read(&access.id).unwrap().unwrap().secret.expose(),
        "sk-ant-oat01-access-token-value"
    );
    assert!(
        s.read(&refresh.id).unwrap().is_none(),
        "placeholder is not a value"
    );
    let (ctype, active, pending) = account_row(&db.url(), "acc_o").unwrap();
    assert_eq!(ctype, "oauth");
    assert!(!active, "an account missing a token stays inactive");
    assert_eq!(
        pending.as_deref(),
        Some(credshift::store::prompttrain_db::PENDING_TOKEN)
    );
    let ids: Vec<String> = s
        .list()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(ids, ["account:acc_o/oauth_access_token"]);

    s.write(&refresh).unwrap();
    let (_, active, stored) = account_row(&db.url(), "acc_o").unwrap();
    assert!(active, "complete again, so active");
    assert!(stored.unwrap().split(':').count() == 4);
    assert_eq!(s.read_all().unwrap().credentials.len(), 2);

    // Deleting one token alone leaves the placeholder; both remove the row.
    assert!(s.delete(&refresh.id).unwrap());
    let (_, active, pending) = account_row(&db.url(), "acc_o").unwrap();
    assert!(!active);
    assert_eq!(
        pending.as_deref(),
        Some(credshift::store::prompttrain_db::PENDING_TOKEN)
    );
    assert!(s.read(&access.id).unwrap().is_some());
    assert!(s.delete(&access.id).unwrap());
    assert!(account_row(&db.url(), "acc_o").is_none());

    // In one batch the pair lands complete and active at once.
    let r = s.write_many(&[access.clone(), refresh.clone()]);
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let (ctype, active, _) = account_row(&db.url(), "acc_o").unwrap();
    assert_eq!((ctype.as_str(), active), ("oauth", true));
    assert_eq!(
        account_name(&db.url(), "acc_o"),
        "o",
        "default name follows the acc_ prefix"
    );
    let d = s.delete_many(&[access.id.clone(), refresh.id.clone()]);
    assert!(d.iter().all(|r| matches!(r, Ok(true))), "{d:?}");
    assert!(s.list().unwrap().entries.is_empty());
    assert!(!s.delete(&access.id).unwrap());
}

fn account_name(url: &str, account: &str) -> String {
    pg::connect(url)
        .query_one(
            "SELECT account_name FROM accounts WHERE account_id = $1",
            &[&account],
        )
        .unwrap()
        .get(0)
}

#[test]
fn an_api_key_account_takes_an_oauth_token_without_a_placeholder() {
    let Some(db) = fixture_db() else { return };
    let s = open_with(&db.url(), Some(fixture_key()));
    let access = Credential::new(
        "account:acc_alpha/oauth_access_token".parse().unwrap(),
        Kind::OauthAccess,
        "sk-ant-oat01-added-to-an-api-key-account",
    );
    s.write(&access).unwrap();
    let (ctype, active, refresh) = account_row(&db.url(), "acc_alpha").unwrap();
    assert_eq!((ctype.as_str(), active, refresh), ("api_key", true, None));
    // Removing the API key now leaves a lone OAuth token: placeholder.
    assert!(
        s.delete(&"account:acc_alpha/api_key".parse().unwrap())
            .unwrap()
    );
    let (ctype, active, refresh) = account_row(&db.url(), "acc_alpha").unwrap();
    assert_eq!(ctype, "oauth");
    assert!(!active);
    assert_eq!(
        refresh.as_deref(),
        Some(credshift::store::prompttrain_db::PENDING_TOKEN)
    );
}

#[test]
fn client_keys_written_land_as_hashes_and_hashes_copy_verbatim() {
    let Some(db) = pg::fresh_db() else { return };
    let s = open_with(&db.url(), None);
    let key = "cnp_live_29GFfm7sFog16pAgTtpU4r16";
    s.write(&Credential::new(
        "train:t1/client_key/1".parse().unwrap(),
        Kind::ClientKey,
        key,
    ))
    .unwrap();
    let hash = "981b9a81808a3855eba3acfce6afa26e99c89feb7fdfe5ecb326b1790dcd28a7";
    s.write(&Credential::new(
        "train:t2/client_key_hash/0".parse().unwrap(),
        Kind::ClientKeyHash,
        hash.to_uppercase(),
    ))
    .unwrap();
    let ids: Vec<String> = s
        .list()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        ids,
        ["train:t1/client_key_hash/1", "train:t2/client_key_hash/0"]
    );
    let h1 = s
        .read(&"train:t1/client_key_hash/1".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(h1.secret.expose(), sha256_hex(key));
    let h2 = s
        .read(&"train:t2/client_key_hash/0".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(h2.secret.expose(), hash);

    let bad = Credential::new(
        "train:t2/client_key_hash/1".parse().unwrap(),
        Kind::ClientKeyHash,
        "not-a-hash",
    );
    assert!(s.check(&bad).is_some());
    assert!(s.write(&bad).is_err());
    // No key is needed for hashes, but account values need one.
    let acct = Credential::new(
        "account:acc_x/api_key".parse().unwrap(),
        Kind::ApiKey,
        "sk-ant-api03-xxxxxxxxxxxxxxxx",
    );
    let e = s.write(&acct).unwrap_err().to_string();
    assert!(e.contains("CREDENTIAL_ENCRYPTION_KEY"), "{e}");

    assert!(s.delete(&"train:t1/client_key/1".parse().unwrap()).unwrap());
    assert!(
        s.read(&"train:t1/client_key_hash/1".parse().unwrap())
            .unwrap()
            .is_none()
    );
}

#[test]
fn cli_inventory_lists_the_database_masked() {
    let Some(db) = fixture_db() else { return };
    let state = tempfile::tempdir().unwrap();
    let spec = format!("prompttrain-db:{}", db.url());
    let (out, stdout, stderr) = support::run(
        support::credshift(state.path())
            .args(["inventory", "--from", &spec, "--json"])
            .env("CREDENTIAL_ENCRYPTION_KEY", fixture_key().expose()),
    );
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let items = v["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    for id in expected_accounts().keys() {
        assert!(ids.contains(&id.as_str()), "{id} not in {ids:?}");
    }
    let alpha = items
        .iter()
        .find(|i| i["id"] == "account:acc_alpha/api_key")
        .unwrap();
    let value = &expected_accounts()["account:acc_alpha/api_key"];
    assert_eq!(alpha["preview"], credshift::credential::mask(value));
    assert!(alpha["preview"].as_str().unwrap().starts_with("sk-ant-…"));
    for secret in support::expected().values() {
        assert!(
            !stdout.contains(secret.as_str()),
            "inventory leaked a secret"
        );
    }
    assert!(!stdout.contains(fixture_key().expose()));
    assert!(!stderr.contains(fixture_key().expose()));
}

#[test]
fn a_server_that_goes_away_is_unavailable() {
    let Some(server) = pg::own_server() else {
        return;
    };
    let db = server.create_database();
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/data.sql"));
    let s = open_with(&db.url(), Some(fixture_key()));
    assert_eq!(s.list().unwrap().entries.len(), 9);
    server.stop();
    let e = s.read_all().unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("prompttrain-db:postgres://"), "{e}");
    let results = s.write_many(&[Credential::new(
        "account:acc_alpha/api_key".parse().unwrap(),
        Kind::ApiKey,
        "sk-ant-api03-while-the-server-is-down",
    )]);
    let e = results[0].as_ref().unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(!s.probe().available);
}

#[test]
fn errors_hide_the_url_password() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url().replace("postgres@", "postgres:hunter2secret@");
    // trust auth ignores the password; point at a missing database instead.
    let url = url.rsplit_once('/').unwrap().0.to_string() + "/no_such_db";
    let s = open_with(&url, Some(fixture_key()));
    let e = s.list().unwrap_err().to_string();
    assert!(e.contains("***"), "{e}");
    assert!(!e.contains("hunter2secret"), "{e}");
}

fn open_spec(spec: &str, key: Option<Secret>) -> Box<dyn Store> {
    let spec: StoreSpec = spec.parse().unwrap();
    let opts = KeyOptions {
        prompttrain_key: key,
        ..KeyOptions::default()
    };
    store::open(&spec, &opts).unwrap()
}

#[test]
fn credentials_dir_to_db_and_back_keeps_values_and_account_metadata() {
    let Some(db) = pg::fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = support::copy_fixture("prompttrain/credentials", tmp.path());
    let dir = open_spec(&format!("prompttrain:{}", src_dir.display()), None);
    let source = dir.read_all().unwrap();
    assert!(source.errors.is_empty(), "{:?}", source.errors);
    assert_eq!(source.credentials.len(), 9);

    let dbs = open_with(&db.url(), Some(fixture_key()));
    let r = dbs.write_many(&source.credentials);
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    for c in source
        .credentials
        .iter()
        .filter(|c| c.kind == Kind::ClientKey)
    {
        assert_eq!(dbs.verify_hashed(c).unwrap(), Some(true), "{}", c.id);
    }

    let back_dir = tmp.path().join("back");
    let back = open_spec(&format!("prompttrain:{}", back_dir.display()), None);
    let from_db = dbs.read_all().unwrap();
    let accounts: Vec<Credential> = from_db
        .credentials
        .into_iter()
        .filter(|c| c.kind != Kind::ClientKeyHash)
        .collect();
    assert_eq!(accounts.len(), 6);
    let r = back.write_many(&accounts);
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let again = back.read_all().unwrap();
    let by_id: BTreeMap<String, &Credential> = again
        .credentials
        .iter()
        .map(|c| (c.id.to_string(), c))
        .collect();
    for orig in source
        .credentials
        .iter()
        .filter(|c| c.kind != Kind::ClientKey)
    {
        let got = by_id
            .get(&orig.id.to_string())
            .unwrap_or_else(|| panic!("{} lost", orig.id));
        assert!(got.secret.ct_eq(&orig.secret), "{} value", orig.id);
        assert_eq!(got.kind, orig.kind);
        for k in ["account_name", "type", "expires_at", "scopes", "is_max"] {
            assert_eq!(got.metadata.get(k), orig.metadata.get(k), "{} {k}", orig.id);
        }
    }
}

#[test]
fn cli_migrates_a_credentials_dir_into_an_empty_prompttrain_db() {
    let Some(db) = pg::fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = support::copy_fixture("prompttrain/credentials", tmp.path());
    let from = format!("prompttrain:{}", src_dir.display());
    let to = format!("prompttrain-db:{}", db.url());
    let state = tmp.path().join("state");
    let (out, stdout, stderr) = support::run(
        support::migrate_cmd(&state, &from, &to, &["--yes", "--json"])
            .env("CREDENTIAL_ENCRYPTION_KEY", fixture_key().expose()),
    );
    let r: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    assert_eq!(r["rolled_back"], false, "{r}");
    assert_eq!(r["total"], 9, "{r}");
    // Client keys land as hashes: the engine checks them with
    // Store::verify_hashed, as read() cannot return them.
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["copied"], 9, "{r}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for secret in support::expected().values() {
        assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
    }

    // The database holds every account value (checked by decrypting) and
    // every client key hash; the accounts are complete and active.
    let s = open_with(&db.url(), Some(fixture_key()));
    let scan = s.read_all().unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    for (id, value) in expected_accounts() {
        let c = scan
            .credentials
            .iter()
            .find(|c| c.id.to_string() == id)
            .unwrap_or_else(|| panic!("{id} not migrated"));
        assert_eq!(c.secret.expose(), value, "{id}");
    }
    for (id, key) in expected_client_keys() {
        let c = Credential::new(id.parse().unwrap(), Kind::ClientKey, key.as_str());
        assert_eq!(s.verify_hashed(&c).unwrap(), Some(true), "{id}");
    }
    let inactive: i64 = pg::connect(&db.url())
        .query_one("SELECT count(*) FROM accounts WHERE NOT is_active", &[])
        .unwrap()
        .get(0);
    assert_eq!(inactive, 0, "no account left waiting for a token");
}

/// Waits until a session of `url`'s database waits for a row lock (or a
/// uniqueness check) another transaction holds.
fn wait_for_a_lock_wait(url: &str) {
    let mut c = pg::connect(url);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "credshift never waited for the row"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn api_key_cred(account: &str, value: &str) -> Credential {
    let mut m = Metadata::new();
    m.insert("account_name".into(), account.replace('_', "-").into());
    Credential::new(
        CredentialId::new(format!("account:{account}"), "api_key"),
        Kind::ApiKey,
        value,
    )
    .with_metadata(m)
}

#[test]
fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
    use credshift::crypto::prompttrain::{MasterKey, encrypt};
    use credshift::store::{Replace, ReplaceIf};
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/schema.sql"));
    let s = open_with(&url, Some(fixture_key()));
    let ours = api_key_cred("acc_race", "sk-ant-api03-ours-written-by-credshift");
    let old = api_key_cred("acc_race", "sk-ant-api03-old-value-to-put-back");
    s.write(&ours).unwrap();
    let seen = s.read(&ours.id).unwrap().expect("written");
    let master = MasterKey::new(&fixture_key()).unwrap();
    let theirs = encrypt(&master, "sk-ant-api03-theirs-written-meanwhile").unwrap();
    let value = |s: &dyn Store| {
        s.read(&ours.id)
            .unwrap()
            .map(|c| c.secret.expose().to_string())
    };

    // Another application has the row locked (it is about to write it)
    // while credshift puts the old value back over the one it saw.
    let mut app = pg::connect(&url);
    let mut tx = app.transaction().unwrap();
    tx.execute(
        "SELECT 1 FROM accounts WHERE account_id = 'acc_race' FOR UPDATE",
        &[],
    )
    .unwrap();
    let put_back = |expected: Option<&Credential>| Replace {
        expected: expected.cloned(),
        new: old.clone(),
    };
    let replaced = std::thread::scope(|sc| {
        let run = sc.spawn(|| s.replace_if_unchanged(&[put_back(Some(&seen))]));
        wait_for_a_lock_wait(&url);
        tx.execute(
            "UPDATE accounts SET api_key_encrypted = $1 WHERE account_id = 'acc_race'",
            &[&theirs],
        )
        .unwrap();
        tx.commit().unwrap();
        run.join().unwrap()
    });
    // Compared while the row was locked: the application's value stays (a
    // read, compare, then write would have put the old value over it).
    assert_eq!(
        value(s.as_ref()).as_deref(),
        Some("sk-ant-api03-theirs-written-meanwhile"),
        "another application's value was overwritten"
    );
    assert_eq!(*replaced[0].as_ref().unwrap(), ReplaceIf::Changed);

    // Plain outcomes: a stale expectation and "expected absent" keep what
    // is there; the value as read now is replaced.
    let r: Vec<ReplaceIf> = s
        .replace_if_unchanged(&[put_back(Some(&seen)), put_back(None)])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(r, [ReplaceIf::Changed, ReplaceIf::Changed]);
    let now = s.read(&ours.id).unwrap().unwrap();
    let r = s.replace_if_unchanged(&[put_back(Some(&now))]);
    assert_eq!(*r[0].as_ref().unwrap(), ReplaceIf::Replaced);
    assert_eq!(
        value(s.as_ref()).as_deref(),
        Some("sk-ant-api03-old-value-to-put-back")
    );
    // Absent: written when nothing is there.
    assert!(s.delete(&ours.id).unwrap());
    let r = s.replace_if_unchanged(&[put_back(None)]);
    assert_eq!(*r[0].as_ref().unwrap(), ReplaceIf::Replaced);
    assert_eq!(
        value(s.as_ref()).as_deref(),
        Some("sk-ant-api03-old-value-to-put-back")
    );

    // A row another application inserts while credshift writes one where
    // there was none: compared again once it exists, and kept.
    let fresh = api_key_cred("acc_new", "sk-ant-api03-credshift-new-row");
    let mut app = pg::connect(&url);
    let mut tx = app.transaction().unwrap();
    tx.execute(
        "INSERT INTO accounts (account_id, account_name, credential_type, api_key_encrypted) \
         VALUES ('acc_new', 'app-new', 'api_key', $1)",
        &[&theirs],
    )
    .unwrap();
    let r = std::thread::scope(|sc| {
        let run = sc.spawn(|| {
            s.replace_if_unchanged(&[Replace {
                expected: None,
                new: fresh.clone(),
            }])
        });
        wait_for_a_lock_wait(&url);
        tx.commit().unwrap();
        run.join().unwrap()
    });
    assert_eq!(*r[0].as_ref().unwrap(), ReplaceIf::Changed);
    let kept = s.read(&fresh.id).unwrap().unwrap();
    assert_eq!(
        kept.secret.expose(),
        "sk-ant-api03-theirs-written-meanwhile"
    );

    // Client keys: only the hash is stored, so the key expected is compared
    // with it; "nothing" means an empty slot.
    let key = |v: &str| {
        Credential::new(
            CredentialId::new("train:t1", "client_key/0"),
            Kind::ClientKey,
            v,
        )
    };
    let put = |expected: Option<Credential>, new: &str| Replace {
        expected,
        new: key(new),
    };
    let outcomes = |r: Vec<credshift::error::Result<ReplaceIf>>| -> Vec<ReplaceIf> {
        r.into_iter().map(Result::unwrap).collect()
    };
    assert_eq!(
        outcomes(s.replace_if_unchanged(&[put(None, "cnp_first_key_0000000000")])),
        [ReplaceIf::Replaced]
    );
    assert_eq!(
        outcomes(s.replace_if_unchanged(&[
            put(None, "cnp_second_key_000000000"),
            put(
                Some(key("cnp_other_key_0000000000")),
                "cnp_second_key_000000000"
            ),
        ])),
        [ReplaceIf::Changed, ReplaceIf::Changed]
    );
    assert_eq!(
        outcomes(s.replace_if_unchanged(&[put(
            Some(key("cnp_first_key_0000000000")),
            "cnp_second_key_000000000"
        )])),
        [ReplaceIf::Replaced]
    );
    assert_eq!(
        s.verify_hashed(&key("cnp_second_key_000000000")).unwrap(),
        Some(true)
    );
}

/// A train another application creates while credshift writes a client
/// key where there was no train: the insert meets its row, which is then
/// locked and compared once more, and the application's key stays.
#[test]
fn compare_and_replace_keeps_a_train_another_application_created_meanwhile() {
    use credshift::crypto::prompttrain::hash_client_key;
    use credshift::store::{Replace, ReplaceIf};
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/schema.sql"));
    let s = open_with(&url, Some(fixture_key()));
    let key = |v: &str| {
        Credential::new(
            CredentialId::new("train:t_new", "client_key/0"),
            Kind::ClientKey,
            v,
        )
    };
    let mut app = pg::connect(&url);
    let mut tx = app.transaction().unwrap();
    let theirs = vec![Some(hash_client_key("cnp_theirs_created_meanwhile"))];
    tx.execute(
        "INSERT INTO trains (train_id, client_api_keys_hashed) VALUES ('t_new', $1)",
        &[&theirs],
    )
    .unwrap();
    let r = std::thread::scope(|sc| {
        let run = sc.spawn(|| {
            s.replace_if_unchanged(&[Replace {
                expected: None,
                new: key("cnp_credshift_new_train_key"),
            }])
        });
        wait_for_a_lock_wait(&url);
        tx.commit().unwrap();
        run.join().unwrap()
    });
    assert_eq!(*r[0].as_ref().unwrap(), ReplaceIf::Changed);
    assert_eq!(
        s.verify_hashed(&key("cnp_theirs_created_meanwhile"))
            .unwrap(),
        Some(true),
        "the application's client key was overwritten"
    );
}
