//! The primary's reads on async connections (feature `async`): the same
//! pages as the synchronous path, counted once by the router, declined
//! where libpq and tokio-postgres could disagree, refusing a database that
//! is not the primary's even under the same name, and calls dropped at
//! every point of their run.

mod common;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use common::TestDb;
use cruddur_db::nonblocking::AsyncPrimary;
use cruddur_db::{
    Config, Consistency, Error, FeedCursor, FeedPage, Pooler, Repository, SyntheticSeed,
};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// A migrated database with a few dozen cruds, and a repository over its
/// URL with TLS and GSSAPI encryption off (which the async primary takes
/// over TCP).
fn seeded() -> (TestDb, Repository) {
    let db = TestDb::migrated();
    let spec = SyntheticSeed {
        users: 5,
        activities: 60,
        rng_seed: 7,
    };
    cruddur_db::seed_synthetic(&mut db.conn(), spec, &|_| {}).expect("seed");
    let url = db
        .url
        .with_param("sslmode", "disable")
        .with_param("gssencmode", "disable");
    let repo = Repository::connect(&Config::new(url)).expect("connect");
    (db, repo)
}

/// The number of items of a page's JSON array.
fn length(page: &[u8]) -> usize {
    let items: serde_json::Value = serde_json::from_slice(page).expect("a JSON array");
    items.as_array().expect("an array").len()
}

fn count(conn: &mut PgConnection, sql: &str, database: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .bind::<Text, _>(database)
        .get_result::<Count>(conn)
        .expect("count backends")
        .n
}

#[test]
fn the_async_pages_are_the_synchronous_ones() {
    let (_db, repo) = seeded();
    let primary = AsyncPrimary::new(repo.router()).expect("TLS off: taken");
    runtime().block_on(async {
        primary.ready().await.expect("one connection opens");
        let first = primary
            .home_feed_json_bytes(FeedPage::default())
            .await
            .expect("first page");
        let sync_first = repo
            .home_feed_json_bytes(Consistency::Primary, FeedPage::default())
            .unwrap();
        assert_eq!(first, sync_first);
        let items = repo
            .home_feed(Consistency::Primary, FeedPage::default())
            .unwrap();
        assert_eq!(length(&first), 20);
        let next = FeedPage {
            limit: 7,
            before: Some(FeedCursor::after(items.last().unwrap())),
        };
        let second = primary.home_feed_json_bytes(next).await.expect("next page");
        assert_eq!(
            second,
            repo.home_feed_json_bytes(Consistency::Primary, next)
                .unwrap()
        );
        assert_eq!(length(&second), 7);
        assert_ne!(second, first);
        let bad = FeedPage {
            limit: 0,
            before: None,
        };
        assert!(matches!(
            primary.home_feed_json_bytes(bad).await,
            Err(Error::InvalidPageSize { .. })
        ));
    });
}

#[test]
fn a_read_sent_to_the_primary_is_counted_once() {
    let (_db, repo) = seeded();
    let primary = AsyncPrimary::new(repo.router()).unwrap();
    runtime().block_on(async {
        let before = repo.counters();
        let page = primary
            .home_feed_json_bytes_for(Consistency::Primary, FeedPage::default())
            .await
            .expect("the primary was asked for");
        assert!(page.is_ok());
        // No replica: an eventual read goes to the primary too.
        let page = primary
            .home_feed_json_bytes_for(Consistency::Eventual, FeedPage::default())
            .await
            .expect("no replica to take it");
        assert!(page.is_ok());
        let after = repo.counters();
        assert_eq!(after.primary_reads_chosen, before.primary_reads_chosen + 1);
        assert_eq!(
            after.primary_reads_no_healthy_replica,
            before.primary_reads_no_healthy_replica + 1
        );
    });
}

#[test]
fn a_transaction_pooler_or_tls_over_tcp_is_declined() {
    let db = TestDb::migrated();
    let plain = db
        .url
        .with_param("sslmode", "disable")
        .with_param("gssencmode", "disable");
    let mut config = Config::new(plain);
    config.pooler = Pooler::Transaction;
    let repo = Repository::connect(&config).expect("connect as behind a pooler");
    match AsyncPrimary::new(repo.router()) {
        Err(Error::AsyncPrimaryOff { reason }) => {
            assert!(reason.contains("transaction pooler"), "{reason}");
        }
        other => panic!("taken behind a transaction pooler: {other:?}"),
    }

    // libpq's default, sslmode=prefer, uses TLS over TCP where the server
    // offers it: an async connection without TLS would be a downgrade.
    // Over a unix socket libpq uses no TLS, and neither is declined.
    let url = db.url.with_param("sslmode", "prefer");
    let repo = Repository::connect(&Config::new(url.clone())).expect("connect");
    let socket = url.param("host").is_some_and(|h| h.starts_with('/'));
    match (AsyncPrimary::new(repo.router()), socket) {
        (Err(Error::AsyncPrimaryOff { reason }), false) => {
            assert!(reason.contains("sslmode=prefer"), "{reason}");
        }
        (Ok(_), true) => {}
        (other, socket) => panic!("over a socket: {socket}; {other:?}"),
    }
}

