//! Encrypted cells of SQL tables (PostgreSQL or SQLite), described by
//! [`Table`]s: a row key expression and the encrypted columns. A column
//! may be several SQL columns joined with `:` (credshift's nonce and
//! ciphertext, its meta row), binary ones as lowercase hex.

use std::path::Path;
use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::store::pg::{DbAuth, connect};
use crate::store::rekey::{Cell, CellRef, META_CELL, RawCells, Swap, SwapOutcome};
use crate::store::{KeyOptions, StoreSpec};

/// One SQL column inside an encrypted cell.
#[derive(Debug, Clone, Copy)]
pub enum Piece {
    Text(&'static str),
    Int(&'static str),
    Blob(&'static str),
}

/// An encrypted cell's column(s).
#[derive(Debug, Clone)]
pub struct Column {
    pub label: &'static str,
    pub pieces: &'static [Piece],
}

/// A table with encrypted cells.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// A text expression naming the row, the same in both dialects.
    pub key: &'static str,
    pub columns: Vec<Column>,
    /// Stored values that are not ciphertexts (a placeholder): not cells.
    pub skip: &'static [&'static str],
}

/// The database under the tables.
pub enum Db {
    Pg(postgres::Client),
    Lite(rusqlite::Connection),
}

const BUSY: Duration = Duration::from_secs(10);

impl Db {
    /// A PostgreSQL connection for a spec with a URL.
    pub fn pg(spec: &StoreSpec, opts: &KeyOptions) -> Result<Db> {
        Ok(Db::Pg(connect(spec, &DbAuth::from_options(opts))?))
    }

    /// An existing SQLite file, never created.
    pub fn sqlite(path: &Path) -> Result<Db> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Unavailable {
            store: path.display().to_string(),
            reason: format!("cannot open the database: {e}"),
        })?;
        conn.busy_timeout(BUSY)
            .map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
        Ok(Db::Lite(conn))
    }

    fn ph(&self, n: usize) -> String {
        match self {
            Db::Pg(_) => format!("${n}"),
            Db::Lite(_) => format!("?{n}"),
        }
    }

    fn hex(&self, col: &str) -> String {
        match self {
            Db::Pg(_) => format!("encode({col}, 'hex')"),
            Db::Lite(_) => format!("lower(hex({col}))"),
        }
    }

    fn unhex(&self, p: &str) -> String {
        match self {
            Db::Pg(_) => format!("decode(NULLIF({p}, ''), 'hex')"),
            Db::Lite(_) => format!("unhex(NULLIF({p}, ''))"),
        }
    }

    /// The cell's value as one text expression.
    fn value_expr(&self, col: &Column) -> String {
        if let [Piece::Text(c)] = col.pieces {
            return format!("CAST({c} AS TEXT)");
        }
        col.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(c) | Piece::Int(c) => format!("COALESCE(CAST({c} AS TEXT), '')"),
                Piece::Blob(c) => format!("COALESCE({}, '')", self.hex(c)),
            })
            .collect::<Vec<_>>()
            .join(" || ':' || ")
    }

    /// `SET` assignments for a new value in parameters `first..`.
    fn set_clause(&self, col: &Column, first: usize) -> String {
        if let [Piece::Text(c)] = col.pieces {
            return format!("{c} = {}", self.ph(first));
        }
        col.pieces
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ph = self.ph(first + i);
                match p {
                    Piece::Text(c) => format!("{c} = {ph}"),
                    Piece::Int(c) => format!("{c} = CAST(NULLIF({ph}, '') AS INTEGER)"),
                    Piece::Blob(c) => format!("{c} = {}", self.unhex(&ph)),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn query_texts(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> std::result::Result<Vec<Vec<Option<String>>>, String> {
        match self {
            Db::Pg(c) => {
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|s| s as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                let rows = c.query(sql, &p).map_err(|e| e.to_string())?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.get::<_, Option<String>>(i))
                            .collect()
                    })
                    .collect())
            }
            Db::Lite(c) => {
                let mut st = c.prepare(sql).map_err(|e| e.to_string())?;
                let n = st.column_count();
                let rows = st
                    .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                        (0..n).map(|i| r.get::<_, Option<String>>(i)).collect()
                    })
                    .map_err(|e| e.to_string())?;
                rows.collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// The cells of one store's tables.
