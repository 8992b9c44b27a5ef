//! POST /customers: validate, insert, append CustomerCreated — one transaction.

use serde_json::{Map, Value};

use crate::domain::{parse_new_customer, Customer, CustomerDraft};

use super::error::ApplicationError;
use super::new_event::WriteContext;
use super::ports::CustomerStore;

#[tracing::instrument(name = "create_customer", skip_all)]
pub async fn create_customer(
    store: &dyn CustomerStore,
    ctx: &WriteContext,
    body: &Map<String, Value>,
) -> Result<Customer, ApplicationError> {
    let fields = parse_new_customer(body, ctx.now.date())?;
    let draft = CustomerDraft::new(fields, ctx.now);
    let seal =
        |change: &crate::domain::CustomerChange| ctx.seal(change.customer.id, 1, &change.events);
    let customer = store.insert(draft, &seal).await?;
    tracing::info!(customer.id = %customer.id, "customer created");
    Ok(customer)
}
