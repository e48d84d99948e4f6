//! Behaviour under load and contention: pool exhaustion, statement
//! timeouts, concurrent replies, and a migration runner waiting for the
//! migration lock. (Eight `cruddur-db migrate run` processes at once are
//! the CLI's `cli_faults`.)

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::TestDb;
use cruddur_db::repo::activities::{ActivityDraft, ReplyDraft, find_activity};
use cruddur_db::{Config, Consistency, Error, FeedPage, Repository, seed_reference};
use diesel::prelude::*;

fn repo(db: &TestDb, pool_size: u32, checkout: Duration) -> Repository {
    let mut config = Config::new(db.url.clone());
    config.pool_size = pool_size;
    config.checkout_timeout = checkout;
    Repository::connect(&config).unwrap()
}

#[test]
fn exhausted_pool_gives_a_clear_timeout_then_recovers() {
    let db = TestDb::migrated();
    let repo = repo(&db, 2, Duration::from_millis(300));
    let held = (repo.pool().get().unwrap(), repo.pool().get().unwrap());
    let err = repo
        .home_feed(Consistency::Primary, FeedPage::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::PoolTimeout { pool_size: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("no database connection available within 300 ms"),
        "{err}"
    );
    drop(held);
    assert!(
        repo.home_feed(Consistency::Primary, FeedPage::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn more_callers_than_connections_all_finish() {
    let db = TestDb::migrated();
    seed_reference(&mut db.conn()).unwrap();
    let repo = repo(&db, 2, Duration::from_secs(30));
    let callers = 12;
    let barrier = Arc::new(Barrier::new(callers));
    let handles: Vec<_> = (0..callers)
        .map(|i| {
            let repo = repo.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..20 {
                    let feed = repo.home_feed(Consistency::Primary, FeedPage::default())?;
                    assert!(!feed.is_empty(), "caller {i}: empty feed");
                    let message = format!("caller {i}");
                    repo.create_activity(&ActivityDraft::parse("bayko", &message, "1-hour")?)?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert!(repo.pool().state().connections <= 2);
    assert_eq!(common::counts(&mut db.conn()).1, 2 + 12 * 20);
}

#[test]
fn statement_timeout_cancels_and_the_connection_stays_usable() {
    let db = TestDb::migrated();
    let mut config = Config::new(db.url.clone());
    config.statement_timeout_ms = 100;
    config.pool_size = 1;
    let repo = Repository::connect(&config).unwrap();
    let err = repo
        .read(Consistency::Primary, |conn| {
            Ok(diesel::sql_query("SELECT pg_sleep(5)").execute(conn)?)
        })
        .unwrap_err();
    assert!(matches!(err, Error::StatementTimeout(_)), "{err}");
    assert!(err.to_string().contains("statement timeout"), "{err}");
    // The one pooled connection is reused and works.
    assert!(
        repo.home_feed(Consistency::Primary, FeedPage::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(repo.pool().state().connections, 1);
}

#[test]
fn concurrent_replies_are_all_counted() {
    let db = TestDb::migrated();
    seed_reference(&mut db.conn()).unwrap();
    let repo = repo(&db, 8, Duration::from_secs(30));
    // The reference activity (the seed's reply to it is newer).
    let parent = repo
        .home_feed(Consistency::Primary, FeedPage::default())
        .unwrap()
        .into_iter()
        .find(|item| item.reply_to_activity_uuid.is_none())
        .unwrap()
        .uuid;
    let before = find_activity(&mut db.conn(), parent).unwrap().replies_count as usize;
    let threads = 16;
    let per_thread = 10;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let repo = repo.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..per_thread)
                    .filter(|i| {
                        let handle = if (t + i) % 2 == 0 {
                            "bayko"
                        } else {
                            "andrewbrown"
                        };
                        let message = format!("reply {t}/{i}");
                        let draft = ReplyDraft::new(handle, parent, &message).unwrap();
                        repo.create_reply(&draft).is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let created: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(created, threads * per_thread);
    let conn = &mut db.conn();
    assert_eq!(
        find_activity(conn, parent).unwrap().replies_count as usize,
        before + created
    );
    use cruddur_db::schema::activities;
    let stored: i64 = activities::table
        .filter(activities::reply_to_activity_uuid.eq(parent))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(stored as usize, before + created);
}

#[test]
fn waiting_for_the_migration_lock_is_not_cut_by_the_statement_timeout() {
    use cruddur_db::migrations::{MIGRATION_LOCK_KEY, run_migrations};
    let db = TestDb::new();
    let mut holder = db.conn();
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut holder)
        .unwrap();
    let mut config = Config::new(db.url.clone());
    config.statement_timeout_ms = 100;
    let runner = std::thread::spawn(move || {
        let mut conn = cruddur_db::pool::establish_config(&config).unwrap();
        let applied = run_migrations(&mut conn);
        #[derive(QueryableByName)]
        struct Timeout {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let after: Timeout = diesel::sql_query("SELECT current_setting('statement_timeout') AS t")
            .get_result(&mut conn)
            .unwrap();
        (applied, after.t)
    });
    // The runner has waited for the lock for three times its statement timeout.
    #[derive(QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        long: bool,
    }
    let waited = common::eventually(Duration::from_secs(60), || {
        diesel::sql_query(
            "SELECT coalesce(bool_or(now() - query_start > interval '300 ms'), false) AS long \
             FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .get_result::<Waiting>(&mut holder)
        .unwrap()
        .long
    });
    assert!(waited, "the runner never waited on the migration lock");
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .execute(&mut holder)
        .unwrap();
    let (applied, timeout_after) = runner.join().unwrap();
    assert_eq!(applied.unwrap().len(), common::migration_count());
    assert_eq!(
        timeout_after, "100ms",
        "the session's statement timeout is restored"
    );
}

#[test]
fn a_write_whose_connection_dies_after_the_commit_is_reported_made() {
    use diesel::sql_types::Integer;
    let db = TestDb::migrated();
    seed_reference(&mut db.conn()).unwrap();
    let repo = repo(&db, 2, Duration::from_secs(5));
    let draft = ActivityDraft::parse("bayko", "committed, then cut off", "1-hour").unwrap();
    let url = db.url.clone();
    let (activity, token) = repo
        .write(|conn| {
            let activity = cruddur_db::repo::activities::create_activity(conn, &draft)?;
            // The server ends this session between the commit and the
            // token's read of the WAL position.
            let pid: i32 =
                diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()")).get_result(conn)?;
            diesel::sql_query("SELECT pg_terminate_backend($1, 10000)")
                .bind::<Integer, _>(pid)
                .execute(&mut cruddur_db::establish(&url)?)?;
            Ok(activity)
        })
        .expect("the write committed, so it is reported made");
    assert_eq!(token.identity(), cruddur_db::ClusterIdentity::UNVERIFIED);
    let stored = find_activity(&mut db.conn(), activity.uuid).expect("the row is stored");
    assert_eq!(stored.message, "committed, then cut off");
    // The token sends the next read to the primary, which sees the post.
    let feed = repo
        .home_feed(Consistency::AtLeast(token), FeedPage::default())
        .unwrap();
    assert!(feed.iter().any(|item| item.uuid == activity.uuid));
}
