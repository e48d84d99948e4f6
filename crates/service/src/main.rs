//! `cruddur-db-service`: Cruddur's activity API over HTTP.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use cruddur_db::admin::{DatabaseIdentity, identify, identify_at};
use cruddur_db::nonblocking::AsyncPrimary;
use cruddur_db::{
    Consistency, DatabaseUrl, Environment, Repository, Settings, pending_migrations, prepare_for,
    read_mark,
};
use cruddur_db_local::{Fallback, resolve};
use cruddur_db_service::access::AccessLog;
use cruddur_db_service::logs::LogGuard;
use cruddur_db_service::settings::{AuthSettings, LogFormat, log_format};
use cruddur_db_service::telemetry::Telemetry;
use cruddur_db_service::{AppState, Auth, ServiceSettings, Stopped, app, serve, shutdown_signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Serves Cruddur's PostgreSQL API (the home feed, posting and replying,
/// users' pages and profiles; its OpenAPI document at `/api/openapi.json`)
/// from the database of `DATABASE_URL`, else the zero-setup database of
/// the example.
///
/// Authors come from Cognito tokens verified against `CRUDDUR_JWKS` (or the
/// user pool of `AWS_COGNITO_USER_POOL_ID`); without either, every post is
/// by `CRUDDUR_DEV_HANDLE` (default andrewbrown), unverified. Stops on
/// Ctrl-C or SIGTERM after answering the requests in flight, or at the
/// shutdown deadline (`CRUDDUR_SHUTDOWN_DEADLINE_MS`).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address (or host name) and port to listen on [default:
    /// CRUDDUR_BIND, else 127.0.0.1:4567]
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_bind)]
    bind: Option<SocketAddr>,
    /// Print the API's OpenAPI document (as served at
    /// `/api/openapi.json`) and exit, without a database
    #[arg(long)]
    openapi: bool,
}

fn parse_bind(value: &str) -> Result<SocketAddr, String> {
    cruddur_db_service::settings::resolve_bind(value).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.openapi {
        print!("{}", cruddur_db_service::openapi::document_json());
        return ExitCode::SUCCESS;
    }
    match Settings::from_env()
        .map_err(anyhow::Error::from)
        .and_then(|settings| Ok((log_format(&settings)?, settings)))
        .and_then(|(format, settings)| {
            let (logs, traces, access) = init_logs(&settings, format)?;
            let result = run(args, &settings, access);
            // The spans still batched are sent, and the log lines still
            // queued come out, before the last word.
            drop(traces);
            drop(logs);
            result
        }) {
        Ok(Stopped::Drained) => {
            eprintln!("stopped: every request in flight was answered");
            ExitCode::SUCCESS
        }
        Ok(Stopped::Deadline(open)) => {
            eprintln!(
                "stopped: {open} connection(s) still open at the shutdown deadline were dropped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}{}", hint(&e));
            ExitCode::FAILURE
        }
    }
}

/// What to do about a database that is not ready, for the errors that
/// have a remedy.
fn hint(error: &anyhow::Error) -> &'static str {
    match error.downcast_ref::<cruddur_db::Error>() {
        Some(cruddur_db::Error::DatabaseMissing { .. }) => {
            " (create and migrate it with `cruddur-db prepare`, or `cargo run -- prepare` in this repository)"
        }
        _ => "",
    }
}

