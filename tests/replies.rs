//! Replies: validation before any write, the reply's shape, not-found and
//! expired parents, and replies_count under concurrent replies.

mod common;

use std::sync::{Arc, Barrier};

use chrono::{TimeDelta, Utc};
use cruddur_db::repo::activities::find_activity;
use cruddur_db::schema::activities;
use cruddur_db::{ActivityDraft, Error, NewActivity, ReplyDraft, create_activity, create_reply};
use diesel::prelude::*;
use uuid::Uuid;

#[test]
fn reply_validation_reports_every_failing_rule_and_writes_nothing() {
    let long = "r".repeat(1025);
    let crabs_1024 = "🦀".repeat(1024);
    let crabs_1025 = "🦀".repeat(1025);
    common::with_rollback(|conn| {
        let author = common::user(conn, "Parent");
        let replier = common::user(conn, "Replier");
        let parent = ActivityDraft::parse(&author.handle, "parent", "1-day")
            .and_then(|d| create_activity(conn, &d))
            .unwrap()
            .uuid
            .to_string();
        let cases: [(&str, &str, &str, &[&str]); 12] = [
            ("H", "P", "a reply", &[]),
            ("H", "P", &crabs_1024, &[]),
            ("H", "P", "", &["message_blank"]),
            ("H", "P", " \n\t", &["message_blank"]),
            ("H", "P", &long, &["message_exceed_max_chars_1024"]),
            ("H", "P", &crabs_1025, &["message_exceed_max_chars_1024"]),
            ("H", "P", "nul\0byte", &["message_contains_nul"]),
            ("H", "", "hi", &["activity_uuid_blank"]),
            ("H", "  ", "hi", &["activity_uuid_blank"]),
            ("H", "not-a-uuid", "hi", &["activity_uuid_invalid"]),
            ("", "P", "hi", &["user_handle_blank"]),
            (
                "",
                "",
                "",
                &["message_blank", "activity_uuid_blank", "user_handle_blank"],
            ),
        ];
        for (handle, reply_to, message, expected) in cases {
            let handle = if handle == "H" {
                replier.handle.as_str()
            } else {
                handle
            };
            let reply_to = if reply_to == "P" {
                parent.as_str()
            } else {
                reply_to
            };
            let label = format!(
                "handle={handle:?} reply_to={reply_to:?} message={:?}… ({} chars)",
                message.chars().take(12).collect::<String>(),
                message.chars().count()
            );
            let before = common::counts(conn);
            let count_before = find_activity(conn, parent.parse().unwrap())
                .unwrap()
                .replies_count;
            let result =
                ReplyDraft::parse(handle, reply_to, message).and_then(|d| create_reply(conn, &d));
            let count = find_activity(conn, parent.parse().unwrap())
                .unwrap()
                .replies_count;
            if expected.is_empty() {
                let reply = result.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(reply.message, message, "{label}");
                assert_eq!(common::counts(conn).1, before.1 + 1, "{label}");
                assert_eq!(count, count_before + 1, "{label}");
            } else {
                let err = result.expect_err(&label);
                assert_eq!(err.validation_codes(), expected, "{label}: {err}");
                assert_eq!(common::counts(conn), before, "{label}: written");
                assert_eq!(count, count_before, "{label}: counted");
            }
        }
    });
}

