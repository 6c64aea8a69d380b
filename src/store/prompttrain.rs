//! `prompttrain:DIR`: agent-prompttrain's `credentials/` directory.
//!
//! - `accounts/<name>.credentials.json`: `{"type": "api_key", "accountId",
//!   "api_key"}` or `{"type": "oauth", "accountId", "oauth": {"accessToken",
//!   "refreshToken", "expiresAt" (epoch ms), "scopes", "isMax"}}`, plus a
//!   `slack` block. Ids: `account:<accountId>/api_key`,
//!   `account:<accountId>/oauth_access_token`,
//!   `account:<accountId>/oauth_refresh_token`. A file without `accountId`
//!   is `acc_<name>`, as agent-prompttrain's loader does. Files not ending in
//!   `.credentials.json` are not credentials and are ignored.
//! - `train-client-keys/<train>.client-keys.json`: `{"keys": [...]}` (a bare
//!   array and `{"client_api_keys": [...]}` are read too, as the proxy does).
//!   Ids: `train:<train>/client_key/<index>`.
//!
//! Any other secret in an account file, as [`crate::scrub`] decides (by key
//! name, URL password, authorization header or known prefix), is an item of
//! its own named by its path: `slack.webhook_url` is
//! `account:<id>/slack_webhook_url`, the rest `account:<id>/admin_api_key`,
//! `account:<id>/proxy.url`, `account:<id>/headers.authorization`... A
//! write puts it back at that path.
//!
//! Metadata: `account_name` (the file name), `type`, `slack`, `expires_at`,
//! `scopes`, `is_max`, and unknown fields under `extra` / `oauth_extra`,
//! all without their secret values (those are the items above). Metadata
//! written back merges into what the file holds, so a secret it lacks stays.
//! A write edits the one field in the right file and keeps every other
//! field; a new account file is named after `account_name` when that is a
//! name the proxy accepts, else after the account id.
//!
//! Client key indices are stable: deleting a key that is not the last one
//! leaves a `null` in its slot (the proxy skips anything that is not a
//! non-empty string), so `client_key/2` still names the same key after
//! `client_key/1` was deleted. Trailing `null`s are trimmed, and writing an
//! index past the end pads with `null`s until the missing ones arrive (ids
//! sort as text, so `client_key/10` can come before `client_key/2`).
//! Deleting an item removes that field only; the file is removed only when
//! no secret material is left in it. Secret material no item can name (a
//! key holding `.`, a key spelled like a fixed id) is reported by
//! [`Store::unmigrated`] and keeps its file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::fsutil::dir_writable;
use crate::scrub::wipe_json;
use crate::scrub::{self, Seg};
use crate::store::dotenv::nearest_existing_dir;
use crate::store::modelforge::{detect_indent, render_json};
use crate::store::{
    Capability, DeleteIf, Listing, LocationError, Replace, ReplaceIf, Scan, Store, StoreSpec,
    plaintext_file_warnings,
};
use crate::unlock::KeyOptions;

const ACCOUNT_SUFFIX: &str = ".credentials.json";
const KEYS_SUFFIX: &str = ".client-keys.json";
const ACCOUNTS_DIR: &str = "accounts";
const KEYS_DIR: &str = "train-client-keys";

/// Top-level account fields this store understands; the rest is `extra`.
const KNOWN_ACCOUNT_FIELDS: &[&str] = &["type", "accountId", "api_key", "oauth", "slack"];
const KNOWN_OAUTH_FIELDS: &[&str] = &[
    "accessToken",
    "refreshToken",
    "expiresAt",
    "scopes",
    "isMax",
];

pub fn open(spec: &StoreSpec, _opts: &KeyOptions) -> Result<Box<dyn Store>> {
    let StoreSpec::PromptTrain(dir) = spec else {
        return Err(StoreError::Other(format!(
            "{spec} is not a prompttrain spec"
        )));
    };
    Ok(Box::new(PromptTrainStore {
        spec: spec.clone(),
        dir: dir.clone(),
        lock: Mutex::new(()),
    }))
}

