//! Families: their status (ТЖС, СОП), large family, and their children; scoped and logged
//! like every record with personal data.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::{Role, Text};
use opora_domain::family::{Family, FamilyCommand, FamilyData, FamilyError, FamilyStatus};
use opora_domain::person::PersonalData;
use opora_domain::reference::RegionCode;
use opora_store::{CommandBus, CommandError, CommandMeta};
use sqlx::Row;
use uuid::Uuid;

use crate::audit::{self, Action};
use crate::auth::guard::{PersonalScope, Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::AppResult;
use crate::i18n::{today_in, Tr};
use crate::pages::cases::{choices, FormFields};
use crate::pages::persons::{open_sealed, Choice, MunicipalityGroup, ROLES};
use crate::pages::{Outcome, RecordId, Refusal};
use crate::AppState;
use serde::Serialize;
use utoipa::ToSchema;

const RECORD: &str = "family";
const FAMILY_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_4641_4d49_4c59_0000_0001);

/// Who works with families: those who keep the register, and NGO operators (their NGO's
/// families only).
pub const FAMILY_ROLES: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::ConsiliumSecretary,
    Role::NgoOperator,
];
const NGO_ONLY: &[Role] = &[Role::NgoOperator];
/// Shortest name fragment an NGO operator may search the region's families by.
const MIN_SEARCH: usize = 3;

pub fn routes() -> Routes {
    Routes::new()
        .get("/lyudi/semi", Rule::Roles(FAMILY_ROLES), families)
        .get(
            "/lyudi/semi/novaya",
            Rule::Roles(FAMILY_ROLES),
            new_family_form,
        )
        .post("/lyudi/semi", Rule::Roles(FAMILY_ROLES), register_family)
        .get("/lyudi/semi/{id}", Rule::Roles(FAMILY_ROLES), show_family)
        .post(
            "/lyudi/semi/{id}/zapis",
            Rule::Roles(FAMILY_ROLES),
            change_family,
        )
        .post("/lyudi/semi/{id}/nko", Rule::Roles(NGO_ONLY), take_on)
}

#[derive(Serialize, ToSchema)]
pub struct FamilyRow {
    pub id: Uuid,
    pub name: Option<String>,
    pub region: String,
    pub status: String,
    pub large: bool,
    pub children: i64,
}

async fn family_rows(
    state: &AppState,
    scope: &PersonalScope,
    tr: Tr,
    id: Option<Uuid>,
) -> AppResult<Vec<(FamilyRow, Option<FamilyData>, String)>> {
    let rows = sqlx::query(
        "SELECT f.id, f.sealed, f.status, f.large, f.region_code, coalesce(r.name, f.region_code) AS region, \
                (SELECT count(*) FROM persons.family_child c WHERE c.family = f.id) AS children \
           FROM persons.family f LEFT JOIN reference.region r ON r.code = f.region_code \
          WHERE ($1 OR f.region_code = ANY($2) OR f.municipality = ANY($3) \
                 OR EXISTS (SELECT 1 FROM persons.family_ngo n WHERE n.family = f.id AND n.ngo = ANY($5))) \
            AND ($4::uuid IS NULL OR f.id = $4) \
          ORDER BY f.registered_at DESC LIMIT 500",
    )
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .bind(id)
    .bind(&scope.ngos)
    .fetch_all(state.log.pool())
    .await?;
    let opened: Vec<Option<FamilyData>> = crate::pages::persons::open_sealed(state, &rows).await?;
    let mut out = Vec::new();
    for (row, data) in rows.iter().zip(opened) {
        let status: String = row.try_get("status")?;
        out.push((
            FamilyRow {
                id: row.try_get("id")?,
                name: data.as_ref().map(|d| d.name.clone()),
                region: row.try_get("region")?,
                status: tr.of("family-status", &status),
                large: row.try_get("large")?,
                children: row.try_get("children")?,
            },
            data,
            row.try_get("region_code")?,
        ));
    }
    Ok(out)
}

