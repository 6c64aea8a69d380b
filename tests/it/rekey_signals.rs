//! Signals to `credshift rekey` and `credshift resume` of a rekey (real
//! children): a second Ctrl-C exits at once (130) and what the journal
//! names next brings the store to one key; a Ctrl-C before the resume's
//! first batch changes nothing.

use crate::rekey_recovery::{interrupt, sigint_rows};
use crate::support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::laravel::payloads;
use support::{credshift, only_id, run};

/// Two SIGINTs, the second as soon as the first was delivered (two
/// pending SIGINTs would merge into one, and a fixed pause may outlast the
/// run), then the exit code and output. Sent once the batches are at their
/// largest (256 rows): the batch at hand and the rollback after it outlast
/// the moment between the two.
fn interrupt_twice(child: Child) -> (Option<i32>, String, String) {
    let pid = child.id();
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
    let start = std::time::Instant::now();
    while sigint_pending(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "SIGINT never delivered"
        );
        std::thread::yield_now();
    }
    interrupt(child)
}

/// Whether a SIGINT waits for delivery to `pid` (its /proc status masks).
fn sigint_pending(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .filter_map(|m| u64::from_str_radix(m.trim(), 16).ok())
        .any(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
}

fn spawn(cmd: &mut std::process::Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The rekey's journal text.
fn journal(state: &Path, id: &str) -> String {
    std::fs::read_to_string(state.join("migrations").join(id).join("rekey.jsonl")).unwrap()
}

/// A second Ctrl-C during `credshift rekey` exits at once with 130, as the
/// contract says; the journal is left to roll back, and `rollback` puts
/// every row back byte for byte.
#[test]
fn a_second_ctrl_c_during_a_rekey_exits_130_and_rollback_puts_every_row_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = sigint_rows(dir.path());
    let before = payloads(&db);
    let spec = format!("laravel:sqlite:{}", db.display());
    let key = dir.path().join("new.key");
    let child = spawn(
        credshift(&state)
            .env("APP_KEY", support::fragments_app_key())
            .args([
                "rekey",
                "--store",
                &spec,
                "--yes",
                "--json",
                "--generate-new-key",
            ])
            .arg(&key),
    );
    // Batches of 1, 2, 4, ... 128 rows done: the next is 256.
    support::wait_for_records(&state, "rekey.jsonl", "rekey_batch_done", 8);
    let (code, stdout, stderr) = interrupt_twice(child);
    assert_eq!(code, Some(130), "{stdout}{stderr}");
    assert!(
        stdout.is_empty(),
        "no report after the second signal: {stdout}"
    );
    let id = only_id(&state);
    let (out, stdout, stderr) = run(credshift(&state).args(["history", "--json"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(support::json(&stdout)[0]["status"], "interrupted");
    let (out, stdout, stderr) = run(credshift(&state)
        .env("APP_KEY", support::fragments_app_key())
        .args(["rollback", "--migration-id", &id, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(support::json(&stdout)["rolled_back"], true);
    assert!(
        payloads(&db) == before,
        "a row is not its old ciphertext again"
    );
}

/// A rekey of `sigint_rows` killed right after its second batch (rows 1
/// to 3 under the new key): its id and the new key's file.
fn killed_rekey(dir: &Path, state: &Path, db: &Path) -> (String, std::path::PathBuf) {
    let spec = format!("laravel:sqlite:{}", db.display());
    let key = dir.join("new.key");
    let (out, _, stderr) = run(credshift(state)
        .env("APP_KEY", support::fragments_app_key())
        .env("CREDSHIFT_CRASH_AT", "7")
        .args(["rekey", "--store", &spec, "--yes", "--generate-new-key"])
        .arg(&key));
    assert_eq!(out.status.code(), None, "not an abort: {stderr}");
    (only_id(state), key)
}

fn resume_cmd(state: &Path, id: &str, key: &Path) -> std::process::Command {
    let mut c = credshift(state);
    c.env("APP_KEY", support::fragments_app_key())
        .args(["resume", "--migration-id", id, "--yes", "--json"])
        .arg("--new-key-file")
        .arg(key);
    c
}

/// A second Ctrl-C during `credshift resume` exits at once with 130. What
/// the journal then allows brings the store to one key: `resume` when the
/// second signal came before the rollback began (the whole store under the
/// new key, which verify confirms), else only `rollback` (resume refuses
/// an unfinished rollback), and every row is its old ciphertext again.
#[test]
fn a_second_ctrl_c_during_a_resume_exits_130_and_the_store_ends_under_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = sigint_rows(dir.path());
    let before = payloads(&db);
    let (id, key) = killed_rekey(dir.path(), &state, &db);
    let child = spawn(&mut resume_cmd(&state, &id, &key));
    // The killed run's two batches, the resume's record of what it found,
    // then its batches of 1, 2, 4, ... 128 rows: the next is 256.
    support::wait_for_records(&state, "rekey.jsonl", "rekey_batch_done", 11);
    let (code, stdout, stderr) = interrupt_twice(child);
    assert_eq!(code, Some(130), "{stdout}{stderr}");
    let rolling_back = journal(&state, &id).contains("\"rekey_rollback_started\"");
    let (out, stdout, stderr) = run(&mut resume_cmd(&state, &id, &key));
    if rolling_back {
        assert!(!out.status.success(), "{stdout}{stderr}");
        assert!(stderr.contains("did not finish"), "{stderr}");
        let (out, stdout, stderr) = run(credshift(&state)
            .env("APP_KEY", support::fragments_app_key())
            .args(["rollback", "--migration-id", &id, "--yes", "--json"]));
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(
            payloads(&db) == before,
            "a row is not its old ciphertext again"
        );
    } else {
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert_eq!(support::json(&stdout)["status"], "completed");
        let now = payloads(&db);
        assert!(
            now.iter().zip(&before).all(|(a, b)| a != b),
            "a row not rekeyed"
        );
        let (out, stdout, stderr) = run(credshift(&state)
            .env("APP_KEY", support::fragments_app_key())
            .args(["verify", "--migration-id", &id, "--json"]));
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    }
}

/// Ctrl-C while the resume waits for its lock (here: holds it, with the
/// `CREDSHIFT_HOLD_LOCKS` test aid, before it reads anything) stops it
/// before its first batch: nothing is changed, neither the store nor the
/// journal; the report says so (cancelled, still interrupted, exit 1), and
/// a later resume finishes the rekey.
#[test]
fn ctrl_c_before_the_first_batch_of_a_resume_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = sigint_rows(dir.path());
    let before = payloads(&db);
    let (id, key) = killed_rekey(dir.path(), &state, &db);
    let killed = payloads(&db);
    let journal_before = journal(&state, &id);
    let hold = dir.path().join("hold");
    let child = spawn(resume_cmd(&state, &id, &key).env("CREDSHIFT_HOLD_LOCKS", &hold));
    let start = std::time::Instant::now();
    while !hold.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never took its locks"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    std::thread::sleep(Duration::from_millis(20));
    std::fs::remove_file(&hold).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let r = support::json(&stdout);
    assert_eq!(r["cancelled"], true, "{r}");
    assert_eq!(r["rolled_back"], false, "{r}");
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        stderr.contains("resume of the rekey cancelled")
            && stderr.contains("nothing was changed by this run"),
        "{stderr}"
    );
    assert!(
        payloads(&db) == killed,
        "the store is as the killed run left it"
    );
    assert_eq!(journal(&state, &id), journal_before);
    let (out, stdout, stderr) = run(&mut resume_cmd(&state, &id, &key));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let now = payloads(&db);
    assert!(
        now.iter().zip(&before).all(|(a, b)| a != b),
        "a row not rekeyed"
    );
}
