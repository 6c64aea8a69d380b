//! KV v2 operations over [`Client`]: read (latest or one version), list,
//! subkeys, check-and-set writes (POST, then merge-PATCH), metadata,
//! destroy. Paths given here are relative to the mount, unencoded.

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::http::{Client, Method, Reply, encode_path};
use crate::error::{Result, StoreError};

/// How the mount was found, from `sys/internal/ui/mounts/PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Without slashes at either end (`secret`, `team/kv`).
    pub path: String,
    /// `Some(2)` for KV v2; `None` when the token may not look it up.
    pub kv_version: Option<u8>,
}

/// One version of a secret: its data (fields) and metadata.
pub struct Version {
    pub version: u64,
    pub data: Map<String, Value>,
    pub custom_metadata: Map<String, Value>,
}

impl Drop for Version {
    fn drop(&mut self) {
        // The parsed strings are wiped by the binary's allocator; the map
        // is cleared here so nothing outlives the version by accident.
        self.data.clear();
    }
}

/// A secret's metadata: versions by number (`true` when still readable).
pub struct Meta {
    pub current_version: u64,
    pub versions: Vec<(u64, bool)>,
    /// Versions soft-deleted (not destroyed): their data is still there,
    /// `kv undelete` brings them back.
    pub soft_deleted: Vec<u64>,
    pub custom_metadata: Map<String, Value>,
    /// The secret's own `max_versions` (0: the mount's).
    pub max_versions: u64,
}

/// A secret's version, field names and custom_metadata (no values).
pub type Subkeys = (u64, Vec<String>, Map<String, Value>);

/// Why a write was refused.
pub enum WriteError {
    /// The secret's version is not the one given as `cas`.
    Cas,
    /// The token may not write there (`403`).
    Denied,
    Other(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Other(e)
    }
}

pub struct Kv<'a> {
    pub client: &'a Client,
    pub mount: &'a str,
}

