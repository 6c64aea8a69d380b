//! The append-only audit log: `STATE/audit.jsonl`, one JSON line per
//! changing action (when, user@host, action, stores, counts, migration id).
//! No secrets: stores are printed with passwords redacted.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::journal::{Totals, now_rfc3339};
use crate::error::StoreError;
use crate::fsutil;

pub const AUDIT_FILE: &str = "audit.jsonl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: String,
    /// `user@host`
    pub who: String,
    /// `migrate`, `resume`, `rollback`, `verify`, `cleanup`, `backup`, `restore`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<String>,
    /// `completed`, `rolled_back`, `failed`, `interrupted`, ...
    pub outcome: String,
    pub counts: Totals,
}

pub fn audit_path(state_dir: &Path) -> PathBuf {
    state_dir.join(AUDIT_FILE)
}

pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", rustix::process::getuid().as_raw()));
    format!("{user}@{}", crate::store::lockfile::hostname())
}

pub struct AuditEntry<'a> {
    pub action: &'a str,
    pub from: Option<String>,
    pub to: Option<String>,
    pub migration_id: Option<String>,
    pub outcome: &'a str,
    pub counts: Totals,
}

/// Append one record, fsynced.
pub fn append(state_dir: &Path, e: AuditEntry<'_>) -> Result<(), StoreError> {
    let rec = AuditRecord {
        at: now_rfc3339(),
        who: who(),
        action: e.action.to_string(),
        from: e.from,
        to: e.to,
        migration_id: e.migration_id,
        outcome: e.outcome.to_string(),
        counts: e.counts,
    };
    let path = audit_path(state_dir);
    let mut text = serde_json::to_string(&rec)
        .map_err(|err| StoreError::json(path.display().to_string(), &err))?;
    text.push('\n');
    let mut f = super::jsonl::open_for_append(&path)?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|err| StoreError::io(&path, err))
}

/// Every record, oldest first (for support screens and tests).
pub fn read(state_dir: &Path) -> Result<Vec<AuditRecord>, StoreError> {
    let path = audit_path(state_dir);
    let text = match fsutil::read_text(&path) {
        Ok(t) => t,
        Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(l).map_err(|_| StoreError::Parse {
            location: path.display().to_string(),
            line: Some(i + 1),
            column: None,
            message: "not an audit record".into(),
        })?;
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_private_lines() {
        let dir = tempfile::tempdir().unwrap();
        for action in ["migrate", "rollback"] {
            append(
                dir.path(),
                AuditEntry {
                    action,
                    from: Some("dotenv:a".into()),
                    to: Some("sqlite:b".into()),
                    migration_id: Some("m".into()),
                    outcome: "completed",
                    counts: Totals::default(),
                },
            )
            .unwrap();
        }
        let recs = read(dir.path()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].action, "rollback");
        assert!(recs[0].who.contains('@'));
        assert_eq!(fsutil::mode_of(&audit_path(dir.path())), Some(0o600));
    }
}
