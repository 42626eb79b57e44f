//! The guard every request goes through.
//!
//! Routes can only be added through [`Routes`], which requires an access [`Rule`] for each;
//! the table of rules is kept beside the router, and the guard (a route layer) looks up the
//! rule of the matched route on every request. A route without a rule cannot be written,
//! and one the guard cannot find answers 404. The authorization-matrix test enumerates the
//! same table, so a new route without an expected answer per role fails the build's tests.
//!
//! Record-level scoping is the handlers' part: they read the [`Viewer`] the guard leaves in
//! the request and put its places into every query; a record out of scope answers 404.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use opora_domain::access::{Role, Scope};
use opora_domain::reference::RegionCode;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AuthSession, SessionUser, SESSION_LAST_SEEN, SESSION_LOGIN_AT};
use crate::audit;
use crate::error::AppError;
use crate::AppState;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone, signed in or not (login, static files, health).
    Public,
    /// Any signed-in user (with the second factor where the roles require it).
    SignedIn,
    /// Signed-in users holding at least one of these roles (over any scope; the handler
    /// then scopes the records).
    Roles(&'static [Role]),
}

#[derive(Debug, Clone)]
pub struct RouteRule {
    pub method: Method,
    pub path: &'static str,
    pub rule: Rule,
}

/// The router and its table of rules, built together.
pub struct Routes {
    router: Router<AppState>,
    rules: Vec<RouteRule>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            rules: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, rule: Rule, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = if method == Method::POST {
            MethodFilter::POST
        } else {
            MethodFilter::GET
        };
        self.router = self.router.route(path, on(filter, handler));
        self.rules.push(RouteRule { method, path, rule });
        self
    }

    pub fn get<H, T>(self, path: &'static str, rule: Rule, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, rule, handler)
    }

    pub fn post<H, T>(self, path: &'static str, rule: Rule, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, path, rule, handler)
    }

    /// A POST route that takes a file: its body may be up to `limit` bytes (others keep
    /// axum's 2 MB).
    pub fn post_upload<H, T>(
        mut self,
        path: &'static str,
        rule: Rule,
        handler: H,
        limit: usize,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(
            path,
            on(MethodFilter::POST, handler).layer(axum::extract::DefaultBodyLimit::max(limit)),
        );
        self.rules.push(RouteRule {
            method: Method::POST,
            path,
            rule,
        });
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.rules.extend(other.rules);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteRule>) {
        (self.router, self.rules)
    }
}

/// The table of rules, shared with the guard.
#[derive(Clone, Debug, Default)]
pub struct RuleTable(Arc<Vec<RouteRule>>);

impl RuleTable {
    pub fn new(rules: Vec<RouteRule>) -> Self {
        Self(Arc::new(rules))
    }
    pub fn rules(&self) -> &[RouteRule] {
        &self.0
    }
    fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|r| r.path == path)
    }

    fn find(&self, method: &Method, path: &str) -> Option<Rule> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .iter()
            .find(|r| r.path == path && r.method == *method)
            .map(|r| r.rule)
    }
}

/// Who is asking, from where. Every guarded handler can extract it.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub user: Option<SessionUser>,
    pub address: String,
    pub path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("route outside the guard")))
    }
}

/// Where a person's personal data may be read by a viewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalScope {
    pub everywhere: bool,
    pub regions: Vec<String>,
    pub municipalities: Vec<Uuid>,
    /// NGO operators: the families their NGO works with, and those families' aid.
    pub ngos: Vec<Uuid>,
}

impl PersonalScope {
    pub fn is_empty(&self) -> bool {
        !self.everywhere
            && self.regions.is_empty()
            && self.municipalities.is_empty()
            && self.ngos.is_empty()
    }
    pub fn allows(&self, region: &str, municipality: Option<Uuid>) -> bool {
        self.everywhere
            || self.regions.iter().any(|r| r == region)
            || municipality.is_some_and(|m| self.municipalities.contains(&m))
    }
}

impl Viewer {
    /// The signed-in user; the guard lets no anonymous request reach a non-public route.
    pub fn user(&self) -> Result<&SessionUser, AppError> {
        self.user.as_ref().ok_or(AppError::NotFound)
    }

