//! Client instructions per page of the home feed, counted exactly.
//!
//! Wall-clock figures on a shared machine move by ±20% from run to run;
//! the instructions a client process executes do not. This program counts
//! them with `valgrind --tool=callgrind` for each way of fetching the feed's
//! first page (20 rows, 10 fields each):
//!
//! | client | what one page is |
//! |---|---|
//! | `ours-typed` | `Repository::home_feed`: a checkout from the r2d2 pool, Diesel's typed query, 20 `FeedItem`s |
//! | `ours-json` | `Repository::home_feed_json`: the same checkout, the page as the JSON text PostgreSQL builds |
//! | `diesel` | `home_feed` on one `PgConnection` with the pool's session settings, no pool: what the pool and the repository add |
//! | `rust-postgres` | the `postgres` crate running the very statement `ours-typed` sends (captured with Diesel's instrumentation), prepared once, decoded into a struct of the same 10 fields |
//!
//! Each client fetches the page `--low` and `--high` times (200 and 1,200 by
//! default) in a process of its own under callgrind; start-up (connecting,
//! preparing, the first page) is the same in both runs, so
//! `(Ir(high) - Ir(low)) / (high - low)` is the client's cost of one page,
//! repeatable to a few instructions. The per-function difference of the
//! same two runs is the profile of one page.
//!
//! ```text
//! cargo run --release -p cruddur-db-client-cost                   # every client, 200 and 1,200 pages
//! cargo run --release -p cruddur-db-client-cost -- --top 40       # a longer profile
//! CRUDDUR_CLIENT_COST_URL=postgres://… client-cost fetch --client ours-typed --pages 1000
//! ```
//!
//! The database is a throwaway one (`cruddur_client_cost_<random>`), created
//! on the server of `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `CONNECTION_URL`, else `postgres://localhost/postgres`, migrated, seeded
//! with the synthetic seed (10k users, 100k activities by default) and
//! dropped at the end, on an error and on Ctrl-C. Every client connects with
//! `sslmode=disable`: TLS is off on every side, so its cost is not counted.
//!
//! `fetch` alone runs one client, on the database in
//! `CRUDDUR_CLIENT_COST_URL` (an environment variable, not an argument: it
//! may hold a password), migrated and seeded.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use client_cost::{
    AnyResult, PAGE, capture_typed_statement, decode_page, exit_code, fail, full_page,
};
use cruddur_db::{
    Config, Consistency, DatabaseUrl, FeedPage, Repository, Settings, SyntheticSeed, admin,
    establish, home_feed, run_migrations, seed_synthetic,
};
use diesel::connection::SimpleConnection;
use uuid::Uuid;

/// How `fetch` learns its database.
const URL_VAR: &str = "CRUDDUR_CLIENT_COST_URL";
const RNG_SEED: u64 = 20_260_101;
const USERS: u64 = 10_000;

static STOP: AtomicBool = AtomicBool::new(false);

/// The ways of fetching a page that are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    OursTyped,
    OursJson,
    Diesel,
    RustPostgres,
}

impl Client {
    const ALL: [Client; 4] = [
        Client::OursTyped,
        Client::OursJson,
        Client::Diesel,
        Client::RustPostgres,
    ];

    fn name(self) -> &'static str {
        match self {
            Client::OursTyped => "ours-typed",
            Client::OursJson => "ours-json",
            Client::Diesel => "diesel",
            Client::RustPostgres => "rust-postgres",
        }
    }

    fn parse(name: &str) -> AnyResult<Self> {
        match Self::ALL.into_iter().find(|c| c.name() == name) {
            Some(c) => Ok(c),
            None => fail(format!(
                "unknown client `{name}` (one of: {})",
                Self::ALL.map(Client::name).join(", ")
            )),
        }
    }
}

#[derive(Debug)]
struct Plan {
    low: u64,
    high: u64,
    activities: u64,
    top: usize,
    clients: Vec<Client>,
    out: PathBuf,
}

