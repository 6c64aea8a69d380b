//! Rows as read, and the SQL that writes one account or train.

use postgres::Transaction;

use crate::credential::{Credential, CredentialId, Kind, Metadata, expires_at_ms};
use crate::error::{Result, StoreError};

use super::{Field, MAX_ID_LEN, PENDING_TOKEN};

/// One row of `accounts`.
pub(super) struct AccountRow {
    pub(super) account_id: String,
    pub(super) account_name: String,
    pub(super) credential_type: String,
    pub(super) values: [Option<String>; 3],
    pub(super) expires_at: Option<i64>,
    pub(super) scopes: Option<Vec<Option<String>>>,
    pub(super) is_max: Option<bool>,
}

impl AccountRow {
    pub(super) fn from_row(r: &postgres::Row) -> AccountRow {
        AccountRow {
            account_id: r.get(0),
            account_name: r.get(1),
            credential_type: r.get(2),
            values: [3, 4, 5].map(|i| r.get::<_, Option<String>>(i).filter(|v| v != PENDING_TOKEN)),
            expires_at: r.get(6),
            scopes: r.get(7),
            is_max: r.get(8),
        }
    }

    pub(super) fn metadata(&self, field: Field) -> Metadata {
        let mut m = Metadata::new();
        m.insert("account_name".into(), self.account_name.clone().into());
        m.insert("type".into(), self.credential_type.clone().into());
        if field != Field::ApiKey {
            if let Some(e) = self.expires_at {
                m.insert("expires_at".into(), e.into());
            }
            if let Some(s) = &self.scopes {
                let list: Vec<serde_json::Value> =
                    s.iter().flatten().map(|x| x.clone().into()).collect();
                m.insert("scopes".into(), list.into());
            }
            if let Some(b) = self.is_max {
                m.insert("is_max".into(), b.into());
            }
        }
        m
    }

    pub(super) fn id(&self, field: Field) -> CredentialId {
        CredentialId::new(format!("account:{}", self.account_id), field.name())
    }

    pub(super) fn location(&self, field: Field) -> String {
        format!("accounts[{}].{}", self.account_id, field.column())
    }
}

/// One row of `trains`: its id and hash array (empty when NULL).
pub(super) fn train_row(r: &postgres::Row) -> (String, Vec<Option<String>>) {
    let hashes: Option<Vec<Option<String>>> = r.get(1);
    (r.get(0), hashes.unwrap_or_default())
}

pub(super) fn train_hash_id(train: &str, index: usize) -> CredentialId {
    CredentialId::new(format!("train:{train}"), format!("client_key_hash/{index}"))
}

/// An encrypted value to decrypt, with what the credential will carry.
pub(super) struct Job {
    pub(super) id: CredentialId,
    pub(super) kind: Kind,
    pub(super) metadata: Metadata,
    pub(super) stored: String,
    pub(super) location: String,
}

