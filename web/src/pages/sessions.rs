//! Consilium sittings: a sitting (date, level, chair, members) considers an agenda of cases,
//! built from the register's "due for review" list, and records one review per case; its
//! page is the printable protocol.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::Text;
use opora_domain::case::{CaseAction, CaseCommand, ReviewLevel};
use opora_domain::consilium::{ConsiliumSession, SessionCommand};
use opora_domain::person::PersonalData;
use opora_domain::reference::RegionCode;
use opora_store::{CommandBus, CommandError, CommandMeta};
use sqlx::types::Json;
use sqlx::Row;
use time::Date;
use uuid::Uuid;

use crate::auth::guard::{PersonalScope, Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::today_in;
use crate::i18n::Tr;
use crate::pages::cases::{case_in_scope, choices, execute_case, parse_action, FormFields, ROLES};
use crate::pages::persons::Choice;
use crate::pages::{Outcome, RecordId, Refusal};
use crate::AppState;
use serde::Serialize;
use utoipa::ToSchema;

pub fn routes() -> Routes {
    Routes::new()
        .get("/vyzov/konsiliumy", Rule::Roles(ROLES), sessions)
        .get(
            "/vyzov/konsiliumy/novoe",
            Rule::Roles(ROLES),
            new_session_form,
        )
        .post("/vyzov/konsiliumy", Rule::Roles(ROLES), hold_session)
        .get("/vyzov/konsiliumy/{id}", Rule::Roles(ROLES), show_session)
        .post(
            "/vyzov/konsiliumy/{id}/rassmotrenie",
            Rule::Roles(ROLES),
            review_case,
        )
}

/// Regions whose sittings the viewer sees (`None`: all).
fn session_regions(scope: &PersonalScope) -> Option<Vec<String>> {
    (!scope.everywhere).then(|| scope.regions.clone())
}

#[derive(Serialize, ToSchema)]
pub struct SessionRow {
    pub id: Uuid,
    #[serde(with = "crate::api::date")]
    pub held_on: Date,
    pub region: String,
    pub level: String,
    pub chair: String,
    pub cases: i64,
    pub reviewed: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/sessions.html")]
struct SessionsPage {
    c: Chrome,
    rows: Vec<SessionRow>,
}

/// The sittings of the viewer's regions, newest first (200 at most).
pub(crate) async fn session_rows(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
) -> AppResult<Vec<SessionRow>> {
    let regions = session_regions(&viewer.personal_scope());
    let rows = sqlx::query(
        "SELECT s.id, s.held_on, coalesce(r.name, s.region_code) AS region, s.level, s.chair, \
                cardinality(s.agenda)::bigint AS cases, \
                (SELECT count(*) FROM cases.review v WHERE v.session = s.id) AS reviewed \
           FROM cases.session s LEFT JOIN reference.region r ON r.code = s.region_code \
          WHERE $1::text[] IS NULL OR s.region_code = ANY($1) ORDER BY s.held_on DESC LIMIT 200",
    )
    .bind(&regions)
    .fetch_all(state.log.pool())
    .await?
    .iter()
    .map(|row| {
        Ok(SessionRow {
            id: row.try_get("id")?,
            held_on: row.try_get("held_on")?,
            region: row.try_get("region")?,
            level: tr.of("level", &row.try_get::<String, _>("level")?),
            chair: row.try_get("chair")?,
            cases: row.try_get("cases")?,
            reviewed: row.try_get("reviewed")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(rows)
}

async fn sessions(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
) -> AppResult<SessionsPage> {
    let rows = session_rows(&state, &viewer, c.tr).await?;
    Ok(SessionsPage { c, rows })
}

pub struct AgendaChoice {
    pub id: Uuid,
    pub case_number: String,
    pub name: Option<String>,
    pub due: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/new_session.html")]
struct NewSessionPage {
    c: Chrome,
    cases: Vec<AgendaChoice>,
    regions: Vec<Choice>,
    levels: Vec<Choice>,
    consilia: Vec<Choice>,
    today: Date,
    command_id: Uuid,
    error: Option<String>,
}

/// Open cases of children in institutions in the viewer's regions, those due for review
/// first (and pre-selected).
async fn agenda_choices(
    state: &AppState,
    scope: &PersonalScope,
    today: Date,
) -> AppResult<Vec<AgendaChoice>> {
    let rows = sqlx::query(
        "SELECT c.id, c.case_number, cases.needs_review(c.placed_on, c.last_review, $4) AS due, p.sealed \
           FROM cases.child_case c LEFT JOIN persons.person p ON p.id = c.child \
          WHERE NOT c.closed AND c.placed_on IS NOT NULL \
            AND ($1 OR c.region_code = ANY($2) OR c.municipality = ANY($3)) \
          ORDER BY 3 DESC, c.case_number LIMIT 500",
    )
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .bind(today)
    .fetch_all(state.log.pool())
    .await?;
    let opened: Vec<Option<PersonalData>> =
        crate::pages::persons::open_sealed(state, &rows).await?;
    rows.iter()
        .zip(opened)
        .map(|(row, personal)| {
            Ok(AgendaChoice {
                id: row.try_get("id")?,
                case_number: row.try_get("case_number")?,
                name: personal.as_ref().map(PersonalData::full_name),
                due: row.try_get("due")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(AppError::from)
}

async fn new_session_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    error: Option<String>,
) -> AppResult<NewSessionPage> {
    let scope = viewer.personal_scope();
    let today = today_in("Europe/Moscow");
    let regions = session_regions(&scope);
    let (regions_choice, _) =
        crate::pages::persons::region_choices(state.log.pool(), regions.as_deref()).await?;
    let consilia = crate::pages::persons::organisation_choices(
        state.log.pool(),
        "consilium",
        regions.as_deref(),
    )
    .await?;
    Ok(NewSessionPage {
        cases: agenda_choices(state, &scope, today).await?,
        regions: regions_choice,
        levels: choices(c.tr, "level", ReviewLevel::ALL),
        consilia,
        today,
        command_id: Uuid::now_v7(),
        c,
        error,
    })
}

async fn new_session_form(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
) -> AppResult<NewSessionPage> {
    new_session_page(&state, c, &viewer, None).await
}

const SESSION_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5345_5353_0000_0000_0001);

/// Holds a sitting in one of the viewer's regions; only cases the viewer may see can be on
/// its agenda. The sitting's id comes from the command id (sent twice: held once).
pub(crate) async fn hold_session_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<Uuid> {
    let scope = viewer.personal_scope();
    let allowed = session_regions(&scope);
    let region = RegionCode::parse(form.get("region")).ok().filter(|r| {
        allowed
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == r.as_str()))
    });
    let on = opora_domain::parse_date(form.get("on"));
    let level = ReviewLevel::parse(form.get("level")).ok();
    let chair = Text::parse(form.get("chair"));
    let members: Vec<Text> = form
        .get("members")
        .lines()
        .filter_map(Text::parse)
        .collect();
    let consilium = Uuid::parse_str(form.get("consilium")).ok();
    // Only cases the viewer may see can be put on the agenda.
    let offered: Vec<Uuid> = agenda_choices(state, &scope, today_in("Europe/Moscow"))
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    let agenda: Vec<Uuid> = form
        .all("agenda")
        .into_iter()
        .filter_map(|raw| Uuid::parse_str(raw).ok())
        .filter(|id| offered.contains(id))
        .collect();
    let (Some(region), Some(on), Some(level), Some(chair)) = (region, on, level, chair) else {
        return Ok(Err(Refusal::new(tr, "session-fill-in")));
    };
    let command_id = form.command_id();
    let id = Uuid::new_v5(&SESSION_NAMESPACE, command_id.as_bytes());
    let bus = CommandBus::<ConsiliumSession>::new(state.log.clone(), ());
    let result = bus
        .execute(
            &id.to_string(),
            SessionCommand::Hold {
                on,
                today: today_in("Europe/Moscow"),
                region,
                level,
                consilium,
                chair,
                members,
                agenda,
            },
            &CommandMeta::new(viewer.actor()).with_command_id(command_id),
        )
        .await;
    match result {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(error)) => Ok(Err(Refusal {
            code: "session-refused".to_owned(),
            message: error.to_string(),
        })),
        Err(error) => Err(error.into()),
    }
}

async fn hold_session(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match hold_session_command(&state, &viewer, c.tr, &form).await? {
        Ok(id) => Ok(Redirect::to(&format!("/vyzov/konsiliumy/{id}")).into_response()),
        Err(refusal) => {
            let page = new_session_page(&state, c, &viewer, Some(refusal.message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AgendaRow {
    pub case: Uuid,
    pub case_number: String,
    pub name: Option<String>,
    pub entries: i64,
    pub decision: Option<String>,
}

/// A sitting and its agenda (cases out of the viewer's scope left out), each with its
/// decision once reviewed.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    #[serde(with = "crate::api::date")]
    pub held_on: Date,
    pub region: String,
    pub level: String,
    pub level_code: String,
    pub consilium: String,
    pub chair: String,
    pub members: Vec<String>,
    pub agenda: Vec<AgendaRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/session.html")]
struct SessionPage {
    c: Chrome,
    id: Uuid,
    held_on: Date,
    region: String,
    level: String,
    level_code: String,
    consilium: String,
    chair: String,
    members: Vec<String>,
    agenda: Vec<AgendaRow>,
    aids: Vec<Choice>,
    error: Option<String>,
}

pub(crate) async fn session_view(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
) -> AppResult<SessionView> {
    let scope = viewer.personal_scope();
    let regions = session_regions(&scope);
    let row = sqlx::query(
        "SELECT s.*, coalesce(r.name, s.region_code) AS region_name, coalesce(o.name, '') AS consilium_name \
           FROM cases.session s LEFT JOIN reference.region r ON r.code = s.region_code \
           LEFT JOIN reference.organisation o ON o.id = s.consilium \
          WHERE s.id = $1 AND ($2::text[] IS NULL OR s.region_code = ANY($2))",
    )
    .bind(id)
    .bind(&regions)
    .fetch_optional(state.log.pool())
    .await?
    .ok_or(AppError::NotFound)?;
    let agenda_ids: Vec<Uuid> = row.try_get("agenda")?;
    let Json(members): Json<Vec<String>> = row.try_get("members")?;
    let level_code: String = row.try_get("level")?;
    // The agenda's cases in the viewer's scope (others are left out of its view of the
    // protocol), each with its entry count and this sitting's decision: one query.
    let rows = sqlx::query(
        "SELECT c.id, c.case_number, p.sealed, \
                (SELECT coalesce(max(e.sequence), 0) FROM event e \
                  WHERE e.aggregate_type = 'ChildCase' AND e.aggregate_id = c.id::text) AS entries, \
                v.aid, v.return_possible, v.return_by, v.next_review \
           FROM unnest($1::uuid[]) WITH ORDINALITY AS a(id, n) \
           JOIN cases.child_case c ON c.id = a.id \
           LEFT JOIN persons.person p ON p.id = c.child \
           LEFT JOIN cases.review v ON v.case_id = c.id AND v.session = $2 \
          WHERE $3 OR c.region_code = ANY($4) OR c.municipality = ANY($5) \
          ORDER BY a.n",
    )
    .bind(&agenda_ids)
    .bind(id)
    .bind(scope.everywhere)
    .bind(&scope.regions)
    .bind(&scope.municipalities)
    .fetch_all(state.log.pool())
    .await?;
    let personal: Vec<Option<PersonalData>> =
        crate::pages::persons::open_sealed(state, &rows).await?;
    let mut agenda = Vec::with_capacity(rows.len());
    for (row, personal) in rows.iter().zip(personal) {
        let aid: Option<String> = row.try_get("aid")?;
        let decision = aid.map(|aid| {
            let mut text = tr.of("aid", &aid);
            let possible: Option<bool> = row.try_get("return_possible").ok().flatten();
            let by: Option<Date> = row.try_get("return_by").ok().flatten();
            let next: Option<Date> = row.try_get("next_review").ok().flatten();
            if possible == Some(true) {
                text.push_str(&format!("; {}", tr.t("review-return-possible")));
                if let Some(by) = by {
                    text.push_str(&format!(" ({} {})", tr.t("review-return-by"), tr.date(&by)));
                }
            }
            if let Some(next) = next {
                text.push_str(&format!(
                    "; {} {}",
                    tr.t("case-next-review"),
                    tr.date(&next)
                ));
            }
            text
        });
        agenda.push(AgendaRow {
            case: row.try_get("id")?,
            case_number: row.try_get("case_number")?,
            name: personal.map(|p| p.full_name()),
            entries: row.try_get("entries")?,
            decision,
        });
    }
    crate::audit::record(
        state,
        viewer,
        crate::audit::Action::List,
        Some("consilium_session"),
        Some(&id.to_string()),
    )
    .await?;
    Ok(SessionView {
        id,
        held_on: row.try_get("held_on")?,
        region: row.try_get("region_name")?,
        level: tr.of("level", &level_code),
        level_code,
        consilium: row.try_get("consilium_name")?,
        chair: row.try_get("chair")?,
        members,
        agenda,
    })
}

async fn session_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    id: Uuid,
    error: Option<String>,
) -> AppResult<SessionPage> {
    let view = session_view(state, viewer, c.tr, id).await?;
    Ok(SessionPage {
        aids: crate::pages::cases::review_aids(c.tr),
        id: view.id,
        held_on: view.held_on,
        region: view.region,
        level: view.level,
        level_code: view.level_code,
        consilium: view.consilium,
        chair: view.chair,
        members: view.members,
        agenda: view.agenda,
        c,
        error,
    })
}

async fn show_session(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
) -> AppResult<SessionPage> {
    session_page(&state, c, &viewer, id, None).await
}

/// Records the sitting's review of one case of its agenda (dated the sitting's date, at
/// the sitting's level); a case already reviewed there is refused.
pub(crate) async fn review_case_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    form: &FormFields,
) -> Outcome<()> {
    let sitting = session_view(state, viewer, tr, id).await?;
    let case = Uuid::parse_str(form.get("case")).map_err(|_| AppError::NotFound)?;
    let Some(row) = sitting.agenda.iter().find(|a| a.case == case) else {
        return Err(AppError::NotFound);
    };
    if row.decision.is_some() {
        return Ok(Err(Refusal::new(tr, "session-already-reviewed")));
    }
    if form.get("entries").parse::<i64>().ok() != Some(row.entries) {
        return Ok(Err(Refusal::new(tr, "case-stale-form")));
    }
    let mut action = match parse_action(form) {
        Ok(action) => action,
        Err(key) => return Ok(Err(Refusal::new(tr, key))),
    };
    if let CaseAction::RecordReview(review) = &mut action {
        review.session = Some(id);
        review.level = ReviewLevel::parse(&sitting.level_code).unwrap_or(review.level);
    } else {
        return Ok(Err(Refusal::new(tr, "case-unknown-action")));
    }
    let view = case_in_scope(state, viewer, case, tr).await?;
    let command = CaseCommand {
        on: sitting.held_on,
        today: today_in(&view.time_zone),
        born: view.birth_date,
        action,
    };
    execute_case(state, viewer, tr, case, command, form.command_id()).await
}

async fn review_case(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match review_case_command(&state, &viewer, c.tr, id, &form).await? {
        Ok(()) => Ok(Redirect::to(&format!("/vyzov/konsiliumy/{id}")).into_response()),
        Err(refusal) => {
            let page = session_page(&state, c, &viewer, id, Some(refusal.message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}
