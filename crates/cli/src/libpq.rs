//! A connection string as libpq's `PG*` environment variables, for handing
//! a database to `psql` (or any libpq tool) without putting the password on
//! its command line, where every user of the machine can read it (`ps`).

use std::fmt;

use cruddur_db::config::DatabaseUrl;
use cruddur_db::conninfo::quote_key_value;
use cruddur_db::error::{Error, Result};

/// Connection parameters and the environment variable libpq reads each
/// from (PostgreSQL documentation, "Environment Variables").
pub const PARAMETER_VARIABLES: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("require_auth", "PGREQUIREAUTH"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("service", "PGSERVICE"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("sslmode", "PGSSLMODE"),
    ("requiressl", "PGREQUIRESSL"),
    ("sslcompression", "PGSSLCOMPRESSION"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcrl", "PGSSLCRL"),
    ("sslcrldir", "PGSSLCRLDIR"),
    ("sslsni", "PGSSLSNI"),
    ("requirepeer", "PGREQUIREPEER"),
    ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    ("gssencmode", "PGGSSENCMODE"),
    ("krbsrvname", "PGKRBSRVNAME"),
    ("gsslib", "PGGSSLIB"),
    ("gssdelegation", "PGGSSDELEGATION"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("client_encoding", "PGCLIENTENCODING"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS"),
];

/// Parameters that hold a secret and have no environment variable: they
/// cannot be handed over without a command line, so they are refused.
const SECRET_WITHOUT_VARIABLE: &[&str] = &["sslpassword"];

/// The variables and the non-secret rest of a connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct LibpqEnvironment {
    /// `(variable, value)` pairs, e.g. `("PGHOST", "db.example.com")`;
    /// `PGPASSWORD` among them when the URL has a password.
    pub vars: Vec<(&'static str, String)>,
    /// Parameters that have no environment variable (`keepalives`, …), as
    /// a libpq `key=value` string; never holds a secret. `None` when every
    /// parameter went into a variable.
    pub conninfo: Option<String>,
}

impl fmt::Debug for LibpqEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == "PGPASSWORD" {
                        "***"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("LibpqEnvironment")
            .field("vars", &vars)
            .field("conninfo", &self.conninfo)
            .finish()
    }
}

fn variable_for(key: &str) -> Option<&'static str> {
    PARAMETER_VARIABLES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
}

/// Splits `url` (as libpq parsed it) into libpq environment variables (see
/// [`PARAMETER_VARIABLES`]) plus a `key=value` string of the parameters that
/// have none. Empty values are left out, so libpq's defaults apply as they
/// would for the URL itself.
///
/// A parameter that is a secret and has no variable (`sslpassword`) is an
/// [`Error::InvalidUrl`]. Host lists (`h1,h2`) pass through: libpq reads
/// `PGHOST` and `PGPORT` lists as it reads them in a string.
pub fn environment(url: &DatabaseUrl) -> Result<LibpqEnvironment> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    // libpq's own reading of the string (see `cruddur_db::conninfo`), so that
    // psql reaches exactly the database the string names.
    let params = url.params().to_vec();
    let mut vars = Vec::new();
    let mut rest = Vec::new();
    for (key, value) in params {
        if value.is_empty() {
            continue;
        }
        if SECRET_WITHOUT_VARIABLE.contains(&key.as_str()) {
            return Err(invalid(format!(
                "`{key}` has no environment variable, so it cannot be handed to psql \
                 without putting it on the command line"
            )));
        }
        match variable_for(&key) {
            Some(var) => {
                vars.retain(|(v, _)| *v != var);
                vars.push((var, value));
            }
            None => rest.push(format!("{key}={}", quote_key_value(&value))),
        }
    }
    Ok(LibpqEnvironment {
        vars,
        conninfo: (!rest.is_empty()).then(|| rest.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(raw: &str) -> LibpqEnvironment {
        environment(&DatabaseUrl::parse(raw).unwrap()).unwrap()
    }

    fn get<'a>(env: &'a LibpqEnvironment, var: &str) -> Option<&'a str> {
        env.vars
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn url_parts_become_variables() {
        let env = env_of(
            "postgres://ann%40corp:p%40ss%20w@db.example.com:6543/my%20db?sslmode=verify-full&sslrootcert=/etc/ca.pem&keepalives=1",
        );
        assert_eq!(get(&env, "PGHOST"), Some("db.example.com"));
        assert_eq!(get(&env, "PGPORT"), Some("6543"));
        assert_eq!(get(&env, "PGUSER"), Some("ann@corp"));
        assert_eq!(get(&env, "PGPASSWORD"), Some("p@ss w"));
        assert_eq!(get(&env, "PGDATABASE"), Some("my db"));
        assert_eq!(get(&env, "PGSSLMODE"), Some("verify-full"));
        assert_eq!(get(&env, "PGSSLROOTCERT"), Some("/etc/ca.pem"));
        assert_eq!(env.conninfo.as_deref(), Some("keepalives=1"));
        let doubled = env_of("postgres://root@127.0.0.1:5432//cruddur_prod");
        assert_eq!(get(&doubled, "PGDATABASE"), Some("/cruddur_prod"));
        let twice = env_of("host=h dbname=a dbname=b");
        assert_eq!(get(&twice, "PGDATABASE"), Some("b"));
        let listed = env_of("postgres://h1:1,h2:2/d");
        assert_eq!(get(&listed, "PGHOST"), Some("h1,h2"));
        assert_eq!(get(&listed, "PGPORT"), Some("1,2"));
        let shown = format!("{env:?}");
        assert!(!shown.contains("p@ss"), "{shown}");
    }

    #[test]
    fn ipv6_socket_and_key_value_forms() {
        assert_eq!(
            get(&env_of("postgres://[::1]:5432/x"), "PGHOST"),
            Some("::1")
        );
        assert_eq!(
            get(
                &env_of("postgresql://%2Fvar%2Frun%2Fpostgresql/x"),
                "PGHOST"
            ),
            Some("/var/run/postgresql")
        );
        let kv = env_of("host=h dbname=d password='a b' application_name=x");
        assert_eq!(get(&kv, "PGPASSWORD"), Some("a b"));
        assert_eq!(get(&kv, "PGAPPNAME"), Some("x"));
        assert_eq!(kv.conninfo, None);
    }

    #[test]
    fn refuses_what_cannot_be_handed_over_safely() {
        let raw = "postgres://h/d?sslpassword=secret";
        let err = environment(&DatabaseUrl::parse(raw).unwrap())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{raw}: {err}");
    }
}
