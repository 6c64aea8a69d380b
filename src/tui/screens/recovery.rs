//! Recovery: the history of migrations, and one migration's journal.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Widget};

use super::{at_cursor, kv, list_table, para};
use crate::engine::items::{ItemState, SourceState};
use crate::engine::types::MigrationStatus;
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::widgets;
use crate::wizard::{Detail, Pane, RecoveryAction, result_line};

fn status_span<'a>(s: MigrationStatus, t: &Theme) -> Span<'a> {
    match s {
        MigrationStatus::Completed => Span::styled("completed", t.ok()),
        MigrationStatus::RolledBack => Span::styled("rolled back", t.warn()),
        MigrationStatus::Interrupted => Span::styled("interrupted", t.bad()),
        MigrationStatus::Failed => Span::styled("failed", t.bad()),
    }
}

pub fn render_history(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let [intro, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(2)]).areas(area);
    let text = if w.recovery.history.is_empty() && w.busy.is_none() {
        "No migrations recorded yet.".to_string()
    } else {
        format!(
            "{} migrations, newest first. Enter opens one.",
            w.recovery.history.len()
        )
    };
    Line::styled(text, t.dim()).render(intro, buf);
    // Two lines per row: id and time; from and to.
    let visible = (table.height.saturating_sub(1) / 2) as usize;
    let rows = widgets::window(w.recovery.cursor, w.recovery.history.len(), visible).map(|i| {
        let h = &w.recovery.history[i];
        let fw = (area.width as usize).saturating_sub(40).max(12);
        let row = Row::new(vec![
            Cell::from(Text::from(vec![
                Line::from(h.id.to_string()),
                Line::styled(h.started_at.clone(), t.dim()),
            ])),
            Cell::from(Text::from(vec![
                Line::from(widgets::truncate_left(&h.from, fw)),
                Line::from(format!(
                    "→ {}",
                    widgets::truncate_left(&h.to, fw.saturating_sub(2))
                )),
            ])),
            Cell::from(Text::from(vec![
                Line::from(status_span(h.status, t)),
                Line::styled(format!("{} ok {} failed", h.copied, h.failed), t.dim()),
            ])),
        ])
        .height(2);
        at_cursor(row, i == w.recovery.cursor, t)
    });
    list_table(
        rows,
        [
            Constraint::Length(24),
            Constraint::Fill(1),
            Constraint::Length(14),
        ],
        vec!["Id / started", "From / to", "Status"],
        t,
    )
    .render(table, buf);
}

