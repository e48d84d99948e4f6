//! Rows, insert structs and the shapes the API returns.
//!
//! Timestamps serialize as RFC 3339 in UTC with microseconds, e.g.
//! `2026-11-24T21:05:12.123456Z` (PostgreSQL's precision), so that the
//! typed feed and the server-built JSON feed are byte-identical.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::schema::{activities, users};

/// The timestamp format used in every serialized shape.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// `text` for a one-line table cell: every character that could break the
/// line or reach the terminal as a command is shown escaped, in Rust's
/// escape notation (`\n`, `\r`, `\t`, `\u{1b}`), so that a row stays one
/// line and ANSI/OSC sequences (colours, window titles) are shown, not run.
///
/// Escaped: the C0 and C1 control characters and DEL (`char::is_control`),
/// the line and paragraph separators U+2028 and U+2029, and the bidirectional
/// embedding, override and isolate controls (U+202A..U+202E, U+2066..U+2069),
/// which would reorder the rest of the line. Everything else, right-to-left
/// letters and emoji included, is shown as stored. The stored text is never
/// changed; this is for display only.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    fn needs_escape(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if needs_escape(c) => shown.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => shown.push(c),
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// The same format, in PostgreSQL's `to_char` syntax (for the JSON path).
///
/// The colons are quoted literals (`":"`) rather than bare: the output is the
/// same, and the statement has no `:name` in it, which `pgbench` (and
/// `psql`) would take for a variable, so the benchmark can run it verbatim.
pub(crate) const PG_TIMESTAMP_FORMAT: &str = r#"YYYY-MM-DD"T"HH24":"MI":"SS.US"Z""#;

pub(crate) mod timestamp {
    use super::TIMESTAMP_FORMAT;
    use chrono::{DateTime, Datelike, Timelike, Utc};
    use serde::Serializer;

    /// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC):
    /// the offset of a binary `timestamptz`, read in `feed_row` and written
    /// by the synthetic seed's binary COPY.
    pub(crate) const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

    /// [`TIMESTAMP_FORMAT`] written by hand for the years 0 to 9999: chrono's
    /// `format` interprets the format string on every call, which made
    /// timestamps two thirds of the cost of serializing a feed page (40 per
    /// page, ~0.25 µs each). `None` for what the fast path does not cover
    /// (other years, a leap second), which then goes through chrono.
    pub(crate) fn rfc3339_micros<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 27]) -> Option<&'b str> {
        let (year, nanos) = (t.year(), t.nanosecond());
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            return None;
        }
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year.unsigned_abs());
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        put(20, 6, nanos / 1000);
        for (i, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ] {
            buf[i] = c;
        }
        std::str::from_utf8(buf).ok()
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 27];
        match rfc3339_micros(t, &mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(&t.format(TIMESTAMP_FORMAT)),
        }
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// How a [`FeedItem`] is read from a row: the hot path of the typed feed,
/// 20 rows per page.
///
/// Diesel's derived `Queryable` decodes a row into a tuple, one column at a
/// time through a one-column `PartialRow` (a range check and an index
/// mapping per column on top of the column's own lookup), then moves the
/// tuple into the struct. Here each column is read from the row by its index
/// straight into the struct, with Diesel's `FromSql` for every type but the
/// timestamps; an error names the column as Diesel's does.
///
/// `timestamptz` columns are decoded straight from PostgreSQL's binary form:
/// a big-endian `i64` of microseconds since 2000-01-01 00:00:00 UTC. Diesel's
/// own `FromSql` adds that as a `TimeDelta` to a `NaiveDateTime` of
/// 2000-01-01, through chrono's calendar arithmetic (`checked_add_signed`,
/// `add_days`, and `from_ymd_opt` to build the epoch on every call): about
/// 270 instructions per value, 40 values per page. Here the microseconds are
/// split into a day and a time of day; the day's date is kept from one value
/// to the next on the same thread (a page's timestamps fall on a few days),
/// so most values cost a division and a comparison: about 90 instructions
/// per value on the benchmark's pages, new days included.
/// Every value both can hold gives the same instant. The public fields stay
/// `DateTime<Utc>`.
mod feed_row {
    use std::cell::Cell;
    use std::fmt;
    use std::thread::LocalKey;

    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
    use diesel::deserialize::{self, FromSql, FromStaticSqlRow, Queryable};
    use diesel::pg::{Pg, PgValue};
    use diesel::result::{UnexpectedEndOfRow, UnexpectedNullError};
    use diesel::row::{Field, Row};
    use diesel::sql_types::{Integer, Nullable, Text, Timestamptz, Uuid};

