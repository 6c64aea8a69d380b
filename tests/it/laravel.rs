//! The Fragments Engine `a_i_credentials` store (`laravel:sqlite:PATH`):
//! the real fixture rows, round trips, tampering, wrong keys, and an
//! independent Node.js implementation of Laravel Crypt reading what we write.

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use credshift::credential::{Credential, Kind, Secret};
use credshift::crypto::laravel::{self as crypt, AppKey};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use support::*;

const FIXTURE_IDS: [&str; 4] = [
    "anthropic/key",
    "ollama/base",
    "openai/key",
    "openrouter/key",
];

fn app_key_text() -> String {
    fragments_app_key()
}

/// A SQLite database built from the fixture's schema.sql + data.sql.
fn fixture_db(dir: &Path) -> PathBuf {
    fragments_db(&dir.join("fragments.sqlite"))
}

fn open_with(path: &Path, key: Option<&str>) -> credshift::error::Result<Box<dyn Store>> {
    let opts = KeyOptions {
        app_key: key.map(Secret::new),
        ..KeyOptions::default()
    };
    store::open(&StoreSpec::LaravelSqlite(path.to_path_buf()), &opts)
}

fn open(path: &Path) -> Box<dyn Store> {
    open_with(path, Some(&app_key_text())).unwrap()
}

/// The app's table in this database: `ai_credentials` when it exists
/// (current installs, and what credshift creates), else `a_i_credentials`.
fn table_of(conn: &rusqlite::Connection) -> &'static str {
    let has = |t: &str| {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [t],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            > 0
    };
    if has("ai_credentials") {
        "ai_credentials"
    } else {
        "a_i_credentials"
    }
}

/// Every row as (id, provider, payload, is_active, updated_at).
fn raw_rows(path: &Path) -> Vec<(i64, String, String, i64, Option<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT id, provider, encrypted_credentials, is_active, updated_at \
             FROM {} ORDER BY id",
            table_of(&conn)
        ))
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

fn payload_of(path: &Path, provider: &str) -> String {
    raw_rows(path)
        .into_iter()
        .find(|r| r.1 == provider)
        .unwrap_or_else(|| panic!("no row for {provider}"))
        .2
}

fn set_payload(path: &Path, row_id: i64, payload: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let n = conn
        .execute(
            "UPDATE a_i_credentials SET encrypted_credentials = ?1 WHERE id = ?2",
            rusqlite::params![payload, row_id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn api_key(s: &str, value: &str) -> Credential {
    Credential::new(id(s), Kind::ApiKey, value)
}

fn assert_no_secret(text: &str) {
    for (k, v) in expected() {
        assert!(!text.contains(&v), "{k}'s value leaked: {text}");
    }
    let key = app_key_text();
    assert!(!text.contains(&key), "APP_KEY leaked: {text}");
    assert!(
        !text.contains(key.trim_start_matches("base64:")),
        "APP_KEY leaked: {text}"
    );
}

#[test]
fn every_fixture_value_decrypts_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let store = open(&db);
    assert_eq!(ids(store.as_ref()), FIXTURE_IDS);
    let expected = expected();
    for fid in FIXTURE_IDS {
        let c = store.read(&id(fid)).unwrap().unwrap();
        assert_eq!(c.secret.expose(), expected[fid], "{fid}");
        assert_eq!(c.kind, Kind::guess(&c.id.name), "{fid}");
        assert_eq!(c.metadata["provider"], c.id.namespace.as_str(), "{fid}");
        assert_eq!(c.metadata["credential_type"], "api_key", "{fid}");
        assert_eq!(c.metadata["created_via"], "artisan", "{fid}");
    }
    let scan = store.read_all().unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let got: BTreeMap<String, String> = scan
        .credentials
        .iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect();
    for fid in FIXTURE_IDS {
        assert_eq!(got[fid], expected[fid]);
    }
    assert_eq!(store.read(&id("openai/nope")).unwrap().map(|_| ()), None);
    assert_eq!(store.read(&id("mistral/key")).unwrap().map(|_| ()), None);

    let cap = store.probe();
    assert!(cap.available && cap.writable && cap.persistent && cap.encrypted_at_rest);
    assert!(cap.exists);
    assert_eq!(cap.item_count, Some(4));
    assert!(cap.warnings.is_empty(), "{:?}", cap.warnings);
}

#[test]
fn every_fixture_value_decrypts_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let spec = format!("laravel:sqlite:{}", db.display());
    let (out, stdout, stderr) = run(credshift(dir.path()).env("APP_KEY", app_key_text()).args([
        "inventory",
        "--from",
        &spec,
        "--json",
    ]));
    assert!(out.status.success(), "{stderr}");
    let inv: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let listed: Vec<&str> = inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, FIXTURE_IDS);
    assert_eq!(inv["errors"], serde_json::json!([]));
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);

    let expected = expected();
    for fid in FIXTURE_IDS {
        let (out, stdout, stderr) = run(credshift(dir.path())
            .env("APP_KEY", app_key_text())
            .args(["get", "--from", &spec, fid]));
        assert!(out.status.success(), "{fid}: {stderr}");
        assert_eq!(stdout, format!("{}\n", expected[fid]), "{fid}");
    }

    // The key may come from a file instead of the environment.
    let key_file = dir.path().join("app_key");
    std::fs::write(&key_file, format!("{}\n", app_key_text())).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (out, stdout, stderr) = run(credshift(dir.path()).args([
        "get",
        "--app-key-file",
        key_file.to_str().unwrap(),
        "--from",
        &spec,
        "ollama/base",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), expected["ollama/base"]);
}

