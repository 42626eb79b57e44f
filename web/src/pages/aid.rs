//! «Вызов»: the NGO operator's material aid to families — the desk (consilium decisions
//! waiting for a request, requests waiting for a decision, approved aid not yet delivered),
//! a request's page with a form per step, scanned receipts, and the aid report.
//!
//! Scope: an NGO operator sees its NGO's requests only; the curator (and the
//! administrator) every request of her region; a request outside the scope answers 404.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequest, Multipart, Path, Query, RawForm, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::{Role, Text};
use opora_domain::aid::{
    AidCommand, AidError, AidForm, AidPurpose, AidRequest, AidRequestFacts, AidRequester,
    Attachment, Delivery, ReviewLink,
};
use opora_domain::money::Rubles;
use opora_domain::parse_date;
use opora_domain::reference::RegionCode;
use opora_store::{CommandBus, CommandError, CommandMeta};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::Row;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, Action};
use crate::auth::guard::{PersonalScope, Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::{local_time, Tr};
use crate::pages::cases::{choices, region_today, FormFields};
use crate::pages::families::FamilyRow;
use crate::pages::persons::{open_sealed, Choice};
use crate::pages::{Outcome, RecordId, Refusal};
use crate::AppState;

/// Who sees aid: the NGO operator (its NGO's), the curator (her region's), the administrator.
pub const READERS: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::NgoOperator,
];
/// Who records aid: the NGO operator (and the administrator, to mend).
pub const WRITERS: &[Role] = &[Role::Administrator, Role::NgoOperator];
/// Who reads the aid report: the readers and the ministry's analysts (totals only).
pub const REPORTERS: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::NgoOperator,
    Role::MinistryAnalyst,
];
/// The largest scanned receipt kept (8 MiB); the step's body may carry it and the fields.
pub const MAX_ATTACHMENT: usize = 8 * 1024 * 1024;
const UPLOAD_LIMIT: usize = MAX_ATTACHMENT + 256 * 1024;
/// File types accepted, recognised by their first bytes (not by what the browser says).
const ATTACHMENT_TYPES: &[(&[u8], &str, &str)] = &[
    (b"%PDF-", "application/pdf", "pdf"),
    (b"\xFF\xD8\xFF", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
];
const ATTACHMENT_AAD: &[u8] = b"opora:aid-attachment";
const RECORD: &str = "aid_request";
const REQUEST_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4149_4452_4551_0000_0001);
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4149_4444_4c56_0000_0001);

pub fn routes() -> Routes {
    Routes::new()
        .get("/vyzov/pomoshch", Rule::Roles(READERS), desk)
        .get(
            "/vyzov/pomoshch/novyi",
            Rule::Roles(WRITERS),
            new_request_form,
        )
        .post("/vyzov/pomoshch", Rule::Roles(WRITERS), create_request)
        .get(
            "/vyzov/pomoshch/otchet",
            Rule::Roles(REPORTERS),
            report_page,
        )
        .get(
            "/vyzov/pomoshch/otchet.csv",
            Rule::Roles(REPORTERS),
            report_csv,
        )
        .get(
            "/vyzov/pomoshch/otchet.xlsx",
            Rule::Roles(REPORTERS),
            report_xlsx,
        )
        .get(
            "/vyzov/pomoshch/vydachi",
            Rule::Roles(REPORTERS),
            deliveries_page,
        )
        .get(
            "/vyzov/pomoshch/vydachi.csv",
            Rule::Roles(REPORTERS),
            deliveries_csv,
        )
        .get(
            "/vyzov/pomoshch/vydachi.xlsx",
            Rule::Roles(REPORTERS),
            deliveries_xlsx,
        )
        .get("/vyzov/pomoshch/{id}", Rule::Roles(READERS), show_request)
        .post_upload(
            "/vyzov/pomoshch/{id}/shag",
            Rule::Roles(WRITERS),
            step,
            UPLOAD_LIMIT,
        )
        .get(
            "/vyzov/pomoshch/{id}/fayl/{file}",
            Rule::Roles(READERS),
            download,
        )
}

// ---------------------------------------------------------------------------------------
// Scope

/// Requests a viewer may see: `r` is `aid.request` or `aid.delivery`. Binds $1–$4.
const IN_SCOPE: &str =
    "($1 OR r.region_code = ANY($2) OR r.municipality = ANY($3) OR r.ngo = ANY($4))";

fn bind_scope<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    scope: &'q PersonalScope,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(scope.everywhere)
        .bind(&scope.regions)
        .bind(&scope.municipalities)
        .bind(&scope.ngos)
}

/// Where a viewer reads aid: the curator her regions, the NGO operator its NGOs.
fn aid_scope(viewer: &Viewer) -> PersonalScope {
    let mut scope = viewer.personal_scope();
    // A municipal consilium secretary reads families, not the NGO's work.
    scope.municipalities.clear();
    if !viewer.has_role(Role::RegionalCurator) && !viewer.has_role(Role::Administrator) {
        scope.regions.clear();
    }
    scope
}

/// Where a viewer reads the report: its aid scope, and for the ministry's analysts their
/// regions (or everywhere, for a federal analyst).
fn report_scope(viewer: &Viewer) -> PersonalScope {
    let mut scope = aid_scope(viewer);
    if let Some(user) = &viewer.user {
        for grant in user
            .grants
            .iter()
            .filter(|g| g.role == Role::MinistryAnalyst)
        {
            match grant.scope.regions() {
                None => scope.everywhere = true,
                Some(regions) => scope
                    .regions
                    .extend(regions.iter().map(|r| r.as_str().to_owned())),
            }
        }
    }
    scope
}

// ---------------------------------------------------------------------------------------
// Requests

/// One aid request, as lists show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestRow {
    pub id: Uuid,
    pub family: Uuid,
    pub family_name: Option<String>,
    pub region: String,
    pub municipality: Option<String>,
    pub requester: String,
    pub requester_code: String,
    pub requested_by: Option<String>,
    pub purpose: String,
    pub form: String,
    pub form_code: String,
    #[serde(with = "crate::api::date")]
    pub requested_on: Date,
    pub status: String,
    pub status_code: String,
    #[serde(with = "crate::api::date::option")]
    pub decided_on: Option<Date>,
    /// Requested amount, whole kopecks.
    pub amount_kopecks: Option<i64>,
    /// Delivered so far (withdrawn deliveries excluded), whole kopecks.
    pub delivered_kopecks: i64,
    pub deliveries: i64,
    pub children: i32,
    /// The consilium review that decided it.
    pub review_case: Option<Uuid>,
}

/// Which requests a list wants.
#[derive(Default, Clone, Copy)]
pub(crate) struct RequestFilter {
    pub id: Option<Uuid>,
    pub family: Option<Uuid>,
    pub status: Option<&'static str>,
    /// Approved, with nothing delivered yet.
    pub undelivered: bool,
}

fn form_label(tr: Tr, code: &str, other: Option<String>) -> String {
    match other {
        Some(other) if code == "other" => format!("{}: {other}", tr.of("ngo-form", code)),
        _ => tr.of("ngo-form", code),
    }
}

