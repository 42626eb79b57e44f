//! The `opora` binary's library: configuration, database start-up, seed data, the HTTP
//! application and the CLI. Business rules live in `opora-domain`, never here.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod chrome;
pub mod cli;
pub mod db;
pub mod demo;
pub mod embedded;
pub mod error;
pub mod export;
pub mod generate;
pub mod health;
pub mod i18n;
pub mod ingest;
pub mod mail;
pub mod notify;
pub mod pages;
pub mod seed;
pub mod simulate;
pub mod telemetry;

pub use app::{AppConfig, AppState, Application};

/// mimalloc for every binary that links Opora (the server, the bench, the tests): a page
/// builds and drops thousands of small strings and maps, and glibc's allocator spent a
/// fifth of the server's CPU in `malloc`, `free` and their consolidation under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
