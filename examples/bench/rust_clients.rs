//! The Rust clients' rows: the typed feed against rust-postgres,
//! tokio-postgres, sqlx and diesel-async running the statement it sends,
//! and the client instructions per page counted with callgrind. Every side,
//! ours included, runs in a process of its own under the same harness.
//!
//! The peers live in the `cruddur-db-client-cost` member (its `rust-peers`
//! and `client-cost` binaries), outside the workspace's default members, so
//! that their crates cost `cargo build` and `cargo test` nothing; this phase
//! builds it in the bench's profile and runs each peer as a process of its
//! own. TLS is off on every side of these rows (`sslmode=disable`), ours
//! included: none of the peers is built with TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cruddur_db::DatabaseUrl;

use super::{
    BenchResult, FeedSetup, Measured, Plan, Row, Run, Target, check_stop, fail, throughput_cells,
};

/// Ours, as `rust-peers --peer` names it: the typed feed through the pool,
/// timed by the same harness as the peers, in a process of its own like
/// theirs.
const OURS: &str = "cruddur-db";
/// The peers, as `rust-peers --peer` names them.
const PEERS: [&str; 4] = ["postgres", "tokio-postgres", "diesel-async", "sqlx"];
/// How the peer binary learns its database (not on its command line: the
/// URL may hold a password).
const URL_VAR: &str = "CRUDDUR_CLIENT_COST_URL";

/// The two sides of a peer: the server's defaults, and the session settings
/// our pool gives its connections (`plan_cache_mode`, `TimeZone`,
/// `statement_timeout`).
const SESSIONS: [&str; 2] = ["defaults", "ours"];

/// The database of the feed with TLS off, or why these rows cannot have it.
pub(super) fn without_tls(url: &DatabaseUrl) -> Result<DatabaseUrl, String> {
    match url.param("sslmode") {
        // GSSAPI encryption off too (libpq's `prefer` uses it where a
        // Kerberos ticket allows): no encryption on any side.
        None | Some("disable" | "allow" | "prefer") => Ok(url
            .with_param("sslmode", "disable")
            .with_param("gssencmode", "disable")),
        Some(mode) => Err(format!(
            "the server's URL asks for sslmode={mode}; these rows compare clients with TLS off"
        )),
    }
}

/// Runs one peer for `seconds` and reads its report.
fn run_peer(
    binary: &Path,
    url: &DatabaseUrl,
    peer: &str,
    session: &str,
    clients: usize,
    seconds: u64,
) -> BenchResult<Run> {
    let out = Command::new(binary)
        .env(URL_VAR, url.expose())
        .args(["--peer", peer, "--session", session])
        .args(["--clients", &clients.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    check_stop()?;
    if !out.status.success() {
        return fail(format!("{peer} ({session}) failed: {}", out.status));
    }
    parse_report(&out.stdout).map_err(|e| format!("{peer} ({session}): {e}").into())
}

/// The peer's one line of JSON: pages, seconds, latencies.
fn parse_report(stdout: &[u8]) -> Result<Run, String> {
    let report: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("not a report: {e}"))?;
    let pages = report["pages"].as_u64().ok_or("no `pages`")?;
    let seconds = report["seconds"].as_f64().ok_or("no `seconds`")?;
    let latencies_us: Vec<f64> = report["latencies_us"]
        .as_array()
        .ok_or("no `latencies_us`")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    if latencies_us.len() as u64 != pages || pages == 0 || seconds <= 0.0 {
        return Err(format!(
            "{pages} pages, {} latencies in {seconds} s",
            latencies_us.len()
        ));
    }
    Ok(Run {
        transactions: pages,
        seconds,
        latencies_us,
    })
}

/// Rounds and seconds per side and round: more and shorter slices than the
/// other rows (6 of 2 s; 2 of 1 s in a quick run), as the sides are close
/// and the machine's speed drifts. Each round measures the three sides back
/// to back, so a round's ratios compare sides measured within seconds of
/// each other.
fn slices(plan: Plan) -> (usize, u64) {
    if plan.quick { (2, 1) } else { (6, 2) }
}

/// The median of per-round ratios: a round disturbed by something else on
/// the machine moves it less than it moves the pooled pages/s.
pub(super) fn median(mut ratios: Vec<f64>) -> f64 {
    ratios.sort_by(f64::total_cmp);
    match ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    }
}

