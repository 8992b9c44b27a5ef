//! The saga orchestrator: on the instance that leads the relay (the same lease, see
//! `outbox/leader.rs`), reads participants' answers and records them, and runs the sagas'
//! timers (reminders with back-off, deadlines). Everything it decides is stored by
//! compare-and-set with the saga's events in one transaction (`application/sagas.rs`), so
//! a second orchestrator — a frozen leader waking up after a takeover — can only lose races,
//! never send a reminder twice or record an answer twice. State lives in the database and
//! the reply stream only: a restart or a new leader carries on where the last one was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::application::{advance_due_sagas, handle_reply, Clock, SagaStore, Sagas};
use crate::domain::saga::ReplyDecision;
use crate::outbox::Leadership;
use crate::sinks::{ReplyMessage, ReplySource};

/// How long one read of the reply streams waits; also how often timers are looked at.
const TICK: Duration = Duration::from_millis(250);

/// What `/metrics` and health show of the orchestrator.
#[derive(Debug, Default)]
pub struct OrchestratorStatus {
    /// Answers recorded (a duplicate counts too: it was acknowledged).
    pub replies_recorded: AtomicU64,
    /// Answers refused: unknown saga or participant, wrong token, saga ended.
    pub replies_refused: AtomicU64,
    /// The error of the current failure streak.
    pub last_error: Mutex<Option<String>>,
}

impl OrchestratorStatus {
    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        if let Ok(mut last) = self.last_error.lock() {
            if last.is_none() {
                tracing::warn!(error = %error, "saga orchestrator: {what} failed; retrying");
            }
            *last = Some(format!("{what} failed"));
        }
    }

    fn recovered(&self) {
        if let Ok(mut last) = self.last_error.lock() {
            if last.take().is_some() {
                tracing::info!("saga orchestrator recovered");
            }
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

pub struct Orchestrator {
    pub store: Arc<dyn SagaStore>,
    pub sagas: Sagas,
    pub replies: Arc<dyn ReplySource>,
    pub clock: Arc<dyn Clock>,
    pub status: Arc<OrchestratorStatus>,
}

impl Orchestrator {
    /// Runs while this instance leads, until `shutdown` turns true.
    pub async fn run(self, leadership: Leadership, mut shutdown: watch::Receiver<bool>) {
        let mut leading = false;
        while !*shutdown.borrow() {
            if leadership.term().is_none() {
                leading = false;
                tokio::select! {
                    () = leadership.changed(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if !leading {
                // A previous leader may have read answers it never acknowledged.
                self.replies.rewind();
                leading = true;
                tracing::info!("saga orchestrator active");
            }
            let read_ok = self.step_replies().await;
            let timers_ok = self.step_timers().await;
            if read_ok && timers_ok {
                self.status.recovered();
            } else {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        tracing::info!("saga orchestrator stopped");
    }

    /// Reads and records a batch of answers; `false` after a failure.
    pub async fn step_replies(&self) -> bool {
        let messages = match self.replies.read(100, TICK).await {
            Ok(messages) => messages,
            Err(error) => {
                self.status.failed("reading saga replies", &error);
                return false;
            }
        };
        for message in messages {
            if !self.record(&message).await {
                // Not acknowledged: read again after the pause.
                return false;
            }
        }
        true
    }

    async fn record(&self, message: &ReplyMessage) -> bool {
        let reply = &message.reply;
        let decision = match handle_reply(&*self.store, &self.sagas, reply, self.clock.now()).await
        {
            Ok(decision) => decision,
            Err(error) => {
                self.status.failed("recording a saga reply", &error);
                return false;
            }
        };
        match decision {
            ReplyDecision::Refused(why) => {
                self.status.replies_refused.fetch_add(1, Ordering::Relaxed);
                // Participant names are configuration, tokens random: nothing personal.
                tracing::warn!(
                    saga.id = reply.saga_id,
                    participant = %reply.participant,
                    reply.outcome = %reply.outcome,
                    reply.id = %message.id,
                    refused = why.as_str(),
                    "refused a saga reply"
                );
            }
            ReplyDecision::Duplicate => {
                self.status.replies_recorded.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(saga.id = reply.saga_id, "a saga reply repeated");
            }
            ReplyDecision::Applied(_) => {
                self.status.replies_recorded.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    saga.id = reply.saga_id,
                    participant = %reply.participant,
                    reply.outcome = %reply.outcome,
                    "saga reply recorded"
                );
            }
        }
        if let Err(error) = self.replies.ack(message).await {
            self.status.failed("acknowledging a saga reply", &error);
            return false;
        }
        true
    }

    /// Runs the timers due now; `false` after a failure.
    pub async fn step_timers(&self) -> bool {
        match advance_due_sagas(&*self.store, &self.sagas, self.clock.now()).await {
            Ok(_) => true,
            Err(error) => {
                self.status.failed("running saga timers", &error);
                false
            }
        }
    }
}
