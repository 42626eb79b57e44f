//! The HTTP application over a real database: status codes, rendering, headers.

use axum::http::StatusCode;
use opora_tests::TestDb;
use opora_web::{AppConfig, Application};

use crate::client::{Client, TestApp};

/// The app with the demo data, and a client signed in as the ministry analyst (reference
/// pages are for signed-in users).
async fn app_with_reference_data() -> (TestApp, Client) {
    let test = TestApp::with_demo().await;
    let mut client = test.client();
    client.login("analyst").await;
    (test, client)
}

async fn get(client: &mut Client, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = client.get(uri).await;
    (response.status, response.headers, response.body)
}

#[tokio::test]
async fn health_and_readiness() {
    let (_test, mut app) = app_with_reference_data().await;
    let (status, _, body) = get(&mut app, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = get(&mut app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ready");
    let reference = json["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "reference")
        .unwrap();
    assert_eq!(reference["behind_events"], 0);
}

#[tokio::test]
async fn readiness_fails_while_a_projection_lags() {
    let db = TestDb::new().await;
    opora_web::seed::load_reference(&db.log).await.unwrap();
    // Nothing has been projected, and the lag allowed is zero.
    let vault = crate::client::test_vault(&db).await;
    let app = Application::build(
        db.log.clone(),
        vault,
        AppConfig {
            max_lag_seconds: 0.0,
            ..AppConfig::default()
        },
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let response = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("lagging"), "{body}");
}

#[tokio::test]
async fn the_reference_pages_list_regions_time_zones_and_municipalities() {
    let (_test, mut app) = app_with_reference_data().await;
    let (status, headers, body) = get(&mut app, "/spravochnik").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("<html lang=\"ru\">"));
    assert!(body.contains("Республика Татарстан"));
    assert!(body.contains("Asia/Omsk"));
    assert!(body.contains("89 субъектов"), "region count shown");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");

    let (status, _, body) = get(&mut app, "/spravochnik/16").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Казань"));
    assert!(body.contains("Агрызский муниципальный район"));
    assert!(body.contains("UTC+3 (МСК)"));
    // Alphabetical: Агрызский before Азнакаевский before Казань.
    let a = body.find("Агрызский").unwrap();
    let b = body.find("Азнакаевский").unwrap();
    let k = body.find("Казань").unwrap();
    assert!(a < b && b < k);
}

#[tokio::test]
async fn an_unknown_region_is_a_calm_404_in_russian() {
    let (_test, mut app) = app_with_reference_data().await;
    for uri in [
        "/spravochnik/999",
        "/spravochnik/%3Cscript%3E",
        "/no-such-page",
    ] {
        let (status, _, body) = get(&mut app, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        if uri.starts_with("/spravochnik") {
            assert!(body.contains("Страница не найдена"), "{uri}");
            assert!(!body.contains("<script>"), "{uri}");
        }
    }
}

#[tokio::test]
async fn the_regions_export_opens_in_excel() {
    let (_test, mut app) = app_with_reference_data().await;
    let (status, headers, body) = get(&mut app, "/spravochnik/regiony.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    assert!(
        body.starts_with('\u{feff}'),
        "UTF-8 byte-order mark for Excel"
    );
    let lines: Vec<_> = body.lines().collect();
    assert_eq!(lines.len(), 90, "header and 89 regions");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("16;Республика Татарстан;республика;Приволжский;Europe/Moscow")));
}

#[tokio::test]
async fn pages_speak_english_when_asked_and_hsts_comes_with_https() {
    let (_test, mut client) = app_with_reference_data().await;
    let switched = client.get("/yazyk/en?next=/spravochnik").await;
    assert_eq!(switched.location(), "/spravochnik");
    let page = client.get("/spravochnik").await;
    assert!(
        page.body.contains("<html lang=\"en\">"),
        "{}",
        &page.body[..200]
    );
    assert!(page.body.contains("89 subjects"));
    assert!(client
        .get("/no-such-page")
        .await
        .body
        .contains("Page not found"));
    // An open redirect through `next` is not possible.
    assert_eq!(
        client.get("/yazyk/ru?next=//evil.example").await.location(),
        "/"
    );
    assert!(page.headers.get("strict-transport-security").is_none());
    let db = TestDb::new().await;
    let vault = crate::client::test_vault(&db).await;
    let https = Application::build(
        db.log.clone(),
        vault,
        AppConfig {
            https: true,
            ..AppConfig::default()
        },
    );
    let response = tower::ServiceExt::oneshot(
        https,
        axum::http::Request::get("/healthz")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(response.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age"));
}

/// Read your writes: with the projections' runners following the log in the background, as
/// under `opora serve`, the page a form redirects to shows what the form wrote at once. A
/// new person's page answers 200 with the name (without the wait it answered 404 while the
/// `persons` projection had not yet read the registration).
#[tokio::test]
async fn a_forms_redirect_shows_what_it_wrote_while_runners_follow_in_the_background() {
    let test = TestApp::with_demo_config(AppConfig {
        settle_writes: Some(opora_web::app::SETTLE_WRITES),
        ..AppConfig::default()
    })
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = opora_projections::Runner::new(
        test.db.log.clone(),
        opora_projections::RunnerConfig::default(),
    );
    let tasks = runner.spawn(opora_projections::all(), stopped);
    let mut curator = test.client();
    curator.login("curator16").await;
    for i in 0..5 {
        let family = format!("Проверкина-{i}");
        let created = curator
            .post(
                "/lyudi",
                &[
                    ("kind", "child"),
                    ("sex", "female"),
                    ("region", "16"),
                    ("family_name", &family),
                    ("given_name", "Анна"),
                    ("birth_date", "01.02.2015"),
                ],
            )
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let page = curator.get(created.location()).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "the new person's page, at once"
        );
        assert!(page.body.contains(&family));
    }
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}
