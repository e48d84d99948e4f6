//! Synthetic data for load tests and benchmarks (feature `synthetic`):
//! reproducible random users (two in three with a bio) and activities (one
//! in [`REPLY_EVERY`] a reply to a recent one), loaded with binary `COPY`,
//! or written as CSV for other tools to load the very same rows.

use std::io::Write;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::CopyFormat;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::migrations::ensure_current;
use crate::repo::seed::{SEED_LOCK_KEY, SeedReport};
use crate::schema::{activities, users};
use crate::sql::quote_ident;
use crate::timestamps::PG_EPOCH_UNIX_MICROS;

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

/// Mixed into the activity seed for the stream that picks replies.
const REPLY_STREAM: u64 = u64::from_be_bytes(*b"replies!");

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

/// Streams COPY rows through a buffer: COPY sends one message per `write`,
/// so small writes would cost a message each.
const COPY_BUFFER: usize = 256 * 1024;

/// The one way rows reach a `COPY … FROM STDIN`: through a buffer of
/// [`COPY_BUFFER`] bytes, flushed at the end, an I/O error ending the COPY.
fn buffered(
    sink: &mut dyn Write,
    write: impl FnOnce(&mut std::io::BufWriter<&mut dyn Write>) -> std::io::Result<()>,
) -> Result<(), diesel::result::Error> {
    let mut out = std::io::BufWriter::with_capacity(COPY_BUFFER, sink);
    write(&mut out).map_err(copy_error)?;
    out.flush().map_err(copy_error)
}

fn copy_error(e: std::io::Error) -> diesel::result::Error {
    diesel::result::Error::SerializationError(Box::new(e))
}

/// The columns of `users` a synthetic seed writes, in the order of its rows
/// (also the column order of [`write_synthetic_csv`]'s users file).
pub const SYNTHETIC_USER_COLUMNS: &str =
    "uuid, display_name, handle, email, cognito_user_id, created_at, bio";
/// The columns of `activities` a synthetic seed writes, in the order of its
/// rows (also the column order of [`write_synthetic_csv`]'s activities file).
pub const SYNTHETIC_ACTIVITY_COLUMNS: &str = "uuid, user_uuid, message, replies_count, reposts_count, likes_count, reply_to_activity_uuid, expires_at, created_at";

/// On average one synthetic activity in this many is a reply.
pub const REPLY_EVERY: u32 = 5;
/// Replies answer one of this many activities written just before them, so
/// that the generator's memory does not grow with the row count.
const RECENT_PARENTS: usize = 1024;

/// The bio of synthetic user `n`: empty for one in three, else a few of
/// [`WORDS`] (no comma, quote or newline, so the CSV needs no quoting).
fn synthetic_bio(n: u64, out: &mut String) {
    out.clear();
    if n % 3 == 2 {
        return;
    }
    let word = |k: u64| WORDS[(k % WORDS.len() as u64) as usize];
    out.push_str("Writes about ");
    out.push_str(word(n));
    out.push_str(" and ");
    out.push_str(word(n / 7 + 3));
}

/// One synthetic user; the text fields derive from `n` and the seed.
struct UserRow {
    id: Uuid,
    n: u64,
}

/// One synthetic activity.
struct ActivityRow<'a> {
    id: Uuid,
    author: Uuid,
    message: &'a str,
    replies: i32,
    reposts: i32,
    likes: i32,
    reply_to: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

/// The rows of a synthetic seed, generated on the fly: the COPY load and
/// the CSV export encode the very same rows from here.
struct SyntheticRows {
    spec: SyntheticSeed,
    user_ids: Vec<Uuid>,
    activity_seed: u64,
    epoch: DateTime<Utc>,
}

