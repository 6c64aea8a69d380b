//! `keyring:SERVICE` against a real gnome-keyring-daemon (Secret Service)
//! on a private D-Bus session bus. Each test uses its own SERVICE.

mod support;

use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use credshift::credential::{Credential, Kind, Metadata};
use credshift::store::{self, OpenOptions, Store, StoreSpec};
use support::keyring_service::{self, KeyringService};
use support::*;

fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "credshift-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn open(service: &str) -> Box<dyn Store> {
    store::open(
        &StoreSpec::Keyring(service.to_string()),
        &OpenOptions::default(),
    )
    .expect("open keyring store")
}

fn meta(v: serde_json::Value) -> Metadata {
    match v {
        serde_json::Value::Object(m) => m,
        _ => panic!("metadata must be an object"),
    }
}

/// `secret-tool` on the keyring's bus (another client of the same store).
fn secret_tool(ks: &KeyringService, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("secret-tool")
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("secret-tool");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    // secret-tool prints attributes on stderr and the rest on stdout.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn have_secret_tool() -> bool {
    Command::new("secret-tool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Run credshift with a deadline: a hang is a failure, not a stuck test.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn credshift");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("credshift did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

#[test]
fn round_trip_keeps_value_kind_and_metadata() {
    let Some(_ks) = keyring_service::shared() else {
        return;
    };
    let svc = unique("roundtrip");
    let s = open(&svc);
    let creds = [
        Credential::new(
            id("account:acc_alpha/oauth_access_token"),
            Kind::OauthAccess,
            "sk-ant-oat01-access-value-0001",
        )
        .with_metadata(meta(serde_json::json!({
            "expires_at": 1790003600000i64,
            "scopes": ["user:inference", "user:profile"],
            "is_max": true,
            "account_name": "Alpha",
        }))),
        Credential::new(
            id("account:acc_alpha/oauth_refresh_token"),
            Kind::OauthRefresh,
            "sk-ant-ort01-refresh-value-0002",
        ),
        Credential::new(
            id("train:team-alpha/client_key/0"),
            Kind::ClientKeyHash,
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
        )
        .with_metadata(meta(serde_json::json!({"labels": {"env": "prod"}}))),
    ];
    for c in &creds {
        s.write(c).unwrap();
    }
    let listing = s.list().unwrap();
    assert!(listing.errors.is_empty(), "{:?}", listing.errors);
    let mut want: Vec<_> = creds
        .iter()
        .map(|c| (c.id.clone(), c.kind, c.metadata.clone()))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<_> = listing
        .entries
        .iter()
        .map(|e| (e.id.clone(), e.kind, e.metadata.clone()))
        .collect();
    assert_eq!(got, want);
    for c in &creds {
        let back = s.read(&c.id).unwrap().expect("written item reads back");
        assert!(back.same_as(c), "{} differs after the round trip", c.id);
    }

    // Replacing keeps one item and takes the new value and metadata.
    let newer = Credential::new(creds[0].id.clone(), Kind::OauthAccess, "sk-ant-oat01-new")
        .with_metadata(meta(serde_json::json!({"expires_at": 1800000000000i64})));
    s.write(&newer).unwrap();
    assert!(s.read(&newer.id).unwrap().unwrap().same_as(&newer));
    assert_eq!(s.list().unwrap().entries.len(), 3);

    assert!(s.delete(&creds[1].id).unwrap());
    assert!(
        !s.delete(&creds[1].id).unwrap(),
        "second delete finds nothing"
    );
    assert!(s.read(&creds[1].id).unwrap().is_none());
    let ids: Vec<String> = s
        .list()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        ids,
        [
            "account:acc_alpha/oauth_access_token",
            "train:team-alpha/client_key/0"
        ]
    );
    // Another service sees none of it.
    assert!(open(&unique("other")).list().unwrap().entries.is_empty());
}

#[test]
fn a_several_kilobyte_secret_round_trips() {
    let Some(_ks) = keyring_service::shared() else {
        return;
    };
    let svc = unique("big");
    let s = open(&svc);
    let value: String = (0..6000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let c = Credential::new(id("bundle/pem"), Kind::Other, value.clone());
    s.write(&c).unwrap();
    let back = s.read(&c.id).unwrap().unwrap();
    assert_eq!(back.secret.expose().len(), 6000);
    assert!(back.same_as(&c));
    assert_eq!(
        s.probe().max_secret_len,
        None,
        "the Secret Service has no limit"
    );
    assert_eq!(s.check(&c), None);
}

#[test]
fn unicode_ids_and_values_round_trip() {
    let Some(_ks) = keyring_service::shared() else {
        return;
    };
    let svc = unique("unicode-ß");
    let s = open(&svc);
    let c = Credential::new(
        id("account:ñandú-東京/clé/ключ"),
        Kind::Password,
        "pässwörd-密码-🔑",
    )
    .with_metadata(meta(serde_json::json!({"account_name": "Zoë ☃"})));
    s.write(&c).unwrap();
    let listing = s.list().unwrap();
    assert_eq!(listing.entries.len(), 1, "{:?}", listing.errors);
    assert_eq!(listing.entries[0].id, c.id);
    assert_eq!(listing.entries[0].metadata, c.metadata);
    assert!(s.read(&c.id).unwrap().unwrap().same_as(&c));
}

#[test]
fn probe_reports_an_unlocked_persistent_encrypted_keyring_and_its_count() {
    let Some(_ks) = keyring_service::shared() else {
        return;
    };
    let svc = unique("probe");
    let s = open(&svc);
    let empty = s.probe();
    assert!(empty.available, "{:?}", empty.reason);
    assert_eq!(empty.item_count, Some(0));
    for n in ["a", "b"] {
        s.write(&Credential::new(
            id(&format!("ns/{n}")),
            Kind::ApiKey,
            "value-123",
        ))
        .unwrap();
    }
    let cap = s.probe();
    assert!(cap.available && cap.readable && cap.writable, "{cap:?}");
    assert_eq!(cap.locked, Some(false));
    assert!(cap.persistent, "the login collection is on disk");
    assert!(cap.encrypted_at_rest && cap.keeps_metadata);
    assert_eq!(cap.item_count, Some(2));
    assert!(cap.warnings.is_empty(), "{:?}", cap.warnings);
}

#[test]
fn items_are_real_secret_service_items_other_clients_can_read() {
    let Some(ks) = keyring_service::shared() else {
        return;
    };
    if !have_secret_tool() {
        skip_without("secret-tool", "libsecret-tools is not installed");
        return;
    }
    let svc = unique("interop");
    let s = open(&svc);
    let c = Credential::new(id("openai/api_key"), Kind::ApiKey, "sk-proj-interop-42")
        .with_metadata(meta(serde_json::json!({"labels": ["x"]})));
    s.write(&c).unwrap();
    let (ok, out) = secret_tool(
        ks,
        &["lookup", "service", &svc, "username", "openai/api_key"],
        None,
    );
    assert!(ok);
    assert_eq!(out.trim_end(), "sk-proj-interop-42");
    let (ok, out) = secret_tool(
        ks,
        &[
            "search",
            "--all",
            "service",
            &svc,
            "credshift.kind",
            "api_key",
        ],
        None,
    );
    assert!(ok);
    assert!(
        out.contains(r#"attribute.credshift.metadata = {"labels":["x"]}"#),
        "{out}"
    );

    // An item stored by another tool is listed and read; one whose user is
    // not NAMESPACE/NAME, or whose metadata is broken, is reported by name
    // and never with its value.
    assert!(
        secret_tool(
            ks,
            &[
                "store",
                "--label=x",
                "service",
                &svc,
                "username",
                "github/token"
            ],
            Some("ghp_from-another-tool"),
        )
        .0
    );
    assert!(
        secret_tool(
            ks,
            &[
                "store",
                "--label=x",
                "service",
                &svc,
                "username",
                "plainuser"
            ],
            Some("hunter2-plain"),
        )
        .0
    );
    assert!(
        secret_tool(
            ks,
            &[
                "store",
                "--label=x",
                "service",
                &svc,
                "username",
                "ns/broken",
                "credshift.metadata",
                "{\"token\": \"sk-leaked-through-an-error",
            ],
            Some("sk-broken-value"),
        )
        .0
    );
    let listing = s.list().unwrap();
    let ids: Vec<String> = listing.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["github/token", "openai/api_key"]);
    assert_eq!(
        listing.entries[0].kind,
        Kind::ApiKey,
        "guessed from `token`"
    );
    let errors = format!("{:?}", listing.errors);
    assert_eq!(listing.errors.len(), 2, "{errors}");
    assert!(
        errors.contains("plainuser") && errors.contains("ns/broken"),
        "{errors}"
    );
    let read = s.read(&id("github/token")).unwrap().unwrap();
    assert_eq!(read.secret.expose(), "ghp_from-another-tool");
    let err = s.read(&id("ns/broken")).unwrap_err().to_string();
    assert!(err.contains("ns/broken"), "{err}");
    for text in [&errors, &err] {
        for secret in ["sk-leaked", "sk-broken-value", "hunter2"] {
            assert!(!text.contains(secret), "{text} leaks {secret}");
        }
    }
}

#[test]
fn inventory_and_get_through_the_binary() {
    let Some(ks) = keyring_service::shared() else {
        return;
    };
    let svc = unique("cli");
    let s = open(&svc);
    let secret = "sk-ant-api03-cli-visible-only-through-get-9f3a";
    s.write(
        &Credential::new(id("anthropic/api_key"), Kind::ApiKey, secret)
            .with_metadata(meta(serde_json::json!({"account_name": "Ops"}))),
    )
    .unwrap();
    s.write(&Credential::new(
        id("slack/bot_token"),
        Kind::ApiKey,
        "xoxb-second-item-value",
    ))
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let spec = format!("keyring:{svc}");

    let (code, out, err) = run_bounded(
        credshift(state.path())
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
            .args(["inventory", "--from", &spec, "--json"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inv["store"], spec.as_str());
    let items = inv["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{out}");
    assert_eq!(items[0]["id"], "anthropic/api_key");
    assert_eq!(items[0]["kind"], "api_key");
    assert_eq!(items[0]["metadata"]["account_name"], "Ops");
    assert_eq!(items[0]["preview"], "sk-ant-…9f3a (46 chars)");
    assert!(
        !out.contains(secret) && !out.contains("xoxb-second"),
        "{out}"
    );

    let (code, out, err) = run_bounded(
        credshift(state.path())
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
            .args(["get", "--from", &spec, "anthropic/api_key"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("{secret}\n"));

    let (code, _, err) = run_bounded(
        credshift(state.path())
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
            .args(["get", "--from", &spec, "anthropic/missing"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("anthropic/missing") && err.contains(&spec),
        "{err}"
    );
}

#[test]
fn a_locked_collection_is_reported_not_prompted_for() {
    // Its own daemon: locking the shared one would break the other tests.
    let ks = match KeyringService::start() {
        Ok(ks) => ks,
        Err(reason) => {
            skip_without("gnome-keyring", &reason);
            return;
        }
    };
    let svc = unique("locked");
    let spec = format!("keyring:{svc}");
    let state = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        run_bounded(
            credshift(state.path())
                .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
                .args(["--keyring-timeout", "20"])
                .args(args),
            Duration::from_secs(60),
        )
    };
    if have_secret_tool() {
        assert!(
            secret_tool(
                &ks,
                &["store", "--label=x", "service", &svc, "username", "ns/held"],
                Some("sk-held-while-locked"),
            )
            .0
        );
    }
    // Before: unlocked, writable.
    let (code, out, err) = cli(&["status", "--store", &spec, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mine = |v: &serde_json::Value| {
        v["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["spec"] == spec.as_str())
            .cloned()
            .expect("the asked store is in the report")
    };
    assert_eq!(mine(&status)["capability"]["locked"], false, "{out}");

    ks.lock().expect("lock the collection over D-Bus");
    let (code, out, err) = cli(&["status", "--store", &spec, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let cap = mine(&serde_json::from_str(&out).unwrap())["capability"].clone();
    assert_eq!(cap["locked"], true, "{out}");
    assert_eq!(cap["writable"], false, "{out}");
    assert!(
        cap["warnings"][0].as_str().unwrap().contains("locked"),
        "{out}"
    );

    let (code, _, err) = cli(&["get", "--from", &spec, "ns/anything"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("locked"), "{err}");
    assert!(
        !err.contains("timed out"),
        "a prompt must not be waited on: {err}"
    );
    assert!(ks.is_locked().unwrap(), "credshift never unlocked it");
}

#[test]
fn a_keyring_that_never_answers_times_out_with_a_clear_error() {
    // A socket that accepts and then says nothing: a hung D-Bus daemon.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("bus");
    let listener = UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let svc = unique("hung");
    let spec = format!("keyring:{svc}");
    let state = tempfile::tempdir().unwrap();
    for (args, op) in [
        (vec!["get", "--from", spec.as_str(), "ns/name"], "read"),
        (vec!["inventory", "--from", spec.as_str(), "--json"], "list"),
    ] {
        let (code, out, err) = run_bounded(
            credshift(state.path())
                .env(
                    "DBUS_SESSION_BUS_ADDRESS",
                    format!("unix:path={}", sock.display()),
                )
                .args(["--keyring-timeout", "1"])
                .args(&args),
            Duration::from_secs(30),
        );
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            err.contains(&format!("{spec}: timed out after 1 s")),
            "{err}"
        );
        assert!(err.contains(&format!("`{op}`")), "{err}");
    }
}

#[test]
fn no_session_bus_is_unavailable_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("keyring:{}", unique("nobus"));
    let (code, out, err) = run_bounded(
        credshift(dir.path())
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", dir.path().join("no-such-bus").display()),
            )
            .args(["status", "--store", &spec, "--json"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cap = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spec"] == spec.as_str())
        .unwrap()["capability"]
        .clone();
    assert_eq!(cap["available"], false, "{out}");
    let reason = cap["reason"].as_str().unwrap();
    assert!(reason.contains("Secret Service"), "{reason}");
    assert!(reason.contains("encrypted:PATH"), "{reason}");
}

/// The engine moves the dotenv fixture into the real keyring: every value
/// reads back as expected.json has it, a second run writes nothing, and a
/// rollback takes every written item out of the keyring again (the engine's
/// library API; the CLI test below goes through the binary).
#[test]
fn the_dotenv_fixture_migrates_into_the_keyring_and_rolls_back() {
    use credshift::engine::{self, ConflictPolicy, MigrationRequest};
    let Some(_ks) = keyring_service::shared() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let env_file = copy_fixture("dotenv/.env", work.path());
    let state = tempfile::tempdir().unwrap();
    let svc = unique("migrate");
    let from = StoreSpec::Dotenv(env_file.clone());
    let to = StoreSpec::Keyring(svc.clone());
    let opts = OpenOptions::default();
    let req = MigrationRequest {
        from: from.clone(),
        to: to.clone(),
        policy: ConflictPolicy::Skip,
        selection: None,
        delete_source: false,
    };
    let report = engine::run(req.clone(), state.path(), &opts, None, |_| {}).unwrap();
    assert!(!report.rolled_back, "{report:?}");
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.copied >= 3, "{report:?}");

    let expected = expected();
    let source = store::open(&from, &opts).unwrap().read_all().unwrap();
    let target = open(&svc);
    let mut checked = 0;
    for c in &source.credentials {
        let back = target
            .read(&c.id)
            .unwrap()
            .unwrap_or_else(|| panic!("{} is missing from the keyring", c.id));
        assert!(back.same_as(c), "{} differs in the keyring", c.id);
        if let Some(want) = expected.get(&c.id.to_string()) {
            assert_eq!(back.secret.expose(), want, "{}", c.id);
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        expected.keys().filter(|k| k.starts_with("env/")).count(),
        "every dotenv secret of expected.json was checked"
    );
    assert_eq!(
        target.list().unwrap().entries.len(),
        source.credentials.len()
    );

    let again = engine::run(req, state.path(), &opts, None, |_| {}).unwrap();
    assert_eq!(again.copied, 0, "{again:?}");
    assert_eq!(again.skipped, source.credentials.len(), "{again:?}");

    let undone = engine::rollback(state.path(), &report.migration_id, &opts).unwrap();
    assert!(undone.rolled_back, "{undone:?}");
    assert!(target.list().unwrap().entries.is_empty());
}

/// `credshift migrate` through the binary: the dotenv fixture into the real
/// keyring with --yes, every value read back equal to expected.json, and a
/// dry run into a keyring that already holds them plans no writes.
#[test]
fn cli_migrate_moves_the_dotenv_fixture_into_the_keyring() {
    let Some(ks) = keyring_service::shared() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let env_file = copy_fixture("dotenv/.env", work.path());
    let state = tempfile::tempdir().unwrap();
    let svc = unique("cli-migrate");
    let to = format!("keyring:{svc}");
    let from = format!("dotenv:{}", env_file.display());
    let (code, out, err) = run_bounded(
        migrate_cmd(state.path(), &from, &to, &["--yes", "--json"])
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["failed"], 0, "{out}");
    assert_eq!(report["rolled_back"], false, "{out}");

    let expected = expected();
    let dotenv_ids: Vec<&String> = expected.keys().filter(|k| k.starts_with("env/")).collect();
    assert!(!dotenv_ids.is_empty());
    for key in &dotenv_ids {
        let (code, value, err) = run_bounded(
            credshift(state.path())
                .env("DBUS_SESSION_BUS_ADDRESS", &ks.address)
                .args(["get", "--from", &to, key]),
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(0), "{key}: {err}");
        assert_eq!(value, format!("{}\n", expected[*key]), "{key}");
    }
    let all = open(&svc).list().unwrap();
    assert_eq!(all.entries.len() as u64, report["copied"].as_u64().unwrap());
    for secret in expected.values() {
        assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
    }

    let (code, plan, err) = run_bounded(
        migrate_cmd(state.path(), &from, &to, &["--dry-run", "--json"])
            .env("DBUS_SESSION_BUS_ADDRESS", &ks.address),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["counts"]["copy"], 0, "nothing left to copy: {plan}");
    assert_eq!(
        plan["counts"]["skip_identical"], report["copied"],
        "every migrated item is found identical: {plan}"
    );
}