pub struct PromptTrainStore {
    spec: StoreSpec,
    dir: PathBuf,
    lock: Mutex<()>,
}

/// The secret fields of an account file, as id names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AccountField {
    ApiKey,
    OauthAccess,
    OauthRefresh,
    /// Any other secret the scrubber finds in the file, by its path:
    /// `slack.webhook_url` (named `slack_webhook_url`), `admin_api_key`,
    /// `proxy.url`, `headers.authorization`, `oauth.idToken`...
    Path(Vec<Seg>),
}

/// The id name of the Slack webhook URL.
const WEBHOOK_NAME: &str = "slack_webhook_url";
/// Names the fixed fields use; a path spelled like one cannot be an item.
const RESERVED_NAMES: &[&str] = &[
    "api_key",
    "oauth_access_token",
    "oauth_refresh_token",
    WEBHOOK_NAME,
];

fn webhook_path() -> Vec<Seg> {
    vec![Seg::Key("slack".into()), Seg::Key("webhook_url".into())]
}

/// Paths of the fixed fields, which are never generic items.
fn fixed_path(path: &[Seg]) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .map(|s| match s {
            Seg::Key(k) => k.as_str(),
            Seg::Index(_) => "",
        })
        .collect();
    matches!(
        keys.as_slice(),
        ["api_key"]
            | ["oauth", "accessToken"]
            | ["oauth", "refreshToken"]
            | ["type"]
            | ["accountId"]
    ) || matches!(keys.first(), Some(&"api_key" | &"type" | &"accountId"))
        || matches!(
            keys.as_slice(),
            ["oauth", "accessToken" | "refreshToken", ..]
        )
}

impl AccountField {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "api_key" => Some(Self::ApiKey),
            "oauth_access_token" => Some(Self::OauthAccess),
            "oauth_refresh_token" => Some(Self::OauthRefresh),
            WEBHOOK_NAME => Some(Self::Path(webhook_path())),
            other => {
                let path = scrub::parse_path(other)?;
                (matches!(path.first(), Some(Seg::Key(_)))
                    && !fixed_path(&path)
                    && path != webhook_path())
                .then_some(Self::Path(path))
            }
        }
    }
    fn name(&self) -> String {
        match self {
            Self::ApiKey => "api_key".into(),
            Self::OauthAccess => "oauth_access_token".into(),
            Self::OauthRefresh => "oauth_refresh_token".into(),
            Self::Path(p) if *p == webhook_path() => WEBHOOK_NAME.into(),
            Self::Path(p) => scrub::path_text(p),
        }
    }
    fn kind(&self) -> Kind {
        match self {
            Self::ApiKey => Kind::ApiKey,
            Self::OauthAccess => Kind::OauthAccess,
            Self::OauthRefresh => Kind::OauthRefresh,
            Self::Path(_) => Kind::guess(&self.name()),
        }
    }
    fn path(&self) -> Vec<Seg> {
        let keys: &[&str] = match self {
            Self::ApiKey => &["api_key"],
            Self::OauthAccess => &["oauth", "accessToken"],
            Self::OauthRefresh => &["oauth", "refreshToken"],
            Self::Path(p) => return p.clone(),
        };
        keys.iter().map(|k| Seg::Key(k.to_string())).collect()
    }
    fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        scrub::get(root, &self.path())
    }
    /// Whether the field's item carries the OAuth metadata (expiry, scopes).
    fn is_oauth(&self) -> bool {
        matches!(self.path().first(), Some(Seg::Key(k)) if k == "oauth")
    }
}

/// What an id refers to in this layout.
enum Target {
    Account { id: String, field: AccountField },
    ClientKey { train: String, index: usize },
}

/// Names the proxy accepts for accounts and trains (its IDENTIFIER_REGEX),
/// minus the two that are path components.
fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

