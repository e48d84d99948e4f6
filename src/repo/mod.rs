//! Connection-level operations: each takes `&mut PgConnection`, so callers
//! can compose several in one `conn.transaction(..)`.

pub mod activities;
pub mod feed;
pub mod idempotency;
pub mod profiles;
pub mod seed;
#[cfg(feature = "synthetic")]
pub mod synthetic;
pub mod thread;
pub mod users;
