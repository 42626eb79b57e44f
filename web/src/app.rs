//! The HTTP application: one `build` shared by `opora serve` and the tests.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::Router;
use axum_login::AuthManagerLayerBuilder;
use opora_domain::access::User;
use opora_domain::case::ChildCase;
use opora_domain::person::Person;
use opora_store::{CommandBus, EventLog, Vault};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{CachingSessionStore, Expiry, SessionManagerLayer};
use tower_sessions_moka_store::MokaStore;
use tower_sessions_sqlx_store::PostgresStore;

use crate::auth::guard::{self, RouteRule, Routes, RuleTable};
use crate::auth::{self, csrf, Backend};
use crate::error::{self, AppError};
use crate::{health, pages};

/// Settings of the HTTP application.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `/readyz` fails when a projection's oldest unapplied event is older than this.
    pub max_lag_seconds: f64,
    /// Served over TLS (through a proxy): cookies are `Secure` and HSTS is sent.
    pub https: bool,
    /// A session ends this long after login, however active.
    pub absolute_timeout: time::Duration,
    /// And this long after its last request.
    pub idle_timeout: time::Duration,
    /// Outgoing mail (weekly reminders).
    pub mail: crate::mail::Mailer,
    /// «Заступник»: a signal nobody has acknowledged this many seconds after it arrived is
    /// escalated (highlighted on the console, and an escalation event).
    pub escalate_after_seconds: u32,
    /// How long a form's redirect may wait for the projections' runners to read what it
    /// wrote (read your writes; see `settle_after_write`). `None` where no runner follows
    /// the log in the background (tests bring projections up to date themselves).
    pub settle_writes: Option<std::time::Duration>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            max_lag_seconds: DEFAULT_MAX_LAG.as_secs_f64(),
            https: false,
            absolute_timeout: auth::ABSOLUTE_TIMEOUT,
            idle_timeout: auth::IDLE_TIMEOUT,
            mail: crate::mail::Mailer::default(),
            escalate_after_seconds: DEFAULT_ESCALATE_AFTER_SECONDS,
            settle_writes: None,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub log: EventLog,
    pub vault: Vault,
    pub config: Arc<AppConfig>,
    pub rules: RuleTable,
    pub users: Arc<CommandBus<User>>,
    pub persons: Arc<CommandBus<Person>>,
    pub cases: Arc<CommandBus<ChildCase>>,
    /// «Заступник»: signals, registrations and the ingestion clients' rate limits.
    pub ingest: Arc<crate::ingest::Ingest>,
    /// «Вызов» dashboard figures already read (valid until the projection writes).
    pub figures: Arc<opora_projections::vyzov::FigureCache>,
    /// «Заступник» dashboards already built (valid until its projections move).
    pub zastupnik: Arc<crate::pages::zastupnik_dash::DashCache>,
    /// Regions' and municipalities' names (valid until the `reference` projection moves).
    pub names: Arc<crate::pages::vyzov_dash::Names>,
    /// «Вызов» pages of today already rendered (valid until its projections move).
    pub vyzov_pages: Arc<crate::pages::vyzov_dash::BodyCache>,
    /// Signed-in users loaded in the last second (see [`auth::Users`]).
    pub signed_in: Arc<auth::Users>,
    /// Where the read models stand (checkpoints, `vyzov.written`), kept for up to a second
    /// while this process's runners do not move (see [`opora_projections::stamps`]).
    pub stamps: Arc<opora_projections::stamps::Stamps>,
}

/// Sessions kept in memory at most (the least recently used leave first).
const SESSIONS_KEPT: u64 = 10_000;

pub struct Application;

impl Application {
    /// Every route with its access rule: the router is built from this, and the
    /// authorization-matrix test enumerates it.
    pub fn routes() -> Routes {
        use guard::Rule::Public;
        Routes::new()
            .get("/healthz", Public, health::healthz)
            .get("/readyz", Public, health::readyz)
            .merge(pages::routes())
            .merge(crate::api::routes())
    }

    pub fn rules() -> Vec<RouteRule> {
        Self::routes().into_parts().1
    }

