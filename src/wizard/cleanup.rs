//! Step 7: keep the source, or delete the verified items (asked twice).

use super::{Confirm, Effect, Event, Outcome, Step, Wizard};

impl Wizard {
    pub(super) fn on_cleanup(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Toggle | Event::Up | Event::Down => {
                self.delete_source = !self.delete_source;
                vec![]
            }
            Event::Back => {
                self.step = Step::Verify;
                vec![]
            }
            Event::Enter if self.busy.is_none() => {
                if self.delete_source {
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
