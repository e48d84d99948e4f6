//! `profile show`, `profile update`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::DatabaseArgs;
use crate::output;
use crate::target::Target;
use cruddur_db::Consistency;
use cruddur_db::Settings;
use cruddur_db::migrations::ensure_current;
use cruddur_db::repo::feed::{FeedCursor, FeedPage, MAX_PAGE_SIZE};
use cruddur_db::repo::profiles::{PROFILE_PAGE_SIZE, ProfileDraft};

/// What `profile` does.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Print a user's page as the API's JSON: `{"profile": {uuid,
    /// cognito_user_uuid, handle, display_name, bio, cruds_count},
    /// "activities": […]}`, the user's cruds and replies newest first.
    /// Reads the primary.
    Show(ShowProfileArgs),
    /// Set a user's display name and bio and print the user's short card
    /// (`{uuid, handle, display_name}`) as JSON. Every failing rule is
    /// reported (display_name_blank, display_name_exceed_max_chars over 100
    /// characters, bio_exceed_max_chars over 500, display_name_contains_nul,
    /// bio_contains_nul, user_handle_blank) and nothing is written.
    Update(UpdateProfileArgs),
}

/// Options of `profile show`.
#[derive(Debug, Args)]
pub struct ShowProfileArgs {
    /// The user's handle.
    #[arg(long)]
    pub handle: String,

    /// Activities per page, 1 to 100 (the original showed 40).
    #[arg(long, value_name = "N", default_value_t = PROFILE_PAGE_SIZE,
          value_parser = clap::value_parser!(i64).range(1..=MAX_PAGE_SIZE))]
    pub limit: i64,

    /// Continue after this cursor (printed on stderr under a full page).
    #[arg(long, value_name = "CURSOR", value_parser = crate::feed::parse_cursor)]
    pub before: Option<FeedCursor>,
}

/// Options of `profile update`.
#[derive(Debug, Args)]
pub struct UpdateProfileArgs {
    /// The user's handle.
    #[arg(long)]
    pub handle: String,

    /// The new display name.
    #[arg(long)]
    pub display_name: String,

    /// The new bio; `--bio ''` clears it.
    #[arg(long)]
    pub bio: String,
}

/// Runs `profile`.
pub fn run(
    command: ProfileCommand,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    match command {
        ProfileCommand::Show(args) => show(args, db, settings),
        ProfileCommand::Update(args) => update(args, db, settings),
    }
}

fn show(args: ShowProfileArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let page = FeedPage {
        limit: args.limit,
        before: args.before,
    };
    let target = Target::resolve(db, settings)?;
    let repo = target.repository()?;
    let context = || format!("reading the page of @{}", args.handle);
    repo.read(Consistency::Primary, ensure_current)
        .with_context(context)?;
    let user_page = repo
        .user_page(Consistency::Primary, &args.handle, page)
        .with_context(context)?;
    output::json(&user_page)?;
    if let Some(last) = user_page.activities.last()
        && user_page.activities.len() as i64 == page.limit
    {
        output::note(&format!(
            "next page: --before {}",
            FeedCursor::at(last.created_at, last.uuid)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn update(
    args: UpdateProfileArgs,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    // Validation first: bad input costs no connection.
    let draft = ProfileDraft::parse(&args.handle, &args.display_name, &args.bio)
        .context("profile not updated")?;
    let target = Target::resolve(db, settings)?;
    let repo = target.repository()?;
    repo.read(Consistency::Primary, ensure_current)
        .context("profile not updated")?;
    let (short, token) = repo.update_profile(&draft).context("profile not updated")?;
    output::json(&short)?;
    output::note(&format!("write token: {token}"));
    Ok(ExitCode::SUCCESS)
}
