//! [`WriteToken`] (a WAL position of the primary) and [`Consistency`].

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A position in the primary's write-ahead log after a commit: a reader
/// holding it sees that commit on any server whose replay has reached it.
///
/// Its text form is PostgreSQL's own `pg_lsn` notation, two hexadecimal
/// halves `X/Y` (e.g. `0/16B3748`), so that it can travel in a cookie or a
/// header and be compared by the server itself (`'0/16B3748'::pg_lsn`).
/// `serde` writes and reads that string. Tokens order like the positions
/// they stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteToken(u64);

impl WriteToken {
    /// The token for a WAL position given as a number.
    pub const fn from_lsn(lsn: u64) -> Self {
        Self(lsn)
    }

    /// The WAL position, as a number (bytes since the start of the log).
    pub const fn lsn(self) -> u64 {
        self.0
    }
}

impl fmt::Display for WriteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The exact spelling of PostgreSQL's pg_lsn_out: upper-case hex,
        // no leading zeros.
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for WriteToken {
    type Err = Error;

    /// Parses `X/Y` with one to eight hexadecimal digits on each side, as
    /// `pg_lsn` does; anything else is an [`Error::InvalidToken`].
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidToken {
            input: s.chars().take(40).collect(),
            reason: reason.to_owned(),
        };
        let (high, low) = s
            .split_once('/')
            .ok_or_else(|| invalid("expected two hexadecimal numbers separated by `/`"))?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "each side of `/` must be 1 to 8 hexadecimal digits",
                ));
            }
            u32::from_str_radix(part, 16)
                .map_err(|_| invalid("each side of `/` must be 1 to 8 hexadecimal digits"))
        };
        Ok(Self((u64::from(half(high)?) << 32) | u64::from(half(low)?)))
    }
}

impl serde::Serialize for WriteToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WriteToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a read needs to see, chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Any healthy replica (or the primary when none is): the read may miss
    /// recent writes, within the lag thresholds.
    Eventual,
    /// Only a server that has replayed past this write: a replica whose
    /// replay reached the token, or, after a short bounded wait, the primary.
    AtLeast(WriteToken),
    /// The primary.
    Primary,
}

impl Consistency {
    /// [`Consistency::AtLeast`] when the caller holds a token (from a
    /// cookie, say), else [`Consistency::Eventual`].
    pub fn after(token: Option<WriteToken>) -> Self {
        token.map_or(Consistency::Eventual, Consistency::AtLeast)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_in_postgresql_notation() {
        for (text, lsn) in [
            ("0/0", 0),
            ("0/16B3748", 0x16B_3748),
            ("1/0", 1 << 32),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("A/BC", (0xA << 32) | 0xBC),
        ] {
            let token: WriteToken = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(token.lsn(), lsn, "{text}");
            assert_eq!(token.to_string(), text, "{text}");
        }
        // Lower case and leading zeros are accepted, printed canonically.
        assert_eq!(
            "00000001/0abc".parse::<WriteToken>().unwrap().to_string(),
            "1/ABC"
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for text in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "123456789/0",
            "g/0",
            " 0/0",
            "0/-1",
            "+1/0",
        ] {
            let err = text.parse::<WriteToken>().expect_err(text);
            assert!(matches!(err, Error::InvalidToken { .. }), "{text}: {err:?}");
        }
    }

    #[test]
    fn tokens_order_by_position_not_by_text() {
        let a: WriteToken = "0/FFFFFFFF".parse().unwrap();
        let b: WriteToken = "1/0".parse().unwrap();
        let c: WriteToken = "1/A".parse().unwrap();
        assert!(a < b && b < c);
        assert!("0/9".parse::<WriteToken>().unwrap() < "0/10".parse().unwrap());
    }

    #[test]
    fn serde_uses_the_text_form() {
        let token = WriteToken::from_lsn((3 << 32) | 0x2A);
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, "\"3/2A\"");
        assert_eq!(serde_json::from_str::<WriteToken>(&json).unwrap(), token);
        assert!(serde_json::from_str::<WriteToken>("\"nope\"").is_err());
        assert!(serde_json::from_str::<WriteToken>("42").is_err());
    }

    #[test]
    fn consistency_after_an_optional_token() {
        assert_eq!(Consistency::after(None), Consistency::Eventual);
        let t = WriteToken::from_lsn(7);
        assert_eq!(Consistency::after(Some(t)), Consistency::AtLeast(t));
    }
}
