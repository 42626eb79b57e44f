//! Signing in and out: password, then (for the roles that see children's personal data) a
//! one-time code, enrolled on first login by scanning a QR code.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_login::AuthnBackend;
use opora_domain::access::UserCommand;
use opora_store::CommandMeta;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::guard::{safe_next, Routes, Rule, Viewer};
use crate::auth::{self, csrf, totp, AuthSession, Credentials, SESSION_LOGIN_AT, SESSION_PENDING};
use crate::chrome::Chrome;
use crate::error::{AppError, AppResult};
use crate::i18n::{Lang, LANG_COOKIE};
use crate::AppState;
use opora_store::Vault;

pub fn routes() -> Routes {
    Routes::new()
        .get("/vhod", Rule::Public, login_form)
        .post("/vhod", Rule::Public, login)
        .get("/vhod/kod", Rule::Public, code_form)
        .post("/vhod/kod", Rule::Public, code)
        .get("/vhod/kod/podklyuchenie", Rule::Public, enrol_form)
        .post("/vhod/kod/podklyuchenie", Rule::Public, enrol)
        .post("/vyhod", Rule::SignedIn, logout)
        .get("/yazyk/{lang}", Rule::Public, switch_language)
}

/// A password was right; the code is still to come. Lives five minutes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    user_id: Uuid,
    login: String,
    at: i64,
    next: String,
    /// A seed being enrolled (not yet confirmed), sealed with the master key: the session
    /// table never holds it in clear.
    enrolling: Option<Vec<u8>>,
}

const PENDING_SECONDS: i64 = 300;

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/login.html")]
struct LoginPage {
    c: Chrome,
    next: String,
    login: String,
    error: Option<String>,
}

