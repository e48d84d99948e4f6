//! Benchmarks cruddur-db against its peers, side by side in one run.
//!
//! ```text
//! cargo run --release --example bench            # 10k users, 1M activities (a few minutes)
//! cargo run --release --example bench -- --quick # 100k activities, short runs (under a minute)
//! cargo run --release --example bench -- --no-replicas    # without the replica rows
//! cargo run --release --example bench -- --replicas-only  # the replica rows alone
//! cargo run --release --example bench -- --http-only      # the HTTP rows alone (Flask when a Python has it)
//! cargo run --release --example bench -- --http-rust-only # the same against the Rust peer alone, no Python
//! cargo run --release --example bench -- --pooler-only    # the feed through PgBouncer alone
//! ```
//!
//! The benchmark's code is here: the harness (this directory) and the
//! Python peers (`python/`). The Rust peers are the workspace member
//! `crates/client-cost`, because their dependencies (sqlx, tokio-postgres,
//! diesel-async, axum with deadpool) must not become the library's; the
//! harness builds and runs its binaries.
//!
//! It creates its own databases (random names, `cruddur_bench_…`) on the
//! server of `TEST_DATABASE_URL` (the server the tests create their
//! throwaway databases on), else of `DATABASE_URL`, else of `CONNECTION_URL`,
//! else `postgres://localhost/postgres`, and drops them at the end, also on
//! an error or Ctrl-C. It never touches another database.
//!
//! | row | ours | peer, in the same run |
//! |---|---|---|
//! | feed, typed path | `Repository::home_feed` through the r2d2 pool | `pgbench -n -M prepared` with the SQL it sends (captured with Diesel's instrumentation) |
//! | feed, JSON path | `Repository::home_feed_json` | `pgbench -n -M prepared` with the same JSON statement |
//! | seed | `seed_synthetic` (COPY) in a fresh process | `psql \copy … (FORMAT csv)` of the same rows into an empty migrated database |
//! | scale | feed p50 at the full size | feed p50 at 1k activities |
//! | Python | `home_feed_json` | `examples/bench/python/python_feed.py` (psycopg 3 + psycopg_pool), same statement |
//! | HTTP | `cruddur-db-service` under `oha` at 1, 16 and 64 connections, both endpoints | axum on deadpool-postgres with the same SQL (`crates/client-cost`'s `http-peer`), the original Flask backend (`examples/bench/python/flask_backend`) on Flask's development server and under gunicorn, and on the feed `Repository::home_feed_json` in-process on as many threads, a pool of the service's size (see `http.rs`) |
//! | pooler | `home_feed` in pooler mode through PgBouncer (transaction mode, 4 server connections) at 4 and 64 clients; the statement cache off | the same server directly; the cache on (see `pooler.rs`) |
//! | replica router | `home_feed(Eventual)` / `AtLeast(token)`, routed to a standby | `home_feed` on the same pool settings straight at that standby |
//! | standby under writes | `home_feed(Eventual)` served by a standby on a CPU of its own, writers on the primary | the same readers on the primary alone, same writers |
//!
//! The replica rows run on a private primary and hot standby made for the
//! run (see `replicas.rs`); without `initdb` and `pg_basebackup` they are
//! skipped, with the reason in the table.
//!
//! Every feed row runs for the same number of seconds with the same client
//! threads on both sides, alternating which side goes first. The table is
//! printed and written to `target/bench/results.md`; the ratios go to
//! `target/bench/summary.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

mod http;
mod pooler;
mod replicas;
mod rust_clients;

use cruddur_db::repo::synthetic::{
    SYNTHETIC_ACTIVITY_COLUMNS, SYNTHETIC_USER_COLUMNS, write_synthetic_csv,
};
use cruddur_db::{
    Config, Consistency, DatabaseUrl, FeedPage, Repository, Settings, SyntheticSeed, admin,
    establish, home_feed, home_feed_json, run_migrations, seed_synthetic,
};
use diesel::RunQueryDsl;
use diesel::connection::{Connection as _, InstrumentationEvent, SimpleConnection};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The hidden first argument that makes the binary load a synthetic seed
/// and report its time and peak memory (so that the measured process does
/// nothing else).
const SEED_CHILD: &str = "--seed-child";
/// How the seed child learns its database (not argv: it may hold a password).
const SEED_CHILD_URL: &str = "CRUDDUR_BENCH_SEED_URL";
const PAGE: i64 = 20;
const RNG_SEED: u64 = 20_260_101;
const USERS: u64 = 10_000;
const SMALL_ACTIVITIES: u64 = 1_000;

static STOP: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn fail<T>(message: impl Into<String>) -> BenchResult<T> {
    Err(message.into().into())
}

