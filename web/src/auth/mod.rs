//! Authentication: accounts read from the `accounts` projection, secrets from
//! `access.credential`, server-side sessions in PostgreSQL (tower-sessions) driven by
//! axum-login, a second factor (TOTP) for the roles that see children's personal data, and
//! throttling of failed attempts.

pub mod csrf;
pub mod guard;
pub mod totp;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum_login::{AuthUser, AuthnBackend};
use opora_domain::access::{Grant, Login, Role};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// A session ends this long after the last request (the default of
/// `AppConfig::idle_timeout`).
pub const IDLE_TIMEOUT: time::Duration = time::Duration::minutes(30);
/// And at the latest this long after login, however active (the default of
/// `AppConfig::absolute_timeout`).
pub const ABSOLUTE_TIMEOUT: time::Duration = time::Duration::hours(12);
/// The window and the limits of failed attempts before login is refused for a while.
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;
pub const MAX_FAILURES_PER_LOGIN: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 30;
/// Password length bounds (ASVS 5.0 6.2.1 asks at least 8; we ask 12).
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Session keys.
pub const SESSION_LOGIN_AT: &str = "login_at";
pub const SESSION_LAST_SEEN: &str = "last_seen";
pub const SESSION_PENDING: &str = "pending";

/// A signed-in user as every request sees it.
#[derive(Clone)]
pub struct SessionUser {
    pub id: Uuid,
    pub login: String,
    pub display_name: String,
    pub grants: Vec<Grant>,
    pub second_factor: bool,
    auth_hash: Vec<u8>,
}

impl std::fmt::Debug for SessionUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionUser")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl SessionUser {
    pub fn requires_second_factor(&self) -> bool {
        self.grants.iter().any(|g| g.role.requires_second_factor())
    }
    pub fn has_role(&self, role: Role) -> bool {
        self.grants.iter().any(|g| g.role == role)
    }
}

impl AuthUser for SessionUser {
    type Id = Uuid;
    fn id(&self) -> Uuid {
        self.id
    }
    /// Changes when the password changes or the user signs out everywhere: every session
    /// made before then stops working.
    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

#[derive(Clone, Debug)]
pub struct Credentials {
    pub login: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("password hashing task failed")]
    Hashing,
}

#[derive(Clone)]
pub struct Backend {
    pool: PgPool,
    users: std::sync::Arc<Users>,
}

/// How long a user loaded for a request may serve the next requests (axum-login loads the
/// user on every request, to check the session's auth hash against theirs).
pub const USER_KEPT: Duration = Duration::from_secs(1);

/// Users loaded in the last [`USER_KEPT`]. Every change this server makes to an account
/// (a form or a JSON call that writes: blocking, roles, a password, signing out everywhere)
/// forgets them all once the projections have it ([`Users::forget`]); a change made by
/// another process (the command line) is seen within [`USER_KEPT`].
#[derive(Default)]
pub struct Users {
    held: std::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Bumped by every [`Users::forget`]: a load that began before it is not kept.
    generation: u64,
    users: std::collections::HashMap<Uuid, (std::time::Instant, Option<SessionUser>)>,
}

/// Users kept at most (full, everything is forgotten).
const USERS_KEPT: usize = 10_000;

impl Users {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user loaded less than [`USER_KEPT`] ago, and the generation to keep a new load
    /// under.
    fn get(&self, id: Uuid) -> (Option<Option<SessionUser>>, u64) {
        let held = self.lock();
        let fresh = held
            .users
            .get(&id)
            .filter(|(at, _)| at.elapsed() < USER_KEPT)
            .map(|(_, user)| user.clone());
        (fresh, held.generation)
    }

    fn put(
        &self,
        id: Uuid,
        generation: u64,
        loaded_at: std::time::Instant,
        user: Option<SessionUser>,
    ) {
        let mut held = self.lock();
        if held.generation != generation {
            return;
        }
        if held.users.len() >= USERS_KEPT {
            held.users.clear();
        }
        held.users.insert(id, (loaded_at, user));
    }

    /// Forgets every user: the next request of each loads them again.
    pub fn forget(&self) {
        let mut held = self.lock();
        held.generation += 1;
        held.users.clear();
    }
}

impl Backend {
    pub fn new(pool: PgPool, users: std::sync::Arc<Users>) -> Self {
        Self { pool, users }
    }

    async fn load(&self, id: Uuid) -> Result<Option<(SessionUser, String)>, AuthError> {
        let row = sqlx::query(
            "SELECT a.login, a.display_name, a.grants, a.second_factor, c.password_hash, \
                    c.session_epoch \
               FROM accounts.user_account a JOIN access.credential c ON c.user_id = a.id \
              WHERE a.id = $1 AND NOT a.disabled",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let password_hash: String = row.try_get("password_hash")?;
        let epoch: i32 = row.try_get("session_epoch")?;
        let mut hasher = Sha256::new();
        hasher.update(password_hash.as_bytes());
        hasher.update(epoch.to_be_bytes());
        let Json(grants): Json<Vec<Grant>> = row.try_get("grants")?;
        Ok(Some((
            SessionUser {
                id,
                login: row.try_get("login")?,
                display_name: row.try_get("display_name")?,
                grants,
                second_factor: row.try_get("second_factor")?,
                auth_hash: hasher.finalize().to_vec(),
            },
            password_hash,
        )))
    }
}

/// An Argon2id hash of a password no one has, checked when the login is unknown so that
/// the answer takes as long as for a known one.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub async fn verify_password(password: String, hash: String) -> Result<bool, AuthError> {
    tokio::task::spawn_blocking(move || password_auth::verify_password(password, &hash).is_ok())
        .await
        .map_err(|_| AuthError::Hashing)
}

