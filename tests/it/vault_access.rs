//! The `vault:` store's access rules against a real OpenBao: an inventory
//! that never reads a value (a token allowed to list but not to read
//! still inventories), a 403 naming the path and the capability, the
//! probe's sealed state and missing capabilities, no token in `exec`'s
//! child, `VAULT_NAMESPACE`, `VAULT_CACERT` over TLS, `BAO_TOKEN` and
//! `~/.vault-token`.

use crate::support;

use credshift::credential::{Credential, Kind, Metadata};
use support::vault::Bao;
use support::*;

/// What a token that may list and see field names, but read no value,
/// is allowed under `secret/PREFIX`.
fn list_only_policy(prefix: &str) -> String {
    format!(
        r#"
path "secret/metadata/{prefix}" {{ capabilities = ["list"] }}
path "secret/metadata/{prefix}/" {{ capabilities = ["list"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["list", "read"] }}
path "secret/subkeys/{prefix}/*" {{ capabilities = ["read"] }}
path "secret/data/{prefix}/*" {{ capabilities = ["deny"] }}
"#
    )
}

#[test]
fn inventory_lists_without_reading_a_value_even_when_reads_are_denied() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let secret = "sk-proj-inventoryNOTREAD00000001";
    let mut meta = Metadata::new();
    meta.insert("label".into(), "billing team".into());
    for (spec, layout) in [
        (bao.spec("secret/inv"), "secret"),
        (
            format!("{}?layout=item", bao.spec("secret/invitem")),
            "item",
        ),
    ] {
        let s = bao.open(&spec);
        let _ = s.read_all();
        for r in s.write_many(&[
            Credential::new(id("openai/api_key"), Kind::ApiKey, secret),
            Credential::new(
                id("openai/refresh"),
                Kind::OauthRefresh,
                "rt-0000000000000002",
            )
            .with_metadata(meta.clone()),
        ]) {
            r.unwrap();
        }
        let prefix = spec
            .split("/secret/")
            .nth(1)
            .unwrap()
            .trim_end_matches("?layout=item");
        let token = bao.token_with_policy(&format!("lister-{layout}"), &list_only_policy(prefix));
        let file = bao.token_file(&token, &format!("lister-{layout}"));
        let with_token = |args: &[&str]| {
            let mut c = credshift(&state);
            c.env("HOME", bao.home.path())
                .args(args)
                .args(["--vault-token-file", file.to_str().unwrap()]);
            run(&mut c)
        };
        // The server refuses this token every value...
        let (out, stdout, stderr) = with_token(&["get", "--from", &spec, "openai/api_key"]);
        assert_ne!(out.status.code(), Some(0), "{layout}: {stdout}");
        assert!(
            stderr.contains("permission denied") && stderr.contains("lack 'read' on secret/data/"),
            "{layout}: a 403 names the capability and the path: {stderr}"
        );
        // ...and the inventory still lists every item, kinds and metadata
        // from custom_metadata, no preview of a value.
        let (out, stdout, stderr) = with_token(&["inventory", "--from", &spec, "--json"]);
        assert!(out.status.success(), "{layout}: {stdout}{stderr}");
        let inv = json(&stdout);
        let items = inv["items"].as_array().unwrap();
        let listed: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(
            listed,
            ["openai/api_key", "openai/refresh"],
            "{layout}: {stdout}"
        );
        assert_eq!(items[1]["kind"], "oauth_refresh", "{layout}: {stdout}");
        assert_eq!(items[1]["metadata"]["label"], "billing team", "{layout}");
        assert!(
            items.iter().all(|i| i["preview"] == "(value not read)"),
            "{layout}: {stdout}"
        );
        assert!(inv["errors"].as_array().unwrap().is_empty(), "{stdout}");
        assert!(!stdout.contains("inventoryNOTREAD") && !stdout.contains(&token));
        let (out, text, stderr) = with_token(&["inventory", "--from", &spec]);
        assert!(out.status.success(), "{stderr}");
        assert!(
            text.contains("openai/refresh") && text.contains("listed"),
            "{text}"
        );
    }
}

