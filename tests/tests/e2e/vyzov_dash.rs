//! «Вызов» dashboard: the page, its exports and its scope over the demo data, and a late
//! entry made through the curator's form moving the figures as of its day, only as known
//! from the day it was recorded.

use axum::http::StatusCode;
use opora_projections::vyzov::{self, Counters};
use opora_web::pages::vyzov_dash::PILOT;
use time::Duration;

use crate::cases::{ago, record};
use crate::client::{Client, TestApp};

/// The demo with its pilot cases (as `opora serve --demo` loads them).
async fn with_pilot() -> TestApp {
    let test = TestApp::with_demo().await;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    opora_web::demo::pilot::load(&test.db.log, &test.vault, today)
        .await
        .unwrap();
    test.project().await;
    test
}

async fn signed_in(test: &TestApp, login: &str) -> Client {
    let mut client = test.client();
    client.login(login).await;
    client
}

fn sum(figures: &std::collections::HashMap<String, Counters>, codes: &[&str], m: usize) -> i64 {
    codes
        .iter()
        .filter_map(|c| figures.get(*c))
        .map(|f| f[m])
        .sum()
}

/// The numbers of a CSV export (`;`, UTF-8 with a byte-order mark), row by row.
fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    assert_eq!(
        &bytes[..3],
        b"\xEF\xBB\xBF",
        "Excel needs the byte-order mark"
    );
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(true)
        .from_reader(&bytes[3..]);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn the_dashboard_shows_the_projection_exports_it_and_keeps_to_scope() {
    let test = with_pilot().await;
    let pool = &test.db.pool;
    let baseline = time::macros::date!(2024 - 07 - 01);
    let midway = time::macros::date!(2025 - 10 - 01);
    let figures = vyzov::region_figures(pool, &[baseline, midway], None)
        .await
        .unwrap();
    // The demo's pilot cases, at 1:100 of seed 004 (web/src/demo/pilot.rs).
    assert_eq!(sum(&figures[0], &PILOT, vyzov::INST), 212);
    assert_eq!(sum(&figures[1], &PILOT, vyzov::INST), 164);

    let mut analyst = signed_in(&test, "analyst").await;
    let page = analyst.get("/monitoring/vyzov?na=2025-10-01").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Итого: 14 регионов «Вызова»"));
    assert!(page.body.contains("<svg class=\"chart\""));
    assert!(page.body.contains("−22,6"), "212 → 164 is −22.6 %");

    // The CSV of the progress table round-trips to the projection's figures.
    let csv = analyst
        .get("/monitoring/vyzov/vygruzka?na=2025-10-01&tablica=progress&format=csv")
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let rows = csv_rows(&csv.bytes);
    let total = rows
        .iter()
        .find(|r| r[0] == "Итого: 14 регионов «Вызова»")
        .expect("the pilot total");
    assert_eq!(total[2..4], ["212".to_owned(), "164".to_owned()]);
    assert_eq!(total[4], "-22.6");
    let altai = rows.iter().find(|r| r[0] == "Алтайский край").unwrap();
    assert_eq!(altai[1], "да");
    assert_eq!(
        altai[2].parse::<i64>().unwrap(),
        figures[0]["22"][vyzov::INST]
    );
    assert_eq!(
        altai[3].parse::<i64>().unwrap(),
        figures[1]["22"][vyzov::INST]
    );
    // The XLSX file has the same numbers, as numbers.
    let xlsx = analyst
        .get("/monitoring/vyzov/vygruzka?na=2025-10-01&tablica=progress&format=xlsx")
        .await;
    assert_eq!(xlsx.status, StatusCode::OK);
    use calamine::{Data, Reader};
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(xlsx.bytes.clone())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let found = sheet
        .rows()
        .find(|r| r[0] == Data::String("Итого: 14 регионов «Вызова»".into()))
        .expect("the pilot total in the workbook");
    assert_eq!(found[2], Data::Float(212.0));
    assert_eq!(found[3], Data::Float(164.0));
    // Every table exports; a wrong one is refused with a message.
    for table in ["vybytie", "rabota", "pomoshch", "dinamika"] {
        let r = analyst
            .get(&format!(
                "/monitoring/vyzov/vygruzka?s=2024-01-01&tablica={table}&format=csv"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{table}");
        assert!(csv_rows(&r.bytes).len() > 1, "{table}");
    }
    let wrong = analyst
        .get("/monitoring/vyzov/vygruzka?tablica=nothing&format=csv")
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("Такой таблицы нет"));

    // A date before anything happened shows zeros; a bad date says what is wrong.
    let early = vyzov::region_figures(pool, &[time::macros::date!(2000 - 01 - 01)], None)
        .await
        .unwrap();
    assert!(early[0].values().all(|c| c[vyzov::INST] == 0));
    let bad = analyst.get("/monitoring/vyzov?na=31.02.2025").await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("«31.02.2025» — не дата"), "{}", bad.body);
    let reversed = analyst
        .get("/monitoring/vyzov?s=2025-05-01&po=2025-04-01")
        .await;
    assert!(reversed.body.contains("Начало периода позже его конца"));
    // The print layout.
    let print = analyst.get("/monitoring/vyzov?pechat=1").await;
    assert!(print.body.contains("Межведомственный мониторинг"));
    assert!(!print.body.contains("<form"));

    // A region's page, per municipality; scoped viewers see their region only.
    let region = analyst.get("/monitoring/vyzov/22").await;
    assert_eq!(region.status, StatusCode::OK);
    assert!(region.body.contains("Итого по региону"));
    let mut curator = signed_in(&test, "curator22").await;
    let own = curator.get("/monitoring/vyzov").await;
    assert!(own.body.contains("Алтайский край"));
    assert!(!own.body.contains("Красноярский край"));
    assert_eq!(
        curator.get("/monitoring/vyzov/24").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        curator
            .get("/monitoring/vyzov/24/vygruzka?tablica=progress&format=csv")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let mut minobr = signed_in(&test, "minobr16").await;
    assert_eq!(
        minobr.get("/monitoring/vyzov/22").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        minobr.get("/monitoring/vyzov/16").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_late_entry_counts_from_its_day_and_only_as_known_from_its_recording() {
    let test = with_pilot().await;
    let pool = &test.db.pool;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    let (before_exit, exit_day) = (today - Duration::days(41), today - Duration::days(40));
    // An Altai child in an institution since before the exit day.
    let case: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM cases.child_case WHERE region_code = '22' AND institution IS NOT NULL \
            AND placed_on < $1 ORDER BY case_number LIMIT 1",
    )
    .bind(today - Duration::days(60))
    .fetch_one(pool)
    .await
    .unwrap();
    let days = [before_exit, exit_day, today];
    let was = vyzov::region_figures(pool, &days, None).await.unwrap();

    let mut curator = signed_in(&test, "curator22").await;
    let done = record(
        &mut curator,
        &format!("/vyzov/dela/{case}"),
        &[
            ("action", "exit"),
            ("on", &ago(40)),
            ("exit", "birth_family"),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    test.project().await;

    let now = vyzov::region_figures(pool, &days, None).await.unwrap();
    let altai = |f: &Vec<std::collections::HashMap<String, Counters>>, i: usize| f[i]["22"];
    // As of the day before the exit nothing changed; from the exit day one child fewer,
    // one more exit to the birth family, and one late entry (recorded 40 days after).
    assert_eq!(altai(&now, 0), altai(&was, 0));
    assert_eq!(altai(&now, 1)[vyzov::INST], altai(&was, 1)[vyzov::INST] - 1);
    assert_eq!(altai(&now, 2)[vyzov::EXIT], altai(&was, 2)[vyzov::EXIT] + 1);
    assert_eq!(altai(&now, 2)[vyzov::LATE], altai(&was, 2)[vyzov::LATE] + 1);
    // As known today: the same; as known yesterday: nothing of the demo (all recorded
    // today) and not the exit.
    let known_today = vyzov::region_figures(pool, &days, Some(today))
        .await
        .unwrap();
    assert_eq!(known_today, now);
    let known_yesterday = vyzov::region_figures(pool, &days, Some(today - Duration::days(1)))
        .await
        .unwrap();
    assert!(known_yesterday
        .iter()
        .all(|m| m.values().all(|c| c.iter().all(|v| *v == 0))));
    // The page says which knowledge it shows.
    let mut analyst = signed_in(&test, "analyst").await;
    let page = analyst
        .get(&format!(
            "/monitoring/vyzov/22?izvestno={}",
            today - Duration::days(1)
        ))
        .await;
    assert!(page.body.contains("Показано то, что было известно"));
    assert!(page.body.contains("по данным на сегодня"));
}