pub(crate) async fn request_rows(
    state: &AppState,
    scope: &PersonalScope,
    tr: Tr,
    filter: RequestFilter,
) -> AppResult<Vec<RequestRow>> {
    let sql = format!(
        "SELECT r.*, f.sealed, m.name AS municipality_name, \
                coalesce((SELECT sum(d.amount) FROM aid.delivery d \
                           WHERE d.request = r.id AND NOT d.withdrawn), 0)::bigint AS delivered, \
                (SELECT count(*) FROM aid.delivery d WHERE d.request = r.id AND NOT d.withdrawn) AS deliveries \
           FROM aid.request r \
           LEFT JOIN persons.family f ON f.id = r.family \
           LEFT JOIN reference.municipality m ON m.id = r.municipality \
          WHERE {IN_SCOPE} \
            AND ($5::uuid IS NULL OR r.id = $5) AND ($6::uuid IS NULL OR r.family = $6) \
            AND ($7::text IS NULL OR r.status = $7) \
            AND (NOT $8 OR (r.status = 'approved' AND NOT EXISTS \
                 (SELECT 1 FROM aid.delivery d WHERE d.request = r.id AND NOT d.withdrawn))) \
          ORDER BY r.requested_on DESC, r.recorded_at DESC LIMIT 1000"
    );
    let rows = bind_scope(sqlx::query(&sql), scope)
        .bind(filter.id)
        .bind(filter.family)
        .bind(filter.status)
        .bind(filter.undelivered)
        .fetch_all(state.log.pool())
        .await?;
    let names: Vec<Option<opora_domain::family::FamilyData>> = open_sealed(state, &rows).await?;
    rows.iter()
        .zip(names)
        .map(|(row, name)| request_row(tr, row, name.map(|n| n.name)))
        .collect()
}

fn request_row(tr: Tr, row: &PgRow, family_name: Option<String>) -> AppResult<RequestRow> {
    let requester: String = row.try_get("requester")?;
    let status: String = row.try_get("status")?;
    let form: String = row.try_get("form")?;
    Ok(RequestRow {
        id: row.try_get("id")?,
        family: row.try_get("family")?,
        family_name,
        region: row.try_get("region_code")?,
        municipality: row.try_get("municipality_name")?,
        requester: tr.of("ngo-requester", &requester),
        requester_code: requester,
        requested_by: row.try_get("requested_by")?,
        purpose: tr.of("ngo-purpose", &row.try_get::<String, _>("purpose")?),
        form: form_label(tr, &form, row.try_get("form_other")?),
        form_code: form,
        requested_on: row.try_get("requested_on")?,
        status: tr.of("ngo-status", &status),
        status_code: status,
        decided_on: row.try_get("decided_on")?,
        amount_kopecks: row.try_get("amount")?,
        delivered_kopecks: row.try_get("delivered")?,
        deliveries: row.try_get("deliveries")?,
        children: row.try_get("children")?,
        review_case: row.try_get("review_case")?,
    })
}

/// Requests in the viewer's aid scope (the listing is logged).
pub(crate) async fn list_requests(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    filter: RequestFilter,
) -> AppResult<Vec<RequestRow>> {
    let rows = request_rows(state, &aid_scope(viewer), tr, filter).await?;
    audit::record(state, viewer, Action::List, Some(RECORD), None).await?;
    Ok(rows)
}

/// A family's aid requests that the viewer may see (for the family's page).
pub(crate) async fn family_requests(
    state: &AppState,
    scope: &PersonalScope,
    tr: Tr,
    family: Uuid,
) -> AppResult<Vec<RequestRow>> {
    request_rows(
        state,
        scope,
        tr,
        RequestFilter {
            family: Some(family),
            ..RequestFilter::default()
        },
    )
    .await
}

/// A consilium decision calling for material aid that no request answers yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxItem {
    pub case: Uuid,
    pub case_number: String,
    pub review: Uuid,
    #[serde(with = "crate::api::date")]
    pub held_on: Date,
    pub level: String,
    pub decision: String,
    pub family: Option<Uuid>,
    pub family_name: Option<String>,
    pub municipality: Option<String>,
}

/// The NGO's inbox: consilium decisions of its region calling for material aid with no
/// request recorded for them yet.
pub(crate) async fn inbox(state: &AppState, viewer: &Viewer, tr: Tr) -> AppResult<Vec<InboxItem>> {
    let scope = aid_scope(viewer);
    let ngo_regions: Vec<String> = viewer
        .ngos()
        .into_iter()
        .map(|(r, _)| r.as_str().to_owned())
        .collect();
    let rows = sqlx::query(
        "SELECT c.id AS case_id, c.case_number, v.review, v.held_on, v.level, v.aid, c.family, \
                f.sealed, m.name AS municipality_name \
           FROM cases.review v JOIN cases.child_case c ON c.id = v.case_id \
           LEFT JOIN persons.family f ON f.id = c.family \
           LEFT JOIN reference.municipality m ON m.id = c.municipality \
          WHERE v.aid IN ('material_aid', 'material_and_services') \
            AND ($1 OR c.region_code = ANY($2) OR c.region_code = ANY($3)) \
            AND NOT EXISTS (SELECT 1 FROM aid.request r WHERE r.review = v.review) \
          ORDER BY v.held_on LIMIT 500",
    )
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&ngo_regions)
    .fetch_all(state.log.pool())
    .await?;
    let names: Vec<Option<opora_domain::family::FamilyData>> = open_sealed(state, &rows).await?;
    let mut items = Vec::with_capacity(rows.len());
    for (row, name) in rows.iter().zip(names) {
        items.push(InboxItem {
            case: row.try_get("case_id")?,
            case_number: row.try_get("case_number")?,
            review: row.try_get("review")?,
            held_on: row.try_get("held_on")?,
            level: tr.of("level", &row.try_get::<String, _>("level")?),
            decision: tr.of("aid", &row.try_get::<String, _>("aid")?),
            family: row.try_get("family")?,
            family_name: name.map(|n| n.name),
            municipality: row.try_get("municipality_name")?,
        });
    }
    Ok(items)
}

/// The desk: what waits for the NGO.
#[derive(Debug, Serialize, ToSchema)]
pub struct Desk {
    /// Consilium decisions calling for aid, with no request yet.
    pub inbox: Vec<InboxItem>,
    /// Requests waiting for the NGO's decision.
    pub waiting: Vec<RequestRow>,
    /// Approved requests with nothing delivered yet.
    pub undelivered: Vec<RequestRow>,
}

pub(crate) async fn desk_view(state: &AppState, viewer: &Viewer, tr: Tr) -> AppResult<Desk> {
    let scope = aid_scope(viewer);
    let desk = Desk {
        inbox: inbox(state, viewer, tr).await?,
        waiting: request_rows(
            state,
            &scope,
            tr,
            RequestFilter {
                status: Some("requested"),
                ..RequestFilter::default()
            },
        )
        .await?,
        undelivered: request_rows(
            state,
            &scope,
            tr,
            RequestFilter {
                undelivered: true,
                ..RequestFilter::default()
            },
        )
        .await?,
    };
    audit::record(state, viewer, Action::List, Some(RECORD), None).await?;
    Ok(desk)
}

#[derive(Template, WebTemplate)]
#[template(path = "aid/desk.html")]
struct DeskPage {
    c: Chrome,
    desk: Desk,
    writer: bool,
    ngo: bool,
}

async fn desk(State(state): State<AppState>, c: Chrome, viewer: Viewer) -> AppResult<DeskPage> {
    let desk = desk_view(&state, &viewer, c.tr).await?;
    Ok(DeskPage {
        desk,
        writer: WRITERS.iter().any(|r| viewer.has_role(*r)),
        ngo: !viewer.ngos().is_empty(),
        c,
    })
}

// ---------------------------------------------------------------------------------------
// A new request