impl Kv<'_> {
    fn url(&self, area: &str, path: &str) -> String {
        format!("{}/{area}/{}", encode_path(self.mount), encode_path(path))
    }

    /// A status that is neither success nor one the caller handles.
    pub fn fail(&self, what: &str, path: &str, r: &Reply) -> StoreError {
        let location = format!("{}: {}/{}", self.client.location, self.mount, path);
        match r.status {
            403 if self.client.token_refused() => StoreError::Other(format!(
                "{location}: {what}: {}",
                self.client.refused_token_reason()
            )),
            403 => StoreError::Other(format!(
                "{location}: permission denied ({what}): the token's policies lack '{}' on \
                 {}/{}/{path}",
                capability_of(what),
                self.mount,
                area_of(what),
            )),
            // 5xx: sealed, standby without a leader, a leader change.
            429 | 500..=599 => StoreError::Unavailable {
                store: self.client.location.clone(),
                reason: format!(
                    "HTTP {} ({}): sealed, standby or overloaded",
                    r.status,
                    r.errors()
                ),
            },
            s => StoreError::Other(format!(
                "{location}: {what} failed: HTTP {s} {}",
                r.errors()
            )),
        }
    }

    /// The latest version (`version: None`) or one version. `Ok(None)`:
    /// no such secret, or that version is deleted or destroyed.
    pub fn read(&self, path: &str, version: Option<u64>) -> Result<Option<Version>> {
        let mut url = self.url("data", path);
        if let Some(v) = version {
            url.push_str(&format!("?version={v}"));
        }
        let r = self.client.call(Method::Get, &url, None, true)?;
        if r.status == 404 {
            return Ok(None);
        }
        if !r.ok() {
            return Err(self.fail("read", path, &r));
        }
        let mut v = r.json(&self.client.location)?;
        let d = v.get_mut("data").map(Value::take).unwrap_or(Value::Null);
        let Value::Object(mut d) = d else {
            return Ok(None);
        };
        let meta = d.remove("metadata").unwrap_or(Value::Null);
        let data = match d.remove("data") {
            Some(Value::Object(m)) => m,
            _ => return Ok(None),
        };
        Ok(Some(Version {
            version: meta.get("version").and_then(Value::as_u64).unwrap_or(0),
            data,
            custom_metadata: custom(&meta),
        }))
    }

    /// Field names without values, and the version (`subkeys`, depth 1).
    pub fn subkeys(&self, path: &str) -> Result<Option<Subkeys>> {
        let url = format!("{}?depth=1", self.url("subkeys", path));
        let r = self.client.call(Method::Get, &url, None, true)?;
        if r.status == 404 {
            return Ok(None);
        }
        if !r.ok() {
            return Err(self.fail("read subkeys", path, &r));
        }
        let v = r.json(&self.client.location)?;
        let d = &v["data"];
        let Some(keys) = d["subkeys"].as_object() else {
            return Ok(None);
        };
        Ok(Some((
            d["metadata"]["version"].as_u64().unwrap_or(0),
            keys.keys().cloned().collect(),
            custom(&d["metadata"]),
        )))
    }

    /// The keys under a folder (`LIST`): secrets, and folders ending in `/`.
    /// A folder that does not exist lists as empty.
    pub fn list(&self, path: &str) -> Result<Vec<String>> {
        let base = if path.is_empty() {
            format!("{}/metadata/", encode_path(self.mount))
        } else {
            format!("{}/", self.url("metadata", path))
        };
        let r = self
            .client
            .call(Method::Get, &format!("{base}?list=true"), None, true)?;
        if r.status == 404 {
            return Ok(Vec::new());
        }
        if !r.ok() {
            return Err(self.fail("list", path, &r));
        }
        let v = r.json(&self.client.location)?;
        Ok(v["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Write `data` with check-and-set: `cas == 0` creates (POST), else a
    /// JSON merge patch against version `cas` (a `null` field removes it).
    /// Returns the version created.
    pub fn write(
        &self,
        path: &str,
        cas: u64,
        data: &Map<String, Value>,
    ) -> std::result::Result<u64, WriteError> {
        let method = if cas == 0 {
            Method::Post
        } else {
            Method::Patch
        };
        self.send(method, path, cas, data)
    }

    /// Write `data` as a whole new version on top of version `cas`, which
    /// must be deleted (a merge patch finds nothing to merge into): the
    /// secret someone soft-deleted that credshift writes anew.
    pub fn write_over_deleted(
        &self,
        path: &str,
        cas: u64,
        data: &Map<String, Value>,
    ) -> std::result::Result<u64, WriteError> {
        self.send(Method::Post, path, cas, data)
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        cas: u64,
        data: &Map<String, Value>,
    ) -> std::result::Result<u64, WriteError> {
        let body = Zeroizing::new(
            serde_json::to_vec(&json!({"options": {"cas": cas}, "data": data}))
                .map_err(|e| StoreError::Other(format!("encode request: {}", e.classify_text())))?,
        );
        let r = self
            .client
            .call(method, &self.url("data", path), Some(&body), true)?;
        if r.ok() {
            let v = r.json(&self.client.location)?;
            return v["data"]["version"].as_u64().ok_or_else(|| {
                WriteError::Other(StoreError::parse(
                    self.client.location.clone(),
                    "a write answered without a version",
                ))
            });
        }
        // KV answers a failed check-and-set with 400 and says so.
        if r.status == 400 && r.errors().contains("check-and-set") {
            return Err(WriteError::Cas);
        }
        // PATCH of a secret that is gone (deleted since it was read).
        if r.status == 404 && method == Method::Patch {
            return Err(WriteError::Cas);
        }
        if r.status == 403 {
            return Err(WriteError::Denied);
        }
        Err(WriteError::Other(self.fail("write", path, &r)))
    }

    pub fn metadata(&self, path: &str) -> Result<Option<Meta>> {
        let r = self
            .client
            .call(Method::Get, &self.url("metadata", path), None, true)?;
        if r.status == 404 {
            return Ok(None);
        }
        if !r.ok() {
            return Err(self.fail("read metadata", path, &r));
        }
        let v = r.json(&self.client.location)?;
        let d = &v["data"];
        let mut versions: Vec<(u64, bool)> = d["versions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        let live = !v["destroyed"].as_bool().unwrap_or(false)
                            && !deleted_now(v["deletion_time"].as_str().unwrap_or(""));
                        k.parse().ok().map(|n| (n, live))
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_unstable();
        let mut soft_deleted: Vec<u64> = d["versions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| {
                        !v["destroyed"].as_bool().unwrap_or(false)
                            && deleted_now(v["deletion_time"].as_str().unwrap_or(""))
                    })
                    .filter_map(|(k, _)| k.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        soft_deleted.sort_unstable();
        Ok(Some(Meta {
            current_version: d["current_version"].as_u64().unwrap_or(0),
            max_versions: d["max_versions"].as_u64().unwrap_or(0),
            versions,
            soft_deleted,
            custom_metadata: d["custom_metadata"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }))
    }

    /// The mount's `max_versions` (`MOUNT/config`; 0: KV's default, 10).
    pub fn mount_max_versions(&self) -> Result<u64> {
        let r = self
            .client
            .call(Method::Get, &format!("{}/config", self.mount), None, true)?;
        if !r.ok() {
            return Err(self.fail("read config", "", &r));
        }
        let v = r.json(&self.client.location)?;
        Ok(v["data"]["max_versions"].as_u64().unwrap_or(0))
    }

    /// Merge `custom` into the secret's custom_metadata (`null` removes a key).
    pub fn patch_custom_metadata(&self, path: &str, custom: &Map<String, Value>) -> Result<()> {
        let body = serde_json::to_vec(&json!({ "custom_metadata": custom }))
            .map_err(|e| StoreError::Other(format!("encode request: {}", e.classify_text())))?;
        let r = self.client.call(
            Method::Patch,
            &self.url("metadata", path),
            Some(&body),
            true,
        )?;
        if r.ok() {
            Ok(())
        } else {
            Err(self.fail("write metadata", path, &r))
        }
    }

    /// Destroy versions for good (their data is removed, not soft-deleted).
    pub fn destroy(&self, path: &str, versions: &[u64]) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&json!({ "versions": versions }))
            .map_err(|e| StoreError::Other(format!("encode request: {}", e.classify_text())))?;
        let r = self
            .client
            .call(Method::Post, &self.url("destroy", path), Some(&body), true)?;
        if r.ok() {
            Ok(())
        } else {
            Err(self.fail("destroy", path, &r))
        }
    }

    /// Soft-delete the latest version (what `kv delete` does): it reads as
    /// absent, and older versions stay as they are.
    pub fn delete_latest(&self, path: &str) -> Result<()> {
        let r = self
            .client
            .call(Method::Delete, &self.url("data", path), None, true)?;
        if r.ok() || r.status == 404 {
            Ok(())
        } else {
            Err(self.fail("delete", path, &r))
        }
    }

    /// Soft-delete exactly these versions (`kv delete -versions`): a
    /// version another client wrote since is not touched.
    pub fn delete_versions(&self, path: &str, versions: &[u64]) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&json!({ "versions": versions }))
            .map_err(|e| StoreError::Other(format!("encode request: {}", e.classify_text())))?;
        let r = self
            .client
            .call(Method::Post, &self.url("delete", path), Some(&body), true)?;
        if r.ok() || r.status == 404 {
            Ok(())
        } else {
            Err(self.fail("delete", path, &r))
        }
    }

    /// Remove a secret with all its versions and metadata.
    pub fn delete_all(&self, path: &str) -> Result<()> {
        let r = self
            .client
            .call(Method::Delete, &self.url("metadata", path), None, true)?;
        if r.ok() || r.status == 404 {
            Ok(())
        } else {
            Err(self.fail("delete metadata", path, &r))
        }
    }
}