pub struct SqlCells {
    location: String,
    db: Db,
    tables: Vec<Table>,
}

/// agent-prompttrain's account columns (`trains` holds hashes, not ciphertexts).
const PROMPTTRAIN_COLUMNS: &[&str] = &[
    "api_key_encrypted",
    "oauth_access_token_encrypted",
    "oauth_refresh_token_encrypted",
];

impl SqlCells {
    pub fn new(location: String, db: Db, tables: Vec<Table>) -> SqlCells {
        SqlCells {
            location,
            db,
            tables,
        }
    }

    /// `prompttrain-db:`: the `accounts` table's three encrypted columns.
    pub fn prompttrain(spec: &StoreSpec, opts: &KeyOptions) -> Result<SqlCells> {
        let columns = PROMPTTRAIN_COLUMNS
            .iter()
            .map(|c| Column {
                label: c,
                pieces: match *c {
                    "api_key_encrypted" => &[Piece::Text("api_key_encrypted")],
                    "oauth_access_token_encrypted" => {
                        &[Piece::Text("oauth_access_token_encrypted")]
                    }
                    _ => &[Piece::Text("oauth_refresh_token_encrypted")],
                },
            })
            .collect();
        Ok(SqlCells::new(
            spec.to_string(),
            Db::pg(spec, opts)?,
            vec![Table {
                name: "accounts".into(),
                key: "CAST(account_id AS TEXT)",
                columns,
                skip: &[crate::store::prompttrain_db::PENDING_TOKEN],
            }],
        ))
    }

    /// credshift's own tables (`sqlite:`, `postgres://`): each value's
    /// nonce and ciphertext, and the meta row's KDF and key check.
    pub fn credshift(spec: &StoreSpec, opts: &KeyOptions) -> Result<SqlCells> {
        let (db, key, meta): (Db, &'static str, &'static [Piece]) = match spec {
            StoreSpec::Sqlite(p) => (
                Db::sqlite(p)?,
                "namespace || '/' || name",
                &[
                    Piece::Text("kdf_alg"),
                    Piece::Int("kdf_iterations"),
                    Piece::Blob("kdf_salt"),
                    Piece::Blob("check_nonce"),
                    Piece::Blob("check_ciphertext"),
                ],
            ),
            _ => (
                Db::pg(spec, opts)?,
                "id",
                &[
                    Piece::Text("kdf"),
                    Piece::Int("iterations"),
                    Piece::Blob("salt"),
                    Piece::Blob("check_nonce"),
                    Piece::Blob("check_value"),
                ],
            ),
        };
        Ok(SqlCells::new(
            spec.to_string(),
            db,
            vec![
                Table {
                    name: META_CELL.0.into(),
                    key: "CAST(id AS TEXT)",
                    columns: vec![Column {
                        label: META_CELL.2,
                        pieces: meta,
                    }],
                    skip: &[],
                },
                Table {
                    name: "credshift_credentials".into(),
                    key,
                    columns: vec![Column {
                        label: "value",
                        pieces: &[Piece::Blob("nonce"), Piece::Blob("ciphertext")],
                    }],
                    skip: &[],
                },
            ],
        ))
    }

    fn err(&self, what: &str, e: String) -> StoreError {
        StoreError::Other(format!("{}: {what}: {e}", self.location))
    }

    fn column(&self, at: &CellRef) -> Result<(&Table, &Column)> {
        self.tables
            .iter()
            .find(|t| t.name == at.table)
            .and_then(|t| {
                t.columns
                    .iter()
                    .find(|c| c.label == at.column)
                    .map(|c| (t, c))
            })
            .ok_or_else(|| StoreError::Other(format!("{}: no cell {at}", self.location)))
    }

    fn read_one(&mut self, at: &CellRef) -> Result<Option<String>> {
        let (t, c) = self.column(at)?;
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = {}",
            self.db.value_expr(c),
            t.name,
            t.key,
            self.db.ph(1)
        );
        let rows = self
            .db
            .query_texts(&sql, &[&at.row])
            .map_err(|e| self.err("read a cell", e))?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }
}

