//! Rendering: a pure function of the app state. No I/O, no clock (the time
//! comes from the state), so a `TestBackend` frame is reproducible.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, Widget, Wrap};

use crate::tui::app::App;
use crate::tui::keymap;
use crate::tui::theme::Theme;
use crate::tui::widgets;
use crate::wizard::{Confirm, RecoveryAction, Step, Wizard};

mod assess;
mod cleanup;
mod consent;
pub(crate) mod done;
mod dryrun;
mod execute;
mod inventory;
mod passphrase;
mod recovery;
mod rekey;
mod verify;

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    render_to(app, area, frame.buffer_mut());
}

pub fn render_to(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let keys = keymap::footer(w);
    let fh = widgets::footer_height(&keys, area.width);
    let status_h = match (&w.error, &w.busy) {
        (Some(_), _) if matches!(w.step, Step::Done | Step::RekeyDone) => 0,
        // The whole message, wrapped (never cut), up to a third of the screen.
        (Some(e), _) => (widgets::wrap(&format!("error: {e}"), area.width as usize).len() as u16)
            .min((area.height / 3).max(1)),
        (None, Some(_)) => 1,
        (None, None) => 0,
    };
    let [head, body, status, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(status_h),
        Constraint::Length(fh),
    ])
    .areas(area);

    header(w, t, head, buf);
    match w.step {
        Step::Assess => assess::render(app, body, buf),
        Step::Consent => consent::render(app, body, buf),
        Step::Inventory => inventory::render(app, body, buf),
        Step::DryRun => dryrun::render(app, body, buf),
        Step::Passphrase => passphrase::render(app, body, buf),
        Step::Execute => execute::render(app, body, buf),
        Step::Verify => verify::render(app, body, buf),
        Step::Cleanup => cleanup::render(app, body, buf),
        Step::Done => done::render(app, body, buf),
        Step::History => recovery::render_history(app, body, buf),
        Step::Detail => recovery::render_detail(app, body, buf),
        Step::RekeyConsent => rekey::render_consent(app, body, buf),
        Step::RekeyDryRun => rekey::render_dry_run(app, body, buf),
        Step::RekeyKey => rekey::render_key(app, body, buf),
        Step::RekeyRun => rekey::render_run(app, body, buf),
        Step::RekeyVerify => rekey::render_verify(app, body, buf),
        Step::RekeyDone => rekey::render_done(app, body, buf),
    }
    if let Some(e) = &w.error {
        let lines: Vec<Line> = widgets::wrap(&format!("error: {e}"), area.width as usize)
            .into_iter()
            .enumerate()
            .map(|(i, l)| match (i, l.strip_prefix("error: ")) {
                (0, Some(rest)) => Line::from(vec![
                    Span::styled("error: ", t.bad()),
                    Span::raw(rest.to_string()),
                ]),
                _ => Line::from(l),
            })
            .collect();
        Paragraph::new(lines).render(status, buf);
    } else if let Some(b) = &w.busy {
        Paragraph::new(Line::styled(b.as_str(), t.dim())).render(status, buf);
    }
    widgets::footer(&keys, t).render(foot, buf);

    if let Some(c) = &w.confirm {
        confirm_dialog(w, c, t, area, buf);
    }
    if w.help {
        help(w, t, area, buf);
    }
}

fn header(w: &Wizard, t: &Theme, area: Rect, buf: &mut Buffer) {
    let step = match (w.step.number(), w.step.rekey_number()) {
        (Some(n), _) => format!("step {n}/8 · {}", w.step.title()),
        (None, Some(n)) => format!("step {n}/6 · {}", w.step.title()),
        (None, None) => w.step.title().to_string(),
    };
    let line = Line::from(vec![
        Span::styled("credshift", t.title()),
        Span::styled(" · ", t.dim()),
        Span::styled(step, t.header()),
    ]);
    let rule = Line::styled("─".repeat(area.width as usize), t.dim());
    Paragraph::new(vec![line, rule]).render(area, buf);
}

