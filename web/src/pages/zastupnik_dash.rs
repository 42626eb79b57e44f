//! The «Заступник» ministry dashboard (`/monitoring/zastupnik`): connected children and
//! adults (the latest Friday and the trend), filing completeness and timeliness, signals by
//! region and kind, the time to help and the share resolved by the trusted circle — for
//! every region in the viewer's scope, and per municipality of one region
//! (`/monitoring/zastupnik/{region}`). Every table is also a CSV (UTF-8 with BOM, `;`) and an
//! XLSX file (`…/vygruzka?…&tablica=ID&format=csv|xlsx`, as the «Вызов» dashboard's), and
//! the page has a print layout (`?…&pechat=1`).
//!
//! Parameters: `na` — the date the page is as of (the weekly figures of the latest Friday
//! on or before it; default today); `s`, `po` — the period of the signals (local dates of
//! the press; default the 90 days ending on `na`); `izvestno` — show the weekly filings as
//! they were known at the end of that recording day (Moscow time). A date that cannot be
//! read or a period the wrong way round answers 400 with the page and the message.
//!
//! Every figure comes from the `zastupnik` projection (`opora_projections::zastupnik`): a
//! page reads a few index probes per region, never the reports or the signals. Drills are
//! left out of everything.
//!
//! Scope (`WeeklyScope`): administrators and federal analysts read every region; a region's
//! analyst or curator reads that region; another region's page answers 404.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opora_domain::access::Role;
use opora_domain::signal::SignalKind;
use opora_domain::weekly::Timeliness;
use opora_domain::{format_date, parse_date};
use opora_projections::kept::Kept;
use opora_projections::zastupnik::{self as figures, RegionWeek, SignalTotals, EVERY};
use serde::Deserialize;
use sqlx::Row;
use time::{Date, Duration, OffsetDateTime};

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::export;
use crate::i18n::{local_time, today_in, Lang, Tr};
use crate::pages::signal_kpi::{duration_text, percent_text};
use crate::pages::vyzov_dash::{Body, RegionName, Words};
use crate::pages::weekly::{chart, thousands, Chart, TrendPoint, WeeklyScope};
use crate::pages::Refusal;
use crate::AppState;

/// Who reads the dashboard: the ministry's analysts, the regional curators, the
/// administrator.
pub const READERS: &[Role] = &[
    Role::MinistryAnalyst,
    Role::RegionalCurator,
    Role::Administrator,
];
/// The default period of the signals: the 90 days ending on the page's date.
const DEFAULT_DAYS: i64 = 90;
/// Weeks of the trend (chart and table), ending with the page's Friday.
const TREND_WEEKS: i64 = 26;
const MOSCOW: &str = "Europe/Moscow";

pub fn routes() -> Routes {
    Routes::new()
        .get("/monitoring/zastupnik", Rule::Roles(READERS), federal_page)
        .get(
            "/monitoring/zastupnik/vygruzka",
            Rule::Roles(READERS),
            federal_export,
        )
        .get(
            "/monitoring/zastupnik/{region}",
            Rule::Roles(READERS),
            region_page,
        )
        .get(
            "/monitoring/zastupnik/{region}/vygruzka",
            Rule::Roles(READERS),
            region_export,
        )
}

// ---------------------------------------------------------------------------------------
// Parameters

#[derive(Debug, Default, Clone, Deserialize)]
pub struct DashQuery {
    /// As of this date (`ДД.ММ.ГГГГ` or `ГГГГ-ММ-ДД`); today by default.
    #[serde(default)]
    pub na: Option<String>,
    /// The signals' period: first and last local dates of the press.
    #[serde(default)]
    pub s: Option<String>,
    #[serde(default)]
    pub po: Option<String>,
    /// The weekly filings as known at the end of this recording day.
    #[serde(default)]
    pub izvestno: Option<String>,
    /// `…/vygruzka`: `csv` or `xlsx` (default), of the table `tablica` (default
    /// `podklyucheniya`).
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub tablica: Option<String>,
    /// `1`: the print layout.
    #[serde(default)]
    pub pechat: Option<String>,
}

/// The dates a page is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dates {
    on: Date,
    friday: Date,
    from: Date,
    to: Date,
    known: Option<Date>,
}

/// The latest Friday on or before `date`.
fn friday_on_or_before(date: Date) -> Date {
    let back = (date.weekday().number_days_from_monday() + 3) % 7;
    date - Duration::days(i64::from(back))
}

fn date_param(tr: Tr, raw: Option<&str>) -> Result<Option<Date>, Refusal> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => parse_date(raw).map(Some).ok_or_else(|| Refusal {
            code: "zd-bad-date".to_owned(),
            message: tr.arg("zd-bad-date", raw),
        }),
    }
}