#[test]
fn a_database_that_is_not_the_primarys_is_refused_even_under_its_name() {
    let (db, repo) = seeded();
    let primary = AsyncPrimary::new(repo.router()).expect("taken");
    let name = db.name();
    // The same name, the same server, another database (another oid): a
    // comparison of names or URLs would take it.
    let mut admin = cruddur_db::establish(&common::server_url()).expect("maintenance database");
    diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .expect("drop");
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .expect("create again");
    runtime().block_on(async {
        match primary.ready().await {
            Err(Error::AsyncPrimaryOff { reason }) => {
                assert!(reason.contains("oid"), "{reason}");
            }
            other => panic!("the new database was taken for the primary's: {other:?}"),
        }
        // And the calls after it are declined without connecting, for the
        // synchronous primary to take.
        assert!(matches!(
            primary.home_feed_json_bytes(FeedPage::default()).await,
            Err(Error::AsyncPrimaryOff { .. })
        ));
        assert_eq!(primary.connections().0, 0, "no connection was kept");
    });
}

/// Polls `call` at most `polls` times, letting the runtime's other tasks
/// (the connection's) run between polls; `true` when it finished.
async fn poll_at_most<F: Future>(call: F, polls: usize) -> bool {
    let mut call = pin!(call);
    for _ in 0..polls {
        if poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx).is_ready())).await {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

#[test]
fn a_call_dropped_at_any_point_leaves_no_connection_in_use() {
    let (db, repo) = seeded();
    let primary = AsyncPrimary::new(repo.router()).unwrap();
    let page = FeedPage::default();
    let expected = repo
        .home_feed_json_bytes(Consistency::Primary, page)
        .unwrap();
    let rt = runtime();
    let dropped = rt.block_on(async {
        primary.ready().await.unwrap();
        let mut dropped = 0;
        // Drop the call after 1, 2, 3, … polls: at the checkout, while the
        // statement is in flight, while its rows arrive; until a call
        // finishes within its polls.
        for polls in 1.. {
            if poll_at_most(primary.home_feed_json_bytes(page), polls).await {
                break;
            }
            dropped += 1;
            // Every call after a dropped one gets the whole, right page.
            let page_now = primary.home_feed_json_bytes(page).await.unwrap();
            assert_eq!(page_now, expected, "after a call dropped at poll {polls}");
        }
        dropped
    });
    eprintln!("calls dropped part-way: {dropped}");
    assert!(
        dropped >= 2,
        "the calls finished at once: {dropped} dropped"
    );
    let (open, idle) = primary.connections();
    assert!(open <= 10 && idle == open, "open {open}, idle {idle}");
    // The server ends the sessions of the connections closed part-way; none
    // is left idle in a transaction or running.
    let name = db.name();
    let mut admin = cruddur_db::establish(&common::server_url()).unwrap();
    let settled = common::eventually(std::time::Duration::from_secs(10), || {
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = $1 AND state IN ('idle in transaction', 'active') \
             AND pid <> pg_backend_pid()",
            &name,
        ) == 0
    });
    assert!(settled, "a session of a dropped call is still busy");
    // And each connection taken out of the pool was closed, not left open
    // behind it: the server has no more sessions than both pools hold.
    let held = open + usize::try_from(repo.pool().state().connections).unwrap();
    let closed = common::eventually(std::time::Duration::from_secs(10), || {
        let sessions = count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &name,
        );
        usize::try_from(sessions).unwrap() <= held
    });
    assert!(closed, "sessions outlive the connections dropped part-way");
    drop(rt);
}

#[test]
fn a_connection_the_server_ended_is_not_handed_out_again() {
    let (db, repo) = seeded();
    let primary = AsyncPrimary::new(repo.router()).unwrap();
    let mut admin = cruddur_db::establish(&common::server_url()).unwrap();
    let name = db.name();
    runtime().block_on(async {
        let expected = primary
            .home_feed_json_bytes(FeedPage::default())
            .await
            .unwrap();
        assert_eq!(primary.connections().0, 1);
        // The server ends every session of the database (a restart, a
        // failover, an administrator).
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<Text, _>(&name)
        .execute(&mut admin)
        .unwrap();
        let mut failures = 0;
        loop {
            match primary.home_feed_json_bytes(FeedPage::default()).await {
                Ok(page) => {
                    assert_eq!(page, expected);
                    break;
                }
                Err(e) => {
                    assert!(
                        matches!(e, Error::Query(_) | Error::StatementTimeout(_)),
                        "{e:?}"
                    );
                    failures += 1;
                    assert!(failures < 2, "the ended connection was handed out again");
                }
            }
        }
        assert_eq!(primary.connections().0, 1, "the ended one was closed");
    });
}
