//! «Вызов» ministry dashboard (`/monitoring/vyzov`, `/monitoring/vyzov/{region}`): children
//! in institutions against the −25 % target, exits, prevention, casework and aid, for any
//! effective date (`na`) and, separately, as known on any recording date (`izvestno`).
//!
//! Every figure comes from the `vyzov` projection's counters (`opora_projections::vyzov`):
//! one query for all the dates a page needs, a few hundred rows per region, whatever the
//! size of the log. Stocks are shown on `na`; flows over the period `s`–`po` (by default
//! from the 1st of January of `na`'s year to `na`).
//!
//! Scope: administrators and federal analysts see every region; a region's analyst or
//! curator sees that region (another region's page answers 404, like a missing one).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use fluent_templates::fluent_bundle::FluentValue;
use opora_domain::access::Role;
use opora_domain::aid::AidForm;
use opora_domain::{format_date, parse_date};
use opora_projections::kept::Kept;
use opora_projections::vyzov::{self as counters, Counters};
use serde::Deserialize;
use time::macros::date;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::export;
use crate::i18n::{today_in, Lang, Tr};
use crate::pages::Refusal;
use crate::AppState;

/// Who reads the dashboard.
pub const READERS: &[Role] = &[
    Role::MinistryAnalyst,
    Role::RegionalCurator,
    Role::Administrator,
];
/// The project's baseline date (seed 004: 21 152 children in the 14 regions on 01.07.2024).
pub const BASELINE: Date = date!(2024 - 07 - 01);
/// The target: a quarter fewer children in institutions than at the baseline.
pub const TARGET_CUT: f64 = 0.25;
/// The 14 «Вызов» regions (seed 004).
pub const PILOT: [&str; 14] = [
    "22", "29", "75", "38", "42", "24", "56", "59", "25", "63", "66", "69", "27", "74",
];
const ZONE: &str = "Europe/Moscow";

pub fn routes() -> Routes {
    Routes::new()
        .get("/monitoring/vyzov", Rule::Roles(READERS), federal_page)
        .get(
            "/monitoring/vyzov/vygruzka",
            Rule::Roles(READERS),
            federal_export,
        )
        .get(
            "/monitoring/vyzov/{region}",
            Rule::Roles(READERS),
            region_page,
        )
        .get(
            "/monitoring/vyzov/{region}/vygruzka",
            Rule::Roles(READERS),
            region_export,
        )
}

/// The regions a viewer sees.
#[derive(Debug, Clone, Default)]
pub struct DashScope {
    pub all: bool,
    pub regions: Vec<String>,
}

impl DashScope {
    pub fn of(viewer: &Viewer) -> Self {
        let mut scope = Self::default();
        let Some(user) = &viewer.user else {
            return scope;
        };
        for grant in user.grants.iter().filter(|g| READERS.contains(&g.role)) {
            match (grant.role, grant.scope.regions()) {
                (Role::Administrator, _) | (_, None) => scope.all = true,
                (_, Some(regions)) => scope
                    .regions
                    .extend(regions.iter().map(|r| r.as_str().to_owned())),
            }
        }
        scope
    }
    pub fn sees(&self, region: &str) -> bool {
        self.all || self.regions.iter().any(|r| r == region)
    }
}

// ---------------------------------------------------------------------------------------
// Parameters

#[derive(Debug, Default, Clone, Deserialize)]
pub struct DashQuery {
    /// The effective date (`YYYY-MM-DD` or `ДД.ММ.ГГГГ`); today by default.
    #[serde(default)]
    pub na: Option<String>,
    /// Show what was known on this recording date; by default what is known now.
    #[serde(default)]
    pub izvestno: Option<String>,
    /// The period of flows: from (default 1 January of `na`'s year) …
    #[serde(default)]
    pub s: Option<String>,
    /// … to (default `na`).
    #[serde(default)]
    pub po: Option<String>,
    /// The table to export: `progress`, `vybytie`, `rabota`, `pomoshch`, `dinamika`.
    #[serde(default)]
    pub tablica: Option<String>,
    /// `csv` or `xlsx`.
    #[serde(default)]
    pub format: Option<String>,
    /// Any value: the print layout.
    #[serde(default)]
    pub pechat: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub at: Date,
    pub known: Option<Date>,
    pub from: Date,
    pub to: Date,
}

fn date_param(tr: Tr, raw: Option<&str>, field: &str) -> Result<Option<Date>, Refusal> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => parse_date(raw).map(Some).ok_or_else(|| Refusal {
            code: "dash-bad-date".into(),
            message: tr.with(
                "dash-bad-date",
                &[
                    ("field", FluentValue::from(tr.t(field))),
                    ("value", FluentValue::from(raw.to_owned())),
                ],
            ),
        }),
    }
}

