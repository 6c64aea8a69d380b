//! `credshift web`: the server (loopback only, 404 for anything but the
//! page, strict CSP, stops on Ctrl-C) and the page itself in a real headless
//! Chromium driven by Playwright (tests/web/browser.mjs): a file store ->
//! bundle -> page -> reload -> export -> credshift round trip, refusals, no
//! secret in IndexedDB or the page text, the masking rule, imports that never
//! replace silently, and a squatter on the port (tests/web/squatter.mjs, a
//! second process standing for another local user) that decrypts nothing.
//!
//! Needs node, Debian's `chromium` and `playwright-core` in
//! tests/web/node_modules (`npm ci` there; `.ci/run` does it). Without them
//! the browser tests skip, or fail under CREDSHIFT_REQUIRE_SERVICES=1.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use support::{credshift, run, skip_without};

/// One Chromium at a time: the machine is small and shared.
static BROWSER: Mutex<()> = Mutex::new(());

const PASSPHRASE: &str = "correct horse battery staple ☃";
const EXPORT_PASSPHRASE: &str = "a different \"passphrase\" for the way back";
/// What the user gives the page each session to open the keychain.
const KEYCHAIN_PASSPHRASE: &str = "the keychain's own passphrase, typed each session";

struct Server {
    child: Child,
    url: String,
    port: u16,
    /// Its state dir (where it remembers the keychains made), kept for the
    /// server's life when the test gave none.
    _state: Option<tempfile::TempDir>,
}

impl Server {
    /// `credshift web --port 0` with a state dir of its own.
    fn start() -> Server {
        let state = tempfile::tempdir().unwrap();
        let mut s = Server::start_on(0, state.path()).expect("credshift web starts");
        s._state = Some(state);
        s
    }

    /// `credshift web --port PORT`; Err((exit code, stderr)) when it does
    /// not start.
    fn start_on(port: u16, state: &Path) -> Result<Server, (Option<i32>, String)> {
        let mut child = credshift(state)
            .args(["web", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn credshift web");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            let status = child.wait().unwrap();
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Err((status.code(), err));
        }
        let url = line.trim().to_string();
        let port = url
            .strip_prefix("http://localhost:")
            .and_then(|r| r.strip_suffix('/'))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("credshift web printed {line:?}, not http://localhost:N/"));
        Ok(Server {
            child,
            url,
            port,
            _state: None,
        })
    }

    /// One raw HTTP request to 127.0.0.1; the whole answer as text.
    fn request(&self, raw: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn get(&self, path: &str) -> String {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            self.port
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn server_answers_404_to_anything_but_the_page_with_a_strict_csp() {
    let server = Server::start();
    for path in [
        "/",
        "/app.js",
        "/keychain.js",
        "/envelope.js",
        "/mask.js",
        "/style.css",
        "/favicon.svg",
    ] {
        let a = server.get(path);
        assert_eq!(status_of(&a), 200, "{path}: {a}");
        assert!(
            a.contains("\r\nContent-Security-Policy: default-src 'self'; script-src 'self';"),
            "{a}"
        );
    }
    for path in [
        "/index.html",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/assets/web/app.js",
        "/favicon.ico",
        "/.git/config",
        "/etc/passwd",
    ] {
        let a = server.get(path);
        assert_eq!(status_of(&a), 404, "{path}: {a}");
        assert!(a.contains("Content-Security-Policy: default-src 'self'"));
    }
    let post = server.request(&format!(
        "POST / HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: 0\r\n\r\n",
        server.port
    ));
    assert_eq!(status_of(&post), 405);
    // The IP-address hosts are sent to the one origin, localhost.
    let a = server.request(&format!(
        "GET /app.js HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        server.port
    ));
    assert_eq!(status_of(&a), 308, "{a}");
    assert!(
        a.contains(&format!(
            "\r\nLocation: http://localhost:{}/app.js\r\n",
            server.port
        )),
        "{a}"
    );
}

#[test]
fn server_refuses_a_foreign_host_header() {
    // A site that rebinds its DNS name to 127.0.0.1 sends its own Host.
    let server = Server::start();
    let a = server.request(&format!(
        "GET / HTTP/1.1\r\nHost: attacker.example:{}\r\n\r\n",
        server.port
    ));
    assert_eq!(status_of(&a), 421, "{a}");
    assert!(!a.contains("keychain.js"));
}

/// A non-loopback IPv4 address of this machine, if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the source address.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn server_listens_on_loopback_only() {
    let server = Server::start();
    assert!(server.url.starts_with("http://localhost:"));
    // The kernel's table of listening sockets: this port is bound to
    // 127.0.0.1 (0100007F) and [::1] and nothing else.
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let tcp6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let port_hex = format!(":{:04X}", server.port);
    let listening: Vec<&str> = tcp
        .lines()
        .chain(tcp6.lines())
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&port_hex) && f[3] == "0A"
        })
        .collect();
    let mut addrs: Vec<&str> = listening
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    addrs.sort();
    let v6 = format!("00000000000000000000000001000000{port_hex}");
    let v4 = format!("0100007F{port_hex}");
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        assert_eq!(addrs, [v6.as_str(), v4.as_str()], "{listening:?}");
    } else {
        assert_eq!(addrs, [v4.as_str()], "{listening:?}");
    }
    if let Some(ip) = non_loopback_address() {
        let r = TcpStream::connect_timeout(
            &std::net::SocketAddr::new(ip, server.port),
            Duration::from_secs(2),
        );
        assert!(r.is_err(), "reachable on {ip}");
    }
}

