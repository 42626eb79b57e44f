//! Test support: every test gets its own database on a real PostgreSQL server, cloned from
//! a template that has the migrations applied, and dropped when the test ends.
//!
//! The server is the one `DATABASE_URL` names (scripts/test starts a throwaway embedded
//! cluster and sets it). There is no fallback to a mock: without a server, tests fail.

use opora_store::EventLog;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with scripts/test (it starts a throwaway \
         PostgreSQL), or point DATABASE_URL at a server where you may create databases",
    )
}

fn options_for(database: &str) -> PgConnectOptions {
    admin_url()
        .parse::<PgConnectOptions>()
        .expect("DATABASE_URL is not a PostgreSQL URL")
        .database(database)
}

async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url())
        .await
        .expect("cannot connect to DATABASE_URL")
}

async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("opora_tpl_{}", std::process::id());
            let mut conn = admin().await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut conn)
                .await
                .expect("drop old template");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create template database");
            let mut tpl = PgConnection::connect_with(&options_for(&name))
                .await
                .expect("connect to template");
            opora_store::MIGRATOR
                .run(&mut tpl)
                .await
                .expect("migrations apply to a fresh database");
            tpl.close().await.expect("close template connection");
            name
        })
        .await
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub name: String,
    pub options: PgConnectOptions,
    pub pool: PgPool,
    pub log: EventLog,
}

impl TestDb {
    /// A URL for this database (for tools such as pg_dump).
    pub fn url(&self) -> String {
        let admin = admin_url();
        let (base, query) = match admin.split_once('?') {
            Some((base, query)) => (base.to_owned(), format!("?{query}")),
            None => (admin.clone(), String::new()),
        };
        let root = match base.rsplit_once('/') {
            Some((root, _))
                if root.contains("://") && root.len() > root.find("://").unwrap_or(0) + 3 =>
            {
                root.to_owned()
            }
            _ => base,
        };
        format!("{root}/{}{query}", self.name)
    }

    pub async fn new() -> Self {
        Self::with_pool_size(16).await
    }

    pub async fn with_pool_size(max_connections: u32) -> Self {
        let template = template().await;
        let name = format!("opora_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = admin().await;
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let options = options_for(&name);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options.clone())
            .await
            .expect("connect to test database");
        let log = EventLog::new(pool.clone());
        Self {
            name,
            options,
            pool,
            log,
        }
    }

    /// A second, independent handle on the same database, as another process would have.
    pub async fn other_process(&self) -> EventLog {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.options.clone())
            .await
            .expect("second pool");
        EventLog::new(pool)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        // Drop the database from a thread of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
