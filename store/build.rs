// `sqlx::migrate!` embeds ../migrations at compile time; without this, adding a migration
// would not rebuild the crate (the build script sqlx recommends).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
