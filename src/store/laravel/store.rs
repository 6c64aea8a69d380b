//! The row logic: what a list, read, write or delete does to the table, on
//! whichever [`Backend`] holds it.

use super::*;
use crate::store::{Replace, ReplaceIf};

impl LaravelStore {
    fn db(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn Backend>>> {
        self.db
            .lock()
            .map_err(|_| StoreError::Other(format!("{}: store lock poisoned", self.spec)))
    }

    /// The table to use and whether it exists yet: the one `?table=` named,
    /// else whichever of the two exists (`ai_credentials` when neither
    /// does). Both existing without `?table=` is an error: taking either
    /// could hide the credentials from the app.
    fn table(&self, db: &mut Box<dyn Backend>) -> Result<(&'static str, bool)> {
        if let Some(t) = self.table {
            return Ok((t, db.has_table(t)?));
        }
        match (db.has_table(TABLE_CURRENT)?, db.has_table(TABLE_OLD)?) {
            (true, true) => Err(StoreError::Other(format!(
                "{}: both {TABLE_CURRENT} and {TABLE_OLD} exist; name the one the app reads \
                 by ending the spec with ?table={TABLE_CURRENT} or ?table={TABLE_OLD}",
                self.spec
            ))),
            (true, false) => Ok((TABLE_CURRENT, true)),
            (false, true) => Ok((TABLE_OLD, true)),
            (false, false) => Ok((TABLE_CURRENT, false)),
        }
    }

    fn rows(&self) -> Result<Vec<RawRow>> {
        let mut db = self.db()?;
        let (table, _) = self.table(&mut db)?;
        db.rows(table)
    }

    fn modify(&self, decide: &mut dyn FnMut(&[RawRow]) -> Result<Change>) -> Result<()> {
        let mut db = self.db()?;
        let (table, _) = self.table(&mut db)?;
        db.modify(table, decide)
    }

    /// The `metadata` column as stored (secrets included), `None` when it
    /// is not a JSON object.
    fn column_metadata(row: &RawRow) -> Option<Metadata> {
        match row.metadata.as_deref().filter(|t| !t.trim().is_empty()) {
            None => Some(Metadata::new()),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => Some(m),
                Ok(Value::Null) => Some(Metadata::new()),
                _ => None,
            },
        }
    }

    /// The secrets of the `metadata` column, as items of `namespace`.
    fn metadata_items(row: &RawRow, namespace: &str, meta: &Metadata) -> Vec<Credential> {
        let Some(column) = Self::column_metadata(row) else {
            return Vec::new();
        };
        let mut tree = Value::Object(column);
        let (found, _) = scrub::find(&tree);
        wipe(&mut tree);
        found
            .into_iter()
            .map(|f| {
                let name = format!("{META_PREFIX}{}", f.path_text());
                Credential::new(CredentialId::new(namespace, name), f.kind, f.secret)
                    .with_metadata(meta.clone())
            })
            .collect()
    }

    /// The metadata every credential of `row` carries: the column without
    /// its secrets, plus what the other columns say.
    fn row_metadata(row: &RawRow, errors: &mut Vec<LocationError>) -> Metadata {
        let mut meta = Metadata::new();
        match Self::column_metadata(row) {
            Some(m) => {
                meta = scrub::public(&m);
                let mut m = Value::Object(m);
                wipe(&mut m);
            }
            None => errors.push(LocationError {
                severity: crate::store::Severity::Error,
                location: row.location(),
                error: "the metadata column is not a JSON object; left out".into(),
            }),
        }
        meta.insert("provider".into(), row.provider.clone().into());
        meta.insert("credential_type".into(), row.credential_type.clone().into());
        if let Some(e) = row.expires_at.as_deref().filter(|t| !t.trim().is_empty()) {
            meta.insert("expires_at".into(), rfc3339_of(e).into());
        }
        if let Some(text) = row.ui_metadata.as_deref().filter(|t| !t.trim().is_empty()) {
            let v = serde_json::from_str::<Value>(text).unwrap_or_else(|_| text.into());
            if !v.is_null() {
                meta.insert("ui_metadata".into(), v);
            }
        }
        if let Some(n) = row.provider_config_id {
            meta.insert("provider_config_id".into(), n.into());
        }
        if let Some(n) = row.usage_count {
            meta.insert("usage_count".into(), n.into());
        }
        if let Some(t) = row.last_used_at.as_deref().filter(|t| !t.trim().is_empty()) {
            meta.insert("last_used_at".into(), rfc3339_of(t).into());
        }
        meta
    }

