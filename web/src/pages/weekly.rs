//! «Заступник»: the weekly connection reports. The municipal education department files
//! its Friday report (`/zastupnik/otchet`); the region's ministry sees the week at a glance,
//! accepts or returns reports, unlocks a locked week, reminds who has not filed, keeps the
//! schedule and the departments (`/zastupnik/svodka`, `/zastupnik/nastroyki`) and loads
//! history (`/zastupnik/import`); the ministry reads the summary with its trend (SVG),
//! completeness and timeliness, as a page, a print layout and XLSX.
//!
//! Scope: a department files and reads its own municipality only; the region's ministry
//! (an analyst over the region) reads and reviews its municipalities; the curator reads
//! her region; federal analysts read everything; the administrator does everything.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Multipart, Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::{Role, Scope, Text};
use opora_domain::reference::RegionCode;
use opora_domain::weekly::{
    self as weekly, check_row, parse_clock, report_id, Department, Figures, Filing, FilingContext,
    ImportCommand, ImportedRow, Period, ReportingSetup, Review, Schedule, SchoolFigures,
    SetupCommand, Status, Timeliness, Week, WeeklyCommand, WeeklyError, WeeklyEvent, WeeklyImport,
    WeeklyReport,
};
use opora_domain::{format_date, parse_date};
use opora_store::{CommandBus, CommandError, CommandMeta};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::export;
use crate::i18n::{local_time, Tr};
use crate::pages::cases::{domain_refusal, FormFields};
use crate::pages::persons::Choice;
use crate::pages::{NoticeQuery, Outcome, RecordId, Refusal};
use crate::AppState;

/// Who files: the municipal education department (the administrator, to mend).
pub const FILERS: &[Role] = &[Role::MunicipalEducation, Role::Administrator];
/// Who reads a report's page: the filers (their own), the region, the ministry.
pub const READERS: &[Role] = &[
    Role::MunicipalEducation,
    Role::MinistryAnalyst,
    Role::RegionalCurator,
    Role::Administrator,
];
/// Who reads the summary of a week: the region and the ministry.
pub const SUMMARY: &[Role] = &[
    Role::MinistryAnalyst,
    Role::RegionalCurator,
    Role::Administrator,
];
/// Who reviews, unlocks, reminds, sets the schedule and imports: the region's ministry
/// (an analyst over the region) and the administrator.
pub const REVIEWERS: &[Role] = &[Role::MinistryAnalyst, Role::Administrator];
/// The largest import file (XLSX or CSV).
const IMPORT_LIMIT: usize = 2 * 1024 * 1024;
/// Per-school lines the filing form offers.
const SCHOOL_LINES: usize = 12;

pub fn routes() -> Routes {
    Routes::new()
        .get("/zastupnik/otchet", Rule::Roles(FILERS), file_page)
        .post("/zastupnik/otchet", Rule::Roles(FILERS), file)
        .get("/zastupnik/otchet/{id}", Rule::Roles(READERS), report_page)
        .post(
            "/zastupnik/otchet/{id}/reshenie",
            Rule::Roles(REVIEWERS),
            review,
        )
        .post("/zastupnik/razblokirovat", Rule::Roles(REVIEWERS), unlock)
        .get("/zastupnik/svodka", Rule::Roles(SUMMARY), summary_page)
        .get("/zastupnik/svodka.xlsx", Rule::Roles(SUMMARY), summary_xlsx)
        .get(
            "/zastupnik/svodka/pechat",
            Rule::Roles(SUMMARY),
            summary_print,
        )
        .get(
            "/zastupnik/napominaniya.csv",
            Rule::Roles(REVIEWERS),
            reminders_csv,
        )
        .post("/zastupnik/napominaniya", Rule::Roles(REVIEWERS), remind)
        .get(
            "/zastupnik/nastroyki",
            Rule::Roles(REVIEWERS),
            settings_page,
        )
        .post(
            "/zastupnik/nastroyki",
            Rule::Roles(REVIEWERS),
            save_settings,
        )
        .get("/zastupnik/import", Rule::Roles(REVIEWERS), import_page)
        .get(
            "/zastupnik/import/shablon.csv",
            Rule::Roles(REVIEWERS),
            import_template,
        )
        .post_upload(
            "/zastupnik/import",
            Rule::Roles(REVIEWERS),
            import,
            IMPORT_LIMIT + 64 * 1024,
        )
}

// ---------------------------------------------------------------------------------------
// Scope

/// Where a viewer reads, files and reviews weekly reports.
#[derive(Debug, Clone, Default)]
pub struct WeeklyScope {
    pub all: bool,
    pub regions: Vec<String>,
    pub municipalities: Vec<Uuid>,
    pub review_all: bool,
    pub review_regions: Vec<String>,
    /// Municipalities whose reports this viewer files (the administrator: any).
    pub files: Vec<Uuid>,
}

impl WeeklyScope {
    pub fn of(viewer: &Viewer) -> Self {
        let mut scope = Self::default();
        let Some(user) = &viewer.user else {
            return scope;
        };
        for grant in &user.grants {
            match (grant.role, &grant.scope) {
                (Role::Administrator, _) => {
                    scope.all = true;
                    scope.review_all = true;
                }
                (Role::MinistryAnalyst, Scope::Federal) => scope.all = true,
                (Role::MinistryAnalyst, Scope::Region { region }) => {
                    scope.regions.push(region.as_str().to_owned());
                    scope.review_regions.push(region.as_str().to_owned());
                }
                (Role::RegionalCurator, Scope::Region { region }) => {
                    scope.regions.push(region.as_str().to_owned())
                }
                (Role::MunicipalEducation, Scope::Municipality { municipality, .. }) => {
                    scope.municipalities.push(*municipality);
                    scope.files.push(*municipality);
                }
                _ => {}
            }
        }
        scope
    }
    pub fn sees(&self, region: &str, municipality: Uuid) -> bool {
        self.sees_region(region) || self.municipalities.contains(&municipality)
    }
    pub fn sees_region(&self, region: &str) -> bool {
        self.all || self.regions.iter().any(|r| r == region)
    }
    pub fn reviews(&self, region: &str) -> bool {
        self.review_all || self.review_regions.iter().any(|r| r == region)
    }
    pub fn may_file(&self, municipality: Uuid) -> bool {
        self.review_all || self.files.contains(&municipality)
    }
}

// ---------------------------------------------------------------------------------------
// Places, schedule, departments

/// A municipality with its region.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Place {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    pub region_name: String,
    pub time_zone: String,
}

pub(crate) async fn place(state: &AppState, id: Uuid) -> AppResult<Option<Place>> {
    let row = sqlx::query(
        "SELECT m.id, m.name, m.region_code, r.name AS region_name, r.time_zone \
           FROM reference.municipality m JOIN reference.region r ON r.code = m.region_code \
          WHERE m.id = $1",
    )
    .bind(id)
    .fetch_optional(state.log.pool())
    .await?;
    row.map(|r| -> AppResult<Place> {
        Ok(Place {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            region: r.try_get("region_code")?,
            region_name: r.try_get("region_name")?,
            time_zone: r.try_get("time_zone")?,
        })
    })
    .transpose()
}

/// The region's schedule (the default in its zone when it has set none).
pub(crate) async fn schedule_of(state: &AppState, region: &str) -> AppResult<Schedule> {
    let row = sqlx::query(
        "SELECT r.time_zone, s.deadline_day, s.deadline_minute, s.lock_days \
           FROM reference.region r LEFT JOIN weekly.schedule s ON s.region_code = r.code \
          WHERE r.code = $1",
    )
    .bind(region)
    .fetch_optional(state.log.pool())
    .await?;
    let Some(row) = row else {
        return Ok(Schedule::default_in("Europe/Moscow"));
    };
    let zone: String = row.try_get("time_zone")?;
    let day: Option<i16> = row.try_get("deadline_day")?;
    Ok(match day {
        None => Schedule::default_in(&zone),
        Some(day) => Schedule {
            time_zone: zone,
            deadline_day: u8::try_from(day).unwrap_or(0),
            deadline_minute: u16::try_from(row.try_get::<i16, _>("deadline_minute")?)
                .unwrap_or(weekly::DEFAULT_DEADLINE_MINUTE),
            lock_days: u16::try_from(row.try_get::<i16, _>("lock_days")?)
                .unwrap_or(weekly::DEFAULT_LOCK_DAYS),
        },
    })
}

async fn pupils_of(state: &AppState, municipality: Uuid) -> AppResult<Option<u32>> {
    let pupils: Option<Option<i32>> =
        sqlx::query_scalar("SELECT pupils FROM weekly.department WHERE municipality = $1")
            .bind(municipality)
            .fetch_optional(state.log.pool())
            .await?;
    Ok(pupils.flatten().and_then(|p| u32::try_from(p).ok()))
}

/// The latest figures filed for a week before `week` (what "last week" shows).
pub(crate) async fn previous_figures(
    state: &AppState,
    municipality: Uuid,
    week: Week,
) -> AppResult<Option<(Week, Figures)>> {
    let row = sqlx::query(
        "SELECT friday, children, adults, schools, schools_with_responsible FROM weekly.report \
          WHERE municipality = $1 AND friday < $2 AND children IS NOT NULL \
          ORDER BY friday DESC LIMIT 1",
    )
    .bind(municipality)
    .bind(week.friday())
    .fetch_optional(state.log.pool())
    .await?;
    row.map(|r| -> AppResult<Option<(Week, Figures)>> {
        let week = Week::ending(r.try_get("friday")?);
        Ok(week.map(|w| (w, figures_of(&r))))
    })
    .transpose()
    .map(Option::flatten)
}

