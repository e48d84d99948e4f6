//! A network partition between the library and its server: a private
//! cluster in a network namespace of its own ([`common::NetnsCluster`])
//! whose traffic is dropped silently, then let through again. Needs root
//! (see [`common::Privileged`]).

mod common;

use std::time::{Duration, Instant};

use common::{NetnsCluster, Privileged, lock_waiters};
use cruddur_db::repo::activities::ActivityDraft;
use cruddur_db::{Config, Consistency, DatabaseUrl, FeedPage, Repository, establish, prepare};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

/// The dead-network bound the tests set in the URL (milliseconds): data
/// unacknowledged this long ends a connection, and so does an idle one
/// whose keepalive probes (after 1 s, every 1 s) go unanswered this long.
const TCP_USER_TIMEOUT_MS: u64 = 3000;
/// The pool's checkout timeout in these tests.
const CHECKOUT: Duration = Duration::from_secs(2);
/// libpq's connect timeout in these tests (seconds).
const CONNECT_TIMEOUT_S: u64 = 2;

/// The bound on any call while the network is cut: the dead-network bound,
/// a checkout and a connect attempt, and generous slack for a loaded
/// machine. It bounds "never"; it is not a timing measurement.
fn bound() -> Duration {
    Duration::from_millis(TCP_USER_TIMEOUT_MS)
        + CHECKOUT
        + Duration::from_secs(CONNECT_TIMEOUT_S)
        + Duration::from_secs(10)
}

/// The TCP URL through the veth pair with the short dead-network bound;
/// the keepalives are left to the library, which derives them from it.
fn partitionable_url(cluster: &NetnsCluster, database: &str) -> DatabaseUrl {
    cluster
        .url_for(database)
        .with_param("tcp_user_timeout", &TCP_USER_TIMEOUT_MS.to_string())
        .with_param("connect_timeout", &CONNECT_TIMEOUT_S.to_string())
}

fn repository(url: &DatabaseUrl) -> Repository {
    let mut config = Config::new(url.clone());
    config.pool_size = 4;
    config.checkout_timeout = CHECKOUT;
    Repository::connect(&config).expect("connect over the veth pair")
}

#[test]
fn a_statement_in_flight_when_the_network_goes_silent_fails_within_the_bound() {
    let test = "a_statement_in_flight_when_the_network_goes_silent_fails_within_the_bound";
    let Some(cluster) = Privileged::or_skip(test, NetnsCluster::start()) else {
        return;
    };
    let admin_url = cluster.socket_url_for("cruddur");
    prepare(&admin_url).expect("prepare the database over the socket");
    let repo = repository(&partitionable_url(&cluster, "cruddur"));
    // Warm: the pool holds connections over the pair.
    repo.home_feed(Consistency::Primary, FeedPage::first(20))
        .expect("a read before the partition");

    // A read and a write that the server holds (behind a table lock taken
    // over the socket, which the partition does not cut), so that each
    // waits in recv with nothing unacknowledged when the network goes.
    let mut admin = establish(&admin_url).unwrap();
    admin
        .batch_execute("BEGIN; LOCK TABLE activities IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let (read, write) = std::thread::scope(|s| {
        let read = s.spawn(|| {
            let at = Instant::now();
            let r = repo.home_feed(Consistency::Primary, FeedPage::first(20));
            (at.elapsed(), r.map(drop))
        });
        let write = s.spawn(|| {
            let draft = ActivityDraft::parse("andrewbrown", "in flight", "1-hour").unwrap();
            let at = Instant::now();
            let r = repo.create_activity(&draft);
            (at.elapsed(), r.map(drop))
        });
        // Another session: the locker's transaction sees one snapshot of
        // pg_stat_activity.
        let mut watcher = establish(&admin_url).unwrap();
        assert!(
            common::eventually(Duration::from_secs(30), || lock_waiters(&mut watcher) >= 2),
            "the read and the write never waited on the lock"
        );
        assert!(
            eventually_acked(&cluster),
            "the queries in flight were never acknowledged"
        );
        let cut = Instant::now();
        cluster.partition();
        let read = read.join().unwrap();
        let write = write.join().unwrap();
        ((cut.elapsed(), read.1), (cut.elapsed(), write.1))
    });
    admin.batch_execute("ROLLBACK").unwrap();
    eprintln!("in flight when the partition began: read {read:?}, write {write:?}");
    for (what, (took, result)) in [("read", read), ("write", write)] {
        let e = result.expect_err(what);
        assert!(e.is_retryable(), "{what}: {e:?}");
        assert!(took < bound(), "{what} took {took:?}, over {:?}", bound());
    }

    // While partitioned: new calls fail within the bound, retryable.
    for what in ["read", "write"] {
        let at = Instant::now();
        let e = match what {
            "read" => repo
                .home_feed(Consistency::Primary, FeedPage::first(20))
                .map(drop),
            _ => repo
                .create_activity(&ActivityDraft::parse("andrewbrown", "cut", "1-hour").unwrap())
                .map(drop),
        }
        .expect_err(what);
        let took = at.elapsed();
        eprintln!("{what} while partitioned: {took:?} {e}");
        assert!(e.is_retryable(), "{what} while partitioned: {e:?}");
        assert!(took < bound(), "{what} while partitioned took {took:?}");
    }

    cluster.heal();
    let healed = Instant::now();
    let draft = ActivityDraft::parse("andrewbrown", "after the partition", "1-hour").unwrap();
    assert!(
        common::eventually(bound(), || repo.create_activity(&draft).is_ok()),
        "the pool did not write again within {:?} of the heal",
        bound()
    );
    eprintln!("first write after the heal: {:?}", healed.elapsed());
    assert!(
        repo.home_feed(Consistency::Primary, FeedPage::first(20))
            .is_ok(),
        "a read after the heal"
    );
}

