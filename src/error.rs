//! Library errors. Every variant names the store, file or item involved and
//! never a secret value: messages from parsers that may quote input (serde's
//! "invalid type: string ..." does) must not be passed through; use
//! [`StoreError::parse`] with a line/column instead.

use std::path::Path;

use crate::credential::CredentialId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file, directory, database or service is not there.
    #[error("{location}: not found{}", fmt_hint(.hint))]
    NotFound { location: String, hint: String },

    /// Malformed input. `message` is written by us and never quotes content.
    #[error("{location}{}: {message}", line_col(*.line, *.column))]
    Parse {
        location: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },

    /// Wrong passphrase or key, tampered data, failed MAC.
    #[error("{location}: {message}")]
    Crypto { location: String, message: String },

    /// A key or passphrase the store needs was not given.
    #[error("{location}: {message}")]
    MissingKey { location: String, message: String },

    #[error("{store} is read-only: {reason}")]
    ReadOnly { store: String, reason: String },

    #[error("{store} is unavailable: {reason}")]
    Unavailable { store: String, reason: String },

    #[error("{id}: {reason}")]
    Item { id: CredentialId, reason: String },

    #[error("{location}: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },

    /// Injected by `CREDSHIFT_FAULTS` (a test aid).
    #[error("{id}: injected fault ({op})")]
    Injected { id: CredentialId, op: &'static str },

    #[error("{location}: timed out after {seconds} s: {what}")]
    Timeout {
        location: String,
        seconds: u64,
        what: String,
    },

    /// Another credshift process holds the store's lock (after `seconds`
    /// of waiting): who, since when.
    #[error("{location} is locked by another credshift run ({holder}); gave up after {seconds} s")]
    Locked {
        location: String,
        holder: String,
        seconds: u64,
    },

    #[error("{0}")]
    Other(String),
}

fn fmt_hint(h: &str) -> String {
    if h.is_empty() {
        String::new()
    } else {
        format!(" ({h})")
    }
}

fn line_col(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl StoreError {
    pub fn io(location: impl AsRef<Path>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return StoreError::NotFound {
                location: location.as_ref().display().to_string(),
                hint: String::new(),
            };
        }
        StoreError::Io {
            location: location.as_ref().display().to_string(),
            source,
        }
    }

    pub fn parse(location: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Parse {
            location: location.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A serde_json error reduced to its position and category: serde_json's
    /// own text can quote the offending value, which may be a secret.
    pub fn json(location: impl Into<String>, e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let message = match e.classify() {
            Category::Io => "I/O error while reading JSON",
            Category::Syntax => "malformed JSON",
            Category::Data => "JSON has an unexpected shape",
            Category::Eof => "JSON ends too early",
        };
        StoreError::Parse {
            location: location.into(),
            line: Some(e.line()),
            column: Some(e.column()),
            message: message.into(),
        }
    }

    pub fn item(id: &CredentialId, reason: impl Into<String>) -> Self {
        StoreError::Item {
            id: id.clone(),
            reason: reason.into(),
        }
    }

    /// The same error again, for reporting one failure against several
    /// items (`StoreError` is not `Clone`: an I/O error's source is not).
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::NotFound { location, hint } => StoreError::NotFound {
                location: location.clone(),
                hint: hint.clone(),
            },
            StoreError::Parse {
                location,
                line,
                column,
                message,
            } => StoreError::Parse {
                location: location.clone(),
                line: *line,
                column: *column,
                message: message.clone(),
            },
            StoreError::Crypto { location, message } => StoreError::Crypto {
                location: location.clone(),
                message: message.clone(),
            },
            StoreError::MissingKey { location, message } => StoreError::MissingKey {
                location: location.clone(),
                message: message.clone(),
            },
            StoreError::ReadOnly { store, reason } => StoreError::ReadOnly {
                store: store.clone(),
                reason: reason.clone(),
            },
            StoreError::Unavailable { store, reason } => StoreError::Unavailable {
                store: store.clone(),
                reason: reason.clone(),
            },
            StoreError::Item { id, reason } => StoreError::Item {
                id: id.clone(),
                reason: reason.clone(),
            },
            StoreError::Io { location, source } => StoreError::Io {
                location: location.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::Injected { id, op } => StoreError::Injected { id: id.clone(), op },
            StoreError::Timeout {
                location,
                seconds,
                what,
            } => StoreError::Timeout {
                location: location.clone(),
                seconds: *seconds,
                what: what.clone(),
            },
            StoreError::Locked {
                location,
                holder,
                seconds,
            } => StoreError::Locked {
                location: location.clone(),
                holder: holder.clone(),
                seconds: *seconds,
            },
            StoreError::Other(s) => StoreError::Other(s.clone()),
        }
    }

    /// True when the store as a whole cannot be reached (the engine rolls
    /// back instead of counting item failures).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Timeout { .. }
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_the_input() {
        let input = r#"{"api_key": 12, "x": "sk-ant-topsecret"#;
        let e: serde_json::Error = serde_json::from_str::<serde_json::Value>(input).unwrap_err();
        let msg = StoreError::json("a.json", &e).to_string();
        assert!(msg.starts_with("a.json:1:"), "{msg}");
        assert!(!msg.contains("topsecret"));

        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let e = serde_json::from_str::<T>(r#"{"n": "sk-ant-topsecret"}"#).unwrap_err();
        assert!(e.to_string().contains("topsecret"), "serde quotes values");
        let msg = StoreError::json("b.json", &e).to_string();
        assert!(!msg.contains("topsecret"), "{msg}");
    }
}
