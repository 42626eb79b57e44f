//! Administration of «Заступник»'s ingestion clients: register a backend, show its key
//! once, rotate the key (the old one works 24 hours more), change the rate limit, revoke.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::Role;
use opora_domain::signal::{ClientCommand, IntegrationClient, DEFAULT_RATE_PER_SECOND};
use opora_store::{CommandBus, CommandError, CommandMeta};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::{local_time, Tr};
use crate::pages::cases::{domain_refusal, FormFields};
use crate::pages::{NoticeQuery, RecordId};
use crate::AppState;

const ADMIN: Rule = Rule::Roles(&[Role::Administrator]);

pub fn routes() -> Routes {
    Routes::new()
        .get("/admin/integracii", ADMIN, list)
        .post("/admin/integracii", ADMIN, create)
        .post("/admin/integracii/{id}", ADMIN, change)
}

pub struct ClientRow {
    pub id: Uuid,
    pub name: String,
    pub rate: i32,
    pub revoked: bool,
    pub registered: String,
    pub old_key_until: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/integrations.html")]
struct IntegrationsPage {
    c: Chrome,
    clients: Vec<ClientRow>,
    /// A key just made: shown once.
    new_key: Option<(String, String)>,
    notice: Option<String>,
    error: Option<String>,
    default_rate: u32,
}

async fn clients(state: &AppState) -> AppResult<Vec<ClientRow>> {
    let rows = sqlx::query(
        "SELECT id, name, rate_per_second, revoked, registered_at, \
                CASE WHEN old_valid_until > now() THEN old_valid_until END AS old_until \
           FROM signals.client ORDER BY registered_at",
    )
    .fetch_all(state.log.pool())
    .await?;
    rows.into_iter()
        .map(|row| {
            let registered: OffsetDateTime = row.try_get("registered_at")?;
            let old: Option<OffsetDateTime> = row.try_get("old_until")?;
            Ok(ClientRow {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                rate: row.try_get("rate_per_second")?,
                revoked: row.try_get("revoked")?,
                registered: local_time(&registered, "Europe/Moscow"),
                old_key_until: old.map(|t| local_time(&t, "Europe/Moscow")),
            })
        })
        .collect()
}

async fn page(
    state: &AppState,
    c: Chrome,
    new_key: Option<(String, String)>,
    notice: Option<String>,
    error: Option<String>,
) -> AppResult<IntegrationsPage> {
    Ok(IntegrationsPage {
        clients: clients(state).await?,
        c,
        new_key,
        notice,
        error,
        default_rate: DEFAULT_RATE_PER_SECOND,
    })
}

async fn list(
    State(state): State<AppState>,
    c: Chrome,
    Query(query): Query<NoticeQuery>,
) -> AppResult<IntegrationsPage> {
    let (notice, error) = (query.notice(c.tr), query.error(c.tr));
    page(&state, c, None, notice, error).await
}

fn actor(viewer: &Viewer) -> String {
    viewer
        .user
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |u| u.login.clone())
}

fn rate(tr: Tr, raw: &str) -> Result<u32, String> {
    match raw.trim() {
        "" => Ok(DEFAULT_RATE_PER_SECOND),
        raw => raw
            .parse::<u32>()
            .ok()
            .filter(|r| (1..=10_000).contains(r))
            .ok_or_else(|| tr.t("integration-bad-rate")),
    }
}

async fn create(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    let name = form.get("name").to_owned();
    let rate = match rate(c.tr, form.get("rate")) {
        Ok(rate) => rate,
        Err(message) => {
            let page = page(&state, c, None, None, Some(message)).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    if name.trim().is_empty() || name.chars().count() > 200 {
        let message = c.tr.t("integration-bad-name");
        let page = page(&state, c, None, None, Some(message)).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let (_, key) = crate::ingest::register_client(&state.log, &name, rate, &actor(&viewer))
        .await
        .map_err(AppError::Unexpected)?;
    wait_for_projection(&state).await;
    let notice = Some(c.tr.t("integration-created"));
    Ok(page(&state, c, Some((name, key)), notice, None)
        .await?
        .into_response())
}

/// `action`: `rotate`, `rate` (`rate`), `revoke`.
async fn change(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    let exists = state
        .log
        .stream_length("IntegrationClient", &id.to_string())
        .await?
        > 0;
    if !exists {
        return Err(AppError::NotFound);
    }
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM signals.client WHERE id = $1")
        .bind(id)
        .fetch_optional(state.log.pool())
        .await?;
    let command = match form.get("action") {
        "rotate" => {
            let key = crate::ingest::rotate_key(&state.log, id, &actor(&viewer))
                .await
                .map_err(AppError::Unexpected)?;
            wait_for_projection(&state).await;
            let notice = Some(c.tr.t("integration-rotated"));
            return Ok(page(
                &state,
                c,
                Some((name.unwrap_or_default(), key)),
                notice,
                None,
            )
            .await?
            .into_response());
        }
        "rate" => match rate(c.tr, form.get("rate")) {
            Ok(rate_per_second) => ClientCommand::SetRate { rate_per_second },
            Err(message) => {
                let page = page(&state, c, None, None, Some(message)).await?;
                return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
            }
        },
        "revoke" => ClientCommand::Revoke,
        _ => return Err(AppError::NotFound),
    };
    let meta = CommandMeta::new(actor(&viewer)).with_command_id(form.command_id());
    match CommandBus::<IntegrationClient>::new(state.log.clone(), ())
        .execute(&id.to_string(), command, &meta)
        .await
    {
        Ok(_) => {
            wait_for_projection(&state).await;
            Ok(Redirect::to("/admin/integracii?notice=integration-changed").into_response())
        }
        Err(CommandError::Rejected(refusal)) => {
            let message = domain_refusal(c.tr, "integration-error", &refusal).message;
            let page = page(&state, c, None, None, Some(message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// The list shows the change (the projection follows within milliseconds).
async fn wait_for_projection(state: &AppState) {
    let runner = opora_projections::Runner::new(
        state.log.clone(),
        opora_projections::RunnerConfig::default(),
    );
    if let Err(error) = runner
        .catch_up(&opora_projections::signals::SignalsProjection)
        .await
    {
        tracing::warn!(%error, "signals projection catch-up after an integration change");
    }
}
