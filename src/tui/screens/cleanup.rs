//! Cleanup: keep or delete the verified items at the source; where things are.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{kv, para, spec_or};
use crate::tui::app::App;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let n = w.verified_count();
    let id = w
        .run
        .id
        .as_ref()
        .map_or("ID".to_string(), |i| i.to_string());
    let opt = |on: bool, text: String| {
        let mark = if on { "(•) " } else { "( ) " };
        let line = Line::from(vec![Span::raw(mark), Span::raw(text)]);
        if on { line.style(t.cursor()) } else { line }
    };
    let mut lines = vec![
        Line::styled(
            format!("What should happen to the {n} verified items in the source?"),
            t.header(),
        ),
        opt(
            !w.cleanup.delete_source,
            format!("Keep them in {} (default)", spec_or(w.source_spec())),
        ),
        opt(
            w.cleanup.delete_source,
            "Delete them from the source (asks again; unverified items stay)".to_string(),
        ),
        Line::from(""),
    ];
    if let Some(b) = &w.run.backup {
        lines.push(kv("backup    ", b.display().to_string(), area.width, t));
    }
    lines.push(kv(
        "journal   ",
        format!("{} (and the audit log)", w.config.state_dir.display()),
        area.width,
        t,
    ));
    lines.push(Line::from(""));
    lines.push(Line::styled("Next steps", t.header()));
    lines.push(Line::from(format!(
        "· check again any time: credshift verify --migration-id {id}"
    )));
    lines.push(Line::from(format!(
        "· undo: credshift rollback --migration-id {id}"
    )));
    // No app reads credshift's own stores directly: `exec` hands it the
    // credentials as environment variables (last: it wraps on a narrow screen).
    lines.push(Line::from(format!(
        "· run your app: credshift exec --from {} -- APP",
        spec_or(w.target_spec())
    )));
    para(lines).render(area, buf);
}