pub fn window(tr: Tr, query: &DashQuery, today: Date) -> Result<Window, Refusal> {
    let known = date_param(tr, query.izvestno.as_deref(), "dash-known")?;
    // "As known on K" shows what the dashboard could show on K: by default, K itself.
    let at = date_param(tr, query.na.as_deref(), "dash-at")?.unwrap_or(known.unwrap_or(today));
    let to = date_param(tr, query.po.as_deref(), "dash-to")?.unwrap_or(at);
    let from = date_param(tr, query.s.as_deref(), "dash-from")?
        .unwrap_or_else(|| to.replace_ordinal(1).unwrap_or(to));
    if from > to {
        return Err(Refusal::new(tr, "dash-period-reversed"));
    }
    if let Some(k) = known {
        // On K the dashboard knew nothing recorded later, and showed no later date.
        if k < BASELINE || at > k || to > k {
            return Err(Refusal::new(tr, "dash-known-too-early"));
        }
    }
    Ok(Window {
        at,
        known,
        from,
        to,
    })
}

impl Window {
    fn query(&self) -> String {
        let mut q = format!("na={}&s={}&po={}", self.at, self.from, self.to);
        if let Some(k) = self.known {
            q.push_str(&format!("&izvestno={k}"));
        }
        q
    }
    /// The dates the page needs, in this order: the date, the baseline, the day before the
    /// period, the period's end, then the quarters since the baseline.
    fn days(&self) -> Vec<Date> {
        let mut days = vec![self.at, BASELINE, counters::day_before(self.from), self.to];
        days.extend(quarters(self.at));
        days
    }
}

/// The first days of the quarters from the baseline to `at` (and `at` itself).
fn quarters(at: Date) -> Vec<Date> {
    let mut days = Vec::new();
    let mut day = BASELINE;
    while day <= at {
        days.push(day);
        day = counters::add_months(day, 3);
    }
    if days.last() != Some(&at) && at > BASELINE {
        days.push(at);
    }
    days
}

// ---------------------------------------------------------------------------------------
// Figures

/// One row: a region, a municipality or a total.
#[derive(Debug, Clone, Default)]
pub struct Line {
    pub code: String,
    pub name: String,
    pub pilot: bool,
    pub total: bool,
    /// Counters on the date, on the baseline, before the period, at the period's end.
    pub at: Counters,
    pub baseline: Counters,
    pub before: Counters,
    pub end: Counters,
}

impl Line {
    fn add(&mut self, other: &Line) {
        for (mine, theirs) in [
            (&mut self.at, &other.at),
            (&mut self.baseline, &other.baseline),
            (&mut self.before, &other.before),
            (&mut self.end, &other.end),
        ] {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }
    pub fn flow(&self, metric: usize) -> i64 {
        self.end[metric] - self.before[metric]
    }
    pub fn exits(&self) -> i64 {
        (0..6).map(|i| self.flow(counters::EXIT + i)).sum()
    }
    pub fn change(&self) -> Option<f64> {
        let base = self.baseline[counters::INST];
        (base > 0).then(|| (self.at[counters::INST] - base) as f64 * 100.0 / base as f64)
    }
    pub fn target(&self) -> i64 {
        (self.baseline[counters::INST] as f64 * (1.0 - TARGET_CUT)).round() as i64
    }
    /// Share of the −25 % target reached, in percent (may exceed 100, or be negative).
    pub fn progress(&self) -> Option<f64> {
        let base = self.baseline[counters::INST];
        (base > 0)
            .then(|| (base - self.at[counters::INST]) as f64 * 100.0 / (base as f64 * TARGET_CUT))
    }
}

pub struct Dashboard {
    pub title: String,
    pub region: Option<String>,
    pub window: Window,
    pub lines: Vec<Line>,
    pub totals: Vec<Line>,
    /// (date, [series values])
    pub trend: Vec<(Date, Vec<i64>)>,
    pub series: Vec<String>,
    /// form code → [kopecks, deliveries, requests, children] over the period
    pub aid: Vec<(String, [i64; 4])>,
    /// Municipality rows are as known now although `izvestno` was asked.
    pub municipalities_now: bool,
}

/// A region as the dashboards name it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegionName {
    pub code: String,
    pub name: String,
    pub time_zone: String,
}

/// Names kept while the `reference` projection has not moved: every region by name, and
/// each region's municipalities by name.
pub struct Names {
    regions: Kept<Option<OffsetDateTime>, (), Vec<RegionName>>,
    municipalities: Kept<Option<OffsetDateTime>, String, Vec<(Uuid, String)>>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            regions: Kept::new(1),
            municipalities: Kept::new(128),
        }
    }
}