#[test]
fn server_stops_on_ctrl_c() {
    let mut server = Server::start();
    assert_eq!(status_of(&server.get("/")), 200);
    let pid = server.child.id() as i32;
    // SAFETY: sending SIGINT to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running 10 s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err());
}

// ---- in the browser ------------------------------------------------------

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The browser tools, or None (skipped) when they are missing.
fn browser_tools() -> Option<PathBuf> {
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        skip_without("node", "`node` is not on PATH");
        return None;
    }
    let Some(chromium) = chromium() else {
        skip_without(
            "chromium",
            "no /usr/bin/chromium (apt-get install chromium)",
        );
        return None;
    };
    if !web_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        skip_without(
            "playwright-core",
            "tests/web/node_modules/playwright-core is missing (npm ci in tests/web)",
        );
        return None;
    }
    Some(chromium)
}

/// The browser tools, this test's turn at the browser (one at a time) and
/// a fresh folder; None (skipped) when the tools are missing.
fn browser() -> Option<(PathBuf, MutexGuard<'static, ()>, tempfile::TempDir)> {
    let chromium = browser_tools()?;
    let one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    Some((chromium, one, tempfile::tempdir().unwrap()))
}

fn write_private(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// Run one scenario of browser.mjs; panics with its output on failure.
fn run_browser(chromium: &Path, dir: &Path, config: Value) -> String {
    let cfg = dir.join(format!(
        "browser-{}.json",
        config["scenario"].as_str().unwrap()
    ));
    write_private(&cfg, serde_json::to_string(&config).unwrap().as_bytes());
    let f = support::run_child(
        Command::new("node")
            .arg(web_dir().join("browser.mjs"))
            .env("CREDSHIFT_WEB_CONFIG", &cfg)
            .env("CHROMIUM", chromium)
            .current_dir(web_dir()),
        None,
        Duration::from_secs(300),
    );
    let out = String::from_utf8_lossy(&f.stdout).into_owned();
    let err = String::from_utf8_lossy(&f.stderr);
    let status = f.status;
    match status {
        Some(s) if s.success() && out.contains("all passed") => out,
        Some(s) => panic!("browser scenario failed ({s}):\n{out}\n{err}"),
        None => panic!("browser scenario timed out after 300 s:\n{out}\n{err}"),
    }
}

/// The masked inventory of a store as credshift shows it (`items` only).
fn inventory(state: &Path, spec: &str, pass_env: &str, pass: &str) -> Vec<Value> {
    let (o, stdout, stderr) = run(credshift(state)
        .args([
            "inventory",
            "--from",
            spec,
            "--json",
            "--passphrase-env",
            pass_env,
        ])
        .env(pass_env, pass));
    assert!(o.status.success(), "inventory {spec}: {stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["errors"], json!([]), "{spec}");
    v["items"].as_array().unwrap().clone()
}

/// Every secret of a bundle by id: all of them through the library (one key
/// derivation), and those in `through_cli` also through `credshift get`,
/// which must agree.
fn secrets(state: &Path, bundle: &Path, pass: &str, through_cli: &[&str]) -> Value {
    let bytes = std::fs::read(bundle).unwrap();
    let creds = credshift::crypto::envelope::open_credentials(
        &bytes,
        &credshift::crypto::envelope::KeySource::Passphrase(credshift::credential::Secret::new(
            pass,
        )),
        &bundle.display().to_string(),
        false,
    )
    .unwrap();
    let mut map = serde_json::Map::new();
    for c in &creds {
        map.insert(c.id.to_string(), json!(c.secret.expose()));
    }
    for id in through_cli {
        let (o, stdout, stderr) = run(credshift(state)
            .args(["get", "--from"])
            .arg(format!("bundle:{}", bundle.display()))
            .args([id, "--passphrase-env", "P"])
            .env("P", pass));
        assert!(o.status.success(), "get {id}: {stderr}");
        assert_eq!(stdout.strip_suffix('\n'), map[*id].as_str(), "{id}");
    }
    Value::Object(map)
}

/// The fixture's prompttrain credentials and .env file migrated into one
/// bundle by the credshift binary.
fn fixture_bundle(dir: &Path, state: &Path) -> PathBuf {
    let bundle = dir.join("transfer.bundle");
    let prompttrain = support::copy_fixture("prompttrain/credentials", dir);
    let dotenv = support::copy_fixture("dotenv/.env", dir);
    for from in [
        format!("prompttrain:{}", prompttrain.display()),
        format!("dotenv:{}", dotenv.display()),
    ] {
        let (o, _, stderr) = run(credshift(state)
            .args(["migrate", "--from", &from, "--to"])
            .arg(format!("bundle:{}", bundle.display()))
            .args(["--yes", "--passphrase-env", "WEB_TEST_PASS"])
            .env("WEB_TEST_PASS", PASSPHRASE));
        assert!(o.status.success(), "migrate {from}: {stderr}");
    }
    // Values that test escaping on the way through JSON, HTML and UTF-8.
    let opts = credshift::unlock::KeyOptions {
        passphrase: Some(credshift::credential::Secret::new(PASSPHRASE)),
        ..credshift::unlock::KeyOptions::default()
    };
    let store = credshift::store::open(&credshift::store::StoreSpec::Bundle(bundle.clone()), &opts)
        .unwrap();
    let meta = json!({"labels": ["ü", "</td>"], "nested": {"n": 1, "ok": true}, "expires_at": "2020-01-02T03:04:05Z"});
    for (id, kind, secret) in [
        (
            "web:tricky/password",
            credshift::credential::Kind::Password,
            "pässwörd \"quoted\" \\back\\slash ☃ 🎉 </script><b>bold</b>",
        ),
        (
            "web:tricky/api_key",
            credshift::credential::Kind::ApiKey,
            "ghp_\u{1F511}key-with-emoji-and-\ttab-0123456789",
        ),
    ] {
        let c = credshift::credential::Credential::new(id.parse().unwrap(), kind, secret)
            .with_metadata(meta.as_object().unwrap().clone());
        store.write(&c).unwrap();
    }
    bundle
}

#[test]
fn browser_round_trip_file_store_to_bundle_to_page_and_back_loses_nothing() {
    let Some((chromium, _one, dir)) = browser() else {
        return;
    };
    let state = dir.path().join("state");
    let bundle = fixture_bundle(dir.path(), &state);
    let spec = format!("bundle:{}", bundle.display());
    let before = inventory(&state, &spec, "WEB_TEST_PASS", PASSPHRASE);
    assert!(before.len() >= 10, "{before:?}");
    let cli_ids = [
        "web:tricky/password",
        "web:tricky/api_key",
        "env/SLACK_BOT_TOKEN",
    ];
    let before_secrets = secrets(&state, &bundle, PASSPHRASE, &cli_ids);
    assert_eq!(before_secrets.as_object().unwrap().len(), before.len());
    // The page shows credshift's previews. Passwords never show a tail
    // (ARCHITECTURE.md, "Masked preview"); without a known prefix that is only their length.
    let expected: Vec<Value> = before
        .iter()
        .map(|it| {
            let preview = match it["kind"].as_str().unwrap() {
                "password" | "password_hash" => {
                    let secret = before_secrets[it["id"].as_str().unwrap()].as_str().unwrap();
                    assert!(!secret.starts_with("sk-") && !secret.starts_with("gh"));
                    json!(format!("•••• ({} chars)", secret.chars().count()))
                }
                _ => it["preview"].clone(),
            };
            json!({"id": it["id"], "kind": it["kind"], "preview": preview})
        })
        .collect();
    let reveal_id = before
        .iter()
        .find(|it| it["id"].as_str().unwrap().ends_with("oauth_access_token"))
        .map(|it| it["id"].clone())
        .unwrap();
    let exported = dir.path().join("exported.bundle");
    let server = Server::start();
    let screenshot = std::env::var_os("CREDSHIFT_WEB_SCREENSHOT");
    let out = run_browser(
        &chromium,
        dir.path(),
        json!({
            "scenario": "round-trip",
            "url": server.url,
            "bundle": bundle,
            "passphrase": PASSPHRASE,
            "keychain_passphrase": KEYCHAIN_PASSPHRASE,
            "export_passphrase": EXPORT_PASSPHRASE,
            "export_to": exported,
            "expected": expected,
            "secrets": before_secrets,
            "reveal_id": reveal_id,
            "delete_id": before[0]["id"],
            "screenshot": screenshot.map(PathBuf::from),
        }),
    );
    assert!(out.contains("masked again after 30 s"), "{out}");

    // credshift reads the page's export with `bundle:PATH`: everything is
    // there, ids, kinds, metadata, previews and every secret byte for byte.
    let spec_back = format!("bundle:{}", exported.display());
    let after = inventory(&state, &spec_back, "WEB_TEST_BACK", EXPORT_PASSPHRASE);
    assert_eq!(
        after, before,
        "inventory differs after the browser round trip"
    );
    let after_secrets = secrets(&state, &exported, EXPORT_PASSPHRASE, &cli_ids);
    assert_eq!(after_secrets, before_secrets);
    // The export is a proper envelope at credshift's default strength.
    let env: Value = serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    assert_eq!(env["kdf"]["iterations"], json!(600_000));
    assert_eq!(
        B64.decode(env["kdf"]["salt"].as_str().unwrap())
            .unwrap()
            .len(),
        16
    );
    // The import passphrase does not open the export.
    let (o, _, stderr) = run(credshift(&state)
        .args(["inventory", "--from", &spec_back, "--passphrase-env", "P"])
        .env("P", PASSPHRASE));
    assert!(!o.status.success());
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
}

#[test]
fn browser_passkey_prf_protects_the_keychain() {
    // WebAuthn through Chromium's virtual authenticator (CDP) with the PRF
    // extension, on the URL credshift prints: http://localhost:N/ (a relying
    // party id must be a domain; an IP address is refused).
    let Some((chromium, _one, dir)) = browser() else {
        return;
    };
    let state = dir.path().join("state");
    let bundle = fixture_bundle(dir.path(), &state);
    let spec = format!("bundle:{}", bundle.display());
    let items = inventory(&state, &spec, "WEB_TEST_PASS", PASSPHRASE);
    let all = secrets(&state, &bundle, PASSPHRASE, &[]);
    let expected: Vec<Value> = items.iter().map(|it| json!({"id": it["id"]})).collect();
    let server = Server::start();
    let out = run_browser(
        &chromium,
        dir.path(),
        json!({
            "scenario": "passkey",
            "url": server.url,
            "bundle": bundle,
            "passphrase": PASSPHRASE,
            "keychain_passphrase": KEYCHAIN_PASSPHRASE,
            "expected": expected,
            "secrets": all,
        }),
    );
    assert!(
        out.contains("every secret opens unchanged under the passkey"),
        "{out}"
    );
    assert!(out.contains("nothing listed without the passkey"), "{out}");
}

/// The bundle with `edit` applied to its parsed JSON.
fn tampered(bundle: &Path, dest: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut env: Value = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    edit(&mut env);
    std::fs::write(dest, serde_json::to_vec(&env).unwrap()).unwrap();
    dest.to_path_buf()
}

#[test]
fn browser_refuses_wrong_passphrase_tampered_and_hostile_bundles_storing_nothing() {
    let Some((chromium, _one, dir)) = browser() else {
        return;
    };
    let d = dir.path();
    let state = d.join("state");
    let bundle = fixture_bundle(d, &state);
    let spec = format!("bundle:{}", bundle.display());
    let items = inventory(&state, &spec, "WEB_TEST_PASS", PASSPHRASE);
    let all: Vec<Value> = secrets(&state, &bundle, PASSPHRASE, &[])
        .as_object()
        .unwrap()
        .values()
        .cloned()
        .collect();

    let flipped = tampered(&bundle, &d.join("flipped.bundle"), |e| {
        let mut ct = B64.decode(e["ciphertext"].as_str().unwrap()).unwrap();
        let mid = ct.len() / 2;
        ct[mid] ^= 0x01;
        e["ciphertext"] = json!(B64.encode(&ct));
    });
    let header = tampered(&bundle, &d.join("header.bundle"), |e| {
        e["kdf"]["iterations"] = json!(600_001);
    });
    let absurd = tampered(&bundle, &d.join("absurd.bundle"), |e| {
        e["kdf"]["iterations"] = json!(20_000_000);
    });
    let truncated = d.join("truncated.bundle");
    let text = std::fs::read(&bundle).unwrap();
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let extra = tampered(&bundle, &d.join("extra.bundle"), |e| {
        e["note"] = json!("hello");
    });
    // A weak bundle, sealed with 1,000 iterations through the library.
    let weak = d.join("weak.bundle");
    let creds = vec![credshift::credential::Credential::new(
        "openai/api_key".parse().unwrap(),
        credshift::credential::Kind::ApiKey,
        "sk-weakly-protected-0123456789abcdef",
    )];
    let sealed = credshift::crypto::envelope::seal_credentials(
        &creds,
        &credshift::crypto::envelope::KeySource::Passphrase(credshift::credential::Secret::new(
            PASSPHRASE,
        )),
        1000,
    )
    .unwrap();
    std::fs::write(&weak, sealed).unwrap();
    // credshift itself refuses the same weak and absurd files.
    for (file, says) in [
        (&weak, "weak key derivation"),
        (&absurd, "refusing 20000000"),
    ] {
        let (o, _, stderr) = run(credshift(&state)
            .args(["inventory", "--from"])
            .arg(format!("bundle:{}", file.display()))
            .args(["--passphrase-env", "P"])
            .env("P", PASSPHRASE));
        assert!(!o.status.success() && stderr.contains(says), "{stderr}");
    }

    let server = Server::start();
    let case = |name: &str, file: &Path, pass: &str, expect: &str| json!({"name": name, "file": file, "passphrase": pass, "expect": expect, "secrets": all});
    let out = run_browser(
        &chromium,
        d,
        json!({
            "scenario": "refusals",
            "url": server.url,
            "keychain_passphrase": KEYCHAIN_PASSPHRASE,
            "cases": [
                case("wrong passphrase", &bundle, "not the passphrase", "wrong passphrase"),
                case("ciphertext altered", &flipped, PASSPHRASE, "altered or damaged"),
                case("header altered", &header, PASSPHRASE, "altered or damaged"),
                case("absurd iteration count", &absurd, PASSPHRASE, "refusing 20000000 PBKDF2 iterations"),
                case("weak iteration count", &weak, PASSPHRASE, "weak key derivation"),
                case("truncated file", &truncated, PASSPHRASE, "not JSON"),
                case("unknown header field", &extra, PASSPHRASE, "unexpected field"),
                case("not a bundle", &d.join(".env"), PASSPHRASE, "not a credshift bundle"),
                case("empty passphrase", &bundle, "", "passphrase"),
                {"name": "weak, accepted when asked", "file": weak, "passphrase": PASSPHRASE,
                 "allow_weak": true, "expect_imported": 1},
                {"name": "the good bundle imports", "file": bundle, "passphrase": PASSPHRASE,
                 "expect_imported": items.len()},
            ],
        }),
    );
    assert!(out.contains("the good bundle imports"), "{out}");
}

#[test]
fn browser_masks_by_credshifts_rule() {
    let Some((chromium, _one, dir)) = browser() else {
        return;
    };
    let server = Server::start();
    // ARCHITECTURE.md, "Masked preview", case by case.
    let cases = json!([
        {"label": "long key with a prefix", "secret": "sk-ant-api03-abcdefghijklmnop3f9a", "kind": "api_key",
         "preview": "sk-ant-…3f9a (33 chars)"},
        {"label": "16 chars, no prefix", "secret": "abcdefghijkl3f9a", "kind": "api_key",
         "preview": "…3f9a (16 chars)"},
        {"label": "15 chars", "secret": "abcdefghijk3f9a", "kind": "api_key",
         "preview": "•••• (15 chars)"},
        {"label": "prefix, fewer than 12 hidden with a tail", "secret": "sk-ant-abcdefghijkl", "kind": "api_key",
         "preview": "sk-ant-… (19 chars)"},
        {"label": "sk- and 13 more", "secret": "sk-abcdefghijklm", "kind": "api_key",
         "preview": "sk-… (16 chars)"},
        {"label": "prefix, fewer than 12 hidden even without a tail", "secret": "sk-ant-abcdefghij", "kind": "api_key",
         "preview": "•••• (17 chars)"},
        {"label": "exactly 12 hidden", "secret": "cnp_abcdefghijkl3f9a", "kind": "client_key",
         "preview": "cnp_…3f9a (20 chars)"},
        {"label": "password", "secret": "correct-horse-battery-staple", "kind": "password",
         "preview": "•••• (28 chars)"},
        {"label": "password hash", "secret": "$2b$12$abcdefghijklmnopqrstuuvwxyz0123456789ABCDEFGHIJKLMNOPQR", "kind": "password_hash",
         "preview": "•••• (62 chars)"},
        {"label": "password with a known prefix", "secret": "sk-ant-abcdefghijklmnopqrstu", "kind": "password",
         "preview": "sk-ant-… (28 chars)"},
        {"label": "non-ASCII counted as characters", "secret": "üüüüüüüüüüüüüüüüéèêë", "kind": "other",
         "preview": "…éèêë (20 chars)"},
    ]);
    let out = run_browser(
        &chromium,
        dir.path(),
        json!({"scenario": "mask", "url": server.url, "cases": cases}),
    );
    assert!(out.contains("all passed"));
}

/// A bundle sealed through the library at 100,000 iterations (the least the
/// page accepts without asking), holding `items` as (id, secret).
fn small_bundle(path: &Path, items: &[(&str, &str)]) -> PathBuf {
    let creds: Vec<_> = items
        .iter()
        .map(|(id, secret)| {
            credshift::credential::Credential::new(
                id.parse().unwrap(),
                credshift::credential::Kind::ApiKey,
                *secret,
            )
        })
        .collect();
    let sealed = credshift::crypto::envelope::seal_credentials(
        &creds,
        &credshift::crypto::envelope::KeySource::Passphrase(credshift::credential::Secret::new(
            PASSPHRASE,
        )),
        100_000,
    )
    .unwrap();
    std::fs::write(path, sealed).unwrap();
    path.to_path_buf()
}

/// Issue 23, point 2: a second bundle with another value for a stored id
/// does not replace it: the id is listed and kept; replacing is a choice,
/// and the stored value can be exported first (checked here with
/// credshift). On 232bd74 the second import replaced it silently.
#[test]
fn browser_import_never_replaces_a_stored_value_silently() {
    let Some((chromium, _one, dir)) = browser() else {
        return;
    };
    let d = dir.path();
    let old = "sk-proj-the-stored-value-0123456789abcdef";
    let replacement = "sk-proj-the-bundles-value-0123456789abcd";
    let same = "sk-same-in-both-bundles-0123456789abcdef";
    let fresh = "sk-only-in-the-second-0123456789abcdefgh";
    let first = small_bundle(
        &d.join("first.bundle"),
        &[
            ("env/OPENAI_API_KEY", old),
            ("env/SAME_KEY", same),
            ("env/ONLY_FIRST", "sk-only-in-the-first-0123456789abcdefgh"),
        ],
    );
    let second = small_bundle(
        &d.join("second.bundle"),
        &[
            ("env/OPENAI_API_KEY", replacement),
            ("env/SAME_KEY", same),
            ("env/ONLY_SECOND", fresh),
        ],
    );
    let copy = d.join("before-replace.bundle");
    let server = Server::start();
    run_browser(
        &chromium,
        d,
        json!({
            "scenario": "conflicts",
            "url": server.url,
            "keychain_passphrase": KEYCHAIN_PASSPHRASE,
            "passphrase": PASSPHRASE,
            "export_passphrase": EXPORT_PASSPHRASE,
            "first": first, "first_count": 3,
            "second": second,
            "conflict_id": "env/OPENAI_API_KEY",
            "old_secret": old,
            "replacement_secret": replacement,
            "new_id": "env/ONLY_SECOND",
            "new_secret": fresh,
            "conflict_export_to": copy,
        }),
    );
    // The copy taken before replacing holds the stored value, and only it.
    let state = d.join("state");
    let kept = secrets(&state, &copy, EXPORT_PASSPHRASE, &["env/OPENAI_API_KEY"]);
    assert_eq!(kept, json!({"env/OPENAI_API_KEY": old}));
}

/// A free port on both loopback addresses, as credshift itself finds one.
fn free_port() -> u16 {
    let l = credshift::web::bind(0).unwrap();
    l.port().unwrap()
}

/// The hostile server of tests/web/squatter.mjs on HOST:PORT, standing for
/// another local user's program (the tests run as root; a second process
/// reaches exactly what another user's process on that address would: the
/// origin http://localhost:PORT and its IndexedDB).
struct Squatter(Child);

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the squatter; Err(what it printed) when it could not bind.
fn squat(host: &str, port: u16, loot: &Path) -> Result<Squatter, String> {
    let mut child = Command::new("node")
        .arg(web_dir().join("squatter.mjs"))
        .args([host, &port.to_string()])
        .arg(loot)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() == "listening" {
        Ok(Squatter(child))
    } else {
        let _ = child.wait();
        Err(line)
    }
}

/// Issue 23, point 1: a process of another user on credshift's port, on
/// 127.0.0.1 after credshift stopped or on [::1] (which Chromium tries
/// first for localhost), serves a page at the keychain's own origin that
/// tries every way to decrypt it: it decrypts nothing. credshift refuses to
/// start beside it, holds both addresses while it runs, and the owner opens
/// the keychain afterwards; a browser without the keychain is told so. On
/// 232bd74 the squatter decrypted every item with the stored device key.
#[test]
fn browser_a_squatter_on_the_port_decrypts_nothing() {
    let Some((chromium, _one, dir)) = browser() else {
        return;
    };
    let d = dir.path();
    let state = d.join("state");
    let bundle = fixture_bundle(d, &state);
    let spec = format!("bundle:{}", bundle.display());
    let items = inventory(&state, &spec, "WEB_TEST_PASS", PASSPHRASE);
    let all = secrets(&state, &bundle, PASSPHRASE, &[]);
    let expected: Vec<Value> = items.iter().map(|it| json!({"id": it["id"]})).collect();
    let port = free_port();
    let url = format!("http://localhost:{port}/");
    let web_state = d.join("web-state");
    let loot = d.join("loot.jsonl");
    let scenario = |name: &str| {
        json!({
            "scenario": name, "url": url, "profile": d.join("profile"),
            "bundle": bundle, "passphrase": PASSPHRASE,
            "keychain_passphrase": KEYCHAIN_PASSPHRASE,
            "expected": expected, "secrets": all,
        })
    };

    // The owner's keychain, made at the URL credshift prints.
    let server = Server::start_on(port, &web_state).expect("credshift web starts");
    assert_eq!(server.url, url);
    run_browser(&chromium, d, scenario("squat-setup"));
    // While credshift runs, neither loopback address can be taken.
    for host in ["::1", "127.0.0.1"] {
        let e = squat(host, port, &loot).err();
        assert!(
            e.as_deref().is_some_and(|e| e.contains("EADDRINUSE")),
            "{host}: {e:?}"
        );
    }
    drop(server);

    // 1. IPv4, after credshift stopped.
    let squatter = squat("127.0.0.1", port, &loot).expect("squatter on 127.0.0.1");
    let out = run_browser(&chromium, d, scenario("squat-attack"));
    println!("{out}");
    assert!(out.contains("it decrypts nothing"), "{out}");
    drop(squatter);

    // 2. IPv6 [::1]: credshift refuses to start beside it, naming it.
    let squatter = squat("::1", port, &loot).expect("squatter on [::1]");
    let (code, stderr) = Server::start_on(port, &web_state)
        .err()
        .expect("credshift web refuses a port another process holds");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("[::1]:{port}")) && stderr.contains("already in use"),
        "{stderr}"
    );
    let out = run_browser(&chromium, d, scenario("squat-attack"));
    println!("{out}");
    assert!(out.contains("it decrypts nothing"), "{out}");
    drop(squatter);

    // What the squatter sent itself holds no secret in any form.
    let loot_text = std::fs::read_to_string(&loot).unwrap();
    assert_eq!(loot_text.lines().count(), 2, "{loot_text}");
    for secret in all.as_object().unwrap().values() {
        let secret = secret.as_str().unwrap();
        let escaped = serde_json::to_string(secret).unwrap();
        assert!(
            !loot_text.contains(secret) && !loot_text.contains(&escaped[1..escaped.len() - 1]),
            "the squatter got a secret"
        );
    }

    // The owner, back at credshift's page, opens everything.
    let server = Server::start_on(port, &web_state).expect("credshift web starts again");
    let out = run_browser(&chromium, d, scenario("squat-owner"));
    assert!(out.contains("every secret opens unchanged"), "{out}");
    // Another browser profile (no keychain) where one was made: the page says so.
    run_browser(
        &chromium,
        d,
        json!({"scenario": "missing", "url": server.url}),
    );
}

