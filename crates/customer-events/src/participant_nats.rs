//! The erasure participant on NATS JetStream (feature `jetstream`): requests read from the
//! service's stream (`<prefix>.CustomerErasureRequested.*`) by the durable consumer
//! `erasure-<participant>`, answers published to `<prefix>.erasure-replies` as JSON:
//! `{"sagaId":7,"participant":"billing","token":"…","outcome":"erased","reason":""}`.
//! Otherwise as the Redis participant: only requests naming this participant, `erase`
//! retried then answered `failed`, a confirmed token remembered so a reminder is answered
//! again without erasing again.

use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use crate::event::{CustomerErasureRequested, CustomerEvent};
use crate::jetstream::{JetStreamConfig, JetStreamConsumer, JetStreamError};
use crate::outcome::Outcome;

use super::erase_with_retries;

/// The subject participants answer on: `<prefix>.erasure-replies`.
pub fn reply_subject(subject_prefix: &str) -> String {
    format!("{subject_prefix}.erasure-replies")
}

/// How a NATS participant behaves; [`NatsParticipantConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct NatsParticipantConfig {
    /// The participant's name, exactly as in the service's `ERASURE_PARTICIPANTS`.
    pub participant: String,
    /// The service's stream and prefix; durable `erasure-<participant>`, reading only the
    /// erasure requests.
    pub consumer: JetStreamConfig,
    /// `erase` calls per request before answering `failed`.
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl NatsParticipantConfig {
    /// For the service's `NATS_STREAM` and `NATS_SUBJECT_PREFIX`.
    pub fn new(
        stream: impl Into<String>,
        subject_prefix: impl Into<String>,
        participant: impl Into<String>,
    ) -> NatsParticipantConfig {
        let participant = participant.into();
        let subject_prefix = subject_prefix.into();
        let mut consumer = JetStreamConfig::new(
            stream,
            subject_prefix.clone(),
            format!("erasure-{participant}"),
        );
        consumer.filter_subject = Some(format!("{subject_prefix}.CustomerErasureRequested.*"));
        // Confirmed tokens are remembered as long as handled events: longer than a deadline.
        consumer.dedupe_ttl = Duration::from_secs(45 * 24 * 3600);
        NatsParticipantConfig {
            participant,
            consumer,
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// One erasure participant on NATS.
pub struct NatsParticipant {
    consumer: JetStreamConsumer,
    config: NatsParticipantConfig,
}

impl NatsParticipant {
    pub async fn new(
        client: async_nats::Client,
        config: NatsParticipantConfig,
    ) -> Result<NatsParticipant, JetStreamError> {
        Ok(NatsParticipant {
            consumer: JetStreamConsumer::new(client, config.consumer.clone()).await?,
            config,
        })
    }

    /// Handles erasure requests until `shutdown` completes.
    pub async fn run<F, Fut, E>(
        &self,
        erase: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), JetStreamError>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        self.consumer
            .run(|envelope| self.handle(envelope.data, &erase), shutdown)
            .await
    }

    /// One fetch of requests, handled (for tests and tools).
    pub async fn poll_once<F, Fut, E>(&self, erase: F) -> Result<Vec<Outcome>, JetStreamError>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        self.consumer
            .poll_once(|envelope| self.handle(envelope.data, &erase))
            .await
    }

    async fn handle<F, Fut, E>(&self, event: CustomerEvent, erase: &F) -> Result<(), String>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let CustomerEvent::CustomerErasureRequested(request) = event else {
            return Ok(());
        };
        if request.participant != self.config.participant {
            return Ok(());
        }
        // Tokens are 32 hex digits: subject-safe.
        let done = format!("token-{}", request.token);
        if self
            .consumer
            .recorded(&done)
            .await
            .map_err(|e| e.to_string())?
        {
            return self.reply(&request, None).await;
        }
        let failure = erase_with_retries(
            erase,
            request.customer_id,
            self.config.max_attempts,
            self.config.backoff,
            self.config.max_backoff,
        )
        .await;
        if failure.is_none() {
            self.consumer
                .record(&done)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.reply(&request, failure.as_deref()).await
    }

    async fn reply(
        &self,
        request: &CustomerErasureRequested,
        failure: Option<&str>,
    ) -> Result<(), String> {
        let answer = serde_json::json!({
            "sagaId": request.saga_id,
            "participant": request.participant,
            "token": request.token,
            "outcome": if failure.is_some() { "failed" } else { "erased" },
            "reason": failure.unwrap_or_default(),
        });
        self.consumer
            .context()
            .publish(
                reply_subject(&self.config.consumer.subject_prefix),
                answer.to_string().into(),
            )
            .await
            .map_err(|e| e.to_string())?
            .into_future()
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