const USAGE: &str = "\
usage: client-cost [--low N] [--high N] [--activities N] [--top N] [--client NAME]... [--out DIR]
       client-cost fetch --client NAME --pages N

The first form counts each client's instructions per page under callgrind on a
throwaway seeded database (server: TEST_DATABASE_URL, else DATABASE_URL, else
CONNECTION_URL, else postgres://localhost/postgres) and prints them with the
top functions of one page of ours-typed and of rust-postgres.

  --low N, --high N   pages in the two runs (200 and 1200)
  --activities N      activities seeded, with 10000 users (100000)
  --top N             functions shown per profile (25)
  --client NAME       count only this client (repeatable); every one by default
  --out DIR           callgrind files and client-cost.json (target/bench/client-cost)

The second form fetches the first page N times with one client on the
migrated, seeded database in CRUDDUR_CLIENT_COST_URL.

Clients: ours-typed, ours-json, diesel, rust-postgres";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("fetch") {
        fetch_command(&args[1..])
    } else {
        parse_plan(&args).and_then(|plan| match plan {
            Some(plan) => measure(&plan),
            None => Ok(()),
        })
    };
    exit_code(result)
}

fn number(value: Option<&String>, flag: &str) -> AnyResult<u64> {
    match value.and_then(|v| v.parse::<u64>().ok()) {
        Some(n) => Ok(n),
        None => fail(format!("{flag} takes a whole number")),
    }
}

