//! Server values are compared as values: under settings that change how the
//! server renders them (`DateStyle`, `TimeZone`, `IntervalStyle`,
//! `extra_float_digits`, `lc_*`), set in the URL's `options`, per role or
//! per database, the library reaches the same answers as without them.

mod common;

use common::{Hostile, HostileRole, TestDb, hostile::OTHER_DATESTYLES};
use cruddur_db::admin::{self, DatabaseIdentity, identify, identify_at};
use cruddur_db::{Config, Consistency, FeedPage, Repository};

fn identity(url: &cruddur_db::DatabaseUrl) -> DatabaseIdentity {
    identify_at(url)
        .unwrap_or_else(|e| panic!("identify {url}: {e}"))
        .unwrap_or_else(|| panic!("{url}: the database exists"))
}

/// The role guard must outlive the database: a role that owns objects in a
/// database cannot be dropped while it exists.
fn with_hostile(way: Hostile, f: impl FnOnce(&TestDb, &cruddur_db::DatabaseUrl)) {
    let db = TestDb::migrated();
    let (url, role): (_, Option<HostileRole>) = way.apply(&db.url);
    f(&db, &url);
    drop(db);
    drop(role);
}

#[test]
fn a_database_is_the_same_database_whatever_the_session_renders() {
    for way in Hostile::ALL {
        with_hostile(way, |db, hostile| {
            let plain = identity(&db.url);
            let seen = identity(hostile);
            assert!(
                plain.same_database(&seen) && seen.same_database(&plain),
                "{way:?}: {plain:?} against {seen:?}"
            );
            // The maintenance connection (another database, without the
            // per-database settings) still sees the same server.
            let mut maintenance = admin::connect_maintenance(hostile).unwrap();
            let server = identify(&mut maintenance).unwrap();
            assert!(
                seen.same_server(&server),
                "{way:?}: {seen:?} against {server:?}"
            );
        });
    }
    // Each DateStyle alone, in the URL.
    let db = TestDb::new();
    let plain = identity(&db.url);
    for style in OTHER_DATESTYLES {
        let url = db
            .url
            .with_param("options", &format!("-c DateStyle={style}"));
        let seen = identity(&url);
        assert!(
            plain.same_database(&seen),
            "DateStyle={style}: {plain:?} against {seen:?}"
        );
    }
}

#[test]
fn a_checked_drop_is_not_refused_because_the_database_renders_differently() {
    for way in Hostile::ALL {
        with_hostile(way, |db, hostile| {
            let checked = identity(hostile);
            let dropped = admin::drop_checked(hostile, &checked, true)
                .unwrap_or_else(|e| panic!("{way:?}: {e}"));
            assert!(dropped, "{way:?}");
            assert!(!admin::database_exists(&db.url).unwrap(), "{way:?}");
        });
    }
}

#[test]
fn the_feed_is_the_same_bytes_whatever_the_session_renders() {
    let reference = {
        let db = TestDb::migrated();
        cruddur_db::seed_reference(&mut db.conn()).unwrap();
        let repo = Repository::connect(&Config::new(db.url.clone())).unwrap();
        (
            repo.home_feed(Consistency::Primary, FeedPage::default())
                .unwrap(),
            repo.home_feed_json(Consistency::Primary, FeedPage::default())
                .unwrap(),
        )
    };
    for way in Hostile::ALL {
        with_hostile(way, |_, hostile| {
            cruddur_db::seed_reference(&mut cruddur_db::establish(hostile).unwrap()).unwrap();
            let repo = Repository::connect(&Config::new(hostile.clone())).unwrap();
            let typed = repo
                .home_feed(Consistency::Primary, FeedPage::default())
                .unwrap();
            let json = repo
                .home_feed_json(Consistency::Primary, FeedPage::default())
                .unwrap();
            assert_eq!(json, serde_json::to_string(&typed).unwrap(), "{way:?}");
            // The seed is stamped now(): compare what it fixes, the
            // messages and each one's time to live.
            let keys = |items: &[cruddur_db::FeedItem]| {
                items
                    .iter()
                    .map(|i| (i.message.clone(), i.expires_at.map(|e| e - i.created_at)))
                    .collect::<Vec<_>>()
            };
            assert_eq!(keys(&typed), keys(&reference.0), "{way:?}");
        });
    }
}
