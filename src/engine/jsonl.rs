//! The JSON Lines files credshift appends records to and reads back: the
//! migration journal (`journal.jsonl`) and the rekey journal
//! (`rekey.jsonl`). One record a line, each line fsynced before the
//! operation goes on, a torn last line (a crash mid-write) ignored on
//! reading, and the `CREDSHIFT_CRASH_AT` crash point after each record.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// Records written by this process, for `CREDSHIFT_CRASH_AT`.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Append `record` to `file` (opened for appending, at `path`) as one line
/// and fsync it. With the `CREDSHIFT_CRASH_AT=K` test aid, the process
/// aborts right after its K-th record.
pub fn append<T: Serialize>(file: &mut File, path: &Path, record: &T) -> Result<(), StoreError> {
    // Streamed to the file: the text of a 100,000-item `planned` record
    // (and its growth by doubling) was a migration's peak of memory.
    let mut w = std::io::BufWriter::with_capacity(1 << 16, &*file);
    serde_json::to_writer(&mut w, record).map_err(|e| {
        if e.is_io() {
            StoreError::io(path, e.into())
        } else {
            StoreError::json(path.display().to_string(), &e)
        }
    })?;
    w.write_all(b"\n")
        .and_then(|_| w.flush())
        .map_err(|e| StoreError::io(path, e))?;
    drop(w);
    file.sync_data().map_err(|e| StoreError::io(path, e))?;
    let n = WRITTEN.fetch_add(1, Ordering::SeqCst) + 1;
    if crate::test_aids::get().crash_at == Some(n) {
        std::process::abort();
    }
    Ok(())
}

/// Open `path` for appending (created 0600 in a private folder). A torn
/// last line (a crash mid-write: no newline at the end) is cut off first,
/// so the next record starts a line of its own instead of continuing the
/// torn one, which would leave a bad line in the middle of the file.
pub fn open_for_append(path: &Path) -> Result<File, StoreError> {
    use std::os::unix::fs::FileExt;
    let file = crate::fsutil::open_append_private(path)?;
    let io = |e| StoreError::io(path, e);
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(file);
    }
    let reader = File::open(path).map_err(io)?;
    let mut last = [0u8; 1];
    reader.read_exact_at(&mut last, len - 1).map_err(io)?;
    if last[0] == b'\n' {
        return Ok(file);
    }
    // Back to just after the last newline (or to nothing at all).
    let mut end = len;
    let mut keep = 0;
    let mut chunk = vec![0u8; 1 << 16];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        reader.read_exact_at(buf, start).map_err(io)?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    file.set_len(keep).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(file)
}

/// Read every record of `path`. A torn last line is ignored; a bad line
/// before the end is an error naming `path:line` ("not `what`").
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for_each_jsonl(path, what, |rec| out.push(rec))?;
    Ok(out)
}

/// [`read_jsonl`], handing each record to `f` as it is parsed instead of
/// collecting them: a caller that folds the records into a state never
/// holds them all (a 100,000-item journal's records are several times the
/// size of its text). Records before a bad line have been handed over
/// when the error returns.
pub fn for_each_jsonl<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    f: impl FnMut(T),
) -> Result<(), StoreError> {
    for_each_jsonl_by(path, what, |l| serde_json::from_str::<T>(l), f)
}

/// [`for_each_jsonl`] with the parse of one line given (a record type
/// whose derived parse buffers a big line can take a direct path).
/// One line (with its newline) appended to the empty `buf`. A line longer
/// than the reader's buffer (a 100,000-item plan is one line of tens of
/// MB) is measured first and read into a buffer of its size: grown by
/// doubling, it was up to twice its size, and a growth step held the old
/// and the new buffer at once, at a verify's and a cleanup's peak.
fn read_line_sized(
    reader: &mut std::io::BufReader<File>,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use std::io::{BufRead, Seek};
    let avail = reader.fill_buf()?;
    if avail.is_empty() || avail.contains(&b'\n') {
        return reader.read_until(b'\n', buf);
    }
    let start = reader.stream_position()?;
    let mut len = 0usize;
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                len += i + 1;
                break;
            }
            None => {
                let n = avail.len();
                len += n;
                reader.consume(n);
            }
        }
    }
    reader.seek(std::io::SeekFrom::Start(start))?;
    *buf = Vec::with_capacity(len);
    reader.read_until(b'\n', buf)
}

