//! `feed`: the home feed, as a table or as the API's JSON.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::DatabaseArgs;
use crate::output::{self, HEADING, escape_controls};
use crate::target::Target;
use cruddur_db::FeedItem;
use cruddur_db::Settings;
use cruddur_db::migrations::ensure_current;
use cruddur_db::models::TIMESTAMP_FORMAT;
use cruddur_db::replica::{Consistency, WriteToken};
use cruddur_db::repo::feed::{DEFAULT_PAGE_SIZE, FeedCursor, FeedPage, MAX_PAGE_SIZE};

/// Options of `feed`.
#[derive(Debug, Args)]
pub struct FeedArgs {
    /// Items per page, 1 to 100.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PAGE_SIZE,
          value_parser = clap::value_parser!(i64).range(1..=MAX_PAGE_SIZE))]
    pub limit: i64,

    /// Continue after this cursor (printed on stderr under a full page).
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    pub before: Option<FeedCursor>,

    /// Print the page as the API's JSON array, built by PostgreSQL.
    #[arg(long)]
    pub json: bool,

    /// With read replicas: read from one that has replayed this write
    /// token (printed by `activity create`), else from the primary.
    #[arg(long, value_name = "TOKEN", conflicts_with = "primary")]
    pub after_token: Option<WriteToken>,

    /// With read replicas: read from the primary.
    #[arg(long)]
    pub primary: bool,
}

/// One page, as the caller asked for it.
enum Page {
    Typed(Vec<FeedItem>),
    Json(String),
}

/// A usage error (exit 2) for a cursor that does not decode.
pub(crate) fn parse_cursor(raw: &str) -> Result<FeedCursor, String> {
    raw.parse().map_err(|e: cruddur_db::Error| e.to_string())
}

/// Runs `feed`.
pub fn run(args: FeedArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let page = FeedPage {
        limit: args.limit,
        before: args.before,
    };
    let target = Target::resolve(db, settings)?;
    let database = target.database()?;
    let consistency = if args.primary {
        Consistency::Primary
    } else {
        Consistency::after(args.after_token)
    };
    let context = || format!("reading the feed of `{database}`");
    let repo = target.repository()?;
    repo.read(Consistency::Primary, ensure_current)
        .with_context(context)?;
    let result = if args.json {
        Page::Json(
            repo.home_feed_json(consistency, page)
                .with_context(context)?,
        )
    } else {
        Page::Typed(repo.home_feed(consistency, page).with_context(context)?)
    };
    if target.has_replicas() {
        output::note(if repo.counters().replica_reads > 0 {
            "note: read from a replica"
        } else {
            "note: read from the primary"
        });
    }
    let feed = match result {
        Page::Typed(feed) => feed,
        Page::Json(json) => {
            // Not through anstream: off a terminal it strips what looks like
            // an escape sequence, and DEL and C1 characters (U+0080..U+009F),
            // which JSON carries unescaped, would be cut out of the data.
            println!("{json}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    // Text is shown escaped (see `escape_controls`): a newline in a display
    // name would otherwise print a fake row, and escape sequences in a
    // message would reach the terminal as commands.
    anstream::println!(
        "{HEADING}{:<27}  {:<16}  {:<16}  {:>7}  {:>7}  {:>5}  message{HEADING:#}",
        "created_at",
        "display_name",
        "handle",
        "replies",
        "reposts",
        "likes"
    );
    for item in &feed {
        anstream::println!(
            "{:<27}  {:<16}  {:<16}  {:>7}  {:>7}  {:>5}  {}",
            item.created_at.format(TIMESTAMP_FORMAT).to_string(),
            escape_controls(&item.display_name),
            format!("@{}", escape_controls(&item.handle)),
            item.replies_count,
            item.reposts_count,
            item.likes_count,
            escape_controls(&item.message),
        );
    }
    output::result(&format!(
        "({} activit{})",
        feed.len(),
        if feed.len() == 1 { "y" } else { "ies" }
    ));
    if let Some(last) = feed.last()
        && feed.len() as i64 == page.limit
    {
        output::note(&format!("next page: --before {}", FeedCursor::after(last)));
    }
    Ok(ExitCode::SUCCESS)
}
