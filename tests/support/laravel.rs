//! Fragments Engine's table as the app's migrations create it, for the
//! Laravel tests. Spelled in the fixtures (`fragments/schema.sql` for
//! SQLite, `fragments/schema.postgres.sql` for PostgreSQL), apart from the
//! copy credshift creates a missing table with, so that the tests check
//! credshift against the app rather than against itself.

use super::fixture;

/// The PostgreSQL table named `table`, its `is_active` column of
/// `active_type` (`BOOLEAN` as the app makes it; `SMALLINT` as some
/// installs have it).
pub fn pg_schema(table: &str, active_type: &str) -> String {
    let default = if active_type == "BOOLEAN" {
        "TRUE"
    } else {
        "1"
    };
    std::fs::read_to_string(fixture("fragments/schema.postgres.sql"))
        .unwrap()
        .replace(
            "is_active BOOLEAN NOT NULL DEFAULT TRUE",
            &format!("is_active {active_type} NOT NULL DEFAULT {default}"),
        )
        .replace("a_i_credentials", table)
}
