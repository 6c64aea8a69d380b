//! Step 3: the source's items, filtered and selected; reveal one at a time.

use memchr::memmem;

use super::{Effect, Event, PassphraseMode, Step, Wizard};
use crate::credential::{CredentialId, Kind, Secret};
use crate::engine::types::{Inventory, InventoryItem, ItemStatus};

/// How long a revealed secret stays on screen.
pub const REVEAL_MS: i64 = 30_000;

#[derive(Debug, Clone)]
pub struct Revealed {
    pub id: CredentialId,
    pub secret: Secret,
    pub until_ms: i64,
}

/// Step 3: the source's items and what the screen shows of them. Sized for
/// 100,000 items: per item one flag and one index (plus the filter's
/// lowercased key bytes); nothing a frame or a keystroke does walks all
/// items more than once.
#[derive(Debug, Clone, Default)]
pub struct InventoryState {
    pub loaded: Option<Inventory>,
    /// Per item: selected for the migration.
    pub selected: Vec<bool>,
    /// How many of `selected` are set (the header shows it every frame).
    selected_count: usize,
    pub filter: String,
    /// The filter field has the keys.
    pub editing: bool,
    /// Indices into the inventory that match the filter, ascending.
    pub visible: Vec<usize>,
    keys: FilterKeys,
    pub cursor: usize,
    pub revealed: Option<Revealed>,
}

/// Every item's id, lowercased once when the inventory arrives, in one
/// buffer (one allocation, not a String per item), so a filter keystroke is
/// one substring search over it; and each item's kind, which the filter
/// matches too.
#[derive(Debug, Clone, Default)]
struct FilterKeys {
    text: String,
    /// Item `i`'s key is `text[starts[i]..starts[i + 1] - 1]` (a `\n`
    /// follows each key); `n + 1` entries.
    starts: Vec<usize>,
    kinds: Vec<Kind>,
    /// The kinds among the items (a handful).
    present: Vec<Kind>,
}

/// Room for every `Kind` indexed by `kind as usize`.
const KIND_SLOTS: usize = Kind::Other as usize + 1;

impl FilterKeys {
    fn new(items: &[InventoryItem]) -> Self {
        let mut text = String::with_capacity(items.len() * 24);
        let mut starts = Vec::with_capacity(items.len() + 1);
        let mut id = String::new();
        for it in items {
            use std::fmt::Write;
            id.clear();
            let _ = write!(id, "{}", it.id);
            starts.push(text.len());
            // Lowercased id by id: lowercasing depends on what follows a
            // letter (a final Σ), and each id ends where it ends.
            text.push_str(&id.to_lowercase());
            text.push('\n');
        }
        starts.push(text.len());
        text.shrink_to_fit();
        let kinds: Vec<Kind> = items.iter().map(|it| it.kind).collect();
        let mut present = Vec::new();
        for k in &kinds {
            if !present.contains(k) {
                present.push(*k);
            }
        }
        FilterKeys {
            text,
            starts,
            kinds,
            present,
        }
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.text.as_bytes()[self.starts[i]..self.starts[i + 1] - 1]
    }

    /// The items among `within` (ascending; all items when `None`) whose
    /// lowercased id or kind contains `needle` (lowercased, not empty).
    fn matching(&self, needle: &str, within: Option<&[usize]>) -> Vec<usize> {
        let n = self.kinds.len();
        let finder = memmem::Finder::new(needle.as_bytes());
        let mut kind_hit = [false; KIND_SLOTS];
        for k in &self.present {
            kind_hit[*k as usize] = k.as_str().contains(needle);
        }
        let any_kind = kind_hit.contains(&true);
        let hit = |i: usize| kind_hit[self.kinds[i] as usize] || finder.find(self.key(i)).is_some();
        match within {
            // Few rows left: test them one by one.
            Some(rows) if rows.len() < n / 8 => rows.iter().copied().filter(|&i| hit(i)).collect(),
            _ => {
                // One pass over the whole buffer; each hit names its item.
                let bytes = self.text.as_bytes();
                let mut ids = Vec::new();
                let (mut pos, mut item) = (0, 0);
                while let Some(h) = finder.find(&bytes[pos..]) {
                    let at = pos + h;
                    while self.starts[item + 1] <= at {
                        item += 1;
                    }
                    if at + needle.len() < self.starts[item + 1] {
                        ids.push(item);
                        pos = self.starts[item + 1];
                    } else {
                        // Across the end of a key: not a match of this one.
                        pos = at + 1;
                    }
                    if pos >= bytes.len() {
                        break;
                    }
                }
                let mut out = if any_kind {
                    let mut out = Vec::with_capacity(ids.len());
                    let mut next = ids.iter().peekable();
                    for i in 0..n {
                        let by_id = next.next_if_eq(&&i).is_some();
                        if by_id || kind_hit[self.kinds[i] as usize] {
                            out.push(i);
                        }
                    }
                    out
                } else {
                    ids
                };
                if let Some(rows) = within {
                    out = intersect(rows, &out);
                }
                out
            }
        }
    }
}

