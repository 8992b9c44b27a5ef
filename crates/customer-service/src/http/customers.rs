//! `/api/v1/customers`: the contract's "Routes" table, one handler per route.

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use customer_events::CustomerSnapshot;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::application::{
    self, ApplicationError, PageRequest, StoreError, StoredEvent, WriteContext,
};
use crate::domain::Customer;

use super::auth::Actor;
use super::bodies::{CreateCustomerRequest, CustomerIdPath, IfMatchHeader, UpdateCustomerRequest};
use super::envelope::{self, Envelope};
use super::error::{ApiError, ErrorBody};
use super::extract::{precondition, CustomerIdParam, EmailParam, JsonObject, QueryParams};
use super::idempotency::{created_answer, idempotency_key, replay, scoped_key};
use super::request_context::CorrelationId;
use super::AppState;

/// `/customers/health` alone (the `PROBE_PORT` listener's).
pub(crate) fn liveness_router() -> Router<AppState> {
    Router::new().route("/customers/health", get(liveness))
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list_customers).post(create_customer))
        .route("/customers/health", get(liveness))
        .route("/customers/active", get(list_active_customers))
        .route("/customers/count", get(count_customers))
        .route("/customers/stats", get(customer_stats))
        .route("/customers/email/{email}", get(get_customer_by_email))
        .route(
            "/customers/{id}",
            get(get_customer)
                .patch(update_customer)
                .delete(delete_customer),
        )
        .route("/customers/{id}/history", get(customer_history))
}

/// `data` of the history route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomerHistory {
    customer_id: i64,
    events: Vec<LoggedEvent>,
}

/// One event of the log: its position (commit order across all customers) and the envelope
/// exactly as published.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoggedEvent {
    #[schema(example = 1)]
    position: i64,
    /// The envelope (see the event catalog for each type's `data`).
    #[schema(value_type = Object, example = json!({
        "eventType": "CustomerCreated",
        "eventId": "CustomerCreated_1796037327403_k3x9q2m7a",
        "occurredOn": "2026-11-30T09:15:27.403Z",
        "data": {"customerId": 1, "email": "ada.lovelace@example.com", "firstName": "Ada",
                 "lastName": "Lovelace", "fullName": "Ada Lovelace", "phone": null,
                 "isActive": true, "dateOfBirth": null, "address": null, "preferences": null,
                 "createdAt": "2026-11-30T09:15:27.403Z"},
        "metadata": {"eventId": "CustomerCreated_1796037327403_k3x9q2m7a",
                     "eventType": "CustomerCreated", "occurredOn": "2026-11-30T09:15:27.403Z",
                     "version": "1.0", "aggregateId": 1, "sequence": 1,
                     "correlationId": "5f0c9a4e-8d1b-4a8e-9a51-2f1f4c7d0e3b",
                     "source": "customer-service"}
    }))]
    event: Box<RawValue>,
}

impl LoggedEvent {
    /// The stored envelope, passed through unparsed (it is JSON the service wrote itself).
    pub(crate) fn from_stored(event: StoredEvent) -> Result<LoggedEvent, ApiError> {
        let position = event.position;
        let event = RawValue::from_string(event.payload).map_err(|error| {
            ApiError::from(ApplicationError::Internal(StoreError::Other(
                format!("event at position {position} is not JSON: {error}").into(),
            )))
        })?;
        Ok(LoggedEvent { position, event })
    }
}

/// `data` of the list route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomerList {
    customers: Vec<CustomerSnapshot>,
    total: i64,
    /// `null` for a page asked for by cursor (`after`).
    page: Option<i64>,
    limit: i64,
    total_pages: i64,
    /// Pass as `after` for the next page in the same order; `null` on the last page.
    next_cursor: Option<String>,
}

/// `data` of the count route.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CustomerCount {
    count: i64,
}

