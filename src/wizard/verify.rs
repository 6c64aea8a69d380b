//! Step 6: every item read back from the target.

use super::{Effect, Event, ItemOutcome, Step, Wizard};
use crate::engine::types::Report;

/// Step 6: the read-back report and the cursor in the items.
#[derive(Debug, Clone, Default)]
pub struct VerifyState {
    pub report: Option<Report>,
    pub cursor: usize,
}

impl Wizard {
    pub(super) fn on_verify(&mut self, event: Event) -> Vec<Effect> {
        if Self::move_cursor(&mut self.verify.cursor, self.run.outcomes.len(), &event) {
            return vec![];
        }
        match event {
            Event::Enter if self.busy.is_none() => {
                self.step = Step::Cleanup;
                vec![]
            }
            Event::Cancel if self.finishing() => self.cancel_finishing(false),
            _ => vec![],
        }
    }

    /// Items verified at the target: the ones cleanup may delete.
    pub fn verified_count(&self) -> usize {
        let failed_verify = self.verify.report.as_ref().map_or(0, |r| r.failures.len());
        self.run
            .outcomes
            .iter()
            .filter(|o| matches!(o, ItemOutcome::Verified))
            .count()
            .saturating_sub(failed_verify)
    }
}
