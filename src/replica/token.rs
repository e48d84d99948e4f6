//! [`Lsn`] (a WAL position), [`ClusterIdentity`] (which history a
//! position belongs to), [`WriteToken`] (both, for a write) and
//! [`Consistency`].

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A position in a server's write-ahead log (bytes since the start of the
/// log), as PostgreSQL's `pg_lsn`. Its text form is PostgreSQL's own
/// notation, two hexadecimal halves `X/Y` (e.g. `0/16B3748`). Positions
/// order as numbers; they compare meaningfully only within one
/// [`ClusterIdentity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The exact spelling of PostgreSQL's pg_lsn_out: upper-case hex,
        // no leading zeros.
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// 1 to `max` hexadecimal digits, else `None`.
fn hex(part: &str, max: usize) -> Option<u64> {
    if part.is_empty() || part.len() > max || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(part, 16).ok()
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses `X/Y` with one to eight hexadecimal digits on each side, as
    /// `pg_lsn` does; anything else is an [`Error::InvalidToken`].
    fn from_str(s: &str) -> Result<Self> {
        let invalid = || {
            invalid(
                s,
                "expected two hexadecimal numbers of 1 to 8 digits separated by `/`",
            )
        };
        let (high, low) = s.split_once('/').ok_or_else(invalid)?;
        match (hex(high, 8), hex(low, 8)) {
            (Some(high), Some(low)) => Ok(Self((high << 32) | low)),
            _ => Err(invalid()),
        }
    }
}

fn invalid(input: &str, reason: &str) -> Error {
    Error::InvalidToken {
        input: input.chars().take(40).collect(),
        reason: reason.to_owned(),
    }
}

/// Which WAL history a position belongs to: the cluster's
/// `system_identifier` (`pg_control_system()`, the same on a primary and
/// every standby made from it, different for every `initdb`) and the
/// timeline (a promotion starts a new one). A position of one identity says
/// nothing about a server of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterIdentity {
    /// `pg_control_system().system_identifier`.
    pub system_identifier: u64,
    /// The timeline the server writes (a primary) or follows (a standby).
    pub timeline: u32,
}

impl ClusterIdentity {
    /// What a write token carries when the primary's identity could not be
    /// read (the role may not execute `pg_control_system()`): system
    /// identifier 0, which no cluster has (`initdb` derives it from the
    /// clock and its process id). No replica is of this identity, so a
    /// read holding such a token is read on the primary: the write is
    /// never reported as failed for want of a token it could not check.
    pub const UNVERIFIED: Self = Self {
        system_identifier: 0,
        timeline: 1,
    };
}

/// A write's position in the primary's log, with the identity of that
/// primary: a reader holding it sees that write on any server of the same
/// identity whose replay has reached the position.
///
/// Its text form is `X/Y.TLI.SYSID`: the position in `pg_lsn` notation,
/// the timeline in hexadecimal (1 to 8 digits, as in WAL file names) and
/// the system identifier in decimal (1 to 20 digits, as `pg_controldata`
/// prints it), e.g. `0/16B3748.1.7714726817598851214`. Anything else is
/// refused, and the parser reads at most 47 characters. `serde` writes and
/// reads that string. Tokens do not order: compare their [`lsn`](Self::lsn)
/// once their identities are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteToken {
    lsn: Lsn,
    identity: ClusterIdentity,
}

/// The longest text form: `FFFFFFFF/FFFFFFFF.FFFFFFFF.` and 20 digits.
const MAX_TOKEN_LEN: usize = 8 + 1 + 8 + 1 + 8 + 1 + 20;

impl WriteToken {
    /// The token for position `lsn` of the server with `identity`.
    pub const fn new(lsn: Lsn, identity: ClusterIdentity) -> Self {
        Self { lsn, identity }
    }

    /// The WAL position.
    pub const fn lsn(self) -> Lsn {
        self.lsn
    }

    /// The identity of the primary that issued it.
    pub const fn identity(self) -> ClusterIdentity {
        self.identity
    }
}

impl fmt::Display for WriteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:X}.{}",
            self.lsn, self.identity.timeline, self.identity.system_identifier
        )
    }
}

impl FromStr for WriteToken {
    type Err = Error;