async fn verify_against_nothing(password: String) -> Result<(), AuthError> {
    tokio::task::spawn_blocking(move || {
        let hash =
            DUMMY_HASH.get_or_init(|| password_auth::generate_hash(Uuid::new_v4().to_string()));
        let _ = password_auth::verify_password(password, hash);
    })
    .await
    .map_err(|_| AuthError::Hashing)
}

pub async fn hash_password(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || password_auth::generate_hash(password))
        .await
        .map_err(|_| AuthError::Hashing)
}

/// What is wrong with a new password, if anything (a message key).
pub fn password_problem(password: &str, login: &str) -> Option<&'static str> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Some("password-too-short")
    } else if chars > MAX_PASSWORD_CHARS {
        Some("password-too-long")
    } else if password.to_lowercase().contains(&login.to_lowercase()) {
        Some("password-contains-login")
    } else {
        None
    }
}

impl AuthnBackend for Backend {
    type User = SessionUser;
    type Credentials = Credentials;
    type Error = AuthError;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<SessionUser>, AuthError> {
        let Ok(login) = Login::parse(&creds.login) else {
            verify_against_nothing(creds.password).await?;
            return Ok(None);
        };
        match self.load(login.user_id()).await? {
            None => {
                verify_against_nothing(creds.password).await?;
                Ok(None)
            }
            Some((user, hash)) => Ok(verify_password(creds.password, hash).await?.then_some(user)),
        }
    }

    async fn get_user(&self, id: &Uuid) -> Result<Option<SessionUser>, AuthError> {
        let (kept, generation) = self.users.get(*id);
        if let Some(user) = kept {
            return Ok(user);
        }
        let loaded_at = std::time::Instant::now();
        let user = self.load(*id).await?.map(|(user, _)| user);
        self.users.put(*id, generation, loaded_at, user.clone());
        Ok(user)
    }
}

pub type AuthSession = axum_login::AuthSession<Backend>;

/// Sets (or replaces) a user's password; every session of the user ends.
pub async fn set_password(pool: &PgPool, user_id: Uuid, password: &str) -> Result<(), AuthError> {
    let hash = hash_password(password.to_owned()).await?;
    sqlx::query(
        "INSERT INTO access.credential (user_id, password_hash) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, \
                 password_set_at = now(), session_epoch = access.credential.session_epoch + 1",
    )
    .bind(user_id)
    .bind(hash)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends every session of a user (their auth hash changes).
pub async fn sign_out_everywhere(pool: &PgPool, user_id: Uuid) -> Result<(), AuthError> {
    sqlx::query(
        "UPDATE access.credential SET session_epoch = session_epoch + 1 WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The normalised form of a typed login, for throttling and the attempt log (whether or not
/// such an account exists).
pub fn attempt_key(raw: &str) -> String {
    raw.trim().to_lowercase().chars().take(64).collect()
}

/// Records a login attempt (every one, successful or not).
pub async fn record_attempt(
    pool: &PgPool,
    login: &str,
    address: &str,
    user_id: Option<Uuid>,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access.login_attempt (login, address, user_id, outcome) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(attempt_key(login))
    .bind(address)
    .bind(user_id)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

/// Outcomes that count as failures for throttling.
pub const FAILED_OUTCOMES: &[&str] = &["bad_password", "bad_code"];

/// True when the login or the address has failed too often recently.
pub async fn throttled(pool: &PgPool, login: &str, address: &str) -> Result<bool, sqlx::Error> {
    let (by_login, by_address): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE login = $1), count(*) FILTER (WHERE address = $2) \
           FROM access.login_attempt \
          WHERE at > now() - make_interval(mins => $3::int) AND outcome = ANY($4) \
            AND (login = $1 OR address = $2)",
    )
    .bind(attempt_key(login))
    .bind(address)
    .bind(THROTTLE_WINDOW_MINUTES as i32)
    .bind(FAILED_OUTCOMES)
    .fetch_one(pool)
    .await?;
    Ok(by_login >= MAX_FAILURES_PER_LOGIN || by_address >= MAX_FAILURES_PER_ADDRESS)
}

/// The client's address: the socket peer, or the last `X-Forwarded-For` hop when
/// `OPORA_TRUST_PROXY=1` (the server runs behind a reverse proxy that sets it).
pub fn client_address(parts: &Parts) -> String {
    if std::env::var("OPORA_TRUST_PROXY").is_ok_and(|v| v == "1") {
        if let Some(forwarded) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
        {
            return forwarded.trim().chars().take(64).collect();
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Deletes expired sessions now and then, for as long as the server runs.
pub fn spawn_session_cleanup(pool: PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = sqlx::query("DELETE FROM access.session WHERE expiry_date < now()")
                .execute(&pool)
                .await
            {
                tracing::warn!(%error, "could not delete expired sessions");
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    })
}
