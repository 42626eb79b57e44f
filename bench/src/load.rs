//! A realistic mixed load on a real `opora serve` process, for `opora-bench mixed` and
//! `opora-bench kill`.
//!
//! The server is this binary run again as `opora-bench opora serve --demo …` (the same code
//! as `opora serve`, see `main`), so that it can be killed with SIGKILL and its memory read
//! from `/proc`, apart from the load's own. Its trusted-adult notifications go to a webhook
//! receiver in this process (`signals::hook`).
//!
//! Four actors, each at its own pace, each remembering what the server acknowledged:
//! - the app's backend raises «Заступник» signals (`POST /ingest/v1/signals`, 201 → the
//!   signal's id);
//! - `curator16` adds an action item to the cases of the register's first page in turn
//!   (`POST /api/v1/cases/{id}/facts` with a `command_id`, 200);
//! - `edu-kazan` files the Friday report (`POST /api/v1/weekly/reports`, 201);
//! - `analyst` reads the dashboards and the signal console (each page timed by its path);
//! - the trusted circle settles each signal once 20 newer ones are open.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::signals::{hook, Received};

/// The load's own master key (the database is the run's own).
const KEY: &str = "b3BvcmEtYmVuY2gtbWl4ZWQta2V5LTAxMjM0NTY3ODk=";
const PASSWORD: &str = opora_web::demo::DEMO_PASSWORD;
const INGEST_KEY: &str = opora_web::demo::signals::DEMO_INGEST_KEY;
/// How long the first start may take: it loads the demo (the pilot regions' cases and a
/// year of aid) and projects it.
const FIRST_START: Duration = Duration::from_secs(900);
const RESTART: Duration = Duration::from_secs(300);
/// Signals left open at any time; older ones are settled by the trusted circle.
const OPEN_SIGNALS: usize = 20;

/// What a run against a real server needs: a pool on its database, the webhook receiver,
/// how to start the server, and a folder for the server's logs.
pub struct Rig {
    pub pool: sqlx::PgPool,
    pub version: String,
    pub dir: PathBuf,
    pub received: Arc<Received>,
    pub spec: ServerSpec,
    stop: watch::Sender<bool>,
    hook: tokio::task::JoinHandle<()>,
}

impl Rig {
    /// Everything but the server; `name` names the run (`kill`, `mixed`).
    pub async fn new(
        name: &str,
        admin_url: &str,
        database: &str,
        options: &sqlx::postgres::PgConnectOptions,
    ) -> Result<Self> {
        let pool = crate::pool(options, 4).await?;
        let version = crate::server_version(&pool).await?;
        let dir = run_dir(name)?;
        let (stop, stopped) = watch::channel(false);
        let (received, hook_url, hook) = receiver(stopped).await?;
        let spec = ServerSpec {
            database_url: database_url(admin_url, database)?,
            port: free_port()?,
            hook_url,
            hook_secret: received.secret.clone(),
            dir: dir.clone(),
        };
        eprintln!(
            "{name}: starting the server (demo data) on port {}",
            spec.port
        );
        Ok(Self {
            pool,
            version,
            dir,
            received,
            spec,
            stop,
            hook,
        })
    }

