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
use crate::fsutil;

/// Records written by this process, for `CREDSHIFT_CRASH_AT`.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Append `record` to `file` (opened for appending, at `path`) as one line
/// and fsync it. With the `CREDSHIFT_CRASH_AT=K` test aid, the process
/// aborts right after its K-th record.
pub fn append<T: Serialize>(file: &mut File, path: &Path, record: &T) -> Result<(), StoreError> {
    let mut text = serde_json::to_string(record)
        .map_err(|e| StoreError::json(path.display().to_string(), &e))?;
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| StoreError::io(path, e))?;
    let n = WRITTEN.fetch_add(1, Ordering::SeqCst) + 1;
    if crate::test_aids::get().crash_at == Some(n) {
        std::process::abort();
    }
    Ok(())
}

/// Read every record of `path`. A torn last line is ignored; a bad line
/// before the end is an error naming `path:line` ("not `what`").
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>, StoreError> {
    let text = fsutil::read_text(path)?;
    let raw: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(l) {
            Ok(rec) => out.push(rec),
            Err(_) if i + 1 == raw.len() && !text.ends_with('\n') => break,
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        seq: u64,
        what: String,
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
}
