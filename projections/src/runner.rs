//! Catch-up, live following, status and rebuild-and-swap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opora_store::log::{self, LogPosition};
use opora_store::{EventLog, NOTIFY_CHANNEL};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{Projection, ProjectionError};

/// How long a catch-up waits for open transactions that hold the log's horizon back.
const HORIZON_WAIT: Duration = Duration::from_secs(30);

/// The outcome of one batch: how many events, and the checkpoint after it.
struct Batch {
    applied: usize,
    at: LogPosition,
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events per batch (per transaction) when following the log.
    pub batch_size: i64,
    /// Events per batch during a rebuild: larger sets, fewer transactions.
    pub rebuild_batch_size: i64,
    /// Polling fallback when no notification arrives.
    pub poll_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            rebuild_batch_size: 20_000,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Follows the log and keeps every projection up to date.
#[derive(Clone)]
pub struct Runner {
    log: EventLog,
    config: RunnerConfig,
}

impl Runner {
    pub fn new(log: EventLog, config: RunnerConfig) -> Self {
        Self { log, config }
    }

    /// Applies at most one batch to `projection`; returns how many events it applied.
    pub async fn step(&self, projection: &dyn Projection) -> Result<usize, ProjectionError> {
        let name = projection.name();
        let batch = step_into(
            self.log.pool(),
            projection,
            name,
            name,
            self.config.batch_size,
        )
        .await?;
        Ok(batch.applied)
    }

