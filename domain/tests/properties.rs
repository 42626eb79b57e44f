//! Property-based tests of the parsers people type into (proptest): whatever the input,
//! a parser answers — it never panics — and what it accepts is what was meant (a value
//! written out the way the pages write it parses back to itself).

use opora_domain::access::{Login, Text};
use opora_domain::money::Rubles;
use opora_domain::parse_date;
use opora_domain::reference::{PlaceName, RegionCode};
use opora_domain::weekly::parse_clock;
use proptest::prelude::*;
use time::{Date, Month};

/// Any text, weighted towards what breaks parsers: digits and separators, Cyrillic,
/// whitespace of every kind, formula and markup characters, very long runs.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9 .,:\\-−–₽рубЁёА-я\u{a0}\u{202f}\t\n]{0,40}",
        "[=+@\\-<>\"'&;%()\\\\]{0,20}[a-zA-Z0-9 ]{0,20}",
        "[0-9]{15,400}",
    ]
}

fn date() -> impl Strategy<Value = Date> {
    (1900_i32..2100, 1_u8..=12, 1_u8..=31).prop_filter_map("a calendar date", |(y, m, d)| {
        Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_parser_panics_on_any_input(raw in hostile()) {
        let _ = Rubles::parse_amount(&raw);
        let _ = parse_date(&raw);
        let _ = parse_clock(&raw);
        let _ = RegionCode::parse(&raw);
        let _ = PlaceName::parse(&raw);
        let _ = Login::parse(&raw);
        let _ = Text::parse(&raw);
    }

    #[test]
    fn an_amount_written_as_the_pages_write_it_reads_back(kopecks in 1_i64..=Rubles::MAX_AID.kopecks()) {
        let amount = Rubles::from_kopecks(kopecks);
        prop_assert_eq!(Rubles::parse_amount(&amount.to_string()), Ok(amount));
        // As people type it: no grouping, a dot or a comma, spaces between groups.
        let plain = format!("{}.{:02}", kopecks / 100, kopecks % 100);
        prop_assert_eq!(Rubles::parse_amount(&plain), Ok(amount));
        prop_assert_eq!(Rubles::parse_amount(&plain.replace('.', ",")), Ok(amount));
    }

    #[test]
    fn an_accepted_amount_is_positive_and_within_the_limit(raw in hostile()) {
        if let Ok(amount) = Rubles::parse_amount(&raw) {
            prop_assert!(amount.kopecks() > 0);
            prop_assert!(amount <= Rubles::MAX_AID);
        }
    }

    #[test]
    fn a_date_reads_back_in_both_spellings(d in date()) {
        let russian = format!("{:02}.{:02}.{}", d.day(), u8::from(d.month()), d.year());
        prop_assert_eq!(parse_date(&russian), Some(d));
        prop_assert_eq!(parse_date(&d.to_string()), Some(d));
        prop_assert_eq!(parse_date(&format!("  {russian} ")), Some(d));
    }

    #[test]
    fn a_clock_reads_back_and_nothing_past_midnight_is_accepted(h in 0_u16..100, m in 0_u16..100) {
        let parsed = parse_clock(&format!("{h:02}:{m:02}"));
        if h < 24 && m < 60 {
            prop_assert_eq!(parsed, Some(h * 60 + m));
        } else {
            prop_assert_eq!(parsed, None);
        }
    }

    #[test]
    fn accepted_text_is_trimmed_bounded_and_stable(raw in hostile()) {
        if let Ok(name) = PlaceName::parse(&raw) {
            prop_assert_eq!(name.as_str().trim(), name.as_str());
            prop_assert!(!name.as_str().contains("  "));
            prop_assert_eq!(PlaceName::parse(name.as_str()), Ok(name.clone()));
        }
        if let Some(text) = Text::parse(&raw) {
            prop_assert!(text.as_str().chars().count() <= Text::MAX_CHARS);
            prop_assert_eq!(Text::parse(text.as_str()), Some(text.clone()));
        }
        if let Ok(code) = RegionCode::parse(&raw) {
            prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
        if let Ok(login) = Login::parse(&raw) {
            prop_assert_eq!(login.as_str(), login.as_str().to_lowercase());
            prop_assert_eq!(Login::parse(login.as_str()), Ok(login.clone()));
        }
    }
}
