//! Reference data from `seed/*.csv`, compiled into the binary and loaded as commands.
//!
//! Every seed command has a fixed id derived from its row, so loading twice (every start
//! does) appends nothing the second time: each command id can append only once.

use anyhow::{bail, Context, Result};
use opora_domain::reference::Municipality;
use opora_domain::reference::{
    municipality_id, MunicipalityCommand, MunicipalityKind, PlaceName, Region, RegionCode,
    RegionCommand, RegionKind, TimeZoneId,
};
use opora_store::{CommandBus, CommandError, CommandMeta, EventLog, Executed};
use uuid::Uuid;

const REGIONS_CSV: &str = include_str!("../../seed/regions.csv");
const MUNICIPALITIES_CSV: &str = include_str!("../../seed/municipalities.csv");
const SEED_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5345_4544_2d52_4546_3031);
pub const SEED_ACTOR: &str = "system:seed";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub applied: usize,
    pub already: usize,
}

fn seed_meta(key: &str) -> CommandMeta {
    CommandMeta::new(SEED_ACTOR).with_command_id(Uuid::new_v5(&SEED_NAMESPACE, key.as_bytes()))
}

/// Parsed rows, or the first bad row with its line number and what is wrong.
pub fn regions() -> Result<Vec<(RegionCode, RegionCommand)>> {
    let mut out = Vec::new();
    for (index, row) in csv::Reader::from_reader(REGIONS_CSV.as_bytes())
        .records()
        .enumerate()
    {
        let line = index + 2;
        let row = row.with_context(|| format!("seed/regions.csv line {line}"))?;
        let field = |i: usize| row.get(i).unwrap_or_default();
        let parsed = (|| {
            Ok::<_, opora_domain::reference::ValueError>((
                RegionCode::parse(field(0))?,
                PlaceName::parse(field(1))?,
                RegionKind::parse(field(2))?,
                PlaceName::parse(field(3))?,
                TimeZoneId::parse(field(4))?,
            ))
        })();
        match parsed {
            Ok((code, name, kind, federal_district, time_zone)) => out.push((
                code.clone(),
                RegionCommand::RegisterRegion {
                    code,
                    name,
                    kind,
                    federal_district,
                    time_zone,
                },
            )),
            Err(error) => bail!("seed/regions.csv line {line}: {error}"),
        }
    }
    Ok(out)
}

pub fn municipalities() -> Result<Vec<(Uuid, MunicipalityCommand)>> {
    let mut out = Vec::new();
    let reader = csv::Reader::from_reader(MUNICIPALITIES_CSV.as_bytes());
    for (index, row) in reader.into_records().enumerate() {
        let line = index + 2;
        let row = row.with_context(|| format!("seed/municipalities.csv line {line}"))?;
        let field = |i: usize| row.get(i).unwrap_or_default();
        let parsed = (|| {
            Ok::<_, opora_domain::reference::ValueError>((
                RegionCode::parse(field(0))?,
                PlaceName::parse(field(1))?,
                MunicipalityKind::parse(field(2))?,
            ))
        })();
        match parsed {
            Ok((region_code, name, kind)) => out.push((
                municipality_id(&region_code, &name),
                MunicipalityCommand::RegisterMunicipality {
                    region_code,
                    name,
                    kind,
                },
            )),
            Err(error) => bail!("seed/municipalities.csv line {line}: {error}"),
        }
    }
    Ok(out)
}

/// Loads regions and municipalities into the log; safe to run any number of times.
pub async fn load_reference(log: &EventLog) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    let regions_bus = CommandBus::<Region>::new(log.clone(), ());
    for (code, command) in regions()? {
        let meta = seed_meta(&format!("region/{code}"));
        count(
            &mut report,
            regions_bus.execute(code.as_str(), command, &meta).await,
        )
        .with_context(|| format!("seeding region {code}"))?;
    }
    let municipalities_bus = CommandBus::<Municipality>::new(log.clone(), ());
    for (id, command) in municipalities()? {
        let meta = seed_meta(&format!("municipality/{id}"));
        count(
            &mut report,
            municipalities_bus
                .execute(&id.to_string(), command, &meta)
                .await,
        )
        .with_context(|| format!("seeding municipality {id}"))?;
    }
    Ok(report)
}

fn count<E: std::error::Error + Send + Sync + 'static>(
    report: &mut SeedReport,
    result: Result<Executed, CommandError<E>>,
) -> Result<()> {
    match result? {
        Executed::Applied => report.applied += 1,
        Executed::AlreadyApplied | Executed::NothingToDo => report.already += 1,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_files_parse_and_cover_the_demo_regions() {
        let regions = regions().expect("regions.csv parses");
        assert!(regions.len() >= 85, "{} regions", regions.len());
        let municipalities = municipalities().expect("municipalities.csv parses");
        let codes: std::collections::HashSet<_> =
            regions.iter().map(|(c, _)| c.as_str().to_owned()).collect();
        for (_, command) in &municipalities {
            let MunicipalityCommand::RegisterMunicipality { region_code, .. } = command else {
                unreachable!()
            };
            assert!(codes.contains(region_code.as_str()), "{region_code}");
        }
        // The 14 «Вызов» regions and the five «Заступник» demo regions all have municipalities.
        for code in [
            "22", "29", "75", "38", "42", "24", "56", "59", "25", "63", "66", "69", "27", "74",
            "16", "55", "72", "52", "73",
        ] {
            let n = municipalities
                .iter()
                .filter(|(_, c)| matches!(c, MunicipalityCommand::RegisterMunicipality { region_code, .. } if region_code.as_str() == code))
                .count();
            assert!(n >= 10, "region {code} has only {n} municipalities");
        }
        let ids: std::collections::HashSet<_> = municipalities.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), municipalities.len(), "duplicate municipality");
    }
}
