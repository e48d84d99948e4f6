//! The Rust PostgreSQL clients fetching the feed's first page, cruddur-db
//! among them, each timed by the same harness in a process of its own, for
//! the bench's "Rust clients" rows.
//!
//! ```text
//! CRUDDUR_CLIENT_COST_URL=postgres://… rust-peers --peer NAME --session defaults|ours \
//!     --clients N --seconds S [--warmup N]
//! ```
//!
//! Every peer runs the very statement cruddur-db's typed feed sends
//! (captured with Diesel's instrumentation before anything is timed; for
//! diesel-async, the same query written with the same DSL), prepared once
//! per connection as each client does by default, and decodes the same ten
//! fields:
//!
//! | peer | clients are |
//! |---|---|
//! | `cruddur-db` | threads sharing one `Repository` (the crate's r2d2 pool), `home_feed` |
//! | `postgres` | threads, one `postgres::Client` each |
//! | `tokio-postgres` | tasks on a default multi-threaded runtime, one connection each |
//! | `sqlx` | tasks sharing a `PgPool` of N connections, otherwise at sqlx's defaults; `query_as` into a `FromRow` struct |
//! | `diesel-async` | tasks, one `AsyncPgConnection` each, loading `FeedItem::as_select()` |
//!
//! `--session defaults` leaves the server's settings as they are;
//! `--session ours` first sets what cruddur-db's pool sets on its
//! connections (`plan_cache_mode`, `TimeZone`, `statement_timeout`), so that the server does the
//! same work for both sides. Each client connects, fetches `--warmup`
//! pages (200), waits for the others, then fetches pages for `--seconds`.
//! The result is one line of JSON on stdout: `pages`, `seconds` and every
//! page's latency in microseconds (`latencies_us`).
//!
//! The URL comes from the environment, not the command line: it may hold a
//! password. TLS is whatever the URL says; the bench says `sslmode=disable`
//! for every side, and none of these clients is built with TLS.

use std::process::ExitCode;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use client_cost::{
    AnyResult, PAGE, PeerItem, capture_typed_statement, decode_page, exit_code, fail, full_page,
};
use cruddur_db::schema::{activities, users};
use cruddur_db::{Config, Consistency, DatabaseUrl, FeedItem, FeedPage, Repository};
use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};

/// Where the URL comes from.
const URL_VAR: &str = "CRUDDUR_CLIENT_COST_URL";

const USAGE: &str = "\
usage: rust-peers --peer NAME --session defaults|ours --clients N --seconds S [--warmup N]

Fetches the feed's first page with one of the other Rust clients, on the
migrated, seeded database in CRUDDUR_CLIENT_COST_URL, and prints pages,
seconds and latencies as one line of JSON.

Peers: postgres, tokio-postgres, sqlx, diesel-async, and cruddur-db itself
(its typed feed through its pool, which sets its own session: --session ours)";

/// The clients compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// cruddur-db itself, timed by the same harness as the others.
    Ours,
    Postgres,
    TokioPostgres,
    Sqlx,
    DieselAsync,
}

impl Peer {
    const ALL: [Peer; 5] = [
        Peer::Ours,
        Peer::Postgres,
        Peer::TokioPostgres,
        Peer::Sqlx,
        Peer::DieselAsync,
    ];

    fn name(self) -> &'static str {
        match self {
            Peer::Ours => "cruddur-db",
            Peer::Postgres => "postgres",
            Peer::TokioPostgres => "tokio-postgres",
            Peer::Sqlx => "sqlx",
            Peer::DieselAsync => "diesel-async",
        }
    }
}

#[derive(Debug)]
struct Plan {
    peer: Peer,
    /// Whether to give the session cruddur-db's settings.
    ours: bool,
    clients: usize,
    seconds: u64,
    warmup: usize,
}

