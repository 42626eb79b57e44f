//! `opora-bench signals`: how many «Заступник» signals per second Opora takes in and gets
//! to the trusted adults within a second, end to end, over real HTTP.
//!
//! In one process: Opora (`Application::build`, the projections' runner, the notification
//! worker with the webhook transport) on 127.0.0.1:0, and a webhook receiver on 127.0.0.1:0
//! that notes when each signal's first notification arrives (deliveries are at least once:
//! repeats are not timed, but counted, with how long after the first they came). `POST /ingest/v1/signals` is driven open loop — a
//! ticker at a fixed rate, each request in a task of its own, so slow answers do not slow
//! the rate — at rates stepping up to `--max-rate`, `--seconds` each. Per step: p50/p99 of
//! request → durable (the 201's round trip) and request → delivered (the webhook's arrival
//! minus the request's scheduled instant), and lost (accepted, not delivered 10 s after the
//! step's last request).
//!
//! ours: the highest rate whose p99 delivered ≤ 1000 ms with nothing lost and no error.
//! baseline: raw single-row INSERTs of rows as wide as a raise's event, through a pool of
//! the server's size, at that many concurrent writers, on the same server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use opora_projections::{Runner, RunnerConfig};
use opora_store::EventLog;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{percentile, pool, round3, server_version};

/// Connections of the server's pool (and writers of the baseline): a 2-core machine.
const POOL_SIZE: u32 = 16;
/// HTTP clients the requests are spread over (each with its own connections).
const HTTP_CLIENTS: usize = 4;
/// The delivery target: p99 from request to the adult's notification.
const TARGET_P99_MS: f64 = 1000.0;
/// How long after a step's last request its signals may still be delivered.
const DRAIN: Duration = Duration::from_secs(10);
const RATES: &[u32] = &[
    50, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000,
];

/// What the webhook receiver saw.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) secret: String,
    /// The first arrival of a notification for each signal.
    pub(crate) first: Mutex<HashMap<String, Instant>>,
    /// The first arrival of each delivery id.
    pub(crate) deliveries: Mutex<HashMap<String, Instant>>,
    /// For each repeat: ms since the same delivery's first arrival.
    pub(crate) repeat_after_ms: Mutex<Vec<f64>>,
    pub(crate) requests: AtomicU64,
    pub(crate) repeats: AtomicU64,
    pub(crate) bad_signatures: AtomicU64,
    pub(crate) unreadable: AtomicU64,
}

pub(crate) async fn hook(
    State(received): State<Arc<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    received.requests.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp: i64 = header("x-opora-timestamp").parse().unwrap_or_default();
    let signed = opora_web::notify::sign(&received.secret, timestamp, &body);
    if header("x-opora-signature") != signed {
        received.bad_signatures.fetch_add(1, Ordering::Relaxed);
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        received.unreadable.fetch_add(1, Ordering::Relaxed);
        return StatusCode::BAD_REQUEST;
    };
    let (Some(signal), Some(delivery)) = (value["signal"].as_str(), value["delivery"].as_str())
    else {
        received.unreadable.fetch_add(1, Ordering::Relaxed);
        return StatusCode::BAD_REQUEST;
    };
    if header("idempotency-key") != delivery {
        received.unreadable.fetch_add(1, Ordering::Relaxed);
    }
    let repeat_of = received.deliveries.lock().ok().and_then(|mut seen| {
        match seen.entry(delivery.to_owned()) {
            std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(now);
                None
            }
        }
    });
    if let Some(first) = repeat_of {
        received.repeats.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut delays) = received.repeat_after_ms.lock() {
            delays.push(now.saturating_duration_since(first).as_secs_f64() * 1000.0);
        }
    }
    if let Ok(mut first) = received.first.lock() {
        first.entry(signal.to_owned()).or_insert(now);
    }
    StatusCode::OK
}

/// One step's measurements.
#[derive(Default)]
struct Step {
    rate: u32,
    scheduled: u64,
    seconds_sending: f64,
    /// (signal, scheduled instant) of each 201.
    accepted: Vec<(String, Instant)>,
    durable_ms: Vec<f64>,
    errors: BTreeMap<String, u64>,
    error_sample: Option<String>,
}

