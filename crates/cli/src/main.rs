//! `cruddur-db`: the database lifecycle of Cruddur. See `cruddur-db --help`.
//!
//! Exit status: 0 on success, 1 when the command fails, 2 for a usage error.

use std::process::ExitCode;

use cruddur_db_cli::{self as cli, output};

fn main() -> ExitCode {
    let cli = cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}