fn figures_of(row: &sqlx::postgres::PgRow) -> Figures {
    let get = |name: &str| {
        row.try_get::<Option<i32>, _>(name)
            .ok()
            .flatten()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    Figures {
        children: get("children"),
        adults: get("adults"),
        schools: get("schools"),
        schools_with_responsible: get("schools_with_responsible"),
    }
}

fn weekly_refusal(tr: Tr, error: &WeeklyError) -> Refusal {
    domain_refusal(tr, "weekly-error", error)
}

/// A Friday from a form or a query (`YYYY-MM-DD` or `ДД.ММ.ГГГГ`).
fn week_from(raw: &str) -> Option<Week> {
    parse_date(raw).and_then(Week::ending)
}

// ---------------------------------------------------------------------------------------
// Filing

/// A whole non-negative number as people type it (`1 250`).
fn count(tr: Tr, label_key: &str, raw: &str) -> Result<u32, Refusal> {
    let cleaned: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    match cleaned.parse::<u32>() {
        Ok(value) if !cleaned.starts_with('+') => Ok(value),
        _ => {
            use fluent_templates::fluent_bundle::FluentValue;
            Err(Refusal {
                code: "weekly-bad-number".into(),
                message: tr.with(
                    "weekly-bad-number",
                    &[
                        ("field", FluentValue::from(tr.t(label_key))),
                        ("value", FluentValue::from(raw.to_owned())),
                    ],
                ),
            })
        }
    }
}

/// The figures of a filing form (`children`, `adults`, `schools`,
/// `schools_with_responsible`, `comment`, per-school lines `school_N`, `school_N_children`,
/// `school_N_adults`, `school_N_responsible`). Totals left empty are taken from the lines.
pub(crate) fn read_filing(tr: Tr, form: &FormFields) -> Result<Filing, Refusal> {
    let mut schools = Vec::new();
    for i in 0..weekly::MAX_SCHOOLS {
        let name = form.get(&format!("school_{i}"));
        let children_raw = form.get(&format!("school_{i}_children"));
        let adults_raw = form.get(&format!("school_{i}_adults"));
        if name.is_empty() && children_raw.is_empty() && adults_raw.is_empty() {
            if i >= SCHOOL_LINES && form.get(&format!("school_{}", i + 1)).is_empty() {
                break;
            }
            continue;
        }
        let Some(school) = Text::parse(name) else {
            return Err(Refusal::new(tr, "weekly-school-unnamed"));
        };
        schools.push(SchoolFigures {
            school,
            children: count(tr, "weekly-children", or_zero(children_raw))?,
            adults: count(tr, "weekly-adults", or_zero(adults_raw))?,
            responsible_named: form.flag(&format!("school_{i}_responsible")),
        });
    }
    let total = |field: &str, label: &str, from_lines: u32| -> Result<u32, Refusal> {
        match form.get(field) {
            "" if !schools.is_empty() => Ok(from_lines),
            raw => count(tr, label, raw),
        }
    };
    let sum =
        |pick: fn(&SchoolFigures) -> u32| schools.iter().map(pick).fold(0u32, u32::saturating_add);
    let figures = Figures {
        children: total("children", "weekly-children", sum(|s| s.children))?,
        adults: total("adults", "weekly-adults", sum(|s| s.adults))?,
        schools: total(
            "schools",
            "weekly-schools",
            u32::try_from(schools.len()).unwrap_or(u32::MAX),
        )?,
        schools_with_responsible: total(
            "schools_with_responsible",
            "weekly-responsible",
            sum(|s| u32::from(s.responsible_named)),
        )?,
    };
    Ok(Filing {
        figures,
        schools,
        comment: Text::parse(form.get("comment")),
    })
}

fn or_zero(raw: &str) -> &str {
    if raw.is_empty() {
        "0"
    } else {
        raw
    }
}

/// Files the form's report: `municipality` (the viewer's own if it files for one only),
/// `week` (a Friday), the figures. The report's id is the municipality's and week's.
pub(crate) async fn file_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<Uuid> {
    let scope = WeeklyScope::of(viewer);
    let municipality = match Uuid::parse_str(form.get("municipality")) {
        Ok(id) => id,
        Err(_) if scope.files.len() == 1 => scope.files[0],
        Err(_) => return Ok(Err(Refusal::new(tr, "weekly-choose-municipality"))),
    };
    let place = match place(state, municipality).await? {
        Some(place) if scope.may_file(municipality) => place,
        _ => return Err(AppError::NotFound),
    };
    let Some(week) = week_from(form.get("week")) else {
        return Ok(Err(Refusal::new(tr, "weekly-bad-week")));
    };
    let filing = match read_filing(tr, form) {
        Ok(filing) => filing,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let Ok(region) = RegionCode::parse(&place.region) else {
        return Err(AppError::NotFound);
    };
    let context = FilingContext {
        now: OffsetDateTime::now_utc(),
        schedule: schedule_of(state, &place.region).await?,
        previous: previous_figures(state, municipality, week)
            .await?
            .map(|(_, f)| f),
        pupils: pupils_of(state, municipality).await?,
    };
    let id = report_id(municipality, week);
    let command = WeeklyCommand::File {
        period: Period {
            region,
            municipality,
            week,
        },
        filing,
        context,
    };
    execute_report(state, viewer, tr, id, command, form.command_id()).await
}

async fn execute_report(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    command: WeeklyCommand,
    command_id: Uuid,
) -> Outcome<Uuid> {
    let bus = CommandBus::<WeeklyReport>::new(state.log.clone(), ());
    let meta = CommandMeta::new(viewer.actor()).with_command_id(command_id);
    match bus.execute(&id.to_string(), command, &meta).await {
        Ok(_) => Ok(Ok(id)),
        Err(CommandError::Rejected(error)) => Ok(Err(weekly_refusal(tr, &error))),
        Err(CommandError::Conflict) => Ok(Err(Refusal::new(tr, "weekly-conflict"))),
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FileQuery {
    #[serde(default)]
    pub mo: Option<Uuid>,
    #[serde(default)]
    pub nedelya: Option<String>,
    #[serde(default)]
    pub notice: Option<String>,
}

/// One week of a municipality's history, as the filing page lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WeekRow {
    pub report: Uuid,
    #[serde(with = "crate::api::date")]
    pub friday: time::Date,
    pub filed: bool,
    pub children: Option<i32>,
    pub adults: Option<i32>,
    pub schools: Option<i32>,
    pub schools_with_responsible: Option<i32>,
    pub status: String,
    pub status_label: String,
    pub review_comment: Option<String>,
    pub filed_at: Option<String>,
    pub locked: bool,
}

/// A municipality's last `weeks` weeks up to `last`, newest first.
pub(crate) async fn history(
    state: &AppState,
    tr: Tr,
    place: &Place,
    schedule: &Schedule,
    last: Week,
    weeks: u16,
) -> AppResult<Vec<WeekRow>> {
    let now = OffsetDateTime::now_utc();
    let list = last.last(weeks);
    let rows = sqlx::query(
        "SELECT * FROM weekly.report WHERE municipality = $1 AND friday BETWEEN $2 AND $3",
    )
    .bind(place.id)
    .bind(list[0].friday())
    .bind(last.friday())
    .fetch_all(state.log.pool())
    .await?;
    let by_week: HashMap<time::Date, &sqlx::postgres::PgRow> = rows
        .iter()
        .filter_map(|r| r.try_get("friday").ok().map(|f| (f, r)))
        .collect();
    let mut out = Vec::with_capacity(list.len());
    for week in list.into_iter().rev() {
        let row = by_week.get(&week.friday());
        let children: Option<i32> = row.and_then(|r| r.try_get("children").ok().flatten());
        let unlocked: Option<OffsetDateTime> =
            row.and_then(|r| r.try_get("unlocked_until").ok().flatten());
        let status = row_status(row.copied(), schedule, week, now);
        out.push(WeekRow {
            report: report_id(place.id, week),
            friday: week.friday(),
            filed: children.is_some(),
            children,
            adults: row.and_then(|r| r.try_get("adults").ok().flatten()),
            schools: row.and_then(|r| r.try_get("schools").ok().flatten()),
            schools_with_responsible: row
                .and_then(|r| r.try_get("schools_with_responsible").ok().flatten()),
            status: status.code().to_owned(),
            status_label: tr.of("weekly-status", status.code()),
            review_comment: row.and_then(|r| r.try_get("review_comment").ok().flatten()),
            filed_at: row
                .and_then(|r| {
                    r.try_get::<Option<OffsetDateTime>, _>("filed_at")
                        .ok()
                        .flatten()
                })
                .map(|at| local_time(&at, &place.time_zone)),
            locked: closed(schedule, week, now, unlocked),
        });
    }
    Ok(out)
}

/// The deadline as people read it: the last minute that counts, local (`20.11.2026 23:59`).
fn deadline_text(schedule: &Schedule, week: Week) -> String {
    local_time(
        &(schedule.deadline(week) - Duration::minutes(1)),
        &schedule.time_zone,
    )
}

/// A week takes no filing: locked, and not opened (or the opening has run out).
fn closed(
    schedule: &Schedule,
    week: Week,
    now: OffsetDateTime,
    unlocked: Option<OffsetDateTime>,
) -> bool {
    schedule.is_locked(week, now) && unlocked.is_none_or(|u| now >= u)
}

/// The status of a read-model row (or of no row).
fn row_status(
    row: Option<&sqlx::postgres::PgRow>,
    schedule: &Schedule,
    week: Week,
    now: OffsetDateTime,
) -> Status {
    let filed = row
        .and_then(|r| r.try_get::<Option<i32>, _>("children").ok().flatten())
        .is_some();
    let review = row
        .and_then(|r| r.try_get::<String, _>("review").ok())
        .map_or(Review::Waiting, |r| Review::from_code(&r));
    weekly::status(filed, review, row_timeliness(row), (schedule, week, now))
}

/// The first filing's timeliness of a read-model row.
fn row_timeliness(row: Option<&sqlx::postgres::PgRow>) -> Option<Timeliness> {
    row.and_then(|r| r.try_get::<Option<String>, _>("timeliness").ok().flatten())
        .and_then(|t| Timeliness::from_code(&t))
}

#[derive(Template, WebTemplate)]
#[template(path = "weekly/file.html")]
struct FilePage {
    c: Chrome,
    places: Vec<Choice>,
    place: Option<Place>,
    weeks: Vec<Choice>,
    week: String,
    week_label: String,
    deadline: String,
    previous: Option<(String, Figures)>,
    history: Vec<WeekRow>,
    form: FormFields,
    school_lines: Vec<usize>,
    error: Option<String>,
    notice: Option<String>,
    command_id: String,
}

/// The municipalities a viewer files for (the administrator: all, by region).
async fn filing_places(state: &AppState, scope: &WeeklyScope) -> AppResult<Vec<Choice>> {
    let rows = sqlx::query(
        "SELECT m.id, m.name, r.name AS region FROM reference.municipality m \
           JOIN reference.region r ON r.code = m.region_code \
          WHERE $1 OR m.id = ANY($2) ORDER BY r.name, m.name",
    )
    .bind(scope.review_all)
    .bind(&scope.files)
    .fetch_all(state.log.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Choice {
                value: r.try_get::<Uuid, _>("id")?.to_string(),
                label: format!(
                    "{} ({})",
                    r.try_get::<String, _>("name")?,
                    r.try_get::<String, _>("region")?
                ),
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn file_page_for(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    municipality: Option<Uuid>,
    week: Option<Week>,
    form: FormFields,
    error: Option<String>,
    notice: Option<String>,
) -> AppResult<FilePage> {
    let scope = WeeklyScope::of(viewer);
    let places = filing_places(state, &scope).await?;
    let chosen = municipality.or_else(|| (scope.files.len() == 1).then(|| scope.files[0]));
    let place = match chosen {
        Some(id) if scope.may_file(id) => place(state, id).await?,
        Some(_) => return Err(AppError::NotFound),
        None => None,
    };
    let mut page = FilePage {
        c,
        places,
        place: None,
        weeks: Vec::new(),
        week: String::new(),
        week_label: String::new(),
        deadline: String::new(),
        previous: None,
        history: Vec::new(),
        form,
        school_lines: (0..SCHOOL_LINES).collect(),
        error,
        notice,
        command_id: Uuid::now_v7().to_string(),
    };
    let Some(place) = place else {
        return Ok(page);
    };
    let tr = page.c.tr;
    let schedule = schedule_of(state, &place.region).await?;
    let now = OffsetDateTime::now_utc();
    let current = schedule.week_at(now);
    let history = history(state, tr, &place, &schedule, current, 12).await?;
    // Weeks open for filing: this one and earlier unlocked ones; the default is last week
    // when it is still missing or returned, otherwise this week.
    let open: Vec<&WeekRow> = history.iter().filter(|w| !w.locked).collect();
    let default = history
        .iter()
        .find(|w| {
            w.friday == current.previous().friday()
                && !w.locked
                && matches!(w.status.as_str(), "missing" | "returned")
        })
        .map_or(current, |_| current.previous());
    let week = week.unwrap_or(default);
    page.weeks = open
        .iter()
        .map(|w| Choice {
            value: w.friday.to_string(),
            label: format!("{} — {}", format_date(w.friday), w.status_label),
        })
        .collect();
    page.week = week.friday().to_string();
    page.week_label = format!(
        "{} – {}",
        format_date(week.first_day()),
        format_date(week.friday())
    );
    page.deadline = deadline_text(&schedule, week);
    page.previous = previous_figures(state, place.id, week)
        .await?
        .map(|(w, f)| (format_date(w.friday()), f));
    // The form starts from this week's figures if filed (a correction), else empty.
    if page.form.get("children").is_empty() {
        if let Some(filed) = history
            .iter()
            .find(|w| w.friday == week.friday() && w.filed)
        {
            page.form = FormFields::from_pairs(vec![
                ("children".into(), filed.children.unwrap_or(0).to_string()),
                ("adults".into(), filed.adults.unwrap_or(0).to_string()),
                ("schools".into(), filed.schools.unwrap_or(0).to_string()),
                (
                    "schools_with_responsible".into(),
                    filed.schools_with_responsible.unwrap_or(0).to_string(),
                ),
            ]);
        }
    }
    page.history = history;
    page.place = Some(place);
    Ok(page)
}

async fn file_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<FileQuery>,
) -> AppResult<FilePage> {
    let notice = query.notice.as_deref().and_then(|k| c.tr.try_t(k));
    let week = query.nedelya.as_deref().and_then(week_from);
    file_page_for(
        &state,
        c,
        &viewer,
        query.mo,
        week,
        FormFields::from_pairs(Vec::new()),
        None,
        notice,
    )
    .await
}

async fn file(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match file_command(&state, &viewer, c.tr, &form).await? {
        Ok(id) => Ok(Redirect::to(&format!(
            "/zastupnik/otchet/{id}?notice=weekly-filed-notice"
        ))
        .into_response()),
        Err(refusal) => {
            let municipality = Uuid::parse_str(form.get("municipality")).ok();
            let week = week_from(form.get("week"));
            let page = file_page_for(
                &state,
                c,
                &viewer,
                municipality,
                week,
                form,
                Some(refusal.message),
                None,
            )
            .await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

// ---------------------------------------------------------------------------------------
// A report's page: figures, history from the log, review and unlock

/// A report's four figures.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct FigureSet {
    /// Children connected to the child app.
    pub children: u32,
    /// Adults connected to the adult app.
    pub adults: u32,
    /// Schools taking part.
    pub schools: u32,
    /// Schools with a named responsible person.
    pub schools_with_responsible: u32,
}

impl From<Figures> for FigureSet {
    fn from(f: Figures) -> Self {
        Self {
            children: f.children,
            adults: f.adults,
            schools: f.schools,
            schools_with_responsible: f.schools_with_responsible,
        }
    }
}

/// One entry of a report's stream, as people read it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entry {
    pub sequence: i64,
    pub kind: String,
    pub label: String,
    pub at: String,
    pub actor: Option<String>,
    pub figures: Option<FigureSet>,
    pub schools: Vec<SchoolLine>,
    pub comment: Option<String>,
    /// A filing a later one replaced.
    pub superseded: bool,
    pub timeliness: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchoolLine {
    pub school: String,
    pub children: u32,
    pub adults: u32,
    pub responsible_named: bool,
}

/// A report: where and when, its status, and every entry of its stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportView {
    pub id: Uuid,
    pub place: Place,
    #[serde(with = "crate::api::date")]
    pub friday: time::Date,
    pub status: String,
    pub status_label: String,
    pub figures: Option<FigureSet>,
    pub locked: bool,
    pub deadline: String,
    pub locks_at: String,
    pub entries: Vec<Entry>,
    pub may_review: bool,
}

pub(crate) async fn report_view(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
) -> AppResult<ReportView> {
    let row = sqlx::query("SELECT * FROM weekly.report WHERE id = $1")
        .bind(id)
        .fetch_optional(state.log.pool())
        .await?;
    let Some(row) = row else {
        return Err(AppError::NotFound);
    };
    let municipality: Uuid = row.try_get("municipality")?;
    let scope = WeeklyScope::of(viewer);
    let place = match place(state, municipality).await? {
        Some(place) if scope.sees(&place.region, municipality) => place,
        _ => return Err(AppError::NotFound),
    };
    let Some(week) = Week::ending(row.try_get("friday")?) else {
        return Err(AppError::NotFound);
    };
    let schedule = schedule_of(state, &place.region).await?;
    let now = OffsetDateTime::now_utc();
    let status = row_status(Some(&row), &schedule, week, now);
    let unlocked: Option<OffsetDateTime> = row.try_get("unlocked_until")?;
    let filed = row.try_get::<Option<i32>, _>("children")?.is_some();
    Ok(ReportView {
        id,
        friday: week.friday(),
        status: status.code().to_owned(),
        status_label: tr.of("weekly-status", status.code()),
        figures: filed.then(|| figures_of(&row).into()),
        locked: closed(&schedule, week, now, unlocked),
        deadline: deadline_text(&schedule, week),
        locks_at: local_time(&schedule.locks_at(week), &place.time_zone),
        entries: entries(state, tr, id, &place.time_zone).await?,
        may_review: scope.reviews(&place.region),
        place,
    })
}

async fn entries(state: &AppState, tr: Tr, id: Uuid, zone: &str) -> AppResult<Vec<Entry>> {
    let rows = sqlx::query(
        "SELECT sequence, payload, actor, recorded_at FROM public.event \
          WHERE aggregate_type = 'WeeklyReport' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(state.log.pool())
    .await?;
    let mut out: Vec<Entry> = Vec::with_capacity(rows.len());
    for row in rows {
        let sqlx::types::Json(event): sqlx::types::Json<WeeklyEvent> = row.try_get("payload")?;
        let recorded_at: OffsetDateTime = row.try_get("recorded_at")?;
        let mut entry = Entry {
            sequence: row.try_get("sequence")?,
            kind: String::new(),
            label: String::new(),
            at: local_time(&recorded_at, zone),
            actor: row.try_get("actor")?,
            figures: None,
            schools: Vec::new(),
            comment: None,
            superseded: false,
            timeliness: None,
        };
        match event {
            WeeklyEvent::ReportFiled {
                filing,
                filed_at,
                timeliness,
                supersedes,
                ..
            } => {
                for earlier in out.iter_mut().filter(|e| e.figures.is_some()) {
                    earlier.superseded = true;
                }
                entry.kind = if supersedes > 0 { "corrected" } else { "filed" }.into();
                entry.at = local_time(&filed_at, zone);
                entry.figures = Some(filing.figures.into());
                entry.schools = filing
                    .schools
                    .into_iter()
                    .map(|s| SchoolLine {
                        school: s.school.as_str().to_owned(),
                        children: s.children,
                        adults: s.adults,
                        responsible_named: s.responsible_named,
                    })
                    .collect();
                entry.comment = filing.comment.map(|c| c.as_str().to_owned());
                entry.timeliness = Some(tr.of("weekly-status", timeliness.code()));
            }
            WeeklyEvent::ReportAccepted { comment } => {
                entry.kind = "accepted".into();
                entry.comment = comment.map(|c| c.as_str().to_owned());
            }
            WeeklyEvent::ReportReturned { comment } => {
                entry.kind = "returned".into();
                entry.comment = Some(comment.as_str().to_owned());
            }
            WeeklyEvent::PeriodUnlocked { reason, until, .. } => {
                entry.kind = "unlocked".into();
                entry.comment = Some(format!(
                    "{} ({} {})",
                    reason.as_str(),
                    tr.t("weekly-until"),
                    local_time(&until, zone)
                ));
            }
        }
        entry.label = tr.of("weekly-entry", &entry.kind);
        out.push(entry);
    }
    Ok(out)
}

#[derive(Template, WebTemplate)]
#[template(path = "weekly/report.html")]
struct ReportPage {
    c: Chrome,
    r: ReportView,
    notice: Option<String>,
    error: Option<String>,
    command_id: String,
}

async fn report_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    Query(query): Query<NoticeQuery>,
) -> AppResult<ReportPage> {
    let r = report_view(&state, &viewer, c.tr, id).await?;
    Ok(ReportPage {
        notice: query.notice(c.tr),
        error: query.error(c.tr),
        command_id: Uuid::now_v7().to_string(),
        c,
        r,
    })
}

/// Accept (`decision=accept`, `comment` optional) or return for correction
/// (`decision=return`, `comment` required), by the region's ministry.
pub(crate) async fn review_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    form: &FormFields,
) -> Outcome<Uuid> {
    let region: Option<String> =
        sqlx::query_scalar("SELECT region_code FROM weekly.report WHERE id = $1")
            .bind(id)
            .fetch_optional(state.log.pool())
            .await?;
    let scope = WeeklyScope::of(viewer);
    let Some(region) = region.filter(|r| scope.sees_region(r)) else {
        return Err(AppError::NotFound);
    };
    if !scope.reviews(&region) {
        return Err(AppError::NotFound);
    }
    let comment = Text::parse(form.get("comment"));
    let command = match form.get("decision") {
        "accept" => WeeklyCommand::Accept { comment },
        "return" => WeeklyCommand::Return { comment },
        _ => return Ok(Err(Refusal::new(tr, "weekly-choose-decision"))),
    };
    execute_report(state, viewer, tr, id, command, form.command_id()).await
}

async fn review(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    let back = match form.get("back") {
        "svodka" => None,
        _ => Some(format!("/zastupnik/otchet/{id}")),
    };
    match review_command(&state, &viewer, c.tr, id, &form).await? {
        Ok(_) => Ok(Redirect::to(&match back {
            Some(page) => format!("{page}?notice=weekly-reviewed"),
            None => format!(
                "/zastupnik/svodka?region={}&nedelya={}&notice=weekly-reviewed",
                form.get("region"),
                form.get("week")
            ),
        })
        .into_response()),
        Err(refusal) => {
            let r = report_view(&state, &viewer, c.tr, id).await?;
            let page = ReportPage {
                c,
                r,
                notice: None,
                error: Some(refusal.message),
                command_id: Uuid::now_v7().to_string(),
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// Opens a locked week for one municipality (`municipality`, `week`, `reason`, `days`).
pub(crate) async fn unlock_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<Uuid> {
    let scope = WeeklyScope::of(viewer);
    let Ok(municipality) = Uuid::parse_str(form.get("municipality")) else {
        return Err(AppError::NotFound);
    };
    let place = match place(state, municipality).await? {
        Some(place) if scope.sees_region(&place.region) => place,
        _ => return Err(AppError::NotFound),
    };
    if !scope.reviews(&place.region) {
        return Err(AppError::NotFound);
    }
    let Some(week) = week_from(form.get("week")) else {
        return Ok(Err(Refusal::new(tr, "weekly-bad-week")));
    };
    let days = form.get("days").parse::<u16>().unwrap_or(3);
    let Ok(region) = RegionCode::parse(&place.region) else {
        return Err(AppError::NotFound);
    };
    let command = WeeklyCommand::Unlock {
        period: Period {
            region,
            municipality,
            week,
        },
        reason: Text::parse(form.get("reason")),
        now: OffsetDateTime::now_utc(),
        schedule: schedule_of(state, &place.region).await?,
        days,
    };
    let id = report_id(municipality, week);
    let outcome = execute_report(state, viewer, tr, id, command, form.command_id()).await?;
    if outcome.is_ok() {
        crate::audit::record(
            state,
            viewer,
            crate::audit::Action::Unlock,
            Some("weekly_report"),
            Some(&id.to_string()),
        )
        .await?;
    }
    Ok(outcome)
}

async fn unlock(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    let id = Uuid::parse_str(form.get("municipality"))
        .ok()
        .zip(week_from(form.get("week")))
        .map(|(m, w)| report_id(m, w));
    match unlock_command(&state, &viewer, c.tr, &form).await? {
        Ok(id) => Ok(
            Redirect::to(&format!("/zastupnik/otchet/{id}?notice=weekly-unlocked")).into_response(),
        ),
        Err(refusal) => {
            let target = match id {
                Some(id) => format!("/zastupnik/otchet/{id}"),
                None => "/zastupnik/svodka".to_owned(),
            };
            // The error is shown on the report's page (or the summary) by its key.
            Ok(Redirect::to(&format!("{target}?error={}", refusal.code)).into_response())
        }
    }
}

// ---------------------------------------------------------------------------------------
// The week at a glance and the ministry's summary

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// A region's code: its municipalities; without it, the regions in the viewer's scope.
    #[serde(default)]
    pub region: Option<String>,
    /// The Friday (`YYYY-MM-DD`); the current week by default.
    #[serde(default)]
    pub nedelya: Option<String>,
    #[serde(default)]
    #[param(ignore)]
    pub notice: Option<String>,
    /// After reminders: letters sent, non-filers without an address.
    #[serde(default)]
    #[param(ignore)]
    pub sent: Option<usize>,
    #[serde(default)]
    #[param(ignore)]
    pub without: Option<usize>,
    /// After an import: rows imported.
    #[serde(default)]
    #[param(ignore)]
    pub imported: Option<usize>,
}

fn summary_notice(tr: Tr, query: &SummaryQuery) -> Option<String> {
    let key = query.notice.as_deref()?;
    tr.try_t(key)?;
    Some(tr.with(
        key,
        &[
            ("sent", query.sent.unwrap_or(0).into()),
            ("without", query.without.unwrap_or(0).into()),
            ("imported", query.imported.unwrap_or(0).into()),
        ],
    ))
}

/// One municipality (or, federally, one region) in the summary. Figures are stock: the
/// latest report at or before the week (`as_of` says which week when it is older).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SummaryRow {
    /// The municipality (or the region's code, federally).
    pub key: String,
    pub name: String,
    /// This week's report, if any.
    pub report: Option<Uuid>,
    pub children: i64,
    pub adults: i64,
    pub schools: i64,
    pub schools_with_responsible: i64,
    /// Change in connected children and adults since the week before.
    pub children_change: i64,
    pub adults_change: i64,
    #[serde(with = "crate::api::date::option")]
    pub as_of: Option<time::Date>,
    /// Municipalities: the week's status. Regions: empty.
    pub status: String,
    pub status_label: String,
    pub review_comment: Option<String>,
    /// Regions: municipalities that filed this week, of how many; filed on time.
    pub filed: i64,
    pub expected: i64,
    pub on_time: i64,
    pub locked: bool,
}

/// Filing completeness and timeliness of one week.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WeekFiling {
    #[serde(with = "crate::api::date")]
    pub friday: time::Date,
    pub expected: i64,
    pub filed: i64,
    pub on_time: i64,
    pub late: i64,
    /// Percent, one decimal, as text (`95,6`).
    pub completeness: String,
    pub timeliness: String,
}

/// Stock totals of one week (for the trend).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrendPoint {
    #[serde(with = "crate::api::date")]
    pub friday: time::Date,
    pub children: i64,
    pub adults: i64,
}

/// Who has not filed the week, and how to reach them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NonFiler {
    pub municipality: Uuid,
    pub name: String,
    pub status: String,
    pub contact: Option<String>,
    pub email: Option<String>,
    /// The department's users in Opora: name and contact.
    pub officers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Summary {
    pub region: Option<String>,
    pub title: String,
    #[serde(with = "crate::api::date")]
    pub friday: time::Date,
    pub deadline: Option<String>,
    pub rows: Vec<SummaryRow>,
    pub total: SummaryRow,
    pub trend: Vec<TrendPoint>,
    pub filing: Vec<WeekFiling>,
    pub non_filers: Vec<NonFiler>,
    pub may_review: bool,
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "—".into();
    }
    let tenths = (part * 1000 + whole / 2) / whole;
    format!("{},{}", tenths / 10, tenths % 10)
}

/// The regions a summary covers: the one asked for (if in scope) or all in scope.
async fn summary_regions(
    state: &AppState,
    scope: &WeeklyScope,
    region: Option<&str>,
) -> AppResult<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT code, name FROM reference.region WHERE ($1 OR code = ANY($2)) \
           AND ($3::text IS NULL OR code = $3) ORDER BY name",
    )
    .bind(scope.all)
    .bind(&scope.regions)
    .bind(region)
    .fetch_all(state.log.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("code")?, r.try_get("name")?)))
        .collect()
}