/// `data` of the stats route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomerStats {
    totals: StatsTotals,
    /// Customers not deleted, by country as stored; `unknown` without an address.
    #[schema(example = json!({"United Kingdom": 412, "France": 230, "unknown": 57}))]
    by_country: std::collections::BTreeMap<String, i64>,
    /// Each of the last 90 days (UTC), oldest first: customers not deleted, by the day of
    /// their `createdAt` (imported customers by their original date).
    signups_per_day: Vec<SignupDay>,
    /// The event log position these numbers include.
    #[schema(example = 1042)]
    position: i64,
    /// How long ago the oldest event not yet included occurred (0 when none).
    #[schema(example = 0)]
    lag_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsTotals {
    /// Customers not deleted: active + inactive.
    #[schema(example = 699)]
    customers: i64,
    #[schema(example = 650)]
    active: i64,
    #[schema(example = 49)]
    inactive: i64,
    /// Deleted customers, the erased included.
    #[schema(example = 21)]
    deleted: i64,
    #[schema(example = 3)]
    erased: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupDay {
    #[schema(example = "2026-11-30")]
    date: String,
    #[schema(example = 12)]
    count: i64,
}

/// `data` of the liveness route.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Liveness {
    status: &'static str,
    timestamp: String,
    service: &'static str,
}