/// Sessions on the server whose client connects from `addr`.
fn sessions_from(conn: &mut PgConnection, addr: std::net::Ipv4Addr) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE client_addr = '{addr}'::inet"
    ))
    .get_result::<N>(conn)
    .map_or(-1, |n| n.n)
}

#[test]
fn the_server_ends_the_sessions_of_a_client_cut_off_and_their_locks_go() {
    let test = "the_server_ends_the_sessions_of_a_client_cut_off_and_their_locks_go";
    let Some(cluster) = Privileged::or_skip(test, NetnsCluster::start()) else {
        return;
    };
    let admin_url = cluster.socket_url_for("cruddur");
    prepare(&admin_url).expect("prepare the database over the socket");
    let url = partitionable_url(&cluster, "cruddur");
    let repo = repository(&url);
    repo.home_feed(Consistency::Primary, FeedPage::first(20))
        .expect("a read: one idle pooled connection");
    // A client whose transaction holds a row lock and waits (as a write
    // does whose COMMIT is lost with the network): the server has nothing
    // to send it, so only the server's keepalives can find it gone.
    let mut holder = establish(&url).expect("connect over the pair");
    holder
        .batch_execute("BEGIN; SELECT 1 FROM users WHERE handle = 'andrewbrown' FOR UPDATE")
        .unwrap();
    let mut watcher = establish(&admin_url).unwrap();
    let host = cluster.net().host_addr();
    assert!(
        sessions_from(&mut watcher, host) >= 2,
        "the client's sessions"
    );

    cluster.partition();
    let cut = Instant::now();
    let gone = common::eventually(bound(), || sessions_from(&mut watcher, host) == 0);
    let took = cut.elapsed();
    cluster.heal();
    assert!(
        gone,
        "the server still has {} sessions of the client {took:?} after the partition began",
        sessions_from(&mut watcher, host)
    );
    eprintln!("the server ended the cut-off client's sessions {took:?} after the partition began");
    watcher
        .batch_execute(
            "BEGIN; SELECT 1 FROM users WHERE handle = 'andrewbrown' FOR UPDATE NOWAIT; ROLLBACK",
        )
        .expect("the cut-off client's row lock is gone");
}

/// Waits (up to 10 s) until the server has acknowledged everything sent
/// to it, so that the statements in flight wait in `recv`.
fn eventually_acked(cluster: &NetnsCluster) -> bool {
    common::eventually(Duration::from_secs(10), || cluster.all_sent_acknowledged())
}