#[test]
fn the_probe_names_a_sealed_server_and_each_missing_capability() {
    let Some(bao) = Bao::start() else { return };
    let spec = bao.spec("secret/probe");
    let token = bao.token_with_policy("probe-lister", &list_only_policy("probe"));
    let cap = bao.open_with_token(&spec, &token).probe();
    assert!(cap.available, "{:?}", cap.reason);
    assert!(!cap.writable && !cap.readable, "{cap:?}");
    let warnings = cap.warnings.join("\n");
    for c in ["read", "create", "update", "patch"] {
        assert!(
            warnings.contains(&format!("the token lacks '{c}' on secret/data/probe/*")),
            "{c}: {warnings}"
        );
    }
    assert!(!warnings.contains("lacks 'list'"), "{warnings}");
    assert!(!warnings.contains(&token), "{warnings}");
    bao.run(&["operator", "seal"]);
    let cap = bao.open(&spec).probe();
    assert!(!cap.available);
    let reason = cap.reason.unwrap_or_default();
    assert!(
        reason.contains("is sealed") && reason.contains("2."),
        "{reason}"
    );
}

#[test]
fn exec_gives_the_app_its_secrets_and_never_the_token() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = bao.spec("secret/exec");
    let s = bao.open(&spec);
    let _ = s.read_all();
    s.write(&Credential::new(
        id("env/OPENAI_API_KEY"),
        Kind::ApiKey,
        "sk-proj-execENV00000000000001",
    ))
    .unwrap();
    // Both token variables set, and a token file named on the command
    // line: none of the three reaches the child, under any name.
    let file = bao.token_file(&bao.token, "exec-token");
    let (out, stdout, stderr) = run(bao
        .credshift(&dir.path().join("state"))
        .env("BAO_TOKEN", &bao.token)
        .args(["exec", "--vault-token-file", file.to_str().unwrap()])
        .args(["--from", &spec, "--", "env"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "OPENAI_API_KEY=sk-proj-execENV00000000000001"),
        "{stdout}"
    );
    let hay = vec![(
        "exec child env".to_string(),
        format!("{stdout}{stderr}").into_bytes(),
    )];
    canary::assert_absent(&bao.token, &hay);
}

