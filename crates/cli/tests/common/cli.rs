//! Running the `cruddur-db` binary in tests: a clean environment, and the
//! checks every run must pass (no password in any output, no panic).

use std::time::Duration;

/// The password put in every URL the tests hand to the binary. The test
/// server's trust authentication ignores it; the point is that it never
/// shows up in any output.
pub const PASSWORD: &str = "S3cretPw";

/// The outcome of one run of the binary.
pub struct Run {
    /// The arguments, joined by spaces.
    pub args: String,
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "`{}` failed:\n{}", self.args, self.stderr);
        self
    }

    pub fn failure(&self) -> &Self {
        assert_eq!(
            self.code, 1,
            "`{}` should fail with 1:\nstdout: {}\nstderr: {}",
            self.args, self.stdout, self.stderr
        );
        assert!(
            self.stderr.starts_with("error: ") || self.stderr.contains("\nerror: "),
            "`{}`: {}",
            self.args,
            self.stderr
        );
        self
    }

    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "`{}`: stdout lacks {text:?}:\n{}\nstderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "`{}`: stderr lacks {text:?}:\n{}",
            self.args,
            self.stderr
        );
        self
    }
}

/// The binary with a clean environment: no database variables, no colours,
/// run from a directory without a `.env`.
pub fn cli() -> assert_cmd::Command {
    clean(assert_cmd::Command::new(env!("CARGO_BIN_EXE_cruddur-db")))
}

/// `cmd` with no database variables from the caller's environment, no
/// colours and no `.env` in its working directory.
pub fn clean(mut cmd: assert_cmd::Command) -> assert_cmd::Command {
    for var in [
        "DATABASE_URL",
        "CONNECTION_URL",
        "PROD_CONNECTION_URL",
        "CRUDDUR_POOLER",
        "DATABASE_DIRECT_URL",
        "PROD_DIRECT_URL",
        "RUST_LOG",
        "PGPASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .timeout(Duration::from_secs(120));
    cmd
}

/// Runs `cmd` with `args` and checks what every run must satisfy: no
/// password in any output, no panic.
pub fn run_cmd(mut cmd: assert_cmd::Command, args: &[&str]) -> Run {
    let output = cmd.args(args).output().expect("run cruddur-db");
    let run = Run {
        args: args.join(" "),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(PASSWORD),
            "`{}` printed the password on {name}:\n{text}",
            run.args
        );
        assert!(
            !text.contains("panicked"),
            "`{}` panicked:\n{text}",
            run.args
        );
    }
    run
}

/// Runs the binary on the database of `url`.
pub fn run(url: &str, args: &[&str]) -> Run {
    let mut full = vec!["--database-url", url];
    full.extend_from_slice(args);
    run_cmd(cli(), &full)
}
