//! «Вызов»: the register of children in institutions and each child's case.
//!
//! The register reads the `cases` projection, scoped like every personal-data query; names
//! are opened from the `persons` read model for permitted viewers only. The case page shows
//! the situation, the timeline straight from the log, action items and reviews, and one form
//! per kind of fact; every form goes to one route and one command.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::{Role, Text};
use opora_domain::case::{
    AidDecision, CaseAction, CaseCommand, CaseError, ExitKind, InstitutionType, LegalStatus,
    PlacementBasis, PlacementReason, Review, ReviewLevel,
};
use opora_domain::person::{PersonalData, Sealed};
use opora_domain::reference::RegionCode;
use opora_store::{CommandError, CommandMeta};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::Row;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Action};
use crate::auth::guard::{PersonalScope, Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::export;
use crate::i18n::{local_time, today_in, Tr};
use crate::pages::persons::Choice;
use crate::pages::{Outcome, RecordId, Refusal};
use crate::AppState;

/// Who works with cases (each within its places).
pub const ROLES: &[Role] = crate::pages::persons::ROLES;
const RECORD: &str = "case";
const PAGE_SIZE: i64 = 50;

pub fn routes() -> Routes {
    Routes::new()
        .get("/vyzov/reestr", Rule::Roles(ROLES), register)
        .get("/vyzov/reestr.csv", Rule::Roles(ROLES), export_csv)
        .get("/vyzov/reestr.xlsx", Rule::Roles(ROLES), export_xlsx)
        .get("/vyzov/dela/novoe", Rule::Roles(ROLES), new_case_form)
        .post("/vyzov/dela", Rule::Roles(ROLES), open_case)
        .get("/vyzov/dela/{id}", Rule::Roles(ROLES), show_case)
        .post("/vyzov/dela/{id}/zapis", Rule::Roles(ROLES), record_fact)
}

// ---------------------------------------------------------------------------------------
// The register
// ---------------------------------------------------------------------------------------

/// The register's filters (all optional; a flag is on when not empty).
#[derive(Debug, Default, Deserialize, Clone, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegisterQuery {
    /// Search by the child's name (for viewers who may read it) or the case number.
    #[serde(default)]
    pub q: String,
    /// A municipality's id.
    #[serde(default)]
    pub municipality: String,
    /// An institution type code (see the case fact schema).
    #[serde(default)]
    pub institution_type: String,
    /// A legal status code.
    #[serde(default)]
    pub legal_status: String,
    /// Not empty: only children over 6 months without a consilium review.
    #[serde(default)]
    pub needs_review: String,
    /// Not empty: only cases under the curator's personal control.
    #[serde(default)]
    pub control: String,
    /// Not empty: only cases with overdue action items.
    #[serde(default)]
    pub overdue: String,
    /// At least this many whole months in the institution.
    #[serde(default)]
    pub months: String,
    /// `name`, `placed` or `review`; by case number otherwise.
    #[serde(default)]
    pub sort: String,
    /// The page, from 0 (50 rows a page).
    #[serde(default)]
    pub page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterRow {
    pub id: Uuid,
    pub case_number: String,
    pub name: Option<String>,
    pub region: String,
    pub municipality: String,
    pub institution: String,
    pub institution_type: String,
    pub legal_status: String,
    #[serde(with = "crate::api::date::option")]
    pub placed_on: Option<Date>,
    pub months: i64,
    #[serde(with = "crate::api::date::option")]
    pub last_review: Option<Date>,
    pub needs_review: bool,
    pub under_control: bool,
    pub overdue_items: i64,
}

/// Register rows in scope matching the filters (all of them; names opened).
async fn register_rows(
    state: &AppState,
    scope: &PersonalScope,
    query: &RegisterQuery,
    tr: Tr,
    today: Date,
) -> AppResult<Vec<RegisterRow>> {
    let months: Option<i32> = query.months.trim().parse().ok();
    let municipality = Uuid::parse_str(query.municipality.trim()).ok();
    let rows = sqlx::query(
        "SELECT c.id, c.case_number, c.region_code, coalesce(r.name, c.region_code) AS region, \
                coalesce(m.name, '') AS municipality, coalesce(o.name, '') AS institution, \
                c.institution_type, c.legal_status, c.placed_on, c.last_review, c.under_control, \
                cases.needs_review(c.placed_on, c.last_review, $4) AS needs_review, \
                (SELECT count(*) FROM cases.action_item a WHERE a.case_id = c.id \
                    AND a.done_on IS NULL AND a.due < $4) AS overdue_items, \
                p.sealed \
           FROM cases.child_case c \
           LEFT JOIN reference.region r ON r.code = c.region_code \
           LEFT JOIN reference.municipality m ON m.id = c.municipality \
           LEFT JOIN reference.organisation o ON o.id = c.institution \
           LEFT JOIN persons.person p ON p.id = c.child \
          WHERE ($1 OR c.region_code = ANY($2) OR c.municipality = ANY($3)) \
            AND c.placed_on IS NOT NULL AND NOT c.closed \
            AND ($5::uuid IS NULL OR c.municipality = $5) \
            AND ($6 = '' OR c.institution_type = $6) \
            AND ($7 = '' OR c.legal_status = $7) \
            AND ($8 = '' OR cases.needs_review(c.placed_on, c.last_review, $4)) \
            AND ($9 = '' OR c.under_control) \
            AND ($10 = '' OR EXISTS (SELECT 1 FROM cases.action_item a WHERE a.case_id = c.id \
                    AND a.done_on IS NULL AND a.due < $4)) \
            AND ($11::int IS NULL OR c.placed_on <= ($4 - make_interval(months => $11))::date) \
          ORDER BY c.case_number",
    )
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .bind(today)
    .bind(municipality)
    .bind(query.institution_type.trim())
    .bind(query.legal_status.trim())
    .bind(query.needs_review.trim())
    .bind(query.control.trim())
    .bind(query.overdue.trim())
    .bind(months)
    .fetch_all(state.log.pool())
    .await?;
    let opened: Vec<Option<PersonalData>> =
        crate::pages::persons::open_sealed(state, &rows).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, personal) in rows.iter().zip(opened) {
        let placed_on: Option<Date> = row.try_get("placed_on")?;
        let institution_type: Option<String> = row.try_get("institution_type")?;
        let legal_status: Option<String> = row.try_get("legal_status")?;
        out.push(RegisterRow {
            id: row.try_get("id")?,
            case_number: row.try_get("case_number")?,
            name: personal.as_ref().map(PersonalData::full_name),
            region: row.try_get("region")?,
            municipality: row.try_get("municipality")?,
            institution: row.try_get("institution")?,
            institution_type: institution_type
                .map(|c| tr.of("institution-type", &c))
                .unwrap_or_default(),
            legal_status: legal_status
                .map(|c| tr.of("legal-status", &c))
                .unwrap_or_default(),
            months: placed_on.map_or(0, |p| months_between(p, today)),
            placed_on,
            last_review: row.try_get("last_review")?,
            needs_review: row.try_get("needs_review")?,
            under_control: row.try_get("under_control")?,
            overdue_items: row.try_get("overdue_items")?,
        });
    }
    let needle = query.q.trim().to_lowercase();
    if !needle.is_empty() {
        out.retain(|row| {
            row.case_number.to_lowercase().contains(&needle)
                || row.name.as_ref().is_some_and(|n| {
                    n.to_lowercase()
                        .replace('ё', "е")
                        .contains(&needle.replace('ё', "е"))
                })
        });
    }
    match query.sort.as_str() {
        "name" => out.sort_by(|a, b| a.name.cmp(&b.name)),
        "placed" => out.sort_by_key(|r| r.placed_on),
        "review" => out.sort_by_key(|r| (!r.needs_review, r.last_review)),
        _ => {}
    }
    Ok(out)
}

