//! Read replicas on real streaming replication: each test starts a private
//! primary and a hot standby ([`common::StreamingPair`]) and routes reads
//! through a [`Router`] over them.
//!
//! Where a read went is asked of the server that ran it
//! (`pg_is_in_recovery()`: true on the standby only), and checked against
//! the routing counters.

mod common;

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{StreamingPair, TestDb, eventually, in_recovery, sees};
use cruddur_db::repo::activities::{ActivityDraft, Ttl, create_activity};
use cruddur_db::{Config, Consistency, Error, FeedPage, ReplicaOptions, ReplicaStatus, Repository};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};

const DB: &str = "cruddur";

/// Probes every 50 ms, so that the tests see health changes quickly.
fn fast_probes() -> ReplicaOptions {
    ReplicaOptions {
        probe_interval: Duration::from_millis(50),
        ..ReplicaOptions::default()
    }
}

/// Prepares the database on the primary (created, migrated, seeded), waits
/// for the standby to replay it, and connects a repository whose one
/// replica is the standby (reached through `replica_url`), once the prober
/// has found it up.
fn repository(pair: &StreamingPair, options: ReplicaOptions) -> Repository {
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(
        pair.caught_up(Duration::from_secs(30)),
        "the standby did not replay the new database within 30 s"
    );
    let mut config = Config::new(pair.primary_url(DB));
    config.replica_urls = vec![pair.standby_url(DB)];
    let repo = Repository::connect_with(&config, options).expect("connect");
    assert!(
        eventually(Duration::from_secs(10), || replica_status(&repo)
            == ReplicaStatus::Up),
        "the replica did not come up: {:?}",
        repo.router().replicas()
    );
    repo
}

fn replica_status(repo: &Repository) -> ReplicaStatus {
    repo.router().replicas()[0].1.status
}

#[test]
fn token_reads_see_their_write_while_replay_is_paused_and_eventual_reads_stay_on_the_replica() {
    let pair = StreamingPair::start();
    let repo = repository(
        &pair,
        ReplicaOptions {
            token_wait: Duration::from_millis(20),
            ..fast_probes()
        },
    );
    let router = repo.router();
    pair.pause_replay(DB);

    const TRIALS: usize = 200;
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let (activity, token) = repo
            .create_activity(
                &ActivityDraft::parse("andrewbrown", &format!("trial {trial}"), "1-hour")
                    .expect("a valid draft"),
            )
            .expect("write");
        // The token's text form is what travels in a cookie.
        let token: cruddur_db::WriteToken = token.to_string().parse().unwrap();
        let feed = repo
            .home_feed(Consistency::AtLeast(token), FeedPage::first(5))
            .expect("token read");
        assert!(
            feed.iter().any(|item| item.uuid == activity.uuid),
            "trial {trial}: the read with token {token} missed the write"
        );
        let (seen, on_standby) = router
            .read(Consistency::AtLeast(token), |c| sees(c, activity.uuid))
            .unwrap();
        assert!(seen && !on_standby, "trial {trial}: {seen} {on_standby}");
        // The replica is behind: an eventual read is served there, and
        // misses the write.
        let (seen, on_standby) = router
            .read(Consistency::Eventual, |c| sees(c, activity.uuid))
            .unwrap();
        assert!(
            on_standby && !seen,
            "trial {trial}: eventual read on standby={on_standby}, saw the write={seen}"
        );
        tokens.push(token);
    }
    let paused_time = started.elapsed();
    let counters = repo.counters();
    eprintln!("{TRIALS} trials with replay paused in {paused_time:?}: {counters:?}");
    assert_eq!(counters.writes, TRIALS as u64);
    assert_eq!(counters.primary_reads_not_current, 2 * TRIALS as u64);
    assert_eq!(counters.token_waits_timed_out, 2 * TRIALS as u64);
    assert_eq!(counters.replica_reads, TRIALS as u64);
    assert_eq!(
        replica_status(&repo),
        ReplicaStatus::Up,
        "a paused replica within thresholds stays in"
    );

    pair.resume_replay(DB);
    let last = *tokens.last().unwrap();
    // As soon as the replay passes the tokens, their reads go back to the
    // replica: no fixed window.
    assert!(
        eventually(Duration::from_secs(10), || router
            .read(Consistency::AtLeast(last), in_recovery)
            .unwrap()),
        "token reads did not return to the replica after resume"
    );
    let resumed = Instant::now();
    for (trial, token) in tokens.iter().enumerate() {
        assert!(
            router
                .read(Consistency::AtLeast(*token), in_recovery)
                .unwrap(),
            "trial {trial}: the token read did not go to the replica after resume"
        );
    }
    eprintln!(
        "{TRIALS} token reads after resume served by the replica in {:?}",
        resumed.elapsed()
    );
    // Fresh writes: served by the replica once it has replayed them (within
    // the 20 ms wait, or from the prober's position), else by the primary.
    let before = repo.counters();
    let mut fresh_on_replica = 0;
    for trial in 0..20 {
        let (activity, token) = repo
            .create_activity(
                &ActivityDraft::parse("andrewbrown", &format!("fresh {trial}"), "1-hour")
                    .expect("a valid draft"),
            )
            .unwrap();
        let (seen, on_standby) = router
            .read(Consistency::AtLeast(token), |c| sees(c, activity.uuid))
            .unwrap();
        assert!(seen, "fresh {trial}: the token read missed the write");
        fresh_on_replica += usize::from(on_standby);
    }
    let after = repo.counters();
    eprintln!(
        "fresh writes: {fresh_on_replica} of 20 token reads served by the replica \
         ({} after a wait)",
        after.token_waits_succeeded - before.token_waits_succeeded
    );
}

