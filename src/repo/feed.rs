//! The home feed: every activity, newest first, in keyset pages.
//!
//! Two paths return the same page: [`home_feed`] decodes rows into
//! [`FeedItem`]s; [`home_feed_json`] has PostgreSQL build the JSON array
//! (as the original Python did) and returns it as a string
//! ([`home_feed_json_bytes`]: as bytes). Serializing the typed page with
//! `serde_json::to_string` gives the same bytes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::LoadQuery;
use diesel::sql_types::Text;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::models::FeedItem;
use crate::schema::{activities, users};
use crate::timestamps::{PG_TIMESTAMP_FORMAT, TIMESTAMP_FORMAT};

#[cfg(feature = "async")]
mod prebuilt;

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
        Self::at(item.created_at, item.uuid)
    }

    /// The cursor of the item created at `created_at` with `uuid`: for the
    /// other keyset-paged lists (a user's page, a crud's replies).
    pub fn at(created_at: DateTime<Utc>, uuid: Uuid) -> Self {
        Self { created_at, uuid }
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
        if !timestamptz_range().contains(&naive) {
            return Err(invalid(
                "the timestamp is outside PostgreSQL's range (4714-11-24 BC to 294276 AD)",
            ));
        }
        let uuid = Uuid::try_parse(id).map_err(|e| invalid(&format!("bad uuid: {e}")))?;
        let cursor = Self {
            created_at: naive.and_utc(),
            uuid,
        };
        // One spelling per cursor, the one `Display` writes (microseconds,
        // a lower-case hyphenated uuid, no leap second), so that a cursor's
        // text is a pattern a client or an API document can state exactly.
        if cursor.to_string() != s || naive.and_utc().timestamp_subsec_nanos() >= 1_000_000_000 {
            return Err(invalid(
                "not written as cursors are: <YYYY-MM-DDTHH:MM:SS.ffffffZ>_<lower-case uuid>",
            ));
        }
        Ok(cursor)
    }
}

/// The instants both a PostgreSQL `timestamptz` and chrono can hold: from
/// 4714-11-24 BC (chrono's year -4713) to chrono's last instant (in the year
/// 262143; PostgreSQL's range ends later, in 294276).
fn timestamptz_range() -> std::ops::RangeInclusive<NaiveDateTime> {
    let first = chrono::NaiveDate::from_ymd_opt(-4713, 11, 24)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .unwrap_or(NaiveDateTime::MIN);
    first..=NaiveDateTime::MAX
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

    /// The page of `limit` items after `before` (the first page when
    /// `None`), or [`Error::InvalidPageSize`] when `limit` is not 1 to
    /// [`MAX_PAGE_SIZE`]: for callers that check a page where it is asked
    /// for rather than when it is read.
    pub fn checked(limit: i64, before: Option<FeedCursor>) -> Result<Self> {
        let page = Self { limit, before };
        page.checked_limit()?;
        Ok(page)
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

/// What both page queries share: activities with their authors, in feed
/// order, `limit` rows.
#[diesel::dsl::auto_type]
fn feed_base(limit: i64) -> _ {
    let select: diesel::dsl::AsSelect<FeedItem, Pg> = FeedItem::as_select();
    activities::table
        .inner_join(users::table)
        .select(select)
        .order((activities::created_at.desc(), activities::uuid.desc()))
        .limit(limit)
}

/// The typed query of the first page: every activity joined with its
/// author, newest first, `limit` rows. [`home_feed`] runs exactly this
/// query, and [`home_feed_json`] wraps it.
pub(crate) fn first_page_query(
    limit: i64,
) -> impl RunQueryDsl<PgConnection>
+ for<'a> LoadQuery<'a, PgConnection, FeedItem>
+ QueryFragment<Pg>
+ QueryId
+ Send
+ 'static {
    feed_base(limit)
}

/// The typed query of the page after `cursor`, `limit` rows: the same as
/// [`first_page_query`] plus the keyset condition. [`home_feed`] runs
/// exactly this query for a page with a cursor.
pub(crate) fn page_after_query(
    limit: i64,
    cursor: FeedCursor,
) -> impl RunQueryDsl<PgConnection>
+ for<'a> LoadQuery<'a, PgConnection, FeedItem>
+ QueryFragment<Pg>
+ QueryId
+ Send
+ 'static {
    feed_base(limit)
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
    match page.before {
        None => collect_page(first_page_query(limit).load_iter(conn)?, limit),
        Some(c) => collect_page(page_after_query(limit, c).load_iter(conn)?, limit),
    }
}

