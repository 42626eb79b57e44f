//! «Заступник»: the operators' console. The live queue of open signals in the regions an
//! operator serves (refreshed every few seconds by htmx; the page works without script),
//! each signal's page with its timeline from the log and one form per step, and the
//! escalation of signals nobody has acknowledged in time.

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawForm, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::{Role, Scope};
use opora_domain::signal::{ResponderKind, Signal, SignalCommand, SignalError, SignalOutcome};
use opora_store::{CommandBus, CommandError, CommandMeta, EventLog, Executed};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::guard::{Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::{local_time, Tr};
use crate::pages::cases::{domain_refusal, FormFields};
use crate::pages::{NoticeQuery, Outcome, RecordId, Refusal};

/// Who watches the console: operators of their regions, analysts (read only) and the
/// administrator.
pub const WATCHERS: &[Role] = &[
    Role::SignalOperator,
    Role::MinistryAnalyst,
    Role::Administrator,
];
/// Who records the steps of a response.
pub const OPERATORS: &[Role] = &[Role::SignalOperator, Role::Administrator];

pub fn routes() -> Routes {
    Routes::new()
        .get("/zastupnik/signaly", Rule::Roles(WATCHERS), console)
        .get("/zastupnik/signaly/ochered", Rule::Roles(WATCHERS), queue)
        .get(
            "/zastupnik/signaly/{id}",
            Rule::Roles(WATCHERS),
            signal_page,
        )
        .post("/zastupnik/signaly/{id}", Rule::Roles(OPERATORS), act)
        .get("/static/htmx.min.js", Rule::Public, htmx)
        .get("/static/console.js", Rule::Public, console_js)
}

const HTMX: &str = include_str!("../../../static/vendor/htmx-2.0.11.min.js");
const CONSOLE_JS: &str = include_str!("../../../static/console.js");

async fn htmx() -> impl IntoResponse {
    script(HTMX)
}

async fn console_js() -> impl IntoResponse {
    script(CONSOLE_JS)
}

fn script(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

/// Where a viewer sees signals and where they act.
#[derive(Debug, Clone, Default)]
pub struct SignalScope {
    pub all: bool,
    pub regions: Vec<String>,
    pub acts_all: bool,
    pub acts_in: Vec<String>,
}

impl SignalScope {
    pub fn of(viewer: &Viewer) -> Self {
        let mut scope = Self::default();
        let Some(user) = &viewer.user else {
            return scope;
        };
        for grant in &user.grants {
            match (grant.role, &grant.scope) {
                (Role::Administrator, _) => {
                    scope.all = true;
                    scope.acts_all = true;
                }
                (Role::MinistryAnalyst, Scope::Federal) => scope.all = true,
                (Role::MinistryAnalyst, Scope::Region { region }) => {
                    scope.regions.push(region.as_str().to_owned())
                }
                (Role::SignalOperator, Scope::Regions { regions }) => {
                    for region in regions {
                        scope.regions.push(region.as_str().to_owned());
                        scope.acts_in.push(region.as_str().to_owned());
                    }
                }
                _ => {}
            }
        }
        scope
    }
    pub fn sees(&self, region: &str) -> bool {
        self.all || self.regions.iter().any(|r| r == region)
    }
    pub fn acts(&self, region: &str) -> bool {
        self.acts_all || self.acts_in.iter().any(|r| r == region)
    }
}

// ---------------------------------------------------------------------------------------
// The queue
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueRow {
    pub id: Uuid,
    pub region: String,
    pub region_name: String,
    pub city: Option<String>,
    pub kind: String,
    pub kind_label: String,
    pub drill: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub pressed_at: OffsetDateTime,
    /// Local time of the press, as the region's clock shows it.
    pub pressed_local: String,
    /// Seconds since the press, when the page was made.
    pub elapsed_seconds: i64,
    pub recipients: i32,
    pub delivered: i32,
    pub failed: i32,
    pub adult_acknowledged: bool,
    pub acknowledged_by: Option<String>,
    pub escalated: bool,
    /// Not acknowledged and older than the escalation threshold (shown highlighted).
    pub overdue: bool,
    /// Responders and their step: «волонтёр — в пути».
    pub responders: Vec<String>,
    pub on_scene: bool,
}

impl QueueRow {
    pub fn timer(&self) -> String {
        clock(self.elapsed_seconds)
    }
    pub fn pressed_ms(&self) -> i128 {
        self.pressed_at.unix_timestamp_nanos() / 1_000_000
    }
}

/// `m:ss`, or `h:mm:ss` past an hour.
pub fn clock(seconds: i64) -> String {
    let s = seconds.max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct QueueQuery {
    pub region: Option<String>,
    pub notice: Option<String>,
}

/// The open signals the viewer sees (optionally of one region), the oldest unacknowledged
/// first. `None`: the region asked for is outside the viewer's scope.
pub async fn open_signals(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    region: Option<&str>,
) -> AppResult<Vec<QueueRow>> {
    let scope = SignalScope::of(viewer);
    let region = region.filter(|r| !r.is_empty());
    if region.is_some_and(|r| !scope.sees(r)) {
        return Err(AppError::NotFound);
    }
    let rows = sqlx::query(
        "SELECT s.id, s.region_code, coalesce(r.name, s.region_code) AS region_name, \
                coalesce(r.time_zone, 'Europe/Moscow') AS zone, s.city, s.kind, s.drill, \
                s.pressed_at, s.recipients, s.delivered, s.failed, \
                s.adult_acknowledged_at IS NOT NULL AS adult_ack, s.acknowledged_by, \
                s.escalated_at IS NOT NULL AS escalated, s.responders, \
                s.first_on_scene_at IS NOT NULL AS on_scene, \
                extract(epoch FROM now() - s.pressed_at)::bigint AS elapsed \
           FROM signals.signal s LEFT JOIN reference.region r ON r.code = s.region_code \
          WHERE s.resolved_at IS NULL AND ($1 OR s.region_code = ANY($2)) \
            AND ($3::text IS NULL OR s.region_code = $3) \
          ORDER BY (s.acknowledged_at IS NULL) DESC, s.pressed_at LIMIT 300",
    )
    .bind(scope.all)
    .bind(&scope.regions)
    .bind(region)
    .fetch_all(state.log.pool())
    .await?;
    let threshold = i64::from(state.config.escalate_after_seconds);
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let pressed_at: OffsetDateTime = row.try_get("pressed_at")?;
        let zone: String = row.try_get("zone")?;
        let acknowledged_by: Option<String> = row.try_get("acknowledged_by")?;
        let elapsed: i64 = row.try_get("elapsed")?;
        let responders: sqlx::types::Json<Vec<ResponderEntry>> = row.try_get("responders")?;
        out.push(QueueRow {
            id: row.try_get("id")?,
            region: row.try_get("region_code")?,
            region_name: row.try_get("region_name")?,
            city: row.try_get("city")?,
            kind_label: tr.of("signal-kind", &kind),
            kind,
            drill: row.try_get("drill")?,
            pressed_local: local_time(&pressed_at, &zone),
            pressed_at,
            elapsed_seconds: elapsed,
            recipients: row.try_get("recipients")?,
            delivered: row.try_get("delivered")?,
            failed: row.try_get("failed")?,
            adult_acknowledged: row.try_get("adult_ack")?,
            overdue: acknowledged_by.is_none() && elapsed >= threshold,
            acknowledged_by,
            escalated: row.try_get("escalated")?,
            responders: responders.0.iter().map(|r| r.describe(tr)).collect(),
            on_scene: row.try_get("on_scene")?,
        });
    }
    Ok(out)
}

/// One responder as the projection keeps it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct ResponderEntry {
    pub kind: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub dispatched_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub en_route_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub on_scene_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub note: Option<String>,
}

impl ResponderEntry {
    fn step(&self) -> &'static str {
        if self.on_scene_at.is_some() {
            "on_scene"
        } else if self.en_route_at.is_some() {
            "en_route"
        } else {
            "dispatched"
        }
    }
    pub fn label(&self, tr: &Tr) -> String {
        tr.of("signal-responder", &self.kind)
    }
    pub fn describe(&self, tr: Tr) -> String {
        format!(
            "{} — {}",
            tr.of("signal-responder", &self.kind),
            tr.of("signal-step", self.step())
        )
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "signals/console.html")]
struct ConsolePage {
    c: Chrome,
    rows: Vec<QueueRow>,
    regions: Vec<(String, String)>,
    region: String,
    notice: Option<String>,
    threshold: u32,
}

