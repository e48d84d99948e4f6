//! The command-line tool's argument types and handlers, one module per
//! command group.

pub mod local;
