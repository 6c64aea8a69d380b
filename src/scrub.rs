//! The one place that decides what is a secret in the data credshift parses.
//!
//! A string value is secret when its key says so (`*token*`, `*secret*`,
//! `*key*` but not a public name such as `key_id` or `public_key`,
//! `password`, `passwd`, `authorization`, `cookie`, `webhook_url`, ...), when
//! an enclosing key says so (`client_secrets: ["...", "..."]`), when it is a
//! URL with a password or a secret query parameter, when it carries an
//! HTTP authorization (`Bearer ...`, `Basic ...`), or when it starts with a
//! known secret prefix (`sk-`, `ghp_`, `xoxb-`, `AKIA`, ...). Numbers,
//! booleans and null are never secret.
//!
//! Stores call [`split`] on what they read, so a secret found in metadata
//! becomes an item of its own (migrated, verified, masked) and what is left
//! is [`public`]; outputs and stores that persist metadata call [`public`]
//! once more, so secret metadata from anywhere never reaches a column, an
//! attribute, a marker comment or a report.

use serde_json::{Map, Value};

use crate::credential::{Kind, Metadata, Secret};

/// Key names that never hold a secret even though a secret word is in them.
const PUBLIC_KEYS: &[&str] = &[
    "token_type",
    "tokentype",
    "token_url",
    "token_uri",
    "token_endpoint",
    "token_expires_at",
    "token_expiry",
    "max_tokens",
    "tokens_used",
    "tokenizer",
    "key_id",
    "keyid",
    "key_name",
    "key_type",
    "key_version",
    "key_alias",
    "key_prefix",
    "key_hint",
    "key_fingerprint",
    "key_path",
    "key_file",
    "public_key",
    "publickey",
    "password_set",
    "password_updated_at",
    "password_changed_at",
    "secret_name",
    "secret_ref",
    "secret_arn",
    "auth_type",
    "auth_method",
    "auth_strategy",
];

/// Keys that name metadata, never a secret, even under a secret-named parent
/// (`tokens: {"type": "bearer", "expires_at": ...}`).
const PLAIN_NAMES: &[&str] = &[
    "type",
    "kind",
    "name",
    "id",
    "label",
    "scope",
    "scopes",
    "expires_in",
    "expires_at",
    "expiresat",
    "refresh_expires_in",
    "issued_at",
    "obtained_at",
    "created_at",
    "updated_at",
    "channel",
    "username",
    "user",
    "email",
    "enabled",
    "icon_emoji",
    "provider",
    "region",
    "note",
    "description",
];

/// Prefixes of well-known secret formats. At least 8 characters must follow.
pub const SECRET_PREFIXES: &[&str] = &[
    "sk-ant-",
    "sk-proj-",
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "whsec_",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "xapp-",
    "cnp_",
    "AKIA",
    "ASIA",
    "AIza",
    "hf_",
    "npm_",
    "pypi-",
    "shpat_",
];

/// `webhookUrl` -> `webhook_url`; `api-key` -> `api_key`; lower case.
fn normalize(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            if !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    out.trim_matches('_').to_string()
}

/// Whether a key name says its (string) value is a secret.
pub fn secret_key(key: &str) -> bool {
    let k = normalize(key);
    if k.is_empty() || PUBLIC_KEYS.contains(&k.as_str()) || PLAIN_NAMES.contains(&k.as_str()) {
        return false;
    }
    let words: Vec<&str> = k.split('_').collect();
    // A public qualifier after a secret word: `token_type`, `key_id`,
    // `password_hint`...
    const QUALIFIERS: &[&str] = &[
        "type",
        "id",
        "ids",
        "name",
        "names",
        "url",
        "uri",
        "endpoint",
        "expires",
        "expiry",
        "expiration",
        "ttl",
        "lifetime",
        "count",
        "limit",
        "version",
        "alias",
        "prefix",
        "hint",
        "fingerprint",
        "length",
        "size",
        "format",
        "path",
        "file",
        "set",
        "rotation",
        "policy",
        "at",
    ];
    for (i, w) in words.iter().enumerate() {
        let secret_word = w.contains("token")
            || w.contains("secret")
            || w.contains("password")
            || w.contains("passwd")
            || w.contains("passphrase")
            || *w == "pwd"
            || w.contains("authorization")
            || *w == "auth" && i + 1 == words.len()
            || w.contains("cookie")
            || w.contains("credential")
            || w.contains("webhook")
            || *w == "bearer"
            || *w == "dsn"
            || (w.ends_with("key") || *w == "keys")
                && *w != "monkey"
                && !(i > 0 && words[i - 1] == "public")
                && *w != "publickey";
        if !secret_word {
            continue;
        }
        // A webhook's URL is the secret itself.
        if w.contains("webhook") {
            return true;
        }
        match words.get(i + 1) {
            Some(next) if QUALIFIERS.contains(next) => continue,
            _ => return true,
        }
    }
    false
}

