//! The JSON API: the pages' commands and queries for programmes, under `/api/v1`, described
//! by the OpenAPI document served at `/api/v1/openapi.json`.
//!
//! Same people, same rules: every route is added through the guard's [`Routes`] with the
//! same access rule as its page, and every handler calls the same scoped query or command
//! function as the page does. A command's body is a JSON object checked against its
//! documented type, then read by the page's own form reader, so a call is validated exactly
//! as the form is and refused with the same message. Calls use the signed-in session (the
//! `opora_session` cookie) and, for POST, the session's CSRF token in `X-CSRF-Token`
//! (from `GET /api/v1/me`). Errors are `{"error": code, "message": text}` in the
//! language of `Accept-Language` (Russian by default).

pub mod aid;
pub mod cases;
pub mod families;
pub mod import;
pub mod signal_kpi;
pub mod signals;
pub mod sittings;
pub mod weekly;

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fluent_templates::fluent_bundle::FluentValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::error::{AppError, AppResult};
use crate::i18n::{Lang, Tr};
use crate::pages::cases::FormFields;
use crate::pages::Refusal;

// Dates in the API (and in every view model it serialises) are ISO 8601 calendar dates.
time::serde::format_description!(pub date, Date, "[year]-[month]-[day]");

pub fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// Whether errors under `path` are answered as JSON: the JSON API and the ingestion API
/// (programmes, not people, read them).
pub fn speaks_json(path: &str) -> bool {
    is_api(path) || path.starts_with("/ingest/")
}

/// Every error answer of the API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programmes: `not-found`, `forbidden`, `unauthorized`,
    /// `stale-form` (no valid CSRF token), `invalid-body`, or the message key of a
    /// refusal, e.g. `case-error-ExitBeforePlacement`, `case-stale-form`.
    pub error: String,
    /// The same, for people, in the language of `Accept-Language`.
    pub message: String,
}

/// A refused command answers 422 with the refusal; nothing was written.
pub fn refused(refusal: Refusal) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(ErrorBody {
            error: refusal.code,
            message: refusal.message,
        }),
    )
        .into_response()
}

/// The id of the record a command created or changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Written {
    pub id: Uuid,
}

/// 201 with the new record's id, or the refusal.
pub fn created(outcome: Result<Uuid, Refusal>) -> Response {
    match outcome {
        Ok(id) => (StatusCode::CREATED, Json(Written { id })).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// 200 with the changed record's id, or the refusal.
pub fn written(outcome: Result<Uuid, Refusal>) -> Response {
    match outcome {
        Ok(id) => (StatusCode::OK, Json(Written { id })).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// A command's body: a JSON object of type `T` (checked, with unknown fields refused),
/// handed on as the fields of the page's form. `true`/`false` become `yes`/`no`, arrays
/// become repeated fields.
pub struct ApiForm<T> {
    pub form: FormFields,
    pub tr: Tr,
    /// The body as sent (for what does not flatten into fields, e.g. a list of objects).
    pub body: T,
}

fn bad_body(tr: Tr, status: StatusCode, key: &str, problem: Option<String>) -> Response {
    let message = match problem {
        Some(problem) => tr.with(key, &[("problem", FluentValue::from(problem))]),
        None => tr.t(key),
    };
    (
        status,
        Json(ErrorBody {
            error: "invalid-body".to_owned(),
            message,
        }),
    )
        .into_response()
}

fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_owned()),
        _ => None,
    }
}

impl<S, T> FromRequest<S> for ApiForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Serialize,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let tr = Tr::new(Lang::from_api_headers(request.headers()));
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return Err(bad_body(
                tr,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "api-not-json",
                None,
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| AppError::TooLarge.into_response())?;
        let typed: T = serde_json::from_slice(&bytes).map_err(|e| {
            bad_body(
                tr,
                StatusCode::UNPROCESSABLE_ENTITY,
                "api-invalid-body",
                Some(e.to_string()),
            )
        })?;
        let value = serde_json::to_value(&typed)
            .map_err(|e| AppError::Unexpected(e.into()).into_response())?;
        let serde_json::Value::Object(fields) = value else {
            return Err(bad_body(
                tr,
                StatusCode::UNPROCESSABLE_ENTITY,
                "api-not-json",
                None,
            ));
        };
        let mut pairs = Vec::new();
        for (name, value) in fields {
            match &value {
                serde_json::Value::Array(items) => {
                    pairs.extend(items.iter().filter_map(scalar).map(|v| (name.clone(), v)))
                }
                other => pairs.extend(scalar(other).map(|v| (name.clone(), v))),
            }
        }
        Ok(Self {
            form: FormFields::from_pairs(pairs),
            tr,
            body: typed,
        })
    }
}

