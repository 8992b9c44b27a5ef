//! POST /customers: validate, insert, append CustomerCreated — one transaction. With an
//! idempotency key, the answer is stored in that transaction too, and a retry gets it again.

use serde_json::{Map, Value};

use crate::domain::{
    parse_customer_patch, parse_new_customer, Customer, CustomerChange, CustomerDraft, DomainError,
    Timestamp,
};

use super::error::ApplicationError;
use super::new_event::WriteContext;
use super::ports::{
    Created, CustomerStore, IdempotencyClaim, Responder, StoreError, StoredResponse,
};

#[tracing::instrument(name = "create_customer", skip_all)]
pub async fn create_customer(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    body: &Map<String, Value>,
) -> Result<Customer, ApplicationError> {
    insert(store, ctx, body, None).await
}

/// Bulk creation (`seed`): each `(at, body)` becomes a customer created at `at` with its
/// CustomerCreated, then each of `patches` is applied to it in turn at the same time (a
/// CustomerUpdated each, when it changes something), all in one transaction. The events are
/// exactly what `POST` and `PATCH` at that time would append; `ctx.now` is not used.
#[tracing::instrument(name = "create_customers_in_bulk", skip_all, fields(count = customers.len()))]
pub async fn create_customers_in_bulk(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    customers: &[(Timestamp, Map<String, Value>)],
    patches: &[Map<String, Value>],
) -> Result<(), ApplicationError> {
    let drafts = customers
        .iter()
        .map(|(at, body)| {
            Ok(CustomerDraft::new(
                parse_new_customer(body, at.date())?,
                *at,
            ))
        })
        .collect::<Result<Vec<_>, DomainError>>()?;
    let latest = customers.iter().map(|(at, _)| *at).max().unwrap_or(ctx.now);
    let patches = patches
        .iter()
        .map(|patch| parse_customer_patch(patch, latest.date()))
        .collect::<Result<Vec<_>, DomainError>>()?;
    let complete = |created: CustomerChange| {
        let id = created.customer.id;
        let ctx = WriteContext {
            now: created.customer.created_at,
            ..ctx.clone()
        };
        let mut events = ctx.seal(id, 1, &created.events);
        let mut customer = created.customer;
        for patch in &patches {
            if let Some(change) = customer.update(patch, ctx.now, ctx.actor.as_deref()) {
                events.extend(ctx.seal(id, customer.version + 1, &change.events));
                customer = change.customer;
            }
        }
        (customer, events)
    };
    store.insert_many(drafts, &complete).await?;
    Ok(())
}

/// A create under an idempotency key (already scoped to the client).
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    /// How long a key's answer is kept; older keys count as unused.
    pub ttl_ms: i64,
    /// The answer to store for the created customer.
    pub respond: Responder<'a>,
}

/// The first request with `key.key` creates the customer and stores `respond`'s answer in
/// the same transaction; a repeat with the same body gets that stored answer (no second
/// customer, no second event); a repeat with another body is `IdempotencyConflict`.
#[tracing::instrument(name = "create_customer_idempotently", skip_all)]
pub async fn create_customer_idempotently(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    body: &Map<String, Value>,
    key: IdempotencyKey<'_>,
) -> Result<StoredResponse, ApplicationError> {
    // Keys sort, so this is the body's canonical form.
    let request = Value::Object(body.clone()).to_string();
    let expired_before = Timestamp::from_millis(ctx.now.millis() - key.ttl_ms);
    if let Some(replayed) = stored_answer(store, key.key, &request, expired_before).await? {
        return Ok(replayed);
    }
    let claim = IdempotencyClaim {
        key: key.key,
        request: &request,
        expired_before,
    };
    match insert(store, ctx, body, Some((claim, key.respond))).await {
        Ok(customer) => Ok((key.respond)(&customer)),
        // A concurrent request with this key committed first: answer as it did.
        Err(ApplicationError::Unavailable(StoreError::IdempotencyKeyTaken)) => {
            stored_answer(store, key.key, &request, expired_before)
                .await?
                .ok_or(ApplicationError::Unavailable(
                    StoreError::IdempotencyKeyTaken,
                ))
        }
        Err(other) => Err(other),
    }
}

/// The stored answer for `key` if it is fresh and was given to this same request.
async fn stored_answer(
    store: &dyn CustomerStore,
    key: &str,
    request: &str,
    expired_before: Timestamp,
) -> Result<Option<StoredResponse>, ApplicationError> {
    match store.find_idempotency(key).await? {
        Some(record) if record.erased => Err(ApplicationError::IdempotentCustomerErased),
        Some(record) if record.created_at >= expired_before => {
            if record.request == request {
                Ok(Some(record.response))
            } else {
                Err(ApplicationError::IdempotencyConflict)
            }
        }
        _ => Ok(None),
    }
}

async fn insert(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    body: &Map<String, Value>,
    idempotency: Option<(IdempotencyClaim<'_>, Responder<'_>)>,
) -> Result<Customer, ApplicationError> {
    let fields = parse_new_customer(body, ctx.now.date())?;
    let draft = CustomerDraft::new(fields, ctx.now);
    let (claim, respond) = idempotency.unzip();
    let complete = |change: &crate::domain::CustomerChange| Created {
        events: ctx.seal(change.customer.id, 1, &change.events),
        answer: respond.map(|respond| respond(&change.customer)),
    };
    let customer = store.insert(draft, claim, &complete).await?;
    tracing::info!(customer.id = %customer.id, "customer created");
    Ok(customer)
}