#[test]
fn a_namespace_from_vault_namespace_scopes_every_request() {
    let Some(bao) = Bao::start() else { return };
    bao.run(&["namespace", "create", "team"]);
    bao.run(&["secrets", "enable", "-ns=team", "-path=secret", "kv-v2"]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    write_env(&env, &[("OPENAI_API_KEY", "sk-proj-namespace000000000001")]);
    let to = bao.spec("secret/apps/billing");
    let (out, stdout, stderr) = run(bao
        .credshift(&state)
        .env("VAULT_NAMESPACE", "team")
        .args(["migrate", "--from", &format!("dotenv:{}", env.display())])
        .args(["--to", &to, "--yes", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let got = |ns: &str| {
        let out = bao
            .cli()
            .args(["kv", "get", &format!("-ns={ns}"), "-field=OPENAI_API_KEY"])
            .arg("secret/apps/billing/env")
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(
        got("team").as_deref(),
        Some("sk-proj-namespace000000000001")
    );
    assert_eq!(
        bao.kv_field("secret/apps/billing/env", "OPENAI_API_KEY"),
        None
    );
    // BAO_NAMESPACE is read too; without either, the root namespace has
    // nothing there.
    let (out, stdout, _) = run(bao.credshift(&state).env("BAO_NAMESPACE", "team").args([
        "get",
        "--from",
        &to,
        "env/OPENAI_API_KEY",
    ]));
    assert!(out.status.success());
    assert_eq!(stdout, "sk-proj-namespace000000000001\n");
    let (out, _, _) = run(bao
        .credshift(&state)
        .args(["get", "--from", &to, "env/OPENAI_API_KEY"]));
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn tls_trusts_the_ca_from_vault_cacert_and_nothing_else() {
    let Some(bao) = Bao::start_tls() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = dir.path().join("a.env");
    write_env(&env, &[("GITHUB_TOKEN", "ghp_tls000000000000000000001")]);
    let to = bao.spec("secret/tls");
    assert!(to.starts_with("vault:https://"), "{to}");
    let migrate = |ca_var: Option<&str>| {
        let mut c = bao.credshift(&state);
        c.env_remove("VAULT_CACERT").env_remove("BAO_CACERT");
        if let Some(v) = ca_var {
            c.env(v, bao.ca_file());
        }
        c.args(["migrate", "--from", &format!("dotenv:{}", env.display())])
            .args(["--to", &to, "--yes", "--json"]);
        run(&mut c)
    };
    // The dev server's CA is no system root: refused.
    let (out, stdout, stderr) = migrate(None);
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(bao.kv_field("secret/tls/env", "GITHUB_TOKEN"), None);
    let (out, stdout, stderr) = migrate(Some("BAO_CACERT"));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        bao.kv_field("secret/tls/env", "GITHUB_TOKEN").as_deref(),
        Some("ghp_tls000000000000000000001")
    );
    let (out, stdout, stderr) = run(bao
        .credshift(&state)
        .env("VAULT_CACERT", bao.ca_file())
        .args(["get", "--from", &to, "env/GITHUB_TOKEN"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "ghp_tls000000000000000000001\n");
}

#[test]
fn the_token_comes_from_bao_token_or_the_vault_token_file_in_home() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let spec = bao.spec("secret/tok");
    bao.run(&[
        "kv",
        "put",
        "secret/tok/openai",
        "api_key=sk-token-source-01",
    ]);
    let get = |c: &mut std::process::Command| {
        let (out, stdout, stderr) = run(c.args(["get", "--from", &spec, "openai/api_key"]));
        (out.status.success(), stdout, stderr)
    };
    let home = tempfile::tempdir().unwrap();
    let bare = || {
        let mut c = credshift(&state);
        c.env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env("HOME", home.path());
        c
    };
    // No token anywhere: a clear refusal naming where one comes from.
    let (ok, _, stderr) = get(&mut bare());
    assert!(!ok);
    assert!(
        stderr.contains("VAULT_TOKEN") && stderr.contains("--vault-token-file"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = get(bare().env("BAO_TOKEN", &bao.token));
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "sk-token-source-01\n");
    // What `bao login` leaves behind.
    support::vault::token_file(home.path(), &bao.token, ".vault-token");
    let (ok, stdout, stderr) = get(&mut bare());
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "sk-token-source-01\n");
    assert!(!stderr.contains(&bao.token));
}

/// Issue 24 point 5, asked of the server's audit log: an inventory reads no
/// secret's data, and a dry run into Vault reads only the secrets it would
/// write to, never the other secrets under the prefix.
#[test]
fn inventory_and_dry_run_leave_unrelated_secrets_unread() {
    let Some(bao) = Bao::start_audited() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for i in 0..3 {
        bao.run(&[
            "kv",
            "put",
            &format!("secret/dr/other{i}"),
            "api_key=unrelated-0001",
        ]);
    }
    bao.run(&[
        "kv",
        "put",
        "secret/dr/env",
        "OPENAI_API_KEY=theirs-0001",
        "KEEP=k",
    ]);
    let env = dir.path().join("a.env");
    write_env(
        &env,
        &[
            ("OPENAI_API_KEY", "sk-proj-dryrun0000000000001"),
            ("GITHUB_TOKEN", "ghp_dryrun00000000000000002"),
        ],
    );
    let to = bao.spec("secret/dr");
    let data_reads = |from: usize| -> Vec<String> {
        bao.audited()[from..]
            .iter()
            .filter(|(op, p)| op == "read" && p.starts_with("secret/data/dr/"))
            .map(|(_, p)| p.clone())
            .collect()
    };
    let before = bao.audited().len();
    let (out, stdout, stderr) =
        run(bao
            .credshift(&state)
            .args(["inventory", "--from", &to, "--json"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        json(&stdout)["items"].as_array().unwrap().len(),
        5,
        "{stdout}"
    );
    assert_eq!(data_reads(before), Vec::<String>::new(), "inventory");
    let before = bao.audited().len();
    let (code, stdout, stderr) = bao.migrate(
        &state,
        &format!("dotenv:{}", env.display()),
        &to,
        &["--dry-run"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The conflict is still seen: the value at the target was compared.
    let plan = json(&stdout);
    assert_eq!(plan["counts"]["conflict"], 1, "{stdout}");
    let conflicted: Vec<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] == "conflict")
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(conflicted, ["env/OPENAI_API_KEY"], "{stdout}");
    assert_eq!(data_reads(before), ["secret/data/dr/env"], "dry run");
}

/// The request budget of the item layout, from the server's audit log: a
/// check-and-set create, the custom_metadata patch (kind and provenance)
/// and the read-back of that exact version per item; the plan lists the
/// empty prefix once and reads nothing per item.
#[test]
fn the_item_layout_costs_three_requests_per_item() {
    let Some(bao) = Bao::start_audited() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("a.env");
    let pairs: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("KEY_{i:02}"),
                format!("sk-budget-{i:02}-{}", "v".repeat(20)),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    write_env(&env, &refs);
    let to = format!("{}?layout=item", bao.spec("secret/budget"));
    let before = bao.audited().len();
    let (code, stdout, stderr) = bao.migrate(
        &dir.path().join("state"),
        &format!("dotenv:{}", env.display()),
        &to,
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut per: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for (op, path) in &bao.audited()[before..] {
        if let Some(rest) = path
            .strip_prefix("secret/data/budget/env/")
            .map(|_| "data")
            .or_else(|| {
                path.strip_prefix("secret/metadata/budget/env/")
                    .map(|_| "metadata")
            })
        {
            *per.entry((op.clone(), rest.to_string())).or_default() += 1;
        }
    }
    let want: std::collections::BTreeMap<(String, String), usize> = [
        (("create".to_string(), "data".to_string()), 40),
        (("patch".to_string(), "metadata".to_string()), 40),
        (("read".to_string(), "data".to_string()), 40),
    ]
    .into();
    assert_eq!(per, want);
}

/// Overwriting secrets another tool wrote: the plan reads each once (to
/// compare), the check-and-set patch uses that version without reading it
/// again, then custom_metadata and the read-back: four requests per item.
#[test]
fn an_overwrite_reads_each_secret_once_before_its_read_back() {
    let Some(bao) = Bao::start_audited() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("a.env");
    let pairs: Vec<(String, String)> = (0..10)
        .map(|i| {
            (
                format!("KEY_{i:02}"),
                format!("sk-overwrite-{i:02}-{}", "v".repeat(20)),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    write_env(&env, &refs);
    for (k, _) in &pairs {
        bao.run(&["kv", "put", &format!("secret/ow/env/{k}"), "value=theirs"]);
    }
    let to = format!("{}?layout=item", bao.spec("secret/ow"));
    let before = bao.audited().len();
    let (code, stdout, stderr) = bao.migrate(
        &dir.path().join("state"),
        &format!("dotenv:{}", env.display()),
        &to,
        &["--on-conflict", "overwrite"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut per: std::collections::BTreeMap<(String, &str), usize> = Default::default();
    for (op, path) in &bao.audited()[before..] {
        let area = if path.starts_with("secret/data/ow/env/") {
            "data"
        } else if path.starts_with("secret/metadata/ow/env/") && !path.ends_with('/') {
            "metadata"
        } else {
            continue;
        };
        *per.entry((op.clone(), area)).or_default() += 1;
    }
    let want: std::collections::BTreeMap<(String, &str), usize> = [
        (("patch".to_string(), "data"), 10),
        (("patch".to_string(), "metadata"), 10),
        (("read".to_string(), "data"), 20),
    ]
    .into();
    assert_eq!(per, want);
    for (k, v) in &pairs {
        assert_eq!(
            bao.kv_field(&format!("secret/ow/env/{k}"), "value")
                .as_deref(),
            Some(v.as_str())
        );
    }
}

/// In the default layout a denied secret fails its own fields only: the
/// other secrets of the same batch are written and read back.
#[test]
fn a_denied_secret_fails_only_its_fields_in_the_default_layout() {
    let Some(bao) = Bao::start() else { return };
    let token = bao.token_with_policy(
        "one-denied",
        r#"
path "secret/data/app2/*" { capabilities = ["create", "read", "update", "patch"] }
path "secret/metadata/app2/*" { capabilities = ["read", "list", "patch"] }
path "secret/metadata/app2/" { capabilities = ["list"] }
path "secret/data/app2/github" { capabilities = ["deny"] }
"#,
    );
    let s = bao.open_with_token(&bao.spec("secret/app2"), &token);
    let _ = s.read_wanted(&[]);
    let creds = [
        Credential::new(id("openai/api_key"), Kind::ApiKey, "sk-denied-test-0001"),
        Credential::new(id("github/token"), Kind::ApiKey, "ghp_denied000000000002"),
        Credential::new(id("openai/org"), Kind::Other, "org-0003"),
    ];
    let r = s.write_many(&creds);
    assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
    let e = r[1].as_ref().unwrap_err().to_string();
    assert!(
        e.contains("permission denied") && e.contains("secret/data/app2/github"),
        "{e}"
    );
    assert!(!e.contains("ghp_denied") && !e.contains(&token), "{e}");
    assert_eq!(
        bao.kv_field("secret/app2/openai", "org").as_deref(),
        Some("org-0003")
    );
    assert_eq!(bao.kv_metadata("secret/app2/github"), None);
}

/// Issue 24 point 5 with Vault as the SOURCE, from the audit log: a dry
/// run lists the source and reads a value only where the target already
/// holds that id (identical or a conflict is decided on the two values);
/// every other item is planned from its listing, its preview "(value not
/// read)". In the default layout a value is read with its secret's other
/// fields (one secret, one read), in the item layout alone.
#[test]
fn a_dry_run_from_vault_reads_only_the_values_the_target_already_holds() {
    let Some(bao) = Bao::start_audited() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (layout, src, reads) in [
        ("", "drs", vec!["secret/data/drs/env"]),
        (
            "?layout=item",
            "drsi",
            vec!["secret/data/drsi/env/A_KEY", "secret/data/drsi/env/B_KEY"],
        ),
    ] {
        let from = format!("{}{layout}", bao.spec(&format!("secret/{src}")));
        let to = bao.spec(&format!("secret/{src}dst"));
        let s = bao.open(&from);
        let _ = s.read_all();
        let c = |id: &str, v: &str| Credential::new(support::id(id), Kind::ApiKey, v);
        for r in s.write_many(&[
            c("env/A_KEY", "sk-same-at-both-ends-0001"),
            c("env/B_KEY", "sk-source-value-000000002"),
            c("env/C_KEY", "sk-source-onlyNOTREAD0003"),
            c("other/X_KEY", "sk-source-onlyNOTREAD0004"),
        ]) {
            r.unwrap();
        }
        let t = bao.open(&to);
        let _ = t.read_all();
        for r in t.write_many(&[
            c("env/A_KEY", "sk-same-at-both-ends-0001"),
            c("env/B_KEY", "sk-target-value-000000002"),
        ]) {
            r.unwrap();
        }
        let data_reads = |from: usize| -> Vec<String> {
            let mut r: Vec<String> = bao.audited()[from..]
                .iter()
                .filter(|(op, p)| op == "read" && p.starts_with(&format!("secret/data/{src}/")))
                .map(|(_, p)| p.clone())
                .collect();
            r.sort();
            r
        };
        let before = bao.audited().len();
        let (out, stdout, stderr) = run(bao.credshift(&state).args([
            "migrate",
            "--from",
            &from,
            "--to",
            &to,
            "--dry-run",
            "--json",
        ]));
        assert!(out.status.success(), "{layout}: {stdout}{stderr}");
        assert_eq!(data_reads(before), reads, "{layout}: source values read");
        let plan = json(&stdout);
        let counts = &plan["counts"];
        assert_eq!(
            (
                counts["copy"].as_u64(),
                counts["skip_identical"].as_u64(),
                counts["conflict"].as_u64()
            ),
            (Some(2), Some(1), Some(1)),
            "{layout}: {stdout}"
        );
        for item in plan["items"].as_array().unwrap() {
            let unread = item["action"] == "copy";
            assert_eq!(
                item["preview"] == "(value not read)",
                unread,
                "{layout}: {item}"
            );
        }
        assert!(!stdout.contains("NOTREAD"), "{stdout}");
        // The migration itself reads what it writes, and writes it exactly.
        let (code, stdout, stderr) = bao.migrate(&state, &from, &to, &[]);
        assert_eq!(code, 0, "{layout}: {stdout}{stderr}");
        assert_eq!(
            bao.values(&to).get("other/X_KEY").map(String::as_str),
            Some("sk-source-onlyNOTREAD0004"),
            "{layout}"
        );
    }
}

/// The check a consented plan runs under the locks before its first write
/// (`Prepared::changed_since`) reads only the planned secrets at a Vault
/// target, never the others under the prefix, from the audit log; a
/// planned item another client changed since the plan still stops the
/// run before it writes, while a change to an unrelated secret does not.
#[test]
fn the_check_before_a_consented_plan_reads_only_the_planned_secrets() {
    use credshift::engine::plan::ChangedSide;
    use credshift::engine::{self, ConflictPolicy, EngineError, MigrationRequest};
    use credshift::store::{self, StoreSpec};
    let Some(bao) = Bao::start_audited() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for i in 0..3 {
        bao.run(&[
            "kv",
            "put",
            &format!("secret/cs/other{i}"),
            "api_key=unrelated-0001",
        ]);
    }
    bao.run(&["kv", "put", "secret/cs/env", "OPENAI_API_KEY=theirs-0001"]);
    let env = dir.path().join("a.env");
    write_env(
        &env,
        &[
            ("OPENAI_API_KEY", "sk-proj-consented000000001"),
            ("GITHUB_TOKEN", "ghp_consented0000000000002"),
        ],
    );
    let from: StoreSpec = format!("dotenv:{}", env.display()).parse().unwrap();
    let to: StoreSpec = bao.spec("secret/cs").parse().unwrap();
    let opts = credshift::unlock::KeyOptions {
        vault_token_file: Some(bao.token_file(&bao.token, "root")),
        ..Default::default()
    };
    let unrelated_reads = |from: usize| -> usize {
        bao.audited()[from..]
            .iter()
            .filter(|(op, p)| op == "read" && p.starts_with("secret/data/cs/other"))
            .count()
    };
    let consent_then_run = |between: &[&str]| {
        let source = store::open(&from, &opts).unwrap();
        let target = store::open(&to, &opts).unwrap();
        let req = MigrationRequest {
            from: from.clone(),
            to: to.clone(),
            policy: ConflictPolicy::Overwrite,
            selection: None,
            delete_source: false,
        };
        let before = bao.audited().len();
        let prepared = engine::prepare(&req, source.as_ref(), target.as_ref()).unwrap();
        assert_eq!(unrelated_reads(before), 0, "the plan");
        bao.run(between);
        let before = bao.audited().len();
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = engine::start_prepared(req, prepared, source, target, &state, &opts, cancel)
            .and_then(|h| engine::follow(h, None, |_| {}));
        assert_eq!(unrelated_reads(before), 0, "the check before writing");
        r
    };
    // A planned item changed at the target since the plan: stopped.
    let e =
        consent_then_run(&["kv", "patch", "secret/cs/env", "OPENAI_API_KEY=changed"]).unwrap_err();
    match e {
        EngineError::ChangedSincePlan { changed } => assert_eq!(
            changed,
            [(id("env/OPENAI_API_KEY"), ChangedSide::Target)],
            "only the planned item that changed"
        ),
        e => panic!("{e}"),
    }
    assert_eq!(
        bao.kv_field("secret/cs/env", "OPENAI_API_KEY").as_deref(),
        Some("changed")
    );
    // Another secret under the prefix changed: not the plan's business.
    let report = consent_then_run(&["kv", "put", "secret/cs/other0", "api_key=changed"]).unwrap();
    assert_eq!((report.verified, report.failed), (2, 0), "{report:?}");
    assert_eq!(
        bao.kv_field("secret/cs/env", "GITHUB_TOKEN").as_deref(),
        Some("ghp_consented0000000000002")
    );
}

/// The inventory the wizard loads (`engine::inventory::inventory`) of a
/// Vault store is its listing, as the CLI's is: no secret's data is read
/// (audit log), each item's preview says so.
#[test]
fn the_wizards_inventory_of_vault_reads_no_value() {
    use credshift::engine::inventory;
    let Some(bao) = Bao::start_audited() else {
        return;
    };
    for (path, layout) in [("winv", ""), ("winvi", "?layout=item")] {
        let spec = format!("{}{layout}", bao.spec(&format!("secret/{path}")));
        let s = bao.open(&spec);
        let _ = s.read_all();
        for r in s.write_many(&[
            Credential::new(
                id("openai/api_key"),
                Kind::ApiKey,
                "sk-wizardNOTREAD0000001",
            ),
            Credential::new(id("github/token"), Kind::ApiKey, "ghp_wizardNOTREAD000002"),
        ]) {
            r.unwrap();
        }
        let before = bao.audited().len();
        let (inv, creds) =
            inventory::inventory(bao.open(&spec).as_ref(), inventory::now_ms()).unwrap();
        let reads: Vec<(String, String)> = bao.audited()[before..]
            .iter()
            .filter(|(op, p)| op == "read" && p.starts_with(&format!("secret/data/{path}")))
            .cloned()
            .collect();
        assert_eq!(reads, Vec::<(String, String)>::new(), "{layout}");
        assert!(creds.is_empty(), "{layout}");
        let ids: Vec<String> = inv.items.iter().map(|i| i.id.to_string()).collect();
        assert_eq!(ids, ["github/token", "openai/api_key"], "{layout}");
        assert!(
            inv.items.iter().all(|i| i.preview == inventory::NOT_READ),
            "{layout}"
        );
    }
}

/// Bad input names the place and never prints a token or a value: a
/// server nobody listens on, a token the server refuses (told apart from a
/// policy lacking a capability), and a field holding a number, read from
/// Vault or met at the target, where it is a conflict never written over,
/// under either `--on-conflict`. (A KV v1 mount:
/// `vault::a_kv_v1_mount_is_refused_clearly`; a 403 on one path:
/// `vault::a_policy_that_denies_one_path_fails_those_items_only`.)
#[test]
fn bad_input_names_the_place_and_never_the_token_or_a_value() {
    let Some(bao) = Bao::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let refused = "hvs.not-a-token-of-this-server-0042";
    let value = "sk-a-string-value-0000000007";
    let body = dir.path().join("secret.json");
    std::fs::write(
        &body,
        format!(r#"{{"OPENAI_API_KEY":"{value}","RPM_LIMIT":987654}}"#),
    )
    .unwrap();
    bao.run(&[
        "kv",
        "put",
        "secret/bad/env",
        &format!("@{}", body.display()),
    ]);
    let spec = bao.spec("secret/bad");
    let quiet = |out: &str, what: &str| {
        for leak in [refused, value, "987654", bao.token.as_str()] {
            assert!(!out.contains(leak), "{what} printed {leak:?}: {out}");
        }
    };
    let cmd = |token: &str, args: &[&str]| -> (bool, String) {
        let mut c = bao.credshift(&state);
        c.env("VAULT_TOKEN", token).args(args);
        let (o, stdout, stderr) = run(&mut c);
        (o.status.success(), format!("{stdout}{stderr}"))
    };

    // Nobody listens: the spec is named, with what failed.
    let closed = format!(
        "vault:http://127.0.0.1:{}/secret/bad",
        support::vault::free_port()
    );
    let (ok, out) = cmd(refused, &["get", "--from", &closed, "env/OPENAI_API_KEY"]);
    assert!(
        !ok && out.contains(&closed) && out.contains("unavailable"),
        "{out}"
    );
    quiet(&out, "an unreachable server");

    // A refused token: said so, with where the token came from, and the
    // path of the read; not "the policy lacks 'read'".
    let (ok, out) = cmd(refused, &["get", "--from", &spec, "env/OPENAI_API_KEY"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("refused the token from VAULT_TOKEN") && out.contains("secret/bad/env"),
        "{out}"
    );
    assert!(!out.contains("policies lack"), "{out}");
    quiet(&out, "get with a refused token");
    let env = dir.path().join("in.env");
    write_env(&env, &[("GITHUB_TOKEN", "ghp_never_written_000000001")]);
    let from = format!("dotenv:{}", env.display());
    let (ok, out) = cmd(
        refused,
        &["migrate", "--from", &from, "--to", &spec, "--yes"],
    );
    assert!(
        !ok && out.contains("refused the token from VAULT_TOKEN"),
        "{out}"
    );
    quiet(&out, "migrate with a refused token");
    let (_, out) = cmd(refused, &["status", "--store", &spec]);
    assert!(out.contains("refused the token from VAULT_TOKEN"), "{out}");
    quiet(&out, "status with a refused token");

    // Nothing of Vault's is credshift's to rekey (the server encrypts with
    // its own barrier key): refused by name, nothing touched.
    let root = bao.token.as_str();
    let (ok, out) = cmd(root, &["rekey", "--store", &spec, "--yes"]);
    assert!(
        !ok && out.contains(&spec) && out.contains("cannot be rekeyed"),
        "{out}"
    );
    quiet(&out, "rekey");

    // A number: named with its secret and field, never "not found".
    let (ok, out) = cmd(root, &["get", "--from", &spec, "env/RPM_LIMIT"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("secret/bad/env") && out.contains(r#""RPM_LIMIT" holds a number"#),
        "{out}"
    );
    quiet(&out, "get of a number");
    // ...a migration from Vault leaves it behind and says where...
    let enc = dir.path().join("out.enc");
    let mut c = bao.credshift(&state);
    c.env("CREDSHIFT_PASSPHRASE", "bad input test passphrase")
        .args(["migrate", "--from", &spec, "--to"])
        .arg(format!("encrypted:{}", enc.display()))
        .arg("--yes");
    let (o, stdout, stderr) = run(&mut c);
    let out = format!("{stdout}{stderr}");
    assert!(o.status.success(), "{out}");
    assert!(out.contains("secret/bad/env: RPM_LIMIT"), "{out}");
    quiet(&out, "a migration from Vault with a number");
    // ...and at the target it is never written over.
    write_env(&env, &[("RPM_LIMIT", "sk-would-replace-the-number-01")]);
    for policy in ["skip", "overwrite"] {
        let (_, out) = cmd(
            root,
            &[
                "migrate",
                "--from",
                &from,
                "--to",
                &spec,
                "--on-conflict",
                policy,
                "--yes",
                "--json",
            ],
        );
        let report = json(&out[..out.rfind('}').map_or(0, |i| i + 1)]);
        assert_eq!(report["copied"], 0, "{policy}: {out}");
        assert_eq!(report["conflicts"], 1, "{policy}: {out}");
        assert_eq!(
            bao.kv_field("secret/bad/env", "RPM_LIMIT").as_deref(),
            Some("987654"),
            "{policy}: the number was written over"
        );
        quiet(&out, "a migration meeting a number");
    }
}
