//! Keys to intents. The same table drives the footer and the help, so what a
//! screen says and what it does cannot drift apart.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::wizard::{Event, RecoveryAction, Step, Wizard};

/// What a key press means on the current screen.
#[derive(Debug, Clone)]
pub enum Input {
    Event(Event),
    /// A key for the focused passphrase field.
    Field(KeyEvent),
    /// Enter in a passphrase field.
    FieldEnter,
    /// Tab / arrows: the other passphrase field.
    FieldSwitch,
    Ignore,
}

pub fn map(key: KeyEvent, w: &Wizard) -> Input {
    if key.kind == KeyEventKind::Release {
        return Input::Ignore;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        // Ctrl-C is quit everywhere (and asks first while a migration runs).
        return Input::Event(Event::Quit);
    }
    if w.help {
        return Input::Event(match key.code {
            KeyCode::Char('q') => Event::Quit,
            _ => Event::Back,
        });
    }
    if w.confirm.is_some() {
        return match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Input::Event(Event::Yes),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Char('q') => Input::Event(Event::No),
            KeyCode::Esc => Input::Event(Event::Back),
            _ => Input::Ignore,
        };
    }
    if w.step == Step::Passphrase {
        return match key.code {
            KeyCode::Enter => Input::FieldEnter,
            KeyCode::Esc => Input::Event(Event::Back),
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => Input::FieldSwitch,
            _ => Input::Field(key),
        };
    }
    if (w.step == Step::Inventory && w.inventory.editing)
        || (w.step == Step::Detail && w.recovery.filtering)
        || (w.step == Step::RekeyKey && w.rekey.editing)
    {
        return Input::Event(match key.code {
            KeyCode::Enter => Event::Enter,
            KeyCode::Esc => Event::Back,
            KeyCode::Backspace => Event::FilterBackspace,
            KeyCode::Char(c) if !ctrl => Event::FilterChar(c),
            _ => return Input::Ignore,
        });
    }
    let ev = match key.code {
        KeyCode::Up | KeyCode::Char('k') => Event::Up,
        KeyCode::Down | KeyCode::Char('j') => Event::Down,
        KeyCode::PageUp => Event::PageUp,
        KeyCode::PageDown => Event::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Event::Home,
        KeyCode::End | KeyCode::Char('G') => Event::End,
        KeyCode::Enter => Event::Enter,
        KeyCode::Esc => Event::Back,
        KeyCode::Char('q') => Event::Quit,
        KeyCode::Char('?') => Event::Help,
        KeyCode::Char('y') => Event::Yes,
        KeyCode::Char('n') => Event::No,
        KeyCode::Tab | KeyCode::BackTab => Event::SwitchPick,
        KeyCode::Char(' ') => Event::Toggle,
        KeyCode::Char(c) => match (w.step, c) {
            (Step::Consent | Step::RekeyConsent, 'd') => Event::Defer,
            (Step::Assess, 'r') => Event::Rekey,
            (Step::RekeyRun, 'c') => Event::Cancel,
            (Step::Inventory, 'a') => Event::ToggleAll,
            (Step::Inventory, '/') => Event::FilterStart,
            (Step::Inventory, 'r') => Event::Reveal,
            (Step::DryRun, 'p') => Event::TogglePolicy,
            (Step::Execute, 'c') => Event::Cancel,
            (Step::Verify | Step::Cleanup, 'c') if w.busy.is_some() => Event::Cancel,
            (Step::Assess | Step::Consent, 'h') => Event::OpenRecovery,
            (Step::Detail, 'r') => Event::Recovery(RecoveryAction::Resume),
            (Step::Detail, 'b') => Event::Recovery(RecoveryAction::Rollback),
            (Step::Detail, 'v') => Event::Recovery(RecoveryAction::Verify),
            (Step::Detail, 't') => Event::Recovery(RecoveryAction::Restore),
            (Step::Detail, '/') => Event::FilterStart,
            _ => return Input::Ignore,
        },
        _ => return Input::Ignore,
    };
    Input::Event(ev)
}

/// The keys the current screen answers to, shortest first: `(key, what)`.
pub fn footer(w: &Wizard) -> Vec<(&'static str, &'static str)> {
    screen_keys(w, true)
}