fn dates(tr: Tr, query: &DashQuery, today: Date) -> Result<Dates, Refusal> {
    let known = date_param(tr, query.izvestno.as_deref())?;
    let on = date_param(tr, query.na.as_deref())?
        .or(known)
        .unwrap_or(today);
    let to = date_param(tr, query.po.as_deref())?.unwrap_or(on);
    let from = match date_param(tr, query.s.as_deref())? {
        Some(from) => from,
        None => to
            .checked_sub(Duration::days(DEFAULT_DAYS - 1))
            .unwrap_or(Date::MIN),
    };
    if from > to {
        return Err(Refusal::new(tr, "zd-bad-period"));
    }
    if to > on {
        return Err(Refusal::new(tr, "zd-period-after"));
    }
    Ok(Dates {
        on,
        friday: friday_on_or_before(on),
        from,
        to,
        known,
    })
}

/// The dates as a query string (for links to the same view).
fn query_string(d: &Dates) -> String {
    let mut out = format!("na={}&s={}&po={}", d.on, d.from, d.to);
    if let Some(known) = d.known {
        out.push_str(&format!("&izvestno={known}"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Tables: one model for the page, the CSV and the XLSX file

/// A cell's value in the files: whole numbers and decimals stay numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    /// One decimal (percentages).
    Dec(f64),
    Text(String),
    Empty,
}

impl Value {
    fn csv(&self) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Dec(v) => format!("{v:.1}"),
            Value::Text(t) => t.clone(),
            Value::Empty => String::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cell {
    /// As the page shows it.
    pub shown: String,
    pub value: Value,
}

impl Cell {
    fn count(value: i64) -> Self {
        Self {
            shown: thousands(value),
            value: Value::Int(value),
        }
    }
    fn text(text: String) -> Self {
        Self {
            shown: text.clone(),
            value: Value::Text(text),
        }
    }
    /// Right-aligned on the page (numbers, and the dash of a missing number).
    pub fn is_num(&self) -> bool {
        !matches!(self.value, Value::Text(_))
    }
    fn empty() -> Self {
        Self {
            shown: "—".to_owned(),
            value: Value::Empty,
        }
    }
    /// `part / whole` as a percentage with one decimal; `—` when `whole` is 0.
    fn share(tr: Tr, part: i64, whole: i64) -> Self {
        if whole <= 0 {
            return Self::empty();
        }
        let percent = (part as f64 * 1000.0 / whole as f64).round() / 10.0;
        Self {
            shown: percent_text(tr, Some(percent / 100.0)),
            value: Value::Dec(percent),
        }
    }
    /// Seconds, shown as minutes and seconds; whole seconds in the files.
    fn seconds(tr: Tr, seconds: Option<f64>) -> Self {
        match seconds {
            Some(s) => Self {
                shown: duration_text(tr, Some(s)),
                value: Value::Int(s.round() as i64),
            },
            None => Self::empty(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub label: String,
    pub num: bool,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub head: String,
    pub link: Option<String>,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub id: &'static str,
    pub heading: String,
    pub caption: String,
    /// Every column, the row headers' first.
    pub columns: Vec<Column>,
    pub lines: Vec<Line>,
    pub total: Option<Line>,
}

impl Table {
    fn headers(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.label.clone()).collect()
    }
    /// Every row with its header first (the total last), as the files hold them.
    fn values(&self) -> Vec<Vec<Value>> {
        self.lines
            .iter()
            .chain(&self.total)
            .map(|line| {
                std::iter::once(Value::Text(line.head.clone()))
                    .chain(line.cells.iter().map(|c| c.value.clone()))
                    .collect()
            })
            .collect()
    }
}

fn columns(tr: Tr, keys: &[(&str, bool)]) -> Vec<Column> {
    keys.iter()
        .map(|(key, num)| Column {
            label: tr.t(key),
            num: *num,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The figures

/// The regions in `scope`, by name, as of the `reference` checkpoint `reference`.
async fn regions_in(
    state: &AppState,
    scope: &WeeklyScope,
    reference: Option<OffsetDateTime>,
) -> AppResult<Vec<RegionName>> {
    Ok(crate::pages::vyzov_dash::region_names(state, reference)
        .await?
        .iter()
        .filter(|r| scope.sees_region(&r.code))
        .cloned()
        .collect())
}

/// Municipalities per region (the number expected to file each week).
async fn expected(state: &AppState, codes: &[String]) -> AppResult<HashMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT region_code, count(*) AS n FROM reference.municipality \
          WHERE region_code = ANY($1) GROUP BY region_code",
    )
    .bind(codes)
    .fetch_all(state.log.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("region_code")?, r.try_get("n")?)))
        .collect()
}

/// A fact at the top of the page.
pub struct Fact {
    pub label: String,
    pub value: String,
}

/// Everything a page shows.
pub struct Dashboard {
    /// The region of a region's page.
    pub region: Option<String>,
    pub title: String,
    pub facts: Vec<Fact>,
    pub tables: Vec<Table>,
    pub chart: Chart,
    pub notes: Vec<String>,
    /// The page's body (under its form), rendered by the first page that shows it: the
    /// same for every viewer of this dashboard (see [`DashKey`]).
    pub page: OnceLock<Body>,
}

fn week_facts(tr: Tr, d: &Dates, week: &RegionWeek, expected: i64) -> Vec<Fact> {
    let fact = |key: &str, value: String| Fact {
        label: tr.t(key),
        value,
    };
    vec![
        fact("zd-friday", format_date(d.friday)),
        fact("zd-children", thousands(week.children)),
        fact("zd-adults", thousands(week.adults)),
        fact(
            "zd-completeness",
            tr.with(
                "zd-filed-of",
                &[
                    ("filed", thousands(week.filed).into()),
                    ("expected", thousands(expected).into()),
                    ("share", Cell::share(tr, week.filed, expected).shown.into()),
                ],
            ),
        ),
        fact(
            "zd-timeliness",
            tr.with(
                "zd-on-time-late",
                &[
                    ("on_time", thousands(week.on_time).into()),
                    ("late", thousands(week.late).into()),
                ],
            ),
        ),
    ]
}

fn signal_facts(tr: Tr, d: &Dates, total: &SignalTotals) -> Vec<Fact> {
    let fact = |key: &str, value: String| Fact {
        label: tr.t(key),
        value,
    };
    vec![
        fact("zd-signals-period", period_text(tr, d)),
        fact("zd-signals", thousands(total.signals)),
        fact(
            "zd-circle-share",
            Cell::share(tr, total.circle, total.resolved).shown,
        ),
        fact(
            "zd-help-median",
            Cell::seconds(tr, total.help_median()).shown,
        ),
        fact("zd-help-p90", Cell::seconds(tr, total.help_p90()).shown),
        fact(
            "zd-help-within",
            Cell::share(tr, total.help_within_target(), total.helped()).shown,
        ),
    ]
}

/// "As of 13.03.2026 (the week ending on Friday 13.03.2026); signals from … to …; as known
/// on …".
fn as_of_line(tr: Tr, d: &Dates) -> String {
    let mut line = tr.with(
        "zd-as-of-line",
        &[
            ("on", format_date(d.on).into()),
            ("friday", format_date(d.friday).into()),
            ("period", period_text(tr, d).into()),
        ],
    );
    if let Some(known) = d.known {
        line.push(' ');
        line.push_str(&tr.arg("zd-as-known-line", &format_date(known)));
    }
    line
}

fn period_text(tr: Tr, d: &Dates) -> String {
    tr.with(
        "zd-period-text",
        &[
            ("from", format_date(d.from).into()),
            ("to", format_date(d.to).into()),
        ],
    )
}

/// The signal columns of a row: signals, resolved, by the circle, its share, helped on
/// the spot, median, 90th percentile, within three minutes.
fn signal_cells(tr: Tr, t: &SignalTotals) -> Vec<Cell> {
    vec![
        Cell::count(t.signals),
        Cell::count(t.resolved),
        Cell::count(t.circle),
        Cell::share(tr, t.circle, t.resolved),
        Cell::count(t.helped()),
        Cell::seconds(tr, t.help_median()),
        Cell::seconds(tr, t.help_p90()),
        Cell::share(tr, t.help_within_target(), t.helped()),
    ]
}

fn signal_columns(tr: Tr, first: &str) -> Vec<Column> {
    columns(
        tr,
        &[
            (first, false),
            ("zd-col-signals", true),
            ("zd-col-resolved", true),
            ("zd-col-circle", true),
            ("zd-col-circle-share", true),
            ("zd-col-helped", true),
            ("zd-col-median", true),
            ("zd-col-p90", true),
            ("zd-col-within", true),
        ],
    )
}

fn trend_table(tr: Tr, title: &str, trend: &[(Date, RegionWeek)], expected: i64) -> Table {
    let lines = trend
        .iter()
        .rev()
        .map(|(friday, w)| Line {
            head: format_date(*friday),
            link: None,
            cells: vec![
                Cell::count(w.children),
                Cell::count(w.adults),
                Cell::count(w.filed),
                Cell::count(expected),
                Cell::share(tr, w.filed, expected),
                Cell::count(w.on_time),
                Cell::count(w.late),
                Cell::share(tr, w.on_time, expected),
            ],
        })
        .collect();
    Table {
        id: "dinamika",
        heading: tr.t("zd-trend"),
        caption: format!("{}: {title}", tr.t("zd-trend-caption")),
        columns: columns(
            tr,
            &[
                ("zd-col-friday", false),
                ("zd-col-children", true),
                ("zd-col-adults", true),
                ("zd-col-filed", true),
                ("zd-col-expected", true),
                ("zd-col-completeness", true),
                ("zd-col-on-time", true),
                ("zd-col-late", true),
                ("zd-col-on-time-share", true),
            ],
        ),
        lines,
        total: None,
    }
}

fn trend_chart(tr: Tr, trend: &[(Date, RegionWeek)]) -> Chart {
    let points: Vec<TrendPoint> = trend
        .iter()
        .map(|(friday, w)| TrendPoint {
            friday: *friday,
            children: w.children,
            adults: w.adults,
        })
        .collect();
    chart(tr, &points)
}

fn notes(tr: Tr, d: &Dates, drills: i64) -> Vec<String> {
    let mut notes = vec![
        tr.t("zd-note-stock"),
        tr.with("zd-note-drills", &[("drills", thousands(drills).into())]),
        tr.t("zd-note-help"),
    ];
    if let Some(known) = d.known {
        notes.push(tr.arg("zd-note-known", &format_date(known)));
    }
    notes
}

/// The federal view: one row per region in scope.
async fn federal(
    state: &AppState,
    tr: Tr,
    scope: &WeeklyScope,
    d: &Dates,
    reference: Option<OffsetDateTime>,
) -> AppResult<Dashboard> {
    let regions = regions_in(state, scope, reference).await?;
    let codes: Vec<String> = regions.iter().map(|r| r.code.clone()).collect();
    let pool = state.log.pool();
    let weeks = figures::region_weeks(pool, &codes, d.friday, d.known).await?;
    let expected = expected(state, &codes).await?;
    let keys: Vec<(String, String)> = codes
        .iter()
        .map(|c| (c.clone(), EVERY.to_owned()))
        .collect();
    let signals = figures::signals_between(pool, &keys, d.from, d.to).await?;
    // Every region's trend is kept summed; a viewer of some regions sums theirs.
    let trend_keys = if scope.all {
        vec![EVERY.to_owned()]
    } else {
        codes.clone()
    };
    let first = d.friday - Duration::weeks(TREND_WEEKS - 1);
    let trend = figures::weekly_trend(pool, &trend_keys, first, d.friday, d.known).await?;

    let query = query_string(d);
    let mut week_total = RegionWeek::default();
    let mut expected_total = 0;
    let mut signal_total = SignalTotals::default();
    let mut connections = Vec::new();
    let mut by_region = Vec::new();
    let mut by_kind = Vec::new();
    for (region, totals) in regions.iter().zip(&signals) {
        let week = weeks.get(&region.code).copied().unwrap_or_default();
        let expect = expected.get(&region.code).copied().unwrap_or(0);
        let link = Some(format!("/monitoring/zastupnik/{}?{query}", region.code));
        connections.push(Line {
            head: region.name.clone(),
            link: link.clone(),
            cells: connection_cells(tr, &week, expect),
        });
        by_region.push(Line {
            head: region.name.clone(),
            link: link.clone(),
            cells: signal_cells(tr, totals),
        });
        by_kind.push(Line {
            head: region.name.clone(),
            link,
            cells: kind_cells(totals),
        });
        week_total.add(week);
        expected_total += expect;
        signal_total.add(totals);
    }
    let title = if scope.all {
        tr.t("zd-federal")
    } else if let [only] = regions.as_slice() {
        only.name.clone()
    } else {
        tr.t("zd-my-regions")
    };
    let total = |cells| {
        Some(Line {
            head: tr.t("zd-total"),
            link: None,
            cells,
        })
    };
    let mut kind_columns = vec![Column {
        label: tr.t("zd-col-region"),
        num: false,
    }];
    kind_columns.extend(SignalKind::ALL.iter().map(|(_, code, _)| Column {
        label: capitalised(&tr.of("signal-kind", code)),
        num: true,
    }));
    kind_columns.push(Column {
        label: tr.t("zd-col-signals"),
        num: true,
    });
    let friday = format_date(d.friday);
    let period = period_text(tr, d);
    let tables = vec![
        Table {
            id: "podklyucheniya",
            heading: tr.t("zd-connections"),
            caption: tr.with(
                "zd-connections-caption",
                &[("title", title.clone().into()), ("friday", friday.into())],
            ),
            columns: connection_columns(tr, "zd-col-region"),
            lines: connections,
            total: total(connection_cells(tr, &week_total, expected_total)),
        },
        Table {
            id: "signaly",
            heading: tr.t("zd-signals-by-region"),
            caption: format!("{}: {title}, {period}", tr.t("zd-signals-by-region")),
            columns: signal_columns(tr, "zd-col-region"),
            lines: by_region,
            total: total(signal_cells(tr, &signal_total)),
        },
        Table {
            id: "vidy",
            heading: tr.t("zd-signals-by-kind"),
            caption: format!("{}: {title}, {period}", tr.t("zd-signals-by-region-kind")),
            columns: kind_columns,
            lines: by_kind,
            total: total(kind_cells(&signal_total)),
        },
        trend_table(tr, &title, &trend, expected_total),
    ];
    let mut facts = week_facts(tr, d, &week_total, expected_total);
    facts.extend(signal_facts(tr, d, &signal_total));
    Ok(Dashboard {
        region: None,
        title,
        facts,
        chart: trend_chart(tr, &trend),
        notes: notes(tr, d, signal_total.drills),
        tables,
        page: OnceLock::new(),
    })
}

fn connection_columns(tr: Tr, first: &str) -> Vec<Column> {
    columns(
        tr,
        &[
            (first, false),
            ("zd-col-children", true),
            ("zd-col-adults", true),
            ("zd-col-filed", true),
            ("zd-col-expected", true),
            ("zd-col-completeness", true),
            ("zd-col-on-time", true),
            ("zd-col-late", true),
            ("zd-col-on-time-share", true),
        ],
    )
}

fn connection_cells(tr: Tr, week: &RegionWeek, expected: i64) -> Vec<Cell> {
    vec![
        Cell::count(week.children),
        Cell::count(week.adults),
        Cell::count(week.filed),
        Cell::count(expected),
        Cell::share(tr, week.filed, expected),
        Cell::count(week.on_time),
        Cell::count(week.late),
        Cell::share(tr, week.on_time, expected),
    ]
}

fn kind_cells(t: &SignalTotals) -> Vec<Cell> {
    t.by_kind
        .iter()
        .map(|n| Cell::count(*n))
        .chain([Cell::count(t.signals)])
        .collect()
}

fn capitalised(label: &str) -> String {
    let mut chars = label.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A region's view: one row per municipality, the signals by kind.
async fn regional(
    state: &AppState,
    tr: Tr,
    region: &RegionName,
    d: &Dates,
) -> AppResult<Dashboard> {
    let pool = state.log.pool();
    let municipalities = figures::municipality_weeks(pool, &region.code, d.friday, d.known).await?;
    let codes = vec![region.code.clone()];
    let first = d.friday - Duration::weeks(TREND_WEEKS - 1);
    let trend = figures::weekly_trend(pool, &codes, first, d.friday, d.known).await?;
    let mut keys: Vec<(String, String)> = SignalKind::ALL
        .iter()
        .map(|(_, code, _)| (region.code.clone(), (*code).to_owned()))
        .collect();
    keys.push((region.code.clone(), EVERY.to_owned()));
    let mut signals = figures::signals_between(pool, &keys, d.from, d.to).await?;
    let signal_total = signals.pop().unwrap_or_default();

    let expected = i64::try_from(municipalities.len()).unwrap_or(0);
    let mut week = RegionWeek::default();
    let lines = municipalities
        .iter()
        .map(|m| {
            week.children += m.children;
            week.adults += m.adults;
            match m.filed {
                Some(Timeliness::OnTime) => week.on_time += 1,
                Some(Timeliness::Late) => week.late += 1,
                _ => {}
            }
            week.filed += i64::from(m.filed.is_some());
            let status = match m.filed {
                Some(t) => tr.of("zd-filed", t.code()),
                None => tr.t("zd-filed-none"),
            };
            Line {
                head: m.name.clone(),
                link: None,
                cells: vec![
                    Cell::count(m.children),
                    Cell::count(m.adults),
                    m.figures_of
                        .map_or_else(Cell::empty, |f| Cell::text(format_date(f))),
                    Cell::text(status),
                ],
            }
        })
        .collect();
    let title = region.name.clone();
    let period = period_text(tr, d);
    let friday = format_date(d.friday);
    let kinds = SignalKind::ALL
        .iter()
        .zip(&signals)
        .map(|((_, code, _), totals)| Line {
            head: capitalised(&tr.of("signal-kind", code)),
            link: None,
            cells: signal_cells(tr, totals),
        })
        .collect();
    let total = |cells| {
        Some(Line {
            head: tr.t("zd-total"),
            link: None,
            cells,
        })
    };
    let tables = vec![
        Table {
            id: "podklyucheniya",
            heading: tr.t("zd-connections-municipal"),
            caption: tr.with(
                "zd-connections-caption",
                &[("title", title.clone().into()), ("friday", friday.into())],
            ),
            columns: columns(
                tr,
                &[
                    ("zd-col-municipality", false),
                    ("zd-col-children", true),
                    ("zd-col-adults", true),
                    ("zd-col-figures-of", false),
                    ("zd-col-this-week", false),
                ],
            ),
            lines,
            total: total(vec![
                Cell::count(week.children),
                Cell::count(week.adults),
                Cell::empty(),
                Cell::text(tr.with(
                    "zd-filed-of",
                    &[
                        ("filed", thousands(week.filed).into()),
                        ("expected", thousands(expected).into()),
                        ("share", Cell::share(tr, week.filed, expected).shown.into()),
                    ],
                )),
            ]),
        },
        Table {
            id: "signaly",
            heading: tr.t("zd-signals-by-kind"),
            caption: format!("{}: {title}, {period}", tr.t("zd-signals-by-kind")),
            columns: signal_columns(tr, "zd-col-kind"),
            lines: kinds,
            total: total(signal_cells(tr, &signal_total)),
        },
        trend_table(tr, &title, &trend, expected),
    ];
    let mut facts = week_facts(tr, d, &week, expected);
    facts.extend(signal_facts(tr, d, &signal_total));
    Ok(Dashboard {
        region: Some(region.code.clone()),
        title,
        facts,
        chart: trend_chart(tr, &trend),
        notes: notes(tr, d, signal_total.drills),
        tables,
        page: OnceLock::new(),
    })
}

/// Dashboards already built, kept while the projections they read (`zastupnik`, and
/// `reference` for the regions and municipalities) have not moved: a page asked again costs
/// one read of their checkpoints.
pub type DashCache = Kept<Version, DashKey, Dashboard>;

/// The checkpoints of `zastupnik` and `reference`, in that order.
pub type Version = (Option<OffsetDateTime>, Option<OffsetDateTime>);

/// What a page is of: the checkpoints as they stand ([`AppState::stamps`]).
async fn version(state: &AppState) -> AppResult<Version> {
    let marks = state.stamps.current().await?;
    Ok((marks.checkpoint("zastupnik"), marks.checkpoint("reference")))
}

/// What a dashboard depends on besides the projections.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DashKey {
    lang: Lang,
    /// The region's code and name (read before the version: a renamed region is another
    /// key, so a page built with the old name is never served for the new one).
    region: Option<(String, String)>,
    /// The regions in the viewer's scope (`None`: all).
    regions: Option<Vec<String>>,
    dates: Dates,
}

/// Dashboards kept at most (a few tens of kilobytes each).
pub const KEPT: usize = 1_024;

/// A region's dashboard, or the federal one of the viewer's scope: kept, or built.
async fn dashboard(
    state: &AppState,
    tr: Tr,
    region: Option<&RegionName>,
    scope: &WeeklyScope,
    d: &Dates,
    version: &Version,
) -> AppResult<Arc<Dashboard>> {
    let key = DashKey {
        lang: tr.lang,
        region: region.map(|r| (r.code.clone(), r.name.clone())),
        regions: (!scope.all).then(|| scope.regions.clone()),
        dates: *d,
    };
    if let Some(kept) = state.zastupnik.get(version, &key) {
        return Ok(kept);
    }
    let built = match region {
        Some(region) => regional(state, tr, region, d).await?,
        None => federal(state, tr, scope, d, version.1).await?,
    };
    Ok(state.zastupnik.put(version, key, built))
}

// ---------------------------------------------------------------------------------------
// Pages and files

/// The figures under the page's form: the same for every viewer (no chrome in them).
#[derive(Template)]
#[template(path = "monitoring/zastupnik_body.html")]
struct DashBody<'a> {
    c: Words,
    d: &'a Dashboard,
    action: &'a str,
    query: &'a str,
    /// Always false: the print layout includes the body itself.
    print: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "monitoring/zastupnik.html")]
struct DashPage<'a> {
    c: Chrome,
    d: &'a Dashboard,
    /// `d`'s body, rendered (askama escaped every value in it).
    body: &'a Body,
    error: Option<String>,
    action: String,
    na: String,
    s: String,
    po: String,
    izvestno: String,
    query: String,
    as_of: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "monitoring/zastupnik_print.html")]
struct DashPrint {
    c: Chrome,
    d: Arc<Dashboard>,
    action: String,
    query: String,
    print: bool,
    /// The as-of line under the title.
    as_of: String,
    printed: String,
}

/// Reads the dates; a refusal falls back to the defaults and is shown.
fn dates_or_default(tr: Tr, query: &DashQuery, today: Date) -> (Dates, Option<Refusal>) {
    match dates(tr, query, today) {
        Ok(d) => (d, None),
        Err(refusal) => {
            let defaults = dates(tr, &DashQuery::default(), today);
            #[allow(clippy::unwrap_used)] // the defaults are always a valid period
            (defaults.unwrap(), Some(refusal))
        }
    }
}

/// The page (or its print layout); `problem`: a message about the request that is not a
/// date's (a file that cannot be made), shown like a bad date's, with 400.
async fn respond(
    state: &AppState,
    c: Chrome,
    query: DashQuery,
    region: Option<&RegionName>,
    scope: &WeeklyScope,
    problem: Option<String>,
    version: &Version,
) -> AppResult<Response> {
    let tr = c.tr;
    let today = today_in(region.map_or(MOSCOW, |r| r.time_zone.as_str()));
    let (d, refusal) = dates_or_default(tr, &query, today);
    let refusal = refusal.or(problem.map(|message| Refusal {
        code: "zd-bad-file".to_owned(),
        message,
    }));
    let dashboard = dashboard(state, tr, region, scope, &d, version).await?;
    let action = match region {
        Some(r) => format!("/monitoring/zastupnik/{}", r.code),
        None => "/monitoring/zastupnik".to_owned(),
    };
    let printed = local_time(&OffsetDateTime::now_utc(), MOSCOW);
    if query
        .pechat
        .as_deref()
        .is_some_and(|p| !p.is_empty() && p != "0")
        && refusal.is_none()
    {
        let as_of = as_of_line(tr, &d);
        return Ok(DashPrint {
            d: dashboard,
            action,
            query: query_string(&d),
            print: true,
            as_of,
            printed,
            c,
        }
        .into_response());
    }
    let query_string = query_string(&d);
    let body = match dashboard.page.get() {
        Some(body) => body,
        None => {
            let html = DashBody {
                c: Words { tr },
                d: &dashboard,
                action: &action,
                query: &query_string,
                print: false,
            }
            .render()
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("rendering the dashboard: {e}")))?;
            dashboard.page.get_or_init(|| Body {
                title: dashboard.title.clone(),
                html,
            })
        }
    };
    let page = DashPage {
        as_of: as_of_line(tr, &d),
        d: &dashboard,
        body,
        error: refusal.as_ref().map(|r| r.message.clone()),
        action,
        na: d.on.to_string(),
        s: d.from.to_string(),
        po: d.to.to_string(),
        izvestno: d.known.map(|k| k.to_string()).unwrap_or_default(),
        query: query_string,
        c,
    };
    let status = if refusal.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, page).into_response())
}

