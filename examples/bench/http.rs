//! The HTTP rows: `cruddur-db-service` against the service a Rust
//! developer would write instead (`http-peer` of `crates/client-cost`:
//! axum 0.8 on deadpool-postgres, a pool of 10, cruddur-db's own
//! statements) and against the original Flask backend
//! (`examples/bench/python/flask_backend/app.py`), as it ran (Flask's development server)
//! and under gunicorn, on the same database, loaded by `oha` at 1, 16 and
//! 64 connections on both endpoints; and a user's page and a crud's page
//! at 1 and 16 connections against the Flask servers, which serve them
//! with the original's SQL (`tests/original_sql`). Every server reaches PostgreSQL
//! without TLS (`sslmode=disable`), as the Rust peer's client is built.
//!
//! Every server is started and warmed up first, then each cell (endpoint,
//! level) is measured on every server back to back, rotating which goes
//! first, for [`ROUNDS`] rounds (`--http-rounds N` for more): a server waiting for its turn is idle, and
//! what else runs on a shared machine changes within seconds, so a round's
//! ratio compares runs made within seconds of each other. The ratios are
//! medians over rounds of the ratio within a round; the req/s and
//! latencies shown are each the median over rounds. `oha`, the servers and
//! PostgreSQL share the machine's cores.
//!
//! The feed's cells have one more side in the rotation: the repository
//! in-process, `Repository::home_feed_json` (the call the service's handler
//! makes for the first page) on as many threads as `oha` has connections,
//! each calling it in a closed loop (`run_ours`, as the feed rows do) for
//! as long as an HTTP cell, on a pool of this bench process as large as the
//! service's (both set to [`POOL_SIZE`]), on the same database. Ours ÷
//! in-process is what HTTP, the service's queue and its layers leave of
//! what the library serves.
//!
//! Why `oha` and not `wrk`: on this 2-core machine `wrk` 4.1 reported, for
//! our service at 16 connections, an average latency of 4 to 10 ms at
//! 20,000 requests/s, which no closed loop of 16 connections can have
//! (Little's law: 16 / 20,000 s = 0.8 ms); its 99th percentiles (0.1 to
//! 1 s) were as impossible. `ab` and `oha` agreed with each other and with
//! the service's own request log (99th percentile 2 to 7 ms). For the Flask
//! servers, ten times slower, all three agree.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cruddur_db::config::DEFAULT_POOL_SIZE;
use cruddur_db::repo::feed::DEFAULT_PAGE_SIZE;
use cruddur_db::variables::CRUDDUR_POOL_SIZE;
use cruddur_db::{Config, DatabaseUrl, Repository};

use super::rust_clients::median;
use super::{BenchResult, Measured, Plan, Row, Run, Target, Tools, check_stop, dash, fail};

/// Rounds of every cell on every server, unless `--http-rounds` says.
pub(super) const ROUNDS: usize = 3;
/// The pool of our service (`CRUDDUR_POOL_SIZE`, set on it) and of the
/// in-process side: the library's default, the service's as it starts.
const POOL_SIZE: u32 = DEFAULT_POOL_SIZE;
/// The in-process side reads the page the service serves without `limit`.
const _: () = assert!(super::PAGE == DEFAULT_PAGE_SIZE);
/// Connections `oha` keeps open, one row each.
const LEVELS: [usize; 3] = [1, 16, 64];
/// The level at which the targets apply.
const TARGET_LEVEL: usize = 16;
/// The share of the in-process side's pages/s that ours should serve, at
/// every level.
const IN_PROCESS_SHARE: f64 = 0.7;
/// gunicorn's recommended worker count on this machine's 2 cores
/// (2 × cores + 1).
const GUNICORN_WORKERS: usize = 5;
/// The share of requests the sampled server traces.
const SAMPLED_RATIO: &str = "0.1";
/// The body of every measured post.
const POST_BODY: &str = r#"{"message": "posted by the HTTP benchmark", "ttl": "1-day"}"#;

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// As it starts by default: metrics on, no traces.
    Ours,
    /// Ours with metrics off (`CRUDDUR_METRICS=0`) and no traces: what
    /// observability is measured against.
    OursBare,
    /// Ours with metrics on and every request traced, exported over OTLP to
    /// a sink that answers 200 at once.
    OursTraced,
    /// Ours with metrics on and one request in ten traced, as a busy
    /// production service samples (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`,
    /// `OTEL_TRACES_SAMPLER_ARG` [`SAMPLED_RATIO`]), to the same sink.
    OursSampled,
    /// axum on deadpool-postgres: `http-peer` of `crates/client-cost`.
    RustPeer,
    FlaskDev,
    Gunicorn,
    /// No server: `Repository::home_feed_json` called in this process (see
    /// the module's doc).
    InProcess,
}

