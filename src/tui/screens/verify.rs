//! Verify: the result for each item, read back from the target.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Widget};

use super::{at_cursor, list_table, para};
use crate::tui::app::App;
use crate::tui::widgets;
use crate::wizard::ItemOutcome;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let [summary, table] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(area);
    let count = |f: fn(&ItemOutcome) -> bool| w.run.outcomes.iter().filter(|o| f(o)).count();
    let verified = w.verified_count();
    let skipped = count(|o| matches!(o, ItemOutcome::Skipped(_)));
    let failed = count(|o| matches!(o, ItemOutcome::Failed(_)));
    let mut first = vec![
        Span::styled(format!("{verified} verified"), t.ok()),
        Span::raw(format!(" · {skipped} skipped")),
        Span::raw(" · "),
        Span::styled(
            format!("{failed} failed"),
            if failed > 0 { t.bad() } else { t.text() },
        ),
    ];
    let second = match &w.verify.report {
        Some(r) if r.cancelled => Line::styled(
            format!(
                "Read-back stopped after the batch at hand: {} read back equal, {} differ.",
                r.verified,
                r.failures.len()
            ),
            t.warn(),
        ),
        Some(r) if r.failures.is_empty() => Line::styled(
            format!(
                "Read back {} items from the target: all match the source.",
                r.verified
            ),
            t.ok(),
        ),
        Some(r) => Line::styled(
            format!(
                "{} items differ from the source when read back.",
                r.failures.len()
            ),
            t.bad(),
        ),
        None => Line::styled("Reading back…", t.dim()),
    };
    if let Some(id) = &w.run.id {
        first.push(Span::styled(format!("   migration {id}"), t.dim()));
    }
    para(vec![Line::from(first), second]).render(summary, buf);

    let items = &w.run.items;
    let mismatch = |id: &crate::credential::CredentialId| {
        w.verify
            .report
            .as_ref()
            .and_then(|r| r.failures.iter().find(|f| &f.id == id))
    };
    let rows = widgets::window(
        w.verify.cursor,
        w.run.outcomes.len().min(items.len()),
        table.height.saturating_sub(1) as usize,
    )
    .map(|i| {
        let id = &items[i];
        let (res, why) = match (mismatch(id), &w.run.outcomes[i]) {
            (Some(f), _) => (Span::styled("mismatch", t.bad()), f.error.clone()),
            (None, ItemOutcome::Verified) => (Span::styled("verified", t.ok()), String::new()),
            (None, ItemOutcome::Written) => {
                (Span::styled("written", t.warn()), "not read back".into())
            }
            (None, ItemOutcome::Skipped(r)) => (Span::styled("skipped", t.dim()), r.clone()),
            (None, ItemOutcome::Failed(e)) => (Span::styled("failed", t.bad()), e.clone()),
            (None, ItemOutcome::Pending) => (Span::styled("not run", t.dim()), String::new()),
        };
        let row = Row::new(vec![
            Cell::from(id.to_string()),
            Cell::from(res),
            Cell::from(Span::styled(why, t.dim())),
        ]);
        at_cursor(row, i == w.verify.cursor, t)
    });
    list_table(
        rows,
        [
            Constraint::Fill(3),
            Constraint::Length(8),
            Constraint::Fill(2),
        ],
        vec!["Id", "Result", "Why"],
        t,
    )
    .render(table, buf);
}
