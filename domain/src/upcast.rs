//! Upcasters: old event versions are rewritten to the current shape on read, so that
//! aggregates and projections only ever see the current version. The log itself is never
//! rewritten.

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster};
use serde_json::Value;

use crate::reference::MunicipalityKind;

/// Every upcaster of every aggregate. Each one only touches its own event type.
pub fn all() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(municipality_registered_v1_to_v2())]
}

/// `MunicipalityRegistered` 1.0 had no `kind`: the first seed only knew names. Version 2.0
/// records the kind of municipal formation; for old events it is inferred from the name,
/// the same rule the first seed's operators used by hand.
pub fn municipality_registered_v1_to_v2() -> SemanticVersionEventUpcaster {
    SemanticVersionEventUpcaster::new(
        "MunicipalityRegistered",
        "2.0",
        Box::new(|mut payload: Value| {
            if let Some(body) = payload
                .get_mut("MunicipalityRegistered")
                .and_then(Value::as_object_mut)
            {
                if !body.contains_key("kind") {
                    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
                    let kind = MunicipalityKind::infer_from_name(name);
                    body.insert("kind".into(), Value::String(kind.code().into()));
                }
            }
            payload
        }),
    )
}
