//! Server-rendered pages. Each area owns its router.

pub mod reference;

use askama::Template;
use askama_web::WebTemplate;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/opora.css", get(stylesheet))
        .merge(reference::router())
}

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
struct HomePage;

async fn home() -> HomePage {
    HomePage
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
