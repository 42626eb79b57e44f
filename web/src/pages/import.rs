//! Moving a regional register in: a template (XLSX or CSV), an upload, a preview with the
//! errors of every row and the likely duplicates, and only then the import — of every row
//! when all are valid, or of the valid ones when the user explicitly chooses so. Nothing is
//! written by the upload or the preview. The uploaded rows wait between the two steps
//! sealed with the master key (they hold personal data).

use std::collections::HashSet;
use std::io::Cursor;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Multipart, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use opora_domain::access::Role;
use opora_domain::case::{
    AidDecision, CaseAction, CaseCommand, InstitutionType, LegalStatus, PlacementBasis,
    PlacementReason, Review, ReviewLevel,
};
use opora_domain::person::{
    AgeBand, PersonCommand, PersonKind, PersonalData, PersonalInput, Sealed, Sex,
};
use opora_domain::reference::RegionCode;
use opora_store::{CommandError, CommandMeta};
use sqlx::types::Json;
use sqlx::Row;
use time::Date;
use uuid::Uuid;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::export;
use crate::i18n::{today_in, Tr};
use crate::pages::cases::FormFields;
use crate::pages::persons::Choice;
use crate::pages::{Outcome, RecordId, Refusal};
use crate::AppState;
use serde::Serialize;
use utoipa::ToSchema;

pub const IMPORTERS: &[Role] = &[Role::Administrator, Role::RegionalCurator];
/// Rows one upload may hold.
pub const MAX_ROWS: usize = 10_000;
const BATCH_AAD: &[u8] = b"opora:import-batch";
const IMPORT_NAMESPACE: Uuid = Uuid::from_u128(0x6f70_6f72_612d_494d_504f_5254_0000_0001);

pub fn routes() -> Routes {
    Routes::new()
        .get("/vyzov/import", Rule::Roles(IMPORTERS), upload_form)
        .get(
            "/vyzov/import/shablon.xlsx",
            Rule::Roles(IMPORTERS),
            template_xlsx,
        )
        .get(
            "/vyzov/import/shablon.csv",
            Rule::Roles(IMPORTERS),
            template_csv,
        )
        .post("/vyzov/import", Rule::Roles(IMPORTERS), upload)
        .get("/vyzov/import/{id}", Rule::Roles(IMPORTERS), preview)
        .post("/vyzov/import/{id}", Rule::Roles(IMPORTERS), execute)
}

/// The template's columns, in order (message keys).
const COLUMNS: [&str; 14] = [
    "csv-family-name",
    "csv-given-name",
    "csv-patronymic",
    "csv-birth-date",
    "csv-sex",
    "csv-municipality",
    "case-institution",
    "case-institution-type",
    "case-placed-on",
    "case-basis",
    "case-reasons",
    "case-legal-status",
    "case-last-review",
    "review-level",
];

