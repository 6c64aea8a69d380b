//! Done: the title says how it ended; the summary says what happened.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{kv, para, spec_or};
use crate::tui::app::App;
use crate::wizard::Outcome;

pub fn title(outcome: Option<Outcome>) -> &'static str {
    match outcome {
        Some(Outcome::RolledBack) => "Migration rolled back",
        Some(Outcome::Failed) => "Migration failed",
        _ => "Migration complete",
    }
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let style = match w.outcome {
        _ if w.cleanup_stopped() => t.warn(),
        Some(Outcome::RolledBack) => t.warn(),
        Some(Outcome::Failed) => t.bad(),
        _ => t.ok(),
    };
    // A stopped cleanup ends as a failure (exit 1) but nothing failed.
    let head = if w.cleanup_stopped() {
        "Cleanup stopped: the migration is interrupted"
    } else {
        title(w.outcome)
    };
    let mut lines = vec![Line::styled(head, style), Line::from("")];
    lines.push(kv("from ", spec_or(w.source_spec()), area.width, t));
    lines.push(kv("to   ", spec_or(w.target_spec()), area.width, t));
    if let Some(r) = &w.run.report {
        lines.push(Line::from(format!(
            "{} copied · {} skipped · {} conflicts · {} invalid · {} failed",
            r.copied, r.skipped, r.conflicts, r.invalid, r.failed
        )));
        if r.rolled_back || w.run.rolling_back.is_some() {
            lines.push(Line::styled(
                format!(
                    "{}: {}.",
                    if r.rolled_back {
                        "Rolled back (the target is as it was before)"
                    } else {
                        "Rollback incomplete"
                    },
                    r.rollback_reason
                        .as_deref()
                        .or(w.run.rolling_back.as_deref())
                        .unwrap_or("reason not recorded")
                ),
                t.warn(),
            ));
        } else {
            lines.push(Line::from(format!(
                "{} verified at the target",
                w.verify.report.as_ref().map_or(r.verified, |v| v.verified)
            )));
        }
        let shown = if area.height >= 20 { 3 } else { 2 };
        for f in r.failures.iter().take(shown) {
            lines.push(Line::from(vec![
                Span::styled("✗ ", t.bad()),
                Span::raw(format!("{}: {}", f.id, f.error)),
            ]));
        }
        if r.failures.len() > shown {
            lines.push(Line::styled(
                format!("  and {} more failures", r.failures.len() - shown),
                t.bad(),
            ));
        }
        lines.push(Line::from(vec![
            Span::styled("migration ", t.dim()),
            Span::raw(r.migration_id.to_string()),
        ]));
        if let Some(b) = r.backup.as_ref().or(w.run.backup.as_ref()) {
            lines.push(kv("backup    ", b.display().to_string(), area.width, t));
        }
    } else if let Some(text) = w.failure_summary() {
        lines.push(Line::styled(text, t.bad()));
    }
    if let Some(c) = &w.cleanup.report {
        lines.push(Line::from(format!(
            "{} deleted from the source",
            c.source_deleted
        )));
        if c.cancelled {
            lines.push(Line::styled(
                format!(
                    "Cleanup stopped after the batch at hand: the rest stays in the source; \
                     finish with `credshift resume --migration-id {}`.",
                    c.migration_id
                ),
                t.warn(),
            ));
        }
        for f in &c.source_delete_failed {
            lines.push(Line::styled(
                format!("! {}: migrated, source still present ({})", f.id, f.error),
                t.warn(),
            ));
        }
    } else if w.run.report.as_ref().is_some_and(|r| !r.rolled_back) {
        lines.push(Line::styled("The source was kept as it was.", t.dim()));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled("Press Enter to exit.", t.dim()));
    para(lines).render(area, buf);
}
