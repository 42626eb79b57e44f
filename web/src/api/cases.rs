//! The register, cases, tasks and the region's directory.

use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use opora_domain::case::{
    ExitKind, InstitutionType, LegalStatus, PlacementBasis, PlacementReason, ReviewLevel,
};
use opora_domain::organisation::OrganisationKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{codes, created, written, ApiForm, ErrorBody, Written};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::AppResult;
use crate::i18n::Tr;
use crate::pages::cases::{self as page, CaseDetail, RegisterList, RegisterQuery, ROLES};
use crate::pages::directory::{self as dir, OrganisationRow, TaskRow, TasksQuery};
use crate::pages::RecordId;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/register", Rule::Roles(ROLES), register)
        .post("/api/v1/cases", Rule::Roles(ROLES), open_case)
        .get("/api/v1/cases/{id}", Rule::Roles(ROLES), show_case)
        .post("/api/v1/cases/{id}/facts", Rule::Roles(ROLES), record_fact)
        .get("/api/v1/tasks", Rule::Roles(ROLES), tasks)
        .get("/api/v1/directory", Rule::Roles(ROLES), directory)
        .post(
            "/api/v1/directory",
            Rule::Roles(dir::EDITORS),
            add_organisation,
        )
        .post(
            "/api/v1/directory/{id}",
            Rule::Roles(dir::EDITORS),
            change_details,
        )
}

fn actions() -> utoipa::openapi::Object {
    super::one_of(page::ACTIONS.iter().copied())
}
fn institution_types() -> utoipa::openapi::Object {
    codes(InstitutionType::ALL)
}
fn bases() -> utoipa::openapi::Object {
    codes(PlacementBasis::ALL)
}
fn reasons() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(codes(PlacementReason::ALL))
}
fn legal_statuses() -> utoipa::openapi::Object {
    codes(LegalStatus::ALL)
}
fn levels() -> utoipa::openapi::Object {
    codes(ReviewLevel::ALL)
}
fn exits() -> utoipa::openapi::Object {
    codes(ExitKind::ALL)
}
fn kinds() -> utoipa::openapi::Object {
    codes(OrganisationKind::ALL)
}

#[utoipa::path(get, path = "/api/v1/register", tag = "register", params(RegisterQuery),
    responses((status = 200, body = RegisterList), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<RegisterQuery>,
) -> AppResult<Json<RegisterList>> {
    Ok(Json(
        page::register_list(&state, &viewer, &query, tr).await?,
    ))
}

/// Opens a child's case (the child is a person record in the viewer's places).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCase {
    pub person: Uuid,
    /// The date the case was opened (`YYYY-MM-DD` or `ДД.ММ.ГГГГ`), not in the future.
    pub on: String,
    /// Send the same id again (a retry) and the case is opened once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = OpenCase,
    responses((status = 201, body = Written), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn open_case(
    State(state): State<AppState>,
    viewer: Viewer,
    body: ApiForm<OpenCase>,
) -> AppResult<Response> {
    Ok(created(
        page::open_case_command(&state, &viewer, body.tr, &body.form).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = Uuid, Path)),
    responses((status = 200, body = CaseDetail), (status = 404, body = ErrorBody)))]
async fn show_case(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Json<CaseDetail>> {
    Ok(Json(page::case_detail(&state, &viewer, id, tr).await?))
}

/// One fact on a case: `action` says which, and the fields it needs are those of the case
/// page's form for it (`place`: institution, institution_type, basis, reasons,
/// legal_status; `transfer`: institution, institution_type; `legal_status`; `review`:
/// level, aid and the assessments; `item`: item_action, executor, due; `item_done`: item;
/// `accompaniment_start`: service; `exit`; `close`, `reopen`: reason; `void`: sequence,
/// reason).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseFact {
    #[schema(schema_with = actions)]
    pub action: String,
    /// The date the fact happened (`YYYY-MM-DD`): not in the future, not before birth.
    pub on: String,
    /// The number of entries the case had when the call was made (`case.entries` of the
    /// case): a call made for an older state is refused with `case-stale-form`.
    pub entries: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = institution_types)]
    pub institution_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = bases)]
    pub basis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = reasons)]
    pub reasons: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = legal_statuses)]
    pub legal_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = levels)]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_justified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stay_justified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parental_claim_justified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::review_aids)]
    pub aid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_possible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_review: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = exits)]
    pub exit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `void`: the number of the entry recorded by mistake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/cases/{id}/facts", tag = "cases",
    params(("id" = Uuid, Path)), request_body = CaseFact,
    responses((status = 200, body = Written), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn record_fact(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    body: ApiForm<CaseFact>,
) -> AppResult<Response> {
    let outcome = page::record_fact_command(&state, &viewer, body.tr, id, &body.form).await?;
    Ok(written(outcome.map(|()| id)))
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "cases", params(TasksQuery),
    responses((status = 200, body = Vec<TaskRow>)))]
async fn tasks(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<TasksQuery>,
) -> AppResult<Json<Vec<TaskRow>>> {
    let overdue_only = !query.overdue.trim().is_empty();
    Ok(Json(dir::task_rows(&state, &viewer, overdue_only).await?))
}

#[utoipa::path(get, path = "/api/v1/directory", tag = "directory",
    responses((status = 200, body = Vec<OrganisationRow>)))]
async fn directory(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
) -> AppResult<Json<Vec<OrganisationRow>>> {
    Ok(Json(dir::organisation_rows(&state, &viewer, tr).await?))
}

/// An organisation of the region's directory, with the details of its kind.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganisation {
    /// The region's two-digit code.
    pub region: String,
    #[schema(schema_with = kinds)]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = institution_types)]
    pub institution_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialists: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = levels)]
    pub level: Option<String>,
}

/// Institutions: type and capacity; services: specialists; consilia: level.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = institution_types)]
    pub institution_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialists: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = levels)]
    pub level: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/directory", tag = "directory",
    request_body = NewOrganisation,
    responses((status = 201, body = Written), (status = 422, body = ErrorBody)))]
async fn add_organisation(
    State(state): State<AppState>,
    viewer: Viewer,
    body: ApiForm<NewOrganisation>,
) -> AppResult<Response> {
    Ok(created(
        dir::add_organisation_command(&state, &viewer, body.tr, &body.form).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/directory/{id}", tag = "directory",
    params(("id" = Uuid, Path)), request_body = OrganisationDetails,
    responses((status = 200, body = Written), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn change_details(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    body: ApiForm<OrganisationDetails>,
) -> AppResult<Response> {
    Ok(written(
        dir::change_details_command(&state, &viewer, body.tr, id, &body.form).await?,
    ))
}
