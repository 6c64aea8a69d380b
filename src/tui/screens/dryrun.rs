//! Dry run: what the migration would do with each item, before it does.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Widget};

use super::{at_cursor, duration, list_table, para};
use crate::engine::types::{Action, ConflictPolicy};
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::widgets;

pub(crate) fn action_span<'a>(a: &Action, t: &Theme) -> Span<'a> {
    match a {
        Action::Copy => Span::styled("copy", t.ok()),
        Action::Overwrite => Span::styled("overwrite", t.warn()),
        Action::SkipIdentical => Span::styled("identical", t.dim()),
        Action::Conflict => Span::styled("conflict", t.warn()),
        Action::Invalid { .. } => Span::styled("invalid", t.bad()),
        Action::TooLong { .. } => Span::styled("too long", t.bad()),
    }
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let Some(plan) = &w.dry_run.plan else {
        para(vec![Line::styled("Planning…", t.dim())]).render(area, buf);
        return;
    };
    // Warnings and the item's facts are wrapped whole, never cut: their
    // rows are counted before the layout.
    let width = area.width as usize;
    let mut warn_lines: Vec<String> = plan
        .warnings
        .iter()
        .take(2)
        .flat_map(|w| widgets::wrap(&format!("! {w}"), width))
        .collect();
    if plan.warnings.len() > 2 {
        warn_lines.push(format!(
            "! and {} more warnings (in the report)",
            plan.warnings.len() - 2
        ));
    }
    let detail_lines: Vec<String> = plan
        .items
        .get(w.dry_run.cursor)
        .map(|it| {
            let mut facts = vec![it.preview.clone()];
            facts.extend(it.warnings.iter().cloned());
            if let Action::Invalid { reason } = &it.action {
                facts.push(reason.clone());
            }
            widgets::wrap(&format!("{}: {}", it.id, facts.join(" · ")), width)
        })
        .unwrap_or_default();
    let notes = warn_lines.len() as u16;
    let [summary, table, detail, note] = Layout::vertical([
        Constraint::Length(3 + notes),
        Constraint::Min(3),
        Constraint::Length(detail_lines.len().min(3) as u16),
        Constraint::Length(1),
    ])
    .areas(area);
    let c = &plan.counts;
    let policy = match plan.on_conflict {
        ConflictPolicy::Skip => "skip (keep the target's value)",
        ConflictPolicy::Overwrite => "overwrite (the old value is backed up first)",
    };
    let mut counts = vec![
        Span::styled(format!("{} copy", c.copy), t.ok()),
        Span::raw(format!(" · {} identical", c.skip_identical)),
    ];
    let mut push = |n: usize, what: &str, style| {
        if n > 0 {
            counts.push(Span::raw(" · "));
            counts.push(Span::styled(format!("{n} {what}"), style));
        }
    };
    push(c.overwrite, "overwrite", t.warn());
    push(c.conflict, "conflict", t.warn());
    push(c.invalid, "invalid", t.bad());
    push(c.too_long, "too long", t.bad());
    push(c.expired_warnings, "expired", t.warn());
    let mut lines = vec![
        Line::from(counts),
        Line::from(vec![
            Span::styled("on conflict: ", t.dim()),
            Span::raw(policy),
        ]),
        Line::from(vec![
            Span::styled("estimated time: ", t.dim()),
            Span::raw(duration(plan.estimated)),
            Span::styled(format!("   {} items in the plan", c.total), t.dim()),
        ]),
    ];
    for l in warn_lines {
        lines.push(Line::styled(l, t.warn()));
    }
    ratatui::widgets::Paragraph::new(lines).render(summary, buf);

    let rows = widgets::window(
        w.dry_run.cursor,
        plan.items.len(),
        table.height.saturating_sub(1) as usize,
    )
    .map(|i| {
        let it = &plan.items[i];
        let why = match &it.action {
            Action::Invalid { reason } => reason.clone(),
            Action::TooLong { limit, len } => format!("{len} > {limit} bytes"),
            _ => it.warnings.join("; "),
        };
        let row = Row::new(vec![
            Cell::from(it.id.to_string()),
            Cell::from(action_span(&it.action, t)),
            Cell::from(Span::styled(why, t.dim())),
        ]);
        at_cursor(row, i == w.dry_run.cursor, t)
    });
    list_table(
        rows,
        [
            Constraint::Fill(3),
            Constraint::Length(9),
            Constraint::Fill(2),
        ],
        vec!["Id", "Action", "Notes"],
        t,
    )
    .render(table, buf);

    ratatui::widgets::Paragraph::new(
        detail_lines
            .into_iter()
            .map(|l| Line::styled(l, t.dim()))
            .collect::<Vec<_>>(),
    )
    .render(detail, buf);
    let writes = c.copy + c.overwrite;
    Line::styled(
        format!("Enter writes {writes} items after a backup. Nothing written yet."),
        t.dim(),
    )
    .render(note, buf);
}