    /// Every credential of the active rows; bad rows become errors.
    fn scan_rows(&self, rows: &[RawRow]) -> Scan {
        let mut scan = Scan::default();
        let mut seen = std::collections::BTreeSet::new();
        for row in rows.iter().filter(|r| r.active) {
            let namespace = row.namespace();
            if namespace.contains('/') {
                scan.errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: row.location(),
                    error: "the provider contains '/', which a credential id cannot hold".into(),
                });
                continue;
            }
            if !seen.insert(namespace.clone()) {
                scan.errors.push(LocationError {
                    severity: crate::store::Severity::Error,
                    location: row.location(),
                    error: format!("another active row already provides {namespace}/*; skipped"),
                });
                continue;
            }
            let fields = match decode(&self.key, row) {
                Ok(f) => f,
                Err(e) => {
                    scan.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: row.location(),
                        error: message_of(&e),
                    });
                    continue;
                }
            };
            let metadata = Self::row_metadata(row, &mut scan.errors);
            for (field, value) in &fields.map {
                match value {
                    Value::String(s) => scan.credentials.push(
                        Credential::new(
                            CredentialId::new(namespace.clone(), field.clone()),
                            Kind::guess(field),
                            Secret::new(s.clone()),
                        )
                        .with_metadata(metadata.clone()),
                    ),
                    _ => scan.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: format!("{} field={field}", row.location()),
                        error: "the value is not a string; left as it is".into(),
                    }),
                }
            }
            scan.credentials
                .extend(Self::metadata_items(row, &namespace, &metadata));
        }
        scan
    }

    /// Refuse to write rows the app could not read: when the table has rows,
    /// at least one must verify under our key.
    fn check_key(&self, rows: &[RawRow]) -> Result<()> {
        if rows.is_empty()
            || rows
                .iter()
                .any(|r| crypt::mac_matches(&self.key, &r.payload))
        {
            return Ok(());
        }
        Err(StoreError::Crypto {
            location: self.spec.to_string(),
            message: format!(
                "APP_KEY does not match: none of the {} rows of {} verifies under it; \
                 nothing was written",
                rows.len(),
                rows[0].table
            ),
        })
    }

    fn new_row_metadata(c: &Credential) -> String {
        let mut meta: Metadata = scrub::public(&c.metadata)
            .iter()
            .filter(|(k, _)| !DERIVED_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.entry("storage_backend")
            .or_insert_with(|| "database".into());
        meta.entry("created_via")
            .or_insert_with(|| "credshift".into());
        meta.entry("created_at")
            .or_insert_with(|| chrono::Utc::now().to_rfc3339().into());
        // As the app's own migrate command records a moved credential.
        meta.insert("migrated_from".into(), "credshift".into());
        meta.insert("migrated_at".into(), iso_now().into());
        meta.insert("original_id".into(), c.id.to_string().into());
        Value::Object(meta).to_string()
    }

    /// Put a secret back into the `metadata` column at `path`.
    fn decide_write_metadata(
        &self,
        c: &Credential,
        path: &[Seg],
        rows: &[RawRow],
    ) -> Result<Change> {
        let ns = &c.id.namespace;
        let secret = Value::String(c.secret.expose().to_string());
        match rows.iter().find(|r| r.serves(ns)) {
            Some(row) => {
                let column = Self::column_metadata(row).ok_or_else(|| {
                    StoreError::item(
                        &c.id,
                        format!(
                            "{}: the metadata column is not a JSON object",
                            row.location()
                        ),
                    )
                })?;
                let mut tree = Value::Object(column);
                let put = scrub::set(&mut tree, path, secret);
                let text = tree.to_string();
                wipe(&mut tree);
                put.map_err(|e| StoreError::item(&c.id, format!("cannot be put back: {e}")))?;
                Ok(Change::SetMetadata {
                    id: row.id,
                    metadata: text,
                    active: true,
                })
            }
            None => {
                self.check_key(rows)?;
                let fields = Fields::empty(Framing::PhpSerialized);
                let mut tree: Value = serde_json::from_str(&Self::new_row_metadata(c))
                    .unwrap_or_else(|_| Value::Object(Metadata::new()));
                let put = scrub::set(&mut tree, path, secret);
                let text = tree.to_string();
                wipe(&mut tree);
                put.map_err(|e| StoreError::item(&c.id, format!("cannot be put back: {e}")))?;
                let (provider, credential_type) = Self::row_key(c);
                Ok(Change::Insert {
                    payload: fields.seal(&self.key, &format!("provider={provider}"))?,
                    provider,
                    credential_type,
                    metadata: text,
                    expires_at: c.expires_at_ms().and_then(laravel_time_from_ms),
                    ui_metadata: None,
                    usage_count: None,
                    last_used_at: None,
                })
            }
        }
    }

    /// Whether `row`'s metadata column still holds a secret.
    fn metadata_holds_secret(row: &RawRow) -> bool {
        Self::column_metadata(row).is_some_and(|m| {
            let mut tree = Value::Object(m);
            let (found, bad) = scrub::find(&tree);
            wipe(&mut tree);
            !found.is_empty() || !bad.is_empty()
        })
    }

    /// The (provider, credential_type) a new row for `c` gets: the
    /// namespace `provider:type` splits back when the metadata names that
    /// type (a row read from this app); any other namespace is the provider
    /// of an `api_key` row.
    fn row_key(c: &Credential) -> (String, String) {
        let ns = &c.id.namespace;
        if let Some(t) = c.metadata.get("credential_type").and_then(Value::as_str)
            && t != DEFAULT_TYPE
            && let Some(provider) = ns.strip_suffix(t).and_then(|p| p.strip_suffix(':'))
            && !provider.is_empty()
        {
            return (provider.to_string(), t.to_string());
        }
        (ns.to_string(), DEFAULT_TYPE.to_string())
    }

    fn decide_write(&self, c: &Credential, rows: &[RawRow]) -> Result<Change> {
        if let Some(path) =
            c.id.name
                .strip_prefix(META_PREFIX)
                .and_then(scrub::parse_path)
        {
            return self.decide_write_metadata(c, &path, rows);
        }
        let ns = &c.id.namespace;
        let secret = || Value::String(c.secret.expose().to_string());
        match rows.iter().find(|r| r.serves(ns)) {
            Some(row) if row.active => {
                let mut fields = decode(&self.key, row)?;
                if let Some(mut old) = fields.map.insert(c.id.name.to_string(), secret()) {
                    wipe(&mut old);
                }
                Ok(Change::Update {
                    id: row.id,
                    payload: fields.seal(&self.key, &row.location())?,
                    active: true,
                })
            }
            Some(row) => {
                // A soft-deleted row: its old fields stay deleted.
                self.check_key(rows)?;
                let framing = decode(&self.key, row)
                    .map(|f| f.framing)
                    .unwrap_or(Framing::PhpSerialized);
                let mut fields = Fields::empty(framing);
                fields.map.insert(c.id.name.to_string(), secret());
                Ok(Change::Update {
                    id: row.id,
                    payload: fields.seal(&self.key, &row.location())?,
                    active: true,
                })
            }
            None => {
                self.check_key(rows)?;
                let (provider, credential_type) = Self::row_key(c);
                let mut fields = Fields::empty(Framing::PhpSerialized);
                fields.map.insert(c.id.name.to_string(), secret());
                let meta = &c.metadata;
                Ok(Change::Insert {
                    payload: fields.seal(&self.key, &format!("provider={provider}"))?,
                    provider,
                    credential_type,
                    metadata: Self::new_row_metadata(c),
                    expires_at: c.expires_at_ms().and_then(laravel_time_from_ms),
                    ui_metadata: meta
                        .get("ui_metadata")
                        .filter(|v| !v.is_null())
                        .map(Value::to_string),
                    usage_count: meta.get("usage_count").and_then(Value::as_i64),
                    last_used_at: meta
                        .get("last_used_at")
                        .and_then(Value::as_str)
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|d| d.timestamp_millis())
                        .and_then(laravel_time_from_ms),
                })
            }
        }
    }

    fn decide_delete(&self, id: &CredentialId, rows: &[RawRow]) -> Result<(Change, bool)> {
        let Some(row) = rows.iter().find(|r| r.active && r.serves(&id.namespace)) else {
            return Ok((Change::None, false));
        };
        if let Some(path) = id
            .name
            .strip_prefix(META_PREFIX)
            .and_then(scrub::parse_path)
        {
            let Some(column) = Self::column_metadata(row) else {
                return Ok((Change::None, false));
            };
            let mut tree = Value::Object(column);
            if !scrub::remove(&mut tree, &path) {
                wipe(&mut tree);
                return Ok((Change::None, false));
            }
            let (found, bad) = scrub::find(&tree);
            let text = tree.to_string();
            wipe(&mut tree);
            let fields = decode(&self.key, row)?;
            let active = !fields.map.is_empty() || !found.is_empty() || !bad.is_empty();
            return Ok((
                Change::SetMetadata {
                    id: row.id,
                    metadata: text,
                    active,
                },
                true,
            ));
        }
        let mut fields = decode(&self.key, row)?;
        let Some(mut old) = fields.map.remove(id.name.as_str()) else {
            return Ok((Change::None, false));
        };
        wipe(&mut old);
        // The last field gone: soft-delete the row as the app does, keeping
        // no secret in it, unless its metadata still holds one.
        let active = !fields.map.is_empty() || Self::metadata_holds_secret(row);
        Ok((
            Change::Update {
                id: row.id,
                payload: fields.seal(&self.key, &row.location())?,
                active,
            },
            true,
        ))
    }

    /// The credential `id` among `rows` (what `read` returns).
    fn read_in(&self, id: &CredentialId, rows: &[RawRow]) -> Result<Option<Credential>> {
        let Some(row) = rows.iter().find(|r| r.active && r.serves(&id.namespace)) else {
            return Ok(None);
        };
        if id.name.starts_with(META_PREFIX) {
            let mut ignored = Vec::new();
            let meta = Self::row_metadata(row, &mut ignored);
            return Ok(Self::metadata_items(row, &id.namespace, &meta)
                .into_iter()
                .find(|c| &c.id == id));
        }
        let fields = decode(&self.key, row)?;
        match fields.map.get(id.name.as_str()) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let mut ignored = Vec::new();
                Ok(Some(
                    Credential::new(id.clone(), Kind::guess(&id.name), Secret::new(s.clone()))
                        .with_metadata(Self::row_metadata(row, &mut ignored)),
                ))
            }
            Some(_) => Err(StoreError::item(
                id,
                format!("{}: the value is not a string", row.location()),
            )),
        }
    }
}

