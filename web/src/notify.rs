//! Delivery of trusted-adult notifications: the outbox worker and its transports.
//!
//! The raise of a signal and its `NotificationRequested` event are one append, so the
//! request is durable the moment the signal is. The `signals` projection turns each request
//! into one row per recipient and channel in `signals.notification` (the outbox). This
//! worker leases due rows, hands each to the transport, and records the outcome in the log
//! (`NotificationDelivered` / `NotificationFailed`, the delivery receipts), retrying with
//! exponential backoff in between. A server killed at any point loses nothing: the log
//! still holds the request, the projection the row, and the next worker delivers it again —
//! at least once, always under the same delivery id, which the receiver uses to drop
//! repeats (`Idempotency-Key`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use opora_domain::signal::{Channel, Recipient, Signal, SignalCommand};
use opora_store::{CommandBus, CommandMeta, EventLog};
use rand::Rng;
use serde_json::json;
use sha2::Sha256;
use sqlx::Row;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Written to the server's log only (the default: nothing leaves the machine).
    Log,
    /// POSTed as JSON to the app's notification gateway, signed with HMAC-SHA256.
    Webhook { url: String, secret: String },
}

impl Transport {
    /// `log` or `webhook:URL` (the secret comes separately, from `--webhook-secret`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "log" {
            return Ok(Self::Log);
        }
        if let Some(url) = raw.strip_prefix("webhook:") {
            if url.starts_with("http://") || url.starts_with("https://") {
                return Ok(Self::Webhook {
                    url: url.to_owned(),
                    secret: String::new(),
                });
            }
        }
        Err(format!(
            "«{raw}»: ожидается log или webhook:https://адрес-шлюза"
        ))
    }
}

/// How the worker retries.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub transport: Transport,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Attempts before a notification is given up (and shown as failed on the console).
    pub max_attempts: i32,
    /// The first retry's delay; each next one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest a transport call may take.
    pub timeout: Duration,
}

