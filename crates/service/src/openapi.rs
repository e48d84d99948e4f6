//! The API's OpenAPI 3.1 document, served at `GET /api/openapi.json`.
//!
//! It is generated from the handlers' own descriptions and the types they
//! read and return (`utoipa`; the library's shapes with its `openapi`
//! feature), never written by hand. `crates/service/openapi.json` is a
//! committed copy that a test compares with the generated one, as the
//! Diesel schema is compared with the migrations;
//! `cruddur-db-service --openapi` prints it.

use std::borrow::Cow;

use cruddur_db::Ttl;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::api::WRITE_TOKEN_HEADER;
use crate::error::EmptyObject;

/// The document's fixed parts: its title, tags and security scheme. The
/// paths come from the router ([`crate::routes`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cruddur",
        description = "Cruddur's PostgreSQL API, served from cruddur-db: the home feed, posting, replying, users' pages and profiles.",
    ),
    tags(
        (name = "activities", description = "Cruds and their replies"),
        (name = "users", description = "Users' pages, short cards and profiles"),
        (name = "health", description = "Whether the service is up, and ready for traffic"),
    ),
    components(schemas(CursorText, EmptyObject)),
    modifiers(&Bearer),
)]
pub(crate) struct ApiDoc;

/// The `bearer` security scheme: a Cognito access token (a JWT), verified
/// against the user pool's keys.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Cognito access token of the service's user pool; its `sub` names the author",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API's document, generated.
pub fn document() -> Document {
    crate::routes::api_routes().into_openapi()
}

/// The API's document as the service serves it: pretty-printed JSON with
/// a final newline.
pub fn document_json() -> String {
    to_json(&document())
}

/// `doc` as pretty-printed JSON with a final newline.
pub(crate) fn to_json(doc: &Document) -> String {
    // Serializing a document of strings and maps cannot fail; were it to,
    // the body says so rather than the service refusing to start.
    let mut json = doc.to_pretty_json().unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("the document does not serialize: {e}") }).to_string()
    });
    json.push('\n');
    json
}

/// A ttl's name, one of the library's [`Ttl::ALL`].
pub(crate) struct TtlName;

impl PartialSchema for TtlName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("How long the crud lives before it expires"))
            .enum_values(Some(Ttl::ALL.iter().map(|t| t.as_str())))
            .into()
    }
}

impl ToSchema for TtlName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Ttl")
    }
}

/// The optional `Idempotency-Key` request header of a post.
pub(crate) struct IdempotencyKeyParam;

impl IntoParams for IdempotencyKeyParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "A key of the client's for this post (1 to 255 visible ASCII characters), kept 24 hours: \
                     a retry with the same key and the same post gets the first post back, never a second one",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[!-~]{1,255}$")),
                ))
                .build(),
        ]
    }
}

/// The optional `x-write-token` request header of a read.
pub(crate) struct WriteTokenHeader;

/// The write tokens the service hands out, exactly as the library reads
/// them: a WAL position (two upper-case hexadecimal numbers of up to 8
/// digits), a timeline (not 0) and a system identifier (a decimal below
/// 2^64), without leading zeros.
pub const TOKEN_PATTERN: &str = concat!(
    r"^(?:0|[1-9A-F][0-9A-F]{0,7})/(?:0|[1-9A-F][0-9A-F]{0,7})\.[1-9A-F][0-9A-F]{0,7}\.",
    // Every decimal from 0 to 18446744073709551615, digit by digit.
    r"(?:0|[1-9][0-9]{0,18}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}",
    r"|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}",
    r"|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}",
    r"|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}",
    r"|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]",
    r"|1844674407370955161[0-4]|18446744073709551615)$",
);

/// The feed cursors the service makes, exactly as the library reads them:
/// `<created_at>_<uuid>`, a real calendar date of the years 0000 to 9999
/// with microseconds in UTC, and a lower-case hyphenated uuid.
pub const CURSOR_PATTERN: &str = concat!(
    r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])",
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    // 29 February of the leap years.
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)",
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z",
    r"_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
);

/// A feed cursor's text ([`CURSOR_PATTERN`]).
pub(crate) struct CursorText;

impl PartialSchema for CursorText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Where a page starts: `<created_at>_<uuid>` of the last item seen",
            ))
            .pattern(Some(CURSOR_PATTERN))
            .examples([serde_json::json!(
                "2026-12-03T10:00:00.000000Z_9e0d6f63-8bd0-4c50-a3fa-1f0e4f3f8d8e"
            )])
            .into()
    }
}

impl ToSchema for CursorText {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Cursor")
    }
}

impl IntoParams for WriteTokenHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name(WRITE_TOKEN_HEADER)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The token of one's last write (from a write's `x-write-token`): the read sees that write",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(TOKEN_PATTERN)),
                ))
                .build(),
        ]
    }
}
