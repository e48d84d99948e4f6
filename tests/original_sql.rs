//! The original backend's SQL files for the routes of a user's page, a
//! crud's page, the short card, the profile update and the lookups behind
//! messages (`tests/original_sql/`, verbatim), run unchanged on this schema
//! over the reference seed and a few more rows: they return the same rows
//! as the library's functions.

mod common;

use std::collections::BTreeSet;

use chrono::DateTime;
use cruddur_db::models::TIMESTAMP_FORMAT;
use cruddur_db::repo::profiles::PROFILE_PAGE_SIZE;
use cruddur_db::repo::users::{message_users, uuid_from_cognito_user_id};
use cruddur_db::schema::{activities, users};
use cruddur_db::{
    ActivityDraft, Error, FeedPage, PostConfirmationEvent, ProfileDraft, ReplyDraft, ReplyPage,
    activity_thread, confirm_user, create_activity, create_reply, seed_reference, update_profile,
    user_page, user_short,
};
use diesel::prelude::*;
use diesel::sql_types::{Json, Text};
use serde_json::Value;
use uuid::Uuid;

/// The original's file `name`, with psycopg's `%(param)s` placeholders
/// turned into `$1`, `$2`, … in the order of `params` (what psycopg 3 sends
/// the server); nothing else changes.
fn original(name: &str, params: &[&str]) -> String {
    let path = format!("{}/tests/original_sql/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (i, param) in params.iter().enumerate() {
        let placeholder = format!("%({param})s");
        assert!(sql.contains(&placeholder), "{name} has no {placeholder}");
        sql = sql.replace(&placeholder, &format!("${}", i + 1));
    }
    assert!(!sql.contains("%("), "{name}: a placeholder is left: {sql}");
    sql
}

/// `value` with every timestamp (a string under a key ending in `_at`)
/// written as the library writes them, so that PostgreSQL's JSON
/// (`+00:00`, trailing zeros dropped) and serde's compare as instants.
fn normalized(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key.ends_with("_at")
                        && let Value::String(text) = v
                    {
                        let t = DateTime::parse_from_rfc3339(text)
                            .unwrap_or_else(|e| panic!("{key}: {text}: {e}"));
                        *text = t.to_utc().format(TIMESTAMP_FORMAT).to_string();
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

fn json_of(value: &impl serde::Serialize) -> Value {
    normalized(serde_json::to_value(value).unwrap())
}

#[derive(QueryableByName)]
struct ProfileRow {
    #[diesel(sql_type = Json)]
    profile: Value,
    #[diesel(sql_type = Json)]
    activities: Value,
}

#[derive(QueryableByName)]
struct ThreadRow {
    #[diesel(sql_type = Json)]
    activity: Value,
    #[diesel(sql_type = Json)]
    replies: Value,
}

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ShortRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    uuid: Uuid,
    #[diesel(sql_type = Text)]
    handle: String,
    #[diesel(sql_type = Text)]
    display_name: String,
}

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MessageUserRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    uuid: Uuid,
    #[diesel(sql_type = Text)]
    display_name: String,
    #[diesel(sql_type = Text)]
    handle: String,
    #[diesel(sql_type = Text)]
    kind: String,
}

#[derive(QueryableByName)]
struct UuidRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    uuid: Uuid,
}

#[derive(QueryableByName)]
struct HandleRow {
    #[diesel(sql_type = Text)]
    handle: String,
}

const ANN_SUB: &str = "4f9a1c2e-8b7d-4e3f-a6b5-0c1d2e3f4a5b";

/// The reference seed, a user of a confirmation event, cruds by each and
/// replies (to a crud, to a reply) by all.
fn seeded() -> common::TestDb {
    let db = common::TestDb::migrated();
    let conn = &mut db.conn();
    seed_reference(conn).unwrap();
    let event = PostConfirmationEvent::parse(&format!(
        r#"{{"request": {{"userAttributes": {{"name": "Ann Lee", "email": "ann@example.com",
            "preferred_username": "annlee", "sub": "{ANN_SUB}"}}}}}}"#
    ))
    .unwrap();
    confirm_user(conn, &event).unwrap();
    let mut cruds = Vec::new();
    for (handle, message) in [
        ("andrewbrown", "Second crud"),
        ("annlee", "Ann's first"),
        ("bayko", "A crud by bayko"),
        ("annlee", "Ann again 🦀"),
    ] {
        let draft = ActivityDraft::parse(handle, message, "7-days").unwrap();
        cruds.push(create_activity(conn, &draft).unwrap().uuid);
    }
    let mut replies = Vec::new();
    for (handle, to, message) in [
        ("annlee", cruds[0], "a reply"),
        ("bayko", cruds[0], "another"),
        ("andrewbrown", cruds[2], "thanks"),
    ] {
        let draft = ReplyDraft::new(handle, to, message).unwrap();
        replies.push(create_reply(conn, &draft).unwrap().uuid);
    }
    let draft = ReplyDraft::new("annlee", replies[0], "a reply to a reply").unwrap();
    create_reply(conn, &draft).unwrap();
    db
}

