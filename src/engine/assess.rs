//! Assess: probe stores and report what each can do.

use crate::engine::types::StoreReport;
use crate::store::{self, Capability, StoreSpec, legacy_meta};
use crate::unlock::KeyOptions;

/// Probe one spec. A store that cannot even be opened is reported as
/// unavailable with the reason, never as an error.
///
/// The item count is what `inventory` lists: in credshift's own stores a
/// secret an older version left in an item's metadata is an item of its
/// own ([`legacy_meta`]), so their count comes from the listing when it
/// can be read (else the store's own count stays).
pub fn probe_spec(spec: &StoreSpec, opts: &KeyOptions) -> StoreReport {
    let capability = match store::open(spec, opts) {
        Ok(s) => {
            let mut cap = s.probe();
            if cap.item_count.is_some_and(|n| n > 0)
                && legacy_meta::applies(spec)
                && let Ok(listing) = s.list()
            {
                cap.item_count = Some(listing.entries.len());
            }
            cap
        }
        Err(e) => Capability::unavailable(e.to_string()),
    };
    StoreReport {
        spec: spec.clone(),
        capability,
        location: store::offline_identity(spec),
    }
}
