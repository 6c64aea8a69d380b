//! `credshift rekey` against a real PostgreSQL server: agent-prompttrain's
//! `accounts` (checked with an independent Node implementation of its
//! format: every value opens with the new key, none with the old), the
//! Fragments Engine table, and credshift's own table. Rollback puts the
//! old ciphertexts back byte for byte; no key or value reaches the
//! output, the journal, the audit log or the backup's metadata.

use crate::support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use credshift::credential::Secret;
use credshift::crypto::prompttrain::{self as pt, MasterKey};
use support::{canary, credshift, pg, private_file, run};

/// agent-prompttrain's format in Node (scripts/prompttrain-crypto.js):
/// each value decrypted under `key`, or `{"error"}`.
fn node_decrypt(key: &str, values: &[String]) -> Option<Vec<serde_json::Value>> {
    if Command::new("node").arg("--version").output().is_err() {
        support::skip_without("node", "node is not on PATH");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prompttrain-crypto.js");
    let mut child = Command::new("node")
        .arg(&script)
        .arg("decrypt")
        .env("CREDENTIAL_ENCRYPTION_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(values).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(v.as_array().unwrap().clone())
}

/// Every encrypted account value, by `account/column`, as stored.
fn account_values(url: &str) -> Vec<(String, String)> {
    let mut c = pg::connect(url);
    let mut out = Vec::new();
    for row in c
        .query(
            "SELECT account_id, api_key_encrypted, oauth_access_token_encrypted, \
             oauth_refresh_token_encrypted FROM accounts ORDER BY account_id",
            &[],
        )
        .unwrap()
    {
        let id: String = row.get(0);
        for (i, f) in ["api_key", "oauth_access_token", "oauth_refresh_token"]
            .iter()
            .enumerate()
        {
            if let Some(v) = row.get::<_, Option<String>>(i + 1) {
                out.push((format!("account:{id}/{f}"), v));
            }
        }
    }
    out
}

#[test]
fn prompttrain_values_end_under_the_new_key_only_and_roll_back_byte_for_byte() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/data.sql"));
    let old_key =
        std::fs::read_to_string(support::fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"))
            .unwrap()
            .trim()
            .to_string();
    let before = account_values(&url);
    let expected = support::expected();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let key_path = dir.path().join("new-credential.key");
    let spec = format!("prompttrain-db:{url}");
    let (out, stdout, stderr) = run(credshift(&state)
        .env("CREDENTIAL_ENCRYPTION_KEY", &old_key)
        .args(["rekey", "--store", &spec, "--generate-new-key"])
        .arg(&key_path)
        .args(["--yes", "--json"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let report = support::json(&stdout);
    assert_eq!(report["operation"], "rekey");
    assert_eq!(report["copied"].as_u64(), Some(before.len() as u64));
    let steps = report["next_steps"].to_string();
    assert!(steps.contains("CREDENTIAL_ENCRYPTION_KEY"), "{steps}");
    assert!(steps.contains(key_path.to_str().unwrap()), "{steps}");
    let new_key = std::fs::read_to_string(&key_path)
        .unwrap()
        .trim()
        .to_string();
    assert!(new_key.len() >= 32);

    let after = account_values(&url);
    assert_eq!(after.len(), before.len());
    // credshift's implementation of the format, always: the new key opens
    // every value, the old none.
    let new_master = MasterKey::new(&Secret::new(new_key.as_str())).unwrap();
    let old_master = MasterKey::new(&Secret::new(old_key.as_str())).unwrap();
    for (id, v) in &after {
        assert_eq!(pt::decrypt(&new_master, v).unwrap().expose(), expected[id]);
        assert!(
            pt::decrypt(&old_master, v).is_err(),
            "{id}: the old key opens it"
        );
    }
    // agent-prompttrain's own algorithm in Node, an independent check, where
    // node is (required under CREDSHIFT_REQUIRE_SERVICES=1); the checks
    // after it need no node.
    let values: Vec<String> = after.iter().map(|(_, v)| v.clone()).collect();
    if let Some(with_new) = node_decrypt(&new_key, &values) {
        assert_eq!(with_new.len(), after.len(), "node answered for every value");
        for ((id, _), plain) in after.iter().zip(&with_new) {
            assert_eq!(plain.as_str(), Some(expected[id].as_str()), "{id}: {plain}");
        }
        let with_old = node_decrypt(&old_key, &values).unwrap();
        assert_eq!(with_old.len(), after.len(), "node answered for every value");
        assert!(
            with_old.iter().all(|v| v.get("error").is_some()),
            "the old key still opens one"
        );
    }

    // No key, no value: in the output, the journal, the audit, the backup.
    let mut hay = canary::file_haystacks(&state);
    hay.push(("stdout".into(), stdout.into_bytes()));
    hay.push(("stderr".into(), stderr.into_bytes()));
    canary::assert_absent(&old_key, &hay);
    canary::assert_absent(&new_key, &hay);
    for (id, _) in &before {
        canary::assert_absent(&expected[id], &hay);
    }

    let id = report["migration_id"].as_str().unwrap().to_string();
    let (out, _, stderr) = run(credshift(&state).args(["verify", "--migration-id", &id]));
    assert!(out.status.success(), "{stderr}");
    // agent-prompttrain reads one key: some rows alone are refused, with
    // the reason and the whole rollback to run instead; nothing changes.
    let (out, _, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--only", "*", "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("one CREDENTIAL_ENCRYPTION_KEY")
            && stderr.contains(&format!(
                "credshift rollback --migration-id {id}` (no --only)"
            )),
        "{stderr}"
    );
    assert_eq!(account_values(&url), after);
    let (out, _, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        account_values(&url),
        before,
        "the old ciphertexts, byte for byte"
    );
}

#[test]
fn laravel_postgres_rekeys_and_rolls_back() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::execute(
        &url,
        &support::laravel::pg_schema("a_i_credentials", "BOOLEAN"),
    );
    let data = std::fs::read_to_string(support::fixture("fragments/data.sql"))
        .unwrap()
        .replace("}', 1, '", "}', TRUE, '");
    pg::execute(&url, &data);
    let payloads = || -> Vec<String> {
        pg::connect(&url)
            .query(
                "SELECT encrypted_credentials FROM a_i_credentials ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = payloads();
    assert_eq!(before.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let key_path = dir.path().join("app.key");
    let spec = format!("laravel:{url}");
    let (out, stdout, stderr) = run(credshift(&state)
        .env("APP_KEY", support::fragments_app_key())
        .args(["rekey", "--store", &spec, "--generate-new-key"])
        .arg(&key_path)
        .args(["--yes", "--json"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let report = support::json(&stdout);
    assert_eq!(report["copied"], 4);
    // The store opens with the new APP_KEY and reads every value.
    let new_key = std::fs::read_to_string(&key_path)
        .unwrap()
        .trim()
        .to_string();
    assert!(new_key.starts_with("base64:"));
    let (out, got, stderr) = run(credshift(&state).env("APP_KEY", &new_key).args([
        "get",
        "--from",
        &spec,
        "openai/key",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(got.trim(), support::expected()["openai/key"]);
    let id = report["migration_id"].as_str().unwrap().to_string();
    let (out, _, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(payloads(), before);
}

#[test]
fn a_credshift_postgres_table_rekeys_to_a_new_passphrase_and_rolls_back() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    std::fs::write(&env, "API_TOKEN=pg-rekey-canary-value-0001\n").unwrap();
    let old = private_file(
        &dir.path().join("old.pw"),
        format!("{}\n", "old pg passphrase 1"),
    );
    let new = private_file(
        &dir.path().join("new.pw"),
        format!("{}\n", "new pg passphrase 2"),
    );
    let with = |pw: &Path| {
        let mut c = credshift(&state);
        c.args(["--passphrase-file", pw.to_str().unwrap()]);
        c
    };
    let (out, _, stderr) = run(with(&old).args([
        "migrate",
        "--from",
        &format!("dotenv:{}", env.display()),
        "--to",
        &url,
        "--yes",
    ]));
    assert!(out.status.success(), "{stderr}");
    let cells = || -> Vec<String> {
        let mut c = pg::connect(&url);
        let mut v: Vec<String> = c
            .query(
                "SELECT encode(nonce, 'hex') || encode(ciphertext, 'hex') FROM credshift_credentials",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        v.push(
            c.query_one(
                "SELECT kdf || iterations || encode(salt, 'hex') || encode(check_value, 'hex') \
                 FROM credshift_meta",
                &[],
            )
            .unwrap()
            .get(0),
        );
        v
    };
    let before = cells();
    let (out, stdout, stderr) = run(with(&old)
        .args(["rekey", "--store", &url, "--new-passphrase-file"])
        .arg(&new)
        .args(["--yes", "--json"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let get = |pw: &Path| run(with(pw).args(["get", "--from", &url, "env/API_TOKEN"]));
    let (out, got, _) = get(&new);
    assert!(out.status.success());
    assert_eq!(got.trim(), "pg-rekey-canary-value-0001");
    assert!(!get(&old).0.status.success());
    let id = support::json(&stdout)["migration_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (out, _, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(cells(), before);
    assert!(get(&old).0.status.success());
}

/// A row agent-prompttrain rewrote during the rekey stays under the old
/// key; agent-prompttrain has one key only, so the report's first step is
/// to run the rekey again, and that second run rekeys just that row.
#[test]
fn a_row_the_app_changed_during_a_prompttrain_rekey_is_rekeyed_by_a_second_run() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/data.sql"));
    let old_text =
        std::fs::read_to_string(support::fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"))
            .unwrap()
            .trim()
            .to_string();
    let new_text = "second-run-new-master-key-0123456789abcdef";
    let old = MasterKey::new(&Secret::new(old_text.as_str())).unwrap();
    let new = MasterKey::new(&Secret::new(new_text)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let new_file = private_file(&dir.path().join("new.key"), format!("{}\n", new_text));
    let spec = format!("prompttrain-db:{url}");
    let rekey = |extra: &[&str]| {
        let mut c = credshift(&state);
        c.env("CREDENTIAL_ENCRYPTION_KEY", &old_text)
            .args(["--new-key-file", new_file.to_str().unwrap()])
            .args(extra);
        c
    };
    // Stopped after its plan; the application then writes a new API key
    // for acc_alpha under the key it has (the old one).
    let (out, _, stderr) =
        run(rekey(&["rekey", "--store", &spec, "--yes"]).env("CREDSHIFT_CRASH_AT", "2"));
    assert_eq!(out.status.code(), None, "not an abort: {stderr}");
    let apps_value = "sk-ant-api03-written-by-the-app-during-the-rekey-0123456789";
    pg::connect(&url)
        .execute(
            "UPDATE accounts SET api_key_encrypted = $1 WHERE account_id = 'acc_alpha'",
            &[&pt::encrypt(&old, apps_value).unwrap()],
        )
        .unwrap();
    let (_, hist, _) = run(credshift(&state).args(["history", "--json"]));
    let id = support::json(&hist)[0]["id"].as_str().unwrap().to_string();
    let (out, stdout, stderr) = run(rekey(&["resume", "--migration-id", &id, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let r = support::json(&stdout);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["conflicts"], 1, "{r}");
    let first = r["next_steps"][0].as_str().unwrap();
    assert!(
        first.starts_with("Before you switch: run `credshift rekey --store")
            && first.contains("only the 1 value(s)"),
        "{first}"
    );
    let values = account_values(&url);
    let still_old: Vec<&String> = values
        .iter()
        .filter(|(_, v)| pt::decrypt(&old, v).is_ok())
        .map(|(at, _)| at)
        .collect();
    assert_eq!(still_old, ["account:acc_alpha/api_key"]);

    // The second run, as the step says: only that row, the rest done.
    let (out, stdout, stderr) = run(rekey(&["rekey", "--store", &spec, "--yes", "--json"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let r = support::json(&stdout);
    assert_eq!(r["copied"], 1, "{r}");
    assert_eq!(r["skipped"].as_u64(), Some(values.len() as u64 - 1), "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["conflicts"], 0, "{r}");
    for (at, v) in account_values(&url) {
        assert!(
            pt::decrypt(&old, &v).is_err(),
            "{at}: still under the old key"
        );
        let plain = pt::decrypt(&new, &v).unwrap();
        if at == "account:acc_alpha/api_key" {
            assert_eq!(plain.expose(), apps_value);
        }
    }
}

/// The PostgreSQL compare-and-swap of a batch (one `UPDATE ... FROM
/// unnest` per column): a cell still holding its old value is swapped, one
/// the application changed is kept, a row gone is reported gone, and the
/// batched read gives each cell's value as it is now (or none).
#[test]
fn a_postgres_batch_swaps_only_cells_that_still_hold_their_old_value() {
    use credshift::store::rekey::{self as raw, CellRef, Swap, SwapOutcome};
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/data.sql"));
    let spec: credshift::store::StoreSpec = format!("prompttrain-db:{url}").parse().unwrap();
    let opts = credshift::unlock::KeyOptions::default();
    let mut cells = raw::open(&spec, &opts).unwrap();
    let all = cells.cells().unwrap();
    assert!(all.len() >= 3, "{}", all.len());
    let (a, b, c) = (&all[0], &all[1], &all[2]);
    // The application rewrites b meanwhile, and deletes c's row.
    let mut pgc = pg::connect(&url);
    pgc.execute(
        &format!(
            "UPDATE accounts SET {} = 'app-wrote-this' WHERE account_id = $1",
            b.at.column
        ),
        &[&b.at.row],
    )
    .unwrap();
    let gone = CellRef {
        row: "no-such-account".into(),
        ..c.at.clone()
    };
    let swaps = vec![
        Swap {
            at: a.at.clone(),
            old: a.value.clone(),
            new: "new-a".into(),
        },
        Swap {
            at: b.at.clone(),
            old: b.value.clone(),
            new: "new-b".into(),
        },
        Swap {
            at: gone.clone(),
            old: c.value.clone(),
            new: "new-c".into(),
        },
    ];
    let out = cells.swap(&swaps).unwrap();
    assert_eq!(
        out,
        [
            SwapOutcome::Swapped,
            SwapOutcome::Changed,
            SwapOutcome::Missing
        ]
    );
    let now = cells
        .read(&[a.at.clone(), b.at.clone(), gone, c.at.clone()])
        .unwrap();
    assert_eq!(now[0].as_deref(), Some("new-a"));
    assert_eq!(now[1].as_deref(), Some("app-wrote-this"));
    assert_eq!(now[2], None);
    assert_eq!(now[3].as_deref(), Some(c.value.as_str()), "untouched");
}

/// Two processes on one PostgreSQL store: a `resume` that waited for the
/// store's lock while another run rolled the rekey back (here `rollback`,
/// as a cancelled run's rollback does) reads the journal again under the
/// lock and refuses: it must not rekey the store again under a journal
/// that says "rolled back". Every value stays under the old key.
#[test]
fn a_resume_that_waited_for_the_lock_refuses_a_rekey_rolled_back_meanwhile() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&url, &support::fixture("prompttrain-db/data.sql"));
    let old_text =
        std::fs::read_to_string(support::fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"))
            .unwrap()
            .trim()
            .to_string();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let new_file = private_file(
        &dir.path().join("new.key"),
        "waiting-resume-new-master-key-0123456789abcdef\n",
    );
    let spec = format!("prompttrain-db:{url}");
    let before = account_values(&url);
    let cmd = |extra: &[&str]| {
        let mut c = credshift(&state);
        c.env("CREDENTIAL_ENCRYPTION_KEY", &old_text)
            .args(["--new-key-file", new_file.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    // Stopped after its plan: nothing written yet.
    let (out, _, stderr) =
        run(cmd(&["rekey", "--store", &spec, "--yes"]).env("CREDSHIFT_CRASH_AT", "2"));
    assert_eq!(out.status.code(), None, "not an abort: {stderr}");
    let id = support::only_id(&state);
    // The rollback takes the locks and holds them until `hold` is removed.
    let hold = dir.path().join("hold");
    let rollback = cmd(&["rollback", "--migration-id", &id, "--yes"])
        .env("CREDSHIFT_HOLD_LOCKS", &hold)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !hold.exists() {
        assert!(
            start.elapsed().as_secs() < 60,
            "the rollback never took its locks"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The resume reads the journal (interrupted) and waits for the lock.
    let resume = cmd(&["resume", "--migration-id", &id, "--yes", "--json"])
        .env("CREDSHIFT_LOCK_WAIT", "60")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::remove_file(&hold).unwrap();
    let out = rollback.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = resume.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("was rolled back"), "{stderr}");
    assert_eq!(
        account_values(&url),
        before,
        "every value under the old key"
    );
    let (_, hist, _) = run(credshift(&state).args(["history", "--json"]));
    assert_eq!(support::json(&hist)[0]["status"], "rolled_back");
}