impl RawCells for SqlCells {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn cells(&mut self) -> Result<Vec<Cell>> {
        let mut out = Vec::new();
        for t in self.tables.clone() {
            let exprs: Vec<String> = t.columns.iter().map(|c| self.db.value_expr(c)).collect();
            let sql = format!(
                "SELECT {}, {} FROM {} ORDER BY 1",
                t.key,
                exprs.join(", "),
                t.name
            );
            let rows = self
                .db
                .query_texts(&sql, &[])
                .map_err(|e| self.err(&format!("read {}", t.name), e))?;
            for r in rows {
                let Some(row) = r[0].clone() else { continue };
                for (c, v) in t.columns.iter().zip(&r[1..]) {
                    let Some(v) = v else { continue };
                    if v.is_empty() || t.skip.contains(&v.as_str()) {
                        continue;
                    }
                    out.push(Cell {
                        at: CellRef {
                            table: t.name.clone(),
                            row: row.clone(),
                            column: c.label.to_string(),
                        },
                        value: v.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn read(&mut self, at: &[CellRef]) -> Result<Vec<Option<String>>> {
        at.iter().map(|a| self.read_one(a)).collect()
    }

    fn swap(&mut self, swaps: &[Swap]) -> Result<Vec<SwapOutcome>> {
        let mut plans = Vec::with_capacity(swaps.len());
        for s in swaps {
            let (t, c) = self.column(&s.at)?;
            let n = c.pieces.len();
            let new_parts: Vec<String> = if n == 1 {
                vec![s.new.clone()]
            } else {
                s.new.split(':').map(str::to_string).collect()
            };
            if new_parts.len() != n {
                return Err(StoreError::Other(format!(
                    "{}: {}: the new value has {} parts, the cell {n}",
                    self.location,
                    s.at,
                    new_parts.len()
                )));
            }
            let update = format!(
                "UPDATE {} SET {} WHERE {} = {} AND {} = {}",
                t.name,
                self.db.set_clause(c, 1),
                t.key,
                self.db.ph(n + 1),
                self.db.value_expr(c),
                self.db.ph(n + 2)
            );
            let exists = format!(
                "SELECT 1 FROM {} WHERE {} = {}",
                t.name,
                t.key,
                self.db.ph(1)
            );
            let mut params = new_parts;
            params.push(s.at.row.clone());
            params.push(s.old.clone());
            plans.push((update, exists, params, s.at.row.clone()));
        }
        let location = self.location.clone();
        let fail = |what: &str, e: String| StoreError::Other(format!("{location}: {what}: {e}"));
        match &mut self.db {
            Db::Pg(client) => {
                let spec_err = |e: postgres::Error| fail("rewrite cells", e.to_string());
                let mut tx = client.transaction().map_err(spec_err)?;
                let mut out = Vec::with_capacity(plans.len());
                for (update, exists, params, row) in &plans {
                    let p: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                        .iter()
                        .map(|s| s as &(dyn postgres::types::ToSql + Sync))
                        .collect();
                    let n = tx.execute(update.as_str(), &p).map_err(spec_err)?;
                    out.push(if n == 1 {
                        SwapOutcome::Swapped
                    } else if tx
                        .query(exists.as_str(), &[row])
                        .map_err(spec_err)?
                        .is_empty()
                    {
                        SwapOutcome::Missing
                    } else {
                        SwapOutcome::Changed
                    });
                }
                tx.commit().map_err(spec_err)?;
                Ok(out)
            }
            Db::Lite(conn) => {
                let lite_err = |e: rusqlite::Error| fail("rewrite cells", e.to_string());
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(lite_err)?;
                let mut out = Vec::with_capacity(plans.len());
                for (update, exists, params, row) in &plans {
                    let n = tx
                        .execute(update, rusqlite::params_from_iter(params.iter()))
                        .map_err(lite_err)?;
                    out.push(if n == 1 {
                        SwapOutcome::Swapped
                    } else {
                        let mut st = tx.prepare(exists).map_err(lite_err)?;
                        if st.exists([row]).map_err(lite_err)? {
                            SwapOutcome::Changed
                        } else {
                            SwapOutcome::Missing
                        }
                    });
                }
                tx.commit().map_err(lite_err)?;
                Ok(out)
            }
        }
    }
}