/// Every region by name, as of the `reference` checkpoint `reference` (kept).
pub async fn region_names(
    state: &AppState,
    reference: Option<OffsetDateTime>,
) -> AppResult<Arc<Vec<RegionName>>> {
    if let Some(regions) = state.names.regions.get(&reference, &()) {
        return Ok(regions);
    }
    let regions: Vec<RegionName> =
        sqlx::query_as("SELECT code, name, time_zone FROM reference.region ORDER BY name")
            .fetch_all(state.log.pool())
            .await?;
    Ok(state.names.regions.put(&reference, (), regions))
}

/// The moment a page shows: `vyzov.written` and the `reference` projection's checkpoint
/// (as they stand: [`AppState::stamps`]), and the regions as of the latter.
pub struct Moment {
    written: Option<OffsetDateTime>,
    reference: Option<OffsetDateTime>,
    regions: Arc<Vec<RegionName>>,
}

impl Moment {
    pub async fn read(state: &AppState) -> AppResult<Moment> {
        let marks = state.stamps.current().await?;
        let (written, reference) = (marks.written(), marks.checkpoint("reference"));
        let regions = region_names(state, reference).await?;
        Ok(Moment {
            written,
            reference,
            regions,
        })
    }

    /// `region`'s municipalities by name (id, name), as of the moment's `reference`.
    async fn municipalities(
        &self,
        state: &AppState,
        region: &str,
    ) -> AppResult<Arc<Vec<(Uuid, String)>>> {
        let key = region.to_owned();
        if let Some(names) = state.names.municipalities.get(&self.reference, &key) {
            return Ok(names);
        }
        let names: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, name FROM reference.municipality WHERE region_code = $1 ORDER BY name",
        )
        .bind(region)
        .fetch_all(state.log.pool())
        .await?;
        Ok(state.names.municipalities.put(&self.reference, key, names))
    }

    /// The regions in `scope`, by name.
    fn regions_in(&self, scope: &DashScope) -> Vec<&RegionName> {
        self.regions
            .iter()
            .filter(|r| scope.sees(&r.code))
            .collect()
    }

    /// Today's date on the page: the region's own on a region's page (facts are dated in
    /// their region's zone), Moscow's on the federal one.
    fn today(&self, region: Option<&str>) -> Date {
        let zone = region
            .and_then(|code| self.regions.iter().find(|r| r.code == code))
            .map_or(ZONE, |r| r.time_zone.as_str());
        today_in(zone)
    }
}

fn pick(figures: &[Arc<HashMap<String, Counters>>], i: usize, key: &str) -> Counters {
    figures
        .get(i)
        .and_then(|m| m.get(key))
        .copied()
        .unwrap_or([0; counters::N])
}

