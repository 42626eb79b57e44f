//! Import of an existing regional register: upload (checked, nothing written), the
//! row-by-row preview, then the import itself.

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{created, one_of, refused, ApiForm, ErrorBody, Written};
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::AppResult;
use crate::i18n::Tr;
use crate::pages::import::{self as page, ImportPreview, IMPORTERS};
use crate::pages::{RecordId, Refusal};
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/imports", Rule::Roles(IMPORTERS), upload)
        .get("/api/v1/imports/{id}", Rule::Roles(IMPORTERS), preview)
        .post("/api/v1/imports/{id}", Rule::Roles(IMPORTERS), execute)
}

/// The filled template (XLSX, XLS, ODS or CSV; up to 2 MB, 10,000 rows) and its region.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Upload {
    /// The region's two-digit code.
    region: String,
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[utoipa::path(post, path = "/api/v1/imports", tag = "import",
    request_body(content = Upload, content_type = "multipart/form-data"),
    responses((status = 201, body = Written), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let (region, file) = match page::read_upload(&mut multipart).await {
        Ok(read) => read,
        Err(key) => {
            let mut answer = refused(Refusal::new(tr, key));
            *answer.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(answer);
        }
    };
    Ok(created(
        page::upload_command(&state, &viewer, tr, &region, file).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "import",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ImportPreview), (status = 404, body = ErrorBody)))]
async fn preview(
    State(state): State<AppState>,
    viewer: Viewer,
    tr: Tr,
    RecordId(id): RecordId,
) -> AppResult<Json<ImportPreview>> {
    Ok(Json(page::import_preview(&state, &viewer, tr, id).await?))
}

/// `all` imports only if every row is valid; `valid` imports the valid rows.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Execute {
    #[schema(schema_with = modes)]
    pub mode: String,
    /// Skip the rows that look like a child already registered.
    #[serde(default)]
    pub skip_duplicates: bool,
}

fn modes() -> utoipa::openapi::Object {
    one_of(["all", "valid"])
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Imported {
    pub id: Uuid,
    pub imported: usize,
}

#[utoipa::path(post, path = "/api/v1/imports/{id}", tag = "import",
    params(("id" = Uuid, Path)), request_body = Execute,
    responses((status = 200, body = Imported), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn execute(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    body: ApiForm<Execute>,
) -> AppResult<Response> {
    Ok(
        match page::execute_command(&state, &viewer, body.tr, id, &body.form).await? {
            Ok(imported) => (StatusCode::OK, Json(Imported { id, imported })).into_response(),
            Err(refusal) => refused(refusal),
        },
    )
}
