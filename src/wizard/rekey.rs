//! "Rekey this store", offered on the Stores screen for stores whose
//! values can be re-encrypted in place: consent, dry run, the new key
//! (a passphrase typed twice, a key file, or a generated key file), live
//! progress with cancel (asking first), verify, done with the application's
//! next steps. Like the rest of the wizard: events in, effects out.

use std::path::PathBuf;

use super::{Confirm, Effect, Event, Outcome, PassphraseMode, Step, Task, TaskError, Wizard};
use crate::credential::Secret;
use crate::engine::EngineError;
use crate::engine::rekey::keygen::takes_key_text;
use crate::engine::rekey::{RekeyPlan, RekeyProgress, RekeyReport};
use crate::engine::types::{MigrationId, MigrationStatus};
use crate::store::StoreSpec;
use crate::store::rekey::RekeyFormat;

/// How the new key is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    /// A new credshift passphrase, typed twice (with the strength meter).
    Passphrase,
    /// A file that holds the new key already.
    KeyFile,
    /// A fresh key written to a new file (0600, never over a file).
    Generate,
}

impl KeyChoice {
    pub fn label(self) -> &'static str {
        match self {
            KeyChoice::Passphrase => "a new passphrase (typed twice)",
            KeyChoice::KeyFile => "a key file I have",
            KeyChoice::Generate => "generate a new key file",
        }
    }
}

/// The new key as the worker gets it (never shown, never journaled).
#[derive(Debug, Clone)]
pub enum NewKeySource {
    Passphrase(Secret),
    KeyFile(PathBuf),
    Generate(PathBuf),
}

/// The rekey screens' state.
#[derive(Debug, Clone, Default)]
pub struct RekeyFlow {
    pub spec: Option<StoreSpec>,
    pub format: Option<RekeyFormat>,
    /// Credentials the probe counted (the consent's "rows").
    pub items: Option<usize>,
    pub plan: Option<RekeyPlan>,
    /// The key choice under the cursor.
    pub cursor: usize,
    /// The key file's path, typed on the new-key screen.
    pub path: String,
    /// Typing the path.
    pub editing: bool,
    /// Why the new key was not taken (shown on the new-key screen).
    pub key_error: Option<String>,
    /// Running: the progress so far (done of total values).
    pub progress: Option<RekeyProgress>,
    pub running: bool,
    pub started_ms: Option<i64>,
    pub cancel_requested: bool,
    pub quit_after: bool,
    pub report: Option<RekeyReport>,
    pub verify: Option<RekeyReport>,
}

impl RekeyFlow {
    /// The ways to give the new key for this store: agent-prompttrain's
    /// and Laravel's keys are key text in a file, never typed.
    pub fn choices(&self) -> &'static [KeyChoice] {
        match self.format {
            Some(f) if takes_key_text(f) => &[KeyChoice::KeyFile, KeyChoice::Generate],
            _ => &[
                KeyChoice::Passphrase,
                KeyChoice::KeyFile,
                KeyChoice::Generate,
            ],
        }
    }

    pub fn choice(&self) -> KeyChoice {
        let c = self.choices();
        c[self.cursor.min(c.len() - 1)]
    }

    /// Values the run will rewrite.
    pub fn to_rekey(&self) -> usize {
        self.plan
            .as_ref()
            .map_or(0, |p| p.under_keys.iter().map(|k| k.cells).sum())
    }

    pub fn id(&self) -> Option<&MigrationId> {
        self.report.as_ref().map(|r| &r.migration_id)
    }
}

impl Wizard {
    /// Whether the store under the Stores screen's cursor can be rekeyed.
    pub fn can_rekey_at_cursor(&self) -> bool {
        self.assess
            .stores
            .get(self.assess.cursor)
            .is_some_and(|r| r.spec.rekey_format().is_some())
    }

    /// Whether a rekey is running (quitting asks first).
    pub fn rekeying(&self) -> bool {
        self.rekey.running
    }

    /// `r` on the Stores screen.
    pub(super) fn start_rekey_flow(&mut self) -> Vec<Effect> {
        self.error = None;
        let i = self.assess.cursor;
        let Some(r) = self.assess.stores.get(i) else {
            return vec![];
        };
        let Some(format) = r.spec.rekey_format() else {
            self.error = Some(format!(
                "{} has no key of its own to rotate: rekey works on agent-prompttrain's and \
                 Laravel's tables, credshift's tables and encrypted files",
                r.spec
            ));
            return vec![];
        };
        if !self.can_be_source(i) {
            self.error = Some(format!(
                "{} cannot be read: {}",
                r.spec,
                r.capability.reason.as_deref().unwrap_or("not readable")
            ));
            return vec![];
        }
        self.rekey = RekeyFlow {
            spec: Some(r.spec.clone()),
            format: Some(format),
            items: r.capability.item_count,
            ..RekeyFlow::default()
        };
        self.step = Step::RekeyConsent;
        vec![]
    }