/// Rows for a deduplicated set of ids in one query; none when there are no
/// ids or no tables yet (then nothing is there).
pub(super) fn fetch_in<T>(
    ids: &mut Vec<&str>,
    query: impl Fn(&[&str]) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match query(ids) {
        Err(StoreError::NotFound { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// Fail every index in `idx` with a copy of `e`'s message (or as unavailable).
pub(super) fn fail_all(
    results: &mut [Option<Result<()>>],
    creds: &[Credential],
    idx: &[usize],
    e: &StoreError,
) {
    for &i in idx {
        results[i] = Some(Err(copy_error(&creds[i].id, e)));
    }
}

pub(super) fn copy_error(id: &CredentialId, e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { store, reason } => StoreError::Unavailable {
            store: store.clone(),
            reason: reason.clone(),
        },
        StoreError::Crypto { location, message } => StoreError::Crypto {
            location: format!("{location} ({id})"),
            message: message.clone(),
        },
        other => StoreError::item(id, other.to_string()),
    }
}

/// The credential type the row can have with these values, keeping the
/// current one when it is still valid.
pub(super) fn credential_type(
    current: Option<&str>,
    has: [bool; 3],
) -> std::result::Result<&'static str, String> {
    let valid = |t: &str| match t {
        "api_key" => has[0],
        "oauth" => has[1] && has[2],
        _ => false,
    };
    if let Some(t) = current
        && valid(t)
    {
        return Ok(if t == "api_key" { "api_key" } else { "oauth" });
    }
    if has[0] {
        Ok("api_key")
    } else if has[1] && has[2] {
        Ok("oauth")
    } else {
        Err(
            "agent-prompttrain keeps an OAuth account's access and refresh tokens together: \
             write (or delete) both in one batch"
                .into(),
        )
    }
}

/// Account name when the credential has none: the id without `acc_`
/// (agent-prompttrain names `acc_<name>` after its credential file).
pub(super) fn default_account_name(account_id: &str) -> String {
    account_id
        .strip_prefix("acc_")
        .filter(|s| !s.is_empty())
        .unwrap_or(account_id)
        .to_string()
}

/// Metadata keys held in the `oauth_*` columns.
pub(super) const OAUTH_KEYS: [&str; 3] = ["expires_at", "scopes", "is_max"];

/// OAuth columns from an OAuth token's metadata.
pub(super) struct OauthColumns {
    pub(super) expires_at: Option<i64>,
    pub(super) scopes: Option<Vec<String>>,
    pub(super) is_max: Option<bool>,
}

pub(super) fn oauth_columns(m: &Metadata) -> OauthColumns {
    OauthColumns {
        expires_at: expires_at_ms(m),
        scopes: m.get("scopes").and_then(|v| match v {
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
            ),
            serde_json::Value::String(s) => Some(s.split_whitespace().map(String::from).collect()),
            _ => None,
        }),
        is_max: m.get("is_max").and_then(|v| v.as_bool()),
    }
}

/// The row's type, which values it really has (a placeholder counts as
/// absent) and whether it holds a placeholder; locked for the transaction.
pub(super) fn account_state(
    tx: &mut Transaction<'_>,
    account: &str,
) -> std::result::Result<Option<(String, [bool; 3], bool)>, postgres::Error> {
    let row = tx.query_opt(
        "SELECT credential_type, api_key_encrypted IS NOT NULL, \
         coalesce(oauth_access_token_encrypted <> $2, false), \
         coalesce(oauth_refresh_token_encrypted <> $2, false), \
         coalesce(oauth_access_token_encrypted = $2 OR oauth_refresh_token_encrypted = $2, false) \
         FROM accounts WHERE account_id = $1 FOR UPDATE",
        &[&account, &PENDING_TOKEN],
    )?;
    Ok(row.map(|r| (r.get(0), [r.get(1), r.get(2), r.get(3)], r.get(4))))
}

/// One account's writes: (item index, field, encrypted value).
pub(super) type AccountWrites = Vec<(usize, Field, String)>;

pub(super) fn apply_account(
    tx: &mut Transaction<'_>,
    account: &str,
    writes: &AccountWrites,
    creds: &[Credential],
) -> std::result::Result<std::result::Result<(), String>, postgres::Error> {
    let existing = account_state(tx, account)?;
    let mut values: [Option<&str>; 3] = [None, None, None];
    let mut has = existing.as_ref().map_or([false; 3], |e| e.1);
    let mut name: Option<String> = None;
    let mut oauth: Option<OauthColumns> = None;
    for (i, field, enc) in writes {
        values[field.index()] = Some(enc.as_str());
        has[field.index()] = true;
        let meta = &creds[*i].metadata;
        if name.is_none()
            && let Some(n) = meta.get("account_name").and_then(|v| v.as_str())
        {
            name = Some(n.to_string());
        }
        // Account-level OAuth fields: the access token's metadata wins;
        // a refresh token alone sets them only when it carries them.
        if *field == Field::OauthAccess
            || (oauth.is_none() && OAUTH_KEYS.iter().any(|k| meta.contains_key(*k)))
        {
            oauth = Some(oauth_columns(meta));
        }
    }
    if let Some(n) = &name
        && (n.is_empty() || n.len() > MAX_ID_LEN)
    {
        return Ok(Err(format!("account_name must be 1 to {MAX_ID_LEN} bytes")));
    }
    let current = existing.as_ref().map(|e| e.0.as_str());
    let was_pending = existing.as_ref().is_some_and(|e| e.2);
    // One OAuth token and nothing else: keep a placeholder for the other
    // and the account inactive until it arrives.
    let (ctype, pending) = match credential_type(current, has) {
        Ok(t) => (t, false),
        Err(_) => ("oauth", true),
    };
    if pending {
        for f in [Field::OauthAccess, Field::OauthRefresh] {
            if !has[f.index()] {
                values[f.index()] = Some(PENDING_TOKEN);
            }
        }
    }
    // Active again once complete, if only the placeholder held it back.
    let active: Option<bool> = if pending {
        Some(false)
    } else if was_pending {
        Some(true)
    } else {
        None
    };
    let set_oauth = oauth.is_some();
    let oauth = oauth.unwrap_or(OauthColumns {
        expires_at: None,
        scopes: None,
        is_max: None,
    });
    if existing.is_some() {
        tx.execute(
            "UPDATE accounts SET
               api_key_encrypted = COALESCE($2, api_key_encrypted),
               oauth_access_token_encrypted = COALESCE($3, oauth_access_token_encrypted),
               oauth_refresh_token_encrypted = COALESCE($4, oauth_refresh_token_encrypted),
               credential_type = $5,
               account_name = COALESCE($6, account_name),
               oauth_expires_at = CASE WHEN $7 THEN $8 ELSE oauth_expires_at END,
               oauth_scopes = CASE WHEN $7 THEN $9 ELSE oauth_scopes END,
               oauth_is_max = CASE WHEN $7 THEN $10 ELSE oauth_is_max END,
               is_active = COALESCE($11, is_active),
               updated_at = now()
             WHERE account_id = $1",
            &[
                &account,
                &values[0],
                &values[1],
                &values[2],
                &ctype,
                &name,
                &set_oauth,
                &oauth.expires_at,
                &oauth.scopes,
                &oauth.is_max,
                &active,
            ],
        )?;
    } else {
        let name = name.unwrap_or_else(|| default_account_name(account));
        tx.execute(
            "INSERT INTO accounts (account_id, account_name, credential_type, api_key_encrypted,
               oauth_access_token_encrypted, oauth_refresh_token_encrypted, oauth_expires_at,
               oauth_scopes, oauth_is_max, is_active)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, true))",
            &[
                &account,
                &name,
                &ctype,
                &values[0],
                &values[1],
                &values[2],
                &oauth.expires_at,
                &oauth.scopes,
                &oauth.is_max,
                &active,
            ],
        )?;
    }
    Ok(Ok(()))
}

