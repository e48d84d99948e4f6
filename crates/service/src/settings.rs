//! The service's own settings, read from the project's [`Settings`] (the
//! environment and `.env`, read once) and the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cruddur_db::Settings;

use crate::transport::Transport;

/// Where the service listens unless told otherwise: loopback, on the
/// original backend's port.
pub const DEFAULT_BIND: &str = "127.0.0.1:4567";

/// The handle a development-mode service posts as (the original's week 4
/// hard-coded it).
pub const DEFAULT_DEV_HANDLE: &str = "andrewbrown";

/// Everything the service needs besides the database.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The address to listen on (`--bind`, else `CRUDDUR_BIND`, else
    /// [`DEFAULT_BIND`]).
    pub bind: SocketAddr,
    /// Origins allowed by CORS: `FRONTEND_URL` and `BACKEND_URL`, as set.
    pub allowed_origins: Vec<String>,
    /// Who posts.
    pub auth: AuthSettings,
    /// The transport's timeouts, connection cap and shutdown deadline.
    pub transport: Transport,
}

/// The longest timeout or deadline accepted, in milliseconds: one day.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// The largest `CRUDDUR_MAX_CONNECTIONS` accepted: a million (each
/// connection is a file descriptor; the process limit binds first).
pub const MAX_CONNECTIONS: usize = 1_000_000;

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

/// A setting that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl ServiceSettings {
    /// Reads the service's settings from `settings`, with `bind` from the
    /// command line winning over `CRUDDUR_BIND`.
    ///
    /// Authentication is by JWT when `CRUDDUR_JWKS` or
    /// `AWS_COGNITO_USER_POOL_ID` is set; the issuer is `CRUDDUR_JWT_ISSUER`
    /// or the user pool's, and the client id `AWS_COGNITO_USER_POOL_CLIENT_ID`
    /// (required). Otherwise it is the development mode, posting as
    /// `CRUDDUR_DEV_HANDLE` (default [`DEFAULT_DEV_HANDLE`]); setting both a
    /// JWKS and a development handle is an error, never a choice.
    pub fn from_settings(
        settings: &Settings,
        bind: Option<SocketAddr>,
    ) -> Result<Self, SettingsError> {
        let bind = match bind {
            Some(bind) => bind,
            None => parse_bind(settings.get("CRUDDUR_BIND").unwrap_or(DEFAULT_BIND))?,
        };
        let allowed_origins = ["FRONTEND_URL", "BACKEND_URL"]
            .into_iter()
            .filter_map(|name| settings.get(name).map(|v| (name, v)))
            .map(|(name, value)| origin(name, value))
            .collect::<Result<_, _>>()?;
        let auth = auth_settings(settings)?;
        let allow_network = flag(settings, "CRUDDUR_DEV_ALLOW_NETWORK")?;
        if matches!(auth, AuthSettings::Development { .. })
            && !bind.ip().to_canonical().is_loopback()
            && !allow_network
        {
            return Err(SettingsError(format!(
                "refusing to listen on {bind} in the development mode, where every post is \
                 accepted unverified: bind a loopback address (127.0.0.1, ::1), configure \
                 token verification (CRUDDUR_JWKS or AWS_COGNITO_USER_POOL_ID), or set \
                 CRUDDUR_DEV_ALLOW_NETWORK=1 to expose it anyway"
            )));
        }
        Ok(Self {
            bind,
            allowed_origins,
            auth,
            transport: transport_settings(settings)?,
        })
    }
}