fn parse_target(id: &CredentialId) -> std::result::Result<Target, String> {
    if let Some(account) = id.namespace.strip_prefix("account:") {
        if account.is_empty() {
            return Err("an account id is empty".into());
        }
        let field = AccountField::from_name(&id.name).ok_or_else(|| {
            format!(
                "agent-prompttrain account files hold api_key, oauth_access_token, \
                 oauth_refresh_token, slack_webhook_url and other fields by their path \
                 (`proxy.url`), not `{}`",
                id.name
            )
        })?;
        return Ok(Target::Account {
            id: account.to_string(),
            field,
        });
    }
    if let Some(train) = id.namespace.strip_prefix("train:") {
        if !valid_identifier(train) {
            return Err("a train name may hold only letters, digits, `.`, `_`, `-` and `:`".into());
        }
        let index = id
            .name
            .strip_prefix("client_key/")
            .filter(|n| n == &"0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n < 100_000)
            .ok_or_else(|| {
                format!(
                    "train files hold only client_key/<index>, not `{}`",
                    id.name
                )
            })?;
        return Ok(Target::ClientKey {
            train: train.to_string(),
            index,
        });
    }
    Err("agent-prompttrain stores only `account:<id>/<field>` and \
         `train:<name>/client_key/<n>` ids"
        .into())
}

/// A parsed account file.
struct AccountFile {
    path: PathBuf,
    name: String,
    account_id: String,
    root: Value,
    indent: usize,
    trailing_newline: bool,
}

/// A parsed client-keys file.
struct KeysFile {
    path: PathBuf,
    train: String,
    root: Value,
    indent: usize,
    trailing_newline: bool,
}

impl Drop for KeysFile {
    fn drop(&mut self) {
        wipe_json(&mut self.root);
    }
}

impl Drop for AccountFile {
    fn drop(&mut self) {
        wipe_json(&mut self.root);
    }
}

impl KeysFile {
    fn keys(&self) -> Option<&Vec<Value>> {
        match &self.root {
            Value::Array(a) => Some(a),
            Value::Object(o) => o
                .get("keys")
                .or_else(|| o.get("client_api_keys"))
                .and_then(Value::as_array),
            _ => None,
        }
    }

    fn keys_mut(&mut self) -> Option<&mut Vec<Value>> {
        match &mut self.root {
            Value::Array(a) => Some(a),
            Value::Object(o) => {
                let field = if o.get("keys").is_some_and(Value::is_array) {
                    "keys"
                } else {
                    "client_api_keys"
                };
                o.get_mut(field).and_then(Value::as_array_mut)
            }
            _ => None,
        }
    }
}

/// Read and parse a JSON file. The text is zeroized; errors carry position only.
fn read_json(path: &Path) -> Result<(Value, usize, bool)> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let text = Zeroizing::new(fsutil::decode_text(path, bytes)?);
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| StoreError::json(path.display().to_string(), &e))?;
    Ok((v, detect_indent(&text, 2), text.ends_with('\n')))
}

/// Put public metadata `v` at `obj[key]`, merging objects so a secret
/// leaf already there (and absent from the scrubbed metadata) stays.
fn merge_into(obj: &mut Map<String, Value>, key: &str, v: &Value) {
    match obj.get_mut(key) {
        Some(slot) => scrub::merge(slot, v),
        None => {
            obj.insert(key.to_string(), v.clone());
        }
    }
}

