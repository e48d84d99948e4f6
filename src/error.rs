//! The library's one error type.
//!
//! Every variant that concerns a connection names the database by its
//! redacted URL; no variant ever holds a password.

use std::fmt;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `cruddur_db`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The async primary ([`crate::nonblocking`], feature `async`) does
    /// not serve this: the URL or pooler is one it declines, or a
    /// connection reached another server than the primary's. Read on the
    /// synchronous primary instead.
    #[error("the async primary is off: {reason}")]
    AsyncPrimaryOff {
        /// Why.
        reason: String,
    },
    /// No variable named a database.
    #[error("no database configured: set {variables} in the environment or in a .env file")]
    MissingUrl {
        /// The variables that were looked at.
        variables: &'static str,
    },
    /// No variable named a database and no server answered at the default
    /// URL ([`crate::resolve`](mod@crate::resolve)); a caller with a server of its own may use
    /// that instead (`cruddur-db-local` starts the project's cluster).
    #[error(
        "no database configured (DATABASE_URL, CONNECTION_URL) and nothing answers at {default}"
    )]
    NothingAnswers {
        /// The default URL that was tried, redacted.
        default: String,
        /// The database the default URL names, if it names one.
        database: Option<String>,
        /// Why it did not answer.
        #[source]
        cause: Box<Error>,
    },
    /// The connection string could not be understood.
    #[error("invalid database URL{}: {reason}", if .url.is_empty() { String::new() } else { format!(" `{}`", .url) })]
    InvalidUrl {
        /// The URL, redacted; empty when libpq could not parse it (such a
        /// string is never echoed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `.env` file could not be read or has a line that does not parse;
    /// nothing from it was applied.
    #[error("cannot use {}{}: nothing from it was applied (the line is not shown, as it may hold a password)", .path.display(), .line.map(|l| format!(", line {l} does not parse")).unwrap_or_else(|| " (unreadable)".into()))]
    DotEnv {
        /// The file.
        path: std::path::PathBuf,
        /// The 1-based line that does not parse, when known.
        line: Option<usize>,
    },
    /// A `.env` file that another user could have written (it belongs to
    /// neither the current user nor root, or its group or others may
    /// write it); nothing from it was applied.
    #[error("not reading {}: {reason}; nothing from it was applied", .path.display())]
    DotEnvUnsafe {
        /// The file.
        path: std::path::PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// The pool was built for a server or a session pooler, and found a
    /// transaction pooler in front (PgBouncer's transaction mode, RDS
    /// Proxy): named statements and session settings would break there.
    #[error(
        "{url} is behind a transaction pooler (its server process changes between transactions): \
         set CRUDDUR_POOLER=transaction, and DATABASE_DIRECT_URL to the server itself for migrations"
    )]
    TransactionPooler {
        /// The URL (password hidden).
        url: String,
    },
    /// Something that needs a session was asked for behind a transaction
    /// pooler, with no direct URL configured.
    #[error(
        "{what} needs a session of its own, which a transaction pooler does not keep \
         (CRUDDUR_POOLER=transaction): set {variable} to the database without the pooler"
    )]
    NeedsDirectUrl {
        /// What was asked for.
        what: &'static str,
        /// The variable that holds the direct URL.
        variable: &'static str,
    },
    /// The direct URL and the pooled URL reach different databases.
    #[error(
        "the direct URL {direct_url} and the pooled URL {pooled_url} reach different databases \
         ({reached}): both must name the same database"
    )]
    DirectUrlMismatch {
        /// The direct URL (password hidden).
        direct_url: String,
        /// The pooled URL (password hidden).
        pooled_url: String,
        /// What each reached, e.g. "`a` on port 5432, `b` on port 5432".
        reached: String,
    },
    /// A setting from the environment has a bad value.
    #[error("invalid value `{value}` for {name}: {reason}")]
    InvalidSetting {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The server could not be reached (refused, unknown host, timed out).
    #[error("cannot reach the database server for {url}: {message}")]
    Unreachable {
        /// The URL, redacted.
        url: String,
        /// libpq's explanation.
        message: String,
    },
    /// The server refused the credentials.
    #[error("authentication failed for {url}: {message}")]
    Authentication {
        /// The URL, redacted.
        url: String,
        /// The server's explanation.
        message: String,
    },
    /// The server answered, but the database does not exist.
    #[error("database `{database}` does not exist on the server of {url}")]
    DatabaseMissing {
        /// The URL, redacted.
        url: String,
        /// The database that is missing.
        database: String,
    },
    /// TLS could not be set up or the server's certificate was not trusted
    /// (wrong CA, host name mismatch, server without TLS under `sslmode=require`).
    #[error("TLS failure connecting to {url}: {message}")]
    Tls {
        /// The URL, redacted.
        url: String,
        /// libpq's explanation.
        message: String,
    },
    /// Any other connection failure.
    #[error("cannot connect to {url}: {message}")]
    Connection {
        /// The URL, redacted.
        url: String,
        /// libpq's explanation.
        message: String,
    },
    /// No pooled connection became free within the checkout timeout.
    #[error("no database connection available within {timeout_ms} ms (pool of {pool_size}){}; nothing was sent, so it can be retried", .last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    PoolTimeout {
        /// The checkout timeout.
        timeout_ms: u128,
        /// The pool's maximum size.
        pool_size: u32,
        /// The last connection error the pool saw, if any (scrubbed).
        last_error: Option<String>,
    },
    /// A statement ran longer than the statement timeout and was cancelled.
    #[error("statement cancelled after exceeding the statement timeout")]
    StatementTimeout(#[source] diesel::result::Error),
    /// A query failed.
    #[error("database error")]
    Query(#[source] diesel::result::Error),
    /// The connection to the primary was lost before a write's `COMMIT`
    /// was sent: the server rolls the transaction back, so nothing was
    /// written, and the write can be retried (on a new connection: through
    /// a multi-host URL, to the new primary after a failover).
    #[error(
        "the connection to {url} was lost before the write was committed: nothing was written, so it can be retried"
    )]
    ConnectionLost {
        /// The primary's URL, redacted.
        url: String,
        /// How the connection was lost.
        #[source]
        source: diesel::result::Error,
    },
    /// The connection to the primary was lost after a write's `COMMIT` was
    /// sent and before its answer came: the write may or may not have been
    /// committed (the server may have died before or after it made the
    /// commit durable). Unlike a failure, it is not safe to retry blindly:
    /// look for the write first, or retry with an idempotency key.
    #[error(
        "the outcome of the write on {url} is unknown: the connection was lost after COMMIT was sent, so it may or may not have been committed; check for it before retrying"
    )]
    OutcomeUnknown {
        /// The primary's URL, redacted.
        url: String,
        /// How the connection was lost.
        #[source]
        source: diesel::result::Error,
    },
    /// The database server could not write for lack of disk space
    /// (SQLSTATE 53100, `disk_full`: "could not extend file …: No space
    /// left on device"). The statement failed and its transaction was
    /// rolled back, so nothing was written and the write can be retried,
    /// but only once space is freed: an immediate retry fails the same
    /// way. Reads go on.
    #[error(
        "the database server's disk is full: nothing was written; the write can be retried once space is freed on the server (retrying at once fails the same way)"
    )]
    DiskFull(#[source] diesel::result::Error),
    /// Applying or reading migrations failed.
    #[error("migration failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The operation needs an up-to-date schema.
    #[error("{count} migration(s) pending ({names})")]
    PendingMigrations {
        /// How many are pending.
        count: usize,
        /// Their names, comma-separated.
        names: String,
    },
    /// Input failed validation; nothing was written.
    #[error("invalid input: {}", ValidationError::codes(.0))]
    Validation(Vec<ValidationError>),
    /// No user has this handle.
    #[error("user not found: no user has the handle `{handle}`")]
    UserNotFound {
        /// The handle that was looked up.
        handle: String,
    },
    /// No activity has this uuid.
    #[error("activity not found: {uuid}")]
    ActivityNotFound {
        /// The uuid that was looked up.
        uuid: uuid::Uuid,
    },
    /// The handle belongs to another identity-provider subject.
    #[error("the handle `{handle}` is taken by another user")]
    HandleTaken {
        /// The handle.
        handle: String,
    },
    /// A synthetic seed with this random seed is already in the database.
    #[error(
        "the synthetic seed with random seed {rng_seed} is already loaded; nothing was written (another random seed adds a fresh batch)"
    )]
    SeedAlreadyLoaded {
        /// The random seed.
        rng_seed: u64,
    },
    /// A post-confirmation event could not be used.
    #[error("invalid post-confirmation event: {reason}")]
    InvalidEvent {
        /// What is wrong with it, or what was expected.
        reason: String,
        /// The JSON parser's error, when the event is not the JSON expected.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// An `Idempotency-Key` that is not 1 to 255 visible ASCII characters.
    #[error("invalid idempotency key: {reason}")]
    InvalidIdempotencyKey {
        /// What is wrong with it.
        reason: String,
    },
    /// An idempotency key already used, within its lifetime, for another
    /// post (another message or ttl); nothing was written.
    #[error(
        "the idempotency key `{key}` was used for another post; nothing was written (a new post needs a new key)"
    )]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
    /// A page size outside 1..=100.
    #[error("invalid page size {limit}: it must be between 1 and {max}")]
    InvalidPageSize {
        /// The size asked for.
        limit: i64,
        /// The largest allowed.
        max: i64,
    },
    /// A feed cursor could not be decoded.
    #[error("invalid feed cursor `{input}`: {reason}")]
    InvalidCursor {
        /// The cursor given (cut to 80 characters).
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A write token could not be read.
    #[error(
        "invalid write token `{input}`: {reason} (expected a WAL position, timeline and system identifier such as `0/16B3748.1.7714726817598851214`)"
    )]
    InvalidToken {
        /// The text given (cut to 40 characters).
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// The primary's identity (system identifier and timeline), which every
    /// write token carries, could not be read.
    #[error("cannot read the primary's identity for a write token: {reason}")]
    UnknownIdentity {
        /// Why (e.g. the role may not execute `pg_control_system()`).
        reason: String,
    },
    /// A statement that writes ran on a read replica, whose sessions are
    /// read-only: writes go through the router's `write`.
    #[error(
        "a write was sent to the read replica {url}, whose sessions are read-only; nothing was written (writes must go to the primary)"
    )]
    WriteOnReplica {
        /// The replica's URL, redacted.
        url: String,
        /// The server's refusal.
        #[source]
        source: diesel::result::Error,
    },
    /// A safety rule refused the operation; nothing was changed.
    #[error("refusing to {action}: {reason}")]
    Refused {
        /// What was asked for.
        action: String,
        /// Why it is refused, and what to do instead.
        reason: String,
    },
    /// An I/O error with what was being done.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match &e {
            // SQLSTATE 57014 (query_canceled) is how a statement timeout ends.
            D::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("statement timeout") =>
            {
                Error::StatementTimeout(e)
            }
            // SQLSTATE 53100 (disk_full), which Diesel does not expose:
            // the server's message ends with strerror(ENOSPC) and carries
            // this hint.
            D::DatabaseError(_, info)
                if info.message().contains("No space left on device")
                    || info.hint() == Some("Check free disk space.") =>
            {
                Error::DiskFull(e)
            }
            _ => Error::Query(e),
        }
    }
}