async fn login_form(
    mut c: Chrome,
    auth: AuthSession,
    Query(query): Query<NextQuery>,
) -> AppResult<Response> {
    if auth.user.is_some() {
        return Ok(Redirect::to(&safe_next(query.next.as_deref())).into_response());
    }
    c.csrf = csrf::token(&auth.session).await?;
    Ok(LoginPage {
        c,
        next: safe_next(query.next.as_deref()),
        login: String::new(),
        error: None,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    mut c: Chrome,
    viewer: Viewer,
    mut auth: AuthSession,
    Form(form): Form<LoginForm>,
) -> AppResult<Response> {
    let pool = state.log.pool();
    let next = safe_next(form.next.as_deref());
    c.csrf = csrf::token(&auth.session).await?;
    let failed = |c: Chrome, key: &str, status: StatusCode| {
        let error = Some(c.tr.t(key));
        (
            status,
            LoginPage {
                c,
                next: next.clone(),
                login: form.login.clone(),
                error,
            },
        )
            .into_response()
    };
    if auth::throttled(pool, &form.login, &viewer.address).await? {
        auth::record_attempt(pool, &form.login, &viewer.address, None, "throttled").await?;
        return Ok(failed(c, "login-throttled", StatusCode::TOO_MANY_REQUESTS));
    }
    let user = auth
        .authenticate(Credentials {
            login: form.login.clone(),
            password: form.password.clone(),
        })
        .await?;
    let Some(user) = user else {
        auth::record_attempt(pool, &form.login, &viewer.address, None, "bad_password").await?;
        return Ok(failed(c, "login-failed", StatusCode::UNAUTHORIZED));
    };
    // A new session id for the new privilege level (no session fixation).
    auth.session.cycle_id().await?;
    if user.requires_second_factor() {
        auth::record_attempt(
            pool,
            &form.login,
            &viewer.address,
            Some(user.id),
            "password_ok",
        )
        .await?;
        let pending = Pending {
            user_id: user.id,
            login: user.login.clone(),
            at: OffsetDateTime::now_utc().unix_timestamp(),
            next,
            enrolling: None,
        };
        let enrolled = totp::stored_secret(pool, &state.vault, user.id)
            .await?
            .is_some();
        insert(&auth, SESSION_PENDING, &pending).await?;
        return Ok(Redirect::to(if enrolled {
            "/vhod/kod"
        } else {
            "/vhod/kod/podklyuchenie"
        })
        .into_response());
    }
    complete_login(&state, &mut auth, &user, &viewer).await?;
    Ok(Redirect::to(&next).into_response())
}

async fn insert<T: Serialize>(auth: &AuthSession, key: &str, value: &T) -> AppResult<()> {
    auth.session
        .insert(key, value)
        .await
        .map_err(|e| AppError::Unexpected(e.into()))
}

async fn complete_login(
    state: &AppState,
    auth: &mut AuthSession,
    user: &auth::SessionUser,
    viewer: &Viewer,
) -> AppResult<()> {
    auth.login(user).await?;
    let _ = auth.session.remove::<Pending>(SESSION_PENDING).await;
    insert(
        auth,
        SESSION_LOGIN_AT,
        &OffsetDateTime::now_utc().unix_timestamp(),
    )
    .await?;
    csrf::renew(&auth.session).await?;
    auth::record_attempt(
        state.log.pool(),
        &user.login,
        &viewer.address,
        Some(user.id),
        "ok",
    )
    .await?;
    Ok(())
}

async fn pending(auth: &AuthSession) -> Option<Pending> {
    let pending: Pending = auth.session.get(SESSION_PENDING).await.ok().flatten()?;
    (OffsetDateTime::now_utc().unix_timestamp() - pending.at <= PENDING_SECONDS).then_some(pending)
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/code.html")]
struct CodePage {
    c: Chrome,
    error: Option<String>,
}

async fn code_form(mut c: Chrome, auth: AuthSession) -> AppResult<Response> {
    if pending(&auth).await.is_none() {
        return Ok(Redirect::to("/vhod").into_response());
    }
    c.csrf = csrf::token(&auth.session).await?;
    Ok(CodePage { c, error: None }.into_response())
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn code(
    State(state): State<AppState>,
    mut c: Chrome,
    viewer: Viewer,
    mut auth: AuthSession,
    Form(form): Form<CodeForm>,
) -> AppResult<Response> {
    let Some(pending) = pending(&auth).await else {
        return Ok(Redirect::to("/vhod").into_response());
    };
    let pool = state.log.pool();
    c.csrf = csrf::token(&auth.session).await?;
    if auth::throttled(pool, &pending.login, &viewer.address).await? {
        auth::record_attempt(
            pool,
            &pending.login,
            &viewer.address,
            Some(pending.user_id),
            "throttled",
        )
        .await?;
        let error = Some(c.tr.t("login-throttled"));
        return Ok((StatusCode::TOO_MANY_REQUESTS, CodePage { c, error }).into_response());
    }
    let valid = totp::verify_and_consume(
        pool,
        &state.vault,
        pending.user_id,
        &pending.login,
        &form.code,
    )
    .await?;
    let user = match valid {
        true => auth.backend.get_user(&pending.user_id).await?,
        false => None,
    };
    let Some(user) = user else {
        auth::record_attempt(
            pool,
            &pending.login,
            &viewer.address,
            Some(pending.user_id),
            "bad_code",
        )
        .await?;
        let error = Some(c.tr.t("code-failed"));
        return Ok((StatusCode::UNAUTHORIZED, CodePage { c, error }).into_response());
    };
    complete_login(&state, &mut auth, &user, &viewer).await?;
    Ok(Redirect::to(&pending.next).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/enrol.html")]
struct EnrolPage {
    c: Chrome,
    qr_svg: String,
    secret: String,
    error: Option<String>,
}

fn enrolling_aad(user: Uuid) -> Vec<u8> {
    let mut aad = b"opora:enrolling:".to_vec();
    aad.extend_from_slice(user.as_bytes());
    aad
}

/// The seed being enrolled, if one was made for this pending login.
fn enrolling(vault: &Vault, pending: &Pending) -> AppResult<Option<Vec<u8>>> {
    match &pending.enrolling {
        None => Ok(None),
        Some(sealed) => Ok(Some(
            vault.open_with_master(sealed, &enrolling_aad(pending.user_id))?,
        )),
    }
}

/// The seed being enrolled (made once per pending login and kept until confirmed).
async fn enrolling_secret(
    vault: &Vault,
    auth: &AuthSession,
    mut pending: Pending,
) -> AppResult<Vec<u8>> {
    if let Some(secret) = enrolling(vault, &pending)? {
        return Ok(secret);
    }
    let secret =
        totp::new_secret().ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("no randomness")))?;
    pending.enrolling = Some(vault.seal_with_master(&secret, &enrolling_aad(pending.user_id))?);
    insert(auth, SESSION_PENDING, &pending).await?;
    Ok(secret)
}

async fn enrol_page(
    c: Chrome,
    vault: &Vault,
    auth: &AuthSession,
    pending: Pending,
    error: Option<String>,
) -> AppResult<EnrolPage> {
    let login = pending.login.clone();
    let secret = enrolling_secret(vault, auth, pending).await?;
    let (_, qr_svg) = totp::enrolment_qr(&secret, &login)
        .ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("QR code failed")))?;
    Ok(EnrolPage {
        c,
        qr_svg,
        secret: totp::secret_base32(&secret),
        error,
    })
}

async fn enrol_form(
    State(state): State<AppState>,
    mut c: Chrome,
    auth: AuthSession,
) -> AppResult<Response> {
    let Some(pending) = pending(&auth).await else {
        return Ok(Redirect::to("/vhod").into_response());
    };
    if totp::stored_secret(state.log.pool(), &state.vault, pending.user_id)
        .await?
        .is_some()
    {
        return Ok(Redirect::to("/vhod/kod").into_response());
    }
    c.csrf = csrf::token(&auth.session).await?;
    Ok(enrol_page(c, &state.vault, &auth, pending, None)
        .await?
        .into_response())
}

async fn enrol(
    State(state): State<AppState>,
    mut c: Chrome,
    viewer: Viewer,
    mut auth: AuthSession,
    Form(form): Form<CodeForm>,
) -> AppResult<Response> {
    let Some(pending) = pending(&auth).await else {
        return Ok(Redirect::to("/vhod").into_response());
    };
    let pool = state.log.pool();
    if totp::stored_secret(pool, &state.vault, pending.user_id)
        .await?
        .is_some()
    {
        return Ok(Redirect::to("/vhod/kod").into_response());
    }
    c.csrf = csrf::token(&auth.session).await?;
    let Some(secret) = enrolling(&state.vault, &pending)? else {
        return Ok(enrol_page(c, &state.vault, &auth, pending, None)
            .await?
            .into_response());
    };
    let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let Some(step) = totp::matching_step(&secret, &pending.login, &form.code, now) else {
        auth::record_attempt(
            pool,
            &pending.login,
            &viewer.address,
            Some(pending.user_id),
            "bad_code",
        )
        .await?;
        let error = Some(c.tr.t("code-failed"));
        let page = enrol_page(c, &state.vault, &auth, pending, error).await?;
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    totp::store_secret(pool, &state.vault, pending.user_id, &secret, Some(step)).await?;
    state
        .users
        .execute(
            &pending.user_id.to_string(),
            UserCommand::RecordSecondFactorEnrolled,
            &CommandMeta::new(format!("user:{}", pending.login)),
        )
        .await?;
    let user = auth
        .backend
        .get_user(&pending.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    complete_login(&state, &mut auth, &user, &viewer).await?;
    Ok(Redirect::to(&pending.next).into_response())
}

async fn logout(mut auth: AuthSession) -> AppResult<Response> {
    auth.logout().await?;
    Ok(Redirect::to("/vhod").into_response())
}

async fn switch_language(
    Path(lang): Path<String>,
    Query(query): Query<NextQuery>,
) -> AppResult<Response> {
    let lang = Lang::parse(&lang).ok_or(AppError::NotFound)?;
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly",
        lang.code()
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to(&safe_next(query.next.as_deref())),
    )
        .into_response())
}
