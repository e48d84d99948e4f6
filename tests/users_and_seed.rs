//! Users from post-confirmation events, and seeding.

mod common;

use common::TestDb;
use cruddur_db::repo::seed::{
    REFERENCE_BIOS, REFERENCE_MESSAGE, REFERENCE_REPLY, REFERENCE_TTL, has_data,
};
use cruddur_db::repo::users::list_users;
use cruddur_db::{
    Error, FeedPage, PostConfirmationEvent, SyntheticSeed, confirm_user, home_feed, prepare,
    seed_reference, seed_synthetic,
};
use diesel::prelude::*;

fn event(name: &str, email: &str, handle: &str, sub: &str) -> String {
    serde_json::json!({
        "version": "1",
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "request": { "userAttributes": {
            "name": name, "email": email, "preferred_username": handle, "sub": sub,
            "email_verified": "true"
        }}
    })
    .to_string()
}

#[test]
fn confirming_the_same_event_twice_creates_one_user() {
    common::with_rollback(|conn| {
        let handle = common::unique_name("carol");
        let json = event("Carol O'Brien", "carol@example.com", &handle, "sub-carol");
        let parsed = PostConfirmationEvent::parse(&json).unwrap();
        let first = confirm_user(conn, &parsed).unwrap();
        assert!(first.created);
        assert_eq!(first.user.display_name, "Carol O'Brien");
        assert_eq!(first.user.cognito_user_id, "sub-carol");
        let second = confirm_user(conn, &parsed).unwrap();
        assert!(!second.created);
        assert_eq!(second.user, first.user);
        assert_eq!(common::counts(conn).0, 1);

        // Another subject asking for the taken handle is refused.
        let thief = PostConfirmationEvent::parse(&event("X", "x@x", &handle, "other")).unwrap();
        let err = confirm_user(conn, &thief).unwrap_err();
        assert!(matches!(err, Error::HandleTaken { .. }), "{err}");
        assert_eq!(common::counts(conn).0, 1);
    });
}

#[test]
fn malformed_events_are_clear_errors() {
    let cases = [
        ("", "EOF"),
        ("not json", "expected"),
        ("[]", "expected"),
        (r#"{"request": {}}"#, "userAttributes"),
        (
            r#"{"request": {"userAttributes": {}}}"#,
            "`name` is missing",
        ),
        (
            r#"{"request": {"userAttributes": {"name": 1, "email": "e", "preferred_username": "p", "sub": "s"}}}"#,
            "`name` is not a string",
        ),
        (
            r#"{"request": {"userAttributes": {"name": "n", "email": " ", "preferred_username": "p", "sub": "s"}}}"#,
            "`email` is blank",
        ),
        (
            r#"{"request": {"userAttributes": {"name": "n\u0000", "email": "e", "preferred_username": "p", "sub": "s"}}}"#,
            "NUL",
        ),
    ];
    for (json, expected) in cases {
        let err = PostConfirmationEvent::parse(json).unwrap_err();
        assert!(matches!(err, Error::InvalidEvent { .. }), "{json}: {err}");
        // The message, then its cause (the JSON parser's, when there is one).
        let mut text = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert!(text.contains(expected), "{json}: {text}");
    }
}

#[test]
fn reference_seed_is_idempotent_and_matches_the_original() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    let first = seed_reference(conn).unwrap();
    assert_eq!((first.users, first.activities), (2, 2));
    let second = seed_reference(conn).unwrap();
    assert_eq!((second.users, second.activities), (0, 0));
    assert_eq!(common::counts(conn), (2, 2));

    let users = list_users(conn).unwrap();
    let shape: Vec<_> = users
        .iter()
        .map(|u| {
            (
                u.handle.as_str(),
                u.display_name.as_str(),
                u.email.as_str(),
                u.cognito_user_id.as_str(),
                u.bio.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (
                "andrewbrown",
                "Andrew Brown",
                "andrew@exampro.co",
                "MOCK",
                REFERENCE_BIOS[0].1
            ),
            (
                "bayko",
                "Andrew Bayko",
                "bayko@exampro.co",
                "MOCK",
                REFERENCE_BIOS[1].1
            ),
        ]
    );
    assert!(REFERENCE_BIOS.iter().all(|(_, bio)| !bio.is_empty()));
    // Newest first: bayko's reply, then the reference activity it counts on.
    let feed = home_feed(conn, FeedPage::default()).unwrap();
    assert_eq!(feed.len(), 2);
    let (reply, parent) = (&feed[0], &feed[1]);
    assert_eq!(parent.message, REFERENCE_MESSAGE);
    assert_eq!(parent.handle, "andrewbrown");
    assert_eq!(parent.expires_at, Some(parent.created_at + REFERENCE_TTL));
    assert_eq!(parent.replies_count, 1);
    assert_eq!(parent.reply_to_activity_uuid, None);
    assert_eq!(reply.message, REFERENCE_REPLY);
    assert_eq!(reply.handle, "bayko");
    assert_eq!(reply.reply_to_activity_uuid, Some(parent.uuid));
    assert_eq!(reply.expires_at, None);
    assert!(reply.created_at > parent.created_at);
}

#[test]
fn seeding_refuses_while_migrations_are_pending() {
    let db = TestDb::new();
    let conn = &mut db.conn();
    let err = seed_reference(conn).unwrap_err();
    let all = cruddur_db::pending_migrations(conn).unwrap().len();
    assert!(
        matches!(err, Error::PendingMigrations { count, .. } if count == all),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("{all} migration(s) pending")),
        "{err}"
    );
    let spec = SyntheticSeed {
        users: 1,
        activities: 1,
        rng_seed: 1,
    };
    assert!(matches!(
        seed_synthetic(conn, spec, &|_| {}),
        Err(Error::PendingMigrations { .. })
    ));
}

