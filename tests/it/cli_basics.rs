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
