//! Passphrase: for the encrypted target and the backup, when none was given.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{kv, para, spec_or};
use crate::tui::app::App;
use crate::wizard::{PassphraseMode, Step, Strength, strength};

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let create = w.passphrase.mode == PassphraseMode::Create;
    let [intro, f1, hint, f2, err] = Layout::vertical([
        Constraint::Length(if create {
            3
        } else if w.passphrase.next == Step::Detail {
            4
        } else {
            2
        }),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(if create { 3 } else { 0 }),
        Constraint::Min(1),
    ])
    .areas(area);
    let target = kv("target ", spec_or(w.target_spec()), area.width, t);
    let store = kv("store  ", spec_or(w.rekey.spec.as_ref()), area.width, t);
    let lines = if w.passphrase.next == Step::RekeyRun {
        vec![
            Line::styled("Choose the new passphrase for the store.", t.header()),
            store,
            Line::styled(
                "Every value is re-encrypted under it; credshift does not store it.",
                t.dim(),
            ),
        ]
    } else if w.passphrase.next == Step::RekeyDryRun {
        vec![
            Line::styled(
                "The store is encrypted: enter its current passphrase.",
                t.header(),
            ),
            store,
        ]
    } else if create {
        vec![
            Line::styled(
                "Choose a passphrase for the target and the backup.",
                t.header(),
            ),
            target,
            Line::styled(
                "You need it to read them; credshift does not store it.",
                t.dim(),
            ),
        ]
    } else if w.passphrase.next == Step::Detail {
        let id = w
            .recovery
            .detail
            .as_ref()
            .map_or_else(String::new, |d| d.entry.id.to_string());
        vec![
            Line::styled(
                format!("Migration {id} ran under credshift's passphrase: enter it."),
                t.header(),
            ),
            Line::styled("Asked once for this session; it is never stored.", t.dim()),
        ]
    } else {
        vec![
            Line::styled("The target is encrypted: enter its passphrase.", t.header()),
            target,
        ]
    };
    para(lines).render(intro, buf);

    (&app.pass.fields[0]).render(f1, buf);
    if create {
        let s = strength(app.pass.text(0));
        let (label, style, bar) = match s {
            Strength::Empty => ("", t.dim(), ""),
            Strength::Weak => ("weak", t.bad(), "▮▯▯"),
            Strength::Fair => ("fair", t.warn(), "▮▮▯"),
            Strength::Strong => ("strong", t.ok(), "▮▮▮"),
        };
        Line::from(vec![
            Span::styled(" strength ", t.dim()),
            Span::styled(format!("{bar} {label}"), style),
            Span::styled("  (longer is stronger: a few words work well)", t.dim()),
        ])
        .render(hint, buf);
        (&app.pass.fields[1]).render(f2, buf);
    }
    if let Some(e) = &w.passphrase.error {
        // Wrapped whole: the reason is the point of the line.
        let lines: Vec<Line> = crate::tui::widgets::wrap(&format!("! {e}"), err.width as usize)
            .into_iter()
            .map(|l| Line::styled(l, t.bad()))
            .collect();
        ratatui::widgets::Paragraph::new(lines).render(err, buf);
    }
}
