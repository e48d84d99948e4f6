//! How the tool prints: results on stdout, everything else (labels, steps,
//! notes, progress, errors) on stderr, coloured through `anstream`, which
//! drops the colours when the stream is not a terminal or `NO_COLOR` is set.
//!
//! Every line that could carry user text goes through [`scrub`], which
//! removes the passwords of every connection string the tool was given, a
//! second line of defence behind the library's redacted URLs, and then
//! through [`shown`], the one escaper of text that came from the server or
//! the user (role and database names, the role that marked a database,
//! server errors): control characters, escape sequences and bidirectional
//! controls are printed escaped (`\u{1b}`, `\n`), as the feed table shows
//! them, so that such text can neither run as a terminal command nor forge
//! a line. The helpers below ([`note`], [`warning`], [`result`],
//! [`success`], [`error`], [`environment_label`]) apply it to the whole
//! message; a line that mixes the tool's own colours with server text
//! (`status`) applies it to each server value.

use std::io::IsTerminal;
use std::sync::OnceLock;

use anstyle::{AnsiColor, Color, Style};

/// `error:` prefixes.
pub const ERROR: Style = Style::new()
    .bold()
    .fg_color(Some(Color::Ansi(AnsiColor::Red)));
/// `warning:` prefixes.
pub const WARNING: Style = Style::new()
    .bold()
    .fg_color(Some(Color::Ansi(AnsiColor::Yellow)));
/// Things that went well.
pub const SUCCESS: Style = Style::new().fg_color(Some(Color::Ansi(AnsiColor::Green)));
/// Step headings and table headers.
pub const HEADING: Style = Style::new().bold();
/// The production label: hard to miss.
pub const PRODUCTION: Style = Style::new()
    .bold()
    .fg_color(Some(Color::Ansi(AnsiColor::White)))
    .bg_color(Some(Color::Ansi(AnsiColor::Red)));
/// The development label.
pub const DEVELOPMENT: Style = Style::new()
    .bold()
    .fg_color(Some(Color::Ansi(AnsiColor::Green)));

static SECRETS: OnceLock<Vec<String>> = OnceLock::new();

/// Registers the passwords that must never be printed (those of every
/// connection string given on the command line or in the environment).
/// Only the first call counts.
pub fn register_secrets(secrets: Vec<String>) {
    let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
    // Longest first, so that a password containing another is removed whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let _ = SECRETS.set(secrets);
}

/// `text` with every registered password replaced by `***` (also in its
/// percent-encoded form); see [`cruddur_db::config::scrub_secrets`].
pub fn scrub(text: &str) -> String {
    let secrets = SECRETS.get().map(Vec::as_slice).unwrap_or_default();
    cruddur_db::config::scrub_secrets(text, secrets)
}

/// `text` as it may reach a terminal: passwords removed ([`scrub`]), then
/// control characters and escape sequences escaped
/// ([`cruddur_db::models::escape_controls`], the feed table's escaper).
pub fn shown(text: &str) -> String {
    cruddur_db::models::escape_controls(&scrub(text)).into_owned()
}

/// Prints a step heading (`== create`), as the original scripts did.
pub fn step(name: &str) {
    anstream::eprintln!("{HEADING}== {name}{HEADING:#}");
}

/// Prints a note on stderr.
pub fn note(message: &str) {
    anstream::eprintln!("{}", shown(message));
}

/// Prints a warning on stderr.
pub fn warning(message: &str) {
    anstream::eprintln!("{WARNING}warning:{WARNING:#} {}", shown(message));
}

/// Prints a result line on stdout.
pub fn result(message: &str) {
    anstream::println!("{}", shown(message));
}

/// Prints a result line on stdout, in the success colour.
pub fn success(message: &str) {
    anstream::println!("{SUCCESS}{}{SUCCESS:#}", shown(message));
}

/// Prints `error: …` with the whole cause chain on stderr.
pub fn error(e: &anyhow::Error) {
    let hint = e
        .chain()
        .find_map(|cause| {
            cause
                .downcast_ref::<cruddur_db::Error>()
                .and_then(hint_for)
                .or_else(|| {
                    cause
                        .downcast_ref::<cruddur_db_local::Error>()
                        .and_then(local_hint_for)
                })
        })
        .map(|hint| format!(" ({hint})"))
        .unwrap_or_default();
    anstream::eprintln!("{ERROR}error:{ERROR:#} {}{hint}", shown(&format!("{e:#}")));
}

/// The command that fixes a local-cluster error, when there is one.
fn local_hint_for(e: &cruddur_db_local::Error) -> Option<&'static str> {
    match e {
        cruddur_db_local::Error::NothingAnswers { .. } => Some(
            "start the local cluster with `cruddur-db local start` or `cruddur-db prepare`, or set DATABASE_URL",
        ),
        _ => None,
    }
}

/// The command that fixes a library error, when there is one.
fn hint_for(e: &cruddur_db::Error) -> Option<&'static str> {
    match e {
        cruddur_db::Error::PendingMigrations { .. } => Some("run `cruddur-db migrate run` first"),
        cruddur_db::Error::DatabaseMissing { .. } => Some("create it with `cruddur-db create`"),
        _ => None,
    }
}

/// Prints the environment label for a target on stderr.
pub fn environment_label(production: bool, what: &str) {
    if production {
        anstream::eprintln!("{PRODUCTION} PRODUCTION {PRODUCTION:#} {}", shown(what));
    } else {
        anstream::eprintln!("{DEVELOPMENT}development{DEVELOPMENT:#} {}", shown(what));
    }
}

/// Prints a value as JSON on stdout: indented on a terminal, one line
/// otherwise (for pipes and scripts). The text is written as is, not through
/// anstream, whose stripping off a terminal would cut DEL and C1 characters
/// (which JSON leaves unescaped) out of the data.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let text = if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(value)?
    } else {
        serde_json::to_string(value)?
    };
    println!("{text}");
    Ok(())
}

/// A duration in seconds as `3d 4h`, `5m 10s`, `42s`, `0.3s`.
pub fn age(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_shown_inert_and_on_one_line() {
        for (text, expected) in [
            ("plain", "plain"),
            (
                "r\u{1b}[2J\u{1b}]0;pwned\u{7}",
                "r\\u{1b}[2J\\u{1b}]0;pwned\\u{7}",
            ),
            ("two\nlines\r", "two\\nlines\\r"),
            ("\u{9b}31m csi", "\\u{9b}31m csi"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("日本 ✓", "日本 ✓"),
        ] {
            assert_eq!(shown(text), expected, "{text:?}");
        }
    }

    #[test]
    fn ages_read_well() {
        for (secs, shown) in [
            (0.25, "0.2s"),
            (42.0, "42s"),
            (310.0, "5m 10s"),
            (7260.0, "2h 1m"),
            (273_600.0, "3d 4h"),
            (-1.0, "-"),
        ] {
            assert_eq!(age(secs), shown, "{secs}");
        }
    }
}
