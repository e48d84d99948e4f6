//! Which database a command touches is what libpq and the server say, under
//! any spelling of the connection string and any concurrency.
//!
//! - every destructive command, under more than 20 spellings that reach a
//!   production database (marked, or named by `PROD_CONNECTION_URL`), is
//!   refused and leaves the data as it was;
//! - concurrent `prepare` runs on a new database all succeed; concurrent
//!   confirmations of one `sub` create one user; concurrent bulk seeds both
//!   finish.

mod common;

use std::process::Output;
use std::sync::{Arc, Barrier};

use common::{TestDb, counts, seeded, server_url, unique_name};
use cruddur_db::admin::{DatabaseIdentity, identify, identify_at};
use cruddur_db::{DatabaseUrl, Environment, PostConfirmationEvent, SyntheticSeed};
use diesel::prelude::*;

/// Every byte percent-encoded, letters too: libpq decodes them all.
fn percent_encode_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn cli(args: &[&str], prod_url: Option<&str>) -> Output {
    common::cli_with_prod(args, prod_url)
}

/// Spellings of the database `name` on the test server that libpq resolves
/// in unusual ways: repeated keywords, overrides, encodings, host lists,
/// odd paths. Some reach `name`, some reach another (missing) database;
/// the caller asks the server which.
fn spellings(name: &str) -> Vec<String> {
    let server = server_url();
    let host = server.param("host").map(str::to_owned);
    let port = server.param("port").unwrap_or("5432").to_owned();
    let user = server.param("user").map(str::to_owned);
    let exact = server.with_database(name);
    let mut out = vec![
        exact.expose().to_owned(),
        // libpq's key=value form of the same parameters.
        exact
            .params()
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(" "),
    ];
    let kv_base: String = server
        .params()
        .iter()
        .filter(|(k, _)| k != "dbname")
        .map(|(k, v)| format!("{k}='{}' ", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    let user_q = user
        .as_deref()
        .map(|u| format!("&user={}", percent_encode_all(u)))
        .unwrap_or_default();
    out.extend([
        format!("{kv_base}dbname=decoy dbname={name}"),
        format!("{kv_base}dbname = {name}"),
        format!("dbname={name} {kv_base}"),
        format!("{kv_base} dbname='{name}' connect_timeout=7 application_name='a b'"),
        format!(
            "postgres://bogus.invalid:1/decoy?dbname={name}&port={port}{user_q}{}",
            host.as_deref()
                .map(|h| format!("&host={}", percent_encode_all(h)))
                .unwrap_or_default()
        ),
        format!(
            "postgresql:///{}?port={port}{user_q}{}",
            percent_encode_all(name),
            host.as_deref()
                .map(|h| format!("&host={}", percent_encode_all(h)))
                .unwrap_or_default()
        ),
        // A doubled slash: libpq reads the database `/name`.
        format!(
            "{}?x",
            exact
                .expose()
                .replacen(&format!("/{name}"), &format!("//{name}"), 1)
        )
        .trim_end_matches("?x")
        .to_owned(),
        format!("{}/", exact.expose()),
        // A scheme libpq does not know: not a connection string at all.
        exact.expose().replacen("postgres://", "POSTGRES://", 1),
        format!(
            "{}{}connect_timeout=5&sslmode=prefer",
            exact.expose(),
            if exact.expose().contains('?') {
                "&"
            } else {
                "?"
            }
        ),
    ]);
    let uri = exact.expose();
    let joiner = if uri.contains('?') { "&" } else { "?" };
    out.extend([
        uri.replacen("postgres://", "postgresql://", 1),
        format!("{uri}{joiner}dbname={}", percent_encode_all(name)),
        format!("{uri}{joiner}target_session_attrs=read-write&sslmode=disable"),
        format!("{kv_base} options='-c search_path=public' dbname={name}"),
        format!(r"{kv_base} application_name='it's \ odd' dbname={name}"),
        format!("{kv_base}dbname={name} port=1 port={port}"),
    ]);
    if let Some(h) = host.as_deref() {
        // A host list whose first entry cannot answer.
        out.push(format!(
            "{kv_base} host='/nonexistent-{name},{h}' port='{port},{port}' dbname={name}"
        ));
        out.push(format!(
            "{kv_base} host=bogus.invalid host='{h}' dbname={name}"
        ));
        if h.starts_with('/') {
            // A socket directory, percent-encoded into the authority, and
            // with a trailing slash.
            out.push(format!(
                "postgres://{}:{port}/{name}{}",
                percent_encode_all(h),
                user_q.replacen('&', "?", 1)
            ));
            out.push(format!("{kv_base} host='{h}/' dbname={name}"));
            out.push(format!("{kv_base} host='{h}//.' dbname={name}"));
            out.push(format!("postgres:///{name}?host={h}&port={port}{user_q}"));
            out.push(format!(
                "postgres://{}@:{port}/{name}?host={}",
                user.as_deref().unwrap_or("postgres"),
                percent_encode_all(h)
            ));
        } else {
            for alias in ["127.0.0.1", "127.1", "localhost", "0x7f.1"] {
                out.push(format!("{kv_base} host={alias} dbname={name}"));
            }
            out.push(format!(
                "{kv_base} host=bogus.invalid hostaddr=127.0.0.1 dbname={name}"
            ));
            out.push(format!(
                "postgres://{}{}:{port}/{}",
                user.as_deref()
                    .map(|u| format!("{}@", percent_encode_all(u)))
                    .unwrap_or_default(),
                percent_encode_all(h),
                percent_encode_all(name)
            ));
        }
    }
    out
}

/// What must stay as it was: the database (by oid) and its rows.
fn snapshot(url: &DatabaseUrl) -> (DatabaseIdentity, (i64, i64)) {
    let mut conn = cruddur_db::establish(url).expect("the database still exists");
    (identify(&mut conn).unwrap(), counts(&mut conn))
}

/// Removes databases that a spelling reaching another name made (`setup`
/// creates the database its URL names).
fn remove_strays(name: &str) {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let mut conn = cruddur_db::admin::connect_maintenance(&server_url()).unwrap();
    let strays: Vec<Name> = diesel::sql_query(
        "SELECT datname FROM pg_database WHERE strpos(datname, $1) > 0 AND datname <> $1",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .load(&mut conn)
    .unwrap();
    for stray in strays {
        diesel::sql_query(format!(
            "DROP DATABASE \"{}\" WITH (FORCE)",
            stray.datname.replace('"', "\"\"")
        ))
        .execute(&mut conn)
        .unwrap();
    }
}

const DESTRUCTIVE: &[&[&str]] = &[
    &["drop", "-y"],
    &["drop", "--force", "-y"],
    &["setup", "-y"],
    &["setup", "--force", "-y"],
    &["schema-load", "-y"],
    &["migrate", "revert", "-y"],
    &["seed", "--synthetic", "2", "3", "-y"],
];

/// Runs every destructive command under every spelling of `db` and checks
/// that each one that reaches it is refused and that nothing changed.
fn every_spelling_is_refused(db: &TestDb, prod_url: Option<&str>) {
    let name = db.name();
    let before = snapshot(&db.url);
    let mut reaching = 0;
    for spelling in spellings(&name) {
        let reaches = DatabaseUrl::parse(&spelling)
            .ok()
            .and_then(|u| identify_at(&u).ok().flatten())
            .is_some_and(|identity| identity.same_database(&before.0));
        reaching += usize::from(reaches);
        for command in DESTRUCTIVE {
            let mut args = vec!["--database-url", spelling.as_str()];
            args.extend_from_slice(command);
            let out = cli(&args, prod_url);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if reaches {
                assert!(
                    !out.status.success() && stderr.contains("refusing to"),
                    "{command:?} with {spelling:?} was not refused:\n{stderr}"
                );
            }
            remove_strays(&name);
            assert_eq!(
                snapshot(&db.url),
                before,
                "{command:?} with {spelling:?} changed the database:\n{stderr}"
            );
        }
    }
    assert!(
        reaching >= 20,
        "only {reaching} spellings reached the database"
    );
}

#[test]
fn a_marked_production_database_is_refused_under_every_spelling() {
    let db = seeded();
    cruddur_db::mark_environment(&mut db.conn(), Environment::Production).unwrap();
    every_spelling_is_refused(&db, None);
}

#[test]
fn the_prod_connection_url_database_is_refused_under_every_spelling() {
    let db = seeded();
    // PROD_CONNECTION_URL itself spelled oddly: libpq reads the last dbname.
    let prod = format!(
        "{} dbname=decoy dbname={}",
        db.url
            .params()
            .iter()
            .filter(|(k, _)| k != "dbname")
            .map(|(k, v)| format!("{k}='{v}'"))
            .collect::<Vec<_>>()
            .join(" "),
        db.name()
    );
    every_spelling_is_refused(&db, Some(&prod));
}

#[test]
fn an_unreachable_prod_connection_url_is_a_refusal_not_a_drop() {
    let db = seeded();
    let before = snapshot(&db.url);
    let out = cli(
        &["--database-url", db.url.expose(), "drop", "-y"],
        Some("postgres://u:pw@127.0.0.1:1/prod?connect_timeout=2"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot tell whether"), "{stderr}");
    assert!(!stderr.contains("pw@"), "{stderr}");
    assert_eq!(snapshot(&db.url), before);
}

#[test]
fn eight_concurrent_prepares_of_a_new_database_all_succeed_twenty_times() {
    for round in 0..20 {
        let url = server_url().with_database(&unique_name("cruddur_prepare"));
        let guard = common::Dropper(url.clone());
        common::cli_all_succeed_at_once(
            8,
            &["--database-url", url.expose(), "prepare"],
            &format!("round {round}"),
        );
        let mut conn = cruddur_db::establish(&url).unwrap();
        assert_eq!(
            counts(&mut conn),
            (2, 2),
            "round {round}: seeded exactly once"
        );
        assert!(
            cruddur_db::pending_migrations(&mut conn)
                .unwrap()
                .is_empty()
        );
        drop(guard);
    }
}

#[test]
fn concurrent_confirmations_of_one_sub_create_one_user() {
    let db = TestDb::migrated();
    for round in 0..5 {
        let sub = unique_name("sub");
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let url = db.url.clone();
                let barrier = Arc::clone(&barrier);
                let sub = sub.clone();
                std::thread::spawn(move || {
                    let event = PostConfirmationEvent::parse(&format!(
                        r#"{{"request":{{"userAttributes":{{"name":"N","email":"e@x","preferred_username":"h{round}_{i}","sub":"{sub}"}}}}}}"#
                    ))
                    .unwrap();
                    let mut conn = cruddur_db::establish(&url).unwrap();
                    barrier.wait();
                    cruddur_db::confirm_user(&mut conn, &event).map(|c| c.created)
                })
            })
            .collect();
        let created: Vec<bool> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert_eq!(created.iter().filter(|c| **c).count(), 1, "round {round}");
        use cruddur_db::schema::users;
        let n: i64 = users::table
            .filter(users::cognito_user_id.eq(&sub))
            .count()
            .get_result(&mut db.conn())
            .unwrap();
        assert_eq!(n, 1, "round {round}: users with sub {sub}");
    }
}

#[test]
fn concurrent_bulk_seeds_take_turns_and_a_loaded_seed_is_named() {
    let db = TestDb::migrated();
    let run = |rng_seed| {
        let url = db.url.clone();
        std::thread::spawn(move || {
            let spec = SyntheticSeed {
                users: 50,
                activities: 20_000,
                rng_seed,
            };
            cruddur_db::seed_synthetic(&mut cruddur_db::establish(&url).unwrap(), spec, &|_| {})
        })
    };
    let (a, b) = (run(1), run(2));
    a.join().unwrap().expect("first bulk seed");
    b.join().unwrap().expect("second bulk seed");
    assert_eq!(counts(&mut db.conn()), (100, 40_000));

    let again = run(2).join().unwrap().unwrap_err();
    assert!(
        matches!(again, cruddur_db::Error::SeedAlreadyLoaded { rng_seed: 2 }),
        "{again}"
    );
    assert_eq!(counts(&mut db.conn()), (100, 40_000), "nothing written");
}