impl Server {
    fn label(self) -> String {
        match self {
            Server::Ours => "cruddur-db-service".into(),
            Server::OursBare => "cruddur-db-service, metrics off".into(),
            Server::OursTraced => "cruddur-db-service, metrics on, every request traced".into(),
            Server::OursSampled => {
                format!("cruddur-db-service, metrics on, {SAMPLED_RATIO} of requests traced")
            }
            Server::RustPeer => "axum 0.8 + deadpool-postgres, pool of 10, same SQL".into(),
            Server::FlaskDev => "Flask development server (as the original ran)".into(),
            Server::Gunicorn => format!("Flask under gunicorn, {GUNICORN_WORKERS} workers"),
            Server::InProcess => format!(
                "Repository::home_feed_json in-process, a thread per connection, pool of {POOL_SIZE}"
            ),
        }
    }
}

/// The endpoints measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Home,
    Post,
    /// The seed user's page.
    Profile,
    /// The seed post's page, with its reply.
    Thread,
}

/// The user and the crud whose pages are measured: the reference seed's.
const PROFILE_PATH: &str = "/api/activities/@andrewbrown";

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::Home,
        Endpoint::Post,
        Endpoint::Profile,
        Endpoint::Thread,
    ];

    /// The path of this endpoint; `thread` is the crud's page's.
    fn path(self, thread: &str) -> String {
        match self {
            Endpoint::Home => "/api/activities/home".into(),
            Endpoint::Post => "/api/activities".into(),
            Endpoint::Profile => PROFILE_PATH.into(),
            Endpoint::Thread => thread.into(),
        }
    }

    /// How the rows and the ratios' keys name it.
    fn label(self) -> &'static str {
        match self {
            Endpoint::Home => "/api/activities/home",
            Endpoint::Post => "/api/activities",
            Endpoint::Profile => "/api/activities/@{handle}",
            Endpoint::Thread => "/api/activities/@{handle}/status/{uuid}",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Endpoint::Home => "home",
            Endpoint::Post => "post",
            Endpoint::Profile => "profile",
            Endpoint::Thread => "thread",
        }
    }

    /// The connection counts it is measured at: the pages at 1 and 16.
    fn levels(self) -> &'static [usize] {
        match self {
            Endpoint::Home | Endpoint::Post => &LEVELS,
            Endpoint::Profile | Endpoint::Thread => &LEVELS[..2],
        }
    }

    /// Whether `server` is measured on it at `level`: the Rust peer
    /// serves the feed and posts only; observability's cost is measured on
    /// those at the target level; the in-process side serves the feed.
    fn served_by(self, server: Server, level: usize) -> bool {
        let feed_or_post = matches!(self, Endpoint::Home | Endpoint::Post);
        match server {
            Server::RustPeer => feed_or_post,
            Server::InProcess => self == Endpoint::Home,
            Server::OursBare | Server::OursTraced | Server::OursSampled => {
                feed_or_post && level == TARGET_LEVEL
            }
            Server::Ours | Server::FlaskDev | Server::Gunicorn => true,
        }
    }
}