fn example_row() -> Vec<String> {
    [
        "Иванова",
        "Анна",
        "Сергеевна",
        "05.03.2015",
        "женский",
        "Казань",
        "ГБУ «СРЦН „Ласточка“» (демо)",
        "СРЦН",
        "10.03.2025",
        "заявление родителей",
        "бедность, конфликт в семье",
        "без статуса",
        "15.09.2025",
        "региональный",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn headers(tr: Tr) -> Vec<String> {
    COLUMNS.iter().map(|k| tr.t(k)).collect()
}

async fn template_xlsx(c: Chrome) -> AppResult<Response> {
    let body = export::xlsx(&c.tr.t("register-sheet"), &headers(c.tr), &[example_row()])?;
    Ok(export::download(body, "shablon-reestra.xlsx"))
}

async fn template_csv(c: Chrome) -> AppResult<Response> {
    let body = export::csv(&headers(c.tr), &[example_row()])?;
    Ok(export::download(body, "shablon-reestra.csv"))
}

/// A closed-list value as people type it: the code, the full Russian label, or the label's
/// first words (before a parenthesis), in any case; a few common abbreviations too.
fn loose<T: Copy>(all: &[(T, &'static str, &'static str)], raw: &str) -> Option<T> {
    let wanted = raw.trim().to_lowercase().replace('ё', "е");
    if wanted.is_empty() {
        return None;
    }
    all.iter()
        .find(|(_, code, label)| {
            let label = label.to_lowercase().replace('ё', "е");
            let short = label.split(" (").next().unwrap_or(&label);
            *code == wanted
                || label == wanted
                || short == wanted
                || short.starts_with(&wanted) && wanted.chars().count() >= 4
                || label.contains(&format!("({wanted})"))
        })
        .map(|(value, _, _)| *value)
}

/// One row checked: what it would import, or what is wrong with it.
#[derive(Serialize, ToSchema)]
pub struct CheckedRow {
    pub line: usize,
    pub name: String,
    pub errors: Vec<String>,
    pub duplicate: bool,
    #[serde(skip)]
    pub parsed: Option<ParsedRow>,
}

pub struct ParsedRow {
    personal: PersonalData,
    sex: Sex,
    municipality: Option<Uuid>,
    institution: Uuid,
    institution_type: InstitutionType,
    placed_on: Date,
    basis: PlacementBasis,
    reasons: Vec<PlacementReason>,
    legal_status: LegalStatus,
    last_review: Option<(Date, ReviewLevel)>,
}

struct RegionData {
    today: Date,
    municipalities: Vec<(String, Uuid)>,
    institutions: Vec<(String, Uuid, Option<InstitutionType>)>,
    existing: HashSet<(String, String, Date)>,
}

fn key(family: &str, given: &str) -> (String, String) {
    let norm = |s: &str| s.trim().to_lowercase().replace('ё', "е");
    (norm(family), norm(given))
}

async fn region_data(state: &AppState, region: &RegionCode) -> AppResult<RegionData> {
    let zone: Option<String> =
        sqlx::query_scalar("SELECT time_zone FROM reference.region WHERE code = $1")
            .bind(region.as_str())
            .fetch_optional(state.log.pool())
            .await?;
    let municipalities = sqlx::query_as::<_, (String, Uuid)>(
        "SELECT lower(name), id FROM reference.municipality WHERE region_code = $1",
    )
    .bind(region.as_str())
    .fetch_all(state.log.pool())
    .await?;
    let institutions = sqlx::query(
        "SELECT lower(name) AS name, id, institution_type FROM reference.organisation \
          WHERE region_code = $1 AND kind = 'institution'",
    )
    .bind(region.as_str())
    .fetch_all(state.log.pool())
    .await?
    .iter()
    .map(|row| {
        let kind: Option<String> = row.try_get("institution_type")?;
        Ok((
            row.try_get("name")?,
            row.try_get("id")?,
            kind.and_then(|k| InstitutionType::parse(&k).ok()),
        ))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let sealed: Vec<Json<Sealed>> = sqlx::query_scalar(
        "SELECT sealed FROM persons.person WHERE region_code = $1 AND sealed IS NOT NULL",
    )
    .bind(region.as_str())
    .fetch_all(state.log.pool())
    .await?;
    let refs: Vec<&Sealed> = sealed.iter().map(|Json(s)| s).collect();
    let existing = state
        .vault
        .open_many::<PersonalData>(&refs)
        .await?
        .into_iter()
        .flatten()
        .map(|p| {
            let (f, g) = key(&p.family_name, &p.given_name);
            (f, g, p.birth_date)
        })
        .collect();
    Ok(RegionData {
        today: today_in(zone.as_deref().unwrap_or("Europe/Moscow")),
        municipalities,
        institutions,
        existing,
    })
}

fn check_rows(tr: Tr, rows: &[Vec<String>], data: &RegionData) -> Vec<CheckedRow> {
    let mut seen: HashSet<(String, String, Date)> = HashSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for (index, cells) in rows.iter().enumerate() {
        let cell = |i: usize| cells.get(i).map_or("", |s| s.trim());
        let mut errors = Vec::new();
        let personal = match PersonalData::parse(
            &PersonalInput {
                family_name: cell(0),
                given_name: cell(1),
                patronymic: cell(2),
                birth_date: cell(3),
                ..Default::default()
            },
            data.today,
        ) {
            Ok(p) => Some(p),
            Err(field_errors) => {
                for e in field_errors {
                    let column = match e.field {
                        "family_name" => 0,
                        "given_name" => 1,
                        "patronymic" => 2,
                        _ => 3,
                    };
                    errors.push(format!("{}: {}", tr.t(COLUMNS[column]), e.message));
                }
                None
            }
        };
        let mut fail = |column: usize, key: &str| {
            errors.push(format!("{}: {}", tr.t(COLUMNS[column]), tr.t(key)));
        };
        let sex = match cell(4).to_lowercase().as_str() {
            "ж" | "жен" | "жен." => Some(Sex::Female),
            "м" | "муж" | "муж." => Some(Sex::Male),
            other => loose(Sex::ALL, other),
        };
        if sex.is_none() {
            fail(4, "import-unknown-value");
        }
        let municipality = match cell(5) {
            "" => None,
            name => {
                let found = data
                    .municipalities
                    .iter()
                    .find(|(n, _)| *n == name.to_lowercase())
                    .map(|(_, id)| *id);
                if found.is_none() {
                    fail(5, "import-unknown-municipality");
                }
                found
            }
        };
        let institution = data
            .institutions
            .iter()
            .find(|(n, _, _)| *n == cell(6).to_lowercase());
        if institution.is_none() {
            fail(6, "import-unknown-institution");
        }
        let institution_type = match cell(7) {
            "" => institution.and_then(|(_, _, t)| *t),
            raw => loose(InstitutionType::ALL, raw),
        };
        if institution_type.is_none() {
            fail(7, "import-unknown-value");
        }
        let placed_on = opora_domain::parse_date(cell(8));
        match placed_on {
            None => fail(8, "case-bad-date"),
            Some(d) if d > data.today => fail(8, "import-future-date"),
            Some(d) if personal.as_ref().is_some_and(|p| d < p.birth_date) => {
                fail(8, "import-before-birth")
            }
            _ => {}
        }
        let basis = loose(PlacementBasis::ALL, cell(9));
        if basis.is_none() {
            fail(9, "import-unknown-value");
        }
        let reasons: Vec<Option<PlacementReason>> = cell(10)
            .split([',', ';'])
            .filter(|s| !s.trim().is_empty())
            .map(|s| loose(PlacementReason::ALL, s))
            .collect();
        if reasons.is_empty() || reasons.iter().any(Option::is_none) {
            fail(10, "import-unknown-value");
        }
        let legal_status = loose(LegalStatus::ALL, cell(11));
        if legal_status.is_none() {
            fail(11, "import-unknown-value");
        }
        let last_review = match cell(12) {
            "" => None,
            raw => match opora_domain::parse_date(raw) {
                Some(d) if d > data.today => {
                    fail(12, "import-future-date");
                    None
                }
                Some(d) => {
                    let level = match cell(13) {
                        "" => Some(ReviewLevel::Regional),
                        raw => loose(ReviewLevel::ALL, raw),
                    };
                    if level.is_none() {
                        fail(13, "import-unknown-value");
                    }
                    level.map(|l| (d, l))
                }
                None => {
                    fail(12, "case-bad-date");
                    None
                }
            },
        };
        let name = format!("{} {}", cell(0), cell(1)).trim().to_owned();
        let mut duplicate = false;
        if let Some(p) = &personal {
            let (f, g) = key(&p.family_name, &p.given_name);
            let id = (f, g, p.birth_date);
            duplicate = data.existing.contains(&id) || !seen.insert(id);
        }
        let parsed = match (
            personal,
            sex,
            institution,
            institution_type,
            placed_on,
            basis,
            legal_status,
            errors.is_empty(),
        ) {
            (
                Some(personal),
                Some(sex),
                Some((_, institution, _)),
                Some(institution_type),
                Some(placed_on),
                Some(basis),
                Some(legal_status),
                true,
            ) => Some(ParsedRow {
                personal,
                sex,
                municipality,
                institution: *institution,
                institution_type,
                placed_on,
                basis,
                reasons: reasons.into_iter().flatten().collect(),
                legal_status,
                last_review,
            }),
            _ => None,
        };
        out.push(CheckedRow {
            line: index + 2,
            name,
            errors,
            duplicate,
            parsed,
        });
    }
    out
}

/// The rows of an uploaded file (the header row dropped), as text.
pub(crate) fn read_rows(filename: &str, bytes: &[u8]) -> Result<Vec<Vec<String>>, &'static str> {
    let rows = if filename.to_lowercase().ends_with(".csv") {
        let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
            .map_err(|_| "import-not-utf8")?;
        let delimiter = if text.lines().next().is_some_and(|l| l.contains(';')) {
            b';'
        } else {
            b','
        };
        csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
            .collect::<Result<Vec<Vec<String>>, _>>()
            .map_err(|_| "import-bad-file")?
    } else {
        use calamine::{Data, Reader};
        let mut workbook = calamine::open_workbook_auto_from_rs(Cursor::new(bytes.to_vec()))
            .map_err(|_| "import-bad-file")?;
        let range = workbook
            .worksheet_range_at(0)
            .ok_or("import-bad-file")?
            .map_err(|_| "import-bad-file")?;
        range
            .rows()
            .skip(1)
            .map(|row| {
                row.iter()
                    .map(|cell| match cell {
                        Data::Empty => String::new(),
                        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
                        Data::Int(n) => n.to_string(),
                        Data::Float(f) if f.fract() == 0.0 => format!("{f:.0}"),
                        Data::Float(f) => f.to_string(),
                        Data::Bool(b) => b.to_string(),
                        Data::DateTime(d) => excel_date(d.as_f64()),
                        Data::Error(_) => String::new(),
                    })
                    .collect()
            })
            .collect()
    };
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .filter(|r: &Vec<String>| r.iter().any(|c| !c.trim().is_empty()))
        .collect();
    if rows.is_empty() {
        return Err("import-empty");
    }
    if rows.len() > MAX_ROWS {
        return Err("import-too-many");
    }
    Ok(rows)
}

/// The fuzz targets' way in (`fuzz/`, and the suite's replay of their corpus): the bytes
/// as an uploaded register file, CSV when the first byte is even and XLSX when it is odd,
/// read and checked row by row against a small region. Returns the rows checked; never
/// panics, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_file(data: &[u8]) -> usize {
    let Some((&kind, bytes)) = data.split_first() else {
        return 0;
    };
    let name = if kind % 2 == 0 {
        "reestr.csv"
    } else {
        "reestr.xlsx"
    };
    let Ok(rows) = read_rows(name, bytes) else {
        return 0;
    };
    let region = RegionData {
        today: time::macros::date!(2026 - 12 - 05),
        municipalities: vec![("казань".to_owned(), Uuid::nil())],
        institutions: vec![("детский дом № 1".to_owned(), Uuid::nil(), None)],
        existing: HashSet::new(),
    };
    check_rows(Tr::new(crate::i18n::Lang::Ru), &rows, &region).len()
}

/// Seeds for the import fuzz target, as [`fuzz_file`] reads them: the templates the import
/// page offers, as CSV and as XLSX.
#[doc(hidden)]
pub fn fuzz_seeds() -> anyhow::Result<Vec<Vec<u8>>> {
    let tr = Tr::new(crate::i18n::Lang::Ru);
    let csv = export::csv(&headers(tr), &[example_row()])?;
    let xlsx = export::xlsx(&tr.t("register-sheet"), &headers(tr), &[example_row()])?;
    Ok(vec![
        [&[0u8][..], &csv].concat(),
        [&[1u8][..], &xlsx].concat(),
    ])
}

/// An Excel date serial (days since 30.12.1899) as `DD.MM.YYYY`.
fn excel_date(serial: f64) -> String {
    let base = time::macros::date!(1899 - 12 - 30);
    base.checked_add(time::Duration::days(serial.floor() as i64))
        .map(opora_domain::format_date)
        .unwrap_or_default()
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/import.html")]
struct UploadPage {
    c: Chrome,
    regions: Vec<Choice>,
    error: Option<String>,
    accepted: Vec<(String, String)>,
}

fn importer_regions(viewer: &Viewer) -> Option<Vec<String>> {
    if viewer.has_role(Role::Administrator) {
        return None;
    }
    Some(
        viewer
            .registration_regions()
            .unwrap_or_default()
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
    )
}

async fn upload_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    error: Option<String>,
) -> AppResult<UploadPage> {
    let allowed = importer_regions(viewer);
    let (regions, _) =
        crate::pages::persons::region_choices(state.log.pool(), allowed.as_deref()).await?;
    let accepted = vec![
        (c.tr.t("csv-sex"), "женский (ж); мужской (м)".to_owned()),
        (
            c.tr.t("case-institution-type"),
            labels_of(InstitutionType::ALL),
        ),
        (c.tr.t("case-basis"), labels_of(PlacementBasis::ALL)),
        (c.tr.t("case-reasons"), labels_of(PlacementReason::ALL)),
        (c.tr.t("case-legal-status"), labels_of(LegalStatus::ALL)),
        (c.tr.t("review-level"), labels_of(ReviewLevel::ALL)),
    ];
    Ok(UploadPage {
        c,
        regions,
        error,
        accepted,
    })
}

fn labels_of<T>(all: &[(T, &'static str, &'static str)]) -> String {
    all.iter()
        .map(|(_, _, l)| *l)
        .collect::<Vec<_>>()
        .join("; ")
}

async fn upload_form(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
) -> AppResult<UploadPage> {
    upload_page(&state, c, &viewer, None).await
}

/// The upload's form: the region and the file (name and bytes), or a refusal key when the
/// file is too large.
pub(crate) async fn read_upload(
    multipart: &mut Multipart,
) -> Result<(String, Option<(String, Vec<u8>)>), &'static str> {
    let mut region = String::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        match field.name() {
            Some("region") => region = field.text().await.unwrap_or_default(),
            Some("file") => {
                let name = field.file_name().unwrap_or("file.xlsx").to_owned();
                match field.bytes().await {
                    Ok(bytes) => file = Some((name, bytes.to_vec())),
                    Err(_) => return Err("import-too-large"),
                }
            }
            _ => {}
        }
    }
    Ok((region, file))
}