fn confirm_dialog(w: &Wizard, c: &Confirm, t: &Theme, area: Rect, buf: &mut Buffer) {
    let (title, text): (&str, Vec<String>) = match c {
        Confirm::QuitWhileRunning => (
            "Quit?",
            vec![
                "A migration is running.".into(),
                "Quitting cancels it and rolls back what it wrote; the source is not touched."
                    .into(),
            ],
        ),
        Confirm::QuitWhileRecovering { action } => ("Quit?", quit_recovery_text(w, *action)),
        Confirm::QuitWhileFinishing { step } => (
            "Quit?",
            if *step == crate::wizard::Step::Cleanup {
                vec![
                    "The cleanup is deleting the verified items from the source.".into(),
                    "Quitting stops it after the batch at hand: what it deleted is journaled, \
                     the rest stays in the source. Finish later with `credshift resume`."
                        .into(),
                ]
            } else {
                vec![
                    "The migration is complete; its items are being read back from the target."
                        .into(),
                    "Quitting stops the read-back after the batch at hand; nothing is written \
                     and the source is kept. Check later with `credshift verify`."
                        .into(),
                ]
            },
        ),
        Confirm::CancelRekey | Confirm::QuitWhileRekeying => {
            let (done, total) = w.rekey.progress.map_or((0, 0), |p| (p.done, p.total));
            (
                if *c == Confirm::CancelRekey {
                    "Cancel the rekey?"
                } else {
                    "Quit?"
                },
                vec![
                    format!("A rekey is running: {done} of {total} values rekeyed so far."),
                    format!(
                        "{} stops it after the batch at hand and puts every old ciphertext \
                         back, byte for byte: the store stays under the old key. A file is \
                         rewritten in one step: once under way it finishes, then is put back.",
                        if *c == Confirm::CancelRekey {
                            "Cancelling"
                        } else {
                            "Quitting"
                        }
                    ),
                ],
            )
        }
        Confirm::DeleteSource { count } => (
            "Delete from the source?",
            vec![
                format!("Delete the {count} verified credentials from {}?", spec_or(w.source_spec())),
                "They are in the target and in the encrypted backup. Items that were not verified stay.".into(),
            ],
        ),
        Confirm::RollbackChosen { id, count } => (
            "Roll back the chosen items?",
            std::iter::once(format!("Roll back {count} items of migration {id}?"))
                .chain(w.partial_rollback_text())
                .collect(),
        ),
        Confirm::Recovery { action, id } => (
            match action {
                RecoveryAction::Resume => "Resume?",
                RecoveryAction::Rollback => "Roll back?",
                RecoveryAction::Verify => "Verify?",
                RecoveryAction::Restore => "Restore the backup?",
            },
            std::iter::once(format!("{} migration {id}?", capitalize(action.label())))
                .chain(
                    w.recovery
                        .detail
                        .as_ref()
                        .map(|d| d.confirm_text_with(*action, w.recovery.restore_preview.as_ref()))
                        .unwrap_or_default(),
                )
                .collect(),
        ),
    };
    // Narrow screens give the dialog every column.
    let width = if area.width <= 64 {
        area.width
    } else {
        area.width.saturating_sub(2).min(72)
    };
    let inner = width.saturating_sub(2) as usize;
    let mut body: Vec<Line> = text
        .iter()
        .flat_map(|p| widgets::wrap(p, inner))
        .map(Line::from)
        .collect();
    let keys = Line::from(vec![
        Span::styled("y", t.key()),
        Span::raw(" yes    "),
        Span::styled("n", t.key()),
        Span::raw(" / "),
        Span::styled("Esc", t.key()),
        Span::raw(" no"),
    ]);
    // The answer keys always show; the blank line before them only when
    // there is room.
    if (body.len() as u16 + 4) <= area.height {
        body.push(Line::from(""));
    }
    body.push(keys);
    let height = (body.len() as u16 + 2).min(area.height);
    let rect = widgets::centered(area, width, height);
    widgets::dialog(buf, rect, title, body, t);
}

/// What quitting during a running recovery action does, and what it did
/// so far.
fn quit_recovery_text(w: &Wizard, action: RecoveryAction) -> Vec<String> {
    let p = &w.recovery.progress;
    match action {
        RecoveryAction::Resume => vec![
            format!(
                "A resume is running: {} items verified at the target by it so far.",
                p.verified
            ),
            "Quitting stops it after the batch at hand. What it wrote stays, journaled; the \
             migration stays interrupted: resume or roll back later. credshift says exactly \
             what was done before it exits."
                .into(),
        ],
        RecoveryAction::Rollback => vec![
            format!("A rollback is running: {} items undone so far.", p.undone),
            "Quitting stops it after the item at hand; the rest stays at the target and the \
             migration stays interrupted: roll back again to finish."
                .into(),
        ],
        RecoveryAction::Restore => vec![
            format!(
                "A restore is running: {} items put back so far.",
                p.verified
            ),
            "Quitting stops it after the batch at hand and removes what it wrote (it rolls \
             back, like a cancelled migration)."
                .into(),
        ],
        RecoveryAction::Verify => vec![
            "A verify is running; it only reads.".into(),
            "Quitting stops it; nothing is changed.".into(),
        ],
    }
}

