//! The API's routes. Each handler carries its OpenAPI description beside
//! it (`#[utoipa::path]`), and [`api_routes`] registers the handlers from
//! those descriptions, so the router and the document
//! ([`crate::openapi`]) are made from one list and cannot disagree.

mod activities;
mod health;
mod pages;
mod users;

use axum::http::{HeaderName, header};
use cruddur_db::WriteToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{AppState, WRITE_TOKEN_COOKIE, WRITE_TOKEN_HEADER};
use crate::openapi::ApiDoc;

/// Every route of the API, with its description.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(activities::home))
        .routes(routes!(activities::create))
        .routes(routes!(pages::user_page))
        .routes(routes!(pages::activity_page))
        .routes(routes!(activities::reply))
        .routes(routes!(users::short))
        .routes(routes!(users::update_profile))
        .routes(routes!(health::health))
        .routes(routes!(crate::ready::ready))
}

/// The headers that hand a write's token to its client: the header a
/// client sends back, and a cookie for same-origin clients. A read with
/// either sees the write.
fn token_headers(token: WriteToken) -> [(HeaderName, String); 2] {
    let token = token.to_string();
    let cookie = format!("{WRITE_TOKEN_COOKIE}={token}; Path=/; SameSite=Lax; HttpOnly");
    [
        (HeaderName::from_static(WRITE_TOKEN_HEADER), token),
        (header::SET_COOKIE, cookie),
    ]
}