/// Set (Some) or clear (None) slots of a train's hash array.
pub(super) fn apply_train(
    tx: &mut Transaction<'_>,
    train: &str,
    slots: &[(usize, Option<String>)],
) -> std::result::Result<Vec<bool>, postgres::Error> {
    let existing = tx.query_opt(
        "SELECT client_api_keys_hashed FROM trains WHERE train_id = $1 FOR UPDATE",
        &[&train],
    )?;
    let mut hashes: Vec<Option<String>> = existing
        .as_ref()
        .and_then(|r| r.get::<_, Option<Vec<Option<String>>>>(0))
        .unwrap_or_default();
    let mut had = Vec::with_capacity(slots.len());
    for (index, value) in slots {
        if hashes.len() <= *index {
            if value.is_none() {
                had.push(false);
                continue;
            }
            hashes.resize(index + 1, None);
        }
        had.push(hashes[*index].is_some());
        hashes[*index] = value.clone();
    }
    while hashes.last().is_some_and(|h| h.is_none()) {
        hashes.pop();
    }
    if existing.is_some() {
        tx.execute(
            "UPDATE trains SET client_api_keys_hashed = $2, updated_at = now() WHERE train_id = $1",
            &[&train, &hashes],
        )?;
    } else if slots.iter().any(|(_, v)| v.is_some()) {
        tx.execute(
            "INSERT INTO trains (train_id, client_api_keys_hashed) VALUES ($1, $2)",
            &[&train, &hashes],
        )?;
    }
    Ok(had)
}
