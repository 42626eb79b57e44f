//! What every page's frame needs: the language, the signed-in user (for the navigation and
//! the sign-out form), the CSRF token for forms, and the current path (for the language
//! switch to come back to).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use opora_domain::access::Role;
use tower_sessions::Session;

use crate::auth::csrf;
use crate::auth::guard::{urlencoding, Viewer};
use crate::error::AppError;
use crate::i18n::{Lang, Tr};

#[derive(Debug, Clone)]
pub struct Badge {
    pub login: String,
    pub display_name: String,
    pub admin: bool,
    pub people: bool,
    /// Sees the NGO aid desk.
    pub aid: bool,
    /// Reads the aid report only (the ministry's analysts).
    pub aid_report: bool,
    /// An NGO operator: its families are its own list.
    pub ngo: bool,
    /// Files the weekly «Заступник» report (a municipal education department).
    pub weekly_file: bool,
    /// Reads the weekly «Заступник» summary.
    pub weekly_summary: bool,
    /// «Заступник»: the operators' console (and the response KPIs).
    pub signals: bool,
    /// Reads the ministry dashboards («Вызов», «Заступник»).
    pub monitoring: bool,
}

#[derive(Debug, Clone)]
pub struct Chrome {
    pub tr: Tr,
    pub csrf: String,
    pub user: Option<Badge>,
    pub path: String,
}

impl Chrome {
    /// For pages rendered outside a handler (error pages): no user, no forms.
    pub fn bare(tr: Tr) -> Self {
        Self {
            tr,
            csrf: String::new(),
            user: None,
            path: "/".into(),
        }
    }

    /// The address that switches the language and comes back here.
    pub fn switch_to(&self, lang: &str) -> String {
        format!("/yazyk/{lang}?next={}", urlencoding(&self.path))
    }

    /// A fresh id for a form's `command_id` (a retry of the same form carries the same id).
    pub fn new_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }

    pub fn lang(&self) -> &'static str {
        self.tr.lang.code()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Chrome {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let tr = Tr::new(Lang::from_headers(&parts.headers));
        let viewer = parts.extensions.get::<Viewer>().cloned();
        let user = viewer.as_ref().and_then(|v| v.user.as_ref());
        let csrf = match (user, parts.extensions.get::<Session>()) {
            (Some(_), Some(session)) => csrf::token(session).await?,
            _ => String::new(),
        };
        Ok(Self {
            tr,
            csrf,
            user: user.map(|u| Badge {
                login: u.login.clone(),
                display_name: u.display_name.clone(),
                admin: u.has_role(Role::Administrator),
                people: crate::pages::persons::ROLES.iter().any(|r| u.has_role(*r)),
                aid: crate::pages::aid::READERS.iter().any(|r| u.has_role(*r)),
                aid_report: crate::pages::aid::REPORTERS.iter().any(|r| u.has_role(*r)),
                ngo: u.has_role(Role::NgoOperator),
                weekly_file: u.has_role(Role::MunicipalEducation),
                weekly_summary: crate::pages::weekly::SUMMARY.iter().any(|r| u.has_role(*r)),
                signals: crate::pages::signals::WATCHERS
                    .iter()
                    .any(|r| u.has_role(*r)),
                monitoring: crate::pages::vyzov_dash::READERS
                    .iter()
                    .any(|r| u.has_role(*r)),
            }),
            path: viewer.map_or_else(|| parts.uri.path().to_owned(), |v| v.path),
        })
    }
}