pub(crate) async fn summary(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    query: &SummaryQuery,
) -> AppResult<Summary> {
    let scope = WeeklyScope::of(viewer);
    let asked = query.region.as_deref().filter(|r| !r.is_empty());
    // A single-region viewer always sees its region's municipalities.
    let asked = asked
        .or_else(|| (!scope.all && scope.regions.len() == 1).then(|| scope.regions[0].as_str()));
    let regions = summary_regions(state, &scope, asked).await?;
    if asked.is_some() && regions.is_empty() {
        return Err(AppError::NotFound);
    }
    let codes: Vec<String> = regions.iter().map(|(c, _)| c.clone()).collect();
    let now = OffsetDateTime::now_utc();
    let zone_region = asked.unwrap_or("77");
    let schedule = schedule_of(state, zone_region).await?;
    let week = query
        .nedelya
        .as_deref()
        .and_then(week_from)
        .unwrap_or_else(|| schedule.week_at(now));
    let (rows, non_filers) = match asked {
        Some(region) => municipality_rows(state, tr, region, week, &schedule, now).await?,
        None => (region_rows(state, &regions, week).await?, Vec::new()),
    };
    let mut total = SummaryRow {
        key: String::new(),
        name: tr.t("weekly-total"),
        report: None,
        children: 0,
        adults: 0,
        schools: 0,
        schools_with_responsible: 0,
        children_change: 0,
        adults_change: 0,
        as_of: None,
        status: String::new(),
        status_label: String::new(),
        review_comment: None,
        filed: 0,
        expected: 0,
        on_time: 0,
        locked: false,
    };
    for row in &rows {
        total.children += row.children;
        total.adults += row.adults;
        total.schools += row.schools;
        total.schools_with_responsible += row.schools_with_responsible;
        total.children_change += row.children_change;
        total.adults_change += row.adults_change;
        total.filed += row.filed;
        total.expected += row.expected;
        total.on_time += row.on_time;
    }
    let title = match asked {
        Some(_) => regions.first().map(|(_, n)| n.clone()).unwrap_or_default(),
        None if scope.all => tr.t("weekly-federal"),
        None => tr.t("weekly-my-regions"),
    };
    Ok(Summary {
        region: asked.map(str::to_owned),
        title,
        friday: week.friday(),
        deadline: asked.map(|_| deadline_text(&schedule, week)),
        trend: trend(state, &codes, week, 52).await?,
        filing: filing_by_week(state, &codes, week, 12).await?,
        total,
        rows,
        non_filers,
        may_review: asked.is_some_and(|r| scope.reviews(r)),
    })
}

