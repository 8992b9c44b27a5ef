//! PATCH /customers/:id: validate, apply, store the new state with its events.

use serde_json::{Map, Value};

use crate::domain::{parse_customer_patch, Customer, CustomerId};

use super::error::ApplicationError;
use super::new_event::{retry_on_conflict, Precondition, WriteContext};
use super::ports::CustomerStore;

#[tracing::instrument(name = "update_customer", skip_all, fields(customer.id = %id))]
pub async fn update_customer(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    id: CustomerId,
    body: &Map<String, Value>,
    precondition: Option<Precondition>,
) -> Result<Customer, ApplicationError> {
    let patch = parse_customer_patch(body, ctx.now.date())?;
    let patch = &patch;
    retry_on_conflict(move || async move {
        let current = store
            .find_by_id(id)
            .await?
            .ok_or(ApplicationError::NotFound)?;
        if precondition.is_some_and(|p| !p.holds_for(current.version)) {
            return Err(ApplicationError::VersionMismatch);
        }
        let Some(change) = current.update(patch, ctx.now, ctx.actor.as_deref()) else {
            return Ok(current);
        };
        let events = ctx.seal(id, current.version + 1, &change.events);
        store
            .update(current.version, &change.customer, &events)
            .await?;
        tracing::info!(
            customer.version = change.customer.version,
            "customer updated"
        );
        Ok(change.customer)
    })
    .await
}