/// What `oha` reported for one endpoint at one level.
#[derive(Debug, Clone, Copy, Default)]
struct LoadRun {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Failed requests and answers other than 2xx.
    errors: u64,
}

impl From<&Run> for LoadRun {
    /// An in-process run as a cell: its calls are the requests (a call
    /// that fails stops the bench, so none is an error here).
    fn from(run: &Run) -> Self {
        LoadRun {
            requests_per_s: run.tps(),
            p50_ms: run.percentile_ms(0.5),
            p99_ms: run.percentile_ms(0.99),
            errors: 0,
        }
    }
}

/// The in-process side: a repository of this process on the database the
/// servers use, with the service's pool size.
struct InProcess {
    repo: Repository,
}

impl InProcess {
    fn connect(db: &DatabaseUrl) -> BenchResult<Self> {
        let mut config = Config::new(db.clone());
        config.pool_size = POOL_SIZE;
        Ok(Self {
            repo: Repository::connect(&config)?,
        })
    }

    /// `threads` threads calling `home_feed_json` for the first page in a
    /// closed loop for `seconds`, after the feed rows' warm-up.
    fn load(&self, threads: usize, seconds: u64) -> BenchResult<LoadRun> {
        let run = super::run_ours(threads, seconds, &|| super::json_page(&self.repo))?;
        Ok(LoadRun::from(&run))
    }
}

/// The HTTP rows, or one row saying why they were skipped. With
/// `rust_only`, without the Flask servers (no Python needed).
pub(super) fn http_phase(
    plan: Plan,
    db: &DatabaseUrl,
    tools: &Tools,
    rust_only: bool,
) -> BenchResult<Measured> {
    let setup = match Setup::find(tools, rust_only) {
        Ok(setup) => setup,
        Err(why) => {
            eprintln!("skipping the HTTP rows: {why}");
            return Ok(skipped(&why));
        }
    };
    let db = &match super::rust_clients::without_tls(db) {
        Ok(db) => db,
        Err(why) => {
            eprintln!("skipping the HTTP rows: {why}");
            return Ok(skipped(&why));
        }
    };
    // The original posts as andrewbrown: the reference seed's user, whose
    // post (with its reply) is the crud whose page is measured.
    let conn = &mut cruddur_db::establish(db)?;
    cruddur_db::repo::seed::seed_reference(conn)?;
    let seed_post = cruddur_db::user_page(conn, "andrewbrown", cruddur_db::FeedPage::first(1))?
        .activities
        .last()
        .map(|a| a.uuid)
        .ok_or("the reference seed has no post")?;
    let thread = format!("{PROFILE_PATH}/status/{seed_post}");
    // 2 s in a quick run (1 s per side by default), 10 s in a full one;
    // `--seconds N` makes each cell 2N s.
    let seconds = 2 * plan.seconds;
    // The in-process side beside ours, so that the rotation puts them next
    // to each other in most rounds.
    let servers: &[Server] = if rust_only {
        &[
            Server::Ours,
            Server::InProcess,
            Server::RustPeer,
            Server::OursBare,
            Server::OursTraced,
            Server::OursSampled,
        ]
    } else {
        &[
            Server::Ours,
            Server::InProcess,
            Server::RustPeer,
            Server::OursBare,
            Server::OursTraced,
            Server::OursSampled,
            Server::FlaskDev,
            Server::Gunicorn,
        ]
    };
    let sink = OtlpSink::start()?;
    let in_process = InProcess::connect(db)?;
    // `None`: the in-process side, which has no server.
    let mut running = Vec::new();
    for &server in servers {
        check_stop()?;
        let live = match server {
            Server::InProcess => None,
            _ => Some(setup.start(server, db, &sink.endpoint)?),
        };
        running.push((server, live));
    }
    let mut results: Vec<(Server, Cells)> =
        servers.iter().map(|&server| (server, Vec::new())).collect();
    for round in 0..plan.http_rounds {
        for endpoint in Endpoint::ALL {
            for &level in endpoint.levels() {
                for turn in 0..running.len() {
                    check_stop()?;
                    let index = (turn + round) % running.len();
                    let (server, ref live) = running[index];
                    if !endpoint.served_by(server, level) {
                        continue;
                    }
                    let run = match live {
                        Some(live) => setup.load(
                            &live.base,
                            &endpoint.path(&thread),
                            endpoint,
                            level,
                            seconds,
                        )?,
                        None => in_process.load(level, seconds)?,
                    };
                    eprintln!(
                        "http, round {}, {}, {} connection(s), {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                        round + 1,
                        endpoint.label(),
                        level,
                        server.label(),
                        run.requests_per_s,
                        run.p50_ms,
                        run.p99_ms,
                        run.errors
                    );
                    let cells = &mut results[index].1;
                    match cells
                        .iter_mut()
                        .find(|(e, l, _)| *e == endpoint && *l == level)
                    {
                        Some((_, _, runs)) => runs.push(run),
                        None => cells.push((endpoint, level, vec![run])),
                    }
                }
            }
        }
    }
    for live in running.into_iter().filter_map(|(_, live)| live) {
        live.stop();
    }
    let exports = sink.exports();
    eprintln!("http: the OTLP sink answered {exports} export request(s) of the traced service");
    if exports == 0 {
        return fail("the traced service exported no spans: its row would measure nothing");
    }
    Ok(rows(&results))
}

