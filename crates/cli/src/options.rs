//! The option group of every command that works on a database.

use std::fmt;

use clap::Args;

/// The options of every command that works on a database, flattened into
/// each of them. They are global within the command, so that they may
/// also follow a nested one (`migrate revert -y`). [`Cli`](crate::Cli) also
/// takes them before the command, under the same ids, and clap hands what
/// is given there to the command's own (a URL or replica list given on both
/// sides: the later one).
#[derive(Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct DatabaseArgs {
    /// The database to use; wins over DATABASE_URL, CONNECTION_URL and
    /// PROD_CONNECTION_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Work on the production database (PROD_CONNECTION_URL): the target is
    /// labelled, `create` and `migrate` mark it as production, and
    /// destructive commands need --allow-production.
    #[arg(long, global = true)]
    pub prod: bool,

    /// Answer yes to confirmation questions (needed when stdin is not a
    /// terminal).
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,

    /// Allow drop, schema-load, setup, migrate revert and a bulk seed into a
    /// non-empty database on a production database.
    #[arg(long, global = true)]
    pub allow_production: bool,

    /// A read replica of the database (repeatable); replaces
    /// DATABASE_REPLICA_URLS. `feed` and `status` use replicas.
    #[arg(long = "replica-url", global = true, value_name = "URL")]
    pub replica_urls: Vec<String>,
}

impl DatabaseArgs {
    /// The first of these options given, as it is spelled on the command
    /// line; `None` when none is.
    pub(crate) fn first_given(&self) -> Option<&'static str> {
        [
            (self.database_url.is_some(), "--database-url"),
            (self.prod, "--prod"),
            (self.yes, "--yes"),
            (self.allow_production, "--allow-production"),
            (!self.replica_urls.is_empty(), "--replica-url"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

impl fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field(
                "database_url",
                &self.database_url.as_deref().map(cruddur_db::config::redact),
            )
            .field("prod", &self.prod)
            .field("yes", &self.yes)
            .field("allow_production", &self.allow_production)
            .field(
                "replica_urls",
                &self
                    .replica_urls
                    .iter()
                    .map(|u| cruddur_db::config::redact(u))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_args_debug_hides_the_password() {
        let db = DatabaseArgs {
            database_url: Some("postgres://u:S3cretPw@h/db".into()),
            replica_urls: vec!["postgres://u:S3cretPw@r/db".into()],
            ..DatabaseArgs::default()
        };
        let shown = format!("{db:?}");
        assert!(!shown.contains("S3cretPw"), "{shown}");
    }
}