/// Request logs on stderr, filtered by `RUST_LOG` (default `info`), in
/// colour only on a terminal and without `NO_COLOR`. They are written out
/// in batches by a thread of their own
/// ([`cruddur_db_service::logs`]), so that a write that waits (stderr
/// redirected to a file on a busy disk, a slow pipe) does not stall the
/// requests of the worker that logged, and a request's line costs neither
/// a system call nor a thread wake-up. None is dropped: when 16 MiB are
/// queued, workers wait. Without the thread, lines go straight to stderr.
/// With `CRUDDUR_LOG_FORMAT=json` each line is a JSON object, with the
/// request's span (method, path; its trace id with tracing on) beside the
/// event's fields. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans that
/// `RUST_LOG` admits also go out as OTLP traces
/// ([`cruddur_db_service::telemetry`]).
fn init_logs(
    settings: &Settings,
    format: LogFormat,
) -> anyhow::Result<(Option<LogGuard>, Option<Telemetry>, Option<AccessLog>)> {
    let colour = std::io::stderr().is_terminal()
        && !settings.is_set(&cruddur_db_service::variables::NO_COLOR);
    let endpoint = settings
        .get(&cruddur_db_service::variables::OTEL_EXPORTER_OTLP_ENDPOINT)
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let (telemetry, traces) = match endpoint {
        Some(endpoint) => {
            let sampler = cruddur_db_service::telemetry::HeadSampler::from_settings(settings);
            let (telemetry, layer) = Telemetry::start(endpoint, sampler)?;
            // Spans only: a log line is not copied into its span as an
            // OpenTelemetry event (the logs carry the trace id instead);
            // and not the span of a request whose trace is not sampled.
            let spans =
                tracing_subscriber::filter::filter_fn(cruddur_db_service::telemetry::for_traces);
            (Some(telemetry), Some(layer.with_filter(spans)))
        }
        None => (None, None),
    };
    let traced = traces.is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::registry().with(filter).with(traces);
    let (logs, access) = match cruddur_db_service::logs::batched(std::io::stderr()) {
        Ok((writer, guard)) => {
            let access = AccessLog::batched(writer.clone(), format, colour);
            subscriber
                .with(log_layer(writer, colour, format, traced))
                .init();
            (Some(guard), access)
        }
        Err(e) => {
            subscriber
                .with(log_layer(std::io::stderr, colour, format, traced))
                .init();
            tracing::warn!("cannot start the log thread, logging from the workers: {e}");
            (None, AccessLog::stderr(format, colour))
        }
    };
    if let Some(endpoint) = endpoint {
        tracing::info!(endpoint, "sending traces over OTLP");
    }
    // The request lines stand for an `INFO` event of this target: off when
    // `RUST_LOG` leaves it out.
    let access =
        tracing::enabled!(target: cruddur_db_service::access::TARGET, tracing::Level::INFO)
            .then_some(access);
    Ok((logs, telemetry, access))
}

/// The log lines' layer, writing to `writer` in `format` (a generic
/// writer, not a boxed one: a line costs no allocation of its own); with
/// `traced`, without the spans made for traces alone
/// ([`cruddur_db_service::telemetry::for_logs`]: without traces there are
/// none, and no filter is paid for).
fn log_layer<S, W>(
    writer: W,
    colour: bool,
    format: LogFormat,
    traced: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let for_logs = tracing_subscriber::filter::filter_fn(cruddur_db_service::telemetry::for_logs);
    match (format, traced) {
        (LogFormat::Text, false) => layer.with_ansi(colour).boxed(),
        (LogFormat::Text, true) => layer.with_ansi(colour).with_filter(for_logs).boxed(),
        (LogFormat::Json, traced) => {
            let layer = layer.json().with_current_span(true).with_span_list(false);
            if traced {
                layer.with_filter(for_logs).boxed()
            } else {
                layer.boxed()
            }
        }
    }
}

