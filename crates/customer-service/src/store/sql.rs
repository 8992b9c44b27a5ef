//! Every statement both backends run, written once. Both drivers take `$n` placeholders and
//! the two schemas agree on every name and type (see migrations/README.md).

/// The columns a [`crate::domain::Customer`] is read from, in `read_customer`'s order.
macro_rules! customer_columns {
    () => {
        "id, email, first_name, last_name, phone, is_active, date_of_birth, address, \
         preferences, created_at_ms, updated_at_ms, version"
    };
}

/// The twelve written columns are bound as $1..$12 by `bind_columns`.
pub(super) const INSERT_CUSTOMER: &str = r#"
insert into customers (email, first_name, last_name, phone, is_active, date_of_birth,
                       address, preferences, search_text, created_at_ms, updated_at_ms, version)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
returning id
"#;

/// Frees keys whose records expired (`$1`: the cutoff in ms), then claims `$2` with a
/// placeholder answer, filled in once the customer exists (`FILL_IDEMPOTENCY`). Claiming
/// first makes a concurrent request with the same key wait on this row and then fail on
/// the primary key, rather than race to the e-mail's unique index.
pub(super) const EXPIRE_IDEMPOTENCY: &str =
    "delete from idempotency_keys where created_at_ms < $1 and status <> 410";

pub(super) const CLAIM_IDEMPOTENCY: &str = r#"
insert into idempotency_keys (key, request, status, body, location, etag, created_at_ms)
values ($1, $2, 0, '', null, null, $3)
"#;

pub(super) const FILL_IDEMPOTENCY: &str = r#"
update idempotency_keys
set status = $2, body = $3, location = $4, etag = $5, customer_id = $6
where key = $1
"#;

pub(super) const FIND_IDEMPOTENCY: &str = r#"
select request, status, body, location, etag, created_at_ms from idempotency_keys where key = $1
"#;

/// The relay's fence: matches (and locks) the lease row only while epoch `$1` holds it.
pub(super) const FENCE_RELAY_LEASE: &str =
    "update relay_lease set epoch = epoch where name = 'relay' and epoch = $1";

/// Erasure rewrites each of the customer's events with its personal data erased.
pub(super) const REWRITE_PAYLOAD: &str =
    "update customer_events set payload = $1 where position = $2 and customer_id = $3";

/// An erased customer's keys become tombstones (status 410): the key and the customer id
/// stay, the request body and the answer (personal data) go, and expiry passes them over.
pub(super) const TOMBSTONE_IDEMPOTENCY_OF_CUSTOMER: &str = r#"
update idempotency_keys
set request = '', status = 410, body = '', location = null, etag = null
where customer_id = $1
"#;

/// Compare-and-set on `version`: no row updated means a concurrent write won.
pub(super) const UPDATE_CUSTOMER: &str = r#"
update customers
set email = $1, first_name = $2, last_name = $3, phone = $4, is_active = $5,
    date_of_birth = $6, address = $7, preferences = $8, search_text = $9,
    created_at_ms = $10, updated_at_ms = $11, version = $12
where id = $13 and version = $14
"#;

pub(super) const DELETE_CUSTOMER: &str = r#"
delete from customers where id = $1 and version = $2
"#;

/// A trigger adds the matching customer_events_pending row (see the migrations).
pub(super) const APPEND_EVENT: &str = r#"
insert into customer_events (event_id, event_type, customer_id, sequence, occurred_at_ms, payload)
values ($1, $2, $3, $4, $5, $6)
"#;

pub(super) const CUSTOMER_BY_ID: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers where id = $1"
);

pub(super) const CUSTOMER_BY_EMAIL: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers where email = $1"
);

pub(super) const CUSTOMER_PAGE: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers order by created_at_ms desc, id desc limit $1 offset $2"
);

