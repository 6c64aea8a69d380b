//! Step 1: probe the stores, pick the source and the target.

use super::{Effect, Event, Step, Wizard};
use crate::engine::types::StoreReport;
use crate::store::StoreSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pick {
    #[default]
    Source,
    Target,
}

/// Step 1: the probed stores, the cursor, and the two picked (indices into
/// `stores`).
#[derive(Debug, Clone, Default)]
pub struct AssessState {
    pub stores: Vec<StoreReport>,
    pub cursor: usize,
    pub pick: Pick,
    pub source: Option<usize>,
    pub target: Option<usize>,
}

impl Wizard {
    pub(super) fn on_assessed(&mut self, reports: Vec<StoreReport>) -> Vec<Effect> {
        self.busy = None;
        self.assess.stores = reports;
        let find = |spec: &Option<StoreSpec>, stores: &[StoreReport]| {
            spec.as_ref()
                .and_then(|s| stores.iter().position(|r| &r.spec == s))
        };
        self.assess.source =
            find(&self.config.from, &self.assess.stores).filter(|i| self.can_be_source(*i));
        self.assess.target =
            find(&self.config.to, &self.assess.stores).filter(|i| self.can_be_target(*i));
        if self.assess.source.is_some() {
            self.assess.pick = Pick::Target;
            self.assess.cursor = self.assess.target.or(self.assess.source).unwrap_or(0);
        } else {
            self.assess.cursor = self
                .assess
                .stores
                .iter()
                .position(|r| r.capability.available && r.capability.readable)
                .unwrap_or(0);
        }
        vec![]
    }

    pub(super) fn can_be_source(&self, i: usize) -> bool {
        self.assess
            .stores
            .get(i)
            .is_some_and(|r| r.capability.available && r.capability.readable)
    }

    pub(super) fn can_be_target(&self, i: usize) -> bool {
        self.assess
            .stores
            .get(i)
            .is_some_and(|r| r.capability.available && r.capability.writable)
            && Some(i) != self.assess.source
    }

    pub(super) fn on_assess(&mut self, event: Event) -> Vec<Effect> {
        let n = self.assess.stores.len();
        match event {
            Event::Up => self.assess.cursor = self.assess.cursor.saturating_sub(1),
            Event::Down => self.assess.cursor = (self.assess.cursor + 1).min(n.saturating_sub(1)),
            Event::Home => self.assess.cursor = 0,
            Event::End => self.assess.cursor = n.saturating_sub(1),
            Event::SwitchPick => {
                self.assess.pick = match self.assess.pick {
                    Pick::Source => Pick::Target,
                    Pick::Target => Pick::Source,
                };
            }
            Event::Back if self.assess.pick == Pick::Target => {
                self.assess.pick = Pick::Source;
                self.assess.target = None;
                if let Some(s) = self.assess.source {
                    self.assess.cursor = s;
                }
            }
            Event::Enter if self.busy.is_none() => return self.assess_enter(),
            _ => {}
        }
        vec![]
    }

    pub(super) fn assess_enter(&mut self) -> Vec<Effect> {
        self.error = None;
        let i = self.assess.cursor;
        let Some(r) = self.assess.stores.get(i) else {
            return vec![];
        };
        match self.assess.pick {
            Pick::Source => {
                if !self.can_be_source(i) {
                    self.error = Some(format!(
                        "{} cannot be read: {}",
                        r.spec,
                        r.capability.reason.as_deref().unwrap_or("not readable")
                    ));
                    return vec![];
                }
                self.assess.source = Some(i);
                if self.assess.target == Some(i) {
                    self.assess.target = None;
                }
                self.assess.pick = Pick::Target;
                if let Some(t) = self.assess.target {
                    self.assess.cursor = t;
                } else if let Some(t) =
                    (0..self.assess.stores.len()).find(|t| self.can_be_target(*t))
                {
                    self.assess.cursor = t;
                }
            }
            Pick::Target => {
                if self.assess.source.is_none() {
                    self.assess.pick = Pick::Source;
                    return vec![];
                }
                if Some(i) == self.assess.source {
                    self.error = Some("the target must be a different store".into());
                    return vec![];
                }
                if let Some(from) = self.source_report()
                    && from.same_location(r)
                {
                    self.error = Some(format!(
                        "{} is the same store as the source {} (the same file under another \
                         name or scheme): the target must be a different store",
                        r.spec, from.spec
                    ));
                    return vec![];
                }
                if !self.can_be_target(i) {
                    // Never fall back silently: say why, and point at the
                    // encrypted file the list always offers.
                    let why = if r.capability.available {
                        "it is read-only".to_string()
                    } else {
                        r.capability
                            .reason
                            .clone()
                            .unwrap_or_else(|| "it is unavailable".into())
                    };
                    self.error = Some(format!(
                        "{} cannot be the target: {why}. Choose another store, such as an encrypted file.",
                        r.spec
                    ));
                    return vec![];
                }
                self.assess.target = Some(i);
                self.step = Step::Consent;
            }
        }
        vec![]
    }
}
