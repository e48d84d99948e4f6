//! The command line with a read replica: a private primary and a hot
//! standby streaming from it.

mod common;

use std::time::Duration;

use common::StreamingPair;
use common::cli::{Run, cli, run_cmd};

const DB: &str = "cruddur";

fn with_replica(primary: &str, replica: &str, args: &[&str]) -> Run {
    let mut full = vec!["--database-url", primary, "--replica-url", replica];
    full.extend_from_slice(args);
    run_cmd(cli(), &full)
}

/// The write token `activity create` printed on stderr.
fn write_token(created: &Run) -> String {
    created
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("write token: "))
        .unwrap_or_else(|| panic!("no write token on stderr: {}", created.stderr))
        .to_owned()
}

#[test]
fn tokens_route_feed_reads_and_status_lists_the_replica() {
    let pair = StreamingPair::start();
    cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
    assert!(
        pair.caught_up(Duration::from_secs(30)),
        "the standby did not replay the new database"
    );
    let primary = pair.primary_url(DB).expose().to_owned();
    let replica = pair.standby_url(DB).expose().to_owned();

    let status = with_replica(&primary, &replica, &["status"]);
    status.success();
    status.stdout_has("replica 1").stdout_has(": up, ");

    // Replay paused: the replica cannot see the new activity.
    pair.pause_replay(DB);
    let created = with_replica(
        &primary,
        &replica,
        &[
            "activity",
            "create",
            "--handle",
            "andrewbrown",
            "--message",
            "after the pause",
            "--ttl",
            "1-day",
        ],
    );
    created.success();
    let token = write_token(&created);

    let eventual = with_replica(&primary, &replica, &["feed"]);
    eventual.success();
    eventual.stderr_has("read from a replica");
    assert!(
        !eventual.stdout.contains("after the pause"),
        "an eventual read while replay is paused saw the write: {}",
        eventual.stdout
    );

    let fresh = with_replica(&primary, &replica, &["feed", "--after-token", &token]);
    fresh.success();
    fresh.stderr_has("read from the primary");
    fresh.stdout_has("after the pause");

    with_replica(&primary, &replica, &["feed", "--primary"])
        .success()
        .stderr_has("read from the primary")
        .stdout_has("after the pause");

    // Replay resumed: the token is served by the replica again.
    pair.resume_replay(DB);
    assert!(pair.caught_up(Duration::from_secs(30)), "no catch-up");
    let back = with_replica(&primary, &replica, &["feed", "--after-token", &token]);
    back.success();
    back.stderr_has("read from a replica");
    back.stdout_has("after the pause");

    // A token that is not one is a usage error.
    let bad = with_replica(
        &primary,
        &replica,
        &["feed", "--after-token", "not-a-token"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn a_replica_of_another_cluster_is_listed_out_with_the_reason_and_tokens_read_the_primary() {
    let ours = StreamingPair::start();
    let theirs = StreamingPair::start();
    for pair in [&ours, &theirs] {
        cruddur_db::prepare(&pair.primary_url(DB)).expect("prepare the primary");
        assert!(pair.caught_up(Duration::from_secs(30)), "no catch-up");
    }
    let primary = ours.primary_url(DB).expose().to_owned();
    let foreign = theirs.standby_url(DB).expose().to_owned();

    let status = with_replica(&primary, &foreign, &["status"]);
    status.success();
    status
        .stdout_has("replica 1")
        .stdout_has("another cluster")
        .stdout_has("system identifier");
    let json = with_replica(&primary, &foreign, &["status", "--json"]);
    json.success();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(value["replicas"][0]["state"], "another cluster", "{value}");

    let created = with_replica(
        &primary,
        &foreign,
        &[
            "activity",
            "create",
            "--handle",
            "andrewbrown",
            "--message",
            "only on our primary",
            "--ttl",
            "1-day",
        ],
    );
    created.success();
    let token = write_token(&created);
    for args in [&["feed"][..], &["feed", "--after-token", &token]] {
        let read = with_replica(&primary, &foreign, args);
        read.success();
        read.stderr_has("read from the primary");
        read.stdout_has("only on our primary");
    }
    // A token of the other cluster, and the spellings of before (a bare
    // position) or with another timeline, are not served by a replica.
    let their_token = run_cmd(
        cli(),
        &[
            "--database-url",
            theirs.primary_url(DB).expose(),
            "activity",
            "create",
            "--handle",
            "andrewbrown",
            "--message",
            "theirs",
            "--ttl",
            "1-day",
        ],
    );
    their_token.success();
    let their_token = write_token(&their_token);
    let ours_replica = ours.standby_url(DB).expose().to_owned();
    let read = with_replica(
        &primary,
        &ours_replica,
        &["feed", "--after-token", &their_token],
    );
    read.success();
    read.stderr_has("read from the primary");
    let bare = token.split('.').next().expect("a position").to_owned();
    for bad in [bare.as_str(), &format!("{token}.1"), &format!("{bare}.0.1")] {
        let refused = with_replica(&primary, &ours_replica, &["feed", "--after-token", bad]);
        assert_eq!(refused.code, 2, "{bad}: {}", refused.stderr);
    }
}