fn check_stop() -> BenchResult<()> {
    if stopped() {
        fail("interrupted")
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    activities: u64,
    seconds: u64,
    rounds: usize,
    seed_rounds: usize,
    /// Rounds of the HTTP cells.
    http_rounds: usize,
}

impl Plan {
    fn new(quick: bool, seconds: Option<u64>) -> Self {
        if quick {
            Self {
                quick,
                activities: 100_000,
                seconds: seconds.unwrap_or(1),
                rounds: 1,
                seed_rounds: 1,
                http_rounds: http::ROUNDS,
            }
        } else {
            Self {
                quick,
                activities: 1_000_000,
                seconds: seconds.unwrap_or(5),
                rounds: 2,
                seed_rounds: 2,
                http_rounds: http::ROUNDS,
            }
        }
    }

    fn spec(&self) -> SyntheticSeed {
        SyntheticSeed {
            users: USERS,
            activities: self.activities,
            rng_seed: RNG_SEED,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(SEED_CHILD) {
        return report(seed_child(&args[1..]));
    }
    let mut quick = false;
    let mut seconds = None;
    let mut http_rounds = None;
    let mut scope = Scope::All;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--no-replicas" => scope = Scope::NoReplicas,
            "--replicas-only" => scope = Scope::ReplicasOnly,
            "--rust-clients-only" => scope = Scope::RustClientsOnly,
            "--http-only" => scope = Scope::HttpOnly,
            "--http-rust-only" => scope = Scope::HttpRustOnly,
            "--pooler-only" => scope = Scope::PoolerOnly,
            "--seconds" => match it.next().and_then(|s| s.parse::<u64>().ok()) {
                Some(s) if s > 0 => seconds = Some(s),
                _ => return report(fail("--seconds takes a whole number of seconds > 0")),
            },
            "--http-rounds" => match it.next().and_then(|s| s.parse::<usize>().ok()) {
                Some(n) if n > 0 => http_rounds = Some(n),
                _ => return report(fail("--http-rounds takes a whole number > 0")),
            },
            "-h" | "--help" => {
                println!(
                    "usage: cargo run --release --example bench -- [--quick] [--seconds N] [--http-rounds N]\n\
                     \x20      [--no-replicas | --replicas-only | --rust-clients-only | --http-only\n\
                     \x20       | --http-rust-only | --pooler-only]\n\n\
                     --quick          100k activities and 1-second runs (the default is 1M, 2 x 5 s)\n\
                     --seconds N      length of each measured run\n\
                     --http-rounds N  rounds of the HTTP cells (default 3; the ratios are medians over rounds)\n\
                     --no-replicas    skip the rows on a private primary and standby\n\
                     --replicas-only  those rows alone (the server below is not used)\n\
                     --rust-clients-only  the typed feed against the other Rust clients alone\n\
                     --http-only      the HTTP rows alone: the Rust peer, the repository in-process,\n\
                     \x20                and Flask when a Python has it\n\
                     --http-rust-only the HTTP rows of the Rust peer, the repository in-process and\n\
                     \x20                observability's cost, no Flask\n\
                     --pooler-only    the feed through PgBouncer against directly, and the statement cache's cost\n\n\
                     Server: TEST_DATABASE_URL, else DATABASE_URL, else CONNECTION_URL,\n\
                     else postgres://localhost/postgres"
                );
                return ExitCode::SUCCESS;
            }
            other => return report(fail(format!("unknown argument `{other}` (see --help)"))),
        }
    }
    if let Err(e) = ctrlc::set_handler(|| {
        STOP.store(true, Ordering::Relaxed);
        eprintln!("\ninterrupted: stopping and dropping the benchmark databases");
    }) {
        eprintln!("warning: no Ctrl-C handler ({e}); an interrupted run leaves its databases");
    }
    let mut plan = Plan::new(quick, seconds);
    if let Some(rounds) = http_rounds {
        plan.http_rounds = rounds;
    }
    report(run(plan, scope))
}

fn report(result: BenchResult<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Databases of our own

/// The benchmark's databases; each one is dropped (`WITH (FORCE)`) when this
/// guard drops, whether the run ended well, with an error or a Ctrl-C.
struct Databases {
    prefix: String,
    server: DatabaseUrl,
    created: Mutex<Vec<DatabaseUrl>>,
}

impl Databases {
    fn new(server: DatabaseUrl) -> Self {
        Self {
            prefix: format!(
                "cruddur_bench_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            server,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Creates `<prefix>_<suffix>` (it cannot exist: the prefix is random)
    /// and applies the migrations.
    fn create(&self, suffix: &str) -> BenchResult<DatabaseUrl> {
        let url = self
            .server
            .with_database(&format!("{}_{suffix}", self.prefix));
        if !admin::create_database(&url)? {
            return fail(format!("{url} already exists; not touching it"));
        }
        lock(&self.created).push(url.clone());
        run_migrations(&mut establish(&url)?)?;
        Ok(url)
    }

    fn drop_one(&self, url: &DatabaseUrl) {
        let mut created = lock(&self.created);
        if let Some(i) = created.iter().position(|u| u.expose() == url.expose()) {
            let url = created.remove(i);
            if let Err(e) = admin::drop_database(&url, true) {
                eprintln!("warning: could not drop {url}: {e}");
            }
        }
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let urls: Vec<DatabaseUrl> = lock(&self.created).drain(..).collect();
        // Every database first, then what happened, with write errors
        // ignored: after a Ctrl-C, stderr may be a pipe whose reader (a
        // `tee`) is gone, and `eprintln!` would panic before the next drop.
        let outcomes: Vec<String> = urls
            .iter()
            .map(|url| match admin::drop_database(url, true) {
                Ok(_) => format!("dropped {}", url.database().unwrap_or_default()),
                Err(e) => format!("warning: could not drop {url}: {e}"),
            })
            .collect();
        let mut stderr = std::io::stderr().lock();
        for line in outcomes {
            let _ = writeln!(stderr, "{line}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The server the benchmark's databases go on. `TEST_DATABASE_URL` first:
/// like the tests, the bench creates and drops throwaway databases, so it
/// belongs on the server set aside for that.
fn server_url(settings: &Settings) -> BenchResult<DatabaseUrl> {
    use cruddur_db::variables::{CONNECTION_URL, DATABASE_URL};
    use cruddur_db_test_support::variables::TEST_DATABASE_URL;
    let url = [TEST_DATABASE_URL, DATABASE_URL, CONNECTION_URL]
        .iter()
        .find_map(|v| settings.get(v))
        .unwrap_or("postgres://localhost/postgres");
    Ok(DatabaseUrl::parse(url)?.with_database("postgres"))
}

/// The URL without its password (for other programs' argv) and the
/// password (for their environment).
fn split_password(url: &DatabaseUrl) -> BenchResult<(String, Option<String>)> {
    let mut parsed = url::Url::parse(url.expose())?;
    let password = url.password();
    if parsed.set_password(None).is_err() {
        return fail(format!("cannot pass {url} to the peers"));
    }
    Ok((parsed.to_string(), password))
}

fn execute(url: &DatabaseUrl, sql: &str) -> BenchResult<()> {
    let mut conn = establish(url)?;
    conn.batch_execute("SET statement_timeout = 0")?;
    conn.batch_execute(sql)?;
    Ok(())
}

/// Flushes dirty pages so that one load does not pay for the last one's
/// checkpoint. Needs superuser; without it the loads simply run as they are.
fn checkpoint(url: &DatabaseUrl) {
    if let Err(e) = execute(url, "CHECKPOINT") {
        eprintln!("note: CHECKPOINT refused ({e}); loads may overlap a checkpoint");
    }
}

// ---------------------------------------------------------------------------
// Measurements

/// One side of one row: throughput and latency.
#[derive(Debug, Clone, Default)]
struct Run {
    transactions: u64,
    seconds: f64,
    latencies_us: Vec<f64>,
}

impl Run {
    fn absorb(&mut self, other: Run) {
        self.transactions += other.transactions;
        self.seconds += other.seconds;
        self.latencies_us.extend(other.latencies_us);
    }

    fn tps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.transactions as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_by(f64::total_cmp);
        let i = ((sorted.len() - 1) as f64 * p).round() as usize;
        sorted[i] / 1000.0
    }
}

/// Calls of `op` each thread of [`run_ours`] makes before the clock starts.
const WARMUP: usize = 200;

/// Runs `op` on `clients` threads for `seconds`, after a warm-up in which
/// every thread has done `WARMUP` calls (so the pool holds its connections
/// and each has prepared its statements, as pgbench does before it counts).
fn run_ours(
    clients: usize,
    seconds: u64,
    op: &(dyn Fn() -> BenchResult<()> + Sync),
) -> BenchResult<Run> {
    // Two barriers: the clock starts once every thread has warmed up, and
    // the threads read it only after it is set.
    let warmed = Barrier::new(clients + 1);
    let go = Barrier::new(clients + 1);
    let start = Mutex::new(None::<Instant>);
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| -> BenchResult<(u64, Vec<f64>, Instant)> {
                    let warm = (0..WARMUP).try_for_each(|_| op());
                    warmed.wait();
                    go.wait();
                    warm?;
                    let begin = lock(&start).unwrap_or_else(Instant::now);
                    let deadline = begin + Duration::from_secs(seconds);
                    let mut latencies = Vec::with_capacity(64 * 1024);
                    let mut now = Instant::now();
                    while now < deadline && !stopped() {
                        op()?;
                        let done = Instant::now();
                        latencies.push((done - now).as_nanos() as f64 / 1000.0);
                        now = done;
                    }
                    Ok((latencies.len() as u64, latencies, now))
                })
            })
            .collect();
        warmed.wait();
        let begin = Instant::now();
        *lock(&start) = Some(begin);
        go.wait();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| fail("a client thread panicked"))
            })
            .collect();
        (begin, results)
    });
    let (begin, results) = results;
    let mut run = Run::default();
    let mut end = begin;
    for r in results {
        let (n, lat, finished) = r?;
        run.transactions += n;
        run.latencies_us.extend(lat);
        end = end.max(finished);
    }
    run.seconds = (end - begin).as_secs_f64();
    check_stop()?;
    Ok(run)
}