#[derive(QueryableByName, PartialEq, Debug)]
struct Digest {
    #[diesel(sql_type = diesel::sql_types::Text)]
    digest: String,
}

fn digest(conn: &mut PgConnection) -> String {
    diesel::sql_query(
        "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS digest FROM \
         (SELECT uuid, user_uuid, message, replies_count, reposts_count, likes_count, expires_at, created_at \
          FROM activities) t",
    )
    .get_result::<Digest>(conn)
    .unwrap()
    .digest
}

#[test]
fn synthetic_seed_is_deterministic_and_reports_progress() {
    let spec = SyntheticSeed {
        users: 50,
        activities: 25_000,
        rng_seed: 7,
    };
    let a = TestDb::migrated();
    let b = TestDb::migrated();
    let calls = std::cell::Cell::new(0u32);
    let report = seed_synthetic(&mut a.conn(), spec, &|_| calls.set(calls.get() + 1)).unwrap();
    assert_eq!((report.users, report.activities), (50, 25_000));
    assert!(calls.get() >= 3, "progress reported {} times", calls.get());
    seed_synthetic(&mut b.conn(), spec, &|_| {}).unwrap();
    assert_eq!(digest(&mut a.conn()), digest(&mut b.conn()));
    assert!(has_data(&mut a.conn()).unwrap());

    // Another seed gives other rows; the same seed again collides and writes nothing.
    let c = TestDb::migrated();
    seed_synthetic(
        &mut c.conn(),
        SyntheticSeed {
            rng_seed: 8,
            ..spec
        },
        &|_| {},
    )
    .unwrap();
    assert_ne!(digest(&mut a.conn()), digest(&mut c.conn()));
    let again = seed_synthetic(&mut a.conn(), spec, &|_| {});
    assert!(again.is_err());
    assert_eq!(common::counts(&mut a.conn()), (50, 25_000));
}

