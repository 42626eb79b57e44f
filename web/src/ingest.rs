//! The ingestion API of «Заступник»: how the app's backend reports signals to Opora.
//!
//! - Authenticated by an integration key per client (`Authorization: Bearer opk_…`): only
//!   its SHA-256 is stored; a rotated key keeps working for 24 hours. No cookies, so no
//!   CSRF. Each client has its own rate limit (governor's GCRA), answered with 429 and
//!   `Retry-After`.
//! - Every POST carries an `Idempotency-Key`: the call's command id is derived from the
//!   client and the key, so a retry over a bad mobile network appends nothing new and
//!   answers as the first call did. A raise's signal id is derived the same way.
//! - Input is checked field by field; anything wrong answers 422 with the whole list of
//!   problems (`{"error":"invalid-input","problems":[{"field","code","message"}]}`) and
//!   writes nothing.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use base64::Engine;
use fluent_templates::fluent_bundle::FluentValue;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use opora_domain::reference::RegionCode;
use opora_domain::signal::{
    circle_id, ingestion_command_id, signal_id, Channel, CircleCommand, CircleEvent, ClientCommand,
    IntegrationClient, Location, Recipient, Signal, SignalCommand, SignalError, SignalKind,
    TrustedCircle, MAX_CLOCK_AHEAD_SECONDS, MAX_PSEUDONYM_CHARS, ROTATION_GRACE_HOURS,
};
use opora_store::{CommandBus, CommandError, CommandMeta, EventLog, Executed};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::i18n::{Lang, Tr};

/// The largest request body the ingestion API reads.
const BODY_LIMIT: usize = 64 * 1024;
/// The oldest press the API takes as a live signal.
pub const MAX_SIGNAL_AGE_HOURS: i64 = 24;
/// The longest idempotency key.
const MAX_KEY_CHARS: usize = 200;

/// The routes, outside the session, CSRF and role guard (a key is the caller's identity).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ingest/v1/children/{child}", put(register_child))
        .route("/ingest/v1/signals", post(raise))
        .route("/ingest/v1/signals/{id}/location", post(location))
        .route("/ingest/v1/signals/{id}/cancel", post(cancel))
        .route("/ingest/v1/signals/{id}/acknowledgements", post(adult_ack))
        .route("/ingest/v1/signals/{id}/resolution", post(circle_resolved))
        .route("/ingest/v1/openapi.json", axum::routing::get(openapi))
}

/// The aggregates the API writes, and each client's rate limiter.
pub struct Ingest {
    pub signals: CommandBus<Signal>,
    pub circles: CommandBus<TrustedCircle>,
    limiters: Mutex<HashMap<Uuid, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Ingest {
    pub fn new(log: &EventLog) -> Self {
        Self {
            signals: CommandBus::new(log.clone(), ()),
            circles: CommandBus::new(log.clone(), ()),
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when the client may make one more call now; otherwise the seconds to wait.
    fn admit(&self, client: Uuid, rate: u32) -> Result<(), u64> {
        let limiter = {
            let Ok(mut limiters) = self.limiters.lock() else {
                return Ok(());
            };
            let entry = limiters.entry(client).or_insert_with(|| (0, limiter(rate)));
            if entry.0 != rate {
                *entry = (rate, limiter(rate));
            }
            Arc::clone(&entry.1)
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + 1
        })
    }
}

fn limiter(rate: u32) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_second(rate)))
}

/// Executes a signal command, deciding it again when another writer appended to the same
/// signal meanwhile (two receipts, an adult and an operator at the same moment): every step
/// is checked against the state it is appended to, so a retry is always safe.
pub async fn execute_signal(
    bus: &CommandBus<Signal>,
    id: Uuid,
    command: SignalCommand,
    meta: &CommandMeta,
) -> Result<Executed, CommandError<SignalError>> {
    let mut attempt = 0;
    loop {
        match bus.execute(&id.to_string(), command.clone(), meta).await {
            Err(CommandError::Conflict) if attempt < 8 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2 * attempt)).await;
            }
            other => return other,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Keys and clients
// ---------------------------------------------------------------------------------------

/// The stored form of a key.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn new_key() -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!(
        "opk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Registers an ingestion client; returns its id and its key (shown once, never stored).
