//! The app: the wizard's state plus what only a terminal has (the passphrase
//! fields and the theme), the key handling, and the event loop. The loop is
//! generic over ratatui's `Backend`, so tests drive it on a `TestBackend`.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::widgets::Block;
use ratatui_textarea::{CursorMove, TextArea};
use zeroize::Zeroize;

use crate::credential::Secret;
use crate::tui::keymap::{self, Input};
use crate::tui::screens;
use crate::tui::theme::Theme;
use crate::wizard::{Effect, Event, Outcome, PassphraseMode, Step, Wizard};

/// How often the clock ticks when nothing else happens (reveal countdown, ETA).
pub const TICK: Duration = Duration::from_millis(250);

/// Messages into the loop: keys from the input thread, results from workers.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Resize,
    Engine(Event),
    /// SIGTERM / SIGHUP: cancel (and roll back) a running migration, then exit.
    Terminate,
}

/// Where workers send their results.
#[derive(Debug, Clone)]
pub struct Sink(pub Sender<Msg>);

impl Sink {
    pub fn send(&self, e: Event) {
        // The loop has ended when this fails; nothing is left to tell.
        let _ = self.0.send(Msg::Engine(e));
    }
}

/// Runs effects off the UI thread. Must return at once: real work goes to a
/// worker thread, which reports through the sink.
pub trait Executor {
    fn execute(&mut self, effect: Effect, sink: &Sink);
}

/// The two masked passphrase fields. Undo history is off so no copy of
/// the text is kept beyond the field itself; taking the text zeroizes it.
pub struct PassFields {
    pub fields: [TextArea<'static>; 2],
    pub focus: usize,
    theme: Theme,
}

impl PassFields {
    pub fn new(theme: Theme) -> Self {
        let mut p = PassFields {
            fields: [Self::field(), Self::field()],
            focus: 0,
            theme,
        };
        p.restyle();
        p
    }

    fn field() -> TextArea<'static> {
        let mut t = TextArea::default();
        t.set_mask_char('•');
        t.set_max_histories(0);
        t.set_cursor_line_style(ratatui::style::Style::default());
        t
    }

    fn restyle(&mut self) {
        for (i, title) in ["Passphrase", "Confirm passphrase"].iter().enumerate() {
            let style = if i == self.focus {
                self.theme.key()
            } else {
                self.theme.dim()
            };
            self.fields[i].set_block(Block::bordered().title(*title).border_style(style));
            self.fields[i].set_cursor_style(if i == self.focus {
                self.theme.cursor()
            } else {
                ratatui::style::Style::default()
            });
        }
    }

