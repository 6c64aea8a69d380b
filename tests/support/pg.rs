//! A throwaway PostgreSQL server for tests, from the distribution's own
//! binaries (`/usr/lib/postgresql/*/bin`): `initdb -A trust` into a private
//! temporary directory, `pg_ctl start` on a free loopback port, and a fresh
//! database per test.
//!
//! ```ignore
//! let Some(db) = support::pg::fresh_db() else { return }; // skipped
//! support::pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/schema.sql"));
//! ```
//!
//! A server that requires a password ([`PgServer::start_with_password`],
//! [`shared_with_password`]): the `postgres` role gets a SCRAM-SHA-256
//! password and `pg_hba.conf` asks for it on every TCP connection, so a
//! client without the password is refused. Its [`PgServer::url_for`] holds
//! the password (percent-encoded) for the tests' own set-up;
//! [`PgServer::url_without_password_for`] is what a user would type.
//!
//! One server per test binary ([`shared`]), stopped at process exit (and by a
//! watchdog should the process be killed). Tests that need to stop a server
//! mid-operation start their own with [`PgServer::start`]; it is torn down
//! on drop. When the binaries are missing, [`fresh_db`] skips the test via
//! `skip_without("postgresql", ...)` (a failure under
//! `CREDSHIFT_REQUIRE_SERVICES=1`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Whether the current process is root (initdb refuses to run as root).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The newest PostgreSQL `bin` directory with initdb, pg_ctl and postgres.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("CREDSHIFT_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("pg_ctl").exists().then_some(dir);
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| bin.join(b).exists())
                .then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin)
}

/// A running PostgreSQL server in its own temporary directory.
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    stopped: AtomicBool,
    next_db: AtomicUsize,
    /// Set in password mode: the `postgres` role's password.
    password: Option<String>,
}

