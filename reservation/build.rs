//! The migrations are embedded in the crate (`sqlx::migrate!`): a new or
//! changed migration file must rebuild it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
