//! Step 2: consent before anything is read.

use super::{Effect, Event, Outcome, Pick, Step, Wizard};

impl Wizard {
    pub(super) fn on_consent(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Yes => {
                let Some(from) = self.source_spec().cloned() else {
                    return vec![];
                };
                self.step = Step::Inventory;
                self.busy = Some("Reading the source…".into());
                self.error = None;
                vec![Effect::LoadInventory { from }]
            }
            Event::Defer => {
                self.outcome = Some(Outcome::Deferred);
                vec![Effect::Exit(Outcome::Deferred)]
            }
            Event::Back => {
                self.step = Step::Assess;
                self.assess.pick = Pick::Target;
                vec![]
            }
            _ => vec![],
        }
    }
}
