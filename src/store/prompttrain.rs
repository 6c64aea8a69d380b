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

mod files;
mod ids;
mod store_impl;

use files::*;
use ids::*;

#[cfg(test)]
mod tests;