/// Whole months from `from` to `to`.
pub fn months_between(from: Date, to: Date) -> i64 {
    let mut months = (i64::from(to.year()) - i64::from(from.year())) * 12
        + (i64::from(to.month() as u8) - i64::from(from.month() as u8));
    if to.day() < from.day() {
        months -= 1;
    }
    months.max(0)
}

/// The viewer's local date: the zone of its (first) region, Moscow otherwise.
async fn viewer_today(state: &AppState, scope: &PersonalScope) -> AppResult<Date> {
    let zone: Option<String> = match scope.regions.first() {
        Some(code) => {
            sqlx::query_scalar("SELECT time_zone FROM reference.region WHERE code = $1")
                .bind(code)
                .fetch_optional(state.log.pool())
                .await?
        }
        None => None,
    };
    Ok(today_in(zone.as_deref().unwrap_or("Europe/Moscow")))
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/register.html")]
struct RegisterPage {
    c: Chrome,
    query: RegisterQuery,
    rows: Vec<RegisterRow>,
    total: usize,
    needing_review: usize,
    page: i64,
    pages: i64,
    municipalities: Vec<Choice>,
    institution_types: Vec<Choice>,
    legal_statuses: Vec<Choice>,
    query_string: String,
}

/// The consilium's aid decisions a form offers ([`AidDecision::decided`]).
pub(crate) fn review_aids(tr: Tr) -> Vec<Choice> {
    choices(
        tr,
        "aid",
        &AidDecision::decided().copied().collect::<Vec<_>>(),
    )
}

pub(crate) fn choices<T: Copy>(
    tr: Tr,
    list: &str,
    all: &[(T, &'static str, &'static str)],
) -> Vec<Choice> {
    all.iter()
        .map(|(_, code, _)| Choice {
            value: (*code).to_owned(),
            label: tr.of(list, code),
        })
        .collect()
}

/// One page of the register (the viewing is logged as a list of personal data).
#[derive(Serialize, ToSchema)]
pub struct RegisterList {
    /// Children matching the filters, on every page.
    pub total: usize,
    pub needing_review: usize,
    /// From 0.
    pub page: i64,
    pub pages: i64,
    pub rows: Vec<RegisterRow>,
}

pub(crate) async fn register_list(
    state: &AppState,
    viewer: &Viewer,
    query: &RegisterQuery,
    tr: Tr,
) -> AppResult<RegisterList> {
    let scope = viewer.personal_scope();
    let today = viewer_today(state, &scope).await?;
    let all = register_rows(state, &scope, query, tr, today).await?;
    audit::record(state, viewer, Action::List, Some(RECORD), None).await?;
    let total = all.len();
    let needing_review = all.iter().filter(|r| r.needs_review).count();
    let pages = ((total as i64) + PAGE_SIZE - 1) / PAGE_SIZE;
    let page = query.page.unwrap_or(0).clamp(0, pages.max(1) - 1);
    let rows = all
        .into_iter()
        .skip((page * PAGE_SIZE) as usize)
        .take(PAGE_SIZE as usize)
        .collect();
    Ok(RegisterList {
        total,
        needing_review,
        page,
        pages,
        rows,
    })
}

async fn register(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<RegisterQuery>,
) -> AppResult<RegisterPage> {
    let scope = viewer.personal_scope();
    let RegisterList {
        total,
        needing_review,
        page,
        pages,
        rows,
    } = register_list(&state, &viewer, &query, c.tr).await?;
    let municipalities = sqlx::query(
        "SELECT id, name FROM reference.municipality \
          WHERE $1 OR region_code = ANY($2) OR id = ANY($3) ORDER BY name",
    )
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .fetch_all(state.log.pool())
    .await?
    .iter()
    .map(|row| {
        Ok(Choice {
            value: row.try_get::<Uuid, _>("id")?.to_string(),
            label: row.try_get("name")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let query_string = serde_urlencoded_like(&query);
    Ok(RegisterPage {
        institution_types: choices(c.tr, "institution-type", InstitutionType::ALL),
        legal_statuses: choices(c.tr, "legal-status", LegalStatus::ALL),
        c,
        query,
        rows,
        total,
        needing_review,
        page,
        pages,
        municipalities,
        query_string,
    })
}

/// The filters as a query string (for paging and export links), without the page.
fn serde_urlencoded_like(query: &RegisterQuery) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("q", query.q.as_str()),
            ("municipality", &query.municipality),
            ("institution_type", &query.institution_type),
            ("legal_status", &query.legal_status),
            ("needs_review", &query.needs_review),
            ("control", &query.control),
            ("overdue", &query.overdue),
            ("months", &query.months),
            ("sort", &query.sort),
        ])
        .finish()
}

async fn export_csv(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<RegisterQuery>,
) -> AppResult<Response> {
    let (headers, rows) = register_table(&state, &c, &viewer, &query).await?;
    Ok(export::download(
        export::csv(&headers, &rows)?,
        "reestr.csv",
    ))
}

async fn export_xlsx(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<RegisterQuery>,
) -> AppResult<Response> {
    let (headers, rows) = register_table(&state, &c, &viewer, &query).await?;
    let sheet = c.tr.t("register-sheet");
    Ok(export::download(
        export::xlsx(&sheet, &headers, &rows)?,
        "reestr.xlsx",
    ))
}

/// The filtered register as a table for export (logged as an export of personal data).
async fn register_table(
    state: &AppState,
    c: &Chrome,
    viewer: &Viewer,
    query: &RegisterQuery,
) -> AppResult<(Vec<String>, Vec<Vec<String>>)> {
    let scope = viewer.personal_scope();
    let today = viewer_today(state, &scope).await?;
    let rows = register_rows(state, &scope, query, c.tr, today).await?;
    audit::record(state, viewer, Action::Export, Some(RECORD), None).await?;
    let tr = c.tr;
    let headers = [
        "case-number",
        "person-name",
        "csv-region",
        "csv-municipality",
        "case-institution",
        "case-institution-type",
        "case-legal-status",
        "case-placed-on",
        "case-months",
        "case-last-review",
        "case-needs-review",
        "case-under-control",
        "case-overdue-items",
    ]
    .map(|k| tr.t(k))
    .to_vec();
    let yes_no = |b: bool| tr.t(if b { "yes" } else { "no" });
    let rows = rows
        .into_iter()
        .map(|r| {
            vec![
                r.case_number,
                r.name.unwrap_or_default(),
                r.region,
                r.municipality,
                r.institution,
                r.institution_type,
                r.legal_status,
                r.placed_on.map(|d| tr.date(&d)).unwrap_or_default(),
                r.months.to_string(),
                r.last_review.map(|d| tr.date(&d)).unwrap_or_default(),
                yes_no(r.needs_review),
                yes_no(r.under_control),
                r.overdue_items.to_string(),
            ]
        })
        .collect();
    Ok((headers, rows))
}

// ---------------------------------------------------------------------------------------
// Opening a case
// ---------------------------------------------------------------------------------------

/// A child (a person record) in the viewer's scope: region, municipality, birth date.
async fn child_in_scope(
    state: &AppState,
    viewer: &Viewer,
    person: Uuid,
) -> AppResult<(RegionCode, Option<Uuid>, Option<PersonalData>)> {
    let scope = viewer.personal_scope();
    let row = sqlx::query(
        "SELECT region_code, municipality, sealed FROM persons.person \
          WHERE id = $1 AND kind = 'child' AND ($2 OR region_code = ANY($3) OR municipality = ANY($4))",
    )
    .bind(person)
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .fetch_optional(state.log.pool())
    .await?
    .ok_or(AppError::NotFound)?;
    let region: String = row.try_get("region_code")?;
    let sealed: Option<Json<Sealed>> = row.try_get("sealed")?;
    let personal = match sealed {
        Some(Json(s)) => state.vault.open(&s).await?,
        None => None,
    };
    Ok((
        RegionCode::parse(&region)?,
        row.try_get("municipality")?,
        personal,
    ))
}

#[derive(Deserialize)]
pub struct NewCaseQuery {
    #[serde(default)]
    person: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/new.html")]
struct NewCasePage {
    c: Chrome,
    person: Uuid,
    name: String,
    today: Date,
    command_id: Uuid,
    error: Option<String>,
}

async fn new_case_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    person: Uuid,
) -> AppResult<NewCasePage> {
    let (region, _, personal) = child_in_scope(state, viewer, person).await?;
    Ok(NewCasePage {
        name: personal.map_or_else(|| c.tr.t("person-erased"), |p| p.full_name()),
        today: region_today(state, &region).await?,
        c,
        person,
        command_id: Uuid::now_v7(),
        error: None,
    })
}

async fn new_case_form(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<NewCaseQuery>,
) -> AppResult<NewCasePage> {
    let person = Uuid::parse_str(query.person.trim()).map_err(|_| AppError::NotFound)?;
    new_case_page(&state, c, &viewer, person).await
}

pub(crate) async fn region_today(state: &AppState, region: &RegionCode) -> AppResult<Date> {
    Ok(today_in(&region_zone(state, region.as_str()).await?))
}

/// The region's IANA time zone (Moscow for a region not in the reference data).
pub(crate) async fn region_zone(state: &AppState, region: &str) -> AppResult<String> {
    let zone: Option<String> =
        sqlx::query_scalar("SELECT time_zone FROM reference.region WHERE code = $1")
            .bind(region)
            .fetch_optional(state.log.pool())
            .await?;
    Ok(zone.unwrap_or_else(|| "Europe/Moscow".to_owned()))
}

/// The next case number of the region and year: «16-2026-00012».
pub(crate) async fn next_case_number(
    state: &AppState,
    region: &RegionCode,
    year: i32,
) -> AppResult<String> {
    let number: i32 = sqlx::query_scalar(
        "INSERT INTO access.case_number (region_code, year, last) VALUES ($1, $2, 1) \
         ON CONFLICT (region_code, year) DO UPDATE SET last = access.case_number.last + 1 \
         RETURNING last",
    )
    .bind(region.as_str())
    .bind(year)
    .fetch_one(state.log.pool())
    .await?;
    Ok(format!("{}-{year}-{number:05}", region.as_str()))
}

/// The case id of an opening command: a form sent twice opens one case.
const CASE_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4341_5345_0000_0000_0001);

/// Opens a case for a child in the viewer's scope (out of scope: not found). The case id
/// comes from the command id, so the same form or call sent twice opens one case.
pub(crate) async fn open_case_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<Uuid> {
    let Ok(person) = Uuid::parse_str(form.get("person")) else {
        return Ok(Err(Refusal::new(tr, "case-choose-child")));
    };
    let (region, municipality, personal) = child_in_scope(state, viewer, person).await?;
    let today = region_today(state, &region).await?;
    let command_id = form.command_id();
    let id = Uuid::new_v5(&CASE_NAMESPACE, command_id.as_bytes());
    let Some(on) = opora_domain::parse_date(form.get("on")) else {
        return Ok(Err(Refusal::new(tr, "case-bad-date")));
    };
    let exists = state
        .log
        .stream_length("ChildCase", &id.to_string())
        .await?
        > 0;
    if exists {
        return Ok(Ok(id));
    }
    let case_number = next_case_number(state, &region, on.year()).await?;
    let family = crate::pages::families::family_of(state, person).await?;
    let command = CaseCommand {
        on,
        today,
        born: personal.as_ref().map(|p| p.birth_date),
        action: CaseAction::Open {
            child: person,
            case_number,
            region,
            municipality,
            family,
        },
    };
    match state
        .cases
        .execute(
            &id.to_string(),
            command,
            &CommandMeta::new(viewer.actor()).with_command_id(command_id),
        )
        .await
    {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(error)) => Ok(Err(case_error(tr, &error))),
        Err(error) => Err(error.into()),
    }
}