impl WorkerConfig {
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            concurrency: 32,
            max_attempts: 12,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The header carrying the signature: `v1=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub const SIGNATURE_HEADER: &str = "x-opora-signature";
pub const TIMESTAMP_HEADER: &str = "x-opora-timestamp";

/// The signature the receiver recomputes with the shared secret.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

struct Due {
    id: Uuid,
    signal: Uuid,
    recipient: Recipient,
    attempts: i32,
    body: serde_json::Value,
}

/// Starts the worker; it stops when `shutdown` turns true.
pub fn spawn_worker(
    log: EventLog,
    config: WorkerConfig,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let worker = Arc::new(Worker::new(log, config));
        worker.run(shutdown).await;
    })
}

struct Worker {
    log: EventLog,
    config: WorkerConfig,
    signals: CommandBus<Signal>,
    http: reqwest::Client,
}

impl Worker {
    fn new(log: EventLog, config: WorkerConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .unwrap_or_default();
        Self {
            signals: CommandBus::new(log.clone(), ()),
            log,
            config,
            http,
        }
    }

    async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // Leases of a worker that died are released: their rows are delivered again now
        // (at least once) rather than when the lease runs out.
        if let Err(error) = sqlx::query(
            "UPDATE signals.notification SET lease_until = NULL WHERE lease_until IS NOT NULL \
               AND delivered_at IS NULL AND failed_at IS NULL",
        )
        .execute(self.log.pool())
        .await
        {
            tracing::warn!(%error, "could not release old notification leases");
        }
        let mut appended = self.log.subscribe();
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let room = self.config.concurrency.saturating_sub(in_flight.len());
            let claimed = if room > 0 {
                match self.claim(room).await {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::warn!(%error, "notification outbox unavailable; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            let got = claimed.len();
            for due in claimed {
                let worker = Arc::clone(&self);
                in_flight.spawn(async move { worker.deliver(due).await });
            }
            while let Some(done) = in_flight.try_join_next() {
                if let Err(error) = done {
                    tracing::error!(%error, "a delivery task failed");
                }
            }
            if got > 0 && got == room {
                continue;
            }
            tokio::select! {
                _ = appended.changed() => {
                    // The projection writes the outbox row just after the append.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = shutdown.changed() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Due>> {
        let rows = sqlx::query(
            "WITH claimed AS ( \
                 UPDATE signals.notification SET lease_until = now() + interval '60 seconds', \
                        attempts = attempts + 1 \
                  WHERE id IN (SELECT id FROM signals.notification \
                                WHERE delivered_at IS NULL AND failed_at IS NULL \
                                  AND next_attempt_at <= now() \
                                  AND (lease_until IS NULL OR lease_until < now()) \
                                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
              RETURNING id, signal, adult, channel, attempts) \
             SELECT c.id, c.signal, c.adult, c.channel, c.attempts, s.child, s.kind, \
                    s.region_code, s.city, s.pressed_at, s.latitude, s.longitude, \
                    s.accuracy_m, s.drill \
               FROM claimed c LEFT JOIN signals.signal s ON s.id = c.signal",
        )
        .bind(i64::try_from(limit).unwrap_or(64))
        .fetch_all(self.log.pool())
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.try_get("id")?;
            let signal: Uuid = row.try_get("signal")?;
            let adult: String = row.try_get("adult")?;
            let channel: String = row.try_get("channel")?;
            let channel = Channel::parse(&channel).context("unknown channel in the outbox")?;
            let pressed_at: Option<OffsetDateTime> = row.try_get("pressed_at")?;
            let body = json!({
                "delivery": id,
                "signal": signal,
                "adult": adult,
                "channel": channel.code(),
                "child": row.try_get::<Option<String>, _>("child")?,
                "kind": row.try_get::<Option<String>, _>("kind")?,
                "region": row.try_get::<Option<String>, _>("region_code")?,
                "city": row.try_get::<Option<String>, _>("city")?,
                "pressed_at": pressed_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                "latitude": row.try_get::<Option<f64>, _>("latitude")?,
                "longitude": row.try_get::<Option<f64>, _>("longitude")?,
                "accuracy_m": row.try_get::<Option<f64>, _>("accuracy_m")?,
                "drill": row.try_get::<Option<bool>, _>("drill")?,
            });
            due.push(Due {
                id,
                signal,
                recipient: Recipient { adult, channel },
                attempts: row.try_get("attempts")?,
                body,
            });
        }
        Ok(due)
    }

    async fn deliver(&self, due: Due) {
        let outcome = self.send(&due).await;
        let result = match outcome {
            Ok(()) => self.delivered(&due).await,
            Err(error) if due.attempts >= self.config.max_attempts => {
                self.give_up(&due, &error.to_string()).await
            }
            Err(error) => self.retry_later(&due, &error.to_string()).await,
        };
        if let Err(error) = result {
            // The row stays leased; it is retried when the lease runs out.
            tracing::warn!(%error, delivery = %due.id, "could not record a delivery outcome");
        }
    }

    async fn send(&self, due: &Due) -> Result<()> {
        match &self.config.transport {
            Transport::Log => {
                tracing::info!(
                    delivery = %due.id,
                    signal = %due.signal,
                    channel = due.recipient.channel.code(),
                    "notification handed to the log transport"
                );
                Ok(())
            }
            Transport::Webhook { url, secret } => {
                let body = serde_json::to_vec(&due.body)?;
                let timestamp = OffsetDateTime::now_utc().unix_timestamp();
                let response = self
                    .http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("idempotency-key", due.id.to_string())
                    .header(TIMESTAMP_HEADER, timestamp.to_string())
                    .header(SIGNATURE_HEADER, sign(secret, timestamp, &body))
                    .body(body)
                    .send()
                    .await
                    .context("the gateway did not answer")?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    anyhow::bail!("the gateway answered {status}")
                }
            }
        }
    }

    async fn delivered(&self, due: &Due) -> Result<()> {
        self.receipt(due, None).await?;
        sqlx::query(
            "UPDATE signals.notification SET delivered_at = coalesce(delivered_at, now()), \
                    lease_until = NULL, last_error = NULL WHERE id = $1",
        )
        .bind(due.id)
        .execute(self.log.pool())
        .await?;
        Ok(())
    }

    async fn give_up(&self, due: &Due, error: &str) -> Result<()> {
        tracing::warn!(delivery = %due.id, signal = %due.signal, attempts = due.attempts, %error, "notification given up");
        self.receipt(due, Some(error.to_owned())).await?;
        sqlx::query(
            "UPDATE signals.notification SET failed_at = coalesce(failed_at, now()), \
                    lease_until = NULL, last_error = $2 WHERE id = $1",
        )
        .bind(due.id)
        .bind(error)
        .execute(self.log.pool())
        .await?;
        Ok(())
    }

    async fn retry_later(&self, due: &Due, error: &str) -> Result<()> {
        let delay = backoff(&self.config, due.attempts);
        tracing::info!(delivery = %due.id, attempts = due.attempts, retry_in_ms = delay.as_millis() as u64, %error, "notification not delivered; will retry");
        sqlx::query(
            "UPDATE signals.notification SET lease_until = NULL, last_error = $2, \
                    next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
        )
        .bind(due.id)
        .bind(error)
        .bind(delay.as_secs_f64())
        .execute(self.log.pool())
        .await?;
        Ok(())
    }

    async fn receipt(&self, due: &Due, failure: Option<String>) -> Result<()> {
        let meta =
            CommandMeta::new("system:notify").with_command_id(Uuid::new_v5(&due.id, b"receipt"));
        crate::ingest::execute_signal(
            &self.signals,
            due.signal,
            SignalCommand::RecordDelivery {
                recipient: due.recipient.clone(),
                at: OffsetDateTime::now_utc(),
                attempts: u32::try_from(due.attempts).unwrap_or(0),
                failure,
            },
            &meta,
        )
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The delay before attempt `attempts + 1`: doubling from `first_backoff`, capped, with ±20 %
/// jitter so that many failed deliveries do not come back at the same instant.
pub fn backoff(config: &WorkerConfig, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let base = config
        .first_backoff
        .saturating_mul(2_u32.saturating_pow(exponent))
        .min(config.max_backoff);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    base.mul_f64(jitter)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_read_from_the_command_line() {
        assert_eq!(Transport::parse("log"), Ok(Transport::Log));
        assert_eq!(
            Transport::parse("webhook:https://gw.example/notify"),
            Ok(Transport::Webhook {
                url: "https://gw.example/notify".to_owned(),
                secret: String::new()
            })
        );
        assert!(Transport::parse("webhook:ftp://x").is_err());
        assert!(Transport::parse("smtp").is_err());
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_and_body() {
        // Computed independently (Python's hmac module).
        let signature = sign("key", 1_700_000_000, b"{}");
        assert_eq!(
            signature,
            "v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(signature, sign("other", 1_700_000_000, b"{}"));
        assert_ne!(signature, sign("key", 1_700_000_001, b"{}"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = WorkerConfig::new(Transport::Log);
        let first = backoff(&config, 1).as_secs_f64();
        assert!((0.4..=0.6).contains(&first), "{first}");
        let fourth = backoff(&config, 4).as_secs_f64();
        assert!((3.2..=4.8).contains(&fourth), "{fourth}");
        let late = backoff(&config, 30).as_secs_f64();
        assert!((48.0..=72.0).contains(&late), "{late}");
    }
}
