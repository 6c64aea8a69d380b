//! PostgreSQL connection strings: parsed once, redacted for every output,
//! and the password taken from the places libpq users keep it, so none is
//! needed in argv.
//!
//! Accepted form: `postgres[ql]://[USER[:PASSWORD]@]HOST[:PORT][,...][/DB][?K=V&...]`.
//! The user name and password run up to the **last** `@` of the URL, so a
//! password may hold `/`, `?`, `#`, `:` or `@` as they are; `%XX` in it
//! is percent-decoded (write a literal `%` as `%25`; a `%` not followed by
//! two hex digits is kept as it is). Consequently an `@` in the host,
//! database name or parameters must be written `%40`. The user name ends
//! at the first `:` (write `%3A` for a colon in a user name).
//!
//! Redaction ([`redact`]) replaces everything between the user name's `:`
//! and that last `@` with `***`, and the value of a `password=` parameter
//! too. A URL whose password is `***` (as journals and history print it)
//! counts as one without a password.
//!
//! Password sources, first found wins ([`resolve_password`]): the URL (or
//! its `password=` parameter), `--db-password-file`, `PGPASSWORD`, then the
//! password file `PGPASSFILE` or `~/.pgpass` in libpq's format
//! (`host:port:database:user:password`, `*` matching anything, `\:` and
//! `\\` escapes, `#` comments, first matching line wins), which is ignored
//! unless it is a regular file without group or world access (0600), as
//! libpq does; the connection error then says why.

use std::path::{Path, PathBuf};

use crate::credential::Secret;

/// What a redacted password looks like.
pub const REDACTED: &str = "***";
pub const DEFAULT_PORT: u16 = 5432;

/// A parsed `postgres://` URL: the user info decoded, the rest as given.
#[derive(Clone)]
pub struct PgUrl {
    /// `postgres` or `postgresql`.
    scheme: &'static str,
    user: Option<String>,
    password: Option<Secret>,
    /// The value of a `password=` parameter, taken out of `rest`.
    param_password: Option<Secret>,
    /// Everything after the user info: hosts, path and parameters, less
    /// any `password=` parameter (so no copy of a password stays in it).
    rest: String,
}

/// Why a URL could not be parsed. Never quotes the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUrl(pub String);

impl PgUrl {
    pub fn parse(url: &str) -> Result<PgUrl, BadUrl> {
        let (scheme, after) = if let Some(a) = url.strip_prefix("postgres://") {
            ("postgres", a)
        } else if let Some(a) = url.strip_prefix("postgresql://") {
            ("postgresql", a)
        } else {
            return Err(BadUrl("not a postgres:// or postgresql:// URL".into()));
        };
        let (Some(userinfo), rest) = split_userinfo(after) else {
            let (rest, param_password) = take_password_param(after)?;
            return Ok(PgUrl {
                scheme,
                user: None,
                password: None,
                param_password,
                rest,
            });
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let user = String::from_utf8(percent_decode(user))
            .map_err(|_| BadUrl("the user name is not UTF-8 once percent-decoded".into()))?;
        let password = match password {
            Some(p) => {
                let bytes = zeroize::Zeroizing::new(percent_decode(p));
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| BadUrl("the password is not UTF-8 once percent-decoded".into()))?;
                Some(Secret::new(text))
            }
            None => None,
        };
        let (rest, param_password) = take_password_param(rest)?;
        Ok(PgUrl {
            scheme,
            user: (!user.is_empty()).then_some(user),
            password,
            param_password,
            rest,
        })
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password written in the URL (its user info first, else its
    /// `password=` parameter), unless it is the redaction marker.
    pub fn password(&self) -> Option<&Secret> {
        let real = |p: &&Secret| !p.is_empty() && p.expose() != REDACTED;
        self.password
            .as_ref()
            .filter(real)
            .or(self.param_password.as_ref().filter(real))
    }

    /// The URL without its password (user name re-encoded) and without a
    /// `password=` parameter, for the driver to parse hosts, database and
    /// parameters from: the password reaches the driver only as the one
    /// value credshift sets.
    pub fn without_password(&self) -> String {
        match &self.user {
            Some(u) => format!("{}://{}@{}", self.scheme, percent_encode(u), self.rest),
            None => format!("{}://{}", self.scheme, self.rest),
        }
    }
}

/// `rest` without its `password=` parameters (any case), and the first
/// one's value, percent-decoded.
fn take_password_param(rest: &str) -> Result<(String, Option<Secret>), BadUrl> {
    let Some((base, query)) = rest.split_once('?') else {
        return Ok((rest.to_string(), None));
    };
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((k, v))
                if String::from_utf8_lossy(&percent_decode(k)).eq_ignore_ascii_case("password") =>
            {
                if found.is_none() {
                    let bytes = zeroize::Zeroizing::new(percent_decode(v));
                    let text = std::str::from_utf8(&bytes).map_err(|_| {
                        BadUrl("the password parameter is not UTF-8 once percent-decoded".into())
                    })?;
                    found = Some(Secret::new(text));
                }
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, found))
}

/// Replace the password of every `scheme://user:password@...` in `s` (the
/// spec may have a prefix such as `prompttrain-db:`) and the value of a
/// `password=` parameter with `***`.
pub fn redact(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let (head, after) = s.split_at(scheme_end + 3);
    let (userinfo, rest) = split_userinfo(after);
    let mut out = head.to_string();
    if let Some(ui) = userinfo {
        match ui.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:{REDACTED}@")),
            None => out.push_str(&format!("{ui}@")),
        }
    }
    match rest.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _))
                        if String::from_utf8_lossy(&percent_decode(k))
                            .eq_ignore_ascii_case("password") =>
                    {
                        format!("{k}={REDACTED}")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(&format!("{base}?{}", query.join("&")));
        }
        None => out.push_str(rest),
    }
    out
}

