//! The plaintext file stores (`prompttrain:`, `modelforge:`, `dotenv:`) and
//! `env:` through the library API: round trips with ids from other formats,
//! in-place edits that keep everything else, bad input, file modes, and
//! property tests of parse(write(x)) == x.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use credshift::credential::{Credential, CredentialId, Kind, Metadata};
use credshift::error::StoreError;
use credshift::fsutil::mode_of;
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

fn open(spec: StoreSpec) -> Box<dyn Store> {
    store::open(&spec, &KeyOptions::default()).expect("open store")
}

fn id(s: &str) -> CredentialId {
    s.parse().expect("valid id")
}

fn cred(i: &str, kind: Kind, value: &str) -> Credential {
    Credential::new(id(i), kind, value)
}

fn meta(v: Value) -> Metadata {
    v.as_object().cloned().expect("object")
}

fn value_of(s: &dyn Store, i: &str) -> Option<String> {
    s.read(&id(i))
        .expect("read")
        .map(|c| c.secret.expose().to_string())
}

fn ids_of(s: &dyn Store) -> Vec<String> {
    let mut v: Vec<String> = s
        .list()
        .expect("list")
        .entries
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    v.sort();
    v
}

/// Every file under `dir` with its bytes.
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

const LONG: usize = 16 * 1024;

fn long_token() -> String {
    let mut s = String::from("sk-ant-oat01-");
    while s.len() < LONG {
        s.push_str("Ab3_-xYz9");
    }
    s
}

/// Credentials whose ids come from every format, with awkward values.
fn cross_format_set() -> Vec<Credential> {
    vec![
        cred(
            "account:acc_new/oauth_access_token",
            Kind::OauthAccess,
            "sk-ant-oat01-with \"quotes\" and # hash",
        )
        .with_metadata(meta(json!({
            "account_name": "new-account",
            "type": "oauth",
            "expires_at": 1790003600000i64,
            "scopes": ["user:inference"],
            "is_max": true
        }))),
        cred(
            "account:acc_new/oauth_refresh_token",
            Kind::OauthRefresh,
            &long_token(),
        )
        .with_metadata(meta(json!({
            "account_name": "new-account",
            "type": "oauth",
            "expires_at": 1790003600000i64,
            "scopes": ["user:inference"],
            "is_max": true
        }))),
        cred(
            "train:team-new/client_key/0",
            Kind::ClientKey,
            "cnp_live_0 = spaced",
        ),
        cred(
            "train:team-new/client_key/1",
            Kind::ClientKey,
            "cnp_live_ключ_🔑",
        ),
        cred(
            "openai/api_key",
            Kind::ApiKey,
            "sk-proj-'single' $HOME `tick`",
        ),
        cred("env/NEW_TOKEN", Kind::ApiKey, "line1\nline2\r\n\ttab\\back"),
        cred("env/APP_MODE", Kind::Other, ""),
    ]
}

/// Write, list, read, delete; the store ends as it began.
fn round_trip(s: &dyn Store, creds: &[Credential], keeps_metadata: bool) {
    let before = ids_of(s);
    for c in creds {
        assert_eq!(s.check(c), None, "{} refused", c.id);
        s.write(c).unwrap_or_else(|e| panic!("write {}: {e}", c.id));
    }
    let listed = ids_of(s);
    for c in creds {
        assert!(listed.contains(&c.id.to_string()), "{} not listed", c.id);
        let back = s
            .read(&c.id)
            .unwrap()
            .unwrap_or_else(|| panic!("{} gone", c.id));
        assert!(back.secret.ct_eq(&c.secret), "value of {} changed", c.id);
        if keeps_metadata {
            assert!(back.same_as(c), "{} changed: {:?}", c.id, back.metadata);
        }
    }
    assert_eq!(listed.len(), before.len() + creds.len());
    for c in creds.iter().rev() {
        assert!(s.delete(&c.id).unwrap(), "delete {}", c.id);
        assert!(s.read(&c.id).unwrap().is_none(), "{} still there", c.id);
        assert!(!s.delete(&c.id).unwrap(), "second delete of {}", c.id);
    }
    assert_eq!(ids_of(s), before);
}

// ---------------------------------------------------------------- dotenv

