//! `opora-bench kill`: the server under a mixed load (`load.rs`) is killed with SIGKILL at
//! random moments and started again, `--kills` times. Then, with the server stopped:
//!
//! 1. every call the server acknowledged is in the log, once: each signal answered 201 has
//!    its `SignalRaised`, each case fact and weekly filing answered 201 its `command_id`;
//! 2. the hash chain verifies (`opora verify`);
//! 3. every projection equals a rebuild from scratch, table by table (row count and a hash
//!    of the sorted rows; the outbox's delivery bookkeeping — attempts, leases, the exact
//!    instant of delivery — is compared as delivered or not);
//! 4. no outbox message is lost: each acknowledged signal has its notification, delivered,
//!    and the webhook received it.
//!
//! The last line is the Foundation JSON: `ours` kills survived with every check holding,
//! `baseline` kills asked; `failures` lists what broke. Exit code 1 if anything did.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::load::{self, Load, Rates, Rig};

const RATES: Rates = Rates {
    signals: 20.0,
    facts: 4.0,
    filings: 2.0,
    pages: 10.0,
};
/// How long the outbox may take to deliver everything after the last restart.
const DRAIN: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*): the kills' moments follow `--seed`.
struct Moments(u64);

impl Moments {
    fn next_seconds(&mut self, from: f64, to: f64) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let unit = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        from + unit * (to - from)
    }
}

