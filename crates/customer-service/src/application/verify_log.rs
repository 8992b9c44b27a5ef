//! `events verify`: every customer rebuilt from the event log must equal its row in the
//! `customers` table. A difference means a write bypassed the service (or a bug did).

use customer_events::{CustomerEvent, CustomerSnapshot};

use crate::domain::CustomerId;

use super::error::ApplicationError;
use super::history::read_envelope;
use super::ports::CustomerStore;

/// Customers read per round trip while listing ids.
const PAGE: i64 = 500;

/// One customer whose row and events disagree. Names fields, never their values: the
/// report may be pasted into a ticket, and values are personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The events say the customer exists; the table has no row.
    MissingRow { customer_id: i64 },
    /// The table has the row; the events say it was deleted.
    RowOfDeletedCustomer { customer_id: i64 },
    /// A row without a single event.
    RowWithoutEvents { customer_id: i64 },
    /// Both exist and these fields differ.
    FieldsDiffer {
        customer_id: i64,
        fields: Vec<String>,
    },
    /// The customer's sequence numbers are not 1, 2, 3, … (the first wrong one).
    SequenceGap { customer_id: i64, sequence: i64 },
    /// An event of a customer that still matters cannot be read (the first one).
    UnreadableEvent { customer_id: i64, position: i64 },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::MissingRow { customer_id } => {
                write!(
                    f,
                    "customer {customer_id}: its events say it exists, but it has no row"
                )
            }
            Mismatch::RowOfDeletedCustomer { customer_id } => {
                write!(
                    f,
                    "customer {customer_id}: its events say it was deleted, but it has a row"
                )
            }
            Mismatch::RowWithoutEvents { customer_id } => {
                write!(f, "customer {customer_id}: a row without any event")
            }
            Mismatch::FieldsDiffer {
                customer_id,
                fields,
            } => write!(
                f,
                "customer {customer_id}: differs from its events in {}",
                fields.join(", ")
            ),
            Mismatch::SequenceGap {
                customer_id,
                sequence,
            } => write!(
                f,
                "customer {customer_id}: event sequence {sequence} is out of order"
            ),
            Mismatch::UnreadableEvent {
                customer_id,
                position,
            } => write!(
                f,
                "customer {customer_id}: the event at position {position} cannot be read"
            ),
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub customers: u64,
    pub events: u64,
    pub mismatches: Vec<Mismatch>,
}

/// Rebuilds every customer that has events and compares it with its row; then looks for rows
/// without events. One customer at a time, so memory stays flat however large the log.
pub async fn verify_log(store: &dyn CustomerStore) -> Result<Verification, ApplicationError> {
    let mut report = Verification::default();
    let mut after = 0;
    loop {
        let ids = store.logged_customer_ids(after, PAGE).await?;
        let Some(&last) = ids.last() else { break };
        for id in ids {
            report.customers += 1;
            if let Some(mismatch) = verify_customer(store, id, &mut report.events).await? {
                report.mismatches.push(mismatch);
            }
        }
        after = last;
    }
    for customer_id in store.customers_without_events(PAGE).await? {
        report
            .mismatches
            .push(Mismatch::RowWithoutEvents { customer_id });
    }
    Ok(report)
}

async fn verify_customer(
    store: &dyn CustomerStore,
    id: i64,
    events_read: &mut u64,
) -> Result<Option<Mismatch>, ApplicationError> {
    let customer_id = id;
    let Some(id) = CustomerId::new(id) else {
        return Ok(None);
    };
    let mut expected: Option<CustomerSnapshot> = None;
    // The first event that does not read. It decides nothing if a later event ends the
    // customer (an erased customer's unreadable events were erased whole).
    let mut unreadable = None;
    for (index, event) in store.events_of(id).await?.iter().enumerate() {
        *events_read += 1;
        if event.sequence != index as i64 + 1 {
            return Ok(Some(Mismatch::SequenceGap {
                customer_id,
                sequence: event.sequence,
            }));
        }
        match read_envelope(event) {
            Ok(envelope) => {
                if matches!(
                    envelope.data,
                    CustomerEvent::CustomerDeleted(_) | CustomerEvent::CustomerErased(_)
                ) {
                    unreadable = None;
                }
                expected = customer_events::apply(expected, &envelope.data, event.sequence);
            }
            Err(_) => {
                unreadable = unreadable.or(Some(event.position));
            }
        }
    }
    let actual = store.find_by_id(id).await?.map(|c| c.snapshot());
    if let Some(position) = unreadable {
        return Ok(Some(Mismatch::UnreadableEvent {
            customer_id,
            position,
        }));
    }
    Ok(match (expected, actual) {
        (None, None) => None,
        (Some(_), None) => Some(Mismatch::MissingRow { customer_id }),
        (None, Some(_)) => Some(Mismatch::RowOfDeletedCustomer { customer_id }),
        (Some(expected), Some(actual)) => {
            let fields = differing_fields(&expected, &actual);
            (!fields.is_empty()).then_some(Mismatch::FieldsDiffer {
                customer_id,
                fields,
            })
        }
    })
}

/// The camelCase names of the fields in which two snapshots differ, alphabetically.
fn differing_fields(expected: &CustomerSnapshot, actual: &CustomerSnapshot) -> Vec<String> {
    let (Ok(serde_json::Value::Object(expected)), Ok(serde_json::Value::Object(actual))) =
        (serde_json::to_value(expected), serde_json::to_value(actual))
    else {
        return vec!["(unserializable)".to_owned()];
    };
    expected
        .iter()
        .filter(|(field, value)| actual.get(field.as_str()) != Some(value))
        .map(|(field, _)| field.clone())
        .collect()
}