async fn municipality_rows(
    state: &AppState,
    tr: Tr,
    region: &str,
    week: Week,
    schedule: &Schedule,
    now: OffsetDateTime,
) -> AppResult<(Vec<SummaryRow>, Vec<NonFiler>)> {
    let rows = sqlx::query(
        "SELECT m.id, m.name, cur.id AS report, cur.children, cur.review, \
                cur.timeliness, cur.review_comment, cur.unlocked_until, \
                st.friday AS as_of, st.children AS stock_children, st.adults AS stock_adults, \
                st.schools AS stock_schools, \
                st.schools_with_responsible AS stock_responsible, pr.children AS prev_children, \
                pr.adults AS prev_adults, d.contact, d.email \
           FROM reference.municipality m \
           LEFT JOIN weekly.report cur ON cur.municipality = m.id AND cur.friday = $2 \
           LEFT JOIN LATERAL (SELECT friday, children, adults, schools, schools_with_responsible \
                FROM weekly.report r WHERE r.municipality = m.id AND r.friday <= $2 \
                 AND r.children IS NOT NULL ORDER BY r.friday DESC LIMIT 1) st ON true \
           LEFT JOIN LATERAL (SELECT children, adults FROM weekly.report r \
                WHERE r.municipality = m.id AND r.friday <= $2 - 7 AND r.children IS NOT NULL \
                ORDER BY r.friday DESC LIMIT 1) pr ON true \
           LEFT JOIN weekly.department d ON d.municipality = m.id \
          WHERE m.region_code = $1 ORDER BY m.name",
    )
    .bind(region)
    .bind(week.friday())
    .fetch_all(state.log.pool())
    .await?;
    let officers = officers(state, region).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut missing = Vec::new();
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        let filed = row.try_get::<Option<i32>, _>("children")?.is_some();
        let status = row_status(Some(row), schedule, week, now);
        let unlocked: Option<OffsetDateTime> = row.try_get("unlocked_until")?;
        let stock = |name: &str| -> AppResult<i64> {
            Ok(i64::from(row.try_get::<Option<i32>, _>(name)?.unwrap_or(0)))
        };
        let children = stock("stock_children")?;
        let adults = stock("stock_adults")?;
        if !filed {
            missing.push(NonFiler {
                municipality: id,
                name: name.clone(),
                status: tr.of("weekly-status", status.code()),
                contact: row.try_get("contact")?,
                email: row.try_get("email")?,
                officers: officers.get(&id).cloned().unwrap_or_default(),
            });
        }
        out.push(SummaryRow {
            key: id.to_string(),
            name,
            report: row.try_get("report")?,
            children,
            adults,
            schools: stock("stock_schools")?,
            schools_with_responsible: stock("stock_responsible")?,
            children_change: children - stock("prev_children")?,
            adults_change: adults - stock("prev_adults")?,
            as_of: row.try_get("as_of")?,
            status: status.code().to_owned(),
            status_label: tr.of("weekly-status", status.code()),
            review_comment: row.try_get("review_comment")?,
            filed: i64::from(filed),
            expected: 1,
            on_time: i64::from(row_timeliness(Some(row)) == Some(Timeliness::OnTime)),
            locked: closed(schedule, week, now, unlocked),
        });
    }
    Ok((out, missing))
}