    /// Stops the webhook receiver; keeps the servers' logs if the run failed.
    pub async fn finish(self, failed: bool) {
        let _ = self.stop.send(true);
        let _ = self.hook.await;
        if failed {
            eprintln!("the servers' logs are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `opora serve` in a process of its own.
pub struct Server {
    child: tokio::process::Child,
    pub base: String,
    pub log: PathBuf,
}

/// What every start of the server shares: the database, the port, the webhook.
pub struct ServerSpec {
    pub database_url: String,
    pub port: u16,
    pub hook_url: String,
    pub hook_secret: String,
    pub dir: PathBuf,
}

impl ServerSpec {
    pub async fn start(&self, first: bool, n: usize) -> Result<Server> {
        let log = self.dir.join(format!("opora-{n}.log"));
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["opora", "serve", "--demo", "--bind"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--notify")
            .arg(format!("webhook:{}", self.hook_url))
            .env("DATABASE_URL", &self.database_url)
            .env("OPORA_MASTER_KEY", KEY)
            .env("OPORA_WEBHOOK_SECRET", &self.hook_secret)
            .env("OPORA_DATA_DIR", &self.dir)
            .env("RUST_LOG", "warn")
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server")?;
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{}", self.port),
            log,
        };
        server
            .wait_ready(if first { FIRST_START } else { RESTART })
            .await?;
        Ok(server)
    }
}

impl Server {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before it was ready; its log: {}",
                    self.log.display()
                );
            }
            if let Ok(response) = http.get(format!("{}/readyz", self.base)).send().await {
                if response.status() == StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the server was not ready within {} s; its log: {}",
                    limit.as_secs(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as the kernel's OOM killer or a power cut would.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await.context("SIGKILL")
    }

    /// The server's resident set now, and its peak (`VmRSS`, `VmHWM`), in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}

/// The webhook receiver, on a port of its own for the whole run (it outlives restarts).
pub(crate) async fn receiver(
    stopped: watch::Receiver<bool>,
) -> Result<(Arc<Received>, String, tokio::task::JoinHandle<()>)> {
    let secret = format!("bench-{}", Uuid::new_v4().simple());
    let received = Arc::new(Received {
        secret,
        ..Received::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(Arc::clone(&received));
    let mut stop = stopped;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok((received, url, task))
}

/// A free port on 127.0.0.1 (the server keeps it across restarts).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The URL of database `name` on the server of `admin_url`.
fn database_url(admin_url: &str, name: &str) -> Result<String> {
    let mut url = reqwest::Url::parse(admin_url).context("DATABASE_URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

// ---------------------------------------------------------------------------------------
// A signed-in user over HTTP
// ---------------------------------------------------------------------------------------

/// A user's session: the cookies, as a browser keeps them, and the API's CSRF token.
pub struct Session {
    http: reqwest::Client,
    base: String,
    cookies: opora_web::simulate::CookieJar,
    csrf: String,
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

fn csrf_of(html: &str) -> Result<String> {
    Ok(between(html, "name=\"csrf\" value=\"", "\"")
        .context("the page has no CSRF field")?
        .to_owned())
}

impl Session {
    pub fn client() -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?)
    }

    /// Signs `login` in with the demo password, enrolling the second factor where the role
    /// needs it, and fetches the API's CSRF token.
    pub async fn sign_in(base: &str, login: &str) -> Result<Self> {
        let mut session = Self {
            http: Self::client()?,
            base: base.to_owned(),
            cookies: Default::default(),
            csrf: String::new(),
        };
        let (_, page) = session.get("/vhod").await?;
        let form = [
            ("login", login),
            ("password", PASSWORD),
            ("csrf", &csrf_of(&page)?),
        ];
        let (status, location) = session.form("/vhod", &form).await?;
        let location = match location.as_str() {
            "/vhod/kod/podklyuchenie" => {
                let (_, page) = session.get(&location).await?;
                let secret = between(&page, "<code id=\"secret\">", "</code>")
                    .context("the enrolment page shows no secret")?;
                let secret = totp_rs::Secret::Encoded(secret.to_owned())
                    .to_bytes()
                    .map_err(|e| anyhow::anyhow!("TOTP secret: {e:?}"))?;
                let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
                let code =
                    opora_web::auth::totp::code_at(&secret, login, now).context("TOTP code")?;
                let csrf = csrf_of(&page)?;
                let form = [("code", code.as_str()), ("csrf", csrf.as_str())];
                session.form(&location, &form).await?.1
            }
            _ if status.is_redirection() => location,
            _ => bail!("{login} could not sign in (HTTP {status})"),
        };
        if location.starts_with("/vhod") {
            bail!("{login} could not sign in (sent back to {location})");
        }
        let (status, me) = session.get("/api/v1/me").await?;
        let me: Value =
            serde_json::from_str(&me).with_context(|| format!("/api/v1/me: {status}"))?;
        session.csrf = me["csrf_token"]
            .as_str()
            .context("/api/v1/me has no csrf_token")?
            .to_owned();
        Ok(session)
    }

    /// The `Cookie` header a browser would send.
    pub fn cookie_header(&self) -> String {
        self.cookies.header()
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        self.cookies.keep(response);
    }

    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String)> {
        let (status, _, body) = self.get_timed(path).await?;
        Ok((status, body))
    }

    /// The same, with the server's own time over the request (its `Server-Timing`), in ms.
    pub async fn get_timed(&mut self, path: &str) -> Result<(StatusCode, Option<f64>, String)> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await?;
        self.keep_cookies(&response);
        let status = response.status();
        let server_ms = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|v| v.parse::<f64>().ok());
        Ok((status, server_ms, response.text().await?))
    }

    async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Result<(StatusCode, String)> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await?;
        self.keep_cookies(&response);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((response.status(), location))
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Result<(StatusCode, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("x-csrf-token", &self.csrf)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await?;
        self.keep_cookies(&response);
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

// ---------------------------------------------------------------------------------------
// The actors
// ---------------------------------------------------------------------------------------

/// What the server said it had done.
#[derive(Default)]
pub struct Acked {
    /// Signals answered 201: the id, and when the request was sent.
    pub signals: Vec<(Uuid, Instant)>,
    /// Commands answered 201 (case facts, weekly filings), by `command_id`.
    pub commands: Vec<(&'static str, Uuid)>,
}

/// Latencies (ms) of answers, by kind of call, and the answers by status.
#[derive(Default)]
pub struct Tally {
    pub ms: BTreeMap<&'static str, Vec<f64>>,
    /// The server's own time over each page (`Server-Timing`), in ms.
    pub server_ms: BTreeMap<&'static str, Vec<f64>>,
    pub statuses: BTreeMap<(&'static str, u16), u64>,
    /// Calls that got no answer at all (the server was down, or a connection dropped).
    pub unanswered: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn answered(&mut self, kind: &'static str, status: StatusCode, started: Instant) {
        self.ms
            .entry(kind)
            .or_default()
            .push(started.elapsed().as_secs_f64() * 1000.0);
        *self.statuses.entry((kind, status.as_u16())).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.unanswered.values().sum::<u64>()
    }

    /// Answers that are errors for a load held on a healthy server: any 5xx, and anything
    /// else than the call's success or the refusals a real user meets (a stale form, a
    /// signal rate limit).
    pub fn errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|((_, status), _)| !matches!(status, 200 | 201 | 409 | 422 | 429))
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.unanswered.values().sum::<u64>()
    }

    pub fn json(&self) -> Value {
        let mut by_kind = serde_json::Map::new();
        for (kind, ms) in &self.ms {
            let mut sorted = ms.clone();
            sorted.sort_by(f64::total_cmp);
            let statuses: serde_json::Map<String, Value> = self
                .statuses
                .iter()
                .filter(|((k, _), _)| k == kind)
                .map(|((_, s), n)| (s.to_string(), json!(n)))
                .collect();
            by_kind.insert(
                (*kind).to_owned(),
                json!({
                    "answers": sorted.len(),
                    "p50_ms": crate::round3(crate::percentile(&sorted, 0.50)),
                    "p99_ms": crate::round3(crate::percentile(&sorted, 0.99)),
                    "statuses": statuses,
                    "unanswered": self.unanswered.get(kind).copied().unwrap_or(0),
                }),
            );
            if let Some(server) = self.server_ms.get(kind) {
                let mut sorted = server.clone();
                sorted.sort_by(f64::total_cmp);
                by_kind[*kind]["server_p50_ms"] =
                    json!(crate::round3(crate::percentile(&sorted, 0.50)));
                by_kind[*kind]["server_p99_ms"] =
                    json!(crate::round3(crate::percentile(&sorted, 0.99)));
            }
        }
        Value::Object(by_kind)
    }

    /// The p99 over every kind of call that `pick` picks, as the client timed them.
    pub fn p99(&self, pick: impl Fn(&str) -> bool) -> f64 {
        Self::p99_of(&self.ms, pick)
    }

    /// The same, as the server timed them (pages only).
    pub fn server_p99(&self, pick: impl Fn(&str) -> bool) -> f64 {
        Self::p99_of(&self.server_ms, pick)
    }

    fn p99_of(ms: &BTreeMap<&'static str, Vec<f64>>, pick: impl Fn(&str) -> bool) -> f64 {
        let mut sorted: Vec<f64> = ms
            .iter()
            .filter(|(kind, _)| pick(kind))
            .flat_map(|(_, ms)| ms.iter().copied())
            .collect();
        sorted.sort_by(f64::total_cmp);
        crate::percentile(&sorted, 0.99)
    }
}

/// The load's shared state: what was acknowledged, what was measured, whether to go on.
pub struct Load {
    pub acked: Mutex<Acked>,
    pub tally: Mutex<Tally>,
}

impl Load {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            acked: Mutex::new(Acked::default()),
            tally: Mutex::new(Tally::default()),
        })
    }

    fn note(&self, kind: &'static str, answer: &Result<StatusCode>, started: Instant) {
        self.note_timed(kind, answer, started, None);
    }

    /// The same, with the server's own time over the call (pages), under the same lock.
    fn note_timed(
        &self,
        kind: &'static str,
        answer: &Result<StatusCode>,
        started: Instant,
        server_ms: Option<f64>,
    ) {
        if let Ok(mut tally) = self.tally.lock() {
            match answer {
                Ok(status) => tally.answered(kind, *status, started),
                Err(_) => *tally.unanswered.entry(kind).or_default() += 1,
            }
            if let (Ok(_), Some(ms)) = (answer, server_ms) {
                tally.server_ms.entry(kind).or_default().push(ms);
            }
        }
    }

    fn ack_signal(&self, id: Uuid, sent: Instant) {
        if let Ok(mut acked) = self.acked.lock() {
            acked.signals.push((id, sent));
        }
    }

    fn ack_command(&self, kind: &'static str, id: Uuid) {
        if let Ok(mut acked) = self.acked.lock() {
            acked.commands.push((kind, id));
        }
    }
}

/// Paces: calls per second of each actor.
#[derive(Clone, Copy)]
pub struct Rates {
    pub signals: f64,
    pub facts: f64,
    pub filings: f64,
    pub pages: f64,
}

/// Waits until the next tick of a `per_second` pace, or the stop.
async fn pace(next: &mut Instant, per_second: f64, stop: &mut watch::Receiver<bool>) -> bool {
    *next += Duration::from_secs_f64(1.0 / per_second.max(0.01));
    let now = Instant::now();
    if *next < now {
        // Behind (the server was away): do not burst to catch up.
        *next = now;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep_until(*next) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

/// Starts the four actors against `base`; they stop when `stop` turns true.
pub async fn start(
    base: &str,
    load: &Arc<Load>,
    rates: Rates,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();

    // The app's backend: a child of Kazan with one trusted adult.
    let http = Session::client()?;
    let child = format!("load-{}", Uuid::now_v7().simple());
    let response = http
        .put(format!("{base}/ingest/v1/children/{child}"))
        .bearer_auth(INGEST_KEY)
        .header("idempotency-key", Uuid::now_v7().to_string())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(
            json!({"region": "16", "city": "Казань",
                   "trusted_adults": [{"id": "adult-1", "channels": ["push"]}]})
            .to_string(),
        )
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "the child's registration was refused: {} {}",
            response.status(),
            response.text().await?
        );
    }
    {
        let (load, base, mut stop) = (load.clone(), base.to_owned(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now();
            // The trusted circle settles each signal a little later, as most are settled,
            // so that the operators' queue holds what a real one holds.
            let mut open: std::collections::VecDeque<Uuid> = std::collections::VecDeque::new();
            while pace(&mut next, rates.signals, &mut stop).await {
                let now = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                if open.len() >= OPEN_SIGNALS {
                    if let Some(signal) = open.pop_front() {
                        let started = Instant::now();
                        let answer = http
                            .post(format!("{base}/ingest/v1/signals/{signal}/resolution"))
                            .bearer_auth(INGEST_KEY)
                            .header("idempotency-key", format!("settle-{signal}"))
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(json!({"adult": "adult-1", "at": now}).to_string())
                            .send()
                            .await
                            .map(|r| r.status())
                            .map_err(anyhow::Error::from);
                        load.note("signal_resolution", &answer, started);
                    }
                }
                let started = Instant::now();
                let answer = http
                    .post(format!("{base}/ingest/v1/signals"))
                    .bearer_auth(INGEST_KEY)
                    .header("idempotency-key", Uuid::now_v7().to_string())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(
                        json!({"child": child, "pressed_at": now,
                               "latitude": 55.7963, "longitude": 49.1088, "drill": true})
                        .to_string(),
                    )
                    .send()
                    .await;
                let status = match answer {
                    Ok(response) => {
                        let status = response.status();
                        if status == StatusCode::CREATED {
                            if let Some(id) = response
                                .text()
                                .await
                                .ok()
                                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                                .and_then(|v| v["signal"].as_str()?.parse().ok())
                            {
                                load.ack_signal(id, started);
                                open.push_back(id);
                            }
                        }
                        Ok(status)
                    }
                    Err(e) => Err(anyhow::Error::from(e)),
                };
                load.note("signal", &status, started);
            }
        }));
    }

    // The curator: action items on a case of the register.
    let mut curator = Session::sign_in(base, "curator16").await?;
    let (status, register) = curator.get("/api/v1/register").await?;
    let register: Value = serde_json::from_str(&register)
        .with_context(|| format!("/api/v1/register answered {status}"))?;
    let cases = cases_of(&register);
    anyhow::ensure!(!cases.is_empty(), "the curator's register is empty");
    {
        let (load, mut stop) = (load.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now();
            let mut n = 0_u64;
            while pace(&mut next, rates.facts, &mut stop).await {
                n += 1;
                let started = Instant::now();
                let case = cases[n as usize % cases.len()];
                let answer = fact(&mut curator, case, n).await;
                if let Ok((StatusCode::OK | StatusCode::CREATED, id)) = &answer {
                    load.ack_command("case-fact", *id);
                }
                load.note("case_fact", &answer.map(|(s, _)| s), started);
            }
        }));
    }