#[derive(Template, WebTemplate)]
#[template(path = "persons/families.html")]
struct FamiliesPage {
    c: Chrome,
    rows: Vec<FamilyRow>,
    /// An NGO operator's search of the region's families, to take one into work.
    ngo: bool,
    query: String,
    found: Option<Vec<FamilyRow>>,
    notice: Option<String>,
}

#[derive(serde::Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    pub notice: Option<String>,
}

/// Families of the NGO's region not yet in its work whose name contains `query` (at least
/// three letters; twenty at most; the search is logged as a list).
pub(crate) async fn search_for_ngo(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    query: &str,
) -> AppResult<Vec<FamilyRow>> {
    let wanted = query.trim().to_lowercase();
    if wanted.chars().count() < MIN_SEARCH {
        return Ok(Vec::new());
    }
    let ngos = viewer.ngos();
    let regions: Vec<String> = ngos.iter().map(|(r, _)| r.as_str().to_owned()).collect();
    let ids: Vec<Uuid> = ngos.iter().map(|(_, n)| *n).collect();
    let scope = PersonalScope {
        regions,
        ..PersonalScope::default()
    };
    let mut found = Vec::new();
    for (row, data, _) in family_rows(state, &scope, tr, None).await? {
        let matches = data
            .as_ref()
            .is_some_and(|d| d.name.to_lowercase().contains(&wanted));
        if matches && found.len() < 20 {
            found.push(row);
        }
    }
    let taken: Vec<Uuid> = sqlx::query_scalar(
        "SELECT family FROM persons.family_ngo WHERE family = ANY($1) AND ngo = ANY($2)",
    )
    .bind(found.iter().map(|f| f.id).collect::<Vec<_>>())
    .bind(&ids)
    .fetch_all(state.log.pool())
    .await?;
    found.retain(|f| !taken.contains(&f.id));
    audit::record(state, viewer, Action::List, Some(RECORD), None).await?;
    Ok(found)
}

/// The NGO operator takes a family of its region into the NGO's work.
pub(crate) async fn take_on_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
) -> Outcome<Uuid> {
    let region: Option<String> =
        sqlx::query_scalar("SELECT region_code FROM persons.family WHERE id = $1")
            .bind(id)
            .fetch_optional(state.log.pool())
            .await?;
    let ngo = region.as_deref().and_then(|r| viewer.ngo_in(r));
    let ngo = audit::found(state, viewer, RECORD, id, ngo).await?;
    take_on_family(state, viewer, tr, id, ngo).await
}

/// Takes family `id` into `ngo`'s work; a family already in it stays so (a request on a
/// consilium decision hands the family over this way too).
pub(crate) async fn take_on_family(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    ngo: Uuid,
) -> Outcome<Uuid> {
    let command = FamilyCommand::TakeOn {
        on: today_in("Europe/Moscow"),
        ngo,
    };
    match execute_family(state, tr, id, command, &CommandMeta::new(viewer.actor())).await? {
        Err(refusal) if refusal.code == "family-taken-on" => Ok(Ok(id)),
        outcome => Ok(outcome),
    }
}

/// Runs a command on family `id`: its id, or the rule's refusal in the user's words.
async fn execute_family(
    state: &AppState,
    tr: Tr,
    id: Uuid,
    command: FamilyCommand,
    meta: &CommandMeta,
) -> Outcome<Uuid> {
    let bus = CommandBus::<Family>::new(state.log.clone(), ());
    match bus.execute(&id.to_string(), command, meta).await {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(error)) => Ok(Err(family_error(tr, &error))),
        Err(error) => Err(error.into()),
    }
}

async fn take_on(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
) -> AppResult<Response> {
    match take_on_command(&state, &viewer, c.tr, id).await? {
        Ok(_) => {
            Ok(Redirect::to(&format!("/lyudi/semi/{id}?notice=family-taken-on")).into_response())
        }
        Err(refusal) => Ok(Redirect::to(&format!(
            "/lyudi/semi?notice={}",
            crate::auth::guard::urlencoding(&refusal.code)
        ))
        .into_response()),
    }
}

