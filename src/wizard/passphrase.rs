//! The passphrase for an encrypted target (asked when none was given).

use super::{Effect, Event, Step, Wizard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseMode {
    /// A new target or backup: passphrase and confirmation.
    Create,
    /// An existing encrypted target: one field.
    Unlock,
}

/// The passphrase screen: what it asks for, its inline error, whether a
/// passphrase is known, and the step it leads to.
#[derive(Debug, Clone)]
pub struct PassphraseState {
    pub mode: PassphraseMode,
    pub error: Option<String>,
    pub set: bool,
    /// The step the passphrase screen leads to.
    pub next: Step,
}

impl Default for PassphraseState {
    fn default() -> Self {
        PassphraseState {
            mode: PassphraseMode::Create,
            error: None,
            set: false,
            next: Step::Execute,
        }
    }
}

impl Wizard {
    pub(super) fn on_passphrase(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::PassphraseEdited => {
                self.passphrase.error = None;
                vec![]
            }
            Event::Back if self.passphrase.next == Step::Detail => {
                self.passphrase.error = None;
                self.recovery.pending = None;
                self.step = Step::Detail;
                vec![]
            }
            Event::Back if self.passphrase.next == Step::RekeyDryRun => {
                self.passphrase.error = None;
                self.step = Step::RekeyConsent;
                vec![]
            }
            Event::Back if self.passphrase.next == Step::RekeyRun => {
                self.passphrase.error = None;
                self.step = Step::RekeyKey;
                vec![]
            }
            Event::Back => {
                self.passphrase.error = None;
                self.step = if self.passphrase.next == Step::DryRun {
                    Step::Inventory
                } else {
                    Step::DryRun
                };
                vec![]
            }
            Event::PassphraseSubmitted {
                passphrase,
                confirm,
            } => {
                if passphrase.is_empty() {
                    self.passphrase.error = Some("enter a passphrase".into());
                    return vec![];
                }
                if self.passphrase.mode == PassphraseMode::Create {
                    match confirm {
                        Some(c) if c.ct_eq(&passphrase) => {}
                        _ => {
                            self.passphrase.error =
                                Some("the two entries differ; type them again".into());
                            return vec![];
                        }
                    }
                    // The one rule every new envelope follows (CLI, page).
                    if let Err(e) = crate::keys::check_new_passphrase(passphrase.expose()) {
                        self.passphrase.error = Some(format!("{e} (a few words work well)"));
                        return vec![];
                    }
                }
                self.passphrase.error = None;
                if self.passphrase.next == Step::RekeyRun {
                    // The new key: never the one the stores are opened with.
                    return self.rekey_passphrase_given(passphrase);
                }
                self.passphrase.set = true;
                let mut effects = vec![Effect::UsePassphrase(passphrase)];
                if self.passphrase.next == Step::Detail {
                    effects.extend(self.recovery_passphrase_given());
                    return effects;
                }
                if self.passphrase.next == Step::RekeyDryRun {
                    effects.extend(self.plan_rekey());
                    return effects;
                }
                effects.extend(if self.passphrase.next == Step::DryRun {
                    self.start_plan()
                } else {
                    self.start_migration()
                });
                effects
            }
            _ => vec![],
        }
    }
}

pub const MIN_PASSPHRASE: usize = crate::keys::MIN_NEW_PASSPHRASE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    Empty,
    Weak,
    Fair,
    Strong,
}

/// A rough strength hint: length and character variety. Not a guarantee,
/// only a nudge toward longer passphrases.
pub fn strength(p: &str) -> Strength {
    let n = p.chars().count();
    if n == 0 {
        return Strength::Empty;
    }
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let score = n + 4 * classes;
    if n < MIN_PASSPHRASE || score < 16 {
        Strength::Weak
    } else if n >= 16 || score >= 24 {
        Strength::Strong
    } else {
        Strength::Fair
    }
}