#[test]
fn dotenv_round_trip_with_ids_from_every_format_restores_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = copy_fixture("dotenv/.env", tmp.path());
    let original = std::fs::read(&file).unwrap();
    let s = open(StoreSpec::Dotenv(file.clone()));
    round_trip(&*s, &cross_format_set(), true);
    assert_eq!(
        String::from_utf8(std::fs::read(&file).unwrap()).unwrap(),
        String::from_utf8(original).unwrap(),
        "write + delete of new ids leaves the fixture as it was"
    );
    assert_eq!(mode_of(&file), Some(0o600));
}

#[test]
fn dotenv_update_changes_only_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = copy_fixture("dotenv/.env", tmp.path());
    let original = std::fs::read_to_string(&file).unwrap();
    let s = open(StoreSpec::Dotenv(file.clone()));
    s.write(&cred(
        "env/OPENAI_API_KEY",
        Kind::ApiKey,
        "sk-proj-rotated-value",
    ))
    .unwrap();
    let now = std::fs::read_to_string(&file).unwrap();
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(now.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            "export OPENAI_API_KEY=\"sk-proj-AzLhzOT8cwzEygnNOJ1rQ41kvCNpzIxELIVoDMxCJql7j4jf\"",
            "export OPENAI_API_KEY=\"sk-proj-rotated-value\""
        )]
    );
    assert_eq!(original.lines().count(), now.lines().count());
    assert_eq!(
        value_of(&*s, "env/OPENAI_API_KEY").unwrap(),
        "sk-proj-rotated-value"
    );
    // Delete removes exactly that line.
    assert!(s.delete(&id("env/SLACK_BOT_TOKEN")).unwrap());
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(after.lines().count(), original.lines().count() - 1);
    assert!(!after.contains("SLACK_BOT_TOKEN"));
    assert!(after.contains("APP_NAME=demo   # not a secret"));
}

#[test]
fn dotenv_bad_line_among_good_ones_is_reported_by_line_without_content() {
    let (_tmp, file, s) = store_on_file(
        ".env",
        "GOOD_ONE=first\nthis line has sk-live-LEAKME-1234 and no equals\nBROKEN=\"sk-live-LEAKME-5678\nGOOD_TWO=second\n",
        StoreSpec::Dotenv,
    );
    let scan = s.read_all().unwrap();
    let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(ids, ["env/GOOD_ONE", "env/GOOD_TWO"]);
    let locs: Vec<String> = scan.errors.iter().map(|e| e.location.clone()).collect();
    assert_eq!(
        locs,
        [
            format!("{}:2", file.display()),
            format!("{}:3", file.display())
        ]
    );
    for e in &scan.errors {
        assert!(!e.error.contains("LEAKME"), "{}", e.error);
    }
}

#[test]
fn dotenv_bom_and_crlf_are_accepted_and_kept() {
    let (_tmp, file, s) = store_on_file(
        ".env",
        b"\xEF\xBB\xBF# c\r\nexport A='one'\r\nB=\"two\" # x\r\n",
        StoreSpec::Dotenv,
    );
    assert_eq!(value_of(&*s, "env/A").unwrap(), "one");
    assert_eq!(value_of(&*s, "env/B").unwrap(), "two");
    s.write(&cred("env/B", Kind::Other, "2")).unwrap();
    s.write(&cred("env/C", Kind::Other, "three")).unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"\xEF\xBB\xBF# c\r\nexport A='one'\r\nB=\"2\" # x\r\nC=three\r\n"
    );
}

#[test]
fn dotenv_duplicate_key_last_wins_and_delete_removes_only_that_line() {
    let (_tmp, file, s) = store_on_file(".env", "K=first\nOTHER=x\nK=second\n", StoreSpec::Dotenv);
    assert_eq!(ids_of(&*s), ["env/K", "env/OTHER"]);
    assert_eq!(value_of(&*s, "env/K").unwrap(), "second");
    s.write(&cred("env/K", Kind::Other, "third")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "K=first\nOTHER=x\nK=third\n"
    );
    // Only the assignment read (and migrated) goes; the earlier one was
    // never migrated, so it stays and the delete says so (issue 13).
    let e = s.delete(&id("env/K")).unwrap_err().to_string();
    assert!(e.contains("line(s) 1"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "K=first\nOTHER=x\n"
    );
    assert!(s.delete(&id("env/K")).unwrap());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "OTHER=x\n");
}

