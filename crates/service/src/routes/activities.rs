//! The home feed, posting a crud, and replying to one.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use cruddur_db::repo::activities::{ActivityDraft, ReplyDraft};
use cruddur_db::{ActivityObject, Created, FeedItem, IdempotencyKey, ReplyObject};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::token_headers;
use crate::api::AppState;
use crate::error::{ApiError, ErrorBody, WriteRefusals};
use crate::extract::{
    Author, FeedPageQuery, IdempotencyKeyHeader, InPath, JsonBody, Page, PageQuery,
    ReadConsistency, from_object,
};
use crate::openapi::{IdempotencyKeyParam, TtlName, WriteTokenHeader};

/// The home feed: the newest cruds of every user, newest first, as the
/// JSON array PostgreSQL built (served as is).
#[utoipa::path(
    get,
    path = "/api/activities/home",
    tag = "activities",
    params(PageQuery, WriteTokenHeader),
    responses(
        (status = 200, description = "A page of the home feed, newest first", body = Vec<FeedItem>),
        (status = 400, description = "A bad `limit`, `before` or write token", body = ErrorBody),
        (status = 503, description = "The database is unavailable or busy", body = ErrorBody),
    )
)]
pub(crate) async fn home(
    State(state): State<AppState>,
    Page(page): FeedPageQuery,
    ReadConsistency(consistency): ReadConsistency,
) -> Result<impl IntoResponse, ApiError> {
    let json = state
        .read_async_first(
            consistency,
            move |primary| async move { primary.home_feed_json_bytes(page).await },
            move |conn| cruddur_db::home_feed_json_bytes(conn, page),
        )
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json))
}

/// A post's body (other keys are ignored).
#[derive(ToSchema)]
pub(crate) struct NewCrud {
    /// The text: 1 to 280 characters, not only whitespace, no NUL.
    #[schema(
        example = "Cloud is fun!",
        min_length = 1,
        max_length = 280,
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    message: String,
    /// How long the crud lives.
    #[schema(value_type = TtlName)]
    ttl: String,
}

impl<'de> Deserialize<'de> for NewCrud {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            message: String,
            ttl: String,
        }
        let Fields { message, ttl } = from_object(d)?;
        Ok(Self { message, ttl })
    }
}

/// Creates a crud by the request's author: the 6-key object, with its
/// write token in a header and a cookie.
#[utoipa::path(
    post,
    path = "/api/activities",
    tag = "activities",
    request_body = NewCrud,
    params(IdempotencyKeyParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The crud, as the home feed will show it (with `Idempotency-Key`, the one the key's first request made)", body = ActivityObject,
            headers(
                ("x-write-token" = String, description = "The write's token: send it back in `x-write-token` to read what was written"),
                ("idempotent-replayed" = String, description = "`true` when an earlier request with this `Idempotency-Key` made the crud"),
            )),
        (status = 409, description = "The `Idempotency-Key` was used for another post within its 24 hours; nothing was written", body = ErrorBody),
        (status = 400, description = "The body is not JSON, or not the object asked for, or a bad `Idempotency-Key`", body = ErrorBody),
        (status = 422, description = "Every failing validation code (`message_blank`, `message_exceed_max_chars`, `ttl_blank`, …)", body = Vec<String>),
        WriteRefusals,
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Author(author): Author,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    JsonBody(crud): JsonBody<NewCrud>,
) -> Result<Response, ApiError> {
    let (created, token) = state
        .blocking(move |repo| {
            // Parsed where the repository is reached: bad input costs no
            // checkout, only the thread this call holds anyway.
            let draft = ActivityDraft::parse(&author, &crud.message, &crud.ttl)?;
            match &key {
                Some(key) => repo.create_activity_once(&draft, IdempotencyKey::parse(key)?),
                None => repo.create_activity(&draft).map(|(activity, token)| {
                    (
                        Created {
                            activity,
                            replayed: false,
                        },
                        token,
                    )
                }),
            }
        })
        .await?;
    let mut response = (token_headers(token), Json(created.activity)).into_response();
    if created.replayed {
        response.headers_mut().insert(
            HeaderName::from_static(REPLAYED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The response header that marks the answer to a retry: the post was made
/// by an earlier request with the same `Idempotency-Key`.
const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A reply's body (other keys are ignored).
#[derive(ToSchema)]
pub(crate) struct NewReply {
    /// The text: 1 to 1,024 characters, not only whitespace, no NUL.
    #[schema(
        example = "Agreed.",
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    message: String,
}

impl<'de> Deserialize<'de> for NewReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            message: String,
        }
        let Fields { message } = from_object(d)?;
        Ok(Self { message })
    }
}

/// Replies to a crud as the request's author: the reply's object, with
/// its write token in a header and a cookie. The crud's `replies_count`
/// goes up in the same transaction.
#[utoipa::path(
    post,
    path = "/api/activities/{activity_uuid}/reply",
    tag = "activities",
    params(("activity_uuid" = uuid::Uuid, Path, description = "The crud replied to")),
    request_body = NewReply,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The reply", body = ReplyObject,
            headers(("x-write-token" = String, description = "The write's token: send it back in `x-write-token` to read what was written"))),
        (status = 400, description = "The body is not JSON, or not the object asked for", body = ErrorBody),
        (status = 404, description = "No crud has this uuid, or it has expired", body = ErrorBody),
        (status = 422, description = "Every failing validation code (`message_blank`, `message_exceed_max_chars_1024`, `activity_uuid_blank`, …)", body = Vec<String>),
        WriteRefusals,
    )
)]
pub(crate) async fn reply(
    State(state): State<AppState>,
    InPath(activity_uuid): InPath<String>,
    Author(author): Author,
    JsonBody(reply): JsonBody<NewReply>,
) -> Result<impl IntoResponse, ApiError> {
    let (reply, token) = state
        .blocking(move |repo| {
            repo.create_reply(&ReplyDraft::parse(&author, &activity_uuid, &reply.message)?)
        })
        .await?;
    Ok((token_headers(token), Json(reply)))
}
