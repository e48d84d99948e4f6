//! The HTTP rows: `cruddur-db-service` against the original Flask backend
//! (`benches/flask_backend/app.py`), as it ran (Flask's development server)
//! and under gunicorn, on the same database, loaded by `wrk` at 1, 16 and
//! 64 connections on both endpoints.
//!
//! One server runs at a time; each is started, warmed up, measured at every
//! level and stopped before the next. `wrk`, the server and PostgreSQL share
//! the machine's cores.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cruddur_db::DatabaseUrl;

use super::{BenchResult, Measured, Plan, Row, Target, Tools, check_stop, dash, fail};

/// Connections `wrk` keeps open, one row each.
const LEVELS: [usize; 3] = [1, 16, 64];
/// The level at which the targets apply.
const TARGET_LEVEL: usize = 16;
/// gunicorn's recommended worker count on this machine's 2 cores
/// (2 × cores + 1).
const GUNICORN_WORKERS: usize = 5;
/// The body of every measured post.
const POST_BODY: &str = r#"{"message": "posted by the HTTP benchmark", "ttl": "1-day"}"#;

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Ours,
    FlaskDev,
    Gunicorn,
}

impl Server {
    fn label(self) -> String {
        match self {
            Server::Ours => "cruddur-db-service".into(),
            Server::FlaskDev => "Flask development server (as the original ran)".into(),
            Server::Gunicorn => format!("Flask under gunicorn, {GUNICORN_WORKERS} workers"),
        }
    }
}

/// The endpoints measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Home,
    Post,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Home => "/api/activities/home",
            Endpoint::Post => "/api/activities",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Endpoint::Home => "home",
            Endpoint::Post => "post",
        }
    }
}

/// What `wrk` reported for one endpoint at one level.
#[derive(Debug, Clone, Copy, Default)]
struct WrkRun {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Socket errors and answers other than 2xx/3xx.
    errors: u64,
}

/// The HTTP rows, or one row saying why they were skipped.
pub(super) fn http_phase(plan: Plan, db: &DatabaseUrl, tools: &Tools) -> BenchResult<Measured> {
    let setup = match Setup::find(tools) {
        Ok(setup) => setup,
        Err(why) => {
            eprintln!("skipping the HTTP rows: {why}");
            return Ok(skipped(&why));
        }
    };
    // The original posts as andrewbrown: the reference seed's user.
    cruddur_db::repo::seed::seed_reference(&mut cruddur_db::establish(db)?)?;
    let seconds = if plan.quick { 2 } else { 2 * plan.seconds };
    let mut results = Vec::new();
    for server in [Server::Ours, Server::FlaskDev, Server::Gunicorn] {
        check_stop()?;
        let running = setup.start(server, db)?;
        let mut cells = Vec::new();
        for endpoint in [Endpoint::Home, Endpoint::Post] {
            for level in LEVELS {
                check_stop()?;
                let run = setup.wrk(&running.base, endpoint, level, seconds)?;
                eprintln!(
                    "http, {}, {} connection(s), {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                    endpoint.path(),
                    level,
                    server.label(),
                    run.requests_per_s,
                    run.p50_ms,
                    run.p99_ms,
                    run.errors
                );
                cells.push((endpoint, level, run));
            }
        }
        running.stop();
        results.push((server, cells));
    }
    Ok(rows(&results))
}

/// One server's measurements: each endpoint at each level.
type Cells = Vec<(Endpoint, usize, WrkRun)>;