#[test]
fn dotenv_empty_value_is_returned() {
    let (_tmp, _file, s) =
        store_on_file(".env", "EMPTY_KEY=\nQUOTED_EMPTY=\"\"\n", StoreSpec::Dotenv);
    let scan = s.read_all().unwrap();
    assert_eq!(scan.credentials.len(), 2);
    assert!(scan.credentials.iter().all(|c| c.secret.is_empty()));
    assert!(
        scan.credentials
            .iter()
            .all(|c| c.invalid_reason().is_some())
    );
}

#[test]
fn dotenv_missing_file_is_not_found_and_created_on_write() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sub/dir/.env");
    let s = open(StoreSpec::Dotenv(file.clone()));
    let e = s.list().unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("sub/dir/.env"), "{e}");
    let p = s.probe();
    assert!(p.available && !p.exists && p.writable && p.keeps_metadata);
    assert!(!p.encrypted_at_rest);
    s.write(&cred("env/K", Kind::Other, &long_token())).unwrap();
    assert_eq!(mode_of(&file), Some(0o600));
    assert_eq!(mode_of(file.parent().unwrap()), Some(0o700));
    assert_eq!(value_of(&*s, "env/K").unwrap(), long_token());
    assert!(s.probe().exists);
}

// ---------------------------------------------------------------- modelforge

#[test]
fn modelforge_round_trip_with_ids_from_every_format_restores_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = copy_fixture("modelforge/config.json", tmp.path());
    let original = std::fs::read(&file).unwrap();
    let s = open(StoreSpec::ModelForge(file.clone()));
    // openai/api_key exists in the fixture; use a fresh provider for it.
    let mut set = cross_format_set();
    set[4] = cred(
        "mistral/api_key",
        Kind::ApiKey,
        "sk-proj-'single' $HOME `tick`",
    );
    // Kinds come from field names in this format.
    set[5].kind = Kind::guess("NEW_TOKEN");
    round_trip(&*s, &set, false);
    assert_eq!(
        String::from_utf8(std::fs::read(&file).unwrap()).unwrap(),
        String::from_utf8(original).unwrap()
    );
    assert_eq!(mode_of(&file), Some(0o600));
}

#[test]
fn modelforge_update_keeps_every_other_part() {
    let tmp = tempfile::tempdir().unwrap();
    let file = copy_fixture("modelforge/config.json", tmp.path());
    let mut want: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let s = open(StoreSpec::ModelForge(file.clone()));
    s.write(&cred(
        "github_copilot/access_token",
        Kind::OauthAccess,
        "gho_rotated",
    ))
    .unwrap();
    s.write(&cred("ollama/api_key", Kind::ApiKey, "ollama-key"))
        .unwrap();
    want["providers"]["github_copilot"]["auth_data"]["access_token"] = json!("gho_rotated");
    want["providers"]["ollama"]["auth_data"] = json!({"api_key": "ollama-key"});
    let got: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(got, want);
    // Key order too (serde_json preserves it).
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        serde_json::to_string(&want).unwrap()
    );
    let c = s.read(&id("github_copilot/access_token")).unwrap().unwrap();
    assert_eq!(c.metadata["expires_at"], "2026-09-21T12:00:00+00:00");
    assert_eq!(c.metadata["expires_in"], 28800);
}

#[test]
fn modelforge_malformed_file_is_named_by_line_without_content() {
    let (_tmp, file, s) = store_on_file(
        "config.json",
        "{\n  \"providers\": {\n    \"openai\": {\"auth_data\": {\"api_key\": \"sk-LEAKME-9999\" \"x\"}}\n  }\n}\n",
        StoreSpec::ModelForge,
    );
    let e = s.read_all().unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{}:3:", file.display())), "{msg}");
    assert!(!msg.contains("LEAKME"), "{msg}");
    assert!(!s.probe().available);
}

#[test]
fn modelforge_bad_provider_among_good_ones() {
    let (_tmp, _file, s) = store_on_file(
        "config.json",
        "\u{feff}{\r\n \"providers\": {\r\n  \"bad\": {\"auth_data\": [\"sk-LEAKME\"]},\r\n  \"good\": {\"auth_data\": {\"api_key\": \"\", \"access_token\": \"ok-token\", \"unknown_field\": \"treated-as-secret\", \"n\": 1, \"nested\": {\"pat\": \"ghp_LEAKME\"}}}\r\n }\r\n}",
        StoreSpec::ModelForge,
    );
    let scan = s.read_all().unwrap();
    let mut ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    ids.sort();
    // A nested secret is an item of its own (issue 13), never metadata.
    assert_eq!(
        ids,
        [
            "good/access_token",
            "good/api_key",
            "good/nested.pat",
            "good/unknown_field"
        ]
    );
    let empty = scan
        .credentials
        .iter()
        .find(|c| c.id.name == "api_key")
        .unwrap();
    assert!(empty.secret.is_empty());
    // Unknown strings are never shown as metadata; numbers are.
    assert_eq!(empty.metadata.get("n"), Some(&json!(1)));
    assert!(!empty.metadata.contains_key("unknown_field"));
    assert!(!empty.metadata.contains_key("nested"));
    assert_eq!(scan.errors.len(), 1);
    assert!(scan.errors[0].location.contains("providers.bad.auth_data"));
    assert!(!scan.errors[0].error.contains("LEAKME"));
}

