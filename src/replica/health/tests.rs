use super::*;

const ID: ClusterIdentity = ClusterIdentity {
    system_identifier: 7_000_000_000_000_000_001,
    timeline: 1,
};

fn answered(replay: u64, primary: u64, age_s: u64) -> Probe {
    with_identities(replay, primary, age_s, Some(ID), Some(ID))
}

fn with_identities(
    replay: u64,
    primary: u64,
    age_s: u64,
    identity: Option<ClusterIdentity>,
    primary_identity: Option<ClusterIdentity>,
) -> Probe {
    Probe::Answered {
        in_recovery: true,
        replay: Some(Lsn(replay)),
        receive: Some(Lsn(replay)),
        primary: Some(Lsn(primary)),
        identity,
        primary_identity,
        replay_age: Some(Duration::from_secs(age_s)),
    }
}

fn run(probes: Vec<Probe>) -> Vec<ReplicaStatus> {
    let options = ReplicaOptions::default();
    let mut state = ReplicaState::default();
    probes
        .into_iter()
        .map(|p| {
            state.record(p, &options, Instant::now());
            state.status
        })
        .collect()
}

const MB: u64 = 1024 * 1024;

#[test]
fn a_first_good_probe_brings_an_unknown_replica_up() {
    assert_eq!(run(vec![answered(100, 100, 0)]), [ReplicaStatus::Up]);
    assert_eq!(ReplicaState::default().status, ReplicaStatus::Unknown);
    assert!(!ReplicaState::default().is_up());
}

#[test]
fn a_failure_takes_it_out_at_once_and_three_good_probes_bring_it_back() {
    use ReplicaStatus::*;
    let good = || answered(100, 100, 0);
    let statuses = run(vec![
        good(),
        Probe::Failed("refused".into()),
        good(),
        good(),
        Probe::Failed("refused".into()),
        good(),
        good(),
        good(),
        good(),
    ]);
    assert_eq!(statuses, [Up, Down, Down, Down, Down, Down, Down, Up, Up]);
    let mut state = ReplicaState::default();
    for probe in [Probe::Failed("a".into()), Probe::Failed("b".into()), good()] {
        state.record(probe, &ReplicaOptions::default(), Instant::now());
    }
    assert_eq!(state.outages, 1, "one outage, however many failed probes");
}

#[test]
fn lag_needs_both_the_byte_and_the_time_threshold() {
    use ReplicaStatus::*;
    // An idle primary: an hour since the last replayed commit, nothing
    // behind. A burst: 100 MB behind, replayed a second ago.
    assert_eq!(run(vec![answered(100, 100, 3600)]), [Up]);
    assert_eq!(run(vec![answered(0, 100 * MB, 1)]), [Up]);
    assert_eq!(run(vec![answered(0, 100 * MB, 120)]), [Lagging]);
    // Unknown time lag does not keep a replica far behind in.
    let far = Probe::Answered {
        in_recovery: true,
        replay: Some(Lsn(0)),
        receive: None,
        primary: Some(Lsn(100 * MB)),
        identity: Some(ID),
        primary_identity: Some(ID),
        replay_age: None,
    };
    assert_eq!(run(vec![far]), [Lagging]);
}

#[test]
fn a_lagging_replica_comes_back_after_three_probes_within_thresholds() {
    use ReplicaStatus::*;
    let statuses = run(vec![
        answered(0, 100 * MB, 120),
        answered(99 * MB, 100 * MB, 1),
        answered(100 * MB, 100 * MB, 1),
        answered(100 * MB, 100 * MB, 1),
    ]);
    assert_eq!(statuses, [Lagging, Lagging, Lagging, Up]);
}

#[test]
fn a_promoted_server_is_out() {
    let promoted = Probe::Answered {
        in_recovery: false,
        replay: None,
        receive: None,
        primary: Some(Lsn(5)),
        identity: Some(ID),
        primary_identity: Some(ID),
        replay_age: None,
    };
    let options = ReplicaOptions::default();
    let mut state = ReplicaState::default();
    state.record(answered(5, 5, 0), &options, Instant::now());
    state.record(promoted, &options, Instant::now());
    assert_eq!(state.status, ReplicaStatus::NotInRecovery);
    assert!(state.last_error.unwrap().contains("not in recovery"));
    assert_eq!(state.replay_lsn, None);
}

