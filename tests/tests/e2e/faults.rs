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

    // A municipal department files its report over and over, through the outage.
    let mut edu = test.client();
    edu.login("edu-kazan").await;
    let (writing, stop_writing) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(file_until(edu, stop_writing));
    tokio::time::sleep(Duration::from_millis(500)).await;

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
    tokio::time::sleep(Duration::from_secs(1)).await;
    writing.send(true).unwrap();
    let answers = writer.await.unwrap();
    // Each filing answered 201 or 503 (never a 500), in time; some on each side of the
    // outage; each 201 is in the log, once.
    assert!(
        answers
            .iter()
            .all(|a| a.1 == StatusCode::CREATED || a.1 == StatusCode::SERVICE_UNAVAILABLE),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.2 < Duration::from_secs(15)),
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.1 == StatusCode::SERVICE_UNAVAILABLE),
        "{answers:?}"
    );
    let acknowledged: Vec<uuid::Uuid> = answers
        .iter()
        .filter(|a| a.1 == StatusCode::CREATED)
        .map(|a| a.0)
        .collect();
    assert!(
        answers.first().is_some_and(|a| a.1 == StatusCode::CREATED),
        "{answers:?}"
    );
    assert!(
        answers.last().is_some_and(|a| a.1 == StatusCode::CREATED),
        "{answers:?}"
    );
    let in_log: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event WHERE opens_command AND command_id = ANY($1)",
    )
    .bind(&acknowledged)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        in_log,
        acknowledged.len() as i64,
        "every acknowledged filing is in the log"
    );

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

/// Files this week's report for Kazan again and again until `stop`: each call's command
/// id, answer and time.
async fn file_until(
    mut edu: crate::client::Client,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(uuid::Uuid, StatusCode, Duration)> {
    let mut answers = Vec::new();
    while !*stop.borrow() {
        let command = uuid::Uuid::now_v7();
        // The same figures twice are refused as unchanged: each filing moves them a little.
        let children = 1000 + (answers.len() % 7) as u32;
        let body = filing(children, command);
        let started = Instant::now();
        let answer = file(&mut edu, &body).await;
        answers.push((command, answer.status, started.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answers
}

/// A Friday filing of Kazan's for this week, as the JSON API takes it.
fn filing(children: u32, command: uuid::Uuid) -> serde_json::Value {
    let week = opora_domain::weekly::Schedule::default_in("Europe/Moscow")
        .week_at(time::OffsetDateTime::now_utc());
    serde_json::json!({
        "week": week.friday().to_string(), "children": children, "adults": 400,
        "schools": 20, "schools_with_responsible": 18, "command_id": command,
    })
}

/// The answer is the calm 503 of a database short of time or room: `overloaded`,
/// `Retry-After: 30`, and the message says nothing was changed.
fn assert_overloaded(answer: &crate::client::Response) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.headers[header::RETRY_AFTER], "30");
    let message: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(message["error"], "overloaded", "{message}");
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("данные не изменены"),
        "{message}"
    );
}

/// Files `body` through the JSON API.
async fn file(
    edu: &mut crate::client::Client,
    body: &serde_json::Value,
) -> crate::client::Response {
    edu.api(
        axum::http::Method::POST,
        "/api/v1/weekly/reports",
        Some(body),
    )
    .await
}

/// Sends `body` again (same `command_id`): filed, and in the log once.
async fn files_once(
    edu: &mut crate::client::Client,
    pool: &sqlx::PgPool,
    body: &serde_json::Value,
) {
    let filed = file(edu, body).await;
    assert_eq!(filed.status, StatusCode::CREATED, "{}", filed.body);
    let command = uuid::Uuid::parse_str(body["command_id"].as_str().unwrap()).unwrap();
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event WHERE command_id = $1 AND opens_command")
            .bind(command)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(written, 1);
}

/// The server's pool as `opora serve` makes it (`Database::serving_pool`), with a 1 s
/// statement timeout; the app over it, sharing the test's database.
async fn with_statement_timeout(test: &TestApp) -> TestApp {
    let options = test
        .db
        .options
        .clone()
        .options([("statement_timeout", "1000ms")]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.clone())
        .await
        .unwrap();
    let log = EventLog::new(pool.clone());
    let app = opora_web::Application::build(log.clone(), test.vault.clone(), AppConfig::default());
    TestApp {
        db: TestDb {
            name: test.db.name.clone(),
            options,
            pool,
            log,
        },
        app,
        vault: test.vault.clone(),
    }
}

#[tokio::test]
async fn a_statement_that_runs_out_of_time_answers_503_and_writes_nothing() {
    let test = TestApp::with_demo().await;
    let slow = with_statement_timeout(&test).await;
    let mut edu = slow.client();
    edu.login("edu-kazan").await;
    let body = filing(1000, uuid::Uuid::now_v7());
    let events = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM event")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = events(test.db.pool.clone()).await;

    // Another session holds the log: the filing's append waits, and runs out of time.
    let mut holder = test.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE event IN EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = Instant::now();
    let refused = file(&mut edu, &body).await;
    assert_overloaded(&refused);
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    holder.rollback().await.unwrap();
    assert_eq!(
        events(test.db.pool.clone()).await,
        before,
        "nothing was written"
    );

    // A page whose read waits on a locked projection: the same calm 503, in Russian.
    let mut analyst = slow.client();
    analyst.login("analyst").await;
    let mut holder = test.db.pool.begin().await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables \
          WHERE schemaname = 'weekly'",
    )
    .fetch_all(&mut *holder)
    .await
    .unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        tables[0]
    ))
    .execute(&mut *holder)
    .await
    .unwrap();
    let page = analyst.get("/zastupnik/svodka").await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(
        page.body.contains("База данных не успела выполнить запрос"),
        "{}",
        page.body
    );
    holder.rollback().await.unwrap();

    // Once the log is free, the same call (same command_id) files the report, once.
    files_once(&mut edu, &test.db.pool, &body).await;
}

