//! A crud's page: the activity and its replies, oldest first.

use diesel::prelude::*;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::models::{ActivityThread, FeedItem, ReplyItem};
use crate::repo::feed::{FeedCursor, MAX_PAGE_SIZE};
use crate::schema::{activities, users};

/// Which page of a crud's replies to read: oldest first, `limit` replies
/// after the cursor of the last reply seen (`None` for the first page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyPage {
    /// Replies per page, 1 to [`MAX_PAGE_SIZE`].
    pub limit: i64,
    /// Continue after this reply (see [`FeedCursor::at`]); `None` for the
    /// first page.
    pub after: Option<FeedCursor>,
}

impl Default for ReplyPage {
    /// The first page of [`MAX_PAGE_SIZE`] replies (the original had no
    /// limit).
    fn default() -> Self {
        Self {
            limit: MAX_PAGE_SIZE,
            after: None,
        }
    }
}

/// One page of a crud's replies, oldest first: the keyset scan of
/// `activities_replies_idx` (`reply_to_activity_uuid, created_at, uuid`,
/// partial on `reply_to_activity_uuid IS NOT NULL`, which `=` implies).
#[diesel::dsl::auto_type]
fn replies_query(parent: Uuid, limit: i64) -> _ {
    let select: diesel::dsl::AsSelect<ReplyItem, diesel::pg::Pg> = ReplyItem::as_select();
    activities::table
        .inner_join(users::table)
        .filter(activities::reply_to_activity_uuid.eq(parent))
        .select(select)
        .order((activities::created_at.asc(), activities::uuid.asc()))
        .limit(limit)
}

/// The activity `uuid` by the user `handle`, with the home feed's ten keys,
/// and one page of its replies, oldest first (ties broken by uuid). Expired
/// activities are shown, as on the home feed.
///
/// [`Error::ActivityNotFound`] when no activity has this uuid or its author
/// has another handle; [`Error::UserNotFound`] when no user has the handle;
/// [`Error::InvalidPageSize`] for a page size outside 1 to
/// [`MAX_PAGE_SIZE`].
pub fn activity_thread(
    conn: &mut PgConnection,
    handle: &str,
    uuid: Uuid,
    page: ReplyPage,
) -> Result<ActivityThread> {
    if !(1..=MAX_PAGE_SIZE).contains(&page.limit) {
        return Err(Error::InvalidPageSize {
            limit: page.limit,
            max: MAX_PAGE_SIZE,
        });
    }
    if handle.contains('\0') {
        // PostgreSQL text cannot hold NUL: no user has such a handle.
        crate::repo::activities::find_user_by_handle(conn, handle)?;
    }
    let activity = activities::table
        .inner_join(users::table)
        .filter(activities::uuid.eq(uuid))
        .filter(users::handle.eq(handle))
        .select(FeedItem::as_select())
        .first(conn)
        .optional()?;
    let Some(activity) = activity else {
        // Only on the miss: which of the two is unknown.
        crate::repo::activities::find_user_by_handle(conn, handle)?;
        return Err(Error::ActivityNotFound { uuid });
    };
    let query = replies_query(uuid, page.limit);
    let replies = match page.after {
        None => query.load(conn)?,
        Some(c) => query
            .filter(
                activities::created_at.ge(c.created_at).and(
                    activities::created_at
                        .gt(c.created_at)
                        .or(activities::uuid.gt(c.uuid)),
                ),
            )
            .load(conn)?,
    };
    Ok(ActivityThread { activity, replies })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;
    use diesel::pg::Pg;

    #[test]
    fn a_cruds_replies_are_one_keyset_scan_in_the_indexs_order() {
        let sql = debug_query::<Pg, _>(&replies_query(Uuid::nil(), 100)).to_string();
        assert!(
            sql.contains(
                r#"WHERE ("activities"."reply_to_activity_uuid" = $1) ORDER BY "activities"."created_at" ASC, "activities"."uuid" ASC LIMIT $2"#
            ),
            "{sql}"
        );
        assert!(!sql.contains("OFFSET"), "{sql}");
    }
}