/// Reads an uploaded register into a batch that waits, sealed, for the uploader's
/// confirmation; nothing is imported yet.
pub(crate) async fn upload_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    region: &str,
    file: Option<(String, Vec<u8>)>,
) -> Outcome<Uuid> {
    let allowed = importer_regions(viewer);
    let region = RegionCode::parse(region).ok().filter(|r| {
        allowed
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == r.as_str()))
    });
    let read = match (&region, &file) {
        (None, _) => Err("import-choose-region"),
        (_, None) => Err("import-choose-file"),
        (Some(_), Some((name, bytes))) => read_rows(name, bytes),
    };
    let (Some(region), Ok(rows)) = (region, read.clone()) else {
        let key = read.err().unwrap_or("import-bad-file");
        return Ok(Err(Refusal::new(tr, key)));
    };
    let id = Uuid::now_v7();
    let plain = serde_json::to_vec(&rows)?;
    let sealed = state.vault.seal_with_master(&plain, BATCH_AAD)?;
    sqlx::query(
        "INSERT INTO access.import_batch (id, login, region_code, sealed, rows) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(viewer.user()?.login.clone())
    .bind(region.as_str())
    .bind(sealed)
    .bind(rows.len() as i32)
    .execute(state.log.pool())
    .await?;
    Ok(Ok(id))
}

