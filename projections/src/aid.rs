//! The `aid` projection: NGO aid requests and their deliveries. A batch refolds each request
//! it touches from that request's stream (a request has a handful of entries), so a
//! correction or a withdrawal is applied exactly as the aggregate sees it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use opora_domain::aid::{AidEvent, AidRequestFacts, Delivery};
use opora_store::RecordedEvent;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::reference::uuid_of;
use crate::{Projection, ProjectionError};

pub struct AidProjection;

#[async_trait]
impl Projection for AidProjection {
    fn name(&self) -> &'static str {
        "aid"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut touched: BTreeMap<Uuid, i64> = BTreeMap::new();
        for event in events.iter().filter(|e| e.aggregate_type == "AidRequest") {
            touched.insert(uuid_of(event)?, event.sequence);
        }
        for (id, last) in touched {
            let rows = sqlx::query(
                "SELECT sequence, payload, recorded_at FROM public.event \
                  WHERE aggregate_type = 'AidRequest' AND aggregate_id = $1 AND sequence <= $2 \
                  ORDER BY sequence",
            )
            .bind(id.to_string())
            .bind(last)
            .fetch_all(&mut *conn)
            .await?;
            let mut history = Vec::with_capacity(rows.len());
            for row in rows {
                let Json(event): Json<AidEvent> = row.try_get("payload")?;
                history.push((
                    row.try_get::<i64, _>("sequence")?,
                    row.try_get::<OffsetDateTime, _>("recorded_at")?,
                    event,
                ));
            }
            write_request(conn, id, &history).await?;
        }
        Ok(())
    }
}

/// A request as its stream leaves it.
struct Folded<'a> {
    facts: &'a AidRequestFacts,
    recorded_at: OffsetDateTime,
    status: &'static str,
    decided_on: Option<Date>,
    approved_amount: Option<i64>,
    note: Option<&'a str>,
    refusal: Option<&'a str>,
    /// Deliveries in order: figures, withdrawn, the entries that made them.
    deliveries: Vec<(Delivery, bool, Vec<i32>)>,
}

fn fold(
    id: Uuid,
    history: &[(i64, OffsetDateTime, AidEvent)],
) -> Result<Folded<'_>, ProjectionError> {
    let Some((_, recorded_at, AidEvent::AidRequested(facts))) = history.first() else {
        return Err(ProjectionError::Invariant(format!(
            "aid request {id} does not begin with AidRequested"
        )));
    };
    let mut folded = Folded {
        facts,
        recorded_at: *recorded_at,
        status: "requested",
        decided_on: None,
        approved_amount: None,
        note: None,
        refusal: None,
        deliveries: Vec::new(),
    };
    for (sequence, _, event) in &history[1..] {
        let sequence = i32::try_from(*sequence).unwrap_or(i32::MAX);
        match event {
            AidEvent::AidRequested(_) => {}
            AidEvent::AidApproved { on, amount, note } => {
                folded.status = "approved";
                folded.decided_on = Some(*on);
                folded.approved_amount = amount.map(|a| a.kopecks());
                folded.note = note.as_ref().map(|n| n.as_str());
            }
            AidEvent::AidRefused { on, reason } => {
                folded.status = "refused";
                folded.decided_on = Some(*on);
                folded.refusal = Some(reason.as_str());
            }
            AidEvent::AidDelivered(delivery) => {
                folded
                    .deliveries
                    .push((delivery.clone(), false, vec![sequence]))
            }
            AidEvent::AidDeliveryCorrected { delivery, .. } => {
                if let Some(d) = folded.deliveries.iter_mut().find(|d| d.0.id == delivery.id) {
                    d.0 = delivery.clone();
                    d.2.push(sequence);
                }
            }
            AidEvent::AidDeliveryWithdrawn { delivery, .. } => {
                if let Some(d) = folded.deliveries.iter_mut().find(|d| d.0.id == *delivery) {
                    d.1 = true;
                    d.2.push(sequence);
                }
            }
        }
    }
    Ok(folded)
}

async fn write_request(
    conn: &mut PgConnection,
    id: Uuid,
    history: &[(i64, OffsetDateTime, AidEvent)],
) -> Result<(), ProjectionError> {
    let f = fold(id, history)?;
    let facts = f.facts;
    sqlx::query(
        "INSERT INTO request (id, family, region_code, municipality, ngo, requester, requested_by, \
                review_case, review, purpose, form, form_other, description, amount, children, \
                requested_on, status, decided_on, approved_amount, decision_note, refusal_reason, \
                entries, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20, $21, $22, $23) \
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, decided_on = EXCLUDED.decided_on, \
                approved_amount = EXCLUDED.approved_amount, decision_note = EXCLUDED.decision_note, \
                refusal_reason = EXCLUDED.refusal_reason, entries = EXCLUDED.entries",
    )
    .bind(id)
    .bind(facts.family)
    .bind(facts.region.as_str())
    .bind(facts.municipality)
    .bind(facts.ngo)
    .bind(facts.requester.code())
    .bind(facts.requested_by.as_ref().map(|t| t.as_str()))
    .bind(facts.review.map(|r| r.case))
    .bind(facts.review.map(|r| r.review))
    .bind(facts.purpose.code())
    .bind(facts.form.code())
    .bind(facts.form_other.as_ref().map(|t| t.as_str()))
    .bind(facts.description.as_ref().map(|t| t.as_str()))
    .bind(facts.amount.map(|a| a.kopecks()))
    .bind(i32::from(facts.children))
    .bind(facts.on)
    .bind(f.status)
    .bind(f.decided_on)
    .bind(f.approved_amount)
    .bind(f.note)
    .bind(f.refusal)
    .bind(i32::try_from(history.len()).unwrap_or(i32::MAX))
    .bind(f.recorded_at)
    .execute(&mut *conn)
    .await?;
    for (delivery, withdrawn, entries) in &f.deliveries {
        sqlx::query(
            "INSERT INTO delivery (id, request, family, region_code, municipality, ngo, requester, \
                    purpose, children, delivered_on, amount, form, form_other, supplier, receipt, \
                    attachment, withdrawn, entries) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (id) DO UPDATE SET delivered_on = EXCLUDED.delivered_on, \
                    amount = EXCLUDED.amount, form = EXCLUDED.form, form_other = EXCLUDED.form_other, \
                    supplier = EXCLUDED.supplier, receipt = EXCLUDED.receipt, \
                    attachment = EXCLUDED.attachment, withdrawn = EXCLUDED.withdrawn, \
                    entries = EXCLUDED.entries",
        )
        .bind(delivery.id)
        .bind(id)
        .bind(facts.family)
        .bind(facts.region.as_str())
        .bind(facts.municipality)
        .bind(facts.ngo)
        .bind(facts.requester.code())
        .bind(facts.purpose.code())
        .bind(i32::from(facts.children))
        .bind(delivery.on)
        .bind(delivery.amount.kopecks())
        .bind(delivery.form.code())
        .bind(delivery.form_other.as_ref().map(|t| t.as_str()))
        .bind(delivery.supplier.as_ref().map(|t| t.as_str()))
        .bind(delivery.receipt.as_ref().map(|t| t.as_str()))
        .bind(delivery.attachment.as_ref().map(Json))
        .bind(withdrawn)
        .bind(entries)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