impl Store for LaravelStore {
    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let mut cap = Capability {
            writable: true,
            ..Capability::persistent_store(true, false)
        };
        let rows = {
            let mut db = match self.db() {
                Ok(db) => db,
                Err(e) => return Capability::unavailable(e.to_string()),
            };
            if let Some(why) = db.not_writable() {
                cap.writable = false;
                cap.warnings.push(why);
            }
            let table = match self.table(&mut db) {
                Ok((table, false)) => {
                    cap.item_count = Some(0);
                    cap.warnings.push(format!(
                        "{table} does not exist yet; the first write creates it"
                    ));
                    return cap;
                }
                Err(e) => return Capability::unavailable(e.to_string()),
                Ok((table, true)) => table,
            };
            match db.rows(table) {
                Ok(rows) => rows,
                Err(e) => return Capability::unavailable(e.to_string()),
            }
        };
        cap.exists = true;
        if !rows.is_empty()
            && !rows
                .iter()
                .any(|r| crypt::mac_matches(&self.key, &r.payload))
        {
            cap.warnings.push(format!(
                "no row of {} verifies under this APP_KEY: is it the app's key?",
                rows[0].table
            ));
        }
        let scan = self.scan_rows(&rows);
        cap.item_count = Some(scan.credentials.len());
        if !scan.errors.is_empty() {
            cap.warnings.push(format!(
                "{} row(s) or field(s) could not be read",
                scan.errors.len()
            ));
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        self.read_all().map(Listing::from)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let rows = self.rows()?;
        let now = self.read_in(id, &rows);
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        now
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.modify(&mut |rows| self.decide_write(c, rows))
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let mut removed = false;
        self.modify(&mut |rows| {
            let (change, r) = self.decide_delete(id, rows)?;
            removed = r;
            Ok(change)
        })?;
        Ok(removed)
    }

