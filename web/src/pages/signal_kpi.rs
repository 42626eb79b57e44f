//! «Заступник»: response times of the emergency signals (`/zastupnik/signaly/kpi`), as a
//! page with two server-drawn charts, an XLSX file and the JSON API
//! (`/api/v1/signals/kpi`, `crate::api::signal_kpi`).
//!
//! Every time is counted from the press of the button (`pressed_at`):
//! - notification latency: the first notification delivered to a trusted adult;
//! - time to acknowledgement: an operator took the signal;
//! - time to first responder en route;
//! - total time to help: the first responder (or trusted adult) on scene.
//!
//! For each: how many signals reached the step, the median and the 90th percentile
//! (PostgreSQL's `percentile_cont`, linear interpolation) and the share within three
//! minutes. Overall, by region, by city, by kind and by the hour of the press on the
//! region's clock; and how signals ended. Drills are left out of everything. The period is
//! of the region's local dates of the press (the last 365 days by default).
//!
//! Scope: federal analysts and administrators read every region; a region's ministry
//! analyst reads its region; a signal operator the regions it works. A region outside the
//! scope answers 404, like one that does not exist.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use fluent_templates::fluent_bundle::FluentValue;
use opora_domain::access::Role;
use opora_domain::signal::{SignalKind, SignalOutcome};
use opora_domain::{format_date, parse_date};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::{Date, Duration};
use utoipa::ToSchema;

use crate::auth::guard::{urlencoding, Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::export;
use crate::i18n::{today_in, Lang, Tr};
use crate::pages::signals::SignalScope;
use crate::pages::{Outcome, Refusal};
use crate::AppState;

/// Who reads the KPIs: the ministry's analysts, the signal operators, the administrator.
pub const READERS: &[Role] = &[
    Role::MinistryAnalyst,
    Role::SignalOperator,
    Role::Administrator,
];
/// The target: help within three minutes of the press.
pub const TARGET_SECONDS: f64 = 180.0;
/// The default period: the last 365 days (today included).
const DEFAULT_DAYS: i64 = 365;
/// The zone of the default dates when no single region is asked for.
const DEFAULT_ZONE: &str = "Europe/Moscow";

pub fn routes() -> Routes {
    Routes::new()
        .get("/zastupnik/signaly/kpi", Rule::Roles(READERS), kpi_page)
        .get(
            "/zastupnik/signaly/kpi.xlsx",
            Rule::Roles(READERS),
            kpi_xlsx,
        )
}

/// A region in the viewer's scope (`SignalScope`, the console's).
struct RegionRow {
    code: String,
    name: String,
    time_zone: String,
}

/// The regions in scope (only `asked`, when given), by name.
async fn regions_in(
    state: &AppState,
    scope: &SignalScope,
    asked: Option<&str>,
) -> AppResult<Vec<RegionRow>> {
    let rows = sqlx::query(
        "SELECT code, name, time_zone FROM reference.region WHERE ($1 OR code = ANY($2)) \
           AND ($3::text IS NULL OR code = $3) ORDER BY name",
    )
    .bind(scope.all)
    .bind(&scope.regions)
    .bind(asked)
    .fetch_all(state.log.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RegionRow {
                code: r.try_get("code")?,
                name: r.try_get("name")?,
                time_zone: r.try_get("time_zone")?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The figures

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KpiQuery {
    /// A region's code; without it, every region in the viewer's scope.
    #[serde(default)]
    pub region: Option<String>,
    /// The first day of the period, a local date of the region (`YYYY-MM-DD` or
    /// `ДД.ММ.ГГГГ`); 364 days before `to` by default.
    #[serde(default)]
    pub from: Option<String>,
    /// The last day of the period (included); up to now by default.
    #[serde(default)]
    pub to: Option<String>,
}

/// One step of the response in one group of signals. Seconds from the press.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SignalKpiStep {
    /// Signals of the group that reached this step.
    pub count: i64,
    /// The median, linearly interpolated; `null` when no signal reached the step.
    pub median_seconds: Option<f64>,
    /// The 90th percentile, linearly interpolated.
    pub p90_seconds: Option<f64>,
    /// Signals that reached the step within 180 seconds (inclusive).
    pub within_3_min: i64,
    /// `within_3_min / count` (0–1); `null` when `count` is 0.
    pub share_within_3_min: Option<f64>,
}

/// One group of signals: the whole, a region, a city, a kind or an hour of the day.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SignalKpiRow {
    /// The region's code, the city's name (empty: not given), the kind's code or the
    /// hour (`0`–`23`); empty for the whole.
    pub key: String,
    pub label: String,
    /// Cities: the region's code and name (a city is counted within its region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_name: Option<String>,
    /// Signals in the group (drills excluded).
    pub signals: i64,
    /// Cities: children and adults connected to the app by the latest weekly report of the
    /// municipality of that name in the region (none when it has not reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<i64>,
    /// Cities: signals per 1,000 connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_thousand_connected: Option<f64>,
    /// First notification delivered to a trusted adult.
    pub notification: SignalKpiStep,
    /// An operator took the signal.
    pub acknowledgement: SignalKpiStep,
    /// The first responder set off.
    pub en_route: SignalKpiStep,
    /// The first responder (or trusted adult) reached the child: the total time to help.
    pub on_scene: SignalKpiStep,
}

impl SignalKpiRow {
    fn steps(&self) -> [&SignalKpiStep; 4] {
        [
            &self.notification,
            &self.acknowledgement,
            &self.en_route,
            &self.on_scene,
        ]
    }
}

/// How many signals ended one way.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalKpiOutcome {
    /// The outcome's code (`trusted_circle`, `operators`, `emergency_services`,
    /// `false_alarm`, `cancelled`).
    pub code: String,
    pub label: String,
    pub count: i64,
    /// Of all resolved signals (0–1); `null` when none is resolved.
    pub share: Option<f64>,
}

/// The response-time KPIs of a period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalKpi {
    /// The region asked for; `null`: every region in the viewer's scope.
    pub region: Option<String>,
    pub title: String,
    /// The period: local dates of the press in each signal's region.
    #[serde(with = "crate::api::date")]
    pub from: time::Date,
    #[serde(with = "crate::api::date")]
    pub to: time::Date,
    /// Drills in the period, left out of every figure.
    pub drills_excluded: i64,
    pub total: SignalKpiRow,
    pub by_region: Vec<SignalKpiRow>,
    /// Cities within their regions, most signals first; `key` empty: city not given.
    pub by_city: Vec<SignalKpiRow>,
    pub by_kind: Vec<SignalKpiRow>,
    /// Hours 0–23 of the press on the region's clock, every hour present.
    pub by_hour: Vec<SignalKpiRow>,
    /// Every outcome, with its count among the resolved signals.
    pub by_outcome: Vec<SignalKpiOutcome>,
    pub resolved: i64,
    pub unresolved: i64,
    /// Resolved by the trusted circle (outcome `trusted_circle`).
    pub resolved_by_circle: i64,
    /// `resolved_by_circle / resolved` (0–1).
    pub share_resolved_by_circle: Option<f64>,
}

