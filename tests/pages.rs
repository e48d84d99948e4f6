//! A user's page, a crud's page, the short card, profile updates and the
//! lookups behind messages: shapes, order, keyset pages, validation and
//! not-found errors.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use cruddur_db::repo::feed::MAX_PAGE_SIZE;
use cruddur_db::repo::profiles::{MAX_BIO_CHARS, MAX_DISPLAY_NAME_CHARS, PROFILE_PAGE_SIZE};
use cruddur_db::repo::users::{message_users, uuid_from_cognito_user_id};
use cruddur_db::schema::{activities, users};
use cruddur_db::{
    ActivityDraft, Error, FeedCursor, FeedPage, MessageUserKind, NewActivity, ProfileDraft,
    ReplyDraft, ReplyPage, User, activity_thread, create_activity, create_reply, update_profile,
    user_page, user_short,
};
use diesel::prelude::*;
use uuid::Uuid;

/// The keys of `item`'s JSON object, in the order they are written
/// (`serde_json::Value` sorts them).
fn keys_of(item: &impl serde::Serialize) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    let text = serde_json::to_string(item).unwrap();
    serde_json::from_str::<Keys>(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .0
}

fn post(conn: &mut PgConnection, user: &User, message: &str) -> Uuid {
    ActivityDraft::parse(&user.handle, message, "1-day")
        .and_then(|d| create_activity(conn, &d))
        .unwrap()
        .uuid
}

/// Inserts an activity at `created_at` directly (for ties and order).
fn insert_at(
    conn: &mut PgConnection,
    user: &User,
    message: &str,
    created_at: DateTime<Utc>,
    reply_to: Option<Uuid>,
) -> Uuid {
    diesel::insert_into(activities::table)
        .values(NewActivity {
            user_uuid: user.uuid,
            message,
            reply_to_activity_uuid: reply_to,
            expires_at: reply_to.is_none().then(|| created_at + TimeDelta::days(1)),
            created_at,
        })
        .returning(activities::uuid)
        .get_result(conn)
        .unwrap()
}

fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000 + secs, 0).unwrap()
}

#[test]
fn a_users_page_has_the_profile_and_the_users_activities_newest_first() {
    common::with_rollback(|conn| {
        let ann = common::user(conn, "Ann");
        let bob = common::user(conn, "Bob");
        let first = post(conn, &ann, "first");
        let bobs = post(conn, &bob, "not on Ann's page");
        let reply = create_reply(
            conn,
            &ReplyDraft::new(&ann.handle, bobs, "a reply counts").unwrap(),
        )
        .unwrap()
        .uuid;
        let last = post(conn, &ann, "last");

        let page = user_page(conn, &ann.handle, FeedPage::first(PROFILE_PAGE_SIZE)).unwrap();
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(keys_of(&page), ["profile", "activities"]);
        assert_eq!(
            keys_of(&page.profile),
            [
                "uuid",
                "cognito_user_uuid",
                "handle",
                "display_name",
                "bio",
                "cruds_count"
            ]
        );
        assert_eq!(json["profile"]["cognito_user_uuid"], ann.cognito_user_id);
        assert_eq!(json["profile"]["bio"], "");
        assert_eq!(page.profile.cruds_count, 3);
        let uuids: Vec<Uuid> = page.activities.iter().map(|a| a.uuid).collect();
        assert_eq!(uuids, [last, reply, first]);
        for item in &page.activities {
            assert_eq!(
                keys_of(item),
                [
                    "uuid",
                    "display_name",
                    "handle",
                    "message",
                    "created_at",
                    "expires_at"
                ]
            );
            assert_eq!(item.handle, ann.handle);
        }
        // A user without activities has a page too.
        let quiet = common::user(conn, "Quiet");
        let empty = user_page(conn, &quiet.handle, FeedPage::default()).unwrap();
        assert_eq!(empty.profile.cruds_count, 0);
        assert!(empty.activities.is_empty());
    });
}

#[test]
fn a_users_page_walks_in_keyset_pages_through_ties_each_activity_once() {
    common::with_rollback(|conn| {
        let ann = common::user(conn, "Ann");
        let other = common::user(conn, "Other");
        // Seven activities, five sharing one timestamp, and others' between.
        let mut expected = Vec::new();
        for (i, secs) in [0, 10, 10, 10, 10, 10, 20].into_iter().enumerate() {
            expected.push((
                instant(secs),
                insert_at(conn, &ann, &format!("a{i}"), instant(secs), None),
            ));
            insert_at(conn, &other, "noise", instant(secs), None);
        }
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<Uuid> = expected.into_iter().map(|(_, id)| id).collect();
        for limit in [1, 2, 3, 7, MAX_PAGE_SIZE] {
            let mut seen = Vec::new();
            let mut page = FeedPage::first(limit);
            loop {
                let got = user_page(conn, &ann.handle, page).unwrap();
                assert!(got.activities.len() as i64 <= limit, "limit {limit}");
                let Some(last) = got.activities.last() else {
                    break;
                };
                page = FeedPage::after(limit, FeedCursor::at(last.created_at, last.uuid));
                seen.extend(got.activities.iter().map(|a| a.uuid));
            }
            assert_eq!(seen, expected, "limit {limit}");
        }
        for limit in [0, -1, MAX_PAGE_SIZE + 1] {
            let err = user_page(conn, &ann.handle, FeedPage::first(limit)).unwrap_err();
            assert!(
                matches!(err, Error::InvalidPageSize { .. }),
                "{limit}: {err}"
            );
        }
    });
}