    /// One write transaction per item (its rows read `FOR UPDATE` on
    /// PostgreSQL, an IMMEDIATE transaction on SQLite): the comparison is
    /// with the rows as read inside it, so no writer comes between it and
    /// the update that removes the value.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        // No database or table: nothing to delete, and nothing to create.
        if let Err(StoreError::NotFound { .. }) = self.rows() {
            return expected.iter().map(|_| Ok(DeleteIf::Absent)).collect();
        }
        expected
            .iter()
            .map(|want| {
                let mut out = DeleteIf::Absent;
                self.modify(&mut |rows| match self.read_in(&want.id, rows)? {
                    None => Ok(Change::None),
                    Some(now) if !now.same_as(want) => {
                        out = DeleteIf::Changed;
                        Ok(Change::None)
                    }
                    Some(_) => {
                        let (change, removed) = self.decide_delete(&want.id, rows)?;
                        if removed {
                            out = DeleteIf::Deleted;
                        }
                        Ok(change)
                    }
                })?;
                Ok(out)
            })
            .collect()
    }

    /// As [`Self::delete_if_unchanged`]: one write transaction per item,
    /// compared with its rows as read inside it.
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        items
            .iter()
            .map(|r| {
                let mut out = ReplaceIf::Changed;
                self.modify(&mut |rows| {
                    let now = self.read_in(&r.new.id, rows)?;
                    if !r.holds(now.as_ref()) {
                        out = ReplaceIf::Changed;
                        return Ok(Change::None);
                    }
                    out = ReplaceIf::Replaced;
                    self.decide_write(&r.new, rows)
                })?;
                Ok(out)
            })
            .collect()
    }

    fn check(&self, c: &Credential) -> Option<String> {
        (c.id.namespace.len() > 255).then(|| {
            "the namespace is longer than 255 bytes, too long for the provider column \
             (VARCHAR(255))"
                .to_string()
        })
    }

    /// PostgreSQL: the server's identity (its own connection); SQLite:
    /// the database file.
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        match &self.spec {
            StoreSpec::LaravelPostgres(_) => {
                let mut c = crate::store::pg::connect(&self.spec, &self.db_auth)?;
                crate::store::pg::server_identity(&self.spec, &mut c)
            }
            spec => Ok(crate::store::StoreIdentity::of_path(
                spec.path().unwrap_or(std::path::Path::new(".")),
            )),
        }
    }

    /// PostgreSQL: a session advisory lock on the table; SQLite: the lock
    /// file beside the database.
    fn lock(
        &self,
        mode: crate::store::LockMode,
        wait: Duration,
    ) -> Result<Option<Box<dyn crate::store::StoreLock>>> {
        match self.spec {
            StoreSpec::LaravelPostgres(_) => Ok(Some(Box::new(
                crate::store::pg::AdvisoryLock::acquire(&self.spec, &self.db_auth, mode, wait)?,
            ))),
            _ => Ok(crate::store::lockfile::guard(&self.spec, mode, wait)?
                .map(|g| Box::new(g) as Box<dyn crate::store::StoreLock>)),
        }
    }

    fn read_all(&self) -> Result<Scan> {
        let rows = self.rows()?;
        Ok(self.scan_rows(&rows))
    }
}
