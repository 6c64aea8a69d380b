//! Crash safety: the real binary is aborted right after the K-th journal
//! record (`CREDSHIFT_CRASH_AT=K`) for every K of a small migration. After
//! each crash, history shows it interrupted, no source byte changed, and
//! rollback (twice) gives back exactly the old target while resume (twice)
//! gives the full expected set, never losing or duplicating a credential.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

const SRC: &str = "# source\n\
OPENAI_API_KEY=sk-proj-crashTestOne00000000000000001\n\
ANTHROPIC_API_KEY=sk-ant-api03-crashTestTwo0000000002\n\
GITHUB_TOKEN=ghp_crashTestThree00000000000000003\n\
SLACK_BOT_TOKEN=xoxb-crashTestFour0000000000004\n\
SHARED_TOKEN=same-value-on-both-sides-0005\n";

const DST: &str = "# target\n\
GITHUB_TOKEN=ghp_oldTargetValue000000000000000099\n\
SHARED_TOKEN=same-value-on-both-sides-0005\n\
UNRELATED=keep-me-as-i-am-0000000000\n";

struct Case {
    _dir: tempfile::TempDir,
    state: PathBuf,
    src_path: PathBuf,
    src: String,
    dst: String,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("src.env");
    let dst_path = dir.path().join("dst.env");
    std::fs::write(&src_path, SRC).unwrap();
    std::fs::write(&dst_path, DST).unwrap();
    Case {
        state: dir.path().join("state"),
        src: format!("dotenv:{}", src_path.display()),
        dst: format!("dotenv:{}", dst_path.display()),
        src_path,
        _dir: dir,
    }
}

fn migrate(c: &Case, crash_at: Option<usize>) -> std::process::Output {
    migrate_with(c, crash_at, &[])
}

/// `migrate --on-conflict overwrite` and `extra`, crashing at record K.
fn migrate_with(c: &Case, crash_at: Option<usize>, extra: &[&str]) -> std::process::Output {
    let mut cmd = migrate_cmd(
        &c.state,
        &c.src,
        &c.dst,
        &["--yes", "--json", "--on-conflict", "overwrite"],
    );
    cmd.args(extra);
    if let Some(k) = crash_at {
        cmd.env("CREDSHIFT_CRASH_AT", k.to_string());
    }
    run(&mut cmd).0
}

