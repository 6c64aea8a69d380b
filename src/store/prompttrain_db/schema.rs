//! The tables credshift creates in an empty database.

/// agent-prompttrain's migration 013 tables, created on first write into
/// an empty database: the same file the tests load as the application's
/// schema, so the two cannot drift apart.
pub const SCHEMA_SQL: &str = include_str!("../../../tests/fixtures/prompttrain-db/schema.sql");
