//! The `reference` projection: regions with their time zones, and municipalities.
//!
//! Set-based: a batch is first folded in memory into one patch per row, then written with
//! one statement per kind of change. A rebuild over a million renames thus writes each row
//! once per batch, not once per event.

use std::collections::HashMap;

use async_trait::async_trait;
use cqrs_es::persist::EventUpcaster;
use opora_domain::organisation::OrganisationEvent;
use opora_domain::reference::{MunicipalityEvent, RegionEvent};
use opora_store::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError};

pub struct ReferenceProjection {
    upcasters: Vec<Box<dyn EventUpcaster>>,
}

impl ReferenceProjection {
    pub fn new() -> Self {
        Self {
            upcasters: opora_domain::upcast::all(),
        }
    }
}

impl Default for ReferenceProjection {
    fn default() -> Self {
        Self::new()
    }
}

/// What a batch changes in one row: `Some` fields are set. A row registered in this batch
/// has every field set and is upserted; otherwise the fields are updated in place.
#[derive(Default)]
struct Patch {
    region_code: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    federal_district: Option<String>,
    time_zone: Option<String>,
    registered: bool,
}

#[async_trait]
impl Projection for ReferenceProjection {
    fn name(&self) -> &'static str {
        "reference"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut regions: HashMap<String, Patch> = HashMap::new();
        let mut municipalities: HashMap<Uuid, Patch> = HashMap::new();
        let mut organisations = Vec::new();
        for event in events {
            match event.aggregate_type.as_str() {
                "Region" => {
                    let patch = regions.entry(event.aggregate_id.clone()).or_default();
                    match event.decode::<RegionEvent>(&self.upcasters)? {
                        RegionEvent::RegionRegistered {
                            name,
                            kind,
                            federal_district,
                            time_zone,
                            ..
                        } => {
                            patch.registered = true;
                            patch.name = Some(name.as_str().to_owned());
                            patch.kind = Some(kind.code().to_owned());
                            patch.federal_district = Some(federal_district.as_str().to_owned());
                            patch.time_zone = Some(time_zone.as_str().to_owned());
                        }
                        RegionEvent::RegionRenamed { name } => {
                            patch.name = Some(name.as_str().to_owned());
                        }
                        RegionEvent::RegionTimeZoneChanged { time_zone } => {
                            patch.time_zone = Some(time_zone.as_str().to_owned());
                        }
                    }
                }
                "Municipality" => {
                    let id = uuid_of(event)?;
                    let patch = municipalities.entry(id).or_default();
                    match event.decode::<MunicipalityEvent>(&self.upcasters)? {
                        MunicipalityEvent::MunicipalityRegistered {
                            region_code,
                            name,
                            kind,
                        } => {
                            patch.registered = true;
                            patch.region_code = Some(region_code.as_str().to_owned());
                            patch.name = Some(name.as_str().to_owned());
                            patch.kind = Some(kind.code().to_owned());
                        }
                        MunicipalityEvent::MunicipalityRenamed { name } => {
                            patch.name = Some(name.as_str().to_owned());
                        }
                    }
                }
                "Organisation" => {
                    // Rare: kept in log order and written one by one after the regions.
                    organisations.push((
                        uuid_of(event)?,
                        event.decode::<OrganisationEvent>(&self.upcasters)?,
                    ));
                }
                _ => {}
            }
        }
        write_regions(conn, regions).await?;
        for (id, event) in organisations {
            write_organisation(conn, id, event).await?;
        }
        write_municipalities(conn, municipalities).await?;
        Ok(())
    }
}

