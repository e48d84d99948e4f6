//! The synthetic seed: deterministic, and its CSV export holds the very rows
//! that the COPY load writes (the benchmark loads that CSV with `psql \copy`).

mod common;

use std::io::Write;

use common::TestDb;
use cruddur_db::repo::synthetic::{
    SYNTHETIC_ACTIVITY_COLUMNS, SYNTHETIC_USER_COLUMNS, write_synthetic_csv,
};
use cruddur_db::{SeedReport, SyntheticSeed, seed_synthetic};
use diesel::pg::CopyFormat;
use diesel::prelude::*;
use diesel::sql_types::Text;

const SPEC: SyntheticSeed = SyntheticSeed {
    users: 30,
    activities: 700,
    rng_seed: 7,
};

#[derive(QueryableByName)]
struct Digest {
    #[diesel(sql_type = Text)]
    digest: String,
}

/// One md5 over every row of both tables, in a fixed order.
fn digest(conn: &mut PgConnection) -> String {
    diesel::sql_query(
        "SELECT md5((SELECT string_agg(u::text, '|' ORDER BY u.uuid) FROM users u) \
         || '#' || (SELECT string_agg(a::text, '|' ORDER BY a.uuid) FROM activities a)) AS digest",
    )
    .get_result::<Digest>(conn)
    .unwrap()
    .digest
}

/// Loads CSV the way `psql \copy … WITH (FORMAT csv)` does: `COPY … FROM
/// STDIN` with the columns the export names.
fn copy_csv(conn: &mut PgConnection, users_csv: &[u8], activities_csv: &[u8]) {
    use cruddur_db::schema::{activities as a, users as u};
    let user_columns = (
        u::uuid,
        u::display_name,
        u::handle,
        u::email,
        u::cognito_user_id,
        u::created_at,
        u::bio,
    );
    let activity_columns = (
        a::uuid,
        a::user_uuid,
        a::message,
        a::replies_count,
        a::reposts_count,
        a::likes_count,
        a::reply_to_activity_uuid,
        a::expires_at,
        a::created_at,
    );
    assert_eq!(
        SYNTHETIC_USER_COLUMNS,
        "uuid, display_name, handle, email, cognito_user_id, created_at, bio"
    );
    assert_eq!(
        SYNTHETIC_ACTIVITY_COLUMNS,
        "uuid, user_uuid, message, replies_count, reposts_count, likes_count, reply_to_activity_uuid, expires_at, created_at"
    );
    diesel::copy_from(u::table)
        .from_raw_data(user_columns, |sink: &mut dyn Write| {
            sink.write_all(users_csv)
                .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
        })
        .with_format(CopyFormat::Csv)
        .execute(conn)
        .unwrap();
    diesel::copy_from(a::table)
        .from_raw_data(activity_columns, |sink: &mut dyn Write| {
            sink.write_all(activities_csv)
                .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
        })
        .with_format(CopyFormat::Csv)
        .execute(conn)
        .unwrap();
}

#[test]
fn csv_export_holds_the_rows_the_copy_load_writes() {
    let seeded = TestDb::migrated();
    let report = seed_synthetic(&mut seeded.conn(), SPEC, &|_| ()).unwrap();
    assert_eq!(
        report,
        SeedReport {
            users: 30,
            activities: 700
        }
    );

    let (mut users, mut activities) = (Vec::new(), Vec::new());
    let written = write_synthetic_csv(SPEC, &mut users, &mut activities).unwrap();
    assert_eq!(written, report);
    assert_eq!(users.iter().filter(|b| **b == b'\n').count(), 30);
    assert_eq!(activities.iter().filter(|b| **b == b'\n').count(), 700);

    let loaded = TestDb::migrated();
    let conn = &mut loaded.conn();
    copy_csv(conn, &users, &activities);
    assert_eq!(digest(conn), digest(&mut seeded.conn()));
}

#[derive(QueryableByName, Debug)]
struct Shape {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    with_bio: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    replies: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    replies_that_expire: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    replies_before_their_parent: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    cruds_that_never_expire: i64,
}

