//! A signed-in browser for the tests: an app over a fresh database with the demo data, and a
//! client that keeps cookies, sends each form's CSRF token, and goes through the real login
//! (password, then the TOTP enrolment with a code computed from the QR page's secret).

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use opora_projections::{Runner, RunnerConfig};
use opora_store::{MasterKey, Vault};
use opora_tests::TestDb;
use opora_web::{AppConfig, Application};
use tower::ServiceExt;

pub const TEST_MASTER_KEY: &str = "dGVzdCBtYXN0ZXIga2V5IGZvciBvcG9yYSB0ZXN0cyE=";

/// The vault of a test database, with the tests' master key.
pub async fn test_vault(db: &TestDb) -> Vault {
    Vault::open_with(
        db.pool.clone(),
        MasterKey::from_base64(TEST_MASTER_KEY).unwrap(),
    )
    .await
    .unwrap()
}

pub struct TestApp {
    pub db: TestDb,
    pub app: axum::Router,
    pub vault: Vault,
}

impl TestApp {
    /// Reference data, the demo organisations, users and people, all projected.
    pub async fn with_demo() -> Self {
        Self::with_demo_config(AppConfig::default()).await
    }

    pub async fn with_demo_config(config: AppConfig) -> Self {
        Self::with_demo_on(TestDb::new().await, config).await
    }

    /// The same, on a database of the caller's.
    pub async fn with_demo_on(db: TestDb, config: AppConfig) -> Self {
        opora_web::seed::load_reference(&db.log).await.unwrap();
        let vault = test_vault(&db).await;
        opora_web::demo::load(&db.log, &vault).await.unwrap();
        let app = Application::build(db.log.clone(), vault.clone(), config);
        let test = Self { db, app, vault };
        test.project().await;
        test
    }

    /// Applies everything in the log to every projection.
    pub async fn project(&self) {
        let runner = Runner::new(self.db.log.clone(), RunnerConfig::default());
        for projection in opora_projections::all() {
            runner.catch_up(projection.as_ref()).await.unwrap();
        }
    }

    /// A new client (no cookies) that knows the TOTP seeds `other` enrolled.
    pub fn client_with(&self, other: &Client) -> Client {
        let mut client = self.client();
        client.secrets = other.secrets.clone();
        client
    }

    pub fn client(&self) -> Client {
        Client {
            app: self.app.clone(),
            cookies: HashMap::new(),
            csrf: None,
            api_csrf: None,
            secrets: HashMap::new(),
        }
    }
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as it came (a downloaded XLSX file is not text).
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub struct Client {
    app: axum::Router,
    pub cookies: HashMap<String, String>,
    pub csrf: Option<String>,
    /// The CSRF token the API gave (`GET /api/v1/me`).
    pub api_csrf: Option<String>,
    /// TOTP seeds of the users this client enrolled.
    pub secrets: HashMap<String, Vec<u8>>,
}

fn between<'a>(body: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = body.find(start)? + start.len();
    let to = body[from..].find(end)? + from;
    Some(&body[from..to])
}

impl Client {
    pub async fn request(
        &mut self,
        method: Method,
        uri: &str,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Response {
        self.request_bytes(method, uri, body.map(String::into_bytes), extra)
            .await
    }

    /// The same with a body of any bytes (broken UTF-8, say).
    pub async fn request_bytes(
        &mut self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(header::COOKIE, cookie);
        }
        let typed = extra
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = self
            .app
            .clone()
            .oneshot(
                request
                    .body(body.map_or_else(Body::empty, Body::from))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for cookie in headers.get_all(header::SET_COOKIE) {
            let cookie = cookie.to_str().unwrap();
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let expired = cookie.contains("Max-Age=0") || value.is_empty();
            if expired {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(token) = between(&body, "name=\"csrf\" value=\"", "\"") {
            if !token.is_empty() {
                self.csrf = Some(token.to_owned());
            }
        }
        Response {
            status,
            headers,
            body,
            bytes: bytes.to_vec(),
        }
    }

    /// A JSON API call: the body as `application/json`, the session's CSRF token (from
    /// `GET /api/v1/me`) in `X-CSRF-Token`.
    pub async fn api(
        &mut self,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> Response {
        if self.api_csrf.is_none() {
            let me = self.request(Method::GET, "/api/v1/me", None, &[]).await;
            if let Ok(me) = serde_json::from_str::<serde_json::Value>(&me.body) {
                self.api_csrf = me["csrf_token"].as_str().map(str::to_owned);
            }
        }
        let token = self.api_csrf.clone().unwrap_or_default();
        let body = body.map(serde_json::Value::to_string);
        self.request(
            method,
            uri,
            body,
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
        )
        .await
    }

    pub async fn get(&mut self, uri: &str) -> Response {
        self.request(Method::GET, uri, None, &[]).await
    }

    /// A form post with this client's current CSRF token.
    pub async fn post(&mut self, uri: &str, fields: &[(&str, &str)]) -> Response {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let token = self.csrf.clone().unwrap_or_default();
        all.push(("csrf", &token));
        self.post_raw(uri, &all).await
    }

    /// A form post with exactly these fields (no token added).
    pub async fn post_raw(&mut self, uri: &str, fields: &[(&str, &str)]) -> Response {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request(Method::POST, uri, Some(body), &[]).await
    }

    /// A multipart form (a file upload); the CSRF token goes in the address, as the page's
    /// form does.
    pub async fn post_file(
        &mut self,
        uri: &str,
        fields: &[(&str, &str)],
        file: (&str, &[u8]),
    ) -> Response {
        let boundary = "----opora-test-boundary";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                file.0
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.1);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let token = self.csrf.clone().unwrap_or_default();
        let uri = format!("{uri}?csrf={token}");
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type);
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(header::COOKIE, cookie);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Response {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes: bytes.to_vec(),
        }
    }

    pub fn session_id(&self) -> Option<String> {
        self.cookies.get("opora_session").cloned()
    }

    /// Signs in with the demo password; enrols or answers the second factor when asked.
    pub async fn login(&mut self, login: &str) -> Response {
        self.login_with(login, opora_web::demo::DEMO_PASSWORD).await
    }

    pub async fn login_with(&mut self, login: &str, password: &str) -> Response {
        self.api_csrf = None;
        self.get("/vhod").await;
        let response = self
            .post("/vhod", &[("login", login), ("password", password)])
            .await;
        let response = self.second_factor(login, response).await;
        if response.status == StatusCode::SEE_OTHER && !response.location().starts_with("/vhod") {
            // As a browser would: the next page brings the new session's CSRF token.
            self.get("/").await;
        }
        response
    }

    async fn second_factor(&mut self, login: &str, response: Response) -> Response {
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
        match response.location() {
            "/vhod/kod/podklyuchenie" => {
                let page = self.get("/vhod/kod/podklyuchenie").await;
                let secret = between(&page.body, "<code id=\"secret\">", "</code>").unwrap();
                let secret = totp_rs::Secret::Encoded(secret.to_owned())
                    .to_bytes()
                    .unwrap();
                let code = opora_web::auth::totp::code_at(&secret, login, now).unwrap();
                self.secrets.insert(login.to_owned(), secret);
                self.post("/vhod/kod/podklyuchenie", &[("code", &code)])
                    .await
            }
            "/vhod/kod" => {
                self.get("/vhod/kod").await;
                // The next step's code: the current one may have been used already.
                let secret = self.secrets[login].clone();
                let code = opora_web::auth::totp::code_at(&secret, login, now + 30).unwrap();
                self.post("/vhod/kod", &[("code", &code)]).await
            }
            _ => response,
        }
    }
}
