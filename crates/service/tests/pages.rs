//! The rest of the original's PostgreSQL API over real HTTP: a user's
//! page, a crud's page, replying, short cards and profile updates, with
//! every status and shape the original frontend reads.

mod common;

use common::{
    Keys, Service, TestDb, access_claims, activities, confirm_token_holder, get, jwt_service,
    post_json, seeded_db, send,
};
use cruddur_db::repo::profiles::PROFILE_PAGE_SIZE;
use cruddur_db::{ActivityDraft, Config, FeedPage, ReplyPage, Repository, Ttl};
use cruddur_db_test_support::FEED_KEYS;
use serde_json::{Value, json};

const PROFILE_KEYS: [&str; 6] = [
    "uuid",
    "cognito_user_uuid",
    "handle",
    "display_name",
    "bio",
    "cruds_count",
];
const PAGE_ITEM_KEYS: [&str; 6] = [
    "uuid",
    "display_name",
    "handle",
    "message",
    "created_at",
    "expires_at",
];
const REPLY_KEYS: [&str; 9] = [
    "uuid",
    "display_name",
    "handle",
    "message",
    "replies_count",
    "reposts_count",
    "likes_count",
    "reply_to_activity_uuid",
    "created_at",
];
const SHORT_KEYS: [&str; 3] = ["uuid", "handle", "display_name"];

/// Asserts that `object` has exactly `keys`, and that they come in this
/// order in `text`, its JSON as sent.
fn assert_keys(object: &Value, keys: &[&str], text: &str) {
    let map = object.as_object().unwrap_or_else(|| panic!("{object}"));
    let mut found: Vec<&str> = map.keys().map(String::as_str).collect();
    let mut wanted = keys.to_vec();
    found.sort_unstable();
    wanted.sort_unstable();
    assert_eq!(found, wanted, "{object}");
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.is_sorted(), "keys out of order: {text}");
}

/// `text` from `marker` on.
fn after<'t>(marker: &str, text: &'t str) -> &'t str {
    &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {text}"))..]
}

/// A repository over `db`'s database.
fn repo(db: &TestDb) -> Repository {
    Repository::connect(&Config::new(db.url.clone())).unwrap()
}

/// The uuid of the seed's post (the crud the seed's reply answers).
fn seed_post(db: &TestDb) -> String {
    let page = repo(db)
        .user_page(
            cruddur_db::Consistency::Primary,
            "andrewbrown",
            FeedPage::first(1),
        )
        .unwrap();
    page.activities[0].uuid.to_string()
}

/// Asserts a `404` with a JSON error.
fn assert_404(service: &Service, path: &str) {
    let answer = get(&service.url(path), &[]);
    assert_eq!(answer.status, 404, "{path}: {}", answer.body);
    assert!(
        answer.json()["error"].is_string(),
        "{path}: {}",
        answer.body
    );
}

#[test]
fn a_users_page_is_the_profile_and_the_newest_activities_in_keyset_pages() {
    let db = seeded_db();
    let repo = repo(&db);
    for i in 0..45 {
        repo.create_activity(
            &ActivityDraft::new("andrewbrown", &format!("crud {i}"), Ttl::Day1).unwrap(),
        )
        .unwrap();
    }
    let service = Service::development(&db);

    let first = get(&service.url("/api/activities/@andrewbrown"), &[]);
    assert_eq!(first.status, 200, "{}", first.body);
    let expected = repo
        .user_page(
            cruddur_db::Consistency::Primary,
            "andrewbrown",
            FeedPage::first(PROFILE_PAGE_SIZE),
        )
        .unwrap();
    // What the repository returns, key for key and in order.
    assert_eq!(first.body, serde_json::to_string(&expected).unwrap());
    let body = first.json();
    assert_keys(&body, &["profile", "activities"], &first.body);
    assert_keys(&body["profile"], &PROFILE_KEYS, &first.body);
    assert_eq!(body["profile"]["cognito_user_uuid"], "MOCK");
    assert_eq!(body["profile"]["cruds_count"], 46);
    let items = body["activities"].as_array().unwrap();
    assert_eq!(items.len(), 40, "the original's 40");
    assert_keys(
        &items[0],
        &PAGE_ITEM_KEYS,
        after("\"activities\"", &first.body),
    );
    assert_eq!(items[0]["message"], "crud 44", "newest first");

    // The next page starts after the last item's cursor.
    let last = &items[39];
    let cursor = format!(
        "{}_{}",
        last["created_at"].as_str().unwrap(),
        last["uuid"].as_str().unwrap()
    );
    let next = get(
        &service.url(&format!(
            "/api/activities/@andrewbrown?limit=40&before={cursor}"
        )),
        &[],
    );
    assert_eq!(next.status, 200, "{}", next.body);
    let rest = next.json()["activities"].as_array().unwrap().clone();
    assert_eq!(
        rest.len(),
        6,
        "45 cruds and the seed's post, 40 already shown"
    );
    assert_eq!(rest[0]["message"], "crud 4");
    let small = get(&service.url("/api/activities/@andrewbrown?limit=3"), &[]);
    assert_eq!(small.json()["activities"].as_array().unwrap().len(), 3);

    assert_404(&service, "/api/activities/@nobody");
    assert_404(&service, "/api/activities/@andrew%00brown");
    for bad in ["limit=0", "limit=101", "limit=x", "before=junk"] {
        let answer = get(
            &service.url(&format!("/api/activities/@andrewbrown?{bad}")),
            &[],
        );
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(answer.json()["error"].is_string(), "{bad}");
    }
}

