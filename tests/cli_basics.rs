mod support;

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
