//! No code: see this crate's `Cargo.toml`. Depending on it gives a build
//! the workspace's one feature set of the crates it lists.
