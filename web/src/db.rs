//! Which PostgreSQL to use: `DATABASE_URL` when set, otherwise the embedded default.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::embedded::{Durability, EmbeddedPostgres, DATABASE};

/// A database ready for use; holds the embedded server (if any) so that it stops when this
/// value is dropped.
pub struct Database {
    pub url: String,
    pub embedded: Option<EmbeddedPostgres>,
}

/// The folder for the embedded cluster: `OPORA_DATA_DIR` or `./.opora`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("OPORA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".opora"))
}

impl Database {
    /// `DATABASE_URL` if set; else start (or attach to) the embedded cluster and make sure
    /// its `opora` database exists.
    pub async fn open() -> Result<Self> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(Self {
                url,
                embedded: None,
            });
        }
        let dir = data_dir().join("pg");
        let pg =
            tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, Durability::Durable))
                .await??;
        create_database_if_missing(&pg.url("postgres"), DATABASE).await?;
        Ok(Self {
            url: pg.url(DATABASE),
            embedded: Some(pg),
        })
    }

    pub async fn pool(&self, max_connections: u32) -> Result<PgPool> {
        connect(&self.url, max_connections).await
    }

    /// The server's pool: every statement is cancelled after `statement_timeout` (its
    /// transaction rolls back and the request answers 503, `AppError::Overloaded`), so
    /// that no request holds a connection past what a user waits for.
    pub async fn serving_pool(
        &self,
        max_connections: u32,
        statement_timeout: Duration,
    ) -> Result<PgPool> {
        let options: sqlx::postgres::PgConnectOptions = self
            .url
            .parse()
            .with_context(|| format!("DATABASE_URL {}", redact(&self.url)))?;
        let options = options.options([(
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        )]);
        pool_options(max_connections)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(&self.url)))
    }

    pub fn stop(&mut self) -> Result<()> {
        match self.embedded.as_mut() {
            Some(pg) => pg.stop(),
            None => Ok(()),
        }
    }
}

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    pool_options(max_connections)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // While the database is away a request waits this long for a connection, then
        // answers 503 with Retry-After (error::AppError::Unavailable).
        .acquire_timeout(Duration::from_secs(5))
}

/// Applies the migrations (idempotent).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    opora_store::MIGRATOR
        .run(pool)
        .await
        .context("database migration failed")
}

pub async fn create_database_if_missing(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("cannot connect to {}", redact(admin_url)))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The master key that wraps every person's key: `OPORA_MASTER_KEY` (base64), or the file
/// `OPORA_MASTER_KEY_FILE`, or — for the embedded default and the demo — `master.key` in
/// the data folder (beside, never inside, the PostgreSQL cluster), created on first start.
pub fn master_key() -> Result<opora_store::MasterKey> {
    use opora_store::MasterKey;
    if let Ok(text) = std::env::var("OPORA_MASTER_KEY") {
        return MasterKey::from_base64(&text).context("OPORA_MASTER_KEY");
    }
    let (path, default) = match std::env::var_os("OPORA_MASTER_KEY_FILE") {
        Some(path) => (PathBuf::from(path), false),
        None => (data_dir().join("master.key"), true),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::from_base64(&text)
            .with_context(|| format!("master key file {}", path.display())),
        Err(error) if default && error.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate()?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_private(&path, &key.to_base64())?;
            eprintln!(
                "Создан мастер-ключ {} — храните его отдельно от базы данных: без него личные данные не прочитать.",
                path.display()
            );
            Ok(key)
        }
        Err(error) => Err(error)
            .with_context(|| format!("cannot read the master key file {}", path.display())),
    }
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The vault over `pool` with the configured master key (checked against the database).
pub async fn open_vault(pool: &PgPool) -> Result<opora_store::Vault> {
    opora_store::Vault::open_with(pool.clone(), master_key()?)
        .await
        .context("master key")
}
