//! One scrubber for secret-looking metadata (issue 14 point 2), field-level
//! cleanup that never loses unmigrated material (issue 13 reproductions 1
//! and 2), the Slack webhook as an item of its own and expiry of OAuth
//! access tokens only (issue 9 points 4 and 5). Through the real binary
//! where the reproductions used it.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use credshift::credential::Secret;
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use serde_json::{Value, json};
use support::*;

fn open_spec(spec: &str, opts: &KeyOptions) -> Box<dyn Store> {
    store::open(&spec.parse::<StoreSpec>().unwrap(), opts).unwrap()
}

/// id -> value of every credential a store holds (none when it is missing).
fn values(spec: &str, opts: &KeyOptions) -> BTreeMap<String, String> {
    support::values_of(open_spec(spec, opts).as_ref())
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn migrate(state: &Path, from: &str, to: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["migrate", "--from", from, "--to", to, "--yes", "--json"];
    args.extend_from_slice(extra);
    let (out, stdout, stderr) = run(credshift(state).args(&args));
    (out.status.code(), json_of(&stdout), stderr)
}

/// Every file under `dir` as text (all of them, to look for a value).
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    if dir.is_file() {
        return String::from_utf8_lossy(&std::fs::read(dir).unwrap()).into_owned();
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            out.push_str(&all_text(&e.unwrap().path()));
        }
    }
    out
}

// ---------------------------------------------------------------- model-forge

const MF_ACCESS: &str = "gho_reproOneAccessToken00000000001";
const MF_REFRESH: &str = "ghr_reproOneRefreshToken0000000002";
const MF_ID: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBybyJ9.reproOneIdToken3";
const MF_CS0: &str = "reproOneClientSecretNumber0000004";
const MF_CS1: &str = "reproOneClientSecretNumber0000005";

