//! The start runs only the rows the dry run planned (issue #26: the rows
//! go to the screen and come back without a copy kept by the worker).

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::engine::{Action, Plan};
use crate::tui::app::Msg;

fn next_event(rx: &mpsc::Receiver<Msg>) -> Event {
    loop {
        if let Msg::Engine(e) = rx.recv_timeout(Duration::from_secs(120)).unwrap() {
            return e;
        }
    }
}

/// A planned migration of two `.env` items, and the executor holding it.
fn planned(dir: &std::path::Path) -> (EngineExecutor, Sink, mpsc::Receiver<Msg>, Effect, Plan) {
    let src = dir.join("src.env");
    std::fs::write(&src, "A_KEY=sk-aaaaaaaaaaaa\nB_KEY=sk-bbbbbbbbbbbb\n").unwrap();
    std::fs::write(dir.join("dst.env"), "").unwrap();
    let (from, to) = (
        StoreSpec::Dotenv(src),
        StoreSpec::Dotenv(dir.join("dst.env")),
    );
    let selection = vec![
        CredentialId::new("env", "A_KEY"),
        CredentialId::new("env", "B_KEY"),
    ];
    let mut ex = EngineExecutor::new(KeyOptions::default(), dir.join("state"));
    let (tx, rx) = mpsc::channel();
    let sink = Sink(tx);
    ex.execute(
        Effect::Plan {
            from: from.clone(),
            to: to.clone(),
            policy: ConflictPolicy::Skip,
            selection: selection.clone(),
        },
        &sink,
    );
    let plan = match next_event(&rx) {
        Event::PlanReady(p) => *p,
        other => panic!("{other:?}"),
    };
    assert_eq!(plan.items.len(), 2, "{plan:?}");
    let start = Effect::StartMigration {
        from,
        to,
        policy: ConflictPolicy::Skip,
        selection,
        plan_token: plan.token,
        plan_items: Vec::new(),
    };
    (ex, sink, rx, start, plan)
}

fn start_with(rows: impl FnOnce(&mut Vec<engine::PlanItem>)) -> Event {
    let dir = tempfile::tempdir().unwrap();
    let (mut ex, sink, rx, mut start, plan) = planned(dir.path());
    let Effect::StartMigration { plan_items, .. } = &mut start else {
        unreachable!()
    };
    *plan_items = plan.items;
    rows(plan_items);
    ex.execute(start, &sink);
    let ev = next_event(&rx);
    // The target is untouched when the start is refused.
    if matches!(ev, Event::Failed { .. }) {
        assert_eq!(std::fs::read_to_string(dir.path().join("dst.env")).unwrap(), "");
    }
    ev
}

fn refused(ev: Event) {
    match ev {
        Event::Failed {
            task: Task::Migrate,
            error: TaskError::PlanRowsChanged,
        } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_rows_planned_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ex, sink, rx, mut start, plan) = planned(dir.path());
    if let Effect::StartMigration { plan_items, .. } = &mut start {
        *plan_items = plan.items;
    }
    ex.execute(start, &sink);
    match next_event(&rx) {
        Event::MigrationStarted { .. } => {}
        other => panic!("{other:?}"),
    }
    loop {
        match next_event(&rx) {
            Event::Progress(p) if p.iter().any(|p| matches!(p, Progress::Finished(_))) => break,
            Event::Progress(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let out = std::fs::read_to_string(dir.path().join("dst.env")).unwrap();
    // The values shed after the plan were read again at the start.
    assert!(
        out.contains("A_KEY=sk-aaaaaaaaaaaa") && out.contains("B_KEY=sk-bbbbbbbbbbbb"),
        "{out}"
    );
}

#[test]
fn a_row_dropped_added_renamed_or_with_another_action_is_refused() {
    refused(start_with(|r| {
        r.pop();
    }));
    refused(start_with(|r| r.push(r[0].clone())));
    refused(start_with(|r| r[1].id = CredentialId::new("env", "C_KEY")));
    refused(start_with(|r| r.swap(0, 1)));
    refused(start_with(|r| r[0].action = Action::Overwrite));
}

/// A migration of the two items run to its end: the executor (its cancel
/// slot free again), the channel, the migration's id, the source file.
fn migrated(dir: &std::path::Path) -> (EngineExecutor, Sink, mpsc::Receiver<Msg>, engine::MigrationId) {
    let (mut ex, sink, rx, mut start, plan) = planned(dir);
    if let Effect::StartMigration { plan_items, .. } = &mut start {
        *plan_items = plan.items;
    }
    ex.execute(start, &sink);
    loop {
        match next_event(&rx) {
            Event::Progress(p) => {
                if let Some(Progress::Finished(r)) =
                    p.into_iter().find(|p| matches!(p, Progress::Finished(_)))
                {
                    assert_eq!(r.verified, 2, "{r:?}");
                    return (ex, sink, rx, r.migration_id);
                }
            }
            Event::MigrationStarted { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Issue #26's note: the wizard's verify and cleanup started with a fresh
/// cancel flag of their own, so a quit during them could not stop them.
/// A cancel that reaches the executor right after the start (as when a
/// person presses q, then y, at once) now stops each before its first
/// batch: the read-back reads nothing, the cleanup deletes nothing.
#[test]
fn quitting_during_verify_or_cleanup_stops_the_engine_job() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ex, sink, rx, id) = migrated(dir.path());
    let src = dir.path().join("src.env");
    let before = std::fs::read_to_string(&src).unwrap();

    ex.execute(Effect::Verify { id: id.clone() }, &sink);
    ex.execute(Effect::CancelMigration, &sink);
    match next_event(&rx) {
        Event::Verified(r) => {
            assert!(r.cancelled, "{r:?}");
            assert_eq!(r.verified, 0, "{r:?}");
        }
        other => panic!("{other:?}"),
    }

    ex.execute(Effect::Cleanup { id: id.clone() }, &sink);
    ex.execute(Effect::CancelMigration, &sink);
    match next_event(&rx) {
        Event::CleanedUp(r) => {
            assert!(r.cancelled, "{r:?}");
            assert_eq!(r.source_deleted, 0, "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&src).unwrap(), before, "nothing deleted");

    // Not cancelled, the same two run to their end (the flag is fresh).
    ex.execute(Effect::Verify { id: id.clone() }, &sink);
    match next_event(&rx) {
        Event::Verified(r) => assert!(!r.cancelled && r.verified == 2, "{r:?}"),
        other => panic!("{other:?}"),
    }
    ex.execute(Effect::Cleanup { id }, &sink);
    match next_event(&rx) {
        Event::CleanedUp(r) => assert!(!r.cancelled && r.source_deleted == 2, "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&src).unwrap(), "");
}
