//! A parsed `.env` file: its lines, the assignments they hold and the
//! indexes over them, and the edits a write makes to the lines.

use std::collections::HashMap;
use std::path::Path;

use zeroize::Zeroizing;

use super::remove::Expect;
use super::syntax::{encode_value, parse_assignment, quote_of, unwritable};
use super::{MARKER_PREFIX, Marker, Quote, valid_key};
use crate::credential::{Credential, CredentialId, IdStr, Kind, Metadata, Secret};
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::LocationError;


/// One `KEY=value` assignment, possibly spanning several physical lines.
pub(super) struct Assignment {
    /// First and one-past-last physical line.
    pub(super) start: usize,
    pub(super) end: usize,
    /// Line index of the marker comment right above, when there is one.
    pub(super) marker_line: Option<usize>,
    /// Shared with the id's name and the key index (one allocation).
    pub(super) key: IdStr,
    /// Everything before the value: indentation, `export `, key, ` = `.
    pub(super) prefix: String,
    /// Everything after the value: spacing and an inline comment.
    pub(super) suffix: String,
    pub(super) quote: Quote,
    pub(super) value: Secret,
    pub(super) id: CredentialId,
    pub(super) kind: Kind,
    /// Boxed: only a marker comment carries metadata, and an empty map
    /// inline was a third of a plain line's assignment.
    pub(super) metadata: Option<Box<Metadata>>,
}

/// `metadata`, boxed when there is any.
fn boxed(metadata: Metadata) -> Option<Box<Metadata>> {
    (!metadata.is_empty()).then(|| Box::new(metadata))
}

impl Assignment {
    pub(super) fn credential(&self) -> Credential {
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
pub(super) type Index<K> = HashMap<K, smallvec::SmallVec<[usize; 1]>, foldhash::fast::RandomState>;


/// A parsed file: its physical lines and what they mean.
pub(super) struct Doc {
    pub(super) bom: bool,
    pub(super) crlf: bool,
    pub(super) trailing_newline: bool,
    pub(super) lines: Vec<Zeroizing<String>>,
    pub(super) assignments: Vec<Assignment>,
    /// Indexes into `assignments`, ascending: every assignment of an id,
    /// and every assignment under a key. They make lookups O(1), so listing
    /// and batches stay linear in the file's size.
    pub(super) by_id: Index<CredentialId>,
    pub(super) by_key: Index<IdStr>,
    pub(super) errors: Vec<LocationError>,
    pub(super) purpose: Purpose,
    /// For a delete: each assignment's [`value_digest`], by position,
    /// kept instead of its value (the values of every line were 14 MB of
    /// a cleanup batch's peak at 100,000 lines, and the batch's own were
    /// held twice, here and by the caller that compares them).
    pub(super) digests: zeroize::Zeroizing<Vec<[u8; 16]>>,
    /// For a delete: every assignment's id and [`value_digest`], in file
    /// order, the ones it keeps no assignment of included: what the
    /// rewrite check compares with (`remove::Meaning`). A delete keeps
    /// whole assignments only for the ids it deletes (every line's were
    /// 27 MB of a 100,000-line cleanup's peak, for a batch of a third).
    pub(super) seen: Vec<(CredentialId, Expect)>,
}

/// What a delete's check compares a line it did not name by: the first
/// half of the value's HMAC-SHA256 under a key made once per process, so
/// a digest held for a batch is no unsalted hash a short secret could be
/// guessed back from.
pub(super) fn value_digest(value: &str) -> [u8; 16] {
    use hmac::{KeyInit, Mac};
    static KEY: std::sync::OnceLock<zeroize::Zeroizing<[u8; 32]>> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        // Without system randomness the digests are unkeyed, and still
        // compare values correctly.
        let _ = getrandom::fill(&mut k[..]);
        k
    });
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key[..])
        .expect("HMAC accepts any key length");
    m.update(value.as_bytes());
    let mut d = [0u8; 16];
    d.copy_from_slice(&m.finalize().into_bytes()[..16]);
    d
}

