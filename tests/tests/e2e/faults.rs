//! The database going away under the server: pages and commands answer 503 with
//! `Retry-After` (not a 500, not a hang), the pool reconnects by itself once PostgreSQL is
//! back, and nothing acknowledged before is lost. On a private cluster of its own, so that
//! stopping it touches no other test.

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use opora_store::EventLog;
use opora_tests::TestDb;
use opora_web::embedded::{Durability, EmbeddedPostgres};
use opora_web::AppConfig;

use crate::client::TestApp;

/// A page that reads the projections.
const PAGE: &str = "/monitoring/vyzov";

#[tokio::test]
async fn with_the_database_away_the_server_answers_503_and_recovers_by_itself() {
    let dir = std::env::temp_dir().join(format!("opora-faults-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // As root the cluster runs as postgres, which must reach the folder.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut pg = EmbeddedPostgres::start(&dir, Durability::Throwaway).unwrap();
    let url = pg.url("postgres");
    let pool = opora_web::db::connect(&url, 8).await.unwrap();
    opora_web::db::migrate(&pool).await.unwrap();
    let db = TestDb {
        name: "postgres".into(),
        options: url.parse().unwrap(),
        pool: pool.clone(),
        log: EventLog::new(pool.clone()),
    };
    let test = TestApp::with_demo_on(db, AppConfig::default()).await;
    let mut analyst = test.client();
    analyst.login("analyst").await;
    assert_eq!(analyst.get(PAGE).await.status, StatusCode::OK);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&pool)
        .await
        .unwrap();

    pg.stop().unwrap();
    for path in [PAGE, "/monitoring/vyzov?na=2025-01-01", "/"] {
        let started = Instant::now();
        let page = analyst.get(path).await;
        assert_eq!(
            page.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            page.body
        );
        assert_eq!(
            page.headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some(opora_web::error::RETRY_AFTER_SECONDS),
            "{path}"
        );
        assert!(
            page.body.contains("База данных временно недоступна"),
            "{}",
            page.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path} answered after {:?}",
            started.elapsed()
        );
    }
    // A new visitor (no session): the sign-in page and the sign-in itself.
    let mut stranger = test.client();
    let form = stranger.get("/vhod").await;
    let login = stranger
        .post("/vhod", &[("login", "analyst"), ("password", "x")])
        .await;
    assert_eq!(
        form.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        form.body
    );
    // Without the form (it could not be served) the post is refused as a stale form.
    assert_eq!(login.status, StatusCode::FORBIDDEN, "{}", login.body);

    // Back: the same pool serves again without a restart of the server.
    let pg = EmbeddedPostgres::start_on(&dir, Durability::Throwaway, Some(pg.port())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = analyst.get(PAGE).await;
        if page.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back after 30 s: {}",
            page.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        after >= events,
        "events acknowledged before the outage are all there"
    );
    let report = opora_store::verify::verify(&pool).await.unwrap();
    assert_eq!(report.problems, 0, "{:?}", report.first_problem);
    assert_eq!(report.events as i64, after);
    drop(test);
    pool.close().await;
    let mut pg = pg;
    pg.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