    /// Applies batches until the projection holds every event committed before the call.
    ///
    /// The horizon (xmin) is cluster-wide: a transaction open in any database of the server
    /// holds back events committed after it began. Such waits are short in practice; after
    /// `HORIZON_WAIT` this returns with what it could apply, and the live runner goes on.
    ///
    /// A projection with a [`bulk`](Projection::bulk) fold that starts from the beginning
    /// (new, or reset by a migration) is rebuilt instead: the same result, much faster.
    pub async fn catch_up(&self, projection: &dyn Projection) -> Result<usize, ProjectionError> {
        let name = projection.name();
        let pool = self.log.pool();
        let Some(target) = log::head(&mut *pool.acquire().await?).await? else {
            return Ok(0);
        };
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT applied FROM projection_checkpoint WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
        let mut total = 0;
        if applied == Some(0) && projection.bulk().is_some() {
            let report = rebuild(pool, projection, self.config.rebuild_batch_size).await?;
            tracing::info!(
                projection = name,
                events = report.events,
                seconds = report.seconds,
                "projection built from the whole log"
            );
            total += report.events as usize;
        }
        let deadline = Instant::now() + HORIZON_WAIT;
        loop {
            let batch = step_into(pool, projection, name, name, self.config.batch_size).await?;
            total += batch.applied;
            if batch.at >= target {
                return Ok(total);
            }
            if batch.applied == 0 {
                if Instant::now() > deadline {
                    tracing::warn!(
                        projection = name,
                        "an open transaction holds the log back; catch-up incomplete"
                    );
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Runs every projection until `shutdown` turns true. Each one wakes on an append made
    /// in this process, on a NOTIFY from another process, or on the polling interval.
    pub fn spawn(
        &self,
        projections: Vec<Arc<dyn Projection>>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let (wake, _) = watch::channel(0_u64);
        let mut tasks = vec![tokio::spawn(forward_wakeups(
            self.log.clone(),
            wake.clone(),
            shutdown.clone(),
        ))];
        for projection in projections {
            let runner = self.clone();
            let woken = wake.subscribe();
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                runner.follow(projection, woken, shutdown).await;
            }));
        }
        tasks
    }

    async fn follow(
        &self,
        projection: Arc<dyn Projection>,
        mut woken: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // After a wake-up that found nothing, the appending transaction may still be
        // waiting behind an older open one (its events are held back until that ends):
        // look again soon, a few times, before falling back to the polling interval.
        let mut quick_retries = 0_u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.step(projection.as_ref()).await {
                Ok(applied) if applied as i64 >= self.config.batch_size => continue,
                Ok(applied) => {
                    if applied > 0 {
                        quick_retries = 0;
                    }
                    if quick_retries > 0 {
                        quick_retries -= 1;
                        Duration::from_millis(20)
                    } else {
                        self.config.poll_interval
                    }
                }
                Err(error) => {
                    tracing::error!(projection = projection.name(), %error, "projection batch failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = woken.changed() => {
                    if changed.is_err() { return; }
                    quick_retries = 25;
                }
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Turns local appends and PostgreSQL notifications into one wake-up signal.
async fn forward_wakeups(
    log: EventLog,
    wake: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut local = log.subscribe();
    let mut listener = match PgListener::connect_with(log.pool()).await {
        Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "LISTEN failed; relying on polling");
                None
            }
        },
        Err(error) => {
            tracing::warn!(%error, "no listener connection; relying on polling");
            None
        }
    };
    loop {
        let bump = || wake.send_modify(|n| *n = n.wrapping_add(1));
        tokio::select! {
            changed = local.changed() => {
                if changed.is_err() { return; }
                bump();
            }
            notified = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            } => {
                match notified {
                    Ok(()) => bump(),
                    Err(error) => {
                        // PgListener reconnects on the next recv; do not spin meanwhile.
                        tracing::warn!(%error, "notification connection lost");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
        }
    }
}

/// One batch: lock the checkpoint, read what follows it, apply, move the checkpoint, commit.
/// The row lock also keeps two runners (two servers) from applying the same batch.
async fn step_into(
    pool: &PgPool,
    projection: &dyn Projection,
    checkpoint: &str,
    schema: &str,
    limit: i64,
) -> Result<Batch, ProjectionError> {
    let mut tx = pool.begin().await?;
    let batch = apply_batch(&mut tx, projection, checkpoint, schema, limit).await?;
    if batch.applied > 0 {
        tx.commit().await?;
        crate::stamps::moved(pool);
    } else {
        tx.rollback().await?;
    }
    Ok(batch)
}

async fn apply_batch(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    checkpoint: &str,
    schema: &str,
    limit: i64,
) -> Result<Batch, ProjectionError> {
    let after = lock_checkpoint(conn, checkpoint).await?;
    let (events, passed) = match projection.aggregate_types() {
        None => {
            let events = log::read_after(conn, after, limit).await?;
            let passed = events.last().map(|e| (e.at, events.len() as i64));
            (events, passed)
        }
        Some(types) => log::read_window(conn, after, limit, types).await?,
    };
    let Some((last, passed)) = passed else {
        return Ok(Batch {
            applied: 0,
            at: after,
        });
    };
    sqlx::query(&format!(
        "SELECT set_config('search_path', '{}', true)",
        identifier(schema)?
    ))
    .execute(&mut *conn)
    .await?;
    projection.apply(conn, &events).await?;
    sqlx::query(
        "UPDATE public.projection_checkpoint \
            SET tx_id = $2, position = $3, applied = applied + $4, updated_at = now() \
          WHERE name = $1",
    )
    .bind(checkpoint)
    .bind(last.tx_id)
    .bind(last.position)
    .bind(passed)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT set_config('search_path', 'public', true)")
        .execute(&mut *conn)
        .await?;
    Ok(Batch {
        applied: passed as usize,
        at: last,
    })
}

async fn lock_checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> Result<LogPosition, ProjectionError> {
    let row = sqlx::query(
        "SELECT tx_id, position FROM public.projection_checkpoint WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ProjectionError::Unknown(name.to_owned()))?;
    Ok(LogPosition {
        tx_id: row.try_get("tx_id")?,
        position: row.try_get("position")?,
    })
}

/// Schema names come from code, but are checked anyway before being spliced into SQL.
fn identifier(name: &str) -> Result<&str, ProjectionError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(ProjectionError::Invariant(format!(
            "«{name}» is not a valid projection name"
        )))
    }
}

/// Waits until every projection has read the log as far as its head is now (polling every
/// 5 ms, for at most `limit`), so that a page asked for after a write shows it. Returns
/// whether they got there in time.
pub async fn settled(pool: &PgPool, limit: Duration) -> Result<bool, ProjectionError> {
    let deadline = Instant::now() + limit;
    let Some(head) = log::head(&mut *pool.acquire().await?).await? else {
        return Ok(true);
    };
    // Each look takes a connection of the pool only for its query, none while waiting.
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projection_checkpoint \
              WHERE name NOT LIKE '%\\_\\_next' AND (tx_id, position) < ($1, $2)",
        )
        .bind(head.tx_id)
        .bind(head.position)
        .fetch_one(pool)
        .await?;
        if behind == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub name: String,
    pub at: LogPosition,
    pub applied: i64,
    /// Events in the log after the checkpoint (counted up to 1,000,000).
    pub behind: i64,
    /// Age of the oldest event not yet applied; 0 when caught up.
    pub lag_seconds: f64,
    pub updated_at: OffsetDateTime,
}

pub async fn status(pool: &PgPool) -> Result<Vec<Status>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT name, tx_id, position, applied, updated_at FROM projection_checkpoint \
          WHERE name NOT LIKE '%\\_\\_next' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let at = LogPosition {
            tx_id: row.try_get("tx_id")?,
            position: row.try_get("position")?,
        };
        let (behind, lag_seconds) = log::lag(&mut conn, at, 1_000_000).await?;
        out.push(Status {
            name: row.try_get("name")?,
            at,
            applied: row.try_get("applied")?,
            behind,
            lag_seconds,
            updated_at: row.try_get("updated_at")?,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events: i64,
    pub seconds: f64,
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Rebuilds `projection` from the whole log into fresh tables and swaps them in.
///
/// The fresh tables are `CREATE TABLE … (LIKE live INCLUDING ALL)` copies in the schema
/// `NAME__next`, so their definition stays in `migrations/`. The live tables keep serving
/// (and the live runner keeps following) until the swap, which happens in one transaction
/// holding the live checkpoint's lock: finish the last events, rename the schemas, carry the
/// checkpoint over. The live runner then continues from the rebuilt position.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    if !projection.rebuildable() {
        return Err(ProjectionError::Invariant(format!(
            "проекция «{}» охраняет журнал и никогда не перестраивается из него",
            projection.name()
        )));
    }
    let live = identifier(projection.name())?.to_owned();
    let next = format!("{live}__next");
    let old = format!("{live}__old");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
            .bind(&live)
            .fetch_all(pool)
            .await?;
    if tables.is_empty() {
        return Err(ProjectionError::Unknown(live));
    }
    {
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {next} CASCADE"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {next}"))
            .execute(&mut *tx)
            .await?;
        for table in &tables {
            let t = identifier(table)?;
            sqlx::query(&format!(
                "CREATE TABLE {next}.{t} (LIKE {live}.{t} INCLUDING ALL)"
            ))
            .execute(&mut *tx)
            .await?;
            // LIKE does not copy storage parameters (a fillfactor, say).
            let options: Option<Vec<String>> = sqlx::query_scalar(
                "SELECT reloptions::text[] FROM pg_class \
                  WHERE oid = format('%I.%I', $1::text, $2::text)::regclass",
            )
            .bind(&live)
            .bind(t)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(options) = options.filter(|o| !o.is_empty()) {
                sqlx::query(&format!(
                    "ALTER TABLE {next}.{t} SET ({})",
                    options.join(", ")
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "INSERT INTO projection_checkpoint (name) VALUES ($1) \
             ON CONFLICT (name) DO UPDATE SET tx_id = 0, position = 0, applied = 0, updated_at = now()",
        )
        .bind(&next)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    let bulk = projection.bulk();
    let projection: &dyn Projection = bulk.as_deref().unwrap_or(projection);
    let mut events = 0_i64;
    loop {
        let batch = step_into(pool, projection, &next, &next, batch_size).await?;
        events += batch.applied as i64;
        if (batch.applied as i64) < batch_size {
            break;
        }
    }
    // The swap: with the live checkpoint locked (the live runner waits), apply what is left
    // up to the head of the log, so the new tables are at least as fresh as the old ones.
    let mut tx = pool.begin().await?;
    let live_at = lock_checkpoint(&mut tx, &live).await?;
    let target = log::head(&mut tx).await?.unwrap_or_default().max(live_at);
    let deadline = Instant::now() + HORIZON_WAIT;
    loop {
        let batch = apply_batch(&mut tx, projection, &next, &next, batch_size).await?;
        events += batch.applied as i64;
        if batch.at >= target {
            break;
        }
        if batch.applied == 0 {
            if Instant::now() > deadline {
                return Err(ProjectionError::Invariant(
                    "an open transaction held the log back too long; rebuild not swapped, try again"
                        .into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    sqlx::query(&format!("SELECT set_config('search_path', '{next}', true)"))
        .execute(&mut *tx)
        .await?;
    projection.finish(&mut tx).await?;
    sqlx::query("SELECT set_config('search_path', 'public', true)")
        .execute(&mut *tx)
        .await?;
    // Statistics before the first page reads the new tables: autovacuum would come later,
    // and until then the planner guesses (a sequential scan of a table read by key).
    for table in &tables {
        sqlx::query(&format!("ANALYZE {next}.{}", identifier(table)?))
            .execute(&mut *tx)
            .await?;
    }
    for statement in [
        format!("ALTER SCHEMA {live} RENAME TO {old}"),
        format!("ALTER SCHEMA {next} RENAME TO {live}"),
        format!("DROP SCHEMA {old} CASCADE"),
    ] {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    sqlx::query(
        "UPDATE projection_checkpoint AS live \
            SET tx_id = n.tx_id, position = n.position, applied = n.applied, updated_at = now() \
           FROM projection_checkpoint AS n WHERE live.name = $1 AND n.name = $2",
    )
    .bind(&live)
    .bind(&next)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_checkpoint WHERE name = $1")
        .bind(&next)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    crate::stamps::moved(pool);
    Ok(RebuildReport {
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}