/// The period asked for: `to_bound` is `None` when no end was given (up to now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    from: Date,
    to: Date,
    to_bound: Option<Date>,
}

fn date_param(tr: Tr, raw: Option<&str>) -> Result<Option<Date>, Refusal> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => parse_date(raw).map(Some).ok_or_else(|| Refusal {
            code: "kpi-bad-date".to_owned(),
            message: tr.arg("kpi-bad-date", raw),
        }),
    }
}

fn period(tr: Tr, query: &KpiQuery, today: Date) -> Result<Period, Refusal> {
    let to_bound = date_param(tr, query.to.as_deref())?;
    let to = to_bound.unwrap_or(today);
    let from = match date_param(tr, query.from.as_deref())? {
        Some(from) => from,
        None => to
            .checked_sub(Duration::days(DEFAULT_DAYS - 1))
            .unwrap_or(Date::MIN),
    };
    if from > to {
        return Err(Refusal::new(tr, "kpi-bad-period"));
    }
    Ok(Period { from, to, to_bound })
}

/// The signals of the period in the regions: `$1` codes, `$2`/`$3` the first and last
/// local dates, `$4`/`$5` instants around them (a day either side: every zone of Russia is
/// within it) so that the index on the time of the press is used.
const SIGNALS_OF_PERIOD: &str =
    "FROM signals.signal s JOIN reference.region r ON r.code = s.region_code \
     WHERE s.region_code = ANY($1) \
       AND s.pressed_at >= $4 AND ($5::timestamptz IS NULL OR s.pressed_at < $5) \
       AND (s.pressed_at AT TIME ZONE r.time_zone)::date >= $2 \
       AND ($3::date IS NULL OR (s.pressed_at AT TIME ZONE r.time_zone)::date <= $3)";

fn kpi_sql() -> String {
    let step = |name: &str| {
        format!(
            "count(k.{name}) AS {name}_count, \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY k.{name}) AS {name}_median, \
             percentile_cont(0.9) WITHIN GROUP (ORDER BY k.{name}) AS {name}_p90, \
             count(*) FILTER (WHERE k.{name} <= {TARGET_SECONDS}) AS {name}_within"
        )
    };
    format!(
        "WITH k AS ( \
           SELECT s.region_code, r.name AS region_name, s.city, s.kind, s.local_hour, \
                  extract(epoch FROM s.first_delivered_at - s.pressed_at)::float8 AS notification, \
                  extract(epoch FROM s.acknowledged_at - s.pressed_at)::float8 AS acknowledgement, \
                  extract(epoch FROM s.first_en_route_at - s.pressed_at)::float8 AS en_route, \
                  extract(epoch FROM s.first_on_scene_at - s.pressed_at)::float8 AS on_scene \
           {SIGNALS_OF_PERIOD} AND NOT s.drill) \
         SELECT CASE WHEN grouping(k.city) = 0 THEN 'city' \
                     WHEN grouping(k.region_code) = 0 THEN 'region' \
                     WHEN grouping(k.kind) = 0 THEN 'kind' \
                     WHEN grouping(k.local_hour) = 0 THEN 'hour' \
                     ELSE 'total' END AS dimension, \
                k.region_code, k.region_name, k.city, k.kind, k.local_hour, \
                count(*) AS signals, {}, {}, {}, {} \
           FROM k \
          GROUP BY GROUPING SETS ((), (k.region_code, k.region_name), \
                (k.region_code, k.region_name, k.city), (k.kind), (k.local_hour))",
        step("notification"),
        step("acknowledgement"),
        step("en_route"),
        step("on_scene"),
    )
}

