//! Step 4: the plan, before anything is written.

use super::{Effect, Event, PassphraseMode, Step, Wizard};
use crate::engine::types::{ConflictPolicy, Plan};

/// Step 4: the conflict policy, the plan (once the engine made it), the
/// cursor in its items.
#[derive(Debug, Clone, Default)]
pub struct DryRunState {
    pub policy: ConflictPolicy,
    pub plan: Option<Plan>,
    pub cursor: usize,
}

impl Wizard {
    pub(super) fn start_plan(&mut self) -> Vec<Effect> {
        let (Some(src), Some(dst)) = (self.source_report(), self.target_report()) else {
            return vec![];
        };
        let (from, to) = (src.spec.clone(), dst.spec.clone());
        if src.same_location(dst) {
            self.error = Some(format!(
                "{from} and {to} are the same store: the target must be a different store"
            ));
            return vec![];
        }
        self.step = Step::DryRun;
        self.dry_run.plan = None;
        self.busy = Some("Planning (reading the target)…".into());
        vec![Effect::Plan {
            from,
            to,
            policy: self.dry_run.policy,
            selection: self.selected_ids(),
        }]
    }

    pub(super) fn on_dry_run(&mut self, event: Event) -> Vec<Effect> {
        let n = self.dry_run.plan.as_ref().map_or(0, |p| p.items.len());
        if Self::move_cursor(&mut self.dry_run.cursor, n, &event) {
            return vec![];
        }
        match event {
            Event::TogglePolicy if self.busy.is_none() => {
                self.dry_run.policy = match self.dry_run.policy {
                    ConflictPolicy::Skip => ConflictPolicy::Overwrite,
                    ConflictPolicy::Overwrite => ConflictPolicy::Skip,
                };
                self.start_plan()
            }
            Event::Back => {
                self.step = Step::Inventory;
                self.busy = None;
                vec![]
            }
            Event::Enter if self.busy.is_none() && self.dry_run.plan.is_some() => {
                if self.needs_passphrase() {
                    self.passphrase.mode = if self.target_exists() && self.needs_passphrase() {
                        PassphraseMode::Unlock
                    } else {
                        PassphraseMode::Create
                    };
                    self.passphrase.next = Step::Execute;
                    self.passphrase.error = None;
                    self.step = Step::Passphrase;
                    return vec![];
                }
                self.start_migration()
            }
            _ => vec![],
        }
    }
}
