//! The service binary through network and disk faults of its database, on
//! private clusters of the tests' own: a partition (the server in a
//! network namespace whose traffic is dropped silently, then let through
//! again) and a full disk. Both need root (see
//! [`cruddur_db_test_support::Privileged`]).
//!
//! Each prints its figures (`fault figures: …`), which the README's
//! "Network and disk faults" table quotes:
//! `cargo test -p cruddur-db-service --test faults -- --nocapture`.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Answer, Running, get, try_post_json};
use cruddur_db::{DatabaseUrl, establish, prepare};
use cruddur_db_test_support::{
    DiskFullCluster, NetnsCluster, Privileged, eventually, lock_waiters,
};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

const HOME: &str = "/api/activities/home";
const POSTS: &str = "/api/activities";

/// The dead-network bound the service's URL sets (milliseconds); the
/// library derives its keepalives from it.
const TCP_USER_TIMEOUT_MS: u64 = 3000;
/// libpq's connect timeout in the URL (seconds).
const CONNECT_TIMEOUT_S: u64 = 2;
/// The pool's checkout timeout (the library's default, 5 s).
const CHECKOUT: Duration = cruddur_db::config::DEFAULT_CHECKOUT_TIMEOUT;

/// The bound on any answer while the database is cut off: the dead-network
/// bound, a checkout, a connect attempt, and generous slack for a loaded
/// machine. A bound on "never", not a timing measurement.
fn bound() -> Duration {
    Duration::from_millis(TCP_USER_TIMEOUT_MS)
        + CHECKOUT
        + Duration::from_secs(CONNECT_TIMEOUT_S)
        + Duration::from_secs(10)
}

/// What a client retrying with an `Idempotency-Key` saw.
#[derive(Default)]
struct Writer {
    /// Key -> uuid of the activity the 200 returned.
    acked: Mutex<HashMap<String, String>>,
    /// When the first 503 or transport failure came.
    first_failure: Mutex<Option<Instant>>,
    /// When each 200 came.
    successes: Mutex<Vec<Instant>>,
    /// Statuses and transport errors other than 200, in order.
    failures: Mutex<Vec<String>>,
}

impl Writer {
    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Posts with keys `w-0`, `w-1`, … until `stop`; retries each key
    /// (after a 503 or a transport failure) until it gets its 200. Any
    /// other status fails the test.
    fn run(&self, base: &str, stop: &AtomicBool) {
        let url = format!("{base}{POSTS}");
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let key = format!("w-{i}");
            let body = format!(r#"{{"message": "write {key}", "ttl": "1-hour"}}"#);
            loop {
                let answer = try_post_json(&url, &[("Idempotency-Key", &key)], &body);
                match answer {
                    Ok(Answer {
                        status: 200, body, ..
                    }) => {
                        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let uuid = created["uuid"].as_str().unwrap().to_owned();
                        self.acked.lock().unwrap().insert(key, uuid);
                        self.successes.lock().unwrap().push(Instant::now());
                        break;
                    }
                    Ok(Answer { status: 503, .. }) | Err(_) => {
                        self.first_failure
                            .lock()
                            .unwrap()
                            .get_or_insert_with(Instant::now);
                        self.failures.lock().unwrap().push(match answer {
                            Ok(a) => format!("503 {}", a.body),
                            Err(e) => e,
                        });
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(other) => panic!("{key}: unexpected {} {}", other.status, other.body),
                }
            }
        }
    }

    /// The first 200 after `at`.
    fn first_success_after(&self, at: Instant) -> Option<Instant> {
        self.successes
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|&t| t > at)
    }
}

/// Sets the flag when dropped: a failed assertion in a scope must stop
/// the writer, or the scope would wait for it forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(QueryableByName)]
struct KeyCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    message: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Uuids {
    #[diesel(sql_type = diesel::sql_types::Text)]
    uuid: String,
}

/// Checks what the writer was told against the database: every
/// acknowledged key has exactly one activity, with the uuid the 200 gave;
/// no key has two. Returns (acknowledged writes lost, duplicates).
fn audit(admin_url: &DatabaseUrl, writer: &Writer) -> (usize, usize) {
    let mut conn = establish(admin_url).unwrap();
    let counts: HashMap<String, i64> = diesel::sql_query(
        "SELECT message, count(*) AS n FROM activities WHERE message LIKE 'write w-%' GROUP BY message",
    )
    .load::<KeyCount>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|c| (c.message, c.n))
    .collect();
    let stored: std::collections::HashSet<String> =
        diesel::sql_query("SELECT uuid::text AS uuid FROM activities")
            .load::<Uuids>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|u| u.uuid)
            .collect();
    let acked = writer.acked.lock().unwrap();
    let lost = acked.values().filter(|u| !stored.contains(*u)).count();
    let duplicates = counts.values().map(|&n| (n - 1).max(0) as usize).sum();
    for key in acked.keys() {
        assert_eq!(
            counts.get(&format!("write {key}")).copied(),
            Some(1),
            "{key}: acknowledged, so exactly one activity"
        );
    }
    (lost, duplicates)
}

