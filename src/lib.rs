#![doc = include_str!("../README.md")]
// Library code never panics on what a user can influence; tests may.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod environment;
pub mod error;
pub mod inspect;
pub mod libpq;
pub mod local;
pub mod migrations;
pub mod models;
pub mod pool;
pub mod repo;
pub mod repository;
#[rustfmt::skip]
#[allow(missing_docs)]
pub mod schema;

pub use admin::{PrepareReport, create_database, database_exists, drop_database, prepare};
pub use config::{Config, DatabaseUrl, Environment};
pub use environment::{EnvironmentMark, mark_environment, read_mark};
pub use error::{Error, Result, ValidationError};
pub use migrations::{MIGRATIONS, pending_migrations, run_migrations};
pub use models::{Activity, ActivityObject, FeedItem, NewActivity, NewUser, User};
pub use pool::{PgPool, build_pool, establish};
pub use repo::activities::{Ttl, create_activity, create_reply};
pub use repo::feed::{FeedCursor, FeedPage, home_feed, home_feed_json};
pub use repo::seed::{SeedReport, SyntheticSeed, seed_reference, seed_synthetic};
pub use repo::users::{Confirmed, PostConfirmationEvent, confirm_user};
pub use repository::Repository;
