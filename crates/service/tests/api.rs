//! The activity API's contract, over real HTTP against a real database:
//! status codes, body shapes, CORS and token verification.

mod common;

use common::{
    CLIENT, ISSUER, Keys, Service, TestDb, access_claims, activities, confirm_token_holder, get,
    jwt_service, now, post_json, seeded_db, send,
};
use cruddur_db::{Config, FeedPage};
use cruddur_db_service::Auth;
use cruddur_db_service::auth::Verifier;
use cruddur_db_test_support::FEED_KEYS;
use serde_json::json;

#[test]
fn the_home_feed_on_async_connections_is_the_same_bytes_counted_once() {
    let db = seeded_db();
    let config = Config::new(db.url.clone());
    let service = Service::start_async(
        &config,
        Auth::Development {
            handle: "andrewbrown".into(),
        },
        &[],
    );
    let expected = cruddur_db::home_feed_json(&mut db.conn(), FeedPage::default()).unwrap();
    let reads = |metrics: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("cruddur_db_router_primary_reads_"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let before = reads(&get(&service.url("/metrics"), &[]).body);
    for _ in 0..3 {
        let feed = get(&service.url("/api/activities/home"), &[]);
        assert_eq!((feed.status, feed.body.as_str()), (200, expected.as_str()));
        assert_eq!(feed.header("content-type"), Some("application/json"));
    }
    let metrics = get(&service.url("/metrics"), &[]).body;
    assert_eq!(reads(&metrics), before + 3, "{metrics}");
    let open = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cruddur_db_async_pool_connections "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(open, Some(1), "one connection served the three: {metrics}");
    // A bad page is refused as on the database threads.
    let bad = get(&service.url("/api/activities/home?limit=0"), &[]);
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[test]
fn the_home_feed_is_the_servers_json_with_ten_keys_in_order_whatever_the_token() {
    let db = TestDb::migrated();
    let service = Service::development(&db);
    let empty = get(&service.url("/api/activities/home"), &[]);
    assert_eq!((empty.status, empty.body.as_str()), (200, "[]"));
    assert_eq!(empty.header("content-type"), Some("application/json"));

    cruddur_db::repo::seed::seed_reference(&mut db.conn()).unwrap();
    let feed = get(&service.url("/api/activities/home"), &[]);
    assert_eq!(feed.status, 200);
    // The very bytes PostgreSQL built: nothing decoded and encoded again.
    let expected = cruddur_db::home_feed_json(&mut db.conn(), FeedPage::default()).unwrap();
    assert_eq!(feed.body, expected);
    let item = &feed.json()[0];
    assert_eq!(item.as_object().unwrap().len(), 10, "{item}");
    let positions: Vec<usize> = FEED_KEYS
        .iter()
        .map(|k| feed.body.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.is_sorted(), "keys out of order: {}", feed.body);

    for authorization in ["Bearer not-a-jwt", "Bearer a.b.c", "Basic xyz"] {
        let with = get(
            &service.url("/api/activities/home"),
            &[("Authorization", authorization)],
        );
        assert_eq!(
            (with.status, &with.body),
            (200, &feed.body),
            "{authorization}"
        );
    }
}

#[test]
fn feed_pages_walk_with_limit_and_before_and_bad_values_are_400_with_a_json_error() {
    let db = seeded_db();
    let service = Service::development(&db);
    for i in 0..4 {
        let created = post_json(
            &service.url("/api/activities"),
            &[],
            &json!({ "message": format!("crud {i}"), "ttl": "1-day" }).to_string(),
        );
        assert_eq!(created.status, 200, "{}", created.body);
    }
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let query = match &before {
            Some(cursor) => format!("?limit=2&before={cursor}"),
            None => "?limit=2".to_owned(),
        };
        let page = get(&service.url(&format!("/api/activities/home{query}")), &[]);
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.json().as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        assert!(items.len() <= 2);
        let last = items.last().unwrap();
        before = Some(format!(
            "{}_{}",
            last["created_at"].as_str().unwrap(),
            last["uuid"].as_str().unwrap()
        ));
        seen.extend(items.iter().map(|i| i["uuid"].as_str().unwrap().to_owned()));
    }
    // The seed's activities (a post and a reply) and the four posted here.
    let total = usize::try_from(common::activities(&db)).unwrap();
    assert_eq!(total, 6);
    assert_eq!(seen.len(), total, "every activity once: {seen:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total);

    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=abc",
        "?limit=-1",
        "?before=yesterday",
        "?before=2026-01-01T00:00:00.000000Z_not-a-uuid",
    ] {
        let bad = get(&service.url(&format!("/api/activities/home{query}")), &[]);
        assert_eq!(bad.status, 400, "{query}: {}", bad.body);
        assert!(bad.json()["error"].is_string(), "{query}: {}", bad.body);
    }
    let bad_token = get(
        &service.url("/api/activities/home"),
        &[("X-Write-Token", "nowhere")],
    );
    assert_eq!(bad_token.status, 400, "{}", bad_token.body);
    let unknown = get(&service.url("/api/nothing-here"), &[]);
    assert_eq!(
        (unknown.status, unknown.json()),
        (404, json!({ "error": "not found" }))
    );
}

#[test]
fn a_post_returns_the_six_key_object_and_its_write_token_and_the_feed_shows_it() {
    let db = seeded_db();
    let service = Service::development(&db);
    let created = post_json(
        &service.url("/api/activities"),
        &[],
        r#"{"message": "Hello, Cruddur 👋 '; DROP TABLE activities; --", "ttl": "7-days"}"#,
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let object = created.json();
    let keys: Vec<&str> = object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "uuid",
        "display_name",
        "handle",
        "message",
        "created_at",
        "expires_at",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    assert_eq!(object["handle"], "andrewbrown");
    assert_eq!(
        object["message"],
        "Hello, Cruddur 👋 '; DROP TABLE activities; --"
    );
    let token = created
        .header("x-write-token")
        .expect("a write token")
        .to_owned();
    assert!(token.parse::<cruddur_db::WriteToken>().is_ok(), "{token}");
    let cookie = created.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("cruddur_write_token={token};")),
        "{cookie}"
    );

    let feed = get(
        &service.url("/api/activities/home"),
        &[("X-Write-Token", &token)],
    );
    assert_eq!(feed.json()[0]["uuid"], object["uuid"]);
}

