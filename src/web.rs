//! `credshift web`: serves the browser keychain page (`assets/web/`,
//! embedded in the binary) on the loopback addresses only.
//!
//! The server is deliberately tiny: HTTP/1.1 `GET`/`HEAD` for the page's own
//! files, 404 for every other path, one connection per request
//! (`Connection: close`). No secret ever passes through it: the page reads a
//! bundle from the user's disk with the file picker and does every
//! cryptographic step in the browser. A request whose `Host` is not this
//! server is refused, so a web site that rebinds its DNS name to 127.0.0.1
//! cannot read the page through the user's browser either.
//!
//! One origin per user (issue 23): the page lives at `http://localhost:PORT/`
//! with PORT fixed per user ([`default_port`]), so the keychain is found
//! again next time. `localhost` because a passkey needs a domain as its
//! relying party (an IP address is refused), and Chromium tries `[::1]`
//! before `127.0.0.1` for it: so credshift holds both loopback addresses on
//! the port, and refuses to start when another process holds either. The
//! IP-address hosts are redirected to `localhost`, so no second keychain
//! appears under another origin.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The Content-Security-Policy sent with every answer: only the page's own
/// files, no inline script or style, no network beyond this origin.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's files: path, content type, body.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../assets/web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/web/app.js"),
    ),
    (
        "/keychain.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/web/keychain.js"),
    ),
    (
        "/envelope.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/web/envelope.js"),
    ),
    (
        "/mask.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/web/mask.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/web/style.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("../assets/web/favicon.svg"),
    ),
];

/// The longest request head read; anything longer is refused.
const MAX_HEAD: usize = 16 * 1024;

/// The first port of the per-user range, below Linux's ephemeral ports
/// (32768-60999), so an outgoing connection never happens to hold it.
pub const PORT_BASE: u16 = 21000;
/// How many per-user ports there are.
pub const PORT_SPAN: u16 = 8000;

/// This user's port: fixed, so the page's origin (and the keychain the
/// browser keeps for it) is the same every run; different per uid, so two
/// users of one machine do not take each other's port by default.
pub fn default_port() -> u16 {
    let uid = rustix::process::getuid().as_raw();
    port_for_uid(uid)
}

/// [`default_port`] for `uid`.
pub fn port_for_uid(uid: u32) -> u16 {
    PORT_BASE + (uid % u32::from(PORT_SPAN)) as u16
}

/// Why `credshift web` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "{addr} is already in use by another process: refusing to serve the keychain page \
         beside it (that process could answer for http://localhost:{port}/). Stop it, or \
         choose another port with --port"
    )]
    Taken { addr: SocketAddr, port: u16 },
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The listening sockets: `127.0.0.1:PORT` and, where the machine has IPv6,
/// `[::1]:PORT`.
#[derive(Debug)]
pub struct Listeners {
    pub v4: TcpListener,
    /// None only when the machine has no IPv6 loopback at all (then no one
    /// can listen on `[::1]` either).
    pub v6: Option<TcpListener>,
}

impl Listeners {
    pub fn port(&self) -> std::io::Result<u16> {
        Ok(self.v4.local_addr()?.port())
    }
}

fn bind_one(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => BindError::Taken {
            addr,
            port: addr.port(),
        },
        _ => BindError::Io { addr, source: e },
    })
}

