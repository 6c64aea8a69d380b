//! The `vault:` store against a real OpenBao (`bao server -dev`, one per
//! test, see tests/support/vault.rs): round trips from every file seed
//! format, what `bao kv get` reads, check-and-set conflicts, a policy that
//! denies one path, rollback destroying what credshift wrote, cleanup of
//! Vault as a source, the lock secret, KV v1 refused, big secrets in
//! several requests, and no token or secret in any output, file or
//! custom_metadata.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use credshift::credential::{Credential, Kind};
use credshift::store::{self, LockMode, StoreSpec};
use credshift::unlock::KeyOptions;
use support::pg;
use support::vault::Bao;
use support::*;

fn values(spec: &str) -> BTreeMap<String, String> {
    contents(spec)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect()
}

/// id -> value of credshift's encrypted file at `spec`.
fn encrypted_values(spec: &str) -> BTreeMap<String, String> {
    let s = store::open(
        &spec.parse().unwrap(),
        &KeyOptions {
            passphrase: Some(PASSPHRASE.into()),
            ..KeyOptions::default()
        },
    )
    .unwrap();
    support::vault::store_values(s.as_ref())
}

const PASSPHRASE: &str = "vault test passphrase";

/// The secret path and field `bao kv get` uses for an id (default layout).
fn kv_place(mount_prefix: &str, id: &str) -> (String, String) {
    let (ns, name) = id.split_once('/').unwrap();
    (format!("{mount_prefix}/{ns}"), name.to_string())
}

#[test]
fn every_seed_format_round_trips_through_vault_exactly_and_bao_reads_it() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dotenv = copy_fixture("dotenv/.env", dir.path());
    let pt = copy_fixture("prompttrain/credentials", dir.path());
    let mf = copy_fixture("modelforge/config.json", dir.path());
    let db = fragments_db(&dir.path().join("fragments.sqlite"));
    let sources = [
        ("env", format!("dotenv:{}", dotenv.display()), ""),
        ("pt", format!("prompttrain:{}", pt.display()), ""),
        ("mf", format!("modelforge:{}", mf.display()), ""),
        ("lv", format!("laravel:sqlite:{}", db.display()), ""),
        (
            "envitem",
            format!("dotenv:{}", dotenv.display()),
            "?layout=item",
        ),
    ];
    for (prefix, src, layout) in sources {
        let want = if src.starts_with("laravel") {
            let s = store::open(
                &src.parse().unwrap(),
                &KeyOptions {
                    app_key: Some(fragments_app_key().into()),
                    ..KeyOptions::default()
                },
            )
            .unwrap();
            s.read_all()
                .unwrap()
                .credentials
                .into_iter()
                .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
                .collect()
        } else {
            values(&src)
        };
        assert!(want.len() >= 2, "{src}: {want:?}");
        let to = format!("{}{layout}", bao.spec(&format!("secret/apps/{prefix}")));
        let mut c = bao.credshift(&state);
        c.env("APP_KEY", fragments_app_key());
        c.args(["migrate", "--from", &src, "--to", &to, "--yes", "--json"]);
        let (out, stdout, stderr) = run(&mut c);
        assert_eq!(out.status.code(), Some(0), "{src}: {stdout}{stderr}");
        assert_eq!(bao.values(&to), want, "{src} into {to}");
        for (id, value) in &want {
            let (path, field) = if layout.is_empty() {
                kv_place(&format!("secret/apps/{prefix}"), id)
            } else {
                (format!("secret/apps/{prefix}/{id}"), "value".into())
            };
            assert_eq!(
                bao.kv_field(&path, &field).as_deref(),
                Some(value.as_str()),
                "bao kv get -field={field} {path}"
            );
        }
        // And back out, into credshift's encrypted file.
        let back = format!(
            "encrypted:{}",
            dir.path().join(format!("{prefix}.enc")).display()
        );
        let mut c = bao.credshift(&state);
        c.env("CREDSHIFT_PASSPHRASE", PASSPHRASE);
        c.args(["migrate", "--from", &to, "--to", &back, "--yes", "--json"]);
        let (out, stdout, stderr) = run(&mut c);
        assert_eq!(out.status.code(), Some(0), "{to}: {stdout}{stderr}");
        let got = encrypted_values(&back);
        assert_eq!(got, want, "{to} back out");
    }
}

