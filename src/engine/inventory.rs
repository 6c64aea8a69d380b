//! Inventory: every source item, masked, with its status.

use crate::credential::{Credential, Kind};
use crate::engine::types::{Inventory, InventoryItem, ItemStatus};
use crate::error::Result;
use crate::store::{Scan, Store};

/// Read every credential of `store` and classify it. Sorted by id. A
/// store whose inventory is its listing ([`Store::inventory_from_listing`],
/// Vault) is listed instead, and no credential is read.
pub fn inventory(store: &dyn Store, now_ms: i64) -> Result<(Inventory, Vec<Credential>)> {
    if store.inventory_from_listing() {
        return Ok((from_listing(store, now_ms)?, Vec::new()));
    }
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

/// Every credential of `store`, sorted by id, and the places it could not
/// read: what an inventory lists, before classifying.
pub fn scan_sorted(store: &dyn Store) -> Result<Scan> {
    let mut scan = store.read_all()?;
    scan.credentials.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(scan)
}

/// An inventory serialized as it is classified, item by item: the JSON of
/// [`Inventory`] without holding every item's preview and metadata next
/// to the credentials (a 100,000-item `inventory --json` held both).
pub struct InventoryStream<'a> {
    pub store: &'a crate::store::StoreSpec,
    pub scan: &'a Scan,
    pub now_ms: i64,
}

impl serde::Serialize for InventoryStream<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Items<'b>(&'b [Credential], i64);
        impl serde::Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|c| classify(c, self.1)))
            }
        }
        let mut st = s.serialize_struct("Inventory", 3)?;
        st.serialize_field("store", self.store)?;
        st.serialize_field("items", &Items(&self.scan.credentials, self.now_ms))?;
        st.serialize_field("errors", &self.scan.errors)?;
        st.end()
    }
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
        preview: c.preview(),
        metadata: crate::scrub::public(&c.metadata),
        status,
        reason,
        expires_at_ms: expires,
    }
}

/// The preview of an item listed without reading its value.
pub const NOT_READ: &str = "(value not read)";

/// An inventory item from a listing entry, for a store whose inventory
/// reads no value ([`Store::inventory_from_listing`]): kind, scrubbed
/// metadata and expiry as listed; validity is judged when the value is
/// read (by a migration's plan).
pub fn listed(e: &crate::store::Entry, now_ms: i64) -> InventoryItem {
    let expires = (e.kind == Kind::OauthAccess)
        .then(|| crate::credential::expires_at_ms(&e.metadata))
        .flatten();
    let (status, reason) = if expires.is_some_and(|x| x <= now_ms) {
        (ItemStatus::Expired, Some("expired".to_string()))
    } else {
        (ItemStatus::Eligible, None)
    };
    InventoryItem {
        id: e.id.clone(),
        kind: e.kind,
        preview: NOT_READ.to_string(),
        metadata: crate::scrub::public(&e.metadata),
        status,
        reason,
        expires_at_ms: expires,
    }
}

/// The inventory of a store that lists without reading values, sorted by
/// id (see [`listed`]).
pub fn from_listing(store: &dyn Store, now_ms: i64) -> Result<Inventory> {
    let listing = store.list()?;
    let mut items: Vec<InventoryItem> = listing.entries.iter().map(|e| listed(e, now_ms)).collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Inventory {
        store: store.spec().clone(),
        items,
        errors: listing.errors,
    })
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Metadata;

    #[test]
    fn the_streamed_inventory_is_the_inventory_as_json() {
        let mut m = Metadata::new();
        m.insert("expires_at".into(), 1_000i64.into());
        m.insert("label".into(), "team".into());
        let creds = vec![
            Credential::new(
                "b/key".parse().unwrap(),
                Kind::ApiKey,
                "sk-0123456789abcdef0123",
            ),
            Credential::new("a/tok".parse().unwrap(), Kind::OauthAccess, "short").with_metadata(m),
            Credential::new("a/empty".parse().unwrap(), Kind::Other, ""),
        ];
        let store = crate::store::memory::MemStore::new(
            crate::store::StoreSpec::Dotenv("s".into()),
            creds,
            true,
        );
        let (inv, _) = inventory(&store, 10_000_000).unwrap();
        let scan = scan_sorted(&store).unwrap();
        let streamed = InventoryStream {
            store: store.spec(),
            scan: &scan,
            now_ms: 10_000_000,
        };
        assert_eq!(
            serde_json::to_string_pretty(&streamed).unwrap(),
            serde_json::to_string_pretty(&inv).unwrap()
        );
        assert_eq!(inv.items.len(), 3);
    }

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
