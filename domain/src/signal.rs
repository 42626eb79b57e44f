//! «Заступник»: emergency signals. A child presses the panic button; the app's backend
//! reports the signal to Opora, which notifies the child's trusted adults, shows the signal
//! to the operators of its region and keeps every step of the response.
//!
//! Three aggregates:
//! - [`Signal`]: one press and its whole lifecycle, raised → trusted adults notified (per
//!   recipient and channel) → operator acknowledged → responders dispatched, en route, on
//!   scene → resolved with an outcome. The raise and the notification request are one
//!   append, so the request (the outbox) can never be lost between them.
//! - [`TrustedCircle`]: a child's registration as the app knows it (pseudonymous ids only):
//!   region, city and the trusted adults with their channels.
//! - [`IntegrationClient`]: a backend allowed to call the ingestion API, with the hash of its
//!   key (never the key) and its rate limit.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::reference::{labelled_enum, RegionCode};
use crate::DatedCommand;

labelled_enum!(
    /// What the child pressed (the app's kinds); `panic` when the app does not say.
    SignalKind, SignalKind {
    Panic => ("panic", "тревожная кнопка"),
    Lost => ("lost", "потерялся"),
    Threat => ("threat", "угроза от взрослого"),
    Bullying => ("bullying", "травля, конфликт"),
    Health => ("health", "плохо со здоровьем"),
    Accident => ("accident", "несчастный случай"),
    Other => ("other", "другое"),
});

labelled_enum!(
    /// Who goes to the child.
    ResponderKind, ResponderKind {
    TrustedAdult => ("trusted_adult", "доверенный взрослый"),
    Volunteer => ("volunteer", "волонтёр"),
    Police => ("police", "полиция"),
    Mchs => ("mchs", "МЧС"),
    Security => ("security", "частная охрана"),
    Medics => ("medics", "скорая помощь"),
    SearchTeam => ("search_team", "поисковый отряд"),
});

labelled_enum!(
    /// How a signal ended.
    SignalOutcome, SignalOutcome {
    TrustedCircle => ("trusted_circle", "разрешён доверенным кругом"),
    Operators => ("operators", "разрешён операторами и экспертами"),
    EmergencyServices => ("emergency_services", "с участием экстренных служб"),
    FalseAlarm => ("false_alarm", "ложная тревога"),
    Cancelled => ("cancelled", "отменён ребёнком"),
});

labelled_enum!(
    /// How a trusted adult is notified.
    Channel, Channel {
    Push => ("push", "push-уведомление"),
    Sms => ("sms", "SMS"),
    Call => ("call", "звонок"),
});

/// The most a device clock may run ahead of the server before the time is refused.
pub const MAX_CLOCK_AHEAD_SECONDS: i64 = 300;
/// The longest free-text note (resolution, dispatch).
pub const MAX_NOTE_CHARS: usize = 1_000;
/// The longest pseudonymous id (child, adult) the app may send.
pub const MAX_PSEUDONYM_CHARS: usize = 128;

/// A place: WGS 84 degrees, and the accuracy radius in metres when the device gives it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

impl Location {
    /// What is out of range, as (field, problem) pairs; empty when the location is valid.
    pub fn problems(latitude: f64, longitude: f64, accuracy_m: Option<f64>) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !(latitude.is_finite() && (-90.0..=90.0).contains(&latitude)) {
            out.push("latitude");
        }
        if !(longitude.is_finite() && (-180.0..=180.0).contains(&longitude)) {
            out.push("longitude");
        }
        if accuracy_m.is_some_and(|a| !(a.is_finite() && (0.0..=100_000.0).contains(&a))) {
            out.push("accuracy_m");
        }
        out
    }
}

/// One trusted adult on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recipient {
    /// The adult's pseudonymous id in the app.
    pub adult: String,
    pub channel: Channel,
}

