//! The environment variables the CLI itself reads; the database's are the
//! library's ([`cruddur_db::variables`]), the local cluster's
//! `cruddur-db-local`'s and `rds`'s the AWS toolkit's. `--help` lists them.

use cruddur_db::Variable;

/// Turns colours off (the <https://no-color.org> convention).
pub const NO_COLOR: Variable = Variable::new(
    "NO_COLOR",
    "turns colours off (they are off when output is not a terminal)",
);

/// Every variable the CLI itself reads.
pub const VARIABLES: &[Variable] = &[NO_COLOR];

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::VARIABLES;

    /// `--help` and `.env.sample` name every variable of the CLI and of the
    /// library, whose variables choose the database a command works on.
    #[test]
    fn every_variable_is_in_the_help() {
        let help = crate::Cli::command()
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let sample = include_str!("../../../.env.sample");
        for var in VARIABLES.iter().chain(cruddur_db::variables::VARIABLES) {
            assert!(help.contains(var.name()), "{var}: --help");
            assert!(
                sample.contains(&format!("\n#{}=", var.name())),
                "{var}: .env.sample"
            );
        }
    }
}
