//! The service over a primary and a replica that stops answering: the
//! replica's trouble costs the reads sent to it, never writes, health
//! checks or reads that can go elsewhere.

mod common;

use std::time::Duration;

use common::{Service, get, post_json};
use cruddur_db::{Config, Consistency, ReplicaOptions, ReplicaStatus, Repository};
use cruddur_db_service::Auth;
use cruddur_db_test_support::hostile::options_value;
use cruddur_db_test_support::{StreamingPair, eventually};
use diesel::prelude::*;
use diesel::sql_types::Bool;

const DB: &str = "cruddur";

/// Thaws the standby even when an assertion fails, so that the reads
/// stuck on it end and the test can finish.
struct Thaw<'a>(&'a StreamingPair);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.thaw_standby();
    }
}

#[test]
fn a_frozen_replica_holds_only_its_own_reads_and_writes_health_checks_and_other_reads_go_on() {
    let pair = StreamingPair::start();
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(pair.caught_up(Duration::from_secs(30)));
    // Two permits: without a bound of its own, the replica would hold both.
    // A long connect timeout on the replica's URL, and hostile session
    // settings: reads that reach the frozen server stay there until it
    // thaws, whatever its sessions render.
    let mut config = Config::new(pair.primary_url(DB));
    config.pool_size = 2;
    config.checkout_timeout = Duration::from_secs(3);
    config.statement_timeout_ms = 1000;
    config.replica_urls = vec![
        pair.standby_url(DB)
            .with_param("connect_timeout", "600")
            .with_param("options", &options_value()),
    ];
    let options = ReplicaOptions {
        probe_interval: Duration::from_millis(50),
        probe_statement_timeout: Duration::from_millis(250),
        ..ReplicaOptions::default()
    };
    let repo = Repository::connect_with(&config, options).expect("connect");
    let service = Service::serve(
        repo.clone(),
        Auth::Development {
            handle: "andrewbrown".into(),
        },
        &[],
    );
    let router = repo.router();
    assert!(
        eventually(Duration::from_secs(10), || router.replicas()[0].1.status
            == ReplicaStatus::Up),
        "{:?}",
        router.replicas()
    );
    let home = service.url("/api/activities/home");
    assert_eq!(get(&home, &[]).status, 200);
    assert_eq!(repo.counters().replica_reads, 1, "{:?}", repo.counters());
    // Two connections in the replica's pool, so that the reads sent there
    // after the freeze wait on the frozen server itself rather than on a
    // new connection (whose checkout would time out).
    let both = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let on_replica = router
                    .read(Consistency::Eventual, |conn| {
                        both.wait();
                        Ok(
                            diesel::select(diesel::dsl::sql::<Bool>("pg_is_in_recovery()"))
                                .get_result::<bool>(conn)?,
                        )
                    })
                    .unwrap();
                assert!(on_replica);
            });
        }
    });

    pair.freeze_standby();
    let _thaw = Thaw(&pair);
    // More reads than the service has permits, sent while the replica
    // still counts as up.
    const READS: usize = 6;
    let (answered, answers) = std::sync::mpsc::channel();
    for _ in 0..READS {
        let home = home.clone();
        let answered = answered.clone();
        std::thread::spawn(move || {
            let answer = get(&home, &[]);
            let _ = answered.send((answer.status, answer.body));
        });
    }
    let max = 2; // min(max_reads_per_replica, pool size)
    assert!(
        eventually(Duration::from_secs(30), || router.reads_in_flight()[0]
            == max),
        "the frozen replica does not hold reads: {:?} {:?}",
        router.reads_in_flight(),
        repo.counters()
    );
    // While they hang: health checks, posts and other reads are answered.
    for round in 0..3 {
        let health = get(&service.url("/api/health-check"), &[]);
        assert_eq!(health.status, 200, "round {round}: {}", health.body);
        let post = post_json(
            &service.url("/api/activities"),
            &[],
            &format!(
                r#"{{"message": "posted while a replica is frozen {round}", "ttl": "1-hour"}}"#
            ),
        );
        assert_eq!(post.status, 200, "round {round}: {}", post.body);
        let token = post.header("x-write-token").expect("a token").to_owned();
        let feed = get(&home, &[("X-Write-Token", &token)]);
        assert_eq!(feed.status, 200, "round {round}: {}", feed.body);
        assert!(
            feed.body
                .contains(&format!("posted while a replica is frozen {round}")),
            "round {round}: the read with the token missed the post"
        );
        assert_eq!(get(&home, &[]).status, 200, "round {round}");
    }
    assert_eq!(router.reads_in_flight()[0], max, "still hanging there");
    let counters = repo.counters();
    assert!(
        counters.primary_reads_replicas_full >= (READS - max) as u64,
        "{counters:?}"
    );

    // The reads stuck there are answered from the primary once they have
    // waited past the router's bound, while the replica is still frozen.
    let mut after_the_posts = 0;
    for k in 0..READS {
        let (status, body) = answers
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("read {k} of {READS} never answered: {e}"));
        assert_eq!(status, 200, "read {k}: {body}");
        after_the_posts += usize::from(body.contains("posted while a replica is frozen"));
    }
    assert!(
        after_the_posts >= max,
        "{after_the_posts} reads answered after the posts"
    );
    assert_eq!(
        router.reads_in_flight()[0],
        max,
        "their threads still wait there"
    );

    pair.thaw_standby();
    assert!(eventually(Duration::from_secs(30), || router
        .reads_in_flight()[0]
        == 0));
    assert!(eventually(Duration::from_secs(30), || router.replicas()[0]
        .1
        .status
        == ReplicaStatus::Up));
}

