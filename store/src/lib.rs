//! Opora's event store on PostgreSQL.
//!
//! - [`PgEventRepository`] implements cqrs-es's `PersistedEventRepository`: per-stream
//!   sequences with optimistic concurrency, hash chain (computed by a trigger), and the
//!   a command id that can append only once.
//! - [`CommandBus`] executes commands idempotently: a command id runs at most once.
//! - [`log`] reads the global log in (tx_id, position) order without ever skipping an event
//!   committed out of order.
//! - [`bulk`] streams already-decided events with their own recording instants (synthetic
//!   or migrated history) through `COPY`, hashed exactly as an append.
//! - [`verify`] recomputes the hash chain and reports the first tampered or missing event.

pub mod bulk;
pub mod bus;
pub mod chain;
pub mod log;
mod repository;
pub mod vault;
pub mod verify;

pub use bulk::{BulkAppender, BulkError, BulkReport};
pub use bus::{CommandBus, CommandError, CommandMeta, Executed};
pub use log::{LogPosition, RecordedEvent};
pub use repository::PgEventRepository;
pub use vault::{MasterKey, Vault, VaultError};

use sqlx::PgPool;
use tokio::sync::watch;

/// The migrations of the whole product (the log, refused commands and the read models).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The PostgreSQL channel on which appends are announced to other processes.
pub const NOTIFY_CHANNEL: &str = "opora_event_appended";

/// Shared handle to the log: the pool and a local signal raised after every append, which
/// projection runners in this process wait on (other processes hear a coalesced NOTIFY, see
/// [`EventLog::spawn_notifier`]).
#[derive(Clone, Debug)]
pub struct EventLog {
    pool: PgPool,
    appended: watch::Sender<u64>,
}

impl EventLog {
    pub fn new(pool: PgPool) -> Self {
        let (appended, _) = watch::channel(0);
        Self { pool, appended }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A receiver that changes after each append made through this handle.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub(crate) fn announce(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// How many entries a stream has (its last sequence; 0 when it has none): whether a
    /// record exists, and the version a form was made for.
    pub async fn stream_length(&self, aggregate_type: &str, id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT coalesce(max(sequence), 0)::bigint FROM event \
              WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(id)
        .fetch_one(&self.pool)
        .await
    }

    pub fn repository(&self) -> PgEventRepository {
        PgEventRepository::new(self.clone())
    }

    /// Sends `NOTIFY` after appends, at most once per `min_gap`. NOTIFY is not sent inside
    /// the append transaction: PostgreSQL serialises the commits of notifying transactions
    /// on a global lock, which would cost the log its group commit under load.
    pub fn spawn_notifier(&self, min_gap: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let mut appended = self.subscribe();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            while appended.changed().await.is_ok() {
                if let Err(error) = notify(&pool).await {
                    tracing::warn!(%error, "could not announce appended events");
                }
                tokio::time::sleep(min_gap).await;
            }
        })
    }
}

/// Tells every listening process that the log has grown.
pub async fn notify(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(pool)
        .await
        .map(|_| ())
}
