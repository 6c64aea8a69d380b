//! PostgreSQL connection plumbing every PostgreSQL-backed store shares
//! (`postgres://`, `prompttrain-db:`, `laravel:postgres://`): [`connect`]
//! with the password sources of [`pgurl`] and TLS, [`classify`] for driver
//! errors, a reconnecting [`Conn`] and the session [`AdvisoryLock`].
//!
//! `sslmode` in the URL is honoured: `disable`, `allow` and `prefer` connect
//! without TLS; `require` (no certificate check unless `sslrootcert` is given,
//! as libpq does), `verify-ca` and `verify-full` use TLS via native-tls.
//! Errors name the store with the password redacted.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::Client;
use sha2::{Digest, Sha256};

use crate::credential::Secret;
use crate::error::{Result, StoreError};
use crate::store::{LockMode, StoreIdentity, StoreLock, StoreSpec, pgurl};
use crate::unlock::KeyOptions;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings taken out of the URL (tokio-postgres does not parse
/// `verify-ca`, `verify-full` or `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub root_cert: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `disable`, `allow`, `prefer` (and no `sslmode`): plain TCP.
    Off,
    /// `require`: encrypted, certificate not checked (unless a root cert is given).
    Require,
    /// `verify-ca`: certificate chain checked, host name not.
    VerifyCa,
    /// `verify-full`: chain and host name checked.
    VerifyFull,
}

/// Split `sslmode` and `sslrootcert` off a URL. `Err` names a bad sslmode.
pub fn split_tls(url: &str) -> std::result::Result<(String, TlsSettings), String> {
    let mut settings = TlsSettings {
        mode: TlsMode::Off,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), settings));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                settings.mode = match percent_decode(v).as_str() {
                    "disable" | "allow" | "prefer" => TlsMode::Off,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "unknown sslmode {other:?} (use disable, prefer, require, verify-ca or verify-full)"
                        ));
                    }
                }
            }
            "sslrootcert" => settings.root_cert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rebuilt, settings))
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&pgurl::percent_decode(s)).into_owned()
}

/// The database password given to credshift itself (`--db-password-file`),
/// which every PostgreSQL store carries; the URL, `PGPASSWORD` and the
/// password file are looked at when connecting (see [`pgurl`]).
#[derive(Clone, Default)]
pub struct DbAuth {
    password: Option<Secret>,
    file: Option<std::path::PathBuf>,
}

impl DbAuth {
    pub fn from_options(opts: &KeyOptions) -> Self {
        DbAuth {
            password: opts.db_password.clone(),
            file: opts.db_password_file.clone(),
        }
    }
}

/// Drop `password=***` (a journal's redacted parameter) from a URL's
/// query: it stands for "no password here".
fn drop_redacted_password_param(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some((k, v)) => {
                !(String::from_utf8_lossy(&pgurl::percent_decode(k))
                    .eq_ignore_ascii_case("password")
                    && pgurl::percent_decode(v) == pgurl::REDACTED.as_bytes())
            }
            None => true,
        })
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The user name libpq would use: the URL's, else `PGUSER`, else the
/// login name.
fn default_user() -> Option<String> {
    ["PGUSER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
}

/// Connect to the database a spec names, honouring `sslmode`, with the
/// password from the first source that has one (see [`pgurl`]).
pub fn connect(spec: &StoreSpec, auth: &DbAuth) -> Result<Client> {
    let url = spec
        .url()
        .ok_or_else(|| StoreError::Other(format!("{spec}: not a URL")))?;
    let unavailable = |reason: String| StoreError::Unavailable {
        store: spec.to_string(),
        reason,
    };
    let parsed =
        pgurl::PgUrl::parse(url).map_err(|e| unavailable(format!("bad connection URL: {e}")))?;
    let (url, tls) = split_tls(&drop_redacted_password_param(&parsed.without_password()))
        .map_err(&unavailable)?;
    let mut config = postgres::Config::from_str(&url)
        // The parser's messages name options, never their values.
        .map_err(|e| unavailable(format!("bad connection URL: {e}")))?;
    if config.get_user().is_none()
        && let Some(u) = default_user()
    {
        config.user(&u);
    }
    let param_password = config
        .get_password()
        .map(|p| Secret::new(String::from_utf8_lossy(p).into_owned()));
    let target = pgurl::Target {
        host: match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "localhost".into(),
        },
        port: config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(pgurl::DEFAULT_PORT),
        user: config.get_user().unwrap_or_default().to_string(),
        database: config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default()
            .to_string(),
    };
    let from_file = match (&auth.password, &auth.file) {
        (Some(p), Some(f)) => Some((p, f.as_path())),
        (Some(p), None) => Some((p, std::path::Path::new("--db-password-file"))),
        _ => None,
    };
    let resolved = pgurl::resolve_password(
        parsed.password().or(param_password.as_ref()),
        from_file,
        &target,
        &pgurl::ProcessEnv,
    );
    let have_password = resolved.password.is_some();
    if let Some((pw, _)) = &resolved.password {
        config.password(pw.expose().as_bytes());
    }
    let failed =
        |e: postgres::Error| connect_error(spec, &e, have_password, resolved.note.as_deref());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    if tls.mode == TlsMode::Off {
        config.ssl_mode(postgres::config::SslMode::Disable);
        return config.connect(postgres::NoTls).map_err(failed);
    }
    config.ssl_mode(postgres::config::SslMode::Require);
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = &tls.root_cert {
        let pem = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|_| unavailable(format!("{path}: not a PEM certificate")))?;
        builder.add_root_certificate(cert);
    }
    match (tls.mode, tls.root_cert.is_some()) {
        (TlsMode::Require, false) => {
            builder.danger_accept_invalid_certs(true);
            builder.danger_accept_invalid_hostnames(true);
        }
        (TlsMode::Require, true) | (TlsMode::VerifyCa, _) => {
            builder.danger_accept_invalid_hostnames(true);
        }
        _ => {}
    }
    let connector = builder
        .build()
        .map_err(|e| unavailable(format!("TLS setup failed: {e}")))?;
    config
        .connect(postgres_native_tls::MakeTlsConnector::new(connector))
        .map_err(failed)
}

