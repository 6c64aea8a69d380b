//! The rekey screens: consent, dry run, new key, progress, verify, done.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Widget};

use super::{duration, kv, para, spec_or};
use crate::store::rekey::RekeyFormat;
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::widgets;
use crate::wizard::{KeyChoice, Outcome, Wizard};

fn store_line<'a>(w: &Wizard, width: u16, t: &Theme) -> Line<'a> {
    kv("  store ", spec_or(w.rekey.spec.as_ref()), width, t)
}

/// What a rekey of this format rewrites, in the application's words.
fn what_changes(format: Option<RekeyFormat>) -> &'static str {
    match format {
        Some(RekeyFormat::PromptTrain) => {
            "Every encrypted value in agent-prompttrain's accounts table is rewritten under a \
             new CREDENTIAL_ENCRYPTION_KEY, row by row; a row the app changes meanwhile is left \
             alone and reported."
        }
        Some(RekeyFormat::Laravel) => {
            "Every encrypted value is rewritten under a new APP_KEY (rows still under a key in \
             APP_PREVIOUS_KEYS too), row by row; a row the app changes meanwhile is left alone \
             and reported."
        }
        Some(RekeyFormat::CredshiftSqlite | RekeyFormat::CredshiftPostgres) => {
            "Every value and the table's key check are rewritten under a new passphrase or key \
             file, in one transaction."
        }
        Some(RekeyFormat::Envelope) | None => {
            "The file is rewritten under a new passphrase or key file in one atomic step, read \
             back before it replaces the old one."
        }
    }
}

pub fn render_consent(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let r = &w.rekey;
    let count = r.items.map_or("the encrypted values".to_string(), |n| {
        format!("{n} credentials")
    });
    let lines = vec![
        Line::from(vec![
            Span::raw("credshift will re-encrypt "),
            Span::styled(count, t.header()),
            Span::raw(" in place under a new key"),
        ]),
        store_line(w, area.width, t),
        Line::from(""),
        Line::from(what_changes(r.format)),
        Line::from(
            "The store is locked for the whole run (credshift's exclusive lock: other credshift \
             runs wait).",
        ),
        Line::from(format!(
            "Before writing it saves an encrypted backup of the old ciphertexts under {}.",
            w.config.state_dir.display()
        )),
        Line::from("A dry run comes first: which key each value is under, nothing written."),
        Line::from(
            "Afterwards the application needs the new key; the last screen says exactly what \
             to change.",
        ),
        Line::from(
            "To undo: c cancels while it runs; later `credshift rollback --migration-id ID` \
             puts the old ciphertexts back.",
        ),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", t.key()),
            Span::raw(" consent   "),
            Span::styled("d", t.key()),
            Span::raw(" defer (exit, nothing changed)   "),
            Span::styled("Esc", t.key()),
            Span::raw(" back"),
        ]),
    ];
    para(lines).render(area, buf);
}

pub fn render_dry_run(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let Some(p) = &w.rekey.plan else {
        para(vec![store_line(w, area.width, t)]).render(area, buf);
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{} encrypted values", p.total), t.header()),
            Span::raw(" (dry run: nothing was written)"),
        ]),
        store_line(w, area.width, t),
    ];
    let kw = p
        .under_keys
        .iter()
        .map(|k| k.key.chars().count())
        .max()
        .unwrap_or(0)
        .min(area.width as usize / 2);
    for k in &p.under_keys {
        lines.push(Line::from(vec![
            Span::styled("  under ", t.dim()),
            Span::raw(format!("{:<kw$}", widgets::truncate(&k.key, kw), kw = kw)),
            Span::raw(format!(" {:>6} to rekey", k.cells)),
        ]));
    }
    if p.already_new > 0 {
        lines.push(Line::from(format!(
            "  already under the new key: {}",
            p.already_new
        )));
    }
    lines.push(Line::styled(
        format!(
            "  under none of the keys: {} (left as they are)",
            p.untouched.len()
        ),
        if p.untouched.is_empty() {
            t.text()
        } else {
            t.warn()
        },
    ));
    let room = (area.height as usize).saturating_sub(lines.len() + 3);
    let texts: Vec<String> = p
        .untouched
        .iter()
        .map(|u| format!("! {}: {}", u.location, u.error))
        .collect();
    let shown = wrapped_notes(&mut lines, &texts, "    ", area.width, room, t.warn());
    if p.untouched.len() > shown {
        lines.push(Line::styled(
            format!("    … and {} more", p.untouched.len() - shown),
            t.dim(),
        ));
    }
    lines.push(Line::from(format!(
        "Estimated time: {}",
        estimate(p.estimated_seconds)
    )));
    lines.push(Line::from(vec![
        Span::styled("Enter", t.key()),
        Span::raw(" choose the new key"),
    ]));
    para(lines).render(area, buf);
}

