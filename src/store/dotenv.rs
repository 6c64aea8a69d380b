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

use crate::credential::{Credential, CredentialId, IdStr, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::{
    Capability, DeleteIf, Entry, Listing, LocationError, Replace, ReplaceIf, Scan, Store,
    StoreSpec, plaintext_file_warnings,
};
use crate::unlock::KeyOptions;

mod syntax;
use syntax::{encode_value, parse_assignment, quote_of, unwritable};

const MARKER_PREFIX: &str = "credshift:";

pub fn open(spec: &StoreSpec, _opts: &KeyOptions) -> Result<Box<dyn Store>> {
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
    /// Shared with the id's name and the key index (one allocation).
    key: IdStr,
    /// Everything before the value: indentation, `export `, key, ` = `.
    prefix: String,
    /// Everything after the value: spacing and an inline comment.
    suffix: String,
    quote: Quote,
    value: Secret,
    id: CredentialId,
    kind: Kind,
    /// Boxed: only a marker comment carries metadata, and an empty map
    /// inline was a third of a plain line's assignment.
    metadata: Option<Box<Metadata>>,
}

/// `metadata`, boxed when there is any.
fn boxed(metadata: Metadata) -> Option<Box<Metadata>> {
    (!metadata.is_empty()).then(|| Box::new(metadata))
}

impl Assignment {
    fn credential(&self) -> Credential {
        Credential {
            id: self.id.clone(),
            kind: self.kind,
            secret: self.value.clone(),
            metadata: self.metadata.as_deref().cloned().unwrap_or_default(),
        }
    }
}

/// Assignment indexes by id or key. Most ids are assigned once, so one
/// index sits inline; foldhash, since SipHash was a tenth of a 100,000-line
/// inventory (these keys come from a local file the user reads anyway).
type Index<K> = HashMap<K, smallvec::SmallVec<[usize; 1]>, foldhash::fast::RandomState>;

/// What a document reads as: each effective id and its value.
type Meaning = HashMap<CredentialId, Secret, foldhash::fast::RandomState>;

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
    by_id: Index<CredentialId>,
    by_key: Index<IdStr>,
    errors: Vec<LocationError>,
    /// A document only read (listed, scanned, read back): each line is
    /// zeroized and freed once analysed, so the text and its parsed values
    /// are not both held whole. Such a document cannot be edited or saved.
    read_only: bool,
}

impl Doc {
    fn empty() -> Doc {
        Doc {
            bom: false,
            crlf: false,
            trailing_newline: true,
            lines: Vec::new(),
            assignments: Vec::new(),
            by_id: Index::default(),
            by_key: Index::default(),
            errors: Vec::new(),
            read_only: false,
        }
    }

