//! One table over every writable store kind (their specs in a test's
//! folder and ids each can hold) and the helpers that open, fill and
//! compare them: `store_kinds_recovery` and `kinds_cli` run their cases
//! over it.

use std::collections::BTreeMap;
use std::path::Path;

use credshift::credential::{Credential, Kind, Secret};
use credshift::store::{self, Store, StoreSpec};
use credshift::unlock::KeyOptions;

use super::*;

pub const PASSPHRASE: &str = "store kinds test passphrase";

pub fn opts() -> KeyOptions {
    let pt_key = std::fs::read_to_string(fixture("prompttrain-db/CREDENTIAL_ENCRYPTION_KEY"));
    KeyOptions {
        app_key: Some(Secret::new(fragments_app_key())),
        passphrase: Some(Secret::new(PASSPHRASE)),
        prompttrain_key: Some(Secret::new(pt_key.unwrap().trim())),
        ..KeyOptions::default()
    }
}

/// One writable store kind: its spec in `dir` and ids it can hold.
pub struct KindCase {
    pub name: &'static str,
    pub spec: String,
    pub ids: [&'static str; 3],
}

/// Every writable kind; `None` for one whose service is unavailable (the
/// test then skips it, or fails under CREDSHIFT_REQUIRE_SERVICES=1).
pub fn kinds(dir: &Path, tag: &str) -> Vec<KindCase> {
    let p = |f: &str| dir.join(format!("{tag}-{f}")).display().to_string();
    let env_ids = ["env/ALPHA_KEY", "env/BRAVO_KEY", "env/CHARLIE_KEY"];
    let mut v = vec![
        KindCase {
            name: "dotenv",
            spec: format!("dotenv:{}", p("t.env")),
            ids: env_ids,
        },
        KindCase {
            name: "encrypted",
            spec: format!("encrypted:{}", p("t.enc")),
            ids: env_ids,
        },
        KindCase {
            name: "sqlite",
            spec: format!("sqlite:{}", p("t.db")),
            ids: env_ids,
        },
        KindCase {
            name: "prompttrain",
            spec: format!("prompttrain:{}", p("pt")),
            ids: [
                "account:acc_alpha/api_key",
                "account:acc_bravo/api_key",
                "account:acc_charlie/api_key",
            ],
        },
        KindCase {
            name: "modelforge",
            spec: format!("modelforge:{}", p("config.json")),
            ids: ["anthropic/api_key", "ollama/api_key", "openai/api_key"],
        },
        KindCase {
            name: "laravel",
            spec: format!("laravel:sqlite:{}", p("fragments.sqlite")),
            ids: ["anthropic/key", "openai/key", "openrouter/key"],
        },
    ];
    if let Some(db) = pg::fresh_db() {
        v.push(KindCase {
            name: "postgres",
            spec: db.url(),
            ids: env_ids,
        });
    }
    if keyring_service::shared().is_some() {
        v.push(KindCase {
            name: "keyring",
            spec: format!("keyring:credshift-kinds-{tag}-{}", std::process::id()),
            ids: env_ids,
        });
    }
    v
}

/// [`kinds`] and the kinds with their own write paths that only some
/// tests take: bundle, laravel:postgres and prompttrain-db.
pub fn all_kinds(dir: &Path, tag: &str) -> Vec<KindCase> {
    let mut v = kinds(dir, tag);
    v.push(KindCase {
        name: "bundle",
        spec: format!("bundle:{}", dir.join(format!("{tag}.bundle")).display()),
        ids: ["env/ALPHA_KEY", "env/BRAVO_KEY", "env/CHARLIE_KEY"],
    });
    if let Some(db) = pg::fresh_db() {
        v.push(KindCase {
            name: "laravel-postgres",
            spec: format!("laravel:{}", db.url()),
            ids: ["anthropic/key", "openai/key", "openrouter/key"],
        });
    }
    if let Some(db) = pg::fresh_db() {
        v.push(KindCase {
            name: "prompttrain-db",
            spec: format!("prompttrain-db:{}", db.url()),
            ids: [
                "account:acc_alpha/api_key",
                "account:acc_bravo/api_key",
                "account:acc_charlie/api_key",
            ],
        });
    }
    v
}

/// The cases of `all` named in `wanted`. Under CREDSHIFT_REQUIRE_SERVICES=1
/// every wanted kind must be there (a kind left out silently when its
/// service is missing would make the test check less than it says).
pub fn only(all: Vec<KindCase>, wanted: &[&str]) -> Vec<KindCase> {
    let picked: Vec<KindCase> = all
        .into_iter()
        .filter(|k| wanted.contains(&k.name))
        .collect();
    if services_required() {
        let names: Vec<&str> = picked.iter().map(|k| k.name).collect();
        assert_eq!(names.len(), wanted.len(), "ran {names:?} of {wanted:?}");
    }
    picked
}

pub fn open(spec: &str) -> Box<dyn Store> {
    let spec: StoreSpec = spec.parse().unwrap();
    store::open(&spec, &opts()).unwrap()
}

pub fn cred(id: &str, v: &str) -> Credential {
    Credential::new(id.parse().unwrap(), Kind::ApiKey, v)
}

/// Every value of a store, by id (an absent store is empty).
pub fn values(spec: &str) -> BTreeMap<String, String> {
    values_of(open(spec).as_ref())
}

pub fn fill(spec: &str, items: &[Credential]) {
    let s = open(spec);
    for (c, r) in items.iter().zip(s.write_many(items)) {
        r.unwrap_or_else(|e| panic!("{spec}: write {}: {e}", c.id));
    }
}

/// The binary, for a crash: APP_KEY from the environment, and the
/// passphrase only for the stores that seal their values with it (without
/// one, a migration's backup gets a key file: no key stretching per run).
pub fn binary(state: &Path, spec: &str) -> std::process::Command {
    binary_for(state, &[spec])
}

/// [`binary`] for a run touching all of `specs`: the passphrase when one
/// is under it, agent-prompttrain's key for its database.
pub fn binary_for(state: &Path, specs: &[&str]) -> std::process::Command {
    let mut c = credshift(state);
    c.env("APP_KEY", fragments_app_key());
    let parsed: Vec<StoreSpec> = specs.iter().map(|s| s.parse().unwrap()).collect();
    if parsed.iter().any(StoreSpec::under_passphrase) {
        c.env("CREDSHIFT_PASSPHRASE", PASSPHRASE);
    }
    if specs.iter().any(|s| s.starts_with("prompttrain-db:")) {
        let key = opts().prompttrain_key.unwrap();
        c.env("CREDENTIAL_ENCRYPTION_KEY", key.expose());
    }
    c
}

pub fn crashed(out: &std::process::Output, stderr: &str) -> bool {
    out.status.code().is_none() && stderr.contains("CREDSHIFT_CRASH_AT")
}

/// Every file under a file or directory store, by relative path, with its
/// bytes (the store's own lock and temp files left out).
pub fn files(spec: &str) -> BTreeMap<String, Vec<u8>> {
    let spec: StoreSpec = spec.parse().unwrap();
    let mut out = BTreeMap::new();
    let Some(root) = spec.path() else {
        return out;
    };
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        } else if p.is_file() {
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            if !rel.contains("credshift-lock") {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every item of a store with its kind and metadata, by id: what "row for
/// row" compares (but the time a Laravel row was last written).
pub fn rows(spec: &str) -> BTreeMap<String, String> {
    open(spec)
        .read_all()
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
        .credentials
        .into_iter()
        .map(|c| {
            let mut meta = c.metadata.clone();
            // Laravel's store stamps the time of each write.
            meta.remove("migrated_at");
            let meta = serde_json::Value::Object(meta);
            let row = format!("{} {} {meta}", c.kind.as_str(), c.secret.expose());
            (c.id.to_string(), row)
        })
        .collect()
}

/// Lines of a migration's journal.
pub fn journal_lines(state: &Path, id: &str) -> usize {
    let j = state.join("migrations").join(id).join("journal.jsonl");
    std::fs::read_to_string(j).unwrap().lines().count()
}

/// Delete every id of `k` from its store (what is not there is no error):
/// a shared service left as it was for the next case.
pub fn cleared(k: &KindCase) {
    let s = open(&k.spec);
    for id in k.ids {
        let _ = s.delete(&id.parse().unwrap());
    }
}
