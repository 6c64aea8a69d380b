//! A migration whose source items are all unreadable did nothing: it says
//! so, names every unreadable place, and exits 1 (ARCHITECTURE.md, "Exit codes": 1 failed),
//! never "done, total 0" with exit 0. A source with good items beside the
//! bad ones migrates the good ones and still names the bad.

use crate::support;

use serde_json::Value;
use support::*;

/// The report's warnings naming an unreadable source place.
fn unreadable(r: &Value) -> Vec<String> {
    r["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .filter(|w| w.starts_with("not migrated, could not be read: "))
        .map(str::to_string)
        .collect()
}

const HIDDEN: &str = "sk-proj-unreadableValue00000000001";

#[test]
fn a_migration_of_only_unreadable_items_fails_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bad.env");
    // An unterminated quote and a line that is no assignment.
    std::fs::write(
        &src,
        format!("OPENAI_API_KEY=\"{HIDDEN}\nnot an assignment\n"),
    )
    .unwrap();
    let from = format!("dotenv:{}", src.display());
    let to = format!("dotenv:{}", tmp.path().join("out.env").display());
    let state = tmp.path().join("state");
    let (out, stdout, stderr) =
        run(credshift(&state).args(["migrate", "--from", &from, "--to", &to, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["total"], 0, "{r}");
    let errors = unreadable(&r);
    assert_eq!(errors.len(), 2, "{r}");
    for e in &errors {
        assert!(e.contains("bad.env:"), "{e}");
    }
    assert!(stderr.contains("bad.env:1"), "{stderr}");
    assert!(stderr.contains("could not be read"), "{stderr}");
    assert!(!stdout.contains(HIDDEN) && !stderr.contains(HIDDEN));
    // The text report says the same.
    let (out, stdout, stderr) =
        run(credshift(&state).args(["migrate", "--from", &from, "--to", &to, "--yes"]));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("bad.env:2"), "{stderr}");
}

#[test]
fn good_items_beside_unreadable_ones_migrate_and_the_bad_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("mixed.env");
    std::fs::write(
        &src,
        format!("GOOD_TOKEN=fine-value-0001\nOPENAI_API_KEY=\"{HIDDEN}\n"),
    )
    .unwrap();
    let from = format!("dotenv:{}", src.display());
    let to = format!("dotenv:{}", tmp.path().join("out.env").display());
    let (out, stdout, stderr) = run(credshift(&tmp.path().join("state"))
        .args(["migrate", "--from", &from, "--to", &to, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["copied"], 1, "{r}");
    assert_eq!(unreadable(&r).len(), 1, "{r}");
    assert!(stderr.contains("mixed.env:2"), "{stderr}");
    assert!(!stdout.contains(HIDDEN) && !stderr.contains(HIDDEN));
}
