//! Issue 27, the recovery path on real migrations, without a terminal: the
//! app's event loop pumped by hand (keys in, the real engine executor's
//! events back), each screen drawn on a `TestBackend` at 60x15, 100x30 and
//! 200x50 and snapshotted. The migrations are made by the binary: one
//! interrupted (`CREDSHIFT_CRASH_AT`), one rolled back on its own
//! (`CREDSHIFT_FAULTS=write:...`), one completed with `--delete-source`,
//! and an interrupted one under a passphrase.
//!
//! Snapshots filter the migration ids, times and the temporary folder.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use credshift::tui::app::{App, Executor, Msg, Sink};
use credshift::tui::screens;
use credshift::tui::theme::Theme;
use credshift::tui::worker::EngineExecutor;
use credshift::unlock::KeyOptions;
use credshift::wizard::{Config, Confirm, Effect, Outcome, Step, Wizard};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use support::*;

const SIZES: [(u16, u16); 3] = [(60, 15), (100, 30), (200, 50)];
const NOW: i64 = 1_795_394_712_000;
const PASSPHRASE: &str = "recovery loop test passphrase, not a secret";

const SRC: &str = "ALPHA_KEY=sk-loop-recovery-alpha-000001\nBRAVO_KEY=sk-loop-recovery-bravo-000002\n\
CHARLIE_KEY=sk-loop-recovery-charlie-00003\nDELTA_KEY=sk-loop-recovery-delta-000004\n";
const DST: &str = "KEEP_KEY=target-value-kept-as-is-000005\n";

fn secrets() -> Vec<String> {
    SRC.lines()
        .chain(DST.lines())
        .map(|l| l.split_once('=').unwrap().1.to_string())
        .chain([PASSPHRASE.to_string()])
        .collect()
}

struct Case {
    tmp: tempfile::TempDir,
    state: PathBuf,
    src: String,
    dst: String,
}

/// Files under a fixed-length folder in /tmp, so cut paths cut alike on
/// every machine.
fn case() -> Case {
    let tmp = tempfile::Builder::new()
        .prefix("csloop")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(tmp.path().join("src.env"), SRC).unwrap();
    std::fs::write(tmp.path().join("dst.env"), DST).unwrap();
    Case {
        state: tmp.path().join("state"),
        src: format!("dotenv:{}", tmp.path().join("src.env").display()),
        dst: format!("dotenv:{}", tmp.path().join("dst.env").display()),
        tmp,
    }
}

/// Four items, interrupted after the first one landed (record 5).
fn interrupted(passphrase: bool) -> Case {
    let c = case();
    let mut cmd = migrate_cmd(&c.state, &c.src, &c.dst, &["--yes", "--json"]);
    cmd.env("CREDSHIFT_CRASH_AT", "5");
    if passphrase {
        cmd.env("CREDSHIFT_PASSPHRASE", PASSPHRASE);
    }
    let (out, _, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), None, "the crash did not fire: {stderr}");
    assert_eq!(contents(&c.dst).len(), 2);
    c
}

