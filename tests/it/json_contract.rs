//! The JSON contract users' scripts rely on (DESIGN.md's "CLI contract",
//! ARCHITECTURE.md): one test per command that pins every documented field,
//! its type and, where the setup decides it, its value. A renamed or
//! dropped field fails here; new fields are free.

use crate::support;

use serde_json::Value;

use support::*;

#[derive(Clone, Copy, Debug)]
enum T {
    Str,
    Num,
    Bool,
    Arr,
    Obj,
    /// A string or null (`backup` before anything was written).
    StrOrNull,
}

fn is(v: &Value, t: T) -> bool {
    match t {
        T::Str => v.is_string(),
        T::Num => v.is_u64(),
        T::Bool => v.is_boolean(),
        T::Arr => v.is_array(),
        T::Obj => v.is_object(),
        T::StrOrNull => v.is_string() || v.is_null(),
    }
}

/// Every field present with its type; names the first that is not.
fn shape(what: &str, v: &Value, fields: &[(&str, T)]) {
    for (name, t) in fields {
        let got = v.get(*name);
        assert!(
            got.is_some_and(|g| is(g, *t)),
            "{what}: field `{name}` should be {t:?}, got {got:?} in {v}"
        );
    }
}

/// A dry run (`migrate --dry-run`, `restore --dry-run`): the plan.
const PLAN: &[(&str, T)] = &[
    ("from", T::Str),
    ("to", T::Str),
    ("on_conflict", T::Str),
    ("items", T::Arr),
    ("counts", T::Obj),
    ("estimated_ms", T::Num),
    ("source_errors", T::Arr),
    ("warnings", T::Arr),
];

/// The plan's counts by action, and one planned item.
fn plan_shape(what: &str, v: &Value, total: u64) {
    shape(what, v, PLAN);
    let counts: Vec<(&str, T)> = [
        "total",
        "copy",
        "overwrite",
        "skip_identical",
        "conflict",
        "invalid",
        "too_long",
        "expired_warnings",
    ]
    .iter()
    .map(|k| (*k, T::Num))
    .collect();
    shape(what, &v["counts"], &counts);
    assert_eq!(v["counts"]["total"], total);
    for item in v["items"].as_array().unwrap() {
        shape(
            what,
            item,
            &[
                ("id", T::Str),
                ("kind", T::Str),
                ("preview", T::Str),
                ("action", T::Str),
                ("warnings", T::Arr),
            ],
        );
    }
}

const REPORT: &[(&str, T)] = &[
    ("migration_id", T::Str),
    ("from", T::Str),
    ("to", T::Str),
    ("total", T::Num),
    ("copied", T::Num),
    ("skipped", T::Num),
    ("conflicts", T::Num),
    ("invalid", T::Num),
    ("failed", T::Num),
    ("rolled_back", T::Bool),
    ("failures", T::Arr),
    ("backup", T::StrOrNull),
    ("warnings", T::Arr),
];

struct World {
    _dir: tempfile::TempDir,
    state: std::path::PathBuf,
    from: String,
    to: String,
    key: String,
}

/// Four good `.env` items and one that is empty (invalid), into an
/// encrypted file under a key file.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app.env");
    write_env(
        &src,
        &[
            ("OPENAI_API_KEY", "sk-proj-contractValueNumberOne00000001"),
            ("GITHUB_TOKEN", "ghp_contractValueNumberTwo0000000002"),
            ("SLACK_BOT_TOKEN", "xoxb-contractValueNumberThree000003"),
            ("STRIPE_SECRET", "sk_live_contractValueNumberFour00004"),
            ("EMPTY_TOKEN", ""),
        ],
    );
    let key = dir.path().join("k.key");
    std::fs::write(&key, [0x5au8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    World {
        state: dir.path().join("state"),
        from: format!("dotenv:{}", src.display()),
        to: format!("encrypted:{}", dir.path().join("t.enc").display()),
        key: key.display().to_string(),
        _dir: dir,
    }
}

impl World {
    fn cmd(&self, args: &[&str]) -> (i32, Value, String) {
        let (out, stdout, stderr) = run(credshift(&self.state)
            .args(["--key-file", &self.key])
            .args(args));
        let code = out.status.code().unwrap_or(-1);
        let v = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout} {stderr}"));
        (code, v, stderr)
    }

    fn migrate(&self, extra: &[&str]) -> (i32, Value, String) {
        let mut args = vec!["migrate", "--from", &self.from, "--to", &self.to, "--json"];
        args.extend_from_slice(extra);
        self.cmd(&args)
    }
}

#[test]
fn inventory_json_has_store_items_and_errors() {
    let w = world();
    let (code, v, err) = w.cmd(&["inventory", "--from", &w.from, "--json"]);
    assert_eq!(code, 0, "{err}");
    shape(
        "inventory",
        &v,
        &[("store", T::Str), ("items", T::Arr), ("errors", T::Arr)],
    );
    assert_eq!(v["store"], w.from.as_str());
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for item in items {
        shape(
            "inventory item",
            item,
            &[
                ("id", T::Str),
                ("kind", T::Str),
                ("preview", T::Str),
                ("metadata", T::Obj),
            ],
        );
        let kind = item["kind"].as_str().unwrap();
        assert!(
            [
                "api_key",
                "oauth_access",
                "oauth_refresh",
                "client_key",
                "client_key_hash",
                "password",
                "password_hash",
                "other"
            ]
            .contains(&kind),
            "{kind}"
        );
        assert!(item["id"].as_str().unwrap().starts_with("env/"));
        assert!(!item["preview"].as_str().unwrap().contains("contractValue"));
    }
}

