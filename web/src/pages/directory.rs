//! «Вызов»: the region's directory (institutions, «Дети в семье» services, consilia, the NGO
//! operator), kept by the curator and used by the case forms; and the tasks page (open
//! action items by due date).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::Role;
use opora_domain::case::{InstitutionType, ReviewLevel};
use opora_domain::organisation::{
    Organisation, OrganisationCommand, OrganisationDetails, OrganisationKind,
};
use opora_domain::person::PersonalData;
use opora_domain::reference::{PlaceName, RegionCode};
use opora_store::{CommandError, CommandMeta};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::Date;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::{today_in, Tr};
use crate::pages::cases::{choices, FormFields, ROLES};
use crate::pages::persons::Choice;
use crate::pages::{Outcome, RecordId, Refusal};
use crate::AppState;

pub const EDITORS: &[Role] = &[Role::Administrator, Role::RegionalCurator];

pub fn routes() -> Routes {
    Routes::new()
        .get("/vyzov/spravochnik", Rule::Roles(ROLES), directory)
        .post("/vyzov/spravochnik", Rule::Roles(EDITORS), add_organisation)
        .post(
            "/vyzov/spravochnik/{id}",
            Rule::Roles(EDITORS),
            change_details,
        )
        .get("/vyzov/zadachi", Rule::Roles(ROLES), tasks)
}

