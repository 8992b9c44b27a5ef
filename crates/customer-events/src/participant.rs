//! The participant side of the erasure saga: a service that keeps its own copy of customers
//! implements one `erase(customer_id)` function, and [`Participant`] (Redis, feature
//! `consumer`) or [`nats::NatsParticipant`] (NATS JetStream, feature `jetstream`) does the
//! rest.
//!
//! - Reads the service's stream in its own consumer group (`erasure-<participant>`), with
//!   everything [`crate::consumer::Consumer`] brings: at-least-once delivery, a dead
//!   consumer's messages taken over, a redelivered `eventId` skipped.
//! - Acts only on `CustomerErasureRequested` events naming this participant; every other
//!   event is acknowledged and left alone.
//! - Calls `erase` with retries (exponential back-off); then answers on the reply stream
//!   `<stream>:erasure-replies` with `sagaId`, `participant`, `token`, `outcome` (`erased`,
//!   or `failed` with the last error as `reason`).
//! - Remembers each token it confirmed (`<stream>:erasure:<participant>:done:<token>`, for
//!   `remember`): a reminder of a request it already carried out (its answer was lost, or
//!   it was down when the first one came) is answered again without erasing again.
//!
//! `erase` must be idempotent (erasing an erased or unknown customer succeeds), and must not
//! put personal data in its error: the error text travels to the service as `reason`.
//!
//! ```no_run
//! # async fn example() -> Result<(), customer_events::consumer::ConsumerError> {
//! use customer_events::participant::{Participant, ParticipantConfig};
//!
//! let config = ParticipantConfig::new("customer-service-events:stream", "billing", "billing-1");
//! let participant = Participant::new("redis://127.0.0.1:6379", config)?;
//! participant
//!     .run(
//!         |customer_id| async move {
//!             println!("erasing customer {customer_id} from billing");
//!             Ok::<(), String>(())
//!         },
//!         async { let _ = tokio::signal::ctrl_c().await; },
//!     )
//!     .await
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

#[cfg(feature = "consumer")]
use crate::consumer::{
    Consumer, ConsumerConfig, ConsumerError, Outcome, RedisConnection, RedisTarget,
};
#[cfg(feature = "consumer")]
use crate::event::{CustomerErasureRequested, CustomerEvent};

#[cfg(feature = "jetstream")]
#[path = "participant_nats.rs"]
pub mod nats;

/// Calls `erase` up to `max_attempts` times with exponential back-off: `None` once it
/// succeeded, else the last error (cut to [`MAX_REASON_CHARS`]), the answer's reason.
pub(crate) async fn erase_with_retries<F, Fut, E>(
    erase: &F,
    customer_id: i64,
    max_attempts: u32,
    mut backoff: Duration,
    max_backoff: Duration,
) -> Option<String>
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut attempt = 1;
    loop {
        match erase(customer_id).await {
            Ok(()) => return None,
            Err(error) if attempt >= max_attempts => {
                return Some(error.to_string().chars().take(MAX_REASON_CHARS).collect())
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
                attempt += 1;
            }
        }
    }
}

/// The stream participants answer on: `<stream>:erasure-replies`.
pub fn reply_stream(stream: &str) -> String {
    format!("{stream}:erasure-replies")
}

/// The longest `reason` sent (characters); a longer error is cut.
pub const MAX_REASON_CHARS: usize = 500;

#[cfg(feature = "consumer")]
/// How a participant behaves; [`ParticipantConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    /// The participant's name, exactly as in the service's `ERASURE_PARTICIPANTS`.
    pub participant: String,
    /// The stream the service publishes to (its consumer group is `erasure-<participant>`).
    pub consumer: ConsumerConfig,
    /// `erase` calls per request before answering `failed`.
    pub max_attempts: u32,
    /// Wait before the second call; doubles per call, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a confirmed token is remembered (reminders within it are answered again
    /// without erasing again). Longer than the service's `ERASURE_DEADLINE`.
    pub remember: Duration,
}