    pub(super) fn on_rekey_consent(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Yes => {
                let needs_old = !self.passphrase.set
                    && self
                        .rekey
                        .spec
                        .as_ref()
                        .is_some_and(StoreSpec::under_passphrase);
                if needs_old {
                    self.passphrase.mode = PassphraseMode::Unlock;
                    self.passphrase.next = Step::RekeyDryRun;
                    self.passphrase.error = None;
                    self.step = Step::Passphrase;
                    return vec![];
                }
                self.plan_rekey()
            }
            Event::Defer => {
                self.outcome = Some(Outcome::Deferred);
                vec![Effect::Exit(Outcome::Deferred)]
            }
            Event::Back => {
                self.step = Step::Assess;
                vec![]
            }
            _ => vec![],
        }
    }

    /// The dry run (after consent, and the old passphrase when asked).
    pub(super) fn plan_rekey(&mut self) -> Vec<Effect> {
        let Some(spec) = self.rekey.spec.clone() else {
            return vec![];
        };
        self.error = None;
        self.rekey.plan = None;
        self.step = Step::RekeyDryRun;
        self.busy = Some("Reading every encrypted value (nothing is written)…".into());
        vec![Effect::RekeyPlan { spec }]
    }

    pub(super) fn on_rekey_dry_run(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Back => {
                self.error = None;
                self.step = Step::RekeyConsent;
            }
            Event::Enter if self.busy.is_none() => {
                let Some(plan) = &self.rekey.plan else {
                    return vec![];
                };
                if self.rekey.to_rekey() == 0 {
                    self.error = Some(format!(
                        "nothing to rekey: none of the {} values is under the old key",
                        plan.total
                    ));
                    return vec![];
                }
                self.error = None;
                self.rekey.key_error = None;
                self.step = Step::RekeyKey;
            }
            _ => {}
        }
        vec![]
    }

    pub(super) fn on_rekey_key(&mut self, event: Event) -> Vec<Effect> {
        let n = self.rekey.choices().len();
        if self.rekey.editing {
            match event {
                Event::FilterChar(c) => {
                    self.rekey.path.push(c);
                    self.rekey.key_error = None;
                }
                Event::FilterBackspace => {
                    self.rekey.path.pop();
                    self.rekey.key_error = None;
                }
                Event::Back => self.rekey.editing = false,
                Event::Enter => return self.submit_key_path(),
                _ => {}
            }
            return vec![];
        }
        match event {
            Event::Back => {
                self.rekey.key_error = None;
                self.step = Step::RekeyDryRun;
            }
            Event::Enter => {
                self.rekey.key_error = None;
                if self.rekey.choice() == KeyChoice::Passphrase {
                    self.passphrase.mode = PassphraseMode::Create;
                    self.passphrase.next = Step::RekeyRun;
                    self.passphrase.error = None;
                    self.step = Step::Passphrase;
                } else {
                    self.rekey.editing = true;
                }
            }
            e => {
                Self::move_cursor(&mut self.rekey.cursor, n, &e);
            }
        }
        vec![]
    }

    fn submit_key_path(&mut self) -> Vec<Effect> {
        let path = self.rekey.path.trim();
        if path.is_empty() {
            self.rekey.key_error = Some("type the key file's path".into());
            return vec![];
        }
        let path = PathBuf::from(path);
        let key = match self.rekey.choice() {
            KeyChoice::Generate => NewKeySource::Generate(path),
            _ => NewKeySource::KeyFile(path),
        };
        self.rekey.editing = false;
        self.start_rekey(key)
    }

    /// The new passphrase was typed twice and follows the rule.
    pub(super) fn rekey_passphrase_given(&mut self, passphrase: Secret) -> Vec<Effect> {
        self.start_rekey(NewKeySource::Passphrase(passphrase))
    }

    fn start_rekey(&mut self, key: NewKeySource) -> Vec<Effect> {
        let Some(spec) = self.rekey.spec.clone() else {
            return vec![];
        };
        self.step = Step::RekeyRun;
        self.rekey.running = true;
        self.rekey.started_ms = Some(self.now_ms);
        self.rekey.progress = Some(RekeyProgress {
            done: 0,
            total: self.rekey.to_rekey(),
        });
        self.rekey.cancel_requested = false;
        self.rekey.report = None;
        self.rekey.verify = None;
        vec![Effect::StartRekey { spec, key }]
    }

    pub(super) fn on_rekey_run(&mut self, event: Event) -> Vec<Effect> {
        if matches!(event, Event::Cancel) && self.rekey.running && !self.rekey.cancel_requested {
            self.confirm = Some(Confirm::CancelRekey);
        }
        vec![]
    }

    /// Yes to [`Confirm::CancelRekey`] or [`Confirm::QuitWhileRekeying`].
    pub(super) fn cancel_rekey(&mut self, quit: bool) -> Vec<Effect> {
        self.rekey.quit_after |= quit;
        if !self.rekey.running {
            return if quit {
                vec![Effect::Exit(self.outcome.unwrap_or(Outcome::Quit))]
            } else {
                vec![]
            };
        }
        if self.rekey.cancel_requested {
            return vec![];
        }
        self.rekey.cancel_requested = true;
        vec![Effect::CancelRekey]
    }

    pub(super) fn on_rekey_progress(&mut self, p: RekeyProgress) -> Vec<Effect> {
        if self.rekey.running {
            self.rekey.progress = Some(p);
        }
        vec![]
    }

    pub(super) fn on_rekey_finished(&mut self, report: RekeyReport) -> Vec<Effect> {
        self.rekey.running = false;
        self.busy = None;
        let status = report.status;
        let id = report.migration_id.clone();
        self.rekey.report = Some(report);
        if self.rekey.quit_after {
            let o = outcome_of(status);
            self.outcome = Some(o);
            return vec![Effect::Exit(o)];
        }
        if status == MigrationStatus::Completed {
            self.step = Step::RekeyVerify;
            self.busy = Some("Reading every rekeyed value back…".into());
            return vec![Effect::RekeyVerify { id }];
        }
        self.outcome = Some(outcome_of(status));
        self.step = Step::RekeyDone;
        vec![]
    }

    pub(super) fn on_rekey_verified(&mut self, report: RekeyReport) -> Vec<Effect> {
        self.busy = None;
        if report.failed > 0 {
            self.outcome = Some(Outcome::Failed);
        }
        self.rekey.verify = Some(report);
        vec![]
    }

    pub(super) fn on_rekey_verify(&mut self, event: Event) -> Vec<Effect> {
        if matches!(event, Event::Enter) && self.busy.is_none() {
            if self.outcome.is_none() {
                self.outcome = Some(Outcome::Completed);
            }
            self.step = Step::RekeyDone;
        }
        vec![]
    }

    pub(super) fn on_rekey_done(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Enter => vec![Effect::Exit(self.outcome.unwrap_or(Outcome::Completed))],
            _ => vec![],
        }
    }

    /// A rekey task failed: the dry run (shown there; a wrong passphrase
    /// asks again), the new key (shown on its screen, nothing written), or
    /// the run (the end screen says what the journal knows).
    pub(super) fn on_rekey_failed(&mut self, task: Task, error: TaskError) -> Vec<Effect> {
        self.busy = None;
        let message = error.to_string();
        match task {
            Task::RekeyPlan
                if self.step == Step::RekeyDryRun
                    && matches!(&error, TaskError::Engine(e)
                        if matches!(e.as_ref(), EngineError::WrongPassphrase { .. })) =>
            {
                self.passphrase.set = false;
                self.passphrase.mode = PassphraseMode::Unlock;
                self.passphrase.next = Step::RekeyDryRun;
                self.passphrase.error = Some(message);
                self.step = Step::Passphrase;
                vec![]
            }
            Task::RekeyKey => {
                self.rekey.running = false;
                self.rekey.key_error = Some(message);
                self.step = Step::RekeyKey;
                if self.rekey.quit_after {
                    return vec![Effect::Exit(Outcome::Quit)];
                }
                vec![]
            }
            Task::Rekey => {
                self.rekey.running = false;
                self.error = Some(message);
                self.outcome = Some(Outcome::Failed);
                self.step = Step::RekeyDone;
                if self.rekey.quit_after {
                    return vec![Effect::Exit(Outcome::Failed)];
                }
                vec![]
            }
            _ => {
                self.error = Some(message);
                vec![]
            }
        }
    }
}

fn outcome_of(status: MigrationStatus) -> Outcome {
    match status {
        MigrationStatus::Completed => Outcome::Completed,
        MigrationStatus::RolledBack => Outcome::RolledBack,
        _ => Outcome::Failed,
    }
}