fn development() -> Auth {
    Auth::Development {
        handle: "andrewbrown".into(),
    }
}

#[test]
fn a_replica_of_another_cluster_serves_nothing_and_forged_tokens_are_answered_from_the_primary() {
    let ours = StreamingPair::start();
    let theirs = StreamingPair::start();
    for pair in [&ours, &theirs] {
        cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
        assert!(pair.caught_up(Duration::from_secs(30)));
    }
    let options = ReplicaOptions {
        probe_interval: Duration::from_millis(50),
        // A token that waited would show in the counters.
        token_wait: Duration::from_secs(2),
        ..ReplicaOptions::default()
    };
    // Our primary with their standby, and our primary with our standby.
    let connect = |replica: cruddur_db::DatabaseUrl| {
        let mut config = Config::new(ours.primary_url(DB));
        config.replica_urls = vec![replica.with_param("options", &options_value())];
        let repo = Repository::connect_with(&config, options.clone()).expect("connect");
        assert!(repo.router().wait_for_probes(Duration::from_secs(30)));
        repo
    };
    let foreign = connect(theirs.standby_url(DB));
    assert!(
        eventually(Duration::from_secs(10), || foreign.router().replicas()[0]
            .1
            .status
            == ReplicaStatus::ForeignCluster),
        "{:?}",
        foreign.router().replicas()
    );
    let service = Service::serve(foreign.clone(), development(), &[]);
    let post = post_json(
        &service.url("/api/activities"),
        &[],
        r#"{"message": "a post on our primary", "ttl": "1-hour"}"#,
    );
    assert_eq!(post.status, 200, "{}", post.body);
    let token = post.header("x-write-token").expect("a token").to_owned();
    let cookie = format!("cruddur_write_token={token}");
    let home = service.url("/api/activities/home");
    for headers in [
        [("X-Write-Token", token.as_str())],
        [("Cookie", cookie.as_str())],
    ] {
        let feed = get(&home, &headers);
        assert_eq!(feed.status, 200, "{}", feed.body);
        assert!(feed.body.contains("a post on our primary"), "{headers:?}");
    }
    // A cookie from before tokens named their server reads the primary.
    let old = get(&home, &[("Cookie", "cruddur_write_token=0/16B3748")]);
    assert_eq!(old.status, 200, "{}", old.body);
    assert!(old.body.contains("a post on our primary"));
    let counters = foreign.counters();
    assert_eq!(counters.replica_reads, 0, "{counters:?}");
    assert_eq!(counters.primary_reads_chosen, 1, "{counters:?}");
    drop(service);

    let genuine = connect(ours.standby_url(DB));
    assert!(eventually(Duration::from_secs(10), || genuine
        .router()
        .replicas()[0]
        .1
        .status
        == ReplicaStatus::Up));
    let service = Service::serve(genuine.clone(), development(), &[]);
    let home = service.url("/api/activities/home");
    let identity = genuine.router().primary_identity().expect("identity");
    let forged = [
        // Far ahead of the primary.
        format!(
            "FFFFFFFF/FFFFFFFF.{:X}.{}",
            identity.timeline, identity.system_identifier
        ),
        format!(
            "7FFFFFFF/0.{:X}.{}",
            identity.timeline, identity.system_identifier
        ),
        // Another cluster, another timeline.
        format!(
            "0/1.{:X}.{}",
            identity.timeline,
            identity.system_identifier ^ 1
        ),
        format!(
            "0/1.{:X}.{}",
            identity.timeline + 1,
            identity.system_identifier
        ),
    ];
    const ROUNDS: usize = 50;
    let before = genuine.counters();
    for round in 0..ROUNDS {
        for token in &forged {
            let feed = get(&home, &[("X-Write-Token", token)]);
            assert_eq!(feed.status, 200, "round {round}, {token}: {}", feed.body);
        }
    }
    let after = genuine.counters();
    assert_eq!(
        after.primary_reads_token_ahead - before.primary_reads_token_ahead,
        2 * ROUNDS as u64,
        "{after:?}"
    );
    assert_eq!(
        after.primary_reads_foreign_token - before.primary_reads_foreign_token,
        2 * ROUNDS as u64,
        "{after:?}"
    );
    assert_eq!(
        after.token_waits_timed_out, before.token_waits_timed_out,
        "{after:?}"
    );
    // Hostile spellings are refused before any database work.
    for bad in [
        "0/1",
        "0/1.1",
        "0/1.0.1",
        "0/1.1.1.1",
        "0/1.1.-1",
        "0/1.1.18446744073709551616",
    ] {
        let feed = get(&home, &[("X-Write-Token", bad)]);
        assert_eq!(feed.status, 400, "{bad}: {}", feed.body);
    }
    let long = format!("0/1.1.{}", "9".repeat(10_000));
    assert_eq!(get(&home, &[("X-Write-Token", &long)]).status, 400);
}

