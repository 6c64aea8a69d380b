//! The fixtures' agent-prompttrain database (made by the original system)
//! migrated into a real Secret Service and back into an empty database,
//! through the real binary: nothing lost, nothing changed.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;

use sha2::Digest;
use support::*;

fn master_key() -> String {
    std::fs::read_to_string(fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"))
        .unwrap()
        .trim()
        .to_string()
}

fn with_keys<'a>(cmd: &'a mut Command, bus: &str) -> &'a mut Command {
    cmd.env("CREDENTIAL_ENCRYPTION_KEY", master_key())
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
}

fn ok_json(cmd: &mut Command) -> serde_json::Value {
    let (out, stdout, stderr) = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn get(state: &std::path::Path, bus: &str, spec: &str, id: &str) -> String {
    let (out, stdout, stderr) =
        run(with_keys(&mut credshift(state), bus).args(["get", "--from", spec, id]));
    assert_eq!(out.status.code(), Some(0), "get {id} from {spec}: {stderr}");
    stdout.strip_suffix('\n').unwrap().to_string()
}

/// Inventory items without the store name: id -> (kind, preview, metadata).
fn items(inv: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                serde_json::json!([i["kind"], i["preview"], i["metadata"]]),
            )
        })
        .collect()
}

#[test]
fn the_fixture_database_goes_into_the_keyring_and_back_unchanged() {
    let Some(db) = pg::fresh_db() else { return };
    let Some(ks) = keyring_service::shared() else {
        return;
    };
    let bus = ks.address.clone();
    pg::run_sql_file(&db.url(), &fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&db.url(), &fixture("prompttrain-db/data.sql"));
    let state = tempfile::tempdir().unwrap();
    let src = format!("prompttrain-db:{}", db.url());
    let svc = format!("credshift-db-round-trip-{}", std::process::id());
    let ring = format!("keyring:{svc}");

    let before = ok_json(with_keys(&mut credshift(state.path()), &bus).args([
        "inventory",
        "--from",
        &src,
        "--json",
    ]));
    let before = items(&before);
    // 6 account secrets + 3 client key hashes.
    assert_eq!(before.len(), 9, "{before:?}");

    let there = ok_json(
        with_keys(&mut credshift(state.path()), &bus)
            .args(["migrate", "--from", &src, "--to", &ring, "--yes", "--json"]),
    );
    assert_eq!(there["copied"], 9, "{there}");
    assert_eq!(there["failed"], 0, "{there}");
    assert_eq!(there["rolled_back"], false, "{there}");

    let expected = expected();
    let accounts: Vec<(&String, &String)> = expected
        .iter()
        .filter(|(id, _)| id.starts_with("account:"))
        .collect();
    assert_eq!(accounts.len(), 6);
    for (id, value) in &accounts {
        assert_eq!(
            &get(state.path(), &bus, &ring, id),
            *value,
            "{id} in the keyring"
        );
    }
    // Client keys exist only as hashes in the database; they travel as such.
    for (id, value) in expected.iter().filter(|(id, _)| id.starts_with("train:")) {
        let hash_id = id.replace("/client_key/", "/client_key_hash/");
        let want = hex::encode(sha2::Sha256::digest(value.as_bytes()));
        assert_eq!(get(state.path(), &bus, &ring, &hash_id), want, "{hash_id}");
    }

    // Back into an empty database (credshift creates agent-prompttrain's tables).
    let Some(db2) = pg::fresh_db() else { return };
    let dst = format!("prompttrain-db:{}", db2.url());
    let back = ok_json(
        with_keys(&mut credshift(state.path()), &bus)
            .args(["migrate", "--from", &ring, "--to", &dst, "--yes", "--json"]),
    );
    assert_eq!(back["copied"], 9, "{back}");
    assert_eq!(back["failed"], 0, "{back}");
    for (id, value) in &accounts {
        assert_eq!(
            &get(state.path(), &bus, &dst, id),
            *value,
            "{id} back in the db"
        );
    }
    let after = ok_json(with_keys(&mut credshift(state.path()), &bus).args([
        "inventory",
        "--from",
        &dst,
        "--json",
    ]));
    assert_eq!(
        items(&after),
        before,
        "ids, kinds, previews and metadata survive"
    );

    // The source database was never touched (no cleanup was asked for).
    let again = ok_json(with_keys(&mut credshift(state.path()), &bus).args([
        "inventory",
        "--from",
        &src,
        "--json",
    ]));
    assert_eq!(items(&again), before);
}
