mod support;

use support::pg;

#[test]
fn harness_gives_each_test_a_fresh_database() {
    let Some(a) = pg::fresh_db() else { return };
    let Some(b) = pg::fresh_db() else { return };
    assert_ne!(a.url(), b.url());
    pg::execute(
        &a.url(),
        "CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (7)",
    );
    let mut ca = pg::connect(&a.url());
    let x: i32 = ca.query_one("SELECT x FROM only_in_a", &[]).unwrap().get(0);
    assert_eq!(x, 7);
    let mut cb = pg::connect(&b.url());
    assert!(cb.query("SELECT x FROM only_in_a", &[]).is_err());
}

#[test]
fn harness_runs_the_fixture_schema() {
    let Some(db) = pg::fresh_db() else { return };
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/schema.sql"));
    pg::run_sql_file(&db.url(), &support::fixture("prompttrain-db/data.sql"));
    let mut c = pg::connect(&db.url());
    let n: i64 = c
        .query_one("SELECT count(*) FROM accounts", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
}

#[test]
fn own_server_stops_and_refuses_connections() {
    let Some(server) = pg::own_server() else {
        return;
    };
    let url = server.url();
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_ok());
    server.stop();
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_err());
}