/// Sends `GET` and `POST` (with a fresh key) and returns each answer and
/// how long it took.
fn read_and_write(base: &str, key: &str) -> [(Duration, Answer); 2] {
    std::thread::scope(|s| {
        let read = s.spawn(|| {
            let at = Instant::now();
            let answer = get(&format!("{base}{HOME}"), &[]);
            (at.elapsed(), answer)
        });
        let write = s.spawn(|| {
            let at = Instant::now();
            let answer = try_post_json(
                &format!("{base}{POSTS}"),
                &[("Idempotency-Key", key)],
                &format!(r#"{{"message": "probe {key}", "ttl": "1-hour"}}"#),
            )
            .expect("the service answers");
            (at.elapsed(), answer)
        });
        [read.join().unwrap(), write.join().unwrap()]
    })
}

/// A 503 that says it can be retried, within the bound.
fn assert_retryable_503(what: &str, (took, answer): &(Duration, Answer)) {
    assert_eq!(answer.status, 503, "{what}: {}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("1"), "{what}");
    assert!(
        *took < bound(),
        "{what} answered after {took:?}, over {:?}",
        bound()
    );
}

#[test]
fn a_partition_fails_requests_within_the_bound_and_the_pool_recovers_after_it_heals() {
    let test = "a_partition_fails_requests_within_the_bound_and_the_pool_recovers_after_it_heals";
    let Some(cluster) = Privileged::or_skip(test, NetnsCluster::start()) else {
        return;
    };
    // Set-up and checks go over the unix socket, which no partition cuts.
    let admin_url = cluster.socket_url_for("cruddur");
    prepare(&admin_url).expect("prepare the database");
    let url = cluster
        .url_for("cruddur")
        .with_param("tcp_user_timeout", &TCP_USER_TIMEOUT_MS.to_string())
        .with_param("connect_timeout", &CONNECT_TIMEOUT_S.to_string());
    let service = Running::start(&[("DATABASE_URL", url.expose())]);
    let base = service.base.clone();

    let writer = Writer::default();
    let stop = AtomicBool::new(false);
    let (in_flight, while_cut, healed, cut_at) = std::thread::scope(|s| {
        s.spawn(|| writer.run(&base, &stop));
        let _stop = StopOnDrop(&stop);
        assert!(
            eventually(Duration::from_secs(30), || writer.acked() >= 20),
            "the writer never got going"
        );

        // A read and a write the server holds behind a table lock (taken
        // over the socket): in flight, their queries acknowledged, when
        // the network goes silent. The writer's next post waits there too.
        let mut locker = establish(&admin_url).unwrap();
        locker
            .batch_execute("BEGIN; LOCK TABLE activities IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        let in_flight = s.spawn(|| read_and_write(&base, "in-flight"));
        let mut watcher = establish(&admin_url).unwrap();
        assert!(
            eventually(Duration::from_secs(30), || lock_waiters(&mut watcher) >= 3),
            "the read and the writes never waited on the lock"
        );
        assert!(
            eventually_acked(&cluster),
            "the queries in flight were never acknowledged"
        );
        let cut_at = Instant::now();
        cluster.partition();
        let in_flight = in_flight.join().unwrap();
        locker.batch_execute("ROLLBACK").unwrap();

        // While cut off: new requests fail fast, reads and writes.
        let while_cut = read_and_write(&base, "while-cut");

        cluster.heal();
        let healed = Instant::now();
        let before = writer.acked();
        assert!(
            eventually(Duration::from_secs(60), || writer.acked() >= before + 20),
            "the writer did not get writes through again after the heal"
        );
        let home = get(&format!("{base}{HOME}"), &[]);
        assert_eq!(home.status, 200, "the feed after the heal: {}", home.body);
        (in_flight, while_cut, healed, cut_at)
    });

    for (what, answer) in ["read in flight", "write in flight"].iter().zip(&in_flight) {
        assert_retryable_503(what, answer);
    }
    for (what, answer) in ["read while cut off", "write while cut off"]
        .iter()
        .zip(&while_cut)
    {
        assert_retryable_503(what, answer);
    }
    let (lost, duplicates) = audit(&admin_url, &writer);
    assert_eq!(lost, 0, "acknowledged writes lost");
    assert_eq!(duplicates, 0, "duplicate activities under retries");
    let first_failure = writer
        .first_failure
        .lock()
        .unwrap()
        .expect("the writer saw the partition");
    let back = writer
        .first_success_after(healed)
        .expect("a write succeeded after the heal");
    let failures = writer.failures.lock().unwrap();
    eprintln!(
        "fault figures: partition: in flight answered 503 after {:?} (read) and {:?} (write); \
         while cut off {:?} (read) and {:?} (write); writer downtime (first failed write to first \
         success after the heal) {:?}, partition held {:?}, first success {:?} after the heal; \
         acknowledged {}, lost {lost}, duplicates {duplicates}, failed attempts {}; first: {:?}",
        in_flight[0].0,
        in_flight[1].0,
        while_cut[0].0,
        while_cut[1].0,
        back - first_failure,
        healed - cut_at,
        back - healed,
        writer.acked(),
        failures.len(),
        failures.first(),
    );
}

/// The disk under the database fills while a client writes, then space is
/// freed. Only the tablespace's volume fills (a tmpfs of 64 MiB); WAL is
/// on the machine's disk: with WAL on the full volume PostgreSQL PANICs
/// and restarts, which is a server crash (the restart tests), not the
/// fault that fails only what needs new space while everything else
/// carries on (see [`DiskFullCluster`]).
#[test]
fn a_full_disk_fails_writes_clearly_keeps_reads_and_recovers_once_space_is_freed() {
    let test = "a_full_disk_fails_writes_clearly_keeps_reads_and_recovers_once_space_is_freed";
    let Some(cluster) = Privileged::or_skip(test, DiskFullCluster::start(64)) else {
        return;
    };
    let url = cluster.url_for("cruddur");
    prepare(&url).expect("prepare the database");
    let service = Running::start(&[("DATABASE_URL", url.expose())]);
    let base = service.base.clone();
    let disk_full = |answer: &str| answer.contains("disk is full");

    let writer = Writer::default();
    let stop = AtomicBool::new(false);
    let (filled, full_at, freed, while_full) = std::thread::scope(|s| {
        s.spawn(|| writer.run(&base, &stop));
        let _stop = StopOnDrop(&stop);
        assert!(
            eventually(Duration::from_secs(30), || writer.acked() >= 20),
            "the writer never got going"
        );
        let filled = cluster.fill();
        let full_at = Instant::now();
        // The pages the table and its indexes have take rows until they
        // are full; the first write that needs a new page fails.
        assert!(
            eventually(Duration::from_secs(60), || writer
                .failures
                .lock()
                .unwrap()
                .iter()
                .any(|f| disk_full(f))),
            "no write failed on the full disk"
        );
        let feed = get(&format!("{base}{HOME}"), &[]);
        assert_eq!(feed.status, 200, "the feed on a full disk: {}", feed.body);
        let write = try_post_json(
            &format!("{base}{POSTS}"),
            &[("Idempotency-Key", "while-full")],
            r#"{"message": "on a full disk", "ttl": "1-hour"}"#,
        )
        .expect("the service answers");
        cluster.free();
        let freed = Instant::now();
        let before = writer.acked();
        assert!(
            eventually(Duration::from_secs(60), || writer.acked() >= before + 20),
            "the writer did not get writes through again once space was freed"
        );
        (filled, full_at, freed, (feed, write))
    });

    let (feed, write) = while_full;
    assert_eq!(write.status, 503, "a write on a full disk: {}", write.body);
    assert!(disk_full(&write.body), "{}", write.body);
    assert!(write.body.contains("nothing was written"), "{}", write.body);
    assert_eq!(write.header("retry-after"), Some("1"));
    let items = feed.json();
    assert!(
        items.as_array().is_some_and(|a| !a.is_empty()),
        "the feed still serves what was written: {}",
        feed.body
    );
    let (lost, duplicates) = audit(&url, &writer);
    assert_eq!(lost, 0, "acknowledged writes lost");
    assert_eq!(duplicates, 0, "duplicate activities under retries");
    let first_failure = writer
        .first_failure
        .lock()
        .unwrap()
        .expect("the writer saw the full disk");
    let back = writer
        .first_success_after(freed)
        .expect("a write succeeded once space was freed");
    let failures = writer.failures.lock().unwrap();
    eprintln!(
        "fault figures: disk full: filler {} MiB; first failed write {:?} after the fill; writer \
         downtime (first failed write to first success after space was freed) {:?}, of which \
         {:?} after the free; acknowledged {}, lost {lost}, duplicates {duplicates}, failed \
         attempts {}; first: {:?}",
        filled >> 20,
        first_failure - full_at,
        back - first_failure,
        back - freed,
        writer.acked(),
        failures.len(),
        failures.first(),
    );
}

/// Waits (up to 10 s) until the server has acknowledged everything the
/// service sent it, so that the statements in flight wait in `recv`.
fn eventually_acked(cluster: &NetnsCluster) -> bool {
    eventually(Duration::from_secs(10), || cluster.all_sent_acknowledged())
}
