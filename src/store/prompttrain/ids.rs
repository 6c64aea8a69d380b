//! Ids of `prompttrain:DIR`: which field of which file an id names.

use super::*;

/// The secret fields of an account file, as id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AccountField {
    ApiKey,
    OauthAccess,
    OauthRefresh,
    /// Any other secret the scrubber finds in the file, by its path:
    /// `slack.webhook_url` (named `slack_webhook_url`), `admin_api_key`,
    /// `proxy.url`, `headers.authorization`, `oauth.idToken`...
    Path(Vec<Seg>),
}

/// The id name of the Slack webhook URL.
pub(super) const WEBHOOK_NAME: &str = "slack_webhook_url";
/// Names the fixed fields use; a path spelled like one cannot be an item.
pub(super) const RESERVED_NAMES: &[&str] = &[
    "api_key",
    "oauth_access_token",
    "oauth_refresh_token",
    WEBHOOK_NAME,
];

pub(super) fn webhook_path() -> Vec<Seg> {
    vec![Seg::Key("slack".into()), Seg::Key("webhook_url".into())]
}

/// Paths of the fixed fields, which are never generic items.
pub(super) fn fixed_path(path: &[Seg]) -> bool {
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
    pub(super) fn from_name(name: &str) -> Option<Self> {
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
    pub(super) fn name(&self) -> String {
        match self {
            Self::ApiKey => "api_key".into(),
            Self::OauthAccess => "oauth_access_token".into(),
            Self::OauthRefresh => "oauth_refresh_token".into(),
            Self::Path(p) if *p == webhook_path() => WEBHOOK_NAME.into(),
            Self::Path(p) => scrub::path_text(p),
        }
    }
    pub(super) fn kind(&self) -> Kind {
        match self {
            Self::ApiKey => Kind::ApiKey,
            Self::OauthAccess => Kind::OauthAccess,
            Self::OauthRefresh => Kind::OauthRefresh,
            Self::Path(_) => Kind::guess(&self.name()),
        }
    }
    pub(super) fn path(&self) -> Vec<Seg> {
        let keys: &[&str] = match self {
            Self::ApiKey => &["api_key"],
            Self::OauthAccess => &["oauth", "accessToken"],
            Self::OauthRefresh => &["oauth", "refreshToken"],
            Self::Path(p) => return p.clone(),
        };
        keys.iter().map(|k| Seg::Key(k.to_string())).collect()
    }
    pub(super) fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        scrub::get(root, &self.path())
    }
    /// Whether the field's item carries the OAuth metadata (expiry, scopes).
    pub(super) fn is_oauth(&self) -> bool {
        matches!(self.path().first(), Some(Seg::Key(k)) if k == "oauth")
    }
}

/// What an id refers to in this layout.
pub(super) enum Target {
    Account { id: String, field: AccountField },
    ClientKey { train: String, index: usize },
}

/// Names the proxy accepts for accounts and trains (its IDENTIFIER_REGEX),
/// minus the two that are path components.
pub(super) fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

pub(super) fn parse_target(id: &CredentialId) -> std::result::Result<Target, String> {
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
