//! «Вызов»: the NGO operator's aid to families — the desk, requests and their steps,
//! scanned receipts, the report and the deliveries behind each of its figures.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use opora_domain::aid::{AidForm, AidPurpose, AidRequester};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{codes, created, one_of, refused, written, ApiForm, ErrorBody, Written};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use crate::pages::aid::{
    self as page, AidReport, Desk, ReportQuery, RequestFilter, RequestRow, RequestView,
    TracedDeliveries, READERS, REPORTERS, STEPS, WRITERS,
};
use crate::pages::{RecordId, Refusal};
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/aid/desk", Rule::Roles(READERS), desk)
        .get("/api/v1/aid/requests", Rule::Roles(READERS), requests)
        .post("/api/v1/aid/requests", Rule::Roles(WRITERS), create)
        .get("/api/v1/aid/requests/{id}", Rule::Roles(READERS), show)
        .post(
            "/api/v1/aid/requests/{id}/steps",
            Rule::Roles(WRITERS),
            step,
        )
        .post_upload(
            "/api/v1/aid/attachments",
            Rule::Roles(WRITERS),
            upload,
            page::MAX_ATTACHMENT + 64 * 1024,
        )
        .get(
            "/api/v1/aid/requests/{id}/attachments/{file}",
            Rule::Roles(READERS),
            download,
        )
        .get("/api/v1/aid/report", Rule::Roles(REPORTERS), report)
        .get("/api/v1/aid/deliveries", Rule::Roles(REPORTERS), deliveries)
}

fn forms() -> utoipa::openapi::Object {
    codes(AidForm::ALL)
}
fn requesters() -> utoipa::openapi::Object {
    codes(AidRequester::ALL)
}
fn purposes() -> utoipa::openapi::Object {
    codes(AidPurpose::ALL)
}
fn steps() -> utoipa::openapi::Object {
    one_of(STEPS)
}
fn statuses() -> utoipa::openapi::Object {
    one_of(["requested", "approved", "refused"])
}

#[utoipa::path(get, path = "/api/v1/aid/desk", tag = "aid",
    responses((status = 200, body = Desk)))]
async fn desk(State(state): State<AppState>, viewer: Viewer, tr: Tr) -> AppResult<Json<Desk>> {
    Ok(Json(page::desk_view(&state, &viewer, tr).await?))
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// Only this family's requests.
    #[serde(default)]
    pub family: Option<Uuid>,
    /// Only requests in this state.
    #[serde(default)]
    #[param(schema_with = statuses)]
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/aid/requests", tag = "aid", params(RequestsQuery),
    responses((status = 200, body = Vec<RequestRow>), (status = 422, body = ErrorBody)))]
async fn requests(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<RequestsQuery>,
) -> AppResult<Response> {
    let status = match query.status.as_deref() {
        None => None,
        Some("requested") => Some("requested"),
        Some("approved") => Some("approved"),
        Some("refused") => Some("refused"),
        Some(_) => return Ok(refused(Refusal::new(tr, "ngo-bad-status"))),
    };
    let filter = RequestFilter {
        family: query.family,
        status,
        ..RequestFilter::default()
    };
    Ok(Json(page::list_requests(&state, &viewer, tr, filter).await?).into_response())
}

/// A request for aid to the caller's NGO. `review` (a consilium review in the NGO's
/// inbox) makes it a request on that decision, for the case's family; otherwise `family`
/// (one of the NGO's families) and `requester` are required. Amounts as people type them:
/// `"10 000,50"` or `"10000.50"`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAidRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = requesters)]
    pub requester: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// `YYYY-MM-DD` or `DD.MM.YYYY`.
    pub on: String,
    #[schema(schema_with = purposes)]
    pub purpose: String,
    #[schema(schema_with = forms)]
    pub form: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_other: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// Children in the family the aid is for (1–30).
    pub children: u16,
    /// An administrator names the NGO (the region's NGO by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngo: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/aid/requests", tag = "aid", request_body = NewAidRequest,
    responses((status = 201, body = Written), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    body: ApiForm<NewAidRequest>,
) -> AppResult<Response> {
    Ok(created(
        page::create_request_command(&state, &viewer, body.tr, &body.form).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/aid/requests/{id}", tag = "aid",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RequestView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Json<RequestView>> {
    Ok(Json(page::request_view(&state, &viewer, tr, id).await?))
}

/// A step: `approve` (on, amount?, note?), `refuse` (on, reason), `deliver` (on, amount,
/// form, form_other?, supplier?, receipt?, attachment?), `correct` (delivery and the
/// figures of `deliver`, reason), `withdraw` (delivery, reason). `entries`, if given, must
/// equal the request's number of entries (a stale call is refused).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AidStep {
    #[schema(schema_with = steps)]
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = forms)]
    pub form: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_other: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// An id from `POST /api/v1/aid/attachments` (uploaded by the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/aid/requests/{id}/steps", tag = "aid",
    params(("id" = Uuid, Path)), request_body = AidStep,
    responses((status = 200, body = Written), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn step(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    body: ApiForm<AidStep>,
) -> AppResult<Response> {
    Ok(written(
        page::step_command(&state, &viewer, body.tr, id, &body.form).await?,
    ))
}

/// A scanned receipt: PDF, JPEG or PNG, at most 8 MiB, in the multipart field `file`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AttachmentUpload {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[utoipa::path(post, path = "/api/v1/aid/attachments", tag = "aid",
    request_body(content = AttachmentUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = Written), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    mut multipart: Multipart,
) -> AppResult<Response> {
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let Ok(bytes) = field.bytes().await else {
                    let mut answer = refused(Refusal::new(tr, "ngo-file-too-large"));
                    *answer.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                    return Ok(answer);
                };
                return Ok(created(
                    page::store_attachment(&state, &viewer, tr, &name, &bytes).await?,
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Ok(refused(Refusal::new(tr, "ngo-file-empty"))),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/aid/requests/{id}/attachments/{file}", tag = "aid",
    params(("id" = Uuid, Path), ("file" = Uuid, Path)),
    responses((status = 200, content_type = "application/octet-stream"),
              (status = 404, body = ErrorBody)))]
async fn download(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Path((id, file)): Path<(String, String)>,
) -> AppResult<Response> {
    let (Ok(id), Ok(file)) = (Uuid::parse_str(&id), Uuid::parse_str(&file)) else {
        return Err(AppError::NotFound);
    };
    let (info, bytes) = page::attachment_bytes(&state, &viewer, tr, id, file).await?;
    Ok(page::attachment_response(&info, bytes))
}

#[utoipa::path(get, path = "/api/v1/aid/report", tag = "aid", params(ReportQuery),
    responses((status = 200, body = AidReport), (status = 422, body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    Ok(match page::aid_report(&state, &viewer, tr, &query).await? {
        Ok(report) => Json(report).into_response(),
        Err(refusal) => refused(refusal),
    })
}

#[utoipa::path(get, path = "/api/v1/aid/deliveries", tag = "aid", params(ReportQuery),
    responses((status = 200, body = TracedDeliveries), (status = 422, body = ErrorBody)))]
async fn deliveries(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    Ok(
        match page::traced_deliveries(&state, &viewer, tr, &query).await? {
            Ok(traced) => Json(traced).into_response(),
            Err(refusal) => refused(refusal),
        },
    )
}