/// The key of a ratio in `summary.json`.
fn ratio_key(peer: &str, session: &str, clients: usize) -> String {
    let peer = peer.replace('-', "_");
    match session {
        "ours" => format!("rust_{peer}_ratio_c{clients}"),
        _ => format!("rust_{peer}_defaults_ratio_c{clients}"),
    }
}

/// The typed feed against each peer at both sessions, for 1 and 4 clients,
/// then the instructions per page.
pub(crate) fn rust_clients_phase(
    plan: Plan,
    feed: &FeedSetup,
    bench_dir: &Path,
) -> BenchResult<Measured> {
    let url = match without_tls(&feed.main_db) {
        Ok(url) => url,
        Err(why) => return Ok(Measured::skipped("feed, typed path vs Rust clients", &why)),
    };
    let peers = match super::build_member("cruddur-db-client-cost", "rust-peers") {
        Ok(path) => path,
        Err(why) => return Ok(Measured::skipped("feed, typed path vs Rust clients", &why)),
    };
    let mut measured = Measured::default();
    let (rounds, seconds) = slices(plan);
    eprintln!(
        "Rust clients: {rounds} rounds of {seconds} s per side, TLS off; ratios are medians over rounds"
    );
    for clients in [1usize, 4] {
        for peer in PEERS {
            // Three sides per round, back to back, rotating which goes
            // first: ours, the peer at its defaults, the peer with our
            // session settings.
            let mut sides = [Run::default(), Run::default(), Run::default()];
            let mut per_round = [Vec::new(), Vec::new()];
            for round in 0..rounds {
                let mut tps = [0.0; 3];
                for k in 0..3 {
                    check_stop()?;
                    let side = (round + k) % 3;
                    let run = match side {
                        0 => run_peer(&peers, &url, OURS, "ours", clients, seconds)?,
                        s => run_peer(&peers, &url, peer, SESSIONS[s - 1], clients, seconds)?,
                    };
                    tps[side] = run.tps();
                    sides[side].absorb(run);
                }
                per_round[0].push(tps[0] / tps[1]);
                per_round[1].push(tps[0] / tps[2]);
            }
            let [ours_run, defaults, same] = sides;
            let [vs_defaults, vs_same] = per_round.map(median);
            eprintln!(
                "{peer}, {clients} client(s): ours {:.0} pages/s, {peer} {:.0} (its defaults), {:.0} (our session); \
                 median ratios {vs_defaults:.3}, {vs_same:.3}",
                ours_run.tps(),
                defaults.tps(),
                same.tps()
            );
            for (session, theirs, ratio) in [
                ("ours", &same, vs_same),
                ("defaults", &defaults, vs_defaults),
            ] {
                measured
                    .ratios
                    .push((ratio_key(peer, session, clients), ratio));
                let settings = match session {
                    "ours" => "our session settings",
                    _ => "its defaults",
                };
                measured.rows.push(Row {
                    what: format!(
                        "feed, typed path vs a Rust client (TLS off; median of {rounds} rounds of {seconds} s)"
                    ),
                    clients: clients.to_string(),
                    ours: throughput_cells(&ours_run),
                    peer: format!("{peer}, {settings}, same SQL"),
                    theirs: throughput_cells(theirs),
                    ratio: Some(ratio),
                    target: Target::AtLeast(1.0),
                });
            }
        }
    }
    let counted = instructions(bench_dir);
    // A Ctrl-C reaches the counter too: an interrupted run stops here
    // rather than reporting the count as skipped.
    check_stop()?;
    measured.absorb(counted);
    Ok(measured)
}

