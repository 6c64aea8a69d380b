//! The migration lock that lives in Vault itself: a secret
//! `PREFIX/.credshift-lock` created with `cas: 0` (so only one writer can
//! create it) naming its holder (pid, user, host, since, a random nonce),
//! removed with all its versions on release. A lock whose holder ran on
//! this host and is gone is stale and taken over; one from another host is
//! stale after [`FOREIGN_STALE_AFTER`] (Vault cannot tell whether a process
//! elsewhere still runs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::http::Client;
use super::kv::{Kv, WriteError};
use crate::error::{Result, StoreError};
use crate::store::StoreLock;

pub const FOREIGN_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

pub struct VaultLock {
    client: Arc<Client>,
    mount: String,
    path: String,
    nonce: String,
    what: String,
    /// The holder of a stale lock secret taken over.
    took_over: Option<String>,
    /// What the store noted while this lock was held (see
    /// `VaultStore::note`), reported with the operation.
    notes: Arc<std::sync::Mutex<Vec<String>>>,
    location: String,
}

impl StoreLock for VaultLock {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn notices(&self) -> Vec<crate::store::LockNotice> {
        self.took_over
            .iter()
            .map(|h| crate::store::LockNotice::TookOverStale {
                lock: self.what.clone(),
                holder: h.clone(),
            })
            .chain(
                self.notes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|w| crate::store::LockNotice::StoreWarning {
                        store: self.location.clone(),
                        warning: w.clone(),
                    }),
            )
            .collect()
    }
}

impl Drop for VaultLock {
    fn drop(&mut self) {
        let kv = Kv {
            client: &self.client,
            mount: &self.mount,
        };
        // Only our own lock is removed (a lock taken over as stale by
        // another run is theirs now).
        if let Ok(Some(v)) = kv.read(&self.path, None)
            && v.data.get("nonce").and_then(Value::as_str) == Some(self.nonce.as_str())
        {
            let _ = kv.delete_all(&self.path);
        }
    }
}

fn holder_text(data: &Map<String, Value>) -> String {
    let s = |k: &str| {
        data.get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "pid {} ({}@{}) since {}",
        data.get("pid").and_then(Value::as_u64).unwrap_or(0),
        s("user"),
        s("host"),
        s("since")
    )
}

fn stale(data: &Map<String, Value>) -> bool {
    let host = data.get("host").and_then(Value::as_str).unwrap_or("");
    let pid = data.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32;
    if host == crate::store::lockfile::hostname() {
        return pid != std::process::id() && !crate::fsutil::pid_alive(pid);
    }
    data.get("since")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .is_some_and(|t| {
            let age = chrono::Utc::now().signed_duration_since(t);
            age.to_std().is_ok_and(|a| a > FOREIGN_STALE_AFTER)
        })
}

pub fn acquire(
    client: Arc<Client>,
    mount: String,
    path: String,
    location: String,
    wait: Duration,
    notes: Arc<std::sync::Mutex<Vec<String>>>,
) -> Result<VaultLock> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| StoreError::Other(format!("random: {e}")))?;
    let nonce = hex::encode(nonce);
    let mut data = Map::new();
    data.insert("pid".into(), Value::from(std::process::id()));
    data.insert(
        "host".into(),
        Value::from(crate::store::lockfile::hostname()),
    );
    data.insert(
        "user".into(),
        Value::from(std::env::var("USER").unwrap_or_default()),
    );
    data.insert(
        "since".into(),
        Value::from(crate::store::lockfile::now_rfc3339()),
    );
    data.insert("nonce".into(), Value::from(nonce.clone()));
    let deadline = Instant::now() + wait;
    let kv = Kv {
        client: &client,
        mount: &mount,
    };
    let mut vanished = 0;
    let mut took_over = None;
    loop {
        match kv.write(&path, 0, &data) {
            Ok(_) => break,
            Err(WriteError::Cas) => {
                let held = kv.read(&path, None)?;
                match held {
                    // Released (or all versions deleted) since: try again.
                    None => {
                        vanished += 1;
                        if vanished > 20 {
                            return Err(StoreError::Other(format!(
                                "{location}: the lock secret {mount}/{path} cannot be created"
                            )));
                        }
                        if let Ok(Some(m)) = kv.metadata(&path)
                            && m.current_version > 0
                        {
                            // Deleted versions keep the path: remove it.
                            kv.delete_all(&path)?;
                        }
                        continue;
                    }
                    Some(h) if stale(&h.data) => {
                        took_over = Some(holder_text(&h.data));
                        kv.delete_all(&path)?;
                        continue;
                    }
                    Some(h) => {
                        if Instant::now() >= deadline {
                            return Err(StoreError::Timeout {
                                location,
                                seconds: wait.as_secs(),
                                what: format!(
                                    "{mount}/{path} is locked by {}",
                                    holder_text(&h.data)
                                ),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }
            Err(WriteError::Denied) if client.token_refused() => {
                return Err(StoreError::Other(format!(
                    "{location}: {}",
                    client.refused_token_reason()
                )));
            }
            Err(WriteError::Denied) => {
                return Err(StoreError::Other(format!(
                    "{location}: permission denied: the token may not create the lock secret \
                     {mount}/data/{path}"
                )));
            }
            Err(WriteError::Other(e)) => return Err(e),
        }
    }
    Ok(VaultLock {
        client: client.clone(),
        took_over,
        notes,
        location: location.clone(),
        what: format!("{location} (lock secret {mount}/{path})"),
        mount,
        path,
        nonce,
    })
}