/// Builds `package` of this workspace in the profile this bench was built
/// in and returns the path of its binary `bin` (beside the bench's own
/// directory).
fn build_member(package: &str, bin: &str) -> Result<PathBuf, String> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--locked", "-p", package, "--bin", bin]);
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .map_err(|e| format!("cannot run cargo to build {package}: {e}"))?;
    if !status.success() {
        return Err(format!("building {package} failed ({status})"));
    }
    // target/<profile>/examples/bench -> target/<profile>/<bin>
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the bench's own path has no profile directory")?;
    let path = dir.join(bin);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} is missing after the build", path.display()))
    }
}

/// Finds a PostgreSQL client program on PATH or in `pg_config --bindir`.
fn pg_tool(settings: &Settings, name: &str) -> Option<PathBuf> {
    on_path(settings, name).or_else(|| {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        let p = Path::new(dir.trim()).join(name);
        p.is_file().then_some(p)
    })
}

/// `name` in a directory of `PATH`.
fn on_path(settings: &Settings, name: &str) -> Option<PathBuf> {
    settings
        .get(&cruddur_db_local::variables::PATH)
        .and_then(|paths| {
            std::env::split_paths(paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
}

struct Pgbench {
    program: PathBuf,
    dir: PathBuf,
    /// `PGOPTIONS` for pgbench's sessions: the settings our pool's sessions
    /// have that change how a statement runs.
    options: String,
}

impl Pgbench {
    /// `pgbench -n -M prepared -c N -j N -T seconds -f script`, logging every
    /// transaction's latency (`-l`) for the percentiles.
    fn run(
        &self,
        url: &DatabaseUrl,
        tag: &str,
        script: &str,
        clients: usize,
        seconds: u64,
    ) -> BenchResult<Run> {
        let script_path = self.dir.join(format!("{tag}.sql"));
        std::fs::write(&script_path, script)?;
        let log_dir = self.dir.join(format!("{tag}-log"));
        let _ = std::fs::remove_dir_all(&log_dir);
        std::fs::create_dir_all(&log_dir)?;
        let (conninfo, password) = split_password(url)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(["-n", "-M", "prepared", "-l"])
            .arg("--log-prefix")
            .arg(log_dir.join("tx"))
            .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
            .args(["-T", &seconds.to_string()])
            .arg("-f")
            .arg(&script_path)
            .arg(&conninfo)
            .stdin(Stdio::null());
        if let Some(pw) = password {
            cmd.env("PGPASSWORD", pw);
        }
        cmd.env("PGOPTIONS", &self.options);
        let out = cmd.output()?;
        check_stop()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return fail(format!(
                "pgbench failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let tps = stdout
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok());
        let Some(tps) = tps else {
            return fail(format!("no `tps =` line in pgbench's output:\n{stdout}"));
        };
        let mut latencies_us = Vec::new();
        for entry in std::fs::read_dir(&log_dir)? {
            let text = std::fs::read_to_string(entry?.path())?;
            // client_id transaction_no latency_us script_no epoch epoch_us
            latencies_us.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2))
                    .filter_map(|t| t.parse::<f64>().ok()),
            );
        }
        std::fs::remove_dir_all(&log_dir)?;
        let transactions = latencies_us.len() as u64;
        Ok(Run {
            transactions,
            seconds: transactions as f64 / tps,
            latencies_us,
        })
    }
}

/// A script for pgbench: `:limit` where the statement has `$1`.
fn pgbench_script(sql: &str) -> BenchResult<String> {
    if sql.contains("$2") || !sql.contains("$1") {
        return fail("the benchmarked statement takes one parameter, the page size, as $1");
    }
    // pgbench reads `:name` as a variable anywhere, even in a literal; a run
    // of colons (`::text`) it skips.
    let b = sql.as_bytes();
    let variable_like = (0..b.len()).any(|i| {
        b[i] == b':'
            && (i == 0 || b[i - 1] != b':')
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    });
    if variable_like {
        return fail("the statement holds `:name`, which pgbench would take for a variable");
    }
    Ok(format!(
        "\\set limit {PAGE}\n{};\n",
        sql.replace("$1", ":limit")
    ))
}

/// The statements the library sends for the first page of `PAGE` items,
/// with their placeholder: `$1` is the page size.
struct FeedSql {
    typed: String,
    json: String,
}

/// Captures the feed statements as the library sends them: `home_feed` and
/// `home_feed_json` run once each on a connection whose instrumentation
/// records every statement (Diesel's `StartQuery` event), so the peers run
/// exactly what ours runs rather than a second rendering of it.
fn capture_feed_sql(url: &DatabaseUrl) -> BenchResult<FeedSql> {
    // A connection of its own, not one of the pool's: the pool's would keep
    // the instrumentation, and pay for it, in every measured call.
    let mut conn = establish(url)?;
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&sent);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            lock(&log).push(query.to_string());
        }
    });
    home_feed(&mut conn, FeedPage::first(PAGE))?;
    let typed = feed_statement(lock(&sent).drain(..), "typed", "FROM (\"activities\"")?;
    home_feed_json(&mut conn, FeedPage::first(PAGE))?;
    let json = feed_statement(lock(&sent).drain(..), "JSON", "row_to_json")?;
    Ok(FeedSql { typed, json })
}