fn help(w: &Wizard, t: &Theme, area: Rect, buf: &mut Buffer) {
    let keys = keymap::help(w);
    let kw = keys
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(4);
    // Narrow screens give the help every column.
    let width = if area.width <= 64 {
        area.width
    } else {
        area.width.saturating_sub(2).min(64)
    };
    let inner = width.saturating_sub(2) as usize;
    let room = inner.saturating_sub(kw + 2).max(8);
    let mut body: Vec<Line> = Vec::new();
    for (k, what) in &keys {
        for (i, part) in widgets::wrap(what, room).into_iter().enumerate() {
            let key = if i == 0 { *k } else { "" };
            body.push(Line::from(vec![
                Span::styled(format!("{key:<kw$}"), t.key()),
                Span::raw("  "),
                Span::raw(part),
            ]));
        }
    }
    let note = widgets::wrap(help_note(w), inner);
    if body.len() + note.len() + 3 > area.height as usize {
        // Too short for a table: the keys as one wrapped paragraph, so
        // every key and the closing sentence still show whole.
        let flow: Vec<String> = keys
            .iter()
            .map(|(k, what)| format!("{k}: {what}"))
            .collect();
        body = widgets::wrap(&flow.join(" · "), inner)
            .into_iter()
            .map(Line::from)
            .collect();
    }
    if body.len() + note.len() + 3 <= area.height as usize {
        body.push(Line::from(""));
    }
    for l in note {
        body.push(Line::styled(l, t.dim()));
    }
    let rect = widgets::centered(area, width, (body.len() as u16 + 2).min(area.height));
    widgets::dialog(buf, rect, &format!("Help: {}", w.step.title()), body, t);
}

/// The help's closing sentence: true for the screen and what happened.
fn help_note(w: &Wizard) -> &'static str {
    let deleted = w
        .cleanup
        .report
        .as_ref()
        .is_some_and(|r| r.source_deleted > 0);
    match w.step {
        Step::History | Step::Detail => {
            "Every action here is journaled and asks first; actions that do not fit the \
             migration's state are not offered."
        }
        Step::Done if deleted => {
            "Cleanup deleted the verified items from the source; the encrypted backup holds \
             them (credshift recover, then t, restores them)."
        }
        Step::Done if w.outcome == Some(crate::wizard::Outcome::RolledBack) => {
            "The migration was rolled back: the target is as it was; the source was not touched."
        }
        Step::Done => "The source was kept as it was; the encrypted backup holds every item.",
        Step::Cleanup => "Only verified items are deleted, and only after you confirm.",
        Step::RekeyConsent
        | Step::RekeyDryRun
        | Step::RekeyKey
        | Step::RekeyRun
        | Step::RekeyVerify
        | Step::RekeyDone => {
            "A rekey rewrites values in place under a new key, after a backup of the old \
             ciphertexts; cancelling, or `credshift rollback --migration-id ID` later, puts \
             them back byte for byte."
        }
        Step::Execute | Step::Verify => {
            "The source is not touched before cleanup; a cancel rolls back what was written."
        }
        _ => "Nothing is written before you consent; the source is kept until cleanup.",
    }
}

pub(crate) fn spec_or(s: Option<&crate::store::StoreSpec>) -> String {
    s.map_or_else(|| "(not chosen)".to_string(), |s| s.to_string())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `2026-09-21` from epoch milliseconds.
pub(crate) fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "?".into(), |d| d.format("%Y-%m-%d").to_string())
}

pub(crate) fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        if d.as_millis() == 0 {
            "0 s".into()
        } else {
            "< 1 s".into()
        }
    } else if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

/// `label value` on one line, the value cut from the left to fit (paths
/// keep their file name).
pub(crate) fn kv<'a>(label: &'a str, value: String, width: u16, t: &Theme) -> Line<'a> {
    let room = (width as usize).saturating_sub(label.chars().count());
    Line::from(vec![
        Span::styled(label, t.dim()),
        Span::raw(widgets::truncate_left(&value, room)),
    ])
}

/// A paragraph of wrapped lines.
/// A list's row, highlighted when the cursor is on it.
pub(crate) fn at_cursor<'a>(row: Row<'a>, on_cursor: bool, t: &Theme) -> Row<'a> {
    if on_cursor {
        row.style(t.cursor())
    } else {
        row
    }
}

/// A list as a table: the header styled, one space between columns (every
/// list screen draws alike).
pub(crate) fn list_table<'a>(
    rows: impl IntoIterator<Item = Row<'a>>,
    widths: impl IntoIterator<Item = Constraint>,
    header: Vec<&'a str>,
    t: &Theme,
) -> Table<'a> {
    Table::new(rows, widths)
        .header(Row::new(header).style(t.header()))
        .column_spacing(1)
}

pub(crate) fn para<'a>(lines: Vec<Line<'a>>) -> Paragraph<'a> {
    Paragraph::new(lines).wrap(Wrap { trim: false })
}

/// The end screen's title for an outcome.
pub fn done_title(outcome: Option<crate::wizard::Outcome>) -> &'static str {
    done::title(outcome)
}