fn step_of(row: &sqlx::postgres::PgRow, name: &str) -> AppResult<SignalKpiStep> {
    let count: i64 = row.try_get(format!("{name}_count").as_str())?;
    let within: i64 = row.try_get(format!("{name}_within").as_str())?;
    Ok(SignalKpiStep {
        count,
        median_seconds: row.try_get(format!("{name}_median").as_str())?,
        p90_seconds: row.try_get(format!("{name}_p90").as_str())?,
        within_3_min: within,
        share_within_3_min: share(within, count),
    })
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn kind_label(code: &str) -> String {
    SignalKind::parse(code).map_or_else(|_| code.to_owned(), |k| k.label_ru().to_owned())
}

fn hour_label(hour: i16) -> String {
    format!("{hour:02}:00–{hour:02}:59")
}

/// The KPIs the viewer may read, for `query`. A region out of scope (or unknown) is
/// `AppError::NotFound`; a date that cannot be read is a refusal.
pub(crate) async fn figures(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    query: &KpiQuery,
) -> Outcome<SignalKpi> {
    let scope = SignalScope::of(viewer);
    let asked = query
        .region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let regions = regions_in(state, &scope, asked).await?;
    if asked.is_some() && regions.is_empty() {
        return Err(AppError::NotFound);
    }
    let zone = match (asked, regions.first()) {
        (Some(_), Some(region)) => region.time_zone.as_str(),
        _ => DEFAULT_ZONE,
    };
    let period = match period(tr, query, today_in(zone)) {
        Ok(period) => period,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let codes: Vec<String> = regions.iter().map(|r| r.code.clone()).collect();
    let after = period
        .from
        .previous_day()
        .unwrap_or(period.from)
        .midnight()
        .assume_utc();
    let before = period
        .to_bound
        .and_then(Date::next_day)
        .and_then(Date::next_day)
        .map(|d| d.midnight().assume_utc());
    let sql = kpi_sql();
    let rows = sqlx::query(&sql)
        .bind(&codes)
        .bind(period.from)
        .bind(period.to_bound)
        .bind(after)
        .bind(before)
        .fetch_all(state.log.pool())
        .await?;
    let mut total = SignalKpiRow {
        label: tr.t("kpi-total"),
        ..SignalKpiRow::default()
    };
    let mut by_region = Vec::new();
    let mut by_city = Vec::new();
    let mut by_kind = Vec::new();
    let mut hours: BTreeMap<i16, SignalKpiRow> = BTreeMap::new();
    for row in &rows {
        let dimension: String = row.try_get("dimension")?;
        let mut line = SignalKpiRow {
            signals: row.try_get("signals")?,
            notification: step_of(row, "notification")?,
            acknowledgement: step_of(row, "acknowledgement")?,
            en_route: step_of(row, "en_route")?,
            on_scene: step_of(row, "on_scene")?,
            ..SignalKpiRow::default()
        };
        match dimension.as_str() {
            "region" => {
                line.key = row.try_get("region_code")?;
                line.label = row.try_get("region_name")?;
                by_region.push(line);
            }
            "city" => {
                let city: Option<String> = row.try_get("city")?;
                line.label = city.clone().unwrap_or_else(|| tr.t("kpi-city-unknown"));
                line.key = city.unwrap_or_default();
                line.region = Some(row.try_get("region_code")?);
                line.region_name = Some(row.try_get("region_name")?);
                by_city.push(line);
            }
            "kind" => {
                let code: String = row.try_get("kind")?;
                line.label = kind_label(&code);
                line.key = code;
                by_kind.push(line);
            }
            "hour" => {
                let hour: i16 = row.try_get("local_hour")?;
                line.key = hour.to_string();
                line.label = hour_label(hour);
                hours.insert(hour, line);
            }
            _ => {
                line.label = total.label.clone();
                total = line;
            }
        }
    }
    // Regions in the order of the list (by name); cities with the most signals first
    // (those without a city last); kinds in the domain's order.
    let order: Vec<&str> = regions.iter().map(|r| r.code.as_str()).collect();
    by_region.sort_by_key(|r| order.iter().position(|c| *c == r.key));
    by_city.sort_by(|a, b| {
        a.key
            .is_empty()
            .cmp(&b.key.is_empty())
            .then(b.signals.cmp(&a.signals))
            .then(a.region_name.cmp(&b.region_name))
            .then(a.label.cmp(&b.label))
    });
    for city in by_city.iter_mut().filter(|c| !c.key.is_empty()) {
        let connected: Option<i64> = sqlx::query_scalar(
            "SELECT (r.children + r.adults)::bigint FROM reference.municipality m \
               JOIN weekly.report r ON r.municipality = m.id AND r.children IS NOT NULL \
              WHERE m.region_code = $1 AND m.name = $2 ORDER BY r.friday DESC LIMIT 1",
        )
        .bind(city.region.as_deref().unwrap_or_default())
        .bind(&city.key)
        .fetch_optional(state.log.pool())
        .await?;
        city.connected = connected;
        city.per_thousand_connected = connected
            .filter(|c| *c > 0)
            .map(|c| city.signals as f64 * 1000.0 / c as f64);
    }
    by_kind.sort_by_key(|r| {
        SignalKind::ALL
            .iter()
            .position(|(_, code, _)| *code == r.key)
            .unwrap_or(usize::MAX)
    });
    let by_hour = (0..24_i16)
        .map(|hour| {
            hours.remove(&hour).unwrap_or_else(|| SignalKpiRow {
                key: hour.to_string(),
                label: hour_label(hour),
                ..SignalKpiRow::default()
            })
        })
        .collect();

    let outcome_sql = format!(
        "SELECT s.drill, s.outcome, count(*) AS signals {SIGNALS_OF_PERIOD} \
          GROUP BY s.drill, s.outcome"
    );
    let outcome_rows = sqlx::query(&outcome_sql)
        .bind(&codes)
        .bind(period.from)
        .bind(period.to_bound)
        .bind(after)
        .bind(before)
        .fetch_all(state.log.pool())
        .await?;
    let mut drills = 0_i64;
    let mut unresolved = 0_i64;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for row in &outcome_rows {
        let drill: bool = row.try_get("drill")?;
        let outcome: Option<String> = row.try_get("outcome")?;
        let signals: i64 = row.try_get("signals")?;
        match (drill, outcome) {
            (true, _) => drills += signals,
            (false, None) => unresolved += signals,
            (false, Some(code)) => *counts.entry(code).or_default() += signals,
        }
    }
    let resolved: i64 = counts.values().sum();
    let mut by_outcome: Vec<SignalKpiOutcome> = SignalOutcome::ALL
        .iter()
        .map(|(_, code, label)| {
            let count = counts.remove(*code).unwrap_or(0);
            SignalKpiOutcome {
                code: (*code).to_owned(),
                label: (*label).to_owned(),
                count,
                share: share(count, resolved),
            }
        })
        .collect();
    // An outcome the domain no longer knows still counts.
    by_outcome.extend(counts.into_iter().map(|(code, count)| SignalKpiOutcome {
        label: code.clone(),
        code,
        count,
        share: share(count, resolved),
    }));
    let resolved_by_circle = by_outcome
        .iter()
        .find(|o| o.code == SignalOutcome::TrustedCircle.code())
        .map_or(0, |o| o.count);

    let title = match (asked, regions.first()) {
        (Some(_), Some(region)) => region.name.clone(),
        _ if scope.all => tr.t("kpi-federal"),
        (_, Some(region)) if regions.len() == 1 => region.name.clone(),
        _ => tr.t("kpi-my-regions"),
    };
    Ok(Ok(SignalKpi {
        region: asked.map(str::to_owned),
        title,
        from: period.from,
        to: period.to,
        drills_excluded: drills,
        total,
        by_region,
        by_city,
        by_kind,
        by_hour,
        by_outcome,
        resolved,
        unresolved,
        resolved_by_circle,
        share_resolved_by_circle: share(resolved_by_circle, resolved),
    }))
}

// ---------------------------------------------------------------------------------------
// Texts

/// A time in seconds as people read it: `45 с`, `1 мин 05 с`, `1 ч 02 мин 05 с` (whole
/// seconds); `—` when there is none.
pub fn duration_text(tr: Tr, seconds: Option<f64>) -> String {
    let Some(seconds) = seconds.filter(|s| s.is_finite()) else {
        return "—".to_owned();
    };
    let total = seconds.round() as i64;
    let sign = if total < 0 { "−" } else { "" };
    let abs = total.unsigned_abs();
    let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
    let text = if h > 0 {
        tr.with(
            "kpi-duration-hms",
            &[
                ("h", FluentValue::from(h.to_string())),
                ("m", FluentValue::from(format!("{m:02}"))),
                ("s", FluentValue::from(format!("{s:02}"))),
            ],
        )
    } else if m > 0 {
        tr.with(
            "kpi-duration-ms",
            &[
                ("m", FluentValue::from(m.to_string())),
                ("s", FluentValue::from(format!("{s:02}"))),
            ],
        )
    } else {
        tr.with("kpi-duration-s", &[("s", FluentValue::from(s.to_string()))])
    };
    format!("{sign}{text}")
}

/// A round time for a chart's axis: `30 с`, `10 мин`, `1 ч 30 мин` (no zero parts).
fn axis_text(tr: Tr, seconds: f64) -> String {
    let total = seconds.round().max(0.0) as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let arg = |name: &'static str, value: u64| (name, FluentValue::from(value.to_string()));
    match (h, m, s) {
        (0, 0, 0) => "0".to_owned(),
        (0, 0, s) => tr.with("kpi-duration-s", &[arg("s", s)]),
        (0, m, 0) => tr.with("kpi-duration-m", &[arg("m", m)]),
        (h, 0, 0) => tr.with("kpi-duration-h", &[arg("h", h)]),
        (h, m, 0) => tr.with("kpi-duration-hm", &[arg("h", h), arg("m", m)]),
        _ => duration_text(tr, Some(seconds)),
    }
}

/// A label of the domain's closed lists (Russian, lower case) as a table's row header.
fn capitalised(label: &str) -> String {
    let mut chars = label.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A share (0–1) as a percentage with one decimal: `95,6 %` (`95.6%` in English).
pub fn percent_text(tr: Tr, share: Option<f64>) -> String {
    let Some(share) = share.filter(|s| s.is_finite()) else {
        return "—".to_owned();
    };
    let value = format!("{:.1}", share * 100.0);
    match tr.lang {
        Lang::En => format!("{value}%"),
        Lang::Ru => format!("{}\u{a0}%", value.replace('.', ",")),
    }
}

/// A count with thin spaces between thousands.
fn count_text(value: i64) -> String {
    crate::pages::weekly::thousands(value)
}

fn period_text(tr: Tr, kpi: &SignalKpi) -> String {
    tr.with(
        "kpi-period-text",
        &[
            ("from", FluentValue::from(format_date(kpi.from))),
            ("to", FluentValue::from(format_date(kpi.to))),
        ],
    )
}

// ---------------------------------------------------------------------------------------
// Charts, drawn on the server

#[derive(Debug, Clone)]
pub struct SvgRect {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    pub fill: &'static str,
    pub title: String,
}

#[derive(Debug, Clone)]
pub struct SvgLine {
    pub x1: i64,
    pub y1: i64,
    pub x2: i64,
    pub y2: i64,
    pub stroke: &'static str,
    /// `stroke-dasharray`, empty for a solid line.
    pub dash: &'static str,
}

#[derive(Debug, Clone)]
pub struct SvgText {
    pub x: i64,
    pub y: i64,
    /// `start`, `middle` or `end`.
    pub anchor: &'static str,
    pub text: String,
}

/// A chart as shapes on a 640-wide canvas, with its accessible title and description.
#[derive(Debug, Clone)]
pub struct Svg {
    pub id: &'static str,
    pub height: i64,
    pub title: String,
    pub description: String,
    pub lines: Vec<SvgLine>,
    pub rects: Vec<SvgRect>,
    pub texts: Vec<SvgText>,
}

const MEDIAN_FILL: &str = "#0b5cad";
const P90_FILL: &str = "#b35900";
const TARGET_STROKE: &str = "#1b6e3a";
const GRID_STROKE: &str = "#d0d7de";
const PLOT_LEFT: i64 = 70;
const PLOT_WIDTH: i64 = 560;
const PLOT_TOP: i64 = 12;
const PLOT_HEIGHT: i64 = 200;

/// A round top for a time axis (seconds) that holds `max`: its quarters read well.
fn time_axis_top(max: f64) -> f64 {
    const TOPS: [f64; 16] = [
        60.0, 120.0, 240.0, 480.0, 600.0, 1200.0, 1800.0, 2400.0, 3600.0, 7200.0, 10800.0, 14400.0,
        21600.0, 28800.0, 43200.0, 86400.0,
    ];
    let mut top = TOPS.iter().copied().find(|t| *t >= max).unwrap_or(86400.0);
    while top < max && top.is_finite() {
        top *= 2.0;
    }
    top
}

/// Median and 90th percentile of the time to help by hour of the day: pairs of bars.
pub fn hours_chart(tr: Tr, kpi: &SignalKpi) -> Svg {
    let values = |r: &SignalKpiRow| {
        (
            r.on_scene.median_seconds.unwrap_or(0.0).max(0.0),
            r.on_scene.p90_seconds.unwrap_or(0.0).max(0.0),
        )
    };
    let max = kpi
        .by_hour
        .iter()
        .map(|r| values(r).1.max(values(r).0))
        .fold(TARGET_SECONDS, f64::max);
    let top = time_axis_top(max);
    let y = |v: f64| PLOT_TOP + PLOT_HEIGHT - (v / top * PLOT_HEIGHT as f64).round() as i64;
    let slot = |h: i64| PLOT_LEFT + PLOT_WIDTH * h / 24;
    let mut lines = Vec::new();
    let mut texts = Vec::new();
    let mut rects = Vec::new();
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        lines.push(SvgLine {
            x1: PLOT_LEFT,
            y1: y(v),
            x2: PLOT_LEFT + PLOT_WIDTH,
            y2: y(v),
            stroke: GRID_STROKE,
            dash: "",
        });
        texts.push(SvgText {
            x: PLOT_LEFT - 6,
            y: y(v) + 4,
            anchor: "end",
            text: axis_text(tr, v),
        });
    }
    let median_label = tr.t("kpi-median");
    let p90_label = tr.t("kpi-p90");
    for (h, row) in (0_i64..).zip(&kpi.by_hour) {
        let x = slot(h);
        texts.push(SvgText {
            x: x + PLOT_WIDTH / 48,
            y: PLOT_TOP + PLOT_HEIGHT + 16,
            anchor: "middle",
            text: h.to_string(),
        });
        if row.on_scene.count == 0 {
            continue;
        }
        let (median, p90) = values(row);
        for (offset, value, fill, label, exact) in [
            (
                3,
                median,
                MEDIAN_FILL,
                &median_label,
                row.on_scene.median_seconds,
            ),
            (12, p90, P90_FILL, &p90_label, row.on_scene.p90_seconds),
        ] {
            rects.push(SvgRect {
                x: x + offset,
                y: y(value),
                width: 8,
                height: PLOT_TOP + PLOT_HEIGHT - y(value),
                fill,
                title: format!("{}: {label} {}", row.label, duration_text(tr, exact)),
            });
        }
    }
    lines.push(SvgLine {
        x1: PLOT_LEFT,
        y1: y(TARGET_SECONDS),
        x2: PLOT_LEFT + PLOT_WIDTH,
        y2: y(TARGET_SECONDS),
        stroke: TARGET_STROKE,
        dash: "6 3",
    });
    texts.push(SvgText {
        x: PLOT_LEFT + PLOT_WIDTH / 2,
        y: PLOT_TOP + PLOT_HEIGHT + 34,
        anchor: "middle",
        text: tr.t("kpi-chart-hours-axis"),
    });
    // The legend.
    let legend_y = PLOT_TOP + PLOT_HEIGHT + 46;
    for (x, fill, text) in [
        (PLOT_LEFT, MEDIAN_FILL, median_label.clone()),
        (PLOT_LEFT + 190, P90_FILL, p90_label.clone()),
    ] {
        rects.push(SvgRect {
            x,
            y: legend_y,
            width: 12,
            height: 12,
            fill,
            title: String::new(),
        });
        texts.push(SvgText {
            x: x + 18,
            y: legend_y + 11,
            anchor: "start",
            text,
        });
    }
    lines.push(SvgLine {
        x1: PLOT_LEFT + 380,
        y1: legend_y + 6,
        x2: PLOT_LEFT + 404,
        y2: legend_y + 6,
        stroke: TARGET_STROKE,
        dash: "6 3",
    });
    texts.push(SvgText {
        x: PLOT_LEFT + 410,
        y: legend_y + 11,
        anchor: "start",
        text: tr.t("kpi-target"),
    });

    let with_data: Vec<&SignalKpiRow> = kpi
        .by_hour
        .iter()
        .filter(|r| r.on_scene.count > 0)
        .collect();
    let by_median = |a: &&&SignalKpiRow, b: &&&SignalKpiRow| {
        a.on_scene
            .median_seconds
            .unwrap_or(0.0)
            .total_cmp(&b.on_scene.median_seconds.unwrap_or(0.0))
    };
    let description = match (
        with_data.iter().max_by(by_median),
        with_data.iter().min_by(by_median),
    ) {
        (Some(slow), Some(fast)) => tr.with(
            "kpi-chart-hours-desc",
            &[
                ("hours", FluentValue::from(with_data.len().to_string())),
                ("slow_hour", FluentValue::from(slow.key.clone())),
                (
                    "slow",
                    FluentValue::from(duration_text(tr, slow.on_scene.median_seconds)),
                ),
                ("fast_hour", FluentValue::from(fast.key.clone())),
                (
                    "fast",
                    FluentValue::from(duration_text(tr, fast.on_scene.median_seconds)),
                ),
            ],
        ),
        _ => tr.t("kpi-chart-hours-empty"),
    };
    Svg {
        id: "kpi-hours",
        height: legend_y + 20,
        title: tr.t("kpi-chart-hours-title"),
        description,
        lines,
        rects,
        texts,
    }
}

/// Signals by kind: horizontal bars.
pub fn kinds_chart(tr: Tr, kpi: &SignalKpi) -> Svg {
    const ROW: i64 = 28;
    const BAR_LEFT: i64 = 210;
    const BAR_WIDTH: i64 = 360;
    let max = kpi
        .by_kind
        .iter()
        .map(|k| k.signals)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut rects = Vec::new();
    let mut texts = Vec::new();
    for (i, kind) in (0_i64..).zip(&kpi.by_kind) {
        let top = 10 + ROW * i;
        let width = (kind.signals * BAR_WIDTH / max).max(1);
        texts.push(SvgText {
            x: BAR_LEFT - 8,
            y: top + 14,
            anchor: "end",
            text: capitalised(&kind.label),
        });
        rects.push(SvgRect {
            x: BAR_LEFT,
            y: top,
            width,
            height: 18,
            fill: MEDIAN_FILL,
            title: format!("{}: {}", capitalised(&kind.label), count_text(kind.signals)),
        });
        texts.push(SvgText {
            x: BAR_LEFT + width + 6,
            y: top + 14,
            anchor: "start",
            text: count_text(kind.signals),
        });
    }
    let list = kpi
        .by_kind
        .iter()
        .map(|k| format!("{} — {}", k.label, count_text(k.signals)))
        .collect::<Vec<_>>()
        .join("; ");
    Svg {
        id: "kpi-kinds",
        height: 20 + ROW * i64::try_from(kpi.by_kind.len()).unwrap_or(0).max(1),
        title: tr.t("kpi-chart-kinds-title"),
        description: tr.with(
            "kpi-chart-kinds-desc",
            &[
                ("total", FluentValue::from(count_text(kpi.total.signals))),
                ("list", FluentValue::from(list)),
            ],
        ),
        lines: Vec::new(),
        rects,
        texts,
    }
}

// ---------------------------------------------------------------------------------------
// The page

/// The four steps' message keys, in the order of the tables.
const STEP_KEYS: [&str; 4] = [
    "kpi-step-notification",
    "kpi-step-acknowledgement",
    "kpi-step-en-route",
    "kpi-step-on-scene",
];

pub struct StepCells {
    pub count: String,
    pub median: String,
    pub p90: String,
    pub share: String,
}

fn step_cells(tr: Tr, step: &SignalKpiStep) -> StepCells {
    StepCells {
        count: count_text(step.count),
        median: duration_text(tr, step.median_seconds),
        p90: duration_text(tr, step.p90_seconds),
        share: percent_text(tr, step.share_within_3_min),
    }
}

pub struct StepLine {
    pub label: String,
    pub cells: StepCells,
}

pub struct RowLine {
    pub label: String,
    pub region: String,
    pub signals: String,
    pub steps: Vec<StepCells>,
}

pub struct GroupTable {
    pub id: &'static str,
    pub heading: String,
    pub caption: String,
    pub first: String,
    pub with_region: bool,
    pub rows: Vec<RowLine>,
}

pub struct CountLine {
    pub label: String,
    pub count: String,
    pub share: String,
}

pub struct RegionChoice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "signals/kpi.html")]
struct KpiPage {
    c: Chrome,
    title: String,
    period: String,
    error: Option<String>,
    regions: Vec<RegionChoice>,
    from: String,
    to: String,
    query: String,
    empty: bool,
    signals: String,
    drills: String,
    overall: Vec<StepLine>,
    steps: Vec<String>,
    outcomes: Vec<CountLine>,
    unresolved: String,
    circle: String,
    /// The time to help by hour of the day, and the signals by kind.
    charts: Vec<Svg>,
    tables: Vec<GroupTable>,
    /// Cities with their connected users (from the weekly reports): city, region,
    /// connected, signals, signals per 1,000 connected.
    city_users: Vec<(String, String, String, String, String)>,
}

