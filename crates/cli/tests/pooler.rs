//! The CLI behind a real PgBouncer in transaction mode: refused without
//! pooler mode, reads and writes through the pooler with it, and the
//! commands that need a session through the direct URL or refused.

mod common;

use common::cli::{PASSWORD, Run, cli, run_cmd};
use common::{PgBouncer, TestDb, with_password};

fn run(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = cli();
    for (key, value) in env {
        cmd.env(key, value);
    }
    run_cmd(cmd, args)
}

#[test]
fn behind_a_transaction_pooler_commands_go_through_it_or_the_direct_url() {
    let db = TestDb::new();
    let bouncer = PgBouncer::start(3);
    let pooled = with_password(&bouncer.url(&db.name()), PASSWORD);
    let direct = with_password(&db.url, PASSWORD);
    let pooled = ("DATABASE_URL", pooled.expose());
    let mode = ("CRUDDUR_POOLER", "transaction");

    run(&[pooled], &["feed"])
        .failure()
        .stderr_has("behind a transaction pooler")
        .stderr_has("CRUDDUR_POOLER=transaction");
    for args in [&["prepare"][..], &["migrate", "run"], &["seed"]] {
        run(&[pooled, mode], args)
            .failure()
            .stderr_has("set DATABASE_DIRECT_URL");
    }
    // A direct URL to another database is refused before anything runs.
    let other = TestDb::new();
    let elsewhere = with_password(&other.url, PASSWORD);
    run(
        &[pooled, mode, ("DATABASE_DIRECT_URL", elsewhere.expose())],
        &["prepare"],
    )
    .failure()
    .stderr_has("both must name the same database");
    assert!(
        cruddur_db::migrations::applied_versions(&mut other.conn()).map_or(true, |v| v.is_empty()),
        "nothing was migrated on the other database"
    );

    let env = [pooled, mode, ("DATABASE_DIRECT_URL", direct.expose())];
    run(&env, &["prepare"]).success();
    run(&env, &["feed"]).success().stdout_has("(2 activities)");
    run(
        &env,
        &[
            "activity",
            "create",
            "--handle",
            "bayko",
            "--message",
            "pooled",
            "--ttl",
            "1-hour",
        ],
    )
    .success();
    run(&env, &["feed"]).success().stdout_has("pooled");
    // The server's default statement_timeout (0) applies, not the pool's.
    run(&env, &["status"])
        .success()
        .stdout_has("transaction: no named statements")
        .stdout_has(
            "statement_timeout 0 ms from the role or database, not the configured 30000 ms",
        );
}