/// The client instructions per page of our typed path and rust-postgres
/// (`client-cost`, under callgrind), as one row and three numbers of
/// `summary.json`; skipped without valgrind.
fn instructions(bench_dir: &Path) -> Measured {
    const WHAT: &str = "client instructions per page, typed path (callgrind)";
    let counted = (|| -> Result<serde_json::Value, String> {
        if Command::new("valgrind")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            return Err("valgrind is not installed".into());
        }
        let counter = super::build_member("cruddur-db-client-cost", "client-cost")?;
        let out_dir: PathBuf = bench_dir.join("client-cost");
        let log = bench_dir.join("client-cost.log");
        let status = Command::new(&counter)
            .args([
                "--client",
                "ours-typed",
                "--client",
                "rust-postgres",
                "--out",
            ])
            .arg(&out_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| format!("running {}: {e}", counter.display()))?;
        if !status.success() {
            return Err(format!(
                "client-cost failed ({status}); see {}",
                log.display()
            ));
        }
        let json = std::fs::read(out_dir.join("client-cost.json")).map_err(|e| e.to_string())?;
        serde_json::from_slice(&json).map_err(|e| e.to_string())
    })();
    let counts = match counted {
        Ok(counts) => counts,
        Err(why) => {
            eprintln!("skipping the instruction count: {why}");
            return Measured::skipped(WHAT, &why);
        }
    };
    let (Some(ours), Some(peer)) = (
        counts["client_ir_per_page_ours_typed"].as_f64(),
        counts["client_ir_per_page_rust_postgres"].as_f64(),
    ) else {
        return Measured::skipped(WHAT, "client-cost.json lacks the two counts");
    };
    let ratio = ours / peer;
    eprintln!("instructions per page: ours {ours:.0}, rust-postgres {peer:.0} ({ratio:.3}x)");
    let count = |n: f64| [format!("{n:.0} Ir"), "–".into(), "–".into()];
    Measured {
        rows: vec![Row {
            what: WHAT.into(),
            clients: "1".into(),
            ours: count(ours),
            peer: "rust-postgres, same statement".into(),
            theirs: count(peer),
            ratio: Some(ratio),
            target: Target::AtMost(1.0),
        }],
        ratios: vec![
            ("client_ir_per_page_ours_typed".into(), ours),
            ("client_ir_per_page_rust_postgres".into(), peer),
            ("client_ir_ratio_typed_vs_rust_postgres".into(), ratio),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_report_becomes_a_run() {
        let run =
            parse_report(br#"{"pages": 3, "seconds": 1.5, "latencies_us": [10.0, 20.0, 30.0]}"#)
                .unwrap();
        assert_eq!(run.transactions, 3);
        assert!((run.tps() - 2.0).abs() < 1e-9);
        assert!((run.percentile_ms(0.5) - 0.02).abs() < 1e-9);
    }

    #[test]
    fn a_report_that_does_not_add_up_is_refused() {
        for bad in [
            &br#"{"pages": 2, "seconds": 1.0, "latencies_us": [1.0]}"#[..],
            br#"{"pages": 0, "seconds": 1.0, "latencies_us": []}"#,
            br#"{"pages": 1, "seconds": 0, "latencies_us": [1.0]}"#,
            br#"{"seconds": 1.0}"#,
            b"error: connection refused",
        ] {
            assert!(
                parse_report(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_median_ratio_ignores_one_disturbed_round() {
        assert_eq!(median(vec![1.02, 0.60, 1.04]), 1.02);
        assert_eq!(median(vec![1.0, 1.1, 0.9, 1.2]), 1.05);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn ratio_keys_name_the_peer_and_its_session() {
        assert_eq!(
            ratio_key("tokio-postgres", "ours", 4),
            "rust_tokio_postgres_ratio_c4"
        );
        assert_eq!(
            ratio_key("sqlx", "defaults", 1),
            "rust_sqlx_defaults_ratio_c1"
        );
    }

    #[test]
    fn rows_run_without_tls_or_not_at_all() {
        let plain = DatabaseUrl::parse("postgres://u@db.example/feed").unwrap();
        assert_eq!(
            without_tls(&plain).unwrap().param("sslmode"),
            Some("disable")
        );
        let strict =
            DatabaseUrl::parse("postgres://u@db.example/feed?sslmode=verify-full").unwrap();
        assert!(without_tls(&strict).unwrap_err().contains("verify-full"));
    }
}
