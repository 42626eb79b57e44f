//! One translation layer for every text a user sees: Fluent messages in `locales/ru` (the
//! default) and `locales/en`, with CLDR plural rules (Russian one/few/many), plus the
//! formats of dates (`DD.MM.YYYY`), times (in the region's own zone) and rubles.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader};
use time::OffsetDateTime;

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "../locales",
        fallback_language: "ru",
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

/// The cookie that keeps the chosen language.
pub const LANG_COOKIE: &str = "lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    Ru,
    En,
}

impl Lang {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "ru" => Some(Self::Ru),
            "en" => Some(Self::En),
            _ => None,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Self::Ru => "ru",
            Self::En => "en",
        }
    }
    fn id(self) -> LanguageIdentifier {
        match self {
            Self::Ru => fluent_templates::langid!("ru"),
            Self::En => fluent_templates::langid!("en"),
        }
    }
    /// From the request's `lang` cookie; Russian when absent.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == LANG_COOKIE)
            .and_then(|(_, value)| Self::parse(value))
            .unwrap_or_default()
    }
    /// For the JSON API: the `lang` cookie, else the first of `Accept-Language` that Opora
    /// speaks; Russian when neither says.
    pub fn from_api_headers(headers: &axum::http::HeaderMap) -> Self {
        let cookie = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains(LANG_COOKIE));
        if cookie {
            return Self::from_headers(headers);
        }
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter_map(|tag| {
                let tag = tag.split(';').next()?.trim();
                Self::parse(tag.split('-').next()?)
            })
            .next()
            .unwrap_or_default()
    }
}

/// A number that selects a plural form.
pub trait Count {
    fn count(&self) -> i64;
}

impl Count for i64 {
    fn count(&self) -> i64 {
        *self
    }
}

impl Count for usize {
    fn count(&self) -> i64 {
        i64::try_from(*self).unwrap_or(i64::MAX)
    }
}

impl<T: Count> Count for &T {
    fn count(&self) -> i64 {
        (**self).count()
    }
}

/// Translations for one request's language. Cheap to copy into every template.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    pub fn new(lang: Lang) -> Self {
        Self { lang }
    }

    /// The message `key`.
    pub fn t(&self, key: &str) -> String {
        LOCALES.lookup(&self.lang.id(), key)
    }

    /// The message `key`, if there is one.
    pub fn try_t(&self, key: &str) -> Option<String> {
        LOCALES.try_lookup(&self.lang.id(), key)
    }

    /// The message `key` with named arguments (numbers select plural forms).
    pub fn with(&self, key: &str, args: &[(&'static str, FluentValue<'static>)]) -> String {
        let args: HashMap<Cow<'static, str>, FluentValue<'static>> = args
            .iter()
            .map(|(name, value)| (Cow::Borrowed(*name), value.clone()))
            .collect();
        LOCALES.lookup_with_args(&self.lang.id(), key, &args)
    }

    /// The message `key` with `$count` = `n`: "3 человека", "5 человек".
    pub fn count(&self, key: &str, n: impl Count) -> String {
        self.with(key, &[("count", FluentValue::from(n.count()))])
    }

    /// The message `prefix-code`: the label of a value of a closed list.
    pub fn of(&self, prefix: &str, code: &str) -> String {
        self.t(&format!("{prefix}-{code}"))
    }

    /// The message `key` with one text argument `$value`.
    pub fn arg(&self, key: &str, value: &str) -> String {
        self.with(key, &[("value", FluentValue::from(value.to_owned()))])
    }

    /// `DD.MM.YYYY`.
    pub fn date(&self, date: &time::Date) -> String {
        opora_domain::format_date(*date)
    }

    /// `DD.MM.YYYY HH:MM` in the IANA zone `zone` (the region's), or Moscow time when the
    /// zone is unknown; the zone's abbreviation follows when it is not Moscow's.
    pub fn time_in(&self, at: &OffsetDateTime, zone: &str) -> String {
        local_time(at, zone)
    }

    pub fn rubles(&self, kopecks: &i64) -> String {
        opora_domain::money::Rubles::from_kopecks(*kopecks).to_string()
    }

    /// An amount as a form field shows it back: `10000,50`.
    pub fn rubles_plain(&self, kopecks: &i64) -> String {
        opora_domain::money::Rubles::from_kopecks(*kopecks)
            .plain()
            .replace('.', ",")
    }
}

/// The local wall-clock time of `at` in `zone`.
pub fn local_time(at: &OffsetDateTime, zone: &str) -> String {
    let tz = jiff::tz::TimeZone::get(zone)
        .or_else(|_| jiff::tz::TimeZone::get("Europe/Moscow"))
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let Ok(timestamp) = jiff::Timestamp::from_nanosecond(at.unix_timestamp_nanos()) else {
        return String::new();
    };
    let zoned = timestamp.to_zoned(tz);
    let mut text = zoned.strftime("%d.%m.%Y %H:%M").to_string();
    if zone != "Europe/Moscow" {
        text.push_str(&zoned.strftime(" (UTC%:z)").to_string());
    }
    text
}