async fn write_regions(
    conn: &mut PgConnection,
    patches: HashMap<String, Patch>,
) -> Result<(), ProjectionError> {
    let (new, changed): (Vec<_>, Vec<_>) = patches.into_iter().partition(|(_, p)| p.registered);
    if !new.is_empty() {
        let mut cols: [Vec<Option<String>>; 5] = Default::default();
        for (code, p) in new {
            let row = [Some(code), p.name, p.kind, p.federal_district, p.time_zone];
            for (col, value) in cols.iter_mut().zip(row) {
                col.push(value);
            }
        }
        sqlx::query(
            "INSERT INTO region (code, name, kind, federal_district, time_zone) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
               federal_district = excluded.federal_district, time_zone = excluded.time_zone",
        )
        .bind(&cols[0])
        .bind(&cols[1])
        .bind(&cols[2])
        .bind(&cols[3])
        .bind(&cols[4])
        .execute(&mut *conn)
        .await?;
    }
    if !changed.is_empty() {
        let mut cols: [Vec<Option<String>>; 3] = Default::default();
        for (code, p) in changed {
            let row = [Some(code), p.name, p.time_zone];
            for (col, value) in cols.iter_mut().zip(row) {
                col.push(value);
            }
        }
        sqlx::query(
            "UPDATE region AS r SET name = coalesce(u.name, r.name), \
                    time_zone = coalesce(u.time_zone, r.time_zone) \
               FROM unnest($1::text[], $2::text[], $3::text[]) AS u(code, name, time_zone) \
              WHERE r.code = u.code",
        )
        .bind(&cols[0])
        .bind(&cols[1])
        .bind(&cols[2])
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_municipalities(
    conn: &mut PgConnection,
    patches: HashMap<Uuid, Patch>,
) -> Result<(), ProjectionError> {
    let (new, changed): (Vec<_>, Vec<_>) = patches.into_iter().partition(|(_, p)| p.registered);
    if !new.is_empty() {
        let mut ids = Vec::with_capacity(new.len());
        let mut cols: [Vec<Option<String>>; 3] = Default::default();
        for (id, p) in new {
            ids.push(id);
            for (col, value) in cols.iter_mut().zip([p.region_code, p.name, p.kind]) {
                col.push(value);
            }
        }
        sqlx::query(
            "INSERT INTO municipality (id, region_code, name, kind) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) \
             ON CONFLICT (id) DO UPDATE SET region_code = excluded.region_code, \
               name = excluded.name, kind = excluded.kind",
        )
        .bind(&ids)
        .bind(&cols[0])
        .bind(&cols[1])
        .bind(&cols[2])
        .execute(&mut *conn)
        .await?;
    }
    if !changed.is_empty() {
        let (ids, names): (Vec<Uuid>, Vec<Option<String>>) =
            changed.into_iter().map(|(id, p)| (id, p.name)).unzip();
        sqlx::query(
            "UPDATE municipality AS m SET name = coalesce(u.name, m.name) \
               FROM unnest($1::uuid[], $2::text[]) AS u(id, name) WHERE m.id = u.id",
        )
        .bind(&ids)
        .bind(&names)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_organisation(
    conn: &mut PgConnection,
    id: Uuid,
    event: OrganisationEvent,
) -> Result<(), ProjectionError> {
    let (query, details) = match event {
        OrganisationEvent::OrganisationRegistered {
            kind,
            region,
            municipality,
            name,
            details,
        } => (
            sqlx::query(
                "INSERT INTO organisation (id, kind, region_code, municipality, name, \
                        institution_type, capacity, specialists, level) \
                 VALUES ($1, $5, $6, $7, $8, $2, $3, $4, $9) ON CONFLICT (id) DO NOTHING",
            ),
            (details, Some((kind, region, municipality, name))),
        ),
        OrganisationEvent::OrganisationDetailsChanged { details } => (
            sqlx::query(
                "UPDATE organisation SET institution_type = $2, capacity = $3, specialists = $4, \
                        level = $5 WHERE id = $1",
            ),
            (details, None),
        ),
    };
    let (details, registered) = details;
    let mut query = query
        .bind(id)
        .bind(details.institution_type.map(|t| t.code()))
        .bind(details.capacity.map(|n| n as i32))
        .bind(details.specialists.map(|n| n as i32));
    query = match registered {
        Some((kind, region, municipality, name)) => query
            .bind(kind.code())
            .bind(region.as_str().to_owned())
            .bind(municipality)
            .bind(name.as_str().to_owned())
            .bind(details.level.map(|l| l.code())),
        None => query.bind(details.level.map(|l| l.code())),
    };
    query.execute(&mut *conn).await?;
    Ok(())
}

/// The aggregate id of an event whose streams are keyed by UUID.
pub(crate) fn uuid_of(event: &RecordedEvent) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(&event.aggregate_id).map_err(|_| {
        ProjectionError::Invariant(format!(
            "{} id «{}» at {} is not a UUID",
            event.aggregate_type, event.aggregate_id, event.at
        ))
    })
}
