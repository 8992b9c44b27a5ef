//! Every statement both backends run, written once. Both drivers take `$n` placeholders and
//! the two schemas agree on every name and type (see migrations/README.md). The list
//! statements vary with the request (search, keyset, offset) and are put together by
//! [`list_page`] and its neighbours, still one text per shape for both backends except the
//! SQLite-only FTS5 lookup ([`Filter::Trigram`]).

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

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

/// `insert_many`'s statements: the customer rows with their ids (thirteen placeholders a
/// row), and the events (six a row). A few thousand rows each, under SQLite's 32,766 and
/// PostgreSQL's 65,535 placeholders per statement.
pub(super) const INSERT_CUSTOMERS_WITH_IDS: &str = "insert into customers (id, email, first_name, \
     last_name, phone, is_active, date_of_birth, address, preferences, search_text, \
     created_at_ms, updated_at_ms, version) values ";
pub(super) const CUSTOMER_ROWS_PER_INSERT: usize = 2_000;
pub(super) const APPEND_EVENTS: &str = "insert into customer_events (event_id, event_type, \
     customer_id, sequence, occurred_at_ms, payload) values ";
pub(super) const EVENT_ROWS_PER_INSERT: usize = 5_000;

/// `prefix` followed by `rows` groups of `columns` placeholders: `($1, $2), ($3, $4)`, or
/// with `anonymous` `(?, ?), (?, ?)`. SQLite needs the anonymous form here: it resolves each
/// numbered or named placeholder by a linear search of those already seen, so one 5,000-row
/// event insert with `$n` took 3.2 s to run in a debug build, while with `?` (simply the next
/// one) the whole 2,500-customer, 7,500-event seed of the CLI test takes under 1.7 s.
pub(super) fn values_sql(prefix: &str, rows: usize, columns: usize, anonymous: bool) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * columns * 7);
    sql.push_str(prefix);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&(row * columns + column + 1).to_string());
            }
        }
        sql.push(')');
    }
    sql
}

/// Reserves `$1` customer ids on PostgreSQL: the identity's sequence, as single inserts
/// draw from it (so concurrent writers never collide with a bulk load).
pub(super) const RESERVE_IDS_POSTGRES: &str =
    "select nextval(pg_get_serial_sequence('customers', 'id')) from generate_series(1, $1)";

/// The highest id SQLite's AUTOINCREMENT has handed out (the writer connection is the only
/// writer, so the ids above it are free until its transaction commits).
pub(super) const LAST_ID_SQLITE: &str =
    "select coalesce(max(seq), 0) from sqlite_sequence where name = 'customers'";

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

/// How a list narrows the customers table (see [`list_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Filter {
    /// Every customer.
    All,
    /// `search_text` contains the term: one LIKE pattern, escaped with `\`. PostgreSQL's
    /// trigram index serves it for terms of three or more characters; shorter terms, and
    /// every term on SQLite that FTS5 cannot look up, scan.
    Like { pattern: String },
    /// SQLite, terms of three or more characters: candidates from the FTS5 trigram index (a
    /// quoted phrase), each rechecked with the LIKE pattern, so the result is exactly
    /// [`Filter::Like`]'s.
    Trigram { phrase: String, pattern: String },
}

impl Filter {
    /// The condition, numbering its placeholders from `$first`; and how many it used.
    fn condition(&self, first: usize) -> (String, usize) {
        let like = |n: usize| format!(r"search_text like ${n} escape '\'");
        match self {
            Filter::All => ("true".to_owned(), 0),
            Filter::Like { .. } => (like(first), 1),
            Filter::Trigram { .. } => (
                format!(
                    "id in (select rowid from customers_search where customers_search match ${first}) \
                     and {}",
                    like(first + 1)
                ),
                2,
            ),
        }
    }

    /// Binds the condition's values, in placeholder order.
    pub(super) fn bind<'q>(
        &self,
        query: Query<'q, Any, AnyArguments>,
    ) -> Query<'q, Any, AnyArguments> {
        match self {
            Filter::All => query,
            Filter::Like { pattern } => query.bind(pattern.clone()),
            Filter::Trigram { phrase, pattern } => query.bind(phrase.clone()).bind(pattern.clone()),
        }
    }
}

