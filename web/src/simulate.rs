//! `opora simulate signals`: a load of realistic «Заступник» signals against a running
//! Opora, through its public HTTP interfaces only (the ingestion API as the app's backend
//! calls it, and the operators' JSON API as the console calls it).
//!
//! Open loop: signals are raised at `--rate` per second for `--duration` seconds whatever
//! the server's answers; each signal then lives its own life in a task of its own:
//!
//! - the child is registered (`PUT /ingest/v1/children/{child}`) with 1–3 trusted adults,
//! - the signal is raised (kinds: panic 55 %, lost 15 %, threat 10 %, bullying 8 %,
//!   health 6 %, accident 4 %, other 2 %), then one or two location updates follow;
//! - 79 %: a trusted adult acknowledges after 10–60 s and resolves it, on scene 60–240 s
//!   after the press;
//! - 4 %: the child cancels it;
//! - the rest (17 %), with `--operator`: the operator acknowledges after 5–40 s, dispatches
//!   a volunteer (police for a threat, medics for health and accidents), marks them en
//!   route and on scene (90–300 s after the press) and resolves (5 % false alarms). Without
//!   `--operator` these signals are left open for the people at the console.
//!
//! Every delay is divided by `--time-scale`, and so are the times the calls carry (each
//! `at` is the wall-clock instant of the step, never in the future): at `--time-scale 60`
//! a three-minute response runs, and is recorded, in three seconds.
//!
//! Every call carries an `Idempotency-Key` (the operators' steps a `command_id`); network
//! errors, 5xx, 429 (after its `Retry-After`) and a concurrent write to the same signal
//! (409 `conflict`, 422 `signal-conflict`) are retried with the same key, so a retry never
//! raises a second signal or records a step twice.
//! Keys and pseudonymous ids carry a random run tag: `--seed` fixes what is simulated, not
//! the ids, so two runs with the same seed raise two sets of signals.
//!
//! The command line (`web/src/cli.rs`): `SimulateArgs` is a `clap::Args`, so the variant is
//!
//! ```text
//! /// Simulated load through the public HTTP interfaces.
//! Simulate {
//!     #[command(subcommand)]
//!     command: SimulateCommand,
//! },
//!
//! #[derive(Subcommand, Debug)]
//! pub enum SimulateCommand {
//!     /// «Заступник» signals with realistic lifecycles, raised open-loop at --rate per
//!     /// second for --duration seconds against a running Opora (--url).
//!     Signals(crate::simulate::SimulateArgs),
//! }
//!
//! // in `run`:
//! Command::Simulate {
//!     command: SimulateCommand::Signals(args),
//! } => {
//!     let report = crate::simulate::signals(args).await?;
//!     println!("{report}");
//!     Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
//! }
//! ```
//!
//! and the arguments, as `SimulateArgs` below declares them:
//!
//! ```text
//! #[derive(clap::Args, Debug, Clone)]
//! pub struct SimulateArgs {
//!     #[arg(long, env = "OPORA_URL", default_value = "http://127.0.0.1:8080")]
//!     pub url: String,
//!     #[arg(long, env = "OPORA_INGEST_KEY", hide_env_values = true)]
//!     pub key: String,
//!     #[arg(long, default_value_t = 1.0)]
//!     pub rate: f64,
//!     #[arg(long, default_value_t = 60.0)]
//!     pub duration: f64,
//!     #[arg(long, default_value = "55")]
//!     pub region: String,
//!     #[arg(long, default_value = "Омск")]
//!     pub city: String,
//!     #[arg(long, requires = "password")]
//!     pub operator: Option<String>,
//!     #[arg(long, env = "OPORA_OPERATOR_PASSWORD", hide_env_values = true, requires = "operator")]
//!     pub password: Option<String>,
//!     #[arg(long, default_value_t = 1)]
//!     pub seed: u64,
//!     #[arg(long)]
//!     pub drill: bool,
//!     #[arg(long, default_value_t = 1.0)]
//!     pub time_scale: f64,
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The simulator's settings (`opora simulate signals`).
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Opora's address.
    #[arg(long, env = "OPORA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The ingestion client's key (sent as `Authorization: Bearer`).
    #[arg(long, env = "OPORA_INGEST_KEY", hide_env_values = true)]
    pub key: String,
    /// Signals raised per second (open loop: slow answers do not slow it down).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds during which signals are raised; the lifecycles already started then run
    /// to their end (Ctrl+C stops at once and reports).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// The region's code the signals come from.
    #[arg(long, default_value = "55")]
    pub region: String,
    /// The city the signals come from (places them around its centre when known).
    #[arg(long, default_value = "Омск")]
    pub city: String,
    /// A signal operator's login: the operator steps of the signals the trusted circle
    /// does not resolve are taken as this user (a role without a second factor; the
    /// user's scope must cover --region).
    #[arg(long, requires = "password")]
    pub operator: Option<String>,
    /// The operator's password.
    #[arg(
        long,
        env = "OPORA_OPERATOR_PASSWORD",
        hide_env_values = true,
        requires = "operator"
    )]
    pub password: Option<String>,
    /// The random seed of what is simulated (kinds, delays, places, outcomes).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Mark every signal as a drill.
    #[arg(long)]
    pub drill: bool,
    /// Lifecycle delays are divided by this (60: a three-minute response in three seconds).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".to_owned(),
            key: String::new(),
            rate: 1.0,
            duration: 60.0,
            region: "55".to_owned(),
            city: "Омск".to_owned(),
            operator: None,
            password: None,
            seed: 1,
            drill: false,
            time_scale: 1.0,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimulateReport {
    pub seconds: f64,
    pub run_tag: String,
    pub children_registered: u64,
    pub signals_raised: u64,
    /// Lifecycles that ran to their planned end, by ending.
    pub resolved_by_circle: u64,
    pub cancelled_by_child: u64,
    pub resolved_by_operator: u64,
    /// Planned for the operator path, left open (no `--operator`).
    pub left_open: u64,
    /// Lifecycles stopped by a call that failed for good.
    pub lifecycles_failed: u64,
    /// Lifecycles still running when the run was interrupted.
    pub lifecycles_unfinished: u64,
    /// HTTP calls answered (every attempt, retries included).
    pub calls: u64,
    pub retries: u64,
    /// Why calls were made again: HTTP status and error code, `network`, `signed in again`.
    pub retries_by_reason: BTreeMap<String, u64>,
    /// Calls that failed for good, by HTTP status (`network` when no answer came).
    pub errors_by_status: BTreeMap<String, u64>,
    /// The first few failures, for the eye.
    pub error_samples: Vec<String>,
    pub operator_logins: u64,
    pub interrupted: bool,
}

