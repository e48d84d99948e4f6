//! What the routes take from a request, as axum extractors, each refused
//! with the API's own error: the author, where a feed read goes (its write
//! token), the feed page, and a JSON body within the size limit and the
//! body timeout.

use std::fmt::Display;
use std::str::FromStr;

use axum::Json;
use axum::body::{Body, HttpBody};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use cruddur_db::repo::feed::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use cruddur_db::repo::profiles::PROFILE_PAGE_SIZE;
use cruddur_db::repo::thread::ReplyPage;
use cruddur_db::{Consistency, FeedCursor, FeedPage, WriteToken};
use serde::de::{DeserializeOwned, Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;

use crate::api::{AppState, MAX_BODY_BYTES, WRITE_TOKEN_COOKIE, WRITE_TOKEN_HEADER};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::openapi::CursorText;

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        match e {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            // Not JSON, or not the JSON asked for: the client's to fix.
            e => ApiError::BadRequest(e.body_text()),
        }
    }
}

/// The handle of the request's author: the development mode's one, else
/// the Cruddur user of the `Authorization: Bearer` token (`401` without a
/// token that verifies, `403` when it names no user).
pub(crate) struct Author(pub(crate) String);

impl FromRequestParts<AppState> for Author {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let verifier = match state.auth() {
            Auth::Development { handle } => return Ok(Self(handle.clone())),
            Auth::Jwt(verifier) => verifier,
        };
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let sub = verifier.verify(token).map_err(|e| {
            tracing::info!("token refused: {e}");
            ApiError::Unauthorized
        })?;
        let user = state
            .blocking(move |repo| repo.user_by_cognito_user_id(Consistency::Primary, &sub))
            .await?;
        user.map(|u| Self(u.handle)).ok_or_else(|| {
            ApiError::Forbidden("the token is valid but names no Cruddur user".into())
        })
    }
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

/// Where a feed read goes, from the request's write token: its header,
/// else its cookie (see [`read_consistency`]).
pub(crate) struct ReadConsistency(pub(crate) Consistency);

impl<S: Send + Sync> FromRequestParts<S> for ReadConsistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        read_consistency(&parts.headers).map(Self)
    }
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

/// A page of the home feed or of a user's page, from the query string:
/// `limit` (default `DEFAULT`; its range is the library's,
/// [`FeedPage::checked`]) and `before`, a cursor.
pub(crate) struct Page<const DEFAULT: i64>(pub(crate) FeedPage);

/// A page of the home feed: 20 items unless asked.
pub(crate) type FeedPageQuery = Page<DEFAULT_PAGE_SIZE>;
/// A page of a user's activities: the original's 40 unless asked.
pub(crate) type ProfilePageQuery = Page<PROFILE_PAGE_SIZE>;

/// The query string of a feed or a user's page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Items on the page: 1 to 100 (default 20 on the home feed, 40 on a
    /// user's page).
    #[serde(default, deserialize_with = "page_size")]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The cursor of the last item of the previous page,
    /// `<created_at>_<uuid>`: the page holds what is older.
    #[serde(default, deserialize_with = "parsed")]
    #[param(value_type = Option<CursorText>)]
    before: Option<FeedCursor>,
}

impl<S: Send + Sync, const DEFAULT: i64> FromRequestParts<S> for Page<DEFAULT> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state).await?;
        let limit = query.limit.unwrap_or(DEFAULT);
        Ok(Self(FeedPage::checked(limit, query.before)?))
    }
}

/// A page of a crud's replies, oldest first, from the query string:
/// `limit` (default 100, the most) and `after`, the cursor of the last
/// reply seen.
pub(crate) struct RepliesPage(pub(crate) ReplyPage);

/// The query string of a crud's page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RepliesQuery {
    /// Replies on the page: 1 to 100 (default 100).
    #[serde(default, deserialize_with = "page_size")]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The cursor of the last reply of the previous page,
    /// `<created_at>_<uuid>`: the page holds the replies after it.
    #[serde(default, deserialize_with = "parsed")]
    #[param(value_type = Option<CursorText>)]
    after: Option<FeedCursor>,
}