/// One failed validation rule, with the original application's error code
/// (the codes the original did not have are named the same way).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationError {
    /// The message is empty or only whitespace.
    MessageBlank,
    /// A post's message is longer than 280 characters.
    MessageExceedMaxChars,
    /// A reply's message is longer than 1,024 characters.
    #[serde(rename = "message_exceed_max_chars_1024")]
    MessageExceedMaxChars1024,
    /// The handle is empty.
    UserHandleBlank,
    /// The ttl is not one of the allowed values.
    TtlBlank,
    /// The message contains a NUL character, which PostgreSQL text cannot hold.
    MessageContainsNul,
    /// The uuid of the activity replied to is empty.
    ActivityUuidBlank,
    /// The uuid of the activity replied to is not a uuid.
    ActivityUuidInvalid,
    /// The display name is empty or only whitespace.
    DisplayNameBlank,
    /// The display name is longer than
    /// [`MAX_DISPLAY_NAME_CHARS`](crate::repo::profiles::MAX_DISPLAY_NAME_CHARS).
    DisplayNameExceedMaxChars,
    /// The display name contains a NUL character.
    DisplayNameContainsNul,
    /// The bio is longer than [`MAX_BIO_CHARS`](crate::repo::profiles::MAX_BIO_CHARS).
    BioExceedMaxChars,
    /// The bio contains a NUL character.
    BioContainsNul,
}

