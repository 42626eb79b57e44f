//! Families: their status (ТЖС, СОП), large family, and their children.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use opora_domain::family::FamilyStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{codes, created, one_of, written, ApiForm, ErrorBody, Written};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::AppResult;
use crate::i18n::Tr;
use crate::pages::families::FAMILY_ROLES as ROLES;
use crate::pages::families::{self as page, FamilyRow, FamilyView};
use crate::pages::RecordId;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/families", Rule::Roles(ROLES), families)
        .post("/api/v1/families", Rule::Roles(ROLES), register)
        .get("/api/v1/families/{id}", Rule::Roles(ROLES), show)
        .post("/api/v1/families/{id}/changes", Rule::Roles(ROLES), change)
        .post(
            "/api/v1/families/{id}/take-on",
            Rule::Roles(&[opora_domain::access::Role::NgoOperator]),
            take_on,
        )
}

fn statuses() -> utoipa::openapi::Object {
    codes(FamilyStatus::ALL)
}
fn changes() -> utoipa::openapi::Object {
    one_of(["status", "large", "link", "unlink"])
}

#[utoipa::path(get, path = "/api/v1/families", tag = "families",
    responses((status = 200, body = Vec<FamilyRow>)))]
async fn families(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
) -> AppResult<Json<Vec<FamilyRow>>> {
    Ok(Json(page::family_list(&state, &viewer, tr).await?))
}

/// A family; its name, address and phone are sealed like a person's data.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFamily {
    /// The region's two-digit code.
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub municipality: Option<Uuid>,
    pub name: String,
    #[schema(schema_with = statuses)]
    pub status: String,
    #[serde(default)]
    pub large: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/families", tag = "families", request_body = NewFamily,
    responses((status = 201, body = Written), (status = 422, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    viewer: Viewer,
    body: ApiForm<NewFamily>,
) -> AppResult<Response> {
    Ok(created(
        page::register_family_command(&state, &viewer, body.tr, &body.form).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/families/{id}", tag = "families",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = FamilyView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Json<FamilyView>> {
    Ok(Json(page::family_view(&state, &viewer, tr, id).await?))
}

/// A change: `status` (status, reason), `large` (large), `link` (child: a child of the
/// family's region), `unlink` (child, reason).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FamilyChange {
    #[schema(schema_with = changes)]
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = statuses)]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/families/{id}/changes", tag = "families",
    params(("id" = Uuid, Path)), request_body = FamilyChange,
    responses((status = 200, body = Written), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn change(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    body: ApiForm<FamilyChange>,
) -> AppResult<Response> {
    Ok(written(
        page::change_family_command(&state, &viewer, body.tr, id, &body.form).await?,
    ))
}

/// An NGO operator takes a family of its region (registered by the curator) into the
/// NGO's work; from then on the family is on the NGO's list.
#[utoipa::path(post, path = "/api/v1/families/{id}/take-on", tag = "families",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Written), (status = 404, body = ErrorBody)))]
async fn take_on(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Response> {
    Ok(written(
        page::take_on_command(&state, &viewer, tr, id).await?,
    ))
}
