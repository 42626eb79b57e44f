//! Reference data: regions of the Russian Federation (with their time zones) and their
//! municipalities. They are facts in the log like any other, so a renamed municipality keeps
//! its history and every figure can be traced to the event that set it.

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use crate::{clean_text, DatedCommand};

/// The longest name we accept; the longest real one is about 60 characters.
const MAX_NAME_CHARS: usize = 200;
/// Namespace for municipality ids derived from "region code / name" (seed data).
const MUNICIPALITY_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4d55_4e49_4349_5041_4c31);

/// The IANA zones in use in the Russian Federation. "Friday" and "today" are local to the
/// region, so a region's zone must be one the time-zone database knows.
pub const RUSSIAN_TIME_ZONES: &[&str] = &[
    "Europe/Kaliningrad",
    "Europe/Moscow",
    "Europe/Simferopol",
    "Europe/Kirov",
    "Europe/Volgograd",
    "Europe/Astrakhan",
    "Europe/Saratov",
    "Europe/Ulyanovsk",
    "Europe/Samara",
    "Asia/Yekaterinburg",
    "Asia/Omsk",
    "Asia/Novosibirsk",
    "Asia/Barnaul",
    "Asia/Tomsk",
    "Asia/Novokuznetsk",
    "Asia/Krasnoyarsk",
    "Asia/Irkutsk",
    "Asia/Chita",
    "Asia/Yakutsk",
    "Asia/Khandyga",
    "Asia/Vladivostok",
    "Asia/Ust-Nera",
    "Asia/Sakhalin",
    "Asia/Magadan",
    "Asia/Srednekolymsk",
    "Asia/Kamchatka",
    "Asia/Anadyr",
];

/// What was wrong with a value typed by a person or read from a seed file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ValueError {
    #[error("Код региона должен состоять из 2–3 цифр, например 16 или 02; получено «{0}».")]
    RegionCode(String),
    #[error("Название не может быть пустым.")]
    EmptyName,
    #[error("Название длиннее {MAX_NAME_CHARS} символов.")]
    NameTooLong,
    #[error("«{0}» — не часовой пояс, используемый в России (например, Europe/Moscow).")]
    TimeZone(String),
    #[error("Неизвестный вид субъекта «{0}»: ожидается республика, край, область, город федерального значения, автономная область или автономный округ.")]
    RegionKind(String),
    #[error("Неизвестный вид муниципального образования «{0}».")]
    MunicipalityKind(String),
    #[error("Неизвестный вид организации «{0}».")]
    OrganisationKind(String),
    #[error("Неизвестная роль «{0}».")]
    Role(String),
    #[error("Неизвестное значение пола «{0}».")]
    Sex(String),
    #[error("Неизвестная категория «{0}».")]
    PersonKind(String),
    #[error("Неизвестный тип учреждения «{0}».")]
    InstitutionType(String),
    #[error("Неизвестное основание помещения «{0}».")]
    PlacementBasis(String),
    #[error("Неизвестная причина помещения «{0}».")]
    PlacementReason(String),
    #[error("Неизвестный правовой статус «{0}».")]
    LegalStatus(String),
    #[error("Неизвестный уровень консилиума «{0}».")]
    ReviewLevel(String),
    #[error("Неизвестная форма помощи «{0}».")]
    AidForm(String),
    #[error("Неизвестное основание запроса помощи «{0}».")]
    AidRequester(String),
    #[error("Неизвестная цель помощи «{0}».")]
    AidPurpose(String),
    #[error("Неизвестное решение о помощи «{0}».")]
    AidDecision(String),
    #[error("Неизвестный вид выбытия «{0}».")]
    ExitKind(String),
    #[error("Неизвестный статус семьи «{0}».")]
    FamilyStatus(String),
    #[error("Неизвестный вид сигнала «{0}».")]
    SignalKind(String),
    #[error("Неизвестный вид реагирующих «{0}».")]
    ResponderKind(String),
    #[error("Неизвестный исход сигнала «{0}».")]
    SignalOutcome(String),
    #[error("Неизвестный канал уведомления «{0}».")]
    Channel(String),
}