impl ValidationError {
    /// The error code, as the original application named it.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::MessageBlank => "message_blank",
            ValidationError::MessageExceedMaxChars => "message_exceed_max_chars",
            ValidationError::MessageExceedMaxChars1024 => "message_exceed_max_chars_1024",
            ValidationError::UserHandleBlank => "user_handle_blank",
            ValidationError::TtlBlank => "ttl_blank",
            ValidationError::MessageContainsNul => "message_contains_nul",
            ValidationError::ActivityUuidBlank => "activity_uuid_blank",
            ValidationError::ActivityUuidInvalid => "activity_uuid_invalid",
            ValidationError::DisplayNameBlank => "display_name_blank",
            ValidationError::DisplayNameExceedMaxChars => "display_name_exceed_max_chars",
            ValidationError::DisplayNameContainsNul => "display_name_contains_nul",
            ValidationError::BioExceedMaxChars => "bio_exceed_max_chars",
            ValidationError::BioContainsNul => "bio_contains_nul",
        }
    }

    fn codes(errors: &[ValidationError]) -> String {
        errors
            .iter()
            .map(|e| e.code())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Error {
    /// Whether the operation failed without taking effect, for a reason
    /// that may pass (the server is down, restarting or failing over, the
    /// pool had no connection free, the connection was lost before the
    /// write's `COMMIT` was sent, the server became a read-only standby,
    /// the server's disk is full): trying again later, on a new
    /// connection, is safe. False for
    /// [`Error::OutcomeUnknown`] (the write may have taken effect), for bad
    /// input and for refusals.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. }
            | Error::PoolTimeout { .. }
            | Error::ConnectionLost { .. }
            | Error::DiskFull(_) => true,
            Error::Query(e) => {
                crate::replica::positions::connection_lost(e)
                    || crate::replica::positions::read_only_server(e)
            }
            _ => false,
        }
    }

    /// The validation codes, when this is a validation error.
    pub fn validation_codes(&self) -> Vec<&'static str> {
        match self {
            Error::Validation(errors) => errors.iter().map(|e| e.code()).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ValidationError as V;

    #[test]
    fn the_servers_disk_full_error_is_disk_full_and_retryable() {
        use diesel::result::{DatabaseErrorKind, Error as D};
        // What PostgreSQL 15 says when a table cannot grow (SQLSTATE 53100).
        let e: super::Error = D::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(
                "could not extend file \"pg_tblspc/16384/PG_15_202209061/16385/16400\": No space left on device"
                    .to_owned(),
            ),
        )
        .into();
        assert!(matches!(e, super::Error::DiskFull(_)), "{e:?}");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("disk is full"), "{e}");
        let other: super::Error = D::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("division by zero".to_owned()),
        )
        .into();
        assert!(matches!(other, super::Error::Query(_)), "{other:?}");
    }

    #[test]
    fn each_code_serializes_as_itself() {
        for error in [
            V::MessageBlank,
            V::MessageExceedMaxChars,
            V::MessageExceedMaxChars1024,
            V::UserHandleBlank,
            V::TtlBlank,
            V::MessageContainsNul,
            V::ActivityUuidBlank,
            V::ActivityUuidInvalid,
            V::DisplayNameBlank,
            V::DisplayNameExceedMaxChars,
            V::DisplayNameContainsNul,
            V::BioExceedMaxChars,
            V::BioContainsNul,
        ] {
            let json = serde_json::to_string(&error).unwrap();
            assert_eq!(json, format!("\"{}\"", error.code()), "{error:?}");
        }
        assert_eq!(
            V::MessageExceedMaxChars1024.code(),
            "message_exceed_max_chars_1024"
        );
    }
}
