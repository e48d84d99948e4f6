//! Strict parsing of the one address a security-group rule may admit.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// Parses `input` as exactly one host address: an IPv4 address
/// (`203.0.113.7`, optionally written `203.0.113.7/32`) or an IPv6 address
/// (`2001:db8::1`, optionally `2001:db8::1/128`).
///
/// Refuses everything else: empty strings, whitespace, host names, ranges
/// (any other prefix length), zone ids, leading zeros, the unspecified,
/// broadcast and multicast addresses, and above all `0.0.0.0/0` and `::/0`,
/// which would open the database port to the whole internet. An
/// IPv4-mapped IPv6 address (`::ffff:203.0.113.7`) is taken as its IPv4
/// address.
pub fn parse_single_address(input: &str) -> Result<IpAddr> {
    let invalid = |reason: &str| Error::InvalidInput {
        what: "IP address",
        input: input.chars().take(80).collect(),
        reason: reason.to_owned(),
        remedy: None,
    };
    if input.is_empty() {
        return Err(invalid("it is empty"));
    }
    if input.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace"));
    }
    if matches!(input, "0.0.0.0/0" | "::/0") {
        return Err(Error::Refused {
            action: format!("allow {input}"),
            reason: "that admits the whole internet to the database port; give one address".into(),
            remedy: None,
        });
    }
    let (host, prefix) = match input.split_once('/') {
        Some((host, prefix)) => (host, Some(prefix)),
        None => (input, None),
    };
    let addr: IpAddr = host
        .parse()
        .map_err(|_| invalid("not an IPv4 or IPv6 address (host names and ranges are refused)"))?;
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    if let Some(prefix) = prefix {
        let single = match addr {
            IpAddr::V4(_) => "32",
            IpAddr::V6(_) => "128",
        };
        if prefix != single {
            return Err(invalid(&format!(
                "only a single address (/{single}) is allowed, not a /{prefix} range"
            )));
        }
    }
    if addr.is_unspecified() {
        return Err(invalid("the unspecified address is not a host"));
    }
    if addr.is_multicast() {
        return Err(invalid("a multicast address is not a host"));
    }
    if let IpAddr::V4(v4) = addr
        && v4.is_broadcast()
    {
        return Err(invalid("the broadcast address is not a host"));
    }
    Ok(addr)
}

/// The CIDR block for exactly `addr`: `a.b.c.d/32` or `x:y::z/128`.
pub fn single_address_cidr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_single_addresses() {
        for (input, cidr) in [
            ("203.0.113.7", "203.0.113.7/32"),
            ("203.0.113.7/32", "203.0.113.7/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("2001:DB8::1/128", "2001:db8::1/128"),
            ("::ffff:203.0.113.7", "203.0.113.7/32"),
        ] {
            let addr = parse_single_address(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(single_address_cidr(addr), cidr, "input {input}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for input in [
            "",
            " 203.0.113.7",
            "203.0.113.7\n",
            "203.0.113",
            "203.0.113.256",
            "203.0.113.07",
            "203.0.113.7/24",
            "203.0.113.7/128",
            "2001:db8::1/64",
            "fe80::1%eth0",
            "example.com",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "0.0.0.0/0",
            "::/0",
            "203.0.113.7/32/32",
            "<html>",
        ] {
            assert!(
                parse_single_address(input).is_err(),
                "{input:?} should be refused"
            );
        }
        for input in ["0.0.0.0/0", "::/0"] {
            let err = parse_single_address(input).unwrap_err();
            assert!(
                matches!(err, Error::Refused { .. }),
                "{input}: expected a refusal, got {err}"
            );
        }
    }
}
