//! Tests of the `.env` store.

use super::*;
use super::doc::sanitize_key;
use super::syntax::encode_value;
use crate::credential::Secret;

fn store_at(path: &Path) -> Box<dyn Store> {
    open(
        &StoreSpec::Dotenv(path.to_path_buf()),
        &KeyOptions::default(),
    )
    .unwrap()
}

fn value_of(store: &dyn Store, id: &str) -> Option<String> {
    store
        .read(&id.parse().unwrap())
        .unwrap()
        .map(|c| c.secret.expose().to_string())
}

const SAMPLE: &str = "# app\n\
    PLAIN=abc#notacomment\n\
    export EXPORTED=\"with # hash\"   # trailing comment\n\
    SINGLE='it''s'\n\
    SPACED = spaced value   # comment\n\
    ESCAPED=\"line1\\nline2\\t\\\"q\\\" \\\\ end\"\n\
    MULTI=\"first\n\
    second\"\n\
    EMPTY=\n\
    garbage line\n\
    LAST='x'";

#[test]
fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
    use crate::store::test_support::{api_key, assert_compare_and_delete_keeps_a_racing_write};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, "KEEP=x\n").unwrap();
    let s = store_at(&p);
    assert_compare_and_delete_keeps_a_racing_write(
        s.as_ref(),
        store_at(&p),
        &api_key("env", "API_KEY", "v1"),
        &api_key("env", "API_KEY", "theirs"),
    );
    assert_eq!(value_of(&*s, "env/KEEP").as_deref(), Some("x"));
}

#[test]
fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
    use crate::store::test_support::{api_key, assert_compare_and_replace_keeps_a_racing_write};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, "KEEP=x\n").unwrap();
    let s = store_at(&p);
    assert_compare_and_replace_keeps_a_racing_write(
        s.as_ref(),
        store_at(&p),
        &api_key("env", "API_KEY", "ours"),
        &api_key("env", "API_KEY", "old"),
        &api_key("env", "API_KEY", "theirs"),
    );
    assert_eq!(value_of(&*s, "env/KEEP").as_deref(), Some("x"));
}

#[test]
fn parses_the_usual_forms() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, SAMPLE).unwrap();
    let s = store_at(&p);
    assert_eq!(value_of(&*s, "env/PLAIN").unwrap(), "abc#notacomment");
    assert_eq!(value_of(&*s, "env/EXPORTED").unwrap(), "with # hash");
    assert_eq!(value_of(&*s, "env/SPACED").unwrap(), "spaced value");
    assert_eq!(
        value_of(&*s, "env/ESCAPED").unwrap(),
        "line1\nline2\t\"q\" \\ end"
    );
    assert_eq!(value_of(&*s, "env/MULTI").unwrap(), "first\nsecond");
    assert_eq!(value_of(&*s, "env/EMPTY").unwrap(), "");
    assert_eq!(value_of(&*s, "env/LAST").unwrap(), "x");
    // `'it''s'` has text after the closing quote: an error, not a guess.
    let listing = s.list().unwrap();
    let bad: Vec<_> = listing.errors.iter().map(|e| e.location.clone()).collect();
    let file = p.display().to_string();
    assert_eq!(bad, vec![format!("{file}:4"), format!("{file}:10")]);
    assert!(value_of(&*s, "env/SINGLE").is_none());
}

#[test]
fn write_replaces_in_place_and_keeps_style() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(
        &p,
        "# top\nexport A=\"old\"  # keep me\nB='old'\nC=old\n# bottom\n",
    )
    .unwrap();
    let s = store_at(&p);
    for (k, v) in [("A", "new"), ("B", "new"), ("C", "new")] {
        s.write(&Credential::new(
            CredentialId::new("env", k),
            Kind::guess(k),
            v,
        ))
        .unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "# top\nexport A=\"new\"  # keep me\nB='new'\nC=new\n# bottom\n"
    );
    // A value the style cannot hold switches to one that can.
    s.write(&Credential::new(
        CredentialId::new("env", "B"),
        Kind::Other,
        "it's",
    ))
    .unwrap();
    assert!(
        std::fs::read_to_string(&p)
            .unwrap()
            .contains("B=\"it's\"\n")
    );
}

#[test]
fn crlf_and_bom_survive_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, b"\xEF\xBB\xBFA=1\r\n# c\r\nB=2\r\n").unwrap();
    let s = store_at(&p);
    assert_eq!(value_of(&*s, "env/A").unwrap(), "1");
    assert_eq!(value_of(&*s, "env/B").unwrap(), "2");
    s.write(&Credential::new(
        CredentialId::new("env", "C"),
        Kind::Other,
        "3",
    ))
    .unwrap();
    s.delete(&CredentialId::new("env", "A")).unwrap();
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"\xEF\xBB\xBF# c\r\nB=2\r\nC=3\r\n"
    );
}