#[test]
fn a_reply_is_the_crud_object_plus_reply_to_and_counts_on_its_parent() {
    common::with_rollback(|conn| {
        let author = common::user(conn, "Parent");
        let replier = common::user(conn, "Replier");
        let parent = ActivityDraft::parse(&author.handle, "parent", "1-day")
            .and_then(|d| create_activity(conn, &d))
            .unwrap()
            .uuid;
        let reply = create_reply(
            conn,
            &ReplyDraft::new(&replier.handle, parent, "first!").unwrap(),
        )
        .unwrap();
        let json = serde_json::to_value(&reply).unwrap();
        let text = serde_json::to_string(&reply).unwrap();
        let positions: Vec<usize> = [
            "uuid",
            "display_name",
            "handle",
            "message",
            "created_at",
            "expires_at",
            "reply_to_activity_uuid",
        ]
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k}: {text}"))
        })
        .collect();
        assert!(positions.is_sorted(), "keys out of order: {text}");
        assert_eq!(json.as_object().unwrap().len(), 7, "{text}");
        assert_eq!(json["reply_to_activity_uuid"], parent.to_string());
        assert_eq!(json["expires_at"], serde_json::Value::Null);
        assert_eq!(
            (reply.handle.as_str(), reply.display_name.as_str()),
            (replier.handle.as_str(), "Replier")
        );
        let stored = find_activity(conn, reply.uuid).unwrap();
        assert_eq!(stored.reply_to_activity_uuid, Some(parent));
        assert_eq!(stored.created_at, reply.created_at);
        // A reply to a reply counts on the reply.
        create_reply(
            conn,
            &ReplyDraft::new(&author.handle, reply.uuid, "thanks").unwrap(),
        )
        .unwrap();
        assert_eq!(find_activity(conn, parent).unwrap().replies_count, 1);
        assert_eq!(find_activity(conn, reply.uuid).unwrap().replies_count, 1);
    });
}

#[test]
fn replies_to_unknown_or_expired_activities_are_not_found_and_write_nothing() {
    common::with_rollback(|conn| {
        let author = common::user(conn, "Parent");
        let expired: Uuid = diesel::insert_into(activities::table)
            .values(NewActivity {
                user_uuid: author.uuid,
                message: "gone",
                reply_to_activity_uuid: None,
                expires_at: Some(Utc::now() - TimeDelta::seconds(1)),
                created_at: Utc::now() - TimeDelta::days(1),
            })
            .returning(activities::uuid)
            .get_result(conn)
            .unwrap();
        let before = common::counts(conn);
        for parent in [expired, Uuid::new_v4()] {
            let result = create_reply(
                conn,
                &ReplyDraft::new(&author.handle, parent, "anyone?").unwrap(),
            );
            assert!(
                matches!(result, Err(Error::ActivityNotFound { uuid }) if uuid == parent),
                "{parent}: {result:?}"
            );
        }
        let stranger = create_reply(
            conn,
            &ReplyDraft::new("nobody-here", expired, "who am I").unwrap(),
        );
        assert!(
            matches!(stranger, Err(Error::UserNotFound { .. })),
            "{stranger:?}"
        );
        assert_eq!(common::counts(conn), before);
        assert_eq!(find_activity(conn, expired).unwrap().replies_count, 0);
    });
}

#[test]
fn concurrent_replies_each_count_once() {
    const REPLIES: usize = 24;
    let db = common::TestDb::migrated();
    let (handle, parent) = {
        let conn = &mut db.conn();
        let author = common::user(conn, "Popular");
        let parent = ActivityDraft::parse(&author.handle, "reply to me", "1-day")
            .and_then(|d| create_activity(conn, &d))
            .unwrap()
            .uuid;
        (author.handle, parent)
    };
    let barrier = Arc::new(Barrier::new(REPLIES));
    let threads: Vec<_> = (0..REPLIES)
        .map(|i| {
            let url = db.url.clone();
            let handle = handle.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut conn = cruddur_db::establish(&url).unwrap();
                let message = format!("reply {i}");
                let draft = ReplyDraft::new(&handle, parent, &message).unwrap();
                barrier.wait();
                create_reply(&mut conn, &draft)
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let conn = &mut db.conn();
    let replies: i64 = activities::table
        .filter(activities::reply_to_activity_uuid.eq(parent))
        .count()
        .get_result(conn)
        .unwrap();
    assert_eq!(replies, REPLIES as i64);
    assert_eq!(
        find_activity(conn, parent).unwrap().replies_count,
        REPLIES as i32
    );
}
