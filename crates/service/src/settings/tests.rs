use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn settings(vars: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(vars.iter().copied())
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
    let flag = ServiceSettings::from_settings(&settings(&[]), Some("0.0.0.0:1".parse().unwrap()));
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
    let s = ServiceSettings::from_settings(&settings(&[("CRUDDUR_BIND", "localhost:4599")]), None)
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

#[test]
fn shedding_metrics_and_the_log_format_default_and_bad_values_are_refused() {
    let s = ServiceSettings::from_settings(&settings(&[]), None).unwrap();
    assert_eq!(
        s.shedding,
        Shedding {
            reads_at: 128,
            writes_at: 256
        }
    );
    assert!(s.metrics);
    assert!(s.async_primary);
    assert_eq!(log_format(&settings(&[])).unwrap(), LogFormat::Text);
    let s = ServiceSettings::from_settings(
        &settings(&[
            ("CRUDDUR_SHED_READS_AT", "2"),
            ("CRUDDUR_SHED_WRITES_AT", "8"),
            ("CRUDDUR_METRICS", "0"),
            ("CRUDDUR_ASYNC_PRIMARY", "0"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(
        s.shedding,
        Shedding {
            reads_at: 2,
            writes_at: 8
        }
    );
    assert!(!s.metrics);
    assert!(!s.async_primary);
    // A reads' threshold above the writes' default lifts the writes' too.
    let s = ServiceSettings::from_settings(&settings(&[("CRUDDUR_SHED_READS_AT", "500")]), None)
        .unwrap();
    assert_eq!(s.shedding.writes_at, 500);
    assert_eq!(
        log_format(&settings(&[("CRUDDUR_LOG_FORMAT", " json ")])).unwrap(),
        LogFormat::Json
    );
    for (name, value, expected) in [
        ("CRUDDUR_SHED_READS_AT", "0", "whole number from"),
        ("CRUDDUR_SHED_WRITES_AT", "many", "whole number from"),
        ("CRUDDUR_METRICS", "yes", "must be 1 or 0"),
        ("CRUDDUR_ASYNC_PRIMARY", "on", "must be 1 or 0"),
    ] {
        let err = ServiceSettings::from_settings(&settings(&[(name, value)]), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}={value}: {err}"
        );
    }
    let err = ServiceSettings::from_settings(
        &settings(&[
            ("CRUDDUR_SHED_READS_AT", "10"),
            ("CRUDDUR_SHED_WRITES_AT", "5"),
        ]),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("posts would be refused before reads"), "{err}");
    let err = log_format(&settings(&[("CRUDDUR_LOG_FORMAT", "xml")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("CRUDDUR_LOG_FORMAT `xml`"), "{err}");
}
