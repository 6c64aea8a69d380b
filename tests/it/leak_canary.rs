//! Issue 14: secrets credshift must never leak. The reproductions of the
//! issue as regression tests (env: unlock variables, `backup --out X.key`,
//! PostgreSQL passwords in URLs and from PGPASSWORD / ~/.pgpass /
//! --db-password-file against a server that requires one), and a canary
//! that plants secrets in each of those places and searches every output
//! and every file credshift writes for them in raw, base64, hex and
//! JSON-escaped forms.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::canary::{contains, files_under, forms};
use support::*;

/// The binary with a clean environment: only what a test sets is there.
fn bare(state: &Path) -> Command {
    let mut c = credshift(state);
    c.env_clear()
        .env("CREDSHIFT_STATE_DIR", state)
        .env("HOME", state.join("home"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

fn dotenv_values(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reproduction 4: `--from env:` with CREDSHIFT_PASSPHRASE and APP_KEY set
/// wrote both into the target in plaintext.
#[test]
fn env_source_leaves_out_credshifts_unlock_variables() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out.env");
    let unlock = [
        ("CREDSHIFT_PASSPHRASE", "canary-passphrase-Q7v2"),
        (
            "APP_KEY",
            "base64:Y2FuYXJ5LWFwcC1rZXktMzItYnl0ZXMtbG9uZy4uLg==",
        ),
        (
            "CREDENTIAL_ENCRYPTION_KEY",
            "canary-master-key-0123456789abcdef0123",
        ),
        ("PGPASSWORD", "canary-pg-password-Zx9"),
        ("MY_UNLOCK", "canary-named-passphrase-Lm3"),
    ];
    let mut cmd = bare(&state);
    cmd.args(["migrate", "--from", "env:", "--to"])
        .arg(format!("dotenv:{}", out.display()))
        .args(["--yes", "--json", "--passphrase-env", "MY_UNLOCK"])
        .env("OPENAI_API_KEY", "sk-proj-ordinary-variable-0001");
    for (k, v) in unlock {
        cmd.env(k, v);
    }
    let (o, stdout, stderr) = run(&mut cmd);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let written = dotenv_values(&out);
    assert!(
        written.contains("sk-proj-ordinary-variable-0001"),
        "{written}"
    );
    for (k, v) in unlock {
        assert!(!written.contains(v), "{k} was copied into the target");
    }
    // Named exactly, one is taken on purpose.
    let one = dir.path().join("one.env");
    let mut cmd = bare(&state);
    cmd.args(["migrate", "--from", "env:APP_KEY", "--to"])
        .arg(format!("dotenv:{}", one.display()))
        .args(["--yes"])
        .env("APP_KEY", unlock[1].1)
        .env("CREDSHIFT_PASSPHRASE", unlock[0].1);
    let (o, _, stderr) = run(&mut cmd);
    assert!(o.status.success(), "{stderr}");
    assert!(dotenv_values(&one).contains(unlock[1].1));
}

/// The clear columns of a credshift PostgreSQL table (id, kind, metadata),
/// one line a row: where no secret may be.
fn clear_columns(client: &mut postgres::Client) -> String {
    let mut clear = String::new();
    for r in client
        .query(
            "SELECT id, kind, metadata::text FROM credshift_credentials",
            &[],
        )
        .unwrap()
    {
        let (a, b, c): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        clear.push_str(&format!("{a} {b} {c}\n"));
    }
    clear
}

fn write_env(path: &Path, pairs: &[(&str, &str)]) {
    let mut text = String::new();
    for (k, v) in pairs {
        text.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, text).unwrap();
}

const BACKUP_SRC: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-proj-backupCanaryValue000000000001"),
    ("GITHUB_TOKEN", "ghp_backupCanaryValue0000000000000002"),
];

/// Reproduction 7: `backup --out X.key` wrote the key file over the backup
/// (exit 0, the backup could never be opened), and by default the key
/// landed beside the backup although the tool says to keep them apart.
#[test]
fn backup_keeps_its_key_apart_and_never_over_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("src.env");
    write_env(&src, BACKUP_SRC);
    let from = format!("dotenv:{}", src.display());
    let media = dir.path().join("usb");
    std::fs::create_dir(&media).unwrap();

    // `--out X.key`: the backup is written there, its key in the state dir.
    let out = media.join("creds.key");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&out));
    assert!(o.status.success(), "{stdout}{stderr}");
    let kept_dir = state.join("backup-keys");
    let kept: Vec<PathBuf> = std::fs::read_dir(&kept_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        stdout.contains(&kept[0].display().to_string()),
        "the message names the key: {stdout}"
    );
    assert_eq!(std::fs::metadata(&kept[0]).unwrap().len(), 32);
    assert_eq!(
        std::fs::read_dir(&media).unwrap().count(),
        1,
        "nothing but the backup on the backup's media"
    );
    let dst = dir.path().join("restored.env");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["restore", "--yes", "--backup"])
        .arg(&out)
        .arg("--to")
        .arg(format!("dotenv:{}", dst.display())));
    assert!(
        o.status.success(),
        "restore finds the kept key: {stdout}{stderr}"
    );
    for (_, v) in BACKUP_SRC {
        assert!(dotenv_values(&dst).contains(v));
    }

    // The default for any name: no key file beside the backup.
    let out2 = media.join("creds.enc");
    let (o, _, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&out2));
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&media).unwrap().count(),
        2,
        "creds.key (the first backup) and creds.enc, no key beside either"
    );
    assert_eq!(std::fs::read_dir(&kept_dir).unwrap().count(), 2);

    // `--key-out` the same as `--out`: refused, exit 2, nothing written.
    let same = media.join("same.bin");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&same)
        .arg("--key-out")
        .arg(media.join(".").join("same.bin")));
    assert_eq!(o.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("--key-out") && stderr.contains("same"),
        "{stderr}"
    );
    assert!(!same.exists());

    // `--out` over the `--key-file` the backup is sealed with: refused.
    let key = dir.path().join("my.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let (o, _, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&key)
        .arg("--key-file")
        .arg(&key));
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--key-file"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), [7u8; 32]);

    // `--key-out` elsewhere: restore needs that key, and says how to give it.
    let out3 = media.join("third.enc");
    let key3 = dir.path().join("safe").join("third.key");
    let (o, stdout, stderr) = run(bare(&state)
        .args(["backup", "--from", &from, "--out"])
        .arg(&out3)
        .arg("--key-out")
        .arg(&key3));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains(&key3.display().to_string()), "{stdout}");
    let dst3 = dir.path().join("restored3.env");
    let to3 = format!("dotenv:{}", dst3.display());
    let (o, _, stderr) = run(bare(&state)
        .args(["restore", "--yes", "--backup"])
        .arg(&out3)
        .args(["--to", &to3]));
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr.contains("--key-file"), "{stderr}");
    let (o, _, stderr) = run(bare(&state)
        .args(["restore", "--yes", "--backup"])
        .arg(&out3)
        .args(["--to", &to3, "--key-file"])
        .arg(&key3));
    assert!(o.status.success(), "{stderr}");
    assert!(dotenv_values(&dst3).contains(BACKUP_SRC[0].1));
}

