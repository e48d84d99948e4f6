//! The read-replica rows, on a private primary and hot standby made for the
//! run (a `TempCluster` and `LocalCluster::start_replicas`), never on the
//! bench's server: the standby is a copy of a whole cluster, and the servers
//! are pinned to CPUs.
//!
//! - **Router**: the feed's first page read through the replica router
//!   (`home_feed(Consistency::Eventual, …)` and `AtLeast(token)` with a
//!   token the standby has replayed), which the router sends to the standby,
//!   against `home_feed` on a plain `Repository` whose pool has the same
//!   settings (`build_replica_pool`) and points straight at the standby: the
//!   same server on both sides, so the ratio is the router's own cost. A
//!   fourth side, the same plain pool pointed at the primary, shows whether
//!   the standby serves the page as fast as the primary does. Both servers
//!   run on one CPU and the bench's threads on the other, so that every
//!   page crosses between the same two CPUs on every side (unpinned, a
//!   1-client round trip is about twice as fast when the scheduler happens
//!   to put client and backend on one CPU). The bench process's CPU per
//!   page, the router's cost on the client, is reported too.
//! - **Standby under writes**: the primary's processes pinned to one CPU and
//!   the standby's to the other, writers creating activities on the primary
//!   at a fixed rate, and readers reading the feed through the router with
//!   `Consistency::Eventual` (served by the standby, which the routing
//!   counters prove), against the same readers on the primary alone with the
//!   same writers. The bench's own threads are not pinned: they share both
//!   CPUs with the servers.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cruddur_db::replica::{ReplicaStatus, RoutingCounters};
use cruddur_db::repo::activities::ActivityDraft;
use cruddur_db::schema::users;
use cruddur_db::{
    Config, Consistency, DatabaseUrl, FeedPage, Repository, Settings, SyntheticSeed, WriteToken,
    establish, pool::build_replica_pool, prepare, seed_synthetic,
};
use cruddur_db_local::LocalCluster;
use cruddur_db_test_support::TempCluster;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::{
    BenchResult, Measured, PAGE, Plan, RNG_SEED, Row, Run, Target, USERS, WARMUP, check_stop,
    execute, fail, human, run_ours, stopped, throughput_cells,
};

/// The database made on the private primary (and copied to the standby).
const DB: &str = "cruddur_bench";
/// Activities on the pair in a full run (the quick run has a tenth): the
/// feed reads 20 rows off an index, so the size matters little, and a
/// smaller one keeps the base backup to a second or two.
const PAIR_ACTIVITIES: u64 = 100_000;
/// Reader threads in the rows under writes.
const READERS: usize = 4;
/// Writer threads in the rows under writes.
const WRITERS: usize = 4;
/// The writers' combined rate: a fixed offered load, so that both sides of
/// the comparison carry the same writes whatever the readers do.
const WRITES_PER_SECOND: f64 = 2500.0;
/// How often the standby's lag is sampled while the writers run.
const LAG_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The replica rows, or one row saying why they were skipped: `skip` is the
/// reason given on the command line; a pair that cannot be made (no
/// `initdb` or `pg_basebackup`, no server user to run them as) is another.
pub(super) fn replica_phase(
    plan: Plan,
    settings: &Settings,
    skip: Option<&str>,
) -> BenchResult<Measured> {
    if let Some(why) = skip {
        return Ok(skipped(why));
    }
    check_stop()?;
    let activities = pair_activities(plan);
    let t = Instant::now();
    let pair = match Pair::start(settings, activities) {
        Ok(pair) => pair,
        Err(e) if stopped() => return Err(e),
        Err(e) => {
            eprintln!("skipping the replica rows: {e}");
            return Ok(skipped(&format!(
                "no primary and standby could be made: {e}"
            )));
        }
    };
    eprintln!(
        "replicas: private primary and standby with {}k users and {} activities, ready in {:.1} s",
        USERS / 1000,
        human(activities),
        t.elapsed().as_secs_f64()
    );
    let mut measured = router_rows(plan, &pair)?;
    let under_writes = under_writes_rows(plan, &pair)?;
    measured.rows.extend(under_writes.rows);
    measured.ratios.extend(under_writes.ratios);
    Ok(measured)
}

