//! Issue 25, point 5, end to end: the real binary in tmux, an `encrypted:`
//! file rekeyed through the wizard (`r` on the Stores screen, consent, dry
//! run, a new passphrase typed twice, progress, verify, done). Afterwards
//! the file opens under the new passphrase and not under the old one.

use crate::support;

use std::path::Path;

use support::tmux::Tmux;
use support::{credshift, run};

const OLD_PW: &str = "Zq7-tui-old-Kx93-lmv";
const NEW_PW: &str = "Wp4-tui-new-Hr28-bqs";
const VALUE: &str = "sk-proj-rekey-tui-canary-0001-abcdefgh";

fn get(state: &Path, spec: &str, passphrase: &str) -> (bool, String) {
    let (out, stdout, stderr) = run(credshift(state)
        .env("CREDSHIFT_PASSPHRASE", passphrase)
        .args(["get", "--from", spec, "env/OPENAI_API_KEY"]));
    (out.status.success(), format!("{stdout}{stderr}"))
}

#[test]
fn a_person_rekeys_an_encrypted_file_through_the_wizard() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let env = tmp.path().join("a.env");
    std::fs::write(
        &env,
        format!("OPENAI_API_KEY={VALUE}\nDB_PASSWORD=pw-rekey-tui-canary-0002\n"),
    )
    .unwrap();
    let file = tmp.path().join("store.enc");
    let spec = format!("encrypted:{}", file.display());
    let (out, _, stderr) = run(credshift(&state)
        .env("CREDSHIFT_PASSPHRASE", OLD_PW)
        .args(["migrate", "--from", &format!("dotenv:{}", env.display())])
        .args(["--to", &spec, "--yes"]));
    assert!(out.status.success(), "{stderr}");
    assert!(get(&state, &spec, OLD_PW).0);

    let bin = env!("CARGO_BIN_EXE_credshift");
    let cmd = format!("'{bin}' --from '{spec}'; echo CREDSHIFT-EXIT:$?; sleep 60");
    let state_s = state.display().to_string();
    let home = tmp.path().display().to_string();
    let env = [
        ("CREDSHIFT_STATE_DIR", state_s.as_str()),
        ("CREDSHIFT_PASSPHRASE", OLD_PW),
        ("HOME", home.as_str()),
        ("TERM", "xterm-256color"),
        ("NO_COLOR", "1"),
    ];
    let Some(t) = Tmux::start("rekey", &env, &cmd) else {
        return;
    };
    let secrets: Vec<String> = [OLD_PW, NEW_PW, VALUE, "pw-rekey-tui-canary-0002"]
        .map(String::from)
        .to_vec();
    // The file is preselected as the source: the cursor is on it.
    t.walk(&[("r rekey this store", "r")], &secrets);
    let consent = t.wait_for("credshift will re-encrypt", &secrets);
    assert!(consent.contains("store.enc"), "{consent}");
    assert!(consent.contains("locked for the whole run"), "{consent}");
    t.keys(&["y"]);
    let dry = t.wait_for("(dry run: nothing was written)", &secrets);
    assert!(
        dry.contains("1 encrypted values"),
        "the file is one value: {dry}"
    );
    t.keys(&["Enter"]);
    t.walk(&[("a new passphrase (typed twice)", "Enter")], &secrets);
    t.wait_for("Choose the new passphrase", &secrets);
    t.type_text(NEW_PW);
    t.keys(&["Enter"]);
    t.type_text(NEW_PW);
    t.keys(&["Enter"]);
    let verify = t.wait_for("rekeyed values hold the ciphertext", &secrets);
    assert!(verify.contains("1 of 1"), "{verify}");
    t.keys(&["Enter"]);
    let done = t.wait_for("Rekey complete", &secrets);
    assert!(done.contains("new passphrase or key file"), "{done}");
    assert!(done.contains("rollback --migration-id"), "{done}");
    t.keys(&["Enter"]);
    let end = t.wait_for("CREDSHIFT-EXIT", &secrets);
    assert!(end.contains("CREDSHIFT-EXIT:0"), "{end}");

    let (ok, text) = get(&state, &spec, NEW_PW);
    assert!(ok, "the new passphrase opens it: {text}");
    assert_eq!(text.trim(), VALUE);
    let (ok, _) = get(&state, &spec, OLD_PW);
    assert!(!ok, "the old passphrase no longer opens it");
    let (out, stdout, _) = run(credshift(&state).args(["history", "--json"]));
    assert!(out.status.success());
    assert!(
        stdout.contains("(new key)"),
        "history lists the rekey: {stdout}"
    );
}