/// Fragments of the shared server's password, each of which alone must
/// never be printed or stored.
const PW_FRAGMENTS: &[&str] = &["Sl4sh", "Pass?word", "word#x", "x:y@z"];

fn assert_no_password(name: &str, hay: &str) {
    for f in PW_FRAGMENTS {
        assert!(
            !hay.contains(f),
            "{name} shows {f:?} of the password:\n{hay}"
        );
    }
}

fn state_files_text(state: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    files_under(state, &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            (p.display().to_string(), text)
        })
        .collect()
}

/// Reproduction 1: a password holding `/` and `?` connected, then showed
/// in the JSON report, history, `status --store`, audit.jsonl,
/// journal.jsonl and plan.json (the redaction stopped at the first `/`).
#[test]
fn a_url_password_with_slash_and_question_mark_is_never_shown() {
    let Some(server) = pg::shared_with_password() else {
        return;
    };
    let db = server.create_database();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("src.env");
    write_env(&src, BACKUP_SRC);
    let from = format!("dotenv:{}", src.display());
    // Unencoded, as a user pastes it.
    let to = format!(
        "postgres://postgres:{}@127.0.0.1:{}/{}",
        pg::SHARED_PASSWORD,
        server.port(),
        db.name
    );
    let with_pass = |c: &mut Command| {
        c.env("CREDSHIFT_PASSPHRASE", "canary passphrase for the pg store");
    };
    let mut outputs = Vec::new();
    let mut step = |name: &str, args: &[&str]| {
        let mut c = bare(&state);
        with_pass(&mut c);
        c.args(args);
        let (o, stdout, stderr) = run(&mut c);
        outputs.push((format!("{name} stdout"), stdout.clone()));
        outputs.push((format!("{name} stderr"), stderr.clone()));
        assert!(o.status.success(), "{name}: {stdout}\n{stderr}");
        stdout
    };
    step(
        "dry run",
        &[
            "migrate",
            "--from",
            &from,
            "--to",
            &to,
            "--dry-run",
            "--json",
        ],
    );
    let report = step(
        "migrate",
        &["migrate", "--from", &from, "--to", &to, "--yes", "--json"],
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["copied"], 2, "{report}");
    assert!(
        report["to"]
            .as_str()
            .unwrap()
            .contains("postgres:***@127.0.0.1"),
        "{report}"
    );
    let id = report["migration_id"].as_str().unwrap().to_string();
    step("history", &["history", "--json"]);
    step("history text", &["history"]);
    step("status", &["status", "--store", &to, "--json"]);
    step("status text", &["status", "--store", &to]);
    step("inventory", &["inventory", "--from", &to, "--json"]);
    // Recovery reads the redacted URL from the journal: the password from
    // PGPASSWORD (a planted secret too).
    let mut c = bare(&state);
    with_pass(&mut c);
    c.env("PGPASSWORD", pg::SHARED_PASSWORD);
    let (o, stdout, stderr) = run(c.args(["verify", "--migration-id", &id, "--json"]));
    assert!(o.status.success(), "verify: {stdout}{stderr}");
    outputs.push(("verify".into(), format!("{stdout}{stderr}")));
    // A wrong password: the error names the store, not the password.
    let wrong = to.replace("x:y@z", "x:y@zWRONG");
    let mut c = bare(&state);
    with_pass(&mut c);
    let (o, stdout, stderr) = run(c.args(["inventory", "--from", &wrong]));
    assert!(!o.status.success());
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    outputs.push(("wrong password".into(), format!("{stdout}{stderr}")));
    for (name, text) in &outputs {
        assert_no_password(name, text);
    }
    let files = state_files_text(&state);
    for want in ["journal.jsonl", "plan.json", "audit.jsonl"] {
        assert!(
            files.iter().any(|(p, _)| p.ends_with(want)),
            "no {want} in {files:?}"
        );
    }
    for (name, text) in &files {
        assert_no_password(name, text);
    }
    // A journal written by a version whose redaction stopped at the `/`
    // holds the password: history and reports redact it again on reading.
    let (journal, text) = files
        .iter()
        .find(|(p, _)| p.ends_with("journal.jsonl"))
        .unwrap();
    let raw = format!("postgres:{}@", pg::SHARED_PASSWORD);
    std::fs::write(journal, text.replace("postgres:***@", &raw)).unwrap();
    let mut c = bare(&state);
    let (o, stdout, stderr) = run(c.args(["history", "--json"]));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("postgres:***@"), "{stdout}");
    assert_no_password("history of an old journal", &stdout);
}

