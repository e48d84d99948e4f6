//! The HTTP service a Rust developer would write in place of
//! `cruddur-db-service`, for the bench's HTTP rows: axum 0.8 on
//! deadpool-postgres (tokio-postgres), a pool of 10, no request logs.
//!
//! ```text
//! CRUDDUR_CLIENT_COST_URL=postgres://… http-peer --bind 127.0.0.1:PORT
//! ```
//!
//! - `GET /api/activities/home`: the first page (`?limit=`, default 20) of
//!   the very JSON statement cruddur-db's `home_feed_json` sends (captured
//!   with Diesel's instrumentation at start), prepared once per connection
//!   (`prepare_cached`), its one text column served as is.
//! - `POST /api/activities` `{"message", "ttl"}`: in one transaction, the
//!   one statement that cruddur-db's `create_activity` sends (the author's
//!   look-up and the `INSERT … RETURNING`, captured the same way), answered
//!   with the same 6-key object; every post is by `andrewbrown`, as the service's
//!   development mode posts.
//! - `GET /api/health-check`: `200` once a connection answers.
//!
//! Each pooled connection first sets what cruddur-db's pool sets
//! (`plan_cache_mode = force_generic_plan`, `TimeZone`,
//! `statement_timeout`), so that the server does the same work for both.
//! The URL comes from the environment, not the command line: it may hold a
//! password; no TLS (the bench's URLs say `sslmode=disable`).

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, DurationRound as _, Utc};
use client_cost::{AnyResult, capture_statements, exit_code, fail, session_settings};
use cruddur_db::{ActivityDraft, DatabaseUrl, FeedPage, Ttl, establish, home_feed_json};
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use diesel::Connection as _;
use uuid::Uuid;

/// Where the URL comes from.
const URL_VAR: &str = "CRUDDUR_CLIENT_COST_URL";
/// Connections in the pool: the size of cruddur-db's default pool.
const POOL_SIZE: usize = 10;
/// The author of every post, as in the service's development mode.
const AUTHOR: &str = "andrewbrown";
/// The timestamps of the post's object, as cruddur-db writes them.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

const USAGE: &str = "\
usage: http-peer --bind HOST:PORT

Serves GET /api/activities/home, POST /api/activities and
GET /api/health-check from the database in CRUDDUR_CLIENT_COST_URL with
axum on deadpool-postgres, running cruddur-db's own statements.";

/// The statements the handlers run, as cruddur-db sends them.
struct Statements {
    /// The JSON page; `$1` is the page size.
    feed: String,
    /// The post: the author found by handle and the activity inserted,
    /// returning the object; `$1` the handle, `$2` message, `$3`
    /// expires_at, `$4` created_at.
    post: String,
}

#[derive(Clone)]
struct AppState {
    pool: Pool,
    sql: Arc<Statements>,
}

fn main() -> ExitCode {
    exit_code(run())
}

