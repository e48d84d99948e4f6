//! A user's page (the profile and the user's activities), the short card,
//! and updating a profile.

use diesel::prelude::*;

use crate::error::{Error, Result, ValidationError};
use crate::models::{ActivityObject, Profile, UserPage, UserShort};
use crate::repo::activities::{check_handle, find_user_by_handle};
use crate::repo::feed::FeedPage;
use crate::schema::{activities, users};

/// Items on a user's page when none is asked for: the original's 40.
pub const PROFILE_PAGE_SIZE: i64 = 40;
/// Longest display name, in Unicode characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Longest bio, in Unicode characters.
pub const MAX_BIO_CHARS: usize = 500;

/// The user with `handle` and one page of the user's activities (cruds and
/// replies, expired ones too, as the original showed them), newest first
/// (ties broken by uuid, descending), in keyset pages as on the home feed:
/// the next page is `FeedPage::after(limit, cursor)` with the cursor of the
/// last item ([`FeedCursor::at`](crate::FeedCursor::at)). The original's
/// page is `FeedPage::first(PROFILE_PAGE_SIZE)`.
///
/// An unknown handle is [`Error::UserNotFound`]; a page size outside 1 to
/// [`MAX_PAGE_SIZE`](crate::repo::feed::MAX_PAGE_SIZE) is
/// [`Error::InvalidPageSize`].
pub fn user_page(conn: &mut PgConnection, handle: &str, page: FeedPage) -> Result<UserPage> {
    let page = FeedPage::checked(page.limit, page.before)?;
    // Three statements: a post committed between them may be counted and
    // not listed, or listed and not counted, as on any live page.
    let user = find_user_by_handle(conn, handle)?;
    let cruds_count: i64 = activities::table
        .filter(activities::user_uuid.eq(user.uuid))
        .count()
        .get_result(conn)?;
    let query = user_page_query(user.uuid, page.limit);
    let items = match page.before {
        None => query.load(conn)?,
        Some(c) => query
            .filter(
                activities::created_at.le(c.created_at).and(
                    activities::created_at
                        .lt(c.created_at)
                        .or(activities::uuid.lt(c.uuid)),
                ),
            )
            .load(conn)?,
    };
    Ok(UserPage {
        profile: Profile {
            uuid: user.uuid,
            cognito_user_uuid: user.cognito_user_id,
            handle: user.handle,
            display_name: user.display_name,
            bio: user.bio,
            cruds_count,
        },
        activities: items,
    })
}

/// One page of a user's activities, newest first: the keyset scan of
/// `activities_user_page_idx` (`user_uuid, created_at DESC, uuid DESC`),
/// which stops after `limit` rows.
#[diesel::dsl::auto_type]
fn user_page_query(user: uuid::Uuid, limit: i64) -> _ {
    let select: diesel::dsl::AsSelect<ActivityObject, diesel::pg::Pg> = ActivityObject::as_select();
    activities::table
        .inner_join(users::table)
        .filter(activities::user_uuid.eq(user))
        .select(select)
        .order((activities::created_at.desc(), activities::uuid.desc()))
        .limit(limit)
}

/// The short card of the user with `handle`, or [`Error::UserNotFound`].
pub fn user_short(conn: &mut PgConnection, handle: &str) -> Result<UserShort> {
    if handle.contains('\0') {
        return Err(Error::UserNotFound {
            handle: handle.replace('\0', "\\0"),
        });
    }
    users::table
        .filter(users::handle.eq(handle))
        .select(UserShort::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::UserNotFound {
            handle: handle.to_owned(),
        })
}

/// A profile update whose input passed every rule: built once at the edge
/// and passed to [`update_profile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileDraft<'a> {
    handle: &'a str,
    display_name: &'a str,
    bio: &'a str,
}

impl<'a> ProfileDraft<'a> {
    /// Checks the handle of the user to update, the new display name and the
    /// new bio, and reports every failing rule as [`Error::Validation`]:
    /// `display_name_blank` (empty or only whitespace),
    /// `display_name_exceed_max_chars` (over [`MAX_DISPLAY_NAME_CHARS`]),
    /// `display_name_contains_nul`, `bio_exceed_max_chars` (over
    /// [`MAX_BIO_CHARS`]), `bio_contains_nul` and `user_handle_blank`. An
    /// empty bio clears it (the original wrote `''` for a missing bio). Both
    /// are stored verbatim. Touches no database.
    pub fn parse(handle: &'a str, display_name: &'a str, bio: &'a str) -> Result<Self> {
        let mut errors = Vec::new();
        if display_name.trim().is_empty() {
            errors.push(ValidationError::DisplayNameBlank);
        } else if display_name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            errors.push(ValidationError::DisplayNameExceedMaxChars);
        }
        if display_name.contains('\0') {
            errors.push(ValidationError::DisplayNameContainsNul);
        }
        if bio.chars().count() > MAX_BIO_CHARS {
            errors.push(ValidationError::BioExceedMaxChars);
        }
        if bio.contains('\0') {
            errors.push(ValidationError::BioContainsNul);
        }
        check_handle(handle, &mut errors);
        if errors.is_empty() {
            Ok(Self {
                handle,
                display_name,
                bio,
            })
        } else {
            Err(Error::Validation(errors))
        }
    }

    /// The handle of the user to update.
    pub fn handle(&self) -> &'a str {
        self.handle
    }

    /// The new display name.
    pub fn display_name(&self) -> &'a str {
        self.display_name
    }

    /// The new bio.
    pub fn bio(&self) -> &'a str {
        self.bio
    }
}

/// Sets the display name and bio of the user with the draft's handle, in
/// one statement, and returns the user's short card as it now is (the
/// original looked the card up by a handle it never returned, so it always
/// answered `null`). An unknown handle is [`Error::UserNotFound`]; nothing
/// is written then.
pub fn update_profile(conn: &mut PgConnection, draft: &ProfileDraft<'_>) -> Result<UserShort> {
    diesel::update(users::table.filter(users::handle.eq(draft.handle)))
        .set((
            users::display_name.eq(draft.display_name),
            users::bio.eq(draft.bio),
        ))
        .returning(UserShort::as_returning())
        .get_result(conn)
        .optional()?
        .ok_or_else(|| Error::UserNotFound {
            handle: draft.handle.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;
    use diesel::pg::Pg;

    #[test]
    fn a_users_page_is_one_keyset_scan_in_the_indexs_order() {
        let sql = debug_query::<Pg, _>(&user_page_query(uuid::Uuid::nil(), 40)).to_string();
        assert!(
            sql.contains(
                r#"WHERE ("activities"."user_uuid" = $1) ORDER BY "activities"."created_at" DESC, "activities"."uuid" DESC LIMIT $2"#
            ),
            "{sql}"
        );
        assert!(!sql.contains("OFFSET"), "{sql}");
    }
}