#[derive(Template, WebTemplate)]
#[template(path = "signals/queue.html")]
struct QueueFragment {
    c: Chrome,
    rows: Vec<QueueRow>,
    region: String,
}

async fn region_choices(state: &AppState, scope: &SignalScope) -> AppResult<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT code, name FROM reference.region WHERE $1 OR code = ANY($2) ORDER BY name",
    )
    .bind(scope.all)
    .bind(&scope.regions)
    .fetch_all(state.log.pool())
    .await?;
    Ok(rows)
}

async fn console(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<QueueQuery>,
) -> AppResult<Response> {
    let region = query.region.clone().unwrap_or_default();
    let rows = open_signals(&state, &viewer, c.tr, Some(&region)).await?;
    let regions = region_choices(&state, &SignalScope::of(&viewer)).await?;
    let notice = query.notice.as_deref().and_then(|k| c.tr.try_t(k));
    Ok(ConsolePage {
        threshold: state.config.escalate_after_seconds,
        c,
        rows,
        regions,
        region,
        notice,
    }
    .into_response())
}

async fn queue(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<QueueQuery>,
) -> AppResult<QueueFragment> {
    let region = query.region.unwrap_or_default();
    let rows = open_signals(&state, &viewer, c.tr, Some(&region)).await?;
    Ok(QueueFragment { c, rows, region })
}