/// The driver's arguments; `None` after `--help`.
fn parse_plan(args: &[String]) -> AnyResult<Option<Plan>> {
    let mut plan = Plan {
        low: 200,
        high: 1200,
        activities: 100_000,
        top: 25,
        clients: Vec::new(),
        out: PathBuf::from("target/bench/client-cost"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--low" => plan.low = number(it.next(), arg)?,
            "--high" => plan.high = number(it.next(), arg)?,
            "--activities" => plan.activities = number(it.next(), arg)?,
            "--top" => plan.top = usize::try_from(number(it.next(), arg)?)?,
            "--client" => match it.next() {
                Some(name) => plan.clients.push(Client::parse(name)?),
                None => return fail("--client takes a name"),
            },
            "--out" => match it.next() {
                Some(dir) => plan.out = PathBuf::from(dir),
                None => return fail("--out takes a directory"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return fail(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if plan.high <= plan.low {
        return fail("--high must be larger than --low");
    }
    if plan.activities < PAGE as u64 {
        return fail(format!("--activities must fill a page ({PAGE})"));
    }
    if plan.clients.is_empty() {
        plan.clients = Client::ALL.to_vec();
    }
    Ok(Some(plan))
}

// ---------------------------------------------------------------------------
// fetch: the measured process

fn fetch_command(args: &[String]) -> AnyResult<()> {
    let (mut client, mut pages) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--client" => match it.next() {
                Some(name) => client = Some(Client::parse(name)?),
                None => return fail("--client takes a name"),
            },
            "--pages" => pages = Some(number(it.next(), arg)?),
            other => return fail(format!("unknown argument `{other}` (see --help)")),
        }
    }
    let (Some(client), Some(pages)) = (client, pages) else {
        return fail("fetch needs --client NAME and --pages N");
    };
    let Ok(raw) = std::env::var(URL_VAR) else {
        return fail(format!("fetch reads its database URL from {URL_VAR}"));
    };
    fetch(client, pages, &DatabaseUrl::parse(&raw)?)
}

/// Fetches the feed's first page `pages` times, on one connection, the way
/// `client` does.
fn fetch(client: Client, pages: u64, url: &DatabaseUrl) -> AnyResult<()> {
    match client {
        Client::OursTyped => {
            let repo = Repository::connect(&Config::new(url.clone()))?;
            for _ in 0..pages {
                let page = repo.home_feed(Consistency::Primary, FeedPage::first(PAGE))?;
                full_page(page.len())?;
                black_box(page);
            }
        }
        Client::OursJson => {
            let repo = Repository::connect(&Config::new(url.clone()))?;
            for _ in 0..pages {
                let page = repo.home_feed_json(Consistency::Primary, FeedPage::first(PAGE))?;
                if !page.starts_with("[{") {
                    return fail("an empty JSON page: is the database seeded?");
                }
                black_box(page);
            }
        }
        Client::Diesel => {
            let mut conn = establish(url)?;
            for _ in 0..pages {
                let page = home_feed(&mut conn, FeedPage::first(PAGE))?;
                full_page(page.len())?;
                black_box(page);
            }
        }
        Client::RustPostgres => rust_postgres(pages, url)?,
    }
    Ok(())
}

/// The peer: the statement the typed path sends, with the session settings
/// our pool sets, prepared once and executed `pages` times.
fn rust_postgres(pages: u64, url: &DatabaseUrl) -> AnyResult<()> {
    let (sql, settings) = capture_typed_statement(url)?;
    let mut client = postgres::Client::connect(url.expose(), postgres::NoTls)?;
    client.batch_execute(&settings)?;
    let statement = client.prepare(&sql)?;
    for _ in 0..pages {
        decode_page(&client.query(&statement, &[&PAGE])?)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The driver: a throwaway database, each client under callgrind

/// The throwaway database, dropped (`WITH (FORCE)`) when this guard drops:
/// at the end, on an error and after a Ctrl-C.
struct Database {
    url: DatabaseUrl,
}

impl Database {
    fn create(server: &DatabaseUrl, activities: u64) -> AnyResult<Self> {
        let name = format!(
            "cruddur_client_cost_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let url = server.with_database(&name);
        if !admin::create_database(&url)? {
            return fail(format!("{url} already exists; not touching it"));
        }
        let db = Self { url };
        let mut conn = establish(&db.url)?;
        run_migrations(&mut conn)?;
        eprintln!("seeding {USERS} users and {activities} activities into {name}");
        seed_synthetic(
            &mut conn,
            SyntheticSeed {
                users: USERS,
                activities,
                rng_seed: RNG_SEED,
            },
            &|_| (),
        )?;
        // One statement per call: VACUUM cannot run in a transaction.
        conn.batch_execute("VACUUM (ANALYZE) users")?;
        conn.batch_execute("VACUUM (ANALYZE) activities")?;
        Ok(db)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        match admin::drop_database(&self.url, true) {
            Ok(_) => eprintln!("dropped {}", self.url.database().unwrap_or_default()),
            Err(e) => eprintln!("warning: could not drop {}: {e}", self.url),
        }
    }
}

/// The server the database goes on, with TLS off: the tests' server first,
/// as for the bench, since this creates and drops a database.
/// The server the tests use, which this tool measures on too (the
/// test support's variable, read here without depending on that crate).
const TEST_DATABASE_URL: cruddur_db::Variable = cruddur_db::Variable::new(
    "TEST_DATABASE_URL",
    "the server measured on (default: DATABASE_URL's, else postgres://localhost/postgres)",
);

fn server_url(settings: &Settings) -> AnyResult<DatabaseUrl> {
    use cruddur_db::variables::{CONNECTION_URL, DATABASE_URL};
    let raw = [TEST_DATABASE_URL, DATABASE_URL, CONNECTION_URL]
        .iter()
        .find_map(|v| settings.get(v))
        .unwrap_or("postgres://localhost/postgres");
    let url = DatabaseUrl::parse(raw)?.with_database("postgres");
    match url.param("sslmode") {
        None | Some("disable" | "allow" | "prefer") => Ok(url.with_param("sslmode", "disable")),
        Some(mode) => fail(format!(
            "the server's URL asks for sslmode={mode}; the count is made with TLS off on every side"
        )),
    }
}

/// One callgrind run's result.
struct Run {
    total: u64,
    file: PathBuf,
}

/// Runs `fetch` for `client` and `pages` under callgrind; returns the
/// instructions of the whole process.
fn callgrind(plan: &Plan, url: &DatabaseUrl, client: Client, pages: u64) -> AnyResult<Run> {
    let file = plan
        .out
        .join(format!("callgrind.{}.{pages}.out", client.name()));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(std::env::current_exe()?)
        .args(["fetch", "--client", client.name(), "--pages"])
        .arg(pages.to_string())
        .env(URL_VAR, url.expose())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let output = match status {
        Ok(output) => output,
        Err(e) => return fail(format!("could not run valgrind (is it installed?): {e}")),
    };
    if STOP.load(Ordering::Relaxed) {
        return fail("interrupted");
    }
    if !output.status.success() {
        return fail(format!(
            "{} with {pages} pages under callgrind failed ({}):\n{}",
            client.name(),
            output.status,
            url.scrub(&String::from_utf8_lossy(&output.stderr))
        ));
    }
    let text = std::fs::read_to_string(&file)?;
    let total = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    match total {
        Some(total) => Ok(Run { total, file }),
        None => fail(format!("no total in {}", file.display())),
    }
}

/// Exclusive instructions per function of a callgrind file, as
/// `callgrind_annotate` attributes them (`file:function [object]`).
fn functions(file: &Path) -> AnyResult<HashMap<String, u64>> {
    let output = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--inclusive=no"])
        .arg(file)
        .output()?;
    if !output.status.success() {
        return fail(format!(
            "callgrind_annotate {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut by_function = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // `1,234 (0.12%)  file:function [object]`, or without the share.
        let line = line.trim_start();
        let Some((count, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('(') {
            Some(after) => after.split_once(')').map_or(after, |(_, r)| r).trim_start(),
            None => rest,
        };
        if rest.is_empty() || rest == "PROGRAM TOTALS" {
            continue;
        }
        *by_function.entry(rest.to_owned()).or_insert(0) += count;
    }
    Ok(by_function)
}

/// The functions of one page: the per-function difference of the two runs,
/// per page, largest first.
fn page_profile(low: &Run, high: &Run, pages: u64) -> AnyResult<Vec<(String, f64)>> {
    let (low, high) = (functions(&low.file)?, functions(&high.file)?);
    let mut profile: Vec<(String, f64)> = high
        .iter()
        .map(|(name, &ir)| {
            let before = low.get(name).copied().unwrap_or(0);
            (name.clone(), (ir as f64 - before as f64) / pages as f64)
        })
        .filter(|(_, per_page)| per_page.abs() >= 0.5)
        .collect();
    profile.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(profile)
}

/// The object file's name of `file:function [object]` (the program itself
/// for a function whose object callgrind_annotate does not name).
fn object_of(name: &str) -> String {
    match name.rsplit_once(" [") {
        Some((_, object)) => object
            .trim_end_matches(']')
            .rsplit('/')
            .next()
            .unwrap_or(object)
            .to_owned(),
        None => "(unnamed)".to_owned(),
    }
}

/// Shortens `file:function [object]` to the function and the object's
/// file name.
fn short_name(name: &str) -> String {
    let (function, object) = match name.rsplit_once(" [") {
        Some((f, o)) => (f, o.trim_end_matches(']')),
        None => (name, ""),
    };
    let function = function
        .split_once(':')
        .map_or(function, |(_, f)| f)
        .to_owned();
    let object = object.rsplit('/').next().unwrap_or(object);
    if object.is_empty() {
        function
    } else {
        format!("{function} [{object}]")
    }
}

fn measure(plan: &Plan) -> AnyResult<()> {
    if let Err(e) = ctrlc::set_handler(|| {
        STOP.store(true, Ordering::Relaxed);
        eprintln!("\ninterrupted: stopping and dropping the database");
    }) {
        eprintln!("warning: no Ctrl-C handler ({e}); an interrupted run leaves its database");
    }
    std::fs::create_dir_all(&plan.out)?;
    let settings = Settings::from_env()?;
    let server = server_url(&settings)?;
    let db = Database::create(&server, plan.activities)?;
    let pages = plan.high - plan.low;

    let mut results = Vec::new();
    // The runs whose profile is shown: ours-typed and the peer.
    let mut runs = Vec::new();
    for &client in &plan.clients {
        eprintln!(
            "{}: {} and {} pages under callgrind",
            client.name(),
            plan.low,
            plan.high
        );
        let low = callgrind(plan, &db.url, client, plan.low)?;
        let high = callgrind(plan, &db.url, client, plan.high)?;
        let per_page = (high.total as f64 - low.total as f64) / pages as f64;
        results.push((client, low.total, high.total, per_page));
        if matches!(client, Client::OursTyped | Client::RustPostgres) {
            runs.push((client, low, high));
        }
    }

    let peer = results
        .iter()
        .find(|r| r.0 == Client::RustPostgres)
        .map(|r| r.3);
    println!(
        "\nClient instructions per page (first page of {PAGE} items, {USERS} users, {} activities, TLS off):\n",
        plan.activities
    );
    println!(
        "| client | Ir({}) | Ir({}) | per page | / rust-postgres |",
        plan.low, plan.high
    );
    println!("|---|---:|---:|---:|---:|");
    let mut json = serde_json::Map::new();
    for (client, low, high, per_page) in &results {
        let ratio = peer.map_or("–".to_owned(), |p| format!("{:.3}", per_page / p));
        println!(
            "| {} | {low} | {high} | {per_page:.0} | {ratio} |",
            client.name()
        );
        json.insert(
            format!("client_ir_per_page_{}", client.name().replace('-', "_")),
            serde_json::json!(per_page.round()),
        );
    }
    if let (Some(peer), Some(ours)) = (
        peer,
        results
            .iter()
            .find(|r| r.0 == Client::OursTyped)
            .map(|r| r.3),
    ) {
        json.insert(
            "client_ir_ratio_typed_vs_rust_postgres".into(),
            serde_json::json!((ours / peer * 1000.0).round() / 1000.0),
        );
    }

    for (client, low, high) in &runs {
        let profile = page_profile(low, high, pages)?;
        let total: f64 = profile.iter().map(|(_, ir)| ir).sum();
        let mut objects: Vec<(String, f64)> = Vec::new();
        for (name, ir) in &profile {
            let object = object_of(name);
            match objects.iter_mut().find(|(o, _)| *o == object) {
                Some((_, sum)) => *sum += ir,
                None => objects.push((object, *ir)),
            }
        }
        objects.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!(
            "\nOne {} page by object file (exclusive instructions per page):\n",
            client.name()
        );
        println!("| object | Ir per page | share |");
        println!("|---|---:|---:|");
        for (object, ir) in objects.iter().filter(|(_, ir)| *ir >= 1.0) {
            println!("| {object} | {ir:.0} | {:.1}% |", ir / total * 100.0);
        }
        println!(
            "\nTop functions of one {} page (exclusive instructions per page):\n",
            client.name()
        );
        println!("| function | Ir per page | share |");
        println!("|---|---:|---:|");
        for (name, ir) in profile.iter().take(plan.top) {
            println!(
                "| `{}` | {ir:.0} | {:.1}% |",
                short_name(name),
                ir / total * 100.0
            );
        }
    }
    let summary = plan.out.join("client-cost.json");
    std::fs::write(
        &summary,
        serde_json::to_string_pretty(&serde_json::Value::Object(json))?,
    )?;
    println!(
        "\ncallgrind files and {} are in {}",
        summary.display(),
        plan.out.display()
    );
    drop(db);
    Ok(())
}
