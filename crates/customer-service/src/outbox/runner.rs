//! The relay loop: step while there is work and this instance leads, sleep until woken (a
//! commit here) or the poll interval passed, back off with jitter on failure, and stop after
//! the current batch on shutdown (then give the lease up).
//!
//! Events committed through another instance are found by that poll: an idle step is one
//! primary-key probe of the (nearly empty) pending table, every `RELAY_POLL_INTERVAL_MS`
//! (10 ms by default). It replaced a per-row `pg_notify` that serialized every writer at
//! commit (see docs/architecture.md, "Waking the relay").

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::{Leadership, Relay, RelayError, StepOutcome};
use crate::application::StoreError;
use crate::sinks::SinkError;

/// Timing of the loop.
#[derive(Debug, Clone, Copy)]
pub struct RelayTiming {
    /// Longest sleep without a wake-up: how soon events committed elsewhere are found.
    pub poll_interval: Duration,
    /// First retry delay after a failure; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a non-leader looks at the lease again.
    pub lease_retry: Duration,
}

impl Default for RelayTiming {
    fn default() -> Self {
        RelayTiming {
            poll_interval: Duration::from_millis(10),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            lease_retry: Duration::from_millis(500),
        }
    }
}

/// Waits up to `duration` for a wake-up or shutdown; `true` if shutdown was requested.
async fn pause(duration: Duration, wake: &Notify, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = wake.notified() => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}

/// Runs the relay until `shutdown` turns true.
pub async fn run(
    relay: Arc<Relay>,
    leadership: Leadership,
    wake: Arc<Notify>,
    timing: RelayTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = timing.min_backoff;
    let mut failures: u32 = 0;
    // The term this instance last published under.
    let mut leading: Option<Option<i64>> = None;
    while !*shutdown.borrow() {
        let Some(fence) = leadership.term() else {
            leading = None;
            relay.status.update(|s| s.is_leader = false);
            // Not woken by commits: only the lease matters here.
            tokio::select! {
                () = leadership.changed(timing.lease_retry) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        if leading != Some(fence) {
            // Another leader may have moved the watermark meanwhile.
            relay.forget_watermark();
            leading = Some(fence);
        }
        relay.status.update(|s| s.is_leader = true);
        match relay.step_under(fence).await {
            Err(
                RelayError::Store(StoreError::Fenced) | RelayError::Sink(SinkError::Fenced { .. }),
            ) => {
                // A newer leader exists: this one was frozen or cut off past its lease.
                leadership.lost();
                relay.forget_watermark();
            }
            Ok(outcome) => {
                if failures > 0 {
                    tracing::info!(relay.failures = failures, "relay recovered");
                    relay.status.update(|s| s.last_error = None);
                }
                failures = 0;
                backoff = timing.min_backoff;
                if outcome == StepOutcome::Idle
                    && pause(timing.poll_interval, &wake, &mut shutdown).await
                {
                    break;
                }
            }
            Err(error) => {
                if failures == 0 {
                    // Once per streak: the state is in the health check meanwhile.
                    let cause = format!("{error}: {}", source_chain(&error));
                    tracing::warn!(error = %cause, "relay step failed; retrying with back-off");
                }
                failures = failures.saturating_add(1);
                relay.status.update(|s| {
                    s.last_error = Some(error.summary());
                    s.failures_total += 1;
                });
                let jittered = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
                backoff = (backoff * 2).min(timing.max_backoff);
                if pause(jittered, &Notify::new(), &mut shutdown).await {
                    break;
                }
            }
        }
    }
    leadership.release().await;
    tracing::info!("relay stopped");
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}
