//! `GET /api/v1/health`: the readiness report. Every check has its own deadline, so the
//! answer comes within a second even when a dependency hangs.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::{self, now_iso, Envelope};
use super::AppState;

/// Each dependency check gives up after this; together they stay under the 1 s promise.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_millis(400);

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// The orchestrator's probes, at the root: `/livez` (the process serves) and `/readyz` (and
/// its database answers; Redis is not required, since writes work without it).
pub(crate) fn probes() -> Router<AppState> {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Probe {
    /// "ok", "ready" or "not ready".
    status: &'static str,
    /// Why not ready: "database unreachable", or "worker failed: <name>" (a background
    /// worker ended before stop; the instance stops a few seconds later, to be restarted).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Liveness: answers as long as the process serves requests; checks nothing else.
#[utoipa::path(get, path = "/livez", tag = "health",
    summary = "Liveness probe",
    description = "200 as long as the process serves requests; checks nothing else.",
    responses((status = 200, description = "Alive", body = Probe)))]
pub(crate) async fn livez() -> impl IntoResponse {
    Json(Probe {
        status: "ok",
        reason: None,
    })
}

/// Readiness: 200 while the database answers within 400 ms and every background worker
/// runs, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health",
    summary = "Readiness probe",
    description = "200 while the database answers within 400 ms and every background worker runs, 503 otherwise.",
    responses((status = 200, description = "Ready", body = Probe),
              (status = 503, description = "The database does not answer, or a background worker failed", body = Probe)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(worker) = state.workers.failed() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                reason: Some(format!("worker failed: {worker}")),
            }),
        );
    }
    match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(Probe {
                status: "ready",
                reason: None,
            }),
        ),
        Ok(Err(_)) | Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "not ready",
                reason: Some("database unreachable".to_owned()),
            }),
        ),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// "healthy", "degraded" (Redis down, or events waiting longer than
    /// `OUTBOX_DEGRADED_AFTER_SECS`: writes still work) or "unhealthy" (database down).
    status: &'static str,
    timestamp: String,
    service: &'static str,
    checks: Checks,
    /// Seconds since start.
    uptime: f64,
    version: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Checks {
    database: Check,
    redis: Check,
    /// "disabled" without `NATS_URL`.
    nats: Check,
    /// "disabled" without `DATABASE_READ_URL`; "error" (down) or "lagging": reads go to the
    /// primary, and the status is `degraded`.
    replica: ReplicaCheck,
    outbox: OutboxCheck,
    sagas: SagasCheck,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplicaCheck {
    status: &'static str,
    /// How far the replica is behind the primary, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn replica_check(state: &AppState) -> ReplicaCheck {
    let Some(replica) = state.store.replica_status() else {
        return ReplicaCheck {
            status: "disabled",
            lag_ms: None,
            message: Some("no read replica configured".to_owned()),
        };
    };
    let lag_ms = u64::try_from(replica.lag.as_millis()).unwrap_or(u64::MAX);
    let (status, message) = if !replica.up {
        (
            "error",
            Some("read replica unreachable; reads go to the primary".to_owned()),
        )
    } else if !replica.serving {
        (
            "lagging",
            Some(format!(
                "read replica more than {} ms behind (DATABASE_READ_MAX_LAG_MS); reads go to \
                 the primary",
                replica.max_lag.as_millis()
            )),
        )
    } else {
        ("ok", None)
    };
    ReplicaCheck {
        status,
        lag_ms: Some(lag_ms),
        message,
    }
}

/// A note on the sagas (issue #17): never changes the overall status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SagasCheck {
    /// "ok"; "attention" while an open saga is past half its deadline or one has failed;
    /// "error" when they cannot be read; "disabled" without `ERASURE_PARTICIPANTS`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<i64>,
    /// Open sagas with more than half of the time to their deadline gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    past_half_deadline: Option<i64>,
    /// Age of the oldest open saga in milliseconds (`null` when none is open).
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_open_age_ms: Option<Option<i64>>,
    /// The orchestrator's current failure on this instance, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Check {
    /// "ok", "error" or "disabled".
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutboxCheck {
    /// "ok"; "stalled" when the oldest pending event is older than
    /// `OUTBOX_DEGRADED_AFTER_SECS`; "error" when this instance's relay is failing (then
    /// `message` still says when the backlog is that old, and the status is `degraded`).
    status: &'static str,
    /// Events committed but not yet published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<i64>,
    /// Age of the oldest pending event in milliseconds (`null` when none is pending).
    oldest_pending_age_ms: Option<i64>,
    /// Whether this instance holds the relay lease and publishes.
    is_leader: bool,
    /// The relay's current failure, if its last attempt failed.
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

impl Check {
    fn ok() -> Check {
        Check {
            status: "ok",
            message: None,
        }
    }

    fn error(message: &str) -> Check {
        Check {
            status: "error",
            message: Some(message.to_owned()),
        }
    }
}

/// Contract: GET /api/v1/health (200 healthy or degraded, 503 when the database is down).
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    summary = "Health",
    description = "The state of the database, Redis and the event outbox. `degraded` (still 200) while Redis is down: writes keep working and their events wait in the log.",
    responses((status = 200, description = "Healthy or degraded", body = Envelope<Health>),
              (status = 503, description = "Database down", body = Envelope<Health>)))]
pub(crate) async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let report = report(&state).await;
    if report.is_healthy() {
        envelope::ok(report)
    } else {
        envelope::unhealthy(report)
    }
}

impl Health {
    /// Whether the database answered (Redis down is "degraded", still healthy enough).
    pub(crate) fn is_healthy(&self) -> bool {
        self.checks.database.status == "ok"
    }
}

