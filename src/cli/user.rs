//! `user confirm`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::cli::activity::read_input;
use crate::cli::output;
use crate::cli::target::Target;
use crate::migrations::ensure_current;
use crate::repo::users::{PostConfirmationEvent, confirm_user};

/// What `user` does.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create the user of an identity provider's post-confirmation event
    /// (once per `sub`) and print `{"user": …, "created": …}`.
    Confirm(ConfirmArgs),
}

/// Options of `user confirm`.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The event JSON: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub event: String,
}

/// Runs `user`.
pub fn run(command: UserCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let UserCommand::Confirm(args) = command;
    let text = read_input(&args.event, "event")?;
    let event = PostConfirmationEvent::parse(&text).context("user not confirmed")?;
    let target = Target::resolve(global)?;
    let conn = &mut target.connect()?;
    ensure_current(conn).context("user not confirmed")?;
    let confirmed = confirm_user(conn, &event).context("user not confirmed")?;
    output::json(&confirmed)?;
    Ok(ExitCode::SUCCESS)
}