/// Whether a string value is a secret whatever its key: a URL with a
/// password or a secret query parameter, an HTTP authorization, a Slack
/// webhook, a private key block, a JWT, or a known secret prefix.
pub fn secret_value(v: &str) -> bool {
    let t = v.trim();
    if t.is_empty() {
        return false;
    }
    if url_has_secret(t) {
        return true;
    }
    let lower = t.to_ascii_lowercase();
    for scheme in ["bearer ", "basic ", "token ", "digest "] {
        if lower.starts_with(scheme) && t.len() >= scheme.len() + 8 {
            return true;
        }
    }
    if lower.starts_with("https://hooks.slack.com/") || t.contains("PRIVATE KEY-----") {
        return true;
    }
    if t.starts_with("eyJ") && t.matches('.').count() == 2 && !t.contains(' ') && t.len() > 30 {
        return true;
    }
    !t.contains(char::is_whitespace)
        && SECRET_PREFIXES
            .iter()
            .any(|p| t.starts_with(p) && t.len() >= p.len() + 8)
}

/// `scheme://user:password@host...` or a query parameter named like a secret.
fn url_has_secret(t: &str) -> bool {
    let Some(start) = t.find("://") else {
        return false;
    };
    let scheme = &t[..start];
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return false;
    }
    let rest = &t[start + 3..];
    // The password may hold `/` or `?`: the userinfo ends at the last `@`.
    if let Some(at) = rest.rfind('@')
        && let Some((user, pass)) = rest[..at].split_once(':')
        && !user.contains(['/', '?', '#'])
        && !pass.is_empty()
    {
        return true;
    }
    if let Some((_, query)) = rest.split_once('?') {
        return query.split(['&', ';']).any(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| !v.is_empty() && (secret_key(k) || k == "sig"))
        });
    }
    false
}

/// Whether the string `value` at `key` (inside a container named
/// `parent_secret` when one of its ancestors has a secret name) is a secret.
pub fn is_secret(key: &str, value: &str, parent_secret: bool) -> bool {
    if value.trim().is_empty() {
        return false;
    }
    secret_key(key)
        || secret_value(value)
        || parent_secret && {
            let k = normalize(key);
            !PLAIN_NAMES.contains(&k.as_str()) && !PUBLIC_KEYS.contains(&k.as_str())
        }
}

