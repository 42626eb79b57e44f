//! The event log: appends, concurrency, the position rule, immutability, the hash chain,
//! idempotent commands and upcasting.

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use opora_domain::reference::{Municipality, Region, RegionError};
use opora_store::log::{read_after, LogPosition};
use opora_store::verify::{verify, Problem};
use opora_store::{CommandBus, CommandError, CommandMeta, Executed};
use opora_tests::TestDb;
use serde_json::json;
use sqlx::{Connection, Row};

use crate::fixtures::*;

fn meta() -> CommandMeta {
    CommandMeta::new("user:test-curator")
}

#[tokio::test]
async fn appended_events_carry_metadata_and_fold_back_into_the_aggregate() {
    let db = TestDb::new().await;
    let bus = CommandBus::<Region>::new(db.log.clone(), ());
    let register = meta();
    assert_eq!(
        bus.execute("55", register_region("55", "Омская область"), &register)
            .await
            .unwrap(),
        Executed::Applied
    );
    let rename = meta();
    bus.execute("55", rename_region("Омская обл."), &rename)
        .await
        .unwrap();
    // Loading folds both events: renaming to the current name is now refused.
    let again = bus
        .execute("55", rename_region("Омская обл."), &meta())
        .await;
    assert!(matches!(
        again,
        Err(CommandError::Rejected(RegionError::SameName))
    ));

    let rows = sqlx::query(
        "SELECT sequence, event_type, actor, command_id, correlation_id, effective_date::text AS effective_date, \
                recorded_at IS NOT NULL AS recorded, length(hash) AS hash_len \
           FROM event WHERE aggregate_type = 'Region' AND aggregate_id = '55' ORDER BY sequence",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<String, _>("event_type"), "RegionRegistered");
    assert_eq!(rows[0].get::<Option<String>, _>("effective_date"), None);
    assert_eq!(rows[1].get::<String, _>("event_type"), "RegionRenamed");
    assert_eq!(rows[1].get::<String, _>("actor"), "user:test-curator");
    assert_eq!(
        rows[1].get::<uuid::Uuid, _>("command_id"),
        rename.command_id
    );
    assert_eq!(
        rows[1].get::<uuid::Uuid, _>("correlation_id"),
        rename.correlation_id
    );
    assert_eq!(
        rows[1]
            .get::<Option<String>, _>("effective_date")
            .as_deref(),
        Some("2025-03-14")
    );
    assert!(rows[1].get::<bool, _>("recorded"));
    assert_eq!(rows[1].get::<i32, _>("hash_len"), 32);
}

#[tokio::test]
async fn the_same_command_id_twice_appends_once_and_returns_the_first_outcome() {
    let db = TestDb::new().await;
    let bus = CommandBus::<Region>::new(db.log.clone(), ());
    let first = meta();
    let outcome = bus
        .execute("72", register_region("72", "Тюменская область"), &first)
        .await
        .unwrap();
    assert_eq!(outcome, Executed::Applied);
    // A retry over a bad network: same command id, same command.
    let retry = bus
        .execute("72", register_region("72", "Тюменская область"), &first)
        .await
        .unwrap();
    assert_eq!(retry, Executed::AlreadyApplied);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    // A rename retried after another rename: the retry would now produce an event again,
    // but the journal answers with the first outcome and nothing is appended.
    let rename = meta();
    bus.execute("72", rename_region("Тюменская обл."), &rename)
        .await
        .unwrap();
    bus.execute("72", rename_region("Тюмень"), &meta())
        .await
        .unwrap();
    let retried = bus
        .execute("72", rename_region("Тюменская обл."), &rename)
        .await
        .unwrap();
    assert_eq!(retried, Executed::AlreadyApplied);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 3);

    // A refused command keeps its refusal, even once the state would allow it.
    let refused = meta();
    let err = bus
        .execute("73", rename_region("Ульяновская"), &refused)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(RegionError::NotRegistered)
    ));
    bus.execute("73", register_region("73", "Ульяновская область"), &meta())
        .await
        .unwrap();
    let replayed = bus
        .execute("73", rename_region("Ульяновская"), &refused)
        .await
        .unwrap_err();
    assert!(matches!(
        replayed,
        CommandError::Rejected(RegionError::NotRegistered)
    ));
}

