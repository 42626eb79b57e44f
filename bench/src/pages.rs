//! `opora-bench pages`: the ministry dashboards over a generated history (`opora generate`,
//! national scale by default), served by Opora in-process over HTTP to a signed-in analyst.
//!
//! A closed loop of clients (1, 2, 4, 8) asks a mix of pages: the «Вызов» federal page as
//! of today, as of a random date, as known on a random date, a random region's page, and
//! the «Заступник» pages. For each concurrency: requests/s and p50/p99 (from the request to
//! the last byte, so the server side plus a localhost round trip). *Ours* is the highest
//! rate whose p99 stays within 25 ms; the baseline is single-row primary-key SELECTs/s
//! through the same pool on the same server, at the best of the same concurrencies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use opora_projections::{Runner, RunnerConfig};
use opora_store::EventLog;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use time::Date;
use tokio::sync::watch;

use crate::{percentile, pool, round3, server_version};

const POOL_SIZE: u32 = 8;
const LEVELS: [usize; 4] = [1, 2, 4, 8];
/// The p99 every page must keep (ms), and any as-of date.
const TARGET_MS: f64 = 25.0;
const AS_OF_TARGET_MS: f64 = 50.0;
/// The bench's own master key: the database is the bench's (kept only with
/// OPORA_BENCH_DB), so a fixed key lets a kept database be reused.
const BENCH_KEY: &str = "b3BvcmEtYmVuY2gtcGFnZXMta2V5LTAxMjM0NTY3ODk=";

