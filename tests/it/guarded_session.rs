//! Issue 21, the session preamble's half: regressions for "Why" 1 (one
//! PostgreSQL under two spellings), 4 (a planted symlink as lock file),
//! 5 (PostgreSQL locked as a source too), 8 (recovery acts on the
//! journaled absolute store, or refuses), and journals without identities
//! (written before this change) still recover. Each failed on main
//! 232bd74. The lock table of point 10 is `tests/it/lock_table.rs`.

use crate::support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credshift::store::{self, StoreSpec};
use credshift::unlock::KeyOptions;
use support::*;

fn spec(scheme: &str, p: &Path) -> String {
    format!("{scheme}:{}", p.display())
}

fn key_file(dir: &Path) -> String {
    let k = dir.join("k.key");
    std::fs::write(&k, [0x5au8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    k.display().to_string()
}

fn code_of(c: &mut Command) -> (i32, String, String) {
    let (out, stdout, stderr) = run(c);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// A credshift process that holds its locks (`CREDSHIFT_HOLD_LOCKS`) until
/// released.
struct Held {
    child: Child,
    flag: std::path::PathBuf,
}

fn hold(mut cmd: Command, flag: &Path) -> Held {
    let mut child = cmd
        .env("CREDSHIFT_HOLD_LOCKS", flag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !flag.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the holder exited ({status}) before holding: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "holder never held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Held {
        child,
        flag: flag.to_path_buf(),
    }
}

impl Held {
    fn release(mut self) -> std::process::Output {
        std::fs::remove_file(&self.flag).unwrap();
        let out = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "holder: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.flag);
        let _ = self.child.wait();
    }
}

// ---- Why 1: one PostgreSQL table under two spellings ----

#[test]
fn one_postgres_table_under_two_spellings_is_refused_before_anything_runs() {
    let Some(db) = pg::fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let kf = key_file(tmp.path());
    let url = db.url(); // postgres://postgres@127.0.0.1:PORT/t_N
    let localhost = url.replace("127.0.0.1", "localhost");
    let src = tmp.path().join("seed.env");
    write_env(&src, &[("OPENAI_API_KEY", "sk-one-aaaaaaaaaaaaaaaa")]);
    let state = tmp.path().join("state");
    let (code, _, err) = code_of(&mut migrate_cmd(
        &state,
        &spec("dotenv", &src),
        &url,
        &["--yes", "--key-file", &kf],
    ));
    assert_eq!(code, 0, "{err}");
    let rows = || -> i64 {
        pg::connect(&url)
            .query_one("SELECT count(*) FROM credshift_credentials", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(rows(), 1);
    for other in [
        localhost.clone(),
        url.replace("postgres://", "postgresql://"),
        format!("{url}?sslmode=disable"),
        format!(
            "{}?sslmode=disable",
            localhost.replace("postgres://", "postgresql://")
        ),
    ] {
        for args in [vec!["--yes", "--delete-source"], vec!["--dry-run"]] {
            let mut a = args.clone();
            a.extend(["--key-file", &kf]);
            let (code, out, err) = code_of(&mut migrate_cmd(&state, &url, &other, &a));
            assert_eq!(code, 2, "{other} {args:?}: {out}{err}");
            assert!(err.contains("same store"), "{other}: {err}");
        }
        assert_eq!(rows(), 1, "{other}: the table must be intact");
    }

    // The engine decides by what the server says, not by spelling: stores
    // opened under different spellings have one identity, and a migration
    // handed them directly (no CLI check before it) is refused typed.
    let opts = KeyOptions {
        key_file: Some(kf.clone().into()),
        ..KeyOptions::default()
    };
    let open = |s: &str| store::open(&s.parse::<StoreSpec>().unwrap(), &opts).unwrap();
    let a = open(&url).identity().unwrap();
    let b = open(&format!("{localhost}?sslmode=disable"))
        .identity()
        .unwrap();
    assert_eq!(a.key, b.key);
    assert!(a.key.contains("system "), "{a:?}");
    assert!(!a.key.contains("127.0.0.1"), "{a:?}");
    let req = credshift::engine::MigrationRequest {
        from: url.parse().unwrap(),
        to: localhost.parse().unwrap(),
        policy: credshift::engine::ConflictPolicy::Skip,
        selection: None,
        delete_source: true,
    };
    let e = match credshift::engine::start_with_stores(
        req,
        open(&url),
        open(&localhost),
        &state,
        &opts,
        Default::default(),
    ) {
        Err(e) => e,
        Ok(_) => panic!("a migration from a table to itself started"),
    };
    assert!(
        matches!(e, credshift::engine::EngineError::SameStore { .. }),
        "{e}"
    );
    assert_eq!(rows(), 1);

    // prompttrain-db: and laravel:postgres:// reach PostgreSQL too.
    for scheme in ["prompttrain-db:", "laravel:"] {
        let x = format!("{scheme}{url}");
        let y = format!(
            "{scheme}{}",
            localhost.replace("postgres://", "postgresql://")
        );
        let (code, out, err) = code_of(&mut migrate_cmd(
            &state,
            &x,
            &format!("{y}?sslmode=disable"),
            &["--yes", "--delete-source"],
        ));
        assert_eq!(code, 2, "{x}: {out}{err}");
        assert!(err.contains("same store"), "{x}: {err}");
    }
    // Different tables of one database are different stores.
    assert!(!store::same_location(
        &url.parse().unwrap(),
        &format!("laravel:{localhost}").parse().unwrap()
    ));
}

// ---- Why 4: a planted symlink as lock file ----

#[test]
fn a_planted_lock_symlink_leaves_the_victim_intact_and_the_run_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let victim = d.join("vault.enc");
    std::fs::write(&victim, b"the victim's vault \x00\x01\x02").unwrap();
    let before = std::fs::read(&victim).unwrap();
    let src = d.join("src.env");
    write_env(&src, &[("OPENAI_API_KEY", "sk-planted-aaaaaaaaaaaa")]);
    let app = d.join("app.env");
    std::fs::write(&app, "# app\n").unwrap();
    // As target, then as source.
    for (planted, from, to) in [
        (".app.env.credshift-lock", &src, &app),
        (".src.env.credshift-lock", &src, &d.join("out.env")),
    ] {
        let lock = d.join(planted);
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        let (code, out, err) = code_of(&mut migrate_cmd(
            &d.join("state"),
            &spec("dotenv", from),
            &spec("dotenv", to),
            &["--yes", "--json"],
        ));
        assert_ne!(code, 0, "{planted}: {out}{err}");
        assert!(err.contains("symbolic link"), "{planted}: {err}");
        assert!(err.contains(planted), "{planted}: {err}");
        assert_eq!(std::fs::read(&victim).unwrap(), before, "{planted}");
        assert!(std::fs::symlink_metadata(&lock).unwrap().is_symlink());
        std::fs::remove_file(&lock).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&app).unwrap(), "# app\n");
}

// ---- Why 5: PostgreSQL is locked as a source too ----

#[test]
fn a_postgres_source_is_locked_while_another_run_writes_it() {
    let Some(db) = pg::fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let kf = key_file(tmp.path());
    let url = db.url();
    let seed = tmp.path().join("seed.env");
    write_env(&seed, &[("A_TOKEN", "value-a-aaaaaaaaaaaaaa")]);
    let (code, _, err) = code_of(&mut migrate_cmd(
        &tmp.path().join("s0"),
        &spec("dotenv", &seed),
        &url,
        &["--yes", "--key-file", &kf],
    ));
    assert_eq!(code, 0, "{err}");
    // A writer holds the table; a run reading it as its source with
    // --delete-source, from another state dir, is refused.
    let more = tmp.path().join("more.env");
    write_env(&more, &[("B_TOKEN", "value-b-bbbbbbbbbbbbbb")]);
    let writer = hold(
        {
            let mut c = migrate_cmd(
                &tmp.path().join("s1"),
                &spec("dotenv", &more),
                &url,
                &["--yes", "--key-file", &kf],
            );
            c.env_remove("CREDSHIFT_LOCK_WAIT");
            c
        },
        &tmp.path().join("held"),
    );
    let out_env = tmp.path().join("out.env");
    let (code, out, err) = code_of(
        migrate_cmd(
            &tmp.path().join("s2"),
            &url,
            &spec("dotenv", &out_env),
            &["--yes", "--delete-source", "--key-file", &kf],
        )
        .env("CREDSHIFT_LOCK_WAIT", "0"),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("is locked by"), "{err}");
    assert!(err.contains("credshift pid"), "who holds it: {err}");
    assert!(!out_env.exists());
    writer.release();
    // The writer's result is whole; the reader, run again, moves it all.
    let (code, out, err) = code_of(&mut migrate_cmd(
        &tmp.path().join("s2"),
        &url,
        &spec("dotenv", &out_env),
        &["--yes", "--json", "--delete-source", "--key-file", &kf],
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["verified"], 2, "{out}");
}

// ---- Why 8: recovery acts on the journaled absolute store ----

#[test]
fn rollback_from_another_directory_acts_on_the_journaled_target() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write_env(
        &a.join("src.env"),
        &[
            ("OPENAI_API_KEY", "sk-aaaaaaaaaaaaaaaaaaaa"),
            ("GITHUB_TOKEN", "ghp_bbbbbbbbbbbbbbbbbbb"),
        ],
    );
    // A same-named file in the other directory, which must stay as it is.
    write_env(
        &b.join("dst.env"),
        &[("OPENAI_API_KEY", "sk-other-file-value-xx")],
    );
    let b_before = std::fs::read(b.join("dst.env")).unwrap();
    let state = tmp.path().join("state");
    let (code, out, err) = code_of(
        migrate_cmd(
            &state,
            "dotenv:src.env",
            "dotenv:dst.env",
            &["--yes", "--json"],
        )
        .current_dir(&a),
    );
    assert_eq!(code, 0, "{err}");
    let id = json(&out)["migration_id"].as_str().unwrap().to_string();
    assert_eq!(contents(&spec("dotenv", &a.join("dst.env"))).len(), 2);
    let (code, out, err) = code_of(
        credshift(&state)
            .args(["rollback", "--migration-id", &id, "--yes", "--json"])
            .current_dir(&b),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["rolled_back"], true, "{out}");
    assert!(
        contents(&spec("dotenv", &a.join("dst.env"))).is_empty(),
        "the real target was rolled back"
    );
    assert_eq!(std::fs::read(b.join("dst.env")).unwrap(), b_before);
}

#[test]
fn recovery_refuses_a_different_store_where_the_journaled_one_was() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for r in ["real1", "real2"] {
        std::fs::create_dir(d.join(r)).unwrap();
    }
    write_env(
        &d.join("src.env"),
        &[("OPENAI_API_KEY", "sk-aaaaaaaaaaaaaaaaaaaa")],
    );
    write_env(
        &d.join("real2/dst.env"),
        &[("OPENAI_API_KEY", "sk-aaaaaaaaaaaaaaaaaaaa")],
    );
    let link = d.join("dst.env");
    std::os::unix::fs::symlink(d.join("real1/dst.env"), &link).unwrap();
    let state = d.join("state");
    let (code, out, err) = code_of(&mut migrate_cmd(
        &state,
        &spec("dotenv", &d.join("src.env")),
        &spec("dotenv", &link),
        &["--yes", "--json"],
    ));
    assert_eq!(code, 0, "{err}");
    let id = json(&out)["migration_id"].as_str().unwrap().to_string();
    // The link now leads to another file holding the same value.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(d.join("real2/dst.env"), &link).unwrap();
    let real2 = std::fs::read(d.join("real2/dst.env")).unwrap();
    // (resume of a completed migration has nothing to do and touches no store)
    for cmd in ["rollback", "verify"] {
        let mut c = credshift(&state);
        c.args([cmd, "--migration-id", &id]);
        if cmd != "verify" {
            c.arg("--yes");
        }
        let (code, out, err) = code_of(&mut c);
        assert_eq!(code, 2, "{cmd}: {out}{err}");
        assert!(
            err.contains("is not the store the migration used"),
            "{cmd}: {err}"
        );
        assert_eq!(std::fs::read(d.join("real2/dst.env")).unwrap(), real2);
    }
    assert_eq!(contents(&spec("dotenv", &d.join("real1/dst.env"))).len(), 1);
}

/// A journal as the code before this change wrote it: relative specs as
/// typed, no identities. It still opens, verifies and rolls back (from
/// the directory it was made in, as before).
#[test]
fn a_journal_without_identities_still_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path();
    write_env(
        &a.join("src.env"),
        &[("OPENAI_API_KEY", "sk-aaaaaaaaaaaaaaaaaaaa")],
    );
    let state = a.join("state");
    let (code, out, err) = code_of(
        migrate_cmd(
            &state,
            "dotenv:src.env",
            "dotenv:dst.env",
            &["--yes", "--json"],
        )
        .current_dir(a),
    );
    assert_eq!(code, 0, "{err}");
    let id = json(&out)["migration_id"].as_str().unwrap().to_string();
    let journal = state.join("migrations").join(&id).join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let rec = first.as_object_mut().unwrap();
    assert_eq!(rec["event"], "started", "{text}");
    assert!(rec.remove("from_identity").is_some(), "{text}");
    assert!(rec.remove("to_identity").is_some(), "{text}");
    let from = rec["from"].as_str().unwrap().to_string();
    assert!(from.starts_with("dotenv:/"), "journaled absolute: {from}");
    rec.insert("from".into(), "dotenv:src.env".into());
    rec.insert("to".into(), "dotenv:dst.env".into());
    lines[0] = serde_json::to_string(&first).unwrap();
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    for cmd in ["verify", "rollback"] {
        let mut c = credshift(&state);
        c.args([cmd, "--migration-id", &id, "--json"])
            .current_dir(a);
        if cmd == "rollback" {
            c.arg("--yes");
        }
        let (code, out, err) = code_of(&mut c);
        assert_eq!(code, 0, "{cmd}: {out}{err}");
    }
    assert!(contents(&spec("dotenv", &a.join("dst.env"))).is_empty());
}

/// Resume, rollback, verify and cleanup run on the same handle type as a
/// migration: progress events that end with `Finished`, and `join`.
#[test]
fn recovery_operations_run_on_a_migration_handle() {
    use credshift::engine::recovery::{RecoveryOp, start_recovery};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_env(
        &d.join("src.env"),
        &[
            ("OPENAI_API_KEY", "sk-aaaaaaaaaaaaaaaaaaaa"),
            ("GITHUB_TOKEN", "ghp_bbbbbbbbbbbbbbbbbbb"),
        ],
    );
    let state = d.join("state");
    let (code, out, err) = code_of(&mut migrate_cmd(
        &state,
        &spec("dotenv", &d.join("src.env")),
        &spec("dotenv", &d.join("dst.env")),
        &["--yes", "--json"],
    ));
    assert_eq!(code, 0, "{err}");
    let id = credshift::engine::MigrationId(json(&out)["migration_id"].as_str().unwrap().into());
    let opts = KeyOptions::default();
    for (op, check) in [
        (RecoveryOp::Verify, "verified"),
        (RecoveryOp::Rollback, "rolled_back"),
    ] {
        let h = start_recovery(&state, &id, &opts, op, Default::default()).unwrap();
        assert_eq!(h.id, id);
        let events: Vec<_> = h.events.iter().collect();
        assert!(
            matches!(
                events.last(),
                Some(credshift::engine::Progress::Finished(_))
            ),
            "{op:?}: {} events",
            events.len()
        );
        let report = h.join().unwrap();
        match check {
            "verified" => assert_eq!(report.verified, 2, "{op:?}"),
            _ => assert!(report.rolled_back, "{op:?}"),
        }
    }
    assert!(contents(&spec("dotenv", &d.join("dst.env"))).is_empty());
}

/// A role that may not call `pg_control_system()` still gets one identity
/// for every spelling of a server: its address (loopback as one) and port.
#[test]
fn postgres_identity_falls_back_to_address_and_port() {
    let Some(db) = pg::fresh_db() else { return };
    let url = db.url();
    let role = format!("credshift_ident_{}", std::process::id());
    // Superusers (every other test) are not affected by the REVOKE.
    pg::execute(
        &url,
        &format!(
            "CREATE ROLE {role} LOGIN; \
             REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC"
        ),
    );
    let as_role = url.replace("postgres@", &format!("{role}@"));
    let opts = KeyOptions::default();
    let ident = |s: &str| {
        store::open(&s.parse::<StoreSpec>().unwrap(), &opts)
            .unwrap()
            .identity()
            .unwrap()
    };
    let a = ident(&as_role);
    let b = ident(&format!(
        "{}?sslmode=disable",
        as_role
            .replace("127.0.0.1", "localhost")
            .replace("postgres://", "postgresql://")
    ));
    assert_eq!(a.key, b.key);
    assert!(a.key.contains("address loopback:"), "{a:?}");
    assert!(!ident(&url).key.contains("address"), "superuser: system id");
}

/// A journal written by main 232bd74 (before identities; relative specs
/// as typed), kept as a fixture with its backup and key file: it still
/// verifies and rolls back, from the directory it was made in.
#[test]
fn a_journal_written_before_this_change_still_recovers() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = fixture("journal-main-232bd74");
    let id = "20261206T070017Z-04d8d4";
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let dir = tmp.path().join("state/migrations").join(id);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["src.env", "dst.env"] {
        std::fs::copy(fixture.join(f), work.join(f)).unwrap();
    }
    for f in ["backup.enc", "backup.key"] {
        std::fs::copy(fixture.join(id).join(f), dir.join(f)).unwrap();
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let journal = std::fs::read_to_string(fixture.join(id).join("journal.jsonl")).unwrap();
    assert!(
        !journal.contains("identity"),
        "a journal from before identities"
    );
    std::fs::write(
        dir.join("journal.jsonl"),
        journal.replace("@MIGRATION_DIR@", &dir.display().to_string()),
    )
    .unwrap();
    let state = tmp.path().join("state");
    let (code, out, err) = code_of(
        credshift(&state)
            .args(["verify", "--migration-id", id, "--json"])
            .current_dir(&work),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["verified"], 2, "{out}");
    let (code, out, err) = code_of(
        credshift(&state)
            .args(["rollback", "--migration-id", id, "--yes", "--json"])
            .current_dir(&work),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(contents(&spec("dotenv", &work.join("dst.env"))).is_empty());
    assert_eq!(contents(&spec("dotenv", &work.join("src.env"))).len(), 2);
}
