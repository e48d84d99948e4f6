//! The environment variables the service reads (besides the library's,
//! which choose its database). Read them through [`cruddur_db::Settings`].
//!
//! | variable | meaning |
//! |---|---|
//! | `CRUDDUR_BIND` | the address (or host name) and port to listen on (default `127.0.0.1:4567`; `--bind` wins) |
//! | `FRONTEND_URL` | an origin CORS admits: the frontend's (default none) |
//! | `BACKEND_URL` | an origin CORS admits: the backend's own (default none) |
//! | `AWS_COGNITO_USER_POOL_ID` | verify Cognito tokens of this user pool; its JWKS URL and issuer follow from it |
//! | `AWS_COGNITO_USER_POOL_CLIENT_ID` | the app client tokens must be for (required with token verification) |
//! | `CRUDDUR_JWKS` | instead of the pool: a JWKS file or `https://` URL (any other scheme is refused) |
//! | `CRUDDUR_JWT_ISSUER` | the issuer tokens must carry (default: the user pool's) |
//! | `CRUDDUR_DEV_HANDLE` | without token verification, the handle every post is by (default `andrewbrown`); refused with a JWKS |
//! | `CRUDDUR_DEV_ALLOW_NETWORK` | `1` lets the development mode listen on a non-loopback address (default `0`) |
//! | `CRUDDUR_HEADER_READ_TIMEOUT_MS` | a request head must arrive within this many ms of its first byte, and a post's body as long again (default 10000) |
//! | `CRUDDUR_IDLE_TIMEOUT_MS` | a keep-alive connection idle this many ms is closed (default 60000) |
//! | `CRUDDUR_MAX_CONNECTIONS` | open connections at most; more are closed at once (default 1024) |
//! | `CRUDDUR_SHUTDOWN_DEADLINE_MS` | after SIGTERM, how long requests in flight may take before they are dropped (default 30000) |
//! | `CRUDDUR_SHED_READS_AT` | reads (`GET`) are refused `503` with `Retry-After` while this many database calls wait for the primary (default 128) |
//! | `CRUDDUR_SHED_WRITES_AT` | posts are refused so while this many wait (default 256; at least `CRUDDUR_SHED_READS_AT`) |
//! | `CRUDDUR_METRICS` | `0` turns `GET /metrics` and the request counters off (default `1`) |
//! | `CRUDDUR_ASYNC_PRIMARY` | `0` keeps the primary's reads on its database threads; `1` (default) reads the feed on async connections where the URL allows it (see `cruddur_db::nonblocking`) |
//! | `CRUDDUR_LOG_FORMAT` | `text` (default) or `json`: one JSON object per log line |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the OTLP collector's base URL (`http://localhost:4318`): traces are sent to its `/v1/traces` over HTTP/protobuf; unset, none are |
//! | `OTEL_TRACES_SAMPLER` | which requests are traced: `always_on`, `always_off`, `traceidratio`, or each of them `parentbased_` (default `parentbased_always_on`: as the caller's `traceparent` says, else traced) |
//! | `OTEL_TRACES_SAMPLER_ARG` | the share of traces `traceidratio` keeps, 0 to 1 (default 1) |
//! | `NO_COLOR` | turns the logs' colours off (they are off when stderr is not a terminal) |

use cruddur_db::Variable;

/// Where to listen.
pub const CRUDDUR_BIND: Variable = Variable::new(
    "CRUDDUR_BIND",
    "the address (or host name) and port to listen on (default 127.0.0.1:4567)",
);
/// The frontend's origin, for CORS.
pub const FRONTEND_URL: Variable =
    Variable::new("FRONTEND_URL", "an origin CORS admits: the frontend's");
/// The backend's own origin, for CORS.
pub const BACKEND_URL: Variable =
    Variable::new("BACKEND_URL", "an origin CORS admits: the backend's own");
