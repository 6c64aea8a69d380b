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
    recover_session_with(name, c, "")
}

/// [`recover_session`] with a command prefix (strace, to slow it down).
fn recover_session_with(name: &str, c: &Case, prefix: &str) -> Option<Tmux> {
    let bin = env!("CARGO_BIN_EXE_credshift");
    let tmpdir = c.tmp.path().join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let cmd =
        format!("{prefix}'{bin}' recover; echo RECOVER-EXIT:$?; echo {SESSION_END}; sleep 60");
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
    act_on(t, "interrupted", key, confirm, done)
}

fn act_on(t: &Tmux, status: &str, key: &str, confirm: &str, done: &str) -> String {
    let s = secrets();
    t.wait_for_all(&["Recovery: history", status], &s);
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
    act(&t, "r", "Resume?", "Resume done:");
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

/// Restore is offered where cleanup changed the source: it names the
/// store, puts back what cleanup deleted, and skips a value someone wrote
/// there since.
#[test]
fn the_wizard_restore_names_where_it_writes_and_keeps_a_changed_value() {
    let c = interrupted();
    // Finish it with a cleanup: the four items leave the source.
    let (out, _, stderr) =
        run(credshift(&c.state).args(["resume", "--migration-id", &history_id(&c.state), "--yes"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Ids sort by their start second: the next one must start later to
    // be listed first.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (out, _, stderr) = run(migrate_cmd(
        &c.state,
        &c.src,
        &format!("dotenv:{}", c.tmp.path().join("other.env").display()),
        &["--yes", "--delete-source"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(contents(&c.src).is_empty());
    // Since the backup: someone wrote a new ALPHA into the source.
    std::fs::write(
        c.tmp.path().join("src.env"),
        "ALPHA_KEY=changed-since-the-backup-alpha\n",
    )
    .unwrap();
    let Some(t) = recover_session("restore", &c) else {
        return;
    };
    // The newest migration (the one with the cleanup) is listed first.
    let dialog = act_on(&t, "completed", "t", "Restore the backup?", "Restore done:");
    assert!(dialog.contains("src.env (dotenv store"), "{dialog}");
    // The restore's dry run: what it writes, and the changed value by id.
    let flat: String = dialog
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect();
    assert!(flat.contains("Write3itemsfromthebackup"), "{dialog}");
    assert!(
        flat.contains("1changedsincethebackup:skipped,notoverwritten:env/ALPHA_KEY"),
        "{dialog}"
    );
    let src = contents(&c.src);
    assert_eq!(
        src["env/ALPHA_KEY"].0, "changed-since-the-backup-alpha",
        "the changed value stays"
    );
    assert_eq!(src["env/DELTA_KEY"].0, "sk-e2e-recovery-delta-00004");
    assert_eq!(src.len(), 4);
}

fn history_id(state: &Path) -> String {
    let (_, stdout, _) = run(credshift(state).args(["history", "--json"]));
    let v = json(&stdout);
    v.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every journal fsync of the wizard takes 0.4 s longer (strace), so a
/// resume is still running when q is pressed. `None` without strace.
fn slow_journal_prefix() -> Option<&'static str> {
    const PREFIX: &str = "strace -f -qq -o /dev/null -e trace=fdatasync \
                          -e inject=fdatasync:delay_exit=400000 ";
    let works = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{PREFIX} true"))
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        Some(PREFIX)
    } else {
        support::skip_without("strace", "not installed or not allowed to trace");
        None
    }
}

/// Issue 27, point 1: q during a running resume asks first; yes stops it
/// after the batch at hand and credshift says what was done, as the
/// journal says it, never "nothing was changed".
#[test]
fn quitting_a_running_resume_asks_and_says_what_was_done() {
    let Some(prefix) = slow_journal_prefix() else {
        return;
    };
    let c = interrupted();
    let Some(t) = recover_session_with("quitresume", &c, prefix) else {
        return;
    };
    let s = secrets();
    t.wait_for_all(&["Recovery: history", "interrupted"], &s);
    t.keys(&["Enter"]);
    t.walk(&[("Journal", "r"), ("Resume?", "y")], &s);
    t.wait_for("the resume", &s);
    t.keys(&["q"]);
    let dialog = t.wait_for("A resume is running", &s);
    assert!(dialog.contains("Quit?"), "{dialog}");
    t.keys(&["y"]);
    let end = t.wait_for(SESSION_END, &s);
    assert!(!end.contains("nothing was changed"), "{end}");
    assert!(end.contains("cancelled after the batch at hand"), "{end}");
    assert!(end.contains("RECOVER-EXIT:1"), "{end}");
    assert_eq!(status(&c.state), "interrupted");
    // The line's count is the journal's: the target holds KEEP plus them.
    let n = contents(&c.dst).len() - 1;
    assert!(
        end.contains(&format!("{n} items now verified")),
        "{n}: {end}"
    );
}

/// Issue 27, point 3: `credshift verify` on a terminal asks for the
/// passphrase of a protected migration (none in the environment), and
/// refuses clearly without a terminal.
#[test]
fn verify_prompts_for_the_passphrase_on_a_terminal() {
    const PASS: &str = "e2e recovery passphrase, not a secret";
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.env");
    std::fs::write(&src, SRC).unwrap();
    let state = tmp.path().join("state");
    let (out, _, stderr) = run(migrate_cmd(
        &state,
        &format!("dotenv:{}", src.display()),
        &format!("dotenv:{}", tmp.path().join("dst.env").display()),
        &["--yes"],
    )
    .env("CREDSHIFT_PASSPHRASE", PASS));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let id = history_id(&state);
    // No terminal: refused before anything, naming how to give it.
    let (out, _, stderr) = run(credshift(&state).args(["verify", "--migration-id", &id]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--passphrase-file"), "{stderr}");
    let bin = env!("CARGO_BIN_EXE_credshift");
    let cmd = format!(
        "'{bin}' verify --migration-id {id}; echo VERIFY-EXIT:$?; echo {SESSION_END}; sleep 60"
    );
    let st = state.display().to_string();
    let Some(t) = Tmux::start(
        "verifyprompt",
        &[
            ("CREDSHIFT_STATE_DIR", st.as_str()),
            ("TERM", "xterm-256color"),
        ],
        &cmd,
    ) else {
        return;
    };
    let mut s = secrets();
    s.push(PASS.to_string());
    t.wait_for(&format!("Passphrase for migration {id}"), &s);
    t.type_text(PASS);
    t.keys(&["Enter"]);
    let end = t.wait_for(SESSION_END, &s);
    assert!(end.contains("VERIFY-EXIT:0"), "{end}");
    assert!(end.contains("verified 4"), "{end}");
}
