//! Idempotency keys: one post per key of a user, whatever the retries,
//! concurrent ones included; another post with the key is refused; keys
//! are each user's own and expire.

mod common;

use std::sync::{Arc, Barrier};

use cruddur_db::schema::{activities, idempotency_keys};
use cruddur_db::{ActivityDraft, Error, IdempotencyKey, Ttl, create_activity_once};
use diesel::prelude::*;

fn posts(conn: &mut PgConnection) -> i64 {
    activities::table.count().get_result(conn).unwrap()
}

#[test]
fn keys_are_visible_ascii_of_1_to_255_characters() {
    let long = "k".repeat(255);
    for good in [
        "a",
        "8e2d1c1e-8d16-4a35-9cde-0c1fdc8b8f43",
        "!~",
        long.as_str(),
    ] {
        assert!(IdempotencyKey::parse(good).is_ok(), "{good}");
    }
    let too_long = "k".repeat(256);
    for bad in ["", " ", "a b", "é", "tab\t", "nul\0", too_long.as_str()] {
        assert!(
            matches!(
                IdempotencyKey::parse(bad),
                Err(Error::InvalidIdempotencyKey { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_retry_with_the_key_gets_the_first_post_and_another_post_with_it_is_refused() {
    common::with_rollback(|conn| {
        let author = common::user(conn, "Retrier");
        let other = common::user(conn, "Other");
        let key = IdempotencyKey::parse("key-1").unwrap();
        let draft = ActivityDraft::new(&author.handle, "once", Ttl::Day1).unwrap();
        let before = posts(conn);
        let first = create_activity_once(conn, &draft, key).unwrap();
        assert!(!first.replayed);
        let again = create_activity_once(conn, &draft, key).unwrap();
        assert!(again.replayed);
        assert_eq!(again.activity, first.activity);
        assert_eq!(posts(conn), before + 1);

        // The same key with another message, or another ttl: refused, nothing written.
        for changed in [
            ActivityDraft::new(&author.handle, "twice", Ttl::Day1).unwrap(),
            ActivityDraft::new(&author.handle, "once", Ttl::Hour1).unwrap(),
        ] {
            assert!(matches!(
                create_activity_once(conn, &changed, key),
                Err(Error::IdempotencyKeyReused { .. })
            ));
        }
        assert_eq!(posts(conn), before + 1);

        // Keys are each user's own.
        let theirs = ActivityDraft::new(&other.handle, "once", Ttl::Day1).unwrap();
        let made = create_activity_once(conn, &theirs, key).unwrap();
        assert!(!made.replayed);
        assert_ne!(made.activity.uuid, first.activity.uuid);

        // After 24 hours the key makes a new post.
        diesel::update(idempotency_keys::table)
            .set(idempotency_keys::created_at.eq(
                diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>()
                    - diesel::dsl::IntervalDsl::hours(25),
            ))
            .execute(conn)
            .unwrap();
        let later = create_activity_once(conn, &draft, key).unwrap();
        assert!(!later.replayed);
        assert_ne!(later.activity.uuid, first.activity.uuid);
        // An unknown author writes nothing, key included.
        let ghost = ActivityDraft::new("ghost", "once", Ttl::Day1).unwrap();
        let keys: i64 = idempotency_keys::table.count().get_result(conn).unwrap();
        assert!(matches!(
            create_activity_once(conn, &ghost, key),
            Err(Error::UserNotFound { .. })
        ));
        let after: i64 = idempotency_keys::table.count().get_result(conn).unwrap();
        assert_eq!(after, keys);
    });
}

#[test]
fn concurrent_retries_with_one_key_make_one_post() {
    const RETRIES: usize = 12;
    let db = common::TestDb::migrated();
    let handle = common::user(&mut db.conn(), "Racer").handle;
    let barrier = Arc::new(Barrier::new(RETRIES));
    let threads: Vec<_> = (0..RETRIES)
        .map(|_| {
            let (url, handle, barrier) = (db.url.clone(), handle.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut conn = cruddur_db::establish(&url).unwrap();
                let draft = ActivityDraft::new(&handle, "exactly once", Ttl::Day1).unwrap();
                barrier.wait();
                create_activity_once(&mut conn, &draft, IdempotencyKey::parse("race").unwrap())
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(posts(&mut db.conn()), 1);
    assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1);
    assert!(
        results
            .iter()
            .all(|r| r.activity.uuid == results[0].activity.uuid)
    );
}
