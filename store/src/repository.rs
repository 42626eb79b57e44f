//! `PersistedEventRepository` over sqlx.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{canonical_json, event_hash, HashedFields, SplitMetadata};
use crate::EventLog;

/// Raised (boxed in `PersistenceError::UnknownError`) when the command id of an append has
/// already been executed; the bus turns it into the first outcome.
#[derive(Debug, thiserror::Error)]
#[error("command {0} was already executed")]
pub struct DuplicateCommand(pub Uuid);

#[derive(Clone, Debug)]
pub struct PgEventRepository {
    log: EventLog,
    /// The last (sequence, hash) of streams this repository has read or written: the next
    /// append chains to it without asking the database. An event's hash never changes, so
    /// an entry can be behind the stream but never wrong; a miss costs one lookup.
    last_hash: Arc<Mutex<LastHashes>>,
    /// Loads leave metadata out (`{}`): the command bus only folds payloads, and cqrs-es
    /// drops the metadata of loaded events. Replay streams always carry it.
    lean_loads: bool,
}

/// Stream reads, with the metadata column chosen by the caller.
macro_rules! select_stream {
    ($metadata:expr, $where:literal, $order:literal) => {
        concat!(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, ",
            $metadata,
            " FROM event WHERE aggregate_type = $1 AND ",
            $where,
            " AND sequence > $3 ORDER BY ",
            $order
        )
    };
}

/// The full metadata map as cqrs-es hands it over: the typed columns joined back to the
/// other keys (the inverse of `chain::SplitMetadata::split`).
macro_rules! full_metadata {
    () => {
        "metadata || jsonb_strip_nulls(jsonb_build_object('actor', actor, 'command_id', \
         command_id, 'correlation_id', correlation_id, 'effective_date', \
         to_char(effective_date, 'YYYY-MM-DD'))) AS metadata"
    };
}

const SELECT_STREAM_LEAN: &str = select_stream!(
    "'{}'::jsonb AS metadata, hash",
    "aggregate_id = $2",
    "sequence"
);

const SELECT_STREAM: &str = select_stream!(full_metadata!(), "aggregate_id = $2", "sequence");

/// Every stream of one aggregate type, in log order (`$2` is unused and NULL).
const SELECT_ALL_STREAMS: &str =
    select_stream!(full_metadata!(), "$2::text IS NULL", "tx_id, position");

// One statement, one round trip, no explicit transaction: all or nothing. The primary key
// refuses a concurrent append to the stream (`event_stream_sequence`); the unique index
// `event_command_once` refuses a command id that already appended, and a command id that
// was refused before writes nothing (zero rows: its refusal stands). Hashes and metadata
// columns arrive computed (chain.rs); payload and metadata arrive as the canonical JSON
// text that was hashed.
macro_rules! insert_event {
    () => {
        "INSERT INTO event (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                            payload, metadata, actor, command_id, correlation_id, effective_date, \
                            recorded_at, opens_command, prev_hash, hash) "
    };
}

const APPEND_ONE: &str = concat!(
    insert_event!(),
    "SELECT $1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8, $9, $10, $11, $12, \
            true, $13, $14 \
      WHERE NOT EXISTS (SELECT 1 FROM command_refusal WHERE command_id = $9)"
);

const APPEND_MANY: &str = concat!(
    insert_event!(),
    "SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload::jsonb, \
            e.metadata::jsonb, $8, e.command_id, e.correlation_id, e.effective_date, $12, \
            e.n = 1, e.prev_hash, e.hash \
       FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                   $9::uuid[], $10::uuid[], $11::date[], $13::bytea[], $14::bytea[]) \
            WITH ORDINALITY AS e(sequence, event_type, event_version, payload, metadata, \
                                 command_id, correlation_id, effective_date, prev_hash, hash, n) \
      WHERE NOT EXISTS (SELECT 1 FROM command_refusal WHERE command_id = ($9::uuid[])[1]) \
      ORDER BY e.n"
);

/// Streams whose last hash is remembered; beyond this the memory is simply cleared.
const HASH_CACHE_LIMIT: usize = 100_000;

