//! The one preamble every long operation goes through (migrate, resume,
//! rollback, verify, cleanup, restore, backup), in the shape of sqlx's
//! `Migrator::run_direct`: open the stores once, ask each what it is
//! ([`Store::identity`]) and refuse one store on both ends, take the
//! store-side lock of both ends ([`Store::lock`]: shared where the
//! operation only reads that end, exclusive where it writes or deletes,
//! in a fixed order so two operations never wait on each other), then the
//! state-dir locks, the keys and the journal.
//!
//! This is the only place an operation takes a lock (`tests/it/layers.rs`
//! checks it). A lock held elsewhere is refused with
//! [`EngineError::Locked`] naming its holder: at once for a lock file,
//! after up to [`DB_LOCK_WAIT`] for a database, whose holders may be on
//! other machines ([`KeyOptions::lock_wait`], `CREDSHIFT_LOCK_WAIT=SECONDS`
//! in the CLI, sets both).
//!
//! For recovery ([`recover`]), the stores are the ones the journal names,
//! at the absolute location recorded when the migration started, and must
//! still be the stores it recorded ([`EngineError::StoreChanged`]).

use std::path::Path;
use std::time::Duration;

use crate::engine::error::{EngineError, Result};
use crate::engine::execute::{MigrationKeys, recover_keys};
use crate::engine::journal::Journal;
use crate::engine::state::State;
use crate::engine::types::MigrationId;
use crate::error::StoreError;
use crate::store::lockfile::{self, StateLock};
use crate::store::{self, LockMode, Store, StoreIdentity, StoreLock, StoreSpec};
use crate::unlock::KeyOptions;

/// How long an operation waits for a database's lock held by another
/// credshift process (migrations from several machines queue up).
pub const DB_LOCK_WAIT: Duration = Duration::from_secs(120);

/// Which end of an operation a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

/// How an operation uses one end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    pub mode: LockMode,
    /// `false`: the operation can do without this end (a rollback with
    /// nothing to put back in the source): a store that cannot be opened,
    /// identified or locked for any reason but another holder is left out.
    pub needed: bool,
}

impl Use {
    pub const READ: Use = Use {
        mode: LockMode::Shared,
        needed: true,
    };
    pub const WRITE: Use = Use {
        mode: LockMode::Exclusive,
        needed: true,
    };
    /// Read if it can be had (verify's and rollback's other end).
    pub const READ_IF_THERE: Use = Use {
        mode: LockMode::Shared,
        needed: false,
    };

    pub fn write_if(write: bool) -> Use {
        if write { Use::WRITE } else { Use::READ }
    }
}

/// The locks of one operation, released on drop (store-side last).
pub struct Locks {
    _state: Vec<StateLock>,
    _store: Vec<Box<dyn StoreLock>>,
}

impl Locks {
    /// What taking these locks did that the user should hear about (a
    /// stale lock taken over, a killed run's temp file removed): the
    /// operation's report carries them, the CLI prints them, the wizard
    /// shows them.
    pub fn notices(&self) -> Vec<store::LockNotice> {
        let stores = self._store.iter().flat_map(|l| l.notices());
        stores
            .chain(self._state.iter().flat_map(|l| l.notices()))
            .collect()
    }
}

impl Drop for Locks {
    fn drop(&mut self) {
        // State-dir locks first, then the stores', the reverse of taking.
        self._state.clear();
        self._store.clear();
    }
}

/// One end as the preamble sees it.
struct End<'a> {
    role: Role,
    store: &'a dyn Store,
    usage: Use,
    /// The identity the journal recorded, for recovery.
    expected: Option<&'a StoreIdentity>,
}

/// Stores that passed the preamble, with their locks.
pub struct Session {
    pub source: Option<Box<dyn Store>>,
    pub target: Option<Box<dyn Store>>,
    pub source_identity: Option<StoreIdentity>,
    pub target_identity: Option<StoreIdentity>,
    pub locks: Locks,
}