impl SyntheticRows {
    fn new(spec: SyntheticSeed) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.rng_seed);
        let user_ids: Vec<Uuid> = (0..spec.users).map(|_| random_uuid(&mut rng)).collect();
        let activity_seed: u64 = rng.random();
        Self {
            spec,
            user_ids,
            activity_seed,
            epoch: synthetic_epoch(),
        }
    }

    fn user_created_at(&self) -> DateTime<Utc> {
        self.epoch - TimeDelta::days(400)
    }

    fn for_each_user(
        &self,
        progress: &dyn Fn(SeedProgress),
        mut f: impl FnMut(&UserRow) -> std::io::Result<()>,
    ) -> std::io::Result<u64> {
        for (i, id) in self.user_ids.iter().enumerate() {
            let n = i as u64;
            f(&UserRow { id: *id, n })?;
            if (n + 1).is_multiple_of(PROGRESS_EVERY) {
                progress(SeedProgress {
                    users: n + 1,
                    activities: 0,
                });
            }
        }
        Ok(self.user_ids.len() as u64)
    }

    fn for_each_activity(
        &self,
        progress: &dyn Fn(SeedProgress),
        mut f: impl FnMut(&ActivityRow<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.activity_seed);
        // Replies draw from a stream of their own, so that every other
        // column keeps the values the same seed gave before replies existed.
        let mut replies_rng = ChaCha8Rng::seed_from_u64(self.activity_seed ^ REPLY_STREAM);
        let mut recent: Vec<(Uuid, DateTime<Utc>)> = Vec::with_capacity(RECENT_PARENTS);
        let mut message = String::with_capacity(256);
        for n in 0..self.spec.activities {
            // The draws keep this order: it is what makes the rows.
            let id = random_uuid(&mut rng);
            let author = self.user_ids[rng.random_range(0..self.user_ids.len())];
            random_message(&mut rng, &mut message);
            let mut created_at =
                self.epoch - TimeDelta::microseconds(rng.random_range(0..31_536_000_000_000));
            let ttl = crate::repo::activities::Ttl::ALL[rng.random_range(0..7)];
            let replies = rng.random_range(0..50);
            let reposts = rng.random_range(0..20);
            let likes = rng.random_range(0..500);
            let mut reply_to = None;
            let mut expires_at = Some(created_at + ttl.duration());
            if !recent.is_empty() && replies_rng.random_ratio(1, REPLY_EVERY) {
                // A reply, up to six hours after its parent (never after the
                // epoch), that does not expire.
                let (parent, parent_at) = recent[replies_rng.random_range(0..recent.len())];
                let after = TimeDelta::microseconds(replies_rng.random_range(1..21_600_000_000));
                created_at = (parent_at + after).min(self.epoch);
                reply_to = Some(parent);
                expires_at = None;
            }
            f(&ActivityRow {
                id,
                author,
                message: &message,
                replies,
                reposts,
                likes,
                reply_to,
                expires_at,
                created_at,
            })?;
            let slot = (n % RECENT_PARENTS as u64) as usize;
            if slot < recent.len() {
                recent[slot] = (id, created_at);
            } else {
                recent.push((id, created_at));
            }
            if (n + 1).is_multiple_of(PROGRESS_EVERY) {
                progress(SeedProgress {
                    users: self.spec.users,
                    activities: n + 1,
                });
            }
        }
        Ok(self.spec.activities)
    }

    /// Writes the users as CSV, one line each. No field contains a comma,
    /// quote, backslash or newline, so nothing needs escaping.
    fn write_users_csv(&self, out: &mut impl Write) -> std::io::Result<u64> {
        let seed = self.spec.rng_seed;
        let ts = self
            .user_created_at()
            .format(crate::timestamps::TIMESTAMP_FORMAT);
        let mut bio = String::new();
        self.for_each_user(&|_| (), |UserRow { id, n }| {
            synthetic_bio(*n, &mut bio);
            writeln!(
                out,
                // Quoted: an empty unquoted field is NULL in CSV, and the
                // column holds '' for no bio.
                "{id},User {n},user{seed}_{n},user{seed}_{n}@example.com,synthetic-{id},{ts},\"{bio}\""
            )
        })
    }

    /// Writes the activities as CSV, like [`Self::write_users_csv`].
    fn write_activities_csv(&self, out: &mut impl Write) -> std::io::Result<u64> {
        self.for_each_activity(&|_| (), |a| {
            // An empty unquoted field is NULL in COPY's CSV format.
            let reply_to = a.reply_to.map(|u| u.to_string()).unwrap_or_default();
            let expires_at = a
                .expires_at
                .map(|t| t.format(crate::timestamps::TIMESTAMP_FORMAT).to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{}",
                a.id,
                a.author,
                a.message,
                a.replies,
                a.reposts,
                a.likes,
                reply_to,
                expires_at,
                a.created_at.format(crate::timestamps::TIMESTAMP_FORMAT),
            )
        })
    }

    /// Writes the users in COPY's binary format (header, rows, trailer).
    fn write_users_binary(
        &self,
        out: &mut impl Write,
        progress: &dyn Fn(SeedProgress),
    ) -> std::io::Result<u64> {
        let seed = self.spec.rng_seed;
        let created_at = self.user_created_at();
        let mut row = BinaryRow::default();
        let mut bio = String::new();
        binary_header(out)?;
        let written = self.for_each_user(progress, |u| {
            synthetic_bio(u.n, &mut bio);
            row.start(7);
            row.uuid(u.id);
            row.text(format_args!("User {}", u.n));
            row.text(format_args!("user{seed}_{}", u.n));
            row.text(format_args!("user{seed}_{}@example.com", u.n));
            row.text(format_args!("synthetic-{}", u.id));
            row.timestamptz(created_at);
            row.bytes(bio.as_bytes());
            out.write_all(&row.buf)
        })?;
        binary_trailer(out)?;
        Ok(written)
    }

    /// Writes the activities in COPY's binary format.
    fn write_activities_binary(
        &self,
        out: &mut impl Write,
        progress: &dyn Fn(SeedProgress),
    ) -> std::io::Result<u64> {
        let mut row = BinaryRow::default();
        binary_header(out)?;
        let written = self.for_each_activity(progress, |a| {
            row.start(9);
            row.uuid(a.id);
            row.uuid(a.author);
            row.bytes(a.message.as_bytes());
            row.int4(a.replies);
            row.int4(a.reposts);
            row.int4(a.likes);
            match a.reply_to {
                Some(parent) => row.uuid(parent),
                None => row.null(),
            }
            match a.expires_at {
                Some(t) => row.timestamptz(t),
                None => row.null(),
            }
            row.timestamptz(a.created_at);
            out.write_all(&row.buf)
        })?;
        binary_trailer(out)?;
        Ok(written)
    }
}

