//! Connection strings, parsed once by libpq itself.
//!
//! A [`DatabaseUrl`] is whatever libpq accepts (a `postgres://` or
//! `postgresql://` URI, or a `key=value` string), read with libpq's own
//! parser, `PQconninfoParse`, from the libpq that Diesel links. There is no
//! second parser in the crate: the database name a command reports, the
//! `PG*` variables handed to `psql`, the URL of another database on the same
//! server and the redacted form shown to people are all derived from the
//! keywords and values libpq found, so they cannot disagree with what libpq
//! does when it connects. A doubled slash (`…:5432//cruddur`), a repeated
//! `dbname`, a `?host=` that overrides the authority or a percent-encoded
//! socket path mean here exactly what they mean to libpq.
//!
//! What libpq fills in at connect time from elsewhere (`PG*` variables, a
//! service file, the user name as the default database) is not in the string;
//! which database a connection reached is asked of the server
//! ([`crate::admin::identify`]).

use std::ffi::{CStr, CString, c_char};
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A PostgreSQL connection string (URI or `key=value`), parsed by libpq,
/// whose password is never shown: `Display` and `Debug` print the parsed
/// parameters with `password` and `sslpassword` as `***`.
///
/// Use [`DatabaseUrl::expose`] only to hand the string to libpq.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// The text as given (or as rendered for a derived URL): what libpq gets.
    raw: String,
    /// libpq's reading of `raw`: every keyword that has a value, in libpq's
    /// own order, each once (a repeated keyword keeps its last value).
    params: Vec<(String, String)>,
    /// How to render it: as a URI or as `key=value` pairs.
    style: Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// A URI with this scheme prefix (`postgres://` or `postgresql://`, as
    /// given).
    Uri(&'static str),
    KeyValue,
}

/// The keywords whose value is a secret.
const SECRET_KEYWORDS: &[&str] = &["password", "sslpassword"];

