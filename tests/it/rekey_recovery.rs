//! A rekey's failure paths, through the CLI: a run killed while it writes
//! its backup, a resume that must keep the KDF count it was started with,
//! a resume given another new key, a refused run with `--generate-new-key`,
//! verify after a cell was tampered with, and a rollback after the
//! application changed a cell; Ctrl-C during a rekey and during its resume.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use credshift::credential::Secret;
use credshift::crypto::laravel::{self as crypt, AppKey};
use support::laravel::{key_text, payloads};
use support::{credshift, only_id, private_file, run};

/// An `encrypted:` file holding two values, written under `unlock` (the
/// flag and its file: `--key-file` or `--passphrase-file`).
fn encrypted_store(dir: &Path, state: &Path, unlock: [&str; 2]) -> String {
    let env = dir.join("a.env");
    std::fs::write(
        &env,
        "A_TOKEN=recovery-value-0001-abcdef\nB_TOKEN=recovery-value-0002-ghijkl\n",
    )
    .unwrap();
    let spec = format!("encrypted:{}", dir.join("e.enc").display());
    let (out, _, stderr) = run(credshift(state).args(unlock).args([
        "migrate",
        "--from",
        &format!("dotenv:{}", env.display()),
        "--to",
        &spec,
        "--yes",
    ]));
    assert!(out.status.success(), "{stderr}");
    // The migration's own folder is not the rekey's.
    std::fs::remove_dir_all(state).unwrap();
    spec
}

fn reads(state: &Path, spec: &str, unlock: [&str; 2]) -> bool {
    run(credshift(state)
        .args(unlock)
        .args(["get", "--from", spec, "env/A_TOKEN"]))
    .0
    .status
    .success()
}

fn file_of(spec: &str) -> PathBuf {
    PathBuf::from(spec.strip_prefix("encrypted:").unwrap())
}

#[test]
fn a_rekey_killed_while_writing_its_backup_resumes_and_rolls_back() {
    for recovery in ["resume", "rollback"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let old_key = dir.path().join("old.key");
        let new_key = dir.path().join("new.key");
        credshift::crypto::kdf::generate_key_file(&old_key).unwrap();
        credshift::crypto::kdf::generate_key_file(&new_key).unwrap();
        let old = ["--key-file", old_key.to_str().unwrap()];
        let new = ["--key-file", new_key.to_str().unwrap()];
        let spec = encrypted_store(dir.path(), &state, old);
        let original = std::fs::read(file_of(&spec)).unwrap();
        let (out, _, stderr) = run(credshift(&state)
            .args(old)
            .env("CREDSHIFT_CRASH_IN_WRITE", "rekey-backup.enc")
            .args(["rekey", "--store", &spec, "--yes", "--new-key-file"])
            .arg(&new_key));
        assert_eq!(out.status.code(), None, "not an abort: {stderr}");
        let id = only_id(&state);
        // The window of the finding: the backup's key exists, the backup
        // was never recorded.
        let mdir = state.join("migrations").join(&id);
        assert!(mdir.join("rekey-backup.key").is_file());
        assert!(!mdir.join("rekey-backup.enc").exists());
        assert_eq!(std::fs::read(file_of(&spec)).unwrap(), original);
        let (out, _, stderr) = run(credshift(&state)
            .args(old)
            .args([recovery, "--migration-id", &id, "--yes", "--new-key-file"])
            .arg(&new_key));
        assert!(out.status.success(), "{recovery}: {stderr}");
        if recovery == "resume" {
            assert!(reads(&state, &spec, new) && !reads(&state, &spec, old));
            // The backup the resume wrote puts the old file back.
            let (out, _, stderr) =
                run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes"]));
            assert!(out.status.success(), "{stderr}");
        }
        assert_eq!(std::fs::read(file_of(&spec)).unwrap(), original);
        assert!(reads(&state, &spec, old));
    }
}

