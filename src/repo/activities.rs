//! Creating activities and replies, with the original's validation rules.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{self, Nullable, Text, Timestamptz};
use uuid::Uuid;

use crate::error::{Error, Result, ValidationError};
use crate::models::{Activity, ActivityObject, NewActivity, ReplyObject, User};
use crate::schema::activities;

/// Longest activity message, in Unicode characters.
pub const MAX_MESSAGE_CHARS: usize = 280;
/// Longest reply, in Unicode characters.
pub const MAX_REPLY_CHARS: usize = 1024;

/// How long an activity lives before it expires: one of the seven values
/// of the original API. With the feature `clap`, a command line lists them
/// in `--help` and refuses any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Ttl {
    /// `30-days`
    #[cfg_attr(feature = "clap", value(name = "30-days"))]
    Days30,
    /// `7-days`
    #[cfg_attr(feature = "clap", value(name = "7-days"))]
    Days7,
    /// `3-days`
    #[cfg_attr(feature = "clap", value(name = "3-days"))]
    Days3,
    /// `1-day`
    #[cfg_attr(feature = "clap", value(name = "1-day"))]
    Day1,
    /// `12-hours`
    #[cfg_attr(feature = "clap", value(name = "12-hours"))]
    Hours12,
    /// `3-hours`
    #[cfg_attr(feature = "clap", value(name = "3-hours"))]
    Hours3,
    /// `1-hour`
    #[cfg_attr(feature = "clap", value(name = "1-hour"))]
    Hour1,
}

impl Ttl {
    /// Every value, longest first.
    pub const ALL: [Ttl; 7] = [
        Ttl::Days30,
        Ttl::Days7,
        Ttl::Days3,
        Ttl::Day1,
        Ttl::Hours12,
        Ttl::Hours3,
        Ttl::Hour1,
    ];

    /// The name the API uses, e.g. `7-days`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ttl::Days30 => "30-days",
            Ttl::Days7 => "7-days",
            Ttl::Days3 => "3-days",
            Ttl::Day1 => "1-day",
            Ttl::Hours12 => "12-hours",
            Ttl::Hours3 => "3-hours",
            Ttl::Hour1 => "1-hour",
        }
    }

    /// The length of time it stands for.
    pub fn duration(self) -> TimeDelta {
        match self {
            Ttl::Days30 => TimeDelta::days(30),
            Ttl::Days7 => TimeDelta::days(7),
            Ttl::Days3 => TimeDelta::days(3),
            Ttl::Day1 => TimeDelta::days(1),
            Ttl::Hours12 => TimeDelta::hours(12),
            Ttl::Hours3 => TimeDelta::hours(3),
            Ttl::Hour1 => TimeDelta::hours(1),
        }
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ttl {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        Ttl::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(ValidationError::TtlBlank)
    }
}

/// Checks a message against the rules, appending every failure; `too_long`
/// is the code for more than `max_chars` characters.
fn check_message(
    message: &str,
    max_chars: usize,
    too_long: ValidationError,
    errors: &mut Vec<ValidationError>,
) {
    if message.trim().is_empty() {
        errors.push(ValidationError::MessageBlank);
    } else if message.chars().count() > max_chars {
        errors.push(too_long);
    }
    if message.contains('\0') {
        errors.push(ValidationError::MessageContainsNul);
    }
}

pub(crate) fn check_handle(handle: &str, errors: &mut Vec<ValidationError>) {
    if handle.trim().is_empty() {
        errors.push(ValidationError::UserHandleBlank);
    }
}

/// A new activity whose input passed every rule: built once at the edge
/// (an API handler, a command line) and passed to [`create_activity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityDraft<'a> {
    handle: &'a str,
    message: &'a str,
    ttl: Ttl,
}

impl<'a> ActivityDraft<'a> {
    /// Checks `handle`, `message` and `ttl` (the API's text, e.g. `7-days`)
    /// and reports every failing rule as [`Error::Validation`]. Touches no
    /// database.
    pub fn parse(handle: &'a str, message: &'a str, ttl: &str) -> Result<Self> {
        let ttl = ttl.parse::<Ttl>();
        Self::check(handle, message, ttl)
    }

    /// Like [`ActivityDraft::parse`], for a ttl that is already a [`Ttl`].
    pub fn new(handle: &'a str, message: &'a str, ttl: Ttl) -> Result<Self> {
        Self::check(handle, message, Ok(ttl))
    }

    fn check(handle: &'a str, message: &'a str, ttl: Result<Ttl, ValidationError>) -> Result<Self> {
        let mut errors = Vec::new();
        check_message(
            message,
            MAX_MESSAGE_CHARS,
            ValidationError::MessageExceedMaxChars,
            &mut errors,
        );
        check_handle(handle, &mut errors);
        match ttl {
            Ok(ttl) if errors.is_empty() => Ok(Self {
                handle,
                message,
                ttl,
            }),
            Ok(_) => Err(Error::Validation(errors)),
            Err(e) => {
                errors.push(e);
                Err(Error::Validation(errors))
            }
        }
    }

