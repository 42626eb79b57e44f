//! The projection engine: no event skipped or applied twice under concurrent writers,
//! resumption after a crash mid-batch, rebuild-and-swap, wake-ups by NOTIFY.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opora_domain::reference::{Municipality, Region};
use opora_projections::reference::ReferenceProjection;
use opora_projections::{Projection, ProjectionError, Runner, RunnerConfig};
use opora_store::log::{read_after, LogPosition};
use opora_store::{CommandBus, CommandError, CommandMeta, RecordedEvent};
use opora_tests::TestDb;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{watch, Notify};

use crate::fixtures::*;

/// Counts events per stream and refuses any event that is not the next of its stream: a
/// skipped event, a double, or a reordering makes it fail.
struct Probe {
    /// The projection's name and schema.
    name: &'static str,
    /// The aggregate types it reads (None: every event).
    types: Option<&'static [&'static str]>,
    /// Stall (as a killed process would) when this many events have been applied overall.
    stall_after: Option<usize>,
    applied: AtomicUsize,
    stalled: Arc<Notify>,
}

impl Probe {
    fn new() -> Self {
        Self {
            name: "probe",
            types: None,
            stall_after: None,
            applied: AtomicUsize::new(0),
            stalled: Arc::new(Notify::new()),
        }
    }
}

/// Waits until the log's horizon has passed all `events` of this database: the horizon is
/// cluster-wide, so another test's open transaction can hide some of them for a moment,
/// and a batch would then be shorter than the test expects. Visible stays visible.
async fn wait_until_visible(pool: &PgPool, events: i64) {
    loop {
        let visible: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM event \
              WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if visible == events {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[async_trait]
impl Projection for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        self.types
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if Some(self.applied.fetch_add(1, Ordering::SeqCst)) == self.stall_after {
                self.stalled.notify_one();
                std::future::pending::<()>().await;
            }
            // A new stream must start at 1; a known one must continue at last + 1.
            let accepted: Option<(i64, i64)> = sqlx::query_as(
                "INSERT INTO stream_count AS s (aggregate_type, aggregate_id, events, last_sequence) \
                 VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                   SET events = s.events + 1, last_sequence = excluded.last_sequence \
                   WHERE s.last_sequence = excluded.last_sequence - 1 \
                 RETURNING events, last_sequence",
            )
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(event.sequence)
            .fetch_optional(&mut *conn)
            .await?;
            let in_order = match accepted {
                Some((1, sequence)) => sequence == 1,
                Some(_) => true,
                None => false,
            };
            if !in_order {
                return Err(ProjectionError::Invariant(format!(
                    "{}/{} #{} arrived out of order",
                    event.aggregate_type, event.aggregate_id, event.sequence
                )));
            }
        }
        Ok(())
    }
}

async fn install_probe(pool: &PgPool, name: &str) {
    for statement in [
        format!("CREATE SCHEMA {name}"),
        format!(
            "CREATE TABLE {name}.stream_count (aggregate_type text, aggregate_id text, \
               events bigint NOT NULL, last_sequence bigint NOT NULL, \
               PRIMARY KEY (aggregate_type, aggregate_id))"
        ),
        format!("INSERT INTO projection_checkpoint (name) VALUES ('{name}')"),
    ] {
        sqlx::query(&statement).execute(pool).await.unwrap();
    }
}

type Counts = BTreeMap<(String, String), (i64, i64)>;

async fn probe_rows(pool: &PgPool, name: &str) -> Counts {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT aggregate_type, aggregate_id, events, last_sequence FROM {name}.stream_count"
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(t, i, n, l)| ((t, i), (n, l)))
        .collect()
}

/// What the probe must hold: the whole log replayed from the start, folded in memory.
async fn replay(pool: &PgPool) -> Counts {
    let mut conn = pool.acquire().await.unwrap();
    let mut counts = Counts::new();
    let mut at = LogPosition::default();
    loop {
        let batch = read_after(&mut conn, at, 500).await.unwrap();
        let Some(last) = batch.last() else { break };
        at = last.at;
        for e in &batch {
            let entry = counts
                .entry((e.aggregate_type.clone(), e.aggregate_id.clone()))
                .or_insert((0, 0));
            entry.0 += 1;
            entry.1 = e.sequence;
        }
    }
    counts
}

