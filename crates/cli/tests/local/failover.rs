//! `local start --replicas N --synchronous`, `local failover` and writes
//! through the library over the endpoint of `local url` while it runs:
//! with a synchronous standby no acknowledged write is lost; with an
//! asynchronous one the loss is measured; writes in the gap fail fast and
//! say they can be retried; the old primary comes back as a standby.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cruddur_db::repo::activities::ActivityDraft;
use cruddur_db::{Config, DatabaseUrl, Error, IdempotencyKey, Repository, establish};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;

use super::common;
use super::replicas::{ScratchProject, in_recovery, row_arrives};

/// How long a checkout waits for a connection in these tests: 2 s. In the
/// gap every connection attempt fails at once (nothing listens on the old
/// primary's socket, the standbys refuse `read-write`), so a write fails
/// after this, not later.
const CHECKOUT: Duration = Duration::from_secs(2);

/// A repository over the endpoint `local url` prints, with a migrated and
/// seeded `cruddur` database.
fn repository(endpoint: &DatabaseUrl, pool_size: u32) -> Repository {
    let mut config = Config::new(endpoint.clone());
    config.pool_size = pool_size;
    config.checkout_timeout = CHECKOUT;
    let repo = Repository::connect(&config).unwrap();
    repo.run_migrations().unwrap();
    repo.seed_reference().unwrap();
    repo
}

/// One write that failed.
#[derive(Debug)]
struct Failure {
    at: Instant,
    took: Duration,
    unknown: bool,
    retryable: bool,
    message: String,
}

/// One write that succeeded.
#[derive(Debug)]
struct Acknowledged {
    uuid: uuid::Uuid,
    began: Instant,
    ended: Instant,
}

/// How a writer treats a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Records it and goes on with the next write.
    Once,
    /// Retries it with the same idempotency key
    /// (`Repository::create_activity_once`) while it is retryable or of
    /// unknown outcome, up to [`MAX_ATTEMPTS`] attempts,
    /// [`RETRY_PAUSE`] apart.
    RetryingWithKeys,
}

/// Attempts per write of a retrying writer before it gives up (the test
/// fails on a write given up).
const MAX_ATTEMPTS: usize = 30;
/// A retrying writer's pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What the writers saw across a failover.
#[derive(Debug, Default)]
struct Writes {
    acknowledged: Vec<Acknowledged>,
    failures: Vec<Failure>,
    /// Every write's message (one per key for a retrying writer).
    messages: Vec<String>,
    /// Writes a retrying writer gave up, with their last error.
    given_up: Vec<String>,
    /// Acknowledged writes that an earlier attempt with their key made.
    replayed: usize,
}

