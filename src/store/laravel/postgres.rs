//! The PostgreSQL backend of the Laravel store (`laravel:postgres://...`).

use super::*;

/// The app's migrations, PostgreSQL dialect, for a table named `table`.
fn pg_schema(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
  id BIGSERIAL PRIMARY KEY,
  provider VARCHAR(255) NOT NULL,
  credential_type VARCHAR(255) NOT NULL DEFAULT 'api_key',
  encrypted_credentials TEXT NOT NULL,
  metadata JSON,
  expires_at TIMESTAMP(0) WITHOUT TIME ZONE,
  is_active BOOLEAN NOT NULL DEFAULT TRUE,
  created_at TIMESTAMP(0) WITHOUT TIME ZONE,
  updated_at TIMESTAMP(0) WITHOUT TIME ZONE,
  ui_metadata JSON,
  provider_config_id BIGINT,
  last_used_at TIMESTAMP(0) WITHOUT TIME ZONE,
  usage_count INTEGER NOT NULL DEFAULT 0,
  total_cost NUMERIC(10,6),
  UNIQUE (provider, credential_type)
);
CREATE INDEX IF NOT EXISTS {table}_provider_index ON {table}(provider);
"
    )
}

pub(super) struct PgDb {
    location: String,
    client: ::postgres::Client,
}

impl PgDb {
    /// Connect with the shared PostgreSQL helper (`sslmode` honoured: TLS
    /// via native-tls for require, verify-ca and verify-full).
    pub(super) fn connect(spec: &StoreSpec, auth: &crate::store::pg::DbAuth) -> Result<PgDb> {
        Ok(PgDb {
            location: spec.to_string(),
            client: crate::store::pg::connect(spec, auth)?,
        })
    }

    fn error(&self, e: ::postgres::Error) -> StoreError {
        pg_error(&self.location, e)
    }
}

fn pg_error(location: &str, e: ::postgres::Error) -> StoreError {
    if e.is_closed() {
        StoreError::Unavailable {
            store: location.to_string(),
            reason: "the connection was closed".into(),
        }
    } else {
        StoreError::Other(format!("{location}: {}", pg_message(&e)))
    }
}

/// The server's message without its DETAIL (which can quote row values).
fn pg_message(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn pg_row(
    table: &'static str,
    r: &::postgres::Row,
) -> std::result::Result<RawRow, ::postgres::Error> {
    Ok(RawRow {
        table,
        id: r.try_get(0)?,
        provider: r.try_get(1)?,
        credential_type: r.try_get(2)?,
        payload: r.try_get(3)?,
        metadata: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        active: r.try_get::<_, Option<i32>>(6)?.unwrap_or(0) != 0,
        ui_metadata: r.try_get(7)?,
        provider_config_id: r.try_get(8)?,
        usage_count: r.try_get(9)?,
        last_used_at: r.try_get(10)?,
    })
}

const PG_TABLE_EXISTS: &str = "SELECT to_regclass($1::TEXT) IS NOT NULL";
const PG_COLUMNS: &str = "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1::TEXT";

/// Reads and decisions on one client or transaction.
fn pg_extra(
    c: &mut impl ::postgres::GenericClient,
    table: &str,
) -> std::result::Result<Extra, ::postgres::Error> {
    let cols: Vec<String> = c
        .query(PG_COLUMNS, &[&table])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    Ok(Extra::of(&cols))
}

impl Backend for PgDb {
    fn has_table(&mut self, table: &str) -> Result<bool> {
        match self.client.query_one(PG_TABLE_EXISTS, &[&table]) {
            Ok(r) => r.try_get::<_, bool>(0).map_err(|e| self.error(e)),
            Err(e) => Err(self.error(e)),
        }
    }

    fn rows(&mut self, table: &'static str) -> Result<Vec<RawRow>> {
        if !self.has_table(table)? {
            return Err(StoreError::NotFound {
                location: format!("{}: {table}", self.location),
                hint: "the table does not exist".into(),
            });
        }
        let extra = pg_extra(&mut self.client, table).map_err(|e| self.error(e))?;
        let rows = self
            .client
            .query(&extra.select(table, "BIGINT"), &[])
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| pg_row(table, r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.error(e))
    }

    fn modify(
        &mut self,
        table: &'static str,
        decide: &mut dyn FnMut(&[RawRow]) -> Result<Change>,
    ) -> Result<()> {
        let location = self.location.clone();
        let err = |e: ::postgres::Error| pg_error(&location, e);
        let mut tx = self.client.transaction().map_err(err)?;
        // Only when missing: the app's role may lack CREATE on the schema.
        let exists: bool = tx
            .query_one(PG_TABLE_EXISTS, &[&table])
            .and_then(|r| r.try_get(0))
            .map_err(err)?;
        if !exists {
            tx.batch_execute(&pg_schema(table)).map_err(err)?;
        }
        let is_bool: bool = tx
            .query_one(
                "SELECT COALESCE((SELECT data_type = 'boolean' FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1::TEXT \
                 AND column_name = 'is_active'), TRUE)",
                &[&table],
            )
            .and_then(|r| r.try_get(0))
            .map_err(err)?;
        let flag = |on: bool| match (is_bool, on) {
            (true, true) => "TRUE",
            (true, false) => "FALSE",
            (false, true) => "1",
            (false, false) => "0",
        };
        let extra = pg_extra(&mut tx, table).map_err(err)?;
        let rows = tx
            .query(
                &format!("{} FOR UPDATE", extra.select(table, "BIGINT")),
                &[],
            )
            .map_err(err)?
            .iter()
            .map(|r| pg_row(table, r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err)?;
        let statement = change_statement(
            table,
            decide(&rows)?,
            extra,
            laravel_now(),
            &|n, kind| match kind {
                "json" => format!("CAST(${n}::TEXT AS JSON)"),
                "time" => format!("CAST(${n}::TEXT AS TIMESTAMP)"),
                "int" => format!("${n}::BIGINT"),
                _ => format!("${n}::TEXT"),
            },
            &flag,
        );
        let Some((sql, params)) = statement else {
            return Ok(());
        };
        let params: Vec<&(dyn ::postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| -> &(dyn ::postgres::types::ToSql + Sync) {
                match p {
                    Param::Text(s) => s,
                    Param::OptText(s) => s,
                    Param::Int(i) => i,
                }
            })
            .collect();
        tx.execute(&sql, &params).map_err(err)?;
        tx.commit().map_err(err)
    }
}