    use super::FeedItem;
    use super::timestamp::PG_EPOCH_UNIX_MICROS;

    /// The SQL types of [`FeedItem`]'s columns, in its field order (the
    /// order of its `Selectable` expression).
    pub type FeedItemSql = (
        Uuid,
        Text,
        Text,
        Text,
        Integer,
        Integer,
        Integer,
        Nullable<Uuid>,
        Nullable<Timestamptz>,
        Timestamptz,
    );

    impl Queryable<FeedItemSql, Pg> for FeedItem {
        type Row = Self;

        fn build(row: Self) -> deserialize::Result<Self> {
            Ok(row)
        }
    }

    impl FromStaticSqlRow<FeedItemSql, Pg> for FeedItem {
        fn build_from_row<'a>(row: &impl Row<'a, Pg>) -> deserialize::Result<Self> {
            Ok(Self {
                uuid: column::<_, Uuid, _>(row, 0)?,
                display_name: column::<_, Text, _>(row, 1)?,
                handle: column::<_, Text, _>(row, 2)?,
                message: column::<_, Text, _>(row, 3)?,
                replies_count: column::<_, Integer, _>(row, 4)?,
                reposts_count: column::<_, Integer, _>(row, 5)?,
                likes_count: column::<_, Integer, _>(row, 6)?,
                reply_to_activity_uuid: column::<_, Nullable<Uuid>, _>(row, 7)?,
                expires_at: column::<_, Nullable<Timestamptz>, NullablePgTimestamptz>(row, 8)?.0,
                created_at: column::<_, Timestamptz, PgTimestamptz>(row, 9)?.0,
            })
        }
    }

    /// Column `index` of `row` as a `T`; a failure other than an unexpected
    /// NULL names the column, as Diesel's own decoding does.
    #[inline(always)]
    fn column<'a, R, ST, T>(row: &R, index: usize) -> deserialize::Result<T>
    where
        R: Row<'a, Pg>,
        T: FromSql<ST, Pg>,
    {
        let field = row.get(index).ok_or(UnexpectedEndOfRow)?;
        T::from_nullable_sql(field.value()).map_err(|e| {
            if e.is::<UnexpectedNullError>() {
                e
            } else {
                Box::new(ColumnError {
                    column: field.field_name().map(str::to_owned),
                    source: e,
                })
            }
        })
    }

    /// A column that could not be decoded, worded as Diesel's
    /// `DeserializeFieldError` (which only Diesel can build).
    #[derive(Debug)]
    struct ColumnError {
        column: Option<String>,
        source: Box<dyn std::error::Error + Send + Sync>,
    }

    impl fmt::Display for ColumnError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &self.column {
                Some(column) => write!(f, "Error deserializing field '{column}'"),
                None => f.write_str("Error deserializing field"),
            }
        }
    }

    impl std::error::Error for ColumnError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.source)
        }
    }

    /// Microseconds in a day.
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    /// Days from 0001-01-01 (chrono's day 1 of the common era) to the Unix
    /// epoch.
    const UNIX_EPOCH_CE_DAY: i64 = 719_163;

    /// The last day decoded in a column on this thread (days since the Unix
    /// epoch) and its date. A page's timestamps fall on a few days, often
    /// one, and the day's date is the costly part of the instant: chrono's
    /// `from_num_days_from_ce_opt` took half of it. One per column, as a
    /// row's `expires_at` and `created_at` are days apart.
    type LastDay = LocalKey<Cell<(i64, NaiveDate)>>;

    thread_local! {
        static LAST_CREATED_DAY: Cell<(i64, NaiveDate)> = const { Cell::new((i64::MIN, NaiveDate::MIN)) };
        static LAST_EXPIRES_DAY: Cell<(i64, NaiveDate)> = const { Cell::new((i64::MIN, NaiveDate::MIN)) };
    }

    /// The instant of a binary `timestamptz`; an error for a value chrono
    /// cannot hold (such as `infinity`), as Diesel's own decoding gives.
    fn decode_timestamptz(
        value: &PgValue<'_>,
        last_day: &'static LastDay,
    ) -> deserialize::Result<DateTime<Utc>> {
        let Ok(bytes) = <[u8; 8]>::try_from(value.as_bytes()) else {
            return Err(format!(
                "a timestamptz is 8 bytes, this one has {}",
                value.as_bytes().len()
            )
            .into());
        };
        let too_large = || "Tried to deserialize a timestamp that is too large for Chrono".into();
        let Some(micros) = i64::from_be_bytes(bytes).checked_add(PG_EPOCH_UNIX_MICROS) else {
            return Err(too_large());
        };
        let day = micros.div_euclid(MICROS_PER_DAY);
        let of_day = micros.rem_euclid(MICROS_PER_DAY);
        let date = last_day.with(|last| {
            let (last_day, date) = last.get();
            if last_day == day {
                return Some(date);
            }
            let date = i32::try_from(day + UNIX_EPOCH_CE_DAY)
                .ok()
                .and_then(NaiveDate::from_num_days_from_ce_opt)?;
            last.set((day, date));
            Some(date)
        });
        // `of_day` is below a day, so both always fit and the time exists.
        let time = NaiveTime::from_num_seconds_from_midnight_opt(
            (of_day / 1_000_000) as u32,
            (of_day % 1_000_000) as u32 * 1000,
        );
        match (date, time) {
            (Some(date), Some(time)) => Ok(NaiveDateTime::new(date, time).and_utc()),
            _ => Err(too_large()),
        }
    }

    /// A `timestamptz` column read into a `DateTime<Utc>`.
    struct PgTimestamptz(DateTime<Utc>);

    impl FromSql<Timestamptz, Pg> for PgTimestamptz {
        fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
            decode_timestamptz(&value, &LAST_CREATED_DAY).map(Self)
        }
    }

    /// A nullable `timestamptz` column read into an `Option<DateTime<Utc>>`.
    struct NullablePgTimestamptz(Option<DateTime<Utc>>);

    impl FromSql<Nullable<Timestamptz>, Pg> for NullablePgTimestamptz {
        fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
            decode_timestamptz(&value, &LAST_EXPIRES_DAY).map(|t| Self(Some(t)))
        }

        fn from_nullable_sql(value: Option<PgValue<'_>>) -> deserialize::Result<Self> {
            match value {
                Some(value) => Self::from_sql(value),
                None => Ok(Self(None)),
            }
        }
    }
}

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
    #[serde(with = "timestamp")]
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
    #[serde(with = "timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the activity was created.
    #[serde(with = "timestamp")]
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
/// (written by hand rather than derived: see `feed_row`).
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
    #[serde(with = "timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the activity was created.
    #[diesel(select_expression = activities::created_at)]
    #[serde(with = "timestamp")]
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
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it expires (`None` for replies).
    #[serde(with = "timestamp::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_controls_keeps_a_cell_on_one_line_and_inert() {
        for (text, shown) in [
            ("plain text", "plain text"),
            ("Andrew\nBrown", "Andrew\\nBrown"),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("\u{1b}]0;pwned\u{7}", "\\u{1b}]0;pwned\\u{7}"),
            (
                "csi\u{9b}2J del\u{7f} nul\u{0}",
                "csi\\u{9b}2J del\\u{7f} nul\\u{0}",
            ),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("\u{202e}evil\u{2066}", "\\u{202e}evil\\u{2066}"),
            ("שלום 🦀 'q' \\ \"", "שלום 🦀 'q' \\ \""),
        ] {
            assert_eq!(escape_controls(text), shown, "{text:?}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hand_written_timestamps_match_chrono(
            secs in -62_167_219_200i64..253_402_300_800, // years 0 to 9999
            micros in 0u32..1_000_000,
        ) {
            let t = DateTime::from_timestamp(secs, micros * 1000).unwrap();
            let mut buf = [0u8; 27];
            let fast = timestamp::rfc3339_micros(&t, &mut buf).unwrap().to_owned();
            prop_assert_eq!(fast, t.format(TIMESTAMP_FORMAT).to_string());
        }
    }

    #[test]
    fn years_outside_the_fast_path_still_serialize_like_chrono() {
        for t in [
            DateTime::from_timestamp(253_402_300_800, 0).unwrap(), // year 10000
            DateTime::from_timestamp(-62_167_219_201, 5000).unwrap(), // year -1
            DateTime::UNIX_EPOCH,
        ] {
            let mut buf = [0u8; 27];
            let fast = timestamp::rfc3339_micros(&t, &mut buf).map(str::to_owned);
            let json = serde_json::to_string(&ActivityObject {
                uuid: Uuid::nil(),
                display_name: String::new(),
                handle: String::new(),
                message: String::new(),
                created_at: t,
                expires_at: Some(t),
            })
            .unwrap();
            let chrono = t.format(TIMESTAMP_FORMAT).to_string();
            assert!(
                json.contains(&format!("\"created_at\":\"{chrono}\"")),
                "{json}"
            );
            if let Some(fast) = fast {
                assert_eq!(fast, chrono);
            }
        }
    }
}