pub async fn register_client(
    log: &EventLog,
    name: &str,
    rate_per_second: u32,
    actor: &str,
) -> anyhow::Result<(Uuid, String)> {
    let key = new_key()?;
    let id = Uuid::now_v7();
    CommandBus::<IntegrationClient>::new(log.clone(), ())
        .execute(
            &id.to_string(),
            ClientCommand::Register {
                name: name.to_owned(),
                key_hash: key_hash(&key),
                rate_per_second,
            },
            &CommandMeta::new(actor),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((id, key))
}

/// A new key for a client; the old one works for another 24 hours.
pub async fn rotate_key(log: &EventLog, client: Uuid, actor: &str) -> anyhow::Result<String> {
    let key = new_key()?;
    CommandBus::<IntegrationClient>::new(log.clone(), ())
        .execute(
            &client.to_string(),
            ClientCommand::RotateKey {
                key_hash: key_hash(&key),
                old_valid_until: OffsetDateTime::now_utc()
                    + time::Duration::hours(ROTATION_GRACE_HOURS),
            },
            &CommandMeta::new(actor),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(key)
}

/// The calling client, found by its key, within its rate limit.
pub struct Caller {
    pub client: Uuid,
    pub tr: Tr,
    /// The `Idempotency-Key` header, if sent.
    pub key: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let tr = Tr::new(Lang::from_api_headers(&parts.headers));
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let Some(presented) = presented else {
            return Err(unauthorized(&tr));
        };
        let row = sqlx::query(
            "SELECT id, rate_per_second FROM signals.client \
              WHERE NOT revoked AND (key_hash = $1 \
                    OR (old_key_hash = $1 AND old_valid_until > now())) LIMIT 1",
        )
        .bind(key_hash(presented))
        .fetch_optional(state.log.pool())
        .await
        .map_err(|error| unavailable(&tr, &error))?;
        let Some(row) = row else {
            return Err(unauthorized(&tr));
        };
        let client: Uuid = row.try_get("id").map_err(|e| unavailable(&tr, &e))?;
        let rate: i32 = row
            .try_get("rate_per_second")
            .map_err(|e| unavailable(&tr, &e))?;
        if let Err(wait) = state.ingest.admit(client, u32::try_from(rate).unwrap_or(1)) {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                tr.with(
                    "ingest-rate-limited",
                    &[("seconds", FluentValue::from(wait))],
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Err(response);
        }
        let key = parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned());
        Ok(Self { client, tr, key })
    }
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

/// One thing wrong with a call.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The JSON field (`trusted_adults[1].channels`), or `body` / `Idempotency-Key`.
    pub field: String,
    /// `required`, `type`, `out-of-range`, `unknown-value`, `too-long`, `in-future`,
    /// `too-old`, `unknown-field`, `malformed`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorAnswer {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        status,
        Json(ErrorAnswer {
            error: code,
            message,
            problems: Vec::new(),
        }),
    )
        .into_response()
}

fn unauthorized(tr: &Tr) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        tr.t("ingest-unauthorized"),
    )
}

fn unavailable(tr: &Tr, error_: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error_, "ingestion: database unavailable");
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        tr.t("ingest-unavailable"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Whether a zero byte (`\u0000`) is in a key or a string of `value`, at any depth.
fn has_zero_byte(key: &str, value: &Value) -> bool {
    key.contains('\0')
        || match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(|item| has_zero_byte("", item)),
            Value::Object(map) => map.iter().any(|(k, v)| has_zero_byte(k, v)),
            _ => false,
        }
}

/// A problem with its message (`ingest-problem-{code}`, naming the field).
fn problem(tr: &Tr, field: &str, code: &'static str) -> Problem {
    Problem {
        field: field.to_owned(),
        code,
        message: tr.with(
            &format!("ingest-problem-{code}"),
            &[("field", FluentValue::from(field.to_owned()))],
        ),
    }
}

fn invalid(tr: &Tr, problems: Vec<Problem>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(ErrorAnswer {
            error: "invalid-input",
            message: tr.with(
                "ingest-invalid",
                &[("count", FluentValue::from(problems.len()))],
            ),
            problems,
        }),
    )
        .into_response()
}

/// A signal's id: the raise's answer (201 the first time, 200 for a retry with the same
/// `Idempotency-Key`), and each step's.
#[derive(Serialize, ToSchema)]
struct SignalAnswer {
    signal: Uuid,
}

/// How a command came out, as the API answers it.
fn answer(
    tr: &Tr,
    signal: Uuid,
    outcome: Result<Executed, CommandError<SignalError>>,
    created: bool,
) -> Response {
    match outcome {
        Ok(Executed::Applied) if created => {
            (StatusCode::CREATED, Json(SignalAnswer { signal })).into_response()
        }
        Ok(_) => (StatusCode::OK, Json(SignalAnswer { signal })).into_response(),
        Err(CommandError::Rejected(SignalError::NotRaised)) => {
            error(StatusCode::NOT_FOUND, "not-found", tr.t("ingest-not-found"))
        }
        Err(CommandError::Rejected(refusal)) => {
            let refusal = crate::pages::cases::domain_refusal(*tr, "signal-error", &refusal);
            (
                StatusCode::CONFLICT,
                Json(serde_json::json!({"error": refusal.code, "message": refusal.message})),
            )
                .into_response()
        }
        Err(CommandError::Conflict) => {
            error(StatusCode::CONFLICT, "conflict", tr.t("ingest-conflict"))
        }
        Err(CommandError::Unexpected(e)) => unavailable(tr, &e),
    }
}