#[cfg(feature = "consumer")]
impl ParticipantConfig {
    pub fn new(
        stream: impl Into<String>,
        participant: impl Into<String>,
        consumer: impl Into<String>,
    ) -> ParticipantConfig {
        let participant = participant.into();
        ParticipantConfig {
            consumer: ConsumerConfig::new(stream, format!("erasure-{participant}"), consumer),
            participant,
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            remember: Duration::from_secs(45 * 24 * 3600),
        }
    }

    /// `<stream>:erasure-replies`.
    pub fn reply_stream(&self) -> String {
        reply_stream(&self.consumer.stream)
    }

    fn done_key(&self, token: &str) -> String {
        format!(
            "{}:erasure:{}:done:{token}",
            self.consumer.stream, self.participant
        )
    }
}

#[cfg(feature = "consumer")]
/// One erasure participant.
pub struct Participant {
    consumer: Consumer,
    target: RedisTarget,
    config: ParticipantConfig,
}

#[cfg(feature = "consumer")]
impl Participant {
    pub fn new(redis_url: &str, config: ParticipantConfig) -> Result<Participant, ConsumerError> {
        Ok(Participant {
            consumer: Consumer::new(redis_url, config.consumer.clone())?,
            target: RedisTarget::single(redis_url)?,
            config,
        })
    }

    /// A participant on a Redis Cluster (`nodes`: seed nodes, `redis://host:port`).
    pub fn cluster(
        nodes: Vec<String>,
        config: ParticipantConfig,
    ) -> Result<Participant, ConsumerError> {
        Ok(Participant {
            consumer: Consumer::cluster(nodes.clone(), config.consumer.clone())?,
            target: RedisTarget::cluster(nodes)?,
            config,
        })
    }

    pub fn config(&self) -> &ParticipantConfig {
        &self.config
    }

    /// Handles erasure requests until `shutdown` completes.
    pub async fn run<F, Fut, E>(
        &self,
        erase: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ConsumerError>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        self.consumer
            .run(|envelope| self.handle(envelope.data, &erase), shutdown)
            .await
    }

    /// One round of reading and handling (for tests and tools).
    pub async fn poll_once<F, Fut, E>(&self, erase: F) -> Result<Vec<Outcome>, ConsumerError>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        self.consumer
            .poll_once(|envelope| self.handle(envelope.data, &erase))
            .await
    }

    /// An error here (Redis) makes the consumer call this again: `erase` is idempotent.
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
        let mut connection = self
            .target
            .connect(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        let done = self.config.done_key(&request.token);
        let done_before: bool = redis::cmd("EXISTS")
            .arg(&done)
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        if done_before {
            tracing::info!(
                saga_id = request.saga_id,
                attempt = request.attempt,
                "erasure requested again after it was done: confirming again"
            );
            return self.reply(&mut connection, &request, None).await;
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
            let _: redis::Value = redis::cmd("SET")
                .arg(&done)
                .arg(request.saga_id)
                .arg("PX")
                .arg(u64::try_from(self.config.remember.as_millis()).unwrap_or(u64::MAX))
                .query_async(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.reply(&mut connection, &request, failure.as_deref())
            .await
    }

    /// `XADD <stream>:erasure-replies * sagaId … participant … token … outcome … reason …`.
    async fn reply(
        &self,
        connection: &mut RedisConnection,
        request: &CustomerErasureRequested,
        failure: Option<&str>,
    ) -> Result<(), String> {
        let reason = failure.unwrap_or_default();
        let _: String = redis::cmd("XADD")
            .arg(self.config.reply_stream())
            .arg("*")
            .arg("sagaId")
            .arg(request.saga_id)
            .arg("participant")
            .arg(&request.participant)
            .arg("token")
            .arg(&request.token)
            .arg("outcome")
            .arg(if failure.is_some() {
                "failed"
            } else {
                "erased"
            })
            .arg("reason")
            .arg(reason)
            .query_async(connection)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