pub async fn kill(
    admin_url: &str,
    name: &str,
    options: &PgConnectOptions,
    kills: usize,
    seed: u64,
) -> Result<Value> {
    anyhow::ensure!(kills > 0, "--kills must be at least 1");
    let rig = Rig::new("kill", admin_url, name, options).await?;
    let (pool, spec, received) = (rig.pool.clone(), &rig.spec, rig.received.clone());
    let started = Instant::now();
    let mut server = spec.start(true, 0).await?;
    eprintln!(
        "kill: ready in {:.1} s; load starts",
        started.elapsed().as_secs_f64()
    );
    let load = Load::new();
    let (load_stop, load_stopped) = watch::channel(false);
    let actors = load::start(&server.base, &load, RATES, &load_stopped).await?;

    let mut moments = Moments(seed.max(1));
    let mut restarts = Vec::new();
    for k in 1..=kills {
        let wait = moments.next_seconds(1.0, 5.0);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        server.kill().await?;
        let down = Instant::now();
        server = spec.start(false, k).await?;
        let seconds = down.elapsed().as_secs_f64();
        restarts.push(seconds);
        eprintln!("kill {k}/{kills}: SIGKILL after {wait:.1} s of load; back in {seconds:.1} s");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = load_stop.send(true);
    for actor in actors {
        let _ = actor.await;
    }

    let (signals, commands) = {
        let acked = load.acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        (acked.signals.clone(), acked.commands.clone())
    };
    let mut failures: Vec<String> = Vec::new();

    // 4. The outbox drains: every acknowledged signal's notification delivered and received.
    let uuids: Vec<uuid::Uuid> = signals.iter().map(|(id, _)| *id).collect();
    let ids: Vec<String> = uuids.iter().map(ToString::to_string).collect();
    let deadline = Instant::now() + DRAIN;
    let (mut undelivered, mut unreceived, mut without_row);
    loop {
        undelivered = scalar(
            &pool,
            "SELECT count(*) FROM signals.notification WHERE signal = ANY($1) AND delivered_at IS NULL",
            &uuids,
        )
        .await?;
        without_row = scalar(
            &pool,
            "SELECT count(*) FROM unnest($1::uuid[]) s(id) \
              WHERE NOT EXISTS (SELECT 1 FROM signals.notification n WHERE n.signal = s.id)",
            &uuids,
        )
        .await?;
        unreceived = {
            let first = received
                .first
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            ids.iter().filter(|id| !first.contains_key(*id)).count() as i64
        };
        if (undelivered == 0 && unreceived == 0 && without_row == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if without_row > 0 {
        failures.push(format!(
            "{without_row} acknowledged signals have no notification in the outbox"
        ));
    }
    if undelivered > 0 || unreceived > 0 {
        failures.push(format!(
            "{} s after the last restart, {undelivered} notifications were undelivered and \
             {unreceived} acknowledged signals never reached the webhook",
            DRAIN.as_secs()
        ));
    }
    server.kill().await?;

    // 1. Every acknowledged call is in the log, once.
    let raised: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM event \
          WHERE event_type = 'SignalRaised' AND aggregate_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&pool)
    .await?;
    let command_ids: Vec<uuid::Uuid> = commands.iter().map(|(_, id)| *id).collect();
    let found = scalar(
        &pool,
        "SELECT count(*) FROM event WHERE opens_command AND command_id = ANY($1)",
        &command_ids,
    )
    .await?;
    for (what, acknowledged, in_log) in [
        ("signals", ids.len(), raised),
        ("commands", command_ids.len(), found),
    ] {
        let acknowledged = acknowledged as i64;
        if in_log != acknowledged {
            failures.push(format!(
                "{} of {acknowledged} acknowledged {what} are missing from the log",
                acknowledged - in_log
            ));
        }
    }

    // 2. The hash chain.
    let chain = opora_store::verify::verify(&pool).await?;
    if let Some(problem) = &chain.first_problem {
        failures.push(format!("the hash chain does not verify: {problem}"));
    }

    // 3. Every projection against a rebuild from scratch.
    let log = opora_store::EventLog::new(pool.clone());
    let runner = opora_projections::Runner::new(log, opora_projections::RunnerConfig::default());
    let mut compared = Vec::new();
    for projection in opora_projections::all() {
        while runner.catch_up(projection.as_ref()).await? > 0 {}
        if !projection.rebuildable() {
            continue;
        }
        let name = projection.name();
        let live = snapshot(&pool, name).await?;
        opora_projections::rebuild(
            &pool,
            projection.as_ref(),
            opora_projections::RunnerConfig::default().rebuild_batch_size,
        )
        .await?;
        let rebuilt = snapshot(&pool, name).await?;
        let differing: Vec<String> = live
            .keys()
            .chain(rebuilt.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|t| live.get(*t) != rebuilt.get(*t))
            .map(|t| {
                format!(
                    "{name}.{t}: live {:?}, rebuilt {:?}",
                    live.get(t).map(|s| s.0),
                    rebuilt.get(t).map(|s| s.0)
                )
            })
            .collect();
        if differing.is_empty() {
            compared.push(json!({"projection": name, "tables": live.len(),
                                 "rows": live.values().map(|s| s.0).sum::<i64>()}));
        } else {
            failures.push(format!(
                "projection {name} differs from its rebuild: {}",
                differing.join("; ")
            ));
        }
    }

    let survived = if failures.is_empty() { kills } else { 0 };
    let calls = load
        .tally
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .json();
    let mut sorted = restarts.clone();
    sorted.sort_by(f64::total_cmp);
    let version = rig.version.clone();
    rig.finish(!failures.is_empty()).await;
    Ok(json!({
        "bench": "kill",
        "ours": survived,
        "baseline": kills,
        "ratio": survived as f64 / kills as f64,
        "unit": "kills survived with every check holding",
        "failures": failures,
        "seed": seed,
        "acknowledged": {
            "signals": signals.len(),
            "case_facts": commands.iter().filter(|(k, _)| *k == "case-fact").count(),
            "weekly_filings": commands.iter().filter(|(k, _)| *k == "weekly-filing").count(),
        },
        "missing_from_log": (ids.len() as i64 - raised) + (command_ids.len() as i64 - found),
        "outbox": {"undelivered": undelivered, "unreceived": unreceived,
                   "without_notification": without_row,
                   "webhook_requests": received.requests.load(std::sync::atomic::Ordering::Relaxed),
                   "repeats": received.repeats.load(std::sync::atomic::Ordering::Relaxed)},
        "chain": {"events": chain.events, "streams": chain.streams,
                  "problems": chain.problems},
        "projections_equal_to_rebuild": compared,
        "restart_seconds": {"p50": crate::round3(crate::percentile(&sorted, 0.5)),
                            "max": crate::round3(sorted.last().copied().unwrap_or(0.0))},
        "calls": calls,
        "postgres": version,
    }))
}

async fn scalar(pool: &PgPool, sql: &str, ids: &[uuid::Uuid]) -> Result<i64> {
    Ok(sqlx::query_scalar(sql).bind(ids).fetch_one(pool).await?)
}

/// Each table of `schema`: its row count and the MD5 of its rows as text, sorted.
async fn snapshot(pool: &PgPool, schema: &str) -> Result<BTreeMap<String, (i64, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let mut out = BTreeMap::new();
    for table in tables {
        let row = match (schema, table.as_str()) {
            // The outbox's worker keeps its own bookkeeping beside what the log says.
            ("signals", "notification") => {
                "ROW(id, signal, adult, channel, requested_at, delivered_at IS NOT NULL, \
                     failed_at IS NOT NULL)"
            }
            // When the projection last wrote (the dashboards' cache key), not a figure.
            ("vyzov", "written") => "ROW(one)",
            _ => "t",
        };
        let (count, hash): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(r, E'\\n' ORDER BY r)) \
               FROM (SELECT {row}::text AS r FROM \"{schema}\".\"{table}\" t) x"
        ))
        .fetch_one(pool)
        .await?;
        out.insert(table, (count, hash.unwrap_or_default()));
    }
    Ok(out)
}
