//! `dotenv:PATH`: a `.env` file, edited in place.
//!
//! Reading understands what real `.env` files hold: comments, blank lines,
//! `export` prefixes, single and double quotes (a `#` inside quotes is part of
//! the value), inline ` # comments` after unquoted values, escapes in double
//! quotes (`\n \r \t \" \\`), quoted values spanning lines, CRLF line endings
//! and a UTF-8 BOM.
//!
//! Ids are `env/<KEY>`. A write changes only the lines it must: an existing
//! key gets its value replaced in place (keeping `export`, the spacing around
//! `=`, the quoting style where it is safe for the value, and an inline
//! comment); a new key is appended at the end. The file keeps its line ending and BOM.
//!
//! Ids outside `env/` (and `env/` ids whose kind or metadata a bare line cannot
//! carry) are stored under a sanitized UPPER_SNAKE key with a marker comment
//! right above it: `# credshift: {"id":...,"kind":...,"metadata":{...}}`. The
//! marker never holds the secret; it makes id, kind and metadata survive a
//! round trip, so this store keeps metadata.
//!
//! Values are written so that `source`ing the file in a shell yields the
//! exact value and runs nothing, whatever the line's old quoting: bare,
//! single quotes (newlines literal), double quotes only for values nothing
//! in which is special, and `'\''` for a quote inside single quotes (see
//! `encode_value`). A value no quoting can carry (a NUL byte) is refused.
//!
//! A key assigned more than once is reported (a finding naming the key and
//! its lines); the last assignment is the one read, migrated and, on
//! delete, removed; the others stay and the delete says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialId, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::{
    Capability, Entry, Listing, LocationError, OpenOptions, Scan, Store, StoreSpec,
    plaintext_file_warnings,
};

const MARKER_PREFIX: &str = "credshift:";

pub fn open(spec: &StoreSpec, _opts: &OpenOptions) -> Result<Box<dyn Store>> {
    let StoreSpec::Dotenv(path) = spec else {
        return Err(StoreError::Other(format!("{spec} is not a dotenv spec")));
    };
    Ok(Box::new(DotenvStore {
        spec: spec.clone(),
        path: path.clone(),
        lock: Mutex::new(()),
    }))
}

pub struct DotenvStore {
    spec: StoreSpec,
    path: PathBuf,
    /// Serializes read-modify-write cycles within this process.
    lock: Mutex<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// What a marker comment carries. Never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    id: CredentialId,
    kind: Kind,
    #[serde(default)]
    metadata: Metadata,
}

/// One `KEY=value` assignment, possibly spanning several physical lines.
struct Assignment {
    /// First and one-past-last physical line.
    start: usize,
    end: usize,
    /// Line index of the marker comment right above, when there is one.
    marker_line: Option<usize>,
    key: String,
    /// Everything before the value: indentation, `export `, key, ` = `.
    prefix: String,
    /// Everything after the value: spacing and an inline comment.
    suffix: String,
    quote: Quote,
    value: Secret,
    id: CredentialId,
    kind: Kind,
    metadata: Metadata,
}

