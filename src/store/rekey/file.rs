//! A whole-file store (`encrypted:`, `bundle:`) as one cell: the envelope
//! text. A swap rewrites the file atomically (temp file, fsync, rename),
//! and only while it still holds the old envelope, byte for byte.

use std::path::PathBuf;

use crate::credential::ct_eq_bytes;
use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::store::rekey::{Cell, CellRef, RawCells, Swap, SwapOutcome};

pub struct FileCells {
    path: PathBuf,
}

impl FileCells {
    pub fn new(path: PathBuf) -> FileCells {
        FileCells { path }
    }

    fn at(&self) -> CellRef {
        CellRef {
            table: self.path.display().to_string(),
            row: "file".into(),
            column: "envelope".into(),
        }
    }

    fn current(&self) -> Result<Option<String>> {
        match fsutil::read_if_exists(&self.path)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                StoreError::parse(
                    self.path.display().to_string(),
                    "not a credshift envelope (not UTF-8 text)",
                )
            }),
        }
    }
}

impl RawCells for FileCells {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn cells(&mut self) -> Result<Vec<Cell>> {
        match self.current()? {
            Some(value) => Ok(vec![Cell {
                at: self.at(),
                value,
            }]),
            None => Err(StoreError::NotFound {
                location: self.location(),
                hint: String::new(),
            }),
        }
    }

    fn read(&mut self, at: &[CellRef]) -> Result<Vec<Option<String>>> {
        let now = self.current()?;
        Ok(at
            .iter()
            .map(|a| if *a == self.at() { now.clone() } else { None })
            .collect())
    }

    fn swap(&mut self, swaps: &[Swap]) -> Result<Vec<SwapOutcome>> {
        let mut out = Vec::with_capacity(swaps.len());
        for s in swaps {
            if s.at != self.at() {
                out.push(SwapOutcome::Missing);
                continue;
            }
            out.push(match self.current()? {
                None => SwapOutcome::Missing,
                Some(now) if !ct_eq_bytes(now.as_bytes(), s.old.as_bytes()) => SwapOutcome::Changed,
                Some(_) => {
                    fsutil::atomic_write(&self.path, s.new.as_bytes())?;
                    SwapOutcome::Swapped
                }
            });
        }
        Ok(out)
    }
}
