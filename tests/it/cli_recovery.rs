//! Issue 27 from the command line and the engine: `history --migration-id
//! ID --json` says what happened to each item (secret-free, with each
//! batch's ids), `rollback --only GLOB` undoes just those items, and a
//! cancelled resume or rollback stops after the batch at hand, says so,
//! and leaves a migration the next run finishes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::support::*;
use credshift::engine::{self, Control, MigrationId};
use credshift::unlock::KeyOptions;

const SRC: &str = "ALPHA_KEY=sk-cli-recovery-alpha-0000001\nBRAVO_KEY=sk-cli-recovery-bravo-0000002\n\
CHARLIE_KEY=sk-cli-recovery-charlie-000003\nDELTA_KEY=sk-cli-recovery-delta-0000004\n";

struct Case {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    src: String,
    dst: String,
}

fn case(env: &[(&str, &str)], args: &[&str]) -> Case {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("src.env"), SRC).unwrap();
    let c = Case {
        state: tmp.path().join("state"),
        src: format!("dotenv:{}", tmp.path().join("src.env").display()),
        dst: format!("dotenv:{}", tmp.path().join("dst.env").display()),
        _tmp: tmp,
    };
    let mut cmd = migrate_cmd(&c.state, &c.src, &c.dst, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd);
    c
}

fn id(state: &Path) -> String {
    let (_, stdout, _) = run(credshift(state).args(["history", "--json"]));
    json(&stdout)[0]["id"].as_str().unwrap().to_string()
}