/// [`classify`] for a failed connection, saying where a password could come
/// from when the server wanted one.
fn connect_error(
    spec: &StoreSpec,
    e: &postgres::Error,
    had_password: bool,
    note: Option<&str>,
) -> StoreError {
    const SOURCES: &str = "give it through PGPASSWORD, a ~/.pgpass (or PGPASSFILE) line in \
                           libpq's format with mode 0600, or --db-password-file PATH; never in argv";
    // The driver says so in the error's source: "password missing".
    let asked_for_password = e.as_db_error().is_none()
        && std::error::Error::source(e).is_some_and(|c| c.to_string().contains("password missing"));
    let mut err = if asked_for_password {
        StoreError::Unavailable {
            store: spec.to_string(),
            reason: format!("the server asks for a password and none was found: {SOURCES}"),
        }
    } else {
        classify(spec, "connect", e)
    };
    let auth_failed = e.as_db_error().is_some_and(|d| d.code().code() == "28P01");
    if let StoreError::Unavailable { reason, .. } = &mut err {
        if auth_failed && !had_password {
            reason.push_str(&format!(" ({SOURCES})"));
        }
        if let Some(n) = note {
            reason.push_str(&format!("; {n}"));
        }
    }
    err
}

/// Turn a driver error into a [`StoreError`]: a lost or refused connection
/// is `Unavailable`; a missing database or table is `NotFound`; anything
/// else carries the server's message and SQLSTATE, never its `DETAIL`
/// (which can quote row data).
pub fn classify(spec: &StoreSpec, what: &str, e: &postgres::Error) -> StoreError {
    let store = spec.to_string();
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let msg = format!("{what}: {} (SQLSTATE {code})", db.message());
        return match &code[..2] {
            "08" | "57" | "53" | "28" => StoreError::Unavailable { store, reason: msg },
            _ if code == "3D000" || code == "42P01" => StoreError::NotFound {
                location: store,
                hint: msg,
            },
            _ => StoreError::Other(format!("{store}: {msg}")),
        };
    }
    // Closed connections, I/O errors, timeouts and TLS failures: the
    // server cannot be reached. Their text names no secret.
    StoreError::Unavailable {
        store,
        reason: format!("{what}: {e}"),
    }
}

/// One lazily opened connection, reopened after it breaks.
pub struct Conn {
    spec: StoreSpec,
    auth: DbAuth,
    client: Mutex<Option<Client>>,
}

impl Conn {
    pub fn new(spec: &StoreSpec, opts: &KeyOptions) -> Self {
        Conn {
            spec: spec.clone(),
            auth: DbAuth::from_options(opts),
            client: Mutex::new(None),
        }
    }

    /// A session advisory lock on a connection of its own (see
    /// [`AdvisoryLock::acquire`]).
    pub fn advisory_lock(&self, mode: LockMode, wait: Duration) -> Result<AdvisoryLock> {
        AdvisoryLock::acquire(&self.spec, &self.auth, mode, wait)
    }

