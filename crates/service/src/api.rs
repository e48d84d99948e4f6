//! The routes of the original backend's activity API, and the layers
//! around them (CORS, request logs).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use cruddur_db::repo::feed::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use cruddur_db::{Consistency, FeedCursor, FeedPage, Repository, WriteToken};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::auth::Auth;
use crate::error::ApiError;

/// The response header that carries a post's write token, and the request
/// header that brings it back: a feed read with it sees that post, from a
/// replica that has replayed it or else the primary.
pub const WRITE_TOKEN_HEADER: &str = "x-write-token";
/// The cookie that carries the same token for same-origin clients.
pub const WRITE_TOKEN_COOKIE: &str = "cruddur_write_token";

/// The largest request body read: 64 KiB. A post's JSON is at most a few
/// kilobytes (280 characters, each at most a 12-byte escape); a larger
/// body is `413` before it is buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares: the repository (with its pool and any
/// replicas), how authors are found, and the queue for the pool.
#[derive(Clone)]
pub struct AppState {
    repo: Repository,
    auth: Arc<Auth>,
    /// One permit per connection of the primary's pool: calls bound for
    /// the primary wait here, first come first served, rather than in
    /// r2d2's checkout, whose waiters are woken in no particular order (a
    /// request could lose to later ones again and again; at 16 connections
    /// on a pool of 10 that made the 99th percentile hundreds of times the
    /// median). Reads the router sends to a replica take none: each
    /// replica bounds its own reads
    /// ([`cruddur_db::ReplicaOptions::max_reads_per_replica`]), so a
    /// replica that stops answering holds that many requests, never the
    /// permits of writes and health checks.
    permits: Arc<Semaphore>,
    /// How long a call may wait for a permit: the pool's checkout timeout.
    wait: Duration,
    /// How long a request body may take to arrive once its handler reads
    /// it (the transport's header-read timeout).
    body_timeout: Duration,
}

impl AppState {
    /// The state for `repo` and `auth`.
    pub fn new(repo: Repository, auth: Auth) -> Self {
        let pool = repo.pool();
        let permits = usize::try_from(pool.max_size()).unwrap_or(usize::MAX);
        let wait = pool.connection_timeout();
        Self {
            repo,
            auth: Arc::new(auth),
            permits: Arc::new(Semaphore::new(permits)),
            wait,
            body_timeout: crate::transport::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }

    /// This state with request bodies allowed `timeout` to arrive (default
    /// [`crate::transport::DEFAULT_HEADER_READ_TIMEOUT`]): a body sent
    /// slowly or not at all after its head is answered `408`, so that it
    /// does not hold its connection for as long as the client likes.
    #[must_use]
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Runs `f` (a call into the synchronous repository that uses the
    /// primary) on Tokio's blocking pool, so that the runtime's worker
    /// threads never wait on the database, once a permit is free; `503`
    /// when none frees up within the checkout timeout.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Repository) -> cruddur_db::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self.permit().await?;
        let repo = self.repo.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&repo)
        });
        joined(task.await)
    }

    /// A permit of the primary's queue, within the checkout timeout.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(|e| ApiError::Internal(format!("the connection queue closed: {e}")))
    }

    /// Like [`AppState::blocking`] for a read with `consistency`: with a
    /// permit when the router would send it to the primary, without one
    /// when it goes to a replica (which may still hand it to the primary:
    /// a token wait that ran out, a recovery conflict, a failure; such
    /// reads are bounded by the replicas' own bounds). A read sent to a
    /// replica that has not answered within the router's
    /// [`replica_read_bound`](cruddur_db::Router::replica_read_bound) is
    /// read on the primary (the stuck one keeps its thread, not the
    /// request).
    async fn blocking_read<T: Send + 'static>(
        &self,
        consistency: Consistency,
        f: impl Fn(&Repository, Consistency) -> cruddur_db::Result<T> + Send + Sync + 'static,
    ) -> Result<T, ApiError> {
        let router = self.repo.router();
        if router.would_read_on_primary(consistency) {
            return self.blocking(move |repo| f(repo, consistency)).await;
        }
        let f = Arc::new(f);
        let call = Arc::clone(&f);
        let repo = self.repo.clone();
        let task = tokio::task::spawn_blocking(move || call(&repo, consistency));
        let bound = router.replica_read_bound();
        match tokio::time::timeout(bound, task).await {
            Ok(result) => joined(result),
            Err(_) => {
                tracing::warn!(
                    "a read sent to a replica did not answer within {bound:?}; read on the primary"
                );
                self.blocking(move |repo| f(repo, Consistency::Primary))
                    .await
            }
        }
    }
}

/// The result of a blocking task, its panic an internal error.
fn joined<T>(result: Result<cruddur_db::Result<T>, tokio::task::JoinError>) -> Result<T, ApiError> {
    result
        .map_err(|e| ApiError::Internal(format!("a database call panicked: {e}")))?
        .map_err(ApiError::from)
}

