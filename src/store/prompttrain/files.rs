//! The files of `prompttrain:DIR`: account and client-key files parsed,
//! edited field by field and saved, and the directory read once.

use super::*;

/// A parsed account file.
pub(super) struct AccountFile {
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) account_id: String,
    pub(super) root: Value,
    pub(super) indent: usize,
    pub(super) trailing_newline: bool,
}

/// A parsed client-keys file.
pub(super) struct KeysFile {
    pub(super) path: PathBuf,
    pub(super) train: String,
    pub(super) root: Value,
    pub(super) indent: usize,
    pub(super) trailing_newline: bool,
}

impl Drop for KeysFile {
    fn drop(&mut self) {
        wipe_json(&mut self.root);
    }
}

impl Drop for AccountFile {
    fn drop(&mut self) {
        wipe_json(&mut self.root);
    }
}

impl KeysFile {
    pub(super) fn keys(&self) -> Option<&Vec<Value>> {
        match &self.root {
            Value::Array(a) => Some(a),
            Value::Object(o) => o
                .get("keys")
                .or_else(|| o.get("client_api_keys"))
                .and_then(Value::as_array),
            _ => None,
        }
    }

    pub(super) fn keys_mut(&mut self) -> Option<&mut Vec<Value>> {
        match &mut self.root {
            Value::Array(a) => Some(a),
            Value::Object(o) => {
                let field = if o.get("keys").is_some_and(Value::is_array) {
                    "keys"
                } else {
                    "client_api_keys"
                };
                o.get_mut(field).and_then(Value::as_array_mut)
            }
            _ => None,
        }
    }
}

/// Read and parse a JSON file. The text is zeroized; errors carry position only.
pub(super) fn read_json(path: &Path) -> Result<(Value, usize, bool)> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
    let text = Zeroizing::new(fsutil::decode_text(path, bytes)?);
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| StoreError::json(path.display().to_string(), &e))?;
    Ok((v, detect_indent(&text, 2), text.ends_with('\n')))
}

/// Put public metadata `v` at `obj[key]`, merging objects so a secret
/// leaf already there (and absent from the scrubbed metadata) stays.
pub(super) fn merge_into(obj: &mut Map<String, Value>, key: &str, v: &Value) {
    match obj.get_mut(key) {
        Some(slot) => scrub::merge(slot, v),
        None => {
            obj.insert(key.to_string(), v.clone());
        }
    }
}

