//! Who posts: the user named by a verified Cognito token, or a fixed handle
//! in the development mode.
//!
//! Tokens are verified offline against the user pool's JSON Web Key Set,
//! read once at start-up: RS256 only, the key chosen by the token's `kid`,
//! the issuer, the expiry and any `nbf` (60 s of clock skew allowed either
//! way) and the app client (`aud` of an ID token, `client_id` of an access
//! token). A token whose header has `crit` is refused: it names extensions
//! the signer requires to be understood, and this verifier understands
//! none (RFC 7515, 4.1.11). A `sub` that is empty or holds a control
//! character (NUL included, which PostgreSQL's text cannot store) names no
//! user and is refused as the token's fault, never reaching the database.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use crate::settings::{AuthSettings, JwksSource};

/// How long fetching the JWKS from its URL may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How the author of a post is found.
#[derive(Debug)]
pub enum Auth {
    /// From a verified token's `sub`.
    Jwt(Box<Verifier>),
    /// Every post is by this handle, unverified.
    Development {
        /// The author.
        handle: String,
    },
}

impl Auth {
    /// Sets up authentication as `settings` say, reading the JWKS (from its
    /// file, or its URL: this blocks for at most [`JWKS_FETCH_TIMEOUT`]).
    pub fn load(settings: &AuthSettings) -> Result<Self, AuthError> {
        match settings {
            AuthSettings::Development { handle } => Ok(Auth::Development {
                handle: handle.clone(),
            }),
            AuthSettings::Jwt {
                jwks,
                issuer,
                client_id,
            } => {
                let json = read_jwks(jwks)?;
                Verifier::from_jwks(&json, issuer, client_id).map(|v| Auth::Jwt(Box::new(v)))
            }
        }
    }
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The JWKS could not be read.
    #[error("cannot read the JWKS from {source_name}: {reason}")]
    Unreadable {
        /// The file or URL.
        source_name: String,
        /// What failed.
        reason: String,
    },
    /// The JWKS is not a key set with a usable RS256 key.
    #[error("invalid JWKS: {0}")]
    Invalid(String),
}

fn read_jwks(source: &JwksSource) -> Result<String, AuthError> {
    let unreadable = |reason: String| AuthError::Unreadable {
        source_name: source.to_string(),
        reason,
    };
    match source {
        JwksSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))
        }
        JwksSource::Url(url) => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(JWKS_FETCH_TIMEOUT))
                .build()
                .into();
            agent
                .get(url)
                .call()
                .map_err(|e| unreadable(e.to_string()))?
                .body_mut()
                .read_to_string()
                .map_err(|e| unreadable(e.to_string()))
        }
    }
}

/// Verifies tokens against a key set.
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    client_id: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("issuer", &self.validation.iss)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// The claims a post needs.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// `access` or `id` on Cognito's tokens.
    token_use: Option<String>,
    /// The app client of an access token.
    client_id: Option<String>,
    /// The app client of an ID token.
    aud: Option<serde_json::Value>,
    /// Checked by jsonwebtoken when it is a number; anything else it skips,
    /// so it is refused here.
    nbf: Option<serde_json::Value>,
}

/// Why a token was refused. Never shown to the client (a 401 says `{}`);
/// logged at debug level.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, a bad signature, expired, wrong issuer, ...
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// Signed by a key not in the set, or without a `kid`.
    #[error("no key with kid {0:?} in the JWKS")]
    UnknownKey(Option<String>),
    /// Issued for another app client, or not an access or ID token.
    #[error("issued for another app client or use")]
    WrongClient,
    /// The header has `crit`: extensions that must be understood.
    #[error("the header names critical extensions (crit), none of which is understood")]
    CriticalExtensions,
    /// An `nbf` that is not a number: a time that cannot be checked.
    #[error("the nbf is not a NumericDate")]
    BadNotBefore,
    /// A `sub` that is empty or holds a control character.
    #[error("the sub is empty or holds a control character")]
    BadSubject,
}

impl Verifier {
    /// A verifier for the RS256 keys of `jwks` (a JWKS document), accepting
    /// tokens from `issuer` for `client_id`.
    pub fn from_jwks(jwks: &str, issuer: &str, client_id: &str) -> Result<Self, AuthError> {
        let set: JwkSet =
            serde_json::from_str(jwks).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), AlgorithmParameters::RSA(_)) = (&jwk.common.key_id, &jwk.algorithm)
            else {
                continue;
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| AuthError::Invalid(format!("key {kid}: {e}")))?;
            keys.insert(kid.clone(), key);
        }
        if keys.is_empty() {
            return Err(AuthError::Invalid(
                "no RSA key with a kid in the set".into(),
            ));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // A token that is not valid yet is refused (jsonwebtoken skips
        // `nbf` unless told; a missing `nbf` stays allowed).
        validation.validate_nbf = true;
        // Checked below: an access token names its client in `client_id`.
        validation.validate_aud = false;
        Ok(Self {
            keys,
            validation,
            client_id: client_id.to_owned(),
        })
    }

    /// The `sub` of `token` when it verifies.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        let header = decode_header(token)?;
        if has_crit(token) {
            return Err(TokenError::CriticalExtensions);
        }
        let key = header
            .kid
            .as_ref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey(header.kid.clone()))?;
        let claims = decode::<Claims>(token, key, &self.validation)?.claims;
        let use_ok = matches!(claims.token_use.as_deref(), None | Some("access" | "id"));
        let for_us = claims.client_id.as_deref() == Some(self.client_id.as_str())
            || match &claims.aud {
                Some(serde_json::Value::String(aud)) => *aud == self.client_id,
                Some(serde_json::Value::Array(auds)) => auds
                    .iter()
                    .any(|a| a.as_str() == Some(self.client_id.as_str())),
                _ => false,
            };
        if !(use_ok && for_us) {
            return Err(TokenError::WrongClient);
        }
        if claims.nbf.as_ref().is_some_and(|nbf| !nbf.is_number()) {
            return Err(TokenError::BadNotBefore);
        }
        if claims.sub.trim().is_empty() || claims.sub.chars().any(char::is_control) {
            return Err(TokenError::BadSubject);
        }
        Ok(claims.sub)
    }
}

/// Whether the header of `token` (which [`decode_header`] has read) has a
/// `crit` member, whatever its value: jsonwebtoken's header type drops
/// members it does not know, so the header is read again as a JSON
/// object. JSON escapes in the name (`"cr\u0069t"`) are decoded first.
fn has_crit(token: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()
        .and_then(|json| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json).ok()
        })
        // decode_header read it; a header that does not read as an object
        // here is refused, not waved through.
        .is_none_or(|header| header.contains_key("crit"))
}
