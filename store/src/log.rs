//! Reading the global log in order, without ever skipping an event.
//!
//! The order is (tx_id, position). A batch only holds events whose writing transaction id
//! is below the xmin of the reading statement's snapshot: every transaction below xmin has
//! finished, so no event can later appear before the last one read. An event written by a
//! transaction still open is simply read on a later call, after it commits.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::DomainEvent;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::{Date, OffsetDateTime};

/// A place in the global log: the event at (tx_id, position) and everything before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub tx_id: i64,
    pub position: i64,
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.tx_id, self.position)
    }
}

/// An event as read from the global log, payload still undecoded.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub at: LogPosition,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Box<RawValue>,
    /// Metadata keys other than the typed ones below (usually none).
    pub metadata: Box<RawValue>,
    pub actor: Option<String>,
    pub command_id: Option<uuid::Uuid>,
    pub correlation_id: Option<uuid::Uuid>,
    pub recorded_at: OffsetDateTime,
    pub effective_date: Option<Date>,
    pub hash: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("event {at} ({event_type} {event_version}) cannot be read: {source}")]
pub struct DecodeError {
    pub at: LogPosition,
    pub event_type: String,
    pub event_version: String,
    #[source]
    pub source: serde_json::Error,
}

impl RecordedEvent {
    /// Decodes the payload into the current version of the event, upcasting old versions.
    pub fn decode<E: DomainEvent>(
        &self,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> Result<E, DecodeError> {
        let error = |source| DecodeError {
            at: self.at,
            event_type: self.event_type.clone(),
            event_version: self.event_version.clone(),
            source,
        };
        let needs_upcast = upcasters
            .iter()
            .any(|u| u.can_upcast(&self.event_type, &self.event_version));
        if !needs_upcast {
            return serde_json::from_str(self.payload.get()).map_err(error);
        }
        let payload: Value = serde_json::from_str(self.payload.get()).map_err(error)?;
        let serialized = SerializedEvent::new(
            self.aggregate_id.clone(),
            usize::try_from(self.sequence).unwrap_or_default(),
            self.aggregate_type.clone(),
            self.event_type.clone(),
            self.event_version.clone(),
            payload,
            Value::Null,
        );
        let upcast = upcasters.iter().fold(serialized, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        });
        serde_json::from_value(upcast.payload).map_err(error)
    }
}

const COLUMNS: &str = "tx_id, position, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, actor, command_id, correlation_id, recorded_at, \
     effective_date, hash";

/// The next `limit` events after `after`, of finished transactions only.
pub async fn read_after(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM event \
          WHERE (tx_id, position) > ($1, $2) \
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
          ORDER BY tx_id, position LIMIT $3"
    ))
    .bind(after.tx_id)
    .bind(after.position)
    .bind(limit)
    .try_map(recorded_event)
    .fetch_all(conn)
    .await
}

/// As [`read_after`] for a reader that wants only events of some aggregate types: the next
/// `limit` events of finished transactions are passed over, and those of `types` among them
/// returned, with the position of the last event passed over and how many were passed
/// (`None`: nothing new). The second statement sees every event up to that position, as the
/// first did: they are all below the first statement's snapshot xmin.
pub async fn read_window(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
    types: &[&str],
) -> Result<(Vec<RecordedEvent>, Option<(LogPosition, i64)>), sqlx::Error> {
    let end: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT tx_id, position, count(*) OVER () FROM ( \
            SELECT tx_id, position FROM event \
             WHERE (tx_id, position) > ($1, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY tx_id, position LIMIT $3) AS passed \
          ORDER BY tx_id DESC, position DESC LIMIT 1",
    )
    .bind(after.tx_id)
    .bind(after.position)
    .bind(limit)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((tx_id, position, passed)) = end else {
        return Ok((Vec::new(), None));
    };
    // The window is read along the global order (the LIMIT, exactly its size, makes the
    // planner walk that index) and filtered as it goes; a plain `aggregate_type = ANY`
    // would have it combine the stream index, scanning every event of those types.
    let events = sqlx::query(&format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM event \
          WHERE (tx_id, position) > ($1, $2) AND (tx_id, position) <= ($3, $4) \
          ORDER BY tx_id, position LIMIT $5) AS passed \
          WHERE aggregate_type = ANY($6)"
    ))
    .bind(after.tx_id)
    .bind(after.position)
    .bind(tx_id)
    .bind(position)
    .bind(passed)
    .bind(types)
    .try_map(recorded_event)
    .fetch_all(conn)
    .await?;
    Ok((events, Some((LogPosition { tx_id, position }, passed))))
}

/// The last committed event in log order, as this statement's snapshot sees it.
pub async fn head(conn: &mut PgConnection) -> Result<Option<LogPosition>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id, position FROM event ORDER BY tx_id DESC, position DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(tx_id, position)| LogPosition { tx_id, position }))
}

/// How far `after` is behind the log: events not yet read (up to `cap`, to bound the cost)
/// and the age of the oldest of them.
pub async fn lag(
    conn: &mut PgConnection,
    after: LogPosition,
    cap: i64,
) -> Result<(i64, f64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS behind, \
                coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float8 AS seconds \
           FROM (SELECT recorded_at FROM event WHERE (tx_id, position) > ($1, $2) \
                  ORDER BY tx_id, position LIMIT $3) AS pending",
    )
    .bind(after.tx_id)
    .bind(after.position)
    .bind(cap)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("behind")?, row.try_get("seconds")?))
}

fn recorded_event(row: PgRow) -> Result<RecordedEvent, sqlx::Error> {
    let payload: sqlx::types::Json<Box<RawValue>> = row.try_get("payload")?;
    Ok(RecordedEvent {
        at: LogPosition {
            tx_id: row.try_get("tx_id")?,
            position: row.try_get("position")?,
        },
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: payload.0,
        metadata: row
            .try_get::<sqlx::types::Json<Box<RawValue>>, _>("metadata")?
            .0,
        actor: row.try_get("actor")?,
        command_id: row.try_get("command_id")?,
        correlation_id: row.try_get("correlation_id")?,
        recorded_at: row.try_get("recorded_at")?,
        effective_date: row.try_get("effective_date")?,
        hash: row.try_get("hash")?,
    })
}
