//! Migrations and the schema they build: catalog checks against SPEC §2,
//! up → down → up, status, and concurrent runners.

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier};

use common::TestDb;
use cruddur_db::migrations::{
    migration_status, pending_migrations, revert_all_migrations, revert_last_migration,
    run_migrations,
};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

#[derive(QueryableByName, Debug, PartialEq)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Bool)]
    nullable: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    default: Option<String>,
}

fn columns(conn: &mut PgConnection) -> Vec<Column> {
    diesel::sql_query(
        "SELECT table_name::text, column_name::text, data_type::text, \
         is_nullable = 'YES' AS nullable, column_default::text AS default \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name IN ('users', 'activities') \
         ORDER BY table_name, ordinal_position",
    )
    .load(conn)
    .unwrap()
}

#[test]
fn schema_matches_the_spec() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    let cols = columns(conn);
    let expect = [
        (
            "activities",
            "uuid",
            "uuid",
            false,
            Some("uuid_generate_v4()"),
        ),
        ("activities", "user_uuid", "uuid", false, None),
        ("activities", "message", "text", false, None),
        ("activities", "replies_count", "integer", false, Some("0")),
        ("activities", "reposts_count", "integer", false, Some("0")),
        ("activities", "likes_count", "integer", false, Some("0")),
        ("activities", "reply_to_activity_uuid", "uuid", true, None),
        (
            "activities",
            "expires_at",
            "timestamp with time zone",
            true,
            None,
        ),
        (
            "activities",
            "created_at",
            "timestamp with time zone",
            false,
            Some("now()"),
        ),
        ("users", "uuid", "uuid", false, Some("uuid_generate_v4()")),
        ("users", "display_name", "text", false, None),
        ("users", "handle", "text", false, None),
        ("users", "email", "text", false, None),
        ("users", "cognito_user_id", "text", false, None),
        (
            "users",
            "created_at",
            "timestamp with time zone",
            false,
            Some("now()"),
        ),
        ("users", "bio", "text", false, Some("''::text")),
    ];
    assert_eq!(cols.len(), expect.len(), "{cols:#?}");
    for (col, (table, name, ty, nullable, default)) in cols.iter().zip(expect) {
        assert_eq!(
            (
                col.table_name.as_str(),
                col.column_name.as_str(),
                col.data_type.as_str(),
                col.nullable
            ),
            (table, name, ty, nullable),
            "{col:?}"
        );
        assert_eq!(col.default.as_deref(), default, "default of {table}.{name}");
    }
}

#[derive(QueryableByName, Debug)]
struct Named {
    #[diesel(sql_type = Text)]
    name: String,
}

#[test]
fn every_foreign_key_has_an_index_and_the_feed_index_exists() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    // Foreign keys whose columns are not the leading columns of some index.
    let unindexed: Vec<Named> = diesel::sql_query(
        "SELECT c.conname::text AS name FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace \
         AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid \
           AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey)",
    )
    .load(conn)
    .unwrap();
    let names: Vec<_> = unindexed.iter().map(|n| n.name.as_str()).collect();
    assert!(names.is_empty(), "foreign keys without an index: {names:?}");

    let fks: Vec<Named> = diesel::sql_query(
        "SELECT pg_get_constraintdef(oid) AS name FROM pg_constraint \
         WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1",
    )
    .load(conn)
    .unwrap();
    let fks: Vec<_> = fks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        fks,
        [
            "FOREIGN KEY (activity_uuid) REFERENCES activities(uuid) ON DELETE CASCADE",
            "FOREIGN KEY (reply_to_activity_uuid) REFERENCES activities(uuid) ON DELETE CASCADE",
            "FOREIGN KEY (user_uuid) REFERENCES users(uuid) ON DELETE CASCADE",
            "FOREIGN KEY (user_uuid) REFERENCES users(uuid) ON DELETE CASCADE",
        ]
    );

    let feed_index: Vec<Named> = diesel::sql_query(
        "SELECT indexdef AS name FROM pg_indexes WHERE indexname = 'activities_feed_idx'",
    )
    .load(conn)
    .unwrap();
    assert_eq!(feed_index.len(), 1);
    assert!(
        feed_index[0].name.ends_with("(created_at DESC, uuid DESC)"),
        "{}",
        feed_index[0].name
    );

    // A user's page and a crud's replies are keyset scans of an index each.
    let page_indexes: Vec<Named> = diesel::sql_query(
        "SELECT indexdef AS name FROM pg_indexes \
         WHERE indexname IN ('activities_user_page_idx', 'activities_replies_idx') \
         ORDER BY indexname",
    )
    .load(conn)
    .unwrap();
    let defs: Vec<&str> = page_indexes
        .iter()
        .map(|n| n.name.split(" USING btree ").nth(1).unwrap_or(&n.name))
        .collect();
    assert_eq!(
        defs,
        [
            "(reply_to_activity_uuid, created_at, uuid) WHERE (reply_to_activity_uuid IS NOT NULL)",
            "(user_uuid, created_at DESC, uuid DESC)",
        ]
    );
}