    /// The author's handle.
    pub fn handle(&self) -> &'a str {
        self.handle
    }

    /// The message.
    pub fn message(&self) -> &'a str {
        self.message
    }

    /// How long it lives.
    pub fn ttl(&self) -> Ttl {
        self.ttl
    }
}

/// [`Error::UserNotFound`] for a handle with a NUL in it: PostgreSQL text
/// cannot hold NUL, so no user can have such a handle (and the server
/// would refuse the bind).
fn refuse_nul_handle(handle: &str) -> Result<()> {
    if handle.contains('\0') {
        return Err(Error::UserNotFound {
            handle: handle.replace('\0', "\\0"),
        });
    }
    Ok(())
}

/// Finds a user by handle, or [`Error::UserNotFound`].
pub fn find_user_by_handle(conn: &mut PgConnection, handle: &str) -> Result<User> {
    use crate::schema::users;
    refuse_nul_handle(handle)?;
    users::table
        .filter(users::handle.eq(handle))
        .select(User::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::UserNotFound {
            handle: handle.to_owned(),
        })
}

/// The current time at PostgreSQL's precision (microseconds), so that the
/// values returned equal the values stored.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

fn object(activity: Activity, user: &User) -> ActivityObject {
    ActivityObject {
        uuid: activity.uuid,
        display_name: user.display_name.clone(),
        handle: user.handle.clone(),
        message: activity.message,
        created_at: activity.created_at,
        expires_at: activity.expires_at,
    }
}

/// Creates the activity of `draft` by the user with its handle, expiring
/// its ttl after its creation. An unknown handle is
/// [`Error::UserNotFound`]; nothing is written then.
///
/// One statement finds the author and inserts the activity, in a
/// transaction of its own: a connection lost before its `COMMIT` was sent
/// wrote nothing.
pub fn create_activity(
    conn: &mut PgConnection,
    draft: &ActivityDraft<'_>,
) -> Result<ActivityObject> {
    refuse_nul_handle(draft.handle)?;
    let created_at = now_micros();
    let post = PostByHandle {
        handle: draft.handle,
        message: draft.message,
        expires_at: created_at + draft.ttl.duration(),
        created_at,
    };
    conn.transaction(|conn| {
        post.get_result::<ActivityObject>(conn)
            .optional()?
            .ok_or_else(|| Error::UserNotFound {
                handle: draft.handle.to_owned(),
            })
    })
}

/// A post in one statement: the author found by handle, the activity
/// inserted for them, and the object the API shows, in one round trip
/// instead of a look-up and an insert. No row (and nothing inserted) when
/// no user has the handle. `users.handle` is unique, so at most one row.
///
/// Written by hand because Diesel's query builder has no `WITH`; a static
/// [`QueryId`] makes Diesel prepare it once per connection.
#[derive(Debug, Clone, Copy)]
struct PostByHandle<'a> {
    handle: &'a str,
    message: &'a str,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl QueryId for PostByHandle<'_> {
    type QueryId = PostByHandle<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for PostByHandle<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH author AS (SELECT uuid, display_name, handle FROM users WHERE handle = ",
        );
        out.push_bind_param::<Text, str>(self.handle)?;
        out.push_sql(
            "), created AS (INSERT INTO activities (user_uuid, message, expires_at, created_at) \
             SELECT author.uuid, ",
        );
        out.push_bind_param::<Text, str>(self.message)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.created_at)?;
        out.push_sql(
            " FROM author RETURNING uuid, message, created_at, expires_at) \
             SELECT created.uuid, author.display_name, author.handle, created.message, \
             created.created_at, created.expires_at FROM created CROSS JOIN author",
        );
        Ok(())
    }
}

impl Query for PostByHandle<'_> {
    type SqlType = (
        sql_types::Uuid,
        Text,
        Text,
        Text,
        Timestamptz,
        Nullable<Timestamptz>,
    );
}

impl RunQueryDsl<PgConnection> for PostByHandle<'_> {}

/// Inserts the activity of `draft` by `user` (found beforehand, in the
/// caller's transaction).
pub(crate) fn insert_activity(
    conn: &mut PgConnection,
    user: &User,
    draft: &ActivityDraft<'_>,
) -> Result<ActivityObject> {
    let created_at = now_micros();
    let activity = diesel::insert_into(activities::table)
        .values(NewActivity {
            user_uuid: user.uuid,
            message: draft.message,
            reply_to_activity_uuid: None,
            expires_at: Some(created_at + draft.ttl.duration()),
            created_at,
        })
        .returning(Activity::as_returning())
        .get_result(conn)?;
    Ok(object(activity, user))
}