/// The transport's limits, each from its variable or its default.
fn transport_settings(settings: &Settings) -> Result<Transport, SettingsError> {
    let defaults = Transport::default();
    let millis = |name: &str, min: u64, default: Duration| -> Result<Duration, SettingsError> {
        match settings.get(name) {
            None => Ok(default),
            Some(value) => number(name, value, min, MAX_TIMEOUT_MS).map(Duration::from_millis),
        }
    };
    Ok(Transport {
        header_read_timeout: millis(
            "CRUDDUR_HEADER_READ_TIMEOUT_MS",
            1,
            defaults.header_read_timeout,
        )?,
        idle_timeout: millis("CRUDDUR_IDLE_TIMEOUT_MS", 1, defaults.idle_timeout)?,
        max_connections: match settings.get("CRUDDUR_MAX_CONNECTIONS") {
            None => defaults.max_connections,
            Some(value) => number("CRUDDUR_MAX_CONNECTIONS", value, 1, MAX_CONNECTIONS)?,
        },
        shutdown_deadline: millis(
            "CRUDDUR_SHUTDOWN_DEADLINE_MS",
            0,
            defaults.shutdown_deadline,
        )?,
    })
}

/// A whole number from `min` to `max`, or an error naming `name` and the
/// range.
fn number<T>(name: &str, value: &str, min: T, max: T) -> Result<T, SettingsError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    value
        .trim()
        .parse::<T>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            SettingsError(format!(
                "invalid value `{}` for {name}: must be a whole number from {min} to {max}",
                value.chars().take(40).collect::<String>()
            ))
        })
}