impl SimulateReport {
    /// No call failed for good and no lifecycle was stopped.
    pub fn is_clean(&self) -> bool {
        self.errors_by_status.is_empty() && self.lifecycles_failed == 0
    }
}

impl fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Симуляция сигналов (метка прогона {}): {:.1} с{}",
            self.run_tag,
            self.seconds,
            if self.interrupted {
                ", прервана"
            } else {
                ""
            }
        )?;
        writeln!(f, "  детей зарегистрировано: {}", self.children_registered)?;
        writeln!(f, "  сигналов подано: {}", self.signals_raised)?;
        writeln!(
            f,
            "  разрешено доверенным кругом: {}, отменено ребёнком: {}, разрешено оператором: {}, оставлено открытыми: {}",
            self.resolved_by_circle, self.cancelled_by_child, self.resolved_by_operator, self.left_open
        )?;
        writeln!(
            f,
            "  жизненных циклов прервано ошибкой: {}, не завершено: {}",
            self.lifecycles_failed, self.lifecycles_unfinished
        )?;
        write!(
            f,
            "  вызовов: {}, повторов: {}, входов оператора: {}",
            self.calls, self.retries, self.operator_logins
        )?;
        if !self.retries_by_reason.is_empty() {
            let reasons: Vec<String> = self
                .retries_by_reason
                .iter()
                .map(|(why, n)| format!("{why}: {n}"))
                .collect();
            write!(f, " (повторы: {})", reasons.join(", "))?;
        }
        writeln!(f)?;
        if self.errors_by_status.is_empty() {
            write!(f, "  ошибок нет")?;
        } else {
            let errors: Vec<String> = self
                .errors_by_status
                .iter()
                .map(|(status, n)| format!("{status}: {n}"))
                .collect();
            write!(f, "  ошибки по статусам: {}", errors.join(", "))?;
            for sample in &self.error_samples {
                write!(f, "\n    {sample}")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The plan of one signal's life (pure: unit-tested with a fixed seed)
// ---------------------------------------------------------------------------------------

/// The kinds the app sends, with their weights (per cent).
pub const KIND_WEIGHTS: &[(&str, u32)] = &[
    ("panic", 55),
    ("lost", 15),
    ("threat", 10),
    ("bullying", 8),
    ("health", 6),
    ("accident", 4),
    ("other", 2),
];

/// How a signal ends, with weights (per cent): the trusted circle, the child, the operators.
const ENDING_WEIGHTS: &[(EndingKind, u32)] = &[
    (EndingKind::Circle, 79),
    (EndingKind::Cancelled, 4),
    (EndingKind::Operator, 17),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndingKind {
    Circle,
    Cancelled,
    Operator,
}

/// One item of `items`, drawn with probability proportional to its weight. `items` must
/// not be empty and the weights must not all be zero (the last item is returned then).
pub fn weighted<'a, T>(rng: &mut impl Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut pick = if total == 0 {
        0
    } else {
        rng.gen_range(0..total)
    };
    for (item, weight) in items {
        let weight = u64::from(*weight);
        if pick < weight {
            return item;
        }
        pick -= weight;
    }
    &items.last().expect("weighted() needs at least one item").0
}

/// A trusted adult and the channels they are reached on.
#[derive(Debug, Clone, PartialEq)]
pub struct Adult {
    pub id: String,
    pub channels: Vec<&'static str>,
}

/// A place: degrees and the device's accuracy in metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub latitude: f64,
    pub longitude: f64,
    pub accuracy_m: f64,
}

/// One call of a signal's life, `offset` after the press (before `--time-scale`).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub offset: Duration,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Location(Place),
    AdultAcknowledge {
        adult: String,
    },
    /// `on_scene` is the offset after the press at which the adult reached the child.
    CircleResolve {
        adult: String,
        on_scene: Duration,
    },
    Cancel,
    OperatorAcknowledge,
    Dispatch {
        responder: &'static str,
    },
    EnRoute {
        responder: &'static str,
    },
    OnScene {
        responder: &'static str,
    },
    Resolve {
        outcome: &'static str,
    },
}

impl Action {
    /// A short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Location(_) => "location",
            Action::AdultAcknowledge { .. } => "adult-acknowledge",
            Action::CircleResolve { .. } => "circle-resolve",
            Action::Cancel => "cancel",
            Action::OperatorAcknowledge => "acknowledge",
            Action::Dispatch { .. } => "dispatch",
            Action::EnRoute { .. } => "en-route",
            Action::OnScene { .. } => "on-scene",
            Action::Resolve { .. } => "resolve",
        }
    }

    fn is_operator(&self) -> bool {
        matches!(
            self,
            Action::OperatorAcknowledge
                | Action::Dispatch { .. }
                | Action::EnRoute { .. }
                | Action::OnScene { .. }
                | Action::Resolve { .. }
        )
    }
}