#[test]
fn foreign_ids_get_a_marker_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    let s = store_at(&p);
    let mut meta = Metadata::new();
    meta.insert("expires_at".into(), 1790003600000i64.into());
    let c = Credential::new(
        "account:acc_alpha/oauth_access_token".parse().unwrap(),
        Kind::OauthAccess,
        "sk-ant-oat01-secret-value",
    )
    .with_metadata(meta.clone());
    s.write(&c).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        text.contains("ACCOUNT_ACC_ALPHA_OAUTH_ACCESS_TOKEN="),
        "{text}"
    );
    let marker = text
        .lines()
        .find(|l| l.starts_with("# credshift:"))
        .unwrap();
    assert!(!marker.contains("secret-value"));
    let back = s.read(&c.id).unwrap().unwrap();
    assert!(back.same_as(&c));
    assert!(s.delete(&c.id).unwrap());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
}

#[test]
fn sanitized_keys_never_collide() {
    assert_eq!(
        sanitize_key("train:team-a/client_key/0"),
        "TRAIN_TEAM_A_CLIENT_KEY_0"
    );
    assert_eq!(sanitize_key("1x/y"), "_1X_Y");
    assert_eq!(sanitize_key("ключ/ключ"), "CREDSHIFT_SECRET");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    let s = store_at(&p);
    let a = Credential::new("a:b/c".parse().unwrap(), Kind::Other, "1");
    let b = Credential::new("a/b:c".parse().unwrap(), Kind::Other, "2");
    s.write(&a).unwrap();
    s.write(&b).unwrap();
    assert_eq!(value_of(&*s, "a:b/c").unwrap(), "1");
    assert_eq!(value_of(&*s, "a/b:c").unwrap(), "2");
}

#[test]
fn encoding_picks_a_style_that_holds_the_value() {
    let table = [
        ("abc", Quote::None, "abc"),
        ("abc", Quote::Single, "'abc'"),
        ("x", Quote::Double, "\"x\""),
        ("", Quote::None, "''"),
        ("a b", Quote::None, "'a b'"),
        ("$HOME", Quote::None, "'$HOME'"),
        // Never double quotes for what a shell would expand or run.
        ("Xy9$HOME`id`Qz", Quote::Double, "'Xy9$HOME`id`Qz'"),
        ("a\\b", Quote::Double, "'a\\b'"),
        ("say \"hi\"", Quote::Double, "'say \"hi\"'"),
        ("it's", Quote::None, "\"it's\""),
        ("it's", Quote::Single, "\"it's\""),
        ("a\nb", Quote::Double, "'a\nb'"),
        ("it's $HOME", Quote::Double, "'it'\\''s $HOME'"),
        ("'\\''", Quote::None, "''\\''\\'\\'''\\'''"),
        ("a\r\nb's\\", Quote::None, "$'a\\r\\nb\\'s\\\\'"),
    ];
    for (value, style, want) in table {
        assert_eq!(encode_value(value, style).as_str(), want, "{value:?}");
    }
}

#[test]
fn every_encoding_reads_back_exactly_in_every_old_style() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    let values = [
        "plain",
        "",
        "a b",
        "$HOME",
        "`id`",
        "$(id)",
        "it's",
        "say \"hi\"",
        "a\\b",
        "a\\",
        "#x",
        "a #b",
        "l1\nl2\n",
        "it's $HOME `id`",
        "'\\''",
        "''",
        "ü ✓",
        "a\r\nb\r",
        "\r\n\t\\ 'q' \"d\" $HOME `id` \x01\x7f",
    ];
    let olds = [
        "K=old",
        "K='old'",
        "K=\"old\"",
        "export K=\"old\" # c",
        "K=\"a\nb\"",
    ];
    for old in olds {
        for v in values {
            std::fs::write(&p, format!("A=1\n{old}\nZ=2\n")).unwrap();
            let s = store_at(&p);
            s.write(&Credential::new(
                CredentialId::new("env", "K"),
                Kind::Other,
                v,
            ))
            .unwrap();
            assert_eq!(value_of(&*s, "env/K").as_deref(), Some(v), "{old} <- {v:?}");
            assert_eq!(value_of(&*s, "env/A").as_deref(), Some("1"));
            assert_eq!(value_of(&*s, "env/Z").as_deref(), Some("2"));
            assert!(s.list().unwrap().errors.is_empty(), "{old} <- {v:?}");
        }
    }
}