    // The municipal department: this week's report, again and again (each supersedes).
    let mut department = Session::sign_in(base, "edu-kazan").await?;
    let week = open_week(&mut department).await?;
    {
        let (load, mut stop) = (load.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now();
            let mut n = 0_u32;
            while pace(&mut next, rates.filings, &mut stop).await {
                n += 1;
                let started = Instant::now();
                let id = Uuid::now_v7();
                let answer = department
                    .post_json("/api/v1/weekly/reports", &filing(&week, id, n))
                    .await
                    .map(|(s, _)| s);
                if matches!(answer, Ok(StatusCode::CREATED)) {
                    load.ack_command("weekly-filing", id);
                }
                load.note("weekly_filing", &answer, started);
            }
        }));
    }

    // The analyst: the dashboards and the register, round and round.
    let mut analyst = Session::sign_in(base, "analyst").await?;
    {
        let (load, mut stop) = (load.clone(), stop.clone());
        let pages = [
            "/monitoring/vyzov",
            "/monitoring/vyzov/16",
            "/monitoring/zastupnik",
            "/monitoring/zastupnik/16",
            "/monitoring/vyzov?na=2025-10-01",
            "/zastupnik/signaly",
        ];
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now();
            let mut n = 0;
            while pace(&mut next, rates.pages, &mut stop).await {
                let started = Instant::now();
                let page = pages[n % pages.len()];
                let answer = analyst.get_timed(page).await;
                let server_ms = answer.as_ref().ok().and_then(|(_, ms, _)| *ms);
                load.note_timed(page, &answer.map(|(s, _, _)| s), started, server_ms);
                n += 1;
            }
        }));
    }
    Ok(tasks)
}

