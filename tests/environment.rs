//! The production mark: absent on a fresh database, written once, and kept
//! through a schema reload (every migration reverted and applied again).

mod common;

use cruddur_db::Environment;
use cruddur_db::environment::{mark_environment, read_mark};
use cruddur_db::migrations::{revert_all_migrations, run_migrations};

#[test]
fn a_fresh_database_has_no_mark() {
    let db = common::TestDb::migrated();
    assert_eq!(read_mark(&mut db.conn()).unwrap(), None);
    let unmigrated = common::TestDb::new();
    assert_eq!(read_mark(&mut unmigrated.conn()).unwrap(), None);
}

#[test]
fn the_mark_survives_a_schema_reload_and_keeps_its_first_time() {
    let db = common::TestDb::migrated();
    let conn = &mut db.conn();
    mark_environment(conn, Environment::Production).unwrap();
    let first = read_mark(conn).unwrap().expect("marked");
    assert!(first.is_production());
    mark_environment(conn, Environment::Production).unwrap();
    assert_eq!(read_mark(conn).unwrap().as_ref(), Some(&first));

    revert_all_migrations(conn).unwrap();
    run_migrations(conn).unwrap();
    // Read on a connection of its own: the mark is committed.
    assert_eq!(read_mark(&mut db.conn()).unwrap(), Some(first.clone()));

    mark_environment(conn, Environment::Development).unwrap();
    let changed = read_mark(conn).unwrap().expect("marked");
    assert_eq!(changed.environment, Environment::Development);
    assert!(changed.marked_at >= first.marked_at);
}
