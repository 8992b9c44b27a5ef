//! PATCH /customers/:id: validate, apply, store the new state with its events.

use serde_json::{Map, Value};

use crate::domain::{parse_customer_patch, Customer, CustomerId};

use super::error::ApplicationError;
use super::new_event::{Precondition, WriteContext};
use super::ports::{CustomerStore, StoreError};

/// How often a write decided on a version that a concurrent write then replaced is
/// re-decided on the fresh state. Each round commits at least one competing writer, so this
/// bounds the wait of a request that keeps losing to others on one hot customer.
pub(crate) const MAX_WRITE_ATTEMPTS: usize = 64;

#[tracing::instrument(name = "update_customer", skip_all, fields(customer.id = %id))]
pub async fn update_customer(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    id: CustomerId,
    body: &Map<String, Value>,
    precondition: Option<Precondition>,
) -> Result<Customer, ApplicationError> {
    let patch = parse_customer_patch(body, ctx.now.date())?;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let current = store
            .find_by_id(id)
            .await?
            .ok_or(ApplicationError::NotFound)?;
        if precondition.is_some_and(|p| !p.holds_for(current.version)) {
            return Err(ApplicationError::VersionMismatch);
        }
        let Some(change) = current.update(&patch, ctx.now, ctx.actor.as_deref()) else {
            return Ok(current);
        };
        let events = ctx.seal(id, current.version + 1, &change.events);
        match store
            .update(current.version, &change.customer, &events)
            .await
        {
            Ok(()) => {
                tracing::info!(
                    customer.version = change.customer.version,
                    "customer updated"
                );
                return Ok(change.customer);
            }
            // Lost a race: decide again on the state that won (or report the mismatch).
            Err(StoreError::VersionConflict) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(StoreError::VersionConflict.into())
}
