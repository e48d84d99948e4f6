//! The checks of names and ids before anything is sent to AWS, and the
//! error they give.

use crate::error::{Error, Result};

pub(crate) fn invalid(what: &'static str, input: &str, reason: &str) -> Error {
    Error::InvalidInput {
        what,
        input: input.chars().take(80).collect(),
        reason: reason.to_owned(),
        remedy: None,
    }
}

/// RDS identifiers: a letter, then letters, digits and single hyphens, no
/// trailing hyphen, at most `max` characters.
pub(crate) fn validate_identifier(what: &'static str, id: &str, max: usize) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            id,
            &format!(
                "use 1 to {max} letters, digits and single hyphens, starting with a letter and not ending with a hyphen"
            ),
        ))
    }
}

/// PostgreSQL user and database names as RDS accepts them.
pub(super) fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            name,
            "use 1 to 63 letters, digits and underscores, starting with a letter",
        ))
    }
}

pub(crate) fn validate_group_id(id: &str) -> Result<()> {
    validate_prefixed_id("security group id", id, "sg-")
}

pub(super) fn validate_prefixed_id(what: &'static str, id: &str, prefix: &str) -> Result<()> {
    match id.strip_prefix(prefix) {
        Some(rest) if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()) => Ok(()),
        _ => Err(invalid(
            what,
            id,
            &format!("expected `{prefix}` followed by letters and digits"),
        )),
    }
}
