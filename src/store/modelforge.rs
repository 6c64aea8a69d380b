//! `modelforge:PATH`: model-forge's `config.json`.
//!
//! Secrets live under `providers.<name>.auth_data`; the id is
//! `<provider>/<path>`. `api_key`, `access_token` and `refresh_token` are
//! the fields model-forge writes. Any other string of `auth_data`, at any
//! depth, is treated as a secret too unless its key is one of the known
//! non-secret fields (`token_type`, `scope`, `expires_at`, ...): a field we
//! do not know is safer listed as a masked secret than shown in clear as
//! metadata. Nested ones are named by their path (`P/oauth.refresh_token`,
//! `P/client_secrets.0`) and written back to the same place. Deleting one
//! removes that field (an array slot becomes `null`, so indices keep their
//! meaning); a nested object or array, and `auth_data` itself, goes only
//! when no secret is left in it.
//! Everything else in `auth_data` (non-secret fields, numbers, objects) is
//! the metadata of each of the provider's secrets.
//!
//! A write edits the parsed JSON and rewrites the whole file atomically:
//! every other part keeps its meaning and key order (serde_json's
//! `preserve_order`), with the file's indentation. Only the known
//! non-secret metadata fields are written back into `auth_data`; other
//! metadata has no place in model-forge's format, so this store does not
//! keep arbitrary metadata.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::scrub::{self, Seg, wipe_json};
use crate::store::dotenv::nearest_existing_dir;
use crate::store::{
    Capability, DeleteIf, Listing, LocationError, Replace, ReplaceIf, Scan, Store, StoreSpec,
    plaintext_file_warnings,
};
use crate::unlock::KeyOptions;

/// `auth_data` fields model-forge uses that never hold a secret.
const NON_SECRET_FIELDS: &[&str] = &[
    "token_type",
    "scope",
    "scopes",
    "expires_in",
    "expires_at",
    "refresh_expires_in",
    "issued_at",
    "obtained_at",
    "created_at",
    "updated_at",
];

/// model-forge's per-project config, relative to the directory it runs in
/// (its `config.py`: `Path.cwd() / ".model-forge" / "config.json"`).
pub const LOCAL_CONFIG: &str = ".model-forge/config.json";
/// model-forge's per-user config, relative to the home directory.
pub const GLOBAL_CONFIG: &str = ".config/model-forge/config.json";

/// Which of its two config files model-forge reads when started in `cwd`
/// with `home`: the local one when it exists, else the global one (its
/// `get_config_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocations {
    pub local: PathBuf,
    pub global: PathBuf,
    pub in_use: PathBuf,
}

impl ConfigLocations {
    pub fn new(cwd: &Path, home: Option<&Path>) -> ConfigLocations {
        let local = cwd.join(LOCAL_CONFIG);
        let global = home.map_or_else(
            || PathBuf::from("~").join(GLOBAL_CONFIG),
            |h| h.join(GLOBAL_CONFIG),
        );
        let in_use = if local.is_file() {
            local.clone()
        } else {
            global.clone()
        };
        ConfigLocations {
            local,
            global,
            in_use,
        }
    }

    /// For this process: its working directory and home.
    pub fn here() -> ConfigLocations {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        ConfigLocations::new(&cwd, dirs::home_dir().as_deref())
    }

    /// Whether `path` is the file model-forge reads (compared by canonical
    /// path when both exist, else as absolute paths).
    pub fn is_in_use(&self, path: &Path) -> bool {
        same_file(path, &self.in_use)
    }

    /// What model-forge would read instead of `path`, when that is another file.
    pub fn shadowed_by(&self, path: &Path) -> Option<&Path> {
        (!self.is_in_use(path) && same_file(path, &self.global)).then_some(self.in_use.as_path())
    }
}

