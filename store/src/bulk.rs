//! Bulk append of events that were decided elsewhere: a synthetic history (`opora
//! generate`) or a migrated one, each event with its own recording instant.
//!
//! The normal append (`repository.rs`) stamps `recorded_at = now()` and writes one stream per
//! statement; here events of many streams are streamed into the log with `COPY … FROM STDIN`
//! in chunks (one transaction each), while the caller goes on producing the next chunk: the
//! hashing and serialisation happen on the caller's side, the COPY on the server's, so the
//! two cores of a small machine both work.
//!
//! What is written is exactly what `persist` would have written for the same events with
//! that `recorded_at`: the payload and the full metadata hashed as canonical JSON, the
//! metadata split into its typed columns (`chain::SplitMetadata`), `prev_hash` chained to
//! the stream's previous event. So `opora verify` checks a bulk-loaded log like any other.
//!
//! Rules the caller keeps (checked here where cheap): events of one stream come in sequence
//! order with non-decreasing `recorded_at`; a stream is new (it starts at sequence 1) unless
//! the caller hands its last sequence and hash over with [`BulkAppender::resume`]. A stream
//! the log already holds makes the chunk fail on the primary key (nothing of that chunk is
//! written). `command_id` is NULL (no command was executed) and `opens_command` true.
//!
//! Memory stays bounded: at most two chunks wait for the writer, and the chain of a stream
//! is kept only until the caller says it is complete ([`BulkAppender::close`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cqrs_es::DomainEvent;
use serde_json::{Map, Value};
use time::{Date, OffsetDateTime, UtcOffset};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chain::{
    canonical_json, event_hash, format_date, truncate_to_micros, HashedFields, SplitMetadata,
    GENESIS,
};
use crate::EventLog;

/// Rows per COPY (one transaction each): large enough that per-statement costs vanish,
/// small enough that a chunk is a few megabytes.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;

const COPY_SQL: &str = "COPY event (aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, actor, effective_date, recorded_at, opens_command, \
     prev_hash, hash) FROM STDIN";

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("{stream}: event #{sequence} is recorded before the event it follows")]
    OutOfOrder { stream: String, sequence: i64 },
    #[error("could not serialise an event of {stream}: {source}")]
    Encoding {
        stream: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the bulk writer failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the bulk writer stopped unexpectedly")]
    WriterGone,
}

/// What a bulk load wrote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BulkReport {
    pub events: u64,
    /// Streams begun by this load (sequence 1 written).
    pub streams: u64,
    pub seconds: f64,
    /// Of those, the time the caller waited for the writer (the server was the bottleneck)
    /// and the time the writer spent in `COPY`.
    pub waited_seconds: f64,
    pub copy_seconds: f64,
    /// The hash of the last event pushed (all zeros when nothing was).
    pub last_hash: [u8; 32],
}

impl BulkReport {
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Where a stream stands: its last sequence, hash and recording instant.
#[derive(Debug, Clone, Copy)]
struct Chain {
    sequence: i64,
    hash: [u8; 32],
    recorded_at: OffsetDateTime,
}

/// Streams events into the log; see the module documentation.
pub struct BulkAppender {
    log: EventLog,
    actor: String,
    chains: HashMap<(&'static str, String), Chain>,
    /// Canonical metadata text by effective date (the actor is the same for every event).
    metadata: HashMap<Option<Date>, String>,
    chunk: String,
    rows: usize,
    chunk_rows: usize,
    sender: Option<mpsc::Sender<String>>,
    writer: Option<JoinHandle<Result<(), sqlx::Error>>>,
    written: Arc<AtomicU64>,
    pushed: u64,
    streams: u64,
    last_hash: [u8; 32],
    started: Instant,
    waited: std::time::Duration,
    copy_nanos: Arc<AtomicU64>,
}

impl BulkAppender {
    /// An appender whose events carry `actor` (e.g. `system:generate`).
    pub fn new(log: &EventLog, actor: &str) -> Self {
        Self::with_chunk_rows(log, actor, DEFAULT_CHUNK_ROWS)
    }