    pub fn actor(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |u| format!("user:{}", u.login))
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.user.as_ref().is_some_and(|u| u.has_role(role))
    }

    /// The places whose people's personal data this viewer may read.
    pub fn personal_scope(&self) -> PersonalScope {
        let mut scope = PersonalScope::default();
        let Some(user) = &self.user else { return scope };
        for grant in &user.grants {
            match (grant.role, &grant.scope) {
                (Role::Administrator, _) => scope.everywhere = true,
                (Role::RegionalCurator | Role::ConsiliumSecretary, Scope::Region { region }) => {
                    scope.regions.push(region.as_str().to_owned())
                }
                (Role::ConsiliumSecretary, Scope::Municipality { municipality, .. }) => {
                    scope.municipalities.push(*municipality)
                }
                // NGO operators see the families their NGO works with (not the register).
                (Role::NgoOperator, Scope::Ngo { ngo, .. }) => scope.ngos.push(*ngo),
                _ => {}
            }
        }
        scope
    }

    /// The NGO this viewer operates for in `region`, if any.
    pub fn ngo_in(&self, region: &str) -> Option<Uuid> {
        self.user
            .as_ref()?
            .grants
            .iter()
            .find_map(|g| match (&g.role, &g.scope) {
                (Role::NgoOperator, Scope::Ngo { region: r, ngo }) if r.as_str() == region => {
                    Some(*ngo)
                }
                _ => None,
            })
    }

    /// Every NGO this viewer operates for, with its region.
    pub fn ngos(&self) -> Vec<(RegionCode, Uuid)> {
        self.user.as_ref().map_or_else(Vec::new, |u| {
            u.grants
                .iter()
                .filter_map(|g| match (&g.role, &g.scope) {
                    (Role::NgoOperator, Scope::Ngo { region, ngo }) => Some((region.clone(), *ngo)),
                    _ => None,
                })
                .collect()
        })
    }

    /// Regions this viewer may register families in: those it registers people in, and
    /// its NGO's region for an NGO operator.
    pub fn family_regions(&self) -> Option<Vec<RegionCode>> {
        let mut regions = self.registration_regions()?;
        regions.extend(self.ngos().into_iter().map(|(region, _)| region));
        Some(regions)
    }

    /// Regions this viewer may register people in (curators and region-level secretaries;
    /// administrators anywhere: `None`).
    pub fn registration_regions(&self) -> Option<Vec<RegionCode>> {
        let user = self.user.as_ref()?;
        if user.has_role(Role::Administrator) {
            return None;
        }
        Some(
            user.grants
                .iter()
                .filter(|g| matches!(g.role, Role::RegionalCurator | Role::ConsiliumSecretary))
                .filter_map(|g| match &g.scope {
                    Scope::Region { region } => Some(region.clone()),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// The guard: finds the route's rule, ends expired sessions, and admits or refuses.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let Some(rule) = path.as_deref().and_then(|p| state.rules.find(&method, p)) else {
        // A method the route does not have (a client's mistake, answered as a missing
        // page); a route with no rule at all would be a bug.
        if path.as_deref().is_some_and(|p| state.rules.has_path(p)) {
            tracing::debug!(?path, %method, "method not served on this route");
        } else {
            tracing::error!(?path, %method, "route without an access rule");
        }
        return AppError::NotFound.into_response();
    };
    let (mut parts, body) = request.into_parts();
    let address = super::client_address(&parts);
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut user = None;
    if let Some(mut auth) = parts.extensions.get::<AuthSession>().cloned() {
        if let Some(signed_in) = auth.user.clone() {
            match session_still_valid(&auth, state.config.absolute_timeout).await {
                Ok(true) => user = Some(signed_in),
                Ok(false) => {
                    let _ = auth.logout().await;
                }
                Err(error) => return AppError::Unexpected(error).into_response(),
            }
        }
    }
    let viewer = Viewer {
        user: user.clone(),
        address,
        path: uri.clone(),
    };
    parts.extensions.insert(viewer.clone());
    let request = Request::from_parts(parts, body);
    match (rule, &user) {
        (Rule::Public, _) => next.run(request).await,
        (_, None) if crate::api::is_api(&uri) => AppError::Unauthorized.into_response(),
        (_, None) => {
            // A form sent after the session ended comes back to the home page after login.
            let next = if method == Method::GET {
                uri.as_str()
            } else {
                "/"
            };
            let target = format!("/vhod?next={}", urlencoding(next));
            Redirect::to(&target).into_response()
        }
        (Rule::SignedIn, Some(_)) => next.run(request).await,
        (Rule::Roles(roles), Some(user)) => {
            if roles.iter().any(|role| user.has_role(*role)) {
                next.run(request).await
            } else {
                if let Err(error) =
                    audit::record(&state, &viewer, audit::Action::Refused, None, None).await
                {
                    return AppError::Unexpected(error.into()).into_response();
                }
                AppError::Forbidden.into_response()
            }
        }
    }
}

/// Checks the absolute timeout and keeps the idle timeout sliding (the session is saved,
/// which pushes its expiry, at most once a minute).
async fn session_still_valid(
    auth: &AuthSession,
    absolute_timeout: time::Duration,
) -> anyhow::Result<bool> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let login_at: Option<i64> = auth.session.get(SESSION_LOGIN_AT).await?;
    let Some(login_at) = login_at else {
        return Ok(false);
    };
    if now - login_at > absolute_timeout.whole_seconds() {
        return Ok(false);
    }
    let last_seen: Option<i64> = auth.session.get(SESSION_LAST_SEEN).await?;
    if last_seen.is_none_or(|seen| now - seen >= 60) {
        auth.session.insert(SESSION_LAST_SEEN, now).await?;
    }
    Ok(true)
}

/// Percent-encodes a path for the `next` parameter.
pub fn urlencoding(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// A `next` target that stays on this site (a path, never `//host` or a scheme).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.contains(['\r', '\n']) =>
        {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}
