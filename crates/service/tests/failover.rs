//! The service binary over the endpoint `cruddur-db local url` prints
//! (`LocalCluster::endpoint_url`), across `local failover` with a
//! synchronous standby, posted to by HTTP clients that retry every `503`
//! that says so (`Retry-After`) and every transport error, with the same
//! `Idempotency-Key`: every post is made exactly once, and none that was
//! answered is lost. The same clients without keys are measured.
//!
//! The failover comes at the worst moment for a client: each writer's
//! post has been committed on the primary and flushed by the standby, but
//! the primary dies before it answers (its backends are stopped while
//! they wait for the standby's acknowledgement, then the standby is let
//! through). The promoted standby holds those posts, and the service can
//! only answer that their outcome is unknown.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Running;
use cruddur_db::{Config, DatabaseUrl, Repository, establish};
use cruddur_db_local::LocalCluster;
use cruddur_db_test_support::{eventually, settings};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Text};
use ureq::http::Request;

/// Writers posting at once: one request each in flight.
const WRITERS: usize = 3;
/// Attempts per post before a writer gives up on it (a bound on "retries
/// until it succeeds"; the test fails on a post given up).
const MAX_ATTEMPTS: usize = 20;
/// A writer's pause before retrying a transport error (a `503` says how
/// long in `Retry-After`).
const TRANSPORT_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long one request may take before the client gives up on it: a
/// bound on a hang, not a measurement.
const REQUEST_BOUND: Duration = Duration::from_secs(30);

/// A project cluster with one synchronous standby in a scratch directory,
/// stopped on drop so that no server outlives a failed test.
struct Project {
    cluster: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Project {
    /// The primary, the `cruddur` database, and replica 1 as a synchronous
    /// standby: `local start --replicas 1 --synchronous`.
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // As root the server runs as `postgres`, who must reach the directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the scratch directory");
        let cluster = LocalCluster::at(dir.path().join("pg"), settings()).expect("cluster");
        let project = Self { cluster, _dir: dir };
        project.cluster.start().expect("start the primary");
        cruddur_db::admin::create_database(&project.endpoint()).expect("create cruddur");
        project
            .cluster
            .start_replicas_with(1, true)
            .expect("start a synchronous standby");
        assert!(project.cluster.is_synchronous());
        project
    }

    /// What `local url` prints: every server, the primary first, with
    /// `target_session_attrs=read-write`.
    fn endpoint(&self) -> DatabaseUrl {
        self.cluster.endpoint_url().expect("endpoint URL")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Err(e) = self.cluster.stop() {
            eprintln!("stopping {}: {e}", self.cluster.dir().display());
        }
    }
}

/// Processes stopped with `SIGSTOP`, continued on drop unless disarmed
/// (once they are known to be gone), so that a failed test leaves no
/// frozen server behind.
struct Frozen(Vec<i32>);

impl Frozen {
    fn stop(pids: Vec<i32>) -> Self {
        let frozen = Self(pids);
        for &pid in &frozen.0 {
            assert!(signal(pid, libc::SIGSTOP), "SIGSTOP to {pid}");
        }
        frozen
    }

    /// Forgets the processes: they were killed.
    fn disarm(mut self) {
        self.0.clear();
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // Gone already is fine; a panic here could abort the test.
            let _ = signal(pid, libc::SIGCONT);
        }
    }
}

/// Sends `signal` to `pid`; whether it was delivered.
fn signal(pid: i32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) on a server process of the test's own cluster.
    #[expect(unsafe_code, reason = "stopping and continuing server processes")]
    let sent = unsafe { libc::kill(pid, signal) };
    sent == 0
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    b: bool,
}

#[derive(QueryableByName)]
struct Lsn {
    #[diesel(sql_type = Text)]
    lsn: String,
}

