//! `/healthz`: the process answers. `/readyz`: the database answers and every projection is
//! close enough to the log to serve fresh pages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde_json::json;

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let statuses = match opora_projections::status(state.log.pool()).await {
        Ok(statuses) => statuses,
        Err(error) => {
            tracing::warn!(%error, "readiness check: database unavailable");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "database"})),
            );
        }
    };
    let projections: Vec<_> = statuses
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "behind_events": s.behind,
                "lag_seconds": s.lag_seconds,
            })
        })
        .collect();
    let lagging = statuses
        .iter()
        .any(|s| s.lag_seconds > state.config.max_lag_seconds);
    let (code, status) = if lagging {
        (StatusCode::SERVICE_UNAVAILABLE, "lagging")
    } else {
        (StatusCode::OK, "ready")
    };
    (
        code,
        Json(json!({"status": status, "projections": projections})),
    )
}
