//! The environment variables the library reads, each with what it does.
//! Read them through [`Settings`](crate::Settings); the other crates of the
//! workspace declare their own in a `variables` module of their own.
//!
//! | variable | meaning |
//! |---|---|
//! | `DATABASE_URL` | the database to use (the diesel convention); wins over `CONNECTION_URL` |
//! | `CONNECTION_URL` | the same, under the original project's name; a difference from `DATABASE_URL` is reported |
//! | `PROD_CONNECTION_URL` | the production database, used when production is asked for |
//! | `CRUDDUR_POOL_SIZE` | maximum connections in the pool (default [`DEFAULT_POOL_SIZE`], at most [`MAX_POOL_SIZE`]) |
//! | `CRUDDUR_STATEMENT_TIMEOUT_MS` | per-statement timeout in milliseconds (default [`DEFAULT_STATEMENT_TIMEOUT_MS`]; 0 disables it) |
//! | `DATABASE_REPLICA_URLS` | read replicas of the database, comma-separated connection strings (none by default: every read goes to the primary); see [`crate::replica`] |
//! | `CRUDDUR_POOLER` | what stands between the application and the server: unset or `session` (the server itself, or a session pooler), or `transaction` (a transaction pooler such as PgBouncer's transaction mode or RDS Proxy); see [`crate::pooler`] |
//! | `DATABASE_DIRECT_URL` | the development database reached without the transaction pooler, for what needs a session: migrations and their lock, `prepare`, the CLI's lifecycle commands |
//! | `PROD_DIRECT_URL` | the same for the production database |
//! | `CRUDDUR_DEFAULT_URL` | the URL tried when none is configured (default [`DEFAULT_DATABASE_URL`]); see [`crate::resolve`](mod@crate::resolve) |
//!
//! The `.env` file and its checks are described in [`crate::settings`].

#[cfg(doc)]
use crate::config::{
    DEFAULT_DATABASE_URL, DEFAULT_POOL_SIZE, DEFAULT_STATEMENT_TIMEOUT_MS, MAX_POOL_SIZE,
};
use crate::settings::Variable;

/// The development database (the diesel convention); wins over
/// [`CONNECTION_URL`].
pub const DATABASE_URL: Variable = Variable::new(
    "DATABASE_URL",
    "the database to use (the diesel convention); wins over CONNECTION_URL",
);
/// The development database under the original project's name.
pub const CONNECTION_URL: Variable = Variable::new(
    "CONNECTION_URL",
    "the same, under the original project's name; a difference from DATABASE_URL is reported",
);
/// The production database.
pub const PROD_CONNECTION_URL: Variable = Variable::new(
    "PROD_CONNECTION_URL",
    "the production database, used when production is asked for",
);
/// Maximum pooled connections.
pub const CRUDDUR_POOL_SIZE: Variable = Variable::new(
    "CRUDDUR_POOL_SIZE",
    "maximum connections in the pool (default 10, at most 1000)",
);
/// Statement timeout of every connection, in milliseconds.
pub const CRUDDUR_STATEMENT_TIMEOUT_MS: Variable = Variable::new(
    "CRUDDUR_STATEMENT_TIMEOUT_MS",
    "per-statement timeout in milliseconds (default 30000; 0 disables it)",
);
/// Read replicas, comma-separated.
pub const DATABASE_REPLICA_URLS: Variable = Variable::new(
    "DATABASE_REPLICA_URLS",
    "read replicas, comma-separated connection strings (default none: every read goes to the primary)",
);
/// What stands between the application and the server.
pub const CRUDDUR_POOLER: Variable = Variable::new(
    "CRUDDUR_POOLER",
    "unset or `session`: the server or a session pooler; `transaction`: a transaction pooler (PgBouncer, RDS Proxy)",
);
/// The development database without the transaction pooler.
pub const DATABASE_DIRECT_URL: Variable = Variable::new(
    "DATABASE_DIRECT_URL",
    "the development database reached without the transaction pooler, for migrations, prepare and the lifecycle commands",
);
/// The production database without the transaction pooler.
pub const PROD_DIRECT_URL: Variable = Variable::new(
    "PROD_DIRECT_URL",
    "the production database reached without the transaction pooler",
);
/// The URL tried when none is configured.
pub const CRUDDUR_DEFAULT_URL: Variable = Variable::new(
    "CRUDDUR_DEFAULT_URL",
    "the URL tried when none is configured (default postgres://localhost/cruddur)",
);

/// Every variable the library reads.
pub const VARIABLES: &[Variable] = &[
    DATABASE_URL,
    CONNECTION_URL,
    PROD_CONNECTION_URL,
    CRUDDUR_POOL_SIZE,
    CRUDDUR_STATEMENT_TIMEOUT_MS,
    DATABASE_REPLICA_URLS,
    CRUDDUR_POOLER,
    DATABASE_DIRECT_URL,
    PROD_DIRECT_URL,
    CRUDDUR_DEFAULT_URL,
];

#[cfg(test)]
mod tests {
    use super::VARIABLES;

    /// The module docs, `.env.sample` and the README's environment table
    /// name every variable, so that the list and the docs cannot drift.
    #[test]
    fn every_variable_is_documented() {
        let docs = include_str!("variables.rs");
        let sample = include_str!("../.env.sample");
        let readme = include_str!("../README.md");
        for var in VARIABLES {
            let shown = format!("`{}`", var.name());
            assert!(
                docs.contains(&format!("//! | {shown} |")),
                "{var}: module docs"
            );
            assert!(
                sample.contains(&format!("\n#{}=", var.name())),
                "{var}: .env.sample"
            );
            assert!(readme.contains(&shown), "{var}: README.md");
        }
    }
}