impl Writes {
    /// From the end of the first failed write to the end of the first
    /// one that began after it and succeeded (zero when none failed).
    fn downtime(&self) -> Duration {
        let Some(first_failure) = self.failures.iter().map(|f| f.at + f.took).min() else {
            return Duration::ZERO;
        };
        self.acknowledged
            .iter()
            .filter(|a| a.began >= first_failure)
            .map(|a| a.ended)
            .min()
            .map_or(Duration::MAX, |at| at - first_failure)
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, query: &str) -> i64 {
    diesel::sql_query(query)
        .get_result::<Count>(conn)
        .map_or(-1, |c| c.n)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    uuid: uuid::Uuid,
}

/// `writers` threads create activities through `repo` while `local
/// failover` runs (once each has written a few), and until each has
/// written a few more after it. Returns what they saw.
///
/// Each standby of `cut` is cut off the primary first (its
/// `primary_conninfo` emptied), as a standby that fell behind: what the
/// primary acknowledges from then on is on no standby, unless the primary
/// waits for one. The failover waits until the writers are all waiting
/// for a standby, or 20 more writes were acknowledged.
fn write_across_a_failover(
    project: &ScratchProject,
    repo: &Repository,
    writers: usize,
    cut: &[DatabaseUrl],
    mode: Writer,
) -> Writes {
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new((0..writers).map(|_| AtomicUsize::new(0)).collect());
    let threads: Vec<_> = (0..writers)
        .map(|t| {
            let (repo, stop, counts) = (repo.clone(), Arc::clone(&stop), Arc::clone(&counts));
            std::thread::spawn(move || {
                let mut seen = Writes::default();
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    i += 1;
                    let message = format!("writer {t} write {i}");
                    let key = format!("writer-{t}-write-{i}");
                    let draft = ActivityDraft::parse("bayko", &message, "1-day").unwrap();
                    seen.messages.push(message.clone());
                    for attempt in 1.. {
                        let began = Instant::now();
                        let written = match mode {
                            Writer::Once => repo
                                .create_activity(&draft)
                                .map(|(activity, _)| (activity.uuid, false)),
                            Writer::RetryingWithKeys => repo
                                .create_activity_once(&draft, IdempotencyKey::parse(&key).unwrap())
                                .map(|(created, _)| (created.activity.uuid, created.replayed)),
                        };
                        let e = match written {
                            Ok((uuid, replayed)) => {
                                seen.acknowledged.push(Acknowledged {
                                    uuid,
                                    began,
                                    ended: Instant::now(),
                                });
                                seen.replayed += usize::from(replayed);
                                counts[t].fetch_add(1, Ordering::AcqRel);
                                break;
                            }
                            Err(e) => e,
                        };
                        let unknown = matches!(e, Error::OutcomeUnknown { .. });
                        let retryable = e.is_retryable();
                        seen.failures.push(Failure {
                            at: began,
                            took: began.elapsed(),
                            unknown,
                            retryable,
                            message: e.to_string(),
                        });
                        if mode == Writer::Once {
                            break;
                        }
                        if !(retryable || unknown) || attempt >= MAX_ATTEMPTS {
                            seen.given_up
                                .push(format!("{key} after {attempt} attempts: {e}"));
                            break;
                        }
                        std::thread::sleep(RETRY_PAUSE);
                    }
                }
                seen
            })
        })
        .collect();
    let each_has = |n: usize| counts.iter().all(|c| c.load(Ordering::Acquire) >= n);
    assert!(
        common::eventually(Duration::from_secs(30), || each_has(5)),
        "every writer writes before the failover"
    );
    if !cut.is_empty() {
        let primary = project.url(&["local", "url"]);
        let mut primary = establish(&primary).unwrap();
        for standby in cut {
            let mut conn = establish(standby).unwrap();
            conn.batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
                .unwrap();
            conn.batch_execute("SELECT pg_reload_conf()").unwrap();
        }
        assert!(
            common::eventually(Duration::from_secs(30), || count(
                &mut primary,
                "SELECT count(*) AS n FROM pg_stat_replication"
            ) == 0),
            "the standbys are cut off"
        );
        let total = |counts: &[AtomicUsize]| -> usize {
            counts.iter().map(|c| c.load(Ordering::Acquire)).sum()
        };
        let at_cut = total(&counts);
        assert!(
            common::eventually(Duration::from_secs(30), || {
                let waiting = count(
                    &mut primary,
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
                );
                waiting == writers as i64 || total(&counts) >= at_cut + 20
            }),
            "the writers wait for a standby, or go on without one"
        );
    }
    let before: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
    project
        .run(&["local", "failover"])
        .success()
        .stderr_has("promoted replica ");
    assert!(
        common::eventually(Duration::from_secs(60), || {
            counts
                .iter()
                .zip(&before)
                .all(|(c, b)| c.load(Ordering::Acquire) >= b + 5)
        }),
        "every writer writes again after the failover"
    );
    stop.store(true, Ordering::Release);
    let mut all = Writes::default();
    for thread in threads {
        let seen = thread.join().unwrap();
        all.acknowledged.extend(seen.acknowledged);
        all.failures.extend(seen.failures);
        all.messages.extend(seen.messages);
        all.given_up.extend(seen.given_up);
        all.replayed += seen.replayed;
    }
    all
}