impl DatabaseUrl {
    /// Parses `raw` with libpq's parser. A string libpq refuses is an
    /// [`Error::InvalidUrl`] that does not repeat the string (it may hold a
    /// password that could not be located).
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let invalid = |reason: String| Error::InvalidUrl {
            url: String::new(),
            reason,
        };
        if raw.is_empty() {
            return Err(invalid("the connection string is empty".into()));
        }
        let params = ffi::parse(raw).map_err(|reason| {
            invalid(format!(
                "{reason} (expected postgres://user:password@host:port/database or host=… dbname=…)"
            ))
        })?;
        Ok(Self {
            raw: raw.to_owned(),
            params,
            style: uri_prefix(raw).map_or(Style::KeyValue, Style::Uri),
        })
    }

    /// A `postgresql://` URL holding exactly `params` (libpq keywords and
    /// their plain values: nothing to encode or quote by hand). Fails like
    /// [`DatabaseUrl::parse`] on a keyword libpq does not know.
    pub fn from_params(params: &[(&str, &str)]) -> Result<Self> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::parse(&render(&params, Style::Uri("postgresql://"), false))
    }

    /// A connection string holding exactly `params` (libpq keywords), in
    /// `style`.
    fn rendered(params: Vec<(String, String)>, style: Style) -> Self {
        let raw = render(&params, style, false);
        // Read back through libpq, so that the parameters held are libpq's
        // reading of the text it will be given (`render` is built for that,
        // and the tests hold it to it).
        let params = ffi::parse(&raw).unwrap_or(params);
        Self { raw, params, style }
    }

    /// The full connection string, password included. Hand it to libpq
    /// only; never print it.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// Every parameter the string sets, as libpq read it (`host`, `port`,
    /// `dbname`, `user`, `password`, `sslmode`, …), in libpq's order. Holds
    /// the password: never print it.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The value libpq read for `keyword`, if the string sets it.
    pub fn param(&self, keyword: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
    }

    /// The password, if the string holds one.
    pub fn password(&self) -> Option<String> {
        self.param("password").map(str::to_owned)
    }

    /// The database name the string gives (`dbname`), if any. Without one,
    /// libpq uses `PGDATABASE` or the user name; ask the server
    /// (`current_database()`) for the name a connection reached.
    pub fn database(&self) -> Option<String> {
        self.param("dbname")
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
    }

    /// The database name libpq asks the server for with this string: its
    /// `dbname`, else what libpq fills in at connect time (a `service`'s
    /// `dbname`, `PGDATABASE`, the user name). `None` when libpq cannot
    /// settle it (e.g. a service that is not defined). The name a
    /// connection reached is still the server's to say
    /// ([`crate::admin::identify`]).
    pub fn requested_database(&self) -> Option<String> {
        self.database().or_else(|| self.settled_param("dbname"))
    }

    /// Every option libpq connects with for this string, once it has
    /// filled in what the string leaves out (`PG*` variables, a service
    /// file, the user name, the default socket directory); not a password
    /// from a password file, which libpq reads only when the server asks.
    /// Holds the password: never print it. `None` when libpq cannot settle
    /// them (e.g. a service that is not defined).
    pub(crate) fn settled_params(&self) -> Option<Vec<(String, String)>> {
        ffi::settled(&self.raw)
    }

    /// The value libpq connects with for `keyword` ([`Self::settled_params`]),
    /// when it has a non-empty one.
    fn settled_param(&self, keyword: &str) -> Option<String> {
        self.settled_params()?
            .into_iter()
            .find(|(k, v)| k == keyword && !v.is_empty())
            .map(|(_, v)| v)
    }

    /// The same string with `keyword` set to `value` (replacing any value it
    /// had).
    pub fn with_param(&self, keyword: &str, value: &str) -> Self {
        let mut params = self.params.clone();
        match params.iter_mut().find(|(k, _)| k == keyword) {
            Some((_, v)) => *v = value.to_owned(),
            None => params.push((keyword.to_owned(), value.to_owned())),
        }
        Self::rendered(params, self.style)
    }

    /// The same server, credentials and options, with the database replaced
    /// by `database`.
    pub fn with_database(&self, database: &str) -> Self {
        self.with_param("dbname", database)
    }

    /// The same string with `keyword` set to `value` when it is not set
    /// already (`connect_timeout`, `application_name`, ...).
    pub fn with_default_param(&self, keyword: &str, value: &str) -> Self {
        self.with_default_params(&[(keyword, value)])
    }

    /// The same string with each `(keyword, value)` set where the string
    /// does not set that keyword already.
    pub fn with_default_params(&self, defaults: &[(&str, &str)]) -> Self {
        let missing: Vec<(String, String)> = defaults
            .iter()
            .filter(|(k, _)| self.param(k).is_none())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if missing.is_empty() {
            return self.clone();
        }
        let mut params = self.params.clone();
        params.extend(missing);
        Self::rendered(params, self.style)
    }

    /// Removes every occurrence of this string's secrets from `text`, for
    /// messages that come from libpq or the server.
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        for key in SECRET_KEYWORDS {
            if let Some(secret) = self.param(key).filter(|s| !s.is_empty()) {
                secrets.push(percent_encode(secret));
                secrets.push(secret.to_owned());
            }
        }
        if let Some((start, end)) = userinfo_password_span(&self.raw) {
            secrets.push(self.raw[start..end].to_owned());
        }
        scrub_secrets(text, &secrets)
    }
}

impl PartialEq for DatabaseUrl {
    /// Two strings are equal when libpq reads the same parameters from them.
    fn eq(&self, other: &Self) -> bool {
        let sorted = |u: &Self| {
            let mut p = u.params.clone();
            p.sort();
            p
        };
        sorted(self) == sorted(other)
    }
}

impl Eq for DatabaseUrl {}

impl FromStr for DatabaseUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(&self.params, self.style, true))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// The redacted form of a connection string for messages: libpq's reading
/// of it with the secrets as `***`, or a placeholder when libpq cannot
/// parse it (such a string is never echoed: where its password is cannot be
/// known).
pub fn redact(raw: &str) -> String {
    match DatabaseUrl::parse(raw) {
        Ok(url) => url.to_string(),
        Err(_) => "(a connection string that does not parse; not shown)".to_owned(),
    }
}

/// `text` with each secret, and its percent-encoded form as a URL holds it,
/// replaced by `***` wherever it stands as a whole token (not inside a
/// longer word, and not as a URL scheme before `://`), longest first. A safety net for text that came from elsewhere
/// (libpq, the server); connection strings are shown through
/// [`DatabaseUrl`]'s `Display`, which leaves secrets out structurally.
pub fn scrub_secrets(text: &str, secrets: &[String]) -> String {
    let encoded: Vec<String> = secrets.iter().map(|s| percent_encode(s)).collect();
    let mut secrets: Vec<&str> = secrets
        .iter()
        .chain(&encoded)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets.into_iter().fold(text.to_owned(), |text, secret| {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(i) = rest.find(secret) {
            out.push_str(&rest[..i]);
            let after_text = &rest[i + secret.len()..];
            let glued = word(secret.chars().next()) && word(out.chars().last())
                || word(secret.chars().last()) && word(after_text.chars().next());
            if glued || after_text.starts_with("://") {
                out.push_str(secret);
            } else {
                out.push_str("***");
            }
            rest = after_text;
        }
        out.push_str(rest);
        out
    })
}