fn parse(args: &[String]) -> AnyResult<Option<Plan>> {
    let (mut peer, mut ours, mut clients, mut seconds) = (None, None, None, None);
    let mut warmup = 200;
    let mut it = args.iter();
    let number = |v: Option<&String>, flag: &str| -> AnyResult<usize> {
        match v.and_then(|v| v.parse::<usize>().ok()) {
            Some(n) => Ok(n),
            None => fail(format!("{flag} takes a whole number")),
        }
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--peer" => {
                let name = it.next().map(String::as_str).unwrap_or_default();
                peer = Some(
                    Peer::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .ok_or_else(|| {
                            format!(
                                "unknown peer `{name}` (one of: {})",
                                Peer::ALL.map(Peer::name).join(", ")
                            )
                        })?,
                );
            }
            "--session" => {
                ours = Some(match it.next().map(String::as_str) {
                    Some("ours") => true,
                    Some("defaults") => false,
                    _ => return fail("--session takes `defaults` or `ours`"),
                })
            }
            "--clients" => clients = Some(number(it.next(), arg)?),
            "--seconds" => seconds = Some(number(it.next(), arg)? as u64),
            "--warmup" => warmup = number(it.next(), arg)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return fail(format!("unknown argument `{other}` (see --help)")),
        }
    }
    match (peer, ours, clients, seconds) {
        (Some(peer), Some(ours), Some(clients), Some(seconds)) if clients > 0 && seconds > 0 => {
            Ok(Some(Plan {
                peer,
                ours,
                clients,
                seconds,
                warmup,
            }))
        }
        _ => fail("--peer, --session, --clients N > 0 and --seconds S > 0 are required"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    exit_code(parse(&args).and_then(|plan| match plan {
        Some(plan) => run(&plan),
        None => Ok(()),
    }))
}

/// What the peers are given: the URL, the statement and the `SET`s.
struct Job {
    url: String,
    sql: Arc<str>,
    /// The `SET` statements for `--session ours`; empty for `defaults`.
    settings: String,
}

fn run(plan: &Plan) -> AnyResult<()> {
    let Ok(raw) = std::env::var(URL_VAR) else {
        return fail(format!("the database URL is read from {URL_VAR}"));
    };
    let url = DatabaseUrl::parse(&raw)?;
    let (sql, settings) = capture_typed_statement(&url)?;
    let job = Arc::new(Job {
        url: url.expose().to_owned(),
        sql: sql.into(),
        settings: if plan.ours { settings } else { String::new() },
    });
    let clock = Arc::new(Clock::new(plan));
    let tallies = match plan.peer {
        Peer::Ours if !plan.ours => {
            return fail("cruddur-db's pool sets its own session: --session ours");
        }
        Peer::Ours => run_ours(plan, &url, &clock)?,
        Peer::Postgres => run_postgres(plan, &job, &clock)?,
        Peer::TokioPostgres | Peer::Sqlx | Peer::DieselAsync => run_tasks(plan, &job, &clock)?,
    };
    let begin = clock.start.get().copied().unwrap_or_else(Instant::now);
    let mut pages = 0;
    let mut latencies_us = Vec::new();
    let mut end = begin;
    for tally in tallies {
        pages += tally.latencies_us.len();
        latencies_us.extend(tally.latencies_us);
        end = end.max(tally.end);
    }
    let report = serde_json::json!({
        "peer": plan.peer.name(),
        "session": if plan.ours { "ours" } else { "defaults" },
        "clients": plan.clients,
        "pages": pages,
        "seconds": (end - begin).as_secs_f64(),
        "latencies_us": latencies_us,
    });
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Timing: every client warms up, then the clock starts for all at once

/// The start line all clients share.
struct Clock {
    warmed: Barrier,
    start: OnceLock<Instant>,
    length: Duration,
    warmup: usize,
}

impl Clock {
    fn new(plan: &Plan) -> Self {
        Self {
            warmed: Barrier::new(plan.clients),
            start: OnceLock::new(),
            length: Duration::from_secs(plan.seconds),
            warmup: plan.warmup,
        }
    }

    /// Waits until every client has warmed up (or failed to), then returns
    /// the deadline. A client that failed still waits, so that the others
    /// are not left at the barrier.
    fn start_line(&self) -> Instant {
        self.warmed.wait();
        *self.start.get_or_init(Instant::now) + self.length
    }
}

/// What one client did in the timed part.
struct Tally {
    latencies_us: Vec<f64>,
    end: Instant,
}

/// The timed loop of one client.
fn timed(deadline: Instant, mut page: impl FnMut() -> AnyResult<()>) -> AnyResult<Tally> {
    let mut latencies_us = Vec::with_capacity(64 * 1024);
    let mut now = Instant::now();
    while now < deadline {
        page()?;
        let done = Instant::now();
        latencies_us.push((done - now).as_nanos() as f64 / 1000.0);
        now = done;
    }
    Ok(Tally {
        latencies_us,
        end: now,
    })
}

// ---------------------------------------------------------------------------
// cruddur-db: threads sharing one `Repository` (its r2d2 pool)

fn run_ours(plan: &Plan, url: &DatabaseUrl, clock: &Arc<Clock>) -> AnyResult<Vec<Tally>> {
    let repo = Arc::new(Repository::connect(&Config::new(url.clone()))?);
    let page = |repo: &Repository| -> AnyResult<()> {
        let page = repo.home_feed(Consistency::Primary, FeedPage::first(PAGE))?;
        full_page(page.len())?;
        std::hint::black_box(page);
        Ok(())
    };
    let handles: Vec<_> = (0..plan.clients)
        .map(|_| {
            let (repo, clock) = (Arc::clone(&repo), Arc::clone(clock));
            std::thread::spawn(move || -> AnyResult<Tally> {
                let warmed = (0..clock.warmup).try_for_each(|_| page(&repo));
                let deadline = clock.start_line();
                warmed?;
                timed(deadline, || page(&repo))
            })
        })
        .collect();
    join(handles)
}

/// Every client thread's tally, or the first failure.
fn join(handles: Vec<std::thread::JoinHandle<AnyResult<Tally>>>) -> AnyResult<Vec<Tally>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| fail("a client thread panicked"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// postgres: one thread and one connection per client

fn run_postgres(plan: &Plan, job: &Arc<Job>, clock: &Arc<Clock>) -> AnyResult<Vec<Tally>> {
    let handles: Vec<_> = (0..plan.clients)
        .map(|_| {
            let (job, clock) = (Arc::clone(job), Arc::clone(clock));
            std::thread::spawn(move || -> AnyResult<Tally> {
                let warm = || -> AnyResult<_> {
                    let mut client = postgres::Client::connect(&job.url, postgres::NoTls)?;
                    client.batch_execute(&job.settings)?;
                    let statement = client.prepare(&job.sql)?;
                    for _ in 0..clock.warmup {
                        postgres_page(&mut client, &statement)?;
                    }
                    Ok((client, statement))
                };
                let warmed = warm();
                let deadline = clock.start_line();
                let (mut client, statement) = warmed?;
                timed(deadline, || postgres_page(&mut client, &statement))
            })
        })
        .collect();
    join(handles)
}

fn postgres_page(client: &mut postgres::Client, statement: &postgres::Statement) -> AnyResult<()> {
    decode_page(&client.query(statement, &[&PAGE])?)
}

// ---------------------------------------------------------------------------
// The async peers: one task per client on a default multi-threaded runtime

/// An async client, connected: how it fetches one page.
trait AsyncPage: Send + 'static {
    fn page(&mut self) -> impl Future<Output = AnyResult<()>> + Send;
}

fn run_tasks(plan: &Plan, job: &Arc<Job>, clock: &Arc<Clock>) -> AnyResult<Vec<Tally>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match plan.peer {
            Peer::TokioPostgres => {
                spawn_clients(plan, clock, || TokioPostgres::connect(Arc::clone(job))).await
            }
            Peer::Sqlx => {
                let peer = SqlxPeer {
                    pool: sqlx_pool(plan, job).await?,
                    sql: Arc::clone(&job.sql),
                };
                spawn_clients(plan, clock, || {
                    let peer = peer.clone();
                    async move { Ok(peer) }
                })
                .await
            }
            Peer::DieselAsync => {
                spawn_clients(plan, clock, || DieselAsync::connect(Arc::clone(job))).await
            }
            Peer::Ours | Peer::Postgres => fail("this client runs on threads"),
        }
    })
}

