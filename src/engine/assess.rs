//! Assess: probe stores and report what each can do.

use crate::engine::types::StoreReport;
use crate::store::{self, Capability, OpenOptions, StoreSpec};

/// Probe one spec. A store that cannot even be opened is reported as
/// unavailable with the reason, never as an error.
pub fn probe_spec(spec: &StoreSpec, opts: &OpenOptions) -> StoreReport {
    let capability = match store::open(spec, opts) {
        Ok(s) => s.probe(),
        Err(e) => Capability::unavailable(e.to_string()),
    };
    StoreReport {
        spec: spec.clone(),
        capability,
    }
}
