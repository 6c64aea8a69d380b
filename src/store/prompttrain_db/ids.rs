//! Credential ids and the columns or array slots they map to.

use crate::credential::{CredentialId, Kind};

use super::{MAX_CLIENT_KEY_INDEX, MAX_ID_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    ApiKey,
    OauthAccess,
    OauthRefresh,
}

impl Field {
    pub const ALL: [Field; 3] = [Field::ApiKey, Field::OauthAccess, Field::OauthRefresh];

    pub fn name(self) -> &'static str {
        match self {
            Field::ApiKey => "api_key",
            Field::OauthAccess => "oauth_access_token",
            Field::OauthRefresh => "oauth_refresh_token",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Field::ApiKey => "api_key_encrypted",
            Field::OauthAccess => "oauth_access_token_encrypted",
            Field::OauthRefresh => "oauth_refresh_token_encrypted",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Field::ApiKey => Kind::ApiKey,
            Field::OauthAccess => Kind::OauthAccess,
            Field::OauthRefresh => Kind::OauthRefresh,
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Where an id lives in the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Account { account: String, field: Field },
    ClientKey { train: String, index: usize },
    ClientKeyHash { train: String, index: usize },
}

const ID_FORMS: &str = "prompttrain-db holds account:<id>/api_key, \
     account:<id>/oauth_access_token, account:<id>/oauth_refresh_token, \
     train:<id>/client_key/<n> and train:<id>/client_key_hash/<n>";

pub fn parse_id(id: &CredentialId) -> std::result::Result<Target, String> {
    let too_long = |s: &str| s.len() > MAX_ID_LEN || s.is_empty();
    if let Some(account) = id.namespace.strip_prefix("account:") {
        if too_long(account) {
            return Err(format!("account id must be 1 to {MAX_ID_LEN} bytes"));
        }
        let field = Field::ALL
            .into_iter()
            .find(|f| f.name() == id.name)
            .ok_or_else(|| ID_FORMS.to_string())?;
        return Ok(Target::Account {
            account: account.to_string(),
            field,
        });
    }
    if let Some(train) = id.namespace.strip_prefix("train:") {
        if too_long(train) {
            return Err(format!("train id must be 1 to {MAX_ID_LEN} bytes"));
        }
        let (what, n) = id
            .name
            .split_once('/')
            .ok_or_else(|| ID_FORMS.to_string())?;
        let index: usize = n
            .parse()
            .ok()
            .filter(|i: &usize| *i <= MAX_CLIENT_KEY_INDEX && n == i.to_string())
            .ok_or_else(|| format!("client key index must be 0 to {MAX_CLIENT_KEY_INDEX}"))?;
        let train = train.to_string();
        return match what {
            "client_key" => Ok(Target::ClientKey { train, index }),
            "client_key_hash" => Ok(Target::ClientKeyHash { train, index }),
            _ => Err(ID_FORMS.to_string()),
        };
    }
    Err(ID_FORMS.to_string())
}