/// Every write fails: the engine rolls back on its own.
fn rolled_back() -> Case {
    let c = case();
    let mut cmd = migrate_cmd(&c.state, &c.src, &c.dst, &["--yes", "--json"]);
    cmd.env("CREDSHIFT_FAULTS", "write:env/*");
    let (out, _, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    c
}

/// Migrated, verified, and deleted from the source.
fn completed_and_cleaned() -> Case {
    let c = case();
    let (out, _, stderr) = run(migrate_cmd(
        &c.state,
        &c.src,
        &c.dst,
        &["--yes", "--json", "--delete-source"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(contents(&c.src).is_empty());
    c
}

fn status(c: &Case) -> String {
    let (_, stdout, _) = run(credshift(&c.state).args(["history", "--json"]));
    json(&stdout)[0]["status"].as_str().unwrap().to_string()
}

/// The app, the real executor, and the loop's channel, pumped by hand.
struct Loop {
    app: App,
    exec: EngineExecutor,
    rx: Receiver<Msg>,
    sink: Sink,
    exit: Option<Outcome>,
    tmp: String,
    /// Effects held back (not run) while set: a test can queue a quit
    /// behind an action before the engine sees either.
    held: Option<Vec<Effect>>,
}

impl Loop {
    fn new(c: &Case, passphrase_given: bool) -> Loop {
        let config = Config {
            recover: true,
            passphrase_given,
            state_dir: c.state.clone(),
            ..Config::default()
        };
        let opts = KeyOptions {
            passphrase: passphrase_given.then(|| credshift::credential::Secret::new(PASSPHRASE)),
            ..KeyOptions::default()
        };
        let (w, initial) = Wizard::new(config, NOW);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut l = Loop {
            app: App::new(w, Theme::plain()),
            exec: EngineExecutor::new(opts, c.state.clone()),
            rx,
            sink: Sink(tx),
            exit: None,
            tmp: c.tmp.path().display().to_string(),
            held: None,
        };
        l.run(initial);
        l.until("the history", |a| !a.wizard.recovery.history.is_empty());
        l
    }

    fn run(&mut self, effects: Vec<Effect>) {
        if let Some(h) = &mut self.held {
            h.extend(effects);
            return;
        }
        for e in effects {
            match e {
                Effect::Exit(o) => self.exit = Some(o),
                other => self.exec.execute(other, &self.sink),
            }
        }
    }

    fn key(&mut self, c: KeyCode) {
        let fx = self.app.on_key(KeyEvent::new(c, KeyModifiers::NONE));
        self.run(fx);
    }

    fn ch(&mut self, c: char) {
        self.key(KeyCode::Char(c));
    }

    /// Handle engine events until `done` holds (one minute at most).
    fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let end = Instant::now() + Duration::from_secs(60);
        while !done(&self.app) {
            assert!(Instant::now() < end, "waited a minute for {what}");
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Engine(e)) => {
                    let fx = self.app.handle(e);
                    self.run(fx);
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("the channel closed"),
            }
        }
    }

    /// Open the (only) migration's detail.
    fn open(&mut self) {
        self.key(KeyCode::Enter);
        self.until("the detail", |a| {
            a.wizard.step == Step::Detail && a.wizard.busy.is_none()
        });
    }

    /// Confirm the dialog and wait for the action's result (and the
    /// detail read again).
    fn confirm_and_wait(&mut self) {
        self.ch('y');
        self.until("the result", |a| {
            !a.wizard.recovering()
                && (a.wizard.recovery.result.is_some() || a.wizard.error.is_some())
        });
        // The detail is read again after the result.
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            if let Ok(Msg::Engine(e)) = self.rx.recv_timeout(Duration::from_millis(50)) {
                let fx = self.app.handle(e);
                self.run(fx);
            }
        }
    }

    fn text(&self, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| screens::render(&self.app, f)).unwrap();
        t.backend().to_string()
    }

    /// Every size, checked for secrets, snapshotted with ids, times and
    /// the temporary folder filtered.
    fn snap(&self, name: &str) {
        for (w, h) in SIZES {
            let text = self.text(w, h);
            for s in secrets() {
                assert!(!text.contains(&s), "{name}@{w}x{h} shows a secret");
            }
            let text = mask(&text.replace(&self.tmp, "[TMP]"));
            insta::with_settings!({
                snapshot_path => "../../snapshots",
                prepend_module_to_snapshot => false,
            }, {
                insta::assert_snapshot!(format!("{name}@{w}x{h}"), text);
            });
        }
    }

    fn screen(&self) -> String {
        self.text(200, 50)
    }
}