/// One customer in its envelope, with its version as a strong ETag.
fn customer_response((status, body): (StatusCode, Json<Envelope<CustomerSnapshot>>)) -> Response {
    let etag = format!("\"{}\"", body.data.version);
    let mut response = (status, body).into_response();
    // Digits and quotes: always a valid value (taken without a copy).
    if let Ok(value) = HeaderValue::try_from(etag) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

fn write_context(
    state: &AppState,
    correlation: CorrelationId,
    actor: Option<Extension<Actor>>,
) -> WriteContext {
    WriteContext {
        now: state.clock.now(),
        correlation_id: correlation.0,
        actor: actor.map(|Extension(Actor(subject))| subject),
    }
}

fn snapshots(customers: Vec<Customer>) -> Vec<CustomerSnapshot> {
    customers.into_iter().map(Customer::into_snapshot).collect()
}

/// Contract: POST /api/v1/customers → 201 and CustomerCreated.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers",
    summary = "Create a customer",
    description = "Creates the customer and publishes CustomerCreated. The answer carries the customer's version as its `ETag` and its URL as `Location`.",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$",
            description = "Any 1–255 visible ASCII characters of your choosing. Sending the same key and body again (a retry) returns the first answer instead of creating a second customer.")),
    request_body(content = CreateCustomerRequest, description = "`email`, `firstName` and `lastName` are required; no keys other than these. At most 64 KiB."),
    responses(
        (status = 201, description = "The new customer", body = Envelope<CustomerSnapshot>,
         headers(("ETag" = String, description = "The customer's version, quoted: send it as If-Match to update only this version"),
                 ("Location" = String, description = "The customer's URL"))),
        (status = 400, description = "Invalid input: `fieldErrors` lists the messages per field", body = ErrorBody),
        (status = 409, description = "A customer with this e-mail address already exists", body = ErrorBody),
        (status = 410, description = "The Idempotency-Key's first request created a customer that was erased since: its answer went with the customer's data and is not replayed; send a new key", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was already used with another body", body = ErrorBody)))]
pub(crate) async fn create_customer(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    actor: Option<Extension<Actor>>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let scope = actor
        .as_ref()
        .map(|Extension(Actor(subject))| subject.clone())
        .unwrap_or_default();
    let ctx = write_context(&state, correlation, actor);
    let Some(key) = key else {
        let customer = application::create_customer(&*state.store, &ctx, &body).await?;
        return Ok(created_response(&customer));
    };
    let scoped = scoped_key(&scope, &key);
    // Built once: the answer stored with the key and the one sent now are the same bytes.
    let answer = std::sync::OnceLock::new();
    let respond = |customer: &Customer| answer.get_or_init(|| created_answer(customer)).clone();
    let stored = application::create_customer_idempotently(
        &*state.store,
        &ctx,
        &body,
        application::IdempotencyKey {
            key: &scoped,
            ttl_ms: i64::try_from(state.idempotency_ttl.as_millis()).unwrap_or(i64::MAX),
            respond: &respond,
        },
    )
    .await?;
    Ok(replay(stored))
}

/// The 201 of a create: the customer, its ETag and its Location.
fn created_response(customer: &Customer) -> Response {
    let mut response = customer_response(envelope::created(customer.snapshot()));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/customers/{}", customer.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// Contract: GET /api/v1/customers?page=&limit=&search=, newest first.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers",
    summary = "List customers",
    description = "One page of customers, newest first, optionally only those matching `search`. For deep paging pass the `nextCursor` of a page as `after`: it stays fast at any depth.",
    params(("page" = Option<i64>, Query, minimum = 1, maximum = 9223372036854775807_i64, description = "The page number, from 1 (default 1)", example = 1),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Customers per page, 1–100 (default 10)", example = 10),
           ("search" = Option<String>, Query, pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000-\u001f\u007f-\u009f]{0,252}[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?$", description = "Only customers whose first name, last name or e-mail contains this, ignoring case: at most 254 characters and no control characters, not counting surrounding white space (blank: no filter)", example = "ada"),
           ("after" = Option<String>, Query, pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[0-9a-fA-F]{16}(?:[1-7][0-9a-fA-F]{15}|0(?!0{15})[0-9a-fA-F]{15})[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$", description = "The `nextCursor` of the previous page: the page after it in the same order. Not with `page` (a 400): the cursor already says where the page starts")),
    responses((status = 200, description = "One page, with the total and the cursor of the next page", body = Envelope<CustomerList>),
              (status = 400, description = "Invalid paging: `fieldErrors` says which parameter", body = ErrorBody)))]
pub(crate) async fn list_customers(
    State(state): State<AppState>,
    QueryParams(mut params): QueryParams,
) -> Result<impl IntoResponse, ApiError> {
    let request = PageRequest {
        page: params.remove("page"),
        limit: params.remove("limit"),
        search: params.remove("search"),
        after: params.remove("after"),
    };
    let page = application::list_customers(&*state.store, &request).await?;
    Ok(envelope::ok(CustomerList {
        customers: snapshots(page.customers),
        total: page.total,
        page: page.page,
        limit: page.limit,
        total_pages: page.total_pages,
        next_cursor: page.next_cursor,
    }))
}

/// Contract: GET /api/v1/customers/active. Streamed: the body is written as the rows arrive,
/// so a million customers cost the service a few rows of memory.
#[utoipa::path(get, path = "/api/v1/customers/active", tag = "customers",
    summary = "List active customers",
    description = "Every active customer, newest first, in one streamed answer (or the first `limit` of them).",
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 9223372036854775807_i64, description = "At most this many (default: all)", example = 100),
           ("after" = Option<String>, Query, pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[0-9a-fA-F]{16}(?:[1-7][0-9a-fA-F]{15}|0(?!0{15})[0-9a-fA-F]{15})[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$", description = "A `nextCursor` of the list: start after that customer")),
    responses((status = 200, description = "The active customers, newest first", body = Envelope<Vec<CustomerSnapshot>>),
              (status = 400, description = "Invalid limit or cursor", body = ErrorBody)))]
pub(crate) async fn list_active_customers(
    State(state): State<AppState>,
    QueryParams(mut params): QueryParams,
) -> Result<Response, ApiError> {
    use futures_util::StreamExt;
    let request = application::ActiveRequest {
        limit: params.remove("limit"),
        after: params.remove("after"),
    };
    // Fused: polled once more after its end when it turned out empty.
    let mut customers = application::list_active_customers(&*state.store, &request)?.fuse();
    // The first row (or the failure) before the status line: a database that is down is
    // answered 503, not a 200 cut short.
    let first = customers
        .next()
        .await
        .transpose()
        .map_err(ApplicationError::from)?;
    // The contract's envelope around an empty list, cut open between its brackets: the rows
    // go in between.
    let (_, Json(empty)) = envelope::ok(Vec::<CustomerSnapshot>::new());
    let mut head = serde_json::to_vec(&empty)
        .map_err(|error| ApplicationError::Internal(StoreError::Other(error.into())))?;
    let open = head
        .windows(2)
        .position(|pair| pair == b"[]")
        .map(|at| at + 1)
        .ok_or(ApplicationError::Internal(StoreError::Other(
            "the envelope has no data list".into(),
        )))?;
    let tail = head.split_off(open);
    let rows = futures_util::stream::iter(first.map(Ok))
        .chain(customers)
        .enumerate()
        .map(|(n, customer)| {
            let customer = customer.map_err(|error| {
                // The status is sent: all that is left is to cut the body short.
                tracing::warn!(error = %error, "active customers stream failed");
                std::io::Error::other("the customer stream failed")
            })?;
            let mut chunk = if n == 0 { Vec::new() } else { vec![b','] };
            serde_json::to_writer(&mut chunk, &customer.into_snapshot())
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(chunk)
        })
        // Many rows per body frame.
        .ready_chunks(64)
        .map(|chunks| {
            chunks
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map(|chunks| axum::body::Bytes::from(chunks.concat()))
        });
    let body = futures_util::stream::once(async move { Ok(axum::body::Bytes::from(head)) })
        .chain(rows)
        .chain(futures_util::stream::once(async move {
            Ok(axum::body::Bytes::from(tail))
        }));
    let mut response = Response::new(axum::body::Body::from_stream(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Contract: GET /api/v1/customers/count.
#[utoipa::path(get, path = "/api/v1/customers/count", tag = "customers",
    summary = "Count customers",
    description = "How many customers there are (deleted ones not counted).",
    responses((status = 200, description = "Number of customers", body = Envelope<CustomerCount>)))]
pub(crate) async fn count_customers(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let count = application::count_customers(&*state.store).await?;
    Ok(envelope::ok(CustomerCount { count }))
}

/// Customer statistics from the `stats` read model (see `store/stats.rs`).
#[utoipa::path(get, path = "/api/v1/customers/stats", tag = "customers",
    summary = "Customer statistics",
    description = "Totals, customers by country and sign-ups of the last 90 days, from a read model the service keeps from its event log. `position` is the last event included and `lagMs` how far behind the log that is (usually 0).",
    responses((status = 200, description = "The statistics", body = Envelope<CustomerStats>)))]
pub(crate) async fn customer_stats(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let stats =
        application::customer_stats(&*state.models, &*state.events, state.clock.now()).await?;
    Ok(envelope::ok(CustomerStats {
        totals: StatsTotals {
            customers: stats.customers,
            active: stats.active,
            inactive: stats.inactive,
            deleted: stats.deleted,
            erased: stats.erased,
        },
        by_country: stats.by_country,
        signups_per_day: stats
            .signups_per_day
            .into_iter()
            .map(|(date, count)| SignupDay { date, count })
            .collect(),
        position: stats.lag.position,
        lag_ms: stats.lag.ms,
    }))
}

/// Contract: GET /api/v1/customers/email/:email, case-insensitive.
#[utoipa::path(get, path = "/api/v1/customers/email/{email}", tag = "customers",
    summary = "Find a customer by e-mail",
    description = "The customer with this e-mail address, ignoring case.",
    params(("email" = String, Path, description = "The e-mail address, URL-encoded", example = "ada.lovelace@example.com")),
    responses((status = 200, description = "The customer", body = Envelope<CustomerSnapshot>,
               headers(("ETag" = String, description = "The customer's version, quoted"))),
              (status = 400, description = "The address does not percent-decode to UTF-8 (`%FF`)", body = ErrorBody),
              (status = 404, description = "No customer has this e-mail address", body = ErrorBody)))]
pub(crate) async fn get_customer_by_email(
    State(state): State<AppState>,
    EmailParam(email): EmailParam,
) -> Result<Response, ApiError> {
    let customer = application::find_customer_by_email(&*state.store, &email).await?;
    Ok(customer_response(envelope::ok(customer.into_snapshot())))
}

/// Contract: GET /api/v1/customers/:id.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    summary = "Get a customer",
    description = "The customer, or with `asOf` the customer as it was at that moment (rebuilt from its events).",
    params(CustomerIdPath,
           ("asOf" = Option<String>, Query, format = DateTime, description = "An RFC 3339 date-time (e.g. 2026-01-01T10:00:00Z): the customer as it was then")),
    responses((status = 200, description = "The customer", body = Envelope<CustomerSnapshot>,
               headers(("ETag" = String, description = "The customer's version, quoted (not sent with asOf)"))),
              (status = 400, description = "The id is not a positive integer, or asOf is not a date-time", body = ErrorBody),
              (status = 404, description = "No such customer (with asOf: not yet created then, or deleted)", body = ErrorBody)))]
