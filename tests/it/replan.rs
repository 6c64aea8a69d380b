//! Issue 21, "resume plans again", through the binary: a value another
//! tool writes into the target after a crash is a conflict for the resume
//! (skipped, or backed up first under `overwrite`) and survives a rollback
//! (Why 2); the more-than-half rule counts the whole migration, so a crash
//! and a resume keep what an uninterrupted run keeps (Why 7); crashes
//! during a resume and during a rollback really fire and are recovered.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

const SRC: &str = "OPENAI_API_KEY=sk-proj-sourceValue000000000000001\n\
GITHUB_TOKEN=ghp_sourceValue0000000000000000002\n";
const OTHER: &str = "sk-proj-writtenByAnotherTool0000009";

struct Case {
    _dir: tempfile::TempDir,
    state: PathBuf,
    src: String,
    dst: String,
    dst_path: PathBuf,
}

fn case(src: &str, dst: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("src.env");
    let dst_path = dir.path().join("dst.env");
    std::fs::write(&src_path, src).unwrap();
    std::fs::write(&dst_path, dst).unwrap();
    Case {
        state: dir.path().join("state"),
        src: format!("dotenv:{}", src_path.display()),
        dst: format!("dotenv:{}", dst_path.display()),
        dst_path,
        _dir: dir,
    }
}

fn value(c: &Case, key: &str) -> Option<String> {
    contents(&c.dst)
        .get(&format!("env/{key}"))
        .map(|v| v.0.clone())
}

/// `migrate --yes --json` plus `extra`, with `env` set; crashing at K.
fn migrate(c: &Case, crash_at: Option<u32>, env: &[(&str, &str)], extra: &[&str]) -> Output3 {
    let mut cmd = migrate_cmd(&c.state, &c.src, &c.dst, &["--yes", "--json"]);
    cmd.args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(k) = crash_at {
        cmd.env("CREDSHIFT_CRASH_AT", k.to_string());
    }
    Output3::of(run(&mut cmd))
}