fn item_history(state: &Path) -> (serde_json::Value, String) {
    let (out, stdout, stderr) =
        run(credshift(state).args(["history", "--migration-id", &id(state), "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (json(&stdout), stdout)
}

fn states(v: &serde_json::Value) -> Vec<(String, String)> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn no_secret(text: &str) {
    for l in SRC.lines() {
        let v = l.split_once('=').unwrap().1;
        assert!(!text.contains(v), "a secret in the output");
    }
}

/// Why 3: every planned item with its state, and each batch's ids.
#[test]
fn history_of_one_migration_lists_every_item_and_each_batch() {
    let c = case(&[("CREDSHIFT_CRASH_AT", "6")], &["--yes"]);
    let (v, text) = item_history(&c.state);
    no_secret(&text);
    assert_eq!(v["entry"]["status"], "interrupted");
    let st = states(&v);
    assert_eq!(
        st,
        [
            ("env/ALPHA_KEY".into(), "verified".into()),
            ("env/BRAVO_KEY".into(), "written".into()),
            ("env/CHARLIE_KEY".into(), "written".into()),
            ("env/DELTA_KEY".into(), "planned".into()),
        ],
        "{text}"
    );
    let batch2: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event"] == "batch_begin")
        .nth(1)
        .unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(batch2, ["env/BRAVO_KEY", "env/CHARLIE_KEY"]);
    // Items point at their batch's journal record.
    let bravo = &v["items"][1];
    let seq = bravo["batch"].as_u64().unwrap();
    assert!(
        v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["seq"] == seq && t["event"] == "batch_begin")
    );
    // The same as text, for a person.
    let (_, out, _) = run(credshift(&c.state).args(["history", "--migration-id", &id(&c.state)]));
    assert!(out.contains("written          env/BRAVO_KEY"), "{out}");
    assert!(out.contains("[env/BRAVO_KEY, env/CHARLIE_KEY]"), "{out}");
}

/// Why 3: a failure's reason in full, never cut.
#[test]
fn history_gives_each_failure_its_full_reason() {
    let c = case(&[("CREDSHIFT_FAULTS", "write:env/*")], &["--yes"]);
    let (v, text) = item_history(&c.state);
    assert_eq!(v["entry"]["status"], "rolled_back", "{text}");
    for i in v["items"].as_array().unwrap() {
        assert_eq!(i["state"], "failed", "{text}");
        let reason = i["reason"].as_str().unwrap();
        assert!(reason.ends_with("injected fault (write)"), "{reason}");
        assert!(!reason.contains('…'), "{reason}");
    }
}

/// Point 7b: `rollback --only GLOB` undoes just the matching items,
/// journaled; the rest stays migrated and the status says which.
#[test]
fn rollback_only_undoes_just_the_matching_items() {
    let c = case(&[], &["--yes"]);
    assert_eq!(contents(&c.dst).len(), 4);
    let mid = id(&c.state);
    let (out, stdout, stderr) = run(credshift(&c.state).args([
        "rollback",
        "--migration-id",
        &mid,
        "--only",
        "env/B*",
        "--yes",
    ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("3 items remain migrated: env/ALPHA_KEY, env/CHARLIE_KEY, env/DELTA_KEY"),
        "{stdout}"
    );
    let left: Vec<String> = contents(&c.dst).into_keys().collect();
    assert_eq!(left, ["env/ALPHA_KEY", "env/CHARLIE_KEY", "env/DELTA_KEY"]);
    let (v, text) = item_history(&c.state);
    assert_eq!(v["entry"]["status"], "completed", "{text}");
    assert_eq!(v["entry"]["copied"], 3, "{text}");
    assert_eq!(
        states(&v)[1],
        ("env/BRAVO_KEY".into(), "rolled_back".into())
    );
    assert!(text.contains("\"rollback_part\""), "{text}");
    // Nothing matches: refused, nothing changed.
    let (out, _, stderr) = run(credshift(&c.state).args([
        "rollback",
        "--migration-id",
        &mid,
        "--only",
        "env/NOPE*",
        "--yes",
    ]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(contents(&c.dst).len(), 3);
}

/// Point 4: a cancelled resume stops before its next batch, says so, keeps
/// what it wrote, leaves the migration interrupted; the next resume
/// finishes it. A cancelled rollback likewise.
#[test]
fn a_cancelled_resume_or_rollback_stops_says_so_and_can_be_finished() {
    let c = case(&[("CREDSHIFT_CRASH_AT", "5")], &["--yes"]);
    let mid = MigrationId(id(&c.state));
    let opts = KeyOptions::default();
    let ctl = Control::default();
    ctl.cancel.store(true, Ordering::SeqCst);
    let r = engine::resume_with(&c.state, &mid, &opts, &ctl).unwrap();
    assert!(r.cancelled, "{r:?}");
    assert!(
        !r.rolled_back,
        "a cancelled resume must not undo the first run"
    );
    assert_eq!(r.status, Some(engine::MigrationStatus::Interrupted));
    assert_eq!(r.verified, 1);
    assert_eq!(contents(&c.dst).len(), 1, "the first run's item stays");
    let r = engine::resume(&c.state, &mid, &opts).unwrap();
    assert!(!r.cancelled);
    assert_eq!(r.status, Some(engine::MigrationStatus::Completed));
    assert_eq!(contents(&c.dst).len(), 4);

    let r = engine::rollback_with(&c.state, &mid, &opts, &ctl).unwrap();
    assert!(r.cancelled && !r.rolled_back, "{r:?}");
    assert_eq!(r.status, Some(engine::MigrationStatus::Interrupted));
    assert_eq!(contents(&c.dst).len(), 4, "stopped before the first undo");
    let r = engine::rollback(&c.state, &mid, &opts).unwrap();
    assert!(r.rolled_back, "{r:?}");
    assert!(contents(&c.dst).is_empty());
}

/// One handle for every long operation: each recovery operation reports
/// progress and ends with its report on the same handle.
#[test]
fn every_recovery_operation_runs_on_the_one_handle() {
    let c = case(
        &[("CREDSHIFT_CRASH_AT", "5")],
        &["--yes", "--delete-source"],
    );
    let mid = MigrationId(id(&c.state));
    let opts = KeyOptions::default();
    for op in [
        engine::RecoveryOp::Resume,
        engine::RecoveryOp::Verify,
        engine::RecoveryOp::Restore,
    ] {
        let h = engine::start_recovery(&c.state, &mid, &opts, op, Default::default()).unwrap();
        let events: Vec<engine::Progress> = h.events.iter().collect();
        let r = h.join().unwrap();
        assert!(
            matches!(events.last(), Some(engine::Progress::Finished(f)) if **f == r),
            "{op:?}: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, engine::Progress::Counts(_))),
            "{op:?} sent no progress"
        );
    }
    // The restore put the four deleted items back into the source.
    assert_eq!(contents(&c.src).len(), 4);
    let _ = &c.dst;
}

/// A wrong passphrase is refused before anything is compared: old main
/// reported every value as "differs from the one migrated".
#[test]
fn a_wrong_passphrase_is_refused_not_reported_as_mismatches() {
    let c = case(
        &[(
            "CREDSHIFT_PASSPHRASE",
            "the passphrase it ran with, a test one",
        )],
        &["--yes"],
    );
    let mid = id(&c.state);
    let (out, stdout, stderr) = run(credshift(&c.state)
        .env("CREDSHIFT_PASSPHRASE", "a different passphrase, a typo")
        .args(["verify", "--migration-id", &mid]));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("does not open migration"), "{stderr}");
    assert!(!stdout.contains("differs"), "{stdout}");
    let (out, stdout, stderr) = run(credshift(&c.state)
        .env(
            "CREDSHIFT_PASSPHRASE",
            "the passphrase it ran with, a test one",
        )
        .args(["verify", "--migration-id", &mid]));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
}
