//! Replicas must prove they follow this primary, and tokens must say what
//! they belong to: a standby of another cluster is out whatever it reports
//! about its lag; a token of another cluster or timeline, or one beyond
//! every position the primary is known to have reached, is read on the
//! primary at once; and a read waiting for a replica's replay holds no
//! pooled connection. Where a read went is asked of the server that ran it
//! and checked against the routing counters, never against the clock.

mod common;

use cruddur_db::repo::activities::ActivityDraft;
use std::time::Duration;

use common::hostile::Hostile;
use common::{StreamingPair, eventually, in_recovery, sees};
use cruddur_db::{
    ClusterIdentity, Config, Consistency, Lsn, ReplicaOptions, ReplicaStatus, Repository,
    WriteToken,
};
use diesel::prelude::*;
use diesel::sql_types::BigInt;

const DB: &str = "cruddur";

fn fast_probes() -> ReplicaOptions {
    ReplicaOptions {
        probe_interval: Duration::from_millis(50),
        ..ReplicaOptions::default()
    }
}

/// Creates, migrates and seeds the database on `pair`'s primary and waits
/// for its standby to replay it.
fn prepare(pair: &StreamingPair) {
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(
        pair.caught_up(Duration::from_secs(30)),
        "the standby did not replay the new database within 30 s"
    );
}

fn connect(
    primary: &StreamingPair,
    replica_url: cruddur_db::DatabaseUrl,
    options: ReplicaOptions,
) -> Repository {
    let mut config = Config::new(primary.primary_url(DB));
    config.replica_urls = vec![replica_url];
    let repo = Repository::connect_with(&config, options).expect("connect");
    assert!(
        repo.router().wait_for_probes(Duration::from_secs(30)),
        "no probe answered: {:?}",
        repo.router().replicas()
    );
    repo
}

fn status(repo: &Repository) -> ReplicaStatus {
    repo.router().replicas()[0].1.status
}

#[test]
fn a_standby_of_another_cluster_is_out_with_the_reason_and_a_token_read_sees_the_post() {
    let ours = StreamingPair::start();
    let theirs = StreamingPair::start();
    prepare(&ours);
    // The other cluster has the same schema and data: a read sent there
    // would succeed, without the post.
    prepare(&theirs);
    for way in [
        None,
        Some(Hostile::Options),
        Some(Hostile::Role),
        Some(Hostile::Database),
    ] {
        // Hostile settings reach the foreign standby through its URL, or
        // through a role made on its primary (and replayed to it).
        let mut replica_url = theirs.standby_url(DB);
        let _role = match way {
            None => None,
            Some(way) => {
                let (url, role) = way.apply(&theirs.primary_url(DB));
                for param in ["options", "user"] {
                    if let Some(value) = url.param(param) {
                        replica_url = replica_url.with_param(param, value);
                    }
                }
                assert!(theirs.caught_up(Duration::from_secs(30)));
                role
            }
        };
        let repo = connect(&ours, replica_url, fast_probes());
        let router = repo.router();
        let case = format!("settings {way:?}");
        assert!(
            eventually(Duration::from_secs(10), || status(&repo)
                == ReplicaStatus::ForeignCluster),
            "{case}: {:?}",
            router.replicas()
        );
        let state = router.replicas()[0].1.clone();
        // It answers, in recovery, nothing behind its own primary...
        assert!(state.replay_lsn.is_some(), "{case}: {state:?}");
        // ...and is out, with the reason.
        let reason = state.last_error.unwrap_or_default();
        assert!(reason.contains("another cluster"), "{case}: {reason}");
        assert_eq!(state.status.to_string(), "another cluster");

        let before = repo.counters();
        let (activity, token) = repo
            .create_activity(
                &ActivityDraft::parse("andrewbrown", &format!("post, {case}"), "1-hour")
                    .expect("a valid draft"),
            )
            .expect("write");
        let (seen, on_standby) = router
            .read(Consistency::AtLeast(token), |c| sees(c, activity.uuid))
            .unwrap();
        assert!(
            seen && !on_standby,
            "{case}: seen={seen} standby={on_standby}"
        );
        let (_, on_standby) = router
            .read(Consistency::Eventual, |c| sees(c, activity.uuid))
            .unwrap();
        assert!(
            !on_standby,
            "{case}: an eventual read went to the foreign standby"
        );
        let after = repo.counters();
        assert_eq!(after.replica_reads, before.replica_reads, "{case}");
        assert_eq!(
            after.primary_reads_no_healthy_replica - before.primary_reads_no_healthy_replica,
            2,
            "{case}: {after:?}"
        );
    }
}

