//! The SQLite backend of the Laravel store (`laravel:sqlite:PATH`).

use super::*;

/// The app's migrations, SQLite dialect, for a table named `table`.
fn sqlite_schema(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  provider VARCHAR NOT NULL,
  credential_type VARCHAR NOT NULL DEFAULT 'api_key',
  encrypted_credentials TEXT NOT NULL,
  metadata TEXT,
  expires_at DATETIME,
  is_active TINYINT(1) NOT NULL DEFAULT 1,
  created_at DATETIME,
  updated_at DATETIME,
  ui_metadata TEXT,
  provider_config_id INTEGER,
  last_used_at DATETIME,
  usage_count INTEGER NOT NULL DEFAULT 0,
  total_cost NUMERIC(10,6),
  UNIQUE (provider, credential_type)
);
CREATE INDEX IF NOT EXISTS {table}_provider_index ON {table}(provider);
"
    )
}

pub(super) struct SqliteDb {
    path: PathBuf,
    conn: Option<rusqlite::Connection>,
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable {
            store: path.display().to_string(),
            reason: "the database is locked by another process".into(),
        },
        Some(ErrorCode::CannotOpen) => StoreError::Unavailable {
            store: path.display().to_string(),
            reason: "cannot open the database file".into(),
        },
        // rusqlite's texts name SQL and columns, never bound values.
        _ => StoreError::Other(format!("{}: {e}", path.display())),
    }
}

impl SqliteDb {
    pub(super) fn new(path: PathBuf) -> SqliteDb {
        SqliteDb { path, conn: None }
    }

    /// An open connection; `create` makes the file (0600, WAL) when missing.
    fn conn(&mut self, create: bool) -> Result<&mut rusqlite::Connection> {
        if self.conn.is_none() {
            let fresh = !self.path.exists();
            if fresh && !create {
                return Err(StoreError::NotFound {
                    location: self.path.display().to_string(),
                    hint: "no SQLite database there".into(),
                });
            }
            if fresh {
                create_private_file(&self.path)?;
            }
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = rusqlite::Connection::open_with_flags(&self.path, flags)
                .map_err(|e| sqlite_error(&self.path, e))?;
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(|e| sqlite_error(&self.path, e))?;
            // WAL for a database we create. An existing one is the app's:
            // its journal mode is a persistent setting we leave alone.
            if fresh {
                conn.pragma_update(None, "journal_mode", "WAL")
                    .map_err(|e| sqlite_error(&self.path, e))?;
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Other(format!("{}: no connection", self.path.display())))
    }

    fn has_table(conn: &rusqlite::Connection, path: &Path, table: &str) -> Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| sqlite_error(path, e))
    }

    fn extra(conn: &rusqlite::Connection, path: &Path, table: &str) -> Result<Extra> {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(|e| sqlite_error(path, e))?;
        let cols = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sqlite_error(path, e))?;
        Ok(Extra::of(&cols))
    }

    fn read_rows(
        conn: &rusqlite::Connection,
        path: &Path,
        table: &'static str,
        extra: Extra,
    ) -> Result<Vec<RawRow>> {
        let mut stmt = conn
            .prepare(&extra.select(table, "INTEGER"))
            .map_err(|e| sqlite_error(path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RawRow {
                    table,
                    id: r.get(0)?,
                    provider: r.get(1)?,
                    credential_type: r.get(2)?,
                    payload: r.get(3)?,
                    metadata: r.get(4)?,
                    expires_at: r.get(5)?,
                    active: r.get::<_, Option<i64>>(6)?.unwrap_or(0) != 0,
                    ui_metadata: r.get(7)?,
                    provider_config_id: r.get(8)?,
                    usage_count: r.get(9)?,
                    last_used_at: r.get(10)?,
                })
            })
            .map_err(|e| sqlite_error(path, e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| sqlite_error(path, e))
    }
}

fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    crate::fsutil::ensure_private_dir(&crate::fsutil::parent_dir(path))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::fsutil::FILE_MODE)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::io(path, e))
}

/// `access(W_OK)` on `path`, or on its nearest existing ancestor when it
/// does not exist yet (where it would be created).
fn writable_path(path: &Path) -> bool {
    let mut p = path;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => {
                p = Path::new(".");
                break;
            }
        }
    }
    crate::fsutil::writable(p)
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(s) => s.to_sql(),
            Param::OptText(s) => s.to_sql(),
            Param::Int(i) => i.to_sql(),
        }
    }
}

impl Backend for SqliteDb {
    fn not_writable(&self) -> Option<String> {
        (!writable_path(&self.path)).then(|| {
            format!(
                "{} is not writable by this user",
                if self.path.exists() {
                    self.path.display().to_string()
                } else {
                    "the directory for the database".to_string()
                }
            )
        })
    }

    fn has_table(&mut self, table: &str) -> Result<bool> {
        if self.conn.is_none() && !self.path.exists() {
            return Ok(false);
        }
        let path = self.path.clone();
        let conn = self.conn(false)?;
        SqliteDb::has_table(conn, &path, table)
    }

    fn rows(&mut self, table: &'static str) -> Result<Vec<RawRow>> {
        let path = self.path.clone();
        let conn = self.conn(false)?;
        if !SqliteDb::has_table(conn, &path, table)? {
            return Err(StoreError::NotFound {
                location: format!("{}: {table}", path.display()),
                hint: "the table does not exist".into(),
            });
        }
        let extra = SqliteDb::extra(conn, &path, table)?;
        SqliteDb::read_rows(conn, &path, table, extra)
    }

    fn modify(
        &mut self,
        table: &'static str,
        decide: &mut dyn FnMut(&[RawRow]) -> Result<Change>,
    ) -> Result<()> {
        let path = self.path.clone();
        let err = |e| sqlite_error(&path, e);
        let conn = self.conn(true)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        if !SqliteDb::has_table(&tx, &path, table)? {
            tx.execute_batch(&sqlite_schema(table)).map_err(err)?;
        }
        let extra = SqliteDb::extra(&tx, &path, table)?;
        let rows = SqliteDb::read_rows(&tx, &path, table, extra)?;
        let statement = change_statement(
            table,
            decide(&rows)?,
            extra,
            laravel_now(),
            &|n, _| format!("?{n}"),
            &|on| if on { "1" } else { "0" },
        );
        let Some((sql, params)) = statement else {
            return Ok(());
        };
        tx.execute(&sql, rusqlite::params_from_iter(params.iter()))
            .map_err(err)?;
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writability_is_judged_at_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        assert!(writable_path(&dir.path().join("a/b/c.sqlite")));
        assert!(writable_path(Path::new("relative/new.sqlite")));
    }
}
