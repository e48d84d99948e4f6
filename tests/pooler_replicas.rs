//! Replica routing and write tokens behind two real PgBouncers in
//! transaction mode (Debian's package): one in front of a private primary,
//! one in front of its hot standby ([`common::StreamingPair`]), each with
//! fewer server connections than the clients. The repository is configured
//! as an application would be, from `DATABASE_URL`,
//! `DATABASE_REPLICA_URLS`, `CRUDDUR_POOLER=transaction` and
//! `DATABASE_DIRECT_URL`.
//!
//! What a transaction pooler takes away (the session) must not matter to
//! the router: a token's position is the primary's WAL position, whichever
//! server process reads it, the prober and the replay watch ask one
//! statement at a time, and nothing of ours (a setting, a named statement)
//! is left on a server connection for the pooler's next client.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{PgBouncer, StreamingPair, eventually, in_recovery, sees};
use cruddur_db::repo::activities::ActivityDraft;
use cruddur_db::variables::{
    CRUDDUR_POOL_SIZE, CRUDDUR_POOLER, CRUDDUR_STATEMENT_TIMEOUT_MS, DATABASE_DIRECT_URL,
    DATABASE_REPLICA_URLS, DATABASE_URL,
};
use cruddur_db::{
    Config, Consistency, Environment, Error, FeedPage, Pooler, ReplicaOptions, ReplicaStatus,
    Repository, Settings,
};
use diesel::prelude::*;

const DB: &str = "cruddur";
/// Clients at once, each over the `SERVER_CONNECTIONS` of each pooler.
const CLIENTS: usize = 16;
const SERVER_CONNECTIONS: u32 = 2;
/// Writes (each followed by its reads) per client.
const ROUNDS: usize = 4;
/// A statement timeout no server has by default, so that a leaked one shows.
const DISTINCT_TIMEOUT_MS: &str = "12345";

#[derive(QueryableByName, Debug, PartialEq)]
struct Session {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement_timeout: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    read_only: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    plan_cache_mode: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    prepared: i64,
}

/// What a plain client (no settings of its own) sees on each server
/// connection of `bouncer`: it holds `SERVER_CONNECTIONS` transactions
/// open at once, so that each reads another server process.
fn what_plain_clients_see(bouncer: &PgBouncer) -> Vec<Session> {
    let url = bouncer.url(DB);
    let mut conns: Vec<PgConnection> = (0..SERVER_CONNECTIONS)
        .map(|_| PgConnection::establish(url.expose()).expect("plain client"))
        .collect();
    let seen = conns
        .iter_mut()
        .map(|conn| {
            diesel::sql_query("BEGIN").execute(conn).unwrap();
            diesel::sql_query(
                "SELECT current_setting('statement_timeout') AS statement_timeout, \
                 current_setting('default_transaction_read_only') AS read_only, \
                 current_setting('plan_cache_mode') AS plan_cache_mode, \
                 (SELECT count(*) FROM pg_prepared_statements) AS prepared",
            )
            .get_result::<Session>(conn)
            .unwrap()
        })
        .collect();
    for conn in &mut conns {
        diesel::sql_query("COMMIT").execute(conn).unwrap();
    }
    seen
}

/// What one client counted.
#[derive(Debug, Default)]
struct Tally {
    /// Token reads that missed the client's own write.
    stale: usize,
    /// Token reads served by the standby.
    token_reads_on_standby: usize,
    errors: Vec<String>,
}

fn client(repo: &Repository, i: usize, barrier: &Barrier) -> Tally {
    let mut tally = Tally::default();
    barrier.wait();
    for round in 0..ROUNDS {
        let step = || -> Result<(bool, bool), Error> {
            let message = format!("client {i} round {round}");
            let draft = ActivityDraft::parse("andrewbrown", &message, "1-hour")?;
            let (activity, token) = repo.create_activity(&draft)?;
            // The token's text form is what travels in a cookie.
            let token = token.to_string().parse()?;
            let seen = repo.read(Consistency::AtLeast(token), |c| sees(c, activity.uuid))?;
            let feed = repo.home_feed(Consistency::Eventual, FeedPage::first(5))?;
            assert!(!feed.is_empty(), "the seed's activity at least");
            Ok(seen)
        };
        match step() {
            Ok((seen, on_standby)) => {
                tally.stale += usize::from(!seen);
                tally.token_reads_on_standby += usize::from(on_standby);
            }
            Err(e) => tally.errors.push(format!("client {i} round {round}: {e}")),
        }
    }
    tally
}

