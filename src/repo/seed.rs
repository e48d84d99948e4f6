//! Seed data: the reference rows of the original `seed.sql`, and bulk
//! synthetic data loaded with `COPY` for benchmarks.

use std::io::Write;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::CopyFormat;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::migrations::ensure_current;
use crate::models::{NewActivity, NewUser};
use crate::schema::{activities, users};

/// Serialises seeding of one database (`pg_advisory_xact_lock`), so that two
/// seeds started at once cannot both insert the reference activity.
const SEED_LOCK_KEY: i64 = i64::from_be_bytes(*b"cruddurs");

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
/// and refused with [`Error::PendingMigrations`] while migrations are pending.
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

/// The size and randomness of a synthetic seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSeed {
    /// Users to create.
    pub users: u64,
    /// Activities to create, spread over the users.
    pub activities: u64,
    /// The random seed: the same value gives the same rows.
    pub rng_seed: u64,
}

/// Progress of a synthetic seed, reported every [`PROGRESS_EVERY`] rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedProgress {
    /// Users written so far.
    pub users: u64,
    /// Activities written so far.
    pub activities: u64,
}

/// How often (in rows) the progress callback is called.
pub const PROGRESS_EVERY: u64 = 10_000;

/// The latest `created_at` a synthetic activity can have; rows spread over
/// the year before it. Fixed, so the data does not depend on the clock.
fn synthetic_epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap_or(DateTime::UNIX_EPOCH) // 2026-01-01
}

const WORDS: [&str; 24] = [
    "cloud", "crud", "postgres", "rust", "diesel", "deploy", "latency", "index", "query",
    "bootcamp", "lambda", "cognito", "feed", "cache", "shipping", "today", "again", "finally",
    "works", "broken", "fast", "coffee", "weekend", "release",
];

fn random_message(rng: &mut ChaCha8Rng, out: &mut String) {
    out.clear();
    let words = rng.random_range(3..=30);
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
}

fn random_uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// Streams COPY text-format rows through a buffer: COPY sends one message
/// per `write`, so small writes would cost a message each.
const COPY_BUFFER: usize = 256 * 1024;

fn copy_error(e: std::io::Error) -> diesel::result::Error {
    diesel::result::Error::SerializationError(Box::new(e))
}

/// Loads `spec.users` users and `spec.activities` activities with `COPY`,
/// streaming rows as they are generated (memory does not grow with the
/// row count), in one transaction. Deterministic for a given `rng_seed`.
///
/// Handles are `user<seed>_<n>`, so two seeds with the same `rng_seed`
/// collide on the unique handle and the second fails without writing.
/// `progress` is called every [`PROGRESS_EVERY`] rows and at the end.
pub fn seed_synthetic(
    conn: &mut PgConnection,
    spec: SyntheticSeed,
    progress: &dyn Fn(SeedProgress),
) -> Result<SeedReport> {
    ensure_current(conn)?;
    if spec.users == 0 && spec.activities > 0 {
        return Err(Error::InvalidSetting {
            name: "users",
            value: "0".into(),
            reason: "activities need at least one user".into(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.rng_seed);
    let user_ids: Vec<Uuid> = (0..spec.users).map(|_| random_uuid(&mut rng)).collect();
    let activity_seed: u64 = rng.random();
    let epoch = synthetic_epoch();
    conn.transaction(|conn| {
        let users_written = diesel::copy_from(users::table)
            .from_raw_data(
                (
                    users::uuid,
                    users::display_name,
                    users::handle,
                    users::email,
                    users::cognito_user_id,
                    users::created_at,
                ),
                |sink: &mut dyn Write| -> Result<(), diesel::result::Error> {
                    let mut out = std::io::BufWriter::with_capacity(COPY_BUFFER, sink);
                    for (i, id) in user_ids.iter().enumerate() {
                        let n = i as u64;
                        writeln!(
                            out,
                            "{id}\tUser {n}\tuser{seed}_{n}\tuser{seed}_{n}@example.com\tsynthetic-{id}\t{ts}",
                            seed = spec.rng_seed,
                            ts = (epoch - TimeDelta::days(400)).format(crate::models::TIMESTAMP_FORMAT),
                        )
                        .map_err(copy_error)?;
                        if (n + 1).is_multiple_of(PROGRESS_EVERY) {
                            progress(SeedProgress { users: n + 1, activities: 0 });
                        }
                    }
                    out.flush().map_err(copy_error)
                },
            )
            .with_format(CopyFormat::Text)
            .execute(conn)?;
        progress(SeedProgress {
            users: users_written as u64,
            activities: 0,
        });
        let activities_written = diesel::copy_from(activities::table)
            .from_raw_data(
                (
                    activities::uuid,
                    activities::user_uuid,
                    activities::message,
                    activities::replies_count,
                    activities::reposts_count,
                    activities::likes_count,
                    activities::expires_at,
                    activities::created_at,
                ),
                |sink: &mut dyn Write| -> Result<(), diesel::result::Error> {
                    let mut rng = ChaCha8Rng::seed_from_u64(activity_seed);
                    let mut out = std::io::BufWriter::with_capacity(COPY_BUFFER, sink);
                    let mut message = String::with_capacity(256);
                    for n in 0..spec.activities {
                        let id = random_uuid(&mut rng);
                        let author = user_ids[rng.random_range(0..user_ids.len())];
                        random_message(&mut rng, &mut message);
                        let created_at =
                            epoch - TimeDelta::microseconds(rng.random_range(0..31_536_000_000_000));
                        let ttl = crate::repo::activities::Ttl::ALL[rng.random_range(0..7)];
                        writeln!(
                            out,
                            "{id}\t{author}\t{message}\t{}\t{}\t{}\t{}\t{}",
                            rng.random_range(0..50u32),
                            rng.random_range(0..20u32),
                            rng.random_range(0..500u32),
                            (created_at + ttl.duration()).format(crate::models::TIMESTAMP_FORMAT),
                            created_at.format(crate::models::TIMESTAMP_FORMAT),
                        )
                        .map_err(copy_error)?;
                        if (n + 1).is_multiple_of(PROGRESS_EVERY) {
                            progress(SeedProgress {
                                users: spec.users,
                                activities: n + 1,
                            });
                        }
                    }
                    out.flush().map_err(copy_error)
                },
            )
            .with_format(CopyFormat::Text)
            .execute(conn)?;
        let report = SeedReport {
            users: users_written as u64,
            activities: activities_written as u64,
        };
        progress(SeedProgress {
            users: report.users,
            activities: report.activities,
        });
        Ok(report)
    })
}

/// Whether the schema's tables hold any row (for refusing a bulk seed into
/// a database that has data).
pub fn has_data(conn: &mut PgConnection) -> Result<bool> {
    Ok(diesel::select(diesel::dsl::exists(users::table.select(users::uuid))).get_result(conn)?)
}