// ---------------------------------------------------------------------------------------
// Reading a body
// ---------------------------------------------------------------------------------------

/// A JSON object read field by field, collecting every problem.
struct Fields<'a> {
    object: Map<String, Value>,
    problems: Vec<Problem>,
    tr: &'a Tr,
    now: OffsetDateTime,
}

impl<'a> Fields<'a> {
    /// Parses the body; `Err` when it is not a JSON object at all.
    #[allow(clippy::result_large_err)]
    fn parse(tr: &'a Tr, headers: &HeaderMap, body: &[u8]) -> Result<Self, Response> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        let problem = |code, key: &str| Problem {
            field: "body".to_owned(),
            code,
            message: tr.t(key),
        };
        if !json {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-json",
                tr.t("api-not-json"),
            ));
        }
        if body.len() > BODY_LIMIT {
            return Err(crate::error::AppError::TooLarge.into_response());
        }
        match serde_json::from_slice::<Value>(body) {
            // PostgreSQL cannot store a zero byte in a text: refused here, with the field.
            Ok(Value::Object(object)) if object.iter().any(|(k, v)| has_zero_byte(k, v)) => Err(
                invalid(tr, vec![problem("malformed", "ingest-problem-zero-byte")]),
            ),
            Ok(Value::Object(object)) => Ok(Self {
                object,
                problems: Vec::new(),
                tr,
                now: OffsetDateTime::now_utc(),
            }),
            Ok(_) => Err(invalid(tr, vec![problem("type", "ingest-problem-object")])),
            Err(_) => Err(invalid(
                tr,
                vec![problem("malformed", "ingest-problem-malformed")],
            )),
        }
    }

    fn problem(&mut self, field: &str, code: &'static str) {
        self.problems.push(problem(self.tr, field, code));
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.object.remove(name).filter(|v| !v.is_null())
    }

    fn string(&mut self, name: &str, required: bool, max: usize) -> Option<String> {
        match self.take(name) {
            None => {
                if required {
                    self.problem(name, "required");
                }
                None
            }
            Some(Value::String(s)) => {
                let s = s.trim().to_owned();
                if s.is_empty() {
                    if required {
                        self.problem(name, "required");
                    }
                    None
                } else if s.chars().count() > max {
                    self.problem(name, "too-long");
                    None
                } else {
                    Some(s)
                }
            }
            Some(_) => {
                self.problem(name, "type");
                None
            }
        }
    }

    fn number(&mut self, name: &str, required: bool) -> Option<f64> {
        match self.take(name) {
            None => {
                if required {
                    self.problem(name, "required");
                }
                None
            }
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                self.problem(name, "type");
                None
            }
        }
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.take(name) {
            None => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => {
                self.problem(name, "type");
                None
            }
        }
    }

    /// A moment: RFC 3339, not more than five minutes ahead of the server's clock and, for
    /// a press, not older than a day.
    fn time(&mut self, name: &str, required: bool) -> Option<OffsetDateTime> {
        let raw = self.string(name, required, 64)?;
        let Ok(at) = OffsetDateTime::parse(&raw, &Rfc3339) else {
            self.problem(name, "type");
            return None;
        };
        if at > self.now + time::Duration::seconds(MAX_CLOCK_AHEAD_SECONDS) {
            self.problem(name, "in-future");
            return None;
        }
        if at < self.now - time::Duration::hours(MAX_SIGNAL_AGE_HOURS) {
            self.problem(name, "too-old");
            return None;
        }
        Some(at)
    }

    fn location(&mut self, required: bool) -> Option<Location> {
        let latitude = self.number("latitude", required);
        let longitude = self.number("longitude", required);
        let accuracy_m = self.number("accuracy_m", false);
        let (latitude, longitude) = match (latitude, longitude) {
            (Some(lat), Some(lon)) => (lat, lon),
            (None, None) => return None,
            (None, Some(_)) => {
                self.problem("latitude", "required");
                return None;
            }
            (Some(_), None) => {
                self.problem("longitude", "required");
                return None;
            }
        };
        let wrong = Location::problems(latitude, longitude, accuracy_m);
        for field in &wrong {
            self.problem(field, "out-of-range");
        }
        wrong.is_empty().then_some(Location {
            latitude,
            longitude,
            accuracy_m,
        })
    }

    /// `[{"id": "...", "channels": ["push", "sms"]}]`
    fn adults(&mut self, name: &str) -> Option<Vec<Recipient>> {
        let value = self.take(name)?;
        let Value::Array(items) = value else {
            self.problem(name, "type");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let at = |field: &str| format!("{name}[{i}].{field}");
            let Value::Object(mut adult) = item else {
                self.problem(&format!("{name}[{i}]"), "type");
                ok = false;
                continue;
            };
            let id = match adult.remove("id") {
                Some(Value::String(s))
                    if !s.trim().is_empty() && s.chars().count() <= MAX_PSEUDONYM_CHARS =>
                {
                    Some(s.trim().to_owned())
                }
                Some(Value::String(s)) if !s.trim().is_empty() => {
                    self.problem(&at("id"), "too-long");
                    None
                }
                None | Some(Value::Null) => {
                    self.problem(&at("id"), "required");
                    None
                }
                Some(Value::String(_)) => {
                    self.problem(&at("id"), "required");
                    None
                }
                Some(_) => {
                    self.problem(&at("id"), "type");
                    None
                }
            };
            let channels = match adult.remove("channels") {
                Some(Value::Array(channels)) if !channels.is_empty() => {
                    let mut parsed = Vec::new();
                    for (j, c) in channels.iter().enumerate() {
                        match c.as_str().map(Channel::parse) {
                            Some(Ok(channel)) => parsed.push(channel),
                            Some(Err(_)) => {
                                self.problem(&format!("{name}[{i}].channels[{j}]"), "unknown-value")
                            }
                            None => self.problem(&format!("{name}[{i}].channels[{j}]"), "type"),
                        }
                    }
                    Some(parsed)
                }
                None | Some(Value::Null) => Some(vec![Channel::Push]),
                Some(Value::Array(_)) => {
                    self.problem(&at("channels"), "required");
                    None
                }
                Some(_) => {
                    self.problem(&at("channels"), "type");
                    None
                }
            };
            for unknown in adult.keys() {
                self.problem(&at(unknown), "unknown-field");
            }
            match (id, channels) {
                (Some(id), Some(channels)) => {
                    out.extend(channels.into_iter().map(|channel| Recipient {
                        adult: id.clone(),
                        channel,
                    }))
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn region(&mut self) -> Option<RegionCode> {
        let raw = self.string("region", false, 3)?;
        match RegionCode::parse(&raw) {
            Ok(code) => Some(code),
            Err(_) => {
                self.problem("region", "unknown-value");
                None
            }
        }
    }

    fn kind(&mut self) -> Option<SignalKind> {
        let raw = self.string("kind", false, 40)?;
        match SignalKind::parse(&raw) {
            Ok(kind) => Some(kind),
            Err(_) => {
                self.problem("kind", "unknown-value");
                None
            }
        }
    }

    /// The remaining fields are unknown; the problems, if any.
    fn finish(mut self) -> Result<(), Vec<Problem>> {
        let unknown: Vec<String> = self.object.keys().cloned().collect();
        for field in unknown {
            self.problem(&field, "unknown-field");
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.problems)
        }
    }
}

// ---------------------------------------------------------------------------------------
// What each call reads from its body (no database): shared by the handlers and the fuzz
// targets.
// ---------------------------------------------------------------------------------------

/// A child's registration: the child's pseudonym (from the path), region, city, adults.
fn read_registration(
    fields: &mut Fields,
    child: &str,
) -> (Option<RegionCode>, Option<String>, Vec<Recipient>) {
    if child.is_empty() || child.chars().count() > MAX_PSEUDONYM_CHARS || child.contains('\0') {
        fields.problem("child", "too-long");
    }
    let region = fields.region();
    if region.is_none() && !fields.problems.iter().any(|p| p.field == "region") {
        fields.problem("region", "required");
    }
    let city = fields.string("city", false, 100);
    let adults = fields.adults("trusted_adults").unwrap_or_default();
    (region, city, adults)
}

/// A raise's fields, each `None` where missing or wrong (the problem is in `Fields`).
struct Raise {
    child: Option<String>,
    pressed_at: Option<OffsetDateTime>,
    received_at: Option<OffsetDateTime>,
    location: Option<Location>,
    kind: Option<SignalKind>,
    region: Option<RegionCode>,
    city: Option<String>,
    drill: bool,
    adults: Option<Vec<Recipient>>,
}

fn read_raise(fields: &mut Fields) -> Raise {
    Raise {
        child: fields.string("child", true, MAX_PSEUDONYM_CHARS),
        pressed_at: fields.time("pressed_at", true),
        received_at: fields.time("received_at", false),
        location: fields.location(true),
        kind: fields.kind(),
        region: fields.region(),
        city: fields.string("city", false, 100),
        drill: fields.boolean("drill").unwrap_or(false),
        adults: fields.adults("trusted_adults"),
    }
}

fn read_location(f: &mut Fields) -> Option<SignalCommand> {
    let at = f.time("at", true);
    let location = f.location(true);
    at.zip(location)
        .map(|(at, location)| SignalCommand::UpdateLocation { at, location })
}

fn read_cancel(f: &mut Fields) -> Option<SignalCommand> {
    f.time("at", true).map(|at| SignalCommand::Cancel { at })
}

fn read_acknowledgement(f: &mut Fields) -> Option<SignalCommand> {
    let adult = f.string("adult", true, MAX_PSEUDONYM_CHARS);
    let at = f.time("at", true);
    adult
        .zip(at)
        .map(|(adult, at)| SignalCommand::AdultAcknowledge { adult, at })
}

fn read_resolution(f: &mut Fields) -> Option<SignalCommand> {
    let adult = f.string("adult", true, MAX_PSEUDONYM_CHARS);
    let at = f.time("at", true);
    let on_scene_at = f.time("on_scene_at", false);
    adult
        .zip(at)
        .map(|(adult, at)| SignalCommand::CircleResolve {
            adult,
            at,
            on_scene_at,
        })
}

/// The fuzz targets' way in (`fuzz/`, and the suite's replay of their corpus): the first
/// byte picks one of the six calls, the rest is its body, read as that call reads it and
/// refused as it would be, on a clock fixed at 05.12.2026 12:00 UTC. Returns the status the
/// call would answer if the body alone decided it. Never panics, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_body(data: &[u8]) -> StatusCode {
    let Some((&call, body)) = data.split_first() else {
        return StatusCode::BAD_REQUEST;
    };
    let tr = Tr::new(Lang::Ru);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut fields = match Fields::parse(&tr, &headers, body) {
        Ok(fields) => fields,
        Err(response) => return response.status(),
    };
    // A fixed clock, so that an input reads the same on any day (the seeds' times included).
    fields.now = time::macros::datetime!(2026-12-05 12:00 UTC);
    match call % 6 {
        0 => drop(read_registration(&mut fields, "fuzz-child")),
        1 => drop(read_raise(&mut fields)),
        2 => drop(read_location(&mut fields)),
        3 => drop(read_cancel(&mut fields)),
        4 => drop(read_acknowledgement(&mut fields)),
        _ => drop(read_resolution(&mut fields)),
    }
    match fields.finish() {
        Ok(()) => StatusCode::OK,
        Err(problems) => invalid(&tr, problems).status(),
    }
}

/// The idempotency key, required on every POST.
fn idempotency(caller: &Caller) -> Result<String, Problem> {
    match caller.key.as_deref() {
        Some(key)
            if !key.is_empty()
                && key.chars().count() <= MAX_KEY_CHARS
                && key.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(key.to_owned())
        }
        Some(key) if !key.is_empty() => Err(Problem {
            field: "Idempotency-Key".to_owned(),
            code: "malformed",
            message: caller.tr.t("ingest-problem-key-malformed"),
        }),
        _ => Err(Problem {
            field: "Idempotency-Key".to_owned(),
            code: "required",
            message: caller.tr.t("ingest-problem-key-required"),
        }),
    }
}

