//! `opora generate --scale tiny` against real PostgreSQL (DATABASE_URL): the log verifies,
//! the projections take every event, the seed's figures (divided by 100) come out of the
//! log as of their dates, and the same seed writes the same chain into another database.
#![allow(clippy::unwrap_used)]

use opora_store::EventLog;
use opora_web::generate::{generate, Refusal, Scale};
use sqlx::{Connection, PgConnection, PgPool};
use time::macros::date;
use time::Date;

const TODAY: Date = date!(2026 - 11 - 22);
const SEED: u64 = 11;

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

/// A new, migrated database on the DATABASE_URL server: its name and pool.
async fn fresh_database() -> (String, PgPool) {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (with-temp-db sets it)");
    let name = format!("opora_generate_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let pool = PgPool::connect(&database_url(&admin, &name)).await.unwrap();
    opora_store::MIGRATOR.run(&pool).await.unwrap();
    (name, pool)
}

async fn drop_database(name: &str, pool: PgPool) {
    pool.close().await;
    let admin = std::env::var("DATABASE_URL").unwrap();
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn scalar(pool: &PgPool, sql: &str, on: Date) -> i64 {
    sqlx::query_scalar(sql)
        .bind(on)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Children in institutions on a day, as of the facts' dates, from the log alone (one
/// stay per generated case).
const IN_INSTITUTIONS: &str = "\
    WITH placed AS (SELECT aggregate_id, effective_date AS placed_on FROM event \
                     WHERE aggregate_type = 'ChildCase' AND event_type = 'ChildPlaced'), \
         left_on AS (SELECT aggregate_id, effective_date AS left_on FROM event \
                     WHERE aggregate_type = 'ChildCase' AND event_type = 'ChildLeftInstitution') \
    SELECT count(*) FROM placed LEFT JOIN left_on USING (aggregate_id) \
     WHERE placed_on <= $1 AND (left_on IS NULL OR left_on > $1)";

#[tokio::test]
async fn a_tiny_history_verifies_projects_and_repeats() {
    let (name, pool) = fresh_database().await;
    let log = EventLog::new(pool.clone());
    let report = generate(&log, SEED, Scale::Tiny, TODAY, false)
        .await
        .unwrap();
    assert!(report.events > 5_000, "{report:?}");
    assert!(report.by_type.contains_key("Signal"));

    // The chain holds, before and after the projections have seen every stream.
    let verified = opora_store::verify::verify(&pool).await.unwrap();
    assert_eq!(verified.first_problem, None);
    let runner = opora_projections::Runner::new(log.clone(), Default::default());
    for projection in [
        "reference",
        "cases",
        "aid",
        "weekly",
        "signals",
        "stream_head",
    ] {
        let projection = opora_projections::by_name(projection).unwrap();
        runner.catch_up(projection.as_ref()).await.unwrap();
    }
    assert_eq!(
        opora_store::verify::verify(&pool)
            .await
            .unwrap()
            .first_problem,
        None
    );
    let generated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event WHERE actor = 'system:generate'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(generated as u64, report.events);

    // Seed 004's figures divided by 100, counted from the log by effective date.
    assert_eq!(
        scalar(&pool, IN_INSTITUTIONS, date!(2024 - 07 - 01)).await,
        212
    );
    assert_eq!(
        scalar(&pool, IN_INSTITUTIONS, date!(2025 - 10 - 01)).await,
        164
    );
    assert!(scalar(&pool, IN_INSTITUTIONS, date!(2023 - 01 - 01)).await > 0);
    let exits = "SELECT count(*) FROM event WHERE event_type = 'ChildLeftInstitution' \
                   AND effective_date BETWEEN '2025-01-01' AND $1";
    assert_eq!(scalar(&pool, exits, date!(2025 - 10 - 01)).await, 230);
    let home = "SELECT count(*) FROM event WHERE event_type = 'ChildLeftInstitution' \
                  AND payload->'ChildLeftInstitution'->>'exit' = 'birth_family' \
                  AND effective_date BETWEEN '2025-01-01' AND $1";
    assert_eq!(scalar(&pool, home, date!(2025 - 10 - 01)).await, 148);
    let accompanied = "\
        WITH s AS (SELECT aggregate_id, effective_date AS started FROM event \
                    WHERE event_type = 'AccompanimentStarted'), \
             e AS (SELECT aggregate_id, effective_date AS ended FROM event \
                    WHERE event_type = 'AccompanimentEnded') \
        SELECT count(*) FROM s LEFT JOIN e USING (aggregate_id) \
         WHERE started <= $1 AND (ended IS NULL OR ended > $1)";
    assert_eq!(scalar(&pool, accompanied, date!(2025 - 10 - 01)).await, 247);
    let services = "SELECT count(*) FROM event WHERE event_type = 'OrganisationRegistered' \
                      AND payload->'OrganisationRegistered'->>'kind' = 'family_service' \
                      AND $1::date IS NOT NULL";
    assert_eq!(scalar(&pool, services, TODAY).await, 14);
    // The projection agrees on today's register.
    let in_now: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cases.child_case WHERE placed_on IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        in_now,
        scalar(&pool, IN_INSTITUTIONS, date!(2026 - 11 - 21)).await
    );

    // Late entries exist; nothing is recorded on or after today.
    let late = "SELECT count(*) FROM event WHERE actor = 'system:generate' \
                  AND recorded_at::date - effective_date > 30 AND effective_date >= $1";
    assert!(scalar(&pool, late, date!(2024 - 01 - 01)).await > 0);
    let future = "SELECT count(*) FROM event WHERE actor = 'system:generate' \
                    AND recorded_at >= $1::date";
    assert_eq!(scalar(&pool, future, TODAY).await, 0);

    // A second run of the same seed is refused and writes nothing.
    let again = generate(&log, SEED, Scale::Tiny, TODAY, false).await;
    let refusal = again.unwrap_err();
    assert!(
        matches!(
            refusal.downcast_ref::<Refusal>(),
            Some(Refusal::AlreadyGenerated { seed: SEED })
        ),
        "{refusal:#}"
    );

    // The same seed into another database: the same events, hash for hash.
    let (other_name, other_pool) = fresh_database().await;
    let other = generate(
        &EventLog::new(other_pool.clone()),
        SEED,
        Scale::Tiny,
        TODAY,
        false,
    )
    .await
    .unwrap();
    assert_eq!(other.last_hash, report.last_hash);
    let chain = "SELECT md5(string_agg(encode(hash, 'hex'), '' ORDER BY tx_id, position)) \
                   FROM event WHERE actor = 'system:generate'";
    let a: String = sqlx::query_scalar(chain).fetch_one(&pool).await.unwrap();
    let b: String = sqlx::query_scalar(chain)
        .fetch_one(&other_pool)
        .await
        .unwrap();
    assert_eq!(a, b);

    drop_database(&other_name, other_pool).await;
    drop_database(&name, pool).await;
}