/// A tmpfs of a few MiB mounted for a tablespace, owned by the database server's user
/// (`postgres`); unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    /// `Err` with the reason where no such disk can be had (not root, or mounting is not
    /// allowed here): the caller says so and checks nothing.
    fn mount(mebibytes: u32) -> Result<Self, String> {
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not root".into());
        }
        let dir =
            std::env::temp_dir().join(format!("opora-disk-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.to_str().unwrap_or_default().to_owned();
        let size = format!("size={mebibytes}m,mode=0700");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs", &path])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            return Err("mounting a tmpfs is not allowed here".into());
        }
        let disk = Self { dir };
        let owned = std::process::Command::new("chown")
            .args(["postgres:postgres", &path])
            .status()
            .is_ok_and(|s| s.success());
        if !owned {
            return Err("no postgres user to own the disk".into());
        }
        Ok(disk)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A full disk: the log's table is moved to a tablespace on a 16 MiB disk, and the disk is
/// filled. Filings go on until one needs a new page of the log: it answers 503 `overloaded`
/// with `Retry-After` and says nothing was changed; every answer is 201 or that 503, never a
/// 500; the refused filing is not in the log and the chain verifies. With room again, the
/// same `command_id` files once. Mounting the disk needs root (as in CI); without it, the
/// test says so and checks nothing.
#[tokio::test]
async fn a_full_disk_answers_503_and_writes_nothing() {
    let disk = match SmallDisk::mount(16) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("a_full_disk_answers_503_and_writes_nothing: skipped ({why})");
            return;
        }
    };
    let test = TestApp::with_demo().await;
    let pool = &test.db.pool;
    // A tablespace needs a superuser, and a server on this machine (it sees the disk).
    let (superuser, local): (bool, bool) = sqlx::query_as(
        "SELECT rolsuper, coalesce(host(inet_server_addr()) IN ('127.0.0.1', '::1'), true) \
           FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    if !(superuser && local) {
        eprintln!("a_full_disk_answers_503_and_writes_nothing: skipped (not a local superuser)");
        return;
    }
    let space = format!("small_{}", uuid::Uuid::now_v7().simple());
    for statement in [
        format!(
            "CREATE TABLESPACE {space} LOCATION '{}'",
            disk.dir.display()
        ),
        format!("ALTER TABLE event SET TABLESPACE {space}"),
        format!("CREATE TABLE filler (x text) TABLESPACE {space}"),
    ] {
        sqlx::query(&statement).execute(pool).await.unwrap();
    }
    let mut full = false;
    for _ in 0..10_000 {
        let filled = sqlx::query(
            "INSERT INTO filler SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 200)",
        )
        .execute(pool)
        .await;
        if let Err(error) = filled {
            let code = error
                .as_database_error()
                .and_then(|e| e.code())
                .unwrap_or_default();
            assert_eq!(code, "53100", "{error}");
            full = true;
            break;
        }
    }
    assert!(full, "the disk never filled");

    let mut edu = test.client();
    edu.login("edu-kazan").await;
    let events = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM event")
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let mut refused = None;
    for children in 1000..1100 {
        let body = filing(children, uuid::Uuid::now_v7());
        let before = events().await;
        let answer = file(&mut edu, &body).await;
        match answer.status {
            StatusCode::CREATED => continue,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_overloaded(&answer);
                assert_eq!(events().await, before, "nothing was written");
                refused = Some(body);
                break;
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    let body = refused.expect("no filing ran into the full disk");
    let report = opora_store::verify::verify(pool).await.unwrap();
    assert_eq!(report.problems, 0, "the chain after the refusal");

    // Room again: the log back on the main disk; the same call files once.
    for statement in [
        "ALTER TABLE event SET TABLESPACE pg_default".to_owned(),
        "DROP TABLE filler".to_owned(),
        format!("DROP TABLESPACE {space}"),
    ] {
        sqlx::query(&statement).execute(pool).await.unwrap();
    }
    files_once(&mut edu, pool, &body).await;
    drop(disk);
}
