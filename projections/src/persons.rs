//! The `persons` projection: people whose personal data Opora holds, with their analytic
//! facts in clear and their personal fields still sealed.

use async_trait::async_trait;
use opora_domain::family::FamilyEvent;
use opora_domain::person::PersonEvent;
use opora_store::RecordedEvent;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::reference::uuid_of;
use crate::{Projection, ProjectionError};

pub struct PersonsProjection;

async fn apply_family(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let query = match event.decode::<FamilyEvent>(&[])? {
        FamilyEvent::FamilyRegistered {
            region,
            municipality,
            status,
            large,
            personal,
        } => sqlx::query(
            "INSERT INTO family (id, region_code, municipality, status, large, sealed, registered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(region.as_str().to_owned())
        .bind(municipality)
        .bind(status.code())
        .bind(large)
        .bind(Json(personal))
        .bind(event.recorded_at),
        FamilyEvent::FamilyTakenOnByNgo { ngo } => sqlx::query(
            "INSERT INTO family_ngo (family, ngo) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(ngo),
        FamilyEvent::FamilyStatusChanged { status, .. } => {
            sqlx::query("UPDATE family SET status = $2 WHERE id = $1")
                .bind(id)
                .bind(status.code())
        }
        FamilyEvent::LargeFamilyMarked { large } => {
            sqlx::query("UPDATE family SET large = $2 WHERE id = $1")
                .bind(id)
                .bind(large)
        }
        FamilyEvent::ChildLinkedToFamily { child } => sqlx::query(
            "INSERT INTO family_child (family, child) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(child),
        FamilyEvent::ChildUnlinkedFromFamily { child, .. } => {
            sqlx::query("DELETE FROM family_child WHERE family = $1 AND child = $2")
                .bind(id)
                .bind(child)
        }
    };
    query.execute(&mut *conn).await?;
    Ok(())
}

#[async_trait]
impl Projection for PersonsProjection {
    fn name(&self) -> &'static str {
        "persons"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == "Family") {
            apply_family(conn, uuid_of(event)?, event).await?;
        }
        for event in events.iter().filter(|e| e.aggregate_type == "Person") {
            let id = uuid_of(event)?;
            let query = match event.decode::<PersonEvent>(&[])? {
                PersonEvent::PersonRegistered {
                    kind,
                    region,
                    municipality,
                    sex,
                    age_band,
                    personal,
                } => sqlx::query(
                    "INSERT INTO person (id, kind, region_code, municipality, sex, age_band, \
                                         sealed, registered_at, registered_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(kind.code())
                .bind(region.as_str().to_owned())
                .bind(municipality)
                .bind(sex.code())
                .bind(age_band.code())
                .bind(Json(personal))
                .bind(event.recorded_at)
                .bind(event.actor.clone()),
                PersonEvent::PersonalDataCorrected {
                    personal, age_band, ..
                } => sqlx::query(
                    "UPDATE person SET sealed = $2, age_band = $3 WHERE id = $1 AND NOT erased",
                )
                .bind(id)
                .bind(Json(personal))
                .bind(age_band.code()),
                PersonEvent::PersonalDataErased { .. } => {
                    sqlx::query("UPDATE person SET sealed = NULL, erased = true WHERE id = $1")
                        .bind(id)
                }
            };
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}