/// Reproduction 2: `PGPASSWORD` and `~/.pgpass` were ignored (a URL without
/// a password failed with "invalid configuration"), and recovery refused
/// every journaled `:***@` URL even with PGPASSWORD set.
#[test]
fn the_password_comes_from_pgpassword_pgpass_or_a_file_and_recovery_uses_them() {
    let Some(server) = pg::shared_with_password() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("src.env");
    write_env(&src, BACKUP_SRC);
    let from = format!("dotenv:{}", src.display());
    let inventory = |url: &str, setup: &dyn Fn(&mut Command)| {
        let mut c = bare(&state);
        c.env("CREDSHIFT_PASSPHRASE", "pw for the pg store");
        setup(&mut c);
        let (o, stdout, stderr) = run(c.args(["status", "--json", "--store", url]));
        assert!(o.status.code().is_some(), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        let pg = v["stores"]
            .as_array()
            .and_then(|a| a.last().cloned())
            .unwrap_or_default();
        (o.status.code(), pg, stderr)
    };
    let db = server.create_database();
    let url = server.url_without_password_for(&db.name);

    // Nothing given: unavailable, and the reason says where a password goes.
    let (_, pg, _) = inventory(&url, &|_| {});
    assert_eq!(pg["capability"]["available"], false, "{pg}");
    let reason = pg["capability"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("PGPASSWORD") && reason.contains("--db-password-file"),
        "{reason}"
    );

    // PGPASSWORD.
    let (_, pg, _) = inventory(&url, &|c| {
        c.env("PGPASSWORD", pg::SHARED_PASSWORD);
    });
    assert_eq!(pg["capability"]["available"], true, "{pg}");

    // ~/.pgpass in libpq's format, 0600; ignored (and said so) when lax.
    let home = state.join("home");
    let line = format!(
        "127.0.0.1:{}:*:postgres:{}\n",
        server.port(),
        pg::SHARED_PASSWORD
            .replace('\\', "\\\\")
            .replace(':', "\\:")
    );
    let pgpass = file_with_mode(&home.join(".pgpass"), &line, 0o600);
    let (_, pg, _) = inventory(&url, &|_| {});
    assert_eq!(pg["capability"]["available"], true, "{pg}");
    file_with_mode(&pgpass, &line, 0o644);
    let (_, pg, _) = inventory(&url, &|_| {});
    assert_eq!(pg["capability"]["available"], false, "{pg}");
    let reason = pg["capability"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains(".pgpass") && reason.contains("0600"),
        "{reason}"
    );
    std::fs::remove_file(&pgpass).unwrap();
    // PGPASSFILE names another one.
    let other = file_with_mode(&dir.path().join("pgpass-other"), &line, 0o600);
    let (_, pg, _) = inventory(&url, &|c| {
        c.env("PGPASSFILE", &other);
    });
    assert_eq!(pg["capability"]["available"], true, "{pg}");

    // --db-password-file: 0600 works, readable by others is refused (exit 2).
    let pwfile = file_with_mode(
        &dir.path().join("db.pw"),
        format!("{}\n", pg::SHARED_PASSWORD),
        0o600,
    );
    let (_, pg, _) = inventory(&url, &|c| {
        c.arg("--db-password-file").arg(&pwfile);
    });
    assert_eq!(pg["capability"]["available"], true, "{pg}");
    file_with_mode(&pwfile, format!("{}\n", pg::SHARED_PASSWORD), 0o640);
    let (code, _, stderr) = inventory(&url, &|c| {
        c.arg("--db-password-file").arg(&pwfile);
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert_no_password("refused file", &stderr);
    file_with_mode(&pwfile, format!("{}\n", pg::SHARED_PASSWORD), 0o600);

    // Recovery of a migration whose journal keeps `:***@`: the URL had the
    // password, recovery gets it from PGPASSWORD or the file.
    let to = format!(
        "postgres://postgres:{}@127.0.0.1:{}/{}",
        pg::percent_encode(pg::SHARED_PASSWORD),
        server.port(),
        db.name
    );
    let mut c = bare(&state);
    c.env("CREDSHIFT_PASSPHRASE", "pw for the pg store");
    let (o, stdout, stderr) =
        run(c.args(["migrate", "--from", &from, "--to", &to, "--yes", "--json"]));
    assert!(o.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let id = report["migration_id"].as_str().unwrap().to_string();
    let journal = state_files_text(&state)
        .into_iter()
        .find(|(p, _)| p.ends_with("journal.jsonl"))
        .unwrap()
        .1;
    assert!(journal.contains("postgres:***@"), "{journal}");
    let recover = |args: &[&str], setup: &dyn Fn(&mut Command)| {
        let mut c = bare(&state);
        c.env("CREDSHIFT_PASSPHRASE", "pw for the pg store");
        setup(&mut c);
        let (o, stdout, stderr) = run(c.args(args));
        (o.status.code(), format!("{stdout}{stderr}"))
    };
    let (code, out) = recover(&["verify", "--migration-id", &id], &|_| {});
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("PGPASSWORD"), "{out}");
    let (code, out) = recover(&["verify", "--migration-id", &id], &|c| {
        c.env("PGPASSWORD", pg::SHARED_PASSWORD);
    });
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = recover(&["rollback", "--migration-id", &id, "--yes"], &|c| {
        c.arg("--db-password-file").arg(&pwfile);
    });
    assert_eq!(code, Some(0), "{out}");
    let n: i64 = pg::connect(&server.url_for(&db.name))
        .query_one("SELECT count(*) FROM credshift_credentials", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "rolled back");

    // Resume after a crash, the password from PGPASSWORD only.
    let mut c = bare(&state);
    c.env("CREDSHIFT_PASSPHRASE", "pw for the pg store")
        .env("PGPASSWORD", pg::SHARED_PASSWORD)
        .env("CREDSHIFT_CRASH_AT", "2");
    let (o, _, _) = run(c.args(["migrate", "--from", &from, "--to", &url, "--yes"]));
    assert!(!o.status.success());
    let mut c = bare(&state);
    let (_, stdout, _) = run(c.args(["history", "--json"]));
    let history: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let crashed = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["status"] == "interrupted")
        .unwrap_or_else(|| panic!("{history}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = recover(&["resume", "--migration-id", &crashed, "--yes"], &|c| {
        c.env("PGPASSWORD", pg::SHARED_PASSWORD);
    });
    assert_eq!(code, Some(0), "{out}");
    let n: i64 = pg::connect(&server.url_for(&db.name))
        .query_one("SELECT count(*) FROM credshift_credentials", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "resumed");
    for (name, text) in state_files_text(&state) {
        assert_no_password(&name, &text);
    }
}

/// Point 8: secrets planted in every place this issue names — a URL
/// password with `/` and `?`, PGPASSWORD, credshift's unlock variables seen
/// by an `env:` source, a database password file, a backup — and every
/// output (stdout, stderr, JSON) and every file credshift writes (state
/// dir: journal, plan, audit, history, backups, keys; the backup; the
/// targets) searched for each in every encoding.
#[test]
fn canary_no_planted_secret_reaches_any_output_or_file() {
    let Some(server) = pg::shared_with_password() else {
        return;
    };
    let db = server.create_database();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let url_password = pg::SHARED_PASSWORD;
    let unlock: &[(&str, &str)] = &[
        (
            "CREDSHIFT_PASSPHRASE",
            "canary-CREDSHIFT_PASSPHRASE-r8Tq/Vw?2",
        ),
        ("MY_UNLOCK", "canary-passphrase-env-Kd3m?Zp/71"),
        (
            "APP_KEY",
            "base64:Y2FuYXJ5LWFwcC1rZXktdGhpcnR5LXR3by1ieXRlcyE=",
        ),
        (
            "CREDENTIAL_ENCRYPTION_KEY",
            "canary-prompttrain-master-key-0123456789ab",
        ),
        // Wrong for the server on purpose: the URL's password wins.
        ("PGPASSWORD", "canary-PGPASSWORD-Hq8/Wz?3"),
    ];
    let migrated = ("OPENAI_API_KEY", "sk-proj-canaryOrdinaryValue-9Gf2Lk7Qx");
    let pwfile = file_with_mode(
        &dir.path().join("secrets/db.pw"),
        format!("{url_password}\n"),
        0o600,
    );
    let to = format!(
        "postgres://postgres:{url_password}@127.0.0.1:{}/{}",
        server.port(),
        db.name
    );
    let backup = dir.path().join("media/pg-backup.enc");
    let restored = dir.path().join("restored.env");
    let restored_spec = format!("dotenv:{}", restored.display());

    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut step = |name: &str, args: &[&str], extra: &[&str]| -> serde_json::Value {
        let mut c = bare(&state);
        c.args(["--passphrase-env", "MY_UNLOCK"])
            .args(args)
            .args(extra)
            .env(migrated.0, migrated.1);
        for (k, v) in unlock {
            c.env(k, v);
        }
        let (o, stdout, stderr) = run(&mut c);
        outputs.push((format!("{name} stdout"), o.stdout.clone()));
        outputs.push((format!("{name} stderr"), o.stderr.clone()));
        // 0 done, 1 failed (the wrong password), 2 refused (the bad spec).
        assert!(
            o.status.code().is_some_and(|c| c <= 2),
            "{name}: {stdout}\n{stderr}"
        );
        serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
    };
    let pwf = pwfile.display().to_string();
    let with_file = ["--db-password-file", pwf.as_str()];
    step(
        "plan",
        &[
            "migrate",
            "--from",
            "env:",
            "--to",
            &to,
            "--dry-run",
            "--json",
        ],
        &[],
    );
    let report = step(
        "migrate",
        &["migrate", "--from", "env:", "--to", &to, "--yes", "--json"],
        &[],
    );
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["copied"].as_u64().unwrap() >= 1, "{report}");
    let id = report["migration_id"].as_str().unwrap().to_string();
    step("history", &["history", "--json"], &[]);
    step("history text", &["history"], &[]);
    step("status", &["status", "--json", "--store", &to], &[]);
    let inv = step("inventory", &["inventory", "--json", "--from", &to], &[]);
    let ids: Vec<&str> = inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"env/OPENAI_API_KEY"), "{ids:?}");
    for (k, _) in unlock {
        assert!(!ids.contains(&format!("env/{k}").as_str()), "{k} migrated");
    }
    step("inventory text", &["inventory", "--from", &to], &[]);
    step(
        "verify",
        &["verify", "--json", "--migration-id", &id],
        &with_file,
    );
    let backup_s = backup.display().to_string();
    step(
        "backup",
        &["backup", "--from", &to, "--out", &backup_s],
        &[],
    );
    step(
        "restore",
        &[
            "restore",
            "--yes",
            "--backup",
            &backup_s,
            "--to",
            &restored_spec,
        ],
        &[],
    );
    step(
        "rerun",
        &["migrate", "--from", "env:", "--to", &to, "--yes", "--json"],
        &[],
    );
    step(
        "rollback",
        &["rollback", "--yes", "--json", "--migration-id", &id],
        &with_file,
    );
    let wrong = to.replace("x:y@z", "x:y@zWRONG");
    step("wrong password", &["inventory", "--from", &wrong], &[]);
    let bad_spec = to.replacen("postgres://", "laravel:mysql://", 1);
    step("bad spec", &["inventory", "--from", &bad_spec], &[]);

    // The files: everything under the state dir, the backup, the restored
    // target, and what the PostgreSQL target keeps in clear.
    let mut files = Vec::new();
    files_under(&state, &mut files);
    assert!(files.iter().any(|p| p.ends_with("journal.jsonl")));
    assert!(files.iter().any(|p| p.ends_with("plan.json")));
    assert!(files.iter().any(|p| p.ends_with("audit.jsonl")));
    let mut haystacks: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    haystacks.push(("backup".into(), std::fs::read(&backup).unwrap()));
    let mut client = pg::connect(&server.url_for(&db.name));
    let mut clear = clear_columns(&mut client);
    for r in client
        .query("SELECT format, kdf FROM credshift_meta", &[])
        .unwrap()
    {
        let (a, b): (String, String) = (r.get(0), r.get(1));
        clear.push_str(&format!("{a} {b}\n"));
    }
    haystacks.push(("postgres target, clear columns".into(), clear.into_bytes()));
    let restored_text = std::fs::read(&restored).unwrap();
    assert!(
        contains(&restored_text, migrated.1.as_bytes()),
        "restore worked"
    );

    let mut secrets: Vec<(&str, &str)> = unlock.to_vec();
    secrets.push(("URL password", url_password));
    for (what, secret) in &secrets {
        for (form, needle) in forms(secret) {
            for (name, hay) in outputs.iter().chain(&haystacks) {
                assert!(!contains(hay, &needle), "{what} ({form}) in {name}");
            }
            assert!(
                !contains(&restored_text, &needle),
                "{what} ({form}) restored"
            );
        }
        for f in PW_FRAGMENTS {
            if secret.contains(f) {
                for (name, hay) in outputs.iter().chain(&haystacks) {
                    assert!(!contains(hay, f.as_bytes()), "{what}: {f:?} in {name}");
                }
            }
        }
    }
    // The migrated value travels encrypted only.
    for (form, needle) in forms(migrated.1) {
        for (name, hay) in outputs.iter().chain(&haystacks) {
            assert!(!contains(hay, &needle), "migrated value ({form}) in {name}");
        }
    }
}