fn run() -> AnyResult<()> {
    let mut args = std::env::args().skip(1);
    let mut bind = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => bind = args.next(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return fail(format!("unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    let Some(bind) = bind else {
        return fail(format!("--bind is required\n\n{USAGE}"));
    };
    let Ok(raw) = std::env::var(URL_VAR) else {
        return fail(format!("{URL_VAR} is not set"));
    };
    let url = DatabaseUrl::parse(&raw)?;
    let sql = Arc::new(capture(&url)?);
    let settings = session_settings(&url)?;
    let pg: tokio_postgres::Config = url.expose().parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let settings = Arc::new(settings);
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .post_create(Hook::async_fn(move |client, _| {
                let settings = Arc::clone(&settings);
                Box::pin(async move {
                    client
                        .batch_execute(&settings)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()?;
        let app = Router::new()
            .route("/api/activities/home", get(home))
            .route("/api/activities", post(create))
            .route("/api/health-check", get(health))
            .with_state(AppState { pool, sql });
        let listener = tokio::net::TcpListener::bind(&bind).await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// What cruddur-db sends for the feed's first page and for a post (the
/// post in a transaction rolled back).
fn capture(url: &DatabaseUrl) -> AnyResult<Statements> {
    let mut conn = establish(url)?;
    let feed = capture_statements(&mut conn, |conn| {
        home_feed_json(conn, FeedPage::first(20))?;
        Ok(())
    })?;
    let post = capture_statements(&mut conn, |conn| {
        conn.test_transaction(|conn| {
            let draft = ActivityDraft::new(AUTHOR, "captured", Ttl::Day1)?;
            cruddur_db::create_activity(conn, &draft).map(|_| ())
        });
        Ok(())
    })?;
    let [(feed, _)] = feed.as_slice() else {
        return fail(format!(
            "the JSON feed sent {} statements, not one",
            feed.len()
        ));
    };
    let post: Vec<&String> = post
        .iter()
        .map(|(sql, _)| sql)
        .filter(|s| s.contains("users") || s.contains("activities"))
        .collect();
    let [post] = post.as_slice() else {
        return fail(format!(
            "create_activity sent {} statements on users and activities, not one: {post:?}",
            post.len()
        ));
    };
    if !post.starts_with("WITH author AS (SELECT") {
        return fail(format!(
            "create_activity's statement is not the author's look-up and the insert: {post}"
        ));
    }
    Ok(Statements {
        feed: feed.clone(),
        post: (*post).clone(),
    })
}

/// A failure: its status and message, as JSON.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    limit: Option<i64>,
}

async fn home(
    State(state): State<AppState>,
    Query(query): Query<FeedQuery>,
) -> Result<Response, Failure> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Failure(StatusCode::BAD_REQUEST, "invalid limit".into()));
    }
    let client = state.pool.get().await?;
    let statement = client.prepare_cached(&state.sql.feed).await?;
    let row = client.query_one(&statement, &[&limit]).await?;
    let feed: String = row.try_get(0)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], feed).into_response())
}

#[derive(serde::Deserialize)]
struct NewCrud {
    message: String,
    ttl: String,
}

async fn create(
    State(state): State<AppState>,
    axum::Json(crud): axum::Json<NewCrud>,
) -> Result<Response, Failure> {
    let ttl = match crud.ttl.parse::<Ttl>() {
        Ok(ttl) => ttl,
        Err(_) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(serde_json::json!(["ttl_blank"])),
            )
                .into_response());
        }
    };
    let message = crud.message.trim();
    if message.is_empty() || message.chars().count() > 280 {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(serde_json::json!(["message_blank"])),
        )
            .into_response());
    }
    let mut client = state.pool.get().await?;
    let post_statement = client.prepare_cached(&state.sql.post).await?;
    let now = Utc::now();
    let created_at = now
        .duration_trunc(chrono::TimeDelta::microseconds(1))
        .unwrap_or(now);
    let expires_at = created_at + ttl.duration();
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            &post_statement,
            &[&AUTHOR, &crud.message, &expires_at, &created_at],
        )
        .await?
    else {
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "user_not_found".into(),
        ));
    };
    tx.commit().await?;
    let uuid: Uuid = row.try_get("uuid")?;
    let display_name: String = row.try_get("display_name")?;
    let handle: String = row.try_get("handle")?;
    let message: String = row.try_get("message")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    let expires_at: Option<DateTime<Utc>> = row.try_get("expires_at")?;
    Ok(axum::Json(serde_json::json!({
        "uuid": uuid.to_string(),
        "display_name": display_name,
        "handle": handle,
        "message": message,
        "created_at": created_at.format(TIMESTAMP_FORMAT).to_string(),
        "expires_at": expires_at.map(|t| t.format(TIMESTAMP_FORMAT).to_string()),
    }))
    .into_response())
}

async fn health(State(state): State<AppState>) -> Result<Response, Failure> {
    let client = state.pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(axum::Json(serde_json::json!({ "success": true, "ver": 1 })).into_response())
}