pub(crate) async fn get_customer(
    State(state): State<AppState>,
    CustomerIdParam(id): CustomerIdParam,
    QueryParams(mut params): QueryParams,
) -> Result<Response, ApiError> {
    if let Some(raw) = params.remove("asOf") {
        // A past state: no ETag, since it is not a version a write could be conditioned on.
        let at = application::parse_as_of(&raw)?;
        let customer = application::customer_as_of(&*state.store, id, at).await?;
        return Ok(envelope::ok(customer).into_response());
    }
    let customer = application::get_customer(&*state.store, id).await?;
    Ok(customer_response(envelope::ok(customer.into_snapshot())))
}

/// Every event of the customer, in sequence order; also after its deletion.
#[utoipa::path(get, path = "/api/v1/customers/{id}/history", tag = "customers",
    summary = "A customer's events",
    description = "Every event of the customer, oldest first, each with its position in the event log; also after the customer was deleted.",
    params(CustomerIdPath),
    responses((status = 200, description = "The customer's events", body = Envelope<CustomerHistory>),
              (status = 400, description = "The id is not a positive integer", body = ErrorBody),
              (status = 404, description = "No customer ever had this id", body = ErrorBody)))]
pub(crate) async fn customer_history(
    State(state): State<AppState>,
    CustomerIdParam(id): CustomerIdParam,
) -> Result<impl IntoResponse, ApiError> {
    let events = application::customer_history(&*state.store, id).await?;
    Ok(envelope::ok(CustomerHistory {
        customer_id: id.get(),
        events: events
            .into_iter()
            .map(LoggedEvent::from_stored)
            .collect::<Result<_, _>>()?,
    }))
}

