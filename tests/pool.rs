//! Connecting: every bad connection case is a typed error, fast, and no
//! message carries the password.

mod common;

use cruddur_db::{Config, DatabaseUrl, Error, Repository, build_pool};
use diesel::prelude::*;

const PASSWORD: &str = "Pa55-w0rd_s3cr3t";

fn with_password(url: &DatabaseUrl, database: &str) -> DatabaseUrl {
    common::with_password(&url.with_database(database), PASSWORD)
}

fn assert_secret_free(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} leaks the password: {text}"
    );
}

#[test]
fn invalid_urls_are_refused_before_connecting() {
    for raw in [
        "",
        "mysql://root:Pa55-w0rd_s3cr3t@localhost/db",
        "postgres://root:Pa55-w0rd_s3cr3t@[::1/db",
        "just words",
    ] {
        let err = DatabaseUrl::parse(raw).unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{raw:?}: {err}");
        assert_secret_free(raw, &err.to_string());
        assert_secret_free(raw, &format!("{err:?}"));
    }
    // An unknown option: libpq's parser refuses it, and the string is not
    // echoed.
    let raw = "postgres://root:Pa55-w0rd_s3cr3t@localhost/db?no_such_option=1";
    let err = DatabaseUrl::parse(raw).unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{raw}: {err}");
    assert!(
        err.to_string().contains("invalid URI query parameter"),
        "{err}"
    );
    assert_secret_free(raw, &err.to_string());
    // Parses, but libpq rejects a value when connecting: still InvalidUrl,
    // not a hang.
    for raw in [
        "postgres://root:Pa55-w0rd_s3cr3t@localhost/db?sslmode=sometimes",
        "postgres://root:Pa55-w0rd_s3cr3t@localhost:port/db",
    ] {
        let err = build_pool(&Config::new(DatabaseUrl::parse(raw).unwrap())).unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{raw}: {err}");
        assert_secret_free(raw, &err.to_string());
    }
}

#[test]
fn unreachable_server_fails_fast_and_typed() {
    let url =
        DatabaseUrl::parse(&format!("postgres://root:{PASSWORD}@127.0.0.1:1/cruddur")).unwrap();
    let err = build_pool(&Config::new(url.clone())).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert_secret_free("unreachable", &err.to_string());
    assert_secret_free("unreachable debug", &format!("{err:?}"));

    let host = DatabaseUrl::parse(&format!(
        "postgres://root:{PASSWORD}@no-such-host.invalid/cruddur"
    ))
    .unwrap();
    let err = build_pool(&Config::new(host)).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert_secret_free("unknown host", &err.to_string());
}

#[test]
fn missing_database_is_named() {
    let name = common::unique_name("cruddur_missing");
    let url = with_password(&common::server_url(), &name);
    let err = build_pool(&Config::new(url)).unwrap_err();
    match &err {
        Error::DatabaseMissing { database, .. } => assert_eq!(database, &name),
        other => panic!("expected DatabaseMissing, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("database `{name}` does not exist")),
        "{err}"
    );
    assert!(
        !err.to_string().contains("cruddur-db"),
        "a CLI hint in {err}"
    );
    assert_secret_free("missing database", &err.to_string());
}

#[test]
fn pooled_connections_carry_the_session_settings() {
    let db = common::TestDb::migrated();
    let mut config = Config::new(db.url.clone());
    config.statement_timeout_ms = 1234;
    let repo = Repository::connect(&config).unwrap();
    #[derive(QueryableByName)]
    struct Settings {
        #[diesel(sql_type = diesel::sql_types::Text)]
        app: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        tz: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        timeout: String,
    }
    let s: Settings = diesel::sql_query(
        "SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz, \
         current_setting('statement_timeout') AS timeout",
    )
    .get_result(&mut *repo.pool().get().unwrap())
    .unwrap();
    assert_eq!(
        (s.app.as_str(), s.tz.as_str(), s.timeout.as_str()),
        ("cruddur-db", "UTC", "1234ms")
    );
}

#[test]
fn debug_and_display_of_config_and_repository_hide_the_password() {
    let db = common::TestDb::migrated();
    let url = with_password(&db.url, &db.name());
    let config = Config::new(url.clone());
    // Trust authentication ignores the password, so this connects.
    let repo = Repository::connect(&config).unwrap();
    for (what, text) in [
        ("url display", url.to_string()),
        ("url debug", format!("{url:?}")),
        ("config debug", format!("{config:?}")),
        ("repository debug", format!("{repo:?}")),
    ] {
        assert_secret_free(what, &text);
        assert!(text.contains("***"), "{what}: {text}");
    }
}