// ---------------------------------------------------------------------------------------
// One signal
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationRow {
    pub adult: String,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub at: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub what: String,
    pub at: String,
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalView {
    pub row: QueueRow,
    pub open: bool,
    pub received_local: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub outcome: Option<String>,
    pub resolution_note: Option<String>,
    pub resolved_local: Option<String>,
    pub responders: Vec<ResponderEntry>,
    pub notifications: Vec<NotificationRow>,
    pub timeline: Vec<TimelineEntry>,
    pub cases: Vec<Uuid>,
    /// The viewer may record steps (an operator of the region, the administrator).
    pub may_act: bool,
    pub entries: i32,
    /// The region's time zone (for times shown).
    #[serde(skip)]
    pub zone_name: String,
}

impl SignalView {
    pub fn map_link(&self) -> Option<String> {
        let (lat, lon) = (self.latitude?, self.longitude?);
        Some(format!(
            "https://www.openstreetmap.org/?mlat={lat:.6}&mlon={lon:.6}#map=17/{lat:.6}/{lon:.6}"
        ))
    }
    fn dispatched(&self) -> Vec<String> {
        self.responders.iter().map(|r| r.kind.clone()).collect()
    }
    /// Responders not yet dispatched.
    pub fn to_dispatch(&self, tr: &Tr) -> Vec<(String, String)> {
        let done = self.dispatched();
        ResponderKind::ALL
            .iter()
            .filter(|(k, code, _)| {
                *k != ResponderKind::TrustedAdult && !done.iter().any(|d| d == code)
            })
            .map(|(_, code, _)| ((*code).to_owned(), tr.of("signal-responder", code)))
            .collect()
    }
    pub fn to_en_route(&self, tr: &Tr) -> Vec<(String, String)> {
        self.responders
            .iter()
            .filter(|r| r.en_route_at.is_none() && r.on_scene_at.is_none())
            .map(|r| (r.kind.clone(), tr.of("signal-responder", &r.kind)))
            .collect()
    }
    pub fn to_on_scene(&self, tr: &Tr) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .responders
            .iter()
            .filter(|r| r.on_scene_at.is_none())
            .map(|r| (r.kind.clone(), tr.of("signal-responder", &r.kind)))
            .collect();
        if !self.responders.iter().any(|r| r.kind == "trusted_adult") {
            out.push((
                "trusted_adult".to_owned(),
                tr.of("signal-responder", "trusted_adult"),
            ));
        }
        out
    }
    pub fn outcomes(&self, tr: &Tr) -> Vec<(String, String)> {
        SignalOutcome::ALL
            .iter()
            .filter(|(o, _, _)| *o != SignalOutcome::Cancelled)
            .map(|(_, code, _)| ((*code).to_owned(), tr.of("signal-outcome", code)))
            .collect()
    }
    pub fn time(&self, at: &Option<OffsetDateTime>) -> String {
        at.map(|t| local_time(&t, &self.zone_name))
            .unwrap_or_default()
    }
}