/// A unix socket that accepts connections and never answers: a server that
/// hangs, so that a client that tries it waits for its connect timeout.
struct Blackhole {
    _listener: UnixListener,
    path: PathBuf,
}

impl Blackhole {
    fn at(path: PathBuf) -> Self {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the blackhole");
        Self {
            _listener: listener,
            path,
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn a_stopped_replica_costs_no_connect_timeout_once_detected_and_comes_back() {
    let pair = StreamingPair::start();
    cruddur_db::prepare(&pair.primary_url(DB)).unwrap();
    assert!(pair.caught_up(Duration::from_secs(30)));
    // The application's connect timeout to the replica is 10 s.
    let replica = pair.standby_url(DB).with_param("connect_timeout", "10");
    let mut config = Config::new(pair.primary_url(DB));
    config.replica_urls = vec![replica.clone()];
    let repo = Repository::connect_with(&config, fast_probes()).unwrap();
    let router = repo.router();
    assert!(eventually(Duration::from_secs(10), || replica_status(
        &repo
    )
        == ReplicaStatus::Up));
    assert!(router.read(Consistency::Eventual, in_recovery).unwrap());
    // A caller with connections of its own to the primary (the async
    // primary) asks first: the replica has room, so the read is not the
    // primary's, and asking counts nothing.
    let asked = repo.counters();
    assert!(!router.claim_primary_read(Consistency::Eventual));
    assert_eq!(
        serde_json::to_value(repo.counters()).unwrap(),
        serde_json::to_value(asked).unwrap()
    );

    pair.stop_standby();
    // Where the standby listened, something now accepts and never answers:
    // a new connection there waits the whole connect timeout.
    let socket = PathBuf::from(replica.param("host").unwrap())
        .join(format!(".s.PGSQL.{}", replica.param("port").unwrap()));
    let blackhole = Blackhole::at(socket);
    let control = std::thread::spawn({
        let replica = replica.clone();
        move || {
            let started = Instant::now();
            let result = cruddur_db::establish(&replica);
            (started.elapsed(), result.is_err())
        }
    });
    let stopped = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || replica_status(&repo)
            == ReplicaStatus::Down),
        "the prober did not find the replica down: {:?}",
        router.replicas()
    );
    let detected = stopped.elapsed();
    let before = repo.counters();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        let on_standby = router.read(Consistency::Eventual, in_recovery).unwrap();
        slowest = slowest.max(started.elapsed());
        assert!(!on_standby, "a read went to the stopped replica");
    }
    let token = repo
        .create_activity(
            &ActivityDraft::parse("andrewbrown", "while the replica is down", "1-hour")
                .expect("a valid draft"),
        )
        .unwrap()
        .1;
    let started = Instant::now();
    assert!(
        !router
            .read(Consistency::AtLeast(token), in_recovery)
            .unwrap()
    );
    slowest = slowest.max(started.elapsed());
    let after = repo.counters();
    eprintln!(
        "replica found down {detected:?} after the stop; slowest of 51 reads then: {slowest:?}"
    );
    assert!(
        slowest < Duration::from_secs(5),
        "a read waited {slowest:?}"
    );
    assert_eq!(
        after.primary_reads_no_healthy_replica - before.primary_reads_no_healthy_replica,
        51
    );
    // With the replica down, the read is the primary's, counted once.
    assert!(router.claim_primary_read(Consistency::Eventual));
    assert_eq!(
        repo.counters().primary_reads_no_healthy_replica,
        after.primary_reads_no_healthy_replica + 1
    );