impl Assignment {
    fn credential(&self) -> Credential {
        Credential {
            id: self.id.clone(),
            kind: self.kind,
            secret: self.value.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// A parsed file: its physical lines and what they mean.
struct Doc {
    bom: bool,
    crlf: bool,
    trailing_newline: bool,
    lines: Vec<Zeroizing<String>>,
    assignments: Vec<Assignment>,
    /// Indexes into `assignments`, ascending: every assignment of an id,
    /// and every assignment under a key. They make lookups O(1), so listing
    /// and batches stay linear in the file's size.
    by_id: HashMap<CredentialId, Vec<usize>>,
    by_key: HashMap<String, Vec<usize>>,
    errors: Vec<LocationError>,
}

impl Doc {
    fn empty() -> Doc {
        Doc {
            bom: false,
            crlf: false,
            trailing_newline: true,
            lines: Vec::new(),
            assignments: Vec::new(),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            errors: Vec::new(),
        }
    }

    fn parse(path: &Path, bytes: Vec<u8>) -> Result<Doc> {
        let bom = bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
        let text = Zeroizing::new(fsutil::decode_text(path, bytes)?);
        let crlf = text.contains("\r\n");
        let trailing_newline = text.is_empty() || text.ends_with('\n');
        let mut lines: Vec<Zeroizing<String>> = text
            .split('\n')
            .map(|l| Zeroizing::new(l.strip_suffix('\r').unwrap_or(l).to_string()))
            .collect();
        if trailing_newline {
            // `split` yields an empty piece after the final newline.
            lines.pop();
        }
        let mut doc = Doc {
            bom,
            crlf,
            trailing_newline,
            lines,
            assignments: Vec::new(),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            errors: Vec::new(),
        };
        doc.analyse(path);
        Ok(doc)
    }

    /// (Re)build `assignments`, their indexes and `errors` from `lines`.
    fn analyse(&mut self, path: &Path) {
        self.assignments.clear();
        self.by_id.clear();
        self.by_key.clear();
        self.errors.clear();
        let loc = |i: usize| format!("{}:{}", path.display(), i + 1);
        let mut pending: Option<(usize, Marker)> = None;
        let mut i = 0;
        while i < self.lines.len() {
            let line = self.lines[i].as_str();
            let trimmed = line.trim_start();
            if trimmed.is_empty() {
                pending = None;
                i += 1;
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix('#') {
                pending = None;
                if let Some(json) = comment.trim_start().strip_prefix(MARKER_PREFIX) {
                    match serde_json::from_str::<Marker>(json.trim()) {
                        Ok(m) => pending = Some((i, m)),
                        Err(e) => self.errors.push(LocationError {
                            location: loc(i),
                            error: format!("credshift marker comment ignored: {}", json_reason(&e)),
                        }),
                    }
                }
                i += 1;
                continue;
            }
            match parse_assignment(&self.lines, i) {
                Ok(parsed) => {
                    let (id, kind, metadata, marker_line) = match pending.take() {
                        Some((m_line, m)) => (m.id, m.kind, m.metadata, Some(m_line)),
                        None => (
                            CredentialId::new("env", parsed.key.clone()),
                            Kind::guess(&parsed.key),
                            Metadata::new(),
                            None,
                        ),
                    };
                    let end = parsed.end;
                    self.push(Assignment {
                        start: i,
                        end,
                        marker_line,
                        key: parsed.key,
                        prefix: parsed.prefix,
                        suffix: parsed.suffix,
                        quote: parsed.quote,
                        value: parsed.value,
                        id,
                        kind,
                        metadata,
                    });
                    i = end;
                }
                Err(reason) => {
                    pending = None;
                    self.errors.push(LocationError {
                        location: loc(i),
                        error: reason.to_string(),
                    });
                    i += 1;
                }
            }
        }
    }

    /// Append an assignment and index it.
    fn push(&mut self, a: Assignment) {
        let n = self.assignments.len();
        self.by_id.entry(a.id.clone()).or_default().push(n);
        self.by_key.entry(a.key.clone()).or_default().push(n);
        self.assignments.push(a);
    }

    /// Index of the assignment that holds `id` (the last one wins, as in a shell).
    fn find(&self, id: &CredentialId) -> Option<usize> {
        self.by_id.get(id).and_then(|v| v.last().copied())
    }

    /// The credential `id` holds, when it is there.
    fn credential(&self, id: &CredentialId) -> Option<Credential> {
        self.find(id).map(|n| self.assignments[n].credential())
    }

    /// The effective credentials: one per id, the last assignment winning.
    fn credentials(&self) -> Vec<Credential> {
        self.assignments
            .iter()
            .enumerate()
            .filter(|(n, a)| self.find(&a.id) == Some(*n))
            .map(|(_, a)| a.credential())
            .collect()
    }

    fn key_in_use_by_other(&self, key: &str, id: &CredentialId) -> bool {
        self.by_key
            .get(key)
            .is_some_and(|v| v.iter().any(|&n| &self.assignments[n].id != id))
    }

    /// Apply one write to the lines. Returns whether the assignment list
    /// is still accurate; when it is not (lines shifted), the caller
    /// re-analyses before the next edit.
    fn set(&mut self, c: &Credential) -> Result<bool> {
        if let Some(why) = unwritable(c.secret.expose()) {
            return Err(StoreError::item(&c.id, why));
        }
        if let Some(n) = self.find(&c.id) {
            let a = &self.assignments[n];
            let marker = if needs_marker(c, &a.key) {
                Some(Zeroizing::new(marker_line_for(c)?))
            } else {
                None
            };
            let encoded = encode_value(c.secret.expose(), a.quote);
            let new_line = Zeroizing::new(format!("{}{}{}", a.prefix, encoded.as_str(), a.suffix));
            let (start, end, marker_line) = (a.start, a.end, a.marker_line);
            let same_shape = end - start == 1 && marker_line.is_some() == marker.is_some();
            self.lines.splice(start..end, std::iter::once(new_line));
            match (marker_line, marker) {
                (Some(m), Some(line)) => self.lines[m] = line,
                (Some(m), None) => {
                    self.lines.remove(m);
                }
                (None, Some(line)) => self.lines.insert(start, line),
                (None, None) => {}
            }
            if same_shape {
                let a = &mut self.assignments[n];
                a.value = c.secret.clone();
                a.kind = c.kind;
                a.metadata = c.metadata.clone();
                a.quote = quote_of(&encoded);
            }
            Ok(same_shape)
        } else {
            let key = self.choose_key(&c.id);
            let encoded = encode_value(c.secret.expose(), Quote::None);
            let marker_line = if needs_marker(c, &key) {
                self.lines.push(Zeroizing::new(marker_line_for(c)?));
                Some(self.lines.len() - 1)
            } else {
                None
            };
            let prefix = format!("{key}=");
            self.lines
                .push(Zeroizing::new(format!("{prefix}{}", encoded.as_str())));
            self.trailing_newline = true;
            self.push(Assignment {
                start: self.lines.len() - 1,
                end: self.lines.len(),
                marker_line,
                key,
                prefix,
                suffix: String::new(),
                quote: quote_of(&encoded),
                value: c.secret.clone(),
                id: c.id.clone(),
                kind: c.kind,
                metadata: c.metadata.clone(),
            });
            Ok(true)
        }
    }

    /// Ids assigned more than once: a finding for the dry run naming the
    /// key and its lines (never a value). The last assignment is the one a
    /// shell uses, so it is the one migrated and the only one cleanup removes.
    fn duplicates(&self, path: &Path) -> Vec<LocationError> {
        let mut lines: std::collections::HashMap<&CredentialId, Vec<usize>> =
            std::collections::HashMap::new();
        let mut order: Vec<&CredentialId> = Vec::new();
        for a in &self.assignments {
            let e = lines.entry(&a.id).or_default();
            if e.is_empty() {
                order.push(&a.id);
            }
            e.push(a.start + 1);
        }
        order
            .into_iter()
            .filter_map(|id| {
                let at = &lines[id];
                let (last, earlier) = at.split_last()?;
                if earlier.is_empty() {
                    return None;
                }
                let key = &self.assignments[self.find(id)?].key;
                Some(LocationError {
                    location: format!("{}:{}", path.display(), at[0]),
                    error: format!(
                        "warning: {key} is assigned {} times (lines {}): line {last}, the value a \
                         shell uses, is the one migrated and the only one --delete-source \
                         removes; line(s) {} stay",
                        at.len(),
                        join_lines(at),
                        join_lines(earlier)
                    ),
                })
            })
            .collect()
    }

    /// The key a new id is stored under: the name itself for `env/NAME` when
    /// it is a valid key, else a sanitized UPPER_SNAKE form; never a key that
    /// already belongs to another id.
    fn choose_key(&self, id: &CredentialId) -> String {
        let base = if id.namespace == "env" && valid_key(&id.name) {
            id.name.clone()
        } else {
            sanitize_key(&id.to_string())
        };
        if !self.key_in_use_by_other(&base, id) {
            return base;
        }
        (2..)
            .map(|n| format!("{base}_{n}"))
            .find(|k| !self.key_in_use_by_other(k, id))
            .unwrap_or(base)
    }

    fn render(&self) -> Zeroizing<Vec<u8>> {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut out = Zeroizing::new(Vec::new());
        if self.bom {
            out.extend_from_slice(&[0xEF, 0xBB, 0xBF]);
        }
        for (i, l) in self.lines.iter().enumerate() {
            out.extend_from_slice(l.as_bytes());
            if i + 1 < self.lines.len() || self.trailing_newline {
                out.extend_from_slice(eol.as_bytes());
            }
        }
        out
    }
}

fn join_lines(lines: &[usize]) -> String {
    lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A marker is needed unless the bare line says everything: an `env/KEY` id
/// stored under KEY, the kind the key name suggests, no metadata.
fn needs_marker(c: &Credential, key: &str) -> bool {
    !(c.id.namespace == "env"
        && c.id.name == key
        && c.kind == Kind::guess(key)
        && c.metadata.is_empty())
}

fn marker_line_for(c: &Credential) -> Result<String> {
    let m = Marker {
        id: c.id.clone(),
        kind: c.kind,
        metadata: crate::scrub::public(&c.metadata),
    };
    let json = serde_json::to_string(&m)
        .map_err(|_| StoreError::item(&c.id, "metadata cannot be written as JSON"))?;
    Ok(format!("# {MARKER_PREFIX} {json}"))
}

/// serde_json's message can quote input; keep only the category and position.
fn json_reason(e: &serde_json::Error) -> String {
    format!(
        "malformed JSON at column {} ({})",
        e.column(),
        match e.classify() {
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "ends too early",
            _ => "syntax",
        }
    )
}

/// Keys as real `.env` readers accept them.
pub(crate) fn valid_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `account:acc_alpha/api_key` -> `ACCOUNT_ACC_ALPHA_API_KEY`.
fn sanitize_key(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() {
        return "CREDSHIFT_SECRET".into();
    }
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{trimmed}")
    } else {
        trimmed.to_string()
    }
}

struct Parsed {
    end: usize,
    key: String,
    prefix: String,
    suffix: String,
    quote: Quote,
    value: Secret,
}

/// Parse the assignment starting at physical line `i`. Errors never quote
/// the line (it may hold a secret).
fn parse_assignment(lines: &[Zeroizing<String>], i: usize) -> Result<Parsed, &'static str> {
    let line = lines[i].as_str();
    let indent = line.len() - line.trim_start().len();
    let mut rest = &line[indent..];
    if let Some(after) = rest.strip_prefix("export")
        && after.starts_with([' ', '\t'])
    {
        rest = after.trim_start();
    }
    let key_len = rest.find(['=', ' ', '\t']).unwrap_or(rest.len());
    let key = &rest[..key_len];
    if key.is_empty() {
        return Err("not a KEY=VALUE line");
    }
    if !valid_key(key) {
        return Err("not a KEY=VALUE line (invalid key name)");
    }
    let after_key = rest[key_len..].trim_start_matches([' ', '\t']);
    let Some(after_eq) = after_key.strip_prefix('=') else {
        return Err("not a KEY=VALUE line (no '=')");
    };
    let value_text = after_eq.trim_start_matches([' ', '\t']);
    let prefix_len = line.len() - value_text.len();
    let prefix = line[..prefix_len].to_string();

    if let Some(body) = value_text.strip_prefix("$'") {
        return parse_ansi_c(body, i, key, prefix);
    }
    let (quote, opening) = match value_text.chars().next() {
        Some('"') => (Quote::Double, '"'),
        Some('\'') => (Quote::Single, '\''),
        _ => {
            let cut = inline_comment_start(value_text).unwrap_or(value_text.len());
            let value = value_text[..cut].trim_end();
            return Ok(Parsed {
                end: i + 1,
                key: key.to_string(),
                prefix,
                suffix: value_text[value.len()..].to_string(),
                quote: Quote::None,
                value: Secret::new(value),
            });
        }
    };

    // A quoted value may continue over following lines until its closing quote.
    let mut value = Zeroizing::new(String::new());
    let mut text: &str = &value_text[1..];
    let mut line_no = i;
    loop {
        let mut chars = text.char_indices();
        let mut closed_at = None;
        while let Some((pos, c)) = chars.next() {
            if c == opening {
                closed_at = Some(pos);
                break;
            }
            if c == '\\' && quote == Quote::Double {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, e @ ('"' | '\\' | '\''))) => value.push(e),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(c);
        }
        if let Some(pos) = closed_at {
            // `'\''` inside single quotes: close, an escaped quote, reopen
            // (how a shell, and credshift, write a quote in a quoted value).
            if quote == Quote::Single && text[pos + 1..].starts_with("\\''") {
                value.push('\'');
                text = &text[pos + 4..];
                continue;
            }
            let suffix = &text[pos + 1..];
            let after = suffix.trim_start_matches([' ', '\t']);
            if !after.is_empty() && !after.starts_with('#') {
                return Err("unexpected text after the closing quote");
            }
            return Ok(Parsed {
                end: line_no + 1,
                key: key.to_string(),
                prefix,
                suffix: suffix.to_string(),
                quote,
                value: Secret::new(value.as_str()),
            });
        }
        line_no += 1;
        if line_no >= lines.len() {
            return Err(if quote == Quote::Double {
                "unclosed double quote"
            } else {
                "unclosed single quote"
            });
        }
        value.push('\n');
        text = lines[line_no].as_str();
    }
}

/// Byte offset of an inline comment in an unquoted value: a `#` preceded by
/// a space or tab.
fn inline_comment_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (1..b.len()).find(|&i| b[i] == b'#' && (b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

/// The style an encoded value was written in.
fn quote_of(encoded: &str) -> Quote {
    match encoded.chars().next() {
        Some('\'') => Quote::Single,
        Some('"') => Quote::Double,
        _ => Quote::None,
    }
}

fn plain_ok(v: &str) -> bool {
    !v.is_empty()
        && !v.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '#' | '\\' | '$' | '`')
        })
}

/// Why no quoting can carry `v` exactly, when none can.
fn unwritable(v: &str) -> Option<&'static str> {
    v.contains('\0')
        .then_some("the value holds a NUL byte, which no .env quoting can carry")
}