/// Unknown fields of `obj`, without their secret values (at any depth;
/// those are items of their own).
pub(super) fn extra_fields(obj: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    let rest: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match scrub::scrubbed(&Value::Object(rest)) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl AccountFile {
    pub(super) fn load(path: PathBuf, name: String) -> Result<AccountFile> {
        let (root, indent, trailing_newline) = read_json(&path)?;
        if !root.is_object() {
            return Err(StoreError::parse(
                path.display().to_string(),
                "expected a JSON object",
            ));
        }
        let account_id = root
            .get("accountId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("acc_{name}"));
        Ok(AccountFile {
            path,
            name,
            account_id,
            root,
            indent,
            trailing_newline,
        })
    }

    pub(super) fn metadata(&self, field: &AccountField) -> Metadata {
        let mut m = Metadata::new();
        m.insert("account_name".into(), self.name.clone().into());
        let Some(obj) = self.root.as_object() else {
            return m;
        };
        if let Some(t) = obj.get("type") {
            m.insert("type".into(), t.clone());
        }
        if let Some(s) = obj.get("slack") {
            m.insert("slack".into(), scrub::scrubbed(s));
        }
        let extra = extra_fields(obj, KNOWN_ACCOUNT_FIELDS);
        if !extra.is_empty() {
            m.insert("extra".into(), Value::Object(extra));
        }
        if (field.is_oauth() || *field == AccountField::OauthAccess)
            && let Some(oauth) = obj.get("oauth").and_then(Value::as_object)
        {
            for (from, to) in [
                ("expiresAt", "expires_at"),
                ("scopes", "scopes"),
                ("isMax", "is_max"),
            ] {
                if let Some(v) = oauth.get(from) {
                    m.insert(to.into(), v.clone());
                }
            }
            let extra = extra_fields(oauth, KNOWN_OAUTH_FIELDS);
            if !extra.is_empty() {
                m.insert("oauth_extra".into(), Value::Object(extra));
            }
        }
        m
    }

    /// The secrets the scrubber finds outside the fixed fields, as fields,
    /// and the secret material no field can name (`left` gets its paths).
    pub(super) fn other_fields(&self, left: &mut Vec<String>) -> Vec<AccountField> {
        let (found, unaddressable) = scrub::find(&self.root);
        left.extend(unaddressable);
        let mut out = Vec::new();
        for f in found {
            if fixed_path(&f.path) {
                continue;
            }
            let field = if f.path == webhook_path() {
                AccountField::Path(f.path)
            } else if RESERVED_NAMES.contains(&f.path_text().as_str()) {
                left.push(f.path_text());
                continue;
            } else {
                AccountField::Path(f.path)
            };
            out.push(field);
        }
        out
    }

    /// Every field holding a secret item, fixed ones first.
    pub(super) fn fields(&self, left: &mut Vec<String>) -> Vec<AccountField> {
        let mut fields = vec![
            AccountField::ApiKey,
            AccountField::OauthAccess,
            AccountField::OauthRefresh,
        ];
        fields.extend(self.other_fields(left));
        fields
    }

    /// Credentials in this file; a secret field of the wrong type is an error.
    pub(super) fn credentials(&self, errors: &mut Vec<LocationError>) -> Vec<Credential> {
        let mut out = Vec::new();
        let mut ignored = Vec::new();
        for field in self.fields(&mut ignored) {
            match field.get(&self.root) {
                Some(Value::String(s)) => out.push(Credential {
                    id: CredentialId::new(format!("account:{}", self.account_id), field.name()),
                    kind: field.kind(),
                    secret: Secret::new(s.as_str()),
                    metadata: self.metadata(&field),
                }),
                None | Some(Value::Null) => {}
                Some(_) => errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: self.path.display().to_string(),
                    error: format!("{} is not a string", field.name()),
                }),
            }
        }
        if out.is_empty() && errors.is_empty() {
            errors.push(LocationError {
                severity: crate::store::Severity::Error,
                location: self.path.display().to_string(),
                error: "no api_key or oauth tokens in this account file".into(),
            });
        }
        out
    }

    /// Secret material that no item carries, as `path: field` lines.
    pub(super) fn left_over(&self) -> Vec<String> {
        let mut left = Vec::new();
        self.other_fields(&mut left);
        left.into_iter()
            .map(|f| format!("{}: {f}", self.path.display()))
            .collect()
    }

    /// Whether any secret material (an item or not) is still in the file.
    pub(super) fn has_secret(&self) -> bool {
        let (found, unaddressable) = scrub::find(&self.root);
        !found.is_empty()
            || !unaddressable.is_empty()
            || [
                AccountField::ApiKey,
                AccountField::OauthAccess,
                AccountField::OauthRefresh,
            ]
            .iter()
            .any(|f| f.get(&self.root).is_some_and(Value::is_string))
    }

    /// Set one secret and the metadata that has a place in the format.
    /// Metadata merges into what is there, so a secret the (scrubbed)
    /// metadata lacks stays in place.
    pub(super) fn set(&mut self, field: &AccountField, c: &Credential) -> Result<()> {
        let root = self
            .root
            .as_object_mut()
            .ok_or_else(|| StoreError::item(&c.id, "account file is not a JSON object"))?;
        let secret = Value::String(c.secret.expose().to_string());
        let meta = &c.metadata;
        match meta.get("type").and_then(Value::as_str) {
            Some(t @ ("api_key" | "oauth")) => {
                root.insert("type".into(), t.into());
            }
            _ if !root.contains_key("type") => {
                let t = if field.is_oauth() { "oauth" } else { "api_key" };
                root.insert("type".into(), t.into());
            }
            _ => {}
        }
        if !root.contains_key("accountId") && format!("acc_{}", self.name) != self.account_id {
            root.insert("accountId".into(), self.account_id.clone().into());
        }
        if let Some(slack) = meta.get("slack") {
            merge_into(root, "slack", slack);
        }
        if let Some(Value::Object(extra)) = meta.get("extra") {
            for (k, v) in extra {
                if !KNOWN_ACCOUNT_FIELDS.contains(&k.as_str()) {
                    merge_into(root, k, v);
                }
            }
        }
        if field.is_oauth() || meta.contains_key("oauth_extra") {
            let oauth = root
                .entry("oauth")
                .or_insert_with(|| Value::Object(Map::new()));
            if oauth.is_null() {
                *oauth = Value::Object(Map::new());
            }
            let oauth = oauth
                .as_object_mut()
                .ok_or_else(|| StoreError::item(&c.id, "`oauth` is not a JSON object"))?;
            for (from, to) in [
                ("expires_at", "expiresAt"),
                ("scopes", "scopes"),
                ("is_max", "isMax"),
            ] {
                if let Some(v) = meta.get(from) {
                    oauth.insert(to.into(), v.clone());
                }
            }
            if let Some(Value::Object(extra)) = meta.get("oauth_extra") {
                for (k, v) in extra {
                    if !KNOWN_OAUTH_FIELDS.contains(&k.as_str()) {
                        merge_into(oauth, k, v);
                    }
                }
            }
        }
        scrub::set(&mut self.root, &field.path(), secret)
            .map_err(|e| StoreError::item(&c.id, format!("cannot be put back: {e}")))
    }

    /// Remove one secret field, nothing around it; true when it was there.
    pub(super) fn remove(&mut self, field: &AccountField) -> bool {
        scrub::remove(&mut self.root, &field.path())
    }

    pub(super) fn save(&self) -> Result<()> {
        let bytes = render_json(&self.root, self.indent, self.trailing_newline)?;
        fsutil::atomic_write(&self.path, &bytes)
    }
}