async fn wait_until_caught_up(pool: &PgPool, name: &str) {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(pool)
        .await
        .unwrap();
    for _ in 0..600 {
        let applied: i64 =
            sqlx::query_scalar("SELECT applied FROM projection_checkpoint WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
                .unwrap();
        if applied == total {
            return;
        }
        assert!(
            applied < total,
            "{name} applied {applied} of {total} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not catch up with {total} events within 30 s");
}

/// A writer through the real path: load, decide, append; retried on a stream conflict.
async fn bus_writer(log: opora_store::EventLog, writer: usize, round: usize, appends: usize) {
    let bus = CommandBus::<Region>::new(log, ());
    for n in 0..appends {
        let code = format!("{}", 10 + (writer + n) % 5);
        let name = format!("Регион {code}: писатель {writer}, круг {round}, №{n}");
        loop {
            match bus
                .execute(
                    &code,
                    rename_region(&name),
                    &CommandMeta::new("test:writer"),
                )
                .await
            {
                Ok(_) => break,
                Err(CommandError::Conflict) => continue,
                Err(other) => panic!("writer {writer}: {other}"),
            }
        }
    }
}

/// A writer that holds its transaction open for a while after appending, so that
/// transactions commit in another order than they were given ids and positions.
async fn slow_writer(pool: PgPool, writer: usize, appends: usize) {
    let mut conn = pool.acquire().await.unwrap();
    for n in 0..appends {
        let id = format!("slow-{}", (writer + n) % 3);
        loop {
            let mut tx = conn.begin().await.unwrap();
            let next: i64 = sqlx::query_scalar(
                "SELECT coalesce(max(sequence), 0) + 1 FROM event \
                  WHERE aggregate_type = 'Probe' AND aggregate_id = $1",
            )
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            let inserted = sqlx::query(
                "INSERT INTO event (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, prev_hash, hash) \
                 VALUES ('Probe', $1, $2, 'Poked', '1.0', '{}', '{}', '\\x00', '\\x00')",
            )
            .bind(&id)
            .bind(next)
            .execute(&mut *tx)
            .await;
            if let Err(error) = inserted {
                // Only a concurrent append to the same stream is retried.
                let conflict = error
                    .as_database_error()
                    .is_some_and(|e| e.constraint() == Some("event_stream_sequence"));
                assert!(conflict, "slow writer: {error}");
                tx.rollback().await.unwrap();
                continue;
            }
            sqlx::query("SELECT pg_sleep(random() * 0.02)")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_skip_no_double_with_eight_concurrent_writers() {
    let db = TestDb::with_pool_size(24).await;
    install_probe(&db.pool, "probe").await;
    let regions = CommandBus::<Region>::new(db.log.clone(), ());
    for code in 10..15 {
        regions
            .execute(
                &code.to_string(),
                register_region(&code.to_string(), &format!("Регион {code}")),
                &CommandMeta::new("test"),
            )
            .await
            .unwrap();
    }
    let runner = Runner::new(
        db.log.clone(),
        RunnerConfig {
            batch_size: 37, // small and odd, so batches end mid-transaction and mid-burst
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        },
    );
    let (stop, stopped) = watch::channel(false);
    // A second projection reads only the regions' events and passes over the rest.
    install_probe(&db.pool, "probe_regions").await;
    let regions_only = Probe {
        name: "probe_regions",
        types: Some(&["Region"]),
        ..Probe::new()
    };
    let tasks = runner.spawn(
        vec![Arc::new(Probe::new()), Arc::new(regions_only)],
        stopped,
    );

    for round in 0..12 {
        let mut writers = Vec::new();
        for writer in 0..8 {
            if writer % 2 == 0 {
                writers.push(tokio::spawn(bus_writer(db.log.clone(), writer, round, 12)));
            } else {
                writers.push(tokio::spawn(slow_writer(db.pool.clone(), writer, 12)));
            }
        }
        for writer in writers {
            writer.await.unwrap();
        }
        wait_until_caught_up(&db.pool, "probe").await;
        let projected = probe_rows(&db.pool, "probe").await;
        let replayed = replay(&db.pool).await;
        assert_eq!(projected, replayed, "round {round}");
        wait_until_caught_up(&db.pool, "probe_regions").await;
        let mut regions = replayed.clone();
        regions.retain(|(t, _), _| t == "Region");
        assert!(regions.len() >= 5 && regions.len() < replayed.len());
        assert_eq!(
            probe_rows(&db.pool, "probe_regions").await,
            regions,
            "round {round}: the region events, no other"
        );
        let total: i64 = replayed.values().map(|(n, _)| n).sum();
        assert_eq!(total, 5 + (round as i64 + 1) * 8 * 12);
    }
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_killed_mid_batch_resumes_from_its_checkpoint() {
    let db = TestDb::new().await;
    install_probe(&db.pool, "probe").await;
    let bus = CommandBus::<Region>::new(db.log.clone(), ());
    for code in 10..20 {
        let code = code.to_string();
        bus.execute(
            &code,
            register_region(&code, "Регион"),
            &CommandMeta::new("t"),
        )
        .await
        .unwrap();
        for n in 0..9 {
            bus.execute(
                &code,
                rename_region(&format!("Регион {n}")),
                &CommandMeta::new("t"),
            )
            .await
            .unwrap();
        }
    }
    let config = RunnerConfig {
        batch_size: 40,
        ..RunnerConfig::default()
    };
    let runner = Runner::new(db.log.clone(), config.clone());
    // First batch goes through (once no transaction elsewhere in the cluster holds the
    // log's horizon back: tests run side by side).
    wait_until_visible(&db.pool, 100).await;
    assert_eq!(runner.step(&Probe::new()).await.unwrap(), 40);
    // The second is killed after it has written 15 of its 40 events.
    let dying = Arc::new(Probe {
        stall_after: Some(15),
        ..Probe::new()
    });
    let stalled = dying.stalled.clone();
    let task = {
        let runner = runner.clone();
        let dying = dying.clone();
        tokio::spawn(async move { runner.step(dying.as_ref()).await })
    };
    stalled.notified().await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let (applied,): (i64,) =
        sqlx::query_as("SELECT applied FROM projection_checkpoint WHERE name = 'probe'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(applied, 40, "the killed batch moved nothing");
    let partial: i64 = sqlx::query_scalar("SELECT sum(events)::bigint FROM probe.stream_count")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(partial, 40, "the killed batch's writes were rolled back");

    // A new runner resumes and ends equal to a rebuild from scratch.
    runner.catch_up(&Probe::new()).await.unwrap();
    let resumed = probe_rows(&db.pool, "probe").await;
    assert_eq!(resumed.values().map(|(n, _)| n).sum::<i64>(), 100);
    opora_projections::rebuild(&db.pool, &Probe::new(), 7)
        .await
        .unwrap();
    assert_eq!(probe_rows(&db.pool, "probe").await, resumed);
    assert_eq!(resumed, replay(&db.pool).await);
}

async fn reference_rows(
    pool: &PgPool,
) -> (
    Vec<(String, String, String)>,
    Vec<(uuid::Uuid, String, String)>,
) {
    let regions =
        sqlx::query_as("SELECT code, name, time_zone FROM reference.region ORDER BY code")
            .fetch_all(pool)
            .await
            .unwrap();
    let municipalities =
        sqlx::query_as("SELECT id, name, kind FROM reference.municipality ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    (regions, municipalities)
}

#[tokio::test]
async fn the_reference_projection_folds_registrations_and_renames() {
    let db = TestDb::new().await;
    let regions = CommandBus::<Region>::new(db.log.clone(), ());
    let municipalities = CommandBus::<Municipality>::new(db.log.clone(), ());
    let runner = Runner::new(
        db.log.clone(),
        RunnerConfig {
            batch_size: 3,
            ..RunnerConfig::default()
        },
    );
    let projection = ReferenceProjection::new();
    regions
        .execute(
            "55",
            register_region("55", "Омская область"),
            &CommandMeta::new("t"),
        )
        .await
        .unwrap();
    let (omsk, register) = register_municipality("55", "Омск");
    municipalities
        .execute(&omsk.to_string(), register, &CommandMeta::new("t"))
        .await
        .unwrap();
    runner.catch_up(&projection).await.unwrap();
    regions
        .execute("55", rename_region("Омская обл."), &CommandMeta::new("t"))
        .await
        .unwrap();
    municipalities
        .execute(
            &omsk.to_string(),
            rename_municipality("город Омск"),
            &CommandMeta::new("t"),
        )
        .await
        .unwrap();
    regions
        .execute(
            "55",
            opora_domain::reference::RegionCommand::ChangeRegionTimeZone {
                time_zone: opora_domain::reference::TimeZoneId::parse("Asia/Novosibirsk").unwrap(),
                effective_date: time::macros::date!(2025 - 06 - 01),
            },
            &CommandMeta::new("t"),
        )
        .await
        .unwrap();
    runner.catch_up(&projection).await.unwrap();
    let incremental = reference_rows(&db.pool).await;
    assert_eq!(
        incremental.0,
        [(
            "55".to_owned(),
            "Омская обл.".to_owned(),
            "Asia/Novosibirsk".to_owned()
        )]
    );
    assert_eq!(
        incremental.1,
        [(omsk, "город Омск".to_owned(), "urban_okrug".to_owned())]
    );
    let report = opora_projections::rebuild(&db.pool, &projection, 2)
        .await
        .unwrap();
    assert_eq!(report.events, 5);
    assert_eq!(reference_rows(&db.pool).await, incremental);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_swaps_while_the_old_tables_serve_and_the_runner_continues() {
    let db = TestDb::new().await;
    let report = opora_web::seed::load_reference(&db.log).await.unwrap();
    assert!(report.applied > 800);
    let runner = Runner::new(db.log.clone(), RunnerConfig::default());
    let projection = Arc::new(ReferenceProjection::new());
    runner.catch_up(projection.as_ref()).await.unwrap();
    let before = reference_rows(&db.pool).await;

    // A reader keeps querying the live table during the rebuild and always sees it whole.
    let reading = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            for _ in 0..200 {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM reference.region")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(n, 89);
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    let rebuilt = opora_projections::rebuild(&db.pool, projection.as_ref(), 100)
        .await
        .unwrap();
    assert_eq!(rebuilt.events, report.applied as i64);
    assert_eq!(reading.await.unwrap(), 200);
    assert_eq!(reference_rows(&db.pool).await, before);
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'reference\\_\\_%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0);

    // The live runner continues from the rebuilt checkpoint into the new tables.
    let bus = CommandBus::<Region>::new(db.log.clone(), ());
    bus.execute(
        "55",
        rename_region("Омская область (новое)"),
        &CommandMeta::new("t"),
    )
    .await
    .unwrap();
    assert_eq!(runner.catch_up(projection.as_ref()).await.unwrap(), 1);
    let name: String = sqlx::query_scalar("SELECT name FROM reference.region WHERE code = '55'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(name, "Омская область (новое)");
    let status = opora_projections::status(&db.pool).await.unwrap();
    let reference = status.iter().find(|s| s.name == "reference").unwrap();
    assert_eq!(reference.behind, 0);
    assert_eq!(reference.applied, report.applied as i64 + 1);

    // The log's witness is never rebuilt from the log.
    let refused =
        opora_projections::rebuild(&db.pool, &opora_projections::stream_head::StreamHead, 100)
            .await
            .unwrap_err();
    assert!(
        refused.to_string().contains("никогда не перестраивается"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_from_another_process_wakes_the_runner_long_before_the_poll() {
    let db = TestDb::new().await;
    let runner = Runner::new(
        db.log.clone(),
        RunnerConfig {
            poll_interval: Duration::from_secs(600),
            ..RunnerConfig::default()
        },
    );
    let (stop, stopped) = watch::channel(false);
    let tasks = runner.spawn(vec![Arc::new(ReferenceProjection::new())], stopped);
    tokio::time::sleep(Duration::from_millis(300)).await; // the listener is up

    // Another process: its own pool and its own notifier; no in-process signal reaches us.
    let other = db.other_process().await;
    let notifier = other.spawn_notifier(Duration::from_millis(10));
    CommandBus::<Region>::new(other.clone(), ())
        .execute(
            "16",
            register_region("16", "Республика Татарстан"),
            &CommandMeta::new("t"),
        )
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM reference.region")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if n == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen,
        "not applied within 5 s although the poll interval is 10 min"
    );
    notifier.abort();
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Waits (up to 5 s) until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The marks a server keeps (`opora_projections::stamps`): read once while nothing moves;
/// read again at once after a batch of this process's runner or after `forget`; a move
/// committed by another process shows once the marks are `KEPT_FOR` old.
#[tokio::test]
async fn kept_marks_follow_every_move_of_a_checkpoint() {
    use opora_projections::stamps::{Marks, Stamps, KEPT_FOR};
    let db = TestDb::new().await;
    let other = db.other_process().await;
    let stamps = Stamps::new(db.pool.clone());
    let kept = stamps.current().await.unwrap();
    assert_eq!(*kept, Marks::read(&db.pool).await.unwrap());
    // Nothing moved: the same marks, not read again.
    assert!(Arc::ptr_eq(&kept, &stamps.current().await.unwrap()));
    let reference = kept.checkpoint("reference");

    // A batch of this process's runner: the next call has it, without waiting.
    CommandBus::<Region>::new(db.log.clone(), ())
        .execute(
            "55",
            register_region("55", "Омская область"),
            &CommandMeta::new("t"),
        )
        .await
        .unwrap();
    let runner = Runner::new(db.log.clone(), RunnerConfig::default());
    runner.catch_up(&ReferenceProjection::new()).await.unwrap();
    let after_batch = stamps.current().await.unwrap();
    assert_ne!(after_batch.checkpoint("reference"), reference);
    assert_eq!(*after_batch, Marks::read(&db.pool).await.unwrap());

    // Another process moves a checkpoint: kept marks are used for at most KEPT_FOR.
    let moved_by_other = || async {
        sqlx::query(
            "UPDATE projection_checkpoint SET updated_at = updated_at + interval '1 second' \
              WHERE name = 'reference'",
        )
        .execute(other.pool())
        .await
        .unwrap();
        Marks::read(other.pool()).await.unwrap()
    };
    let moved_at = std::time::Instant::now();
    let wanted = moved_by_other().await;
    assert_ne!(wanted, *after_batch);
    until("the other process's move shown", async || {
        *stamps.current().await.unwrap() == wanted
    })
    .await;
    assert!(moved_at.elapsed() < KEPT_FOR * 4);

    // Forgotten (after a request that may write): the next call reads them.
    let wanted = moved_by_other().await;
    stamps.forget();
    assert_eq!(*stamps.current().await.unwrap(), wanted);
}