#[test]
fn a_cruds_page_has_the_feed_item_and_its_replies_oldest_first_in_pages() {
    common::with_rollback(|conn| {
        let ann = common::user(conn, "Ann");
        let bob = common::user(conn, "Bob");
        let parent = insert_at(conn, &ann, "parent", instant(0), None);
        let other = insert_at(conn, &ann, "another crud", instant(1), None);
        insert_at(conn, &bob, "reply elsewhere", instant(2), Some(other));
        let mut expected = Vec::new();
        for (i, secs) in [30, 5, 5, 5, 40, 5].into_iter().enumerate() {
            let author = if i % 2 == 0 { &bob } else { &ann };
            expected.push((
                instant(secs),
                insert_at(conn, author, &format!("r{i}"), instant(secs), Some(parent)),
            ));
        }
        expected.sort();
        let expected: Vec<Uuid> = expected.into_iter().map(|(_, id)| id).collect();

        let thread = activity_thread(conn, &ann.handle, parent, ReplyPage::default()).unwrap();
        assert_eq!(keys_of(&thread), ["activity", "replies"]);
        assert_eq!(keys_of(&thread.activity), common::FEED_KEYS);
        assert_eq!(thread.activity.uuid, parent);
        let uuids: Vec<Uuid> = thread.replies.iter().map(|r| r.uuid).collect();
        assert_eq!(uuids, expected);
        for reply in &thread.replies {
            assert_eq!(
                keys_of(reply),
                [
                    "uuid",
                    "display_name",
                    "handle",
                    "message",
                    "replies_count",
                    "reposts_count",
                    "likes_count",
                    "reply_to_activity_uuid",
                    "created_at"
                ]
            );
            assert_eq!(reply.reply_to_activity_uuid, Some(parent));
        }
        for limit in [1, 2, 4] {
            let mut seen = Vec::new();
            let mut page = ReplyPage { limit, after: None };
            loop {
                let got = activity_thread(conn, &ann.handle, parent, page).unwrap();
                let Some(last) = got.replies.last() else {
                    break;
                };
                page.after = Some(FeedCursor::at(last.created_at, last.uuid));
                seen.extend(got.replies.iter().map(|r| r.uuid));
            }
            assert_eq!(seen, expected, "limit {limit}");
        }
        let bad = activity_thread(
            conn,
            &ann.handle,
            parent,
            ReplyPage {
                limit: 0,
                after: None,
            },
        );
        assert!(matches!(bad, Err(Error::InvalidPageSize { .. })), "{bad:?}");
    });
}

#[test]
fn unknown_handles_and_activities_are_typed_not_found_errors() {
    common::with_rollback(|conn| {
        let ann = common::user(conn, "Ann");
        let bob = common::user(conn, "Bob");
        let crud = post(conn, &ann, "Ann's");
        let before = common::counts(conn);
        for handle in ["nobody", "' OR '1'='1", "nul\0handle", ""] {
            let page = user_page(conn, handle, FeedPage::default());
            assert!(
                matches!(page, Err(Error::UserNotFound { .. })),
                "{handle:?}: {page:?}"
            );
            let short = user_short(conn, handle);
            assert!(
                matches!(short, Err(Error::UserNotFound { .. })),
                "{handle:?}: {short:?}"
            );
            let thread = activity_thread(conn, handle, crud, ReplyPage::default());
            assert!(
                matches!(thread, Err(Error::UserNotFound { .. })),
                "{handle:?}: {thread:?}"
            );
        }
        let missing = Uuid::new_v4();
        for (handle, uuid) in [(&ann.handle, missing), (&bob.handle, crud)] {
            let thread = activity_thread(conn, handle, uuid, ReplyPage::default());
            assert!(
                matches!(thread, Err(Error::ActivityNotFound { uuid: u }) if u == uuid),
                "@{handle}/status/{uuid}: {thread:?}"
            );
        }
        let update =
            ProfileDraft::parse("nobody", "Nobody", "").and_then(|d| update_profile(conn, &d));
        assert!(
            matches!(update, Err(Error::UserNotFound { .. })),
            "{update:?}"
        );
        assert_eq!(common::counts(conn), before);
    });
}

#[test]
fn the_short_card_has_three_keys() {
    common::with_rollback(|conn| {
        let ann = common::user(conn, "Ann Lee");
        let short = user_short(conn, &ann.handle).unwrap();
        assert_eq!(keys_of(&short), ["uuid", "handle", "display_name"]);
        assert_eq!(
            (
                short.uuid,
                short.handle.as_str(),
                short.display_name.as_str()
            ),
            (ann.uuid, ann.handle.as_str(), "Ann Lee")
        );
    });
}