/// The service: `GET /api/activities/home`, `POST /api/activities` and
/// `GET /api/health-check`, with CORS for `allowed_origins` (headers
/// `Content-Type`, `Authorization` and the write token; methods `OPTIONS`,
/// `GET`, `HEAD`, `POST`) and one log line per request.
pub fn app(state: AppState, allowed_origins: &[String]) -> Router {
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let token_header = HeaderName::from_static(WRITE_TOKEN_HEADER);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            token_header.clone(),
        ])
        .allow_methods([Method::OPTIONS, Method::GET, Method::HEAD, Method::POST])
        .expose_headers([token_header]);
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<Body>| {
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
        })
        .on_request(())
        .on_response(|response: &Response<Body>, latency: Duration, _: &Span| {
            tracing::info!(
                status = response.status().as_u16(),
                latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                "answered"
            );
        })
        .on_failure(());
    Router::new()
        .route("/api/activities/home", get(home))
        .route("/api/activities", post(create))
        .route("/api/health-check", get(health))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .layer(trace)
}

#[derive(Deserialize)]
struct FeedQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// The home feed, as the JSON array PostgreSQL built (served as is).
async fn home(
    State(state): State<AppState>,
    query: Result<Query<FeedQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "invalid limit `{}`: expected a whole number from 1 to {MAX_PAGE_SIZE}",
                    text.chars().take(40).collect::<String>()
                ))
            })?,
    };
    let before = query
        .before
        .as_deref()
        .map(str::parse::<FeedCursor>)
        .transpose()?;
    let consistency = read_consistency(&headers)?;
    let page = FeedPage { limit, before };
    let json = state
        .blocking_read(consistency, move |repo, consistency| {
            repo.home_feed_json_at(consistency, page)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json))
}

/// What a feed read needs, from the request's write token: its header,
/// else its cookie.
///
/// A bad header is `400`: the client sent it. A cookie that is not a write
/// token never makes the read fail: any page on the same host, another port
/// or a sibling subdomain included, can set a cookie for it, and one bad
/// cookie must not turn every feed read into a `400`. Of several cookies of
/// that name, the first that parses counts; when none does (one set before
/// tokens named their server, or garbled), the read goes to the primary,
/// which sees every write.
fn read_consistency(headers: &HeaderMap) -> Result<Consistency, ApiError> {
    if let Some(value) = headers.get(WRITE_TOKEN_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::BadRequest(format!("invalid {WRITE_TOKEN_HEADER} header")))?;
        return Ok(Consistency::AtLeast(text.trim().parse::<WriteToken>()?));
    }
    let mut sent = false;
    for text in cookies(headers, WRITE_TOKEN_COOKIE) {
        sent = true;
        match text.trim().parse::<WriteToken>() {
            Ok(token) => return Ok(Consistency::AtLeast(token)),
            Err(e) => tracing::debug!("write token cookie not used: {e}"),
        }
    }
    Ok(if sent {
        Consistency::Primary
    } else {
        Consistency::Eventual
    })
}

/// The values of the cookies named `name`, in the order sent.
fn cookies<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A post's body: `{"message": "...", "ttl": "..."}`, both strings (other
/// keys are ignored).
struct NewCrud {
    message: String,
    ttl: String,
}

impl NewCrud {
    /// The body, or what is wrong with it, in the client's terms.
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        const SHAPE: &str = r#"expected a JSON object {"message": "...", "ttl": "..."}"#;
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("{SHAPE}: the body is not JSON ({e})")))?;
        let serde_json::Value::Object(mut object) = value else {
            return Err(ApiError::BadRequest(SHAPE.into()));
        };
        let mut text = |key: &str| match object.remove(key) {
            Some(serde_json::Value::String(text)) => Ok(text),
            Some(_) => Err(ApiError::BadRequest(format!(
                "{SHAPE}: `{key}` is not a string"
            ))),
            None => Err(ApiError::BadRequest(format!("{SHAPE}: `{key}` is missing"))),
        };
        Ok(Self {
            message: text("message")?,
            ttl: text("ttl")?,
        })
    }
}

/// Creates a crud by the request's author: the 6-key object, with its
/// write token in a header and a cookie.
async fn create(
    State(state): State<AppState>,
    request: Request<Body>,
) -> Result<impl IntoResponse, ApiError> {
    // The body is read last, by hand: as an extractor it would be read
    // (up to the limit) before the author is known or the declared length
    // looked at.
    let headers = request.headers();
    let author = author(&state, headers).await?;
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // A length declared over the limit is answered now, not after reading
    // up to the limit of a body that may never come.
    if declared_length(headers).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let body = tokio::time::timeout(state.body_timeout, Bytes::from_request(request, &state))
        .await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|e: BytesRejection| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
    let crud = NewCrud::parse(&body)?;

    let (activity, token) = state
        .blocking(move |repo| repo.create_activity_with_token(&author, &crud.message, &crud.ttl))
        .await?;
    let token = token.to_string();
    let cookie = format!("{WRITE_TOKEN_COOKIE}={token}; Path=/; SameSite=Lax; HttpOnly");
    Ok((
        [
            (HeaderName::from_static(WRITE_TOKEN_HEADER), token),
            (header::SET_COOKIE, cookie),
        ],
        axum::Json(activity),
    ))
}