#[test]
fn migrate_report_names_its_stores_and_counts_the_invalid_item() {
    let w = world();
    let (code, dry, err) = w.migrate(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    plan_shape("dry run", &dry, 5);
    assert_eq!(dry["from"], w.from.as_str());
    assert_eq!(dry["counts"]["copy"], 4);
    assert_eq!(dry["counts"]["invalid"], 1);

    let (code, r, err) = w.migrate(&["--yes"]);
    assert_eq!(code, 0, "{err}");
    shape("migrate", &r, REPORT);
    assert_eq!(r["from"], w.from.as_str());
    assert_eq!(r["to"], w.to.as_str());
    assert_eq!(r["copied"], 4);
    assert_eq!(r["invalid"], 1);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["rolled_back"], false);
    assert!(std::path::Path::new(r["backup"].as_str().unwrap()).exists());
}

#[test]
fn history_lists_id_started_at_stores_status_and_counts() {
    let w = world();
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let (_, r, err) = w.migrate(&["--yes"]);
    let id = r["migration_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{err}"));
    let (code, h, err) = w.cmd(&["history", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows = h.as_array().expect("history is a list");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    shape(
        "history",
        row,
        &[
            ("id", T::Str),
            ("started_at", T::Str),
            ("from", T::Str),
            ("to", T::Str),
            ("status", T::Str),
            ("copied", T::Num),
            ("failed", T::Num),
        ],
    );
    assert_eq!(row["id"], id);
    assert_eq!(row["from"], w.from.as_str());
    assert_eq!(row["to"], w.to.as_str());
    assert_eq!(row["status"], "completed");
    assert_eq!(row["copied"], 4);
    assert_eq!(row["failed"], 0);
    let started = chrono::DateTime::parse_from_rfc3339(row["started_at"].as_str().unwrap())
        .expect("started_at is RFC 3339");
    assert!(
        started >= before && started <= chrono::Utc::now(),
        "{started}"
    );
}

#[test]
fn verify_resume_and_rollback_reports_keep_their_fields() {
    let w = world();
    // Interrupted after the third journal record, then resumed.
    let (out, stdout, stderr) = run(credshift(&w.state)
        .args(["--key-file", &w.key])
        .args([
            "migrate", "--from", &w.from, "--to", &w.to, "--yes", "--json",
        ])
        .env("CREDSHIFT_CRASH_AT", "3"));
    assert_ne!(
        out.status.code(),
        Some(0),
        "the crash fired: {stdout} {stderr}"
    );
    let (code, h, _) = w.cmd(&["history", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(h[0]["status"], "interrupted");
    let id = h[0]["id"].as_str().unwrap().to_string();

    let (code, r, err) = w.cmd(&["resume", "--migration-id", &id, "--yes", "--json"]);
    assert_eq!(code, 0, "{err}");
    shape("resume", &r, REPORT);
    assert_eq!(r["migration_id"], id.as_str());
    assert_eq!(r["from"], w.from.as_str());
    assert_eq!(r["failed"], 0);

    let (code, v, err) = w.cmd(&["verify", "--migration-id", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    shape(
        "verify",
        &v,
        &[
            ("migration_id", T::Str),
            ("verified", T::Num),
            ("failed", T::Num),
            ("failures", T::Arr),
        ],
    );
    assert_eq!(v["verified"], 4);

    let (code, r, err) = w.cmd(&["rollback", "--migration-id", &id, "--yes", "--json"]);
    assert_eq!(code, 0, "{err}");
    shape(
        "rollback",
        &r,
        &[("migration_id", T::Str), ("rolled_back", T::Bool)],
    );
    assert_eq!(r["rolled_back"], true);
    let (_, h, _) = w.cmd(&["history", "--json"]);
    assert_eq!(h[0]["status"], "rolled_back");
}

#[test]
fn restore_dry_run_and_status_keep_their_fields() {
    let w = world();
    let (_, r, err) = w.migrate(&["--yes"]);
    let backup = r["backup"]
        .as_str()
        .unwrap_or_else(|| panic!("{err}"))
        .to_string();
    let (code, v, err) = w.cmd(&[
        "restore",
        "--backup",
        &backup,
        "--to",
        &w.to,
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    plan_shape("restore --dry-run", &v, 5);
    assert_eq!(v["to"], w.to.as_str());
    // Everything is at the target already: nothing to copy.
    assert_eq!(v["counts"]["skip_identical"], 4);

    let (code, s, err) = w.cmd(&["status", "--store", &w.from, "--json"]);
    assert_eq!(code, 0, "{err}");
    shape("status", &s, &[("stores", T::Arr)]);
    let mine = s["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["spec"] == w.from.as_str())
        .unwrap_or_else(|| panic!("status lists the named store: {s}"));
    shape(
        "status capability",
        &mine["capability"],
        &[
            ("available", T::Bool),
            ("readable", T::Bool),
            ("writable", T::Bool),
            ("persistent", T::Bool),
            ("encrypted_at_rest", T::Bool),
            ("item_count", T::Num),
            ("exists", T::Bool),
            ("keeps_metadata", T::Bool),
            ("warnings", T::Arr),
        ],
    );
    assert_eq!(mine["capability"]["item_count"], 5);
    assert_eq!(mine["capability"]["encrypted_at_rest"], false);
}