/// Unknown fields of `obj`, without their secret values (at any depth;
/// those are items of their own).
fn extra_fields(obj: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    let rest: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match scrub::scrubbed(&Value::Object(rest)) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl AccountFile {
    fn load(path: PathBuf, name: String) -> Result<AccountFile> {
        let (root, indent, trailing_newline) = read_json(&path)?;
        if !root.is_object() {
            return Err(StoreError::parse(
                path.display().to_string(),
                "expected a JSON object",
            ));
        }
        let account_id = root
            .get("accountId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("acc_{name}"));
        Ok(AccountFile {
            path,
            name,
            account_id,
            root,
            indent,
            trailing_newline,
        })
    }

    fn metadata(&self, field: &AccountField) -> Metadata {
        let mut m = Metadata::new();
        m.insert("account_name".into(), self.name.clone().into());
        let Some(obj) = self.root.as_object() else {
            return m;
        };
        if let Some(t) = obj.get("type") {
            m.insert("type".into(), t.clone());
        }
        if let Some(s) = obj.get("slack") {
            m.insert("slack".into(), scrub::scrubbed(s));
        }
        let extra = extra_fields(obj, KNOWN_ACCOUNT_FIELDS);
        if !extra.is_empty() {
            m.insert("extra".into(), Value::Object(extra));
        }
        if (field.is_oauth() || *field == AccountField::OauthAccess)
            && let Some(oauth) = obj.get("oauth").and_then(Value::as_object)
        {
            for (from, to) in [
                ("expiresAt", "expires_at"),
                ("scopes", "scopes"),
                ("isMax", "is_max"),
            ] {
                if let Some(v) = oauth.get(from) {
                    m.insert(to.into(), v.clone());
                }
            }
            let extra = extra_fields(oauth, KNOWN_OAUTH_FIELDS);
            if !extra.is_empty() {
                m.insert("oauth_extra".into(), Value::Object(extra));
            }
        }
        m
    }

    /// The secrets the scrubber finds outside the fixed fields, as fields,
    /// and the secret material no field can name (`left` gets its paths).
    fn other_fields(&self, left: &mut Vec<String>) -> Vec<AccountField> {
        let (found, unaddressable) = scrub::find(&self.root);
        left.extend(unaddressable);
        let mut out = Vec::new();
        for f in found {
            if fixed_path(&f.path) {
                continue;
            }
            let field = if f.path == webhook_path() {
                AccountField::Path(f.path)
            } else if RESERVED_NAMES.contains(&f.path_text().as_str()) {
                left.push(f.path_text());
                continue;
            } else {
                AccountField::Path(f.path)
            };
            out.push(field);
        }
        out
    }

    /// Every field holding a secret item, fixed ones first.
    fn fields(&self, left: &mut Vec<String>) -> Vec<AccountField> {
        let mut fields = vec![
            AccountField::ApiKey,
            AccountField::OauthAccess,
            AccountField::OauthRefresh,
        ];
        fields.extend(self.other_fields(left));
        fields
    }

    /// Credentials in this file; a secret field of the wrong type is an error.
    fn credentials(&self, errors: &mut Vec<LocationError>) -> Vec<Credential> {
        let mut out = Vec::new();
        let mut ignored = Vec::new();
        for field in self.fields(&mut ignored) {
            match field.get(&self.root) {
                Some(Value::String(s)) => out.push(Credential {
                    id: CredentialId::new(format!("account:{}", self.account_id), field.name()),
                    kind: field.kind(),
                    secret: Secret::new(s.as_str()),
                    metadata: self.metadata(&field),
                }),
                None | Some(Value::Null) => {}
                Some(_) => errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: self.path.display().to_string(),
                    error: format!("{} is not a string", field.name()),
                }),
            }
        }
        if out.is_empty() && errors.is_empty() {
            errors.push(LocationError {
                severity: crate::store::Severity::Error,
                location: self.path.display().to_string(),
                error: "no api_key or oauth tokens in this account file".into(),
            });
        }
        out
    }

    /// Secret material that no item carries, as `path: field` lines.
    fn left_over(&self) -> Vec<String> {
        let mut left = Vec::new();
        self.other_fields(&mut left);
        left.into_iter()
            .map(|f| format!("{}: {f}", self.path.display()))
            .collect()
    }

    /// Whether any secret material (an item or not) is still in the file.
    fn has_secret(&self) -> bool {
        let (found, unaddressable) = scrub::find(&self.root);
        !found.is_empty()
            || !unaddressable.is_empty()
            || [
                AccountField::ApiKey,
                AccountField::OauthAccess,
                AccountField::OauthRefresh,
            ]
            .iter()
            .any(|f| f.get(&self.root).is_some_and(Value::is_string))
    }

    /// Set one secret and the metadata that has a place in the format.
    /// Metadata merges into what is there, so a secret the (scrubbed)
    /// metadata lacks stays in place.
    fn set(&mut self, field: &AccountField, c: &Credential) -> Result<()> {
        let root = self
            .root
            .as_object_mut()
            .ok_or_else(|| StoreError::item(&c.id, "account file is not a JSON object"))?;
        let secret = Value::String(c.secret.expose().to_string());
        let meta = &c.metadata;
        match meta.get("type").and_then(Value::as_str) {
            Some(t @ ("api_key" | "oauth")) => {
                root.insert("type".into(), t.into());
            }
            _ if !root.contains_key("type") => {
                let t = if field.is_oauth() { "oauth" } else { "api_key" };
                root.insert("type".into(), t.into());
            }
            _ => {}
        }
        if !root.contains_key("accountId") && format!("acc_{}", self.name) != self.account_id {
            root.insert("accountId".into(), self.account_id.clone().into());
        }
        if let Some(slack) = meta.get("slack") {
            merge_into(root, "slack", slack);
        }
        if let Some(Value::Object(extra)) = meta.get("extra") {
            for (k, v) in extra {
                if !KNOWN_ACCOUNT_FIELDS.contains(&k.as_str()) {
                    merge_into(root, k, v);
                }
            }
        }
        if field.is_oauth() || meta.contains_key("oauth_extra") {
            let oauth = root
                .entry("oauth")
                .or_insert_with(|| Value::Object(Map::new()));
            if oauth.is_null() {
                *oauth = Value::Object(Map::new());
            }
            let oauth = oauth
                .as_object_mut()
                .ok_or_else(|| StoreError::item(&c.id, "`oauth` is not a JSON object"))?;
            for (from, to) in [
                ("expires_at", "expiresAt"),
                ("scopes", "scopes"),
                ("is_max", "isMax"),
            ] {
                if let Some(v) = meta.get(from) {
                    oauth.insert(to.into(), v.clone());
                }
            }
            if let Some(Value::Object(extra)) = meta.get("oauth_extra") {
                for (k, v) in extra {
                    if !KNOWN_OAUTH_FIELDS.contains(&k.as_str()) {
                        merge_into(oauth, k, v);
                    }
                }
            }
        }
        scrub::set(&mut self.root, &field.path(), secret)
            .map_err(|e| StoreError::item(&c.id, format!("cannot be put back: {e}")))
    }

    /// Remove one secret field, nothing around it; true when it was there.
    fn remove(&mut self, field: &AccountField) -> bool {
        scrub::remove(&mut self.root, &field.path())
    }

    fn save(&self) -> Result<()> {
        let bytes = render_json(&self.root, self.indent, self.trailing_newline)?;
        fsutil::atomic_write(&self.path, &bytes)
    }
}