#[tokio::test]
async fn concurrent_duplicates_of_one_command_append_once() {
    let db = TestDb::new().await;
    let command = meta();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let log = db.log.clone();
        let command = command.clone();
        tasks.push(tokio::spawn(async move {
            let bus = CommandBus::<Region>::new(log, ());
            bus.execute(
                "16",
                register_region("16", "Республика Татарстан"),
                &command,
            )
            .await
        }));
    }
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Executed::Applied) => applied += 1,
            Ok(Executed::AlreadyApplied) => {}
            // Two copies may load before either appends: the loser sees a stream conflict,
            // which is safe to retry with the same command id.
            Err(CommandError::Conflict) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(applied, 1);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

fn serialized(aggregate_id: &str, sequence: usize, name: &str) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.into(),
        sequence,
        "Region".into(),
        "RegionRenamed".into(),
        "1.0".into(),
        json!({"RegionRenamed": {"name": name}}),
        json!({}),
    )
}

#[tokio::test]
async fn a_conflicting_append_is_refused_as_an_optimistic_lock_error() {
    let db = TestDb::new().await;
    let bus = CommandBus::<Region>::new(db.log.clone(), ());
    bus.execute("22", register_region("22", "Алтайский край"), &meta())
        .await
        .unwrap();
    let repo = db.log.repository();
    // Someone else already wrote event 1: appending "event 1" again conflicts.
    let taken = repo
        .persist::<Region>(&[serialized("22", 1, "А")], None)
        .await
        .unwrap_err();
    assert!(
        matches!(taken, PersistenceError::OptimisticLockError),
        "{taken:?}"
    );
    // Event 3 with no event 2 would leave a hole: refused the same way.
    let gap = repo
        .persist::<Region>(&[serialized("22", 3, "Б")], None)
        .await
        .unwrap_err();
    assert!(
        matches!(gap, PersistenceError::OptimisticLockError),
        "{gap:?}"
    );
    // Nothing partial was written.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    // Through the bus: two loads of the same version, two appends: exactly one wins.
    let mut outcomes = Vec::new();
    for round in 0..20 {
        let a = CommandBus::<Region>::new(db.log.clone(), ());
        let b = CommandBus::<Region>::new(db.log.clone(), ());
        let (meta_a, meta_b) = (meta(), meta());
        let (x, y) = tokio::join!(
            a.execute("22", rename_region(&format!("A{round}")), &meta_a),
            b.execute("22", rename_region(&format!("B{round}")), &meta_b),
        );
        outcomes.push((x.is_ok(), y.is_ok()));
        for result in [x, y] {
            assert!(matches!(
                result,
                Ok(Executed::Applied) | Err(CommandError::Conflict)
            ));
        }
    }
    let (max, count): (i64, i64) =
        sqlx::query_as("SELECT max(sequence), count(*) FROM event WHERE aggregate_id = '22'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(max, count, "no hole and no duplicate in the stream");
    let successes = outcomes
        .iter()
        .map(|(x, y)| *x as i64 + *y as i64)
        .sum::<i64>();
    assert_eq!(count, 1 + successes);
}

#[tokio::test]
async fn the_log_refuses_update_delete_and_truncate() {
    let db = TestDb::new().await;
    let bus = CommandBus::<Region>::new(db.log.clone(), ());
    bus.execute("42", register_region("42", "Кемеровская область"), &meta())
        .await
        .unwrap();
    // A refused command leaves a row in command_refusal.
    bus.execute("42", register_region("42", "Кемеровская область"), &meta())
        .await
        .unwrap_err();
    for statement in [
        "UPDATE event SET payload = '{}'",
        "DELETE FROM event",
        "TRUNCATE event",
        "UPDATE command_refusal SET actor = 'someone else'",
        "DELETE FROM command_refusal",
        "TRUNCATE command_refusal CASCADE",
    ] {
        let error = sqlx::query(statement).execute(&db.pool).await.unwrap_err();
        let db_error = error.as_database_error().expect("a database error");
        assert_eq!(db_error.code().as_deref(), Some("OP002"), "{statement}");
        assert!(db_error.message().contains("append-only"), "{statement}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM event")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

/// Changes history the way only a superuser could: with the guard triggers off.
async fn tamper(db: &TestDb, statement: &str) {
    let mut conn = db.pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("ALTER TABLE event DISABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(statement).execute(&mut *tx).await.unwrap();
    sqlx::query("ALTER TABLE event ENABLE TRIGGER USER")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn seed_streams(db: &TestDb) {
    let regions = CommandBus::<Region>::new(db.log.clone(), ());
    for (code, name) in [
        ("59", "Пермский край"),
        ("63", "Самарская область"),
        ("66", "Свердловская область"),
    ] {
        regions
            .execute(code, register_region(code, name), &meta())
            .await
            .unwrap();
        for n in 0..3 {
            regions
                .execute(code, rename_region(&format!("{name} {n}")), &meta())
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn verify_passes_an_intact_log() {
    let db = TestDb::new().await;
    seed_streams(&db).await;
    let report = verify(&db.pool).await.unwrap();
    assert_eq!(report.events, 12);
    assert_eq!(report.streams, 3);
    assert_eq!(report.first_problem, None);
}

#[tokio::test]
async fn verify_finds_one_changed_payload_byte() {
    let db = TestDb::new().await;
    seed_streams(&db).await;
    // One byte: "Самарская область 1" becomes "Самарская область 2".
    tamper(
        &db,
        "UPDATE event SET payload = replace(payload::text, 'область 1', 'область 2')::jsonb \
          WHERE aggregate_id = '63' AND sequence = 3",
    )
    .await;
    let report = verify(&db.pool).await.unwrap();
    let first = report.first_problem.expect("tampering found");
    assert_eq!((first.aggregate_id.as_str(), first.sequence), ("63", 3));
    assert_eq!(first.problem, Problem::ContentChanged);
    assert!(first.to_string().contains("Region/63 #3"), "{first}");
}

#[tokio::test]
async fn verify_finds_a_deleted_event_and_a_deleted_tail() {
    let db = TestDb::new().await;
    seed_streams(&db).await;
    tamper(
        &db,
        "DELETE FROM event WHERE aggregate_id = '59' AND sequence = 2",
    )
    .await;
    let report = verify(&db.pool).await.unwrap();
    let first = report.first_problem.expect("hole found");
    assert_eq!(first.aggregate_id, "59");
    assert_eq!(first.problem, Problem::Missing { from: 2, to: 2 });

    // A deleted last event leaves no hole: the stream_head projection is the witness.
    let db = TestDb::new().await;
    seed_streams(&db).await;
    project_stream_heads(&db).await;
    tamper(
        &db,
        "DELETE FROM event WHERE aggregate_id = '66' AND sequence = 4",
    )
    .await;
    let report = verify(&db.pool).await.unwrap();
    let first = report.first_problem.expect("missing tail found");
    assert_eq!(first.aggregate_id, "66");
    assert_eq!(first.problem, Problem::Missing { from: 4, to: 4 });
}

#[tokio::test]
async fn verify_finds_a_rewritten_hash() {
    let db = TestDb::new().await;
    seed_streams(&db).await;
    // Content changed and its own hash recomputed correctly, but the next event still
    // points at the old hash: the chain breaks there.
    forge(&db, "59", 2).await;
    let report = verify(&db.pool).await.unwrap();
    let first = report.first_problem.expect("broken chain found");
    assert_eq!((first.aggregate_id.as_str(), first.sequence), ("59", 3));
    assert_eq!(first.problem, Problem::ChainBroken);
    assert_eq!(report.problems, 1, "the forged event itself is consistent");
}

async fn project_stream_heads(db: &TestDb) {
    let runner = opora_projections::Runner::new(db.log.clone(), Default::default());
    runner
        .catch_up(&opora_projections::stream_head::StreamHead)
        .await
        .unwrap();
}

#[tokio::test]
async fn verify_finds_a_rewritten_last_event() {
    let db = TestDb::new().await;
    seed_streams(&db).await;
    project_stream_heads(&db).await;
    // The last event of a stream has no successor to break: rewrite it, hash and all.
    forge(&db, "63", 4).await;
    let report = verify(&db.pool).await.unwrap();
    let first = report.first_problem.expect("rewritten tail found");
    assert_eq!((first.aggregate_id.as_str(), first.sequence), ("63", 4));
    assert_eq!(first.problem, Problem::ContentChanged);
}

/// Rewrites an event's payload and recomputes its own hash correctly, as a forger who knows
/// the scheme would.
async fn forge(db: &TestDb, aggregate_id: &str, sequence: i64) {
    let row = sqlx::query(
        "SELECT prev_hash, metadata, actor, command_id, correlation_id, effective_date, recorded_at \
           FROM event WHERE aggregate_id = $1 AND sequence = $2",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let prev_hash: Vec<u8> = row.get("prev_hash");
    let other: serde_json::Value = row.get("metadata");
    let metadata = opora_store::chain::SplitMetadata {
        actor: row.get("actor"),
        command_id: row.get("command_id"),
        correlation_id: row.get("correlation_id"),
        effective_date: row.get("effective_date"),
        other: other.as_object().cloned().unwrap(),
    }
    .join();
    let forged = json!({"RegionRenamed": {"name": "X"}});
    let hash = opora_store::chain::event_hash(
        &prev_hash,
        &opora_store::chain::HashedFields {
            aggregate_type: "Region",
            aggregate_id,
            sequence,
            event_type: "RegionRenamed",
            event_version: "1.0",
            payload: &opora_store::chain::canonical_json(&forged),
            metadata: &opora_store::chain::canonical_json(&metadata),
            recorded_at: row.get("recorded_at"),
        },
    );
    tamper(
        db,
        &format!(
            "UPDATE event SET payload = '{forged}', hash = '\\x{}' \
              WHERE aggregate_id = '{aggregate_id}' AND sequence = {sequence}",
            hex(&hash)
        ),
    )
    .await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The position rule: an event of a transaction still open holds back every event after
/// it, so a reader never moves its checkpoint past an event that is not yet visible.
#[tokio::test]
async fn a_reader_never_skips_an_event_committed_out_of_order() {
    let db = TestDb::new().await;
    let insert = "INSERT INTO event (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, prev_hash, hash) \
                  VALUES ('Region', $1, 1, 'RegionRenamed', '1.0', '{}', '{}', '\\x00', '\\x00') RETURNING position";
    let mut slow = db.pool.acquire().await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    let slow_position: i64 = sqlx::query_scalar(insert)
        .bind("slow")
        .fetch_one(&mut *slow_tx)
        .await
        .unwrap();
    let fast_position: i64 = sqlx::query_scalar(insert)
        .bind("fast")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(fast_position > slow_position);

    let mut reader = db.pool.acquire().await.unwrap();
    // A naive reader ordering by position alone would take "fast" now and later skip "slow".
    let naive: Vec<String> = sqlx::query_scalar("SELECT aggregate_id FROM event ORDER BY position")
        .fetch_all(&mut *reader)
        .await
        .unwrap();
    assert_eq!(naive, ["fast"]);
    // Ours holds "fast" back while "slow" is in flight.
    let held = read_after(&mut reader, LogPosition::default(), 100)
        .await
        .unwrap();
    assert!(
        held.is_empty(),
        "read {:?}",
        held.iter().map(|e| &e.aggregate_id).collect::<Vec<_>>()
    );

    slow_tx.commit().await.unwrap();
    // The horizon is cluster-wide: a concurrent test's transaction (a pg_dump, say) can
    // hold it back for a moment; the reader then waits, as the runner does.
    let mut both = Vec::new();
    for _ in 0..200 {
        both = read_after(&mut reader, LogPosition::default(), 100)
            .await
            .unwrap();
        if !both.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ids: Vec<_> = both.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["slow", "fast"]);
    assert!(both[0].at < both[1].at);
    // And after the last one read, nothing is left behind.
    let rest = read_after(&mut reader, both[1].at, 100).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn old_event_versions_are_upcast_on_read() {
    let db = TestDb::new().await;
    let (id, _) = register_municipality("16", "Агрызский муниципальный район");
    // A version 1.0 event, as the first seed wrote them: no `kind`.
    let v1 = SerializedEvent::new(
        id.to_string(),
        1,
        "Municipality".into(),
        "MunicipalityRegistered".into(),
        "1.0".into(),
        json!({"MunicipalityRegistered": {"region_code": "16", "name": "Агрызский муниципальный район"}}),
        json!({}),
    );
    db.log
        .repository()
        .persist::<Municipality>(&[v1], None)
        .await
        .unwrap();
    // The aggregate loads through the upcaster (else this would fail to deserialize).
    let bus = CommandBus::<Municipality>::new(db.log.clone(), ());
    let outcome = bus
        .execute(
            &id.to_string(),
            rename_municipality("Агрызский район"),
            &meta(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, Executed::Applied);
    // The projection reads it upcast too: the kind is inferred from the name.
    let runner = opora_projections::Runner::new(db.log.clone(), Default::default());
    let projection = opora_projections::reference::ReferenceProjection::new();
    runner.catch_up(&projection).await.unwrap();
    let (name, kind): (String, String) =
        sqlx::query_as("SELECT name, kind FROM reference.municipality WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(name, "Агрызский район");
    assert_eq!(kind, "municipal_district");
    // The stored event itself is untouched.
    let stored: String = sqlx::query_scalar(
        "SELECT event_version FROM event WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(id.to_string())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored, "1.0");
}

#[tokio::test]
async fn a_replay_stream_reports_an_unreadable_event_instead_of_ending_quietly() {
    let db = TestDb::new().await;
    seed_streams(&db).await;
    let repo = db.log.repository();
    let mut stream = repo.stream_all_events::<Region>().await.unwrap();
    let mut n = 0;
    while let Some(item) = stream.next::<Region>(&[]).await {
        item.unwrap();
        n += 1;
    }
    assert_eq!(n, 12);
    // Break a payload so that it cannot be read: the stream reports it.
    tamper(
        &db,
        "UPDATE event SET payload = '{\"Nonsense\": 1}' WHERE aggregate_id = '63' AND sequence = 2",
    )
    .await;
    let mut stream = repo.stream_events::<Region>("63").await.unwrap();
    let mut errors = 0;
    while let Some(item) = stream.next::<Region>(&[]).await {
        if item.is_err() {
            errors += 1;
        }
    }
    assert_eq!(errors, 1);
}

/// The bus caches aggregates it decided; another process's append makes that cache stale.
/// A stale cache must never let a wrong decision stand, either way.
#[tokio::test]
async fn a_stale_cached_aggregate_never_makes_a_wrong_decision() {
    let db = TestDb::new().await;
    let here = CommandBus::<Region>::new(db.log.clone(), ());
    let elsewhere = CommandBus::<Region>::new(db.other_process().await, ());
    here.execute("38", register_region("38", "Иркутская область"), &meta())
        .await
        .unwrap();
    // Another process renames it; `here` still caches the old name.
    elsewhere
        .execute("38", rename_region("Иркутская обл."), &meta())
        .await
        .unwrap();
    // Renaming to the current name must be refused, although the cache says it differs.
    let same = here
        .execute("38", rename_region("Иркутская обл."), &meta())
        .await;
    assert!(
        matches!(same, Err(CommandError::Rejected(RegionError::SameName))),
        "{same:?}"
    );
    // Renaming back to the old name must be accepted, although the cache says it is the same.
    let back = here
        .execute("38", rename_region("Иркутская область"), &meta())
        .await
        .unwrap();
    assert_eq!(back, Executed::Applied);
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT payload->'RegionRenamed'->>'name' FROM event \
          WHERE aggregate_id = '38' AND sequence > 1 ORDER BY sequence",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(names, ["Иркутская обл.", "Иркутская область"]);
    assert_eq!(verify(&db.pool).await.unwrap().first_problem, None);
}
