//! Small widgets the screens share: the key footer, the windowed list, the
//! failure-rate meter, centred dialogs.

use std::ops::Range;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use crate::tui::theme::Theme;

/// The rows of a list of `len` that fit in `height`, keeping the cursor in
/// view (centred once the list scrolls). Only these rows are ever built, so a
/// list of 100,000 items costs what a screenful costs.
pub fn window(cursor: usize, len: usize, height: usize) -> Range<usize> {
    if height == 0 || len == 0 {
        return 0..0;
    }
    if len <= height {
        return 0..len;
    }
    let start = cursor
        .saturating_sub(height / 2)
        .min(len.saturating_sub(height));
    start..start + height
}

/// `key what · key what · ...`, wrapped to the width.
pub fn footer<'a>(keys: &[(&'a str, &'a str)], theme: &Theme) -> Paragraph<'a> {
    let mut spans = Vec::with_capacity(keys.len() * 3);
    for (i, (k, what)) in keys.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled("  ", theme.dim()));
        }
        spans.push(Span::styled(*k, theme.key()));
        spans.push(Span::raw(format!(" {what}")));
    }
    Paragraph::new(Line::from(spans)).wrap(Wrap { trim: true })
}

/// Lines the footer needs at this width (1..=3).
pub fn footer_height(keys: &[(&str, &str)], width: u16) -> u16 {
    let mut lines = 1u16;
    let mut used = 0usize;
    for (i, (k, what)) in keys.iter().enumerate() {
        let w = k.chars().count() + 1 + what.chars().count() + if i > 0 { 2 } else { 0 };
        if used > 0 && used + w > width as usize {
            lines += 1;
            used = w.saturating_sub(2);
        } else {
            used += w;
        }
    }
    lines.min(3)
}

/// `s` word-wrapped to `width` columns (a word longer than a line is
/// split), so a caller knows how many rows it takes before drawing: nothing
/// is cut.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    for word in s.split_whitespace() {
        let mut chars: Vec<char> = word.chars().collect();
        if used > 0 && used + 1 + chars.len() <= width {
            line.push(' ');
            line.extend(&chars);
            used += 1 + chars.len();
            continue;
        }
        if used > 0 {
            out.push(std::mem::take(&mut line));
        }
        while chars.len() > width {
            let rest = chars.split_off(width);
            out.push(chars.into_iter().collect());
            chars = rest;
        }
        used = chars.len();
        line.extend(chars);
    }
    if used > 0 || out.is_empty() {
        out.push(line);
    }
    out
}

/// Cut `s` to `max` columns with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Cut `s` to `max` columns keeping its end (paths: the file name matters).
pub fn truncate_left(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - (max - 1)));
    out
}

/// A rectangle centred in `area`, at most `w` x `h`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    area.centered(
        Constraint::Length(w.min(area.width)),
        Constraint::Length(h.min(area.height)),
    )
}

/// A dialog box: clears what is below and draws a bordered block. The
/// body comes wrapped to the inner width (see [`wrap`]), so the caller
/// sized the box to hold every line.
pub fn dialog(buf: &mut Buffer, area: Rect, title: &str, body: Vec<Line<'_>>, theme: &Theme) {
    Clear.render(area, buf);
    Paragraph::new(body)
        .block(
            Block::bordered()
                .title(Span::styled(format!(" {title} "), theme.title()))
                .border_style(theme.warn()),
        )
        .render(area, buf);
}

/// The failure-rate meter: how many of the attempted items failed, with the
/// 50 % line where the engine rolls back. Green below a quarter, yellow
/// below half, red at or above it; the marker is drawn in every theme.
pub struct FailureMeter<'a> {
    pub rate: f64,
    pub threshold: f64,
    pub theme: &'a Theme,
}

impl Widget for FailureMeter<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < 12 || area.height == 0 {
            return;
        }
        let label = format!(" {:>3.0}% failed", (self.rate * 100.0).clamp(0.0, 100.0));
        let bar_w = area.width.saturating_sub(label.chars().count() as u16 + 2) as usize;
        let filled = ((self.rate.clamp(0.0, 1.0)) * bar_w as f64).round() as usize;
        let mark = ((self.threshold * bar_w as f64).round() as usize).min(bar_w.saturating_sub(1));
        let style = if self.rate >= self.threshold {
            self.theme.bad()
        } else if self.rate >= self.threshold / 2.0 {
            self.theme.warn()
        } else {
            self.theme.ok()
        };
        let mut spans = vec![Span::raw("[")];
        for i in 0..bar_w {
            if i == mark {
                spans.push(Span::styled("|", self.theme.header()));
            } else if i < filled {
                spans.push(Span::styled("█", style));
            } else {
                spans.push(Span::styled("·", self.theme.dim()));
            }
        }
        spans.push(Span::raw("]"));
        spans.push(Span::styled(label, style));
        let mut lines = vec![Line::from(spans)];
        if area.height > 1 {
            let pad = " ".repeat(mark + 1);
            lines.push(Line::from(vec![
                Span::raw(pad),
                Span::styled("^ 50%: automatic rollback", self.theme.dim()),
            ]));
        }
        Paragraph::new(lines).render(area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_the_cursor_visible_and_builds_one_screen() {
        assert_eq!(window(0, 5, 10), 0..5);
        assert_eq!(window(0, 100_000, 20), 0..20);
        let w = window(50_000, 100_000, 20);
        assert_eq!(w.len(), 20);
        assert!(w.contains(&50_000));
        assert_eq!(window(99_999, 100_000, 20), 99_980..100_000);
        assert_eq!(window(3, 10, 0), 0..0);
    }

    #[test]
    fn wrap_keeps_every_word_and_fits_the_width() {
        let text = "Quitting stops it after the batch at hand; supercalifragilistic words split.";
        for w in [8, 20, 40, 200] {
            let lines = wrap(text, w);
            assert!(
                lines.iter().all(|l| l.chars().count() <= w),
                "{w}: {lines:?}"
            );
            let joined: String = lines.concat();
            let squeezed: String = text.split_whitespace().collect();
            assert_eq!(joined.replace(' ', ""), squeezed, "{w}");
        }
        assert_eq!(wrap("", 10), vec![String::new()]);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(truncate_left("/a/b/c.json", 7), "…c.json");
        assert_eq!(truncate_left("/a/b/c.json", 20), "/a/b/c.json");
    }

    #[test]
    fn footer_height_grows_with_narrow_widths() {
        let keys = [("Enter", "advance"), ("Esc", "back"), ("q", "quit")];
        assert_eq!(footer_height(&keys, 80), 1);
        assert!(footer_height(&keys, 12) > 1);
    }
}
