//! `opora verify`: recompute every hash of the log and report the first event that is not
//! what was written.
//!
//! Each hash is recomputed in Rust from the stored columns with `chain::event_hash`, the
//! same definition the append used; nothing in the database is trusted to do it.
//! Checks, per stream, in sequence order:
//! - sequences run 1, 2, 3, … (a hole means deleted events);
//! - each `prev_hash` is the `hash` of the event before it;
//! - each `hash` is sha256(prev_hash || input);
//! - the stream's last event is the one the `stream_head` projection saw (a deleted or
//!   rewritten tail, which a per-stream chain alone cannot show).
//!
//! "First" means first in the global order (tx_id, position).

use futures::TryStreamExt;
use sqlx::{PgPool, Row};

use crate::chain::{canonical_json, event_hash, HashedFields, SplitMetadata, GENESIS};
use crate::log::LogPosition;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Global position of the event concerned (for a missing event: of the one after it,
    /// or of the stream's last event when its tail is missing).
    pub at: LogPosition,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Events `from..=to` of the stream are missing.
    Missing { from: i64, to: i64 },
    /// The event's content no longer matches its hash.
    ContentChanged,
    /// The event's link to the previous event is broken.
    ChainBroken,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stream = format!("{}/{}", self.aggregate_type, self.aggregate_id);
        match &self.problem {
            Problem::Missing { from, to } if from == to => write!(
                f,
                "missing event: {stream} #{from} is absent (next known event at {})",
                self.at
            ),
            Problem::Missing { from, to } => write!(
                f,
                "missing events: {stream} #{from}–#{to} are absent (near {})",
                self.at
            ),
            Problem::ContentChanged => write!(
                f,
                "tampered event: {stream} #{} at {} does not match its hash",
                self.sequence, self.at
            ),
            Problem::ChainBroken => write!(
                f,
                "tampered event: {stream} #{} at {} is not linked to the event before it",
                self.sequence, self.at
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub events: u64,
    pub streams: u64,
    /// The earliest problem in global order, if any.
    pub first_problem: Option<Finding>,
    /// How many problems were found in all.
    pub problems: u64,
}

pub async fn verify(pool: &PgPool) -> Result<Report, sqlx::Error> {
    let heads: Heads = sqlx::query(
        "SELECT aggregate_type, aggregate_id, last_sequence, last_hash FROM stream_head.stream",
    )
    .try_map(|row: sqlx::postgres::PgRow| {
        Ok((
            (row.try_get("aggregate_type")?, row.try_get("aggregate_id")?),
            (row.try_get("last_sequence")?, row.try_get("last_hash")?),
        ))
    })
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();

    let mut rows = sqlx::query(
        "SELECT tx_id, position, aggregate_type, aggregate_id, sequence, event_type, \
                event_version, payload, metadata, actor, command_id, correlation_id, \
                effective_date, recorded_at, prev_hash, hash \
           FROM event ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch(pool);

    let mut report = Report {
        events: 0,
        streams: 0,
        first_problem: None,
        problems: 0,
    };
    let mut stream: Option<(String, String)> = None;
    let mut seen = std::collections::HashSet::new();
    let mut expected_sequence = 1_i64;
    let mut previous_hash: Vec<u8> = GENESIS.to_vec();
    let mut last_at = LogPosition::default();

    let found = |finding: Finding, report: &mut Report| {
        report.problems += 1;
        let earlier = report
            .first_problem
            .as_ref()
            .is_none_or(|first| finding.at < first.at);
        if earlier {
            report.first_problem = Some(finding);
        }
    };

    while let Some(row) = rows.try_next().await? {
        let aggregate_type: String = row.try_get("aggregate_type")?;
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let at = LogPosition {
            tx_id: row.try_get("tx_id")?,
            position: row.try_get("position")?,
        };
        let key = (aggregate_type.clone(), aggregate_id.clone());
        if stream.as_ref() != Some(&key) {
            if let Some((t, i)) = stream.take() {
                let tail = Tail {
                    sequence: expected_sequence - 1,
                    hash: &previous_hash,
                    at: last_at,
                };
                check_tail(&heads, t, i, tail, &mut |f| found(f, &mut report));
            }
            seen.insert(key.clone());
            stream = Some(key);
            report.streams += 1;
            expected_sequence = 1;
            previous_hash = GENESIS.to_vec();
        }
        report.events += 1;
        let sequence: i64 = row.try_get("sequence")?;
        let prev_hash: Vec<u8> = row.try_get("prev_hash")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        if sequence != expected_sequence {
            found(
                Finding {
                    at,
                    aggregate_type: aggregate_type.clone(),
                    aggregate_id: aggregate_id.clone(),
                    sequence,
                    problem: Problem::Missing {
                        from: expected_sequence,
                        to: sequence - 1,
                    },
                },
                &mut report,
            );
        } else if prev_hash != previous_hash {
            found(
                Finding {
                    at,
                    aggregate_type: aggregate_type.clone(),
                    aggregate_id: aggregate_id.clone(),
                    sequence,
                    problem: Problem::ChainBroken,
                },
                &mut report,
            );
        }
        let event_type: String = row.try_get("event_type")?;
        let event_version: String = row.try_get("event_version")?;
        let payload: serde_json::Value = row.try_get("payload")?;
        let other: serde_json::Value = row.try_get("metadata")?;
        let metadata = SplitMetadata {
            actor: row.try_get("actor")?,
            command_id: row.try_get("command_id")?,
            correlation_id: row.try_get("correlation_id")?,
            effective_date: row.try_get("effective_date")?,
            other: other.as_object().cloned().unwrap_or_default(),
        }
        .join();
        let recomputed = event_hash(
            &prev_hash,
            &HashedFields {
                aggregate_type: &aggregate_type,
                aggregate_id: &aggregate_id,
                sequence,
                event_type: &event_type,
                event_version: &event_version,
                payload: &canonical_json(&payload),
                metadata: &canonical_json(&metadata),
                recorded_at: row.try_get("recorded_at")?,
            },
        );
        if recomputed.as_slice() != hash.as_slice() {
            found(
                Finding {
                    at,
                    aggregate_type,
                    aggregate_id,
                    sequence,
                    problem: Problem::ContentChanged,
                },
                &mut report,
            );
        }
        expected_sequence = sequence + 1;
        previous_hash = hash;
        last_at = at;
    }
    if let Some((t, i)) = stream.take() {
        let tail = Tail {
            sequence: expected_sequence - 1,
            hash: &previous_hash,
            at: last_at,
        };
        check_tail(&heads, t, i, tail, &mut |f| found(f, &mut report));
    }
    // Streams the projection saw but the log has lost entirely.
    for ((aggregate_type, aggregate_id), (last, _)) in &heads {
        if !seen.contains(&(aggregate_type.clone(), aggregate_id.clone())) {
            found(
                Finding {
                    at: LogPosition::default(),
                    aggregate_type: aggregate_type.clone(),
                    aggregate_id: aggregate_id.clone(),
                    sequence: 1,
                    problem: Problem::Missing { from: 1, to: *last },
                },
                &mut report,
            );
        }
    }
    Ok(report)
}

type Heads = std::collections::HashMap<(String, String), (i64, Vec<u8>)>;

/// The last event of a stream as read from the log.
struct Tail<'a> {
    sequence: i64,
    hash: &'a [u8],
    at: LogPosition,
}

fn check_tail(
    heads: &Heads,
    aggregate_type: String,
    aggregate_id: String,
    tail: Tail<'_>,
    found: &mut dyn FnMut(Finding),
) {
    let key = (aggregate_type, aggregate_id);
    let Some((head_sequence, head_hash)) = heads.get(&key) else {
        return;
    };
    let problem = if *head_sequence > tail.sequence {
        Problem::Missing {
            from: tail.sequence + 1,
            to: *head_sequence,
        }
    } else if *head_sequence == tail.sequence && head_hash.as_slice() != tail.hash {
        Problem::ContentChanged
    } else {
        // The log is ahead of the projection (or equal): nothing to say.
        return;
    };
    let sequence = match problem {
        Problem::Missing { from, .. } => from,
        _ => tail.sequence,
    };
    found(Finding {
        at: tail.at,
        aggregate_type: key.0,
        aggregate_id: key.1,
        sequence,
        problem,
    });
}