fn all_handles(conn: &mut PgConnection) -> Vec<String> {
    let mut handles: Vec<String> = users::table.select(users::handle).load(conn).unwrap();
    handles.push("nobody".into());
    handles
}

#[test]
fn users_show_sql_returns_the_rows_of_user_page() {
    let db = seeded();
    let conn = &mut db.conn();
    let sql = original("users/show.sql", &["handle"]);
    for handle in all_handles(conn) {
        let rows: Vec<ProfileRow> = diesel::sql_query(&sql)
            .bind::<Text, _>(&handle)
            .load(conn)
            .unwrap();
        let ours = user_page(conn, &handle, FeedPage::first(PROFILE_PAGE_SIZE));
        let Some(row) = rows.into_iter().next() else {
            assert!(
                matches!(ours, Err(Error::UserNotFound { .. })),
                "{handle}: {ours:?}"
            );
            continue;
        };
        let ours = ours.unwrap();
        assert_eq!(normalized(row.profile), json_of(&ours.profile), "{handle}");
        // The original orders by created_at alone; no two rows here share one.
        let times: BTreeSet<_> = ours.activities.iter().map(|a| a.created_at).collect();
        assert_eq!(times.len(), ours.activities.len(), "{handle}: a tie");
        assert_eq!(
            normalized(row.activities),
            json_of(&ours.activities),
            "{handle}"
        );
        assert!(
            !ours.activities.is_empty() || handle == "nobody",
            "{handle}"
        );
    }
}

#[test]
fn activities_show_sql_returns_the_rows_of_activity_thread() {
    let db = seeded();
    let conn = &mut db.conn();
    let sql = original("activities/show.sql", &["uuid"]);
    let all: Vec<(Uuid, String)> = activities::table
        .inner_join(users::table)
        .select((activities::uuid, users::handle))
        .load(conn)
        .unwrap();
    let mut with_replies = 0;
    for (uuid, handle) in all
        .iter()
        .cloned()
        .chain([(Uuid::new_v4(), "bayko".into())])
    {
        let rows: Vec<ThreadRow> = diesel::sql_query(&sql)
            .bind::<diesel::sql_types::Uuid, _>(uuid)
            .load(conn)
            .unwrap();
        let ours = activity_thread(conn, &handle, uuid, ReplyPage::default());
        let Some(row) = rows.into_iter().next() else {
            assert!(
                matches!(ours, Err(Error::ActivityNotFound { .. })),
                "{uuid}: {ours:?}"
            );
            continue;
        };
        let ours = ours.unwrap();
        // The original's object lacks reply_to_activity_uuid; every key it
        // has holds the same value.
        let activity = json_of(&ours.activity);
        let theirs = normalized(row.activity);
        for (key, value) in theirs.as_object().unwrap() {
            assert_eq!(&activity[key], value, "{uuid}: {key}");
        }
        // The original never ordered its replies: the same set.
        let sorted = |v: Value| {
            let mut items = v.as_array().unwrap().clone();
            items.sort_by_key(|i| i["uuid"].as_str().unwrap().to_owned());
            items
        };
        let replies = json_of(&ours.replies);
        with_replies += usize::from(!ours.replies.is_empty());
        assert_eq!(sorted(normalized(row.replies)), sorted(replies), "{uuid}");
    }
    assert!(with_replies >= 3, "the data has replies to compare");
}

