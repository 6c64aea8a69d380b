//! `vault:URL/MOUNT[/PREFIX]` (alias `openbao:`): HashiCorp Vault or OpenBao
//! KV v2, over its HTTP API ([`http`], [`kv`]).
//!
//! Layout (see [`spec::Layout`]): by default a credential `namespace/name`
//! is the field `name` of the secret at `PREFIX/namespace`; `?layout=item`
//! puts each credential at `PREFIX/namespace/name`, field `value`.
//! Each field's kind and scrubbed metadata go to the secret's
//! `custom_metadata` under `cs:FIELD` (as JSON) and credshift's
//! provenance under `credshift` (time, the versions credshift wrote), as far
//! as KV's limits allow (64 keys, 512-byte values); what does not fit is
//! dropped, so the probe says metadata is not kept.
//!
//! Safe writes: a secret never seen is created with `cas: 0`; one seen (at
//! plan time, by this store's reads) is merge-patched with `cas` = the
//! version seen, so anyone's change since is a conflict, never clobbered;
//! fields credshift does not write are never touched. The version each
//! write creates is remembered and read back exactly ([`Store::read_many`]).
//! A migration's write destroys nothing: the version it replaces stays in
//! the history, as after any client's write. Removing a field (rollback of
//! a created item, cleanup of a source) patches it out and destroys the
//! versions holding its value; a rollback restoring an overwritten value
//! destroys the versions holding the value it takes back, from credshift's
//! first write of it on ([`ops`]). Concurrent runs exclude each other
//! through a lock secret ([`lock`]).

pub mod http;
pub mod kv;
#[cfg(test)]
mod live_tests;
mod lock;
mod destroy;
mod ops;
pub mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::credential::{Credential, CredentialId, Kind, Metadata};
use crate::error::{Result, StoreError};
use crate::store::{Capability, Entry, Listing, LocationError, Scan, Store, StoreLock, StoreSpec};
use crate::unlock::KeyOptions;
use http::{Client, Method};
use kv::{Kv, Mount};
pub use spec::{ITEM_FIELD, Layout, VaultSpec};

/// The lock secret's name under the prefix; never listed as a credential.
pub const LOCK_NAME: &str = ".credshift-lock";
/// A value larger than this cannot go into one KV entry (raft's 1 MiB
/// entry limit, with room for the other fields and JSON).
pub const MAX_VALUE_LEN: usize = 512 * 1024;
/// What one secret (all its fields) may hold in the default layout: raft
/// stores a version as one entry of at most 1 MiB, with JSON around it.
pub const MAX_SECRET_LEN: usize = 900 * 1024;

pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(VaultStore::new(spec, opts)?))
}

/// The spec's text after `vault:`/`openbao:`, parsed.
pub fn parse_spec(spec: &StoreSpec) -> Result<VaultSpec> {
    let raw = spec.raw();
    raw.split_once(':')
        .and_then(|(_, rest)| spec::parse(rest))
        .ok_or_else(|| StoreError::Other(format!("{spec}: not a vault: spec")))
}

#[derive(Default)]
struct State {
    /// Secret path -> the version this store last saw or wrote (0: absent).
    seen: HashMap<String, u64>,
    /// Secret path -> the version this store's last write there created
    /// and the fields it wrote: the next read of one of those fields (the
    /// engine's read-back) reads exactly that version, once. Every other
    /// read reads the latest version, so a value or field another client
    /// wrote since is seen.
    written: HashMap<String, Written>,
    /// Secret path -> the newest version this store wrote there: a read
    /// answering an older one came from a node that has not applied it
    /// yet, and is asked again for a while.
    floor: HashMap<String, u64>,
    /// Fields that hold no string (not credentials), as `path: field`.
    unmigrated: Vec<String>,
    /// A full scan ran: a path it did not see was absent then.
    scanned: bool,
    /// Namespace -> field -> bytes, of what the secret holds and what the
    /// plan adds (default layout), to refuse a secret past one KV entry.
    sizes: HashMap<String, HashMap<String, usize>>,
    /// Secret path -> the version read at plan time and its
    /// custom_metadata (not secret), so an overwrite need not read again.
    custom: HashMap<String, (u64, Map<String, Value>)>,
    /// Secret path -> its version before this store's first write, and
    /// whether max_versions pruning was noted (see `ops::note_pruning`).
    before_run: HashMap<String, (u64, bool)>,
    /// The mount's max_versions, read once when needed (0: KV's 10).
    mount_max_versions: Option<u64>,
    /// The migration writing here, for the provenance entry.
    provenance: Option<crate::store::Provenance>,
}