#[test]
fn a_cruds_page_has_the_feed_keys_and_its_replies_oldest_first_in_pages() {
    let db = seeded_db();
    let post = seed_post(&db);
    let service = Service::development(&db);
    for i in 0..3 {
        let answer = post_json(
            &service.url(&format!("/api/activities/{post}/reply")),
            &[],
            &json!({ "message": format!("reply {i}") }).to_string(),
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    let path = format!("/api/activities/@andrewbrown/status/{post}");
    let page = get(&service.url(&path), &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let expected = repo(&db)
        .activity_thread(
            cruddur_db::Consistency::Primary,
            "andrewbrown",
            post.parse().unwrap(),
            ReplyPage::default(),
        )
        .unwrap();
    assert_eq!(page.body, serde_json::to_string(&expected).unwrap());
    let body = page.json();
    assert_keys(&body, &["activity", "replies"], &page.body);
    assert_keys(&body["activity"], &FEED_KEYS, &page.body);
    assert_eq!(body["activity"]["replies_count"], 4, "the seed's and three");
    let replies = body["replies"].as_array().unwrap();
    assert_keys(&replies[0], &REPLY_KEYS, after("\"replies\"", &page.body));
    let messages: Vec<&str> = replies
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "This was imported as a seed reply!",
            "reply 0",
            "reply 1",
            "reply 2"
        ],
        "oldest first"
    );
    assert!(
        replies
            .iter()
            .all(|r| r["reply_to_activity_uuid"] == post.as_str())
    );

    let two = get(&service.url(&format!("{path}?limit=2")), &[]).json();
    let second = &two["replies"][1];
    let after = format!(
        "{}_{}",
        second["created_at"].as_str().unwrap(),
        second["uuid"].as_str().unwrap()
    );
    let rest = get(&service.url(&format!("{path}?limit=2&after={after}")), &[]).json();
    let rest: Vec<&str> = rest["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["reply 1", "reply 2"]);

    assert_404(&service, &format!("/api/activities/@bayko/status/{post}"));
    assert_404(&service, &format!("/api/activities/@nobody/status/{post}"));
    assert_404(
        &service,
        "/api/activities/@andrewbrown/status/00000000-0000-4000-8000-000000000000",
    );
    assert_404(&service, "/api/activities/@andrewbrown/status/not-a-uuid");
    for bad in ["limit=0", "limit=101", "after=junk"] {
        let answer = get(&service.url(&format!("{path}?{bad}")), &[]);
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
    }
}

#[test]
fn bad_replies_get_every_failing_code_at_once_or_404_and_write_nothing() {
    let db = seeded_db();
    let post = seed_post(&db);
    let service = Service::development(&db);
    let before = activities(&db);
    let reply = |to: &str, body: &str| {
        post_json(
            &service.url(&format!("/api/activities/{to}/reply")),
            &[],
            body,
        )
    };
    let long = "é".repeat(1025);
    let cases: Vec<(String, String, u16, Value)> = vec![
        (
            post.clone(),
            json!({"message": ""}).to_string(),
            422,
            json!(["message_blank"]),
        ),
        (
            post.clone(),
            json!({"message": " \n\t"}).to_string(),
            422,
            json!(["message_blank"]),
        ),
        (
            post.clone(),
            json!({ "message": long }).to_string(),
            422,
            json!(["message_exceed_max_chars_1024"]),
        ),
        (
            "not-a-uuid".into(),
            json!({"message": ""}).to_string(),
            422,
            json!(["message_blank", "activity_uuid_invalid"]),
        ),
        (
            "%20".into(),
            json!({"message": "hi"}).to_string(),
            422,
            json!(["activity_uuid_blank"]),
        ),
        (
            "00000000-0000-4000-8000-000000000000".into(),
            json!({"message": "hi"}).to_string(),
            404,
            Value::Null,
        ),
        (post.clone(), r#"["hi"]"#.into(), 400, Value::Null),
        (post.clone(), r#"{"text": "hi"}"#.into(), 400, Value::Null),
        (post.clone(), "not json".into(), 400, Value::Null),
    ];
    for (to, body, status, codes) in cases {
        let answer = reply(&to, &body);
        assert_eq!(answer.status, status, "{to} {body}: {}", answer.body);
        if codes.is_null() {
            assert!(answer.json()["error"].is_string(), "{to} {body}");
        } else {
            assert_eq!(answer.json(), codes, "{to} {body}");
        }
    }
    let plain = send(
        "POST",
        &service.url(&format!("/api/activities/{post}/reply")),
        &[("Content-Type", "text/plain")],
        Some(r#"{"message": "hi"}"#),
    );
    assert_eq!(plain.status, 415);

    // An expired crud takes no reply.
    diesel::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE activities SET expires_at = now() - interval '1 second' WHERE uuid = '{post}'"
        )),
        &mut db.conn(),
    )
    .unwrap();
    let expired = reply(&post, r#"{"message": "too late"}"#);
    assert_eq!(expired.status, 404, "{}", expired.body);
    assert_eq!(activities(&db), before, "nothing written");
    let counted = get(
        &service.url(&format!("/api/activities/@andrewbrown/status/{post}")),
        &[],
    );
    assert_eq!(
        counted.json()["activity"]["replies_count"],
        1,
        "only the seed's reply"
    );

    // 1,024 characters is a reply (a post allows 280).
    let other = repo(&db)
        .create_activity(&ActivityDraft::new("bayko", "fresh", Ttl::Day1).unwrap())
        .unwrap()
        .0
        .uuid;
    let full = reply(
        &other.to_string(),
        &json!({ "message": "é".repeat(1024) }).to_string(),
    );
    assert_eq!(full.status, 200, "{}", full.body);
}

#[test]
fn replying_needs_a_token_and_concurrent_replies_count_exactly() {
    let db = seeded_db();
    confirm_token_holder(&db);
    let post = seed_post(&db);
    let keys = Keys::generate("k1");
    let service = jwt_service(&db, &keys);
    let url = service.url(&format!("/api/activities/{post}/reply"));
    let before = activities(&db);

    let anonymous = post_json(&url, &[], r#"{"message": "hi"}"#);
    assert_eq!((anonymous.status, anonymous.json()), (401, json!({})));
    let forged = post_json(
        &url,
        &[("Authorization", "Bearer a.b.c")],
        r#"{"message": "hi"}"#,
    );
    assert_eq!(forged.status, 401);
    assert_eq!(activities(&db), before);

    let bearer = format!("Bearer {}", keys.sign(&access_claims("sub-of-holder")));
    let one = post_json(
        &url,
        &[("Authorization", &bearer)],
        r#"{"message": "first"}"#,
    );
    assert_eq!(one.status, 200, "{}", one.body);
    let object = one.json();
    assert_keys(
        &object,
        &[
            "uuid",
            "display_name",
            "handle",
            "message",
            "created_at",
            "expires_at",
            "reply_to_activity_uuid",
        ],
        &one.body,
    );
    assert_eq!(object["handle"], "holder");
    assert_eq!(object["reply_to_activity_uuid"], post.as_str());
    assert_eq!(object["expires_at"], Value::Null);
    let token = one.header("x-write-token").unwrap().to_owned();
    assert!(
        one.header("set-cookie")
            .unwrap()
            .starts_with(&format!("cruddur_write_token={token};"))
    );
    // The author's next read, with the token, shows the reply.
    let page = get(
        &service.url(&format!("/api/activities/@andrewbrown/status/{post}")),
        &[("x-write-token", &token)],
    );
    assert!(page.body.contains("\"first\""), "{}", page.body);

    // Concurrent replies each count once: the count is the replies' number.
    std::thread::scope(|s| {
        for t in 0..8 {
            let (url, bearer) = (&url, &bearer);
            s.spawn(move || {
                for i in 0..4 {
                    let answer = post_json(
                        url,
                        &[("Authorization", bearer)],
                        &json!({ "message": format!("reply {t}.{i}") }).to_string(),
                    );
                    assert_eq!(answer.status, 200, "{}", answer.body);
                }
            });
        }
    });
    let thread = get(
        &service.url(&format!("/api/activities/@andrewbrown/status/{post}")),
        &[],
    )
    .json();
    assert_eq!(thread["replies"].as_array().unwrap().len(), 1 + 1 + 32);
    assert_eq!(thread["activity"]["replies_count"], 1 + 1 + 32);
}

#[test]
fn a_short_card_and_a_profile_update_that_the_next_read_sees() {
    let db = seeded_db();
    let service = Service::development(&db);
    let short = get(&service.url("/api/users/@bayko/short"), &[]);
    assert_eq!(short.status, 200, "{}", short.body);
    assert_keys(&short.json(), &SHORT_KEYS, &short.body);
    assert_eq!(short.json()["display_name"], "Andrew Bayko");
    assert_404(&service, "/api/users/@nobody/short");

    let update = service.url("/api/profile/update");
    let updated = post_json(
        &update,
        &[],
        &json!({"display_name": "Andrew B.", "bio": "Teaches cloud."}).to_string(),
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    // The card, with the handle the original never returned.
    assert_keys(&updated.json(), &SHORT_KEYS, &updated.body);
    assert_eq!(updated.json()["handle"], "andrewbrown");
    assert_eq!(updated.json()["display_name"], "Andrew B.");
    let token = updated.header("x-write-token").unwrap().to_owned();
    let page = get(
        &service.url("/api/activities/@andrewbrown"),
        &[("x-write-token", &token)],
    )
    .json();
    assert_eq!(page["profile"]["bio"], "Teaches cloud.");
    assert_eq!(page["profile"]["display_name"], "Andrew B.");

    let long_name = "n".repeat(101);
    let long_bio = "b".repeat(501);
    for (body, status, codes) in [
        (
            json!({"display_name": " ", "bio": ""}),
            422,
            json!(["display_name_blank"]),
        ),
        (
            json!({"display_name": long_name, "bio": long_bio}),
            422,
            json!(["display_name_exceed_max_chars", "bio_exceed_max_chars"]),
        ),
        (
            json!({"display_name": "a\u{0}b", "bio": "c\u{0}"}),
            422,
            json!(["display_name_contains_nul", "bio_contains_nul"]),
        ),
        // Both keys are required: a forgotten bio is not blanked.
        (json!({"display_name": "Only a name"}), 400, Value::Null),
        (json!(["Andrew", ""]), 400, Value::Null),
    ] {
        let answer = post_json(&update, &[], &body.to_string());
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        if !codes.is_null() {
            assert_eq!(answer.json(), codes, "{body}");
        }
    }
    let after = get(&service.url("/api/activities/@andrewbrown"), &[]).json();
    assert_eq!(after["profile"]["bio"], "Teaches cloud.", "nothing written");
    assert_eq!(after["profile"]["display_name"], "Andrew B.");
}

#[test]
fn a_profile_update_is_the_tokens_user_and_needs_a_token() {
    let db = seeded_db();
    confirm_token_holder(&db);
    let keys = Keys::generate("k1");
    let service = jwt_service(&db, &keys);
    let update = service.url("/api/profile/update");
    let body = json!({"display_name": "Holder", "bio": "mine"}).to_string();
    let anonymous = post_json(&update, &[], &body);
    assert_eq!((anonymous.status, anonymous.json()), (401, json!({})));
    let bearer = format!("Bearer {}", keys.sign(&access_claims("sub-of-holder")));
    let updated = post_json(&update, &[("Authorization", &bearer)], &body);
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["handle"], "holder");
    let seed_user = get(&service.url("/api/activities/@andrewbrown"), &[]).json();
    assert_ne!(seed_user["profile"]["bio"], "mine", "only the token's user");
}
