//! The `Store` implementation of `prompttrain:DIR`.

use super::*;

impl Store for PromptTrainStore {
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        crate::store::path_identity(self.spec())
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    fn probe(&self) -> Capability {
        let mut cap = Capability::persistent_store(false, false);
        match self.load_tree() {
            Ok(tree) => {
                let (creds, errors) = tree.credentials();
                cap.exists = true;
                cap.item_count = Some(creds.len());
                cap.writable = [self.dir.clone(), self.accounts_dir(), self.keys_dir()]
                    .iter()
                    .filter(|d| d.exists())
                    .all(|d| dir_writable(d));
                let mut warnings: Vec<String> = tree
                    .accounts
                    .iter()
                    .map(|a| a.path.as_path())
                    .chain(tree.trains.iter().map(|t| t.path.as_path()))
                    .flat_map(plaintext_file_warnings)
                    .collect();
                if warnings.len() > 5 {
                    let more = warnings.len() - 5;
                    warnings.truncate(5);
                    warnings.push(format!(
                        "{more} more credential file(s) are readable by group or others"
                    ));
                }
                if !errors.is_empty() {
                    warnings.push(format!(
                        "{} file(s) or field(s) could not be read",
                        errors.len()
                    ));
                }
                cap.warnings = warnings;
            }
            Err(StoreError::NotFound { .. }) => {
                cap.item_count = Some(0);
                cap.writable = dir_writable(&nearest_existing_dir(&self.dir.join("x")));
            }
            Err(e) => {
                cap.available = false;
                cap.readable = false;
                cap.exists = self.dir.exists();
                cap.reason = Some(e.to_string());
            }
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        self.read_all().map(Listing::from)
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        let Ok(target) = parse_target(id) else {
            return Ok(None);
        };
        if !self.dir.is_dir() {
            return Ok(None);
        }
        let mut errors = Vec::new();
        match target {
            Target::Account { id: account, .. } => Ok(self
                .find_account(&account)?
                .map(|a| a.credentials(&mut errors))
                .and_then(|cs| cs.into_iter().find(|c| &c.id == id))),
            Target::ClientKey { train, index } => {
                let path = self.keys_path(&train);
                if !path.exists() {
                    return Ok(None);
                }
                let file = Self::load_keys(path, train)?;
                Ok(match file.keys().and_then(|k| k.get(index)) {
                    Some(Value::String(s)) => Some(Credential {
                        id: id.clone(),
                        kind: Kind::ClientKey,
                        secret: Secret::new(s.as_str()),
                        metadata: Metadata::new(),
                    }),
                    _ => None,
                })
            }
        }
    }

    /// One scan of `accounts/` for the whole batch (a single `read` scans
    /// it per call); train key files are read per train.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let any_account = ids
            .iter()
            .any(|id| matches!(parse_target(id), Ok(Target::Account { .. })));
        if !any_account || !self.dir.is_dir() {
            let out = ids.iter().map(|id| self.read(id)).collect();
            #[cfg(test)]
            crate::store::test_support::run_after_read();
            return out;
        }
        let mut ignored = Vec::new();
        let accounts = match self.load_accounts(&mut ignored) {
            Ok(a) => a,
            Err(e) => {
                return ids.iter().map(|_| Err(e.duplicate())).collect();
            }
        };
        // As `find_account`: the first file holding an account id wins.
        let mut by_account: std::collections::HashMap<&str, &AccountFile> =
            std::collections::HashMap::new();
        for a in &accounts {
            by_account.entry(a.account_id.as_str()).or_insert(a);
        }
        let out = ids
            .iter()
            .map(|id| match parse_target(id) {
                Ok(Target::Account { id: account, .. }) => {
                    let mut errors = Vec::new();
                    Ok(by_account
                        .get(account.as_str())
                        .map(|a| a.credentials(&mut errors))
                        .and_then(|cs| cs.into_iter().find(|c| &c.id == id)))
                }
                _ => self.read(id),
            })
            .collect();
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        out
    }

    fn read_all(&self) -> Result<Scan> {
        let (credentials, errors) = self.load_tree()?.credentials();
        Ok(Scan {
            credentials,
            errors,
        })
    }

