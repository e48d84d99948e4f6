//! How the rows' timestamps are written: RFC 3339 in UTC with microseconds,
//! e.g. `2026-11-24T21:05:12.123456Z` (PostgreSQL's precision), so that the
//! typed feed and the server-built JSON feed are byte-identical.
//!
//! The serializer is used through `#[serde(with = "crate::timestamps")]`
//! (and `crate::timestamps::option`) on the rows in `models`.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// The timestamp format used in every serialized shape.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// The same format, in PostgreSQL's `to_char` syntax (for the JSON path).
///
/// The colons are quoted literals (`":"`) rather than bare: the output is the
/// same, and the statement has no `:name` in it, which `pgbench` (and
/// `psql`) would take for a variable, so the benchmark can run it verbatim.
pub(crate) const PG_TIMESTAMP_FORMAT: &str = r#"YYYY-MM-DD"T"HH24":"MI":"SS.US"Z""#;

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

pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 27];
    match rfc3339_micros(t, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.collect_str(&t.format(TIMESTAMP_FORMAT)),
    }
}

pub(crate) mod option {
    use super::*;
    pub(crate) fn serialize<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ActivityObject;
    use uuid::Uuid;

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hand_written_timestamps_match_chrono(
            secs in -62_167_219_200i64..253_402_300_800, // years 0 to 9999
            micros in 0u32..1_000_000,
        ) {
            let t = DateTime::from_timestamp(secs, micros * 1000).unwrap();
            let mut buf = [0u8; 27];
            let fast = rfc3339_micros(&t, &mut buf).unwrap().to_owned();
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
            let fast = rfc3339_micros(&t, &mut buf).map(str::to_owned);
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
