//! Users, created from the identity provider's post-confirmation event.

use diesel::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::models::{MessageUser, MessageUserKind, NewUser, User};
use crate::schema::users;

/// The user attributes of a post-confirmation event (the Cognito trigger's
/// `request.userAttributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostConfirmationEvent {
    /// `name`: the display name.
    pub name: String,
    /// `email`.
    pub email: String,
    /// `preferred_username`: the handle.
    pub preferred_username: String,
    /// `sub`: the identity provider's subject.
    pub sub: String,
}

#[derive(Deserialize)]
struct RawEvent {
    request: RawRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    user_attributes: serde_json::Map<String, serde_json::Value>,
}

impl PostConfirmationEvent {
    /// Parses the event JSON; every missing, non-string, blank or NUL-bearing
    /// attribute is named in the error.
    pub fn parse(json: &str) -> Result<Self> {
        let raw: RawEvent = serde_json::from_str(json).map_err(|e| Error::InvalidEvent {
            reason: "expected {\"request\": {\"userAttributes\": {\"name\", \"email\", \"preferred_username\", \"sub\"}}}".into(),
            source: Some(e),
        })?;
        let attrs = raw.request.user_attributes;
        let mut problems = Vec::new();
        let mut field = |key: &str| -> String {
            match attrs.get(key) {
                Some(serde_json::Value::String(s)) if s.contains('\0') => {
                    problems.push(format!("`{key}` contains a NUL character"));
                    String::new()
                }
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(serde_json::Value::String(_)) => {
                    problems.push(format!("`{key}` is blank"));
                    String::new()
                }
                Some(_) => {
                    problems.push(format!("`{key}` is not a string"));
                    String::new()
                }
                None => {
                    problems.push(format!("`{key}` is missing"));
                    String::new()
                }
            }
        };
        let event = Self {
            name: field("name"),
            email: field("email"),
            preferred_username: field("preferred_username"),
            sub: field("sub"),
        };
        if problems.is_empty() {
            Ok(event)
        } else {
            Err(Error::InvalidEvent {
                reason: format!("request.userAttributes: {}", problems.join(", ")),
                source: None,
            })
        }
    }
}

/// The first key of the two-key advisory locks that serialise
/// confirmations of one `sub` (the second is the `sub`'s `hashtext`); the
/// bytes "cnfm" read as an integer, apart from the crate's one-key locks.
pub const CONFIRM_LOCK_CLASS: i32 = i32::from_be_bytes(*b"cnfm");

/// What [`confirm_user`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Confirmed {
    /// The user, new or existing.
    pub user: User,
    /// Whether this call created it.
    pub created: bool,
}

/// Creates the user an event describes, once: when a user with the same
/// `sub` exists, it is returned unchanged. A handle taken by a different
/// subject is [`Error::HandleTaken`].
///
/// Confirmations of one `sub` serialise on a transaction-level advisory
/// lock keyed by the `sub` (`pg_advisory_xact_lock` on its 64-bit hash), so
/// any number of them at once create exactly one user, whatever handles
/// they carry. `cognito_user_id` stays non-unique in the schema: the seed
/// users share `MOCK`.
pub fn confirm_user(conn: &mut PgConnection, event: &PostConfirmationEvent) -> Result<Confirmed> {
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<diesel::sql_types::Integer, _>(CONFIRM_LOCK_CLASS)
            .bind::<diesel::sql_types::Text, _>(&event.sub)
            .execute(conn)?;
        let existing = users::table
            .filter(users::cognito_user_id.eq(&event.sub))
            .order(users::created_at)
            .select(User::as_select())
            .first(conn)
            .optional()?;
        if let Some(user) = existing {
            return Ok(Confirmed {
                user,
                created: false,
            });
        }
        let inserted = diesel::insert_into(users::table)
            .values(NewUser {
                display_name: &event.name,
                handle: &event.preferred_username,
                email: &event.email,
                cognito_user_id: &event.sub,
            })
            .on_conflict(users::handle)
            .do_nothing()
            .returning(User::as_returning())
            .get_result(conn)
            .optional()?;
        match inserted {
            Some(user) => Ok(Confirmed {
                user,
                created: true,
            }),
            None => {
                // A concurrent confirmation of the same event won the race.
                let user = users::table
                    .filter(users::handle.eq(&event.preferred_username))
                    .select(User::as_select())
                    .first(conn)?;
                if user.cognito_user_id == event.sub {
                    Ok(Confirmed {
                        user,
                        created: false,
                    })
                } else {
                    Err(Error::HandleTaken {
                        handle: event.preferred_username.clone(),
                    })
                }
            }
        }
    })
}

/// The user whose `cognito_user_id` is `sub` (the identity provider's
/// subject, e.g. a verified token's `sub` claim), if there is one. The
/// column is not unique (the reference seed's users share `MOCK`): of
/// several, the first by handle.
pub fn find_by_cognito_user_id(conn: &mut PgConnection, sub: &str) -> Result<Option<User>> {
    Ok(users::table
        .filter(users::cognito_user_id.eq(sub))
        .order(users::handle)
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// Lists every user, by handle.
pub fn list_users(conn: &mut PgConnection) -> Result<Vec<User>> {
    Ok(users::table
        .order(users::handle)
        .select(User::as_select())
        .load(conn)?)
}

/// The uuid of the user whose `cognito_user_id` is `sub` (the original's
/// `users/uuid_from_cognito_user_id.sql`, which messages used to name their
/// sender). Of several, the first by handle, as
/// [`find_by_cognito_user_id`] picks; the original's `LIMIT 1` had no
/// order.
pub fn uuid_from_cognito_user_id(conn: &mut PgConnection, sub: &str) -> Result<Option<uuid::Uuid>> {
    if sub.contains('\0') {
        return Ok(None);
    }
    Ok(users::table
        .filter(users::cognito_user_id.eq(sub))
        .order(users::handle)
        .select(users::uuid)
        .first(conn)
        .optional()?)
}

/// The users of a new message (the original's
/// `users/create_message_users.sql`): every user whose `cognito_user_id` is
/// `sender_sub` (kind [`MessageUserKind::Sender`]) and the user whose handle
/// is `receiver_handle` ([`MessageUserKind::Receiver`], unless it is the
/// sender too), by handle. Empty when neither matches; the caller decides
/// what a missing side means.
pub fn message_users(
    conn: &mut PgConnection,
    sender_sub: &str,
    receiver_handle: &str,
) -> Result<Vec<MessageUser>> {
    // PostgreSQL text cannot hold NUL: such a value matches no user (and
    // would be refused as a parameter).
    let mut query = users::table.into_boxed();
    let mut matchable = false;
    if !sender_sub.contains('\0') {
        query = query.or_filter(users::cognito_user_id.eq(sender_sub));
        matchable = true;
    }
    if !receiver_handle.contains('\0') {
        query = query.or_filter(users::handle.eq(receiver_handle));
        matchable = true;
    }
    if !matchable {
        return Ok(Vec::new());
    }
    let rows: Vec<(uuid::Uuid, String, String, String)> = query
        .order(users::handle)
        .select((
            users::uuid,
            users::display_name,
            users::handle,
            users::cognito_user_id,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(uuid, display_name, handle, cognito_user_id)| MessageUser {
                uuid,
                display_name,
                handle,
                kind: if cognito_user_id == sender_sub {
                    MessageUserKind::Sender
                } else {
                    MessageUserKind::Receiver
                },
            },
        )
        .collect())
}
