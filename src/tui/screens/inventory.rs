//! Inventory: every source item, masked, with its status; pick what to move.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Widget};

use super::{at_cursor, date, list_table, para};
use crate::credential::CredentialId;
use crate::engine::types::ItemStatus;
use crate::store::Severity;
use crate::tui::app::App;
use crate::tui::widgets;
use crate::wizard::REVEAL_MS;

pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let Some(inv) = &w.inventory.loaded else {
        para(vec![Line::styled("Reading the source…", t.dim())]).render(area, buf);
        return;
    };
    let err_lines = inv.errors.len().min(3) as u16 + u16::from(inv.errors.len() > 3);
    // The item under the cursor: kind, reason, and the revealed value.
    let mut d = Vec::new();
    if let Some(i) = w.current_item() {
        let it = &inv.items[i];
        let mut facts = vec![it.kind.as_str().to_string(), it.preview.clone()];
        if let Some(ms) = it.expires_at_ms {
            facts.push(format!("expires {}", date(ms)));
        }
        if let Some(r) = &it.reason {
            facts.push(r.clone());
        }
        d.push(Line::from(vec![
            Span::styled(
                widgets::truncate(&it.id.to_string(), area.width as usize / 2),
                t.header(),
            ),
            Span::styled(format!("  {}", facts.join(" · ")), t.dim()),
        ]));
        d.extend(reveal_lines(app, &it.id, area.width as usize));
    } else if !w.inventory.filter.is_empty() {
        d.push(Line::styled("No item matches the filter.", t.dim()));
    }
    // Rows the detail takes once wrapped (its facts line wraps on a narrow
    // screen), so the revealed value below it is never cut off.
    let width = (area.width as usize).max(1);
    let detail_rows: usize = d.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
    let [top, table, detail, errs] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(detail_rows.max(2) as u16),
        Constraint::Length(err_lines),
    ])
    .areas(area);

    let mut head = vec![Span::raw(format!(
        "{} items, {} selected",
        inv.items.len(),
        w.selected_count()
    ))];
    if w.inventory.editing || !w.inventory.filter.is_empty() {
        head.push(Span::styled("   filter: ", t.dim()));
        head.push(Span::styled(
            format!(
                "{}{}",
                w.inventory.filter,
                if w.inventory.editing { "▏" } else { "" }
            ),
            t.key(),
        ));
        head.push(Span::styled(
            format!(" ({} shown)", w.inventory.visible.len()),
            t.dim(),
        ));
    }
    Line::from(head).render(top, buf);

    let show_kind = area.width >= 100;
    let show_expiry = area.width >= 70;
    let rows = widgets::window(
        w.inventory.cursor,
        w.inventory.visible.len(),
        table.height.saturating_sub(1) as usize,
    )
    .map(|vi| {
        let i = w.inventory.visible[vi];
        let it = &inv.items[i];
        let mark = if it.status == ItemStatus::Invalid {
            "[-]"
        } else if w.inventory.selected[i] {
            "[x]"
        } else {
            "[ ]"
        };
        let status = match it.status {
            ItemStatus::Eligible => Span::styled("eligible", t.ok()),
            ItemStatus::Expired => Span::styled("expired", t.warn()),
            ItemStatus::Invalid => Span::styled("invalid", t.bad()),
        };
        let mut cells = vec![Cell::from(mark), Cell::from(it.id.to_string())];
        if show_kind {
            cells.push(Cell::from(it.kind.as_str()));
        }
        // Narrow screens show the preview without its length; the line
        // under the table has it in full.
        cells.push(Cell::from(if show_kind {
            it.preview.clone()
        } else {
            short_preview(&it.preview)
        }));
        if show_expiry {
            cells.push(Cell::from(it.expires_at_ms.map_or(String::new(), date)));
        }
        cells.push(Cell::from(status));
        let row = Row::new(cells);
        at_cursor(row, vi == w.inventory.cursor, t)
    });
    let mut header = vec!["", "Id"];
    let mut widths = vec![Constraint::Length(3), Constraint::Fill(1)];
    if show_kind {
        header.push("Kind");
        widths.push(Constraint::Length(15));
    }
    header.push("Preview");
    widths.push(Constraint::Length(if show_kind { 24 } else { 14 }));
    if show_expiry {
        header.push("Expires");
        widths.push(Constraint::Length(10));
    }
    header.push("Status");
    widths.push(Constraint::Length(8));
    list_table(rows, widths, header, t).render(table, buf);

    para(d).render(detail, buf);

    let mut e: Vec<Line> = inv
        .errors
        .iter()
        .take(3)
        .map(|le| {
            let text = match le.severity {
                Severity::Error => le.error.clone(),
                Severity::Warning => format!("warning: {}", le.error),
            };
            let room = (area.width as usize).saturating_sub(text.chars().count() + 4);
            Line::from(vec![
                Span::styled("! ", t.bad()),
                Span::raw(format!(
                    "{}: {text}",
                    widgets::truncate_left(&le.location, room.max(12)),
                )),
            ])
        })
        .collect();
    if inv.errors.len() > 3 {
        e.push(Line::styled(
            format!("  and {} more unreadable places", inv.errors.len() - 3),
            t.bad(),
        ));
    }
    para(e).render(errs, buf);
}

/// `sk-ant-…9f3a (108 chars)` -> `sk-ant-…9f3a`.
fn short_preview(p: &str) -> String {
    match p.rfind(" (") {
        Some(i) if p.ends_with(" chars)") && !p.starts_with('•') => p[..i].to_string(),
        _ => p.to_string(),
    }
}

/// The revealed value cut into lines of the screen's width (a long key
/// wrapped as one word fell below the detail area and showed nothing), each
/// piece borrowed from the secret so no copy of it is made; else the hint.
fn reveal_lines<'a>(app: &'a App, id: &CredentialId, width: usize) -> Vec<Line<'a>> {
    let w = &app.wizard;
    let t = &app.theme;
    match &w.inventory.revealed {
        Some(r) if &r.id == id => {
            let left = ((r.until_ms - w.now_ms).max(0) + 999) / 1000;
            let mut lines = vec![Line::styled(
                format!("secret (hides in {left} s):"),
                t.dim(),
            )];
            let value = r.secret.expose();
            let width = width.max(1);
            let mut start = 0;
            let mut n = 0;
            for (i, _) in value.char_indices() {
                if n == width {
                    lines.push(Line::from(Span::styled(&value[start..i], t.revealed())));
                    start = i;
                    n = 0;
                }
                n += 1;
            }
            if start < value.len() {
                lines.push(Line::from(Span::styled(&value[start..], t.revealed())));
            }
            lines
        }
        _ => vec![Line::styled(
            format!("r reveals this secret for {} s", REVEAL_MS / 1000),
            t.dim(),
        )],
    }
}