    pub fn text(&self, i: usize) -> &str {
        self.fields[i]
            .lines()
            .first()
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn focus(&mut self, i: usize) {
        self.focus = i.min(1);
        self.restyle();
    }

    /// A key for the focused field; true when the text changed.
    pub fn input(&mut self, key: KeyEvent) -> bool {
        let f = &mut self.fields[self.focus];
        match key.code {
            KeyCode::Left => f.move_cursor(CursorMove::Back),
            KeyCode::Right => f.move_cursor(CursorMove::Forward),
            KeyCode::Home => f.move_cursor(CursorMove::Head),
            KeyCode::End => f.move_cursor(CursorMove::End),
            _ => return f.input_without_shortcuts(key),
        }
        false
    }

    /// Take both texts out (the fields are left empty) and wipe the buffers.
    pub fn take(&mut self) -> (Secret, Secret) {
        let mut out = [Secret::default(), Secret::default()];
        for (i, slot) in out.iter_mut().enumerate() {
            let old = std::mem::replace(&mut self.fields[i], Self::field());
            let mut lines = old.into_lines();
            *slot = Secret::new(lines.first().cloned().unwrap_or_default());
            for l in lines.iter_mut() {
                l.zeroize();
            }
        }
        self.focus = 0;
        self.restyle();
        out.into()
    }

    pub fn clear(&mut self) {
        drop(self.take());
    }
}

pub struct App {
    pub wizard: Wizard,
    pub pass: PassFields,
    pub theme: Theme,
}

impl App {
    pub fn new(wizard: Wizard, theme: Theme) -> Self {
        App {
            wizard,
            pass: PassFields::new(theme),
            theme,
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        let before = self.wizard.step;
        let effects = self.wizard.handle(event);
        if before != self.wizard.step
            && (before == Step::Passphrase || self.wizard.step == Step::Passphrase)
        {
            self.pass.clear();
        }
        effects
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match keymap::map(key, &self.wizard) {
            Input::Event(e) => self.handle(e),
            Input::Field(k) => {
                if self.pass.input(k) {
                    self.handle(Event::PassphraseEdited)
                } else {
                    vec![]
                }
            }
            Input::FieldSwitch => {
                if self.wizard.passphrase.mode == PassphraseMode::Create {
                    self.pass.focus(1 - self.pass.focus);
                }
                vec![]
            }
            Input::FieldEnter => {
                let create = self.wizard.passphrase.mode == PassphraseMode::Create;
                if create && self.pass.focus == 0 {
                    self.pass.focus(1);
                    return vec![];
                }
                let (passphrase, confirm) = self.pass.take();
                self.handle(Event::PassphraseSubmitted {
                    passphrase,
                    confirm: create.then_some(confirm),
                })
            }
            Input::Ignore => vec![],
        }
    }
}

/// The event loop: draw, wait for a message (or the tick), take everything
/// that queued up meanwhile (progress events are merged into one batch, so a
/// flood of them costs one frame), handle, run the effects. Returns how the
/// wizard ended.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    exec: &mut dyn Executor,
    rx: &Receiver<Msg>,
    sink: &Sink,
    initial: Vec<Effect>,
    clock: &dyn Fn() -> i64,
) -> Result<Outcome, B::Error> {
    if let Some(o) = run_effects(exec, sink, initial) {
        return Ok(o);
    }
    // Test aid (documented, inert unless set): panic once the first screen
    // is up, so a test can check the terminal is restored on that path too.
    let panic_after_draw = super::panic_after_draw();
    loop {
        terminal.draw(|f| screens::render(app, f))?;
        if panic_after_draw {
            panic!("CREDSHIFT_PANIC_AFTER_DRAW is set: panicking on purpose (a test aid)");
        }
        let mut msgs = Vec::new();
        match rx.recv_timeout(TICK) {
            Ok(m) => msgs.push(m),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(Outcome::Quit),
        }
        while msgs.len() < 50_000 {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut effects = app.handle(Event::Tick { now_ms: clock() });
        let mut progress = Vec::new();
        for m in msgs {
            match m {
                Msg::Engine(Event::Progress(p)) => progress.extend(p),
                other => {
                    if !progress.is_empty() {
                        effects.extend(app.handle(Event::Progress(std::mem::take(&mut progress))));
                    }
                    match other {
                        Msg::Key(k) => effects.extend(app.on_key(k)),
                        Msg::Engine(e) => effects.extend(app.handle(e)),
                        Msg::Terminate => effects.extend(app.handle(Event::Terminate)),
                        Msg::Resize => {}
                    }
                }
            }
        }
        if !progress.is_empty() {
            effects.extend(app.handle(Event::Progress(progress)));
        }
        if let Some(o) = run_effects(exec, sink, effects) {
            terminal.draw(|f| screens::render(app, f))?;
            return Ok(o);
        }
    }
}

/// Runs every effect but `Exit`, then returns the exit if there was one.
fn run_effects(exec: &mut dyn Executor, sink: &Sink, effects: Vec<Effect>) -> Option<Outcome> {
    let mut exit = None;
    for e in effects {
        match e {
            Effect::Exit(o) => exit = Some(o),
            other => exec.execute(other, sink),
        }
    }
    exit
}