#[test]
fn values_no_quoting_can_carry_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    let s = store_at(&p);
    for v in ["a\0b", "\0", "x\r\n\0"] {
        let c = Credential::new(CredentialId::new("env", "BAD"), Kind::Other, v);
        assert!(s.check(&c).is_some(), "{v:?}");
        let e = s.write(&c).unwrap_err().to_string();
        assert!(e.contains("env/BAD"), "{e}");
    }
    assert!(!p.exists(), "nothing was written");
}

#[test]
fn a_repeated_key_is_reported_and_delete_removes_only_the_line_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, "K=first\nB=2\n# note\nexport K='second'\nC=3\n").unwrap();
    let s = store_at(&p);
    assert_eq!(value_of(&*s, "env/K").as_deref(), Some("second"));
    let listing = s.list().unwrap();
    assert_eq!(listing.entries.len(), 3);
    assert_eq!(listing.errors.len(), 1, "{:?}", listing.errors);
    let e = &listing.errors[0];
    assert!(e.location.ends_with(".env:1"), "{e:?}");
    assert!(
        e.error.contains("K is assigned 2 times (lines 1, 4)"),
        "{e:?}"
    );
    assert!(!e.error.contains("first") && !e.error.contains("second"));
    assert_eq!(s.read_all().unwrap().errors.len(), 1);
    assert!(s.probe().warnings.iter().any(|w| w.contains("lines 1, 4")));
    let err = s.delete(&"env/K".parse().unwrap()).unwrap_err().to_string();
    assert!(
        err.contains("removed line 4") && err.contains("line(s) 1"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "K=first\nB=2\n# note\nC=3\n"
    );
    // The one left is now the value read, and deleting it is a plain delete.
    assert_eq!(value_of(&*s, "env/K").as_deref(), Some("first"));
    assert!(s.delete(&"env/K".parse().unwrap()).unwrap());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "B=2\n# note\nC=3\n");
    assert!(!s.delete(&"env/K".parse().unwrap()).unwrap());
}

/// Found by fuzzing (fuzz/regressions/dotenv/unterminated-quote-escape-writeback):
/// writing a value back requoted it, which closed an unterminated quote on
/// a broken line above and swallowed the assignments between. The rewrite
/// is refused, naming the file, and the file stays as it was.
#[test]
fn a_write_that_would_change_how_other_lines_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    let text = "B=\"broken \\\" quote\n\
        A=alpha\n\
        export K=\"tick`tock\"\n\
        TAIL\"\n";
    std::fs::write(&p, text).unwrap();
    let s = store_at(&p);
    let scan = s.read_all().unwrap();
    let ids: Vec<String> = scan.credentials.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(ids, ["env/A", "env/K"], "{:?}", scan.errors);
    let k = scan.credentials[1].clone();
    let err = s.write(&k).unwrap_err().to_string();
    assert!(err.contains(".env: not written"), "{err}");
    assert!(!err.contains("tick"), "{err}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    assert_eq!(value_of(&*s, "env/A").unwrap(), "alpha");
    // A plain edit of the good line far from the broken one still works.
    let mut a = scan.credentials[0].clone();
    a.secret = Secret::new("beta".to_string());
    s.write(&a).unwrap();
    assert_eq!(value_of(&*s, "env/A").unwrap(), "beta");
    assert_eq!(value_of(&*s, "env/K").unwrap(), "tick`tock");
}

#[test]
fn repeated_keys_are_reported_in_file_order_and_read_all_keeps_the_last_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    // Z repeats before A does; each repeat is found once, in the order of
    // its first line, and read_all yields each id once with its last value.
    std::fs::write(&p, "Z=z1\nA=a1\nM=m\nZ=z2\nA=a2\nZ=z3\n").unwrap();
    let s = store_at(&p);
    let scan = s.read_all().unwrap();
    let locations: Vec<&str> = scan.errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(locations.len(), 2, "{:?}", scan.errors);
    assert!(locations[0].ends_with(".env:1") && locations[1].ends_with(".env:2"));
    assert!(
        scan.errors[0]
            .error
            .contains("Z is assigned 3 times (lines 1, 4, 6)")
    );
    assert!(
        scan.errors[1]
            .error
            .contains("A is assigned 2 times (lines 2, 5)")
    );
    let got: Vec<(String, String)> = scan
        .credentials
        .iter()
        .map(|c| (c.id.to_string(), c.secret.expose().to_string()))
        .collect();
    let want = [("env/M", "m"), ("env/A", "a2"), ("env/Z", "z3")];
    assert_eq!(got.len(), 3, "{got:?}");
    for (id, v) in want {
        assert!(
            got.iter().any(|(i, x)| i == id && x == v),
            "{id} in {got:?}"
        );
    }
}