/// The federal dashboard (every region in scope) or one region's (`region`: per
/// municipality).
pub async fn dashboard(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    region: Option<&str>,
    query: &DashQuery,
    moment: &Moment,
) -> AppResult<Result<Dashboard, Refusal>> {
    let scope = DashScope::of(viewer);
    if region.is_some_and(|r| !scope.sees(r)) {
        return Err(AppError::NotFound);
    }
    let regions = moment.regions_in(&scope);
    let window = match window(tr, query, moment.today(region)) {
        Ok(w) => w,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let pool = state.log.pool();
    let days = window.days();
    let kept = state.figures.as_of(pool, moment.written);
    let figures = kept.region_figures(&days, window.known, region).await?;
    let aid = kept.aid_figures(&[days[2], days[3]], window.known).await?;
    let in_view: Vec<&RegionName> = match region {
        Some(code) => regions.iter().copied().filter(|r| r.code == code).collect(),
        None => regions,
    };
    let Some(first) = in_view.first() else {
        return Err(AppError::NotFound);
    };
    let region_line = |r: &RegionName| Line {
        code: r.code.clone(),
        name: r.name.clone(),
        pilot: PILOT.contains(&r.code.as_str()),
        total: false,
        at: pick(&figures, 0, &r.code),
        baseline: pick(&figures, 1, &r.code),
        before: pick(&figures, 2, &r.code),
        end: pick(&figures, 3, &r.code),
    };
    let quarter_days = &days[4..];
    let sum_over = |codes: &[&str], i: usize| -> i64 {
        codes
            .iter()
            .map(|c| pick(&figures, i, c)[counters::INST])
            .sum()
    };
    let mut totals = Vec::new();
    let (title, lines, series, trend, municipalities_now);
    match region {
        None => {
            let federal: Vec<Line> = in_view.iter().map(|r| region_line(r)).collect();
            let pilot_codes: Vec<&str> = in_view
                .iter()
                .filter(|r| PILOT.contains(&r.code.as_str()))
                .map(|r| r.code.as_str())
                .collect();
            let all_codes: Vec<&str> = in_view.iter().map(|r| r.code.as_str()).collect();
            let mut pilot = Line {
                name: tr.t("dash-total-pilot"),
                pilot: true,
                total: true,
                ..Line::default()
            };
            let mut all = Line {
                name: if scope.all {
                    tr.t("dash-total-all")
                } else {
                    tr.t("dash-total-mine")
                },
                total: true,
                ..Line::default()
            };
            for line in &federal {
                if line.pilot {
                    pilot.add(line);
                }
                all.add(line);
            }
            let mut names = Vec::new();
            if !pilot_codes.is_empty() {
                totals.push(pilot);
                names.push(tr.t("dash-total-pilot"));
            }
            totals.push(all);
            names.push(tr.t("dash-series-all"));
            trend = quarter_days
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut values = Vec::new();
                    if !pilot_codes.is_empty() {
                        values.push(sum_over(&pilot_codes, 4 + i));
                    }
                    values.push(sum_over(&all_codes, 4 + i));
                    (*d, values)
                })
                .collect();
            series = names;
            title = if scope.all {
                tr.t("dash-federal")
            } else {
                tr.t("dash-my-regions")
            };
            municipalities_now = false;
            lines = federal;
        }
        Some(code) => {
            let whole = Line {
                total: true,
                name: tr.t("dash-total-region"),
                ..region_line(first)
            };
            let munis = kept.municipality_figures(code, &days[..4]).await?;
            let names = moment.municipalities(state, code).await?;
            let zero = [0; counters::N];
            let at = |i: usize, id: &Uuid| munis.get(i).and_then(|m| m.get(id)).copied();
            let mut rows = Vec::new();
            for (id, name) in names.iter() {
                if (0..4).all(|i| at(i, id).is_none()) {
                    continue;
                }
                rows.push(Line {
                    code: id.to_string(),
                    name: name.clone(),
                    pilot: false,
                    total: false,
                    at: at(0, id).unwrap_or(zero),
                    baseline: at(1, id).unwrap_or(zero),
                    before: at(2, id).unwrap_or(zero),
                    end: at(3, id).unwrap_or(zero),
                });
            }
            trend = quarter_days
                .iter()
                .enumerate()
                .map(|(i, d)| (*d, vec![sum_over(&[code], 4 + i)]))
                .collect();
            series = vec![first.name.clone()];
            title = first.name.clone();
            municipalities_now = window.known.is_some();
            totals.push(whole);
            lines = rows;
        }
    }
    Ok(Ok(Dashboard {
        title,
        region: region.map(str::to_owned),
        window,
        lines,
        totals,
        trend,
        series,
        aid: aid_by_form(&aid, region),
        municipalities_now,
    }))
}

/// Aid over the period by form (the difference of the two cumulative sums).
fn aid_by_form(aid: &counters::AidFigures, region: Option<&str>) -> Vec<(String, [i64; 4])> {
    let mut sums: HashMap<String, [i64; 4]> = HashMap::new();
    for (sign, map) in [(-1, aid.first()), (1, aid.get(1))] {
        for ((r, form), values) in map.into_iter().flat_map(|m| m.iter()) {
            if region.is_some_and(|want| want != r) {
                continue;
            }
            let slot = sums.entry(form.clone()).or_default();
            for (s, v) in slot.iter_mut().zip(values) {
                *s += sign * v;
            }
        }
    }
    let mut out: Vec<(String, [i64; 4])> = AidForm::ALL
        .iter()
        .filter_map(|(_, code, _)| sums.remove(*code).map(|v| ((*code).to_owned(), v)))
        .collect();
    out.extend(sums);
    out.retain(|(_, v)| v.iter().any(|x| *x != 0));
    out
}

// ---------------------------------------------------------------------------------------
// Tables: one builder for the page and the exports

/// The dashboard's tables, by their export key.
pub const TABLES: [&str; 5] = ["progress", "vybytie", "rabota", "pomoshch", "dinamika"];

#[derive(Debug, Clone)]
pub struct TableRow {
    pub head: String,
    /// The region's page (federal rows only).
    pub link: Option<String>,
    pub pilot: bool,
    pub total: bool,
    pub cells: Vec<String>,
    /// The share of the target reached, 0–100, for a progress bar.
    pub bar: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub key: &'static str,
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<TableRow>,
}

/// How numbers are written: for people (groups of digits, decimal comma) or for a file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Page,
    File,
}

fn whole(style: Style, n: i64) -> String {
    if style == Style::File {
        return n.to_string();
    }
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{a0}');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("−{out}")
    } else {
        out
    }
}

fn percent(style: Style, value: Option<f64>) -> String {
    match (value, style) {
        (None, _) => "—".into(),
        (Some(v), Style::File) => format!("{v:.1}"),
        (Some(v), Style::Page) => {
            let text = format!("{:.1}", v.abs()).replace('.', ",");
            if v < -0.05 {
                format!("−{text}")
            } else if v > 0.05 {
                format!("+{text}")
            } else {
                text
            }
        }
    }
}

