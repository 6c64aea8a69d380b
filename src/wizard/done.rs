//! Step 8: the end screen.

use super::{Effect, Event, Outcome, Wizard};

impl Wizard {
    /// What the end screen says about a migration that ended in an error
    /// without a report. "Nothing was written" only when the engine never
    /// began writing; otherwise where to go next.
    pub fn failure_summary(&self) -> Option<String> {
        let e = self.error.as_ref()?;
        if !self.run.writes_began {
            return Some(format!("Nothing was written: {e}"));
        }
        Some(match &self.run.id {
            Some(id) => format!(
                "The migration stopped after it began writing: {e}. Some items may be at the \
                 target: undo with `credshift rollback --migration-id {id}` or finish with \
                 `credshift resume --migration-id {id}`."
            ),
            None => format!(
                "The migration stopped after it began writing: {e}. Some items may be at the \
                 target: see `credshift history`."
            ),
        })
    }

    pub(super) fn on_done(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Enter => vec![Effect::Exit(self.outcome.unwrap_or(Outcome::Completed))],
            _ => vec![],
        }
    }
}