/// Cleanup deletes in batches, each a compare-and-delete on the file as
/// just read: with lines credshift cannot read among the items, the good
/// lines of a batch go, one whose value changed stays, and every other
/// byte (the broken lines, comments, the rest) stays as it was.
#[test]
fn delete_batches_around_broken_lines_keep_them_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    let mut text = String::new();
    for i in 0..12 {
        text.push_str(&format!("K{i}=value-{i}\n"));
        if i % 4 == 1 {
            text.push_str(&format!("this line {i} is not an assignment\n"));
        }
        if i == 6 {
            text.push_str("# a comment\n=no key\n");
        }
    }
    std::fs::write(&p, &text).unwrap();
    let s = store_at(&p);
    let scan = s.read_all().unwrap();
    assert_eq!(scan.credentials.len(), 12);
    assert_eq!(scan.errors.len(), 4, "{:?}", scan.errors);
    let by_id = |id: &str| {
        scan.credentials
            .iter()
            .find(|c| c.id.to_string() == id)
            .unwrap()
            .clone()
    };
    // First batch: plain deletes of K0..K3.
    let ids: Vec<CredentialId> = (0..4).map(|i| format!("env/K{i}").parse().unwrap()).collect();
    assert!(s.delete_many(&ids).into_iter().all(|r| r.unwrap()));
    // Second batch: compare-and-delete, K5 expected with a value it no longer has.
    let mut stale = by_id("env/K5");
    stale.secret = Secret::new("not what the file holds");
    let expected = [by_id("env/K4"), stale, by_id("env/K6"), by_id("env/K7")];
    let got: Vec<DeleteIf> = s
        .delete_if_unchanged(&expected)
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        got,
        [
            DeleteIf::Deleted,
            DeleteIf::Changed,
            DeleteIf::Deleted,
            DeleteIf::Deleted
        ]
    );
    let gone = |l: &str| (0..8).filter(|i| *i != 5).any(|i| l == format!("K{i}=value-{i}"));
    let want: String = text
        .lines()
        .filter(|l| !gone(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), want);
    assert!(want.contains("this line 1 is not an assignment\n"));
    assert!(!want.contains("K6=value-6\n") && want.contains("# a comment\n=no key\n"));
    let left: Vec<String> = s
        .read_all()
        .unwrap()
        .credentials
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(left.len(), 5, "{left:?}");
    assert_eq!(value_of(&*s, "env/K5").as_deref(), Some("value-5"));
}

/// A read of some ids keeps only theirs, with the value a shell uses (the
/// last assignment), whatever else the file holds.
#[test]
fn reads_of_some_ids_give_each_its_last_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, "A=1\nB=2\nbroken line\nA=3\n# credshift: {bad json\nC='c'\n").unwrap();
    let s = store_at(&p);
    let ids: Vec<CredentialId> = ["env/A", "env/C", "env/NOPE"]
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    let got: Vec<Option<String>> = s
        .read_many(&ids)
        .into_iter()
        .map(|r| r.unwrap().map(|c| c.secret.expose().to_string()))
        .collect();
    assert_eq!(got, [Some("3".into()), Some("c".into()), None]);
    assert_eq!(value_of(&*s, "env/B").as_deref(), Some("2"));
    assert_eq!(value_of(&*s, "env/A").as_deref(), Some("3"));
}

/// A batch of writes is checked against the file read afresh with every
/// value it set: a repeated id in one batch ends with its last value, and
/// the new ids and replaced values all read back.
#[test]
fn a_write_batch_with_new_replaced_and_repeated_ids_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, "OLD=1\nKEEP=k\n").unwrap();
    let s = store_at(&p);
    let c = |id: &str, v: &str| {
        Credential::new(id.parse::<CredentialId>().unwrap(), Kind::guess(id), v.to_string())
    };
    let batch = [c("env/OLD", "2"), c("env/NEW", "n1"), c("env/NEW", "n2"), c("env/Z", "z")];
    assert!(s.write_many(&batch).iter().all(|r| r.is_ok()));
    assert_eq!(value_of(&*s, "env/OLD").as_deref(), Some("2"));
    assert_eq!(value_of(&*s, "env/NEW").as_deref(), Some("n2"));
    assert_eq!(value_of(&*s, "env/Z").as_deref(), Some("z"));
    assert_eq!(value_of(&*s, "env/KEEP").as_deref(), Some("k"));
}

