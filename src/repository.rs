//! [`Repository`]: the pool plus the operations of [`crate::repo`], each
//! checking out one connection. This is what an application holds.
//!
//! With read replicas configured, the methods without a suffix keep going
//! to the primary, as they always did; the `_at` reads choose by
//! [`Consistency`] and the `_with_token` writes return the [`WriteToken`]
//! a later read can ask for (see [`crate::replica`]).

use uuid::Uuid;

use crate::config::{Config, DatabaseUrl};
use crate::error::Result;
use crate::models::{ActivityObject, FeedItem, User};
use crate::pool::{PgPool, PgPooledConnection, checkout};
use crate::replica::{Consistency, ReplicaOptions, Router, RoutingCounters, WriteToken};
use crate::repo::activities::ActivityDraft;
use crate::repo::feed::FeedPage;
use crate::repo::seed::SeedReport;
use crate::repo::users::{Confirmed, PostConfirmationEvent};
use crate::repo::{activities, feed, seed, users};

/// The application's handle on the database: an r2d2 pool (and one per
/// read replica, in a [`Router`]) and the repository operations. Cheap to
/// clone (the pools are shared).
#[derive(Clone, Debug)]
pub struct Repository {
    router: Router,
}

impl Repository {
    /// Builds the pool for `config` (see [`crate::build_pool`]), and a
    /// [`Router`] over `config.replica_urls` with the default
    /// [`ReplicaOptions`].
    pub fn connect(config: &Config) -> Result<Self> {
        Ok(Self {
            router: Router::connect(config)?,
        })
    }

    /// Like [`Repository::connect`], with these replica thresholds and
    /// timings.
    pub fn connect_with(config: &Config, options: ReplicaOptions) -> Result<Self> {
        Ok(Self {
            router: Router::connect_with(config, options)?,
        })
    }

    /// Wraps an existing pool, without replicas; `url` is only used to
    /// name it in errors.
    pub fn from_pool(pool: PgPool, url: DatabaseUrl) -> Self {
        Self {
            router: Router::primary_only(pool, url),
        }
    }

    /// Wraps a [`Router`].
    pub fn from_router(router: Router) -> Self {
        Self { router }
    }

    /// The router: the pools, the replicas' health and the counters.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The routing counters (see [`Router::counters`]).
    pub fn counters(&self) -> RoutingCounters {
        self.router.counters()
    }

    /// The underlying pool (the primary's).
    pub fn pool(&self) -> &PgPool {
        self.router.primary()
    }

    /// Checks out one connection to the primary, or
    /// [`crate::Error::PoolTimeout`].
    pub fn conn(&self) -> Result<PgPooledConnection> {
        checkout(self.router.primary(), self.router.primary_url())
    }

    /// [`feed::home_feed`] on a server chosen for `consistency` (see
    /// [`Router::read`]).
    pub fn home_feed_at(&self, consistency: Consistency, page: FeedPage) -> Result<Vec<FeedItem>> {
        self.router
            .read(consistency, |conn| feed::home_feed(conn, page))
    }

    /// [`feed::home_feed_json`] on a server chosen for `consistency` (see
    /// [`Router::read`]).
    pub fn home_feed_json_at(&self, consistency: Consistency, page: FeedPage) -> Result<String> {
        self.router
            .read(consistency, |conn| feed::home_feed_json(conn, page))
    }

    /// [`Repository::create_activity`], with the token of the write.
    pub fn create_activity_with_token(
        &self,
        handle: &str,
        message: &str,
        ttl: &str,
    ) -> Result<(ActivityObject, WriteToken)> {
        let draft = ActivityDraft::parse(handle, message, ttl)?;
        self.router
            .write(|conn| activities::create_activity(conn, &draft))
    }

    /// [`Repository::create_reply`], with the token of the write.
    pub fn create_reply_with_token(
        &self,
        handle: &str,
        reply_to: Uuid,
        message: &str,
    ) -> Result<(ActivityObject, WriteToken)> {
        self.router
            .write(|conn| activities::create_reply(conn, handle, reply_to, message))
    }

    /// [`Repository::confirm_user`], with the token of the write.
    pub fn confirm_user_with_token(
        &self,
        event: &PostConfirmationEvent,
    ) -> Result<(Confirmed, WriteToken)> {
        self.router.write(|conn| users::confirm_user(conn, event))
    }

    /// [`Repository::seed_reference`], with the token of the write.
    pub fn seed_reference_with_token(&self) -> Result<(SeedReport, WriteToken)> {
        self.router.write(seed::seed_reference)
    }

    /// Checks that the primary answers: a connection from the pool runs
    /// `SELECT 1` (pooled connections are not tested on checkout, so a
    /// checkout alone could hand out one whose server is gone).
    pub fn ping(&self) -> Result<()> {
        diesel::connection::SimpleConnection::batch_execute(&mut *self.conn()?, "SELECT 1")?;
        Ok(())
    }

    /// The user whose `cognito_user_id` is `sub`, read on the primary (see
    /// [`users::find_by_cognito_user_id`]).
    pub fn user_by_cognito_user_id(&self, sub: &str) -> Result<Option<User>> {
        users::find_by_cognito_user_id(&mut *self.conn()?, sub)
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