#[test]
fn bad_posts_get_4xx_with_a_json_body_and_write_nothing() {
    let db = seeded_db();
    let service = Service::development(&db);
    let url = service.url("/api/activities");
    let before = activities(&db);
    let long = "é".repeat(281);
    let cases: Vec<(&str, String, serde_json::Value)> = vec![
        (
            "blank message, unknown ttl: both codes",
            json!({ "message": "  ", "ttl": "forever" }).to_string(),
            json!(["message_blank", "ttl_blank"]),
        ),
        (
            "281 characters",
            json!({ "message": long, "ttl": "1-day" }).to_string(),
            json!(["message_exceed_max_chars"]),
        ),
        (
            "NUL in the message",
            json!({ "message": "a\u{0}b", "ttl": "1-day" }).to_string(),
            json!(["message_contains_nul"]),
        ),
    ];
    for (what, body, expected) in cases {
        let answer = post_json(&url, &[], &body);
        assert_eq!((answer.status, answer.json()), (422, expected), "{what}");
    }
    let malformed: [(&str, &str, &str, u16); 7] = [
        (
            "a missing key",
            "application/json",
            r#"{"message": "hi"}"#,
            400,
        ),
        ("not JSON", "application/json", "message=hi&ttl=1-day", 400),
        (
            "a number for the message",
            "application/json",
            r#"{"message": 5, "ttl": "1-day"}"#,
            400,
        ),
        ("an array", "application/json", "[]", 400),
        (
            "the two values as an array",
            "application/json",
            r#"["hi", "1-day"]"#,
            400,
        ),
        (
            "form encoding",
            "application/x-www-form-urlencoded",
            "message=hi&ttl=1-day",
            415,
        ),
        (
            "text",
            "text/plain",
            r#"{"message": "hi", "ttl": "1-day"}"#,
            415,
        ),
    ];
    for (what, content_type, body, status) in malformed {
        let answer = send("POST", &url, &[("Content-Type", content_type)], Some(body));
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert!(
            answer.json()["error"].is_string(),
            "{what}: {}",
            answer.body
        );
    }
    let no_type = send(
        "POST",
        &url,
        &[],
        Some(r#"{"message": "hi", "ttl": "1-day"}"#),
    );
    assert_eq!(no_type.status, 415, "{}", no_type.body);
    let wrong_method = send("PUT", &url, &[], None);
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.json()["error"].is_string());
    assert_eq!(activities(&db), before, "nothing was written");

    let stranger = Service::start(
        &Config::new(db.url.clone()),
        Auth::Development {
            handle: "nobody".into(),
        },
        &[],
    );
    let answer = post_json(
        &stranger.url("/api/activities"),
        &[],
        r#"{"message": "hi", "ttl": "1-day"}"#,
    );
    assert_eq!(
        (answer.status, answer.json()),
        (422, json!(["user_not_found"]))
    );
    assert_eq!(activities(&db), before);
}