/// What the read-back of a write reads (see `State::written`).
struct Written {
    version: u64,
    fields: std::collections::HashSet<String>,
}

pub struct VaultStore {
    spec: StoreSpec,
    vs: VaultSpec,
    client: Arc<Client>,
    mount: Mutex<Option<Mount>>,
    state: Mutex<State>,
    /// What a removal or restore could not do as the docs say (a version
    /// kept in the history, a destroy refused), for the report: the lock
    /// this store hands out carries them (no secret in them).
    notes: Arc<Mutex<Vec<String>>>,
}

impl VaultStore {
    pub fn new(spec: &StoreSpec, opts: &KeyOptions) -> Result<Self> {
        let vs = parse_spec(spec)?;
        let client = Client::new(&vs.addr, spec.to_string(), opts.vault_token_file.as_deref())?;
        Ok(VaultStore {
            spec: spec.clone(),
            vs,
            client: Arc::new(client),
            mount: Mutex::new(None),
            state: Mutex::new(State::default()),
            notes: Arc::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mount (looked up once) and the prefix under it.
    fn mount(&self) -> Result<(String, String)> {
        let mut cached = self.mount.lock().unwrap_or_else(|p| p.into_inner());
        if cached.is_none() {
            let m = kv::find_mount(&self.client, &self.vs.path)?;
            if m.kv_version == Some(1) {
                return Err(StoreError::Unavailable {
                    store: self.spec.to_string(),
                    reason: format!(
                        "{} is a KV version 1 mount: credshift writes only KV v2 (check-and-set, \
                         versions, destroy); upgrade it with `bao kv enable-versioning {}`",
                        m.path, m.path
                    ),
                });
            }
            *cached = Some(m);
        }
        let m = cached.as_ref().expect("set above");
        let prefix = self
            .vs
            .path
            .strip_prefix(m.path.as_str())
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        Ok((m.path.clone(), prefix))
    }

    /// A stable, secret-free name for the place this store writes to: the
    /// cluster's id (from `sys/health`, else `sys/leader`), the namespace,
    /// the mount and the prefix. Two specs naming one cluster through
    /// different addresses get the same key.
    pub fn identity_key(&self) -> Result<String, StoreError> {
        let mut cluster = String::new();
        for (path, field, auth) in [
            (
                "sys/health?standbyok=true&perfstandbyok=true",
                "cluster_id",
                false,
            ),
            ("sys/leader", "leader_cluster_address", true),
        ] {
            let r = self.client.call(Method::Get, path, None, auth)?;
            let v = r.json(&self.client.location).unwrap_or(Value::Null);
            if let Some(id) = v[field].as_str().filter(|s| !s.is_empty()) {
                cluster = id.to_string();
                break;
            }
        }
        if cluster.is_empty() {
            return Err(StoreError::Unavailable {
                store: self.spec.to_string(),
                reason: "neither sys/health nor sys/leader named the cluster".into(),
            });
        }
        let (mount, prefix) = self.mount()?;
        let ns = std::env::var("VAULT_NAMESPACE")
            .or_else(|_| std::env::var("BAO_NAMESPACE"))
            .unwrap_or_default();
        // No layout in the key: both layouts write below one prefix, so
        // they are one store to the same-store check and the journal.
        Ok(format!(
            "vault:{cluster}/{}/{mount}/{prefix}",
            ns.trim_matches('/')
        ))
    }

    /// The secret path (under the mount) and field of a credential, or why
    /// it has none.
    fn place(&self, prefix: &str, id: &CredentialId) -> Result<(String, String), String> {
        let bad = |s: &str| s.is_empty() || s == "." || s == "..";
        if bad(&id.namespace) || id.namespace.starts_with(".credshift") {
            return Err(format!(
                "namespace {:?} cannot be a Vault path",
                id.namespace
            ));
        }
        let (rel, field) = match self.vs.layout {
            Layout::Secret => (id.namespace.to_string(), id.name.to_string()),
            Layout::Item => {
                if id.name.split('/').any(bad) {
                    return Err(format!("name {:?} cannot be a Vault path", id.name));
                }
                (format!("{}/{}", id.namespace, id.name), ITEM_FIELD.into())
            }
        };
        Ok((join(prefix, &rel), field))
    }

    fn kv<'a>(&'a self, mount: &'a str) -> Kv<'a> {
        Kv {
            client: &self.client,
            mount,
        }
    }

    /// Every secret path under the prefix that holds credentials.
    fn secret_paths(&self, kv: &Kv, prefix: &str) -> Result<Vec<String>> {
        let top = kv.list(prefix)?;
        let nothing = top.is_empty();
        let mut out = Vec::new();
        match self.vs.layout {
            Layout::Secret => {
                for k in top {
                    if !k.ends_with('/') && !k.starts_with(".credshift") {
                        out.push(join(prefix, &k));
                    }
                }
            }
            Layout::Item => {
                let mut dirs: Vec<String> = top
                    .into_iter()
                    .filter(|k| k.ends_with('/') && !k.starts_with(".credshift"))
                    .map(|k| join(prefix, k.trim_end_matches('/')))
                    .collect();
                while let Some(dir) = dirs.pop() {
                    for k in kv.list(&dir)? {
                        if let Some(d) = k.strip_suffix('/') {
                            dirs.push(join(&dir, d));
                        } else {
                            out.push(join(&dir, &k));
                        }
                    }
                }
            }
        }
        out.sort();
        if nothing {
            // Nothing under the prefix: a target created on first write.
            return Err(StoreError::NotFound {
                location: self.spec.to_string(),
                hint: "no secrets under this prefix yet".into(),
            });
        }
        Ok(out)
    }

    /// The credential ids a secret path holds, given its field names.
    fn ids_at(&self, prefix: &str, path: &str, fields: &[String]) -> Vec<(CredentialId, String)> {
        let rel = path
            .strip_prefix(prefix)
            .unwrap_or(path)
            .trim_start_matches('/');
        match self.vs.layout {
            Layout::Secret => fields
                .iter()
                .map(|f| (CredentialId::new(rel, f.clone()), f.clone()))
                .collect(),
            Layout::Item => match rel.split_once('/') {
                Some((ns, name)) if fields.iter().any(|f| f == ITEM_FIELD) => {
                    vec![(CredentialId::new(ns, name), ITEM_FIELD.to_string())]
                }
                _ => Vec::new(),
            },
        }
    }

    /// The credentials in one version of a secret; non-string fields are
    /// noted as unmigrated (`MOUNT/PATH: FIELD`, the path `bao kv get`
    /// takes).
    fn creds_of(&self, mount: &str, prefix: &str, path: &str, v: &kv::Version) -> Vec<Credential> {
        let fields: Vec<String> = v.data.keys().cloned().collect();
        let mut out = Vec::new();
        for (id, field) in self.ids_at(prefix, path, &fields) {
            match v.data.get(&field) {
                Some(Value::String(s)) => {
                    let (kind, meta) = field_meta(&v.custom_metadata, &field, &id);
                    out.push(Credential::new(id, kind, s.as_str()).with_metadata(meta));
                }
                _ => self
                    .state()
                    .unmigrated
                    .push(format!("{mount}/{path}: {field}")),
            }
        }
        out
    }

    /// The size of every field of a secret read at plan time (the default
    /// layout's secret is one KV entry: [`Store::check`] adds what the plan
    /// writes to what is there).
    fn note_sizes(&self, id: &CredentialId, v: &kv::Version) {
        if self.vs.layout != Layout::Secret {
            return;
        }
        let mut st = self.state();
        let fields = st.sizes.entry(id.namespace.to_string()).or_default();
        for (f, x) in &v.data {
            if let Value::String(x) = x {
                fields.insert(f.clone(), x.len());
            }
        }
    }

    fn see(&self, path: &str, version: u64) {
        self.state().seen.insert(path.to_string(), version);
    }

    /// This store's write created `version` of `path`, holding `fields` as
    /// written: the next read of them reads that version exactly.
    fn wrote<'f>(&self, path: &str, version: u64, fields: impl Iterator<Item = &'f String>) {
        let mut st = self.state();
        st.seen.insert(path.to_string(), version);
        let floor = st.floor.entry(path.to_string()).or_default();
        *floor = (*floor).max(version);
        st.written.insert(
            path.to_string(),
            Written {
                version,
                fields: fields.cloned().collect(),
            },
        );
    }

    /// This store removed `path` with all its versions.
    /// A warning for the operation's report (see `notes`).
    fn note(&self, warning: String) {
        let mut n = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if !n.contains(&warning) {
            n.push(warning);
        }
    }

    fn removed(&self, path: &str) {
        let mut st = self.state();
        st.written.remove(path);
        st.floor.remove(path);
        st.seen.insert(path.to_string(), 0);
    }

    /// What the read-back of `fields` at `path` reads, taken (a read-back
    /// happens once; later reads see the latest version) when one of them
    /// is a field this store wrote there; and the newest version it wrote.
    fn take_read_back(&self, path: &str, fields: &[&str]) -> (Option<Written>, u64) {
        let mut st = self.state();
        let floor = st.floor.get(path).copied().unwrap_or(0);
        let ours = st
            .written
            .get(path)
            .is_some_and(|w| fields.iter().any(|f| w.fields.contains(*f)));
        (if ours { st.written.remove(path) } else { None }, floor)
    }

    fn health(&self) -> Result<Value> {
        let r = self.client.call(
            Method::Get,
            "sys/health?standbyok=true&perfstandbyok=true&sealedcode=299&uninitcode=299",
            None,
            false,
        )?;
        r.json(&self.client.location)
    }

    /// The token's capabilities on the prefix's data and metadata paths.
    fn capabilities(&self, mount: &str, prefix: &str) -> Result<Map<String, Value>> {
        let paths: Vec<String> = ["data", "metadata"]
            .iter()
            .map(|a| format!("{mount}/{a}/{}", join(prefix, "x")))
            .collect();
        let body = serde_json::to_vec(&json!({ "paths": paths })).unwrap_or_default();
        let r = self
            .client
            .call(Method::Post, "sys/capabilities-self", Some(&body), true)?;
        if r.status == 403 && self.client.token_refused() {
            return Err(StoreError::Other(format!(
                "{}: {}",
                self.client.location,
                self.client.refused_token_reason()
            )));
        }
        if !r.ok() {
            return Err(StoreError::Other(format!(
                "{}: capabilities-self: HTTP {} {}",
                self.client.location,
                r.status,
                r.errors()
            )));
        }
        let v = r.json(&self.client.location)?;
        let mut out = Map::new();
        for p in paths {
            out.insert(p.clone(), v["data"][&p].clone());
        }
        Ok(out)
    }
}

/// `a/b` from `a` and `b`, either possibly empty.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The custom_metadata key for a field's kind and metadata.
pub fn meta_key(field: &str) -> String {
    format!("cs:{field}")
}

/// A field's kind and metadata from `cs:FIELD`, else guessed from its name.
fn field_meta(custom: &Map<String, Value>, field: &str, id: &CredentialId) -> (Kind, Metadata) {
    let stored = custom
        .get(&meta_key(field))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let kind = stored
        .as_ref()
        .and_then(|v| v["kind"].as_str())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| Kind::guess(&id.name));
    let meta = stored
        .and_then(|mut v| v.get_mut("meta").map(Value::take))
        .and_then(|m| match m {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    (kind, meta)
}

impl Store for VaultStore {
    fn set_provenance(&self, p: &crate::store::Provenance) {
        self.state().provenance = Some(p.clone());
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let health = match self.health() {
            Ok(h) => h,
            Err(e) => return Capability::unavailable(e.to_string()),
        };
        let version = health["version"].as_str().unwrap_or("?").to_string();
        if health["sealed"].as_bool() == Some(true) {
            return Capability::unavailable(format!("server {version} is sealed"));
        }
        if !self.client.has_token() {
            return Capability::unavailable(
                "no token: set VAULT_TOKEN or BAO_TOKEN, pass --vault-token-file, or log in",
            );
        }
        let (mount, prefix) = match self.mount() {
            Ok(m) => m,
            Err(e) => return Capability::unavailable(e.to_string()),
        };
        let mut cap = Capability::persistent_store(true, false);
        cap.max_secret_len = Some(MAX_VALUE_LEN);
        cap.warnings.push(format!(
            "server version {version}{}; KV v2 mount {mount}/",
            if health["standby"].as_bool() == Some(true) {
                ", a standby node (writes go to the active node)"
            } else {
                ""
            }
        ));
        match self.capabilities(&mount, &prefix) {
            Ok(caps) => {
                let has = |p: &str, c: &str| {
                    caps[p]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == c || x == "root"))
                };
                let data = format!("{mount}/data/{}", join(&prefix, "x"));
                let meta = format!("{mount}/metadata/{}", join(&prefix, "x"));
                cap.readable = has(&data, "read");
                cap.writable = has(&data, "create") && has(&data, "update");
                for (p, c) in [
                    (&data, "read"),
                    (&data, "create"),
                    (&data, "update"),
                    (&data, "patch"),
                    (&meta, "list"),
                    (&meta, "delete"),
                ] {
                    if !has(p, c) {
                        cap.warnings.push(format!(
                            "the token lacks '{c}' on {}",
                            p.trim_end_matches("/x").to_string() + "/*"
                        ));
                    }
                }
            }
            Err(e) => cap.warnings.push(e.to_string()),
        }
        let kv = self.kv(&mount);
        cap.exists = kv.list(&prefix).map(|k| !k.is_empty()).unwrap_or(false);
        cap.warnings.push(
            "kinds and metadata go to custom_metadata (64 keys, 512-byte values): what does not \
             fit is dropped"
                .into(),
        );
        cap
    }

    fn list(&self) -> Result<Listing> {
        let (mount, prefix) = self.mount()?;
        let kv = self.kv(&mount);
        let mut listing = Listing::default();
        let paths = match self.secret_paths(&kv, &prefix) {
            Ok(p) => p,
            Err(e) => {
                // An empty prefix: every path is absent (as after read_all).
                self.state().scanned = matches!(e, StoreError::NotFound { .. });
                return Err(e);
            }
        };
        for path in paths {
            match kv.subkeys(&path) {
                Ok(Some((version, fields, custom))) => {
                    self.see(&path, version);
                    for (id, field) in self.ids_at(&prefix, &path, &fields) {
                        let (kind, meta) = field_meta(&custom, &field, &id);
                        listing.entries.push(Entry {
                            id,
                            kind,
                            metadata: crate::scrub::public(&meta),
                        });
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => listing
                    .errors
                    .push(LocationError::from_error(format!("{mount}/{path}"), &e)),
            }
        }
        // Every path was seen with its version: one not listed was absent.
        self.state().scanned = listing.errors.is_empty();
        Ok(listing)
    }

    /// Vault audits every read and a policy may allow listing alone: the
    /// inventory is LIST plus `subkeys` (field names, version and
    /// custom_metadata), never a secret's data.
    fn inventory_from_listing(&self) -> bool {
        true
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        self.read_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(None))
    }

    fn read_all(&self) -> Result<Scan> {
        let (mount, prefix) = self.mount()?;
        let kv = self.kv(&mount);
        self.state().unmigrated.clear();
        let mut scan = Scan::default();
        let paths = match self.secret_paths(&kv, &prefix) {
            Ok(p) => p,
            Err(e) => {
                // An empty prefix: every path is absent.
                self.state().scanned = matches!(e, StoreError::NotFound { .. });
                return Err(e);
            }
        };
        for path in paths {
            match kv.read(&path, None) {
                Ok(Some(v)) => {
                    self.see(&path, v.version);
                    let creds = self.creds_of(&mount, &prefix, &path, &v);
                    let mut st = self.state();
                    for c in &creds {
                        st.sizes
                            .entry(c.id.namespace.to_string())
                            .or_default()
                            .insert(c.id.name.to_string(), c.secret.len());
                    }
                    drop(st);
                    scan.credentials.extend(creds);
                }
                Ok(None) => {}
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => scan
                    .errors
                    .push(LocationError::from_error(format!("{mount}/{path}"), &e)),
            }
        }
        self.state().scanned = scan.errors.is_empty();
        Ok(scan)
    }

    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        ops::read_many(self, ids)
    }

    /// One LIST of the prefix (a folder per namespace in the item
    /// layout), then only the secrets holding one of `ids` are read: a
    /// plan never fetches the other secrets under the prefix. Every path
    /// not listed was absent, so a write there creates with `cas: 0`.
    fn read_wanted(&self, ids: &[CredentialId]) -> Result<Scan> {
        let (mount, prefix) = self.mount()?;
        let kv = self.kv(&mount);
        let paths = match self.secret_paths(&kv, &prefix) {
            Ok(p) => p,
            Err(e) => {
                self.state().scanned = matches!(e, StoreError::NotFound { .. });
                return Err(e);
            }
        };
        let present: std::collections::HashSet<String> = paths.into_iter().collect();
        let mut wanted: Vec<CredentialId> = Vec::new();
        for id in ids {
            match self.place(&prefix, id) {
                Ok((path, _)) if present.contains(&path) => wanted.push(id.clone()),
                // Not listed: absent now, so a write there creates with
                // `cas: 0`. Only these paths are known absent; the rest
                // of the prefix was not read.
                Ok((path, _)) => self.see(&path, 0),
                Err(_) => {}
            }
        }
        let mut scan = Scan::default();
        for (id, r) in wanted.iter().zip(self.read_many(&wanted)) {
            match r {
                Ok(Some(c)) => scan.credentials.push(c),
                Ok(None) => {}
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => scan
                    .errors
                    .push(LocationError::from_error(id.to_string(), &e)),
            }
        }
        Ok(scan)
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or(Ok(()))
    }

    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        ops::write_many(self, creds)
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(false))
    }

    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        destroy::delete_many(self, ids)
    }

    /// The comparison is on the version the check-and-set patch replaces
    /// (see [`destroy::delete_if_unchanged`]).
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<crate::store::DeleteIf>> {
        destroy::delete_if_unchanged(self, expected)
    }

    /// The comparison is on the version the check-and-set write replaces
    /// (see [`ops::replace_if_unchanged`]).
    fn replace_if_unchanged(
        &self,
        items: &[crate::store::Replace],
    ) -> Vec<Result<crate::store::ReplaceIf>> {
        ops::replace_if_unchanged(self, items)
    }

    fn check(&self, c: &Credential) -> Option<String> {
        if let Err(why) = self.place("", &c.id) {
            return Some(why);
        }
        if c.secret.len() > MAX_VALUE_LEN {
            return Some(format!(
                "{} bytes is more than one KV entry holds ({MAX_VALUE_LEN})",
                c.secret.len()
            ));
        }
        if self.vs.layout == Layout::Secret {
            let mut st = self.state();
            let fields = st.sizes.entry(c.id.namespace.to_string()).or_default();
            let others: usize = fields
                .iter()
                .filter(|(f, _)| **f != *c.id.name)
                .map(|(f, n)| f.len() + n)
                .sum();
            let total = others + c.id.name.len() + c.secret.len();
            if total > MAX_SECRET_LEN {
                return Some(format!(
                    "the secret {} would hold {total} bytes, more than one KV entry holds \
                     (about 1 MiB): use ?layout=item (one secret per credential)",
                    c.id.namespace
                ));
            }
            fields.insert(c.id.name.to_string(), c.secret.len());
        }
        None
    }

    fn unmigrated(&self) -> Vec<String> {
        self.state().unmigrated.clone()
    }

    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        Ok(crate::store::StoreIdentity {
            kind: crate::store::IdentityKind::Vault,
            key: self.identity_key()?,
            aliases: Vec::new(),
            display: self.spec.to_string(),
        })
    }

    /// One lock secret, created with `cas: 0`: Vault has no shared lock, so
    /// a shared request holds it exclusively (two readers wait for each
    /// other; nothing reads while a writer holds it).
    fn lock(
        &self,
        _mode: crate::store::LockMode,
        wait: Duration,
    ) -> Result<Option<Box<dyn StoreLock>>> {
        let (mount, prefix) = self.mount()?;
        lock::acquire(
            self.client.clone(),
            mount,
            join(&prefix, LOCK_NAME),
            self.spec.to_string(),
            wait,
            self.notes.clone(),
        )
        .map(|l| Some(Box::new(l) as Box<dyn StoreLock>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_skips_empty_parts() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("apps/billing", "openai"), "apps/billing/openai");
    }

    #[test]
    fn kinds_and_metadata_come_from_custom_metadata_or_the_name() {
        let id = CredentialId::new("openai", "api_key");
        let mut custom = Map::new();
        let (kind, meta) = field_meta(&custom, "api_key", &id);
        assert_eq!(kind, Kind::guess("api_key"));
        assert!(meta.is_empty());
        custom.insert(
            meta_key("api_key"),
            Value::String(r#"{"kind":"oauth_refresh","meta":{"label":"x"}}"#.into()),
        );
        let (kind, meta) = field_meta(&custom, "api_key", &id);
        assert_eq!(kind.as_str(), "oauth_refresh");
        assert_eq!(meta["label"], "x");
    }
}
