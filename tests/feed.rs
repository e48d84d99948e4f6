//! The home feed: order, ties, keyset paging, the empty feed, and the
//! byte-equality of the typed and the server-built JSON paths.

mod common;

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use cruddur_db::repo::feed::{MAX_PAGE_SIZE, home_feed, home_feed_json, home_feed_json_bytes};
use cruddur_db::schema::activities;
use cruddur_db::{Error, FeedCursor, FeedPage, NewActivity};
use diesel::prelude::*;
use uuid::Uuid;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn insert(conn: &mut PgConnection, user: Uuid, message: &str, created_at: DateTime<Utc>) -> Uuid {
    diesel::insert_into(activities::table)
        .values(NewActivity {
            user_uuid: user,
            message,
            reply_to_activity_uuid: None,
            expires_at: Some(created_at + TimeDelta::days(1)),
            created_at,
        })
        .returning(activities::uuid)
        .get_result(conn)
        .unwrap()
}

#[test]
fn empty_feed_is_an_empty_array_on_both_paths() {
    common::with_rollback(|conn| {
        assert!(home_feed(conn, FeedPage::default()).unwrap().is_empty());
        assert_eq!(home_feed_json(conn, FeedPage::default()).unwrap(), "[]");
    });
}

#[test]
fn newest_first_with_author_names_and_exact_keys() {
    common::with_rollback(|conn| {
        let alice = common::user(conn, "Alice");
        let bob = common::user(conn, "Bob");
        insert(conn, alice.uuid, "old", at(0));
        insert(conn, bob.uuid, "new", at(10));
        insert(conn, alice.uuid, "middle", at(5));
        let feed = home_feed(conn, FeedPage::default()).unwrap();
        let messages: Vec<_> = feed.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(messages, ["new", "middle", "old"]);
        assert_eq!(feed[0].display_name, "Bob");
        assert_eq!(feed[0].handle, bob.handle);

        let text = home_feed_json(conn, FeedPage::default()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = json[0].as_object().unwrap();
        let keys = common::FEED_KEYS;
        assert_eq!(first.len(), keys.len(), "{text}");
        let first_text = &text[..text.find('}').unwrap()];
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| first_text.find(&format!("\"{k}\":")).expect(k))
            .collect();
        assert!(positions.is_sorted(), "keys out of order: {first_text}");
        assert_eq!(first["created_at"], "2027-01-15T08:00:10.000000Z");
        assert_eq!(first["likes_count"], 0);
        assert!(first["reply_to_activity_uuid"].is_null());
    });
}

#[test]
fn ties_on_created_at_are_broken_by_uuid_descending() {
    common::with_rollback(|conn| {
        let u = common::user(conn, "Tie");
        let mut ids: Vec<Uuid> = (0..5)
            .map(|i| insert(conn, u.uuid, &format!("m{i}"), at(0)))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let feed = home_feed(conn, FeedPage::default()).unwrap();
        let got: Vec<Uuid> = feed.iter().map(|i| i.uuid).collect();
        assert_eq!(got, ids);
    });
}

#[test]
fn walking_pages_yields_every_activity_once_even_with_ties() {
    common::with_rollback(|conn| {
        let u = common::user(conn, "Pager");
        let mut all = HashSet::new();
        // 47 activities over 10 distinct timestamps: many ties cross page edges.
        for i in 0..47 {
            all.insert(insert(conn, u.uuid, &format!("m{i}"), at(i % 10)));
        }
        for limit in [1, 3, 7, 20, MAX_PAGE_SIZE] {
            let mut seen = Vec::new();
            let mut page = FeedPage::first(limit);
            loop {
                let items = home_feed(conn, page).unwrap();
                let json = home_feed_json(conn, page).unwrap();
                assert_eq!(
                    json,
                    serde_json::to_string(&items).unwrap(),
                    "limit {limit}"
                );
                assert_eq!(
                    home_feed_json_bytes(conn, page).unwrap(),
                    json.as_bytes(),
                    "limit {limit}"
                );
                let Some(last) = items.last() else { break };
                // The cursor survives its text form, as the CLI passes it.
                let cursor: FeedCursor = FeedCursor::after(last).to_string().parse().unwrap();
                seen.extend(items.iter().map(|i| i.uuid));
                page = FeedPage::after(limit, cursor);
            }
            assert_eq!(seen.len(), 47, "limit {limit}: duplicates or gaps");
            assert_eq!(
                seen.iter().copied().collect::<HashSet<_>>(),
                all,
                "limit {limit}"
            );
        }
    });
}