/// The activity `uuid` as the API shows a crud, or
/// [`Error::ActivityNotFound`].
pub fn activity_object(conn: &mut PgConnection, uuid: Uuid) -> Result<ActivityObject> {
    use crate::schema::users;
    activities::table
        .inner_join(users::table)
        .filter(activities::uuid.eq(uuid))
        .select(ActivityObject::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::ActivityNotFound { uuid })
}

/// A reply whose input passed every rule: built once at the edge and
/// passed to [`create_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyDraft<'a> {
    handle: &'a str,
    reply_to: Uuid,
    message: &'a str,
}

impl<'a> ReplyDraft<'a> {
    /// Checks `handle`, `reply_to` (the API's text, e.g. a path segment) and
    /// `message`, and reports every failing rule as [`Error::Validation`]:
    /// `message_blank`, `message_exceed_max_chars_1024` (over
    /// [`MAX_REPLY_CHARS`] characters), `message_contains_nul`,
    /// `activity_uuid_blank`, `activity_uuid_invalid` (not a uuid) and
    /// `user_handle_blank`. Touches no database.
    pub fn parse(handle: &'a str, reply_to: &str, message: &'a str) -> Result<Self> {
        let reply_to = if reply_to.trim().is_empty() {
            Err(ValidationError::ActivityUuidBlank)
        } else {
            Uuid::try_parse(reply_to.trim()).map_err(|_| ValidationError::ActivityUuidInvalid)
        };
        Self::check(handle, reply_to, message)
    }

    /// Like [`ReplyDraft::parse`], for a `reply_to` that is already a
    /// [`Uuid`].
    pub fn new(handle: &'a str, reply_to: Uuid, message: &'a str) -> Result<Self> {
        Self::check(handle, Ok(reply_to), message)
    }

    fn check(
        handle: &'a str,
        reply_to: Result<Uuid, ValidationError>,
        message: &'a str,
    ) -> Result<Self> {
        let mut errors = Vec::new();
        check_message(
            message,
            MAX_REPLY_CHARS,
            ValidationError::MessageExceedMaxChars1024,
            &mut errors,
        );
        if let Err(e) = &reply_to {
            errors.push(e.clone());
        }
        check_handle(handle, &mut errors);
        match reply_to {
            Ok(reply_to) if errors.is_empty() => Ok(Self {
                handle,
                reply_to,
                message,
            }),
            _ => Err(Error::Validation(errors)),
        }
    }

    /// The author's handle.
    pub fn handle(&self) -> &'a str {
        self.handle
    }

    /// The activity replied to.
    pub fn reply_to(&self) -> Uuid {
        self.reply_to
    }

    /// The message.
    pub fn message(&self) -> &'a str {
        self.message
    }
}

/// Creates the reply of `draft` by the user with its handle, and adds one
/// to the parent's `replies_count`, in one transaction (the original never
/// counted replies).
///
/// Replies do not expire. An unknown handle is [`Error::UserNotFound`]; a
/// parent that does not exist or has expired is [`Error::ActivityNotFound`];
/// nothing is written then. Concurrent replies to one activity each count
/// once: the increment takes the parent's row lock, and the next increment
/// reads the committed count.
pub fn create_reply(conn: &mut PgConnection, draft: &ReplyDraft<'_>) -> Result<ReplyObject> {
    conn.transaction(|conn| {
        let user = find_user_by_handle(conn, draft.handle)?;
        let parents = diesel::update(
            activities::table.find(draft.reply_to).filter(
                activities::expires_at
                    .is_null()
                    .or(activities::expires_at.gt(diesel::dsl::now)),
            ),
        )
        .set(activities::replies_count.eq(activities::replies_count + 1))
        .execute(conn)?;
        if parents == 0 {
            return Err(Error::ActivityNotFound {
                uuid: draft.reply_to,
            });
        }
        let reply = diesel::insert_into(activities::table)
            .values(NewActivity {
                user_uuid: user.uuid,
                message: draft.message,
                reply_to_activity_uuid: Some(draft.reply_to),
                expires_at: None,
                created_at: now_micros(),
            })
            .returning(Activity::as_returning())
            .get_result(conn)?;
        Ok(ReplyObject {
            uuid: reply.uuid,
            display_name: user.display_name,
            handle: user.handle,
            message: reply.message,
            created_at: reply.created_at,
            expires_at: reply.expires_at,
            reply_to_activity_uuid: draft.reply_to,
        })
    })
}

/// Finds an activity by uuid.
pub fn find_activity(conn: &mut PgConnection, uuid: Uuid) -> Result<Activity> {
    activities::table
        .find(uuid)
        .select(Activity::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::ActivityNotFound { uuid })
}