/// The department users of a region's municipalities: "name, contact".
async fn officers(state: &AppState, region: &str) -> AppResult<HashMap<Uuid, Vec<String>>> {
    let rows = sqlx::query(
        "SELECT (g->'scope'->>'municipality')::uuid AS municipality, u.display_name, u.contact \
           FROM accounts.user_account u, jsonb_array_elements(u.grants) g \
          WHERE NOT u.disabled AND g->>'role' = 'municipal_education' \
            AND g->'scope'->>'region' = $1 ORDER BY u.display_name",
    )
    .bind(region)
    .fetch_all(state.log.pool())
    .await?;
    let mut out: HashMap<Uuid, Vec<String>> = HashMap::new();
    for row in rows {
        let Some(municipality) = row.try_get::<Option<Uuid>, _>("municipality")? else {
            continue;
        };
        let name: String = row.try_get("display_name")?;
        let contact: Option<String> = row.try_get("contact")?;
        out.entry(municipality).or_default().push(match contact {
            Some(contact) => format!("{name}, {contact}"),
            None => name,
        });
    }
    Ok(out)
}

async fn region_rows(
    state: &AppState,
    regions: &[(String, String)],
    week: Week,
) -> AppResult<Vec<SummaryRow>> {
    let codes: Vec<&str> = regions.iter().map(|(c, _)| c.as_str()).collect();
    let rows = sqlx::query(
        "WITH stock AS ( \
           SELECT DISTINCT ON (municipality) region_code, children, adults, schools, \
                  schools_with_responsible \
             FROM weekly.report WHERE region_code = ANY($1) AND friday <= $2 \
              AND children IS NOT NULL ORDER BY municipality, friday DESC), \
         prev AS ( \
           SELECT DISTINCT ON (municipality) region_code, children, adults \
             FROM weekly.report WHERE region_code = ANY($1) AND friday <= $2 - 7 \
              AND children IS NOT NULL ORDER BY municipality, friday DESC) \
         SELECT c.code, \
           (SELECT count(*) FROM reference.municipality m WHERE m.region_code = c.code) AS expected, \
           (SELECT count(*) FROM weekly.report r WHERE r.region_code = c.code AND r.friday = $2 \
              AND r.children IS NOT NULL) AS filed, \
           (SELECT count(*) FROM weekly.report r WHERE r.region_code = c.code AND r.friday = $2 \
              AND r.timeliness = 'on_time') AS on_time, \
           (SELECT coalesce(sum(children), 0) FROM stock s WHERE s.region_code = c.code) AS children, \
           (SELECT coalesce(sum(adults), 0) FROM stock s WHERE s.region_code = c.code) AS adults, \
           (SELECT coalesce(sum(schools), 0) FROM stock s WHERE s.region_code = c.code) AS schools, \
           (SELECT coalesce(sum(schools_with_responsible), 0) FROM stock s \
              WHERE s.region_code = c.code) AS responsible, \
           (SELECT coalesce(sum(children), 0) FROM prev p WHERE p.region_code = c.code) AS prev_children, \
           (SELECT coalesce(sum(adults), 0) FROM prev p WHERE p.region_code = c.code) AS prev_adults \
           FROM unnest($1::text[]) AS c(code)",
    )
    .bind(&codes)
    .bind(week.friday())
    .fetch_all(state.log.pool())
    .await?;
    let names: HashMap<&str, &str> = regions
        .iter()
        .map(|(c, n)| (c.as_str(), n.as_str()))
        .collect();
    rows.iter()
        .map(|row| {
            let code: String = row.try_get("code")?;
            let children: i64 = row.try_get("children")?;
            let adults: i64 = row.try_get("adults")?;
            Ok(SummaryRow {
                name: names
                    .get(code.as_str())
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                key: code,
                report: None,
                children,
                adults,
                schools: row.try_get("schools")?,
                schools_with_responsible: row.try_get("responsible")?,
                children_change: children - row.try_get::<i64, _>("prev_children")?,
                adults_change: adults - row.try_get::<i64, _>("prev_adults")?,
                as_of: None,
                status: String::new(),
                status_label: String::new(),
                review_comment: None,
                filed: row.try_get("filed")?,
                expected: row.try_get("expected")?,
                on_time: row.try_get("on_time")?,
                locked: false,
            })
        })
        .collect()
}

