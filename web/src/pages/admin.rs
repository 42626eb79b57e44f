//! Administration: users (create, re-scope, disable — never delete), the access log and the
//! login attempts.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use opora_domain::access::{Grant, Login, Role, Scope, Text, UserCommand, UserError};
use opora_domain::reference::RegionCode;
use opora_store::{CommandError, CommandMeta, Executed};
use serde::Deserialize;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::auth::{self, totp};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::{local_time, Tr};
use crate::pages::persons::Choice;
use crate::pages::RecordId;
use crate::AppState;

const ADMIN: Rule = Rule::Roles(&[Role::Administrator]);

pub fn routes() -> Routes {
    Routes::new()
        .get("/admin/polzovateli", ADMIN, users)
        .get("/admin/polzovateli/novyi", ADMIN, new_user_form)
        .post("/admin/polzovateli", ADMIN, create_user_page)
        .get("/admin/polzovateli/{id}", ADMIN, show_user)
        .post("/admin/polzovateli/{id}/roli", ADMIN, add_grant)
        .post("/admin/polzovateli/{id}/roli/udalit", ADMIN, remove_grant)
        .post("/admin/polzovateli/{id}/otklyuchit", ADMIN, disable)
        .post("/admin/polzovateli/{id}/vklyuchit", ADMIN, enable)
        .post("/admin/polzovateli/{id}/sbros-koda", ADMIN, reset_code)
        .post("/admin/polzovateli/{id}/vyhod-vezde", ADMIN, sign_out)
        .post("/admin/polzovateli/{id}/parol", ADMIN, set_password)
        .get("/admin/zhurnal", ADMIN, access_log)
        .get("/admin/vhody", ADMIN, login_attempts)
}

/// A grant described for people: "региональный куратор — Республика Татарстан".
pub async fn describe(pool: &PgPool, tr: Tr, grant: &Grant) -> Result<String, sqlx::Error> {
    let role = tr.t(&format!("role-{}", grant.role.code()));
    let place = match &grant.scope {
        Scope::Federal => tr.t("scope-federal"),
        Scope::Region { region } => region_name(pool, region).await?,
        Scope::Regions { regions } => {
            let mut names = Vec::new();
            for region in regions {
                names.push(region_name(pool, region).await?);
            }
            names.join(", ")
        }
        Scope::Municipality { municipality, .. } => {
            sqlx::query_scalar::<_, String>("SELECT name FROM reference.municipality WHERE id = $1")
                .bind(municipality)
                .fetch_optional(pool)
                .await?
                .unwrap_or_else(|| municipality.to_string())
        }
        Scope::Institution {
            institution: id, ..
        }
        | Scope::Ngo { ngo: id, .. } => {
            sqlx::query_scalar::<_, String>("SELECT name FROM reference.organisation WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .unwrap_or_else(|| id.to_string())
        }
    };
    Ok(format!("{role} — {place}"))
}

async fn region_name(pool: &PgPool, code: &RegionCode) -> Result<String, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, String>("SELECT name FROM reference.region WHERE code = $1")
            .bind(code.as_str())
            .fetch_optional(pool)
            .await?
            .unwrap_or_else(|| code.to_string()),
    )
}

pub struct UserRow {
    pub id: Uuid,
    pub login: String,
    pub display_name: String,
    pub contact: String,
    pub grants: Vec<String>,
    pub disabled: bool,
    pub second_factor: bool,
}