#[derive(QueryableByName)]
struct MessageCount {
    #[diesel(sql_type = Text)]
    message: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// What one attempt of a post got.
#[derive(Debug)]
enum Outcome {
    /// `200`: the crud's uuid, and whether it was a replay.
    Created { uuid: uuid::Uuid, replayed: bool },
    /// `503` with `Retry-After`: retried after it; `unknown` when the body
    /// says the write's outcome is unknown.
    Retry { after: Duration, unknown: bool },
    /// No response: the connection failed or broke.
    Transport(String),
    /// Anything else: not retried, and the test fails.
    Refused { status: u16, body: String },
}

#[derive(Debug)]
struct Attempt {
    began: Instant,
    ended: Instant,
    outcome: Outcome,
}

/// One post, with every attempt it took.
#[derive(Debug)]
struct Post {
    message: String,
    attempts: Vec<Attempt>,
}

impl Post {
    /// The crud that answered it, when one did.
    fn made(&self) -> Option<(uuid::Uuid, bool)> {
        self.attempts.iter().find_map(|a| match a.outcome {
            Outcome::Created { uuid, replayed } => Some((uuid, replayed)),
            _ => None,
        })
    }

    fn unknown(&self) -> bool {
        self.attempts
            .iter()
            .any(|a| matches!(a.outcome, Outcome::Retry { unknown: true, .. }))
    }
}

/// `POST /api/activities` once.
fn attempt(agent: &ureq::Agent, url: &str, key: Option<&str>, body: &str) -> Outcome {
    let mut request = Request::builder()
        .method("POST")
        .uri(url)
        .header("Content-Type", "application/json");
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let request = request.body(body.to_owned()).expect("request");
    let mut response = match agent.run(request) {
        Ok(response) => response,
        Err(e) => return Outcome::Transport(e.to_string()),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let text = match response.body_mut().read_to_string() {
        Ok(text) => text,
        Err(e) => return Outcome::Transport(format!("reading the body: {e}")),
    };
    match (status, retry_after) {
        (200, _) => {
            let json: serde_json::Value = serde_json::from_str(&text).expect("a JSON crud");
            let uuid = json["uuid"]
                .as_str()
                .and_then(|u| u.parse().ok())
                .unwrap_or_else(|| panic!("a crud with a uuid: {text}"));
            Outcome::Created { uuid, replayed }
        }
        (503, Some(seconds)) => Outcome::Retry {
            after: Duration::from_secs(seconds),
            unknown: text.contains("same Idempotency-Key"),
        },
        _ => Outcome::Refused { status, body: text },
    }
}

/// Makes one post, retrying what may be retried, with the same key.
fn post(agent: &ureq::Agent, url: &str, key: Option<&str>, message: String) -> Post {
    let body = serde_json::json!({ "message": message, "ttl": "1-day" }).to_string();
    let mut attempts = Vec::new();
    while attempts.len() < MAX_ATTEMPTS {
        let began = Instant::now();
        let outcome = attempt(agent, url, key, &body);
        let pause = match &outcome {
            Outcome::Retry { after, .. } => Some(*after),
            Outcome::Transport(_) => Some(TRANSPORT_RETRY_PAUSE),
            Outcome::Created { .. } | Outcome::Refused { .. } => None,
        };
        attempts.push(Attempt {
            began,
            ended: Instant::now(),
            outcome,
        });
        match pause {
            Some(pause) => std::thread::sleep(pause),
            None => break,
        }
    }
    Post { message, attempts }
}

/// What the writers saw, and what the new primary holds.
#[derive(Debug)]
struct Run {
    posts: Vec<Post>,
    /// From the kill to the promoted standby accepting writes.
    failover: Duration,
    /// Posts answered `200` that the new primary does not have.
    lost: usize,
    /// Rows beyond the first for one post's message.
    duplicates: usize,
    /// The messages of the posts made more than once.
    duplicated: Vec<String>,
}

impl Run {
    fn attempts(&self) -> impl Iterator<Item = &Attempt> {
        self.posts.iter().flat_map(|p| &p.attempts)
    }

    fn failed(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts()
            .filter(|a| !matches!(a.outcome, Outcome::Created { .. }))
    }

    /// From the end of the first failed attempt to the end of the first
    /// one that began after it and succeeded: what a client waits,
    /// `Retry-After` included.
    fn downtime(&self) -> Duration {
        let Some(first_failure) = self.failed().map(|a| a.ended).min() else {
            return Duration::ZERO;
        };
        self.attempts()
            .filter(|a| a.began >= first_failure && matches!(a.outcome, Outcome::Created { .. }))
            .map(|a| a.ended)
            .min()
            .map_or(Duration::MAX, |at| at - first_failure)
    }

    fn report(&self, kind: &str) {
        let count = |f: fn(&Outcome) -> bool| self.attempts().filter(|a| f(&a.outcome)).count();
        let answered = self.posts.iter().filter(|p| p.made().is_some()).count();
        let replayed = self
            .posts
            .iter()
            .filter(|p| p.made().is_some_and(|(_, r)| r))
            .count();
        eprintln!(
            "failover through the service ({kind}): {} posts, {answered} answered 200 ({replayed} of them replays), {} of those lost; \
             {} attempts failed ({} 503 outcome unknown, {} 503 nothing written, {} transport errors); \
             {} duplicate rows; downtime (first failed attempt to the first success after it, Retry-After included) {:?}; \
             failover (kill to promoted) {:?}",
            self.posts.len(),
            self.lost,
            self.failed().count(),
            count(|o| matches!(o, Outcome::Retry { unknown: true, .. })),
            count(|o| matches!(o, Outcome::Retry { unknown: false, .. })),
            count(|o| matches!(o, Outcome::Transport(_))),
            self.duplicates,
            self.downtime(),
            self.failover,
        );
        for attempt in self.attempts() {
            if let Outcome::Transport(error) = &attempt.outcome {
                eprintln!("transport error: {error}");
            }
        }
    }
}

/// Starts the cluster and the service over its endpoint, runs
/// [`WRITERS`] writers (with a key per post when `keyed`) across a
/// failover at the worst moment, and counts what the new primary holds.
fn post_across_a_failover(keyed: bool) -> Run {
    let project = Project::start();
    let endpoint = project.endpoint();
    assert_eq!(endpoint.param("target_session_attrs"), Some("read-write"));
    let repo = Repository::connect(&Config::new(endpoint.clone())).expect("connect");
    repo.run_migrations().expect("migrate");
    repo.seed_reference().expect("seed");
    drop(repo);
    let service = Running::start(&[("DATABASE_URL", endpoint.expose()), ("RUST_LOG", "warn")]);
    let url = format!("{}/api/activities", service.base);

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new((0..WRITERS).map(|_| AtomicUsize::new(0)).collect());
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (url, stop, counts) = (url.clone(), Arc::clone(&stop), Arc::clone(&counts));
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(REQUEST_BOUND))
                    .build()
                    .into();
                let mut posts = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    i += 1;
                    let key = format!("writer-{t}-post-{i}");
                    let message = format!("writer {t} post {i}");
                    let post = post(&agent, &url, keyed.then_some(key.as_str()), message);
                    if post.made().is_some() {
                        counts[t].fetch_add(1, Ordering::AcqRel);
                    } else {
                        // Given up: the test fails on it; stop here.
                        posts.push(post);
                        break;
                    }
                    posts.push(post);
                }
                posts
            })
        })
        .collect();
    let each_has = |n: &[usize]| {
        counts
            .iter()
            .zip(n)
            .all(|(c, n)| c.load(Ordering::Acquire) >= *n)
    };
    assert!(
        eventually(Duration::from_secs(30), || each_has(&[3; WRITERS])),
        "every writer posts before the failover"
    );

    // The standby stops taking WAL, so each writer's next commit waits for
    // it on the primary.
    let primary = project.cluster.primary_member().url().expect("primary URL");
    let standby = project.cluster.replica_url(1).expect("standby URL");
    let mut on_primary = establish(&primary).expect("connect to the primary");
    let mut on_standby = establish(&standby).expect("connect to the standby");
    let receiver = diesel::sql_query("SELECT pid FROM pg_stat_wal_receiver")
        .get_result::<Pid>(&mut on_standby)
        .expect("the standby's WAL receiver")
        .pid;
    let receiver = Frozen::stop(vec![receiver]);
    let mut waiting = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            waiting = diesel::sql_query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' ORDER BY pid",
            )
            .load::<Pid>(&mut on_primary)
            .map(|rows| rows.into_iter().map(|r| r.pid).collect())
            .unwrap_or_default();
            waiting.len() == WRITERS
        }),
        "every writer's commit waits for the standby: {waiting:?}"
    );
    // Their backends will never answer; the standby gets their commits.
    let backends = Frozen::stop(waiting);
    let flushed = diesel::sql_query("SELECT pg_current_wal_flush_lsn()::text AS lsn")
        .get_result::<Lsn>(&mut on_primary)
        .expect("the primary's flush position")
        .lsn;
    drop(receiver);
    assert!(
        eventually(Duration::from_secs(30), || {
            diesel::sql_query("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS b")
                .bind::<Text, _>(&flushed)
                .get_result::<Flag>(&mut on_standby)
                .is_ok_and(|f| f.b)
        }),
        "the standby replays the waiting commits (up to {flushed})"
    );
    drop((on_primary, on_standby));

    let before: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
    let report = project.cluster.failover().expect("failover");
    assert_eq!(report.new_primary, 1, "{report:?}");
    backends.disarm();
    let after: Vec<usize> = before.iter().map(|b| b + 3).collect();
    assert!(
        eventually(Duration::from_secs(60), || each_has(&after)),
        "every writer posts again after the failover"
    );
    stop.store(true, Ordering::Release);
    let posts: Vec<Post> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();

    // What the new primary, reached through the same endpoint, holds.
    let mut conn = establish(&project.endpoint()).expect("connect to the new primary");
    assert!(
        !diesel::sql_query("SELECT pg_is_in_recovery() AS b")
            .get_result::<Flag>(&mut conn)
            .expect("ask the new primary")
            .b,
        "the endpoint reaches the new primary"
    );
    let rows: HashMap<String, i64> =
        diesel::sql_query("SELECT message, count(*) AS n FROM activities GROUP BY message")
            .load::<MessageCount>(&mut conn)
            .expect("count the posts")
            .into_iter()
            .map(|r| (r.message, r.n))
            .collect();
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        uuid: uuid::Uuid,
    }
    let present: HashSet<uuid::Uuid> = diesel::sql_query("SELECT uuid FROM activities")
        .load::<Row>(&mut conn)
        .expect("list the posts")
        .into_iter()
        .map(|r| r.uuid)
        .collect();
    let lost = posts
        .iter()
        .filter_map(Post::made)
        .filter(|(uuid, _)| !present.contains(uuid))
        .count();
    let extra = |p: &Post| usize::try_from(rows.get(&p.message).map_or(0, |n| n - 1)).unwrap_or(0);
    let duplicates = posts.iter().map(extra).sum();
    let duplicated = posts
        .iter()
        .filter(|p| extra(p) > 0)
        .map(|p| p.message.clone())
        .collect();
    drop(service);
    Run {
        posts,
        failover: report.elapsed,
        lost,
        duplicates,
        duplicated,
    }
}