async fn open_case(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    let refusal = match open_case_command(&state, &viewer, c.tr, &form).await? {
        Ok(id) => return Ok(Redirect::to(&format!("/vyzov/dela/{id}")).into_response()),
        Err(refusal) => refusal,
    };
    let person = Uuid::parse_str(form.get("person")).map_err(|_| AppError::NotFound)?;
    let mut page = new_case_page(&state, c, &viewer, person).await?;
    page.command_id = form.command_id();
    page.error = Some(refusal.message);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// A refusal in the user's language: the message `case-error-<Variant>` with the error's
/// fields as arguments.
pub fn case_error(tr: Tr, error: &CaseError) -> Refusal {
    domain_refusal(tr, "case-error", error)
}

/// A domain error in the user's language: the message `<prefix>-<Variant>` with the
/// error's fields as arguments (the error's own Russian text if there is no such message).
pub fn domain_refusal<E: Serialize + std::fmt::Display>(
    tr: Tr,
    prefix: &str,
    error: &E,
) -> Refusal {
    use fluent_templates::fluent_bundle::FluentValue;
    let value = serde_json::to_value(error).unwrap_or_default();
    let (variant, fields) = match &value {
        serde_json::Value::String(variant) => (variant.clone(), serde_json::Map::new()),
        serde_json::Value::Object(map) => match map.iter().next() {
            Some((variant, serde_json::Value::Object(fields))) => (variant.clone(), fields.clone()),
            Some((variant, _)) => (variant.clone(), serde_json::Map::new()),
            None => (String::new(), serde_json::Map::new()),
        },
        _ => (String::new(), serde_json::Map::new()),
    };
    let names = [
        "date",
        "since",
        "sequence",
        "problem",
        "requested",
        "approved",
        "limit",
        "responsible",
        "schools",
        "children",
        "pupils",
        "school",
        "total",
        "by_school",
        "previous",
        "current",
        "week",
        "operator",
        "responder",
    ];
    let args: Vec<(&'static str, FluentValue<'static>)> = names
        .into_iter()
        .filter_map(|name| {
            fields.get(name).map(|v| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (name, FluentValue::from(text))
            })
        })
        .collect();
    let key = format!("{prefix}-{variant}");
    let message = match tr.try_t(&key) {
        Some(_) => tr.with(&key, &args),
        None => error.to_string(),
    };
    Refusal { code: key, message }
}

