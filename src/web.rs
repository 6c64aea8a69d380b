//! `credshift web`: serves the browser keychain page (`assets/web/`,
//! embedded in the binary) on 127.0.0.1 only.
//!
//! The server is deliberately tiny: HTTP/1.1 `GET`/`HEAD` for the page's own
//! files, 404 for every other path, one connection per request
//! (`Connection: close`). No secret ever passes through it: the page reads a
//! bundle from the user's disk with the file picker and does every
//! cryptographic step in the browser. A request whose `Host` is not this
//! loopback address is refused, so a web site that rebinds its DNS name to
//! 127.0.0.1 cannot read the page through the user's browser either.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
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

/// Bind 127.0.0.1:`port` (0 picks a free port). Never another interface.
pub fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// The address the page is served at.
pub fn url(listener: &TcpListener) -> std::io::Result<String> {
    let addr = listener.local_addr()?;
    Ok(format!("http://{}:{}/", addr.ip(), addr.port()))
}

/// Serve until `stop` is set (Ctrl-C). Each connection gets its own thread
/// with short read/write timeouts.
pub fn serve(listener: TcpListener, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                std::thread::spawn(move || {
                    let _ = handle(stream, port);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn handle(mut stream: TcpStream, port: u16) -> std::io::Result<()> {
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
        respond(&head, port)
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
    pub body: &'static [u8],
    /// `HEAD`: the headers of `body`, without it.
    pub head_only: bool,
}

impl Response {
    fn status(status: u16, reason: &'static str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: reason.as_bytes(),
            head_only: false,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n\
             Content-Type: {}\r\n\
             Content-Length: {}\r\n\
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
            out.extend_from_slice(self.body);
        }
        out
    }
}

/// The answer to a request head (request line and headers), for a server
/// on 127.0.0.1:`port`. Pure: the unit tests drive it directly.
pub fn respond(head: &[u8], port: u16) -> Response {
    let Ok(text) = std::str::from_utf8(head) else {
        return Response::status(400, "Bad Request");
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::status(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::status(505, "HTTP Version Not Supported");
    }
    let host = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim());
    let allowed = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    if !host.is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h))) {
        return Response::status(421, "Misdirected Request");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::status(405, "Method Not Allowed"),
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, body)) => Response {
            status: 200,
            reason: "OK",
            content_type,
            body: body.as_bytes(),
            head_only,
        },
        None => Response {
            head_only,
            ..Response::status(404, "Not Found")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response {
        respond(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n").as_bytes(),
            8080,
        )
    }

    #[test]
    fn the_page_and_its_files_are_served() {
        for (path, _, body) in FILES {
            let r = get(path);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.body, body.as_bytes());
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
        let req = |host: &str| {
            respond(
                format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
                8080,
            )
            .status
        };
        assert_eq!(req("evil.example:8080"), 421);
        assert_eq!(req("127.0.0.1:9999"), 421);
        assert_eq!(req("localhost:8080"), 200);
        assert_eq!(respond(b"GET / HTTP/1.1\r\n\r\n", 8080).status, 421);
    }

    #[test]
    fn only_get_and_head() {
        let r = respond(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", 1);
        assert_eq!(r.status, 405);
        let r = respond(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", 1);
        assert_eq!(r.status, 200);
        let bytes = r.to_bytes();
        assert!(bytes.ends_with(b"\r\n\r\n"), "HEAD has no body");
        assert_eq!(respond(b"garbage\r\n\r\n", 1).status, 400);
        assert_eq!(
            respond(b"GET / SPDY/3\r\nHost: 127.0.0.1:1\r\n\r\n", 1).status,
            505
        );
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
    fn it_binds_loopback_only() {
        let l = bind(0).unwrap();
        let addr = l.local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(
            url(&l).unwrap(),
            format!("http://127.0.0.1:{}/", addr.port())
        );
    }
}