fn modelforge_config(dir: &Path) -> PathBuf {
    let path = dir.join("config.json");
    let cfg = json!({
        "providers": {
            "gh": {
                "llm_type": "github_copilot",
                "auth_data": {
                    "access_token": MF_ACCESS,
                    "token_type": "bearer",
                    "expires_at": "2020-01-01T00:00:00+00:00",
                    "oauth": {"refresh_token": MF_REFRESH, "id_token": MF_ID, "scope": "read:user"},
                    "client_secrets": [MF_CS0, MF_CS1]
                }
            }
        }
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    path
}

/// Issue 13, reproduction 1: every secret leaf of `auth_data` is an item of
/// its own; `--delete-source` leaves none of them in neither place.
#[test]
fn modelforge_nested_auth_data_migrates_leaf_by_leaf_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = modelforge_config(tmp.path());
    let src = format!("modelforge:{}", cfg.display());
    let opts = KeyOptions::default();
    let ids: Vec<String> = values(&src, &opts).into_keys().collect();
    assert_eq!(
        ids,
        [
            "gh/access_token",
            "gh/client_secrets.0",
            "gh/client_secrets.1",
            "gh/oauth.id_token",
            "gh/oauth.refresh_token",
        ]
    );
    let dst = format!("dotenv:{}", tmp.path().join("dst.env").display());
    let state = tmp.path().join("state");
    let (code, r, stderr) = migrate(&state, &src, &dst, &["--delete-source"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(r["copied"], 5, "{r}");
    assert_eq!(r["source_deleted"], 5, "{r}");
    let target = values(&dst, &opts);
    for (id, v) in [
        ("gh/access_token", MF_ACCESS),
        ("gh/oauth.refresh_token", MF_REFRESH),
        ("gh/oauth.id_token", MF_ID),
        ("gh/client_secrets.0", MF_CS0),
        ("gh/client_secrets.1", MF_CS1),
    ] {
        assert_eq!(target.get(id).map(String::as_str), Some(v), "{id}");
    }
    // The source lost exactly its secrets: auth_data went with the last one.
    let left: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert_eq!(
        left,
        json!({"providers": {"gh": {"llm_type": "github_copilot"}}})
    );
}

#[test]
fn modelforge_items_go_back_into_the_same_place() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = modelforge_config(tmp.path());
    let before: Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    let src = open_spec(
        &format!("modelforge:{}", cfg.display()),
        &KeyOptions::default(),
    );
    let creds = src.read_all().unwrap().credentials;
    let copy = tmp.path().join("copy.json");
    let dst = open_spec(
        &format!("modelforge:{}", copy.display()),
        &KeyOptions::default(),
    );
    for r in dst.write_many(&creds) {
        r.unwrap();
    }
    let after: Value = serde_json::from_slice(&std::fs::read(&copy).unwrap()).unwrap();
    assert_eq!(
        after["providers"]["gh"]["auth_data"]["oauth"],
        json!({"refresh_token": MF_REFRESH, "id_token": MF_ID})
    );
    assert_eq!(
        after["providers"]["gh"]["auth_data"]["client_secrets"],
        json!([MF_CS0, MF_CS1])
    );
    assert_eq!(
        after["providers"]["gh"]["auth_data"]["access_token"],
        before["providers"]["gh"]["auth_data"]["access_token"]
    );
    // Deleting one nested item removes that field only.
    assert!(
        dst.delete(&"gh/oauth.refresh_token".parse().unwrap())
            .unwrap()
    );
    assert!(dst.delete(&"gh/client_secrets.0".parse().unwrap()).unwrap());
    let after: Value = serde_json::from_slice(&std::fs::read(&copy).unwrap()).unwrap();
    assert_eq!(
        after["providers"]["gh"]["auth_data"]["oauth"],
        json!({"id_token": MF_ID})
    );
    assert_eq!(
        after["providers"]["gh"]["auth_data"]["client_secrets"],
        json!([null, MF_CS1])
    );
    assert_eq!(
        dst.read(&"gh/client_secrets.1".parse().unwrap())
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        MF_CS1
    );
}

/// Secret material no item can name (a key holding `.`) is named by the dry
/// run and keeps its container through `--delete-source`.
#[test]
fn unmigrated_material_is_named_and_its_container_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&json!({"providers": {"p": {"auth_data": {
            "api_key": "sk-proj-unmigratedTestKey000000001",
            "v1.legacy": {"token": "unnameable-legacy-token-000002"}
        }}}}))
        .unwrap(),
    )
    .unwrap();
    let src = format!("modelforge:{}", path.display());
    let dst = format!("dotenv:{}", tmp.path().join("dst.env").display());
    let state = tmp.path().join("state");
    let (out, stdout, stderr) = run(migrate_cmd(&state, &src, &dst, &["--dry-run"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let shown = format!("{stdout}{stderr}");
    assert!(shown.contains("left in the source"), "{shown}");
    assert!(shown.contains("v1.legacy.token"), "{shown}");
    assert!(!shown.contains("unnameable-legacy-token"), "{shown}");
    let (code, r, stderr) = migrate(&state, &src, &dst, &["--delete-source"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(r["source_deleted"], 1, "{r}");
    let left: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        left["providers"]["p"]["auth_data"],
        json!({"v1.legacy": {"token": "unnameable-legacy-token-000002"}})
    );
}

// ---------------------------------------------------------------- prompttrain

const PT_KEY: &str = "sk-ant-api03-reproTwoApiKey00000000001";
const PT_ADMIN: &str = "sk-ant-admin01-reproTwoAdminKey0000002";
const PT_PROXY_PASS: &str = "pr0xyPassw0rdRepro14";
const PT_BEARER: &str = "ghs_reproFourteenBearer000000000003";
const PT_WEBHOOK: &str = "https://hooks.slack.com/services/T0REPRO/B0REPRO/webhookSecret0004";

fn account_json() -> Value {
    json!({
        "type": "api_key",
        "accountId": "acc_x",
        "api_key": PT_KEY,
        "admin_api_key": PT_ADMIN,
        "proxy": {"url": format!("http://proxyuser:{PT_PROXY_PASS}@proxy.internal:3128"), "timeout": 30},
        "authorization": format!("Bearer {PT_BEARER}"),
        "slack": {"webhook_url": PT_WEBHOOK, "channel": "#alerts", "enabled": true}
    })
}

fn prompttrain_dir(root: &Path) -> PathBuf {
    let dir = root.join("credentials");
    std::fs::create_dir_all(dir.join("accounts")).unwrap();
    std::fs::write(
        dir.join("accounts/x.credentials.json"),
        serde_json::to_vec_pretty(&account_json()).unwrap(),
    )
    .unwrap();
    dir
}

const SECRETS: [&str; 5] = [PT_KEY, PT_ADMIN, PT_PROXY_PASS, PT_BEARER, PT_WEBHOOK];

/// Issue 14: the proxy URL's password, the Authorization header and the
/// webhook never print; they are items, masked.
#[test]
fn inventory_json_shows_no_secret_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = prompttrain_dir(tmp.path());
    let (out, stdout, stderr) = run(credshift(&tmp.path().join("state")).args([
        "inventory",
        "--from",
        &format!("prompttrain:{}", dir.display()),
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for s in SECRETS {
        assert!(!stdout.contains(s), "{s} leaked: {stdout}");
    }
    assert!(!stdout.contains("webhookSecret"), "{stdout}");
    let inv = json_of(&stdout);
    let ids: Vec<&str> = inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "account:acc_x/admin_api_key",
            "account:acc_x/api_key",
            "account:acc_x/authorization",
            "account:acc_x/proxy.url",
            "account:acc_x/slack_webhook_url",
        ]
    );
    let item = &inv["items"][1];
    assert_eq!(item["metadata"]["extra"]["proxy"], json!({"timeout": 30}));
    assert_eq!(
        item["metadata"]["slack"],
        json!({"channel": "#alerts", "enabled": true})
    );
}

/// Issue 13, reproduction 2: the unknown admin key migrates too, and the
/// account file goes only when nothing secret is left in it.
#[test]
fn prompttrain_delete_source_loses_no_secret_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = prompttrain_dir(tmp.path());
    let src = format!("prompttrain:{}", dir.display());
    let dst = format!("dotenv:{}", tmp.path().join("dst.env").display());
    let state = tmp.path().join("state");
    // The admin key fails to reach the target: everything else moves, and
    // the file stays with the admin key (and nothing else secret) in it.
    let (out, stdout, stderr) =
        run(
            migrate_cmd(&state, &src, &dst, &["--yes", "--json", "--delete-source"])
                .env("CREDSHIFT_FAULTS", "write:account:acc_x/admin_api_key"),
        );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let r = json_of(&stdout);
    assert_eq!(r["source_deleted"], 4, "{r}");
    let file = dir.join("accounts/x.credentials.json");
    let left: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        left,
        json!({
            "type": "api_key",
            "accountId": "acc_x",
            "admin_api_key": PT_ADMIN,
            "proxy": {"timeout": 30},
            "slack": {"channel": "#alerts", "enabled": true}
        })
    );
    // Then the admin key: it is in the target, and the file is gone.
    let (code, r, stderr) = migrate(&state, &src, &dst, &["--delete-source"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(r["source_deleted"], 1, "{r}");
    assert!(!file.exists());
    let target = values(&dst, &KeyOptions::default());
    assert_eq!(target["account:acc_x/api_key"], PT_KEY);
    assert_eq!(target["account:acc_x/admin_api_key"], PT_ADMIN);
    assert_eq!(target["account:acc_x/slack_webhook_url"], PT_WEBHOOK);
    assert_eq!(
        target["account:acc_x/proxy.url"],
        format!("http://proxyuser:{PT_PROXY_PASS}@proxy.internal:3128")
    );
    assert_eq!(
        target["account:acc_x/authorization"],
        format!("Bearer {PT_BEARER}")
    );
    // The marker comments hold ids and public metadata, never a value.
    let text = std::fs::read_to_string(tmp.path().join("dst.env")).unwrap();
    for line in text.lines().filter(|l| l.starts_with('#')) {
        for s in SECRETS {
            assert!(!line.contains(s), "{s} in a marker: {line}");
        }
    }
}

fn passphrase_opts() -> KeyOptions {
    KeyOptions {
        passphrase: Some(Secret::new("correct horse battery staple")),
        kdf_iterations: 1000,
        allow_weak_kdf: true,
        ..KeyOptions::default()
    }
}

/// files -> encrypted -> files leaves the account file's JSON equal, and
/// the SQLite metadata column of a credshift table holds no secret.
#[test]
fn prompttrain_round_trip_through_encrypted_and_sqlite_restores_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = prompttrain_dir(tmp.path());
    let opts = passphrase_opts();
    let src = open_spec(&format!("prompttrain:{}", dir.display()), &opts);
    let creds = src.read_all().unwrap().credentials;
    for mid in ["encrypted:mid.enc", "sqlite:mid.db"] {
        let (scheme, file) = mid.split_once(':').unwrap();
        let mid_path = tmp.path().join(file);
        let mid_store = open_spec(&format!("{scheme}:{}", mid_path.display()), &opts);
        for r in mid_store.write_many(&creds) {
            r.unwrap();
        }
        let raw = all_text(&mid_path);
        for s in SECRETS {
            assert!(!raw.contains(s), "{s} in {mid}");
        }
        let back = mid_store.read_all().unwrap().credentials;
        let out_dir = tmp.path().join(format!("out-{scheme}/credentials"));
        let out = open_spec(&format!("prompttrain:{}", out_dir.display()), &opts);
        // One at a time, in reverse, so no write order is assumed.
        for c in back.iter().rev() {
            out.write(c).unwrap();
        }
        let got: Value = serde_json::from_slice(
            &std::fs::read(out_dir.join("accounts/x.credentials.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(got, account_json(), "through {mid}");
    }
}

/// files -> keyring -> files with the real Secret Service; the item
/// attributes never hold a secret.
#[test]
fn prompttrain_round_trip_through_the_keyring_restores_the_file() {
    let Some(ks) = keyring_service::shared() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = prompttrain_dir(tmp.path());
    let svc = format!("credshift-test-scrub-{}", std::process::id());
    let state = tmp.path().join("state");
    let ring = format!("keyring:{svc}");
    let run_env = |args: &[&str]| {
        let (out, stdout, stderr) = run(credshift(&state)
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
            .args(args));
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    };
    let src = format!("prompttrain:{}", dir.display());
    run_env(&["migrate", "--from", &src, "--to", &ring, "--yes"]);
    if !have_secret_tool() {
        skip_without("secret-tool", "libsecret-tools is not installed");
        return;
    }
    let attrs = attributes_of_service(ks, &svc);
    assert!(attrs.contains("credshift.metadata"), "{attrs}");
    for s in SECRETS {
        assert!(!attrs.contains(s), "{s} in the attributes: {attrs}");
    }
    let out_dir = tmp.path().join("out/credentials");
    let out = format!("prompttrain:{}", out_dir.display());
    run_env(&["migrate", "--from", &ring, "--to", &out, "--yes"]);
    let got: Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("accounts/x.credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(got, account_json());
}

fn have_secret_tool() -> bool {
    std::process::Command::new("secret-tool")
        .arg("--version")
        .output()
        .is_ok()
}

/// Every attribute of the service's items, as `secret-tool search` prints them.
fn attributes_of_service(ks: &keyring_service::KeyringService, svc: &str) -> String {
    let out = std::process::Command::new("secret-tool")
        .args(["search", "--all", "service", svc])
        .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    // secret-tool prints each item's secret too: keep the attribute lines.
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .lines()
    .filter(|l| l.starts_with("attribute."))
    .collect::<Vec<_>>()
    .join("\n")
}

// ---------------------------------------------------------------- Laravel

const LARAVEL_META_KEY: &str = "sk-proj-laravelMetadataKey0000000001";

#[test]
fn laravel_metadata_secret_is_an_item_and_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fragments_db(&tmp.path().join("fragments.sqlite"));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n = conn
        .execute(
            "UPDATE a_i_credentials SET metadata = ?1 WHERE provider = 'openai'",
            [json!({"api_key": LARAVEL_META_KEY, "note": "imported"}).to_string()],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    check_laravel_metadata(tmp.path(), &format!("laravel:sqlite:{}", db.display()));
}

#[test]
fn laravel_postgres_metadata_secret_is_an_item_and_never_printed() {
    let Some(db) = pg::fresh_db() else { return };
    let mut conn = pg::connect(&db.url());
    conn.batch_execute(
        "CREATE TABLE a_i_credentials (
           id BIGSERIAL PRIMARY KEY,
           provider VARCHAR(255) NOT NULL,
           credential_type VARCHAR(255) NOT NULL DEFAULT 'api_key',
           encrypted_credentials TEXT NOT NULL,
           metadata JSON,
           expires_at TIMESTAMP(0) WITHOUT TIME ZONE,
           is_active BOOLEAN NOT NULL DEFAULT TRUE,
           created_at TIMESTAMP(0) WITHOUT TIME ZONE,
           updated_at TIMESTAMP(0) WITHOUT TIME ZONE,
           UNIQUE (provider, credential_type)
         );",
    )
    .unwrap();
    let data = std::fs::read_to_string(fixture("fragments/data.sql"))
        .unwrap()
        .replace("}', 1, '", "}', TRUE, '");
    conn.batch_execute(&data).unwrap();
    let n = conn
        .execute(
            "UPDATE a_i_credentials SET metadata = CAST($1::TEXT AS JSON) WHERE provider = 'openai'",
            &[&json!({"api_key": LARAVEL_META_KEY, "note": "imported"}).to_string()],
        )
        .unwrap();
    assert_eq!(n, 1);
    let tmp = tempfile::tempdir().unwrap();
    check_laravel_metadata(tmp.path(), &format!("laravel:{}", db.url()));
}

fn check_laravel_metadata(tmp: &Path, spec: &str) {
    let app_key = std::fs::read_to_string(fixture("fragments/APP_KEY"))
        .unwrap()
        .trim()
        .to_string();
    let state = tmp.join("state");
    let (out, stdout, stderr) = run(credshift(&state).env("APP_KEY", &app_key).args([
        "inventory",
        "--from",
        spec,
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains(LARAVEL_META_KEY), "{stdout}");
    let inv = json_of(&stdout);
    let item = inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "openai/metadata.api_key")
        .unwrap_or_else(|| panic!("no metadata item: {stdout}"));
    assert_eq!(item["kind"], "api_key");
    let key_item = inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "openai/key")
        .unwrap();
    assert_eq!(key_item["metadata"]["note"], "imported");
    assert!(key_item["metadata"].get("api_key").is_none());

    // Deleting the payload field keeps the row active while its metadata
    // still holds a secret; deleting that too soft-deletes it.
    let opts = KeyOptions {
        app_key: Some(Secret::new(app_key.as_str())),
        ..KeyOptions::default()
    };
    let s = open_spec(spec, &opts);
    assert!(s.delete(&"openai/key".parse().unwrap()).unwrap());
    let c = s
        .read(&"openai/metadata.api_key".parse().unwrap())
        .unwrap()
        .expect("still listed");
    assert_eq!(c.secret.expose(), LARAVEL_META_KEY);
    assert!(
        s.delete(&"openai/metadata.api_key".parse().unwrap())
            .unwrap()
    );
    assert!(!values(spec, &opts).keys().any(|k| k.starts_with("openai/")),);
    // Written back into a new row's metadata column at the same place.
    s.write(&c).unwrap();
    assert_eq!(
        s.read(&"openai/metadata.api_key".parse().unwrap())
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        LARAVEL_META_KEY
    );
}

// ---------------------------------------------------------------- expiry

/// Issue 9 point 5: an expired access token is expired, its refresh token
/// is not; inventory and dry run agree.
#[test]
fn only_the_access_token_is_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("credentials");
    std::fs::create_dir_all(dir.join("accounts")).unwrap();
    std::fs::write(
        dir.join("accounts/o.credentials.json"),
        json!({"type": "oauth", "accountId": "acc_o", "oauth": {
            "accessToken": "sk-ant-oat01-expiredAccessToken000001",
            "refreshToken": "sk-ant-ort01-stillValidRefresh0000002",
            "expiresAt": 1_000_000_000_000i64
        }})
        .to_string(),
    )
    .unwrap();
    let src = format!("prompttrain:{}", dir.display());
    let state = tmp.path().join("state");
    let (out, stdout, stderr) =
        run(credshift(&state).args(["inventory", "--from", &src, "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let inv = json_of(&stdout);
    let status: BTreeMap<String, String> = inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(status["account:acc_o/oauth_access_token"], "expired");
    assert_eq!(status["account:acc_o/oauth_refresh_token"], "eligible");
    let dst = format!("dotenv:{}", tmp.path().join("dst.env").display());
    let (out, stdout, stderr) = run(migrate_cmd(&state, &src, &dst, &["--dry-run", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let plan = json_of(&stdout);
    assert_eq!(plan["counts"]["expired_warnings"], 1, "{plan}");
    for item in plan["items"].as_array().unwrap() {
        let warned = !item["warnings"].as_array().unwrap().is_empty();
        assert_eq!(
            warned,
            item["id"] == "account:acc_o/oauth_access_token",
            "{item}"
        );
    }
}

// ---------------------------------------------------------------- targets

/// agent-prompttrain's database would keep the webhook in clear
/// (`trains.slack_config`): the dry run says so, naming the item, and
/// shows no value.
#[test]
fn prompttrain_db_target_warns_about_the_webhook_in_the_dry_run() {
    let Some(db) = pg::fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = prompttrain_dir(tmp.path());
    let from = format!("prompttrain:{}", dir.display());
    let to = format!("prompttrain-db:{}", db.url());
    let key = std::fs::read_to_string(fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY")).unwrap();
    let (out, stdout, stderr) = run(migrate_cmd(
        &tmp.path().join("state"),
        &from,
        &to,
        &["--dry-run", "--json"],
    )
    .env("CREDENTIAL_ENCRYPTION_KEY", key.trim()));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for s in SECRETS {
        assert!(!stdout.contains(s) && !stderr.contains(s), "{s} leaked");
    }
    let plan = json_of(&stdout);
    let item = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "account:acc_x/slack_webhook_url")
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(item["action"], "invalid", "{item}");
    assert!(
        item["reason"].as_str().unwrap().contains("slack_config"),
        "{item}"
    );
}

/// Stores that keep metadata in clear (SQLite's metadata column, dotenv's
/// marker comments) never persist a secret value handed to them in
/// metadata, whatever the source.
#[test]
fn metadata_columns_and_markers_never_hold_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let mut meta = credshift::credential::Metadata::new();
    meta.insert("api_key".into(), LARAVEL_META_KEY.into());
    meta.insert(
        "proxy".into(),
        json!({"url": format!("http://u:{PT_PROXY_PASS}@h:1"), "port": 1}),
    );
    meta.insert("authorization".into(), format!("Bearer {PT_BEARER}").into());
    meta.insert("note".into(), "kept".into());
    let c = credshift::credential::Credential::new(
        "openai/api_key".parse().unwrap(),
        credshift::credential::Kind::ApiKey,
        "value-of-the-item-itself-0001",
    )
    .with_metadata(meta);
    let opts = passphrase_opts();
    for spec in ["sqlite:t.db", "dotenv:t.env"] {
        let (scheme, file) = spec.split_once(':').unwrap();
        let path = tmp.path().join(file);
        let s = open_spec(&format!("{scheme}:{}", path.display()), &opts);
        s.write(&c).unwrap();
        let raw = all_text(&path);
        for secret in [LARAVEL_META_KEY, PT_PROXY_PASS, PT_BEARER] {
            assert!(!raw.contains(secret), "{secret} in {spec}");
        }
        let back = s.read(&c.id).unwrap().unwrap();
        assert_eq!(back.metadata["note"], "kept", "{spec}");
        assert_eq!(back.metadata["proxy"], json!({"port": 1}), "{spec}");
    }
}