pub fn for_each_jsonl_by<T>(
    path: &Path,
    what: &str,
    mut parse: impl FnMut(&str) -> serde_json::Result<T>,
    mut f: impl FnMut(T),
) -> Result<(), StoreError> {
    // Line by line: the text is never held whole either (a 100,000-item
    // journal is tens of MB).
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    #[cfg(test)]
    reads::count(path);
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::new();
    for i in 0.. {
        // A big line's buffer (a 100,000-item plan: tens of MB) is not
        // kept while the records after it are folded.
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
        buf.clear();
        if read_line_sized(&mut reader, &mut buf).map_err(|e| StoreError::io(path, e))? == 0 {
            break;
        }
        // Only the last line can lack its newline: a torn write.
        let torn = buf.last() != Some(&b'\n');
        let mut bytes = buf.as_slice();
        if i == 0 {
            bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            // A write torn inside a multi-byte character is still a torn
            // write: skipped, so the journal opens after such a crash.
            Err(_) if torn => break,
            Err(_) => {
                return Err(StoreError::Parse {
                    location: path.display().to_string(),
                    line: Some(i + 1),
                    column: None,
                    message: "not valid UTF-8".into(),
                });
            }
        };
        let l = text.strip_suffix('\n').unwrap_or(text);
        let l = l.strip_suffix('\r').unwrap_or(l);
        if l.trim().is_empty() {
            continue;
        }
        match parse(l) {
            Ok(rec) => f(rec),
            Err(_) if torn => break,
            Err(e) => {
                return Err(StoreError::Parse {
                    location: path.display().to_string(),
                    line: Some(i + 1),
                    column: Some(e.column()),
                    message: format!("not {what}"),
                });
            }
        }
    }
    Ok(())
}

/// Test aid: how often this thread read a JSON Lines file whole, by file
/// name, so a test can pin how many times an operation reads its journal.
#[cfg(test)]
pub mod reads {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::path::Path;

    thread_local! {
        static READS: RefCell<HashMap<String, usize>> = RefCell::new(HashMap::new());
    }

