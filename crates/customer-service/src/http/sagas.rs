//! The sagas as an audit record: `GET /api/v1/customers/:id/erasure` (one customer's
//! erasure across services) and `GET /api/v1/sagas` (all of them, by state). Nothing here
//! is personal: customer ids, participant names, states, times and reasons; never the
//! request tokens.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::application;
use crate::domain::saga::{Saga, SagaState, StepState};

use super::bodies::CustomerIdPath;
use super::envelope::{self, Envelope};
use super::error::{ApiError, ErrorBody};
use super::extract::{CustomerIdParam, QueryParams};
use super::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/customers/{id}/erasure", get(customer_erasure))
        .route("/sagas", get(list_sagas))
}

/// A saga and each participant's part in it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SagaView {
    #[schema(example = 7)]
    saga_id: i64,
    /// The kind of saga: `erasure`.
    #[schema(example = "erasure")]
    kind: String,
    #[schema(example = 42)]
    customer_id: i64,
    /// `open`, `completed`, `failed` or `cancelled`.
    #[schema(example = "open")]
    state: &'static str,
    /// Why it failed or was cancelled.
    #[schema(example = json!(null))]
    reason: Option<String>,
    #[schema(example = "2026-01-01T10:00:00.000Z")]
    started_at: String,
    /// It fails if not every participant has confirmed by then.
    #[schema(example = "2026-01-31T10:00:00.000Z")]
    deadline: String,
    #[schema(example = "2026-01-01T10:00:02.000Z")]
    updated_at: String,
    #[schema(example = json!(null))]
    ended_at: Option<String>,
    participants: Vec<ParticipantView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ParticipantView {
    #[schema(example = "billing")]
    name: String,
    /// `requested` (no answer yet), `confirmed` or `failed`.
    #[schema(example = "confirmed")]
    state: &'static str,
    /// Requests sent for its current request (reminders included).
    #[schema(example = 1)]
    attempts: i64,
    #[schema(example = "2026-01-01T10:00:00.000Z")]
    first_asked_at: String,
    #[schema(example = "2026-01-01T10:00:00.000Z")]
    last_asked_at: String,
    /// The next reminder, while it is awaited in an open saga.
    #[schema(example = json!(null))]
    next_ask_at: Option<String>,
    #[schema(example = "2026-01-01T10:00:02.000Z")]
    answered_at: Option<String>,
    /// The participant's reason, with a `failed` answer.
    #[schema(example = json!(null))]
    reason: Option<String>,
}

impl From<Saga> for SagaView {
    fn from(saga: Saga) -> Self {
        let open = saga.state == SagaState::Open;
        SagaView {
            saga_id: saga.id,
            kind: saga.kind,
            customer_id: saga.subject_id,
            state: saga.state.as_str(),
            reason: saga.reason,
            started_at: saga.started_at.to_iso(),
            deadline: saga.deadline.to_iso(),
            updated_at: saga.updated_at.to_iso(),
            ended_at: saga.ended_at.map(|at| at.to_iso()),
            participants: saga
                .steps
                .into_iter()
                .map(|step| ParticipantView {
                    state: step.state.as_str(),
                    attempts: step.attempts,
                    first_asked_at: step.first_asked_at.to_iso(),
                    last_asked_at: step.last_asked_at.to_iso(),
                    next_ask_at: (open && step.state == StepState::Requested)
                        .then(|| step.next_ask_at.to_iso()),
                    answered_at: step.answered_at.map(|at| at.to_iso()),
                    reason: step.reason,
                    name: step.name,
                })
                .collect(),
        }
    }
}

/// The erasure of one customer across the participating services.
#[utoipa::path(get, path = "/api/v1/customers/{id}/erasure", tag = "sagas",
    summary = "A customer's erasure across services",
    description = "The erasure saga started by `DELETE /api/v1/customers/{id}?erase=true` when `ERASURE_PARTICIPANTS` is set: its state, and each participant's state, requests and answer time. An audit record without personal data; it stays after the customer is erased.",
    params(CustomerIdPath),
    responses((status = 200, description = "The saga", body = Envelope<SagaView>),
              (status = 400, description = "The id is not a positive integer", body = ErrorBody),
              (status = 404, description = "No erasure saga for this customer", body = ErrorBody)))]
pub(crate) async fn customer_erasure(
    State(state): State<AppState>,
    CustomerIdParam(id): CustomerIdParam,
) -> Result<impl IntoResponse, ApiError> {
    let saga = application::erasure_of(&*state.sagas.store, id.get())
        .await?
        .ok_or_else(|| ApiError::NotFound("No erasure saga for this customer".to_owned()))?;
    Ok(envelope::ok(SagaView::from(saga)))
}

/// `data` of `GET /api/v1/sagas`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SagaList {
    sagas: Vec<SagaView>,
    /// Pass as `before` for the next page; `null` on the last.
    #[schema(example = json!(null))]
    next_before: Option<i64>,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "documentation of the query string only")]
pub(crate) struct SagaListQuery {
    /// `open`, `failed`, `completed` or `cancelled` [default: all]
    state: Option<String>,
    /// Sagas per page, 1–100 [default: 20]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Sagas older than this one (`nextBefore` of the previous page)
    #[param(minimum = 1)]
    before: Option<i64>,
}

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// Every saga, newest first.
#[utoipa::path(get, path = "/api/v1/sagas", tag = "sagas",
    summary = "Sagas",
    description = "Sagas newest first, optionally of one state, a page at a time (`before` = the previous page's `nextBefore`).",
    params(SagaListQuery),
    responses((status = 200, description = "A page of sagas", body = Envelope<SagaList>),
              (status = 400, description = "A parameter is invalid", body = ErrorBody)))]
pub(crate) async fn list_sagas(
    State(state): State<AppState>,
    QueryParams(params): QueryParams,
) -> Result<impl IntoResponse, ApiError> {
    let mut errors = crate::domain::FieldErrors::new();
    let saga_state = match params.get("state").map(|s| s.trim()) {
        None | Some("") => None,
        Some(raw) => match SagaState::parse(raw) {
            Some(s) => Some(s),
            None => {
                errors.add(
                    "state",
                    "state must be one of open, failed, completed, cancelled",
                );
                None
            }
        },
    };
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.add("limit", "limit must be a whole number from 1 to 100");
                DEFAULT_LIMIT
            }
        },
    };
    let before = match params.get("before") {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                errors.add(
                    "before",
                    "before must be a saga id (a positive whole number)",
                );
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = application::list_sagas(&*state.sagas.store, saga_state, before, limit).await?;
    Ok(envelope::ok(SagaList {
        sagas: page.sagas.into_iter().map(SagaView::from).collect(),
        next_before: page.next_before,
    }))
}
