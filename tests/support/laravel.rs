//! Fragments Engine's table as the app's migrations create it, for the
//! Laravel tests. Spelled in the fixtures (`fragments/schema.sql` for
//! SQLite, `fragments/schema.postgres.sql` for PostgreSQL), apart from the
//! copy credshift creates a missing table with, so that the tests check
//! credshift against the app rather than against itself.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{fixture, skip_without};

/// One payload as Node's reader (`scripts/laravel-crypto.js`) opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOpened {
    /// The plaintext, and whether it was PHP-serialized (`Crypt::encrypt`).
    Plain { text: String, serialized: bool },
    /// Why it did not open (`MAC is invalid` under another key).
    Error(String),
}

/// Run the Node reader in `mode` (`None`: decrypt) over `input`; `None`
/// when Node is missing (after [`skip_without`], which fails the test under
/// `CREDSHIFT_REQUIRE_SERVICES=1`).
fn node_script(
    app_key: &str,
    mode: Option<&str>,
    input: &[String],
) -> Option<Vec<serde_json::Value>> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/laravel-crypto.js");
    let child = Command::new("node")
        .arg(&script)
        .args(mode)
        .env("APP_KEY", app_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            skip_without("node", &e.to_string());
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("node: {e}: {}", String::from_utf8_lossy(&out.stderr))),
    )
}

/// Open each of `payloads` under `app_key` with an implementation of
/// Laravel's Encrypter that shares no code with credshift.
pub fn node_decrypt(app_key: &str, payloads: &[String]) -> Option<Vec<NodeOpened>> {
    let v = node_script(app_key, None, payloads)?;
    Some(
        v.into_iter()
            .map(|r| match r.get("error") {
                Some(e) => NodeOpened::Error(e.as_str().unwrap_or_default().to_string()),
                None => NodeOpened::Plain {
                    text: r["plaintext"].as_str().unwrap().to_string(),
                    serialized: r["serialized"].as_bool().unwrap(),
                },
            })
            .collect(),
    )
}

/// Each text as `Crypt::encrypt` writes it under `app_key`, by Node.
pub fn node_encrypt(app_key: &str, texts: &[String]) -> Option<Vec<String>> {
    let v = node_script(app_key, Some("encrypt"), texts)?;
    Some(
        v.into_iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect(),
    )
}

/// The PostgreSQL table named `table`, its `is_active` column of
/// `active_type` (`BOOLEAN` as the app makes it; `SMALLINT` as some
/// installs have it).
pub fn pg_schema(table: &str, active_type: &str) -> String {
    let default = if active_type == "BOOLEAN" {
        "TRUE"
    } else {
        "1"
    };
    std::fs::read_to_string(fixture("fragments/schema.postgres.sql"))
        .unwrap()
        .replace(
            "is_active BOOLEAN NOT NULL DEFAULT TRUE",
            &format!("is_active {active_type} NOT NULL DEFAULT {default}"),
        )
        .replace("a_i_credentials", table)
}

/// A Laravel `APP_KEY` text: `base64:` and 32 bytes of `byte`.
pub fn key_text(byte: u8) -> String {
    use base64::Engine;
    format!(
        "base64:{}",
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    )
}

/// Every row of the Fragments table in SQLite at `db` as (id, payload), by id.
pub fn payloads(db: &std::path::Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT id, encrypted_credentials FROM a_i_credentials ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
}

/// Add active `api_key` rows (provider, payload) to the Fragments table in
/// SQLite at `db`, in one transaction.
pub fn insert_rows(db: &std::path::Path, rows: impl IntoIterator<Item = (String, String)>) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    for (provider, payload) in rows {
        tx.execute(
            "INSERT INTO a_i_credentials (provider, credential_type, encrypted_credentials, \
             is_active) VALUES (?1, 'api_key', ?2, 1)",
            [provider, payload],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// `credshift rekey` of the Fragments table in SQLite at `db` to the key
/// in `new_key`, under the fixture's `APP_KEY` and the previous keys
/// `prev`, with `extra` arguments.
pub fn rekey_cmd(
    state: &std::path::Path,
    db: &std::path::Path,
    prev: &[String],
    new_key: &std::path::Path,
    extra: &[&str],
) -> Command {
    let mut c = super::credshift(state);
    c.env("APP_KEY", super::fragments_app_key());
    if !prev.is_empty() {
        c.env("APP_PREVIOUS_KEYS", prev.join(","));
    }
    c.args([
        "rekey",
        "--store",
        &format!("laravel:sqlite:{}", db.display()),
        "--new-key-file",
        new_key.to_str().unwrap(),
    ])
    .args(extra);
    c
}