/// The page's deny list is credshift's (one rule, two languages).
#[test]
fn the_page_and_credshift_deny_the_same_passwords() {
    let js = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/web/envelope.js"),
    )
    .unwrap();
    let list = &js[js.find("COMMON_PASSWORDS = [").unwrap()..];
    let list = &list[..list.find("];").unwrap()];
    let words: Vec<&str> = list.split('\'').skip(1).step_by(2).collect();
    assert_eq!(words, credshift::keys::COMMON_PASSWORDS);
    assert!(js.contains(&format!(
        "PASSPHRASE_RULE = '{}'",
        credshift::keys::PASSPHRASE_RULE
    )));
    assert!(js.contains(&format!(
        "MIN_NEW_PASSPHRASE = {}",
        credshift::keys::MIN_NEW_PASSPHRASE
    )));
}

/// A keychain of an earlier credshift (its key stored unwrapped, usable by
/// any page at the address) opens only after a keychain passphrase is set,
/// which seals its values anew and deletes that key.
#[test]
fn browser_an_unprotected_keychain_of_an_earlier_credshift_is_sealed_anew() {
    let Some((chromium, _one, dir)) = browser() else {
        return;
    };
    let server = Server::start();
    let out = run_browser(
        &chromium,
        dir.path(),
        json!({
            "scenario": "legacy",
            "url": server.url,
            "keychain_passphrase": KEYCHAIN_PASSPHRASE,
            "secrets": {"openai/api_key": "sk-legacy-0123456789abcdef", "env/TOKEN": "tok-legacy-0123456789"},
        }),
    );
    assert!(out.contains("the unprotected key is gone"), "{out}");
}
