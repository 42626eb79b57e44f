//! Opora's domain: aggregates, commands, events and value types.
//!
//! This crate does no I/O and knows nothing of SQL or HTTP. Aggregates decide in `handle`
//! (writing events through cqrs-es's `EventSink`) and fold in `apply`, which cannot fail.

pub mod reference;
pub mod upcast;

use time::Date;

/// A command that may carry the date its fact happened (the effective date). The command
/// bus copies it into the metadata of every event the command produces, so that the log
/// keeps both the effective date and the moment of recording.
pub trait DatedCommand {
    fn effective_date(&self) -> Option<Date> {
        None
    }
}

/// Trims and collapses inner whitespace; returns `None` for an empty string.
pub(crate) fn clean_text(raw: &str) -> Option<String> {
    let joined = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}
