//! The reference seed: the rows of the original `seed.sql`. (Bulk
//! synthetic data is [`crate::repo::synthetic`], feature `synthetic`.)

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use uuid::Uuid;

use crate::error::Result;
use crate::migrations::ensure_current;
use crate::models::{NewActivity, NewUser};
use crate::schema::{activities, users};

/// Serialises seeding of one database (`pg_advisory_xact_lock`), so that two
/// seeds started at once cannot both insert the reference activity, and two
/// bulk seeds take turns instead of deadlocking.
pub const SEED_LOCK_KEY: i64 = i64::from_be_bytes(*b"cruddurs");

/// The reference activity's text.
pub const REFERENCE_MESSAGE: &str = "This was imported as seed data!";
/// How long after its creation the reference activity expires.
pub const REFERENCE_TTL: TimeDelta = TimeDelta::days(10);

const REFERENCE_USERS: [NewUser<'static>; 2] = [
    NewUser {
        display_name: "Andrew Brown",
        handle: "andrewbrown",
        email: "andrew@exampro.co",
        cognito_user_id: "MOCK",
    },
    NewUser {
        display_name: "Andrew Bayko",
        handle: "bayko",
        email: "bayko@exampro.co",
        cognito_user_id: "MOCK",
    },
];

/// Rows a seed inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeedReport {
    /// Users inserted.
    pub users: u64,
    /// Activities inserted.
    pub activities: u64,
}

impl SeedReport {
    /// Whether any row was inserted.
    pub fn inserted_anything(&self) -> bool {
        self.users > 0 || self.activities > 0
    }
}

/// Loads the reference seed: users `andrewbrown` and `bayko`, and one
/// activity by andrewbrown that expires 10 days after its creation.
///
/// Idempotent (rows already present are left alone), in one transaction,
/// and refused with [`Error::PendingMigrations`](crate::Error::PendingMigrations) while migrations are pending.
pub fn seed_reference(conn: &mut PgConnection) -> Result<SeedReport> {
    ensure_current(conn)?;
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(SEED_LOCK_KEY)
            .execute(conn)?;
        let users_inserted = diesel::insert_into(users::table)
            .values(&REFERENCE_USERS[..])
            .on_conflict(users::handle)
            .do_nothing()
            .execute(conn)?;
        let author: Uuid = users::table
            .filter(users::handle.eq(REFERENCE_USERS[0].handle))
            .select(users::uuid)
            .first(conn)?;
        let present = diesel::select(diesel::dsl::exists(
            activities::table
                .filter(activities::user_uuid.eq(author))
                .filter(activities::message.eq(REFERENCE_MESSAGE)),
        ))
        .get_result::<bool>(conn)?;
        let activities_inserted = if present {
            0
        } else {
            let created_at: DateTime<Utc> =
                diesel::select(diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>())
                    .get_result(conn)?;
            diesel::insert_into(activities::table)
                .values(NewActivity {
                    user_uuid: author,
                    message: REFERENCE_MESSAGE,
                    reply_to_activity_uuid: None,
                    expires_at: Some(created_at + REFERENCE_TTL),
                    created_at,
                })
                .execute(conn)?
        };
        Ok(SeedReport {
            users: users_inserted as u64,
            activities: activities_inserted as u64,
        })
    })
}

/// Whether the schema's tables hold any row (for refusing a bulk seed into
/// a database that has data).
pub fn has_data(conn: &mut PgConnection) -> Result<bool> {
    Ok(diesel::select(diesel::dsl::exists(users::table.select(users::uuid))).get_result(conn)?)
}