#[test]
fn modelforge_missing_file_is_not_found_and_created_on_write() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model-forge/config.json");
    let s = open(StoreSpec::ModelForge(file.clone()));
    let e = s.list().unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("model-forge/config.json"), "{e}");
    assert!(s.read(&id("openai/api_key")).unwrap().is_none());
    s.write(&cred("openai/api_key", Kind::ApiKey, &long_token()))
        .unwrap();
    assert_eq!(mode_of(&file), Some(0o600));
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        v["providers"]["openai"]["auth_data"]["api_key"],
        long_token()
    );
}

// ---------------------------------------------------------------- prompttrain

#[test]
fn prompttrain_round_trip_with_its_ids_restores_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    let before = snapshot_tree(&dir);
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    let mut set: Vec<Credential> = cross_format_set()
        .into_iter()
        .filter(|c| c.id.namespace.starts_with("account:") || c.id.namespace.starts_with("train:"))
        .collect();
    // A new key on an existing train, and an api key account from elsewhere.
    set.push(cred(
        "train:team-beta/client_key/1",
        Kind::ClientKey,
        "cnp_live_extra",
    ));
    set.push(cred(
        "account:acc_from_dotenv/api_key",
        Kind::ApiKey,
        "sk-ant-api03-x",
    ));
    round_trip(&*s, &set, false);
    assert_eq!(snapshot_tree(&dir), before);
}

#[test]
fn prompttrain_metadata_of_its_own_items_survives_a_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = copy_fixture("prompttrain/credentials", tmp.path());
    let src = open(StoreSpec::PromptTrain(src_dir));
    let dst_dir = tmp.path().join("target/credentials");
    let dst = open(StoreSpec::PromptTrain(dst_dir.clone()));
    let all = src.read_all().unwrap().credentials;
    for c in &all {
        dst.write(c).unwrap();
    }
    for c in &all {
        let back = dst.read(&c.id).unwrap().unwrap();
        assert!(
            back.same_as(c),
            "{}: {:?} vs {:?}",
            c.id,
            back.metadata,
            c.metadata
        );
    }
    // The copy uses the same file names (from account_name).
    let names: Vec<String> = std::fs::read_dir(dst_dir.join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        [
            "alpha.credentials.json",
            "beta-oauth.credentials.json",
            "delta-oauth.credentials.json",
            "gamma.credentials.json"
        ]
    );
    assert_eq!(mode_of(&dst_dir), Some(0o700));
    assert_eq!(mode_of(&dst_dir.join("accounts")), Some(0o700));
    assert_eq!(mode_of(&dst_dir.join("train-client-keys")), Some(0o700));
    for f in snapshot_tree(&dst_dir).keys() {
        assert_eq!(mode_of(&dst_dir.join(f)), Some(0o600), "{}", f.display());
    }
}

