//! Step 1: probe the stores, pick the source and the target.

use super::{Effect, Event, Step, Wizard};
use crate::engine::types::StoreReport;
use crate::store::StoreSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Source,
    Target,
}

impl Wizard {
    pub(super) fn on_assessed(&mut self, reports: Vec<StoreReport>) -> Vec<Effect> {
        self.busy = None;
        self.stores = reports;
        let find = |spec: &Option<StoreSpec>, stores: &[StoreReport]| {
            spec.as_ref()
                .and_then(|s| stores.iter().position(|r| &r.spec == s))
        };
        self.source = find(&self.config.from, &self.stores).filter(|i| self.can_be_source(*i));
        self.target = find(&self.config.to, &self.stores).filter(|i| self.can_be_target(*i));
        if self.source.is_some() {
            self.pick = Pick::Target;
            self.store_cursor = self.target.or(self.source).unwrap_or(0);
        } else {
            self.store_cursor = self
                .stores
                .iter()
                .position(|r| r.capability.available && r.capability.readable)
                .unwrap_or(0);
        }
        vec![]
    }

    pub(super) fn can_be_source(&self, i: usize) -> bool {
        self.stores
            .get(i)
            .is_some_and(|r| r.capability.available && r.capability.readable)
    }

    pub(super) fn can_be_target(&self, i: usize) -> bool {
        self.stores
            .get(i)
            .is_some_and(|r| r.capability.available && r.capability.writable)
            && Some(i) != self.source
    }

    pub(super) fn on_assess(&mut self, event: Event) -> Vec<Effect> {
        let n = self.stores.len();
        match event {
            Event::Up => self.store_cursor = self.store_cursor.saturating_sub(1),
            Event::Down => self.store_cursor = (self.store_cursor + 1).min(n.saturating_sub(1)),
            Event::Home => self.store_cursor = 0,
            Event::End => self.store_cursor = n.saturating_sub(1),
            Event::SwitchPick => {
                self.pick = match self.pick {
                    Pick::Source => Pick::Target,
                    Pick::Target => Pick::Source,
                };
            }
            Event::Back if self.pick == Pick::Target => {
                self.pick = Pick::Source;
                self.target = None;
                if let Some(s) = self.source {
                    self.store_cursor = s;
                }
            }
            Event::Enter if self.busy.is_none() => return self.assess_enter(),
            _ => {}
        }
        vec![]
    }

    pub(super) fn assess_enter(&mut self) -> Vec<Effect> {
        self.error = None;
        let i = self.store_cursor;
        let Some(r) = self.stores.get(i) else {
            return vec![];
        };
        match self.pick {
            Pick::Source => {
                if !self.can_be_source(i) {
                    self.error = Some(format!(
                        "{} cannot be read: {}",
                        r.spec,
                        r.capability.reason.as_deref().unwrap_or("not readable")
                    ));
                    return vec![];
                }
                self.source = Some(i);
                if self.target == Some(i) {
                    self.target = None;
                }
                self.pick = Pick::Target;
                if let Some(t) = self.target {
                    self.store_cursor = t;
                } else if let Some(t) = (0..self.stores.len()).find(|t| self.can_be_target(*t)) {
                    self.store_cursor = t;
                }
            }
            Pick::Target => {
                if self.source.is_none() {
                    self.pick = Pick::Source;
                    return vec![];
                }
                if Some(i) == self.source {
                    self.error = Some("the target must be a different store".into());
                    return vec![];
                }
                if let Some(from) = self.source_spec()
                    && crate::store::same_location(from, &r.spec)
                {
                    self.error = Some(format!(
                        "{} is the same store as the source {from} (the same file under another \
                         name or scheme): the target must be a different store",
                        r.spec
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
                self.target = Some(i);
                self.step = Step::Consent;
            }
        }
        vec![]
    }
}