fn run(args: Args, settings: &Settings, access: Option<AccessLog>) -> anyhow::Result<Stopped> {
    let service = ServiceSettings::from_settings(settings, args.bind)?;
    // The example's zero-setup database when none is configured: the local
    // cluster is started if nothing answers at the default URL.
    let resolved = resolve(None, Environment::Development, settings, Fallback::Start)?;
    eprintln!("note: {}", resolved.describe());
    let mut config = resolved.config;
    cruddur_db_service::telemetry::trace_statements(&mut config);
    if let Some(warning) = &config.warning {
        eprintln!("warning: {warning}");
    }
    if resolved.source.is_zero_setup() {
        // The example's database: made ready on first use.
        prepare_for(&config)?;
    }
    let repo = Repository::connect(&config)?;
    if service.allowed_origins.is_empty() {
        eprintln!(
            "note: no CORS origin configured (FRONTEND_URL, BACKEND_URL): browser pages on other origins are refused"
        );
    }
    // What the start-up checks need, read on one connection to the primary.
    let development = matches!(service.auth, AuthSettings::Development { .. });
    let (pending, production_mark, identity) = repo.read(Consistency::Primary, |conn| {
        let pending = pending_migrations(conn)?;
        if !development {
            return Ok((pending, false, None));
        }
        let marked = read_mark(conn)?.is_some_and(|mark| mark.is_production());
        Ok((pending, marked, Some(identify(conn))))
    })?;
    if !pending.is_empty() {
        bail!(
            "{} has {} pending migration(s) ({}); apply them first (`cruddur-db migrate run`, or `cargo run -- migrate run` in this repository)",
            config.database_url,
            pending.len(),
            pending.join(", ")
        );
    }
    if let AuthSettings::Development { handle } = &service.auth {
        if production_mark {
            bail!(
                "refusing the development mode on {}, which is marked production: \
                 configure token verification (CRUDDUR_JWKS or AWS_COGNITO_USER_POOL_ID)",
                config.database_url
            );
        }
        let identity = identity
            .transpose()
            .context("asking the server which database this is")?
            .context("the server's identity was not read")?;
        refuse_the_production_database(settings, &identity, &config.database_url)?;
        announce_development_mode(handle);
    }
    let nonblocking = service
        .async_primary
        .then(|| async_primary(&repo))
        .flatten();
    let auth = Auth::load(&service.auth).context("setting up token verification")?;
    if let Auth::Jwt(verifier) = &auth {
        tracing::info!(?verifier, "posts need a verified token");
    }
    let state = AppState::new(repo, auth)
        .context("starting the database threads")?
        .with_body_timeout(service.transport.header_read_timeout)
        .with_metrics(service.metrics)
        .with_shedding(service.shedding)
        .with_access_log(access);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stopped = runtime.block_on(async {
        let state = match nonblocking {
            Some(primary) => match primary.ready().await {
                Ok(()) => {
                    eprintln!(
                        "note: the primary's reads use async connections (CRUDDUR_ASYNC_PRIMARY=0 keeps them on its database threads)"
                    );
                    state.with_async_primary(primary)
                }
                Err(e) => {
                    eprintln!("note: the primary's reads stay on its database threads: {e}");
                    state
                }
            },
            None => state,
        };
        let listener = tokio::net::TcpListener::bind(service.bind)
            .await
            .with_context(|| format!("cannot listen on {}", service.bind))?;
        let address = listener.local_addr()?;
        let stop = shutdown_signal().context("installing the SIGINT and SIGTERM handlers")?;
        eprintln!("listening on http://{address}");
        serve(
            listener,
            app(state, &service.allowed_origins),
            service.transport,
            stop,
        )
        .await
        .context("serving")
    });
    // A database call of a request dropped at the deadline may still run
    // on a database thread or Tokio's blocking pool (waiting on a lock,
    // with no statement timeout): dropping the runtime would wait for the
    // latter. The process exits instead.
    runtime.shutdown_background();
    stopped
}

/// The async connections for the primary's reads, unless the primary is
/// one they decline (said on stderr; every call then runs on the primary's
/// database threads).
fn async_primary(repo: &Repository) -> Option<AsyncPrimary> {
    match AsyncPrimary::new(repo.router()) {
        Ok(primary) => Some(primary),
        Err(e) => {
            eprintln!("note: the primary's reads stay on its database threads: {e}");
            None
        }
    }
}

/// Refuses the development mode on the database `PROD_CONNECTION_URL`
/// reaches: the same server (compared by its identity as numbers, never by
/// the URLs' text) and the same database, marked or not. A
/// `PROD_CONNECTION_URL` that does not parse or cannot be asked is a
/// refusal too: the database could be it.
fn refuse_the_production_database(
    settings: &Settings,
    identity: &DatabaseIdentity,
    url: &DatabaseUrl,
) -> anyhow::Result<()> {
    let Some(prod) = cruddur_db::resolve::production_url(settings).context(
        "reading PROD_CONNECTION_URL, to tell whether the development mode's database is production",
    )?
    else {
        return Ok(());
    };
    match identify_at(&prod) {
        Ok(Some(prod_identity)) if prod_identity.same_database(identity) => bail!(
            "refusing the development mode on {url}: it is the database of PROD_CONNECTION_URL \
             ({prod}), the same server and database; configure token verification \
             (CRUDDUR_JWKS or AWS_COGNITO_USER_POOL_ID)"
        ),
        Ok(_) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "refusing the development mode: cannot tell whether {url} is the production database, \
             because PROD_CONNECTION_URL ({prod}) could not be asked; fix or unset it"
        ))),
    }
}

/// Says on stderr, where nobody can miss it, that posts are not verified.
fn announce_development_mode(handle: &str) {
    let line = "!".repeat(72);
    eprintln!(
        "{line}\n\
         DEVELOPMENT MODE: no token verification is configured (CRUDDUR_JWKS or\n\
         AWS_COGNITO_USER_POOL_ID). Every post, reply and profile update is made as\n\
         `{handle}`, whoever sends it. Do not expose this service to a network.\n\
         {line}"
    );
    tracing::warn!(handle, "development mode: writes are not authenticated");
}