#[test]
fn prompttrain_update_keeps_every_other_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    let path = dir.join("accounts/beta-oauth.credentials.json");
    let mut want: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    s.write(&cred(
        "account:acc_beta_oauth/oauth_access_token",
        Kind::OauthAccess,
        "sk-ant-oat01-rotated",
    ))
    .unwrap();
    want["oauth"]["accessToken"] = json!("sk-ant-oat01-rotated");
    let got: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        serde_json::to_string(&want).unwrap()
    );
    // The fallback id of a file without accountId finds the same file.
    s.write(&cred(
        "account:acc_gamma/api_key",
        Kind::ApiKey,
        "sk-ant-api03-new",
    ))
    .unwrap();
    let gamma: Value = serde_json::from_slice(
        &std::fs::read(dir.join("accounts/gamma.credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(gamma["api_key"], "sk-ant-api03-new");
    assert!(gamma.get("accountId").is_none());
    assert_eq!(std::fs::read_dir(dir.join("accounts")).unwrap().count(), 5);
}

#[test]
fn prompttrain_unknown_fields_are_metadata_and_kept_on_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("credentials");
    std::fs::create_dir_all(dir.join("accounts")).unwrap();
    let path = dir.join("accounts/team.credentials.json");
    std::fs::write(
        &path,
        r#"{"type":"oauth","accountId":"acc_team","team":"research","client_api_key":"cnp_live_legacy_secret",
           "claudeAiOauth":{"accessToken":"sk-ant-oat01-nested_secret","note":"sk-ant-api03-prefixed_secret","plan":"max"},
           "oauth":{"accessToken":"a","refreshToken":"r","expiresAt":1,"subscriptionType":"max"}}"#,
    )
    .unwrap();
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    let c = s
        .read(&id("account:acc_team/oauth_refresh_token"))
        .unwrap()
        .unwrap();
    assert_eq!(
        c.metadata["extra"],
        json!({"team": "research", "claudeAiOauth": {"plan": "max"}})
    );
    assert_eq!(
        c.metadata["oauth_extra"],
        json!({"subscriptionType": "max"})
    );
    assert_eq!(c.metadata["expires_at"], 1);
    let shown = serde_json::to_string(&c.metadata).unwrap();
    for leak in ["legacy_secret", "nested_secret", "prefixed_secret"] {
        assert!(!shown.contains(leak), "secret-looking field in metadata");
    }
    s.write(&cred(
        "account:acc_team/oauth_refresh_token",
        Kind::OauthRefresh,
        "r2",
    ))
    .unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["team"], "research");
    assert_eq!(v["client_api_key"], "cnp_live_legacy_secret");
    assert_eq!(v["oauth"]["subscriptionType"], "max");
    assert_eq!(v["oauth"]["accessToken"], "a");
    assert_eq!(v["oauth"]["refreshToken"], "r2");
}

#[test]
fn prompttrain_malformed_file_among_good_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    let bad = dir.join("accounts/broken.credentials.json");
    std::fs::write(
        &bad,
        "{\n  \"type\": \"api_key\",\n  \"api_key\": \"sk-ant-LEAKME-0000\n",
    )
    .unwrap();
    let bad_keys = dir.join("train-client-keys/broken.client-keys.json");
    std::fs::write(&bad_keys, "{\"keys\": [\"cnp_live_LEAKME\", 7]}").unwrap();
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    let scan = s.read_all().unwrap();
    let want: Vec<String> = expected()
        .into_keys()
        .filter(|k| k.starts_with("account:") || k.starts_with("train:"))
        .collect();
    let mut got: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    got.sort();
    let mut want_with_good_key = want.clone();
    want_with_good_key.push("train:broken/client_key/0".into());
    want_with_good_key.sort();
    assert_eq!(got, want_with_good_key);
    let errors: Vec<String> = scan
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.location, e.error))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.contains(&format!("{}:4:0: malformed JSON", bad.display())),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("keys[1]")), "{errors:?}");
    assert!(errors.iter().all(|e| !e.contains("LEAKME")), "{errors:?}");

    // The binary shows the same: good items, the bad file by path, exit 0.
    let spec = format!("prompttrain:{}", dir.display());
    let (out, stdout, stderr) =
        run(credshift(&tmp.path().join("state")).args(["inventory", "--from", &spec, "--json"]));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("LEAKME"));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), want.len() + 1);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
}

#[test]
fn prompttrain_empty_secret_unicode_name_bom_and_crlf() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("credentials");
    std::fs::create_dir_all(dir.join("accounts")).unwrap();
    std::fs::write(
        dir.join("accounts/ключ-δ.credentials.json"),
        b"\xEF\xBB\xBF{\r\n  \"type\": \"api_key\",\r\n  \"api_key\": \"\"\r\n}\r\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts/big.credentials.json"),
        format!(
            "{{\"type\":\"oauth\",\"oauth\":{{\"accessToken\":\"{}\"}}}}",
            long_token()
        ),
    )
    .unwrap();
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    assert_eq!(
        ids_of(&*s),
        [
            "account:acc_big/oauth_access_token",
            "account:acc_ключ-δ/api_key"
        ]
    );
    let c = s.read(&id("account:acc_ключ-δ/api_key")).unwrap().unwrap();
    assert!(c.secret.is_empty());
    assert_eq!(c.metadata["account_name"], "ключ-δ");
    assert_eq!(
        value_of(&*s, "account:acc_big/oauth_access_token").unwrap(),
        long_token()
    );
}