/// The request's `Content-Length`, when it has one that reads as a number
/// (hyper has refused a malformed or repeated one already).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the body is declared as JSON (`application/json`, with any
/// parameters such as a charset).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The handle of the request's author.
async fn author(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let verifier = match &*state.auth {
        Auth::Development { handle } => return Ok(handle.clone()),
        Auth::Jwt(verifier) => verifier,
    };
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let sub = verifier.verify(token).map_err(|e| {
        tracing::info!("token refused: {e}");
        ApiError::Unauthorized
    })?;
    let user = state
        .blocking(move |repo| repo.user_by_cognito_user_id(&sub))
        .await?;
    user.map(|u| u.handle)
        .ok_or_else(|| ApiError::Forbidden("the token is valid but names no Cruddur user".into()))
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// 200 once the database answers.
async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.blocking(Repository::ping).await?;
    Ok(axum::Json(json!({ "success": true, "ver": 1 })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_are_read_whatever_the_scheme_case() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer(&headers(&[])), None);
    }

    /// Where a read with these headers goes, as text: the token, `primary`,
    /// or `None` for an eventual read.
    fn read_as(h: HeaderMap) -> Result<Option<String>, ApiError> {
        read_consistency(&h).map(|c| match c {
            Consistency::AtLeast(t) => Some(t.to_string()),
            Consistency::Eventual => None,
            Consistency::Primary => Some("primary".to_owned()),
        })
    }

    #[test]
    fn the_write_token_comes_from_the_header_else_the_cookie() {
        assert_eq!(
            read_as(headers(&[("x-write-token", "0/16B3748.1.77")])).unwrap(),
            Some("0/16B3748.1.77".into())
        );
        assert_eq!(
            read_as(headers(&[("cookie", "a=b; cruddur_write_token=1/2.A.3")])).unwrap(),
            Some("1/2.A.3".into())
        );
        assert_eq!(
            read_as(headers(&[
                ("x-write-token", "0/5.1.7"),
                ("cookie", "cruddur_write_token=0/9.1.7")
            ]))
            .unwrap(),
            Some("0/5.1.7".into())
        );
        assert_eq!(read_as(headers(&[("cookie", "other=1")])).unwrap(), None);
        for bad in ["not-a-position", "0/5", "0/5.1", "0/5.0.7", "0/5.1.-7"] {
            assert!(
                matches!(
                    read_as(headers(&[("x-write-token", bad)])),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad}"
            );
            // The same in a cookie (one from before tokens named their
            // server, say) reads the primary.
            let cookie = format!("cruddur_write_token={bad}");
            assert_eq!(
                read_as(headers(&[("cookie", &cookie)])).unwrap(),
                Some("primary".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bad_write_token_cookie_is_ignored_but_a_bad_header_is_refused() {
        for cookie in [
            "cruddur_write_token=not-a-position",
            "cruddur_write_token=",
            "cruddur_write_token=%00",
            "cruddur_write_token=0/",
            "cruddur_write_token=/5",
            "cruddur_write_token=1/2/3",
            "cruddur_write_token=G/1",
            "cruddur_write_token=FFFFFFFFF/0",
            "cruddur_write_token=\"0/1\"",
            "a=b; cruddur_write_token=-1/1; c=d",
        ] {
            // Never an error; read where every write is visible.
            assert_eq!(
                read_as(headers(&[("cookie", cookie)])).unwrap(),
                Some("primary".into()),
                "{cookie}"
            );
        }
        let long = format!("cruddur_write_token={}", "9".repeat(4000));
        assert_eq!(
            read_as(headers(&[("cookie", &long)])).unwrap(),
            Some("primary".into())
        );
        // A bad one set by another page does not hide the service's own.
        assert_eq!(
            read_as(headers(&[(
                "cookie",
                "cruddur_write_token=junk; cruddur_write_token=0/7.1.7"
            )]))
            .unwrap(),
            Some("0/7.1.7".into())
        );
        assert_eq!(
            read_as(headers(&[
                ("cookie", "cruddur_write_token=junk"),
                ("cookie", "cruddur_write_token=0/8.1.7")
            ]))
            .unwrap(),
            Some("0/8.1.7".into())
        );
        // The header is the client's own: a bad one is refused, whatever
        // the cookie says.
        for header in ["", "junk", "0/", "0/1 0/2"] {
            assert!(
                matches!(
                    read_as(headers(&[
                        ("x-write-token", header),
                        ("cookie", "cruddur_write_token=0/9.1.7")
                    ])),
                    Err(ApiError::BadRequest(_))
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn json_bodies_are_recognised_with_parameters() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[])));
    }
}
