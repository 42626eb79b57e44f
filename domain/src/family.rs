//! A family: its status (ТЖС — difficult life situation, СОП — socially dangerous
//! situation), whether it is a large family, and its children (person records). The
//! family's own personal data (how it is called, address, phone) is sealed like a person's.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use crate::access::Text;
use crate::person::Sealed;
use crate::reference::{labelled_enum, RegionCode};
use crate::DatedCommand;

labelled_enum!(FamilyStatus, FamilyStatus {
    DifficultSituation => ("tzhs", "трудная жизненная ситуация (ТЖС)"),
    DangerousSituation => ("sop", "социально опасное положение (СОП)"),
    NoStatus => ("none", "без статуса"),
});

/// The family's personal data, in clear only in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyData {
    /// How the family is called in the work: «семья Ивановых».
    pub name: String,
    pub address: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FamilyCommand {
    Register {
        on: Date,
        region: RegionCode,
        municipality: Option<Uuid>,
        status: FamilyStatus,
        large: bool,
        personal: Sealed,
        /// Registered by an NGO operator: the family is that NGO's from the start.
        ngo: Option<Uuid>,
    },
    /// The region's NGO operator takes a family (registered by the curator) into its work.
    TakeOn {
        on: Date,
        ngo: Uuid,
    },
    ChangeStatus {
        on: Date,
        status: FamilyStatus,
        reason: Text,
    },
    MarkLarge {
        on: Date,
        large: bool,
    },
    LinkChild {
        on: Date,
        child: Uuid,
    },
    UnlinkChild {
        on: Date,
        child: Uuid,
        reason: Text,
    },
}