/// The families of the viewer's places (the viewing is logged).
pub(crate) async fn family_list(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
) -> AppResult<Vec<FamilyRow>> {
    let rows = family_rows(state, &viewer.personal_scope(), tr, None)
        .await?
        .into_iter()
        .map(|(row, _, _)| row)
        .collect();
    audit::record(state, viewer, Action::List, Some(RECORD), None).await?;
    Ok(rows)
}

async fn families(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<SearchQuery>,
) -> AppResult<FamiliesPage> {
    let rows = family_list(&state, &viewer, c.tr).await?;
    let ngo = !viewer.ngos().is_empty();
    let found = if ngo && !query.q.trim().is_empty() {
        Some(search_for_ngo(&state, &viewer, c.tr, &query.q).await?)
    } else {
        None
    };
    let notice = query
        .notice
        .as_deref()
        .filter(|k| k.starts_with("family-"))
        .and_then(|k| c.tr.try_t(k));
    Ok(FamiliesPage {
        c,
        rows,
        ngo,
        query: query.q,
        found,
        notice,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "persons/new_family.html")]
struct NewFamilyPage {
    c: Chrome,
    regions: Vec<Choice>,
    municipalities: Vec<MunicipalityGroup>,
    statuses: Vec<Choice>,
    command_id: Uuid,
    error: Option<String>,
}

async fn new_family_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    error: Option<String>,
) -> AppResult<NewFamilyPage> {
    let allowed: Option<Vec<String>> = viewer
        .family_regions()
        .map(|r| r.iter().map(|c| c.as_str().to_owned()).collect());
    let (regions, municipalities) =
        crate::pages::persons::region_choices(state.log.pool(), allowed.as_deref()).await?;
    Ok(NewFamilyPage {
        statuses: choices(c.tr, "family-status", FamilyStatus::ALL),
        c,
        regions,
        municipalities,
        command_id: Uuid::now_v7(),
        error,
    })
}

async fn new_family_form(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
) -> AppResult<NewFamilyPage> {
    new_family_page(&state, c, &viewer, None).await
}

/// Registers a family in one of the viewer's regions; its id comes from the command id
/// (sent twice: registered once). Its name and contacts are sealed.
pub(crate) async fn register_family_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<Uuid> {
    let allowed = viewer.family_regions();
    let region = RegionCode::parse(form.get("region"))
        .ok()
        .filter(|r| allowed.as_ref().is_none_or(|a| a.contains(r)));
    let name = Text::parse(form.get("name"));
    let status = FamilyStatus::parse(form.get("status")).ok();
    let municipality = Uuid::parse_str(form.get("municipality")).ok();
    let (Some(region), Some(name), Some(status)) = (region, name, status) else {
        return Ok(Err(Refusal::new(tr, "family-fill-in")));
    };
    let command_id = form.command_id();
    let id = Uuid::new_v5(&FAMILY_NAMESPACE, command_id.as_bytes());
    let exists = state.log.stream_length("Family", &id.to_string()).await? > 0;
    if exists {
        return Ok(Ok(id));
    }
    let data = FamilyData {
        name: name.as_str().to_owned(),
        address: Text::parse(form.get("address")).map(|t| t.as_str().to_owned()),
        phone: Text::parse(form.get("phone")).map(|t| t.as_str().to_owned()),
    };
    let personal = state.vault.seal(id, &data).await?;
    let ngo = viewer.ngo_in(region.as_str());
    let command = FamilyCommand::Register {
        on: today_in("Europe/Moscow"),
        region,
        municipality,
        status,
        large: form.flag("large"),
        ngo,
        personal,
    };
    execute_family(
        state,
        tr,
        id,
        command,
        &CommandMeta::new(viewer.actor()).with_command_id(command_id),
    )
    .await
}