/// Everything in the directory, parsed once.
struct Tree {
    accounts: Vec<AccountFile>,
    trains: Vec<KeysFile>,
    errors: Vec<LocationError>,
}

impl Tree {
    fn credentials(&self) -> (Vec<Credential>, Vec<LocationError>) {
        let mut errors = self.errors.clone();
        let mut creds = Vec::new();
        for a in &self.accounts {
            creds.extend(a.credentials(&mut errors));
        }
        for t in &self.trains {
            let Some(keys) = t.keys() else {
                errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: t.path.display().to_string(),
                    error: "expected {\"keys\": [...]} or a JSON array".into(),
                });
                continue;
            };
            for (i, k) in keys.iter().enumerate() {
                match k {
                    Value::String(s) => creds.push(Credential {
                        id: CredentialId::new(
                            format!("train:{}", t.train),
                            format!("client_key/{i}"),
                        ),
                        kind: Kind::ClientKey,
                        secret: Secret::new(s.as_str()),
                        metadata: Metadata::new(),
                    }),
                    // A deleted slot (see the module docs).
                    Value::Null => {}
                    _ => errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: format!("{}: keys[{i}]", t.path.display()),
                        error: "not a string".into(),
                    }),
                }
            }
        }
        // Two files claiming one accountId: report, keep the first.
        let mut seen = std::collections::HashSet::new();
        creds.retain(|c| {
            if seen.insert(c.id.clone()) {
                true
            } else {
                errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: c.id.to_string(),
                    error: "more than one account file has this accountId; the first is used"
                        .into(),
                });
                false
            }
        });
        (creds, errors)
    }
}

