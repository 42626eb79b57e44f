//! The projection engine and Opora's read models.
//!
//! A projection is a named fold of the log into tables of its own schema (the schema has the
//! projection's name). The runner applies the log to it in batches; each batch's read-model
//! writes and the projection's checkpoint commit in one transaction, so no event is applied
//! twice and none is skipped, whatever crashes where. See ARCHITECTURE.md.

pub mod accounts;
pub mod aid;
pub mod cases;
pub mod kept;
pub mod persons;
pub mod reference;
mod runner;
pub mod signals;
pub mod stamps;
pub mod stream_head;
pub mod vyzov;
pub mod weekly;
pub mod zastupnik;

pub use runner::{rebuild, settled, status, RebuildReport, Runner, RunnerConfig, Status};

use async_trait::async_trait;
use opora_store::log::DecodeError;
use opora_store::RecordedEvent;
use sqlx::PgConnection;
use std::sync::Arc;

#[async_trait]
pub trait Projection: Send + Sync {
    /// The projection's name: its checkpoint's key and the schema of its tables.
    fn name(&self) -> &'static str;

    /// False for a projection that guards the log (`stream_head`): rebuilding it from the
    /// log would make it agree with whatever the log has become.
    fn rebuildable(&self) -> bool {
        true
    }

    /// The aggregate types whose events the projection folds (`None`: every event). The
    /// runner then reads only those, passing over the rest with the checkpoint.
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// The fold a rebuild runs instead of this one, if it has a faster one: the fresh tables
    /// are read by nobody until the swap, and a rebuild that stops half-way is started
    /// over, so it may keep state in memory across batches and write it in [`finish`].
    ///
    /// [`finish`]: Projection::finish
    fn bulk(&self) -> Option<Box<dyn Projection>> {
        None
    }

    /// Writes what a [`bulk`](Projection::bulk) fold kept in memory; a rebuild calls it in
    /// the swap's transaction, after the last batch.
    async fn finish(&self, _conn: &mut PgConnection) -> Result<(), ProjectionError> {
        Ok(())
    }

    /// Applies `events` (in log order, all after the checkpoint) to the read model. Runs in
    /// the batch's transaction with `search_path` set to the schema being written (the live
    /// one, or a fresh copy during a rebuild), so table names are written unqualified.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("unknown projection «{0}»")]
    Unknown(String),
    #[error("{0}")]
    Invariant(String),
}

/// Every projection of the product, in the order they are run.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(reference::ReferenceProjection::new()),
        Arc::new(accounts::AccountsProjection),
        Arc::new(persons::PersonsProjection),
        Arc::new(cases::CasesProjection),
        Arc::new(aid::AidProjection),
        Arc::new(weekly::WeeklyProjection),
        Arc::new(signals::SignalsProjection),
        Arc::new(vyzov::VyzovProjection::default()),
        Arc::new(zastupnik::ZastupnikProjection),
        Arc::new(stream_head::StreamHead),
    ]
}

/// The projection called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
