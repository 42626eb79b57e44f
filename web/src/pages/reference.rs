//! «Справочник»: regions with their time zones, and the municipalities of each region. Read
//! from the `reference` projection.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use sqlx::Row;

use crate::auth::guard::{Routes, Rule};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use crate::AppState;

/// Reference data is not personal: every signed-in user may read it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/spravochnik", Rule::SignedIn, list_regions)
        .get("/spravochnik/regiony.csv", Rule::SignedIn, export_regions)
        .get("/spravochnik/{code}", Rule::SignedIn, show_region)
}

pub struct RegionView {
    pub code: String,
    pub name: String,
    pub kind: String,
    pub federal_district: String,
    pub time_zone: String,
    pub utc_offset: String,
    pub municipalities: i64,
}

pub struct MunicipalityView {
    pub name: String,
    pub kind: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "reference/regions.html")]
pub struct RegionsPage {
    pub c: Chrome,
    pub regions: Vec<RegionView>,
    pub total_municipalities: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "reference/region.html")]
pub struct RegionPage {
    pub c: Chrome,
    pub region: RegionView,
    pub municipalities: Vec<MunicipalityView>,
}

/// Offsets from UTC of the zones in use in Russia (none observes summer time since 2014).
fn utc_offset(zone: &str) -> &'static str {
    match zone {
        "Europe/Kaliningrad" => "UTC+2 (МСК−1)",
        "Europe/Moscow" | "Europe/Simferopol" | "Europe/Kirov" | "Europe/Volgograd" => {
            "UTC+3 (МСК)"
        }
        "Europe/Astrakhan" | "Europe/Saratov" | "Europe/Ulyanovsk" | "Europe/Samara" => {
            "UTC+4 (МСК+1)"
        }
        "Asia/Yekaterinburg" => "UTC+5 (МСК+2)",
        "Asia/Omsk" => "UTC+6 (МСК+3)",
        "Asia/Novosibirsk" | "Asia/Barnaul" | "Asia/Tomsk" | "Asia/Novokuznetsk"
        | "Asia/Krasnoyarsk" => "UTC+7 (МСК+4)",
        "Asia/Irkutsk" => "UTC+8 (МСК+5)",
        "Asia/Chita" | "Asia/Yakutsk" | "Asia/Khandyga" => "UTC+9 (МСК+6)",
        "Asia/Vladivostok" | "Asia/Ust-Nera" => "UTC+10 (МСК+7)",
        "Asia/Sakhalin" | "Asia/Magadan" | "Asia/Srednekolymsk" => "UTC+11 (МСК+8)",
        "Asia/Kamchatka" | "Asia/Anadyr" => "UTC+12 (МСК+9)",
        _ => "",
    }
}

/// Russian alphabetical order without depending on the server's collations: «ё» sorts
/// with «е», case is ignored.
fn sort_key(name: &str) -> String {
    name.to_lowercase().replace('ё', "е")
}

const REGIONS_SQL: &str = "SELECT r.code, r.name, r.kind, r.federal_district, r.time_zone, \
            count(m.id) AS municipalities \
       FROM reference.region AS r \
       LEFT JOIN reference.municipality AS m ON m.region_code = r.code";

fn region_view(tr: Tr, row: &sqlx::postgres::PgRow) -> Result<RegionView, sqlx::Error> {
    let time_zone: String = row.try_get("time_zone")?;
    Ok(RegionView {
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        kind: tr.t(&format!(
            "region-kind-{}",
            row.try_get::<String, _>("kind")?
        )),
        federal_district: row.try_get("federal_district")?,
        utc_offset: utc_offset(&time_zone).to_owned(),
        time_zone,
        municipalities: row.try_get("municipalities")?,
    })
}

async fn all_regions(state: &AppState, tr: Tr) -> AppResult<Vec<RegionView>> {
    let rows = sqlx::query(&format!("{REGIONS_SQL} GROUP BY r.code ORDER BY r.code"))
        .fetch_all(state.log.pool())
        .await?;
    rows.iter()
        .map(|row| region_view(tr, row).map_err(AppError::from))
        .collect()
}

#[tracing::instrument(skip_all)]
pub async fn list_regions(State(state): State<AppState>, c: Chrome) -> AppResult<RegionsPage> {
    let regions = all_regions(&state, c.tr).await?;
    let total_municipalities = regions.iter().map(|r| r.municipalities).sum();
    Ok(RegionsPage {
        c,
        regions,
        total_municipalities,
    })
}

#[tracing::instrument(skip(state))]
pub async fn show_region(
    State(state): State<AppState>,
    c: Chrome,
    Path(code): Path<String>,
) -> AppResult<RegionPage> {
    let row = sqlx::query(&format!("{REGIONS_SQL} WHERE r.code = $1 GROUP BY r.code"))
        .bind(&code)
        .fetch_optional(state.log.pool())
        .await?
        .ok_or(AppError::NotFound)?;
    let region = region_view(c.tr, &row)?;
    let mut municipalities: Vec<MunicipalityView> =
        sqlx::query("SELECT name, kind FROM reference.municipality WHERE region_code = $1")
            .bind(&code)
            .fetch_all(state.log.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(MunicipalityView {
                    name: row.try_get("name")?,
                    kind: c.tr.t(&format!(
                        "municipality-kind-{}",
                        row.try_get::<String, _>("kind")?
                    )),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
    municipalities.sort_by_cached_key(|m| sort_key(&m.name));
    Ok(RegionPage {
        c,
        region,
        municipalities,
    })
}

/// CSV for Excel: UTF-8 with a byte-order mark, semicolon-separated (Russian Excel's list
/// separator).
#[tracing::instrument(skip_all)]
pub async fn export_regions(
    State(state): State<AppState>,
    c: Chrome,
) -> AppResult<impl IntoResponse> {
    let regions = all_regions(&state, c.tr).await?;
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::from("\u{feff}".as_bytes()));
    let csv_error = |e: csv::Error| AppError::Unexpected(e.into());
    writer
        .write_record(
            [
                "csv-code",
                "csv-region",
                "csv-kind",
                "csv-federal-district",
                "csv-time-zone",
                "csv-offset",
                "csv-municipalities",
            ]
            .map(|key| c.tr.t(key)),
        )
        .map_err(csv_error)?;
    for r in &regions {
        writer
            .write_record([
                r.code.as_str(),
                &r.name,
                &r.kind,
                &r.federal_district,
                &r.time_zone,
                &r.utc_offset,
                &r.municipalities.to_string(),
            ])
            .map_err(csv_error)?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("csv: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"regiony.csv\"",
            ),
        ],
        body,
    ))
}
