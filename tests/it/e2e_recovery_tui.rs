//! End to end: the wizard's recovery path (`credshift recover`) in a real
//! pseudo-terminal (tmux), on a real interrupted migration (the binary
//! aborted by `CREDSHIFT_CRASH_AT`): Resume finishes it, Rollback undoes
//! it, Restore says where it writes before it does and skips a value
//! changed there since the backup.

use crate::support;

use std::path::{Path, PathBuf};

use support::tmux::Tmux;
use support::*;

const SESSION_END: &str = "SESSION-END";

const SRC: &str = "ALPHA_KEY=sk-e2e-recovery-alpha-00001\nBRAVO_KEY=sk-e2e-recovery-bravo-00002\n\
CHARLIE_KEY=sk-e2e-recovery-charlie-0003\nDELTA_KEY=sk-e2e-recovery-delta-00004\n";
const DST: &str = "KEEP_KEY=target-value-kept-as-is-05\n";

fn secrets() -> Vec<String> {
    SRC.lines()
        .chain(DST.lines())
        .map(|l| l.split_once('=').unwrap().1.to_string())
        .collect()
}

struct Case {
    tmp: tempfile::TempDir,
    state: PathBuf,
    src: String,
    dst: String,
}

/// A migration of four items interrupted after its first item (record 5:
/// `started`, `planned`, `backup_written`, `batch_begin`, `batch_done`).
fn interrupted() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let src_path = tmp.path().join("src.env");
    let dst_path = tmp.path().join("dst.env");
    std::fs::write(&src_path, SRC).unwrap();
    std::fs::write(&dst_path, DST).unwrap();
    let c = Case {
        state: tmp.path().join("state"),
        src: format!("dotenv:{}", src_path.display()),
        dst: format!("dotenv:{}", dst_path.display()),
        tmp,
    };
    let mut cmd = migrate_cmd(&c.state, &c.src, &c.dst, &["--yes", "--json"]);
    cmd.env("CREDSHIFT_CRASH_AT", "5");
    let (out, _, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), None, "the crash did not fire: {stderr}");
    assert_eq!(
        contents(&c.dst).len(),
        2,
        "one item landed before the crash"
    );
    c
}

fn status(state: &Path) -> String {
    let (_, stdout, _) = run(credshift(state).args(["history", "--json"]));
    json(&stdout)[0]["status"].as_str().unwrap().to_string()
}

/// `credshift recover` over the case's state dir, then its exit code.
fn recover_session(name: &str, c: &Case) -> Option<Tmux> {
    let bin = env!("CARGO_BIN_EXE_credshift");
    let tmpdir = c.tmp.path().join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let cmd = format!("'{bin}' recover; echo RECOVER-EXIT:$?; echo {SESSION_END}; sleep 60");
    let state = c.state.display().to_string();
    let tmpdir = tmpdir.display().to_string();
    Tmux::start(
        name,
        &[
            ("TMPDIR", tmpdir.as_str()),
            ("CREDSHIFT_STATE_DIR", state.as_str()),
            ("TERM", "xterm-256color"),
            ("NO_COLOR", "1"),
        ],
        &cmd,
    )
}

/// History -> the interrupted migration's journal -> `key`, confirmed,
/// until the result line `done` shows. Returns the confirmation dialog.
fn act(t: &Tmux, key: &str, confirm: &str, done: &str) -> String {
    let s = secrets();
    t.wait_for_all(&["Recovery: history", "interrupted"], &s);
    t.keys(&["Enter"]);
    t.walk(&[("Journal", key)], &s);
    let dialog = t.wait_for(confirm, &s);
    t.keys(&["y"]);
    t.wait_for(done, &s);
    t.keys(&["q"]);
    let end = t.wait_for(SESSION_END, &s);
    assert!(end.contains("RECOVER-EXIT:0"), "{end}");
    dialog
}

#[test]
fn the_wizard_resumes_an_interrupted_migration() {
    let c = interrupted();
    let Some(t) = recover_session("resume", &c) else {
        return;
    };
    act(&t, "r", "Resume?", "Done:");
    assert_eq!(contents(&c.dst).len(), 5);
    assert_eq!(status(&c.state), "completed");
}

#[test]
fn the_wizard_rolls_back_an_interrupted_migration() {
    let c = interrupted();
    let Some(t) = recover_session("rollback", &c) else {
        return;
    };
    // The journal's last record, not the result line: the stale lock's
    // "took over" note goes to stderr over the screen today.
    act(&t, "b", "Roll back?", "finished: RolledBack");
    let left: Vec<String> = contents(&c.dst).into_keys().collect();
    assert_eq!(left, ["env/KEEP_KEY"]);
    assert_eq!(status(&c.state), "rolled_back");
}

#[test]
fn the_wizard_restore_names_where_it_writes_and_keeps_a_changed_value() {
    let c = interrupted();
    // Since the backup: someone changed ALPHA in the source and removed DELTA.
    let src_path = c.tmp.path().join("src.env");
    let text = std::fs::read_to_string(&src_path).unwrap();
    let text = text
        .replace(
            "sk-e2e-recovery-alpha-00001",
            "changed-since-the-backup-alpha",
        )
        .replace("DELTA_KEY=sk-e2e-recovery-delta-00004\n", "");
    std::fs::write(&src_path, text).unwrap();
    let Some(t) = recover_session("restore", &c) else {
        return;
    };
    let dialog = act(&t, "t", "Restore the backup?", "Done:");
    assert!(dialog.contains("into dotenv:"), "{dialog}");
    assert!(dialog.contains("are skipped, not"), "{dialog}");
    let src = contents(&c.src);
    assert_eq!(
        src["env/ALPHA_KEY"].0, "changed-since-the-backup-alpha",
        "the changed value stays"
    );
    assert_eq!(src["env/DELTA_KEY"].0, "sk-e2e-recovery-delta-00004");
    assert_eq!(src.len(), 4);
}
