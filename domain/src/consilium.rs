//! A sitting of an interdepartmental consilium: one date, one level, a chair and members,
//! and an agenda of cases. Each case reviewed at the sitting gets its own
//! `ConsiliumReviewRecorded` in the case, pointing back at the sitting; the protocol is built
//! from those.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use crate::access::Text;
use crate::case::ReviewLevel;
use crate::reference::RegionCode;
use crate::{format_date, DatedCommand};

/// More cases than a sitting can consider.
pub const MAX_AGENDA: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Hold {
        on: Date,
        today: Date,
        region: RegionCode,
        level: ReviewLevel,
        consilium: Option<Uuid>,
        chair: Text,
        members: Vec<Text>,
        agenda: Vec<Uuid>,
    },
    AddToAgenda {
        case: Uuid,
    },
}

impl DatedCommand for SessionCommand {
    fn effective_date(&self) -> Option<Date> {
        match self {
            Self::Hold { on, .. } => Some(*on),
            Self::AddToAgenda { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    ConsiliumSessionHeld {
        on: Date,
        region: RegionCode,
        level: ReviewLevel,
        consilium: Option<Uuid>,
        chair: Text,
        members: Vec<Text>,
        agenda: Vec<Uuid>,
    },
    CaseAddedToAgenda {
        case: Uuid,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ConsiliumSessionHeld { .. } => "ConsiliumSessionHeld",
            Self::CaseAddedToAgenda { .. } => "CaseAddedToAgenda",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SessionError {
    #[error("Заседание уже записано.")]
    AlreadyHeld,
    #[error("Заседание не найдено.")]
    NotHeld,
    #[error("Дата {date} ещё не наступила.")]
    FutureDate { date: String },
    #[error("В повестке нет ни одного дела.")]
    EmptyAgenda,
    #[error("В повестке больше {MAX_AGENDA} дел.")]
    AgendaTooLong,
    #[error("Дело уже в повестке.")]
    AlreadyOnAgenda,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsiliumSession {
    held: bool,
    agenda: Vec<Uuid>,
}

impl Aggregate for ConsiliumSession {
    const TYPE: &'static str = "ConsiliumSession";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SessionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SessionError> {
        let event = match command {
            SessionCommand::Hold {
                on,
                today,
                region,
                level,
                consilium,
                chair,
                members,
                mut agenda,
            } => {
                if self.held {
                    return Err(SessionError::AlreadyHeld);
                }
                if on > today {
                    return Err(SessionError::FutureDate {
                        date: format_date(on),
                    });
                }
                agenda.dedup();
                if agenda.is_empty() {
                    return Err(SessionError::EmptyAgenda);
                }
                if agenda.len() > MAX_AGENDA {
                    return Err(SessionError::AgendaTooLong);
                }
                SessionEvent::ConsiliumSessionHeld {
                    on,
                    region,
                    level,
                    consilium,
                    chair,
                    members,
                    agenda,
                }
            }
            SessionCommand::AddToAgenda { case } => {
                if !self.held {
                    return Err(SessionError::NotHeld);
                }
                if self.agenda.contains(&case) {
                    return Err(SessionError::AlreadyOnAgenda);
                }
                if self.agenda.len() >= MAX_AGENDA {
                    return Err(SessionError::AgendaTooLong);
                }
                SessionEvent::CaseAddedToAgenda { case }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::ConsiliumSessionHeld { agenda, .. } => {
                self.held = true;
                self.agenda = agenda;
            }
            SessionEvent::CaseAddedToAgenda { case } => self.agenda.push(case),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use time::macros::date;

    fn hold(agenda: Vec<Uuid>, on: Date) -> SessionCommand {
        SessionCommand::Hold {
            on,
            today: date!(2026 - 11 - 20),
            region: RegionCode::parse("16").unwrap(),
            level: ReviewLevel::Regional,
            consilium: None,
            chair: Text::parse("Заместитель министра").unwrap(),
            members: vec![Text::parse("Куратор").unwrap()],
            agenda,
        }
    }

    fn held(agenda: Vec<Uuid>) -> SessionEvent {
        SessionEvent::ConsiliumSessionHeld {
            on: date!(2026 - 11 - 19),
            region: RegionCode::parse("16").unwrap(),
            level: ReviewLevel::Regional,
            consilium: None,
            chair: Text::parse("Заместитель министра").unwrap(),
            members: vec![Text::parse("Куратор").unwrap()],
            agenda,
        }
    }

    #[test]
    fn a_sitting_has_a_past_date_and_an_agenda() {
        let case = Uuid::from_u128(1);
        TestFramework::<ConsiliumSession>::with(())
            .given_no_previous_events()
            .when(hold(vec![case, case], date!(2026 - 11 - 19)))
            .then_expect_events(vec![held(vec![case])]);
        TestFramework::<ConsiliumSession>::with(())
            .given_no_previous_events()
            .when(hold(vec![], date!(2026 - 11 - 19)))
            .then_expect_error(SessionError::EmptyAgenda);
        TestFramework::<ConsiliumSession>::with(())
            .given_no_previous_events()
            .when(hold(vec![case], date!(2026 - 11 - 21)))
            .then_expect_error(SessionError::FutureDate {
                date: "21.11.2026".into(),
            });
        TestFramework::<ConsiliumSession>::with(())
            .given(vec![held(vec![case])])
            .when(hold(vec![case], date!(2026 - 11 - 19)))
            .then_expect_error(SessionError::AlreadyHeld);
        TestFramework::<ConsiliumSession>::with(())
            .given_no_previous_events()
            .when(hold(
                (0..201).map(Uuid::from_u128).collect(),
                date!(2026 - 11 - 19),
            ))
            .then_expect_error(SessionError::AgendaTooLong);
    }

    #[test]
    fn cases_can_be_added_once() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        TestFramework::<ConsiliumSession>::with(())
            .given(vec![held(vec![a])])
            .when(SessionCommand::AddToAgenda { case: b })
            .then_expect_events(vec![SessionEvent::CaseAddedToAgenda { case: b }]);
        TestFramework::<ConsiliumSession>::with(())
            .given(vec![held(vec![a])])
            .when(SessionCommand::AddToAgenda { case: a })
            .then_expect_error(SessionError::AlreadyOnAgenda);
        TestFramework::<ConsiliumSession>::with(())
            .given_no_previous_events()
            .when(SessionCommand::AddToAgenda { case: a })
            .then_expect_error(SessionError::NotHeld);
    }
}
