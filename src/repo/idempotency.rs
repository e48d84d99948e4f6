//! Idempotency keys for posts: a client that sends a post again with the
//! key of one whose answer never came (the connection died after `COMMIT`
//! was sent: [`Error::OutcomeUnknown`]) gets the first post back, never a
//! second one. The original had no such key.
//!
//! A key is the user's own, 1 to [`MAX_KEY_LEN`] visible ASCII characters
//! (as Stripe's and the IETF draft's `Idempotency-Key` header), and lives
//! [`KEY_LIFETIME_HOURS`] hours; it is stored with the post's message and
//! ttl, so that the same key with another post is refused
//! ([`Error::IdempotencyKeyReused`]) rather than answered with the wrong
//! post.

use diesel::dsl::IntervalDsl;
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;

use crate::error::{Error, Result};
use crate::models::ActivityObject;
use crate::repo::activities::{
    ActivityDraft, activity_object, find_user_by_handle, insert_activity,
};
use crate::schema::idempotency_keys;

/// The longest key, in characters.
pub const MAX_KEY_LEN: usize = 255;
/// How long a key is kept: a retry within it gets the first post back; the
/// same key later makes a new post.
pub const KEY_LIFETIME_HOURS: i32 = 24;

/// A client's idempotency key, checked at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyKey<'a>(&'a str);

impl<'a> IdempotencyKey<'a> {
    /// `text` as a key: 1 to [`MAX_KEY_LEN`] visible ASCII characters
    /// (`!` to `~`), else [`Error::InvalidIdempotencyKey`].
    pub fn parse(text: &'a str) -> Result<Self> {
        let reason = if text.is_empty() {
            Some("it is empty")
        } else if text.len() > MAX_KEY_LEN {
            Some("it is over 255 characters")
        } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
            Some("it may hold only visible ASCII characters (! to ~)")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidIdempotencyKey {
                reason: reason.to_owned(),
            }),
            None => Ok(Self(text)),
        }
    }

    /// The key's text.
    pub fn as_str(self) -> &'a str {
        self.0
    }
}

/// A post made once per key: the crud, and whether it was made by an
/// earlier request with the same key (`replayed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The crud, as the API shows it.
    pub activity: ActivityObject,
    /// True when an earlier request with this key made it.
    pub replayed: bool,
}

/// What a key is stored with: the post's ttl and message (a ttl holds no
/// newline, so the first one separates them).
fn request_of(draft: &ActivityDraft<'_>) -> String {
    format!("{}\n{}", draft.ttl().as_str(), draft.message())
}

/// Creates the activity of `draft` once per `key` of its author, in one
/// transaction: the first request with the key makes the post; a later one
/// (within [`KEY_LIFETIME_HOURS`]) gets that post back with `replayed`,
/// and one with another message or ttl is
/// [`Error::IdempotencyKeyReused`]. Requests with one key at the same time
/// wait for the first one's transaction (the key's row lock), then get its
/// post: one post, however many retries race. An unknown handle is
/// [`Error::UserNotFound`]; nothing is written then.
pub fn create_activity_once(
    conn: &mut PgConnection,
    draft: &ActivityDraft<'_>,
    key: IdempotencyKey<'_>,
) -> Result<Created> {
    conn.transaction(|conn| {
        let user = find_user_by_handle(conn, draft.handle())?;
        let request = request_of(draft);
        // The author's expired keys go first, so that this one, if it
        // expired, is claimed anew.
        diesel::delete(
            idempotency_keys::table
                .filter(idempotency_keys::user_uuid.eq(user.uuid))
                .filter(idempotency_keys::created_at.lt(
                    diesel::dsl::now.into_sql::<Timestamptz>() - KEY_LIFETIME_HOURS.hours(),
                )),
        )
        .execute(conn)?;
        let claimed = diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::user_uuid.eq(user.uuid),
                idempotency_keys::key.eq(key.as_str()),
                idempotency_keys::request.eq(&request),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        if claimed == 1 {
            let activity = insert_activity(conn, &user, draft)?;
            diesel::update(idempotency_keys::table.find((user.uuid, key.as_str())))
                .set(idempotency_keys::activity_uuid.eq(activity.uuid))
                .execute(conn)?;
            return Ok(Created {
                activity,
                replayed: false,
            });
        }
        let (stored, activity_uuid): (String, Option<uuid::Uuid>) = idempotency_keys::table
            .find((user.uuid, key.as_str()))
            .select((idempotency_keys::request, idempotency_keys::activity_uuid))
            .first(conn)?;
        match activity_uuid {
            Some(uuid) if stored == request => Ok(Created {
                activity: activity_object(conn, uuid)?,
                replayed: true,
            }),
            _ => Err(Error::IdempotencyKeyReused {
                key: key.as_str().to_owned(),
            }),
        }
    })
}
