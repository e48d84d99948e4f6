//! A user's short card, and updating one's profile.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use cruddur_db::UserShort;
use cruddur_db::repo::profiles::ProfileDraft;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::token_headers;
use crate::api::AppState;
use crate::error::{ApiError, ErrorBody, WriteRefusals};
use crate::extract::{Author, InPath, JsonBody, ReadConsistency, from_object};
use crate::openapi::WriteTokenHeader;

/// A user's short card: uuid, handle and display name.
#[utoipa::path(
    get,
    path = "/api/users/@{handle}/short",
    tag = "users",
    params(("handle" = String, Path, description = "The user's handle, without its `@`"), WriteTokenHeader),
    responses(
        (status = 200, description = "The short card", body = UserShort),
        (status = 400, description = "A bad write token", body = ErrorBody),
        (status = 404, description = "No user has this handle", body = ErrorBody),
        (status = 503, description = "The database is unavailable or busy", body = ErrorBody),
    )
)]
pub(crate) async fn short(
    State(state): State<AppState>,
    InPath(handle): InPath<String>,
    ReadConsistency(consistency): ReadConsistency,
) -> Result<Json<UserShort>, ApiError> {
    let card = state
        .blocking_read(consistency, move |repo, consistency| {
            repo.user_short(consistency, &handle)
                .map_err(ApiError::named_in_path)
        })
        .await?;
    Ok(Json(card))
}

/// A profile update's body (other keys are ignored). Both keys are
/// required, so that a client that forgets one never blanks it.
#[derive(ToSchema)]
pub(crate) struct ProfileUpdate {
    /// The new display name: 1 to 100 characters, not only whitespace, no
    /// NUL.
    #[schema(
        example = "Andrew Brown",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    display_name: String,
    /// The new bio: up to 500 characters, no NUL; empty for none.
    #[schema(
        example = "Cloud engineer.",
        max_length = 500,
        pattern = r"^[^\u0000]*$"
    )]
    bio: String,
}

impl<'de> Deserialize<'de> for ProfileUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            display_name: String,
            bio: String,
        }
        let Fields { display_name, bio } = from_object(d)?;
        Ok(Self { display_name, bio })
    }
}

/// Updates the display name and bio of the request's author: the short
/// card as it now is (with the handle the original never returned), with
/// the write's token in a header and a cookie.
#[utoipa::path(
    post,
    path = "/api/profile/update",
    tag = "users",
    request_body = ProfileUpdate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The author's short card, updated", body = UserShort,
            headers(("x-write-token" = String, description = "The write's token: send it back in `x-write-token` to read what was written"))),
        (status = 400, description = "The body is not JSON, or not the object asked for", body = ErrorBody),
        (status = 422, description = "Every failing validation code (`display_name_blank`, `display_name_exceed_max_chars`, `bio_exceed_max_chars`, …)", body = Vec<String>),
        WriteRefusals,
    )
)]
pub(crate) async fn update_profile(
    State(state): State<AppState>,
    Author(author): Author,
    JsonBody(update): JsonBody<ProfileUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    let (card, token) = state
        .blocking(move |repo| {
            repo.update_profile(&ProfileDraft::parse(
                &author,
                &update.display_name,
                &update.bio,
            )?)
        })
        .await?;
    Ok((token_headers(token), Json(card)))
}