/// A version's `deletion_time` says it is deleted now: set and not in the
/// future. `delete_version_after` (on the mount or the secret) gives every
/// version a future deletion time; such a version is live until then.
fn deleted_now(deletion_time: &str) -> bool {
    if deletion_time.is_empty() {
        return false;
    }
    match chrono::DateTime::parse_from_rfc3339(deletion_time) {
        Ok(t) => t <= chrono::Utc::now(),
        // Unreadable: deleted, the safe side for a write over it (a
        // check-and-set still guards it) and for a destroy (skipped).
        Err(_) => true,
    }
}

fn area_of(what: &str) -> &'static str {
    match what {
        "list" | "read metadata" | "write metadata" | "delete metadata" => "metadata",
        "read subkeys" => "subkeys",
        "destroy" => "destroy",
        _ => "data",
    }
}

/// The ACL capability a request needs (what a 403 says is missing).
fn capability_of(what: &str) -> &'static str {
    match what {
        "list" => "list",
        "write metadata" => "patch",
        "delete" | "delete metadata" => "delete",
        "destroy" | "write" => "update",
        _ => "read",
    }
}

fn custom(meta: &Value) -> Map<String, Value> {
    meta["custom_metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// serde_json's error category, without its text (which may quote input).
trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "EOF",
        }
    }
}

/// The mount holding `path` and its KV version. A token that may not ask
/// (`403`) gets the first segment as the mount and no version.
pub fn find_mount(client: &Client, path: &str) -> Result<Mount> {
    let r = client.call(
        Method::Get,
        &format!("sys/internal/ui/mounts/{}", encode_path(path)),
        None,
        true,
    )?;
    if r.ok() {
        let v = r.json(&client.location)?;
        let d = &v["data"];
        let mount = d["path"]
            .as_str()
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        if !mount.is_empty() {
            if d["type"]
                .as_str()
                .is_some_and(|t| t != "kv" && t != "generic")
            {
                return Err(StoreError::Other(format!(
                    "{}: {mount} is a {} mount, not a KV mount",
                    client.location,
                    d["type"].as_str().unwrap_or("?")
                )));
            }
            let version = d["options"]["version"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            return Ok(Mount {
                path: mount,
                kv_version: Some(version),
            });
        }
    }
    if r.status == 503 {
        return Err(StoreError::Unavailable {
            store: client.location.clone(),
            reason: format!("HTTP 503 ({})", r.errors()),
        });
    }
    Ok(Mount {
        path: path.split('/').next().unwrap_or("").to_string(),
        kv_version: None,
    })
}
