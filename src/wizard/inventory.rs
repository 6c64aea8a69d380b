//! Step 3: the source's items, filtered and selected; reveal one at a time.

use super::{Effect, Event, PassphraseMode, Step, Wizard};
use crate::credential::{CredentialId, Secret};
use crate::engine::types::{Inventory, ItemStatus};

/// How long a revealed secret stays on screen.
pub const REVEAL_MS: i64 = 30_000;

#[derive(Debug, Clone)]
pub struct Revealed {
    pub id: CredentialId,
    pub secret: Secret,
    pub until_ms: i64,
}

impl Wizard {
    pub(super) fn on_inventory(&mut self, inv: Inventory) -> Vec<Effect> {
        if self.step != Step::Inventory {
            return vec![];
        }
        self.busy = None;
        // Eligible and expired are selected (an expired access token often
        // travels with a valid refresh token); invalid ones cannot be.
        self.selected = inv
            .items
            .iter()
            .map(|i| i.status != ItemStatus::Invalid)
            .collect();
        self.search_text = inv
            .items
            .iter()
            .map(|i| i.id.to_string().to_lowercase())
            .collect();
        self.inventory = Some(inv);
        self.item_cursor = 0;
        self.refilter(false);
        vec![]
    }

    /// Recompute `visible` from the filter. `narrowing`: the filter only
    /// grew at its end, so every match is among the rows shown now.
    pub(super) fn refilter(&mut self, narrowing: bool) {
        let needle = self.filter.to_lowercase();
        let Some(inv) = &self.inventory else {
            self.visible = Vec::new();
            return;
        };
        let matches = |i: usize| {
            needle.is_empty()
                || self.search_text[i].contains(&needle)
                || inv.items[i].kind.as_str().contains(&needle)
        };
        self.visible = if narrowing {
            self.visible
                .iter()
                .copied()
                .filter(|&i| matches(i))
                .collect()
        } else {
            (0..inv.items.len()).filter(|&i| matches(i)).collect()
        };
        self.item_cursor = self.item_cursor.min(self.visible.len().saturating_sub(1));
    }

    pub fn current_item(&self) -> Option<usize> {
        self.visible.get(self.item_cursor).copied()
    }

    pub(super) fn current_item_id(&self) -> Option<CredentialId> {
        let i = self.current_item()?;
        self.inventory.as_ref().map(|inv| inv.items[i].id.clone())
    }

    pub(super) fn on_inventory_key(&mut self, event: Event) -> Vec<Effect> {
        if self.filter_editing {
            match event {
                Event::FilterChar(c) => {
                    let before = self.filter.to_lowercase();
                    self.filter.push(c);
                    self.item_cursor = 0;
                    // A longer needle matches a subset of what the shorter
                    // one did (checked on the lowercased forms: lowercasing
                    // is not always letter by letter).
                    let narrowing = self.filter.to_lowercase().starts_with(&before);
                    self.refilter(narrowing);
                }
                Event::FilterBackspace => {
                    self.filter.pop();
                    self.refilter(false);
                }
                Event::Enter => self.filter_editing = false,
                Event::Back => {
                    self.filter_editing = false;
                    self.filter.clear();
                    self.refilter(false);
                }
                _ => {}
            }
            return vec![];
        }
        if Self::move_cursor(&mut self.item_cursor, self.visible.len(), &event) {
            self.revealed = None;
            return vec![];
        }
        match event {
            Event::Toggle => {
                if let (Some(i), Some(inv)) = (self.current_item(), &self.inventory) {
                    let it = &inv.items[i];
                    if it.status == ItemStatus::Invalid {
                        self.error = Some(format!(
                            "{} cannot be migrated: {}",
                            it.id,
                            it.reason.as_deref().unwrap_or("invalid")
                        ));
                    } else {
                        self.selected[i] = !self.selected[i];
                        self.error = None;
                    }
                }
            }
            Event::ToggleAll => {
                if let Some(inv) = &self.inventory {
                    // Acts on what the filter shows.
                    let selectable: Vec<usize> = self
                        .visible
                        .iter()
                        .copied()
                        .filter(|i| inv.items[*i].status != ItemStatus::Invalid)
                        .collect();
                    let all = selectable.iter().all(|i| self.selected[*i]);
                    for i in selectable {
                        self.selected[i] = !all;
                    }
                }
            }
            Event::FilterStart => self.filter_editing = true,
            Event::Reveal => {
                if self
                    .revealed
                    .as_ref()
                    .is_some_and(|r| Some(&r.id) == self.current_item_id().as_ref())
                {
                    self.revealed = None;
                    return vec![];
                }
                if let (Some(id), Some(from)) = (self.current_item_id(), self.source_spec()) {
                    return vec![Effect::Reveal {
                        from: from.clone(),
                        id,
                    }];
                }
            }
            Event::Back => {
                self.revealed = None;
                self.step = Step::Consent;
            }
            Event::Enter if self.busy.is_none() && self.inventory.is_some() => {
                self.revealed = None;
                if self.selected_count() == 0 {
                    self.error = Some("nothing selected: space selects an item, a all".into());
                    return vec![];
                }
                self.error = None;
                if self.needs_passphrase() && self.target_exists() {
                    // An existing encrypted target must be unlocked to compare.
                    self.passphrase_mode = PassphraseMode::Unlock;
                    self.passphrase_next = Step::DryRun;
                    self.passphrase_error = None;
                    self.step = Step::Passphrase;
                    return vec![];
                }
                return self.start_plan();
            }
            _ => {}
        }
        vec![]
    }
}