#[test]
fn token_reads_see_their_writes_and_eventual_reads_use_the_standby_through_two_poolers() {
    let pair = StreamingPair::start();
    // What needs a session (migrations, the seed's locks) goes directly.
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(
        pair.caught_up(Duration::from_secs(30)),
        "the standby did not replay the new database within 30 s"
    );
    let primary = PgBouncer::in_front_of(&pair.primary_url(DB), SERVER_CONNECTIONS);
    let standby = PgBouncer::in_front_of(&pair.standby_url(DB), SERVER_CONNECTIONS);
    let settings = Settings::from_pairs([
        (DATABASE_URL.name(), primary.url(DB).expose().to_owned()),
        (
            DATABASE_REPLICA_URLS.name(),
            standby.url(DB).expose().to_owned(),
        ),
        (CRUDDUR_POOLER.name(), "transaction".to_owned()),
        (
            DATABASE_DIRECT_URL.name(),
            pair.primary_url(DB).expose().to_owned(),
        ),
        (CRUDDUR_POOL_SIZE.name(), CLIENTS.to_string()),
        (
            CRUDDUR_STATEMENT_TIMEOUT_MS.name(),
            DISTINCT_TIMEOUT_MS.to_owned(),
        ),
    ]);
    let config = settings
        .config(Environment::Development)
        .expect("configuration");
    assert_eq!(config.pooler, Pooler::Transaction);
    let repo = Repository::connect_with(
        &config,
        ReplicaOptions {
            probe_interval: Duration::from_millis(50),
            ..ReplicaOptions::default()
        },
    )
    .expect("a repository behind the poolers");
    assert!(
        eventually(Duration::from_secs(10), || repo.router().replicas()[0]
            .1
            .status
            == ReplicaStatus::Up),
        "the standby did not come up behind its pooler: {:?}\nstandby's PgBouncer:\n{}",
        repo.router().replicas(),
        standby.log()
    );

    let before = repo.counters();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (repo, barrier) = (&repo, Arc::clone(&barrier));
                s.spawn(move || client(repo, i, &barrier))
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client panicked"))
            .collect()
    });
    let after = repo.counters();
    let stale: usize = tallies.iter().map(|t| t.stale).sum();
    let on_standby: usize = tallies.iter().map(|t| t.token_reads_on_standby).sum();
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    eprintln!(
        "{} writes by {CLIENTS} clients over {SERVER_CONNECTIONS} server connections per pooler: \
         {on_standby} token reads on the standby, {stale} stale, {} errors; {after:?}",
        CLIENTS * ROUNDS,
        errors.len()
    );
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    assert_eq!(stale, 0, "token reads missed their own write");
    assert_eq!(after.writes - before.writes, (CLIENTS * ROUNDS) as u64);
    assert!(
        after.replica_reads > before.replica_reads,
        "no read was served by the standby: {after:?}"
    );
    assert_eq!(
        repo.router().replicas()[0].1.status,
        ReplicaStatus::Up,
        "the standby stayed in"
    );
    // Eventual reads alone, one at a time: each on the standby, each counted.
    let before = repo.counters();
    for read in 0..20 {
        let on_standby = repo
            .read(Consistency::Eventual, in_recovery)
            .expect("eventual read");
        assert!(
            on_standby,
            "eventual read {read} was not served by the standby"
        );
    }
    assert_eq!(repo.counters().replica_reads - before.replica_reads, 20);

    drop(repo);
    for (name, bouncer) in [("primary", &primary), ("standby", &standby)] {
        for seen in what_plain_clients_see(bouncer) {
            assert_eq!(
                seen,
                Session {
                    statement_timeout: "0".into(),
                    read_only: "off".into(),
                    plan_cache_mode: "auto".into(),
                    prepared: 0,
                },
                "a setting or a named statement of ours reached another client of the {name}'s \
                 pooler"
            );
        }
    }
}

