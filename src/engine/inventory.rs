//! Inventory: every source item, masked, with its status.

use crate::credential::Credential;
use crate::engine::types::{Inventory, InventoryItem, ItemStatus};
use crate::error::Result;
use crate::store::{Scan, Store};

/// Read every credential of `store` and classify it. Sorted by id.
pub fn inventory(store: &dyn Store, now_ms: i64) -> Result<(Inventory, Vec<Credential>)> {
    let Scan {
        mut credentials,
        errors,
    } = store.read_all()?;
    credentials.sort_by(|a, b| a.id.cmp(&b.id));
    let items = credentials.iter().map(|c| classify(c, now_ms)).collect();
    Ok((
        Inventory {
            store: store.spec().clone(),
            items,
            errors,
        },
        credentials,
    ))
}

pub fn classify(c: &Credential, now_ms: i64) -> InventoryItem {
    let expires = c.expires_at_ms();
    let (status, reason) = if let Some(r) = c.invalid_reason() {
        (ItemStatus::Invalid, Some(r.to_string()))
    } else if expires.is_some_and(|e| e <= now_ms) {
        (ItemStatus::Expired, Some("expired".to_string()))
    } else {
        (ItemStatus::Eligible, None)
    };
    InventoryItem {
        id: c.id.clone(),
        kind: c.kind,
        preview: c.preview(),
        metadata: c.metadata.clone(),
        status,
        reason,
        expires_at_ms: expires,
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
