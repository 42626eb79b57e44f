//! «Заступник»: weekly connection reports — filing, corrections, review, stock figures,
//! validation, scoping, bulk import and reminders, against real PostgreSQL.

use axum::http::{Method, StatusCode};
use opora_domain::weekly::{Schedule, Week};
use serde_json::json;
use uuid::Uuid;

use crate::client::{Client, TestApp};

async fn municipality(test: &TestApp, region: &str, name: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM reference.municipality WHERE region_code = $1 AND name = $2")
        .bind(region)
        .bind(name)
        .fetch_one(&test.db.pool)
        .await
        .unwrap()
}

/// The current week in Tatarstan (Moscow time, the default schedule).
fn this_week() -> Week {
    Schedule::default_in("Europe/Moscow").week_at(time::OffsetDateTime::now_utc())
}

async fn signed_in(test: &TestApp, login: &str) -> Client {
    let mut client = test.client();
    client.login(login).await;
    client
}

async fn events(test: &TestApp, aggregate_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.event WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(&test.db.pool)
        .await
        .unwrap()
}

/// Tatarstan's settings page: the deadline on Friday at `time`, locking after 7 days, and
/// one department field.
async fn save_settings(ministry: &mut Client, time: &str, field: (&str, &str)) {
    ministry.get("/zastupnik/nastroyki?region=16").await;
    let fields = [
        ("region", "16"),
        ("deadline_day", "0"),
        ("deadline_time", time),
        ("lock_days", "7"),
        field,
    ];
    let saved = ministry.post("/zastupnik/nastroyki", &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
}

fn report(week: Week, children: u32, adults: u32) -> serde_json::Value {
    json!({
        "week": week.friday().to_string(),
        "children": children,
        "adults": adults,
        "schools": 20,
        "schools_with_responsible": 18,
    })
}

#[tokio::test]
async fn a_report_is_filed_once_corrected_and_reviewed() {
    let test = TestApp::with_demo().await;
    let kazan = municipality(&test, "16", "Казань").await;
    let mut edu = signed_in(&test, "edu-kazan").await;
    let week = this_week();
    let command = Uuid::now_v7();
    let mut body = report(week, 1000, 400);
    body["command_id"] = json!(command);
    let first = edu
        .api(Method::POST, "/api/v1/weekly/reports", Some(&body))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    // The same form twice (a double click, a retry): one report.
    let again = edu
        .api(Method::POST, "/api/v1/weekly/reports", Some(&body))
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(first.body, again.body);
    assert_eq!(events(&test, "WeeklyReport").await, 1);
    let id = serde_json::from_str::<serde_json::Value>(&first.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A correction supersedes; both filings stay in the log.
    let corrected = edu
        .api(
            Method::POST,
            "/api/v1/weekly/reports",
            Some(&report(week, 1100, 420)),
        )
        .await;
    assert_eq!(corrected.status, StatusCode::CREATED, "{}", corrected.body);
    test.project().await;
    let view = edu
        .api(Method::GET, &format!("/api/v1/weekly/reports/{id}"), None)
        .await;
    let view: serde_json::Value = serde_json::from_str(&view.body).unwrap();
    assert_eq!(view["figures"]["children"], 1100);
    assert_eq!(view["entries"].as_array().unwrap().len(), 2);
    assert_eq!(view["entries"][0]["superseded"], true);
    assert_eq!(view["entries"][1]["kind"], "corrected");
    // The region returns it; then it accepts the next filing.
    let mut ministry = signed_in(&test, "minobr16").await;
    let returned = ministry
        .api(
            Method::POST,
            &format!("/api/v1/weekly/reports/{id}/review"),
            Some(&json!({"decision": "return"})),
        )
        .await;
    assert_eq!(
        returned.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a return needs a comment"
    );
    let returned = ministry
        .api(
            Method::POST,
            &format!("/api/v1/weekly/reports/{id}/review"),
            Some(&json!({"decision": "return", "comment": "Уточните число взрослых"})),
        )
        .await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.body);
    test.project().await;
    let summary = ministry
        .api(Method::GET, "/api/v1/weekly/summary?region=16", None)
        .await;
    let summary: serde_json::Value = serde_json::from_str(&summary.body).unwrap();
    let row = summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == kazan.to_string())
        .unwrap();
    assert_eq!(row["status"], "returned");
    assert_eq!(row["children"], 1100);
    assert_eq!(row["review_comment"], "Уточните число взрослых");
    // The page shows the same.
    let page = ministry.get(&format!("/zastupnik/otchet/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Уточните число взрослых"));
    assert!(page.body.contains("заменён исправлением"));
}