fn row_line(tr: Tr, row: &SignalKpiRow) -> RowLine {
    RowLine {
        label: capitalised(&row.label),
        region: row.region_name.clone().unwrap_or_default(),
        signals: count_text(row.signals),
        steps: row.steps().iter().map(|s| step_cells(tr, s)).collect(),
    }
}

fn group_tables(tr: Tr, kpi: &SignalKpi) -> Vec<GroupTable> {
    let table =
        |id: &'static str, key: &str, first: &str, with_region: bool, rows: &[SignalKpiRow]| {
            GroupTable {
                id,
                heading: tr.t(key),
                caption: format!("{}: {}, {}", tr.t(key), kpi.title, period_text(tr, kpi)),
                first: tr.t(first),
                with_region,
                rows: rows.iter().map(|r| row_line(tr, r)).collect(),
            }
        };
    let mut tables = Vec::new();
    if kpi.by_region.len() > 1 {
        tables.push(table(
            "kpi-by-region",
            "kpi-by-region",
            "kpi-region",
            false,
            &kpi.by_region,
        ));
    }
    tables.push(table(
        "kpi-by-city",
        "kpi-by-city",
        "kpi-city",
        kpi.by_region.len() > 1,
        &kpi.by_city,
    ));
    tables.push(table(
        "kpi-by-kind",
        "kpi-by-kind",
        "kpi-kind",
        false,
        &kpi.by_kind,
    ));
    tables.push(table(
        "kpi-by-hour",
        "kpi-by-hour",
        "kpi-hour",
        false,
        &kpi.by_hour,
    ));
    tables
}