/// Stock totals of `weeks` weeks up to `last`: each municipality's latest report at or
/// before each Friday, summed (never a sum over weeks).
pub(crate) async fn trend(
    state: &AppState,
    regions: &[String],
    last: Week,
    weeks: u16,
) -> AppResult<Vec<TrendPoint>> {
    let first = last.last(weeks)[0];
    let rows = sqlx::query(
        "SELECT w.friday::date AS friday, coalesce(sum(s.children), 0)::bigint AS children, \
                coalesce(sum(s.adults), 0)::bigint AS adults \
           FROM generate_series($2::date, $3::date, interval '7 days') AS w(friday) \
           LEFT JOIN LATERAL ( \
             SELECT DISTINCT ON (r.municipality) r.children, r.adults FROM weekly.report r \
              WHERE r.region_code = ANY($1) AND r.friday <= w.friday::date \
                AND r.children IS NOT NULL ORDER BY r.municipality, r.friday DESC) s ON true \
          GROUP BY w.friday ORDER BY w.friday",
    )
    .bind(regions)
    .bind(first.friday())
    .bind(last.friday())
    .fetch_all(state.log.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TrendPoint {
                friday: r.try_get("friday")?,
                children: r.try_get("children")?,
                adults: r.try_get("adults")?,
            })
        })
        .collect()
}

async fn filing_by_week(
    state: &AppState,
    regions: &[String],
    last: Week,
    weeks: u16,
) -> AppResult<Vec<WeekFiling>> {
    let list = last.last(weeks);
    let expected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reference.municipality WHERE region_code = ANY($1)",
    )
    .bind(regions)
    .fetch_one(state.log.pool())
    .await?;
    let rows = sqlx::query(
        "SELECT friday, count(*) FILTER (WHERE children IS NOT NULL) AS filed, \
                count(*) FILTER (WHERE timeliness = 'on_time') AS on_time, \
                count(*) FILTER (WHERE timeliness = 'late') AS late \
           FROM weekly.report WHERE region_code = ANY($1) AND friday BETWEEN $2 AND $3 \
          GROUP BY friday",
    )
    .bind(regions)
    .bind(list[0].friday())
    .bind(last.friday())
    .fetch_all(state.log.pool())
    .await?;
    let mut by_week: HashMap<time::Date, (i64, i64, i64)> = HashMap::new();
    for row in rows {
        by_week.insert(
            row.try_get("friday")?,
            (
                row.try_get("filed")?,
                row.try_get("on_time")?,
                row.try_get("late")?,
            ),
        );
    }
    Ok(list
        .into_iter()
        .rev()
        .map(|week| {
            let (filed, on_time, late) = by_week.get(&week.friday()).copied().unwrap_or_default();
            WeekFiling {
                friday: week.friday(),
                expected,
                filed,
                on_time,
                late,
                completeness: percent(filed, expected),
                timeliness: percent(on_time, expected),
            }
        })
        .collect())
}

/// A line chart of the trend, drawn on the server: two polylines on a 640×240 grid.
pub struct Chart {
    pub children: String,
    pub adults: String,
    /// Horizontal grid lines: y position and label.
    pub grid: Vec<(i64, String)>,
    /// Month ticks: x position and label.
    pub ticks: Vec<(i64, String)>,
    pub description: String,
}

const CHART_LEFT: i64 = 70;
const CHART_WIDTH: i64 = 560;
const CHART_TOP: i64 = 10;
const CHART_HEIGHT: i64 = 200;

pub fn chart(tr: Tr, points: &[TrendPoint]) -> Chart {
    let max = points
        .iter()
        .map(|p| p.children.max(p.adults))
        .max()
        .unwrap_or(0)
        .max(1);
    // A round top: 1, 2 or 5 times a power of ten.
    let mut top = 1_i64;
    while top < max {
        top = match top.to_string().as_bytes()[0] {
            b'1' => top * 2,
            b'2' => top / 2 * 5,
            _ => top * 2,
        };
    }
    let n = i64::try_from(points.len()).unwrap_or(1).max(2) - 1;
    let x = |i: usize| CHART_LEFT + i64::try_from(i).unwrap_or(0) * CHART_WIDTH / n;
    let y = |v: i64| CHART_TOP + CHART_HEIGHT - v * CHART_HEIGHT / top;
    let line = |pick: fn(&TrendPoint) -> i64| {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{},{}", x(i), y(pick(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let grid = (0..=4)
        .map(|k| (y(top * k / 4), thousands(top * k / 4)))
        .collect();
    let mut ticks = Vec::new();
    let mut month = None;
    for (i, p) in points.iter().enumerate() {
        if month != Some(p.friday.month()) {
            if month.is_some() || points.len() <= 13 {
                ticks.push((
                    x(i),
                    format!("{:02}.{:02}", p.friday.day(), p.friday.month() as u8),
                ));
            }
            month = Some(p.friday.month());
        }
    }
    let description = match (points.first(), points.last()) {
        (Some(first), Some(last)) => tr.with(
            "weekly-chart-description",
            &[
                ("from", format_date(first.friday).into()),
                ("to", format_date(last.friday).into()),
                ("children_from", thousands(first.children).into()),
                ("children_to", thousands(last.children).into()),
                ("adults_from", thousands(first.adults).into()),
                ("adults_to", thousands(last.adults).into()),
            ],
        ),
        _ => String::new(),
    };
    Chart {
        children: line(|p| p.children),
        adults: line(|p| p.adults),
        grid,
        ticks,
        description,
    }
}

/// `12 345` (a thin non-breaking space between thousands).
pub fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202F}');
        }
        out.push(ch);
    }
    if value < 0 {
        format!("−{out}")
    } else {
        out
    }
}

/// [`thousands`] for templates.
pub fn num(value: &i64) -> String {
    thousands(*value)
}

/// `+12`, `−3`, `0`.
pub fn signed(value: &i64) -> String {
    match value.cmp(&0) {
        std::cmp::Ordering::Greater => format!("+{}", thousands(*value)),
        _ => thousands(*value),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "weekly/summary.html")]
struct SummaryPage {
    c: Chrome,
    s: Summary,
    regions: Vec<Choice>,
    chart12: Chart,
    chart52: Chart,
    week: String,
    previous_week: String,
    next_week: Option<String>,
    notice: Option<String>,
    query: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "weekly/print.html")]
struct PrintPage {
    c: Chrome,
    s: Summary,
    chart52: Chart,
    printed: String,
}

async fn region_choices(state: &AppState, scope: &WeeklyScope) -> AppResult<Vec<Choice>> {
    Ok(summary_regions(state, scope, None)
        .await?
        .into_iter()
        .map(|(value, label)| Choice { value, label })
        .collect())
}

fn summary_query_string(s: &Summary) -> String {
    format!(
        "region={}&nedelya={}",
        s.region.as_deref().unwrap_or(""),
        s.friday
    )
}

async fn summary_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<SummaryQuery>,
) -> AppResult<SummaryPage> {
    let s = summary(&state, &viewer, c.tr, &query).await?;
    let scope = WeeklyScope::of(&viewer);
    let week = Week::ending(s.friday).unwrap_or_else(|| Week::containing(s.friday));
    let current = schedule_of(&state, s.region.as_deref().unwrap_or("77"))
        .await?
        .week_at(OffsetDateTime::now_utc());
    let tail = s.trend.len().saturating_sub(12);
    Ok(SummaryPage {
        chart12: chart(c.tr, &s.trend[tail..]),
        chart52: chart(c.tr, &s.trend),
        regions: region_choices(&state, &scope).await?,
        week: week.friday().to_string(),
        previous_week: week.previous().friday().to_string(),
        next_week: (week < current).then(|| week.next().friday().to_string()),
        notice: summary_notice(c.tr, &query),
        query: summary_query_string(&s),
        c,
        s,
    })
}

async fn summary_print(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<SummaryQuery>,
) -> AppResult<PrintPage> {
    let s = summary(&state, &viewer, c.tr, &query).await?;
    Ok(PrintPage {
        chart52: chart(c.tr, &s.trend),
        printed: local_time(&OffsetDateTime::now_utc(), "Europe/Moscow"),
        c,
        s,
    })
}

