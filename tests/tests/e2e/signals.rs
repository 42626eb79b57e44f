//! «Заступник» signals: the ingestion API (keys, idempotency, 422 lists, rate limits), the
//! notification outbox through a signed webhook with retries, escalation, and the operators'
//! console with its scope.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use opora_domain::reference::RegionCode;
use opora_domain::signal::{Signal, SignalCommand, SignalKind};
use opora_store::{CommandBus, CommandMeta};
use opora_web::notify::{self, Transport, WorkerConfig};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::client::{Client, TestApp};

async fn events(test: &TestApp, aggregate_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.event WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(&test.db.pool)
        .await
        .unwrap()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// An ingestion client with `rate` calls per second; its key.
async fn client_key(test: &TestApp, rate: u32) -> (Uuid, String) {
    let (id, key) =
        opora_web::ingest::register_client(&test.db.log, "Тестовый бэкенд", rate, "test")
            .await
            .unwrap();
    test.project().await;
    (id, key)
}

async fn ingest(
    client: &mut Client,
    key: &str,
    method: Method,
    uri: &str,
    idempotency: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let auth = format!("Bearer {key}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    if let Some(k) = idempotency {
        headers.push(("idempotency-key", k));
    }
    let response = client
        .request(method, uri, Some(body.to_string()), &headers)
        .await;
    let value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

fn raise_body(child: &str, region: &str) -> Value {
    json!({
        "child": child,
        "pressed_at": rfc3339(OffsetDateTime::now_utc() - time::Duration::seconds(2)),
        "latitude": 54.98, "longitude": 73.37, "accuracy_m": 12.5,
        "kind": "lost", "region": region, "city": "Омск",
        "trusted_adults": [{"id": "mother", "channels": ["push", "sms"]}, {"id": "father"}],
    })
}

#[tokio::test]
async fn ingestion_is_idempotent_and_refusals_list_every_problem_and_write_nothing() {
    let test = TestApp::with_demo().await;
    let (_, key) = client_key(&test, 500).await;
    let mut app = test.client();

    // No key, a wrong key: 401, nothing written.
    let (status, _) = ingest(
        &mut app,
        "opk_wrong",
        Method::POST,
        "/ingest/v1/signals",
        Some("k1"),
        &raise_body("c-1", "55"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The first call raises; its retries answer the same signal and append nothing.
    let (status, first) = ingest(
        &mut app,
        &key,
        Method::POST,
        "/ingest/v1/signals",
        Some("k1"),
        &raise_body("c-1", "55"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let signal = first["signal"].as_str().unwrap().to_owned();
    let after_first = events(&test, "Signal").await;
    assert_eq!(
        after_first, 2,
        "raised and the notification request, in one append"
    );
    for _ in 0..3 {
        let (status, again) = ingest(
            &mut app,
            &key,
            Method::POST,
            "/ingest/v1/signals",
            Some("k1"),
            &raise_body("c-1", "55"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["signal"], first["signal"]);
    }
    assert_eq!(events(&test, "Signal").await, after_first);

    // A location update and an adult's acknowledgement, each retried: once each.
    let at = rfc3339(OffsetDateTime::now_utc());
    for _ in 0..2 {
        let (status, body) = ingest(
            &mut app,
            &key,
            Method::POST,
            &format!("/ingest/v1/signals/{signal}/location"),
            Some("loc-1"),
            &json!({"at": at, "latitude": 54.99, "longitude": 73.38}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = ingest(
            &mut app,
            &key,
            Method::POST,
            &format!("/ingest/v1/signals/{signal}/acknowledgements"),
            Some("ack-1"),
            &json!({"adult": "mother", "at": at}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(events(&test, "Signal").await, after_first + 2);

    // Everything wrong at once: every problem listed, nothing written.
    let ten_years = rfc3339(OffsetDateTime::now_utc() + time::Duration::days(3650));
    let (status, refused) = ingest(
        &mut app,
        &key,
        Method::POST,
        "/ingest/v1/signals",
        Some("k2"),
        &json!({
            "child": "c-2", "pressed_at": ten_years, "latitude": 200, "longitude": 73.0,
            "kind": "alien-invasion", "region": "55", "colour": "red",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"], "invalid-input");
    let fields: Vec<(&str, &str)> = refused["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["field"].as_str().unwrap(), p["code"].as_str().unwrap()))
        .collect();
    for expected in [
        ("pressed_at", "in-future"),
        ("latitude", "out-of-range"),
        ("kind", "unknown-value"),
        ("colour", "unknown-field"),
    ] {
        assert!(
            fields.contains(&expected),
            "{expected:?} missing in {fields:?}"
        );
    }
    assert!(refused["problems"][0]["message"].as_str().unwrap().len() > 5);
    // No idempotency key; a broken body; a region that does not exist.
    let (status, refused) = ingest(
        &mut app,
        &key,
        Method::POST,
        "/ingest/v1/signals",
        None,
        &raise_body("c-3", "55"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["problems"][0]["field"], "Idempotency-Key");
    let broken = app
        .request(
            Method::POST,
            "/ingest/v1/signals",
            Some("{\"child\": ".to_owned()),
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {key}")),
                ("idempotency-key", "k4"),
            ],
        )
        .await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(broken.body.contains("malformed"), "{}", broken.body);
    let (status, refused) = ingest(
        &mut app,
        &key,
        Method::POST,
        "/ingest/v1/signals",
        Some("k5"),
        &raise_body("c-5", "99"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["problems"][0]["field"], "region");
    // A step on a closed signal: 409 with the rule's message; another client's signal: 404.
    let (status, _) = ingest(
        &mut app,
        &key,
        Method::POST,
        &format!("/ingest/v1/signals/{signal}/cancel"),
        Some("cancel-1"),
        &json!({"at": at}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, closed) = ingest(
        &mut app,
        &key,
        Method::POST,
        &format!("/ingest/v1/signals/{signal}/location"),
        Some("loc-2"),
        &json!({"at": at, "latitude": 54.99, "longitude": 73.38}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(closed["error"], "signal-error-Closed");
    let (_, other_key) = client_key(&test, 500).await;
    let (status, _) = ingest(
        &mut app,
        &other_key,
        Method::POST,
        &format!("/ingest/v1/signals/{signal}/cancel"),
        Some("x"),
        &json!({"at": at}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(events(&test, "Signal").await, after_first + 3);
    let refusals: i64 =
        sqlx::query_scalar("SELECT count(*) FROM command_refusal WHERE aggregate_type = 'Signal'")
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    assert!(
        refusals <= 1,
        "only the closed-signal step is a recorded refusal"
    );
}

#[tokio::test]
async fn a_registered_child_gives_region_and_adults_and_the_rate_limit_answers_429() {
    let test = TestApp::with_demo().await;
    let (_, key) = client_key(&test, 3).await;
    let mut app = test.client();
    let (status, body) = ingest(&mut app, &key, Method::PUT, "/ingest/v1/children/c-9", None, &json!({
        "region": "72", "city": "Тюмень", "trusted_adults": [{"id": "grandma", "channels": ["call"]}],
    })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    test.project().await;
    let (status, raised) = ingest(&mut app, &key, Method::POST, "/ingest/v1/signals", Some("r-1"), &json!({
        "child": "c-9", "pressed_at": rfc3339(OffsetDateTime::now_utc()), "latitude": 57.15, "longitude": 65.53,
    })).await;
    assert_eq!(status, StatusCode::CREATED, "{raised}");
    test.project().await;
    let (region, city, kind): (String, Option<String>, String) = sqlx::query_as(
        "SELECT region_code, city, kind FROM signals.signal WHERE id = $1::text::uuid",
    )
    .bind(raised["signal"].as_str().unwrap())
    .fetch_one(&test.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (region.as_str(), city.as_deref(), kind.as_str()),
        ("72", Some("Тюмень"), "panic")
    );
    let recipients: Vec<(String, String)> =
        sqlx::query_as("SELECT adult, channel FROM signals.notification")
            .fetch_all(&test.db.pool)
            .await
            .unwrap();
    assert_eq!(recipients, vec![("grandma".to_owned(), "call".to_owned())]);

    // Three calls a second: a burst is cut with 429 and Retry-After.
    let mut limited = None;
    for i in 0..10 {
        let response = app
            .request(
                Method::PUT,
                "/ingest/v1/children/c-9",
                Some(json!({"region": "72"}).to_string()),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {key}")),
                ],
            )
            .await;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, response));
            break;
        }
    }
    let (_, response) = limited.expect("the burst was never limited");
    assert!(response.headers.get("retry-after").is_some());
    assert!(response.body.contains("rate-limited"));
}

/// A gateway that refuses the first `fail` calls, then accepts; it checks each signature.
#[derive(Default)]
struct Gateway {
    calls: Vec<(String, Value, bool)>,
    fail: usize,
}

async fn start_gateway(secret: &'static str, fail: usize) -> (String, Arc<Mutex<Gateway>>) {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let state = Arc::new(Mutex::new(Gateway {
        calls: Vec::new(),
        fail,
    }));
    let shared = Arc::clone(&state);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
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
                let valid = notify::sign(secret, timestamp, &body) == header("x-opora-signature");
                let mut gateway = shared.lock().unwrap();
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                gateway
                    .calls
                    .push((header("idempotency-key"), value, valid));
                if gateway.calls.len() <= gateway.fail {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

#[tokio::test]
async fn notifications_go_through_the_signed_webhook_with_retries_and_receipts() {
    const SECRET: &str = "a shared secret of the gateway";
    let test = TestApp::with_demo().await;
    let (url, gateway) = start_gateway(SECRET, 2).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = opora_projections::Runner::new(
        test.db.log.clone(),
        opora_projections::RunnerConfig::default(),
    );
    let mut tasks = runner.spawn(opora_projections::all(), stopped.clone());
    let mut config = WorkerConfig::new(Transport::Webhook {
        url,
        secret: SECRET.to_owned(),
    });
    config.first_backoff = Duration::from_millis(50);
    tasks.push(notify::spawn_worker(test.db.log.clone(), config, stopped));

    let (_, key) = client_key(&test, 500).await;
    let mut app = test.client();
    let (status, raised) = ingest(
        &mut app,
        &key,
        Method::POST,
        "/ingest/v1/signals",
        Some("w-1"),
        &raise_body("c-1", "55"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let signal = raised["signal"].as_str().unwrap().to_owned();

    // Three notifications (mother by push and SMS, father by push), two refusals first.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM public.event WHERE aggregate_type = 'Signal' AND event_type = 'NotificationDelivered'")
            .fetch_one(&test.db.pool).await.unwrap();
        if delivered == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {delivered} receipts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    let gateway = Gateway {
        calls: gateway.lock().unwrap().calls.clone(),
        fail: 0,
    };
    assert!(
        gateway.calls.iter().all(|(_, _, valid)| *valid),
        "every call signed"
    );
    assert_eq!(gateway.calls.len(), 5, "two refused, three accepted");
    let mut keys: Vec<&str> = gateway
        .calls
        .iter()
        .skip(2)
        .map(|(k, _, _)| k.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 3, "one delivery id per recipient and channel");
    let (_, body, _) = &gateway.calls[4];
    assert_eq!(body["signal"], signal.as_str());
    assert_eq!(body["kind"], "lost");
    // The receipts: attempts counted.
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM signals.notification ORDER BY attempts DESC")
            .fetch_all(&test.db.pool)
            .await
            .unwrap();
    assert!(attempts.iter().sum::<i32>() >= 5, "{attempts:?}");
}

async fn raise_directly(test: &TestApp, region: &str, received_seconds_ago: i64) -> Uuid {
    let bus = CommandBus::<Signal>::new(test.db.log.clone(), ());
    let id = Uuid::now_v7();
    let received = OffsetDateTime::now_utc() - time::Duration::seconds(received_seconds_ago);
    bus.execute(
        &id.to_string(),
        SignalCommand::Raise {
            child: format!("child-{id}"),
            client: Uuid::nil(),
            region: RegionCode::parse(region).unwrap(),
            city: None,
            kind: SignalKind::Panic,
            pressed_at: received - time::Duration::seconds(1),
            received_at: received,
            location: None,
            drill: false,
            recipients: vec![],
        },
        &CommandMeta::new("test"),
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_signal_nobody_takes_in_time_is_escalated_once() {
    let test = TestApp::with_demo().await;
    let late = raise_directly(&test, "55", 90).await;
    let taken = raise_directly(&test, "55", 90).await;
    let fresh = raise_directly(&test, "55", 5).await;
    let bus = CommandBus::<Signal>::new(test.db.log.clone(), ());
    bus.execute(
        &taken.to_string(),
        SignalCommand::Acknowledge {
            operator: "signals".into(),
            at: OffsetDateTime::now_utc(),
        },
        &CommandMeta::new("signals"),
    )
    .await
    .unwrap();
    test.project().await;

    let escalated = opora_web::pages::signals::escalate_due(&test.db.log, &bus, 60)
        .await
        .unwrap();
    assert_eq!(escalated, 1);
    test.project().await;
    let rows: Vec<(Uuid,)> =
        sqlx::query_as("SELECT id FROM signals.signal WHERE escalated_at IS NOT NULL")
            .fetch_all(&test.db.pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(late,)]);
    assert_eq!(
        opora_web::pages::signals::escalate_due(&test.db.log, &bus, 60)
            .await
            .unwrap(),
        0
    );
    let _ = fresh;

    // The console shows it highlighted, first.
    let mut operator = test.client();
    operator.login("signals").await;
    let page = operator.get("/zastupnik/signaly").await;
    assert_eq!(page.status, StatusCode::OK);
    let first_row = page.body.split("<tr class=\"").nth(1).unwrap();
    assert!(first_row.starts_with("escalated"), "{first_row}");
    assert!(first_row.contains(&late.to_string()));
}

#[tokio::test]
async fn operators_work_signals_of_their_regions_only() {
    let test = TestApp::with_demo().await;
    let ours = raise_directly(&test, "55", 10).await;
    let moscow = raise_directly(&test, "77", 10).await;
    test.project().await;

    let mut operator = test.client();
    operator.login("signals").await;
    let queue = operator.api(Method::GET, "/api/v1/signals", None).await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.body.contains(&ours.to_string()));
    assert!(
        !queue.body.contains(&moscow.to_string()),
        "Moscow is not served by this operator"
    );
    assert_eq!(
        operator
            .get(&format!("/zastupnik/signaly/{moscow}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        operator.get("/zastupnik/signaly?region=77").await.status,
        StatusCode::NOT_FOUND
    );
    let refused = operator
        .api(
            Method::POST,
            &format!("/api/v1/signals/{moscow}/acknowledge"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);

    // A whole response from the console's forms.
    let page = operator.get(&format!("/zastupnik/signaly/{ours}")).await;
    assert!(page.body.contains("Принять сигнал"));
    for (action, extra) in [
        ("acknowledge", ("responder", "")),
        ("dispatch", ("responder", "volunteer")),
        ("en_route", ("responder", "volunteer")),
        ("on_scene", ("responder", "volunteer")),
    ] {
        let id = Uuid::now_v7().to_string();
        let done = operator
            .post(
                &format!("/zastupnik/signaly/{ours}"),
                &[("action", action), ("command_id", &id), extra],
            )
            .await;
        assert_eq!(
            done.status,
            StatusCode::SEE_OTHER,
            "{action}: {}",
            done.body
        );
    }
    // En route twice: the rule's message, nothing written.
    let before = events(&test, "Signal").await;
    let again = operator
        .post(
            &format!("/zastupnik/signaly/{ours}"),
            &[
                ("action", "en_route"),
                ("command_id", &Uuid::now_v7().to_string()),
                ("responder", "police"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.body.contains("сначала отметьте"), "{}", again.body);
    assert_eq!(events(&test, "Signal").await, before);
    let closed = operator
        .api(
            Method::POST,
            &format!("/api/v1/signals/{ours}/resolve"),
            Some(&json!({"outcome": "operators", "note": "Ребёнок дома"})),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    test.project().await;
    let shown = operator
        .api(Method::GET, &format!("/api/v1/signals/{ours}"), None)
        .await;
    let shown: Value = serde_json::from_str(&shown.body).unwrap();
    assert_eq!(shown["open"], false, "{shown}");
    assert_eq!(shown["row"]["acknowledged_by"], "signals");
    assert_eq!(shown["responders"][0]["kind"], "volunteer");
    assert!(shown["responders"][0]["on_scene_at"].is_string());
    let queue = operator.api(Method::GET, "/api/v1/signals", None).await;
    assert!(
        !queue.body.contains(&ours.to_string()),
        "a closed signal leaves the queue"
    );

    // The federal analyst reads both regions and cannot act; a curator has no console.
    let mut analyst = test.client();
    analyst.login("analyst").await;
    let queue = analyst.api(Method::GET, "/api/v1/signals", None).await;
    assert!(queue.body.contains(&moscow.to_string()));
    let refused = analyst
        .api(
            Method::POST,
            &format!("/api/v1/signals/{moscow}/acknowledge"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let mut curator = test.client();
    curator.login("curator16").await;
    assert_eq!(
        curator.get("/zastupnik/signaly").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_signal_linked_to_a_case_shows_on_the_case_page() {
    let test = TestApp::with_demo().await;
    let signal = raise_directly(&test, "16", 30).await;
    test.project().await;
    let mut operator = test.client();
    operator.login("signals").await;
    // A case of another region is not found from this signal.
    let refused = operator
        .api(
            Method::POST,
            &format!("/api/v1/signals/{signal}/link-case"),
            Some(&json!({"case": "22-2025-Д0001"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("signal-case-not-found"));
    let linked = operator
        .api(
            Method::POST,
            &format!("/api/v1/signals/{signal}/link-case"),
            Some(&json!({"case": "16-2025-Д0001"})),
        )
        .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    operator
        .api(
            Method::POST,
            &format!("/api/v1/signals/{signal}/on-scene"),
            Some(&json!({"responder": "trusted_adult"})),
        )
        .await;
    test.project().await;

    let case: Uuid =
        sqlx::query_scalar("SELECT id FROM cases.child_case WHERE case_number = '16-2025-Д0001'")
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    let mut curator = test.client();
    curator.login("curator16").await;
    let page = curator.get(&format!("/vyzov/dela/{case}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Сигналы «Заступника» по этому ребёнку"),
        "{}",
        page.body
    );
    assert!(page.body.contains("тревожная кнопка"));
    assert!(page.body.contains("помощь на месте через"));
}

#[tokio::test]
async fn the_administrator_issues_rotates_and_revokes_integration_keys() {
    let test = TestApp::with_demo().await;
    let mut admin = test.client();
    admin.login("admin").await;
    admin.get("/admin/integracii").await;
    let created = admin
        .post(
            "/admin/integracii",
            &[("name", "Боевой сервер"), ("rate", "100")],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let key = created
        .body
        .split("<code class=\"key\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("opk_"));
    let stored: String =
        sqlx::query_scalar("SELECT key_hash FROM signals.client WHERE name = 'Боевой сервер'")
            .fetch_one(&test.db.pool)
            .await
            .unwrap();
    assert_ne!(stored, key, "only the hash is kept");
    assert!(
        !sqlx::query_scalar::<_, String>(
            "SELECT payload::text FROM public.event WHERE aggregate_type = 'IntegrationClient'"
        )
        .fetch_all(&test.db.pool)
        .await
        .unwrap()
        .iter()
        .any(|p| p.contains(&key)),
        "the key is not in the log"
    );
    let mut backend = test.client();
    let register = json!({"region": "55"});
    let (status, _) = ingest(
        &mut backend,
        &key,
        Method::PUT,
        "/ingest/v1/children/c-1",
        None,
        &register,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let id: Uuid = sqlx::query_scalar("SELECT id FROM signals.client WHERE name = 'Боевой сервер'")
        .fetch_one(&test.db.pool)
        .await
        .unwrap();
    let rotated = admin
        .post(&format!("/admin/integracii/{id}"), &[("action", "rotate")])
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_key = rotated
        .body
        .split("<code class=\"key\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new_key, key);
    for k in [&key, &new_key] {
        let (status, _) = ingest(
            &mut backend,
            k,
            Method::PUT,
            "/ingest/v1/children/c-1",
            None,
            &register,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the old key works for a day after the rotation"
        );
    }
    let wrong = admin
        .post(
            &format!("/admin/integracii/{id}"),
            &[("action", "rate"), ("rate", "0")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let revoked = admin
        .post(&format!("/admin/integracii/{id}"), &[("action", "revoke")])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let (status, _) = ingest(
        &mut backend,
        &new_key,
        Method::PUT,
        "/ingest/v1/children/c-1",
        None,
        &register,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_demo_year_holds_the_seeds_cities_users_and_signals() {
    let test = TestApp::with_demo().await;
    opora_web::demo::signals::load(&test.db.log, OffsetDateTime::now_utc())
        .await
        .unwrap();
    test.project().await;
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT city, count(*) FROM signals.signal GROUP BY city ORDER BY count(*) DESC",
    )
    .fetch_all(&test.db.pool)
    .await
    .unwrap();
    // A year per city, plus one signal open now.
    assert_eq!(
        counts,
        vec![
            ("Омск".to_owned(), 1_989),
            ("Нижний Новгород".to_owned(), 877),
            ("Тюмень".to_owned(), 599),
            ("Ульяновск".to_owned(), 315),
        ]
    );
    let mut analyst = test.client();
    analyst.login("analyst").await;
    let kpi = analyst.api(Method::GET, "/api/v1/signals/kpi", None).await;
    assert_eq!(kpi.status, StatusCode::OK, "{}", kpi.body);
    let kpi: Value = serde_json::from_str(&kpi.body).unwrap();
    let omsk = kpi["by_city"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "Омск")
        .unwrap();
    assert_eq!(
        omsk["connected"], 45_882,
        "the city's users, from its weekly report"
    );
    let circle = kpi["share_resolved_by_circle"].as_f64().unwrap();
    assert!((0.75..0.83).contains(&circle), "trusted circle {circle}");
    // A second load appends nothing.
    let before = events(&test, "Signal").await;
    opora_web::demo::signals::load(&test.db.log, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(events(&test, "Signal").await, before);
}
