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

/// Cells of one table and column, by their index in a request.
struct Group {
    table: Table,
    column: Column,
    cells: Vec<usize>,
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

    /// The cells of `at` grouped by table and column, each group with the
    /// indices of its cells in `at`.
    fn groups<'a>(&self, at: impl Iterator<Item = &'a CellRef>) -> Result<Vec<Group>> {
        let mut groups: Vec<Group> = Vec::new();
        for (i, a) in at.enumerate() {
            let (t, c) = self.column(a)?;
            let (t, c) = (t.clone(), c.clone());
            match groups
                .iter_mut()
                .find(|g| g.table.name == t.name && g.column.label == c.label)
            {
                Some(g) => g.cells.push(i),
                None => groups.push(Group {
                    table: t,
                    column: c,
                    cells: vec![i],
                }),
            }
        }
        Ok(groups)
    }

    /// PostgreSQL: one query per table and column (a round trip per cell
    /// is what a rekey's time went to on a busy machine).
    fn read_pg(&mut self, at: &[CellRef]) -> Result<Vec<Option<String>>> {
        let mut out = vec![None; at.len()];
        for g in self.groups(at.iter())? {
            let sql = format!(
                "SELECT {key}, {value} FROM {table} WHERE {key} = ANY(CAST($1 AS TEXT[]))",
                key = g.table.key,
                value = self.db.value_expr(&g.column),
                table = g.table.name
            );
            let keys: Vec<String> = g.cells.iter().map(|&i| at[i].row.clone()).collect();
            let Db::Pg(client) = &mut self.db else {
                unreachable!("read_pg on PostgreSQL only")
            };
            let rows = client
                .query(sql.as_str(), &[&keys])
                .map_err(|e| StoreError::Other(format!("{}: read cells: {e}", self.location)))?;
            let found: std::collections::HashMap<String, Option<String>> = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)))
                .collect();
            for &i in &g.cells {
                out[i] = found.get(&at[i].row).cloned().flatten();
            }
        }
        Ok(out)
    }

    /// PostgreSQL: each table and column's swaps as one `UPDATE ... FROM
    /// unnest(...)`, every row compared on its old value inside it, all in
    /// one transaction; then one query tells a changed row from a gone one.
    fn swap_pg(&mut self, swaps: &[Swap]) -> Result<Vec<SwapOutcome>> {
        let mut out = vec![SwapOutcome::Missing; swaps.len()];
        let groups = self.groups(swaps.iter().map(|s| &s.at))?;
        let mut work = Vec::with_capacity(groups.len());
        for g in &groups {
            let n = g.column.pieces.len();
            // Parameters: the keys, each piece of the new values, the old values.
            let mut arrays: Vec<Vec<String>> = vec![Vec::with_capacity(g.cells.len()); n + 2];
            for &i in &g.cells {
                let s = &swaps[i];
                let parts: Vec<String> = if n == 1 {
                    vec![s.new.clone()]
                } else {
                    s.new.split(':').map(str::to_string).collect()
                };
                if parts.len() != n {
                    return Err(StoreError::Other(format!(
                        "{}: {}: the new value has {} parts, the cell {n}",
                        self.location,
                        s.at,
                        parts.len()
                    )));
                }
                arrays[0].push(s.at.row.clone());
                for (k, p) in parts.into_iter().enumerate() {
                    arrays[k + 1].push(p);
                }
                arrays[n + 1].push(s.old.clone());
            }
            let names: Vec<String> = (0..n).map(|k| format!("credshift_new_{k}")).collect();
            let set = g
                .column
                .pieces
                .iter()
                .zip(&names)
                .map(|(p, v)| match p {
                    Piece::Text(c) => format!("{c} = credshift_v.{v}"),
                    Piece::Int(c) => {
                        format!("{c} = CAST(NULLIF(credshift_v.{v}, '') AS INTEGER)")
                    }
                    Piece::Blob(c) => {
                        format!("{c} = {}", self.db.unhex(&format!("credshift_v.{v}")))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let params: Vec<String> = (1..=n + 2)
                .map(|k| format!("CAST(${k} AS TEXT[])"))
                .collect();
            let update = format!(
                "UPDATE {table} SET {set} FROM unnest({params}) AS credshift_v(credshift_key, \
                 {names}, credshift_old) WHERE {key} = credshift_v.credshift_key AND {value} = \
                 credshift_v.credshift_old RETURNING credshift_v.credshift_key",
                table = g.table.name,
                params = params.join(", "),
                names = names.join(", "),
                key = g.table.key,
                value = self.db.value_expr(&g.column),
            );
            let exists = format!(
                "SELECT {key} FROM {table} WHERE {key} = ANY(CAST($1 AS TEXT[]))",
                key = g.table.key,
                table = g.table.name
            );
            work.push((update, exists, arrays, &g.cells));
        }
        let location = self.location.clone();
        let fail =
            |e: postgres::Error| StoreError::Other(format!("{location}: rewrite cells: {e}"));
        let Db::Pg(client) = &mut self.db else {
            unreachable!("swap_pg on PostgreSQL only")
        };
        let mut tx = client.transaction().map_err(fail)?;
        for (update, exists, arrays, cells) in &work {
            let p: Vec<&(dyn postgres::types::ToSql + Sync)> = arrays
                .iter()
                .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                .collect();
            let swapped: std::collections::HashSet<String> = tx
                .query(update.as_str(), &p)
                .map_err(fail)?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            let rest: Vec<String> = arrays[0]
                .iter()
                .filter(|k| !swapped.contains(*k))
                .cloned()
                .collect();
            let present: std::collections::HashSet<String> = if rest.is_empty() {
                Default::default()
            } else {
                tx.query(exists.as_str(), &[&rest])
                    .map_err(fail)?
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect()
            };
            for (&i, key) in cells.iter().zip(&arrays[0]) {
                out[i] = if swapped.contains(key) {
                    SwapOutcome::Swapped
                } else if present.contains(key) {
                    SwapOutcome::Changed
                } else {
                    SwapOutcome::Missing
                };
            }
        }
        tx.commit().map_err(fail)?;
        Ok(out)
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
        if matches!(self.db, Db::Pg(_)) {
            return self.read_pg(at);
        }
        at.iter().map(|a| self.read_one(a)).collect()
    }

    fn swap(&mut self, swaps: &[Swap]) -> Result<Vec<SwapOutcome>> {
        if matches!(self.db, Db::Pg(_)) {
            return self.swap_pg(swaps);
        }
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