/// The signal's page data; 404 when it does not exist or is outside the viewer's scope.
pub async fn signal_view(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
) -> AppResult<SignalView> {
    let scope = SignalScope::of(viewer);
    let row = sqlx::query(
        "SELECT s.*, coalesce(r.name, s.region_code) AS region_name, \
                coalesce(r.time_zone, 'Europe/Moscow') AS zone, \
                extract(epoch FROM coalesce(s.resolved_at, now()) - s.pressed_at)::bigint AS elapsed \
           FROM signals.signal s LEFT JOIN reference.region r ON r.code = s.region_code \
          WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(state.log.pool())
    .await?
    .ok_or(AppError::NotFound)?;
    let region: String = row.try_get("region_code")?;
    if !scope.sees(&region) {
        return Err(AppError::NotFound);
    }
    let zone: String = row.try_get("zone")?;
    let kind: String = row.try_get("kind")?;
    let pressed_at: OffsetDateTime = row.try_get("pressed_at")?;
    let received_at: OffsetDateTime = row.try_get("received_at")?;
    let resolved_at: Option<OffsetDateTime> = row.try_get("resolved_at")?;
    let acknowledged_by: Option<String> = row.try_get("acknowledged_by")?;
    let elapsed: i64 = row.try_get("elapsed")?;
    let responders: sqlx::types::Json<Vec<ResponderEntry>> = row.try_get("responders")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    let threshold = i64::from(state.config.escalate_after_seconds);
    let queue_row = QueueRow {
        id,
        region_name: row.try_get("region_name")?,
        city: row.try_get("city")?,
        kind_label: tr.of("signal-kind", &kind),
        kind,
        drill: row.try_get("drill")?,
        pressed_local: local_time(&pressed_at, &zone),
        pressed_at,
        elapsed_seconds: elapsed,
        recipients: row.try_get("recipients")?,
        delivered: row.try_get("delivered")?,
        failed: row.try_get("failed")?,
        adult_acknowledged: row
            .try_get::<Option<OffsetDateTime>, _>("adult_acknowledged_at")?
            .is_some(),
        overdue: acknowledged_by.is_none() && resolved_at.is_none() && elapsed >= threshold,
        acknowledged_by,
        escalated: row
            .try_get::<Option<OffsetDateTime>, _>("escalated_at")?
            .is_some(),
        responders: responders.0.iter().map(|r| r.describe(tr)).collect(),
        on_scene: row
            .try_get::<Option<OffsetDateTime>, _>("first_on_scene_at")?
            .is_some(),
        region: region.clone(),
    };
    let notifications = sqlx::query(
        "SELECT adult, channel, attempts, delivered_at, failed_at, last_error \
           FROM signals.notification WHERE signal = $1 ORDER BY adult, channel",
    )
    .bind(id)
    .fetch_all(state.log.pool())
    .await?
    .into_iter()
    .map(|n| -> AppResult<NotificationRow> {
        let delivered: Option<OffsetDateTime> = n.try_get("delivered_at")?;
        let failed: Option<OffsetDateTime> = n.try_get("failed_at")?;
        let channel: String = n.try_get("channel")?;
        let (status, at) = match (delivered, failed) {
            (Some(at), _) => ("delivered", Some(local_time(&at, &zone))),
            (None, Some(at)) => ("failed", Some(local_time(&at, &zone))),
            (None, None) => ("pending", None),
        };
        Ok(NotificationRow {
            adult: n.try_get("adult")?,
            channel: tr.of("signal-channel", &channel),
            status: tr.of("signal-delivery", status),
            attempts: n.try_get("attempts")?,
            at,
            error: n.try_get("last_error")?,
        })
    })
    .collect::<AppResult<Vec<_>>>()?;
    let timeline = sqlx::query(
        "SELECT event_type, recorded_at, actor FROM event \
          WHERE aggregate_type = 'Signal' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(state.log.pool())
    .await?
    .into_iter()
    .map(|e| -> AppResult<TimelineEntry> {
        let kind: String = e.try_get("event_type")?;
        let at: OffsetDateTime = e.try_get("recorded_at")?;
        let actor: Option<String> = e.try_get("actor")?;
        Ok(TimelineEntry {
            what: tr.of("signal-event", &kind),
            at: local_time(&at, &zone),
            actor: actor.map(|a| {
                if a.starts_with("client:") {
                    tr.t("signal-actor-app")
                } else if a.starts_with("system:") {
                    tr.t("signal-actor-system")
                } else {
                    a
                }
            }),
        })
    })
    .collect::<AppResult<Vec<_>>>()?;
    Ok(SignalView {
        open: resolved_at.is_none(),
        received_local: local_time(&received_at, &zone),
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        accuracy_m: row.try_get("accuracy_m")?,
        outcome: outcome.map(|o| tr.of("signal-outcome", &o)),
        resolution_note: row.try_get("resolution_note")?,
        resolved_local: resolved_at.map(|t| local_time(&t, &zone)),
        responders: responders.0,
        notifications,
        timeline,
        cases: row.try_get("cases")?,
        may_act: scope.acts(&region),
        entries: row.try_get("entries")?,
        zone_name: zone,
        row: queue_row,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "signals/signal.html")]
struct SignalPage {
    c: Chrome,
    s: SignalView,
    notice: Option<String>,
    error: Option<String>,
    command_id: String,
}

async fn signal_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    Query(query): Query<NoticeQuery>,
) -> AppResult<SignalPage> {
    let s = signal_view(&state, &viewer, c.tr, id).await?;
    Ok(SignalPage {
        notice: query.notice(c.tr),
        error: query.error(c.tr),
        command_id: Uuid::now_v7().to_string(),
        c,
        s,
    })
}

// ---------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------

/// Records one step of the response: `action` is `acknowledge`, `dispatch` (`responder`,
/// `note`), `en_route` / `on_scene` (`responder`), `resolve` (`outcome`, `note`) or
/// `link_case` (`case`: the case number or id). `at` (optional, not in the future) records
/// a step after the fact; otherwise it happened now.
pub async fn action_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    action: &str,
    form: &FormFields,
) -> Outcome<Uuid> {
    let region: Option<String> =
        sqlx::query_scalar("SELECT region_code FROM signals.signal WHERE id = $1")
            .bind(id)
            .fetch_optional(state.log.pool())
            .await?;
    let scope = SignalScope::of(viewer);
    let Some(region) = region.filter(|r| scope.sees(r) && scope.acts(r)) else {
        return Err(AppError::NotFound);
    };
    let now = OffsetDateTime::now_utc();
    let at = match form.get("at").trim() {
        "" => now,
        raw => match OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339) {
            Ok(at) if at <= now + time::Duration::seconds(5) => at,
            _ => return Ok(Err(Refusal::new(tr, "signal-bad-time"))),
        },
    };
    let responder = || ResponderKind::parse(form.get("responder")).ok();
    let note = || Some(form.get("note").to_owned()).filter(|n| !n.trim().is_empty());
    let actor = viewer
        .user
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |u| u.login.clone());
    let command = match action {
        "acknowledge" => SignalCommand::Acknowledge {
            operator: actor.clone(),
            at,
        },
        "dispatch" => match responder() {
            Some(responder) => SignalCommand::Dispatch {
                responder,
                at,
                note: note(),
            },
            None => return Ok(Err(Refusal::new(tr, "signal-choose-responder"))),
        },
        "en_route" => match responder() {
            Some(responder) => SignalCommand::EnRoute { responder, at },
            None => return Ok(Err(Refusal::new(tr, "signal-choose-responder"))),
        },
        "on_scene" => match responder() {
            Some(responder) => SignalCommand::OnScene { responder, at },
            None => return Ok(Err(Refusal::new(tr, "signal-choose-responder"))),
        },
        "resolve" => match SignalOutcome::parse(form.get("outcome")) {
            Ok(outcome) => SignalCommand::Resolve {
                outcome,
                at,
                note: note(),
            },
            Err(_) => return Ok(Err(Refusal::new(tr, "signal-choose-outcome"))),
        },
        "link_case" => {
            let raw = form.get("case").trim();
            let case: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM cases.child_case \
                  WHERE (case_number = $1 OR id::text = $1) AND region_code = $2",
            )
            .bind(raw)
            .bind(&region)
            .fetch_optional(state.log.pool())
            .await?;
            match case {
                Some(case) => SignalCommand::LinkCase { case },
                None => return Ok(Err(Refusal::new(tr, "signal-case-not-found"))),
            }
        }
        _ => return Ok(Err(Refusal::new(tr, "signal-unknown-action"))),
    };
    let meta = CommandMeta::new(actor).with_command_id(form.command_id());
    match crate::ingest::execute_signal(&state.ingest.signals, id, command, &meta).await {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(refusal)) => {
            Ok(Err(domain_refusal(tr, "signal-error", &refusal)))
        }
        Err(CommandError::Conflict) => Ok(Err(Refusal::new(tr, "signal-conflict"))),
        Err(error @ CommandError::Unexpected(_)) => Err(error.into()),
    }
}

