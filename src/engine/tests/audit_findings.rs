//! Findings A10 and A11 of the audit of main 3579e94: a partial rollback
//! reports what taking its locks did, and verify counts an id its journal
//! verified but never planned as a failure.

use super::recovery::env_file;
use super::*;

/// A dotenv → dotenv migration of two items, done.
fn migrated(dir: &std::path::Path) -> (std::path::PathBuf, StoreSpec, MigrationId) {
    let state = dir.join("state");
    let from = env_file(
        dir,
        "src.env",
        "A_KEY=sk-aaaaaaaaaaaa\nB_KEY=sk-bbbbbbbbbbbb\n",
    );
    let to = env_file(dir, "dst.env", "");
    let rq = MigrationRequest {
        from,
        to: to.clone(),
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source: false,
    };
    let r = run(rq, &state, &KeyOptions::default(), None, |_| {}).unwrap();
    assert_eq!(r.copied, 2, "{r:?}");
    (state, to, r.migration_id)
}

#[test]
fn a_partial_rollback_reports_the_temp_file_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (state, to, id) = migrated(dir.path());
    // A temp file a killed run (a PID no process has) left beside the target.
    let Some(path) = to.path() else {
        unreachable!("a file store")
    };
    let temp = dir.path().join(".dst.env.credshift-tmp.4194300.0");
    assert!(!crate::fsutil::pid_alive(4_194_300));
    std::fs::write(&temp, "half").unwrap();
    let r = rollback_only(
        &state,
        &id,
        &KeyOptions::default(),
        "env/A_KEY",
        &Control::default(),
    )
    .unwrap();
    assert!(!temp.exists());
    assert!(
        r.notices.iter().any(|n| matches!(
            n,
            crate::store::LockNotice::RemovedTemp { path: p, .. } if p == &temp
        )),
        "{path:?}: {:?}",
        r.notices
    );
}

#[test]
fn verify_counts_an_id_verified_but_never_planned_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _, id) = migrated(dir.path());
    let journal = crate::engine::state::migration_dir(&state, &id).join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let seq = last["seq"].as_u64().unwrap() + 1;
    // Only a damaged journal says this: an id verified that no plan holds.
    let line = serde_json::json!({
        "seq": seq,
        "at": last["at"],
        "event": "verified",
        "id": "env/NEVER_PLANNED",
    });
    std::fs::write(&journal, format!("{text}{line}\n")).unwrap();
    let r = verify(&state, &id, &KeyOptions::default()).unwrap();
    assert_eq!(r.verified, 2, "{r:?}");
    assert_eq!(r.failed, 1, "{r:?}");
    assert_eq!(r.failures[0].id.to_string(), "env/NEVER_PLANNED");
}