/// Open a spec as the engine opens every store.
pub fn open(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn Store>> {
    Ok(store::open(spec, opts)?)
}

/// Turn a journal's store text back into a spec. Passwords are never
/// journaled: a redacted `:***@` URL reopens with the password from
/// `--db-password-file`, `PGPASSWORD` or `~/.pgpass` (see `store::pgurl`).
pub fn spec_of(text: &str) -> Result<StoreSpec> {
    text.parse::<StoreSpec>()
        .map_err(|e| EngineError::Refused(e.to_string()))
}

/// The wait for `identity`'s store-side lock: the one the caller set
/// ([`KeyOptions::lock_wait`]), else the store's default.
fn lock_wait(identity: &StoreIdentity, wait: Option<Duration>) -> Duration {
    if let Some(w) = wait {
        return w;
    }
    if identity.kind == crate::store::IdentityKind::Postgres {
        DB_LOCK_WAIT
    } else {
        Duration::ZERO
    }
}

fn locked(spec: &StoreSpec, e: StoreError) -> EngineError {
    match e {
        StoreError::Locked { holder, .. } => EngineError::Locked {
            store: spec.to_string(),
            holder,
        },
        other => other.into(),
    }
}

/// Refuse two ends that are one store (by their identities).
pub fn refuse_same_store(source: &dyn Store, target: &dyn Store) -> Result<()> {
    if source.identity()?.same_store(&target.identity()?) {
        return Err(same_store(source.spec(), target.spec()));
    }
    Ok(())
}

fn same_store(from: &StoreSpec, to: &StoreSpec) -> EngineError {
    EngineError::SameStore {
        from: from.to_string(),
        to: to.to_string(),
    }
}

/// The preamble proper, on borrowed stores: identities, the same-store
/// refusal, the journal's identities, the store-side locks in identity
/// order, then the state-dir locks. Returns the identities (`None` for an
/// end left out) and the locks.
fn guard(
    ends: &[End<'_>],
    state_dir: Option<&Path>,
    migration_id: &str,
    wait: Option<Duration>,
) -> Result<(Vec<Option<StoreIdentity>>, Locks)> {
    lockfile::set_operation(migration_id);
    let mut ids: Vec<Option<StoreIdentity>> = Vec::with_capacity(ends.len());
    for end in ends {
        match end.store.identity() {
            Ok(id) => ids.push(Some(id)),
            Err(_) if !end.usage.needed => ids.push(None),
            Err(e) => return Err(e.into()),
        }
    }
    for (end, found) in ends.iter().zip(&ids) {
        if let (Some(expected), Some(found)) = (end.expected, found)
            && !expected.same_store(found)
        {
            return Err(EngineError::StoreChanged {
                id: migration_id.to_string(),
                role: end.role.name(),
                spec: end.store.spec().to_string(),
                expected: expected.display.clone(),
                found: found.display.clone(),
            });
        }
    }
    if let [a, b] = ends
        && let (Some(x), Some(y)) = (&ids[0], &ids[1])
        && x.same_store(y)
    {
        let (from, to) = if a.role == Role::Source {
            (a, b)
        } else {
            (b, a)
        };
        return Err(same_store(from.store.spec(), to.store.spec()));
    }
    // A fixed order (by identity) so two operations never hold one lock
    // each while waiting for the other's.
    let mut order: Vec<usize> = (0..ends.len()).filter(|&i| ids[i].is_some()).collect();
    order.sort_by(|&x, &y| {
        ids[x]
            .as_ref()
            .map(|i| &i.key)
            .cmp(&ids[y].as_ref().map(|i| &i.key))
    });
    let mut store_locks = Vec::new();
    let mut kept = ids.clone();
    for &i in &order {
        let (end, id) = (&ends[i], ids[i].as_ref().expect("filtered"));
        match end.store.lock(end.usage.mode, lock_wait(id, wait)) {
            Ok(Some(l)) => store_locks.push(l),
            Ok(None) => {}
            Err(e @ StoreError::Locked { .. }) => return Err(locked(end.store.spec(), e)),
            Err(_) if !end.usage.needed => kept[i] = None,
            Err(e) => return Err(e.into()),
        }
    }
    let mut state_locks = Vec::new();
    if let Some(dir) = state_dir {
        for &i in &order {
            if let Some(id) = &kept[i] {
                let end = &ends[i];
                state_locks.push(
                    lockfile::state_lock(
                        dir,
                        end.store.spec(),
                        &id.key,
                        end.usage.mode,
                        migration_id,
                    )
                    .map_err(|e| locked(end.store.spec(), e))?,
                );
            }
        }
    }
    hold_if_asked();
    Ok((
        kept,
        Locks {
            _state: state_locks,
            _store: store_locks,
        },
    ))
}

/// `CREDSHIFT_HOLD_LOCKS=PATH` (a test aid, [`crate::test_aids`]): once
/// every lock is held, create PATH and wait until it is removed (at most
/// 120 s), so a test can run a second process against locks a first one
/// holds.
fn hold_if_asked() {
    let Some(path) = &crate::test_aids::get().hold_locks else {
        return;
    };
    if std::fs::write(path, std::process::id().to_string()).is_err() {
        return;
    }
    let start = std::time::Instant::now();
    while path.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The preamble of a new migration (or a restore): both stores, the
/// source shared (exclusive when it will be cleaned up), the target
/// exclusive. The migration's folder, keys and journal follow in
/// [`crate::engine::execute`], under these locks.
pub fn begin(
    source: Box<dyn Store>,
    target: Box<dyn Store>,
    delete_source: bool,
    state_dir: &Path,
    migration_id: &MigrationId,
    lock_wait: Option<Duration>,
) -> Result<Session> {
    let (ids, locks) = guard(
        &[
            End {
                role: Role::Source,
                store: source.as_ref(),
                usage: Use::write_if(delete_source),
                expected: None,
            },
            End {
                role: Role::Target,
                store: target.as_ref(),
                usage: Use::WRITE,
                expected: None,
            },
        ],
        Some(state_dir),
        &migration_id.0,
        lock_wait,
    )?;
    let mut ids = ids.into_iter();
    Ok(Session {
        source: Some(source),
        target: Some(target),
        source_identity: ids.next().flatten(),
        target_identity: ids.next().flatten(),
        locks,
    })
}

/// A recorded migration under its locks: its stores (as the journal names
/// them, checked against the identities it recorded), its state read again
/// under the locks, keys and journal.
pub(crate) struct Recovered {
    pub st: State,
    pub source: Option<Box<dyn Store>>,
    pub target: Option<Box<dyn Store>>,
    pub keys: MigrationKeys,
    pub journal: Journal,
    pub locks: Locks,
}

/// `opts` with the key file of an envelope sealed with one that credshift
/// keeps in the state dir (a backup made without a passphrase), when no
/// key file was given; else `opts` as they are.
fn with_kept_key(spec: &StoreSpec, state_dir: &Path, opts: &KeyOptions) -> KeyOptions {
    use crate::engine::backup_file::{BackupKey, existing_key_in};
    let Some(path) = spec.path().filter(|_| spec.under_passphrase()) else {
        return opts.clone();
    };
    if opts.key_file.is_some() {
        return opts.clone();
    }
    match existing_key_in(path, Some(state_dir), opts) {
        Ok(BackupKey::KeyFile(k)) => KeyOptions {
            key_file: Some(k),
            ..opts.clone()
        },
        _ => opts.clone(),
    }
}

/// The preamble of resume, rollback, verify and cleanup: how each end is
/// used (`None`: not at all).
pub(crate) fn recover(
    state_dir: &Path,
    st: &State,
    opts: &KeyOptions,
    source: Option<Use>,
    target: Option<Use>,
) -> Result<Recovered> {
    recover_as(state_dir, st, opts, source, target, true)
}

/// [`recover`] whose `st` is only the head ([`State::head`]): the caller
/// reads the items from `journal.state()`, so a 100,000-item state is not
/// held twice (verify, cleanup).
pub(crate) fn recover_head(
    state_dir: &Path,
    st: &State,
    opts: &KeyOptions,
    source: Option<Use>,
    target: Option<Use>,
) -> Result<Recovered> {
    recover_as(state_dir, st, opts, source, target, false)
}

fn recover_as(
    state_dir: &Path,
    st: &State,
    opts: &KeyOptions,
    source: Option<Use>,
    target: Option<Use>,
    full: bool,
) -> Result<Recovered> {
    let open_end = |text: &str, usage: Option<Use>| -> Result<Option<Box<dyn Store>>> {
        let Some(u) = usage else { return Ok(None) };
        match spec_of(text).and_then(|s| open(&s, opts)) {
            Ok(s) => Ok(Some(s)),
            Err(_) if !u.needed => Ok(None),
            Err(e) => Err(e),
        }
    };
    let source_store = match (spec_of(&st.from), source) {
        // A restore's source is its backup: opened with the key file
        // credshift kept for it, as the restore itself was.
        (Ok(spec), Some(u)) => match open(&spec, &with_kept_key(&spec, state_dir, opts)) {
            Ok(s) => Some(s),
            Err(_) if !u.needed => None,
            Err(e) => return Err(e),
        },
        _ => open_end(&st.from, source)?,
    };
    let target_store = open_end(&st.to, target)?;
    let mut ends = Vec::new();
    if let (Some(s), Some(u)) = (&source_store, source) {
        ends.push(End {
            role: Role::Source,
            store: s.as_ref(),
            usage: u,
            expected: st.from_identity.as_ref(),
        });
    }
    if let (Some(t), Some(u)) = (&target_store, target) {
        ends.push(End {
            role: Role::Target,
            store: t.as_ref(),
            usage: u,
            expected: st.to_identity.as_ref(),
        });
    }
    let (kept, locks) = guard(&ends, Some(state_dir), &st.id.0, opts.lock_wait)?;
    let roles: Vec<(Role, bool)> = ends
        .iter()
        .zip(&kept)
        .map(|(e, k)| (e.role, k.is_some()))
        .collect();
    drop(ends);
    let keep = |role: Role, s: Option<Box<dyn Store>>| {
        s.filter(|_| roles.iter().any(|&(r, k)| r == role && k))
    };
    let source_store = keep(Role::Source, source_store);
    let target_store = keep(Role::Target, target_store);
    // Read again under the locks: another process may have moved it on
    // while this one waited. Once: the open journal's state is the one
    // returned (a damaged journal is read again only for its error).
    let journal = Journal::open(&st.dir)?;
    let loaded;
    let whole = match journal.state() {
        Ok(s) => s,
        Err(_) => {
            loaded = State::load(state_dir, &st.id)?;
            &loaded
        }
    };
    let keys = recover_keys(whole, opts)?;
    let st = if full { whole.clone() } else { whole.head() };
    Ok(Recovered {
        st,
        source: source_store,
        target: target_store,
        keys,
        journal,
        locks,
    })
}

/// The preamble of a rekey (and of its dry run, resume, rollback and
/// verify): the one store it rewrites, exclusive (shared to only read),
/// checked against the identity its journal recorded, then the state-dir
/// lock. Returns the store's identity and the locks.
pub fn rekey(
    store: &dyn Store,
    usage: Use,
    state_dir: Option<&Path>,
    migration_id: &str,
    expected: Option<&StoreIdentity>,
    lock_wait: Option<Duration>,
) -> Result<(Option<StoreIdentity>, Locks)> {
    let (ids, locks) = guard(
        &[End {
            role: Role::Target,
            store,
            usage,
            expected,
        }],
        state_dir,
        migration_id,
        lock_wait,
    )?;
    Ok((ids.into_iter().next().flatten(), locks))
}

/// The preamble of a stand-alone read (backup): the store shared.
pub fn read_only(source: &dyn Store, lock_wait: Option<Duration>) -> Result<Locks> {
    let (_, locks) = guard(
        &[End {
            role: Role::Source,
            store: source,
            usage: Use::READ,
            expected: None,
        }],
        None,
        "",
        lock_wait,
    )?;
    Ok(locks)
}
