//! A real gnome-keyring-daemon on a private D-Bus session bus, for tests.
//!
//! `dbus-run-session` starts a session bus and runs a small shell script
//! that writes the bus address to a file, starts
//! `gnome-keyring-daemon --unlock --components=secrets` with a test
//! password on its stdin (which creates and unlocks the `login` collection
//! in a fresh HOME / XDG_DATA_HOME), and then waits on its own stdin. That
//! stdin is a pipe held by the test process: when the test process ends
//! (or the `KeyringService` is dropped) the pipe closes, the script
//! returns, and dbus-run-session takes the bus down and the daemon with it.
//!
//! One shared daemon per test binary ([`shared`]): its address goes into
//! this process's environment once, before any keyring use, and to child
//! `credshift` processes with `.env("DBUS_SESSION_BUS_ADDRESS", addr)`.
//! Tests that change the keyring's state (locking it) start their own
//! ([`KeyringService::start`]) and talk to it only through child processes.

use std::io::Read;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The password the test keyring is created and unlocked with.
pub const TEST_PASSWORD: &str = "credshift-test-keyring-password";

const SCRIPT: &str = r#"
printf '%s' "$DBUS_SESSION_BUS_ADDRESS" > "$CREDSHIFT_KS_DIR/addr.tmp"
printf '%s' "$CREDSHIFT_KS_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets \
    > "$CREDSHIFT_KS_DIR/daemon.out" 2> "$CREDSHIFT_KS_DIR/daemon.err"
mv "$CREDSHIFT_KS_DIR/addr.tmp" "$CREDSHIFT_KS_DIR/addr"
read _ignored || true
"#;

pub struct KeyringService {
    /// `DBUS_SESSION_BUS_ADDRESS` of the private bus.
    pub address: String,
    /// Object path of the default (`login`) collection.
    pub collection: String,
    child: Child,
    keep_alive: Option<ChildStdin>,
    dir: TempDir,
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Run a helper command with a deadline; stdout on success.
fn run_for(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return if status.success() {
                    Ok(out)
                } else {
                    Err(format!("{cmd:?} failed ({status}): {err}"))
                };
            }
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish in {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl KeyringService {
    /// Start a fresh, unlocked keyring on its own bus.
    pub fn start() -> Result<KeyringService, String> {
        for tool in ["dbus-run-session", "gnome-keyring-daemon", "dbus-send"] {
            if !have(tool) {
                return Err(format!("{tool} is not installed"));
            }
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let sub = |name: &str| -> Result<std::path::PathBuf, String> {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
            Ok(p)
        };
        let mut cmd = Command::new("dbus-run-session");
        cmd.args(["--", "sh", "-c", SCRIPT])
            .env("CREDSHIFT_KS_DIR", dir.path())
            .env("CREDSHIFT_KS_PASSWORD", TEST_PASSWORD)
            .env("HOME", sub("home")?)
            .env("XDG_DATA_HOME", sub("data")?)
            .env("XDG_CONFIG_HOME", sub("config")?)
            .env("XDG_CACHE_HOME", sub("cache")?)
            .env("XDG_RUNTIME_DIR", sub("run")?)
            // No display: a prompt must fail, never pop up on someone's screen.
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("dbus-run-session: {e}"))?;
        let keep_alive = child.stdin.take();
        let mut ks = KeyringService {
            address: String::new(),
            collection: String::new(),
            child,
            keep_alive,
            dir,
        };
        ks.address = ks.wait_for_address(Duration::from_secs(20))?;
        ks.collection = ks.wait_for_default_collection(Duration::from_secs(20))?;
        Ok(ks)
    }

    fn wait_for_address(&mut self, limit: Duration) -> Result<String, String> {
        let path = self.dir.path().join("addr");
        let start = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&path)
                && !a.trim().is_empty()
            {
                return Ok(a.trim().to_string());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "dbus-run-session exited early ({status}): {}",
                    self.daemon_log()
                ));
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "no session bus address after {limit:?}: {}",
                    self.daemon_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.err")).unwrap_or_default()
    }

