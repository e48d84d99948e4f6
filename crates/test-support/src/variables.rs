//! The environment variables the test support reads (besides the
//! library's `CRUDDUR_DEFAULT_URL`, whose server it tries second).

use cruddur_db::Variable;

/// The server on which tests create their throwaway databases.
pub const TEST_DATABASE_URL: Variable = Variable::new(
    "TEST_DATABASE_URL",
    "the server the tests create their throwaway databases on (default: the default URL's server, else a private cluster)",
);

/// Set by CI: a test that needs root fails instead of skipping when it
/// cannot have it ([`Privileged::or_skip`](crate::Privileged::or_skip)).
pub const CI: Variable = Variable::new(
    "CI",
    "set (to anything) by CI: tests that need root fail, instead of skipping, when they cannot run",
);

/// Every variable the test support reads.
pub const VARIABLES: &[Variable] = &[TEST_DATABASE_URL, CI];

#[cfg(test)]
mod tests {
    use super::VARIABLES;

    /// The README's table (the crate docs) and `.env.sample` name every variable.
    #[test]
    fn every_variable_is_documented() {
        let docs = include_str!("../README.md");
        let sample = include_str!("../../../.env.sample");
        for var in VARIABLES {
            assert!(
                docs.contains(&format!("| `{}` |", var.name())),
                "{var}: crate docs"
            );
            assert!(
                sample.contains(&format!("\n#{}=", var.name())),
                "{var}: .env.sample"
            );
        }
    }
}
