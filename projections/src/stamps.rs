//! Where the read models stand — each projection's checkpoint and `vyzov.written` — kept in
//! the server's memory, so that a dashboard page asked while nothing moves reads nothing from
//! PostgreSQL to know which of its kept answers are current.
//!
//! The marks kept are read again (one statement) when:
//! - a runner of this process committed a batch to the same database (it counts in [`MOVED`]
//!   before its `catch_up` or `step` returns, so a page asked after that reads the new
//!   marks);
//! - [`Stamps::forget`] was called (the server calls it after every request that may write);
//! - they are [`KEPT_FOR`] old: a move committed by another process (another server's
//!   runners, a rebuild run from the command line) shows within that.
//!
//! A notification per batch (LISTEN/NOTIFY) would tell other processes at once, but NOTIFY
//! serialises the commits of every notifying transaction behind one lock, and the runners
//! commit a batch per projection for every few events: under load that slowed the delivery
//! of signals, so the marks age instead.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use time::OffsetDateTime;

/// How long marks read are used while this process's runners do not move.
pub const KEPT_FOR: Duration = Duration::from_secs(1);

/// Batches committed by the runners of this process, per database (see [`database`]).
static MOVED: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);

/// Which database a pool reaches (host, port, name): a runner's moves concern only the
/// stamps of the same database (tests run many side by side in one process).
fn database(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

fn moves() -> std::sync::MutexGuard<'static, HashMap<String, u64>> {
    MOVED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A runner of this process committed a batch to `pool`'s database: marks kept before are
/// not used again.
pub(crate) fn moved(pool: &PgPool) {
    *moves().entry(database(pool)).or_default() += 1;
}

/// Each projection's checkpoint (when it last moved) and `vyzov.written`, read together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    checkpoints: Vec<(String, OffsetDateTime)>,
    written: Option<OffsetDateTime>,
}

impl Marks {
    /// When the projection `name` last moved; `None` if it has no checkpoint.
    pub fn checkpoint(&self, name: &str) -> Option<OffsetDateTime> {
        self.checkpoints
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, at)| *at)
    }

    /// When the «Вызов» projection last wrote figures (`vyzov.written`).
    pub fn written(&self) -> Option<OffsetDateTime> {
        self.written
    }

    /// Reads them, in one statement.
    pub async fn read(pool: &PgPool) -> Result<Marks, sqlx::Error> {
        let rows: Vec<(String, Option<OffsetDateTime>)> = sqlx::query_as(
            "SELECT name, updated_at FROM public.projection_checkpoint \
             UNION ALL SELECT '', (SELECT at FROM vyzov.written)",
        )
        .fetch_all(pool)
        .await?;
        let mut marks = Marks::default();
        for (name, at) in rows {
            match (name.is_empty(), at) {
                (true, written) => marks.written = written,
                (false, Some(at)) => marks.checkpoints.push((name, at)),
                (false, None) => {}
            }
        }
        Ok(marks)
    }
}

/// How many times the marks were forgotten, and the marks kept: [`MOVED`] when they were
/// read, when the read began, and the marks.
type Kept = (u64, Option<(u64, Instant, Arc<Marks>)>);

pub struct Stamps {
    pool: PgPool,
    /// The pool's database, as [`MOVED`] counts it.
    database: String,
    kept: Mutex<Kept>,
}

impl Stamps {
    pub fn new(pool: PgPool) -> Self {
        Stamps {
            database: database(&pool),
            pool,
            kept: Mutex::new((0, None)),
        }
    }

    /// The marks as they stand: kept, or read (and kept, unless they were forgotten or
    /// later marks were kept meanwhile).
    pub async fn current(&self) -> Result<Arc<Marks>, sqlx::Error> {
        let moved = moves().get(&self.database).copied().unwrap_or(0);
        let forgotten = {
            let kept = self.lock();
            if let Some((m, at, marks)) = &kept.1 {
                if *m == moved && at.elapsed() < KEPT_FOR {
                    return Ok(Arc::clone(marks));
                }
            }
            kept.0
        };
        let started = Instant::now();
        let marks = Arc::new(Marks::read(&self.pool).await?);
        let mut kept = self.lock();
        let later = kept.1.as_ref().is_some_and(|(_, at, _)| *at > started);
        if kept.0 == forgotten && !later {
            kept.1 = Some((moved, started, Arc::clone(&marks)));
        }
        Ok(marks)
    }

    /// Nothing kept is used again, nor anything being read now: the next page reads the
    /// marks.
    pub fn forget(&self) {
        let mut kept = self.lock();
        kept.0 += 1;
        kept.1 = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}