    /// The store's identity, asked of the server (see [`server_identity`]).
    pub fn identity(&self) -> Result<StoreIdentity> {
        self.with_client(|c| server_identity(&self.spec, c))
    }

    /// Run `f` on the connection. Driver errors go through [`classify`];
    /// after a broken connection the next call reconnects.
    pub fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        self.with_client(|c| f(c).map_err(|e| classify(&self.spec, what, &e)))
    }

    /// Like [`Conn::with`] for closures that return [`StoreError`]s.
    pub fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut guard = self
            .client
            .lock()
            .map_err(|_| StoreError::Other(format!("{}: connection lock poisoned", self.spec)))?;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.spec, &self.auth)?);
        }
        let Some(client) = guard.as_mut() else {
            return Err(StoreError::Other(format!("{}: no connection", self.spec)));
        };
        let out = f(client);
        if let Err(e) = &out
            && e.is_unavailable()
        {
            *guard = None;
        }
        out
    }
}

/// The tables a PostgreSQL spec's store owns, as one name: the key of its
/// advisory lock and the table part of its identity. Laravel's two table
/// names are one store (one app's credentials).
pub fn tables_of(spec: &StoreSpec) -> &'static str {
    match spec {
        StoreSpec::PromptTrainDb(_) => "prompttrain-db:accounts",
        StoreSpec::LaravelPostgres(_) => "laravel:a_i_credentials",
        _ => crate::store::postgres::CREDENTIALS_TABLE,
    }
}

