//! The production guard under settings that change how the server renders
//! values (`DateStyle`, `TimeZone`, …), set in the URL's `options`, per role
//! or per database: the database `PROD_CONNECTION_URL` names is refused
//! whichever side carries them, and a database that is not production is
//! not refused because of them.

mod common;

use std::process::Output;

use common::{Hostile, HostileRole, TestDb, counts, seeded};
use cruddur_db::DatabaseUrl;
use cruddur_db::admin::identify_at;

fn cli(args: &[&str], prod_url: Option<&DatabaseUrl>) -> Output {
    common::cli_with_prod(args, prod_url.map(DatabaseUrl::expose))
}

const DESTRUCTIVE: &[&[&str]] = &[
    &["drop", "-y"],
    &["setup", "-y"],
    &["seed", "--synthetic", "2", "3", "-y"],
];

/// The oid and the rows: what a refused command must leave as it was.
fn snapshot(db: &TestDb) -> (i64, (i64, i64)) {
    let identity = identify_at(&db.url).unwrap().expect("the database exists");
    (identity.oid, counts(&mut db.conn()))
}

#[test]
fn the_prod_connection_url_database_is_refused_whichever_side_renders_differently() {
    for way in Hostile::ALL {
        let db = seeded();
        let (hostile, role): (_, Option<HostileRole>) = way.apply(&db.url);
        let before = snapshot(&db);
        // The command's URL carries the settings, then PROD_CONNECTION_URL.
        for (target, prod) in [(&hostile, &db.url), (&db.url, &hostile)] {
            for command in DESTRUCTIVE {
                let mut args = vec!["--database-url", target.expose()];
                args.extend_from_slice(command);
                let out = cli(&args, Some(prod));
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    !out.status.success() && stderr.contains("refusing to"),
                    "{way:?}: {command:?} with {target} and PROD_CONNECTION_URL={prod} was not refused:\n{stderr}"
                );
                assert_eq!(
                    snapshot(&db),
                    before,
                    "{way:?}: {command:?} changed the database"
                );
            }
        }
        drop(db);
        drop(role);
    }
}

#[test]
fn a_database_that_is_not_production_is_not_refused_because_of_its_settings() {
    for way in Hostile::ALL {
        for command in [&["setup", "-y"][..], &["drop", "-y"][..]] {
            let db = seeded();
            let (hostile, role): (_, Option<HostileRole>) = way.apply(&db.url);
            let mut args = vec!["--database-url", hostile.expose()];
            args.extend_from_slice(command);
            let out = cli(&args, None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{way:?}: {command:?} failed:\n{stderr}"
            );
            drop(db);
            drop(role);
        }
    }
}