/// One step of a path into a JSON tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path as text: `oauth.refresh_token`, `client_secrets.0`.
pub fn path_text(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The inverse of [`path_text`]: numeric segments are array indices.
pub fn parse_path(text: &str) -> Option<Vec<Seg>> {
    if text.is_empty() {
        return None;
    }
    text.split('.')
        .map(|s| {
            if s.is_empty() {
                None
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                (s == "0" || !s.starts_with('0'))
                    .then(|| s.parse().ok().map(Seg::Index))
                    .flatten()
            } else {
                Some(Seg::Key(s.to_string()))
            }
        })
        .collect()
}

/// A secret found inside a JSON tree.
pub struct Found {
    /// Where it is, from the root that was searched.
    pub path: Vec<Seg>,
    pub kind: Kind,
    pub secret: Secret,
}

impl Found {
    pub fn path_text(&self) -> String {
        path_text(&self.path)
    }
}

/// Everything secret under `v`, and places that hold secret material no
/// item can carry (a key holding `.` or made of digits, which a path could
/// not name again), in document order.
pub fn find(v: &Value) -> (Vec<Found>, Vec<String>) {
    let mut found = Vec::new();
    let mut unaddressable = Vec::new();
    walk(
        v,
        "",
        false,
        &mut Vec::new(),
        &mut found,
        &mut unaddressable,
    );
    (found, unaddressable)
}

fn walk(
    v: &Value,
    key: &str,
    parent_secret: bool,
    path: &mut Vec<Seg>,
    found: &mut Vec<Found>,
    unaddressable: &mut Vec<String>,
) {
    match v {
        Value::String(s) if !path.is_empty() && is_secret(key, s, parent_secret) => {
            let addressable = path.iter().all(|s| match s {
                Seg::Key(k) => {
                    !k.is_empty() && !k.contains('.') && !k.bytes().all(|b| b.is_ascii_digit())
                }
                Seg::Index(_) => true,
            });
            if addressable {
                let name = path_text(path);
                found.push(Found {
                    path: path.clone(),
                    kind: Kind::guess(&name),
                    secret: Secret::new(s.as_str()),
                });
            } else {
                unaddressable.push(path_text(path));
            }
        }
        Value::Object(o) => {
            let inherited = parent_secret || (!path.is_empty() && secret_key(key));
            for (k, child) in o {
                path.push(Seg::Key(k.clone()));
                walk(child, k, inherited, path, found, unaddressable);
                path.pop();
            }
        }
        Value::Array(a) => {
            let inherited = parent_secret || (!path.is_empty() && secret_key(key));
            for (i, child) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                // Array elements are named by their array's key.
                walk(child, key, inherited, path, found, unaddressable);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A copy of `v` without its secret leaves (objects and arrays keep their
/// shape; an array's secret element becomes `null` so indices stay).
pub fn scrubbed(v: &Value) -> Value {
    fn go(v: &Value, key: &str, parent_secret: bool, top: bool) -> Value {
        match v {
            Value::String(s) if !top && is_secret(key, s, parent_secret) => Value::Null,
            Value::Object(o) => {
                let inherited = parent_secret || (!top && secret_key(key));
                Value::Object(
                    o.iter()
                        .filter(|(k, c)| !(c.is_string() && go(c, k, inherited, false).is_null()))
                        .map(|(k, c)| (k.clone(), go(c, k, inherited, false)))
                        .collect(),
                )
            }
            Value::Array(a) => {
                let inherited = parent_secret || (!top && secret_key(key));
                Value::Array(a.iter().map(|c| go(c, key, inherited, false)).collect())
            }
            other => other.clone(),
        }
    }
    go(v, "", false, true)
}

/// Metadata without any secret value, at any depth.
pub fn public(meta: &Metadata) -> Metadata {
    match scrubbed(&Value::Object(meta.clone())) {
        Value::Object(m) => m,
        _ => Metadata::new(),
    }
}

/// Whether metadata holds any secret value.
pub fn has_secret(meta: &Metadata) -> bool {
    !find(&Value::Object(meta.clone())).0.is_empty()
}

/// The value at `path` under `root`.
pub fn get<'a>(root: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, s| match s {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

/// The value at `path` under `root`, mutably.
pub fn get_mut<'a>(root: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |v, s| match s {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

/// Put `value` at `path` under `root`, creating objects (for keys) and
/// arrays padded with `null` (for indices) on the way. Fails when a step
/// meets a value of the other shape.
pub fn set(root: &mut Value, path: &[Seg], value: Value) -> Result<(), String> {
    let Some((last, steps)) = path.split_last() else {
        return Err("empty path".into());
    };
    let mut cur = root;
    for (n, s) in steps.iter().enumerate() {
        let next_is_index = matches!(path[n + 1], Seg::Index(_));
        let fresh = || {
            if next_is_index {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            }
        };
        cur = match s {
            Seg::Key(k) => {
                let o = cur
                    .as_object_mut()
                    .ok_or_else(|| format!("`{}` is not an object", path_text(&path[..n])))?;
                let slot = o.entry(k.clone()).or_insert_with(fresh);
                if slot.is_null() {
                    *slot = fresh();
                }
                slot
            }
            Seg::Index(i) => {
                let a = cur
                    .as_array_mut()
                    .ok_or_else(|| format!("`{}` is not an array", path_text(&path[..n])))?;
                if a.len() <= *i {
                    a.resize(i + 1, Value::Null);
                }
                if a[*i].is_null() {
                    a[*i] = fresh();
                }
                &mut a[*i]
            }
        };
    }
    match last {
        Seg::Key(k) => {
            cur.as_object_mut()
                .ok_or_else(|| format!("`{}` is not an object", path_text(steps)))?
                .insert(k.clone(), value);
        }
        Seg::Index(i) => {
            let a = cur
                .as_array_mut()
                .ok_or_else(|| format!("`{}` is not an array", path_text(steps)))?;
            if a.len() <= *i {
                a.resize(i + 1, Value::Null);
            }
            a[*i] = value;
        }
    }
    Ok(())
}

/// Remove the string at `path`: an object entry is removed, an array slot
/// becomes `null` (trailing `null`s trimmed) so other indices keep their
/// meaning. Containers stay (see [`prune`]). True when the string was there.
pub fn remove(root: &mut Value, path: &[Seg]) -> bool {
    if !get(root, path).is_some_and(Value::is_string) {
        return false;
    }
    remove_at(root, path);
    true
}

/// After a [`remove`] at `path`: remove every container on the path that
/// is left without secret material (see [`holds_secret`]), innermost
/// first, up to but not including `root`.
pub fn prune(root: &mut Value, path: &[Seg]) {
    for depth in (1..path.len()).rev() {
        let container = &path[..depth];
        let empty = get(root, container).is_some_and(|c| !holds_secret(c, container));
        if !empty {
            break;
        }
        remove_at(root, container);
    }
}

fn remove_at(root: &mut Value, path: &[Seg]) {
    let Some((last, steps)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for s in steps {
        let next = match s {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        let Some(n) = next else { return };
        cur = n;
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(o)) => {
            if let Some(mut old) = o.shift_remove(k) {
                wipe_json(&mut old);
            }
        }
        (Seg::Index(i), Value::Array(a)) if *i < a.len() => {
            wipe_json(&mut a[*i]);
            a[*i] = Value::Null;
            while a.last().is_some_and(Value::is_null) {
                a.pop();
            }
        }
        _ => {}
    }
}

/// Whether `v` (found at `path`) still holds secret material: a secret
/// string by the rules above, or any non-empty string when `v` sits under
/// a secret-named key.
pub fn holds_secret(v: &Value, path: &[Seg]) -> bool {
    let key = path
        .iter()
        .rev()
        .find_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .unwrap_or("");
    let parent_secret = path
        .iter()
        .any(|s| matches!(s, Seg::Key(k) if secret_key(k)));
    let mut found = Vec::new();
    let mut bad = Vec::new();
    let mut p = path.to_vec();
    match v {
        Value::String(s) => is_secret(key, s, parent_secret),
        _ => {
            walk(v, key, parent_secret, &mut p, &mut found, &mut bad);
            !found.is_empty() || !bad.is_empty()
        }
    }
}

/// Merge public metadata `src` into `dst`: objects merge key by key, other
/// values replace. A secret leaf that `dst` holds and `src` (scrubbed)
/// lacks is kept.
pub fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    Some(slot) if slot.is_array() && v.is_array() => merge(slot, v),
                    Some(slot) => *slot = v.clone(),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) => {
            // A scrubbed array keeps its length (secrets become `null`), so
            // the public copy's length is the array's.
            d.resize(s.len(), Value::Null);
            for (slot, v) in d.iter_mut().zip(s) {
                match v {
                    // A scrubbed slot: keep whatever secret the target holds.
                    Value::Null => {}
                    v if slot.is_object() && v.is_object() => merge(slot, v),
                    v => *slot = v.clone(),
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// Overwrite every string in a parsed JSON tree (values may be secrets)
/// before its memory is freed.
pub(crate) fn wipe_json(v: &mut Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe_json),
        Value::Object(o) => o.values_mut().for_each(wipe_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_names_table() {
        let secret = [
            "api_key",
            "apiKey",
            "admin_api_key",
            "x-api-key",
            "access_token",
            "refreshToken",
            "id_token",
            "client_secret",
            "client_secrets",
            "password",
            "db_passwd",
            "passphrase",
            "Authorization",
            "proxy_authorization",
            "cookie",
            "Set-Cookie",
            "webhook_url",
            "webhookUrl",
            "slack_webhook",
            "private_key",
            "privateKey",
            "secret",
            "auth",
            "basic_auth",
            "credentials",
            "session_key",
            "bearer",
            "sentry_dsn",
            "token",
        ];
        let public = [
            "token_type",
            "tokenType",
            "max_tokens",
            "key_id",
            "keyId",
            "key_name",
            "public_key",
            "publicKey",
            "auth_type",
            "auth_strategy",
            "expires_at",
            "scope",
            "channel",
            "username",
            "url",
            "base_url",
            "token_url",
            "keyboard_layout",
            "monkey",
            "password_hint",
            "account_name",
            "type",
            "",
        ];
        for k in secret {
            assert!(secret_key(k), "{k} should be a secret name");
        }
        for k in public {
            assert!(!secret_key(k), "{k} should be a public name");
        }
    }

    #[test]
    fn values_table() {
        let secret = [
            "http://user:pa55@proxy.example:3128",
            "postgres://app:Sl4sh/Pass?word@host/db",
            "https://api.example/x?api_key=abcdef",
            "https://api.example/x?access_token=abcdef&b=1",
            "Bearer ghs_abcdefghijklmnop",
            "basic dXNlcjpwYXNzd29yZA==",
            "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            "sk-proj-abcdefghijkl",
            "sk-ant-api03-abcdefgh",
            "ghp_abcdefghijklmnop",
            "gho_abcdefghijklmnop",
            "ghs_abcdefghijklmnop",
            "xoxb-1234-5678-abcdef",
            "xoxp-1234-5678-abcdef",
            "cnp_live_abcdefgh",
            "AKIAIOSFODNN7EXAMPLE",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijk",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
        ];
        let public = [
            "",
            "   ",
            "http://localhost:11434",
            "https://user@host/path",
            "https://host:8080/path",
            "https://api.example/x?model=gpt&page=2",
            "sk-",
            "sk-ant-",
            "sk-short",
            "ghp_",
            "research",
            "#alerts",
            "bearer",
            "Bearer x",
            "a sk-proj-abcdefghijkl with spaces",
            "2026-09-21T12:00:00+00:00",
            "read:user",
        ];
        for v in secret {
            assert!(secret_value(v), "{v:?} should be secret");
        }
        for v in public {
            assert!(!secret_value(v), "{v:?} should be public");
        }
    }

    #[test]
    fn keys_and_parents_together() {
        assert!(is_secret("url", "http://u:p@h", false));
        assert!(!is_secret("url", "http://h", false));
        assert!(is_secret("api_key", "anything", false));
        assert!(!is_secret("api_key", "", false));
        assert!(is_secret("github", "abc", true));
        assert!(!is_secret("type", "bearer", true));
        assert!(!is_secret("expires_at", "2026", true));
        assert!(!is_secret("github", "abc", false));
    }

    #[test]
    fn find_names_paths_and_kinds() {
        let v = json!({
            "access_token": "a-token",
            "token_type": "bearer",
            "expires_in": 3600,
            "oauth": {"refresh_token": "r-token", "id_token": "i-token", "scope": "x"},
            "client_secrets": ["s0", "s1"],
            "proxy": {"url": "http://u:pw@proxy:1", "port": 1},
            "headers": {"authorization": "Bearer ghs_abcdefghijkl"},
            "bad.key": {"token": "t"},
            "count": 7
        });
        let (found, bad) = find(&v);
        let got: Vec<(String, Kind)> = found.iter().map(|f| (f.path_text(), f.kind)).collect();
        assert_eq!(
            got,
            [
                ("access_token".to_string(), Kind::OauthAccess),
                ("oauth.refresh_token".to_string(), Kind::OauthRefresh),
                ("oauth.id_token".to_string(), Kind::ApiKey),
                ("client_secrets.0".to_string(), Kind::ApiKey),
                ("client_secrets.1".to_string(), Kind::ApiKey),
                ("proxy.url".to_string(), Kind::Other),
                ("headers.authorization".to_string(), Kind::Other),
            ]
        );
        assert_eq!(bad, ["bad.key.token"]);
        let s = scrubbed(&v);
        let text = s.to_string();
        for leak in [
            "a-token", "r-token", "i-token", "s0", "s1", "pw@", "ghs_", "\"t\"",
        ] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert_eq!(s["token_type"], "bearer");
        assert_eq!(s["proxy"]["port"], 1);
        assert_eq!(s["client_secrets"], json!([null, null]));
        assert_eq!(s["oauth"]["scope"], "x");
        // Scrubbing is idempotent and finds nothing more.
        assert_eq!(scrubbed(&s), s);
        assert!(find(&s).0.is_empty());
    }

    #[test]
    fn paths_round_trip_and_set_recreates_containers() {
        for p in ["a", "oauth.refresh_token", "client_secrets.0", "x.10.y"] {
            assert_eq!(path_text(&parse_path(p).unwrap()), p);
        }
        for p in ["", "a..b", "a.01", ".a"] {
            assert!(parse_path(p).is_none(), "{p}");
        }
        let mut v = json!({"keep": 1});
        set(&mut v, &parse_path("client_secrets.1").unwrap(), json!("b")).unwrap();
        set(&mut v, &parse_path("client_secrets.0").unwrap(), json!("a")).unwrap();
        set(
            &mut v,
            &parse_path("oauth.refresh_token").unwrap(),
            json!("r"),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"keep": 1, "client_secrets": ["a", "b"], "oauth": {"refresh_token": "r"}})
        );
        assert!(set(&mut v, &parse_path("keep.x").unwrap(), json!("z")).is_err());
    }

    #[test]
    fn remove_then_prune_keeps_containers_with_secret_material() {
        let mut v = json!({
            "oauth": {"refresh_token": "r", "id_token": "i", "scope": "x"},
            "client_secrets": ["a", "b"],
            "proxy": {"url": "http://u:p@h", "port": 1}
        });
        let p = parse_path("oauth.refresh_token").unwrap();
        assert!(remove(&mut v, &p));
        prune(&mut v, &p);
        assert_eq!(v["oauth"], json!({"id_token": "i", "scope": "x"}));
        let p = parse_path("oauth.id_token").unwrap();
        assert!(remove(&mut v, &p));
        prune(&mut v, &p);
        assert!(v.get("oauth").is_none(), "{v}");
        let p = parse_path("client_secrets.0").unwrap();
        assert!(remove(&mut v, &p));
        prune(&mut v, &p);
        assert_eq!(v["client_secrets"], json!([null, "b"]));
        assert!(!remove(&mut v, &parse_path("client_secrets.0").unwrap()));
        let p = parse_path("client_secrets.1").unwrap();
        assert!(remove(&mut v, &p));
        prune(&mut v, &p);
        assert!(v.get("client_secrets").is_none(), "{v}");
        let p = parse_path("proxy.url").unwrap();
        assert!(remove(&mut v, &p));
        prune(&mut v, &p);
        assert!(v.get("proxy").is_none(), "{v}");
        assert_eq!(v, json!({}));
    }

    #[test]
    fn merge_keeps_secret_leaves_the_public_copy_lacks() {
        let mut dst = json!({"proxy": {"url": "http://u:p@h", "port": 1}, "list": ["s", 2]});
        merge(
            &mut dst,
            &json!({"proxy": {"port": 2}, "list": [null, 3], "new": true}),
        );
        assert_eq!(
            dst,
            json!({"proxy": {"url": "http://u:p@h", "port": 2}, "list": ["s", 3], "new": true})
        );
        // A public array that shrank is not padded with stale elements.
        let mut dst = json!({"tags": ["a", "b", "c"]});
        merge(&mut dst, &json!({"tags": ["a"]}));
        assert_eq!(dst, json!({"tags": ["a"]}));
    }

    #[test]
    fn public_metadata_drops_every_secret() {
        let mut m = Metadata::new();
        m.insert("api_key".into(), "sk-proj-abcdefghijklmnop".into());
        m.insert("migrated_from".into(), "a_i_credentials".into());
        m.insert(
            "nested".into(),
            json!({"authorization": "Bearer abcdefghijk"}),
        );
        assert!(has_secret(&m));
        let p = public(&m);
        assert!(!has_secret(&p));
        assert_eq!(
            Value::Object(p),
            json!({"migrated_from": "a_i_credentials", "nested": {}})
        );
    }
}
