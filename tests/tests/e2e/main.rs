//! End-to-end tests against real PostgreSQL (DATABASE_URL; scripts/test provides one).
#![allow(clippy::unwrap_used)]

mod access;
mod aid;
mod api;
mod cases;
mod client;
mod faults;
mod fixtures;
mod hostile;
mod log;
mod projections;
mod signal_kpi;
mod signals;
mod vyzov_dash;
mod web;
mod weekly;
mod zastupnik_dash;