/// How many acknowledged writes the new primary (reached through the
/// endpoint) does not have.
fn lost(endpoint: &DatabaseUrl, writes: &Writes) -> usize {
    let mut conn = establish(endpoint).unwrap();
    assert!(
        !in_recovery(endpoint),
        "the endpoint reaches the new primary"
    );
    let present: HashSet<uuid::Uuid> = diesel::sql_query("SELECT uuid FROM activities")
        .load::<Row>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|r| r.uuid)
        .collect();
    writes
        .acknowledged
        .iter()
        .filter(|a| !present.contains(&a.uuid))
        .count()
}

/// Every failed write failed fast and said what to do: retry, or check
/// first when its outcome is unknown.
fn assert_failures_are_fast_and_retryable(writes: &Writes) {
    for failure in &writes.failures {
        assert!(
            failure.retryable || failure.unknown,
            "a failed write must be retryable or of unknown outcome: {failure:?}"
        );
        // The checkout's bound and one round of connection attempts; a
        // hang would be far beyond.
        assert!(
            failure.took < CHECKOUT + Duration::from_secs(10),
            "a write in the gap must fail fast: {failure:?}"
        );
        let says = if failure.unknown {
            "check for it before retrying"
        } else {
            "can be retried"
        };
        assert!(failure.message.contains(says), "{failure:?}");
    }
}

fn report(kind: &str, writes: &Writes, lost: usize) {
    let unknown = writes.failures.iter().filter(|f| f.unknown).count();
    eprintln!(
        "failover ({kind}): {} writes acknowledged, {lost} of them lost; {} failed ({unknown} of unknown outcome); downtime (first failed write to the first one that succeeded after it) {:?}",
        writes.acknowledged.len(),
        writes.failures.len(),
        writes.downtime()
    );
}

#[test]
fn with_a_synchronous_standby_no_acknowledged_write_is_lost() {
    let project = ScratchProject::new();
    project
        .run(&["local", "start", "--replicas", "2", "--synchronous"])
        .success()
        .stderr_has("the standbys are synchronous");
    project
        .run(&["local", "status"])
        .success()
        .stdout_has("standbys:   synchronous")
        .stdout_has("replica 1: running")
        .stdout_has("quorum, streaming");
    let endpoint = project.url(&["local", "url"]);
    assert_eq!(endpoint.param("target_session_attrs"), Some("read-write"));
    let repo = repository(&endpoint, 4);

    // Both standbys fall behind before the primary dies: the primary waits
    // for them, so what it acknowledged is on both.
    let standbys = [1, 2].map(|k| project.url(&["local", "url", "--replica", &k.to_string()]));
    let writes = write_across_a_failover(&project, &repo, 4, &standbys, Writer::Once);
    let lost = lost(&endpoint, &writes);
    report("synchronous standby", &writes, lost);
    assert_eq!(
        lost, 0,
        "a synchronous standby holds every acknowledged write"
    );
    assert_failures_are_fast_and_retryable(&writes);
    assert_ne!(writes.downtime(), Duration::MAX, "writes succeed again");

    // The other replica follows the new primary (either may have been
    // promoted: the one that had received the most).
    let status = project.run(&["local", "status"]);
    status.success();
    let promoted = if status.stdout.contains("primary:    replica 1 (promoted") {
        1
    } else {
        2
    };
    let other = 3 - promoted;
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("replica {other}:")))
        .unwrap_or_else(|| panic!("{}", status.stdout))
        .to_owned();
    assert!(line.contains("quorum, streaming"), "{line}");
    establish(&endpoint)
        .unwrap()
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (1)")
        .unwrap();
    let follower = project.url(&["local", "url", "--replica", &other.to_string()]);
    assert!(
        row_arrives(&follower, 1),
        "replica {other} streams from the new primary"
    );
}

#[derive(QueryableByName)]
struct MessageCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    message: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How many activities the new primary (reached through the endpoint)
/// holds for each message of `writes`.
fn activities_per_write(endpoint: &DatabaseUrl, writes: &Writes) -> Vec<(String, i64)> {
    let mut conn = establish(endpoint).unwrap();
    let rows: std::collections::HashMap<String, i64> =
        diesel::sql_query("SELECT message, count(*) AS n FROM activities GROUP BY message")
            .load::<MessageCount>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|r| (r.message, r.n))
            .collect();
    writes
        .messages
        .iter()
        .map(|m| (m.clone(), rows.get(m).copied().unwrap_or(0)))
        .collect()
}