/// Today's date in `zone`.
pub fn today_in(zone: &str) -> time::Date {
    let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let date = jiff::Timestamp::now().to_zoned(tz).date();
    time::Date::from_calendar_date(
        i32::from(date.year()),
        time::Month::try_from(date.month() as u8).unwrap_or(time::Month::January),
        date.day() as u8,
    )
    .unwrap_or_else(|_| OffsetDateTime::now_utc().date())
}

/// The request's language, for handlers that answer without a page (the JSON API).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Tr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Tr::new(Lang::from_api_headers(&parts.headers)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn russian_plurals_and_both_languages() {
        let ru = Tr::new(Lang::Ru);
        assert_eq!(ru.count("people-count", 1_i64), "1 человек");
        assert_eq!(ru.count("people-count", 3_i64), "3 человека");
        assert_eq!(ru.count("people-count", 5_i64), "5 человек");
        assert_eq!(ru.count("people-count", 21_i64), "21 человек");
        assert_eq!(ru.count("people-count", 12_i64), "12 человек");
        let en = Tr::new(Lang::En);
        assert_eq!(en.count("people-count", 1_i64), "1 person");
        assert_eq!(en.count("people-count", 2_i64), "2 people");
        assert_eq!(en.t("nav-reference"), "Reference data");
    }

    /// Every key the templates and handlers use exists in both languages, and both
    /// languages have the same keys.
    #[test]
    fn every_message_exists_in_russian_and_english() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let keys_of = |lang: &str| -> std::collections::BTreeSet<String> {
            // Every .ftl file of the language (the loader reads them all).
            std::fs::read_dir(root.join(format!("locales/{lang}")))
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|e| e == "ftl"))
                .flat_map(|path| {
                    std::fs::read_to_string(path)
                        .unwrap()
                        .lines()
                        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_owned()))
                        .filter(|k| !k.starts_with(['#', ' ']) && !k.is_empty())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let (ru, en) = (keys_of("ru"), keys_of("en"));
        assert_eq!(
            ru.symmetric_difference(&en).collect::<Vec<_>>(),
            Vec::<&String>::new()
        );
        let mut sources = Vec::new();
        for dir in [
            "templates",
            "templates/auth",
            "templates/admin",
            "templates/persons",
            "templates/reference",
            "templates/cases",
            "templates/aid",
            "templates/weekly",
            "templates/signals",
            "templates/monitoring",
            "web/src",
            "web/src/pages",
            "web/src/auth",
            "web/src/api",
        ] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    sources.push(std::fs::read_to_string(path).unwrap());
                }
            }
        }
        let mut used = 0;
        for source in &sources {
            for call in ["tr.t(\"", "tr.count(\"", ".t(\""] {
                for piece in source.split(call).skip(1) {
                    let key = piece.split('"').next().unwrap();
                    if key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !key.is_empty()
                    {
                        used += 1;
                        assert!(ru.contains(key), "message «{key}» is missing");
                    }
                }
            }
        }
        assert!(used > 100, "only {used} uses found");
        for role in opora_domain::access::Role::ALL {
            assert!(ru.contains(&format!("role-{}", role.1)));
        }
        use opora_domain::aid::{AidForm, AidPurpose, AidRequester};
        let codes = AidForm::ALL
            .iter()
            .map(|c| format!("ngo-form-{}", c.1))
            .chain(
                AidRequester::ALL
                    .iter()
                    .map(|c| format!("ngo-requester-{}", c.1)),
            )
            .chain(
                AidPurpose::ALL
                    .iter()
                    .map(|c| format!("ngo-purpose-{}", c.1)),
            )
            .chain(["requested", "approved", "refused"].map(|s| format!("ngo-status-{s}")))
            .chain(
                opora_domain::weekly::Status::ALL
                    .iter()
                    .map(|s| format!("weekly-status-{}", s.code())),
            )
            .chain(
                ["filed", "corrected", "accepted", "returned", "unlocked"]
                    .map(|s| format!("weekly-entry-{s}")),
            )
            .chain((0..7).map(|d| format!("weekly-deadline-day-{d}")))
            .chain(
                opora_domain::signal::SignalKind::ALL
                    .iter()
                    .map(|c| format!("signal-kind-{}", c.1)),
            )
            .chain(
                opora_domain::signal::ResponderKind::ALL
                    .iter()
                    .map(|c| format!("signal-responder-{}", c.1)),
            )
            .chain(
                opora_domain::signal::SignalOutcome::ALL
                    .iter()
                    .map(|c| format!("signal-outcome-{}", c.1)),
            )
            .chain(
                opora_domain::signal::Channel::ALL
                    .iter()
                    .map(|c| format!("signal-channel-{}", c.1)),
            );
        for key in codes {
            assert!(ru.contains(&key), "message «{key}» is missing");
        }
    }

    #[test]
    fn times_are_shown_in_the_regions_zone() {
        let at = time::macros::datetime!(2026-11-20 21:30 UTC);
        assert_eq!(local_time(&at, "Europe/Moscow"), "21.11.2026 00:30");
        assert_eq!(
            local_time(&at, "Asia/Vladivostok"),
            "21.11.2026 07:30 (UTC+10:00)"
        );
    }
}