/// For `status`: which file model-forge run here reads, when `spec` is one
/// of its configs (`None` for any other store).
pub fn in_use_note(spec: &StoreSpec, mf: &ConfigLocations) -> Option<String> {
    let StoreSpec::ModelForge(path) = spec else {
        return None;
    };
    if mf.is_in_use(path) {
        Some("model-forge run here reads this file".into())
    } else if mf.shadowed_by(path).is_none() {
        Some(format!(
            "model-forge run here reads {}, not this file",
            mf.in_use.display()
        ))
    } else {
        None
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

pub fn open(spec: &StoreSpec, _opts: &KeyOptions) -> Result<Box<dyn Store>> {
    let StoreSpec::ModelForge(path) = spec else {
        return Err(StoreError::Other(format!(
            "{spec} is not a modelforge spec"
        )));
    };
    Ok(Box::new(ModelForgeStore {
        spec: spec.clone(),
        path: path.clone(),
        lock: Mutex::new(()),
    }))
}

pub struct ModelForgeStore {
    spec: StoreSpec,
    path: PathBuf,
    lock: Mutex<()>,
}

fn kind_of(field: &str) -> Kind {
    match field {
        "api_key" => Kind::ApiKey,
        "access_token" => Kind::OauthAccess,
        "refresh_token" => Kind::OauthRefresh,
        other => Kind::guess(other),
    }
}

fn is_secret_field(name: &str, v: &Value) -> bool {
    v.is_string() && !NON_SECRET_FIELDS.contains(&name)
}

/// Every string leaf of `auth_data` that is a secret item, by its path
/// (`api_key`, `oauth.refresh_token`, `client_secrets.0`): any string whose
/// own key (for an array element, its array's key) is not a known
/// non-secret field, at any depth. Leaves a path cannot name (a key with
/// `.` or made of digits) go to `unaddressable`.
fn secret_leaves(auth: &Value) -> (Vec<Vec<Seg>>, Vec<String>) {
    fn walk(
        v: &Value,
        key: &str,
        path: &mut Vec<Seg>,
        out: &mut Vec<Vec<Seg>>,
        bad: &mut Vec<String>,
    ) {
        match v {
            Value::String(_) if !path.is_empty() && is_secret_field(key, v) => {
                let addressable = path.iter().all(|s| match s {
                    Seg::Key(k) => scrub::parse_path(k)
                        .is_some_and(|p| p.len() == 1 && matches!(p[0], Seg::Key(_))),
                    Seg::Index(_) => true,
                });
                if addressable {
                    out.push(path.clone());
                } else {
                    bad.push(scrub::path_text(path));
                }
            }
            Value::Object(o) => {
                for (k, child) in o {
                    path.push(Seg::Key(k.clone()));
                    walk(child, k, path, out, bad);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk(child, key, path, out, bad);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    walk(auth, "", &mut Vec::new(), &mut out, &mut bad);
    (out, bad)
}

/// The `auth_data` path an id name stands for, when it can hold a secret.
fn item_path(name: &str) -> Option<Vec<Seg>> {
    let path = scrub::parse_path(name)?;
    if !matches!(path.first(), Some(Seg::Key(_))) {
        return None;
    }
    let leaf_key = path.iter().rev().find_map(|s| match s {
        Seg::Key(k) => Some(k.as_str()),
        Seg::Index(_) => None,
    })?;
    (!NON_SECRET_FIELDS.contains(&leaf_key)).then_some(path)
}

/// Known non-secret fields, and plain numbers/booleans. Objects and arrays
/// under other names stay in the file but are not shown: they could hold a
/// token under a name we cannot recognise.
fn shown_as_metadata(name: &str, v: &Value) -> bool {
    NON_SECRET_FIELDS.contains(&name)
        || matches!(v, Value::Number(_) | Value::Bool(_) | Value::Null)
}

/// The parsed file. `Value` holds secrets; the raw text is zeroized.
struct Config {
    root: Value,
    indent: usize,
    trailing_newline: bool,
}

impl Config {
    fn parse(path: &Path, bytes: Vec<u8>) -> Result<Config> {
        let text = Zeroizing::new(fsutil::decode_text(path, bytes)?);
        let root: Value = serde_json::from_str(&text)
            .map_err(|e| StoreError::json(path.display().to_string(), &e))?;
        if !root.is_object() {
            return Err(StoreError::parse(
                path.display().to_string(),
                "expected a JSON object at the top level",
            ));
        }
        let indent = detect_indent(&text, 4);
        Ok(Config {
            root,
            indent,
            trailing_newline: text.ends_with('\n'),
        })
    }

    fn new_file() -> Config {
        Config {
            root: Value::Object(Map::new()),
            indent: 4,
            trailing_newline: true,
        }
    }

    /// Every secret, and the places that are not shaped as expected.
    fn scan(&self, path: &Path) -> Scan {
        let mut scan = Scan::default();
        let loc = |what: &str| format!("{}: {what}", path.display());
        let Some(providers) = self.root.get("providers") else {
            return scan;
        };
        let Some(providers) = providers.as_object() else {
            scan.errors.push(LocationError {
                severity: crate::store::Severity::Error,
                location: loc("providers"),
                error: "expected an object".into(),
            });
            return scan;
        };
        for (name, provider) in providers {
            let Some(auth) = provider.get("auth_data") else {
                continue;
            };
            let Some(auth) = auth.as_object() else {
                if !auth.is_null() {
                    scan.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: loc(&format!("providers.{name}.auth_data")),
                        error: "expected an object".into(),
                    });
                }
                continue;
            };
            let metadata: Metadata = auth
                .iter()
                .filter(|(k, v)| shown_as_metadata(k, v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let whole = Value::Object(auth.clone());
            let (leaves, _) = secret_leaves(&whole);
            for path in leaves {
                if let Some(s) = scrub::get(&whole, &path).and_then(Value::as_str) {
                    let field = scrub::path_text(&path);
                    scan.credentials.push(Credential {
                        kind: kind_of(&field),
                        id: CredentialId::new(name.clone(), field),
                        secret: Secret::new(s),
                        metadata: metadata.clone(),
                    });
                }
            }
            let mut whole = whole;
            wipe_json(&mut whole);
        }
        scan
    }

    fn providers_mut(&mut self) -> Result<&mut Map<String, Value>> {
        let root = self
            .root
            .as_object_mut()
            .ok_or_else(|| StoreError::Other("config root is not an object".into()))?;
        let providers = root
            .entry("providers")
            .or_insert_with(|| Value::Object(Map::new()));
        if providers.is_null() {
            *providers = Value::Object(Map::new());
        }
        providers
            .as_object_mut()
            .ok_or_else(|| StoreError::Other("`providers` is not an object".into()))
    }

    fn set(&mut self, c: &Credential) -> Result<()> {
        let providers = self.providers_mut()?;
        let provider = providers
            .entry(c.id.namespace.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let provider = provider
            .as_object_mut()
            .ok_or_else(|| StoreError::item(&c.id, "the provider entry is not an object"))?;
        let auth = provider
            .entry("auth_data")
            .or_insert_with(|| Value::Object(Map::new()));
        if auth.is_null() {
            *auth = Value::Object(Map::new());
        }
        let auth = auth
            .as_object_mut()
            .ok_or_else(|| StoreError::item(&c.id, "auth_data is not an object"))?;
        let path = item_path(&c.id.name).ok_or_else(|| {
            StoreError::item(&c.id, "not a place in auth_data that can hold a secret")
        })?;
        let mut tree = Value::Object(std::mem::take(auth));
        let put = scrub::set(
            &mut tree,
            &path,
            Value::String(c.secret.expose().to_string()),
        );
        if let Value::Object(o) = tree {
            *auth = o;
        }
        put.map_err(|e| StoreError::item(&c.id, format!("cannot be put back: {e}")))?;
        for (k, v) in &c.metadata {
            if NON_SECRET_FIELDS.contains(&k.as_str()) {
                auth.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: &CredentialId) -> bool {
        let Some(providers) = self
            .root
            .get_mut("providers")
            .and_then(Value::as_object_mut)
        else {
            return false;
        };
        let Some(provider) = providers
            .get_mut(id.namespace.as_str())
            .and_then(Value::as_object_mut)
        else {
            return false;
        };
        let Some(auth) = provider.get_mut("auth_data").and_then(Value::as_object_mut) else {
            return false;
        };
        let Some(path) = item_path(&id.name) else {
            return false;
        };
        let mut tree = Value::Object(std::mem::take(auth));
        let removed = scrub::get(&tree, &path).is_some_and(Value::is_string)
            && scrub::remove(&mut tree, &path);
        if removed {
            // Containers on the path left with no secret item go too; one
            // that still holds one (migrated or not) stays.
            for depth in (1..path.len()).rev() {
                let inner = &path[..depth];
                let empty = scrub::get(&tree, inner).is_some_and(|c| {
                    let (leaves, bad) = secret_leaves(c);
                    leaves.is_empty() && bad.is_empty()
                });
                if !empty {
                    break;
                }
                let (last, outer) = inner.split_last().expect("depth >= 1");
                match (scrub::get_mut(&mut tree, outer), last) {
                    (Some(Value::Object(o)), Seg::Key(k)) => {
                        o.shift_remove(k);
                    }
                    (Some(Value::Array(a)), Seg::Index(i)) if *i < a.len() => {
                        a[*i] = Value::Null;
                        while a.last().is_some_and(Value::is_null) {
                            a.pop();
                        }
                    }
                    _ => break,
                }
            }
        }
        if let Value::Object(o) = tree {
            *auth = o;
        }
        if !removed {
            return false;
        }
        // auth_data left with no secret is stale expiry data: drop it, and a
        // provider entry that then holds nothing at all.
        let (leaves, bad) = secret_leaves(&Value::Object(auth.clone()));
        if leaves.is_empty() && bad.is_empty() {
            provider.shift_remove("auth_data");
            if provider.is_empty() {
                providers.shift_remove(id.namespace.as_str());
            }
        }
        true
    }

    fn render(&self) -> Result<Zeroizing<Vec<u8>>> {
        render_json(&self.root, self.indent, self.trailing_newline)
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        wipe_json(&mut self.root);
    }
}

/// The indentation a JSON file uses (spaces on its second line), else `default`.
pub(crate) fn detect_indent(text: &str, default: usize) -> usize {
    text.lines()
        .nth(1)
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Pretty JSON with `indent` spaces, into a zeroizing buffer (it holds secrets).
pub(crate) fn render_json(
    v: &Value,
    indent: usize,
    trailing_newline: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    use serde::Serialize;
    let indent = vec![b' '; indent];
    let mut out = Zeroizing::new(Vec::new());
    let fmt = serde_json::ser::PrettyFormatter::with_indent(&indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, fmt);
    v.serialize(&mut ser)
        .map_err(|_| StoreError::Other("JSON could not be serialized".into()))?;
    if trailing_newline {
        out.push(b'\n');
    }
    Ok(out)
}

impl ModelForgeStore {
    fn load(&self) -> Result<Option<Config>> {
        fsutil::read_if_exists(&self.path)?
            .map(|bytes| Config::parse(&self.path, bytes))
            .transpose()
    }

    fn load_existing(&self) -> Result<Config> {
        self.load()?.ok_or_else(|| StoreError::NotFound {
            location: self.path.display().to_string(),
            hint: "no model-forge config.json there".into(),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for ModelForgeStore {
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        crate::store::path_identity(self.spec())
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// Every batch rewrites the whole file.
    fn batch_hint(&self) -> crate::store::BatchHint {
        crate::store::BatchHint::WholeFile
    }

    fn probe(&self) -> Capability {
        let mut cap = Capability::persistent_store(false, false);
        match self.load() {
            Ok(Some(cfg)) => {
                let scan = cfg.scan(&self.path);
                cap.exists = true;
                cap.item_count = Some(scan.credentials.len());
                cap.writable = fsutil::writable(&self.path)
                    && fsutil::dir_writable(&fsutil::parent_dir(&self.path));
                cap.warnings = plaintext_file_warnings(&self.path);
                if let Some(other) = ConfigLocations::here().shadowed_by(&self.path) {
                    cap.warnings.push(format!(
                        "model-forge run in this directory reads {} instead of this file \
                         (a local .model-forge/config.json takes precedence)",
                        other.display()
                    ));
                }
                cap.warnings.extend(
                    scan.errors
                        .iter()
                        .map(|e| format!("{}: {}", e.location, e.error)),
                );
            }
            Ok(None) => {
                cap.item_count = Some(0);
                cap.writable = fsutil::dir_writable(&nearest_existing_dir(&self.path));
            }
            Err(e) => {
                cap.available = false;
                cap.readable = false;
                cap.exists = self.path.exists();
                cap.reason = Some(e.to_string());
            }
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        self.read_all().map(Listing::from)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let Some(cfg) = self.load()? else {
            return Ok(None);
        };
        Ok(cfg
            .scan(&self.path)
            .credentials
            .into_iter()
            .find(|c| &c.id == id))
    }

    /// One parse for the whole batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let cfg = match self.load() {
            Ok(Some(cfg)) => cfg,
            Ok(None) => return ids.iter().map(|_| Ok(None)).collect(),
            Err(e) => {
                return ids.iter().map(|_| Err(e.duplicate())).collect();
            }
        };
        let found: std::collections::HashMap<CredentialId, Credential> = cfg
            .scan(&self.path)
            .credentials
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        ids.iter().map(|id| Ok(found.get(id).cloned())).collect()
    }

    fn read_all(&self) -> Result<Scan> {
        Ok(self.load_existing()?.scan(&self.path))
    }

    fn check(&self, c: &Credential) -> Option<String> {
        if item_path(&c.id.name).is_none() {
            return Some(format!(
                "{}: `{}` is not a secret field of model-forge's auth_data \
                 (a known non-secret field, or not a path such as `oauth.refresh_token`)",
                c.id, c.id.name
            ));
        }
        None
    }

    fn unmigrated(&self) -> Vec<String> {
        let Ok(Some(cfg)) = self.load() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(providers) = cfg.root.get("providers").and_then(Value::as_object) {
            for (name, provider) in providers {
                if let Some(auth) = provider.get("auth_data").filter(|a| a.is_object()) {
                    for f in secret_leaves(auth).1 {
                        out.push(format!(
                            "{}: providers.{name}.auth_data.{f}",
                            self.path.display()
                        ));
                    }
                }
            }
        }
        out
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or(Ok(()))
    }

    /// One parse and one atomic rewrite for the whole batch.
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let _g = self.guard();
        fsutil::rewrite_batch(
            creds,
            self.load().map(|c| c.unwrap_or_else(Config::new_file)),
            |cfg, c| match self.check(c) {
                Some(reason) => Err(StoreError::item(&c.id, reason)),
                None => cfg.set(c),
            },
            |cfg| {
                cfg.render()
                    .and_then(|bytes| fsutil::atomic_write(&self.path, &bytes))
            },
            |e, c| StoreError::item(&c.id, e.to_string()),
        )
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(false))
    }

    /// One parse and at most one atomic rewrite for the whole batch.
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let _g = self.guard();
        let mut cfg = match self.load() {
            Ok(Some(cfg)) => cfg,
            Ok(None) => return ids.iter().map(|_| Ok(false)).collect(),
            Err(e) => return ids.iter().map(|_| Err(e.duplicate())).collect(),
        };
        let found: Vec<bool> = ids.iter().map(|id| cfg.remove(id)).collect();
        if !found.contains(&true) {
            return found.into_iter().map(Ok).collect();
        }
        match cfg
            .render()
            .and_then(|bytes| fsutil::atomic_write(&self.path, &bytes))
        {
            Ok(()) => found.into_iter().map(Ok).collect(),
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    /// As [`Self::delete_if_unchanged`]: one parse, each item compared with
    /// the file as just parsed, one atomic rewrite, under this store's lock.
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let _g = self.guard();
        fsutil::rewrite_batch(
            items,
            self.load().map(|c| c.unwrap_or_else(Config::new_file)),
            |cfg, r| {
                let now = cfg
                    .scan(&self.path)
                    .credentials
                    .into_iter()
                    .find(|c| c.id == r.new.id);
                if !r.holds(now.as_ref()) {
                    return Ok(ReplaceIf::Changed);
                }
                match self.check(&r.new) {
                    Some(reason) => Err(StoreError::item(&r.new.id, reason)),
                    None => cfg.set(&r.new).map(|_| ReplaceIf::Replaced),
                }
            },
            |cfg| {
                cfg.render()
                    .and_then(|bytes| fsutil::atomic_write(&self.path, &bytes))
            },
            |e, r| StoreError::item(&r.new.id, e.to_string()),
        )
    }

    /// One parse, the comparison against the file as just parsed, and at
    /// most one atomic rewrite, under this store's lock: nothing comes
    /// between the comparison and the rename but rendering the new text.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let _g = self.guard();
        let mut cfg = match self.load() {
            Ok(Some(cfg)) => cfg,
            Ok(None) => return expected.iter().map(|_| Ok(DeleteIf::Absent)).collect(),
            Err(e) => return expected.iter().map(|_| Err(e.duplicate())).collect(),
        };
        let mut now: std::collections::HashMap<CredentialId, Credential> = cfg
            .scan(&self.path)
            .credentials
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let out: Vec<DeleteIf> = expected
            .iter()
            .map(|want| match now.get(&want.id) {
                None => DeleteIf::Absent,
                Some(c) if !c.same_as(want) => DeleteIf::Changed,
                Some(_) => {
                    // A repeated id is deleted by its first mention only.
                    now.remove(&want.id);
                    if cfg.remove(&want.id) {
                        DeleteIf::Deleted
                    } else {
                        DeleteIf::Absent
                    }
                }
            })
            .collect();
        if !out.contains(&DeleteIf::Deleted) {
            return out.into_iter().map(Ok).collect();
        }
        match cfg
            .render()
            .and_then(|bytes| fsutil::atomic_write(&self.path, &bytes))
        {
            Ok(()) => out.into_iter().map(Ok).collect(),
            Err(e) => expected.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"{
    "providers": {
        "gh": {
            "llm_type": "github_copilot",
            "auth_data": {
                "access_token": "gho_abcdefghijklmnopqrstuvwxyz",
                "token_type": "bearer",
                "expires_in": 28800,
                "expires_at": "2026-09-21T12:00:00+00:00"
            }
        },
        "ollama": { "base_url": "http://localhost:11434" }
    },
    "zeta": 1,
    "alpha": 2
}
"#;

    fn store_at(path: &Path) -> Box<dyn Store> {
        open(
            &StoreSpec::ModelForge(path.to_path_buf()),
            &KeyOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn secrets_and_metadata_come_from_auth_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, FIXTURE).unwrap();
        let scan = store_at(&p).read_all().unwrap();
        assert_eq!(scan.credentials.len(), 1);
        let c = &scan.credentials[0];
        assert_eq!(c.id.to_string(), "gh/access_token");
        assert_eq!(c.kind, Kind::OauthAccess);
        assert_eq!(c.metadata["token_type"], "bearer");
        assert_eq!(c.metadata["expires_at"], "2026-09-21T12:00:00+00:00");
        assert!(!c.metadata.contains_key("access_token"));
    }

    #[test]
    fn write_keeps_everything_else_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, FIXTURE).unwrap();
        let s = store_at(&p);
        s.write(&Credential::new(
            "ollama/api_key".parse().unwrap(),
            Kind::ApiKey,
            "sk-new",
        ))
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["providers", "zeta", "alpha"]);
        assert_eq!(
            v["providers"]["ollama"]["base_url"],
            "http://localhost:11434"
        );
        assert_eq!(v["providers"]["ollama"]["auth_data"]["api_key"], "sk-new");
        assert!(text.starts_with("{\n    \"providers\""), "{text}");
        // Delete takes the auth_data it created with it.
        assert!(s.delete(&"ollama/api_key".parse().unwrap()).unwrap());
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert!(v["providers"]["ollama"].get("auth_data").is_none());
        assert_eq!(
            v["providers"]["ollama"]["base_url"],
            "http://localhost:11434"
        );
    }

    #[test]
    fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, FIXTURE).unwrap();
        let s = store_at(&p);
        crate::store::test_support::assert_compare_and_delete_keeps_a_racing_write(
            s.as_ref(),
            store_at(&p),
            &Credential::new("ollama/api_key".parse().unwrap(), Kind::ApiKey, "sk-1"),
            &Credential::new("ollama/api_key".parse().unwrap(), Kind::ApiKey, "sk-2"),
        );
        assert_eq!(s.read_all().unwrap().credentials.len(), 1);
    }

    #[test]
    fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, FIXTURE).unwrap();
        let s = store_at(&p);
        let c = |v: &str| Credential::new("ollama/api_key".parse().unwrap(), Kind::ApiKey, v);
        crate::store::test_support::assert_compare_and_replace_keeps_a_racing_write(
            s.as_ref(),
            store_at(&p),
            &c("sk-ours"),
            &c("sk-old"),
            &c("sk-theirs"),
        );
    }

    #[test]
    fn non_secret_fields_cannot_be_written_as_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_at(&dir.path().join("config.json"));
        let c = Credential::new("gh/token_type".parse().unwrap(), Kind::Other, "x");
        assert!(s.check(&c).is_some());
        assert!(s.write(&c).is_err());
    }
}
