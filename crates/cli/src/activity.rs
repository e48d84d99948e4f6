//! `activity create`.

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
use cruddur_db::repo::activities::{ActivityDraft, Ttl};

/// What `activity` does.
#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// Create an activity and print it as JSON. Every failing rule is
    /// reported (message_blank, message_exceed_max_chars, user_handle_blank,
    /// message_contains_nul) and nothing is written.
    Create(CreateActivityArgs),
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

/// Runs `activity`.
pub fn run(
    command: ActivityCommand,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let ActivityCommand::Create(args) = command;
    let message = match (&args.message, &args.message_file) {
        (Some(m), _) => m.clone(),
        (None, Some(path)) => {
            let mut text = read_input(path, "message")?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
        (None, None) => anyhow::bail!("give --message or --message-file"),
    };
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