type StreamKey = (&'static str, String);
type LastHashes = HashMap<StreamKey, (i64, [u8; 32])>;

impl PgEventRepository {
    pub fn new(log: EventLog) -> Self {
        Self {
            log,
            last_hash: Arc::default(),
            lean_loads: false,
        }
    }

    /// A repository for loading aggregates to decide commands: metadata is not read.
    pub fn for_commands(log: EventLog) -> Self {
        Self {
            log,
            last_hash: Arc::default(),
            lean_loads: true,
        }
    }

    async fn select<A: Aggregate>(
        &self,
        aggregate_id: &str,
        after: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let sql = if self.lean_loads {
            SELECT_STREAM_LEAN
        } else {
            SELECT_STREAM
        };
        let rows = sqlx::query(sql)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(to_i64(after)?)
            .fetch_all(self.log.pool())
            .await
            .map_err(persistence_error)?;
        if self.lean_loads {
            if let Some(last) = rows.last() {
                let sequence: i64 = last.try_get("sequence").map_err(persistence_error)?;
                let hash: Vec<u8> = last.try_get("hash").map_err(persistence_error)?;
                if let Ok(hash) = <[u8; 32]>::try_from(hash) {
                    self.remember((A::TYPE, aggregate_id.to_owned()), sequence, hash);
                }
            }
        }
        rows.into_iter()
            .map(|row| serialized_event(row).map_err(persistence_error))
            .collect()
    }

    fn remember(&self, stream: StreamKey, sequence: i64, hash: [u8; 32]) {
        if let Ok(mut cache) = self.last_hash.lock() {
            if cache.len() >= HASH_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(stream, (sequence, hash));
        }
    }

    /// The hash of event `sequence` of the stream (GENESIS before the first), from memory
    /// or the database; `None` if there is no such event.
    async fn hash_of(
        &self,
        stream: &StreamKey,
        sequence: i64,
    ) -> Result<Option<[u8; 32]>, PersistenceError> {
        if sequence == 0 {
            return Ok(Some(crate::chain::GENESIS));
        }
        let remembered = self
            .last_hash
            .lock()
            .ok()
            .and_then(|cache| cache.get(stream).copied());
        if let Some((known, hash)) = remembered {
            if known == sequence {
                return Ok(Some(hash));
            }
        }
        let hash: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM event WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(stream.0)
        .bind(&stream.1)
        .bind(sequence)
        .fetch_optional(self.log.pool())
        .await
        .map_err(persistence_error)?;
        Ok(hash.and_then(|h| <[u8; 32]>::try_from(h).ok()))
    }

    fn stream<A: Aggregate>(&self, aggregate_id: Option<String>) -> ReplayStream {
        let (mut feed, stream) = ReplayStream::new(256);
        let pool = self.log.pool().clone();
        tokio::spawn(async move {
            let sql = if aggregate_id.is_some() {
                SELECT_STREAM
            } else {
                SELECT_ALL_STREAMS
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
        let stream: StreamKey = (A::TYPE, first.aggregate_id.clone());
        let first_sequence = to_i64(first.sequence)?;
        // The previous event must exist: a hole would be refused here (and a concurrent
        // append to the same position by the primary key).
        let Some(mut prev) = self.hash_of(&stream, first_sequence - 1).await? else {
            return Err(PersistenceError::OptimisticLockError);
        };
        let recorded_at = crate::chain::truncate_to_micros(OffsetDateTime::now_utc());
        let n = events.len();
        let mut sequences = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut metadata = Vec::with_capacity(n);
        let mut command_ids = Vec::with_capacity(n);
        let mut correlation_ids = Vec::with_capacity(n);
        let mut effective_dates = Vec::with_capacity(n);
        let mut prev_hashes = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        let mut actor = None;
        for event in events {
            let sequence = to_i64(event.sequence)?;
            let split = SplitMetadata::split(&event.metadata);
            let payload = canonical_json(&event.payload);
            let hash = event_hash(
                &prev,
                &HashedFields {
                    aggregate_type: A::TYPE,
                    aggregate_id: &first.aggregate_id,
                    sequence,
                    event_type: &event.event_type,
                    event_version: &event.event_version,
                    payload: &payload,
                    metadata: &canonical_json(&split.join()),
                    recorded_at,
                },
            );
            sequences.push(sequence);
            types.push(event.event_type.as_str());
            versions.push(event.event_version.as_str());
            payloads.push(payload);
            metadata.push(canonical_json(&Value::Object(split.other)));
            command_ids.push(split.command_id);
            correlation_ids.push(split.correlation_id);
            effective_dates.push(split.effective_date);
            if actor.is_none() {
                actor = split.actor;
            }
            prev_hashes.push(prev.to_vec());
            hashes.push(hash.to_vec());
            prev = hash;
        }
        let command_id = command_ids[0];
        let query = if n == 1 {
            sqlx::query(APPEND_ONE)
                .bind(A::TYPE)
                .bind(&first.aggregate_id)
                .bind(sequences[0])
                .bind(types[0])
                .bind(versions[0])
                .bind(&payloads[0])
                .bind(&metadata[0])
                .bind(&actor)
                .bind(command_ids[0])
                .bind(correlation_ids[0])
                .bind(effective_dates[0])
                .bind(recorded_at)
                .bind(&prev_hashes[0])
                .bind(&hashes[0])
        } else {
            sqlx::query(APPEND_MANY)
                .bind(A::TYPE)
                .bind(&first.aggregate_id)
                .bind(&sequences)
                .bind(&types)
                .bind(&versions)
                .bind(&payloads)
                .bind(&metadata)
                .bind(&actor)
                .bind(&command_ids)
                .bind(&correlation_ids)
                .bind(&effective_dates)
                .bind(recorded_at)
                .bind(&prev_hashes)
                .bind(&hashes)
        };
        match query.execute(self.log.pool()).await {
            Ok(done) if done.rows_affected() == 0 => match command_id {
                Some(id) => Err(PersistenceError::UnknownError(Box::new(DuplicateCommand(
                    id,
                )))),
                None => Err(PersistenceError::UnknownError(
                    "the append wrote nothing although no command id was refused".into(),
                )),
            },
            Ok(_) => {
                self.remember(stream, sequences[n - 1], prev);
                self.log.announce();
                Ok(())
            }
            Err(error) => Err(match (command_id, constraint_of(&error)) {
                (Some(id), Some("event_command_once")) => {
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

/// A conflicting append (same stream position taken, or a hole in the stream) is an
/// optimistic-lock error and nothing else; lost connections are told apart from bugs.
pub(crate) fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("event_stream_sequence") => {
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