/// The whole life of one signal, decided before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The signal's number in the run (0, 1, …).
    pub number: u64,
    pub kind: &'static str,
    pub adults: Vec<Adult>,
    /// Whether the raise names the adults itself (otherwise the registration does).
    pub adults_in_raise: bool,
    pub place: Place,
    /// From the press to the app backend's call (real time, not scaled).
    pub relay: Duration,
    pub ending: EndingKind,
    /// In the order of their offsets; location updates come first.
    pub steps: Vec<Step>,
}

fn secs(rng: &mut impl Rng, from: f64, to: f64) -> Duration {
    Duration::from_secs_f64(rng.gen_range(from..to))
}

/// The centre of a city Opora's demo knows; Omsk's for any other.
pub fn city_centre(city: &str) -> (f64, f64) {
    match city {
        "Казань" => (55.7963, 49.1088),
        "Барнаул" => (53.3474, 83.7784),
        "Тюмень" => (57.1530, 65.5343),
        "Нижний Новгород" => (56.3269, 44.0059),
        "Ульяновск" => (54.3142, 48.4031),
        "Москва" => (55.7558, 37.6173),
        "Санкт-Петербург" => (59.9386, 30.3141),
        _ => (54.9885, 73.3242),
    }
}

/// Plans signal `number`'s life. `tag` makes the pseudonymous ids unique to the run.
pub fn plan(rng: &mut impl Rng, number: u64, tag: &str, centre: (f64, f64)) -> Plan {
    let kind = *weighted(rng, KIND_WEIGHTS);
    let adult_count = rng.gen_range(1..=3);
    let adults = (0..adult_count)
        .map(|k| {
            let mut channels = vec!["push"];
            if rng.gen_bool(0.5) {
                channels.push("sms");
            }
            if rng.gen_bool(0.1) {
                channels.push("call");
            }
            Adult {
                id: format!("sim-{tag}-a{number}-{k}"),
                channels,
            }
        })
        .collect::<Vec<_>>();
    // Within about 8 km of the centre.
    let place = Place {
        latitude: centre.0 + rng.gen_range(-0.07..0.07),
        longitude: centre.1 + rng.gen_range(-0.12..0.12),
        accuracy_m: rng.gen_range(5.0..60.0_f64).round(),
    };
    let relay = Duration::from_millis(rng.gen_range(300..3_000));
    let ending = *weighted(rng, ENDING_WEIGHTS);

    let mut steps = Vec::new();
    // One or two location updates in the first quarter minute: the child moves a little.
    let updates = rng.gen_range(1..=2);
    let mut at = 0.0;
    let mut here = place;
    for _ in 0..updates {
        at += rng.gen_range(2.0..7.0);
        here = Place {
            latitude: here.latitude + rng.gen_range(-0.0015..0.0015),
            longitude: here.longitude + rng.gen_range(-0.0025..0.0025),
            accuracy_m: rng.gen_range(5.0..40.0_f64).round(),
        };
        steps.push(Step {
            offset: Duration::from_secs_f64(at),
            action: Action::Location(here),
        });
    }
    let last_location = Duration::from_secs_f64(at);
    match ending {
        EndingKind::Circle => {
            let who = rng.gen_range(0..adults.len());
            let acknowledged = secs(rng, 10.0, 60.0).max(last_location + Duration::from_secs(1));
            let on_scene = secs(rng, 60.0, 240.0).max(acknowledged + Duration::from_secs(5));
            let resolved = on_scene + secs(rng, 20.0, 120.0);
            // Another adult of the circle may see it too, before it is over.
            for (k, other) in adults.iter().enumerate() {
                if k != who && rng.gen_bool(0.4) {
                    let seen = secs(rng, 10.0, 90.0)
                        .max(last_location + Duration::from_secs(1))
                        .min(resolved - Duration::from_secs(5));
                    steps.push(Step {
                        offset: seen,
                        action: Action::AdultAcknowledge {
                            adult: other.id.clone(),
                        },
                    });
                }
            }
            steps.push(Step {
                offset: acknowledged,
                action: Action::AdultAcknowledge {
                    adult: adults[who].id.clone(),
                },
            });
            steps.push(Step {
                offset: resolved,
                action: Action::CircleResolve {
                    adult: adults[who].id.clone(),
                    on_scene,
                },
            });
        }
        EndingKind::Cancelled => {
            steps.push(Step {
                offset: secs(rng, 20.0, 90.0).max(last_location + Duration::from_secs(1)),
                action: Action::Cancel,
            });
        }
        EndingKind::Operator => {
            let responder = match kind {
                "threat" => "police",
                "health" | "accident" => "medics",
                _ => "volunteer",
            };
            let acknowledged = secs(rng, 5.0, 40.0).max(last_location + Duration::from_secs(1));
            let dispatched = acknowledged + secs(rng, 5.0, 30.0);
            let en_route = dispatched + secs(rng, 10.0, 60.0);
            let on_scene = secs(rng, 90.0, 300.0).max(en_route + Duration::from_secs(20));
            let resolved = on_scene + secs(rng, 60.0, 300.0);
            let outcome = if rng.gen_bool(0.05) {
                "false_alarm"
            } else if responder == "volunteer" {
                "operators"
            } else {
                "emergency_services"
            };
            for (offset, action) in [
                (acknowledged, Action::OperatorAcknowledge),
                (dispatched, Action::Dispatch { responder }),
                (en_route, Action::EnRoute { responder }),
                (on_scene, Action::OnScene { responder }),
                (resolved, Action::Resolve { outcome }),
            ] {
                steps.push(Step { offset, action });
            }
        }
    }
    steps.sort_by_key(|step| step.offset);
    Plan {
        number,
        kind,
        adults,
        adults_in_raise: rng.gen_bool(0.5),
        place,
        relay,
        ending,
        steps,
    }
}