    fn parse(path: &Path, bytes: Vec<u8>, read_only: bool) -> Result<Doc> {
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
        // The lines hold the text now; it is not kept through the analysis.
        drop(text);
        let mut doc = Doc {
            bom,
            crlf,
            trailing_newline,
            lines,
            read_only,
            ..Doc::empty()
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
        // At most one assignment per line: reserved once instead of grown by
        // doubling, which left up to half of a large file's buffer unused.
        let assignments_at_most = self
            .lines
            .iter()
            .filter(|l| {
                let t = l.trim_start();
                !t.is_empty() && !t.starts_with('#')
            })
            .count();
        self.assignments.reserve(assignments_at_most);
        self.by_id.reserve(assignments_at_most);
        self.by_key.reserve(assignments_at_most);
        let loc = |i: usize| format!("{}:{}", path.display(), i + 1);
        let mut pending: Option<(usize, Marker)> = None;
        let mut i = 0;
        let mut released = 0;
        while i < self.lines.len() {
            if self.read_only {
                // Lines before `i` are never looked at again.
                for l in &mut self.lines[released..i] {
                    *l = Zeroizing::default();
                }
                released = i;
            }
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
                            severity: crate::store::Severity::Error,
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
                    let key = IdStr::from(parsed.key);
                    let (id, kind, metadata, marker_line) = match pending.take() {
                        Some((m_line, m)) => (m.id, m.kind, m.metadata, Some(m_line)),
                        None => (
                            CredentialId::new("env", key.clone()),
                            Kind::guess(&key),
                            Metadata::new(),
                            None,
                        ),
                    };
                    let end = parsed.end;
                    self.push(Assignment {
                        start: i,
                        end,
                        marker_line,
                        key,
                        prefix: parsed.prefix,
                        suffix: parsed.suffix,
                        quote: parsed.quote,
                        value: parsed.value,
                        id,
                        kind,
                        metadata: boxed(metadata),
                    });
                    i = end;
                }
                Err(reason) => {
                    pending = None;
                    self.errors.push(LocationError {
                        severity: crate::store::Severity::Error,
                        location: loc(i),
                        error: reason.to_string(),
                    });
                    i += 1;
                }
            }
        }
        if self.read_only {
            for l in &mut self.lines[released..] {
                *l = Zeroizing::default();
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

    /// Which assignments are effective: the last of each id.
    fn effective(&self) -> Vec<bool> {
        let mut on = vec![false; self.assignments.len()];
        for v in self.by_id.values() {
            if let Some(&n) = v.last() {
                on[n] = true;
            }
        }
        on
    }

    /// The effective credentials: one per id, the last assignment winning.
    fn credentials(&self) -> Vec<Credential> {
        let on = self.effective();
        self.assignments
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(a, _)| a.credential())
            .collect()
    }

    /// [`Doc::credentials`], moving the values out instead of copying them.
    /// The lines and indexes are freed first and the credentials go into a
    /// buffer of their exact count, so a large file's document and its
    /// credentials are not both held in full (inventory's peak).
    fn into_credentials(self) -> Vec<Credential> {
        let on = self.effective();
        let Doc {
            lines,
            by_id,
            by_key,
            assignments,
            ..
        } = self;
        drop((lines, by_id, by_key));
        let mut out = Vec::with_capacity(on.iter().filter(|on| **on).count());
        out.extend(
            assignments
                .into_iter()
                .zip(on)
                .filter(|(_, on)| *on)
                .map(|(a, _)| Credential {
                    id: a.id,
                    kind: a.kind,
                    secret: a.value,
                    metadata: a.metadata.map(|m| *m).unwrap_or_default(),
                }),
        );
        out
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
                a.metadata = boxed(c.metadata.clone());
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
            let key = IdStr::from(key);
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
                metadata: boxed(c.metadata.clone()),
            });
            Ok(true)
        }
    }

    /// Ids assigned more than once: a finding for the dry run naming the
    /// key and its lines (never a value). The last assignment is the one a
    /// shell uses, so it is the one migrated and the only one cleanup removes.
    fn duplicates(&self, path: &Path) -> Vec<LocationError> {
        // In the order of each id's first assignment.
        let mut firsts: Vec<&[usize]> = self
            .by_id
            .values()
            .filter(|v| v.len() > 1)
            .map(|v| v.as_slice())
            .collect();
        firsts.sort_unstable_by_key(|v| v[0]);
        firsts
            .into_iter()
            .filter_map(|v| {
                let at: Vec<usize> = v.iter().map(|&n| self.assignments[n].start + 1).collect();
                let (last, earlier) = at.split_last()?;
                let key = &self.assignments[*v.last()?].key;
                Some(LocationError {
                    severity: crate::store::Severity::Warning,
                    location: format!("{}:{}", path.display(), at[0]),
                    error: format!(
                        "{key} is assigned {} times (lines {}): line {last}, the value a \
                         shell uses, is the one migrated and the only one --delete-source \
                         removes; line(s) {} stay",
                        at.len(),
                        join_lines(&at),
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
            id.name.to_string()
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

    /// The file's bytes into `out`, through one zeroizing block buffer: a
    /// large file is never rendered whole (and no grown-and-freed copy of
    /// it is left unzeroized).
    fn render_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        const BLOCK: usize = 1 << 16;
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut buf = Zeroizing::new(Vec::with_capacity(BLOCK));
        if self.bom {
            buf.extend_from_slice(&[0xEF, 0xBB, 0xBF]);
        }
        for (i, l) in self.lines.iter().enumerate() {
            if buf.len() + l.len() + 2 > BLOCK {
                out.write_all(&buf)?;
                buf.clear();
            }
            if l.len() + 2 > BLOCK {
                out.write_all(l.as_bytes())?;
            } else {
                buf.extend_from_slice(l.as_bytes());
            }
            if i + 1 < self.lines.len() || self.trailing_newline {
                buf.extend_from_slice(eol.as_bytes());
            }
        }
        out.write_all(&buf)
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

/// True when the directory lets this process create and rename files.
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
        fsutil::read_if_exists(&self.path)?
            .map(|bytes| Doc::parse(&self.path, bytes, false))
            .transpose()
    }

    /// [`load`](Self::load) of a document only read, never saved.
    fn load_to_read(&self) -> Result<Option<Doc>> {
        fsutil::read_if_exists(&self.path)?
            .map(|bytes| Doc::parse(&self.path, bytes, true))
            .transpose()
    }

    fn load_existing(&self) -> Result<Doc> {
        self.load_to_read()?.ok_or_else(|| StoreError::NotFound {
            location: self.path.display().to_string(),
            hint: "no such .env file".into(),
        })
    }

    fn save(&self, doc: &Doc) -> Result<()> {
        fsutil::atomic_write_with(&self.path, |f| doc.render_to(f))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `delete_many`, and with `expected` (one per id) compare-and-delete:
    /// an id whose effective value is not the expected one is kept.
    fn remove(
        &self,
        ids: &[CredentialId],
        expected: Option<&[Credential]>,
    ) -> Vec<Result<DeleteIf>> {
        let _g = self.guard();
        let mut doc = match self.load() {
            Ok(Some(d)) => d,
            Ok(None) => return ids.iter().map(|_| Ok(DeleteIf::Absent)).collect(),
            Err(e) => {
                return ids.iter().map(|_| Err(e.duplicate())).collect();
            }
        };
        // Each id loses the assignment `find` reads (the one a shell uses,
        // the one migrated and verified) and its marker; earlier assignments
        // of the id stay, and the id's result says so. As one `delete` per
        // id would, in order (a repeated id removes the next earlier one),
        // with the line numbers each such call would report, but with one
        // parse and one rewrite.
        let before = meaning(&doc);
        let mut doomed: Vec<usize> = Vec::new();
        let line_now = |line: usize, doomed: &[usize]| -> usize {
            line - doomed.iter().filter(|&&d| d < line).count() + 1
        };
        let mut results: Vec<Result<DeleteIf>> = Vec::with_capacity(ids.len());
        for (k, id) in ids.iter().enumerate() {
            if let Some(want) = expected.and_then(|e| e.get(k)) {
                match doc.credential(id) {
                    None => {
                        results.push(Ok(DeleteIf::Absent));
                        continue;
                    }
                    Some(now) if !now.same_as(want) => {
                        results.push(Ok(DeleteIf::Changed));
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let Some(n) = doc.by_id.get_mut(id).and_then(|v| v.pop()) else {
                results.push(Ok(DeleteIf::Absent));
                continue;
            };
            let a = &doc.assignments[n];
            // Line numbers only for the message of a repeated key: counting
            // the doomed lines for every id made a batch quadratic.
            let repeated = !doc.by_id[id].is_empty();
            let (removed, others) = if repeated {
                let others: Vec<usize> = doc.by_id[id]
                    .iter()
                    .map(|&o| line_now(doc.assignments[o].start, &doomed))
                    .collect();
                (line_now(a.start, &doomed), others)
            } else {
                (0, Vec::new())
            };
            doomed.extend(a.start..a.end);
            doomed.extend(a.marker_line);
            results.push(if !repeated {
                Ok(DeleteIf::Deleted)
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
        // Every id not deleted must read as before; a deleted id may read
        // as an earlier assignment of it (its result said so), nothing new.
        let deleted: std::collections::HashSet<&CredentialId> = ids.iter().collect();
        let checked = self.same_meaning(&mut doc, &before, |id| deleted.contains(id));
        drop(before);
        match checked.and_then(|()| self.save(&doc)) {
            Ok(()) => results,
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }
}

/// What a document reads as: each effective id and its value.
fn meaning(doc: &Doc) -> Meaning {
    let on = doc.effective();
    doc.assignments
        .iter()
        .zip(on)
        .filter(|(_, on)| *on)
        .map(|(a, _)| (a.id.clone(), a.value.clone()))
        .collect()
}

impl DotenvStore {
    /// Before a rewrite: read the edited lines afresh, as the next reader
    /// will, and refuse the rewrite when they do not mean what the edit
    /// meant: every id of `expected` with its value (an id `may_differ`
    /// names may read otherwise, or be gone), and no other id. An edit can
    /// change how lines it never touched read: a value requoted next to an
    /// unterminated quote on a broken line closes that quote and swallows
    /// the assignments between (found by fuzzing).
    ///
    /// `doc` is about to be saved: only its lines are kept (they are lent
    /// to the fresh reading, not copied, and its old analysis is dropped
    /// first, so a large file is not analysed twice over in memory).
    fn same_meaning(
        &self,
        doc: &mut Doc,
        expected: &Meaning,
        may_differ: impl Fn(&CredentialId) -> bool,
    ) -> Result<()> {
        doc.assignments = Vec::new();
        doc.by_id = Index::default();
        doc.by_key = Index::default();
        let mut fresh = Doc {
            bom: doc.bom,
            crlf: doc.crlf,
            trailing_newline: doc.trailing_newline,
            lines: std::mem::take(&mut doc.lines),
            ..Doc::empty()
        };
        fresh.analyse(&self.path);
        let now = meaning(&fresh);
        doc.lines = std::mem::take(&mut fresh.lines);
        drop(fresh);
        let kept = expected
            .iter()
            .all(|(id, was)| may_differ(id) || now.get(id).is_some_and(|is| is.ct_eq(was)));
        if kept && now.keys().all(|id| expected.contains_key(id)) {
            return Ok(());
        }
        Err(StoreError::Other(format!(
            "{}: not written: the change would alter how other lines of the file read \
             (a line credshift cannot read, such as an unterminated quote, sits near the \
             items); fix the lines `credshift inventory` reports and run again",
            self.path.display()
        )))
    }
}

impl Store for DotenvStore {
    fn identity(&self) -> Result<crate::store::StoreIdentity> {
        crate::store::path_identity(self.spec())
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// Every batch rewrites the whole file.
    fn batch_hint(&self) -> crate::store::BatchHint {
        crate::store::BatchHint::WholeFile
    }

    fn probe(&self) -> Capability {
        let mut cap = Capability::persistent_store(false, true);
        match self.load_to_read() {
            Ok(Some(doc)) => {
                cap.exists = true;
                cap.item_count = Some(doc.effective().iter().filter(|on| **on).count());
                cap.writable = fsutil::writable(&self.path)
                    && fsutil::dir_writable(&fsutil::parent_dir(&self.path));
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
                cap.writable = fsutil::dir_writable(&nearest_existing_dir(&self.path));
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
        let Some(doc) = self.load_to_read()? else {
            return Ok(None);
        };
        Ok(doc.credential(id))
    }

    /// One parse for the whole batch.
    fn read_many(&self, ids: &[CredentialId]) -> Vec<Result<Option<Credential>>> {
        let loaded = self.load_to_read();
        #[cfg(test)]
        crate::store::test_support::run_after_read();
        match loaded {
            Ok(Some(doc)) => ids.iter().map(|id| Ok(doc.credential(id))).collect(),
            Ok(None) => ids.iter().map(|_| Ok(None)).collect(),
            Err(e) => ids.iter().map(|_| Err(e.duplicate())).collect(),
        }
    }

    fn read_all(&self) -> Result<Scan> {
        let mut doc = self.load_existing()?;
        let mut errors = doc.duplicates(&self.path);
        errors.append(&mut doc.errors);
        Ok(Scan {
            credentials: doc.into_credentials(),
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
        let items: Vec<(&Credential, Option<&Replace>)> = creds.iter().map(|c| (c, None)).collect();
        self.put(&items)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect()
    }

    /// The comparison happens inside the read-modify-rewrite that writes,
    /// on the file as just read (see [`Self::delete_if_unchanged`]).
    fn replace_if_unchanged(&self, items: &[Replace]) -> Vec<Result<ReplaceIf>> {
        let items: Vec<(&Credential, Option<&Replace>)> =
            items.iter().map(|r| (&r.new, Some(r))).collect();
        self.put(&items)
    }

    fn delete(&self, id: &CredentialId) -> Result<bool> {
        self.delete_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(false))
    }

    /// One parse and at most one atomic rewrite for the whole batch.
    fn delete_many(&self, ids: &[CredentialId]) -> Vec<Result<bool>> {
        self.remove(ids, None)
            .into_iter()
            .map(|r| r.map(|d| d == DeleteIf::Deleted))
            .collect()
    }

    /// The comparison happens inside the read-modify-rewrite that deletes,
    /// on the file as just read: nothing comes between the comparison and
    /// the rewrite but building the new text (the rewrite replaces the file
    /// atomically; an application that ignores credshift's lock and writes
    /// in that moment is overwritten, as by any rewrite of the file).
    fn delete_if_unchanged(&self, expected: &[Credential]) -> Vec<Result<DeleteIf>> {
        let ids: Vec<CredentialId> = expected.iter().map(|c| c.id.clone()).collect();
        self.remove(&ids, Some(expected))
    }
}

impl DotenvStore {
    /// One parse and one atomic rewrite for the batch; an item with a
    /// [`Replace`] is set only where the file as just parsed holds what it
    /// expects.
    fn put(&self, items: &[(&Credential, Option<&Replace>)]) -> Vec<Result<ReplaceIf>> {
        let _g = self.guard();
        let loaded = self.load().map(|d| d.unwrap_or_else(Doc::empty));
        // What the file must read as once written: what it read as before,
        // with each item that applied in its place.
        let expected = std::cell::RefCell::new(match &loaded {
            Ok(doc) => meaning(doc),
            Err(_) => Meaning::default(),
        });
        fsutil::rewrite_batch(
            items,
            loaded,
            |doc, (c, guard)| {
                if guard.is_some_and(|g| !g.holds(doc.credential(&c.id).as_ref())) {
                    return Ok(ReplaceIf::Changed);
                }
                let r = doc.set(c);
                if matches!(r, Ok(false)) {
                    doc.analyse(&self.path);
                }
                if r.is_ok() {
                    expected.borrow_mut().insert(c.id.clone(), c.secret.clone());
                }
                r.map(|_| ReplaceIf::Replaced)
            },
            |doc| {
                let mut doc = doc;
                self.same_meaning(&mut doc, &expected.borrow(), |_| false)?;
                self.save(&doc)
            },
            |e, (c, _)| StoreError::item(&c.id, e.to_string()),
        )
    }
}

#[cfg(test)]
mod tests;
