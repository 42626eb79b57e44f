//! Server-rendered pages. Each area owns its routes, each route with its access rule.

pub mod admin;
pub mod aid;
pub mod cases;
pub mod directory;
pub mod families;
pub mod import;
pub mod integrations;
pub mod login;
pub mod persons;
pub mod profile;
pub mod reference;
pub mod sessions;
pub mod signal_kpi;
pub mod signals;
pub mod vyzov_dash;
pub mod weekly;
pub mod zastupnik_dash;

use askama::Template;
use askama_web::WebTemplate;
use axum::http::header;
use axum::response::IntoResponse;

use crate::auth::guard::{Routes, Rule};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;

/// `?notice=KEY` (or `?error=KEY`) after a form: the message, if KEY is one.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl NoticeQuery {
    pub fn notice(&self, tr: Tr) -> Option<String> {
        self.notice.as_deref().and_then(|k| tr.try_t(k))
    }
    pub fn error(&self, tr: Tr) -> Option<String> {
        self.error.as_deref().and_then(|k| tr.try_t(k))
    }
}

/// A command the rules refused, with nothing written: a code for programs (a message
/// key) and the message for people, in their language.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(tr: Tr, key: &str) -> Self {
        Self {
            code: key.to_owned(),
            message: tr.t(key),
        }
    }
}

/// What a command did: its record's id, or the refusal to show beside the form. Errors
/// that are not the user's (a missing record, the database) stay in the outer `AppResult`.
pub type Outcome<T> = AppResult<Result<T, Refusal>>;

/// The id in a record's address (`/…/{id}`); anything that is not an id is a missing
/// record, answered 404 like one.
pub struct RecordId(pub uuid::Uuid);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RecordId {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> AppResult<Self> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| AppError::NotFound)?;
        uuid::Uuid::parse_str(&raw)
            .map(RecordId)
            .map_err(|_| AppError::NotFound)
    }
}

pub fn routes() -> Routes {
    Routes::new()
        .get("/", Rule::Public, home)
        .get("/static/opora.css", Rule::Public, stylesheet)
        .merge(login::routes())
        .merge(profile::routes())
        .merge(reference::routes())
        .merge(persons::routes())
        .merge(families::routes())
        .merge(aid::routes())
        .merge(cases::routes())
        .merge(directory::routes())
        .merge(sessions::routes())
        .merge(import::routes())
        .merge(admin::routes())
        .merge(weekly::routes())
        .merge(signal_kpi::routes())
        .merge(signals::routes())
        .merge(integrations::routes())
        .merge(zastupnik_dash::routes())
        .merge(vyzov_dash::routes())
}

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
struct HomePage {
    c: Chrome,
}

async fn home(c: Chrome) -> HomePage {
    HomePage { c }
}

const STYLESHEET: &str = include_str!("../../../static/opora.css");

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}