#[test]
fn writers_retrying_with_idempotency_keys_make_each_write_exactly_once() {
    let project = ScratchProject::new();
    project
        .run(&["local", "start", "--replicas", "2", "--synchronous"])
        .success();
    let endpoint = project.url(&["local", "url"]);
    let repo = repository(&endpoint, 4);
    // As in the first test: the writes waiting for a standby at the kill
    // are on no standby, so each retry must make its write anew.
    let standbys = [1, 2].map(|k| project.url(&["local", "url", "--replica", &k.to_string()]));
    let writes = write_across_a_failover(&project, &repo, 4, &standbys, Writer::RetryingWithKeys);
    let lost = lost(&endpoint, &writes);
    report(
        "synchronous standby, writers retrying with keys",
        &writes,
        lost,
    );
    let per_write = activities_per_write(&endpoint, &writes);
    let twice: Vec<_> = per_write.iter().filter(|(_, n)| *n > 1).collect();
    let missing: Vec<_> = per_write.iter().filter(|(_, n)| *n == 0).collect();
    eprintln!(
        "{} writes (keys), {} of them made twice, {} missing; {} retries answered with an earlier attempt's post",
        per_write.len(),
        twice.len(),
        missing.len(),
        writes.replayed
    );
    assert!(writes.given_up.is_empty(), "{:?}", writes.given_up);
    assert_eq!(
        lost, 0,
        "a synchronous standby holds every acknowledged write"
    );
    assert!(twice.is_empty(), "one activity per key: {twice:?}");
    assert!(missing.is_empty(), "every key's write is made: {missing:?}");
    assert!(
        writes.failures.iter().any(|f| f.unknown),
        "the writes in flight at the kill are of unknown outcome: {:?}",
        writes.failures
    );
    assert_failures_are_fast_and_retryable(&writes);
}

#[test]
fn with_an_asynchronous_standby_the_loss_is_measured() {
    let project = ScratchProject::new();
    project
        .run(&["local", "start", "--replicas", "1"])
        .success();
    project
        .run(&["local", "status"])
        .success()
        .stdout_has("standbys:   asynchronous")
        .stdout_has("async, streaming");
    let endpoint = project.url(&["local", "url"]);
    let repo = repository(&endpoint, 4);
    let writes = write_across_a_failover(&project, &repo, 4, &[], Writer::Once);
    let lost = lost(&endpoint, &writes);
    report("asynchronous standby, streaming", &writes, lost);
    assert!(lost <= writes.acknowledged.len());
    assert_failures_are_fast_and_retryable(&writes);
}