/// Two or three digits, the code of a subject of the Federation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionCode(String);

impl RegionCode {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let code = raw.trim();
        if (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(code.to_owned()))
        } else {
            Err(ValueError::RegionCode(raw.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-empty name of at most `MAX_NAME_CHARS` characters, whitespace normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlaceName(String);

impl PlaceName {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let name = clean_text(raw).ok_or(ValueError::EmptyName)?;
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ValueError::NameTooLong);
        }
        Ok(Self(name))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IANA time zone used in Russia.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeZoneId(String);

impl TimeZoneId {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let zone = raw.trim();
        RUSSIAN_TIME_ZONES
            .iter()
            .find(|known| **known == zone)
            .map(|known| Self((*known).to_owned()))
            .ok_or_else(|| ValueError::TimeZone(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A closed list whose values have a stable code (stored in events, the serde name) and a
/// Russian label (shown, and accepted from seed files and forms).
macro_rules! labelled_enum {
    ($(#[$meta:meta])* $name:ident, $error:ident {
        $($(#[$vmeta:meta])* $variant:ident => ($code:literal, $label:literal)),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [(Self, &'static str, &'static str)] =
                &[$((Self::$variant, $code, $label)),+];

            /// Accepts the code or the Russian label, in any case.
            pub fn parse(raw: &str) -> Result<Self, $crate::reference::ValueError> {
                let wanted = raw.trim().to_lowercase();
                Self::ALL
                    .iter()
                    .find(|(_, code, label)| *code == wanted || *label == wanted)
                    .map(|(value, _, _)| *value)
                    .ok_or_else(|| $crate::reference::ValueError::$error(raw.to_owned()))
            }
            pub fn code(self) -> &'static str {
                Self::ALL.iter().find(|(v, _, _)| *v == self).map_or("", |(_, c, _)| c)
            }
            pub fn label_ru(self) -> &'static str {
                Self::ALL.iter().find(|(v, _, _)| *v == self).map_or("", |(_, _, l)| l)
            }
        }
    };
}

pub(crate) use labelled_enum;

labelled_enum!(RegionKind, RegionKind {
    Republic => ("republic", "республика"),
    Krai => ("krai", "край"),
    Oblast => ("oblast", "область"),
    FederalCity => ("federal_city", "город федерального значения"),
    AutonomousOblast => ("autonomous_oblast", "автономная область"),
    AutonomousOkrug => ("autonomous_okrug", "автономный округ"),
});

labelled_enum!(MunicipalityKind, MunicipalityKind {
    MunicipalDistrict => ("municipal_district", "муниципальный район"),
    MunicipalOkrug => ("municipal_okrug", "муниципальный округ"),
    UrbanOkrug => ("urban_okrug", "городской округ"),
    /// Intra-city territory of Moscow, Saint Petersburg or Sevastopol.
    IntraCityTerritory => ("intra_city_territory", "внутригородская территория"),
});

impl MunicipalityKind {
    /// The rule for names recorded before kinds were (version 1.0 events): the name says
    /// "район" or "округ"; anything else is a city, i.e. an urban okrug.
    pub fn infer_from_name(name: &str) -> Self {
        let lower = name.to_lowercase();
        if lower.contains("муниципальный округ") {
            Self::MunicipalOkrug
        } else if lower.contains("район") {
            Self::MunicipalDistrict
        } else {
            Self::UrbanOkrug
        }
    }
}

// ---------------------------------------------------------------------------------------
// Region
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum RegionCommand {
    RegisterRegion {
        code: RegionCode,
        name: PlaceName,
        kind: RegionKind,
        federal_district: PlaceName,
        time_zone: TimeZoneId,
    },
    RenameRegion {
        name: PlaceName,
        effective_date: Date,
    },
    ChangeRegionTimeZone {
        time_zone: TimeZoneId,
        effective_date: Date,
    },
}

impl DatedCommand for RegionCommand {
    fn effective_date(&self) -> Option<Date> {
        match self {
            Self::RegisterRegion { .. } => None,
            Self::RenameRegion { effective_date, .. }
            | Self::ChangeRegionTimeZone { effective_date, .. } => Some(*effective_date),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RegionEvent {
    RegionRegistered {
        code: RegionCode,
        name: PlaceName,
        kind: RegionKind,
        federal_district: PlaceName,
        time_zone: TimeZoneId,
    },
    RegionRenamed {
        name: PlaceName,
    },
    RegionTimeZoneChanged {
        time_zone: TimeZoneId,
    },
}

impl DomainEvent for RegionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::RegionRegistered { .. } => "RegionRegistered",
            Self::RegionRenamed { .. } => "RegionRenamed",
            Self::RegionTimeZoneChanged { .. } => "RegionTimeZoneChanged",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RegionError {
    #[error("Регион с кодом {code} уже зарегистрирован.")]
    AlreadyRegistered { code: RegionCode },
    #[error("Регион не найден: сначала его нужно зарегистрировать.")]
    NotRegistered,
    #[error("У региона уже это название.")]
    SameName,
    #[error("У региона уже этот часовой пояс.")]
    SameTimeZone,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    code: Option<RegionCode>,
    name: Option<PlaceName>,
    time_zone: Option<TimeZoneId>,
}

impl Aggregate for Region {
    const TYPE: &'static str = "Region";
    type Command = RegionCommand;
    type Event = RegionEvent;
    type Error = RegionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: RegionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), RegionError> {
        let event = match command {
            RegionCommand::RegisterRegion {
                code,
                name,
                kind,
                federal_district,
                time_zone,
            } => {
                if let Some(code) = &self.code {
                    return Err(RegionError::AlreadyRegistered { code: code.clone() });
                }
                RegionEvent::RegionRegistered {
                    code,
                    name,
                    kind,
                    federal_district,
                    time_zone,
                }
            }
            RegionCommand::RenameRegion { name, .. } => {
                self.require_registered()?;
                if self.name.as_ref() == Some(&name) {
                    return Err(RegionError::SameName);
                }
                RegionEvent::RegionRenamed { name }
            }
            RegionCommand::ChangeRegionTimeZone { time_zone, .. } => {
                self.require_registered()?;
                if self.time_zone.as_ref() == Some(&time_zone) {
                    return Err(RegionError::SameTimeZone);
                }
                RegionEvent::RegionTimeZoneChanged { time_zone }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: RegionEvent) {
        match event {
            RegionEvent::RegionRegistered {
                code,
                name,
                time_zone,
                ..
            } => {
                self.code = Some(code);
                self.name = Some(name);
                self.time_zone = Some(time_zone);
            }
            RegionEvent::RegionRenamed { name } => self.name = Some(name),
            RegionEvent::RegionTimeZoneChanged { time_zone } => self.time_zone = Some(time_zone),
        }
    }
}

impl Region {
    fn require_registered(&self) -> Result<(), RegionError> {
        self.code
            .as_ref()
            .map(|_| ())
            .ok_or(RegionError::NotRegistered)
    }
}

// ---------------------------------------------------------------------------------------
// Municipality
// ---------------------------------------------------------------------------------------

/// The id of a municipality registered from seed data: stable across machines and runs, so
/// re-running the seed executes the same commands and appends nothing.
pub fn municipality_id(region: &RegionCode, name: &PlaceName) -> Uuid {
    Uuid::new_v5(
        &MUNICIPALITY_NAMESPACE,
        format!("{}/{}", region.as_str(), name.as_str()).as_bytes(),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub enum MunicipalityCommand {
    RegisterMunicipality {
        region_code: RegionCode,
        name: PlaceName,
        kind: MunicipalityKind,
    },
    RenameMunicipality {
        name: PlaceName,
        effective_date: Date,
    },
}

impl DatedCommand for MunicipalityCommand {
    fn effective_date(&self) -> Option<Date> {
        match self {
            Self::RegisterMunicipality { .. } => None,
            Self::RenameMunicipality { effective_date, .. } => Some(*effective_date),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MunicipalityEvent {
    /// Version 2.0 added `kind`; see `upcast::municipality_registered_v1_to_v2`.
    MunicipalityRegistered {
        region_code: RegionCode,
        name: PlaceName,
        kind: MunicipalityKind,
    },
    MunicipalityRenamed {
        name: PlaceName,
    },
}

impl DomainEvent for MunicipalityEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MunicipalityRegistered { .. } => "MunicipalityRegistered",
            Self::MunicipalityRenamed { .. } => "MunicipalityRenamed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        match self {
            Self::MunicipalityRegistered { .. } => "2.0",
            Self::MunicipalityRenamed { .. } => "1.0",
        }
        .into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MunicipalityError {
    #[error("Муниципальное образование уже зарегистрировано.")]
    AlreadyRegistered,
    #[error("Муниципальное образование не найдено: сначала его нужно зарегистрировать.")]
    NotRegistered,
    #[error("У муниципального образования уже это название.")]
    SameName,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Municipality {
    region_code: Option<RegionCode>,
    name: Option<PlaceName>,
}

impl Aggregate for Municipality {
    const TYPE: &'static str = "Municipality";
    type Command = MunicipalityCommand;
    type Event = MunicipalityEvent;
    type Error = MunicipalityError;
    type Services = ();

    async fn handle(
        &mut self,
        command: MunicipalityCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), MunicipalityError> {
        let event = match command {
            MunicipalityCommand::RegisterMunicipality {
                region_code,
                name,
                kind,
            } => {
                if self.region_code.is_some() {
                    return Err(MunicipalityError::AlreadyRegistered);
                }
                MunicipalityEvent::MunicipalityRegistered {
                    region_code,
                    name,
                    kind,
                }
            }
            MunicipalityCommand::RenameMunicipality { name, .. } => {
                if self.region_code.is_none() {
                    return Err(MunicipalityError::NotRegistered);
                }
                if self.name.as_ref() == Some(&name) {
                    return Err(MunicipalityError::SameName);
                }
                MunicipalityEvent::MunicipalityRenamed { name }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: MunicipalityEvent) {
        match event {
            MunicipalityEvent::MunicipalityRegistered {
                region_code, name, ..
            } => {
                self.region_code = Some(region_code);
                self.name = Some(name);
            }
            MunicipalityEvent::MunicipalityRenamed { name } => self.name = Some(name),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use time::macros::date;

    fn code(raw: &str) -> RegionCode {
        RegionCode::parse(raw).unwrap()
    }
    fn name(raw: &str) -> PlaceName {
        PlaceName::parse(raw).unwrap()
    }
    fn zone(raw: &str) -> TimeZoneId {
        TimeZoneId::parse(raw).unwrap()
    }
    fn tatarstan_registered() -> RegionEvent {
        RegionEvent::RegionRegistered {
            code: code("16"),
            name: name("Республика Татарстан"),
            kind: RegionKind::Republic,
            federal_district: name("Приволжский"),
            time_zone: zone("Europe/Moscow"),
        }
    }
    fn register_tatarstan() -> RegionCommand {
        RegionCommand::RegisterRegion {
            code: code("16"),
            name: name("Республика Татарстан"),
            kind: RegionKind::Republic,
            federal_district: name("Приволжский"),
            time_zone: zone("Europe/Moscow"),
        }
    }

    #[test]
    fn register_region_records_it() {
        TestFramework::<Region>::with(())
            .given_no_previous_events()
            .when(register_tatarstan())
            .then_expect_events(vec![tatarstan_registered()]);
    }

    #[test]
    fn register_region_twice_is_refused() {
        TestFramework::<Region>::with(())
            .given(vec![tatarstan_registered()])
            .when(register_tatarstan())
            .then_expect_error(RegionError::AlreadyRegistered { code: code("16") });
    }

    #[test]
    fn rename_region() {
        TestFramework::<Region>::with(())
            .given(vec![tatarstan_registered()])
            .when(RegionCommand::RenameRegion {
                name: name("Республика Татарстан (Татарстан)"),
                effective_date: date!(2023 - 02 - 01),
            })
            .then_expect_events(vec![RegionEvent::RegionRenamed {
                name: name("Республика Татарстан (Татарстан)"),
            }]);
    }

    #[test]
    fn rename_to_the_same_name_is_refused() {
        TestFramework::<Region>::with(())
            .given(vec![tatarstan_registered()])
            .when(RegionCommand::RenameRegion {
                name: name("Республика  Татарстан "),
                effective_date: date!(2023 - 02 - 01),
            })
            .then_expect_error(RegionError::SameName);
    }

    #[test]
    fn rename_unknown_region_is_refused() {
        TestFramework::<Region>::with(())
            .given_no_previous_events()
            .when(RegionCommand::RenameRegion {
                name: name("Новое"),
                effective_date: date!(2023 - 02 - 01),
            })
            .then_expect_error(RegionError::NotRegistered);
    }

    #[test]
    fn change_time_zone() {
        TestFramework::<Region>::with(())
            .given(vec![tatarstan_registered()])
            .when(RegionCommand::ChangeRegionTimeZone {
                time_zone: zone("Europe/Samara"),
                effective_date: date!(2024 - 01 - 01),
            })
            .then_expect_events(vec![RegionEvent::RegionTimeZoneChanged {
                time_zone: zone("Europe/Samara"),
            }]);
    }

    #[test]
    fn change_to_the_same_time_zone_is_refused() {
        TestFramework::<Region>::with(())
            .given(vec![tatarstan_registered()])
            .when(RegionCommand::ChangeRegionTimeZone {
                time_zone: zone("Europe/Moscow"),
                effective_date: date!(2024 - 01 - 01),
            })
            .then_expect_error(RegionError::SameTimeZone);
    }

    #[test]
    fn change_time_zone_of_unknown_region_is_refused() {
        TestFramework::<Region>::with(())
            .given_no_previous_events()
            .when(RegionCommand::ChangeRegionTimeZone {
                time_zone: zone("Europe/Samara"),
                effective_date: date!(2024 - 01 - 01),
            })
            .then_expect_error(RegionError::NotRegistered);
    }

    fn kazan_registered() -> MunicipalityEvent {
        MunicipalityEvent::MunicipalityRegistered {
            region_code: code("16"),
            name: name("Казань"),
            kind: MunicipalityKind::UrbanOkrug,
        }
    }

    #[test]
    fn register_municipality() {
        TestFramework::<Municipality>::with(())
            .given_no_previous_events()
            .when(MunicipalityCommand::RegisterMunicipality {
                region_code: code("16"),
                name: name("Казань"),
                kind: MunicipalityKind::UrbanOkrug,
            })
            .then_expect_events(vec![kazan_registered()]);
    }

    #[test]
    fn register_municipality_twice_is_refused() {
        TestFramework::<Municipality>::with(())
            .given(vec![kazan_registered()])
            .when(MunicipalityCommand::RegisterMunicipality {
                region_code: code("16"),
                name: name("Казань"),
                kind: MunicipalityKind::UrbanOkrug,
            })
            .then_expect_error(MunicipalityError::AlreadyRegistered);
    }

    #[test]
    fn rename_municipality() {
        TestFramework::<Municipality>::with(())
            .given(vec![kazan_registered()])
            .when(MunicipalityCommand::RenameMunicipality {
                name: name("город Казань"),
                effective_date: date!(2024 - 05 - 01),
            })
            .then_expect_events(vec![MunicipalityEvent::MunicipalityRenamed {
                name: name("город Казань"),
            }]);
    }

    #[test]
    fn rename_municipality_to_same_name_is_refused() {
        TestFramework::<Municipality>::with(())
            .given(vec![kazan_registered()])
            .when(MunicipalityCommand::RenameMunicipality {
                name: name("Казань"),
                effective_date: date!(2024 - 05 - 01),
            })
            .then_expect_error(MunicipalityError::SameName);
    }

    #[test]
    fn rename_unknown_municipality_is_refused() {
        TestFramework::<Municipality>::with(())
            .given_no_previous_events()
            .when(MunicipalityCommand::RenameMunicipality {
                name: name("Казань"),
                effective_date: date!(2024 - 05 - 01),
            })
            .then_expect_error(MunicipalityError::NotRegistered);
    }

    #[test]
    fn value_parsers_refuse_bad_input_with_a_message() {
        assert!(RegionCode::parse("7").is_err());
        assert!(RegionCode::parse("1a").is_err());
        assert_eq!(RegionCode::parse(" 16 ").unwrap().as_str(), "16");
        assert_eq!(PlaceName::parse("  "), Err(ValueError::EmptyName));
        assert_eq!(
            PlaceName::parse(&"я".repeat(201)),
            Err(ValueError::NameTooLong)
        );
        assert_eq!(
            PlaceName::parse(" Казань   город ").unwrap().as_str(),
            "Казань город"
        );
        assert!(TimeZoneId::parse("Europe/Berlin").is_err());
        assert!(TimeZoneId::parse("Asia/Omsk").is_ok());
        assert_eq!(RegionKind::parse("Край").unwrap(), RegionKind::Krai);
        assert!(RegionKind::parse("штат").is_err());
        assert_eq!(
            MunicipalityKind::parse("urban_okrug").unwrap(),
            MunicipalityKind::UrbanOkrug
        );
        let message = RegionCode::parse("abc").unwrap_err().to_string();
        assert!(message.contains("abc"), "{message}");
    }

    #[test]
    fn kind_inferred_from_old_names() {
        assert_eq!(
            MunicipalityKind::infer_from_name("Агрызский муниципальный район"),
            MunicipalityKind::MunicipalDistrict
        );
        assert_eq!(
            MunicipalityKind::infer_from_name("Пермский муниципальный округ"),
            MunicipalityKind::MunicipalOkrug
        );
        assert_eq!(
            MunicipalityKind::infer_from_name("Казань"),
            MunicipalityKind::UrbanOkrug
        );
    }

    #[test]
    fn municipality_ids_are_stable() {
        let a = municipality_id(&code("16"), &name("Казань"));
        assert_eq!(a, municipality_id(&code("16"), &name("Казань")));
        assert_ne!(a, municipality_id(&code("16"), &name("Набережные Челны")));
    }

    #[test]
    fn upcaster_adds_kind_to_version_one() {
        use crate::upcast::municipality_registered_v1_to_v2;
        use cqrs_es::persist::{EventUpcaster, SerializedEvent};
        let old = SerializedEvent::new(
            "m1".into(),
            1,
            "Municipality".into(),
            "MunicipalityRegistered".into(),
            "1.0".into(),
            serde_json::json!({"MunicipalityRegistered": {"region_code": "16", "name": "Агрызский муниципальный район"}}),
            serde_json::json!({}),
        );
        let upcaster = municipality_registered_v1_to_v2();
        assert!(upcaster.can_upcast("MunicipalityRegistered", "1.0"));
        assert!(!upcaster.can_upcast("MunicipalityRegistered", "2.0"));
        let new = upcaster.upcast(old);
        assert_eq!(new.event_version, "2.0.0");
        let event: MunicipalityEvent = serde_json::from_value(new.payload).unwrap();
        assert_eq!(
            event,
            MunicipalityEvent::MunicipalityRegistered {
                region_code: code("16"),
                name: name("Агрызский муниципальный район"),
                kind: MunicipalityKind::MunicipalDistrict,
            }
        );
    }
}