#[test]
fn write_list_read_delete_round_trip_with_soft_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let store = open(&db);
    let expected = expected();
    let before = raw_rows(&db);

    // A new field in an existing row: the row's other field survives.
    store
        .write(&api_key("openai/organization", "org-Zq8ключ🔑"))
        .unwrap();
    assert_eq!(
        secret_of(store.as_ref(), "openai/organization").as_deref(),
        Some("org-Zq8ключ🔑")
    );
    assert_eq!(
        secret_of(store.as_ref(), "openai/key").as_deref(),
        Some(expected["openai/key"].as_str())
    );
    let after = raw_rows(&db);
    assert_eq!(after.len(), before.len(), "updated in place, no new row");
    assert_ne!(after[0].2, before[0].2, "payload re-encrypted");
    assert_ne!(after[0].4, before[0].4, "updated_at set");
    assert_eq!(after[1..], before[1..], "other rows untouched");

    // Replacing a value.
    store
        .write(&api_key("openai/key", "sk-proj-replaced-0001"))
        .unwrap();
    assert_eq!(
        secret_of(store.as_ref(), "openai/key").as_deref(),
        Some("sk-proj-replaced-0001")
    );

    // A new provider becomes a new active api_key row.
    let mut c = api_key("mistral/key", "mistral-secret-value-42");
    c.metadata.insert("label".into(), "from test".into());
    store.write(&c).unwrap();
    let listed = ids(store.as_ref());
    assert!(listed.contains(&"mistral/key".to_string()), "{listed:?}");
    assert!(listed.contains(&"openai/organization".to_string()));
    let m = store.read(&id("mistral/key")).unwrap().unwrap();
    assert_eq!(m.secret.expose(), "mistral-secret-value-42");
    assert_eq!(m.metadata["provider"], "mistral");
    assert_eq!(m.metadata["credential_type"], "api_key");
    assert_eq!(m.metadata["label"], "from test");

    // Deleting one of two fields keeps the row active.
    assert!(store.delete(&id("openai/organization")).unwrap());
    assert_eq!(secret_of(store.as_ref(), "openai/organization"), None);
    assert!(secret_of(store.as_ref(), "openai/key").is_some());
    assert!(
        !store.delete(&id("openai/organization")).unwrap(),
        "already gone"
    );

    // Deleting the last field soft-deletes the row: still there, inactive,
    // and holding no secret any more.
    let mistral_before = raw_rows(&db)
        .into_iter()
        .find(|r| r.1 == "mistral")
        .unwrap();
    assert!(store.delete(&id("mistral/key")).unwrap());
    let mistral = raw_rows(&db)
        .into_iter()
        .find(|r| r.1 == "mistral")
        .unwrap();
    assert_eq!(mistral.0, mistral_before.0);
    assert_eq!(mistral.3, 0, "is_active = false");
    let key = AppKey::parse(&Secret::new(app_key_text())).unwrap();
    let plain = crypt::decrypt(&key, &mistral.2).unwrap();
    assert_eq!(&plain[..], b"s:2:\"{}\";");
    assert!(!ids(store.as_ref()).contains(&"mistral/key".to_string()));
    assert_eq!(secret_of(store.as_ref(), "mistral/key"), None);
    assert!(!store.delete(&id("mistral/key")).unwrap());

    // Writing it again reactivates the same row (the unique key forbids a second one).
    store
        .write(&api_key("mistral/key", "mistral-second-value"))
        .unwrap();
    let mistral = raw_rows(&db)
        .into_iter()
        .find(|r| r.1 == "mistral")
        .unwrap();
    assert_eq!((mistral.0, mistral.3), (mistral_before.0, 1));
    assert_eq!(
        secret_of(store.as_ref(), "mistral/key").as_deref(),
        Some("mistral-second-value")
    );
}