#[test]
fn prepare_creates_migrates_seeds_once() {
    let db = TestDb::new();
    admin_drop(&db);
    let first = prepare(&db.url).unwrap();
    assert!(first.created && first.seeded, "{first:?}");
    assert_eq!(first.migrations_applied.len(), common::migration_count());
    let second = prepare(&db.url).unwrap();
    assert!(
        !second.created && !second.seeded && second.migrations_applied.is_empty(),
        "{second:?}"
    );
    assert_eq!(common::counts(&mut db.conn()), (2, 2));

    // A database with a user of its own (and not the reference rows) is
    // not seeded: whether to seed is "migrated and no user".
    diesel::sql_query("TRUNCATE users CASCADE")
        .execute(&mut db.conn())
        .unwrap();
    common::user(&mut db.conn(), "Only Me");
    let third = prepare(&db.url).unwrap();
    assert!(!third.seeded, "{third:?}");
    assert_eq!(common::counts(&mut db.conn()), (1, 0));

    // A migrated database with no user cannot be told apart from a first
    // prepare killed before its seed committed: it is seeded, once.
    diesel::sql_query("TRUNCATE users CASCADE")
        .execute(&mut db.conn())
        .unwrap();
    let fourth = prepare(&db.url).unwrap();
    assert!(fourth.seeded, "{fourth:?}");
    assert!(!prepare(&db.url).unwrap().seeded);
    assert_eq!(common::counts(&mut db.conn()), (2, 2));
}

/// Applies the first `count` embedded migrations, as a first `prepare`
/// killed after its `count`-th migration committed leaves the database.
fn migrate_first(db: &TestDb, count: usize) {
    use diesel_migrations::MigrationHarness;
    let conn = &mut db.conn();
    let mut migrations =
        diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&cruddur_db::MIGRATIONS)
            .unwrap();
    migrations.sort_by_key(|m| m.name().version().to_string());
    // Diesel creates its table first (as a run killed right after that
    // leaves it: present and empty).
    conn.applied_migrations().unwrap();
    for migration in migrations.iter().take(count) {
        conn.run_migration(&**migration).unwrap();
    }
}

#[test]
fn prepare_after_an_interrupted_first_prepare_seeds_exactly_once() {
    // Killed after Diesel created its table and 0 to 5 of the 5
    // migrations committed (5: before the seed's commit).
    for applied in 0..=common::migration_count() {
        let db = TestDb::new();
        migrate_first(&db, applied);
        let first = prepare(&db.url).unwrap();
        assert!(first.seeded, "after {applied} migration(s): {first:?}");
        assert_eq!(
            first.migrations_applied.len(),
            common::migration_count() - applied,
            "{applied}"
        );
        for _ in 0..2 {
            let again = prepare(&db.url).unwrap();
            assert!(
                !again.seeded && again.migrations_applied.is_empty(),
                "{again:?}"
            );
        }
        assert_eq!(common::counts(&mut db.conn()), (2, 2), "after {applied}");
    }
}

fn admin_drop(db: &TestDb) {
    assert!(cruddur_db::drop_database(&db.url, true).unwrap());
}

#[test]
fn a_bulk_seed_is_not_cut_by_the_statement_timeout() {
    let db = TestDb::migrated();
    let mut config = cruddur_db::Config::new(db.url.clone());
    // Loading 200k rows takes far longer than 50 ms; the small queries
    // around it take far less.
    config.statement_timeout_ms = 50;
    let conn = &mut cruddur_db::pool::establish_config(&config).unwrap();
    let spec = SyntheticSeed {
        users: 100,
        activities: 200_000,
        rng_seed: 3,
    };
    let report = seed_synthetic(conn, spec, &|_| {}).unwrap();
    assert_eq!(report.activities, 200_000);
    // The timeout still holds for everything else on that connection.
    let err = diesel::sql_query("SELECT pg_sleep(0.2)")
        .execute(conn)
        .unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

#[test]
fn an_absurd_user_count_is_refused_before_allocating() {
    let db = TestDb::migrated();
    let spec = SyntheticSeed {
        users: u64::MAX,
        activities: 1,
        rng_seed: 1,
    };
    let err = seed_synthetic(&mut db.conn(), spec, &|_| {}).unwrap_err();
    assert!(
        matches!(err, Error::InvalidSetting { name: "users", .. }),
        "{err}"
    );
}