/// The page's query string for the XLSX link: the same region and period.
fn query_string(kpi: &SignalKpi) -> String {
    format!(
        "region={}&from={}&to={}",
        urlencoding(kpi.region.as_deref().unwrap_or("")),
        kpi.from,
        kpi.to
    )
}

async fn kpi_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<KpiQuery>,
) -> AppResult<KpiPage> {
    let tr = c.tr;
    let (kpi, error) = match figures(&state, &viewer, tr, &query).await? {
        Ok(kpi) => (kpi, None),
        // A date that cannot be read: the default period, and the message.
        Err(refusal) => {
            let defaults = KpiQuery {
                region: query.region.clone(),
                ..KpiQuery::default()
            };
            match figures(&state, &viewer, tr, &defaults).await? {
                Ok(kpi) => (kpi, Some(refusal.message)),
                Err(again) => return Err(AppError::Unexpected(anyhow::anyhow!(again.message))),
            }
        }
    };
    let scope = SignalScope::of(&viewer);
    let regions = regions_in(&state, &scope, None)
        .await?
        .into_iter()
        .map(|r| RegionChoice {
            selected: kpi.region.as_deref() == Some(r.code.as_str()),
            value: r.code,
            label: r.name,
        })
        .collect();
    let overall = STEP_KEYS
        .iter()
        .zip(kpi.total.steps())
        .map(|(key, step)| StepLine {
            label: tr.t(key),
            cells: step_cells(tr, step),
        })
        .collect();
    let outcomes = kpi
        .by_outcome
        .iter()
        .map(|o| CountLine {
            label: capitalised(&o.label),
            count: count_text(o.count),
            share: percent_text(tr, o.share),
        })
        .collect();
    let circle = tr.with(
        "kpi-circle-share",
        &[
            (
                "share",
                FluentValue::from(percent_text(tr, kpi.share_resolved_by_circle)),
            ),
            (
                "circle",
                FluentValue::from(count_text(kpi.resolved_by_circle)),
            ),
            ("resolved", FluentValue::from(count_text(kpi.resolved))),
        ],
    );
    Ok(KpiPage {
        title: kpi.title.clone(),
        period: period_text(tr, &kpi),
        error,
        regions,
        from: kpi.from.to_string(),
        to: kpi.to.to_string(),
        query: query_string(&kpi),
        empty: kpi.total.signals == 0,
        signals: count_text(kpi.total.signals),
        drills: count_text(kpi.drills_excluded),
        overall,
        steps: STEP_KEYS.iter().map(|k| tr.t(k)).collect(),
        outcomes,
        unresolved: count_text(kpi.unresolved),
        circle,
        charts: vec![hours_chart(tr, &kpi), kinds_chart(tr, &kpi)],
        tables: group_tables(tr, &kpi),
        city_users: kpi
            .by_city
            .iter()
            .filter_map(|city| {
                let connected = city.connected?;
                Some((
                    city.label.clone(),
                    city.region_name.clone().unwrap_or_default(),
                    count_text(connected),
                    count_text(city.signals),
                    city.per_thousand_connected
                        .map(|v| format!("{v:.1}").replace('.', ","))
                        .unwrap_or_default(),
                ))
            })
            .collect(),
        c,
    })
}

