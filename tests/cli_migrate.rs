//! `credshift migrate` and the support commands, run as the real binary on
//! real stores (dotenv files and the agent-prompttrain fixture).

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use credshift::store::{self, OpenOptions, StoreSpec};
use serde_json::Value;
use support::*;

/// Every credential of a store as id -> (value, metadata JSON).
fn contents(spec: &str) -> BTreeMap<String, (String, String)> {
    let spec: StoreSpec = spec.parse().unwrap();
    let s = store::open(&spec, &OpenOptions::default()).unwrap();
    let scan = match s.read_all() {
        Ok(scan) => scan,
        Err(credshift::error::StoreError::NotFound { .. }) => return BTreeMap::new(),
        Err(e) => panic!("{e}"),
    };
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let mut out = BTreeMap::new();
    for c in scan.credentials {
        let meta = serde_json::to_string(&c.metadata).unwrap();
        let dup = out.insert(c.id.to_string(), (c.secret.expose().to_string(), meta));
        assert!(dup.is_none(), "duplicate id {}", c.id);
    }
    out
}

fn write_env(path: &Path, pairs: &[(&str, &str)]) {
    let mut text = String::from("# test env file\n");
    for (k, v) in pairs {
        text.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

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
    let (out, stdout, stderr) = run(credshift(&s.state).args([
        "migrate",
        "--from",
        &s.src,
        "--to",
        &s.dst,
        "--dry-run",
        "--json",
    ]));
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
    let (out, stdout, stderr) = run(credshift(&s.state).args([
        "migrate", "--from", &s.src, "--to", &s.dst, "--yes", "--json",
    ]));
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
    let (out, stdout, stderr) = run(credshift(&s.state)
        .env("CREDSHIFT_FAULTS", "write:env/S*,write:env/O*,write:env/A*")
        .args([
            "migrate",
            "--from",
            &s.src,
            "--to",
            &s.dst,
            "--yes",
            "--json",
            "--on-conflict",
            "overwrite",
        ]));
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
    let (out, stdout, stderr) = run(credshift(&s.state)
        .env("CREDSHIFT_FAULTS", "write:env/GITHUB_TOKEN")
        .args([
            "migrate", "--from", &s.src, "--to", &s.dst, "--yes", "--json",
        ]));
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
    let (out, stdout, stderr) = run(credshift(&s.state).args([
        "migrate",
        "--from",
        &s.src,
        "--to",
        &s.dst,
        "--yes",
        "--json",
        "--on-conflict",
        "overwrite",
    ]));
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
    let (out, stdout, stderr) = run(credshift(&s.state)
        .env("CREDSHIFT_FAULTS", "delete:env/SLACK_BOT_TOKEN")
        .args([
            "migrate",
            "--from",
            &s.src,
            "--to",
            &s.dst,
            "--yes",
            "--json",
            "--delete-source",
        ]));
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
    let _held = credshift::engine::lock::acquire(&s.state, &spec, "holder-migration").unwrap();
    let (out, _, stderr) =
        run(credshift(&s.state).args(["migrate", "--from", &s.src, "--to", &s.dst, "--yes"]));
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
    assert!(stdout.contains("store.key"), "{stdout}");
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
    let (out, stdout, stderr) =
        run(credshift(&state).args(["migrate", "--from", &src, "--to", &dst, "--yes", "--json"]));
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
