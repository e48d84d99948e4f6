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
    /// The profile's text; empty when the user wrote none.
    pub bio: String,
}

/// A user to insert; `uuid`, `created_at` and `bio` (empty) take their
/// defaults.
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(with = "crate::timestamps::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the activity was created.
    #[diesel(select_expression = activities::created_at)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
}

/// An activity as the API shows a crud: its author's names, no counters.
/// Serializes with exactly these six keys, in this order.
///
/// What [`create_activity`](crate::create_activity) returns, and one item
/// of a user's page ([`UserPage::activities`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ActivityObject {
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
    /// When it was created.
    #[diesel(select_expression = activities::created_at)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
    /// When it expires (`None` for replies).
    #[diesel(select_expression = activities::expires_at)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(with = "crate::timestamps::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A newly created reply, as [`create_reply`](crate::create_reply) returns
/// it: the six keys of an [`ActivityObject`], then the activity it replies
/// to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyObject {
    /// The reply's uuid.
    pub uuid: Uuid,
    /// The author's display name.
    pub display_name: String,
    /// The author's handle.
    pub handle: String,
    /// The text.
    pub message: String,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
    /// Always `None`: replies do not expire.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    #[serde(with = "crate::timestamps::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The activity it replies to.
    pub reply_to_activity_uuid: Uuid,
}

/// The head of a user's page. Serializes with exactly these six keys, in
/// this order (the original's `users/show.sql`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The user's uuid.
    pub uuid: Uuid,
    /// The identity provider's subject, `users.cognito_user_id` (the
    /// original frontend builds the avatar's address from it).
    pub cognito_user_uuid: String,
    /// The unique `@handle`.
    pub handle: String,
    /// The name shown beside the user's activities.
    pub display_name: String,
    /// The profile's text; empty when the user wrote none.
    pub bio: String,
    /// How many activities (cruds and replies, expired ones too) the user
    /// has written.
    pub cruds_count: i64,
}

/// A user's page: the profile and one page of the user's activities,
/// newest first. Serializes as `{"profile": …, "activities": […]}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserPage {
    /// The profile.
    pub profile: Profile,
    /// The user's activities (cruds and replies), newest first.
    pub activities: Vec<ActivityObject>,
}

/// A reply on a crud's page. Serializes with exactly these nine keys, in
/// this order (the original's `activities/show.sql`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ReplyItem {
    /// The reply's uuid.
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
    /// Number of replies to this reply.
    #[diesel(select_expression = activities::replies_count)]
    pub replies_count: i32,
    /// Number of reposts.
    #[diesel(select_expression = activities::reposts_count)]
    pub reposts_count: i32,
    /// Number of likes.
    #[diesel(select_expression = activities::likes_count)]
    pub likes_count: i32,
    /// The activity it replies to (never `None` here; nullable as the
    /// column is).
    #[diesel(select_expression = activities::reply_to_activity_uuid)]
    pub reply_to_activity_uuid: Option<Uuid>,
    /// When it was created.
    #[diesel(select_expression = activities::created_at)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(with = "crate::timestamps")]
    pub created_at: DateTime<Utc>,
}

/// A crud's page: the activity, with the home feed's ten keys, and one page
/// of its replies, oldest first. Serializes as
/// `{"activity": …, "replies": […]}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityThread {
    /// The activity.
    pub activity: FeedItem,
    /// Its replies, oldest first.
    pub replies: Vec<ReplyItem>,
}

/// A user's short card: `{uuid, handle, display_name}` (the original's
/// `users/short.sql`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserShort {
    /// The user's uuid.
    pub uuid: Uuid,
    /// The unique `@handle`.
    pub handle: String,
    /// The name shown beside the user's activities.
    pub display_name: String,
}

/// Which side of a conversation a [`MessageUser`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum MessageUserKind {
    /// The user who sends (`"sender"`).
    #[serde(rename = "sender")]
    Sender,
    /// The user who receives (`"recv"`, as the original spelled it).
    #[serde(rename = "recv")]
    Receiver,
}

/// One of the two users of a new message (the original's
/// `users/create_message_users.sql`): `{uuid, display_name, handle, kind}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageUser {
    /// The user's uuid.
    pub uuid: Uuid,
    /// The name shown beside the user's messages.
    pub display_name: String,
    /// The unique `@handle`.
    pub handle: String,
    /// Sender or receiver.
    pub kind: MessageUserKind,
}
