//! The `stream_head` projection: the last sequence and hash of every stream, as the runner
//! saw them. `opora verify` checks the log against it, which finds a deleted or rewritten
//! last event. It is the log's witness, so it is never rebuilt from the log.

use std::collections::HashMap;

use async_trait::async_trait;
use opora_store::RecordedEvent;
use sqlx::PgConnection;

use crate::{Projection, ProjectionError};

pub struct StreamHead;

#[async_trait]
impl Projection for StreamHead {
    fn name(&self) -> &'static str {
        "stream_head"
    }

    fn rebuildable(&self) -> bool {
        false
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // Events arrive in log order, so the last one seen per stream is its head.
        let mut heads: HashMap<(&str, &str), (i64, &[u8])> = HashMap::new();
        for event in events {
            heads.insert(
                (&event.aggregate_type, &event.aggregate_id),
                (event.sequence, &event.hash),
            );
        }
        let mut types = Vec::with_capacity(heads.len());
        let mut ids = Vec::with_capacity(heads.len());
        let mut sequences = Vec::with_capacity(heads.len());
        let mut hashes = Vec::with_capacity(heads.len());
        for ((aggregate_type, aggregate_id), (sequence, hash)) in heads {
            types.push(aggregate_type);
            ids.push(aggregate_id);
            sequences.push(sequence);
            hashes.push(hash);
        }
        sqlx::query(
            "INSERT INTO stream AS s (aggregate_type, aggregate_id, last_sequence, last_hash) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[]) \
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
               SET last_sequence = excluded.last_sequence, last_hash = excluded.last_hash \
               WHERE s.last_sequence < excluded.last_sequence",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .bind(&hashes)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