// ---------------------------------------------------------------------------------------
// Signal
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SignalCommand {
    /// From the app's backend: the child pressed the button. `recipients` are the trusted
    /// adults to notify (from the call, or from the child's registration).
    Raise {
        child: String,
        client: Uuid,
        region: RegionCode,
        city: Option<String>,
        kind: SignalKind,
        pressed_at: OffsetDateTime,
        received_at: OffsetDateTime,
        location: Option<Location>,
        drill: bool,
        recipients: Vec<Recipient>,
    },
    /// The notification worker's receipt for one recipient and channel.
    RecordDelivery {
        recipient: Recipient,
        at: OffsetDateTime,
        attempts: u32,
        /// `None`: delivered; `Some(reason)`: given up after `attempts`.
        failure: Option<String>,
    },
    UpdateLocation {
        at: OffsetDateTime,
        location: Location,
    },
    /// The child cancelled the signal in the app.
    Cancel { at: OffsetDateTime },
    /// A trusted adult confirmed in the app that they saw the alarm.
    AdultAcknowledge { adult: String, at: OffsetDateTime },
    /// A trusted adult reports from the app that the child is safe: they reached the child
    /// (`on_scene_at`, when they went) or settled it at a distance.
    CircleResolve {
        adult: String,
        at: OffsetDateTime,
        on_scene_at: Option<OffsetDateTime>,
    },
    /// An operator took the signal.
    Acknowledge {
        operator: String,
        at: OffsetDateTime,
    },
    /// Not acknowledged in time: raised to the senior operator.
    Escalate {
        at: OffsetDateTime,
        after_seconds: u32,
    },
    Dispatch {
        responder: ResponderKind,
        at: OffsetDateTime,
        note: Option<String>,
    },
    EnRoute {
        responder: ResponderKind,
        at: OffsetDateTime,
    },
    OnScene {
        responder: ResponderKind,
        at: OffsetDateTime,
    },
    Resolve {
        outcome: SignalOutcome,
        at: OffsetDateTime,
        note: Option<String>,
    },
    /// Shows the signal on a child's case in the «Вызов» register.
    LinkCase { case: Uuid },
}