/// The URI prefix libpq recognises at the start of `raw`, if any (its
/// `uri_prefix_length`).
fn uri_prefix(raw: &str) -> Option<&'static str> {
    ["postgresql://", "postgres://"]
        .into_iter()
        .find(|prefix| raw.starts_with(prefix))
}

/// The byte range of the password in `scheme://user:password@host...` as
/// typed (possibly percent-encoded), so that [`DatabaseUrl::scrub`] also
/// hides that spelling: from the first `:` after the scheme to the last `@`
/// before any `/` or `?` that follows it.
fn userinfo_password_span(raw: &str) -> Option<(usize, usize)> {
    uri_prefix(raw)?;
    let after_scheme = raw.find("://")? + 3;
    let at = after_scheme + raw[after_scheme..].rfind('@')?;
    let colon = after_scheme + raw[after_scheme..at].find(':')?;
    Some((colon + 1, at))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, which
/// libpq's URI parser decodes back to the same bytes in every position.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A host that can stand in a URI's authority as it is: one name or IPv4
/// address, or one IPv6 address (bracketed there).
fn authority_host(host: &str) -> Option<String> {
    let name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !host.is_empty() && host.chars().all(name) && !host.starts_with(['.', '-']) {
        return Some(host.to_owned());
    }
    let v6 = |c: char| c.is_ascii_hexdigit() || matches!(c, ':' | '.');
    (host.contains(':') && host.chars().all(v6)).then(|| format!("[{host}]"))
}

/// Renders `params` so that libpq reads exactly `params` back; with `mask`,
/// secrets are `***` (for display; that text is never given to libpq).
fn render(params: &[(String, String)], style: Style, mask: bool) -> String {
    let scheme = match style {
        Style::Uri(scheme) => scheme,
        Style::KeyValue => {
            return params
                .iter()
                .map(|(k, v)| {
                    if mask && SECRET_KEYWORDS.contains(&k.as_str()) {
                        format!("{k}=***")
                    } else {
                        format!("{k}={}", quote_key_value(v))
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
    };
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let mut used: Vec<&str> = Vec::new();
    let mut out = String::from(scheme);
    let user = get("user").filter(|u| !u.is_empty());
    if let Some(user) = user {
        out.push_str(&percent_encode(user));
        used.push("user");
        if let Some(password) = get("password") {
            out.push(':');
            out.push_str(&if mask && !password.is_empty() {
                "***".to_owned()
            } else {
                percent_encode(password)
            });
            used.push("password");
        }
        out.push('@');
    }
    if let Some(host) = get("host").and_then(|h| authority_host(h)) {
        out.push_str(&host);
        used.push("host");
        if let Some(port) =
            get("port").filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            out.push(':');
            out.push_str(port);
            used.push("port");
        }
    }
    if let Some(dbname) = get("dbname") {
        out.push('/');
        out.push_str(&percent_encode(dbname));
        used.push("dbname");
    }
    let query: Vec<String> = params
        .iter()
        .filter(|(k, _)| !used.contains(&k.as_str()))
        .map(|(k, v)| {
            let value = if mask && SECRET_KEYWORDS.contains(&k.as_str()) {
                "***".to_owned()
            } else {
                // A slash stays readable in paths (`host=/tmp`,
                // `sslrootcert=/etc/…`): after the path's `/`, libpq takes
                // it literally.
                percent_encode(v).replace("%2F", "/")
            };
            format!("{k}={value}")
        })
        .collect();
    if !query.is_empty() {
        if get("dbname").is_none() {
            out.push('/');
        }
        out.push('?');
        out.push_str(&query.join("&"));
    }
    out
}

/// A value as libpq's `key=value` parser reads it back: quoted when empty
/// or holding whitespace, a quote or a backslash.
pub fn quote_key_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The one place that calls into libpq for parsing.
mod ffi;

#[cfg(test)]
mod tests;