/// One server's measurements: each endpoint at each level, one run per
/// round.
type Cells = Vec<(Endpoint, usize, Vec<LoadRun>)>;

/// The median of each of `runs`' numbers, and the sum of their errors.
fn pooled(runs: &[LoadRun]) -> LoadRun {
    let of = |pick: fn(&LoadRun) -> f64| median(runs.iter().map(pick).collect());
    LoadRun {
        requests_per_s: of(|r| r.requests_per_s),
        p50_ms: of(|r| r.p50_ms),
        p99_ms: of(|r| r.p99_ms),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// Compares ours with each peer (the Flask servers, the Rust peer, the
/// in-process side), cell by cell; then observability's cost.
fn rows(results: &[(Server, Cells)]) -> Measured {
    let mut measured = Measured::default();
    let Some((_, ours)) = results.iter().find(|(s, _)| *s == Server::Ours) else {
        return measured;
    };
    let mut worst_p99 = 0.0_f64;
    let mut worst_rust_p99 = 0.0_f64;
    for (endpoint, level, mine_runs) in ours {
        for (server, theirs) in results.iter().filter(|(s, _)| {
            matches!(
                s,
                Server::RustPeer | Server::FlaskDev | Server::Gunicorn | Server::InProcess
            )
        }) {
            let Some((_, _, peer_runs)) =
                theirs.iter().find(|(e, l, _)| e == endpoint && l == level)
            else {
                continue;
            };
            // Within each round, then the median over rounds.
            let per_round = |f: fn(&LoadRun, &LoadRun) -> f64| {
                median(
                    mine_runs
                        .iter()
                        .zip(peer_runs)
                        .map(|(m, p)| f(m, p))
                        .collect(),
                )
            };
            let ratio = per_round(|m, p| m.requests_per_s / p.requests_per_s);
            let p99_ratio = per_round(|m, p| m.p99_ms / p.p99_ms);
            let (mine, peer) = (&pooled(mine_runs), &pooled(peer_runs));
            let goal = match (endpoint, server) {
                (Endpoint::Home, Server::FlaskDev) => 10.0,
                (Endpoint::Home, Server::Gunicorn) => 3.0,
                _ => 0.0,
            };
            // The Rust peer's and the in-process side's targets hold at
            // every level.
            let target = match server {
                Server::RustPeer => Target::AtLeast(1.0),
                Server::InProcess => Target::AtLeast(IN_PROCESS_SHARE),
                _ if *level == TARGET_LEVEL && goal > 0.0 => Target::AtLeast(goal),
                _ => Target::None,
            };
            let peer_key = match server {
                Server::RustPeer => "axum_peer",
                Server::FlaskDev => "flask_dev",
                Server::InProcess => "in_process",
                _ => "gunicorn",
            };
            match server {
                Server::RustPeer => worst_rust_p99 = worst_rust_p99.max(p99_ratio),
                // No p99 target: its calls make no HTTP round trip.
                Server::InProcess => {}
                _ => worst_p99 = worst_p99.max(p99_ratio),
            }
            measured.ratios.push((
                format!("http_{}_vs_{peer_key}_c{level}", endpoint.key()),
                ratio,
            ));
            measured.ratios.push((
                format!("http_{}_p99_vs_{peer_key}_c{level}", endpoint.key()),
                p99_ratio,
            ));
            let errors = |run: &LoadRun| {
                if run.errors > 0 {
                    format!(" ({} errors)", run.errors)
                } else {
                    String::new()
                }
            };
            measured.rows.push(Row {
                what: format!(
                    "HTTP {} {}{}",
                    method(*endpoint),
                    endpoint.label(),
                    errors(mine)
                ),
                clients: level.to_string(),
                ours: cells(mine),
                peer: format!("{}{}", server.label(), errors(peer)),
                theirs: cells(peer),
                ratio: Some(ratio),
                target,
            });
        }
    }
    observability_rows(results, &mut measured);
    let has = |server| results.iter().any(|(s, _)| *s == server);
    if has(Server::RustPeer) {
        measured
            .ratios
            .push(("http_axum_peer_worst_p99_ratio".into(), worst_rust_p99));
        measured.rows.push(Row {
            what: "HTTP p99, ours ÷ the Rust peer's, the worst of every level and endpoint".into(),
            clients: "–".into(),
            ours: dash(),
            peer: Server::RustPeer.label(),
            theirs: dash(),
            ratio: Some(worst_rust_p99),
            target: Target::AtMost(1.0),
        });
    }
    if has(Server::FlaskDev) || has(Server::Gunicorn) {
        measured
            .ratios
            .push(("http_worst_p99_ratio".into(), worst_p99));
        measured.rows.push(Row {
            what: "HTTP p99, ours ÷ Flask's, the worst of every Flask row above".into(),
            clients: "–".into(),
            ours: dash(),
            peer: "both Flask servers".into(),
            theirs: dash(),
            ratio: Some(worst_p99),
            target: Target::Below(1.0),
        });
    }
    measured
}

/// What metrics and traces cost: the default (metrics on) and the traced
/// service against the bare one, per round, on the feed and posts at the
/// target level. The target: at most 5% of requests/s.
fn observability_rows(results: &[(Server, Cells)], measured: &mut Measured) {
    let cells_of = |server| results.iter().find(|(s, _)| *s == server).map(|(_, c)| c);
    let Some(bare) = cells_of(Server::OursBare) else {
        return;
    };
    for (server, key) in [
        (Server::Ours, "metrics"),
        (Server::OursTraced, "traced"),
        (Server::OursSampled, "sampled"),
    ] {
        let Some(observed) = cells_of(server) else {
            continue;
        };
        for (endpoint, level, bare_runs) in bare {
            let Some((_, _, runs)) = observed
                .iter()
                .find(|(e, l, _)| e == endpoint && l == level)
            else {
                continue;
            };
            let ratio = median(
                runs.iter()
                    .zip(bare_runs)
                    .map(|(o, b)| o.requests_per_s / b.requests_per_s)
                    .collect(),
            );
            measured.ratios.push((
                format!("http_{}_{key}_on_vs_off_c{level}", endpoint.key()),
                ratio,
            ));
            measured.rows.push(Row {
                what: format!("HTTP {} {}", method(*endpoint), endpoint.label()),
                clients: level.to_string(),
                ours: cells(&pooled(runs)),
                peer: Server::OursBare.label(),
                theirs: cells(&pooled(bare_runs)),
                ratio: Some(ratio),
                target: Target::AtLeast(0.95),
            });
        }
    }
}

/// A sink for OTLP over HTTP: answers every request `200` with an empty
/// body at once, so that the traced service's cost is its own.
struct OtlpSink {
    endpoint: String,
    /// The export requests answered: the traced row means something only
    /// when spans arrived.
    exports: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl OtlpSink {
    fn start() -> BenchResult<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let exports = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&exports);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = std::sync::Arc::clone(&counter);
                std::thread::spawn(move || drain_requests(stream, &counter));
            }
        });
        Ok(Self { endpoint, exports })
    }

    fn exports(&self) -> u64 {
        self.exports.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Reads HTTP/1.1 requests on `stream` (their bodies by `Content-Length`)
/// and answers each `200`, until the peer closes.
fn drain_requests(stream: std::net::TcpStream, exports: &std::sync::atomic::AtomicU64) {
    use std::io::{BufRead, BufReader, Read, Write};
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0_usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0_u8; length];
        exports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if reader.read_exact(&mut body).is_err()
            || writer
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                .is_err()
        {
            return;
        }
    }
}

