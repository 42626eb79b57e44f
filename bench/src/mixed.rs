//! `opora-bench mixed`: a realistic mix held for `--seconds` (60 by default) on a real
//! `opora serve` process with the demo data (`load.rs`): the app's backend raising signals,
//! a curator recording case facts, a municipal department filing the Friday report, an
//! analyst reading the dashboards, the signal console and the register.
//!
//! Judged by the targets, all at once: no error (any 5xx, any call unanswered,
//! anything but the call's success or a refusal a user meets), the pages' p99 within 25 ms
//! server-side (the server's `Server-Timing`; the client's own p99 is reported beside it),
//! signals' p99 from the request to the trusted adult's webhook within 1 s, and the server's
//! peak resident memory (`VmHWM` of its process, read from /proc) under 300 MiB.
//! *ours*: the calls per second held; *baseline*: single-row primary-key SELECTs per second
//! through a pool on the same server, in the same run.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::load::{self, Load, Rates, Rig, Tally};

const RATES: Rates = Rates {
    signals: 20.0,
    facts: 2.0,
    filings: 1.0,
    pages: 20.0,
};
const PAGE_P99_MS: f64 = 25.0;
const DELIVERED_P99_MS: f64 = 1000.0;
const RSS_LIMIT_MIB: f64 = 300.0;
const WARM_UP: Duration = Duration::from_secs(5);

pub async fn mixed(
    admin_url: &str,
    name: &str,
    options: &PgConnectOptions,
    seconds: f64,
) -> Result<Value> {
    anyhow::ensure!(seconds >= 1.0, "--seconds must be at least 1");
    let rig = Rig::new("mixed", admin_url, name, options).await?;
    let (pool, spec, received) = (rig.pool.clone(), &rig.spec, rig.received.clone());
    let mut server = spec.start(true, 0).await?;
    // The first start loads the demo; the measured server is a second one, so that its peak
    // memory is that of serving, not of loading.
    server.kill().await?;
    let mut server = spec.start(false, 1).await?;
    let load = Load::new();
    let (load_stop, load_stopped) = watch::channel(false);
    let actors = load::start(&server.base, &load, RATES, &load_stopped).await?;
    tokio::time::sleep(WARM_UP).await;
    // The measured window starts now: what the warm-up did is forgotten.
    if let Ok(mut tally) = load.tally.lock() {
        *tally = Tally::default();
    }
    let measured_from = Instant::now();
    let (mut rss_max_kib, mut rss_sum, mut samples) = (0_u64, 0_u64, 0_u64);
    let until = measured_from + Duration::from_secs_f64(seconds);
    while Instant::now() < until {
        if let Some((rss, _)) = server.memory_kib() {
            rss_max_kib = rss_max_kib.max(rss);
            rss_sum += rss;
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hwm_kib = server.memory_kib().map(|(_, hwm)| hwm).unwrap_or(0);
    let tally = std::mem::take(&mut *load.tally.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let window = measured_from.elapsed().as_secs_f64();
    let _ = load_stop.send(true);
    for actor in actors {
        let _ = actor.await;
    }
    // Deliveries of the window's signals: from the request to the webhook.
    let sent: Vec<(uuid::Uuid, Instant)> = load
        .acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .signals
        .iter()
        .filter(|(_, at)| *at >= measured_from)
        .copied()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delivered_ms: Vec<f64>;
    loop {
        delivered_ms = {
            let first = received
                .first
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            sent.iter()
                .filter_map(|(id, at)| {
                    first.get(&id.to_string()).map(|arrived| {
                        arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0
                    })
                })
                .collect()
        };
        if delivered_ms.len() == sent.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    delivered_ms.sort_by(f64::total_cmp);
    let undelivered = sent.len() - delivered_ms.len();
    server.kill().await?;

    let baseline = crate::pages::baseline(&pool, 2, 5.0).await?;
    let calls = tally.total();
    let errors = tally.errors() + undelivered as u64;
    // The pages' target is server-side (issue 8): judged by the server's own time over each
    // page (`Server-Timing`); the time seen by the load's client, which shares the machine's
    // two cores with the server and PostgreSQL, is reported beside it.
    let page_p99 = tally.server_p99(|kind| kind.starts_with('/'));
    let page_client_p99 = tally.p99(|kind| kind.starts_with('/'));
    let timed_pages = tally.server_ms.values().map(Vec::len).sum::<usize>();
    let pages = tally
        .ms
        .iter()
        .filter(|(k, _)| k.starts_with('/'))
        .map(|(_, v)| v.len())
        .sum::<usize>();
    let delivered_p99 = crate::percentile(&delivered_ms, 0.99);
    let peak_mib = hwm_kib.max(rss_max_kib) as f64 / 1024.0;
    let mut failures = Vec::new();
    if errors > 0 {
        failures.push(format!(
            "{errors} errors (see calls; undelivered signals: {undelivered})"
        ));
    }
    if page_p99 > PAGE_P99_MS {
        failures.push(format!(
            "pages' p99 {page_p99:.1} ms (server-side) over {PAGE_P99_MS} ms"
        ));
    }
    if timed_pages < pages {
        failures.push(format!(
            "{} pages answered without Server-Timing",
            pages - timed_pages
        ));
    }
    if delivered_p99 > DELIVERED_P99_MS {
        failures.push(format!(
            "signals' p99 to the webhook {delivered_p99:.0} ms over {DELIVERED_P99_MS} ms"
        ));
    }
    if peak_mib > RSS_LIMIT_MIB {
        failures.push(format!(
            "the server's peak RSS {peak_mib:.0} MiB over {RSS_LIMIT_MIB} MiB"
        ));
    }
    let rate = calls as f64 / window;
    let ours = if failures.is_empty() { rate } else { 0.0 };
    let version = rig.version.clone();
    rig.finish(!failures.is_empty()).await;
    Ok(json!({
        "bench": "mixed",
        "ours": crate::round3(ours),
        "baseline": baseline.round(),
        "ratio": crate::round3(ours / baseline.max(1.0)),
        "unit": "calls/s held with no error, pages p99 ≤ 25 ms server-side, signals delivered p99 ≤ 1 s, server RSS < 300 MiB",
        "baseline_is": "single-row primary-key SELECTs/s through a pool of 8, 2 clients, same server",
        "failures": failures,
        "seconds": crate::round3(window),
        "calls": calls,
        "calls_per_second": crate::round3(rate),
        "errors": errors,
        "error_rate": if calls > 0 { errors as f64 / calls as f64 } else { 0.0 },
        "pages_p99_ms": crate::round3(page_p99),
        "pages_client_p99_ms": crate::round3(page_client_p99),
        "signals": {"acknowledged": sent.len(), "undelivered": undelivered,
                    "delivered_p50_ms": crate::round3(crate::percentile(&delivered_ms, 0.5)),
                    "delivered_p99_ms": crate::round3(delivered_p99)},
        "server_rss_mib": {"peak": crate::round3(peak_mib),
                           "mean": crate::round3(rss_sum as f64 / samples.max(1) as f64 / 1024.0)},
        "by_call": tally.json(),
        "rates_asked": {"signals": RATES.signals, "case_facts": RATES.facts,
                        "weekly_filings": RATES.filings, "pages": RATES.pages},
        "postgres": version,
    }))
}