/// A shell's `$'...'` (ANSI-C quoting) on one line: `\\ \' \" \n \r \t
/// \xHH`; any other escape is kept as written, as a shell does.
fn parse_ansi_c(body: &str, i: usize, key: &str, prefix: String) -> Result<Parsed, &'static str> {
    let mut value = Zeroizing::new(String::new());
    let mut chars = body.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        match c {
            '\'' => {
                let suffix = &body[pos + 1..];
                let after = suffix.trim_start_matches([' ', '\t']);
                if !after.is_empty() && !after.starts_with('#') {
                    return Err("unexpected text after the closing quote");
                }
                return Ok(Parsed {
                    end: i + 1,
                    key: key.to_string(),
                    prefix,
                    suffix: suffix.to_string(),
                    quote: Quote::Single,
                    value: Secret::new(value.as_str()),
                });
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, 't')) => value.push('\t'),
                Some((_, e @ ('\\' | '\'' | '"'))) => value.push(e),
                Some((_, 'x')) => {
                    let mut n = 0u32;
                    let mut digits = 0;
                    while digits < 2
                        && let Some(d) = chars.peek().and_then(|(_, d)| d.to_digit(16))
                    {
                        n = n * 16 + d;
                        digits += 1;
                        chars.next();
                    }
                    match char::from_u32(n) {
                        Some(ch) if digits > 0 && n < 0x80 => value.push(ch),
                        _ => return Err("unsupported \\x escape in $'...'"),
                    }
                }
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return Err("unclosed $'...' quote"),
            },
            c => value.push(c),
        }
    }
    Err("unclosed $'...' quote")
}