fn rubles(style: Style, kopecks: i64) -> String {
    match style {
        Style::File => format!("{}.{:02}", kopecks / 100, (kopecks % 100).abs()),
        Style::Page => format!(
            "{},{:02}",
            whole(style, kopecks / 100),
            (kopecks % 100).abs()
        ),
    }
}

impl Dashboard {
    fn rows(&self, style: Style, cells: impl Fn(&Line) -> Vec<String>) -> Vec<TableRow> {
        let region_link = |line: &Line| {
            (self.region.is_none() && !line.total)
                .then(|| format!("/monitoring/vyzov/{}?{}", line.code, self.window.query()))
        };
        let mut rows: Vec<TableRow> = self
            .lines
            .iter()
            .chain(&self.totals)
            .map(|line| {
                let mut row = cells(line);
                if style == Style::File && self.region.is_none() {
                    row.insert(0, if line.pilot { "да" } else { "нет" }.into());
                }
                TableRow {
                    head: line.name.clone(),
                    link: region_link(line),
                    pilot: line.pilot && !line.total,
                    total: line.total,
                    cells: row,
                    bar: None,
                }
            })
            .collect();
        if style == Style::File {
            for row in &mut rows {
                row.cells.insert(0, row.head.clone());
            }
        }
        rows
    }

    fn headers(&self, tr: Tr, style: Style, keys: &[String]) -> Vec<String> {
        let mut headers = Vec::new();
        if style == Style::File {
            headers.push(tr.t(if self.region.is_some() {
                "dash-col-municipality"
            } else {
                "dash-col-region"
            }));
            if self.region.is_none() {
                headers.push(tr.t("dash-col-pilot"));
            }
        }
        headers.extend(keys.iter().cloned());
        headers
    }

    pub fn table(&self, tr: Tr, key: &str, style: Style) -> Option<Table> {
        let at = format_date(self.window.at);
        let period = format!(
            "{} – {}",
            format_date(self.window.from),
            format_date(self.window.to)
        );
        let with = |k: &str, v: &str| tr.with(k, &[("date", FluentValue::from(v.to_owned()))]);
        let table = match key {
            "progress" => {
                let mut rows = self.rows(style, |l| {
                    vec![
                        whole(style, l.baseline[counters::INST]),
                        whole(style, l.at[counters::INST]),
                        percent(style, l.change()),
                        whole(style, l.target()),
                        whole(style, (l.at[counters::INST] - l.target()).max(0)),
                        percent(style, l.progress()),
                    ]
                });
                for (row, line) in rows.iter_mut().zip(self.lines.iter().chain(&self.totals)) {
                    row.bar = line.progress().map(|p| p.clamp(0.0, 100.0).round() as i64);
                }
                Table {
                    key: "progress",
                    caption: with("dash-progress-caption", &at),
                    headers: self.headers(
                        tr,
                        style,
                        &[
                            with("dash-col-inst-on", &format_date(BASELINE)),
                            with("dash-col-inst-on", &at),
                            tr.t("dash-col-change"),
                            tr.t("dash-col-target"),
                            tr.t("dash-col-gap"),
                            tr.t("dash-col-progress"),
                        ],
                    ),
                    rows,
                }
            }
            "vybytie" => Table {
                key: "vybytie",
                caption: with("dash-exits-caption", &period),
                headers: self.headers(
                    tr,
                    style,
                    &[
                        tr.t("dash-col-placed"),
                        tr.t("dash-col-exits"),
                        tr.t("dash-col-exit-birth_family"),
                        tr.t("dash-col-exit-guardianship"),
                        tr.t("dash-col-exit-foster"),
                        tr.t("dash-col-exit-adoption"),
                        tr.t("dash-col-exit-coming_of_age"),
                        tr.t("dash-col-exit-other"),
                        tr.t("dash-col-prevented"),
                        tr.t("dash-col-reviews"),
                    ],
                ),
                rows: self.rows(style, |l| {
                    let mut cells = vec![
                        whole(style, l.flow(counters::PLACED)),
                        whole(style, l.exits()),
                    ];
                    cells.extend((0..6).map(|i| whole(style, l.flow(counters::EXIT + i))));
                    cells.push(whole(style, l.flow(counters::PREVENTED)));
                    cells.push(whole(style, l.flow(counters::REVIEWS)));
                    cells
                }),
            },
            "rabota" => Table {
                key: "rabota",
                caption: with("dash-work-caption", &at),
                headers: self.headers(
                    tr,
                    style,
                    &[
                        tr.t("dash-col-overdue"),
                        tr.t("dash-col-unreviewed"),
                        tr.t("dash-col-control"),
                        tr.t("dash-col-accompanied"),
                        tr.t("dash-col-services"),
                        tr.t("dash-col-specialists"),
                        tr.t("dash-col-late"),
                    ],
                ),
                rows: self.rows(style, |l| {
                    [
                        counters::OVERDUE,
                        counters::UNREVIEWED,
                        counters::CONTROL,
                        counters::ACCOMPANIED,
                        counters::SERVICES,
                        counters::SPECIALISTS,
                        counters::LATE,
                    ]
                    .iter()
                    .map(|m| whole(style, l.at[*m]))
                    .collect()
                }),
            },
            "pomoshch" => {
                let label = |code: &str| {
                    AidForm::ALL
                        .iter()
                        .find(|(_, c, _)| *c == code)
                        .map_or_else(|| code.to_owned(), |(_, _, l)| (*l).to_owned())
                };
                let mut total = [0_i64; 4];
                let mut rows: Vec<TableRow> = self
                    .aid
                    .iter()
                    .map(|(form, v)| {
                        for (t, x) in total.iter_mut().zip(v) {
                            *t += x;
                        }
                        aid_row(style, label(form), false, v)
                    })
                    .collect();
                rows.push(aid_row(style, tr.t("dash-total"), true, &total));
                let mut headers = vec![
                    tr.t("dash-col-aid-rubles"),
                    tr.t("dash-col-aid-deliveries"),
                    tr.t("dash-col-aid-families"),
                    tr.t("dash-col-aid-children"),
                ];
                if style == Style::File {
                    headers.insert(0, tr.t("dash-col-aid-form"));
                }
                Table {
                    key: "pomoshch",
                    caption: with("dash-aid-caption", &period),
                    headers,
                    rows,
                }
            }
            "dinamika" => {
                let mut headers = self.series.clone();
                headers.insert(0, tr.t("dash-col-date"));
                if style == Style::Page {
                    headers.remove(0);
                }
                Table {
                    key: "dinamika",
                    caption: tr.t("dash-trend-caption"),
                    headers,
                    rows: self
                        .trend
                        .iter()
                        .map(|(day, values)| {
                            let mut cells: Vec<String> =
                                values.iter().map(|v| whole(style, *v)).collect();
                            if style == Style::File {
                                cells.insert(0, format_date(*day));
                            }
                            TableRow {
                                head: format_date(*day),
                                link: None,
                                pilot: false,
                                total: false,
                                cells,
                                bar: None,
                            }
                        })
                        .collect(),
                }
            }
            _ => return None,
        };
        Some(table)
    }
}

