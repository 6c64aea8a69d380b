//! Execute: progress, rate, ETA, the per-item log and the failure meter.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Widget};

use super::{duration, spec_or};
use crate::tui::app::App;
use crate::tui::widgets::{self, FailureMeter};
use crate::wizard::{LogLine, ROLLBACK_THRESHOLD};

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let run = &w.run;
    let c = &run.counts;
    let [route, gauge, stats, meter, banner, log] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);

    Line::from(vec![
        Span::raw(widgets::truncate_left(
            &spec_or(w.source_spec()),
            (area.width as usize).saturating_sub(6) / 2,
        )),
        Span::styled(" → ", t.dim()),
        Span::raw(widgets::truncate_left(
            &spec_or(w.target_spec()),
            (area.width as usize).saturating_sub(6) / 2,
        )),
    ])
    .render(route, buf);

    let ratio = if c.total == 0 {
        0.0
    } else {
        (c.done as f64 / c.total as f64).clamp(0.0, 1.0)
    };
    Gauge::default()
        .ratio(ratio)
        .label(format!("{} / {}", c.done, c.total))
        .gauge_style(t.ok())
        .use_unicode(true)
        .render(gauge, buf);

    let eta = c.eta.map_or("-".to_string(), duration);
    Line::from(vec![
        Span::raw(format!("{:.0} items/s", c.rate)),
        Span::styled("  ETA ", t.dim()),
        Span::raw(eta),
        Span::styled("  written ", t.dim()),
        Span::styled(c.written.to_string(), t.ok()),
        Span::styled("  skipped ", t.dim()),
        Span::raw(c.skipped.to_string()),
        Span::styled("  failed ", t.dim()),
        Span::styled(
            c.failed.to_string(),
            if c.failed > 0 { t.bad() } else { t.text() },
        ),
    ])
    .render(stats, buf);

    FailureMeter {
        rate: c.failure_rate(),
        threshold: ROLLBACK_THRESHOLD,
        theme: t,
    }
    .render(meter, buf);

    let b = if let Some(reason) = &run.rolling_back {
        Line::styled(format!("Rolling back: {reason}"), t.bad())
    } else if run.cancel_requested {
        Line::styled("Cancelling: rolling back what was written…", t.warn())
    } else if let Some(p) = &run.backup {
        super::kv("backup ", p.display().to_string(), area.width, t)
    } else if run.report.is_none() {
        Line::styled("Writing the encrypted backup…", t.dim())
    } else {
        Line::from("")
    };
    b.render(banner, buf);

    let h = log.height as usize;
    let width = log.width as usize;
    let cut = |s: &str| widgets::truncate(s, width.saturating_sub(2));
    let lines: Vec<Line> = run
        .log
        .iter()
        .skip(run.log.len().saturating_sub(h))
        .map(|l| match l {
            LogLine::Info(s) => Line::styled(widgets::truncate_left(s, width), t.dim()),
            LogLine::Ok(s) => Line::from(vec![Span::styled("✓ ", t.ok()), Span::raw(cut(s))]),
            LogLine::Skip(s) => Line::from(vec![Span::styled("- ", t.dim()), Span::raw(cut(s))]),
            LogLine::Fail(s) => Line::from(vec![Span::styled("✗ ", t.bad()), Span::raw(cut(s))]),
        })
        .collect();
    Paragraph::new(lines).render(log, buf);
}
