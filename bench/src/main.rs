//! `opora-bench NAME`: benchmarks whose baseline is measured in the same run, on the same
//! server. The last line printed is one JSON object:
//! `{"bench": NAME, "ours": X, "baseline": Y, "ratio": X/Y, "unit": "...", ...details}`.
//!
//! - `append`: commands per second (load aggregate, decide, append with version check) at 1
//!   and 16 concurrent clients, against raw single-row INSERTs of rows of the same size
//!   through the same pool, and against stock postgres-es 0.5 with the same aggregate.
//! - `rebuild`: full rebuild of the `reference` projection from N events, against COPY of
//!   the same event rows into a table.
//! - `lag`: from a command's return to its effect in the read model, with writers loading
//!   the log meanwhile, against the command's own latency.
//! - `signals`: «Заступник» signals over HTTP, open loop at rising rates, from the ingestion
//!   call to the trusted adult's webhook (`signals.rs`), against raw INSERTs.
//!
//! Server: DATABASE_URL, or the embedded default (as `opora` itself). Each run works in a
//! database of its own, dropped at the end. For profiling, OPORA_BENCH_ONLY=Ours (or
//! RawInsert, PostgresEs, OursUncached) measures one system of `append` only.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use opora_domain::reference::{Region, RegionCommand};
use opora_projections::reference::ReferenceProjection;
use opora_store::{CommandBus, CommandError, CommandMeta, EventLog};
use opora_web::db::Database;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

mod kill;
mod load;
mod mixed;
mod pages;
mod signals;