pub fn render_detail(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let Some(d) = &w.recovery.detail else {
        para(vec![Line::styled("Reading the journal…", t.dim())]).render(area, buf);
        return;
    };
    let e = &d.entry;
    let c = d.counts();
    let small = area.height < 12;
    let backup = d
        .backup
        .as_ref()
        .map_or("none".to_string(), |b| b.display().to_string());
    let mut info = vec![
        Line::from(vec![
            Span::styled(e.id.to_string(), t.header()),
            Span::raw("  "),
            status_span(e.status, t),
            Span::styled(format!("  {}", e.started_at), t.dim()),
        ]),
        kv("from ", e.from.clone(), area.width, t),
        kv("to   ", e.to.clone(), area.width, t),
    ];
    if !small {
        info.push(kv("backup ", backup, area.width, t));
    }
    // Only the states some item is in: short enough for one line at 60
    // columns in the usual cases, wrapped (never cut) otherwise.
    let parts: Vec<String> = [
        (c.verified, "verified"),
        (c.failed, "failed"),
        (c.planned, "not yet written"),
        (c.written, "written, not checked"),
        (c.skipped, "skipped"),
        (c.conflict, "conflicts"),
        (c.rolled_back, "rolled back"),
        (c.rollback_failed, "rollback failed"),
        (c.source_deleted, "deleted from the source"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let counts = format!("{} items: {}", d.items.len(), parts.join(" · "));
    let width = area.width as usize;
    for l in widgets::wrap(&counts, width) {
        info.push(Line::styled(l, t.dim()));
    }
    // The action running, or the last one's result (it replaces the one
    // before), wrapped whole.
    let mut status: Vec<Line> = Vec::new();
    if let Some(action) = w.recovery.running {
        let p = &w.recovery.progress;
        let text = if w.recovery.cancel_requested {
            format!(
                "Stopping the {} after the batch at hand… ({} done so far)",
                action.noun(),
                p.done.max(p.undone)
            )
        } else {
            match action {
                _ if p.total == 0 && p.undone == 0 => format!(
                    "Starting the {}: opening the stores and the journal…",
                    action.noun()
                ),
                RecoveryAction::Rollback => {
                    format!("Rolling back: {} items undone so far…", p.undone)
                }
                _ => format!(
                    "Running the {}: {} of {} items done · {} verified · {} failed…",
                    action.noun(),
                    p.done,
                    p.total,
                    p.verified,
                    p.failed
                ),
            }
        };
        status.extend(
            widgets::wrap(&text, width)
                .into_iter()
                .map(|l| Line::styled(l, t.warn())),
        );
    } else if let Some((action, r)) = &w.recovery.result {
        let style = if r.cancelled || r.failed > 0 || !r.failures.is_empty() {
            t.bad()
        } else {
            t.ok()
        };
        status.extend(
            widgets::wrap(&result_line(*action, r, w.recovery.partial), width)
                .into_iter()
                .take(3)
                .map(|l| Line::styled(l, style)),
        );
    }
    let [info_a, status_a, pane_h, pane] = Layout::vertical([
        Constraint::Length(info.len() as u16),
        Constraint::Length(status.len() as u16),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    Paragraph::new(info).render(info_a, buf);
    Paragraph::new(status).render(status_a, buf);
    match w.recovery.pane {
        Pane::Journal => {
            Line::from(vec![
                Span::styled("Journal", t.header()),
                Span::styled(
                    format!("  {} records · Tab: items", d.timeline.len()),
                    t.dim(),
                ),
            ])
            .render(pane_h, buf);
            render_journal(app, d, pane, buf);
        }
        Pane::Items => {
            let filter = if w.recovery.filtering || !w.recovery.filter.is_empty() {
                format!(
                    "  filter: {}{}",
                    w.recovery.filter,
                    if w.recovery.filtering { "▏" } else { "" }
                )
            } else {
                "  / filter · Tab: journal".into()
            };
            Line::from(vec![
                Span::styled("Items", t.header()),
                Span::styled(filter, t.dim()),
            ])
            .render(pane_h, buf);
            render_items(app, d, pane, buf);
        }
    }
}

/// The journal, each record wrapped whole; from `journal_top`, or the
/// records that fit at the end.
fn render_journal(app: &App, d: &Detail, area: Rect, buf: &mut Buffer) {
    let t = &app.theme;
    let h = area.height as usize;
    let wrapped = |te: &crate::wizard::TimelineRow| -> Vec<Line<'static>> {
        let at = format!("{}  ", te.at);
        let room = (area.width as usize)
            .saturating_sub(at.chars().count())
            .max(8);
        widgets::wrap(&te.what, room)
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let lead = if i == 0 {
                    at.clone()
                } else {
                    " ".repeat(at.chars().count())
                };
                Line::from(vec![Span::styled(lead, t.dim()), Span::raw(part)])
            })
            .collect()
    };
    let n = d.timeline.len();
    let mut lines: Vec<Line> = Vec::new();
    match app.wizard.recovery.journal_top {
        Some(top) => {
            for te in d.timeline.iter().skip(top) {
                lines.extend(wrapped(te));
                if lines.len() >= h {
                    break;
                }
            }
            lines.truncate(h);
        }
        None => {
            // Follow the end: take records from the last back while they fit.
            let mut tail: Vec<Vec<Line>> = Vec::new();
            let mut used = 0;
            for te in d.timeline.iter().rev() {
                let l = wrapped(te);
                if used + l.len() > h && !tail.is_empty() {
                    break;
                }
                used += l.len();
                tail.push(l);
            }
            for l in tail.into_iter().rev() {
                lines.extend(l);
            }
            let skip = lines.len().saturating_sub(h);
            lines.drain(..skip);
        }
    }
    if n == 0 {
        lines.push(Line::styled("(empty journal)", t.dim()));
    }
    Paragraph::new(lines).render(area, buf);
}

/// Every planned item with its state, filtered; the one under the cursor
/// has its full reason below the list.
fn render_items(app: &App, d: &Detail, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let visible = w.recovery.visible_items();
    let cursor = w.recovery.item_cursor.min(visible.len().saturating_sub(1));
    let reason = visible
        .get(cursor)
        .and_then(|&i| d.items[i].reason.clone())
        .map(|r| widgets::wrap(&r, area.width as usize))
        .unwrap_or_default();
    let reason_h = (reason.len() as u16).min(area.height.saturating_sub(3) / 2);
    let [list, why] =
        Layout::vertical([Constraint::Min(2), Constraint::Length(reason_h)]).areas(area);
    let rows_h = list.height.saturating_sub(1) as usize;
    let rows = widgets::window(cursor, visible.len(), rows_h).map(|n| {
        let it = &d.items[visible[n]];
        let style = match it.state {
            ItemState::Verified => t.ok(),
            ItemState::Failed | ItemState::RollbackFailed => t.bad(),
            ItemState::Written | ItemState::Conflict => t.warn(),
            _ => t.dim(),
        };
        let source = match it.source {
            SourceState::Kept => "kept",
            SourceState::Deleted => "deleted",
            SourceState::DeleteFailed => "still there",
            SourceState::DeleteBegun => "check",
            SourceState::Restored => "restored",
        };
        let mark = if w.recovery.chosen.contains(&it.id) {
            "[x] "
        } else {
            ""
        };
        let row = Row::new(vec![
            Cell::from(Span::styled(format!("{mark}{}", it.state.word()), style)),
            Cell::from(it.id.to_string()),
            Cell::from(source),
            Cell::from(it.reason.clone().unwrap_or_default()),
        ]);
        at_cursor(row, n == cursor, t)
    });
    list_table(
        rows,
        [
            Constraint::Length(19),
            Constraint::Fill(2),
            Constraint::Length(11),
            Constraint::Fill(1),
        ],
        vec!["State", "Id", "Source", "Why"],
        t,
    )
    .render(list, buf);
    Paragraph::new(
        reason
            .into_iter()
            .map(|l| Line::styled(l, t.dim()))
            .collect::<Vec<_>>(),
    )
    .render(why, buf);
}
