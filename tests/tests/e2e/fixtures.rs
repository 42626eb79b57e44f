//! Commands and events used across tests.

use opora_domain::reference::{
    municipality_id, MunicipalityCommand, MunicipalityKind, PlaceName, RegionCode, RegionCommand,
    RegionKind, TimeZoneId,
};
use time::macros::date;
use uuid::Uuid;

pub fn code(raw: &str) -> RegionCode {
    RegionCode::parse(raw).unwrap()
}

pub fn name(raw: &str) -> PlaceName {
    PlaceName::parse(raw).unwrap()
}

pub fn register_region(raw_code: &str, raw_name: &str) -> RegionCommand {
    RegionCommand::RegisterRegion {
        code: code(raw_code),
        name: name(raw_name),
        kind: RegionKind::Oblast,
        federal_district: name("Сибирский"),
        time_zone: TimeZoneId::parse("Asia/Omsk").unwrap(),
    }
}

pub fn rename_region(raw_name: &str) -> RegionCommand {
    RegionCommand::RenameRegion {
        name: name(raw_name),
        effective_date: date!(2025 - 03 - 14),
    }
}

pub fn register_municipality(region: &str, raw_name: &str) -> (Uuid, MunicipalityCommand) {
    (
        municipality_id(&code(region), &name(raw_name)),
        MunicipalityCommand::RegisterMunicipality {
            region_code: code(region),
            name: name(raw_name),
            kind: MunicipalityKind::UrbanOkrug,
        },
    )
}

pub fn rename_municipality(raw_name: &str) -> MunicipalityCommand {
    MunicipalityCommand::RenameMunicipality {
        name: name(raw_name),
        effective_date: date!(2025 - 01 - 31),
    }
}
