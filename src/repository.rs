//! [`Repository`]: the pool plus the operations of [`crate::repo`], each
//! checking out one connection. This is what an application holds.

use uuid::Uuid;

use crate::config::{Config, DatabaseUrl};
use crate::error::Result;
use crate::models::{ActivityObject, FeedItem};
use crate::pool::{PgPool, PgPooledConnection, build_pool, checkout};
use crate::repo::activities::ActivityDraft;
use crate::repo::feed::FeedPage;
use crate::repo::seed::SeedReport;
use crate::repo::users::{Confirmed, PostConfirmationEvent};
use crate::repo::{activities, feed, seed, users};

/// The application's handle on the database: an r2d2 pool and the
/// repository operations. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Repository {
    pool: PgPool,
    url: DatabaseUrl,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("url", &self.url)
            .field("pool", &self.pool.state())
            .finish()
    }
}

impl Repository {
    /// Builds the pool for `config` (see [`build_pool`]).
    pub fn connect(config: &Config) -> Result<Self> {
        Ok(Self {
            pool: build_pool(config)?,
            url: config.database_url.clone(),
        })
    }

    /// Wraps an existing pool; `url` is only used to name it in errors.
    pub fn from_pool(pool: PgPool, url: DatabaseUrl) -> Self {
        Self { pool, url }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks out one connection, or [`crate::Error::PoolTimeout`].
    pub fn conn(&self) -> Result<PgPooledConnection> {
        checkout(&self.pool, &self.url)
    }

    /// See [`feed::home_feed`].
    pub fn home_feed(&self, page: FeedPage) -> Result<Vec<FeedItem>> {
        feed::home_feed(&mut *self.conn()?, page)
    }

    /// See [`feed::home_feed_json`].
    pub fn home_feed_json(&self, page: FeedPage) -> Result<String> {
        feed::home_feed_json(&mut *self.conn()?, page)
    }

    /// Parses the input into an [`ActivityDraft`] (every failing rule is
    /// an [`Error::Validation`](crate::Error::Validation)), then
    /// [`activities::create_activity`]. Bad input costs no checkout.
    pub fn create_activity(
        &self,
        handle: &str,
        message: &str,
        ttl: &str,
    ) -> Result<ActivityObject> {
        let draft = ActivityDraft::parse(handle, message, ttl)?;
        activities::create_activity(&mut *self.conn()?, &draft)
    }

    /// See [`activities::create_reply`].
    pub fn create_reply(
        &self,
        handle: &str,
        reply_to: Uuid,
        message: &str,
    ) -> Result<ActivityObject> {
        activities::create_reply(&mut *self.conn()?, handle, reply_to, message)
    }

    /// See [`users::confirm_user`].
    pub fn confirm_user(&self, event: &PostConfirmationEvent) -> Result<Confirmed> {
        users::confirm_user(&mut *self.conn()?, event)
    }

    /// See [`seed::seed_reference`].
    pub fn seed_reference(&self) -> Result<SeedReport> {
        seed::seed_reference(&mut *self.conn()?)
    }

    /// See [`crate::migrations::run_migrations`].
    pub fn run_migrations(&self) -> Result<Vec<String>> {
        crate::migrations::run_migrations(&mut *self.conn()?)
    }
}