    /// `dbus-send` to the Secret Service on this bus.
    pub fn dbus_send(&self, path: &str, method: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("dbus-send");
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                path,
                method,
            ])
            .args(args)
            .stdin(Stdio::null());
        run_for(&mut cmd, Duration::from_secs(10))
    }

    fn wait_for_default_collection(&self, limit: Duration) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let reply = self.dbus_send(
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.ReadAlias",
                &["string:default"],
            );
            if let Ok(out) = &reply
                && let Some(path) = out
                    .split('"')
                    .find(|s| s.starts_with("/org/freedesktop/secrets/collection/"))
            {
                return Ok(path.to_string());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "the keyring has no default collection after {limit:?}: {reply:?} {}",
                    self.daemon_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The directory whose subdirectories are the daemon's HOME and XDG
    /// directories: what [`restart_daemon`] takes, in a child process.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether the default collection is locked, asked over D-Bus.
    pub fn is_locked(&self) -> Result<bool, String> {
        let out = self.dbus_send(
            &self.collection,
            "org.freedesktop.DBus.Properties.Get",
            &["string:org.freedesktop.Secret.Collection", "string:Locked"],
        )?;
        Ok(out.contains("boolean true"))
    }

    /// Lock the default collection (`org.freedesktop.Secret.Service.Lock`).
    pub fn lock(&self) -> Result<(), String> {
        self.dbus_send(
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            &[&format!("array:objpath:{}", self.collection)],
        )?;
        if self.is_locked()? {
            Ok(())
        } else {
            Err("the collection did not lock".into())
        }
    }
}

impl Drop for KeyringService {
    fn drop(&mut self) {
        // Closing the script's stdin ends the session and the daemon.
        self.keep_alive.take();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replace the gnome-keyring-daemon of the bus in DBUS_SESSION_BUS_ADDRESS
/// (started by [`KeyringService::start`] with `dir`) by a new one, as a
/// restart of the desktop's daemon does: every session the old one held is
/// gone. Returns once the new one serves the default collection again.
pub fn restart_daemon(dir: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("gnome-keyring-daemon")
        .args(["--replace", "--unlock", "--components=secrets"])
        .env("HOME", dir.join("home"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("gnome-keyring-daemon: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(TEST_PASSWORD.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    // It forks the daemon and exits.
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("gnome-keyring-daemon --replace: {status}"));
    }
    let start = Instant::now();
    loop {
        let mut cmd = Command::new("dbus-send");
        cmd.args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.ReadAlias",
            "string:default",
        ])
        .stdin(Stdio::null());
        if let Ok(out) = run_for(&mut cmd, Duration::from_secs(10))
            && out.contains("/org/freedesktop/secrets/collection/")
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err("the restarted daemon has no default collection after 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static SHARED: OnceLock<Result<KeyringService, String>> = OnceLock::new();

/// The keyring shared by every test of this binary, with its address in
/// this process's environment. `None` (after `skip_without`, which panics
/// under CREDSHIFT_REQUIRE_SERVICES=1) when it cannot run here.
pub fn shared() -> Option<&'static KeyringService> {
    let started = SHARED.get_or_init(|| {
        let ks = KeyringService::start()?;
        // SAFETY: set once, inside this OnceLock's initialiser, which every
        // keyring test passes before it touches the keyring or spawns a
        // process; std's own environment lock orders it against spawns.
        unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &ks.address) };
        Ok(ks)
    });
    match started {
        Ok(ks) => Some(ks),
        Err(reason) => {
            super::skip_without("gnome-keyring", reason);
            None
        }
    }
}

/// `secret-tool` on the keyring's bus (another client of the same store):
/// whether it succeeded, and its stdout then stderr (it prints attributes
/// on stderr and the rest on stdout).
pub fn secret_tool(ks: &KeyringService, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let f = super::run_child(
        std::process::Command::new("secret-tool")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address),
        Some(stdin.unwrap_or("").as_bytes()),
        super::deadline(),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&f.stdout),
        String::from_utf8_lossy(&f.stderr)
    );
    (f.status.is_some_and(|s| s.success()), text)
}