async fn register_family(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match register_family_command(&state, &viewer, c.tr, &form).await? {
        Ok(id) => Ok(Redirect::to(&format!("/lyudi/semi/{id}")).into_response()),
        Err(refusal) => {
            let page = new_family_page(&state, c, &viewer, Some(refusal.message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChildRow {
    pub id: Uuid,
    pub name: Option<String>,
    pub cases: Vec<CaseLink>,
}

#[derive(Serialize, ToSchema)]
pub struct CaseLink {
    pub id: Uuid,
    pub case_number: String,
}

/// A family with its children and their cases.
#[derive(Serialize, ToSchema)]
pub struct FamilyView {
    pub family: FamilyRow,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub children: Vec<ChildRow>,
    /// Children of the region not yet in the family (what may be linked).
    #[serde(skip)]
    pub candidates: Vec<Choice>,
    #[serde(skip)]
    pub data: Option<FamilyData>,
    /// The family's aid requests that the viewer may see.
    pub aid: Vec<crate::pages::aid::RequestRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "persons/family.html")]
struct FamilyPage {
    c: Chrome,
    /// The viewer keeps the register: children and cases are links.
    registry: bool,
    /// The viewer may open aid requests for this family.
    aid_writer: bool,
    aid: Vec<crate::pages::aid::RequestRow>,
    family: FamilyRow,
    data: Option<FamilyData>,
    children: Vec<ChildRow>,
    candidates: Vec<Choice>,
    statuses: Vec<Choice>,
    error: Option<String>,
    notice: Option<String>,
}

/// A family in the viewer's scope (the viewing is logged; out of scope: not found, and the
/// refusal logged).
pub(crate) async fn family_view(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
) -> AppResult<FamilyView> {
    let scope = viewer.personal_scope();
    let found = family_rows(state, &scope, tr, Some(id))
        .await?
        .into_iter()
        .next();
    let (family, data, region) = audit::viewed(state, viewer, RECORD, id, found).await?;
    // The family's children with their cases, in one query.
    let rows = sqlx::query(
        "SELECT p.id, p.sealed, \
                array_remove(array_agg(c.id ORDER BY c.opened_on), NULL) AS case_ids, \
                array_remove(array_agg(c.case_number ORDER BY c.opened_on), NULL) AS case_numbers \
           FROM persons.family_child fc JOIN persons.person p ON p.id = fc.child \
           LEFT JOIN cases.child_case c ON c.child = p.id \
          WHERE fc.family = $1 GROUP BY p.id ORDER BY p.registered_at",
    )
    .bind(id)
    .fetch_all(state.log.pool())
    .await?;
    let personal: Vec<Option<PersonalData>> = open_sealed(state, &rows).await?;
    let mut children = Vec::with_capacity(rows.len());
    for (row, personal) in rows.iter().zip(personal) {
        let ids: Vec<Uuid> = row.try_get("case_ids")?;
        let numbers: Vec<String> = row.try_get("case_numbers")?;
        children.push(ChildRow {
            id: row.try_get("id")?,
            name: personal.map(|p| p.full_name()),
            cases: ids
                .into_iter()
                .zip(numbers)
                .map(|(id, case_number)| CaseLink { id, case_number })
                .collect(),
        });
    }
    // Children of the region not yet in this family, to link: only for those who keep the
    // region's register (an NGO operator does not see the region's children).
    let rows = if !scope.allows(&region, None) {
        Vec::new()
    } else {
        sqlx::query(
        "SELECT p.id, p.sealed FROM persons.person p \
          WHERE p.kind = 'child' AND p.region_code = $1 AND p.sealed IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM persons.family_child fc WHERE fc.family = $2 AND fc.child = p.id) \
          ORDER BY p.registered_at DESC LIMIT 300",
    )
    .bind(&region)
    .bind(id)
    .fetch_all(state.log.pool())
    .await?
    };
    let personal: Vec<Option<PersonalData>> = open_sealed(state, &rows).await?;
    let mut candidates = Vec::new();
    for (row, personal) in rows.iter().zip(personal) {
        if let Some(personal) = personal {
            candidates.push(Choice {
                value: row.try_get::<Uuid, _>("id")?.to_string(),
                label: personal.full_name(),
            });
        }
    }
    Ok(FamilyView {
        family,
        address: data.as_ref().and_then(|d| d.address.clone()),
        phone: data.as_ref().and_then(|d| d.phone.clone()),
        children,
        candidates,
        aid: crate::pages::aid::family_requests(state, &scope, tr, id).await?,
        data,
    })
}

async fn family_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    id: Uuid,
    error: Option<String>,
    notice: Option<String>,
) -> AppResult<FamilyPage> {
    let view = family_view(state, viewer, c.tr, id).await?;
    Ok(FamilyPage {
        registry: ROLES.iter().any(|r| viewer.has_role(*r)),
        aid_writer: crate::pages::aid::WRITERS
            .iter()
            .any(|r| viewer.has_role(*r)),
        aid: view.aid,
        statuses: choices(c.tr, "family-status", FamilyStatus::ALL),
        c,
        family: view.family,
        data: view.data,
        children: view.children,
        candidates: view.candidates,
        error,
        notice,
    })
}

async fn show_family(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    Query(query): Query<crate::pages::NoticeQuery>,
) -> AppResult<FamilyPage> {
    let notice = query.notice(c.tr);
    family_page(&state, c, &viewer, id, None, notice).await
}

fn family_error(tr: Tr, error: &FamilyError) -> Refusal {
    Refusal::new(
        tr,
        match error {
            FamilyError::AlreadyRegistered => "family-exists",
            FamilyError::NotRegistered | FamilyError::WrongSubject => "family-not-found",
            FamilyError::SameStatus | FamilyError::SameLarge => "directory-same-details",
            FamilyError::AlreadyLinked => "family-already-linked",
            FamilyError::NotLinked => "family-not-linked",
            FamilyError::AlreadyTakenOn => "family-taken-on",
        },
    )
}

/// Changes a family in the viewer's scope: status (with a reason), large family, a child
/// linked (one of the region's children) or unlinked (with a reason).
pub(crate) async fn change_family_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    form: &FormFields,
) -> Outcome<Uuid> {
    // In scope, or not found (the view checks and logs it).
    let view = family_view(state, viewer, tr, id).await?;
    let on = today_in("Europe/Moscow");
    let reason = Text::parse(form.get("reason"));
    let child = Uuid::parse_str(form.get("child")).ok();
    let command = match (form.get("action"), reason, child) {
        ("status", Some(reason), _) => FamilyStatus::parse(form.get("status"))
            .ok()
            .map(|status| FamilyCommand::ChangeStatus { on, status, reason }),
        ("large", _, _) => Some(FamilyCommand::MarkLarge {
            on,
            large: form.flag("large"),
        }),
        // Only a child of the family's region that the page offers can be linked.
        ("link", _, Some(child))
            if view.candidates.iter().any(|c| c.value == child.to_string()) =>
        {
            Some(FamilyCommand::LinkChild { on, child })
        }
        ("unlink", Some(reason), Some(child)) => {
            Some(FamilyCommand::UnlinkChild { on, child, reason })
        }
        _ => None,
    };
    let Some(command) = command else {
        return Ok(Err(Refusal::new(tr, "family-fill-in")));
    };
    execute_family(state, tr, id, command, &CommandMeta::new(viewer.actor())).await
}

async fn change_family(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match change_family_command(&state, &viewer, c.tr, id, &form).await? {
        Ok(_) => {
            Ok(Redirect::to(&format!("/lyudi/semi/{id}?notice=case-recorded")).into_response())
        }
        Err(refusal) => {
            let page = family_page(&state, c, &viewer, id, Some(refusal.message), None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// The family a child belongs to (the first, if several), for a new case.
pub async fn family_of(state: &AppState, child: Uuid) -> AppResult<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT family FROM persons.family_child WHERE child = $1 LIMIT 1")
            .bind(child)
            .fetch_optional(state.log.pool())
            .await?,
    )
}
