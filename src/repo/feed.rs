//! The home feed: every activity, newest first, in keyset pages.
//!
//! Two paths return the same page: [`home_feed`] decodes rows into
//! [`FeedItem`]s; [`home_feed_json`] has PostgreSQL build the JSON array
//! (as the original Python did) and returns it as a string. Serializing the
//! typed page with `serde_json::to_string` gives the same bytes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::query_dsl::LoadQuery;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::models::{FeedItem, PG_TIMESTAMP_FORMAT, TIMESTAMP_FORMAT};
use crate::schema::{activities, users};

/// Items per page when none is asked for.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// The largest page that can be asked for.
pub const MAX_PAGE_SIZE: i64 = 100;

/// Where a page ends: the `(created_at, uuid)` of its last item. The next
/// page holds the items strictly older than it in feed order.
///
/// Its text form (`Display`/`FromStr`) is `<created_at>_<uuid>`, e.g.
/// `2026-11-24T21:05:12.123456Z_6f1c…`, which the CLI takes as `--before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCursor {
    /// `created_at` of the last item seen.
    pub created_at: DateTime<Utc>,
    /// `uuid` of the last item seen.
    pub uuid: Uuid,
}

impl FeedCursor {
    /// The cursor that continues after `item`.
    pub fn after(item: &FeedItem) -> Self {
        Self {
            created_at: item.created_at,
            uuid: item.uuid,
        }
    }
}

impl fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}",
            self.created_at.format(TIMESTAMP_FORMAT),
            self.uuid
        )
    }
}

impl FromStr for FeedCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidCursor {
            input: s.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        let (ts, id) = s
            .split_once('_')
            .ok_or_else(|| invalid("expected <timestamp>_<uuid>"))?;
        let naive = NaiveDateTime::parse_from_str(ts, TIMESTAMP_FORMAT)
            .map_err(|e| invalid(&format!("bad timestamp: {e}")))?;
        let uuid = Uuid::try_parse(id).map_err(|e| invalid(&format!("bad uuid: {e}")))?;
        Ok(Self {
            created_at: naive.and_utc(),
            uuid,
        })
    }
}

/// Which page of the feed to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedPage {
    /// Items per page, 1 to [`MAX_PAGE_SIZE`].
    pub limit: i64,
    /// Continue after this cursor; `None` for the first page.
    pub before: Option<FeedCursor>,
}

impl Default for FeedPage {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE_SIZE,
            before: None,
        }
    }
}

impl FeedPage {
    /// The first page, with `limit` items.
    pub fn first(limit: i64) -> Self {
        Self {
            limit,
            before: None,
        }
    }

    /// The page after `cursor`, with `limit` items.
    pub fn after(limit: i64, cursor: FeedCursor) -> Self {
        Self {
            limit,
            before: Some(cursor),
        }
    }

    fn checked_limit(&self) -> Result<i64> {
        if (1..=MAX_PAGE_SIZE).contains(&self.limit) {
            Ok(self.limit)
        } else {
            Err(Error::InvalidPageSize {
                limit: self.limit,
                max: MAX_PAGE_SIZE,
            })
        }
    }
}

/// The typed query of the first page: every activity joined with its
/// author, newest first, `limit` rows. [`home_feed`] runs exactly this
/// query; it is public so that its SQL can be printed
/// (`diesel::debug_query::<Pg, _>(&first_page_query(20))`) and compared,
/// e.g. run verbatim by `pgbench` in the benchmark.
pub fn first_page_query(
    limit: i64,
) -> impl RunQueryDsl<PgConnection>
+ for<'a> LoadQuery<'a, PgConnection, FeedItem>
+ QueryFragment<Pg>
+ QueryId
+ Send
+ 'static {
    activities::table
        .inner_join(users::table)
        .select(FeedItem::as_select())
        .order((activities::created_at.desc(), activities::uuid.desc()))
        .limit(limit)
}

