//! Every fixture secret of the plaintext formats comes back through the real
//! binary: `inventory --json` lists it masked, `get` prints it exactly.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use credshift::credential::mask;
use support::*;

/// The expected.json entries that belong to one format.
fn expected_where(pred: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    let all = expected();
    let picked: BTreeMap<_, _> = all.into_iter().filter(|(id, _)| pred(id)).collect();
    assert!(!picked.is_empty(), "no fixture secrets picked");
    picked
}

fn prompttrain_ids(id: &str) -> bool {
    id.starts_with("account:") || id.starts_with("train:")
}

fn modelforge_ids(id: &str) -> bool {
    // The providers in tests/fixtures/modelforge/config.json with auth_data.
    id == "openai/api_key" || id == "github_copilot/access_token"
}

fn dotenv_ids(id: &str) -> bool {
    id.starts_with("env/")
}

/// Run inventory and get against `spec`; check every expected secret.
/// Copy the fixture `rel` and check it as a `scheme:` store through the
/// binary ([`check_format`]), with the fixture secrets `pick` selects.
fn check_fixture(scheme: &str, rel: &str, pick: fn(&str) -> bool, extra_ids: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let path = copy_fixture(rel, tmp.path());
    let spec = format!("{scheme}:{}", path.display());
    check_format(
        &spec,
        &tmp.path().join("state"),
        &expected_where(pick),
        extra_ids,
    );
}

fn check_format(spec: &str, state: &Path, want: &BTreeMap<String, String>, extra_ids: &[&str]) {
    let (out, stdout, stderr) = run(credshift(state).args(["inventory", "--from", spec, "--json"]));
    assert!(out.status.success(), "inventory failed: {stderr}");
    for secret in want.values() {
        assert!(
            !stdout.contains(secret.as_str()),
            "inventory printed a raw secret"
        );
        assert!(!stderr.contains(secret.as_str()));
    }
    let inv: serde_json::Value = serde_json::from_str(&stdout).expect("inventory JSON");
    let items = inv["items"].as_array().expect("items");
    let listed: BTreeMap<String, String> = items
        .iter()
        .map(|it| {
            (
                it["id"].as_str().unwrap().to_string(),
                it["preview"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut ids: Vec<&str> = want.keys().map(String::as_str).collect();
    ids.extend_from_slice(extra_ids);
    ids.sort_unstable();
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        ids,
        "listed ids"
    );
    assert_eq!(inv["errors"].as_array().map(Vec::len), Some(0), "{stdout}");
    for (id, secret) in want {
        assert_eq!(listed[id], mask(secret), "preview of {id}");
        let (out, got, stderr) = run(credshift(state).args(["get", "--from", spec, id]));
        assert!(out.status.success(), "get {id}: {stderr}");
        assert_eq!(got, format!("{secret}\n"), "value of {id}");
    }
}

#[test]
fn prompttrain_fixture_round_trips_through_the_binary() {
    check_fixture(
        "prompttrain",
        "prompttrain/credentials",
        prompttrain_ids,
        &[],
    );
}

#[test]
fn modelforge_fixture_round_trips_through_the_binary() {
    check_fixture("modelforge", "modelforge/config.json", modelforge_ids, &[]);
}

#[test]
fn dotenv_fixture_round_trips_through_the_binary() {
    // APP_NAME is a plain value, listed like any other.
    check_fixture("dotenv", "dotenv/.env", dotenv_ids, &["env/APP_NAME"]);
}

#[test]
fn inventory_names_the_missing_location() {
    let tmp = tempfile::tempdir().unwrap();
    for spec in [
        "prompttrain:nope-dir",
        "modelforge:nope.json",
        "dotenv:nope.env",
    ] {
        let (out, _, stderr) = run(credshift(&tmp.path().join("state"))
            .current_dir(tmp.path())
            .args(["inventory", "--from", spec]));
        assert_eq!(out.status.code(), Some(1), "{spec}: {stderr}");
        assert!(stderr.contains("nope"), "{spec}: {stderr}");
        assert!(stderr.contains("not found"), "{spec}: {stderr}");
    }
}

#[test]
fn status_shows_the_plaintext_warning_for_a_world_readable_dotenv() {
    let tmp = tempfile::tempdir().unwrap();
    let file = copy_fixture("dotenv/.env", tmp.path());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let spec = format!("dotenv:{}", file.display());
    let (out, stdout, stderr) = run(credshift(&tmp.path().join("state"))
        .current_dir(tmp.path())
        .args(["status", "--json", "--store", &spec]));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let report = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spec"] == spec.as_str())
        .unwrap_or_else(|| panic!("{spec} not in {stdout}"));
    let cap = &report["capability"];
    assert_eq!(cap["available"], true);
    assert_eq!(cap["encrypted_at_rest"], false);
    assert_eq!(cap["item_count"], 4);
    let warnings: Vec<&str> = cap["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("plaintext") && w.contains("others") && w.contains("644")),
        "{warnings:?}"
    );

    // At 0600 the warning is gone.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, stdout, _) = run(credshift(&tmp.path().join("state"))
        .current_dir(tmp.path())
        .args(["status", "--json", "--store", &spec]));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let report = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spec"] == spec.as_str())
        .unwrap();
    assert!(
        report["capability"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !w.as_str().unwrap().contains("readable by")),
        "{stdout}"
    );
}
