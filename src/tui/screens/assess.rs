//! Assess: the stores found, what each can do, and picking source and target.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Widget};

use super::{at_cursor, kv, list_table, para, spec_or};
use crate::engine::StoreReport;
use crate::tui::app::App;
use crate::tui::widgets;
use crate::wizard::{Pick, Wizard};

/// The probe's needs-a-key note is no news for an encrypted store that is
/// not the chosen source: picked as the target, the wizard asks for its
/// passphrase before reading or writing it.
fn asks_for_passphrase(w: &Wizard, i: usize) -> bool {
    !w.passphrase.set
        && w.assess.source != Some(i)
        && w.assess
            .stores
            .get(i)
            .is_some_and(|r| r.spec.under_passphrase())
}

/// The warnings worth showing for store `i`.
fn shown_warnings<'a>(w: &Wizard, i: usize, r: &'a StoreReport) -> Vec<&'a String> {
    let c = &r.capability;
    if asks_for_passphrase(w, i) {
        c.warnings.iter().collect()
    } else {
        c.notes().collect()
    }
}

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let n = w.assess.stores.len() as u16;
    let banner = w.interrupted().next();
    let [intro, table, detail] = Layout::vertical([
        Constraint::Length(3 + u16::from(banner.is_some())),
        Constraint::Length((n + 1).min(area.height.saturating_sub(6)).max(2)),
        Constraint::Min(2),
    ])
    .areas(area);

    let picking = match w.assess.pick {
        Pick::Source => "Choose the SOURCE: where your credentials are now.",
        Pick::Target => "Choose the TARGET: where they should go.",
    };
    let mut lines = Vec::new();
    if let Some(h) = banner {
        lines.push(Line::styled(
            widgets::truncate(
                &format!("! migration {} was interrupted: h opens recovery", h.id),
                area.width as usize,
            ),
            t.warn(),
        ));
    }
    lines.push(Line::styled(picking, t.header()));
    lines.push(kv("source ", spec_or(w.source_spec()), area.width, t));
    lines.push(kv("target ", spec_or(w.target_spec()), area.width, t));
    para(lines).render(intro, buf);

    let flag = |b: bool| {
        if b {
            Cell::from("yes")
        } else {
            Cell::from(Span::styled("no", t.warn()))
        }
    };
    let rows = widgets::window(
        w.assess.cursor,
        w.assess.stores.len(),
        table.height.saturating_sub(1) as usize,
    )
    .map(|i| {
        let r = &w.assess.stores[i];
        let c = &r.capability;
        let role = match (w.assess.source == Some(i), w.assess.target == Some(i)) {
            (true, _) => "S",
            (_, true) => "T",
            _ => " ",
        };
        let mark = format!("{}{role}", if i == w.assess.cursor { ">" } else { " " });
        // Everything but the fixed columns (and their spacing).
        let spec_w = (area.width as usize).saturating_sub(36).max(12);
        let mut cells = vec![
            Cell::from(mark),
            Cell::from(widgets::truncate_left(&r.spec.to_string(), spec_w)),
        ];
        if c.available {
            cells.push(Cell::from(Span::styled("yes", t.ok())));
            cells.push(flag(c.readable));
            cells.push(flag(c.writable));
            cells.push(flag(c.persistent));
        } else {
            cells.push(Cell::from(Span::styled("no", t.bad())));
            cells.extend([Cell::from("-"), Cell::from("-"), Cell::from("-")]);
        }
        cells.push(Cell::from(
            c.item_count.map_or("-".to_string(), |n| n.to_string()),
        ));
        cells.push(if shown_warnings(w, i, r).is_empty() {
            Cell::from("")
        } else {
            Cell::from(Span::styled("!", t.warn()))
        });
        let row = Row::new(cells);
        at_cursor(row, i == w.assess.cursor, t)
    });
    let header = vec![
        "", "Store", "Avail", "Read", "Write", "Persist", "Items", "",
    ];
    list_table(
        rows,
        [
            Constraint::Length(2),
            Constraint::Fill(1),
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(1),
        ],
        header,
        t,
    )
    .render(table, buf);

    // The highlighted store: why it is unavailable, and its warnings.
    let mut d = Vec::new();
    if w.busy.is_none() && w.assess.stores.is_empty() {
        d.push(Line::styled("No stores to show.", t.warn()));
    }
    if let Some(r) = w.assess.stores.get(w.assess.cursor) {
        let c = &r.capability;
        let i = w.assess.cursor;
        d.push(Line::styled(r.spec.to_string(), t.header()));
        if !c.available {
            d.push(Line::from(vec![
                Span::styled("unavailable: ", t.bad()),
                Span::raw(c.reason.clone().unwrap_or_default()),
            ]));
        } else {
            let mut facts = vec![if c.encrypted_at_rest {
                "encrypted at rest"
            } else {
                "plaintext at rest"
            }];
            if !c.exists {
                facts.push("does not exist yet (created on first write)");
            }
            if !c.persistent {
                facts.push("session-only: lost at logout or reboot");
            }
            if c.locked == Some(true) {
                facts.push("locked");
            }
            if asks_for_passphrase(w, i) {
                facts.push("as the target, the wizard asks for its passphrase");
            }
            d.push(Line::styled(facts.join(" · "), t.dim()));
        }
        for warn in shown_warnings(w, i, r) {
            d.push(Line::from(vec![
                Span::styled("! ", t.warn()),
                Span::styled(warn.clone(), t.warn()),
            ]));
        }
    }
    para(d).render(detail, buf);
}