/// The tables a view has (`vidy`, regions by kind, only federally).
fn table_ids(region: bool) -> &'static [&'static str] {
    if region {
        &["podklyucheniya", "signaly", "dinamika"]
    } else {
        &["podklyucheniya", "signaly", "vidy", "dinamika"]
    }
}

/// One table as a file. Bad dates, an unknown format or table: the page with the message,
/// 400.
async fn download(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    query: DashQuery,
    region: Option<&RegionName>,
    scope: &WeeklyScope,
    version: &Version,
) -> AppResult<Response> {
    let tr = c.tr;
    let today = today_in(region.map_or(MOSCOW, |r| r.time_zone.as_str()));
    let format = query.format.as_deref().unwrap_or("xlsx");
    let wanted = query.tablica.as_deref().unwrap_or("podklyucheniya");
    let problem = if !matches!(format, "csv" | "xlsx") {
        Some(tr.t("zd-bad-format"))
    } else if !table_ids(region.is_some()).contains(&wanted) {
        Some(tr.t("zd-bad-table"))
    } else {
        None
    };
    let d = match dates(tr, &query, today) {
        Ok(d) if problem.is_none() => d,
        _ => return respond(state, c, query, region, scope, problem, version).await,
    };
    let dashboard = dashboard(state, tr, region, scope, &d, version).await?;
    let Some(table) = dashboard.tables.iter().find(|t| t.id == wanted) else {
        return Err(AppError::NotFound);
    };
    let headers = table.headers();
    let values = table.values();
    let body = if format == "csv" {
        let rows: Vec<Vec<String>> = values
            .iter()
            .map(|row| row.iter().map(Value::csv).collect())
            .collect();
        export::csv(&headers, &rows)?
    } else {
        workbook(&table.heading, &headers, &values)?
    };
    crate::audit::record(
        state,
        viewer,
        crate::audit::Action::Export,
        Some("zastupnik_dashboard"),
        region.map(|r| r.code.as_str()),
    )
    .await?;
    let name = format!(
        "zastupnik-{}-{}-{}.{format}",
        region.map_or("rf", |r| r.code.as_str()),
        table.id,
        d.friday
    );
    Ok(export::download(body, &name))
}