fn aid_row(style: Style, head: String, total: bool, v: &[i64; 4]) -> TableRow {
    let mut cells = vec![
        rubles(style, v[0]),
        whole(style, v[1]),
        whole(style, v[2]),
        whole(style, v[3]),
    ];
    if style == Style::File {
        cells.insert(0, head.clone());
    }
    TableRow {
        head,
        link: None,
        pilot: false,
        total,
        cells,
        bar: None,
    }
}

// ---------------------------------------------------------------------------------------
// The chart: children in institutions by quarter, against the target

fn trend_svg(tr: Tr, dash: &Dashboard) -> String {
    let (w, h, left, bottom, top, right) = (640.0, 260.0, 64.0, 40.0, 16.0, 16.0);
    let targets: Vec<i64> = dash
        .totals
        .first()
        .filter(|t| t.baseline[counters::INST] > 0)
        .map(|t| vec![t.target()])
        .unwrap_or_default();
    let max = dash
        .trend
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .chain(targets.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let step = nice_step(max);
    let ymax = (max + step - 1) / step * step;
    let n = dash.trend.len().max(2) - 1;
    let x = |i: usize| left + (w - left - right) * i as f64 / n as f64;
    let y = |v: i64| top + (h - top - bottom) * (1.0 - v as f64 / ymax as f64);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let title = esc(&tr.t("dash-trend-title"));
    let desc = esc(&dash
        .trend
        .iter()
        .map(|(d, v)| {
            format!(
                "{}: {}",
                format_date(*d),
                v.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            )
        })
        .collect::<Vec<_>>()
        .join("; "));
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-labelledby=\"trend-title trend-desc\"><title id=\"trend-title\">{title}</title>\
         <desc id=\"trend-desc\">{desc}</desc>"
    );
    let mut v = 0;
    while v <= ymax {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y(v) + 4.0,
            whole(Style::Page, v),
            y = y(v)
        ));
        v += step;
    }
    for (i, (day, _)) in dash.trend.iter().enumerate() {
        if dash.trend.len() > 8 && i % 2 == 1 && i + 1 != dash.trend.len() {
            continue;
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
            x(i),
            h - bottom + 18.0,
            format_date(*day)
        ));
    }
    for target in targets {
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"target\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            w - right,
            w - right,
            y(target) - 4.0,
            esc(&tr.t("dash-target-line")),
            y = y(target)
        ));
    }
    for s in 0..dash.series.len() {
        let points: Vec<String> = dash
            .trend
            .iter()
            .enumerate()
            .filter_map(|(i, (_, v))| v.get(s).map(|v| format!("{:.1},{:.1}", x(i), y(*v))))
            .collect();
        svg.push_str(&format!(
            "<polyline class=\"series s{s}\" fill=\"none\" points=\"{}\"/>",
            points.join(" ")
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn nice_step(max: i64) -> i64 {
    let raw = (max as f64 / 5.0).max(1.0);
    let magnitude = 10_f64.powi(raw.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(1.0) as i64
}

// ---------------------------------------------------------------------------------------
// Handlers

/// The page's words (the body is the same for every viewer: no chrome in it).
pub(crate) struct Words {
    pub(crate) tr: Tr,
}

/// Everything under the page's header: the dates, the tables and the chart.
#[derive(Template)]
#[template(path = "monitoring/vyzov_body.html")]
struct DashBody {
    c: Words,
    title: String,
    region: Option<String>,
    error: Option<String>,
    at: String,
    known: String,
    from: String,
    to: String,
    known_text: Option<String>,
    query: String,
    base: String,
    tables: Vec<Table>,
    chart: String,
    municipalities_now: bool,
}

/// A page's body, rendered (askama escaped every value in it).
pub struct Body {
    pub(crate) title: String,
    pub(crate) html: String,
}

/// Today's pages (no date asked) already rendered: the same for every viewer of the same
/// regions and language, kept until `vyzov.written` or the `reference` checkpoint moves.
pub type BodyCache = Kept<(Option<OffsetDateTime>, Option<OffsetDateTime>), BodyKey, Body>;

/// What today's body depends on besides the projections.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BodyKey {
    lang: Lang,
    region: Option<String>,
    /// The regions in the viewer's scope (`None`: all).
    regions: Option<Vec<String>>,
    today: Date,
}

/// Today's bodies kept at most (one per region and language, for each scope).
pub const BODIES: usize = 512;

#[derive(Template, WebTemplate)]
#[template(path = "monitoring/vyzov.html")]
struct DashPage {
    c: Chrome,
    body: Arc<Body>,
}

impl DashQuery {
    /// No date asked: today's page.
    fn today(&self) -> bool {
        [&self.na, &self.izvestno, &self.s, &self.po]
            .iter()
            .all(|v| v.as_deref().is_none_or(|v| v.trim().is_empty()))
    }
}

async fn render(
    state: AppState,
    c: Chrome,
    viewer: Viewer,
    region: Option<String>,
    query: DashQuery,
) -> AppResult<Response> {
    let tr = c.tr;
    let moment = Moment::read(&state).await?;
    let print = query.pechat.is_some();
    let scope = DashScope::of(&viewer);
    let key =
        (!print && query.today() && region.as_deref().is_none_or(|r| scope.sees(r))).then(|| {
            BodyKey {
                lang: tr.lang,
                region: region.clone(),
                regions: (!scope.all).then(|| scope.regions.clone()),
                today: moment.today(region.as_deref()),
            }
        });
    let version = (moment.written, moment.reference);
    if let Some(body) = key
        .as_ref()
        .and_then(|k| state.vyzov_pages.get(&version, k))
    {
        return Ok(DashPage { c, body }.into_response());
    }
    let (dash, error) =
        match dashboard(&state, &viewer, tr, region.as_deref(), &query, &moment).await? {
            Ok(dash) => (dash, None),
            Err(refusal) => {
                let defaults = DashQuery::default();
                match dashboard(&state, &viewer, tr, region.as_deref(), &defaults, &moment).await? {
                    Ok(dash) => (dash, Some(refusal.message)),
                    Err(again) => return Err(AppError::Unexpected(anyhow::anyhow!(again.message))),
                }
            }
        };
    let base = match &dash.region {
        Some(code) => format!("/monitoring/vyzov/{code}"),
        None => "/monitoring/vyzov".to_owned(),
    };
    let tables = TABLES
        .iter()
        .filter_map(|key| dash.table(tr, key, Style::Page))
        .collect();
    let w = dash.window;
    let body = DashBody {
        c: Words { tr },
        title: dash.title.clone(),
        region: dash.region.clone(),
        error,
        at: w.at.to_string(),
        known: w.known.map(|k| k.to_string()).unwrap_or_default(),
        from: w.from.to_string(),
        to: w.to.to_string(),
        known_text: w.known.map(format_date),
        query: w.query(),
        base,
        chart: trend_svg(tr, &dash),
        tables,
        municipalities_now: dash.municipalities_now,
    };
    if print {
        return Ok(DashPrint {
            at_text: format_date(w.at),
            printed: crate::i18n::local_time(&OffsetDateTime::now_utc(), ZONE),
            b: body,
            c,
        }
        .into_response());
    }
    let rendered = Body {
        title: body.title.clone(),
        html: body
            .render()
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("rendering the dashboard: {e}")))?,
    };
    let body = match key {
        Some(key) => state.vyzov_pages.put(&version, key, rendered),
        None => Arc::new(rendered),
    };
    Ok(DashPage { c, body }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "monitoring/vyzov_print.html")]
struct DashPrint {
    c: Chrome,
    b: DashBody,
    at_text: String,
    printed: String,
}

async fn federal_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    render(state, c, viewer, None, query).await
}