#[test]
fn prompttrain_client_key_indices_stay_stable_across_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("credentials");
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    // Ids sort as text: 10 may arrive before 2.
    for i in [0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9] {
        s.write(&cred(
            &format!("train:t/client_key/{i}"),
            Kind::ClientKey,
            &format!("key-{i}"),
        ))
        .unwrap();
    }
    for i in 0..=10 {
        assert_eq!(
            value_of(&*s, &format!("train:t/client_key/{i}")).unwrap(),
            format!("key-{i}")
        );
    }
    assert!(s.delete(&id("train:t/client_key/1")).unwrap());
    assert_eq!(value_of(&*s, "train:t/client_key/2").unwrap(), "key-2");
    assert_eq!(value_of(&*s, "train:t/client_key/10").unwrap(), "key-10");
    assert!(value_of(&*s, "train:t/client_key/1").is_none());
    assert!(!ids_of(&*s).contains(&"train:t/client_key/1".to_string()));
    let path = dir.join("train-client-keys/t.client-keys.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["keys"][1], Value::Null);
    for i in (0..=10).rev() {
        s.delete(&id(&format!("train:t/client_key/{i}"))).unwrap();
    }
    assert!(!path.exists(), "a train file with no keys left is removed");
}

#[test]
fn prompttrain_deleting_the_last_secret_removes_the_account_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    let path = dir.join("accounts/delta-oauth.credentials.json");
    assert!(
        s.delete(&id("account:acc_delta_oauth/oauth_access_token"))
            .unwrap()
    );
    assert!(path.exists());
    assert!(
        s.delete(&id("account:acc_delta_oauth/oauth_refresh_token"))
            .unwrap()
    );
    assert!(!path.exists());
    assert!(dir.join("accounts/README.md").exists());
}

#[test]
fn prompttrain_refuses_ids_it_has_no_place_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    let s = open(StoreSpec::PromptTrain(dir));
    for bad in [
        "openai/api_key",
        "env/OPENAI_API_KEY",
        "account:acc_alpha/type",
        "account:acc_alpha/oauth.accessToken",
        "account:acc_alpha/slack.webhook_url",
        "train:team-alpha/client_key/x",
        "train:../../etc/client_key/0",
    ] {
        let c = cred(bad, Kind::ApiKey, "v");
        let reason = s.check(&c).unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(!reason.is_empty());
        assert!(s.write(&c).is_err(), "{bad} written");
    }
}

#[test]
fn prompttrain_batch_write_reports_per_item_and_never_reuses_a_file_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    let s = open(StoreSpec::PromptTrain(dir.clone()));
    let named = |i: &str| {
        cred(i, Kind::ApiKey, &format!("value-of-{i}"))
            .with_metadata(meta(json!({"account_name": "alpha"})))
    };
    let batch = [
        named("account:acc_one/api_key"),
        cred("openai/api_key", Kind::ApiKey, "refused"),
        named("account:acc_two/api_key"),
        cred(
            "train:team-alpha/client_key/2",
            Kind::ClientKey,
            "cnp_live_third",
        ),
    ];
    let results = s.write_many(&batch);
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    let e = results[1].as_ref().unwrap_err().to_string();
    assert!(e.starts_with("openai/api_key: "), "{e}");
    for c in [&batch[0], &batch[2], &batch[3]] {
        assert_eq!(value_of(&*s, &c.id.to_string()).unwrap(), c.secret.expose());
    }
    // The fixture's alpha keeps its file; the new ones get their own.
    assert_eq!(
        value_of(&*s, "account:acc_alpha/api_key").unwrap(),
        expected()["account:acc_alpha/api_key"]
    );
    assert!(dir.join("accounts/alpha-2.credentials.json").exists());
    assert!(dir.join("accounts/alpha-3.credentials.json").exists());
}

