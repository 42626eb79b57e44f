//! The `opora` binary's maintenance commands against a real database (DATABASE_URL).
#![allow(clippy::unwrap_used)]

use std::process::Output;

use sqlx::{Connection, PgConnection};

fn database_url(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, ""), |(b, q)| (b, q));
    let cut = base
        .rfind('/')
        .filter(|i| *i > base.find("://").unwrap_or(0) + 2);
    let root = cut.map_or(base, |i| &base[..i]);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{root}/{name}{query}")
}

/// A new, empty database on the DATABASE_URL server; its URL.
async fn fresh_database() -> String {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let name = format!("opora_cli_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    database_url(&admin, &name)
}

async fn drop_database(url: &str) {
    let admin = std::env::var("DATABASE_URL").unwrap();
    let name = url.split('?').next().unwrap().rsplit('/').next().unwrap();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

fn opora(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_opora"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn verify_status_and_rebuild_from_the_command_line() {
    let url = fresh_database().await;

    let seeded = opora(&url, &["seed"]);
    assert!(seeded.status.success(), "{}", text(&seeded));
    let again = opora(&url, &["seed"]);
    assert!(text(&again).contains("новых команд 0"), "{}", text(&again));

    let intact = opora(&url, &["verify"]);
    assert_eq!(intact.status.code(), Some(0), "{}", text(&intact));
    assert!(text(&intact).contains("Журнал цел"));

    // One byte of one payload: «Казань» becomes «Казанъ».
    let mut db = PgConnection::connect(&url).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    sqlx::query("ALTER TABLE event DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id: String = sqlx::query_scalar(
        "UPDATE event SET payload = replace(payload::text, 'Казань', 'Казанъ')::jsonb \
          WHERE payload::text LIKE '%\"Казань\"%' RETURNING aggregate_id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE event ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    db.close().await.unwrap();

    let tampered = opora(&url, &["verify"]);
    assert_eq!(tampered.status.code(), Some(1), "{}", text(&tampered));
    assert!(text(&tampered).contains("ЖУРНАЛ ПОВРЕЖДЁН"));
    assert!(
        text(&tampered).contains(&format!("Municipality/{id} #1")),
        "{}",
        text(&tampered)
    );

    let status = opora(&url, &["projections", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("reference"));

    let rebuilt = opora(&url, &["projections", "rebuild", "reference"]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt));
    assert!(text(&rebuilt).contains("перестроена"), "{}", text(&rebuilt));

    let guard = opora(&url, &["projections", "rebuild", "stream_head"]);
    assert_eq!(guard.status.code(), Some(1), "{}", text(&guard));
    assert!(text(&guard).contains("охраняет журнал"), "{}", text(&guard));

    let unknown = opora(&url, &["projections", "rebuild", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("Нет проекции «nope»"),
        "{}",
        text(&unknown)
    );

    drop_database(&url).await;
}

const KEY: &str = "Y2xpIHRlc3QgbWFzdGVyIGtleSwgMzIgYnl0ZXMhISE=";

fn opora_with(url: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opora"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("OPORA_MASTER_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_first_administrator_and_erasure_from_the_command_line() {
    let url = fresh_database().await;

    let short = opora_with(
        &url,
        &[
            "admin",
            "create",
            "--login",
            "chief",
            "--name",
            "Главный администратор",
        ],
        "short\n",
    );
    assert_eq!(short.status.code(), Some(2), "{}", text(&short));
    assert!(
        text(&short).contains("не меньше 12 символов"),
        "{}",
        text(&short)
    );
    let created = opora_with(
        &url,
        &[
            "admin",
            "create",
            "--login",
            "chief",
            "--name",
            "Главный администратор",
        ],
        "a long enough passphrase\n",
    );
    assert!(created.status.success(), "{}", text(&created));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM access.credential")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2"),
        "Argon2 hash, not the password: {hash}"
    );

    // A person, then `opora erase person`.
    opora_web::seed::load_reference(&opora_store::EventLog::new(pool.clone()))
        .await
        .unwrap();
    let log = opora_store::EventLog::new(pool.clone());
    let vault = opora_store::Vault::open_with(
        pool.clone(),
        opora_store::MasterKey::from_base64(KEY).unwrap(),
    )
    .await
    .unwrap();
    opora_web::demo::load(&log, &vault).await.unwrap();
    let id: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM event WHERE event_type = 'PersonRegistered' ORDER BY position LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_opora"))
        .args(["erase", "person", &id, "--reason", "проверка"])
        .env("DATABASE_URL", &url)
        .env(
            "OPORA_MASTER_KEY",
            "b3RoZXIga2V5IG90aGVyIGtleSBvdGhlciBrZXkhISE=",
        )
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "another master key is refused");
    assert!(text(&wrong).contains("master key"), "{}", text(&wrong));
    let erased = opora_with(
        &url,
        &[
            "erase",
            "person",
            &id,
            "--reason",
            "Заявление законного представителя",
        ],
        "",
    );
    assert!(erased.status.success(), "{}", text(&erased));
    assert!(text(&erased).contains("удалены"));
    let again = opora_with(&url, &["erase", "person", &id, "--reason", "повтор"], "");
    assert!(
        text(&again).contains("уже были удалены"),
        "{}",
        text(&again)
    );
    let bin = opora_web::embedded::find_bin_dir().unwrap();
    let dump = std::process::Command::new(bin.join("pg_dump"))
        .arg("--dbname")
        .arg(&url)
        .output()
        .unwrap();
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("PersonalDataErased"));
    for needle in ["Алиса", "2014-03-05", "05.03.2014"] {
        assert!(!dump.contains(needle), "{needle} in the dump");
    }
    pool.close().await;
    drop_database(&url).await;
}

#[tokio::test]
async fn a_busy_port_fails_at_once_saying_so_and_touches_no_database() {
    let url = fresh_database().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();

    let refused = opora(&url, &["serve", "--bind", &address]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("не удалось занять адрес {address}")),
        "{}",
        text(&refused)
    );
    assert!(text(&refused).contains("--bind 127.0.0.1:0"));
    // The port is taken before the database is opened: nothing migrated, nothing written.
    let mut db = PgConnection::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    assert_eq!(tables, 0);

    drop(busy);
    drop_database(&url).await;
}