/// The signature, flags and header-extension length that open a binary
/// COPY stream (see the `COPY` reference, "Binary Format").
fn binary_header(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(b"PGCOPY\n\xff\r\n\0")?;
    out.write_all(&0i32.to_be_bytes())?;
    out.write_all(&0i32.to_be_bytes())
}

/// The field count of -1 that ends a binary COPY stream.
fn binary_trailer(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&(-1i16).to_be_bytes())
}

/// One binary COPY tuple, built in a reused buffer: a field count, then
/// each field as a length and the type's binary (`*_send`) form.
#[derive(Default)]
struct BinaryRow {
    buf: Vec<u8>,
}

impl BinaryRow {
    fn start(&mut self, fields: i16) {
        self.buf.clear();
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        // Field lengths are i32; every synthetic field is a few bytes long.
        let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
    }

    fn text(&mut self, value: std::fmt::Arguments<'_>) {
        // Write the text in place, then fill in its length.
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        // Writing to a Vec cannot fail.
        let _ = self.buf.write_fmt(value);
        let len = i32::try_from(self.buf.len() - at - 4).unwrap_or(i32::MAX);
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// A NULL field: length -1, no bytes.
    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn uuid(&mut self, value: Uuid) {
        self.bytes(value.as_bytes());
    }

    fn int4(&mut self, value: i32) {
        self.bytes(&value.to_be_bytes());
    }

    fn timestamptz(&mut self, value: DateTime<Utc>) {
        self.bytes(&(value.timestamp_micros() - PG_EPOCH_UNIX_MICROS).to_be_bytes());
    }
}

/// The most users a synthetic seed makes: their ids are kept in memory
/// (16 bytes each) to pick authors from, so the count is bounded.
pub const MAX_SYNTHETIC_USERS: u64 = 10_000_000;

fn check_spec(spec: SyntheticSeed) -> Result<()> {
    if spec.users > MAX_SYNTHETIC_USERS {
        return Err(Error::InvalidSetting {
            name: "users",
            value: spec.users.to_string(),
            reason: format!("at most {MAX_SYNTHETIC_USERS} users (their ids are held in memory)"),
        });
    }
    if spec.users == 0 && spec.activities > 0 {
        return Err(Error::InvalidSetting {
            name: "users",
            value: "0".into(),
            reason: "activities need at least one user".into(),
        });
    }
    Ok(())
}

/// Loads `spec.users` users and `spec.activities` activities with `COPY`
/// in its binary format, streaming rows as they are generated (memory does
/// not grow with the row count), in one transaction. Deterministic for a
/// given `rng_seed`.
///
/// Into an empty `activities` table (and from [`DEFER_INDEXES_FROM`]
/// activities on), the load works as `pg_restore` does: the table's plain
/// indexes and foreign keys are dropped, the rows copied, then the indexes
/// built (one sort each) and the foreign keys added back (one join each,
/// which checks every row) instead of one B-tree insertion per index and one
/// trigger call per row. Their definitions are read from the catalog, so
/// the schema after the seed is the one before it. The table is locked
/// (`ACCESS EXCLUSIVE`) until the seed commits; nobody sees it without its
/// indexes, and any failure rolls all of it back.
///
/// Handles are `user<seed>_<n>`: a seed whose `rng_seed` is already loaded
/// is [`Error::SeedAlreadyLoaded`] and writes nothing; another `rng_seed`
/// adds a fresh batch. Bulk seeds of one database run one at a time (a
/// transaction-level advisory lock, [`SEED_LOCK_KEY`]); a second one waits
/// for the first.
/// `progress` is called every [`PROGRESS_EVERY`] rows and at the end.
pub fn seed_synthetic(
    conn: &mut PgConnection,
    spec: SyntheticSeed,
    progress: &dyn Fn(SeedProgress),
) -> Result<SeedReport> {
    ensure_current(conn)?;
    check_spec(spec)?;
    let rows = SyntheticRows::new(spec);
    conn.transaction(|conn| {
        // A bulk load is long by design; the session's statement timeout
        // (meant for the feed) must not cut it. SET LOCAL ends with the
        // transaction.
        diesel::sql_query("SET LOCAL statement_timeout = 0").execute(conn)?;
        // Bulk seeds of one database take turns: two at once would each
        // hold row locks the other's COPY and index rebuild wait for.
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(SEED_LOCK_KEY)
            .execute(conn)?;
        if let Some(first) = rows.user_ids.first() {
            let loaded: bool =
                diesel::select(diesel::dsl::exists(users::table.find(*first))).get_result(conn)?;
            if loaded {
                return Err(Error::SeedAlreadyLoaded {
                    rng_seed: spec.rng_seed,
                });
            }
        }
        let users_written = diesel::copy_from(users::table)
            .from_raw_data(
                (
                    users::uuid,
                    users::display_name,
                    users::handle,
                    users::email,
                    users::cognito_user_id,
                    users::created_at,
                    users::bio,
                ),
                |sink: &mut dyn Write| {
                    buffered(sink, |out| rows.write_users_binary(out, progress).map(drop))
                },
            )
            .with_format(CopyFormat::Binary)
            .execute(conn)?;
        progress(SeedProgress {
            users: users_written as u64,
            activities: 0,
        });
        let deferred = if spec.activities >= DEFER_INDEXES_FROM && !has_activities(conn)? {
            defer_indexes(conn)?
        } else {
            Vec::new()
        };
        let activities_written = diesel::copy_from(activities::table)
            .from_raw_data(
                (
                    activities::uuid,
                    activities::user_uuid,
                    activities::message,
                    activities::replies_count,
                    activities::reposts_count,
                    activities::likes_count,
                    activities::reply_to_activity_uuid,
                    activities::expires_at,
                    activities::created_at,
                ),
                |sink: &mut dyn Write| {
                    buffered(sink, |out| {
                        rows.write_activities_binary(out, progress).map(drop)
                    })
                },
            )
            .with_format(CopyFormat::Binary)
            .execute(conn)?;
        rebuild(conn, &deferred)?;
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

/// From how many activities [`seed_synthetic`] builds the indexes of an
/// empty `activities` table after the data rather than row by row.
pub const DEFER_INDEXES_FROM: u64 = 10_000;

/// An index or foreign key of `activities` that is rebuilt after the load.
#[derive(Debug, QueryableByName)]
struct Deferred {
    /// The index (as a regclass, quoted and qualified as needed) or the
    /// constraint name.
    #[diesel(sql_type = Text)]
    name: String,
    /// `CREATE INDEX …` or the constraint's definition.
    #[diesel(sql_type = Text)]
    def: String,
    #[diesel(sql_type = Bool)]
    is_index: bool,
}

fn has_activities(conn: &mut PgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        activities::table.select(activities::uuid),
    ))
    .get_result(conn)
}

/// Drops the indexes of `activities` that back no constraint, and its
/// foreign keys, returning their definitions for [`rebuild`]. Primary-key
/// and unique indexes stay: they are constraints, and the load checks them.
fn defer_indexes(conn: &mut PgConnection) -> QueryResult<Vec<Deferred>> {
    let deferred: Vec<Deferred> = diesel::sql_query(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def, \
         true AS is_index \
         FROM pg_index i \
         WHERE i.indrelid = 'activities'::regclass AND NOT i.indisunique \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         UNION ALL \
         SELECT conname::text, pg_get_constraintdef(oid), false \
         FROM pg_constraint WHERE conrelid = 'activities'::regclass AND contype = 'f' \
         ORDER BY 3 DESC, 1",
    )
    .load(conn)?;
    for d in &deferred {
        let sql = if d.is_index {
            format!("DROP INDEX {}", d.name)
        } else {
            format!(
                "ALTER TABLE activities DROP CONSTRAINT {}",
                quote_ident(&d.name)
            )
        };
        diesel::sql_query(sql).execute(conn)?;
    }
    Ok(deferred)
}

/// Builds back what [`defer_indexes`] dropped: indexes first, then the
/// foreign keys, whose validation checks every loaded row.
fn rebuild(conn: &mut PgConnection, deferred: &[Deferred]) -> QueryResult<()> {
    for d in deferred {
        let sql = if d.is_index {
            d.def.clone()
        } else {
            format!(
                "ALTER TABLE activities ADD CONSTRAINT {} {}",
                quote_ident(&d.name),
                d.def
            )
        };
        diesel::sql_query(sql).execute(conn)?;
    }
    Ok(())
}

/// Writes the rows [`seed_synthetic`] loads for `spec` as two header-less
/// CSV files, so that other tools (e.g. `psql \copy … WITH (FORMAT csv)`)
/// can load the very same rows; the columns are
/// [`SYNTHETIC_USER_COLUMNS`] and [`SYNTHETIC_ACTIVITY_COLUMNS`]. Streams,
/// like the seed: memory does not grow with the row count. Pass buffered
/// writers.
pub fn write_synthetic_csv(
    spec: SyntheticSeed,
    users: &mut impl Write,
    activities: &mut impl Write,
) -> Result<SeedReport> {
    check_spec(spec)?;
    let rows = SyntheticRows::new(spec);
    let io = |what: &str| {
        let context = format!("writing the synthetic {what} CSV");
        move |cause| Error::Io { context, cause }
    };
    let users_written = rows
        .write_users_csv(users)
        .and_then(|n| users.flush().map(|()| n))
        .map_err(io("users"))?;
    let activities_written = rows
        .write_activities_csv(activities)
        .and_then(|n| activities.flush().map(|()| n))
        .map_err(io("activities"))?;
    Ok(SeedReport {
        users: users_written,
        activities: activities_written,
    })
}
