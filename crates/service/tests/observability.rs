//! The service's operations: `/metrics` read by the Prometheus project's own
//! parser, `/api/ready`, load shedding, and JSON request logs.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Running, Service, TestDb, get, lock_activities, lock_waiters, post_json, seeded_db, send,
};
use cruddur_db::{Config, DatabaseUrl, Repository};
use cruddur_db_service::shed::Shedding;
use cruddur_db_service::{AppState, Auth};
use cruddur_db_test_support::{StreamingPair, eventually};
use diesel::connection::SimpleConnection;
use serde_json::json;

fn development() -> Auth {
    Auth::Development {
        handle: "andrewbrown".into(),
    }
}

/// One scrape, as PyPI's `prometheus-client` parsed it.
struct Scrape {
    types: HashMap<String, String>,
    samples: Vec<(String, HashMap<String, String>, f64)>,
    text: String,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels`;
    /// `None` when there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like [`Scrape::value`], panicking with the whole scrape when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }
}

/// `GET /metrics`, parsed by `tests/python/parse_metrics.py`.
fn scrape(service: &Service) -> Scrape {
    let answer = get(&service.url("/metrics"), &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(answer.body.as_bytes())
        .expect("write the scrape");
    let output = child.wait_with_output().expect("python3");
    assert!(
        output.status.success(),
        "the Prometheus parser refused the scrape: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        answer.body
    );
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let types = parsed["types"]
        .as_object()
        .expect("types")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let samples = parsed["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (
                s[0].as_str().expect("name").to_owned(),
                labels,
                s[2].as_f64().expect("value"),
            )
        })
        .collect();
    Scrape {
        types,
        samples,
        text: answer.body,
    }
}

const HOME: &str = "/api/activities/home";
const REQUESTS: &str = "cruddur_http_requests_total";

#[test]
fn metrics_count_requests_by_route_and_status_and_the_pool_queue_and_failed_statements() {
    let db = seeded_db();
    let mut config = Config::new(db.url.clone());
    config.pool_size = 3;
    config.statement_timeout_ms = 500;
    let repo = Repository::connect(&config).expect("connect");
    let service = Service::serve(repo.clone(), development(), &[]);
    let post = service.url("/api/activities");
    for _ in 0..2 {
        assert_eq!(get(&service.url(HOME), &[]).status, 200);
    }
    assert_eq!(get(&service.url("/nowhere/at/all"), &[]).status, 404);
    let bad = r#"{"message": "", "ttl": "7-days"}"#;
    assert_eq!(post_json(&post, &[], bad).status, 422);
    let good = r#"{"message": "counted", "ttl": "7-days"}"#;
    assert_eq!(post_json(&post, &[], good).status, 200);
    // A method the route does not have: counted under the route.
    assert_eq!(send("DELETE", &service.url(HOME), &[], None).status, 405);

    let first = scrape(&service);
    assert_eq!(
        first.types.get("cruddur_http_requests").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        first
            .types
            .get("cruddur_http_request_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    let home_200 = [("method", "GET"), ("route", HOME), ("status", "200")];
    assert_eq!(first.get(REQUESTS, &home_200), 2.0);
    assert_eq!(
        first.get("cruddur_http_request_duration_seconds_count", &home_200),
        2.0
    );
    assert_eq!(
        first.get(
            "cruddur_http_request_duration_seconds_bucket",
            &[("route", HOME), ("status", "200"), ("le", "+Inf")]
        ),
        2.0
    );
    // The matched route, never the raw path.
    assert_eq!(
        first.get(
            REQUESTS,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(!first.text.contains("/nowhere"), "{}", first.text);
    let posts = |status| {
        [
            ("method", "POST"),
            ("route", "/api/activities"),
            ("status", status),
        ]
    };
    assert_eq!(first.get(REQUESTS, &posts("422")), 1.0);
    assert_eq!(first.get(REQUESTS, &posts("200")), 1.0);
    assert_eq!(
        first.get(
            REQUESTS,
            &[("method", "OTHER"), ("route", HOME), ("status", "405")]
        ),
        1.0
    );

    // The pool and the queue.
    assert_eq!(first.get("cruddur_db_pool_max_connections", &[]), 3.0);
    let open = first.get("cruddur_db_pool_connections", &[]);
    assert!(open >= 1.0, "{}", first.text);
    assert_eq!(
        first.get("cruddur_db_pool_idle_connections", &[])
            + first.get("cruddur_db_pool_in_use_connections", &[]),
        open
    );
    assert_eq!(first.get("cruddur_db_queue_waiting", &[]), 0.0);
    // Both feed reads and both posts went through the queue.
    assert_eq!(first.get("cruddur_db_queue_wait_seconds_count", &[]), 4.0);

    // The router's own counters, as it keeps them.
    let counters = repo.counters();
    assert_eq!(counters.writes, 1);
    assert_eq!(first.get("cruddur_db_router_writes_total", &[]), 1.0);
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    let no_replica = counters.primary_reads_no_healthy_replica as f64;
    assert_eq!(
        first.get(
            "cruddur_db_router_primary_reads_no_healthy_replica_total",
            &[]
        ),
        no_replica
    );
    assert!(first.value("cruddur_db_replica_up", &[]).is_none());

    // The counters move with requests (the first scrape is counted too).
    assert_eq!(get(&service.url(HOME), &[]).status, 200);
    let second = scrape(&service);
    assert_eq!(second.get(REQUESTS, &home_200), 3.0);
    assert_eq!(
        second.get(
            REQUESTS,
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
    assert!(
        second
            .value("cruddur_db_failed_statements_total", &[])
            .is_none()
    );

    // A statement that runs into the statement timeout: SQLSTATE 57014.
    let lock = lock_activities(&db);
    let timed_out = get(&service.url(HOME), &[]);
    drop(lock);
    assert_eq!(timed_out.status, 503, "{}", timed_out.body);
    let third = scrape(&service);
    assert_eq!(
        third.get(
            "cruddur_db_failed_statements_total",
            &[("sqlstate_class", "57")]
        ),
        1.0
    );
    assert_eq!(
        third.get(
            REQUESTS,
            &[("method", "GET"), ("route", HOME), ("status", "503")]
        ),
        1.0
    );
}

#[test]
fn each_replica_shows_its_health_from_the_routers_prober() {
    let db = seeded_db();
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut config = Config::new(db.url.clone());
    config.replica_urls = vec![
        DatabaseUrl::parse(&format!(
            "postgres://nobody:secret@127.0.0.1:{port}/nothing"
        ))
        .expect("url"),
    ];
    let repo = Repository::connect(&config).expect("connect");
    let service = Service::serve(repo.clone(), development(), &[]);
    let replica = format!("127.0.0.1:{port}");
    let down = [("replica", replica.as_str()), ("status", "down")];
    let mut last = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            let scraped = scrape(&service);
            let seen = scraped.value("cruddur_db_replica_status", &down) == Some(1.0);
            last = Some(scraped);
            seen
        }),
        "the replica never showed as down:\n{}",
        last.map(|s| s.text).unwrap_or_default()
    );
    let scraped = scrape(&service);
    assert_eq!(
        scraped.get("cruddur_db_replica_up", &[("replica", replica.as_str())]),
        0.0
    );
    assert!(!scraped.text.contains("secret"), "{}", scraped.text);
    // A read with no healthy replica goes to the primary, and the router's
    // counter of that is what /metrics shows.
    let before = scraped.get(
        "cruddur_db_router_primary_reads_no_healthy_replica_total",
        &[],
    );
    assert_eq!(get(&service.url(HOME), &[]).status, 200);
    let after = scrape(&service);
    assert_eq!(
        after.get(
            "cruddur_db_router_primary_reads_no_healthy_replica_total",
            &[]
        ),
        before + 1.0
    );
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    let kept = repo.counters().primary_reads_no_healthy_replica as f64;
    assert_eq!(
        after.get(
            "cruddur_db_router_primary_reads_no_healthy_replica_total",
            &[]
        ),
        kept
    );
}

#[test]
fn ready_is_503_while_migrations_are_pending_or_the_database_is_down_and_health_stays() {
    let db = TestDb::new();
    let mut config = Config::new(db.url.clone());
    config.checkout_timeout = Duration::from_millis(500);
    let service = Service::start(&config, development(), &[]);
    let ready = get(&service.url("/api/ready"), &[]);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["ready"], json!(false));
    let reason = ready.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("migration(s) pending"), "{reason}");
    // Liveness is the process, not the schema.
    assert_eq!(get(&service.url("/api/health-check"), &[]).status, 200);

    cruddur_db::run_migrations(&mut db.conn()).expect("migrate");
    let ready = get(&service.url("/api/ready"), &[]);
    assert_eq!(
        (ready.status, ready.json()),
        (200, json!({ "ready": true }))
    );

    // The database stops taking connections and loses the ones it had.
    let mut admin = cruddur_db::establish(&db.url.with_database("postgres")).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
            name = db.name()
        ))
        .unwrap();
    let ready = get(&service.url("/api/ready"), &[]);
    assert_eq!(
        (ready.status, ready.json()),
        (
            503,
            json!({ "ready": false, "reason": "the database is unavailable" })
        )
    );
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name()
        ))
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || get(
            &service.url("/api/ready"),
            &[]
        )
        .status
            == 200),
        "not ready again once the database came back"
    );
}

/// The 99th percentile of `latencies`.
fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    let at = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
    latencies.get(at).copied().unwrap_or_default()
}

#[test]
fn under_overload_reads_are_refused_first_with_retry_after_and_posts_still_succeed() {
    let db = seeded_db();
    let mut config = Config::new(db.url.clone());
    config.pool_size = 2;
    config.checkout_timeout = Duration::from_secs(30);
    let repo = Repository::connect(&config).expect("connect");
    let state = AppState::new(repo, development())
        .expect("database threads")
        .with_shedding(Shedding {
            reads_at: 2,
            writes_at: 4,
        });
    let service = Service::serve_state(state, &[]);
    let home = service.url(HOME);
    let post = service.url("/api/activities");
    let body = r#"{"message": "admitted", "ttl": "1-day"}"#;
    let waiting = |n: f64| {
        eventually(Duration::from_secs(10), || {
            scrape(&service).value("cruddur_db_queue_waiting", &[]) == Some(n)
        })
    };

    // Both database threads held by reads waiting on a lock, two more
    // reads queued behind them.
    let before = common::activities(&db);
    let lock = lock_activities(&db);
    let mut held = Vec::new();
    for _ in 0..2 {
        let home = home.clone();
        held.push(std::thread::spawn(move || get(&home, &[])));
    }
    assert!(
        eventually(Duration::from_secs(10), || lock_waiters(&db) >= 2),
        "the first reads never reached the database"
    );
    for _ in 0..2 {
        let home = home.clone();
        held.push(std::thread::spawn(move || get(&home, &[])));
    }
    assert!(waiting(2.0), "the two reads never queued");

    // Two waiting: a read is refused at once, with Retry-After.
    let refused = get(&home, &[]);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.json(),
        json!({ "error": "the service is overloaded; retry later" })
    );
    // The probes are never refused: the health check queues.
    let health = {
        let url = service.url("/api/health-check");
        std::thread::spawn(move || get(&url, &[]))
    };
    assert!(waiting(3.0), "the health check never queued");
    // A post is admitted below the writes' threshold, refused at it.
    let admitted = {
        let post = post.clone();
        std::thread::spawn(move || post_json(&post, &[], body))
    };
    assert!(waiting(4.0), "the post never queued");
    let refused = post_json(&post, &[], body);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));

    drop(lock);
    for read in held {
        let answer = read.join().expect("read");
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(health.join().expect("health").status, 200);
    assert_eq!(admitted.join().expect("post").status, 200);
    // The refused post wrote nothing; the admitted one was written.
    assert_eq!(common::activities(&db), before + 1);
    let scraped = scrape(&service);
    assert_eq!(
        scraped.get(
            REQUESTS,
            &[("method", "GET"), ("route", HOME), ("status", "503")]
        ),
        1.0
    );
    assert_eq!(
        scraped.get(
            REQUESTS,
            &[
                ("method", "POST"),
                ("route", "/api/activities"),
                ("status", "503")
            ]
        ),
        1.0
    );

    drop(service);

    // 4x overload: four clients per database thread, without pause, one
    // request in four a post. Reads are refused from one waiting call per
    // thread; posts only beyond what the clients can queue (7 at most
    // while one more arrives), as a threshold set for the expected
    // overload would be.
    let results = overload(
        &config,
        Shedding {
            reads_at: 2,
            writes_at: CLIENTS,
        },
    );
    let elapsed = results.elapsed;
    let mut admitted = Vec::new();
    let (mut posts, mut shed_reads, mut reads) = (0, 0, 0);
    for (is_post, status, retry_after, latency) in &results.answers {
        if *is_post {
            posts += 1;
            assert_eq!(*status, 200, "a post under overload");
        } else {
            reads += 1;
            match status {
                200 => {}
                503 => {
                    assert_eq!(retry_after.as_deref(), Some("1"), "a refused read");
                    shed_reads += 1;
                }
                other => panic!("a read under overload answered {other}"),
            }
        }
        if *status == 200 {
            admitted.push(*latency);
        }
    }
    assert!(shed_reads > 0, "no read was refused at 4x overload");
    let admitted_count = admitted.len();
    let admitted_p99 = p99(&mut admitted);
    // The same load with nothing refused, for the record (timings on a
    // shared machine are reported, not asserted).
    let unshed = overload(
        &config,
        Shedding {
            reads_at: usize::MAX,
            writes_at: usize::MAX,
        },
    );
    let mut all: Vec<Duration> = unshed.answers.iter().map(|a| a.3).collect();
    let unshed_p99 = p99(&mut all);
    println!(
        "4x overload ({CLIENTS} clients, 2 database threads, reads refused at 2 waiting, \
         posts at {CLIENTS}): {} requests in {elapsed:.2?}; {posts} posts, all admitted; \
         {shed_reads} of {reads} reads refused; {admitted_count} admitted, p99 {admitted_p99:.2?} \
         (without shedding: {} requests in {:.2?}, p99 {unshed_p99:.2?})",
        results.answers.len(),
        unshed.answers.len(),
        unshed.elapsed,
    );
}

/// Four clients per database thread.
const CLIENTS: usize = 8;

/// What [`overload`] saw: each request's kind (post or not), status,
/// `Retry-After` and latency.
struct Overload {
    answers: Vec<(bool, u16, Option<String>, Duration)>,
    elapsed: Duration,
}

/// [`CLIENTS`] clients without pause on a service over `config`'s database
/// (2 database threads) that sheds as `shedding` says, 150 requests each,
/// one in four a post.
fn overload(config: &Config, shedding: Shedding) -> Overload {
    const PER_CLIENT: usize = 150;
    let repo = Repository::connect(config).expect("connect");
    let state = AppState::new(repo, development())
        .expect("database threads")
        .with_shedding(shedding);
    let service = Service::serve_state(state, &[]);
    let home = service.url(HOME);
    let post = service.url("/api/activities");
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let home = home.clone();
            let post = post.clone();
            std::thread::spawn(move || {
                let mut results = Vec::with_capacity(PER_CLIENT);
                for i in 0..PER_CLIENT {
                    let is_post = (c + i) % 4 == 0;
                    let at = Instant::now();
                    let answer = if is_post {
                        post_json(&post, &[], r#"{"message": "load", "ttl": "1-day"}"#)
                    } else {
                        get(&home, &[])
                    };
                    let retry_after = answer.header("retry-after").map(str::to_owned);
                    results.push((is_post, answer.status, retry_after, at.elapsed()));
                }
                results
            })
        })
        .collect();
    let answers = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    Overload {
        answers,
        elapsed: started.elapsed(),
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_the_requests_span() {
    let db = seeded_db();
    let url = db.url.expose().to_owned();
    let mut running = Running::start(&[
        ("DATABASE_URL", url.as_str()),
        ("CRUDDUR_LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ]);
    let answer = get(&format!("{}{HOME}", running.base), &[]);
    assert_eq!(answer.status, 200);
    // Every request has its line: an unknown path, the metrics, a probe.
    for (path, status) in [
        ("/no/such/page", 404),
        ("/metrics", 200),
        ("/api/health-check", 200),
    ] {
        assert_eq!(get(&format!("{}{path}", running.base), &[]).status, status);
    }
    running.terminate();
    let mut rest = String::new();
    running
        .stderr
        .read_to_string(&mut rest)
        .expect("read stderr");
    let _ = running.child.wait();
    let events: Vec<serde_json::Value> = rest
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let answered = events
        .iter()
        .find(|e| e["fields"]["message"] == "answered")
        .unwrap_or_else(|| panic!("no JSON request line in:\n{rest}"));
    assert_eq!(answered["level"], "INFO", "{answered}");
    assert_eq!(answered["fields"]["status"], 200, "{answered}");
    assert!(answered["fields"]["latency_us"].is_u64(), "{answered}");
    assert_eq!(answered["span"]["method"], "GET", "{answered}");
    assert_eq!(answered["span"]["path"], HOME, "{answered}");
    assert!(answered["timestamp"].is_string(), "{answered}");
    for (path, status) in [
        ("/no/such/page", 404),
        ("/metrics", 200),
        ("/api/health-check", 200),
    ] {
        assert!(
            events.iter().any(|e| e["fields"]["message"] == "answered"
                && e["span"]["path"] == path
                && e["fields"]["status"] == status),
            "no request line for {path} in:\n{rest}"
        );
    }
    // Nothing logged as text besides the start-up and stop notes.
    for line in rest.lines().filter(|l| !l.starts_with('{')) {
        assert!(
            line.starts_with("stopped:"),
            "a log line that is not JSON: {line}"
        );
    }

    // A format it does not know is refused at start-up, naming it.
    let output = common::service_command(&[
        ("DATABASE_URL", url.as_str()),
        ("CRUDDUR_LOG_FORMAT", "xml"),
    ])
    .output()
    .expect("run the service");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: invalid CRUDDUR_LOG_FORMAT `xml`"),
        "{stderr}"
    );
}

/// The Python OTLP receiver, killed on drop.
struct Receiver {
    child: std::process::Child,
    port: u16,
}

impl Receiver {
    fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut first = String::new();
        let stdout = child.stdout.as_mut().expect("stdout");
        let mut byte = [0_u8; 1];
        while stdout.read(&mut byte).expect("read the receiver") == 1 && byte[0] != b'\n' {
            first.push(char::from(byte[0]));
        }
        let port = serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("the OTLP receiver did not start: {first:?} {err}")
            });
        Self { child, port }
    }

    /// Every span it received, once it is stopped.
    fn spans(mut self) -> Vec<serde_json::Value> {
        let _ = self.child.kill();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read the receiver");
        let _ = self.child.wait();
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spans named `name` of trace `trace`.
fn in_trace<'s>(
    spans: &'s [serde_json::Value],
    trace: &str,
    name: &str,
) -> Vec<&'s serde_json::Value> {
    spans
        .iter()
        .filter(|s| s["trace_id"] == trace && s["name"] == name)
        .collect()
}

/// The statement spans of trace `trace`: the client spans.
fn statements<'s>(spans: &'s [serde_json::Value], trace: &str) -> Vec<&'s serde_json::Value> {
    spans
        .iter()
        .filter(|s| s["trace_id"] == trace && s["kind"] == 3)
        .collect()
}

/// Checks what every statement span of a request carries: the request as
/// its parent, the database, the server and a text.
fn assert_statement_spans(
    statements: &[&serde_json::Value],
    request: &serde_json::Value,
    host: &str,
    port: &str,
) {
    assert!(!statements.is_empty(), "no statement span: {request}");
    for statement in statements {
        assert_eq!(
            statement["parent_span_id"], request["span_id"],
            "a statement is the request's child: {statement}"
        );
        let attributes = &statement["attributes"];
        assert_eq!(attributes["db.system"], "postgresql", "{statement}");
        assert_eq!(attributes["db.system.name"], "postgresql", "{statement}");
        assert_eq!(attributes["server.address"], host, "{statement}");
        assert_eq!(
            attributes["server.port"].as_i64().map(|p| p.to_string()),
            Some(port.to_owned()),
            "{statement}"
        );
        let text = attributes["db.query.text"].as_str().unwrap_or_default();
        assert!(!text.is_empty(), "no statement text: {statement}");
        assert!(!text.contains("-- binds"), "{statement}");
        let keyword = text.split_whitespace().next().unwrap_or_default();
        assert!(
            statement["name"] == keyword.to_ascii_uppercase() || statement["name"] == "postgresql",
            "a statement span is named after its first keyword: {statement}"
        );
    }
}

#[test]
fn traces_go_over_otlp_with_the_callers_trace_a_pool_checkout_and_a_span_per_statement_without_its_values()
 {
    traces_over_otlp(false);
}

#[test]
fn traces_of_the_feed_on_async_connections_have_the_same_spans() {
    traces_over_otlp(true);
}

/// The traces of a feed read, a post, a request left out and a health
/// check; with `async_primary`, the feed read on async connections.
fn traces_over_otlp(async_primary: bool) {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER: &str = "00f067aa0ba902b7";
    const POST_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const POST_CALLER: &str = "b7ad6b7169203331";
    const UNSAMPLED: &str = "6e0c63257de34c926f9efcd03927272e";
    // Bound as values: neither may show in any span.
    const MESSAGE: &str = "a traced post, 7f3a9c: its text is a value";
    const HANDLE: &str = "andrewbrown";
    let db = seeded_db();
    let receiver = Receiver::start();
    // TLS and GSSAPI encryption off: the URL the async connections take.
    let plain = db
        .url
        .with_param("sslmode", "disable")
        .with_param("gssencmode", "disable");
    let url = if async_primary { &plain } else { &db.url }
        .expose()
        .to_owned();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let mut running = Running::start(&[
        ("DATABASE_URL", url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("CRUDDUR_LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
        (
            "CRUDDUR_ASYNC_PRIMARY",
            if async_primary { "1" } else { "0" },
        ),
    ]);
    let traceparent = format!("00-{TRACE}-{CALLER}-01");
    let answer = get(
        &format!("{}{HOME}?limit=7", running.base),
        &[("traceparent", traceparent.as_str())],
    );
    assert_eq!(answer.status, 200);
    let post_parent = format!("00-{POST_TRACE}-{POST_CALLER}-01");
    let posted = post_json(
        &format!("{}/api/activities", running.base),
        &[("traceparent", post_parent.as_str())],
        &json!({ "message": MESSAGE, "ttl": "1-day" }).to_string(),
    );
    assert_eq!(posted.status, 200, "{}", posted.body);
    // A caller's trace it did not sample: no span of it at all.
    let unsampled = format!("00-{UNSAMPLED}-{CALLER}-00");
    let answer = get(
        &format!("{}{HOME}", running.base),
        &[("traceparent", unsampled.as_str())],
    );
    assert_eq!(answer.status, 200);
    // Without a traceparent, a trace of its own.
    assert_eq!(
        get(&format!("{}/api/health-check", running.base), &[]).status,
        200
    );
    // The feed was read where the test says.
    let metrics = get(&format!("{}/metrics", running.base), &[]).body;
    assert_eq!(
        metrics.contains("cruddur_db_async_pool_connections 1"),
        async_primary,
        "{metrics}"
    );
    // The spans still batched are sent before the service exits.
    running.terminate();
    let mut logs = String::new();
    running
        .stderr
        .read_to_string(&mut logs)
        .expect("read stderr");
    assert!(running.child.wait().expect("exit").success(), "{logs}");
    let spans = receiver.spans();
    let named = |name: &str| -> Vec<&serde_json::Value> {
        spans.iter().filter(|s| s["name"] == name).collect()
    };
    let host = db.url.param("host").unwrap_or("localhost");
    let port = db.url.param("port").unwrap_or("5432");

    let requests = named("GET /api/activities/home");
    assert_eq!(requests.len(), 1, "{spans:#?}");
    let request = requests[0];
    assert_eq!(request["trace_id"], TRACE, "{request}");
    assert_eq!(request["parent_span_id"], CALLER, "{request}");
    assert_eq!(request["kind"], 2, "a server span: {request}");
    assert_eq!(request["service"], "cruddur-db-service", "{request}");
    assert_eq!(request["attributes"]["http.route"], HOME, "{request}");
    let checkouts = in_trace(&spans, TRACE, "pool checkout");
    assert_eq!(checkouts.len(), 1, "{spans:#?}");
    assert_eq!(
        checkouts[0]["parent_span_id"], request["span_id"],
        "the pool checkout is the request's child: {spans:#?}"
    );
    // The feed page: one SELECT, its limit a placeholder.
    let feed = statements(&spans, TRACE);
    assert_statement_spans(&feed, request, host, port);
    let selects: Vec<_> = feed.iter().filter(|s| s["name"] == "SELECT").collect();
    assert_eq!(selects.len(), 1, "{feed:#?}");
    let text = selects[0]["attributes"]["db.query.text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("$1"), "{text}");
    assert!(!text.contains('7'), "the limit bound shows: {text}");

    // The post: a span for each of its statements, in its transaction.
    let posts = in_trace(&spans, POST_TRACE, "POST /api/activities");
    assert_eq!(posts.len(), 1, "{spans:#?}");
    assert_eq!(posts[0]["parent_span_id"], POST_CALLER);
    let written = statements(&spans, POST_TRACE);
    assert_statement_spans(&written, posts[0], host, port);
    let names: Vec<&str> = written.iter().filter_map(|s| s["name"].as_str()).collect();
    for name in ["BEGIN", "COMMIT"] {
        assert!(names.contains(&name), "no {name} in {names:?}");
    }
    // The post's one statement (the author's look-up and the insert) is
    // named by its first keyword.
    let insert = written
        .iter()
        .filter_map(|s| s["attributes"]["db.query.text"].as_str())
        .find(|text| text.contains("INSERT INTO activities"))
        .unwrap_or_default();
    assert!(insert.contains("$1"), "{insert}");
    for span in &spans {
        // Nothing a span does not need: each costs its export.
        for needless in [
            "code.file.path",
            "code.line.number",
            "thread.name",
            "thread.id",
            "busy_ns",
            "idle_ns",
            "target",
        ] {
            assert!(
                span["attributes"].get(needless).is_none(),
                "{needless}: {span}"
            );
        }
        let attributes = span["attributes"].to_string();
        for value in [MESSAGE, HANDLE] {
            assert!(
                !attributes.contains(value),
                "a bound value shows in a span: {span}"
            );
        }
    }

    assert!(
        !spans.iter().any(|s| s["trace_id"] == UNSAMPLED),
        "a span of a trace not sampled: {spans:#?}"
    );
    // Nor a statement of it as a trace of its own: every statement span
    // has its request's as parent.
    let orphans: Vec<_> = spans
        .iter()
        .filter(|s| s["kind"] == 3 && s["parent_span_id"] == "")
        .collect();
    assert!(
        orphans.is_empty(),
        "statements without a request: {orphans:#?}"
    );

    // The health check's trace is its own.
    let health = named("GET /api/health-check");
    assert_eq!(health.len(), 1, "{spans:#?}");
    assert_ne!(health[0]["trace_id"], TRACE);
    assert_eq!(health[0]["parent_span_id"], "");

    // The request's log line carries the trace id.
    let answered = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .find(|e| e["fields"]["message"] == "answered" && e["span"]["path"] == HOME)
        .unwrap_or_else(|| panic!("no request line in:\n{logs}"));
    assert_eq!(answered["span"]["trace_id"], TRACE, "{answered}");
    // The line of the request left out names its caller's trace.
    let left_out = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter(|e| e["fields"]["message"] == "answered" && e["span"]["path"] == HOME)
        .nth(1)
        .unwrap_or_else(|| panic!("no second request line in:\n{logs}"));
    assert_eq!(left_out["span"]["trace_id"], UNSAMPLED, "{left_out}");
}

#[test]
fn a_read_sent_to_a_replica_traces_its_statements_with_the_replicas_address() {
    const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
    const CALLER: &str = "10f067aa0ba902b8";
    let pair = StreamingPair::start();
    cruddur_db::prepare(&pair.primary_url("cruddur")).expect("prepare the primary");
    assert!(pair.caught_up(Duration::from_secs(30)));
    let receiver = Receiver::start();
    let primary = pair.primary_url("cruddur");
    let standby = pair.standby_url("cruddur");
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let running = Running::start(&[
        ("DATABASE_URL", primary.expose()),
        ("DATABASE_REPLICA_URLS", standby.expose()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ]);
    // Reads go to the replica once its prober has seen it up.
    let metrics = format!("{}/metrics", running.base);
    assert!(
        eventually(Duration::from_secs(30), || {
            get(&metrics, &[]).body.lines().any(|l| {
                l.starts_with("cruddur_db_replica_up{")
                    && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0)
            })
        }),
        "the replica never came up: {}",
        get(&metrics, &[]).body
    );
    let traceparent = format!("00-{TRACE}-{CALLER}-01");
    let answer = get(
        &format!("{}{HOME}", running.base),
        &[("traceparent", traceparent.as_str())],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    running.terminate();
    let mut running = running;
    assert!(running.child.wait().expect("exit").success());
    let spans = receiver.spans();
    let requests = in_trace(&spans, TRACE, "GET /api/activities/home");
    assert_eq!(requests.len(), 1, "{spans:#?}");
    let read = statements(&spans, TRACE);
    assert_statement_spans(
        &read,
        requests[0],
        standby.param("host").unwrap_or_default(),
        standby.param("port").unwrap_or_default(),
    );
    assert!(
        read.iter().any(|s| s["name"] == "SELECT"),
        "the feed's SELECT: {read:#?}"
    );
    // The checkout from the replica's pool.
    let checkouts = in_trace(&spans, TRACE, "pool checkout");
    assert_eq!(checkouts.len(), 1, "{spans:#?}");
    assert_eq!(checkouts[0]["parent_span_id"], requests[0]["span_id"]);
    assert_ne!(
        standby.param("host"),
        primary.param("host"),
        "the replica's address must tell it from the primary's"
    );
}

#[test]
fn a_trace_id_ratio_sampler_decides_on_the_callers_trace_id_and_a_request_left_out_makes_no_span() {
    // `traceidratio` at 0.5 keeps a trace whose last 8 bytes, shifted right
    // by one, are under 2^62: the caller's sampled flag does not count.
    const KEPT: &str = "7d3f0c2a9b8e4f1100000000000000a1";
    const LEFT_OUT: &str = "7d3f0c2a9b8e4f11ffffffffffffff00";
    const CALLER: &str = "00f067aa0ba902b7";
    let db = seeded_db();
    let receiver = Receiver::start();
    let url = db.url.expose().to_owned();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let mut running = Running::start(&[
        ("DATABASE_URL", url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
    ]);
    for (trace, flags) in [(KEPT, "00"), (LEFT_OUT, "01")] {
        let traceparent = format!("00-{trace}-{CALLER}-{flags}");
        let answer = get(
            &format!("{}{HOME}", running.base),
            &[("traceparent", traceparent.as_str())],
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    running.terminate();
    let mut logs = String::new();
    running
        .stderr
        .read_to_string(&mut logs)
        .expect("read stderr");
    assert!(running.child.wait().expect("exit").success(), "{logs}");
    let spans = receiver.spans();
    let kept = in_trace(&spans, KEPT, "GET /api/activities/home");
    assert_eq!(kept.len(), 1, "{spans:#?}");
    assert_eq!(kept[0]["parent_span_id"], CALLER);
    assert!(
        !statements(&spans, KEPT).is_empty(),
        "a kept trace has its statements: {spans:#?}"
    );
    assert!(
        !spans.iter().any(|s| s["trace_id"] == LEFT_OUT),
        "a span of a trace left out: {spans:#?}"
    );
    // Both requests were logged.
    assert_eq!(logs.matches("answered status=200").count(), 2, "{logs}");
}