/// Spawns `plan.clients` tasks, each connected by `connect`, warmed up and
/// then timed.
async fn spawn_clients<P, Fut>(
    plan: &Plan,
    clock: &Arc<Clock>,
    connect: impl Fn() -> Fut,
) -> AnyResult<Vec<Tally>>
where
    P: AsyncPage,
    Fut: Future<Output = AnyResult<P>> + Send + 'static,
{
    let handles: Vec<_> = (0..plan.clients)
        .map(|_| {
            let clock = Arc::clone(clock);
            let connecting = connect();
            tokio::spawn(async move {
                let warmed = async {
                    let mut peer = connecting.await?;
                    for _ in 0..clock.warmup {
                        peer.page().await?;
                    }
                    AnyResult::Ok(peer)
                }
                .await;
                // The barrier blocks its thread: on a runtime worker, with
                // more clients than workers, the last ones would never reach
                // it.
                let deadline = {
                    let clock = Arc::clone(&clock);
                    tokio::task::spawn_blocking(move || clock.start_line()).await?
                };
                let mut peer = warmed?;
                let mut latencies_us = Vec::with_capacity(64 * 1024);
                let mut now = Instant::now();
                while now < deadline {
                    peer.page().await?;
                    let done = Instant::now();
                    latencies_us.push((done - now).as_nanos() as f64 / 1000.0);
                    now = done;
                }
                AnyResult::Ok(Tally {
                    latencies_us,
                    end: now,
                })
            })
        })
        .collect();
    let mut tallies = Vec::new();
    for handle in handles {
        tallies.push(handle.await??);
    }
    Ok(tallies)
}

