//! The relay loop: step while there is work, sleep until woken (a commit here, a NOTIFY from
//! another instance, or the polling fallback), back off with jitter on failure, and stop
//! after the current batch on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::{Leadership, Relay, StepOutcome};

/// Timing of the loop.
#[derive(Debug, Clone, Copy)]
pub struct RelayTiming {
    /// Longest sleep without a wake-up: the polling fallback.
    pub poll_interval: Duration,
    /// First retry delay after a failure; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a non-leader tries to take the lease.
    pub lease_retry: Duration,
}

impl Default for RelayTiming {
    fn default() -> Self {
        RelayTiming {
            poll_interval: Duration::from_secs(1),
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
    mut leadership: Leadership,
    wake: Arc<Notify>,
    timing: RelayTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = timing.min_backoff;
    let mut failures: u32 = 0;
    let mut leading = false;
    while !*shutdown.borrow() {
        if !leadership.acquire().await {
            leading = false;
            relay.status.update(|s| s.is_leader = false);
            // Not woken by commits: only the lease matters here.
            if pause(timing.lease_retry, &Notify::new(), &mut shutdown).await {
                break;
            }
            continue;
        }
        if !leading {
            // Another leader may have moved the watermark meanwhile.
            relay.forget_watermark();
            leading = true;
        }
        relay.status.update(|s| s.is_leader = true);
        match relay.step().await {
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
