//! The integration tests, one crate (as ripgrep keeps them): one module per
//! area, sharing `support` (and so one PostgreSQL server and one keyring
//! daemon per run). `cargo test --test it AREA::` runs one area.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../support/mod.rs"]
mod support;

mod batch_stores;
mod cli_basics;
mod cli_contract;
mod cli_exec;
mod cli_migrate;
mod cli_recovery;
mod cli_status_help;
mod db_keyring;
mod dotenv_readers;
mod dry_run_writes_nothing;
mod e2e_recovery_tui;
mod e2e_tui;
mod encrypted_stores;
mod engine_canary;
mod engine_crash;
mod fault_schedules;
mod file_stores;
mod fixture_formats;
mod fuzz_seeds;
mod guarded_session;
mod json_contract;
mod key_file_modes;
mod keyring;
mod kinds_cli;
mod laravel;
mod laravel_engine;
mod laravel_independent;
mod laravel_postgres;
mod laravel_tables;
mod layers;
mod leak_canary;
mod legacy_metadata;
mod lock_table;
mod never_lose;
mod no_core_dumps;
mod passphrase_rule;
mod postgres;
mod postgres_outage;
mod prompttrain_db;
mod qr;
mod recovery_loop;
mod rekey;
mod rekey_crash;
mod rekey_pg;
mod rekey_recovery;
mod rekey_signals;
mod rekey_tui_e2e;
mod rekey_wizard;
mod replan;
mod screens;
mod scrub_secrets;
mod store_kinds_recovery;
mod unreadable_source;
mod unreadable_target;
mod vault;
mod vault_access;
mod vault_cluster;
mod web;