struct StepReport {
    json: Value,
    passed: bool,
    lost: u64,
    p99_durable: f64,
    p99_delivered: f64,
}

struct Driver {
    clients: Vec<reqwest::Client>,
    url: String,
    key: String,
}

enum Outcome {
    /// The signal's id, and ms from the request's scheduled instant to the 201.
    Accepted(String, f64),
    Refused(String, String),
}

fn record(result: &mut Step, done: Result<(Outcome, Instant), tokio::task::JoinError>) {
    match done {
        Ok((Outcome::Accepted(signal, ms), due)) => {
            result.durable_ms.push(ms);
            result.accepted.push((signal, due));
        }
        Ok((Outcome::Refused(status, body), _)) => {
            *result.errors.entry(status.clone()).or_default() += 1;
            result
                .error_sample
                .get_or_insert(format!("{status}: {body}"));
        }
        Err(error) => {
            *result.errors.entry("task".to_owned()).or_default() += 1;
            result.error_sample.get_or_insert(error.to_string());
        }
    }
}

impl Driver {
    async fn raise(&self, index: usize, idempotency_key: String, child: String) -> Outcome {
        let client = &self.clients[index % self.clients.len()];
        let pressed_at = time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let body = json!({
            "child": child,
            "pressed_at": pressed_at,
            "latitude": 54.98 + (index % 100) as f64 * 0.0005,
            "longitude": 73.37 + (index % 37) as f64 * 0.0007,
            "accuracy_m": 15.0,
            "kind": "panic",
            "region": "55",
            "city": "Омск",
            // One adult on two channels: two notifications, timed by the first to arrive.
            "trusted_adults": [{"id": format!("{child}-adult"), "channels": ["push", "sms"]}],
        });
        let response = client
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("idempotency-key", idempotency_key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return Outcome::Refused("network".to_owned(), error.to_string()),
        };
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if status != reqwest::StatusCode::CREATED {
            return Outcome::Refused(
                status.as_u16().to_string(),
                String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            );
        }
        match serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["signal"].as_str().map(str::to_owned))
        {
            Some(signal) => Outcome::Accepted(signal, 0.0),
            None => Outcome::Refused(
                "201-without-id".to_owned(),
                String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            ),
        }
    }

    /// Open loop at `rate` per second for `seconds`; waits for every answer.
    async fn step(self: &Arc<Self>, label: &str, rate: u32, seconds: f64) -> Step {
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let start = Instant::now() + Duration::from_millis(5);
        let end = start + Duration::from_secs_f64(seconds);
        let mut ticker = tokio::time::interval_at(start, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut result = Step {
            rate,
            ..Step::default()
        };
        let mut n = 0_usize;
        loop {
            let due = ticker.tick().await;
            if due >= end {
                break;
            }
            let driver = Arc::clone(self);
            let key = format!("bench-{label}-{n}");
            let child = format!("b-{label}-{n}");
            let index = n;
            in_flight.spawn(async move {
                let outcome = match driver.raise(index, key, child).await {
                    // Timed from the scheduled instant, so that a late send counts too.
                    Outcome::Accepted(signal, _) => {
                        Outcome::Accepted(signal, due.elapsed().as_secs_f64() * 1000.0)
                    }
                    refused => refused,
                };
                (outcome, due)
            });
            n += 1;
            while let Some(done) = in_flight.try_join_next() {
                record(&mut result, done);
            }
        }
        result.seconds_sending = start.elapsed().as_secs_f64();
        result.scheduled = n as u64;
        let answered_by = Instant::now() + Duration::from_secs(20);
        while !in_flight.is_empty() {
            match tokio::time::timeout_at(answered_by, in_flight.join_next()).await {
                Ok(Some(done)) => record(&mut result, done),
                Ok(None) => break,
                Err(_) => {
                    let left = in_flight.len() as u64;
                    *result.errors.entry("no-answer".to_owned()).or_default() += left;
                    in_flight.abort_all();
                    break;
                }
            }
        }
        result
    }
}