#[test]
fn json_path_is_byte_identical_for_hostile_text_and_nulls() {
    common::with_rollback(|conn| {
        let u = common::user(conn, "Quote \" Back\\slash \u{1F980} שלום");
        let hostile = [
            "tab\tnewline\nreturn\r",
            "'; DROP TABLE activities; --",
            "control \u{1} \u{1f} \u{7f} end",
            "emoji 🦀👩‍👩‍👧 and RTL مرحبا",
            "</script><script>alert(1)</script>",
            "back\\slash \"quoted\" /slash",
        ];
        for (i, m) in hostile.iter().enumerate() {
            insert(conn, u.uuid, m, at(i as i64));
        }
        // A reply, so reply_to_activity_uuid is non-null in one item.
        let parent = home_feed(conn, FeedPage::first(1)).unwrap()[0].uuid;
        let draft = cruddur_db::ReplyDraft::new(&u.handle, parent, "a reply").unwrap();
        cruddur_db::create_reply(conn, &draft).unwrap();
        let items = home_feed(conn, FeedPage::default()).unwrap();
        assert!(
            items
                .iter()
                .any(|i| i.reply_to_activity_uuid == Some(parent))
        );
        assert_eq!(
            home_feed_json(conn, FeedPage::default()).unwrap(),
            serde_json::to_string(&items).unwrap()
        );
    });
}