/// The typed query of the page after `cursor`, `limit` rows: the same as
/// [`first_page_query`] plus the keyset condition. [`home_feed`] runs
/// exactly this query for a page with a cursor.
pub fn page_after_query(
    limit: i64,
    cursor: FeedCursor,
) -> impl RunQueryDsl<PgConnection>
+ for<'a> LoadQuery<'a, PgConnection, FeedItem>
+ QueryFragment<Pg>
+ QueryId
+ Send
+ 'static {
    activities::table
        .inner_join(users::table)
        .select(FeedItem::as_select())
        .order((activities::created_at.desc(), activities::uuid.desc()))
        .limit(limit)
        // `created_at <= c` is the index condition; the rest only filters
        // the rows that share the cursor's timestamp.
        .filter(
            activities::created_at.le(cursor.created_at).and(
                activities::created_at
                    .lt(cursor.created_at)
                    .or(activities::uuid.lt(cursor.uuid)),
            ),
        )
}

/// One page of the home feed as typed rows, newest first (ties broken by
/// uuid, descending).
pub fn home_feed(conn: &mut PgConnection, page: FeedPage) -> Result<Vec<FeedItem>> {
    let limit = page.checked_limit()?;
    let items = match page.before {
        None => first_page_query(limit).load(conn)?,
        Some(c) => page_after_query(limit, c).load(conn)?,
    };
    Ok(items)
}

/// The JSON text of one page as PostgreSQL builds it. Kept in one place so
/// that the benchmark can run the very same statement through pgbench.
pub fn home_feed_json_sql(with_cursor: bool) -> String {
    let cursor = if with_cursor {
        "WHERE a.created_at <= $2 AND (a.created_at < $2 OR a.uuid < $3)"
    } else {
        ""
    };
    format!(
        "SELECT COALESCE(array_to_json(array_agg(row_to_json(j) \
         ORDER BY p.created_at DESC, p.uuid DESC)), '[]')::text AS feed \
         FROM (SELECT a.uuid, u.display_name, u.handle, a.message, a.replies_count, \
         a.reposts_count, a.likes_count, a.reply_to_activity_uuid, a.expires_at, a.created_at \
         FROM activities a JOIN users u ON u.uuid = a.user_uuid {cursor} \
         ORDER BY a.created_at DESC, a.uuid DESC LIMIT $1) p \
         CROSS JOIN LATERAL (SELECT p.uuid, p.display_name, p.handle, p.message, \
         p.replies_count, p.reposts_count, p.likes_count, p.reply_to_activity_uuid, \
         to_char(p.expires_at AT TIME ZONE 'UTC', '{PG_TIMESTAMP_FORMAT}') AS expires_at, \
         to_char(p.created_at AT TIME ZONE 'UTC', '{PG_TIMESTAMP_FORMAT}') AS created_at) j"
    )
}

#[derive(QueryableByName)]
struct FeedJson {
    #[diesel(sql_type = Text)]
    feed: String,
}

/// One page of the home feed as a JSON array built by the server; an empty
/// feed is `[]`. Byte-identical to `serde_json::to_string(&home_feed(..))`.
pub fn home_feed_json(conn: &mut PgConnection, page: FeedPage) -> Result<String> {
    let limit = page.checked_limit()?;
    let row: FeedJson = match page.before {
        None => diesel::sql_query(home_feed_json_sql(false))
            .bind::<BigInt, _>(limit)
            .get_result(conn)?,
        Some(c) => diesel::sql_query(home_feed_json_sql(true))
            .bind::<BigInt, _>(limit)
            .bind::<Timestamptz, _>(c.created_at)
            .bind::<diesel::sql_types::Uuid, _>(c.uuid)
            .get_result(conn)?,
    };
    Ok(row.feed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;

    #[test]
    fn typed_feed_sql_is_one_indexed_keyset_scan() {
        let c = FeedCursor {
            created_at: DateTime::UNIX_EPOCH,
            uuid: Uuid::nil(),
        };
        let query = page_after_query(20, c);
        let sql = debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.contains(
                r#"ORDER BY "activities"."created_at" DESC, "activities"."uuid" DESC LIMIT $"#
            ),
            "{sql}"
        );
        assert!(
            sql.contains(r#"WHERE (("activities"."created_at" <= $1)"#),
            "{sql}"
        );
        assert!(!sql.contains("OFFSET"), "{sql}");
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = FeedCursor {
            created_at: DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
            uuid: Uuid::from_u128(42),
        };
        assert_eq!(c.to_string().parse::<FeedCursor>().unwrap(), c);
        for bad in [
            "",
            "_",
            "x_y",
            "2026-11-24T21:05:12.123456Z_not-a-uuid",
            "🦀",
        ] {
            assert!(bad.parse::<FeedCursor>().is_err(), "{bad:?}");
        }
    }
}