/// The health report: what `GET /api/v1/health` answers and the dashboard shows.
pub(crate) async fn report(state: &AppState) -> Health {
    // The checks run concurrently: the answer takes the slowest one, not their sum.
    let (database, redis, nats, outbox, sagas) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()),
        redis_check(state),
        nats_check(state),
        tokio::time::timeout(CHECK_TIMEOUT, state.events.outbox_status()),
        sagas_check(state),
    );
    let database = match database {
        Ok(Ok(())) => Check::ok(),
        Ok(Err(_)) => Check::error("database unreachable"),
        Err(_) => Check::error("database did not answer in time"),
    };
    let relay = state.relay.snapshot();
    let mut stalled = false;
    let outbox = match outbox {
        Ok(Ok(status)) => {
            let oldest_pending_age_ms = status
                .oldest_pending_at
                .map(|at| (state.clock.now().millis() - at.millis()).max(0));
            // Whoever leads, and whyever it stalls (a frozen leader, a sink outage), every
            // instance sees the backlog age in the shared log.
            stalled = oldest_pending_age_ms.is_some_and(|age| {
                u128::try_from(age).unwrap_or(0) > state.outbox_degraded_after.as_millis()
            });
            OutboxCheck {
                status: if relay.last_error.is_some() {
                    "error"
                } else if stalled {
                    "stalled"
                } else {
                    "ok"
                },
                pending: Some(status.pending),
                oldest_pending_age_ms,
                is_leader: relay.is_leader,
                last_error: relay.last_error,
                message: stalled.then(|| {
                    format!(
                        "the oldest unpublished event is older than {} s \
                         (OUTBOX_DEGRADED_AFTER_SECS)",
                        state.outbox_degraded_after.as_secs_f64()
                    )
                }),
            }
        }
        _ => OutboxCheck {
            status: "error",
            pending: None,
            oldest_pending_age_ms: None,
            is_leader: relay.is_leader,
            last_error: relay.last_error,
            message: Some("outbox status unavailable".to_owned()),
        },
    };
    let is_healthy = database.status == "ok";
    let replica = replica_check(state);
    let replica_failing = matches!(replica.status, "error" | "lagging");
    // A backlog older than the limit degrades every instance whatever the relay's last error
    // says: a broker that answers pings and refuses writes shows only here.
    let status = match (is_healthy, redis.status, nats.status) {
        (false, _, _) => "unhealthy",
        (true, "error", _) | (true, _, "error") => "degraded",
        (true, _, _) if stalled || replica_failing => "degraded",
        (true, _, _) => "healthy",
    };
    Health {
        status,
        timestamp: now_iso(),
        service: super::SERVICE_NAME,
        checks: Checks {
            database,
            redis,
            nats,
            replica,
            outbox,
            sagas,
        },
        uptime: state.started_at.elapsed().as_secs_f64(),
        version: env!("CARGO_PKG_VERSION"),
    }
}

async fn sagas_check(state: &AppState) -> SagasCheck {
    let none = SagasCheck {
        status: "disabled",
        open: None,
        failed: None,
        past_half_deadline: None,
        oldest_open_age_ms: None,
        last_error: None,
        message: Some("no saga configured (ERASURE_PARTICIPANTS)".to_owned()),
    };
    if state.sagas.definitions.is_empty() {
        return none;
    }
    let now = state.clock.now();
    let summary = tokio::time::timeout(
        CHECK_TIMEOUT,
        crate::application::saga_summary(&*state.sagas.store, now),
    )
    .await;
    let Ok(Ok(summary)) = summary else {
        return SagasCheck {
            status: "error",
            message: Some("sagas unavailable".to_owned()),
            ..none
        };
    };
    let count = |wanted| {
        summary
            .by_state
            .iter()
            .find(|(state, _)| *state == wanted)
            .map_or(0, |(_, n)| *n)
    };
    let (open, failed) = (
        count(crate::domain::saga::SagaState::Open),
        count(crate::domain::saga::SagaState::Failed),
    );
    let past_half = summary.past_half_deadline;
    let mut notes = Vec::new();
    if past_half > 0 {
        notes.push(format!(
            "{past_half} open saga{} past half {} deadline",
            if past_half == 1 { "" } else { "s" },
            if past_half == 1 { "its" } else { "their" }
        ));
    }
    if failed > 0 {
        notes.push(format!(
            "{failed} failed saga{} (see GET /api/v1/sagas?state=failed)",
            if failed == 1 { "" } else { "s" }
        ));
    }
    SagasCheck {
        status: if notes.is_empty() { "ok" } else { "attention" },
        open: Some(open),
        failed: Some(failed),
        past_half_deadline: Some(past_half),
        oldest_open_age_ms: Some(
            summary
                .oldest_open_started_at
                .map(|at| (now.millis() - at.millis()).max(0)),
        ),
        last_error: state.sagas.status.last_error(),
        message: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

async fn nats_check(state: &AppState) -> Check {
    match &state.nats {
        None => Check {
            status: "disabled",
            message: Some("no NATS configured".to_owned()),
        },
        Some(nats) => match tokio::time::timeout(CHECK_TIMEOUT, nats.ping()).await {
            Ok(Ok(())) => Check::ok(),
            Ok(Err(_)) => Check::error("nats unreachable; events wait in the log"),
            Err(_) => Check::error("nats did not answer in time; events wait in the log"),
        },
    }
}

async fn redis_check(state: &AppState) -> Check {
    match &state.redis {
        None => Check {
            status: "disabled",
            message: Some("no Redis configured".to_owned()),
        },
        Some(redis) => match tokio::time::timeout(CHECK_TIMEOUT, redis.ping()).await {
            Ok(Ok(())) => Check::ok(),
            Ok(Err(_)) => Check::error("redis unreachable; events wait in the log"),
            Err(_) => Check::error("redis did not answer in time; events wait in the log"),
        },
    }
}
