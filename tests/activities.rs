//! Creating activities: validation before any write, every ttl, unknown
//! handles, verbatim storage of hostile text (replies: `replies.rs`).

mod common;

use chrono::TimeDelta;
use cruddur_db::repo::activities::find_activity;
use cruddur_db::{ActivityDraft, Error, Ttl, create_activity};

#[test]
fn validation_reports_every_failing_rule_and_writes_nothing() {
    let ok = "hello";
    let long_ascii = "a".repeat(281);
    // 280 characters that are 4 bytes each in UTF-8: fine by characters, 1120 bytes.
    let crabs_280 = "🦀".repeat(280);
    let crabs_281 = "🦀".repeat(281);
    let cases: [(&str, &str, &str, &[&str]); 12] = [
        ("H", ok, "7-days", &[]),
        ("H", "", "7-days", &["message_blank"]),
        ("H", " \t\n ", "7-days", &["message_blank"]),
        ("H", &long_ascii, "7-days", &["message_exceed_max_chars"]),
        ("H", &crabs_280, "7-days", &[]),
        ("H", &crabs_281, "7-days", &["message_exceed_max_chars"]),
        ("", ok, "7-days", &["user_handle_blank"]),
        ("H", ok, "", &["ttl_blank"]),
        ("H", ok, "8-days", &["ttl_blank"]),
        ("H", ok, "7-DAYS", &["ttl_blank"]),
        (
            "",
            "",
            "",
            &["message_blank", "user_handle_blank", "ttl_blank"],
        ),
        ("H", "nul\0byte", "1-hour", &["message_contains_nul"]),
    ];
    common::with_rollback(|conn| {
        let user = common::user(conn, "Validator");
        for (handle, message, ttl, expected) in cases {
            let handle = if handle == "H" {
                user.handle.as_str()
            } else {
                handle
            };
            let before = common::counts(conn);
            let result = ActivityDraft::parse(handle, message, ttl)
                .and_then(|draft| create_activity(conn, &draft));
            let label = format!(
                "handle={handle:?} message={:?}… ({} chars) ttl={ttl:?}",
                message.chars().take(12).collect::<String>(),
                message.chars().count()
            );
            if expected.is_empty() {
                let created = result.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(created.message, message, "{label}");
                assert_eq!(common::counts(conn).1, before.1 + 1, "{label}");
            } else {
                let err = result.expect_err(&label);
                assert_eq!(err.validation_codes(), expected, "{label}: {err}");
                assert_eq!(
                    common::counts(conn),
                    before,
                    "{label}: something was written"
                );
            }
        }
    });
}

#[test]
fn every_ttl_sets_expires_at_from_created_at() {
    common::with_rollback(|conn| {
        let user = common::user(conn, "Ttl");
        for ttl in Ttl::ALL {
            let created = ActivityDraft::parse(&user.handle, "expiring", ttl.as_str())
                .and_then(|draft| create_activity(conn, &draft))
                .unwrap();
            let expires = created.expires_at.expect("an activity expires");
            assert_eq!(expires - created.created_at, ttl.duration(), "{ttl}");
            // The returned values are the stored ones (microsecond precision).
            let stored = find_activity(conn, created.uuid).unwrap();
            assert_eq!(stored.created_at, created.created_at, "{ttl}");
            assert_eq!(stored.expires_at, created.expires_at, "{ttl}");
        }
        assert_eq!(Ttl::Days30.duration(), TimeDelta::days(30));
        assert_eq!(Ttl::Hour1.duration(), TimeDelta::hours(1));
    });
}

#[test]
fn unknown_handle_is_user_not_found_and_writes_nothing() {
    common::with_rollback(|conn| {
        let before = common::counts(conn);
        for handle in ["nobody", "' OR '1'='1", "nul\0handle"] {
            let err = ActivityDraft::parse(handle, "hi", "1-day")
                .and_then(|draft| create_activity(conn, &draft))
                .unwrap_err();
            assert!(
                matches!(err, Error::UserNotFound { .. }),
                "{handle:?}: {err}"
            );
            assert!(err.to_string().contains("user not found"), "{err}");
        }
        assert_eq!(common::counts(conn), before);
    });
}

#[test]
fn hostile_text_is_stored_verbatim() {
    let texts = [
        "'; DROP TABLE activities; --",
        "Robert'); DROP TABLE users;--",
        "back\\slash \\x00 \\' quote\" double",
        "$1 $$ dollar $tag$ quoting $tag$",
        "emoji 🦀👩‍👩‍👧‍👦 and flags 🇳🇱",
        "RTL: مرحبا بالعالم שלום עולם",
        "zero\u{200b}width and combining é",
        "newline\nand\ttab\rreturn",
        "%s %n {} {{}} <b>html</b>",
    ];
    common::with_rollback(|conn| {
        let user = common::user(conn, "Hostile 'name' \"quoted\"");
        for text in texts {
            let created = ActivityDraft::parse(&user.handle, text, "3-hours")
                .and_then(|draft| create_activity(conn, &draft))
                .unwrap();
            assert_eq!(created.message, text);
            assert_eq!(find_activity(conn, created.uuid).unwrap().message, text);
        }
        assert_eq!(common::counts(conn).1, texts.len() as i64);
    });
}

#[test]
fn a_post_is_one_statement_in_a_transaction_of_its_own() {
    use diesel::connection::{Connection, InstrumentationEvent};
    use std::sync::{Arc, Mutex};

    let db = common::TestDb::migrated();
    let mut conn = db.conn();
    let user = common::user(&mut conn, "One Round Trip");
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&sent);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| match event {
        InstrumentationEvent::StartQuery { query, .. } => {
            log.lock().unwrap().push(query.to_string());
        }
        InstrumentationEvent::BeginTransaction { .. } => log.lock().unwrap().push("BEGIN".into()),
        InstrumentationEvent::CommitTransaction { .. } => {
            log.lock().unwrap().push("COMMIT".into());
        }
        _ => {}
    });
    let draft = ActivityDraft::parse(&user.handle, "counted", "1-day").unwrap();
    let created = create_activity(&mut conn, &draft).unwrap();
    let sent = sent.lock().unwrap().clone();
    // Besides the transaction's events, the statements Diesel sends.
    let statements: Vec<&String> = sent
        .iter()
        .filter(|s| !s.starts_with("BEGIN") && !s.starts_with("COMMIT"))
        .collect();
    assert_eq!(statements.len(), 1, "{sent:?}");
    assert!(statements[0].starts_with("WITH author AS"), "{sent:?}");
    assert_eq!(sent.first().map(String::as_str), Some("BEGIN"), "{sent:?}");
    assert!(sent.iter().any(|s| s == "COMMIT"), "{sent:?}");
    assert_eq!(created.handle, user.handle);
    assert_eq!(created.display_name, "One Round Trip");
    assert_eq!(created.message, "counted");
    assert_eq!(
        find_activity(&mut conn, created.uuid).unwrap().uuid,
        created.uuid
    );
}
