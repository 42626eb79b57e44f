//! The hash chain: the one definition of what an event's hash covers, used when appending
//! (repository.rs) and when verifying (verify.rs).
//!
//! `hash = sha256(prev_hash || fields)`, where the fields are joined with U+001F:
//! aggregate type, aggregate id, sequence, event type, event version, payload and metadata as
//! canonical JSON (object keys sorted, no whitespace), and `recorded_at` in UTC with
//! microseconds. Canonical JSON is computed from the parsed value, so it is the same before
//! the payload is stored as `jsonb` and after it is read back.

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `prev_hash` of the first event of every stream.
pub const GENESIS: [u8; 32] = [0; 32];

#[derive(Clone, Copy)]
pub struct HashedFields<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
    pub recorded_at: OffsetDateTime,
}

pub fn event_hash(prev_hash: &[u8], fields: &HashedFields<'_>) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(prev_hash);
    let sequence = fields.sequence.to_string();
    let payload = canonical_json(fields.payload);
    let metadata = canonical_json(fields.metadata);
    let recorded_at = instant(fields.recorded_at);
    let parts: [&str; 8] = [
        fields.aggregate_type,
        fields.aggregate_id,
        &sequence,
        fields.event_type,
        fields.event_version,
        &payload,
        &metadata,
        &recorded_at,
    ];
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            digest.update([0x1f]);
        }
        digest.update(part.as_bytes());
    }
    digest.finalize().into()
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json's map keeps insertion order or sorts, depending on a feature another crate
    // may enable; inserting in sorted order gives sorted output either way.
    sorted(value).to_string()
}

/// An instant as stored by PostgreSQL: UTC, microseconds.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.replace_nanosecond(micros).unwrap_or(t)
}

fn instant(t: OffsetDateTime) -> String {
    let utc = truncate_to_micros(t.to_offset(time::UtcOffset::UTC));
    // RFC 3339 with exactly six fractional digits, e.g. 2026-11-21T17:09:00.123456Z.
    let base = utc
        .replace_nanosecond(0)
        .unwrap_or(utc)
        .format(&Rfc3339)
        .unwrap_or_default();
    let without_zone = base.trim_end_matches('Z');
    format!("{without_zone}.{:06}Z", utc.nanosecond() / 1_000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "ё"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"ё","d":[1,{"y":1,"z":0}]},"b":1}"#
        );
    }

    #[test]
    fn instants_have_six_fractional_digits_in_utc() {
        assert_eq!(
            instant(datetime!(2026-11-21 20:09:00.1234567 +3)),
            "2026-11-21T17:09:00.123456Z"
        );
        assert_eq!(
            instant(datetime!(2026-01-01 00:00:00 UTC)),
            "2026-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let payload = json!({"RegionRenamed": {"name": "А"}});
        let other_payload = json!({"RegionRenamed": {"name": "Б"}});
        let metadata = json!({});
        let base = HashedFields {
            aggregate_type: "Region",
            aggregate_id: "16",
            sequence: 2,
            event_type: "RegionRenamed",
            event_version: "1.0",
            payload: &payload,
            metadata: &metadata,
            recorded_at: datetime!(2026-11-21 17:09:00 UTC),
        };
        let h = event_hash(&GENESIS, &base);
        assert_ne!(h, event_hash(&[1; 32], &base));
        assert_ne!(
            h,
            event_hash(
                &GENESIS,
                &HashedFields {
                    payload: &other_payload,
                    ..base
                }
            )
        );
        assert_ne!(
            h,
            event_hash(
                &GENESIS,
                &HashedFields {
                    sequence: 3,
                    ..base
                }
            )
        );
    }
}