/// The activities seeded on the pair: [`PAIR_ACTIVITIES`], a tenth of it
/// in a quick run.
pub(super) fn pair_activities(plan: Plan) -> u64 {
    if plan.quick {
        PAIR_ACTIVITIES / 10
    } else {
        PAIR_ACTIVITIES
    }
}

fn skipped(why: &str) -> Measured {
    Measured::skipped("feed through the replica router; standby under writes", why)
}

// ---------------------------------------------------------------------------
// The pair

/// A private primary with the seeded database and one hot standby copied
/// from it; both are stopped and removed when this drops.
struct Pair {
    /// The primary; replica 1 lives in its directory, so dropping it
    /// removes both.
    primary: TempCluster,
    /// Replica 1's directory as a cluster of its own, for its processes.
    standby: LocalCluster,
    primary_url: DatabaseUrl,
    standby_url: DatabaseUrl,
}

impl Pair {
    /// Starts the primary, seeds [`DB`] there (the synthetic data, vacuumed
    /// and checkpointed), then copies it into a standby: the copy has the
    /// data already, so there is nothing to wait for.
    fn start(settings: &Settings, activities: u64) -> BenchResult<Self> {
        let primary = TempCluster::start()?;
        let primary_url = primary.url_for(DB)?;
        prepare(&primary_url)?;
        let spec = SyntheticSeed {
            users: USERS,
            activities,
            rng_seed: RNG_SEED,
        };
        seed_synthetic(&mut establish(&primary_url)?, spec, &|_| ())?;
        execute(&primary_url, "VACUUM (ANALYZE) users")?;
        execute(&primary_url, "VACUUM (ANALYZE) activities")?;
        execute(&primary_url, "CHECKPOINT")?;
        check_stop()?;
        primary.start_replicas(1)?;
        let standby_url = primary.replica_url(1)?.with_database(DB);
        let standby = LocalCluster::at(primary.replica_dir(1), settings)?;
        Ok(Self {
            primary,
            standby,
            primary_url,
            standby_url,
        })
    }

    /// The primary's URL with the standby as its one replica.
    fn routed_config(&self) -> Config {
        let mut config = Config::new(self.primary_url.clone());
        config.replica_urls = vec![self.standby_url.clone()];
        config
    }
}

/// A router-backed repository over the pair, once its prober has found the
/// standby up (until then every read would go to the primary).
fn routed(pair: &Pair) -> BenchResult<Repository> {
    let repo = Repository::connect(&pair.routed_config())?;
    repo.router().wait_for_probes(Duration::from_secs(10));
    let (_, state) = &repo.router().replicas()[0];
    if state.status != ReplicaStatus::Up {
        return fail(format!(
            "the standby is not up for the router: {} ({})",
            state.status,
            state.last_error.as_deref().unwrap_or("no error")
        ));
    }
    Ok(repo)
}

/// Fails unless every read since `before` was served by the replica.
fn all_on_replica(repo: &Repository, before: RoutingCounters, what: &str) -> BenchResult<u64> {
    let after = repo.counters();
    let elsewhere = (after.primary_reads_chosen - before.primary_reads_chosen)
        + (after.primary_reads_no_healthy_replica - before.primary_reads_no_healthy_replica)
        + (after.primary_reads_not_current - before.primary_reads_not_current)
        + (after.conflict_retries - before.conflict_retries)
        + (after.replica_failure_retries - before.replica_failure_retries);
    if elsewhere > 0 {
        return fail(format!(
            "{what}: {elsewhere} reads did not stay on the standby ({after:?})"
        ));
    }
    Ok(after.replica_reads - before.replica_reads)
}

