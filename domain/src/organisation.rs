//! Organisations of a region: NGOs that give material aid, residential institutions for
//! children (with their type and capacity), «Дети в семье» family services (with their
//! number of specialists) and consilia (by level). Reference facts kept by the curator; roles
//! are scoped to them and the case forms choose from them.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::case::{InstitutionType, ReviewLevel};
use crate::reference::{labelled_enum, PlaceName, RegionCode};
use crate::DatedCommand;

/// The most places or specialists an organisation can plausibly have.
const MAX_COUNT: u32 = 100_000;

const ORGANISATION_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4f52_4700_0000_0000_0001);

labelled_enum!(OrganisationKind, OrganisationKind {
    Ngo => ("ngo", "некоммерческая организация"),
    Institution => ("institution", "организация для детей-сирот"),
    FamilyService => ("family_service", "служба «Дети в семье»"),
    Consilium => ("consilium", "межведомственный консилиум"),
});

/// What the directory records besides the name, by kind. Absent fields in events recorded
/// before details existed read as empty (serde defaults), so no upcaster is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_type: Option<InstitutionType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialists: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<ReviewLevel>,
}

impl OrganisationDetails {
    fn check(&self, kind: OrganisationKind) -> Result<(), OrganisationError> {
        let institution = kind == OrganisationKind::Institution;
        if (self.institution_type.is_some() || self.capacity.is_some()) && !institution {
            return Err(OrganisationError::DetailNotForKind);
        }
        if self.specialists.is_some() && kind != OrganisationKind::FamilyService {
            return Err(OrganisationError::DetailNotForKind);
        }
        if self.level.is_some() != (kind == OrganisationKind::Consilium) {
            return Err(if kind == OrganisationKind::Consilium {
                OrganisationError::ConsiliumNeedsLevel
            } else {
                OrganisationError::DetailNotForKind
            });
        }
        if self
            .capacity
            .or(self.specialists)
            .is_some_and(|n| n > MAX_COUNT)
        {
            return Err(OrganisationError::CountTooLarge);
        }
        Ok(())
    }
}