/// The cases on the register's first page.
fn cases_of(register: &Value) -> Vec<Uuid> {
    register["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["id"].as_str()?.parse().ok())
        .collect()
}

/// One action item on `case`, made for the case as just read.
async fn fact(curator: &mut Session, case: Uuid, n: u64) -> Result<(StatusCode, Uuid)> {
    let (status, detail) = curator.get(&format!("/api/v1/cases/{case}")).await?;
    if status != StatusCode::OK {
        return Ok((status, Uuid::nil()));
    }
    let detail: Value = serde_json::from_str(&detail)?;
    let entries = detail["case"]["entries"]
        .as_i64()
        .or(detail["entries"].as_i64())
        .context("the case has no entries count")?;
    let today = opora_web::i18n::today_in("Europe/Moscow");
    let id = Uuid::now_v7();
    let (status, _) = curator
        .post_json(
            &format!("/api/v1/cases/{case}/facts"),
            &json!({"action": "item", "on": today.to_string(), "entries": entries,
                    "command_id": id, "item_action": format!("Проверка под нагрузкой № {n}"),
                    "executor": "Куратор", "due": (today + time::Duration::days(30)).to_string()}),
        )
        .await?;
    Ok((status, id))
}

/// The week a report can be filed for now: this week's Friday, else last week's.
async fn open_week(department: &mut Session) -> Result<String> {
    let today = opora_web::i18n::today_in("Europe/Moscow");
    let ahead = (5 + 7 - today.weekday().number_from_monday() as i64) % 7;
    let this = today + time::Duration::days(ahead);
    for week in [this, this - time::Duration::days(7)] {
        let (status, body) = department
            .post_json(
                "/api/v1/weekly/reports",
                &filing(&week.to_string(), Uuid::now_v7(), 0),
            )
            .await?;
        if status == StatusCode::CREATED {
            return Ok(week.to_string());
        }
        eprintln!("load: the week of {week} takes no report ({status}: {body})");
    }
    bail!("edu-kazan can file for neither this week nor the last")
}

/// The `n`th filing of the week: the figures move a little each time (the same figures
/// twice are refused as unchanged).
fn filing(week: &str, command: Uuid, n: u32) -> Value {
    json!({"week": week, "children": 41_250 + n % 7, "adults": 30_120, "schools": 180,
           "schools_with_responsible": 176, "command_id": command,
           "comment": "Проверка под нагрузкой"})
}

/// The run's folder (server logs), kept when the run fails.
fn run_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("opora-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
