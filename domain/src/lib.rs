//! Opora's domain: aggregates, commands, events and value types.
//!
//! This crate does no I/O and knows nothing of SQL or HTTP. Aggregates decide in `handle`
//! (writing events through cqrs-es's `EventSink`) and fold in `apply`, which cannot fail.

pub mod access;
pub mod aid;
pub mod case;
pub mod consilium;
pub mod family;
pub mod money;
pub mod organisation;
pub mod person;
pub mod reference;
pub mod signal;
pub mod upcast;
pub mod weekly;

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

/// A date typed by a person: `ДД.ММ.ГГГГ` (as Russians write it) or ISO `ГГГГ-ММ-ДД` (as a
/// date input sends it).
pub fn parse_date(raw: &str) -> Option<Date> {
    let raw = raw.trim();
    let (day, month, year) = if let Some((y, rest)) = raw.split_once('-') {
        let (m, d) = rest.split_once('-')?;
        (d, m, y)
    } else {
        let mut parts = raw.split('.');
        let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        (d, m, y)
    };
    if year.len() != 4 || day.is_empty() || month.is_empty() || day.len() > 2 || month.len() > 2 {
        return None;
    }
    let year: i32 = year.parse().ok()?;
    let month: u8 = month.parse().ok()?;
    let day: u8 = day.parse().ok()?;
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}

/// `DD.MM.YYYY`.
pub fn format_date(date: Date) -> String {
    format!(
        "{:02}.{:02}.{:04}",
        date.day(),
        date.month() as u8,
        date.year()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod date_tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn dates_are_read_as_russians_and_browsers_write_them() {
        assert_eq!(parse_date("05.03.2015"), Some(date!(2015 - 03 - 05)));
        assert_eq!(parse_date("5.3.2015"), Some(date!(2015 - 03 - 05)));
        assert_eq!(parse_date("2015-03-05"), Some(date!(2015 - 03 - 05)));
        assert_eq!(parse_date("31.02.2015"), None);
        assert_eq!(parse_date("05.03.15"), None);
        assert_eq!(parse_date("завтра"), None);
        assert_eq!(format_date(date!(2015 - 03 - 05)), "05.03.2015");
    }
}
