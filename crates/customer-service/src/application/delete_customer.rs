//! DELETE /customers/:id: remove the row and append CustomerDeleted in one transaction.

use crate::domain::CustomerId;

use super::error::ApplicationError;
use super::new_event::{Precondition, WriteContext};
use super::ports::{CustomerStore, StoreError};
use super::update_customer::MAX_WRITE_ATTEMPTS;

#[tracing::instrument(name = "delete_customer", skip_all, fields(customer.id = %id))]
pub async fn delete_customer(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    id: CustomerId,
    precondition: Option<Precondition>,
) -> Result<(), ApplicationError> {
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let current = store
            .find_by_id(id)
            .await?
            .ok_or(ApplicationError::NotFound)?;
        if precondition.is_some_and(|p| !p.holds_for(current.version)) {
            return Err(ApplicationError::VersionMismatch);
        }
        let events = ctx.seal(id, current.version + 1, &[current.delete(ctx.now)]);
        match store.delete(id, current.version, &events).await {
            Ok(()) => {
                tracing::info!("customer deleted");
                return Ok(());
            }
            Err(StoreError::VersionConflict) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(StoreError::VersionConflict.into())
}