impl PgServer {
    /// initdb + start on a free loopback port. `Err` says why not (missing
    /// binaries, no `postgres` user when running as root, start failure).
    pub fn start() -> Result<PgServer, String> {
        let bin = find_bin_dir().ok_or("no /usr/lib/postgresql/*/bin with initdb and pg_ctl")?;
        let as_postgres_user = is_root();
        if as_postgres_user && !user_exists("postgres") {
            return Err("running as root and there is no `postgres` user for initdb".into());
        }
        let dir = make_private_dir(as_postgres_user)?;
        let mut server = PgServer {
            bin,
            dir,
            port: 0,
            as_postgres_user,
            stopped: AtomicBool::new(false),
            next_db: AtomicUsize::new(0),
            password: None,
        };
        let data = server.data_dir();
        let data_s = data.to_string_lossy().into_owned();
        server.run_tool(
            "initdb",
            &[
                "-D",
                &data_s,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        // A port is free when we look; another process may take it before
        // the server binds, so try a few.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match server.pg_ctl_start(port) {
                Ok(()) => {
                    server.port = port;
                    spawn_watchdog(&server);
                    return Ok(server);
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// [`PgServer::start`], then a SCRAM-SHA-256 password for the
    /// `postgres` role and `pg_hba.conf` requiring it for TCP connections
    /// (the Unix socket stays `trust` for nothing but this set-up). Checks
    /// that a connection without the password is refused.
    pub fn start_with_password(password: &str) -> Result<PgServer, String> {
        let mut server = PgServer::start()?;
        let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls)
            .map_err(|e| format!("connect: {e}"))?;
        let quoted = password.replace('\'', "''");
        admin
            .batch_execute(&format!(
                "SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD '{quoted}'"
            ))
            .map_err(|e| format!("set password: {e}"))?;
        drop(admin);
        let hba = server.data_dir().join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host all all ::1/128 scram-sha-256\n",
        )
        .map_err(|e| format!("write {}: {e}", hba.display()))?;
        let data = server.data_dir().to_string_lossy().into_owned();
        server.run_tool("pg_ctl", &["-D", &data, "reload"])?;
        // The reload is asynchronous: wait until TCP asks for the password.
        let mut refused = false;
        for _ in 0..100 {
            if postgres::Client::connect(&server.url(), postgres::NoTls).is_err() {
                refused = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !refused {
            return Err("pg_hba.conf reload: connections without a password still accepted".into());
        }
        server.password = Some(password.to_string());
        postgres::Client::connect(&server.url(), postgres::NoTls)
            .map_err(|e| format!("connect with the password: {e}"))?;
        Ok(server)
    }

    /// The password mode's password.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// URL of database `db` without any password (what a user types when the
    /// password comes from PGPASSWORD, ~/.pgpass or --db-password-file).
    pub fn url_without_password_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn pg_ctl_start(&self, port: u16) -> Result<(), String> {
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.socket_dir().display()
        );
        let data = self.data_dir().to_string_lossy().into_owned();
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        self.run_tool(
            "pg_ctl",
            &[
                "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &options, "start",
            ],
        )
        .map_err(|e| format!("{e}\nserver log:\n{}", self.log_tail()))
    }

    /// Run one of the server's tools, as the `postgres` user when root.
    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` on this server (with the password, encoded,
    /// in password mode).
    pub fn url_for(&self, db: &str) -> String {
        match &self.password {
            Some(pw) => format!(
                "postgres://postgres:{}@127.0.0.1:{}/{db}",
                percent_encode(pw),
                self.port
            ),
            None => self.url_without_password_for(db),
        }
    }

    /// URL of the maintenance database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// `CREATE DATABASE t_N` and its URL.
    pub fn create_database(&self) -> TestDb {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t_{n}");
        let mut client = connect(&self.url());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb {
            url: self.url_for(&name),
            name,
        }
    }

    /// Start a stopped server again on the same port and data.
    pub fn restart(&self) -> Result<(), String> {
        if self.stopped.swap(false, Ordering::SeqCst) {
            self.pg_ctl_start(self.port)?;
        }
        Ok(())
    }

    /// `pg_ctl stop -m immediate` (idempotent). The directory stays until drop.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let data = self.data_dir().to_string_lossy().into_owned();
        let _ = self.run_tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    url: String,
}

impl TestDb {
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// The per-binary server, started on first use; `Err` says why there is none.
pub fn shared() -> Result<&'static PgServer, &'static str> {
    let server = SHARED.get_or_init(|| {
        let started = PgServer::start();
        if started.is_ok() {
            // Statics are never dropped: stop the server when the test
            // binary exits normally (the watchdog covers kills).
            // SAFETY: registering a plain extern "C" fn without captures.
            unsafe {
                libc::atexit(stop_shared_at_exit);
            }
        }
        started
    });
    server.as_ref().map_err(|e| e.as_str())
}

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(server)) = SHARED.get() {
        server.stop();
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

/// The password the shared password-mode server is started with.
pub const SHARED_PASSWORD: &str = "pg-Sl4sh/Pass?word#x:y@z-canary";

static SHARED_PASSWORD_SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// The per-binary password-mode server ([`SHARED_PASSWORD`]), started on
/// first use; `None` (test skipped) when there is none.
pub fn shared_with_password() -> Option<&'static PgServer> {
    let server = SHARED_PASSWORD_SERVER.get_or_init(|| {
        let started = PgServer::start_with_password(SHARED_PASSWORD);
        if started.is_ok() {
            // SAFETY: registering a plain extern "C" fn without captures.
            unsafe {
                libc::atexit(stop_password_server_at_exit);
            }
        }
        started
    });
    match server {
        Ok(s) => Some(s),
        Err(reason) => {
            super::skip_without("postgresql", reason);
            None
        }
    }
}

extern "C" fn stop_password_server_at_exit() {
    if let Some(Ok(server)) = SHARED_PASSWORD_SERVER.get() {
        server.stop();
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A fresh database on the shared server, or `None` (test skipped) when no
/// server can be started.
pub fn fresh_db() -> Option<TestDb> {
    match shared() {
        Ok(server) => Some(server.create_database()),
        Err(reason) => {
            super::skip_without("postgresql", reason);
            None
        }
    }
}

/// A dedicated server (for tests that stop it), or `None` (skipped).
pub fn own_server() -> Option<PgServer> {
    match PgServer::start() {
        Ok(s) => Some(s),
        Err(reason) => {
            super::skip_without("postgresql", &reason);
            None
        }
    }
}

/// A client for `url`, panicking with the error (tests only).
pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Run a `.sql` file (schema.sql, data.sql) against `url` in one batch.
pub fn run_sql_file(url: &str, path: &Path) {
    let sql =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    connect(url)
        .batch_execute(&sql)
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
}

/// Run SQL text against `url` in one batch.
pub fn execute(url: &str, sql: &str) {
    connect(url)
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("batch on {url}: {e}"));
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .args(["-u", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A 0700 directory under the temp dir, owned by `postgres` when we are root.
fn make_private_dir(chown_to_postgres: bool) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix("credshift-pg-")
        .tempdir_in(std::env::temp_dir())
        .map_err(|e| format!("temp dir: {e}"))?
        .keep();
    std::fs::create_dir(dir.join("sock")).map_err(|e| format!("socket dir: {e}"))?;
    if chown_to_postgres {
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("chown postgres {} failed", dir.display()));
        }
    }
    Ok(dir)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A detached shell that stops the server and removes its directory once
/// this process is gone (a killed test binary must not leave a server).
fn spawn_watchdog(server: &PgServer) {
    let pg_ctl = server.bin.join("pg_ctl");
    let data = server.data_dir();
    let stop = if server.as_postgres_user {
        format!(
            "runuser -u postgres -- '{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "'{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         if [ -d '{data}' ]; then {stop} >/dev/null 2>&1; rm -rf '{dir}'; fi",
        pid = std::process::id(),
        data = data.display(),
        dir = server.dir.display(),
    );
    // Its own process group: killing the test's group must not take the
    // watchdog with it.
    let _ = Command::new("sh")
        .process_group(0)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
