//! Connection-level operations: each takes `&mut PgConnection`, so callers
//! can compose several in one `conn.transaction(..)`.

pub mod activities;
pub mod feed;
pub mod seed;
pub mod users;