#[derive(Parser)]
#[command(
    name = "opora-bench",
    about = "Opora benchmarks (baseline in the same run)"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Commands per second: ours vs raw INSERT vs postgres-es, at 1 and 16 clients.
    Append {
        /// Commands each client executes per measurement.
        #[arg(long, default_value_t = 400)]
        commands_per_client: usize,
        /// Aggregates each client spreads its commands over.
        #[arg(long, default_value_t = 40)]
        aggregates_per_client: usize,
    },
    /// Live lag: time from a command's return to its effect in the read model, under load.
    Lag {
        /// Measured commands (one at a time, about 20 per second).
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Background writers appending as fast as they can meanwhile.
        #[arg(long, default_value_t = 4)]
        load_writers: usize,
    },
    /// «Заступник» signals: ingestion to the trusted adults' webhook, open loop, the rate
    /// stepping up; the highest rate delivered within a second (p99), nothing lost.
    Signals {
        /// Seconds each rate is held.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// The highest rate tried (signals per second).
        #[arg(long, default_value_t = 600)]
        max_rate: u32,
    },
    /// Rebuild of the reference projection vs COPY of the same event rows; with
    /// `--scale`, of the dashboards' projections over a generated history.
    Rebuild {
        #[arg(long, default_value_t = 1_000_000)]
        events: i64,
        /// Streams (municipalities) the events are spread over.
        #[arg(long, default_value_t = 2_000)]
        streams: i64,
        /// Rebuild `vyzov` and `zastupnik` over `opora generate --scale S` instead.
        #[arg(long, value_enum)]
        scale: Option<opora_web::generate::Scale>,
    },
    /// Dashboard pages/s within p99 25 ms over a generated history (national by default),
    /// vs single-row primary-key SELECTs/s.
    Pages {
        #[arg(long, value_enum, default_value = "national")]
        scale: opora_web::generate::Scale,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds each concurrency is held.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// A realistic mix (signals, case facts, weekly filings, pages) on a real `opora serve`
    /// process: no error, pages p99 ≤ 25 ms, signals delivered p99 ≤ 1 s, RSS < 300 MiB.
    Mixed {
        /// Seconds the mix is held (after a 5 s warm-up).
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
    },
    /// `opora serve` under the mixed load, killed with SIGKILL at random moments and
    /// restarted; then every acknowledged call is in the log, the chain verifies, every
    /// projection equals a rebuild and no notification is lost.
    Kill {
        /// How many times the server is killed (20 for the long variant, 3 in CI).
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Seeds the moments of the kills.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The server itself, as `opora ARGS…` (the kill and mixed runs start it this way).
    #[command(hide = true)]
    Opora {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Bench::Opora { args } = cli.bench {
        return opora(args).await;
    }
    let mut database = Database::open().await?;
    // OPORA_BENCH_DB=NAME keeps the database (a generated national history takes minutes
    // to write) and reuses it on the next run.
    let kept = std::env::var("OPORA_BENCH_DB").ok().filter(|n| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    let name = kept
        .clone()
        .unwrap_or_else(|| format!("opora_bench_{}", std::process::id()));
    let admin: PgConnectOptions = database.url.parse()?;
    let mut admin_conn = PgConnection::connect_with(&admin).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT exists(SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin_conn)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin_conn)
            .await?;
    }
    let options = admin.clone().database(&name);
    let result = match cli.bench {
        Bench::Append {
            commands_per_client,
            aggregates_per_client,
        } => append(&options, commands_per_client, aggregates_per_client).await,
        Bench::Rebuild {
            scale: Some(scale), ..
        } => rebuild_dashboards(&options, scale).await,
        Bench::Rebuild {
            events, streams, ..
        } => rebuild(&options, events, streams).await,
        Bench::Pages {
            scale,
            seed,
            seconds,
        } => pages::pages(&options, scale, seed, seconds).await,
        Bench::Lag {
            samples,
            load_writers,
        } => lag(&options, samples, load_writers).await,
        Bench::Signals { seconds, max_rate } => signals::signals(&options, seconds, max_rate).await,
        Bench::Mixed { seconds } => mixed::mixed(&database.url, &name, &options, seconds).await,
        Bench::Kill { kills, seed } => {
            kill::kill(&database.url, &name, &options, kills, seed).await
        }
        Bench::Opora { .. } => unreachable!("handled above"),
    };
    if kept.is_none() {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin_conn)
            .await?;
    }
    admin_conn.close().await?;
    database.stop()?;
    let line = result?;
    println!("{line}");
    // A run that found a broken promise (kill) or missed a target with errors (mixed) fails.
    match line["failures"].as_array() {
        Some(failures) if !failures.is_empty() => std::process::exit(1),
        _ => Ok(()),
    }
}

/// Runs `opora ARGS…` in this process: the same code as the `opora` binary.
async fn opora(args: Vec<String>) -> Result<()> {
    use clap::Parser as _;
    opora_web::telemetry::init();
    let cli = opora_web::cli::Cli::parse_from(std::iter::once("opora".to_owned()).chain(args));
    let code = opora_web::cli::run(cli).await?;
    if code != std::process::ExitCode::SUCCESS {
        std::process::exit(1);
    }
    Ok(())
}

async fn pool(options: &PgConnectOptions, size: u32) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .min_connections(size)
        .connect_with(options.clone())
        .await?)
}

async fn server_version(pool: &PgPool) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT version()")
        .fetch_one(pool)
        .await?)
}

// ---------------------------------------------------------------------------------------
// append
// ---------------------------------------------------------------------------------------

const POSTGRES_ES_SCHEMA: &[&str] = &[
    "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
       sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, \
       event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, \
       PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
       last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, \
       current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL, \
       PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
    "CREATE TABLE raw_insert (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
       sequence bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL, \
       payload jsonb NOT NULL, metadata jsonb NOT NULL)",
];

#[derive(Clone, Copy, Debug)]
enum System {
    Ours,
    /// Ours with the bus's aggregate cache defeated: every command loads its stream.
    OursUncached,
    RawInsert,
    PostgresEs,
}

fn rename(n: usize) -> RegionCommand {
    RegionCommand::RenameRegion {
        name: opora_domain::reference::PlaceName::parse(&format!("Регион, редакция {n}"))
            .expect("valid name"),
        effective_date: time::macros::date!(2025 - 01 - 31),
    }
}