// ---------------------------------------------------------------------------------------
// HTTP with retries
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    children: AtomicU64,
    raised: AtomicU64,
    circle: AtomicU64,
    cancelled: AtomicU64,
    operator: AtomicU64,
    left_open: AtomicU64,
    failed: AtomicU64,
    calls: AtomicU64,
    retries: AtomicU64,
    retry_reasons: Mutex<BTreeMap<String, u64>>,
    logins: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    fn retry(&self, why: String) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut reasons) = self.retry_reasons.lock() {
            *reasons.entry(why).or_default() += 1;
        }
    }

    fn error(&self, status: String, sample: String) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(status).or_default() += 1;
        }
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() < 10 {
                samples.push(sample);
            }
        }
    }
}

/// An answer: status, body (as JSON when it is JSON) and the `Retry-After`.
struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

/// Why a call failed for good.
#[derive(Debug)]
enum CallError {
    /// An HTTP answer that is not a success (after the retries, for the retryable ones).
    Status(StatusCode, String),
    /// No answer (after the retries).
    Network(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Status(status, body) => {
                let body: String = body.chars().take(300).collect();
                write!(f, "{status}: {body}")
            }
            CallError::Network(error) => write!(f, "no answer: {error}"),
        }
    }
}

const MAX_ATTEMPTS: u32 = 8;
/// From a child's registration to the press.
const REGISTERED_BEFORE: Duration = Duration::from_secs(1);

/// Whether a failed answer is worth the same call again (same idempotency key or command
/// id): no answer counts separately; 5xx, 429, and a concurrent write to the same signal —
/// 409 `conflict` from the ingestion API, 422 `signal-conflict` from the operators' API —
/// (not a refusal of the step itself, which is `signal-error-…`).
fn retryable(status: StatusCode, body: &Value) -> bool {
    let concurrent = matches!(body["error"].as_str(), Some("conflict" | "signal-conflict"));
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || (concurrent
            && (status == StatusCode::CONFLICT || status == StatusCode::UNPROCESSABLE_ENTITY))
}