async fn act(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    let action = form.get("action").to_owned();
    match action_command(&state, &viewer, c.tr, id, &action, &form).await? {
        Ok(_) => Ok(Redirect::to(&format!(
            "/zastupnik/signaly/{id}?notice=signal-recorded-{action}"
        ))
        .into_response()),
        Err(refusal) => {
            let s = signal_view(&state, &viewer, c.tr, id).await?;
            let page = SignalPage {
                c,
                s,
                notice: None,
                error: Some(refusal.message),
                command_id: Uuid::now_v7().to_string(),
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// A signal as the child's case page shows it to the curator (no location, no ids of the
/// app: what happened and how fast help came).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseSignal {
    pub id: Uuid,
    pub pressed: String,
    pub kind: String,
    pub outcome: Option<String>,
    /// «4:05» from the press to help on the spot, when help went.
    pub time_to_help: Option<String>,
}

/// The signals linked to a case.
pub async fn case_signals(
    state: &AppState,
    tr: Tr,
    case: Uuid,
    zone: &str,
) -> AppResult<Vec<CaseSignal>> {
    let rows = sqlx::query(
        "SELECT id, pressed_at, kind, outcome, \
                extract(epoch FROM first_on_scene_at - pressed_at)::bigint AS help \
           FROM signals.signal WHERE cases @> ARRAY[$1]::uuid[] ORDER BY pressed_at DESC",
    )
    .bind(case)
    .fetch_all(state.log.pool())
    .await?;
    rows.into_iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let outcome: Option<String> = row.try_get("outcome")?;
            let pressed: OffsetDateTime = row.try_get("pressed_at")?;
            let help: Option<i64> = row.try_get("help")?;
            Ok(CaseSignal {
                id: row.try_get("id")?,
                pressed: local_time(&pressed, zone),
                kind: tr.of("signal-kind", &kind),
                outcome: outcome.map(|o| tr.of("signal-outcome", &o)),
                time_to_help: help.map(clock),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------------------------

/// Escalates every open signal that nobody has acknowledged `after_seconds` after it was
/// received (drills too: operators practise escalation as well). Returns how many.
pub async fn escalate_due(
    log: &EventLog,
    signals: &CommandBus<Signal>,
    after_seconds: u32,
) -> anyhow::Result<usize> {
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM signals.signal \
          WHERE resolved_at IS NULL AND acknowledged_at IS NULL AND escalated_at IS NULL \
            AND received_at <= now() - make_interval(secs => $1) \
          ORDER BY received_at LIMIT 500",
    )
    .bind(f64::from(after_seconds))
    .fetch_all(log.pool())
    .await?;
    let mut escalated = 0;
    for id in due {
        let meta =
            CommandMeta::new("system:escalation").with_command_id(Uuid::new_v5(&id, b"escalation"));
        let command = SignalCommand::Escalate {
            at: OffsetDateTime::now_utc(),
            after_seconds,
        };
        match crate::ingest::execute_signal(signals, id, command, &meta).await {
            Ok(Executed::Applied) => {
                escalated += 1;
                tracing::warn!(signal = %id, after_seconds, "signal escalated: not acknowledged in time");
            }
            Ok(_) => {}
            // Acknowledged or closed meanwhile: nothing to escalate.
            Err(CommandError::Rejected(
                SignalError::NoEscalationNeeded
                | SignalError::Closed
                | SignalError::AlreadyEscalated,
            )) => {}
            Err(error) => tracing::warn!(signal = %id, %error, "could not escalate"),
        }
    }
    Ok(escalated)
}

/// Checks for signals to escalate every second until `shutdown`.
pub fn spawn_escalation(
    log: EventLog,
    after_seconds: u32,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let signals = CommandBus::<Signal>::new(log.clone(), ());
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(error) = escalate_due(&log, &signals, after_seconds).await {
                tracing::warn!(%error, "escalation check failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn timers_read_as_minutes_and_seconds() {
        assert_eq!(clock(0), "0:00");
        assert_eq!(clock(65), "1:05");
        assert_eq!(clock(3725), "1:02:05");
        assert_eq!(clock(-3), "0:00");
    }
}