#[derive(Serialize, ToSchema)]
pub struct OrganisationRow {
    pub id: Uuid,
    pub kind: String,
    pub name: String,
    pub region: String,
    pub municipality: String,
    pub institution_type: String,
    pub institution_type_code: String,
    pub capacity: Option<i32>,
    pub specialists: Option<i32>,
    pub level: String,
    /// Institutions: children there now; services: families on accompaniment now.
    pub now: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/directory.html")]
struct DirectoryPage {
    c: Chrome,
    organisations: Vec<OrganisationRow>,
    may_edit: bool,
    regions: Vec<Choice>,
    kinds: Vec<Choice>,
    institution_types: Vec<Choice>,
    levels: Vec<Choice>,
    error: Option<String>,
    notice: Option<String>,
}

/// The regions whose directory the viewer sees (`None`: all).
fn viewer_regions(viewer: &Viewer) -> Option<Vec<String>> {
    let scope = viewer.personal_scope();
    (!scope.everywhere).then_some(scope.regions)
}

/// The directory of the viewer's regions.
pub(crate) async fn organisation_rows(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
) -> AppResult<Vec<OrganisationRow>> {
    let regions = viewer_regions(viewer);
    let rows = sqlx::query(
        "SELECT o.id, o.kind, o.name, coalesce(r.name, o.region_code) AS region, \
                coalesce(m.name, '') AS municipality, o.institution_type, o.capacity, \
                o.specialists, o.level, \
                CASE o.kind \
                  WHEN 'institution' THEN (SELECT count(*) FROM cases.child_case c \
                      WHERE c.institution = o.id AND NOT c.closed) \
                  WHEN 'family_service' THEN (SELECT count(DISTINCT coalesce(c.family, c.child)) \
                      FROM cases.child_case c WHERE c.accompaniment = o.id) \
                  ELSE 0 END AS now \
           FROM reference.organisation o \
           LEFT JOIN reference.region r ON r.code = o.region_code \
           LEFT JOIN reference.municipality m ON m.id = o.municipality \
          WHERE $1::text[] IS NULL OR o.region_code = ANY($1) \
          ORDER BY r.name, o.kind, o.name",
    )
    .bind(&regions)
    .fetch_all(state.log.pool())
    .await?;
    let organisations = rows
        .iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let institution_type: Option<String> = row.try_get("institution_type")?;
            let level: Option<String> = row.try_get("level")?;
            Ok(OrganisationRow {
                id: row.try_get("id")?,
                kind: tr.of("organisation", &kind),
                name: row.try_get("name")?,
                region: row.try_get("region")?,
                municipality: row.try_get("municipality")?,
                institution_type: institution_type
                    .as_deref()
                    .map(|t| tr.of("institution-type", t))
                    .unwrap_or_default(),
                institution_type_code: institution_type.unwrap_or_default(),
                capacity: row.try_get("capacity")?,
                specialists: row.try_get("specialists")?,
                level: level.map(|l| tr.of("level", &l)).unwrap_or_default(),
                now: row.try_get("now")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(organisations)
}

async fn page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    error: Option<String>,
    notice: Option<String>,
) -> AppResult<DirectoryPage> {
    let tr = c.tr;
    let organisations = organisation_rows(state, viewer, tr).await?;
    let allowed: Option<Vec<String>> = if viewer.has_role(Role::Administrator) {
        None
    } else {
        Some(editable_regions(viewer))
    };
    let (regions, _) =
        crate::pages::persons::region_choices(state.log.pool(), allowed.as_deref()).await?;
    Ok(DirectoryPage {
        may_edit: EDITORS.iter().any(|r| viewer.has_role(*r)),
        kinds: choices(tr, "organisation", OrganisationKind::ALL),
        institution_types: choices(tr, "institution-type", InstitutionType::ALL),
        levels: choices(tr, "level", ReviewLevel::ALL),
        c,
        organisations,
        regions,
        error,
        notice,
    })
}

/// Regions whose directory a curator keeps.
fn editable_regions(viewer: &Viewer) -> Vec<String> {
    viewer
        .user
        .iter()
        .flat_map(|u| &u.grants)
        .filter(|g| g.role == Role::RegionalCurator)
        .filter_map(|g| match &g.scope {
            opora_domain::access::Scope::Region { region } => Some(region.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

async fn directory(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<crate::pages::NoticeQuery>,
) -> AppResult<DirectoryPage> {
    let notice = query.notice(c.tr);
    page(&state, c, &viewer, None, notice).await
}

/// Details from the form; a message key when a number is not a number.
fn details(form: &FormFields, kind: OrganisationKind) -> Result<OrganisationDetails, &'static str> {
    let count = |name: &str| -> Result<Option<u32>, &'static str> {
        match form.get(name).replace([' ', '\u{a0}'], "").as_str() {
            "" => Ok(None),
            raw => raw.parse().map(Some).map_err(|_| "directory-bad-number"),
        }
    };
    Ok(match kind {
        OrganisationKind::Institution => OrganisationDetails {
            institution_type: Some(
                InstitutionType::parse(form.get("institution_type")).map_err(|_| "field-choose")?,
            ),
            capacity: count("capacity")?,
            ..Default::default()
        },
        OrganisationKind::FamilyService => OrganisationDetails {
            specialists: count("specialists")?,
            ..Default::default()
        },
        OrganisationKind::Consilium => OrganisationDetails {
            level: Some(ReviewLevel::parse(form.get("level")).map_err(|_| "field-choose")?),
            ..Default::default()
        },
        OrganisationKind::Ngo => OrganisationDetails::default(),
    })
}

fn organisation_error(tr: Tr, error: &opora_domain::organisation::OrganisationError) -> Refusal {
    use opora_domain::organisation::OrganisationError as E;
    Refusal::new(
        tr,
        match error {
            E::AlreadyRegistered => "directory-exists",
            E::NotRegistered => "directory-not-found",
            E::DetailNotForKind => "directory-detail-not-for-kind",
            E::ConsiliumNeedsLevel => "field-choose",
            E::CountTooLarge => "directory-bad-number",
            E::SameDetails => "directory-same-details",
        },
    )
}

/// Registers an organisation in a region the viewer keeps (a curator's; any for an
/// administrator).
pub(crate) async fn add_organisation_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<Uuid> {
    let region = RegionCode::parse(form.get("region")).ok().filter(|code| {
        viewer.has_role(Role::Administrator)
            || editable_regions(viewer).iter().any(|r| r == code.as_str())
    });
    let kind = OrganisationKind::parse(form.get("kind")).ok();
    let name = PlaceName::parse(form.get("name")).ok();
    let (Some(region), Some(kind), Some(name)) = (region, kind, name) else {
        return Ok(Err(Refusal::new(tr, "directory-fill-in")));
    };
    let details = match details(form, kind) {
        Ok(details) => details,
        Err(key) => return Ok(Err(Refusal::new(tr, key))),
    };
    let id = opora_domain::organisation::organisation_id(&region, &name);
    let bus = opora_store::CommandBus::<Organisation>::new(state.log.clone(), ());
    let result = bus
        .execute(
            &id.to_string(),
            OrganisationCommand::RegisterOrganisation {
                kind,
                region,
                municipality: None,
                name,
                details,
            },
            &CommandMeta::new(viewer.actor()),
        )
        .await;
    match result {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(error)) => Ok(Err(organisation_error(tr, &error))),
        Err(error) => Err(error.into()),
    }
}

/// The page again with a refusal beside the forms (nothing was written).
async fn refuse(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    refusal: Refusal,
) -> AppResult<Response> {
    let page = page(state, c, viewer, Some(refusal.message), None).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

async fn add_organisation(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match add_organisation_command(&state, &viewer, c.tr, &form).await? {
        Ok(_) => Ok(Redirect::to("/vyzov/spravochnik?notice=directory-added").into_response()),
        Err(refusal) => refuse(&state, c, &viewer, refusal).await,
    }
}

/// Changes an organisation's details (capacity, specialists, level) in a region the viewer
/// keeps; another region's organisation is not found.
pub(crate) async fn change_details_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    form: &FormFields,
) -> Outcome<Uuid> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT kind, region_code FROM reference.organisation WHERE id = $1")
            .bind(id)
            .fetch_optional(state.log.pool())
            .await?;
    let Some((kind, region)) = row else {
        return Err(AppError::NotFound);
    };
    if !viewer.has_role(Role::Administrator) && !editable_regions(viewer).contains(&region) {
        return Err(AppError::NotFound);
    }
    let kind = OrganisationKind::parse(&kind)?;
    let details = match details(form, kind) {
        Ok(details) => details,
        Err(key) => return Ok(Err(Refusal::new(tr, key))),
    };
    let bus = opora_store::CommandBus::<Organisation>::new(state.log.clone(), ());
    match bus
        .execute(
            &id.to_string(),
            OrganisationCommand::ChangeDetails { details },
            &CommandMeta::new(viewer.actor()),
        )
        .await
    {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(error)) => Ok(Err(organisation_error(tr, &error))),
        Err(error) => Err(error.into()),
    }
}

async fn change_details(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match change_details_command(&state, &viewer, c.tr, id, &form).await? {
        Ok(_) => Ok(Redirect::to("/vyzov/spravochnik?notice=directory-changed").into_response()),
        Err(refusal) => refuse(&state, c, &viewer, refusal).await,
    }
}

#[derive(Serialize, ToSchema)]
pub struct TaskRow {
    pub case_id: Uuid,
    pub case_number: String,
    pub name: Option<String>,
    pub action: String,
    pub executor: String,
    #[serde(with = "crate::api::date")]
    pub due: Date,
    pub overdue: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/tasks.html")]
struct TasksPage {
    c: Chrome,
    rows: Vec<TaskRow>,
    overdue_only: bool,
    overdue: usize,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// Not empty: overdue items only.
    #[serde(default)]
    pub overdue: String,
}

/// Open action items in the viewer's places: overdue first, then the next 60 days (the
/// viewing is logged).
pub(crate) async fn task_rows(
    state: &AppState,
    viewer: &Viewer,
    overdue_only: bool,
) -> AppResult<Vec<TaskRow>> {
    let scope = viewer.personal_scope();
    let today = today_in("Europe/Moscow");
    let rows = sqlx::query(
        "SELECT a.case_id, c.case_number, a.action, a.executor, a.due, p.sealed \
           FROM cases.action_item a JOIN cases.child_case c ON c.id = a.case_id \
           LEFT JOIN persons.person p ON p.id = c.child \
          WHERE a.done_on IS NULL AND NOT c.closed \
            AND ($1 OR c.region_code = ANY($2) OR c.municipality = ANY($3)) \
            AND a.due <= $4 + 60 AND (NOT $5 OR a.due < $4) \
          ORDER BY a.due, c.case_number",
    )
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .bind(today)
    .bind(overdue_only)
    .fetch_all(state.log.pool())
    .await?;
    let opened: Vec<Option<PersonalData>> =
        crate::pages::persons::open_sealed(state, &rows).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, personal) in rows.iter().zip(opened) {
        let due: Date = row.try_get("due")?;
        out.push(TaskRow {
            case_id: row.try_get("case_id")?,
            case_number: row.try_get("case_number")?,
            name: personal.as_ref().map(PersonalData::full_name),
            action: row.try_get("action")?,
            executor: row.try_get("executor")?,
            overdue: due < today,
            due,
        });
    }
    crate::audit::record(
        state,
        viewer,
        crate::audit::Action::List,
        Some("case"),
        None,
    )
    .await?;
    Ok(out)
}

async fn tasks(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<TasksQuery>,
) -> AppResult<TasksPage> {
    let overdue_only = !query.overdue.trim().is_empty();
    let rows = task_rows(&state, &viewer, overdue_only).await?;
    Ok(TasksPage {
        overdue: rows.iter().filter(|r| r.overdue).count(),
        rows,
        overdue_only,
        c,
    })
}