/// A failed answer in a word: the status and the error code, if the body has one.
fn reason(status: StatusCode, body: &Value) -> String {
    match body["error"].as_str() {
        Some(code) => format!("{} {code}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(60.0)))
}

/// The delay before attempt `attempt + 1` (1-based) when the server gave none: 200 ms
/// doubling, at most 5 s, with jitter.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = 0.2 * 2_f64.powi(i32::try_from(attempt.saturating_sub(1).min(10)).unwrap_or(10));
    Duration::from_secs_f64(base.min(5.0) * (0.75 + 0.5 * jitter.clamp(0.0, 1.0)))
}

struct Sim {
    http: reqwest::Client,
    base: String,
    key: String,
    region: String,
    city: String,
    drill: bool,
    scale: f64,
    tag: String,
    operator: Option<Operator>,
    stats: Stats,
}

/// A signed-in operator: the session cookie and the API's CSRF token.
struct Operator {
    login: String,
    password: String,
    http: reqwest::Client,
    session: Mutex<Session>,
    /// One login at a time.
    relogin: tokio::sync::Mutex<u64>,
}

/// The cookies a browser keeps for one site: set by `Set-Cookie`, dropped when expired, sent
/// back as one `Cookie` header. Shared with the benchmarks' signed-in users.
#[derive(Default, Clone, Debug)]
pub struct CookieJar(HashMap<String, String>);

impl CookieJar {
    /// The `Cookie` header a browser would send.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps what the response sets, and forgets what it expires.
    pub fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = value.is_empty() || text.to_ascii_lowercase().contains("max-age=0");
            if expired {
                self.0.remove(name.trim());
            } else {
                self.0
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl std::ops::Index<&str> for CookieJar {
    type Output = String;

    fn index(&self, name: &str) -> &String {
        &self.0[name]
    }
}

#[derive(Default, Clone)]
struct Session {
    cookies: CookieJar,
    csrf: String,
    /// Bumped at each login, so that concurrent 401s cause one login only.
    generation: u64,
}

impl Session {
    fn cookie_header(&self) -> String {
        self.cookies.header()
    }

    fn take_cookies(&mut self, response: &reqwest::Response) {
        self.cookies.keep(response);
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

async fn read(response: reqwest::Response) -> Answer {
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, body, text }
}

impl Sim {
    /// An ingestion call with its idempotency key, retried (same key) on no answer, 5xx
    /// and 429. A non-retryable failure or the last attempt's is returned as an error.
    async fn ingest(
        &self,
        rng: &mut StdRng,
        method: Method,
        path: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> Result<Answer, CallError> {
        let url = format!("{}{path}", self.base);
        let body = body.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.key)
                .header("idempotency-key", idempotency_key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let (wait, why) = match sent {
                Ok(response) => {
                    let status = response.status();
                    let server_wait = retry_after(&response);
                    let answer = read(response).await;
                    if status.is_success() {
                        return Ok(answer);
                    }
                    if !retryable(status, &answer.body) || attempt >= MAX_ATTEMPTS {
                        return Err(CallError::Status(status, answer.text));
                    }
                    let wait = server_wait.unwrap_or_else(|| backoff(attempt, rng.gen()));
                    (wait, reason(status, &answer.body))
                }
                Err(error) => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(CallError::Network(error.to_string()));
                    }
                    (backoff(attempt, rng.gen()), "network".to_owned())
                }
            };
            self.stats.retry(why);
            tokio::time::sleep(wait).await;
        }
    }

    /// An operator API call (session cookie and CSRF token), retried like `ingest`; a 401
    /// signs in again once.
    async fn operator_call(
        &self,
        rng: &mut StdRng,
        path: &str,
        body: &Value,
    ) -> Result<Answer, CallError> {
        let Some(operator) = &self.operator else {
            return Err(CallError::Network("no operator".to_owned()));
        };
        let url = format!("{}{path}", self.base);
        let body = body.to_string();
        let mut attempt = 0;
        let mut signed_in_again = false;
        loop {
            attempt += 1;
            let session = operator
                .session
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            let sent = operator
                .http
                .post(&url)
                .header(reqwest::header::COOKIE, session.cookie_header())
                .header("x-csrf-token", &session.csrf)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let (wait, why) = match sent {
                Ok(response) => {
                    if let Ok(mut current) = operator.session.lock() {
                        if current.generation == session.generation {
                            current.take_cookies(&response);
                        }
                    }
                    let status = response.status();
                    let server_wait = retry_after(&response);
                    let answer = read(response).await;
                    if status.is_success() {
                        return Ok(answer);
                    }
                    // An expired session (401), or a CSRF token the session no longer
                    // knows (403 `stale-form`): sign in again, once.
                    let stale = status == StatusCode::UNAUTHORIZED
                        || (status == StatusCode::FORBIDDEN
                            && answer.body["error"].as_str() == Some("stale-form"));
                    if stale && !signed_in_again {
                        signed_in_again = true;
                        if let Err(error) = self.login(operator, session.generation).await {
                            return Err(CallError::Status(status, format!("{error:#}")));
                        }
                        self.stats.retry("signed in again".to_owned());
                        continue;
                    }
                    // The console reads signals from a read model: a signal raised a
                    // moment ago may not be there yet (404) — look again a few times.
                    let retry = retryable(status, &answer.body)
                        || (status == StatusCode::NOT_FOUND && attempt < 4);
                    if !retry || attempt >= MAX_ATTEMPTS {
                        return Err(CallError::Status(status, answer.text));
                    }
                    let wait = server_wait.unwrap_or_else(|| backoff(attempt, rng.gen()));
                    (wait, reason(status, &answer.body))
                }
                Err(error) => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(CallError::Network(error.to_string()));
                    }
                    (backoff(attempt, rng.gen()), "network".to_owned())
                }
            };
            self.stats.retry(why);
            tokio::time::sleep(wait).await;
        }
    }

    /// Signs the operator in (the login form, as a browser posts it), then reads the API's
    /// CSRF token. Does nothing when another task signed in since `seen_generation`.
    async fn login(&self, operator: &Operator, seen_generation: u64) -> Result<()> {
        let mut generation = operator.relogin.lock().await;
        if *generation != seen_generation {
            return Ok(());
        }
        let mut session = Session::default();
        let page = operator
            .http
            .get(format!("{}/vhod", self.base))
            .send()
            .await
            .context("GET /vhod")?;
        session.take_cookies(&page);
        let html = read(page).await.text;
        let csrf = between(&html, "name=\"csrf\" value=\"", "\"")
            .context("the login page has no CSRF field")?
            .to_owned();
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("login", &operator.login)
            .append_pair("password", &operator.password)
            .append_pair("csrf", &csrf)
            .finish();
        let response = operator
            .http
            .post(format!("{}/vhod", self.base))
            .header(reqwest::header::COOKIE, session.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .context("POST /vhod")?;
        session.take_cookies(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !status.is_redirection() {
            bail!(
                "the operator {} could not sign in (HTTP {status}: wrong password, or throttled)",
                operator.login
            );
        }
        if location.starts_with("/vhod") {
            bail!(
                "the operator {} needs a second factor (redirected to {location}); use a signal operator without one",
                operator.login
            );
        }
        let me = operator
            .http
            .get(format!("{}/api/v1/me", self.base))
            .header(reqwest::header::COOKIE, session.cookie_header())
            .send()
            .await
            .context("GET /api/v1/me")?;
        session.take_cookies(&me);
        let me = read(me).await;
        if !me.status.is_success() {
            bail!("GET /api/v1/me answered {}: {}", me.status, me.text);
        }
        session.csrf = me.body["csrf_token"]
            .as_str()
            .context("GET /api/v1/me gave no csrf_token")?
            .to_owned();
        *generation += 1;
        session.generation = *generation;
        if let Ok(mut current) = operator.session.lock() {
            *current = session;
        }
        self.stats.logins.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn failed(&self, plan: &Plan, what: &str, error: &CallError) {
        let status = match error {
            CallError::Status(status, _) => status.as_u16().to_string(),
            CallError::Network(_) => "network".to_owned(),
        };
        self.stats.error(
            status,
            format!("signal #{} ({}): {what}: {error}", plan.number, plan.kind),
        );
    }

    /// The whole life of one signal. `started` is when its registration was due.
    async fn live(&self, plan: Plan, started: Instant) -> Lived {
        let mut rng = StdRng::seed_from_u64(plan.number ^ 0x5eed_5eed);
        let tag = &self.tag;
        let number = plan.number;
        let child = format!("sim-{tag}-c{number}");
        let adults: Vec<Value> = plan
            .adults
            .iter()
            .map(|a| json!({"id": a.id, "channels": a.channels}))
            .collect();
        let registration = json!({
            "region": self.region,
            "city": self.city,
            "trusted_adults": adults,
        });
        if let Err(error) = self
            .ingest(
                &mut rng,
                Method::PUT,
                &format!("/ingest/v1/children/{child}"),
                &format!("sim-{tag}-{number}-register"),
                &registration,
            )
            .await
        {
            self.failed(&plan, "register", &error);
            return Lived::Failed;
        }
        self.stats.children.fetch_add(1, Ordering::Relaxed);

        // The child was registered before pressing: the raise reads the registration from
        // a read model, which takes a moment to show it.
        tokio::time::sleep_until(started + REGISTERED_BEFORE).await;
        // The press happened `relay` before the app's backend calls.
        let raised = Instant::now();
        let pressed = OffsetDateTime::now_utc() - plan.relay;
        let mut raise = json!({
            "child": child,
            "pressed_at": rfc3339(pressed),
            "latitude": plan.place.latitude,
            "longitude": plan.place.longitude,
            "accuracy_m": plan.place.accuracy_m,
            "kind": plan.kind,
            "region": self.region,
            "city": self.city,
            "drill": self.drill,
        });
        if plan.adults_in_raise {
            raise["trusted_adults"] = registration["trusted_adults"].clone();
        }
        let signal = match self
            .ingest(
                &mut rng,
                Method::POST,
                "/ingest/v1/signals",
                &format!("sim-{tag}-{number}-raise"),
                &raise,
            )
            .await
        {
            Ok(answer) => match answer.body["signal"].as_str() {
                Some(id) => id.to_owned(),
                None => {
                    self.failed(
                        &plan,
                        "raise",
                        &CallError::Status(answer.status, format!("no signal id: {}", answer.text)),
                    );
                    return Lived::Failed;
                }
            },
            Err(error) => {
                self.failed(&plan, "raise", &error);
                return Lived::Failed;
            }
        };
        self.stats.raised.fetch_add(1, Ordering::Relaxed);

        let operated = self.operator.is_some();
        for (index, step) in plan.steps.iter().enumerate() {
            if step.action.is_operator() && !operated {
                return Lived::LeftOpen;
            }
            let scaled = step.offset.div_f64(self.scale);
            tokio::time::sleep_until(raised + scaled.saturating_sub(plan.relay)).await;
            // The step's moment on the wall clock: never after now.
            let at = |offset: Duration| {
                rfc3339((pressed + offset.div_f64(self.scale)).min(OffsetDateTime::now_utc()))
            };
            let key = format!("sim-{tag}-{number}-{index}-{}", step.action.name());
            let base = format!("/ingest/v1/signals/{signal}");
            let api = format!("/api/v1/signals/{signal}");
            let result = match &step.action {
                Action::Location(place) => {
                    let body = json!({
                        "at": at(step.offset),
                        "latitude": place.latitude,
                        "longitude": place.longitude,
                        "accuracy_m": place.accuracy_m,
                    });
                    self.ingest(
                        &mut rng,
                        Method::POST,
                        &format!("{base}/location"),
                        &key,
                        &body,
                    )
                    .await
                }
                Action::AdultAcknowledge { adult } => {
                    let body = json!({"adult": adult, "at": at(step.offset)});
                    let path = format!("{base}/acknowledgements");
                    self.ingest(&mut rng, Method::POST, &path, &key, &body)
                        .await
                }
                Action::CircleResolve { adult, on_scene } => {
                    let body = json!({
                        "adult": adult,
                        "at": at(step.offset),
                        "on_scene_at": at(*on_scene),
                    });
                    let path = format!("{base}/resolution");
                    self.ingest(&mut rng, Method::POST, &path, &key, &body)
                        .await
                }
                Action::Cancel => {
                    let body = json!({"at": at(step.offset)});
                    self.ingest(
                        &mut rng,
                        Method::POST,
                        &format!("{base}/cancel"),
                        &key,
                        &body,
                    )
                    .await
                }
                Action::OperatorAcknowledge => {
                    let body = json!({"at": at(step.offset), "command_id": command_id(&key)});
                    self.operator_call(&mut rng, &format!("{api}/acknowledge"), &body)
                        .await
                }
                Action::Dispatch { responder } => {
                    let body = json!({
                        "responder": responder,
                        "note": "симуляция",
                        "at": at(step.offset),
                        "command_id": command_id(&key),
                    });
                    self.operator_call(&mut rng, &format!("{api}/dispatch"), &body)
                        .await
                }
                Action::EnRoute { responder } => {
                    let body = json!({
                        "responder": responder,
                        "at": at(step.offset),
                        "command_id": command_id(&key),
                    });
                    self.operator_call(&mut rng, &format!("{api}/en-route"), &body)
                        .await
                }
                Action::OnScene { responder } => {
                    let body = json!({
                        "responder": responder,
                        "at": at(step.offset),
                        "command_id": command_id(&key),
                    });
                    self.operator_call(&mut rng, &format!("{api}/on-scene"), &body)
                        .await
                }
                Action::Resolve { outcome } => {
                    let body = json!({
                        "outcome": outcome,
                        "note": "симуляция",
                        "at": at(step.offset),
                        "command_id": command_id(&key),
                    });
                    self.operator_call(&mut rng, &format!("{api}/resolve"), &body)
                        .await
                }
            };
            if let Err(error) = result {
                self.failed(&plan, step.action.name(), &error);
                return Lived::Failed;
            }
        }
        match plan.ending {
            EndingKind::Circle => Lived::Circle,
            EndingKind::Cancelled => Lived::Cancelled,
            EndingKind::Operator => Lived::Operator,
        }
    }
}

/// How a lifecycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lived {
    Circle,
    Cancelled,
    Operator,
    LeftOpen,
    Failed,
}

/// The command id of an operator step: the same on every retry of it.
fn command_id(key: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("opora-sim:{key}").as_bytes(),
    )
}

fn between<'a>(body: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = body.find(start)? + start.len();
    let to = body[from..].find(end)? + from;
    Some(&body[from..to])
}

