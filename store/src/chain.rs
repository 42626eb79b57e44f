//! The hash chain: the one definition of what an event's hash covers, used when appending
//! (repository.rs) and when verifying (verify.rs).
//!
//! `hash = sha256(prev_hash || fields)`, where the fields are joined with U+001F:
//! aggregate type, aggregate id, sequence, event type, event version, payload and metadata as
//! canonical JSON (object keys sorted, no whitespace), and `recorded_at` in UTC with
//! microseconds. Canonical JSON is computed from the parsed value, so it is the same before
//! the payload is stored as `jsonb` and after it is read back.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::bus::{META_ACTOR, META_COMMAND_ID, META_CORRELATION_ID, META_EFFECTIVE_DATE};

/// `prev_hash` of the first event of every stream.
pub const GENESIS: [u8; 32] = [0; 32];

#[derive(Clone, Copy)]
pub struct HashedFields<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// Canonical JSON (`canonical_json`) of the payload and of the full metadata.
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at: OffsetDateTime,
}

pub fn event_hash(prev_hash: &[u8], fields: &HashedFields<'_>) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(prev_hash);
    let sequence = fields.sequence.to_string();
    let recorded_at = instant(fields.recorded_at);
    let parts: [&str; 8] = [
        fields.aggregate_type,
        fields.aggregate_id,
        &sequence,
        fields.event_type,
        fields.event_version,
        fields.payload,
        fields.metadata,
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

/// JSON with object keys sorted at every level and no insignificant whitespace. Written
/// directly (no copy of the value), as it is on the append path of every event.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    write_canonical(out, item);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Event metadata as stored: the keys Opora knows in typed columns, anything else in the
/// `metadata` jsonb (usually empty). `join` rebuilds the full map; the hash covers it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitMetadata {
    pub actor: Option<String>,
    pub command_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    pub effective_date: Option<Date>,
    pub other: Map<String, Value>,
}

const DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

impl SplitMetadata {
    /// Known keys whose values parse go to columns; everything else stays as it was.
    pub fn split(full: &Value) -> Self {
        let mut split = Self::default();
        let Some(map) = full.as_object() else {
            return split;
        };
        for (key, value) in map {
            let text = value.as_str();
            let kept = match key.as_str() {
                META_ACTOR => text.map(|t| split.actor = Some(t.to_owned())),
                META_COMMAND_ID => text
                    .and_then(|t| Uuid::parse_str(t).ok())
                    .map(|u| split.command_id = Some(u)),
                META_CORRELATION_ID => text
                    .and_then(|t| Uuid::parse_str(t).ok())
                    .map(|u| split.correlation_id = Some(u)),
                META_EFFECTIVE_DATE => text
                    .and_then(|t| Date::parse(t, DATE).ok())
                    .map(|d| split.effective_date = Some(d)),
                _ => None,
            };
            if kept.is_none() {
                split.other.insert(key.clone(), value.clone());
            }
        }
        split
    }

    /// The full metadata, with the known keys in their canonical text form.
    pub fn join(&self) -> Value {
        let mut map = self.other.clone();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                map.insert(key.to_owned(), Value::String(value));
            }
        };
        put(META_ACTOR, self.actor.clone());
        put(META_COMMAND_ID, self.command_id.map(|u| u.to_string()));
        put(
            META_CORRELATION_ID,
            self.correlation_id.map(|u| u.to_string()),
        );
        put(
            META_EFFECTIVE_DATE,
            self.effective_date.and_then(|d| d.format(DATE).ok()),
        );
        Value::Object(map)
    }
}

/// The date format of the `effective_date` metadata key.
pub fn format_date(date: Date) -> String {
    date.format(DATE).unwrap_or_default()
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

    proptest::proptest! {
        /// What verify reads back (the stored JSON, parsed again) hashes as what was
        /// appended, for any number: a phone's coordinates have 17 significant digits, which
        /// serde_json parses exactly only with its `float_roundtrip` feature.
        #[test]
        fn canonical_json_of_any_number_survives_a_round_trip(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO, n in proptest::prelude::any::<i64>()) {
            let value = json!({"latitude": x, "n": n, "nested": [x, {"y": x}]});
            let written = canonical_json(&value);
            let read: Value = serde_json::from_str(&written).unwrap();
            proptest::prop_assert_eq!(canonical_json(&read), written);
        }
    }

    #[test]
    fn canonical_json_of_a_phones_coordinates_survives_a_round_trip() {
        let value = json!({"latitude": 55.023461537465444_f64, "longitude": 73.28544830230823_f64});
        let written = canonical_json(&value);
        let read: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(canonical_json(&read), written);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "ё"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"ё","d":[1,{"y":1,"z":0}]},"b":1}"#
        );
    }

    #[test]
    fn metadata_splits_into_columns_and_joins_back() {
        let full = json!({
            "actor": "user:1",
            "command_id": "0192F5A0-0000-7000-8000-000000000001",
            "correlation_id": "not a uuid",
            "effective_date": "2025-03-14",
            "ip": "10.0.0.1"
        });
        let split = SplitMetadata::split(&full);
        assert_eq!(split.actor.as_deref(), Some("user:1"));
        assert!(split.command_id.is_some());
        assert_eq!(split.correlation_id, None);
        assert_eq!(split.other.len(), 2, "unparsable and unknown keys are kept");
        let joined = split.join();
        assert_eq!(joined["command_id"], "0192f5a0-0000-7000-8000-000000000001");
        assert_eq!(joined["correlation_id"], "not a uuid");
        assert_eq!(joined["effective_date"], "2025-03-14");
        assert_eq!(SplitMetadata::split(&joined), split, "idempotent");
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
        let payload = canonical_json(&json!({"RegionRenamed": {"name": "А"}}));
        let other_payload = canonical_json(&json!({"RegionRenamed": {"name": "Б"}}));
        let metadata = "{}";
        let base = HashedFields {
            aggregate_type: "Region",
            aggregate_id: "16",
            sequence: 2,
            event_type: "RegionRenamed",
            event_version: "1.0",
            payload: &payload,
            metadata,
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