#[test]
fn constraints_reject_what_the_spec_forbids() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    diesel::sql_query(
        "INSERT INTO users (display_name, handle, email, cognito_user_id) VALUES ('A', 'a', 'a@x', 's')",
    )
    .execute(conn)
    .unwrap();
    let bad = [
        "INSERT INTO users (display_name, handle, email, cognito_user_id) VALUES ('B', 'a', 'b@x', 't')",
        "INSERT INTO activities (user_uuid, message) SELECT uuid, '' FROM users",
        "INSERT INTO activities (user_uuid, message, likes_count) SELECT uuid, 'm', -1 FROM users",
        "INSERT INTO activities (user_uuid, message, replies_count) SELECT uuid, 'm', NULL FROM users",
        "INSERT INTO activities (user_uuid, message) VALUES (uuid_generate_v4(), 'orphan')",
        "INSERT INTO activities (user_uuid, message, reply_to_activity_uuid) \
         SELECT uuid, 'm', uuid_generate_v4() FROM users",
    ];
    for sql in bad {
        assert!(
            diesel::sql_query(sql).execute(conn).is_err(),
            "accepted: {sql}"
        );
    }
    assert_eq!(common::counts(conn), (1, 0));
}

fn schema_dump(db: &TestDb) -> String {
    let out = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", db.url.expose()])
        .output()
        .expect("pg_dump is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // Comments, and the random key of pg_dump's \restrict guard.
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn up_down_up_leaves_the_same_schema_and_each_down_works() {
    let db = TestDb::new();
    let conn = &mut db.conn();
    let empty = schema_dump(&db);
    let applied = run_migrations(conn).unwrap();
    assert_eq!(applied.len(), common::migration_count(), "{applied:?}");
    let first = schema_dump(&db);

    // Each migration's down.sql on its own, newest first, then all up again.
    for _ in 0..common::migration_count() {
        assert!(revert_last_migration(conn).unwrap().is_some());
    }
    assert_eq!(revert_last_migration(conn).unwrap(), None);
    let after_down = schema_dump(&db);
    // Only Diesel's bookkeeping table remains.
    for gone in [
        "public.users",
        "public.activities",
        "uuid-ossp",
        "activities_feed_idx",
        "public.idempotency_keys",
    ] {
        assert!(
            !after_down.contains(gone),
            "{gone} survived the downs:\n{after_down}"
        );
    }
    assert!(
        after_down.contains("__diesel_schema_migrations"),
        "{after_down}"
    );
    run_migrations(conn).unwrap();
    assert_eq!(schema_dump(&db), first);

    assert_eq!(
        revert_all_migrations(conn).unwrap().len(),
        common::migration_count()
    );
    run_migrations(conn).unwrap();
    assert_eq!(schema_dump(&db), first);
    assert_ne!(empty, first);
}

#[test]
fn status_lists_applied_and_pending() {
    let db = TestDb::new();
    let conn = &mut db.conn();
    assert_eq!(
        pending_migrations(conn).unwrap().len(),
        common::migration_count()
    );
    assert!(migration_status(conn).unwrap().iter().all(|m| !m.applied));
    run_migrations(conn).unwrap();
    revert_last_migration(conn).unwrap();
    let status = migration_status(conn).unwrap();
    let applied: Vec<bool> = status.iter().map(|m| m.applied).collect();
    let last = applied.len() - 1;
    assert!(
        applied[..last].iter().all(|a| *a) && !applied[last],
        "{status:?}"
    );
    assert_eq!(
        pending_migrations(conn).unwrap(),
        [status[last].name.as_str()]
    );
    assert!(run_migrations(conn).unwrap().len() == 1);
    assert!(
        run_migrations(conn).unwrap().is_empty(),
        "second run applies nothing"
    );
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[test]
fn concurrent_runners_apply_each_migration_once_and_all_succeed() {
    let db = TestDb::new();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let url = db.url.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut conn = cruddur_db::establish(&url).unwrap();
                barrier.wait();
                run_migrations(&mut conn)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut total = 0;
    for r in &results {
        match r {
            Ok(applied) => total += applied.len(),
            Err(e) => panic!("a concurrent runner failed: {e}"),
        }
    }
    assert_eq!(
        total,
        common::migration_count(),
        "each migration applied exactly once across runners: {results:?}"
    );
    let conn = &mut db.conn();
    let recorded: Count = diesel::sql_query("SELECT count(*) AS n FROM __diesel_schema_migrations")
        .get_result(conn)
        .unwrap();
    assert_eq!(
        recorded.n,
        i64::try_from(common::migration_count()).unwrap()
    );
}

/// The error and each of its causes, joined.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// `url` with every session read-only, as a read-only replica or a
/// cautious operator's URL makes them.
fn read_only(url: &cruddur_db::DatabaseUrl) -> cruddur_db::DatabaseUrl {
    url.with_param("options", "-c default_transaction_read_only=on")
}

#[test]
fn a_current_database_is_migrated_and_prepared_on_a_read_only_session() {
    let db = TestDb::migrated();
    cruddur_db::seed_reference(&mut db.conn()).unwrap();
    let url = read_only(&db.url);
    let conn = &mut cruddur_db::establish(&url).unwrap();
    assert!(run_migrations(conn).unwrap().is_empty());
    let report = cruddur_db::prepare(&url).unwrap();
    assert!(
        !report.created && !report.seeded && report.migrations_applied.is_empty(),
        "{report:?}"
    );
    assert_eq!(common::counts(&mut db.conn()), (2, 2));

    // Missing one migration's record, it is not current: the read-only
    // session refuses the write instead of pretending.
    diesel::sql_query(
        "DELETE FROM __diesel_schema_migrations \
         WHERE version = (SELECT max(version) FROM __diesel_schema_migrations)",
    )
    .execute(&mut db.conn())
    .unwrap();
    let err = run_migrations(&mut cruddur_db::establish(&url).unwrap()).unwrap_err();
    let err = with_causes(&err);
    assert!(err.contains("read-only"), "{err}");
}

#[test]
fn an_unmigrated_database_stays_untouched_on_a_read_only_session() {
    let db = TestDb::new();
    let url = read_only(&db.url);
    assert!(run_migrations(&mut cruddur_db::establish(&url).unwrap()).is_err());
    let present: bool = diesel::select(diesel::dsl::sql::<Bool>(
        "to_regclass('__diesel_schema_migrations') IS NOT NULL",
    ))
    .get_result(&mut db.conn())
    .unwrap();
    assert!(
        !present,
        "a failed read-only run created the migrations table"
    );
}

#[test]
fn a_schema_reload_that_fails_half_way_changes_nothing() {
    let db = TestDb::migrated();
    cruddur_db::seed_reference(&mut db.conn()).unwrap();
    // A view on `users` alone: reverting `activities` works, reverting
    // `users` then fails, half-way through the reload.
    diesel::sql_query("CREATE VIEW user_handles AS SELECT handle FROM users")
        .execute(&mut db.conn())
        .unwrap();
    let before = schema_dump(&db);
    let err = cruddur_db::migrations::reload_schema(&mut db.conn()).unwrap_err();
    let err = with_causes(&err);
    assert!(err.contains("depend"), "{err}");
    assert_eq!(
        schema_dump(&db),
        before,
        "a failed reload changed the schema"
    );
    assert_eq!(common::counts(&mut db.conn()), (2, 2));
    assert!(pending_migrations(&mut db.conn()).unwrap().is_empty());

    diesel::sql_query("DROP VIEW user_handles")
        .execute(&mut db.conn())
        .unwrap();
    let reload = cruddur_db::migrations::reload_schema(&mut db.conn()).unwrap();
    assert_eq!(
        (reload.reverted.len(), reload.applied.len()),
        (common::migration_count(), common::migration_count())
    );
    assert_eq!(common::counts(&mut db.conn()), (0, 0));
}
