//! «Люди»: the people whose personal data Opora holds (children and adults of their
//! families), scoped to the viewer's places. Every read of personal data — the list, a
//! person's page, an export — is written to the access log; a person's page shows who opened
//! it. Administrators can erase a person's personal data (crypto-shredding).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use opora_domain::access::{Role, Text};
use opora_domain::person::{
    AgeBand, PersonCommand, PersonKind, PersonalData, PersonalInput, Sealed, Sex,
};
use opora_domain::reference::RegionCode;
use opora_store::{CommandError, CommandMeta};
use serde::Deserialize;
use sqlx::types::Json;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Action};
use crate::auth::guard::{PersonalScope, Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::{local_time, today_in};
use crate::pages::RecordId;
use crate::AppState;

/// Roles that may open this section (each then sees only its places).
pub const ROLES: &[Role] = &[
    Role::Administrator,
    Role::RegionalCurator,
    Role::ConsiliumSecretary,
];
const ADMIN: &[Role] = &[Role::Administrator];
const RECORD: &str = "person";
const PAGE_SIZE: i64 = 100;

pub fn routes() -> Routes {
    Routes::new()
        .get("/lyudi", Rule::Roles(ROLES), list)
        .get("/lyudi.csv", Rule::Roles(ROLES), export)
        .get("/lyudi/novyi", Rule::Roles(ROLES), new_form)
        .post("/lyudi", Rule::Roles(ROLES), register)
        .get("/lyudi/{id}", Rule::Roles(ROLES), show)
        .post("/lyudi/{id}/udalenie", Rule::Roles(ADMIN), erase)
}

/// A person as listed: analytic facts and, when readable, the personal data.
pub struct PersonRow {
    pub id: Uuid,
    pub kind: String,
    pub region_code: String,
    pub region_name: String,
    pub municipality: String,
    pub sex: String,
    pub age_band: String,
    pub personal: Option<PersonalData>,
    pub erased: bool,
    pub registered_at: OffsetDateTime,
    pub time_zone: String,
}

pub struct RegionCount {
    pub region: String,
    pub children: i64,
    pub adults: i64,
}

const SELECT: &str =
    "SELECT p.id, p.kind, p.region_code, coalesce(r.name, p.region_code) AS region_name, \
        coalesce(m.name, '') AS municipality, p.sex, p.age_band, p.sealed, \
        p.sealed IS NOT NULL AS has_sealed, p.erased, \
        p.registered_at, coalesce(r.time_zone, 'Europe/Moscow') AS time_zone \
   FROM persons.person p \
   LEFT JOIN reference.region r ON r.code = p.region_code \
   LEFT JOIN reference.municipality m ON m.id = p.municipality \
  WHERE ($1 OR p.region_code = ANY($2) OR p.municipality = ANY($3))";

fn scoped<'q>(
    sql: &'q str,
    scope: &'q PersonalScope,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(scope.everywhere)
        .bind(&scope.regions)
        .bind(&scope.municipalities)
}

async fn fetch(
    state: &AppState,
    scope: &PersonalScope,
    extra: &str,
    id: Option<Uuid>,
) -> AppResult<Vec<PersonRow>> {
    let sql = format!("{SELECT} {extra}");
    let mut query = scoped(&sql, scope);
    if let Some(id) = id {
        query = query.bind(id);
    }
    let rows = query.fetch_all(state.log.pool()).await?;
    let opened: Vec<Option<PersonalData>> = open_sealed(state, &rows).await?;
    let mut people = Vec::with_capacity(rows.len());
    for (row, personal) in rows.iter().zip(opened) {
        let age_band: String = row.try_get("age_band")?;
        let erased: bool = row.try_get("erased")?;
        let has_sealed: bool = row.try_get("has_sealed")?;
        people.push(PersonRow {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            region_code: row.try_get("region_code")?,
            region_name: row.try_get("region_name")?,
            municipality: row.try_get("municipality")?,
            sex: row.try_get("sex")?,
            age_band: AgeBand::from_code(&age_band).map_or(age_band, |a| a.label().to_owned()),
            // Erased in the vault but not yet in the read model: erased all the same.
            erased: erased || (personal.is_none() && has_sealed),
            personal,
            registered_at: row.try_get("registered_at")?,
            time_zone: row.try_get("time_zone")?,
        });
    }
    Ok(people)
}

#[derive(Template, WebTemplate)]
#[template(path = "persons/list.html")]
struct ListPage {
    c: Chrome,
    people: Vec<PersonRow>,
    counts: Vec<RegionCount>,
    total: i64,
    may_register: bool,
}

