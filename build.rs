//! `embed_migrations!` reads `migrations/` at compile time; tell cargo to
//! rebuild when any migration changes, or the binary would embed stale SQL.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