async fn load_users(
    pool: &PgPool,
    tr: Tr,
    id: Option<Uuid>,
) -> AppResult<Vec<(UserRow, Vec<Grant>)>> {
    let rows = sqlx::query(
        "SELECT id, login, display_name, coalesce(contact, '') AS contact, grants, disabled, \
                second_factor FROM accounts.user_account \
          WHERE $1::uuid IS NULL OR id = $1 ORDER BY login",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut users = Vec::with_capacity(rows.len());
    for row in rows {
        let Json(grants): Json<Vec<Grant>> = row.try_get("grants")?;
        let mut described = Vec::new();
        for grant in &grants {
            described.push(describe(pool, tr, grant).await?);
        }
        users.push((
            UserRow {
                id: row.try_get("id")?,
                login: row.try_get("login")?,
                display_name: row.try_get("display_name")?,
                contact: row.try_get("contact")?,
                grants: described,
                disabled: row.try_get("disabled")?,
                second_factor: row.try_get("second_factor")?,
            },
            grants,
        ));
    }
    Ok(users)
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/users.html")]
struct UsersPage {
    c: Chrome,
    users: Vec<UserRow>,
}

async fn users(State(state): State<AppState>, c: Chrome) -> AppResult<UsersPage> {
    let users = load_users(state.log.pool(), c.tr, None)
        .await?
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    Ok(UsersPage { c, users })
}

/// The fields that choose a role and its places.
#[derive(Default, Deserialize, Clone)]
pub struct GrantForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    municipality: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    regions: String,
}

/// Picks the scope the role calls for from the fields filled in; the domain then checks it.
async fn parse_grant(pool: &PgPool, form: &GrantForm) -> Result<Grant, String> {
    let role = Role::parse(&form.role).map_err(|_| "grant-choose-role".to_owned())?;
    let region = match form.region.trim() {
        "" => None,
        raw => Some(RegionCode::parse(raw).map_err(|_| "grant-bad-region".to_owned())?),
    };
    let municipality = match form.municipality.trim() {
        "" => None,
        raw => {
            let id = Uuid::parse_str(raw).map_err(|_| "grant-bad-municipality".to_owned())?;
            let region: Option<String> =
                sqlx::query_scalar("SELECT region_code FROM reference.municipality WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(|_| "grant-bad-municipality".to_owned())?;
            let region = region.ok_or("grant-bad-municipality")?;
            Some((
                id,
                RegionCode::parse(&region).map_err(|_| "grant-bad-municipality")?,
            ))
        }
    };
    let organisation = match form.organisation.trim() {
        "" => None,
        raw => {
            let id = Uuid::parse_str(raw).map_err(|_| "grant-bad-organisation".to_owned())?;
            let row: Option<(String, String)> = sqlx::query_as(
                "SELECT kind, region_code FROM reference.organisation WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(|_| "grant-bad-organisation".to_owned())?;
            let (kind, region) = row.ok_or("grant-bad-organisation")?;
            Some((
                id,
                kind,
                RegionCode::parse(&region).map_err(|_| "grant-bad-organisation")?,
            ))
        }
    };
    let scope = match role {
        Role::Administrator => Scope::Federal,
        Role::MinistryAnalyst => match region {
            None => Scope::Federal,
            Some(region) => Scope::Region { region },
        },
        Role::RegionalCurator => Scope::Region {
            region: region.ok_or("grant-needs-region")?,
        },
        Role::ConsiliumSecretary => match (organisation, municipality, region) {
            (Some((institution, kind, region)), _, _) if kind == "institution" => {
                Scope::Institution {
                    region,
                    institution,
                }
            }
            (Some(_), _, _) => return Err("grant-needs-institution".into()),
            (None, Some((municipality, region)), _) => Scope::Municipality {
                region,
                municipality,
            },
            (None, None, Some(region)) => Scope::Region { region },
            (None, None, None) => return Err("grant-needs-region".into()),
        },
        Role::NgoOperator => match organisation {
            Some((ngo, kind, region)) if kind == "ngo" => Scope::Ngo { region, ngo },
            _ => return Err("grant-needs-ngo".into()),
        },
        Role::MunicipalEducation => match municipality {
            Some((municipality, region)) => Scope::Municipality {
                region,
                municipality,
            },
            None => return Err("grant-needs-municipality".into()),
        },
        Role::SignalOperator => {
            let mut regions = Vec::new();
            for raw in form
                .regions
                .split([',', ' ', ';'])
                .filter(|s| !s.is_empty())
            {
                regions.push(RegionCode::parse(raw).map_err(|_| "grant-bad-region".to_owned())?);
            }
            if regions.is_empty() {
                regions.extend(region);
            }
            if regions.is_empty() {
                return Err("grant-needs-regions".into());
            }
            Scope::Regions { regions }
        }
    };
    Grant::new(role, scope).map_err(|_| "grant-scope-not-allowed".to_owned())
}

/// Choices for the grant fields.
pub struct GrantChoices {
    pub roles: Vec<Choice>,
    pub regions: Vec<Choice>,
    pub municipalities: Vec<crate::pages::persons::MunicipalityGroup>,
    pub organisations: Vec<Choice>,
}

async fn grant_choices(pool: &PgPool, tr: Tr) -> AppResult<GrantChoices> {
    let roles = Role::ALL
        .iter()
        .map(|(role, code, _)| Choice {
            value: (*code).to_owned(),
            label: tr.t(&format!("role-{}", role.code())),
        })
        .collect();
    let (regions, municipalities) = crate::pages::persons::region_choices(pool, None).await?;
    let organisations = sqlx::query(
        "SELECT o.id, o.kind, o.name, coalesce(r.name, o.region_code) AS region \
           FROM reference.organisation o LEFT JOIN reference.region r ON r.code = o.region_code \
          ORDER BY r.name, o.name",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        let id: Uuid = row.try_get("id")?;
        let kind: String = row.try_get("kind")?;
        let name: String = row.try_get("name")?;
        let region: String = row.try_get("region")?;
        Ok(Choice {
            value: id.to_string(),
            label: format!(
                "{name} — {} ({region})",
                tr.t(&format!("organisation-{kind}"))
            ),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(GrantChoices {
        roles,
        regions,
        municipalities,
        organisations,
    })
}

#[derive(Default, Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    password: String,
    #[serde(flatten)]
    grant: GrantForm,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/new_user.html")]
struct NewUserPage {
    c: Chrome,
    form: NewUserForm,
    choices: GrantChoices,
    errors: Vec<String>,
}

async fn new_user_form(State(state): State<AppState>, c: Chrome) -> AppResult<NewUserPage> {
    let choices = grant_choices(state.log.pool(), c.tr).await?;
    Ok(NewUserPage {
        c,
        form: NewUserForm::default(),
        choices,
        errors: Vec::new(),
    })
}

fn user_error_key(error: &UserError) -> &'static str {
    match error {
        UserError::BadLogin => "user-bad-login",
        UserError::AlreadyExists => "user-exists",
        UserError::NotFound => "user-not-found",
        UserError::NoGrants => "user-no-grants",
        UserError::DuplicateGrant => "user-duplicate-grant",
        UserError::ScopeNotAllowed { .. } => "grant-scope-not-allowed",
        UserError::AlreadyDisabled => "user-already-disabled",
        UserError::NotDisabled => "user-not-disabled",
        UserError::Disabled => "user-disabled",
        UserError::SameGrants => "user-same-grants",
        UserError::NoSecondFactor => "user-no-second-factor",
    }
}

/// A user to create, with a first password.
pub struct NewUser<'a> {
    pub login: Login,
    pub display_name: Text,
    pub contact: Option<Text>,
    pub grants: Vec<Grant>,
    pub password: &'a str,
}

/// Creates a user with a first password: shared by the admin page, `opora admin create`
/// and the demo data.
pub async fn create_user(
    state_users: &opora_store::CommandBus<opora_domain::access::User>,
    pool: &PgPool,
    user: NewUser<'_>,
    meta: &CommandMeta,
) -> Result<Executed, CreateUserError> {
    let NewUser {
        login,
        display_name,
        contact,
        grants,
        password,
    } = user;
    if let Some(problem) = auth::password_problem(password, login.as_str()) {
        return Err(CreateUserError::Password(problem));
    }
    let id = login.user_id();
    let exists: bool =
        sqlx::query_scalar("SELECT exists(SELECT 1 FROM access.credential WHERE user_id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await
            .map_err(|e| CreateUserError::Unexpected(e.into()))?;
    let executed = state_users
        .execute(
            &id.to_string(),
            UserCommand::CreateUser {
                login,
                display_name,
                contact,
                grants,
            },
            meta,
        )
        .await
        .map_err(|e| match e {
            CommandError::Rejected(error) => CreateUserError::Rejected(error),
            other => CreateUserError::Unexpected(anyhow::anyhow!("{other}")),
        })?;
    if executed == Executed::Applied || !exists {
        auth::set_password(pool, id, password)
            .await
            .map_err(|e| CreateUserError::Unexpected(e.into()))?;
    }
    Ok(executed)
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("{0}")]
    Password(&'static str),
    #[error("{0}")]
    Rejected(UserError),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

async fn create_user_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Form(form): Form<NewUserForm>,
) -> AppResult<Response> {
    create_user_handler(state, c, viewer, form).await
}

async fn create_user_handler(
    state: AppState,
    c: Chrome,
    viewer: Viewer,
    form: NewUserForm,
) -> AppResult<Response> {
    let pool = state.log.pool();
    let tr = c.tr;
    let mut errors = Vec::new();
    let login = Login::parse(&form.login)
        .map_err(|_| errors.push(tr.t("user-bad-login")))
        .ok();
    let display_name = Text::parse(&form.display_name)
        .ok_or_else(|| errors.push(tr.t("user-needs-name")))
        .ok();
    let contact = Text::parse(&form.contact);
    let grant = parse_grant(pool, &form.grant)
        .await
        .map_err(|key| errors.push(tr.t(&key)))
        .ok();
    if let (Some(login), Some(display_name), Some(grant), true) =
        (login, display_name, grant, errors.is_empty())
    {
        let id = login.user_id();
        match create_user(
            &state.users,
            pool,
            NewUser {
                login,
                display_name,
                contact,
                grants: vec![grant],
                password: &form.password,
            },
            &CommandMeta::new(viewer.actor()),
        )
        .await
        {
            Ok(_) => return Ok(Redirect::to(&format!("/admin/polzovateli/{id}")).into_response()),
            Err(CreateUserError::Password(key)) => errors.push(tr.t(key)),
            Err(CreateUserError::Rejected(error)) => errors.push(tr.t(user_error_key(&error))),
            Err(CreateUserError::Unexpected(error)) => return Err(AppError::Unexpected(error)),
        }
    }
    let choices = grant_choices(pool, tr).await?;
    let mut form = form;
    form.password.clear();
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        NewUserPage {
            c,
            form,
            choices,
            errors,
        },
    )
        .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/user.html")]
struct UserPage {
    c: Chrome,
    user: UserRow,
    choices: GrantChoices,
    notice: Option<String>,
    error: Option<String>,
}

async fn show_user(
    State(state): State<AppState>,
    c: Chrome,
    RecordId(id): RecordId,
    Query(query): Query<crate::pages::NoticeQuery>,
) -> AppResult<UserPage> {
    let (user, _) = load_users(state.log.pool(), c.tr, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)?;
    let choices = grant_choices(state.log.pool(), c.tr).await?;
    Ok(UserPage {
        notice: query.notice(c.tr),
        error: query.error(c.tr),
        c,
        user,
        choices,
    })
}

/// Runs a user command and comes back to the user's page with a notice or an error.
async fn user_command(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    command: UserCommand,
    notice: &str,
) -> AppResult<Response> {
    let back = format!("/admin/polzovateli/{id}");
    match state
        .users
        .execute(&id.to_string(), command, &CommandMeta::new(viewer.actor()))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("{back}?notice={notice}")).into_response()),
        Err(CommandError::Rejected(UserError::NotFound)) => Err(AppError::NotFound),
        Err(CommandError::Rejected(error)) => {
            Ok(Redirect::to(&format!("{back}?error={}", user_error_key(&error))).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

async fn current_grants(state: &AppState, id: Uuid) -> AppResult<Vec<Grant>> {
    let grants: Option<Json<Vec<Grant>>> =
        sqlx::query_scalar("SELECT grants FROM accounts.user_account WHERE id = $1")
            .bind(id)
            .fetch_optional(state.log.pool())
            .await?;
    grants.map(|Json(g)| g).ok_or(AppError::NotFound)
}

async fn add_grant(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    Form(form): Form<GrantForm>,
) -> AppResult<Response> {
    let mut grants = current_grants(&state, id).await?;
    match parse_grant(state.log.pool(), &form).await {
        Ok(grant) => {
            grants.push(grant);
            user_command(
                &state,
                &viewer,
                id,
                UserCommand::ChangeGrants { grants },
                "notice-grants-changed",
            )
            .await
        }
        Err(key) => {
            Ok(Redirect::to(&format!("/admin/polzovateli/{id}?error={key}")).into_response())
        }
    }
}

#[derive(Deserialize)]
pub struct RemoveGrantForm {
    index: usize,
}

async fn remove_grant(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    Form(form): Form<RemoveGrantForm>,
) -> AppResult<Response> {
    let mut grants = current_grants(&state, id).await?;
    if form.index < grants.len() {
        grants.remove(form.index);
    }
    user_command(
        &state,
        &viewer,
        id,
        UserCommand::ChangeGrants { grants },
        "notice-grants-changed",
    )
    .await
}

#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    pub reason: String,
}

async fn disable(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    Form(form): Form<ReasonForm>,
) -> AppResult<Response> {
    let Some(reason) = Text::parse(&form.reason) else {
        return Ok(
            Redirect::to(&format!("/admin/polzovateli/{id}?error=reason-required")).into_response(),
        );
    };
    let response = user_command(
        &state,
        &viewer,
        id,
        UserCommand::DisableUser { reason },
        "notice-disabled",
    )
    .await?;
    auth::sign_out_everywhere(state.log.pool(), id).await?;
    Ok(response)
}

async fn enable(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
) -> AppResult<Response> {
    user_command(
        &state,
        &viewer,
        id,
        UserCommand::EnableUser,
        "notice-enabled",
    )
    .await
}

async fn reset_code(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
) -> AppResult<Response> {
    totp::clear_secret(state.log.pool(), id).await?;
    user_command(
        &state,
        &viewer,
        id,
        UserCommand::ResetSecondFactor,
        "notice-code-reset",
    )
    .await
}

async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
) -> AppResult<Response> {
    auth::sign_out_everywhere(state.log.pool(), id).await?;
    user_command(
        &state,
        &viewer,
        id,
        UserCommand::SignOutEverywhere,
        "notice-signed-out",
    )
    .await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    viewer: Viewer,
    RecordId(id): RecordId,
    Form(form): Form<PasswordForm>,
) -> AppResult<Response> {
    let login: String = sqlx::query_scalar("SELECT login FROM accounts.user_account WHERE id = $1")
        .bind(id)
        .fetch_optional(state.log.pool())
        .await?
        .ok_or(AppError::NotFound)?;
    if let Some(problem) = auth::password_problem(&form.password, &login) {
        return Ok(
            Redirect::to(&format!("/admin/polzovateli/{id}?error={problem}")).into_response(),
        );
    }
    auth::set_password(state.log.pool(), id, &form.password).await?;
    user_command(
        &state,
        &viewer,
        id,
        UserCommand::RecordPasswordSet,
        "notice-password-set",
    )
    .await
}

#[derive(Deserialize, Default)]
pub struct LogQuery {
    #[serde(default)]
    login: String,
    #[serde(default)]
    record: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: Option<i64>,
}

pub struct LogRow {
    pub at: String,
    pub login: String,
    pub action: String,
    pub record: String,
    pub path: String,
    pub address: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/access_log.html")]
struct AccessLogPage {
    c: Chrome,
    query: LogQuery,
    rows: Vec<LogRow>,
    actions: Vec<Choice>,
    page: i64,
    more: bool,
    error: Option<String>,
}

const LOG_PAGE: i64 = 100;

async fn access_log(
    State(state): State<AppState>,
    c: Chrome,
    Query(query): Query<LogQuery>,
) -> AppResult<AccessLogPage> {
    let tr = c.tr;
    let mut error = None;
    let mut date = |raw: &str| -> Option<time::Date> {
        if raw.trim().is_empty() {
            return None;
        }
        let parsed = opora_domain::parse_date(raw);
        if parsed.is_none() {
            error = Some(tr.t("log-bad-date"));
        }
        parsed
    };
    let from = date(&query.from);
    let to = date(&query.to);
    let page = query.page.unwrap_or(0).clamp(0, 10_000);
    let rows = sqlx::query(
        "SELECT at, coalesce(login, '—') AS login, action, \
                coalesce(record_type || ' ' || record_id, coalesce(record_type, '')) AS record, \
                path, address \
           FROM access.access_log \
          WHERE ($1 = '' OR login = lower($1)) AND ($2 = '' OR record_id = $2) \
            AND ($3 = '' OR action = $3) \
            AND ($4::date IS NULL OR at >= $4::date::timestamp AT TIME ZONE 'Europe/Moscow') \
            AND ($5::date IS NULL OR at < ($5::date + 1)::timestamp AT TIME ZONE 'Europe/Moscow') \
          ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7",
    )
    .bind(query.login.trim())
    .bind(query.record.trim())
    .bind(query.action.trim())
    .bind(from)
    .bind(to)
    .bind(LOG_PAGE + 1)
    .bind(page * LOG_PAGE)
    .fetch_all(state.log.pool())
    .await?;
    let more = rows.len() as i64 > LOG_PAGE;
    let rows = rows
        .iter()
        .take(LOG_PAGE as usize)
        .map(|row| {
            let at: OffsetDateTime = row.try_get("at")?;
            let action: String = row.try_get("action")?;
            Ok(LogRow {
                at: local_time(&at, "Europe/Moscow"),
                login: row.try_get("login")?,
                action: tr.t(&format!("access-action-{action}")),
                record: row.try_get("record")?,
                path: row.try_get("path")?,
                address: row.try_get("address")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let actions = crate::audit::Action::ALL
        .iter()
        .map(|a| Choice {
            value: a.code().to_owned(),
            label: tr.t(&format!("access-action-{}", a.code())),
        })
        .collect();
    Ok(AccessLogPage {
        c,
        query,
        rows,
        actions,
        page,
        more,
        error,
    })
}

pub struct AttemptRow {
    pub at: String,
    pub login: String,
    pub address: String,
    pub outcome: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/attempts.html")]
struct AttemptsPage {
    c: Chrome,
    rows: Vec<AttemptRow>,
    login: String,
}

#[derive(Deserialize)]
pub struct AttemptsQuery {
    #[serde(default)]
    login: String,
}

async fn login_attempts(
    State(state): State<AppState>,
    c: Chrome,
    Query(query): Query<AttemptsQuery>,
) -> AppResult<AttemptsPage> {
    let rows = sqlx::query(
        "SELECT at, login, address, outcome FROM access.login_attempt \
          WHERE $1 = '' OR login = lower($1) ORDER BY at DESC, id DESC LIMIT 200",
    )
    .bind(query.login.trim())
    .fetch_all(state.log.pool())
    .await?
    .iter()
    .map(|row| {
        let at: OffsetDateTime = row.try_get("at")?;
        let outcome: String = row.try_get("outcome")?;
        Ok(AttemptRow {
            at: local_time(&at, "Europe/Moscow"),
            login: row.try_get("login")?,
            address: row.try_get("address")?,
            outcome: c.tr.t(&format!("attempt-{outcome}")),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(AttemptsPage {
        c,
        rows,
        login: query.login,
    })
}