    pub(super) fn count(path: &Path) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        READS.with(|r| *r.borrow_mut().entry(name).or_default() += 1);
    }

    /// Reads of files named `name` on this thread since the last call.
    pub fn take(name: &str) -> usize {
        READS.with(|r| r.borrow_mut().remove(name).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        seq: u64,
        what: String,
    }

    /// Issue #26: a line longer than the reader's buffer (a 100,000-item
    /// plan) is read into a buffer of its size, not one grown by doubling;
    /// the lines around it read as before.
    #[test]
    fn a_long_line_is_read_into_a_buffer_of_its_size() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let long = format!("{}\n", "x".repeat(300_000));
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "a\n{long}b\nlast-no-newline").unwrap();
        drop(f);
        let mut r = std::io::BufReader::with_capacity(1 << 16, File::open(&path).unwrap());
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            if read_line_sized(&mut r, &mut buf).unwrap() == 0 {
                break;
            }
            lines.push((String::from_utf8(buf.clone()).unwrap(), buf.capacity()));
        }
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].0, "a\n");
        assert_eq!(lines[1], (long.clone(), long.len()));
        assert_eq!(lines[2].0, "b\n");
        assert_eq!(lines[3].0, "last-no-newline");
    }

    #[test]
    fn lines_round_trip_a_torn_last_line_is_ignored_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut f = fsutil::open_append_private(&path).unwrap();
        for seq in 1..=2 {
            let r = Rec {
                seq,
                what: "x".into(),
            };
            append(&mut f, &path, &r).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"seq\":1,\"what\":\"x\"}\n{\"seq\":2,\"what\":\"x\"}\n"
        );
        f.write_all(b"{\"seq\":3,\"wh").unwrap();
        let back: Vec<Rec> = read_jsonl(&path, "a test record").unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        std::fs::write(
            &path,
            "{\"seq\":1,\"what\":\"x\"}\nnot json\n{\"seq\":3,\"what\":\"x\"}\n",
        )
        .unwrap();
        let err = read_jsonl::<Rec>(&path, "a test record").unwrap_err();
        match err {
            StoreError::Parse { line, message, .. } => {
                assert_eq!(line, Some(2));
                assert_eq!(message, "not a test record");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_last_line_torn_inside_a_multi_byte_character_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut bytes = b"{\"seq\":1,\"what\":\"x\"}\n{\"seq\":2,\"what\":\"caf".to_vec();
        // The first byte of the two of "\u{e9}" ("é"): the write stopped there.
        bytes.push("\u{e9}".as_bytes()[0]);
        std::fs::write(&path, &bytes).unwrap();
        let back: Vec<Rec> = read_jsonl(&path, "a test record").unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
        // The same bytes before a newline are not torn: still an error.
        bytes.push(b'\n');
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_jsonl::<Rec>(&path, "a test record").is_err());
    }

    /// After a crash mid-write, the next record must not continue the torn
    /// line: reopened for appending, the file reads back whole, the torn
    /// record gone and the new one there (ASCII and mid-character tears,
    /// and a torn first line).
    #[test]
    fn a_record_appended_after_a_torn_line_starts_its_own_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let whole = b"{\"seq\":1,\"what\":\"x\"}\n".to_vec();
        let mut mid_char = b"{\"seq\":2,\"what\":\"caf".to_vec();
        mid_char.push("\u{e9}".as_bytes()[0]);
        for (before, torn) in [
            (whole.clone(), b"{\"seq\":2,\"wh".to_vec()),
            (whole.clone(), mid_char),
            (Vec::new(), b"{\"seq\":1,\"wh".to_vec()),
        ] {
            std::fs::write(&path, [before.clone(), torn].concat()).unwrap();
            let mut f = open_for_append(&path).unwrap();
            let r = Rec {
                seq: 9,
                what: "after".into(),
            };
            append(&mut f, &path, &r).unwrap();
            let back: Vec<Rec> = read_jsonl(&path, "a test record").unwrap();
            let want: Vec<u64> = if before.is_empty() { vec![9] } else { vec![1, 9] };
            assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
            assert!(std::fs::read(&path).unwrap().starts_with(&before));
        }
        // A whole file is left as it is.
        std::fs::write(&path, &whole).unwrap();
        drop(open_for_append(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    }

    #[test]
    fn a_bom_and_crlf_lines_read_and_bad_utf8_is_named_by_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "\u{feff}{\"seq\":1,\"what\":\"x\"}\r\n\r\n{\"seq\":2,\"what\":\"y\"}\r\n",
        )
        .unwrap();
        let back: Vec<Rec> = read_jsonl(&path, "a test record").unwrap();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        let mut bytes = b"{\"seq\":1,\"what\":\"x\"}\n{\"seq\":2,\"what\":\"".to_vec();
        bytes.extend([0xff, b'"', b'}', b'\n']);
        std::fs::write(&path, bytes).unwrap();
        match read_jsonl::<Rec>(&path, "a test record").unwrap_err() {
            StoreError::Parse { line, message, .. } => {
                assert_eq!((line, message.as_str()), (Some(2), "not valid UTF-8"));
            }
            other => panic!("{other:?}"),
        }
    }
}
