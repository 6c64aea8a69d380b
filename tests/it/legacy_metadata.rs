//! Issue 14 point 2 for credshift's own stores: a secret an older credshift
//! left in an item's metadata (a Secret Service attribute, a `sqlite:` or
//! `postgres://` metadata column, an encrypted file's or bundle's item, a
//! dotenv marker comment) becomes a secret item of its own,
//! `NAMESPACE/NAME#PATH`, that migrates and verifies; the parent migrates
//! and verifies with its public metadata; cleanup removes both only when
//! both verified; and the planted secret reaches no output, journal, audit
//! line, backup, SQL metadata column or keyring attribute, in any encoding.
//! The secrets are planted the way an older credshift wrote them: straight
//! into the attributes, columns and files.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use credshift::credential::{Credential, Kind, Metadata};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;
use serde_json::{Value, json};
use support::canary::{assert_absent, file_haystacks};
use support::*;

const HOOK: &str = "https://hooks.slack.com/services/T0LEGACY1/B0LEGACY2/legacyHookCanary7Qz";
const PARENT_VALUE: &str = "xoxb-legacyParentBotToken-0000000001";
const PLAIN: (&str, &str) = ("openai/api_key", "sk-proj-legacyPlainItem000000000001");
const PARENT_ID: &str = "slack/bot";
const DERIVED_ID: &str = "slack/bot#webhook_url";

/// The metadata an older credshift kept as it came.
fn legacy_metadata() -> Metadata {
    let Value::Object(m) = json!({"webhook_url": HOOK, "channel": "#alerts"}) else {
        unreachable!()
    };
    m
}

fn legacy_items() -> Vec<Credential> {
    vec![
        Credential::new(PARENT_ID.parse().unwrap(), Kind::ApiKey, PARENT_VALUE)
            .with_metadata(legacy_metadata()),
        Credential::new(PLAIN.0.parse().unwrap(), Kind::ApiKey, PLAIN.1),
    ]
}

/// A temp dir, a state dir, a key file for every encrypted store, and the
/// keyring's bus when one is used.
struct Setup {
    dir: tempfile::TempDir,
    key: PathBuf,
    bus: Option<String>,
}

impl Setup {
    fn new() -> Setup {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("store.key");
        std::fs::write(&key, [0x5au8; 32]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Setup {
            dir,
            key,
            bus: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn opts(&self) -> KeyOptions {
        KeyOptions {
            key_file: Some(self.key.clone()),
            ..KeyOptions::default()
        }
    }

    fn cmd(&self) -> Command {
        let mut c = credshift(&self.state());
        c.arg("--key-file").arg(&self.key);
        if let Some(bus) = &self.bus {
            c.env("DBUS_SESSION_BUS_ADDRESS", bus);
        }
        c
    }

    /// The store as credshift opens it (legacy layer included).
    fn open(&self, spec: &str) -> Box<dyn Store> {
        store::open(&spec.parse::<StoreSpec>().unwrap(), &self.opts()).unwrap()
    }

    /// The store without the legacy layer: what is really stored.
    fn raw(&self, spec: &str) -> Box<dyn Store> {
        let spec: StoreSpec = spec.parse().unwrap();
        let opts = self.opts();
        // (keyring_service::shared() points this process at its bus.)
        match spec {
            StoreSpec::Keyring(_) => store::keyring::open(&spec, &opts),
            StoreSpec::Sqlite(_) => store::sqlite::open(&spec, &opts),
            StoreSpec::Postgres(_) => store::postgres::open(&spec, &opts),
            StoreSpec::Encrypted(_) => store::encrypted::open(&spec, &opts),
            StoreSpec::Bundle(_) => store::bundle::open(&spec, &opts),
            StoreSpec::Dotenv(_) => store::dotenv::open(&spec, &opts),
            _ => panic!("not one of credshift's own stores: {spec}"),
        }
        .unwrap()
    }
}

#[allow(dead_code)]
fn json_of(name: &str, stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {stdout}"))
}

/// Outputs collected along the way, to search for the planted secret.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    fn run(&mut self, name: &str, cmd: &mut Command) -> (Option<i32>, Value) {
        let (out, stdout, _) = run(cmd);
        self.0.push((format!("{name} stdout"), out.stdout.clone()));
        self.0.push((format!("{name} stderr"), out.stderr.clone()));
        (
            out.status.code(),
            serde_json::from_str(&stdout).unwrap_or(Value::Null),
        )
    }
}

impl Outputs {
    /// `migrate --delete-source` with every write of `id` failing.
    fn migrate_failing(
        &mut self,
        s: &Setup,
        from: &str,
        to: &str,
        id: &str,
    ) -> (Option<i32>, Value) {
        let mut c = s.cmd();
        c.env("CREDSHIFT_FAULTS", format!("write:{id}"));
        self.run(
            "faulty migrate",
            migrate(&mut c, from, to, &["--delete-source"]),
        )
    }
}

/// `migrate --from FROM --to TO --yes --json` and `extra`.
fn migrate<'a>(c: &'a mut Command, from: &str, to: &str, extra: &[&str]) -> &'a mut Command {
    c.args(["migrate", "--from", from, "--to", to, "--yes", "--json"])
        .args(extra)
}