/// The Cognito user pool whose tokens are verified.
pub const AWS_COGNITO_USER_POOL_ID: Variable = Variable::new(
    "AWS_COGNITO_USER_POOL_ID",
    "verify Cognito tokens of this user pool (<region>_<id>)",
);
/// The app client tokens must be for.
pub const AWS_COGNITO_USER_POOL_CLIENT_ID: Variable = Variable::new(
    "AWS_COGNITO_USER_POOL_CLIENT_ID",
    "the app client tokens must be for",
);
/// A JWKS file or `https://` URL.
pub const CRUDDUR_JWKS: Variable = Variable::new(
    "CRUDDUR_JWKS",
    "a JWKS file or https:// URL, instead of the user pool's",
);
/// The issuer tokens must carry.
pub const CRUDDUR_JWT_ISSUER: Variable = Variable::new(
    "CRUDDUR_JWT_ISSUER",
    "the issuer tokens must carry (default: the user pool's)",
);
/// The development mode's author.
pub const CRUDDUR_DEV_HANDLE: Variable = Variable::new(
    "CRUDDUR_DEV_HANDLE",
    "without token verification, the handle every post is by (default andrewbrown)",
);
/// Lets the development mode listen beyond loopback.
pub const CRUDDUR_DEV_ALLOW_NETWORK: Variable = Variable::new(
    "CRUDDUR_DEV_ALLOW_NETWORK",
    "1 lets the development mode listen on a non-loopback address (default 0)",
);
/// The bound on a request head, in milliseconds.
pub const CRUDDUR_HEADER_READ_TIMEOUT_MS: Variable = Variable::new(
    "CRUDDUR_HEADER_READ_TIMEOUT_MS",
    "ms a request head may take from its first byte, and a body as long again (default 10000)",
);
/// The bound on an idle connection, in milliseconds.
pub const CRUDDUR_IDLE_TIMEOUT_MS: Variable = Variable::new(
    "CRUDDUR_IDLE_TIMEOUT_MS",
    "ms a keep-alive connection may stay idle (default 60000)",
);
/// The cap on open connections.
pub const CRUDDUR_MAX_CONNECTIONS: Variable = Variable::new(
    "CRUDDUR_MAX_CONNECTIONS",
    "open connections at most (default 1024)",
);
/// The graceful shutdown's deadline, in milliseconds.
pub const CRUDDUR_SHUTDOWN_DEADLINE_MS: Variable = Variable::new(
    "CRUDDUR_SHUTDOWN_DEADLINE_MS",
    "ms requests in flight may take after SIGTERM (default 30000)",
);
/// The queue length at which reads are refused.
pub const CRUDDUR_SHED_READS_AT: Variable = Variable::new(
    "CRUDDUR_SHED_READS_AT",
    "reads are refused (503, Retry-After) while this many database calls wait (default 128)",
);
/// The queue length at which writes are refused.
pub const CRUDDUR_SHED_WRITES_AT: Variable = Variable::new(
    "CRUDDUR_SHED_WRITES_AT",
    "posts are refused (503, Retry-After) while this many database calls wait (default 256)",
);
/// Turns the metrics off.
pub const CRUDDUR_METRICS: Variable = Variable::new(
    "CRUDDUR_METRICS",
    "0 turns GET /metrics and the request counters off (default 1)",
);
/// Turns the async primary off.
pub const CRUDDUR_ASYNC_PRIMARY: Variable = Variable::new(
    "CRUDDUR_ASYNC_PRIMARY",
    "0 keeps the primary's reads on its database threads; 1 (default) reads the feed on async connections where the URL allows it",
);
/// The log lines' format.
pub const CRUDDUR_LOG_FORMAT: Variable = Variable::new(
    "CRUDDUR_LOG_FORMAT",
    "text (default) or json: one JSON object per log line",
);
/// The OTLP collector's base URL.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: Variable = Variable::new(
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "the OTLP collector's base URL; traces go to its /v1/traces (default: no traces)",
);
/// Which requests are traced.
pub const OTEL_TRACES_SAMPLER: Variable = Variable::new(
    "OTEL_TRACES_SAMPLER",
    "which requests are traced: always_on, always_off, traceidratio, or parentbased_ and one of them (default parentbased_always_on)",
);
/// The ratio of a `traceidratio` sampler.
pub const OTEL_TRACES_SAMPLER_ARG: Variable = Variable::new(
    "OTEL_TRACES_SAMPLER_ARG",
    "the share of traces traceidratio keeps, 0 to 1 (default 1)",
);
/// Turns the logs' colours off (the <https://no-color.org> convention).
pub const NO_COLOR: Variable = Variable::new("NO_COLOR", "turns the logs' colours off");

/// Every variable the service reads.
pub const VARIABLES: &[Variable] = &[
    CRUDDUR_BIND,
    FRONTEND_URL,
    BACKEND_URL,
    AWS_COGNITO_USER_POOL_ID,
    AWS_COGNITO_USER_POOL_CLIENT_ID,
    CRUDDUR_JWKS,
    CRUDDUR_JWT_ISSUER,
    CRUDDUR_DEV_HANDLE,
    CRUDDUR_DEV_ALLOW_NETWORK,
    CRUDDUR_HEADER_READ_TIMEOUT_MS,
    CRUDDUR_IDLE_TIMEOUT_MS,
    CRUDDUR_MAX_CONNECTIONS,
    CRUDDUR_SHUTDOWN_DEADLINE_MS,
    CRUDDUR_SHED_READS_AT,
    CRUDDUR_SHED_WRITES_AT,
    CRUDDUR_METRICS,
    CRUDDUR_ASYNC_PRIMARY,
    CRUDDUR_LOG_FORMAT,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
    NO_COLOR,
];

#[cfg(test)]
mod tests {
    use super::VARIABLES;

    /// The module docs and `.env.sample` name every variable.
    #[test]
    fn every_variable_is_documented() {
        let docs = include_str!("variables.rs");
        let sample = include_str!("../../../.env.sample");
        for var in VARIABLES {
            assert!(
                docs.contains(&format!("//! | `{}` |", var.name())),
                "{var}: module docs"
            );
            assert!(
                sample.contains(&format!("\n#{}=", var.name())),
                "{var}: .env.sample"
            );
        }
    }
}