/// Runs the simulation (see the module's documentation) and reports what it did.
pub async fn signals(args: SimulateArgs) -> Result<SimulateReport> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 10_000.0) {
        bail!("--rate: between 0 and 10000 signals per second");
    }
    if !(args.duration.is_finite() && args.duration >= 0.0) {
        bail!("--duration: seconds, 0 or more");
    }
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        bail!("--time-scale: a positive number");
    }
    if args.key.trim().is_empty() {
        bail!("--key (or OPORA_INGEST_KEY): the ingestion client's key");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        .build()
        .context("HTTP client")?;
    let operator = match (&args.operator, &args.password) {
        (Some(login), Some(password)) => Some(Operator {
            login: login.clone(),
            password: password.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("HTTP client")?,
            session: Mutex::new(Session::default()),
            relogin: tokio::sync::Mutex::new(0),
        }),
        (None, None) => None,
        _ => bail!("--operator and --password go together"),
    };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let sim = Arc::new(Sim {
        http,
        base,
        key: args.key.clone(),
        region: args.region.clone(),
        city: args.city.clone(),
        drill: args.drill,
        scale: args.time_scale,
        tag: tag.clone(),
        operator,
        stats: Stats::default(),
    });
    if let Some(operator) = &sim.operator {
        sim.login(operator, 0)
            .await
            .context("signing the operator in")?;
    }
    eprintln!(
        "simulate signals: {} per second for {} s against {} (run tag {tag}, seed {}, time scale {})",
        args.rate, args.duration, sim.base, args.seed, args.time_scale
    );

    let centre = city_centre(&args.city);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let raising_until = start + Duration::from_secs_f64(args.duration);
    let mut lifecycles = tokio::task::JoinSet::new();
    let mut outcomes: Vec<Lived> = Vec::new();
    let mut interrupted = false;
    let mut ticker = tokio::time::interval_at(start, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut progress = tokio::time::interval(Duration::from_secs(10));
    progress.tick().await;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut number = 0_u64;
    loop {
        let raising = Instant::now() < raising_until;
        if !raising && lifecycles.is_empty() {
            break;
        }
        tokio::select! {
            due = ticker.tick(), if raising => {
                if due >= raising_until {
                    continue;
                }
                let plan = plan(&mut rng, number, &tag, centre);
                number += 1;
                let sim = Arc::clone(&sim);
                lifecycles.spawn(async move { sim.live(plan, due).await });
            }
            _ = tokio::time::sleep_until(raising_until), if raising => {}
            Some(done) = lifecycles.join_next() => {
                match done {
                    Ok(lived) => outcomes.push(lived),
                    Err(error) => {
                        sim.stats.error("panic".to_owned(), format!("a lifecycle task failed: {error}"));
                        outcomes.push(Lived::Failed);
                    }
                }
            }
            _ = progress.tick() => {
                let s = &sim.stats;
                eprintln!(
                    "  {:>5.0} s: raised {}, lifecycles running {}, calls {}, retries {}, failed lifecycles {}",
                    start.elapsed().as_secs_f64(),
                    s.raised.load(Ordering::Relaxed),
                    lifecycles.len(),
                    s.calls.load(Ordering::Relaxed),
                    s.retries.load(Ordering::Relaxed),
                    outcomes.iter().filter(|o| **o == Lived::Failed).count(),
                );
            }
            _ = &mut ctrl_c => {
                interrupted = true;
                break;
            }
        }
    }
    let unfinished = lifecycles.len() as u64;
    lifecycles.abort_all();
    for lived in &outcomes {
        let counter = match lived {
            Lived::Circle => &sim.stats.circle,
            Lived::Cancelled => &sim.stats.cancelled,
            Lived::Operator => &sim.stats.operator,
            Lived::LeftOpen => &sim.stats.left_open,
            Lived::Failed => &sim.stats.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let s = &sim.stats;
    Ok(SimulateReport {
        seconds: start.elapsed().as_secs_f64(),
        run_tag: tag,
        children_registered: s.children.load(Ordering::Relaxed),
        signals_raised: s.raised.load(Ordering::Relaxed),
        resolved_by_circle: s.circle.load(Ordering::Relaxed),
        cancelled_by_child: s.cancelled.load(Ordering::Relaxed),
        resolved_by_operator: s.operator.load(Ordering::Relaxed),
        left_open: s.left_open.load(Ordering::Relaxed),
        lifecycles_failed: s.failed.load(Ordering::Relaxed),
        lifecycles_unfinished: unfinished,
        calls: s.calls.load(Ordering::Relaxed),
        retries: s.retries.load(Ordering::Relaxed),
        retries_by_reason: s
            .retry_reasons
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
        errors_by_status: s.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        error_samples: s.samples.lock().map(|e| e.clone()).unwrap_or_default(),
        operator_logins: s.logins.load(Ordering::Relaxed),
        interrupted,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice_follows_the_weights() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let n = 100_000;
        for _ in 0..n {
            *counts.entry(*weighted(&mut rng, KIND_WEIGHTS)).or_default() += 1;
        }
        for (kind, weight) in KIND_WEIGHTS {
            let share = f64::from(counts[kind]) / f64::from(n) * 100.0;
            assert!(
                (share - f64::from(*weight)).abs() < 0.7,
                "{kind}: {share:.2} % for a weight of {weight}"
            );
        }
        // Zero weights are never drawn; a single item always is.
        let items = [("never", 0), ("always", 5)];
        assert!((0..1000).all(|_| *weighted(&mut rng, &items) == "always"));
        assert_eq!(*weighted(&mut rng, &[("only", 1)]), "only");
    }

    #[test]
    fn the_same_seed_plans_the_same_lives() {
        let plans = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|n| plan(&mut rng, n, "t", city_centre("Омск")))
                .collect::<Vec<_>>()
        };
        assert_eq!(plans(1), plans(1));
        assert_ne!(plans(1), plans(2));
    }

    #[test]
    fn plans_are_in_order_and_within_the_brief() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut endings: HashMap<&str, u32> = HashMap::new();
        let n: u32 = 20_000;
        for number in 0..n {
            let p = plan(&mut rng, u64::from(number), "t", city_centre("Омск"));
            assert!((1..=3).contains(&p.adults.len()));
            assert!(p.adults.iter().all(|a| a.channels.contains(&"push")));
            assert!(p.steps.windows(2).all(|w| w[0].offset <= w[1].offset));
            let locations = p
                .steps
                .iter()
                .take_while(|s| matches!(s.action, Action::Location(_)))
                .count();
            assert!((1..=2).contains(&locations), "{p:?}");
            assert!(
                p.steps
                    .iter()
                    .filter(|s| matches!(s.action, Action::Location(_)))
                    .count()
                    == locations,
                "locations come before anything else: {p:?}"
            );
            let last = p.steps.last().unwrap();
            let seconds = |d: Duration| d.as_secs_f64();
            match p.ending {
                EndingKind::Circle => {
                    *endings.entry("circle").or_default() += 1;
                    let Action::CircleResolve { adult, on_scene } = &last.action else {
                        panic!("a circle plan ends with the resolution: {p:?}");
                    };
                    assert!((60.0..=240.0).contains(&seconds(*on_scene)), "{p:?}");
                    assert!(*on_scene < last.offset);
                    let acknowledged = p
                        .steps
                        .iter()
                        .find(|s| matches!(&s.action, Action::AdultAcknowledge { adult: a } if a == adult))
                        .unwrap();
                    assert!(
                        (10.0..=60.0).contains(&seconds(acknowledged.offset)),
                        "{p:?}"
                    );
                    assert!(acknowledged.offset <= *on_scene);
                    assert!(p.adults.iter().any(|a| &a.id == adult));
                }
                EndingKind::Cancelled => {
                    *endings.entry("cancelled").or_default() += 1;
                    assert_eq!(last.action, Action::Cancel);
                    assert_eq!(p.steps.len(), locations + 1);
                }
                EndingKind::Operator => {
                    *endings.entry("operator").or_default() += 1;
                    let actions: Vec<&str> = p.steps[locations..]
                        .iter()
                        .map(|s| s.action.name())
                        .collect();
                    assert_eq!(
                        actions,
                        ["acknowledge", "dispatch", "en-route", "on-scene", "resolve"]
                    );
                    let ack = &p.steps[locations];
                    assert!((5.0..=40.0).contains(&seconds(ack.offset)), "{p:?}");
                    let on_scene = &p.steps[locations + 3];
                    assert!(seconds(on_scene.offset) >= 90.0, "{p:?}");
                    let Action::Dispatch { responder } = p.steps[locations + 1].action else {
                        panic!("dispatch expected");
                    };
                    let expected = match p.kind {
                        "threat" => "police",
                        "health" | "accident" => "medics",
                        _ => "volunteer",
                    };
                    assert_eq!(responder, expected);
                }
            }
            // Within about 8 km of the centre.
            let (lat, lon) = city_centre("Омск");
            assert!((p.place.latitude - lat).abs() < 0.08);
            assert!((p.place.longitude - lon).abs() < 0.13);
        }
        let share = |k: &str| f64::from(endings[k]) / f64::from(n) * 100.0;
        assert!((share("circle") - 79.0).abs() < 1.5, "{}", share("circle"));
        assert!(
            (share("cancelled") - 4.0).abs() < 0.7,
            "{}",
            share("cancelled")
        );
        assert!(
            (share("operator") - 17.0).abs() < 1.2,
            "{}",
            share("operator")
        );
    }

    #[test]
    fn plans_with_seed_1_start_as_recorded() {
        // A change in how plans are drawn changes every simulation of a given seed: this
        // pins the first plans of seed 1, so that such a change is a deliberate one.
        let mut rng = StdRng::seed_from_u64(1);
        let first: Vec<(&str, EndingKind, usize, Vec<&str>)> = (0..3)
            .map(|n| {
                let p = plan(&mut rng, n, "t", city_centre("Омск"));
                let steps = p.steps.iter().map(|s| s.action.name()).collect();
                (p.kind, p.ending, p.adults.len(), steps)
            })
            .collect();
        assert_eq!(
            first,
            vec![
                (
                    "accident",
                    EndingKind::Cancelled,
                    3,
                    vec!["location", "cancel"]
                ),
                (
                    "panic",
                    EndingKind::Circle,
                    1,
                    vec!["location", "adult-acknowledge", "circle-resolve"]
                ),
                (
                    "bullying",
                    EndingKind::Cancelled,
                    3,
                    vec!["location", "location", "cancel"]
                ),
            ]
        );
        let again = plan(&mut StdRng::seed_from_u64(1), 0, "t", city_centre("Омск"));
        assert_eq!(again.adults[0].id, "sim-t-a0-0");
    }

    #[test]
    fn what_is_retried() {
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE, &Value::Null));
        assert!(retryable(StatusCode::BAD_GATEWAY, &Value::Null));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS, &Value::Null));
        assert!(retryable(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": "signal-conflict"})
        ));
        assert!(retryable(
            StatusCode::CONFLICT,
            &json!({"error": "conflict"})
        ));
        assert!(!retryable(
            StatusCode::CONFLICT,
            &json!({"error": "signal-error-Closed"})
        ));
        assert!(!retryable(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": "invalid-input"})
        ));
        assert!(!retryable(StatusCode::UNAUTHORIZED, &Value::Null));
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(1, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(2, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(20, 0.5), Duration::from_secs(5));
        assert!(backoff(1, 0.0) < backoff(1, 1.0));
    }

    #[test]
    fn cookies_are_kept_and_dropped() {
        let mut session = Session::default();
        let response = |cookies: &[&str]| {
            let mut builder = http_response();
            for c in cookies {
                builder = builder.header("set-cookie", *c);
            }
            reqwest::Response::from(builder.body(Vec::<u8>::new()).unwrap())
        };
        session.take_cookies(&response(&[
            "opora_session=abc; Path=/; HttpOnly",
            "lang=ru; Path=/",
        ]));
        assert_eq!(session.cookies["opora_session"], "abc");
        session.take_cookies(&response(&["lang=; Max-Age=0"]));
        assert!(!session.cookies.contains_key("lang"));
        assert_eq!(session.cookie_header(), "opora_session=abc");
    }

    fn http_response() -> axum::http::response::Builder {
        axum::http::Response::builder().status(200)
    }

    #[test]
    fn times_are_rfc3339() {
        let at = time::macros::datetime!(2026-11-22 10:00:00 UTC);
        assert_eq!(rfc3339(at), "2026-11-22T10:00:00Z");
    }
}
