//! [`Repository`]: the pool plus the operations of [`crate::repo`], each
//! checking out one connection. This is what an application holds.
//!
//! One method per operation: reads take the [`Consistency`] they need
//! ([`Consistency::Primary`] reads where the writes go), writes return the
//! [`WriteToken`] a later read can ask for (see [`crate::replica`]). What
//! has no method here goes through [`Repository::read`] and
//! [`Repository::write`], which choose the server the same way.

use uuid::Uuid;

use crate::config::{Config, DatabaseUrl};
use crate::error::Result;
use crate::models::{
    ActivityObject, ActivityThread, FeedItem, MessageUser, ReplyObject, User, UserPage, UserShort,
};
use diesel::PgConnection;

use crate::pool::{PgPool, checkout};
use crate::replica::{Consistency, ReplicaOptions, Router, RoutingCounters, WriteToken};
use crate::repo::activities::{ActivityDraft, ReplyDraft};
use crate::repo::feed::FeedPage;
use crate::repo::idempotency::{Created, IdempotencyKey};
use crate::repo::profiles::ProfileDraft;
use crate::repo::seed::SeedReport;
use crate::repo::thread::ReplyPage;
use crate::repo::users::{Confirmed, PostConfirmationEvent};
use crate::repo::{activities, feed, idempotency, profiles, seed, thread, users};

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

    /// Runs `f` on one connection of a server chosen for `consistency` (see
    /// [`Router::read`]): the passthrough for reads that have no method
    /// here. `f` may run twice, once on a replica and once on the primary,
    /// when the replica fails part-way.
    pub fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnMut(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        self.router.read(consistency, f)
    }

    /// Runs `f` on one connection to the primary and returns its value with
    /// the [`WriteToken`] a later read can ask for (see [`Router::write`]):
    /// the passthrough for writes that have no method here.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut PgConnection) -> Result<T>,
    ) -> Result<(T, WriteToken)> {
        self.router.write(f)
    }

    /// Checks that the primary answers: a connection from the pool runs
    /// `SELECT 1` (pooled connections are not tested on checkout, so a
    /// checkout alone could hand out one whose server is gone).
    pub fn ping(&self) -> Result<()> {
        let mut conn = checkout(self.router.primary(), self.router.primary_url())?;
        diesel::connection::SimpleConnection::batch_execute(&mut *conn, "SELECT 1")?;
        Ok(())
    }

    /// [`feed::home_feed`] on a server chosen for `consistency`.
    pub fn home_feed(&self, consistency: Consistency, page: FeedPage) -> Result<Vec<FeedItem>> {
        self.read(consistency, |conn| feed::home_feed(conn, page))
    }

    /// [`feed::home_feed_json`] on a server chosen for `consistency`.
    pub fn home_feed_json(&self, consistency: Consistency, page: FeedPage) -> Result<String> {
        self.read(consistency, |conn| feed::home_feed_json(conn, page))
    }

    /// [`feed::home_feed_json_bytes`] on a server chosen for `consistency`.
    pub fn home_feed_json_bytes(
        &self,
        consistency: Consistency,
        page: FeedPage,
    ) -> Result<Vec<u8>> {
        self.read(consistency, |conn| feed::home_feed_json_bytes(conn, page))
    }

    /// The user whose `cognito_user_id` is `sub` (see
    /// [`users::find_by_cognito_user_id`]), on a server chosen for
    /// `consistency`.
    pub fn user_by_cognito_user_id(
        &self,
        consistency: Consistency,
        sub: &str,
    ) -> Result<Option<User>> {
        self.read(consistency, |conn| {
            users::find_by_cognito_user_id(conn, sub)
        })
    }

    /// [`activities::create_activity`] for a draft parsed beforehand
    /// ([`ActivityDraft::parse`]: bad input costs no checkout), with the
    /// token of the write.
    pub fn create_activity(
        &self,
        draft: &ActivityDraft<'_>,
    ) -> Result<(ActivityObject, WriteToken)> {
        self.write(|conn| activities::create_activity(conn, draft))
    }

    /// [`idempotency::create_activity_once`]: the post of `draft` once per
    /// `key` of its author, with the token of the write.
    pub fn create_activity_once(
        &self,
        draft: &ActivityDraft<'_>,
        key: IdempotencyKey<'_>,
    ) -> Result<(Created, WriteToken)> {
        self.write(|conn| idempotency::create_activity_once(conn, draft, key))
    }

    /// [`activities::create_reply`] for a draft parsed beforehand
    /// ([`ReplyDraft::parse`]), with the token of the write.
    pub fn create_reply(&self, draft: &ReplyDraft<'_>) -> Result<(ReplyObject, WriteToken)> {
        self.write(|conn| activities::create_reply(conn, draft))
    }

    /// [`profiles::user_page`] (a user's page: the profile and a page of the
    /// user's activities) on a server chosen for `consistency`.
    pub fn user_page(
        &self,
        consistency: Consistency,
        handle: &str,
        page: FeedPage,
    ) -> Result<UserPage> {
        self.read(consistency, |conn| profiles::user_page(conn, handle, page))
    }

    /// [`thread::activity_thread`] (a crud's page: the activity and a page
    /// of its replies) on a server chosen for `consistency`.
    pub fn activity_thread(
        &self,
        consistency: Consistency,
        handle: &str,
        uuid: Uuid,
        page: ReplyPage,
    ) -> Result<ActivityThread> {
        self.read(consistency, |conn| {
            thread::activity_thread(conn, handle, uuid, page)
        })
    }

    /// [`profiles::user_short`] (a user's short card) on a server chosen for
    /// `consistency`.
    pub fn user_short(&self, consistency: Consistency, handle: &str) -> Result<UserShort> {
        self.read(consistency, |conn| profiles::user_short(conn, handle))
    }

    /// [`profiles::update_profile`] for a draft parsed beforehand
    /// ([`ProfileDraft::parse`]), with the token of the write.
    pub fn update_profile(&self, draft: &ProfileDraft<'_>) -> Result<(UserShort, WriteToken)> {
        self.write(|conn| profiles::update_profile(conn, draft))
    }

    /// [`users::uuid_from_cognito_user_id`] on a server chosen for
    /// `consistency`.
    pub fn user_uuid_by_cognito_user_id(
        &self,
        consistency: Consistency,
        sub: &str,
    ) -> Result<Option<Uuid>> {
        self.read(consistency, |conn| {
            users::uuid_from_cognito_user_id(conn, sub)
        })
    }

    /// [`users::message_users`] (the sender and receiver of a new message)
    /// on a server chosen for `consistency`.
    pub fn message_users(
        &self,
        consistency: Consistency,
        sender_sub: &str,
        receiver_handle: &str,
    ) -> Result<Vec<MessageUser>> {
        self.read(consistency, |conn| {
            users::message_users(conn, sender_sub, receiver_handle)
        })
    }

    /// [`users::confirm_user`], with the token of the write.
    pub fn confirm_user(&self, event: &PostConfirmationEvent) -> Result<(Confirmed, WriteToken)> {
        self.write(|conn| users::confirm_user(conn, event))
    }

    /// [`seed::seed_reference`], with the token of the write.
    pub fn seed_reference(&self) -> Result<(SeedReport, WriteToken)> {
        self.write(seed::seed_reference)
    }

    /// [`crate::migrations::run_migrations`] on the primary: the names of
    /// the migrations applied. Behind a transaction pooler they run through
    /// the direct URL (their lock needs a session), or refuse without one
    /// ([`crate::Error::NeedsDirectUrl`]).
    pub fn run_migrations(&self) -> Result<Vec<String>> {
        let config = self.router.config();
        if config.pooler.is_transaction() {
            let mut conn = crate::pooler::session_connection(config, "running migrations")?;
            return crate::migrations::run_migrations(&mut conn);
        }
        let mut conn = checkout(self.router.primary(), self.router.primary_url())?;
        crate::migrations::run_migrations(&mut conn)
    }
}
