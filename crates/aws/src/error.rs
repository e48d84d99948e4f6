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
        /// Why it is refused, and what to do instead.
        reason: String,
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