    pub fn with_chunk_rows(log: &EventLog, actor: &str, chunk_rows: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<String>(2);
        let written = Arc::new(AtomicU64::new(0));
        let copy_nanos = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_chunks(
            log.pool().clone(),
            receiver,
            Arc::clone(&written),
            Arc::clone(&copy_nanos),
        ));
        Self {
            log: log.clone(),
            actor: actor.to_owned(),
            chains: HashMap::new(),
            metadata: HashMap::new(),
            chunk: String::with_capacity(chunk_rows * 700),
            rows: 0,
            chunk_rows: chunk_rows.max(1),
            sender: Some(sender),
            writer: Some(writer),
            written,
            pushed: 0,
            streams: 0,
            last_hash: GENESIS,
            started: Instant::now(),
            waited: std::time::Duration::ZERO,
            copy_nanos,
        }
    }

    /// Events committed so far (for a progress bar).
    pub fn written(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.written)
    }

    /// Continues a stream the log already holds, after its event `sequence` with `hash`.
    pub fn resume(
        &mut self,
        aggregate_type: &'static str,
        aggregate_id: &str,
        sequence: i64,
        hash: [u8; 32],
        recorded_at: OffsetDateTime,
    ) {
        self.chains.insert(
            (aggregate_type, aggregate_id.to_owned()),
            Chain {
                sequence,
                hash,
                recorded_at,
            },
        );
    }

    /// Forgets a stream the caller will not append to again (bounds memory).
    pub fn close(&mut self, aggregate_type: &'static str, aggregate_id: &str) {
        self.chains
            .remove(&(aggregate_type, aggregate_id.to_owned()));
    }

    /// Appends one domain event to a stream; returns its sequence. Waits only when the
    /// writer is two chunks behind.
    pub async fn push<E: DomainEvent>(
        &mut self,
        aggregate_type: &'static str,
        aggregate_id: &str,
        event: &E,
        effective_date: Option<Date>,
        recorded_at: OffsetDateTime,
    ) -> Result<i64, BulkError> {
        let payload = serde_json::to_value(event).map_err(|source| BulkError::Encoding {
            stream: format!("{aggregate_type}/{aggregate_id}"),
            source,
        })?;
        self.push_value(
            aggregate_type,
            aggregate_id,
            &event.event_type(),
            &event.event_version(),
            &payload,
            effective_date,
            recorded_at,
        )
        .await
    }

    /// Appends one already serialised event (payload as `serde_json` gives it).
    #[allow(clippy::too_many_arguments)]
    pub async fn push_value(
        &mut self,
        aggregate_type: &'static str,
        aggregate_id: &str,
        event_type: &str,
        event_version: &str,
        payload: &Value,
        effective_date: Option<Date>,
        recorded_at: OffsetDateTime,
    ) -> Result<i64, BulkError> {
        let recorded_at = truncate_to_micros(recorded_at.to_offset(UtcOffset::UTC));
        let key = (aggregate_type, aggregate_id.to_owned());
        let chain = self.chains.get(&key).copied();
        let (sequence, prev) = match chain {
            Some(chain) => {
                if recorded_at < chain.recorded_at {
                    return Err(BulkError::OutOfOrder {
                        stream: format!("{aggregate_type}/{aggregate_id}"),
                        sequence: chain.sequence + 1,
                    });
                }
                (chain.sequence + 1, chain.hash)
            }
            None => {
                self.streams += 1;
                (1, GENESIS)
            }
        };
        let actor = &self.actor;
        let metadata = self
            .metadata
            .entry(effective_date)
            .or_insert_with(|| {
                canonical_json(
                    &SplitMetadata {
                        actor: Some(actor.clone()),
                        effective_date,
                        ..SplitMetadata::default()
                    }
                    .join(),
                )
            })
            .clone();
        let payload = canonical_json(payload);
        let hash = event_hash(
            &prev,
            &HashedFields {
                aggregate_type,
                aggregate_id,
                sequence,
                event_type,
                event_version,
                payload: &payload,
                metadata: &metadata,
                recorded_at,
            },
        );
        self.chains.insert(
            key,
            Chain {
                sequence,
                hash,
                recorded_at,
            },
        );
        // One COPY text row: tab-separated, `\N` for NULL, backslashes doubled.
        let row = &mut self.chunk;
        copy_text(row, aggregate_type);
        row.push('\t');
        copy_text(row, aggregate_id);
        let _ = write!(row, "\t{sequence}\t");
        copy_text(row, event_type);
        row.push('\t');
        copy_text(row, event_version);
        row.push('\t');
        copy_text(row, &payload);
        row.push_str("\t{}\t");
        copy_text(row, &self.actor);
        row.push('\t');
        match effective_date {
            Some(date) => row.push_str(&format_date(date)),
            None => row.push_str("\\N"),
        }
        row.push('\t');
        copy_instant(row, recorded_at);
        row.push_str("\tt\t");
        copy_bytea(row, &prev);
        row.push('\t');
        copy_bytea(row, &hash);
        row.push('\n');
        self.rows += 1;
        self.pushed += 1;
        self.last_hash = hash;
        if self.rows >= self.chunk_rows {
            self.send_chunk().await?;
        }
        Ok(sequence)
    }