/// What a PostgreSQL store is: the server's `system_identifier` (one per
/// cluster, whatever host name or port reaches it), else, when the role
/// may not call `pg_control_system()`, the address and port the server
/// sees itself on (loopback addresses as one); plus the database, the
/// schema and the store's tables.
pub fn server_identity(spec: &StoreSpec, c: &mut Client) -> Result<StoreIdentity> {
    let fail = |e: postgres::Error| classify(spec, "identity", &e);
    let row = c
        .query_one(
            "SELECT current_database()::text, current_schema()::text",
            &[],
        )
        .map_err(fail)?;
    let (db, schema): (String, Option<String>) = (row.get(0), row.get(1));
    let schema = schema.unwrap_or_else(|| "public".into());
    let server = match c.query_one(
        "SELECT system_identifier::text FROM pg_control_system()",
        &[],
    ) {
        Ok(r) => format!("system {}", r.get::<_, String>(0)),
        Err(e) if e.as_db_error().is_some() => {
            let r = c
                .query_one("SELECT host(inet_server_addr()), inet_server_port()", &[])
                .map_err(fail)?;
            let addr: Option<String> = r.get(0);
            let port: Option<i32> = r.get(1);
            let addr = match addr.as_deref() {
                None => "local".to_string(),
                Some(a) if is_loopback(a) => "loopback".to_string(),
                Some(a) => a.to_string(),
            };
            format!(
                "address {addr}:{}",
                port.unwrap_or(pgurl::DEFAULT_PORT as i32)
            )
        }
        Err(e) => return Err(fail(e)),
    };
    let tables = tables_of(spec);
    Ok(StoreIdentity {
        kind: crate::store::IdentityKind::Postgres,
        key: format!("postgres:{server}/{db}/{schema}/{tables}"),
        aliases: Vec::new(),
        display: format!("PostgreSQL {server}, database {db}, schema {schema}, {tables}"),
    })
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The identity a PostgreSQL spec names as far as its text tells (no
/// connection): loopback host names as one, the default port filled in,
/// the scheme and `sslmode` ignored; database (or user) and tables.
pub fn offline_identity(spec: &StoreSpec) -> Option<StoreIdentity> {
    let url = spec.url()?;
    let parsed = pgurl::PgUrl::parse(url).ok()?;
    let (url, _) = split_tls(&drop_redacted_password_param(&parsed.without_password())).ok()?;
    let config = postgres::Config::from_str(&url).ok()?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) if !is_loopback(h) => h.to_ascii_lowercase(),
        // A Unix socket reaches the local server, as loopback does.
        _ => "loopback".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(pgurl::DEFAULT_PORT);
    let user = config.get_user().map(str::to_string).or_else(default_user);
    let db = config
        .get_dbname()
        .map(str::to_string)
        .or(user)
        .unwrap_or_default();
    let tables = tables_of(spec);
    Some(StoreIdentity {
        kind: crate::store::IdentityKind::Postgres,
        key: format!("postgres-url:{host}:{port}/{db}/{tables}"),
        aliases: Vec::new(),
        display: format!("PostgreSQL {host}:{port}, database {db}, {tables}"),
    })
}

/// A session advisory lock on its own connection, released on drop (or
/// when the connection dies, so a crashed process never leaves it held).
pub struct AdvisoryLock {
    client: Client,
    key: i64,
    name: String,
    mode: LockMode,
}

impl AdvisoryLock {
    /// The lock key for `name`: the first 8 bytes of SHA-256.
    pub fn key_for(name: &str) -> i64 {
        let digest = Sha256::digest(format!("credshift-lock:{name}").as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(b)
    }

    /// Take the lock of the spec's tables ([`tables_of`]) in its database,
    /// shared or exclusive, polling until `wait` has passed; then
    /// [`StoreError::Locked`] names the sessions holding it. The lock's
    /// connection names this process (`application_name`), so a refused
    /// run can say who holds it and since when.
    pub fn acquire(
        spec: &StoreSpec,
        auth: &DbAuth,
        mode: LockMode,
        wait: Duration,
    ) -> Result<AdvisoryLock> {
        let name = tables_of(spec);
        let mut client = connect(spec, auth)?;
        let me = format!(
            "credshift pid {} on {}",
            std::process::id(),
            crate::store::lockfile::hostname()
        );
        // Best effort: a role that may not set it still locks.
        let _ = client.execute("SELECT set_config('application_name', $1, false)", &[&me]);
        let key = Self::key_for(name);
        let sql = match mode {
            LockMode::Shared => "SELECT pg_try_advisory_lock_shared($1)",
            LockMode::Exclusive => "SELECT pg_try_advisory_lock($1)",
        };
        let start = Instant::now();
        loop {
            let got: bool = client
                .query_one(sql, &[&key])
                .map_err(|e| classify(spec, "advisory lock", &e))?
                .get(0);
            if got {
                return Ok(AdvisoryLock {
                    client,
                    key,
                    name: name.to_string(),
                    mode,
                });
            }
            if start.elapsed() >= wait {
                return Err(StoreError::Locked {
                    location: spec.to_string(),
                    holder: holders(&mut client, key)
                        .unwrap_or_else(|| format!("another session holds the lock on {name}")),
                    seconds: wait.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Who holds advisory lock `key`: each session's application name, role,
/// client address and since when its connection exists (the lock's own
/// connection, opened for it). `None` when the server will not say.
fn holders(client: &mut Client, key: i64) -> Option<String> {
    let (hi, lo) = ((key >> 32) as u32 as i64, key as u32 as i64);
    let rows = client
        .query(
            "SELECT coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
                    coalesce(host(a.client_addr), 'local socket'), \
                    coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', \
                                     'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), l.mode \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1 \
               AND l.pid <> pg_backend_pid()",
            &[&hi, &lo],
        )
        .ok()?;
    let list: Vec<String> = rows
        .iter()
        .map(|r| {
            let (app, user, addr, since, mode): (String, String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            let who = if app.is_empty() {
                "a session".to_string()
            } else {
                app
            };
            let mode = if mode == "ShareLock" {
                "shared"
            } else {
                "exclusive"
            };
            format!("{who}, database role {user}, from {addr}, {mode}, since {since}")
        })
        .collect();
    (!list.is_empty()).then(|| list.join("; "))
}

impl StoreLock for AdvisoryLock {
    fn describe(&self) -> String {
        format!(
            "PostgreSQL advisory lock {} ({}, {:?})",
            self.key, self.name, self.mode
        )
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let sql = match self.mode {
            LockMode::Shared => "SELECT pg_advisory_unlock_shared($1)",
            LockMode::Exclusive => "SELECT pg_advisory_unlock($1)",
        };
        let _ = self.client.execute(sql, &[&self.key]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_of_the_url() {
        let (u, t) =
            split_tls("postgres://a:b@h/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(u, "postgres://a:b@h/db?application_name=x");
        assert_eq!(t.mode, TlsMode::VerifyFull);
        let (u, t) = split_tls("postgres://h/db?sslmode=prefer").unwrap();
        assert_eq!(u, "postgres://h/db");
        assert_eq!(t.mode, TlsMode::Off);
        let (_, t) =
            split_tls("postgres://h/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(t.mode, TlsMode::Require);
        assert_eq!(t.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (u, t) = split_tls("postgres://h/db").unwrap();
        assert_eq!((u.as_str(), t.mode), ("postgres://h/db", TlsMode::Off));
        assert!(split_tls("postgres://h/db?sslmode=bogus").is_err());
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(AdvisoryLock::key_for("a"), AdvisoryLock::key_for("a"));
        assert_ne!(AdvisoryLock::key_for("a"), AdvisoryLock::key_for("b"));
    }
}
