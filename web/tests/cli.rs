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
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let name = format!("opora_cli_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = database_url(&admin, &name);

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

    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}
