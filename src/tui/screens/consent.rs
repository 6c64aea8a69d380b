//! Consent: what will happen, in plain words, before anything does.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{kv, para, spec_or};
use crate::tui::app::App;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let count = w
        .source_report()
        .and_then(|r| r.capability.item_count)
        .map_or("the".to_string(), |n| n.to_string());
    let mut lines = vec![
        Line::from(vec![
            Span::raw("credshift will copy "),
            Span::styled(format!("{count} credentials"), t.header()),
        ]),
        kv("  from ", spec_or(w.source_spec()), area.width, t),
        kv("  to   ", spec_or(w.target_spec()), area.width, t),
        Line::from(""),
        Line::from(format!(
            "Before writing anything it saves an encrypted backup under {}.",
            w.config.state_dir.display()
        )),
        Line::from("The source is kept as it is until you choose cleanup at the end."),
        Line::from(
            "You will see the full list and a dry run first; items the target already holds are skipped.",
        ),
        Line::from(
            "To undo: the wizard rolls back by itself when more than half fail; later, \
             `credshift recover` or `credshift rollback --migration-id ID`.",
        ),
    ];
    if let Some(r) = w.target_report() {
        let c = &r.capability;
        if !c.persistent {
            lines.push(Line::styled(
                "! The target is session-only: its contents are lost at logout or reboot.",
                t.warn(),
            ));
        }
        if !c.encrypted_at_rest {
            lines.push(Line::styled(
                "! The target keeps secrets in plain text.",
                t.warn(),
            ));
        }
        for warn in &c.warnings {
            lines.push(Line::styled(format!("! {warn}"), t.warn()));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("y", t.key()),
        Span::raw(" consent   "),
        Span::styled("d", t.key()),
        Span::raw(" defer (exit, nothing changed)   "),
        Span::styled("q", t.key()),
        Span::raw(" quit"),
    ]));
    para(lines).render(area, buf);
}