fn item<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}"))
}

/// Migrate `from` (holding [`legacy_items`] as an older credshift wrote
/// them) to `to` with `--delete-source`, and check everything the issue
/// asks. `target_raw` gives what the target keeps in clear (metadata
/// columns, keyring attributes, its files).
fn check_legacy_migration(
    s: &Setup,
    from: &str,
    to: &str,
    target_raw: &dyn Fn() -> Vec<(String, Vec<u8>)>,
) {
    // Planted as an older credshift wrote it: the secret is in the raw metadata.
    let planted = s.raw(from).read(&PARENT_ID.parse().unwrap()).unwrap();
    assert_eq!(
        planted.expect("planted").metadata["webhook_url"],
        HOOK,
        "{from}"
    );
    let mut outs = Outputs::default();
    // The store's own listing (no secrets needed) names the derived item.
    let listing = s.open(from).list().unwrap();
    let ids: Vec<String> = listing.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids.len(), 3, "{from}: {ids:?}");
    assert!(ids.iter().any(|i| i == DERIVED_ID), "{from}: {ids:?}");
    outs.0.push((
        format!("{from} listing"),
        serde_json::to_vec(&listing.entries).unwrap(),
    ));
    // `status` counts what inventory lists: the derived item too.
    let (code, status) = outs.run(
        "source status",
        s.cmd().args(["status", "--json", "--store", from]),
    );
    assert_eq!(code, Some(0), "{status}");
    let report = status["stores"].as_array().unwrap().last().unwrap();
    assert_eq!(report["capability"]["item_count"], 3, "{from}: {report}");

    let (code, inv) = outs.run(
        "inventory",
        s.cmd().args(["inventory", "--json", "--from", from]),
    );
    assert_eq!(code, Some(0), "{inv}");
    let derived = item(&inv["items"], DERIVED_ID);
    assert_eq!(derived["kind"], "other");
    assert_eq!(derived["metadata"]["metadata_of"], PARENT_ID);
    assert_eq!(
        item(&inv["items"], PARENT_ID)["metadata"],
        json!({"channel": "#alerts"})
    );
    outs.run(
        "inventory text",
        s.cmd().args(["inventory", "--from", from]),
    );

    let (code, plan) = outs.run(
        "dry run",
        s.cmd()
            .args(["migrate", "--from", from, "--to", to, "--dry-run", "--json"]),
    );
    assert_eq!(code, Some(0), "{plan}");
    for id in [PARENT_ID, DERIVED_ID, PLAIN.0] {
        assert_eq!(item(&plan["items"], id)["action"], "copy", "{plan}");
    }
    let (code, r) = outs.run(
        "migrate",
        migrate(&mut s.cmd(), from, to, &["--delete-source"]),
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["copied"], 3, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["source_deleted"], 3, "{r}");
    let id = r["migration_id"].as_str().unwrap().to_string();

    // The target: the derived item with its value, the parent with its
    // value and public metadata.
    let t = s.open(to);
    let d = t
        .read(&DERIVED_ID.parse().unwrap())
        .unwrap()
        .expect("derived");
    assert_eq!(d.secret.expose(), HOOK);
    let p = t
        .read(&PARENT_ID.parse().unwrap())
        .unwrap()
        .expect("parent");
    assert_eq!(p.secret.expose(), PARENT_VALUE);
    assert_eq!(Value::Object(p.metadata), json!({"channel": "#alerts"}));
    // The source: nothing left, not even in the raw metadata.
    let left = s.raw(from).read_all().map(|scan| scan.credentials);
    assert!(
        left.as_ref().map_or(true, |l| l.is_empty()),
        "{from} still holds {:?}",
        left.map(|l| l.into_iter().map(|c| c.id).collect::<Vec<_>>())
    );

    for (name, args) in [
        ("verify", vec!["verify", "--json", "--migration-id", &id]),
        ("history", vec!["history", "--json"]),
        ("history text", vec!["history"]),
        ("status", vec!["status", "--json", "--store", to]),
        (
            "target inventory",
            vec!["inventory", "--json", "--from", to],
        ),
    ] {
        let (code, v) = outs.run(name, s.cmd().args(&args));
        assert_eq!(code, Some(0), "{name}: {v}");
        if name == "verify" {
            assert_eq!(v["failed"], 0, "{v}");
        }
    }
    let mut hay = outs.0;
    hay.extend(file_haystacks(&s.state()));
    hay.extend(target_raw());
    assert_absent(HOOK, &hay);
}