#[test]
fn prompttrain_two_files_with_one_account_id_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    std::fs::write(
        dir.join("accounts/zz-copy.credentials.json"),
        r#"{"type":"api_key","accountId":"acc_alpha","api_key":"sk-ant-copy"}"#,
    )
    .unwrap();
    let s = open(StoreSpec::PromptTrain(dir));
    let scan = s.read_all().unwrap();
    let alpha: Vec<_> = scan
        .credentials
        .iter()
        .filter(|c| c.id.to_string() == "account:acc_alpha/api_key")
        .collect();
    assert_eq!(alpha.len(), 1);
    assert_eq!(alpha[0].metadata["account_name"], "alpha");
    assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
    assert_eq!(scan.errors[0].location, "account:acc_alpha/api_key");
}

#[test]
fn prompttrain_missing_dir_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(StoreSpec::PromptTrain(tmp.path().join("no-such-dir")));
    let e = s.list().unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    let p = s.probe();
    assert!(p.available && !p.exists && p.writable);
}

// ---------------------------------------------------------------- env

#[test]
fn env_store_is_read_only_and_session_only() {
    let s = open(StoreSpec::Env("CREDSHIFT_FILE_STORES_TEST_".into()));
    let e = s.write(&cred("env/X", Kind::Other, "v")).unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");
    assert!(matches!(
        s.delete(&id("env/X")).unwrap_err(),
        StoreError::ReadOnly { .. }
    ));
    let p = s.probe();
    assert!(!p.writable && !p.persistent && p.readable);
    // Through the binary, with a variable set only for the child.
    let tmp = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(credshift(tmp.path())
        .env("CREDSHIFT_FILE_STORES_TEST_TOKEN", "tok-1234567890abcdef")
        .args([
            "get",
            "--from",
            "env:CREDSHIFT_FILE_STORES_TEST_",
            "env/CREDSHIFT_FILE_STORES_TEST_TOKEN",
        ]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "tok-1234567890abcdef\n");
}

// ---------------------------------------------------------------- modes

#[test]
fn files_written_over_a_world_readable_original_become_private() {
    let tmp = tempfile::tempdir().unwrap();
    let env = copy_fixture("dotenv/.env", tmp.path());
    let cfg = copy_fixture("modelforge/config.json", tmp.path());
    let dir = copy_fixture("prompttrain/credentials", tmp.path());
    let acct = dir.join("accounts/alpha.credentials.json");
    for f in [&env, &cfg, &acct] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    open(StoreSpec::Dotenv(env.clone()))
        .write(&cred("env/X", Kind::Other, "1"))
        .unwrap();
    open(StoreSpec::ModelForge(cfg.clone()))
        .write(&cred("openai/api_key", Kind::ApiKey, "2"))
        .unwrap();
    let pt = open(StoreSpec::PromptTrain(dir.clone()));
    assert!(
        pt.probe()
            .warnings
            .iter()
            .any(|w| w.contains("alpha.credentials.json")),
        "{:?}",
        pt.probe().warnings
    );
    pt.write(&cred("account:acc_alpha/api_key", Kind::ApiKey, "3"))
        .unwrap();
    for f in [&env, &cfg, &acct] {
        assert_eq!(mode_of(f), Some(0o600), "{}", f.display());
    }
}

// ---------------------------------------------------------------- properties

fn any_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::ApiKey),
        Just(Kind::OauthAccess),
        Just(Kind::OauthRefresh),
        Just(Kind::ClientKey),
        Just(Kind::ClientKeyHash),
        Just(Kind::Password),
        Just(Kind::PasswordHash),
        Just(Kind::Other),
    ]
}

fn any_metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::btree_map(
        "[a-z_]{1,8}",
        prop_oneof![
            any::<String>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..3,
    )
    .prop_map(|m| m.into_iter().collect())
}

/// Ids of any shape: `env/KEY` that fits a .env line, and anything else.
fn any_dotenv_id() -> impl Strategy<Value = CredentialId> {
    prop_oneof![
        "[A-Z_][A-Z0-9_]{0,10}".prop_map(|k| CredentialId::new("env", k)),
        ("[^/]{1,12}", ".{1,16}").prop_map(|(ns, n)| CredentialId::new(ns, n)),
    ]
}

fn unique_by_id(v: Vec<Credential>) -> Vec<Credential> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|c| seen.insert(c.id.clone()))
        .collect()
}

