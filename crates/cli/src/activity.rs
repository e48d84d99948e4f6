//! `activity create`, `activity show`, `activity reply`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::DatabaseArgs;
use crate::output;
use crate::target::Target;
use cruddur_db::Consistency;
use cruddur_db::Settings;
use cruddur_db::migrations::ensure_current;
use cruddur_db::repo::activities::{ActivityDraft, ReplyDraft, Ttl};
use cruddur_db::repo::feed::{FeedCursor, MAX_PAGE_SIZE};
use cruddur_db::repo::thread::ReplyPage;
use uuid::Uuid;

/// What `activity` does.
#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// Create an activity and print it as JSON. Every failing rule is
    /// reported (message_blank, message_exceed_max_chars, user_handle_blank,
    /// message_contains_nul) and nothing is written.
    Create(CreateActivityArgs),
    /// Print a crud and its replies, oldest first, as the API's JSON:
    /// `{"activity": …, "replies": […]}`. Reads the primary.
    Show(ShowActivityArgs),
    /// Reply to an activity as a user and print the reply as JSON. Every
    /// failing rule is reported (message_blank,
    /// message_exceed_max_chars_1024, message_contains_nul,
    /// activity_uuid_blank, activity_uuid_invalid, user_handle_blank) and
    /// nothing is written; an unknown or expired activity is refused. The
    /// activity's replies_count goes up by one in the same transaction.
    Reply(ReplyArgs),
}

/// Options of `activity show`.
#[derive(Debug, Args)]
pub struct ShowActivityArgs {
    /// The author's handle (the `@handle` of the crud's address).
    #[arg(long)]
    pub handle: String,

    /// The activity's uuid.
    #[arg(long, value_name = "UUID")]
    pub uuid: Uuid,

    /// Replies per page, 1 to 100.
    #[arg(long, value_name = "N", default_value_t = MAX_PAGE_SIZE,
          value_parser = clap::value_parser!(i64).range(1..=MAX_PAGE_SIZE))]
    pub limit: i64,

    /// Continue after this reply's cursor (printed on stderr under a full
    /// page).
    #[arg(long, value_name = "CURSOR", value_parser = crate::feed::parse_cursor)]
    pub after: Option<FeedCursor>,
}

/// Options of `activity reply`.
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The replier's handle.
    #[arg(long)]
    pub handle: String,

    /// The uuid of the activity replied to.
    #[arg(long, value_name = "UUID")]
    pub to: String,

    /// The reply, at most 1,024 characters.
    #[arg(
        long,
        required_unless_present = "message_file",
        conflicts_with = "message_file"
    )]
    pub message: Option<String>,

    /// Read the reply from FILE (`-` for stdin), verbatim but for one
    /// trailing newline.
    #[arg(long, value_name = "FILE")]
    pub message_file: Option<String>,
}

/// Options of `activity create`.
#[derive(Debug, Args)]
pub struct CreateActivityArgs {
    /// The author's handle.
    #[arg(long)]
    pub handle: String,

    /// The message, at most 280 characters.
    #[arg(
        long,
        required_unless_present = "message_file",
        conflicts_with = "message_file"
    )]
    pub message: Option<String>,

    /// Read the message from FILE (`-` for stdin), verbatim but for one
    /// trailing newline; for text a command line cannot carry.
    #[arg(long, value_name = "FILE")]
    pub message_file: Option<String>,

    /// How long it lives.
    #[arg(long, value_enum)]
    pub ttl: Ttl,
}

/// Reads FILE, or stdin for `-`, as bytes; invalid UTF-8 is an error.
pub(crate) fn read_input(path: &str, what: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading the {what} from stdin"))?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading the {what} from `{path}`"))?;
    }
    String::from_utf8(bytes).with_context(|| format!("the {what} is not valid UTF-8"))
}

/// The message of `--message`, or of `--message-file` without one
/// trailing newline.
fn message_text(message: &Option<String>, message_file: &Option<String>) -> anyhow::Result<String> {
    match (message, message_file) {
        (Some(m), _) => Ok(m.clone()),
        (None, Some(path)) => {
            let mut text = read_input(path, "message")?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(text)
        }
        (None, None) => anyhow::bail!("give --message or --message-file"),
    }
}

/// Runs `activity`.
pub fn run(
    command: ActivityCommand,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    match command {
        ActivityCommand::Create(args) => create(args, db, settings),
        ActivityCommand::Show(args) => show(args, db, settings),
        ActivityCommand::Reply(args) => reply(args, db, settings),
    }
}

fn create(
    args: CreateActivityArgs,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let message = message_text(&args.message, &args.message_file)?;
    // Validation first: bad input is reported even when the database is
    // unreachable, and costs no connection.
    let draft =
        ActivityDraft::new(&args.handle, &message, args.ttl).context("activity not created")?;
    let target = Target::resolve(db, settings)?;
    let repo = target.repository()?;
    repo.read(Consistency::Primary, ensure_current)
        .context("activity not created")?;
    // The token covers the commit: a read carrying it (`feed
    // --after-token`) sees this activity, on a replica or the primary.
    let (activity, token) = repo
        .create_activity(&draft)
        .context("activity not created")?;
    output::json(&activity)?;
    output::note(&format!("write token: {token}"));
    Ok(ExitCode::SUCCESS)
}

fn show(
    args: ShowActivityArgs,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let page = ReplyPage {
        limit: args.limit,
        after: args.after,
    };
    let target = Target::resolve(db, settings)?;
    let repo = target.repository()?;
    let context = || format!("reading @{}/status/{}", args.handle, args.uuid);
    repo.read(Consistency::Primary, ensure_current)
        .with_context(context)?;
    let thread = repo
        .activity_thread(Consistency::Primary, &args.handle, args.uuid, page)
        .with_context(context)?;
    output::json(&thread)?;
    if let Some(last) = thread.replies.last()
        && thread.replies.len() as i64 == page.limit
    {
        output::note(&format!(
            "next page: --after {}",
            FeedCursor::at(last.created_at, last.uuid)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn reply(args: ReplyArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let message = message_text(&args.message, &args.message_file)?;
    let draft = ReplyDraft::parse(&args.handle, &args.to, &message).context("reply not created")?;
    let target = Target::resolve(db, settings)?;
    let repo = target.repository()?;
    repo.read(Consistency::Primary, ensure_current)
        .context("reply not created")?;
    let (reply, token) = repo.create_reply(&draft).context("reply not created")?;
    output::json(&reply)?;
    output::note(&format!("write token: {token}"));
    Ok(ExitCode::SUCCESS)
}