/// Every post ended answered `200`, after at most [`MAX_ATTEMPTS`], and
/// every failed attempt was one the service said could be retried.
fn assert_every_post_was_made(run: &Run) {
    for post in &run.posts {
        assert!(post.made().is_some(), "a post was given up: {post:?}");
        for attempt in &post.attempts {
            if let Outcome::Refused { status, body } = &attempt.outcome {
                panic!("{status} {body:?} is not retryable, for {post:?}");
            }
        }
    }
    assert_ne!(run.downtime(), Duration::MAX, "posts succeed again");
}

#[test]
fn retrying_with_idempotency_keys_makes_each_post_once_and_loses_none() {
    let run = post_across_a_failover(true);
    run.report("a key per post");
    assert_every_post_was_made(&run);
    assert_eq!(
        run.lost, 0,
        "a synchronous standby holds every answered post"
    );
    assert_eq!(
        run.duplicates, 0,
        "one activity per key: {:?}",
        run.duplicated
    );
    let unknown: Vec<&Post> = run.posts.iter().filter(|p| p.unknown()).collect();
    assert!(
        unknown.len() >= WRITERS,
        "the posts in flight at the kill have an unknown outcome: {run:?}"
    );
    for post in unknown {
        // Their commits reached the standby: the retry finds the first post.
        assert_eq!(post.made().map(|(_, r)| r), Some(true), "{post:?}");
    }
}

#[test]
fn retrying_without_keys_duplicates_only_posts_of_unknown_outcome() {
    let run = post_across_a_failover(false);
    run.report("no keys");
    assert_every_post_was_made(&run);
    assert_eq!(
        run.lost, 0,
        "a synchronous standby holds every answered post"
    );
    let unknown = run.posts.iter().filter(|p| p.unknown()).count();
    assert!(
        run.duplicates <= unknown,
        "a post is made twice only when an attempt's outcome was unknown: {} duplicates, {unknown} unknown",
        run.duplicates
    );
}
