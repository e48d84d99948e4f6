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

/// `text` as it may reach a terminal: passwords removed ([`scrub`]),
/// libpq's continuation lines (a newline and a tab, as in "Connection
/// refused\n\tIs the server running…") joined with a space, then control
/// characters and escape sequences escaped ([`escape_controls`], the feed
/// table's escaper), so that every message stays one line.
pub fn shown(text: &str) -> String {
    escape_controls(&scrub(text).replace("\n\t", " ")).into_owned()
}

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
                .map(str::to_owned)
                .or_else(|| aws_hint_for(cause))
        })
        .map(|hint| format!(" ({hint})"))
        .unwrap_or_default();
    // The hint may carry an identifier the user typed: shown escaped too.
    anstream::eprintln!(
        "{ERROR}error:{ERROR:#} {}{}",
        shown(&format!("{e:#}")),
        shown(&hint)
    );
}

/// The command that gets past an AWS toolkit error, when there is one: the
/// toolkit states what failed and says what would fix it
/// ([`cruddur_db_aws::Remedy`]); the command is the CLI's to name.
#[cfg(feature = "aws")]
fn aws_hint_for(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    crate::rds::remedy::hint(cause.downcast_ref::<cruddur_db_aws::Error>()?.remedy()?)
}

/// Without the `rds` commands no AWS error reaches the CLI.
#[cfg(not(feature = "aws"))]
fn aws_hint_for(_: &(dyn std::error::Error + 'static)) -> Option<String> {
    None
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
            (
                "Connection refused\n\tIs the server running?",
                "Connection refused Is the server running?",
            ),
            ("forged\n\terror: x\nerror: y", "forged error: x\\nerror: y"),
        ] {
            assert_eq!(shown(text), expected, "{text:?}");
        }
    }

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

    #[cfg(feature = "aws")]
    #[test]
    fn aws_remedies_become_the_cli_command_that_applies_them() {
        use cruddur_db_aws::{Error, Remedy};
        let refused = |remedy| Error::Refused {
            action: "do it".into(),
            reason: "a rule says no".into(),
            remedy: Some(remedy),
        };
        for (error, hint) in [
            (
                refused(Remedy::NameASecurityGroup),
                "pass --security-group-id with a group",
            ),
            (
                refused(Remedy::PointRulesAtOneAddress),
                "with `cruddur-db rds allow-ip`",
            ),
            (
                refused(Remedy::AddARuleForOneAddress),
                "`cruddur-db rds allow-ip --group-id GROUP --ip auto`",
            ),
            (
                refused(Remedy::CreateInstance {
                    identifier: "src-db".into(),
                }),
                "`cruddur-db rds create --identifier src-db`",
            ),
            (
                refused(Remedy::ReplicaUrl {
                    identifier: "rep-db".into(),
                }),
                "`cruddur-db rds url --replica rep-db`",
            ),
            (
                refused(Remedy::PrimaryUrl {
                    identifier: "main-db".into(),
                }),
                "`cruddur-db rds url --identifier main-db`",
            ),
            (
                Error::Incomplete {
                    what: "the read replica `rep-db`".into(),
                    problems: vec!["deletion protection is off".into()],
                    remedy: Remedy::Audit {
                        identifier: "rep-db".into(),
                    },
                },
                "`cruddur-db rds audit --identifier rep-db` lists",
            ),
        ] {
            let message = error.to_string();
            assert!(!message.contains("cruddur-db"), "{message}");
            // As the CLI meets it: wrapped in context.
            let e = anyhow::Error::new(error).context("rds");
            let found = e.chain().find_map(aws_hint_for);
            assert!(
                found.as_deref().is_some_and(|h| h.contains(hint)),
                "{message}: {found:?}"
            );
        }
        let plain = Error::Refused {
            action: "do it".into(),
            reason: "a rule says no".into(),
            remedy: None,
        };
        assert_eq!(aws_hint_for(&plain), None);
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
