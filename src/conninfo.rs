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
mod ffi {
    #![expect(
        unsafe_code,
        reason = "PQconninfoParse is libpq's own connection-string parser; \
                  calling it is the only way to read a string exactly as libpq does"
    )]

    use super::{CStr, CString, c_char};

    /// Copies a C string libpq owns.
    ///
    /// # Safety
    /// `ptr` is a valid NUL-terminated string that outlives the call.
    unsafe fn owned(ptr: *const c_char) -> Result<String, String> {
        // SAFETY: guaranteed by the caller.
        let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
        String::from_utf8(bytes.to_vec())
            .map_err(|_| "a value is not valid UTF-8 once percent-decoded".to_owned())
    }

    /// Every keyword libpq knows, in its own order.
    pub(super) fn keywords() -> Vec<String> {
        let Ok(empty) = CString::new("") else {
            return Vec::new();
        };
        walk(&empty, |keyword, _| Some(keyword)).unwrap_or_default()
    }

    /// The `(keyword, value)` pairs libpq reads from `raw`, or libpq's error
    /// message with every quoted fragment that is not a keyword left out
    /// (a fragment may be part of a password).
    pub(super) fn parse(raw: &str) -> Result<Vec<(String, String)>, String> {
        let c =
            CString::new(raw).map_err(|_| "the connection string holds a NUL byte".to_owned())?;
        walk(&c, |keyword, value| value.map(|v| (keyword, v)))
    }

    fn walk<T>(
        conninfo: &CString,
        mut pick: impl FnMut(String, Option<String>) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        let mut errmsg: *mut c_char = std::ptr::null_mut();
        // SAFETY: `conninfo` is NUL-terminated and lives across the call;
        // `errmsg` is a valid out-pointer.
        let options = unsafe { pq_sys::PQconninfoParse(conninfo.as_ptr(), &mut errmsg) };
        if options.is_null() {
            let message = if errmsg.is_null() {
                "libpq could not parse it (out of memory)".to_owned()
            } else {
                // SAFETY: libpq returned a NUL-terminated message that we
                // own and free right after copying it.
                let text = unsafe { owned(errmsg) }.unwrap_or_default();
                unsafe { pq_sys::PQfreemem(errmsg.cast()) };
                text
            };
            return Err(sanitize(message.trim()));
        }
        let mut out = Vec::new();
        let mut failure = None;
        let mut option = options;
        loop {
            // SAFETY: libpq returns an array terminated by an entry whose
            // keyword is NULL; `option` never passes that entry.
            let entry = unsafe { &*option };
            if entry.keyword.is_null() {
                break;
            }
            // SAFETY: keyword and (when not NULL) val are NUL-terminated
            // strings owned by the array, alive until PQconninfoFree.
            let keyword = unsafe { owned(entry.keyword) };
            let value = (!entry.val.is_null()).then(|| unsafe { owned(entry.val) });
            match (keyword, value.transpose()) {
                (Ok(keyword), Ok(value)) => {
                    if let Some(item) = pick(keyword, value) {
                        out.push(item);
                    }
                }
                (Err(e), _) | (_, Err(e)) => failure = Some(e),
            }
            // SAFETY: the terminating entry has not been reached, so the
            // next entry is inside the array.
            option = unsafe { option.add(1) };
        }
        // SAFETY: `options` came from PQconninfoParse and is freed once.
        unsafe { pq_sys::PQconninfoFree(options) };
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// libpq's message with each double-quoted fragment replaced by `"…"`
    /// unless it is a connection keyword or `=`.
    fn sanitize(message: &str) -> String {
        let known = keywords();
        message
            .split('"')
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 0 || part == "=" || known.iter().any(|k| k == part) {
                    part.to_owned()
                } else {
                    "…".to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\"")
    }
}