/// The value as it goes into the file. Every form here reads back as the
/// exact value when the file is `source`d by a shell (nothing expands,
/// nothing runs) and when credshift reads it; the first three also read
/// back exactly in python-dotenv and Node's dotenv:
///
/// 1. bare, for values of plain characters (kept in double quotes when the
///    existing line had them);
/// 2. single quotes, for any value without a `'` (no reader expands or
///    unescapes inside them; newlines stay literal);
/// 3. double quotes, for a value with a `'` but no `"`, `$`, backquote or
///    backslash (nothing in it is special to any reader);
/// 4. a value with a carriage return: a shell's `$'...'` with escapes (a
///    file's line ends would swallow a literal one);
/// 5. otherwise single quotes with `'\''` for each quote, the shell's own
///    way. python-dotenv and Node's dotenv have no form in common with a
///    shell for such values (Node's reads no escapes at all).
///
/// Callers check [`unwritable`] first.
fn encode_value(v: &str, preferred: Quote) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(v.len() + 8));
    if v.contains('\r') {
        out.push_str("$'");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('\'');
    } else if plain_ok(v) {
        match preferred {
            Quote::None => out.push_str(v),
            Quote::Single => {
                out.push('\'');
                out.push_str(v);
                out.push('\'');
            }
            Quote::Double => {
                out.push('"');
                out.push_str(v);
                out.push('"');
            }
        }
    } else if !v.contains('\'') {
        out.push('\'');
        out.push_str(v);
        out.push('\'');
    } else if !v.contains(['"', '$', '`', '\\']) {
        out.push('"');
        out.push_str(v);
        out.push('"');
    } else {
        out.push('\'');
        for c in v.chars() {
            if c == '\'' {
                out.push_str("'\\''");
            } else {
                out.push(c);
            }
        }
        out.push('\'');
    }
    out
}

