//! One error type for every handler. The response carries only the kind of error; the
//! outermost layer ([`render_errors`]) writes the page in the user's language. The cause
//! chain of an unexpected error goes to the log only.

use askama::Template;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use crate::i18n::{Lang, Tr};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Missing, or outside the user's scope: both answer 404, so that an out-of-scope
    /// record cannot be told from a missing one.
    #[error("not found")]
    NotFound,
    /// A programme's call (`/api/…`) without a signed-in session.
    #[error("not signed in")]
    Unauthorized,
    /// The user's roles do not include this page.
    #[error("forbidden")]
    Forbidden,
    /// A state-changing request without the form's valid CSRF token.
    #[error("stale form")]
    StaleForm,
    #[error("request body too large")]
    TooLarge,
    /// The database cannot be reached (restarting, network): 503 with `Retry-After`; the
    /// pool reconnects by itself.
    #[error("database unavailable")]
    Unavailable,
    /// The database refused the statement for want of time or room: the statement timeout
    /// ran out (SQLSTATE 57014), or it lacks resources (class 53: a full disk, memory,
    /// connections). The transaction was rolled back: 503 with a longer `Retry-After`.
    #[error("database overloaded")]
    Overloaded,
    /// The database refused a value the request carried (SQLSTATE class 22, data exception:
    /// a zero byte in a text, a number out of its column's range): 422, nothing written.
    #[error("value the database cannot store")]
    Unstorable,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Seconds a client is asked to wait while the database is away.
pub const RETRY_AFTER_SECONDS: &str = "5";
/// Seconds a client is asked to wait when the database refused for want of time or room.
pub const RETRY_AFTER_OVERLOAD_SECONDS: &str = "30";

/// Whether `error` says the database cannot be reached, rather than that a statement failed:
/// no connection to be had from the pool in time, a connection lost, the server shutting
/// down or starting up (SQLSTATE class 08, 57P01–57P03).
pub fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether the database refused a statement for want of time (the statement timeout,
/// SQLSTATE 57014) or of resources (class 53: disk full, out of memory, too many
/// connections), rather than because of the statement itself.
pub fn is_overload(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|c| c == "57014" || c.starts_with("53")),
        _ => false,
    }
}

/// The database's own refusal among the causes of `error`, if there is one: away
/// ([`AppError::Unavailable`]) or short of time or room ([`AppError::Overloaded`]).
fn refusal_among(error: &(dyn std::error::Error + 'static)) -> Option<AppError> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refusal) = e.downcast_ref::<sqlx::Error>().and_then(refusal) {
            return Some(refusal);
        }
        cause = e.source();
    }
    None
}

fn refusal(error: &sqlx::Error) -> Option<AppError> {
    if is_outage(error) {
        Some(AppError::Unavailable)
    } else if is_overload(error) {
        Some(AppError::Overloaded)
    } else if is_unstorable(error) {
        Some(AppError::Unstorable)
    } else {
        None
    }
}

/// Whether the database refused a value itself (SQLSTATE class 22): what the request sent
/// passed our parsing but cannot be stored or compared, such as a zero byte in a text.
pub fn is_unstorable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => e.code().is_some_and(|c| c.starts_with("22")),
        _ => false,
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        refusal(&error).unwrap_or_else(|| Self::Unexpected(error.into()))
    }
}

/// Failures of the libraries under the pages are unexpected: logged in full, shown calmly.
macro_rules! unexpected_from {
    ($($t:ty),+ $(,)?) => {$(
        impl From<$t> for AppError {
            fn from(error: $t) -> Self {
                Self::Unexpected(anyhow::anyhow!("{error}"))
            }
        }
    )+};
}

unexpected_from!(
    crate::auth::AuthError,
    axum_login::Error<crate::auth::Backend>,
    tower_sessions::session::Error,
    csv::Error,
    rust_xlsxwriter::XlsxError,
    serde_json::Error,
    // A stored value that no longer parses is an invariant broken, not bad input.
    opora_domain::reference::ValueError,
);