#[test]
fn writes_in_the_gap_fail_fast_and_the_old_primary_rejoins_as_a_standby() {
    let project = ScratchProject::new();
    project
        .run(&["local", "start", "--replicas", "1", "--synchronous"])
        .success();
    let endpoint = project.url(&["local", "url"]);
    let repo = repository(&endpoint, 2);
    let draft = ActivityDraft::parse("bayko", "in the gap", "1-day").unwrap();
    let (_, before) = repo.create_activity(&draft).unwrap();

    // The primary dies; nothing is promoted yet.
    let primary = project.cluster(None);
    let pid = primary.pid().unwrap();
    for p in std::iter::once(pid).chain(primary.processes()) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    assert!(common::eventually(Duration::from_secs(10), || primary
        .processes()
        .is_empty()));
    for attempt in 0..3 {
        let began = Instant::now();
        let err = repo.create_activity(&draft).unwrap_err();
        let took = began.elapsed();
        eprintln!("write {attempt} in the gap failed after {took:?}: {err}");
        assert!(err.is_retryable(), "{err:?}");
        assert!(err.to_string().contains("can be retried"), "{err}");
        assert!(took < CHECKOUT + Duration::from_secs(10), "{took:?}: {err}");
        if attempt > 0 {
            // Once the dead connections are gone, it is the checkout that
            // fails, saying so.
            assert!(matches!(err, Error::PoolTimeout { .. }), "{err:?}");
        }
    }

    project
        .run(&["local", "failover"])
        .success()
        .stderr_has("promoted replica 1");
    let (_, after) = repo
        .create_activity(&draft)
        .expect("new checkouts reach the new primary");
    // The token names the new primary's timeline at once (a token of the
    // old one is read on the primary, never on a replica it may not hold).
    assert_eq!(
        after.identity().timeline,
        before.identity().timeline + 1,
        "{before} then {after}"
    );
    assert_eq!(
        after.identity().system_identifier,
        before.identity().system_identifier
    );

    // The next start rewinds the old primary and runs it as a standby.
    project
        .run(&["local", "start"])
        .success()
        .stderr_has("the primary is replica 1 since a failover");
    let old = primary.url().unwrap();
    assert!(in_recovery(&old), "the old primary is a standby now");
    project
        .run(&["local", "status"])
        .success()
        .stdout_has("original:   running")
        .stdout_has("standby: quorum, streaming");
    establish(&endpoint)
        .unwrap()
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (3)")
        .unwrap();
    assert!(row_arrives(&old, 3), "the old primary follows the new one");
    // With its standby back, the new primary waits for it again.
    repo.create_activity(&draft).unwrap();
    project.run(&["local", "stop"]).success();
    assert!(primary.processes().is_empty());
}

#[test]
fn a_writer_reading_with_its_token_sees_its_write_across_a_failover() {
    let project = ScratchProject::new();
    project
        .run(&["local", "start", "--replicas", "2", "--synchronous"])
        .success();
    let endpoint = project.url(&["local", "url"]);
    repository(&endpoint, 2);
    let mut config = Config::new(endpoint.clone());
    config.pool_size = 4;
    config.checkout_timeout = CHECKOUT;
    config.replica_urls = [1, 2]
        .map(|k| project.url(&["local", "url", "--replica", &k.to_string()]))
        .into();
    let repo = Repository::connect(&config).unwrap();
    assert!(repo.router().wait_for_probes(Duration::from_secs(10)));

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (repo, stop, done) = (repo.clone(), Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let (mut read, mut stale, mut timelines) = (0, 0, HashSet::new());
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    i += 1;
                    let message = format!("reader {t} write {i}");
                    let draft = ActivityDraft::parse("bayko", &message, "1-day").unwrap();
                    let Ok((activity, token)) = repo.create_activity(&draft) else {
                        continue;
                    };
                    timelines.insert(token.identity().timeline);
                    match repo.read(cruddur_db::Consistency::AtLeast(token), |conn| {
                        cruddur_db::repo::activities::find_activity(conn, activity.uuid)
                    }) {
                        Ok(_) => read += 1,
                        Err(Error::ActivityNotFound { .. }) => stale += 1,
                        // The read's server went away: not a stale read.
                        Err(_) => {}
                    }
                    done.fetch_add(1, Ordering::AcqRel);
                }
                (read, stale, timelines)
            })
        })
        .collect();
    let done_now = || done.load(Ordering::Acquire);
    assert!(common::eventually(Duration::from_secs(30), || done_now() >= 20));
    let before = done_now();
    project.run(&["local", "failover"]).success();
    assert!(common::eventually(Duration::from_secs(60), || done_now() >= before + 40));
    stop.store(true, Ordering::Release);
    let (mut read, mut stale, mut timelines) = (0, 0, HashSet::new());
    for writer in writers {
        let (r, s, t) = writer.join().unwrap();
        read += r;
        stale += s;
        timelines.extend(t);
    }
    let counters = repo.counters();
    eprintln!(
        "reads of one's own write across a failover: {read} saw it, {stale} did not; tokens of timelines {timelines:?}; {counters:?}"
    );
    assert_eq!(stale, 0, "a token read never misses its write");
    assert_eq!(timelines.len(), 2, "writes on both sides of the failover");
}