/// Probes every 50 ms, so that the tests see health changes quickly.
fn fast_probes() -> ReplicaOptions {
    ReplicaOptions {
        probe_interval: Duration::from_millis(50),
        ..ReplicaOptions::default()
    }
}

#[test]
fn a_standby_behind_a_transaction_pooler_without_pooler_mode_is_out_and_nothing_is_set_there() {
    let pair = StreamingPair::start();
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(
        pair.caught_up(Duration::from_secs(30)),
        "the standby did not replay the new database within 30 s"
    );
    let standby = PgBouncer::in_front_of(&pair.standby_url(DB), SERVER_CONNECTIONS);
    // The primary directly, so no pooler mode; the standby behind its pooler.
    let mut config = Config::new(pair.primary_url(DB));
    config.replica_urls = vec![standby.url(DB)];
    let repo = Repository::connect_with(&config, fast_probes()).expect("connect");
    let refused = |repo: &Repository| {
        let state = repo.router().replicas()[0].1.clone();
        state.status == ReplicaStatus::Down
            && state
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("CRUDDUR_POOLER=transaction"))
    };
    assert!(
        eventually(Duration::from_secs(10), || refused(&repo)),
        "the standby behind a transaction pooler was not taken out with the reason: {:?}",
        repo.router().replicas()
    );
    for read in 0..5 {
        let on_standby = repo.read(Consistency::Eventual, in_recovery).unwrap();
        assert!(!on_standby, "read {read} went to the standby");
    }
    assert!(refused(&repo), "it stays out");
    drop(repo);
    for seen in what_plain_clients_see(&standby) {
        assert_eq!(
            seen,
            Session {
                statement_timeout: "0".into(),
                read_only: "off".into(),
                plan_cache_mode: "auto".into(),
                prepared: 0,
            },
            "a setting or a named statement of ours reached another client of the standby's pooler"
        );
    }
}

#[test]
fn behind_a_transaction_pooler_a_write_sent_to_a_replica_fails_even_once_it_is_promoted() {
    let pair = StreamingPair::start();
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(pair.caught_up(Duration::from_secs(30)));
    let primary = PgBouncer::in_front_of(&pair.primary_url(DB), SERVER_CONNECTIONS);
    let standby = PgBouncer::in_front_of(&pair.standby_url(DB), SERVER_CONNECTIONS);
    let mut config = Config::new(primary.url(DB));
    config.pooler = Pooler::Transaction;
    config.direct_url = Some(pair.primary_url(DB));
    config.replica_urls = vec![standby.url(DB)];
    // One probe at start, the next long after the test: the promotion
    // below is not seen by the prober.
    let repo = Repository::connect_with(
        &config,
        ReplicaOptions {
            probe_interval: Duration::from_secs(600),
            ..ReplicaOptions::default()
        },
    )
    .expect("connect");
    assert!(
        eventually(Duration::from_secs(10), || repo.router().replicas()[0]
            .1
            .status
            == ReplicaStatus::Up),
        "{:?}",
        repo.router().replicas()
    );
    let mut promote = pair.primary().command("pg_ctl");
    promote
        .args(["promote", "--wait", "--pgdata"])
        .arg(pair.standby_data());
    common::run(promote, "promoting the standby");
    assert_eq!(repo.router().replicas()[0].1.status, ReplicaStatus::Up);

    let draft = ActivityDraft::parse("andrewbrown", "written on a replica", "1-hour").unwrap();
    let err = repo
        .read(Consistency::Eventual, |c| {
            let promoted = !in_recovery(c)?;
            cruddur_db::create_activity(c, &draft)?;
            Ok(promoted)
        })
        .expect_err("a write sent to a replica");
    assert!(matches!(err, Error::WriteOnReplica { .. }), "{err}");
    let written: i64 = {
        use cruddur_db::schema::activities;
        let mut conn = pair.standby_conn(DB);
        activities::table
            .filter(activities::message.eq("written on a replica"))
            .count()
            .get_result(&mut conn)
            .unwrap()
    };
    assert_eq!(written, 0, "nothing was written on the promoted server");
}