#[derive(Deserialize, Default)]
pub struct NewRequestQuery {
    pub family: Option<Uuid>,
    pub review: Option<Uuid>,
}

#[derive(Template, WebTemplate)]
#[template(path = "aid/new.html")]
struct NewRequestPage {
    c: Chrome,
    families: Vec<Choice>,
    family: String,
    review: Option<InboxItem>,
    requesters: Vec<Choice>,
    purposes: Vec<Choice>,
    forms: Vec<Choice>,
    today: String,
    command_id: Uuid,
    form: FormFields,
    error: Option<String>,
}

/// The consilium decision `review`, if it is in the viewer's inbox.
async fn inbox_item(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    review: Option<Uuid>,
) -> AppResult<Option<InboxItem>> {
    let Some(review) = review else {
        return Ok(None);
    };
    Ok(inbox(state, viewer, tr)
        .await?
        .into_iter()
        .find(|i| i.review == review))
}

async fn new_request_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    form: FormFields,
    error: Option<String>,
) -> AppResult<NewRequestPage> {
    let tr = c.tr;
    let review = inbox_item(state, viewer, tr, Uuid::parse_str(form.get("review")).ok()).await?;
    let families: Vec<Choice> = crate::pages::families::family_list(state, viewer, tr)
        .await?
        .into_iter()
        .map(|f: FamilyRow| Choice {
            value: f.id.to_string(),
            label: f.name.unwrap_or_else(|| tr.t("person-erased")),
        })
        .collect();
    let family = review
        .as_ref()
        .and_then(|r| r.family)
        .map(|f| f.to_string())
        .unwrap_or_else(|| form.get("family").to_owned());
    // Today where the request is made (its approval and delivery are dated there): the
    // earliest date among the regions of the operator's NGO or the curator's, so the
    // default is never in the future for a family of any of them; Moscow's for a viewer
    // of every region.
    let mut today: Option<Date> = None;
    for region in viewer.family_regions().unwrap_or_default() {
        let day = region_today(state, &region).await?;
        today = Some(today.map_or(day, |t| t.min(day)));
    }
    let today = today.unwrap_or_else(|| crate::i18n::today_in("Europe/Moscow"));
    Ok(NewRequestPage {
        families,
        family,
        review,
        requesters: choices(tr, "ngo-requester", AidRequester::ALL),
        purposes: choices(tr, "ngo-purpose", AidPurpose::ALL),
        forms: choices(tr, "ngo-form", AidForm::ALL),
        today: opora_domain::format_date(today),
        command_id: Uuid::now_v7(),
        form,
        error,
        c,
    })
}

async fn new_request_form(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<NewRequestQuery>,
) -> AppResult<NewRequestPage> {
    let mut pairs = Vec::new();
    if let Some(family) = query.family {
        pairs.push(("family".to_owned(), family.to_string()));
    }
    if let Some(review) = query.review {
        pairs.push(("review".to_owned(), review.to_string()));
    }
    new_request_page(&state, c, &viewer, FormFields::from_pairs(pairs), None).await
}

/// An optional amount field: empty is none; anything else must be a valid amount.
fn optional_amount(raw: &str) -> Result<Option<Rubles>, opora_domain::money::AmountError> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        Rubles::parse_amount(raw).map(Some)
    }
}

fn amount_refusal(tr: Tr, error: &opora_domain::money::AmountError) -> Refusal {
    crate::pages::cases::domain_refusal(tr, "ngo-amount", error)
}

/// The family and region of a request: a family in the viewer's scope, or the family of a
/// consilium decision in the NGO's inbox (the NGO then takes the family into its work).
struct Target {
    family: Uuid,
    region: RegionCode,
    municipality: Option<Uuid>,
    review: Option<ReviewLink>,
}

async fn request_target(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> AppResult<Option<Target>> {
    let review = inbox_item(state, viewer, tr, Uuid::parse_str(form.get("review")).ok()).await?;
    let family = review
        .as_ref()
        .and_then(|r| r.family)
        .or_else(|| Uuid::parse_str(form.get("family")).ok());
    let Some(family) = family else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT region_code, municipality FROM persons.family WHERE id = $1")
        .bind(family)
        .fetch_optional(state.log.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let region: String = row.try_get("region_code")?;
    let visible = review.is_some()
        || crate::pages::families::family_list(state, viewer, tr)
            .await?
            .iter()
            .any(|f| f.id == family);
    if !visible {
        return Ok(None);
    }
    Ok(Some(Target {
        family,
        region: RegionCode::parse(&region)?,
        municipality: row.try_get("municipality")?,
        review: review.map(|r| ReviewLink {
            case: r.case,
            review: r.review,
        }),
    }))
}

/// Records a request for aid to the viewer's NGO (the id comes from the command id: sent
/// twice, recorded once).
pub(crate) async fn create_request_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<Uuid> {
    let Some(target) = request_target(state, viewer, tr, form).await? else {
        return Ok(Err(Refusal::new(tr, "ngo-choose-family")));
    };
    // The NGO: the viewer's own in the family's region; an administrator names it.
    let ngo = match viewer.ngo_in(target.region.as_str()) {
        Some(ngo) => Some(ngo),
        None if viewer.has_role(Role::Administrator) => {
            ngo_of_region(state, &target.region, form.get("ngo")).await?
        }
        None => None,
    };
    let Some(ngo) = ngo else {
        return Ok(Err(Refusal::new(tr, "ngo-no-ngo")));
    };
    let Some(on) = parse_date(form.get("on")) else {
        return Ok(Err(Refusal::new(tr, "case-bad-date")));
    };
    let requester = if target.review.is_some() {
        Ok(AidRequester::Consilium)
    } else {
        AidRequester::parse(form.get("requester"))
    };
    let (Ok(requester), Ok(purpose), Ok(aid_form)) = (
        requester,
        AidPurpose::parse(form.get("purpose")),
        AidForm::parse(form.get("form")),
    ) else {
        return Ok(Err(Refusal::new(tr, "ngo-fill-in")));
    };
    let amount = match optional_amount(form.get("amount")) {
        Ok(amount) => amount,
        Err(error) => return Ok(Err(amount_refusal(tr, &error))),
    };
    let Ok(children) = form.get("children").trim().parse::<u16>() else {
        return Ok(Err(Refusal::new(tr, "ngo-bad-children")));
    };
    let facts = AidRequestFacts {
        on,
        family: target.family,
        region: target.region.clone(),
        municipality: target.municipality,
        ngo,
        requester,
        requested_by: Text::parse(form.get("requested_by")),
        review: target.review,
        purpose,
        form: aid_form,
        form_other: Text::parse(form.get("form_other")),
        description: Text::parse(form.get("description")),
        amount,
        children,
    };
    let command_id = form.command_id();
    let id = Uuid::new_v5(&REQUEST_NAMESPACE, command_id.as_bytes());
    let today = region_today(state, &target.region).await?;
    let outcome = execute(
        state,
        viewer,
        tr,
        id,
        AidCommand::Request { today, facts },
        Some(command_id),
    )
    .await?;
    // The NGO takes the family into its work (a consilium decision hands it over).
    if outcome.is_ok() && viewer.ngo_in(target.region.as_str()).is_some() {
        // A refusal here leaves the family where it was; the request stands.
        let _ =
            crate::pages::families::take_on_family(state, viewer, tr, target.family, ngo).await?;
    }
    Ok(outcome)
}

async fn ngo_of_region(
    state: &AppState,
    region: &RegionCode,
    wanted: &str,
) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM reference.organisation WHERE kind = 'ngo' AND region_code = $1 \
          ORDER BY (id::text = $2) DESC, name LIMIT 1",
    )
    .bind(region.as_str())
    .bind(wanted)
    .fetch_optional(state.log.pool())
    .await?)
}

