//! A person whose personal data Opora holds: a child, or an adult of a child's family.
//!
//! Personal fields (names, birth date, document, address, phone) never appear in the log in
//! clear: an event carries them [`Sealed`], encrypted with a key of that person alone
//! (see `opora_store::vault`). Destroying the key erases the person everywhere while the
//! events, and every count built from them, stay. The analytic facts a dashboard needs
//! (region, municipality, sex, age band) are kept in clear.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use crate::access::Text;
use crate::reference::{labelled_enum, RegionCode};
use crate::DatedCommand;

labelled_enum!(PersonKind, PersonKind {
    Child => ("child", "ребёнок"),
    Adult => ("adult", "взрослый"),
});

labelled_enum!(Sex, Sex {
    Female => ("female", "женский"),
    Male => ("male", "мужской"),
});

/// Age in bands, as statistics report it; kept in clear instead of the birth date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeBand {
    From0To2,
    From3To6,
    From7To10,
    From11To14,
    From15To17,
    Adult,
}

impl AgeBand {
    /// The band of someone born on `birth`, on the date `on`.
    pub fn at(birth: Date, on: Date) -> Self {
        let mut years = on.year() - birth.year();
        if (on.month() as u8, on.day()) < (birth.month() as u8, birth.day()) {
            years -= 1;
        }
        match years {
            i32::MIN..=2 => Self::From0To2,
            3..=6 => Self::From3To6,
            7..=10 => Self::From7To10,
            11..=14 => Self::From11To14,
            15..=17 => Self::From15To17,
            _ => Self::Adult,
        }
    }
    /// Every band with its stored code (its serde name).
    pub const ALL: [(Self, &'static str); 6] = [
        (Self::From0To2, "from0_to2"),
        (Self::From3To6, "from3_to6"),
        (Self::From7To10, "from7_to10"),
        (Self::From11To14, "from11_to14"),
        (Self::From15To17, "from15_to17"),
        (Self::Adult, "adult"),
    ];
    pub fn code(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(b, _)| *b == self)
            .map_or("", |(_, c)| c)
    }
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, c)| *c == code).map(|(b, _)| *b)
    }
    pub fn label(self) -> &'static str {
        match self {
            Self::From0To2 => "0–2",
            Self::From3To6 => "3–6",
            Self::From7To10 => "7–10",
            Self::From11To14 => "11–14",
            Self::From15To17 => "15–17",
            Self::Adult => "18+",
        }
    }
}

/// Personal data in clear. It exists only in memory: it is sealed before it enters a
/// command and opened for a permitted reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    pub family_name: String,
    pub given_name: String,
    pub patronymic: Option<String>,
    pub birth_date: Date,
    pub document: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
}

/// A field of a form that was filled in wrongly, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Personal fields as typed into a form.
#[derive(Debug, Default, Clone)]
pub struct PersonalInput<'a> {
    pub family_name: &'a str,
    pub given_name: &'a str,
    pub patronymic: &'a str,
    pub birth_date: &'a str,
    pub document: &'a str,
    pub address: &'a str,
    pub phone: &'a str,
}

const MAX_NAME_CHARS: usize = 100;

impl PersonalData {
    /// Validates a form; `today` is the local date, birth dates after it are refused.
    pub fn parse(input: &PersonalInput<'_>, today: Date) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut name = |field: &'static str, raw: &str, required: bool| -> Option<String> {
            match crate::clean_text(raw) {
                None if required => {
                    errors.push(FieldError {
                        field,
                        message: "Заполните это поле.".into(),
                    });
                    None
                }
                None => None,
                Some(text) if text.chars().count() > MAX_NAME_CHARS => {
                    errors.push(FieldError {
                        field,
                        message: format!("Не длиннее {MAX_NAME_CHARS} символов."),
                    });
                    None
                }
                Some(text) => Some(text),
            }
        };
        let family_name = name("family_name", input.family_name, true);
        let given_name = name("given_name", input.given_name, true);
        let patronymic = name("patronymic", input.patronymic, false);
        let mut optional = |field: &'static str, raw: &str| -> Option<String> {
            let text = crate::clean_text(raw)?;
            if text.chars().count() > Text::MAX_CHARS {
                errors.push(FieldError {
                    field,
                    message: format!("Не длиннее {} символов.", Text::MAX_CHARS),
                });
                return None;
            }
            Some(text)
        };
        let document = optional("document", input.document);
        let address = optional("address", input.address);
        let phone = optional("phone", input.phone);
        let birth_date = match crate::parse_date(input.birth_date) {
            None => {
                errors.push(FieldError {
                    field: "birth_date",
                    message: "Укажите дату рождения в виде ДД.ММ.ГГГГ, например 05.03.2015.".into(),
                });
                None
            }
            Some(date) if date > today => {
                errors.push(FieldError {
                    field: "birth_date",
                    message: "Дата рождения не может быть в будущем.".into(),
                });
                None
            }
            Some(date) if today.year() - date.year() > 120 => {
                errors.push(FieldError {
                    field: "birth_date",
                    message: "Дата рождения больше чем 120 лет назад: проверьте год.".into(),
                });
                None
            }
            Some(date) => Some(date),
        };
        match (family_name, given_name, birth_date) {
            (Some(family_name), Some(given_name), Some(birth_date)) if errors.is_empty() => {
                Ok(Self {
                    family_name,
                    given_name,
                    patronymic,
                    birth_date,
                    document,
                    address,
                    phone,
                })
            }
            _ => Err(errors),
        }
    }

    pub fn full_name(&self) -> String {
        let mut name = format!("{} {}", self.family_name, self.given_name);
        if let Some(patronymic) = &self.patronymic {
            name.push(' ');
            name.push_str(patronymic);
        }
        name
    }
}