#[test]
fn tokens_of_another_cluster_or_timeline_and_tokens_far_ahead_are_read_on_the_primary_at_once() {
    let pair = StreamingPair::start();
    prepare(&pair);
    // A wait would be long: a token that waited shows in the counters.
    let options = ReplicaOptions {
        token_wait: Duration::from_secs(2),
        ..fast_probes()
    };
    let repo = connect(&pair, pair.standby_url(DB), options);
    let router = repo.router();
    assert!(
        eventually(Duration::from_secs(10), || status(&repo)
            == ReplicaStatus::Up),
        "{:?}",
        router.replicas()
    );
    let (_, token) = repo
        .create_activity(
            &ActivityDraft::parse("andrewbrown", "the real one", "1-hour").expect("a valid draft"),
        )
        .unwrap();
    let ours = router.primary_identity().expect("the primary's identity");
    assert_eq!(token.identity(), ours);
    // The identity is the server's own.
    let mut conn = cruddur_db::establish(&pair.primary_url(DB)).unwrap();
    let sysid: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(pg_control_system()).system_identifier",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(ours.system_identifier, sysid as u64);
    assert!(pair.caught_up(Duration::from_secs(30)));
    // The replica has replayed the real token: it serves it.
    assert!(eventually(Duration::from_secs(10), || router
        .read(Consistency::AtLeast(token), in_recovery)
        .unwrap()));

    let other_cluster = ClusterIdentity {
        system_identifier: ours.system_identifier ^ 1,
        ..ours
    };
    let other_timeline = ClusterIdentity {
        timeline: ours.timeline + 1,
        ..ours
    };
    let foreign = [
        // Positions the replica has replayed, of another history.
        WriteToken::new(Lsn(0), other_cluster),
        WriteToken::new(token.lsn(), other_cluster),
        WriteToken::new(token.lsn(), other_timeline),
        WriteToken::new(
            Lsn(1),
            ClusterIdentity {
                timeline: u32::MAX,
                ..ours
            },
        ),
    ];
    let ahead = [
        WriteToken::new(Lsn(u64::MAX), ours),
        WriteToken::new(Lsn(token.lsn().0 + (1 << 40)), ours),
        // Parsed from the text a client could send.
        format!("FFFFFFFF/0.{:X}.{}", ours.timeline, ours.system_identifier)
            .parse()
            .unwrap(),
    ];
    let before = repo.counters();
    for forged in foreign.iter().chain(&ahead) {
        assert!(
            !router
                .read(Consistency::AtLeast(*forged), in_recovery)
                .unwrap(),
            "{forged} was served by the replica"
        );
    }
    let after = repo.counters();
    assert_eq!(
        after.primary_reads_foreign_token - before.primary_reads_foreign_token,
        foreign.len() as u64,
        "{after:?}"
    );
    assert_eq!(
        after.primary_reads_token_ahead - before.primary_reads_token_ahead,
        ahead.len() as u64,
        "{after:?}"
    );
    assert_eq!(
        after.token_waits_timed_out, before.token_waits_timed_out,
        "none waited"
    );
    assert_eq!(after.token_waits_succeeded, before.token_waits_succeeded);
    assert_eq!(after.replica_reads, before.replica_reads);
}

/// Sessions on the standby's `database` that are not probes or the
/// replay watch (the router's pooled connections).
fn pooled_sessions(pair: &StreamingPair) -> i64 {
    let mut conn = pair.standby_conn("postgres");
    diesel::select(diesel::dsl::sql::<BigInt>(&format!(
        "count(*) FROM pg_stat_activity WHERE datname = '{DB}' \
         AND application_name <> '{}'",
        cruddur_db::replica::PROBE_APPLICATION_NAME
    )))
    .get_result(&mut conn)
    .unwrap()
}