#[test]
fn users_short_sql_returns_the_row_of_user_short() {
    let db = seeded();
    let conn = &mut db.conn();
    let sql = original("users/short.sql", &["handle"]);
    for handle in all_handles(conn) {
        let rows: Vec<ShortRow> = diesel::sql_query(&sql)
            .bind::<Text, _>(&handle)
            .load(conn)
            .unwrap();
        let ours = user_short(conn, &handle)
            .map(|s| ShortRow {
                uuid: s.uuid,
                handle: s.handle,
                display_name: s.display_name,
            })
            .ok();
        assert_eq!(rows.into_iter().next(), ours, "{handle}");
    }
}

#[test]
fn users_update_sql_makes_the_change_of_update_profile() {
    let db = seeded();
    let conn = &mut db.conn();
    let sql = original(
        "users/update.sql",
        &["bio", "display_name", "cognito_user_id"],
    );
    let (name, bio) = ("Ann L.", "Writes about 'SQL' \\ and 🦀");
    let stored = |conn: &mut PgConnection| -> Vec<(String, String, String)> {
        users::table
            .select((users::handle, users::display_name, users::bio))
            .order(users::handle)
            .load(conn)
            .unwrap()
    };
    let (theirs, after_theirs) = conn.test_transaction::<_, diesel::result::Error, _>(|conn| {
        let rows: Vec<HandleRow> = diesel::sql_query(&sql)
            .bind::<Text, _>(bio)
            .bind::<Text, _>(name)
            .bind::<Text, _>(ANN_SUB)
            .load(conn)?;
        Ok((rows, stored(conn)))
    });
    let (ours, after_ours) = conn.test_transaction::<_, diesel::result::Error, _>(|conn| {
        let draft = ProfileDraft::parse("annlee", name, bio).unwrap();
        Ok((update_profile(conn, &draft).unwrap(), stored(conn)))
    });
    let handles: Vec<&str> = theirs.iter().map(|r| r.handle.as_str()).collect();
    assert_eq!(handles, [ours.handle.as_str()]);
    assert_eq!(after_theirs, after_ours);
    assert!(after_ours.contains(&("annlee".into(), name.into(), bio.into())));
}

#[test]
fn message_lookups_return_the_rows_of_the_original_sql() {
    let db = seeded();
    let conn = &mut db.conn();
    let users_sql = original(
        "users/create_message_users.sql",
        &["cognito_user_id", "user_receiver_handle"],
    );
    let mut compared = 0;
    for sub in [ANN_SUB, "MOCK", "no-such-sub"] {
        for receiver in all_handles(conn) {
            let mut theirs: Vec<MessageUserRow> = diesel::sql_query(&users_sql)
                .bind::<Text, _>(sub)
                .bind::<Text, _>(&receiver)
                .load(conn)
                .unwrap();
            theirs.sort();
            let mut ours: Vec<MessageUserRow> = message_users(conn, sub, &receiver)
                .unwrap()
                .into_iter()
                .map(|u| MessageUserRow {
                    kind: serde_json::to_value(u.kind)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .into(),
                    uuid: u.uuid,
                    display_name: u.display_name,
                    handle: u.handle,
                })
                .collect();
            ours.sort();
            compared += theirs.len();
            assert_eq!(theirs, ours, "{sub} -> {receiver}");
        }
    }
    assert!(compared > 0);

    let uuid_sql = original("users/uuid_from_cognito_user_id.sql", &["cognito_user_id"]);
    for sub in [ANN_SUB, "MOCK", "no-such-sub"] {
        let theirs: Vec<Uuid> = diesel::sql_query(&uuid_sql)
            .bind::<Text, _>(sub)
            .load::<UuidRow>(conn)
            .unwrap()
            .into_iter()
            .map(|r| r.uuid)
            .collect();
        let ours = uuid_from_cognito_user_id(conn, sub).unwrap();
        if sub == "MOCK" {
            // Two users share it and the original's LIMIT 1 has no order:
            // either is its answer; ours is the first by handle.
            let mock: Vec<Uuid> = users::table
                .filter(users::cognito_user_id.eq("MOCK"))
                .order(users::handle)
                .select(users::uuid)
                .load(conn)
                .unwrap();
            assert_eq!(mock.len(), 2);
            assert!(mock.contains(&theirs[0]), "{theirs:?}");
            assert_eq!(ours, Some(mock[0]));
        } else {
            assert_eq!(theirs.first().copied(), ours, "{sub}");
        }
    }
}
