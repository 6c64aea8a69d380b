//! The stand-alone backup of a store, and restoring a backup into one.

use super::*;

/// Where [`backup()`] puts the key file it generates when no passphrase
/// (and no `--key-file`) is in use.
#[derive(Debug, Clone, Copy)]
pub enum KeyOut<'a> {
    /// In this state dir, named by the backup's id, where `restore` looks.
    Kept(&'a Path),
    /// At this path (`--key-out`); refused when something is already there.
    At(&'a Path),
}

/// The same file, whether or not it exists yet: the parent dir resolved,
/// then the file name.
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| {
        let parent = crate::fsutil::parent_dir(p);
        let parent = parent.canonicalize().unwrap_or(parent);
        p.file_name().map(|n| parent.join(n))
    };
    a == b || norm(a).is_some_and(|x| Some(x) == norm(b))
}

/// Write an encrypted backup of every credential in `source` to `out`.
/// Without a passphrase (or `--key-file`), a new key file is generated
/// where `key_out` says: never beside the backup by default, and never at
/// the backup's own path.
pub fn backup(
    source: &dyn Store,
    out: &Path,
    key_out: KeyOut<'_>,
    opts: &KeyOptions,
) -> Result<BackupSummary> {
    if backup_file::sealing_passphrase(opts).is_none()
        && let Some(k) = &opts.key_file
        && same_file(k, out)
    {
        return Err(EngineError::Refused(format!(
            "--out {} is the key file the backup would be sealed with (--key-file); \
             writing the backup there would destroy its key: choose another --out",
            out.display()
        )));
    }
    if backup_file::sealing_passphrase(opts).is_none()
        && opts.key_file.is_none()
        && let KeyOut::At(k) = key_out
        && same_file(k, out)
    {
        return Err(EngineError::Refused(format!(
            "--out and --key-out are the same file ({}): the backup would overwrite its own \
             key; choose different paths, on different media if you can",
            out.display()
        )));
    }
    // The store's own file (or, for a directory store, the directory) is
    // never a place to write its backup: the envelope would replace what
    // the application reads.
    let own = |p: &Path| -> Result<bool> {
        let at = crate::store::StoreIdentity::of_path(p);
        Ok(source.identity()?.same_store(&at)
            || source.spec().path().is_some_and(|sp| same_file(sp, p)))
    };
    for (flag, p) in [
        ("--out", Some(out)),
        (
            "--key-out",
            match key_out {
                KeyOut::At(k) => Some(k),
                KeyOut::Kept(_) => None,
            },
        ),
    ] {
        if let Some(p) = p
            && own(p)?
        {
            return Err(EngineError::Refused(format!(
                "{flag} {} is the store being backed up ({}): writing there would replace it; \
                 choose another path",
                p.display(),
                source.spec()
            )));
        }
    }
    let locks = session::read_only(source, opts.lock_wait)?;
    let scan = source.read_all()?;
    // A passphrase that fails the rule for new ones seals nothing new.
    let key_file = match (
        backup_file::sealing_passphrase(opts),
        &opts.key_file,
        key_out,
    ) {
        (Some(p), _, _) => {
            backup_file::write(
                out,
                &scan.credentials,
                &BackupKey::Passphrase(p.clone()),
                opts,
            )?;
            None
        }
        (None, Some(k), _) => {
            backup_file::write(out, &scan.credentials, &BackupKey::KeyFile(k.clone()), opts)?;
            None
        }
        (None, None, KeyOut::At(k)) => {
            crate::crypto::kdf::generate_key_file(k)?;
            if let Err(e) =
                backup_file::write(out, &scan.credentials, &BackupKey::KeyFile(k.into()), opts)
            {
                let _ = std::fs::remove_file(k);
                return Err(e.into());
            }
            Some(k.to_path_buf())
        }
        (None, None, KeyOut::Kept(state_dir)) => {
            // The key's name is the backup's id, known once it is sealed.
            let dir = backup_file::kept_keys_dir(state_dir);
            let pending = dir.join(format!(".new-{}-{}.key", std::process::id(), now_ms()));
            crate::crypto::kdf::generate_key_file(&pending)?;
            let kept = backup_file::write(
                out,
                &scan.credentials,
                &BackupKey::KeyFile(pending.clone()),
                opts,
            )
            .and_then(|()| backup_file::kept_key_for(state_dir, out))
            .and_then(|kept| {
                std::fs::rename(&pending, &kept)
                    .and_then(|()| crate::fsutil::fsync_dir(&dir))
                    .map_err(|e| StoreError::io(&kept, e))?;
                Ok(kept)
            });
            match kept {
                Ok(k) => Some(k),
                Err(e) => {
                    let _ = std::fs::remove_file(&pending);
                    return Err(e.into());
                }
            }
        }
    };
    Ok(BackupSummary {
        path: out.to_path_buf(),
        key_file,
        items: scan.credentials.len(),
        errors: scan.errors,
        notices: locks.notices(),
    })
}

/// Restore a backup into `target`: a migration from the backup's contents,
/// so it has its own journal, backup of what it replaces, verify and
/// rollback. Like a migration, a value at the target that differs from the
/// backup's (changed since the backup) is a conflict, skipped: see
/// [`restore_with`] for `overwrite`, [`restore_plan`] for what it would do.
pub fn restore(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
) -> Result<Report> {
    restore_with(backup_file, target, state_dir, opts, ConflictPolicy::Skip)
}

/// The backup's contents as a read-only source, named by its file.
pub(super) fn backup_source(
    backup_file: &Path,
    state_dir: &Path,
    opts: &KeyOptions,
) -> Result<(StoreSpec, Box<dyn Store>)> {
    let key = backup_file::existing_key_in(backup_file, Some(state_dir), opts)?;
    let creds = backup_file::read(backup_file, &key, opts)?;
    let spec = StoreSpec::Encrypted(backup_file.to_path_buf());
    Ok((spec.clone(), Box::new(MemStore::new(spec, creds, false))))
}

/// The dry run of a restore: what it would copy, replace (`overwrite`) or
/// leave as a conflict. Writes nothing.
pub fn restore_plan(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
    policy: ConflictPolicy,
) -> Result<crate::engine::types::Plan> {
    let (_, source) = backup_source(backup_file, state_dir, opts)?;
    let target_store = store::open(target, opts)?;
    Ok(plan::plan(
        source.as_ref(),
        target_store.as_ref(),
        policy,
        None,
    )?)
}

/// [`restore`] with a conflict policy: `overwrite` replaces values changed
/// since the backup (each backed up first, as a migration does).
pub fn restore_with(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
    policy: ConflictPolicy,
) -> Result<Report> {
    let h = start_restore(backup_file, target, state_dir, opts, policy, Arc::default())?;
    while h.events.recv().is_ok() {}
    h.join()
}

/// [`restore_with`] on a worker thread: the migration's handle (progress,
/// cancel: a cancelled restore rolls back what it wrote, as a migration).
/// Opens the backup on the calling thread. `cancel` is the job's cancel
/// flag, as for [`execute::start`].
pub fn start_restore(
    backup_file: &Path,
    target: &StoreSpec,
    state_dir: &Path,
    opts: &KeyOptions,
    policy: ConflictPolicy,
    cancel: Arc<AtomicBool>,
) -> Result<execute::MigrationHandle> {
    let (spec, source) = backup_source(backup_file, state_dir, opts)?;
    let target_store = store::open(target, opts)?;
    let req = MigrationRequest {
        from: spec,
        to: target.clone(),
        policy,
        selection: None,
        delete_source: false,
    };
    execute::start_with_stores(req, source, target_store, state_dir, opts, cancel)
}