fn stored(conn: &mut PgConnection, uuid: Uuid) -> (String, String) {
    users::table
        .find(uuid)
        .select((users::display_name, users::bio))
        .first(conn)
        .unwrap()
}

#[test]
fn a_profile_update_returns_the_short_card_and_bad_input_writes_nothing() {
    let long_name = "n".repeat(MAX_DISPLAY_NAME_CHARS + 1);
    let crab_name = "🦀".repeat(MAX_DISPLAY_NAME_CHARS);
    let long_bio = "b".repeat(MAX_BIO_CHARS + 1);
    let crab_bio = "🦀".repeat(MAX_BIO_CHARS);
    let cases: [(&str, &str, &str, &[&str]); 12] = [
        ("H", "New Name", "A new bio", &[]),
        ("H", "New Name", "", &[]),
        ("H", &crab_name, &crab_bio, &[]),
        ("H", "", "bio", &["display_name_blank"]),
        ("H", " \t\n", "bio", &["display_name_blank"]),
        ("H", &long_name, "bio", &["display_name_exceed_max_chars"]),
        ("H", "Name", &long_bio, &["bio_exceed_max_chars"]),
        ("H", "nul\0name", "bio", &["display_name_contains_nul"]),
        ("H", "Name", "nul\0bio", &["bio_contains_nul"]),
        ("", "Name", "bio", &["user_handle_blank"]),
        (
            "",
            "",
            &long_bio,
            &[
                "display_name_blank",
                "bio_exceed_max_chars",
                "user_handle_blank",
            ],
        ),
        (
            "H",
            "'; DROP TABLE users; --",
            "emoji 🦀 RTL שלום \\ \" '",
            &[],
        ),
    ];
    common::with_rollback(|conn| {
        let user = common::user(conn, "Old Name");
        for (handle, display_name, bio, expected) in cases {
            let handle = if handle == "H" {
                user.handle.as_str()
            } else {
                handle
            };
            let label = format!(
                "handle={handle:?} display_name={:?}… ({} chars) bio={:?}… ({} chars)",
                display_name.chars().take(12).collect::<String>(),
                display_name.chars().count(),
                bio.chars().take(12).collect::<String>(),
                bio.chars().count()
            );
            let before = stored(conn, user.uuid);
            let result = ProfileDraft::parse(handle, display_name, bio)
                .and_then(|d| update_profile(conn, &d));
            if expected.is_empty() {
                let short = result.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(short.handle, user.handle, "{label}");
                assert_eq!(short.uuid, user.uuid, "{label}");
                assert_eq!(short.display_name, display_name, "{label}");
                assert_eq!(
                    stored(conn, user.uuid),
                    (display_name.to_owned(), bio.to_owned()),
                    "{label}"
                );
            } else {
                let err = result.expect_err(&label);
                assert_eq!(err.validation_codes(), expected, "{label}: {err}");
                assert_eq!(stored(conn, user.uuid), before, "{label}: written");
            }
        }
    });
}

#[test]
fn message_lookups_find_the_sender_by_subject_and_the_receiver_by_handle() {
    common::with_rollback(|conn| {
        let ann = common::user(conn, "Ann");
        let sub = common::unique_name("sub");
        diesel::update(users::table.find(ann.uuid))
            .set(users::cognito_user_id.eq(&sub))
            .execute(conn)
            .unwrap();
        let bob = common::user(conn, "Bob");
        assert_eq!(
            uuid_from_cognito_user_id(conn, &sub).unwrap(),
            Some(ann.uuid)
        );
        assert_eq!(
            uuid_from_cognito_user_id(conn, "no-such-sub").unwrap(),
            None
        );
        assert_eq!(uuid_from_cognito_user_id(conn, "nul\0sub").unwrap(), None);

        let both = message_users(conn, &sub, &bob.handle).unwrap();
        let mut got: Vec<(Uuid, MessageUserKind)> = both.iter().map(|u| (u.uuid, u.kind)).collect();
        got.sort();
        let mut expected = vec![
            (ann.uuid, MessageUserKind::Sender),
            (bob.uuid, MessageUserKind::Receiver),
        ];
        expected.sort();
        assert_eq!(got, expected);
        assert_eq!(
            keys_of(&both[0]),
            ["uuid", "display_name", "handle", "kind"]
        );
        assert!(
            both.iter()
                .map(|u| serde_json::to_value(u).unwrap()["kind"].clone())
                .all(|k| k == "sender" || k == "recv"),
            "{both:?}"
        );
        // Writing to oneself: one row, the sender.
        let own = message_users(conn, &sub, &ann.handle).unwrap();
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].kind, MessageUserKind::Sender);
        assert!(message_users(conn, "nul\0", "nul\0").unwrap().is_empty());
        assert!(
            message_users(conn, "no-such-sub", "nobody")
                .unwrap()
                .is_empty()
        );
    });
}