/// `resume` / `rollback` of the only migration, with `env` set.
fn recover(c: &Case, what: &str, crash_at: Option<u32>, env: &[(&str, &str)]) -> Output3 {
    let id = only_id(&c.state);
    let mut cmd = credshift(&c.state);
    cmd.args([what, "--migration-id", &id, "--yes", "--json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(k) = crash_at {
        cmd.env("CREDSHIFT_CRASH_AT", k.to_string());
    }
    Output3::of(run(&mut cmd))
}

struct Output3 {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output3 {
    fn of((out, stdout, stderr): (std::process::Output, String, String)) -> Self {
        Output3 {
            code: out.status.code(),
            stdout,
            stderr,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }

    /// The process was aborted by `CREDSHIFT_CRASH_AT` (no exit code, and
    /// the aid's warning on stderr): the crash really fired.
    fn crashed(&self) -> bool {
        self.code.is_none() && self.stderr.contains("CREDSHIFT_CRASH_AT")
    }
}

fn status(state: &Path) -> String {
    let (_, stdout, _) = run(credshift(state).args(["history", "--json"]));
    let h: Value = serde_json::from_str(&stdout).unwrap();
    h[0]["status"].as_str().unwrap().to_string()
}

/// Crash right after the backup record (`started`, `planned`,
/// `backup_written`), then another tool writes OPENAI_API_KEY.
fn crash_after_backup_then_another_tool_writes(extra: &[&str]) -> Case {
    let c = case(SRC, "UNRELATED=keep-me-as-i-am-000000\n");
    let out = migrate(&c, Some(3), &[], extra);
    assert!(out.crashed(), "the crash did not fire: {}", out.stderr);
    assert_eq!(status(&c.state), "interrupted");
    let mut text = std::fs::read_to_string(&c.dst_path).unwrap();
    text.push_str(&format!("OPENAI_API_KEY={OTHER}\n"));
    std::fs::write(&c.dst_path, text).unwrap();
    c
}

#[test]
fn why2_resume_skips_a_value_that_appeared_after_the_crash_and_rollback_keeps_it() {
    let c = crash_after_backup_then_another_tool_writes(&[]);
    let out = recover(&c, "resume", None, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["conflicts"], 1, "{r}");
    assert_eq!(r["copied"], 1, "{r}");
    assert_eq!(value(&c, "OPENAI_API_KEY").as_deref(), Some(OTHER));
    assert!(value(&c, "GITHUB_TOKEN").is_some());
    let out = recover(&c, "rollback", None, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(value(&c, "OPENAI_API_KEY").as_deref(), Some(OTHER));
    assert_eq!(value(&c, "GITHUB_TOKEN"), None);
    assert!(value(&c, "UNRELATED").is_some());
}

#[test]
fn why2_under_overwrite_resume_backs_the_new_value_up_and_rollback_restores_it() {
    let c = crash_after_backup_then_another_tool_writes(&["--on-conflict", "overwrite"]);
    let out = recover(&c, "resume", None, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.json()["copied"], 2);
    assert_eq!(
        value(&c, "OPENAI_API_KEY").as_deref(),
        Some("sk-proj-sourceValue000000000000001")
    );
    let out = recover(&c, "rollback", None, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(value(&c, "OPENAI_API_KEY").as_deref(), Some(OTHER));
    assert_eq!(value(&c, "GITHUB_TOKEN"), None);
    assert_eq!(status(&c.state), "rolled_back");
}

/// Ten items; writes of B1..B3 fail (3 of 10). Sorted, they are the 4th to
/// 6th write: after them 3 of 6 failed, not more than half.
const TEN: &str = "A1=value-a1-0000000001\nA2=value-a2-0000000002\nA3=value-a3-0000000003\n\
B1=value-b1-0000000004\nB2=value-b2-0000000005\nB3=value-b3-0000000006\n\
C1=value-c1-0000000007\nC2=value-c2-0000000008\nC3=value-c3-0000000009\n\
C4=value-c4-0000000010\n";
const FAIL_B: (&str, &str) = ("CREDSHIFT_FAULTS", "write:env/B*");

#[test]
fn why7_a_crash_and_a_resume_keep_what_an_uninterrupted_run_keeps() {
    let clean = case(TEN, "");
    let out = migrate(&clean, None, &[FAIL_B], &[]);
    let r = out.json();
    assert_eq!(
        (r["copied"].as_u64(), r["failed"].as_u64()),
        (Some(7), Some(3)),
        "{r}"
    );
    assert_eq!(r["rolled_back"], false, "{r}");
    assert_eq!(contents(&clean.dst).len(), 7);

    // Records: started, planned, backup_written, then batch 1 (A1) and
    // batch 2 (A2, A3), each begin + done: the crash comes after 3 items.
    let c = case(TEN, "");
    let out = migrate(&c, Some(7), &[FAIL_B], &[]);
    assert!(out.crashed(), "the crash did not fire: {}", out.stderr);
    assert_eq!(contents(&c.dst).len(), 3);
    let out = recover(&c, "resume", None, &[FAIL_B]);
    let r = out.json();
    assert_eq!(r["rolled_back"], false, "{r}");
    assert_eq!(
        (r["copied"].as_u64(), r["failed"].as_u64()),
        (Some(7), Some(3)),
        "{r}"
    );
    assert_eq!(contents(&c.dst), contents(&clean.dst));
}

#[test]
fn a_crash_during_a_resume_fires_and_a_second_resume_finishes() {
    let c = case(TEN, "");
    let out = migrate(&c, Some(5), &[], &[]);
    assert!(out.crashed(), "the crash did not fire: {}", out.stderr);
    // The resume's own records: `resumed`, then batches: die in them.
    let out = recover(&c, "resume", Some(3), &[]);
    assert!(
        out.crashed(),
        "the resume's crash did not fire: {}",
        out.stderr
    );
    assert_eq!(status(&c.state), "interrupted");
    let out = recover(&c, "resume", None, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(contents(&c.dst).len(), 10);
    assert_eq!(status(&c.state), "completed");
}

#[test]
fn a_crash_during_a_rollback_fires_and_a_second_rollback_finishes() {
    let c = case(TEN, "KEEP=target-value-000000000\n");
    let before = contents(&c.dst);
    let out = migrate(&c, Some(9), &[], &[]);
    assert!(out.crashed(), "the crash did not fire: {}", out.stderr);
    // `rollback_started`, then one `undone` per item: die after two undos.
    let out = recover(&c, "rollback", Some(3), &[]);
    assert!(
        out.crashed(),
        "the rollback's crash did not fire: {}",
        out.stderr
    );
    assert_ne!(status(&c.state), "rolled_back");
    let out = recover(&c, "rollback", None, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(contents(&c.dst), before);
    assert_eq!(status(&c.state), "rolled_back");
}

#[test]
fn restore_shows_its_plan_first_and_skips_a_value_changed_since_the_backup() {
    let c = case(SRC, "");
    let dir = c.state.parent().unwrap().to_path_buf();
    let out_file = dir.join("app.backup");
    let (out, _, stderr) = run(credshift(&c.state).args([
        "backup",
        "--from",
        &c.src,
        "--out",
        out_file.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Since the backup, the source's OPENAI_API_KEY changed and
    // GITHUB_TOKEN went away.
    let src_path = dir.join("src.env");
    std::fs::write(&src_path, format!("OPENAI_API_KEY={OTHER}\n")).unwrap();
    let restore = |extra: &[&str]| {
        let mut cmd = credshift(&c.state);
        cmd.args([
            "restore",
            "--backup",
            out_file.to_str().unwrap(),
            "--to",
            &c.src,
        ])
        .args(extra);
        Output3::of(run(&mut cmd))
    };
    let plan = restore(&["--dry-run", "--json"]);
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    let p = plan.json();
    assert_eq!(
        (
            p["counts"]["copy"].as_u64(),
            p["counts"]["conflict"].as_u64()
        ),
        (Some(1), Some(1)),
        "{p}"
    );
    assert_eq!(
        std::fs::read_to_string(&src_path).unwrap(),
        format!("OPENAI_API_KEY={OTHER}\n")
    );
    // Without --yes and no terminal: refused before anything is read.
    assert_eq!(restore(&["--json"]).code, Some(2));
    let r = restore(&["--yes", "--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let rep = r.json();
    assert_eq!(
        (rep["copied"].as_u64(), rep["conflicts"].as_u64()),
        (Some(1), Some(1)),
        "{rep}"
    );
    let now = contents(&c.src);
    assert_eq!(
        now["env/OPENAI_API_KEY"].0, OTHER,
        "the changed value stays"
    );
    assert_eq!(
        now["env/GITHUB_TOKEN"].0,
        "ghp_sourceValue0000000000000000002"
    );
    // Asked for: overwrite replaces it.
    let r = restore(&["--yes", "--json", "--on-conflict", "overwrite"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        contents(&c.src)["env/OPENAI_API_KEY"].0,
        "sk-proj-sourceValue000000000000001"
    );
}