    fn check(&self, c: &Credential) -> Option<String> {
        parse_target(&c.id).err()
    }

    fn unmigrated(&self) -> Vec<String> {
        let mut ignored = Vec::new();
        self.load_accounts(&mut ignored)
            .map(|accounts| accounts.iter().flat_map(AccountFile::left_over).collect())
            .unwrap_or_default()
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or(Ok(()))
    }

    /// One directory scan and one save per touched file for the batch.
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.write_batch(creds, None)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect()
    }

    /// One directory scan and one save per touched file, each item compared
    /// with the files as loaded for that save, under this store's lock.
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let creds: Vec<Credential> = items.iter().map(|r| r.new.clone()).collect();
        self.write_batch(&creds, Some(items))
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.remove_if(id, None)? == DeleteIf::Deleted)
    }

    /// Each item is one read-modify-write of its file under this store's
    /// lock: the comparison is against the file as just read, and nothing
    /// but rendering it comes between that and the atomic rename.
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        expected
            .iter()
            .map(|want| self.remove_if(&want.id, Some(want)))
            .collect()
    }
}

impl PromptTrainStore {
    /// What `c`'s id holds now: an account field in the files just loaded
    /// (the first file holding the account, as `find_account`); a client
    /// key read from its train's file.
    pub(super) fn held(&self, c: &Credential, accounts: &[AccountFile]) -> Result<Option<Credential>> {
        match parse_target(&c.id) {
            Ok(Target::Account { id, .. }) => {
                let mut errors = Vec::new();
                Ok(accounts.iter().find(|a| a.account_id == id).and_then(|a| {
                    a.credentials(&mut errors)
                        .into_iter()
                        .find(|x| x.id == c.id)
                }))
            }
            _ => self.read(&c.id),
        }
    }

    /// Remove `id` (when `expected` is given, only if it holds exactly
    /// that), reading and rewriting its one file once. The caller holds
    /// `self.lock`.
    fn remove_if(&self, id: &CredentialId, expected: Option<&Credential>) -> Result<DeleteIf> {
        let Ok(target) = parse_target(id) else {
            return Ok(DeleteIf::Absent);
        };
        if !self.dir.is_dir() {
            return Ok(DeleteIf::Absent);
        }
        match target {
            Target::Account { id: account, field } => {
                let Some(mut file) = self.find_account(&account)? else {
                    return Ok(DeleteIf::Absent);
                };
                if let Some(want) = expected {
                    let mut errors = Vec::new();
                    match file
                        .credentials(&mut errors)
                        .into_iter()
                        .find(|c| &c.id == id)
                    {
                        None => return Ok(DeleteIf::Absent),
                        Some(now) if !now.same_as(want) => return Ok(DeleteIf::Changed),
                        Some(_) => {}
                    }
                }
                if !file.remove(&field) {
                    return Ok(DeleteIf::Absent);
                }
                if file.has_secret() {
                    file.save()?;
                } else {
                    remove_file(&file.path)?;
                }
                Ok(DeleteIf::Deleted)
            }
            Target::ClientKey { train, index } => {
                let path = self.keys_path(&train);
                if !path.exists() {
                    return Ok(DeleteIf::Absent);
                }
                let mut file = Self::load_keys(path, train)?;
                let Some(keys) = file.keys_mut() else {
                    return Ok(DeleteIf::Absent);
                };
                let Some(Value::String(now)) = keys.get(index) else {
                    return Ok(DeleteIf::Absent);
                };
                if let Some(want) = expected {
                    let now = Credential {
                        id: id.clone(),
                        kind: Kind::ClientKey,
                        secret: Secret::new(now.as_str()),
                        metadata: Metadata::new(),
                    };
                    if !now.same_as(want) {
                        return Ok(DeleteIf::Changed);
                    }
                }
                keys[index] = Value::Null;
                while keys.last().is_some_and(Value::is_null) {
                    keys.pop();
                }
                if keys.iter().any(Value::is_string) {
                    let bytes = render_json(&file.root, file.indent, file.trailing_newline)?;
                    fsutil::atomic_write(&file.path, &bytes)?;
                } else {
                    remove_file(&file.path)?;
                }
                Ok(DeleteIf::Deleted)
            }
        }
    }
}