/// `(file name stem, path)` of files in `dir` ending in `suffix`, sorted.
fn files_with_suffix(
    dir: &Path,
    suffix: &str,
    errors: &mut Vec<LocationError>,
) -> Result<Vec<(String, PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            if entry.file_name().to_string_lossy().ends_with(suffix) {
                errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: path.display().to_string(),
                    error: "file name is not valid UTF-8".into(),
                });
            }
            continue;
        };
        let Some(stem) = name.strip_suffix(suffix) else {
            continue;
        };
        if stem.is_empty() || !path.is_file() {
            continue;
        }
        out.push((stem.to_string(), path));
    }
    out.sort();
    Ok(out)
}

impl PromptTrainStore {
    fn accounts_dir(&self) -> PathBuf {
        self.dir.join(ACCOUNTS_DIR)
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join(KEYS_DIR)
    }

    fn keys_path(&self, train: &str) -> PathBuf {
        self.keys_dir().join(format!("{train}{KEYS_SUFFIX}"))
    }

    fn not_found(&self) -> StoreError {
        StoreError::NotFound {
            location: self.dir.display().to_string(),
            hint:
                "expected agent-prompttrain's credentials directory (accounts/, train-client-keys/)"
                    .into(),
        }
    }

    fn load_accounts(&self, errors: &mut Vec<LocationError>) -> Result<Vec<AccountFile>> {
        let mut out = Vec::new();
        for (name, path) in files_with_suffix(&self.accounts_dir(), ACCOUNT_SUFFIX, errors)? {
            match AccountFile::load(path.clone(), name) {
                Ok(a) => out.push(a),
                Err(e) => errors.push(file_error(&path, &e)),
            }
        }
        Ok(out)
    }

    fn load_keys(path: PathBuf, train: String) -> Result<KeysFile> {
        let (root, indent, trailing_newline) = read_json(&path)?;
        Ok(KeysFile {
            path,
            train,
            root,
            indent,
            trailing_newline,
        })
    }

    fn load_tree(&self) -> Result<Tree> {
        if !self.dir.is_dir() {
            return Err(self.not_found());
        }
        let mut errors = Vec::new();
        let accounts = self.load_accounts(&mut errors)?;
        let mut trains = Vec::new();
        for (train, path) in files_with_suffix(&self.keys_dir(), KEYS_SUFFIX, &mut errors)? {
            match Self::load_keys(path.clone(), train) {
                Ok(t) => trains.push(t),
                Err(e) => errors.push(file_error(&path, &e)),
            }
        }
        Ok(Tree {
            accounts,
            trains,
            errors,
        })
    }

    /// The account file holding `account_id`, if any (unreadable files skipped).
    fn find_account(&self, account_id: &str) -> Result<Option<AccountFile>> {
        let mut ignored = Vec::new();
        Ok(self
            .load_accounts(&mut ignored)?
            .into_iter()
            .find(|a| a.account_id == account_id))
    }