/// Compares ours with each Flask server, cell by cell.
fn rows(results: &[(Server, Cells)]) -> Measured {
    let mut measured = Measured::default();
    let Some((_, ours)) = results.iter().find(|(s, _)| *s == Server::Ours) else {
        return measured;
    };
    let mut worst_p99 = 0.0_f64;
    for (endpoint, level, mine) in ours {
        for (server, theirs) in results.iter().filter(|(s, _)| *s != Server::Ours) {
            let Some((_, _, peer)) = theirs.iter().find(|(e, l, _)| e == endpoint && l == level)
            else {
                continue;
            };
            let ratio = mine.requests_per_s / peer.requests_per_s;
            let goal = match (endpoint, server) {
                (Endpoint::Home, Server::FlaskDev) => 10.0,
                (Endpoint::Home, Server::Gunicorn) => 3.0,
                _ => 0.0,
            };
            let target = if *level == TARGET_LEVEL && goal > 0.0 {
                Target::AtLeast(goal)
            } else {
                Target::None
            };
            let peer_key = match server {
                Server::FlaskDev => "flask_dev",
                _ => "gunicorn",
            };
            let p99_ratio = mine.p99_ms / peer.p99_ms;
            worst_p99 = worst_p99.max(p99_ratio);
            measured.ratios.push((
                format!("http_{}_vs_{peer_key}_c{level}", endpoint.key()),
                ratio,
            ));
            measured.ratios.push((
                format!("http_{}_p99_vs_{peer_key}_c{level}", endpoint.key()),
                p99_ratio,
            ));
            let errors = |run: &WrkRun| {
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
                    endpoint.path(),
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
    measured
        .ratios
        .push(("http_worst_p99_ratio".into(), worst_p99));
    measured.rows.push(Row {
        what: "HTTP p99, ours ÷ peer, the worst of every row above".into(),
        clients: "–".into(),
        ours: dash(),
        peer: "both Flask servers".into(),
        theirs: dash(),
        ratio: Some(worst_p99),
        target: Target::Below(1.0),
    });
    measured
}

fn method(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Home => "GET",
        Endpoint::Post => "POST",
    }
}

fn cells(run: &WrkRun) -> [String; 3] {
    [
        format!("{:.0}", run.requests_per_s),
        format!("{:.3}", run.p50_ms),
        format!("{:.3}", run.p99_ms),
    ]
}

fn skipped(why: &str) -> Measured {
    Measured {
        rows: vec![Row {
            what: "HTTP: cruddur-db-service vs the original Flask backend".into(),
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

/// What the HTTP rows need: `wrk`, our service's binary (built here, in
/// the bench's own profile) and a Python with Flask and gunicorn.
struct Setup {
    wrk: PathBuf,
    service: PathBuf,
    python: PathBuf,
    bench_dir: PathBuf,
    post_script: PathBuf,
}

impl Setup {
    fn find(tools: &Tools) -> Result<Self, String> {
        let wrk = tools
            .wrk
            .clone()
            .ok_or("wrk is not installed (Debian: apt-get install wrk)")?;
        let python = tools.python.clone()?;
        let service = build_service()?;
        let post_script = tools.bench_dir.join("http_post.lua");
        let lua = format!(
            "wrk.method = \"POST\"\nwrk.body = [[{POST_BODY}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        );
        std::fs::write(&post_script, lua)
            .map_err(|e| format!("writing {}: {e}", post_script.display()))?;
        Ok(Self {
            wrk,
            service,
            python,
            bench_dir: tools.bench_dir.clone(),
            post_script,
        })
    }

    /// Starts `server` on a free loopback port over `db` and waits until
    /// its health check answers (at most 60 s).
    fn start(&self, server: Server, db: &DatabaseUrl) -> BenchResult<Running> {
        let port = cruddur_db_test_support::free_port();
        let bind = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(self.bench_dir.join(format!("http_{port}.log")))?;
        let flask_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/flask_backend");
        let mut command = match server {
            Server::Ours => {
                let mut c = Command::new(&self.service);
                c.env("DATABASE_URL", db.expose())
                    .env("CRUDDUR_BIND", &bind)
                    .env("NO_COLOR", "1");
                c
            }
            Server::FlaskDev => {
                let mut c = Command::new(&self.python);
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
                let mut c = Command::new(&self.python);
                c.args(["-m", "gunicorn", "--workers", &GUNICORN_WORKERS.to_string()])
                    .args(["--bind", &bind, "app:app"]);
                c
            }
        };
        if server != Server::Ours {
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
        self.wrk(&running.base, Endpoint::Home, 4, 1)?;
        Ok(running)
    }

    /// `wrk` on `endpoint` with `connections` for `seconds`.
    fn wrk(
        &self,
        base: &str,
        endpoint: Endpoint,
        connections: usize,
        seconds: u64,
    ) -> BenchResult<WrkRun> {
        let mut command = Command::new(&self.wrk);
        command
            .args(["--threads", &connections.min(2).to_string()])
            .args(["--connections", &connections.to_string()])
            .args(["--duration", &format!("{seconds}s")])
            .args(["--timeout", "10s", "--latency"]);
        if endpoint == Endpoint::Post {
            command.arg("--script").arg(&self.post_script);
        }
        let out = command
            .arg(format!("{base}{}", endpoint.path()))
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return fail(format!("wrk failed ({}): {text}", out.status));
        }
        parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's report:\n{text}").into())
    }
}

/// Builds `cruddur-db-service` in the profile this bench was built in and
/// returns its path (beside the bench's own directory).
fn build_service() -> Result<PathBuf, String> {
    let release = !cfg!(debug_assertions);
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "--locked",
        "-p",
        "cruddur-db-service",
    ]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .map_err(|e| format!("cannot run cargo to build cruddur-db-service: {e}"))?;
    if !status.success() {
        return Err(format!("building cruddur-db-service failed ({status})"));
    }
    // target/<profile>/examples/bench -> target/<profile>/cruddur-db-service
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the bench's own path has no profile directory")?;
    let service = dir.join("cruddur-db-service");
    if service.is_file() {
        Ok(service)
    } else {
        Err(format!("{} is missing after the build", service.display()))
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

/// Requests/s, the 50th and 99th latency percentiles and the errors of a
/// `wrk --latency` report.
fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun::default();
    let mut seen = (false, false, false);
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("50%") => {
                run.p50_ms = duration_ms(words.next()?)?;
                seen.0 = true;
            }
            Some("99%") => {
                run.p99_ms = duration_ms(words.next()?)?;
                seen.1 = true;
            }
            Some("Requests/sec:") => {
                run.requests_per_s = words.next()?.parse().ok()?;
                seen.2 = true;
            }
            Some("Socket") => {
                // Socket errors: connect 0, read 0, write 0, timeout 12
                run.errors += line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum::<u64>();
            }
            Some("Non-2xx") => {
                run.errors += line.rsplit(' ').next()?.parse::<u64>().ok()?;
            }
            _ => {}
        }
    }
    (seen == (true, true, true)).then_some(run)
}

/// `wrk`'s `1.23ms`, `456.00us` or `2.01s` in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(value / 1000.0),
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        "m" => Some(value * 60_000.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrk_report_is_read() {
        let report = "Running 2s test @ http://127.0.0.1:1/api/activities/home
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.01s
  24690 requests in 2.00s, 10.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:  12345.67
Transfer/sec:      5.00MB
";
        let run = parse_wrk(report).unwrap();
        assert!((run.p50_ms - 0.85).abs() < 1e-9);
        assert!((run.p99_ms - 2010.0).abs() < 1e-9);
        assert!((run.requests_per_s - 12345.67).abs() < 1e-9);
        assert_eq!(run.errors, 18);
        assert!(parse_wrk("garbage").is_none());
    }
}
