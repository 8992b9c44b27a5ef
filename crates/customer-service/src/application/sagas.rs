//! Sagas as use cases: a definition says what a saga of its kind asks and announces; the
//! machinery here starts one inside another write, records answers, runs its timers, and
//! carries out an operator's retry or cancel, each as read → decide (the domain's
//! [`Saga`]) → one compare-and-set write with the saga's new events.
//!
//! A second kind of saga is a new [`SagaDefinition`] added to [`Sagas`]; its requests and
//! answers use the same tables, orchestrator, reply reading, API and CLI.

use std::sync::Arc;
use std::time::Duration;

use customer_events::{
    new_event_id, CustomerErasureCompleted, CustomerErasureRequested, CustomerEvent, Envelope,
    ErasureConfirmation,
};

use crate::domain::saga::{
    Effect, NotActionable, Outcome, Refusal, ReplyDecision, RetryPolicy, Saga, SagaState,
};
use crate::domain::Timestamp;

use super::error::ApplicationError;
use super::new_event::{retry_on_conflict, MAX_WRITE_ATTEMPTS};
use super::ports::{Aggregate, NewEvent, SagaStore, SagaSummary, StoreError};

/// What one kind of saga asks of its participants and announces.
pub trait SagaDefinition: Send + Sync {
    /// `sagas.kind`, and the name in the API.
    fn kind(&self) -> &'static str;
    /// Who is asked, in order.
    fn participants(&self) -> &[String];
    /// How long the participants have to confirm.
    fn deadline(&self) -> Duration;
    /// When unanswered requests are repeated.
    fn policy(&self) -> RetryPolicy;
    /// Where participants answer, after the event stream's name: `<stream>:<suffix>`.
    fn reply_suffix(&self) -> &'static str;
    /// A reply's `outcome` field, read.
    fn outcome(&self, word: &str) -> Option<Outcome>;
    /// The event that announces `effect`.
    fn event(&self, saga: &Saga, effect: Effect) -> CustomerEvent;
}

/// The sagas this service runs.
#[derive(Clone, Default)]
pub struct Sagas {
    definitions: Vec<Arc<dyn SagaDefinition>>,
}

impl Sagas {
    pub fn new(definitions: Vec<Arc<dyn SagaDefinition>>) -> Sagas {
        Sagas { definitions }
    }

    pub fn get(&self, kind: &str) -> Option<&dyn SagaDefinition> {
        self.definitions
            .iter()
            .find(|d| d.kind() == kind)
            .map(|d| &**d)
    }

    pub fn definitions(&self) -> impl Iterator<Item = &dyn SagaDefinition> {
        self.definitions.iter().map(|d| &**d)
    }

    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }

    /// The erasure saga, when participants are configured.
    pub fn erasure(&self) -> Option<&dyn SagaDefinition> {
        self.get(ERASURE)
    }
}

/// `sagas.kind` of the erasure saga.
pub const ERASURE: &str = "erasure";

/// GDPR erasure across services: after a customer's erasure here, every configured
/// participant is asked to erase its copy (`CustomerErasureRequested`) and to confirm;
/// `CustomerErasureCompleted` records that all did.
pub struct ErasureSaga {
    pub participants: Vec<String>,
    pub deadline: Duration,
    pub policy: RetryPolicy,
}

impl SagaDefinition for ErasureSaga {
    fn kind(&self) -> &'static str {
        ERASURE
    }

    fn participants(&self) -> &[String] {
        &self.participants
    }

    fn deadline(&self) -> Duration {
        self.deadline
    }

    fn policy(&self) -> RetryPolicy {
        self.policy
    }

    fn reply_suffix(&self) -> &'static str {
        "erasure-replies"
    }

    fn outcome(&self, word: &str) -> Option<Outcome> {
        match word {
            "erased" => Some(Outcome::Done),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }

    fn event(&self, saga: &Saga, effect: Effect) -> CustomerEvent {
        match effect {
            Effect::Ask(index) => {
                let step = &saga.steps[index];
                CustomerEvent::CustomerErasureRequested(CustomerErasureRequested {
                    saga_id: saga.id,
                    customer_id: saga.subject_id,
                    participant: step.name.clone(),
                    token: step.token.clone(),
                    attempt: step.attempts,
                    requested_at: saga.started_at.to_iso(),
                    deadline: saga.deadline.to_iso(),
                })
            }
            Effect::Completed => {
                CustomerEvent::CustomerErasureCompleted(CustomerErasureCompleted {
                    saga_id: saga.id,
                    customer_id: saga.subject_id,
                    requested_at: saga.started_at.to_iso(),
                    completed_at: saga.ended_at.unwrap_or(saga.updated_at).to_iso(),
                    confirmations: saga
                        .steps
                        .iter()
                        .map(|step| ErasureConfirmation {
                            participant: step.name.clone(),
                            confirmed_at: step.answered_at.unwrap_or(saga.updated_at).to_iso(),
                        })
                        .collect(),
                })
            }
        }
    }
}