#[test]
fn inactive_rows_are_not_listed_or_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE a_i_credentials SET is_active = 0 WHERE provider = 'ollama'",
            [],
        )
        .unwrap();
    let store = open(&db);
    assert_eq!(
        ids(store.as_ref()),
        ["anthropic/key", "openai/key", "openrouter/key"]
    );
    assert_eq!(secret_of(store.as_ref(), "ollama/base"), None);
    assert!(!store.delete(&id("ollama/base")).unwrap());
}

#[test]
fn a_new_database_is_created_private_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/new.sqlite");
    let store = open(&db);
    assert!(matches!(
        store.list(),
        Err(credshift::error::StoreError::NotFound { .. })
    ));
    let cap = store.probe();
    assert!(cap.available && !cap.exists);
    assert!(!db.exists(), "probe and list create nothing");

    store
        .write(&api_key("openai/key", "sk-new-db-value-123456"))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert!(store.check(&api_key("openai/key", "v")).is_none());
    let long = format!("{}/key", "p".repeat(256));
    assert!(store.check(&api_key(&long, "v")).unwrap().contains("255"));
    assert_eq!(mode, 0o600);
    assert_eq!(ids(store.as_ref()), ["openai/key"]);
    // A new database gets the table under the app's current name.
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(table_of(&conn), "ai_credentials");
    let rows = raw_rows(&db);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].3, 1);
    assert_eq!(store.probe().item_count, Some(1));
}

