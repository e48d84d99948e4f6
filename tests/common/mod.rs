//! The fixtures of `cruddur-db-test-support`, under the name every test
//! file uses.
pub use cruddur_db_test_support::*;