fn screen_keys(w: &Wizard, overlays: bool) -> Vec<(&'static str, &'static str)> {
    if overlays && w.help {
        return vec![("any key", "close help"), ("q", "quit")];
    }
    if overlays && w.confirm.is_some() {
        return vec![("y", "yes"), ("n/Esc", "no")];
    }
    let mut k: Vec<(&str, &str)> = match w.step {
        Step::Assess => {
            let mut v = vec![
                ("↑↓", "move"),
                ("Enter", "choose"),
                ("Tab", "source/target"),
                ("Esc", "back"),
                ("h", "recovery"),
            ];
            if w.can_rekey_at_cursor() {
                v.push(("r", "rekey this store"));
            }
            v
        }
        Step::Consent => vec![
            ("y", "consent"),
            ("d", "defer"),
            ("Esc", "back"),
            ("h", "recovery"),
        ],
        Step::Inventory if w.inventory.editing => {
            vec![("type", "filter"), ("Enter", "keep"), ("Esc", "clear")]
        }
        Step::Inventory => vec![
            ("↑↓", "move"),
            ("Space", "toggle"),
            ("a", "all"),
            ("/", "filter"),
            ("r", "reveal 30 s"),
            ("Enter", "dry run"),
            ("Esc", "back"),
        ],
        Step::DryRun => vec![
            ("↑↓", "move"),
            ("p", "conflicts: skip/overwrite"),
            ("Enter", "migrate"),
            ("Esc", "back"),
        ],
        Step::Passphrase => vec![
            ("type", "passphrase"),
            ("Tab", "next field"),
            ("Enter", "accept"),
            ("Esc", "back"),
        ],
        Step::Execute if w.running() && !w.run.cancel_requested && w.run.rolling_back.is_none() => {
            vec![("c", "cancel and roll back")]
        }
        Step::Execute => vec![],
        Step::Verify | Step::Cleanup if w.finishing() && !w.run.cancel_requested => {
            vec![("c", "stop after the batch at hand")]
        }
        Step::Verify | Step::Cleanup if w.finishing() => vec![],
        Step::Verify => vec![("↑↓", "move"), ("Enter", "cleanup")],
        Step::Cleanup => vec![
            ("Space", "keep/delete source"),
            ("Enter", "finish"),
            ("Esc", "back"),
        ],
        Step::Done | Step::RekeyDone => vec![("Enter", "exit")],
        Step::RekeyConsent => vec![("y", "consent"), ("d", "defer"), ("Esc", "back")],
        Step::RekeyDryRun if w.rekey.plan.is_none() => vec![("Esc", "back")],
        Step::RekeyDryRun => vec![("Enter", "choose the new key"), ("Esc", "back")],
        Step::RekeyKey if w.rekey.editing => vec![
            ("type", "path"),
            ("Enter", "rekey"),
            ("Esc", "back to the choices"),
        ],
        Step::RekeyKey => vec![("↑↓", "move"), ("Enter", "choose"), ("Esc", "back")],
        Step::RekeyRun if w.rekey.running && !w.rekey.cancel_requested => {
            vec![("c", "cancel and put the old key back")]
        }
        Step::RekeyRun => vec![],
        Step::RekeyVerify => vec![("Enter", "next steps")],
        Step::History => {
            let mut v = vec![("↑↓", "move"), ("Enter", "open")];
            if !w.config.recover {
                v.push(("Esc", "back"));
            }
            v
        }
        Step::Detail if w.recovery.filtering => {
            vec![("type", "filter"), ("Enter", "keep"), ("Esc", "clear")]
        }
        Step::Detail if w.recovering() => vec![],
        Step::Detail => {
            let mut v = vec![
                ("↑↓", "scroll"),
                ("Tab", "items/journal"),
                ("/", "filter items"),
            ];
            let offers_rollback = w
                .recovery
                .detail
                .as_ref()
                .is_some_and(|d| d.refusal(RecoveryAction::Rollback).is_none());
            if w.recovery.pane == crate::wizard::Pane::Items && offers_rollback {
                v.push(("Space", "choose for rollback"));
            }
            // Only the actions that fit the migration's state.
            for a in w.recovery.detail.iter().flat_map(|d| d.actions()) {
                v.push(match a {
                    RecoveryAction::Resume => ("r", "resume"),
                    RecoveryAction::Rollback if !w.recovery.chosen.is_empty() => {
                        ("b", "roll back the chosen")
                    }
                    RecoveryAction::Rollback => ("b", "roll back"),
                    RecoveryAction::Verify => ("v", "verify"),
                    RecoveryAction::Restore => ("t", "restore backup"),
                });
            }
            v.push(("Esc", "back"));
            v
        }
    };
    if w.step == Step::Detail && w.recovering() {
        k.push(("q", "stop after this batch and quit"));
        return k;
    }
    if w.step != Step::Passphrase
        && !(w.step == Step::Inventory && w.inventory.editing)
        && !(w.step == Step::Detail && w.recovery.filtering)
        && !(w.step == Step::RekeyKey && w.rekey.editing)
    {
        k.push(("?", "help"));
        k.push(("q", "quit"));
    }
    k
}

/// Everything the help overlay lists for the current screen.
pub fn help(w: &Wizard) -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    let mut list = false;
    for (key, what) in screen_keys(w, false) {
        match key {
            "?" | "q" => {}
            "↑↓" => {
                list = true;
                v.push(("↑↓ j k", what));
            }
            _ => v.push((key, what)),
        }
    }
    if list {
        v.push(("PgUp PgDn", "a page"));
        v.push(("Home End g G", "first / last"));
    }
    v.push((
        "q Ctrl-C",
        "quit (asks first while a migration, resume, rollback or restore runs)",
    ));
    v.push(("?", "this help"));
    v
}