async fn counts(state: &AppState, scope: &PersonalScope) -> AppResult<Vec<RegionCount>> {
    let rows = scoped(
        "SELECT coalesce(r.name, p.region_code) AS region, \
                count(*) FILTER (WHERE p.kind = 'child') AS children, \
                count(*) FILTER (WHERE p.kind = 'adult') AS adults \
           FROM persons.person p LEFT JOIN reference.region r ON r.code = p.region_code \
          WHERE ($1 OR p.region_code = ANY($2) OR p.municipality = ANY($3)) \
          GROUP BY 1 ORDER BY 1",
        scope,
    )
    .fetch_all(state.log.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RegionCount {
                region: row.try_get("region")?,
                children: row.try_get("children")?,
                adults: row.try_get("adults")?,
            })
        })
        .collect()
}

async fn list(State(state): State<AppState>, c: Chrome, viewer: Viewer) -> AppResult<ListPage> {
    let scope = viewer.personal_scope();
    let people = fetch(
        &state,
        &scope,
        &format!("ORDER BY p.registered_at DESC LIMIT {PAGE_SIZE}"),
        None,
    )
    .await?;
    audit::record(&state, &viewer, Action::List, Some(RECORD), None).await?;
    let counts = counts(&state, &scope).await?;
    let total = counts.iter().map(|c| c.children + c.adults).sum();
    Ok(ListPage {
        c,
        people,
        counts,
        total,
        may_register: viewer.registration_regions().is_none_or(|r| !r.is_empty()),
    })
}

async fn export(State(state): State<AppState>, c: Chrome, viewer: Viewer) -> AppResult<Response> {
    let scope = viewer.personal_scope();
    let people = fetch(&state, &scope, "ORDER BY p.registered_at", None).await?;
    audit::record(&state, &viewer, Action::Export, Some(RECORD), None).await?;
    let tr = c.tr;
    let headers = [
        "csv-id",
        "csv-family-name",
        "csv-given-name",
        "csv-patronymic",
        "csv-birth-date",
        "csv-kind",
        "csv-sex",
        "csv-age-band",
        "csv-region",
        "csv-municipality",
    ]
    .map(|key| tr.t(key))
    .to_vec();
    let rows: Vec<Vec<String>> = people
        .into_iter()
        .map(|person| {
            let (family, given, patronymic, birth) = match &person.personal {
                Some(p) => (
                    p.family_name.clone(),
                    p.given_name.clone(),
                    p.patronymic.clone().unwrap_or_default(),
                    tr.date(&p.birth_date),
                ),
                None => (
                    tr.t("person-erased"),
                    String::new(),
                    String::new(),
                    String::new(),
                ),
            };
            vec![
                person.id.to_string(),
                family,
                given,
                patronymic,
                birth,
                tr.of("person-kind", &person.kind),
                tr.of("sex", &person.sex),
                person.age_band,
                person.region_name,
                person.municipality,
            ]
        })
        .collect();
    Ok(crate::export::download(
        crate::export::csv(&headers, &rows)?,
        "lyudi.csv",
    ))
}

/// Opens the `sealed` column of each row (one key query for all); `None` for a row whose
/// data is erased or absent.
pub async fn open_sealed<T: serde::de::DeserializeOwned>(
    state: &AppState,
    rows: &[sqlx::postgres::PgRow],
) -> AppResult<Vec<Option<T>>> {
    let mut sealed = Vec::with_capacity(rows.len());
    for row in rows {
        let seal: Option<Json<Sealed>> = row.try_get("sealed")?;
        sealed.push(seal.map(|Json(s)| s));
    }
    let readable: Vec<&Sealed> = sealed.iter().flatten().collect();
    let mut opened = state.vault.open_many::<T>(&readable).await?.into_iter();
    Ok(sealed
        .iter()
        .map(|seal| match seal {
            Some(_) => opened.next().flatten(),
            None => None,
        })
        .collect())
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

pub struct MunicipalityGroup {
    pub region: String,
    pub options: Vec<Choice>,
}

#[derive(Default, Deserialize)]
pub struct PersonForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    sex: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    municipality: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    patronymic: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    document: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    command_id: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "persons/new.html")]
struct NewPage {
    c: Chrome,
    form: PersonForm,
    errors: Vec<(String, String)>,
    regions: Vec<Choice>,
    municipalities: Vec<MunicipalityGroup>,
    command_id: Uuid,
}

impl NewPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

async fn places(
    state: &AppState,
    viewer: &Viewer,
) -> AppResult<(Vec<Choice>, Vec<MunicipalityGroup>)> {
    let allowed: Option<Vec<String>> = viewer
        .registration_regions()
        .map(|r| r.iter().map(|c| c.as_str().to_owned()).collect());
    region_choices(state.log.pool(), allowed.as_deref()).await
}