fn estimate(s: f64) -> String {
    if s < 1.0 {
        "under a second".into()
    } else {
        format!("about {}", duration(std::time::Duration::from_secs_f64(s)))
    }
}

fn choice_help(c: KeyChoice, format: Option<RekeyFormat>) -> &'static str {
    match (c, format) {
        (KeyChoice::Passphrase, _) => {
            "Typed twice, with the strength meter; credshift does not store it."
        }
        (KeyChoice::KeyFile, Some(RekeyFormat::PromptTrain)) => {
            "A file (mode 0600) whose first line is the new CREDENTIAL_ENCRYPTION_KEY (32 \
             characters or more)."
        }
        (KeyChoice::KeyFile, Some(RekeyFormat::Laravel)) => {
            "A file (mode 0600) whose first line is the new APP_KEY (base64:…, as `php artisan \
             key:generate --show` prints it)."
        }
        (KeyChoice::KeyFile, _) => "A 32-byte credshift key file (mode 0600).",
        (KeyChoice::Generate, _) => {
            "A fresh key in the store's own format, written to a new file with mode 0600 \
             (never over an existing file)."
        }
    }
}

pub fn render_key(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let r = &w.rekey;
    let mut lines = vec![
        Line::styled(
            format!("Choose the new key ({} values to rekey)", r.to_rekey()),
            t.header(),
        ),
        store_line(w, area.width, t),
        Line::from(""),
    ];
    for (i, c) in r.choices().iter().enumerate() {
        let on = i == r.cursor;
        lines.push(Line::styled(
            format!("{} {}", if on { ">" } else { " " }, c.label()),
            if on { t.cursor() } else { t.text() },
        ));
    }
    lines.push(Line::from(""));
    let choice = r.choice();
    lines.push(Line::styled(choice_help(choice, r.format), t.dim()));
    if choice != KeyChoice::Passphrase && (r.editing || !r.path.is_empty()) {
        let label = if choice == KeyChoice::Generate {
            "new file "
        } else {
            "key file "
        };
        let room = (area.width as usize).saturating_sub(label.len() + 1);
        let mut shown = widgets::truncate_left(&r.path, room);
        if r.editing {
            shown.push('▏');
        }
        lines.push(Line::from(vec![
            Span::styled(label, t.dim()),
            Span::styled(shown, if r.editing { t.key() } else { t.text() }),
        ]));
    }
    if let Some(e) = &r.key_error {
        lines.push(Line::styled(format!("! {e}"), t.bad()));
    }
    para(lines).render(area, buf);
}