fn history(state: &Path) -> Value {
    let (out, stdout, stderr) = run(credshift(state).args(["history", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn journal_len(state: &Path, id: &str) -> usize {
    let j = state.join("migrations").join(id).join("journal.jsonl");
    std::fs::read_to_string(j).unwrap().lines().count()
}

fn recover(c: &Case, id: &str, cmd: &str, crash_at: Option<usize>) -> (Option<i32>, String) {
    let mut command = credshift(&c.state);
    command.args([cmd, "--migration-id", id, "--yes", "--json"]);
    if let Some(k) = crash_at {
        command.env("CREDSHIFT_CRASH_AT", k.to_string());
    }
    let (out, stdout, stderr) = run(&mut command);
    (out.status.code(), format!("{stdout}{stderr}"))
}

#[test]
fn every_crash_point_can_be_rolled_back_or_resumed() {
    // A clean run tells how many records the migration writes.
    let clean = case();
    let out = migrate(&clean, None);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["migration_id"].as_str().unwrap().to_string();
    let records = journal_len(&clean.state, &id);
    let expected_full = contents(&clean.dst);
    assert_eq!(expected_full.len(), 6, "{expected_full:?}");
    assert!(records >= 10, "{records} records");

    for k in 1..=records {
        for mode in ["rollback", "resume"] {
            let c = case();
            let src_before = std::fs::read(&c.src_path).unwrap();
            let dst_before = contents(&c.dst);
            let out = migrate(&c, Some(k));
            assert_eq!(out.status.code(), None, "K={k}: the process aborted");
            let h = history(&c.state);
            let id = h[0]["id"].as_str().unwrap().to_string();
            let want = if k == records {
                "completed"
            } else {
                "interrupted"
            };
            assert_eq!(h[0]["status"], want, "K={k}");
            assert_eq!(std::fs::read(&c.src_path).unwrap(), src_before, "K={k}");
            match mode {
                "rollback" => {
                    // A crash in the middle of the rollback, then two more.
                    // Every rollback writes at least `rollback_started`,
                    // `rolled_back` and `finished`: record 2 always comes,
                    // so the process must have been aborted there.
                    let (code, out) = recover(&c, &id, "rollback", Some(2));
                    assert_eq!(
                        code, None,
                        "K={k}: the rollback's crash did not fire: {out}"
                    );
                    assert!(out.contains("CREDSHIFT_CRASH_AT=2"), "K={k}: {out}");
                    for _ in 0..2 {
                        let (code, out) = recover(&c, &id, "rollback", None);
                        assert_eq!(code, Some(0), "K={k}: {out}");
                        assert_eq!(contents(&c.dst), dst_before, "K={k} rollback");
                    }
                    assert_eq!(history(&c.state)[0]["status"], "rolled_back", "K={k}");
                }
                _ => {
                    for _ in 0..2 {
                        let (code, out) = recover(&c, &id, "resume", None);
                        assert_eq!(code, Some(0), "K={k}: {out}");
                        assert_eq!(contents(&c.dst), expected_full, "K={k} resume");
                    }
                    assert_eq!(history(&c.state)[0]["status"], "completed", "K={k}");
                }
            }
            assert_eq!(std::fs::read(&c.src_path).unwrap(), src_before, "K={k}");
        }
    }
}

#[test]
fn a_crash_anywhere_in_a_migration_with_cleanup_is_resumed_or_rolled_back() {
    let migrate_delete =
        |c: &Case, crash_at: Option<usize>| migrate_with(c, crash_at, &["--delete-source"]);
    let clean = case();
    let out = migrate_delete(&clean, None);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["source_deleted"], 5, "{report}");
    let id = report["migration_id"].as_str().unwrap().to_string();
    let records = journal_len(&clean.state, &id);
    let journal = std::fs::read_to_string(
        clean
            .state
            .join("migrations")
            .join(&id)
            .join("journal.jsonl"),
    )
    .unwrap();
    // `finished` comes after the cleanup's own records.
    let last = journal.lines().last().unwrap();
    assert!(last.contains("\"event\":\"finished\""), "{last}");
    assert!(journal.contains("\"event\":\"cleanup_finished\""));
    let full_dst = contents(&clean.dst);
    let empty_src = contents(&clean.src);
    assert!(empty_src.is_empty(), "{empty_src:?}");

    for k in 1..=records {
        for mode in ["resume", "rollback"] {
            let c = case();
            let src_before = contents(&c.src);
            let dst_before = contents(&c.dst);
            let out = migrate_delete(&c, Some(k));
            assert_eq!(out.status.code(), None, "K={k}: the process aborted");
            let h = history(&c.state);
            let id = h[0]["id"].as_str().unwrap().to_string();
            let want = if k == records {
                "completed"
            } else {
                "interrupted"
            };
            assert_eq!(h[0]["status"], want, "K={k}");
            match mode {
                "resume" => {
                    for _ in 0..2 {
                        let (code, out) = recover(&c, &id, "resume", None);
                        assert_eq!(code, Some(0), "K={k}: {out}");
                        assert_eq!(contents(&c.dst), full_dst, "K={k} resume: target");
                        assert_eq!(contents(&c.src), empty_src, "K={k} resume: source");
                    }
                    assert_eq!(history(&c.state)[0]["status"], "completed", "K={k}");
                }
                _ => {
                    for _ in 0..2 {
                        let (code, out) = recover(&c, &id, "rollback", None);
                        assert_eq!(code, Some(0), "K={k}: {out}");
                        assert_eq!(contents(&c.dst), dst_before, "K={k} rollback: target");
                        assert_eq!(contents(&c.src), src_before, "K={k} rollback: source");
                    }
                    assert_eq!(history(&c.state)[0]["status"], "rolled_back", "K={k}");
                }
            }
        }
    }
}
