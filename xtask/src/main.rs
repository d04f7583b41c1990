//! Project automation: `cargo xtask verify`.
fn main() {}