    pub fn build(log: EventLog, vault: Vault, config: AppConfig) -> Router {
        let (router, rules) = Self::routes().into_parts();
        let https = config.https;
        let idle_timeout = config.idle_timeout;
        let state = AppState {
            users: Arc::new(CommandBus::new(log.clone(), ())),
            persons: Arc::new(CommandBus::new(log.clone(), ())),
            cases: Arc::new(CommandBus::new(log.clone(), ())),
            ingest: Arc::new(crate::ingest::Ingest::new(&log)),
            figures: Arc::default(),
            zastupnik: Arc::new(opora_projections::kept::Kept::new(
                crate::pages::zastupnik_dash::KEPT,
            )),
            names: Arc::default(),
            signed_in: Arc::default(),
            stamps: Arc::new(opora_projections::stamps::Stamps::new(log.pool().clone())),
            vyzov_pages: Arc::new(opora_projections::kept::Kept::new(
                crate::pages::vyzov_dash::BODIES,
            )),
            vault,
            config: Arc::new(config),
            rules: RuleTable::new(rules),
            log,
        };
        let store = PostgresStore::new(state.log.pool().clone())
            .with_schema_name("access")
            .and_then(|s| s.with_table_name("session"))
            .unwrap_or_else(|_| PostgresStore::new(state.log.pool().clone()));
        // Each request reads its session from memory once it has been read or saved (the
        // store still holds every change; only this server writes sessions).
        let store = CachingSessionStore::new(MokaStore::new(Some(SESSIONS_KEPT)), store);
        let sessions = SessionManagerLayer::new(store)
            .with_name("opora_session")
            .with_secure(https)
            .with_same_site(SameSite::Lax)
            .with_http_only(true)
            .with_expiry(Expiry::OnInactivity(idle_timeout));
        let auth_layer = AuthManagerLayerBuilder::new(
            Backend::new(state.log.pool().clone(), Arc::clone(&state.signed_in)),
            sessions,
        )
        .build();
        // The ingestion API sits outside sessions, CSRF and the role guard: its callers are
        // backends identified by their integration key (crate::ingest).
        let mut app = crate::ingest::routes()
            .merge(router
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                guard::guard,
            ))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                settle_after_write,
            ))
            .layer(axum::middleware::from_fn(csrf::verify))
            .layer(auth_layer)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                error::outage,
            )))
            .layer(axum::middleware::from_fn(error::render_errors))
            .layer(TraceLayer::new_for_http())
            .layer(SetResponseHeaderLayer::overriding(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                     script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
                ),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ));
        if https {
            app = app.layer(SetResponseHeaderLayer::overriding(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            ));
        }
        app.layer(axum::middleware::from_fn(server_timing))
            .with_state(state)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn not_found() -> AppError {
    AppError::NotFound
}

pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(10);
/// Seconds without an operator's acknowledgement before a signal is escalated.
pub const DEFAULT_ESCALATE_AFTER_SECONDS: u32 = 60;

/// How long `opora serve` lets a form's redirect wait for the projections (they follow
/// within milliseconds; past this, the page may show the change a moment late).
pub const SETTLE_WRITES: std::time::Duration = std::time::Duration::from_secs(2);

/// Read your writes: a form that wrote answers with a redirect (303) once every projection
/// has read the log as far as it reached, so the page it sends the user to shows the change
/// (a new person's page, a closed signal, a register without the child who went home).
async fn settle_after_write(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let write = request.method() == axum::http::Method::POST;
    let changes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let response = next.run(request).await;
    // A redirect to the login (no session, or a form sent after it ended) wrote nothing.
    let to_login = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|to| to.starts_with("/vhod"));
    if let Some(limit) = state.config.settle_writes {
        if write && !to_login && response.status() == axum::http::StatusCode::SEE_OTHER {
            match opora_projections::settled(state.log.pool(), limit).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!("projections still behind after a write's redirect"),
                Err(error) => tracing::debug!(%error, "could not wait for the projections"),
            }
        }
    }
    // Whatever it changed (an account blocked, a role, a password, sessions ended), the
    // next request of every user loads them again, from projections that now have it.
    if changes {
        state.signed_in.forget();
        state.stamps.forget();
    }
    response
}

/// `Server-Timing: app;dur=…`: how long the server took over the request, in milliseconds,
/// everything included but the network (a browser's developer tools show it; the load
/// benchmark judges pages by it, as the targets are server-side).
async fn server_timing(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.1}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}