/// Everything in the directory, parsed once.
pub(super) struct Tree {
    pub(super) accounts: Vec<AccountFile>,
    pub(super) trains: Vec<KeysFile>,
    pub(super) errors: Vec<LocationError>,
}

impl Tree {
    pub(super) fn credentials(&self) -> (Vec<Credential>, Vec<LocationError>) {
        let mut errors = self.errors.clone();
        let mut creds = Vec::new();
        for a in &self.accounts {
            creds.extend(a.credentials(&mut errors));
        }
        for t in &self.trains {
            let Some(keys) = t.keys() else {
                errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: t.path.display().to_string(),
                    error: "expected {\"keys\": [...]} or a JSON array".into(),
                });
                continue;
            };
            for (i, k) in keys.iter().enumerate() {
                match k {
                    Value::String(s) => creds.push(Credential {
                        id: CredentialId::new(
                            format!("train:{}", t.train),
                            format!("client_key/{i}"),
                        ),
                        kind: Kind::ClientKey,
                        secret: Secret::new(s.as_str()),
                        metadata: Metadata::new(),
                    }),
                    // A deleted slot (see the module docs).
                    Value::Null => {}
                    _ => errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: format!("{}: keys[{i}]", t.path.display()),
                        error: "not a string".into(),
                    }),
                }
            }
        }
        // Two files claiming one accountId: report, keep the first.
        let mut seen = std::collections::HashSet::new();
        creds.retain(|c| {
            if seen.insert(c.id.clone()) {
                true
            } else {
                errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: c.id.to_string(),
                    error: "more than one account file has this accountId; the first is used"
                        .into(),
                });
                false
            }
        });
        (creds, errors)
    }
}

/// `(file name stem, path)` of files in `dir` ending in `suffix`, sorted.
pub(super) fn files_with_suffix(
    dir: &Path,
    suffix: &str,
    errors: &mut Vec<LocationError>,
) -> Result<Vec<(String, PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            if entry.file_name().to_string_lossy().ends_with(suffix) {
                errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: path.display().to_string(),
                    error: "file name is not valid UTF-8".into(),
                });
            }
            continue;
        };
        let Some(stem) = name.strip_suffix(suffix) else {
            continue;
        };
        if stem.is_empty() || !path.is_file() {
            continue;
        }
        out.push((stem.to_string(), path));
    }
    out.sort();
    Ok(out)
}