/// A random request token: 32 hex digits (122 random bits).
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The saga's events for `effects`, numbered after its `sequence` (which moves on).
pub fn seal_saga_events(
    definition: &dyn SagaDefinition,
    saga: &mut Saga,
    effects: &[Effect],
    now: Timestamp,
    correlation_id: &str,
) -> Vec<NewEvent> {
    effects
        .iter()
        .map(|&effect| {
            let event = definition.event(saga, effect);
            let event_type = event.event_type();
            saga.sequence += 1;
            let event_id = new_event_id(event_type, now.millis());
            let payload = Envelope::new(
                event,
                event_id.clone(),
                now.to_iso(),
                // Negative, like the log key: no consumer that keys by aggregateId alone
                // mixes a saga's events with a customer's.
                Aggregate::Saga(saga.id).log_key(),
                saga.sequence,
                correlation_id.to_owned(),
            )
            .to_json();
            NewEvent {
                event_id,
                event_type,
                aggregate: Aggregate::Saga(saga.id),
                sequence: saga.sequence,
                occurred_at: now,
                payload,
            }
        })
        .collect()
}

/// A new saga of `definition` about `subject_id`, as stored (id 0 until then; `sequence`
/// counting its first events), and its first events given the id.
pub fn start_saga(
    definition: &dyn SagaDefinition,
    subject_id: i64,
    now: Timestamp,
) -> (Saga, Vec<Effect>) {
    let (mut saga, effects) = Saga::start(
        definition.kind(),
        subject_id,
        definition.participants(),
        new_token,
        now,
        definition.deadline(),
        definition.policy(),
    );
    saga.sequence = effects.len() as i64;
    (saga, effects)
}

/// The first events of `saga` (as [`start_saga`] made it) once it has the id `id`.
pub fn first_events(
    definition: &dyn SagaDefinition,
    saga: &Saga,
    effects: &[Effect],
    id: i64,
    now: Timestamp,
    correlation_id: &str,
) -> Vec<NewEvent> {
    let mut stored = saga.clone();
    stored.id = id;
    stored.sequence = 0;
    seal_saga_events(definition, &mut stored, effects, now, correlation_id)
}

/// A participant's answer as read from the reply stream (unchecked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub saga_id: Option<i64>,
    pub participant: String,
    pub token: String,
    pub outcome: String,
    pub reason: Option<String>,
}

/// What became of a reply; `Refused` ones are logged by the caller.
pub async fn handle_reply(
    store: &dyn SagaStore,
    sagas: &Sagas,
    reply: &Reply,
    now: Timestamp,
) -> Result<ReplyDecision, ApplicationError> {
    let Some(saga_id) = reply.saga_id else {
        return Ok(ReplyDecision::Refused(Refusal::UnknownSaga));
    };
    retry_on_conflict(move || async move {
        let Some(mut saga) = store.find_saga(saga_id).await? else {
            return Ok(ReplyDecision::Refused(Refusal::UnknownSaga));
        };
        let Some(definition) = sagas.get(&saga.kind) else {
            return Ok(ReplyDecision::Refused(Refusal::UnknownSaga));
        };
        let Some(outcome) = definition.outcome(&reply.outcome) else {
            return Ok(ReplyDecision::Refused(Refusal::Malformed));
        };
        let decision = saga.on_reply(
            &reply.participant,
            &reply.token,
            outcome,
            reply.reason.as_deref(),
            now,
        );
        if let ReplyDecision::Applied(effects) = &decision {
            let correlation = format!("saga-{}", saga.id);
            let events = seal_saga_events(definition, &mut saga, effects, now, &correlation);
            store.save_saga(&saga, &events).await?;
        }
        Ok(decision)
    })
    .await
}