/// Organisations of one kind in the given regions (all, when `None`), for select fields.
pub async fn organisation_choices(
    pool: &sqlx::PgPool,
    kind: &str,
    regions: Option<&[String]>,
) -> AppResult<Vec<Choice>> {
    Ok(sqlx::query_as::<_, (Uuid, String)>(
        "SELECT id, name FROM reference.organisation WHERE kind = $1 \
            AND ($2::text[] IS NULL OR region_code = ANY($2)) ORDER BY name",
    )
    .bind(kind)
    .bind(regions)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, name)| Choice {
        value: id.to_string(),
        label: name,
    })
    .collect())
}

/// Regions (all, or the `allowed` ones) and their municipalities, for select fields.
pub async fn region_choices(
    pool: &sqlx::PgPool,
    allowed: Option<&[String]>,
) -> AppResult<(Vec<Choice>, Vec<MunicipalityGroup>)> {
    let rows = sqlx::query(
        "SELECT r.code, r.name, m.id, m.name AS municipality FROM reference.region r \
           LEFT JOIN reference.municipality m ON m.region_code = r.code \
          WHERE $1::text[] IS NULL OR r.code = ANY($1) ORDER BY r.name, m.name",
    )
    .bind(allowed)
    .fetch_all(pool)
    .await?;
    let mut regions: Vec<Choice> = Vec::new();
    let mut groups: Vec<MunicipalityGroup> = Vec::new();
    for row in rows {
        let code: String = row.try_get("code")?;
        let name: String = row.try_get("name")?;
        if regions.last().is_none_or(|r| r.value != code) {
            regions.push(Choice {
                label: format!("{name} ({code})"),
                value: code,
            });
            groups.push(MunicipalityGroup {
                region: name,
                options: Vec::new(),
            });
        }
        let id: Option<Uuid> = row.try_get("id")?;
        if let (Some(id), Some(group)) = (id, groups.last_mut()) {
            group.options.push(Choice {
                value: id.to_string(),
                label: row.try_get("municipality")?,
            });
        }
    }
    Ok((regions, groups))
}

async fn new_form(State(state): State<AppState>, c: Chrome, viewer: Viewer) -> AppResult<NewPage> {
    let (regions, municipalities) = places(&state, &viewer).await?;
    Ok(NewPage {
        c,
        form: PersonForm::default(),
        errors: Vec::new(),
        regions,
        municipalities,
        command_id: Uuid::now_v7(),
    })
}

async fn register(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Form(form): Form<PersonForm>,
) -> AppResult<Response> {
    let tr = c.tr;
    let mut errors: Vec<(String, String)> = Vec::new();
    let kind = PersonKind::parse(&form.kind)
        .map_err(|_| errors.push(("kind".into(), tr.t("field-choose"))))
        .ok();
    let sex = Sex::parse(&form.sex)
        .map_err(|_| errors.push(("sex".into(), tr.t("field-choose"))))
        .ok();
    let allowed = viewer.registration_regions();
    let region = RegionCode::parse(&form.region)
        .ok()
        .filter(|code| allowed.as_ref().is_none_or(|a| a.contains(code)));
    let region_zone: Option<String> = match &region {
        Some(code) => {
            sqlx::query_scalar("SELECT time_zone FROM reference.region WHERE code = $1")
                .bind(code.as_str())
                .fetch_optional(state.log.pool())
                .await?
        }
        None => None,
    };
    if region_zone.is_none() {
        errors.push(("region".into(), tr.t("field-choose")));
    }
    let municipality = match form.municipality.trim() {
        "" => None,
        raw => {
            let id = Uuid::parse_str(raw).ok();
            let known: Option<String> = match (id, &region) {
                (Some(id), Some(region)) => sqlx::query_scalar(
                    "SELECT name FROM reference.municipality WHERE id = $1 AND region_code = $2",
                )
                .bind(id)
                .bind(region.as_str())
                .fetch_optional(state.log.pool())
                .await?,
                _ => None,
            };
            if known.is_none() {
                errors.push(("municipality".into(), tr.t("person-municipality-elsewhere")));
            }
            id
        }
    };
    let today = today_in(region_zone.as_deref().unwrap_or("Europe/Moscow"));
    let personal = PersonalData::parse(
        &PersonalInput {
            family_name: &form.family_name,
            given_name: &form.given_name,
            patronymic: &form.patronymic,
            birth_date: &form.birth_date,
            document: &form.document,
            address: &form.address,
            phone: &form.phone,
        },
        today,
    )
    .map_err(|field_errors| {
        for e in field_errors {
            errors.push((e.field.to_owned(), e.message));
        }
    })
    .ok();
    let command_id = Uuid::parse_str(form.command_id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    let (Some(kind), Some(sex), Some(region), Some(personal), true) =
        (kind, sex, region, personal, errors.is_empty())
    else {
        let (regions, municipalities) = places(&state, &viewer).await?;
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            NewPage {
                c,
                form,
                errors,
                regions,
                municipalities,
                command_id,
            },
        )
            .into_response());
    };
    // The person's id is the command's: a form sent twice registers one person.
    let id = Uuid::new_v5(&PERSON_NAMESPACE, command_id.as_bytes());
    let sealed = state.vault.seal(id, &personal).await?;
    let age_band = AgeBand::at(personal.birth_date, today);
    let outcome = state
        .persons
        .execute(
            &id.to_string(),
            PersonCommand::RegisterPerson {
                kind,
                region,
                municipality,
                sex,
                age_band,
                personal: sealed,
                effective_date: today,
            },
            &CommandMeta::new(viewer.actor()).with_command_id(command_id),
        )
        .await;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/lyudi/{id}")).into_response()),
        Err(CommandError::Rejected(error)) => Err(AppError::Unexpected(anyhow::anyhow!("{error}"))),
        Err(error) => Err(error.into()),
    }
}

