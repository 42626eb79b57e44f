//! The command bus: executes a command through cqrs-es exactly once per command id.
//!
//! The hot path is one round trip (the append) when the aggregate is in the bus's cache,
//! two otherwise (load the stream, append): nothing is checked first. A replayed command is
//! recognised where it is cheap to do so:
//! - it produces events again: the unique index `event_command_once` refuses the append,
//!   and the first outcome is read back;
//! - it is refused by the aggregate now (state has moved on): earlier events of the command
//!   id and earlier refusals are consulted before the refusal is recorded;
//! - it produces no events: the same.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Mutex;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use opora_domain::DatedCommand;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::repository::DuplicateCommand;
use crate::{EventLog, PgEventRepository};

pub const META_COMMAND_ID: &str = "command_id";
pub const META_ACTOR: &str = "actor";
pub const META_CORRELATION_ID: &str = "correlation_id";
pub const META_EFFECTIVE_DATE: &str = "effective_date";

/// Who asks, and under which ids. `command_id` is chosen by the caller (a form's hidden
/// field, an API idempotency key) so that a retry carries the same id.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    pub command_id: Uuid,
    pub actor: String,
    pub correlation_id: Uuid,
}

impl CommandMeta {
    /// A fresh command id, correlated with itself.
    pub fn new(actor: impl Into<String>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            command_id,
            actor: actor.into(),
            correlation_id: command_id,
        }
    }
    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = command_id;
        self
    }
}

/// What happened to a command that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executed {
    /// Its events were appended now.
    Applied,
    /// It had been executed before and was accepted then; nothing was appended now.
    AlreadyApplied,
    /// It changed nothing (the aggregate decided no event was needed).
    NothingToDo,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: StdError> {
    /// The aggregate refused the command (now, or the first time this command id ran).
    #[error("{0}")]
    Rejected(E),
    /// Someone else appended to the same stream between our load and our append.
    #[error("the record was changed by someone else; reload and try again")]
    Conflict,
    #[error("unexpected error: {0}")]
    Unexpected(Box<dyn StdError + Send + Sync>),
}

/// Executes commands of one aggregate type. It drives cqrs-es's `EventStore` (load, handle
/// through an `EventSink`, commit) itself rather than through `CqrsFramework`, whose
/// `execute` does not say whether anything was appended; no queries are dispatched after
/// commit: read models are built by the projection runner from the committed log (a crash
/// between commit and dispatch would otherwise lose them).
pub struct CommandBus<A>
where
    A: Aggregate,
{
    store: PersistedEventStore<PgEventRepository, A>,
    /// Aggregates as this bus last decided and appended them, with their sequence. A hit
    /// saves reading the stream; it is never trusted for a refusal and a stale entry is
    /// caught by the append's version check (then the command is decided again from the
    /// log), so the cache can be behind but never make a wrong decision stick.
    cache: Mutex<HashMap<String, (usize, A)>>,
    services: A::Services,
    log: EventLog,
}

/// Aggregates a bus keeps decided state for; beyond this the memory is simply cleared.
const AGGREGATE_CACHE_LIMIT: usize = 10_000;