fn aid_error(tr: Tr, error: &AidError) -> Refusal {
    crate::pages::cases::domain_refusal(tr, "ngo-error", error)
}

async fn execute(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    command: AidCommand,
    command_id: Option<Uuid>,
) -> Outcome<Uuid> {
    let bus = CommandBus::<AidRequest>::new(state.log.clone(), ());
    let mut meta = CommandMeta::new(viewer.actor());
    if let Some(command_id) = command_id {
        meta = meta.with_command_id(command_id);
    }
    match bus.execute(&id.to_string(), command, &meta).await {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(error)) => Ok(Err(aid_error(tr, &error))),
        Err(error) => Err(error.into()),
    }
}

async fn create_request(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match create_request_command(&state, &viewer, c.tr, &form).await? {
        Ok(id) => {
            Ok(Redirect::to(&format!("/vyzov/pomoshch/{id}?notice=case-recorded")).into_response())
        }
        Err(refusal) => {
            let page = new_request_page(&state, c, &viewer, form, Some(refusal.message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

// ---------------------------------------------------------------------------------------
// A request's page and its steps

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryRow {
    pub id: Uuid,
    #[serde(with = "crate::api::date")]
    pub delivered_on: Date,
    pub amount_kopecks: i64,
    pub form: String,
    pub form_code: String,
    pub form_other: Option<String>,
    pub supplier: Option<String>,
    pub receipt: Option<String>,
    pub attachment: Option<AttachmentInfo>,
    pub withdrawn: bool,
    /// The request's entries (sequence numbers) that make these figures.
    pub entries: Vec<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttachmentInfo {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub sequence: i64,
    pub what: String,
    pub details: String,
    pub on: String,
    pub recorded: String,
    pub actor: String,
}

/// A request with its deliveries and its history straight from the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub request: RequestRow,
    pub description: Option<String>,
    pub decision_note: Option<String>,
    pub refusal_reason: Option<String>,
    pub approved_kopecks: Option<i64>,
    pub deliveries: Vec<DeliveryRow>,
    pub history: Vec<HistoryEntry>,
    /// Entries in the request's stream: a form made for another number is refused.
    pub entries: i64,
}

/// A request in the viewer's scope (the viewing is logged; out of scope: not found).
pub(crate) async fn request_view(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
) -> AppResult<RequestView> {
    let scope = aid_scope(viewer);
    let request = request_rows(
        state,
        &scope,
        tr,
        RequestFilter {
            id: Some(id),
            ..RequestFilter::default()
        },
    )
    .await?
    .into_iter()
    .next();
    let request = audit::viewed(state, viewer, RECORD, id, request).await?;
    let row = sqlx::query(
        "SELECT description, decision_note, refusal_reason, approved_amount FROM aid.request WHERE id = $1",
    )
    .bind(id)
    .fetch_one(state.log.pool())
    .await?;
    let deliveries =
        sqlx::query("SELECT * FROM aid.delivery WHERE request = $1 ORDER BY delivered_on, id")
            .bind(id)
            .fetch_all(state.log.pool())
            .await?
            .iter()
            .map(|d| delivery_row(tr, d))
            .collect::<AppResult<Vec<_>>>()?;
    let zone = crate::pages::cases::region_zone(state, &request.region).await?;
    let events = sqlx::query(
        "SELECT sequence, event_type, payload, actor, recorded_at, effective_date FROM event \
          WHERE aggregate_type = 'AidRequest' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(state.log.pool())
    .await?;
    let mut history = Vec::with_capacity(events.len());
    for event in &events {
        let event_type: String = event.try_get("event_type")?;
        let payload: serde_json::Value = event.try_get("payload")?;
        let effective: Option<Date> = event.try_get("effective_date")?;
        let recorded_at: OffsetDateTime = event.try_get("recorded_at")?;
        history.push(HistoryEntry {
            sequence: event.try_get("sequence")?,
            what: tr.of("event", &event_type),
            details: describe(tr, &event_type, &payload),
            on: effective.map(|d| tr.date(&d)).unwrap_or_default(),
            recorded: local_time(&recorded_at, &zone),
            actor: event
                .try_get::<Option<String>, _>("actor")?
                .unwrap_or_default()
                .trim_start_matches("user:")
                .to_owned(),
        });
    }
    history.reverse();
    Ok(RequestView {
        request,
        description: row.try_get("description")?,
        decision_note: row.try_get("decision_note")?,
        refusal_reason: row.try_get("refusal_reason")?,
        approved_kopecks: row.try_get("approved_amount")?,
        deliveries,
        entries: events.len() as i64,
        history,
    })
}

fn delivery_row(tr: Tr, d: &PgRow) -> AppResult<DeliveryRow> {
    let form: String = d.try_get("form")?;
    let other: Option<String> = d.try_get("form_other")?;
    let attachment: Option<sqlx::types::Json<AttachmentInfo>> = d.try_get("attachment")?;
    Ok(DeliveryRow {
        id: d.try_get("id")?,
        delivered_on: d.try_get("delivered_on")?,
        amount_kopecks: d.try_get("amount")?,
        form: form_label(tr, &form, other.clone()),
        form_code: form,
        form_other: other,
        supplier: d.try_get("supplier")?,
        receipt: d.try_get("receipt")?,
        attachment: attachment.map(|a| a.0),
        withdrawn: d.try_get("withdrawn")?,
        entries: d.try_get("entries")?,
    })
}

/// One line about an event for the history (no personal data is in aid events).
fn describe(tr: Tr, event_type: &str, payload: &serde_json::Value) -> String {
    let body = payload.get(event_type).cloned().unwrap_or_default();
    let text = |v: &serde_json::Value, name: &str| {
        v.get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let rubles = |v: &serde_json::Value| {
        v.get("amount")
            .and_then(serde_json::Value::as_i64)
            .map(|k| tr.rubles(&k))
            .unwrap_or_default()
    };
    let delivery = |v: &serde_json::Value| {
        format!(
            "{}; {}",
            rubles(v),
            form_label(
                tr,
                &text(v, "form"),
                v.get("form_other")
                    .and_then(|o| o.as_str())
                    .map(str::to_owned)
            )
        )
    };
    match event_type {
        "AidRequested" => format!(
            "{}; {}; {}",
            tr.of("ngo-requester", &text(&body, "requester")),
            tr.of("ngo-purpose", &text(&body, "purpose")),
            tr.of("ngo-form", &text(&body, "form"))
        ),
        "AidApproved" => rubles(&body),
        "AidRefused" => text(&body, "reason"),
        "AidDelivered" => delivery(&body),
        "AidDeliveryCorrected" => format!(
            "{} ({})",
            delivery(body.get("delivery").unwrap_or(&serde_json::Value::Null)),
            text(&body, "reason")
        ),
        "AidDeliveryWithdrawn" => text(&body, "reason"),
        _ => String::new(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "aid/show.html")]
struct RequestPage {
    c: Chrome,
    view: RequestView,
    writer: bool,
    forms: Vec<Choice>,
    today: String,
    error: Option<String>,
    notice: Option<String>,
}

async fn request_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    id: Uuid,
    error: Option<String>,
    notice: Option<String>,
) -> AppResult<RequestPage> {
    let view = request_view(state, viewer, c.tr, id).await?;
    let today = region_today(state, &RegionCode::parse(&view.request.region)?).await?;
    Ok(RequestPage {
        writer: WRITERS.iter().any(|r| viewer.has_role(*r)),
        forms: choices(c.tr, "ngo-form", AidForm::ALL),
        today: opora_domain::format_date(today),
        view,
        error,
        notice,
        c,
    })
}

async fn show_request(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    Query(query): Query<crate::pages::NoticeQuery>,
) -> AppResult<RequestPage> {
    let notice = query.notice(c.tr);
    request_page(&state, c, &viewer, id, None, notice).await
}

/// A file sent with a step: checked (size, type by its first bytes), sealed and kept; the
/// delivery event refers to it by id and fingerprint.
pub(crate) async fn store_attachment(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    name: &str,
    bytes: &[u8],
) -> Outcome<Uuid> {
    if bytes.is_empty() {
        return Ok(Err(Refusal::new(tr, "ngo-file-empty")));
    }
    if bytes.len() > MAX_ATTACHMENT {
        return Ok(Err(Refusal::new(tr, "ngo-file-too-large")));
    }
    let Some((_, content_type, extension)) = ATTACHMENT_TYPES
        .iter()
        .find(|(magic, _, _)| bytes.starts_with(magic))
    else {
        return Ok(Err(Refusal::new(tr, "ngo-file-type")));
    };
    // Only the file's base name, without anything a header could misread.
    let base: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(100)
        .collect();
    let name = if base.trim().is_empty() {
        format!("receipt.{extension}")
    } else {
        base
    };
    let sha256 = format!("{:x}", Sha256::digest(bytes));
    let id = Uuid::now_v7();
    let sealed = state.vault.seal_with_master(bytes, ATTACHMENT_AAD)?;
    sqlx::query(
        "INSERT INTO access.aid_attachment (id, sealed, name, content_type, size, sha256, uploaded_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(sealed)
    .bind(&name)
    .bind(*content_type)
    .bind(bytes.len() as i64)
    .bind(&sha256)
    .bind(viewer.user()?.login.clone())
    .execute(state.log.pool())
    .await?;
    Ok(Ok(id))
}

/// An attachment the viewer uploaded (by id), as a delivery refers to it.
async fn own_attachment(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<Option<Attachment>> {
    let row = sqlx::query(
        "SELECT name, content_type, size, sha256 FROM access.aid_attachment \
          WHERE id = $1 AND uploaded_by = $2",
    )
    .bind(id)
    .bind(viewer.user()?.login.clone())
    .fetch_optional(state.log.pool())
    .await?;
    row.map(|row| {
        Ok(Attachment {
            id,
            name: row.try_get("name")?,
            content_type: row.try_get("content_type")?,
            size: row.try_get::<i64, _>("size")?.unsigned_abs(),
            sha256: row.try_get("sha256")?,
        })
    })
    .transpose()
}

/// The steps a request's page and the API offer.
pub const STEPS: [&str; 5] = ["approve", "refuse", "deliver", "correct", "withdraw"];

/// One step on a request in the viewer's scope: approve, refuse, deliver, correct or
/// withdraw a delivery. A form made for an older state of the request (`entries`) is
/// refused, never merged.
pub(crate) async fn step_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    form: &FormFields,
) -> Outcome<Uuid> {
    let view = request_view(state, viewer, tr, id).await?;
    if let Ok(entries) = form.get("entries").parse::<i64>() {
        if entries != view.entries {
            return Ok(Err(Refusal::new(tr, "case-stale")));
        }
    }
    let region = RegionCode::parse(&view.request.region)?;
    let today = region_today(state, &region).await?;
    let on = parse_date(form.get("on"));
    let reason = Text::parse(form.get("reason"));
    let command_id = form.command_id();
    let action = form.get("action");
    let command = match action {
        "approve" => {
            let Some(on) = on else {
                return Ok(Err(Refusal::new(tr, "case-bad-date")));
            };
            let amount = match optional_amount(form.get("amount")) {
                Ok(amount) => amount,
                Err(error) => return Ok(Err(amount_refusal(tr, &error))),
            };
            AidCommand::Approve {
                on,
                today,
                amount,
                note: Text::parse(form.get("note")),
            }
        }
        "refuse" => {
            let (Some(on), Some(reason)) = (on, reason) else {
                return Ok(Err(Refusal::new(tr, "ngo-reason-and-date")));
            };
            AidCommand::Refuse { on, today, reason }
        }
        "deliver" | "correct" => {
            let Some(on) = on else {
                return Ok(Err(Refusal::new(tr, "case-bad-date")));
            };
            let amount = match Rubles::parse_amount(form.get("amount")) {
                Ok(amount) => amount,
                Err(error) => return Ok(Err(amount_refusal(tr, &error))),
            };
            let Ok(aid_form) = AidForm::parse(form.get("form")) else {
                return Ok(Err(Refusal::new(tr, "ngo-fill-in")));
            };
            let attachment = match Uuid::parse_str(form.get("attachment")) {
                Ok(file) => match own_attachment(state, viewer, file).await? {
                    Some(a) => Some(a),
                    None => return Ok(Err(Refusal::new(tr, "ngo-file-unknown"))),
                },
                Err(_) => None,
            };
            let delivery_id = if action == "deliver" {
                Uuid::new_v5(&DELIVERY_NAMESPACE, command_id.as_bytes())
            } else {
                match Uuid::parse_str(form.get("delivery")) {
                    Ok(d) => d,
                    Err(_) => return Ok(Err(aid_error(tr, &AidError::UnknownDelivery))),
                }
            };
            let delivery = Delivery {
                id: delivery_id,
                on,
                amount,
                form: aid_form,
                form_other: Text::parse(form.get("form_other")),
                supplier: Text::parse(form.get("supplier")),
                receipt: Text::parse(form.get("receipt")),
                attachment,
            };
            if action == "deliver" {
                AidCommand::Deliver { today, delivery }
            } else {
                let Some(reason) = reason else {
                    return Ok(Err(Refusal::new(tr, "ngo-reason")));
                };
                AidCommand::Correct {
                    today,
                    delivery,
                    reason,
                }
            }
        }
        "withdraw" => {
            let (Ok(delivery), Some(reason)) = (Uuid::parse_str(form.get("delivery")), reason)
            else {
                return Ok(Err(Refusal::new(tr, "ngo-reason")));
            };
            AidCommand::Withdraw {
                on: today,
                delivery,
                reason,
            }
        }
        _ => return Ok(Err(Refusal::new(tr, "ngo-fill-in"))),
    };
    execute(state, viewer, tr, id, command, Some(command_id)).await
}

/// A step's form: urlencoded, or multipart when it carries a scanned receipt (stored first;
/// its id joins the fields). Returns the fields or a refusal about the file.
async fn read_step(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    request: Request,
) -> AppResult<Result<FormFields, Refusal>> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return Ok(match RawForm::from_request(request, &()).await {
            Ok(RawForm(raw)) => Ok(FormFields::parse(&raw)),
            Err(_) => Err(Refusal::new(tr, "ngo-fill-in")),
        });
    }
    let Ok(mut multipart) = Multipart::from_request(request, &()).await else {
        return Ok(Err(Refusal::new(tr, "ngo-fill-in")));
    };
    let mut pairs = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => return Ok(Err(Refusal::new(tr, "ngo-file-too-large"))),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let Ok(bytes) = field.bytes().await else {
                return Ok(Err(Refusal::new(tr, "ngo-file-too-large")));
            };
            // An empty file input sends an empty part: no file.
            if bytes.is_empty() && file_name.is_empty() {
                continue;
            }
            match store_attachment(state, viewer, tr, &file_name, &bytes).await? {
                Ok(id) => pairs.push(("attachment".to_owned(), id.to_string())),
                Err(refusal) => return Ok(Err(refusal)),
            }
        } else if let Ok(text) = field.text().await {
            pairs.push((name, text));
        }
    }
    Ok(Ok(FormFields::from_pairs(pairs)))
}

async fn step(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    request: Request,
) -> AppResult<Response> {
    let outcome = match read_step(&state, &viewer, c.tr, request).await? {
        Ok(form) => step_command(&state, &viewer, c.tr, id, &form).await?,
        Err(refusal) => Err(refusal),
    };
    match outcome {
        Ok(_) => {
            Ok(Redirect::to(&format!("/vyzov/pomoshch/{id}?notice=case-recorded")).into_response())
        }
        Err(refusal) => {
            let page = request_page(&state, c, &viewer, id, Some(refusal.message), None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// The file of a delivery of a request in the viewer's scope (the download is logged).
pub(crate) async fn attachment_bytes(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    file: Uuid,
) -> AppResult<(AttachmentInfo, Vec<u8>)> {
    let view = request_view(state, viewer, tr, id).await?;
    let Some(info) = view
        .deliveries
        .iter()
        .filter_map(|d| d.attachment.clone())
        .find(|a| a.id == file)
    else {
        return Err(AppError::NotFound);
    };
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM access.aid_attachment WHERE id = $1")
            .bind(file)
            .fetch_optional(state.log.pool())
            .await?
            .ok_or(AppError::NotFound)?;
    let bytes = state.vault.open_with_master(&sealed, ATTACHMENT_AAD)?;
    audit::record(
        state,
        viewer,
        Action::Export,
        Some("aid_attachment"),
        Some(&file.to_string()),
    )
    .await?;
    Ok((info, bytes))
}

async fn download(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Path((id, file)): Path<(String, String)>,
) -> AppResult<Response> {
    let (Ok(id), Ok(file)) = (Uuid::parse_str(&id), Uuid::parse_str(&file)) else {
        return Err(AppError::NotFound);
    };
    let (info, bytes) = attachment_bytes(&state, &viewer, c.tr, id, file).await?;
    Ok(attachment_response(&info, bytes))
}

pub(crate) fn attachment_response(info: &AttachmentInfo, bytes: Vec<u8>) -> Response {
    let ascii: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, info.content_type.clone()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
                    crate::auth::guard::urlencoding(&info.name)
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        bytes,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The report

/// The period and filters of the report and of its drill-down.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// First day, `YYYY-MM-DD` or `DD.MM.YYYY` (default: 1 January of this year).
    #[serde(default)]
    pub from: Option<String>,
    /// Last day (default: today).
    #[serde(default)]
    pub to: Option<String>,
    /// Only this region (two-digit code).
    #[serde(default)]
    pub region: Option<String>,
    /// Drill-down: only this form of aid (code).
    #[serde(default)]
    pub form: Option<String>,
    /// Drill-down: only this basis (requester code).
    #[serde(default)]
    pub requester: Option<String>,
    /// Drill-down: only this municipality (id; `none` for aid with no municipality).
    #[serde(default)]
    pub municipality: Option<String>,
    /// Drill-down: only this purpose (code).
    #[serde(default)]
    pub purpose: Option<String>,
}

/// One line of a breakdown: rubles, families and children helped, deliveries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportLine {
    /// The code (form, basis or purpose) or the municipality id; empty for the total.
    pub key: String,
    pub label: String,
    pub kopecks: i64,
    pub families: i64,
    pub children: i64,
    pub deliveries: i64,
    /// The drill-down listing the deliveries that make this line.
    pub trace: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AidReport {
    #[serde(with = "crate::api::date")]
    pub from: Date,
    #[serde(with = "crate::api::date")]
    pub to: Date,
    pub total: ReportLine,
    /// Average per family helped, whole kopecks (rounded half up).
    pub average_per_family_kopecks: i64,
    pub large_families: i64,
    /// Share of large families among the families helped, in per mille.
    pub large_share_permille: i64,
    pub by_form: Vec<ReportLine>,
    pub by_municipality: Vec<ReportLine>,
    pub by_requester: Vec<ReportLine>,
    pub by_purpose: Vec<ReportLine>,
}

impl AidReport {
    /// The breakdowns with their titles (message keys), in the order pages show them.
    pub fn sections(&self) -> [(&'static str, &[ReportLine]); 4] {
        [
            ("ngo-by-form", &self.by_form),
            ("ngo-by-municipality", &self.by_municipality),
            ("ngo-by-requester", &self.by_requester),
            ("ngo-by-purpose", &self.by_purpose),
        ]
    }
}

/// The report's period: `from`..=`to` (defaults: this year to today).
///
/// Deliveries are dated in their region's zone, so the default period spans every zone of
/// Russia: it starts on 1 January of the year as it is in the westernmost (Kaliningrad) and
/// ends today as it is in the easternmost (Kamchatka). A delivery made after midnight in
/// Barnaul, still yesterday in Moscow, is in it; on New Year's Eve the year is not over
/// early.
fn period(query: &ReportQuery) -> Result<(Date, Date), &'static str> {
    let west = crate::i18n::today_in("Europe/Kaliningrad");
    let east = crate::i18n::today_in("Asia/Kamchatka");
    let parse = |raw: &Option<String>, default: Date| match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(raw) => parse_date(raw).ok_or("ngo-bad-period"),
    };
    let from = parse(
        &query.from,
        Date::from_ordinal_date(west.year(), 1).unwrap_or(west),
    )?;
    let to = parse(&query.to, east)?;
    if from > to {
        return Err("ngo-bad-period");
    }
    Ok((from, to))
}

/// The deliveries of the period in the viewer's scope: `d` rows, with the filters. Binds
/// $1–$11.
const DELIVERIES: &str = "FROM aid.delivery r \
      WHERE NOT r.withdrawn AND r.delivered_on BETWEEN $5 AND $6 \
        AND ($7::text IS NULL OR r.region_code = $7) \
        AND ($8::text IS NULL OR r.form = $8) \
        AND ($9::text IS NULL OR r.requester = $9) \
        AND ($10::text IS NULL OR coalesce(r.municipality::text, 'none') = $10) \
        AND ($11::text IS NULL OR r.purpose = $11)";

fn opt(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn bind_report<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    scope: &'q PersonalScope,
    q: &ReportQuery,
    from: Date,
    to: Date,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    bind_scope(query, scope)
        .bind(from)
        .bind(to)
        .bind(opt(&q.region))
        .bind(opt(&q.form))
        .bind(opt(&q.requester))
        .bind(opt(&q.municipality))
        .bind(opt(&q.purpose))
}

/// The aid report of the viewer's scope. Families and children are counted once per
/// breakdown line (a family helped in two forms counts in both lines, once in the total);
/// a family's children are the largest number its requests of the period name.
pub(crate) async fn aid_report(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    query: &ReportQuery,
) -> AppResult<Result<AidReport, Refusal>> {
    let scope = report_scope(viewer);
    let (from, to) = match period(query) {
        Ok(p) => p,
        Err(key) => return Ok(Err(Refusal::new(tr, key))),
    };
    // One query per breakdown: `key` groups; per family the children are taken once.
    let breakdown = |key: &str| {
        format!(
            "WITH d AS (SELECT r.* {DELIVERIES} AND {IN_SCOPE}), \
                  per_family AS (SELECT {key} AS key, family, sum(amount) AS amount, \
                                        max(children) AS children, count(*) AS deliveries \
                                   FROM d GROUP BY 1, family) \
             SELECT key, sum(amount)::bigint AS kopecks, count(*) AS families, \
                    sum(children)::bigint AS children, sum(deliveries)::bigint AS deliveries \
               FROM per_family GROUP BY key ORDER BY kopecks DESC, key"
        )
    };
    let fetch = |sql: String| {
        let scope = &scope;
        async move {
            bind_report(sqlx::query(&sql), scope, query, from, to)
                .fetch_all(state.log.pool())
                .await
        }
    };
    let trace = |extra: &str| {
        let mut q = query.clone();
        q.from = Some(from.to_string());
        q.to = Some(to.to_string());
        let mut url = format!("/vyzov/pomoshch/vydachi?{}", report_params(&q));
        if !extra.is_empty() {
            url.push('&');
            url.push_str(extra);
        }
        url
    };
    let lines = |rows: Vec<PgRow>, param: &str, label: &dyn Fn(&str) -> String| {
        rows.iter()
            .map(|row| {
                let key: Option<String> = row.try_get("key")?;
                let key = key.unwrap_or_else(|| "none".to_owned());
                Ok(ReportLine {
                    label: label(&key),
                    trace: trace(&format!(
                        "{param}={}",
                        crate::auth::guard::urlencoding(&key)
                    )),
                    kopecks: row.try_get("kopecks")?,
                    families: row.try_get("families")?,
                    children: row.try_get("children")?,
                    deliveries: row.try_get("deliveries")?,
                    key,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    };
    let total = lines(fetch(breakdown("''")).await?, "", &|_| tr.t("ngo-total"))?
        .into_iter()
        .next()
        .map(|mut l| {
            l.trace = trace("");
            l.key = String::new();
            l
        })
        .unwrap_or_else(|| ReportLine {
            key: String::new(),
            label: tr.t("ngo-total"),
            kopecks: 0,
            families: 0,
            children: 0,
            deliveries: 0,
            trace: trace(""),
        });
    let by_form = lines(fetch(breakdown("form")).await?, "form", &|k| {
        tr.of("ngo-form", k)
    })?;
    let municipality_rows = fetch(breakdown("coalesce(municipality::text, 'none')")).await?;
    // The names of the municipalities in the report only.
    let keys: Vec<String> = municipality_rows
        .iter()
        .map(|r| r.try_get::<Option<String>, _>("key"))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let municipalities: std::collections::HashMap<String, String> = sqlx::query(
        "SELECT id::text AS id, name FROM reference.municipality WHERE id::text = ANY($1)",
    )
    .bind(&keys)
    .fetch_all(state.log.pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let by_municipality = lines(municipality_rows, "municipality", &|k| {
        municipalities
            .get(k)
            .cloned()
            .unwrap_or_else(|| tr.t("ngo-no-municipality"))
    })?;
    let by_requester = lines(fetch(breakdown("requester")).await?, "requester", &|k| {
        tr.of("ngo-requester", k)
    })?;
    let by_purpose = lines(fetch(breakdown("purpose")).await?, "purpose", &|k| {
        tr.of("ngo-purpose", k)
    })?;
    let large_sql = format!(
        "SELECT count(DISTINCT r.family) FROM aid.delivery r JOIN persons.family f ON f.id = r.family \
          WHERE f.large AND r.id IN (SELECT r.id {DELIVERIES} AND {IN_SCOPE})"
    );
    let large_families: i64 = bind_report(sqlx::query(&large_sql), &scope, query, from, to)
        .fetch_one(state.log.pool())
        .await?
        .try_get(0)?;
    let report = AidReport {
        from,
        to,
        average_per_family_kopecks: Rubles::average(
            Rubles::from_kopecks(total.kopecks),
            total.families,
        )
        .kopecks(),
        large_share_permille: if total.families > 0 {
            (large_families * 1000 + total.families / 2) / total.families
        } else {
            0
        },
        large_families,
        total,
        by_form,
        by_municipality,
        by_requester,
        by_purpose,
    };
    Ok(Ok(report))
}

fn report_params(q: &ReportQuery) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("from", &q.from),
        ("to", &q.to),
        ("region", &q.region),
        ("form", &q.form),
        ("requester", &q.requester),
        ("municipality", &q.municipality),
        ("purpose", &q.purpose),
    ] {
        if let Some(value) = opt(value) {
            out.append_pair(name, &value);
        }
    }
    out.finish()
}

#[derive(Template, WebTemplate)]
#[template(path = "aid/report.html")]
struct ReportPage {
    c: Chrome,
    query: ReportQuery,
    report: Option<AidReport>,
    params: String,
    error: Option<String>,
}

async fn report_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    let outcome = aid_report(&state, &viewer, c.tr, &query).await?;
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let (report, error) = match outcome {
        Ok(report) => (Some(report), None),
        Err(refusal) => (None, Some(refusal.message)),
    };
    let params = report_params(&query);
    Ok((
        status,
        ReportPage {
            c,
            query,
            report,
            params,
            error,
        },
    )
        .into_response())
}

/// The report as one table: a section column, then the figures.
fn report_table(tr: Tr, report: &AidReport) -> (Vec<String>, Vec<Vec<String>>) {
    let headers = [
        "ngo-section",
        "ngo-line",
        "ngo-rubles",
        "ngo-families",
        "ngo-children",
        "ngo-deliveries",
    ]
    .iter()
    .map(|k| tr.t(k))
    .collect();
    let mut rows = Vec::new();
    let line = |section: &str, l: &ReportLine| {
        vec![
            section.to_owned(),
            l.label.clone(),
            Rubles::from_kopecks(l.kopecks).plain(),
            l.families.to_string(),
            l.children.to_string(),
            l.deliveries.to_string(),
        ]
    };
    let period = format!("{} — {}", tr.date(&report.from), tr.date(&report.to));
    rows.push(line(&period, &report.total));
    rows.push(vec![
        period.clone(),
        tr.t("ngo-average"),
        Rubles::from_kopecks(report.average_per_family_kopecks).plain(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    rows.push(vec![
        period,
        tr.t("ngo-large-share"),
        format!(
            "{},{} %",
            report.large_share_permille / 10,
            report.large_share_permille % 10
        ),
        report.large_families.to_string(),
        String::new(),
        String::new(),
    ]);
    for (section, lines) in report.sections() {
        let section = tr.t(section);
        rows.extend(lines.iter().map(|l| line(&section, l)));
    }
    (headers, rows)
}

async fn report_export(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    query: &ReportQuery,
    xlsx: bool,
) -> AppResult<Response> {
    let report = match aid_report(state, viewer, tr, query).await? {
        Ok(report) => report,
        Err(refusal) => {
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, refusal.message).into_response())
        }
    };
    let (headers, rows) = report_table(tr, &report);
    let name = format!("pomoshch-{}-{}", report.from, report.to);
    Ok(if xlsx {
        crate::export::download(
            crate::export::xlsx(&tr.t("ngo-report-sheet"), &headers, &rows)?,
            &format!("{name}.xlsx"),
        )
    } else {
        crate::export::download(crate::export::csv(&headers, &rows)?, &format!("{name}.csv"))
    })
}

async fn report_csv(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    report_export(&state, &viewer, c.tr, &query, false).await
}

async fn report_xlsx(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    report_export(&state, &viewer, c.tr, &query, true).await
}

// ---------------------------------------------------------------------------------------
// The drill-down: the deliveries behind a figure

/// One delivery behind a report figure, with the entries of the log that make it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TracedDelivery {
    pub request: Uuid,
    pub delivery: Uuid,
    pub family: Uuid,
    /// Only for those who may read the family's personal data.
    pub family_name: Option<String>,
    #[serde(with = "crate::api::date")]
    pub delivered_on: Date,
    pub kopecks: i64,
    pub form: String,
    pub requester: String,
    pub purpose: String,
    pub municipality: Option<String>,
    pub children: i32,
    /// `AidRequest/<request>#<sequence>` for each entry.
    pub entries: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TracedDeliveries {
    pub kopecks: i64,
    pub deliveries: Vec<TracedDelivery>,
}

pub(crate) async fn traced_deliveries(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    query: &ReportQuery,
) -> AppResult<Result<TracedDeliveries, Refusal>> {
    let scope = report_scope(viewer);
    let (from, to) = match period(query) {
        Ok(p) => p,
        Err(key) => return Ok(Err(Refusal::new(tr, key))),
    };
    let sql = format!(
        "SELECT r.*, f.sealed, m.name AS municipality_name \
           FROM (SELECT r.* {DELIVERIES} AND {IN_SCOPE}) r \
           LEFT JOIN persons.family f ON f.id = r.family \
           LEFT JOIN reference.municipality m ON m.id = r.municipality \
          ORDER BY r.delivered_on, r.id LIMIT 20000"
    );
    let rows = bind_report(sqlx::query(&sql), &scope, query, from, to)
        .fetch_all(state.log.pool())
        .await?;
    // Names only for those who may read families (not for the ministry's analysts).
    let personal = aid_scope(viewer);
    let names: Vec<Option<opora_domain::family::FamilyData>> = if personal.is_empty() {
        vec![None; rows.len()]
    } else {
        open_sealed(state, &rows).await?
    };
    let mut deliveries = Vec::with_capacity(rows.len());
    for (row, name) in rows.iter().zip(names) {
        let request: Uuid = row.try_get("request")?;
        let entries: Vec<i32> = row.try_get("entries")?;
        let form: String = row.try_get("form")?;
        deliveries.push(TracedDelivery {
            request,
            delivery: row.try_get("id")?,
            family: row.try_get("family")?,
            family_name: name.map(|n| n.name),
            delivered_on: row.try_get("delivered_on")?,
            kopecks: row.try_get("amount")?,
            form: form_label(tr, &form, row.try_get("form_other")?),
            requester: tr.of("ngo-requester", &row.try_get::<String, _>("requester")?),
            purpose: tr.of("ngo-purpose", &row.try_get::<String, _>("purpose")?),
            municipality: row.try_get("municipality_name")?,
            children: row.try_get("children")?,
            entries: entries
                .iter()
                .map(|s| format!("AidRequest/{request}#{s}"))
                .collect(),
        });
    }
    if !personal.is_empty() {
        audit::record(state, viewer, Action::List, Some(RECORD), None).await?;
    }
    Ok(Ok(TracedDeliveries {
        kopecks: deliveries.iter().map(|d| d.kopecks).sum(),
        deliveries,
    }))
}

#[derive(Template, WebTemplate)]
#[template(path = "aid/deliveries.html")]
struct DeliveriesPage {
    c: Chrome,
    traced: Option<TracedDeliveries>,
    params: String,
    reader: bool,
    error: Option<String>,
}

async fn deliveries_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    let outcome = traced_deliveries(&state, &viewer, c.tr, &query).await?;
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let (traced, error) = match outcome {
        Ok(t) => (Some(t), None),
        Err(refusal) => (None, Some(refusal.message)),
    };
    Ok((
        status,
        DeliveriesPage {
            reader: READERS.iter().any(|r| viewer.has_role(*r)),
            params: report_params(&query),
            c,
            traced,
            error,
        },
    )
        .into_response())
}

async fn deliveries_export(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    query: &ReportQuery,
    xlsx: bool,
) -> AppResult<Response> {
    let traced = match traced_deliveries(state, viewer, tr, query).await? {
        Ok(t) => t,
        Err(refusal) => {
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, refusal.message).into_response())
        }
    };
    let headers: Vec<String> = [
        "ngo-delivered-on",
        "family-name",
        "ngo-rubles",
        "ngo-form",
        "ngo-requester",
        "ngo-purpose",
        "csv-municipality",
        "ngo-children",
        "ngo-entries",
    ]
    .iter()
    .map(|k| tr.t(k))
    .collect();
    let rows: Vec<Vec<String>> = traced
        .deliveries
        .iter()
        .map(|d| {
            vec![
                tr.date(&d.delivered_on),
                d.family_name
                    .clone()
                    .unwrap_or_else(|| d.family.to_string()),
                Rubles::from_kopecks(d.kopecks).plain(),
                d.form.clone(),
                d.requester.clone(),
                d.purpose.clone(),
                d.municipality.clone().unwrap_or_default(),
                d.children.to_string(),
                d.entries.join(" "),
            ]
        })
        .collect();
    if traced.deliveries.iter().any(|d| d.family_name.is_some()) {
        audit::record(state, viewer, Action::Export, Some(RECORD), None).await?;
    }
    Ok(if xlsx {
        crate::export::download(
            crate::export::xlsx(&tr.t("ngo-deliveries-sheet"), &headers, &rows)?,
            "vydachi.xlsx",
        )
    } else {
        crate::export::download(crate::export::csv(&headers, &rows)?, "vydachi.csv")
    })
}

async fn deliveries_csv(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    deliveries_export(&state, &viewer, c.tr, &query, false).await
}

async fn deliveries_xlsx(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<ReportQuery>,
) -> AppResult<Response> {
    deliveries_export(&state, &viewer, c.tr, &query, true).await
}

// ---------------------------------------------------------------------------------------
// The case page

/// Aid delivered to a case's family: the total and each delivery, for the case page (the
/// case is already in the viewer's scope).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CaseAid {
    /// The child's family, if the case has one.
    pub family: Option<Uuid>,
    pub kopecks: i64,
    pub deliveries: Vec<CaseAidLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseAidLine {
    pub request: Uuid,
    #[serde(with = "crate::api::date")]
    pub delivered_on: Date,
    pub kopecks: i64,
    pub form: String,
}

pub(crate) async fn case_aid(state: &AppState, tr: Tr, family: Option<Uuid>) -> AppResult<CaseAid> {
    let Some(family) = family else {
        return Ok(CaseAid::default());
    };
    let deliveries = sqlx::query(
        "SELECT request, delivered_on, amount, form, form_other FROM aid.delivery \
          WHERE family = $1 AND NOT withdrawn ORDER BY delivered_on DESC",
    )
    .bind(family)
    .fetch_all(state.log.pool())
    .await?
    .iter()
    .map(|row| {
        let form: String = row.try_get("form")?;
        Ok(CaseAidLine {
            request: row.try_get("request")?,
            delivered_on: row.try_get("delivered_on")?,
            kopecks: row.try_get("amount")?,
            form: form_label(tr, &form, row.try_get("form_other")?),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(CaseAid {
        family: Some(family),
        kopecks: deliveries.iter().map(|d| d.kopecks).sum(),
        deliveries,
    })
}