/// Contract: PATCH /api/v1/customers/:id → CustomerUpdated (+ Activated/Deactivated).
#[utoipa::path(patch, path = "/api/v1/customers/{id}", tag = "customers",
    summary = "Update a customer",
    description = "Changes the fields sent and publishes CustomerUpdated (and CustomerActivated or CustomerDeactivated when `isActive` changes).",
    params(CustomerIdPath, IfMatchHeader),
    request_body(content = UpdateCustomerRequest, description = "Any of the create fields. At most 64 KiB."),
    responses((status = 200, description = "The updated customer", body = Envelope<CustomerSnapshot>,
               headers(("ETag" = String, description = "The customer's new version, quoted"))),
              (status = 400, description = "Invalid input: `fieldErrors` lists the messages per field", body = ErrorBody),
              (status = 404, description = "No such customer", body = ErrorBody),
              (status = 409, description = "Another customer has this e-mail address", body = ErrorBody),
              (status = 412, description = "If-Match names a version that is no longer the current one", body = ErrorBody),
              (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody)))]
pub(crate) async fn update_customer(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    actor: Option<Extension<Actor>>,
    CustomerIdParam(id): CustomerIdParam,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let ctx = write_context(&state, correlation, actor);
    let customer =
        application::update_customer(&*state.store, &ctx, id, &body, precondition(&headers))
            .await?;
    Ok(customer_response(envelope::updated(
        customer.into_snapshot(),
    )))
}

/// Contract: DELETE /api/v1/customers/:id → 204 and CustomerDeleted; with `erase=true` the
/// customer's personal data is also erased from every stored event and CustomerErased
/// follows (also for a customer deleted earlier).
#[utoipa::path(delete, path = "/api/v1/customers/{id}", tag = "customers",
    summary = "Delete (or erase) a customer",
    description = "Deletes the customer and publishes CustomerDeleted. With `erase=true` the customer's personal data is also removed from every stored event and from Redis (GDPR), and CustomerErased follows; this also works for a customer deleted earlier.",
    params(CustomerIdPath, IfMatchHeader,
           ("erase" = Option<bool>, Query, description = "`true`: also erase the customer's personal data from the event history", example = false)),
    responses((status = 204, description = "Deleted (and erased)"),
              (status = 400, description = "The id is not a positive integer, or erase is neither true nor false", body = ErrorBody),
              (status = 404, description = "No such customer (or erased already)", body = ErrorBody),
              (status = 412, description = "If-Match names a version that is no longer the current one", body = ErrorBody)))]
pub(crate) async fn delete_customer(
    State(state): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    actor: Option<Extension<Actor>>,
    CustomerIdParam(id): CustomerIdParam,
    headers: HeaderMap,
    QueryParams(params): QueryParams,
) -> Result<StatusCode, ApiError> {
    let erase = match params.get("erase").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("erase", "erase must be true or false")),
    };
    let ctx = write_context(&state, correlation, actor);
    if erase {
        application::erase_customer(
            &*state.store,
            &ctx,
            id,
            precondition(&headers),
            state.sagas.definitions.erasure(),
        )
        .await?;
    } else {
        application::delete_customer(&*state.store, &ctx, id, precondition(&headers)).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Contract: GET /api/v1/customers/health (liveness; touches no dependency).
#[utoipa::path(get, path = "/api/v1/customers/health", tag = "health",
    summary = "Liveness (the original's route)",
    description = "Answers as long as the process serves requests; checks no dependency.",
    responses((status = 200, description = "The process is up", body = Envelope<Liveness>)))]
pub(crate) async fn liveness() -> impl IntoResponse {
    envelope::ok(Liveness {
        status: "ok",
        timestamp: envelope::now_iso(),
        service: super::SERVICE_NAME,
    })
}
