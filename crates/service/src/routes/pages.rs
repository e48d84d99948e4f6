//! The pages a frontend shows: a user's page and a crud's page.

use axum::Json;
use axum::extract::State;
use cruddur_db::{ActivityThread, UserPage};
use uuid::Uuid;

use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{
    InPath, Page, PageQuery, ProfilePageQuery, ReadConsistency, RepliesPage, RepliesQuery,
};
use crate::openapi::WriteTokenHeader;

/// A user's page: the profile and the user's activities, newest first
/// (40 unless `limit` says otherwise), in keyset pages as on the home
/// feed.
#[utoipa::path(
    get,
    path = "/api/activities/@{handle}",
    tag = "users",
    params(("handle" = String, Path, description = "The user's handle, without its `@`"), PageQuery, WriteTokenHeader),
    responses(
        (status = 200, description = "The profile and a page of the user's activities", body = UserPage),
        (status = 400, description = "A bad `limit`, `before` or write token", body = ErrorBody),
        (status = 404, description = "No user has this handle", body = ErrorBody),
        (status = 503, description = "The database is unavailable or busy", body = ErrorBody),
    )
)]
pub(crate) async fn user_page(
    State(state): State<AppState>,
    InPath(handle): InPath<String>,
    Page(page): ProfilePageQuery,
    ReadConsistency(consistency): ReadConsistency,
) -> Result<Json<UserPage>, ApiError> {
    let page = state
        .blocking_read(consistency, move |repo, consistency| {
            repo.user_page(consistency, &handle, page)
                .map_err(ApiError::named_in_path)
        })
        .await?;
    Ok(Json(page))
}

/// A crud's page: the crud with the home feed's keys and its replies,
/// oldest first.
#[utoipa::path(
    get,
    path = "/api/activities/@{handle}/status/{activity_uuid}",
    tag = "activities",
    params(
        ("handle" = String, Path, description = "The handle of the crud's author, without its `@`"),
        ("activity_uuid" = Uuid, Path, description = "The crud"),
        RepliesQuery,
        WriteTokenHeader,
    ),
    responses(
        (status = 200, description = "The crud and a page of its replies", body = ActivityThread),
        (status = 400, description = "A bad `limit`, `after` or write token", body = ErrorBody),
        (status = 404, description = "No user has this handle, or no crud of theirs this uuid", body = ErrorBody),
        (status = 503, description = "The database is unavailable or busy", body = ErrorBody),
    )
)]
pub(crate) async fn activity_page(
    State(state): State<AppState>,
    InPath((handle, activity_uuid)): InPath<(String, String)>,
    RepliesPage(page): RepliesPage,
    ReadConsistency(consistency): ReadConsistency,
) -> Result<Json<ActivityThread>, ApiError> {
    // A uuid that does not parse names no activity: 404, as an unknown one.
    let uuid = Uuid::try_parse(activity_uuid.trim()).map_err(|_| {
        ApiError::Missing(format!(
            "activity not found: `{}` is not a uuid",
            activity_uuid.chars().take(40).collect::<String>()
        ))
    })?;
    let thread = state
        .blocking_read(consistency, move |repo, consistency| {
            repo.activity_thread(consistency, &handle, uuid, page)
                .map_err(ApiError::named_in_path)
        })
        .await?;
    Ok(Json(thread))
}