#[test]
fn status_inventory_get_verify_and_exec_work_on_vault() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    write_env(
        &env,
        &[("OPENAI_API_KEY", "sk-proj-vaultExec0000000000001")],
    );
    let to = bao.spec("secret/apps/billing");
    let (code, stdout, stderr) =
        bao.migrate(&state, &format!("dotenv:{}", env.display()), &to, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = json(&stdout);
    let mid = report["migration_id"].as_str().unwrap().to_string();

    let (out, stdout, stderr) = run(bao
        .credshift(&state)
        .args(["status", "--store", &to, "--json"]));
    assert!(out.status.success(), "{stderr}");
    let status = json(&stdout);
    let ours = status["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spec"].as_str().is_some_and(|x| x.starts_with("vault:")))
        .unwrap_or_else(|| panic!("{stdout}"));
    let cap = &ours["capability"];
    assert_eq!(cap["writable"], true, "{stdout}");
    assert_eq!(cap["exists"], true, "{stdout}");
    assert!(
        cap["warnings"].to_string().contains("server version 2."),
        "{stdout}"
    );

    let (out, stdout, stderr) =
        run(bao
            .credshift(&state)
            .args(["inventory", "--from", &to, "--json"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("env/OPENAI_API_KEY"), "{stdout}");
    assert!(!stdout.contains("vaultExec0000000000001"), "{stdout}");

    let (out, stdout, stderr) =
        run(bao
            .credshift(&state)
            .args(["get", "--from", &to, "env/OPENAI_API_KEY"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "sk-proj-vaultExec0000000000001\n");

    let (out, stdout, stderr) =
        run(bao
            .credshift(&state)
            .args(["verify", "--migration-id", &mid, "--json"]));
    assert!(out.status.success(), "{stdout}{stderr}");

    // exec: the app gets its secret, never the Vault token.
    let (out, stdout, stderr) = run(bao.credshift(&state).args([
        "exec",
        "--from",
        &to,
        "--",
        "sh",
        "-c",
        "echo \"key=$OPENAI_API_KEY\"; echo \"token=${VAULT_TOKEN:-none}${BAO_TOKEN:-}\"",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("key=sk-proj-vaultExec0000000000001"),
        "{stdout}"
    );
    assert!(stdout.contains("token=none"), "{stdout}");
    assert!(!stderr.contains(&bao.token), "{stderr}");
}

#[test]
fn a_conflict_under_skip_leaves_the_other_writers_value_and_version() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    write_env(
        &env,
        &[
            ("OPENAI_API_KEY", "sk-proj-ours000000000000000001"),
            ("GITHUB_TOKEN", "ghp_ours0000000000000000000002"),
        ],
    );
    let src = format!("dotenv:{}", env.display());
    // Item layout: the other writer's secret is its own.
    bao.run(&[
        "kv",
        "put",
        "secret/app/env/OPENAI_API_KEY",
        "value=theirs-0001",
    ]);
    let to = format!("{}?layout=item", bao.spec("secret/app"));
    let (code, stdout, stderr) = bao.migrate(&state, &src, &to, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        bao.kv_field("secret/app/env/OPENAI_API_KEY", "value")
            .as_deref(),
        Some("theirs-0001")
    );
    let meta = bao.kv_metadata("secret/app/env/OPENAI_API_KEY").unwrap();
    assert_eq!(meta["data"]["current_version"], 1, "{meta}");
    assert_eq!(
        bao.kv_field("secret/app/env/GITHUB_TOKEN", "value")
            .as_deref(),
        Some("ghp_ours0000000000000000000002")
    );
    // Default layout: the other writer's field keeps its value, and the
    // version that held it is still there.
    bao.run(&[
        "kv",
        "put",
        "secret/app2/env",
        "OPENAI_API_KEY=theirs-0002",
        "OTHER=x",
    ]);
    let to = bao.spec("secret/app2");
    let (code, stdout, stderr) = bao.migrate(&state, &src, &to, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        bao.kv_field("secret/app2/env", "OPENAI_API_KEY").as_deref(),
        Some("theirs-0002")
    );
    assert_eq!(
        bao.kv_field("secret/app2/env", "OTHER").as_deref(),
        Some("x")
    );
    assert_eq!(
        bao.kv_field("secret/app2/env", "GITHUB_TOKEN").as_deref(),
        Some("ghp_ours0000000000000000000002")
    );
    let v1 = bao.run(&[
        "kv",
        "get",
        "-version=1",
        "-field=OPENAI_API_KEY",
        "secret/app2/env",
    ]);
    assert_eq!(v1, "theirs-0002");
}

#[test]
fn a_value_changed_between_plan_and_write_is_a_check_and_set_conflict() {
    let Some(bao) = Bao::start() else { return };
    let spec = bao.spec("secret/cas");
    bao.run(&[
        "kv",
        "put",
        "secret/cas/openai",
        "api_key=before",
        "org=o-1",
    ]);
    let s = bao.open(&spec);
    // The plan reads the target...
    let scan = s.read_all().unwrap();
    assert_eq!(scan.credentials.len(), 2);
    // ...someone writes in between...
    bao.run(&["kv", "patch", "secret/cas/openai", "api_key=someone-else"]);
    // ...and credshift's overwrite is refused, nothing clobbered.
    let c = Credential::new(id("openai/api_key"), Kind::ApiKey, "sk-credshift-000001");
    let e = s.write(&c).unwrap_err().to_string();
    assert!(e.contains("check-and-set"), "{e}");
    assert!(
        !e.contains("sk-credshift") && !e.contains(&bao.token),
        "{e}"
    );
    assert_eq!(
        bao.kv_field("secret/cas/openai", "api_key").as_deref(),
        Some("someone-else")
    );
    // A secret created by someone after the plan saw it absent: conflict too.
    let s = bao.open(&spec);
    s.read_all().unwrap();
    bao.run(&["kv", "put", "secret/cas/anthropic", "key=theirs"]);
    let c = Credential::new(id("anthropic/key"), Kind::ApiKey, "sk-ant-credshift-01");
    assert!(s.write(&c).is_err());
    assert_eq!(
        bao.kv_field("secret/cas/anthropic", "key").as_deref(),
        Some("theirs")
    );
    // Read fresh, the same write merges: other fields stay.
    let s = bao.open(&spec);
    s.read_all().unwrap();
    s.write(&Credential::new(
        id("openai/api_key"),
        Kind::ApiKey,
        "sk-credshift-000001",
    ))
    .unwrap();
    assert_eq!(
        bao.kv_field("secret/cas/openai", "org").as_deref(),
        Some("o-1")
    );
    assert_eq!(
        s.read(&id("openai/api_key"))
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        "sk-credshift-000001"
    );
}

#[test]
fn a_policy_that_denies_one_path_fails_those_items_only() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    let pairs = [
        ("OPENAI_API_KEY", "sk-proj-policy00000000000001"),
        ("GITHUB_TOKEN", "ghp_policy000000000000000002"),
        ("SLACK_BOT_TOKEN", "xoxb-policy000000000000003"),
        ("STRIPE_KEY", "sk_live_policy0000000000004"),
    ];
    write_env(&env, &pairs);
    let token = bao.token_with_policy(
        "app-writer",
        r#"
path "secret/data/app/*" { capabilities = ["create", "read", "update", "patch", "delete"] }
path "secret/metadata/app/*" { capabilities = ["read", "list", "patch", "delete"] }
path "secret/metadata/app" { capabilities = ["list"] }
path "secret/metadata/app/" { capabilities = ["list"] }
path "secret/destroy/app/*" { capabilities = ["update"] }
path "secret/subkeys/app/*" { capabilities = ["read"] }
path "secret/data/app/env/GITHUB_TOKEN" { capabilities = ["deny"] }
"#,
    );
    let to = format!("{}?layout=item", bao.spec("secret/app"));
    let file = bao.token_file(&token, "limited-token");
    let mut c = credshift(&state);
    c.env("HOME", bao.home.path()).args([
        "migrate",
        "--vault-token-file",
        file.to_str().unwrap(),
        "--from",
        &format!("dotenv:{}", env.display()),
        "--to",
        &to,
        "--yes",
        "--json",
    ]);
    let (out, stdout, stderr) = run(&mut c);
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    let text = format!("{stdout}{stderr}");
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains("secret/data/app/env/GITHUB_TOKEN"), "{text}");
    assert!(text.contains("needs create and update"), "{text}");
    assert!(!text.contains(&token), "the token leaked: {text}");
    for (k, v) in pairs {
        let got = bao.kv_field(&format!("secret/app/env/{k}"), "value");
        if k == "GITHUB_TOKEN" {
            assert_eq!(got, None);
        } else {
            assert_eq!(got.as_deref(), Some(v), "{k}");
        }
    }
}

/// A token that may not destroy still rolls back: the old value is put
/// back and what credshift created is removed (destroying is best effort,
/// as docs/stores.md says); the migrated values then stay in the history.
#[test]
fn a_token_without_destroy_still_rolls_back_and_leaves_the_history() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    write_env(
        &env,
        &[
            ("OPENAI_API_KEY", "sk-proj-nodestroy0000000001"),
            ("GITHUB_TOKEN", "ghp_nodestroy00000000000002"),
        ],
    );
    bao.run(&["kv", "put", "secret/nd/env", "OPENAI_API_KEY=old-value-1"]);
    let token = bao.token_with_policy(
        "no-destroy",
        r#"
path "secret/data/nd/*" { capabilities = ["create", "read", "update", "patch", "delete"] }
path "secret/metadata/nd/*" { capabilities = ["read", "list", "patch", "delete"] }
path "secret/metadata/nd" { capabilities = ["list"] }
path "secret/metadata/nd/" { capabilities = ["list"] }
path "secret/subkeys/nd/*" { capabilities = ["read"] }
path "secret/destroy/nd/*" { capabilities = ["deny"] }
"#,
    );
    let file = bao.token_file(&token, "no-destroy-token");
    let cmd = |args: &[&str]| {
        let mut c = credshift(&state);
        c.env("HOME", bao.home.path()).args(args).args([
            "--vault-token-file",
            file.to_str().unwrap(),
            "--yes",
            "--json",
        ]);
        let (out, stdout, stderr) = run(&mut c);
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(!stdout.contains(&token) && !stderr.contains(&token));
        json(&stdout)
    };
    let from = format!("dotenv:{}", env.display());
    let to = bao.spec("secret/nd");
    let report = cmd(&[
        "migrate",
        "--from",
        &from,
        "--to",
        &to,
        "--on-conflict",
        "overwrite",
    ]);
    let mid = report["migration_id"].as_str().unwrap().to_string();
    let back = cmd(&["rollback", "--migration-id", &mid]);
    // The refused destroy is in the report, not dropped.
    let notices = back["notices"].to_string();
    assert!(notices.contains("not destroyed"), "{notices}");
    assert!(
        !notices.contains("sk-proj") && !notices.contains("ghp_"),
        "{notices}"
    );
    assert_eq!(
        bao.kv_field("secret/nd/env", "OPENAI_API_KEY").as_deref(),
        Some("old-value-1")
    );
    assert_eq!(bao.kv_field("secret/nd/env", "GITHUB_TOKEN"), None);
    let kept = bao
        .every_version("secret/nd/env")
        .into_iter()
        .filter(|(_, text)| text.contains("sk-proj-nodestroy"))
        .count();
    assert!(kept > 0, "nothing may be destroyed without the capability");
    // A secret the migration created whole: emptied, it cannot be removed
    // with its history (the versions holding the values remain), so it is
    // soft-deleted and reads as absent, as after `kv delete`.
    let fresh = bao.spec("secret/nd/fresh");
    let report = cmd(&["migrate", "--from", &from, "--to", &fresh]);
    let mid = report["migration_id"].as_str().unwrap().to_string();
    cmd(&["rollback", "--migration-id", &mid]);
    let meta = bao
        .kv_metadata("secret/nd/fresh/env")
        .expect("history kept");
    let current = meta["data"]["current_version"].to_string();
    let latest = &meta["data"]["versions"][&current];
    assert!(latest.is_object(), "{meta}");
    assert_ne!(latest["deletion_time"], "", "{meta}");
    assert_eq!(bao.kv_field("secret/nd/fresh/env", "GITHUB_TOKEN"), None);
}

#[test]
fn rollback_restores_the_old_value_and_destroys_the_versions_credshift_wrote() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    write_env(
        &env,
        &[
            ("OPENAI_API_KEY", "sk-proj-migrated000000000001"),
            ("GITHUB_TOKEN", "ghp_migrated00000000000000002"),
        ],
    );
    bao.run(&[
        "kv",
        "put",
        "secret/rb/env",
        "OPENAI_API_KEY=old-value-1",
        "KEEP=k",
    ]);
    let to = bao.spec("secret/rb");
    let (code, stdout, stderr) = bao.migrate(
        &state,
        &format!("dotenv:{}", env.display()),
        &to,
        &["--on-conflict", "overwrite"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mid = json(&stdout)["migration_id"].as_str().unwrap().to_string();
    assert_eq!(
        bao.kv_field("secret/rb/env", "OPENAI_API_KEY").as_deref(),
        Some("sk-proj-migrated000000000001")
    );
    let (out, stdout, stderr) =
        run(bao
            .credshift(&state)
            .args(["rollback", "--migration-id", &mid, "--yes", "--json"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        bao.kv_field("secret/rb/env", "OPENAI_API_KEY").as_deref(),
        Some("old-value-1")
    );
    assert_eq!(bao.kv_field("secret/rb/env", "KEEP").as_deref(), Some("k"));
    assert_eq!(bao.kv_field("secret/rb/env", "GITHUB_TOKEN"), None);
    // No version still holds a migrated value.
    let versions = bao.every_version("secret/rb/env");
    assert!(versions.len() >= 3, "{versions:?}");
    for (v, text) in versions {
        assert!(
            !text.contains("migrated0000"),
            "version {v} still holds it: {text}"
        );
    }
    // A secret the migration created is gone entirely.
    let (code, stdout, stderr) = bao.migrate(
        &state,
        &format!("dotenv:{}", env.display()),
        &bao.spec("secret/fresh"),
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mid = json(&stdout)["migration_id"].as_str().unwrap().to_string();
    let (out, _, stderr) =
        run(bao
            .credshift(&state)
            .args(["rollback", "--migration-id", &mid, "--yes", "--json"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(bao.kv_metadata("secret/fresh/env"), None);
}

/// A second migration overwriting (`--on-conflict overwrite`) a value an
/// earlier migration wrote keeps the earlier version in KV v2's history,
/// as any Vault client's write does (the first migration's rollback and
/// a Vault user may still want it). Rolling the second back destroys only
/// what it wrote; rolling the first back then destroys what the first
/// wrote. Both layouts.
#[test]
fn a_forward_overwrite_keeps_the_earlier_migrations_version_and_each_rollback_destroys_its_own() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = dir.path().join("first.env");
    let second = dir.path().join("second.env");
    let token = ("GITHUB_TOKEN", "ghp_both0000000000000000002");
    write_env(
        &first,
        &[("OPENAI_API_KEY", "sk-first-run-0000000001"), token],
    );
    write_env(
        &second,
        &[("OPENAI_API_KEY", "sk-second-run-000000003"), token],
    );
    for (n, layout) in ["", "?layout=item"].into_iter().enumerate() {
        let prefix = format!("secret/forward{n}");
        let to = format!("{}{layout}", bao.spec(&prefix));
        let (path, field) = match layout {
            "" => (format!("{prefix}/env"), "OPENAI_API_KEY"),
            _ => (format!("{prefix}/env/OPENAI_API_KEY"), "value"),
        };
        let holding = |value: &str| -> Vec<u64> {
            bao.every_version(&path)
                .into_iter()
                .filter(|(_, text)| text.contains(value))
                .map(|(v, _)| v)
                .collect()
        };
        let migrate = |env: &std::path::Path, args: &[&str]| -> String {
            let from = format!("dotenv:{}", env.display());
            let (code, stdout, stderr) = bao.migrate(&state, &from, &to, args);
            assert_eq!(code, 0, "{layout}: {stdout}{stderr}");
            json(&stdout)["migration_id"].as_str().unwrap().to_string()
        };
        let rollback = |mid: &str| {
            let (out, stdout, stderr) = run(bao.credshift(&state).args([
                "rollback",
                "--migration-id",
                mid,
                "--yes",
                "--json",
            ]));
            assert!(out.status.success(), "{layout}: {stdout}{stderr}");
        };
        let first_id = migrate(&first, &[]);
        // The versions the first migration wrote holding its value (the
        // engine may write an item's fields in more than one batch).
        let written_first = holding("sk-first-run-");
        assert!(!written_first.is_empty(), "{layout}");
        let second_id = migrate(&second, &["--on-conflict", "overwrite"]);
        assert_eq!(
            bao.kv_field(&path, field).as_deref(),
            Some("sk-second-run-000000003"),
            "{layout}"
        );
        assert_eq!(
            holding("sk-first-run-"),
            written_first,
            "{layout}: the versions the first migration wrote must stay in the history"
        );
        rollback(&second_id);
        assert_eq!(
            bao.kv_field(&path, field).as_deref(),
            Some("sk-first-run-0000000001"),
            "{layout}"
        );
        assert_eq!(
            holding("sk-second-run-"),
            Vec::<u64>::new(),
            "{layout}: the rolled-back value must not survive in the history"
        );
        // The first migration's versions, and the restore's.
        let current = bao.kv_metadata(&path).unwrap()["data"]["current_version"]
            .as_u64()
            .unwrap();
        let mut kept = written_first.clone();
        kept.push(current);
        assert_eq!(holding("sk-first-run-"), kept, "{layout}");
        rollback(&first_id);
        assert_eq!(
            bao.kv_metadata(&path),
            None,
            "{layout}: the secret the first migration created is gone with its history"
        );
    }
}

#[test]
fn cleanup_of_vault_as_a_source_destroys_only_the_verified_fields() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let json_in = dir.path().join("in.json");
    // `limits` holds no string (not a credential); `org` meets a different
    // value at the target (skipped, so never verified).
    std::fs::write(
        &json_in,
        r#"{"api_key":"sk-src-000000000000001","org":"o-1","limits":{"rpm":10}}"#,
    )
    .unwrap();
    bao.run(&[
        "kv",
        "put",
        "secret/src/openai",
        &format!("@{}", json_in.display()),
    ]);
    bao.run(&["kv", "patch", "secret/src/openai", "org=o-2"]);
    let enc = dir.path().join("out.enc");
    let to = format!("encrypted:{}", enc.display());
    let opts = KeyOptions {
        passphrase: Some(PASSPHRASE.into()),
        ..KeyOptions::default()
    };
    let target = store::open(&to.parse().unwrap(), &opts).unwrap();
    target
        .write(&Credential::new(id("openai/org"), Kind::Other, "o-target"))
        .unwrap();
    let mut c = bao.credshift(&state);
    c.env("CREDSHIFT_PASSPHRASE", PASSPHRASE).args([
        "migrate",
        "--from",
        &bao.spec("secret/src"),
        "--to",
        &to,
        "--delete-source",
        "--yes",
        "--json",
    ]);
    let (out, stdout, stderr) = run(&mut c);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        target
            .read(&id("openai/api_key"))
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        "sk-src-000000000000001"
    );
    assert_eq!(bao.kv_field("secret/src/openai", "api_key"), None);
    assert_eq!(
        bao.kv_field("secret/src/openai", "org").as_deref(),
        Some("o-2")
    );
    assert!(bao.kv_field("secret/src/openai", "limits").is_some());
    let current = bao.kv_metadata("secret/src/openai").unwrap()["data"]["current_version"]
        .as_u64()
        .unwrap();
    assert_eq!(current, 3, "one patch removed the field");
    // Version 1 also holds org's older value o-1, in no other version: a
    // destroy would take it too, so version 1 stays (and the moved value
    // with it), and the report says so, naming the secret and field.
    for (v, text) in bao.every_version("secret/src/openai") {
        assert_eq!(text.contains("sk-src-0000"), v == 1, "version {v}: {text}");
    }
    let kept = bao.every_version("secret/src/openai");
    assert!(
        kept.iter().any(|(v, text)| *v == 1 && text.contains("o-1")),
        "org's older value was destroyed: {kept:?}"
    );
    let report = json(&stdout);
    let notices = report["notices"].to_string();
    assert!(
        notices.contains("version 1 kept") && notices.contains("org"),
        "{notices}"
    );
    assert!(
        !notices.contains("sk-src") && !notices.contains("o-1"),
        "{notices}"
    );
}

#[test]
fn a_big_secret_is_written_in_cas_chained_requests_and_reads_back_whole() {
    let Some(bao) = Bao::start() else { return };
    let s = bao.open(&bao.spec("secret/big"));
    let creds: Vec<Credential> = (0..1200)
        .map(|i| {
            Credential::new(
                id(&format!("env/KEY_{i:04}")),
                Kind::Other,
                format!("value-{i:04}-{}", "x".repeat(40)),
            )
        })
        .collect();
    let results = s.write_many(&creds);
    assert!(results.iter().all(|r| r.is_ok()));
    let meta = bao.kv_metadata("secret/big/env").unwrap();
    // 1,200 fields at 400 a request: a POST and two PATCHes.
    assert_eq!(meta["data"]["current_version"], 3, "{meta}");
    let back = s.read_many(&creds.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
    for (c, b) in creds.iter().zip(back) {
        assert_eq!(b.unwrap().unwrap().secret.expose(), c.secret.expose());
    }
    assert_eq!(bao.values(&bao.spec("secret/big")).len(), 1200);
}

#[test]
fn the_lock_secret_excludes_a_second_run_and_a_dead_holder_is_stale() {
    let Some(bao) = Bao::start() else { return };
    let spec = bao.spec("secret/locked");
    let a = bao.open(&spec);
    let b = bao.open(&spec);
    let held = a
        .lock(LockMode::Exclusive, Duration::from_secs(1))
        .unwrap()
        .expect("a lock");
    let e = b
        .lock(LockMode::Exclusive, Duration::from_millis(600))
        .err()
        .expect("held")
        .to_string();
    assert!(
        e.contains("is locked by") && e.contains(&std::process::id().to_string()),
        "{e}"
    );
    drop(held);
    assert_eq!(bao.kv_metadata("secret/locked/.credshift-lock"), None);
    let again = b.lock(LockMode::Exclusive, Duration::from_secs(1)).unwrap();
    assert!(again.is_some());
    drop(again);
    // A holder on this host whose process is gone.
    let host = bao.run(&["version"]); // any command: the server is up
    assert!(!host.is_empty());
    let hostname = String::from_utf8(Command::new("hostname").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    bao.run(&[
        "kv",
        "put",
        "secret/locked/.credshift-lock",
        "pid=999999",
        &format!("host={hostname}"),
        "since=2020-01-01T00:00:00Z",
        "nonce=dead",
    ]);
    let taken = b.lock(LockMode::Exclusive, Duration::from_secs(1)).unwrap();
    assert!(taken.is_some());
}

#[test]
fn a_kv_v1_mount_is_refused_clearly() {
    let Some(bao) = Bao::start() else { return };
    bao.run(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]);
    let s = bao.open(&bao.spec("kv1/apps"));
    let cap = s.probe();
    assert!(!cap.available);
    let reason = cap.reason.unwrap();
    assert!(reason.contains("KV version 1"), "{reason}");
    let e = s
        .write(&Credential::new(id("a/b"), Kind::Other, "v"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("KV version 1"), "{e}");
}

#[test]
fn crash_at_every_journal_record_then_resume_or_rollback() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("a.env");
    let pairs = [
        ("OPENAI_API_KEY", "sk-proj-crash0000000000000001"),
        ("GITHUB_TOKEN", "ghp_crash00000000000000000002"),
        ("SLACK_BOT_TOKEN", "xoxb-crash0000000000000003"),
    ];
    write_env(&env, &pairs);
    let src = format!("dotenv:{}", env.display());
    // Both layouts: one secret patched field by field, or a secret per
    // item created, overwritten and (on rollback) destroyed whole.
    for layout in ["", "?layout=item"] {
        let item = !layout.is_empty();
        let run_case = |k: Option<usize>, prefix: &str| {
            if item {
                bao.run(&[
                    "kv",
                    "put",
                    &format!("secret/{prefix}/env/GITHUB_TOKEN"),
                    "value=old-1",
                ]);
                bao.run(&["kv", "put", &format!("secret/{prefix}/env/KEEP"), "value=k"]);
            } else {
                bao.run(&[
                    "kv",
                    "put",
                    &format!("secret/{prefix}/env"),
                    "GITHUB_TOKEN=old-1",
                    "KEEP=k",
                ]);
            }
            let state = dir.path().join(format!("state-{prefix}"));
            let mut c = bao.credshift(&state);
            c.args(["migrate", "--from", &src, "--to"])
                .arg(format!("{}{layout}", bao.spec(&format!("secret/{prefix}"))))
                .args(["--yes", "--json", "--on-conflict", "overwrite"]);
            if let Some(k) = k {
                c.env("CREDSHIFT_CRASH_AT", k.to_string());
            }
            let (out, stdout, _) = run(&mut c);
            (out, stdout, state)
        };
        let tag = if item { "i" } else { "s" };
        let (out, stdout, state) = run_case(None, &format!("clean{tag}"));
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let mid = json(&stdout)["migration_id"].as_str().unwrap().to_string();
        let records =
            std::fs::read_to_string(state.join("migrations").join(&mid).join("journal.jsonl"))
                .unwrap()
                .lines()
                .count();
        let full = bao.values(&format!(
            "{}{layout}",
            bao.spec(&format!("secret/clean{tag}"))
        ));
        assert_eq!(full.len(), 4, "{full:?}");
        for k in 1..records {
            for mode in ["rollback", "resume"] {
                let prefix = format!("k{k}{mode}{tag}");
                let spec = format!("{}{layout}", bao.spec(&format!("secret/{prefix}")));
                let (out, _, state) = run_case(Some(k), &prefix);
                assert_eq!(out.status.code(), None, "{layout} K={k}: aborted");
                if let Err(e) = bao.recover_twice(&state, mode) {
                    panic!("{layout} K={k}: {e}");
                }
                let got = bao.values(&spec);
                if mode == "resume" {
                    assert_eq!(got, full, "{layout} K={k} resume");
                    continue;
                }
                let want: BTreeMap<String, String> = [
                    ("env/GITHUB_TOKEN".to_string(), "old-1".to_string()),
                    ("env/KEEP".to_string(), "k".to_string()),
                ]
                .into();
                assert_eq!(got, want, "{layout} K={k} rollback");
                // No version anywhere still holds a migrated value.
                let paths: Vec<String> = if item {
                    ["OPENAI_API_KEY", "GITHUB_TOKEN", "SLACK_BOT_TOKEN"]
                        .iter()
                        .map(|n| format!("secret/{prefix}/env/{n}"))
                        .collect()
                } else {
                    vec![format!("secret/{prefix}/env")]
                };
                for path in paths {
                    for (v, text) in bao.every_version(&path) {
                        assert!(
                            !text.contains("crash0000"),
                            "{layout} K={k}: {path} version {v} still holds it: {text}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn no_token_or_secret_reaches_any_output_journal_or_custom_metadata() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    let secret = "sk-proj-CANARYvault9f8e7d6c5b4a3928";
    write_env(&env, &[("OPENAI_API_KEY", secret), ("APP_NAME", "billing")]);
    let to = bao.spec("secret/canary");
    let mut outputs = Vec::new();
    let (code, stdout, stderr) =
        bao.migrate(&state, &format!("dotenv:{}", env.display()), &to, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    outputs.push((
        "migrate".to_string(),
        format!("{stdout}{stderr}").into_bytes(),
    ));
    for args in [
        vec!["status", "--store", to.as_str(), "--json"],
        vec!["inventory", "--from", to.as_str(), "--json"],
        vec!["history", "--json"],
    ] {
        let (_, stdout, stderr) = run(bao.credshift(&state).args(&args));
        outputs.push((
            args[0].to_string(),
            format!("{stdout}{stderr}").into_bytes(),
        ));
    }
    // A failing run (wrong token) says why without the token it was given.
    let (_, stdout, stderr) = run(credshift(&state)
        .env("VAULT_TOKEN", "s.wrongTOKENcanary000000")
        .args(["inventory", "--from", &to]));
    assert!(
        !format!("{stdout}{stderr}").contains("wrongTOKENcanary"),
        "{stderr}"
    );
    let meta = bao.kv_metadata("secret/canary/env").unwrap();
    outputs.push(("custom_metadata".into(), meta.to_string().into_bytes()));
    outputs.extend(canary::file_haystacks(&state));
    canary::assert_absent(secret, &outputs);
    canary::assert_absent(&bao.token, &outputs);
    // The provenance entry names the migration and its source, redacted.
    let entry: serde_json::Value = serde_json::from_str(
        meta["data"]["custom_metadata"]["credshift"]
            .as_str()
            .unwrap_or_else(|| panic!("{meta}")),
    )
    .unwrap();
    assert_eq!(
        entry["migration_id"], report["migration_id"],
        "{entry} {report}"
    );
    assert!(
        entry["migration_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{entry}"
    );
    assert_eq!(
        entry["from"].as_str(),
        Some(format!("dotenv:{}", env.display()).as_str()),
        "{entry}"
    );
}

#[test]
fn the_identity_key_names_the_cluster_mount_and_prefix_without_secrets() {
    let Some(bao) = Bao::start() else { return };
    let opts = KeyOptions {
        vault_token_file: Some(bao.token_file(&bao.token, "id-token")),
        ..KeyOptions::default()
    };
    let key = |spec: &str| {
        let spec: StoreSpec = spec.parse().unwrap();
        credshift::store::vault::VaultStore::new(&spec, &opts)
            .unwrap()
            .identity_key()
            .unwrap()
    };
    let a = key(&bao.spec("secret/apps/billing"));
    // The same place through another address of the same server.
    let other = bao.addr.replace("127.0.0.1", "localhost");
    let b = key(&format!("openbao:{other}/secret/apps/billing"));
    assert_eq!(a, b);
    assert!(a.contains("secret/apps/billing"), "{a}");
    assert_ne!(a, key(&bao.spec("secret/apps/payroll")));
    // The two layouts write overlapping paths under one prefix, so they
    // are one store: a migration between them is refused, not run.
    assert_eq!(
        a,
        key(&format!("{}?layout=item", bao.spec("secret/apps/billing")))
    );
    assert!(!a.contains(&bao.token) && !a.contains("127.0.0.1"), "{a}");
}

#[test]
fn backup_of_vault_restores_into_another_prefix_exactly() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    bao.run(&[
        "kv",
        "put",
        "secret/bk/openai",
        "api_key=sk-backup-0001",
        "org=o-1",
    ]);
    bao.run(&["kv", "put", "secret/bk/github", "token=ghp_backup0002"]);
    let from = bao.spec("secret/bk");
    let file = dir.path().join("vault-backup.enc");
    let (out, stdout, stderr) = run(bao.credshift(&state).args([
        "backup",
        "--from",
        &from,
        "--out",
        file.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !std::fs::read(&file)
            .unwrap()
            .windows(14)
            .any(|w| w == b"sk-backup-0001")
    );
    let to = bao.spec("secret/restored");
    let (out, stdout, stderr) = run(bao.credshift(&state).args([
        "restore",
        "--backup",
        file.to_str().unwrap(),
        "--to",
        &to,
        "--yes",
    ]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(bao.values(&to), bao.values(&from));
    assert_eq!(bao.values(&to).len(), 3);
    assert_eq!(
        bao.kv_field("secret/restored/openai", "api_key").as_deref(),
        Some("sk-backup-0001")
    );
}

#[test]
fn vault_addr_adds_vault_to_the_default_stores_the_wizard_offers() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let specs = |addr_var: Option<&str>| -> Vec<String> {
        let mut c = bao.credshift(dir.path());
        c.env_remove("VAULT_ADDR").env_remove("BAO_ADDR");
        if let Some(v) = addr_var {
            c.env(v, &bao.addr);
        }
        let (out, stdout, stderr) = run(c.args(["status", "--json"]));
        assert!(out.status.success(), "{stderr}");
        json(&stdout)["stores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["spec"].as_str().unwrap().to_string())
            .collect()
    };
    let want = format!("vault:{}/secret/credshift", bao.addr);
    assert!(!specs(None).contains(&want));
    assert!(specs(Some("VAULT_ADDR")).contains(&want));
    assert!(specs(Some("BAO_ADDR")).contains(&want));
}

#[test]
fn the_dry_run_proposes_the_item_layout_for_a_secret_past_one_kv_entry() {
    let Some(bao) = Bao::start() else { return };
    let s = bao.open(&bao.spec("secret/huge"));
    let _ = s.read_all();
    let big = |i: usize| {
        Credential::new(
            id(&format!("env/BLOB_{i}")),
            Kind::Other,
            "b".repeat(400 * 1024),
        )
    };
    assert_eq!(s.check(&big(0)), None);
    assert_eq!(s.check(&big(1)), None);
    // Checked again (the plan runs twice): still counted once.
    assert_eq!(s.check(&big(1)), None);
    let why = s.check(&big(2)).expect("past one entry");
    assert!(why.contains("?layout=item"), "{why}");
    let item = bao.open(&format!("{}?layout=item", bao.spec("secret/huge")));
    assert_eq!(item.check(&big(2)), None);
    // The dry run a user runs says so, and the item layout takes them all.
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("big.env");
    let blob = "b".repeat(400 * 1024);
    write_env(
        &env,
        &[("BLOB_0", &blob), ("BLOB_1", &blob), ("BLOB_2", &blob)],
    );
    let src = format!("dotenv:{}", env.display());
    let state = dir.path().join("state");
    let (code, stdout, stderr) =
        bao.migrate(&state, &src, &bao.spec("secret/huge2"), &["--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let plan = json(&stdout);
    assert_eq!(
        plan["counts"]["invalid"],
        1,
        "{}",
        &stdout[..stdout.len().min(2000)]
    );
    assert!(
        stdout.contains("use ?layout=item"),
        "{}",
        &stdout[..stdout.len().min(2000)]
    );
    let to = format!("{}?layout=item", bao.spec("secret/huge2"));
    let (code, stdout, stderr) = bao.migrate(&state, &src, &to, &["--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["counts"]["copy"], 3);
}

#[test]
fn agent_prompttrain_database_rows_round_trip_through_vault() {
    let Some(bao) = Bao::start() else { return };
    let Some(db) = pg::fresh_db() else { return };
    pg::run_sql_file(&db.url(), &fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&db.url(), &fixture("prompttrain-db/data.sql"));
    let key = std::fs::read_to_string(fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"))
        .unwrap()
        .trim()
        .to_string();
    let src = format!("prompttrain-db:{}", db.url());
    let source = store::open(
        &src.parse().unwrap(),
        &KeyOptions {
            prompttrain_key: Some(key.as_str().into()),
            ..KeyOptions::default()
        },
    )
    .unwrap();
    let want: BTreeMap<String, String> = source
        .read_all()
        .unwrap()
        .credentials
        .into_iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect();
    let expected = expected();
    assert!(want.len() >= 4, "{want:?}");
    // The accounts' values are the fixture's; client keys travel as their
    // hashes (the database keeps no more).
    for (id, v) in want.iter().filter(|(id, _)| id.starts_with("account:")) {
        assert_eq!(expected.get(id), Some(v), "{id}");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let to = bao.spec("secret/pt-db");
    let mut c = bao.credshift(&state);
    c.env("CREDENTIAL_ENCRYPTION_KEY", &key)
        .args(["migrate", "--from", &src, "--to", &to, "--yes", "--json"]);
    let (out, stdout, stderr) = run(&mut c);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(bao.values(&to), want);
    for (id, value) in &want {
        let (path, field) = kv_place("secret/pt-db", id);
        assert_eq!(
            bao.kv_field(&path, &field).as_deref(),
            Some(value.as_str()),
            "{id}"
        );
    }
    // And back out, into credshift's encrypted file.
    let back = format!("encrypted:{}", dir.path().join("pt-db.enc").display());
    let mut c = bao.credshift(&state);
    c.env("CREDSHIFT_PASSPHRASE", PASSPHRASE)
        .args(["migrate", "--from", &to, "--to", &back, "--yes", "--json"]);
    let (out, stdout, stderr) = run(&mut c);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let got = encrypted_values(&back);
    assert_eq!(got, want);
}

#[test]
fn a_crash_anywhere_in_a_cleanup_of_vault_is_resumed_or_rolled_back() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let json_in = dir.path().join("in.json");
    std::fs::write(
        &json_in,
        r#"{"OPENAI_API_KEY":"sk-proj-cleanup000000000001","GITHUB_TOKEN":"ghp_cleanup0000000000000002","limits":{"rpm":1}}"#,
    )
    .unwrap();
    let case = |name: &str, k: Option<usize>| {
        let path = format!("secret/{name}/env");
        bao.run(&["kv", "put", &path, &format!("@{}", json_in.display())]);
        let state = dir.path().join(format!("state-{name}"));
        let dst = dir.path().join(format!("{name}.env"));
        let mut c = bao.credshift(&state);
        c.args(["migrate", "--from", &bao.spec(&format!("secret/{name}"))])
            .args(["--to", &format!("dotenv:{}", dst.display())])
            .args(["--delete-source", "--yes", "--json"]);
        if let Some(k) = k {
            c.env("CREDSHIFT_CRASH_AT", k.to_string());
        }
        let (out, stdout, _) = run(&mut c);
        (out, stdout, state, dst)
    };
    let (out, stdout, state, _) = case("clean", None);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let mid = json(&stdout)["migration_id"].as_str().unwrap().to_string();
    let records =
        std::fs::read_to_string(state.join("migrations").join(&mid).join("journal.jsonl"))
            .unwrap()
            .lines()
            .count();
    let full: BTreeMap<String, String> = [
        ("env/GITHUB_TOKEN", "ghp_cleanup0000000000000002"),
        ("env/OPENAI_API_KEY", "sk-proj-cleanup000000000001"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert!(bao.values(&bao.spec("secret/clean")).is_empty());
    for k in 1..records {
        for mode in ["rollback", "resume"] {
            let name = format!("c{k}{mode}");
            let (out, _, state, dst) = case(&name, Some(k));
            assert_eq!(out.status.code(), None, "K={k}: aborted");
            if let Err(e) = bao.recover_twice(&state, mode) {
                panic!("K={k}: {e}");
            }
            let src = bao.values(&bao.spec(&format!("secret/{name}")));
            let dst_values = if dst.exists() {
                values(&format!("dotenv:{}", dst.display()))
            } else {
                BTreeMap::new()
            };
            if mode == "rollback" {
                assert_eq!(src, full, "K={k}: the source is whole again");
            } else {
                assert_eq!(dst_values, full, "K={k}: all at the target");
                assert!(src.is_empty(), "K={k}: cleaned up: {src:?}");
            }
            // The field that is no credential never moves.
            assert!(
                bao.kv_field(&format!("secret/{name}/env"), "limits")
                    .is_some(),
                "K={k}"
            );
        }
    }
}

/// Issue 21 point 6: a field another client changed before a compared
/// delete stays and is reported `Changed`, the field credshift checked is
/// destroyed, one never there is `Absent`; both in one secret, so the
/// comparison must be per field on the version the check-and-set patch
/// replaces.
#[test]
fn a_field_changed_before_a_compared_delete_stays() {
    use credshift::store::DeleteIf;
    let Some(bao) = Bao::start() else { return };
    let spec = bao.spec("secret/cad");
    let s = bao.open(&spec);
    let a = Credential::new(
        "app/a_key".parse().unwrap(),
        Kind::ApiKey,
        "checked-value-a-01",
    );
    let b = Credential::new(
        "app/b_key".parse().unwrap(),
        Kind::ApiKey,
        "checked-value-b-02",
    );
    for r in s.write_many(&[a.clone(), b.clone()]) {
        r.unwrap();
    }
    let checked: Vec<Credential> = s
        .read_many(&[a.id.clone(), b.id.clone()])
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    bao.open(&spec)
        .write(&Credential::new(
            a.id.clone(),
            Kind::ApiKey,
            "another-clients-value",
        ))
        .unwrap();
    let gone = Credential::new("app/c_key".parse().unwrap(), Kind::ApiKey, "never-there");
    let r: Vec<DeleteIf> = s
        .delete_if_unchanged(&[checked[0].clone(), checked[1].clone(), gone])
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(r, [DeleteIf::Changed, DeleteIf::Deleted, DeleteIf::Absent]);
    let now = bao.open(&spec);
    let a_now = now.read(&a.id).unwrap().unwrap();
    assert_eq!(a_now.secret.expose(), "another-clients-value");
    assert!(now.read(&b.id).unwrap().is_none());
}

/// Each engine batch writes a secret once: a migration of many items into
/// one secret makes many versions, and KV prunes the oldest past
/// max_versions. History from before the run pushed out that way is said
/// in the report, naming the secret (never a value).
#[test]
fn history_pruned_by_max_versions_is_reported() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    bao.run(&["write", "secret/config", "max_versions=3"]);
    bao.run(&["kv", "put", "secret/mv/env", "OLD=rotated-out-0001"]);
    bao.run(&["kv", "put", "secret/mv/env", "OLD=current-0002"]);
    let env = dir.path().join("many.env");
    let pairs: Vec<(String, String)> = (0..8)
        .map(|i| (format!("KEY_{i}"), format!("value-{i:04}-pruned-test")))
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    write_env(&env, &refs);
    let from = format!("dotenv:{}", env.display());
    let (code, stdout, stderr) = bao.migrate(&state, &from, &bao.spec("secret/mv"), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let current = bao.kv_metadata("secret/mv/env").unwrap()["data"]["current_version"]
        .as_u64()
        .unwrap();
    assert!(current > 4, "one batch per version: {current}");
    let notices = json(&stdout)["notices"].to_string();
    assert!(
        notices.contains("secret/mv/env") && notices.contains("max_versions is 3"),
        "{notices}"
    );
    assert!(
        !notices.contains("value-0") && !notices.contains("0002"),
        "{notices}"
    );
}