#[test]
fn synthetic_users_have_bios_and_some_activities_are_replies() {
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    seed_synthetic(conn, SPEC, &|_| ()).unwrap();
    let shape: Shape = diesel::sql_query(
        "SELECT (SELECT count(*) FROM users WHERE bio <> '') AS with_bio, \
         (SELECT count(*) FROM activities WHERE reply_to_activity_uuid IS NOT NULL) AS replies, \
         (SELECT count(*) FROM activities WHERE reply_to_activity_uuid IS NOT NULL \
            AND expires_at IS NOT NULL) AS replies_that_expire, \
         (SELECT count(*) FROM activities r JOIN activities p ON p.uuid = r.reply_to_activity_uuid \
            WHERE r.created_at < p.created_at) AS replies_before_their_parent, \
         (SELECT count(*) FROM activities WHERE reply_to_activity_uuid IS NULL \
            AND expires_at IS NULL) AS cruds_that_never_expire",
    )
    .get_result(conn)
    .unwrap();
    // Two users in three have a bio; one activity in five replies.
    assert_eq!(shape.with_bio, 20, "{shape:?}");
    assert!((100..=180).contains(&shape.replies), "{shape:?}");
    assert_eq!(
        (
            shape.replies_that_expire,
            shape.replies_before_their_parent,
            shape.cruds_that_never_expire
        ),
        (0, 0, 0),
        "{shape:?}"
    );
}

#[test]
fn same_rng_seed_gives_the_same_rows() {
    let a = TestDb::migrated();
    let b = TestDb::migrated();
    seed_synthetic(&mut a.conn(), SPEC, &|_| ()).unwrap();
    seed_synthetic(&mut b.conn(), SPEC, &|_| ()).unwrap();
    assert_eq!(digest(&mut a.conn()), digest(&mut b.conn()));
}

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct Definition {
    #[diesel(sql_type = Text)]
    def: String,
}

/// Every index and constraint of both tables, as the catalog prints them.
fn schema_of(conn: &mut PgConnection) -> Vec<String> {
    diesel::sql_query(
        "SELECT indexdef AS def FROM pg_indexes WHERE tablename IN ('users', 'activities') \
         UNION ALL \
         SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE conrelid IN ('users'::regclass, 'activities'::regclass) \
         ORDER BY 1",
    )
    .load::<Definition>(conn)
    .unwrap()
    .into_iter()
    .map(|d| d.def)
    .collect()
}

#[test]
fn a_large_seed_builds_the_indexes_after_the_data_and_leaves_the_schema_as_it_was() {
    use cruddur_db::repo::synthetic::DEFER_INDEXES_FROM;
    let db = TestDb::migrated();
    let conn = &mut db.conn();
    let before = schema_of(conn);
    assert!(before.iter().any(|d| d.contains("activities_feed_idx")));
    assert!(before.iter().any(|d| d.contains("FOREIGN KEY (user_uuid)")));
    let spec = SyntheticSeed {
        users: 50,
        activities: DEFER_INDEXES_FROM + 10,
        rng_seed: 3,
    };
    let feed_index_oid = |conn: &mut PgConnection| {
        diesel::sql_query("SELECT 'activities_feed_idx'::regclass::oid::text AS def")
            .get_result::<Definition>(conn)
            .unwrap()
    };
    let oid_before = feed_index_oid(conn);
    let report = seed_synthetic(conn, spec, &|_| ()).unwrap();
    assert_eq!(report.activities, DEFER_INDEXES_FROM + 10);
    assert_ne!(
        feed_index_oid(conn),
        oid_before,
        "the index was not rebuilt"
    );
    assert_eq!(schema_of(conn), before);
    // The rebuilt foreign key is enforced.
    let orphan = diesel::sql_query(
        "INSERT INTO activities (user_uuid, message) VALUES (uuid_generate_v4(), 'orphan')",
    )
    .execute(conn);
    assert!(orphan.is_err(), "a row without its user was accepted");
    // The rows are the same as those of a row-by-row load of the same seed
    // (the CSV, loaded into a table that keeps its indexes).
    let (mut users, mut activities) = (Vec::new(), Vec::new());
    write_synthetic_csv(spec, &mut users, &mut activities).unwrap();
    let other = TestDb::migrated();
    copy_csv(&mut other.conn(), &users, &activities);
    assert_eq!(digest(conn), digest(&mut other.conn()));
}