/// The user info (up to the last `@`) and what follows. An `@` whose user
/// name part holds `/`, `?` or `#` is not a user info separator (it sits in
/// the path or a parameter), so there is none.
fn split_userinfo(after: &str) -> (Option<&str>, &str) {
    match after.rfind('@') {
        Some(at) => {
            let ui = &after[..at];
            let user = ui.split_once(':').map_or(ui, |(u, _)| u);
            if user.contains(['/', '?', '#']) {
                (None, after)
            } else {
                (Some(ui), &after[at + 1..])
            }
        }
        None => (None, after),
    }
}

/// `%XX` decoded; anything else (a lone `%` too) kept as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn percent_encode(s: &str) -> String {
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

/// What the password is looked up for (libpq's `.pgpass` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name as given, or `localhost` for a Unix socket.
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

/// Where a password was found (for messages; never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url,
    File(PathBuf),
    Env,
    PassFile(PathBuf),
}

/// The password to connect with, and a note to add to a failed
/// connection's error (a password file that was ignored, and why).
pub struct Resolved {
    pub password: Option<(Secret, Source)>,
    pub note: Option<String>,
}

/// The environment, injectable for tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn home(&self) -> Option<PathBuf>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn home(&self) -> Option<PathBuf> {
        dirs::home_dir()
    }
}

/// The password for `target`, from the first source that has one (see the
/// module docs). `from_file` is `--db-password-file`'s content.
pub fn resolve_password(
    url_password: Option<&Secret>,
    from_file: Option<(&Secret, &Path)>,
    target: &Target,
    env: &dyn Env,
) -> Resolved {
    let found = |s: &Secret, src: Source| Resolved {
        password: Some((s.clone(), src)),
        note: None,
    };
    if let Some(p) = url_password {
        return found(p, Source::Url);
    }
    if let Some((p, path)) = from_file {
        return found(p, Source::File(path.to_path_buf()));
    }
    if let Some(p) = env.var("PGPASSWORD").filter(|p| !p.is_empty()) {
        return found(&Secret::new(p), Source::Env);
    }
    let path = match env.var("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match env.home() {
            Some(h) => h.join(".pgpass"),
            None => {
                return Resolved {
                    password: None,
                    note: None,
                };
            }
        },
    };
    match read_passfile(&path, target) {
        Ok(Some(p)) => found(&p, Source::PassFile(path)),
        Ok(None) => Resolved {
            password: None,
            note: None,
        },
        Err(note) => Resolved {
            password: None,
            note: Some(note),
        },
    }
}

/// The password of the first line of the password file at `path` that
/// matches `target`. `Ok(None)`: no file, or no line matches. `Err`: the
/// file was ignored (why, for the error message).
pub fn read_passfile(path: &Path, target: &Target) -> Result<Option<Secret>, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    if !meta.is_file() {
        return Err(format!(
            "password file {} ignored: not a regular file",
            path.display()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "password file {} ignored: it has group or world access (mode {mode:o}); \
             permissions should be u=rw (0600) or less, as libpq requires",
            path.display()
        ));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| format!("password file {} ignored: {e}", path.display()))?,
    );
    let text = String::from_utf8_lossy(&text);
    let port = target.port.to_string();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        let mut matched = true;
        for want in [&target.host, &port, &target.database, &target.user] {
            match field_matches(rest, want) {
                Some(r) => rest = r,
                None => {
                    matched = false;
                    break;
                }
            }
        }
        if !matched {
            continue;
        }
        let mut password = zeroize::Zeroizing::new(String::new());
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                ':' => break,
                '\\' => match chars.next() {
                    Some(n) => password.push(n),
                    None => password.push('\\'),
                },
                c => password.push(c),
            }
        }
        if password.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Secret::new(password.as_str())));
    }
    Ok(None)
}

