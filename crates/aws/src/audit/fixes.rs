//! How a failure is fixed: a [`Fix`] is text with the toolkit's
//! [`Operation`]s between its parts, for a front end to word as its own
//! commands; an [`AutoFix`] is one that `audit --fix` may apply.

use std::fmt;

use super::ROTATION_DAYS;

/// A fix `audit --fix` may apply: safe, and undone by one call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AutoFix {
    /// Take a manual snapshot of the instance.
    CreateSnapshot {
        /// The instance.
        identifier: String,
    },
    /// Create (or enable) a GuardDuty detector in the region.
    EnableGuardDuty,
    /// Turn deletion protection on.
    EnableDeletionProtection {
        /// The instance.
        identifier: String,
    },
    /// Make the production instance Multi-AZ.
    EnableMultiAz {
        /// The instance.
        identifier: String,
    },
    /// Turn on rotation of the master secret, every [`ROTATION_DAYS`] days,
    /// without rotating at once.
    EnableRotation {
        /// The secret.
        secret_arn: String,
    },
}

impl fmt::Display for AutoFix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutoFix::CreateSnapshot { identifier } => write!(
                f,
                "take a manual snapshot of {identifier} (storage is billed; undo: delete the snapshot)"
            ),
            AutoFix::EnableGuardDuty => f.write_str(
                "enable a GuardDuty detector in this region (billed by volume analysed, 30 days \
                 free; undo: aws guardduty delete-detector)",
            ),
            AutoFix::EnableDeletionProtection { identifier } => write!(
                f,
                "turn deletion protection on for {identifier} (free; undo: modify-db-instance \
                 --no-deletion-protection)"
            ),
            AutoFix::EnableMultiAz { identifier } => write!(
                f,
                "make {identifier} Multi-AZ (doubles the instance's cost; no downtime; undo: \
                 modify-db-instance --no-multi-az)"
            ),
            AutoFix::EnableRotation { secret_arn } => write!(
                f,
                "rotate {secret_arn} every {ROTATION_DAYS} days, starting at the next window \
                 (each rotation changes the master password, and so the connection URL \
                 stored with it; undo: aws secretsmanager cancel-rotation)"
            ),
        }
    }
}

impl AutoFix {
    /// What to do after the fix takes effect, when anything: a rotation
    /// changes the master password, so a stored connection URL must be
    /// built again.
    pub fn afterwards(&self) -> Option<Operation> {
        match self {
            AutoFix::EnableRotation { .. } => Some(Operation::StoreUrlAgain),
            AutoFix::CreateSnapshot { .. }
            | AutoFix::EnableGuardDuty
            | AutoFix::EnableDeletionProtection { .. }
            | AutoFix::EnableMultiAz { .. } => None,
        }
    }
}

/// One of the toolkit's own operations, with its parameters, as a step of
/// a [`Fix`]. The toolkit does not name commands: a front end such as the
/// CLI words each as one of its own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Operation {
    /// Take a manual snapshot of the instance ([`crate::create_snapshot`]).
    Snapshot {
        /// The instance.
        identifier: String,
    },
    /// Delete the instance ([`crate::delete_instance`]), which takes a
    /// final snapshot.
    Delete {
        /// The instance.
        identifier: String,
    },
    /// Point the inbound rule at this machine's public address
    /// ([`crate::allow_ip`]).
    AllowIp {
        /// The security group.
        group_id: String,
        /// The rule to change.
        rule_id: String,
    },
    /// Write the SCP that keeps practice 10 for the instance
    /// ([`crate::scp::template`]), for the allowed regions.
    ScpTemplate {
        /// The production instance.
        identifier: String,
    },
    /// Audit again, naming the regions the data may be stored in
    /// ([`AuditOptions::allowed_regions`](super::AuditOptions::allowed_regions)).
    NameAllowedRegions,
    /// Audit again with a shorter idle window ([`AuditOptions::idle_days`](super::AuditOptions::idle_days)).
    ShorterIdleWindow,
    /// Audit again, reading Organizations with the credentials of the
    /// management account or a delegated administrator
    /// ([`crate::JsonApiClient::with_credentials`]).
    OrganizationsCredentials,
    /// Build and store the connection URL again ([`crate::production_url`]).
    StoreUrlAgain,
}

impl fmt::Display for Operation {
    /// The operation in words, naming no command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Snapshot { identifier } => {
                write!(f, "take a manual snapshot of {identifier}")
            }
            Operation::Delete { identifier } => write!(f, "delete {identifier}"),
            Operation::AllowIp { group_id, rule_id } => write!(
                f,
                "point rule {rule_id} of {group_id} at this machine's public address"
            ),
            Operation::ScpTemplate { identifier } => write!(
                f,
                "write the SCP template for {identifier} and the allowed regions to scp.json"
            ),
            Operation::NameAllowedRegions => f.write_str("name the allowed regions"),
            Operation::ShorterIdleWindow => f.write_str("audit with a shorter idle window"),
            Operation::OrganizationsCredentials => {
                f.write_str("read Organizations with that account's credentials")
            }
            Operation::StoreUrlAgain => f.write_str("store the connection URL again"),
        }
    }
}

/// One part of a [`Fix`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixPart {
    /// Words, or a command of AWS's own CLI (`aws rds ...`), shown as they
    /// are.
    Text(String),
    /// One of the toolkit's operations, for the front end to word.
    Operation(Operation),
}

/// How to fix a failure, or what would tell an unknown: text with the
/// toolkit's [`Operation`]s between its parts. Empty for a pass or
/// information. [`Fix::render`] words it with a front end's commands;
/// `Display` words the operations without naming any.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Fix(Vec<FixPart>);

impl Fix {
    /// A fix that is words only.
    pub fn text(text: impl Into<String>) -> Self {
        Self(Vec::new()).then_text(text)
    }

    /// A fix that starts with an operation.
    pub fn operation(operation: Operation) -> Self {
        Self(Vec::new()).then(operation)
    }

    /// This fix, then `text` (empty text adds nothing).
    pub fn then_text(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        if !text.is_empty() {
            self.0.push(FixPart::Text(text));
        }
        self
    }

    /// This fix, then `operation`.
    pub fn then(mut self, operation: Operation) -> Self {
        self.0.push(FixPart::Operation(operation));
        self
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[FixPart] {
        &self.0
    }

    /// The toolkit operations the fix names, in order.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.0.iter().filter_map(|p| match p {
            FixPart::Operation(o) => Some(o),
            FixPart::Text(_) => None,
        })
    }

    /// The fix as one text, each operation worded by `word` (a front end's
    /// command for it).
    pub fn render(&self, mut word: impl FnMut(&Operation) -> String) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                FixPart::Text(t) => out.push_str(t),
                FixPart::Operation(o) => out.push_str(&word(o)),
            }
        }
        out
    }
}

impl From<&str> for Fix {
    fn from(text: &str) -> Self {
        Fix::text(text)
    }
}

impl From<String> for Fix {
    fn from(text: String) -> Self {
        Fix::text(text)
    }
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(ToString::to_string))
    }
}
