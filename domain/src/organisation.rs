//! Organisations that roles are scoped to: NGOs that give material aid, and residential
//! institutions for children. Reference facts, like regions.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reference::{labelled_enum, PlaceName, RegionCode};
use crate::DatedCommand;

const ORGANISATION_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4f52_4700_0000_0000_0001);

labelled_enum!(OrganisationKind, OrganisationKind {
    Ngo => ("ngo", "некоммерческая организация"),
    Institution => ("institution", "организация для детей-сирот"),
    FamilyService => ("family_service", "служба «Дети в семье»"),
});

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
    },
}

impl DomainEvent for OrganisationEvent {
    fn event_type(&self) -> String {
        "OrganisationRegistered".into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum OrganisationError {
    #[error("Организация уже зарегистрирована.")]
    AlreadyRegistered,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organisation {
    registered: bool,
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
        let OrganisationCommand::RegisterOrganisation {
            kind,
            region,
            municipality,
            name,
        } = command;
        if self.registered {
            return Err(OrganisationError::AlreadyRegistered);
        }
        sink.write(
            OrganisationEvent::OrganisationRegistered {
                kind,
                region,
                municipality,
                name,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: OrganisationEvent) {
        match event {
            OrganisationEvent::OrganisationRegistered { .. } => self.registered = true,
        }
    }
}
