//! Placeholder: a throwaway PostgreSQL server (initdb + pg_ctl) for tests.