/// New ids pushed beside the sorted ones, one of them repeated: its last
/// value is what the file must read as (a binary search over the unsorted
/// whole found an older copy, and the rewrite check then refused a good
/// batch).
#[test]
fn a_batch_repeating_a_new_id_among_others_keeps_its_last_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, "A=a\nB=b\nD=d\nG=g\n").unwrap();
    let s = store_at(&p);
    let c = |id: &str, v: &str| {
        Credential::new(id.parse::<CredentialId>().unwrap(), Kind::guess(id), v.to_string())
    };
    let batch = [
        c("env/C", "c0"),
        c("env/E", "e1"),
        c("env/F", "f2"),
        c("env/C", "c3"),
        c("env/C", "c4"),
    ];
    let results = s.write_many(&batch);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(value_of(&*s, "env/C").as_deref(), Some("c4"));
    assert_eq!(value_of(&*s, "env/E").as_deref(), Some("e1"));
    assert_eq!(value_of(&*s, "env/G").as_deref(), Some("g"));
}

/// The delete's rewrite check in the direction where it must refuse: a
/// line the delete did not name (kept only as a digest) that reads
/// otherwise afterwards stops the rewrite; the same lines read alike pass.
#[test]
fn a_delete_check_refuses_when_a_line_it_did_not_name_reads_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    std::fs::write(&p, "A=1\nB=2\nC=3\n").unwrap();
    let s = DotenvStore {
        spec: StoreSpec::Dotenv(p.clone()),
        path: p.clone(),
        lock: Default::default(),
    };
    let doc = s.load(Purpose::Delete).unwrap().unwrap();
    let before = super::remove::Meaning::of(&doc);
    let mut same = s.load(Purpose::Delete).unwrap().unwrap();
    assert!(s.same_meaning(&mut same, &before, |_| false).is_ok());
    std::fs::write(&p, "A=1\nB=3\nC=3\n").unwrap();
    let mut changed = s.load(Purpose::Delete).unwrap().unwrap();
    let err = s
        .same_meaning(&mut changed, &before, |_| false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not written"), "{err}");
    assert!(err.starts_with(&p.display().to_string()), "names the file: {err}");
    // The id it names may read otherwise.
    let mut named = s.load(Purpose::Delete).unwrap().unwrap();
    assert!(
        s.same_meaning(&mut named, &before, |id| id.to_string() == "env/B")
            .is_ok()
    );
}

/// Issue #26 (the wizard's cleanup at 100,000 lines): a delete's document
/// keeps whole assignments only for the ids it deletes; every other line
/// is kept as its text and its id's digest for the rewrite check, which
/// still compares every id (the last assignment of each).
#[test]
fn a_delete_keeps_whole_assignments_only_for_the_ids_it_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".env");
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!("K{i:03}=v{i}\n"));
    }
    // A repeated key: the delete removes its last line, the earlier stays.
    text.push_str("K007=again\n");
    std::fs::write(&p, &text).unwrap();
    let s = DotenvStore {
        spec: StoreSpec::Dotenv(p.clone()),
        path: p.clone(),
        lock: Default::default(),
    };
    let named: Vec<CredentialId> = ["env/K007", "env/K100"]
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    let mut doc = s.load_ids_for(&named, Purpose::Delete).unwrap().unwrap();
    assert_eq!(doc.lines.len(), 201);
    // Both of K007's assignments and K100's, nothing else.
    assert_eq!(doc.assignments.len(), 3);
    assert_eq!(doc.digests.len(), 3);
    assert!(doc.assignments.iter().all(|a| named.contains(&a.id)));
    assert_eq!(doc.seen.len(), 201);
    // The meaning is the whole file's: one entry per id, the last wins.
    let meaning = super::remove::Meaning::take(&mut doc);
    assert!(doc.seen.is_empty(), "taken, not copied");
    let full = super::remove::Meaning::of(&s.load(Purpose::Write).unwrap().unwrap());
    assert_eq!(meaning.ids(), full.ids());
    assert_eq!(meaning.ids().len(), 200);
    let mut fresh = s.load(Purpose::Delete).unwrap().unwrap();
    assert!(s.same_meaning(&mut fresh, &meaning, |_| false).is_ok());
    // The delete itself: K100 gone, K007's earlier line stays (said so).
    let results = s.delete_many(&named);
    assert!(results[1].as_ref().is_ok_and(|d| *d), "{results:?}");
    assert!(results[0].is_err(), "{results:?}");
    let after = std::fs::read_to_string(&p).unwrap();
    assert!(!after.contains("K100=") && !after.contains("K007=again"), "{after}");
    assert!(after.contains("K007=v7\n") && after.contains("K099=v99\n"), "{after}");
    assert_eq!(after.lines().count(), 199);
}