/// What a document is parsed for, which decides what it keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Only read (listed, scanned, read back): each line is zeroized and
    /// freed once analysed, so the text and its parsed values are not both
    /// held whole. Such a document cannot be edited or saved.
    Read,
    /// Lines removed and saved: no index by key (only a write chooses a
    /// key; it was 65 bytes per line of a cleanup batch's peak).
    Delete,
    /// Edited and saved.
    Write,
}

impl Doc {
    pub(super) fn empty() -> Doc {
        Doc {
            bom: false,
            crlf: false,
            trailing_newline: true,
            lines: Vec::new(),
            assignments: Vec::new(),
            by_id: Index::default(),
            by_key: Index::default(),
            errors: Vec::new(),
            purpose: Purpose::Write,
            digests: zeroize::Zeroizing::new(Vec::new()),
            seen: Vec::new(),
        }
    }

    /// `keep` says which ids' assignments a read or a delete keeps (the
    /// others are dropped as they are read: a batch's read of a large file
    /// holds the batch, not the file; a delete keeps only their digests in
    /// `seen`); a write keeps all.
    pub(super) fn parse(
        path: &Path,
        bytes: Vec<u8>,
        purpose: Purpose,
        keep: Option<&dyn Fn(&CredentialId) -> bool>,
    ) -> Result<Doc> {
        let bom = bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
        let text = Zeroizing::new(fsutil::decode_text(path, bytes)?);
        let crlf = text.contains("\r\n");
        let trailing_newline = text.is_empty() || text.ends_with('\n');
        // Sized by counting first: grown by doubling, the list had up to
        // half its room unused (1.5 MB of a 100,000-line file's parse).
        let mut lines: Vec<Zeroizing<String>> =
            Vec::with_capacity(text.bytes().filter(|b| *b == b'\n').count() + 1);
        lines.extend(
            text.split('\n')
                .map(|l| Zeroizing::new(l.strip_suffix('\r').unwrap_or(l).to_string())),
        );
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
            purpose,
            ..Doc::empty()
        };
        doc.analyse_keeping(path, keep);
        Ok(doc)
    }

    /// (Re)build `assignments`, their indexes and `errors` from `lines`.
    pub(super) fn analyse(&mut self, path: &Path) {
        self.analyse_keeping(path, None);
    }

    fn analyse_keeping(&mut self, path: &Path, keep: Option<&dyn Fn(&CredentialId) -> bool>) {
        self.assignments.clear();
        self.by_id.clear();
        self.by_key.clear();
        self.errors.clear();
        self.digests.clear();
        self.seen.clear();
        let filter = keep.filter(|_| self.purpose != Purpose::Write);
        let empty = Secret::default();
        // At most one assignment per line: reserved once instead of grown by
        // doubling, which left up to half of a large file's buffer unused.
        // A read or delete of some ids grows as it finds them.
        if filter.is_none() || self.purpose == Purpose::Delete {
            let assignments_at_most = self
                .lines
                .iter()
                .filter(|l| {
                    let t = l.trim_start();
                    !t.is_empty() && !t.starts_with('#')
                })
                .count();
            if self.purpose == Purpose::Delete {
                self.seen.reserve_exact(assignments_at_most);
            }
            if filter.is_none() {
                self.assignments.reserve(assignments_at_most);
                self.by_id.reserve(assignments_at_most);
            }
            if self.purpose == Purpose::Write {
                self.by_key.reserve(assignments_at_most);
            }
        }
        let mut lines = std::mem::take(&mut self.lines);
        scan(&mut lines, path, self.purpose == Purpose::Read, |found| match found {
            Found::Assignment(mut a) => {
                let kept = filter.is_none_or(|k| k(&a.id));
                if self.purpose == Purpose::Delete {
                    let d = value_digest(a.value.expose());
                    self.seen.push((a.id.clone(), Expect::Digest(d)));
                    if kept {
                        self.digests.push(d);
                        a.value = empty.clone();
                    }
                }
                if !kept {
                    return;
                }
                if self.purpose != Purpose::Write {
                    // Only a write edits a line around its value.
                    a.prefix = String::new();
                    a.suffix = String::new();
                }
                self.push(a);
            }
            Found::Error(e) => self.errors.push(e),
        });
        self.lines = lines;
        if filter.is_some() {
            self.assignments.shrink_to_fit();
        }
    }

    /// Append an assignment and index it.
    fn push(&mut self, a: Assignment) {
        let n = self.assignments.len();
        self.by_id.entry(a.id.clone()).or_default().push(n);
        if self.purpose == Purpose::Write {
            self.by_key.entry(a.key.clone()).or_default().push(n);
        }
        self.assignments.push(a);
    }

    /// Index of the assignment that holds `id` (the last one wins, as in a shell).
    pub(super) fn find(&self, id: &CredentialId) -> Option<usize> {
        self.by_id.get(id).and_then(|v| v.last().copied())
    }

    /// The credential `id` holds, when it is there.
    pub(super) fn credential(&self, id: &CredentialId) -> Option<Credential> {
        self.find(id).map(|n| self.assignments[n].credential())
    }

    /// Which assignments are effective: the last of each id.
    pub(super) fn effective(&self) -> Vec<bool> {
        let mut on = vec![false; self.assignments.len()];
        for v in self.by_id.values() {
            if let Some(&n) = v.last() {
                on[n] = true;
            }
        }
        on
    }

    /// The effective credentials: one per id, the last assignment winning.
    pub(super) fn credentials(&self) -> Vec<Credential> {
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
    pub(super) fn into_credentials(self) -> Vec<Credential> {
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
    pub(super) fn set(&mut self, c: &Credential) -> Result<bool> {
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
    pub(super) fn duplicates(&self, path: &Path) -> Vec<LocationError> {
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
    pub(super) fn render_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
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

pub(super) fn join_lines(lines: &[usize]) -> String {
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

/// `account:acc_alpha/api_key` -> `ACCOUNT_ACC_ALPHA_API_KEY`.
pub(super) fn sanitize_key(s: &str) -> String {
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

/// What [`scan`] reports for one line or assignment.
pub(super) enum Found {
    Assignment(Assignment),
    Error(LocationError),
}

/// Read `lines` in order and hand each assignment and each unreadable line
/// to `found`, which keeps what it needs (a document, or a check that keeps
/// nothing). With `release`, each line is zeroized and freed once read.
pub(super) fn scan(
    lines: &mut [Zeroizing<String>],
    path: &Path,
    release: bool,
    mut found: impl FnMut(Found),
) {
    let loc = |i: usize| format!("{}:{}", path.display(), i + 1);
    let mut pending: Option<(usize, Marker)> = None;
    let mut i = 0;
    let mut released = 0;
    while i < lines.len() {
        if release {
            // Lines before `i` are never looked at again.
            for l in &mut lines[released..i] {
                *l = Zeroizing::default();
            }
            released = i;
        }
        let trimmed = lines[i].trim_start();
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
                    Err(e) => found(Found::Error(LocationError {
                        severity: crate::store::Severity::Error,
                        location: loc(i),
                        error: format!("credshift marker comment ignored: {}", json_reason(&e)),
                    })),
                }
            }
            i += 1;
            continue;
        }
        match parse_assignment(lines, i) {
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
                found(Found::Assignment(Assignment {
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
                }));
                i = end;
            }
            Err(reason) => {
                pending = None;
                found(Found::Error(LocationError {
                    severity: crate::store::Severity::Error,
                    location: loc(i),
                    error: reason.to_string(),
                }));
                i += 1;
            }
        }
    }
    if release {
        for l in &mut lines[released..] {
            *l = Zeroizing::default();
        }
    }
}
