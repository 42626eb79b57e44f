//! «Заступник»: the weekly connection reports — file, read a municipality's weeks and a
//! report's history, the region's review and unlock, the summary. The same rules and the
//! same scope as the pages: a municipality files and reads its own; the region reads and
//! reviews its municipalities; federal analysts read everything.

use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{created, written, ApiForm, ErrorBody, Written};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use crate::pages::weekly::{
    self as page, ReportView, Summary, SummaryQuery, WeekRow, WeeklyScope, FILERS, READERS,
    REVIEWERS, SUMMARY,
};
use crate::pages::RecordId;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/weekly/summary", Rule::Roles(SUMMARY), summary)
        .get("/api/v1/weekly/reports", Rule::Roles(READERS), reports)
        .post("/api/v1/weekly/reports", Rule::Roles(FILERS), file)
        .get("/api/v1/weekly/reports/{id}", Rule::Roles(READERS), show)
        .post(
            "/api/v1/weekly/reports/{id}/review",
            Rule::Roles(REVIEWERS),
            review,
        )
        .post("/api/v1/weekly/unlock", Rule::Roles(REVIEWERS), unlock)
}

/// Per municipality (with `region`) or per region: stock figures as of the week (each
/// municipality's latest report, never a sum over weeks), the change from the week before,
/// statuses, who has not filed, the 52-week trend, completeness and timeliness.
#[utoipa::path(get, path = "/api/v1/weekly/summary", tag = "weekly", params(SummaryQuery),
    responses((status = 200, body = Summary), (status = 404, body = ErrorBody)))]
async fn summary(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<SummaryQuery>,
) -> AppResult<Json<Summary>> {
    Ok(Json(page::summary(&state, &viewer, tr, &query).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// The municipality (a department's own by default).
    #[serde(default)]
    pub municipality: Option<Uuid>,
    /// How many weeks back from the current one (1–104, default 12).
    #[serde(default)]
    pub weeks: Option<u16>,
}

/// A municipality's weeks, newest first: figures, status, whether the week is closed.
#[utoipa::path(get, path = "/api/v1/weekly/reports", tag = "weekly", params(ReportsQuery),
    responses((status = 200, body = Vec<WeekRow>), (status = 404, body = ErrorBody)))]
async fn reports(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<ReportsQuery>,
) -> AppResult<Json<Vec<WeekRow>>> {
    let scope = WeeklyScope::of(&viewer);
    let municipality = query
        .municipality
        .or_else(|| (scope.municipalities.len() == 1).then(|| scope.municipalities[0]))
        .ok_or(AppError::NotFound)?;
    let place = match page::place(&state, municipality).await? {
        Some(place) if scope.sees(&place.region, municipality) => place,
        _ => return Err(AppError::NotFound),
    };
    let schedule = page::schedule_of(&state, &place.region).await?;
    let current = schedule.week_at(time::OffsetDateTime::now_utc());
    let weeks = query.weeks.unwrap_or(12).clamp(1, 104);
    Ok(Json(
        page::history(&state, tr, &place, &schedule, current, weeks).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/weekly/reports/{id}", tag = "weekly",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ReportView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Json<ReportView>> {
    Ok(Json(page::report_view(&state, &viewer, tr, id).await?))
}

/// One school's line of a report.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchoolInput {
    pub school: String,
    pub children: u32,
    pub adults: u32,
    pub responsible_named: bool,
}

/// A week's report. Filing again for the same week supersedes the earlier filing (both stay
/// in the log); the same `command_id` twice files once. A drop of more than 20 % or a jump
/// of more than 3× from last week needs a `comment`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWeeklyReport {
    /// The municipality (a department's own by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub municipality: Option<Uuid>,
    /// The week's Friday: `YYYY-MM-DD` or `DD.MM.YYYY`.
    pub week: String,
    pub children: u32,
    pub adults: u32,
    pub schools: u32,
    pub schools_with_responsible: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Optional lines per school; they must add up to the totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_school: Vec<SchoolInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/weekly/reports", tag = "weekly",
    request_body = NewWeeklyReport,
    responses((status = 201, body = Written), (status = 422, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn file(
    State(state): State<AppState>,
    viewer: Viewer,
    body: ApiForm<NewWeeklyReport>,
) -> AppResult<Response> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, line) in body.body.by_school.iter().enumerate() {
        pairs.push((format!("school_{i}"), line.school.clone()));
        pairs.push((format!("school_{i}_children"), line.children.to_string()));
        pairs.push((format!("school_{i}_adults"), line.adults.to_string()));
        if line.responsible_named {
            pairs.push((format!("school_{i}_responsible"), "yes".into()));
        }
    }
    let mut form = body.form;
    form.extend(pairs);
    Ok(created(
        page::file_command(&state, &viewer, body.tr, &form).await?,
    ))
}

/// `decision`: `accept` (comment optional) or `return` (comment required).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/weekly/reports/{id}/review", tag = "weekly",
    params(("id" = Uuid, Path)), request_body = Review,
    responses((status = 200, body = Written), (status = 422, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn review(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    body: ApiForm<Review>,
) -> AppResult<Response> {
    Ok(written(
        page::review_command(&state, &viewer, body.tr, id, &body.form).await?,
    ))
}

/// Opens a closed week for one municipality for `days` days (1–30, default 3).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    pub municipality: Uuid,
    /// The week's Friday.
    pub week: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

#[utoipa::path(post, path = "/api/v1/weekly/unlock", tag = "weekly", request_body = Unlock,
    responses((status = 200, body = Written), (status = 422, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unlock(
    State(state): State<AppState>,
    viewer: Viewer,
    body: ApiForm<Unlock>,
) -> AppResult<Response> {
    Ok(written(
        page::unlock_command(&state, &viewer, body.tr, &body.form).await?,
    ))
}