/// Runs the timers of every saga due at `now` (reminders, deadlines); how many changed.
pub async fn advance_due_sagas(
    store: &dyn SagaStore,
    sagas: &Sagas,
    now: Timestamp,
) -> Result<usize, ApplicationError> {
    let mut changed = 0;
    for id in store.due_sagas(now, 100).await? {
        let saved = retry_on_conflict(move || async move {
            let Some(mut saga) = store.find_saga(id).await? else {
                return Ok(false);
            };
            let Some(definition) = sagas.get(&saga.kind) else {
                return Ok(false);
            };
            let before = saga.clone();
            let effects = saga.on_timer(now, definition.policy());
            if saga == before {
                return Ok(false);
            }
            if saga.state == SagaState::Failed {
                tracing::warn!(
                    saga.id = saga.id,
                    saga.kind = %saga.kind,
                    reason = saga.reason.as_deref().unwrap_or_default(),
                    "saga failed"
                );
            }
            let correlation = format!("saga-{}", saga.id);
            let events = seal_saga_events(definition, &mut saga, &effects, now, &correlation);
            store.save_saga(&saga, &events).await?;
            Ok(true)
        })
        .await?;
        changed += usize::from(saved);
    }
    Ok(changed)
}

/// Why an operator's action was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum SagaActionError {
    #[error("no saga {0}")]
    NotFound(i64),
    #[error("saga {id} is {state}: nothing to {action}")]
    NotActionable {
        id: i64,
        state: &'static str,
        action: &'static str,
    },
    #[error("saga {id} is of kind {kind}, which this configuration does not run")]
    UnknownKind { id: i64, kind: String },
    #[error(transparent)]
    Application(#[from] ApplicationError),
}

impl From<StoreError> for SagaActionError {
    fn from(error: StoreError) -> Self {
        SagaActionError::Application(error.into())
    }
}

/// `sagas retry <id>`: asks every participant that has not confirmed again, with a new
/// token, and gives the saga a new deadline. The saga after it.
pub async fn retry_saga(
    store: &dyn SagaStore,
    sagas: &Sagas,
    id: i64,
    now: Timestamp,
) -> Result<Saga, SagaActionError> {
    // Bounded like every compare-and-set retry (see `retry_on_conflict`).
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let mut saga = store
            .find_saga(id)
            .await?
            .ok_or(SagaActionError::NotFound(id))?;
        let definition = sagas
            .get(&saga.kind)
            .ok_or_else(|| SagaActionError::UnknownKind {
                id,
                kind: saga.kind.clone(),
            })?;
        let effects = saga
            .retry(new_token, now, definition.deadline(), definition.policy())
            .map_err(|NotActionable(state)| SagaActionError::NotActionable {
                id,
                state: state.as_str(),
                action: "retry",
            })?;
        let correlation = format!("saga-{id}-retry-{}", now.millis());
        let events = seal_saga_events(definition, &mut saga, &effects, now, &correlation);
        match store.save_saga(&saga, &events).await {
            Err(StoreError::VersionConflict) => continue,
            other => other?,
        }
        saga.version += 1;
        return Ok(saga);
    }
    Err(StoreError::VersionConflict.into())
}

/// `sagas cancel <id>`: ends the saga `cancelled` with `reason`.
pub async fn cancel_saga(
    store: &dyn SagaStore,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> Result<Saga, SagaActionError> {
    // Bounded like every compare-and-set retry (see `retry_on_conflict`).
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let mut saga = store
            .find_saga(id)
            .await?
            .ok_or(SagaActionError::NotFound(id))?;
        saga.cancel(reason, now).map_err(|NotActionable(state)| {
            SagaActionError::NotActionable {
                id,
                state: state.as_str(),
                action: "cancel",
            }
        })?;
        match store.save_saga(&saga, &[]).await {
            Err(StoreError::VersionConflict) => continue,
            other => other?,
        }
        saga.version += 1;
        return Ok(saga);
    }
    Err(StoreError::VersionConflict.into())
}

/// A page of sagas, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaPage {
    pub sagas: Vec<Saga>,
    /// The `before` of the next page; `None` on the last.
    pub next_before: Option<i64>,
}

/// `GET /api/v1/sagas`.
pub async fn list_sagas(
    store: &dyn SagaStore,
    state: Option<SagaState>,
    before: Option<i64>,
    limit: i64,
) -> Result<SagaPage, ApplicationError> {
    let mut sagas = store.list_sagas(state, before, limit + 1).await?;
    let next_before = if sagas.len() as i64 > limit {
        sagas.truncate(limit as usize);
        sagas.last().map(|s| s.id)
    } else {
        None
    };
    Ok(SagaPage { sagas, next_before })
}

/// `GET /api/v1/customers/:id/erasure`: the newest erasure saga of the customer.
pub async fn erasure_of(
    store: &dyn SagaStore,
    customer_id: i64,
) -> Result<Option<Saga>, ApplicationError> {
    Ok(store.find_saga_of(ERASURE, customer_id).await?)
}

/// Counts by state, the oldest open saga, those past half their deadline.
pub async fn saga_summary(
    store: &dyn SagaStore,
    now: Timestamp,
) -> Result<SagaSummary, ApplicationError> {
    Ok(store.saga_summary(now).await?)
}