/// The PBKDF2 count in an envelope file's header.
fn iterations(spec: &str) -> u64 {
    let text = std::fs::read_to_string(file_of(spec)).unwrap();
    let at = text.find("\"iterations\":").expect("a PBKDF2 header") + "\"iterations\":".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn a_resumed_rekey_seals_at_the_kdf_count_it_was_started_with() {
    // 1 started, 2 planned, 3 backup, 4 batch begun, 5 batch done.
    for same_passphrase in [false, true] {
        for k in [3u32, 4, 5] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state");
            let old_pw = private_file(&dir.path().join("old.pw"), b"old kdf passphrase 1\n");
            let new_pw = private_file(&dir.path().join("new.pw"), b"new kdf passphrase 2\n");
            let old = ["--passphrase-file", old_pw.to_str().unwrap()];
            let new = ["--passphrase-file", new_pw.to_str().unwrap()];
            let spec = encrypted_store(dir.path(), &state, old);
            assert_eq!(iterations(&spec), 600_000);
            let new_flag: Vec<&str> = if same_passphrase {
                Vec::new()
            } else {
                vec!["--new-passphrase-file", new_pw.to_str().unwrap()]
            };
            let (out, _, stderr) = run(credshift(&state)
                .args(old)
                .env("CREDSHIFT_CRASH_AT", k.to_string())
                .args([
                    "rekey",
                    "--store",
                    &spec,
                    "--yes",
                    "--kdf-iterations",
                    "250000",
                ])
                .args(&new_flag));
            assert_eq!(out.status.code(), None, "K={k}: not an abort: {stderr}");
            let id = only_id(&state);
            let (out, stdout, stderr) = run(credshift(&state)
                .args(old)
                .args(["resume", "--migration-id", &id, "--yes", "--json"])
                .args(&new_flag));
            assert!(
                out.status.success(),
                "K={k} same={same_passphrase}: {stdout}{stderr}"
            );
            assert_eq!(support::json(&stdout)["status"], "completed");
            assert_eq!(iterations(&spec), 250_000, "K={k} same={same_passphrase}");
            let now = if same_passphrase { old } else { new };
            assert!(reads(&state, &spec, now), "K={k}");
        }
    }
}

#[test]
fn a_resume_with_another_new_key_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let [old_key, new_key, other_key] = ["old.key", "new.key", "other.key"].map(|n| {
        let p = dir.path().join(n);
        credshift::crypto::kdf::generate_key_file(&p).unwrap();
        p
    });
    let old = ["--key-file", old_key.to_str().unwrap()];
    let spec = encrypted_store(dir.path(), &state, old);
    // Killed right after the batch that rewrote the file.
    let (out, _, stderr) = run(credshift(&state)
        .args(old)
        .env("CREDSHIFT_CRASH_AT", "5")
        .args(["rekey", "--store", &spec, "--yes", "--new-key-file"])
        .arg(&new_key));
    assert_eq!(out.status.code(), None, "not an abort: {stderr}");
    let id = only_id(&state);
    let written = std::fs::read(file_of(&spec)).unwrap();
    let journal = state.join("migrations").join(&id).join("rekey.jsonl");
    let journaled = std::fs::read(&journal).unwrap();
    let resume = |flag: &str, file: &Path| {
        run(credshift(&state)
            .args(old)
            .args(["resume", "--migration-id", &id, "--yes", flag])
            .arg(file))
    };
    let (out, _, stderr) = resume("--new-key-file", &other_key);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the new key given does not open 1 of the 1 values"),
        "{stderr}"
    );
    // Another kind of key (a passphrase where a key file was given).
    let pw = private_file(&dir.path().join("new.pw"), b"a new passphrase for this 1\n");
    let (out, _, stderr) = resume("--new-passphrase-file", &pw);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another kind"), "{stderr}");
    assert_eq!(std::fs::read(file_of(&spec)).unwrap(), written);
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        journaled,
        "nothing journaled"
    );
    // The right key finishes it.
    let (out, _, stderr) = resume("--new-key-file", &new_key);
    assert!(out.status.success(), "{stderr}");
    assert!(reads(
        &state,
        &spec,
        ["--key-file", new_key.to_str().unwrap()]
    ));
}

#[test]
fn a_refused_rekey_leaves_no_generated_key_and_the_retry_works() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Laravel (key text) refused for a wrong old key.
    let db = support::fragments_db(&dir.path().join("app.sqlite"));
    let lv_spec = format!("laravel:sqlite:{}", db.display());
    let app_key = dir.path().join("app.key");
    let gen_laravel = |app: &str| {
        let mut c = credshift(&state);
        c.env("APP_KEY", app)
            .args(["rekey", "--store", &lv_spec, "--yes", "--generate-new-key"])
            .arg(&app_key);
        c
    };
    let (out, _, stderr) = run(gen_laravel(&key_text(1)));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!app_key.exists(), "a refused run wrote the key");
    let (out, _, stderr) = run(gen_laravel(&support::fragments_app_key()));
    assert!(out.status.success(), "the retry: {stderr}");
    assert!(app_key.is_file());
    // credshift's own store (a key file) refused for a wrong passphrase.
    let old_pw = private_file(&dir.path().join("old.pw"), b"old gen passphrase 1\n");
    let wrong_pw = private_file(&dir.path().join("wrong.pw"), b"wrong gen passphrase 2\n");
    let spec = encrypted_store(
        dir.path(),
        &state,
        ["--passphrase-file", old_pw.to_str().unwrap()],
    );
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = keys.join("new.key");
    let gen_own = |pw: &Path| {
        let mut c = credshift(&state);
        c.args(["--passphrase-file", pw.to_str().unwrap()])
            .args(["rekey", "--store", &spec, "--yes", "--generate-new-key"])
            .arg(&key);
        c
    };
    let (out, _, stderr) = run(gen_own(&wrong_pw));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&keys).unwrap().collect();
    assert!(left.is_empty(), "a refused run left {left:?}");
    let (out, _, stderr) = run(gen_own(&old_pw));
    assert!(out.status.success(), "the retry: {stderr}");
    assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 1);
    assert!(reads(&state, &spec, ["--key-file", key.to_str().unwrap()]));
}