/// The one statement among `sent` that contains `marker` (the others are
/// the session's own, such as `SET`), without its binds, which must be the
/// page size alone: pgbench's script and the Python peer bind `$1` to it.
fn feed_statement(
    sent: impl Iterator<Item = String>,
    path: &str,
    marker: &str,
) -> BenchResult<String> {
    let found: Vec<String> = sent.filter(|s| s.contains(marker)).collect();
    let [shown] = found.as_slice() else {
        return fail(format!(
            "the {path} feed sent {} statements containing `{marker}`, not exactly one",
            found.len()
        ));
    };
    // Diesel shows a statement as `SQL -- binds: [..]`.
    let Some((sql, binds)) = shown.split_once(" -- binds: ") else {
        return fail(format!(
            "the {path} feed statement, as captured, shows no binds: {shown}"
        ));
    };
    if binds != format!("[{PAGE}]") {
        return fail(format!(
            "the {path} feed statement binds {binds}, not the page size alone ([{PAGE}])"
        ));
    }
    Ok(sql.to_owned())
}

// ---------------------------------------------------------------------------
// Seeding: ours in a fresh process, psql \copy from CSV

/// What the seed child reports on stdout.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SeedChildReport {
    seconds: f64,
    peak_rss_kb: u64,
    activities: u64,
}

fn seed_child(args: &[String]) -> BenchResult<()> {
    let [users, activities, rng_seed] = args else {
        return fail("usage: bench --seed-child USERS ACTIVITIES RNG_SEED");
    };
    let spec = SyntheticSeed {
        users: users.parse()?,
        activities: activities.parse()?,
        rng_seed: rng_seed.parse()?,
    };
    // Read directly, not through `Settings`: this is no setting of the
    // project (no crate declares it as a variable) but the parent's hand-off, set
    // for this process alone (see `seed_ours`), and the measured process
    // should do nothing but the load (no `.env` lookup).
    let url = DatabaseUrl::parse(&std::env::var(SEED_CHILD_URL)?)?;
    let mut conn = establish(&url)?;
    conn.batch_execute("SET statement_timeout = 0")?;
    let t = Instant::now();
    let seeded = seed_synthetic(&mut conn, spec, &|_| ())?;
    let seconds = t.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak_rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let report = SeedChildReport {
        seconds,
        peak_rss_kb,
        activities: seeded.activities,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One seed of ours: the wall time of the whole process (start, connect,
/// load, exit), like the psql peer's, and the child's own report.
fn seed_ours(url: &DatabaseUrl, spec: SyntheticSeed) -> BenchResult<(f64, SeedChildReport)> {
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let out = Command::new(exe)
        .arg(SEED_CHILD)
        .args([
            spec.users.to_string(),
            spec.activities.to_string(),
            spec.rng_seed.to_string(),
        ])
        .env(SEED_CHILD_URL, url.expose())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let wall = t.elapsed().as_secs_f64();
    check_stop()?;
    if !out.status.success() {
        return fail(format!("the seed child failed ({})", out.status));
    }
    let report: SeedChildReport = serde_json::from_slice(&out.stdout)?;
    if report.activities != spec.activities {
        return fail("the seed child loaded a different number of rows");
    }
    Ok((wall, report))
}

/// `psql --single-transaction` running `\copy` of both CSV files.
fn seed_psql(psql: &Path, url: &DatabaseUrl, dir: &Path) -> BenchResult<f64> {
    let quote = |p: PathBuf| format!("'{}'", p.display().to_string().replace('\'', "''"));
    let script = format!(
        "\\copy users ({SYNTHETIC_USER_COLUMNS}) FROM {} WITH (FORMAT csv)\n\
         \\copy activities ({SYNTHETIC_ACTIVITY_COLUMNS}) FROM {} WITH (FORMAT csv)\n",
        quote(dir.join("users.csv")),
        quote(dir.join("activities.csv")),
    );
    let script_path = dir.join("copy.psql");
    std::fs::write(&script_path, script)?;
    let (conninfo, password) = split_password(url)?;
    let mut cmd = Command::new(psql);
    cmd.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-f",
    ])
    .arg(&script_path)
    .arg(&conninfo)
    .env("PGOPTIONS", "-c statement_timeout=0")
    .stdin(Stdio::null());
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    let t = Instant::now();
    let out = cmd.output()?;
    let wall = t.elapsed().as_secs_f64();
    check_stop()?;
    if !out.status.success() {
        return fail(format!(
            "psql \\copy failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(wall)
}

// ---------------------------------------------------------------------------
// Python peer

/// A Python with psycopg 3 and psycopg_pool, and Flask, flask-cors and
/// gunicorn for the HTTP peer: the system's if it has them all, else a
/// virtualenv under target/bench with `examples/bench/python/requirements.txt`.
fn python_with_psycopg(bench_dir: &Path) -> Result<PathBuf, String> {
    let has_psycopg = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import psycopg, psycopg_pool, flask, flask_cors, gunicorn",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if has_psycopg(&system) {
        return Ok(system);
    }
    let venv = bench_dir.join("venv");
    let python = venv.join("bin").join("python");
    if has_psycopg(&python) {
        return Ok(python);
    }
    eprintln!("installing psycopg into {} …", venv.display());
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench/python/requirements.txt");
    let requirements = requirements.display().to_string();
    let venv_path = venv.display().to_string();
    let steps = [
        (&system, vec!["-m", "venv", venv_path.as_str()]),
        (
            &python,
            vec!["-m", "pip", "install", "-q", "-r", requirements.as_str()],
        ),
    ];
    for (program, args) in steps {
        let shown = format!("{} {}", program.display(), args.join(" "));
        let status = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("psycopg is not installed and `{shown}` could not run: {e}"))?;
        if !status.success() {
            return Err(format!(
                "psycopg is not installed and `{shown}` failed ({status})"
            ));
        }
    }
    if has_psycopg(&python) {
        Ok(python)
    } else {
        Err("psycopg still cannot be imported after installing it".into())
    }
}

#[derive(Debug, serde::Deserialize)]
struct PythonReport {
    transactions: u64,
    seconds: f64,
    latencies_us: Vec<f64>,
}

fn run_python(
    python: &Path,
    url: &DatabaseUrl,
    sql_file: &Path,
    clients: usize,
    seconds: u64,
) -> BenchResult<Run> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench/python/python_feed.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--clients", &clients.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--limit", &PAGE.to_string()])
        .arg("--sql-file")
        .arg(sql_file)
        .env("BENCH_PYTHON_DSN", url.expose())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    check_stop()?;
    if !out.status.success() {
        return fail(format!(
            "examples/bench/python/python_feed.py failed ({})",
            out.status
        ));
    }
    let r: PythonReport = serde_json::from_slice(&out.stdout)?;
    Ok(Run {
        transactions: r.transactions,
        seconds: r.seconds,
        latencies_us: r.latencies_us,
    })
}