    /// A name for a new account file: `account_name` when the proxy accepts
    /// it, else the account id without `acc_`; never an existing file.
    fn new_account_file(
        &self,
        account_id: &str,
        field: &AccountField,
        meta: &Metadata,
        taken: &[&str],
    ) -> AccountFile {
        let from_meta = meta
            .get("account_name")
            .and_then(Value::as_str)
            .filter(|n| valid_identifier(n))
            .map(str::to_string);
        let base = from_meta.unwrap_or_else(|| {
            let stem = account_id.strip_prefix("acc_").unwrap_or(account_id);
            let s: String = stem
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if valid_identifier(&s) {
                s
            } else {
                "account".into()
            }
        });
        let dir = self.accounts_dir();
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name.as_str()) || dir.join(format!("{name}{ACCOUNT_SUFFIX}")).exists()
        {
            name = format!("{base}-{n}");
            n += 1;
        }
        let mut root = Map::new();
        let kind = if field.is_oauth() { "oauth" } else { "api_key" };
        root.insert("type".into(), kind.into());
        root.insert("accountId".into(), account_id.into());
        AccountFile {
            path: dir.join(format!("{name}{ACCOUNT_SUFFIX}")),
            name,
            account_id: account_id.to_string(),
            root: Value::Object(root),
            indent: 2,
            trailing_newline: true,
        }
    }

    /// Apply every write in memory, then save each touched file once. With
    /// `guards` (one per credential), a write whose item does not hold what
    /// its guard expects, in the files as just loaded, is left out.
    fn write_batch(
        &self,
        creds: &[Credential],
        guards: Option<&[Replace]>,
    ) -> Vec<Result<ReplaceIf>> {
        let fail_all = |e: StoreError| {
            let msg = e.to_string();
            creds
                .iter()
                .map(|c| Err(StoreError::item(&c.id, msg.clone())))
                .collect()
        };
        let mut ignored = Vec::new();
        let mut accounts = match self.load_accounts(&mut ignored) {
            Ok(a) => a,
            Err(e) => return fail_all(e),
        };
        let mut trains: Vec<KeysFile> = Vec::new();
        // Which file each credential went to.
        let mut placed: Vec<Result<Option<FileRef>>> = Vec::with_capacity(creds.len());
        for (k, c) in creds.iter().enumerate() {
            let guard = guards.and_then(|g| g.get(k));
            placed.push(
                match guard.map(|g| self.held(c, &accounts).map(|now| g.holds(now.as_ref()))) {
                    Some(Err(e)) => Err(e),
                    Some(Ok(false)) => Ok(None),
                    Some(Ok(true)) | None => self.place(c, &mut accounts, &mut trains).map(Some),
                },
            );
        }
        let mut saved_accounts: Vec<Option<String>> = vec![None; accounts.len()];
        let mut saved_trains: Vec<Option<String>> = vec![None; trains.len()];
        let save_err = |r: Result<()>| r.err().map(|e| e.to_string());
        // Which files the batch touched (one pass, not one per file).
        let mut touched_accounts = vec![false; accounts.len()];
        let mut touched_trains = vec![false; trains.len()];
        for p in &placed {
            match p {
                Ok(Some(FileRef::Account(i))) => touched_accounts[*i] = true,
                Ok(Some(FileRef::Train(i))) => touched_trains[*i] = true,
                Ok(None) | Err(_) => {}
            }
        }
        for (n, a) in accounts.iter().enumerate() {
            if touched_accounts[n] {
                saved_accounts[n] = Some(save_err(a.save()).unwrap_or_default());
            }
        }
        for (n, t) in trains.iter().enumerate() {
            if touched_trains[n] {
                let r = render_json(&t.root, t.indent, t.trailing_newline)
                    .and_then(|bytes| fsutil::atomic_write(&t.path, &bytes));
                saved_trains[n] = Some(save_err(r).unwrap_or_default());
            }
        }
        placed
            .into_iter()
            .zip(creds)
            .map(|(p, c)| {
                let outcome = match p? {
                    None => return Ok(ReplaceIf::Changed),
                    Some(FileRef::Account(i)) => saved_accounts[i].as_deref(),
                    Some(FileRef::Train(i)) => saved_trains[i].as_deref(),
                };
                match outcome {
                    Some("") => Ok(ReplaceIf::Replaced),
                    Some(msg) => Err(StoreError::item(&c.id, msg)),
                    None => Err(StoreError::item(&c.id, "was not saved")),
                }
            })
            .collect()
    }

    /// Put one credential into the in-memory files, loading or creating the
    /// file it belongs to.
    fn place(
        &self,
        c: &Credential,
        accounts: &mut Vec<AccountFile>,
        trains: &mut Vec<KeysFile>,
    ) -> Result<FileRef> {
        let target = parse_target(&c.id).map_err(|r| StoreError::item(&c.id, r))?;
        match target {
            Target::Account { id, field } => {
                let n = match accounts.iter().position(|a| a.account_id == id) {
                    Some(n) => n,
                    None => {
                        let taken: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
                        let file = self.new_account_file(&id, &field, &c.metadata, &taken);
                        accounts.push(file);
                        accounts.len() - 1
                    }
                };
                accounts[n].set(&field, c)?;
                Ok(FileRef::Account(n))
            }
            Target::ClientKey { train, index } => {
                let n = match trains.iter().position(|t| t.train == train) {
                    Some(n) => n,
                    None => {
                        let path = self.keys_path(&train);
                        let file = if path.exists() {
                            Self::load_keys(path, train)?
                        } else {
                            KeysFile {
                                path,
                                train,
                                root: serde_json::json!({ "keys": [] }),
                                indent: 2,
                                trailing_newline: true,
                            }
                        };
                        trains.push(file);
                        trains.len() - 1
                    }
                };
                let file = &mut trains[n];
                let location = file.path.display().to_string();
                let keys = file.keys_mut().ok_or_else(|| {
                    StoreError::parse(location, "expected {\"keys\": [...]} or a JSON array")
                })?;
                if keys.len() <= index {
                    keys.resize(index + 1, Value::Null);
                }
                keys[index] = Value::String(c.secret.expose().to_string());
                Ok(FileRef::Train(n))
            }
        }
    }
}