/// A command that failed for a reason other than a refusal the page shows (callers match
/// `CommandError::Rejected` first where the user should see it).
impl<E: std::error::Error + Send + Sync + 'static> From<opora_store::CommandError<E>> for AppError {
    fn from(error: opora_store::CommandError<E>) -> Self {
        if let opora_store::CommandError::Unexpected(cause) = &error {
            if let Some(refusal) = refusal_among(cause.as_ref()) {
                return refusal;
            }
        }
        Self::Unexpected(anyhow::anyhow!("{error}"))
    }
}

impl From<opora_store::VaultError> for AppError {
    fn from(error: opora_store::VaultError) -> Self {
        Self::Unexpected(error.into())
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// Which error page to render (the message keys' prefix).
#[derive(Debug, Clone, Copy)]
pub struct ErrorPageKey(pub &'static str);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Unexpected(error) = &self {
            if let Some(refusal) = refusal_among(error.as_ref()) {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "request refused by the database"
                );
                return refusal.into_response();
            }
        }
        let (status, key) = match &self {
            AppError::NotFound => (StatusCode::NOT_FOUND, "error-not-found"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "error-unauthorized"),
            AppError::Forbidden => (StatusCode::FORBIDDEN, "error-forbidden"),
            AppError::StaleForm => (StatusCode::FORBIDDEN, "error-stale-form"),
            AppError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "error-too-large"),
            AppError::Unavailable => {
                tracing::warn!("request refused: the database is unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "error-unavailable")
            }
            AppError::Overloaded => {
                tracing::warn!("request refused: the database is short of time or room");
                (StatusCode::SERVICE_UNAVAILABLE, "error-overloaded")
            }
            AppError::Unstorable => (StatusCode::UNPROCESSABLE_ENTITY, "error-unstorable"),
            AppError::Unexpected(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "error-unexpected")
            }
        };
        let mut response = status.into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = if matches!(self, AppError::Overloaded) {
                RETRY_AFTER_OVERLOAD_SECONDS
            } else {
                RETRY_AFTER_SECONDS
            };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response.extensions_mut().insert(ErrorPageKey(key));
        response
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    c: crate::chrome::Chrome,
    title: String,
    message: String,
}

/// Renders the page of an error response in the request's language; for the JSON and
/// ingestion APIs (`/api/…`, `/ingest/…`), the same message as a JSON object `{"error": code, "message": text}`.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let api = crate::api::speaks_json(request.uri().path());
    let lang = if api {
        Lang::from_api_headers(request.headers())
    } else {
        Lang::from_headers(request.headers())
    };
    let response = next.run(request).await;
    let key = match response.extensions().get::<ErrorPageKey>().copied() {
        Some(ErrorPageKey(key)) => key,
        // axum's own rejections (a form that cannot be read, a wrong content type) are
        // plain English text: give them the same page as every other error.
        None if matches!(response.status().as_u16(), 400 | 405 | 413 | 415 | 422)
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/plain")) =>
        {
            "error-bad-request"
        }
        None => return response,
    };
    let tr = Tr::new(lang);
    if api {
        let status = response.status();
        let (parts, _) = response.into_parts();
        let body = crate::api::ErrorBody {
            error: key.trim_start_matches("error-").to_owned(),
            message: tr.t(&format!("{key}-message")),
        };
        let mut json = (status, axum::Json(body)).into_response();
        for (name, value) in &parts.headers {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                json.headers_mut().append(name.clone(), value.clone());
            }
        }
        return json;
    }
    let page = ErrorPage {
        c: crate::chrome::Chrome::bare(tr),
        title: tr.t(&format!("{key}-title")),
        message: tr.t(&format!("{key}-message")),
    };
    let status = response.status();
    let (mut parts, _) = response.into_parts();
    match page.render() {
        Ok(body) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Html(body).into_response().into_body())
        }
        Err(_) => status.into_response(),
    }
}

/// A bare 500 from a layer under the pages (sessions, sign-in: they cannot say why) while
/// the database cannot be reached becomes the 503 of [`AppError::Unavailable`]; any other
/// bare 500 gets the page of an unexpected error.
pub async fn outage(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || response.extensions().get::<ErrorPageKey>().is_some()
    {
        return response;
    }
    let probe = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        sqlx::query("SELECT 1").execute(state.log.pool()).await
    })
    .await;
    match probe {
        Ok(Ok(_)) => AppError::Unexpected(anyhow::anyhow!("a layer answered 500")).into_response(),
        _ => AppError::Unavailable.into_response(),
    }
}