// ---------------------------------------------------------------------------
// The table

struct Row {
    what: String,
    clients: String,
    ours: [String; 3],
    peer: String,
    theirs: [String; 3],
    ratio: Option<f64>,
    target: Target,
}

#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    None,
}

impl Target {
    fn met(self, value: f64) -> Option<bool> {
        match self {
            Target::AtLeast(t) => Some(value >= t),
            Target::AtMost(t) => Some(value <= t),
            Target::Below(t) => Some(value < t),
            Target::None => None,
        }
    }

    fn show(self) -> String {
        match self {
            Target::AtLeast(t) => format!("≥ {t}x"),
            Target::AtMost(t) => format!("≤ {t}x"),
            Target::Below(t) => format!("< {t}"),
            Target::None => String::new(),
        }
    }
}

fn throughput_cells(run: &Run) -> [String; 3] {
    [
        format!("{:.0}", run.tps()),
        format!("{:.3}", run.percentile_ms(0.5)),
        format!("{:.3}", run.percentile_ms(0.99)),
    ]
}

fn dash() -> [String; 3] {
    ["–".into(), "–".into(), "–".into()]
}

fn render(rows: &[Row]) -> String {
    let mut t = String::from(
        "| what | clients | ours: TPS | p50 ms | p99 ms | peer | peer: TPS | p50 ms | p99 ms | ratio | target | met |\n\
         |---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let (ratio, met) = match r.ratio {
            Some(v) => (
                format!("{v:.2}"),
                match r.target.met(v) {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                },
            ),
            None => ("–".into(), ""),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.what,
            r.clients,
            r.ours[0],
            r.ours[1],
            r.ours[2],
            r.peer,
            r.theirs[0],
            r.theirs[1],
            r.theirs[2],
            ratio,
            r.target.show(),
            met
        );
    }
    t
}

// ---------------------------------------------------------------------------
// The run, one phase after another

/// What one phase measured: its rows of the table, and its ratios for
/// `summary.json`.
#[derive(Default)]
struct Measured {
    rows: Vec<Row>,
    ratios: Vec<(String, f64)>,
}

impl Measured {
    /// Adds `other`'s rows and ratios after this one's.
    fn absorb(&mut self, other: Measured) {
        self.rows.extend(other.rows);
        self.ratios.extend(other.ratios);
    }

    /// One row saying that the rows of `what` were skipped, and why.
    fn skipped(what: &str, why: &str) -> Self {
        Self {
            rows: vec![Row {
                what: what.into(),
                clients: "–".into(),
                ours: dash(),
                peer: format!("skipped: {why}"),
                theirs: dash(),
                ratio: None,
                target: Target::None,
            }],
            ratios: Vec::new(),
        }
    }
}

/// The phases in order, each returning what it measured; then the report.
fn run(plan: Plan, scope: Scope) -> BenchResult<()> {
    // Read once (with the `.env` file); everything below takes its
    // variables from here.
    let settings = Settings::from_env()?;
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&bench_dir)?;
    let mut phases = Vec::new();
    if scope != Scope::ReplicasOnly {
        let server = server_url(&settings)?;
        let mut tools = find_tools(&settings, &bench_dir)?;
        let dbs = Databases::new(server.clone());
        let spec = plan.spec();
        eprintln!(
            "benchmark databases {}_* on {server}; {} users, {} activities; {} round(s) of {} s per side",
            dbs.prefix, spec.users, spec.activities, plan.rounds, plan.seconds
        );
        if matches!(scope, Scope::HttpOnly | Scope::HttpRustOnly) {
            let main_db = dbs.create("feed")?;
            seed_ours(&main_db, spec)?;
            // The Flask rows too when a Python with Flask is at hand.
            let rust_only = scope == Scope::HttpRustOnly || tools.python.is_err();
            phases.push(http::http_phase(plan, &main_db, &tools, rust_only)?);
        } else if scope == Scope::PoolerOnly {
            let main_db = dbs.create("feed")?;
            seed_ours(&main_db, spec)?;
            let feed = prepare_feed(plan, &dbs, main_db, tools.pgbench.as_mut())?;
            phases.push(pooler::pooler_phase(plan, &feed)?);
        } else if scope == Scope::RustClientsOnly {
            // The data alone: no seed rows.
            let main_db = dbs.create("feed")?;
            seed_ours(&main_db, spec)?;
            let feed = prepare_feed(plan, &dbs, main_db, tools.pgbench.as_mut())?;
            phases.push(rust_clients::rust_clients_phase(plan, &feed, &bench_dir)?);
        } else {
            let (main_db, seed) = seed_phase(plan, &dbs, &tools)?;
            let feed = prepare_feed(plan, &dbs, main_db, tools.pgbench.as_mut())?;
            phases.extend([
                seed,
                pgbench_phase(plan, &feed, tools.pgbench.as_ref(), FeedPath::Typed)?,
                pgbench_phase(plan, &feed, tools.pgbench.as_ref(), FeedPath::Json)?,
                rust_clients::rust_clients_phase(plan, &feed, &bench_dir)?,
                scale_phase(plan, &feed)?,
                pooler::pooler_phase(plan, &feed)?,
                python_phase(plan, &feed, &tools)?,
                http::http_phase(plan, &feed.main_db, &tools, false)?,
            ]);
        }
    }
    match scope {
        Scope::RustClientsOnly | Scope::HttpOnly | Scope::HttpRustOnly | Scope::PoolerOnly => {}
        Scope::NoReplicas => phases.push(replicas::replica_phase(
            plan,
            &settings,
            Some("--no-replicas"),
        )?),
        Scope::All | Scope::ReplicasOnly => {
            phases.push(replicas::replica_phase(plan, &settings, None)?);
        }
    }
    let mut rows = Vec::new();
    let mut summary = BTreeMap::<String, f64>::new();
    for phase in phases {
        rows.extend(phase.rows);
        summary.extend(phase.ratios);
    }
    write_report(plan, scope, &bench_dir, &rows, summary)
}

