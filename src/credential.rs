//! The credential model: ids, kinds, zeroizing secrets and masked previews.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Non-secret data that travels with a credential (expiry, scopes, labels...).
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// One part of a [`CredentialId`]: an immutable, shared string. A clone is
/// a reference count, not a copy, so the plan, the journal's state, the
/// batches and the reports share one allocation per id (100,000 ids were
/// copied nine times over in a migration: about 1 KB per item). Reads like
/// a `&str` (`Deref`, `as_str`, `==` with a `str`); ordered and hashed as
/// its text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdStr(std::sync::Arc<str>);

impl IdStr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for IdStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for IdStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for IdStr {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&*self.0)
    }
}

impl std::borrow::Borrow<str> for IdStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for IdStr {
    fn from(s: &str) -> Self {
        IdStr(s.into())
    }
}

impl From<String> for IdStr {
    fn from(s: String) -> Self {
        IdStr(s.into())
    }
}

impl From<&String> for IdStr {
    fn from(s: &String) -> Self {
        IdStr(s.as_str().into())
    }
}

impl From<IdStr> for String {
    fn from(s: IdStr) -> Self {
        s.0.to_string()
    }
}

impl PartialEq<str> for IdStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for IdStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for IdStr {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<IdStr> for str {
    fn eq(&self, other: &IdStr) -> bool {
        self == &*other.0
    }
}

impl PartialEq<IdStr> for &str {
    fn eq(&self, other: &IdStr) -> bool {
        *self == &*other.0
    }
}

impl fmt::Display for IdStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IdStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for IdStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `namespace/name`: the namespace is the provider or account
/// (`openai`, `account:acc_alpha`, `train:team-alpha`), the name the field
/// (`api_key`, `oauth_access_token`, `client_key/0`). The namespace never
/// contains `/`; the name may. Cheap to clone (see [`IdStr`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId {
    pub namespace: IdStr,
    pub name: IdStr,
}

impl CredentialId {
    pub fn new(namespace: impl AsRef<str>, name: impl Into<IdStr>) -> Self {
        Self {
            namespace: shared_namespace(namespace.as_ref()),
            name: name.into(),
        }
    }
}

/// Most stores list many ids under few namespaces (every `.env` item is
/// `env/...`), so a namespace equal to the last one made on this thread
/// shares its allocation.
fn shared_namespace(ns: &str) -> IdStr {
    thread_local! {
        static LAST: std::cell::RefCell<Option<IdStr>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(l) if l.as_str() == ns => l.clone(),
            _ => {
                let s = IdStr::from(ns);
                *last = Some(s.clone());
                s
            }
        }
    })
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid credential id {0:?}: expected NAMESPACE/NAME with both parts non-empty")]
pub struct BadId(pub String);

impl FromStr for CredentialId {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, BadId> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(Self::new(ns, name)),
            _ => Err(BadId(s.to_string())),
        }
    }
}

impl Serialize for CredentialId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CredentialId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ApiKey,
    OauthAccess,
    OauthRefresh,
    ClientKey,
    ClientKeyHash,
    Password,
    PasswordHash,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ApiKey => "api_key",
            Kind::OauthAccess => "oauth_access",
            Kind::OauthRefresh => "oauth_refresh",
            Kind::ClientKey => "client_key",
            Kind::ClientKeyHash => "client_key_hash",
            Kind::Password => "password",
            Kind::PasswordHash => "password_hash",
            Kind::Other => "other",
        }
    }

    /// A best guess from a field name, for formats that carry no type.
    pub fn guess(field: &str) -> Kind {
        // ASCII case-insensitive, without a lowercased copy per field.
        let f = field.as_bytes();
        let has = |word: &str| {
            f.windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
        };
        if has("refresh") {
            Kind::OauthRefresh
        } else if has("access_token") || has("accesstoken") {
            Kind::OauthAccess
        } else if has("hash") {
            Kind::PasswordHash
        } else if has("client_key") {
            Kind::ClientKey
        } else if has("password") || has("passwd") {
            Kind::Password
        } else if has("key") || has("token") || has("secret") {
            Kind::ApiKey
        } else {
            Kind::Other
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown credential kind {s:?}"))
    }
}