/// Every connection keyword the linked libpq knows.
pub fn libpq_keywords() -> Vec<String> {
    ffi::keywords()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DatabaseUrl {
        DatabaseUrl::parse(s).unwrap()
    }

    #[test]
    fn libpq_resolves_hostile_spellings() {
        let cases = [
            (
                "postgres://root@127.0.0.1:5432//cruddur_prod",
                "/cruddur_prod",
            ),
            ("host=h dbname=one dbname=two", "two"),
            ("postgres://h/one?dbname=two", "two"),
            ("postgres://h/%63ruddur", "cruddur"),
            ("dbname='it''s'", "it"),
            (r"dbname='a\'b'", "a'b"),
        ];
        for (raw, dbname) in cases {
            let parsed = DatabaseUrl::parse(raw);
            if raw == "dbname='it''s'" {
                // libpq ends the value at the second quote and reads `'s'` as
                // the next keyword, which has no `=`.
                assert!(parsed.is_err(), "{raw}");
                continue;
            }
            assert_eq!(parsed.unwrap().database().as_deref(), Some(dbname), "{raw}");
        }
        let over = url("postgres://bogus.invalid:1/d?host=/tmp/sock&port=6543");
        assert_eq!(over.param("host"), Some("/tmp/sock"));
        assert_eq!(over.param("port"), Some("6543"));
    }

    #[test]
    fn derived_strings_read_back_identically() {
        let cases = [
            "postgres://ann%40corp:p%40ss%20w@db.example.com:6543/my%20db?sslmode=verify-full",
            "postgresql://%2Fvar%2Frun%2Fpostgresql/x",
            "postgres://[::1]:5432/x?application_name=a%26b",
            "host=h1,h2 port=1,2 dbname=d password='a b' user=u",
            "postgres:///d?host=/tmp&port=5433",
            "postgres://:pw@h/d",
            "postgres://u:@h/d",
            "host='' dbname=x",
        ];
        for raw in cases {
            let original = url(raw);
            let changed = |key: &str, value: &str| {
                let mut expected: Vec<(String, String)> = original
                    .params()
                    .iter()
                    .filter(|(k, _)| k != key)
                    .cloned()
                    .collect();
                expected.push((key.to_owned(), value.to_owned()));
                expected.sort();
                expected
            };
            let odd = "other db/\\'x";
            for (derived, key, value) in [
                (original.with_database(odd), "dbname", odd),
                (
                    original.with_param("connect_timeout", "5"),
                    "connect_timeout",
                    "5",
                ),
                (original.with_param("host", "/tmp/a b"), "host", "/tmp/a b"),
            ] {
                let mut reread = ffi::parse(derived.expose()).unwrap();
                reread.sort();
                assert_eq!(reread, changed(key, value), "{raw} -> {}", derived.expose());
            }
            assert_eq!(
                url(&render(original.params(), Style::Uri("postgres://"), false)),
                original,
                "{raw}"
            );
            assert_eq!(
                url(&render(original.params(), Style::KeyValue, false)),
                original,
                "{raw}"
            );
        }
    }

    #[test]
    fn urls_from_params_hold_hostile_values_exactly() {
        let password = "a b:c@d/e?f#g'$%zz\\";
        let url = DatabaseUrl::from_params(&[
            ("host", "db.example.com"),
            ("port", "5432"),
            ("user", "ad@min"),
            ("password", password),
            ("dbname", "crud dur/x"),
            ("sslmode", "verify-full"),
            ("sslrootcert", "/etc/rds ca.pem"),
        ])
        .unwrap();
        assert!(
            url.expose().starts_with("postgresql://ad%40min:"),
            "{}",
            url.expose()
        );
        assert_eq!(url.password().as_deref(), Some(password));
        assert_eq!(url.database().as_deref(), Some("crud dur/x"));
        assert_eq!(url.param("sslrootcert"), Some("/etc/rds ca.pem"));
        assert!(
            url.to_string().contains("sslrootcert=/etc/rds%20ca.pem"),
            "{url}"
        );
        assert!(DatabaseUrl::from_params(&[("no_such_keyword", "x")]).is_err());
    }

    #[test]
    fn display_never_holds_a_secret_however_short() {
        for raw in [
            "postgres://u:p@h/d",
            "postgres://u@h/d?password=p&sslpassword=q",
            "host=h password=p sslpassword=q",
            "postgres://:p@h/d",
        ] {
            let u = url(raw);
            let shown = format!("{u} {u:?}");
            assert!(
                !shown.contains(":p@") && !shown.contains("=p") && !shown.contains("=q"),
                "{raw} -> {shown}"
            );
            assert!(shown.contains("***"), "{raw} -> {shown}");
        }
    }

    #[test]
    fn unparseable_strings_are_not_echoed() {
        for raw in [
            "postgres//root:hunter2@host/db",
            "postgres:/root:hunter2@host",
            "host=h hunter2",
            "postgres://u:hunter2@h/d?nosuchoption=1",
            "postgres://u@h/d?password=%zzhunter2",
        ] {
            let err = DatabaseUrl::parse(raw).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{raw}: {err}");
            assert!(!redact(raw).contains("hunter2"), "{raw}");
        }
        let err = DatabaseUrl::parse("host=h nosuchoption=1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid connection option"), "{err}");
    }

    #[test]
    fn scrubbing_hides_whole_tokens_without_garbling_words() {
        let secrets = ["postgres".to_owned(), "o".to_owned(), "s3cr3t!".to_owned()];
        let cases = [
            (
                "postgres://postgres:s3cr3t!@localhost/postgresdb",
                "postgres://***:***@localhost/postgresdb",
            ),
            (
                "cannot connect: Connection refused",
                "cannot connect: Connection refused",
            ),
            ("the password is postgres.", "the password is ***."),
            ("key=s3cr3t! other", "key=*** other"),
            ("a o b", "a *** b"),
        ];
        for (text, expected) in cases {
            assert_eq!(scrub_secrets(text, &secrets), expected, "{text}");
        }
    }

    #[test]
    fn keywords_come_from_libpq() {
        let keywords = libpq_keywords();
        for k in [
            "host", "hostaddr", "port", "dbname", "user", "password", "sslmode",
        ] {
            assert!(keywords.iter().any(|x| x == k), "{k} in {keywords:?}");
        }
    }
}