fn register() -> RegionCommand {
    RegionCommand::RegisterRegion {
        code: opora_domain::reference::RegionCode::parse("55").expect("code"),
        name: opora_domain::reference::PlaceName::parse("Регион").expect("name"),
        kind: opora_domain::reference::RegionKind::Oblast,
        federal_district: opora_domain::reference::PlaceName::parse("Сибирский").expect("fd"),
        time_zone: opora_domain::reference::TimeZoneId::parse("Asia/Omsk").expect("tz"),
    }
}

/// One measurement: `clients` tasks, each executing `per_client` commands over its own
/// aggregates (registered beforehand, outside the clock). Returns commands per second.
async fn measure(
    system: System,
    pool: &PgPool,
    run: &str,
    clients: usize,
    per_client: usize,
    aggregates: usize,
) -> Result<f64> {
    let log = EventLog::new(pool.clone());
    let ours = std::sync::Arc::new(CommandBus::<Region>::new(log.clone(), ()));
    let theirs = std::sync::Arc::new(postgres_es::postgres_cqrs::<Region>(
        pool.clone(),
        vec![],
        (),
    ));
    let id = |client: usize, k: usize| format!("{run}-{client}-{k}");
    // Registration (not timed), so that every timed command loads a real stream.
    for client in 0..clients {
        for k in 0..aggregates {
            match system {
                System::Ours | System::OursUncached => {
                    ours.execute(&id(client, k), register(), &CommandMeta::new("bench"))
                        .await?;
                }
                System::PostgresEs => theirs.execute(&id(client, k), register()).await?,
                System::RawInsert => {}
            }
        }
    }
    let payload = json!({"RegionRenamed": {"name": "Регион, редакция 000"}});
    let metadata = json!({
        "actor": "bench",
        "command_id": uuid::Uuid::now_v7().to_string(),
        "correlation_id": uuid::Uuid::now_v7().to_string(),
        "effective_date": "2025-01-31",
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (ours, theirs, pool) = (ours.clone(), theirs.clone(), pool.clone());
        let (payload, metadata) = (payload.clone(), metadata.clone());
        let ids: Vec<String> = (0..aggregates).map(|k| id(client, k)).collect();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_client {
                let aggregate = &ids[n % ids.len()];
                match system {
                    System::Ours => loop {
                        match ours
                            .execute(aggregate, rename(n), &CommandMeta::new("bench"))
                            .await
                        {
                            Ok(_) => break,
                            Err(CommandError::Conflict) => continue,
                            Err(e) => return Err(anyhow::anyhow!("{e}")),
                        }
                    },
                    System::OursUncached => {
                        let cold = CommandBus::<Region>::new(EventLog::new(pool.clone()), ());
                        cold.execute(aggregate, rename(n), &CommandMeta::new("bench"))
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                    System::PostgresEs => theirs.execute(aggregate, rename(n)).await?,
                    System::RawInsert => {
                        sqlx::query(
                            "INSERT INTO raw_insert (aggregate_type, aggregate_id, sequence, \
                             event_type, event_version, payload, metadata) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind("Region")
                        .bind(aggregate)
                        .bind(n as i64)
                        .bind("RegionRenamed")
                        .bind("1.0")
                        .bind(&payload)
                        .bind(&metadata)
                        .execute(&pool)
                        .await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((clients * per_client) as f64 / seconds)
}

async fn append(options: &PgConnectOptions, per_client: usize, aggregates: usize) -> Result<Value> {
    let pool = pool(options, 20).await?;
    opora_store::MIGRATOR.run(&pool).await?;
    for statement in POSTGRES_ES_SCHEMA {
        sqlx::query(statement).execute(&pool).await?;
    }
    let version = server_version(&pool).await?;
    // Warm-up: connections, prepared statements, caches.
    for system in [
        System::RawInsert,
        System::Ours,
        System::PostgresEs,
        System::OursUncached,
    ] {
        measure(system, &pool, &format!("warm-{system:?}"), 4, 50, 10).await?;
    }
    let mut results = serde_json::Map::new();
    // The machine is noisy: five rounds, each measuring every system back to back; each
    // system is reported by its median, each comparison by the median of the per-round
    // ratios (noise within a round hits both sides alike), with its range.
    const ROUNDS: usize = 5;
    let systems = [
        System::RawInsert,
        System::Ours,
        System::PostgresEs,
        System::OursUncached,
    ];
    for clients in [1_usize, 16] {
        let mut rates = vec![Vec::with_capacity(ROUNDS); systems.len()];
        for round in 0..ROUNDS {
            for (i, system) in systems.into_iter().enumerate() {
                if std::env::var("OPORA_BENCH_ONLY").is_ok_and(|only| only != format!("{system:?}"))
                {
                    rates[i].push(f64::NAN);
                    continue;
                }
                let per = if clients == 1 {
                    per_client * 2
                } else {
                    per_client
                };
                let rate = measure(
                    system,
                    &pool,
                    &format!("{system:?}-{clients}-{round}"),
                    clients,
                    per,
                    aggregates,
                )
                .await?;
                eprintln!(
                    "append {system:?} clients={clients} round={round}: {rate:.0} commands/s"
                );
                rates[i].push(rate);
            }
        }
        let median_of = |values: Vec<f64>| {
            let mut values = values;
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let ratio = |a: usize, b: usize| {
            let per_round: Vec<f64> = (0..ROUNDS).map(|r| rates[a][r] / rates[b][r]).collect();
            let min = per_round.iter().copied().fold(f64::INFINITY, f64::min);
            let max = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (round3(median_of(per_round)), round3(min), round3(max))
        };
        let (vs_raw, vs_raw_min, vs_raw_max) = ratio(1, 0);
        let (vs_es, vs_es_min, vs_es_max) = ratio(1, 2);
        let (cold_raw, _, _) = ratio(3, 0);
        let (cold_es, _, _) = ratio(3, 2);
        results.insert(
            format!("clients_{clients}"),
            json!({
                "raw_insert": median_of(rates[0].clone()).round(),
                "ours": median_of(rates[1].clone()).round(),
                "postgres_es": median_of(rates[2].clone()).round(),
                "ours_uncached": median_of(rates[3].clone()).round(),
                "ours_vs_raw_insert": vs_raw,
                "ours_vs_raw_insert_range": [vs_raw_min, vs_raw_max],
                "ours_vs_postgres_es": vs_es,
                "ours_vs_postgres_es_range": [vs_es_min, vs_es_max],
                "ours_uncached_vs_raw_insert": cold_raw,
                "ours_uncached_vs_postgres_es": cold_es,
            }),
        );
    }
    let c16 = &results["clients_16"];
    let ours = c16["ours"].as_f64().unwrap_or_default();
    let baseline = c16["raw_insert"].as_f64().unwrap_or_default();
    let ratio = c16["ours_vs_raw_insert"].as_f64().unwrap_or_default();
    let mut line = json!({
        "bench": "append",
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "ratio_is": "median over 5 rounds of ours / raw INSERT measured back to back; ours and baseline are medians",
        "unit": "commands/s",
        "baseline_is": "raw single-row INSERT at 16 clients, same pool and server",
        "commands_per_client": per_client,
        "aggregates_per_client": aggregates,
        "server": version,
    });
    if let Some(map) = line.as_object_mut() {
        map.extend(results);
    }
    pool.close().await;
    Ok(line)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------------------
// lag
// ---------------------------------------------------------------------------------------

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn lag(options: &PgConnectOptions, samples: usize, load_writers: usize) -> Result<Value> {
    use opora_domain::reference::{Municipality, MunicipalityCommand};
    let pool = pool(options, 24).await?;
    opora_store::MIGRATOR.run(&pool).await?;
    let version = server_version(&pool).await?;
    let log = EventLog::new(pool.clone());
    opora_web::seed::load_reference(&log).await?;
    // The runner as `opora serve` runs it, in the same process as the writers.
    let runner = opora_projections::Runner::new(log.clone(), Default::default());
    for projection in opora_projections::all() {
        runner.catch_up(projection.as_ref()).await?;
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = runner.spawn(opora_projections::all(), stopped);

    // Background load: writers renaming regions as fast as they can.
    let loading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let appended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = Vec::new();
    for writer in 0..load_writers {
        let (log, loading, appended) = (log.clone(), loading.clone(), appended.clone());
        load.push(tokio::spawn(async move {
            let bus = CommandBus::<Region>::new(log, ());
            let code = format!("{}", 10 + writer);
            let mut n = 0;
            while loading.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                if bus
                    .execute(&code, rename(n), &CommandMeta::new("bench:load"))
                    .await
                    .is_ok()
                {
                    appended.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }

    let bus = CommandBus::<Municipality>::new(log.clone(), ());
    // Омск, registered by the reference seed.
    let id = opora_domain::reference::municipality_id(
        &opora_domain::reference::RegionCode::parse("55")?,
        &opora_domain::reference::PlaceName::parse("Омск")?,
    );
    let started = Instant::now();
    let mut command_ms = Vec::with_capacity(samples);
    let mut lag_ms = Vec::with_capacity(samples);
    for n in 0..samples {
        let name = format!("Омск, проверка {n}");
        let command = MunicipalityCommand::RenameMunicipality {
            name: opora_domain::reference::PlaceName::parse(&name)?,
            effective_date: time::macros::date!(2025 - 01 - 31),
        };
        let sent = Instant::now();
        bus.execute(&id.to_string(), command, &CommandMeta::new("bench:lag"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let returned = Instant::now();
        loop {
            let seen: Option<String> =
                sqlx::query_scalar("SELECT name FROM reference.municipality WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await?;
            if seen.as_deref() == Some(name.as_str()) {
                break;
            }
            anyhow::ensure!(
                returned.elapsed() < Duration::from_secs(30),
                "never projected"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        command_ms.push((returned - sent).as_secs_f64() * 1000.0);
        lag_ms.push(returned.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    loading.store(false, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await?;
    }
    let _ = stop.send(true);
    for task in tasks {
        task.await?;
    }
    lag_ms.sort_by(f64::total_cmp);
    command_ms.sort_by(f64::total_cmp);
    let ours = percentile(&lag_ms, 0.5);
    let baseline = percentile(&command_ms, 0.5);
    pool.close().await;
    Ok(json!({
        "bench": "lag",
        "ours": round3(ours),
        "baseline": round3(baseline),
        "ratio": round3(ours / baseline),
        "unit": "ms (median)",
        "ours_is": "from a command's return to its effect being readable in the read model",
        "baseline_is": "the command itself (load, decide, append, commit), median",
        "lag_p90_ms": round3(percentile(&lag_ms, 0.9)),
        "lag_p99_ms": round3(percentile(&lag_ms, 0.99)),
        "lag_max_ms": round3(lag_ms.last().copied().unwrap_or_default()),
        "samples": samples,
        "load_writers": load_writers,
        "load_commands_per_second": (appended.load(std::sync::atomic::Ordering::Relaxed) as f64 / seconds).round(),
        "server": version,
    }))
}

// ---------------------------------------------------------------------------------------
// rebuild
// ---------------------------------------------------------------------------------------

async fn rebuild(options: &PgConnectOptions, events: i64, streams: i64) -> Result<Value> {
    let pool = pool(options, 4).await?;
    opora_store::MIGRATOR.run(&pool).await?;
    let version = server_version(&pool).await?;
    let per_stream = (events + streams - 1) / streams;
    eprintln!("rebuild: writing {events} events over {streams} streams (not timed)...");
    let generation = Instant::now();
    // Bench data is written in bulk, ten rounds of sequence numbers per statement (many
    // transactions, as in real life); its hashes are placeholders (a rebuild does not read
    // them, and the database is dropped afterwards).
    for chunk_start in (1..=per_stream).step_by(10) {
        let chunk_end = (chunk_start + 9).min(per_stream);
        sqlx::query(
            "INSERT INTO event (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, prev_hash, hash) \
             SELECT 'Municipality', md5('m' || m)::uuid::text, s, \
                    CASE WHEN s = 1 THEN 'MunicipalityRegistered' ELSE 'MunicipalityRenamed' END, \
                    CASE WHEN s = 1 THEN '2.0' ELSE '1.0' END, \
                    CASE WHEN s = 1 THEN jsonb_build_object('MunicipalityRegistered', jsonb_build_object( \
                           'region_code', '16', 'name', 'Муниципальное образование ' || m, 'kind', 'urban_okrug')) \
                         ELSE jsonb_build_object('MunicipalityRenamed', jsonb_build_object( \
                           'name', 'Муниципальное образование ' || m || ', редакция ' || s)) END, \
                    jsonb_build_object('actor', 'bench', 'command_id', gen_random_uuid(), \
                           'correlation_id', gen_random_uuid()), \
                    '\\x00'::bytea, sha256(convert_to(m || '/' || s, 'UTF8')) \
               FROM generate_series($1::bigint, $2::bigint) AS s, generate_series(1, $3::bigint) AS m \
              WHERE (s - 1) * $3 + m <= $4 \
              ORDER BY s, m",
        )
        .bind(chunk_start)
        .bind(chunk_end)
        .bind(streams)
        .bind(events)
        .execute(&pool)
        .await?;
    }
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE event").execute(&pool).await?;
    eprintln!(
        "rebuild: {written} events written in {:.1} s",
        generation.elapsed().as_secs_f64()
    );

    // Baseline: COPY of the same rows (same columns, same indexes) into a table.
    sqlx::query("CREATE TABLE event_copy (LIKE event INCLUDING DEFAULTS INCLUDING INDEXES)")
        .execute(&pool)
        .await?;
    let mut conn = pool.acquire().await?;
    let mut rows: Vec<bytes::Bytes> = Vec::new();
    {
        let mut out = conn
            .copy_out_raw("COPY (SELECT * FROM event ORDER BY tx_id, position) TO STDOUT")
            .await?;
        while let Some(chunk) = out.try_next().await? {
            rows.push(chunk);
        }
    }
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY event_copy FROM STDIN")
        .await
        .context("COPY into event_copy")?;
    for chunk in &rows {
        copy.send(chunk.as_ref()).await?;
    }
    let copied = copy.finish().await?;
    let copy_seconds = started.elapsed().as_secs_f64();
    drop(rows);
    drop(conn);
    eprintln!("rebuild: COPY of {copied} rows took {copy_seconds:.2} s");

    let projection = ReferenceProjection::new();
    let batch = opora_projections::RunnerConfig::default().rebuild_batch_size;
    let report = opora_projections::rebuild(&pool, &projection, batch).await?;
    eprintln!(
        "rebuild: projection rebuilt from {} events in {:.2} s",
        report.events, report.seconds
    );
    let municipalities: i64 = sqlx::query_scalar("SELECT count(*) FROM reference.municipality")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        municipalities == streams.min(events),
        "the rebuilt read model has {municipalities} rows, expected {streams}"
    );
    let ours = report.events as f64 / report.seconds;
    let baseline = copied as f64 / copy_seconds;
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(json!({
        "bench": "rebuild",
        "ours": ours.round(),
        "baseline": baseline.round(),
        "ratio": round3(ours / baseline),
        "unit": "events/s",
        "baseline_is": "COPY of the same event rows into a table with the same indexes",
        "events": report.events,
        "streams": streams,
        "ours_seconds": round3(report.seconds),
        "copy_seconds": round3(copy_seconds),
        "batch_size": batch,
        "server": version,
    }))
}

// ---------------------------------------------------------------------------------------
// rebuild of the dashboards over a generated history
// ---------------------------------------------------------------------------------------

/// Peak resident memory of this process since the last reset (kB), from /proc.
fn peak_rss_kb() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

async fn rebuild_dashboards(
    options: &PgConnectOptions,
    scale: opora_web::generate::Scale,
) -> Result<Value> {
    let pool = pool(options, 4).await?;
    opora_web::db::migrate(&pool).await?;
    let version = server_version(&pool).await?;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    pages::prepare(&pool, scale, 1, today).await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&pool)
        .await?;

    // Peak memory from here on: the rebuilds only, measured before the COPY baseline holds
    // the log in memory (Linux: writing 5 resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let batch = opora_projections::RunnerConfig::default().rebuild_batch_size;
    let mut results = Vec::new();
    let mut slowest = f64::INFINITY;
    for name in ["vyzov", "zastupnik"] {
        let Some(projection) = opora_projections::by_name(name) else {
            continue;
        };
        let report = opora_projections::rebuild(&pool, projection.as_ref(), batch).await?;
        let rate = report.events as f64 / report.seconds;
        eprintln!(
            "rebuild: {name} from {} events in {:.1} s ({rate:.0} events/s)",
            report.events, report.seconds
        );
        slowest = slowest.min(rate);
        results.push(json!({"projection": name, "events": report.events,
            "seconds": round3(report.seconds), "events_per_s": rate.round()}));
    }
    let peak_mib = peak_rss_kb().map(|kb| kb as f64 / 1024.0);
    // Baseline: COPY of the same rows (the whole log, which a rebuild reads) into a table
    // with the same indexes.
    sqlx::query("DROP TABLE IF EXISTS event_copy")
        .execute(&pool)
        .await?;
    sqlx::query("CREATE TABLE event_copy (LIKE event INCLUDING DEFAULTS INCLUDING INDEXES)")
        .execute(&pool)
        .await?;
    let mut conn = pool.acquire().await?;
    eprintln!("rebuild: COPY of {events} event rows (out to memory, then in, timed)...");
    let mut rows: Vec<bytes::Bytes> = Vec::new();
    {
        let mut out = conn
            .copy_out_raw("COPY (SELECT * FROM event ORDER BY tx_id, position) TO STDOUT")
            .await?;
        while let Some(chunk) = out.try_next().await? {
            rows.push(chunk);
        }
    }
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY event_copy FROM STDIN")
        .await
        .context("COPY into event_copy")?;
    for chunk in &rows {
        copy.send(chunk.as_ref()).await?;
    }
    let copied = copy.finish().await?;
    let copy_seconds = started.elapsed().as_secs_f64();
    drop(rows);
    sqlx::query("DROP TABLE event_copy")
        .execute(&mut *conn)
        .await?;
    drop(conn);
    eprintln!("rebuild: COPY of {copied} rows took {copy_seconds:.1} s");

    let baseline = copied as f64 / copy_seconds;
    pool.close().await;
    Ok(json!({
        "bench": "rebuild",
        "ours": slowest.round(),
        "baseline": baseline.round(),
        "ratio": round3(slowest / baseline),
        "unit": "events/s",
        "baseline_is": "COPY of the same event rows into a table with the same indexes",
        "ours_is": "the slower of the vyzov and zastupnik rebuilds over the whole generated log",
        "events": events,
        "projections": results,
        "peak_rss_mib_while_rebuilding": peak_mib.map(round3),
        "copy_seconds": round3(copy_seconds),
        "batch_size": batch,
        "server": version,
    }))
}
