//! The `opora` binary's library: configuration, database start-up, seed data, the HTTP
//! application and the CLI. Business rules live in `opora-domain`, never here.

pub mod app;
pub mod cli;
pub mod db;
pub mod embedded;
pub mod error;
pub mod health;
pub mod pages;
pub mod seed;
pub mod telemetry;

pub use app::{AppState, Application};