fn set_payload(db: &Path, id: i64, payload: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute(
            "UPDATE a_i_credentials SET encrypted_credentials = ?1 WHERE id = ?2",
            rusqlite::params![payload, id],
        )
        .unwrap();
}

/// The Fragments table rekeyed to a new key; returns the db, its rows
/// before, the new key, the state dir's migration id.
fn rekeyed_laravel(dir: &Path, state: &Path) -> (PathBuf, Vec<(i64, String)>, AppKey, String) {
    let db = support::fragments_db(&dir.join("app.sqlite"));
    let before = payloads(&db);
    let new_text = key_text(42);
    let new_path = private_file(&dir.join("new.key"), new_text.as_bytes());
    let (out, stdout, stderr) = run(support::laravel::rekey_cmd(
        state,
        &db,
        &[],
        &new_path,
        &["--yes", "--json"],
    ));
    assert!(out.status.success(), "{stderr}");
    let id = support::json(&stdout)["migration_id"]
        .as_str()
        .unwrap()
        .to_string();
    let new = AppKey::parse(&Secret::new(new_text.as_str())).unwrap();
    (db, before, new, id)
}

fn json_of(c: &mut Command) -> (Option<i32>, serde_json::Value) {
    let (out, stdout, stderr) = run(c);
    assert!(!stdout.is_empty(), "{stderr}");
    (out.status.code(), support::json(&stdout))
}

#[test]
fn verify_finds_a_cell_that_no_longer_holds_what_the_rekey_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (db, _, new, id) = rekeyed_laravel(dir.path(), &state);
    let (code, r) = json_of(credshift(&state).args(["verify", "--migration-id", &id, "--json"]));
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["verified"], 4);
    // Row 1 gets row 2's ciphertext: valid under the new key, not the
    // one the rekey wrote there.
    let rows = payloads(&db);
    assert!(crypt::decrypt(&new, &rows[1].1).is_ok());
    set_payload(&db, rows[0].0, &rows[1].1);
    let (code, r) = json_of(credshift(&state).args(["verify", "--migration-id", &id, "--json"]));
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["verified"], 3, "{r}");
    assert_eq!(r["failed"], 1, "{r}");
    let f = &r["failures"][0];
    assert!(
        f["location"]
            .as_str()
            .unwrap()
            .contains(&format!(" {} ", rows[0].0)),
        "{r}"
    );
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .contains("does not hold the ciphertext the rekey wrote"),
        "{r}"
    );
}

#[test]
fn a_rollback_after_the_app_changed_a_cell_closes_with_that_cell_listed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (db, before, new, id) = rekeyed_laravel(dir.path(), &state);
    // The app, switched to the new key as told, rewrites row 3.
    let text = crypt::php_serialize_str(r#"{"key":"sk-the-app-wrote-this-after-the-rekey"}"#);
    let apps = crypt::encrypt(&new, text.as_bytes()).unwrap();
    let row = before[2].0;
    set_payload(&db, row, &apps);
    let (code, r) =
        json_of(credshift(&state).args(["rollback", "--migration-id", &id, "--yes", "--json"]));
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["rolled_back"], true, "{r}");
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert_eq!(r["conflicts"], 1, "{r}");
    let changed = r["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{r}");
    assert!(
        changed[0]["location"]
            .as_str()
            .unwrap()
            .contains(&format!(" {row} "))
    );
    assert!(
        r["next_steps"][0]
            .as_str()
            .unwrap()
            .contains("switch it back to the old key"),
        "{r}"
    );
    // Every other row holds its old ciphertext again; the app's row its value.
    let now = payloads(&db);
    for (i, (b, n)) in before.iter().zip(&now).enumerate() {
        if i == 2 {
            assert_eq!(n.1, apps);
        } else {
            assert_eq!(n, b);
        }
    }
    let (_, hist, _) = run(credshift(&state).args(["history", "--json"]));
    assert_eq!(support::json(&hist)[0]["status"], "rolled_back");
    // A second rollback has nothing left to do and says the same.
    let (code, r2) =
        json_of(credshift(&state).args(["rollback", "--migration-id", &id, "--yes", "--json"]));
    assert_eq!(code, Some(0), "{r2}");
    assert_eq!(payloads(&db), now);
}

