//! Stopping and quitting during the read-back and the cleanup after a
//! run: the state machine's unit tests for `c`, `q` and Ctrl-C there.

use super::*;

/// The read-back and the cleanup after a run are engine jobs the wizard
/// can stop: c stops one after the batch at hand and stays; q asks, then
/// stops it and exits once it has; Ctrl-C (Terminate) does so without
/// asking. Once one is done, q quits at once again.
#[test]
fn quitting_during_verify_or_cleanup_cancels_it_and_exits_once_it_stopped() {
    // Verify: q asks, yes cancels, the report ends the program.
    let mut w = running();
    w.handle(Event::Progress(vec![Progress::Finished(Box::new(report(
        false,
    )))]));
    assert!(w.finishing());
    assert!(w.handle(Event::Quit).is_empty(), "asks first");
    assert!(matches!(
        w.confirm,
        Some(Confirm::QuitWhileFinishing { step: Step::Verify })
    ));
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::CancelMigration]), "{fx:?}");
    assert!(w.handle(Event::Terminate).is_empty(), "cancelled once");
    let mut cancelled = report(false);
    cancelled.cancelled = true;
    let fx = w.handle(Event::Verified(Box::new(cancelled.clone())));
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::Failed)]), "{fx:?}");

    // Verify: c stops it and stays on the screen; Enter goes on.
    let mut w = running();
    w.handle(Event::Progress(vec![Progress::Finished(Box::new(report(
        false,
    )))]));
    let fx = w.handle(Event::Cancel);
    assert!(matches!(fx.as_slice(), [Effect::CancelMigration]), "{fx:?}");
    assert!(w.handle(Event::Verified(Box::new(cancelled.clone()))).is_empty());
    assert!(!w.finishing());
    w.handle(Event::Enter);
    assert_eq!(w.step, Step::Cleanup);

    // Cleanup: Ctrl-C cancels without asking and exits once it stopped.
    w.handle(Event::Toggle);
    w.handle(Event::Enter);
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::Cleanup { .. }]), "{fx:?}");
    assert!(w.finishing());
    assert!(w.handle(Event::Back).is_empty());
    assert_eq!(w.step, Step::Cleanup, "no way back while it runs");
    let fx = w.handle(Event::Terminate);
    assert!(matches!(fx.as_slice(), [Effect::CancelMigration]), "{fx:?}");
    let fx = w.handle(Event::CleanedUp(Box::new(cancelled)));
    // Stopped, not complete: history says interrupted, so the exit is 1
    // (as a cancelled `resume`) and says how to finish it (audit10 M2).
    assert!(matches!(fx.as_slice(), [Effect::Exit(Outcome::Failed)]), "{fx:?}");
    assert_eq!(w.step, Step::Done);
    assert!(w.cleanup_stopped());
    let line = w.stopped_cleanup_summary().unwrap();
    assert!(line.starts_with("Cleanup stopped"), "{line}");
    assert!(
        line.contains("finish it with `credshift resume --migration-id m1`"),
        "{line}"
    );
    // Done: q quits at once.
    assert!(matches!(
        w.handle(Event::Quit).as_slice(),
        [Effect::Exit(_)]
    ));
}

/// The job ends while its Quit dialog is open: the dialog goes (its
/// question is moot), a Yes that still comes exits, and no leftover quit
/// flag ends a later cleanup before its Done screen; a Verify or Cleanup
/// that fails after q or Ctrl-C still exits (audit10 M3).
#[test]
fn a_quit_asked_as_verify_or_cleanup_ends_is_honoured_once() {
    let mut w = running();
    w.handle(Event::Progress(vec![Progress::Finished(Box::new(report(
        false,
    )))]));
    assert!(w.handle(Event::Quit).is_empty());
    assert!(matches!(w.confirm, Some(Confirm::QuitWhileFinishing { .. })));
    assert!(w.handle(Event::Verified(Box::new(report(false)))).is_empty());
    assert!(w.confirm.is_none(), "the moot dialog is closed");
    // A Yes for a dialog whose job already ended exits at once.
    w.confirm = Some(Confirm::QuitWhileFinishing { step: Step::Verify });
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::Exit(_)]), "{fx:?}");
    assert!(!w.run.quit_after, "nothing left to honour later");
    // So the cleanup that follows ends on its Done screen.
    w.handle(Event::Enter);
    assert_eq!(w.step, Step::Cleanup);
    w.handle(Event::Toggle);
    w.handle(Event::Enter);
    let fx = w.handle(Event::Yes);
    assert!(matches!(fx.as_slice(), [Effect::Cleanup { .. }]), "{fx:?}");
    let fx = w.handle(Event::CleanedUp(Box::new(report(false))));
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(w.step, Step::Done);
    assert!(!w.cleanup_stopped());

    // Ctrl-C, then the verify fails: it still exits, as a failure.
    for task in [Task::Verify, Task::Cleanup] {
        let mut w = running();
        w.handle(Event::Progress(vec![Progress::Finished(Box::new(report(
            false,
        )))]));
        if task == Task::Cleanup {
            w.handle(Event::Verified(Box::new(report(false))));
            w.handle(Event::Enter);
            w.handle(Event::Toggle);
            w.handle(Event::Enter);
            w.handle(Event::Yes);
            assert!(w.finishing());
        }
        let fx = w.handle(Event::Terminate);
        assert!(matches!(fx.as_slice(), [Effect::CancelMigration]), "{fx:?}");
        let fx = w.handle(Event::Failed {
            task,
            error: EngineError::Refused("the store went away".into()).into(),
        });
        assert!(
            matches!(fx.as_slice(), [Effect::Exit(Outcome::Failed)]),
            "{task:?}: {fx:?}"
        );
    }
}
