//! Who posts: verified Cognito tokens, or the development mode's fixed
//! handle, from the service's variables.

use std::path::PathBuf;

use cruddur_db::Settings;

use super::SettingsError;
use crate::variables::{
    AWS_COGNITO_USER_POOL_CLIENT_ID, AWS_COGNITO_USER_POOL_ID, CRUDDUR_DEV_HANDLE, CRUDDUR_JWKS,
    CRUDDUR_JWT_ISSUER,
};

/// The handle a development-mode service posts as (the original's week 4
/// hard-coded it).
pub const DEFAULT_DEV_HANDLE: &str = "andrewbrown";

/// Who the author of a `POST /api/activities` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// The user whose `cognito_user_id` is the `sub` of a verified token.
    Jwt {
        /// Where the signing keys are.
        jwks: JwksSource,
        /// The token's required `iss`.
        issuer: String,
        /// The app client id: the token's `aud` (ID tokens) or `client_id`
        /// (access tokens).
        client_id: String,
    },
    /// No verification: every post is by `handle`.
    Development {
        /// The author of every post.
        handle: String,
    },
}

/// A JSON Web Key Set, from a file or an HTTP(S) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file.
    File(PathBuf),
    /// Fetched once at start-up.
    Url(String),
}

/// Shows a URL's user information (a password, say) as `***`.
impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "{}", path.display()),
            JwksSource::Url(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                match rest[..authority_end].rfind('@') {
                    Some(at) => write!(f, "{scheme}://***{}", &rest[at..]),
                    None => f.write_str(url),
                }
            }
        }
    }
}

pub(super) fn auth_settings(settings: &Settings) -> Result<AuthSettings, SettingsError> {
    let pool = settings.get(&AWS_COGNITO_USER_POOL_ID).map(str::trim);
    let jwks = match (settings.get(&CRUDDUR_JWKS).map(str::trim), pool) {
        (Some(jwks), _) => Some(jwks_source(jwks)?),
        (None, Some(pool)) => Some(JwksSource::Url(format!(
            "{}/.well-known/jwks.json",
            pool_issuer(pool)?
        ))),
        (None, None) => None,
    };
    let dev_handle = settings.get(&CRUDDUR_DEV_HANDLE).map(str::trim);
    let Some(jwks) = jwks else {
        return Ok(AuthSettings::Development {
            handle: dev_handle.unwrap_or(DEFAULT_DEV_HANDLE).to_owned(),
        });
    };
    if dev_handle.is_some() {
        return Err(SettingsError::Invalid(
            "CRUDDUR_DEV_HANDLE is set together with a JWKS (CRUDDUR_JWKS or AWS_COGNITO_USER_POOL_ID): \
             posts are either verified or by a fixed handle, never both; unset one"
                .into(),
        ));
    }
    let issuer = match (settings.get(&CRUDDUR_JWT_ISSUER), pool) {
        (Some(issuer), _) => issuer.trim().to_owned(),
        (None, Some(pool)) => pool_issuer(pool)?,
        (None, None) => {
            return Err(SettingsError::Invalid(
                "CRUDDUR_JWKS is set without an issuer: set CRUDDUR_JWT_ISSUER or AWS_COGNITO_USER_POOL_ID"
                    .into(),
            ));
        }
    };
    let client_id = settings
        .get(&AWS_COGNITO_USER_POOL_CLIENT_ID)
        .map(|c| c.trim().to_owned())
        .ok_or_else(|| {
            SettingsError::Invalid(
                "verifying tokens needs the app client id: set AWS_COGNITO_USER_POOL_CLIENT_ID"
                    .into(),
            )
        })?;
    Ok(AuthSettings::Jwt {
        jwks,
        issuer,
        client_id,
    })
}

/// `CRUDDUR_JWKS`: an `https://` URL, or a file. Anything with a scheme
/// (`://`) is a URL, whatever its case, and only `https` is accepted: keys
/// fetched over plain HTTP (or another scheme) could be anyone's, and
/// whoever served them could sign any token. A file whose path contains
/// `://` is named by another spelling of its path (`./a://b`).
fn jwks_source(value: &str) -> Result<JwksSource, SettingsError> {
    let Some((scheme, _)) = value.split_once("://") else {
        return Ok(JwksSource::File(PathBuf::from(value)));
    };
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if is_scheme && scheme.eq_ignore_ascii_case("https") {
        return Ok(JwksSource::Url(value.to_owned()));
    }
    if !is_scheme {
        return Ok(JwksSource::File(PathBuf::from(value)));
    }
    let shown = JwksSource::Url(value.to_owned());
    Err(SettingsError::Invalid(format!(
        "refusing CRUDDUR_JWKS `{shown}`: the key set must come over https:// (keys over plain \
         HTTP could be replaced on the way, and they decide who may post) or from a file, named by its path"
    )))
}

/// The issuer of a Cognito user pool's tokens. A pool id is
/// `<region>_<id>` (`us-east-1_AbC123`), so it names its region.
fn pool_issuer(pool: &str) -> Result<String, SettingsError> {
    let region = pool
        .split_once('_')
        .map(|(region, _)| region)
        .filter(|region| {
            !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .ok_or_else(|| {
            SettingsError::Invalid(format!(
                "invalid AWS_COGNITO_USER_POOL_ID `{pool}`: expected <region>_<id>, e.g. us-east-1_AbC123"
            ))
        })?;
    if !pool
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(SettingsError::Invalid(format!(
            "invalid AWS_COGNITO_USER_POOL_ID `{pool}`: expected <region>_<id>, e.g. us-east-1_AbC123"
        )));
    }
    Ok(format!("https://cognito-idp.{region}.amazonaws.com/{pool}"))
}
