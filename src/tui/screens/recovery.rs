//! Recovery: the history of migrations, and one migration's journal.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Widget};

use super::{at_cursor, kv, list_table, para};
use crate::engine::types::MigrationStatus;
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::widgets;

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
    let result_h = u16::from(w.recovery.result.is_some());
    let [info, result, timeline] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(result_h),
        Constraint::Min(2),
    ])
    .areas(area);
    let backup = d
        .backup
        .as_ref()
        .map_or("none".to_string(), |b| b.display().to_string());
    Paragraph::new(vec![
        Line::from(vec![
            Span::styled(e.id.to_string(), t.header()),
            Span::raw("  "),
            status_span(e.status, t),
        ]),
        kv("started ", e.started_at.clone(), area.width, t),
        kv("from    ", e.from.clone(), area.width, t),
        kv("to      ", e.to.clone(), area.width, t),
        kv("backup  ", backup, area.width, t),
        kv(
            "items   ",
            format!("{} copied, {} failed", e.copied, e.failed),
            area.width,
            t,
        ),
    ])
    .render(info, buf);
    if let Some(r) = &w.recovery.result {
        let (text, style) = if r.rolled_back {
            (
                "Rolled back: what it wrote was removed, what it overwrote restored.".to_string(),
                t.warn(),
            )
        } else if r.failed > 0 {
            (format!("Done with {} failures.", r.failed), t.bad())
        } else {
            (
                format!(
                    "Done: {} copied, {} verified, {} skipped.",
                    r.copied, r.verified, r.skipped
                ),
                t.ok(),
            )
        };
        Line::styled(text, style).render(result, buf);
    }
    let [th, tl] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(timeline);
    Line::styled("Journal", t.header()).render(th, buf);
    let h = tl.height as usize;
    let lines: Vec<Line> = d
        .timeline
        .iter()
        .skip(d.timeline.len().saturating_sub(h))
        .map(|te| {
            let room = (tl.width as usize).saturating_sub(te.at.chars().count() + 2);
            Line::from(vec![
                Span::styled(format!("{}  ", te.at), t.dim()),
                Span::raw(widgets::truncate(&te.what, room)),
            ])
        })
        .collect();
    Paragraph::new(lines).render(tl, buf);
}
