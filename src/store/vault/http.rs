//! The Vault/OpenBao HTTP transport: a blocking `ureq` agent on native-tls
//! (the OpenSSL stack the PostgreSQL stores already link), the token, the
//! namespace header and the CA file. Request and response bodies live in
//! zeroizing buffers; the token is sent as a header and never printed.
//!
//! Token sources, first found wins: `--vault-token-file PATH` (must be
//! 0600 or stricter), `VAULT_TOKEN`, `BAO_TOKEN`, `~/.vault-token` (what
//! `vault login`/`bao login` write). `VAULT_NAMESPACE`/`BAO_NAMESPACE` set
//! `X-Vault-Namespace`; `VAULT_CACERT`/`BAO_CACERT` name a PEM CA bundle
//! trusted instead of the system roots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::credential::Secret;
use crate::error::{Result, StoreError};

pub const TOKEN_VARS: &[&str] = &["VAULT_TOKEN", "BAO_TOKEN"];

/// How long a request is retried through a leader election.
pub const ELECTION_WAIT: Duration = Duration::from_secs(20);

/// The HTTP methods the KV v2 API needs (`LIST` is sent as `GET ?list=true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    /// JSON merge patch (`application/merge-patch+json`).
    Patch,
    Delete,
}

/// A response: status and body (wiped on drop: it may hold secrets).
pub struct Reply {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when empty). A malformed body is reported
    /// by position only (serde's text may quote it).
    pub fn json(&self, location: &str) -> Result<Value> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| StoreError::json(location, &e))
    }

    /// Vault's `errors` array joined, cut short: Vault's messages name
    /// paths and rules, not values, and are kept brief anyway.
    pub fn errors(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let mut text = v
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

/// Where the token came from, for messages (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(&'static str),
    Missing,
}

pub struct Client {
    agent: ureq::Agent,
    /// `scheme://host[:port]`, no trailing slash.
    addr: String,
    token: Option<Secret>,
    pub token_source: TokenSource,
    namespace: Option<String>,
    /// The redacted spec, for errors.
    pub location: String,
    /// Whether the server refused the token itself (asked once, on the
    /// first 403).
    refused: std::sync::OnceLock<bool>,
}

impl Client {
    pub fn new(addr: &str, location: String, token_file: Option<&Path>) -> Result<Self> {
        let (token, token_source) = find_token(token_file)?;
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls);
        tls = match ca_file() {
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
                let certs = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                if certs.is_empty() {
                    return Err(StoreError::parse(
                        path.display().to_string(),
                        "no PEM certificate found (VAULT_CACERT/BAO_CACERT)",
                    ));
                }
                tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            }
            None => tls.root_certs(ureq::tls::RootCerts::PlatformVerifier),
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect would carry the token to wherever it points.
            .max_redirects(0)
            // Every worker keeps its connection between requests (ureq keeps
            // 3 per host by default: the rest reconnected each batch).
            .max_idle_connections(32)
            .max_idle_connections_per_host(32)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(60)))
            .tls_config(tls.build())
            .build();
        let namespace = ["VAULT_NAMESPACE", "BAO_NAMESPACE"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            addr: addr.trim_end_matches('/').to_string(),
            token,
            token_source,
            namespace,
            location,
            refused: std::sync::OnceLock::new(),
        })
    }

    /// After a 403: whether the token itself is refused (expired, revoked,
    /// mistyped, from another server), told apart from a policy that lacks
    /// a capability by `auth/token/lookup-self`, which every valid token's
    /// default policy allows. Asked once per client.
    pub fn token_refused(&self) -> bool {
        *self.refused.get_or_init(|| {
            self.token.is_some()
                && self
                    .call(Method::Get, "auth/token/lookup-self", None, true)
                    .is_ok_and(|r| r.status == 403)
        })
    }

    /// Where the token came from, for an error (never the token).
    pub fn token_origin(&self) -> String {
        match &self.token_source {
            TokenSource::File(p) => p.display().to_string(),
            TokenSource::Env(var) => (*var).to_string(),
            TokenSource::Missing => "no token".into(),
        }
    }

    /// The reason for a 403 when the token itself is refused.
    pub fn refused_token_reason(&self) -> String {
        format!(
            "the server refused the token from {} (permission denied even on \
             auth/token/lookup-self): it is expired, revoked, mistyped or from another server, \
             or its policies grant neither the operation nor auth/token/lookup-self (a token \
             without the default policy); log in again or set \
             VAULT_TOKEN/BAO_TOKEN/--vault-token-file",
            self.token_origin()
        )
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn missing_token(&self) -> StoreError {
        StoreError::MissingKey {
            location: self.location.clone(),
            message: "no Vault/OpenBao token: set VAULT_TOKEN or BAO_TOKEN, pass \
                      --vault-token-file PATH (mode 0600), or log in (~/.vault-token)"
                .into(),
        }
    }

    /// One request to `/v1/{path}` (already percent-encoded). `auth: false`
    /// for the unauthenticated `sys/health`. Transport failures are
    /// `Unavailable`; statuses are the caller's to judge.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        auth: bool,
    ) -> Result<Reply> {
        let url = format!("{}/v1/{}", self.addr, path);
        let token = if auth {
            Some(self.token.as_ref().ok_or_else(|| self.missing_token())?)
        } else {
            None
        };
        // The same headers on every request: the namespace, the header that
        // tells Vault this is an API client, and the token when asked for.
        // The cluster's health and leader live in the root namespace only
        // (a namespace answers them 404).
        let namespace = self
            .namespace
            .as_ref()
            .filter(|_| !(path.starts_with("sys/health") || path.starts_with("sys/leader")));
        macro_rules! with_headers {
            ($rb:expr) => {{
                let mut rb = $rb.header("X-Vault-Request", "true");
                if let Some(ns) = namespace {
                    rb = rb.header("X-Vault-Namespace", ns.as_str());
                }
                if let Some(t) = token {
                    rb = rb.header("X-Vault-Token", t.expose());
                }
                rb
            }};
        }
        let body = body.unwrap_or(b"{}".as_slice());
        let first = url;
        let mut url = first.clone();
        let mut hops = 0;
        // A leader change: the standby's redirect points at the dead leader
        // or the cluster answers 5xx until a new one is elected. The same
        // request is tried again for a while (writes are check-and-set, so
        // a retried write that had landed fails as a conflict, never twice).
        let started = std::time::Instant::now();
        let mut tries: u64 = 0;
        let mut again = |hops: &mut u32, url: &mut String| -> bool {
            if started.elapsed() >= ELECTION_WAIT {
                return false;
            }
            tries += 1;
            std::thread::sleep(Duration::from_millis(100 * tries.min(10)));
            *hops = 0;
            *url = first.clone();
            true
        };
        loop {
            let target = url.as_str();
            let result = match method {
                Method::Get => with_headers!(self.agent.get(target)).call(),
                Method::Delete => with_headers!(self.agent.delete(target)).call(),
                Method::Post => with_headers!(self.agent.post(target))
                    .content_type("application/json")
                    .send(body),
                Method::Patch => with_headers!(self.agent.patch(target))
                    .content_type("application/merge-patch+json")
                    .send(body),
            };
            let mut resp = match result {
                Ok(r) => r,
                Err(_) if hops > 0 && again(&mut hops, &mut url) => continue,
                Err(e) => return Err(self.unavailable(&e)),
            };
            let status = resp.status().as_u16();
            if matches!(status, 500 | 502 | 503) && again(&mut hops, &mut url) {
                continue;
            }
            // A standby that cannot forward points at the active node (as
            // Vault's own client does, the same request follows it, a few
            // times at most; redirects are off in the agent so that no
            // other status ever carries the token elsewhere).
            if matches!(status, 307 | 308) && hops < 3 {
                let next = resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
                    .map(str::to_string);
                if let Some(next) = next {
                    hops += 1;
                    url = next;
                    continue;
                }
            }
            let body = resp
                .body_mut()
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_vec()
                .map_err(|e| self.unavailable(&e))?;
            return Ok(Reply {
                status,
                body: Zeroizing::new(body),
            });
        }
    }

    /// A transport error: ureq's text names the host and the failure, never
    /// headers or bodies.
    fn unavailable(&self, e: &ureq::Error) -> StoreError {
        StoreError::Unavailable {
            store: self.location.clone(),
            reason: e.to_string(),
        }
    }
}