impl DatedCommand for FamilyCommand {
    fn effective_date(&self) -> Option<Date> {
        Some(match self {
            Self::Register { on, .. }
            | Self::TakeOn { on, .. }
            | Self::ChangeStatus { on, .. }
            | Self::MarkLarge { on, .. }
            | Self::LinkChild { on, .. }
            | Self::UnlinkChild { on, .. } => *on,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FamilyEvent {
    FamilyRegistered {
        region: RegionCode,
        municipality: Option<Uuid>,
        status: FamilyStatus,
        large: bool,
        personal: Sealed,
    },
    FamilyTakenOnByNgo {
        ngo: Uuid,
    },
    FamilyStatusChanged {
        status: FamilyStatus,
        reason: Text,
    },
    LargeFamilyMarked {
        large: bool,
    },
    ChildLinkedToFamily {
        child: Uuid,
    },
    ChildUnlinkedFromFamily {
        child: Uuid,
        reason: Text,
    },
}

impl DomainEvent for FamilyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::FamilyRegistered { .. } => "FamilyRegistered",
            Self::FamilyTakenOnByNgo { .. } => "FamilyTakenOnByNgo",
            Self::FamilyStatusChanged { .. } => "FamilyStatusChanged",
            Self::LargeFamilyMarked { .. } => "LargeFamilyMarked",
            Self::ChildLinkedToFamily { .. } => "ChildLinkedToFamily",
            Self::ChildUnlinkedFromFamily { .. } => "ChildUnlinkedFromFamily",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FamilyError {
    #[error("Семья уже зарегистрирована.")]
    AlreadyRegistered,
    #[error("Семья не найдена.")]
    NotRegistered,
    #[error("Личные данные зашифрованы не ключом этой семьи.")]
    WrongSubject,
    #[error("У семьи уже этот статус.")]
    SameStatus,
    #[error("Это уже отмечено.")]
    SameLarge,
    #[error("Ребёнок уже в этой семье.")]
    AlreadyLinked,
    #[error("Ребёнок не числится в этой семье.")]
    NotLinked,
    #[error("Семья уже в работе этой НКО.")]
    AlreadyTakenOn,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Family {
    id: Option<Uuid>,
    status: Option<FamilyStatus>,
    large: bool,
    children: Vec<Uuid>,
    #[serde(default)]
    ngos: Vec<Uuid>,
}

impl Aggregate for Family {
    const TYPE: &'static str = "Family";
    type Command = FamilyCommand;
    type Event = FamilyEvent;
    type Error = FamilyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: FamilyCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), FamilyError> {
        if !matches!(command, FamilyCommand::Register { .. }) && self.id.is_none() {
            return Err(FamilyError::NotRegistered);
        }
        let event = match command {
            FamilyCommand::Register {
                region,
                municipality,
                status,
                large,
                personal,
                ngo,
                ..
            } => {
                if self.id.is_some() {
                    return Err(FamilyError::AlreadyRegistered);
                }
                let registered = FamilyEvent::FamilyRegistered {
                    region,
                    municipality,
                    status,
                    large,
                    personal,
                };
                let Some(ngo) = ngo else {
                    sink.write(registered, self).await;
                    return Ok(());
                };
                sink.write(registered, self).await;
                FamilyEvent::FamilyTakenOnByNgo { ngo }
            }
            FamilyCommand::TakeOn { ngo, .. } => {
                if self.ngos.contains(&ngo) {
                    return Err(FamilyError::AlreadyTakenOn);
                }
                FamilyEvent::FamilyTakenOnByNgo { ngo }
            }
            FamilyCommand::ChangeStatus { status, reason, .. } => {
                if self.status == Some(status) {
                    return Err(FamilyError::SameStatus);
                }
                FamilyEvent::FamilyStatusChanged { status, reason }
            }
            FamilyCommand::MarkLarge { large, .. } => {
                if self.large == large {
                    return Err(FamilyError::SameLarge);
                }
                FamilyEvent::LargeFamilyMarked { large }
            }
            FamilyCommand::LinkChild { child, .. } => {
                if self.children.contains(&child) {
                    return Err(FamilyError::AlreadyLinked);
                }
                FamilyEvent::ChildLinkedToFamily { child }
            }
            FamilyCommand::UnlinkChild { child, reason, .. } => {
                if !self.children.contains(&child) {
                    return Err(FamilyError::NotLinked);
                }
                FamilyEvent::ChildUnlinkedFromFamily { child, reason }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: FamilyEvent) {
        match event {
            FamilyEvent::FamilyRegistered {
                status,
                large,
                personal,
                ..
            } => {
                self.id = Some(personal.subject);
                self.status = Some(status);
                self.large = large;
            }
            FamilyEvent::FamilyTakenOnByNgo { ngo } => self.ngos.push(ngo),
            FamilyEvent::FamilyStatusChanged { status, .. } => self.status = Some(status),
            FamilyEvent::LargeFamilyMarked { large } => self.large = large,
            FamilyEvent::ChildLinkedToFamily { child } => self.children.push(child),
            FamilyEvent::ChildUnlinkedFromFamily { child, .. } => {
                self.children.retain(|c| *c != child)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use time::macros::date;

    fn sealed() -> Sealed {
        Sealed {
            subject: Uuid::from_u128(7),
            nonce: "n".into(),
            ciphertext: "c".into(),
        }
    }

    fn registered() -> FamilyEvent {
        FamilyEvent::FamilyRegistered {
            region: RegionCode::parse("16").unwrap(),
            municipality: None,
            status: FamilyStatus::DifficultSituation,
            large: true,
            personal: sealed(),
        }
    }

    #[test]
    fn a_family_is_registered_once_and_its_facts_change_only_when_they_do() {
        let on = date!(2026 - 01 - 10);
        TestFramework::<Family>::with(())
            .given_no_previous_events()
            .when(FamilyCommand::Register {
                on,
                region: RegionCode::parse("16").unwrap(),
                municipality: None,
                status: FamilyStatus::DifficultSituation,
                large: true,
                personal: sealed(),
                ngo: None,
            })
            .then_expect_events(vec![registered()]);
        // Registered by an NGO operator: the family is the NGO's at once, and only once.
        let ngo = Uuid::from_u128(9);
        TestFramework::<Family>::with(())
            .given_no_previous_events()
            .when(FamilyCommand::Register {
                on,
                region: RegionCode::parse("16").unwrap(),
                municipality: None,
                status: FamilyStatus::DifficultSituation,
                large: true,
                personal: sealed(),
                ngo: Some(ngo),
            })
            .then_expect_events(vec![registered(), FamilyEvent::FamilyTakenOnByNgo { ngo }]);
        TestFramework::<Family>::with(())
            .given(vec![registered(), FamilyEvent::FamilyTakenOnByNgo { ngo }])
            .when(FamilyCommand::TakeOn { on, ngo })
            .then_expect_error(FamilyError::AlreadyTakenOn);
        TestFramework::<Family>::with(())
            .given(vec![registered()])
            .when(FamilyCommand::ChangeStatus {
                on,
                status: FamilyStatus::DifficultSituation,
                reason: Text::parse("повторно").unwrap(),
            })
            .then_expect_error(FamilyError::SameStatus);
        TestFramework::<Family>::with(())
            .given(vec![registered()])
            .when(FamilyCommand::MarkLarge { on, large: true })
            .then_expect_error(FamilyError::SameLarge);
        TestFramework::<Family>::with(())
            .given_no_previous_events()
            .when(FamilyCommand::LinkChild {
                on,
                child: Uuid::from_u128(1),
            })
            .then_expect_error(FamilyError::NotRegistered);
    }

    #[test]
    fn children_are_linked_and_unlinked_once() {
        let on = date!(2026 - 01 - 10);
        let child = Uuid::from_u128(1);
        TestFramework::<Family>::with(())
            .given(vec![registered()])
            .when(FamilyCommand::LinkChild { on, child })
            .then_expect_events(vec![FamilyEvent::ChildLinkedToFamily { child }]);
        TestFramework::<Family>::with(())
            .given(vec![
                registered(),
                FamilyEvent::ChildLinkedToFamily { child },
            ])
            .when(FamilyCommand::LinkChild { on, child })
            .then_expect_error(FamilyError::AlreadyLinked);
        TestFramework::<Family>::with(())
            .given(vec![registered()])
            .when(FamilyCommand::UnlinkChild {
                on,
                child,
                reason: Text::parse("ошибка").unwrap(),
            })
            .then_expect_error(FamilyError::NotLinked);
    }
}