/// The summary as a table (header and rows), for XLSX.
fn summary_table(tr: Tr, s: &Summary) -> (Vec<String>, Vec<Vec<String>>) {
    let headers = [
        "weekly-place",
        "weekly-children",
        "weekly-children-change",
        "weekly-adults",
        "weekly-adults-change",
        "weekly-schools",
        "weekly-responsible",
        "weekly-as-of",
        "weekly-status-column",
        "weekly-filed-of",
    ]
    .iter()
    .map(|k| tr.t(k))
    .collect();
    let line = |r: &SummaryRow| {
        vec![
            r.name.clone(),
            r.children.to_string(),
            r.children_change.to_string(),
            r.adults.to_string(),
            r.adults_change.to_string(),
            r.schools.to_string(),
            r.schools_with_responsible.to_string(),
            r.as_of.map(format_date).unwrap_or_default(),
            r.status_label.clone(),
            format!("{}/{}", r.filed, r.expected),
        ]
    };
    let mut rows: Vec<Vec<String>> = s.rows.iter().map(line).collect();
    rows.push(line(&s.total));
    (headers, rows)
}

async fn summary_xlsx(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<SummaryQuery>,
) -> AppResult<Response> {
    let s = summary(&state, &viewer, c.tr, &query).await?;
    let (headers, rows) = summary_table(c.tr, &s);
    let body = export::xlsx_numbers("Заступник", &headers, &rows)?;
    crate::audit::record(
        &state,
        &viewer,
        crate::audit::Action::Export,
        Some("weekly_summary"),
        None,
    )
    .await?;
    Ok(export::download(
        body,
        &format!(
            "zastupnik-{}-{}.xlsx",
            s.region.as_deref().unwrap_or("rf"),
            s.friday
        ),
    ))
}

// ---------------------------------------------------------------------------------------
// Reminders

/// The reminder list of a region's week: who has not filed (by Friday noon, local).
async fn reminder_list(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    region: &str,
    week: Option<&str>,
) -> AppResult<(Summary, Vec<NonFiler>)> {
    let scope = WeeklyScope::of(viewer);
    if !scope.sees_region(region) {
        return Err(AppError::NotFound);
    }
    if !scope.reviews(region) {
        return Err(AppError::NotFound);
    }
    let query = SummaryQuery {
        region: Some(region.to_owned()),
        nedelya: week.map(str::to_owned),
        ..SummaryQuery::default()
    };
    let s = summary(state, viewer, tr, &query).await?;
    let list = s.non_filers.clone();
    Ok((s, list))
}

#[derive(Debug, Deserialize)]
pub struct ReminderQuery {
    pub region: String,
    #[serde(default)]
    pub nedelya: Option<String>,
}

async fn reminders_csv(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<ReminderQuery>,
) -> AppResult<Response> {
    let (s, list) = reminder_list(
        &state,
        &viewer,
        c.tr,
        &query.region,
        query.nedelya.as_deref(),
    )
    .await?;
    let headers = [
        "weekly-place",
        "weekly-status-column",
        "weekly-contact",
        "weekly-email",
        "weekly-officers",
    ]
    .iter()
    .map(|k| c.tr.t(k))
    .collect::<Vec<_>>();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.status.clone(),
                n.contact.clone().unwrap_or_default(),
                n.email.clone().unwrap_or_default(),
                n.officers.join("; "),
            ]
        })
        .collect();
    crate::audit::record(
        &state,
        &viewer,
        crate::audit::Action::Export,
        Some("weekly_reminders"),
        None,
    )
    .await?;
    Ok(export::download(
        export::csv(&headers, &rows)?,
        &format!("napominaniya-{}-{}.csv", query.region, s.friday),
    ))
}

/// E-mails each non-filer with an address through the configured transport.
pub(crate) async fn remind_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> AppResult<crate::mail::Sent> {
    let (s, list) = reminder_list(
        state,
        viewer,
        tr,
        form.get("region"),
        Some(form.get("week")).filter(|w| !w.is_empty()),
    )
    .await?;
    let subject = tr.with(
        "weekly-reminder-subject",
        &[("week", format_date(s.friday).into())],
    );
    let letters: Vec<crate::mail::Letter> = list
        .iter()
        .map(|n| crate::mail::Letter {
            to: n.email.clone(),
            subject: subject.clone(),
            body: tr.with(
                "weekly-reminder-body",
                &[
                    ("place", n.name.clone().into()),
                    ("week", format_date(s.friday).into()),
                    ("deadline", s.deadline.clone().unwrap_or_default().into()),
                ],
            ),
        })
        .collect();
    state.config.mail.send_all(&letters).await
}

async fn remind(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    let sent = remind_command(&state, &viewer, c.tr, &form).await?;
    let notice = if sent.failed > 0 {
        "weekly-reminders-failed"
    } else {
        "weekly-reminders-sent"
    };
    Ok(Redirect::to(&format!(
        "/zastupnik/svodka?region={}&nedelya={}&notice={notice}&sent={}&without={}",
        form.get("region"),
        form.get("week"),
        sent.sent,
        sent.without_address
    ))
    .into_response())
}

// ---------------------------------------------------------------------------------------
// The region's settings: schedule and departments

/// A municipality's department in the settings form.
pub struct DepartmentRow {
    pub id: Uuid,
    pub name: String,
    pub pupils: String,
    pub contact: String,
    pub email: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "weekly/settings.html")]
struct SettingsPage {
    c: Chrome,
    regions: Vec<Choice>,
    region: Option<String>,
    schedule: Schedule,
    days: Vec<Choice>,
    departments: Vec<DepartmentRow>,
    error: Option<String>,
    notice: Option<String>,
    command_id: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct RegionQuery {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub notice: Option<String>,
}

/// The regions a viewer reviews (settings and imports are theirs).
async fn review_choices(state: &AppState, scope: &WeeklyScope) -> AppResult<Vec<Choice>> {
    Ok(region_choices(state, scope)
        .await?
        .into_iter()
        .filter(|c| scope.reviews(&c.value))
        .collect())
}

async fn settings_for(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    region: Option<String>,
    error: Option<String>,
    notice: Option<String>,
) -> AppResult<SettingsPage> {
    let scope = WeeklyScope::of(viewer);
    let regions = review_choices(state, &scope).await?;
    let region = region
        .filter(|r| !r.is_empty())
        .or_else(|| (regions.len() == 1).then(|| regions[0].value.clone()));
    if region.as_deref().is_some_and(|r| !scope.reviews(r)) {
        return Err(AppError::NotFound);
    }
    let days = (0..=6)
        .map(|d| Choice {
            value: d.to_string(),
            label: c.tr.of("weekly-deadline-day", &d.to_string()),
        })
        .collect();
    let mut departments = Vec::new();
    let schedule = match &region {
        Some(region) => {
            let rows = sqlx::query(
                "SELECT m.id, m.name, d.pupils, d.contact, d.email FROM reference.municipality m \
                   LEFT JOIN weekly.department d ON d.municipality = m.id \
                  WHERE m.region_code = $1 ORDER BY m.name",
            )
            .bind(region)
            .fetch_all(state.log.pool())
            .await?;
            for row in rows {
                departments.push(DepartmentRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    pupils: row
                        .try_get::<Option<i32>, _>("pupils")?
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    contact: row
                        .try_get::<Option<String>, _>("contact")?
                        .unwrap_or_default(),
                    email: row
                        .try_get::<Option<String>, _>("email")?
                        .unwrap_or_default(),
                });
            }
            schedule_of(state, region).await?
        }
        None => Schedule::default_in("Europe/Moscow"),
    };
    Ok(SettingsPage {
        c,
        regions,
        region,
        schedule,
        days,
        departments,
        error,
        notice,
        command_id: Uuid::now_v7().to_string(),
    })
}

async fn settings_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<RegionQuery>,
) -> AppResult<SettingsPage> {
    let notice = query.notice.as_deref().and_then(|k| c.tr.try_t(k));
    settings_for(&state, c, &viewer, query.region, None, notice).await
}

/// Saves the schedule (`deadline_day`, `deadline_time`, `lock_days`) and each department
/// (`pupils_ID`, `contact_ID`, `email_ID`); every value is checked before anything is
/// written.
pub(crate) async fn settings_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    form: &FormFields,
) -> Outcome<String> {
    let scope = WeeklyScope::of(viewer);
    let code = form.get("region");
    let Ok(region) = RegionCode::parse(code) else {
        return Err(AppError::NotFound);
    };
    if !scope.reviews(code) {
        return Err(AppError::NotFound);
    }
    let current = schedule_of(state, code).await?;
    let (Ok(deadline_day), Some(deadline_minute), Ok(lock_days)) = (
        form.get("deadline_day").parse::<u8>(),
        parse_clock(form.get("deadline_time")),
        form.get("lock_days").parse::<u16>(),
    ) else {
        return Ok(Err(Refusal::new(tr, "weekly-bad-schedule")));
    };
    let schedule = Schedule {
        time_zone: current.time_zone.clone(),
        deadline_day,
        deadline_minute,
        lock_days,
    };
    if let Err(error) = schedule.validate() {
        return Ok(Err(weekly_refusal(tr, &error)));
    }
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM reference.municipality WHERE region_code = $1 ORDER BY name",
    )
    .bind(code)
    .fetch_all(state.log.pool())
    .await?;
    let mut departments = Vec::with_capacity(ids.len());
    for id in ids {
        let pupils = match form.get(&format!("pupils_{id}")) {
            "" => None,
            raw => match count(tr, "weekly-pupils", raw) {
                Ok(p) if p <= weekly::MAX_FIGURE => Some(p),
                Ok(_) => return Ok(Err(Refusal::new(tr, "weekly-bad-schedule"))),
                Err(refusal) => return Ok(Err(refusal)),
            },
        };
        let email = Text::parse(form.get(&format!("email_{id}")));
        if let Some(address) = &email {
            if address.as_str().parse::<lettre::Address>().is_err() {
                return Ok(Err(Refusal {
                    code: "weekly-bad-email".into(),
                    message: tr.arg("weekly-bad-email", address.as_str()),
                }));
            }
        }
        departments.push((
            id,
            Department {
                pupils,
                contact: Text::parse(form.get(&format!("contact_{id}"))),
                email,
            },
        ));
    }
    let bus = CommandBus::<ReportingSetup>::new(state.log.clone(), ());
    let base = form.command_id();
    let run = |command: SetupCommand, name: String| {
        let meta =
            CommandMeta::new(viewer.actor()).with_command_id(Uuid::new_v5(&base, name.as_bytes()));
        let bus = &bus;
        let code = code.to_owned();
        async move { bus.execute(&code, command, &meta).await }
    };
    let mut outcomes = vec![
        run(
            SetupCommand::SetSchedule {
                region: region.clone(),
                schedule,
            },
            "schedule".into(),
        )
        .await,
    ];
    for (id, department) in departments {
        outcomes.push(
            run(
                SetupCommand::SetDepartment {
                    region: region.clone(),
                    municipality: id,
                    department,
                },
                id.to_string(),
            )
            .await,
        );
    }
    for outcome in outcomes {
        match outcome {
            Ok(_) => {}
            Err(CommandError::Rejected(error)) => return Ok(Err(weekly_refusal(tr, &error))),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Ok(code.to_owned()))
}

