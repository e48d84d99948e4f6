//! The feed behind a real PgBouncer (transaction mode, 4 server
//! connections) against the same server directly, and what turning the
//! statement cache off costs on its own (what pooler mode does), directly.

use cruddur_db::{Config, Pooler, Repository};
use cruddur_db_test_support::PgBouncer;

use crate::{
    BenchResult, FeedSetup, Measured, Plan, Row, Target, pair, run_ours, throughput_cells,
    typed_page,
};

/// Server connections PgBouncer holds for the benchmark database.
const SERVER_CONNECTIONS: u32 = 4;

/// A repository on `config` with `clients` connections.
fn repository(mut config: Config, clients: usize) -> BenchResult<Repository> {
    config.pool_size = u32::try_from(clients).unwrap_or(u32::MAX);
    Ok(Repository::connect(&config)?)
}

/// Rows at 4 and 64 clients through the pooler against direct (cache on),
/// and cache off against on, directly, at 4 clients.
pub(crate) fn pooler_phase(plan: Plan, feed: &FeedSetup) -> BenchResult<Measured> {
    let bouncer = PgBouncer::in_front_of(&feed.main_db, SERVER_CONNECTIONS);
    let database = feed.main_db.database().unwrap_or_default();
    let mut pooled_config = Config::new(bouncer.url(&database));
    pooled_config.pooler = Pooler::Transaction;
    let mut uncached_config = Config::new(feed.main_db.clone());
    uncached_config.pooler = Pooler::Transaction;
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for clients in [4, 64] {
        let pooled = repository(pooled_config.clone(), clients)?;
        let direct = repository(Config::new(feed.main_db.clone()), clients)?;
        let (ours, peer) = pair(
            plan,
            "pooler",
            clients,
            &|| typed_page(&pooled),
            &mut || run_ours(clients, plan.seconds, &|| typed_page(&direct)),
        )?;
        let ratio = ours.tps() / peer.tps();
        ratios.push((format!("pooler_feed_vs_direct_c{clients}"), ratio));
        ratios.push((
            format!("pooler_feed_p99_ms_c{clients}"),
            ours.percentile_ms(0.99),
        ));
        ratios.push((
            format!("direct_feed_p99_ms_c{clients}"),
            peer.percentile_ms(0.99),
        ));
        rows.push(Row {
            what: format!(
                "typed feed through PgBouncer 1.18 (transaction mode, {SERVER_CONNECTIONS} server connections)"
            ),
            clients: clients.to_string(),
            ours: throughput_cells(&ours),
            peer: "ours, the same server directly".into(),
            theirs: throughput_cells(&peer),
            ratio: Some(ratio),
            target: Target::None,
        });
    }
    let clients = 4;
    let uncached = repository(uncached_config, clients)?;
    let cached = repository(Config::new(feed.main_db.clone()), clients)?;
    let (off, on) = pair(
        plan,
        "statement cache",
        clients,
        &|| typed_page(&uncached),
        &mut || run_ours(clients, plan.seconds, &|| typed_page(&cached)),
    )?;
    let ratio = off.tps() / on.tps();
    ratios.push((String::from("statement_cache_off_vs_on_c4"), ratio));
    rows.push(Row {
        what: "typed feed, statement cache off (unnamed statements), directly".into(),
        clients: clients.to_string(),
        ours: throughput_cells(&off),
        peer: "ours, statement cache on".into(),
        theirs: throughput_cells(&on),
        ratio: Some(ratio),
        target: Target::None,
    });
    Ok(Measured { rows, ratios })
}