async fn region_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Path(region): Path<String>,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    render(state, c, viewer, Some(region), query).await
}

async fn export_table(
    state: AppState,
    c: Chrome,
    viewer: Viewer,
    region: Option<String>,
    query: DashQuery,
) -> AppResult<Response> {
    let tr = c.tr;
    let moment = Moment::read(&state).await?;
    let dash = match dashboard(&state, &viewer, tr, region.as_deref(), &query, &moment).await? {
        Ok(dash) => dash,
        Err(refusal) => return Ok(crate::api::refused(refusal)),
    };
    let key = query.tablica.as_deref().unwrap_or("progress");
    let format = query.format.as_deref().unwrap_or("xlsx");
    let (Some(table), true) = (
        dash.table(tr, key, Style::File),
        matches!(format, "csv" | "xlsx"),
    ) else {
        return Ok(crate::api::refused(Refusal::new(tr, "dash-bad-table")));
    };
    let rows: Vec<Vec<String>> = table.rows.into_iter().map(|r| r.cells).collect();
    let body = if format == "csv" {
        export::csv(&table.headers, &rows)?
    } else {
        export::xlsx_numbers(&tr.t("dash-sheet"), &table.headers, &rows)?
    };
    crate::audit::record(
        &state,
        &viewer,
        crate::audit::Action::Export,
        Some("vyzov_dashboard"),
        dash.region.as_deref(),
    )
    .await?;
    let w = dash.window;
    Ok(export::download(
        body,
        &format!(
            "vyzov-{}-{}-{}.{format}",
            dash.region.as_deref().unwrap_or("rf"),
            table.key,
            w.at
        ),
    ))
}