async fn save_settings(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match settings_command(&state, &viewer, c.tr, &form).await? {
        Ok(region) => Ok(Redirect::to(&format!(
            "/zastupnik/nastroyki?region={region}&notice=weekly-settings-saved"
        ))
        .into_response()),
        Err(refusal) => {
            let page = settings_for(
                &state,
                c,
                &viewer,
                Some(form.get("region").to_owned()),
                Some(refusal.message),
                None,
            )
            .await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bulk import of history

/// The import file's columns, in order.
pub const IMPORT_COLUMNS: [&str; 6] = [
    "Муниципальное образование",
    "Неделя (пятница)",
    "Подключено детей",
    "Подключено взрослых",
    "Школ-участниц",
    "Школ с ответственным",
];

/// One refused row of an import file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RowError {
    /// The row's number in the file (the header is row 1).
    pub row: usize,
    pub message: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "weekly/import.html")]
struct ImportPage {
    c: Chrome,
    regions: Vec<Choice>,
    region: String,
    columns: Vec<&'static str>,
    errors: Vec<RowError>,
    error: Option<String>,
    notice: Option<String>,
}

async fn import_page(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<RegionQuery>,
) -> AppResult<ImportPage> {
    let scope = WeeklyScope::of(&viewer);
    let notice = query.notice.as_deref().and_then(|k| c.tr.try_t(k));
    Ok(ImportPage {
        regions: review_choices(&state, &scope).await?,
        region: query.region.unwrap_or_default(),
        columns: IMPORT_COLUMNS.to_vec(),
        errors: Vec::new(),
        error: None,
        notice,
        c,
    })
}

async fn import_template(c: Chrome) -> AppResult<Response> {
    let headers: Vec<String> = IMPORT_COLUMNS.iter().map(|s| (*s).to_owned()).collect();
    let example = vec![vec![
        "Казань".to_owned(),
        "15.11.2024".to_owned(),
        "1250".to_owned(),
        "640".to_owned(),
        "12".to_owned(),
        "11".to_owned(),
    ]];
    let _ = c;
    Ok(export::download(
        export::csv(&headers, &example)?,
        "zastupnik-import.csv",
    ))
}

/// Checks every row of an import file for `region`; either every row is valid and the
/// import is one event, or nothing is written and every bad row is named.
pub(crate) async fn import_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    region: &str,
    filename: &str,
    rows: &[Vec<String>],
    command_id: Uuid,
) -> AppResult<Result<usize, Vec<RowError>>> {
    let scope = WeeklyScope::of(viewer);
    let Ok(code) = RegionCode::parse(region) else {
        return Err(AppError::NotFound);
    };
    if !scope.reviews(region) {
        return Err(AppError::NotFound);
    }
    let places = sqlx::query(
        "SELECT m.id, lower(m.name) AS name, d.pupils FROM reference.municipality m \
           LEFT JOIN weekly.department d ON d.municipality = m.id WHERE m.region_code = $1",
    )
    .bind(region)
    .fetch_all(state.log.pool())
    .await?;
    let mut by_name: HashMap<String, Uuid> = HashMap::new();
    let mut pupils: BTreeMap<Uuid, u32> = BTreeMap::new();
    for row in &places {
        let id: Uuid = row.try_get("id")?;
        by_name.insert(row.try_get("name")?, id);
        if let Some(p) = row.try_get::<Option<i32>, _>("pupils")? {
            pupils.insert(id, u32::try_from(p).unwrap_or(0));
        }
    }
    let filed: Vec<(Uuid, time::Date)> = sqlx::query_as(
        "SELECT municipality, friday FROM weekly.report \
          WHERE region_code = $1 AND children IS NOT NULL",
    )
    .bind(region)
    .fetch_all(state.log.pool())
    .await?;
    let filed: std::collections::HashSet<(Uuid, time::Date)> = filed.into_iter().collect();
    let current = schedule_of(state, region)
        .await?
        .week_at(OffsetDateTime::now_utc());
    let mut errors = Vec::new();
    let mut imported = Vec::with_capacity(rows.len());
    let mut seen = std::collections::HashSet::new();
    for (i, cells) in rows.iter().enumerate() {
        let number = i + 2;
        let cell = |k: usize| cells.get(k).map_or("", |c| c.trim());
        let mut fail = |message: String| {
            errors.push(RowError {
                row: number,
                message,
            })
        };
        let Some(&municipality) = by_name.get(&cell(0).to_lowercase()) else {
            fail(tr.arg("weekly-import-unknown-place", cell(0)));
            continue;
        };
        let Some(week) = week_from(cell(1)) else {
            fail(tr.arg("weekly-import-not-friday", cell(1)));
            continue;
        };
        if week > current {
            fail(
                weekly_refusal(
                    tr,
                    &WeeklyError::FutureWeek {
                        week: week.to_string(),
                    },
                )
                .message,
            );
            continue;
        }
        let mut values = [0u32; 4];
        let labels = [
            "weekly-children",
            "weekly-adults",
            "weekly-schools",
            "weekly-responsible",
        ];
        let mut bad = None;
        for (k, label) in labels.iter().enumerate() {
            match count(tr, label, cell(k + 2)) {
                Ok(v) => values[k] = v,
                Err(refusal) => {
                    bad = Some(refusal.message);
                    break;
                }
            }
        }
        if let Some(message) = bad {
            fail(message);
            continue;
        }
        let row = ImportedRow {
            period: Period {
                region: code.clone(),
                municipality,
                week,
            },
            figures: Figures {
                children: values[0],
                adults: values[1],
                schools: values[2],
                schools_with_responsible: values[3],
            },
        };
        if let Err(error) = check_row(&row, pupils.get(&municipality).copied()) {
            fail(weekly_refusal(tr, &error).message);
            continue;
        }
        if filed.contains(&(municipality, week.friday())) {
            fail(
                weekly_refusal(
                    tr,
                    &WeeklyError::AlreadyReported {
                        week: week.to_string(),
                    },
                )
                .message,
            );
            continue;
        }
        if !seen.insert((municipality, week)) {
            fail(
                weekly_refusal(
                    tr,
                    &WeeklyError::RowTwice {
                        week: week.to_string(),
                    },
                )
                .message,
            );
            continue;
        }
        imported.push(row);
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let count = imported.len();
    let Some(source) = Text::parse(filename).or_else(|| Text::parse("import")) else {
        return Err(AppError::Unexpected(anyhow::anyhow!("no import source")));
    };
    let bus = CommandBus::<WeeklyImport>::new(state.log.clone(), ());
    let meta = CommandMeta::new(viewer.actor()).with_command_id(command_id);
    let id = Uuid::new_v5(&command_id, b"weekly-import");
    match bus
        .execute(
            &id.to_string(),
            ImportCommand::Import {
                source,
                rows: imported,
                pupils,
            },
            &meta,
        )
        .await
    {
        Ok(_) => Ok(Ok(count)),
        Err(CommandError::Rejected(error)) => Ok(Err(vec![RowError {
            row: 0,
            message: weekly_refusal(tr, &error).message,
        }])),
        Err(error) => Err(error.into()),
    }
}

async fn import(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let scope = WeeklyScope::of(&viewer);
    let mut page = ImportPage {
        regions: review_choices(&state, &scope).await?,
        region: String::new(),
        columns: IMPORT_COLUMNS.to_vec(),
        errors: Vec::new(),
        error: None,
        notice: None,
        c,
    };
    let tr = page.c.tr;
    let (region, file) = match crate::pages::import::read_upload(&mut multipart).await {
        Ok(upload) => upload,
        Err(key) => {
            page.error = Some(tr.t(key));
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    page.region = region.clone();
    let Some((name, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        page.error = Some(tr.t("import-empty"));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    };
    let rows = match crate::pages::import::read_rows(&name, &bytes) {
        Ok(rows) => rows,
        Err(key) => {
            page.error = Some(tr.t(key));
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let command_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, &sha2_of(&bytes, &region));
    match import_command(&state, &viewer, tr, &region, &name, &rows, command_id).await? {
        Ok(count) => Ok(Redirect::to(&format!(
            "/zastupnik/svodka?region={region}&notice=weekly-imported&imported={count}"
        ))
        .into_response()),
        Err(errors) => {
            page.error = Some(tr.t("weekly-import-refused"));
            page.errors = errors;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// The same file for the same region imports once (a double submission adds nothing).
fn sha2_of(bytes: &[u8], region: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(region.as_bytes());
    hasher.update(bytes);
    hasher.finalize().to_vec()
}
