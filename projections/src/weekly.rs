//! The `weekly` projection: «Заступник» weekly connection reports. One row per municipality
//! and week with the figures in force (a correction overwrites them; the log keeps every
//! filing), the first filing's timeliness and the region's review; plus each region's
//! schedule and the municipalities' pupil counts.

use async_trait::async_trait;
use opora_domain::weekly::{report_id, Filing, ImportEvent, Period, SetupEvent, WeeklyEvent};
use opora_store::RecordedEvent;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::reference::uuid_of;
use crate::{Projection, ProjectionError};

pub struct WeeklyProjection;

#[async_trait]
impl Projection for WeeklyProjection {
    fn name(&self) -> &'static str {
        "weekly"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            match event.aggregate_type.as_str() {
                "WeeklyReport" => apply_report(conn, event).await?,
                "ReportingSetup" => apply_setup(conn, event).await?,
                "WeeklyImport" => apply_import(conn, event).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_report(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let id = uuid_of(event)?;
    let entries = i32::try_from(event.sequence).unwrap_or(i32::MAX);
    let actor = event.actor.as_deref();
    match event.decode::<WeeklyEvent>(&[])? {
        WeeklyEvent::ReportFiled {
            period,
            filing,
            filed_at,
            timeliness,
            ..
        } => {
            ensure_row(conn, id, &period, entries).await?;
            write_filing(conn, id, &filing, entries, actor).await?;
            sqlx::query(
                "UPDATE report SET timeliness = coalesce(timeliness, $2), \
                        first_filed_at = coalesce(first_filed_at, $3), filed_at = $3 \
                  WHERE id = $1",
            )
            .bind(id)
            .bind(timeliness.code())
            .bind(filed_at)
            .execute(&mut *conn)
            .await?;
        }
        WeeklyEvent::ReportAccepted { comment } => {
            review(
                conn,
                id,
                "accepted",
                comment.as_ref().map(|c| c.as_str()),
                actor,
                entries,
            )
            .await?;
        }
        WeeklyEvent::ReportReturned { comment } => {
            review(conn, id, "returned", Some(comment.as_str()), actor, entries).await?;
        }
        WeeklyEvent::PeriodUnlocked { period, until, .. } => {
            ensure_row(conn, id, &period, entries).await?;
            sqlx::query("UPDATE report SET unlocked_until = $2 WHERE id = $1")
                .bind(id)
                .bind(until)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Imported history fills weeks that have no report (a week filed meanwhile keeps its
/// filing); the row's entries stay 0: its figures come from the import's stream.
async fn apply_import(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let ImportEvent::FiguresImported { rows, .. } = event.decode::<ImportEvent>(&[])?;
    for chunk in rows.chunks(1000) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut municipalities = Vec::with_capacity(chunk.len());
        let mut regions = Vec::with_capacity(chunk.len());
        let mut fridays = Vec::with_capacity(chunk.len());
        let mut figures: [Vec<i32>; 4] = Default::default();
        for row in chunk {
            ids.push(report_id(row.period.municipality, row.period.week));
            municipalities.push(row.period.municipality);
            regions.push(row.period.region.as_str().to_owned());
            fridays.push(row.period.week.friday());
            let f = row.figures;
            for (column, value) in figures.iter_mut().zip([
                f.children,
                f.adults,
                f.schools,
                f.schools_with_responsible,
            ]) {
                column.push(as_int(value));
            }
        }
        sqlx::query(
            "INSERT INTO report (id, municipality, region_code, friday, children, adults, schools, \
                    schools_with_responsible, timeliness, filed_at, filed_by, filings, entries) \
             SELECT r.*, 'imported', $9, $10, 1, 0 FROM unnest($1::uuid[], $2::uuid[], $3::text[], \
                    $4::date[], $5::int[], $6::int[], $7::int[], $8::int[]) AS r \
             ON CONFLICT (id) DO UPDATE SET children = excluded.children, adults = excluded.adults, \
                    schools = excluded.schools, \
                    schools_with_responsible = excluded.schools_with_responsible, \
                    timeliness = 'imported', filed_at = excluded.filed_at, \
                    filed_by = excluded.filed_by, filings = 1 \
              WHERE report.children IS NULL",
        )
        .bind(&ids)
        .bind(&municipalities)
        .bind(&regions)
        .bind(&fridays)
        .bind(&figures[0])
        .bind(&figures[1])
        .bind(&figures[2])
        .bind(&figures[3])
        .bind(event.recorded_at)
        .bind(event.actor.as_deref())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn ensure_row(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    period: &Period,
    entries: i32,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO report (id, municipality, region_code, friday, entries) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET entries = excluded.entries",
    )
    .bind(id)
    .bind(period.municipality)
    .bind(period.region.as_str())
    .bind(period.week.friday())
    .bind(entries)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_filing(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    filing: &Filing,
    entries: i32,
    actor: Option<&str>,
) -> Result<(), ProjectionError> {
    let f = filing.figures;
    let per_school = (!filing.schools.is_empty()).then_some(Json(&filing.schools));
    sqlx::query(
        "UPDATE report SET children = $2, adults = $3, schools = $4, \
                schools_with_responsible = $5, per_school = $6, comment = $7, \
                filings = filings + 1, review = 'waiting', review_comment = NULL, \
                reviewed_by = NULL, filed_by = $8, entries = $9 \
          WHERE id = $1",
    )
    .bind(id)
    .bind(as_int(f.children))
    .bind(as_int(f.adults))
    .bind(as_int(f.schools))
    .bind(as_int(f.schools_with_responsible))
    .bind(per_school)
    .bind(filing.comment.as_ref().map(|c| c.as_str()))
    .bind(actor)
    .bind(entries)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn review(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    verdict: &str,
    comment: Option<&str>,
    actor: Option<&str>,
    entries: i32,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE report SET review = $2, review_comment = $3, reviewed_by = $4, entries = $5 \
          WHERE id = $1",
    )
    .bind(id)
    .bind(verdict)
    .bind(comment)
    .bind(actor)
    .bind(entries)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_setup(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    match event.decode::<SetupEvent>(&[])? {
        SetupEvent::ScheduleSet { region, schedule } => {
            sqlx::query(
                "INSERT INTO schedule (region_code, deadline_day, deadline_minute, lock_days) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (region_code) DO UPDATE SET deadline_day = excluded.deadline_day, \
                   deadline_minute = excluded.deadline_minute, lock_days = excluded.lock_days",
            )
            .bind(region.as_str())
            .bind(i16::from(schedule.deadline_day))
            .bind(i16::try_from(schedule.deadline_minute).unwrap_or(i16::MAX))
            .bind(i16::try_from(schedule.lock_days).unwrap_or(i16::MAX))
            .execute(&mut *conn)
            .await?;
        }
        SetupEvent::DepartmentSet {
            region,
            municipality,
            department,
        } => {
            sqlx::query(
                "INSERT INTO department (municipality, region_code, pupils, contact, email) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (municipality) DO UPDATE SET pupils = excluded.pupils, \
                   contact = excluded.contact, email = excluded.email",
            )
            .bind(municipality)
            .bind(region.as_str())
            .bind(department.pupils.map(as_int))
            .bind(department.contact.as_ref().map(|c| c.as_str()))
            .bind(department.email.as_ref().map(|c| c.as_str()))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Figures are at most ten million (the domain refuses more), so they fit an `integer`.
fn as_int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