/// Index of an in-memory file during a batch write.
#[derive(Clone, Copy)]
enum FileRef {
    Account(usize),
    Train(usize),
}

/// A file that could not be read, as `path[:line:col]` and a reason that
/// never repeats the location.
fn file_error(path: &Path, e: &StoreError) -> LocationError {
    match e {
        StoreError::Parse {
            location,
            line,
            column,
            message,
        } => LocationError {
            severity: crate::store::Severity::Error,
            location: match (line, column) {
                (Some(l), Some(c)) => format!("{location}:{l}:{c}"),
                (Some(l), None) => format!("{location}:{l}"),
                _ => location.clone(),
            },
            error: message.clone(),
        },
        StoreError::Io { source, .. } => LocationError {
            severity: crate::store::Severity::Error,
            location: path.display().to_string(),
            error: source.to_string(),
        },
        other => LocationError::from_error(path.display().to_string(), other),
    }
}

/// Remove a file, and when `path` is a symlink the file behind it too:
/// removing only the link would report the secrets gone while they stay in
/// the real file.
fn remove_file(path: &Path) -> Result<()> {
    let real = fsutil::resolve_links(path);
    if real != path {
        std::fs::remove_file(&real).map_err(|e| StoreError::io(&real, e))?;
        fsutil::fsync_dir(&fsutil::parent_dir(&real)).map_err(|e| StoreError::io(&real, e))?;
    }
    std::fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
    fsutil::fsync_dir(&fsutil::parent_dir(path)).map_err(|e| StoreError::io(path, e))
}

mod store_impl;

#[cfg(test)]
mod tests;
