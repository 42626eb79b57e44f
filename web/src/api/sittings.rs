//! Consilium sittings: the list, holding one with its agenda, the protocol, and one review
//! per case of the agenda.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use opora_domain::case::ReviewLevel;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{codes, created, written, ApiForm, ErrorBody, Written};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::AppResult;
use crate::i18n::Tr;
use crate::pages::cases::ROLES;
use crate::pages::sessions::{self as page, SessionRow, SessionView};
use crate::pages::RecordId;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/sittings", Rule::Roles(ROLES), sittings)
        .post("/api/v1/sittings", Rule::Roles(ROLES), hold)
        .get("/api/v1/sittings/{id}", Rule::Roles(ROLES), show)
        .post("/api/v1/sittings/{id}/reviews", Rule::Roles(ROLES), review)
}

fn levels() -> utoipa::openapi::Object {
    codes(ReviewLevel::ALL)
}

#[utoipa::path(get, path = "/api/v1/sittings", tag = "sittings",
    responses((status = 200, body = Vec<SessionRow>)))]
async fn sittings(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
) -> AppResult<Json<Vec<SessionRow>>> {
    Ok(Json(page::session_rows(&state, &viewer, tr).await?))
}

/// A sitting: date, level, chair, members, and the cases on its agenda.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSitting {
    /// The region's two-digit code.
    pub region: String,
    /// `YYYY-MM-DD`.
    pub on: String,
    #[schema(schema_with = levels)]
    pub level: String,
    pub chair: String,
    /// One member a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<String>,
    /// The consilium (an organisation of the directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consilium: Option<Uuid>,
    /// Case ids (open cases of children in institutions in the caller's places).
    #[serde(default)]
    pub agenda: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/sittings", tag = "sittings", request_body = NewSitting,
    responses((status = 201, body = Written), (status = 422, body = ErrorBody)))]
async fn hold(
    State(state): State<AppState>,
    viewer: Viewer,
    body: ApiForm<NewSitting>,
) -> AppResult<Response> {
    Ok(created(
        page::hold_session_command(&state, &viewer, body.tr, &body.form).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/sittings/{id}", tag = "sittings",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Json<SessionView>> {
    Ok(Json(page::session_view(&state, &viewer, tr, id).await?))
}

/// The sitting's review of one case on its agenda (dated the sitting's date).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SittingReview {
    pub case: Uuid,
    /// The case's entries when the call was made (the agenda row's `entries`).
    pub entries: i64,
    /// Always `review`.
    #[serde(default = "review_action")]
    #[schema(schema_with = review_only)]
    pub action: String,
    /// The sitting's level is used whatever is sent.
    #[serde(default = "any_level")]
    #[schema(schema_with = levels)]
    pub level: String,
    #[schema(schema_with = super::review_aids)]
    pub aid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_justified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stay_justified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parental_claim_justified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_possible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_review: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

fn review_action() -> String {
    "review".to_owned()
}
fn any_level() -> String {
    "regional".to_owned()
}
fn review_only() -> utoipa::openapi::Object {
    super::one_of(["review"])
}

#[utoipa::path(post, path = "/api/v1/sittings/{id}/reviews", tag = "sittings",
    params(("id" = Uuid, Path)), request_body = SittingReview,
    responses((status = 200, body = Written), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn review(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    body: ApiForm<SittingReview>,
) -> AppResult<Response> {
    Ok(written(
        page::review_case_command(&state, &viewer, body.tr, id, &body.form)
            .await?
            .map(|()| id),
    ))
}
