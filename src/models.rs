//! Rows, insert structs and the shapes the API returns.
//!
//! Timestamps serialize as RFC 3339 in UTC with microseconds
//! ([`TIMESTAMP_FORMAT`], written by `src/timestamps.rs`); a [`FeedItem`] is
//! decoded from its row by hand (`src/feed_row.rs`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::schema::{activities, users};

pub use crate::timestamps::TIMESTAMP_FORMAT;

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = users, primary_key(uuid), check_for_backend(diesel::pg::Pg))]
pub struct User {
    /// Primary key.
    pub uuid: Uuid,
    /// The name shown beside the user's activities.
    pub display_name: String,
    /// The unique `@handle`.
    pub handle: String,
    /// Email address.
    pub email: String,
    /// The identity provider's subject (`sub`).
    pub cognito_user_id: String,
    /// When the user was created.
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
}

/// A user to insert; `uuid` and `created_at` take their defaults.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct NewUser<'a> {
    /// The name shown beside the user's activities.
    pub display_name: &'a str,
    /// The unique `@handle`.
    pub handle: &'a str,
    /// Email address.
    pub email: &'a str,
    /// The identity provider's subject (`sub`).
    pub cognito_user_id: &'a str,
}

/// A row of `activities`.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Associations, Serialize,
)]
#[diesel(table_name = activities, primary_key(uuid), belongs_to(User, foreign_key = user_uuid))]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Activity {
    /// Primary key.
    pub uuid: Uuid,
    /// The author.
    pub user_uuid: Uuid,
    /// The text, stored verbatim.
    pub message: String,
    /// Number of replies.
    pub replies_count: i32,
    /// Number of reposts.
    pub reposts_count: i32,
    /// Number of likes.
    pub likes_count: i32,
    /// The activity this one replies to.
    pub reply_to_activity_uuid: Option<Uuid>,
    /// When the activity expires.
    #[serde(with = "crate::timestamps::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the activity was created.
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
}

/// An activity to insert; counters take their defaults.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = activities, check_for_backend(diesel::pg::Pg))]
pub struct NewActivity<'a> {
    /// The author.
    pub user_uuid: Uuid,
    /// The text.
    pub message: &'a str,
    /// The activity this one replies to.
    pub reply_to_activity_uuid: Option<Uuid>,
    /// When the activity expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the activity was created.
    pub created_at: DateTime<Utc>,
}

/// One item of the home feed: an activity with its author's names.
///
/// Serializes with exactly these ten keys, in this order.
///
/// Loaded with [`Queryable`] for the SQL types of its columns in this order
/// (written by hand rather than derived, in `src/feed_row.rs`, the hot path
/// of the typed feed).
#[derive(Debug, Clone, PartialEq, Eq, Selectable, Serialize)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct FeedItem {
    /// The activity's uuid.
    #[diesel(select_expression = activities::uuid)]
    pub uuid: Uuid,
    /// The author's display name.
    #[diesel(select_expression = users::display_name)]
    pub display_name: String,
    /// The author's handle.
    #[diesel(select_expression = users::handle)]
    pub handle: String,
    /// The text.
    #[diesel(select_expression = activities::message)]
    pub message: String,
    /// Number of replies.
    #[diesel(select_expression = activities::replies_count)]
    pub replies_count: i32,
    /// Number of reposts.
    #[diesel(select_expression = activities::reposts_count)]
    pub reposts_count: i32,
    /// Number of likes.
    #[diesel(select_expression = activities::likes_count)]
    pub likes_count: i32,
    /// The activity this one replies to.
    #[diesel(select_expression = activities::reply_to_activity_uuid)]
    pub reply_to_activity_uuid: Option<Uuid>,
    /// When the activity expires.
    #[diesel(select_expression = activities::expires_at)]
    #[serde(with = "crate::timestamps::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the activity was created.
    #[diesel(select_expression = activities::created_at)]
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
}

/// A newly created activity, as `create_activity` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityObject {
    /// The activity's uuid.
    pub uuid: Uuid,
    /// The author's display name.
    pub display_name: String,
    /// The author's handle.
    pub handle: String,
    /// The text.
    pub message: String,
    /// When it was created.
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
    /// When it expires (`None` for replies).
    #[serde(with = "crate::timestamps::option")]
    pub expires_at: Option<DateTime<Utc>>,
}
