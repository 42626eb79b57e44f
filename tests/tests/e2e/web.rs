//! The HTTP application over a real database: status codes, rendering, headers.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use opora_projections::{Runner, RunnerConfig};
use opora_tests::TestDb;
use opora_web::{AppState, Application};
use tower::ServiceExt;

async fn app_with_reference_data() -> (TestDb, axum::Router) {
    let db = TestDb::new().await;
    opora_web::seed::load_reference(&db.log).await.unwrap();
    let runner = Runner::new(db.log.clone(), RunnerConfig::default());
    for projection in opora_projections::all() {
        runner.catch_up(projection.as_ref()).await.unwrap();
    }
    let app = Application::build(AppState {
        log: db.log.clone(),
        max_lag_seconds: 10.0,
    });
    (db, app)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn health_and_readiness() {
    let (_db, app) = app_with_reference_data().await;
    let (status, _, body) = get(&app, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ready");
    assert_eq!(json["projections"][0]["name"], "reference");
    assert_eq!(json["projections"][0]["behind_events"], 0);
}

#[tokio::test]
async fn readiness_fails_while_a_projection_lags() {
    let db = TestDb::new().await;
    opora_web::seed::load_reference(&db.log).await.unwrap();
    // Nothing has been projected, and the lag allowed is zero.
    let app = Application::build(AppState {
        log: db.log.clone(),
        max_lag_seconds: 0.0,
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, _, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("lagging"), "{body}");
}

#[tokio::test]
async fn the_reference_pages_list_regions_time_zones_and_municipalities() {
    let (_db, app) = app_with_reference_data().await;
    let (status, headers, body) = get(&app, "/spravochnik").await;
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

    let (status, _, body) = get(&app, "/spravochnik/16").await;
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
    let (_db, app) = app_with_reference_data().await;
    for uri in [
        "/spravochnik/999",
        "/spravochnik/%3Cscript%3E",
        "/no-such-page",
    ] {
        let (status, _, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        if uri.starts_with("/spravochnik") {
            assert!(body.contains("Страница не найдена"), "{uri}");
            assert!(!body.contains("<script>"), "{uri}");
        }
    }
}

#[tokio::test]
async fn the_regions_export_opens_in_excel() {
    let (_db, app) = app_with_reference_data().await;
    let (status, headers, body) = get(&app, "/spravochnik/regiony.csv").await;
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
