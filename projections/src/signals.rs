//! The `signals` projection: «Заступник» emergency signals. One row per signal with the
//! moment of each step (the console and the response-time KPIs read it), the outbox of
//! notifications the delivery worker works through, the children's registrations and the
//! ingestion clients (hashes of their keys).

use async_trait::async_trait;
use opora_domain::signal::{notification_id, CircleEvent, ClientEvent, ResponderKind, SignalEvent};
use opora_store::RecordedEvent;
use serde_json::json;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::reference::uuid_of;
use crate::{Projection, ProjectionError};

pub struct SignalsProjection;

#[async_trait]
impl Projection for SignalsProjection {
    fn name(&self) -> &'static str {
        "signals"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            match event.aggregate_type.as_str() {
                "Signal" => apply_signal(conn, event).await?,
                "TrustedCircle" => apply_circle(conn, event).await?,
                "IntegrationClient" => apply_client(conn, event).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_signal(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let id = uuid_of(event)?;
    let entries = i32::try_from(event.sequence).unwrap_or(i32::MAX);
    let set = |sql: &'static str| sqlx::query(sql).bind(id).bind(entries);
    match event.decode::<SignalEvent>(&[])? {
        SignalEvent::SignalRaised {
            child,
            client,
            region,
            city,
            kind,
            pressed_at,
            received_at,
            location,
            drill,
        } => {
            sqlx::query(
                "INSERT INTO signal (id, client, child, region_code, city, kind, drill, \
                        pressed_at, received_at, local_hour, latitude, longitude, accuracy_m, \
                        located_at, entries) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                        extract(hour FROM $8 AT TIME ZONE coalesce( \
                            (SELECT time_zone FROM reference.region WHERE code = $4), \
                            'Europe/Moscow'))::smallint, \
                        $10, $11, $12, CASE WHEN $10::float8 IS NULL THEN NULL ELSE $8 END, $13) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(client)
            .bind(child)
            .bind(region.as_str())
            .bind(city)
            .bind(kind.code())
            .bind(drill)
            .bind(pressed_at)
            .bind(received_at)
            .bind(location.map(|l| l.latitude))
            .bind(location.map(|l| l.longitude))
            .bind(location.and_then(|l| l.accuracy_m))
            .bind(entries)
            .execute(&mut *conn)
            .await?;
        }
        SignalEvent::NotificationRequested { recipients } => {
            let ids: Vec<_> = recipients.iter().map(|r| notification_id(id, r)).collect();
            let adults: Vec<_> = recipients.iter().map(|r| r.adult.clone()).collect();
            let channels: Vec<_> = recipients.iter().map(|r| r.channel.code()).collect();
            sqlx::query(
                "INSERT INTO notification (id, signal, adult, channel, requested_at, \
                        next_attempt_at) \
                 SELECT n.id, $4, n.adult, n.channel, $5, $5 \
                   FROM unnest($1::uuid[], $2::text[], $3::text[]) AS n(id, adult, channel) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&ids)
            .bind(&adults)
            .bind(&channels)
            .bind(id)
            .bind(event.recorded_at)
            .execute(&mut *conn)
            .await?;
            set("UPDATE signal SET recipients = recipients + $3, entries = $2 WHERE id = $1")
                .bind(i32::try_from(ids.len()).unwrap_or(i32::MAX))
                .execute(&mut *conn)
                .await?;
        }
        SignalEvent::NotificationDelivered {
            recipient,
            at,
            attempts,
        } => {
            sqlx::query(
                "UPDATE notification SET delivered_at = coalesce(delivered_at, $2), \
                        attempts = greatest(attempts, $3), failed_at = NULL WHERE id = $1",
            )
            .bind(notification_id(id, &recipient))
            .bind(at)
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .execute(&mut *conn)
            .await?;
            set("UPDATE signal SET delivered = delivered + 1, \
                        first_delivered_at = least(coalesce(first_delivered_at, $3), $3), \
                        entries = $2 WHERE id = $1")
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        SignalEvent::NotificationFailed {
            recipient,
            at,
            attempts,
            reason,
        } => {
            sqlx::query(
                "UPDATE notification SET failed_at = coalesce(failed_at, $2), \
                        attempts = greatest(attempts, $3), last_error = $4 \
                  WHERE id = $1 AND delivered_at IS NULL",
            )
            .bind(notification_id(id, &recipient))
            .bind(at)
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .bind(reason)
            .execute(&mut *conn)
            .await?;
            set("UPDATE signal SET failed = failed + 1, entries = $2 WHERE id = $1")
                .execute(&mut *conn)
                .await?;
        }
        SignalEvent::LocationUpdated { at, location } => {
            set(
                "UPDATE signal SET latitude = $3, longitude = $4, accuracy_m = $5, \
                        located_at = $6, entries = $2 WHERE id = $1",
            )
            .bind(location.latitude)
            .bind(location.longitude)
            .bind(location.accuracy_m)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        SignalEvent::AdultAcknowledged { at, .. } => {
            set("UPDATE signal SET adult_acknowledged_at = \
                        least(coalesce(adult_acknowledged_at, $3), $3), entries = $2 \
                  WHERE id = $1")
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        SignalEvent::OperatorAcknowledged { operator, at } => {
            set(
                "UPDATE signal SET acknowledged_at = $3, acknowledged_by = $4, entries = $2 \
                  WHERE id = $1",
            )
            .bind(at)
            .bind(operator)
            .execute(&mut *conn)
            .await?;
        }
        SignalEvent::SignalEscalated { at, .. } => {
            set("UPDATE signal SET escalated_at = $3, entries = $2 WHERE id = $1")
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        SignalEvent::ResponderDispatched {
            responder,
            at,
            note,
        } => {
            let dispatched_at = at
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| ProjectionError::Invariant(e.to_string()))?;
            let entry =
                json!([{"kind": responder.code(), "dispatched_at": dispatched_at, "note": note}]);
            set("UPDATE signal SET responders = responders || $3, \
                        first_dispatched_at = least(coalesce(first_dispatched_at, $4), $4), \
                        entries = $2 WHERE id = $1")
            .bind(Json(entry))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        SignalEvent::ResponderEnRoute { responder, at } => {
            responder_step(
                conn,
                id,
                entries,
                responder,
                "en_route_at",
                at,
                &["first_en_route_at"],
            )
            .await?;
        }
        SignalEvent::ResponderOnScene { responder, at } => {
            // Reaching the child is also being on the way, for a responder not marked so.
            responder_step(
                conn,
                id,
                entries,
                responder,
                "on_scene_at",
                at,
                &["first_on_scene_at", "first_en_route_at"],
            )
            .await?;
        }
        SignalEvent::SignalResolved { outcome, at, note } => {
            set(
                "UPDATE signal SET resolved_at = $3, outcome = $4, resolution_note = $5, \
                        entries = $2 WHERE id = $1",
            )
            .bind(at)
            .bind(outcome.code())
            .bind(note)
            .execute(&mut *conn)
            .await?;
        }
        SignalEvent::LinkedToCase { case } => {
            set("UPDATE signal SET cases = array_append(cases, $3), entries = $2 WHERE id = $1")
                .bind(case)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Sets a step's time on the responder's entry (adding the entry for a trusted adult, who
/// goes without a dispatch) and, in the same statement, the signal's first time of the step
/// (`firsts`: the columns of the signal's first instant of the step).
async fn responder_step(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    entries: i32,
    responder: ResponderKind,
    step: &'static str,
    at: time::OffsetDateTime,
    firsts: &[&'static str],
) -> Result<(), ProjectionError> {
    let firsts = firsts
        .iter()
        .map(|c| format!("{c} = least(coalesce({c}, $5), $5)"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "UPDATE signal SET entries = $2, {firsts}, \
         responders = CASE \
             WHEN responders @> jsonb_build_array(jsonb_build_object('kind', $3::text)) THEN \
                 (SELECT jsonb_agg(CASE WHEN r->>'kind' = $3 \
                                        THEN r || jsonb_build_object($4::text, $5::timestamptz) \
                                        ELSE r END ORDER BY ord) \
                    FROM jsonb_array_elements(responders) WITH ORDINALITY AS e(r, ord)) \
             ELSE responders || jsonb_build_array(jsonb_build_object('kind', $3::text, $4::text, $5::timestamptz)) \
         END WHERE id = $1"
    ))
    .bind(id)
    .bind(entries)
    .bind(responder.code())
    .bind(step)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_circle(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let id = uuid_of(event)?;
    let CircleEvent::CircleRegistered {
        client,
        child,
        region,
        city,
        adults,
    } = event.decode::<CircleEvent>(&[])?;
    sqlx::query(
        "INSERT INTO circle (id, client, child, region_code, city, adults) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET region_code = excluded.region_code, \
                city = excluded.city, adults = excluded.adults",
    )
    .bind(id)
    .bind(client)
    .bind(child)
    .bind(region.as_str())
    .bind(city)
    .bind(Json(adults))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_client(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let id = uuid_of(event)?;
    match event.decode::<ClientEvent>(&[])? {
        ClientEvent::ClientRegistered {
            name,
            key_hash,
            rate_per_second,
        } => {
            sqlx::query(
                "INSERT INTO client (id, name, key_hash, rate_per_second, registered_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(key_hash)
            .bind(i32::try_from(rate_per_second).unwrap_or(i32::MAX))
            .bind(event.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        ClientEvent::KeyRotated {
            key_hash,
            old_valid_until,
        } => {
            sqlx::query(
                "UPDATE client SET old_key_hash = key_hash, old_valid_until = $3, key_hash = $2 \
                  WHERE id = $1",
            )
            .bind(id)
            .bind(key_hash)
            .bind(old_valid_until)
            .execute(&mut *conn)
            .await?;
        }
        ClientEvent::RateChanged { rate_per_second } => {
            sqlx::query("UPDATE client SET rate_per_second = $2 WHERE id = $1")
                .bind(id)
                .bind(i32::try_from(rate_per_second).unwrap_or(i32::MAX))
                .execute(&mut *conn)
                .await?;
        }
        ClientEvent::ClientRevoked => {
            sqlx::query("UPDATE client SET revoked = true WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
