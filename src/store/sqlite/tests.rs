use super::*;
use crate::store::test_support::{api_key as cred, no_key, weak_opts as opts};
use std::path::Path;

fn store(path: &Path, o: &KeyOptions) -> Box<dyn Store> {
    open(&StoreSpec::Sqlite(path.to_path_buf()), o).unwrap()
}

#[test]
fn missing_db_is_not_found_until_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let s = store(&p, &opts("pw"));
    assert!(matches!(s.list().unwrap_err(), StoreError::NotFound { .. }));
    assert!(!p.exists(), "a read must not create the database");
    assert!(!s.delete(&CredentialId::new("a", "b")).unwrap());
    s.write(&cred("a", "b", "v")).unwrap();
    assert_eq!(fsutil::mode_of(&p), Some(0o600));
    assert_eq!(s.list().unwrap().entries.len(), 1);
    let mode: String = Connection::open(&p)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn compare_and_delete_keeps_a_value_another_application_wrote_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let s = store(&p, &opts("pw"));
    crate::store::test_support::assert_compare_and_delete_keeps_a_racing_write(
        s.as_ref(),
        store(&p, &opts("pw")),
        &cred("a", "b", "v1"),
        &cred("a", "b", "theirs"),
    );
}

#[test]
fn compare_and_replace_keeps_a_value_another_application_wrote_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let s = store(&p, &opts("pw"));
    crate::store::test_support::assert_compare_and_replace_keeps_a_racing_write(
        s.as_ref(),
        store(&p, &opts("pw")),
        &cred("a", "b", "ours"),
        &cred("a", "b", "old"),
        &cred("a", "b", "theirs"),
    );
}

#[test]
fn schema_creation_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    store(&p, &opts("pw")).write(&cred("a", "b", "v1")).unwrap();
    let s = store(&p, &opts("pw"));
    s.write(&cred("a", "c", "v2")).unwrap();
    let conn = Connection::open(&p).unwrap();
    let metas: i64 = conn
        .query_row("SELECT count(*) FROM credshift_meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(metas, 1);
    assert_eq!(s.read_all().unwrap().credentials.len(), 2);
}

#[test]
fn a_database_without_our_tables_is_empty_and_untouched_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("other.db");
    Connection::open(&p)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let e = store(&p, &no_key())
        .write(&cred("a", "b", "v"))
        .unwrap_err();
    assert!(matches!(e, StoreError::MissingKey { .. }), "{e:?}");
    let tables: i64 = Connection::open(&p)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "a failed write must not add tables");
    let s = store(&p, &opts("pw"));
    assert!(s.list().unwrap().entries.is_empty());
    assert!(s.read(&CredentialId::new("a", "b")).unwrap().is_none());
    assert_eq!(s.probe().item_count, Some(0));
}

#[test]
fn not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.db");
    std::fs::write(&p, vec![b'x'; 4096]).unwrap();
    let e = store(&p, &opts("pw")).list().unwrap_err();
    assert!(e.to_string().contains("junk.db"), "{e}");
    assert!(e.to_string().contains("not a SQLite database"), "{e}");
    let cap = store(&p, &opts("pw")).probe();
    assert!(!cap.available);
}

#[test]
fn bad_rows_are_listed_as_errors_beside_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let s = store(&p, &opts("pw"));
    s.write(&cred("a", "good", "v1")).unwrap();
    s.write(&cred("a", "bad", "v2")).unwrap();
    Connection::open(&p)
        .unwrap()
        .execute(
            "UPDATE credshift_credentials SET kind = 'nonsense' WHERE name = 'bad'",
            [],
        )
        .unwrap();
    let listing = s.list().unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.errors.len(), 1);
    assert!(listing.errors[0].location.contains("a/bad"));
    let scan = s.read_all().unwrap();
    assert_eq!(scan.credentials.len(), 1);
    assert_eq!(scan.errors.len(), 1);
}
