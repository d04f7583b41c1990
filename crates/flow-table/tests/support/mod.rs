//! Test support shared by the scenario tests.
pub mod sim;
