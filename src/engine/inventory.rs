//! Inventory: every source item, masked, with its status.

use crate::credential::{Credential, Kind};
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

/// When `c` itself expires: only an OAuth access token is marked expired
/// by its `expires_at` (a refresh token, or a key next to it, outlives the
/// access token's expiry).
pub fn expiry(c: &Credential) -> Option<i64> {
    (c.kind == Kind::OauthAccess)
        .then(|| c.expires_at_ms())
        .flatten()
}

pub fn classify(c: &Credential, now_ms: i64) -> InventoryItem {
    let expires = expiry(c);
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
        preview: c.secret.preview(),
        metadata: crate::scrub::public(&c.metadata),
        status,
        reason,
        expires_at_ms: expires,
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Metadata;

    #[test]
    fn only_an_oauth_access_token_expires_by_expires_at() {
        let mut m = Metadata::new();
        m.insert("expires_at".into(), 1_000i64.into());
        for (kind, expired) in [
            (Kind::OauthAccess, true),
            (Kind::OauthRefresh, false),
            (Kind::ApiKey, false),
            (Kind::Other, false),
        ] {
            let c = Credential::new("a/b".parse().unwrap(), kind, "value").with_metadata(m.clone());
            let item = classify(&c, 10_000_000);
            assert_eq!(item.status == ItemStatus::Expired, expired, "{kind}");
            assert_eq!(expiry(&c).is_some(), expired, "{kind}");
        }
    }

    #[test]
    fn inventory_metadata_is_scrubbed() {
        let mut m = Metadata::new();
        m.insert("api_key".into(), "sk-proj-abcdefghijklmnop".into());
        m.insert("note".into(), "kept".into());
        let c = Credential::new("a/b".parse().unwrap(), Kind::ApiKey, "value").with_metadata(m);
        let item = classify(&c, 0);
        let text = serde_json::to_string(&item).unwrap();
        assert!(!text.contains("sk-proj-abcdefghijklmnop"), "{text}");
        assert_eq!(item.metadata["note"], "kept");
    }
}