/// Migration ids and times replaced by placeholders (they change per run),
/// also where a dialog cuts them short. Pattern letters: `d` a digit, `h` a
/// lowercase hex digit; others literal.
fn mask(text: &str) -> String {
    const PATTERNS: [(&str, &str); 2] = [
        ("ddddddddTddddddZ-hhhhhh", "[MIGRATION-ID]"),
        ("dddd-dd-dd", "[TIME]"),
    ];
    let chars: Vec<char> = text.chars().collect();
    let fits = |at: usize, pat: &str| {
        pat.chars().enumerate().all(|(i, p)| {
            chars.get(at + i).is_some_and(|c| match p {
                'd' => c.is_ascii_digit(),
                'h' => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
                lit => *c == lit,
            })
        })
    };
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if let Some((pat, with)) = PATTERNS.iter().find(|(p, _)| fits(i, p)) {
            out.push_str(with);
            i += pat.chars().count();
            if *with == "[TIME]" {
                // The rest of the time, as much of it as shows.
                if matches!(chars.get(i), Some('T' | ' '))
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                {
                    i += 1;
                }
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, ':' | '.' | 'Z'))
                {
                    i += 1;
                }
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Why 4 and 2: an action a state does not allow is not offered and is
/// refused with its reason, before any confirmation (old main offered
/// every action everywhere, behind one generic sentence).
#[test]
fn an_interrupted_migration_offers_resume_rollback_verify_and_says_what_each_does() {
    let c = interrupted(false);
    let mut l = Loop::new(&c, false);
    l.open();
    l.snap("20-loop-interrupted-detail");
    let screen = l.screen();
    assert!(
        screen.contains("r resume") && screen.contains("b roll back"),
        "{screen}"
    );
    assert!(!screen.contains("t restore"), "{screen}");
    l.key(KeyCode::Tab);
    l.snap("20-loop-interrupted-items");
    let items = l.screen();
    assert!(
        items.contains("verified") && items.contains("env/ALPHA_KEY"),
        "{items}"
    );
    assert!(
        items.contains("planned") && items.contains("env/DELTA_KEY"),
        "{items}"
    );
    l.key(KeyCode::Tab);

    l.ch('r');
    l.snap("20-loop-interrupted-confirm-resume");
    let d = l.screen();
    assert!(
        d.contains("Write the 3 items not yet verified into dst.env"),
        "{d}"
    );
    assert!(
        d.contains("never replaced") && d.contains("Journaled"),
        "{d}"
    );
    l.key(KeyCode::Esc);
    l.ch('b');
    l.snap("20-loop-interrupted-confirm-rollback");
    assert!(
        l.screen()
            .contains("Remove the 1 item this migration wrote")
    );
    l.key(KeyCode::Esc);
    l.ch('v');
    l.snap("20-loop-interrupted-confirm-verify");
    l.key(KeyCode::Esc);
    l.ch('t');
    assert!(
        l.app.wizard.confirm.is_none(),
        "restore offered without a cleanup"
    );
    l.snap("20-loop-interrupted-restore-refused");
}

/// Why 1 and 4: q during a running resume asks first, then stops it after
/// the batch at hand and says what was done (from the journal), never
/// "nothing was changed"; the migration stays interrupted.
#[test]
fn quitting_during_a_running_resume_asks_then_reports_what_was_done() {
    let c = interrupted(false);
    let mut l = Loop::new(&c, false);
    l.open();
    l.ch('r');
    // The resume and the quit reach the engine together, as when a person
    // presses q right away: the cancel is there before its first batch.
    l.held = Some(Vec::new());
    l.ch('y');
    assert!(l.app.wizard.recovering());
    l.ch('q');
    assert!(matches!(
        l.app.wizard.confirm,
        Some(Confirm::QuitWhileRecovering { .. })
    ));
    assert!(l.exit.is_none(), "q quit at once");
    l.snap("21-loop-quit-during-resume");
    l.ch('y');
    let held = l.held.take().unwrap();
    assert!(
        matches!(
            held.as_slice(),
            [Effect::Recover { .. }, Effect::CancelMigration]
        ),
        "{held:?}"
    );
    l.run(held);
    let end = Instant::now() + Duration::from_secs(60);
    while l.exit.is_none() {
        assert!(Instant::now() < end, "no exit after the cancel");
        if let Ok(Msg::Engine(e)) = l.rx.recv_timeout(Duration::from_millis(50)) {
            let fx = l.app.handle(e);
            l.run(fx);
        }
    }
    let said = l.app.wizard.recovery.done_log.join("\n");
    assert!(
        !said.to_lowercase().contains("nothing was changed"),
        "{said}"
    );
    let (_, r) = l.app.wizard.recovery.result.clone().unwrap();
    assert!(r.cancelled, "{r:?}");
    assert!(said.contains("cancelled after the batch at hand"), "{said}");
    // What the line says is what the journal says.
    assert_eq!(status(&c), "interrupted");
    assert!(said.contains("the migration is interrupted"), "{said}");
    assert_eq!(contents(&c.dst).len() - 1, r.verified, "{said}");
}

/// Why 5: each result replaces the one before (a resume, then a verify,
/// then a rollback), and the actions follow the new state.
#[test]
fn resume_then_verify_then_rollback_each_result_replacing_the_last() {
    let c = interrupted(false);
    let mut l = Loop::new(&c, false);
    l.open();
    l.ch('r');
    l.confirm_and_wait();
    l.snap("22-loop-resume-result");
    let s = l.screen();
    assert!(s.contains("Resume done: 4 verified at the target"), "{s}");
    assert!(
        !s.contains("r resume"),
        "resume offered on a completed migration: {s}"
    );
    assert_eq!(contents(&c.dst).len(), 5);
    assert_eq!(status(&c), "completed");

    l.ch('v');
    l.confirm_and_wait();
    l.snap("22-loop-verify-result");
    let s = l.screen();
    assert!(s.contains("Verify 4 read back equal, 0 differ"), "{s}");
    assert!(!s.contains("Resume done"), "the old result stands: {s}");

    l.ch('b');
    l.confirm_and_wait();
    l.snap("22-loop-rollback-result");
    let s = l.screen();
    assert!(s.contains("Rollback done"), "{s}");
    assert!(!s.contains("Verify 4"), "{s}");
    assert_eq!(status(&c), "rolled_back");
    let left: Vec<String> = contents(&c.dst).into_keys().collect();
    assert_eq!(left, ["env/KEEP_KEY"]);
}

/// Why 3 and 4: a migration that rolled back on its own shows every item
/// with its full failure reason and offers no action.
#[test]
fn a_rolled_back_migration_shows_each_failure_in_full_and_offers_nothing() {
    let c = rolled_back();
    let mut l = Loop::new(&c, false);
    l.open();
    l.snap("23-loop-rolled-back-detail");
    for k in ['r', 'b', 'v', 't'] {
        l.ch(k);
        assert!(
            l.app.wizard.confirm.is_none(),
            "{k} offered on a rolled-back migration"
        );
    }
    l.key(KeyCode::Tab);
    l.snap("23-loop-rolled-back-items");
    // The failure reason under the cursor, whole.
    let d = l.app.wizard.recovery.detail.clone().unwrap();
    let reason = d.items[0].reason.clone().unwrap();
    let joined: String = l.screen().split_whitespace().collect();
    let want: String = reason.split_whitespace().collect();
    assert!(joined.contains(&want), "{reason} not shown whole");
}

/// Why 4 and 5: restore is offered where cleanup changed the source, says
/// which store, how many and that it skips changed values; its result
/// names the restore.
#[test]
fn a_cleaned_up_migration_offers_restore_and_puts_the_source_back() {
    let c = completed_and_cleaned();
    let mut l = Loop::new(&c, false);
    l.open();
    l.snap("24-loop-completed-detail");
    l.ch('t');
    // The restore is planned against the source first (on the worker).
    l.until("the restore's confirmation", |a| {
        a.wizard.confirm.is_some() || a.wizard.error.is_some()
    });
    assert!(l.app.wizard.confirm.is_some(), "{:?}", l.app.wizard.error);
    l.snap("24-loop-completed-confirm-restore");
    assert!(l.screen().contains("Restore the backup?"));
    let d = l
        .app
        .wizard
        .recovery
        .detail
        .as_ref()
        .unwrap()
        .confirm_text_with(
            credshift::wizard::RecoveryAction::Restore,
            l.app.wizard.recovery.restore_preview.as_ref(),
        )
        .join(" ");
    assert!(d.contains("into src.env (dotenv store"), "{d}");
    // The dry run's own counts: cleanup deleted all 4, nothing is there.
    assert!(d.contains("Write 4 items from the backup back"), "{d}");
    assert!(d.contains("0 already there"), "{d}");
    l.confirm_and_wait();
    l.snap("24-loop-restore-result");
    let s = l.screen();
    assert!(
        s.contains("Restore done: 4 put back into the source"),
        "{s}"
    );
    assert_eq!(contents(&c.src).len(), 4);
}

/// Why 2 and 3: a migration under a passphrase asks for it in place (the
/// wizard's passphrase screen), once, then runs the action.
#[test]
fn the_passphrase_is_asked_in_place_for_a_protected_migration() {
    let c = interrupted(true);
    let mut l = Loop::new(&c, false);
    l.open();
    l.ch('v');
    assert_eq!(l.app.wizard.step, Step::Passphrase);
    l.snap("25-loop-passphrase-in-place");
    // A typo first: proven wrong on the backup, asked again with the
    // reason (old main: every value "differs from the one migrated").
    for ch in "not the passphrase it ran with".chars() {
        l.ch(ch);
    }
    l.key(KeyCode::Enter);
    l.ch('y');
    l.until("the passphrase screen again", |a| {
        a.wizard.step == Step::Passphrase && a.wizard.passphrase.error.is_some()
    });
    l.snap("25-loop-passphrase-wrong");
    assert!(l.app.wizard.recovery.result.is_none());
    for ch in PASSPHRASE.chars() {
        l.ch(ch);
    }
    l.key(KeyCode::Enter);
    assert!(matches!(
        l.app.wizard.confirm,
        Some(Confirm::Recovery { .. })
    ));
    l.confirm_and_wait();
    let s = l.screen();
    assert!(s.contains("Verify 1 read back equal, 0 differ"), "{s}");
    // Asked once: the resume goes straight to its confirmation.
    l.ch('r');
    assert_eq!(l.app.wizard.step, Step::Detail);
    l.confirm_and_wait();
    assert_eq!(status(&c), "completed", "{}", l.screen());
    assert_eq!(contents(&c.dst).len(), 5);
    let _ = Path::new(&c.state);
}

/// Point 7b in the wizard: items chosen in the item view (Space) are
/// rolled back alone, journaled; the rest stays migrated and the item view
/// says which.
#[test]
fn items_chosen_in_the_item_view_are_rolled_back_alone() {
    let c = case();
    let (out, _, stderr) = run(migrate_cmd(&c.state, &c.src, &c.dst, &["--yes"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut l = Loop::new(&c, false);
    l.open();
    l.key(KeyCode::Tab);
    l.key(KeyCode::Down);
    l.ch(' ');
    l.key(KeyCode::Down);
    l.key(KeyCode::Down);
    l.ch(' ');
    l.ch('b');
    assert!(matches!(
        l.app.wizard.confirm,
        Some(Confirm::RollbackChosen { count: 2, .. })
    ));
    l.snap("26-loop-confirm-rollback-chosen");
    let text = l.app.wizard.partial_rollback_text().join(" ");
    assert!(
        text.contains("Remove only these 2 items") && text.contains("env/BRAVO_KEY, env/DELTA_KEY"),
        "{text}"
    );
    l.confirm_and_wait();
    l.snap("26-loop-rollback-chosen-result");
    let s = l.screen();
    assert!(
        s.contains("Rollback of the 2 chosen items done: 2 items remain migrated"),
        "{s}"
    );
    let left: Vec<String> = contents(&c.dst).into_keys().collect();
    assert_eq!(left, ["env/ALPHA_KEY", "env/CHARLIE_KEY", "env/KEEP_KEY"]);
    assert_eq!(status(&c), "completed");
    let states: Vec<String> = l
        .app
        .wizard
        .recovery
        .detail
        .as_ref()
        .unwrap()
        .items
        .iter()
        .map(|i| format!("{} {}", i.id, i.state.word()))
        .collect();
    assert_eq!(
        states,
        [
            "env/ALPHA_KEY verified",
            "env/BRAVO_KEY rolled back",
            "env/CHARLIE_KEY verified",
            "env/DELTA_KEY rolled back"
        ]
    );
}

/// Why 1, for every running action: q asks first (the dialog says what
/// stopping means for that action), yes stops it after the batch at hand,
/// and the exit line says what was done, from the journal.
#[test]
fn quitting_during_a_running_rollback_restore_or_verify_asks_and_reports() {
    for (key, name, said_want) in [
        (
            'b',
            "rollback",
            "Rollback cancelled after the batch at hand: not finished: 4 items",
        ),
        (
            't',
            "restore",
            "Restore rolled back (cancelled by the user)",
        ),
        (
            'v',
            "verify",
            "Verify cancelled after the batch at hand: 0 read back equal",
        ),
    ] {
        let c = completed_and_cleaned();
        let mut l = Loop::new(&c, false);
        l.open();
        l.ch(key);
        // A restore's confirmation waits for its dry run on the worker.
        l.until("the confirmation", |a| {
            a.wizard.confirm.is_some() || a.wizard.error.is_some()
        });
        l.held = Some(Vec::new());
        l.ch('y');
        l.ch('q');
        assert!(
            matches!(
                l.app.wizard.confirm,
                Some(Confirm::QuitWhileRecovering { .. })
            ),
            "{name}"
        );
        l.snap(&format!("27-loop-quit-during-{name}"));
        l.ch('y');
        let held = l.held.take().unwrap();
        l.run(held);
        let end = Instant::now() + Duration::from_secs(60);
        while l.exit.is_none() {
            assert!(Instant::now() < end, "{name}: no exit after the cancel");
            if let Ok(Msg::Engine(e)) = l.rx.recv_timeout(Duration::from_millis(50)) {
                let fx = l.app.handle(e);
                l.run(fx);
            }
        }
        let said = l.app.wizard.recovery.done_log.join("\n");
        assert!(said.contains(said_want), "{name}: {said}");
        assert!(
            !said.to_lowercase().contains("nothing was changed"),
            "{said}"
        );
        // The journal agrees: the target still holds all four, the source
        // none (the restore removed what it had put back).
        assert_eq!(contents(&c.dst).len(), 5, "{name}: KEEP and the four");
        assert!(contents(&c.src).is_empty(), "{name}");
    }
}