/// The rows of a page in a vector allocated once for `limit` items:
/// `load` collects through an iterator of `Result`s whose size hint is
/// zero, so the vector grew four times per page of 20, each time moving
/// the items already read.
fn collect_page(
    rows: impl Iterator<Item = QueryResult<FeedItem>>,
    limit: i64,
) -> Result<Vec<FeedItem>> {
    let mut items = Vec::with_capacity(usize::try_from(limit).unwrap_or_default());
    for row in rows {
        items.push(row?);
    }
    Ok(items)
}

// The JSON page statement, in pieces around its bind parameters. The
// subquery is the typed page; PostgreSQL turns its rows into the JSON array.
/// Before the typed page's query: the aggregate over its rows.
const JSON_HEAD: &str = "SELECT COALESCE(array_to_json(array_agg(row_to_json(j) \
     ORDER BY p.created_at DESC, p.uuid DESC)), '[]')::text AS feed FROM (";
/// After it: each row with its timestamps formatted as the API shows them.
const JSON_TAIL: [&str; 3] = [
    ") p CROSS JOIN LATERAL (SELECT p.uuid, p.display_name, p.handle, p.message, \
     p.replies_count, p.reposts_count, p.likes_count, p.reply_to_activity_uuid, \
     to_char(p.expires_at AT TIME ZONE 'UTC', '",
    "') AS expires_at, to_char(p.created_at AT TIME ZONE 'UTC', '",
    "') AS created_at) j",
];

/// The JSON page: the typed page's query `Q` ([`first_page_query`] or
/// [`page_after_query`]: one column list, one order, one keyset predicate)
/// as a subquery whose rows the server turns into one JSON array.
///
/// A Diesel query rather than a `sql_query`: Diesel never caches a
/// `sql_query` (the server would parse and plan the statement on every
/// call), while a query with a static [`QueryId`] is prepared once per
/// connection and then only executed, like the typed page.
#[derive(Debug, Clone, Copy, QueryId)]
struct JsonPage<Q> {
    page: Q,
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for JsonPage<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(JSON_HEAD);
        self.page.walk_ast(out.reborrow())?;
        out.push_sql(JSON_TAIL[0]);
        out.push_sql(PG_TIMESTAMP_FORMAT);
        out.push_sql(JSON_TAIL[1]);
        out.push_sql(PG_TIMESTAMP_FORMAT);
        out.push_sql(JSON_TAIL[2]);
        Ok(())
    }
}

impl<Q> Query for JsonPage<Q> {
    type SqlType = Text;
}

impl<Q> RunQueryDsl<PgConnection> for JsonPage<Q> {}

/// One page of the home feed as a JSON array built by the server; an empty
/// feed is `[]`. Byte-identical to `serde_json::to_string(&home_feed(..))`.
pub fn home_feed_json(conn: &mut PgConnection, page: FeedPage) -> Result<String> {
    String::from_utf8(home_feed_json_bytes(conn, page)?)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)).into())
}

/// [`home_feed_json`]'s page as the bytes the server sent, for a caller that
/// passes them on as they are (an HTTP body): a `String` would check them
/// for UTF-8 first, a twentieth of a page's CPU in the service. The
/// server sends text in the connection's `client_encoding`, which Diesel
/// sets to `UTF8` on every connection it opens.
pub fn home_feed_json_bytes(conn: &mut PgConnection, page: FeedPage) -> Result<Vec<u8>> {
    let limit = page.checked_limit()?;
    let feed = match page.before {
        None => JsonPage {
            page: first_page_query(limit),
        }
        .get_result::<TextBytes>(conn)?,
        Some(cursor) => JsonPage {
            page: page_after_query(limit, cursor),
        }
        .get_result::<TextBytes>(conn)?,
    };
    Ok(feed.0)
}

/// [`home_feed_json_bytes`] on an async connection (feature `async`): the
/// same statements, their text built once rather than on every call (as
/// diesel-async would, a third of a page's CPU).
#[cfg(feature = "async")]
pub async fn home_feed_json_bytes_async(
    conn: &mut diesel_async::AsyncPgConnection,
    page: FeedPage,
) -> Result<Vec<u8>> {
    use diesel_async::RunQueryDsl as Async;
    let limit = page.checked_limit()?;
    let feed: TextBytes = match page.before {
        None => Async::get_result(prebuilt::FirstJsonPage { limit }, conn).await?,
        Some(cursor) => Async::get_result(prebuilt::JsonPageAfter { limit, cursor }, conn).await?,
    };
    Ok(feed.0)
}