/// A page of customers in list order (newest first, id breaking ties) narrowed by `filter`,
/// then bound as: the filter's values, with `after` the keyset start (`created_at_ms`, `id`:
/// the last row of the previous page), the limit, and with `offset` the offset.
///
/// Ids are chosen first and the rows fetched by id (a "deferred join"): skipping `offset`
/// rows then walks the list-order index alone (index-only on both engines) instead of
/// fetching every skipped row.
pub(super) fn list_page(filter: &Filter, after: bool, offset: bool) -> String {
    let (condition, mut used) = filter.condition(1);
    let mut inner = format!("select id from customers where {condition}");
    if after {
        let (at, id) = (used + 1, used + 2);
        used += 2;
        // The row-value form: PostgreSQL seeks the list-order index to exactly this row
        // (`created_at_ms <= t and (created_at_ms < t or id < i)` seeks to `t` and then
        // filters every row with that same time: 23 ms past 100,000 ties, against 0.06).
        inner.push_str(&format!(" and (created_at_ms, id) < (${at}, ${id})"));
    }
    used += 1;
    inner.push_str(&format!(
        " order by created_at_ms desc, id desc limit ${used}"
    ));
    if offset {
        used += 1;
        inner.push_str(&format!(" offset ${used}"));
    }
    format!(
        "select {} from customers where id in ({inner}) order by created_at_ms desc, id desc",
        customer_columns!()
    )
}

/// How many customers `filter` selects; bound by [`Filter::bind`].
pub(super) fn count(filter: &Filter) -> String {
    format!(
        "select count(*) from customers where {}",
        filter.condition(1).0
    )
}

/// Active customers in list order, optionally from a keyset start (`$1` `created_at_ms`,
/// `$2` id) and with a limit (the next placeholder).
pub(super) fn active_customers(after: bool, limit: bool) -> String {
    let mut sql = format!(
        "select {} from customers where is_active = true",
        customer_columns!()
    );
    let mut used = 0;
    if after {
        used = 2;
        sql.push_str(" and (created_at_ms, id) < ($1, $2)");
    }
    sql.push_str(" order by created_at_ms desc, id desc");
    if limit {
        sql.push_str(&format!(" limit ${}", used + 1));
    }
    sql
}

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

/// The oldest pending events; a single leader reads them, so no row locks are needed. The
/// positions are chosen first and the events looked up by them: as a join, PostgreSQL
/// merged the two tables from the first position of the log, so each batch read every
/// event published before it (275 ms a batch half-way through a 1M-event backlog, against
/// 4 ms this way; the drain fell from 20,000 to 6,000 events/s as it went).
pub(super) const PENDING_EVENTS: &str = r#"
select e.position, e.event_id, e.event_type, e.customer_id, e.sequence, e.occurred_at_ms, e.payload
from customer_events e
where e.position in (select p.position from customer_events_pending p order by p.position limit $1)
order by e.position
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_numbered_or_anonymous() {
        assert_eq!(
            values_sql("insert into t (a, b) values ", 2, 2, false),
            "insert into t (a, b) values ($1, $2), ($3, $4)"
        );
        assert_eq!(values_sql("v ", 2, 1, true), "v (?), (?)");
    }

    #[test]
    fn list_statements_number_their_placeholders_in_bind_order() {
        let like = Filter::Like {
            pattern: "%a%".into(),
        };
        assert_eq!(
            list_page(&like, true, false),
            format!(
                "select {} from customers where id in (select id from customers where \
                 search_text like $1 escape '\\' and (created_at_ms, id) < ($2, $3) \
                 order by created_at_ms desc, id desc limit $4) \
                 order by created_at_ms desc, id desc",
                customer_columns!()
            )
        );
        let trigram = Filter::Trigram {
            phrase: "\"abc\"".into(),
            pattern: "%abc%".into(),
        };
        assert_eq!(
            count(&trigram),
            "select count(*) from customers where id in (select rowid from customers_search \
             where customers_search match $1) and search_text like $2 escape '\\'"
        );
        assert!(list_page(&Filter::All, false, true)
            .ends_with("limit $1 offset $2) order by created_at_ms desc, id desc"));
        assert_eq!(
            active_customers(true, true),
            format!(
                "select {} from customers where is_active = true and (created_at_ms, id) < ($1, $2) \
                 order by created_at_ms desc, id desc limit $3",
                customer_columns!()
            )
        );
    }
}
