//! Property tests: validation, feed cursors, post-confirmation events and
//! secrets, over arbitrary input. None may panic; each has an exact rule.

use cruddur_db::config::redact;
use cruddur_db::repo::activities::{ActivityDraft, MAX_MESSAGE_CHARS};
use cruddur_db::{DatabaseUrl, Error, FeedCursor, PostConfirmationEvent};
use proptest::prelude::*;

/// Cases per property; `PROPTEST_CASES` overrides it.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        // Integration tests have no lib.rs beside them to persist failures
        // next to; a failure prints its minimal input instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "name",
            "email",
            "sub",
            "preferred_username",
            "request",
            "userAttributes"
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "request",
                    "userAttributes",
                    "name",
                    "email",
                    "preferred_username",
                    "sub",
                    "x"
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    /// A message is accepted exactly when it is 1-280 characters, not blank,
    /// and holds no NUL (which PostgreSQL text cannot store).
    #[test]
    fn message_rule_is_exact(message in prop_oneof![
        any::<String>(),
        "\\PC{270,290}",
        "[ \t\n]{0,5}",
        "[a-z🦀é]{275,285}",
    ]) {
        let accepted = ActivityDraft::parse("someone", &message, "1-day").is_ok();
        let expected = !message.trim().is_empty()
            && message.chars().count() <= MAX_MESSAGE_CHARS
            && !message.contains('\0');
        prop_assert_eq!(accepted, expected, "message of {} chars: {:?}", message.chars().count(), message);
    }

    /// Any string either decodes to a cursor that round-trips, or is a clear
    /// InvalidCursor error.
    #[test]
    fn any_cursor_string_decodes_or_errs(input in prop_oneof![
        any::<String>(),
        "[0-9T:.Z-]{10,30}_[0-9a-f-]{30,40}",
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]\\.[0-9]{6}Z_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ]) {
        match input.parse::<FeedCursor>() {
            Ok(cursor) => prop_assert_eq!(cursor.to_string().parse::<FeedCursor>().ok(), Some(cursor)),
            Err(e) => {
                prop_assert!(matches!(e, Error::InvalidCursor { .. }), "{e}");
                prop_assert!(e.to_string().starts_with("invalid feed cursor"), "{e}");
            }
        }
    }

    /// Any JSON value (or any text) is a user or a clear InvalidEvent.
    #[test]
    fn any_event_is_a_user_or_a_clear_error(value in arbitrary_json(), text in any::<String>()) {
        for input in [value.to_string(), text] {
            match PostConfirmationEvent::parse(&input) {
                Ok(event) => {
                    for field in [&event.name, &event.email, &event.preferred_username, &event.sub] {
                        prop_assert!(!field.trim().is_empty() && !field.contains('\0'));
                    }
                }
                Err(e) => prop_assert!(matches!(e, Error::InvalidEvent { .. }), "{e}"),
            }
        }
    }

    /// No rendering of a URL, in any form, shows its password.
    #[test]
    fn urls_never_show_their_password(
        user in "[a-z][a-z0-9_]{0,11}",
        password in "[A-Za-z0-9!$&'()*+,;=._~%:@/?#\\[\\] -]{8,24}",
        host in "[a-z][a-z0-9-]{0,15}(\\.[a-z]{2,5})?",
        port in 1u16..,
        db in "[a-z][a-z0-9_]{0,15}",
    ) {
        // The distinctive marker keeps short passwords from matching by chance.
        let password = format!("Zq{password}Xj");
        // Percent-encoding: form encoding's `+` for a space means `+` in a URL.
        let encoded = url::form_urlencoded::byte_serialize(password.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        let forms = [
            format!("postgres://{user}:{encoded}@{host}:{port}/{db}"),
            format!("postgresql://{user}@{host}/{db}?password={encoded}&sslmode=require"),
            format!("host={host} port={port} user={user} dbname={db} password='{}'",
                password.replace('\\', "\\\\").replace('\'', "\\'")),
            // Not valid URLs: still never echoed with the password.
            format!("postgres://{user}:{password}@{host}:{port}/{db}"),
            format!("mysql://{user}:{encoded}@{host}/{db}"),
        ];
        for raw in forms {
            let shown = redact(&raw);
            prop_assert!(!shown.contains(&password) && !shown.contains(&encoded), "{raw} -> {shown}");
            match DatabaseUrl::parse(&raw) {
                Ok(url) => {
                    for text in [url.to_string(), format!("{url:?}"), url.with_database("postgres").to_string()] {
                        prop_assert!(!text.contains(&password) && !text.contains(&encoded), "{raw} -> {text}");
                    }
                    let scrubbed = url.scrub(&format!("server said: {password} / {encoded}"));
                    prop_assert!(!scrubbed.contains(&password), "{scrubbed}");
                }
                Err(e) => {
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains(&password) && !text.contains(&encoded), "{raw} -> {text}");
                }
            }
        }
    }
}

/// Connection errors on real failure paths never carry the password.
#[test]
fn connection_errors_never_carry_the_password() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(&"[A-Za-z0-9!$&()*+,;=._~-]{8,20}", |password| {
            let password = format!("Zq{password}Xj");
            let encoded: String =
                url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
            for raw in [
                format!("postgres://root:{encoded}@127.0.0.1:1/cruddur"),
                format!("postgres://root:{encoded}@localhost/db?no_such_option=1"),
                format!("postgres://root:{encoded}@no-such-host.invalid/db"),
            ] {
                // Refused by libpq's parser, or when connecting.
                let err = DatabaseUrl::parse(&raw)
                    .and_then(|url| cruddur_db::build_pool(&cruddur_db::Config::new(url)))
                    .expect_err(&raw);
                let text = format!("{err} {err:?}");
                prop_assert!(
                    !text.contains(&password) && !text.contains(&encoded),
                    "{text}"
                );
            }
            Ok(())
        })
        .unwrap();
}
