//! The kill test of «Заступник» signals: the real `opora` server, a stream of signals
//! through the ingestion API, SIGKILL in the middle of it (twice), a restart — and every
//! signal that was acknowledged is in the log and every one of its notifications reaches the
//! webhook. The client behaves as the app's backend does: a call that got no answer is
//! retried with the same idempotency key.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opora_domain::signal::{notification_id, Channel, Recipient};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const KEY: &str = "Y2xpIHRlc3QgbWFzdGVyIGtleSwgMzIgYnl0ZXMhISE=";
const SECRET: &str = "kill-test webhook secret";

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

async fn fresh_database() -> (String, String) {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/test sets it)");
    let name = format!("opora_kill_{}", Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    (database_url(&admin, &name), name)
}

fn serve(url: &str, port: u16, hook: &str) -> Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_opora"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--notify",
            &format!("webhook:{hook}"),
        ])
        .env("DATABASE_URL", url)
        .env("OPORA_MASTER_KEY", KEY)
        .env("OPORA_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(http: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway: records each delivery id it accepted.
async fn gateway() -> (String, Arc<Mutex<HashSet<String>>>) {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let shared = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let shared = Arc::clone(&shared);
                async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let timestamp: i64 = header("x-opora-timestamp").parse().unwrap_or(0);
                    if opora_web::notify::sign(SECRET, timestamp, &body)
                        != header("x-opora-signature")
                    {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    shared.lock().unwrap().insert(header("idempotency-key"));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), seen)
}

/// Raises signal `n` (idempotency key `kill-n`); `Some(id)` when the server answered.
async fn raise(http: &reqwest::Client, port: u16, key: &str, n: usize) -> Option<Uuid> {
    let pressed = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = serde_json::json!({
        "child": format!("child-{n}"), "pressed_at": pressed,
        "latitude": 54.98, "longitude": 73.37, "region": "55",
        "trusted_adults": [{"id": format!("adult-{n}"), "channels": ["push"]}],
    });
    let response = http
        .post(format!("http://127.0.0.1:{port}/ingest/v1/signals"))
        .header("authorization", format!("Bearer {key}"))
        .header("idempotency-key", format!("kill-{n}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    value["signal"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Every server is killed and waited for: rounds 0 and 1 mid-stream, round 2 after delivery.
#[allow(clippy::zombie_processes)]
async fn a_server_killed_mid_stream_loses_no_acknowledged_signal_or_notification() {
    let (url, name) = fresh_database().await;
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_opora"))
        .args([
            "integration",
            "create",
            "--name",
            "kill test",
            "--rate",
            "5000",
        ])
        .env("DATABASE_URL", &url)
        .env("OPORA_MASTER_KEY", KEY)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("opk_"), "{stdout}");

    let (hook, delivered) = gateway().await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let port = free_port();
    let mut acknowledged: Vec<(usize, Uuid)> = Vec::new();
    let mut unanswered: Vec<usize> = Vec::new();
    let mut next = 0_usize;
    let mut kills = 0;
    for round in 0..3 {
        let t0 = Instant::now();
        let mut server = serve(&url, port, &hook);
        wait_ready(&http, port).await;
        eprintln!("round {round}: ready after {:?}", t0.elapsed());
        // The backend retries what got no answer before the kill, with the same key.
        for n in std::mem::take(&mut unanswered) {
            match raise(&http, port, &key, n).await {
                Some(id) => acknowledged.push((n, id)),
                None => unanswered.push(n),
            }
        }
        // A stream from four clients; the server is killed 400–900 ms into it.
        let stop_at = Instant::now() + Duration::from_millis(400 + 250 * round as u64);
        let mut streams = tokio::task::JoinSet::new();
        for lane in 0..4 {
            let http = http.clone();
            let key = key.clone();
            let first = next + lane;
            streams.spawn(async move {
                let mut results = Vec::new();
                let mut n = first;
                let deadline = Instant::now() + Duration::from_millis(1_500);
                while Instant::now() < deadline {
                    let answer = raise(&http, port, &key, n).await;
                    let died = answer.is_none();
                    results.push((n, answer));
                    n += 4;
                    if died {
                        break; // the server is gone; the rest is sent after the restart
                    }
                }
                results
            });
        }
        if round < 2 {
            tokio::time::sleep_until(stop_at.into()).await;
            server.kill().unwrap(); // SIGKILL
            server.wait().unwrap();
            kills += 1;
        }
        while let Some(results) = streams.join_next().await {
            for (n, answer) in results.unwrap() {
                next = next.max(n + 1);
                match answer {
                    Some(id) => acknowledged.push((n, id)),
                    None => unanswered.push(n),
                }
            }
        }
        next += 4;
        eprintln!(
            "round {round}: streamed, {} acknowledged, {} unanswered, at {:?}",
            acknowledged.len(),
            unanswered.len(),
            t0.elapsed()
        );
        if round == 2 {
            // Everything acknowledged must reach the gateway, whatever was killed when.
            let expected: HashSet<String> = acknowledged
                .iter()
                .map(|(n, id)| {
                    notification_id(
                        *id,
                        &Recipient {
                            adult: format!("adult-{n}"),
                            channel: Channel::Push,
                        },
                    )
                    .to_string()
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let missing = expected.difference(&delivered.lock().unwrap()).count();
                if missing == 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{missing} of {} notifications never delivered",
                    expected.len()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!("all delivered at {:?}", t0.elapsed());
            server.kill().unwrap();
            server.wait().unwrap();
        }
    }
    assert_eq!(kills, 2);
    assert!(
        acknowledged.len() > 20,
        "too few signals in the stream: {}",
        acknowledged.len()
    );

    // Every acknowledged signal is in the log, once.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let raised: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM event WHERE aggregate_type = 'Signal' AND event_type = 'SignalRaised'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let raised: HashSet<String> = raised.into_iter().collect();
    for (n, id) in &acknowledged {
        assert!(raised.contains(&id.to_string()), "signal {n} ({id}) lost");
    }
    let distinct: HashSet<&Uuid> = acknowledged.iter().map(|(_, id)| id).collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "a retry made a second signal"
    );
    pool.close().await;

    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_opora"))
        .arg("verify")
        .env("DATABASE_URL", &url)
        .env("OPORA_MASTER_KEY", KEY)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");

    let admin = std::env::var("DATABASE_URL").unwrap();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}
