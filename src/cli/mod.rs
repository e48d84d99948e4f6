//! The `cruddur-db` command line: one module per command group.

#[cfg(feature = "aws")]
pub mod rds;
