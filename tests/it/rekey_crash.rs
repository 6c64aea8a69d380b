//! A rekey killed right after each of its journal records
//! (`CREDSHIFT_CRASH_AT=K`, an abort like a power cut): every value is
//! then readable under exactly one of the two keys, `resume` finishes
//! (every value under the new key only) and `rollback` puts back the old
//! ciphertexts byte for byte. Laravel's table in SQLite (rows rewritten in
//! batches of 1, 2, 4, ...), an `encrypted:` file (one atomic rewrite) and
//! credshift's tables in SQLite and PostgreSQL (one transaction with the meta row).

use crate::support;

use std::path::{Path, PathBuf};

use credshift::credential::Secret;
use credshift::crypto::laravel::{self as crypt, AppKey};
use support::laravel::{key_text, payloads};
use support::{credshift, only_id, private_file, run};

fn app_key(text: &str) -> AppKey {
    AppKey::parse(&Secret::new(text)).unwrap()
}

/// The fixture's 4 rows plus 6 under a previous key: 10 rows, batches
/// 1, 2, 4, 3, so 12 journal records.
fn laravel_db(dir: &Path, prev: &AppKey) -> PathBuf {
    let db = support::fragments_db(&dir.join("app.sqlite"));
    support::laravel::insert_rows(
        &db,
        (0..6).map(|i| {
            let text =
                crypt::php_serialize_str(&format!(r#"{{"key":"sk-crash-row-{i}-0123456789"}}"#));
            (
                format!("crash{i}"),
                crypt::encrypt(prev, text.as_bytes()).unwrap(),
            )
        }),
    );
    db
}

/// Which keys open each payload: (old ones, new one).
fn openers(payloads: &[(i64, String)], old: &[&AppKey], new: &AppKey) -> Vec<(usize, bool)> {
    payloads
        .iter()
        .map(|(_, p)| {
            let olds = old.iter().filter(|k| crypt::decrypt(k, p).is_ok()).count();
            (olds, crypt::decrypt(new, p).is_ok())
        })
        .collect()
}

fn plaintexts(payloads: &[(i64, String)], keys: &[&AppKey]) -> Vec<Vec<u8>> {
    payloads
        .iter()
        .map(|(_, p)| {
            keys.iter()
                .find_map(|k| crypt::decrypt(k, p).ok())
                .expect("opens under one key")
                .to_vec()
        })
        .collect()
}

fn laravel_cmd(state: &Path, prev: &str, new_key: &Path) -> std::process::Command {
    let mut c = credshift(state);
    c.env("APP_KEY", support::fragments_app_key())
        .env("APP_PREVIOUS_KEYS", prev)
        .args(["--new-key-file", new_key.to_str().unwrap()]);
    c
}

#[test]
fn a_laravel_rekey_crashed_after_every_record_resumes_or_rolls_back() {
    let prev_text = key_text(5);
    let prev = app_key(&prev_text);
    let app = app_key(&support::fragments_app_key());
    let new_text = key_text(77);
    let new = app_key(&new_text);
    let mut records = None;
    for k in 1..=20u32 {
        for recovery in ["resume", "rollback"] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let db = laravel_db(dir.path(), &prev);
            let original = payloads(&db);
            let plain = plaintexts(&original, &[&app, &prev]);
            let new_file = private_file(&dir.path().join("new.key"), new_text.as_bytes());
            let spec = format!("laravel:sqlite:{}", db.display());
            let (out, _, stderr) = run(laravel_cmd(&state, &prev_text, &new_file)
                .env("CREDSHIFT_CRASH_AT", k.to_string())
                .args(["rekey", "--store", &spec, "--yes"]));
            if out.status.success() {
                // K is past the last record: the run finished.
                records.get_or_insert(k - 1);
                break;
            }
            assert_eq!(out.status.code(), None, "K={k}: not an abort: {stderr}");
            // Each row under exactly one of the two keys.
            let now = payloads(&db);
            for (i, (olds, n)) in openers(&now, &[&app, &prev], &new).iter().enumerate() {
                assert_eq!(
                    olds + usize::from(*n),
                    1,
                    "K={k}: row {i} under {olds} old, new {n}"
                );
            }
            let id = only_id(&state);
            let (out, _, stderr) = run(laravel_cmd(&state, &prev_text, &new_file).args([
                recovery,
                "--migration-id",
                &id,
                "--yes",
            ]));
            assert!(out.status.success(), "K={k} {recovery}: {stderr}");
            let after = payloads(&db);
            if recovery == "resume" {
                for (i, (olds, n)) in openers(&after, &[&app, &prev], &new).iter().enumerate() {
                    assert!(
                        *n && *olds == 0,
                        "K={k}: row {i} not under the new key only"
                    );
                }
                assert_eq!(plaintexts(&after, &[&new]), plain, "K={k}: values kept");
            } else {
                assert_eq!(after, original, "K={k}: old ciphertexts byte for byte");
            }
        }
        if records.is_some() {
            break;
        }
    }
    assert_eq!(records, Some(12), "records a 10-row rekey journals");
}

/// What a credshift store holds, as stored: the file, or every cell a
/// rekey rewrites in its tables.
fn dump(spec: &str) -> Vec<String> {
    if let Some(p) = spec
        .strip_prefix("encrypted:")
        .or_else(|| spec.strip_prefix("bundle:"))
    {
        return vec![hex::encode(std::fs::read(p).unwrap())];
    }
    if let Some(p) = spec.strip_prefix("sqlite:") {
        let c = rusqlite::Connection::open(p).unwrap();
        let mut out = Vec::new();
        for sql in [
            "SELECT kdf_alg || ':' || hex(check_nonce) || hex(check_ciphertext) FROM credshift_meta",
            "SELECT namespace || name || hex(nonce) || hex(ciphertext) FROM credshift_credentials \
             ORDER BY 1",
        ] {
            let mut st = c.prepare(sql).unwrap();
            out.extend(
                st.query_map([], |r| r.get::<_, String>(0))
                    .unwrap()
                    .map(|r| r.unwrap()),
            );
        }
        return out;
    }
    let mut c = support::pg::connect(spec);
    let mut out: Vec<String> = c
        .query(
            "SELECT kdf || encode(salt, 'hex') || encode(check_value, 'hex') FROM credshift_meta",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.extend(
        c.query(
            "SELECT id || encode(nonce, 'hex') || encode(ciphertext, 'hex') \
             FROM credshift_credentials ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0)),
    );
    out
}

/// A credshift store (one batch: the file, or the table with its meta row)
/// rekeyed from one key file to another, killed after each record.
fn own_store_crashes(make_spec: &dyn Fn(&Path) -> Option<String>) {
    let mut records = None;
    for k in 1..=10u32 {
        for recovery in ["resume", "rollback"] {
            let dir = tempfile::tempdir().unwrap();
            let Some(spec) = make_spec(dir.path()) else {
                return;
            };
            let state = dir.path().join("state");
            let old_key = dir.path().join("old.key");
            let new_key = dir.path().join("new.key");
            credshift::crypto::kdf::generate_key_file(&old_key).unwrap();
            credshift::crypto::kdf::generate_key_file(&new_key).unwrap();
            let env = dir.path().join("a.env");
            std::fs::write(
                &env,
                "A_TOKEN=crash-file-value-0001\nB_TOKEN=crash-file-value-0002\n",
            )
            .unwrap();
            let with = |key: &Path| {
                let mut c = credshift(&state);
                c.args(["--key-file", key.to_str().unwrap()]);
                c
            };
            let (out, _, stderr) = run(with(&old_key).args([
                "migrate",
                "--from",
                &format!("dotenv:{}", env.display()),
                "--to",
                &spec,
                "--yes",
            ]));
            assert!(out.status.success(), "{stderr}");
            let original = dump(&spec);
            std::fs::remove_dir_all(&state).unwrap();
            let (out, _, stderr) = run(with(&old_key)
                .env("CREDSHIFT_CRASH_AT", k.to_string())
                .args(["rekey", "--store", &spec, "--yes", "--new-key-file"])
                .arg(&new_key));
            if out.status.success() {
                records.get_or_insert(k - 1);
                break;
            }
            assert_eq!(out.status.code(), None, "K={k}: not an abort: {stderr}");
            let reads = |key: &Path| {
                run(with(key).args(["get", "--from", &spec, "env/A_TOKEN"]))
                    .0
                    .status
                    .success()
            };
            assert!(
                reads(&old_key) != reads(&new_key),
                "K={k}: one key, not both or none"
            );
            let id = only_id(&state);
            let (out, _, stderr) = run(with(&old_key)
                .args([recovery, "--migration-id", &id, "--yes", "--new-key-file"])
                .arg(&new_key));
            assert!(out.status.success(), "K={k} {recovery}: {stderr}");
            if recovery == "resume" {
                assert!(reads(&new_key) && !reads(&old_key), "K={k}");
            } else {
                assert_eq!(dump(&spec), original, "K={k}: the old bytes");
            }
        }
        if records.is_some() {
            break;
        }
    }
    assert_eq!(records, Some(6));
}

#[test]
fn an_encrypted_file_rekey_crashed_after_every_record_resumes_or_rolls_back() {
    own_store_crashes(&|d| Some(format!("encrypted:{}", d.join("e.enc").display())));
}

#[test]
fn a_bundle_rekey_crashed_after_every_record_resumes_or_rolls_back() {
    own_store_crashes(&|d| Some(format!("bundle:{}", d.join("b.bundle").display())));
}

#[test]
fn a_credshift_sqlite_rekey_crashed_after_every_record_resumes_or_rolls_back() {
    own_store_crashes(&|d| Some(format!("sqlite:{}", d.join("c.db").display())));
}

#[test]
fn a_credshift_postgres_rekey_crashed_after_every_record_resumes_or_rolls_back() {
    own_store_crashes(&|_| support::pg::fresh_db().map(|db| db.url()));
}

/// Every encrypted value of agent-prompttrain's accounts, as stored.
fn account_values(url: &str) -> Vec<Option<String>> {
    let mut c = support::pg::connect(url);
    c.query(
        "SELECT api_key_encrypted, oauth_access_token_encrypted, \
         oauth_refresh_token_encrypted FROM accounts ORDER BY account_id",
        &[],
    )
    .unwrap()
    .iter()
    .flat_map(|r| {
        (0..3)
            .map(|i| r.get::<_, Option<String>>(i))
            .collect::<Vec<_>>()
    })
    .collect()
}

#[test]
fn a_prompttrain_rekey_crashed_after_every_record_resumes_or_rolls_back() {
    use credshift::crypto::prompttrain::{self as pt, MasterKey};
    let old_text =
        std::fs::read_to_string(support::fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"))
            .unwrap()
            .trim()
            .to_string();
    let new_text = "crash-test-new-master-key-0123456789abcdef".to_string();
    let old = MasterKey::new(&Secret::new(old_text.as_str())).unwrap();
    let new = MasterKey::new(&Secret::new(new_text.as_str())).unwrap();
    let mut records = None;
    for k in 1..=20u32 {
        for recovery in ["resume", "rollback"] {
            let Some(db) = support::pg::fresh_db() else {
                return;
            };
            let url = db.url();
            support::pg::run_sql_file(&url, &support::fixture("prompttrain-db/schema.sql"));
            support::pg::run_sql_file(&url, &support::fixture("prompttrain-db/data.sql"));
            let original = account_values(&url);
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let new_file = private_file(&dir.path().join("new.key"), new_text.as_bytes());
            let spec = format!("prompttrain-db:{url}");
            let cmd = || {
                let mut c = credshift(&state);
                c.env("CREDENTIAL_ENCRYPTION_KEY", &old_text)
                    .args(["--new-key-file", new_file.to_str().unwrap()]);
                c
            };
            let (out, _, stderr) = run(cmd()
                .env("CREDSHIFT_CRASH_AT", k.to_string())
                .args(["rekey", "--store", &spec, "--yes"]));
            if out.status.success() {
                records.get_or_insert(k - 1);
                break;
            }
            assert_eq!(out.status.code(), None, "K={k}: not an abort: {stderr}");
            for v in account_values(&url).iter().flatten() {
                let under_old = pt::decrypt(&old, v).is_ok();
                let under_new = pt::decrypt(&new, v).is_ok();
                assert!(
                    under_old != under_new,
                    "K={k}: a value under both keys or none"
                );
            }
            let id = only_id(&state);
            let (out, _, stderr) = run(cmd().args([recovery, "--migration-id", &id, "--yes"]));
            assert!(out.status.success(), "K={k} {recovery}: {stderr}");
            let after = account_values(&url);
            if recovery == "resume" {
                for (a, o) in after.iter().zip(&original) {
                    if let (Some(a), Some(o)) = (a, o) {
                        assert_eq!(
                            pt::decrypt(&new, a).unwrap().expose(),
                            pt::decrypt(&old, o).unwrap().expose(),
                            "K={k}"
                        );
                    }
                }
            } else {
                assert_eq!(after, original, "K={k}: old ciphertexts byte for byte");
            }
        }
        if records.is_some() {
            break;
        }
    }
    assert_eq!(records, Some(10), "6 values: batches 1, 2, 3");
}

/// A Laravel rekey killed first, then killed again after each record of
/// its own resume (or its own rollback): every row stays under exactly
/// one key, and the next resume (or rollback) finishes the job.
#[test]
fn a_laravel_rekey_crashed_again_during_its_resume_or_rollback_finishes() {
    let prev_text = key_text(5);
    let prev = app_key(&prev_text);
    let app = app_key(&support::fragments_app_key());
    let new_text = key_text(77);
    let new = app_key(&new_text);
    // Killed after the first batch's done (5) and in the third batch (8).
    for first in [5u32, 8] {
        for recovery in ["resume", "rollback"] {
            let mut finished = false;
            for k in 1..=20u32 {
                let dir = tempfile::tempdir().unwrap();
                let state = dir.path().join("state");
                let db = laravel_db(dir.path(), &prev);
                let original = payloads(&db);
                let plain = plaintexts(&original, &[&app, &prev]);
                let new_file = private_file(&dir.path().join("new.key"), new_text.as_bytes());
                let spec = format!("laravel:sqlite:{}", db.display());
                let (out, _, stderr) = run(laravel_cmd(&state, &prev_text, &new_file)
                    .env("CREDSHIFT_CRASH_AT", first.to_string())
                    .args(["rekey", "--store", &spec, "--yes"]));
                assert_eq!(out.status.code(), None, "not an abort: {stderr}");
                let id = only_id(&state);
                let again = || {
                    let mut c = laravel_cmd(&state, &prev_text, &new_file);
                    c.args([recovery, "--migration-id", &id, "--yes"]);
                    c
                };
                let (out, _, stderr) = run(again().env("CREDSHIFT_CRASH_AT", k.to_string()));
                let crashed = out.status.code().is_none();
                if !crashed {
                    assert!(out.status.success(), "{first}/{recovery} K={k}: {stderr}");
                    finished = true;
                }
                for (i, (olds, n)) in openers(&payloads(&db), &[&app, &prev], &new)
                    .iter()
                    .enumerate()
                {
                    assert_eq!(
                        olds + usize::from(*n),
                        1,
                        "{first}/{recovery} K={k}: row {i}"
                    );
                }
                if crashed {
                    let (out, _, stderr) = run(again());
                    assert!(
                        out.status.success(),
                        "{first}/{recovery} K={k} again: {stderr}"
                    );
                }
                let after = payloads(&db);
                if recovery == "resume" {
                    assert!(
                        openers(&after, &[&app, &prev], &new)
                            .iter()
                            .all(|(olds, n)| *n && *olds == 0),
                        "{first}/{recovery} K={k}"
                    );
                    assert_eq!(plaintexts(&after, &[&new]), plain);
                } else {
                    assert_eq!(after, original, "{first}/{recovery} K={k}: byte for byte");
                }
                if finished {
                    break;
                }
            }
            assert!(finished, "{first}/{recovery}: never ran to its end");
        }
    }
}

/// Laravel's table in PostgreSQL (the Fragments rows: batches 1, 2, 1),
/// killed after each record, then resumed or rolled back.
#[test]
fn a_laravel_postgres_rekey_crashed_after_every_record_resumes_or_rolls_back() {
    let app = app_key(&support::fragments_app_key());
    let new_text = key_text(78);
    let new = app_key(&new_text);
    let mut records = None;
    for k in 1..=14u32 {
        for recovery in ["resume", "rollback"] {
            let Some(db) = support::pg::fresh_db() else {
                return;
            };
            let url = db.url();
            support::pg::execute(
                &url,
                &support::laravel::pg_schema("a_i_credentials", "BOOLEAN"),
            );
            let data = std::fs::read_to_string(support::fixture("fragments/data.sql"))
                .unwrap()
                .replace("}', 1, '", "}', TRUE, '");
            support::pg::execute(&url, &data);
            let rows = || -> Vec<(i64, String)> {
                support::pg::connect(&url)
                    .query(
                        "SELECT id, encrypted_credentials FROM a_i_credentials ORDER BY id",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            };
            let original = rows();
            assert_eq!(original.len(), 4);
            let plain = plaintexts(&original, &[&app]);
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let new_file = private_file(&dir.path().join("new.key"), new_text.as_bytes());
            let spec = format!("laravel:{url}");
            let cmd = || {
                let mut c = credshift(&state);
                c.env("APP_KEY", support::fragments_app_key())
                    .args(["--new-key-file", new_file.to_str().unwrap()]);
                c
            };
            let (out, _, stderr) = run(cmd()
                .env("CREDSHIFT_CRASH_AT", k.to_string())
                .args(["rekey", "--store", &spec, "--yes"]));
            if out.status.success() {
                records.get_or_insert(k - 1);
                break;
            }
            assert_eq!(out.status.code(), None, "K={k}: not an abort: {stderr}");
            for (i, (olds, n)) in openers(&rows(), &[&app], &new).iter().enumerate() {
                assert_eq!(olds + usize::from(*n), 1, "K={k}: row {i}");
            }
            let id = only_id(&state);
            let (out, _, stderr) = run(cmd().args([recovery, "--migration-id", &id, "--yes"]));
            assert!(out.status.success(), "K={k} {recovery}: {stderr}");
            let after = rows();
            if recovery == "resume" {
                assert!(
                    openers(&after, &[&app], &new)
                        .iter()
                        .all(|(olds, n)| *n && *olds == 0),
                    "K={k}"
                );
                assert_eq!(plaintexts(&after, &[&new]), plain, "K={k}");
            } else {
                assert_eq!(after, original, "K={k}: old ciphertexts byte for byte");
            }
        }
        if records.is_some() {
            break;
        }
    }
    assert_eq!(records, Some(10), "4 rows: batches 1, 2, 1");
}