/// One sheet: numbers stay numbers (percentages with one decimal).
fn workbook(sheet: &str, headers: &[String], rows: &[Vec<Value>]) -> AppResult<Vec<u8>> {
    use rust_xlsxwriter::{Format, Workbook};
    let fail = |e: rust_xlsxwriter::XlsxError| AppError::Unexpected(e.into());
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let decimal = Format::new().set_num_format("0.0");
    let worksheet = workbook.add_worksheet();
    // A sheet's name: at most 31 characters, none of []:*?/\.
    let name: String = sheet
        .chars()
        .filter(|c| !"[]:*?/\\".contains(*c))
        .take(31)
        .collect();
    worksheet.set_name(name).map_err(fail)?;
    for (col, title) in (0_u16..).zip(headers) {
        worksheet
            .write_string_with_format(0, col, title, &bold)
            .map_err(fail)?;
    }
    for (row, cells) in (1_u32..).zip(rows) {
        for (col, cell) in (0_u16..).zip(cells) {
            match cell {
                Value::Int(v) => worksheet.write_number(row, col, *v as f64).map(|_| ()),
                Value::Dec(v) => worksheet
                    .write_number_with_format(row, col, *v, &decimal)
                    .map(|_| ()),
                Value::Text(t) => worksheet.write_string(row, col, t).map(|_| ()),
                Value::Empty => Ok(()),
            }
            .map_err(fail)?;
        }
    }
    worksheet.set_freeze_panes(1, 0).map_err(fail)?;
    worksheet.autofit();
    workbook.save_to_buffer().map_err(fail)
}