/// Bind `127.0.0.1:port` and `[::1]:port` (port 0: a free port both
/// addresses have; a new origin each run). Never another interface. Fails
/// with [`BindError::Taken`] when another process holds either address.
pub fn bind(port: u16) -> Result<Listeners, BindError> {
    let attempts = if port == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let v4 = bind_one(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        let chosen = v4
            .local_addr()
            .map_err(|e| BindError::Io {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                source: e,
            })?
            .port();
        match bind_one(SocketAddr::from((Ipv6Addr::LOCALHOST, chosen))) {
            Ok(v6) => return Ok(Listeners { v4, v6: Some(v6) }),
            Err(BindError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AddrNotAvailable =>
            {
                return Ok(Listeners { v4, v6: None });
            }
            // A free IPv4 port someone holds on IPv6: try another.
            Err(e @ BindError::Taken { .. }) if port == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// The address the page is served at: `http://localhost:PORT/`.
pub fn url(listeners: &Listeners) -> std::io::Result<String> {
    Ok(format!("http://localhost:{}/", listeners.port()?))
}

/// What the server remembers between runs: that the page made a keychain
/// for this port (a marker file per port in `dir`, 0600 in a 0700 dir), so
/// the page can tell the user when the keychain it expects is not there.
#[derive(Debug, Clone)]
pub struct WebState {
    pub dir: PathBuf,
}

impl WebState {
    fn marker(&self, port: u16) -> PathBuf {
        self.dir.join(format!("keychain-{port}"))
    }

    pub fn keychain_expected(&self, port: u16) -> bool {
        self.marker(port).exists()
    }

    pub fn keychain_made(&self, port: u16) -> crate::error::Result<()> {
        crate::fsutil::ensure_private_dir(&self.dir)?;
        crate::fsutil::atomic_write(&self.marker(port), b"a keychain was made for this port\n")
    }
}

/// Where `credshift web` keeps its [`WebState`] under the state dir.
pub fn state_dir(credshift_state: &Path) -> PathBuf {
    credshift_state.join("web")
}

/// Serve until `stop` is set (Ctrl-C). Each connection gets its own thread
/// with short read/write timeouts.
pub fn serve(listeners: Listeners, state: WebState, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let port = listeners.port()?;
    let state = Arc::new(state);
    let mut all = vec![listeners.v4];
    all.extend(listeners.v6);
    for l in &all {
        l.set_nonblocking(true)?;
    }
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for l in &all {
            match l.accept() {
                Ok((stream, _)) => {
                    idle = false;
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = handle(stream, port, &state);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

fn handle(mut stream: TcpStream, port: u16, state: &WebState) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(&buf[..n]);
    };
    let answer = if complete {
        match respond(&head, port, state.keychain_expected(port)) {
            (r, Some(Action::KeychainMade)) => match state.keychain_made(port) {
                Ok(()) => r,
                Err(_) => Response::status(500, "Internal Server Error"),
            },
            (r, None) => r,
        }
    } else {
        Response::status(400, "Bad Request")
    };
    stream.write_all(&answer.to_bytes())?;
    stream.flush()
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: Cow<'static, [u8]>,
    /// `HEAD`: the headers of `body`, without it.
    pub head_only: bool,
    /// A redirect's target.
    pub location: Option<String>,
}

/// What a request asks the server to remember.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The page made a keychain for this origin.
    KeychainMade,
}

impl Response {
    fn status(status: u16, reason: &'static str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Borrowed(reason.as_bytes()),
            head_only: false,
            location: None,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let location = self
            .location
            .as_ref()
            .map(|l| format!("Location: {l}\r\n"))
            .unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n\
             Content-Type: {}\r\n\
             Content-Length: {}\r\n\
             {location}\
             Content-Security-Policy: {CSP}\r\n\
             X-Content-Type-Options: nosniff\r\n\
             X-Frame-Options: DENY\r\n\
             Referrer-Policy: no-referrer\r\n\
             Cross-Origin-Opener-Policy: same-origin\r\n\
             Cross-Origin-Resource-Policy: same-origin\r\n\
             Cache-Control: no-store\r\n\
             Connection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The answer to a request head (request line and headers), for a server
/// on port `port`, and what it asks the server to remember. Pure: the unit
/// tests drive it directly. `keychain_expected`: the page made a keychain
/// for this port before (answered at `/state.json`).
pub fn respond(head: &[u8], port: u16, keychain_expected: bool) -> (Response, Option<Action>) {
    let Ok(text) = std::str::from_utf8(head) else {
        return (Response::status(400, "Bad Request"), None);
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (Response::status(400, "Bad Request"), None);
    };
    if !version.starts_with("HTTP/1.") {
        return (Response::status(505, "HTTP Version Not Supported"), None);
    }
    let headers: Vec<(&str, &str)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let host = header("host");
    let canonical = format!("localhost:{port}");
    let ip_hosts = [format!("127.0.0.1:{port}"), format!("[::1]:{port}")];
    let path = target.split(['?', '#']).next().unwrap_or("");
    let is = |h: &str, a: &str| h.eq_ignore_ascii_case(a);
    match host {
        Some(h) if is(h, &canonical) => {}
        // One origin, one keychain: the IP-address hosts lead to localhost.
        Some(h) if ip_hosts.iter().any(|a| is(h, a)) && matches!(method, "GET" | "HEAD") => {
            let known = FILES.iter().any(|(p, _, _)| *p == path);
            return (
                Response {
                    location: Some(format!(
                        "http://{canonical}{}",
                        if known { path } else { "/" }
                    )),
                    head_only: method == "HEAD",
                    ..Response::status(308, "Permanent Redirect")
                },
                None,
            );
        }
        _ => return (Response::status(421, "Misdirected Request"), None),
    }
    if method == "POST" && path == "/keychain-made" {
        // Only the page itself: a browser names the page's origin in
        // `Origin` on a POST, and no other site can make it say ours.
        let origin = format!("http://{canonical}");
        if header("origin") != Some(origin.as_str())
            || header("sec-fetch-site").is_some_and(|s| s != "same-origin")
        {
            return (Response::status(403, "Forbidden"), None);
        }
        return (
            Response::status(204, "No Content"),
            Some(Action::KeychainMade),
        );
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return (Response::status(405, "Method Not Allowed"), None),
    };
    if path == "/state.json" {
        return (
            Response {
                status: 200,
                reason: "OK",
                content_type: "application/json",
                body: Cow::Owned(
                    format!("{{\"keychain_expected\":{keychain_expected}}}").into_bytes(),
                ),
                head_only,
                location: None,
            },
            None,
        );
    }
    let answer = match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, body)) => Response {
            status: 200,
            reason: "OK",
            content_type,
            body: Cow::Borrowed(body.as_bytes()),
            head_only,
            location: None,
        },
        None => Response {
            head_only,
            ..Response::status(404, "Not Found")
        },
    };
    (answer, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Response {
        respond(raw.as_bytes(), 8080, false).0
    }

    fn get(path: &str) -> Response {
        req(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
        ))
    }

    #[test]
    fn the_page_and_its_files_are_served() {
        for (path, _, body) in FILES {
            let r = get(path);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(&r.body[..], body.as_bytes());
        }
        assert!(get("/").content_type.starts_with("text/html"));
        assert_eq!(get("/?x=1").status, 200);
    }

    #[test]
    fn anything_else_is_404() {
        for path in [
            "/index.htm",
            "/../Cargo.toml",
            "/etc/passwd",
            "//app.js",
            "/app.js/",
            "/APP.JS",
            "/favicon.ico",
            "*",
        ] {
            assert_eq!(get(path).status, 404, "{path}");
        }
    }

    #[test]
    fn every_answer_carries_the_strict_csp() {
        for r in [get("/"), get("/nope")] {
            let text = String::from_utf8(r.to_bytes()).unwrap();
            assert!(
                text.contains("\r\nContent-Security-Policy: default-src 'self';"),
                "{text}"
            );
            assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        }
    }

    #[test]
    fn a_foreign_or_missing_host_is_refused() {
        let host = |host: &str| req(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(host("evil.example:8080").status, 421);
        assert_eq!(host("localhost:9999").status, 421);
        assert_eq!(host("127.0.0.1:9999").status, 421);
        assert_eq!(host("localhost:8080").status, 200);
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n").status, 421);
    }

    /// Issue 23: one origin per port, so one keychain: the IP-address
    /// hosts are sent to http://localhost:PORT/.
    #[test]
    fn ip_address_hosts_are_redirected_to_localhost() {
        for host in ["127.0.0.1:8080", "[::1]:8080"] {
            let r = req(&format!("GET /app.js HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(r.status, 308, "{host}");
            assert_eq!(r.location.as_deref(), Some("http://localhost:8080/app.js"));
            let text = String::from_utf8(r.to_bytes()).unwrap();
            assert!(text.contains("\r\nLocation: http://localhost:8080/app.js\r\n"));
            let r = req(&format!("GET /nope HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(r.location.as_deref(), Some("http://localhost:8080/"));
        }
    }

    #[test]
    fn only_get_and_head_and_the_keychain_marker() {
        let r = req("POST / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n");
        assert_eq!(r.status, 405);
        let r = req("HEAD / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n");
        assert_eq!(r.status, 200);
        let bytes = r.to_bytes();
        assert!(bytes.ends_with(b"\r\n\r\n"), "HEAD has no body");
        assert_eq!(req("garbage\r\n\r\n").status, 400);
        assert_eq!(
            req("GET / SPDY/3\r\nHost: localhost:8080\r\n\r\n").status,
            505
        );
        let post = |extra: &str| {
            respond(
                format!("POST /keychain-made HTTP/1.1\r\nHost: localhost:8080\r\n{extra}\r\n")
                    .as_bytes(),
                8080,
                false,
            )
        };
        let (r, action) = post("Origin: http://localhost:8080\r\nSec-Fetch-Site: same-origin\r\n");
        assert_eq!((r.status, action), (204, Some(Action::KeychainMade)));
        for bad in [
            "",
            "Origin: http://evil.example\r\n",
            "Origin: http://localhost:8080\r\nSec-Fetch-Site: cross-site\r\n",
        ] {
            let (r, action) = post(bad);
            assert_eq!((r.status, action), (403, None), "{bad:?}");
        }
    }

    #[test]
    fn state_json_says_whether_a_keychain_is_expected() {
        let head = b"GET /state.json HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";
        for expected in [false, true] {
            let r = respond(head, 8080, expected).0;
            assert_eq!(r.status, 200);
            assert_eq!(
                &r.body[..],
                format!("{{\"keychain_expected\":{expected}}}").as_bytes()
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let state = WebState {
            dir: dir.path().join("web"),
        };
        assert!(!state.keychain_expected(8080));
        state.keychain_made(8080).unwrap();
        assert!(state.keychain_expected(8080) && !state.keychain_expected(8081));
        assert_eq!(crate::fsutil::mode_of(&state.dir).unwrap() & 0o777, 0o700);
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_has_no_inline_script() {
        for (path, _, body) in FILES {
            // An SVG namespace is a name, not something loaded.
            let body = body.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for bad in ["http://", "https://", "//cdn", "eval(", "new Function"] {
                assert!(!body.contains(bad), "{path} contains {bad}");
            }
        }
        let html = FILES[0].2;
        // Every <script> has a src and no body; no inline handlers or styles.
        for chunk in html.split("<script").skip(1) {
            let tag_end = chunk.find('>').unwrap();
            assert!(chunk[..tag_end].contains("src=\"/"), "{chunk}");
            assert!(chunk[tag_end + 1..].trim_start().starts_with("</script>"));
        }
        for attr in [" onclick=", " onload=", " style=", "<style"] {
            assert!(!html.contains(attr), "{attr}");
        }
    }

    #[test]
    fn ports_are_per_user_and_outside_the_ephemeral_range() {
        assert_eq!(port_for_uid(0), PORT_BASE);
        assert_eq!(port_for_uid(1000), PORT_BASE + 1000);
        assert_ne!(port_for_uid(1000), port_for_uid(1001));
        for uid in [0, 999, 7999, 8000, 65534, u32::MAX] {
            let p = port_for_uid(uid);
            assert!(
                (PORT_BASE..PORT_BASE + PORT_SPAN).contains(&p),
                "{uid}: {p}"
            );
            assert!(p < 32768, "{uid}: {p} is in the ephemeral range");
        }
    }

    #[test]
    fn it_binds_both_loopback_addresses_only_and_refuses_a_taken_one() {
        let l = bind(0).unwrap();
        let port = l.port().unwrap();
        assert!(l.v4.local_addr().unwrap().ip().is_loopback());
        if let Some(v6) = &l.v6 {
            assert_eq!(
                v6.local_addr().unwrap(),
                SocketAddr::from((Ipv6Addr::LOCALHOST, port))
            );
        }
        assert_eq!(url(&l).unwrap(), format!("http://localhost:{port}/"));
        // Someone else's listener on [::1]:P (or 127.0.0.1:P) stops a start.
        drop(l);
        let other = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)));
        if let Ok(other) = other {
            let taken = other.local_addr().unwrap().port();
            let e = bind(taken).unwrap_err();
            assert!(matches!(e, BindError::Taken { .. }), "{e}");
            assert!(e.to_string().contains(&format!("[::1]:{taken}")), "{e}");
        }
        let other = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let taken = other.local_addr().unwrap().port();
        let e = bind(taken).unwrap_err();
        assert!(e.to_string().contains(&format!("127.0.0.1:{taken}")), "{e}");
    }
}
