//! «Заступник»: the response-time KPIs of the emergency signals, as the page
//! `/zastupnik/signaly/kpi` shows them — the same figures, the same scope (federal
//! analysts and administrators every region, a region's analyst its region, a signal
//! operator its regions; a region outside the scope is 404).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{refused, ErrorBody};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::AppResult;
use crate::i18n::Tr;
use crate::pages::signal_kpi::{self as page, KpiQuery, SignalKpi, READERS};
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new().get("/api/v1/signals/kpi", Rule::Roles(READERS), response_times)
}

/// Times from the press of the button to the first notification delivered, the operator's
/// acknowledgement, the first responder en route and on scene: count, median, 90th
/// percentile (linear interpolation) and the share within 3 minutes — overall, by region,
/// city, kind and hour of the press (the region's clock); outcomes and the share resolved
/// by the trusted circle. Drills are left out. The period is of local dates of the press
/// (the last 365 days by default); a date that cannot be read answers 422.
#[utoipa::path(get, path = "/api/v1/signals/kpi", tag = "signals", params(KpiQuery),
    responses((status = 200, body = SignalKpi), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn response_times(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    Query(query): Query<KpiQuery>,
) -> AppResult<Response> {
    Ok(match page::figures(&state, &viewer, tr, &query).await? {
        Ok(figures) => Json::<SignalKpi>(figures).into_response(),
        Err(refusal) => refused(refusal),
    })
}
