//! The `accounts` projection: users, their roles over places, and whether they are enabled.
//! Login and every request's authorization read it.

use async_trait::async_trait;
use opora_domain::access::UserEvent;
use opora_store::RecordedEvent;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::reference::uuid_of;
use crate::{Projection, ProjectionError};

pub struct AccountsProjection;

#[async_trait]
impl Projection for AccountsProjection {
    fn name(&self) -> &'static str {
        "accounts"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == "User") {
            let id = uuid_of(event)?;
            let at = event.recorded_at;
            let query = match event.decode::<UserEvent>(&[])? {
                UserEvent::UserCreated {
                    login,
                    display_name,
                    contact,
                    grants,
                } => sqlx::query(
                    "INSERT INTO user_account \
                            (id, login, display_name, contact, grants, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(login.as_str().to_owned())
                .bind(display_name.as_str().to_owned())
                .bind(contact.map(|c| c.as_str().to_owned()))
                .bind(Json(grants))
                .bind(at),
                UserEvent::UserGrantsChanged { grants } => sqlx::query(
                    "UPDATE user_account SET grants = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(Json(grants))
                .bind(at),
                UserEvent::UserDisabled { .. } | UserEvent::UserEnabled => sqlx::query(
                    "UPDATE user_account SET disabled = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(matches!(
                    event.decode::<UserEvent>(&[])?,
                    UserEvent::UserDisabled { .. }
                ))
                .bind(at),
                UserEvent::UserSecondFactorEnrolled | UserEvent::UserSecondFactorReset => {
                    sqlx::query(
                        "UPDATE user_account SET second_factor = $2, updated_at = $3 \
                          WHERE id = $1",
                    )
                    .bind(id)
                    .bind(event.event_type == "UserSecondFactorEnrolled")
                    .bind(at)
                }
                UserEvent::UserPasswordSet | UserEvent::UserSignedOutEverywhere => continue,
            };
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}