/// One full page, or an error.
fn full_page(page: cruddur_db::Result<Vec<cruddur_db::FeedItem>>) -> BenchResult<()> {
    if page?.len() != PAGE as usize {
        return fail("short page");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The router's own cost

/// The four sides of the router rows, in the order a round starts with.
const ROUTER_SIDES: [&str; 4] = [
    "plain pool -> standby",
    "router, Eventual",
    "router, AtLeast(token)",
    "plain pool -> primary",
];

/// The router rows cut each side's time into slices of at most this many
/// seconds, and rotate the four sides slice by slice: at 1 client a page's
/// round trip is shorter when the scheduler puts the client thread on the
/// server backend's CPU, which it does for a while and then stops, so one
/// long run per side is often a different draw from the next.
const ROUTER_SLICE_SECONDS: u64 = 2;

/// The router's Eventual and AtLeast(token) reads against the same pool
/// settings straight at the standby, and that pool at the primary, at 1
/// and 4 clients; the four sides rotate which goes first.
fn router_rows(plan: Plan, pair: &Pair) -> BenchResult<Measured> {
    let pinned = pin_for_router_rows(pair);
    match &pinned {
        Ok((bench, servers)) => eprintln!(
            "replica router: both servers pinned to CPU {servers}, the bench's threads to CPU {bench}"
        ),
        Err(why) => eprintln!("replica router: not pinned: {why}"),
    }
    let pinning = match &pinned {
        Ok((bench, servers)) => format!("servers on CPU {servers}, bench threads on CPU {bench}"),
        Err(why) => format!("not pinned: {why}"),
    };
    let measured = router_rows_measured(plan, pair, &pinning);
    if pinned.is_ok()
        && let Err(why) = unpin_bench()
    {
        return fail(format!("could not unpin the bench's threads: {why}"));
    }
    measured
}

fn router_rows_measured(plan: Plan, pair: &Pair, pinning: &str) -> BenchResult<Measured> {
    let config = pair.routed_config();
    let routed = routed(pair)?;
    let plain =
        |url: &DatabaseUrl| Repository::from_pool(build_replica_pool(&config, url), url.clone());
    let to_standby = plain(&pair.standby_url);
    let to_primary = plain(&pair.primary_url);
    let token = replayed_token(&routed)?;
    let page = FeedPage::first(PAGE);
    let ops: [&(dyn Fn() -> BenchResult<()> + Sync); 4] = [
        &|| full_page(to_standby.home_feed(Consistency::Primary, page)),
        &|| full_page(routed.home_feed(Consistency::Eventual, page)),
        &|| full_page(routed.home_feed(Consistency::AtLeast(token), page)),
        &|| full_page(to_primary.home_feed(Consistency::Primary, page)),
    ];
    let before = routed.counters();
    let slice = plan.seconds.min(ROUTER_SLICE_SECONDS);
    let slices = plan.rounds * (plan.seconds / slice).max(1) as usize;
    let mut measured = Measured::default();
    for clients in [1usize, 4] {
        let mut sides: [Run; 4] = Default::default();
        // The bench process's CPU seconds and pages (warm-up included) per
        // side: what the router adds on the client, free of the scheduling
        // noise in the wall-clock figures.
        let mut cpu = [(0.0, 0u64); 4];
        // Eventual against the plain pool, slice by slice: their spread
        // shows how much of a ratio is noise.
        let mut slice_ratios = Vec::with_capacity(slices);
        for round in 0..slices {
            let mut tps = [0.0; 4];
            for k in 0..ROUTER_SIDES.len() {
                check_stop()?;
                let side = (round + k) % ROUTER_SIDES.len();
                let cpu_before = process_cpu_seconds(std::process::id());
                let run = run_ours(clients, slice, ops[side])?;
                cpu[side].0 += process_cpu_seconds(std::process::id()) - cpu_before;
                cpu[side].1 += run.transactions + (WARMUP * clients) as u64;
                tps[side] = run.tps();
                sides[side].absorb(run);
            }
            slice_ratios.push(tps[1] / tps[0]);
        }
        slice_ratios.sort_by(f64::total_cmp);
        eprintln!(
            "replica router, {clients} client(s): {}; Eventual / plain pool by slice {:.2} to {:.2}",
            ROUTER_SIDES
                .iter()
                .zip(&sides)
                .map(|(name, run)| format!("{name} {:.0}", run.tps()))
                .collect::<Vec<_>>()
                .join(", "),
            slice_ratios[0],
            slice_ratios[slice_ratios.len() - 1]
        );
        let us_per_page = cpu.map(|(seconds, pages)| seconds * 1e6 / pages.max(1) as f64);
        eprintln!(
            "replica router, {clients} client(s): bench CPU per page {}",
            ROUTER_SIDES
                .iter()
                .zip(&us_per_page)
                .map(|(name, us)| format!("{name} {us:.1} µs"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let [straight, eventual, at_least, primary] = sides;
        let eventual_ratio = eventual.tps() / straight.tps();
        let token_ratio = at_least.tps() / straight.tps();
        let standby_ratio = straight.tps() / primary.tps();
        measured.ratios.extend([
            (format!("replica_router_ratio_c{clients}"), eventual_ratio),
            (
                format!("replica_router_token_ratio_c{clients}"),
                token_ratio,
            ),
            (
                format!("replica_standby_vs_primary_c{clients}"),
                standby_ratio,
            ),
            (
                format!("replica_router_client_cpu_ratio_c{clients}"),
                us_per_page[1] / us_per_page[0],
            ),
        ]);
        let peer = "plain pool (same settings) -> standby";
        measured.rows.extend([
            Row {
                what: format!("replica router: feed, Eventual (served by the standby; {pinning})"),
                clients: clients.to_string(),
                ours: throughput_cells(&eventual),
                peer: peer.into(),
                theirs: throughput_cells(&straight),
                ratio: Some(eventual_ratio),
                target: Target::AtLeast(0.95),
            },
            Row {
                what: "replica router: feed, AtLeast(replayed token) (standby)".into(),
                clients: clients.to_string(),
                ours: throughput_cells(&at_least),
                peer: peer.into(),
                theirs: throughput_cells(&straight),
                ratio: Some(token_ratio),
                target: Target::AtLeast(0.95),
            },
            Row {
                what: "replica router: the bench's CPU per page, Eventual / AtLeast(token)".into(),
                clients: clients.to_string(),
                ours: [
                    format!("{:.1} µs", us_per_page[1]),
                    format!("{:.1} µs", us_per_page[2]),
                    "–".into(),
                ],
                peer: peer.into(),
                theirs: [format!("{:.1} µs", us_per_page[0]), "–".into(), "–".into()],
                ratio: Some(us_per_page[1] / us_per_page[0]),
                target: Target::None,
            },
            Row {
                what: "plain pool -> standby (feed, no router)".into(),
                clients: clients.to_string(),
                ours: throughput_cells(&straight),
                peer: "plain pool (same settings) -> primary".into(),
                theirs: throughput_cells(&primary),
                ratio: Some(standby_ratio),
                target: Target::None,
            },
        ]);
    }
    let on_replica = all_on_replica(&routed, before, "the router rows")?;
    eprintln!(
        "replica router: all {on_replica} routed reads were served by the standby ({:?})",
        routed.counters()
    );
    Ok(measured)
}

/// A write's token that the router's prober has seen the standby replay,
/// so that `AtLeast(token)` reads take the standby without waiting, as
/// most reads carrying a token of an earlier request do.
fn replayed_token(repo: &Repository) -> BenchResult<WriteToken> {
    let handle = handles(repo, 1)?.remove(0);
    let (_, token) = repo.create_activity(&ActivityDraft::parse(
        &handle,
        "written before the router rows",
        "1-day",
    )?)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while repo.router().replicas()[0].1.replay_lsn < Some(token.lsn()) {
        check_stop()?;
        if Instant::now() >= deadline {
            return fail(format!(
                "the router did not see the standby replay {token} within 10 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(token)
}

/// `n` handles of the seeded users.
fn handles(repo: &Repository, n: i64) -> BenchResult<Vec<String>> {
    let found: Vec<String> = users::table
        .select(users::handle)
        .order(users::handle)
        .limit(n)
        .load(&mut *repo.pool().get()?)?;
    if found.len() as i64 != n {
        return fail("the pair has fewer users than writers");
    }
    Ok(found)
}

// ---------------------------------------------------------------------------
// The standby under writes, each server on a CPU of its own

/// What the writers did during one side.
#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    count: u64,
    seconds: f64,
}

impl Writes {
    fn absorb(&mut self, other: Writes) {
        self.count += other.count;
        self.seconds += other.seconds;
    }

    fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The standby's replay lag in bytes, sampled while the writers ran: the
/// largest sample and the last one, taken as the readers finished.
#[derive(Debug, Clone, Copy, Default)]
struct Lag {
    max: u64,
    end: u64,
}

/// Readers through the router (served by the standby) against readers on
/// the primary alone, under the same writers, with the servers pinned.
fn under_writes_rows(plan: Plan, pair: &Pair) -> BenchResult<Measured> {
    let pinned = pin_servers(pair);
    match &pinned {
        Ok((p, s)) => eprintln!("replicas: primary pinned to CPU {p}, standby to CPU {s}"),
        Err(why) => eprintln!("replicas: servers not pinned: {why}"),
    }
    // Every pool is opened after the pinning: its backends fork from the
    // pinned postmasters and inherit their CPU.
    let primary_config = Config::new(pair.primary_url.clone());
    let writers = Repository::connect(&primary_config)?;
    let on_primary = Repository::connect(&primary_config)?;
    let routed = routed(pair)?;
    let handles = handles(&writers, WRITERS as i64)?;
    let page = FeedPage::first(PAGE);
    let via_standby = || full_page(routed.home_feed(Consistency::Eventual, page));
    let primary_alone = || full_page(on_primary.home_feed(Consistency::Primary, page));

    let before = routed.counters();
    let (mut standby_run, mut primary_run) = (Run::default(), Run::default());
    let (mut standby_writes, mut primary_writes) = (Writes::default(), Writes::default());
    let (mut standby_cpu, mut primary_cpu) = (Vec::new(), Vec::new());
    let mut lag = Lag::default();
    for round in 0..plan.rounds {
        for standby_side in [round % 2 == 0, round % 2 == 1] {
            check_stop()?;
            if standby_side {
                let (run, writes, seen, cpu) =
                    under_writes(plan, pair, &writers, &handles, &via_standby, true)?;
                standby_run.absorb(run);
                standby_writes.absorb(writes);
                standby_cpu.push(cpu);
                let seen = seen.unwrap_or_default();
                lag = Lag {
                    max: lag.max.max(seen.max),
                    end: seen.end,
                };
            } else {
                let (run, writes, _, cpu) =
                    under_writes(plan, pair, &writers, &handles, &primary_alone, false)?;
                primary_run.absorb(run);
                primary_writes.absorb(writes);
                primary_cpu.push(cpu);
            }
        }
    }
    let standby_cpu = mean_cpu(&standby_cpu);
    let primary_cpu = mean_cpu(&primary_cpu);
    let on_replica = all_on_replica(&routed, before, "the rows under writes")?;
    // Checked while every pool still holds its connections, so the
    // backends that served the runs are among the processes checked.
    let pinning = match pinned {
        Ok((p, s)) => {
            let checked = verify_pinned(&pair.primary, p)
                .and_then(|np| verify_pinned(&pair.standby, s).map(|ns| (np, ns)));
            match checked {
                Ok((np, ns)) => {
                    eprintln!(
                        "replicas: pinning checked on {np} primary and {ns} standby processes"
                    );
                    format!("primary CPU {p}, standby CPU {s}")
                }
                Err(e) => return fail(format!("the servers' pinning did not hold: {e}")),
            }
        }
        Err(why) => format!("not pinned: {why}"),
    };
    eprintln!(
        "standby under writes: via the standby {:.0} pages/s ({on_replica} reads there), primary alone {:.0}; \
         writes/s {:.0} / {:.0}; lag max {} B, at the end {} B",
        standby_run.tps(),
        primary_run.tps(),
        standby_writes.per_second(),
        primary_writes.per_second(),
        lag.max,
        lag.end
    );
    eprintln!(
        "standby under writes: reads on the standby: {}; reads on the primary: {}",
        standby_cpu.show(),
        primary_cpu.show()
    );
    let ratio = standby_run.tps() / primary_run.tps();
    let clients = format!("{READERS} + {WRITERS} writers");
    Ok(Measured {
        rows: vec![
            Row {
                what: format!(
                    "standby under writes: feed, Eventual via the router ({pinning}; clients unpinned)"
                ),
                clients: clients.clone(),
                ours: throughput_cells(&standby_run),
                peer: "the same readers on the primary alone, same writers".into(),
                theirs: throughput_cells(&primary_run),
                ratio: Some(ratio),
                target: Target::None,
            },
            Row {
                what: format!(
                    "standby under writes: writes/s achieved ({WRITES_PER_SECOND:.0}/s offered), standby lag max / at the end"
                ),
                clients,
                ours: [
                    format!("{:.0} writes/s", standby_writes.per_second()),
                    format!("max {}", bytes(lag.max)),
                    format!("end {}", bytes(lag.end)),
                ],
                peer: "writes/s with the readers on the primary".into(),
                theirs: [
                    format!("{:.0} writes/s", primary_writes.per_second()),
                    "–".into(),
                    "–".into(),
                ],
                ratio: None,
                target: Target::None,
            },
            Row {
                what: "standby under writes: CPUs busy (primary / standby / bench process)".into(),
                clients: "–".into(),
                ours: cpu_cells(&standby_cpu),
                peer: "the same with the readers on the primary".into(),
                theirs: cpu_cells(&primary_cpu),
                ratio: None,
                target: Target::None,
            },
        ],
        ratios: vec![(String::from("replica_standby_under_writes_ratio"), ratio)],
    })
}

/// The CPU each party used during one side, in CPUs (1.0 is one CPU
/// busy for the whole side).
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    primary: f64,
    standby: f64,
    bench: f64,
}

impl CpuUse {
    /// Reads the servers' and this process's CPU seconds so far.
    fn now(pair: &Pair) -> Self {
        Self {
            primary: cpu_seconds(&pair.primary),
            standby: cpu_seconds(&pair.standby),
            bench: process_cpu_seconds(std::process::id()),
        }
    }

    /// The use between `self` and `later`, over `seconds` of wall time.
    fn until(self, later: Self, seconds: f64) -> Self {
        Self {
            primary: (later.primary - self.primary) / seconds,
            standby: (later.standby - self.standby) / seconds,
            bench: (later.bench - self.bench) / seconds,
        }
    }

    fn show(&self) -> String {
        format!(
            "CPUs busy: primary {:.2}, standby {:.2}, bench process {:.2}",
            self.primary, self.standby, self.bench
        )
    }
}

/// One side: the writers run at their fixed rate for as long as the readers
/// run `op` (warm-up included). With `sample_lag`, the standby's lag is
/// sampled meanwhile and once more as the readers finish, the writers
/// still going.
fn under_writes(
    plan: Plan,
    pair: &Pair,
    writers: &Repository,
    handles: &[String],
    op: &(dyn Fn() -> BenchResult<()> + Sync),
    sample_lag: bool,
) -> BenchResult<(Run, Writes, Option<Lag>, CpuUse)> {
    let readers_done = AtomicBool::new(false);
    let writers_done = AtomicBool::new(false);
    let per_writer = WRITES_PER_SECOND / WRITERS as f64;
    let cpu_before = CpuUse::now(pair);
    let started = Instant::now();
    let (run, writes, lag) = std::thread::scope(|s| {
        let writer_threads: Vec<_> = handles
            .iter()
            .map(|handle| s.spawn(|| write_paced(writers, handle, per_writer, &writers_done)))
            .collect();
        let sampler = sample_lag.then(|| s.spawn(|| sample_lag_until(pair, &readers_done)));
        let run = run_ours(READERS, plan.seconds, op);
        readers_done.store(true, Ordering::Relaxed);
        let lag = sampler
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| fail("the lag sampler panicked"))
            })
            .transpose();
        writers_done.store(true, Ordering::Relaxed);
        let mut writes = Writes::default();
        for t in writer_threads {
            let (count, seconds) = t
                .join()
                .unwrap_or_else(|_| fail("a writer thread panicked"))?;
            writes.count += count;
            writes.seconds = writes.seconds.max(seconds);
        }
        BenchResult::Ok((run?, writes, lag?))
    })?;
    let cpu = cpu_before.until(CpuUse::now(pair), started.elapsed().as_secs_f64());
    Ok((run, writes, lag, cpu))
}

/// Creates activities as `handle` at `per_second` until `done`; returns
/// how many and over how many seconds. A writer that falls behind catches
/// up without sleeping, so the offered load stays the same.
fn write_paced(
    repo: &Repository,
    handle: &str,
    per_second: f64,
    done: &AtomicBool,
) -> BenchResult<(u64, f64)> {
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let start = Instant::now();
    let mut next = start;
    let mut count = 0u64;
    while !done.load(Ordering::Relaxed) && !stopped() {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
            continue;
        }
        repo.create_activity(&ActivityDraft::parse(
            handle,
            "a write while the feed is read",
            "1-day",
        )?)?;
        count += 1;
        next += interval;
    }
    Ok((count, start.elapsed().as_secs_f64()))
}

/// The lag every [`LAG_SAMPLE_EVERY`] until `done`, and once more then:
/// the largest sample and the last.
fn sample_lag_until(pair: &Pair, done: &AtomicBool) -> BenchResult<Lag> {
    let mut probe = LagProbe::new(pair)?;
    let mut max = 0;
    while !done.load(Ordering::Relaxed) && !stopped() {
        max = max.max(probe.bytes()?);
        std::thread::sleep(LAG_SAMPLE_EVERY);
    }
    let end = probe.bytes()?;
    Ok(Lag {
        max: max.max(end),
        end,
    })
}

/// A connection to each server, kept for the samples (a new backend per
/// sample would load the pinned CPUs more than the query does).
struct LagProbe {
    standby: PgConnection,
    primary: PgConnection,
}

impl LagProbe {
    fn new(pair: &Pair) -> BenchResult<Self> {
        Ok(Self {
            standby: establish(&pair.standby_url)?,
            primary: establish(&pair.primary_url)?,
        })
    }

    /// How many bytes of WAL the standby has still to replay: its replay
    /// position read first, then the primary's write position, so that
    /// the lag is not understated.
    fn bytes(&mut self) -> BenchResult<u64> {
        let replayed: Option<String> =
            diesel::select(sql::<Nullable<Text>>("pg_last_wal_replay_lsn()::text"))
                .get_result(&mut self.standby)?;
        let Some(replayed) = replayed else {
            return fail("the standby reports no replay position");
        };
        let lag: i64 = diesel::select(
            sql::<BigInt>("greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), ")
                .bind::<Text, _>(replayed)
                .sql("::pg_lsn), 0)::bigint"),
        )
        .get_result(&mut self.primary)?;
        Ok(lag.unsigned_abs())
    }
}

fn cpu_cells(cpu: &CpuUse) -> [String; 3] {
    [
        format!("{:.2}", cpu.primary),
        format!("{:.2}", cpu.standby),
        format!("{:.2}", cpu.bench),
    ]
}

/// The mean of the sides' CPU use.
fn mean_cpu(sides: &[CpuUse]) -> CpuUse {
    let n = sides.len().max(1) as f64;
    sides.iter().fold(CpuUse::default(), |sum, c| CpuUse {
        primary: sum.primary + c.primary / n,
        standby: sum.standby + c.standby / n,
        bench: sum.bench + c.bench / n,
    })
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.0} kB", n as f64 / f64::from(1 << 10))
    } else {
        format!("{n} B")
    }
}

// ---------------------------------------------------------------------------
// Pinning

/// CPU seconds used so far by the live processes of `cluster` (user and
/// system, from `/proc/<pid>/stat`); a process that exited is not counted,
/// so read it around runs whose backends stay (pooled connections).
fn cpu_seconds(cluster: &LocalCluster) -> f64 {
    cluster
        .processes()
        .into_iter()
        .map(process_cpu_seconds)
        .sum()
}

/// CPU seconds of process `pid` (0 when it cannot be read).
fn process_cpu_seconds(pid: u32) -> f64 {
    // Linux reports them in USER_HZ, 100 per second on every architecture
    // it runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The name in parentheses may hold spaces; fields count from after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 11 and 12 (from 0) after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// The first two CPUs this process may run on (read before any pinning of
/// its own), or why there are not two.
fn two_cpus() -> Result<(u32, u32), String> {
    let cpus = bench_cpus()?;
    match cpus[..] {
        [a, b, ..] => Ok((a, b)),
        _ => Err(format!("only CPU {cpus:?} available; two are needed")),
    }
}

/// The CPUs this process was allowed when first asked (before the router
/// rows pin it), to give them back afterwards.
fn bench_cpus() -> Result<Vec<u32>, String> {
    static CPUS: std::sync::OnceLock<Option<Vec<u32>>> = std::sync::OnceLock::new();
    CPUS.get_or_init(|| allowed_cpus(std::process::id()))
        .clone()
        .ok_or_else(|| "cannot read this process's CPUs from /proc/self/status".into())
}

/// For the router rows: both servers on the second CPU, every thread of
/// this process (and those it starts later, which inherit it) on the
/// first, so that each page crosses between the same two CPUs on every
/// side. Returns (the bench's CPU, the servers').
fn pin_for_router_rows(pair: &Pair) -> Result<(u32, u32), String> {
    let (bench, servers) = two_cpus()?;
    pin_cluster(&pair.primary, servers)?;
    pin_cluster(&pair.standby, servers)?;
    taskset(std::process::id(), &bench.to_string())?;
    Ok((bench, servers))
}

/// Gives this process's threads back the CPUs it started with.
fn unpin_bench() -> Result<(), String> {
    let all: Vec<String> = bench_cpus()?.iter().map(u32::to_string).collect();
    taskset(std::process::id(), &all.join(","))
}

/// Pins every process of the primary to the first CPU this process may run
/// on and every process of the standby to the second. Backends started
/// later fork from the pinned postmasters and inherit the CPU. Returns the
/// two CPUs, or why the servers were left unpinned.
fn pin_servers(pair: &Pair) -> Result<(u32, u32), String> {
    let (p, s) = two_cpus()?;
    pin_cluster(&pair.primary, p)?;
    pin_cluster(&pair.standby, s)?;
    Ok((p, s))
}

/// Pins every live process of `cluster` to `cpu`.
fn pin_cluster(cluster: &LocalCluster, cpu: u32) -> Result<(), String> {
    let pids = cluster.processes();
    if pids.is_empty() {
        return Err(format!("no processes of {}", cluster.dir().display()));
    }
    pids.into_iter()
        .try_for_each(|pid| taskset(pid, &cpu.to_string()))
}

/// `taskset -a -p -c <cpus> <pid>`: every thread of `pid` on `cpus`.
fn taskset(pid: u32, cpus: &str) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("taskset could not run: {e}"))?;
    // A backend that exited meanwhile needs no pinning.
    let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
    if out.status.success() || gone {
        Ok(())
    } else {
        Err(format!(
            "taskset on {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Checks that every live process of `cluster` may run on `cpu` alone;
/// returns how many were checked.
fn verify_pinned(cluster: &LocalCluster, cpu: u32) -> Result<usize, String> {
    let pids = cluster.processes();
    let wrong: Vec<String> = pids
        .iter()
        .filter_map(|&pid| {
            let cpus = allowed_cpus(pid)?;
            (cpus != [cpu]).then(|| format!("{pid} on {cpus:?}"))
        })
        .collect();
    if wrong.is_empty() {
        Ok(pids.len())
    } else {
        Err(format!(
            "{}: {} (expected CPU {cpu})",
            cluster.dir().display(),
            wrong.join(", ")
        ))
    }
}

/// The CPUs process `pid` may run on (`Cpus_allowed_list` in
/// `/proc/<pid>/status`, e.g. `0-1,4`); `None` when it cannot be read.
fn allowed_cpus(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}
