//! Protection against cross-site request forgery: a random token per session (synchroniser
//! token), put by every form in a hidden field `csrf` (or, for file uploads, in the form's
//! address as `?csrf=`), and checked here, before any handler, for every request that is not
//! GET or HEAD. Requests the browser marks as cross-site (`Sec-Fetch-Site: cross-site`) are
//! refused outright.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::error::AppError;

pub const FIELD: &str = "csrf";
const SESSION_KEY: &str = "csrf";
/// Forms are small; larger bodies (uploads) carry the token in the address.
const FORM_LIMIT: usize = 1024 * 1024;

/// The session's token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(token) = session.get::<String>(SESSION_KEY).await? {
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| AppError::Unexpected(anyhow::anyhow!(e)))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    session.insert(SESSION_KEY, &token).await?;
    Ok(token)
}

/// A new token after login, so a token seen before login is useless after it.
pub async fn renew(session: &Session) -> Result<String, AppError> {
    let _ = session.remove::<String>(SESSION_KEY).await;
    token(session).await
}

fn find_field(encoded: &[u8]) -> Option<String> {
    form_urlencoded::parse(encoded)
        .find(|(name, _)| name == FIELD)
        .map(|(_, value)| value.into_owned())
}

pub async fn verify(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return next.run(request).await;
    }
    let cross_site = request
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        == Some("cross-site");
    let session = request.extensions().get::<Session>().cloned();
    let (parts, body) = request.into_parts();
    let mut presented = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.query().and_then(|q| find_field(q.as_bytes())));
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = if is_form {
        let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
            Ok(bytes) => bytes,
            Err(_) => return AppError::TooLarge.into_response(),
        };
        if presented.is_none() {
            presented = find_field(&bytes);
        }
        Body::from(bytes)
    } else {
        body
    };
    let expected = match &session {
        Some(session) => session.get::<String>(SESSION_KEY).await.ok().flatten(),
        None => None,
    };
    let valid = match (expected, presented) {
        (Some(expected), Some(presented)) => {
            bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
        }
        _ => false,
    };
    if cross_site || !valid {
        tracing::info!(
            path = parts.uri.path(),
            cross_site,
            "request refused: CSRF token"
        );
        return AppError::StaleForm.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