#[test]
fn cors_admits_the_frontend_and_backend_origins_only() {
    let db = seeded_db();
    let service = Service::start(
        &Config::new(db.url.clone()),
        Auth::Development {
            handle: "andrewbrown".into(),
        },
        &["http://localhost:3000", "http://localhost:4567"],
    );
    let url = service.url("/api/activities");
    let preflight = |origin: &str| {
        send(
            "OPTIONS",
            &url,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "content-type,authorization",
                ),
            ],
            None,
        )
    };
    let allowed = preflight("http://localhost:3000");
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let methods = allowed.header("access-control-allow-methods").unwrap();
    for method in ["OPTIONS", "GET", "HEAD", "POST"] {
        assert!(methods.contains(method), "{methods}");
    }
    let headers = allowed.header("access-control-allow-headers").unwrap();
    assert!(
        headers.contains("content-type") && headers.contains("authorization"),
        "{headers}"
    );
    assert_eq!(
        preflight("http://localhost:4567").header("access-control-allow-origin"),
        Some("http://localhost:4567")
    );
    let foreign = preflight("https://evil.example");
    assert_eq!(foreign.header("access-control-allow-origin"), None);

    let simple = get(
        &service.url("/api/activities/home"),
        &[("Origin", "http://localhost:3000")],
    );
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(
        get(
            &service.url("/api/activities/home"),
            &[("Origin", "https://evil.example")]
        )
        .header("access-control-allow-origin"),
        None
    );
}

#[test]
fn with_a_jwks_the_author_is_the_user_of_the_tokens_sub_and_anything_else_is_401() {
    let db = seeded_db();
    confirm_token_holder(&db);
    let keys = Keys::generate("key-1");
    let service = jwt_service(&db, &keys);
    let url = service.url("/api/activities");
    let body = r#"{"message": "signed", "ttl": "1-hour"}"#;
    let post = |token: Option<&str>| {
        let header = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("Authorization", h)])
            .unwrap_or_default();
        post_json(&url, &headers, body)
    };

    let access = keys.sign(&access_claims("sub-of-holder"));
    let ok = post(Some(&access));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["handle"], "holder");
    let id_token = keys.sign(&json!({
        "sub": "sub-of-holder", "iss": ISSUER, "aud": CLIENT, "token_use": "id",
        "exp": now() + 600,
    }));
    assert_eq!(
        post(Some(&id_token)).status,
        200,
        "an ID token names the client in aud"
    );

    let before = activities(&db);
    let mut expired = access_claims("sub-of-holder");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_issuer = access_claims("sub-of-holder");
    wrong_issuer["iss"] = json!("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other");
    let mut wrong_client = access_claims("sub-of-holder");
    wrong_client["client_id"] = json!("another-client");
    let mut no_sub = access_claims("x");
    no_sub.as_object_mut().unwrap().remove("sub");
    let impostor = Keys::generate("key-1");
    let stranger_key = Keys::generate("key-2");
    let refused: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a JWT", Some("garbage".into())),
        ("expired", Some(keys.sign(&expired))),
        ("wrong issuer", Some(keys.sign(&wrong_issuer))),
        ("another client", Some(keys.sign(&wrong_client))),
        ("no sub", Some(keys.sign(&no_sub))),
        (
            "signed by another key with the same kid",
            Some(impostor.sign(&access_claims("sub-of-holder"))),
        ),
        (
            "a kid not in the set",
            Some(stranger_key.sign(&access_claims("sub-of-holder"))),
        ),
        (
            "the signature of another token",
            Some({
                let other = keys.sign(&access_claims("someone-else"));
                let (head_payload, _) = access.rsplit_once('.').unwrap();
                format!("{head_payload}.{}", other.rsplit_once('.').unwrap().1)
            }),
        ),
    ];
    for (what, token) in refused {
        let answer = post(token.as_deref());
        assert_eq!((answer.status, answer.json()), (401, json!({})), "{what}");
    }
    let unknown = post(Some(&keys.sign(&access_claims("sub-of-nobody"))));
    assert_eq!(unknown.status, 403, "{}", unknown.body);
    assert!(unknown.json()["error"].is_string());
    assert_eq!(activities(&db), before, "nothing was written");

    // The feed does not depend on the token.
    let anonymous = get(&service.url("/api/activities/home"), &[]);
    let signed = get(
        &service.url("/api/activities/home"),
        &[("Authorization", &format!("Bearer {access}"))],
    );
    assert_eq!((anonymous.status, &anonymous.body), (200, &signed.body));
}