    /// Parses `X/Y.TLI.SYSID` (see [`WriteToken`]); anything else is an
    /// [`Error::InvalidToken`].
    fn from_str(s: &str) -> Result<Self> {
        const SHAPE: &str = "expected `X/Y.TLI.SYSID`: a WAL position, a hexadecimal timeline \
                             and a decimal system identifier";
        if s.len() > MAX_TOKEN_LEN {
            return Err(invalid(s, SHAPE));
        }
        let mut parts = s.split('.');
        let (Some(lsn), Some(timeline), Some(sysid), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(s, SHAPE));
        };
        let lsn: Lsn = lsn.parse().map_err(|_| invalid(s, SHAPE))?;
        let timeline = hex(timeline, 8)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|&t| t != 0)
            .ok_or_else(|| invalid(s, "the timeline must be 1 to 8 hexadecimal digits, not 0"))?;
        let decimal =
            !sysid.is_empty() && sysid.len() <= 20 && sysid.bytes().all(|b| b.is_ascii_digit());
        let system_identifier = decimal
            .then(|| sysid.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                invalid(
                    s,
                    "the system identifier must be a decimal number below 2^64",
                )
            })?;
        let token = Self::new(
            lsn,
            ClusterIdentity {
                system_identifier,
                timeline,
            },
        );
        // One spelling per token, the one `Display` writes (upper-case
        // hexadecimal, no leading zeros), so that a token's text is a
        // pattern a client or an API document can state exactly.
        if token.to_string() != s {
            return Err(invalid(
                s,
                "not written as tokens are: upper-case hexadecimal and decimal without leading zeros",
            ));
        }
        Ok(token)
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
    /// Only a server that has replayed past this write: a replica of the
    /// token's identity whose replay reached the token, or, after a short
    /// bounded wait, the primary.
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

    const ID: ClusterIdentity = ClusterIdentity {
        system_identifier: 7_714_726_817_598_851_214,
        timeline: 1,
    };

    #[test]
    fn positions_round_trip_in_postgresql_notation() {
        for (text, lsn) in [
            ("0/0", 0),
            ("0/16B3748", 0x16B_3748),
            ("1/0", 1 << 32),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("A/BC", (0xA << 32) | 0xBC),
        ] {
            let parsed: Lsn = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed, Lsn(lsn), "{text}");
            assert_eq!(parsed.to_string(), text, "{text}");
        }
        // Lower case and leading zeros are accepted, printed canonically.
        assert_eq!("00000001/0abc".parse::<Lsn>().unwrap().to_string(), "1/ABC");
        assert!("0/9".parse::<Lsn>().unwrap() < "0/10".parse().unwrap());
    }

    #[test]
    fn tokens_round_trip_with_their_identity() {
        for (text, lsn, timeline, sysid) in [
            (
                "0/16B3748.1.7714726817598851214",
                0x16B_3748,
                1,
                ID.system_identifier,
            ),
            (
                "FFFFFFFF/FFFFFFFF.FFFFFFFF.18446744073709551615",
                u64::MAX,
                u32::MAX,
                u64::MAX,
            ),
            ("1/0.A.1", 1 << 32, 10, 1),
        ] {
            let token: WriteToken = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(token.lsn(), Lsn(lsn), "{text}");
            assert_eq!(token.identity().timeline, timeline, "{text}");
            assert_eq!(token.identity().system_identifier, sysid, "{text}");
            assert_eq!(token.to_string(), text, "{text}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let long = format!("0/0.1.{}", "1".repeat(100_000));
        for text in [
            "",
            "/",
            "0/",
            "0/0",
            "0/16B3748",
            "0/0.1",
            "0/0.1.",
            "0/0..1",
            "0/0.0.1",
            "0/0.1.1.",
            "0/0.1.1.1",
            "0/0.123456789.1",
            "0/0.g.1",
            "0/0.1.-1",
            "0/0.1.+1",
            "0/0.1.0x1",
            "0/0.1.18446744073709551616",
            "0/0.1.000000000000000000001",
            // One spelling per token: the one tokens are written in.
            "0/a.0a.007",
            "0/A.A.07",
            "00/A.A.7",
            "0/0A.A.7",
            " 0/0.1.1",
            "0/0.1.1 ",
            "123456789/0.1.1",
            "0/0/0.1.1",
            "0/-1.1.1",
            "0/0.1.１",
            long.as_str(),
        ] {
            let err = text.parse::<WriteToken>().expect_err(text);
            assert!(
                matches!(&err, Error::InvalidToken { input, .. } if input.chars().count() <= 40),
                "{text}: {err:?}"
            );
        }
        for text in ["", "0", "0/0/0", "g/0", "+1/0", "0/-1", "123456789/0"] {
            assert!(text.parse::<Lsn>().is_err(), "{text}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let token = WriteToken::new(Lsn((3 << 32) | 0x2A), ID);
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, "\"3/2A.1.7714726817598851214\"");
        assert_eq!(serde_json::from_str::<WriteToken>(&json).unwrap(), token);
        assert!(serde_json::from_str::<WriteToken>("\"3/2A\"").is_err());
        assert!(serde_json::from_str::<WriteToken>("42").is_err());
    }

    #[test]
    fn consistency_after_an_optional_token() {
        assert_eq!(Consistency::after(None), Consistency::Eventual);
        let t = WriteToken::new(Lsn(7), ID);
        assert_eq!(Consistency::after(Some(t)), Consistency::AtLeast(t));
    }
}
