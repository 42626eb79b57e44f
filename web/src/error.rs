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
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unexpected(error.into())
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
        let (status, key) = match &self {
            AppError::NotFound => (StatusCode::NOT_FOUND, "error-not-found"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "error-unauthorized"),
            AppError::Forbidden => (StatusCode::FORBIDDEN, "error-forbidden"),
            AppError::StaleForm => (StatusCode::FORBIDDEN, "error-stale-form"),
            AppError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "error-too-large"),
            AppError::Unexpected(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "error-unexpected")
            }
        };
        let mut response = status.into_response();
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

/// Renders the page of an error response in the request's language; for the JSON API
/// (`/api/…`), the same message as a JSON object `{"error": code, "message": text}`.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let api = crate::api::is_api(request.uri().path());
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
