//! Step 7: keep the source, or delete the verified items (asked twice).

use super::{Confirm, Effect, Event, Outcome, Step, Wizard};
use crate::engine::types::Report;

/// Step 7: whether to delete the verified items, and the cleanup's report.
#[derive(Debug, Clone, Default)]
pub struct CleanupState {
    pub delete_source: bool,
    pub report: Option<Report>,
}

impl Wizard {
    pub(super) fn on_cleanup(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Cancel if self.finishing() => self.cancel_finishing(false),
            // The choice stands while its cleanup runs.
            _ if self.finishing() => vec![],
            Event::Toggle | Event::Up | Event::Down => {
                self.cleanup.delete_source = !self.cleanup.delete_source;
                vec![]
            }
            Event::Back => {
                self.step = Step::Verify;
                vec![]
            }
            Event::Enter if self.busy.is_none() => {
                if self.cleanup.delete_source {
                    self.confirm = Some(Confirm::DeleteSource {
                        count: self.verified_count(),
                    });
                    vec![]
                } else {
                    let failed = self.run.report.as_ref().is_some_and(|r| r.failed > 0);
                    self.finish(if failed {
                        Outcome::Failed
                    } else {
                        Outcome::Completed
                    });
                    vec![]
                }
            }
            _ => vec![],
        }
    }
}