#[test]
fn a_jwks_without_a_usable_rsa_key_is_refused_at_start_up() {
    for (what, jwks) in [
        ("not JSON", "nope"),
        ("no keys", r#"{"keys": []}"#),
        (
            "no kid",
            r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#,
        ),
    ] {
        let err = Verifier::from_jwks(jwks, ISSUER, CLIENT).unwrap_err();
        assert!(err.to_string().starts_with("invalid JWKS"), "{what}: {err}");
    }
}

#[test]
fn a_body_over_64_kib_is_413_with_a_json_error_and_writes_nothing() {
    use std::io::Write;
    let db = seeded_db();
    let service = Service::development(&db);
    let url = service.url("/api/activities");
    let crud = r#"{"message": "padded", "ttl": "1-day"}"#;
    let limit = 64 * 1024;
    // Whitespace is JSON: a body at the limit is read and posted.
    let at_limit = format!("{crud}{}", " ".repeat(limit - crud.len()));
    let posted = post_json(&url, &[], &at_limit);
    assert_eq!(posted.status, 200, "{}", posted.body);
    let before = activities(&db);

    // A length declared over the limit is answered before the body is
    // read (a client still sending then finds the connection closed).
    for length in [limit + 1, 10 << 20] {
        let mut declared = common::connect(&service.base);
        write!(
            declared,
            "POST /api/activities HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n"
        )
        .unwrap();
        let (status, body) = common::read_response(&mut declared).expect("an answer");
        assert_eq!(status, 413, "{length}: {body}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string(),
            "{body}"
        );
    }
    // Chunks without a length, past the limit.
    let mut chunked = common::connect(&service.base);
    write!(
        chunked,
        "POST /api/activities HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    // One byte past the limit, so that little is left unread when the
    // service answers and closes.
    write!(
        chunked,
        "{:x}\r\n{}\r\n0\r\n\r\n",
        limit + 1,
        " ".repeat(limit + 1)
    )
    .unwrap();
    let answered = common::read_response(&mut chunked).map(|r| r.0);
    assert_eq!(answered, Some(413));
    assert_eq!(activities(&db), before, "nothing was written");
}

#[test]
fn a_bad_write_token_cookie_is_ignored_and_a_bad_header_is_400() {
    let db = seeded_db();
    let service = Service::development(&db);
    let url = service.url("/api/activities/home");
    let plain = get(&url, &[]);
    assert_eq!(plain.status, 200);
    for cookie in [
        "cruddur_write_token=garbage",
        "cruddur_write_token=",
        "cruddur_write_token=0/; other=1",
        "theme=dark; cruddur_write_token=%2e%2e",
        "cruddur_write_token=\"0/1\"",
        "cruddur_write_token=garbage; cruddur_write_token=0/1",
    ] {
        let answer = get(&url, &[("Cookie", cookie)]);
        assert_eq!(
            (answer.status, &answer.body),
            (200, &plain.body),
            "{cookie}"
        );
    }
    for header in ["garbage", "0/", "/1", "1/2/3", " "] {
        let answer = get(
            &url,
            &[
                ("x-write-token", header),
                ("Cookie", "cruddur_write_token=0/1"),
            ],
        );
        assert_eq!(answer.status, 400, "{header:?}: {}", answer.body);
        assert!(answer.json()["error"].is_string());
    }
}

#[test]
fn tokens_not_yet_valid_with_crit_or_a_control_character_in_sub_are_401() {
    let db = seeded_db();
    let keys = Keys::generate("key-1");
    let service = jwt_service(&db, &keys);
    let url = service.url("/api/activities");
    let body = r#"{"message": "signed", "ttl": "1-hour"}"#;
    let post =
        |token: &str| post_json(&url, &[("Authorization", &format!("Bearer {token}"))], body);
    confirm_token_holder(&db);
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = access_claims("sub-of-holder");
        claims[key] = value;
        claims
    };
    let header = |extra: &str| {
        format!(
            r#"{{"alg":"RS256","typ":"JWT","kid":"{}"{extra}}}"#,
            keys.kid
        )
    };
    let accepted: Vec<(&str, String)> = vec![
        (
            "nbf in the past",
            keys.sign(&with("nbf", json!(now() - 10))),
        ),
        (
            "nbf within the clock skew",
            keys.sign(&with("nbf", json!(now() + 30))),
        ),
        (
            "a raw header without crit",
            keys.sign_raw(&header(""), &access_claims("sub-of-holder")),
        ),
    ];
    for (what, token) in &accepted {
        let answer = post(token);
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    }
    let before = activities(&db);
    let mut refused: Vec<(String, String)> = vec![
        (
            "nbf an hour ahead".into(),
            keys.sign(&with("nbf", json!(now() + 3600))),
        ),
        (
            "nbf far ahead".into(),
            keys.sign(&with("nbf", json!(i64::from(i32::MAX) * 4))),
        ),
        (
            "nbf not a number".into(),
            keys.sign(&with("nbf", json!("soon"))),
        ),
    ];
    for crit in [
        r#","crit":["exp"]"#,
        r#","crit":[]"#,
        r#","crit":"b64""#,
        r#","crit":null"#,
        r#","b64":false,"crit":["b64"]"#,
        r#","cr\u0069t":["x"]"#,
        r#","crit":["x"],"crit":["y"]"#,
    ] {
        refused.push((
            format!("header {crit}"),
            keys.sign_raw(&header(crit), &access_claims("sub-of-holder")),
        ));
    }
    for sub in [
        "sub-of-holder\u{0}",
        "\u{0}",
        "a\u{0}b",
        "sub-of-holder\n",
        "\t",
        "\u{7f}",
        "\u{85}",
        "",
        "   ",
    ] {
        refused.push((format!("sub {sub:?}"), keys.sign(&access_claims(sub))));
    }
    for (what, token) in refused {
        let answer = post(&token);
        assert_eq!(
            (answer.status, answer.json()),
            (401, json!({})),
            "{what}: {}",
            answer.body
        );
    }
    assert_eq!(activities(&db), before, "nothing was written");
    // The database still answers: nothing reached it to fail.
    assert_eq!(get(&service.url("/api/health-check"), &[]).status, 200);
}

#[test]
fn a_post_retried_with_its_idempotency_key_is_made_once() {
    let db = seeded_db();
    let service = Service::development(&db);
    let url = service.url("/api/activities");
    let body = r#"{"message": "exactly once", "ttl": "1-day"}"#;
    let before = activities(&db);
    let key = [("Idempotency-Key", "4b1f0e0c-retry")];
    let first = post_json(&url, &key, body);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let retry = post_json(&url, &key, body);
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json(), first.json(), "the first post, again");
    assert!(retry.header("x-write-token").is_some());
    assert_eq!(activities(&db), before + 1);

    // The key with another post: 409, nothing written.
    let other = post_json(&url, &key, r#"{"message": "another", "ttl": "1-day"}"#);
    assert_eq!(other.status, 409, "{}", other.body);
    assert!(other.json()["error"].is_string());
    // A key that is not 1 to 255 visible ASCII characters: 400.
    let long = "k".repeat(256);
    for bad in ["a b", "", long.as_str()] {
        let answer = post_json(&url, &[("Idempotency-Key", bad)], body);
        assert_eq!(answer.status, 400, "{bad:?}: {}", answer.body);
    }
    // Without a key, each post is a post.
    assert_eq!(post_json(&url, &[], body).status, 200);
    assert_eq!(post_json(&url, &[], body).status, 200);
    assert_eq!(activities(&db), before + 3);
}