fn ca_file() -> Option<PathBuf> {
    ["VAULT_CACERT", "BAO_CACERT"]
        .iter()
        .find_map(|v| std::env::var_os(v).filter(|s| !s.is_empty()))
        .map(PathBuf::from)
}

/// The token and where it came from; a token file readable by others is
/// refused (as `--db-password-file` is).
fn find_token(file: Option<&Path>) -> Result<(Option<Secret>, TokenSource)> {
    if let Some(path) = file {
        return Ok((
            Some(read_token_file(path, true)?),
            TokenSource::File(path.to_path_buf()),
        ));
    }
    for var in TOKEN_VARS {
        if let Ok(t) = std::env::var(var) {
            let t = Zeroizing::new(t);
            if !t.trim().is_empty() {
                return Ok((Some(Secret::new(t.trim())), TokenSource::Env(var)));
            }
        }
    }
    if let Some(home) = dirs::home_dir() {
        let path = home.join(".vault-token");
        if path.exists() {
            return Ok((
                Some(read_token_file(&path, false)?),
                TokenSource::File(path),
            ));
        }
    }
    Ok((None, TokenSource::Missing))
}

/// The first line of a token file. `strict`: the file must not be
/// readable by group or others (`--vault-token-file`).
pub fn read_token_file(path: &Path, strict: bool) -> Result<Secret> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| StoreError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if strict && mode & 0o077 != 0 {
        return Err(StoreError::MissingKey {
            location: path.display().to_string(),
            message: format!(
                "the Vault token file is readable by others (mode {mode:o}); chmod 600 it"
            ),
        });
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| StoreError::io(path, e))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        StoreError::parse(path.display().to_string(), "the token file is not UTF-8")
    })?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(StoreError::MissingKey {
            location: path.display().to_string(),
            message: "the Vault token file is empty".into(),
        });
    }
    Ok(Secret::new(line))
}

/// Percent-encode one path segment (Vault decodes it): everything but
/// RFC 3986's unreserved characters.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a `/`-separated path, segment by segment.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(encode_path("apps/billing"), "apps/billing");
        assert_eq!(
            encode_path("account:acc alpha/client_key/0"),
            "account%3Aacc%20alpha/client_key/0"
        );
        assert_eq!(encode_segment("a/b?c#d"), "a%2Fb%3Fc%23d");
    }

    #[test]
    fn a_token_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "s.tokvalue\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token_file(&f, true).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("tokvalue"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&f, true).unwrap().expose(), "s.tokvalue");
    }
}
