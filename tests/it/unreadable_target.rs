//! Issue 21, Why 3, on a real keyring: an item another application stored
//! with a secret that is not UTF-8 text is listed but cannot be read. The
//! dry run shows it as a conflict ("target value unreadable"), and a run,
//! even under `--on-conflict overwrite`, leaves it exactly as it was.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

const NOT_UTF8: &[u8] = b"\xff\xfeanother app's bytes\x80";

/// `secret-tool` on the keyring's bus, `stdin` as raw bytes; its stdout.
fn secret_tool(addr: &str, args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>) {
    let mut child = Command::new("secret-tool")
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("secret-tool");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), out.stdout)
}

#[test]
fn a_keyring_value_that_is_not_utf8_is_an_unreadable_conflict_never_replaced() {
    let Some(ks) = keyring_service::shared() else {
        return;
    };
    let addr = ks.address.clone();
    if Command::new("secret-tool")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_without("secret-tool", "libsecret-tools is not installed");
        return;
    }
    let service = format!("credshift-unreadable-{}", std::process::id());
    let lookup = [
        "lookup",
        "service",
        &service,
        "username",
        "env/OPENAI_API_KEY",
    ];
    let (ok, _) = secret_tool(
        &addr,
        &[
            "store",
            "--label",
            "another app",
            "service",
            &service,
            "username",
            "env/OPENAI_API_KEY",
        ],
        NOT_UTF8,
    );
    assert!(ok, "secret-tool store");
    let (_, stored) = secret_tool(&addr, &lookup, b"");
    assert_eq!(stored, NOT_UTF8, "the keyring holds the raw bytes");

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = dir.path().join("app.env");
    std::fs::write(
        &src,
        "OPENAI_API_KEY=sk-proj-fromTheSource00000000001\nOTHER_KEY=other-value-000000002\n",
    )
    .unwrap();
    let from = format!("dotenv:{}", src.display());
    let to = format!("keyring:{service}");

    let (out, stdout, stderr) = run(migrate_cmd(&state, &from, &to, &["--dry-run", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let plan = json(&stdout);
    assert_eq!(plan["counts"]["copy"], 1, "{plan}");
    assert_eq!(plan["counts"]["conflict"], 1, "{plan}");
    let item = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "env/OPENAI_API_KEY")
        .unwrap();
    assert_eq!(item["action"], "conflict", "{item}");
    assert!(
        item["warnings"]
            .to_string()
            .contains("target value unreadable"),
        "{item}"
    );

    let (out, stdout, stderr) = run(migrate_cmd(
        &state,
        &from,
        &to,
        &["--yes", "--json", "--on-conflict", "overwrite"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let r = json(&stdout);
    assert_eq!(
        (r["copied"].as_u64(), r["conflicts"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    let (_, after) = secret_tool(&addr, &lookup, b"");
    assert_eq!(after, NOT_UTF8, "the other app's item is untouched");
    let id = r["migration_id"].as_str().unwrap();
    let folder = state.join("migrations").join(id);
    assert!(!folder.join("target-before.enc").exists());
    // And a rollback leaves it too.
    let (out, _, stderr) = run(credshift(&state).args(["rollback", "--migration-id", id, "--yes"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (_, after) = secret_tool(&addr, &lookup, b"");
    assert_eq!(after, NOT_UTF8);
}
