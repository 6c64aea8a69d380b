//! `credshift migrate` and the support commands, run as the real binary on
//! real stores (dotenv files and the agent-prompttrain fixture).

use crate::support;

use std::path::Path;

use credshift::store::StoreSpec;

use support::*;

const SRC: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-proj-cliTestValueNumberOne0000000001"),
    (
        "ANTHROPIC_API_KEY",
        "sk-ant-api03-cliTestValueNumberTwo0002",
    ),
    ("GITHUB_TOKEN", "ghp_cliTestValueNumberThree000000003"),
    ("SLACK_BOT_TOKEN", "xoxb-cliTestValueNumberFour00000004"),
    ("STRIPE_SECRET", "sk_live_cliTestValueNumberFive000005"),
];

struct Setup {
    dir: tempfile::TempDir,
    state: std::path::PathBuf,
    src: String,
    dst: String,
}

fn setup(target: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src_path = dir.path().join("src.env");
    write_env(&src_path, SRC);
    let dst_path = dir.path().join("dst.env");
    if !target.is_empty() {
        write_env(&dst_path, target);
    }
    Setup {
        src: format!("dotenv:{}", src_path.display()),
        dst: format!("dotenv:{}", dst_path.display()),
        dir,
        state,
    }
}

#[test]
fn without_yes_and_without_a_terminal_it_refuses_and_changes_nothing() {
    let s = setup(&[]);
    for args in [
        vec!["migrate", "--from", &s.src, "--to", &s.dst],
        vec!["rollback", "--migration-id", "20260101T000000Z-abcdef"],
        vec!["resume", "--migration-id", "20260101T000000Z-abcdef"],
        vec!["restore", "--backup", "x.enc", "--to", &s.dst],
    ] {
        let (out, _, stderr) = run(credshift(&s.state).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--yes"), "{stderr}");
    }
    assert!(!Path::new(&s.dst[7..]).exists());
    assert!(!s.state.exists(), "nothing written to the state dir");
}

#[test]
fn dry_run_plans_every_action_and_writes_nothing() {
    let s = setup(&[
        ("OPENAI_API_KEY", "sk-proj-cliTestValueNumberOne0000000001"),
        ("GITHUB_TOKEN", "ghp_a-different-value-at-the-target-xx"),
    ]);
    let dst_before = std::fs::read(&s.dst[7..]).unwrap();
    let (out, stdout, stderr) = run(migrate_cmd(
        &s.state,
        &s.src,
        &s.dst,
        &["--dry-run", "--json"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let plan = json(&stdout);
    assert_eq!(plan["counts"]["total"], 5);
    assert_eq!(plan["counts"]["copy"], 3);
    assert_eq!(plan["counts"]["skip_identical"], 1);
    assert_eq!(plan["counts"]["conflict"], 1);
    let ids: Vec<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "stable sorted order");
    assert_eq!(std::fs::read(&s.dst[7..]).unwrap(), dst_before);
    assert!(
        !s.state.exists(),
        "a dry run writes nothing to the state dir"
    );
    for (_, v) in SRC {
        assert!(!stdout.contains(v));
    }
}

#[test]
fn migrate_copies_verifies_and_records_history_and_audit() {
    let s = setup(&[]);
    let (out, stdout, stderr) = run(migrate_cmd(&s.state, &s.src, &s.dst, &["--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.is_empty(),
        "no progress bar without a terminal: {stderr}"
    );
    let r = json(&stdout);
    assert_eq!(r["total"], 5);
    assert_eq!(r["copied"], 5);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["rolled_back"], false);
    let backup = r["backup"].as_str().unwrap();
    assert!(Path::new(backup).exists());
    assert_eq!(contents(&s.dst), contents(&s.src));
    let id = r["migration_id"].as_str().unwrap().to_string();

    let (out, stdout, _) = run(credshift(&s.state).args(["history", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let h = json(&stdout);
    assert_eq!(h[0]["id"], id.as_str());
    assert_eq!(h[0]["status"], "completed");
    assert_eq!(h[0]["copied"], 5);

    let (out, stdout, stderr) =
        run(credshift(&s.state).args(["verify", "--migration-id", &id, "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(json(&stdout)["verified"], 5);

    let audit = std::fs::read_to_string(s.state.join("audit.jsonl")).unwrap();
    let actions: Vec<String> = audit
        .lines()
        .map(|l| json(l)["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["migrate", "verify"]);
    assert!(audit.contains(&id));

    // Tamper with one value at the target: verify names it and exits 1.
    let dst_path = &s.dst[7..];
    let text = std::fs::read_to_string(dst_path).unwrap();
    std::fs::write(
        dst_path,
        text.replace("ghp_cliTestValueNumberThree000000003", "ghp_tampered"),
    )
    .unwrap();
    let (out, stdout, _) =
        run(credshift(&s.state).args(["verify", "--migration-id", &id, "--json"]));
    assert_eq!(out.status.code(), Some(1));
    let r = json(&stdout);
    assert_eq!(r["failed"], 1);
    assert_eq!(r["failures"][0]["id"], "env/GITHUB_TOKEN");
}

#[test]
fn most_writes_failing_roll_back_to_exactly_the_previous_target() {
    let s = setup(&[("GITHUB_TOKEN", "ghp_old-target-value-kept-0000000")]);
    let before = std::fs::read(&s.dst[7..]).unwrap();
    let (out, stdout, stderr) = run(migrate_cmd(
        &s.state,
        &s.src,
        &s.dst,
        &["--yes", "--json", "--on-conflict", "overwrite"],
    )
    .env("CREDSHIFT_FAULTS", "write:env/S*,write:env/O*,write:env/A*"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["rolled_back"], true, "{r}");
    assert_eq!(std::fs::read(&s.dst[7..]).unwrap(), before, "byte for byte");
    let (_, stdout, _) = run(credshift(&s.state).args(["history", "--json"]));
    assert_eq!(json(&stdout)[0]["status"], "rolled_back");
}

#[test]
fn a_few_failing_writes_keep_the_rest_and_list_the_failures() {
    let s = setup(&[]);
    let (out, stdout, stderr) = run(migrate_cmd(&s.state, &s.src, &s.dst, &["--yes", "--json"])
        .env("CREDSHIFT_FAULTS", "write:env/GITHUB_TOKEN"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["rolled_back"], false);
    assert_eq!(r["copied"], 4);
    assert_eq!(r["failed"], 1);
    assert_eq!(r["failures"][0]["id"], "env/GITHUB_TOKEN");
    let got = contents(&s.dst);
    assert_eq!(got.len(), 4);
    assert!(!got.contains_key("env/GITHUB_TOKEN"));
    // Resume retries the failed item once the fault is gone.
    let id = r["migration_id"].as_str().unwrap();
    let (out, stdout, stderr) =
        run(credshift(&s.state).args(["resume", "--migration-id", id, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(json(&stdout)["copied"], 5);
    assert_eq!(contents(&s.dst), contents(&s.src));
}

#[test]
fn rollback_restores_overwritten_values_and_is_idempotent() {
    let target = [
        ("GITHUB_TOKEN", "ghp_old-target-value-kept-0000000"),
        ("UNRELATED", "left-alone-value"),
    ];
    let s = setup(&target);
    let before = contents(&s.dst);
    let (out, stdout, stderr) = run(migrate_cmd(
        &s.state,
        &s.src,
        &s.dst,
        &["--yes", "--json", "--on-conflict", "overwrite"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["copied"], 5);
    assert_eq!(
        contents(&s.dst)["env/GITHUB_TOKEN"].0,
        "ghp_cliTestValueNumberThree000000003"
    );
    let id = r["migration_id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (out, stdout, stderr) =
            run(credshift(&s.state).args(["rollback", "--migration-id", &id, "--yes", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(json(&stdout)["rolled_back"], true);
        assert_eq!(contents(&s.dst), before);
    }
    let (_, stdout, _) = run(credshift(&s.state).args(["history", "--json"]));
    assert_eq!(json(&stdout)[0]["status"], "rolled_back");
}

#[test]
fn delete_source_removes_verified_items_and_reports_failed_deletes() {
    let s = setup(&[]);
    let (out, stdout, stderr) = run(migrate_cmd(
        &s.state,
        &s.src,
        &s.dst,
        &["--yes", "--json", "--delete-source"],
    )
    .env("CREDSHIFT_FAULTS", "delete:env/SLACK_BOT_TOKEN"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["copied"], 5);
    assert_eq!(r["source_deleted"], 4);
    let failed = &r["source_delete_failed"][0];
    assert_eq!(failed["id"], "env/SLACK_BOT_TOKEN");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("migrated, source still present")
    );
    let left = contents(&s.src);
    assert_eq!(left.keys().collect::<Vec<_>>(), ["env/SLACK_BOT_TOKEN"]);
    assert_eq!(contents(&s.dst).len(), 5);
    // Rolling back puts the deleted source items back from the backup.
    let id = r["migration_id"].as_str().unwrap();
    let (out, _, stderr) =
        run(credshift(&s.state).args(["rollback", "--migration-id", id, "--yes"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(contents(&s.src).len(), 5);
    assert!(contents(&s.dst).is_empty());
}

#[test]
fn a_held_lock_is_refused_naming_the_holder() {
    let s = setup(&[]);
    let spec: StoreSpec = s.dst.parse().unwrap();
    credshift::store::lockfile::set_operation("holder-migration");
    let _held = credshift::store::lockfile::guard(
        &spec,
        credshift::store::LockMode::Exclusive,
        std::time::Duration::ZERO,
    )
    .unwrap();
    let (out, _, stderr) = run(migrate_cmd(&s.state, &s.src, &s.dst, &["--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holder-migration"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(!Path::new(&s.dst[7..]).exists());
}

#[test]
fn usage_errors_exit_2() {
    let s = setup(&[]);
    for args in [
        vec![
            "migrate",
            "--from",
            &s.src,
            "--to",
            &s.dst,
            "--yes",
            "--on-conflict",
            "merge",
        ],
        vec!["migrate", "--from", &s.src, "--to", &s.src, "--yes"],
        vec!["verify", "--migration-id", "20990101T000000Z-000000"],
        vec!["rollback", "--migration-id", "../etc", "--yes"],
    ] {
        let (out, _, stderr) = run(credshift(&s.state).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    }
}

#[test]
fn backup_and_restore_round_trip() {
    let s = setup(&[]);
    let out_file = s.dir.path().join("b/store.enc");
    let (out, stdout, stderr) = run(credshift(&s.state).args([
        "backup",
        "--from",
        &s.src,
        "--out",
        out_file.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The key is kept apart from the backup (issue 14), in the state dir.
    assert!(stdout.contains("backup-keys"), "{stdout}");
    assert!(!s.dir.path().join("b/store.key").exists());
    let raw = std::fs::read_to_string(&out_file).unwrap();
    for (_, v) in SRC {
        assert!(!raw.contains(v));
    }
    let (out, _, stderr) = run(credshift(&s.state).args([
        "restore",
        "--backup",
        out_file.to_str().unwrap(),
        "--to",
        &s.dst,
        "--yes",
    ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(contents(&s.dst), contents(&s.src));
}

#[test]
fn prompttrain_fixture_migrates_with_metadata_into_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let src = copy_fixture("prompttrain/credentials", dir.path());
    let src = format!("prompttrain:{}", src.display());
    let dst = format!("dotenv:{}", dir.path().join("out.env").display());
    let state = dir.path().join("state");
    let (out, stdout, stderr) = run(migrate_cmd(&state, &src, &dst, &["--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = json(&stdout);
    let source = contents(&src);
    assert!(!source.is_empty());
    assert_eq!(r["copied"].as_u64().unwrap() as usize, source.len(), "{r}");
    assert_eq!(contents(&dst), source, "values and metadata");
    let expected = expected();
    for (id, (value, _)) in &source {
        if let Some(v) = expected.get(id) {
            assert_eq!(v, value, "{id}");
        }
    }
}

#[test]
fn delete_source_empties_a_prompttrain_source_including_train_client_keys() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = copy_fixture("prompttrain/credentials", dir.path());
    let src = format!("prompttrain:{}", src_dir.display());
    let dst = format!("dotenv:{}", dir.path().join("out.env").display());
    let state = dir.path().join("state");
    let before = contents(&src);
    let keys = before
        .keys()
        .filter(|k| k.starts_with("train:") && k.contains("/client_key/"))
        .count();
    assert!(
        keys >= 2,
        "the fixture has a train with several client keys"
    );
    let (out, stdout, stderr) = run(migrate_cmd(
        &state,
        &src,
        &dst,
        &["--yes", "--json", "--delete-source"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = json(&stdout);
    assert_eq!(
        r["source_deleted"].as_u64().unwrap() as usize,
        before.len(),
        "{r}"
    );
    assert!(contents(&src).is_empty(), "{:?}", contents(&src));
    assert_eq!(contents(&dst), before);
}

#[test]
fn sigterm_during_a_migration_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("big.env");
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "KEY_{i:04}=value-number-{i:04}-abcdefghijklmnop\n"
        ));
    }
    std::fs::write(&src_path, text).unwrap();
    let src = format!("dotenv:{}", src_path.display());
    let dst_path = dir.path().join("dst.env");
    std::fs::write(&dst_path, "KEEP=me-as-i-am\n").unwrap();
    let dst = format!("dotenv:{}", dst_path.display());
    let state = dir.path().join("state");
    let child = migrate_cmd(&state, &src, &dst, &["--yes", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few items are written (two batches: 1 + 2 items), then
    // ask it to stop.
    wait_for_records(&state, "journal.jsonl", "batch_done", 2);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let r = json(&stdout);
    assert_eq!(r["rolled_back"], true);
    assert_eq!(r["rollback_reason"], "cancelled by the user");
    let left = contents(&dst);
    assert_eq!(left.keys().collect::<Vec<_>>(), ["env/KEEP"]);
    assert_eq!(contents(&src).len(), 2000);
}

#[test]
fn a_passphrase_in_use_protects_the_backup_and_is_needed_to_roll_back() {
    let s = setup(&[("GITHUB_TOKEN", "ghp_old-target-value-kept-0000000")]);
    let before = contents(&s.dst);
    let pass = "correct horse battery staple";
    let (out, stdout, stderr) = run(migrate_cmd(
        &s.state,
        &s.src,
        &s.dst,
        &["--yes", "--json", "--on-conflict", "overwrite"],
    )
    .env("CREDSHIFT_PASSPHRASE", pass));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = json(&stdout);
    let backup = Path::new(r["backup"].as_str().unwrap()).to_path_buf();
    let header = json(&std::fs::read_to_string(&backup).unwrap());
    assert_eq!(header["kdf"]["alg"], "pbkdf2-hmac-sha256");
    assert!(!backup.with_extension("key").exists(), "no key file");
    let id = r["migration_id"].as_str().unwrap().to_string();
    // The overwritten value is only in the passphrase-sealed backup.
    let (out, _, stderr) =
        run(credshift(&s.state).args(["rollback", "--migration-id", &id, "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("passphrase"), "{stderr}");
    let (out, _, stderr) = run(credshift(&s.state).env("CREDSHIFT_PASSPHRASE", pass).args([
        "rollback",
        "--migration-id",
        &id,
        "--yes",
    ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(contents(&s.dst), before);
}

#[test]
fn every_write_failing_into_a_target_that_does_not_exist_yet_rolls_back_completely() {
    let s = setup(&[]);
    let target = s.dir.path().join("new.enc");
    let dst = format!("encrypted:{}", target.display());
    let (out, stdout, stderr) = run(migrate_cmd(&s.state, &s.src, &dst, &["--yes", "--json"])
        .env("CREDSHIFT_FAULTS", "write:*")
        .env("CREDSHIFT_PASSPHRASE", "a test passphrase, not a secret"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = json(&stdout);
    assert_eq!(r["rolled_back"], true, "{r}");
    let failed = r["failed"].as_u64().unwrap() as usize;
    assert!(failed * 2 > SRC.len().min(4), "{r}");
    assert!(
        r["failures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| { !f["error"].as_str().unwrap().starts_with("rollback:") }),
        "{r}"
    );
    assert!(!target.exists(), "nothing may be left at the target");
    let (_, stdout, _) = run(credshift(&s.state).args(["history", "--json"]));
    assert_eq!(json(&stdout)[0]["status"], "rolled_back");
}

#[test]
fn plan_warnings_reach_stderr_and_the_json_report_with_yes() {
    let s = setup(&[("UNRELATED", "keep-me-0000000000")]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s.dst[7..], std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, stdout, stderr) = run(migrate_cmd(&s.state, &s.src, &s.dst, &["--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("readable by others"),
        "{stderr}"
    );
    let r = json(&stdout);
    let warnings = r["warnings"].as_array().expect("a warnings field");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("readable by others")),
        "{r}"
    );
}

#[test]
fn test_aids_act_only_on_exact_values_and_say_so() {
    let s = setup(&[]);
    let migrate = |env: (&str, &str)| {
        run(migrate_cmd(&s.state, &s.src, &s.dst, &["--yes", "--json"]).env(env.0, env.1))
    };
    // A malformed fault list is refused before anything runs.
    for bad in ["bogus", "write", "write:", "Write:env/*", "write:env/*,"] {
        let (out, _, stderr) = migrate(("CREDSHIFT_FAULTS", bad));
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("CREDSHIFT_FAULTS"), "{stderr}");
        assert!(!Path::new(&s.dst[7..]).exists(), "{bad:?}: nothing written");
    }
    // A malformed crash point is ignored, with a message.
    let (out, _, stderr) = migrate(("CREDSHIFT_CRASH_AT", "3x"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("CREDSHIFT_CRASH_AT") && stderr.contains("ignored"),
        "{stderr}"
    );
    // Active aids warn on stderr.
    let s = setup(&[]);
    let (out, _, stderr) = run(migrate_cmd(&s.state, &s.src, &s.dst, &["--yes"])
        .env("CREDSHIFT_FAULTS", "write:env/NOTHING_MATCHES")
        .env("CREDSHIFT_CRASH_AT", "999"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: CREDSHIFT_FAULTS=write:env/NOTHING_MATCHES"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: CREDSHIFT_CRASH_AT=999"),
        "{stderr}"
    );
    let (_, _, stderr) = run(credshift(&s.state)
        .env("CREDSHIFT_PANIC_AFTER_DRAW", "yes")
        .args(["history"]));
    assert!(
        stderr.contains("CREDSHIFT_PANIC_AFTER_DRAW") && stderr.contains("ignored"),
        "{stderr}"
    );
}

/// Issue 27, point 7: a target under credshift's passphrase with no
/// passphrase or key file given stops in the pre-flight, exit 2, naming how
/// to give one: no journal, no backup, no target (before: a backup, every
/// item failed, a rollback, exit 1).
#[test]
fn a_target_needing_a_key_nobody_gave_stops_before_anything_runs() {
    let s = setup(&[]);
    let target = s.dir.path().join("new.credshift");
    let to = format!("encrypted:{}", target.display());
    let (out, _, stderr) = run(migrate_cmd(&s.state, &s.src, &to, &["--yes"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for how in [
        "--passphrase-file",
        "--passphrase-env",
        "CREDSHIFT_PASSPHRASE",
        "--key-file",
    ] {
        assert!(stderr.contains(how), "{how}: {stderr}");
    }
    assert!(!s.state.join("migrations").exists(), "no journal");
    let files: Vec<_> = walk(&s.state);
    assert!(files.is_empty(), "nothing in the state dir: {files:?}");
    assert!(!target.exists());
    // With a passphrase the same migration runs.
    let (out, _, stderr) =
        run(migrate_cmd(&s.state, &s.src, &to, &["--yes"])
            .env("CREDSHIFT_PASSPHRASE", "pre-flight ok"));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(s.state.join("migrations").exists());
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