/// The id of an organisation registered from seed data (stable across runs).
pub fn organisation_id(region: &RegionCode, name: &PlaceName) -> Uuid {
    Uuid::new_v5(
        &ORGANISATION_NAMESPACE,
        format!("{}/{}", region.as_str(), name.as_str()).as_bytes(),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrganisationCommand {
    RegisterOrganisation {
        kind: OrganisationKind,
        region: RegionCode,
        municipality: Option<Uuid>,
        name: PlaceName,
        details: OrganisationDetails,
    },
    ChangeDetails {
        details: OrganisationDetails,
    },
}

impl DatedCommand for OrganisationCommand {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrganisationEvent {
    OrganisationRegistered {
        kind: OrganisationKind,
        region: RegionCode,
        municipality: Option<Uuid>,
        name: PlaceName,
        #[serde(default)]
        details: OrganisationDetails,
    },
    OrganisationDetailsChanged {
        details: OrganisationDetails,
    },
}

impl DomainEvent for OrganisationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrganisationRegistered { .. } => "OrganisationRegistered",
            Self::OrganisationDetailsChanged { .. } => "OrganisationDetailsChanged",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum OrganisationError {
    #[error("Организация уже зарегистрирована.")]
    AlreadyRegistered,
    #[error("Организация не найдена.")]
    NotRegistered,
    #[error("Эти сведения не относятся к организации такого вида.")]
    DetailNotForKind,
    #[error("Для консилиума укажите уровень.")]
    ConsiliumNeedsLevel,
    #[error("Слишком большое число мест или специалистов.")]
    CountTooLarge,
    #[error("Сведения не изменились.")]
    SameDetails,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organisation {
    kind: Option<OrganisationKind>,
    details: OrganisationDetails,
}

impl Aggregate for Organisation {
    const TYPE: &'static str = "Organisation";
    type Command = OrganisationCommand;
    type Event = OrganisationEvent;
    type Error = OrganisationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrganisationCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrganisationError> {
        let event = match command {
            OrganisationCommand::RegisterOrganisation {
                kind,
                region,
                municipality,
                name,
                details,
            } => {
                if self.kind.is_some() {
                    return Err(OrganisationError::AlreadyRegistered);
                }
                details.check(kind)?;
                OrganisationEvent::OrganisationRegistered {
                    kind,
                    region,
                    municipality,
                    name,
                    details,
                }
            }
            OrganisationCommand::ChangeDetails { details } => {
                let kind = self.kind.ok_or(OrganisationError::NotRegistered)?;
                details.check(kind)?;
                if details == self.details {
                    return Err(OrganisationError::SameDetails);
                }
                OrganisationEvent::OrganisationDetailsChanged { details }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: OrganisationEvent) {
        match event {
            OrganisationEvent::OrganisationRegistered { kind, details, .. } => {
                self.kind = Some(kind);
                self.details = details;
            }
            OrganisationEvent::OrganisationDetailsChanged { details } => self.details = details,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn register(kind: OrganisationKind, details: OrganisationDetails) -> OrganisationCommand {
        OrganisationCommand::RegisterOrganisation {
            kind,
            region: RegionCode::parse("16").unwrap(),
            municipality: None,
            name: PlaceName::parse("Центр «Ласточка»").unwrap(),
            details,
        }
    }

    #[test]
    fn details_belong_to_their_kind() {
        let institution = OrganisationDetails {
            institution_type: Some(InstitutionType::Rehabilitation),
            capacity: Some(60),
            ..Default::default()
        };
        TestFramework::<Organisation>::with(())
            .given_no_previous_events()
            .when(register(OrganisationKind::Institution, institution.clone()))
            .then_expect_events(vec![OrganisationEvent::OrganisationRegistered {
                kind: OrganisationKind::Institution,
                region: RegionCode::parse("16").unwrap(),
                municipality: None,
                name: PlaceName::parse("Центр «Ласточка»").unwrap(),
                details: institution.clone(),
            }]);
        TestFramework::<Organisation>::with(())
            .given_no_previous_events()
            .when(register(OrganisationKind::Ngo, institution))
            .then_expect_error(OrganisationError::DetailNotForKind);
        TestFramework::<Organisation>::with(())
            .given_no_previous_events()
            .when(register(
                OrganisationKind::Consilium,
                OrganisationDetails::default(),
            ))
            .then_expect_error(OrganisationError::ConsiliumNeedsLevel);
        TestFramework::<Organisation>::with(())
            .given_no_previous_events()
            .when(register(
                OrganisationKind::FamilyService,
                OrganisationDetails {
                    specialists: Some(1_000_000),
                    ..Default::default()
                },
            ))
            .then_expect_error(OrganisationError::CountTooLarge);
    }

    #[test]
    fn details_change_and_old_events_read_without_them() {
        let old: OrganisationEvent = serde_json::from_str(
            r#"{"OrganisationRegistered":{"kind":"ngo","region":"16","municipality":null,"name":"АНО"}}"#,
        )
        .unwrap();
        let OrganisationEvent::OrganisationRegistered { details, .. } = &old else {
            unreachable!()
        };
        assert_eq!(details, &OrganisationDetails::default());
        let service = OrganisationDetails {
            specialists: Some(12),
            ..Default::default()
        };
        TestFramework::<Organisation>::with(())
            .given(vec![OrganisationEvent::OrganisationRegistered {
                kind: OrganisationKind::FamilyService,
                region: RegionCode::parse("16").unwrap(),
                municipality: None,
                name: PlaceName::parse("Служба").unwrap(),
                details: OrganisationDetails::default(),
            }])
            .when(OrganisationCommand::ChangeDetails {
                details: service.clone(),
            })
            .then_expect_events(vec![OrganisationEvent::OrganisationDetailsChanged {
                details: service,
            }]);
        TestFramework::<Organisation>::with(())
            .given_no_previous_events()
            .when(OrganisationCommand::ChangeDetails {
                details: OrganisationDetails::default(),
            })
            .then_expect_error(OrganisationError::NotRegistered);
    }
}