/// tokio-postgres: its own connection, the statement prepared once.
struct TokioPostgres {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
}

impl TokioPostgres {
    async fn connect(job: Arc<Job>) -> AnyResult<Self> {
        let (client, connection) = tokio_postgres::connect(&job.url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(&job.settings).await?;
        let statement = client.prepare(&job.sql).await?;
        Ok(Self { client, statement })
    }
}

impl AsyncPage for TokioPostgres {
    async fn page(&mut self) -> AnyResult<()> {
        decode_page(&self.client.query(&self.statement, &[&PAGE]).await?)
    }
}

/// sqlx: every task shares one pool of `clients` connections.
#[derive(Clone)]
struct SqlxPeer {
    pool: sqlx::PgPool,
    sql: Arc<str>,
}

async fn sqlx_pool(plan: &Plan, job: &Job) -> AnyResult<sqlx::PgPool> {
    let settings: Arc<str> = job.settings.as_str().into();
    let options = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(plan.clients)?)
        .after_connect(move |conn, _| {
            let settings = Arc::clone(&settings);
            Box::pin(async move {
                if !settings.is_empty() {
                    sqlx::Executor::execute(
                        &mut *conn,
                        sqlx::raw_sql(sqlx::AssertSqlSafe(settings)),
                    )
                    .await?;
                }
                Ok(())
            })
        });
    Ok(options.connect(&job.url).await?)
}

impl AsyncPage for SqlxPeer {
    async fn page(&mut self) -> AnyResult<()> {
        let page: Vec<PeerItem> = sqlx::query_as(sqlx::AssertSqlSafe(Arc::clone(&self.sql)))
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await?;
        full_page(page.len())?;
        std::hint::black_box(page);
        Ok(())
    }
}

/// diesel-async: its own `AsyncPgConnection`, the feed's query written with
/// the same DSL as cruddur-db's, prepared once by its statement cache.
struct DieselAsync {
    conn: diesel_async::AsyncPgConnection,
}

impl DieselAsync {
    async fn connect(job: Arc<Job>) -> AnyResult<Self> {
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        let mut conn = diesel_async::AsyncPgConnection::establish(&job.url).await?;
        if !job.settings.is_empty() {
            conn.batch_execute(&job.settings).await?;
        }
        Ok(Self { conn })
    }
}

impl AsyncPage for DieselAsync {
    async fn page(&mut self) -> AnyResult<()> {
        use diesel_async::RunQueryDsl;
        let page: Vec<FeedItem> = activities::table
            .inner_join(users::table)
            .select(FeedItem::as_select())
            .order((activities::created_at.desc(), activities::uuid.desc()))
            .limit(PAGE)
            .load(&mut self.conn)
            .await?;
        full_page(page.len())?;
        std::hint::black_box(page);
        Ok(())
    }
}