fn meta(caller: &Caller, call: &str, key: &str) -> CommandMeta {
    CommandMeta::new(format!("client:{}", caller.client)).with_command_id(ingestion_command_id(
        caller.client,
        &format!("{call}:{key}"),
    ))
}

// ---------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------

async fn region_exists(state: &AppState, region: &RegionCode) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reference.region WHERE code = $1)")
        .bind(region.as_str())
        .fetch_one(state.log.pool())
        .await
}

#[utoipa::path(put, path = "/ingest/v1/children/{child}", tag = "ingestion",
    params(("child" = String, Path, description = "The child's pseudonymous id in the app (1–128 characters)")),
    request_body = RegistrationBody,
    responses((status = 200, body = ChildAnswer, description = "Registered (again: the last registration counts)")))]
async fn register_child(
    State(state): State<AppState>,
    caller: Caller,
    Path(child): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let tr = caller.tr;
    let mut fields = match Fields::parse(&tr, &headers, &body) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let child = child.trim().to_owned();
    let (region, city, adults) = read_registration(&mut fields, &child);
    let mut problems = fields.finish().err().unwrap_or_default();
    if let Some(region) = &region {
        match region_exists(&state, region).await {
            Ok(true) => {}
            Ok(false) => problems.push(problem(&tr, "region", "unknown-value")),
            Err(e) => return unavailable(&tr, &e),
        }
    }
    let Some(region) = region.filter(|_| problems.is_empty()) else {
        return invalid(&tr, problems);
    };
    let id = circle_id(caller.client, &child);
    let outcome = state
        .ingest
        .circles
        .execute(
            &id.to_string(),
            CircleCommand::Register {
                client: caller.client,
                child: child.clone(),
                region,
                city,
                adults,
            },
            &CommandMeta::new(format!("client:{}", caller.client)),
        )
        .await;
    match outcome {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({"child": child}))).into_response(),
        Err(e) => unavailable(&tr, &e),
    }
}