/// A string that is one of `values`.
pub fn one_of(values: impl IntoIterator<Item = &'static str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}

/// A closed list of the domain (codes; the form readers take the Russian labels too).
pub fn codes<T: 'static>(
    all: &'static [(T, &'static str, &'static str)],
) -> utoipa::openapi::Object {
    one_of(all.iter().map(|(_, code, _)| *code))
}

/// The aid decisions a consilium review may send (an import's «not recorded» is not one).
pub fn review_aids() -> utoipa::openapi::Object {
    one_of(opora_domain::case::AidDecision::decided().map(|(_, code, _)| *code))
}

/// The signed-in user, and the CSRF token that POST calls send in `X-CSRF-Token`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub login: String,
    pub name: String,
    /// Role codes with their scopes.
    pub grants: Vec<MeGrant>,
    pub csrf_token: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeGrant {
    pub role: String,
    #[schema(value_type = Object)]
    pub scope: serde_json::Value,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "session",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(viewer: Viewer, session: Session) -> AppResult<Json<Me>> {
    let user = viewer.user()?;
    Ok(Json(Me {
        login: user.login.clone(),
        name: user.display_name.clone(),
        grants: user
            .grants
            .iter()
            .map(|g| {
                Ok(MeGrant {
                    role: g.role.code().to_owned(),
                    scope: serde_json::to_value(&g.scope)?,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?,
        csrf_token: crate::auth::csrf::token(&session).await?,
    }))
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "opora_session",
                "The session of a user signed in at /vhod.",
            ))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The session's token from GET /api/v1/me; required on every POST.",
            ))),
        );
    }
}

/// The answers every call can give besides its own, added to each operation that does not
/// list them: no session (401), a missing role or a stale CSRF token (403), a body that is
/// not what the call reads (415, 422), the database away or short of time (503).
struct CommonAnswers;

/// Adds to `operation` each of `answers` (status, description) it does not list yet, with
/// a JSON body of the schema `error`.
pub(crate) fn add_answers(
    operation: &mut utoipa::openapi::path::Operation,
    error: &str,
    answers: &[(&str, &str)],
) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    for (status, description) in answers {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(*description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(error)))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, true),
            ];
            for (operation, writes) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let mut common = vec![
                    ("400", "A parameter cannot be read (`bad-request`)."),
                    ("401", "Not signed in (`unauthorized`)."),
                    ("403", "The role does not allow it (`forbidden`), or the CSRF token is missing or stale (`stale-form`)."),
                    ("404", "Missing, or outside the user's places (`not-found`)."),
                    ("422", "A parameter or the body is not what the call reads (`invalid-body`, `bad-request`, `unstorable`: a value the database cannot store, such as a zero byte), or a rule refused it."),
                    ("503", "The database is away (`unavailable`, `Retry-After: 5`) or could not finish in time (`overloaded`, `Retry-After: 30`); nothing was changed."),
                ];
                if writes {
                    common.push(("413", "The body is too large (`too-large`)."));
                    common.push((
                        "415",
                        "The body is not of the call's content type (`bad-request`).",
                    ));
                }
                add_answers(operation, "ErrorBody", &common);
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Opora API", description = "«Вызов»: the register of children in institutions, cases, consilium sittings, families, the region's directory, the NGO operator's material aid to families, «Заступник»'s weekly connection reports and the signal operators' console. The same access rules and the same validation as the pages."),
    modifiers(&Security, &CommonAnswers),
    security(("session" = []), ("session" = [], "csrf" = [])),
    paths(
        me,
        cases::register, cases::open_case, cases::show_case, cases::record_fact,
        cases::tasks, cases::directory, cases::add_organisation, cases::change_details,
        sittings::sittings, sittings::hold, sittings::show, sittings::review,
        families::families, families::register, families::show, families::change,
        families::take_on,
        import::upload, import::preview, import::execute,
        aid::desk, aid::requests, aid::create, aid::show, aid::step, aid::upload,
        aid::download, aid::report, aid::deliveries,
        weekly::summary, weekly::reports, weekly::show, weekly::file, weekly::review,
        weekly::unlock,
        signals::queue, signals::show, signals::acknowledge, signals::dispatch,
        signals::en_route, signals::on_scene, signals::resolve, signals::link_case,
        signal_kpi::response_times,
    ),
    components(schemas(ErrorBody, Written))
)]
pub struct ApiDoc;

async fn openapi() -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(ApiDoc::openapi()),
    )
        .into_response()
}

pub fn routes() -> Routes {
    Routes::new()
        .get("/api/v1/openapi.json", Rule::Public, openapi)
        .get("/api/v1/me", Rule::SignedIn, me)
        .merge(cases::routes())
        .merge(sittings::routes())
        .merge(families::routes())
        .merge(import::routes())
        .merge(aid::routes())
        .merge(weekly::routes())
        .merge(signal_kpi::routes())
        .merge(signals::routes())
}