/// The attribute lines of every item of a keyring service.
fn keyring_attributes(bus: &str, svc: &str) -> Vec<(String, Vec<u8>)> {
    let out = Command::new("secret-tool")
        .args(["search", "--all", "service", svc])
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // secret-tool prints each secret too: keep the attribute lines.
    let attrs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("attribute."))
        .collect();
    assert!(
        attrs.iter().any(|l| l.contains("credshift.metadata")),
        "{attrs:?}"
    );
    vec![(
        format!("attributes of {svc}"),
        attrs.join("\n").into_bytes(),
    )]
}

/// Plant the items in a keyring service as an older credshift did: the
/// metadata as it came in the `credshift.metadata` attribute.
fn plant_keyring(bus: &str, svc: &str) {
    use std::io::Write;
    for c in legacy_items() {
        let meta = Value::Object(c.metadata.clone()).to_string();
        let user = c.id.to_string();
        let mut child = Command::new("secret-tool")
            .args([
                "store",
                "--label=legacy",
                "service",
                svc,
                "username",
                &user,
                "credshift.kind",
                c.kind.as_str(),
                "credshift.metadata",
                &meta,
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(c.secret.expose().as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
}

fn keyring() -> Option<&'static keyring_service::KeyringService> {
    let ks = keyring_service::shared()?;
    let have = Command::new("secret-tool")
        .arg("--version")
        .output()
        .is_ok();
    if !have {
        skip_without("secret-tool", "libsecret-tools is not installed");
        return None;
    }
    Some(ks)
}

/// Plant through the store (which now keeps public metadata only), then
/// put the legacy metadata into the column as an older credshift did.
fn plant_sqlite(s: &Setup, spec: &str, path: &Path) {
    let st = s.raw(spec);
    for r in st.write_many(&legacy_items()) {
        r.unwrap();
    }
    drop(st);
    let conn = rusqlite::Connection::open(path).unwrap();
    let n = conn
        .execute(
            "UPDATE credshift_credentials SET metadata = ?1 \
             WHERE namespace = 'slack' AND name = 'bot'",
            [Value::Object(legacy_metadata()).to_string()],
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn plant_postgres(s: &Setup, spec: &str) {
    let st = s.raw(spec);
    for r in st.write_many(&legacy_items()) {
        r.unwrap();
    }
    drop(st);
    let mut conn = pg::connect(spec);
    let n = conn
        .execute(
            "UPDATE credshift_credentials SET metadata = CAST($1::TEXT AS JSONB) WHERE id = $2",
            &[&Value::Object(legacy_metadata()).to_string(), &PARENT_ID],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// The PostgreSQL store's ids, kinds and metadata column as text.
fn postgres_columns(url: &str) -> Vec<(String, Vec<u8>)> {
    let mut conn = pg::connect(url);
    let rows = conn
        .query(
            "SELECT id || ' ' || kind || ' ' || metadata::text FROM credshift_credentials",
            &[],
        )
        .unwrap();
    let text: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    assert!(text.iter().any(|t| t.contains("#alerts")), "{text:?}");
    vec![(
        "postgres metadata column".into(),
        text.join("\n").into_bytes(),
    )]
}

#[test]
fn keyring_attribute_secret_becomes_an_item_and_migrates_to_sqlite() {
    let Some(ks) = keyring() else { return };
    let mut s = Setup::new();
    s.bus = Some(ks.address.clone());
    let svc = format!("credshift-legacy-attr-{}", std::process::id());
    plant_keyring(&ks.address, &svc);
    let db = s.path("target/t.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let to = format!("sqlite:{}", db.display());
    let target_dir = s.path("target");
    check_legacy_migration(&s, &format!("keyring:{svc}"), &to, &|| {
        file_haystacks(&target_dir)
    });
}

#[test]
fn sqlite_metadata_column_secret_becomes_an_item_and_migrates_to_postgres() {
    let Some(db) = pg::fresh_db() else { return };
    let s = Setup::new();
    let path = s.path("legacy.db");
    let from = format!("sqlite:{}", path.display());
    plant_sqlite(&s, &from, &path);
    let url = db.url();
    check_legacy_migration(&s, &from, &url, &|| postgres_columns(&url));
}

#[test]
fn postgres_metadata_column_secret_becomes_an_item_and_migrates_to_the_keyring() {
    let Some(ks) = keyring() else { return };
    let Some(db) = pg::fresh_db() else { return };
    let mut s = Setup::new();
    s.bus = Some(ks.address.clone());
    let from = db.url();
    plant_postgres(&s, &from);
    let svc = format!("credshift-legacy-pg-{}", std::process::id());
    let bus = ks.address.clone();
    check_legacy_migration(&s, &from, &format!("keyring:{svc}"), &|| {
        keyring_attributes(&bus, &svc)
    });
}

#[test]
fn encrypted_file_and_bundle_metadata_secrets_become_items_and_migrate_to_sqlite() {
    for scheme in ["encrypted", "bundle"] {
        let s = Setup::new();
        let from = format!("{scheme}:{}", s.path("legacy.enc").display());
        // The envelope store keeps metadata as it is given, as before.
        for r in s.raw(&from).write_many(&legacy_items()) {
            r.unwrap();
        }
        let target_dir = s.path("target");
        std::fs::create_dir_all(&target_dir).unwrap();
        let to = format!("sqlite:{}", target_dir.join("t.db").display());
        check_legacy_migration(&s, &from, &to, &|| file_haystacks(&target_dir));
    }
}

#[test]
fn dotenv_marker_secret_becomes_an_item_and_migrates_to_sqlite() {
    let s = Setup::new();
    let env = s.path("legacy.env");
    let marker = json!({"id": PARENT_ID, "kind": "api_key", "metadata": legacy_metadata()});
    std::fs::write(
        &env,
        format!(
            "# credshift: {marker}\nSLACK_BOT={PARENT_VALUE}\n\
             # credshift: {{\"id\":\"{}\",\"kind\":\"api_key\"}}\nOPENAI_API_KEY={}\n",
            PLAIN.0, PLAIN.1
        ),
    )
    .unwrap();
    let target_dir = s.path("target");
    std::fs::create_dir_all(&target_dir).unwrap();
    let to = format!("sqlite:{}", target_dir.join("t.db").display());
    check_legacy_migration(&s, &format!("dotenv:{}", env.display()), &to, &|| {
        file_haystacks(&target_dir)
    });
    let text = std::fs::read_to_string(&env).unwrap();
    assert!(!text.contains("hooks.slack.com"), "{text}");
}

/// Cleanup deletes the parent only together with every secret of its
/// metadata: when the derived item fails, the parent (verified) stays in
/// the source with its metadata, reported as "migrated, source still
/// present"; a re-run moves the derived item and then removes both. A
/// rollback leaves the source as it was.
#[test]
fn a_parent_stays_in_the_source_until_its_metadata_secret_verified() {
    let s = Setup::new();
    let path = s.path("legacy.db");
    let from = format!("sqlite:{}", path.display());
    plant_sqlite(&s, &from, &path);
    let target_dir = s.path("target");
    std::fs::create_dir_all(&target_dir).unwrap();
    let to = format!("sqlite:{}", target_dir.join("t.db").display());
    let mut outs = Outputs::default();

    // Rolled back: the target is empty again, the source untouched.
    let (code, r) = outs.run("migrate", migrate(&mut s.cmd(), &from, &to, &[]));
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["copied"], 3, "{r}");
    let id = r["migration_id"].as_str().unwrap().to_string();
    let (code, r) = outs.run(
        "rollback",
        s.cmd()
            .args(["rollback", "--yes", "--json", "--migration-id", &id]),
    );
    assert_eq!(code, Some(0), "{r}");
    assert!(
        s.open(&to)
            .read_all()
            .map_or(true, |scan| scan.credentials.is_empty())
    );
    let raw = s.raw(&from);
    let p = raw.read(&PARENT_ID.parse().unwrap()).unwrap().unwrap();
    assert_eq!(p.metadata["webhook_url"], HOOK);

    // The derived item fails: the parent verifies but is kept.
    let (code, r) = outs.migrate_failing(&s, &from, &to, DERIVED_ID);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["copied"], 2, "{r}");
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(r["source_deleted"], 1, "only the plain item: {r}");
    let failures = r["source_delete_failed"].to_string();
    assert!(
        failures.contains(PARENT_ID)
            && failures.contains("source still present")
            && failures.contains("webhook_url"),
        "{failures}"
    );
    let p = raw.read(&PARENT_ID.parse().unwrap()).unwrap().unwrap();
    assert_eq!(p.secret.expose(), PARENT_VALUE);
    assert_eq!(p.metadata["webhook_url"], HOOK, "nothing lost");
    assert!(raw.read(&PLAIN.0.parse().unwrap()).unwrap().is_none());

    // Again without the fault: the derived item moves, then both go.
    let (code, r) = outs.run(
        "re-run",
        migrate(&mut s.cmd(), &from, &to, &["--delete-source"]),
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["copied"], 1, "{r}");
    assert_eq!(r["source_deleted"], 2, "{r}");
    assert!(raw.read_all().unwrap().credentials.is_empty());
    let t = s.open(&to);
    assert_eq!(
        t.read(&DERIVED_ID.parse().unwrap())
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        HOOK
    );
    let mut hay = outs.0;
    hay.extend(file_haystacks(&s.state()));
    hay.extend(file_haystacks(&target_dir));
    assert_absent(HOOK, &hay);
}

/// A nested secret next to [`HOOK`] in the same parent's metadata.
const NESTED_KEY: &str = "sk-proj-legacyNestedCanary00000000007";

/// A `.env` with 255 plain items that delete before `slack/bot`, then
/// `slack/bot` whose marker holds two secrets: cleanup's first batch of
/// 256 ends right after the parent.
fn env_with_a_parent_at_a_batch_boundary(s: &Setup) -> PathBuf {
    let env = s.path("boundary.env");
    let mut text: String = (0..255)
        .map(|i| format!("A_KEY_{i:03}=sk-boundary-plain-value-{i:05}\n"))
        .collect();
    let marker = json!({"id": PARENT_ID, "kind": "api_key", "metadata": {
        "webhook_url": HOOK, "channel": "#alerts", "nested": {"api_key": NESTED_KEY},
    }});
    text.push_str(&format!(
        "# credshift: {marker}\nSLACK_BOT={PARENT_VALUE}\n"
    ));
    std::fs::write(&env, text).unwrap();
    env
}

/// Cleanup deletes in batches of 256; a parent and the items derived from
/// its metadata share one, so one cleanup removes them all (it used to
/// keep the parent until cleanup ran again). With one derived item
/// failing, the parent keeps all its metadata and nothing unverified goes.
#[test]
fn one_cleanup_removes_a_parent_and_its_derived_items_across_a_batch_boundary() {
    const NESTED_ID: &str = "slack/bot#nested.api_key";
    let s = Setup::new();
    let env = env_with_a_parent_at_a_batch_boundary(&s);
    let from = format!("dotenv:{}", env.display());
    let to = format!("sqlite:{}", s.path("t.db").display());
    let mut outs = Outputs::default();
    let (code, r) = outs.run(
        "migrate",
        migrate(&mut s.cmd(), &from, &to, &["--delete-source"]),
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        (&r["copied"], &r["verified"]),
        (&json!(258), &json!(258)),
        "{r}"
    );
    assert_eq!(r["source_deleted"], 258, "{}", r["source_delete_failed"]);
    assert_eq!(r["source_delete_failed"], json!([]), "{r}");
    let text = std::fs::read_to_string(&env).unwrap();
    assert!(
        !text.contains(PARENT_VALUE)
            && !text.contains("hooks.slack.com")
            && !text.contains(NESTED_KEY),
        "{text}"
    );
    let t = s.open(&to);
    for (id, value) in [
        (PARENT_ID, PARENT_VALUE),
        (DERIVED_ID, HOOK),
        (NESTED_ID, NESTED_KEY),
    ] {
        let c = t.read(&id.parse().unwrap()).unwrap().expect(id);
        assert_eq!(c.secret.expose(), value, "{id}");
    }

    // One derived item fails to copy: the parent and its other derived
    // item verified but stay, the parent with every secret of its metadata.
    let s = Setup::new();
    let env = env_with_a_parent_at_a_batch_boundary(&s);
    let from = format!("dotenv:{}", env.display());
    let to = format!("sqlite:{}", s.path("t.db").display());
    let (code, r) = outs.migrate_failing(&s, &from, &to, NESTED_ID);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(
        (&r["copied"], &r["failed"]),
        (&json!(257), &json!(1)),
        "{r}"
    );
    assert_eq!(r["source_deleted"], 255, "{r}");
    let kept: Vec<&str> = r["source_delete_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [PARENT_ID, DERIVED_ID], "{r}");
    let raw = s.raw(&from);
    let p = raw
        .read(&PARENT_ID.parse().unwrap())
        .unwrap()
        .expect("kept");
    assert_eq!(p.secret.expose(), PARENT_VALUE);
    assert_eq!(p.metadata["webhook_url"], HOOK);
    assert_eq!(p.metadata["nested"]["api_key"], NESTED_KEY);
    assert_eq!(raw.read_all().unwrap().credentials.len(), 1);
    let mut hay = outs.0;
    hay.extend(file_haystacks(&s.state()));
    assert_absent(HOOK, &hay);
    assert_absent(NESTED_KEY, &hay);
}