// ---------------------------------------------------------------------------------------
// XLSX

/// A cell of the export: numbers stay numbers (shares with a percentage format).
enum Cell {
    Text(String),
    Number(f64),
    Share(f64),
    Empty,
}

fn number(value: Option<f64>) -> Cell {
    value
        .filter(|v| v.is_finite())
        .map_or(Cell::Empty, Cell::Number)
}

fn whole(value: i64) -> Cell {
    Cell::Number(value as f64)
}

fn share_cell(value: Option<f64>) -> Cell {
    value
        .filter(|v| v.is_finite())
        .map_or(Cell::Empty, Cell::Share)
}

struct Sheet {
    name: String,
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

fn workbook(sheets: Vec<Sheet>) -> AppResult<Vec<u8>> {
    use rust_xlsxwriter::{Format, Workbook, Worksheet};
    let fail = |e: rust_xlsxwriter::XlsxError| AppError::Unexpected(e.into());
    let bold = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.0%");
    let mut workbook = Workbook::new();
    for sheet in sheets {
        let mut worksheet = Worksheet::new();
        worksheet.set_name(&sheet.name).map_err(fail)?;
        for (col, title) in (0_u16..).zip(&sheet.headers) {
            worksheet
                .write_string_with_format(0, col, title, &bold)
                .map_err(fail)?;
        }
        for (row, cells) in (1_u32..).zip(&sheet.rows) {
            for (col, cell) in (0_u16..).zip(cells) {
                match cell {
                    Cell::Text(text) => worksheet.write_string(row, col, text).map(|_| ()),
                    Cell::Number(value) => worksheet.write_number(row, col, *value).map(|_| ()),
                    Cell::Share(value) => worksheet
                        .write_number_with_format(row, col, *value, &percent)
                        .map(|_| ()),
                    Cell::Empty => Ok(()),
                }
                .map_err(fail)?;
            }
        }
        worksheet.set_freeze_panes(1, 0).map_err(fail)?;
        worksheet.autofit();
        workbook.push_worksheet(worksheet);
    }
    workbook.save_to_buffer().map_err(fail)
}

fn times_sheet(tr: Tr, kpi: &SignalKpi) -> Sheet {
    let mut headers: Vec<String> = [
        "kpi-xlsx-grouping",
        "kpi-xlsx-group",
        "kpi-region",
        "kpi-signals",
    ]
    .iter()
    .map(|k| tr.t(k))
    .collect();
    for key in STEP_KEYS {
        let step = tr.t(key);
        for column in [
            "kpi-xlsx-count",
            "kpi-xlsx-median",
            "kpi-xlsx-p90",
            "kpi-xlsx-within",
        ] {
            headers.push(format!("{step}: {}", tr.t(column)));
        }
    }
    let mut rows = Vec::new();
    let mut add = |grouping: &str, row: &SignalKpiRow, region: String| {
        let mut cells = vec![
            Cell::Text(tr.t(grouping)),
            Cell::Text(row.label.clone()),
            Cell::Text(region),
            whole(row.signals),
        ];
        for step in row.steps() {
            cells.push(whole(step.count));
            cells.push(number(step.median_seconds));
            cells.push(number(step.p90_seconds));
            cells.push(share_cell(step.share_within_3_min));
        }
        rows.push(cells);
    };
    add("kpi-total", &kpi.total, kpi.title.clone());
    for row in &kpi.by_region {
        add("kpi-region", row, row.label.clone());
    }
    for row in &kpi.by_city {
        add("kpi-city", row, row.region_name.clone().unwrap_or_default());
    }
    for row in &kpi.by_kind {
        add("kpi-kind", row, kpi.title.clone());
    }
    for row in &kpi.by_hour {
        add("kpi-hour", row, kpi.title.clone());
    }
    Sheet {
        name: tr.t("kpi-xlsx-sheet-times"),
        headers,
        rows,
    }
}

fn outcomes_sheet(tr: Tr, kpi: &SignalKpi) -> Sheet {
    let headers = ["kpi-outcome", "kpi-signals", "kpi-share-of-resolved"]
        .iter()
        .map(|k| tr.t(k))
        .collect();
    let mut rows: Vec<Vec<Cell>> = kpi
        .by_outcome
        .iter()
        .map(|o| {
            vec![
                Cell::Text(o.label.clone()),
                whole(o.count),
                share_cell(o.share),
            ]
        })
        .collect();
    rows.push(vec![
        Cell::Text(tr.t("kpi-resolved")),
        whole(kpi.resolved),
        Cell::Empty,
    ]);
    rows.push(vec![
        Cell::Text(tr.t("kpi-unresolved")),
        whole(kpi.unresolved),
        Cell::Empty,
    ]);
    rows.push(vec![
        Cell::Text(tr.t("kpi-drills")),
        whole(kpi.drills_excluded),
        Cell::Empty,
    ]);
    Sheet {
        name: tr.t("kpi-xlsx-sheet-outcomes"),
        headers,
        rows,
    }
}

async fn kpi_xlsx(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<KpiQuery>,
) -> AppResult<Response> {
    let kpi = match figures(&state, &viewer, c.tr, &query).await? {
        Ok(kpi) => kpi,
        Err(refusal) => return Ok(crate::api::refused(refusal)),
    };
    let body = workbook(vec![times_sheet(c.tr, &kpi), outcomes_sheet(c.tr, &kpi)])?;
    crate::audit::record(
        &state,
        &viewer,
        crate::audit::Action::Export,
        Some("signal_kpi"),
        kpi.region.as_deref(),
    )
    .await?;
    Ok(export::download(
        body,
        &format!(
            "zastupnik-kpi-{}-{}-{}.xlsx",
            kpi.region.as_deref().unwrap_or("rf"),
            kpi.from,
            kpi.to
        ),
    )
    .into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_minutes_and_seconds() {
        let ru = Tr::new(Lang::Ru);
        assert_eq!(duration_text(ru, Some(65.0)), "1 мин 05 с");
        assert_eq!(duration_text(ru, Some(45.4)), "45 с");
        assert_eq!(duration_text(ru, Some(59.5)), "1 мин 00 с");
        assert_eq!(duration_text(ru, Some(3725.0)), "1 ч 02 мин 05 с");
        assert_eq!(duration_text(ru, Some(-30.0)), "−30 с");
        assert_eq!(duration_text(ru, None), "—");
        let en = Tr::new(Lang::En);
        assert_eq!(duration_text(en, Some(65.0)), "1 min 05 s");
    }

    #[test]
    fn chart_axes_read_as_round_times() {
        let ru = Tr::new(Lang::Ru);
        assert_eq!(axis_text(ru, 0.0), "0");
        assert_eq!(axis_text(ru, 30.0), "30 с");
        assert_eq!(axis_text(ru, 600.0), "10 мин");
        assert_eq!(axis_text(ru, 90.0), "1 мин 30 с");
        assert_eq!(axis_text(ru, 5400.0), "1 ч 30 мин");
        assert_eq!(axis_text(ru, 7200.0), "2 ч");
        assert_eq!(capitalised("тревожная кнопка"), "Тревожная кнопка");
        assert_eq!(capitalised(""), "");
    }

    #[test]
    fn shares_read_as_percentages() {
        assert_eq!(percent_text(Tr::new(Lang::Ru), Some(0.9561)), "95,6\u{a0}%");
        assert_eq!(percent_text(Tr::new(Lang::En), Some(0.5)), "50.0%");
        assert_eq!(percent_text(Tr::new(Lang::Ru), None), "—");
    }

    #[test]
    fn the_time_axis_has_a_round_top() {
        assert_eq!(time_axis_top(180.0), 240.0);
        assert_eq!(time_axis_top(1000.0), 1200.0);
        assert_eq!(time_axis_top(200_000.0), 345_600.0);
    }

    #[test]
    fn the_default_period_is_the_last_365_days() {
        let tr = Tr::new(Lang::Ru);
        let today = time::macros::date!(2026 - 03 - 10);
        let p = period(tr, &KpiQuery::default(), today).unwrap();
        assert_eq!((p.to - p.from).whole_days(), 364);
        assert_eq!(p.to_bound, None);
        let asked = KpiQuery {
            from: Some("01.02.2026".into()),
            to: Some("2026-02-28".into()),
            ..KpiQuery::default()
        };
        let p = period(tr, &asked, today).unwrap();
        assert_eq!(p.from, time::macros::date!(2026 - 02 - 01));
        assert_eq!(p.to_bound, Some(time::macros::date!(2026 - 02 - 28)));
        let reversed = KpiQuery {
            from: Some("2026-03-01".into()),
            to: Some("2026-02-01".into()),
            ..KpiQuery::default()
        };
        assert_eq!(
            period(tr, &reversed, today).unwrap_err().code,
            "kpi-bad-period"
        );
        let garbage = KpiQuery {
            from: Some("вчера".into()),
            ..KpiQuery::default()
        };
        assert_eq!(
            period(tr, &garbage, today).unwrap_err().code,
            "kpi-bad-date"
        );
    }
}
