//! The `cases` projection: the «Вызов» register. A batch recomputes each case it touches
//! from that case's entries up to the batch (a case has tens of entries), with the domain's
//! own fold, so voided entries and the rules are handled exactly as the aggregate does.

use std::collections::BTreeMap;

use async_trait::async_trait;
use opora_domain::case::{CaseEvent, CaseState, ParentalRights};
use opora_domain::consilium::SessionEvent;
use opora_store::RecordedEvent;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::reference::uuid_of;
use crate::{Projection, ProjectionError};

pub struct CasesProjection;

#[async_trait]
impl Projection for CasesProjection {
    fn name(&self) -> &'static str {
        "cases"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // The last entry of each case in this batch.
        let mut touched: BTreeMap<Uuid, (i64, OffsetDateTime)> = BTreeMap::new();
        for event in events {
            match event.aggregate_type.as_str() {
                "ChildCase" => {
                    touched.insert(uuid_of(event)?, (event.sequence, event.recorded_at));
                }
                "ConsiliumSession" => write_session(conn, uuid_of(event)?, event).await?,
                _ => {}
            }
        }
        for (id, (last, at)) in touched {
            let rows = sqlx::query(
                "SELECT payload FROM public.event WHERE aggregate_type = 'ChildCase' \
                   AND aggregate_id = $1 AND sequence <= $2 ORDER BY sequence",
            )
            .bind(id.to_string())
            .bind(last)
            .fetch_all(&mut *conn)
            .await?;
            let mut history = Vec::with_capacity(rows.len());
            for row in rows {
                let Json(event): Json<CaseEvent> = row.try_get("payload")?;
                history.push(event);
            }
            write_case(conn, id, &history, at).await?;
        }
        Ok(())
    }
}

async fn write_session(
    conn: &mut PgConnection,
    id: Uuid,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    match event.decode::<SessionEvent>(&[])? {
        SessionEvent::ConsiliumSessionHeld {
            on,
            region,
            level,
            consilium,
            chair,
            members,
            agenda,
        } => {
            sqlx::query(
                "INSERT INTO session (id, region_code, held_on, level, consilium, chair, members, agenda) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(region.as_str())
            .bind(on)
            .bind(level.code())
            .bind(consilium)
            .bind(chair.as_str())
            .bind(Json(members))
            .bind(agenda)
            .execute(&mut *conn)
            .await?;
        }
        SessionEvent::CaseAddedToAgenda { case } => {
            sqlx::query("UPDATE session SET agenda = array_append(agenda, $2) WHERE id = $1")
                .bind(id)
                .bind(case)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn write_case(
    conn: &mut PgConnection,
    id: Uuid,
    history: &[CaseEvent],
    at: OffsetDateTime,
) -> Result<(), ProjectionError> {
    let Some(CaseEvent::CaseOpened {
        on: opened_on,
        child,
        case_number,
        region,
        municipality,
        family,
    }) = history.first()
    else {
        return Err(ProjectionError::Invariant(format!(
            "case {id} does not begin with CaseOpened"
        )));
    };
    let state = CaseState::replay(history)
        .map_err(|e| ProjectionError::Invariant(format!("case {id}: {e}")))?;
    let voided: Vec<usize> = history
        .iter()
        .filter_map(|e| match e {
            CaseEvent::EntryVoided { sequence, .. } => Some(*sequence),
            _ => None,
        })
        .collect();
    let counting = history
        .iter()
        .enumerate()
        .filter(|(i, e)| !voided.contains(&(i + 1)) && !matches!(e, CaseEvent::EntryVoided { .. }))
        .map(|(_, e)| e);
    let mut prevented = false;
    let mut reviews = Vec::new();
    let mut items = Vec::new();
    for event in counting {
        match event {
            CaseEvent::PlacementPrevented { .. } => prevented = true,
            CaseEvent::ConsiliumReviewRecorded { on, review } => {
                reviews.push((*on, review.clone()))
            }
            CaseEvent::ActionItemSet {
                on,
                item,
                action,
                executor,
                due,
                review,
            } => items.push((
                *item,
                action.as_str().to_owned(),
                executor.as_str().to_owned(),
                *on,
                *due,
                *review,
            )),
            _ => {}
        }
    }
    let placement = state.placement.as_ref();
    let (last_exit, last_exit_on) = match state.exits.last() {
        Some((on, kind)) => (Some(kind.code()), Some(*on)),
        None => (None, None),
    };
    let rights = match state.rights() {
        ParentalRights::Full => "full",
        ParentalRights::Restricted => "restricted",
        ParentalRights::Removed => "removed",
    };
    sqlx::query(
        "INSERT INTO child_case (id, case_number, child, region_code, municipality, family, \
                opened_on, closed, institution, institution_type, placed_on, legal_status, \
                under_control, last_review, next_review, accompaniment, parental_rights, \
                last_exit, last_exit_on, prevented, entries, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18, $19, $20, $21, $22) \
         ON CONFLICT (id) DO UPDATE SET closed = excluded.closed, \
                institution = excluded.institution, institution_type = excluded.institution_type, \
                placed_on = excluded.placed_on, legal_status = excluded.legal_status, \
                under_control = excluded.under_control, last_review = excluded.last_review, \
                next_review = excluded.next_review, accompaniment = excluded.accompaniment, \
                parental_rights = excluded.parental_rights, last_exit = excluded.last_exit, \
                last_exit_on = excluded.last_exit_on, prevented = excluded.prevented, \
                entries = excluded.entries, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(case_number)
    .bind(child)
    .bind(region.as_str())
    .bind(municipality)
    .bind(family)
    .bind(opened_on)
    .bind(state.closed)
    .bind(placement.map(|p| p.institution))
    .bind(placement.map(|p| p.institution_type.code()))
    .bind(placement.map(|p| p.since))
    .bind(placement.map(|p| p.legal_status.code()))
    .bind(state.under_control)
    .bind(state.last_review)
    .bind(state.next_review)
    .bind(state.accompaniment)
    .bind(rights)
    .bind(last_exit)
    .bind(last_exit_on)
    .bind(prevented)
    .bind(history.len() as i32)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM action_item WHERE case_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for (item, action, executor, set_on, due, review) in items {
        let done_on = state
            .items
            .iter()
            .find(|i| i.item == item)
            .and_then(|i| i.done_on);
        sqlx::query(
            "INSERT INTO action_item (case_id, item, action, executor, set_on, due, done_on, review) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(item)
        .bind(action)
        .bind(executor)
        .bind(set_on)
        .bind(due)
        .bind(done_on)
        .bind(review)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM review WHERE case_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for (on, review) in reviews {
        sqlx::query(
            "INSERT INTO review (case_id, review, held_on, level, placement_justified, \
                    stay_justified, parental_claim_justified, aid, return_possible, return_by, \
                    next_review, session) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(review.review)
        .bind(on)
        .bind(review.level.code())
        .bind(review.placement_justified)
        .bind(review.stay_justified)
        .bind(review.parental_claim_justified)
        .bind(review.aid.code())
        .bind(review.return_possible)
        .bind(review.return_by)
        .bind(review.next_review)
        .bind(review.session)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
