//! How a [`FeedItem`] is read from a row: the hot path of the typed feed,
//! 20 rows per page.
//!
//! Diesel's derived `Queryable` decodes a row into a tuple, one column at a
//! time through a one-column `PartialRow` (a range check and an index
//! mapping per column on top of the column's own lookup), then moves the
//! tuple into the struct. Here each column is read from the row by its index
//! straight into the struct, with Diesel's `FromSql` for every type but the
//! timestamps; an error names the column as Diesel's does.
//!
//! `timestamptz` columns are decoded straight from PostgreSQL's binary form:
//! a big-endian `i64` of microseconds since 2000-01-01 00:00:00 UTC. Diesel's
//! own `FromSql` adds that as a `TimeDelta` to a `NaiveDateTime` of
//! 2000-01-01, through chrono's calendar arithmetic (`checked_add_signed`,
//! `add_days`, and `from_ymd_opt` to build the epoch on every call): about
//! 270 instructions per value, 40 values per page. Here the microseconds are
//! split into a day and a time of day; the day's date is kept from one value
//! to the next on the same thread (a page's timestamps fall on a few days),
//! so most values cost a division and a comparison: about 90 instructions
//! per value on the benchmark's pages, new days included.
//! Every value both can hold gives the same instant. The public fields stay
//! `DateTime<Utc>`.

use std::cell::Cell;
use std::fmt;
use std::thread::LocalKey;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use diesel::deserialize::{self, FromSql, FromStaticSqlRow, Queryable};
use diesel::pg::{Pg, PgValue};
use diesel::result::{UnexpectedEndOfRow, UnexpectedNullError};
use diesel::row::{Field, Row};
use diesel::sql_types::{Integer, Nullable, Text, Timestamptz, Uuid};

use crate::models::FeedItem;
use crate::timestamps::PG_EPOCH_UNIX_MICROS;

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