#[utoipa::path(post, path = "/ingest/v1/signals", tag = "ingestion",
    params(IdempotencyKey), request_body = RaiseBody,
    responses((status = 201, body = SignalAnswer, description = "Raised; the trusted adults are being notified"),
              (status = 200, body = SignalAnswer, description = "A retry: already raised, nothing new written")))]
async fn raise(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let tr = caller.tr;
    let key = idempotency(&caller);
    let mut fields = match Fields::parse(&tr, &headers, &body) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let Raise {
        child,
        pressed_at,
        received_at,
        location,
        kind,
        region,
        city,
        drill,
        adults,
    } = read_raise(&mut fields);
    let mut problems = fields.finish().err().unwrap_or_default();
    if let Err(problem) = &key {
        problems.insert(0, problem.clone());
    }
    let now = OffsetDateTime::now_utc();
    let received_at = received_at.unwrap_or(now);
    if let Some(pressed) = pressed_at {
        if pressed > received_at + time::Duration::seconds(MAX_CLOCK_AHEAD_SECONDS) {
            problems.push(problem(&tr, "pressed_at", "in-future"));
        }
    }
    // The child's registration gives what the call leaves out.
    // The child's registration as the log has it now (its last event, read by primary
    // key), so a raise right after the registration sees it.
    let registration = match &child {
        Some(child) => match sqlx::query_scalar::<_, sqlx::types::Json<CircleEvent>>(
            "SELECT payload FROM event WHERE aggregate_type = 'TrustedCircle' \
               AND aggregate_id = $1 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(circle_id(caller.client, child).to_string())
        .fetch_optional(state.log.pool())
        .await
        {
            Ok(event) => event.map(|e| e.0),
            Err(e) => return unavailable(&tr, &e),
        },
        None => None,
    };
    let registered = registration.map(
        |CircleEvent::CircleRegistered {
             region,
             city,
             adults,
             ..
         }| (region, city, adults),
    );
    let region = region.or_else(|| registered.as_ref().map(|r| r.0.clone()));
    match &region {
        Some(region) => match region_exists(&state, region).await {
            Ok(true) => {}
            Ok(false) => problems.push(problem(&tr, "region", "unknown-value")),
            Err(e) => return unavailable(&tr, &e),
        },
        None if !problems.iter().any(|p| p.field == "region") => problems.push(Problem {
            field: "region".to_owned(),
            code: "required",
            message: tr.t("ingest-problem-region-unknown-child"),
        }),
        None => {}
    }
    let (Ok(key), Some(child), Some(pressed_at), Some(region), true) =
        (key, child, pressed_at, region, problems.is_empty())
    else {
        return invalid(&tr, problems);
    };
    let (registered_city, registered_adults) = registered
        .map(|(_, city, adults)| (city, adults))
        .unwrap_or_default();
    let city = city.or(registered_city);
    let recipients = adults.unwrap_or(registered_adults);
    let signal = signal_id(caller.client, &key);
    let outcome = execute_signal(
        &state.ingest.signals,
        signal,
        SignalCommand::Raise {
            child,
            client: caller.client,
            region,
            city,
            kind: kind.unwrap_or(SignalKind::Panic),
            pressed_at,
            received_at,
            location,
            drill,
            recipients,
        },
        &meta(&caller, "raise", &key),
    )
    .await;
    // A retry of a raise that was accepted: the same answer, nothing appended.
    let outcome = match outcome {
        Err(CommandError::Rejected(SignalError::AlreadyRaised)) => Ok(Executed::AlreadyApplied),
        other => other,
    };
    answer(&tr, signal, outcome, true)
}

/// Checks the key and that the signal was raised by this client; then runs `command`.
async fn signal_call(
    state: &AppState,
    caller: &Caller,
    call: &str,
    signal: Uuid,
    problems: Vec<Problem>,
    command: Option<SignalCommand>,
) -> Response {
    let tr = &caller.tr;
    let mut problems = problems;
    let key = idempotency(caller);
    if let Err(problem) = &key {
        problems.insert(0, problem.clone());
    }
    let (Ok(key), Some(command), true) = (key, command, problems.is_empty()) else {
        return invalid(tr, problems);
    };
    let owner: Result<Option<Option<String>>, _> = sqlx::query_scalar(
        "SELECT payload->'SignalRaised'->>'client' FROM event \
          WHERE aggregate_type = 'Signal' AND aggregate_id = $1 AND sequence = 1",
    )
    .bind(signal.to_string())
    .fetch_optional(state.log.pool())
    .await;
    match owner {
        Ok(Some(Some(owner))) if owner == caller.client.to_string() => {}
        Ok(_) => return error(StatusCode::NOT_FOUND, "not-found", tr.t("ingest-not-found")),
        Err(e) => return unavailable(tr, &e),
    }
    let outcome = execute_signal(
        &state.ingest.signals,
        signal,
        command,
        &meta(caller, call, &key),
    )
    .await;
    answer(tr, signal, outcome, false)
}

/// A step on a raised signal: the body read by `read` into the command (or problems), then
/// [`signal_call`].
async fn step(
    state: &AppState,
    caller: &Caller,
    call: &str,
    signal: Uuid,
    headers: &HeaderMap,
    body: &[u8],
    read: fn(&mut Fields) -> Option<SignalCommand>,
) -> Response {
    let tr = caller.tr;
    let mut fields = match Fields::parse(&tr, headers, body) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let command = read(&mut fields);
    let problems = fields.finish().err().unwrap_or_default();
    signal_call(state, caller, call, signal, problems, command).await
}

#[utoipa::path(post, path = "/ingest/v1/signals/{id}/location", tag = "ingestion",
    params(SignalPath, IdempotencyKey), request_body = LocationBody,
    responses((status = 200, body = SignalAnswer)))]