/// Personal data encrypted with the key of one subject (see `opora_store::vault`): the
/// nonce and the ciphertext, base64. Opaque to the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub subject: Uuid,
    pub nonce: String,
    pub ciphertext: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PersonCommand {
    RegisterPerson {
        kind: PersonKind,
        region: RegionCode,
        municipality: Option<Uuid>,
        sex: Sex,
        age_band: AgeBand,
        personal: Sealed,
        effective_date: Date,
    },
    CorrectPersonalData {
        personal: Sealed,
        age_band: AgeBand,
        reason: Text,
        effective_date: Date,
    },
    RecordErasure {
        reason: Text,
    },
}

impl DatedCommand for PersonCommand {
    fn effective_date(&self) -> Option<Date> {
        match self {
            Self::RegisterPerson { effective_date, .. }
            | Self::CorrectPersonalData { effective_date, .. } => Some(*effective_date),
            Self::RecordErasure { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PersonEvent {
    PersonRegistered {
        kind: PersonKind,
        region: RegionCode,
        municipality: Option<Uuid>,
        sex: Sex,
        age_band: AgeBand,
        personal: Sealed,
    },
    PersonalDataCorrected {
        personal: Sealed,
        age_band: AgeBand,
        reason: Text,
    },
    /// The person's key was destroyed: personal data in every earlier event is unreadable.
    PersonalDataErased { reason: Text },
}

impl DomainEvent for PersonEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PersonRegistered { .. } => "PersonRegistered",
            Self::PersonalDataCorrected { .. } => "PersonalDataCorrected",
            Self::PersonalDataErased { .. } => "PersonalDataErased",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PersonError {
    #[error("Этот человек уже зарегистрирован.")]
    AlreadyRegistered,
    #[error("Человек не найден.")]
    NotRegistered,
    #[error("Личные данные этого человека удалены; новые личные данные к записи не принимаются.")]
    Erased,
    #[error("Личные данные зашифрованы не ключом этого человека.")]
    WrongSubject,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    id: Option<Uuid>,
    erased: bool,
}

impl Aggregate for Person {
    const TYPE: &'static str = "Person";
    type Command = PersonCommand;
    type Event = PersonEvent;
    type Error = PersonError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PersonCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PersonError> {
        let event = match command {
            PersonCommand::RegisterPerson {
                kind,
                region,
                municipality,
                sex,
                age_band,
                personal,
                ..
            } => {
                if self.id.is_some() {
                    return Err(PersonError::AlreadyRegistered);
                }
                PersonEvent::PersonRegistered {
                    kind,
                    region,
                    municipality,
                    sex,
                    age_band,
                    personal,
                }
            }
            PersonCommand::CorrectPersonalData {
                personal,
                age_band,
                reason,
                ..
            } => {
                let id = self.id.ok_or(PersonError::NotRegistered)?;
                if self.erased {
                    return Err(PersonError::Erased);
                }
                if personal.subject != id {
                    return Err(PersonError::WrongSubject);
                }
                PersonEvent::PersonalDataCorrected {
                    personal,
                    age_band,
                    reason,
                }
            }
            PersonCommand::RecordErasure { reason } => {
                self.id.ok_or(PersonError::NotRegistered)?;
                if self.erased {
                    return Err(PersonError::Erased);
                }
                PersonEvent::PersonalDataErased { reason }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PersonEvent) {
        match event {
            PersonEvent::PersonRegistered { personal, .. } => self.id = Some(personal.subject),
            PersonEvent::PersonalDataCorrected { .. } => {}
            PersonEvent::PersonalDataErased { .. } => self.erased = true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn age_band_codes_are_their_stored_names() {
        for (band, code) in AgeBand::ALL {
            assert_eq!(serde_json::to_value(band).unwrap(), serde_json::json!(code));
            assert_eq!(AgeBand::from_code(code), Some(band));
        }
    }

    #[test]
    fn age_bands_turn_on_the_birthday() {
        assert_eq!(
            AgeBand::at(date!(2012 - 05 - 10), date!(2025 - 05 - 09)),
            AgeBand::From11To14
        );
        assert_eq!(
            AgeBand::at(date!(2010 - 05 - 10), date!(2025 - 05 - 10)),
            AgeBand::From15To17
        );
        assert_eq!(
            AgeBand::at(date!(2007 - 05 - 10), date!(2025 - 05 - 10)),
            AgeBand::Adult
        );
    }

    #[test]
    fn personal_data_is_validated_field_by_field() {
        let today = date!(2026 - 11 - 21);
        let errors = PersonalData::parse(
            &PersonalInput {
                family_name: " ",
                given_name: "Аня",
                birth_date: "31.12.2030",
                ..Default::default()
            },
            today,
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["family_name", "birth_date"]);
        let data = PersonalData::parse(
            &PersonalInput {
                family_name: "Иванова",
                given_name: " Анна ",
                patronymic: "Сергеевна",
                birth_date: "05.03.2015",
                ..Default::default()
            },
            today,
        )
        .unwrap();
        assert_eq!(data.full_name(), "Иванова Анна Сергеевна");
        assert_eq!(data.birth_date, date!(2015 - 03 - 05));
    }
}