/// The common elements of two ascending lists.
fn intersect(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

impl InventoryState {
    /// How many items are selected.
    pub fn selected_count(&self) -> usize {
        self.selected_count
    }

    fn set_selected(&mut self, i: usize, on: bool) {
        if self.selected[i] != on {
            self.selected[i] = on;
            if on {
                self.selected_count += 1;
            } else {
                self.selected_count -= 1;
            }
        }
    }
}

impl Wizard {
    pub(super) fn on_inventory(&mut self, inv: Inventory) -> Vec<Effect> {
        if self.step != Step::Inventory {
            return vec![];
        }
        self.busy = None;
        // Eligible and expired are selected (an expired access token often
        // travels with a valid refresh token); invalid ones cannot be.
        self.inventory.selected = inv
            .items
            .iter()
            .map(|i| i.status != ItemStatus::Invalid)
            .collect();
        self.inventory.selected_count = self.inventory.selected.iter().filter(|s| **s).count();
        self.inventory.keys = FilterKeys::new(&inv.items);
        self.inventory.loaded = Some(inv);
        self.inventory.cursor = 0;
        self.refilter(false);
        vec![]
    }

    /// Recompute `visible` from the filter. `narrowing`: the filter only
    /// grew at its end, so every match is among the rows shown now.
    pub(super) fn refilter(&mut self, narrowing: bool) {
        let needle = self.inventory.filter.to_lowercase();
        let st = &mut self.inventory;
        let Some(inv) = &st.loaded else {
            st.visible = Vec::new();
            return;
        };
        st.visible = if needle.is_empty() {
            (0..inv.items.len()).collect()
        } else if narrowing {
            st.keys.matching(&needle, Some(&st.visible))
        } else {
            st.keys.matching(&needle, None)
        };
        st.cursor = st.cursor.min(st.visible.len().saturating_sub(1));
    }

    pub fn selected_ids(&self) -> Vec<CredentialId> {
        match &self.inventory.loaded {
            Some(inv) => inv
                .items
                .iter()
                .zip(&self.inventory.selected)
                .filter(|(_, s)| **s)
                .map(|(i, _)| i.id.clone())
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn selected_count(&self) -> usize {
        self.inventory.selected_count()
    }

    /// The selected ids, moved out: the inventory is emptied (a migration
    /// started; no screen shows it again).
    pub(super) fn take_selected_ids(&mut self) -> Vec<CredentialId> {
        let st = std::mem::take(&mut self.inventory);
        match st.loaded {
            Some(inv) => inv
                .items
                .into_iter()
                .zip(st.selected)
                .filter(|(_, s)| *s)
                .map(|(i, _)| i.id)
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn current_item(&self) -> Option<usize> {
        self.inventory.visible.get(self.inventory.cursor).copied()
    }

    pub(super) fn current_item_id(&self) -> Option<CredentialId> {
        let i = self.current_item()?;
        self.inventory
            .loaded
            .as_ref()
            .map(|inv| inv.items[i].id.clone())
    }

    pub(super) fn on_inventory_key(&mut self, event: Event) -> Vec<Effect> {
        if self.inventory.editing {
            match event {
                Event::FilterChar(c) => {
                    let before = self.inventory.filter.to_lowercase();
                    self.inventory.filter.push(c);
                    self.inventory.cursor = 0;
                    // A longer needle matches a subset of what the shorter
                    // one did (checked on the lowercased forms: lowercasing
                    // is not always letter by letter).
                    let narrowing = self.inventory.filter.to_lowercase().starts_with(&before);
                    self.refilter(narrowing);
                }
                Event::FilterBackspace => {
                    self.inventory.filter.pop();
                    self.refilter(false);
                }
                Event::Enter => self.inventory.editing = false,
                Event::Back => {
                    self.inventory.editing = false;
                    self.inventory.filter.clear();
                    self.refilter(false);
                }
                _ => {}
            }
            return vec![];
        }
        if Self::move_cursor(
            &mut self.inventory.cursor,
            self.inventory.visible.len(),
            &event,
        ) {
            self.inventory.revealed = None;
            return vec![];
        }
        match event {
            Event::Toggle => {
                if let (Some(i), Some(inv)) = (self.current_item(), &self.inventory.loaded) {
                    let it = &inv.items[i];
                    if it.status == ItemStatus::Invalid {
                        self.error = Some(format!(
                            "{} cannot be migrated: {}",
                            it.id,
                            it.reason.as_deref().unwrap_or("invalid")
                        ));
                    } else {
                        let on = !self.inventory.selected[i];
                        self.inventory.set_selected(i, on);
                        self.error = None;
                    }
                }
            }
            Event::ToggleAll => {
                if let Some(inv) = &self.inventory.loaded {
                    // Acts on what the filter shows.
                    let selectable: Vec<usize> = self
                        .inventory
                        .visible
                        .iter()
                        .copied()
                        .filter(|i| inv.items[*i].status != ItemStatus::Invalid)
                        .collect();
                    let all = selectable.iter().all(|i| self.inventory.selected[*i]);
                    for i in selectable {
                        self.inventory.set_selected(i, !all);
                    }
                }
            }
            Event::FilterStart => self.inventory.editing = true,
            Event::Reveal => {
                if self
                    .inventory
                    .revealed
                    .as_ref()
                    .is_some_and(|r| Some(&r.id) == self.current_item_id().as_ref())
                {
                    self.inventory.revealed = None;
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
                self.inventory.revealed = None;
                self.step = Step::Consent;
            }
            Event::Enter if self.busy.is_none() && self.inventory.loaded.is_some() => {
                self.inventory.revealed = None;
                if self.selected_count() == 0 {
                    self.error = Some("nothing selected: space selects an item, a all".into());
                    return vec![];
                }
                self.error = None;
                if self.needs_passphrase() && self.target_exists() {
                    // An existing encrypted target must be unlocked to compare.
                    self.passphrase.mode = PassphraseMode::Unlock;
                    self.passphrase.next = Step::DryRun;
                    self.passphrase.error = None;
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
