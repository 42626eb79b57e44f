//! «Заступник»: the operators' console as JSON — the open queue, one signal, and each step
//! of the response. The same scope and rules as the console pages: operators see and act
//! in the regions they serve; analysts read; the administrator reads and acts everywhere.
//! (The app's backend reports signals through the ingestion API, `/ingest/v1`, with an
//! integration key: see the README.)

use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{written, ApiForm, ErrorBody, Written};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::AppResult;
use crate::i18n::Tr;
use crate::pages::signals::{self as page, QueueRow, SignalView, OPERATORS, WATCHERS};
use crate::pages::RecordId;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/signals", Rule::Roles(WATCHERS), queue)
        .get("/api/v1/signals/{id}", Rule::Roles(WATCHERS), show)
        .post(
            "/api/v1/signals/{id}/acknowledge",
            Rule::Roles(OPERATORS),
            acknowledge,
        )
        .post(
            "/api/v1/signals/{id}/dispatch",
            Rule::Roles(OPERATORS),
            dispatch,
        )
        .post(
            "/api/v1/signals/{id}/en-route",
            Rule::Roles(OPERATORS),
            en_route,
        )
        .post(
            "/api/v1/signals/{id}/on-scene",
            Rule::Roles(OPERATORS),
            on_scene,
        )
        .post(
            "/api/v1/signals/{id}/resolve",
            Rule::Roles(OPERATORS),
            resolve,
        )
        .post(
            "/api/v1/signals/{id}/link-case",
            Rule::Roles(OPERATORS),
            link_case,
        )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegionQuery {
    /// One region's code (default: every region the viewer serves).
    #[serde(default)]
    pub region: Option<String>,
}

/// The open signals, those no operator has taken first, then by the time of the press.
#[utoipa::path(get, path = "/api/v1/signals", tag = "signals", params(RegionQuery),
    responses((status = 200, body = Vec<QueueRow>), (status = 404, body = ErrorBody)))]
async fn queue(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<RegionQuery>,
) -> AppResult<Json<Vec<QueueRow>>> {
    Ok(Json(
        page::open_signals(&state, &viewer, tr, query.region.as_deref()).await?,
    ))
}

/// A signal: its steps, its notifications with their receipts, its log.
#[utoipa::path(get, path = "/api/v1/signals/{id}", tag = "signals",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SignalView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Json<SignalView>> {
    Ok(Json(page::signal_view(&state, &viewer, tr, id).await?))
}

/// One step. `at` (RFC 3339, not in the future) records a step after the fact; otherwise
/// it happened now. `command_id` makes a retry idempotent.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `volunteer`, `police`, `mchs`, `security`, `medics`, `search_team` (and
    /// `trusted_adult` for on-scene): for dispatch, en-route and on-scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder: Option<String>,
    /// `trusted_circle`, `operators`, `emergency_services`, `false_alarm`: for resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The case number (or id) in the signal's region: for link-case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
}

async fn step(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    action: &str,
    body: ApiForm<Step>,
) -> AppResult<Response> {
    Ok(written(
        page::action_command(state, viewer, body.tr, id, action, &body.form).await?,
    ))
}

macro_rules! step_route {
    ($name:ident, $path:literal, $action:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "signals", request_body = Step,
                    params(("id" = Uuid, Path)),
                    responses((status = 200, body = Written), (status = 404, body = ErrorBody),
                              (status = 422, body = ErrorBody)))]
        async fn $name(
            State(state): State<AppState>,
            viewer: Viewer,
            RecordId(id): RecordId,
            body: ApiForm<Step>,
        ) -> AppResult<Response> {
            step(&state, &viewer, id, $action, body).await
        }
    };
}

step_route!(
    acknowledge,
    "/api/v1/signals/{id}/acknowledge",
    "acknowledge",
    "The operator takes the signal."
);
step_route!(
    dispatch,
    "/api/v1/signals/{id}/dispatch",
    "dispatch",
    "Sends responders (`responder`, `note`)."
);
step_route!(
    en_route,
    "/api/v1/signals/{id}/en-route",
    "en_route",
    "Responders set off (`responder`)."
);
step_route!(
    on_scene,
    "/api/v1/signals/{id}/on-scene",
    "on_scene",
    "Help arrived (`responder`)."
);
step_route!(
    resolve,
    "/api/v1/signals/{id}/resolve",
    "resolve",
    "Closes the signal (`outcome`, `note`)."
);
step_route!(
    link_case,
    "/api/v1/signals/{id}/link-case",
    "link_case",
    "Links the signal to a «Вызов» case (`case`)."
);