/// Which rows the run measures: all of them; all but the replica rows (on
/// a private primary and standby of their own); those alone; the Rust
/// clients' rows alone; or the service against the Rust HTTP peer alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    NoReplicas,
    ReplicasOnly,
    RustClientsOnly,
    HttpOnly,
    /// The HTTP rows of ours and the Rust peer alone: no Python peers.
    HttpRustOnly,
    PoolerOnly,
}

/// The peers' programs, looked up once; a missing one skips its rows.
struct Tools {
    /// `target/bench`: scripts, logs, CSV and the results.
    bench_dir: PathBuf,
    pgbench: Option<Pgbench>,
    psql: Option<PathBuf>,
    /// A Python with psycopg (and Flask), or why there is none.
    python: Result<PathBuf, String>,
    /// `oha`, the HTTP load generator, if installed.
    oha: Option<PathBuf>,
}

/// Finds pgbench, psql and a Python with psycopg (installing psycopg into a
/// virtualenv if need be).
fn find_tools(settings: &Settings, bench_dir: &Path) -> BenchResult<Tools> {
    let bench_dir = bench_dir.to_path_buf();
    let pgbench = pg_tool(settings, "pgbench").map(|program| Pgbench {
        program,
        dir: bench_dir.clone(),
        options: String::new(),
    });
    let psql = pg_tool(settings, "psql");
    let python = python_with_psycopg(&bench_dir);
    let oha = on_path(settings, "oha");
    check_stop()?;
    Ok(Tools {
        bench_dir,
        pgbench,
        psql,
        python,
        oha,
    })
}