pub fn render_run(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let r = &w.rekey;
    let [head, gauge, stats, banner, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    store_line(w, area.width, t).render(head, buf);
    let (done, total) = r.progress.map_or((0, 0), |p| (p.done, p.total));
    let ratio = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    Gauge::default()
        .ratio(ratio)
        .label(format!("{done} / {total}"))
        .gauge_style(t.ok())
        .use_unicode(true)
        .render(gauge, buf);
    let elapsed = r
        .started_ms
        .map(|s| std::time::Duration::from_millis((w.now_ms - s).max(0) as u64));
    Line::from(vec![
        Span::styled("values rekeyed ", t.dim()),
        Span::raw(done.to_string()),
        Span::styled("  elapsed ", t.dim()),
        Span::raw(elapsed.map_or("-".into(), duration)),
    ])
    .render(stats, buf);
    let b = if r.cancel_requested {
        Line::styled(
            "Cancelling: stopping after the batch at hand, then putting the old ciphertexts back…",
            t.warn(),
        )
    } else {
        Line::styled(
            "Backup written first; each batch journaled before and after.",
            t.dim(),
        )
    };
    b.render(banner, buf);
    para(vec![Line::styled(
        "Every value is read back under the new key before the next batch; a value the \
         application changed meanwhile is left alone.",
        t.dim(),
    )])
    .render(rest, buf);
}

pub fn render_verify(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let mut lines = vec![store_line(w, area.width, t), Line::from("")];
    if let Some(v) = &w.rekey.verify {
        let total = v.verified + v.failed;
        lines.push(Line::styled(
            format!(
                "{} of {total} rekeyed values hold the ciphertext the rekey wrote (read again now)",
                v.verified
            ),
            if v.failed == 0 { t.ok() } else { t.bad() },
        ));
        let texts: Vec<String> = v
            .failures
            .iter()
            .take(5)
            .map(|f| format!("✗ {}: {}", f.location, f.error))
            .collect();
        wrapped_notes(&mut lines, &texts, "", area.width, usize::MAX, t.bad());
        lines.push(Line::from(""));
        lines.push(Line::from(vec![
            Span::styled("Enter", t.key()),
            Span::raw(" the application's next steps"),
        ]));
    }
    para(lines).render(area, buf);
}

pub fn done_title(outcome: Option<Outcome>) -> &'static str {
    match outcome {
        Some(Outcome::RolledBack) => "Rekey rolled back: the store is under the old key",
        Some(Outcome::Failed) => "Rekey failed",
        _ => "Rekey complete",
    }
}

pub fn render_done(app: &App, area: Rect, buf: &mut Buffer) {
    let w = &app.wizard;
    let t = &app.theme;
    let style = match w.outcome {
        Some(Outcome::RolledBack) => t.warn(),
        Some(Outcome::Failed) => t.bad(),
        _ => t.ok(),
    };
    let mut lines = vec![
        Line::styled(done_title(w.outcome), style),
        store_line(w, area.width, t),
    ];
    if let Some(e) = &w.error {
        lines.push(Line::styled(format!("error: {e}"), t.bad()));
    }
    if let Some(r) = &w.rekey.report {
        lines.push(Line::from(format!(
            "{} rekeyed · {} already new · {} changed by the app · {} under no key · {} failed",
            r.copied, r.skipped, r.conflicts, r.invalid, r.failed
        )));
        if let Some(v) = &w.rekey.verify {
            lines.push(Line::from(format!(
                "{} verified under the new key",
                v.verified
            )));
        }
        if let Some(reason) = &r.rollback_reason {
            lines.push(Line::styled(reason.clone(), t.warn()));
        }
        let texts: Vec<String> = r
            .changed
            .iter()
            .chain(&r.untouched)
            .chain(&r.failures)
            .take(3)
            .map(|n| format!("! {}: {}", n.location, n.error))
            .collect();
        wrapped_notes(&mut lines, &texts, "", area.width, usize::MAX, t.warn());
        lines.push(Line::styled("Next steps:", t.header()));
        for s in &r.next_steps {
            lines.push(Line::from(format!("- {s}")));
        }
        if !r.rolled_back {
            lines.push(Line::styled(
                format!("Undo: credshift rollback --migration-id {}", r.migration_id),
                t.dim(),
            ));
        }
    }
    para(lines).render(area, buf);
}

/// Each note word-wrapped under `indent` (never cut mid-sentence), as many
/// whole notes as fit in `room` rows (at least one); how many were shown.
fn wrapped_notes(
    lines: &mut Vec<Line<'static>>,
    texts: &[String],
    indent: &str,
    width: u16,
    room: usize,
    style: ratatui::style::Style,
) -> usize {
    let width = (width as usize).saturating_sub(indent.len()).max(1);
    let mut used = 0;
    for (i, text) in texts.iter().enumerate() {
        let rows = widgets::wrap(text, width);
        if i > 0 && used + rows.len() > room {
            return i;
        }
        used += rows.len();
        for row in rows {
            lines.push(Line::styled(format!("{indent}{row}"), style));
        }
    }
    texts.len()
}