#[test]
fn a_tampered_mac_fails_that_row_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let anthropic = raw_rows(&db)
        .into_iter()
        .find(|r| r.1 == "anthropic")
        .unwrap();
    // Flip one hex digit of the MAC inside the base64 JSON.
    let json = String::from_utf8(b64_decode(&anthropic.2)).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mac = v["mac"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if mac.starts_with('0') { '1' } else { '0' },
        &mac[1..]
    );
    v["mac"] = flipped.into();
    set_payload(&db, anthropic.0, &b64_encode(v.to_string().as_bytes()));

    let store = open(&db);
    let listing = store.list().unwrap();
    let listed: Vec<String> = listing.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!listed.contains(&"anthropic/key".to_string()));
    assert_eq!(listing.errors.len(), 1, "{:?}", listing.errors);
    let err = &listing.errors[0];
    assert_eq!(
        err.location,
        format!("a_i_credentials id={} provider=anthropic", anthropic.0)
    );
    assert!(err.error.contains("MAC"), "{}", err.error);

    let e = store.read(&id("anthropic/key")).unwrap_err().to_string();
    assert!(e.contains("provider=anthropic") && e.contains("MAC"), "{e}");
    assert_no_secret(&e);
    // Writing into a row that fails its MAC changes nothing.
    let before = raw_rows(&db);
    assert!(
        store
            .write(&api_key("anthropic/other", "x-value-123"))
            .is_err()
    );
    assert_eq!(raw_rows(&db), before);
    // The others still read.
    assert_eq!(
        secret_of(store.as_ref(), "openrouter/key").as_deref(),
        Some(expected()["openrouter/key"].as_str())
    );

    // Through the CLI: listed errors, exit 0, nothing secret.
    let spec = format!("laravel:sqlite:{}", db.display());
    let (out, stdout, stderr) = run(credshift(dir.path()).env("APP_KEY", app_key_text()).args([
        "inventory",
        "--from",
        &spec,
        "--json",
    ]));
    assert!(out.status.success(), "{stderr}");
    let inv: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(inv["items"].as_array().unwrap().len(), 3);
    assert_eq!(
        inv["errors"][0]["location"],
        format!("a_i_credentials id={} provider=anthropic", anthropic.0)
    );
    assert_no_secret(&stdout);
}

