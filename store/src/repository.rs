//! `PersistedEventRepository` over sqlx.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::EventLog;

/// Raised (boxed in `PersistenceError::UnknownError`) when the command id of an append has
/// already been executed; the bus turns it into the first outcome.
#[derive(Debug, thiserror::Error)]
#[error("command {0} was already executed")]
pub struct DuplicateCommand(pub Uuid);

#[derive(Clone, Debug)]
pub struct PgEventRepository {
    log: EventLog,
}

const SELECT_STREAM: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata FROM event \
     WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence";

// One statement, so one round trip and no explicit transaction: the journal row and the
// events are written together or not at all. The trigger on `event` chains the hashes and
// refuses a gap; the primary keys refuse a concurrent append (stream) or a replayed command.
const APPEND_WITH_COMMAND: &str = "WITH journal AS ( \
       INSERT INTO command (command_id, aggregate_type, aggregate_id, outcome, \
                            first_sequence, last_sequence, actor) \
       VALUES ($1, $2, $3, 'accepted', $4, $5, $6)) \
     INSERT INTO event (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                        payload, metadata) \
     SELECT $2, $3, e.sequence, e.event_type, e.event_version, e.payload, e.metadata \
       FROM unnest($7::bigint[], $8::text[], $9::text[], $10::jsonb[], $11::jsonb[]) \
            WITH ORDINALITY AS e(sequence, event_type, event_version, payload, metadata, n) \
      ORDER BY e.n";

const APPEND: &str = "INSERT INTO event (aggregate_type, aggregate_id, sequence, event_type, \
                        event_version, payload, metadata) \
     SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata \
       FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
            WITH ORDINALITY AS e(sequence, event_type, event_version, payload, metadata, n) \
      ORDER BY e.n";

impl PgEventRepository {
    pub fn new(log: EventLog) -> Self {
        Self { log }
    }

    async fn select<A: Aggregate>(
        &self,
        aggregate_id: &str,
        after: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        sqlx::query(SELECT_STREAM)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(to_i64(after)?)
            .try_map(serialized_event)
            .fetch_all(self.log.pool())
            .await
            .map_err(persistence_error)
    }

    fn stream<A: Aggregate>(&self, aggregate_id: Option<String>) -> ReplayStream {
        let (mut feed, stream) = ReplayStream::new(256);
        let pool = self.log.pool().clone();
        tokio::spawn(async move {
            let sql = if aggregate_id.is_some() {
                SELECT_STREAM
            } else {
                "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
                 payload, metadata FROM event WHERE aggregate_type = $1 AND $2::text IS NULL \
                 AND sequence > $3 ORDER BY tx_id, position"
            };
            let mut rows = sqlx::query(sql)
                .bind(A::TYPE)
                .bind(aggregate_id)
                .bind(0_i64)
                .try_map(serialized_event)
                .fetch(&pool);
            // Unlike a replay that ends quietly on a database error, the error is passed to
            // the consumer as the stream's last item.
            loop {
                let item = rows.try_next().await.map_err(persistence_error);
                let done = !matches!(item, Ok(Some(_)));
                let sent = match item {
                    Ok(Some(event)) => feed.push(Ok(event)).await,
                    Ok(None) => Ok(()),
                    Err(error) => feed.push(Err(error)).await,
                };
                if done || sent.is_err() {
                    break;
                }
            }
        });
        stream
    }
}

impl PersistedEventRepository for PgEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select::<A>(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select::<A>(aggregate_id, last_sequence).await
    }

    /// No snapshots: streams are short, and a snapshot is one more thing that can disagree
    /// with the log. The framework is built with `new_event_store`, which never asks.
    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        for event in events {
            sequences.push(to_i64(event.sequence)?);
            types.push(event.event_type.as_str());
            versions.push(event.event_version.as_str());
            payloads.push(sqlx::types::Json(&event.payload));
            metadata.push(sqlx::types::Json(&event.metadata));
        }
        let command_id = first
            .metadata
            .get(crate::bus::META_COMMAND_ID)
            .and_then(Value::as_str)
            .and_then(|raw| Uuid::parse_str(raw).ok());
        let result = match command_id {
            Some(command_id) => {
                sqlx::query(APPEND_WITH_COMMAND)
                    .bind(command_id)
                    .bind(A::TYPE)
                    .bind(&first.aggregate_id)
                    .bind(sequences.first().copied())
                    .bind(sequences.last().copied())
                    .bind(
                        first
                            .metadata
                            .get(crate::bus::META_ACTOR)
                            .and_then(Value::as_str),
                    )
                    .bind(&sequences)
                    .bind(&types)
                    .bind(&versions)
                    .bind(&payloads)
                    .bind(&metadata)
                    .execute(self.log.pool())
                    .await
            }
            None => {
                sqlx::query(APPEND)
                    .bind(A::TYPE)
                    .bind(&first.aggregate_id)
                    .bind(&sequences)
                    .bind(&types)
                    .bind(&versions)
                    .bind(&payloads)
                    .bind(&metadata)
                    .execute(self.log.pool())
                    .await
            }
        };
        match result {
            Ok(_) => {
                self.log.announce();
                Ok(())
            }
            Err(error) => Err(match (command_id, constraint_of(&error)) {
                (Some(id), Some("command_pkey")) => {
                    PersistenceError::UnknownError(Box::new(DuplicateCommand(id)))
                }
                _ => persistence_error(error),
            }),
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(self.stream::<A>(Some(aggregate_id.to_owned())))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Ok(self.stream::<A>(None))
    }
}

fn serialized_event(row: PgRow) -> Result<SerializedEvent, sqlx::Error> {
    let sequence: i64 = row.try_get("sequence")?;
    Ok(SerializedEvent {
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: usize::try_from(sequence).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
    })
}

fn to_i64(n: usize) -> Result<i64, PersistenceError> {
    i64::try_from(n).map_err(|e| PersistenceError::UnknownError(Box::new(e)))
}

fn constraint_of(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// A conflicting append (same stream position taken, or a gap the trigger refused) is an
/// optimistic-lock error and nothing else; lost connections are told apart from bugs.
pub(crate) fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db)
            if db.constraint() == Some("event_stream_sequence")
                || db.code().as_deref() == Some("OP001") =>
        {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => PersistenceError::ConnectionError(Box::new(error)),
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            PersistenceError::DeserializationError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}
