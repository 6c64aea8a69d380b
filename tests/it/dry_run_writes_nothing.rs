//! `credshift migrate --dry-run` writes nothing, for every store kind as
//! source and as target (issue 13.8): the bytes, mode and mtime of every
//! file in the test's directory stay as they were and no file or directory
//! appears (the state dir is the only place a dry run may write), every
//! row of every table of the PostgreSQL databases is unchanged (and no
//! table appears), and every keyring item keeps its secret, attributes and
//! modification time.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

/// path -> (mode, mtime ns, bytes); directories with empty bytes.
type Tree = BTreeMap<PathBuf, (u32, i128, Vec<u8>)>;

fn tree(root: &Path, skip: &Path, out: &mut Tree) {
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p == skip {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        if m.is_dir() {
            out.insert(p.clone(), (m.mode(), mtime, Vec::new()));
            tree(&p, skip, out);
        } else {
            out.insert(p.clone(), (m.mode(), mtime, std::fs::read(&p).unwrap()));
        }
    }
}

/// Every table of a database and its rows as text, sorted.
fn rows(url: &str) -> BTreeMap<String, Vec<String>> {
    let mut c = pg::connect(url);
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let mut v: Vec<String> = c
                .query(&format!("SELECT t::text FROM \"{t}\" t"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            v.sort();
            (t, v)
        })
        .collect()
}