/// Waits until every accepted signal has a notification, or until `deadline`.
async fn wait_delivered(received: &Received, accepted: &[(String, Instant)], deadline: Instant) {
    loop {
        let missing = received
            .first
            .lock()
            .map(|first| accepted.iter().any(|(s, _)| !first.contains_key(s)))
            .unwrap_or(true);
        if !missing || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn summarise(step: &mut Step, received: &Received) -> StepReport {
    let (mut delivered_ms, lost) = match received.first.lock() {
        Ok(first) => {
            let mut ms = Vec::with_capacity(step.accepted.len());
            let mut lost = 0_u64;
            for (signal, due) in &step.accepted {
                match first.get(signal) {
                    Some(arrived) => {
                        ms.push(arrived.saturating_duration_since(*due).as_secs_f64() * 1000.0)
                    }
                    None => lost += 1,
                }
            }
            (ms, lost)
        }
        Err(_) => (Vec::new(), step.accepted.len() as u64),
    };
    delivered_ms.sort_by(f64::total_cmp);
    step.durable_ms.sort_by(f64::total_cmp);
    let errors: u64 = step.errors.values().sum();
    let sent_rate = step.scheduled as f64 / step.seconds_sending.max(1e-9);
    let p99_delivered = if delivered_ms.is_empty() {
        f64::INFINITY
    } else {
        percentile(&delivered_ms, 0.99)
    };
    let p99_durable = percentile(&step.durable_ms, 0.99);
    let keeping_up = sent_rate >= 0.95 * f64::from(step.rate);
    let passed = !step.accepted.is_empty()
        && p99_delivered <= TARGET_P99_MS
        && lost == 0
        && errors == 0
        && keeping_up;
    let finite = |x: f64| {
        if x.is_finite() {
            json!(round3(x))
        } else {
            Value::Null
        }
    };
    StepReport {
        json: json!({
            "rate": step.rate,
            "sent": step.scheduled,
            "sent_per_second": sent_rate.round(),
            "accepted": step.accepted.len(),
            "errors": step.errors,
            "error_sample": step.error_sample,
            "p50_durable_ms": round3(percentile(&step.durable_ms, 0.5)),
            "p99_durable_ms": round3(p99_durable),
            "max_durable_ms": round3(step.durable_ms.last().copied().unwrap_or_default()),
            "p50_delivered_ms": finite(percentile(&delivered_ms, 0.5)),
            "p99_delivered_ms": finite(p99_delivered),
            "max_delivered_ms": finite(delivered_ms.last().copied().unwrap_or(f64::INFINITY)),
            "lost": lost,
            "passed": passed,
        }),
        passed,
        lost,
        p99_durable,
        p99_delivered,
    }
}

/// Raw single-row INSERTs of a raise's width: `writers` tasks for `seconds`. Rows/s.
async fn baseline(pool: &PgPool, writers: usize, seconds: f64) -> Result<f64> {
    sqlx::query(
        "CREATE TABLE raw_signal (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
           sequence bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL, \
           payload jsonb NOT NULL, metadata jsonb NOT NULL, \
           PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    )
    .execute(pool)
    .await?;
    // As wide as the raise's SignalRaised event.
    let payload = json!({"SignalRaised": {
        "child": "b-000-00000", "client": uuid::Uuid::now_v7(), "region": "55", "city": "Омск",
        "kind": "panic", "pressed_at": "2026-11-22T10:00:00.123456Z",
        "received_at": "2026-11-22T10:00:00.234567Z",
        "location": {"latitude": 54.98, "longitude": 73.37, "accuracy_m": 15.0},
        "drill": false,
    }});
    let metadata = json!({
        "actor": "ingest:bench",
        "command_id": uuid::Uuid::now_v7().to_string(),
        "correlation_id": uuid::Uuid::now_v7().to_string(),
        "effective_date": "2026-11-22",
    });
    let run = |warm: bool, seconds: f64| {
        let (payload, metadata) = (payload.clone(), metadata.clone());
        async move {
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            let started = Instant::now();
            let mut tasks = Vec::new();
            for writer in 0..writers {
                let (pool, payload, metadata) = (pool.clone(), payload.clone(), metadata.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0_u64;
                    while Instant::now() < until {
                        sqlx::query(
                            "INSERT INTO raw_signal (aggregate_type, aggregate_id, sequence, \
                             event_type, event_version, payload, metadata) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind("Signal")
                        .bind(format!("{}-{writer}-{n}", if warm { "w" } else { "m" }))
                        .bind(1_i64)
                        .bind("SignalRaised")
                        .bind("1.0")
                        .bind(&payload)
                        .bind(&metadata)
                        .execute(&pool)
                        .await?;
                        n += 1;
                    }
                    Ok::<_, anyhow::Error>(n)
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await??;
            }
            Ok::<_, anyhow::Error>(total as f64 / started.elapsed().as_secs_f64())
        }
    };
    run(true, 1.0).await?;
    run(false, seconds).await
}

pub async fn signals(options: &PgConnectOptions, seconds: f64, max_rate: u32) -> Result<Value> {
    anyhow::ensure!(seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(max_rate >= 1, "--max-rate must be at least 1");
    let total = Instant::now();
    let pool = pool(options, POOL_SIZE).await?;
    opora_web::db::migrate(&pool).await?;
    let version = server_version(&pool).await?;

    eprintln!("signals: baseline, raw INSERTs at {POOL_SIZE} writers for 5 s...");
    let baseline = baseline(&pool, POOL_SIZE as usize, 5.0).await?;
    eprintln!("signals: baseline {baseline:.0} rows/s");

    let log = EventLog::new(pool.clone());
    opora_web::seed::load_reference(&log).await?;
    // A throwaway database: a throwaway master key (the user's key file is not touched).
    let vault = opora_store::Vault::open_with(pool.clone(), opora_store::MasterKey::generate()?)
        .await
        .context("vault")?;
    let (_client, key) =
        opora_web::ingest::register_client(&log, "bench", 10_000, "system:bench").await?;
    let runner = Runner::new(log.clone(), RunnerConfig::default());
    for projection in opora_projections::all() {
        runner.catch_up(projection.as_ref()).await?;
    }
    let (stop, stopped) = watch::channel(false);
    let projections = runner.spawn(opora_projections::all(), stopped.clone());
    let notifier = log.spawn_notifier(Duration::from_millis(50));

    // The webhook receiver.
    let (received, hook_url, hook_server) = crate::load::receiver(stopped.clone()).await?;
    let secret = received.secret.clone();

    let transport = opora_web::notify::Transport::Webhook {
        url: hook_url,
        secret,
    };
    let worker = opora_web::notify::spawn_worker(
        log.clone(),
        opora_web::notify::WorkerConfig::new(transport),
        stopped.clone(),
    );

    // Opora.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let router = opora_web::Application::build(log.clone(), vault, opora_web::AppConfig::default());
    let mut app_stopped = stopped.clone();
    let app = tokio::spawn(opora_web::app::serve(listener, router, async move {
        let _ = app_stopped.wait_for(|stop| *stop).await;
    }));

    let clients = (0..HTTP_CLIENTS)
        .map(|_| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(512)
                .tcp_nodelay(true)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let driver = Arc::new(Driver {
        clients,
        url: format!("http://{address}/ingest/v1/signals"),
        key,
    });

    // Warm-up (not reported): connections, statements, caches; and a check that the API
    // takes our key and the notifications arrive.
    eprintln!("signals: Opora on {address}, warming up...");
    let mut warm = driver.step("warm", 20, 1.0).await;
    wait_delivered(&received, &warm.accepted, Instant::now() + DRAIN).await;
    let warm = summarise(&mut warm, &received);
    if warm.json["accepted"].as_u64().unwrap_or_default() == 0 {
        bail!(
            "the ingestion API accepted no signal in the warm-up: {}",
            warm.json
        );
    }
    if warm.lost > 0 {
        bail!("notifications of the warm-up never arrived: {}", warm.json);
    }

    let mut rates: Vec<u32> = RATES.iter().copied().filter(|r| *r <= max_rate).collect();
    if rates.last() != Some(&max_rate) {
        rates.push(max_rate);
    }
    let mut steps = Vec::new();
    let mut all_accepted: Vec<(String, Instant)> = Vec::new();
    let mut ours = 0_u32;
    let mut at_200: Option<(f64, f64)> = None;
    let mut lost_total = 0_u64;
    let mut failed_in_a_row = 0;
    for rate in rates {
        let repeats_before = received.repeats.load(Ordering::Relaxed);
        let mut step = driver.step(&rate.to_string(), rate, seconds).await;
        wait_delivered(&received, &step.accepted, Instant::now() + DRAIN).await;
        let mut report = summarise(&mut step, &received);
        report.json["webhook_repeats"] =
            json!(received.repeats.load(Ordering::Relaxed) - repeats_before);
        eprintln!(
            "signals: {rate:>5}/s sent {:>5} accepted {:>5} errors {:>3}  durable p50 {:>7.1} p99 {:>7.1} ms  delivered p50 {} p99 {} ms  lost {}{}",
            report.json["sent"],
            report.json["accepted"],
            step.errors.values().sum::<u64>(),
            report.json["p50_durable_ms"].as_f64().unwrap_or_default(),
            report.p99_durable,
            report.json["p50_delivered_ms"],
            report.json["p99_delivered_ms"],
            report.lost,
            if report.passed { "" } else { "  ✗" },
        );
        if rate == 200 {
            at_200 = Some((report.p99_durable, report.p99_delivered));
        }
        lost_total += report.lost;
        all_accepted.append(&mut step.accepted);
        let stop_now = !report.passed && (report.lost > 0 || failed_in_a_row >= 1);
        if report.passed {
            ours = ours.max(rate);
            failed_in_a_row = 0;
        } else {
            failed_in_a_row += 1;
        }
        steps.push(report.json);
        if stop_now {
            eprintln!("signals: not sustained; higher rates skipped");
            break;
        }
    }
    // Whatever a step left behind must still arrive: only what never does is lost.
    wait_delivered(
        &received,
        &all_accepted,
        Instant::now() + Duration::from_secs(20),
    )
    .await;
    let never_delivered = received
        .first
        .lock()
        .map(|first| {
            all_accepted
                .iter()
                .filter(|(s, _)| !first.contains_key(s))
                .count()
        })
        .unwrap_or(all_accepted.len()) as u64;

    drop(driver);
    let _ = stop.send(true);
    for task in projections {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), app).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), hook_server).await;
    notifier.abort();
    pool.close().await;

    let ours = f64::from(ours);
    let mut delays = received
        .repeat_after_ms
        .lock()
        .map(|d| d.clone())
        .unwrap_or_default();
    delays.sort_by(f64::total_cmp);
    let repeat_after = if delays.is_empty() {
        Value::Null
    } else {
        json!({
            "min": round3(delays[0]),
            "p50": round3(percentile(&delays, 0.5)),
            "max": round3(delays[delays.len() - 1]),
        })
    };
    let (p99_durable_200, p99_delivered_200) = match at_200 {
        Some((durable, delivered)) => (
            json!(round3(durable)),
            if delivered.is_finite() {
                json!(round3(delivered))
            } else {
                Value::Null
            },
        ),
        None => (Value::Null, Value::Null),
    };
    Ok(json!({
        "bench": "signals",
        "ours": ours,
        "baseline": baseline.round(),
        "ratio": round3(ours / baseline),
        "unit": "signals/s",
        "ours_is": "highest open-loop rate of POST /ingest/v1/signals whose p99 from request to the trusted adult's webhook is ≤ 1000 ms, with no error and nothing lost (each step --seconds long)",
        "baseline_is": format!("raw single-row INSERTs of a raise's event width, {POOL_SIZE} writers through a pool of {POOL_SIZE}, same server"),
        "p99_durable_ms_at_200": p99_durable_200,
        "p99_delivered_ms_at_200": p99_delivered_200,
        "lost": lost_total,
        "lost_is": "accepted signals not delivered within 10 s of their step's end, summed over the steps",
        "never_delivered": never_delivered,
        "webhook_requests": received.requests.load(Ordering::Relaxed),
        "webhook_repeats": received.repeats.load(Ordering::Relaxed),
        "webhook_repeat_after_ms": repeat_after,
        "webhook_bad_signatures": received.bad_signatures.load(Ordering::Relaxed),
        "webhook_unreadable": received.unreadable.load(Ordering::Relaxed),
        "seconds_per_step": seconds,
        "max_rate": max_rate,
        "steps": steps,
        "pool_size": POOL_SIZE,
        "http_clients": HTTP_CLIENTS,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "total_seconds": round3(total.elapsed().as_secs_f64()),
        "server": version,
    }))
}