// ---------------------------------------------------------------------------------------
// The case page
// ---------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct Entry {
    pub sequence: i64,
    pub what: String,
    pub details: String,
    pub on: String,
    pub recorded: String,
    pub actor: String,
    pub voided: bool,
    pub voidable: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ItemRow {
    pub item: Uuid,
    pub action: String,
    pub executor: String,
    #[serde(with = "crate::api::date")]
    pub due: Date,
    #[serde(with = "crate::api::date::option")]
    pub done_on: Option<Date>,
    pub overdue: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ReviewRow {
    #[serde(with = "crate::api::date")]
    pub held_on: Date,
    pub level: String,
    pub assessments: String,
    pub aid: String,
    #[serde(with = "crate::api::date::option")]
    pub return_by: Option<Date>,
    #[serde(with = "crate::api::date::option")]
    pub next_review: Option<Date>,
}

#[derive(Serialize, ToSchema)]
pub struct CaseView {
    pub id: Uuid,
    pub case_number: String,
    pub child: Uuid,
    pub name: Option<String>,
    #[serde(with = "crate::api::date::option")]
    pub birth_date: Option<Date>,
    pub region: String,
    pub region_code: String,
    pub time_zone: String,
    pub municipality: String,
    pub closed: bool,
    pub placed: bool,
    pub institution: String,
    pub institution_type: String,
    #[serde(with = "crate::api::date::option")]
    pub placed_on: Option<Date>,
    pub months: i64,
    pub legal_status: String,
    pub under_control: bool,
    #[serde(with = "crate::api::date::option")]
    pub last_review: Option<Date>,
    #[serde(with = "crate::api::date::option")]
    pub next_review: Option<Date>,
    pub needs_review: bool,
    pub accompaniment: bool,
    pub parental_rights: String,
    pub last_exit: String,
    pub entries: i64,
}

/// A case as the case page and the API show it.
#[derive(Serialize, ToSchema)]
pub struct CaseDetail {
    pub case: CaseView,
    /// Newest first.
    pub timeline: Vec<Entry>,
    pub items: Vec<ItemRow>,
    pub reviews: Vec<ReviewRow>,
    /// Aid the NGO operator delivered to the child's family.
    pub aid: crate::pages::aid::CaseAid,
    /// «Заступник» signals an operator linked to this case, newest first.
    pub signals: Vec<crate::pages::signals::CaseSignal>,
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/show.html")]
struct CasePage {
    c: Chrome,
    case: CaseView,
    aid: crate::pages::aid::CaseAid,
    signals: Vec<crate::pages::signals::CaseSignal>,
    timeline: Vec<Entry>,
    items: Vec<ItemRow>,
    reviews: Vec<ReviewRow>,
    institutions: Vec<Choice>,
    services: Vec<Choice>,
    institution_types: Vec<Choice>,
    bases: Vec<Choice>,
    reasons: Vec<Choice>,
    legal_statuses: Vec<Choice>,
    levels: Vec<Choice>,
    aids: Vec<Choice>,
    exits: Vec<Choice>,
    today: Date,
    error: Option<String>,
    notice: Option<String>,
}

/// The case if the viewer's scope covers it; otherwise `NotFound` (and the refusal logged).
pub(crate) async fn case_in_scope(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    tr: Tr,
) -> AppResult<CaseView> {
    let scope = viewer.personal_scope();
    let row = sqlx::query(
        "SELECT c.*, coalesce(r.name, c.region_code) AS region, \
                coalesce(r.time_zone, 'Europe/Moscow') AS time_zone, \
                coalesce(m.name, '') AS municipality_name, coalesce(o.name, '') AS institution_name, \
                cases.needs_review(c.placed_on, c.last_review, \
                    (now() AT TIME ZONE coalesce(r.time_zone, 'Europe/Moscow'))::date) AS needs_review, \
                p.sealed \
           FROM cases.child_case c \
           LEFT JOIN reference.region r ON r.code = c.region_code \
           LEFT JOIN reference.municipality m ON m.id = c.municipality \
           LEFT JOIN reference.organisation o ON o.id = c.institution \
           LEFT JOIN persons.person p ON p.id = c.child \
          WHERE c.id = $1 AND ($2 OR c.region_code = ANY($3) OR c.municipality = ANY($4))",
    )
    .bind(id)
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .fetch_optional(state.log.pool())
    .await?;
    let row = audit::found(state, viewer, RECORD, id, row).await?;
    let sealed: Option<Json<Sealed>> = row.try_get("sealed")?;
    let personal: Option<PersonalData> = match sealed {
        Some(Json(s)) => state.vault.open(&s).await?,
        None => None,
    };
    let time_zone: String = row.try_get("time_zone")?;
    let today = today_in(&time_zone);
    let placed_on: Option<Date> = row.try_get("placed_on")?;
    let last_review: Option<Date> = row.try_get("last_review")?;
    let needs_review: bool = row.try_get("needs_review")?;
    let code = |col: &str| -> Result<Option<String>, sqlx::Error> { row.try_get(col) };
    Ok(CaseView {
        id,
        case_number: row.try_get("case_number")?,
        child: row.try_get("child")?,
        name: personal.as_ref().map(PersonalData::full_name),
        birth_date: personal.as_ref().map(|p| p.birth_date),
        region: row.try_get("region")?,
        region_code: row.try_get("region_code")?,
        time_zone,
        municipality: row.try_get("municipality_name")?,
        closed: row.try_get("closed")?,
        placed: placed_on.is_some(),
        institution: row.try_get("institution_name")?,
        institution_type: code("institution_type")?
            .map(|c| tr.of("institution-type", &c))
            .unwrap_or_default(),
        months: placed_on.map_or(0, |p| months_between(p, today)),
        placed_on,
        legal_status: code("legal_status")?
            .map(|c| tr.of("legal-status", &c))
            .unwrap_or_default(),
        under_control: row.try_get("under_control")?,
        last_review,
        next_review: row.try_get("next_review")?,
        needs_review,
        accompaniment: row.try_get::<Option<Uuid>, _>("accompaniment")?.is_some(),
        parental_rights: tr.of("rights", &row.try_get::<String, _>("parental_rights")?),
        last_exit: code("last_exit")?
            .map(|c| tr.of("exit", &c))
            .unwrap_or_default(),
        entries: i64::from(row.try_get::<i32, _>("entries")?),
    })
}

/// One entry of the timeline, described for people.
fn describe(tr: Tr, event_type: &str, payload: &serde_json::Value) -> String {
    let body = payload.get(event_type).cloned().unwrap_or_default();
    let field = |name: &str| {
        body.get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    match event_type {
        "CaseOpened" => field("case_number"),
        "ChildPlaced" => format!(
            "{}; {}; {}",
            tr.of("institution-type", &field("institution_type")),
            tr.of("basis", &field("basis")),
            tr.of("legal-status", &field("legal_status"))
        ),
        "ChildTransferred" => tr.of("institution-type", &field("institution_type")),
        "LegalStatusChanged" => tr.of("legal-status", &field("legal_status")),
        "ConsiliumReviewRecorded" => format!(
            "{}; {}",
            tr.of("level", &field("level")),
            tr.of("aid", &field("aid"))
        ),
        "ActionItemSet" => {
            let mut text = format!("{} — {}", field("action"), field("executor"));
            let due = body
                .get("due")
                .and_then(|v| serde_json::from_value::<Date>(v.clone()).ok());
            if let Some(due) = due {
                text.push_str(&format!(
                    "; {}: {}",
                    tr.t("case-item-due").to_lowercase(),
                    opora_domain::format_date(due)
                ));
            }
            text
        }
        "ChildLeftInstitution" => tr.of("exit", &field("exit")),
        "CaseClosed" | "CaseReopened" => field("reason"),
        "EntryVoided" => format!(
            "№ {} — {}",
            body.get("sequence")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            field("reason")
        ),
        _ => String::new(),
    }
}

/// A case with its timeline, action items and reviews (the viewing is logged).
pub(crate) async fn case_detail(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    tr: Tr,
) -> AppResult<CaseDetail> {
    let case = case_in_scope(state, viewer, id, tr).await?;
    audit::record(
        state,
        viewer,
        Action::View,
        Some(RECORD),
        Some(&id.to_string()),
    )
    .await?;
    let rows = sqlx::query(
        "SELECT sequence, event_type, payload, actor, recorded_at, effective_date FROM event \
          WHERE aggregate_type = 'ChildCase' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(state.log.pool())
    .await?;
    let mut voided = Vec::new();
    for row in &rows {
        let payload: serde_json::Value = row.try_get("payload")?;
        if let Some(sequence) = payload
            .get("EntryVoided")
            .and_then(|b| b.get("sequence"))
            .and_then(serde_json::Value::as_i64)
        {
            voided.push(sequence);
        }
    }
    let mut timeline = Vec::with_capacity(rows.len());
    for row in &rows {
        let sequence: i64 = row.try_get("sequence")?;
        let event_type: String = row.try_get("event_type")?;
        let payload: serde_json::Value = row.try_get("payload")?;
        let recorded_at: OffsetDateTime = row.try_get("recorded_at")?;
        let effective: Option<Date> = row.try_get("effective_date")?;
        let actor: Option<String> = row.try_get("actor")?;
        timeline.push(Entry {
            sequence,
            what: tr.of("event", &event_type),
            details: describe(tr, &event_type, &payload),
            on: effective.map(|d| tr.date(&d)).unwrap_or_default(),
            recorded: local_time(&recorded_at, &case.time_zone),
            actor: actor
                .unwrap_or_default()
                .trim_start_matches("user:")
                .to_owned(),
            voided: voided.contains(&sequence),
            voidable: sequence > 1 && event_type != "EntryVoided" && !voided.contains(&sequence),
        });
    }
    let mut case = case;
    case.entries = rows.len() as i64;
    timeline.reverse();
    let today = today_in(&case.time_zone);
    let items = sqlx::query(
        "SELECT item, action, executor, due, done_on FROM cases.action_item \
          WHERE case_id = $1 ORDER BY done_on IS NOT NULL, due",
    )
    .bind(id)
    .fetch_all(state.log.pool())
    .await?
    .iter()
    .map(|row| {
        let due: Date = row.try_get("due")?;
        let done_on: Option<Date> = row.try_get("done_on")?;
        Ok(ItemRow {
            item: row.try_get("item")?,
            action: row.try_get("action")?,
            executor: row.try_get("executor")?,
            overdue: done_on.is_none() && due < today,
            due,
            done_on,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let yes_no = |v: Option<bool>| match v {
        Some(true) => tr.t("yes"),
        Some(false) => tr.t("no"),
        None => "—".to_owned(),
    };
    let reviews =
        sqlx::query("SELECT * FROM cases.review WHERE case_id = $1 ORDER BY held_on DESC")
            .bind(id)
            .fetch_all(state.log.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(ReviewRow {
                    held_on: row.try_get("held_on")?,
                    level: tr.of("level", &row.try_get::<String, _>("level")?),
                    assessments: format!(
                        "{}: {}; {}: {}; {}: {}; {}: {}",
                        tr.t("review-placement-justified"),
                        yes_no(row.try_get("placement_justified")?),
                        tr.t("review-stay-justified"),
                        yes_no(row.try_get("stay_justified")?),
                        tr.t("review-claim-justified"),
                        yes_no(row.try_get("parental_claim_justified")?),
                        tr.t("review-return-possible"),
                        yes_no(row.try_get("return_possible")?),
                    ),
                    aid: tr.of("aid", &row.try_get::<String, _>("aid")?),
                    return_by: row.try_get("return_by")?,
                    next_review: row.try_get("next_review")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let family: Option<Uuid> =
        sqlx::query_scalar("SELECT family FROM cases.child_case WHERE id = $1")
            .bind(id)
            .fetch_one(state.log.pool())
            .await?;
    Ok(CaseDetail {
        aid: crate::pages::aid::case_aid(state, tr, family).await?,
        signals: crate::pages::signals::case_signals(state, tr, id, &case.time_zone).await?,
        case,
        timeline,
        items,
        reviews,
    })
}

async fn load_case_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    id: Uuid,
    error: Option<String>,
    notice: Option<String>,
) -> AppResult<CasePage> {
    let tr = c.tr;
    let CaseDetail {
        case,
        timeline,
        items,
        reviews,
        aid,
        signals,
    } = case_detail(state, viewer, id, tr).await?;
    let today = today_in(&case.time_zone);
    let region = Some(vec![case.region_code.clone()]);
    let organisations = |kind: &'static str| {
        crate::pages::persons::organisation_choices(state.log.pool(), kind, region.as_deref())
    };
    Ok(CasePage {
        institutions: organisations("institution").await?,
        services: organisations("family_service").await?,
        institution_types: choices(tr, "institution-type", InstitutionType::ALL),
        bases: choices(tr, "basis", PlacementBasis::ALL),
        reasons: choices(tr, "reason", PlacementReason::ALL),
        legal_statuses: choices(tr, "legal-status", LegalStatus::ALL),
        levels: choices(tr, "level", ReviewLevel::ALL),
        aids: review_aids(tr),
        exits: choices(tr, "exit", ExitKind::ALL),
        c,
        case,
        aid,
        signals,
        timeline,
        items,
        reviews,
        today,
        error,
        notice,
    })
}

async fn show_case(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    Query(query): Query<crate::pages::NoticeQuery>,
) -> AppResult<CasePage> {
    let notice = query.notice(c.tr);
    load_case_page(&state, c, &viewer, id, None, notice).await
}

/// The fields of a form, by name (repeated names kept, for check boxes).
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(raw: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(raw)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }
    /// A check box or yes/no field: ticked.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), "1" | "yes" | "true" | "on")
    }
    /// The form's command id (a fresh one if it has none: then it is not idempotent).
    pub fn command_id(&self) -> Uuid {
        Uuid::parse_str(self.get("command_id")).unwrap_or_else(|_| Uuid::now_v7())
    }
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }
    pub fn extend(&mut self, pairs: Vec<(String, String)>) {
        self.0.extend(pairs);
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The actions [`parse_action`] reads.
pub const ACTIONS: &[&str] = &[
    "place",
    "transfer",
    "legal_status",
    "review",
    "item",
    "item_done",
    "control",
    "release",
    "visit",
    "accompaniment_start",
    "accompaniment_end",
    "rights_restricted",
    "rights_removed",
    "rights_restored",
    "exit",
    "prevented",
    "close",
    "reopen",
    "void",
];

/// What is wrong with the form (a message key), or the action it asks for.
pub(crate) fn parse_action(form: &FormFields) -> Result<CaseAction, &'static str> {
    let uuid = |name: &str| Uuid::parse_str(form.get(name)).map_err(|_| "case-choose-organisation");
    let date = |name: &str| opora_domain::parse_date(form.get(name));
    let optional_date = |name: &str| -> Result<Option<Date>, &'static str> {
        match form.get(name) {
            "" => Ok(None),
            raw => opora_domain::parse_date(raw)
                .map(Some)
                .ok_or("case-bad-date"),
        }
    };
    let assessment = |name: &str| match form.get(name) {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    };
    let text = |name: &str, missing: &'static str| Text::parse(form.get(name)).ok_or(missing);
    let parse = |name: &str| form.get(name).to_owned();
    Ok(match form.get("action") {
        "place" => CaseAction::Place {
            institution: uuid("institution")?,
            institution_type: InstitutionType::parse(&parse("institution_type"))
                .map_err(|_| "field-choose")?,
            basis: PlacementBasis::parse(&parse("basis")).map_err(|_| "field-choose")?,
            reasons: form
                .all("reasons")
                .into_iter()
                .map(PlacementReason::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| "field-choose")?,
            legal_status: LegalStatus::parse(&parse("legal_status")).map_err(|_| "field-choose")?,
        },
        "transfer" => CaseAction::Transfer {
            institution: uuid("institution")?,
            institution_type: InstitutionType::parse(&parse("institution_type"))
                .map_err(|_| "field-choose")?,
        },
        "legal_status" => CaseAction::ChangeLegalStatus {
            legal_status: LegalStatus::parse(&parse("legal_status")).map_err(|_| "field-choose")?,
        },
        "review" => CaseAction::RecordReview(Review {
            review: Uuid::now_v7(),
            level: ReviewLevel::parse(&parse("level")).map_err(|_| "field-choose")?,
            placement_justified: assessment("placement_justified"),
            stay_justified: assessment("stay_justified"),
            parental_claim_justified: assessment("parental_claim_justified"),
            aid: AidDecision::parse(&parse("aid"))
                .ok()
                .filter(|a| *a != AidDecision::NotRecorded)
                .ok_or("field-choose")?,
            return_possible: assessment("return_possible"),
            return_by: optional_date("return_by")?,
            next_review: optional_date("next_review")?,
            session: None,
        }),
        "item" => CaseAction::SetActionItem {
            item: Uuid::now_v7(),
            action: text("item_action", "case-item-needs-action")?,
            executor: text("executor", "case-item-needs-executor")?,
            due: date("due").ok_or("case-item-needs-due")?,
            review: None,
        },
        "item_done" => CaseAction::CompleteActionItem {
            item: Uuid::parse_str(form.get("item")).map_err(|_| "case-unknown-item")?,
        },
        "control" => CaseAction::TakeUnderControl,
        "release" => CaseAction::ReleaseFromControl,
        "visit" => CaseAction::RecordFamilyVisit,
        "accompaniment_start" => CaseAction::StartAccompaniment {
            service: uuid("service")?,
        },
        "accompaniment_end" => CaseAction::EndAccompaniment,
        "rights_restricted" => CaseAction::RestrictParentalRights,
        "rights_removed" => CaseAction::RemoveParentalRights,
        "rights_restored" => CaseAction::RestoreParentalRights,
        "exit" => CaseAction::RecordExit {
            exit: ExitKind::parse(&parse("exit")).map_err(|_| "field-choose")?,
        },
        "prevented" => CaseAction::RecordPreventedPlacement,
        "close" => CaseAction::Close {
            reason: text("reason", "reason-required")?,
        },
        "reopen" => CaseAction::Reopen {
            reason: text("reason", "reason-required")?,
        },
        "void" => CaseAction::VoidEntry {
            sequence: form
                .get("sequence")
                .parse()
                .map_err(|_| "case-unknown-entry")?,
            reason: text("reason", "reason-required")?,
        },
        _ => return Err("case-unknown-action"),
    })
}

/// Records one fact on a case in the viewer's scope (out of scope: not found). The form
/// names the number of entries it was made for (`entries`): a form made for an older state
/// of the case is refused, not merged; the same command id is recorded once.
pub(crate) async fn record_fact_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    form: &FormFields,
) -> Outcome<()> {
    let case = case_in_scope(state, viewer, id, tr).await?;
    let command_id = form.command_id();
    let already: bool =
        sqlx::query_scalar("SELECT exists(SELECT 1 FROM event WHERE command_id = $1)")
            .bind(command_id)
            .fetch_one(state.log.pool())
            .await?;
    if already {
        return Ok(Ok(()));
    }
    let current = state
        .log
        .stream_length("ChildCase", &id.to_string())
        .await?;
    if form.get("entries").parse::<i64>().ok() != Some(current) {
        return Ok(Err(Refusal::new(tr, "case-stale-form")));
    }
    let Some(on) = opora_domain::parse_date(form.get("on")) else {
        return Ok(Err(Refusal::new(tr, "case-bad-date")));
    };
    let action = match parse_action(form) {
        Ok(action) => action,
        Err(key) => return Ok(Err(Refusal::new(tr, key))),
    };
    let command = CaseCommand {
        on,
        today: today_in(&case.time_zone),
        born: case.birth_date,
        action,
    };
    execute_case(state, viewer, tr, id, command, command_id).await
}

/// Executes a command on a case: the aggregate's refusal, or a concurrent change
/// (`case-stale-form`), comes back as the refusal to show.
pub(crate) async fn execute_case(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    command: CaseCommand,
    command_id: Uuid,
) -> Outcome<()> {
    match state
        .cases
        .execute(
            &id.to_string(),
            command,
            &CommandMeta::new(viewer.actor()).with_command_id(command_id),
        )
        .await
    {
        Ok(_) => Ok(Ok(())),
        Err(CommandError::Rejected(error)) => Ok(Err(case_error(tr, &error))),
        Err(CommandError::Conflict) => Ok(Err(Refusal::new(tr, "case-stale-form"))),
        Err(error) => Err(error.into()),
    }
}

async fn record_fact(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match record_fact_command(&state, &viewer, c.tr, id, &form).await? {
        Ok(()) => {
            Ok(Redirect::to(&format!("/vyzov/dela/{id}?notice=case-recorded")).into_response())
        }
        Err(refusal) => {
            let page = load_case_page(&state, c, &viewer, id, Some(refusal.message), None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[cfg(test)]
mod action_tests {
    use super::*;

    #[test]
    fn every_documented_action_is_read_and_nothing_else() {
        for action in ACTIONS {
            let form = FormFields::from_pairs(vec![("action".into(), (*action).into())]);
            assert_ne!(
                parse_action(&form).err(),
                Some("case-unknown-action"),
                "{action}"
            );
        }
        let form = FormFields::from_pairs(vec![("action".into(), "teleport".into())]);
        assert_eq!(parse_action(&form).err(), Some("case-unknown-action"));
    }
}