    let (control_time, control_failed) = control.join().unwrap();
    eprintln!("a direct connection to the hung replica took {control_time:?}");
    assert!(
        control_failed && control_time >= Duration::from_secs(5),
        "the blackhole does not hold connections ({control_time:?}): the test proves nothing"
    );

    drop(blackhole);
    pair.start_standby();
    assert!(
        eventually(Duration::from_secs(30), || replica_status(&repo)
            == ReplicaStatus::Up),
        "the replica did not come back: {:?}",
        router.replicas()
    );
    assert!(router.read(Consistency::Eventual, in_recovery).unwrap());
}

#[test]
fn a_frozen_replica_is_out_while_its_probe_waits_and_back_once_it_answers_again() {
    let pair = StreamingPair::start();
    // A probe may wait 2 × (2 s + 250 ms) = 4.5 s before the replica is out.
    let options = ReplicaOptions {
        probe_statement_timeout: Duration::from_millis(250),
        ..fast_probes()
    };
    let repo = repository(&pair, options.clone());
    let router = repo.router();
    assert!(router.read(Consistency::Eventual, in_recovery).unwrap());
    let mut config = Config::new(pair.primary_url(DB));
    config.replica_urls = vec![pair.standby_url(DB)];
    let second = Repository::connect_with(&config, options).unwrap();
    assert!(eventually(Duration::from_secs(10), || replica_status(
        &second
    )
        == ReplicaStatus::Up));

    // Stopped processes: connections are accepted, queries never answered,
    // and the statement timeout (enforced by the server) never fires.
    pair.freeze_standby();
    assert!(
        eventually(Duration::from_secs(60), || replica_status(&repo)
            == ReplicaStatus::Stalled),
        "the frozen replica was not taken out: {:?}",
        router.replicas()
    );
    let reason = router.replicas()[0]
        .1
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("waited"), "{reason}");
    // Dropping a router does not wait for its stuck prober.
    assert!(eventually(Duration::from_secs(60), || replica_status(
        &second
    )
        == ReplicaStatus::Stalled));
    let (dropped, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(second);
        let _ = dropped.send(());
    });
    assert!(
        done.recv_timeout(Duration::from_secs(60)).is_ok(),
        "dropping a router waited for the frozen replica"
    );
    let before = repo.counters();
    for _ in 0..20 {
        let on_standby = router.read(Consistency::Eventual, in_recovery).unwrap();
        assert!(!on_standby, "a read went to the frozen replica");
    }
    let token = repo
        .create_activity(
            &ActivityDraft::parse("andrewbrown", "while the replica is frozen", "1-hour")
                .expect("a valid draft"),
        )
        .unwrap()
        .1;
    assert!(
        !router
            .read(Consistency::AtLeast(token), in_recovery)
            .unwrap()
    );
    let after = repo.counters();
    assert_eq!(
        after.primary_reads_no_healthy_replica - before.primary_reads_no_healthy_replica,
        21
    );
    assert_eq!(after.replica_reads, before.replica_reads);

    pair.thaw_standby();
    assert!(
        eventually(Duration::from_secs(30), || replica_status(&repo)
            == ReplicaStatus::Up),
        "the thawed replica did not come back: {:?}",
        router.replicas()
    );
    assert!(router.read(Consistency::Eventual, in_recovery).unwrap());
}