async fn federal_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    let scope = WeeklyScope::of(&viewer);
    let version = version(&state).await?;
    respond(&state, c, query, None, &scope, None, &version).await
}

async fn federal_export(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    let scope = WeeklyScope::of(&viewer);
    let version = version(&state).await?;
    download(&state, c, &viewer, query, None, &scope, &version).await
}

/// The region of a region's page or file: out of scope (or unknown) is 404.
async fn region_of(
    state: &AppState,
    scope: &WeeklyScope,
    code: &str,
    version: &Version,
) -> AppResult<RegionName> {
    if !scope.sees_region(code) {
        return Err(AppError::NotFound);
    }
    crate::pages::vyzov_dash::region_names(state, version.1)
        .await?
        .iter()
        .find(|r| r.code == code)
        .cloned()
        .ok_or(AppError::NotFound)
}

async fn region_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Path(code): Path<String>,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    let scope = WeeklyScope::of(&viewer);
    let version = version(&state).await?;
    let region = region_of(&state, &scope, &code, &version).await?;
    respond(&state, c, query, Some(&region), &scope, None, &version).await
}

async fn region_export(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Path(code): Path<String>,
    Query(query): Query<DashQuery>,
) -> AppResult<Response> {
    let scope = WeeklyScope::of(&viewer);
    let version = version(&state).await?;
    let region = region_of(&state, &scope, &code, &version).await?;
    download(&state, c, &viewer, query, Some(&region), &scope, &version).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::i18n::Lang;
    use time::macros::date;

    #[test]
    fn the_week_is_the_latest_friday() {
        assert_eq!(
            friday_on_or_before(date!(2026 - 03 - 13)),
            date!(2026 - 03 - 13)
        );
        assert_eq!(
            friday_on_or_before(date!(2026 - 03 - 14)),
            date!(2026 - 03 - 13)
        );
        assert_eq!(
            friday_on_or_before(date!(2026 - 03 - 19)),
            date!(2026 - 03 - 13)
        );
        assert_eq!(
            friday_on_or_before(date!(2026 - 03 - 20)),
            date!(2026 - 03 - 20)
        );
    }

    #[test]
    fn dates_default_to_the_last_90_days_and_refuse_nonsense() {
        let tr = Tr::new(Lang::Ru);
        let today = date!(2026 - 03 - 10);
        let d = dates(tr, &DashQuery::default(), today).unwrap();
        assert_eq!(
            (d.on, d.to, d.friday),
            (today, today, date!(2026 - 03 - 06))
        );
        assert_eq!((d.to - d.from).whole_days(), 89);
        let asked = DashQuery {
            na: Some("01.02.2026".into()),
            izvestno: Some("2026-01-15".into()),
            ..DashQuery::default()
        };
        let d = dates(tr, &asked, today).unwrap();
        assert_eq!(d.to, date!(2026 - 02 - 01));
        assert_eq!(d.known, Some(date!(2026 - 01 - 15)));
        let only_known = DashQuery {
            izvestno: Some("2026-01-15".into()),
            ..DashQuery::default()
        };
        assert_eq!(
            dates(tr, &only_known, today).unwrap().on,
            date!(2026 - 01 - 15)
        );
        let reversed = DashQuery {
            s: Some("2026-03-01".into()),
            po: Some("2026-02-01".into()),
            ..DashQuery::default()
        };
        assert_eq!(
            dates(tr, &reversed, today).unwrap_err().code,
            "zd-bad-period"
        );
        let garbage = DashQuery {
            na: Some("вчера".into()),
            ..DashQuery::default()
        };
        let refusal = dates(tr, &garbage, today).unwrap_err();
        assert_eq!(refusal.code, "zd-bad-date");
        assert!(refusal.message.contains("вчера"));
        let after = DashQuery {
            na: Some("2026-02-01".into()),
            po: Some("2026-02-10".into()),
            ..DashQuery::default()
        };
        assert_eq!(
            dates(tr, &after, today).unwrap_err().code,
            "zd-period-after"
        );
    }

    #[test]
    fn cells_keep_numbers_for_the_files() {
        let tr = Tr::new(Lang::Ru);
        let share = Cell::share(tr, 2, 3);
        assert_eq!(share.value, Value::Dec(66.7));
        assert_eq!(share.shown, "66,7\u{a0}%");
        assert_eq!(share.value.csv(), "66.7");
        assert_eq!(Cell::share(tr, 1, 0).value, Value::Empty);
        let time = Cell::seconds(tr, Some(185.4));
        assert_eq!(
            (time.shown.as_str(), time.value),
            ("3 мин 05 с", Value::Int(185))
        );
        assert_eq!(Cell::count(12345).shown, "12\u{202f}345");
    }
}
