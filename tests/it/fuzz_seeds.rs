//! Every fuzz target's entry point over its seeds (`fuzz/seeds/<target>/`),
//! the fixtures it is seeded from, and every input a fuzzer once crashed on
//! (`fuzz/regressions/<target>/`): a regression stays a test of the main
//! crate, run by `cargo test` without a fuzzer.

use std::path::{Path, PathBuf};

use credshift::fuzzing;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("dotenv", fuzzing::dotenv),
    ("modelforge_config", fuzzing::modelforge_config),
    ("prompttrain_account", fuzzing::prompttrain_account),
    ("prompttrain_client_keys", fuzzing::prompttrain_client_keys),
    ("envelope", fuzzing::envelope),
    ("envelope_body", fuzzing::envelope_body),
    ("prompttrain_value", fuzzing::prompttrain_value),
    ("laravel_payload", fuzzing::laravel_payload),
    ("php_serialized", fuzzing::php_serialized),
    ("laravel_app_key", fuzzing::laravel_app_key),
    ("journal", fuzzing::journal),
    ("key_file", fuzzing::key_file),
    ("store_spec", fuzzing::store_spec),
    ("credential_id", fuzzing::credential_id),
    ("sqlite_row", fuzzing::sqlite_row),
    ("keyring_attributes", fuzzing::keyring_attributes),
    ("postgres_row", fuzzing::postgres_row),
    ("qr_part", fuzzing::qr_part),
    ("pg_connection", fuzzing::pg_connection),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// The fixtures `scripts/fuzz-all.sh` seeds each corpus with too.
fn fixtures(target: &str) -> Vec<PathBuf> {
    let f = root().join("tests/fixtures");
    match target {
        "dotenv" => vec![f.join("dotenv/.env")],
        "modelforge_config" => vec![f.join("modelforge/config.json")],
        "prompttrain_account" => files_in(&f.join("prompttrain/credentials/accounts")),
        "prompttrain_client_keys" => files_in(&f.join("prompttrain/credentials/train-client-keys")),
        "laravel_app_key" => vec![f.join("fragments/APP_KEY")],
        "key_file" => vec![
            f.join("fragments/APP_KEY"),
            f.join("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"),
        ],
        "envelope_body" => vec![f.join("expected.json")],
        _ => Vec::new(),
    }
}

#[test]
fn every_target_passes_its_seeds_fixtures_and_regressions() {
    let mut ran = 0;
    for (name, target) in TARGETS {
        let mut inputs = files_in(&root().join("fuzz/seeds").join(name));
        inputs.extend(fixtures(name));
        inputs.extend(files_in(&root().join("fuzz/regressions").join(name)));
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            let r = std::panic::catch_unwind(|| target(&bytes));
            assert!(r.is_ok(), "fuzz target {name} fails on {}", input.display());
            ran += 1;
        }
    }
    assert!(ran >= 40, "only {ran} inputs: seeds missing?");
}

#[test]
fn every_fuzz_target_is_listed_here() {
    let dir = root().join("fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = files_in(&dir)
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}