/// A secret value. Zeroized on drop; `Debug` and `Display` print `[redacted]`.
/// The only way to the text is [`Secret::expose`], which makes every use
/// greppable.
/// Clones share the one zeroizing buffer (a reference count): the plan, the
/// backup, a batch and a report hold the same value, and it is zeroized
/// when the last of them is dropped.
#[derive(Clone, Default)]
pub struct Secret(std::sync::Arc<Zeroizing<String>>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(std::sync::Arc::new(Zeroizing::new(s.into())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality (length may leak, content does not).
    pub fn ct_eq(&self, other: &Secret) -> bool {
        ct_eq_bytes(self.0.as_bytes(), other.0.as_bytes())
    }

    /// Masked preview per ARCHITECTURE.md ("Masked preview"), for a value of unknown kind (the
    /// tail rule of an API key). [`Credential::preview`] knows the kind.
    pub fn preview(&self) -> String {
        mask(self.expose())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Constant-time byte comparison (for equal lengths; the length is not
/// secret). Eight bytes at a time, each word compared by `subtle` and the
/// results combined with its `Choice`, no early exit: a byte-wise `ct_eq`
/// made comparing a whole rekeyed file (tens of MB) cost tens of
/// milliseconds, and the comparison itself stays the maintained crate's.
pub fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    let mut equal = subtle::Choice::from(1u8);
    for (x, y) in ac.zip(bc) {
        equal &= word(x).ct_eq(&word(y));
    }
    equal &= ar.ct_eq(br);
    bool::from(equal)
}

/// Public prefixes a preview may show (a vendor's marker, not key material).
pub const KNOWN_PREFIXES: &[&str] = &["sk-ant-", "sk-", "gho_", "ghp_", "cnp_", "xoxb-"];

/// How many characters a preview must keep hidden, whatever it shows.
pub const MIN_HIDDEN: usize = 12;

/// Masked preview (ARCHITECTURE.md, "Masked preview"): a known public prefix (7
/// chars at most) and the last 4 chars, but only while at least
/// [`MIN_HIDDEN`] characters stay hidden; otherwise the prefix alone, or
/// nothing. Secrets shorter than 16 chars show only their length.
pub fn mask(secret: &str) -> String {
    mask_with(secret, true)
}

/// [`mask`] for a credential of `kind`: passwords and password hashes
/// never show a tail.
pub fn mask_as(secret: &str, kind: Kind) -> String {
    mask_with(secret, !matches!(kind, Kind::Password | Kind::PasswordHash))
}

fn mask_with(secret: &str, tail_allowed: bool) -> String {
    let n = secret.chars().count();
    let nothing = || format!("•••• ({n} chars)");
    if n < 16 {
        return nothing();
    }
    let prefix = KNOWN_PREFIXES
        .iter()
        .find(|p| secret.starts_with(**p))
        .map(|p| &p[..p.len().min(7)])
        .unwrap_or("");
    // Known prefixes are ASCII, so bytes are characters here.
    let hidden_without_tail = n - prefix.len();
    if tail_allowed && hidden_without_tail >= MIN_HIDDEN + 4 {
        let tail_at = secret.char_indices().nth_back(3).map_or(0, |(i, _)| i);
        let tail = &secret[tail_at..];
        format!("{prefix}…{tail} ({n} chars)")
    } else if !prefix.is_empty() && hidden_without_tail >= MIN_HIDDEN {
        format!("{prefix}… ({n} chars)")
    } else {
        nothing()
    }
}

/// One stored credential.
#[derive(Clone, Debug)]
pub struct Credential {
    pub id: CredentialId,
    pub kind: Kind,
    pub secret: Secret,
    pub metadata: Metadata,
}

impl Credential {
    pub fn new(id: CredentialId, kind: Kind, secret: impl Into<Secret>) -> Self {
        Self {
            id,
            kind,
            secret: secret.into(),
            metadata: Metadata::new(),
        }
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Masked preview for this credential's kind (see [`mask_as`]).
    pub fn preview(&self) -> String {
        mask_as(self.secret.expose(), self.kind)
    }

    /// Why this credential cannot be migrated, if it cannot.
    pub fn invalid_reason(&self) -> Option<&'static str> {
        if self.secret.is_empty() {
            Some("empty secret")
        } else if self.secret.expose().trim().is_empty() {
            Some("secret is only whitespace")
        } else {
            None
        }
    }

    /// Expiry in epoch milliseconds from `expires_at` metadata, when known.
    /// Accepts epoch ms/s numbers and RFC 3339 strings.
    pub fn expires_at_ms(&self) -> Option<i64> {
        expires_at_ms(&self.metadata)
    }

    /// Same value and same metadata, compared in constant time for the value.
    pub fn same_as(&self, other: &Credential) -> bool {
        // Evaluate both so the timing does not depend on which differs.
        let value = self.secret.ct_eq(&other.secret);
        let meta = self.metadata == other.metadata;
        value & meta & (self.kind == other.kind)
    }
}

pub fn expires_at_ms(metadata: &Metadata) -> Option<i64> {
    match metadata.get("expires_at")? {
        serde_json::Value::Number(n) => {
            let v = n.as_i64()?;
            // Epoch seconds are below 1e11 until the year 5138.
            Some(if v < 100_000_000_000 { v * 1000 } else { v })
        }
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.timestamp_millis()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_bytes_sees_every_byte_in_words_and_the_remainder() {
        let a: Vec<u8> = (0..37u8).collect();
        assert!(ct_eq_bytes(&a, &a.clone()));
        assert!(ct_eq_bytes(b"", b""));
        for i in [0, 7, 8, 31, 32, 36] {
            let mut b = a.clone();
            b[i] ^= 0x80;
            assert!(!ct_eq_bytes(&a, &b), "byte {i}");
        }
        assert!(!ct_eq_bytes(&a, &a[..36]));
    }

    #[test]
    fn kind_guess_names_the_fields_the_apps_really_use() {
        // Written out by hand from the apps' formats (agent-prompttrain,
        // model-forge, Laravel, `.env` conventions), not derived from the
        // rules: the first matching rule wins, case is ignored, and
        // non-ASCII letters never match an ASCII word.
        let table = [
            ("api_key", Kind::ApiKey),
            ("OPENAI_API_KEY", Kind::ApiKey),
            ("GITHUB_TOKEN", Kind::ApiKey),
            ("STRIPE_SECRET", Kind::ApiKey),
            ("ΩTOKEN", Kind::ApiKey),
            ("oauth_access_token", Kind::OauthAccess),
            ("accessToken", Kind::OauthAccess),
            ("access_token", Kind::OauthAccess),
            ("oauth_refresh_token", Kind::OauthRefresh),
            ("REFRESH_TOKEN", Kind::OauthRefresh),
            // "refresh" wins over "access_token".
            ("refresh_access_token", Kind::OauthRefresh),
            ("client_key", Kind::ClientKey),
            // "hash" wins over "client_key" and "password".
            ("client_key_hash", Kind::PasswordHash),
            ("PASSWORD_HASH", Kind::PasswordHash),
            ("DB_PASSWORD", Kind::Password),
            ("passwd", Kind::Password),
            ("SLACK_WEBHOOK_URL", Kind::Other),
            ("DATABASE_URL", Kind::Other),
            ("", Kind::Other),
            ("KÉY", Kind::Other),
            ("kéy_tökén", Kind::Other),
        ];
        for (field, want) in table {
            assert_eq!(Kind::guess(field), want, "{field:?}");
        }
    }

    #[test]
    fn id_parses_at_first_slash() {
        let id: CredentialId = "train:team-alpha/client_key/0".parse().unwrap();
        assert_eq!(id.namespace, "train:team-alpha");
        assert_eq!(id.name, "client_key/0");
        assert_eq!(id.to_string(), "train:team-alpha/client_key/0");
        assert!("noslash".parse::<CredentialId>().is_err());
        assert!("/name".parse::<CredentialId>().is_err());
        assert!("ns/".parse::<CredentialId>().is_err());
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-ant-supersecretvalue-1234");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let c = Credential::new(CredentialId::new("a", "b"), Kind::ApiKey, s);
        assert!(!format!("{c:?}").contains("supersecret"));
    }

    #[test]
    fn mask_short_secrets_show_length_only() {
        assert_eq!(mask(""), "•••• (0 chars)");
        assert_eq!(mask("abcd"), "•••• (4 chars)");
        assert_eq!(mask("sk-12345678"), "•••• (11 chars)");
        assert_eq!(mask("fifteen-chars-x"), "•••• (15 chars)");
    }

    #[test]
    fn mask_long_secrets_show_prefix_and_tail() {
        assert_eq!(mask("0123456789abcdef"), "…cdef (16 chars)");
        assert_eq!(mask("sk-ant-api03-abcdefgh3f9a"), "sk-ant-…3f9a (25 chars)");
        assert_eq!(mask("sk-proj-abcdefghijkl"), "sk-…ijkl (20 chars)");
        assert_eq!(mask("gho_abcdefghijklmnop"), "gho_…mnop (20 chars)");
        assert_eq!(mask("ghp_abcdefghijklmnop"), "ghp_…mnop (20 chars)");
        assert_eq!(
            mask("cnp_live_29GFfm7sFog16pAgTtpU4r16"),
            "cnp_…4r16 (33 chars)"
        );
        assert_eq!(mask("xoxb-aKG2lvKyFwJdxte7Xa"), "xoxb-…e7Xa (23 chars)");
        // Unicode counts characters, not bytes, and never splits one.
        assert_eq!(mask("ключ-ключ-ключ-ключ"), "…ключ (19 chars)");
    }

    #[test]
    fn mask_shows_no_run_of_the_secret_longer_than_the_prefix() {
        let s = "sk-ant-api03-575yx8xm5MslfY5ubiheyEd7P4zDL_ak6J0kGODKdinZnLXicaBAg8WY";
        let m = mask(s);
        assert_eq!(m, "sk-ant-…g8WY (69 chars)");
        for start in 0..s.len() - 8 {
            assert!(
                !m.contains(&s[start..start + 8]),
                "{m} leaks {}",
                &s[start..start + 8]
            );
        }
    }

    /// Issue 14, reproduction 6: a 16-char key showed 11 of its characters.
    #[test]
    fn short_prefixed_keys_show_no_tail() {
        assert_eq!(mask("sk-ant-x7Qp2Lm9K"), "•••• (16 chars)");
        let c = Credential::new(
            CredentialId::new("db", "password"),
            Kind::Password,
            "hunter2-horse-battery",
        );
        assert_eq!(c.preview(), "•••• (21 chars)");
    }

    /// Every (kind, prefix, length) in a table: what a preview shows, and
    /// that at least 12 characters always stay hidden.
    #[test]
    fn preview_table_over_lengths_and_kinds() {
        fn secret(prefix: &str, n: usize) -> String {
            let body: String = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
                .chars()
                .cycle()
                .take(n - prefix.len())
                .collect();
            format!("{prefix}{body}")
        }
        // (prefix, length, api-key preview, password preview); TAIL
        // stands for the secret's last 4 characters.
        let table: &[(&str, usize, &str, &str)] = &[
            ("", 8, "•••• (8 chars)", "•••• (8 chars)"),
            ("", 15, "•••• (15 chars)", "•••• (15 chars)"),
            ("", 16, "…TAIL (16 chars)", "•••• (16 chars)"),
            ("", 40, "…TAIL (40 chars)", "•••• (40 chars)"),
            ("sk-", 15, "•••• (15 chars)", "•••• (15 chars)"),
            ("sk-", 16, "sk-… (16 chars)", "sk-… (16 chars)"),
            ("sk-", 18, "sk-… (18 chars)", "sk-… (18 chars)"),
            ("sk-", 19, "sk-…TAIL (19 chars)", "sk-… (19 chars)"),
            ("sk-ant-", 16, "•••• (16 chars)", "•••• (16 chars)"),
            ("sk-ant-", 18, "•••• (18 chars)", "•••• (18 chars)"),
            ("sk-ant-", 19, "sk-ant-… (19 chars)", "sk-ant-… (19 chars)"),
            ("sk-ant-", 22, "sk-ant-… (22 chars)", "sk-ant-… (22 chars)"),
            (
                "sk-ant-",
                23,
                "sk-ant-…TAIL (23 chars)",
                "sk-ant-… (23 chars)",
            ),
            ("gho_", 19, "gho_… (19 chars)", "gho_… (19 chars)"),
            ("gho_", 20, "gho_…TAIL (20 chars)", "gho_… (20 chars)"),
            ("xoxb-", 21, "xoxb-…TAIL (21 chars)", "xoxb-… (21 chars)"),
        ];
        for &(prefix, n, api, password) in table {
            let s = secret(prefix, n);
            assert_eq!(s.chars().count(), n);
            let tail: String = s.chars().skip(n - 4).collect();
            let (api, password) = (api.replace("TAIL", &tail), password.replace("TAIL", &tail));
            for (kind, want) in [
                (Kind::ApiKey, api.as_str()),
                (Kind::OauthAccess, api.as_str()),
                (Kind::Other, api.as_str()),
                (Kind::Password, password.as_str()),
                (Kind::PasswordHash, password.as_str()),
            ] {
                let got = mask_as(&s, kind);
                assert_eq!(got, want, "{kind} {s}");
                let shown = got
                    .split(" (")
                    .next()
                    .unwrap()
                    .replace(['…', '•'], "")
                    .chars()
                    .count();
                assert!(
                    n - shown >= MIN_HIDDEN || n < 16,
                    "{got} hides too little of {s}"
                );
            }
        }
    }

    #[test]
    fn kind_round_trips_as_snake_case() {
        for k in [
            Kind::ApiKey,
            Kind::OauthAccess,
            Kind::OauthRefresh,
            Kind::ClientKey,
            Kind::ClientKeyHash,
            Kind::Password,
            Kind::PasswordHash,
            Kind::Other,
        ] {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn empty_and_blank_secrets_are_invalid() {
        let id = CredentialId::new("a", "b");
        assert!(
            Credential::new(id.clone(), Kind::ApiKey, "")
                .invalid_reason()
                .is_some()
        );
        assert!(
            Credential::new(id.clone(), Kind::ApiKey, "  \n")
                .invalid_reason()
                .is_some()
        );
        assert!(
            Credential::new(id, Kind::ApiKey, "x")
                .invalid_reason()
                .is_none()
        );
    }

    #[test]
    fn expiry_accepts_ms_seconds_and_rfc3339() {
        let mut m = Metadata::new();
        m.insert("expires_at".into(), 1790003600000i64.into());
        assert_eq!(expires_at_ms(&m), Some(1790003600000));
        m.insert("expires_at".into(), 1790003600i64.into());
        assert_eq!(expires_at_ms(&m), Some(1790003600000));
        m.insert("expires_at".into(), "2026-09-21T12:00:00+00:00".into());
        assert_eq!(expires_at_ms(&m), Some(1789992000000));
    }

    #[test]
    fn same_as_compares_value_metadata_and_kind() {
        let id = CredentialId::new("a", "b");
        let a = Credential::new(id.clone(), Kind::ApiKey, "value-1");
        let mut b = a.clone();
        assert!(a.same_as(&b));
        b.metadata.insert("x".into(), 1.into());
        assert!(!a.same_as(&b));
        let c = Credential::new(id, Kind::ApiKey, "value-2");
        assert!(!a.same_as(&c));
    }
}
