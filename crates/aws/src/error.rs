//! The AWS toolkit's errors.

/// Result with the AWS toolkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A cause from the AWS SDK or the HTTP stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong provisioning, inspecting or auditing RDS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The AWS environment is incomplete (no region, no credentials).
    #[error("AWS is not configured: {0}")]
    Config(String),
    /// No region was found in the standard chain (`AWS_REGION`, the
    /// profile's `region`) or given in [`AwsOptions`](crate::AwsOptions).
    #[error("AWS is not configured: no region: set AWS_REGION or a profile's region")]
    NoRegion,
    /// An AWS API call failed.
    #[error("AWS {operation} failed{}: {message}", .code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        /// The API operation, e.g. `CreateDBInstance`.
        operation: String,
        /// The service's error code, when it sent one.
        code: Option<String>,
        /// The service's explanation.
        message: String,
        /// The SDK's error, when the failure came from the SDK.
        #[source]
        source: Option<BoxError>,
    },
    /// A safety rule refused the operation; nothing was changed.
    #[error("refusing to {action}: {reason}")]
    Refused {
        /// What was asked for.
        action: String,
        /// Why it is refused.
        reason: String,
        /// The step that gets past the refusal, when there is one.
        remedy: Option<Remedy>,
    },
    /// An operation did its work, but the result lacks what was asked for.
    #[error(
        "{what} was created but lacks what was asked for: {}; fix it with `aws rds \
         modify-db-instance` or delete it",
        .problems.join("; ")
    )]
    Incomplete {
        /// What was created, e.g. ``the read replica `x` ``.
        what: String,
        /// What it lacks, one item each.
        problems: Vec<String>,
        /// The step that lists the fixes.
        remedy: Remedy,
    },
    /// A value given for an AWS operation is not acceptable.
    #[error("invalid {what} `{input}`: {reason}")]
    InvalidInput {
        /// What the value is (an IP address, an identifier, ...).
        what: &'static str,
        /// The value given (cut to 80 characters).
        input: String,
        /// Why it was refused.
        reason: String,
        /// The step that gets past it, when there is one.
        remedy: Option<Remedy>,
    },
    /// An I/O error, with what was being done.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
    /// The data layer failed (a connection string that does not parse).
    #[error(transparent)]
    Db(#[from] cruddur_db::Error),
}

impl Error {
    /// The step that would fix this error, for a front end to name as one of
    /// its commands (the toolkit's messages name none).
    pub fn remedy(&self) -> Option<&Remedy> {
        match self {
            Self::Refused { remedy, .. } => remedy.as_ref(),
            Self::InvalidInput { remedy, .. } => remedy.as_ref(),
            Self::Incomplete { remedy, .. } => Some(remedy),
            Self::NoRegion => Some(&Remedy::NameARegion),
            _ => None,
        }
    }
}

/// A step that gets past a refusal or finishes what an operation left
/// undone. The toolkit states what failed; a front end such as the CLI
/// words the step as one of its own commands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remedy {
    /// Name a security group whose inbound rule for the database port
    /// admits one address.
    NameASecurityGroup,
    /// Point the inbound rules for the port that admit more than one
    /// address at one address.
    PointRulesAtOneAddress,
    /// Add an inbound rule for one address on the port to one of the
    /// security groups.
    AddARuleForOneAddress,
    /// Create the instance `identifier`, or name another one.
    CreateInstance {
        /// The instance that does not exist.
        identifier: String,
    },
    /// Audit the instance `identifier`: the audit lists what it lacks and
    /// the fixes.
    Audit {
        /// The instance to audit.
        identifier: String,
    },
    /// Build the URL of the read replica `identifier` (from its source's
    /// credentials) instead of a primary's.
    ReplicaUrl {
        /// The read replica.
        identifier: String,
    },
    /// Build the instance's own URL: it is not a read replica.
    PrimaryUrl {
        /// The instance.
        identifier: String,
    },
    /// Name the region to talk to.
    NameARegion,
    /// Name no rule, so that one is added for the address.
    OmitTheRule,
    /// Name one of the group's rules for the port.
    NameARule,
    /// Replicate the primary `identifier` instead of its replica.
    ReplicateThePrimary {
        /// The primary.
        identifier: String,
    },
    /// Name the new read replica.
    NameTheReplica,
    /// Put the proxy in front of the primary `identifier` instead of its
    /// replica.
    ProxyThePrimary {
        /// The primary.
        identifier: String,
    },
}