fn check_all_back(
    s: &dyn Store,
    creds: &[Credential],
    keeps_metadata: bool,
) -> Result<(), TestCaseError> {
    let scan = s
        .read_all()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    for c in creds {
        let back = scan.credentials.iter().find(|b| b.id == c.id);
        prop_assert!(back.is_some(), "{} missing", c.id);
        let back = back.unwrap();
        prop_assert!(back.secret.ct_eq(&c.secret), "{} value differs", c.id);
        if keeps_metadata {
            prop_assert!(back.same_as(c), "{} differs: {:?} vs {:?}", c.id, back, c);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any value (quotes, #, spaces, =, unicode, newlines), any id, kind and
    /// metadata survives a write into a .env that already holds the fixture.
    #[test]
    fn dotenv_parse_of_write_is_identity(
        items in prop::collection::vec((any_dotenv_id(), any_kind(), any::<String>(), any_metadata()), 1..8),
        updates in prop::collection::vec((any_kind(), any::<String>(), any_metadata()), 8),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let file = copy_fixture("dotenv/.env", tmp.path());
        let s = open(StoreSpec::Dotenv(file.clone()));
        let existing = s.read_all().unwrap().credentials;
        let creds = unique_by_id(
            items
                .into_iter()
                .map(|(i, k, v, m)| Credential::new(i, k, v).with_metadata(m))
                .filter(|c| !existing.iter().any(|f| f.id == c.id))
                .collect(),
        );
        // Half one by one (a fresh parse each), half as one batch.
        let (one_by_one, batch) = creds.split_at(creds.len() / 2);
        for c in one_by_one {
            s.write(c).unwrap();
        }
        prop_assert!(s.write_many(batch).iter().all(Result::is_ok));
        check_all_back(&*s, &creds, true)?;
        check_all_back(&*s, &existing, true)?;
        // A batch of updates: new values (other styles), kinds and metadata.
        let updated: Vec<Credential> = creds
            .iter()
            .zip(updates)
            .map(|(c, (k, v, m))| Credential::new(c.id.clone(), k, v).with_metadata(m))
            .collect();
        prop_assert!(s.write_many(&updated).iter().all(Result::is_ok));
        check_all_back(&*s, &updated, true)?;
        check_all_back(&*s, &existing, true)?;
        // A second store instance (a fresh parse) sees the same.
        check_all_back(&*open(StoreSpec::Dotenv(file.clone())), &updated, true)?;
        for c in &creds {
            prop_assert!(s.delete(&c.id).unwrap());
        }
        prop_assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            std::fs::read_to_string(fixture("dotenv/.env")).unwrap()
        );
    }

    #[test]
    fn modelforge_parse_of_write_is_identity(
        items in prop::collection::vec(("[^/]{1,12}", "[a-z_]{1,12}", any::<String>()), 1..8),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let file = copy_fixture("modelforge/config.json", tmp.path());
        let s = open(StoreSpec::ModelForge(file));
        let existing = s.read_all().unwrap().credentials;
        let creds = unique_by_id(
            items
                .into_iter()
                .map(|(p, f, v)| Credential::new(CredentialId::new(p, f), Kind::Other, v))
                .filter(|c| s.check(c).is_none())
                .collect(),
        );
        prop_assert!(s.write_many(&creds).iter().all(Result::is_ok));
        check_all_back(&*s, &creds, false)?;
        check_all_back(&*s, &existing, true)?;
    }

    #[test]
    fn prompttrain_parse_of_write_is_identity(
        accounts in prop::collection::vec(("[^/]{1,12}", 0usize..3, any::<String>()), 0..6),
        keys in prop::collection::vec(("[a-zA-Z0-9._:-]{1,10}", 0usize..12, any::<String>()), 0..6),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = copy_fixture("prompttrain/credentials", tmp.path());
        let s = open(StoreSpec::PromptTrain(dir));
        let existing = s.read_all().unwrap().credentials;
        let fields = ["api_key", "oauth_access_token", "oauth_refresh_token"];
        let creds = unique_by_id(
            accounts
                .into_iter()
                .map(|(a, f, v)| Credential::new(CredentialId::new(format!("account:{a}"), fields[f]), Kind::ApiKey, v))
                .chain(keys.into_iter().map(|(t, i, v)| {
                    Credential::new(CredentialId::new(format!("train:{t}"), format!("client_key/{i}")), Kind::ClientKey, v)
                }))
                .filter(|c| s.check(c).is_none())
                .filter(|c| !existing.iter().any(|f| f.id == c.id))
                .collect(),
        );
        let results = s.write_many(&creds);
        prop_assert!(results.iter().all(Result::is_ok), "{:?}", results);
        check_all_back(&*s, &creds, false)?;
        check_all_back(&*s, &existing, true)?;
    }
}