fn method(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Post => "POST",
        Endpoint::Home | Endpoint::Profile | Endpoint::Thread => "GET",
    }
}

fn cells(run: &LoadRun) -> [String; 3] {
    [
        format!("{:.0}", run.requests_per_s),
        format!("{:.3}", run.p50_ms),
        format!("{:.3}", run.p99_ms),
    ]
}

fn skipped(why: &str) -> Measured {
    Measured::skipped(
        "HTTP: cruddur-db-service vs the original Flask backend",
        why,
    )
}

/// What the HTTP rows need: `oha`, our service's and the Rust peer's
/// binaries (built here, in the bench's own profile) and, for the Flask
/// rows, a Python with Flask and gunicorn.
struct Setup {
    oha: PathBuf,
    service: PathBuf,
    peer: PathBuf,
    python: Option<PathBuf>,
    bench_dir: PathBuf,
}

impl Setup {
    fn find(tools: &Tools, rust_only: bool) -> Result<Self, String> {
        let oha = tools
            .oha
            .clone()
            .ok_or("oha is not installed (cargo install oha --locked)")?;
        let python = if rust_only {
            None
        } else {
            Some(tools.python.clone()?)
        };
        let service = super::build_member("cruddur-db-service", "cruddur-db-service")?;
        let peer = super::build_member("cruddur-db-client-cost", "http-peer")?;
        Ok(Self {
            oha,
            service,
            peer,
            python,
            bench_dir: tools.bench_dir.clone(),
        })
    }