/// A `text` value's bytes, as the server sent them.
struct TextBytes(Vec<u8>);

impl Queryable<Text, Pg> for TextBytes {
    type Row = Self;

    fn build(row: Self) -> diesel::deserialize::Result<Self> {
        Ok(row)
    }
}

impl diesel::deserialize::FromSql<Text, Pg> for TextBytes {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        Ok(Self(value.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;
    use diesel::query_builder::QueryBuilder;

    /// The statement [`home_feed_json`] sends, with its placeholders: `$1` is
    /// the page size; with a cursor, `$1`, `$2` are its `created_at`, `$3` its
    /// uuid and `$4` the page size.
    fn home_feed_json_sql(with_cursor: bool) -> String {
        let mut builder = diesel::pg::PgQueryBuilder::default();
        let built = if with_cursor {
            let cursor = FeedCursor {
                created_at: DateTime::UNIX_EPOCH,
                uuid: Uuid::nil(),
            };
            JsonPage {
                page: page_after_query(DEFAULT_PAGE_SIZE, cursor),
            }
            .to_sql(&mut builder, &Pg)
        } else {
            JsonPage {
                page: first_page_query(DEFAULT_PAGE_SIZE),
            }
            .to_sql(&mut builder, &Pg)
        };
        // Building cannot fail: only identifiers can, and the statement pushes
        // none. An empty string would fail loudly wherever it is run.
        match built {
            Ok(()) => builder.finish(),
            Err(_) => String::new(),
        }
    }

    #[test]
    fn checked_pages_hold_1_to_max_page_size_items() {
        for limit in [1, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE] {
            assert_eq!(
                FeedPage::checked(limit, None).unwrap(),
                FeedPage::first(limit)
            );
        }
        for limit in [i64::MIN, -1, 0, MAX_PAGE_SIZE + 1, i64::MAX] {
            assert!(
                matches!(
                    FeedPage::checked(limit, None),
                    Err(Error::InvalidPageSize { limit: l, max: MAX_PAGE_SIZE }) if l == limit
                ),
                "{limit}"
            );
        }
    }

    #[test]
    fn cursors_outside_postgres_timestamp_range_are_invalid_cursors() {
        let id = Uuid::nil();
        for ts in [
            "+300000-01-01T00:00:00.000000Z",
            "-5000-01-01T00:00:00.000000Z",
        ] {
            let err = format!("{ts}_{id}").parse::<FeedCursor>().unwrap_err();
            assert!(matches!(err, Error::InvalidCursor { .. }), "{ts}: {err:?}");
        }
        for ts in [
            "-4713-11-24T00:00:00.000000Z",
            "1970-01-01T00:00:00.000000Z",
        ] {
            assert!(format!("{ts}_{id}").parse::<FeedCursor>().is_ok(), "{ts}");
        }
    }

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
    fn json_statements_have_static_ids_and_numbered_placeholders() {
        fn has_static_id<Q: QueryId>(_: &Q) -> bool {
            Q::HAS_STATIC_QUERY_ID
        }
        let c = FeedCursor {
            created_at: DateTime::UNIX_EPOCH,
            uuid: Uuid::nil(),
        };
        assert!(has_static_id(&JsonPage {
            page: first_page_query(20)
        }));
        assert!(has_static_id(&JsonPage {
            page: page_after_query(20, c)
        }));
        // The typed queries, verbatim, inside.
        let first = home_feed_json_sql(false);
        let typed_first = debug_query::<Pg, _>(&first_page_query(20)).to_string();
        let typed_first = typed_first.split(" -- binds").next().unwrap();
        assert!(
            first.contains(&format!("FROM ({typed_first}) p")),
            "{first}"
        );
        assert!(!first.contains("$2"), "{first}");
        let after = home_feed_json_sql(true);
        let typed_after = debug_query::<Pg, _>(&page_after_query(20, c)).to_string();
        let typed_after = typed_after.split(" -- binds").next().unwrap();
        assert!(
            after.contains(&format!("FROM ({typed_after}) p")),
            "{after}"
        );
        assert!(after.contains("LIMIT $4) p"), "{after}");
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
