//! Fixtures of the CLI's tests: those of `cruddur-db-test-support`, and
//! running the `cruddur-db` binary ([`cli`]).
#![allow(dead_code, reason = "each test binary uses part of this module")]

pub mod cli;

pub use cruddur_db_test_support::*;

/// Starts `count` runs of the `cruddur-db` binary with `args` at once and
/// waits for all of them; fails naming `what` and the stderr of a run that
/// did not succeed.
pub fn cli_all_succeed_at_once(count: usize, args: &[&str], what: &str) {
    let children: Vec<_> = (0..count)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_cruddur-db"))
                .args(args)
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start cruddur-db")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait for cruddur-db");
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs the `cruddur-db` binary with `args`, with no database variables
/// but `PROD_CONNECTION_URL` when `prod_url` is given, stdin closed.
pub fn cli_with_prod(args: &[&str], prod_url: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cruddur-db"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("CONNECTION_URL")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    match prod_url {
        Some(url) => cmd.env("PROD_CONNECTION_URL", url),
        None => cmd.env_remove("PROD_CONNECTION_URL"),
    };
    cmd.output().expect("run cruddur-db")
}

/// A migrated database of the test's own with the reference seed.
pub fn seeded() -> TestDb {
    let db = TestDb::migrated();
    cruddur_db::seed_reference(&mut db.conn()).expect("seed the reference data");
    db
}