impl<A> CommandBus<A>
where
    A: Aggregate + Clone,
    A::Command: DatedCommand + Clone,
    A::Error: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(log: EventLog, services: A::Services) -> Self {
        let store =
            PersistedEventStore::new_event_store(PgEventRepository::for_commands(log.clone()))
                .with_upcasters(opora_domain::upcast::all());
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            services,
            log,
        }
    }

    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed, CommandError<A::Error>> {
        let mut metadata = HashMap::from([
            (META_COMMAND_ID.to_owned(), meta.command_id.to_string()),
            (META_ACTOR.to_owned(), meta.actor.clone()),
            (
                META_CORRELATION_ID.to_owned(),
                meta.correlation_id.to_string(),
            ),
        ]);
        if let Some(date) = command.effective_date() {
            metadata.insert(
                META_EFFECTIVE_DATE.to_owned(),
                crate::chain::format_date(date),
            );
        }
        // First from the cache; on any doubt (a refusal, nothing to do, a conflict) once
        // more from the log, because a cached state may be behind another process's append.
        let mut use_cache = true;
        loop {
            let cached = if use_cache {
                self.cached(aggregate_id)
            } else {
                None
            };
            let from_cache = cached.is_some();
            let mut context = match cached {
                Some((current_sequence, aggregate)) => EventStoreAggregateContext {
                    aggregate_id: aggregate_id.to_owned(),
                    aggregate,
                    current_sequence,
                    current_snapshot: None,
                },
                None => self
                    .store
                    .load_aggregate(aggregate_id)
                    .await
                    .map_err(framework_error)?,
            };
            let sink = EventSink::default();
            if let Err(refusal) = context
                .aggregate()
                .handle(command.clone(), &self.services, &sink)
                .await
            {
                if from_cache {
                    use_cache = false;
                    continue;
                }
                if let Some(first) = self.first_outcome(meta.command_id).await? {
                    return first;
                }
                self.record_refusal(aggregate_id, meta, &refusal).await?;
                return Err(CommandError::Rejected(refusal));
            }
            let events = sink.collect().await;
            if events.is_empty() {
                if from_cache {
                    use_cache = false;
                    continue;
                }
                return self
                    .first_outcome(meta.command_id)
                    .await?
                    .unwrap_or(Ok(Executed::NothingToDo));
            }
            let decided = (
                context.current_sequence + events.len(),
                context.aggregate.clone(),
            );
            return match self.store.commit(events, context, metadata.clone()).await {
                Ok(_) => {
                    self.remember(aggregate_id, decided);
                    Ok(Executed::Applied)
                }
                Err(AggregateError::AggregateConflict) if from_cache => {
                    self.forget(aggregate_id);
                    use_cache = false;
                    continue;
                }
                Err(AggregateError::UnexpectedError(error)) if error.is::<DuplicateCommand>() => {
                    self.first_outcome(meta.command_id)
                        .await?
                        .unwrap_or(Err(CommandError::Unexpected(error)))
                }
                Err(error) => {
                    self.forget(aggregate_id);
                    Err(framework_error(error))
                }
            };
        }
    }

    fn cached(&self, aggregate_id: &str) -> Option<(usize, A)> {
        self.cache.lock().ok()?.get(aggregate_id).cloned()
    }

    fn remember(&self, aggregate_id: &str, decided: (usize, A)) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= AGGREGATE_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(aggregate_id.to_owned(), decided);
        }
    }

    fn forget(&self, aggregate_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(aggregate_id);
        }
    }

    /// What a command id answered the first time (its events, or its recorded refusal):
    /// already applied, or the
    /// same refusal; `None` if it never ran.
    #[allow(clippy::type_complexity)]
    async fn first_outcome(
        &self,
        command_id: Uuid,
    ) -> Result<Option<Result<Executed, CommandError<A::Error>>>, CommandError<A::Error>> {
        let row = sqlx::query(
            "SELECT 'accepted' AS outcome, NULL::jsonb AS error FROM event \
              WHERE command_id = $1 AND opens_command \
             UNION ALL \
             SELECT 'rejected', error FROM command_refusal WHERE command_id = $1 \
             LIMIT 1",
        )
        .bind(command_id)
        .fetch_optional(self.log.pool())
        .await
        .map_err(unexpected)?;
        let Some(row) = row else { return Ok(None) };
        let outcome: String = row.try_get("outcome").map_err(unexpected)?;
        if outcome == "accepted" {
            return Ok(Some(Ok(Executed::AlreadyApplied)));
        }
        let error: serde_json::Value = row.try_get("error").map_err(unexpected)?;
        let refusal: A::Error =
            serde_json::from_value(error).map_err(|e| CommandError::Unexpected(Box::new(e)))?;
        Ok(Some(Err(CommandError::Rejected(refusal))))
    }

    async fn record_refusal(
        &self,
        aggregate_id: &str,
        meta: &CommandMeta,
        refusal: &A::Error,
    ) -> Result<(), CommandError<A::Error>> {
        let error =
            serde_json::to_value(refusal).map_err(|e| CommandError::Unexpected(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO command_refusal (command_id, aggregate_type, aggregate_id, error, actor) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (command_id) DO NOTHING",
        )
        .bind(meta.command_id)
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(error)
        .bind(&meta.actor)
        .execute(self.log.pool())
        .await
        .map_err(unexpected)?;
        Ok(())
    }
}

fn framework_error<E: StdError>(error: AggregateError<E>) -> CommandError<E> {
    match error {
        AggregateError::UserError(refusal) => CommandError::Rejected(refusal),
        AggregateError::AggregateConflict => CommandError::Conflict,
        AggregateError::DatabaseConnectionError(error)
        | AggregateError::DeserializationError(error)
        | AggregateError::UnexpectedError(error) => CommandError::Unexpected(error),
    }
}

fn unexpected<E: StdError>(error: sqlx::Error) -> CommandError<E> {
    CommandError::Unexpected(Box::new(error))
}
