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
