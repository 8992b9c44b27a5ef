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
    /// Every channel answers arrive on (Redis streams, NATS subjects).
    pub replies: Vec<Arc<dyn ReplySource>>,
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
                for replies in &self.replies {
                    replies.rewind();
                }
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

    /// Reads and records a batch of answers; `false` after a failure, after which the next
    /// read starts again from the answers read but not acknowledged.
    pub async fn step_replies(&self) -> bool {
        let mut all_ok = true;
        let tick = TICK / u32::try_from(self.replies.len().max(1)).unwrap_or(1);
        for replies in &self.replies {
            all_ok &= self.step_source(&**replies, tick).await;
        }
        all_ok
    }

    async fn step_source(&self, replies: &dyn ReplySource, tick: Duration) -> bool {
        let messages = match replies.read(100, tick).await {
            Ok(messages) => messages,
            Err(error) => {
                self.status.failed("reading saga replies", &error);
                // Answers delivered just before the connection failed are pending.
                replies.rewind();
                return false;
            }
        };
        for message in messages {
            if !self.record(replies, &message).await {
                // Not acknowledged (the database or the broker failed): read again after
                // the pause, before anything new.
                replies.rewind();
                return false;
            }
        }
        true
    }

    async fn record(&self, replies: &dyn ReplySource, message: &ReplyMessage) -> bool {
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
        if let Err(error) = replies.ack(message).await {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use async_trait::async_trait;

    use super::*;
    use crate::application::{NewEvent, Reply, SagaSummary, StoreError, SystemClock};
    use crate::domain::saga::{Saga, SagaState};
    use crate::domain::Timestamp;
    use crate::sinks::SinkError;

    /// One answer, pending until acknowledged; a read gives it while it is pending and the
    /// reader has rewound (or never read it).
    #[derive(Default)]
    struct OneReply {
        delivered: AtomicBool,
        acked: AtomicBool,
        reads: AtomicU64,
    }

    fn message() -> ReplyMessage {
        ReplyMessage {
            stream: "s:erasure-replies".into(),
            id: "1-0".into(),
            reply: Reply {
                saga_id: Some(7),
                participant: "billing".into(),
                token: "t".into(),
                outcome: "erased".into(),
                reason: None,
            },
        }
    }

    #[async_trait]
    impl ReplySource for OneReply {
        async fn read(&self, _: usize, _: Duration) -> Result<Vec<ReplyMessage>, SinkError> {
            if self.acked.load(Ordering::SeqCst) || self.delivered.swap(true, Ordering::SeqCst) {
                return Ok(Vec::new());
            }
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(vec![message()])
        }
        async fn ack(&self, _: &ReplyMessage) -> Result<(), SinkError> {
            self.acked.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn rewind(&self) {
            self.delivered.store(false, Ordering::SeqCst);
        }
    }

    /// A database that fails its first read and then knows no saga.
    #[derive(Default)]
    struct FlakyStore {
        failed: AtomicBool,
    }

    #[async_trait]
    impl SagaStore for FlakyStore {
        async fn find_saga(&self, _: i64) -> Result<Option<Saga>, StoreError> {
            if self.failed.swap(true, Ordering::SeqCst) {
                Ok(None)
            } else {
                Err(StoreError::Unavailable("down".into()))
            }
        }
        async fn find_saga_of(&self, _: &str, _: i64) -> Result<Option<Saga>, StoreError> {
            Ok(None)
        }
        async fn list_sagas(
            &self,
            _: Option<SagaState>,
            _: Option<i64>,
            _: i64,
        ) -> Result<Vec<Saga>, StoreError> {
            Ok(Vec::new())
        }
        async fn due_sagas(&self, _: Timestamp, _: i64) -> Result<Vec<i64>, StoreError> {
            Ok(Vec::new())
        }
        async fn save_saga(&self, _: &Saga, _: &[NewEvent]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn saga_summary(&self, _: Timestamp) -> Result<SagaSummary, StoreError> {
            Ok(SagaSummary::default())
        }
    }

    #[tokio::test]
    async fn an_answer_that_could_not_be_recorded_is_read_again_before_new_ones() {
        let replies = Arc::new(OneReply::default());
        let orchestrator = Orchestrator {
            store: Arc::new(FlakyStore::default()),
            sagas: Sagas::default(),
            replies: vec![replies.clone()],
            clock: Arc::new(SystemClock),
            status: Arc::default(),
        };
        assert!(!orchestrator.step_replies().await, "the database failed");
        assert!(!replies.acked.load(Ordering::SeqCst));
        assert_eq!(
            orchestrator.status.last_error().as_deref(),
            Some("recording a saga reply failed")
        );
        assert!(orchestrator.step_replies().await);
        assert_eq!(replies.reads.load(Ordering::SeqCst), 2, "read again");
        assert!(replies.acked.load(Ordering::SeqCst));
        // Recorded as refused: there is no saga 7.
        assert_eq!(
            orchestrator.status.replies_refused.load(Ordering::Relaxed),
            1
        );
    }
}