    async fn send_chunk(&mut self) -> Result<(), BulkError> {
        if self.rows == 0 {
            return Ok(());
        }
        let chunk = std::mem::replace(
            &mut self.chunk,
            String::with_capacity(self.chunk_rows * 700),
        );
        self.rows = 0;
        let sent = match &self.sender {
            Some(sender) => {
                let waiting = Instant::now();
                let sent = sender.send(chunk).await.is_ok();
                self.waited += waiting.elapsed();
                sent
            }
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The writer has stopped: its own error says why.
            Err(self
                .stop_writer()
                .await
                .err()
                .unwrap_or(BulkError::WriterGone))
        }
    }

    async fn stop_writer(&mut self) -> Result<(), BulkError> {
        self.sender = None;
        match self.writer.take() {
            Some(writer) => match writer.await {
                Ok(result) => result.map_err(BulkError::from),
                Err(_) => Err(BulkError::WriterGone),
            },
            None => Ok(()),
        }
    }

    /// Writes what is left, waits for the writer, and wakes the projections (this process's
    /// and, through NOTIFY, the others').
    pub async fn finish(mut self) -> Result<BulkReport, BulkError> {
        self.send_chunk().await?;
        self.stop_writer().await?;
        self.log.announce();
        crate::notify(self.log.pool()).await?;
        Ok(BulkReport {
            events: self.written.load(Ordering::Relaxed),
            streams: self.streams,
            seconds: self.started.elapsed().as_secs_f64(),
            waited_seconds: self.waited.as_secs_f64(),
            copy_seconds: self.copy_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            last_hash: self.last_hash,
        })
    }
}

async fn write_chunks(
    pool: sqlx::PgPool,
    mut chunks: mpsc::Receiver<String>,
    written: Arc<AtomicU64>,
    copy_nanos: Arc<AtomicU64>,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    while let Some(chunk) = chunks.recv().await {
        let started = Instant::now();
        let rows = chunk.bytes().filter(|b| *b == b'\n').count() as u64;
        let mut copy = conn.copy_in_raw(COPY_SQL).await?;
        if let Err(error) = copy.send(chunk.into_bytes()).await {
            let _ = copy.abort("bulk append failed").await;
            return Err(error);
        }
        copy.finish().await?;
        written.fetch_add(rows, Ordering::Relaxed);
        copy_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// A value in COPY's text format: backslash, tab, newline and carriage return escaped.
fn copy_text(out: &mut String, text: &str) {
    if !text
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `bytea` in hex form, its backslash escaped for COPY.
fn copy_bytea(out: &mut String, bytes: &[u8]) {
    out.push_str("\\\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// A UTC instant with microseconds, as PostgreSQL reads it.
fn copy_instant(out: &mut String, t: OffsetDateTime) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    );
}

/// The metadata map a bulk-appended event carries (for readers that rebuild it).
pub fn bulk_metadata(actor: &str, effective_date: Option<Date>) -> Value {
    let mut map = Map::new();
    map.insert("actor".into(), Value::String(actor.to_owned()));
    if let Some(date) = effective_date {
        map.insert("effective_date".into(), Value::String(format_date(date)));
    }
    Value::Object(map)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let mut out = String::new();
        copy_text(&mut out, "a\\b\tc\nd\re «ё»");
        assert_eq!(out, "a\\\\b\\tc\\nd\\re «ё»");
        let mut out = String::new();
        copy_bytea(&mut out, &[0, 255, 16]);
        assert_eq!(out, "\\\\x00ff10");
        let mut out = String::new();
        copy_instant(&mut out, datetime!(2024-01-09 06:05:04.000123 UTC));
        assert_eq!(out, "2024-01-09 06:05:04.000123+00");
    }

    #[test]
    fn the_metadata_hashed_is_the_one_readers_rebuild() {
        let joined = SplitMetadata {
            actor: Some("system:generate".into()),
            effective_date: Some(date!(2025 - 03 - 14)),
            ..SplitMetadata::default()
        }
        .join();
        assert_eq!(
            joined,
            bulk_metadata("system:generate", Some(date!(2025 - 03 - 14)))
        );
    }
}
