//! `credshift rekey` on the stores without a server: Laravel's table in
//! SQLite (rows under APP_KEY and two previous keys, checked by an
//! independent Node implementation of Laravel's Crypt), credshift's own
//! SQLite table, and the whole-file stores (`encrypted:`, `bundle:`).
//! Rollback puts the old ciphertexts back byte for byte.

use crate::support;

use std::path::{Path, PathBuf};

use support::laravel::{NodeOpened, insert_rows, key_text, payloads, rekey_cmd};
use support::{canary, credshift, private_file, run};

/// The fields of a row Node opened (a serialized JSON object).
fn fields_of(v: &NodeOpened) -> Option<serde_json::Value> {
    match v {
        NodeOpened::Plain {
            text,
            serialized: true,
        } => Some(serde_json::from_str(text).unwrap()),
        _ => None,
    }
}

/// The fixture table plus `extra` rows per previous key, encrypted by
/// Node under those keys. Returns the db and every row's fields.
fn laravel_db(dir: &Path, prev: &[String], extra: usize) -> (PathBuf, Vec<serde_json::Value>) {
    let db = support::fragments_db(&dir.join("app.sqlite"));
    for (k, key) in prev.iter().enumerate() {
        let texts: Vec<String> = (0..extra)
            .map(|i| format!(r#"{{"key":"sk-prev{k}-row{i}-ключ-0123456789abcdef"}}"#))
            .collect();
        let enc = support::laravel::node_encrypt(key, &texts).unwrap();
        let rows = enc.into_iter().enumerate();
        insert_rows(&db, rows.map(|(i, p)| (format!("prov{k}x{i}"), p)));
    }
    let fields = decrypt_all(&db, &support::fragments_app_key(), prev);
    (db, fields)
}

/// Every row's fields, opened by Node under whichever of the keys fits.
fn decrypt_all(db: &Path, app_key: &str, prev: &[String]) -> Vec<serde_json::Value> {
    let rows = payloads(db);
    let ps: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    let mut out = vec![serde_json::Value::Null; rows.len()];
    for key in std::iter::once(app_key.to_string()).chain(prev.iter().cloned()) {
        let r = support::laravel::node_decrypt(&key, &ps).unwrap();
        for (i, v) in r.iter().enumerate() {
            if let Some(f) = fields_of(v) {
                out[i] = f;
            }
        }
    }
    assert!(
        out.iter().all(|v| !v.is_null()),
        "a fixture row opens under no key"
    );
    out
}

#[test]
fn laravel_rows_under_two_previous_keys_end_under_the_new_key_only() {
    if support::laravel::node_decrypt(&key_text(1), &[]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let prev = vec![key_text(7), key_text(9)];
    let (db, before) = laravel_db(dir.path(), &prev, 3);
    let old_payloads = payloads(&db);
    let new_key = key_text(42);
    let new_path = private_file(&dir.path().join("new.key"), format!("{}\n", &new_key));

    // The dry run counts each key's rows and writes nothing.
    let (out, stdout, stderr) = run(rekey_cmd(
        &state,
        &db,
        &prev,
        &new_path,
        &["--dry-run", "--json"],
    ));
    assert!(out.status.success(), "{stderr}");
    let plan = support::json(&stdout);
    let counts: Vec<u64> = plan["under_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["cells"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![4, 3, 3], "{plan}");
    assert_eq!(payloads(&db), old_payloads);

    let (out, stdout, stderr) = run(rekey_cmd(
        &state,
        &db,
        &prev,
        &new_path,
        &["--yes", "--print-env"],
    ));
    assert!(out.status.success(), "{stderr}");
    // --print-env (stdout, a pipe here) says exactly what to set.
    let old_app_key = support::fragments_app_key();
    assert_eq!(
        stdout,
        format!(
            "APP_KEY={new_key}\nAPP_PREVIOUS_KEYS={old_app_key},{},{}\n",
            prev[0], prev[1]
        )
    );
    assert!(
        stderr.contains("APP_PREVIOUS_KEYS=<the APP_KEY it has now>"),
        "{stderr}"
    );

    // Node opens every row with the new key, none with an old one, and
    // the fields are the ones each row held.
    let rows = payloads(&db);
    let ps: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    let now = support::laravel::node_decrypt(&new_key, &ps).unwrap();
    for (i, v) in now.iter().enumerate() {
        assert_eq!(fields_of(v).as_ref(), Some(&before[i]), "row {}", rows[i].0);
    }
    for key in std::iter::once(old_app_key.clone()).chain(prev.iter().cloned()) {
        let r = support::laravel::node_decrypt(&key, &ps).unwrap();
        assert!(
            r.iter()
                .all(|v| *v == NodeOpened::Error("MAC is invalid".into())),
            "an old key still opens a row"
        );
    }

    // History lists the rekey; no key and no value in the state dir.
    let (_, hist, _) = run(credshift(&state).args(["history", "--json"]));
    let hist = support::json(&hist);
    let entry = &hist.as_array().unwrap()[0];
    assert_eq!(entry["status"], "completed");
    assert_eq!(entry["copied"], 10);
    let id = entry["id"].as_str().unwrap().to_string();
    let haystacks = canary::file_haystacks(&state);
    assert!(!haystacks.is_empty());
    for secret in [old_app_key.as_str(), &prev[0], &prev[1], &new_key] {
        canary::assert_absent(secret, &haystacks);
        canary::assert_absent(secret, &[("stderr".into(), stderr.clone().into_bytes())]);
    }
    for f in &before {
        for v in f.as_object().unwrap().values() {
            canary::assert_absent(v.as_str().unwrap(), &haystacks);
        }
    }

    // Verify, then roll back: the old ciphertexts, byte for byte.
    let (out, _, stderr) = run(credshift(&state).args(["verify", "--migration-id", &id]));
    assert!(out.status.success(), "{stderr}");

    // Issue 25 follow-up: Laravel may roll back some rows alone (each row
    // stays under a key the app reads with APP_PREVIOUS_KEYS).
    let first = rows[0].0.to_string();
    let (out, stdout, stderr) = run(credshift(&state).args([
        "rollback",
        "--migration-id",
        &id,
        "--only",
        &first,
        "--yes",
        "--json",
    ]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let partial = support::json(&stdout);
    assert_eq!(partial["copied"], 9, "{partial}");
    assert_eq!(partial["status"], "completed", "{partial}");
    let after = payloads(&db);
    assert_eq!(after[0], old_payloads[0], "the chosen row, byte for byte");
    for (i, row) in after.iter().enumerate().skip(1) {
        assert_ne!(row.1, old_payloads[i].1, "row {} stays rekeyed", row.0);
    }
    let (out, _, stderr) = run(credshift(&state).args(["verify", "--migration-id", &id]));
    assert!(
        out.status.success(),
        "verify knows the row went back: {stderr}"
    );
    let (out, _, stderr) = run(credshift(&state).args([
        "rollback",
        "--migration-id",
        &id,
        "--only",
        "no-such-row",
        "--yes",
    ]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("matches no-such-row"), "{stderr}");

    let (out, stdout, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes", "--json"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(support::json(&stdout)["rolled_back"], true);
    assert_eq!(payloads(&db), old_payloads);
    // A rollback needs no key, and verify now checks the old ciphertexts.
    let (out, _, stderr) = run(credshift(&state).args(["verify", "--migration-id", &id]));
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn a_wrong_old_key_stops_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = support::fragments_db(&dir.path().join("app.sqlite"));
    let before = std::fs::read(&db).unwrap();
    let new_path = private_file(&dir.path().join("new.key"), format!("{}\n", &key_text(42)));
    let mut c = credshift(&state);
    c.env("APP_KEY", key_text(1)).args([
        "rekey",
        "--store",
        &format!("laravel:sqlite:{}", db.display()),
        "--new-key-file",
        new_path.to_str().unwrap(),
        "--yes",
    ]);
    let (out, _, stderr) = run(c);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("none of the 4 encrypted values opens under the old key"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    let (_, hist, _) = run(credshift(&state).args(["history", "--json"]));
    assert_eq!(support::json(&hist), serde_json::json!([]));
}

#[test]
fn rekey_refuses_without_consent_and_without_a_new_key_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = support::fragments_db(&dir.path().join("app.sqlite"));
    let spec = format!("laravel:sqlite:{}", db.display());
    let before = std::fs::read(&db).unwrap();
    let new_path = private_file(&dir.path().join("new.key"), format!("{}\n", &key_text(42)));
    // No --yes and no terminal: exit 2, nothing touched.
    let (out, _, stderr) = run(credshift(&state)
        .env("APP_KEY", support::fragments_app_key())
        .args([
            "rekey",
            "--store",
            &spec,
            "--new-key-file",
            new_path.to_str().unwrap(),
        ]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("without --yes"), "{stderr}");
    // No new key at all.
    let (out, _, stderr) = run(credshift(&state)
        .env("APP_KEY", support::fragments_app_key())
        .args(["rekey", "--store", &spec, "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no new key given"), "{stderr}");
    // A store with no key to rotate.
    let (out, _, stderr) =
        run(credshift(&state).args(["rekey", "--store", "dotenv:x.env", "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // --generate-new-key never overwrites a file.
    let (out, _, stderr) = run(credshift(&state)
        .env("APP_KEY", support::fragments_app_key())
        .args([
            "rekey",
            "--store",
            &spec,
            "--yes",
            "--generate-new-key",
            new_path.to_str().unwrap(),
        ]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

fn write_env(dir: &Path) -> PathBuf {
    let env = dir.join("a.env");
    std::fs::write(
        &env,
        "OPENAI_API_KEY=sk-proj-rekey-canary-0001-abcdefghijklmnop\nDB_PASSWORD=pw-rekey-canary-0002-zyxw\n",
    )
    .unwrap();
    env
}

const OLD_PW: &str = "old rekey passphrase 1";
const NEW_PW: &str = "new rekey passphrase 2";

fn read_with(state: &Path, spec: &str, pw_file: &Path, id: &str) -> (bool, String) {
    let (out, stdout, stderr) = run(credshift(state).args([
        "--passphrase-file",
        pw_file.to_str().unwrap(),
        "get",
        "--from",
        spec,
        id,
    ]));
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// Every stored byte of a credshift SQLite table that a rekey rewrites.
fn sqlite_cells(scheme: &str, path: &Path) -> Vec<Vec<Option<Vec<u8>>>> {
    if scheme != "sqlite" {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT kdf_alg, kdf_iterations, kdf_salt, check_nonce, check_ciphertext FROM credshift_meta",
        "SELECT namespace, name, kind, nonce, ciphertext FROM credshift_credentials ORDER BY 1, 2",
    ] {
        let mut st = conn.prepare(sql).unwrap();
        let rows = st
            .query_map([], |r| {
                (0..5)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(n) => {
                                Some(n.to_string().into_bytes())
                            }
                            v => Some(v.as_bytes().unwrap_or_default().to_vec()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        out.extend(rows.map(|r| r.unwrap()));
    }
    assert!(out.len() >= 3);
    out
}

/// credshift's own stores: a new passphrase (and a higher KDF count), then
/// rollback to the old bytes.
fn own_store_rekeys_and_rolls_back(scheme: &str) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = write_env(dir.path());
    let old = private_file(&dir.path().join("old.pw"), format!("{}\n", OLD_PW));
    let new = private_file(&dir.path().join("new.pw"), format!("{}\n", NEW_PW));
    let target = dir.path().join("store.x");
    let spec = format!("{scheme}:{}", target.display());
    let (out, _, stderr) = run(credshift(&state).args([
        "--passphrase-file",
        old.to_str().unwrap(),
        "migrate",
        "--from",
        &format!("dotenv:{}", env.display()),
        "--to",
        &spec,
        "--yes",
    ]));
    assert!(out.status.success(), "{stderr}");
    let before = std::fs::read(&target).unwrap();
    let cells_before = sqlite_cells(scheme, &target);
    let (out, stdout, stderr) = run(credshift(&state).args([
        "--passphrase-file",
        old.to_str().unwrap(),
        "rekey",
        "--store",
        &spec,
        "--new-passphrase-file",
        new.to_str().unwrap(),
        "--kdf-iterations",
        "200000",
        "--yes",
        "--json",
    ]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let report = support::json(&stdout);
    assert_eq!(report["operation"], "rekey");
    let id = report["migration_id"].as_str().unwrap().to_string();
    let (ok, text) = read_with(&state, &spec, &new, "env/OPENAI_API_KEY");
    assert!(ok, "{text}");
    assert_eq!(text.trim(), "sk-proj-rekey-canary-0001-abcdefghijklmnop");
    assert!(!read_with(&state, &spec, &old, "env/OPENAI_API_KEY").0);
    for secret in [
        OLD_PW,
        NEW_PW,
        "sk-proj-rekey-canary-0001-abcdefghijklmnop",
        "pw-rekey-canary-0002-zyxw",
    ] {
        canary::assert_absent(secret, &canary::file_haystacks(&state));
        canary::assert_absent(secret, &[("stdout".into(), stdout.clone().into_bytes())]);
    }
    // Some rows alone would not open under either key (or, for a file,
    // there are no rows): refused with the reason, nothing changed.
    let rekeyed = std::fs::read(&target).unwrap();
    let (out, _, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--only", "*", "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let why = if scheme == "sqlite" {
        "checks one key for all its rows"
    } else {
        "no rows to choose"
    };
    assert!(stderr.contains(why), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "credshift rollback --migration-id {id}` (no --only)"
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), rekeyed);
    let (out, _, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes"]));
    assert!(out.status.success(), "{stderr}");
    if scheme == "sqlite" {
        assert_eq!(
            sqlite_cells(scheme, &target),
            cells_before,
            "the old cells, byte for byte"
        );
    } else {
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "the old file, byte for byte"
        );
    }
    let (ok, text) = read_with(&state, &spec, &old, "env/OPENAI_API_KEY");
    assert!(ok, "{text}");
    assert!(!read_with(&state, &spec, &new, "env/OPENAI_API_KEY").0);
}

#[test]
fn an_encrypted_file_rekeys_to_a_new_passphrase_and_rolls_back_byte_for_byte() {
    own_store_rekeys_and_rolls_back("encrypted");
}

#[test]
fn a_bundle_rekeys_and_rolls_back() {
    own_store_rekeys_and_rolls_back("bundle");
}

#[test]
fn a_credshift_sqlite_table_rekeys_and_rolls_back() {
    own_store_rekeys_and_rolls_back("sqlite");
}

#[test]
fn a_generated_key_file_takes_over_an_encrypted_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = write_env(dir.path());
    let old = private_file(&dir.path().join("old.pw"), format!("{}\n", OLD_PW));
    let target = dir.path().join("e.enc");
    let spec = format!("encrypted:{}", target.display());
    let (out, _, stderr) = run(credshift(&state).args([
        "--passphrase-file",
        old.to_str().unwrap(),
        "migrate",
        "--from",
        &format!("dotenv:{}", env.display()),
        "--to",
        &spec,
        "--yes",
    ]));
    assert!(out.status.success(), "{stderr}");
    let key = dir.path().join("keys/new.key");
    let (out, _, stderr) = run(credshift(&state).args([
        "--passphrase-file",
        old.to_str().unwrap(),
        "rekey",
        "--store",
        &spec,
        "--generate-new-key",
        key.to_str().unwrap(),
        "--yes",
    ]));
    assert!(out.status.success(), "{stderr}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    let (out, stdout, stderr) = run(credshift(&state).args([
        "--key-file",
        key.to_str().unwrap(),
        "get",
        "--from",
        &spec,
        "env/DB_PASSWORD",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "pw-rekey-canary-0002-zyxw");
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains(r#""alg":"none""#), "{text}");
}

#[test]
fn the_rekey_report_has_a_migration_reports_fields_and_history_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = support::fragments_db(&dir.path().join("app.sqlite"));
    let new_path = private_file(&dir.path().join("new.key"), format!("{}\n", &key_text(42)));
    let (out, stdout, stderr) = run(rekey_cmd(&state, &db, &[], &new_path, &["--yes", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let r = support::json(&stdout);
    for field in [
        "migration_id",
        "from",
        "to",
        "total",
        "copied",
        "skipped",
        "conflicts",
        "invalid",
        "failed",
        "rolled_back",
        "failures",
        "backup",
        "verified",
        "warnings",
        "next_steps",
    ] {
        assert!(r.get(field).is_some(), "no {field} in {r}");
    }
    assert_eq!(r["operation"], "rekey");
    assert_eq!(r["total"], 4);
    assert_eq!(r["copied"], 4);
    // A second run finds everything under the new key: nothing to do.
    let (out, stdout, stderr) = run(credshift(&state)
        .env("APP_KEY", key_text(42))
        .args([
            "rekey",
            "--store",
            &format!("laravel:sqlite:{}", db.display()),
        ])
        .args([
            "--new-key-file",
            new_path.to_str().unwrap(),
            "--dry-run",
            "--json",
        ]));
    // The old key is now APP_KEY's new value; "new" is the same: refused.
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    // Resume of a finished rekey reports it, with no key needed.
    let id = r["migration_id"].as_str().unwrap();
    let (out, stdout, stderr) =
        run(credshift(&state).args(["resume", "--migration-id", id, "--yes", "--json"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(support::json(&stdout)["copied"], 4);
    let (_, text, _) = run(credshift(&state).args(["history"]));
    assert!(
        text.contains("(new key)") && text.contains("completed"),
        "{text}"
    );
}
