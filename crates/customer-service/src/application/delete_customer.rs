//! DELETE /customers/:id: remove the row and append CustomerDeleted in one transaction;
//! with `?erase=true` also erase the customer's personal data from its events.

use customer_events::erasure::{erase_envelope, ERASED};
use customer_events::{CustomerErased, CustomerEvent, Envelope, EventType, Metadata, SOURCE};

use crate::domain::CustomerId;

use super::error::ApplicationError;
use super::new_event::{retry_on_conflict, Precondition, WriteContext};
use super::ports::{CustomerStore, Rewrite, SagaStart, StoredEvent};
use super::sagas::{first_events, start_saga, SagaDefinition};

#[tracing::instrument(name = "delete_customer", skip_all, fields(customer.id = %id))]
pub async fn delete_customer(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    id: CustomerId,
    precondition: Option<Precondition>,
) -> Result<(), ApplicationError> {
    retry_on_conflict(move || async move {
        let current = store
            .find_by_id(id)
            .await?
            .ok_or(ApplicationError::NotFound)?;
        if precondition.is_some_and(|p| !p.holds_for(current.version)) {
            return Err(ApplicationError::VersionMismatch);
        }
        let events = ctx.seal(id, current.version + 1, &[current.delete(ctx.now)]);
        store.delete(id, current.version, &events).await?;
        tracing::info!("customer deleted");
        Ok(())
    })
    .await
}

/// DELETE /customers/:id?erase=true: deletes the customer if it still exists, then erases
/// its personal data from every stored event (GDPR) and appends CustomerErased — one
/// transaction. Also for a customer deleted earlier; `NotFound` if it never existed or is
/// erased already. With `saga` (the erasure saga's definition, when participants are
/// configured), the same transaction starts the saga that asks every participant to erase
/// the customer too.
#[tracing::instrument(name = "erase_customer", skip_all, fields(customer.id = %id))]
pub async fn erase_customer(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    id: CustomerId,
    precondition: Option<Precondition>,
    saga: Option<&dyn SagaDefinition>,
) -> Result<(), ApplicationError> {
    retry_on_conflict(move || async move {
        let current = store.find_by_id(id).await?;
        let history = store.events_of(id).await?;
        let Some(last) = history.last() else {
            return Err(ApplicationError::NotFound);
        };
        if last.event_type == EventType::CustomerErased {
            return Err(ApplicationError::NotFound);
        }
        let erased = CustomerEvent::CustomerErased(CustomerErased {
            customer_id: id.get(),
            erased_at: ctx.now.to_iso(),
        });
        let (expected_version, mut events) = match &current {
            Some(current) => {
                if precondition.is_some_and(|p| !p.holds_for(current.version)) {
                    return Err(ApplicationError::VersionMismatch);
                }
                let events = [current.delete(ctx.now), erased];
                (
                    Some(current.version),
                    ctx.seal(id, current.version + 1, &events),
                )
            }
            // Deleted before: its log remains to be erased.
            None => (None, ctx.seal(id, last.sequence + 1, &[erased])),
        };
        // The CustomerDeleted appended here names the person too.
        for event in &mut events {
            event.payload =
                erase_envelope(&event.payload).unwrap_or_else(|_| event.payload.clone());
        }
        // Appending at the next sequence makes any event appended since `history` was read a
        // conflict (and a retry), so these are all of them.
        let rewrites: Vec<Rewrite> = history
            .iter()
            .filter_map(|event| {
                let payload = erased_payload(event);
                (payload != event.payload).then_some(Rewrite {
                    position: event.position,
                    payload,
                })
            })
            .collect();
        let started = saga.map(|definition| {
            let (saga, effects) = start_saga(definition, id.get(), ctx.now);
            let stored = saga.clone();
            let correlation = ctx.correlation_id.clone();
            let now = ctx.now;
            let events = move |saga_id: i64| {
                first_events(definition, &saga, &effects, saga_id, now, &correlation)
            };
            (stored, events)
        });
        let start = started.as_ref().map(|(saga, events)| SagaStart {
            saga,
            events: events as &(dyn Fn(i64) -> Vec<_> + Send + Sync),
        });
        store
            .erase(id, expected_version, &events, &rewrites, start)
            .await?;
        tracing::info!("customer erased");
        Ok(())
    })
    .await
}

/// `event`'s payload with its personal data erased. One that is not even a JSON envelope is
/// replaced whole by an envelope rebuilt from its log columns, with `data` erased: what
/// erasure cannot read, it must not leave behind.
fn erased_payload(event: &StoredEvent) -> String {
    erase_envelope(&event.payload).unwrap_or_else(|error| {
        tracing::warn!(
            event.position = event.position,
            error = %error,
            "an unreadable event was erased whole"
        );
        let occurred_on = event.occurred_at.to_iso();
        Envelope {
            event_type: event.event_type.as_str().to_owned(),
            event_id: event.event_id.clone(),
            occurred_on: occurred_on.clone(),
            data: ERASED,
            metadata: Metadata {
                event_id: event.event_id.clone(),
                event_type: event.event_type.as_str().to_owned(),
                occurred_on,
                version: String::new(),
                aggregate_id: event.aggregate.log_key(),
                aggregate_type: None,
                sequence: event.sequence,
                correlation_id: String::new(),
                source: SOURCE.to_owned(),
                actor: None,
            },
        }
        .to_json()
    })
}
