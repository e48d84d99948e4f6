//! The environment variables the local cluster reads. Read them through
//! [`cruddur_db::Settings`]; the crate docs' "Environment" table documents
//! each.

use cruddur_db::Variable;

/// The project cluster's directory.
pub const CRUDDUR_LOCAL_DIR: Variable = Variable::new(
    "CRUDDUR_LOCAL_DIR",
    "the project cluster's directory (default .cruddur/pg in the project)",
);
/// Where the server programs are.
pub const CRUDDUR_PG_BINDIR: Variable = Variable::new(
    "CRUDDUR_PG_BINDIR",
    "the directory with initdb, pg_ctl and postgres (default: searched); as root, only one nobody but root can change",
);
/// The OS user the server runs as under root.
pub const CRUDDUR_PG_USER: Variable = Variable::new(
    "CRUDDUR_PG_USER",
    "the OS user the server runs as when the current user is root (default postgres)",
);
/// The program search path, where the server programs are looked for.
pub const PATH: Variable = Variable::new(
    "PATH",
    "where the server programs and `id` are looked for when CRUDDUR_PG_BINDIR is unset",
);

/// Every variable the local cluster reads.
pub const VARIABLES: &[Variable] = &[CRUDDUR_LOCAL_DIR, CRUDDUR_PG_BINDIR, CRUDDUR_PG_USER, PATH];

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