/// The seed rows: ours (a fresh process) against `psql \copy`, alternating
/// which goes first. Returns the database of ours' first load, which the
/// feed then runs on.
fn seed_phase(plan: Plan, dbs: &Databases, tools: &Tools) -> BenchResult<(DatabaseUrl, Measured)> {
    let spec = plan.spec();
    let csv_dir = tools.bench_dir.join("csv");
    if tools.psql.is_some() {
        write_seed_csv(spec, &csv_dir)?;
    }
    let main_db = dbs.create("feed")?;
    let mut totals = SeedTotals::default();
    for round in 0..plan.seed_rounds {
        // Ours first in even rounds; the first load of ours is the database
        // the feed runs on.
        let ours_target = if round == 0 {
            main_db.clone()
        } else {
            dbs.create(&format!("seed{round}"))?
        };
        let mut steps: Vec<bool> = vec![true, false];
        if round % 2 == 1 {
            steps.reverse();
        }
        for ours in steps {
            check_stop()?;
            if ours {
                checkpoint(&ours_target);
                let (wall, child) = seed_ours(&ours_target, spec)?;
                eprintln!(
                    "seed, ours: {wall:.2} s (load {:.2} s), peak RSS {} MB",
                    child.seconds,
                    child.peak_rss_kb / 1024
                );
                totals.ours_s += wall;
                totals.inner_s += child.seconds;
                totals.peak_kb = totals.peak_kb.max(child.peak_rss_kb);
                if round > 0 {
                    dbs.drop_one(&ours_target);
                }
            } else if let Some(psql) = &tools.psql {
                let target = dbs.create(&format!("copy{round}"))?;
                checkpoint(&target);
                let wall = seed_psql(psql, &target, &csv_dir)?;
                eprintln!("seed, psql \\copy: {wall:.2} s");
                totals.psql_s += wall;
                dbs.drop_one(&target);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&csv_dir);
    Ok((main_db, seed_rows(plan, &totals, tools.psql.is_some())))
}

/// The seed phase's sums over its rounds.
#[derive(Debug, Clone, Copy, Default)]
struct SeedTotals {
    /// Wall time of our processes, in seconds.
    ours_s: f64,
    /// Wall time of psql, in seconds.
    psql_s: f64,
    /// The highest peak RSS of our processes, in kB.
    peak_kb: u64,
    /// Our processes' own time for the load alone, in seconds.
    inner_s: f64,
}

/// The seed rows of the table: time and rows/s against psql, and our peak
/// memory.
fn seed_rows(plan: Plan, totals: &SeedTotals, psql_found: bool) -> Measured {
    let SeedTotals {
        ours_s,
        psql_s,
        peak_kb,
        inner_s,
    } = *totals;
    let spec = plan.spec();
    let mut measured = Measured::default();
    let rounds = plan.seed_rounds as f64;
    let rows_loaded = (spec.users + spec.activities) as f64;
    let seed_what = format!(
        "seed {}k users + {} activities (time, rows/s)",
        spec.users / 1000,
        human(spec.activities)
    );
    let ours_cells = [
        format!("{:.2} s", ours_s / rounds),
        format!("{:.0} rows/s", rows_loaded * rounds / ours_s),
        "–".into(),
    ];
    if psql_found {
        let ratio = ours_s / psql_s;
        measured.ratios.push((String::from("seed_ratio"), ratio));
        measured.rows.push(Row {
            what: seed_what,
            clients: "1".into(),
            ours: ours_cells,
            peer: "psql \\copy (CSV), same rows, same indexes".into(),
            theirs: [
                format!("{:.2} s", psql_s / rounds),
                format!("{:.0} rows/s", rows_loaded * rounds / psql_s),
                "–".into(),
            ],
            ratio: Some(ratio),
            target: Target::AtMost(1.0),
        });
    } else {
        eprintln!("skipping the psql \\copy peer: psql not found");
        measured.rows.push(Row {
            what: seed_what,
            clients: "1".into(),
            ours: ours_cells,
            peer: "psql not found".into(),
            theirs: dash(),
            ratio: None,
            target: Target::None,
        });
    }
    let peak_mb = peak_kb as f64 / 1024.0;
    measured
        .ratios
        .push((String::from("seed_peak_rss_mb"), peak_mb));
    measured.rows.push(Row {
        what: "seed: peak RSS of our process (MB)".into(),
        clients: "1".into(),
        ours: [format!("{peak_mb:.1} MB"), "–".into(), "–".into()],
        peer: format!("(load alone: {:.2} s)", inner_s / rounds),
        theirs: dash(),
        ratio: Some(peak_mb),
        target: Target::Below(200.0),
    });
    measured
}

/// The CSV files psql's `\copy` loads (written before, and not timed).
fn write_seed_csv(spec: SyntheticSeed, csv_dir: &Path) -> BenchResult<()> {
    std::fs::create_dir_all(csv_dir)?;
    let t = Instant::now();
    let mut users =
        BufWriter::with_capacity(1 << 20, std::fs::File::create(csv_dir.join("users.csv"))?);
    let mut activities = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(csv_dir.join("activities.csv"))?,
    );
    write_synthetic_csv(spec, &mut users, &mut activities)?;
    drop((users, activities));
    eprintln!(
        "wrote the CSV for psql in {:.1} s (not timed)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The feed's databases, ready to measure: our pools on the full and the
/// small database, and the statements the peers run.
struct FeedSetup {
    main_db: DatabaseUrl,
    repo: Repository,
    small_repo: Repository,
    sql: FeedSql,
    typed_script: String,
    json_script: String,
}

/// Seeds the small database, vacuums both, opens our pools, gives pgbench
/// the pools' `plan_cache_mode` and captures the statements the peers run.
fn prepare_feed(
    plan: Plan,
    dbs: &Databases,
    main_db: DatabaseUrl,
    pgbench: Option<&mut Pgbench>,
) -> BenchResult<FeedSetup> {
    check_stop()?;
    let small_db = dbs.create("small")?;
    seed_synthetic(
        &mut establish(&small_db)?,
        SyntheticSeed {
            activities: SMALL_ACTIVITIES,
            ..plan.spec()
        },
        &|_| (),
    )?;
    for url in [&main_db, &small_db] {
        // One statement per call: VACUUM cannot run in the implicit
        // transaction of a multi-statement string.
        execute(url, "VACUUM (ANALYZE) users")?;
        execute(url, "VACUUM (ANALYZE) activities")?;
    }
    checkpoint(&main_db);

    let repo = Repository::connect(&Config::new(main_db.clone()))?;
    let small_repo = Repository::connect(&Config::new(small_db))?;
    // "Same SQL" includes being planned the same way: pgbench's sessions get
    // the plan_cache_mode our pool sets on its connections (build_pool's
    // docs say why). The Python peer keeps PostgreSQL's defaults, as the
    // original stack did.
    let plan_cache_mode: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_setting('plan_cache_mode')",
    ))
    .get_result(&mut *repo.pool().get()?)?;
    if let Some(p) = pgbench {
        p.options = format!("-c plan_cache_mode={plan_cache_mode}");
    }
    eprintln!("sessions: plan_cache_mode = {plan_cache_mode} (ours and pgbench)");
    let sql = capture_feed_sql(&main_db)?;
    eprintln!("typed statement (as sent, captured): {}", sql.typed);
    let typed_script = pgbench_script(&sql.typed)?;
    let json_script = pgbench_script(&sql.json)?;
    Ok(FeedSetup {
        main_db,
        repo,
        small_repo,
        sql,
        typed_script,
        json_script,
    })
}

/// One typed page through the pool.
fn typed_page(repo: &Repository) -> BenchResult<()> {
    let page = repo.home_feed(Consistency::Primary, FeedPage::first(PAGE))?;
    if page.len() != PAGE as usize {
        return fail("short page");
    }
    Ok(())
}

/// One page through the JSON path.
fn json_page(repo: &Repository) -> BenchResult<()> {
    let page = repo.home_feed_json(Consistency::Primary, FeedPage::first(PAGE))?;
    if !page.starts_with("[{") {
        return fail("empty JSON page");
    }
    Ok(())
}

/// The same bytes as the JSON path (a test proves it), built in Rust.
fn typed_page_as_json(repo: &Repository) -> BenchResult<()> {
    let page = repo.home_feed(Consistency::Primary, FeedPage::first(PAGE))?;
    let body = serde_json::to_string(&page)?;
    if !body.starts_with("[{") {
        return fail("empty JSON page");
    }
    Ok(())
}

/// Runs ours and a peer `plan.rounds` times each, alternating sides: round
/// 0 peer first, round 1 ours first, …
fn pair(
    plan: Plan,
    tag: &str,
    clients: usize,
    ours: &(dyn Fn() -> BenchResult<()> + Sync),
    peer: &mut dyn FnMut() -> BenchResult<Run>,
) -> BenchResult<(Run, Run)> {
    let (mut a, mut b) = (Run::default(), Run::default());
    for round in 0..plan.rounds {
        check_stop()?;
        if round % 2 == 0 {
            b.absorb(peer()?);
            a.absorb(run_ours(clients, plan.seconds, ours)?);
        } else {
            a.absorb(run_ours(clients, plan.seconds, ours)?);
            b.absorb(peer()?);
        }
    }
    eprintln!(
        "{tag}, {clients} client(s): ours {:.0} TPS, peer {:.0} TPS",
        a.tps(),
        b.tps()
    );
    Ok((a, b))
}

/// The feed's two paths, each measured against pgbench running its
/// statement.
#[derive(Clone, Copy)]
enum FeedPath {
    Typed,
    Json,
}

/// One feed path against pgbench with the same statement, for 1 and 4
/// clients; without pgbench, ours alone.
fn pgbench_phase(
    plan: Plan,
    feed: &FeedSetup,
    pgbench: Option<&Pgbench>,
    path: FeedPath,
) -> BenchResult<Measured> {
    let typed = || typed_page(&feed.repo);
    let json = || json_page(&feed.repo);
    let (name, key, op, script): (_, _, &(dyn Fn() -> BenchResult<()> + Sync), _) = match path {
        FeedPath::Typed => ("feed, typed path", "feed_ratio", &typed, &feed.typed_script),
        FeedPath::Json => ("feed, JSON path", "json_ratio", &json, &feed.json_script),
    };
    let mut measured = Measured::default();
    for clients in [1usize, 4] {
        let Some(pgbench) = pgbench else {
            eprintln!("skipping the pgbench peer: pgbench not found");
            let ours = run_ours(clients, plan.seconds, op)?;
            measured.rows.push(Row {
                what: name.into(),
                clients: clients.to_string(),
                ours: throughput_cells(&ours),
                peer: "pgbench not found".into(),
                theirs: dash(),
                ratio: None,
                target: Target::None,
            });
            continue;
        };
        let tag = format!("{key}_c{clients}");
        let (ours, peer) = pair(plan, name, clients, op, &mut || {
            pgbench.run(&feed.main_db, &tag, script, clients, plan.seconds)
        })?;
        let ratio = ours.tps() / peer.tps();
        measured.ratios.push((format!("{key}_c{clients}"), ratio));
        measured.rows.push(Row {
            what: name.into(),
            clients: clients.to_string(),
            ours: throughput_cells(&ours),
            peer: "pgbench -M prepared, same SQL".into(),
            theirs: throughput_cells(&peer),
            ratio: Some(ratio),
            target: Target::AtLeast(0.9),
        });
    }
    Ok(measured)
}

/// The typed feed's p50 at the full size against ours at
/// `SMALL_ACTIVITIES`.
fn scale_phase(plan: Plan, feed: &FeedSetup) -> BenchResult<Measured> {
    let typed = || typed_page(&feed.repo);
    let small_typed = || -> BenchResult<()> {
        feed.small_repo
            .home_feed(Consistency::Primary, FeedPage::first(PAGE))?;
        Ok(())
    };
    let (big, small) = pair(plan, "scale", 1, &typed, &mut || {
        run_ours(1, plan.seconds, &small_typed)
    })?;
    let scale = big.percentile_ms(0.5) / small.percentile_ms(0.5);
    Ok(Measured {
        rows: vec![Row {
            what: format!(
                "scale: typed feed p50 at {} activities",
                human(plan.spec().activities)
            ),
            clients: "1".into(),
            ours: throughput_cells(&big),
            peer: format!("ours at {} activities", human(SMALL_ACTIVITIES)),
            theirs: throughput_cells(&small),
            ratio: Some(scale),
            target: Target::AtMost(1.5),
        }],
        ratios: vec![(String::from("scale_p50_ratio"), scale)],
    })
}

/// Both ways we serve the API's JSON against the Python peer running the
/// JSON statement, for 1 and 4 clients.
fn python_phase(plan: Plan, feed: &FeedSetup, tools: &Tools) -> BenchResult<Measured> {
    let python = match &tools.python {
        Ok(python) => python,
        Err(why) => {
            eprintln!("skipping the Python peer: {why}");
            return Ok(Measured::skipped("feed, JSON path vs Python", why));
        }
    };
    let typed_json = || typed_page_as_json(&feed.repo);
    let json = || json_page(&feed.repo);
    let sql_file = tools.bench_dir.join("python_feed.sql");
    std::fs::write(&sql_file, feed.sql.json.replace("$1", "%s"))?;
    let mut measured = Measured::default();
    for clients in [1usize, 4] {
        // Three sides, rotating which goes first: Python, our typed
        // page serialized to the API's JSON (the same bytes), and
        // our JSON path (the same statement as Python's).
        let mut sides = [Run::default(), Run::default(), Run::default()];
        for round in 0..plan.rounds {
            for k in 0..3 {
                check_stop()?;
                let side = (round + k) % 3;
                let run = match side {
                    0 => run_python(python, &feed.main_db, &sql_file, clients, plan.seconds)?,
                    1 => run_ours(clients, plan.seconds, &typed_json)?,
                    _ => run_ours(clients, plan.seconds, &json)?,
                };
                sides[side].absorb(run);
            }
        }
        let [py, ours_typed, ours_json] = sides;
        eprintln!(
            "Python, {clients} client(s): Python {:.0} TPS, ours typed->JSON {:.0}, ours JSON path {:.0}",
            py.tps(),
            ours_typed.tps(),
            ours_json.tps()
        );
        let typed_ratio = ours_typed.tps() / py.tps();
        let json_ratio = ours_json.tps() / py.tps();
        if clients == 1 {
            measured
                .ratios
                .push((String::from("python_ratio_c1"), typed_ratio));
            measured
                .ratios
                .push((String::from("python_json_path_ratio_c1"), json_ratio));
        }
        measured.rows.push(Row {
            what: "feed as the API's JSON: typed path + serde_json vs Python".into(),
            clients: clients.to_string(),
            ours: throughput_cells(&ours_typed),
            peer: "psycopg 3 + psycopg_pool, JSON built by PostgreSQL".into(),
            theirs: throughput_cells(&py),
            ratio: Some(typed_ratio),
            target: Target::AtLeast(2.5),
        });
        measured.rows.push(Row {
            what: "feed, JSON path vs Python (same statement)".into(),
            clients: clients.to_string(),
            ours: throughput_cells(&ours_json),
            peer: "psycopg 3 + psycopg_pool, same SQL".into(),
            theirs: throughput_cells(&py),
            ratio: Some(json_ratio),
            target: Target::AtLeast(2.5),
        });
    }
    Ok(measured)
}

/// Prints the table and writes `results.md` and `summary.json` (ratios
/// rounded to three decimals).
fn write_report(
    plan: Plan,
    scope: Scope,
    bench_dir: &Path,
    rows: &[Row],
    summary: BTreeMap<String, f64>,
) -> BenchResult<()> {
    let spec = plan.spec();
    let table = render(rows);
    let data = match scope {
        Scope::ReplicasOnly => String::from("replica rows only"),
        _ => format!("{} users, {} activities", spec.users, spec.activities),
    };
    let pair = match scope {
        Scope::NoReplicas | Scope::RustClientsOnly | Scope::HttpOnly | Scope::HttpRustOnly => {
            String::new()
        }
        _ => format!(
            "; the replica rows on a private primary and standby with {} users, {} activities",
            spec.users,
            replicas::pair_activities(plan)
        ),
    };
    let header = format!(
        "{} run: {data}, {} round(s) of {} s per side and row, feed page of {PAGE}{pair}\n\n",
        if plan.quick { "Quick" } else { "Full" },
        plan.rounds,
        plan.seconds
    );
    println!("\n{header}{table}");
    std::fs::write(bench_dir.join("results.md"), format!("{header}{table}"))?;
    let rounded: BTreeMap<String, f64> = summary
        .into_iter()
        .map(|(k, v)| (k, (v * 1000.0).round() / 1000.0))
        .collect();
    std::fs::write(
        bench_dir.join("summary.json"),
        serde_json::to_string_pretty(&rounded)? + "\n",
    )?;
    println!("wrote {}", bench_dir.join("summary.json").display());
    Ok(())
}

fn human(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}