#[test]
fn ones_own_replies_and_profile_updates_are_read_back_with_their_tokens_through_a_replica() {
    let pair = StreamingPair::start();
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(pair.caught_up(Duration::from_secs(30)));
    let mut config = Config::new(pair.primary_url(DB));
    config.replica_urls = vec![pair.standby_url(DB)];
    let options = ReplicaOptions {
        probe_interval: Duration::from_millis(50),
        ..ReplicaOptions::default()
    };
    let repo = Repository::connect_with(&config, options).expect("connect");
    assert!(repo.router().wait_for_probes(Duration::from_secs(30)));
    let service = Service::serve(repo.clone(), development(), &[]);
    let page = get(&service.url("/api/activities/@andrewbrown"), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let post = page.json()["activities"][0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let eventual_before = repo.counters().replica_reads;

    // Each write's token makes the next read see it, whichever server
    // answers: 0 stale reads of one's own writes.
    for i in 0..20 {
        let reply = post_json(
            &service.url(&format!("/api/activities/{post}/reply")),
            &[],
            &format!(r#"{{"message": "reply {i}"}}"#),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let token = reply.header("x-write-token").unwrap().to_owned();
        let thread = get(
            &service.url(&format!("/api/activities/@andrewbrown/status/{post}")),
            &[("x-write-token", &token)],
        );
        assert!(
            thread.body.contains(&format!("\"reply {i}\"")),
            "{i}: {}",
            thread.body
        );

        let bio = format!("bio {i}");
        let update = post_json(
            &service.url("/api/profile/update"),
            &[],
            &format!(r#"{{"display_name": "Andrew {i}", "bio": "{bio}"}}"#),
        );
        assert_eq!(update.status, 200, "{}", update.body);
        let token = update.header("x-write-token").unwrap().to_owned();
        let short = get(
            &service.url("/api/users/@andrewbrown/short"),
            &[("x-write-token", &token)],
        );
        assert_eq!(short.json()["display_name"], format!("Andrew {i}"));
        let profile = get(
            &service.url("/api/activities/@andrewbrown"),
            &[("x-write-token", &token)],
        );
        assert_eq!(profile.json()["profile"]["bio"], bio);
    }
    // Reads without a token go to the replica.
    for path in [
        "/api/activities/@andrewbrown".to_owned(),
        format!("/api/activities/@andrewbrown/status/{post}"),
        "/api/users/@andrewbrown/short".to_owned(),
    ] {
        assert_eq!(get(&service.url(&path), &[]).status, 200, "{path}");
    }
    assert!(repo.counters().replica_reads >= eventual_before + 3);
}