/// libpq's `pwdfMatchesString`: `*:` matches anything; else the field,
/// with `\` escapes, must equal `want`. Returns what follows its `:`.
fn field_matches<'a>(line: &'a str, want: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut want = want.chars();
    let mut it = line.char_indices();
    while let Some((i, c)) = it.next() {
        let c = match c {
            ':' => return want.next().is_none().then(|| &line[i + 1..]),
            '\\' => it.next()?.1,
            c => c,
        };
        if want.next() != Some(c) {
            return None;
        }
    }
    None
}

/// Read `--db-password-file`: the first line without its line ending.
/// Refused when it is readable by group or others, or empty.
pub fn password_from_file(path: &Path) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: refusing a database password file that others can read (mode {mode:o}); \
             chmod 600 it",
            path.display()
        ));
    }
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{}: the password is not UTF-8", path.display()))?;
    let first = text.split('\n').next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        return Err(format!("{}: the file holds no password", path.display()));
    }
    Ok(Secret::new(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKY: &str = "Sl4sh/Pass?word#x:y@z";

    #[test]
    fn the_password_runs_to_the_last_at() {
        for (url, user, pw, rest) in [
            (
                "postgres://app:Sl4sh/Pass?word@host/db",
                "app",
                "Sl4sh/Pass?word",
                "host/db",
            ),
            (
                "postgres://app:Sl4sh/Pass?word#x:y@z@h:5433/db?sslmode=disable",
                "app",
                TRICKY,
                "h:5433/db?sslmode=disable",
            ),
            (
                "postgresql://app:Sl4sh%2FPass%3Fword%23x%3Ay%40z@h/db",
                "app",
                TRICKY,
                "h/db",
            ),
            ("postgres://a%3Ab:100%25@h", "a:b", "100%", "h"),
            ("postgres://u:50%off@h", "u", "50%off", "h"),
        ] {
            let u = PgUrl::parse(url).unwrap();
            assert_eq!(u.user(), Some(user), "{url}");
            assert_eq!(u.password().unwrap().expose(), pw, "{url}");
            assert_eq!(u.rest, rest, "{url}");
            let r = redact(url);
            assert!(
                !r.contains("Pass") && !r.contains("word") && !r.contains("off"),
                "{r}"
            );
            assert!(r.contains(":***@"), "{r}");
            assert!(!u.without_password().contains(pw), "{url}");
        }
        let u = PgUrl::parse("postgres://h:5432/db").unwrap();
        assert!(u.user().is_none() && u.password().is_none());
        let u = PgUrl::parse("postgres://app@h/db").unwrap();
        assert_eq!((u.user(), u.password().is_none()), (Some("app"), true));
        // The journal's redacted form counts as no password.
        let u = PgUrl::parse("postgres://app:***@h/db").unwrap();
        assert!(u.password().is_none());
        assert_eq!(u.without_password(), "postgres://app@h/db");
    }

    #[test]
    fn a_password_parameter_is_taken_out_of_the_url() {
        let u = PgUrl::parse("postgres://h/db?user=a&PassWord=hun%26ter2&x=1").unwrap();
        assert_eq!(u.password().unwrap().expose(), "hun&ter2");
        assert_eq!(u.without_password(), "postgres://h/db?user=a&x=1");
        let u = PgUrl::parse("postgres://app@h/db?password=p1").unwrap();
        assert_eq!(u.password().unwrap().expose(), "p1");
        assert_eq!(u.without_password(), "postgres://app@h/db");
        // The user info's password wins, as before; neither stays in the URL.
        let u = PgUrl::parse("postgres://app:p0@h/db?password=p1&sslmode=disable").unwrap();
        assert_eq!(u.password().unwrap().expose(), "p0");
        assert_eq!(u.without_password(), "postgres://app@h/db?sslmode=disable");
        // A journal's redacted parameter is no password.
        let u = PgUrl::parse("postgres://app@h/db?password=***").unwrap();
        assert!(u.password().is_none());
        assert_eq!(u.without_password(), "postgres://app@h/db");
    }

    #[test]
    fn redaction_keeps_everything_but_passwords() {
        assert_eq!(
            redact("prompttrain-db:postgres://app:hunter2@db:5432/x?sslmode=require"),
            "prompttrain-db:postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact("laravel:postgres://app:Sl4sh/Pass?word@h/db?application_name=x"),
            "laravel:postgres://app:***@h/db?application_name=x"
        );
        assert_eq!(
            redact("postgres://h/db?user=a&PassWord=hunter2&x=1"),
            "postgres://h/db?user=a&PassWord=***&x=1"
        );
        assert_eq!(
            redact("postgres://h/db?pass%77ord=hunter2"),
            "postgres://h/db?pass%77ord=***"
        );
        assert_eq!(redact("postgres://app@h/db"), "postgres://app@h/db");
        // An unencoded `@` in a parameter is not user info; the value of a
        // password parameter is still hidden whole.
        assert_eq!(
            redact("postgres://h/db?password=p@ss&x=1"),
            "postgres://h/db?password=***&x=1"
        );
        assert_eq!(redact("dotenv:.env"), "dotenv:.env");
    }

    fn target() -> Target {
        Target {
            host: "db.example".into(),
            port: 5432,
            database: "app".into(),
            user: "app".into(),
        }
    }

    fn passfile(dir: &Path, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("pgpass");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn pgpass_follows_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# comment\n\
                    other:5432:app:app:wrong-host\n\
                    db.example:5433:app:app:wrong-port\n\
                    db.example:*:app:app:p\\:w\\\\1:ignored\n\
                    *:*:*:*:fallback\n";
        let p = passfile(dir.path(), text, 0o600);
        assert_eq!(
            read_passfile(&p, &target()).unwrap().unwrap().expose(),
            "p:w\\1"
        );
        let mut t = target();
        t.user = "someone".into();
        assert_eq!(read_passfile(&p, &t).unwrap().unwrap().expose(), "fallback");
        let p = passfile(dir.path(), "db.example:5432:app:app:x\n", 0o600);
        let mut t = target();
        t.database = "other".into();
        assert!(read_passfile(&p, &t).unwrap().is_none());
        assert!(
            read_passfile(&dir.path().join("missing"), &t)
                .unwrap()
                .is_none()
        );
        // Escaped colon in a host field.
        let p = passfile(dir.path(), "fe80\\:\\:1:5432:app:app:v6\n", 0o600);
        let mut t = target();
        t.host = "fe80::1".into();
        assert_eq!(read_passfile(&p, &t).unwrap().unwrap().expose(), "v6");
    }

    #[test]
    fn pgpass_readable_by_others_is_ignored_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let p = passfile(dir.path(), "*:*:*:*:secret-in-lax-file\n", mode);
            let e = read_passfile(&p, &target()).unwrap_err();
            assert!(
                e.contains("0600") && e.contains(&format!("{mode:o}")),
                "{e}"
            );
            assert!(!e.contains("secret-in-lax-file"));
        }
    }

    struct FakeEnv(Vec<(&'static str, String)>, Option<PathBuf>);
    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
        fn home(&self) -> Option<PathBuf> {
            self.1.clone()
        }
    }

    #[test]
    fn sources_in_order_url_file_env_passfile() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        passfile(&home, "", 0o600);
        std::fs::rename(home.join("pgpass"), home.join(".pgpass")).unwrap();
        std::fs::write(home.join(".pgpass"), "*:*:*:*:from-pgpass\n").unwrap();
        let url = Secret::new("from-url");
        let file = Secret::new("from-file");
        let fp = dir.path().join("pw");
        let both = FakeEnv(vec![("PGPASSWORD", "from-env".into())], Some(home.clone()));
        let pick = |u: Option<&Secret>, f: Option<(&Secret, &Path)>, env: &FakeEnv| {
            resolve_password(u, f, &target(), env)
                .password
                .map(|(s, _)| s.expose().to_string())
        };
        assert_eq!(
            pick(Some(&url), Some((&file, &fp)), &both).unwrap(),
            "from-url"
        );
        assert_eq!(pick(None, Some((&file, &fp)), &both).unwrap(), "from-file");
        assert_eq!(pick(None, None, &both).unwrap(), "from-env");
        let no_env = FakeEnv(vec![], Some(home.clone()));
        assert_eq!(pick(None, None, &no_env).unwrap(), "from-pgpass");
        let other = passfile(dir.path(), "*:*:*:*:from-PGPASSFILE\n", 0o600);
        let env = FakeEnv(
            vec![("PGPASSFILE", other.display().to_string())],
            Some(home.clone()),
        );
        assert_eq!(pick(None, None, &env).unwrap(), "from-PGPASSFILE");
        assert!(pick(None, None, &FakeEnv(vec![], None)).is_none());
    }

    #[test]
    fn password_files_are_refused_when_others_can_read_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, format!("{TRICKY}\r\nsecond line\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(password_from_file(&p).unwrap().expose(), TRICKY);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = password_from_file(&p).unwrap_err();
        assert!(e.contains("640") && !e.contains("Pass"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(password_from_file(&p).is_err());
    }
}
