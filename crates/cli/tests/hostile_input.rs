//! Input no one should send: 10 MB messages, invalid UTF-8 files, NUL
//! bytes, SQL-looking text. Each gets a clear error and leaves the tables
//! exactly as they were.

mod common;

use std::io::Write;

use common::TestDb;
use cruddur_db::{
    ActivityDraft, Error, PostConfirmationEvent, ReplyDraft, create_activity, create_reply,
    seed_reference,
};
use diesel::prelude::*;

#[derive(QueryableByName, PartialEq, Debug)]
struct Digest {
    #[diesel(sql_type = diesel::sql_types::Text)]
    digest: String,
}

/// A digest of every row of both tables: "as they were" means equal digests.
fn snapshot(conn: &mut PgConnection) -> String {
    diesel::sql_query(
        "SELECT md5((SELECT coalesce(string_agg(u::text, '|' ORDER BY u.uuid), '') FROM users u) \
         || '#' || (SELECT coalesce(string_agg(a::text, '|' ORDER BY a.uuid), '') FROM activities a)) \
         AS digest",
    )
    .get_result::<Digest>(conn)
    .unwrap()
    .digest
}

fn cli(db: &TestDb) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_cruddur-db"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("CONNECTION_URL")
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .timeout(std::time::Duration::from_secs(120))
        .args(["--database-url", db.url.expose()]);
    cmd
}

fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

#[test]
fn ten_megabyte_messages_are_refused_without_writing() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    seed_reference(conn).unwrap();
    let before = snapshot(conn);
    let huge = "é".repeat(5 * 1024 * 1024); // 10 MiB of UTF-8
    let err = ActivityDraft::parse("andrewbrown", &huge, "1-day")
        .and_then(|draft| create_activity(conn, &draft))
        .unwrap_err();
    assert_eq!(err.validation_codes(), ["message_exceed_max_chars"]);
    assert!(
        err.to_string().len() < 200,
        "the error echoes the input: {} bytes",
        err.to_string().len()
    );
    let parent = cruddur_db::home_feed(conn, Default::default()).unwrap()[0].uuid;
    let err = ReplyDraft::new("bayko", parent, &huge)
        .and_then(|draft| create_reply(conn, &draft))
        .unwrap_err();
    assert_eq!(err.validation_codes(), ["message_exceed_max_chars_1024"]);

    let file = file_with(huge.as_bytes());
    let out = cli(&db)
        .args([
            "activity",
            "create",
            "--handle",
            "andrewbrown",
            "--ttl",
            "1-day",
            "--message-file",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("message_exceed_max_chars"), "{stderr}");
    assert!(
        stderr.len() < 1000,
        "stderr echoes the input: {} bytes",
        stderr.len()
    );
    assert_eq!(snapshot(conn), before);
}

#[test]
fn invalid_utf8_and_nul_in_files_are_clear_errors() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    seed_reference(conn).unwrap();
    let before = snapshot(conn);
    let invalid = file_with(b"caf\xe9 \xff\xfe not UTF-8");
    let nul = file_with(b"before\0after");
    let event_invalid = file_with(b"{\"request\": {\"userAttributes\": {\"name\": \"\xff\"}}}");
    let event_nul = file_with(
        br#"{"request": {"userAttributes": {"name": "n\u0000", "email": "e", "preferred_username": "p", "sub": "s"}}}"#,
    );
    let cases: [(Vec<&str>, &tempfile::NamedTempFile, &str); 4] = [
        (
            vec![
                "activity",
                "create",
                "--handle",
                "andrewbrown",
                "--ttl",
                "1-day",
                "--message-file",
            ],
            &invalid,
            "not valid UTF-8",
        ),
        (
            vec![
                "activity",
                "create",
                "--handle",
                "andrewbrown",
                "--ttl",
                "1-day",
                "--message-file",
            ],
            &nul,
            "message_contains_nul",
        ),
        (
            vec!["user", "confirm", "--event"],
            &event_invalid,
            "not valid UTF-8",
        ),
        (vec!["user", "confirm", "--event"], &event_nul, "NUL"),
    ];
    for (args, file, expected) in cases {
        let out = cli(&db).args(&args).arg(file.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(snapshot(conn), before);
}

#[test]
fn sql_looking_text_is_data_not_code() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    seed_reference(conn).unwrap();
    let texts = [
        "'); DELETE FROM users; --",
        "1; DROP TABLE activities",
        "' OR '1'='1",
        "$$; TRUNCATE users; $$",
        "\\'; COPY users TO '/tmp/x'; --",
    ];
    for text in texts {
        let created = ActivityDraft::parse("bayko", text, "1-hour")
            .and_then(|draft| create_activity(conn, &draft))
            .unwrap();
        assert_eq!(created.message, text);
        // The same text as a handle or an event field finds or creates nothing unexpected.
        let err = ActivityDraft::parse(text, "hello", "1-hour")
            .and_then(|draft| create_activity(conn, &draft))
            .unwrap_err();
        assert!(matches!(err, Error::UserNotFound { .. }), "{text}: {err}");
        // And in the profile and a crud's page.
        let page = cruddur_db::user_page(conn, text, Default::default());
        assert!(
            matches!(page, Err(Error::UserNotFound { .. })),
            "{text}: {page:?}"
        );
        let draft = cruddur_db::ProfileDraft::parse("bayko", text, text).unwrap();
        let short = cruddur_db::update_profile(conn, &draft).unwrap();
        assert_eq!(short.display_name, text);
        let reply = ReplyDraft::new("bayko", created.uuid, text)
            .and_then(|draft| create_reply(conn, &draft))
            .unwrap();
        assert_eq!(reply.message, text);
    }
    let event = serde_json::json!({"request": {"userAttributes": {
        "name": "x'); DROP TABLE users; --", "email": "e@x", "preferred_username": "bobby'--", "sub": "s'--"
    }}});
    let parsed = PostConfirmationEvent::parse(&event.to_string()).unwrap();
    let confirmed = cruddur_db::confirm_user(conn, &parsed).unwrap();
    assert_eq!(confirmed.user.handle, "bobby'--");
    assert_eq!(common::counts(conn), (3, 2 + 2 * texts.len() as i64));
}