/// A switch: `1` is on, `0` or unset off; anything else is refused rather
/// than guessed at.
fn flag(settings: &Settings, name: &str) -> Result<bool, SettingsError> {
    match settings.get(name).map(str::trim) {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(SettingsError(format!(
            "invalid value `{}` for {name}: must be 1 or 0",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

fn parse_bind(value: &str) -> Result<SocketAddr, SettingsError> {
    resolve_bind(value).map_err(|e| SettingsError(format!("invalid CRUDDUR_BIND `{value}`: {e}")))
}

/// The address to listen on for `value`: an address and port
/// (`127.0.0.1:4567`, `[::1]:4567`) or a host name and port
/// (`localhost:4567`, resolved now; its first address is used).
pub fn resolve_bind(value: &str) -> Result<SocketAddr, SettingsError> {
    use std::net::ToSocketAddrs;
    let value = value.trim();
    if let Ok(address) = value.parse() {
        return Ok(address);
    }
    let expected = || {
        SettingsError(format!(
            "expected an address or host name and a port, such as {DEFAULT_BIND} or localhost:4567"
        ))
    };
    if value
        .rsplit_once(':')
        .is_none_or(|(host, _)| host.is_empty())
    {
        return Err(expected());
    }
    value
        .to_socket_addrs()
        .map_err(|_| expected())?
        .next()
        .ok_or_else(expected)
}

/// An origin as browsers send it: scheme, host and port, without a path or
/// a trailing slash (`https://example.com/` names the origin
/// `https://example.com`).
fn origin(name: &str, value: &str) -> Result<String, SettingsError> {
    let trimmed = value.trim().trim_end_matches('/');
    let valid = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && !trimmed.split_once("://").is_some_and(|(_, rest)| {
            rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace)
        });
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err(SettingsError(format!(
            "invalid {name} `{value}`: expected an origin such as http://localhost:3000"
        )))
    }
}

fn auth_settings(settings: &Settings) -> Result<AuthSettings, SettingsError> {
    let pool = settings.get("AWS_COGNITO_USER_POOL_ID").map(str::trim);
    let jwks = match (settings.get("CRUDDUR_JWKS").map(str::trim), pool) {
        (Some(jwks), _) => Some(jwks_source(jwks)?),
        (None, Some(pool)) => Some(JwksSource::Url(format!(
            "{}/.well-known/jwks.json",
            pool_issuer(pool)?
        ))),
        (None, None) => None,
    };
    let dev_handle = settings.get("CRUDDUR_DEV_HANDLE").map(str::trim);
    let Some(jwks) = jwks else {
        return Ok(AuthSettings::Development {
            handle: dev_handle.unwrap_or(DEFAULT_DEV_HANDLE).to_owned(),
        });
    };
    if dev_handle.is_some() {
        return Err(SettingsError(
            "CRUDDUR_DEV_HANDLE is set together with a JWKS (CRUDDUR_JWKS or AWS_COGNITO_USER_POOL_ID): \
             posts are either verified or by a fixed handle, never both; unset one"
                .into(),
        ));
    }
    let issuer = match (settings.get("CRUDDUR_JWT_ISSUER"), pool) {
        (Some(issuer), _) => issuer.trim().to_owned(),
        (None, Some(pool)) => pool_issuer(pool)?,
        (None, None) => {
            return Err(SettingsError(
                "CRUDDUR_JWKS is set without an issuer: set CRUDDUR_JWT_ISSUER or AWS_COGNITO_USER_POOL_ID"
                    .into(),
            ));
        }
    };
    let client_id = settings
        .get("AWS_COGNITO_USER_POOL_CLIENT_ID")
        .map(|c| c.trim().to_owned())
        .ok_or_else(|| {
            SettingsError(
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
    Err(SettingsError(format!(
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
            SettingsError(format!(
                "invalid AWS_COGNITO_USER_POOL_ID `{pool}`: expected <region>_<id>, e.g. us-east-1_AbC123"
            ))
        })?;
    if !pool
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(SettingsError(format!(
            "invalid AWS_COGNITO_USER_POOL_ID `{pool}`: expected <region>_<id>, e.g. us-east-1_AbC123"
        )));
    }
    Ok(format!("https://cognito-idp.{region}.amazonaws.com/{pool}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        vars.iter()
            .fold(Settings::default(), |s, (k, v)| s.with(k, *v))
    }

    #[test]
    fn without_a_jwks_it_is_the_development_mode_on_loopback() {
        let s = ServiceSettings::from_settings(&settings(&[]), None).unwrap();
        assert_eq!(s.bind.to_string(), DEFAULT_BIND);
        assert_eq!(
            s.auth,
            AuthSettings::Development {
                handle: "andrewbrown".into()
            }
        );
        assert!(s.allowed_origins.is_empty());
    }

    #[test]
    fn a_user_pool_gives_the_jwks_url_and_the_issuer() {
        let s = ServiceSettings::from_settings(
            &settings(&[
                ("AWS_COGNITO_USER_POOL_ID", "us-east-1_AbC123"),
                ("AWS_COGNITO_USER_POOL_CLIENT_ID", "client"),
            ]),
            None,
        )
        .unwrap();
        let issuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123";
        assert_eq!(
            s.auth,
            AuthSettings::Jwt {
                jwks: JwksSource::Url(format!("{issuer}/.well-known/jwks.json")),
                issuer: issuer.into(),
                client_id: "client".into(),
            }
        );
    }

    #[test]
    fn bad_or_conflicting_settings_are_refused_with_the_variable_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("CRUDDUR_JWKS", "/keys.json"),
                    ("CRUDDUR_DEV_HANDLE", "bayko"),
                ],
                "never both",
            ),
            (
                &[
                    ("CRUDDUR_JWKS", "/keys.json"),
                    ("AWS_COGNITO_USER_POOL_CLIENT_ID", "c"),
                ],
                "CRUDDUR_JWT_ISSUER",
            ),
            (
                &[
                    ("CRUDDUR_JWKS", "/keys.json"),
                    ("CRUDDUR_JWT_ISSUER", "https://issuer"),
                ],
                "AWS_COGNITO_USER_POOL_CLIENT_ID",
            ),
            (
                &[("AWS_COGNITO_USER_POOL_ID", "no-region")],
                "AWS_COGNITO_USER_POOL_ID",
            ),
            (
                &[("AWS_COGNITO_USER_POOL_ID", "us-east-1_a/../b")],
                "AWS_COGNITO_USER_POOL_ID",
            ),
            (&[("CRUDDUR_BIND", "localhost")], "CRUDDUR_BIND"),
            (&[("CRUDDUR_BIND", ":4567")], "CRUDDUR_BIND"),
            (&[("FRONTEND_URL", "localhost:3000")], "FRONTEND_URL"),
            (&[("BACKEND_URL", "http://host/path")], "BACKEND_URL"),
        ];
        for (vars, expected) in cases {
            let err = ServiceSettings::from_settings(&settings(vars), None).unwrap_err();
            assert!(err.to_string().contains(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn a_jwks_is_an_https_url_or_a_file_and_any_other_scheme_is_refused() {
        let jwks = |value: &str| {
            ServiceSettings::from_settings(
                &settings(&[
                    ("CRUDDUR_JWKS", value),
                    ("CRUDDUR_JWT_ISSUER", "https://issuer"),
                    ("AWS_COGNITO_USER_POOL_CLIENT_ID", "c"),
                ]),
                None,
            )
            .map(|s| match s.auth {
                AuthSettings::Jwt { jwks, .. } => jwks,
                other => panic!("{value}: {other:?}"),
            })
        };
        for refused in [
            "http://keys.example/jwks.json",
            "HTTP://keys.example/jwks.json",
            "Http://keys.example/jwks.json",
            "  http://127.0.0.1:9/jwks.json  ",
            "http://user:secret@keys.example/jwks.json",
            "file:///etc/jwks.json",
            "ftp://keys.example/jwks.json",
            "ws://keys.example/jwks.json",
            "https+http://keys.example/jwks.json",
        ] {
            let err = jwks(refused).unwrap_err().to_string();
            assert!(
                err.contains("CRUDDUR_JWKS") && err.contains("https://"),
                "{refused}: {err}"
            );
            assert!(!err.contains("secret"), "{refused}: {err}");
        }
        for url in [
            "https://keys.example/jwks.json",
            "HTTPS://keys.example/jwks.json",
        ] {
            assert_eq!(jwks(url).unwrap(), JwksSource::Url(url.into()), "{url}");
        }
        for file in ["/keys/jwks.json", "keys.json", "./a://b.json"] {
            assert_eq!(
                jwks(file).unwrap(),
                JwksSource::File(PathBuf::from(file)),
                "{file}"
            );
        }
    }

    #[test]
    fn the_development_mode_listens_only_on_loopback_unless_allowed() {
        let dev = |bind: &str, extra: &[(&str, &str)]| {
            let mut vars = vec![("CRUDDUR_BIND", bind)];
            vars.extend_from_slice(extra);
            ServiceSettings::from_settings(&settings(&vars), None)
        };
        for loopback in [
            "127.0.0.1:4567",
            "127.0.0.2:4567",
            "[::1]:4567",
            "[::ffff:127.0.0.1]:4567",
            "localhost:4567",
        ] {
            assert!(dev(loopback, &[]).is_ok(), "{loopback}");
        }
        for exposed in [
            "0.0.0.0:4567",
            "[::]:4567",
            "192.0.2.10:4567",
            "[::ffff:0.0.0.0]:4567",
            "[2001:db8::1]:4567",
        ] {
            let err = dev(exposed, &[]).unwrap_err().to_string();
            assert!(
                err.contains("development mode") && err.contains("CRUDDUR_DEV_ALLOW_NETWORK=1"),
                "{exposed}: {err}"
            );
            for off in ["0", " 0 "] {
                assert!(
                    dev(exposed, &[("CRUDDUR_DEV_ALLOW_NETWORK", off)]).is_err(),
                    "{exposed} with {off:?}"
                );
            }
            assert!(
                dev(exposed, &[("CRUDDUR_DEV_ALLOW_NETWORK", "1")]).is_ok(),
                "{exposed}"
            );
            for unclear in ["yes", "true", "on", "2", "01", "1 1"] {
                let err = dev(exposed, &[("CRUDDUR_DEV_ALLOW_NETWORK", unclear)])
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains("CRUDDUR_DEV_ALLOW_NETWORK") && err.contains("1 or 0"),
                    "{unclear}: {err}"
                );
            }
        }
        // The flag is held to the same rule as the variable.
        let flag =
            ServiceSettings::from_settings(&settings(&[]), Some("0.0.0.0:1".parse().unwrap()));
        assert!(flag.is_err());
        // With token verification, any address.
        let verified = ServiceSettings::from_settings(
            &settings(&[
                ("CRUDDUR_BIND", "0.0.0.0:4567"),
                ("CRUDDUR_JWKS", "/keys.json"),
                ("CRUDDUR_JWT_ISSUER", "https://issuer"),
                ("AWS_COGNITO_USER_POOL_CLIENT_ID", "c"),
            ]),
            None,
        );
        assert!(verified.is_ok(), "{verified:?}");
    }

    #[test]
    fn the_transport_limits_default_and_bad_values_name_the_variable_and_the_range() {
        let s = ServiceSettings::from_settings(&settings(&[]), None).unwrap();
        assert_eq!(s.transport, Transport::default());
        assert_eq!(s.transport.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.transport.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.transport.max_connections, 1024);
        assert_eq!(s.transport.shutdown_deadline, Duration::from_secs(30));
        let s = ServiceSettings::from_settings(
            &settings(&[
                ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "250"),
                ("CRUDDUR_IDLE_TIMEOUT_MS", " 1000 "),
                ("CRUDDUR_MAX_CONNECTIONS", "2"),
                ("CRUDDUR_SHUTDOWN_DEADLINE_MS", "0"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            s.transport,
            Transport {
                header_read_timeout: Duration::from_millis(250),
                idle_timeout: Duration::from_millis(1000),
                max_connections: 2,
                shutdown_deadline: Duration::ZERO,
            }
        );
        for (name, value) in [
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "0"),
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "-1"),
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "10s"),
            ("CRUDDUR_HEADER_READ_TIMEOUT_MS", "1e3"),
            ("CRUDDUR_IDLE_TIMEOUT_MS", "86400001"),
            ("CRUDDUR_IDLE_TIMEOUT_MS", "18446744073709551616"),
            ("CRUDDUR_MAX_CONNECTIONS", "0"),
            ("CRUDDUR_MAX_CONNECTIONS", "1000001"),
            ("CRUDDUR_MAX_CONNECTIONS", "4294967296"),
            ("CRUDDUR_SHUTDOWN_DEADLINE_MS", "-0.5"),
            ("CRUDDUR_SHUTDOWN_DEADLINE_MS", "infinity"),
        ] {
            let err = ServiceSettings::from_settings(&settings(&[(name, value)]), None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(name) && err.contains("whole number from"),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn a_jwks_url_is_shown_without_its_user_information() {
        let shown = |url: &str| JwksSource::Url(url.into()).to_string();
        assert_eq!(
            shown("https://user:pw@keys.example/a@b/jwks.json"),
            "https://***@keys.example/a@b/jwks.json"
        );
        assert_eq!(
            shown("https://keys.example/jwks.json?x=a@b"),
            "https://keys.example/jwks.json?x=a@b"
        );
    }

    #[test]
    fn a_host_name_binds_to_its_address() {
        let s =
            ServiceSettings::from_settings(&settings(&[("CRUDDUR_BIND", "localhost:4599")]), None)
                .unwrap();
        assert!(s.bind.ip().is_loopback(), "{}", s.bind);
        assert_eq!(s.bind.port(), 4599);
    }

    #[test]
    fn origins_lose_a_trailing_slash_and_the_flag_wins_over_the_variable() {
        let s = ServiceSettings::from_settings(
            &settings(&[
                ("FRONTEND_URL", "https://cruddur.example/"),
                ("BACKEND_URL", "http://localhost:4567"),
                ("CRUDDUR_BIND", "0.0.0.0:80"),
            ]),
            Some("127.0.0.1:9".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(
            s.allowed_origins,
            ["https://cruddur.example", "http://localhost:4567"]
        );
        assert_eq!(s.bind.to_string(), "127.0.0.1:9");
    }
}
