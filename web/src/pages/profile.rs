//! «Мой профиль»: one's roles, changing one's password, signing out everywhere.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use opora_domain::access::UserCommand;
use opora_store::CommandMeta;
use serde::Deserialize;

use crate::auth::guard::{Routes, Rule, Viewer};
use crate::auth::{self, AuthSession, Credentials};
use crate::chrome::Chrome;
use crate::error::AppResult;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/profil", Rule::SignedIn, show)
        .post("/profil/parol", Rule::SignedIn, change_password)
        .post("/profil/vyhod-vezde", Rule::SignedIn, sign_out_everywhere)
}

#[derive(Template, WebTemplate)]
#[template(path = "profile.html")]
struct ProfilePage {
    c: Chrome,
    grants: Vec<String>,
    second_factor: bool,
    notice: Option<String>,
    error: Option<String>,
}

async fn page(
    state: &AppState,
    c: Chrome,
    viewer: &Viewer,
    notice: Option<String>,
    error: Option<String>,
) -> AppResult<ProfilePage> {
    let user = viewer.user()?;
    let mut grants = Vec::new();
    for grant in &user.grants {
        grants.push(crate::pages::admin::describe(state.log.pool(), c.tr, grant).await?);
    }
    Ok(ProfilePage {
        second_factor: user.second_factor,
        c,
        grants,
        notice,
        error,
    })
}

async fn show(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    Query(query): Query<crate::pages::NoticeQuery>,
) -> AppResult<ProfilePage> {
    let notice = query
        .notice
        .filter(|n| n == "notice-password-changed")
        .map(|n| c.tr.t(&n));
    page(&state, c, &viewer, notice, None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    repeat: String,
}

async fn change_password(
    State(state): State<AppState>,
    c: Chrome,
    viewer: Viewer,
    mut auth: AuthSession,
    Form(form): Form<PasswordForm>,
) -> AppResult<Response> {
    let user = viewer.user()?.clone();
    let fail = |key: &str| Some(c.tr.t(key));
    let error = if form.new != form.repeat {
        fail("password-mismatch")
    } else if let Some(problem) = auth::password_problem(&form.new, &user.login) {
        fail(problem)
    } else {
        let valid = auth
            .authenticate(Credentials {
                login: user.login.clone(),
                password: form.current.clone(),
            })
            .await?;
        if valid.is_none() {
            fail("password-current-wrong")
        } else {
            None
        }
    };
    if let Some(error) = error {
        let page = page(&state, c, &viewer, None, Some(error)).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    auth::set_password(state.log.pool(), user.id, &form.new).await?;
    state
        .users
        .execute(
            &user.id.to_string(),
            UserCommand::RecordPasswordSet,
            &CommandMeta::new(viewer.actor()),
        )
        .await?;
    // Every other session has ended with the old password; this one signs in again.
    let _ = auth.logout().await;
    Ok(Redirect::to("/vhod?next=/profil").into_response())
}

async fn sign_out_everywhere(
    State(state): State<AppState>,
    viewer: Viewer,
    mut auth: AuthSession,
) -> AppResult<Response> {
    let user = viewer.user()?.clone();
    auth::sign_out_everywhere(state.log.pool(), user.id).await?;
    state
        .users
        .execute(
            &user.id.to_string(),
            UserCommand::SignOutEverywhere,
            &CommandMeta::new(viewer.actor()),
        )
        .await?;
    let _ = auth.logout().await;
    Ok(Redirect::to("/vhod").into_response())
}
