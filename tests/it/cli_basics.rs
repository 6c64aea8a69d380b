use crate::support;

use support::*;

#[test]
fn unknown_spec_is_a_usage_error_listing_valid_schemes() {
    let state = tempfile::tempdir().unwrap();
    let (out, _stdout, stderr) =
        run(credshift(state.path()).args(["inventory", "--from", "ftp:x"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("prompttrain:DIR"), "{stderr}");
}

#[test]
fn get_refuses_a_bad_id() {
    let state = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(credshift(state.path()).args(["get", "--from", "env:", "noslash"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("noslash"), "{stderr}");
}

/// Issue 27, point 8: `--from`/`--to` with no command are the wizard's
/// (not a clap error); off a terminal that is the wizard's usage error.
#[test]
fn from_and_to_without_a_command_are_the_wizards() {
    let state = tempfile::tempdir().unwrap();
    let (out, _, stderr) =
        run(credshift(state.path()).args(["--from", "env:", "--to", "keyring:credshift-x"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert!(stderr.contains("the wizard needs one"), "{stderr}");
    // Before a command they would be silently dropped: refused instead.
    let (out, _, stderr) = run(credshift(state.path()).args(["--from", "env:", "history"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("after the command"), "{stderr}");
}

/// Issue 22, point 9: a closed stdout is not an error (as in ripgrep):
/// `credshift inventory | head -1` exits 0 and says nothing on stderr,
/// for the text listing, its JSON, and the `outln!` lines of `status`.
#[test]
fn a_closed_stdout_exits_0_without_a_word() {
    let state = tempfile::tempdir().unwrap();
    let env = state.path().join("many.env");
    // Far more than a pipe buffer (64 KiB) of listing.
    let text: String = (0..3000)
        .map(|i| format!("KEY_{i:05}=value-{i:05}-abcdefghijklmnopqrstuvwxyz\n"))
        .collect();
    std::fs::write(&env, text).unwrap();
    let from = format!("dotenv:{}", env.display());
    let extra = ["--store", from.as_str()];
    for args in [
        vec!["inventory", "--from", &from],
        vec!["inventory", "--from", &from, "--json"],
        [&["status"][..], &extra[..]].concat(),
    ] {
        let mut child = credshift(state.path())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before (or while) credshift writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
}