/// Every item of the keyring service as `secret-tool` sees it: secret,
/// attributes, created and modified times.
fn keyring_items(bus: &str, service: &str) -> Vec<String> {
    let out = Command::new("secret-tool")
        .args(["search", "--all", "--unlock", "service", service])
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(Stdio::null())
        .output()
        .expect("secret-tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

struct World {
    dir: tempfile::TempDir,
    state: PathBuf,
    key: PathBuf,
    bus: Option<String>,
    service: String,
    dbs: Vec<String>,
    _db_guards: Vec<pg::TestDb>,
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    files: Tree,
    rows: Vec<BTreeMap<String, Vec<String>>>,
    keyring: Vec<String>,
}

impl World {
    fn snapshot(&self) -> Snapshot {
        let mut files = Tree::new();
        tree(self.dir.path(), &self.state, &mut files);
        Snapshot {
            files,
            rows: self.dbs.iter().map(|u| rows(u)).collect(),
            keyring: self
                .bus
                .as_deref()
                .map(|b| keyring_items(b, &self.service))
                .unwrap_or_default(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = credshift(&self.state);
        c.env("APP_KEY", read_trim("fragments/APP_KEY"))
            .env(
                "CREDENTIAL_ENCRYPTION_KEY",
                read_trim("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"),
            )
            .arg("--key-file")
            .arg(&self.key);
        if let Some(b) = &self.bus {
            c.env("DBUS_SESSION_BUS_ADDRESS", b);
        }
        c
    }

    /// Fill a store kind credshift writes itself, from the seed .env.
    fn fill(&self, spec: &str) {
        let seed = format!("dotenv:{}", self.dir.path().join("seed.env").display());
        let (out, stdout, stderr) = run(self
            .cmd()
            .args(["migrate", "--from", &seed, "--to", spec, "--yes", "--json"]));
        assert_eq!(
            out.status.code(),
            Some(0),
            "fill {spec}: {stderr}\n{stdout}"
        );
    }
}

fn read_trim(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_dry_run_writes_nothing_for_any_store_kind_on_either_side() {
    let Some(pg_db) = pg::fresh_db() else { return };
    // Without a keyring service (and without CREDSHIFT_REQUIRE_SERVICES,
    // which makes its absence a failure) the other kinds are still checked.
    let ks = keyring_service::shared();
    let pt_db = pg::fresh_db().unwrap();
    let lv_db = pg::fresh_db().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let key = d.join("db.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        d.join("seed.env"),
        "OPENAI_API_KEY=sk-dry-run-seed-0000000001\nGITHUB_TOKEN=ghp_dryRunSeed000000000002\n",
    )
    .unwrap();
    let env = copy_fixture("dotenv/.env", &d);
    let mf = copy_fixture("modelforge/config.json", &d);
    let pt = copy_fixture("prompttrain/credentials", &d);
    let lv_sqlite = fragments_db(&d.join("fragments.sqlite"));
    pg::run_sql_file(&pt_db.url(), &fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&pt_db.url(), &fixture("prompttrain-db/data.sql"));
    pg::execute(
        &lv_db.url(),
        &support::laravel::pg_schema("a_i_credentials", "SMALLINT"),
    );
    pg::run_sql_file(&lv_db.url(), &fixture("fragments/data.sql"));

    let world = World {
        state: d.join("state"),
        key,
        bus: ks.map(|k| k.address.clone()),
        service: format!("credshift-dry-run-{}", std::process::id()),
        dbs: vec![pg_db.url(), pt_db.url(), lv_db.url()],
        _db_guards: vec![pg_db, pt_db, lv_db],
        dir,
    };
    let mut stores: Vec<(&str, String)> = vec![
        ("dotenv", format!("dotenv:{}", env.display())),
        ("modelforge", format!("modelforge:{}", mf.display())),
        ("prompttrain", format!("prompttrain:{}", pt.display())),
        (
            "encrypted",
            format!("encrypted:{}", d.join("s.enc").display()),
        ),
        ("bundle", format!("bundle:{}", d.join("s.bundle").display())),
        ("sqlite", format!("sqlite:{}", d.join("s.db").display())),
        ("keyring", format!("keyring:{}", world.service)),
        ("postgres", world.dbs[0].clone()),
        ("prompttrain-db", format!("prompttrain-db:{}", world.dbs[1])),
        (
            "laravel:sqlite",
            format!("laravel:sqlite:{}", lv_sqlite.display()),
        ),
        ("laravel:postgres", format!("laravel:{}", world.dbs[2])),
    ];
    if world.bus.is_none() {
        stores.retain(|(k, _)| *k != "keyring");
    }
    for (_, spec) in stores
        .iter()
        .filter(|(k, _)| ["encrypted", "bundle", "sqlite", "keyring", "postgres"].contains(k))
    {
        world.fill(spec);
    }
    // Targets that do not exist yet: a dry run must not create them.
    let mut new_targets: Vec<String> = vec![
        format!("dotenv:{}", d.join("new/.env").display()),
        format!("dotenv:{}", d.join("new.env").display()),
        format!("modelforge:{}", d.join("new-config.json").display()),
        format!("prompttrain:{}", d.join("new-credentials").display()),
        format!("encrypted:{}", d.join("new.enc").display()),
        format!("bundle:{}", d.join("new.bundle").display()),
        format!("sqlite:{}", d.join("new.db").display()),
    ];
    if world.bus.is_some() {
        new_targets.push(format!("keyring:{}-new", world.service));
    }
    let before = world.snapshot();
    assert!(
        world.bus.is_none() || before.keyring.len() >= 2,
        "{:?}",
        before.keyring
    );
    assert!(
        before.rows.iter().all(|r| !r.is_empty()),
        "{:?}",
        before.rows
    );
    let dotenv = stores[0].1.clone();
    let dry = |from: &str, to: &str, must_plan: bool| {
        let (out, stdout, stderr) = run(world.cmd().args([
            "migrate",
            "--dry-run",
            "--json",
            "--on-conflict",
            "overwrite",
            "--from",
            from,
            "--to",
            to,
        ]));
        if must_plan {
            assert_eq!(
                out.status.code(),
                Some(0),
                "dry run {from} -> {to}: {stderr}\n{stdout}"
            );
        }
        let after = world.snapshot();
        assert!(
            after == before,
            "dry run {from} -> {to} changed something:\n{}",
            diff(&before, &after)
        );
    };
    for (kind, spec) in &stores {
        let other = if *kind == "dotenv" {
            &stores[1].1
        } else {
            &dotenv
        };
        dry(spec, other, true);
        dry(other, spec, true);
    }
    for t in &new_targets {
        dry(&dotenv, t, false);
    }
}

fn diff(a: &Snapshot, b: &Snapshot) -> String {
    let mut out = String::new();
    for (p, v) in &b.files {
        match a.files.get(p) {
            None => out.push_str(&format!("new: {}\n", p.display())),
            Some(old) if old != v => out.push_str(&format!(
                "changed: {} (mode {:o}->{:o}, mtime {}->{}, bytes equal: {})\n",
                p.display(),
                old.0,
                v.0,
                old.1,
                v.1,
                old.2 == v.2
            )),
            _ => {}
        }
    }
    for p in a.files.keys().filter(|p| !b.files.contains_key(*p)) {
        out.push_str(&format!("gone: {}\n", p.display()));
    }
    if a.rows != b.rows {
        out.push_str("database rows or tables changed\n");
    }
    if a.keyring != b.keyring {
        out.push_str("keyring items changed\n");
    }
    out
}