async fn location(
    State(state): State<AppState>,
    caller: Caller,
    Path(signal): Path<Uuid>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    step(
        &state,
        &caller,
        "location",
        signal,
        &headers,
        &body,
        read_location,
    )
    .await
}

#[utoipa::path(post, path = "/ingest/v1/signals/{id}/cancel", tag = "ingestion",
    params(SignalPath, IdempotencyKey), request_body = AtBody,
    responses((status = 200, body = SignalAnswer)))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(signal): Path<Uuid>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    step(
        &state,
        &caller,
        "cancel",
        signal,
        &headers,
        &body,
        read_cancel,
    )
    .await
}

#[utoipa::path(post, path = "/ingest/v1/signals/{id}/acknowledgements", tag = "ingestion",
    params(SignalPath, IdempotencyKey), request_body = AdultAtBody,
    responses((status = 200, body = SignalAnswer)))]
async fn adult_ack(
    State(state): State<AppState>,
    caller: Caller,
    Path(signal): Path<Uuid>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    step(
        &state,
        &caller,
        "acknowledgement",
        signal,
        &headers,
        &body,
        read_acknowledgement,
    )
    .await
}

#[utoipa::path(post, path = "/ingest/v1/signals/{id}/resolution", tag = "ingestion",
    params(SignalPath, IdempotencyKey), request_body = ResolutionBody,
    responses((status = 200, body = SignalAnswer)))]