#[test]
fn a_read_cancelled_by_a_recovery_conflict_is_retried_on_the_primary() {
    let pair = StreamingPair::start_with(&[
        "max_standby_streaming_delay = '1s'",
        "hot_standby_feedback = off",
    ]);
    cruddur_db::prepare(&pair.primary_url(DB)).unwrap();
    let mut primary = cruddur_db::establish(&pair.primary_url(DB)).unwrap();
    primary
        .batch_execute(
            "CREATE TABLE conflict (id int PRIMARY KEY, v int NOT NULL); \
             INSERT INTO conflict SELECT g, 0 FROM generate_series(1, 1000) g",
        )
        .unwrap();
    assert!(pair.caught_up(Duration::from_secs(30)));
    let mut config = Config::new(pair.primary_url(DB));
    config.replica_urls = vec![pair.standby_url(DB)];
    let repo = Repository::connect_with(&config, fast_probes()).unwrap();
    assert!(eventually(Duration::from_secs(10), || replica_status(
        &repo
    )
        == ReplicaStatus::Up));

    // While the read holds its snapshot on the standby, the primary updates
    // the rows it reads and vacuums the old versions away; replaying that
    // cleanup cancels the read after max_standby_streaming_delay.
    let updater = std::thread::spawn({
        let standby = pair.standby_url(DB);
        move || {
            let mut watch = cruddur_db::establish(&standby).unwrap();
            let reading = eventually(Duration::from_secs(30), || {
                diesel::select(diesel::dsl::sql::<BigInt>(
                    "count(*) FROM pg_stat_activity \
                     WHERE state = 'active' AND query LIKE '%conflict_probe%' \
                     AND pid <> pg_backend_pid()",
                ))
                .get_result::<i64>(&mut watch)
                .is_ok_and(|n| n > 0)
            });
            assert!(reading, "the long read never started on the standby");
            primary
                .batch_execute("UPDATE conflict SET v = v + 1")
                .unwrap();
            primary.batch_execute("VACUUM conflict").unwrap();
        }
    });
    let started = Instant::now();
    let (on_standby, total): (bool, i64) = repo
        .router()
        .read(Consistency::Eventual, |conn| {
            Ok(diesel::select((
                diesel::dsl::sql::<Bool>("pg_is_in_recovery()"),
                // 20 ms a row on the standby: 20 s in all, far past the
                // conflict's 1 s. The comment names it in pg_stat_activity.
                diesel::dsl::sql::<BigInt>(
                    "(SELECT sum(v + length(pg_sleep(CASE WHEN pg_is_in_recovery() \
                     THEN 0.02 ELSE 0 END)::text)) + count(*) /* conflict_probe */ \
                     FROM conflict)",
                ),
            ))
            .get_result(conn)?)
        })
        .expect("the read, retried on the primary");
    let took = started.elapsed();
    updater.join().unwrap();
    let counters = repo.counters();
    eprintln!("read cancelled on the replica and retried on the primary in {took:?}: {counters:?}");
    assert!(!on_standby, "the retry ran on the primary");
    assert_eq!(total, 2000, "the primary's rows after the update");
    assert_eq!(counters.conflict_retries, 1);
    assert_eq!(counters.replica_reads, 0);
    // The replica stays in: a conflict says nothing about its health.
    assert_eq!(replica_status(&repo), ReplicaStatus::Up);
}

#[test]
fn a_write_sent_down_a_replica_session_fails_with_a_clear_error() {
    let pair = StreamingPair::start();
    let repo = repository(&pair, fast_probes());
    let draft = ActivityDraft::new("andrewbrown", "misrouted", Ttl::Hour1).unwrap();
    let err = repo
        .router()
        .read(Consistency::Eventual, |conn| create_activity(conn, &draft))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::WriteOnReplica { .. }), "{err:?}");
    assert!(
        text.contains("read replica") && text.contains("read-only"),
        "{text}"
    );
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("read-only transaction"), "{cause}");
    let setting: String = repo
        .router()
        .read(Consistency::Eventual, |conn| {
            Ok(diesel::select(diesel::dsl::sql::<Text>(
                "current_setting('default_transaction_read_only')",
            ))
            .get_result(conn)?)
        })
        .unwrap();
    assert_eq!(setting, "on");
}

#[test]
fn replica_sessions_are_read_only_even_on_a_server_that_is_not_a_standby() {
    let db = TestDb::migrated();
    let pool = cruddur_db::pool::build_replica_pool(&Config::new(db.url.clone()), &db.url);
    let mut conn = pool.get().unwrap();
    let err = conn
        .batch_execute("CREATE TABLE t (id int)")
        .unwrap_err()
        .to_string();
    assert!(err.contains("read-only transaction"), "{err}");
}

#[test]
fn without_replicas_every_read_goes_to_the_primary() {
    let db = TestDb::migrated();
    cruddur_db::seed_reference(&mut db.conn()).unwrap();
    let repo = Repository::connect(&Config::new(db.url.clone())).unwrap();
    assert!(repo.router().replicas().is_empty());
    let (activity, token) = repo
        .create_activity(
            &ActivityDraft::parse("andrewbrown", "no replicas", "1-hour").expect("a valid draft"),
        )
        .unwrap();
    for consistency in [
        Consistency::Eventual,
        Consistency::AtLeast(token),
        Consistency::Primary,
    ] {
        let feed = repo.home_feed(consistency, FeedPage::first(5)).unwrap();
        assert!(
            feed.iter().any(|i| i.uuid == activity.uuid),
            "{consistency:?}"
        );
        assert_eq!(
            repo.home_feed_json(consistency, FeedPage::first(5))
                .unwrap(),
            serde_json::to_string(&feed).unwrap()
        );
    }
    let counters = repo.counters();
    assert_eq!(counters.writes, 1);
    assert_eq!(counters.primary_reads_chosen, 2);
    assert_eq!(counters.primary_reads_no_healthy_replica, 4);
    assert_eq!(counters.replica_reads, 0);
}