#[tokio::test]
async fn totals_are_the_latest_report_of_each_municipality_not_a_sum_over_weeks() {
    let test = TestApp::with_demo().await;
    let mut ministry = signed_in(&test, "minobr16").await;
    let week = this_week();
    let (w3, w2) = (
        week.previous().previous().previous(),
        week.previous().previous(),
    );
    let csv = format!(
        "Муниципальное образование;Неделя (пятница);Дети;Взрослые;Школ;С ответственным\n\
         Казань;{};1000;400;20;18\nКазань;{};1200;450;21;19\n\
         Альметьевский муниципальный район;{};300;100;10;9\n",
        w3.friday(),
        w2.friday(),
        w3.friday(),
    );
    ministry.get("/zastupnik/import").await;
    let imported = ministry
        .post_file(
            "/zastupnik/import",
            &[("region", "16")],
            ("archive.csv", csv.as_bytes()),
        )
        .await;
    assert_eq!(imported.status, StatusCode::SEE_OTHER, "{}", imported.body);
    test.project().await;
    let mut edu = signed_in(&test, "edu-kazan").await;
    let filed = edu
        .api(
            Method::POST,
            "/api/v1/weekly/reports",
            Some(&report(week, 1300, 470)),
        )
        .await;
    assert_eq!(filed.status, StatusCode::CREATED, "{}", filed.body);
    test.project().await;
    let summary = ministry
        .api(
            Method::GET,
            &format!("/api/v1/weekly/summary?region=16&nedelya={}", week.friday()),
            None,
        )
        .await;
    let summary: serde_json::Value = serde_json::from_str(&summary.body).unwrap();
    // Kazan's latest (1300) plus Almetyevsk's only report (300), not 1000+1200+1300+300.
    assert_eq!(summary["total"]["children"], 1600);
    assert_eq!(summary["total"]["adults"], 570);
    let trend = summary["trend"].as_array().unwrap();
    let at = |friday: Week| {
        trend
            .iter()
            .find(|p| p["friday"] == friday.friday().to_string())
            .unwrap()["children"]
            .clone()
    };
    assert_eq!(at(w3), 1300);
    assert_eq!(at(w2), 1500);
    assert_eq!(
        at(week.previous()),
        1500,
        "a week without reports keeps the latest figures"
    );
    assert_eq!(at(week), 1600);
    // The federal analyst sees Tatarstan's row with the same stock.
    let mut analyst = signed_in(&test, "analyst").await;
    let federal = analyst
        .api(Method::GET, "/api/v1/weekly/summary", None)
        .await;
    let federal: serde_json::Value = serde_json::from_str(&federal.body).unwrap();
    let tatarstan = federal["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "16")
        .unwrap();
    assert_eq!(tatarstan["children"], 1600);
    // XLSX and the print layout.
    let xlsx = ministry.get("/zastupnik/svodka.xlsx?region=16").await;
    assert_eq!(xlsx.status, StatusCode::OK);
    assert!(xlsx.body.starts_with("PK"));
    let print = ministry.get("/zastupnik/svodka/pechat?region=16").await;
    assert!(print.body.contains("<svg"));
}

#[tokio::test]
async fn refusals_write_nothing_and_say_what_is_wrong() {
    let test = TestApp::with_demo().await;
    let kazan = municipality(&test, "16", "Казань").await;
    let mut edu = signed_in(&test, "edu-kazan").await;
    let week = this_week();
    let mut bad = report(week, 1000, 400);
    bad["schools_with_responsible"] = json!(25);
    let refused = edu
        .api(Method::POST, "/api/v1/weekly/reports", Some(&bad))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("ResponsibleAboveSchools"),
        "{}",
        refused.body
    );
    let page = edu
        .post(
            "/zastupnik/otchet",
            &[
                ("municipality", &kazan.to_string()),
                ("week", &week.friday().to_string()),
                ("children", "-5"),
                ("adults", "1"),
                ("schools", "1"),
                ("schools_with_responsible", "1"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body.contains("целое неотрицательное число"),
        "{}",
        page.body
    );
    let future = edu
        .api(
            Method::POST,
            "/api/v1/weekly/reports",
            Some(&report(week.next(), 10, 1)),
        )
        .await;
    assert_eq!(future.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        events(&test, "WeeklyReport").await,
        0,
        "refusals write nothing"
    );
    // Last week 1000 children; this week 700 is a drop of 30 %: a comment is needed.
    let last = edu
        .api(
            Method::POST,
            "/api/v1/weekly/reports",
            Some(&report(week.previous(), 1000, 400)),
        )
        .await;
    assert_eq!(last.status, StatusCode::CREATED, "{}", last.body);
    test.project().await;
    let drop = edu
        .api(
            Method::POST,
            "/api/v1/weekly/reports",
            Some(&report(week, 700, 400)),
        )
        .await;
    assert_eq!(drop.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(drop.body.contains("SharpChange"));
    let mut explained = report(week, 700, 400);
    explained["comment"] = json!("Выпускники удалили приложение");
    let ok = edu
        .api(Method::POST, "/api/v1/weekly/reports", Some(&explained))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // The region sets Kazan's pupils: more children than pupils is refused.
    let mut ministry = signed_in(&test, "minobr16").await;
    let pupils = format!("pupils_{kazan}");
    save_settings(&mut ministry, "23:59", (&pupils, "800")).await;
    test.project().await;
    let mut above = report(week, 900, 400);
    above["comment"] = json!("проверка");
    let refused = edu
        .api(Method::POST, "/api/v1/weekly/reports", Some(&above))
        .await;
    assert!(refused.body.contains("AbovePupils"), "{}", refused.body);
    assert_eq!(events(&test, "WeeklyReport").await, 2);
}

#[tokio::test]
async fn each_sees_only_their_own() {
    let test = TestApp::with_demo().await;
    let almetyevsk = municipality(&test, "16", "Альметьевский муниципальный район").await;
    let barnaul = municipality(&test, "22", "Барнаул").await;
    let week = this_week();
    let mut edu = signed_in(&test, "edu-kazan").await;
    let mut other = report(week, 10, 5);
    other["municipality"] = json!(almetyevsk);
    let refused = edu
        .api(Method::POST, "/api/v1/weekly/reports", Some(&other))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::NOT_FOUND,
        "a department files only its own"
    );
    let list = edu
        .api(
            Method::GET,
            &format!("/api/v1/weekly/reports?municipality={almetyevsk}"),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::NOT_FOUND);
    let own = edu.api(Method::GET, "/api/v1/weekly/reports", None).await;
    assert_eq!(own.status, StatusCode::OK);
    let summary = edu.get("/zastupnik/svodka?region=16").await;
    assert_eq!(
        summary.status,
        StatusCode::FORBIDDEN,
        "a department reads no summary"
    );
    // The admin files for Barnaul; Tatarstan's ministry cannot read or review it.
    let mut ministry = signed_in(&test, "minobr16").await;
    assert_eq!(
        ministry.get("/zastupnik/svodka?region=22").await.status,
        StatusCode::NOT_FOUND
    );
    let unlock = ministry
        .api(
            Method::POST,
            "/api/v1/weekly/unlock",
            Some(
                &json!({"municipality": barnaul, "week": week.friday().to_string(), "reason": "x"}),
            ),
        )
        .await;
    assert_eq!(unlock.status, StatusCode::NOT_FOUND);
    let mut analyst = signed_in(&test, "analyst").await;
    assert_eq!(
        analyst.get("/zastupnik/svodka?region=22").await.status,
        StatusCode::OK
    );
    let review = analyst
        .api(
            Method::POST,
            "/api/v1/weekly/unlock",
            Some(
                &json!({"municipality": barnaul, "week": week.friday().to_string(), "reason": "x"}),
            ),
        )
        .await;
    assert_eq!(
        review.status,
        StatusCode::NOT_FOUND,
        "federal analysts read, regions act"
    );
}

#[tokio::test]
async fn an_import_with_one_bad_row_writes_nothing() {
    let test = TestApp::with_demo().await;
    let mut ministry = signed_in(&test, "minobr16").await;
    let week = this_week().previous().previous();
    let csv = format!(
        "Муниципальное образование;Неделя;Дети;Взрослые;Школ;С ответственным\n\
         Казань;{};1000;400;20;18\nНет такого района;{};5;1;1;1\nКазань;19.11.2026;1;1;1;1\n",
        week.friday(),
        week.friday()
    );
    ministry.get("/zastupnik/import").await;
    let refused = ministry
        .post_file(
            "/zastupnik/import",
            &[("region", "16")],
            ("a.csv", csv.as_bytes()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("Нет такого района"),
        "row errors name the value"
    );
    assert!(refused.body.contains("не дата пятницы"));
    assert_eq!(events(&test, "WeeklyImport").await, 0);
    test.project().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM weekly.report")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn reminders_go_through_the_mail_transport() {
    let dir = std::env::temp_dir().join(format!("opora-mail-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = opora_web::AppConfig {
        mail: opora_web::mail::Mailer {
            transport: opora_web::mail::MailTransport::Directory(dir.clone()),
            from: "Опора <opora@example.org>".into(),
        },
        ..opora_web::AppConfig::default()
    };
    let test = TestApp::with_demo_config(config).await;
    let almetyevsk = municipality(&test, "16", "Альметьевский муниципальный район").await;
    let mut ministry = signed_in(&test, "minobr16").await;
    let email = format!("email_{almetyevsk}");
    save_settings(&mut ministry, "18:00", (&email, "uo@almetyevsk.example")).await;
    test.project().await;
    let list = ministry.get("/zastupnik/napominaniya.csv?region=16").await;
    assert!(list.body.contains("uo@almetyevsk.example"));
    ministry.get("/zastupnik/svodka?region=16").await;
    let week = this_week().friday().to_string();
    let sent = ministry
        .post(
            "/zastupnik/napominaniya",
            &[("region", "16"), ("week", &week)],
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER);
    assert!(sent.headers["location"]
        .to_str()
        .unwrap()
        .contains("sent=1"));
    let letters: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(letters.len(), 1, "one non-filer has an address");
    let _ = std::fs::remove_dir_all(&dir);
}