#[test]
fn forget_backup_deletes_a_verified_rekeys_backup_and_rollback_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (db, _, _, id) = rekeyed_laravel(dir.path(), &state);
    let mdir = state.join("migrations").join(&id);
    let forget = || {
        let mut c = credshift(&state);
        c.args(["rekey", "--forget-backup", &id, "--yes", "--json"]);
        c
    };
    // Not before a verify has passed.
    let (out, _, stderr) = run(forget());
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("verify"), "{stderr}");
    assert!(mdir.join("rekey-backup.enc").is_file());
    // Not without consent.
    let (out, _, stderr) = run(credshift(&state).args(["rekey", "--forget-backup", &id]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(mdir.join("rekey-backup.key").is_file());
    let (out, _, stderr) = run(credshift(&state).args(["verify", "--migration-id", &id]));
    assert!(out.status.success(), "{stderr}");
    let (out, stdout, stderr) = run(forget());
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        support::json(&stdout)["removed"].as_array().unwrap().len(),
        2,
        "{stdout}"
    );
    assert!(!mdir.join("rekey-backup.enc").exists());
    assert!(!mdir.join("rekey-backup.key").exists());
    // History keeps it; rollback says why it cannot.
    let (_, hist, _) = run(credshift(&state).args(["history", "--json"]));
    assert_eq!(support::json(&hist)[0]["status"], "completed");
    let rows = payloads(&db);
    let (out, _, stderr) =
        run(credshift(&state).args(["rollback", "--migration-id", &id, "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backup was deleted"), "{stderr}");
    assert_eq!(payloads(&db), rows);
    // An id that is no rekey is refused.
    let (out, _, stderr) =
        run(credshift(&state).args(["rekey", "--forget-backup", "no-such-id", "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
}

#[test]
fn history_lists_a_rekey_whose_journal_is_damaged_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let old_key = dir.path().join("old.key");
    let new_key = dir.path().join("new.key");
    credshift::crypto::kdf::generate_key_file(&old_key).unwrap();
    credshift::crypto::kdf::generate_key_file(&new_key).unwrap();
    let old = ["--key-file", old_key.to_str().unwrap()];
    let spec = encrypted_store(dir.path(), &state, old);
    // Interrupted between two keys, then its journal damaged mid-file.
    let (out, _, stderr) = run(credshift(&state)
        .args(old)
        .env("CREDSHIFT_CRASH_AT", "4")
        .args(["rekey", "--store", &spec, "--yes", "--new-key-file"])
        .arg(&new_key));
    assert_eq!(out.status.code(), None, "not an abort: {stderr}");
    let id = only_id(&state);
    let journal = state.join("migrations").join(&id).join("rekey.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"seq\":2,\"event\":\"rekey_pla";
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let (out, stdout, stderr) = run(credshift(&state).args(["history", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let h = support::json(&stdout);
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
    assert_eq!(h[0]["id"], id.as_str());
    assert_eq!(h[0]["status"], "interrupted");
    assert!(
        h[0]["from"]
            .as_str()
            .unwrap()
            .contains(journal.to_str().unwrap()),
        "{h}"
    );
    assert!(
        h[0]["to"]
            .as_str()
            .unwrap()
            .contains("unreadable rekey journal"),
        "{h}"
    );
}

/// A Laravel table with enough rows for dozens of batches (1, 2, 4, ...
/// 256): a signal sent after the first few lands while batches remain.
pub(crate) fn sigint_rows(dir: &Path) -> PathBuf {
    let db = support::fragments_db(&dir.join("app.sqlite"));
    let old = AppKey::parse(&Secret::new(support::fragments_app_key())).unwrap();
    support::laravel::insert_rows(
        &db,
        (0..10_000).map(|i| {
            let text = crypt::php_serialize_str(&format!(r#"{{"key":"sk-sigint-row-{i:05}"}}"#));
            (
                format!("sigint{i}"),
                crypt::encrypt(&old, text.as_bytes()).unwrap(),
            )
        }),
    );
    db
}

/// SIGINT to a running child, then its exit code, stdout and stderr.
pub(crate) fn interrupt(child: std::process::Child) -> (Option<i32>, String, String) {
    // SAFETY: signalling our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ctrl-C during `credshift rekey` (a real child, SIGINT): the run stops
/// between batches, puts back what it had rekeyed (every row byte for
/// byte), says "cancelled" and exits 1 with `cancelled` and `rolled_back`
/// in its report, as `migrate` does on a signal.
#[test]
fn ctrl_c_during_a_rekey_stops_between_batches_and_puts_every_row_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = sigint_rows(dir.path());
    let before = payloads(&db);
    // A generated key: the cancelled run must not present it as the key now
    // in use.
    let generated = dir.path().join("generated.key");
    let mut cmd = credshift(&state);
    cmd.env("APP_KEY", support::fragments_app_key()).args([
        "rekey",
        "--store",
        &format!("laravel:sqlite:{}", db.display()),
        "--generate-new-key",
        generated.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Two batches done (1 + 2 rows under the new key), then Ctrl-C.
    support::wait_for_records(&state, "rekey.jsonl", "rekey_batch_done", 2);
    let (code, stdout, stderr) = interrupt(child);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let r = support::json(&stdout);
    assert_eq!(r["cancelled"], true, "{r}");
    assert_eq!(r["rolled_back"], true, "{r}");
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert!(stderr.contains("rekey cancelled"), "{stderr}");
    assert!(
        stderr.contains("was NOT applied: keep using the old key")
            && !stderr.contains("new key written"),
        "{stderr}"
    );
    let after = payloads(&db);
    assert_eq!(after.len(), before.len());
    assert!(after == before, "a row is not its old ciphertext again");
    // The journal agrees: nothing left to resume or roll back.
    let id = only_id(&state);
    let (out, stdout, stderr) = run(credshift(&state).args(["history", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let h = support::json(&stdout);
    assert_eq!(h[0]["id"], id.as_str());
    assert_eq!(h[0]["status"], "rolled_back", "{h}");
}

/// Ctrl-C during `credshift resume` of a rekey killed half way (a real
/// child, SIGINT): the resume stops between batches and rolls the whole
/// rekey back, the rows the killed run rekeyed as well as its own, so the
/// store ends under the old key; exit 1 with `cancelled` and `rolled_back`.
#[test]
fn ctrl_c_during_the_resume_of_a_rekey_puts_every_row_back_under_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = sigint_rows(dir.path());
    let before = payloads(&db);
    let spec = format!("laravel:sqlite:{}", db.display());
    let key = dir.path().join("new.key");
    // Killed right after its second batch (records: started, planned,
    // backup, then begin and done twice): rows 1 to 3 under the new key.
    let (out, _, stderr) = run(credshift(&state)
        .env("APP_KEY", support::fragments_app_key())
        .env("CREDSHIFT_CRASH_AT", "7")
        .args(["rekey", "--store", &spec, "--yes", "--generate-new-key"])
        .arg(&key));
    assert_eq!(out.status.code(), None, "not an abort: {stderr}");
    let killed = payloads(&db);
    let moved = killed.iter().zip(&before).filter(|(a, b)| a != b).count();
    assert_eq!(moved, 3, "the killed run rekeyed its first two batches");
    let id = only_id(&state);
    let child = credshift(&state)
        .env("APP_KEY", support::fragments_app_key())
        .args(["resume", "--migration-id", &id, "--yes", "--json"])
        .arg("--new-key-file")
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The killed run's two batches, the resume's own record of what it
    // found, then two batches of the resume.
    support::wait_for_records(&state, "rekey.jsonl", "rekey_batch_done", 5);
    let (code, stdout, stderr) = interrupt(child);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let r = support::json(&stdout);
    assert_eq!(r["cancelled"], true, "{r}");
    assert_eq!(r["rolled_back"], true, "{r}");
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert!(
        r["rollback_reason"]
            .as_str()
            .is_some_and(|why| why.contains("before the resume and during it")),
        "{r}"
    );
    assert!(
        stderr.contains("resume of the rekey cancelled")
            && stderr.contains("every value is under the old key again"),
        "{stderr}"
    );
    let after = payloads(&db);
    assert_eq!(after.len(), before.len());
    assert!(after == before, "a row is not its old ciphertext again");
    let (out, stdout, stderr) = run(credshift(&state).args(["history", "--json"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(support::json(&stdout)[0]["status"], "rolled_back");
}