const PERSON_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_5045_5253_4f4e_0000_0001);

pub struct AccessRow {
    pub at: String,
    pub login: String,
    pub action: String,
    pub address: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "persons/show.html")]
struct ShowPage {
    c: Chrome,
    person: PersonRow,
    accesses: Vec<AccessRow>,
    cases: Vec<(Uuid, String)>,
    may_erase: bool,
}

async fn show(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
) -> AppResult<ShowPage> {
    let scope = viewer.personal_scope();
    let person = fetch(&state, &scope, "AND p.id = $4", Some(id))
        .await?
        .into_iter()
        .next();
    let person = audit::viewed(&state, &viewer, RECORD, id, person).await?;
    let rows = sqlx::query(
        "SELECT at, coalesce(login, '—') AS login, action, address FROM access.access_log \
          WHERE record_type = $1 AND record_id = $2 ORDER BY at DESC LIMIT 50",
    )
    .bind(RECORD)
    .bind(id.to_string())
    .fetch_all(state.log.pool())
    .await?;
    let accesses = rows
        .iter()
        .map(|row| {
            let at: OffsetDateTime = row.try_get("at")?;
            let action: String = row.try_get("action")?;
            Ok(AccessRow {
                at: local_time(&at, &person.time_zone),
                login: row.try_get("login")?,
                action: c.tr.t(&format!("access-action-{action}")),
                address: row.try_get("address")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let cases = sqlx::query_as(
        "SELECT id, case_number FROM cases.child_case WHERE child = $1 ORDER BY opened_on",
    )
    .bind(id)
    .fetch_all(state.log.pool())
    .await?;
    Ok(ShowPage {
        cases,
        may_erase: viewer.has_role(Role::Administrator) && !person.erased,
        c,
        person,
        accesses,
    })
}

async fn erase(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    Form(form): Form<crate::pages::admin::ReasonForm>,
) -> AppResult<Response> {
    let exists: bool =
        sqlx::query_scalar("SELECT exists(SELECT 1 FROM persons.person WHERE id = $1)")
            .bind(id)
            .fetch_one(state.log.pool())
            .await?;
    if !exists {
        return Err(AppError::NotFound);
    }
    let Some(reason) = Text::parse(&form.reason) else {
        return Ok(Redirect::to(&format!("/lyudi/{id}?reason=missing")).into_response());
    };
    erase_person(&state.vault, &state.persons, id, &viewer.actor(), &reason).await?;
    audit::record(
        &state,
        &viewer,
        Action::Erase,
        Some(RECORD),
        Some(&id.to_string()),
    )
    .await?;
    Ok(Redirect::to(&format!("/lyudi/{id}")).into_response())
}

/// Destroys the person's key, then records the erasure in the log. Shared by the page and
/// `opora erase person`.
pub async fn erase_person(
    vault: &opora_store::Vault,
    persons: &opora_store::CommandBus<opora_domain::person::Person>,
    id: Uuid,
    actor: &str,
    reason: &Text,
) -> anyhow::Result<bool> {
    let erased = vault.erase(id, actor, reason.as_str()).await?;
    match persons
        .execute(
            &id.to_string(),
            PersonCommand::RecordErasure {
                reason: reason.clone(),
            },
            &CommandMeta::new(actor),
        )
        .await
    {
        Ok(_) | Err(CommandError::Rejected(opora_domain::person::PersonError::Erased)) => {}
        Err(error) => return Err(anyhow::anyhow!("{error}")),
    }
    Ok(erased)
}