#[test]
fn reads_waiting_for_a_replica_to_replay_hold_no_pooled_connection() {
    let pair = StreamingPair::start();
    prepare(&pair);
    let options = ReplicaOptions {
        token_wait: Duration::from_secs(120),
        ..fast_probes()
    };
    let repo = connect(&pair, pair.standby_url(DB), options);
    assert!(eventually(Duration::from_secs(10), || status(&repo)
        == ReplicaStatus::Up));
    pair.pause_replay(DB);
    let (activity, token) = repo
        .create_activity(
            &ActivityDraft::parse("andrewbrown", "not replayed yet", "1-hour")
                .expect("a valid draft"),
        )
        .unwrap();
    // The probes see the primary past the token, so it is not "ahead".
    assert!(eventually(Duration::from_secs(10), || repo
        .router()
        .replicas()[0]
        .1
        .replay_lsn
        .is_some()));
    const WAITERS: usize = 4;
    let readers: Vec<_> = (0..WAITERS)
        .map(|_| {
            let repo = repo.clone();
            std::thread::spawn(move || {
                repo.router()
                    .read(Consistency::AtLeast(token), |c| sees(c, activity.uuid))
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(30), || repo.router().reads_in_flight()
            [0]
            == WAITERS),
        "{:?} {:?}",
        repo.router().reads_in_flight(),
        repo.counters()
    );
    assert_eq!(
        pooled_sessions(&pair),
        0,
        "waiting reads hold replica connections"
    );
    pair.resume_replay(DB);
    for reader in readers {
        let (seen, on_standby) = reader.join().unwrap().unwrap();
        assert!(seen && on_standby, "seen={seen} on_standby={on_standby}");
    }
    let counters = repo.counters();
    assert_eq!(
        counters.token_waits_succeeded, WAITERS as u64,
        "{counters:?}"
    );
    assert_eq!(counters.token_waits_timed_out, 0, "{counters:?}");
}

#[test]
fn a_replica_whose_identity_cannot_be_read_is_unverified_and_out() {
    use diesel::connection::SimpleConnection;
    let pair = StreamingPair::start();
    prepare(&pair);
    // On this private cluster only: a role that may not read the control
    // data (replayed to the standby like any catalog change).
    let role = common::unique_name("blind");
    let mut admin = cruddur_db::establish(&pair.primary_url(DB)).unwrap();
    admin
        .batch_execute(&format!(
            "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC; \
             CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .unwrap();
    assert!(pair.caught_up(Duration::from_secs(30)));
    let repo = connect(
        &pair,
        pair.standby_url(DB).with_param("user", &role),
        fast_probes(),
    );
    assert!(
        eventually(Duration::from_secs(10), || status(&repo)
            == ReplicaStatus::Unverified),
        "{:?}",
        repo.router().replicas()
    );
    let reason = repo.router().replicas()[0]
        .1
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("pg_control_system"), "{reason}");
    let (activity, token) = repo
        .create_activity(
            &ActivityDraft::parse("andrewbrown", "written by the owner", "1-hour")
                .expect("a valid draft"),
        )
        .unwrap();
    let (seen, on_standby) = repo
        .router()
        .read(Consistency::AtLeast(token), |c| sees(c, activity.uuid))
        .unwrap();
    assert!(seen && !on_standby);
    assert_eq!(repo.counters().replica_reads, 0);
    drop(repo);

    // A primary whose identity cannot be read still reports the write as
    // made: its token is of no cluster, and is read on the primary.
    let blind_primary = pair.primary_url(DB).with_param("user", &role);
    let mut config = Config::new(blind_primary);
    config.replica_urls = vec![pair.standby_url(DB)];
    let blind = Repository::connect_with(&config, fast_probes()).unwrap();
    assert!(blind.router().wait_for_probes(Duration::from_secs(30)));
    assert!(
        eventually(Duration::from_secs(10), || status(&blind)
            == ReplicaStatus::Unverified),
        "{:?}",
        blind.router().replicas()
    );
    let ((), token) = blind
        .router()
        .write(|_| Ok(()))
        .expect("a write whose identity cannot be read is still made");
    assert_eq!(token.identity(), ClusterIdentity::UNVERIFIED);
    let parsed: WriteToken = token.to_string().parse().unwrap();
    assert_eq!(parsed, token, "{token}");
    let before = blind.counters();
    let on_standby = blind
        .router()
        .read(Consistency::AtLeast(token), in_recovery)
        .unwrap();
    assert!(!on_standby);
    assert_eq!(
        blind.counters().primary_reads_foreign_token,
        before.primary_reads_foreign_token + 1
    );
}
