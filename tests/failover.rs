//! What a write sees when its server goes away: a connection lost after
//! COMMIT was sent is an unknown outcome, not a failure; one lost before is
//! a retryable failure that wrote nothing; and the pool's other connections
//! to a server that went away are discarded at once. Each test runs a
//! private cluster of its own, since it ends sessions and restarts the
//! server.

mod common;

use std::time::Duration;

use cruddur_db::repo::activities::ActivityDraft;
use cruddur_db::{Config, DatabaseUrl, Error, Repository, admin, establish};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// A migrated, seeded `cruddur` database on `cluster`, and a repository
/// over it with `pool_size` connections.
fn repository(cluster: &cruddur_db_test_support::TempCluster, pool_size: u32) -> Repository {
    let url = cluster.url_for("cruddur").unwrap();
    admin::create_database(&url).unwrap();
    let mut config = Config::new(url);
    config.pool_size = pool_size;
    config.checkout_timeout = Duration::from_secs(5);
    let repo = Repository::connect(&config).unwrap();
    repo.run_migrations().unwrap();
    repo.seed_reference().unwrap();
    repo
}

fn activities_with(url: &DatabaseUrl, message: &str) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM activities WHERE message = $1")
        .bind::<Text, _>(message)
        .get_result::<Count>(&mut establish(url).unwrap())
        .unwrap()
        .n
}

/// The backend of a session (other than `admin`'s) that waits on
/// `wait_event` now, if one does.
fn waiter(admin: &mut PgConnection, wait_event: &str) -> Option<i32> {
    diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE wait_event = $1 \
         AND pid <> pg_backend_pid() AND datname = 'cruddur'",
    )
    .bind::<Text, _>(wait_event)
    .get_result::<Pid>(admin)
    .ok()
    .map(|p| p.pid)
}

/// The backend of the session (other than `admin`'s) that waits on
/// `wait_event`, once there is one (polled for up to 30 s).
fn waiting_backend(admin: &mut PgConnection, wait_event: &str) -> i32 {
    let mut found = None;
    assert!(
        common::eventually(Duration::from_secs(30), || {
            found = waiter(admin, wait_event);
            found.is_some()
        }),
        "no session waits on {wait_event}"
    );
    found.unwrap()
}

#[test]
fn a_connection_lost_after_commit_was_sent_is_an_unknown_outcome() {
    let cluster = common::private_cluster();
    let repo = repository(&cluster, 2);
    let url = cluster.url_for("cruddur").unwrap();
    let mut admin = establish(&url).unwrap();
    // A synchronous standby that never comes: every COMMIT waits for it,
    // having already made the commit durable here, as a primary that dies
    // while its standby is slow would.
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).unwrap();
    }
    // The reload reaches the server's processes in their own time, and a
    // commit made before the checkpointer has seen it does not wait: such
    // a write succeeds, and the next one is tried.
    let mut attempt = 0;
    let (err, message) = loop {
        attempt += 1;
        assert!(attempt <= 20, "no commit ever waited for the standby");
        let message = format!("sent, then cut ({attempt})");
        let writer = {
            let (repo, message) = (repo.clone(), message.clone());
            std::thread::spawn(move || {
                repo.create_activity(&ActivityDraft::parse("bayko", &message, "1-day").unwrap())
            })
        };
        let mut waiting = None;
        assert!(
            common::eventually(Duration::from_secs(30), || {
                waiting = waiter(&mut admin, "SyncRep");
                waiting.is_some() || writer.is_finished()
            }),
            "the write neither waits for the standby nor ends"
        );
        match waiting {
            Some(pid) => {
                admin
                    .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
                    .unwrap();
                break (writer.join().unwrap().unwrap_err(), message);
            }
            None => {
                writer.join().unwrap().unwrap();
            }
        }
    };
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert!(
        !err.is_retryable(),
        "an unknown outcome is no failure: {err}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("may or may not have been committed"),
        "{shown}"
    );
    assert!(std::error::Error::source(&err).is_some(), "keeps its cause");
    // Why it is unknown, not failed: this one was committed.
    assert_eq!(activities_with(&url, &message), 1);
}

#[test]
fn a_connection_lost_before_commit_is_a_retryable_failure_that_wrote_nothing() {
    let cluster = common::private_cluster();
    let repo = repository(&cluster, 2);
    let url = cluster.url_for("cruddur").unwrap();
    let mut admin = establish(&url).unwrap();
    let mut locker = establish(&url).unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE activities IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let writer = {
        let repo = repo.clone();
        std::thread::spawn(move || {
            repo.create_activity(&ActivityDraft::parse("bayko", "cut before", "1-day").unwrap())
        })
    };
    // The INSERT waits for the lock: the COMMIT has not been sent.
    let pid = waiting_backend(&mut admin, "relation");
    admin
        .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    let err = writer.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::ConnectionLost { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("can be retried"), "{err}");
    locker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(activities_with(&url, "cut before"), 0);
    // And the retry works.
    repo.create_activity(&ActivityDraft::parse("bayko", "cut before", "1-day").unwrap())
        .unwrap();
    assert_eq!(activities_with(&url, "cut before"), 1);
}

#[test]
fn pooled_connections_to_a_server_that_went_away_are_discarded_at_once() {
    let cluster = common::private_cluster();
    let pool_size = 4;
    let repo = repository(&cluster, pool_size);
    // Every pooled connection open and idle.
    let held: Vec<_> = (0..pool_size).map(|_| repo.pool().get().unwrap()).collect();
    drop(held);
    assert_eq!(repo.pool().state().idle_connections, pool_size);

    // The server restarts (a fast shutdown ends every session): all four
    // connections are dead, and the pool cannot know until one is used.
    cluster.stop().unwrap();
    cluster.start().unwrap();

    let draft = ActivityDraft::parse("bayko", "after the restart", "1-day").unwrap();
    let first = repo.create_activity(&draft).unwrap_err();
    assert!(first.is_retryable(), "{first:?}");
    // The other three went with the first: the next write opens a new
    // connection instead of failing on one of them.
    for i in 0..pool_size {
        repo.create_activity(&draft)
            .unwrap_or_else(|e| panic!("write {i} after the first failure: {e}"));
    }
    assert_eq!(
        activities_with(&cluster.url_for("cruddur").unwrap(), "after the restart"),
        i64::from(pool_size)
    );
}