impl<S: Send + Sync> FromRequestParts<S> for RepliesPage {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<RepliesQuery>::from_request_parts(parts, state).await?;
        let limit = query.limit.unwrap_or(MAX_PAGE_SIZE);
        // The library checks the range, as it does for feed pages.
        Ok(Self(ReplyPage {
            limit,
            after: query.after,
        }))
    }
}

/// The request's `Idempotency-Key` header, when it has one (checked by
/// the library: [`cruddur_db::IdempotencyKey::parse`]); `400` when it is not
/// text.
pub(crate) struct IdempotencyKeyHeader(pub(crate) Option<String>);

/// The header a post's retries carry.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY_HEADER) else {
            return Ok(Self(None));
        };
        let text = value.to_str().map_err(|_| {
            ApiError::BadRequest("invalid Idempotency-Key header: it must be visible ASCII".into())
        })?;
        Ok(Self(Some(text.to_owned())))
    }
}

/// The parameters of a route's path, read by [`Path`], refused with the
/// API's `400` (a segment that is not valid UTF-8 once percent-decoded).
pub(crate) struct InPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for InPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok(Self(value))
    }
}

/// A `limit` as a whole number, its surrounding spaces ignored.
fn page_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map(Some).map_err(|_| {
        D::Error::custom(format!(
            "invalid limit `{}`: expected a whole number from 1 to {MAX_PAGE_SIZE}",
            text.chars().take(40).collect::<String>()
        ))
    })
}

/// A value read with its [`FromStr`].
fn parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    String::deserialize(d)?
        .parse()
        .map(Some)
        .map_err(D::Error::custom)
}

/// A JSON object read as `T`, for a body's `Deserialize`: serde's derive
/// alone would also take a struct from an array of its values.
pub(crate) fn from_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<T, D::Error> {
    let object = serde_json::Map::deserialize(d)?;
    T::deserialize(serde_json::Value::Object(object)).map_err(D::Error::custom)
}

/// A body of JSON read as `T` by [`axum::Json`]: `415` unless declared
/// JSON, `413` over [`MAX_BODY_BYTES`] (before any of it is read when its
/// declared length says so), `408` when it does not arrive within the body
/// timeout, `400` when it is not JSON or not a `T`.
///
/// As the last extractor of a handler, it is read once the author is known.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        // A length declared over the limit (hyper's size hint is the
        // `Content-Length`) is answered now, not after reading up to the
        // limit of a body that may never come; `Json` still says first
        // whether the type is one it reads.
        if request.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
            let (parts, _) = request.into_parts();
            let unread = Request::from_parts(parts, Body::empty());
            return Err(
                match Json::<IgnoredAny>::from_request(unread, state).await {
                    Err(JsonRejection::MissingJsonContentType(_)) => ApiError::UnsupportedMediaType,
                    _ => ApiError::PayloadTooLarge,
                },
            );
        }
        let Json(value) = tokio::time::timeout(
            state.body_timeout(),
            Json::<T>::from_request(request, state),
        )
        .await
        .map_err(|_| ApiError::BodyTimeout)??;
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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

    /// Whether `Json` reads a body sent with these headers.
    async fn read_as_json(pairs: &[(&'static str, &str)]) -> bool {
        let mut request = Request::new(Body::from("{}"));
        *request.headers_mut() = headers(pairs);
        match Json::<IgnoredAny>::from_request(request, &()).await {
            Ok(_) => true,
            Err(e) => {
                assert!(matches!(ApiError::from(e), ApiError::UnsupportedMediaType));
                false
            }
        }
    }

    #[tokio::test]
    async fn json_bodies_are_recognised_with_parameters() {
        assert!(read_as_json(&[("content-type", "application/json")]).await);
        assert!(read_as_json(&[("content-type", "Application/JSON; charset=utf-8")]).await);
        assert!(!read_as_json(&[("content-type", "text/plain")]).await);
        assert!(!read_as_json(&[]).await);
    }
}