/// `$1` is a LIKE pattern escaped with `\`, matched against the lower-cased search text.
pub(super) const CUSTOMER_SEARCH_PAGE: &str = concat!(
    "select ",
    customer_columns!(),
    r" from customers where search_text like $1 escape '\'",
    " order by created_at_ms desc, id desc limit $2 offset $3"
);

pub(super) const COUNT_SEARCH: &str =
    r"select count(*) from customers where search_text like $1 escape '\'";

pub(super) const ACTIVE_CUSTOMERS: &str = concat!(
    "select ",
    customer_columns!(),
    " from customers where is_active = true order by created_at_ms desc, id desc"
);

pub(super) const COUNT_CUSTOMERS: &str = "select count(*) from customers";

pub(super) const EVENTS_OF_CUSTOMER: &str = r#"
select position, event_id, event_type, customer_id, sequence, occurred_at_ms, payload
from customer_events
where customer_id = $1
order by sequence
"#;

pub(super) const LOGGED_CUSTOMER_IDS: &str = r#"
select distinct customer_id from customer_events
where customer_id > $1
order by customer_id
limit $2
"#;

pub(super) const CUSTOMERS_WITHOUT_EVENTS: &str = r#"
select c.id from customers c
where not exists (select 1 from customer_events e where e.customer_id = c.id)
order by c.id
limit $1
"#;

/// The backlog size, and when its oldest event occurred: one primary-key lookup rather than
/// a join over the whole backlog (health is polled while large backlogs drain).
pub(super) const OUTBOX_STATUS: &str = r#"
select
    (select count(*) from customer_events_pending),
    (select e.occurred_at_ms from customer_events e
     where e.position = (select min(p.position) from customer_events_pending p))
"#;

pub(super) const PING: &str = "select 1";

/// The oldest pending events; a single leader reads them, so no row locks are needed.
pub(super) const PENDING_EVENTS: &str = r#"
select e.position, e.event_id, e.event_type, e.customer_id, e.sequence, e.occurred_at_ms, e.payload
from customer_events_pending p
join customer_events e on e.position = p.position
order by p.position
limit $1
"#;

/// Prefix of the statement that marks a batch published; `mark_published_sql` appends one
/// placeholder per position. Exactly the published positions: a range would also delete a
/// pending row that committed late inside it, and that event would never be published.
pub(super) const MARK_PUBLISHED_PREFIX: &str =
    "delete from customer_events_pending where position in (";

pub(super) const WATERMARK: &str = "select position from relay_watermark where id = 1";

/// Only ever forward: a relay that lost its lease unnoticed must not move it back.
pub(super) const SAVE_WATERMARK: &str =
    "update relay_watermark set position = $1 where id = 1 and position < $1";

/// Published positions above the watermark `$1` (a new leader's starting state; a few
/// batches at most, the limit only guards against the unexpected).
pub(super) const PUBLISHED_ABOVE: &str = r#"
select e.position from customer_events e
where e.position > $1
  and not exists (select 1 from customer_events_pending p where p.position = e.position)
order by e.position
limit 100000
"#;

/// `$2` event type and `$3` customer id are optional (null: any).
pub(super) const SETTLED_EVENTS: &str = r#"
select position, event_id, event_type, customer_id, sequence, occurred_at_ms, payload
from customer_events
where position > $1
  and position <= (select w.position from relay_watermark w where w.id = 1)
  and ($2 is null or event_type = $2)
  and ($3 is null or customer_id = $3)
order by position
limit $4
"#;

pub(super) const FIRST_POSITION_AT: &str =
    "select min(position) from customer_events where occurred_at_ms >= $1";

pub(super) const LAST_POSITION_AT: &str =
    "select max(position) from customer_events where occurred_at_ms <= $1";

pub(super) const COUNT_EVENTS: &str = "select count(*) from customer_events";

/// `MARK_PUBLISHED_PREFIX` with `$1, …, $n)`.
pub(super) fn mark_published_sql(n: usize) -> String {
    let mut sql = String::from(MARK_PUBLISHED_PREFIX);
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&i.to_string());
    }
    sql.push(')');
    sql
}