#[test]
fn a_wrong_app_key_gives_clear_per_row_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let wrong = format!("base64:{}", b64_encode(&[0x5a; 32]));
    let store = open_with(&db, Some(&wrong)).unwrap();
    let listing = store.list().unwrap();
    assert!(listing.entries.is_empty());
    let locations: Vec<&str> = listing.errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        locations,
        [
            "a_i_credentials id=1 provider=openai",
            "a_i_credentials id=2 provider=anthropic",
            "a_i_credentials id=3 provider=openrouter",
            "a_i_credentials id=4 provider=ollama",
        ]
    );
    for e in &listing.errors {
        assert!(e.error.contains("APP_KEY"), "{}", e.error);
        assert_no_secret(&e.error);
        assert!(!e.error.contains(&wrong));
    }
    let cap = store.probe();
    assert!(
        cap.warnings.iter().any(|w| w.contains("APP_KEY")),
        "{:?}",
        cap.warnings
    );

    // Neither an update nor a new row is written under the wrong key.
    let before = raw_rows(&db);
    let e = store
        .write(&api_key("openai/key", "sk-should-not-land-1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("MAC") && e.contains("APP_KEY"), "{e}");
    let e = store
        .write(&api_key("mistral/key", "sk-should-not-land-2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("APP_KEY does not match"), "{e}");
    assert!(store.delete(&id("openai/key")).is_err());
    assert_eq!(raw_rows(&db), before, "nothing written");

    // Through the CLI.
    let spec = format!("laravel:sqlite:{}", db.display());
    let (out, stdout, stderr) = run(credshift(dir.path()).env("APP_KEY", &wrong).args([
        "get",
        "--from",
        &spec,
        "openai/key",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("a_i_credentials id=1 provider=openai"),
        "{stderr}"
    );
    assert_no_secret(&stderr);
    assert!(!stderr.contains(&wrong));
}

#[test]
fn a_missing_or_malformed_app_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let e = open_with(&db, None).err().unwrap().to_string();
    assert!(e.contains("APP_KEY is not set"), "{e}");

    for bad in [
        "base64:c2hvcnQta2V5LXN1cGVyc2VjcmV0".to_string(), // 21 bytes
        "not-a-key-supersecret".to_string(),
        format!("base64:{}!!", &app_key_text()[7..20]),
    ] {
        let e = open_with(&db, Some(&bad)).err().unwrap().to_string();
        assert!(e.contains("APP_KEY is malformed"), "{e}");
        assert!(!e.contains(&bad) && !e.contains("supersecret"), "{e}");
    }

    let spec = format!("laravel:sqlite:{}", db.display());
    let (out, _, stderr) = run(credshift(dir.path()).args(["inventory", "--from", &spec]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("APP_KEY"), "{stderr}");
}

#[test]
fn plain_json_rows_and_non_string_fields() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let key = AppKey::parse(&Secret::new(app_key_text())).unwrap();
    // As Crypt::encryptString stores it: JSON without PHP serialization,
    // here with a number beside the key.
    let plain = crypt::encrypt(
        &key,
        br#"{"key":"gsk-plain-json-value-1","max_tokens":4096}"#,
    )
    .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO a_i_credentials (provider, credential_type, encrypted_credentials, \
             is_active) VALUES ('groq', 'api_key', ?1, 1)",
            [&plain],
        )
        .unwrap();
    let store = open(&db);
    let listing = store.list().unwrap();
    assert!(
        listing
            .entries
            .iter()
            .any(|e| e.id.to_string() == "groq/key")
    );
    assert_eq!(listing.entries.len(), 5);
    assert_eq!(listing.errors.len(), 1, "{:?}", listing.errors);
    assert!(
        listing.errors[0]
            .location
            .ends_with("provider=groq field=max_tokens")
    );
    assert_eq!(
        secret_of(store.as_ref(), "groq/key").as_deref(),
        Some("gsk-plain-json-value-1")
    );

    // Write-back keeps the framing and the non-string field.
    store
        .write(&api_key("groq/key", "gsk-replaced-value-2"))
        .unwrap();
    let raw = crypt::decrypt(&key, &payload_of(&db, "groq")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).expect("still plain JSON");
    assert_eq!(
        v,
        serde_json::json!({"key": "gsk-replaced-value-2", "max_tokens": 4096})
    );
}

#[test]
fn other_credential_types_get_their_own_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let key = AppKey::parse(&Secret::new(app_key_text())).unwrap();
    let payload = crypt::encrypt(
        &key,
        crypt::php_serialize_str(r#"{"access_token":"ya29.oauth-value-123"}"#).as_bytes(),
    )
    .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO a_i_credentials (provider, credential_type, encrypted_credentials) \
             VALUES ('openai', 'oauth', ?1)",
            [&payload],
        )
        .unwrap();
    let store = open(&db);
    let c = store
        .read(&id("openai:oauth/access_token"))
        .unwrap()
        .unwrap();
    assert_eq!(c.secret.expose(), "ya29.oauth-value-123");
    assert_eq!(c.kind, Kind::OauthAccess);
    assert_eq!(c.metadata["credential_type"], "oauth");
    // The api_key row of the same provider is separate.
    assert_eq!(secret_of(store.as_ref(), "openai/access_token"), None);
    store
        .write(&api_key("openai:oauth/refresh_token", "refresh-value-456"))
        .unwrap();
    assert_eq!(raw_rows(&db).len(), 5, "written into the oauth row");
    assert_eq!(
        secret_of(store.as_ref(), "openai:oauth/refresh_token").as_deref(),
        Some("refresh-value-456")
    );
}

// ------------------------------------------------- independent Node.js check

/// Laravel Crypt in Node, written from the format description, sharing no
/// code with credshift. stdin: `{"key": APP_KEY, "payloads": [...]}` for
/// decrypt; `{"key", "encrypt": [...]}` for encrypt. The key never goes
/// through argv.
const NODE_LARAVEL: &str = r#"
const crypto = require('crypto');
let input = '';
process.stdin.on('data', d => input += d);
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  const key = Buffer.from(req.key.replace(/^base64:/, ''), 'base64');
  if (key.length !== 32) throw new Error('bad key length');
  if (req.payloads) {
    const out = req.payloads.map(p => {
      const j = JSON.parse(Buffer.from(p, 'base64').toString('utf8'));
      const mac = crypto.createHmac('sha256', key).update(j.iv + j.value).digest();
      if (!crypto.timingSafeEqual(mac, Buffer.from(j.mac, 'hex'))) return {error: 'mac'};
      if (j.tag !== '' && j.tag !== undefined) return {error: 'tag'};
      const d = crypto.createDecipheriv('aes-256-cbc', key, Buffer.from(j.iv, 'base64'));
      const plain = Buffer.concat([d.update(Buffer.from(j.value, 'base64')), d.final()]);
      // PHP unserialize of s:N:"..."; with N counted in bytes.
      const m = /^s:(\d+):"/.exec(plain.toString('latin1'));
      if (!m) return {error: 'not serialized'};
      const start = m[0].length, n = Number(m[1]);
      if (plain.subarray(start + n).toString('latin1') !== '";') return {error: 'length'};
      return {fields: JSON.parse(plain.subarray(start, start + n).toString('utf8'))};
    });
    process.stdout.write(JSON.stringify(out));
  } else {
    const out = req.encrypt.map(text => {
      const body = Buffer.from(text, 'utf8');
      const ser = Buffer.concat([Buffer.from('s:' + body.length + ':"'), body, Buffer.from('";')]);
      const iv = crypto.randomBytes(16);
      const c = crypto.createCipheriv('aes-256-cbc', key, iv);
      const value = Buffer.concat([c.update(ser), c.final()]).toString('base64');
      const ivb = iv.toString('base64');
      const mac = crypto.createHmac('sha256', key).update(ivb + value).digest('hex');
      return Buffer.from(JSON.stringify({iv: ivb, value, mac, tag: ''})).toString('base64');
    });
    process.stdout.write(JSON.stringify(out));
  }
});
"#;

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_node(request: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new("node")
        .args(["-e", NODE_LARAVEL])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn rows_written_by_credshift_decrypt_in_an_independent_node_implementation() {
    if !node_available() && skip_without("node", "`node --version` did not run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_db(dir.path());
    let store = open(&db);
    // Multibyte text makes PHP's byte length differ from the char count.
    let values = [
        ("openai/organization", "org-ключ-🔑-日本語-x"),
        ("mistral/key", "mistral-\"quoted\"-\\-value"),
        ("cohere/key", "co-plain-ascii-0123456789"),
    ];
    for (cid, v) in values {
        store.write(&api_key(cid, v)).unwrap();
    }
    assert!(store.delete(&id("ollama/base")).unwrap());

    let rows = raw_rows(&db);
    let payloads: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let out = run_node(&serde_json::json!({"key": app_key_text(), "payloads": payloads}));
    let decoded: BTreeMap<String, serde_json::Value> = rows
        .iter()
        .zip(out.as_array().unwrap())
        .map(|(r, o)| {
            assert!(o.get("error").is_none(), "{}: node says {o}", r.1);
            (r.1.clone(), o["fields"].clone())
        })
        .collect();
    let expected = expected();
    assert_eq!(decoded["openai"]["organization"], values[0].1);
    assert_eq!(decoded["openai"]["key"], expected["openai/key"].as_str());
    assert_eq!(decoded["mistral"]["key"], values[1].1);
    assert_eq!(decoded["cohere"]["key"], values[2].1);
    assert_eq!(
        decoded["ollama"],
        serde_json::json!({}),
        "soft-deleted, emptied"
    );
    assert_eq!(
        decoded["anthropic"]["key"],
        expected["anthropic/key"].as_str()
    );

    // And the other way: rows Node encrypts as Laravel would are read.
    let texts = [r#"{"key":"gm-ключ-🔑-from-node"}"#];
    let out = run_node(&serde_json::json!({"key": app_key_text(), "encrypt": texts}));
    let payload = out[0].as_str().unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO a_i_credentials (provider, credential_type, encrypted_credentials) \
             VALUES ('gemini', 'api_key', ?1)",
            [payload],
        )
        .unwrap();
    assert_eq!(
        secret_of(store.as_ref(), "gemini/key").as_deref(),
        Some("gm-ключ-🔑-from-node")
    );
}

fn b64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
