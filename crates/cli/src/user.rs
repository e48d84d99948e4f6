//! `user confirm`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::DatabaseArgs;
use crate::activity::read_input;
use crate::output;
use crate::target::Target;
use cruddur_db::Consistency;
use cruddur_db::Settings;
use cruddur_db::migrations::ensure_current;
use cruddur_db::repo::users::PostConfirmationEvent;

/// What `user` does.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create the user of an identity provider's post-confirmation event
    /// (once per `sub`) and print `{"user": …, "created": …}`.
    ///
    /// The event is the JSON that Amazon Cognito hands its post-confirmation
    /// trigger. Only `request.userAttributes` is read: `name` becomes the
    /// display name, `email` the email, `preferred_username` the handle and
    /// `sub` the identity-provider subject; each must be a non-blank string.
    /// Every other key is ignored. A second event with the same `sub`
    /// creates nothing and prints the existing user with `"created": false`;
    /// a handle that belongs to another `sub` is refused.
    #[command(after_long_help = EVENT_EXAMPLE)]
    Confirm(ConfirmArgs),
}

/// The example event of `user confirm --help` (and of the CLI's README).
pub const EVENT_EXAMPLE: &str = r#"Example event (the keys outside request.userAttributes may be left out):
  {
    "version": "1",
    "triggerSource": "PostConfirmation_ConfirmSignUp",
    "region": "us-east-1",
    "userPoolId": "us-east-1_EXAMPLE",
    "userName": "annlee",
    "request": {
      "userAttributes": {
        "sub": "4f9a1c2e-8b7d-4e3f-a6b5-0c1d2e3f4a5b",
        "email": "ann@example.com",
        "name": "Ann Lee",
        "preferred_username": "annlee"
      }
    },
    "response": {}
  }

  cruddur-db user confirm --event event.json
  cat event.json | cruddur-db user confirm --event -"#;

/// Options of `user confirm`.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The event JSON: a file, or `-` for stdin (format below).
    #[arg(long, value_name = "FILE")]
    pub event: String,
}

/// Runs `user`.
pub fn run(
    command: UserCommand,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let UserCommand::Confirm(args) = command;
    let text = read_input(&args.event, "event")?;
    let event = PostConfirmationEvent::parse(&text).context("user not confirmed")?;
    let target = Target::resolve(db, settings)?;
    let repo = target.repository()?;
    repo.read(Consistency::Primary, ensure_current)
        .context("user not confirmed")?;
    let (confirmed, _) = repo.confirm_user(&event).context("user not confirmed")?;
    output::json(&confirmed)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_event_in_the_help_is_accepted() {
        let json: String = EVENT_EXAMPLE
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .collect();
        let event = PostConfirmationEvent::parse(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(event.preferred_username, "annlee");
        assert_eq!(event.name, "Ann Lee");
        let squeeze = |t: &str| t.split_whitespace().collect::<String>();
        assert!(
            squeeze(include_str!("../README.md")).contains(&squeeze(&json)),
            "the README shows another example event than --help"
        );
    }
}