async fn upload(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let tr = c.tr;
    let (region, file) = match read_upload(&mut multipart).await {
        Ok(read) => read,
        Err(key) => {
            let page = upload_page(&state, c, &viewer, Some(tr.t(key))).await?;
            return Ok((StatusCode::PAYLOAD_TOO_LARGE, page).into_response());
        }
    };
    match upload_command(&state, &viewer, tr, &region, file).await? {
        Ok(id) => Ok(Redirect::to(&format!("/vyzov/import/{id}")).into_response()),
        Err(refusal) => {
            let page = upload_page(&state, c, &viewer, Some(refusal.message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

struct Batch {
    region: RegionCode,
    rows: Vec<Vec<String>>,
    done: bool,
}

async fn load_batch(state: &AppState, viewer: &Viewer, id: Uuid) -> AppResult<Batch> {
    let row = sqlx::query(
        "SELECT region_code, sealed, done_at IS NOT NULL AS done FROM access.import_batch \
          WHERE id = $1 AND login = $2",
    )
    .bind(id)
    .bind(viewer.user()?.login.clone())
    .fetch_optional(state.log.pool())
    .await?
    .ok_or(AppError::NotFound)?;
    let sealed: Vec<u8> = row.try_get("sealed")?;
    let plain = state.vault.open_with_master(&sealed, BATCH_AAD)?;
    let region: String = row.try_get("region_code")?;
    Ok(Batch {
        region: RegionCode::parse(&region)?,
        rows: serde_json::from_slice(&plain)?,
        done: row.try_get("done")?,
    })
}

/// An upload checked row by row, before (or after) it is imported.
#[derive(Serialize, ToSchema)]
pub struct ImportPreview {
    pub id: Uuid,
    pub valid: usize,
    pub invalid: usize,
    pub duplicates: usize,
    /// Imported already.
    pub done: bool,
    pub rows: Vec<CheckedRow>,
}

pub(crate) async fn import_preview(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
) -> AppResult<ImportPreview> {
    let batch = load_batch(state, viewer, id).await?;
    let data = region_data(state, &batch.region).await?;
    let rows = check_rows(tr, &batch.rows, &data);
    Ok(ImportPreview {
        id,
        valid: rows.iter().filter(|r| r.parsed.is_some()).count(),
        invalid: rows.iter().filter(|r| r.parsed.is_none()).count(),
        duplicates: rows.iter().filter(|r| r.duplicate).count(),
        done: batch.done,
        rows,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "cases/import_preview.html")]
struct PreviewPage {
    c: Chrome,
    id: Uuid,
    rows: Vec<CheckedRow>,
    valid: usize,
    invalid: usize,
    duplicates: usize,
    done: bool,
    error: Option<String>,
}

async fn preview_page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    id: Uuid,
    error: Option<String>,
) -> AppResult<PreviewPage> {
    let preview = import_preview(state, viewer, c.tr, id).await?;
    Ok(PreviewPage {
        valid: preview.valid,
        invalid: preview.invalid,
        duplicates: preview.duplicates,
        done: preview.done,
        c,
        id,
        rows: preview.rows,
        error,
    })
}

async fn preview(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
) -> AppResult<PreviewPage> {
    preview_page(&state, c, &viewer, id, None).await
}

/// Imports a checked upload: every row if all are valid, or (`mode=valid`) only the valid
/// ones; likely duplicates skipped when asked (`skip_duplicates`). Gives the rows imported.
pub(crate) async fn execute_command(
    state: &AppState,
    viewer: &Viewer,
    tr: Tr,
    id: Uuid,
    form: &FormFields,
) -> Outcome<usize> {
    let batch = load_batch(state, viewer, id).await?;
    let data = region_data(state, &batch.region).await?;
    let rows = check_rows(tr, &batch.rows, &data);
    let only_valid = form.get("mode") == "valid";
    let skip_duplicates = form.flag("skip_duplicates");
    if !batch.done && !only_valid && rows.iter().any(|r| r.parsed.is_none()) {
        return Ok(Err(Refusal::new(tr, "import-has-errors")));
    }
    let mut imported = 0;
    for (index, row) in rows.iter().enumerate() {
        let Some(parsed) = &row.parsed else { continue };
        // A duplicate of a person already registered is skipped when asked; a duplicate
        // within the file was registered just before and is skipped the same way.
        if row.duplicate && skip_duplicates {
            continue;
        }
        import_row(state, viewer, &batch.region, id, index, parsed, data.today).await?;
        imported += 1;
    }
    sqlx::query("UPDATE access.import_batch SET done_at = coalesce(done_at, now()) WHERE id = $1")
        .bind(id)
        .execute(state.log.pool())
        .await?;
    tracing::info!(batch = %id, rows = imported, "register imported");
    Ok(Ok(imported))
}

async fn execute(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    RecordId(id): RecordId,
    RawForm(raw): RawForm,
) -> AppResult<Response> {
    let form = FormFields::parse(&raw);
    match execute_command(&state, &viewer, c.tr, id, &form).await? {
        Ok(imported) => Ok(Redirect::to(&format!(
            "/vyzov/reestr?notice=import-done&imported={imported}"
        ))
        .into_response()),
        Err(refusal) => {
            let page = preview_page(&state, c, &viewer, id, Some(refusal.message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// Registers the child, opens the case, records the placement and the last review. Every
/// command id derives from the batch and the row: running the import again appends nothing.
async fn import_row(
    state: &AppState,
    viewer: &Viewer,
    region: &RegionCode,
    batch: Uuid,
    index: usize,
    row: &ParsedRow,
    today: Date,
) -> AppResult<()> {
    let id = |what: &str| {
        Uuid::new_v5(
            &IMPORT_NAMESPACE,
            format!("{batch}/{index}/{what}").as_bytes(),
        )
    };
    let meta = |what: &str| CommandMeta::new(viewer.actor()).with_command_id(id(what));
    let unexpected = |e: String| AppError::Unexpected(anyhow::anyhow!(e));
    let person = id("person");
    let sealed = match state.vault.seal(person, &row.personal).await {
        Ok(sealed) => sealed,
        Err(opora_store::VaultError::Erased) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    state
        .persons
        .execute(
            &person.to_string(),
            PersonCommand::RegisterPerson {
                kind: PersonKind::Child,
                region: region.clone(),
                municipality: row.municipality,
                sex: row.sex,
                age_band: AgeBand::at(row.personal.birth_date, today),
                personal: sealed,
                effective_date: row.placed_on,
            },
            &meta("register"),
        )
        .await
        .map_err(|e| unexpected(e.to_string()))?;
    let case = id("case");
    let opened = state
        .log
        .stream_length("ChildCase", &case.to_string())
        .await?
        > 0;
    let mut facts = Vec::new();
    if !opened {
        let number =
            crate::pages::cases::next_case_number(state, region, row.placed_on.year()).await?;
        facts.push((
            "open",
            row.placed_on,
            CaseAction::Open {
                child: person,
                case_number: number,
                region: region.clone(),
                municipality: row.municipality,
                family: None,
            },
        ));
    }
    facts.push((
        "place",
        row.placed_on,
        CaseAction::Place {
            institution: row.institution,
            institution_type: row.institution_type,
            basis: row.basis,
            reasons: row.reasons.clone(),
            legal_status: row.legal_status,
        },
    ));
    if let Some((on, level)) = row.last_review {
        facts.push((
            "review",
            on.max(row.placed_on),
            CaseAction::RecordReview(Review {
                review: id("review-id"),
                level,
                placement_justified: None,
                stay_justified: None,
                parental_claim_justified: None,
                aid: AidDecision::NotRecorded,
                return_possible: None,
                return_by: None,
                next_review: None,
                session: None,
            }),
        ));
    }
    for (what, on, action) in facts {
        match state
            .cases
            .execute(
                &case.to_string(),
                CaseCommand {
                    on,
                    today,
                    born: Some(row.personal.birth_date),
                    action,
                },
                &meta(what),
            )
            .await
        {
            Ok(_) | Err(CommandError::Rejected(opora_domain::case::CaseError::AlreadyOpened)) => {}
            Err(e) => return Err(unexpected(e.to_string())),
        }
    }
    Ok(())
}
