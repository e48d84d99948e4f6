//! The reference seed: the rows of the original `seed.sql`. (Bulk
//! synthetic data is `crate::repo::synthetic`, with the feature `synthetic`.)

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
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
/// The text of bayko's reply to the reference activity.
pub const REFERENCE_REPLY: &str = "This was imported as a seed reply!";

/// The reference users' bios, by handle.
pub const REFERENCE_BIOS: [(&str, &str); 2] = [
    (
        "andrewbrown",
        "Cruddur's first user: the seed data is imported as me.",
    ),
    ("bayko", "I reply to the seed data."),
];

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

/// Loads the reference seed: users `andrewbrown` and `bayko` with their
/// bios ([`REFERENCE_BIOS`]), one activity by andrewbrown that expires 10
/// days after its creation, and bayko's reply to it ([`REFERENCE_REPLY`],
/// counted in the activity's `replies_count`).
///
/// Idempotent (rows already present are left alone: a user who changed
/// their bio keeps it), in one transaction,
/// and refused with [`Error::PendingMigrations`](crate::Error::PendingMigrations) while migrations are pending.
pub fn seed_reference(conn: &mut PgConnection) -> Result<SeedReport> {
    ensure_current(conn)?;
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(SEED_LOCK_KEY)
            .execute(conn)?;
        let mut users_inserted = 0;
        for (user, (handle, bio)) in REFERENCE_USERS.iter().zip(REFERENCE_BIOS) {
            debug_assert_eq!(user.handle, handle);
            users_inserted += diesel::insert_into(users::table)
                .values((user, users::bio.eq(bio)))
                .on_conflict(users::handle)
                .do_nothing()
                .execute(conn)?;
        }
        let author: Uuid = users::table
            .filter(users::handle.eq(REFERENCE_USERS[0].handle))
            .select(users::uuid)
            .first(conn)?;
        let replier: Uuid = users::table
            .filter(users::handle.eq(REFERENCE_USERS[1].handle))
            .select(users::uuid)
            .first(conn)?;
        let present: Option<Uuid> = activities::table
            .filter(activities::user_uuid.eq(author))
            .filter(activities::message.eq(REFERENCE_MESSAGE))
            .filter(activities::reply_to_activity_uuid.is_null())
            .order(activities::created_at)
            .select(activities::uuid)
            .first(conn)
            .optional()?;
        let parent: Uuid = match present {
            Some(uuid) => uuid,
            None => {
                let created_at: DateTime<Utc> =
                    diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).get_result(conn)?;
                diesel::insert_into(activities::table)
                    .values(NewActivity {
                        user_uuid: author,
                        message: REFERENCE_MESSAGE,
                        reply_to_activity_uuid: None,
                        expires_at: Some(created_at + REFERENCE_TTL),
                        created_at,
                    })
                    .returning(activities::uuid)
                    .get_result(conn)?
            }
        };
        let replied = diesel::select(diesel::dsl::exists(
            activities::table
                .filter(activities::user_uuid.eq(replier))
                .filter(activities::reply_to_activity_uuid.eq(parent))
                .filter(activities::message.eq(REFERENCE_REPLY)),
        ))
        .get_result::<bool>(conn)?;
        let mut activities_inserted = u64::from(present.is_none());
        if !replied {
            // clock_timestamp(), not now(): the reply comes after its parent,
            // which may have been created at now() in this transaction.
            let created_at: DateTime<Utc> =
                diesel::select(diesel::dsl::sql::<Timestamptz>("clock_timestamp()"))
                    .get_result(conn)?;
            diesel::insert_into(activities::table)
                .values(NewActivity {
                    user_uuid: replier,
                    message: REFERENCE_REPLY,
                    reply_to_activity_uuid: Some(parent),
                    expires_at: None,
                    created_at,
                })
                .execute(conn)?;
            diesel::update(activities::table.find(parent))
                .set(activities::replies_count.eq(activities::replies_count + 1))
                .execute(conn)?;
            activities_inserted += 1;
        }
        Ok(SeedReport {
            users: users_inserted as u64,
            activities: activities_inserted,
        })
    })
}

/// Whether the schema's tables hold any row (for refusing a bulk seed into
/// a database that has data).
pub fn has_data(conn: &mut PgConnection) -> Result<bool> {
    Ok(diesel::select(diesel::dsl::exists(users::table.select(users::uuid))).get_result(conn)?)
}