async fn circle_resolved(
    State(state): State<AppState>,
    caller: Caller,
    Path(signal): Path<Uuid>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    step(
        &state,
        &caller,
        "resolution",
        signal,
        &headers,
        &body,
        read_resolution,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The OpenAPI document (`GET /ingest/v1/openapi.json`): what the calls read, as the
// readers above read it. These types describe; the readers decide.
// ---------------------------------------------------------------------------------------

mod doc {
    #![allow(dead_code)]

    use serde::Serialize;
    use time::OffsetDateTime;
    use utoipa::{IntoParams, ToSchema};
    use uuid::Uuid;

    /// How a trusted adult is notified.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum ChannelName {
        Push,
        Sms,
        Call,
    }

    /// What the child pressed the button for (default `panic`).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum KindName {
        Panic,
        Lost,
        Threat,
        Bullying,
        Health,
        Accident,
        Other,
    }

    /// A trusted adult of the child, and how to reach them.
    #[derive(Serialize, ToSchema)]
    pub struct AdultBody {
        /// The adult's pseudonymous id in the app.
        #[schema(min_length = 1, max_length = 128)]
        pub id: String,
        #[schema(min_items = 1)]
        pub channels: Vec<ChannelName>,
    }

    /// A child's registration: where the child lives, and the trusted circle.
    #[derive(Serialize, ToSchema)]
    pub struct RegistrationBody {
        /// The region's code (`55`); it must be a subject of the Russian Federation.
        #[schema(min_length = 1, max_length = 3)]
        pub region: String,
        #[schema(max_length = 100)]
        pub city: Option<String>,
        pub trusted_adults: Option<Vec<AdultBody>>,
    }

    /// The child pressed the button. Region, city and adults default to the registration's.
    #[derive(Serialize, ToSchema)]
    pub struct RaiseBody {
        /// The child's pseudonymous id in the app.
        #[schema(min_length = 1, max_length = 128)]
        pub child: String,
        /// When the button was pressed: not more than 5 minutes ahead of the server's clock,
        /// nor older than 24 hours.
        pub pressed_at: OffsetDateTime,
        /// When the app's backend received it (default: now).
        pub received_at: Option<OffsetDateTime>,
        #[serde(flatten)]
        pub position: Position,
        pub kind: Option<KindName>,
        #[schema(max_length = 3)]
        pub region: Option<String>,
        #[schema(max_length = 100)]
        pub city: Option<String>,
        /// A drill: shown as such, kept out of the figures.
        pub drill: Option<bool>,
        pub trusted_adults: Option<Vec<AdultBody>>,
    }

    /// Where the child is.
    #[derive(Serialize, ToSchema)]
    pub struct Position {
        #[schema(minimum = -90, maximum = 90)]
        pub latitude: f64,
        #[schema(minimum = -180, maximum = 180)]
        pub longitude: f64,
        /// Metres.
        #[schema(minimum = 0, maximum = 100000)]
        pub accuracy_m: Option<f64>,
    }

    /// A new position of the child.
    #[derive(Serialize, ToSchema)]
    pub struct LocationBody {
        pub at: OffsetDateTime,
        #[serde(flatten)]
        pub position: Position,
    }

    /// The child cancelled the signal.
    #[derive(Serialize, ToSchema)]
    pub struct AtBody {
        pub at: OffsetDateTime,
    }

    /// A trusted adult saw the signal.
    #[derive(Serialize, ToSchema)]
    pub struct AdultAtBody {
        #[schema(min_length = 1, max_length = 128)]
        pub adult: String,
        pub at: OffsetDateTime,
    }

    /// The trusted circle settled it.
    #[derive(Serialize, ToSchema)]
    pub struct ResolutionBody {
        #[schema(min_length = 1, max_length = 128)]
        pub adult: String,
        pub at: OffsetDateTime,
        pub on_scene_at: Option<OffsetDateTime>,
    }

    /// The registered child's id.
    #[derive(Serialize, ToSchema)]
    pub struct ChildAnswer {
        pub child: String,
    }

    /// One thing wrong with a call.
    #[derive(Serialize, ToSchema)]
    pub struct ProblemBody {
        /// The JSON field (`trusted_adults[1].channels`), or `body` / `Idempotency-Key`.
        pub field: String,
        /// `required`, `type`, `out-of-range`, `unknown-value`, `too-long`, `in-future`,
        /// `too-old`, `unknown-field`, `malformed`.
        pub code: String,
        pub message: String,
    }

    /// Every error answer: a code for programmes, a message for people (Russian, or English
    /// with `Accept-Language: en`), and for a refused body every problem at once.
    #[derive(Serialize, ToSchema)]
    pub struct IngestError {
        pub error: String,
        pub message: String,
        pub problems: Option<Vec<ProblemBody>>,
    }

    /// The signal.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct SignalPath {
        /// The id the raise answered.
        pub id: Uuid,
    }

    /// Required on every POST: a retry with the same key writes nothing new and answers as
    /// the first call did.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub struct IdempotencyKey {
        /// 1–200 printable ASCII characters.
        #[param(
            rename = "Idempotency-Key",
            min_length = 1,
            max_length = 200,
            pattern = "^[!-~]{1,200}$"
        )]
        pub idempotency_key: String,
    }
}

