//! The encrypted cells of the Fragments Engine table (`encrypted_credentials`),
//! for `credshift rekey` ([`crate::store::rekey`]).

use crate::error::{Result, StoreError};
use crate::store::rekey::RawCells;
use crate::store::rekey::sql::{Column, Db, Piece, SqlCells, Table};
use crate::store::{KeyOptions, StoreSpec};

use super::{TABLE_CURRENT, TABLE_OLD, split_table};

/// Every row's payload, active or not: a soft-deleted row is still the
/// app's data and must not stay under a key that is being retired.
pub fn rekey_cells(spec: &StoreSpec, opts: &KeyOptions) -> Result<Box<dyn RawCells>> {
    let (db_spec, named) = split_table(spec)?;
    let mut db = match &db_spec {
        StoreSpec::LaravelSqlite(p) => Db::sqlite(p)?,
        _ => Db::pg(&db_spec, opts)?,
    };
    let table = match named {
        Some(t) => t,
        None => {
            let has = |db: &mut Db, t: &str| -> Result<bool> { has_table(db, t, spec) };
            match (has(&mut db, TABLE_CURRENT)?, has(&mut db, TABLE_OLD)?) {
                (true, true) => {
                    return Err(StoreError::Other(format!(
                        "{spec}: both {TABLE_CURRENT} and {TABLE_OLD} exist; name the one the \
                         app reads by ending the spec with ?table={TABLE_CURRENT} or \
                         ?table={TABLE_OLD}"
                    )));
                }
                (false, true) => TABLE_OLD,
                (true, false) => TABLE_CURRENT,
                (false, false) => {
                    return Err(StoreError::NotFound {
                        location: spec.to_string(),
                        hint: format!("no {TABLE_CURRENT} or {TABLE_OLD} table"),
                    });
                }
            }
        }
    };
    Ok(Box::new(SqlCells::new(
        spec.to_string(),
        db,
        vec![Table {
            name: table.to_string(),
            key: "CAST(id AS TEXT)",
            columns: vec![Column {
                label: "encrypted_credentials",
                pieces: &[Piece::Text("encrypted_credentials")],
            }],
            skip: &[],
        }],
    )))
}

fn has_table(db: &mut Db, table: &str, spec: &StoreSpec) -> Result<bool> {
    let found = match db {
        Db::Pg(c) => c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .map(|r| r.get::<_, bool>(0))
            .map_err(|e| e.to_string()),
        Db::Lite(c) => c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| e.to_string()),
    };
    found.map_err(|e| StoreError::Other(format!("{spec}: look up {table}: {e}")))
}