async fn federal_export(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    export_table(state, c, viewer, None, query).await
}

async fn region_export(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Path(region): Path<String>,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    export_table(state, c, viewer, Some(region), query).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn numbers_read_as_russian_and_files_as_plain() {
        assert_eq!(whole(Style::Page, 21152), "21\u{a0}152");
        assert_eq!(whole(Style::Page, -1234567), "−1\u{a0}234\u{a0}567");
        assert_eq!(whole(Style::File, 21152), "21152");
        assert_eq!(percent(Style::Page, Some(-22.249)), "−22,2");
        assert_eq!(percent(Style::File, Some(-22.249)), "-22.2");
        assert_eq!(rubles(Style::Page, 123456789), "1\u{a0}234\u{a0}567,89");
        assert_eq!(rubles(Style::File, 123456789), "1234567.89");
    }

    #[test]
    fn the_window_defaults_and_refuses() {
        let tr = Tr::new(Lang::Ru);
        let today = date!(2026 - 11 - 22);
        let w = window(tr, &DashQuery::default(), today).unwrap();
        assert_eq!(w.at, today);
        assert_eq!(w.from, date!(2026 - 01 - 01));
        assert_eq!(w.to, today);
        let q = DashQuery {
            na: Some("01.10.2025".into()),
            izvestno: Some("2025-10-01".into()),
            ..DashQuery::default()
        };
        let w = window(tr, &q, today).unwrap();
        assert_eq!(w.at, date!(2025 - 10 - 01));
        assert_eq!(w.known, Some(date!(2025 - 10 - 01)));
        assert_eq!(w.from, date!(2025 - 01 - 01));
        let bad = DashQuery {
            na: Some("32.13.2025".into()),
            ..DashQuery::default()
        };
        assert!(window(tr, &bad, today)
            .unwrap_err()
            .message
            .contains("32.13.2025"));
        let reversed = DashQuery {
            s: Some("2025-05-01".into()),
            po: Some("2025-04-01".into()),
            ..DashQuery::default()
        };
        assert_eq!(
            window(tr, &reversed, today).unwrap_err().code,
            "dash-period-reversed"
        );
    }

    #[test]
    fn quarters_run_from_the_baseline() {
        assert_eq!(
            quarters(date!(2025 - 02 - 15)),
            vec![
                date!(2024 - 07 - 01),
                date!(2024 - 10 - 01),
                date!(2025 - 01 - 01),
                date!(2025 - 02 - 15)
            ]
        );
        assert!(quarters(date!(2024 - 01 - 01)).is_empty());
        assert_eq!(nice_step(21152), 5000);
        assert_eq!(nice_step(3), 1);
    }
}