/// Loads the generated history (unless the database already holds it) and brings the
/// projections the dashboards read up to date.
pub async fn prepare(
    pool: &PgPool,
    scale: opora_web::generate::Scale,
    seed: u64,
    today: Date,
) -> Result<()> {
    let log = EventLog::new(pool.clone());
    let generated: bool =
        sqlx::query_scalar("SELECT exists(SELECT 1 FROM event WHERE actor = 'system:generate')")
            .fetch_one(pool)
            .await?;
    if generated {
        eprintln!("pages: the database already holds a generated history; reusing it");
    } else {
        let report = opora_web::generate::generate(&log, seed, scale, today, true).await?;
        eprintln!(
            "pages: generated {} events in {:.0} s ({:.0} events/s)",
            report.events,
            report.seconds,
            report.events_per_second()
        );
        sqlx::query("VACUUM ANALYZE event").execute(pool).await?;
    }
    let runner = Runner::new(log, RunnerConfig::default());
    for name in ["reference", "accounts", "weekly", "vyzov", "zastupnik"] {
        let Some(projection) = opora_projections::by_name(name) else {
            continue;
        };
        let started = Instant::now();
        let mut applied = 0;
        loop {
            let n = runner.catch_up(projection.as_ref()).await?;
            applied += n;
            if n == 0 {
                break;
            }
        }
        eprintln!(
            "pages: projection {name}: {applied} events in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

struct Mix {
    regions: Vec<String>,
    today: Date,
}

impl Mix {
    /// A page to ask, and its kind (those naming a date end in `_na` or `_izvestno`).
    fn pick(&self, n: u64) -> (String, &'static str) {
        // A cheap deterministic scramble of the request number.
        let r = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        let days = (self.today - time::macros::date!(2024 - 01 - 01)).whole_days() as u64;
        let day = |salt: u64| self.today - time::Duration::days(((r ^ salt) % days.max(1)) as i64);
        let region = &self.regions[(r >> 8) as usize % self.regions.len().max(1)];
        match r % 20 {
            0..=5 => ("/monitoring/vyzov".into(), "vyzov"),
            6..=9 => (format!("/monitoring/vyzov?na={}", day(1)), "vyzov_na"),
            10..=11 => {
                // As known on K: a date on or before K, K on or after the baseline.
                let (a, b) = (day(1), day(2));
                let known = a.max(b).max(time::macros::date!(2024 - 07 - 01));
                (
                    format!("/monitoring/vyzov?na={}&izvestno={known}", a.min(b)),
                    "vyzov_izvestno",
                )
            }
            12..=14 => (
                format!("/monitoring/vyzov/{region}?na={}", day(3)),
                "vyzov_region_na",
            ),
            15..=17 => ("/monitoring/zastupnik".into(), "zastupnik"),
            _ => (
                format!("/monitoring/zastupnik/{region}?na={}", day(4)),
                "zastupnik_region_na",
            ),
        }
    }
}

fn is_dated(kind: &str) -> bool {
    kind.ends_with("_na") || kind.ends_with("_izvestno")
}

/// The session cookie of the analyst, signed in through the login form.
async fn sign_in(base: &str) -> Result<String> {
    Ok(crate::load::Session::sign_in(base, "analyst")
        .await?
        .cookie_header())
}

struct Step {
    clients: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    p99_default: f64,
    p99_dated: f64,
    /// p99 by kind of page.
    p99_by_kind: std::collections::BTreeMap<&'static str, f64>,
    /// p50 by kind of page (what each kind costs, at one client).
    p50_by_kind: std::collections::BTreeMap<&'static str, f64>,
    errors: u64,
}

async fn step(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    mix: &Arc<Mix>,
    clients: usize,
    seconds: f64,
    first: u64,
) -> Result<Step> {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, cookie, mix) = (
            http.clone(),
            base.to_owned(),
            cookie.to_owned(),
            Arc::clone(mix),
        );
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<(f64, &'static str)> = Vec::new();
            let mut errors = 0_u64;
            let mut n = first + c as u64 * 1_000_003;
            while Instant::now() < until {
                n += 1;
                let (path, kind) = mix.pick(n);
                let t = Instant::now();
                let ok = match http
                    .get(format!("{base}{path}"))
                    .header(reqwest::header::COOKIE, &cookie)
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    samples.push((t.elapsed().as_secs_f64() * 1000.0, kind));
                } else {
                    errors += 1;
                }
            }
            (samples, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (samples, e) = task.await?;
        all.extend(samples);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sorted = |filter: &dyn Fn(&str) -> bool| {
        let mut v: Vec<f64> = all
            .iter()
            .filter(|(_, kind)| filter(kind))
            .map(|(ms, _)| *ms)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let every = sorted(&|_| true);
    let by_kind = |p: f64| {
        all.iter()
            .map(|(_, kind)| *kind)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|kind| (kind, percentile(&sorted(&|k| k == kind), p)))
            .collect()
    };
    Ok(Step {
        clients,
        rate: every.len() as f64 / elapsed,
        p50: percentile(&every, 0.5),
        p99: percentile(&every, 0.99),
        p99_default: percentile(&sorted(&|k| !is_dated(k)), 0.99),
        p99_dated: percentile(&sorted(&is_dated), 0.99),
        p99_by_kind: by_kind(0.99),
        p50_by_kind: by_kind(0.5),
        errors,
    })
}

/// Single-row primary-key SELECTs/s through the pool, `clients` at a time.
pub(crate) async fn baseline(pool: &PgPool, clients: usize, seconds: f64) -> Result<f64> {
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM reference.region")
        .fetch_all(pool)
        .await?;
    let codes = Arc::new(codes);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (pool, codes) = (pool.clone(), Arc::clone(&codes));
        tasks.push(tokio::spawn(async move {
            let mut done = 0_u64;
            while Instant::now() < until {
                let code = &codes[(done as usize + c * 7) % codes.len().max(1)];
                let _: (String, String) =
                    sqlx::query_as("SELECT code, name FROM reference.region WHERE code = $1")
                        .bind(code)
                        .fetch_one(&pool)
                        .await?;
                done += 1;
            }
            Ok::<u64, sqlx::Error>(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

pub async fn pages(
    options: &PgConnectOptions,
    scale: opora_web::generate::Scale,
    seed: u64,
    seconds: f64,
) -> Result<Value> {
    anyhow::ensure!(seconds > 0.0, "--seconds must be positive");
    let pool = pool(options, POOL_SIZE).await?;
    opora_web::db::migrate(&pool).await?;
    let version = server_version(&pool).await?;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    let log = EventLog::new(pool.clone());
    let vault = opora_store::Vault::open_with(
        pool.clone(),
        opora_store::MasterKey::from_base64(BENCH_KEY)?,
    )
    .await
    .context("vault")?;
    let has_analyst: bool = sqlx::query_scalar(
        "SELECT exists(SELECT 1 FROM accounts.user_account WHERE login = 'analyst')",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or(false);
    prepare(&pool, scale, seed, today).await?;
    if !has_analyst {
        opora_web::demo::load(&log, &vault).await?;
        prepare(&pool, scale, seed, today).await?;
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&pool)
        .await?;
    let regions: Vec<String> =
        sqlx::query_scalar("SELECT code FROM reference.region ORDER BY code")
            .fetch_all(&pool)
            .await?;

    let (stop, stopped) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = opora_web::Application::build(log.clone(), vault, opora_web::AppConfig::default());
    let mut app_stopped = stopped.clone();
    let app = tokio::spawn(opora_web::app::serve(listener, router, async move {
        let _ = app_stopped.wait_for(|stop| *stop).await;
    }));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = sign_in(&base).await?;
    let mix = Arc::new(Mix { regions, today });
    // Warm up: every kind of page once, and the server's caches.
    step(&http, &base, &cookie, &mix, 2, 3.0, 0).await?;

    let mut steps = Vec::new();
    for (level, clients) in (1_u64..).zip(LEVELS) {
        // Each step asks pages of its own (no step repeats another's requests, so a page
        // kept by the server for an earlier step does not flatter a later one).
        let first = level * 100_000_007;
        let s = step(&http, &base, &cookie, &mix, clients, seconds, first).await?;
        eprintln!(
            "pages: {clients} clients: {:.0} pages/s, p50 {:.1} ms, p99 {:.1} ms \
             (today {:.1} ms, dated {:.1} ms), {} errors",
            s.rate, s.p50, s.p99, s.p99_default, s.p99_dated, s.errors
        );
        eprintln!("pages:   p99 by page: {:?}", s.p99_by_kind);
        eprintln!("pages:   p50 by page: {:?}", s.p50_by_kind);
        steps.push(s);
    }
    let mut best_baseline: f64 = 0.0;
    for clients in LEVELS {
        let rate = baseline(&pool, clients, seconds.min(5.0)).await?;
        eprintln!("pages: baseline {clients} clients: {rate:.0} SELECTs/s");
        best_baseline = best_baseline.max(rate);
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), app).await;
    let within = steps
        .iter()
        .filter(|s| s.p99_default <= TARGET_MS && s.p99_dated <= AS_OF_TARGET_MS && s.errors == 0)
        .max_by(|a, b| a.rate.total_cmp(&b.rate));
    let ours = within.map_or(0.0, |s| s.rate);
    pool.close().await;
    Ok(json!({
        "bench": "pages",
        "ours": ours.round(),
        "baseline": best_baseline.round(),
        "ratio": round3(ours / best_baseline.max(1.0)),
        "unit": "pages/s",
        "target_ratio": 0.12,
        "baseline_is": "single-row primary-key SELECTs through the same pool (8 connections), best of 1/2/4/8 clients",
        "ours_is": "dashboard pages/s (closed loop, best of 1/2/4/8 clients) at which the pages of today are within 25 ms at p99 and the pages of a chosen date (as of, as known on) within 50 ms, no errors",
        "events_in_log": events,
        "clients_at_ours": within.map(|s| s.clients),
        "steps": steps.iter().map(|s| json!({
            "clients": s.clients,
            "pages_per_s": s.rate.round(),
            "p50_ms": round3(s.p50),
            "p99_ms": round3(s.p99),
            "p99_today_ms": round3(s.p99_default),
            "p99_dated_ms": round3(s.p99_dated),
            "p99_ms_by_page": s.p99_by_kind.iter().map(|(k, v)| (k.to_string(), json!(round3(*v)))).collect::<serde_json::Map<_, _>>(),
            "p50_ms_by_page": s.p50_by_kind.iter().map(|(k, v)| (k.to_string(), json!(round3(*v)))).collect::<serde_json::Map<_, _>>(),
            "errors": s.errors,
        })).collect::<Vec<_>>(),
        "server": version,
    }))
}
