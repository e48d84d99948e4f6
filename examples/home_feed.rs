//! Prints Cruddur's home feed.
//!
//! ```text
//! cargo run --example home_feed            # a readable table
//! cargo run --example home_feed -- --json  # the JSON the API serves
//! ```
//!
//! The database is `DATABASE_URL` or `CONNECTION_URL` (a `.env` file is
//! read), else `postgres://localhost/cruddur` when a server answers there,
//! else the project's own cluster in `.cruddur/pg`, started with the
//! PostgreSQL programs installed on the machine (crate `cruddur-db-local`).
//! It is created, migrated and seeded on first use; later runs change
//! nothing.

use std::process::ExitCode;

use cruddur_db::{Consistency, Environment, FeedPage, Repository, Settings, prepare_for};
use cruddur_db_local::{Fallback, resolve};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error, then each cause (`source()`), on one line.
            let mut message = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            // Server text (a role or database name in the message) is shown
            // escaped, as the feed's cells are.
            eprintln!("error: {}", escape_controls(&message));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let json = std::env::args().skip(1).any(|a| a == "--json");
    let settings = Settings::from_env()?;
    let resolved = resolve(None, Environment::Development, &settings, Fallback::Start)?;
    // One line on every run says which database this is (redacted).
    eprintln!("note: {}", escape_controls(&resolved.describe()));
    let config = resolved.config;
    if let Some(warning) = &config.warning {
        eprintln!("warning: {warning}");
    }
    // Through DATABASE_DIRECT_URL behind a transaction pooler.
    let report = prepare_for(&config)?;
    if report.created || !report.migrations_applied.is_empty() || report.seeded {
        let created = if report.created { "created, " } else { "" };
        let seeded = if report.seeded {
            ", loaded the reference seed"
        } else {
            ""
        };
        eprintln!(
            "prepared {}: {created}applied {} migration(s){seeded}",
            escape_controls(&config.database_url.to_string()),
            report.migrations_applied.len(),
        );
    }
    let repo = Repository::connect(&config)?;
    if json {
        println!(
            "{}",
            repo.home_feed_json(Consistency::Primary, FeedPage::default())?
        );
        return Ok(());
    }
    let feed = repo.home_feed(Consistency::Primary, FeedPage::default())?;
    println!(
        "{:<27}  {:<16}  {:<16}  {:>7}  {:>7}  {:>5}  message",
        "created_at", "display_name", "handle", "replies", "reposts", "likes"
    );
    for item in &feed {
        println!(
            "{:<27}  {:<16}  {:<16}  {:>7}  {:>7}  {:>5}  {}",
            item.created_at
                .format(cruddur_db::models::TIMESTAMP_FORMAT)
                .to_string(),
            escape_controls(&item.display_name),
            format!("@{}", escape_controls(&item.handle)),
            item.replies_count,
            item.reposts_count,
            item.likes_count,
            escape_controls(&item.message),
        );
    }
    println!(
        "({} activit{})",
        feed.len(),
        if feed.len() == 1 { "y" } else { "ies" }
    );
    Ok(())
}

/// `text` as it may reach a terminal: control characters, the line and
/// paragraph separators and the bidirectional controls are shown in Rust's
/// escape notation (`\n`, `\u{1b}`, `\u{202e}`), so that a row stays one line
/// and an escape sequence stored in a message is shown, not run. Text from
/// the database is written by users; print none of it raw. (The CLI's
/// `output::escape_controls` follows the same rules.)
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                format!("\\u{{{:x}}}", u32::from(c))
            }
            c => c.to_string(),
        })
        .collect()
}
