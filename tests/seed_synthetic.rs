//! The synthetic seed: deterministic, and its CSV export holds the very rows
//! that the COPY load writes (the benchmark loads that CSV with `psql \copy`).

mod common;

use std::io::Write;

use common::TestDb;
use cruddur_db::repo::seed::{
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
    );
    let activity_columns = (
        a::uuid,
        a::user_uuid,
        a::message,
        a::replies_count,
        a::reposts_count,
        a::likes_count,
        a::expires_at,
        a::created_at,
    );
    assert_eq!(
        SYNTHETIC_USER_COLUMNS,
        "uuid, display_name, handle, email, cognito_user_id, created_at"
    );
    assert_eq!(
        SYNTHETIC_ACTIVITY_COLUMNS,
        "uuid, user_uuid, message, replies_count, reposts_count, likes_count, expires_at, created_at"
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

#[test]
fn same_rng_seed_gives_the_same_rows() {
    let a = TestDb::migrated();
    let b = TestDb::migrated();
    seed_synthetic(&mut a.conn(), SPEC, &|_| ()).unwrap();
    seed_synthetic(&mut b.conn(), SPEC, &|_| ()).unwrap();
    assert_eq!(digest(&mut a.conn()), digest(&mut b.conn()));
}
