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
    let query = activities::table
        .inner_join(users::table)
        .filter(activities::reply_to_activity_uuid.eq(uuid))
        .select(ReplyItem::as_select())
        .order((activities::created_at.asc(), activities::uuid.asc()))
        .limit(page.limit);
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
