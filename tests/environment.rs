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

#[test]
fn a_restored_mark_is_the_mark_that_was_read() {
    let old = common::TestDb::migrated();
    mark_environment(&mut old.conn(), Environment::Production).unwrap();
    let mark = read_mark(&mut old.conn()).unwrap().expect("marked");
    // A rebuilt database: unmarked, then given the old one's mark; and one
    // already marked otherwise.
    for premark in [None, Some(Environment::Development)] {
        let rebuilt = common::TestDb::new();
        if let Some(env) = premark {
            mark_environment(&mut rebuilt.conn(), env).unwrap();
        }
        cruddur_db::restore_mark(&mut rebuilt.conn(), &mark).unwrap();
        assert_eq!(
            read_mark(&mut rebuilt.conn()).unwrap().as_ref(),
            Some(&mark),
            "{premark:?}"
        );
        run_migrations(&mut rebuilt.conn()).unwrap();
        assert_eq!(read_mark(&mut rebuilt.conn()).unwrap(), Some(mark.clone()));
    }
}