/// True when the directory lets this process create and rename files.
pub(crate) fn dir_writable(dir: &Path) -> bool {
    access(dir, libc::W_OK | libc::X_OK)
}

pub(crate) fn access(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// The nearest existing ancestor of `path` (where a new file would go).
pub(crate) fn nearest_existing_dir(path: &Path) -> PathBuf {
    let mut dir = fsutil::parent_dir(path);
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    dir
}

impl DotenvStore {
    /// The parsed file, or `None` when it does not exist.
    fn load(&self) -> Result<Option<Doc>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Doc::parse(&self.path, bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&self.path, e)),
        }
    }

    fn load_existing(&self) -> Result<Doc> {
        self.load()?.ok_or_else(|| StoreError::NotFound {
            location: self.path.display().to_string(),
            hint: "no such .env file".into(),
        })
    }

    fn save(&self, doc: &Doc) -> Result<()> {
        fsutil::atomic_write(&self.path, &doc.render())
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for DotenvStore {
    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// Every batch rewrites the whole file.
    fn batch_hint(&self) -> crate::store::BatchHint {
        crate::store::BatchHint::WholeFile
    }

    fn probe(&self) -> Capability {
        let mut cap = Capability::persistent_store(false, true);
        match self.load() {
            Ok(Some(doc)) => {
                cap.exists = true;
                cap.item_count = Some(doc.credentials().len());
                cap.writable =
                    access(&self.path, libc::W_OK) && dir_writable(&fsutil::parent_dir(&self.path));
                cap.warnings = plaintext_file_warnings(&self.path);
                cap.warnings.extend(
                    doc.duplicates(&self.path)
                        .into_iter()
                        .map(|d| format!("{}: {}", d.location, d.error)),
                );
                if !doc.errors.is_empty() {
                    cap.warnings.push(format!(
                        "{}: {} line(s) could not be read",
                        self.path.display(),
                        doc.errors.len()
                    ));
                }
            }
            Ok(None) => {
                cap.exists = false;
                cap.item_count = Some(0);
                cap.writable = dir_writable(&nearest_existing_dir(&self.path));
            }
            Err(e) => {
                cap.exists = self.path.exists();
                cap.readable = false;
                cap.reason = Some(e.to_string());
                cap.available = false;
            }
        }
        if !cap.writable && cap.available {
            cap.warnings
                .push(format!("{} cannot be written here", self.path.display()));
        }
        cap
    }

    fn list(&self) -> Result<Listing> {
        let doc = self.load_existing()?;
        let mut errors = doc.duplicates(&self.path);
        errors.extend(doc.errors.iter().cloned());
        Ok(Listing {
            entries: doc.credentials().iter().map(Entry::from).collect(),
            errors,
        })
    }

    fn read(&self, id: &CredentialId) -> Result<Option<Credential>> {
        // A file that is not there yet holds nothing (a fresh target).
        let Some(doc) = self.load()? else {
            return Ok(None);
        };
        Ok(doc.credential(id))
    }

    /// One parse for the whole batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        match self.load() {
            Ok(Some(doc)) => ids.iter().map(|id| Ok(doc.credential(id))).collect(),
            Ok(None) => ids.iter().map(|_| Ok(None)).collect(),
            Err(e) => ids
                .iter()
                .map(|_| Err(crate::store::encrypted::dup_error(&e)))
                .collect(),
        }
    }

    fn read_all(&self) -> Result<Scan> {
        let doc = self.load_existing()?;
        let mut errors = doc.duplicates(&self.path);
        errors.extend(doc.errors.iter().cloned());
        Ok(Scan {
            credentials: doc.credentials(),
            errors,
        })
    }

    fn check(&self, c: &Credential) -> Option<String> {
        unwritable(c.secret.expose()).map(str::to_string)
    }

    fn write(&self, c: &Credential) -> Result<()> {
        self.write_many(std::slice::from_ref(c))
            .pop()
            .unwrap_or(Ok(()))
    }

    /// One parse and one atomic rewrite for the whole batch.
    fn write_many(&self, creds: &[Credential]) -> Vec<Result<()>> {
        let _g = self.guard();
        let mut doc = match self.load() {
            Ok(Some(d)) => d,
            Ok(None) => Doc::empty(),
            Err(e) => {
                let msg = e.to_string();
                return creds
                    .iter()
                    .map(|c| Err(StoreError::item(&c.id, msg.clone())))
                    .collect();
            }
        };
        let mut results: Vec<Result<()>> = Vec::with_capacity(creds.len());
        for c in creds {
            let r = doc.set(c);
            if matches!(r, Ok(false)) {
                doc.analyse(&self.path);
            }
            results.push(r.map(|_| ()));
        }
        if results.iter().any(|r| r.is_ok())
            && let Err(e) = self.save(&doc)
        {
            let msg = e.to_string();
            for (r, c) in results.iter_mut().zip(creds) {
                if r.is_ok() {
                    *r = Err(StoreError::item(&c.id, msg.clone()));
                }
            }
        }
        results
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(false))
    }

    /// One parse and at most one atomic rewrite for the whole batch.
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        let _g = self.guard();
        let mut doc = match self.load() {
            Ok(Some(d)) => d,
            Ok(None) => return ids.iter().map(|_| Ok(false)).collect(),
            Err(e) => {
                return ids
                    .iter()
                    .map(|_| Err(crate::store::encrypted::dup_error(&e)))
                    .collect();
            }
        };
        // Each id loses the assignment `find` reads (the one a shell uses,
        // the one migrated and verified) and its marker; earlier assignments
        // of the id stay, and the id's result says so. As one `delete` per
        // id would, in order (a repeated id removes the next earlier one),
        // with the line numbers each such call would report, but with one
        // parse and one rewrite.
        let mut doomed: Vec<usize> = Vec::new();
        let line_now = |line: usize, doomed: &[usize]| -> usize {
            line - doomed.iter().filter(|&&d| d < line).count() + 1
        };
        let mut results: Vec<Result<bool>> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(n) = doc.by_id.get_mut(id).and_then(|v| v.pop()) else {
                results.push(Ok(false));
                continue;
            };
            let a = &doc.assignments[n];
            let removed = line_now(a.start, &doomed);
            let others: Vec<usize> = doc.by_id[id]
                .iter()
                .map(|&o| line_now(doc.assignments[o].start, &doomed))
                .collect();
            doomed.extend(a.start..a.end);
            doomed.extend(a.marker_line);
            results.push(if others.is_empty() {
                Ok(true)
            } else {
                // The id is still in the file, with a value that was never
                // migrated: not "deleted", and the message says what stayed.
                Err(StoreError::item(
                    id,
                    format!(
                        "removed line {removed} of {} (the value that was migrated); the same \
                         key is also assigned on line(s) {}, which stay (that value was not \
                         migrated)",
                        self.path.display(),
                        join_lines(&others)
                    ),
                ))
            });
        }
        if doomed.is_empty() {
            return results;
        }
        let mut gone = vec![false; doc.lines.len()];
        for d in doomed {
            gone[d] = true;
        }
        let mut i = 0;
        doc.lines.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        match self.save(&doc) {
            Ok(()) => results,
            Err(e) => ids
                .iter()
                .map(|_| Err(crate::store::encrypted::dup_error(&e)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_at(path: &Path) -> Box<dyn Store> {
        open(
            &StoreSpec::Dotenv(path.to_path_buf()),
            &OpenOptions::default(),
        )
        .unwrap()
    }

    fn value_of(store: &dyn Store, id: &str) -> Option<String> {
        store
            .read(&id.parse().unwrap())
            .unwrap()
            .map(|c| c.secret.expose().to_string())
    }

    const SAMPLE: &str = "# app\n\
        PLAIN=abc#notacomment\n\
        export EXPORTED=\"with # hash\"   # trailing comment\n\
        SINGLE='it''s'\n\
        SPACED = spaced value   # comment\n\
        ESCAPED=\"line1\\nline2\\t\\\"q\\\" \\\\ end\"\n\
        MULTI=\"first\n\
        second\"\n\
        EMPTY=\n\
        garbage line\n\
        LAST='x'";

    #[test]
    fn parses_the_usual_forms() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(&p, SAMPLE).unwrap();
        let s = store_at(&p);
        assert_eq!(value_of(&*s, "env/PLAIN").unwrap(), "abc#notacomment");
        assert_eq!(value_of(&*s, "env/EXPORTED").unwrap(), "with # hash");
        assert_eq!(value_of(&*s, "env/SPACED").unwrap(), "spaced value");
        assert_eq!(
            value_of(&*s, "env/ESCAPED").unwrap(),
            "line1\nline2\t\"q\" \\ end"
        );
        assert_eq!(value_of(&*s, "env/MULTI").unwrap(), "first\nsecond");
        assert_eq!(value_of(&*s, "env/EMPTY").unwrap(), "");
        assert_eq!(value_of(&*s, "env/LAST").unwrap(), "x");
        // `'it''s'` has text after the closing quote: an error, not a guess.
        let listing = s.list().unwrap();
        let bad: Vec<_> = listing.errors.iter().map(|e| e.location.clone()).collect();
        let file = p.display().to_string();
        assert_eq!(bad, vec![format!("{file}:4"), format!("{file}:10")]);
        assert!(value_of(&*s, "env/SINGLE").is_none());
    }

    #[test]
    fn write_replaces_in_place_and_keeps_style() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(
            &p,
            "# top\nexport A=\"old\"  # keep me\nB='old'\nC=old\n# bottom\n",
        )
        .unwrap();
        let s = store_at(&p);
        for (k, v) in [("A", "new"), ("B", "new"), ("C", "new")] {
            s.write(&Credential::new(
                CredentialId::new("env", k),
                Kind::guess(k),
                v,
            ))
            .unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "# top\nexport A=\"new\"  # keep me\nB='new'\nC=new\n# bottom\n"
        );
        // A value the style cannot hold switches to one that can.
        s.write(&Credential::new(
            CredentialId::new("env", "B"),
            Kind::Other,
            "it's",
        ))
        .unwrap();
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("B=\"it's\"\n")
        );
    }

    #[test]
    fn crlf_and_bom_survive_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(&p, b"\xEF\xBB\xBFA=1\r\n# c\r\nB=2\r\n").unwrap();
        let s = store_at(&p);
        assert_eq!(value_of(&*s, "env/A").unwrap(), "1");
        assert_eq!(value_of(&*s, "env/B").unwrap(), "2");
        s.write(&Credential::new(
            CredentialId::new("env", "C"),
            Kind::Other,
            "3",
        ))
        .unwrap();
        s.delete(&CredentialId::new("env", "A")).unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"\xEF\xBB\xBF# c\r\nB=2\r\nC=3\r\n"
        );
    }

    #[test]
    fn foreign_ids_get_a_marker_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        let s = store_at(&p);
        let mut meta = Metadata::new();
        meta.insert("expires_at".into(), 1790003600000i64.into());
        let c = Credential::new(
            "account:acc_alpha/oauth_access_token".parse().unwrap(),
            Kind::OauthAccess,
            "sk-ant-oat01-secret-value",
        )
        .with_metadata(meta.clone());
        s.write(&c).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("ACCOUNT_ACC_ALPHA_OAUTH_ACCESS_TOKEN="),
            "{text}"
        );
        let marker = text
            .lines()
            .find(|l| l.starts_with("# credshift:"))
            .unwrap();
        assert!(!marker.contains("secret-value"));
        let back = s.read(&c.id).unwrap().unwrap();
        assert!(back.same_as(&c));
        assert!(s.delete(&c.id).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn sanitized_keys_never_collide() {
        assert_eq!(
            sanitize_key("train:team-a/client_key/0"),
            "TRAIN_TEAM_A_CLIENT_KEY_0"
        );
        assert_eq!(sanitize_key("1x/y"), "_1X_Y");
        assert_eq!(sanitize_key("ключ/ключ"), "CREDSHIFT_SECRET");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        let s = store_at(&p);
        let a = Credential::new("a:b/c".parse().unwrap(), Kind::Other, "1");
        let b = Credential::new("a/b:c".parse().unwrap(), Kind::Other, "2");
        s.write(&a).unwrap();
        s.write(&b).unwrap();
        assert_eq!(value_of(&*s, "a:b/c").unwrap(), "1");
        assert_eq!(value_of(&*s, "a/b:c").unwrap(), "2");
    }

    #[test]
    fn encoding_picks_a_style_that_holds_the_value() {
        let table = [
            ("abc", Quote::None, "abc"),
            ("abc", Quote::Single, "'abc'"),
            ("x", Quote::Double, "\"x\""),
            ("", Quote::None, "''"),
            ("a b", Quote::None, "'a b'"),
            ("$HOME", Quote::None, "'$HOME'"),
            // Never double quotes for what a shell would expand or run.
            ("Xy9$HOME`id`Qz", Quote::Double, "'Xy9$HOME`id`Qz'"),
            ("a\\b", Quote::Double, "'a\\b'"),
            ("say \"hi\"", Quote::Double, "'say \"hi\"'"),
            ("it's", Quote::None, "\"it's\""),
            ("it's", Quote::Single, "\"it's\""),
            ("a\nb", Quote::Double, "'a\nb'"),
            ("it's $HOME", Quote::Double, "'it'\\''s $HOME'"),
            ("'\\''", Quote::None, "''\\''\\'\\'''\\'''"),
            ("a\r\nb's\\", Quote::None, "$'a\\r\\nb\\'s\\\\'"),
        ];
        for (value, style, want) in table {
            assert_eq!(encode_value(value, style).as_str(), want, "{value:?}");
        }
    }

    #[test]
    fn every_encoding_reads_back_exactly_in_every_old_style() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        let values = [
            "plain",
            "",
            "a b",
            "$HOME",
            "`id`",
            "$(id)",
            "it's",
            "say \"hi\"",
            "a\\b",
            "a\\",
            "#x",
            "a #b",
            "l1\nl2\n",
            "it's $HOME `id`",
            "'\\''",
            "''",
            "ü ✓",
            "a\r\nb\r",
            "\r\n\t\\ 'q' \"d\" $HOME `id` \x01\x7f",
        ];
        let olds = [
            "K=old",
            "K='old'",
            "K=\"old\"",
            "export K=\"old\" # c",
            "K=\"a\nb\"",
        ];
        for old in olds {
            for v in values {
                std::fs::write(&p, format!("A=1\n{old}\nZ=2\n")).unwrap();
                let s = store_at(&p);
                s.write(&Credential::new(
                    CredentialId::new("env", "K"),
                    Kind::Other,
                    v,
                ))
                .unwrap();
                assert_eq!(value_of(&*s, "env/K").as_deref(), Some(v), "{old} <- {v:?}");
                assert_eq!(value_of(&*s, "env/A").as_deref(), Some("1"));
                assert_eq!(value_of(&*s, "env/Z").as_deref(), Some("2"));
                assert!(s.list().unwrap().errors.is_empty(), "{old} <- {v:?}");
            }
        }
    }

    #[test]
    fn values_no_quoting_can_carry_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        let s = store_at(&p);
        for v in ["a\0b", "\0", "x\r\n\0"] {
            let c = Credential::new(CredentialId::new("env", "BAD"), Kind::Other, v);
            assert!(s.check(&c).is_some(), "{v:?}");
            let e = s.write(&c).unwrap_err().to_string();
            assert!(e.contains("env/BAD"), "{e}");
        }
        assert!(!p.exists(), "nothing was written");
    }

    #[test]
    fn a_repeated_key_is_reported_and_delete_removes_only_the_line_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(&p, "K=first\nB=2\n# note\nexport K='second'\nC=3\n").unwrap();
        let s = store_at(&p);
        assert_eq!(value_of(&*s, "env/K").as_deref(), Some("second"));
        let listing = s.list().unwrap();
        assert_eq!(listing.entries.len(), 3);
        assert_eq!(listing.errors.len(), 1, "{:?}", listing.errors);
        let e = &listing.errors[0];
        assert!(e.location.ends_with(".env:1"), "{e:?}");
        assert!(
            e.error.contains("K is assigned 2 times (lines 1, 4)"),
            "{e:?}"
        );
        assert!(!e.error.contains("first") && !e.error.contains("second"));
        assert_eq!(s.read_all().unwrap().errors.len(), 1);
        assert!(s.probe().warnings.iter().any(|w| w.contains("lines 1, 4")));
        let err = s.delete(&"env/K".parse().unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("removed line 4") && err.contains("line(s) 1"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "K=first\nB=2\n# note\nC=3\n"
        );
        // The one left is now the value read, and deleting it is a plain delete.
        assert_eq!(value_of(&*s, "env/K").as_deref(), Some("first"));
        assert!(s.delete(&"env/K".parse().unwrap()).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "B=2\n# note\nC=3\n");
        assert!(!s.delete(&"env/K".parse().unwrap()).unwrap());
    }
}