    fn python(&self) -> BenchResult<&Path> {
        match &self.python {
            Some(python) => Ok(python),
            None => fail("the Flask rows need a Python with Flask"),
        }
    }

    /// Starts `server` on a free loopback port over `db` and waits until
    /// its health check answers (at most 60 s).
    fn start(&self, server: Server, db: &DatabaseUrl, otlp: &str) -> BenchResult<Running> {
        let port = cruddur_db_test_support::free_port();
        let bind = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(self.bench_dir.join(format!("http_{port}.log")))?;
        let flask_dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench/python/flask_backend");
        let mut command = match server {
            Server::Ours | Server::OursBare | Server::OursTraced | Server::OursSampled => {
                let mut c = Command::new(&self.service);
                c.env("DATABASE_URL", db.expose())
                    .env("CRUDDUR_BIND", &bind)
                    .env("NO_COLOR", "1")
                    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
                c.env(CRUDDUR_POOL_SIZE.name(), POOL_SIZE.to_string());
                if server == Server::OursBare {
                    c.env("CRUDDUR_METRICS", "0");
                }
                if matches!(server, Server::OursTraced | Server::OursSampled) {
                    c.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
                        .env("OTEL_SERVICE_NAME", "cruddur-db-bench");
                }
                if server == Server::OursSampled {
                    c.env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
                        .env("OTEL_TRACES_SAMPLER_ARG", SAMPLED_RATIO);
                } else {
                    c.env_remove("OTEL_TRACES_SAMPLER")
                        .env_remove("OTEL_TRACES_SAMPLER_ARG");
                }
                c
            }
            Server::RustPeer => {
                let mut c = Command::new(&self.peer);
                c.env("CRUDDUR_CLIENT_COST_URL", db.expose())
                    .args(["--bind", &bind]);
                c
            }
            Server::FlaskDev => {
                let mut c = Command::new(self.python()?);
                c.args([
                    "-m",
                    "flask",
                    "--app",
                    "app.py",
                    "run",
                    "--no-debugger",
                    "--no-reload",
                ])
                .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
                c
            }
            Server::Gunicorn => {
                let mut c = Command::new(self.python()?);
                c.args(["-m", "gunicorn", "--workers", &GUNICORN_WORKERS.to_string()])
                    .args(["--bind", &bind, "app:app"]);
                c
            }
            Server::InProcess => return fail("the in-process side has no server to start"),
        };
        if matches!(server, Server::FlaskDev | Server::Gunicorn) {
            command
                .current_dir(&flask_dir)
                .env("CONNECTION_URL", db.expose())
                .env("PYTHONUNBUFFERED", "1");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", server.label()))?;
        let running = Running {
            child,
            base: format!("http://{bind}"),
        };
        let started = Instant::now();
        while !running.healthy() {
            check_stop()?;
            if started.elapsed() > Duration::from_secs(60) {
                return fail(format!(
                    "{} did not answer its health check within 60 s (log: target/bench/http_{port}.log)",
                    server.label()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Warm up: pools filled, code paths hot.
        self.load(&running.base, "/api/activities/home", Endpoint::Home, 16, 1)?;
        Ok(running)
    }

    /// `oha` on `path` (of `endpoint`) with `connections` for `seconds`, waiting for
    /// the requests still under way at the end.
    fn load(
        &self,
        base: &str,
        path: &str,
        endpoint: Endpoint,
        connections: usize,
        seconds: u64,
    ) -> BenchResult<LoadRun> {
        let mut command = Command::new(&self.oha);
        command
            .args([
                "--no-tui",
                "--output-format",
                "json",
                "--wait-ongoing-requests-after-deadline",
            ])
            .args(["-c", &connections.to_string()])
            .args(["-z", &format!("{seconds}s")]);
        if endpoint == Endpoint::Post {
            command
                .args(["-m", "POST", "-H", "Content-Type: application/json"])
                .args(["-d", POST_BODY]);
        }
        let out = command
            .arg(format!("{base}{path}"))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return fail(format!(
                "oha failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        parse_oha(&out.stdout).map_err(|e| format!("cannot read oha's report: {e}").into())
    }
}

/// A server under test; killed if still running when dropped.
struct Running {
    child: Child,
    base: String,
}

impl Running {
    /// Whether `GET /api/health-check` answers 200 (HTTP/1.0, by hand:
    /// one request needs no client library).
    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Some(address) = self.base.strip_prefix("http://") else {
            return false;
        };
        let Ok(mut stream) = std::net::TcpStream::connect(address) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /api/health-check HTTP/1.0\r\nHost: {address}\r\n\r\n");
        let mut head = [0_u8; 12];
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_exact(&mut head).is_ok()
            && head.starts_with(b"HTTP/1.")
            && &head[9..12] == b"200"
    }

    /// SIGTERM, then up to 10 s for it to exit.
    fn stop(mut self) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        #[expect(unsafe_code, reason = "SIGTERM through libc")]
        // SAFETY: kill(2) on our own child; it touches no memory of ours.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Requests/s, the 50th and 99th latency percentiles (seconds in the
/// report) and the failures of an `oha --output-format json` report.
fn parse_oha(json: &[u8]) -> Result<LoadRun, String> {
    let report: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let number = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("no {pointer}"))
    };
    let count = |key: &str, keep: &dyn Fn(&str) -> bool| -> u64 {
        report
            .get(key)
            .and_then(serde_json::Value::as_object)
            .map(|map| {
                map.iter()
                    .filter(|(k, _)| keep(k))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    Ok(LoadRun {
        requests_per_s: number("/summary/requestsPerSec")?,
        p50_ms: number("/latencyPercentiles/p50")? * 1000.0,
        p99_ms: number("/latencyPercentiles/p99")? * 1000.0,
        errors: count("errorDistribution", &|_| true)
            + count("statusCodeDistribution", &|status| !status.starts_with('2')),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oha_report_is_read() {
        let report = br#"{
            "summary": {"successRate": 1.0, "requestsPerSec": 12345.5},
            "latencyPercentiles": {"p50": 0.00085, "p99": 0.00201},
            "statusCodeDistribution": {"200": 24000, "503": 5},
            "errorDistribution": {"connection closed": 2}
        }"#;
        let run = parse_oha(report).unwrap();
        assert!((run.p50_ms - 0.85).abs() < 1e-9);
        assert!((run.p99_ms - 2.01).abs() < 1e-9);
        assert!((run.requests_per_s - 12345.5).abs() < 1e-9);
        assert_eq!(run.errors, 7);
        assert!(parse_oha(b"{}").unwrap_err().contains("requestsPerSec"));
        assert!(parse_oha(b"garbage").is_err());
    }

    #[test]
    fn an_in_process_run_becomes_a_cell() {
        let run = Run {
            transactions: 4,
            seconds: 2.0,
            latencies_us: vec![400.0, 100.0, 300.0, 200.0],
        };
        let cell = LoadRun::from(&run);
        assert!((cell.requests_per_s - 2.0).abs() < 1e-9);
        assert!((cell.p50_ms - 0.3).abs() < 1e-9);
        assert!((cell.p99_ms - 0.4).abs() < 1e-9);
        assert_eq!(cell.errors, 0);
    }

    #[test]
    fn ours_is_compared_with_the_in_process_side_round_by_round() {
        let run = |requests_per_s, p99_ms| LoadRun {
            requests_per_s,
            p50_ms: 1.0,
            p99_ms,
            errors: 0,
        };
        let ours = vec![run(700.0, 2.0), run(800.0, 2.0), run(100.0, 9.0)];
        let in_process = vec![run(1000.0, 1.0), run(1000.0, 4.0), run(1000.0, 1.0)];
        let results = vec![
            (Server::Ours, vec![(Endpoint::Home, 16, ours)]),
            (Server::InProcess, vec![(Endpoint::Home, 16, in_process)]),
        ];
        let measured = rows(&results);
        // Medians of 0.7, 0.8, 0.1 and of 2, 0.5, 9; no worst-p99 key
        // without a Flask server or the Rust peer.
        assert_eq!(
            measured.ratios,
            [
                ("http_home_vs_in_process_c16".to_owned(), 0.7),
                ("http_home_p99_vs_in_process_c16".to_owned(), 2.0),
            ]
        );
        let [row] = measured.rows.as_slice() else {
            panic!("{} rows", measured.rows.len());
        };
        assert_eq!(row.peer, Server::InProcess.label());
        assert!(matches!(row.target, Target::AtLeast(t) if t == IN_PROCESS_SHARE));
    }
}