use doc::{
    AdultAtBody, AtBody, ChildAnswer, IdempotencyKey, IngestError, LocationBody, RaiseBody,
    RegistrationBody, ResolutionBody, SignalPath,
};

struct IngestSecurity;

impl utoipa::Modify for IngestSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "integration",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The integration key of the app's backend (`opora integration create`).",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let steps = path.contains("{id}");
            for operation in [item.post.as_mut(), item.put.as_mut()]
                .into_iter()
                .flatten()
            {
                let mut common = vec![
                    ("400", "A path parameter cannot be read (`bad-request`)."),
                    ("401", "No valid integration key (`unauthorized`)."),
                    ("413", "The body is over 64 KiB (`too-large`)."),
                    ("415", "The body is not `application/json` (`not-json`)."),
                    ("422", "The body or the `Idempotency-Key` is wrong (`invalid-input`, with every problem), or holds a value the database cannot store (`unstorable`); nothing was written."),
                    ("429", "Over the client's rate (`rate-limited`, `Retry-After`)."),
                    ("503", "The database is away or short of time (`unavailable`, `Retry-After`); nothing was written."),
                ];
                if steps {
                    common.push(("404", "No such signal of this client (`not-found`)."));
                    common.push(("409", "The signal's state refuses the step (`signal-error-Closed`, …) or another write won (`conflict`)."));
                } else {
                    common.push((
                        "409",
                        "Another write to the same record won (`conflict`); retry.",
                    ));
                }
                crate::api::add_answers(operation, "IngestError", &common);
            }
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Opora ingestion API («Заступник»)", description = "For the children's app's backend: registrations of children and their trusted circles, and emergency signals with their steps. Each call carries `Authorization: Bearer <integration key>`; every POST an `Idempotency-Key`. Times are RFC 3339."),
    modifiers(&IngestSecurity),
    security(("integration" = [])),
    paths(register_child, raise, location, cancel, adult_ack, circle_resolved),
    components(schemas(SignalAnswer, ChildAnswer, IngestError))
)]
pub struct IngestDoc;

async fn openapi() -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(<IngestDoc as utoipa::OpenApi>::openapi()),
    )
        .into_response()
}