const PT_PROXY_PASS: &str = "canaryPr0xyPass/w?rd14";
const PT_BEARER: &str = "ghs_canaryBearerToken000000000000003";
const LARAVEL_META_KEY: &str = "sk-proj-canaryLaravelMetadataKey00001";

/// Point 8, with the scrubber's plants (issue 14 point 2): a proxy URL with
/// a password and an Authorization header in an agent-prompttrain account,
/// an API key in a Fragments Engine row's metadata. Both sources migrate
/// into PostgreSQL (password in the URL); no plant reaches any output, any
/// file in the state dir or the target's clear columns, in any encoding.
#[test]
fn canary_secret_metadata_never_reaches_any_output_or_file() {
    let Some(server) = pg::shared_with_password() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let creds = dir.path().join("credentials");
    std::fs::create_dir_all(creds.join("accounts")).unwrap();
    let account = serde_json::json!({
        "type": "api_key",
        "accountId": "acc_canary",
        "api_key": "sk-ant-api03-canaryAccountKey00000000001",
        "proxy": {"url": format!("http://proxyuser:{PT_PROXY_PASS}@proxy.internal:3128"), "timeout": 30},
        "authorization": format!("Bearer {PT_BEARER}"),
    });
    std::fs::write(
        creds.join("accounts/canary.credentials.json"),
        serde_json::to_vec_pretty(&account).unwrap(),
    )
    .unwrap();
    let laravel_db = fragments_db(&dir.path().join("fragments.sqlite"));
    let conn = rusqlite::Connection::open(&laravel_db).unwrap();
    let n = conn
        .execute(
            "UPDATE a_i_credentials SET metadata = ?1 WHERE provider = 'openai'",
            [serde_json::json!({"api_key": LARAVEL_META_KEY, "note": "imported"}).to_string()],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let app_key = std::fs::read_to_string(fixture("fragments/APP_KEY"))
        .unwrap()
        .trim()
        .to_string();
    let sources = [
        format!("prompttrain:{}", creds.display()),
        format!("laravel:sqlite:{}", laravel_db.display()),
    ];
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut targets = Vec::new();
    for (i, from) in sources.iter().enumerate() {
        let db = server.create_database();
        let to = format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            pg::SHARED_PASSWORD,
            server.port(),
            db.name
        );
        for args in [
            vec!["inventory", "--json", "--from", from.as_str()],
            vec!["inventory", "--from", from.as_str()],
            vec![
                "migrate",
                "--from",
                from.as_str(),
                "--to",
                &to,
                "--dry-run",
                "--json",
            ],
            vec![
                "migrate",
                "--from",
                from.as_str(),
                "--to",
                &to,
                "--yes",
                "--json",
            ],
            vec!["inventory", "--json", "--from", &to],
            vec!["history", "--json"],
        ] {
            let mut c = bare(&state);
            c.env("APP_KEY", &app_key)
                .env("CREDSHIFT_PASSPHRASE", "canary metadata passphrase")
                .args(&args);
            let (o, stdout, stderr) = run(&mut c);
            assert!(o.status.success(), "{i} {args:?}: {stdout}\n{stderr}");
            outputs.push((format!("{i} {args:?} stdout"), o.stdout.clone()));
            outputs.push((format!("{i} {args:?} stderr"), o.stderr.clone()));
        }
        targets.push(db);
    }
    let mut haystacks = outputs;
    let mut files = Vec::new();
    files_under(&state, &mut files);
    for p in files {
        haystacks.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    for db in &targets {
        let mut client = pg::connect(&server.url_for(&db.name));
        let clear = clear_columns(&mut client);
        assert!(clear.lines().count() >= 2, "{clear}");
        haystacks.push((format!("{} clear columns", db.name), clear.into_bytes()));
    }
    for (what, secret) in [
        ("proxy password", PT_PROXY_PASS),
        ("bearer token", PT_BEARER),
        ("Laravel metadata key", LARAVEL_META_KEY),
        ("URL password", pg::SHARED_PASSWORD),
    ] {
        for (form, needle) in forms(secret) {
            for (name, hay) in &haystacks {
                assert!(!contains(hay, &needle), "{what} ({form}) in {name}");
            }
        }
    }
}