impl DatedCommand for SignalCommand {
    fn effective_date(&self) -> Option<Date> {
        match self {
            Self::Raise { pressed_at, .. } => Some(pressed_at.date()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SignalEvent {
    SignalRaised {
        child: String,
        client: Uuid,
        region: RegionCode,
        city: Option<String>,
        kind: SignalKind,
        pressed_at: OffsetDateTime,
        received_at: OffsetDateTime,
        location: Option<Location>,
        drill: bool,
    },
    /// The outbox: who must be notified. Appended with `SignalRaised`, in its transaction.
    NotificationRequested {
        recipients: Vec<Recipient>,
    },
    NotificationDelivered {
        recipient: Recipient,
        at: OffsetDateTime,
        attempts: u32,
    },
    NotificationFailed {
        recipient: Recipient,
        at: OffsetDateTime,
        attempts: u32,
        reason: String,
    },
    LocationUpdated {
        at: OffsetDateTime,
        location: Location,
    },
    AdultAcknowledged {
        adult: String,
        at: OffsetDateTime,
    },
    OperatorAcknowledged {
        operator: String,
        at: OffsetDateTime,
    },
    SignalEscalated {
        at: OffsetDateTime,
        after_seconds: u32,
    },
    ResponderDispatched {
        responder: ResponderKind,
        at: OffsetDateTime,
        note: Option<String>,
    },
    ResponderEnRoute {
        responder: ResponderKind,
        at: OffsetDateTime,
    },
    ResponderOnScene {
        responder: ResponderKind,
        at: OffsetDateTime,
    },
    SignalResolved {
        outcome: SignalOutcome,
        at: OffsetDateTime,
        note: Option<String>,
    },
    LinkedToCase {
        case: Uuid,
    },
}

impl DomainEvent for SignalEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SignalRaised { .. } => "SignalRaised",
            Self::NotificationRequested { .. } => "NotificationRequested",
            Self::NotificationDelivered { .. } => "NotificationDelivered",
            Self::NotificationFailed { .. } => "NotificationFailed",
            Self::LocationUpdated { .. } => "LocationUpdated",
            Self::AdultAcknowledged { .. } => "AdultAcknowledged",
            Self::OperatorAcknowledged { .. } => "OperatorAcknowledged",
            Self::SignalEscalated { .. } => "SignalEscalated",
            Self::ResponderDispatched { .. } => "ResponderDispatched",
            Self::ResponderEnRoute { .. } => "ResponderEnRoute",
            Self::ResponderOnScene { .. } => "ResponderOnScene",
            Self::SignalResolved { .. } => "SignalResolved",
            Self::LinkedToCase { .. } => "LinkedToCase",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SignalError {
    #[error("Сигнал не найден.")]
    NotRaised,
    #[error("Сигнал уже принят.")]
    AlreadyRaised,
    #[error("Сигнал уже закрыт; действия по нему больше не записываются.")]
    Closed,
    #[error("Время раньше нажатия кнопки.")]
    BeforePress,
    #[error("Время позже времени получения сигнала или слишком далеко в будущем.")]
    InFuture,
    #[error("Сигнал уже принят оператором {operator}.")]
    AlreadyAcknowledged { operator: String },
    #[error("Сигнал уже принят оператором, эскалация не нужна.")]
    NoEscalationNeeded,
    #[error("Сигнал уже эскалирован.")]
    AlreadyEscalated,
    #[error("{responder}: уже направлены.")]
    AlreadyDispatched { responder: String },
    #[error("{responder}: сначала отметьте, что они направлены.")]
    NotDispatched { responder: String },
    #[error("{responder}: уже отмечено.")]
    AlreadyMarked { responder: String },
    #[error("Примечание длиннее {MAX_NOTE_CHARS} символов.")]
    NoteTooLong,
    #[error("Сигнал уже связан с этим делом.")]
    AlreadyLinked,
    #[error("Отменить сигнал может только ребёнок из приложения.")]
    CancelFromApp,
}

/// One press and its response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Signal {
    pressed_at: Option<OffsetDateTime>,
    received_at: Option<OffsetDateTime>,
    operator: Option<String>,
    escalated: bool,
    dispatched: Vec<ResponderKind>,
    en_route: Vec<ResponderKind>,
    on_scene: Vec<ResponderKind>,
    resolved: bool,
    delivered: Vec<Recipient>,
    adults_acknowledged: Vec<String>,
    cases: Vec<Uuid>,
}

impl Signal {
    pub fn is_open(&self) -> bool {
        self.pressed_at.is_some() && !self.resolved
    }

    fn check_time(&self, at: OffsetDateTime) -> Result<(), SignalError> {
        let pressed = self.pressed_at.ok_or(SignalError::NotRaised)?;
        // Device and server clocks differ a little: a minute of slack before the press.
        if at < pressed - time::Duration::minutes(1) {
            return Err(SignalError::BeforePress);
        }
        Ok(())
    }

    fn open_at(&self, at: OffsetDateTime) -> Result<(), SignalError> {
        if self.pressed_at.is_none() {
            return Err(SignalError::NotRaised);
        }
        if self.resolved {
            return Err(SignalError::Closed);
        }
        self.check_time(at)
    }
}

fn note(raw: Option<String>) -> Result<Option<String>, SignalError> {
    let cleaned = raw.as_deref().and_then(crate::clean_text);
    if cleaned
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(SignalError::NoteTooLong);
    }
    Ok(cleaned)
}

impl Aggregate for Signal {
    const TYPE: &'static str = "Signal";
    type Command = SignalCommand;
    type Event = SignalEvent;
    type Error = SignalError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SignalCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SignalError> {
        use SignalEvent as E;
        match command {
            SignalCommand::Raise {
                child,
                client,
                region,
                city,
                kind,
                pressed_at,
                received_at,
                location,
                drill,
                recipients,
            } => {
                if self.pressed_at.is_some() {
                    return Err(SignalError::AlreadyRaised);
                }
                if pressed_at > received_at + time::Duration::seconds(MAX_CLOCK_AHEAD_SECONDS) {
                    return Err(SignalError::InFuture);
                }
                sink.write(
                    E::SignalRaised {
                        child,
                        client,
                        region,
                        city,
                        kind,
                        pressed_at,
                        received_at,
                        location,
                        drill,
                    },
                    self,
                )
                .await;
                let mut unique: Vec<Recipient> = Vec::new();
                for r in recipients {
                    if !unique.contains(&r) {
                        unique.push(r);
                    }
                }
                if !unique.is_empty() {
                    sink.write(E::NotificationRequested { recipients: unique }, self)
                        .await;
                }
            }
            SignalCommand::RecordDelivery {
                recipient,
                at,
                attempts,
                failure,
            } => {
                if self.pressed_at.is_none() {
                    return Err(SignalError::NotRaised);
                }
                // At-least-once delivery: a second receipt for the same recipient is no news.
                if self.delivered.contains(&recipient) {
                    return Ok(());
                }
                let event = match failure {
                    None => E::NotificationDelivered {
                        recipient,
                        at,
                        attempts,
                    },
                    Some(reason) => E::NotificationFailed {
                        recipient,
                        at,
                        attempts,
                        reason,
                    },
                };
                sink.write(event, self).await;
            }
            SignalCommand::UpdateLocation { at, location } => {
                self.open_at(at)?;
                sink.write(E::LocationUpdated { at, location }, self).await;
            }
            SignalCommand::Cancel { at } => {
                self.open_at(at)?;
                sink.write(
                    E::SignalResolved {
                        outcome: SignalOutcome::Cancelled,
                        at,
                        note: None,
                    },
                    self,
                )
                .await;
            }
            SignalCommand::AdultAcknowledge { adult, at } => {
                self.open_at(at)?;
                if self.adults_acknowledged.contains(&adult) {
                    return Ok(());
                }
                sink.write(E::AdultAcknowledged { adult, at }, self).await;
            }
            SignalCommand::CircleResolve {
                adult,
                at,
                on_scene_at,
            } => {
                self.open_at(at)?;
                if let Some(on_scene) = on_scene_at {
                    self.check_time(on_scene)?;
                    if on_scene > at {
                        return Err(SignalError::InFuture);
                    }
                }
                if !self.adults_acknowledged.contains(&adult) {
                    sink.write(
                        E::AdultAcknowledged {
                            adult,
                            at: on_scene_at.unwrap_or(at),
                        },
                        self,
                    )
                    .await;
                }
                if let Some(on_scene) = on_scene_at {
                    if !self.on_scene.contains(&ResponderKind::TrustedAdult) {
                        sink.write(
                            E::ResponderOnScene {
                                responder: ResponderKind::TrustedAdult,
                                at: on_scene,
                            },
                            self,
                        )
                        .await;
                    }
                }
                sink.write(
                    E::SignalResolved {
                        outcome: SignalOutcome::TrustedCircle,
                        at,
                        note: None,
                    },
                    self,
                )
                .await;
            }
            SignalCommand::Acknowledge { operator, at } => {
                self.open_at(at)?;
                if let Some(operator) = &self.operator {
                    return Err(SignalError::AlreadyAcknowledged {
                        operator: operator.clone(),
                    });
                }
                sink.write(E::OperatorAcknowledged { operator, at }, self)
                    .await;
            }
            SignalCommand::Escalate { at, after_seconds } => {
                self.open_at(at)?;
                if self.operator.is_some() {
                    return Err(SignalError::NoEscalationNeeded);
                }
                if self.escalated {
                    return Err(SignalError::AlreadyEscalated);
                }
                sink.write(E::SignalEscalated { at, after_seconds }, self)
                    .await;
            }
            SignalCommand::Dispatch {
                responder,
                at,
                note: text,
            } => {
                self.open_at(at)?;
                if self.dispatched.contains(&responder) {
                    return Err(SignalError::AlreadyDispatched {
                        responder: responder.label_ru().to_owned(),
                    });
                }
                let note = note(text)?;
                sink.write(
                    E::ResponderDispatched {
                        responder,
                        at,
                        note,
                    },
                    self,
                )
                .await;
            }
            SignalCommand::EnRoute { responder, at } => {
                self.open_at(at)?;
                self.step(responder, &self.en_route)?;
                sink.write(E::ResponderEnRoute { responder, at }, self)
                    .await;
            }
            SignalCommand::OnScene { responder, at } => {
                self.open_at(at)?;
                self.step(responder, &self.on_scene)?;
                sink.write(E::ResponderOnScene { responder, at }, self)
                    .await;
            }
            SignalCommand::Resolve {
                outcome,
                at,
                note: text,
            } => {
                self.open_at(at)?;
                if outcome == SignalOutcome::Cancelled {
                    return Err(SignalError::CancelFromApp);
                }
                let note = note(text)?;
                sink.write(E::SignalResolved { outcome, at, note }, self)
                    .await;
            }
            SignalCommand::LinkCase { case } => {
                if self.pressed_at.is_none() {
                    return Err(SignalError::NotRaised);
                }
                if self.cases.contains(&case) {
                    return Err(SignalError::AlreadyLinked);
                }
                sink.write(E::LinkedToCase { case }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: SignalEvent) {
        use SignalEvent as E;
        match event {
            E::SignalRaised {
                pressed_at,
                received_at,
                ..
            } => {
                self.pressed_at = Some(pressed_at);
                self.received_at = Some(received_at);
            }
            E::NotificationRequested { .. } | E::LocationUpdated { .. } => {}
            E::NotificationDelivered { recipient, .. }
            | E::NotificationFailed { recipient, .. } => self.delivered.push(recipient),
            E::AdultAcknowledged { adult, .. } => self.adults_acknowledged.push(adult),
            E::OperatorAcknowledged { operator, .. } => self.operator = Some(operator),
            E::SignalEscalated { .. } => self.escalated = true,
            E::ResponderDispatched { responder, .. } => self.dispatched.push(responder),
            E::ResponderEnRoute { responder, .. } => self.en_route.push(responder),
            E::ResponderOnScene { responder, .. } => self.on_scene.push(responder),
            E::SignalResolved { .. } => self.resolved = true,
            E::LinkedToCase { case } => self.cases.push(case),
        }
    }
}

impl Signal {
    /// En route and on scene follow a dispatch (a trusted adult needs none) and happen once.
    fn step(&self, responder: ResponderKind, done: &[ResponderKind]) -> Result<(), SignalError> {
        let label = || responder.label_ru().to_owned();
        if responder != ResponderKind::TrustedAdult && !self.dispatched.contains(&responder) {
            return Err(SignalError::NotDispatched { responder: label() });
        }
        if done.contains(&responder) {
            return Err(SignalError::AlreadyMarked { responder: label() });
        }
        Ok(())
    }
}

/// The id of the signal an ingestion client raised under an idempotency key: a retry of the
/// same call names the same signal.
pub fn signal_id(client: Uuid, idempotency_key: &str) -> Uuid {
    Uuid::new_v5(&client, format!("signal:{idempotency_key}").as_bytes())
}

/// The command id of an ingestion call: the client's idempotency key, scoped to the client.
pub fn ingestion_command_id(client: Uuid, idempotency_key: &str) -> Uuid {
    Uuid::new_v5(&client, format!("call:{idempotency_key}").as_bytes())
}

/// The id of one notification (recipient and channel) of a signal: the same for every
/// delivery attempt, so the receiver can drop repeats.
pub fn notification_id(signal: Uuid, recipient: &Recipient) -> Uuid {
    Uuid::new_v5(
        &signal,
        format!("notify:{}:{}", recipient.channel.code(), recipient.adult).as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------
// TrustedCircle: a child's registration
// ---------------------------------------------------------------------------------------

/// The stream of a child's registration: pseudonymous ids are the app's, scoped by client.
pub fn circle_id(client: Uuid, child: &str) -> Uuid {
    Uuid::new_v5(&client, format!("child:{child}").as_bytes())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CircleCommand {
    Register {
        client: Uuid,
        child: String,
        region: RegionCode,
        city: Option<String>,
        adults: Vec<Recipient>,
    },
}

impl DatedCommand for CircleCommand {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CircleEvent {
    /// The registration as it now stands (replaces the previous one).
    CircleRegistered {
        client: Uuid,
        child: String,
        region: RegionCode,
        city: Option<String>,
        adults: Vec<Recipient>,
    },
}

impl DomainEvent for CircleEvent {
    fn event_type(&self) -> String {
        "CircleRegistered".to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CircleError {
    #[error("Регистрация ребёнка не изменилась.")]
    Unchanged,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrustedCircle {
    current: Option<CircleEvent>,
}

impl Aggregate for TrustedCircle {
    const TYPE: &'static str = "TrustedCircle";
    type Command = CircleCommand;
    type Event = CircleEvent;
    type Error = CircleError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CircleCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CircleError> {
        let CircleCommand::Register {
            client,
            child,
            region,
            city,
            adults,
        } = command;
        let event = CircleEvent::CircleRegistered {
            client,
            child,
            region,
            city,
            adults,
        };
        // The same registration again is nothing to do (the app re-sends it freely).
        if self.current.as_ref() != Some(&event) {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: CircleEvent) {
        self.current = Some(event);
    }
}

// ---------------------------------------------------------------------------------------
// IntegrationClient
// ---------------------------------------------------------------------------------------

/// Calls per second a new client may make unless the administrator sets otherwise.
pub const DEFAULT_RATE_PER_SECOND: u32 = 50;
/// How long a rotated-out key keeps working, so the backend can switch without downtime.
pub const ROTATION_GRACE_HOURS: i64 = 24;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientCommand {
    Register {
        name: String,
        key_hash: String,
        rate_per_second: u32,
    },
    /// A new key; the old one works until `old_valid_until`.
    RotateKey {
        key_hash: String,
        old_valid_until: OffsetDateTime,
    },
    SetRate {
        rate_per_second: u32,
    },
    Revoke,
}

impl DatedCommand for ClientCommand {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientEvent {
    ClientRegistered {
        name: String,
        key_hash: String,
        rate_per_second: u32,
    },
    KeyRotated {
        key_hash: String,
        old_valid_until: OffsetDateTime,
    },
    RateChanged {
        rate_per_second: u32,
    },
    ClientRevoked,
}

impl DomainEvent for ClientEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ClientRegistered { .. } => "ClientRegistered",
            Self::KeyRotated { .. } => "KeyRotated",
            Self::RateChanged { .. } => "RateChanged",
            Self::ClientRevoked => "ClientRevoked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ClientError {
    #[error("Клиент уже зарегистрирован.")]
    AlreadyRegistered,
    #[error("Клиент не найден.")]
    NotRegistered,
    #[error("Клиент отключён.")]
    Revoked,
    #[error("Название клиента: от 1 до 200 символов.")]
    BadName,
    #[error("Лимит: от 1 до 10 000 запросов в секунду.")]
    BadRate,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IntegrationClient {
    registered: bool,
    revoked: bool,
    rate: u32,
}

fn check_rate(rate: u32) -> Result<(), ClientError> {
    if (1..=10_000).contains(&rate) {
        Ok(())
    } else {
        Err(ClientError::BadRate)
    }
}

impl Aggregate for IntegrationClient {
    const TYPE: &'static str = "IntegrationClient";
    type Command = ClientCommand;
    type Event = ClientEvent;
    type Error = ClientError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ClientCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ClientError> {
        if let ClientCommand::Register {
            name,
            key_hash,
            rate_per_second,
        } = command
        {
            if self.registered {
                return Err(ClientError::AlreadyRegistered);
            }
            let name = crate::clean_text(&name)
                .filter(|n| n.chars().count() <= 200)
                .ok_or(ClientError::BadName)?;
            check_rate(rate_per_second)?;
            sink.write(
                ClientEvent::ClientRegistered {
                    name,
                    key_hash,
                    rate_per_second,
                },
                self,
            )
            .await;
            return Ok(());
        }
        if !self.registered {
            return Err(ClientError::NotRegistered);
        }
        if self.revoked {
            return Err(ClientError::Revoked);
        }
        let event = match command {
            ClientCommand::Register { .. } => return Err(ClientError::AlreadyRegistered),
            ClientCommand::RotateKey {
                key_hash,
                old_valid_until,
            } => ClientEvent::KeyRotated {
                key_hash,
                old_valid_until,
            },
            ClientCommand::SetRate { rate_per_second } => {
                check_rate(rate_per_second)?;
                if rate_per_second == self.rate {
                    return Ok(());
                }
                ClientEvent::RateChanged { rate_per_second }
            }
            ClientCommand::Revoke => ClientEvent::ClientRevoked,
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::ClientRegistered {
                rate_per_second, ..
            } => {
                self.registered = true;
                self.rate = rate_per_second;
            }
            ClientEvent::RateChanged { rate_per_second } => self.rate = rate_per_second,
            ClientEvent::KeyRotated { .. } => {}
            ClientEvent::ClientRevoked => self.revoked = true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use time::macros::datetime;

    const PRESSED: OffsetDateTime = datetime!(2026-11-20 14:00:00 UTC);

    fn region() -> RegionCode {
        RegionCode::parse("55").unwrap()
    }

    fn adult(id: &str, channel: Channel) -> Recipient {
        Recipient {
            adult: id.to_owned(),
            channel,
        }
    }

    fn raised() -> SignalEvent {
        SignalEvent::SignalRaised {
            child: "c-1".to_owned(),
            client: Uuid::nil(),
            region: region(),
            city: Some("Омск".to_owned()),
            kind: SignalKind::Panic,
            pressed_at: PRESSED,
            received_at: PRESSED + time::Duration::seconds(1),
            location: Some(Location {
                latitude: 54.98,
                longitude: 73.37,
                accuracy_m: Some(12.0),
            }),
            drill: false,
        }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        PRESSED + time::Duration::seconds(seconds)
    }

    #[test]
    fn a_raise_requests_each_recipient_once_in_the_same_append() {
        let recipients = vec![
            adult("mother", Channel::Push),
            adult("mother", Channel::Push),
            adult("father", Channel::Sms),
        ];
        TestFramework::<Signal>::with(())
            .given_no_previous_events()
            .when(SignalCommand::Raise {
                child: "c-1".to_owned(),
                client: Uuid::nil(),
                region: region(),
                city: Some("Омск".to_owned()),
                kind: SignalKind::Panic,
                pressed_at: PRESSED,
                received_at: at(1),
                location: Some(Location {
                    latitude: 54.98,
                    longitude: 73.37,
                    accuracy_m: Some(12.0),
                }),
                drill: false,
                recipients,
            })
            .then_expect_events(vec![
                raised(),
                SignalEvent::NotificationRequested {
                    recipients: vec![
                        adult("mother", Channel::Push),
                        adult("father", Channel::Sms),
                    ],
                },
            ]);
    }

    #[test]
    fn a_device_clock_far_ahead_is_refused() {
        TestFramework::<Signal>::with(())
            .given_no_previous_events()
            .when(SignalCommand::Raise {
                child: "c-1".to_owned(),
                client: Uuid::nil(),
                region: region(),
                city: None,
                kind: SignalKind::Panic,
                pressed_at: at(MAX_CLOCK_AHEAD_SECONDS + 2),
                received_at: at(1),
                location: None,
                drill: false,
                recipients: vec![],
            })
            .then_expect_error(SignalError::InFuture);
    }

    #[test]
    fn a_second_receipt_for_the_same_recipient_is_nothing_to_do() {
        let receipt = SignalEvent::NotificationDelivered {
            recipient: adult("mother", Channel::Push),
            at: at(2),
            attempts: 1,
        };
        TestFramework::<Signal>::with(())
            .given(vec![raised(), receipt])
            .when(SignalCommand::RecordDelivery {
                recipient: adult("mother", Channel::Push),
                at: at(3),
                attempts: 2,
                failure: None,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_operator_acknowledges_once() {
        TestFramework::<Signal>::with(())
            .given(vec![
                raised(),
                SignalEvent::OperatorAcknowledged {
                    operator: "op1".to_owned(),
                    at: at(20),
                },
            ])
            .when(SignalCommand::Acknowledge {
                operator: "op2".to_owned(),
                at: at(25),
            })
            .then_expect_error(SignalError::AlreadyAcknowledged {
                operator: "op1".to_owned(),
            });
    }

    #[test]
    fn escalation_only_before_acknowledgement_and_once() {
        TestFramework::<Signal>::with(())
            .given(vec![raised()])
            .when(SignalCommand::Escalate {
                at: at(60),
                after_seconds: 60,
            })
            .then_expect_events(vec![SignalEvent::SignalEscalated {
                at: at(60),
                after_seconds: 60,
            }]);
        TestFramework::<Signal>::with(())
            .given(vec![
                raised(),
                SignalEvent::SignalEscalated {
                    at: at(60),
                    after_seconds: 60,
                },
            ])
            .when(SignalCommand::Escalate {
                at: at(61),
                after_seconds: 60,
            })
            .then_expect_error(SignalError::AlreadyEscalated);
        TestFramework::<Signal>::with(())
            .given(vec![
                raised(),
                SignalEvent::OperatorAcknowledged {
                    operator: "op1".to_owned(),
                    at: at(20),
                },
            ])
            .when(SignalCommand::Escalate {
                at: at(60),
                after_seconds: 60,
            })
            .then_expect_error(SignalError::NoEscalationNeeded);
    }

    #[test]
    fn responders_go_en_route_and_on_scene_only_after_dispatch() {
        TestFramework::<Signal>::with(())
            .given(vec![raised()])
            .when(SignalCommand::OnScene {
                responder: ResponderKind::Police,
                at: at(100),
            })
            .then_expect_error(SignalError::NotDispatched {
                responder: "полиция".to_owned(),
            });
        TestFramework::<Signal>::with(())
            .given(vec![
                raised(),
                SignalEvent::ResponderDispatched {
                    responder: ResponderKind::Police,
                    at: at(30),
                    note: None,
                },
            ])
            .when(SignalCommand::EnRoute {
                responder: ResponderKind::Police,
                at: at(40),
            })
            .then_expect_events(vec![SignalEvent::ResponderEnRoute {
                responder: ResponderKind::Police,
                at: at(40),
            }]);
    }

    #[test]
    fn a_closed_signal_takes_no_more_steps_but_still_takes_receipts() {
        let closed = vec![
            raised(),
            SignalEvent::SignalResolved {
                outcome: SignalOutcome::FalseAlarm,
                at: at(50),
                note: None,
            },
        ];
        TestFramework::<Signal>::with(())
            .given(closed.clone())
            .when(SignalCommand::Cancel { at: at(60) })
            .then_expect_error(SignalError::Closed);
        TestFramework::<Signal>::with(())
            .given(closed)
            .when(SignalCommand::RecordDelivery {
                recipient: adult("mother", Channel::Push),
                at: at(70),
                attempts: 3,
                failure: None,
            })
            .then_expect_events(vec![SignalEvent::NotificationDelivered {
                recipient: adult("mother", Channel::Push),
                at: at(70),
                attempts: 3,
            }]);
    }

    #[test]
    fn the_trusted_circle_resolves_with_the_adult_on_scene() {
        TestFramework::<Signal>::with(())
            .given(vec![raised()])
            .when(SignalCommand::CircleResolve {
                adult: "mother".to_owned(),
                at: at(200),
                on_scene_at: Some(at(150)),
            })
            .then_expect_events(vec![
                SignalEvent::AdultAcknowledged {
                    adult: "mother".to_owned(),
                    at: at(150),
                },
                SignalEvent::ResponderOnScene {
                    responder: ResponderKind::TrustedAdult,
                    at: at(150),
                },
                SignalEvent::SignalResolved {
                    outcome: SignalOutcome::TrustedCircle,
                    at: at(200),
                    note: None,
                },
            ]);
    }

    #[test]
    fn steps_before_the_press_are_refused() {
        TestFramework::<Signal>::with(())
            .given(vec![raised()])
            .when(SignalCommand::Acknowledge {
                operator: "op1".to_owned(),
                at: at(-120),
            })
            .then_expect_error(SignalError::BeforePress);
    }

    #[test]
    fn locations_out_of_range_are_named() {
        assert_eq!(Location::problems(200.0, 73.0, None), vec!["latitude"]);
        assert_eq!(
            Location::problems(54.0, -181.0, Some(-1.0)),
            vec!["longitude", "accuracy_m"]
        );
        assert!(Location::problems(54.0, 73.0, Some(10.0)).is_empty());
    }

    #[test]
    fn ids_are_scoped_to_the_client() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(signal_id(a, "k"), signal_id(a, "k"));
        assert_ne!(signal_id(a, "k"), signal_id(b, "k"));
        assert_ne!(signal_id(a, "k"), ingestion_command_id(a, "k"));
    }
}
