//! What credshift writes into a `.env` file reads back as the exact value
//! in the readers people use: bash's `source`, python-dotenv and Node's
//! dotenv, whatever quoting the line had before, and sourcing it never runs
//! a command (issue 13, reproduction 7).
//!
//! python-dotenv and Node's dotenv are installed into `target/dotenv-readers`
//! when they are missing (pip `--target`, `npm install --prefix`); with
//! `CREDSHIFT_REQUIRE_SERVICES=1` a reader that cannot be had fails the test.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use credshift::credential::{Credential, CredentialId, Kind};
use credshift::store::{self, StoreSpec};
use credshift::unlock::KeyOptions;
use support::*;

/// The existing line each value is written over, one style per entry.
const STYLES: &[(&str, &str)] = &[
    ("bare", "KEY=old"),
    ("single", "KEY='old'"),
    ("double", "KEY=\"old\""),
    ("export-comment", "export KEY=\"old\"   # keep this note"),
];

/// Values every reader must get back exactly. `MARK` becomes a path whose
/// existence would prove a command ran.
fn common_values() -> Vec<String> {
    [
        "plain-value_1.2",
        "$HOME",
        "Xy9$HOME`id`$(id)Qz",
        "$(touch MARK)",
        "`touch MARK`",
        "it's",
        "say \"hi\"",
        "back\\slash \\n not a newline",
        "a # b#c",
        "  two  spaces  ",
        "\ttab",
        "line1\nline2\n",
        "ünïcødé ✓ 日本語 🔑",
        "=equals=",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Values no single line can give all three readers (python-dotenv cannot
/// read a shell's `'\''` and expands `${...}` whatever the quoting, Node's
/// dotenv reads no escapes at all): exact for a shell and for credshift,
/// and still never run anything.
fn shell_only_values() -> Vec<String> {
    [
        "${HOME}",
        "'\\''",
        "it's $HOME and `touch MARK`",
        "it's \"both\"",
        "x'$(touch MARK)'y",
        "two\\\\backslashes",
        "ends with a backslash\\",
        "crlf\r\nin the middle $HOME `touch MARK`\r",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn readers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dotenv-readers")
}

/// `PYTHONPATH` under which `import dotenv` works, installing python-dotenv
/// into the cache when neither the system nor the cache has it.
fn python_dotenv() -> Option<Option<PathBuf>> {
    let works = |pp: Option<&Path>| {
        let mut c = Command::new("python3");
        c.args(["-c", "import dotenv"]).stderr(Stdio::null());
        if let Some(p) = pp {
            c.env("PYTHONPATH", p);
        }
        c.status().is_ok_and(|s| s.success())
    };
    if works(None) {
        return Some(None);
    }
    let cache = readers_dir().join("py");
    if !works(Some(&cache)) {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--target"])
            .arg(&cache)
            .arg("python-dotenv")
            .status();
    }
    works(Some(&cache)).then_some(Some(cache))
}

/// `NODE_PATH` under which `require('dotenv')` works, installing it into
/// the cache when missing.
fn node_dotenv() -> Option<PathBuf> {
    let cache = readers_dir().join("node");
    let modules = cache.join("node_modules");
    let works = || {
        Command::new("node")
            .args(["-e", "require('dotenv')"])
            .env("NODE_PATH", &modules)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works() {
        let _ = std::fs::create_dir_all(&cache);
        let _ = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&cache)
            .arg("dotenv@16")
            .status();
    }
    works().then_some(modules)
}

struct Case {
    key: String,
    value: String,
}

/// One file holding every value written over every style of existing line.
fn write_cases(dir: &Path, values: &[String]) -> (PathBuf, Vec<Case>, PathBuf) {
    let mark = dir.join("command-ran");
    let path = dir.join("app.env");
    let mut text = String::from("# app settings\n");
    let mut cases = Vec::new();
    for (v, value) in values.iter().enumerate() {
        for (s, (_, line)) in STYLES.iter().enumerate() {
            let key = format!("K{v}_{s}");
            text.push_str(&line.replace("KEY", &key));
            text.push('\n');
            cases.push(Case {
                key,
                value: value.replace("MARK", &mark.display().to_string()),
            });
        }
    }
    std::fs::write(&path, text).unwrap();
    let store = store::open(&StoreSpec::Dotenv(path.clone()), &KeyOptions::default()).unwrap();
    for c in &cases {
        let id = CredentialId::new("env", c.key.clone());
        let cred = Credential::new(id.clone(), Kind::guess(&c.key), c.value.as_str());
        store
            .write(&cred)
            .unwrap_or_else(|e| panic!("{}: {e}", c.key));
        // credshift's own parser agrees.
        let back = store.read(&id).unwrap().unwrap();
        assert_eq!(
            back.secret.expose(),
            c.value,
            "credshift read-back of {}",
            c.key
        );
    }
    (path, cases, mark)
}

fn bash_values(path: &Path, cases: &[Case]) -> Vec<String> {
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg("set -a; source \"$1\" || exit 3; shift; for k in \"$@\"; do printf '%s\\0' \"${!k}\"; done")
        .arg("bash")
        .arg(path)
        .args(cases.iter().map(|c| c.key.as_str()))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent-home")
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash could not source the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut vals: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .map(str::to_string)
        .collect();
    vals.pop();
    vals
}

fn assert_bash(path: &Path, cases: &[Case], mark: &Path) {
    let got = bash_values(path, cases);
    assert_eq!(got.len(), cases.len());
    for (c, g) in cases.iter().zip(&got) {
        assert_eq!(g, &c.value, "bash `source` of {}", c.key);
    }
    assert!(!mark.exists(), "sourcing the file ran a command");
}

fn json_values(out: std::process::Output, reader: &str) -> BTreeMap<String, Option<String>> {
    assert!(
        out.status.success(),
        "{reader} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_json(got: &BTreeMap<String, Option<String>>, cases: &[Case], reader: &str) {
    for c in cases {
        assert_eq!(
            got.get(&c.key).cloned().flatten().as_deref(),
            Some(c.value.as_str()),
            "{reader} read of {}",
            c.key
        );
    }
}

#[test]
fn every_reader_gets_the_exact_value_whatever_the_old_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cases, mark) = write_cases(dir.path(), &common_values());
    assert_bash(&path, &cases, &mark);

    match python_dotenv() {
        Some(pp) => {
            let mut c = Command::new("python3");
            c.args([
                "-c",
                "import sys, json, dotenv; print(json.dumps(dotenv.dotenv_values(sys.argv[1])))",
            ])
            .arg(&path)
            .env("HOME", "/nonexistent-home");
            if let Some(pp) = pp {
                c.env("PYTHONPATH", pp);
            }
            let got = json_values(c.output().unwrap(), "python-dotenv");
            assert_json(&got, &cases, "python-dotenv");
        }
        None => {
            skip_without("python-dotenv", "python3 -m pip could not install it");
        }
    }
    match node_dotenv() {
        Some(np) => {
            let out = Command::new("node")
                .args([
                    "-e",
                    "const fs=require('fs');process.stdout.write(JSON.stringify(require('dotenv').parse(fs.readFileSync(process.argv[1]))))",
                ])
                .arg(&path)
                .env("NODE_PATH", np)
                .output()
                .unwrap();
            let got = json_values(out, "Node dotenv");
            assert_json(&got, &cases, "Node dotenv");
        }
        None => {
            skip_without("Node dotenv", "npm could not install it");
        }
    }
    assert!(!mark.exists(), "reading the file ran a command");
}

#[test]
fn values_only_a_shell_form_can_carry_are_exact_for_bash_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cases, mark) = write_cases(dir.path(), &shell_only_values());
    assert_bash(&path, &cases, &mark);
}

#[test]
fn a_nul_byte_is_refused_by_name_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.env");
    std::fs::write(&path, "A=1\n").unwrap();
    let store = store::open(&StoreSpec::Dotenv(path.clone()), &KeyOptions::default()).unwrap();
    let c = Credential::new(CredentialId::new("env", "NUL_TOKEN"), Kind::Other, "ab\0cd");
    let why = store.check(&c).expect("the dry run refuses it");
    assert!(why.contains("NUL"), "{why}");
    let e = store.write(&c).unwrap_err().to_string();
    assert!(e.contains("env/NUL_TOKEN") && e.contains("NUL"), "{e}");
    assert!(!e.contains("ab"), "the error quotes the value: {e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=1\n");
}