#[test]
fn page_size_outside_bounds_is_refused() {
    common::with_rollback(|conn| {
        for limit in [0, -1, MAX_PAGE_SIZE + 1] {
            let err = home_feed(conn, FeedPage::first(limit)).unwrap_err();
            assert!(
                matches!(err, Error::InvalidPageSize { .. }),
                "limit {limit}: {err}"
            );
            assert!(
                home_feed_json(conn, FeedPage::first(limit)).is_err(),
                "limit {limit}"
            );
        }
    });
}

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[test]
fn both_paths_are_prepared_and_planned_once_per_connection_with_the_published_sql() {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{Connection, InstrumentationEvent};
    common::with_rollback(|conn| {
        // What Diesel reports sending, to compare with what the server holds.
        let sent = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = Arc::clone(&sent);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                let shown = query.to_string();
                let sql = shown.split(" -- binds: ").next().unwrap_or_default();
                log.lock().unwrap().push(sql.to_owned());
            }
        });
        let u = common::user(conn, "Prepared");
        insert(conn, u.uuid, "m", at(0));
        let cursor = FeedCursor::after(&home_feed(conn, FeedPage::first(1)).unwrap()[0]);
        for _ in 0..3 {
            home_feed(conn, FeedPage::default()).unwrap();
            home_feed(conn, FeedPage::after(5, cursor)).unwrap();
            home_feed_json(conn, FeedPage::default()).unwrap();
            home_feed_json(conn, FeedPage::after(5, cursor)).unwrap();
        }
        let prepared: Vec<String> =
            diesel::sql_query("SELECT statement FROM pg_prepared_statements")
                .load::<Prepared>(conn)
                .unwrap()
                .into_iter()
                .map(|p| p.statement)
                .collect();
        // Planned once, not on every call: no custom plan after the first
        // executions (the connection's plan_cache_mode).
        let custom_plans: Vec<i64> = diesel::sql_query(
            "SELECT custom_plans AS n FROM pg_prepared_statements \
             WHERE statement LIKE '%activities%'",
        )
        .load::<Count>(conn)
        .unwrap()
        .into_iter()
        .map(|c| c.n)
        .collect();
        assert_eq!(
            custom_plans,
            [0, 0, 0, 0],
            "custom plans per feed statement"
        );
        let count = |needle: &str| prepared.iter().filter(|s| s.contains(needle)).count();
        // One named statement per shape, however many calls: the server
        // parses and plans each once per connection.
        assert_eq!(count("row_to_json"), 2, "{prepared:#?}");
        let typed: Vec<&String> = prepared
            .iter()
            .filter(|s| s.starts_with(r#"SELECT "activities"."uuid""#))
            .collect();
        assert_eq!(typed.len(), 2, "{prepared:#?}");
        // The JSON pages wrap the typed pages verbatim: one column list,
        // one order, one keyset predicate.
        for t in &typed {
            assert_eq!(
                count(&format!("FROM ({t}) p CROSS JOIN LATERAL")),
                1,
                "{t}\nnot wrapped by a JSON statement in {prepared:#?}"
            );
        }
        // What Diesel says it sends (and the benchmark hands to pgbench) is
        // what the server prepared: the four feed statements, each once.
        let sent: Vec<String> = sent.lock().unwrap().clone();
        let feed_sent: std::collections::BTreeSet<&String> = sent
            .iter()
            .filter(|s| s.contains(r#"FROM ("activities""#))
            .collect();
        assert_eq!(feed_sent.len(), 4, "{sent:#?}");
        for sql in feed_sent {
            assert!(prepared.contains(sql), "{sql}\nnot in {prepared:#?}");
        }
    });
}

#[test]
fn typed_timestamps_decode_as_diesels_own_across_the_range() {
    common::with_rollback(|conn| {
        let user = common::user(conn, "Times");
        let micros = |us: i64| DateTime::from_timestamp_micros(us).unwrap();
        let first = chrono::NaiveDate::from_ymd_opt(-4713, 11, 24)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        let last = chrono::NaiveDate::from_ymd_opt(262_142, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .unwrap()
            .and_utc();
        let instants = [
            first,                           // PostgreSQL's first day
            micros(-1),                      // just before the Unix epoch
            DateTime::UNIX_EPOCH,            // the Unix epoch
            micros(946_684_800_000_000 - 1), // just before PostgreSQL's epoch
            micros(946_684_800_000_000),     // PostgreSQL's epoch
            micros(946_684_800_000_001),
            micros(-62_135_596_800_000_001), // the last microsecond of 1 BC
            micros(951_782_400_123_456),     // 2000-02-29, a leap day
            micros(1_800_000_000_654_321),
            // The same day an hour earlier, and either side of a midnight:
            // the day decoded last is kept, and must be left when it ends.
            micros(1_800_000_000_654_321 - 3_600_000_000),
            micros(86_400_000_000 - 1),
            micros(86_400_000_000),
            micros(-86_400_000_000 - 1),
            last, // near chrono's last year
        ];
        for (i, t) in instants.iter().enumerate() {
            diesel::insert_into(activities::table)
                .values(NewActivity {
                    user_uuid: user.uuid,
                    message: &format!("t{i}"),
                    reply_to_activity_uuid: None,
                    // Every other row has no expiry: both shapes of the
                    // nullable column.
                    expires_at: (i % 2 == 0).then_some(*t),
                    created_at: *t,
                })
                .execute(conn)
                .unwrap();
        }
        let page = home_feed(conn, FeedPage::first(MAX_PAGE_SIZE)).unwrap();
        // Diesel's own FromSql for the same columns.
        let theirs: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = activities::table
            .select((
                activities::message,
                activities::created_at,
                activities::expires_at,
            ))
            .load(conn)
            .unwrap();
        assert_eq!(page.len(), instants.len());
        for item in &page {
            let (_, created_at, expires_at) =
                theirs.iter().find(|(m, ..)| *m == item.message).unwrap();
            assert_eq!(item.created_at, *created_at, "{}", item.message);
            assert_eq!(item.expires_at, *expires_at, "{}", item.message);
        }
        let mut ours: Vec<_> = page.iter().map(|i| i.created_at).collect();
        ours.sort();
        let mut expected = instants.to_vec();
        expected.sort();
        assert_eq!(ours, expected);

        // A value chrono cannot hold fails to decode, as with Diesel's own.
        diesel::sql_query("UPDATE activities SET created_at = 'infinity' WHERE message = 't1'")
            .execute(conn)
            .unwrap();
        let err = home_feed(conn, FeedPage::first(MAX_PAGE_SIZE)).unwrap_err();
        let mut chain = vec![err.to_string()];
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            chain.push(c.to_string());
            cause = c.source();
        }
        assert!(
            chain.iter().any(|c| c.contains("too large for Chrono")),
            "{chain:?}"
        );
        assert!(
            chain.contains(&"Error deserializing field 'created_at'".to_owned()),
            "the error names the column, as Diesel's does: {chain:?}"
        );
        assert!(
            activities::table
                .select(activities::created_at)
                .load::<DateTime<Utc>>(conn)
                .is_err()
        );
    });
}