#[test]
fn a_stuck_probe_takes_the_replica_out_and_a_late_answer_does_not_bring_it_back() {
    let options = ReplicaOptions::default();
    let bound = options.stalled_after();
    assert_eq!(bound, Duration::from_secs(6));
    let start = Instant::now();
    let mut state = ReplicaState::default();
    state.record(answered(5, 5, 0), &options, start);
    state.probe_started(start);
    let just_in = start + bound;
    assert!(!state.is_stalled(&options, just_in));
    assert_eq!(state.at(&options, just_in).status, ReplicaStatus::Up);
    let late = just_in + Duration::from_millis(1);
    assert!(state.is_stalled(&options, late));
    let seen = state.at(&options, late);
    assert_eq!(seen.status, ReplicaStatus::Stalled);
    assert!(!seen.is_up());
    assert!(seen.last_error.unwrap().contains("waited 6.0 s"));
    // The frozen server answers at last: still out, until three good
    // probes in a row.
    state.record(answered(5, 5, 0), &options, late);
    assert_eq!(state.status, ReplicaStatus::Stalled);
    assert_eq!(state.probing_since, None);
    for (round, expected) in [
        ReplicaStatus::Stalled,
        ReplicaStatus::Stalled,
        ReplicaStatus::Up,
    ]
    .into_iter()
    .enumerate()
    {
        let at = late + Duration::from_secs(round as u64 + 1);
        state.probe_started(at);
        state.record(answered(5, 5, 0), &options, at);
        assert_eq!(state.status, expected, "good probe {}", round + 1);
    }
    assert_eq!(state.outages, 0, "a stall is not an outage of the pool");
}

#[test]
fn byte_lag_falls_back_to_the_receive_position_without_the_primary() {
    let probe = Probe::Answered {
        in_recovery: true,
        replay: Some(Lsn(10)),
        receive: Some(Lsn(30)),
        primary: None,
        identity: Some(ID),
        primary_identity: Some(ID),
        replay_age: None,
    };
    let mut state = ReplicaState::default();
    state.record(probe, &ReplicaOptions::default(), Instant::now());
    assert_eq!(state.lag_bytes, Some(20));
    assert!(state.is_up());
}

#[test]
fn a_replica_that_cannot_prove_it_follows_the_primary_is_out_with_the_reason() {
    use ReplicaStatus::*;
    let other_cluster = ClusterIdentity {
        system_identifier: ID.system_identifier + 1,
        ..ID
    };
    let other_timeline = ClusterIdentity { timeline: 2, ..ID };
    for (replica, primary, status, reason) in [
        (
            Some(other_cluster),
            Some(ID),
            ForeignCluster,
            "another cluster",
        ),
        (Some(other_timeline), Some(ID), OtherTimeline, "timeline 2"),
        (Some(ID), Some(other_timeline), OtherTimeline, "timeline 1"),
        (None, Some(ID), Unverified, "replica's system identifier"),
        (Some(ID), None, Unverified, "primary's system identifier"),
        (None, None, Unverified, "replica's"),
    ] {
        // Even "0 bytes behind, just replayed", it is out.
        let probe = with_identities(5, 5, 0, replica, primary);
        let mut state = ReplicaState::default();
        state.record(probe, &ReplicaOptions::default(), Instant::now());
        let case = format!("{replica:?} / {primary:?}");
        assert_eq!(state.status, status, "{case}");
        assert!(!state.is_up(), "{case}");
        let error = state.last_error.unwrap_or_default();
        assert!(error.contains(reason), "{case}: {error}");
    }
    // Once it follows the primary again, it needs the usual good probes.
    let mut state = ReplicaState::default();
    let options = ReplicaOptions::default();
    let foreign = with_identities(5, 5, 0, Some(other_cluster), Some(ID));
    state.record(foreign, &options, Instant::now());
    let statuses: Vec<_> = (0..3)
        .map(|_| {
            state.record(answered(5, 5, 0), &options, Instant::now());
            state.status
        })
        .collect();
    assert_eq!(statuses, [ForeignCluster, ForeignCluster, Up]);
    assert_eq!(ForeignCluster.to_string(), "another cluster");
}
